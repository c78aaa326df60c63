"""One turn at a time: the session's converse task and a reply's lifecycle, storage and metrics.

``converse_task`` runs the turns a session queues, in order; ``run_one_turn`` runs one reply inside its
``TurnHandle.scope`` and, however it ends (completed, cancelled, failed, the client gone), sends its
``response.done`` through the session's single writer and stores what was actually sent.
The HTTP streaming fallbacks run their one turn through ``run_one_turn`` too.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from functools import partial
from typing import TYPE_CHECKING, Any

import attrs
import trio

from .conversation import context_for, store_reply
from .errors import EngineError
from .events import ReplyDone
from .ids import new_id
from .turn import TurnRecord, TurnRequest, run_turn

if TYPE_CHECKING:
    from .session import SessionContext

logger = logging.getLogger(__name__)

# Turn records kept per session so a late ``response.truncate`` can still find its reply.
KEPT_TURN_RECORDS = 16


@attrs.frozen
class PendingTurn:
    kind: str  # "chat" or "speak"
    text: str
    request_id: str | None
    started_at: float
    speech_marks: Mapping[str, float] = attrs.field(factory=dict)  # voice turns: VAD/STT times


@attrs.define
class TurnHandle:
    """The running turn: its cancel scope and why it was cancelled."""

    response_id: str
    scope: trio.CancelScope = attrs.field(factory=trio.CancelScope)
    reason: str | None = None
    speech_started_at: float | None = None  # barge-in: when the speech that cancelled it began
    finished: trio.Event = attrs.field(factory=trio.Event)

    def cancel(self, reason: str) -> None:
        if self.reason is None:
            self.reason = reason
        self.scope.cancel()


async def converse_task(turn_rx: trio.MemoryReceiveChannel[PendingTurn], *, ctx: SessionContext) -> None:
    """Run turns one at a time, in arrival order."""
    async with turn_rx:
        async for pending in turn_rx:
            await run_one_turn(pending, ctx=ctx)


async def run_one_turn(pending: PendingTurn, *, ctx: SessionContext) -> None:
    """One reply from request to ``response.done``, with its storage and metrics.

    Resource handling: the turn runs inside ``handle.scope``; whatever ends it (completion, a cancel, an
    LLM failure, the session going away), its ``response.done`` is emitted and the assistant message is
    stored as what was actually sent.
    """
    state, config = ctx.state, ctx.config
    handle = TurnHandle(response_id=new_id("resp"))
    state.current_turn = handle
    state.activity = "responding"
    record = TurnRecord(started_at=pending.started_at)
    record.marks.update(pending.speech_marks)
    state.records[handle.response_id] = (state.conversation_id, record)
    while len(state.records) > KEPT_TURN_RECORDS:
        state.records.popitem(last=False)
    status, reason = "cancelled", "client_disconnected"
    emit = partial(_emit, ctx, pending.request_id)
    conversation_id = state.conversation_id
    metrics: dict[str, Any] | None = None
    try:
        with handle.scope:
            messages: list[dict[str, str]] = []
            if pending.kind == "chat":
                messages = await context_for(
                    ctx.engines.store,
                    conversation_id,
                    pending.text,
                    instructions=state.instructions,
                    limit=config.history_messages,
                )
            request = TurnRequest(
                response_id=handle.response_id,
                kind=pending.kind,
                text=pending.text,
                messages=messages,
                started_at=pending.started_at,
                output_audio=state.output_audio,
            )
            try:
                await run_turn(
                    request, emit, llm=ctx.engines.llm, tts=ctx.engines.tts, config=config, record=record
                )
            except EngineError as exc:
                status, reason = "failed", exc.code
                logger.warning("session %s: reply %s failed: %s", state.session_id, handle.response_id, exc)
                await ctx.error(exc, pending.request_id)
            else:
                status, reason = "completed", None
        if handle.scope.cancelled_caught:
            status, reason = "cancelled", handle.reason
        metrics = turn_metrics(record, handle)
        await emit(ReplyDone(handle.response_id, status, reason, record.text, metrics))
    finally:
        handle.finished.set()
        state.current_turn = None
        state.activity = "idle"
        state.turn_counts[status] += 1
        if metrics is None:
            metrics = turn_metrics(record, handle)
        ctx.telemetry.turn_done(status, reason, metrics)
        logger.info(
            "session %s: reply %s %s%s: %s",
            state.session_id,
            handle.response_id,
            status,
            f" ({reason})" if reason else "",
            " ".join(f"{k}={v}" for k, v in metrics.items() if v is not None),
        )
        with trio.CancelScope(shield=True), trio.move_on_after(5):
            await store_reply(
                ctx.engines.store,
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


async def _emit(ctx: SessionContext, request_id: str | None, event: Any) -> None:
    await ctx.send(event, request_id)
