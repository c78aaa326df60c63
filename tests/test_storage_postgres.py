"""What only the PostgreSQL store has: start-up migrations (idempotent, safe when instances start together),
native column types, a connection pool that survives lost connections, and errors that name the server
without its password. The behaviour it shares with SQLite is tested in test_storage.py, on both."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import trio

from tests.llm_servers import refused_url
from tests.postgres import admin_connection, with_params
from trio_voice.errors import StorageError
from trio_voice.storage import SCHEMA_VERSION, SQLiteStore, open_store
from trio_voice.storage.postgres import PostgresStore, redact_url
from trio_voice.storage.postgres_schema import MIGRATION_LOCK_CLASS, migrate

# Bound on every test here: a migration that deadlocks or a pool that hangs fails instead of stalling.
TIMEOUT = 20.0


def schema_of(url: str) -> str:
    return url.rsplit("search_path%3D", 1)[1].split("&", 1)[0]


def query(url: str, statement: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Run one statement on a fresh connection with the URL's search_path; blocking."""
    with psycopg.connect(url, autocommit=True) as conn:
        cursor = conn.execute(statement, params)  # type: ignore[arg-type]
        return cursor.fetchall() if cursor.description else []


@pytest.fixture
def admin() -> Iterator[psycopg.Connection]:
    with admin_connection() as conn:
        yield conn


async def test_open_store_picks_the_backend_by_location(pg_url: str, tmp_path: Path) -> None:
    """A postgresql:// or postgres:// URL opens PostgreSQL; a path (str or Path) opens SQLite."""
    with trio.fail_after(TIMEOUT):
        async with open_store(pg_url) as store:
            assert isinstance(store, PostgresStore)
        async with open_store(pg_url.replace("postgresql://", "postgres://", 1)) as store:
            assert isinstance(store, PostgresStore)
        async with open_store(str(tmp_path / "a.sqlite3")) as store:
            assert isinstance(store, SQLiteStore)


async def test_unsupported_url_scheme_is_a_storage_error() -> None:
    """A URL of a scheme with no backend is refused, naming the scheme, rather than taken for a file path."""
    with pytest.raises(StorageError, match="'mysql'"):
        async with open_store("mysql://root@127.0.0.1/test"):
            pass


async def test_first_open_migrates_and_reopening_changes_nothing(pg_url: str) -> None:
    """The first open creates the schema; later opens apply nothing and keep the data."""
    with trio.fail_after(TIMEOUT):
        async with open_store(pg_url) as store:
            conv = await store.create_conversation()
            await store.add_message(conv, "user", "still here")
        async with open_store(pg_url) as store:
            assert [m.text for m in await store.history(conv, limit=5)] == ["still here"]
    assert query(pg_url, "SELECT version FROM schema_version ORDER BY version") == [
        (v,) for v in range(1, SCHEMA_VERSION + 1)
    ]
    with psycopg.connect(pg_url, autocommit=True) as conn:
        assert migrate(conn) == 0


async def test_instances_starting_together_migrate_once(pg_url: str, admin: psycopg.Connection) -> None:
    """Four stores opening at once on an empty schema queue on the migration lock; then all open, each
    can write, and every migration was applied exactly once."""
    schema = schema_of(pg_url)
    opened: list[str] = []

    async def open_and_write() -> None:
        async with open_store(pg_url) as store:
            conv = await store.create_conversation()
            await store.add_message(conv, "user", "hi")
            opened.append(conv)

    def waiting_on_lock() -> int:
        row = admin.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
            " AND classid = %s::oid AND objid = hashtext(%s)::oid",
            (MIGRATION_LOCK_CLASS, schema),
        ).fetchone()
        return row[0]  # type: ignore[index]

    holder = psycopg.connect(pg_url)  # not autocommit: the lock is held until the rollback below
    try:
        holder.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (MIGRATION_LOCK_CLASS, schema))
        with trio.fail_after(TIMEOUT):
            async with trio.open_nursery() as nursery:
                for _ in range(4):
                    nursery.start_soon(open_and_write)
                # All four are inside their migration transaction, blocked on the same lock.
                while await trio.to_thread.run_sync(waiting_on_lock) < 4:  # noqa: ASYNC110 - pg_locks has no event to await
                    await trio.sleep(0.02)
                assert opened == []
                holder.rollback()
    finally:
        holder.close()
    assert len(set(opened)) == 4
    assert query(pg_url, "SELECT version FROM schema_version ORDER BY version") == [
        (v,) for v in range(1, SCHEMA_VERSION + 1)
    ]
    assert query(pg_url, "SELECT count(*) FROM messages") == [(4,)]


@pytest.mark.parametrize("version", [1, 2])
async def test_an_older_schema_is_upgraded_in_place(pg_url: str, version: int) -> None:
    """A schema created before messages had item ids (version 1, or 2 with main's offline queue) is
    migrated on open and keeps its messages and queued offline messages."""
    from trio_voice.storage.postgres_schema import _CREATE_VERSION_TABLE, _MIGRATIONS

    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(_CREATE_VERSION_TABLE)
        for step in range(1, version + 1):
            conn.execute(_MIGRATIONS[step])  # type: ignore[arg-type]
            conn.execute("INSERT INTO schema_version (version) VALUES (%s)", (step,))
        conn.execute("INSERT INTO conversations (id) VALUES ('conv_old')")
        conn.execute("INSERT INTO messages (conversation_id, role, text) VALUES ('conv_old', 'user', 'old')")
        if version >= 2:
            conn.execute(
                "INSERT INTO offline_messages (id, user_id, kind, text, created_at, expires_at)"
                " VALUES ('msg_old', 'alice', 'system', 'waiting', 1000.0, 2000.0)"
            )
    with trio.fail_after(TIMEOUT):
        async with open_store(pg_url) as store:
            await store.add_message("conv_old", "user", "new", item_id="item_9")
            history = await store.history("conv_old", limit=10)
            pending = await store.pending_offline("alice", now=1500.0)
    assert [(m.text, m.item_id) for m in history] == [("old", None), ("new", "item_9")]
    assert [m.text for m in pending] == (["waiting"] if version >= 2 else [])
    assert query(pg_url, "SELECT version FROM schema_version ORDER BY version") == [(1,), (2,), (3,)]
    assert SCHEMA_VERSION == 3


async def test_newer_postgres_schema_is_refused(pg_url: str) -> None:
    """A schema migrated by a newer trio-voice is refused rather than misread."""
    async with open_store(pg_url):
        pass
    query(pg_url, "INSERT INTO schema_version (version) VALUES (%s)", (SCHEMA_VERSION + 1,))
    with pytest.raises(StorageError, match="newer"):
        async with open_store(pg_url):
            pass


async def test_columns_have_native_types(pg_url: str) -> None:
    """Times are timestamptz, the flag boolean, metrics jsonb that SQL can query."""
    async with open_store(pg_url) as store:
        conv = await store.create_conversation()
        await store.record_turn(conv, "resp_1", status="completed", reason=None, metrics={"stt_ms": 120.5})
    types = dict(
        query(
            pg_url,
            "SELECT table_name || '.' || column_name, data_type FROM information_schema.columns"
            " WHERE table_schema = %s",
            (schema_of(pg_url),),
        )
    )
    assert types["messages.created_at"] == "timestamp with time zone"
    assert types["messages.interrupted"] == "boolean"
    assert types["turns.metrics"] == "jsonb"
    assert types["turns.first_audio_ms"] == "double precision"
    assert query(pg_url, "SELECT (metrics->>'stt_ms')::float8 FROM turns") == [(120.5,)]


async def test_pool_replaces_connections_the_server_dropped(pg_url: str, admin: psycopg.Connection) -> None:
    """After the server ends every connection of the store (a restart, a proxy timeout), calls still work."""
    name = f"tv_test_{uuid.uuid4().hex[:12]}"
    url = with_params(pg_url, application_name=name)
    with trio.fail_after(TIMEOUT):
        async with open_store(url) as store:
            conv = await store.create_conversation()
            killed = admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s", (name,)
            ).fetchall()
            assert killed and all(ok for (ok,) in killed)
            for _ in range(3):
                await store.add_message(conv, "user", "after the drop")
            assert await store.message_count(conv) == 3


async def test_unreachable_server_is_a_storage_error_without_the_password() -> None:
    """A server that refuses connections fails the open with StorageError naming it, password hidden."""
    port = refused_url().rsplit(":", 1)[1]
    url = f"postgresql://trio:s3cret@127.0.0.1:{port}/test"
    with trio.fail_after(TIMEOUT), pytest.raises(StorageError) as caught:
        async with open_store(url):
            pass
    message = str(caught.value)
    assert f"postgresql://trio:***@127.0.0.1:{port}/test" in message
    assert "s3cret" not in message


async def test_missing_database_is_a_storage_error(admin: psycopg.Connection) -> None:
    """A database that does not exist fails the open with the server's reason."""
    missing = f"tv_missing_{uuid.uuid4().hex[:8]}"
    info = admin.info
    url = f"postgresql://{info.user}@{info.host}:{info.port}/{missing}"
    with trio.fail_after(TIMEOUT), pytest.raises(StorageError, match=f'database "{missing}" does not exist'):
        async with open_store(url):
            pass


def test_redact_url_hides_only_the_password() -> None:
    """Messages and logs show the user, host and database but never the password."""
    assert (
        redact_url("postgresql://u:pw@h:5432/db?sslmode=require")
        == "postgresql://u:***@h:5432/db?sslmode=require"
    )
    assert redact_url("postgresql://u@h/db") == "postgresql://u@h/db"
    assert "pw" not in redact_url("postgresql://u:pw@h:notaport/db")
