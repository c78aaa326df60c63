"""The Redis client under Trio: redis-py's sync client, called from worker threads behind a limiter.

Why redis-py's sync client in threads: redis-py is the client Redis itself maintains, but its asyncio
client needs an asyncio loop, which a Trio program does not run (and no Trio-native Redis client is
maintained today). Its sync client releases the GIL while it waits on the socket, so it runs well in
``trio.to_thread.run_sync`` worker threads, as the PostgreSQL store's psycopg does. Each call goes
through a ``CapacityLimiter`` sized to the connection pool: a thread never waits for a pooled connection
(a wait Trio could not cancel), callers queue in Trio instead, FIFO and cancellable.

Resource handling: one ``BlockingConnectionPool`` per server (``POOL_SIZE`` connections for commands,
one more for the pub/sub subscriber); sockets have connect and read timeouts, so no call can hang a
thread for ever; the pool is closed when ``open_redis``'s block exits.

Error handling: redis-py's errors and ``OSError`` become ``StorageError`` in ``redis_errors``, the one
place that maps them, naming the server without its password. Cancellation: a call that has reached its
thread runs to the end (bounded by ``SOCKET_TIMEOUT``), so a write is never half sent.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, TypeVar
from urllib.parse import urlsplit

import redis
import trio

from ..errors import StorageError

__all__ = ["RedisCalls", "open_redis", "redis_errors", "server_of"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

# Connections for commands. A call holds one for one round trip (well under a millisecond locally), and
# shared-state calls are per session event (presence, typing, a resume), never per audio frame.
POOL_SIZE = 8
# Seconds to connect, and to wait for any one answer: a Redis that stops answering fails the call.
CONNECT_TIMEOUT = 5.0
SOCKET_TIMEOUT = 5.0
# Seconds a call may wait for a pooled connection; callers beyond POOL_SIZE wait in the limiter instead.
POOL_TIMEOUT = 10.0
# Seconds after which an idle connection is checked with PING before it is used again.
HEALTH_CHECK_INTERVAL = 30


def server_of(url: str) -> str:
    """``host:port`` of a Redis URL: what messages and logs name (never the password)."""
    try:
        parts = urlsplit(url)
        return f"{parts.hostname or 'localhost'}:{parts.port or 6379}"
    except ValueError:
        return "redis://…"


@contextlib.contextmanager
def redis_errors(where: str) -> Iterator[None]:
    """Map redis-py and network failures to ``StorageError``: the one place that does."""
    try:
        yield
    except (redis.RedisError, OSError) as exc:
        detail = " ".join(str(exc).split()) or type(exc).__name__
        raise StorageError(f"Redis at {where}: {detail}") from None


class RedisCalls:
    """Blocking redis-py calls, run in worker threads one pooled connection each."""

    def __init__(self, client: redis.Redis, where: str, *, limit: int = POOL_SIZE) -> None:
        self.client = client
        self.where = where
        self.limiter = trio.CapacityLimiter(limit)

    async def run(self, call: Callable[[redis.Redis], T]) -> T:
        """``call(client)`` in a worker thread.

        Raises:
            StorageError: Redis failed or could not be reached.
        """
        with redis_errors(self.where):
            return await trio.to_thread.run_sync(call, self.client, limiter=self.limiter)

    def pubsub(self) -> Any:
        """A pub/sub object on its own connection (for the one subscriber task)."""
        return self.client.pubsub(ignore_subscribe_messages=False)


@contextlib.asynccontextmanager
async def open_redis(url: str) -> AsyncIterator[RedisCalls]:
    """Connect to the Redis at ``url`` and check it answers; close the pool on exit.

    Raises:
        StorageError: the URL is not a Redis URL, or the server does not answer ``PING``.
    """
    where = server_of(url)
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme not in ("redis", "rediss", "unix"):
        raise StorageError(f"--redis-url must be a redis://, rediss:// or unix:// URL, not {scheme or url!r}")
    with redis_errors(where):
        pool = redis.BlockingConnectionPool.from_url(
            url,
            max_connections=POOL_SIZE + 1,  # one for the subscriber's connection
            timeout=POOL_TIMEOUT,
            socket_connect_timeout=CONNECT_TIMEOUT,
            socket_timeout=SOCKET_TIMEOUT,
            health_check_interval=HEALTH_CHECK_INTERVAL,
            decode_responses=True,
            client_name="trio-voice",
        )
    client = redis.Redis(connection_pool=pool)
    calls = RedisCalls(client, where)
    try:
        try:
            await calls.run(lambda r: r.ping())
        except StorageError as exc:
            raise StorageError(f"{exc} (is Redis running there?)") from None
        logger.info("shared state in Redis at %s", where)
        yield calls
    finally:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(client.close)
            await trio.to_thread.run_sync(pool.disconnect)
