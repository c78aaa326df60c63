"""Offline delivery: messages for a user with no connection, queued with a TTL and delivered on the next.

Two kinds of message wait for a user (``OfflineMessage.kind``): ``system`` messages an operator sends
through ``POST /v1/users/{id}/messages``, and ``reply``: a reply that finished after its user left (the
session waited ``resume_ttl`` for the client, which never came back). Both are persisted through the
shared state into the conversation store, so a restart loses none, and each waits at most its TTL.

A session with a user sends every pending message as ``system.message`` when it joins and whenever one
is queued; the client acknowledges each with ``message.delivered``, which marks it delivered for good.
Until then it is pending, and the user's next session gets it again (at least once, never lost). An
expired message is dropped unsent and counted (``trio_voice_offline_messages_total{event="expired"}``).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import trio

from .codec import codes
from .errors import RemoteProtocolError, StorageError
from .events import SystemMessage
from .ids import new_id
from .shared import QueueFull, SharedState
from .storage import OfflineMessage
from .telemetry import Telemetry

if TYPE_CHECKING:
    from .session_context import SessionContext

logger = logging.getLogger(__name__)


def new_message(
    shared: SharedState,
    user_id: str,
    text: str,
    *,
    ttl: float,
    kind: str = "system",
    conversation_id: str | None = None,
    response_id: str | None = None,
) -> OfflineMessage:
    """A message for ``user_id``, stamped now on the shared state's clock, expiring ``ttl`` seconds later."""
    now = shared.now()
    return OfflineMessage(
        message_id=new_id("msg"),
        user_id=user_id,
        kind=kind,
        text=text,
        created_at=now,
        expires_at=now + ttl,
        conversation_id=conversation_id,
        response_id=response_id,
    )


async def sweep(shared: SharedState, telemetry: Telemetry) -> int:
    """Drop the messages that expired, counting those never delivered; return that count."""
    expired = await shared.drop_expired()
    if expired:
        telemetry.offline_message("expired", expired)
        logger.info("dropped %d offline message(s) that expired undelivered", expired)
    return expired


async def sweep_task(shared: SharedState, telemetry: Telemetry, *, interval: float) -> None:
    """Sweep every ``interval`` seconds, so expired messages are counted even for users who never return."""
    while True:
        await trio.sleep(interval)
        try:
            await sweep(shared, telemetry)
        except StorageError as exc:
            logger.warning("offline sweep failed: %s", exc)


async def deliver_pending(ctx: SessionContext) -> None:
    """Send this session's client every message waiting for its user that this session has not sent yet."""
    user_id = ctx.state.user.user_id
    if ctx.shared is None or user_id is None:
        return
    await sweep(ctx.shared, ctx.telemetry)
    pending = await ctx.shared.pending_messages(user_id)
    sent = ctx.state.user.sent_messages
    sent &= {m.message_id for m in pending}  # acknowledged ones are no longer pending: forget them
    for message in pending:
        if message.message_id in sent:
            continue
        sent.add(message.message_id)
        await ctx.send(
            SystemMessage(
                message.message_id,
                message.kind,
                message.text,
                message.created_at,
                message.expires_at,
                message.conversation_id,
            )
        )


async def acknowledge(ctx: SessionContext, message_id: str, request_id: str | None) -> None:
    """``message.delivered``: the client has the message; it is never sent again.

    Raises:
        RemoteProtocolError: ``user_required`` without a user, ``message_not_found`` if it names no
            message waiting for the user.
    """
    user_id = ctx.state.user.user_id
    if ctx.shared is None or user_id is None:
        raise RemoteProtocolError(
            "message.delivered needs a user", code=codes.USER_REQUIRED, request_id=request_id
        )
    if not await ctx.shared.mark_delivered(user_id, message_id):
        raise RemoteProtocolError(
            f"no message {message_id!r} is waiting for this user",
            code=codes.MESSAGE_NOT_FOUND,
            request_id=request_id,
        )
    ctx.telemetry.offline_message("delivered")


async def queue_unsent_replies(
    shared: SharedState,
    telemetry: Telemetry,
    user_id: str,
    replies: list[tuple[str, str]],
    *,
    conversation_id: str,
    ttl: float,
) -> None:
    """A session whose client never came back: its finished replies that were never written to a
    connection (``(response_id, text)``) wait for the user's next connection instead."""
    for response_id, text in replies:
        message = new_message(
            shared,
            user_id,
            text,
            ttl=ttl,
            kind="reply",
            conversation_id=conversation_id,
            response_id=response_id,
        )
        try:
            await shared.queue_message(message)
        except QueueFull:
            logger.warning("offline queue of %s is full; reply %s is not queued", user_id, response_id)
            continue
        telemetry.offline_message("queued")
