"""The shared state in Redis: ``SharedState`` for several server instances (``--redis-url``).

Keys (all under ``prefix``, default ``trio-voice:``; records are JSON, ``trio_voice.shared.wire``)::

    route:{session_id}       a session's route (instance, token digest, user); kept TOMBSTONE_TTL once ended
    presence:{user_id}       hash: session_id → {status, last_seen, instance_id}
    typing:{user_id}         hash: session_id → "1" while that session's user types
    last_seen:{user_id}      the newest last_seen of the user's sessions, outliving them (LAST_SEEN_TTL)
    instances                sorted set: instance_id → its last heartbeat (wall clock)
    events                   the pub/sub channel of every user event (presence, typing, queued)

Fan-out: every instance runs one subscriber task on the ``events`` channel and hands each event to its
own subscribers of that user (``fanout.LocalFanout``); ``publish`` is one ``PUBLISH``. One channel for
all users rather than one per user: user events are rare (a few per session-minute, never per audio
frame), so every instance receiving all of them costs a JSON parse each, where per-user channels would
need SUBSCRIBE/UNSUBSCRIBE round trips as sessions come and go, and a window in which a new subscriber
is not yet subscribed. Past tens of instances, sharded pub/sub per user would be the next step.

An instance that dies without saying so: its heartbeat in ``instances`` stops, and after
``INSTANCE_TTL`` seconds its routes read as ended (``closed``: a resume is refused at once rather than
sent to a dead instance) and its sessions drop out of presence. Live routes and presence hashes also
carry a long TTL, so nothing a crashed instance left behind stays in Redis for ever.

Offline messages stay in the conversation store (``offline_store``): Redis only notifies. Times are the
instance's wall clock (``time.time``): instances are assumed NTP-synchronised, well within INSTANCE_TTL.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import attrs
import trio

from ..errors import StorageError
from ..ids import new_id
from ..storage import ConversationStore
from .fanout import LocalFanout
from .interface import SessionPresence, SessionRoute, UserEvent, UserPresence
from .offline_store import OfflineInStore
from .redis_client import RedisCalls, open_redis, redis_errors
from .wire import (
    WireError,
    decode_event,
    decode_presence,
    decode_route,
    encode_event,
    encode_presence,
    encode_route,
)

__all__ = ["RedisState", "open_redis_state"]

logger = logging.getLogger(__name__)

# Seconds between an instance's heartbeats, and after which an instance that sent none counts as gone.
HEARTBEAT_INTERVAL = 5.0
INSTANCE_TTL = 15.0
# Seconds an ended session's route is kept, so a late resume learns why it ended.
TOMBSTONE_TTL = 3600
# Seconds a live route or a presence hash is kept without being written again: longer than any session
# lives in practice; only what a crashed instance left behind ever reaches it.
LIVE_TTL = 7 * 86400
# Seconds a user's last_seen outlives their last session.
LAST_SEEN_TTL = 30 * 86400
# Seconds the subscriber waits for a message per call: also how long a shutdown may wait for its thread.
SUBSCRIBER_POLL = 0.5
# Seconds the subscriber waits before trying again after Redis failed.
SUBSCRIBER_RETRY = 1.0

# end_route in one round trip: mark the route ended and shorten its life, if it exists.
END_ROUTE_SCRIPT = """
local text = redis.call('GET', KEYS[1])
if not text then return 0 end
local route = cjson.decode(text)
route['ended'] = ARGV[1]
redis.call('SET', KEYS[1], cjson.encode(route), 'EX', tonumber(ARGV[2]))
return 1
"""


class RedisState(OfflineInStore):
    """``SharedState`` in Redis; build it with :func:`open_redis_state`, which runs its tasks."""

    def __init__(
        self,
        calls: RedisCalls,
        store: ConversationStore,
        *,
        prefix: str = "trio-voice:",
        instance_id: str | None = None,
        max_queued: int = 100,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.calls = calls
        self.store = store
        self.prefix = prefix
        self.instance_id = instance_id or new_id("inst")
        self.max_queued = max_queued
        self.clock = clock
        self._fanout = LocalFanout()
        self._end_route = calls.client.register_script(END_ROUTE_SCRIPT)
        self.channel = f"{prefix}events"
        self.instances_key = f"{prefix}instances"

    def now(self) -> float:
        return self.clock()

    def _key(self, kind: str, name: str) -> str:
        return f"{self.prefix}{kind}:{name}"

    def _live_instances(self, pipe: Any) -> None:
        """Queue the read of the instances seen within INSTANCE_TTL on ``pipe``."""
        pipe.zrangebyscore(self.instances_key, self.clock() - INSTANCE_TTL, "+inf")

    # --- resume routes --------------------------------------------------------------------------------
    async def put_route(self, route: SessionRoute) -> None:
        key, text = self._key("route", route.session_id), encode_route(route)
        await self.calls.run(lambda r: r.set(key, text, ex=LIVE_TTL))

    async def get_route(self, session_id: str) -> SessionRoute | None:
        key = self._key("route", session_id)

        def read(r: Any) -> list[Any]:
            pipe = r.pipeline(transaction=False)
            pipe.get(key)
            self._live_instances(pipe)
            return pipe.execute()

        text, live = await self.calls.run(read)
        if text is None:
            return None
        try:
            route = decode_route(text)
        except WireError as exc:
            raise StorageError(f"session {session_id}: {exc}") from None
        if route.ended is None and route.instance_id not in (self.instance_id, *live):
            # The instance holding it stopped without ending it (killed, crashed): it is gone with it.
            return attrs.evolve(route, ended="closed")
        return route

    async def end_route(self, session_id: str, reason: str) -> None:
        key = self._key("route", session_id)
        await self.calls.run(lambda r: self._end_route(keys=[key], args=[reason, TOMBSTONE_TTL], client=r))

    # --- presence and typing ------------------------------------------------------------------------
    async def set_presence(self, user_id: str, session_id: str, status: str) -> float:
        now = self.clock()
        presence, typing = self._key("presence", user_id), self._key("typing", user_id)
        last_seen = self._key("last_seen", user_id)

        def write(r: Any) -> None:
            pipe = r.pipeline(transaction=True)
            if status == "offline":
                pipe.hdel(presence, session_id)
                pipe.hdel(typing, session_id)
            else:
                pipe.hset(presence, session_id, encode_presence(status, now, self.instance_id))
                pipe.expire(presence, LIVE_TTL)
            pipe.set(last_seen, repr(now), ex=LAST_SEEN_TTL)
            pipe.execute()

        await self.calls.run(write)
        return now

    async def set_typing(self, user_id: str, session_id: str, typing: bool) -> None:
        key = self._key("typing", user_id)

        def write(r: Any) -> None:
            pipe = r.pipeline(transaction=True)
            if typing:
                pipe.hset(key, session_id, "1")
                pipe.expire(key, LIVE_TTL)
            else:
                pipe.hdel(key, session_id)
            pipe.execute()

        await self.calls.run(write)

    async def presence(self, user_id: str) -> UserPresence:
        def read(r: Any) -> list[Any]:
            pipe = r.pipeline(transaction=False)
            pipe.hgetall(self._key("presence", user_id))
            pipe.hgetall(self._key("typing", user_id))
            pipe.get(self._key("last_seen", user_id))
            self._live_instances(pipe)
            return pipe.execute()

        records, typing, last_seen, live = await self.calls.run(read)
        alive = {self.instance_id, *live}
        sessions = []
        for session_id, text in records.items():
            try:
                status, seen, instance_id = decode_presence(text)
            except WireError as exc:
                logger.warning("presence of %s, session %s, skipped: %s", user_id, session_id, exc)
                continue
            if instance_id in alive:
                sessions.append(SessionPresence(session_id, status, seen, session_id in typing))
        sessions.sort(key=lambda s: (s.last_seen, s.session_id))
        if any(s.status == "online" for s in sessions):
            status = "online"
        else:
            status = "away" if sessions else "offline"
        return UserPresence(
            user_id=user_id,
            status=status,
            last_seen=float(last_seen) if last_seen is not None else None,
            typing=any(s.typing for s in sessions),
            sessions=tuple(sessions),
        )

    # --- fan-out ------------------------------------------------------------------------------------
    async def publish(self, event: UserEvent) -> None:
        text = encode_event(event)
        await self.calls.run(lambda r: r.publish(self.channel, text))

    def subscribe(self, user_id: str) -> AbstractAsyncContextManager[trio.MemoryReceiveChannel[UserEvent]]:
        return self._fanout.subscribe(user_id)

    @property
    def dropped(self) -> int:
        """Events lost by this instance's subscribers that fell behind."""
        return self._fanout.dropped

    # --- this instance's tasks ----------------------------------------------------------------------
    async def heartbeat(self) -> None:
        """Say this instance is alive (and forget instances silent for an hour)."""
        now = self.clock()

        def beat(r: Any) -> None:
            pipe = r.pipeline(transaction=False)
            pipe.zadd(self.instances_key, {self.instance_id: now})
            pipe.zremrangebyscore(self.instances_key, "-inf", now - TOMBSTONE_TTL)
            pipe.execute()

        await self.calls.run(beat)

    async def heartbeat_task(self) -> None:
        """Beat every HEARTBEAT_INTERVAL seconds until cancelled; a failed beat is logged and retried."""
        while True:
            await trio.sleep(HEARTBEAT_INTERVAL)
            try:
                await self.heartbeat()
            except StorageError as exc:
                logger.warning("instance %s: heartbeat failed: %s", self.instance_id, exc)

    async def leave(self) -> None:
        """This instance stops: its routes and presence read as gone at once, not INSTANCE_TTL later."""
        await self.calls.run(lambda r: r.zrem(self.instances_key, self.instance_id))

    async def subscriber_task(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Receive every instance's user events and deliver them here; ``started`` once subscribed.

        Redis failures are logged and retried (redis-py reconnects and subscribes again); events
        published meanwhile are lost, as fan-out allows.
        """
        pubsub = self.calls.pubsub()
        limiter = trio.CapacityLimiter(1)  # the subscriber's own thread, never one of the command pool's
        try:
            with redis_errors(self.calls.where):
                await trio.to_thread.run_sync(pubsub.subscribe, self.channel, limiter=limiter)
            started = False
            while True:
                try:
                    with redis_errors(self.calls.where):
                        # Not abandoned on cancel: a shutdown waits at most SUBSCRIBER_POLL for the thread,
                        # so the connection is never closed under a thread still reading it.
                        message = await trio.to_thread.run_sync(
                            lambda: pubsub.get_message(timeout=SUBSCRIBER_POLL), limiter=limiter
                        )
                except StorageError as exc:
                    logger.warning("instance %s: event subscriber: %s; retrying", self.instance_id, exc)
                    await trio.sleep(SUBSCRIBER_RETRY)
                    continue
                if message is None:
                    continue
                if message["type"] == "subscribe" and not started:
                    started = True
                    task_status.started()
                elif message["type"] == "message":
                    self._deliver(message["data"])
        finally:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(pubsub.close, limiter=limiter)

    def _deliver(self, text: str) -> None:
        try:
            event = decode_event(text)
        except WireError as exc:
            logger.warning("instance %s: skipped an event: %s", self.instance_id, exc)
            return
        if self._fanout.wants(event.user_id):
            self._fanout.deliver(event)


@asynccontextmanager
async def open_redis_state(
    url: str,
    store: ConversationStore,
    *,
    prefix: str = "trio-voice:",
    instance_id: str | None = None,
    max_queued: int = 100,
    clock: Callable[[], float] = time.time,
) -> AsyncIterator[RedisState]:
    """Connect, subscribe, start beating; yield the state; on exit, leave and stop the tasks.

    Raises:
        StorageError: Redis is not reachable (at start-up: the server does not start without its state).
    """
    async with open_redis(url) as calls, trio.open_nursery() as nursery:
        state = RedisState(
            calls, store, prefix=prefix, instance_id=instance_id, max_queued=max_queued, clock=clock
        )
        await state.heartbeat()
        await nursery.start(state.subscriber_task)
        nursery.start_soon(state.heartbeat_task)
        try:
            yield state
        finally:
            nursery.cancel_scope.cancel()
            with trio.CancelScope(shield=True), trio.move_on_after(2 * SUBSCRIBER_POLL):
                try:
                    await state.leave()
                except StorageError as exc:
                    logger.warning("instance %s: could not leave: %s", state.instance_id, exc)
