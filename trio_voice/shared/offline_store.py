"""The offline queue of both shared states: messages persisted in the conversation store, notified by fan-out.

Why the store and not Redis: the store (SQLite alone, PostgreSQL when several instances share it) is the
durable copy of everything a user must not lose, with the same backups and the same tests as the
conversations; Redis, as usually deployed, is a cache that may drop keys under memory pressure or lose the
last second on a restart. So a queued message is written to the store (its TTL is its ``expires_at``,
enforced on read and by the periodic sweep), and the shared state only *notifies* the user's sessions,
wherever they are, with a ``MessageQueued`` event; they read what is pending from the store.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from ..storage import ConversationStore, OfflineMessage
from .interface import MessageQueued, QueueFull, UserEvent


class OfflineInStore:
    """The offline-queue methods of ``SharedState``, for a class with ``store``, ``max_queued``,
    ``clock`` and ``publish``."""

    store: ConversationStore
    max_queued: int
    clock: Callable[[], float]
    publish: Callable[[UserEvent], Awaitable[None]]

    async def queue_message(self, message: OfflineMessage) -> None:
        if not await self.store.queue_offline(message, max_queued=self.max_queued):
            raise QueueFull(f"user {message.user_id!r} has {self.max_queued} messages waiting already")
        await self.publish(MessageQueued(message.user_id, message.message_id))

    async def pending_messages(self, user_id: str) -> list[OfflineMessage]:
        return await self.store.pending_offline(user_id, now=self.clock())

    async def mark_delivered(self, user_id: str, message_id: str) -> bool:
        return await self.store.mark_offline_delivered(user_id, message_id, now=self.clock())

    async def messages(self, user_id: str, *, limit: int) -> list[OfflineMessage]:
        return await self.store.offline_messages(user_id, limit=limit)

    async def drop_expired(self) -> int:
        return await self.store.drop_expired_offline(now=self.clock())
