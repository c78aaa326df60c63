"""Voice input for one session: VAD, streaming transcription, turn-taking and barge-in.

::

    listen_task(audio_rx, ctx)        a nursery of its own inside the session
    ├── (loop)          resample → 32 ms chunks → VAD → Segmenter → speech events, barge-in
    ├── partial_task    the latest partial job only: stale ones are dropped, never piled up
    └── final tasks     one per finished utterance: transcript.final, then the reply

Barge-in is one call: speech that starts while a reply runs cancels that reply's turn scope.
The audio clock is the input stream itself (milliseconds of audio received); it is mapped to the
server's clock by assuming the client streams in real time, which is what live microphones do.
"""

from __future__ import annotations

import logging
from functools import partial

import attrs
import numpy as np
import trio

from .audio import Resampler, pcm16_to_float, resample
from .errors import RecognitionError
from .events import ErrorEvent, SpeechStarted, SpeechStopped, TranscriptFinal, TranscriptPartial
from .segmenter import (
    CHUNK_MS,
    CHUNK_SAMPLES,
    SAMPLE_RATE,
    Segmenter,
    SegmenterSettings,
    SpeechEnd,
    SpeechStart,
)
from .stt import is_hallucination

logger = logging.getLogger(__name__)

# Longest utterance transcribed at once; longer speech is cut into turns of this length.
MAX_UTTERANCE_S = 30.0
# Mean VAD probability over an utterance's voiced chunks above which it is clearly a voice: whisper's stock phrases
# ("Thank you.") are then taken as said, not as its usual hallucination on noise.
CLEAR_SPEECH = 0.8
# Audio after the last speech chunk that goes to the recognizer with the utterance (word tails).
TAIL_MS = 100


@attrs.frozen
class AudioIn:
    pcm: bytes  # PCM16LE mono at the session's input rate
    received_at: float


@attrs.frozen
class Commit:
    request_id: str | None


@attrs.frozen
class Clear:
    request_id: str | None


@attrs.frozen
class TranscribeClip:
    audio: bytes
    sample_rate: int
    request_id: str | None


ListenItem = AudioIn | Commit | Clear | TranscribeClip


class AudioWindow:
    """The recent 16 kHz input, addressed by stream position in milliseconds; bounded by ``trim``.

    Frames are kept as a list and joined only when a clip is read (a partial every half second, a
    final per turn): appending is O(1) however long the utterance grows.
    """

    def __init__(self) -> None:
        self._start = 0  # absolute sample index of the first kept sample
        self._chunks: list[np.ndarray] = []
        self._size = 0  # samples kept

    @property
    def end_ms(self) -> float:
        return (self._start + self._size) * 1000.0 / SAMPLE_RATE

    def append(self, samples: np.ndarray) -> None:
        if samples.size:
            self._chunks.append(samples)
            self._size += samples.size

    def between(self, start_ms: float, end_ms: float) -> np.ndarray:
        lo = max(0, int(start_ms * SAMPLE_RATE / 1000) - self._start)
        hi = max(lo, int(end_ms * SAMPLE_RATE / 1000) - self._start)
        if len(self._chunks) > 1:
            self._chunks = [np.concatenate(self._chunks)]
        data = self._chunks[0] if self._chunks else np.zeros(0, dtype=np.float32)
        return data[lo:hi].copy()

    def trim(self, keep_from_ms: float) -> None:
        """Forget audio before ``keep_from_ms`` (whole frames only: a few ms more may stay)."""
        cut = int(keep_from_ms * SAMPLE_RATE / 1000) - self._start
        while self._chunks and cut >= self._chunks[0].size:
            dropped = self._chunks.pop(0).size
            self._start += dropped
            self._size -= dropped
            cut -= dropped


@attrs.define
class PartialJob:
    utterance: int
    audio: np.ndarray


@attrs.define
class Mailbox:
    """Holds only the newest partial job; posting replaces what has not started yet."""

    job: PartialJob | None = None
    posted: trio.Event = attrs.field(factory=trio.Event)

    def post(self, job: PartialJob) -> None:
        self.job = job
        self.posted.set()

    async def take(self) -> PartialJob:
        while self.job is None:
            await self.posted.wait()
            self.posted = trio.Event()
        job, self.job = self.job, None
        return job


class Listener:
    """One session's listening state: where speech is, what is buffered, which utterance is current."""

    def __init__(self, ctx, nursery: trio.Nursery) -> None:  # type: ignore[no-untyped-def]
        self.ctx = ctx
        self.nursery = nursery
        self.vad = ctx.engines.vad_factory()
        self.window = AudioWindow()
        self.segmenter = Segmenter(self._settings())
        self.resampler: Resampler | None = None
        self.pending = np.zeros(0, dtype=np.float32)  # 16 kHz samples not yet a whole VAD chunk
        self.utterance = 0  # bumped at every turn end; partials of older utterances are dropped
        self.speech_start_ms: float | None = None
        self.speech_probabilities: list[float] = []  # VAD output over the current utterance
        self.voiced_since_partial_ms = 0.0  # partials are paced by new speech, not by silence
        self.manual_start_ms = 0.0  # turn_detection "none": audio since the last commit/clear
        self.clock = (0.0, 0.0)  # (stream ms, server time) at the last frame
        self.mailbox = Mailbox()

    # --- settings ---------------------------------------------------------------------------------
    def _settings(self) -> SegmenterSettings:
        td = self.ctx.state.turn_detection
        return SegmenterSettings(
            threshold=td["threshold"], silence_ms=td["silence_ms"], prefix_ms=td["prefix_ms"]
        )

    @property
    def automatic(self) -> bool:
        return self.ctx.state.turn_detection.get("type") == "server_vad"

    def server_time(self, stream_ms: float) -> float:
        """The server time at which stream position ``stream_ms`` was (or will be) live."""
        at_ms, at_time = self.clock
        return at_time - (at_ms - stream_ms) / 1000.0

    # --- audio in ---------------------------------------------------------------------------------
    async def on_audio(self, item: AudioIn) -> None:
        rate = self.ctx.state.input_sample_rate
        if self.resampler is None or self.resampler.from_rate != rate:
            self.resampler = Resampler(rate, SAMPLE_RATE)
        samples = self.resampler.process(pcm16_to_float(item.pcm))
        self.window.append(samples)
        self.clock = (self.window.end_ms, item.received_at)
        if not self.automatic:
            if self.window.end_ms - self.manual_start_ms > MAX_UTTERANCE_S * 1000:
                await self.on_commit(Commit(None))
            return
        self.pending = np.concatenate([self.pending, samples])
        whole = self.pending.size // CHUNK_SAMPLES * CHUNK_SAMPLES
        if whole == 0:
            return
        chunks, self.pending = self.pending[:whole].reshape(-1, CHUNK_SAMPLES), self.pending[whole:]
        if getattr(self.vad, "blocking", True):
            probabilities = await trio.to_thread.run_sync(partial(_probabilities, self.vad, chunks))
        else:
            probabilities = _probabilities(self.vad, chunks)
        settings = self._settings()
        if settings != self.segmenter.settings:
            self.segmenter.settings = settings
        for p in probabilities:
            voiced = self.segmenter.is_voiced(p)
            if self.segmenter.in_speech and voiced:
                self.speech_probabilities.append(p)  # how sure the VAD was, over the voiced chunks
            decision = self.segmenter.feed(p)
            if isinstance(decision, SpeechStart):
                await self.on_speech_start(decision)
            elif isinstance(decision, SpeechEnd):
                await self.on_speech_end(decision)
            elif self.segmenter.in_speech:
                await self.maybe_partial(voiced=voiced)
        if not self.segmenter.in_speech:
            self.window.trim(self.segmenter.position_ms - settings.prefix_ms - 1000)

    async def on_speech_start(self, start: SpeechStart) -> None:
        self.speech_start_ms = start.start_ms
        self.speech_probabilities = []
        self.voiced_since_partial_ms = self.segmenter.position_ms - start.detected_ms
        turn = self.ctx.state.current_turn
        if turn is not None:
            turn.speech_started_at = self.server_time(start.detected_ms)
            turn.cancel("turn_detected")
        self.ctx.state.activity = "listening"
        await self.ctx.send(SpeechStarted(int(start.detected_ms)))

    async def maybe_partial(self, *, voiced: bool) -> None:
        """Post a partial job after every ``partial_interval`` of new voiced audio.

        Silence inside a turn (pauses, and the hangover before the turn ends) adds nothing to hear, so it
        posts nothing: the recognizer is then free when the final transcription arrives.
        """
        assert self.speech_start_ms is not None
        position = self.segmenter.position_ms
        if position - self.speech_start_ms > MAX_UTTERANCE_S * 1000:
            end = self.segmenter.end_now()
            if end is not None:
                await self.on_speech_end(end)
            return
        if not voiced:
            return
        self.voiced_since_partial_ms += CHUNK_MS
        if self.voiced_since_partial_ms >= self.ctx.config.partial_interval * 1000:
            self.voiced_since_partial_ms = 0.0
            self.mailbox.post(PartialJob(self.utterance, self.window.between(self.speech_start_ms, position)))

    async def on_speech_end(self, end: SpeechEnd) -> None:
        assert self.speech_start_ms is not None
        audio = self.window.between(self.speech_start_ms, end.end_ms + TAIL_MS)
        probabilities = self.speech_probabilities or [0.0]
        clear = sum(probabilities) / len(probabilities) >= CLEAR_SPEECH
        self.utterance += 1
        self.speech_start_ms = None
        if self.ctx.state.current_turn is None:
            self.ctx.state.activity = "idle"
        await self.ctx.send(SpeechStopped(int(end.end_ms)))
        marks = {"speech_end": self.server_time(end.end_ms), "vad_decided": self.server_time(end.decided_ms)}
        self.nursery.start_soon(partial(self.finalize, audio, marks, None, clear_speech=clear))

    async def on_commit(self, commit: Commit) -> None:
        """End the user's turn by hand: whatever speech is buffered becomes the final transcript."""
        if self.automatic:
            end = self.segmenter.end_now()
            if end is None:
                await self.ctx.send(
                    ErrorEvent("input_audio_empty", "no speech is buffered to commit"), commit.request_id
                )
                return
            end = attrs.evolve(end, end_ms=self.window.end_ms)
            await self.on_speech_end(end)
            return
        audio = self.window.between(self.manual_start_ms, self.window.end_ms)
        self.manual_start_ms = self.window.end_ms
        self.window.trim(self.manual_start_ms)
        if audio.size == 0:
            await self.ctx.send(
                ErrorEvent("input_audio_empty", "no audio is buffered to commit"), commit.request_id
            )
            return
        now = self.server_time(self.window.end_ms)
        self.nursery.start_soon(
            partial(self.finalize, audio, {"speech_end": now, "vad_decided": now}, commit.request_id)
        )

    def on_clear(self) -> None:
        self.segmenter.reset()
        self.utterance += 1
        self.speech_start_ms = None
        self.manual_start_ms = self.window.end_ms
        self.window.trim(self.window.end_ms)
        self.vad.reset()

    # --- transcription ----------------------------------------------------------------------------
    async def partial_task(self) -> None:
        """Transcribe the newest partial job, forever; jobs posted meanwhile replace each other."""
        while True:
            job = await self.mailbox.take()
            if job.utterance != self.utterance:
                continue
            try:
                text = await self.ctx.engines.stt.transcribe(job.audio, partial=True)
            except RecognitionError as exc:
                logger.warning("session %s: partial transcription failed: %s", self.ctx.state.session_id, exc)
                continue
            if job.utterance == self.utterance and text and not is_hallucination(text):
                await self.ctx.send(TranscriptPartial(text))

    async def finalize(
        self,
        audio: np.ndarray,
        marks: dict[str, float],
        request_id: str | None,
        *,
        clear_speech: bool = False,
    ) -> None:
        """The final transcript of one utterance, then its reply (unless it was noise)."""
        try:
            text = await self.ctx.engines.stt.transcribe(audio)
        except RecognitionError as exc:
            await self.ctx.error(exc, request_id)
            return
        marks["transcript_final"] = trio.current_time()
        if not text or is_hallucination(text, clear_speech=clear_speech):
            logger.info(
                "session %s: no words in %.1f s of audio (%r)",
                self.ctx.state.session_id,
                audio.size / SAMPLE_RATE,
                text,
            )
            await self.ctx.send(TranscriptFinal(""), request_id)
            return
        await self.ctx.send(TranscriptFinal(text), request_id)
        await self.ctx.start_turn("chat", text, request_id, started_at=marks["speech_end"], marks=marks)

    async def transcribe_clip(self, clip: TranscribeClip) -> None:
        """One-shot ``transcribe``: a transcript.final for the clip, and no reply."""
        audio = resample(pcm16_to_float(clip.audio), clip.sample_rate, SAMPLE_RATE)
        try:
            text = await self.ctx.engines.stt.transcribe(audio)
        except RecognitionError as exc:
            await self.ctx.error(exc, clip.request_id)
            return
        await self.ctx.send(TranscriptFinal("" if is_hallucination(text) else text), clip.request_id)


def _probabilities(vad, chunks: np.ndarray) -> list[float]:  # type: ignore[no-untyped-def]
    return [vad.probability(chunk) for chunk in chunks]


async def listen_task(audio_rx: trio.MemoryReceiveChannel[ListenItem], *, ctx) -> None:  # type: ignore[no-untyped-def]
    """Listen to one session's audio until the channel closes."""
    async with audio_rx, trio.open_nursery() as nursery:
        listener = Listener(ctx, nursery)
        nursery.start_soon(listener.partial_task)
        async for item in audio_rx:
            match item:
                case AudioIn():
                    await listener.on_audio(item)
                case Commit():
                    await listener.on_commit(item)
                case Clear():
                    listener.on_clear()
                case TranscribeClip():
                    nursery.start_soon(listener.transcribe_clip, item)
        nursery.cancel_scope.cancel()
