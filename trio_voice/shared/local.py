"""The in-process shared state: the embedded default behind ``SharedState``, for one server instance.

Routes, presence and subscribers live in dictionaries of this process; offline messages go to the
conversation store (SQLite or PostgreSQL), so they survive a restart. Everything is bounded: tombstones
and remembered ``last_seen`` times are kept for a fixed number of sessions and users (oldest forgotten
first), a subscriber's channel holds ``SUBSCRIBER_BUFFER`` events and a subscriber that falls further
behind loses the newest (counted in ``dropped``), and each user's queue holds ``max_queued`` messages.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import attrs
import trio

from ..ids import new_id
from ..storage import ConversationStore, OfflineMessage
from .interface import (
    MessageQueued,
    QueueFull,
    SessionPresence,
    SessionRoute,
    UserEvent,
    UserPresence,
)

logger = logging.getLogger(__name__)

# Events a subscriber may have waiting; presence and typing are indicators, so a stuck session loses them.
SUBSCRIBER_BUFFER = 64
# Ended sessions remembered (so a late resume learns why), and users whose last_seen outlives them.
MAX_TOMBSTONES = 10_000
MAX_REMEMBERED_USERS = 100_000


def _bounded_put(mapping: OrderedDict, key: object, value: object, limit: int) -> None:
    mapping[key] = value
    mapping.move_to_end(key)
    while len(mapping) > limit:
        mapping.popitem(last=False)


class InProcessState:
    """``SharedState`` for one process. ``clock`` is the wall clock (tests pass their own)."""

    def __init__(
        self,
        store: ConversationStore,
        *,
        max_queued: int = 100,
        clock: Callable[[], float] = time.time,
        instance_id: str | None = None,
    ) -> None:
        self.store = store
        self.max_queued = max_queued
        self.clock = clock
        self.instance_id = instance_id or new_id("inst")
        self._routes: dict[str, SessionRoute] = {}
        self._tombstones: OrderedDict[str, SessionRoute] = OrderedDict()
        self._presence: dict[str, dict[str, SessionPresence]] = {}
        self._last_seen: OrderedDict[str, float] = OrderedDict()
        self._subscribers: dict[str, set[trio.MemorySendChannel[UserEvent]]] = {}
        self.dropped = 0  # events lost by subscribers that fell behind

    def now(self) -> float:
        return self.clock()

    # --- resume routes --------------------------------------------------------------------------------
    async def put_route(self, route: SessionRoute) -> None:
        await trio.lowlevel.checkpoint()
        self._routes[route.session_id] = route
        self._tombstones.pop(route.session_id, None)

    async def get_route(self, session_id: str) -> SessionRoute | None:
        await trio.lowlevel.checkpoint()
        return self._routes.get(session_id) or self._tombstones.get(session_id)

    async def end_route(self, session_id: str, reason: str) -> None:
        await trio.lowlevel.checkpoint()
        route = self._routes.pop(session_id, None)
        if route is not None:
            _bounded_put(self._tombstones, session_id, attrs.evolve(route, ended=reason), MAX_TOMBSTONES)

    # --- presence and typing ------------------------------------------------------------------------
    async def set_presence(self, user_id: str, session_id: str, status: str) -> float:
        await trio.lowlevel.checkpoint()
        now = self.clock()
        sessions = self._presence.setdefault(user_id, {})
        if status == "offline":
            sessions.pop(session_id, None)
            if not sessions:
                del self._presence[user_id]
        else:
            typing = sessions[session_id].typing if session_id in sessions else False
            sessions[session_id] = SessionPresence(session_id, status, now, typing)
        _bounded_put(self._last_seen, user_id, now, MAX_REMEMBERED_USERS)
        return now

    async def set_typing(self, user_id: str, session_id: str, typing: bool) -> None:
        await trio.lowlevel.checkpoint()
        sessions = self._presence.get(user_id, {})
        if session_id in sessions:
            sessions[session_id] = attrs.evolve(sessions[session_id], typing=typing)

    async def presence(self, user_id: str) -> UserPresence:
        await trio.lowlevel.checkpoint()
        sessions = tuple(self._presence.get(user_id, {}).values())
        if any(s.status == "online" for s in sessions):
            status = "online"
        else:
            status = "away" if sessions else "offline"
        return UserPresence(
            user_id=user_id,
            status=status,
            last_seen=self._last_seen.get(user_id),
            typing=any(s.typing for s in sessions),
            sessions=sessions,
        )

    # --- fan-out ------------------------------------------------------------------------------------
    async def publish(self, event: UserEvent) -> None:
        await trio.lowlevel.checkpoint()
        for channel in list(self._subscribers.get(event.user_id, ())):
            try:
                channel.send_nowait(event)
            except trio.WouldBlock:
                self.dropped += 1
                logger.debug("a subscriber of %s fell behind; dropped %r", event.user_id, event)
            except trio.BrokenResourceError:
                pass  # its session is ending and has stopped reading

    @asynccontextmanager
    async def subscribe(self, user_id: str) -> AsyncIterator[trio.MemoryReceiveChannel[UserEvent]]:
        send, receive = trio.open_memory_channel[UserEvent](SUBSCRIBER_BUFFER)
        self._subscribers.setdefault(user_id, set()).add(send)
        try:
            with receive:
                yield receive
        finally:
            subscribers = self._subscribers.get(user_id, set())
            subscribers.discard(send)
            if not subscribers:
                self._subscribers.pop(user_id, None)
            send.close()

    # --- offline queue ------------------------------------------------------------------------------
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
