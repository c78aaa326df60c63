"""Stage tests of the echo guard in the listener under autojump_clock: a speaker-phone user does not interrupt
the reply with its own echo, and still interrupts it by speaking.

The reply audio is recorded in the session's playback log exactly as the writer records what it sent; the
microphone hears that audio 120 ms later at a quarter of its level (the echo), and the user's "voice" is a
tone of another pitch (FakeVAD is an energy detector: without the guard the echo alone is speech).
"""

from __future__ import annotations

from functools import partial

import attrs
import numpy as np
import trio

from trio_voice.config import Config
from trio_voice.engines import Engines
from trio_voice.events import AudioReady, SpeechStarted
from trio_voice.limits import TokenBucket
from trio_voice.listen import listen_task
from trio_voice.listen_items import AudioIn
from trio_voice.session_context import SessionContext
from trio_voice.session_state import SessionState, default_turn_detection
from trio_voice.telemetry import Telemetry
from trio_voice.testing import VOICE_HZ, FakeLLM, FakeSTT, FakeTTS, FakeVAD, tone

MIC_RATE = 16000
REPLY_RATE = 22050
FRAME_S = 0.02
ECHO_DELAY_S = 0.12
ECHO_GAIN = 0.25


@attrs.define
class SpeakerPhone:
    ctx: SessionContext
    audio_tx: trio.MemorySendChannel
    events: list[tuple[float, object]] = attrs.field(factory=list)

    def started(self) -> list[float]:
        return [t for t, e in self.events if isinstance(e, SpeechStarted)]

    async def play_reply(
        self, seconds: float, *, user: np.ndarray | None = None, user_from_s: float = 0.0
    ) -> None:
        """Send ``seconds`` of reply audio in 0.5 s events (recorded as the writer would), while the mic
        hears its echo, plus ``user`` (16 kHz float audio) from ``user_from_s`` on, frame by frame."""
        reply = np.frombuffer(tone(seconds, REPLY_RATE, VOICE_HZ, amplitude=0.5), dtype="<i2")
        reply16 = np.interp(
            np.arange(int(seconds * MIC_RATE)) / MIC_RATE, np.arange(reply.size) / REPLY_RATE, reply / 32768.0
        ).astype(np.float32)
        start = trio.current_time()
        event_samples = REPLY_RATE // 2
        for offset in range(0, reply.size, event_samples):
            piece = reply[offset : offset + event_samples].tobytes()
            self.ctx.state.playback.on_sent(AudioReady("resp_1", 0, piece, REPLY_RATE), start)
        frame = int(MIC_RATE * FRAME_S)
        delay = int(ECHO_DELAY_S * MIC_RATE)
        total = int((seconds + 0.5) * MIC_RATE) // frame * frame
        mic = np.zeros(total, np.float32)
        mic[delay : delay + reply16.size] += ECHO_GAIN * reply16[: total - delay]
        if user is not None:
            at = int(user_from_s * MIC_RATE)
            mic[at : at + user.size] += user[: total - at]
        mic += np.random.default_rng(7).normal(0, 0.002, mic.size).astype(np.float32)
        for i in range(0, total, frame):
            pcm = (np.clip(mic[i : i + frame], -1, 1) * 32767).astype("<i2").tobytes()
            await self.audio_tx.send(AudioIn(pcm, trio.current_time()))
            await trio.sleep(FRAME_S)


async def start(nursery: trio.Nursery, **config: object) -> SpeakerPhone:
    cfg = Config(data_dir="/nonexistent", **config)
    engines = Engines(llm=FakeLLM(), tts=FakeTTS(), store=None, stt=FakeSTT(), vad_factory=FakeVAD)  # type: ignore[arg-type]
    state = SessionState("sess_test", "conv_test", "", turn_detection=default_turn_detection(cfg, voice=True))
    out_tx, out_rx = trio.open_memory_channel(0)
    audio_tx, audio_rx = trio.open_memory_channel(0)
    ctx = SessionContext(state, engines, cfg, Telemetry(), out_tx, audio_tx, TokenBucket(10, 10))
    phone = SpeakerPhone(ctx, audio_tx)

    async def collect() -> None:
        async for item in out_rx:
            phone.events.append((trio.current_time(), item.event))

    nursery.start_soon(collect)
    nursery.start_soon(partial(listen_task, audio_rx, ctx=ctx))
    return phone


def user_voice(seconds: float) -> np.ndarray:
    return (
        np.frombuffer(tone(seconds, MIC_RATE, 220.0, amplitude=0.3), dtype="<i2").astype(np.float32) / 32768.0
    )


async def test_the_reply_s_own_echo_is_not_speech(autojump_clock: trio.abc.Clock) -> None:
    """Three seconds of reply echoing back into the microphone start no turn."""
    async with trio.open_nursery() as nursery:
        phone = await start(nursery)
        await phone.play_reply(3.0)
        nursery.cancel_scope.cancel()
    assert phone.started() == []


async def test_without_the_guard_the_echo_interrupts_the_reply(autojump_clock: trio.abc.Clock) -> None:
    """The same echo with the guard off is taken for the user: the test's echo is loud enough to matter."""
    async with trio.open_nursery() as nursery:
        phone = await start(nursery, echo_guard=False)
        await phone.play_reply(3.0)
        nursery.cancel_scope.cancel()
    assert len(phone.started()) == 1


async def test_the_user_speaking_over_the_echo_is_heard_at_once(autojump_clock: trio.abc.Clock) -> None:
    """A different voice over the echo starts a turn within the usual detection delay (two 32 ms chunks)."""
    async with trio.open_nursery() as nursery:
        phone = await start(nursery)
        began = trio.current_time()
        await phone.play_reply(3.0, user=user_voice(1.0), user_from_s=1.5)
        nursery.cancel_scope.cancel()
    [started] = phone.started()
    assert 1.5 <= started - began <= 1.5 + 0.064 + 0.06  # two chunks, plus frame and chunk alignment
