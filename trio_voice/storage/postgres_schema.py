"""The PostgreSQL schema and its migrations, applied at start-up by every instance, safely at the same time.

The tables mirror the SQLite ones (``sqlite_schema.MIGRATIONS``) with PostgreSQL's own types: ``timestamptz``
stamped by the database clock (one clock for every instance, so the order of turns written by different
instances is the order they happened), ``boolean`` for the interrupted flag, ``jsonb`` for the metrics
(queryable: ``metrics->>'stt_ms'``), identity columns for the message order. Offline messages keep their
times as epoch seconds (``double precision``): their expiry is compared with the callers' clock, which the
tests control, so the database clock does not decide it.

Migrations: ``schema_version`` holds one row per applied migration. ``migrate`` runs in one transaction
that first takes a transaction-level advisory lock, so when several instances start together one applies
the missing migrations and the others wait, then find nothing left to do; the lock is released by the
commit (or the rollback), never left behind by a crashed instance. The lock key includes the current
schema, so separate schemas in one database (tests, tenants) migrate independently.

Blocking: ``migrate`` runs on a psycopg connection in a worker thread. Errors are psycopg's own (the
caller maps them); a database written by a newer trio-voice raises ``StorageError`` here.
"""

from __future__ import annotations

from typing import Any

import psycopg

from ..errors import StorageError
from .interface import SCHEMA_VERSION

__all__ = ["migrate", "schema_version"]

# First key of the two-int advisory lock: "tv" + "mg" in ASCII, so the lock is recognisable in pg_locks.
MIGRATION_LOCK_CLASS = 0x7476_6D67

# How long an instance waits for another one's migration before giving up (a stuck migration must not
# hang every instance's start-up forever).
MIGRATION_LOCK_TIMEOUT_MS = 60_000

_CREATE_VERSION_TABLE = """
CREATE TABLE IF NOT EXISTS schema_version (
    version     integer PRIMARY KEY,
    applied_at  timestamptz NOT NULL DEFAULT now()
)
"""

# Migration N takes a schema from version N-1 to N; keep in step with the SQLite backend's migrations.
_MIGRATIONS: dict[int, str] = {
    1: """
    CREATE TABLE conversations (
        id          text PRIMARY KEY,
        created_at  timestamptz NOT NULL DEFAULT now()
    );
    CREATE TABLE messages (
        id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        conversation_id  text NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
        role             text NOT NULL CHECK (role IN ('user', 'assistant', 'system')),
        text             text NOT NULL,
        interrupted      boolean NOT NULL DEFAULT false,
        response_id      text,
        created_at       timestamptz NOT NULL DEFAULT now()
    );
    CREATE INDEX messages_by_conversation ON messages (conversation_id, id);
    CREATE INDEX messages_by_response ON messages (response_id) WHERE response_id IS NOT NULL;
    CREATE TABLE turns (
        id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        conversation_id  text NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
        response_id      text NOT NULL,
        status           text NOT NULL,
        reason           text,
        first_audio_ms   double precision,
        metrics          jsonb NOT NULL,
        created_at       timestamptz NOT NULL DEFAULT now()
    );
    CREATE INDEX turns_by_created_at ON turns (created_at);
    CREATE INDEX turns_by_status ON turns (status, created_at);
    CREATE INDEX turns_by_conversation ON turns (conversation_id);
    """,
    2: """
    CREATE TABLE offline_messages (
        seq              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        id               text NOT NULL UNIQUE,
        user_id          text NOT NULL,
        kind             text NOT NULL CHECK (kind IN ('system', 'reply')),
        text             text NOT NULL,
        conversation_id  text,
        response_id      text,
        created_at       double precision NOT NULL,
        expires_at       double precision NOT NULL,
        delivered_at     double precision
    );
    CREATE INDEX offline_by_user ON offline_messages (user_id, seq);
    CREATE INDEX offline_by_expiry ON offline_messages (expires_at);
    """,
    3: """
    ALTER TABLE messages ADD COLUMN item_id text;
    CREATE INDEX messages_by_item ON messages (conversation_id, item_id) WHERE item_id IS NOT NULL;
    """,
}
assert sorted(_MIGRATIONS) == list(range(1, SCHEMA_VERSION + 1)), "one migration per schema version"


def schema_version(conn: psycopg.Connection[Any]) -> int:
    """The schema version applied in the connection's current schema (0 before the first migration)."""
    row = conn.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()
    assert row is not None
    return int(row[0])


def migrate(conn: psycopg.Connection[Any]) -> int:
    """Bring the current schema (the first of ``search_path``) up to ``SCHEMA_VERSION``; return how many
    migrations this call applied (0 when another instance, or an earlier start, already did).

    ``conn`` must be in autocommit mode (the transaction here is explicit). Blocking.
    Raises ``StorageError`` if the schema is newer than this code, psycopg's errors otherwise.
    """
    with conn.transaction():
        conn.execute(f"SET LOCAL lock_timeout = {MIGRATION_LOCK_TIMEOUT_MS:d}")
        conn.execute(
            "SELECT pg_advisory_xact_lock(%s, hashtext(coalesce(current_schema(), '')))",
            (MIGRATION_LOCK_CLASS,),
        )
        conn.execute(_CREATE_VERSION_TABLE)
        current = schema_version(conn)
        if current > SCHEMA_VERSION:
            raise StorageError(
                f"schema version {current} is newer than this trio-voice understands ({SCHEMA_VERSION})"
            )
        for target in range(current + 1, SCHEMA_VERSION + 1):
            conn.execute(_MIGRATIONS[target])
            conn.execute("INSERT INTO schema_version (version) VALUES (%s)", (target,))
    return SCHEMA_VERSION - current
