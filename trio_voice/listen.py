"""Voice input for one session: VAD, streaming transcription, turn-taking and barge-in.

::

    listen_task(audio_rx, ctx)        a nursery of its own inside the session
    ├── (loop)              resample → 32 ms chunks → VAD → Segmenter → speech events, barge-in
    ├── partial_task        the latest partial job only: stale ones are dropped, never piled up
    └── transcription_task  finals and one-shot clips, one at a time, in order, from a bounded queue

Turn-taking goes through the session's :class:`~trio_voice.turn_control.TurnControl`: speech start is
a barge-in (and holds any request until the user is done), the end of an utterance announces a final
transcript, and the final asks for the reply. The listener never starts or cancels a turn itself.

Bounds: at most ``Config.max_queued_transcriptions`` finals and clips wait for the recognizer; a clip that
finds the queue full is refused (``audio_rate_exceeded``), a final waits for room (finals are rare: one per
utterance). The audio clock is the input stream itself (milliseconds of audio received); it is mapped to
the server's clock by assuming the client streams in real time, which is what live microphones do.
"""

from __future__ import annotations

import logging
from functools import partial

import attrs
import numpy as np
import trio

from .audio import Resampler, pcm16_to_float, resample
from .codec import codes
from .errors import RecognitionError, RemoteProtocolError
from .events import ErrorEvent, SpeechStarted, SpeechStopped, TranscriptFinal, TranscriptPartial
from .languages import AUTO
from .listen_buffers import AudioWindow, Mailbox, PartialJob
from .listen_items import AudioIn, Clear, Commit, ListenItem, TranscribeClip
from .segmenter import (
    CHUNK_MS,
    CHUNK_SAMPLES,
    SAMPLE_RATE,
    Segmenter,
    SegmenterSettings,
    SpeechEnd,
    SpeechStart,
)
from .session_context import SessionContext
from .stt import is_hallucination
from .turn_control import PendingTurn, TurnKind

logger = logging.getLogger(__name__)

# Longest utterance transcribed at once; longer speech is cut into turns of this length.
MAX_UTTERANCE_S = 30.0
# Mean VAD probability over an utterance's voiced chunks above which it is clearly a voice: whisper's stock phrases
# ("Thank you.") are then taken as said, not as its usual hallucination on noise.
CLEAR_SPEECH = 0.8
# Audio after the last speech chunk that goes to the recognizer with the utterance (word tails).
TAIL_MS = 100


@attrs.frozen
class FinalJob:
    """A finished utterance to transcribe; its transcript asks for a reply."""

    audio: np.ndarray = attrs.field(repr=lambda a: f"<{a.size} samples>")
    marks: dict[str, float]
    request_id: str | None
    clear_speech: bool = False


@attrs.frozen
class ClipJob:
    """A one-shot ``transcribe`` clip (16 kHz): answered with ``transcript.final``, no reply."""

    audio: np.ndarray = attrs.field(repr=lambda a: f"<{a.size} samples>")
    request_id: str | None
    language: str | None = None


TranscriptionJob = FinalJob | ClipJob


class Listener:
    """One session's listening state: where speech is, what is buffered, which utterance is current.

    Owned by ``listen_task``'s loop; it hands work to the partial and transcription tasks through the
    mailbox and ``jobs_tx``, and keeps no nursery.
    """

    def __init__(self, ctx: SessionContext, jobs_tx: trio.MemorySendChannel[TranscriptionJob]) -> None:
        assert ctx.engines.vad_factory is not None
        self.ctx = ctx
        self.jobs_tx = jobs_tx
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
        assert td.threshold is not None and td.silence_ms is not None and td.prefix_ms is not None
        return SegmenterSettings(threshold=td.threshold, silence_ms=td.silence_ms, prefix_ms=td.prefix_ms)

    @property
    def automatic(self) -> bool:
        return self.ctx.state.turn_detection.type == "server_vad"

    def server_time(self, stream_ms: float) -> float:
        """The server time at which stream position ``stream_ms`` was (or will be) live."""
        at_ms, at_time = self.clock
        return at_time - (at_ms - stream_ms) / 1000.0

    # --- audio in ---------------------------------------------------------------------------------
    async def on_audio(self, item: AudioIn) -> None:
        rate = item.sample_rate or self.ctx.state.input_sample_rate
        if self.resampler is None or self.resampler.from_rate != rate:
            self.resampler = Resampler(rate, SAMPLE_RATE)
        samples = self.resampler.process(pcm16_to_float(item.pcm))
        self.window.append(samples)
        self.clock = (self.window.end_ms, item.received_at)
        if not self.automatic:
            if self.segmenter.in_speech:  # switched to manual turns mid-utterance
                self.on_clear()
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
        self.ctx.state.turns.speech_started(self.server_time(start.detected_ms))
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
        # Announce the final before the speech ends, so no request slips in between and starts over it.
        self.ctx.state.turns.transcription_started()
        self.ctx.state.turns.speech_stopped()
        await self.ctx.send(SpeechStopped(int(end.end_ms)))
        marks = {"speech_end": self.server_time(end.end_ms), "vad_decided": self.server_time(end.decided_ms)}
        await self.jobs_tx.send(FinalJob(audio, marks, None, clear_speech=clear))

    async def on_commit(self, commit: Commit) -> None:
        """End the user's turn by hand: whatever speech is buffered becomes the final transcript."""
        if self.automatic:
            end = self.segmenter.end_now()
            if end is None:
                await self.ctx.send(
                    ErrorEvent(codes.INPUT_AUDIO_EMPTY, "no speech is buffered to commit"), commit.request_id
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
                ErrorEvent(codes.INPUT_AUDIO_EMPTY, "no audio is buffered to commit"), commit.request_id
            )
            return
        now = self.server_time(self.window.end_ms)
        self.ctx.state.turns.transcription_started()
        await self.jobs_tx.send(FinalJob(audio, {"speech_end": now, "vad_decided": now}, commit.request_id))

    def on_clear(self) -> None:
        if self.segmenter.in_speech:
            self.ctx.state.turns.speech_stopped()  # no final: the utterance is dropped
        self.segmenter.reset()
        self.utterance += 1
        self.speech_start_ms = None
        self.manual_start_ms = self.window.end_ms
        self.window.trim(self.window.end_ms)
        self.vad.reset()

    async def on_clip(self, clip: TranscribeClip) -> None:
        """A one-shot ``transcribe``: queued behind the finals, refused when the queue is full."""
        audio = resample(pcm16_to_float(clip.audio), clip.sample_rate, SAMPLE_RATE)
        try:
            self.jobs_tx.send_nowait(ClipJob(audio, clip.request_id, clip.language))
        except trio.WouldBlock:
            limit = self.ctx.config.max_queued_transcriptions
            exc = RemoteProtocolError(
                f"{limit} transcriptions are queued already; clip dropped", code=codes.AUDIO_RATE_EXCEEDED
            )
            await self.ctx.error(exc, clip.request_id)

    # --- transcription ----------------------------------------------------------------------------
    async def partial_task(self) -> None:
        """Transcribe the newest partial job, forever; jobs posted meanwhile replace each other."""
        while True:
            job = await self.mailbox.take()
            if job.utterance != self.utterance:
                continue
            try:
                text = await self.ctx.engines.stt.transcribe(  # type: ignore[union-attr]
                    job.audio, partial=True, language=self.ctx.state.language
                )
            except RecognitionError as exc:
                logger.warning("session %s: partial transcription failed: %s", self.ctx.state.session_id, exc)
                continue
            if job.utterance == self.utterance and text and not is_hallucination(text):
                await self.ctx.send(TranscriptPartial(text))


async def transcription_task(
    jobs_rx: trio.MemoryReceiveChannel[TranscriptionJob], *, ctx: SessionContext
) -> None:
    """Transcribe finals and clips one at a time, in the order they were queued."""
    async with jobs_rx:
        async for job in jobs_rx:
            if isinstance(job, FinalJob):
                await _final(job, ctx=ctx)
            else:
                await _clip(job, ctx=ctx)


async def _final(job: FinalJob, *, ctx: SessionContext) -> None:
    """The final transcript of one utterance, then its request for a reply (unless it was noise)."""
    turn: PendingTurn | None = None
    try:
        try:
            text, detected = await recognize(job.audio, ctx.state.language, ctx=ctx)
        except RecognitionError as exc:
            await ctx.error(exc, job.request_id)
            return
        job.marks["transcript_final"] = trio.current_time()
        if not text or is_hallucination(text, clear_speech=job.clear_speech):
            logger.info(
                "session %s: no words in %.1f s of audio (%r)",
                ctx.state.session_id,
                job.audio.size / SAMPLE_RATE,
                text,
            )
            await ctx.send(TranscriptFinal("", detected), job.request_id)
            return
        await ctx.send(TranscriptFinal(text, detected), job.request_id)
        turn = PendingTurn(
            TurnKind.CHAT,
            text,
            job.request_id,
            job.marks["speech_end"],
            speech_marks=job.marks,
            spoken=True,
            language=detected,
        )
    finally:
        if turn is None:
            ctx.state.turns.transcription_done(None)  # no reply is coming: stop holding requests for it
    await ctx.spoken_turn_done(turn)


async def _clip(job: ClipJob, *, ctx: SessionContext) -> None:
    try:
        text, detected = await recognize(job.audio, job.language or ctx.state.language, ctx=ctx)
    except RecognitionError as exc:
        await ctx.error(exc, job.request_id)
        return
    await ctx.send(TranscriptFinal("" if is_hallucination(text) else text, detected), job.request_id)


async def recognize(audio: np.ndarray, language: str, *, ctx: SessionContext) -> tuple[str, str | None]:
    """The transcript of ``audio`` in ``language`` and, for ``"auto"``, the language whisper detected."""
    stt = ctx.engines.stt
    assert stt is not None
    if language == AUTO:
        text, detected = await stt.detect(audio)
        return text, detected
    return await stt.transcribe(audio, language=language), None


def _probabilities(vad, chunks: np.ndarray) -> list[float]:  # type: ignore[no-untyped-def]
    return [vad.probability(chunk) for chunk in chunks]


async def listen_task(audio_rx: trio.MemoryReceiveChannel[ListenItem], *, ctx: SessionContext) -> None:
    """Listen to one session's audio until the channel closes."""
    async with audio_rx, trio.open_nursery() as nursery:
        jobs_tx, jobs_rx = trio.open_memory_channel[TranscriptionJob](ctx.config.max_queued_transcriptions)
        listener = Listener(ctx, jobs_tx)
        nursery.start_soon(listener.partial_task)
        nursery.start_soon(partial(transcription_task, jobs_rx, ctx=ctx))
        async with jobs_tx:
            async for item in audio_rx:
                match item:
                    case AudioIn():
                        await listener.on_audio(item)
                    case Commit():
                        await listener.on_commit(item)
                    case Clear():
                        listener.on_clear()
                    case TranscribeClip():
                        await listener.on_clip(item)
        nursery.cancel_scope.cancel()
