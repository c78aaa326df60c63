"""Session tests of ``/v1/realtime``: a real server on port 0 (fake engines), a strict realtime client.

Every server frame is validated strictly against the ``openai`` SDK's own types, event ids are checked
unique, and nothing of a response may come outside its ``response.created`` … ``response.done``
(``tests.realtime_ws``). These drive the same session core as ``/v1/voice``: what they check of it
(barge-in, truncation, storage) is checked through the realtime protocol.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.conftest import RunningServer, run_server
from tests.realtime_ws import RATE, RealtimeClient, b64, connect_realtime, silence, speech, types
from trio_voice.realtime import codes
from trio_voice.testing import FakeLLM, FakeSTT, FakeVAD

MANUAL = {"type": "realtime", "audio": {"input": {"turn_detection": None, "transcription": {"model": "w"}}}}


def long_reply(_messages: object) -> str:
    return " ".join(f"word{n}." for n in range(60))


@asynccontextmanager
async def voice_server(
    tmp_path: Path, llm: FakeLLM | None = None, **config: Any
) -> AsyncIterator[RunningServer]:
    engines = {"stt": FakeSTT(), "vad_factory": FakeVAD, "llm": llm or FakeLLM()}
    async with run_server(tmp_path, engines, vad_silence_ms=300, **config) as server:
        yield server


async def update(client: RealtimeClient, session: dict[str, Any]) -> dict[str, Any]:
    await client.send({"type": "session.update", "session": session})
    return (await client.recv_until("session.updated"))[-1]["session"]


def user_text(text: str, **item: Any) -> dict[str, Any]:
    content = [{"type": "input_text", "text": text}]
    return {
        "type": "conversation.item.create",
        "item": {"type": "message", "role": "user", "content": content, **item},
    }


async def stored(server: RunningServer, conversation_id: str) -> list[tuple[str, str, str | None]]:
    history = await server.engines.store.history(conversation_id, limit=50)
    return [(m.role, m.text, m.item_id) for m in history]


async def test_a_text_item_then_a_text_response_with_its_own_instructions_and_metadata(
    tmp_path: Path,
) -> None:
    """item.create is acknowledged and starts nothing; response.create answers it in text only, with the
    response's instructions for the LLM and its metadata echoed; both messages are stored under their ids."""
    llm = FakeLLM()
    async with (
        voice_server(tmp_path, llm) as server,
        connect_realtime(server.listening.realtime_url) as client,
    ):
        await client.send(user_text("What is the capital of France?", id="msg_1"))
        acks = await client.recv_until("conversation.item.done")
        assert types(acks) == ["conversation.item.added", "conversation.item.done"]
        assert acks[0]["item"]["id"] == "msg_1" and acks[0]["previous_item_id"] is None
        await client.expect_quiet()
        ask = {
            "instructions": "Answer in one word.",
            "output_modalities": ["text"],
            "metadata": {"turn": "1"},
        }
        await client.send({"type": "response.create", "event_id": "evt_ask", "response": ask})
        events = await client.recv_until("response.done")
        done = events[-1]["response"]
        messages = await stored(server, done["conversation_id"])
    assert types(events)[:4] == [
        "response.created",
        "response.output_item.added",
        "conversation.item.added",
        "response.content_part.added",
    ]
    assert {"response.output_text.delta", "response.output_text.done"} <= set(types(events))
    assert "response.output_audio.delta" not in types(events)
    assert done["status"] == "completed" and done["metadata"] == {"turn": "1"}
    assert done["output_modalities"] == ["text"]
    text = done["output"][0]["content"][0]["text"]
    assert text.startswith("You said: What is the capital of France?")
    assert llm.calls == [
        [
            {"role": "system", "content": "Answer in one word."},
            {"role": "user", "content": "What is the capital of France?"},
        ]
    ]
    assert messages == [
        ("user", "What is the capital of France?", "msg_1"),
        ("assistant", text, done["output"][0]["id"]),
    ]


async def test_a_manual_audio_turn_is_committed_transcribed_and_answered_in_24_khz_audio(
    tmp_path: Path,
) -> None:
    """turn_detection null: append + commit adds the user item and its transcript, and no response until
    response.create; a response.create sent right behind the commit answers the transcribed words."""
    llm = FakeLLM()
    async with (
        voice_server(tmp_path, llm) as server,
        connect_realtime(server.listening.realtime_url) as client,
    ):
        session = await update(client, MANUAL)
        assert session["audio"]["input"]["turn_detection"] is None
        await client.stream(speech(1.0), frame_s=0.1)
        await client.send({"type": "input_audio_buffer.commit", "event_id": "evt_commit"})
        await client.send({"type": "response.create"})
        events = await client.recv_until("response.done")
    assert types(events)[:4] == [
        "input_audio_buffer.committed",
        "conversation.item.added",
        "conversation.item.done",
        "conversation.item.input_audio_transcription.delta",
    ]
    completed = next(
        e for e in events if e["type"] == "conversation.item.input_audio_transcription.completed"
    )
    assert completed["transcript"].startswith("I spoke for 1.0")
    assert completed["item_id"] == events[0]["item_id"]
    assert types(events).index("response.created") > types(events).index(completed["type"])
    assert llm.calls[0][-1] == {"role": "user", "content": completed["transcript"]}
    deltas = [base64.b64decode(e["delta"]) for e in events if e["type"] == "response.output_audio.delta"]
    assert deltas and all(len(d) % 2 == 0 for d in deltas)
    seconds = [len(d) / 2 / RATE for d in deltas]
    assert max(seconds) <= 0.2 and sorted(seconds)[len(seconds) // 2] >= 0.1  # 100-200 ms deltas
    assert events[-1]["response"]["status"] == "completed"


async def test_server_vad_answers_a_spoken_turn_by_itself(tmp_path: Path) -> None:
    """The default session: speech is found, committed, transcribed and answered with no client event."""
    async with voice_server(tmp_path) as server, connect_realtime(server.listening.realtime_url) as client:
        await update(client, {"type": "realtime", "audio": {"input": {"transcription": {"model": "w"}}}})
        await client.stream(silence(0.2) + speech(0.8) + silence(0.6), frame_s=0.1)
        events = await client.recv_until("response.done")
    names = types(events)
    assert names[:5] == [
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.committed",
        "conversation.item.added",
        "conversation.item.done",
    ]
    assert events[0]["item_id"] == events[2]["item_id"] == events[3]["item"]["id"]
    assert names.index("conversation.item.input_audio_transcription.completed") < names.index(
        "response.created"
    )
    assert "response.output_audio.delta" in names and events[-1]["response"]["status"] == "completed"


async def test_without_create_response_speech_is_stored_and_answered_on_request(tmp_path: Path) -> None:
    """create_response false: a spoken turn becomes an item and a stored message, no response; the
    response.create that follows answers it."""
    llm = FakeLLM()
    vad = {"type": "server_vad", "create_response": False}
    async with (
        voice_server(tmp_path, llm) as server,
        connect_realtime(server.listening.realtime_url) as client,
    ):
        session = await update(client, {"type": "realtime", "audio": {"input": {"turn_detection": vad}}})
        assert session["audio"]["input"]["turn_detection"]["create_response"] is False
        await client.stream(silence(0.2) + speech(0.8) + silence(0.6), frame_s=0.1)
        heard = await client.recv_until("conversation.item.done")
        await client.expect_quiet(0.5)
        await client.send({"type": "response.create"})
        events = await client.recv_until("response.done")
        messages = await stored(server, events[-1]["response"]["conversation_id"])
    assert types(heard)[0] == "input_audio_buffer.speech_started"
    assert events[-1]["response"]["status"] == "completed"
    [call] = llm.calls
    assert call[-1]["role"] == "user" and call[-1]["content"].startswith("I spoke for")
    item_id = heard[-1]["item"]["id"]
    assert ("user", call[-1]["content"], item_id) in messages


async def test_barge_in_cancels_the_response_with_turn_detected_and_nothing_of_it_follows(
    tmp_path: Path,
) -> None:
    """Speech over a response: speech_started, then that response's closing events and response.done
    cancelled/turn_detected; the new spoken turn is answered next (the client view checks the order)."""
    llm = FakeLLM(token_delay=0.05, reply=long_reply)
    async with (
        voice_server(tmp_path, llm) as server,
        connect_realtime(server.listening.realtime_url) as client,
    ):
        await client.send(user_text("Tell me a long story."))
        await client.send({"type": "response.create"})
        await client.recv_until("response.output_audio.delta")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(partial(client.stream, speech(0.8) + silence(0.6), frame_s=0.1))
            events = await client.recv_until("response.done")
        next_turn = await client.recv_until("response.done")
    names = types(events)
    cancelled = events[-1]["response"]
    assert cancelled["status"] == "cancelled"
    assert cancelled["status_details"] == {"type": "cancelled", "reason": "turn_detected", "error": None}
    assert names.index("input_audio_buffer.speech_started") < len(names) - 1
    assert cancelled["output"][0]["status"] == "incomplete"
    assert next_turn[-1]["response"]["status"] == "completed"
    assert next_turn[-1]["response"]["id"] != cancelled["id"]


async def test_without_interrupt_response_speech_does_not_cancel(tmp_path: Path) -> None:
    """interrupt_response false: speech_started is still sent, and the response completes."""
    llm = FakeLLM(token_delay=0.02, reply=long_reply)
    vad = {"type": "server_vad", "interrupt_response": False, "create_response": False}
    async with (
        voice_server(tmp_path, llm) as server,
        connect_realtime(server.listening.realtime_url) as client,
    ):
        await update(client, {"type": "realtime", "audio": {"input": {"turn_detection": vad}}})
        await client.send(user_text("Tell me a long story."))
        await client.send({"type": "response.create"})
        await client.recv_until("response.output_audio.delta")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(partial(client.stream, speech(0.6), frame_s=0.1))
            events = await client.recv_until("response.done")
    assert "input_audio_buffer.speech_started" in types(events)
    assert events[-1]["response"]["status"] == "completed"


async def test_response_cancel_then_a_second_cancel_is_not_active_and_the_session_goes_on(
    tmp_path: Path,
) -> None:
    """response.cancel ends the response (client_cancelled); a second one, with none in progress, gets
    response_cancel_not_active echoing its event_id; the connection still answers."""
    llm = FakeLLM(token_delay=0.05, reply=long_reply)
    async with (
        voice_server(tmp_path, llm) as server,
        connect_realtime(server.listening.realtime_url) as client,
    ):
        await client.send(user_text("Tell me a long story.", id="msg_q"))
        await client.send({"type": "response.create"})
        await client.recv_until("response.output_audio.delta")
        await client.send({"type": "response.cancel", "event_id": "evt_cancel_1"})
        events = await client.recv_until("response.done")
        await client.send({"type": "response.cancel", "event_id": "evt_cancel_2"})
        [error] = await client.recv_until("error")
        await client.send({"type": "conversation.item.retrieve", "item_id": "msg_q"})
        [retrieved] = await client.recv_until("conversation.item.retrieved")
        await client.expect_quiet()
    details = events[-1]["response"]["status_details"]
    assert details == {"type": "cancelled", "reason": "client_cancelled", "error": None}
    assert error["error"]["code"] == codes.RESPONSE_CANCEL_NOT_ACTIVE
    assert error["error"]["event_id"] == "evt_cancel_2"
    assert retrieved["item"]["id"] == "msg_q"


async def test_truncate_cuts_the_stored_reply_to_what_was_heard(tmp_path: Path) -> None:
    """conversation.item.truncate after an audio response: acknowledged with the clamped value, the
    item's transcript and the stored assistant message keep only the words heard (none at 0 ms)."""
    async with voice_server(tmp_path) as server, connect_realtime(server.listening.realtime_url) as client:
        await client.send(user_text("Hello"))
        await client.send({"type": "response.create"})
        events = await client.recv_until("response.done")
        item = events[-1]["response"]["output"][0]
        conversation_id = events[-1]["response"]["conversation_id"]
        truncate = {"type": "conversation.item.truncate", "item_id": item["id"], "content_index": 0}
        await client.send({**truncate, "audio_end_ms": 10_000_000})
        [clamped] = await client.recv_until("conversation.item.truncated")
        await client.send({**truncate, "audio_end_ms": 0})
        [cut] = await client.recv_until("conversation.item.truncated")
        await client.send({"type": "conversation.item.retrieve", "item_id": item["id"]})
        [retrieved] = await client.recv_until("conversation.item.retrieved")
        messages = await stored(server, conversation_id)
    assert 0 < clamped["audio_end_ms"] < 10_000_000 and cut["audio_end_ms"] == 0
    assert retrieved["item"]["content"][0]["transcript"] == ""
    assert messages[-1] == ("assistant", "", item["id"])


async def test_a_deleted_item_is_gone_from_the_conversation_the_llm_sees(tmp_path: Path) -> None:
    """conversation.item.delete of a user message: acknowledged, deleted from the store, and the next
    response's LLM context no longer has it."""
    llm = FakeLLM()
    async with (
        voice_server(tmp_path, llm) as server,
        connect_realtime(server.listening.realtime_url) as client,
    ):
        await client.send(user_text("forget me", id="msg_secret"))
        await client.send(user_text("keep me"))
        await client.recv_until("conversation.item.done")
        await client.recv_until("conversation.item.done")
        await client.send({"type": "conversation.item.delete", "item_id": "msg_secret"})
        [deleted] = await client.recv_until("conversation.item.deleted")
        await client.send({"type": "response.create"})
        await client.recv_until("response.done")
    assert deleted["item_id"] == "msg_secret"
    assert [m["content"] for m in llm.calls[0] if m["role"] == "user"] == ["keep me"]


async def test_refused_events_get_errors_that_echo_their_event_id(tmp_path: Path) -> None:
    """A malformed event, an unknown item and a second response.create while one runs are each refused
    with the realtime code, the offending field and the client's event_id; the session goes on."""
    llm = FakeLLM(token_delay=0.05, reply=long_reply)
    async with (
        voice_server(tmp_path, llm) as server,
        connect_realtime(server.listening.realtime_url) as client,
    ):
        await client.send(
            {"type": "session.update", "event_id": "evt_bad", "session": {"type": "realtime", "colour": 1}}
        )
        [bad] = await client.recv_until("error")
        await client.send({"type": "conversation.item.delete", "event_id": "evt_404", "item_id": "nope"})
        [missing] = await client.recv_until("error")
        await client.send({"type": "response.create", "event_id": "evt_first"})
        await client.recv_until("response.created")
        await client.send({"type": "response.create", "event_id": "evt_second"})
        busy = (await client.recv_until("error"))[-1]
        await client.send({"type": "response.cancel"})
        await client.recv_until("response.done")
        await client.send("{not json")
        [garbled] = await client.recv_until("error")
    assert (bad["error"]["code"], bad["error"]["param"], bad["error"]["event_id"]) == (
        "unknown_parameter",
        "session.colour",
        "evt_bad",
    )
    assert (missing["error"]["code"], missing["error"]["event_id"]) == ("item_not_found", "evt_404")
    assert busy["error"]["code"] == codes.CONVERSATION_ALREADY_HAS_ACTIVE_RESPONSE
    assert busy["error"]["event_id"] == "evt_second"
    assert garbled["error"]["code"] == "invalid_json" and garbled["error"]["event_id"] is None


async def test_the_beta_dialect_is_chosen_by_the_openai_beta_header(tmp_path: Path) -> None:
    """OpenAI-Beta: realtime=v1 gets the 2024 shapes: session fields at the top, response.text.delta."""
    url = None
    async with voice_server(tmp_path) as server:
        url = server.listening.realtime_url
        async with connect_realtime(url, dialect=codes.BETA) as client:
            session = client.received[0]["session"]
            await client.send({"type": "response.create", "response": {"modalities": ["text"]}})
            events = await client.recv_until("response.done")
    assert session["input_audio_format"] == "pcm16" and "audio" not in session
    assert "response.text.delta" in types(events) and "conversation.item.created" in types(events)


@pytest.mark.parametrize("dialect", [codes.GA, codes.BETA])
async def test_audio_append_charges_the_audio_budget_not_the_message_rate(
    tmp_path: Path, dialect: str
) -> None:
    """A burst of appends beyond the message rate is fine; audio faster than the budget is refused
    (audio_rate_exceeded); other events beyond the message rate get rate_limited; both echo event_id."""
    config = {"max_messages_per_second": 5, "max_audio_realtime_factor": 1.0}
    async with (
        voice_server(tmp_path, **config) as server,
        connect_realtime(server.listening.realtime_url, dialect=dialect) as client,
    ):
        chunk = b64(silence(0.05))
        for _ in range(20):  # 1 s of audio at once: within the 2 s burst, far over 5 messages
            await client.send({"type": "input_audio_buffer.append", "audio": chunk})
        await client.expect_quiet(0.3)
        for _ in range(60):  # 3 s more at once: over the budget
            await client.send({"type": "input_audio_buffer.append", "event_id": "evt_a", "audio": chunk})
        [audio_error] = await client.recv_until("error")
        for n in range(8):
            await client.send({"type": "conversation.item.retrieve", "event_id": f"evt_r{n}", "item_id": "x"})
        codes_seen = []
        while "rate_limited" not in codes_seen:
            error = (await client.recv_until("error"))[-1]["error"]
            codes_seen.append(error["code"])
    assert (
        audio_error["error"]["code"] == "audio_rate_exceeded" and audio_error["error"]["event_id"] == "evt_a"
    )
    assert codes_seen[:5] == ["item_not_found"] * 5  # the first five are within the rate and are answered
    assert error["event_id"] == "evt_r5"


async def test_a_server_with_the_turn_model_still_gives_realtime_sessions_server_vad(tmp_path: Path) -> None:
    """/v1/voice sessions default to semantic turn detection when the end-of-turn model is loaded; the
    realtime API cannot name it, so realtime sessions keep server_vad (and the SDK's types accept it)."""
    from tests.conftest import connect
    from trio_voice.testing import FakeTurnModel

    engines = {"stt": FakeSTT(), "vad_factory": FakeVAD, "turn_model": FakeTurnModel()}
    async with run_server(tmp_path, engines) as server:
        async with connect(server.ws_url) as native:
            assert native.received[0]["config"]["turn_detection"]["type"] == "semantic"
        async with connect_realtime(server.listening.realtime_url) as client:
            detection = client.received[0]["session"]["audio"]["input"]["turn_detection"]
    assert detection["type"] == "server_vad"
