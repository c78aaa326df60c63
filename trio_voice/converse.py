"""A session's turns, one at a time: the task that owns them, and one reply's lifecycle, storage and metrics.

::

    converse_task(control, ...)         the only task that starts, cancels or replaces turns
    └── run_one_turn(handle, ...)       response.created → (the turn nursery, trio_voice.turn) → response.done

``converse_task`` takes what :class:`~trio_voice.turn_control.TurnControl` says to do next: requests that
were superseded (or cancelled) before they started are opened and closed at once (``cancelled``,
``new_message`` or the cancel's reason); the newest runs. A ``respond`` request (the realtime API's
``response.create``) answers the stored conversation as it stands, with the request's own
instructions and output modality when it has them. The core names the messages it stores: the reply's
``ReplyCreated`` carries the assistant message's ``item_id``. ``run_one_turn`` runs one reply inside its ``TurnHandle.scope`` and, however it ends
(completed, cancelled, failed, the client gone), sends its ``response.done`` through ``emit`` and stores
what was actually sent. The HTTP streaming fallbacks call ``run_one_turn`` too, with their own emit.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import attrs
import trio

from .codec.codes import CancelReason, ReplyStatus
from .config import Config
from .conversation import context_for, store_reply
from .engines import Engines
from .errors import EngineError, StorageError
from .events import (
    AudioReady,
    ErrorEvent,
    NarrationDone,
    NarrationPaused,
    NarrationProgress,
    PhraseReady,
    ReplyCreated,
    ReplyDone,
    TextDelta,
)
from .ids import new_id
from .narration import Narration
from .pause import retract
from .session_state import SessionState
from .telemetry import Telemetry
from .turn import TurnRecord, TurnRequest, run_turn
from .turn_control import PendingTurn, ReplyGate, TurnControl, TurnHandle, TurnKind
from .voices import Voice, language_of

logger = logging.getLogger(__name__)

Emit = Callable[[Any], Awaitable[None]]
# How long the store write after a reply may hold up the next one (it is shielded from cancellation).
STORE_TIMEOUT = 5.0


async def converse_task(
    control: TurnControl,
    *,
    emit_for: Callable[[str | None], Emit],
    engines: Engines,
    config: Config,
    telemetry: Telemetry,
    state: SessionState,
) -> None:
    """Run the session's turns until cancelled. ``emit_for(request_id)`` is how a turn's events go out."""
    run = partial(run_one_turn, engines=engines, config=config, telemetry=telemetry, state=state)
    while True:
        superseded, turn = await control.wait_next()
        for request, reason in superseded:
            handle = control.start(request, new_id("resp"))
            handle.cancel(reason)
            try:
                await run(handle, emit=emit_for(request.request_id))
            finally:
                control.finish(handle)
        if turn is not None:
            handle = control.start(turn, new_id("resp"))
        else:
            started = control.start_speculation(new_id("resp"))
            if started is None:
                continue
            handle = started
        try:
            await run(handle, emit=emit_for(handle.request.request_id))
        finally:
            control.finish(handle)


async def run_one_turn(
    handle: TurnHandle,
    *,
    emit: Emit,
    engines: Engines,
    config: Config,
    telemetry: Telemetry,
    state: SessionState,
) -> None:
    """One reply from ``response.created`` to ``response.done``, with its storage and metrics.

    Resource handling: the turn runs inside ``handle.scope``; whatever ends it (completion, a cancel, an
    engine or storage failure, the session going away), its ``response.done`` is emitted (unless the
    session itself is gone) and the reply is stored as what was actually sent.

    A speculative reply (``handle.gate``) emits into its gate, which holds its events until the turn is
    confirmed; abandoned, it sends nothing and stores nothing, its user message included.

    Error handling: an ``EngineError`` or ``StorageError`` fails this reply only: an ``error`` event with
    the ``response_id``, then ``response.done`` with ``status: failed`` and the error code as reason.
    """
    request = handle.request
    outcome = Outcome(TurnRecord(started_at=request.started_at), user_stored=request.kind != TurnKind.CHAT)
    outcome.record.marks.update(request.speech_marks)
    state.remember(handle.response_id, outcome.record)
    conversation_id = state.conversation_id
    gate = handle.gate
    forwarded = Forwarded()
    reply = partial(
        _reply, handle, outcome=outcome, engines=engines, config=config, telemetry=telemetry, state=state
    )
    try:
        if gate is None:
            await reply(emit)
        else:

            def done_as_sent(event: ReplyDone) -> ReplyDone:
                forwarded.apply_to(outcome.record, gate)
                metrics = turn_metrics(outcome.record, handle)
                outcome.metrics = metrics
                return attrs.evolve(event, text=outcome.record.text, metrics=metrics)

            with gate.scope:
                async with trio.open_nursery() as nursery:
                    held_tx, held_rx = trio.open_memory_channel[Any](GATE_HELD_EVENTS)
                    nursery.start_soon(_forward_task, held_rx, gate, emit, forwarded, done_as_sent)
                    async with held_tx:
                        await reply(held_tx.send)
    finally:
        if gate is not None and not gate.released.is_set():
            if gate.abandoned:
                logger.info(
                    "session %s: speculative reply %s abandoned", state.session_id, handle.response_id
                )
        else:
            if gate is not None:
                forwarded.apply_to(outcome.record, gate)
            await _account(
                handle, outcome, conversation_id, engines=engines, telemetry=telemetry, state=state
            )


GATE_HELD_EVENTS = 64  # events a speculative reply may hold before its pipeline waits for the verdict


@attrs.define
class Outcome:
    """How a reply ended, filled in as it goes; read after it ends, however it ended."""

    record: TurnRecord
    user_stored: bool
    # The assistant message's name, in the store and in the realtime API.
    item_id: str = attrs.field(factory=lambda: new_id("item"))
    status: ReplyStatus = ReplyStatus.CANCELLED
    reason: str | None = CancelReason.CLIENT_DISCONNECTED
    metrics: dict[str, Any] | None = None


@attrs.define
class Forwarded:
    """What a speculative reply's gate actually let out: the reply's record is this, not what was held."""

    text: str = ""
    phrases: list[str] = attrs.field(factory=list)
    phrase_audio_ms: list[float] = attrs.field(factory=list)
    first_audio_at: float | None = None

    def add(self, event: Any) -> None:
        if isinstance(event, TextDelta):
            self.text += event.delta
        elif isinstance(event, PhraseReady):
            self.phrases.append(event.text)
            self.phrase_audio_ms.append(0.0)
        elif isinstance(event, AudioReady):
            if self.first_audio_at is None:
                self.first_audio_at = trio.current_time()
            if self.phrase_audio_ms:
                self.phrase_audio_ms[-1] += event.pcm_ms

    def apply_to(self, record: TurnRecord, gate: ReplyGate) -> None:
        """Make ``record`` say what was sent, and when: held events count from the moment they were let out."""
        record.text, record.phrases, record.phrase_audio_ms = self.text, self.phrases, self.phrase_audio_ms
        record.marks.update(gate.marks)
        if gate.released_at is not None:
            for name in ("llm_first_token", "first_phrase", "transcript_final"):
                if name in record.marks:
                    record.marks[name] = max(record.marks[name], gate.released_at)
        if self.first_audio_at is not None:
            record.marks["first_audio"] = self.first_audio_at
        else:
            record.marks.pop("first_audio", None)


async def _forward_task(
    held_rx: trio.MemoryReceiveChannel[Any],
    gate: ReplyGate,
    emit: Emit,
    forwarded: Forwarded,
    done_as_sent: Callable[[ReplyDone], ReplyDone],
) -> None:
    """Wait for the verdict, then let the held events out in order, and everything after them."""
    async with held_rx:
        await gate.released.wait()
        async for event in held_rx:
            if isinstance(event, ReplyDone):
                event = done_as_sent(event)
            await emit(event)
            forwarded.add(event)


async def _reply(
    handle: TurnHandle,
    emit: Emit,
    *,
    outcome: Outcome,
    engines: Engines,
    config: Config,
    telemetry: Telemetry,
    state: SessionState,
) -> None:
    """Emit one reply's events, ``response.created`` to ``response.done``, filling in ``outcome``."""
    request = handle.request
    record = outcome.record
    conversation_id = state.conversation_id
    chat = request.kind == TurnKind.CHAT
    voice = choose_voice(request, state, engines)
    narration: Narration | None = request.narration
    phrases: tuple[str, ...] = ()
    on_phrase_sent = None
    if narration is not None:
        narration.begin_segment(lambda: record.heard_ms)
        phrases = narration.phrases[narration.next_index :]
        on_phrase_sent = _narration_progress(narration, handle.response_id, emit)
    for event in request.preamble:
        await emit(event)
    await emit(ReplyCreated(handle.response_id, outcome.item_id))
    try:
        if chat and handle.gate is None:
            # The user's words are part of the conversation even if the reply never runs.
            await engines.store.add_message(conversation_id, "user", request.text, item_id=request.item_id)
            outcome.user_stored = True
        with handle.scope:
            messages: list[dict[str, str]] = []
            if chat or request.kind == TurnKind.RESPOND:  # respond: the stored history is the question
                instructions = request.instructions
                messages = await context_for(
                    engines.store,
                    conversation_id,
                    instructions=state.instructions if instructions is None else instructions,
                    limit=config.history_messages,
                )
                if not outcome.user_stored:  # speculative: the words are stored only if the reply is used
                    messages.append({"role": "user", "content": request.text})
            output_audio = request.output_audio
            turn_request = TurnRequest(
                response_id=handle.response_id,
                # A reply over the history is an LLM turn like any other once its context is built.
                kind=TurnKind.CHAT if request.kind == TurnKind.RESPOND else request.kind,
                text=request.text,
                messages=messages,
                started_at=request.started_at,
                output_audio=state.output_audio if output_audio is None else output_audio,
                output_format=state.output_audio_format,
                phrases=phrases,
                on_phrase_sent=on_phrase_sent,
            )
            # Through the reply's pause gate: response.pause holds its events, generation goes on.
            handle.pause.max_events = config.pause_buffer_events
            handle.pause.max_bytes = config.pause_buffer_bytes
            stages = partial(
                run_turn, turn_request, llm=engines.llm, tts=voice.tts, config=config, record=record
            )
            await handle.pause.run(stages, emit)
            outcome.status, outcome.reason = ReplyStatus.COMPLETED, None
    except (EngineError, StorageError) as exc:
        outcome.status, outcome.reason = ReplyStatus.FAILED, exc.code
        logger.warning("session %s: reply %s failed: %s", state.session_id, handle.response_id, exc)
        telemetry.error(exc.code)
        await emit(ErrorEvent(exc.code, exc.message, handle.response_id))
    if handle.scope.cancelled_caught:
        assert handle.reason is not None
        outcome.status, outcome.reason = ReplyStatus.CANCELLED, handle.reason
    if handle.pause.held:  # cancelled while paused: what was held was never sent
        retract(record, handle.pause.held)
        handle.pause.held.clear()
    outcome.metrics = turn_metrics(record, handle)
    await emit(ReplyDone(handle.response_id, outcome.status, outcome.reason, record.text, outcome.metrics))
    if narration is not None:
        await _narration_segment_ended(narration, outcome.status, outcome.reason, emit, state)


async def _account(
    handle: TurnHandle,
    outcome: Outcome,
    conversation_id: str,
    *,
    engines: Engines,
    telemetry: Telemetry,
    state: SessionState,
) -> None:
    """Count, log and store a reply the client saw (some of), however it ended."""
    request, record = handle.request, outcome.record
    state.turn_counts[outcome.status] += 1
    if request.speculative:
        telemetry.speculation("used")
    metrics = outcome.metrics if outcome.metrics is not None else turn_metrics(record, handle)
    telemetry.turn_done(outcome.status, outcome.reason, metrics)
    logger.info(
        "session %s: reply %s %s%s: %s",
        state.session_id,
        handle.response_id,
        outcome.status,
        f" ({outcome.reason})" if outcome.reason else "",
        " ".join(f"{k}={v}" for k, v in metrics.items() if v is not None),
    )
    with trio.CancelScope(shield=True), trio.move_on_after(STORE_TIMEOUT):
        if request.kind == TurnKind.CHAT and not outcome.user_stored:
            try:
                await engines.store.add_message(
                    conversation_id, "user", request.text, item_id=request.item_id
                )
            except StorageError as exc:
                logger.error("session %s: could not store the user's words: %s", state.session_id, exc)
                return
            outcome.user_stored = True
        if outcome.user_stored:
            await store_reply(
                engines.store,
                conversation_id,
                handle.response_id,
                record,
                status=outcome.status,
                reason=outcome.reason,
                metrics=metrics,
                item_id=outcome.item_id,
            )


def choose_voice(request: PendingTurn, state: SessionState, engines: Engines) -> Voice:
    """The voice of a reply: the one the request named, else one speaking the language the user was
    heard in (``language: "auto"``) when installed, else the session's."""
    voices = engines.voices
    if request.voice is not None and request.voice in voices:
        return voices.get(request.voice)
    if request.language is not None:
        current = voices.get(state.voice if state.voice in voices else None)
        if language_of(current.language) != language_of(request.language):
            return voices.for_language(request.language) or current
        return current
    return voices.get(state.voice if state.voice in voices else None)


def _narration_progress(narration: Narration, response_id: str, emit: Emit):  # type: ignore[no-untyped-def]
    """The turn's ``on_phrase_sent``: move the narration's place on, then say so.

    The place moves first: the phrase's audio is all sent, so it must not be said again after a pause
    even if the pause cancels the progress event (``narration.paused`` then reports the place).
    """

    async def on_phrase_sent(index: int, audio_ms: float) -> None:
        narration.phrase_sent(audio_ms)
        await emit(
            NarrationProgress(
                narration.narration_id,
                response_id,
                narration.next_index - 1,
                narration.total,
                round(narration.position_ms),
            )
        )

    return on_phrase_sent


async def _narration_segment_ended(
    narration: Narration, status: ReplyStatus, reason: str | None, emit: Emit, state: SessionState
) -> None:
    """After a narration's reply: it is done, it was cancelled, or it waits paused for narration.resume."""
    if narration not in state.narrations.all():
        await emit(NarrationDone(narration.narration_id, "cancelled"))
    elif narration.finished:
        state.narrations.remove(narration)
        await emit(NarrationDone(narration.narration_id, "completed"))
    else:
        narration.paused = True
        await emit(NarrationPaused(narration.narration_id, narration.next_index, reason or str(status)))
        if narration.resume_asked:
            narration.resume_asked = False
            narration.rewind_to_heard()
            narration.paused = False


def turn_metrics(record: TurnRecord, handle: TurnHandle) -> dict[str, Any]:
    """Everything ``response.done.metrics`` reports, in milliseconds."""
    metrics: dict[str, Any] = record.metrics() | voice_metrics(record)
    if "speech_end" in record.marks:
        metrics["speculative"] = handle.request.speculative
    if handle.speech_started_at is not None:
        # Barge-in: from the start of the user's speech to now, when nothing more of this reply is sent.
        metrics["interruption_ms"] = round((trio.current_time() - handle.speech_started_at) * 1000, 1)
    return metrics


def voice_metrics(record: TurnRecord) -> dict[str, float]:
    """A spoken turn's extra latencies: its clock starts at the end of the user's speech."""
    marks = record.marks
    if "speech_end" not in marks:
        return {}

    def ms(a: str, b: str) -> float | None:
        return round((marks[b] - marks[a]) * 1000, 1) if a in marks and b in marks else None

    out = {
        "speech_end_to_final_ms": ms("speech_end", "transcript_final"),
        "vad_hangover_ms": ms("speech_end", "vad_decided"),
        "voice_to_voice_ms": ms("speech_end", "first_audio"),
    }
    return {k: v for k, v in out.items() if v is not None}
