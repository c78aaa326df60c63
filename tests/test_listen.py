"""Stage tests of voice input (VAD → turn detection → partial/final transcripts → barge-in) under autojump_clock.

The listener runs with an energy VAD and a scripted recognizer that sleeps like a slow model, so the
times below are exact: they are what the code decides, not what a machine managed.
"""

from __future__ import annotations

from functools import partial

import attrs
import pytest
import trio

from trio_voice import codec
from trio_voice.config import Config
from trio_voice.engines import Engines
from trio_voice.events import SpeechStarted, SpeechStopped, TranscriptFinal, TranscriptPartial
from trio_voice.limits import TokenBucket
from trio_voice.listen import listen_task
from trio_voice.listen_items import AudioIn, Commit
from trio_voice.session_context import SessionContext
from trio_voice.session_state import SessionState
from trio_voice.telemetry import Telemetry
from trio_voice.testing import FakeLLM, FakeStore, FakeSTT, FakeTTS, FakeVAD, tone
from trio_voice.turn_control import PendingTurn, TurnKind

RATE = 16000
FRAME_S = 0.02
CHUNK_S = 0.032


@attrs.define
class Harness:
    ctx: SessionContext
    events: list[tuple[float, object]]
    turns: list[PendingTurn]
    audio_tx: trio.MemorySendChannel
    stt: FakeSTT
    released_at: list[float] = attrs.field(factory=list)  # when each turn was let go

    async def say(self, speech_s: float, *, silence_s: float = 1.0, lead_s: float = 0.2) -> float:
        """Stream silence, a tone standing in for speech, and silence, in real time; return when speech ended."""
        speech_end = 0.0
        for seconds, loud in ((lead_s, False), (speech_s, True), (silence_s, False)):
            frames = round(seconds / FRAME_S)
            for _ in range(frames):
                pcm = tone(FRAME_S, RATE, amplitude=0.3) if loud else bytes(int(RATE * FRAME_S) * 2)
                await self.audio_tx.send(AudioIn(pcm, trio.current_time()))
                await trio.sleep(FRAME_S)
            if loud:
                speech_end = trio.current_time()
        return speech_end

    def of(self, kind: type) -> list[tuple[float, object]]:
        return [(t, e) for t, e in self.events if isinstance(e, kind)]


async def start(
    nursery: trio.Nursery, *, stt: FakeSTT | None = None, store: FakeStore | None = None, **config: object
) -> Harness:
    cfg = Config(data_dir="/nonexistent", **config)
    stt = stt or FakeSTT()
    engines = Engines(llm=FakeLLM(), tts=FakeTTS(), store=store, stt=stt, vad_factory=FakeVAD)  # type: ignore[arg-type]
    state = SessionState(
        session_id="sess_test",
        conversation_id="conv_test",
        instructions="",
        turn_detection=codec.TurnDetection(
            type="server_vad", threshold=0.5, silence_ms=cfg.vad_silence_ms, prefix_ms=300
        ),
    )
    out_tx, out_rx = trio.open_memory_channel(0)
    audio_tx, audio_rx = trio.open_memory_channel(0)
    ctx = SessionContext(state, engines, cfg, Telemetry(), out_tx, audio_tx, TokenBucket(10, 10))
    harness = Harness(ctx, [], [], audio_tx, stt)

    async def collect_events() -> None:
        async for item in out_rx:
            harness.events.append((trio.current_time(), item.event))

    async def collect_turns() -> None:
        """Stands in for converse_task: takes each turn the control releases, and runs none."""
        while True:
            superseded, turn = await state.turns.wait_next()
            released = [*(old for old, _ in superseded), *([turn] if turn else [])]
            harness.turns.extend(released)
            harness.released_at.extend(trio.current_time() for _ in released)

    nursery.start_soon(collect_events)
    nursery.start_soon(collect_turns)
    nursery.start_soon(partial(listen_task, audio_rx, ctx=ctx))
    return harness


async def test_speech_start_and_stop_are_placed_in_the_stream(autojump_clock: trio.abc.Clock) -> None:
    """A 1 s utterance after 0.2 s of silence starts at ~200 ms and stops at ~1200 ms of audio."""
    async with trio.open_nursery() as nursery:
        h = await start(nursery)
        await h.say(1.0)
        nursery.cancel_scope.cancel()
    [(_, started)] = h.of(SpeechStarted)
    [(_, stopped)] = h.of(SpeechStopped)
    assert started.audio_start_ms == pytest.approx(200, abs=CHUNK_S * 1000)
    assert stopped.audio_end_ms == pytest.approx(1200, abs=CHUNK_S * 1000)


async def test_turn_ends_after_the_silence_duration(autojump_clock: trio.abc.Clock) -> None:
    """speech_stopped is decided silence_ms after the speech ended (to one 32 ms chunk), not before."""
    async with trio.open_nursery() as nursery:
        h = await start(nursery, vad_silence_ms=700)
        speech_end = await h.say(1.0, silence_s=1.5)
        nursery.cancel_scope.cancel()
    [(stopped_at, _)] = h.of(SpeechStopped)
    assert stopped_at - speech_end == pytest.approx(0.7, abs=CHUNK_S + FRAME_S)


async def test_partials_arrive_at_the_configured_pace(autojump_clock: trio.abc.Clock) -> None:
    """With an instant recognizer, 2 s of speech yields a partial every 0.5 s of it (3), then one final."""
    async with trio.open_nursery() as nursery:
        h = await start(nursery, partial_interval=0.5)
        await h.say(2.0)
        nursery.cancel_scope.cancel()
    [(started_at, _)] = h.of(SpeechStarted)
    partial_times = [t - started_at for t, _ in h.of(TranscriptPartial)]
    assert len(partial_times) == 3  # detection comes 64 ms in, so 1.94 s of speech follows it
    for n, at in enumerate(partial_times, 1):
        assert at == pytest.approx(0.5 * n - 0.064, abs=CHUNK_S + FRAME_S)  # detection came 64 ms into speech
    assert len(h.of(TranscriptFinal)) == 1


async def test_silence_inside_a_turn_posts_no_partials(autojump_clock: trio.abc.Clock) -> None:
    """Partials are paced by new speech: the hangover after the last word adds no partial jobs."""
    async with trio.open_nursery() as nursery:
        h = await start(nursery, partial_interval=0.3, vad_silence_ms=1500)
        speech_end = await h.say(1.0, silence_s=2.0)
        nursery.cancel_scope.cancel()
    partial_times = [t for t, _ in h.of(TranscriptPartial)]
    assert len(partial_times) == 3 and all(t <= speech_end + CHUNK_S for t in partial_times)
    assert len(h.stt.calls) == 4  # three partials and the final


async def test_slow_recognizer_drops_stale_partials_never_the_final(autojump_clock: trio.abc.Clock) -> None:
    """When each partial takes longer than the pace, waiting jobs are replaced, and the final still comes."""
    stt = FakeSTT(
        seconds_per_audio_second=1.0
    )  # a 1 s clip takes 1 s: slower than real time once speech grows
    async with trio.open_nursery() as nursery:
        h = await start(nursery, stt=stt, partial_interval=0.25)
        await h.say(3.0, silence_s=5.0)
        nursery.cancel_scope.cancel()
    posted = 3.0 / 0.25
    partial_calls = len(stt.calls) - 1
    assert partial_calls < posted / 2
    [(_, final)] = h.of(TranscriptFinal)
    assert final.text.startswith("I spoke for 3.")
    assert len(h.turns) == 1


async def test_final_starts_a_turn_timed_from_the_end_of_speech(autojump_clock: trio.abc.Clock) -> None:
    """The final transcript queues a chat turn whose clock starts at the end of speech, with VAD/STT marks."""
    stt = FakeSTT(seconds_per_audio_second=0.1)
    async with trio.open_nursery() as nursery:
        h = await start(nursery, stt=stt, vad_silence_ms=500)
        speech_end = await h.say(1.0)
        nursery.cancel_scope.cancel()
    [turn] = h.turns
    assert turn.kind == TurnKind.CHAT and turn.text.startswith("I spoke for")
    assert turn.started_at == pytest.approx(speech_end, abs=CHUNK_S)
    assert turn.speech_marks["vad_decided"] - turn.speech_marks["speech_end"] == pytest.approx(
        0.5, abs=CHUNK_S
    )
    # The final transcribes the utterance (plus prefix and tail) at 0.1 s per second of audio.
    assert turn.speech_marks["transcript_final"] - turn.speech_marks["vad_decided"] == pytest.approx(
        0.14, abs=0.02
    )


async def test_speech_during_a_reply_cancels_it_at_once(autojump_clock: trio.abc.Clock) -> None:
    """Barge-in: when speech is detected, the running turn's scope is cancelled with reason turn_detected."""
    async with trio.open_nursery() as nursery:
        h = await start(nursery)
        running = h.ctx.state.turns.start(PendingTurn(TurnKind.CHAT, "hi", None, 0.0), "resp_running")
        await h.say(0.5)
        nursery.cancel_scope.cancel()
    [(started_at, _)] = h.of(SpeechStarted)
    assert running.scope.cancel_called and running.reason == codec.codes.CancelReason.TURN_DETECTED
    assert running.speech_started_at == pytest.approx(started_at - 0.064, abs=CHUNK_S + FRAME_S)


async def test_silence_and_short_clicks_start_nothing(autojump_clock: trio.abc.Clock) -> None:
    """Silence, and a click shorter than the minimum speech duration, produce no events and no turn."""
    async with trio.open_nursery() as nursery:
        h = await start(nursery)
        await h.say(0.02, silence_s=1.0)  # one 20 ms frame, inside one 32 ms VAD chunk
        nursery.cancel_scope.cancel()
    assert h.events == [] and h.turns == []


async def test_commit_ends_the_turn_by_hand_with_voice_detection_on(autojump_clock: trio.abc.Clock) -> None:
    """input_audio.commit mid-speech ends the turn at once instead of waiting for silence."""
    async with trio.open_nursery() as nursery:
        h = await start(nursery, vad_silence_ms=5000)
        await h.say(1.0, silence_s=0.1)
        await h.audio_tx.send(Commit("c1"))
        await trio.sleep(0.1)
        nursery.cancel_scope.cancel()
    assert len(h.of(SpeechStopped)) == 1 and len(h.turns) == 1


def test_audio_window_reads_back_what_it_kept_across_trims() -> None:
    """Clips come back sample-exact by stream position, before and after old frames are trimmed away."""
    import numpy as np

    from trio_voice.listen_buffers import AudioWindow

    window = AudioWindow()
    samples = np.arange(16000 * 3, dtype=np.float32)
    for i in range(0, samples.size, 320):
        window.append(samples[i : i + 320])
    assert window.end_ms == 3000.0
    assert np.array_equal(window.between(1000, 1020), samples[16000:16320])
    window.trim(2000)
    window.append(np.arange(48000, 48320, dtype=np.float32))
    assert np.array_equal(window.between(2500, 3020), np.arange(40000, 48320, dtype=np.float32))


async def test_a_late_final_is_held_over_the_next_utterance_and_merged(
    autojump_clock: trio.abc.Clock,
) -> None:
    """Utterance 1's final (a slow recognizer) arrives while utterance 2 is being spoken: no turn starts
    over the user; when utterance 2 has ended, one turn carries both transcripts."""
    stt = FakeSTT(seconds_per_audio_second=1.0)
    async with trio.open_nursery() as nursery:
        h = await start(nursery, stt=stt, vad_silence_ms=300, partial_interval=10.0)
        await h.say(1.0, silence_s=0.5)  # utterance 1 ends; its final takes ~1.4 s
        released_during_speech = []

        async def watch() -> None:
            while h.ctx.state.turns.user_speaking or not h.turns:
                released_during_speech.append(bool(h.turns) and h.ctx.state.turns.user_speaking)
                await trio.sleep(0.02)

        nursery.start_soon(watch)
        await h.say(1.5, silence_s=3.0, lead_s=0.0)  # utterance 2, begun before final 1 came back
        nursery.cancel_scope.cancel()
    assert len(h.of(TranscriptFinal)) == 2
    [turn] = h.turns
    first, second = (e.text for _, e in h.of(TranscriptFinal))
    assert turn.text == f"{first} {second}"
    assert not any(released_during_speech)


async def test_transcribe_clips_wait_in_a_bounded_queue_behind_finals(autojump_clock: trio.abc.Clock) -> None:
    """Clips go through the one transcription task, in order; beyond max_queued_transcriptions waiting,
    a clip is refused with audio_rate_exceeded instead of piling up on the shared recognizer."""
    from trio_voice.events import ErrorEvent
    from trio_voice.listen_items import TranscribeClip

    stt = FakeSTT(seconds_per_audio_second=1.0)
    async with trio.open_nursery() as nursery:
        h = await start(nursery, stt=stt, max_queued_transcriptions=2)
        for n in range(6):  # clip n lasts 1.n seconds, so its transcript says which it was
            await h.audio_tx.send(TranscribeClip(tone(1.0 + n / 10, RATE, amplitude=0.3), RATE, f"c{n}"))
        await trio.sleep(10.0)
        nursery.cancel_scope.cancel()
    refused = [e for _, e in h.of(ErrorEvent) if e.code == "audio_rate_exceeded"]
    finals = [e.text for _, e in h.of(TranscriptFinal)]
    assert len(refused) == 3  # one being transcribed and two waiting; the rest refused
    assert finals == [f"I spoke for 1.{n} seconds" for n in range(3)]  # in the order they came
    assert stt.active == 0


# --- what the realtime API needs of the listener: no automatic replies, no interruption, stored items ---


async def test_without_automatic_replies_a_final_is_stored_under_its_utterances_item_id(
    autojump_clock: trio.abc.Clock,
) -> None:
    """create_response off: the final is stored as a user message named by its speech_started, no turn."""
    store = FakeStore()
    async with trio.open_nursery() as nursery:
        h = await start(nursery, store=store)
        h.ctx.state.create_response = False
        await h.say(1.0)
        await trio.sleep(0.5)
        nursery.cancel_scope.cancel()
    [(_, started)] = h.of(SpeechStarted)
    [(_, final)] = h.of(TranscriptFinal)
    assert h.turns == [] and not h.ctx.state.turns.held
    [message] = store.conversations["conv_test"]
    assert (message.role, message.text, message.item_id) == ("user", final.text, started.item_id)
    assert started.item_id is not None


async def test_an_announced_commit_holds_the_next_request_until_its_words_are_stored(
    autojump_clock: trio.abc.Clock,
) -> None:
    """Manual turns, no automatic reply: a request made right after an announced commit starts only
    once the commit's transcript is stored (here the store takes 1 s), so the reply sees the words."""
    store = FakeStore(delay=1.0)
    async with trio.open_nursery() as nursery:
        h = await start(nursery, store=store)
        state = h.ctx.state
        state.turn_detection = attrs.evolve(state.turn_detection, type="none")
        state.create_response = False
        await h.say(1.0, silence_s=0.1)
        committed_at = trio.current_time()
        state.turns.transcription_started()  # what the receiver does as it forwards the commit
        await h.audio_tx.send(Commit("c1", item_id="item_c1", announced=True))
        state.turns.request(PendingTurn(TurnKind.RESPOND, "", "r1", trio.current_time()))
        await trio.sleep(3.0)
        nursery.cancel_scope.cancel()
    [turn] = h.turns
    assert turn.request_id == "r1"
    assert h.released_at[0] >= committed_at + 1.0
    [message] = store.conversations["conv_test"]
    assert (message.text, message.item_id) == (h.of(TranscriptFinal)[0][1].text, "item_c1")


async def test_an_announced_commit_with_nothing_to_commit_releases_the_hold(
    autojump_clock: trio.abc.Clock,
) -> None:
    """A commit the receiver announced but that finds no audio owes its transcription_done: the error goes
    out and a waiting request starts."""
    from trio_voice.events import ErrorEvent

    async with trio.open_nursery() as nursery:
        h = await start(nursery, store=FakeStore())
        h.ctx.state.turns.transcription_started()
        await h.audio_tx.send(Commit("c1", announced=True))
        h.ctx.state.turns.request(PendingTurn(TurnKind.RESPOND, "", "r1", trio.current_time()))
        await trio.sleep(0.5)
        nursery.cancel_scope.cancel()
    assert [e.code for _, e in h.of(ErrorEvent)] == ["input_audio_empty"]
    assert [t.request_id for t in h.turns] == ["r1"] and not h.ctx.state.turns.held


async def test_speech_without_interruption_leaves_the_reply_running(autojump_clock: trio.abc.Clock) -> None:
    """interrupt_response off: speech_started is still sent, the running reply is not cancelled."""
    async with trio.open_nursery() as nursery:
        h = await start(nursery)
        h.ctx.state.interrupt_response = False
        running = h.ctx.state.turns.start(PendingTurn(TurnKind.CHAT, "hi", None, 0.0), "resp_running")
        await h.say(0.5, silence_s=0.1)  # still in speech: the turn has not ended
        nursery.cancel_scope.cancel()
    assert len(h.of(SpeechStarted)) == 1 and h.ctx.state.turns.user_speaking
    assert not running.scope.cancel_called and running.reason is None


async def test_a_clip_that_is_a_user_message_is_stored_with_its_typed_words(
    autojump_clock: trio.abc.Clock,
) -> None:
    """A clip with an item id: its transcript is sent, its typed words and transcript stored as that
    message, and the hold the receiver took is released."""
    from trio_voice.listen_items import TranscribeClip

    store = FakeStore()
    async with trio.open_nursery() as nursery:
        h = await start(nursery, store=store)
        h.ctx.state.turns.transcription_started()
        clip = TranscribeClip(
            tone(1.0, RATE, amplitude=0.3), RATE, "i1", item_id="item_i1", text="Listen:", announced=True
        )
        await h.audio_tx.send(clip)
        await trio.sleep(0.5)
        nursery.cancel_scope.cancel()
    [(_, final)] = h.of(TranscriptFinal)
    [message] = store.conversations["conv_test"]
    assert (message.text, message.item_id) == (f"Listen: {final.text}", "item_i1")
    assert not h.ctx.state.turns.held
