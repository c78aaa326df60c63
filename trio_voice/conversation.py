"""Conversation memory around a turn: the LLM context before it, the stored record after it.

Shared by every front end that runs turns (WebSocket sessions, HTTP streaming fallbacks), so that each
stores replies the same way: as what was actually sent, marked interrupted unless it completed.
"""

from __future__ import annotations

import logging
from typing import Any

from .codec.codes import ReplyStatus
from .errors import StorageError
from .storage import ConversationStore
from .turn import TurnRecord

logger = logging.getLogger(__name__)


def window_start(count: int, limit: int) -> int:
    """Index of the first message the LLM sees, out of ``count``, showing at most ``limit`` of them.

    The window does not slide one message per turn: it jumps forward half a window at a time. Between
    jumps every request starts with the same messages, so the LLM server reuses its cached prompt and
    only reads the new turn; a sliding window changes the prefix every turn and makes it re-read the
    whole history (measured: first token 0.1 s → 2.9 s from the 11th turn of a 20-message window).
    """
    if count <= limit:
        return 0
    step = max(1, limit // 2)
    return ((count - limit - 1) // step + 1) * step


async def context_for(
    store: ConversationStore, conversation_id: str, *, instructions: str, limit: int
) -> list[dict[str, str]]:
    """The LLM messages of a turn whose user message is stored already: the instructions, then the recent
    history (between ``limit // 2`` and ``limit`` messages, see :func:`window_start`)."""
    count = await store.message_count(conversation_id)
    history = await store.history(conversation_id, limit=count - window_start(count, limit))
    messages = [{"role": "system", "content": instructions}]
    messages += [{"role": m.role, "content": m.text} for m in history if m.text]
    return messages


async def store_reply(
    store: ConversationStore,
    conversation_id: str,
    response_id: str,
    record: TurnRecord,
    *,
    status: str,
    reason: str | None,
    metrics: dict[str, Any],
    item_id: str | None = None,
) -> None:
    """Store what a reply actually sent (as message ``item_id``), and its latency record. Storage failures
    are logged, not raised: the reply has already been delivered."""
    record.stored = True  # from here on, a response.truncate updates the stored message
    text = record.kept_text
    try:
        if text:
            interrupted = status != ReplyStatus.COMPLETED or text != record.text
            await store.add_message(
                conversation_id,
                "assistant",
                text,
                interrupted=interrupted,
                response_id=response_id,
                item_id=item_id,
            )
        await store.record_turn(conversation_id, response_id, status=status, reason=reason, metrics=metrics)
    except StorageError as exc:
        logger.error("could not store reply %s of conversation %s: %s", response_id, conversation_id, exc)
