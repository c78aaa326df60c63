"""The SQLite schema: one migration per schema version, applied by ``sqlite._migrate`` at open.

Kept in step with ``postgres_schema`` (same tables, same meaning, SQLite's own types): a schema version
number means the same data model whatever the backend.
"""

from __future__ import annotations

from .interface import SCHEMA_VERSION

__all__ = ["MIGRATIONS"]

# Migration N takes a file from user_version N-1 to N (stored as PRAGMA user_version). Each runs in one
# transaction with the version bump.
MIGRATIONS: dict[int, str] = {
    1: """
    CREATE TABLE conversations (
        id          TEXT PRIMARY KEY,
        created_at  REAL NOT NULL
    );
    CREATE TABLE messages (
        id               INTEGER PRIMARY KEY AUTOINCREMENT,
        conversation_id  TEXT NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
        role             TEXT NOT NULL CHECK (role IN ('user', 'assistant', 'system')),
        text             TEXT NOT NULL,
        interrupted      INTEGER NOT NULL DEFAULT 0 CHECK (interrupted IN (0, 1)),
        response_id      TEXT,
        created_at       REAL NOT NULL
    );
    CREATE INDEX messages_by_conversation ON messages (conversation_id, id);
    CREATE INDEX messages_by_response ON messages (response_id) WHERE response_id IS NOT NULL;
    CREATE TABLE turns (
        id               INTEGER PRIMARY KEY AUTOINCREMENT,
        conversation_id  TEXT NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
        response_id      TEXT NOT NULL,
        status           TEXT NOT NULL,
        reason           TEXT,
        first_audio_ms   REAL,
        metrics          TEXT NOT NULL,
        created_at       REAL NOT NULL
    );
    CREATE INDEX turns_by_created_at ON turns (created_at);
    CREATE INDEX turns_by_status ON turns (status, created_at);
    CREATE INDEX turns_by_conversation ON turns (conversation_id);
    """,
    2: """
    CREATE TABLE offline_messages (
        seq              INTEGER PRIMARY KEY AUTOINCREMENT,
        id               TEXT NOT NULL UNIQUE,
        user_id          TEXT NOT NULL,
        kind             TEXT NOT NULL CHECK (kind IN ('system', 'reply')),
        text             TEXT NOT NULL,
        conversation_id  TEXT,
        response_id      TEXT,
        created_at       REAL NOT NULL,
        expires_at       REAL NOT NULL,
        delivered_at     REAL
    );
    CREATE INDEX offline_by_user ON offline_messages (user_id, seq);
    CREATE INDEX offline_by_expiry ON offline_messages (expires_at);
    """,
    3: """
    ALTER TABLE messages ADD COLUMN item_id TEXT;
    CREATE INDEX messages_by_item ON messages (conversation_id, item_id) WHERE item_id IS NOT NULL;
    """,
}
assert sorted(MIGRATIONS) == list(range(1, SCHEMA_VERSION + 1)), "one migration per schema version"
