"""The in-process shared state: the embedded default behind ``SharedState``, for one server instance.

Routes, presence and subscribers live in dictionaries of this process; offline messages go to the
conversation store (SQLite or PostgreSQL), so they survive a restart. Everything is bounded: tombstones
and remembered ``last_seen`` times are kept for a fixed number of sessions and users (oldest forgotten
first), a subscriber's channel is bounded (``fanout.SUBSCRIBER_BUFFER``), and each user's queue holds
``max_queued`` messages.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

import attrs
import trio

from ..ids import new_id
from ..storage import ConversationStore
from .fanout import LocalFanout
from .interface import (
    SessionPresence,
    SessionRoute,
    UserEvent,
    UserPresence,
)
from .offline_store import OfflineInStore

# Ended sessions remembered (so a late resume learns why), and users whose last_seen outlives them.
MAX_TOMBSTONES = 10_000
MAX_REMEMBERED_USERS = 100_000


def _bounded_put(mapping: OrderedDict, key: object, value: object, limit: int) -> None:
    mapping[key] = value
    mapping.move_to_end(key)
    while len(mapping) > limit:
        mapping.popitem(last=False)


class InProcessState(OfflineInStore):
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
        self._fanout = LocalFanout()

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
        self._fanout.deliver(event)

    def subscribe(self, user_id: str) -> AbstractAsyncContextManager[trio.MemoryReceiveChannel[UserEvent]]:
        return self._fanout.subscribe(user_id)

    @property
    def dropped(self) -> int:
        """Events lost by subscribers that fell behind."""
        return self._fanout.dropped
