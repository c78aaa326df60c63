"""Pausing a reply: the gate alone under autojump_clock, then whole sessions against a real server on port 0."""

from __future__ import annotations

import base64

import trio
import trio.testing

from tests.conftest import connect, run_server
from trio_voice.events import AudioReady, PhraseReady, TextDelta
from trio_voice.pause import PauseGate, retract
from trio_voice.testing import FakeLLM, FakeSTT, FakeTTS, FakeVAD, utterance
from trio_voice.turn import TurnRecord

# --- the gate, under autojump_clock ----------------------------------------------------------------


async def produce(gate: PauseGate, emit_to: list, count: int, made: list[int]) -> None:
    async def turn(emit) -> None:
        for n in range(count):
            await trio.sleep(1)
            await emit(n)
            made.append(n)

    async def sink(event) -> None:
        await trio.sleep(0.5)  # a writer that takes a moment per event
        emit_to.append(event)

    await gate.run(turn, sink)


async def test_a_paused_gate_holds_events_in_order_and_resume_sends_them_all(
    autojump_clock: trio.abc.Clock,
) -> None:
    """While paused, events are held and generation goes on; resumed, they go out in order, then the rest."""
    gate = PauseGate(max_events=100, max_bytes=10_000)
    sent: list[int] = []
    made: list[int] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(produce, gate, sent, 10, made)
        await trio.sleep(3.2)
        gate.pause()
        paused_at = list(sent)
        await trio.sleep(4)
        assert sent == paused_at  # nothing went out while paused
        assert len(made) > len(paused_at) + 2  # but the reply went on being made
        gate.resume()
    assert sent == list(range(10))


async def test_a_full_gate_makes_generation_wait(autojump_clock: trio.abc.Clock) -> None:
    """Past max_events held, emit waits: the turn stops making events until the reply is resumed."""
    gate = PauseGate(max_events=3, max_bytes=10_000)
    gate.pause()
    sent: list[int] = []
    made: list[int] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(produce, gate, sent, 10, made)
        await trio.sleep(30)
        assert (made, sent, len(gate.held)) == ([0, 1, 2], [], 3)
        gate.resume()
    assert sent == list(range(10)) and gate.peak_events == 3


async def test_cancelling_a_paused_reply_drops_what_was_held(autojump_clock: trio.abc.Clock) -> None:
    """Cancelled while paused, the held events are never sent and stay in ``held`` for retract."""
    gate = PauseGate()
    sent: list[int] = []
    made: list[int] = []
    with trio.CancelScope() as scope:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(produce, gate, sent, 10, made)
            await trio.sleep(2.2)
            gate.pause()
            await trio.sleep(3)
            scope.cancel()
    assert sent == [0] and list(gate.held) == made[1:]


async def test_a_reply_that_ends_while_paused_waits_for_resume(autojump_clock: trio.abc.Clock) -> None:
    """run returns only once everything made has been sent, so response.done never overtakes held events."""
    gate = PauseGate()
    gate.pause()
    sent: list[int] = []
    done = trio.Event()

    async def run() -> None:
        await produce(gate, sent, 3, [])
        done.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run)
        await trio.sleep(100)
        assert not done.is_set() and sent == []
        gate.resume()
    assert sent == [0, 1, 2]


async def test_an_engine_error_comes_out_of_the_gate_unwrapped(autojump_clock: trio.abc.Clock) -> None:
    """A turn's own exception is raised as itself, so converse's ``except EngineError`` still sees it."""
    from trio_voice.errors import LLMError

    async def failing(emit) -> None:
        await emit("first")
        raise LLMError("broken", code="llm_stream_broken")

    async def sink(event) -> None:
        await trio.lowlevel.checkpoint()

    gate = PauseGate()
    try:
        await gate.run(failing, sink)
    except LLMError as exc:
        assert exc.code == "llm_stream_broken"
    else:
        raise AssertionError("the error should have come out")


def test_retract_takes_dropped_events_out_of_the_record() -> None:
    """The record loses exactly the text, phrases and audio of the dropped events."""
    record = TurnRecord(started_at=0.0, text="Hello there. How", phrases=["Hello there.", "How"])
    record.phrase_audio_ms = [500.0, 200.0]
    dropped = [
        AudioReady("r", 0, b"\x00\x00" * 2205, 22050),  # 100 ms of phrase 0
        TextDelta("r", " How"),
        PhraseReady("r", 1, "How"),
        AudioReady("r", 1, b"\x00\x00" * 4410, 22050),  # 200 ms of phrase 1
    ]
    retract(record, dropped)
    assert record.text == "Hello there."
    assert record.phrases == ["Hello there."]
    assert record.phrase_audio_ms == [400.0]


# --- whole sessions ----------------------------------------------------------------------------------


def reply_audio(events: list[dict]) -> bytes:
    return b"".join(base64.b64decode(e["audio"]) for e in events if e["type"] == "response.audio.delta")


async def test_a_paused_and_resumed_reply_is_byte_identical_to_an_uninterrupted_one(tmp_path) -> None:
    """Same text, fake TTS: the audio of a reply paused mid-way and resumed equals, byte for byte, the
    audio of the same reply never paused; while paused, other events still flow and the reply does not."""
    llm = FakeLLM(token_delay=0.01)
    tts = FakeTTS(delay=lambda text: 0.02)
    async with run_server(tmp_path, {"llm": llm, "tts": tts}) as server:
        async with connect(server.ws_url) as plain:
            uninterrupted = await plain.reply({"type": "message.create", "text": "same question"})
        async with connect(server.ws_url) as client:
            await client.send({"type": "message.create", "text": "same question"})
            events = await client.recv_until("response.audio.delta")
            response_id = events[0]["response_id"]
            await client.send({"type": "response.pause", "response_id": response_id, "request_id": "p"})
            await client.send({"type": "ping", "request_id": "during"})
            # Events already handed to the writer before the pause may still arrive; then only the pong.
            while True:
                event = await client.recv()
                events.append(event)
                if event["type"] == "pong":
                    break
            started = len(tts.started)
            await client.expect_quiet(0.4)
            assert len(tts.started) > started  # the reply was still being made while paused
            await client.send({"type": "response.resume", "request_id": "r"})
            events += await client.recv_until("response.done")
    paused = [e for e in events if e.get("response_id") == response_id]
    assert paused[-1]["status"] == "completed"
    assert paused[-1]["text"] == uninterrupted[-1]["text"]
    assert reply_audio(paused) == reply_audio(uninterrupted)
    # Each stream of the reply, event by event: nothing lost, nothing repeated (text runs ahead of audio
    # by timing, so only their interleaving may differ).
    for kind, key in (
        ("response.text.delta", "delta"),
        ("response.phrase", "text"),
        ("response.audio.delta", "audio"),
    ):
        assert [e[key] for e in paused if e["type"] == kind] == [
            e[key] for e in uninterrupted if e["type"] == kind
        ]


async def test_a_paused_reply_is_still_cancellable_and_keeps_only_what_was_sent(tmp_path) -> None:
    """response.cancel lands on a paused reply at once; what was held is dropped, and the conversation
    keeps only the words the client got."""
    llm = FakeLLM(token_delay=0.01)
    tts = FakeTTS(delay=lambda text: 0.02)
    async with run_server(tmp_path, {"llm": llm, "tts": tts}) as server, connect(server.ws_url) as client:
        await client.send({"type": "message.create", "text": "tell me"})
        events = await client.recv_until("response.phrase")
        await client.send({"type": "response.pause"})
        await client.expect_quiet(0.3)
        await client.send({"type": "response.cancel", "request_id": "stop"})
        events += await client.recv_until("response.done")
        await client.expect_quiet()
        done = events[-1]
        assert (done["status"], done["reason"]) == ("cancelled", "client_cancelled")
        sent_text = "".join(e["delta"] for e in events if e["type"] == "response.text.delta")
        assert done["text"] == sent_text
        assert llm.active == 0 and tts.active == 0
        history = await server.engines.store.history(client.received[0]["conversation_id"], limit=5)
        assert history[-1].text == sent_text and history[-1].interrupted


async def test_a_paused_reply_waits_at_its_bound_and_finishes_when_resumed(tmp_path) -> None:
    """With room for 4 held events, a paused reply stops being made (the LLM stream waits) until resumed."""
    llm = FakeLLM()
    async with (
        run_server(tmp_path, {"llm": llm}, pause_buffer_events=4) as server,
        connect(server.ws_url) as client,
    ):
        await client.send({"type": "message.create", "text": "tell me"})
        created = await client.recv_until("response.created")
        await client.send({"type": "response.pause"})
        await client.expect_quiet(0.3)
        assert llm.active == 1  # generation is waiting for room, not finished
        await client.send({"type": "response.resume"})
        events = await client.recv_until("response.done")
        assert events[-1]["status"] == "completed"
        assert events[-1]["response_id"] == created[-1]["response_id"]


async def test_barge_in_ends_a_paused_reply(tmp_path) -> None:
    """The user speaking over a paused reply cancels it (turn_detected), and the spoken turn gets its reply."""
    engines = {"llm": FakeLLM(token_delay=0.01), "stt": FakeSTT(), "vad_factory": FakeVAD}
    async with run_server(tmp_path, engines) as server, connect(server.ws_url) as client:
        await client.send({"type": "message.create", "text": "tell me"})
        first = (await client.recv_until("response.created"))[-1]["response_id"]
        await client.send({"type": "response.pause"})
        audio = utterance(0.6)
        for offset in range(0, len(audio), 3200):
            await client.send(audio[offset : offset + 3200])
        done = await client.recv_until("response.done", response_id=first)
        assert (done[-1]["status"], done[-1]["reason"]) == ("cancelled", "turn_detected")
        second = await client.recv_until("response.done")
        assert second[-1]["status"] == "completed"


async def test_pausing_when_nothing_runs_is_refused(tmp_path) -> None:
    """response.pause and response.resume with no running reply get no_active_response."""
    async with run_server(tmp_path) as server, connect(server.ws_url) as client:
        for kind in ("response.pause", "response.resume"):
            await client.send({"type": kind, "request_id": kind})
            error = await client.recv()
            assert (error["code"], error["request_id"]) == ("no_active_response", kind)
