"""Stage tests of semantic turn detection and speculative replies under autojump_clock.

A whole session's voice path without a socket: the listener (energy VAD, a scripted recognizer, a
scripted end-of-turn model) and converse_task (fake LLM and TTS, an in-memory store), both emitting into
one list with the time of each event. Times below are what the code decides.
"""

from __future__ import annotations

from functools import partial

import attrs
import pytest
import trio

from trio_voice import codec
from trio_voice.config import Config
from trio_voice.converse import converse_task
from trio_voice.engines import Engines
from trio_voice.events import (
    AudioReady,
    ReplyCreated,
    ReplyDone,
    SpeechStarted,
    SpeechStopped,
    TextDelta,
    TranscriptFinal,
)
from trio_voice.limits import TokenBucket
from trio_voice.listen import listen_task
from trio_voice.listen_items import AudioIn
from trio_voice.session_context import SessionContext
from trio_voice.session_state import SessionState, default_turn_detection
from trio_voice.telemetry import Telemetry
from trio_voice.testing import FakeLLM, FakeStore, FakeSTT, FakeTTS, FakeTurnModel, FakeVAD, tone
from trio_voice.writer import Outgoing

RATE = 16000
FRAME_S = 0.02
CHUNK_S = 0.032


@attrs.define
class Voice:
    ctx: SessionContext
    audio_tx: trio.MemorySendChannel
    llm: FakeLLM
    stt: FakeSTT
    model: FakeTurnModel
    store: FakeStore
    events: list[tuple[float, object]] = attrs.field(factory=list)

    async def frames(self, seconds: float, *, loud: bool) -> None:
        for _ in range(round(seconds / FRAME_S)):
            pcm = tone(FRAME_S, RATE, amplitude=0.3) if loud else bytes(int(RATE * FRAME_S) * 2)
            await self.audio_tx.send(AudioIn(pcm, trio.current_time()))
            await trio.sleep(FRAME_S)

    async def say(self, *parts: tuple[float, float]) -> float:
        """Speech and silence in turn, ``(speech_s, silence_s)`` each; return when the last speech ended."""
        await self.frames(0.2, loud=False)
        end = 0.0
        for speech_s, silence_s in parts:
            await self.frames(speech_s, loud=True)
            end = trio.current_time()
            await self.frames(silence_s, loud=False)
        return end

    def of(self, kind: type) -> list[tuple[float, object]]:
        return [(t, e) for t, e in self.events if isinstance(e, kind)]


async def start(
    nursery: trio.Nursery,
    *,
    model: FakeTurnModel,
    stt_speed: float = 0.02,
    llm: FakeLLM | None = None,
    **config: object,
) -> Voice:
    cfg = Config(data_dir="/nonexistent", **config)
    store = FakeStore()
    stt = FakeSTT(seconds_per_audio_second=stt_speed)
    llm = llm or FakeLLM(first_token_delay=0.1, token_delay=0.02)
    engines = Engines(
        llm=llm,
        tts=FakeTTS(delay=lambda t: 0.05),
        store=store,
        stt=stt,
        vad_factory=FakeVAD,
        turn_model=model,
    )
    state = SessionState(
        "sess_test",
        await store.create_conversation(),
        "sys",
        turn_detection=default_turn_detection(cfg, voice=True, semantic=True),
    )
    out_tx, out_rx = trio.open_memory_channel[Outgoing](0)
    audio_tx, audio_rx = trio.open_memory_channel(0)
    ctx = SessionContext(state, engines, cfg, Telemetry(), out_tx, audio_tx, TokenBucket(10, 10))
    voice = Voice(ctx, audio_tx, llm, stt, model, store)

    async def collect() -> None:
        async for item in out_rx:
            voice.events.append((trio.current_time(), item.event))

    def emit_for(request_id: str | None):  # type: ignore[no-untyped-def]
        async def emit(event: object) -> None:
            await out_tx.send(Outgoing(event, request_id))

        return emit

    nursery.start_soon(collect)
    nursery.start_soon(partial(listen_task, audio_rx, ctx=ctx))
    nursery.start_soon(
        partial(
            converse_task,
            state.turns,
            emit_for=emit_for,
            engines=engines,
            config=cfg,
            telemetry=ctx.telemetry,
            state=state,
        )
    )
    return voice


async def test_a_complete_turn_ends_at_the_model_verdict_and_the_held_reply_goes_out_at_once(
    autojump_clock: trio.abc.Clock,
) -> None:
    """At a 200 ms pause a (slow: 300 ms) model says "complete": the turn ends then, not at the fallback,
    and the reply that started speculatively at the pause, ready meanwhile, is let out at once, transcript
    first, flagged speculative, with all of it after speech_stopped."""
    fast_llm = FakeLLM(first_token_delay=0.05, token_delay=0.005)
    async with trio.open_nursery() as nursery:
        v = await start(nursery, model=FakeTurnModel(default=0.99, delay=0.3), llm=fast_llm)
        speech_end = await v.say((1.0, 2.0))
        nursery.cancel_scope.cancel()
    [(stopped_at, _)] = v.of(SpeechStopped)
    assert stopped_at - speech_end == pytest.approx(0.2 + 0.3, abs=CHUNK_S + FRAME_S)
    kinds = [type(e) for t, e in v.events if t >= stopped_at]
    assert kinds[:3] == [SpeechStopped, TranscriptFinal, ReplyCreated]
    reply_kinds = (TranscriptFinal, ReplyCreated, TextDelta, AudioReady, ReplyDone)
    assert all(t >= stopped_at for t, e in v.events if isinstance(e, reply_kinds))
    [(_, done)] = v.of(ReplyDone)
    assert done.status == "completed" and done.metrics["speculative"] is True
    first_audio_at = v.of(AudioReady)[0][0]
    assert first_audio_at - stopped_at < 0.01  # held audio was ready before the verdict
    assert done.metrics["voice_to_voice_ms"] == pytest.approx((first_audio_at - speech_end) * 1000, abs=60)
    users = [m.text for m in v.store.conversations[v.ctx.state.conversation_id] if m.role == "user"]
    assert len(users) == 1


async def test_when_the_user_goes_on_the_held_reply_vanishes_unsent(autojump_clock: trio.abc.Clock) -> None:
    """A 500 ms hesitation: the model says "incomplete", speech resumes, and the reply started at the pause
    is abandoned: none of its events (transcript included) is ever sent, nothing of it is stored, its LLM
    stream is closed; the turn ends later with one reply to the whole utterance."""
    async with trio.open_nursery() as nursery:
        v = await start(nursery, model=FakeTurnModel(script=[0.1], default=0.99, delay=0.04))
        await v.say((1.0, 0.5), (1.0, 2.0))
        nursery.cancel_scope.cancel()
    assert len(v.of(SpeechStarted)) == 1 and len(v.of(SpeechStopped)) == 1
    [(_, final)] = v.of(TranscriptFinal)
    [(_, created)] = v.of(ReplyCreated)
    [(_, done)] = v.of(ReplyDone)
    assert done.response_id == created.response_id and done.status == "completed"
    assert final.text.startswith("I spoke for 2.")  # the whole utterance, both parts
    assert len(v.llm.calls) == 2 and v.llm.active == 0  # the abandoned one ran, and was stopped
    assert v.llm.calls[0][-1]["content"].startswith("I spoke for 1.")
    users = [m.text for m in v.store.conversations[v.ctx.state.conversation_id] if m.role == "user"]
    assert users == [final.text]
    assert {e.response_id for _, e in v.of(TextDelta)} == {created.response_id}


async def test_a_complete_verdict_waits_for_the_words_and_the_reply_follows_them_at_once(
    autojump_clock: trio.abc.Clock,
) -> None:
    """With a recognizer slower than the model (as whisper is), the model's "complete" is checked against
    the speculative transcript before the turn ends: the turn ends when those words are known, and the
    reply, started from that transcript (no second transcription), goes out right after."""
    async with trio.open_nursery() as nursery:
        v = await start(nursery, model=FakeTurnModel(default=0.99, delay=0.04), stt_speed=0.2)
        speech_end = await v.say((1.0, 2.0))
        nursery.cancel_scope.cancel()
    [(stopped_at, _)] = v.of(SpeechStopped)
    [(final_at, _)] = v.of(TranscriptFinal)
    [(created_at, _)] = v.of(ReplyCreated)
    # 1.3 s of audio at 0.2 s per second, started 128 ms into the pause: known ~0.39 s after speech end.
    assert stopped_at - speech_end == pytest.approx(0.128 + 0.26, abs=CHUNK_S + FRAME_S)
    assert stopped_at <= final_at <= created_at <= stopped_at + 0.01
    # Partials came at 0.7 s and 1.2 s of audio; the final's clip (lead, speech and tail) is 1.3 s, once.
    assert sum(1 for seconds in v.stt.calls if seconds >= 1.3) == 1
    [(_, done)] = v.of(ReplyDone)
    assert done.metrics["speculative"] is True


async def test_a_complete_sound_on_unfinished_words_waits_for_the_fallback(
    autojump_clock: trio.abc.Clock,
) -> None:
    """The model hears a finished turn, but the words stop on "a": the turn is not over; the fallback
    silence ends it (or speech would have resumed), and the reply is to those words, not earlier."""
    async with trio.open_nursery() as nursery:
        v = await start(nursery, model=FakeTurnModel(default=0.99, delay=0.04), turn_fallback_ms=900)
        v.stt.text = lambda audio: "How many days are there in a"
        speech_end = await v.say((1.0, 2.0))
        nursery.cancel_scope.cancel()
    [(stopped_at, _)] = v.of(SpeechStopped)
    assert stopped_at - speech_end == pytest.approx(0.9, abs=CHUNK_S + FRAME_S)
    registry = v.ctx.telemetry.registry
    assert registry.get_sample_value("trio_voice_turn_ends_total", {"reason": "unfinished_words"}) == 1.0


async def test_a_confirmed_speculation_whose_quick_transcript_loops_is_transcribed_again(
    autojump_clock: trio.abc.Clock,
) -> None:
    """The turn ends while its speculative transcript is on its way, and that quick transcript comes back
    empty (a looping decode): it is redone in full, as the turn's final, and the user is answered."""
    async with trio.open_nursery() as nursery:
        v = await start(nursery, model=FakeTurnModel(default=0.99, delay=0.04), stt_speed=0.2)
        v.stt.loops = True
        await v.say((1.0, 3.0))
        nursery.cancel_scope.cancel()
    [(_, final)] = v.of(TranscriptFinal)
    [(_, done)] = v.of(ReplyDone)
    assert final.text.startswith("I spoke for") and done.status == "completed"


async def test_an_unsure_model_leaves_the_fallback_silence_to_end_the_turn(
    autojump_clock: trio.abc.Clock,
) -> None:
    """When the model never says "complete", the turn ends exactly fallback_ms after the last speech, and
    the speculative reply (started at the pause, on the same speech) is the one let out."""
    async with trio.open_nursery() as nursery:
        v = await start(nursery, model=FakeTurnModel(default=0.2, delay=0.04), turn_fallback_ms=900)
        speech_end = await v.say((1.0, 2.0))
        nursery.cancel_scope.cancel()
    [(stopped_at, _)] = v.of(SpeechStopped)
    assert stopped_at - speech_end == pytest.approx(0.9, abs=CHUNK_S + FRAME_S)
    [(_, done)] = v.of(ReplyDone)
    assert done.metrics["speculative"] is True
    assert len(v.llm.calls) == 1


async def test_without_speculation_the_reply_starts_after_the_turn_ends(
    autojump_clock: trio.abc.Clock,
) -> None:
    """speculative: false: the model still ends the turn early, and the reply is then requested as usual."""
    async with trio.open_nursery() as nursery:
        v = await start(nursery, model=FakeTurnModel(default=0.99, delay=0.04), turn_speculative=False)
        await v.say((1.0, 2.0))
        nursery.cancel_scope.cancel()
    [(stopped_at, _)] = v.of(SpeechStopped)
    [(created_at, _)] = v.of(ReplyCreated)
    [(_, done)] = v.of(ReplyDone)
    assert created_at > stopped_at and done.metrics["speculative"] is False


async def test_a_broken_turn_model_falls_back_to_silence(autojump_clock: trio.abc.Clock) -> None:
    """A turn model that fails is logged and ignored: the fallback silence ends the turn, the user is answered."""
    async with trio.open_nursery() as nursery:
        v = await start(nursery, model=FakeTurnModel(fail=True), turn_fallback_ms=700)
        speech_end = await v.say((1.0, 2.0))
        nursery.cancel_scope.cancel()
    [(stopped_at, _)] = v.of(SpeechStopped)
    assert stopped_at - speech_end == pytest.approx(0.7, abs=CHUNK_S + FRAME_S)
    assert [e.status for _, e in v.of(ReplyDone)] == ["completed"]


def test_the_default_turn_detection_is_semantic_only_with_the_model() -> None:
    """Sessions default to semantic turn detection when the server has the end-of-turn model."""
    config = Config(data_dir="/nonexistent")
    assert default_turn_detection(config, voice=True, semantic=True).type == "semantic"
    assert default_turn_detection(config, voice=True).type == "server_vad"
    assert isinstance(default_turn_detection(config, voice=False), codec.TurnDetection)
