"""Session tests: a real server on port 0 with fake engines, driven by a WebSocket client."""

from __future__ import annotations

import base64
import json

import trio

from tests.conftest import RunningServer, connect, run_server
from trio_voice.testing import FakeLLM, FakeTTS


def reply_events_after_done(events: list[dict], response_id: str) -> list[dict]:
    """Events of ``response_id`` that arrived after its response.done."""
    done_at = next(
        i for i, e in enumerate(events) if e["type"] == "response.done" and e["response_id"] == response_id
    )
    return [e for e in events[done_at + 1 :] if e.get("response_id") == response_id]


async def test_session_created_comes_first_with_ids(server: RunningServer) -> None:
    """The first event of a session is session.created with seq 1 and both ids."""
    async with connect(server.ws_url, created=False) as client:
        event = await client.recv()
    assert event["type"] == "session.created" and event["seq"] == 1
    assert event["session_id"].startswith("sess_") and event["conversation_id"]


async def test_message_gets_a_complete_spoken_reply(server: RunningServer) -> None:
    """message.create yields text deltas, phrases and audio, then response.done completed with metrics."""
    async with connect(server.ws_url) as client:
        events = await client.reply(
            {"type": "message.create", "text": "What is the capital of France?", "request_id": "q1"}
        )
    types = [e["type"] for e in events]
    assert types[0] == "response.created" and types[-1] == "response.done"
    assert {"response.text.delta", "response.phrase", "response.audio.delta"} <= set(types)
    assert all(e.get("request_id") == "q1" for e in events)
    done = events[-1]
    assert done["status"] == "completed" and done["reason"] is None
    assert done["text"] == "".join(e["delta"] for e in events if e["type"] == "response.text.delta")
    assert "capital of France" in done["text"]
    audio = b"".join(base64.b64decode(e["audio"]) for e in events if e["type"] == "response.audio.delta")
    assert len(audio) > 0 and len(audio) % 2 == 0
    assert {e["sample_rate"] for e in events if e["type"] == "response.audio.delta"} == {22050}
    for key in ("llm_first_token_ms", "first_phrase_ms", "first_audio_ms", "total_ms", "tokens"):
        assert done["metrics"][key] is not None


async def test_new_message_cancels_the_running_reply_and_nothing_stale_follows(tmp_path) -> None:
    """A second message mid-reply ends the first with cancelled/new_message; none of its events come later."""
    llm = FakeLLM(token_delay=0.05)
    tts = FakeTTS(delay=lambda text: 0.1)
    async with run_server(tmp_path, {"llm": llm, "tts": tts}) as server, connect(server.ws_url) as client:
        await client.send({"type": "message.create", "text": "first"})
        first = await client.recv_until("response.audio.delta")
        first_id = first[0]["response_id"]
        await client.send({"type": "message.create", "text": "second"})
        events = await client.recv_until("response.done", status="completed")
        await client.expect_quiet()
        all_events = first + events
        done = [e for e in all_events if e["type"] == "response.done"]
        assert [(d["response_id"] == first_id, d["status"], d["reason"]) for d in done] == [
            (True, "cancelled", "new_message"),
            (False, "completed", None),
        ]
        assert reply_events_after_done(all_events, first_id) == []
        assert llm.active == 0 and tts.active == 0


async def test_response_cancel_stops_audio_at_once(tmp_path) -> None:
    """response.cancel after the first audio ends the reply as cancelled/client_cancelled, with nothing after."""
    llm = FakeLLM(token_delay=0.05)
    tts = FakeTTS(delay=lambda text: 0.1)
    async with run_server(tmp_path, {"llm": llm, "tts": tts}) as server, connect(server.ws_url) as client:
        await client.send({"type": "message.create", "text": "tell me"})
        events = await client.recv_until("response.audio.delta")
        await client.send({"type": "response.cancel", "request_id": "stop"})
        events += await client.recv_until("response.done")
        await client.expect_quiet()
        assert events[-1]["status"] == "cancelled" and events[-1]["reason"] == "client_cancelled"
        assert events[-1]["text"] == "".join(e["delta"] for e in events if e["type"] == "response.text.delta")
        assert llm.active == 0 and tts.active == 0
        # The conversation keeps what was sent, marked interrupted.
        conversation = client.received[0]["conversation_id"]
        history = await server.engines.store.history(conversation, limit=10)
        assert [(m.role, m.interrupted) for m in history] == [("user", False), ("assistant", True)]
        assert history[-1].text == events[-1]["text"]


async def test_cancel_without_a_running_reply_is_an_error(server: RunningServer) -> None:
    """response.cancel when nothing runs gets error no_active_response, and the session goes on."""
    async with connect(server.ws_url) as client:
        await client.send({"type": "response.cancel", "request_id": "c1"})
        error = await client.recv()
        assert (error["type"], error["code"], error["request_id"]) == ("error", "no_active_response", "c1")
        await client.send({"type": "ping"})
        assert (await client.recv())["type"] == "pong"


async def test_bad_input_gets_clear_errors_and_the_session_survives(server: RunningServer) -> None:
    """Malformed JSON, unknown types, wrong field types, long text and oversized frames each get an error."""
    limit = server.config.max_text_chars
    bad = [
        ("{not json", "invalid_json"),
        (json.dumps([1, 2]), "invalid_message"),
        (json.dumps({"type": "nonsense"}), "unknown_type"),
        (json.dumps({"type": "message.create", "text": 42}), "invalid_field"),
        (json.dumps({"type": "message.create", "text": "x" * (limit + 1)}), "text_too_long"),
        ("x" * (server.config.max_frame_bytes + 1), "frame_too_large"),
        (b"\x01\x02\x03", "invalid_audio"),
    ]
    async with connect(server.ws_url) as client:
        for frame, code in bad:
            await client.send(frame)
            event = await client.recv()
            assert (event["type"], event["code"]) == ("error", code), frame[:40]
            assert event["message"]
        events = await client.reply({"type": "message.create", "text": "still there?"})
        assert events[-1]["status"] == "completed"


async def test_llm_unreachable_fails_the_reply_and_the_next_one_works(tmp_path) -> None:
    """An unreachable LLM gives error llm_unreachable and response.done failed; the session keeps working."""
    llm = FakeLLM(unreachable=True)
    async with run_server(tmp_path, {"llm": llm}) as server, connect(server.ws_url) as client:
        events = await client.reply({"type": "message.create", "text": "hello"})
        errors = [e for e in events if e["type"] == "error"]
        assert [e["code"] for e in errors] == ["llm_unreachable"]
        assert (events[-1]["status"], events[-1]["reason"]) == ("failed", "llm_unreachable")
        llm.unreachable = False
        events = await client.reply({"type": "message.create", "text": "hello again"})
        assert events[-1]["status"] == "completed"


async def test_llm_breaking_mid_stream_fails_cleanly(tmp_path) -> None:
    """A stream that breaks mid-reply ends with error llm_stream_broken and response.done failed."""
    async with (
        run_server(tmp_path, {"llm": FakeLLM(fail_after_tokens=4)}) as server,
        connect(server.ws_url) as client,
    ):
        events = await client.reply({"type": "message.create", "text": "hello"})
        assert (events[-1]["status"], events[-1]["reason"]) == ("failed", "llm_stream_broken")
        assert any(e["type"] == "error" and e["code"] == "llm_stream_broken" for e in events)


async def test_conversation_memory_spans_turns_and_sessions(tmp_path) -> None:
    """Later turns see earlier ones; a new session continues a stored conversation by its id."""
    llm = FakeLLM()
    async with run_server(tmp_path, {"llm": llm}) as server:
        async with connect(server.ws_url) as client:
            conversation = client.received[0]["conversation_id"]
            await client.reply({"type": "message.create", "text": "My name is Ada."})
            await client.reply({"type": "message.create", "text": "What is my name?"})
        assert [m["role"] for m in llm.calls[-1]] == ["system", "user", "assistant", "user"]
        async with connect(server.ws_url) as client:
            await client.send(
                {"type": "session.update", "conversation_id": conversation, "instructions": "Be brief."}
            )
            updated = await client.recv()
            assert updated["type"] == "session.updated" and updated["conversation_id"] == conversation
            await client.reply({"type": "message.create", "text": "Still me."})
        last_call = llm.calls[-1]
        assert last_call[0] == {"role": "system", "content": "Be brief."}
        assert [m["content"] for m in last_call if m["role"] == "user"] == [
            "My name is Ada.",
            "What is my name?",
            "Still me.",
        ]


async def test_unknown_conversation_id_is_refused(server: RunningServer) -> None:
    """session.update with a conversation id that does not exist gets conversation_not_found."""
    async with connect(server.ws_url) as client:
        await client.send({"type": "session.update", "conversation_id": "conv_nope"})
        event = await client.recv()
        assert (event["type"], event["code"]) == ("error", "conversation_not_found")


async def test_speak_synthesizes_text_without_the_llm(tmp_path) -> None:
    """speak produces a reply with audio of exactly the given text, and the LLM is not asked."""
    llm = FakeLLM()
    async with run_server(tmp_path, {"llm": llm}) as server, connect(server.ws_url) as client:
        events = await client.reply({"type": "speak", "text": "Today we learn fractions. Ready?"})
    assert events[-1]["status"] == "completed" and events[-1]["text"] == "Today we learn fractions. Ready?"
    assert [e["text"] for e in events if e["type"] == "response.phrase"] == [
        "Today we learn fractions.",
        "Ready?",
    ]
    assert llm.calls == []


async def test_truncate_keeps_only_the_words_heard(tmp_path) -> None:
    """response.truncate cuts the stored assistant message to the audio the client played."""
    tts = FakeTTS(ms_per_char=100.0)
    async with run_server(tmp_path, {"tts": tts}) as server, connect(server.ws_url) as client:
        events = await client.reply({"type": "speak", "text": "One two three four. Five six seven eight."})
        first_phrase_ms = len("One two three four.") * 100.0
        await client.send(
            {
                "type": "response.truncate",
                "response_id": events[0]["response_id"],
                "audio_end_ms": int(first_phrase_ms),
            }
        )
        await client.send({"type": "ping"})
        assert (await client.recv())["type"] == "pong"
        conversation = client.received[0]["conversation_id"]
        [stored] = await server.engines.store.history(conversation, limit=5)
    assert (stored.text, stored.interrupted) == ("One two three four.", True)


async def test_client_vanishing_mid_reply_leaves_nothing_running(tmp_path) -> None:
    """A client that disconnects mid-audio ends its session; no engine call or session is left behind."""
    llm = FakeLLM(token_delay=0.05)
    tts = FakeTTS(delay=lambda text: 0.2)
    async with run_server(tmp_path, {"llm": llm, "tts": tts}) as server:
        async with connect(server.ws_url) as client:
            await client.send({"type": "message.create", "text": "talk a lot"})
            await client.recv_until("response.audio.delta")
        with trio.fail_after(5):
            while server.telemetry.sessions_open._value.get() > 0:  # noqa: ASYNC110 - teardown has no event to await
                await trio.sleep(0.01)
        assert llm.active == 0 and tts.active == 0
        # The interrupted reply was stored as far as it got.
        turns = await server.engines.store.recent_turns(5)
        assert [(t["status"], t["reason"]) for t in turns] == [("cancelled", "client_disconnected")]


async def test_truncate_of_a_running_reply_applies_when_it_is_stored(tmp_path) -> None:
    """A truncate sent while its reply still runs is accepted, and the stored message keeps only what was heard."""
    tts = FakeTTS(ms_per_char=100.0, delay=lambda text: 0.05)
    async with run_server(tmp_path, {"tts": tts}) as server, connect(server.ws_url) as client:
        await client.send({"type": "speak", "text": "One two three four. Five six seven eight. Nine ten eleven twelve."})
        events = await client.recv_until("response.audio.delta")
        response_id = events[0]["response_id"]
        heard_ms = int(len("One two three four.") * 100.0)
        await client.send({"type": "response.truncate", "response_id": response_id, "audio_end_ms": heard_ms})
        await client.send({"type": "response.cancel"})
        events += await client.recv_until("response.done")
        assert not [e for e in events if e["type"] == "error"]
        conversation = client.received[0]["conversation_id"]
        await client.send({"type": "ping"})
        await client.recv_until("pong")
        [stored] = await server.engines.store.history(conversation, limit=5)
    assert (stored.text, stored.interrupted) == ("One two three four.", True)
