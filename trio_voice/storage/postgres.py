"""The PostgreSQL conversation store: the SQLite store's records, in a database several instances share.

Chosen with ``--database-url postgresql://…`` (``open_store`` picks it for such a URL). Same methods, same
semantics, same tests as ``sqlite``; the schema and its start-up migrations live in ``postgres_schema``.
To keep trio-voice's tables apart from others in a shared database, give it a schema in the URL:
``postgresql://user@host/db?options=-csearch_path%3Dtrio_voice`` (the schema must exist).

Why psycopg 3 in threads: psycopg's async API runs only on asyncio, while its sync API releases the GIL
while it waits on the server, so it runs well in ``trio.to_thread.run_sync`` worker threads, the way the
engines' blocking calls do. Calls go through a ``CapacityLimiter`` sized to the connection pool: at most
as many threads as connections are in flight, so a thread never sits waiting for a pooled connection (a
wait Trio could not cancel), and callers queue in Trio instead, in FIFO order, cancellable.

Resource handling: one ``psycopg_pool.ConnectionPool`` per store, 1 to ``POOL_SIZE`` autocommit connections
(each call is one statement, so needs no explicit transaction); a connection is checked before it is
handed out, so after a database restart the pool reconnects instead of failing one call per stale
connection. The pool is closed when ``open_postgres_store``'s block exits, even on cancellation.

Error handling: psycopg's errors (refused connections, constraint violations, pool timeouts, a closed
pool) and ``OSError`` become ``StorageError`` in ``_storage_errors``, the one place that maps them. Its
messages name the server without the password. Bad arguments (role, limit) raise ``ValueError`` first.

Cancellation: as with SQLite, a call that has reached its worker thread runs to the end, so a write is
never half done; each is one short statement, and connecting is bounded by ``CONNECT_TIMEOUT``.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import psycopg
import trio
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from ..errors import StorageError
from .interface import OfflineMessage, StoredMessage, check_kind, check_limit, check_role, new_conversation_id
from .postgres_schema import migrate

__all__ = ["PostgresStore", "open_postgres_store", "redact_url"]

logger = logging.getLogger(__name__)

T = TypeVar("T")
Connection = psycopg.Connection[Any]

# Connections per instance. A call holds one for a single short statement (well under a millisecond on
# a local server), so a few serve many sessions; the limiter in front keeps threads to the same number.
POOL_SIZE = 4

# Seconds to establish one connection (libpq's connect_timeout, whole seconds).
CONNECT_TIMEOUT = 5

# Seconds a call may wait for a connection from the pool. Callers beyond POOL_SIZE wait in the limiter,
# so this only runs out when no connection can be made (the server is down): then the call fails.
POOL_TIMEOUT = 10.0

# Shown in pg_stat_activity unless the URL sets application_name itself.
APPLICATION_NAME = "trio-voice"


def redact_url(url: str) -> str:
    """The URL with its password replaced by ``***``, for messages and logs."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
        return urlunsplit(parts._replace(netloc=netloc))
    except ValueError:  # unparsable (bad port): say nothing that might contain the password
        return "postgresql://…"


@contextlib.contextmanager
def _storage_errors(where: str) -> Iterator[None]:
    """Map psycopg, pool and network failures to ``StorageError``: the one place that does."""
    try:
        yield
    except psycopg.Error as exc:  # includes psycopg_pool's PoolTimeout, PoolClosed, TooManyRequests
        raise StorageError(f"conversation store {where}: {exc}") from exc
    except OSError as exc:
        raise StorageError(f"conversation store {where}: {exc}") from exc


class PostgresStore:
    """The conversation store in a PostgreSQL database. Open it with ``open_store``; see the module docstring."""

    def __init__(self, pool: ConnectionPool[Connection], where: str) -> None:
        self._pool = pool
        self.where = where  # the URL without its password
        self._limiter = trio.CapacityLimiter(POOL_SIZE)

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(connection, *args)`` in a worker thread on a pooled connection."""
        with _storage_errors(self.where):
            return await trio.to_thread.run_sync(self._with_connection, fn, *args, limiter=self._limiter)

    def _with_connection(self, fn: Callable[..., T], *args: Any) -> T:
        with self._pool.connection() as conn:
            return fn(conn, *args)

    async def aclose(self) -> None:
        """Close the pool and its connections. Shielded: it runs even when cancelled."""
        with trio.CancelScope(shield=True), _storage_errors(self.where):
            await trio.to_thread.run_sync(self._pool.close)

    # --- conversations ----------------------------------------------------------------------------

    async def create_conversation(self) -> str:
        """Create an empty conversation and return its id (``conv_`` + 32 hex digits)."""
        conversation_id = new_conversation_id()
        await self._run(_execute, "INSERT INTO conversations (id) VALUES (%s)", (conversation_id,))
        return conversation_id

    async def conversation_exists(self, conversation_id: str) -> bool:
        def query(conn: Connection) -> bool:
            row = conn.execute("SELECT 1 FROM conversations WHERE id = %s", (conversation_id,))
            return row.fetchone() is not None

        return await self._run(query)

    # --- messages ---------------------------------------------------------------------------------

    async def add_message(
        self,
        conversation_id: str,
        role: str,
        text: str,
        *,
        interrupted: bool = False,
        response_id: str | None = None,
        item_id: str | None = None,
    ) -> None:
        """Append a message. Raises ``StorageError`` if the conversation does not exist."""
        check_role(role)
        await self._run(
            _execute,
            "INSERT INTO messages (conversation_id, role, text, interrupted, response_id, item_id)"
            " VALUES (%s, %s, %s, %s, %s, %s)",
            (conversation_id, role, text, interrupted, response_id, item_id),
        )

    async def delete_message(self, conversation_id: str, item_id: str) -> bool:
        """Delete the message named ``item_id`` from a conversation (see ``conversation.item.delete``).
        Returns False if no such message is stored."""

        def delete(conn: Connection) -> bool:
            cursor = conn.execute(
                "DELETE FROM messages WHERE conversation_id = %s AND item_id = %s", (conversation_id, item_id)
            )
            return cursor.rowcount > 0

        return await self._run(delete)

    async def history(self, conversation_id: str, *, limit: int) -> list[StoredMessage]:
        """The newest ``limit`` messages of a conversation, oldest first (empty for an unknown id)."""
        check_limit(limit)

        def query(conn: Connection) -> list[StoredMessage]:
            rows = conn.execute(
                "SELECT role, text, interrupted, response_id, extract(epoch FROM created_at)::float8, item_id"
                " FROM messages WHERE conversation_id = %s ORDER BY id DESC LIMIT %s",
                (conversation_id, limit),
            ).fetchall()
            return [
                StoredMessage(
                    role=role,
                    text=text,
                    interrupted=interrupted,
                    response_id=rid,
                    created_at=at,
                    item_id=item_id,
                )
                for role, text, interrupted, rid, at, item_id in reversed(rows)
            ]

        return await self._run(query)

    async def update_message_text(self, response_id: str, text: str, *, interrupted: bool) -> bool:
        """Replace the text of the assistant message of reply ``response_id`` (see ``response.truncate``).
        Returns False if no such message is stored."""

        def update(conn: Connection) -> bool:
            cursor = conn.execute(
                "UPDATE messages SET text = %s, interrupted = %s WHERE response_id = %s AND role = 'assistant'",
                (text, interrupted, response_id),
            )
            return cursor.rowcount > 0

        return await self._run(update)

    async def message_count(self, conversation_id: str) -> int:
        def query(conn: Connection) -> int:
            row = conn.execute("SELECT count(*) FROM messages WHERE conversation_id = %s", (conversation_id,))
            return int(row.fetchone()[0])  # type: ignore[index]

        return await self._run(query)

    # --- turns ------------------------------------------------------------------------------------

    async def record_turn(
        self,
        conversation_id: str,
        response_id: str,
        *,
        status: str,
        reason: str | None,
        metrics: Mapping[str, float | int | None],
    ) -> None:
        """Store one reply's outcome and latency metrics (as ``jsonb``; ``first_audio_ms`` also in its own
        column). Raises ``StorageError`` if the conversation does not exist."""
        await self._run(
            _execute,
            "INSERT INTO turns (conversation_id, response_id, status, reason, first_audio_ms, metrics)"
            " VALUES (%s, %s, %s, %s, %s, %s)",
            (
                conversation_id,
                response_id,
                status,
                reason,
                metrics.get("first_audio_ms"),
                Jsonb(dict(metrics)),
            ),
        )

    async def recent_turns(self, limit: int) -> list[dict[str, Any]]:
        """The newest ``limit`` turn records, newest first, each a dict with the metrics decoded."""
        check_limit(limit)

        def query(conn: Connection) -> list[dict[str, Any]]:
            rows = conn.execute(
                "SELECT conversation_id, response_id, status, reason, first_audio_ms, metrics,"
                " extract(epoch FROM created_at)::float8 FROM turns ORDER BY id DESC LIMIT %s",
                (limit,),
            ).fetchall()
            return [
                {
                    "conversation_id": conversation_id,
                    "response_id": response_id,
                    "status": status,
                    "reason": reason,
                    "first_audio_ms": first_audio_ms,
                    "metrics": metrics,
                    "created_at": created_at,
                }
                for conversation_id, response_id, status, reason, first_audio_ms, metrics, created_at in rows
            ]

        return await self._run(query)

    # --- offline messages -------------------------------------------------------------------------

    async def queue_offline(self, message: OfflineMessage, *, max_queued: int) -> bool:
        """Queue ``message`` unless its user has ``max_queued`` undelivered, unexpired ones already. The
        count and the insert run in one transaction under a per-user advisory lock, so instances queueing
        for one user at once cannot overshoot the bound."""
        check_kind(message.kind)
        m = message

        def insert(conn: Connection) -> bool:
            with conn.transaction():
                conn.execute(
                    "SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (OFFLINE_LOCK_CLASS, m.user_id)
                )
                row = conn.execute(
                    "SELECT count(*) FROM offline_messages"
                    " WHERE user_id = %s AND delivered_at IS NULL AND expires_at > %s",
                    (m.user_id, m.created_at),
                ).fetchone()
                if row is not None and row[0] >= max_queued:
                    return False
                conn.execute(
                    "INSERT INTO offline_messages (id, user_id, kind, text, conversation_id, response_id,"
                    " created_at, expires_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                    (m.message_id, m.user_id, m.kind, m.text, m.conversation_id, m.response_id,
                     m.created_at, m.expires_at),
                )  # fmt: skip
                return True

        return await self._run(insert)

    async def pending_offline(self, user_id: str, *, now: float) -> list[OfflineMessage]:
        def query(conn: Connection) -> list[OfflineMessage]:
            rows = conn.execute(
                f"SELECT {_OFFLINE_COLUMNS} FROM offline_messages"  # type: ignore[arg-type]
                " WHERE user_id = %s AND delivered_at IS NULL AND expires_at > %s ORDER BY seq",
                (user_id, now),
            ).fetchall()
            return [_offline(row) for row in rows]

        return await self._run(query)

    async def mark_offline_delivered(self, user_id: str, message_id: str, *, now: float) -> bool:
        def update(conn: Connection) -> bool:
            cursor = conn.execute(
                "UPDATE offline_messages SET delivered_at = %s"
                " WHERE id = %s AND user_id = %s AND delivered_at IS NULL",
                (now, message_id, user_id),
            )
            return cursor.rowcount > 0

        return await self._run(update)

    async def offline_messages(self, user_id: str, *, limit: int) -> list[OfflineMessage]:
        check_limit(limit)

        def query(conn: Connection) -> list[OfflineMessage]:
            rows = conn.execute(
                f"SELECT {_OFFLINE_COLUMNS} FROM offline_messages"  # type: ignore[arg-type]
                " WHERE user_id = %s ORDER BY seq DESC LIMIT %s",
                (user_id, limit),
            ).fetchall()
            return [_offline(row) for row in rows]

        return await self._run(query)

    async def drop_expired_offline(self, *, now: float) -> int:
        def delete(conn: Connection) -> int:
            rows = conn.execute(
                "DELETE FROM offline_messages WHERE expires_at <= %s RETURNING delivered_at IS NULL", (now,)
            ).fetchall()
            return sum(1 for (undelivered,) in rows if undelivered)

        return await self._run(delete)


# First key of the per-user advisory lock that serializes queueing: "tv" + "of" in ASCII.
OFFLINE_LOCK_CLASS = 0x7476_6F66

_OFFLINE_COLUMNS = (
    "id, user_id, kind, text, created_at, expires_at, delivered_at, conversation_id, response_id"
)


def _offline(row: tuple[Any, ...]) -> OfflineMessage:
    message_id, user_id, kind, text, created_at, expires_at, delivered_at, conversation_id, response_id = row
    return OfflineMessage(
        message_id=message_id,
        user_id=user_id,
        kind=kind,
        text=text,
        created_at=created_at,
        expires_at=expires_at,
        status="queued" if delivered_at is None else "delivered",
        delivered_at=delivered_at,
        conversation_id=conversation_id,
        response_id=response_id,
    )


def _execute(conn: Connection, sql: str, params: tuple[Any, ...]) -> None:
    conn.execute(sql, params)  # type: ignore[arg-type]  # our literals are fixed SQL


def _open_pool(url: str) -> ConnectionPool[Connection]:
    """Migrate the schema, then open the pool. Blocking.

    The migration runs on a direct connection first: when the server cannot be reached, its error names
    the cause (refused, authentication, no such database) where a pool would only report a timeout.
    """
    kwargs: dict[str, Any] = {
        "autocommit": True,
        "connect_timeout": CONNECT_TIMEOUT,
        "fallback_application_name": APPLICATION_NAME,
    }
    with psycopg.connect(url, **kwargs) as conn:
        applied = migrate(conn)
    if applied:
        logger.info("conversation store %s: applied %d schema migration(s)", redact_url(url), applied)
    pool: ConnectionPool[Connection] = ConnectionPool(
        url,
        kwargs=kwargs,
        min_size=1,
        max_size=POOL_SIZE,
        timeout=POOL_TIMEOUT,
        check=ConnectionPool.check_connection,
        name=APPLICATION_NAME,
        open=False,
    )
    try:
        pool.open(wait=True, timeout=POOL_TIMEOUT)
    except BaseException:
        pool.close()
        raise
    return pool


@contextlib.asynccontextmanager
async def open_postgres_store(url: str) -> AsyncIterator[PostgresStore]:
    """Open the PostgreSQL conversation store at ``url``, applying any missing schema migrations.

    Raises ``StorageError`` if the server cannot be reached, refuses the login, the database does not
    exist, or its schema is newer than this code. The pool is closed when the block exits, even on
    cancellation.
    """
    where = redact_url(url)
    with _storage_errors(where):
        pool = await trio.to_thread.run_sync(_open_pool, url)
    store = PostgresStore(pool, where)
    try:
        yield store
    finally:
        await store.aclose()
