"""A session's transcription task: finals, speculative finals and one-shot clips, one at a time, in order.

The listener queues jobs on a bounded channel (``Config.max_queued_transcriptions``); this task takes them
in order, so one session's burst never piles work in front of everyone else's on the shared recognizer.

- :class:`FinalJob`: an utterance that ended; its transcript is sent, then it asks for the reply.
- :class:`SpeculationJob`: the speech so far at a tentative pause (semantic turn detection); its transcript
  becomes a speculative reply's request, its ``transcript.final`` held with that reply. Skipped when the
  speculation was abandoned while it waited.
- :class:`ClipJob`: a ``transcribe`` clip, answered with ``transcript.final`` and no reply.
"""

from __future__ import annotations

import logging

import attrs
import numpy as np
import trio

from .errors import RecognitionError
from .events import TranscriptFinal
from .languages import AUTO
from .segmenter import SAMPLE_RATE
from .session_context import SessionContext
from .stt import is_hallucination
from .turn_control import PendingTurn, TurnKind

logger = logging.getLogger(__name__)


def _samples(a: np.ndarray) -> str:
    return f"<{a.size} samples>"


@attrs.frozen
class FinalJob:
    """A finished utterance to transcribe; its transcript asks for a reply."""

    audio: np.ndarray = attrs.field(repr=_samples)
    marks: dict[str, float]
    request_id: str | None
    clear_speech: bool = False


@attrs.frozen
class SpeculationJob:
    """The speech so far at a tentative pause: the request of speculative reply ``attempt``."""

    attempt: int
    audio: np.ndarray = attrs.field(repr=_samples)
    marks: dict[str, float]
    clear_speech: bool = False


@attrs.frozen
class ClipJob:
    """A one-shot ``transcribe`` clip (16 kHz): answered with ``transcript.final``, no reply."""

    audio: np.ndarray = attrs.field(repr=_samples)
    request_id: str | None
    language: str | None = None  # None: the session's


TranscriptionJob = FinalJob | SpeculationJob | ClipJob


async def transcription_task(
    jobs_rx: trio.MemoryReceiveChannel[TranscriptionJob], *, ctx: SessionContext
) -> None:
    """Transcribe the queued jobs one at a time, in the order they were queued."""
    async with jobs_rx:
        async for job in jobs_rx:
            if isinstance(job, FinalJob):
                await _final(job, ctx=ctx)
            elif isinstance(job, SpeculationJob):
                await _speculation(job, ctx=ctx)
            else:
                await _clip(job, ctx=ctx)


async def recognize(
    audio: np.ndarray, language: str, *, ctx: SessionContext, quick: bool = False
) -> tuple[str, str | None]:
    """The transcript of ``audio`` in ``language`` and, for ``"auto"``, the language whisper detected.

    ``quick``: no second decode with the full window when the short one loops (a looping transcript
    comes back empty instead); for speculative transcripts, which the turn's end can redo if needed.
    """
    stt = ctx.engines.stt
    assert stt is not None
    if language == AUTO:
        return await stt.detect(audio)
    return await stt.transcribe(audio, language=language, partial=quick), None


async def _words(
    audio: np.ndarray, *, ctx: SessionContext, clear_speech: bool, quick: bool = False
) -> tuple[str, str | None]:
    """The recognizer's text in the session's language, or "" when it heard no words (silence, noise, a
    stock hallucination); and the language it detected (language "auto")."""
    text, detected = await recognize(audio, ctx.state.language, ctx=ctx, quick=quick)
    if not text or is_hallucination(text, clear_speech=clear_speech):
        logger.info(
            "session %s: no words in %.1f s of audio (%r)",
            ctx.state.session_id,
            audio.size / SAMPLE_RATE,
            text,
        )
        return "", detected
    return text, detected


async def _final(job: FinalJob, *, ctx: SessionContext) -> None:
    """The final transcript of one utterance, then its request for a reply (unless it held no words)."""
    turn: PendingTurn | None = None
    try:
        try:
            text, detected = await _words(job.audio, ctx=ctx, clear_speech=job.clear_speech)
        except RecognitionError as exc:
            await ctx.error(exc, job.request_id)
            return
        job.marks["transcript_final"] = trio.current_time()
        await ctx.send(TranscriptFinal(text, detected), job.request_id)
        if text:
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


async def _speculation(job: SpeculationJob, *, ctx: SessionContext) -> None:
    """Transcribe the speech so far for speculative reply ``job.attempt`` (unless it was abandoned).

    Quick first: a looping transcript (rare, and slow to redo) comes back empty and is left for the turn's
    end to redo. But when the turn has already ended on exactly this speech (confirmed while this ran),
    this *is* the turn's final transcript: then it is redone in full if it came back empty, and a failure
    or an utterance without words is reported as a final would be, since no other final is coming.
    """
    turns = ctx.state.turns
    if not turns.speculation_live(job.attempt):
        return
    turn: PendingTurn | None = None
    try:
        try:
            text, detected = await _words(job.audio, ctx=ctx, clear_speech=job.clear_speech, quick=True)
            if not text and turns.speculation_confirmed(job.attempt):
                text, detected = await _words(job.audio, ctx=ctx, clear_speech=job.clear_speech)
        except RecognitionError as exc:
            logger.warning("session %s: speculative transcription failed: %s", ctx.state.session_id, exc)
            if turns.speculation_confirmed(job.attempt):
                await ctx.error(exc)
            return
        if not text:
            if turns.speculation_confirmed(job.attempt):
                await ctx.send(TranscriptFinal("", detected))
            return
        if not ctx.shutdown.draining.is_set():
            marks = {**job.marks, "transcript_final": trio.current_time()}
            turn = PendingTurn(
                TurnKind.CHAT,
                text,
                None,
                marks["speech_end"],
                speech_marks=marks,
                spoken=True,
                preamble=(TranscriptFinal(text, detected),),
                speculative=True,
                language=detected,
            )
    finally:
        turns.speculation_ready(job.attempt, turn)


async def _clip(job: ClipJob, *, ctx: SessionContext) -> None:
    try:
        text, detected = await recognize(job.audio, job.language or ctx.state.language, ctx=ctx)
    except RecognitionError as exc:
        await ctx.error(exc, job.request_id)
        return
    await ctx.send(TranscriptFinal("" if is_hallucination(text) else text, detected), job.request_id)
