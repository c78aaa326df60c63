"""Voice input for one session: VAD, turn detection, streaming transcription and barge-in.

::

    listen_task(audio_rx, ctx)        a nursery of its own inside the session
    ├── (loop)              resample → 32 ms chunks → VAD → turn detector → speech events, barge-in
    ├── partial_task        the latest partial job only: stale ones are dropped, never piled up
    ├── turn_model_task     semantic turn detection: the latest pause's end-of-turn check
    └── transcription_task  finals, speculative finals and clips, in order (trio_voice.transcription)

The turn detector is ``server_vad`` (a fixed silence ends the turn) or ``semantic`` (at each short pause
an end-of-turn model judges whether the turn is complete, and a speculative reply may start, held until
the turn is confirmed): see ``trio_voice.turn_detectors``. Turn-taking goes through the session's
:class:`~trio_voice.turn_control.TurnControl`: speech start is a barge-in (and holds any request until
the user is done), a pause may start a speculative reply, the end of an utterance releases it or
announces a final transcript. The listener never starts or cancels a turn itself. When the session asks
for no replies to speech (``SessionState.create_response`` off, the realtime API's manual turns and
``create_response: false``), a final is stored as the user's message instead, and no speculation starts;
with ``interrupt_response`` off, speech does not cancel the running reply.

Bounds: at most ``Config.max_queued_transcriptions`` jobs wait for the recognizer; a clip that finds the
queue full is refused (``audio_rate_exceeded``), a final waits for room (finals are rare: one per
utterance), a speculation that finds it full is not started. The audio clock is the input stream itself
(milliseconds of audio received); it is mapped to the server's clock by assuming the client streams in
real time, which is what live microphones do.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial

import attrs
import numpy as np
import trio

from .audio import Resampler, pcm16_to_float, resample
from .codec import codes
from .completeness import ends_unfinished
from .echo import EchoGuard
from .errors import RecognitionError, RemoteProtocolError, TurnModelError
from .events import ErrorEvent, SpeechStarted, SpeechStopped, TranscriptPartial
from .ids import new_id
from .listen_buffers import AudioWindow, Mailbox, PartialJob
from .listen_items import AudioIn, Clear, Commit, ListenItem, TranscribeClip
from .playback import Heard, Sent, Stopped
from .segmenter import CHUNK_MS, CHUNK_SAMPLES, SAMPLE_RATE, SpeechStart
from .session_context import SessionContext
from .stt import is_hallucination
from .transcription import ClipJob, FinalJob, SpeculationJob, TranscriptionJob, transcription_task
from .turn_detectors import configure, kind_of, make_detector
from .turn_policy import AbandonSpeculation, Decision, RunTurnModel, StartSpeculation, TurnEnd, TurnPolicy

logger = logging.getLogger(__name__)

# Longest utterance transcribed at once; longer speech is cut into turns of this length.
MAX_UTTERANCE_S = 30.0
# Mean VAD probability over an utterance's voiced chunks above which it is clearly a voice: whisper's stock phrases
# ("Thank you.") are then taken as said, not as its usual hallucination on noise.
CLEAR_SPEECH = 0.8
# Audio after the last speech chunk that goes to the recognizer with the utterance (word tails).
TAIL_MS = 100
# Playback updates the echo guard may owe before it is told anyway (bounds the listener's memory).
MAX_ECHO_BACKLOG = 256


@attrs.frozen
class TurnCheck:
    """A pause to judge: the end-of-turn model's input, the policy's check id, and the speculative reply
    started in this pause (its transcript is the words the verdict is checked against), if any."""

    check: int
    audio: np.ndarray = attrs.field(repr=lambda a: f"<{a.size} samples>")
    speculation: int | None = None


class Listener:
    """One session's listening state: where speech is, what is buffered, which utterance is current.

    Owned by ``listen_task``; it hands work to the partial, turn-model and transcription tasks through
    two one-slot mailboxes and ``jobs_tx``, and keeps no nursery. ``lock`` serialises what the audio loop
    and the turn-model task do to the detector, so each sees decisions in the order they were taken.
    """

    def __init__(self, ctx: SessionContext, jobs_tx: trio.MemorySendChannel[TranscriptionJob]) -> None:
        assert ctx.engines.vad_factory is not None
        self.ctx = ctx
        self.jobs_tx = jobs_tx
        self.vad = ctx.engines.vad_factory()
        self.window = AudioWindow()
        self.detector = make_detector(
            ctx.state.turn_detection,
            pause_ms=ctx.config.turn_pause_ms,
            speculate_ms=ctx.config.turn_speculate_ms,
        )
        self.lock = trio.Lock()
        self.resampler: Resampler | None = None
        self.pending = np.zeros(0, dtype=np.float32)  # 16 kHz samples not yet a whole VAD chunk
        self.utterance = 0  # bumped at every turn end; partials of older utterances are dropped
        self.speech_start_ms: float | None = None
        self.item_id: str | None = None  # the current utterance's user message, named at speech start
        self.speech_probabilities: list[float] = []  # VAD output over the current utterance
        self.voiced_since_partial_ms = 0.0  # partials are paced by new speech, not by silence
        self.manual_start_ms = 0.0  # turn_detection "none": audio since the last commit/clear
        self.clock = (0.0, 0.0)  # (stream ms, server time) at the last frame
        self.echo = EchoGuard() if ctx.config.echo_guard else None
        self.echo_backlog: list[Callable[[], None]] = []  # what the guard has yet to be told, in order
        self.mailbox: Mailbox[PartialJob] = Mailbox()
        self.speculation: int | None = None  # the last speculative reply started
        self.partial_scope: trio.CancelScope | None = None  # the partial transcription under way
        # The newest pause to judge (older verdicts would be stale).
        self.checks: Mailbox[TurnCheck] = Mailbox()

    # --- settings ---------------------------------------------------------------------------------
    @property
    def automatic(self) -> bool:
        return self.ctx.state.turn_detection.type in ("server_vad", "semantic")

    def _follow_settings(self) -> None:
        """Apply ``session.update``: new values at once; a new detector type between utterances."""
        td = self.ctx.state.turn_detection
        if td.type in ("server_vad", "semantic") and td.type != kind_of(self.detector):
            if not self.detector.in_speech:
                self.detector = make_detector(
                    td, pause_ms=self.ctx.config.turn_pause_ms, speculate_ms=self.ctx.config.turn_speculate_ms
                )
            return
        configure(
            self.detector,
            td,
            pause_ms=self.ctx.config.turn_pause_ms,
            speculate_ms=self.ctx.config.turn_speculate_ms,
        )

    def server_time(self, stream_ms: float) -> float:
        """The server time at which stream position ``stream_ms`` was (or will be) live."""
        at_ms, at_time = self.clock
        return at_time - (at_ms - stream_ms) / 1000.0

    def stream_ms(self, server_time: float) -> float:
        """The stream position live at ``server_time`` (the inverse of :meth:`server_time`)."""
        at_ms, at_time = self.clock
        return at_ms - (at_time - server_time) * 1000.0

    def _update_echo_guard(self) -> None:
        """Note what the client has been playing since the last frame, on the microphone's clock.

        The guard is told lazily (:func:`_probabilities`): only before it must judge a chunk loud enough
        to matter, or when the backlog grows long. Most reply audio plays while the user listens in
        silence, and resampling it for a guard that never needs it was a third of a busy server's time.
        """
        entries = self.ctx.state.playback.drain()
        if self.echo is None:
            return
        for entry in entries:
            match entry:
                case Sent():
                    self.echo_backlog.append(
                        partial(
                            self.echo.reply_audio,
                            entry.pcm,
                            entry.sample_rate,
                            sent_at_ms=self.stream_ms(entry.at),
                            reply=entry.response_id,
                        )
                    )
                case Heard():
                    self.echo_backlog.append(
                        partial(self.echo.reply_played, entry.played_ms, at_ms=self.stream_ms(entry.at))
                    )
                case Stopped():
                    self.echo_backlog.append(partial(self.echo.reply_stopped, self.stream_ms(entry.at)))
        if len(self.echo_backlog) > MAX_ECHO_BACKLOG:
            _tell(self.echo_backlog)

    # --- audio in ---------------------------------------------------------------------------------
    async def on_audio(self, item: AudioIn) -> None:
        rate = item.sample_rate or self.ctx.state.input_sample_rate
        if self.resampler is None or self.resampler.from_rate != rate:
            self.resampler = Resampler(rate, SAMPLE_RATE)
        samples = self.resampler.process(pcm16_to_float(item.pcm))
        self.window.append(samples)
        self.clock = (self.window.end_ms, item.received_at)
        if not self.automatic:
            if self.detector.in_speech:  # switched to manual turns mid-utterance
                await self.on_clear()
            if self.window.end_ms - self.manual_start_ms > MAX_UTTERANCE_S * 1000:
                await self.on_commit(Commit(None))
            return
        self.pending = np.concatenate([self.pending, samples])
        whole = self.pending.size // CHUNK_SAMPLES * CHUNK_SAMPLES
        if whole == 0:
            return
        chunks, self.pending = self.pending[:whole].reshape(-1, CHUNK_SAMPLES), self.pending[whole:]
        self._update_echo_guard()
        needs_model = getattr(self.vad, "needs_model", None)  # the energy gate: silence needs no thread
        if getattr(self.vad, "blocking", True) and (needs_model is None or needs_model(chunks)):
            probabilities = await trio.to_thread.run_sync(
                partial(_probabilities, self.vad, self.echo, chunks, self.echo_backlog)
            )
        else:
            probabilities = _probabilities(self.vad, self.echo, chunks, self.echo_backlog)
        async with self.lock:
            self._follow_settings()
            for p in probabilities:
                voiced = self.detector.is_voiced(p)
                if self.detector.in_speech and voiced:
                    self.speech_probabilities.append(p)  # how sure the VAD was, over the voiced chunks
                decisions = self.detector.feed(p)
                await self.act(decisions)
                if not decisions and self.detector.in_speech:
                    await self.maybe_partial(voiced=voiced)
            if not self.detector.in_speech:
                self.window.trim(self.detector.position_ms - self.ctx.state.turn_detection.prefix_ms - 1000)  # type: ignore[operator]

    async def act(self, decisions: list[Decision], *, announced: bool = False) -> None:
        """Carry out the detector's decisions, in order (the caller holds ``lock``); ``announced``: a
        turn end among them was announced by the receiver (an announced ``Commit``)."""
        for decision in decisions:
            match decision:
                case SpeechStart():
                    await self.on_speech_start(decision)
                case TurnEnd():
                    await self.on_turn_end(decision, announced=announced)
                case RunTurnModel(check=check, start_ms=start_ms, end_ms=end_ms):
                    live = (
                        self.speculation
                        if self.ctx.state.turns.speculation_live(self.speculation or 0)
                        else None
                    )
                    self.checks.post(TurnCheck(check, self.window.between(start_ms, end_ms), live))
                case StartSpeculation():
                    self.start_speculation(decision)
                case AbandonSpeculation(attempt=attempt):
                    if self.ctx.state.turns.speculation_live(attempt):
                        self.ctx.telemetry.speculation("abandoned")
                    self.ctx.state.turns.abandon(attempt)

    async def on_speech_start(self, start: SpeechStart) -> None:
        self.speech_start_ms = start.start_ms
        self.speech_probabilities = []
        self.voiced_since_partial_ms = self.detector.position_ms - start.detected_ms
        self.item_id = new_id("item")
        state = self.ctx.state
        state.turns.speech_started(self.server_time(start.detected_ms), interrupt=state.interrupt_response)
        await self.ctx.send(SpeechStarted(int(start.detected_ms), self.item_id))

    async def maybe_partial(self, *, voiced: bool) -> None:
        """Post a partial job after every ``partial_interval`` of new voiced audio.

        Silence inside a turn (pauses, and the hangover before the turn ends) adds nothing to hear, so it
        posts nothing: the recognizer is then free when the final transcription arrives.
        """
        assert self.speech_start_ms is not None
        position = self.detector.position_ms
        if position - self.speech_start_ms > MAX_UTTERANCE_S * 1000:
            await self.act(self.detector.end_now())
            return
        if not voiced:
            return
        self.voiced_since_partial_ms += CHUNK_MS
        if self.voiced_since_partial_ms >= self.ctx.config.partial_interval * 1000:
            self.voiced_since_partial_ms = 0.0
            self.mailbox.post(PartialJob(self.utterance, self.window.between(self.speech_start_ms, position)))

    def _clear_speech(self) -> bool:
        probabilities = self.speech_probabilities or [0.0]
        return sum(probabilities) / len(probabilities) >= CLEAR_SPEECH

    def start_speculation(self, start: StartSpeculation) -> None:
        """Transcribe the speech so far for a held reply, if nothing else runs and the queue has room."""
        turns = self.ctx.state.turns
        if not turns.may_speculate() or not self.ctx.state.create_response:
            return
        audio = self.window.between(start.start_ms, start.end_ms + TAIL_MS)
        marks = {"speech_end": self.server_time(start.end_ms)}
        turns.speculation_started(start.attempt)
        try:
            self.jobs_tx.send_nowait(SpeculationJob(start.attempt, audio, marks, self._clear_speech()))
        except trio.WouldBlock:
            turns.abandon(start.attempt)
            return
        self.speculation = start.attempt
        if self.partial_scope is not None:
            self.partial_scope.cancel()  # a partial still waiting for the recognizer would only delay this
        self.ctx.telemetry.speculation("started")

    async def on_turn_end(self, end: TurnEnd, *, announced: bool = False) -> None:
        """The utterance ended (``announced``: the receiver already announced its final, see ``Commit``)."""
        assert self.speech_start_ms is not None
        audio = self.window.between(self.speech_start_ms, end.end_ms + TAIL_MS)
        clear = self._clear_speech()
        self.utterance += 1
        self.speech_start_ms = None
        self.ctx.telemetry.turn_end(end.reason)
        marks = {"speech_end": self.server_time(end.end_ms), "vad_decided": self.server_time(end.decided_ms)}
        turns = self.ctx.state.turns
        if end.speculation is not None and turns.confirm(end.speculation, marks):
            if announced:
                turns.transcription_done(None)  # the held reply is the transcript it announced
            turns.speech_stopped()  # the held reply is this turn's reply: it is let out now
            await self.ctx.send(SpeechStopped(int(end.end_ms)))
            return
        # Announce the final before the speech ends, so no request slips in between and starts over it.
        if not announced:
            turns.transcription_started()
        turns.speech_stopped()
        await self.ctx.send(SpeechStopped(int(end.end_ms)))
        await self.jobs_tx.send(FinalJob(audio, marks, None, clear_speech=clear, item_id=self.item_id))

    async def on_commit(self, commit: Commit) -> None:
        """End the user's turn by hand: whatever speech is buffered becomes the final transcript."""
        if self.automatic:
            async with self.lock:
                if not self.detector.in_speech:
                    await self._nothing_to_commit(commit, "no speech is buffered to commit")
                    return
                decisions = self.detector.end_now()
                await self.act(
                    [_until_now(d, self.window.end_ms) for d in decisions], announced=commit.announced
                )
            return
        audio = self.window.between(self.manual_start_ms, self.window.end_ms)
        self.manual_start_ms = self.window.end_ms
        self.window.trim(self.manual_start_ms)
        if audio.size == 0:
            await self._nothing_to_commit(commit, "no audio is buffered to commit")
            return
        now = self.server_time(self.window.end_ms)
        if not commit.announced:
            self.ctx.state.turns.transcription_started()
        marks = {"speech_end": now, "vad_decided": now}
        item_id = commit.item_id or new_id("item")
        await self.jobs_tx.send(FinalJob(audio, marks, commit.request_id, item_id=item_id))

    async def _nothing_to_commit(self, commit: Commit, message: str) -> None:
        if commit.announced:
            self.ctx.state.turns.transcription_done(None)  # no transcript is coming after all
        await self.ctx.send(ErrorEvent(codes.INPUT_AUDIO_EMPTY, message), commit.request_id)

    async def on_clear(self) -> None:
        if self.detector.in_speech:
            self.ctx.state.turns.speech_stopped()  # no final: the utterance is dropped
        await self.act([d for d in self.detector.reset() if isinstance(d, AbandonSpeculation)])
        self.utterance += 1
        self.speech_start_ms = None
        self.manual_start_ms = self.window.end_ms
        self.window.trim(self.window.end_ms)
        self.vad.reset()

    async def on_clip(self, clip: TranscribeClip) -> None:
        """A one-shot ``transcribe``: queued behind the finals, refused when the queue is full."""
        audio = resample(pcm16_to_float(clip.audio), clip.sample_rate, SAMPLE_RATE)
        job = ClipJob(
            audio, clip.request_id, clip.language, clip.item_id, clip.text, announced=clip.announced
        )
        try:
            self.jobs_tx.send_nowait(job)
        except trio.WouldBlock:
            if clip.announced:
                self.ctx.state.turns.transcription_done(None)
            limit = self.ctx.config.max_queued_transcriptions
            exc = RemoteProtocolError(
                f"{limit} transcriptions are queued already; clip dropped", code=codes.AUDIO_RATE_EXCEEDED
            )
            await self.ctx.error(exc, clip.request_id)

    # --- the helper tasks -------------------------------------------------------------------------
    async def partial_task(self) -> None:
        """Transcribe the newest partial job, forever; jobs posted meanwhile replace each other."""
        while True:
            job = await self.mailbox.take()
            if job.utterance != self.utterance:
                continue
            text = None
            try:
                # Cancelled (while still in line for the recognizer) when a speculative reply needs it.
                with trio.CancelScope() as self.partial_scope:
                    text = await self.ctx.engines.stt.transcribe(  # type: ignore[union-attr]
                        job.audio, partial=True, language=self.ctx.state.language
                    )
            except RecognitionError as exc:
                logger.warning("session %s: partial transcription failed: %s", self.ctx.state.session_id, exc)
                continue
            finally:
                self.partial_scope = None
            if job.utterance == self.utterance and text and not is_hallucination(text):
                await self.ctx.send(TranscriptPartial(text))

    async def turn_model_task(self) -> None:
        """Judge the newest pause with the end-of-turn model, forever; hand each verdict to the detector."""
        model = self.ctx.engines.turn_model
        while True:
            job = await self.checks.take()
            if model is None or not isinstance(self.detector, TurnPolicy):
                continue  # no model (or no longer semantic): the fallback silence ends the turn
            try:
                probability = await model.predict(job.audio)
            except TurnModelError as exc:
                logger.warning(
                    "session %s: turn model failed, waiting for silence: %s", self.ctx.state.session_id, exc
                )
                continue
            if job.speculation is not None and probability >= self.detector.settings.threshold:
                probability = await self._checked_against_words(job.speculation, probability)
            async with self.lock:
                if isinstance(self.detector, TurnPolicy):
                    await self.act(self.detector.verdict(job.check, probability))

    async def _checked_against_words(self, speculation: int, probability: float) -> float:
        """The model says "complete": unless the words so far stop on an article, a conjunction or a
        preposition (see ``trio_voice.completeness``), which no sentence ends on.

        Waits for the speculative reply's transcript, which the reply cannot go out without anyway.
        """
        text = await self.ctx.state.turns.wait_speculation_text(speculation)
        if text is not None and ends_unfinished(text, self.ctx.state.language):
            logger.info(
                "session %s: the model heard a finished turn (%.2f) in words that are not: %r",
                self.ctx.state.session_id,
                probability,
                text,
            )
            self.ctx.telemetry.turn_end("unfinished_words")
            return 0.0
        return probability


def _until_now(decision: Decision, now_ms: float) -> Decision:
    """A turn ended by hand ends where the audio received so far ends (``input_audio.commit``)."""
    return attrs.evolve(decision, end_ms=now_ms) if isinstance(decision, TurnEnd) else decision


def _probabilities(
    vad, echo: EchoGuard | None, chunks: np.ndarray, backlog: list[Callable[[], None]]
) -> list[float]:  # type: ignore[no-untyped-def]
    """Speech probability per chunk; 0 for a chunk the echo guard finds is the reply's own echo.

    The VAD sees every chunk (its state follows the audio), and so does the guard (its window too); the
    guard is told what was played (``backlog``) just before the first chunk loud enough to judge.
    """
    probabilities = []
    for chunk in chunks:
        p = vad.probability(chunk)
        if echo is not None:
            if backlog and float(np.sqrt(np.mean(np.square(chunk)))) >= echo.settings.min_chunk_rms:
                _tell(backlog)
            if echo.check(chunk).echo:
                p = 0.0
        probabilities.append(p)
    return probabilities


def _tell(backlog: list[Callable[[], None]]) -> None:
    """Give the echo guard what it has yet to be told, in order."""
    for update in backlog:
        update()
    backlog.clear()


async def listen_task(audio_rx: trio.MemoryReceiveChannel[ListenItem], *, ctx: SessionContext) -> None:
    """Listen to one session's audio until the channel closes."""
    async with audio_rx, trio.open_nursery() as nursery:
        jobs_tx, jobs_rx = trio.open_memory_channel[TranscriptionJob](ctx.config.max_queued_transcriptions)
        listener = Listener(ctx, jobs_tx)
        nursery.start_soon(listener.partial_task)
        nursery.start_soon(listener.turn_model_task)
        nursery.start_soon(partial(transcription_task, jobs_rx, ctx=ctx))
        async with jobs_tx:
            async for item in audio_rx:
                match item:
                    case AudioIn():
                        await listener.on_audio(item)
                    case Commit():
                        await listener.on_commit(item)
                    case Clear():
                        await listener.on_clear()
                    case TranscribeClip():
                        await listener.on_clip(item)
        nursery.cancel_scope.cancel()
