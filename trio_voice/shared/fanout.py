"""This process's subscribers of user events: who on this instance listens to which user, and delivery.

Both shared states deliver through it: ``InProcessState`` straight from ``publish``, ``RedisState`` from
its one subscriber task, which receives every instance's events over Redis pub/sub. Delivery never waits:
a subscriber's channel holds ``SUBSCRIBER_BUFFER`` events, and one that falls further behind loses the
newest (counted in ``dropped``): presence and typing are indicators, and an offline message's
notification only says "look", the message itself being persisted.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio

from .interface import UserEvent

logger = logging.getLogger(__name__)

# Events a subscriber may have waiting; presence and typing are indicators, so a stuck session loses them.
SUBSCRIBER_BUFFER = 64


class LocalFanout:
    """Subscribers of this process by user id, each a bounded memory channel."""

    def __init__(self) -> None:
        self._subscribers: dict[str, set[trio.MemorySendChannel[UserEvent]]] = {}
        self.dropped = 0  # events lost by subscribers that fell behind

    def wants(self, user_id: str) -> bool:
        """Whether anyone here listens to ``user_id`` (events of other users are skipped unparsed)."""
        return user_id in self._subscribers

    def deliver(self, event: UserEvent) -> None:
        """Hand ``event`` to every local subscriber of its user, without waiting."""
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
