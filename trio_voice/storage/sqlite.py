"""The SQLite conversation store: conversations, messages and per-turn latency records in one file.

The default backend (``open_store`` picks it for a file path): one file, no service to run. See
``interface`` for the methods and ``postgres`` for the backend that several instances can share.

Resource handling: one ``sqlite3`` connection per store, opened with ``check_same_thread=False`` and used
only from worker threads started by ``trio.to_thread.run_sync`` behind a ``CapacityLimiter(1)``, so exactly
one statement runs at a time and writers are serialized without a writer task. The file is in WAL mode, so
other processes (a stats tool, a backup) can read while the server writes.

Error handling: every ``sqlite3`` and ``OSError`` failure becomes a ``StorageError`` in ``_storage_errors``,
the one place that maps them. Passing a role that is not ``user``, ``assistant`` or ``system`` is the
caller's bug and raises ``ValueError``.

Cancellation: a store call that has reached its worker thread runs to the end (``abandon_on_cancel`` is
off), so a write is never half done and the connection is never used by two threads at once; the calls
are short, so this delays a cancellation by a few milliseconds at most.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import trio

from ..errors import StorageError
from .interface import (
    SCHEMA_VERSION,
    OfflineMessage,
    StoredMessage,
    check_kind,
    check_limit,
    check_role,
    new_conversation_id,
)
from .sqlite_schema import MIGRATIONS

__all__ = ["SQLiteStore", "open_sqlite_store"]

T = TypeVar("T")

# Seconds a connection waits on another process's lock before failing with "database is locked".
BUSY_TIMEOUT = 5.0


@contextlib.contextmanager
def _storage_errors(path: Path) -> Iterator[None]:
    """Map sqlite3 and filesystem failures to ``StorageError``: the one place that does."""
    try:
        yield
    except sqlite3.Error as exc:
        raise StorageError(f"conversation store {path}: {exc}") from exc
    except OSError as exc:
        raise StorageError(f"conversation store {path}: {exc}") from exc


@contextlib.contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """An explicit write transaction (the connection is in autocommit mode)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _connect(path: Path) -> sqlite3.Connection:
    """Open (creating if needed) the database file and bring its schema up to date. Blocking."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # isolation_level=None: autocommit; multi-statement writes use _transaction explicitly.
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False)
    try:
        conn.execute("PRAGMA foreign_keys = ON")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode.lower() != "wal":
            raise sqlite3.OperationalError(f"could not switch to WAL mode (journal_mode is {mode})")
        # In WAL mode NORMAL is safe against corruption; a power cut may lose the last few turns only.
        conn.execute("PRAGMA synchronous = NORMAL")
        _migrate(conn)
    except BaseException:
        conn.close()
        raise
    return conn


def _migrate(conn: sqlite3.Connection) -> None:
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise sqlite3.DatabaseError(
            f"schema version {version} is newer than this trio-voice understands ({SCHEMA_VERSION})"
        )
    for target in range(version + 1, SCHEMA_VERSION + 1):
        with _transaction(conn):
            for statement in MIGRATIONS[target].split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {target:d}")


class SQLiteStore:
    """The conversation store in one SQLite file. Open it with ``open_store``; see the module docstring."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self._conn = conn
        self.path = path
        self._limiter = trio.CapacityLimiter(1)

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        with _storage_errors(self.path):
            return await trio.to_thread.run_sync(fn, *args, limiter=self._limiter)

    async def aclose(self) -> None:
        """Close the connection (WAL is checkpointed by SQLite). Shielded: it runs even when cancelled."""
        with trio.CancelScope(shield=True):
            await self._run(self._conn.close)

    # --- conversations ----------------------------------------------------------------------------

    async def create_conversation(self) -> str:
        """Create an empty conversation and return its id (``conv_`` + 32 hex digits)."""
        conversation_id = new_conversation_id()
        await self._run(
            self._conn.execute,
            "INSERT INTO conversations (id, created_at) VALUES (?, ?)",
            (conversation_id, time.time()),
        )
        return conversation_id

    async def conversation_exists(self, conversation_id: str) -> bool:
        def query() -> bool:
            row = self._conn.execute("SELECT 1 FROM conversations WHERE id = ?", (conversation_id,))
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
            self._conn.execute,
            "INSERT INTO messages (conversation_id, role, text, interrupted, response_id, item_id, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (conversation_id, role, text, int(interrupted), response_id, item_id, time.time()),
        )

    async def delete_message(self, conversation_id: str, item_id: str) -> bool:
        """Delete the message named ``item_id`` from a conversation (``conversation.item.delete``): the
        LLM no longer sees it. Returns False if no such message is stored."""

        def delete() -> bool:
            cursor = self._conn.execute(
                "DELETE FROM messages WHERE conversation_id = ? AND item_id = ?", (conversation_id, item_id)
            )
            return cursor.rowcount > 0

        return await self._run(delete)

    async def history(self, conversation_id: str, *, limit: int) -> list[StoredMessage]:
        """The newest ``limit`` messages of a conversation, oldest first (empty for an unknown id)."""
        check_limit(limit)

        def query() -> list[StoredMessage]:
            rows = self._conn.execute(
                "SELECT role, text, interrupted, response_id, created_at, item_id FROM messages"
                " WHERE conversation_id = ? ORDER BY id DESC LIMIT ?",
                (conversation_id, limit),
            ).fetchall()
            return [
                StoredMessage(
                    role=role,
                    text=text,
                    interrupted=bool(interrupted),
                    response_id=rid,
                    created_at=at,
                    item_id=item_id,
                )
                for role, text, interrupted, rid, at, item_id in reversed(rows)
            ]

        return await self._run(query)

    async def update_message_text(self, response_id: str, text: str, *, interrupted: bool) -> bool:
        """Replace the text of the assistant message of reply ``response_id``.

        Used when a client reports (``response.truncate``) how much of a reply it actually played: the
        stored message is cut to what the user heard. Returns False if no such message is stored.
        """

        def update() -> bool:
            cursor = self._conn.execute(
                "UPDATE messages SET text = ?, interrupted = ? WHERE response_id = ? AND role = 'assistant'",
                (text, int(interrupted), response_id),
            )
            return cursor.rowcount > 0

        return await self._run(update)

    async def message_count(self, conversation_id: str) -> int:
        def query() -> int:
            row = self._conn.execute(
                "SELECT COUNT(*) FROM messages WHERE conversation_id = ?", (conversation_id,)
            )
            return int(row.fetchone()[0])

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
        """Store one reply's outcome and latency metrics.

        ``status`` is the reply's ``completed`` / ``cancelled`` / ``failed``. All metrics are kept as JSON;
        ``metrics["first_audio_ms"]`` (voice-to-voice latency), if present, also gets its own column.
        Raises ``StorageError`` if the conversation does not exist.
        """
        first_audio_ms = metrics.get("first_audio_ms")
        await self._run(
            self._conn.execute,
            "INSERT INTO turns (conversation_id, response_id, status, reason, first_audio_ms, metrics,"
            " created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                conversation_id,
                response_id,
                status,
                reason,
                first_audio_ms,
                json.dumps(dict(metrics), sort_keys=True),
                time.time(),
            ),
        )

    async def recent_turns(self, limit: int) -> list[dict[str, Any]]:
        """The newest ``limit`` turn records, newest first, each a dict with the metrics decoded."""
        check_limit(limit)

        def query() -> list[dict[str, Any]]:
            rows = self._conn.execute(
                "SELECT conversation_id, response_id, status, reason, first_audio_ms, metrics, created_at"
                " FROM turns ORDER BY id DESC LIMIT ?",
                (limit,),
            ).fetchall()
            return [
                {
                    "conversation_id": conversation_id,
                    "response_id": response_id,
                    "status": status,
                    "reason": reason,
                    "first_audio_ms": first_audio_ms,
                    "metrics": json.loads(metrics),
                    "created_at": created_at,
                }
                for conversation_id, response_id, status, reason, first_audio_ms, metrics, created_at in rows
            ]

        return await self._run(query)

    # --- offline messages -------------------------------------------------------------------------

    async def queue_offline(self, message: OfflineMessage, *, max_queued: int) -> bool:
        """Queue ``message`` unless its user has ``max_queued`` undelivered, unexpired ones already
        (counted and inserted in one transaction, so concurrent callers cannot overshoot)."""
        check_kind(message.kind)
        m = message

        def insert() -> bool:
            with _transaction(self._conn):
                (waiting,) = self._conn.execute(
                    "SELECT COUNT(*) FROM offline_messages"
                    " WHERE user_id = ? AND delivered_at IS NULL AND expires_at > ?",
                    (m.user_id, m.created_at),
                ).fetchone()
                if waiting >= max_queued:
                    return False
                self._conn.execute(
                    "INSERT INTO offline_messages (id, user_id, kind, text, conversation_id, response_id,"
                    " created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (m.message_id, m.user_id, m.kind, m.text, m.conversation_id, m.response_id,
                     m.created_at, m.expires_at),
                )  # fmt: skip
                return True

        return await self._run(insert)

    async def pending_offline(self, user_id: str, *, now: float) -> list[OfflineMessage]:
        def query() -> list[OfflineMessage]:
            rows = self._conn.execute(
                f"SELECT {_OFFLINE_COLUMNS} FROM offline_messages"
                " WHERE user_id = ? AND delivered_at IS NULL AND expires_at > ? ORDER BY seq",
                (user_id, now),
            ).fetchall()
            return [_offline(row) for row in rows]

        return await self._run(query)

    async def mark_offline_delivered(self, user_id: str, message_id: str, *, now: float) -> bool:
        def update() -> bool:
            cursor = self._conn.execute(
                "UPDATE offline_messages SET delivered_at = ?"
                " WHERE id = ? AND user_id = ? AND delivered_at IS NULL",
                (now, message_id, user_id),
            )
            return cursor.rowcount > 0

        return await self._run(update)

    async def offline_messages(self, user_id: str, *, limit: int) -> list[OfflineMessage]:
        check_limit(limit)

        def query() -> list[OfflineMessage]:
            rows = self._conn.execute(
                f"SELECT {_OFFLINE_COLUMNS} FROM offline_messages WHERE user_id = ? ORDER BY seq DESC LIMIT ?",
                (user_id, limit),
            ).fetchall()
            return [_offline(row) for row in rows]

        return await self._run(query)

    async def drop_expired_offline(self, *, now: float) -> int:
        def delete() -> int:
            with _transaction(self._conn):
                (undelivered,) = self._conn.execute(
                    "SELECT COUNT(*) FROM offline_messages WHERE expires_at <= ? AND delivered_at IS NULL",
                    (now,),
                ).fetchone()
                self._conn.execute("DELETE FROM offline_messages WHERE expires_at <= ?", (now,))
                return int(undelivered)

        return await self._run(delete)


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


@contextlib.asynccontextmanager
async def open_sqlite_store(path: Path) -> AsyncIterator[SQLiteStore]:
    """Open the SQLite conversation store at ``path``, creating the file and its parent dirs if needed.

    Raises ``StorageError`` if the file cannot be opened, is not a database, or has a newer schema.
    The connection is closed when the block exits, even on cancellation.
    """
    path = Path(path)
    with _storage_errors(path):
        conn = await trio.to_thread.run_sync(_connect, path)
    store = SQLiteStore(conn, path)
    try:
        yield store
    finally:
        await store.aclose()
