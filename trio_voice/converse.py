"""A session's turns, one at a time: the task that owns them, and one reply's lifecycle, storage and metrics.

::

    converse_task(control, ...)         the only task that starts, cancels or replaces turns
    └── run_one_turn(handle, ...)       response.created → (the turn nursery, trio_voice.turn) → response.done

``converse_task`` takes what :class:`~trio_voice.turn_control.TurnControl` says to do next: requests that
were superseded before they started are opened and closed at once (``cancelled``, ``new_message``); the
newest runs. ``run_one_turn`` runs one reply inside its ``TurnHandle.scope`` and, however it ends
(completed, cancelled, failed, the client gone), sends its ``response.done`` through ``emit`` and stores
what was actually sent. The HTTP streaming fallbacks call ``run_one_turn`` too, with their own emit.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import trio

from .codec.codes import CancelReason, ReplyStatus
from .config import Config
from .conversation import context_for, store_reply
from .engines import Engines
from .errors import EngineError, StorageError
from .events import ErrorEvent, ReplyCreated, ReplyDone
from .ids import new_id
from .pause import retract
from .session_state import SessionState
from .telemetry import Telemetry
from .turn import TurnRecord, TurnRequest, run_turn
from .turn_control import TurnControl, TurnHandle, TurnKind

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
    while True:
        superseded, turn = await control.wait_next()
        for request in [*superseded, *([turn] if turn is not None else [])]:
            handle = control.start(request, new_id("resp"))
            if request is not turn:
                handle.cancel(CancelReason.NEW_MESSAGE)
            try:
                await run_one_turn(
                    handle,
                    emit=emit_for(request.request_id),
                    engines=engines,
                    config=config,
                    telemetry=telemetry,
                    state=state,
                )
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

    Error handling: an ``EngineError`` or ``StorageError`` fails this reply only: an ``error`` event with
    the ``response_id``, then ``response.done`` with ``status: failed`` and the error code as reason.
    """
    request = handle.request
    record = TurnRecord(started_at=request.started_at)
    record.marks.update(request.speech_marks)
    state.remember(handle.response_id, record)
    conversation_id = state.conversation_id
    status: ReplyStatus = ReplyStatus.CANCELLED
    reason: str | None = CancelReason.CLIENT_DISCONNECTED
    metrics: dict[str, Any] | None = None
    user_stored = request.kind != TurnKind.CHAT
    try:
        await emit(ReplyCreated(handle.response_id))
        try:
            if not user_stored:
                # The user's words are part of the conversation even if the reply never runs.
                await engines.store.add_message(conversation_id, "user", request.text)
                user_stored = True
            with handle.scope:
                messages: list[dict[str, str]] = []
                if request.kind == TurnKind.CHAT:
                    messages = await context_for(
                        engines.store,
                        conversation_id,
                        instructions=state.instructions,
                        limit=config.history_messages,
                    )
                turn_request = TurnRequest(
                    response_id=handle.response_id,
                    kind=request.kind,
                    text=request.text,
                    messages=messages,
                    started_at=request.started_at,
                    output_audio=state.output_audio,
                )
                # Through the reply's pause gate: response.pause holds its events, generation goes on.
                handle.gate.max_events = config.pause_buffer_events
                handle.gate.max_bytes = config.pause_buffer_bytes
                stages = partial(
                    run_turn, turn_request, llm=engines.llm, tts=engines.tts, config=config, record=record
                )
                await handle.gate.run(stages, emit)
                status, reason = ReplyStatus.COMPLETED, None
        except (EngineError, StorageError) as exc:
            status, reason = ReplyStatus.FAILED, exc.code
            logger.warning("session %s: reply %s failed: %s", state.session_id, handle.response_id, exc)
            telemetry.error(exc.code)
            await emit(ErrorEvent(exc.code, exc.message, handle.response_id))
        if handle.scope.cancelled_caught:
            assert handle.reason is not None
            status, reason = ReplyStatus.CANCELLED, handle.reason
        if handle.gate.held:  # cancelled while paused: what was held was never sent
            retract(record, handle.gate.held)
            handle.gate.held.clear()
        metrics = turn_metrics(record, handle)
        await emit(ReplyDone(handle.response_id, status, reason, record.text, metrics))
    finally:
        state.turn_counts[status] += 1
        if metrics is None:
            metrics = turn_metrics(record, handle)
        telemetry.turn_done(status, reason, metrics)
        logger.info(
            "session %s: reply %s %s%s: %s",
            state.session_id,
            handle.response_id,
            status,
            f" ({reason})" if reason else "",
            " ".join(f"{k}={v}" for k, v in metrics.items() if v is not None),
        )
        if user_stored:
            with trio.CancelScope(shield=True), trio.move_on_after(STORE_TIMEOUT):
                await store_reply(
                    engines.store,
                    conversation_id,
                    handle.response_id,
                    record,
                    status=status,
                    reason=reason,
                    metrics=metrics,
                )


def turn_metrics(record: TurnRecord, handle: TurnHandle) -> dict[str, Any]:
    """Everything ``response.done.metrics`` reports, in milliseconds."""
    metrics: dict[str, Any] = record.metrics() | voice_metrics(record)
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
