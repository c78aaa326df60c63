"""The SharedState contract, run against both implementations: in this process, and Redis (a real one).

Each test gets a ``pair`` of states that share everything, as two server instances would: for the
in-process state that is the same object twice (one process is one instance), for Redis two
``RedisState`` instances with their own instance ids over one key prefix (unique per test). So every
behaviour below is also checked *across* instances where the backend has more than one. Both run on a
clock of the test's own, and over a real SQLite store (which keeps the offline messages).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path

import attrs
import pytest
import trio

from tests.redis_server import TEST_REDIS_URL, fresh_prefix
from trio_voice.errors import StorageError
from trio_voice.shared import (
    InProcessState,
    MessageQueued,
    PresenceChanged,
    QueueFull,
    SessionRoute,
    SharedState,
    TypingChanged,
)
from trio_voice.shared.redis_state import INSTANCE_TTL, RedisState, open_redis_state
from trio_voice.storage import OfflineMessage, open_store

# Bound on every test: a Redis that stops answering fails the test instead of stalling it.
TIMEOUT = 10.0


class Clock:
    """The wall clock both states of a pair read; tests move it."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@attrs.frozen
class Pair:
    a: SharedState
    b: SharedState
    clock: Clock
    backend: str


@pytest.fixture(params=["in-process", "redis"])
async def pair(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Pair]:
    clock = Clock()
    async with AsyncExitStack() as stack:
        store = await stack.enter_async_context(open_store(tmp_path / "store.sqlite3"))
        if request.param == "in-process":
            state = InProcessState(store, max_queued=3, clock=clock, instance_id="one")
            yield Pair(state, state, clock, request.param)
            return
        prefix = stack.enter_context(fresh_prefix())
        a, b = [
            await stack.enter_async_context(
                open_redis_state(
                    TEST_REDIS_URL, store, prefix=prefix, instance_id=name, max_queued=3, clock=clock
                )
            )
            for name in ("a", "b")
        ]
        yield Pair(a, b, clock, request.param)


def route(session_id: str = "sess_1", instance_id: str = "a", user_id: str | None = "ann") -> SessionRoute:
    return SessionRoute(session_id, instance_id, "d" * 64, user_id)


def message(clock: Clock, n: int, *, user_id: str = "ann", ttl: float = 60.0) -> OfflineMessage:
    return OfflineMessage(f"msg_{n}", user_id, "system", f"hello {n}", clock.now, clock.now + ttl)


async def next_event(events: trio.MemoryReceiveChannel) -> object:
    with trio.fail_after(TIMEOUT):
        return await events.receive()


# --- routes ---------------------------------------------------------------------------------------------
async def test_a_route_put_by_one_instance_is_read_by_the_other(pair: Pair) -> None:
    """A live session's route, as written, from either instance; an unknown session has none."""
    with trio.fail_after(TIMEOUT):
        written = route(instance_id=pair.a.instance_id)
        await pair.a.put_route(written)
        assert await pair.b.get_route("sess_1") == written
        assert await pair.a.get_route("sess_1") == written
        assert await pair.b.get_route("sess_unknown") is None


async def test_an_ended_route_is_kept_as_a_tombstone_with_its_reason(pair: Pair) -> None:
    """end_route keeps the route, marked with why it ended; a route put again is live again."""
    with trio.fail_after(TIMEOUT):
        written = route(instance_id=pair.a.instance_id)
        await pair.a.put_route(written)
        await pair.a.end_route("sess_1", "expired")
        assert await pair.b.get_route("sess_1") == attrs.evolve(written, ended="expired")
        await pair.a.put_route(written)
        assert await pair.b.get_route("sess_1") == written


async def test_ending_an_unknown_route_leaves_nothing(pair: Pair) -> None:
    """No tombstone appears for a session that never had a route."""
    with trio.fail_after(TIMEOUT):
        await pair.a.end_route("sess_never", "closed")
        assert await pair.b.get_route("sess_never") is None


# --- presence and typing --------------------------------------------------------------------------------
async def test_presence_is_the_best_of_the_users_sessions_on_any_instance(pair: Pair) -> None:
    """online if any session is, away if all are, offline with none; last_seen outlives the sessions."""
    with trio.fail_after(TIMEOUT):
        assert (await pair.b.presence("ann")).status == "offline"
        pair.clock.now += 1
        seen_a = await pair.a.set_presence("ann", "sess_a", "away")
        assert seen_a == pair.clock.now
        presence = await pair.b.presence("ann")
        assert (presence.status, presence.last_seen) == ("away", seen_a)
        pair.clock.now += 1
        seen_b = await pair.b.set_presence("ann", "sess_b", "online")
        presence = await pair.a.presence("ann")
        assert presence.status == "online"
        assert {(s.session_id, s.status, s.last_seen) for s in presence.sessions} == {
            ("sess_a", "away", seen_a),
            ("sess_b", "online", seen_b),
        }
        pair.clock.now += 1
        await pair.b.set_presence("ann", "sess_b", "offline")
        await pair.a.set_presence("ann", "sess_a", "offline")
        presence = await pair.b.presence("ann")
        assert (presence.status, presence.sessions, presence.last_seen) == ("offline", (), pair.clock.now)
        assert (await pair.b.presence("bob")).last_seen is None


async def test_typing_follows_the_session_and_survives_a_status_change(pair: Pair) -> None:
    """A session's typing shows in its user's presence, across a status change, until it stops or ends."""
    with trio.fail_after(TIMEOUT):
        await pair.a.set_presence("ann", "sess_a", "online")
        await pair.a.set_typing("ann", "sess_a", True)
        presence = await pair.b.presence("ann")
        assert presence.typing and presence.sessions[0].typing
        await pair.a.set_presence("ann", "sess_a", "away")
        assert (await pair.b.presence("ann")).typing
        await pair.a.set_typing("ann", "sess_a", False)
        assert not (await pair.b.presence("ann")).typing
        await pair.a.set_typing("ann", "sess_a", True)
        await pair.a.set_presence("ann", "sess_a", "offline")
        await pair.a.set_presence("ann", "sess_a", "online")
        assert not (await pair.b.presence("ann")).typing  # ending the session ended its typing


# --- fan-out --------------------------------------------------------------------------------------------
async def test_events_reach_the_users_subscribers_on_every_instance(pair: Pair) -> None:
    """A published event reaches each subscriber of its user (the publisher's own instance too), in
    order, and no subscriber of another user."""
    with trio.fail_after(TIMEOUT):
        async with (
            pair.a.subscribe("ann") as on_a,
            pair.b.subscribe("ann") as on_b,
            pair.b.subscribe("bob") as bobs,
        ):
            sent = [
                PresenceChanged("ann", "sess_a", "online", pair.clock.now),
                TypingChanged("ann", "sess_a", True),
                MessageQueued("ann", "msg_1"),
            ]
            for event in sent:
                await pair.a.publish(event)
            await pair.a.publish(TypingChanged("bob", "sess_x", True))
            assert [await next_event(on_a) for _ in sent] == sent
            assert [await next_event(on_b) for _ in sent] == sent
            assert await next_event(bobs) == TypingChanged("bob", "sess_x", True)


async def test_a_subscription_ends_with_its_block(pair: Pair) -> None:
    """Once a subscriber's block has exited, publishing to its user still works and reaches the others."""
    with trio.fail_after(TIMEOUT):
        async with pair.b.subscribe("ann") as gone:
            pass
        with pytest.raises(trio.ClosedResourceError):
            gone.receive_nowait()
        async with pair.b.subscribe("ann") as events:
            await pair.a.publish(TypingChanged("ann", "sess_a", False))
            assert await next_event(events) == TypingChanged("ann", "sess_a", False)


# --- the offline queue ----------------------------------------------------------------------------------
async def test_a_message_queued_on_one_instance_is_pending_and_announced_on_the_other(pair: Pair) -> None:
    """Queueing persists the message and tells the user's subscribers; it is pending until delivered."""
    with trio.fail_after(TIMEOUT):
        async with pair.b.subscribe("ann") as events:
            await pair.a.queue_message(message(pair.clock, 1))
            assert await next_event(events) == MessageQueued("ann", "msg_1")
        assert [m.message_id for m in await pair.b.pending_messages("ann")] == ["msg_1"]
        assert await pair.b.mark_delivered("ann", "msg_1")
        assert not await pair.a.mark_delivered("ann", "msg_1")
        assert await pair.a.pending_messages("ann") == []
        [stored] = await pair.a.messages("ann", limit=10)
        assert (stored.status, stored.delivered_at) == ("delivered", pair.clock.now)


async def test_the_queue_is_bounded_and_expired_messages_are_dropped(pair: Pair) -> None:
    """A fourth undelivered message is refused (max_queued 3); expired ones are neither pending nor
    kept, and drop_expired counts those never delivered."""
    with trio.fail_after(TIMEOUT):
        for n in range(3):
            await pair.a.queue_message(message(pair.clock, n, ttl=10.0 * (n + 1)))
        with pytest.raises(QueueFull):
            await pair.b.queue_message(message(pair.clock, 3))
        pair.clock.now += 15
        assert [m.message_id for m in await pair.b.pending_messages("ann")] == ["msg_1", "msg_2"]
        assert await pair.b.drop_expired() == 1
        assert [m.message_id for m in await pair.a.messages("ann", limit=10)] == ["msg_2", "msg_1"]


# --- Redis only: instances that stop --------------------------------------------------------------------
async def test_a_silent_instances_routes_and_presence_read_as_gone(tmp_path: Path) -> None:
    """An instance that stopped beating (killed): after INSTANCE_TTL its routes read as ended (closed) and
    its sessions drop out of presence; one that leaves properly is gone at once."""
    clock = Clock()
    with trio.fail_after(TIMEOUT), fresh_prefix() as prefix:
        async with (
            open_store(tmp_path / "store.sqlite3") as store,
            open_redis_state(TEST_REDIS_URL, store, prefix=prefix, instance_id="b", clock=clock) as b,
        ):
            async with open_redis_state(
                TEST_REDIS_URL, store, prefix=prefix, instance_id="a", clock=clock
            ) as a:
                await a.put_route(route("sess_1", "a"))
                await a.set_presence("ann", "sess_1", "online")
                clock.now += INSTANCE_TTL + 1
                await b.heartbeat()  # b lives on; a has not beaten since
                assert (await b.get_route("sess_1")).ended == "closed"  # type: ignore[union-attr]
                assert (await b.presence("ann")).status == "offline"
                await a.heartbeat()
                assert (await b.get_route("sess_1")).ended is None  # type: ignore[union-attr]
                assert (await b.presence("ann")).status == "online"
            # a left (its block exited): gone at once, no TTL to wait for
            assert (await b.get_route("sess_1")).ended == "closed"  # type: ignore[union-attr]
            assert (await b.presence("ann")).status == "offline"


async def test_an_unreachable_redis_is_a_clear_storage_error(tmp_path: Path) -> None:
    """Opening the state on a port where no Redis listens fails at once, naming the server."""
    async with open_store(tmp_path / "store.sqlite3") as store:
        with trio.fail_after(TIMEOUT), pytest.raises(StorageError, match=r"Redis at 127\.0\.0\.1:1\b"):
            async with open_redis_state("redis://127.0.0.1:1/0", store):
                pass
        with pytest.raises(StorageError, match="redis://"):
            async with open_redis_state("http://127.0.0.1:6379", store):
                pass


async def test_a_malformed_route_record_is_a_storage_error(tmp_path: Path) -> None:
    """A route key that does not hold this version's record fails the read with StorageError."""
    with trio.fail_after(TIMEOUT), fresh_prefix() as prefix:
        async with (
            open_store(tmp_path / "store.sqlite3") as store,
            open_redis_state(TEST_REDIS_URL, store, prefix=prefix) as state,
        ):
            assert isinstance(state, RedisState)
            await state.calls.run(lambda r: r.set(f"{prefix}route:sess_bad", '{"session_id": 3}'))
            with pytest.raises(StorageError, match="sess_bad"):
                await state.get_route("sess_bad")
