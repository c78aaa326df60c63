"""Tests of the conversation store, each run against both backends: SQLite on real files under tmp_path,
PostgreSQL on the machine's server, in a fresh schema per test (see tests/postgres.py; never skipped)."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import trio

from tests.postgres import fresh_schema
from trio_voice.errors import StorageError
from trio_voice.storage import SCHEMA_VERSION, ConversationStore, StoredMessage, open_store


@pytest.fixture(params=["sqlite", "postgres"])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Path | str]:
    """Where a store lives: a file path for SQLite, a URL with a fresh schema for PostgreSQL."""
    if request.param == "sqlite":
        yield tmp_path / "nested" / "dir" / "conversations.sqlite3"
    else:
        with fresh_schema() as url:
            yield url


@pytest.fixture
async def store(location: Path | str) -> AsyncIterator[ConversationStore]:
    async with open_store(location) as opened:
        yield opened


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """A SQLite file, for the tests of what only the SQLite backend has (a file, WAL mode)."""
    return tmp_path / "nested" / "dir" / "conversations.sqlite3"


async def test_created_conversation_exists(store: ConversationStore) -> None:
    """A created conversation exists and an unknown id does not."""
    conversation_id = await store.create_conversation()
    assert conversation_id.startswith("conv_")
    assert await store.conversation_exists(conversation_id)
    assert not await store.conversation_exists("conv_unknown")


async def test_conversation_ids_are_unique(store: ConversationStore) -> None:
    """Two conversations get different ids."""
    assert await store.create_conversation() != await store.create_conversation()


async def test_history_is_oldest_first(store: ConversationStore) -> None:
    """History returns the messages in the order they were added, with their fields."""
    conv = await store.create_conversation()
    await store.add_message(conv, "system", "be brief")
    await store.add_message(conv, "user", "hello")
    await store.add_message(conv, "assistant", "hi there", response_id="resp_1")
    history = await store.history(conv, limit=10)
    assert [(m.role, m.text, m.response_id) for m in history] == [
        ("system", "be brief", None),
        ("user", "hello", None),
        ("assistant", "hi there", "resp_1"),
    ]
    assert all(isinstance(m, StoredMessage) and m.created_at > 0 for m in history)


async def test_history_limit_keeps_the_newest(store: ConversationStore) -> None:
    """With a limit, history keeps the newest messages, still oldest first."""
    conv = await store.create_conversation()
    for i in range(7):
        await store.add_message(conv, "user", f"m{i}")
    assert [m.text for m in await store.history(conv, limit=3)] == ["m4", "m5", "m6"]
    assert await store.history(conv, limit=0) == []


async def test_history_is_per_conversation(store: ConversationStore) -> None:
    """Messages of one conversation do not appear in another's history or count."""
    a = await store.create_conversation()
    b = await store.create_conversation()
    await store.add_message(a, "user", "in a")
    await store.add_message(b, "user", "in b")
    await store.add_message(b, "user", "in b again")
    assert [m.text for m in await store.history(a, limit=10)] == ["in a"]
    assert await store.message_count(a) == 1
    assert await store.message_count(b) == 2


async def test_interrupted_flag_is_persisted(store: ConversationStore) -> None:
    """A message stored as interrupted reads back as interrupted."""
    conv = await store.create_conversation()
    await store.add_message(conv, "assistant", "I was say", interrupted=True, response_id="r1")
    await store.add_message(conv, "assistant", "Done.", response_id="r2")
    assert [m.interrupted for m in await store.history(conv, limit=10)] == [True, False]


async def test_update_message_text_cuts_to_what_was_heard(store: ConversationStore) -> None:
    """update_message_text replaces the assistant message of a reply and marks it interrupted."""
    conv = await store.create_conversation()
    await store.add_message(conv, "user", "tell me a story", response_id="resp_9")
    await store.add_message(conv, "assistant", "Once upon a time there was a fox.", response_id="resp_9")
    assert await store.update_message_text("resp_9", "Once upon a time", interrupted=True)
    history = await store.history(conv, limit=10)
    assert [(m.role, m.text, m.interrupted) for m in history] == [
        ("user", "tell me a story", False),
        ("assistant", "Once upon a time", True),
    ]


async def test_update_message_text_of_unknown_reply_is_false(store: ConversationStore) -> None:
    """update_message_text reports False when no message has that response_id."""
    assert not await store.update_message_text("resp_missing", "x", interrupted=True)


async def test_item_ids_are_kept_and_name_the_message_to_delete(store: ConversationStore) -> None:
    """A message stored with an item id reads back with it; delete_message removes that message only."""
    conv = await store.create_conversation()
    await store.add_message(conv, "user", "first", item_id="item_1")
    await store.add_message(conv, "assistant", "reply", response_id="resp_1", item_id="item_2")
    await store.add_message(conv, "user", "no id")
    history = await store.history(conv, limit=10)
    assert [(m.text, m.item_id) for m in history] == [
        ("first", "item_1"),
        ("reply", "item_2"),
        ("no id", None),
    ]
    assert await store.delete_message(conv, "item_1")
    assert [m.text for m in await store.history(conv, limit=10)] == ["reply", "no id"]
    assert await store.message_count(conv) == 2


async def test_delete_message_is_per_conversation(store: ConversationStore) -> None:
    """Deleting an item id of another conversation, or an unknown one, deletes nothing and says so."""
    a = await store.create_conversation()
    b = await store.create_conversation()
    await store.add_message(a, "user", "kept", item_id="item_1")
    assert not await store.delete_message(b, "item_1")
    assert not await store.delete_message(a, "item_404")
    assert [m.text for m in await store.history(a, limit=10)] == ["kept"]


@pytest.mark.parametrize("version", [1, 2])
async def test_an_older_sqlite_file_is_upgraded_in_place(db_path: Path, version: int) -> None:
    """A file written before messages had item ids (version 1, or 2 with main's offline queue) opens,
    keeps its messages and queued offline messages, and takes item ids."""
    from trio_voice.storage.sqlite_schema import MIGRATIONS

    db_path.parent.mkdir(parents=True)
    conn = sqlite3.connect(db_path)
    for step in range(1, version + 1):
        conn.executescript(MIGRATIONS[step])
    conn.execute(f"PRAGMA user_version = {version:d}")
    conn.execute("INSERT INTO conversations (id, created_at) VALUES ('conv_old', 1.0)")
    conn.execute(
        "INSERT INTO messages (conversation_id, role, text, created_at) VALUES ('conv_old', 'user', 'old', 1.0)"
    )
    if version >= 2:
        conn.execute(
            "INSERT INTO offline_messages (id, user_id, kind, text, created_at, expires_at)"
            " VALUES ('msg_old', 'alice', 'system', 'waiting', 1000.0, 2000.0)"
        )
    conn.commit()
    conn.close()
    async with open_store(db_path) as store:
        await store.add_message("conv_old", "user", "new", item_id="item_9")
        history = await store.history("conv_old", limit=10)
        assert [(m.text, m.item_id) for m in history] == [("old", None), ("new", "item_9")]
        pending = await store.pending_offline("alice", now=1500.0)
        assert [m.text for m in pending] == (["waiting"] if version >= 2 else [])
    conn = sqlite3.connect(db_path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 3
    conn.close()


async def test_add_message_to_unknown_conversation_fails(store: ConversationStore) -> None:
    """A message for a conversation that does not exist is refused with StorageError."""
    with pytest.raises(StorageError):
        await store.add_message("conv_nope", "user", "hello")


async def test_bad_role_is_a_value_error(store: ConversationStore) -> None:
    """A role outside user/assistant/system is the caller's bug: ValueError."""
    conv = await store.create_conversation()
    with pytest.raises(ValueError, match="role"):
        await store.add_message(conv, "robot", "beep")


async def test_data_persists_across_reopen(location: Path | str) -> None:
    """Conversations, messages and turns written before closing are there after reopening the store."""
    async with open_store(location) as store:
        conv = await store.create_conversation()
        await store.add_message(conv, "user", "remember me")
        await store.record_turn(
            conv, "resp_1", status="completed", reason=None, metrics={"first_audio_ms": 5}
        )
    async with open_store(location) as store:
        assert await store.conversation_exists(conv)
        assert [m.text for m in await store.history(conv, limit=5)] == ["remember me"]
        assert [t["response_id"] for t in await store.recent_turns(5)] == ["resp_1"]


async def test_file_is_in_wal_mode_with_schema_version(db_path: Path) -> None:
    """The database file is in WAL mode and carries the schema version."""
    async with open_store(db_path):
        pass
    conn = sqlite3.connect(db_path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    finally:
        conn.close()


async def test_concurrent_writers_do_not_fail(store: ConversationStore) -> None:
    """Many tasks writing at once all succeed and every message is stored, in each task's order."""
    conv = await store.create_conversation()

    async def writer(n: int) -> None:
        for i in range(5):
            await store.add_message(conv, "user", f"{n}:{i}")
            await store.record_turn(conv, f"resp_{n}_{i}", status="completed", reason=None, metrics={})

    async with trio.open_nursery() as nursery:
        for n in range(40):
            nursery.start_soon(writer, n)

    assert await store.message_count(conv) == 200
    texts = [m.text for m in await store.history(conv, limit=200)]
    for n in range(40):
        assert [t for t in texts if t.startswith(f"{n}:")] == [f"{n}:{i}" for i in range(5)]


async def test_record_turn_round_trip(store: ConversationStore) -> None:
    """A recorded turn reads back with its status, reason, metrics and indexed first-audio latency."""
    metrics = {"stt_ms": 120.5, "llm_first_token_ms": 250, "first_audio_ms": 690.25, "interrupt_ms": None}
    conv = await store.create_conversation()
    await store.record_turn(conv, "resp_a", status="completed", reason=None, metrics=metrics)
    await store.record_turn(conv, "resp_b", status="cancelled", reason="barge_in", metrics={"x": 1})
    turns = await store.recent_turns(10)
    newest, oldest = turns
    assert (newest["response_id"], newest["status"], newest["reason"]) == ("resp_b", "cancelled", "barge_in")
    assert newest["first_audio_ms"] is None
    assert oldest["conversation_id"] == conv
    assert oldest["metrics"] == metrics
    assert oldest["first_audio_ms"] == 690.25
    assert oldest["created_at"] > 0


async def test_recent_turns_limit(store: ConversationStore) -> None:
    """recent_turns returns at most `limit` records, the newest first."""
    conv = await store.create_conversation()
    for i in range(4):
        await store.record_turn(conv, f"resp_{i}", status="completed", reason=None, metrics={})
    assert [t["response_id"] for t in await store.recent_turns(2)] == ["resp_3", "resp_2"]


async def test_path_under_a_file_is_a_storage_error(tmp_path: Path) -> None:
    """Opening a store whose parent 'directory' is a regular file raises StorageError."""
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("x")
    with pytest.raises(StorageError):
        async with open_store(blocker / "conversations.sqlite3"):
            pass


async def test_path_that_is_a_directory_is_a_storage_error(tmp_path: Path) -> None:
    """Opening a store at a path that is a directory raises StorageError."""
    with pytest.raises(StorageError):
        async with open_store(tmp_path):
            pass


async def test_file_that_is_not_a_database_is_a_storage_error(tmp_path: Path) -> None:
    """Opening a file that is not an SQLite database raises StorageError."""
    path = tmp_path / "garbage.sqlite3"
    path.write_bytes(b"this is not a database, just some text that is long enough" * 20)
    with pytest.raises(StorageError):
        async with open_store(path):
            pass


async def test_newer_sqlite_schema_is_refused(db_path: Path) -> None:
    """A file written by a newer schema version is refused rather than misread."""
    async with open_store(db_path):
        pass
    conn = sqlite3.connect(db_path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(StorageError, match="newer"):
        async with open_store(db_path):
            pass


async def test_use_after_close_is_a_storage_error(location: Path | str) -> None:
    """Calling a store after its block has exited raises StorageError."""
    async with open_store(location) as store:
        pass
    with pytest.raises(StorageError):
        await store.create_conversation()


# --- offline messages ------------------------------------------------------------------------------


def offline(message_id: str, user_id: str = "alice", *, at: float = 1000.0, ttl: float = 60.0, **kw):
    from trio_voice.storage import OfflineMessage

    return OfflineMessage(
        message_id=message_id,
        user_id=user_id,
        kind=kw.pop("kind", "system"),
        text=kw.pop("text", f"text of {message_id}"),
        created_at=at,
        expires_at=at + ttl,
        **kw,
    )


async def test_offline_messages_are_pending_in_order_until_delivered(store: ConversationStore) -> None:
    """Queued messages come back oldest first, per user; a delivered one is no longer pending but still listed."""
    for name in ("m1", "m2", "m3"):
        assert await store.queue_offline(offline(name), max_queued=10)
    assert await store.queue_offline(offline("b1", "bob"), max_queued=10)
    pending = await store.pending_offline("alice", now=1001.0)
    assert [m.message_id for m in pending] == ["m1", "m2", "m3"]
    assert (pending[0].kind, pending[0].text, pending[0].status) == ("system", "text of m1", "queued")
    assert await store.mark_offline_delivered("alice", "m2", now=1002.0)
    assert not await store.mark_offline_delivered("alice", "m2", now=1003.0)  # already delivered
    assert not await store.mark_offline_delivered("bob", "m1", now=1003.0)  # not bob's
    assert [m.message_id for m in await store.pending_offline("alice", now=1004.0)] == ["m1", "m3"]
    listed = await store.offline_messages("alice", limit=10)
    assert [(m.message_id, m.status) for m in listed] == [
        ("m3", "queued"),
        ("m2", "delivered"),
        ("m1", "queued"),
    ]
    assert listed[1].delivered_at == 1002.0


async def test_offline_reply_keeps_its_ids(store: ConversationStore) -> None:
    """A queued reply keeps the conversation and response it came from."""
    message = offline("r1", kind="reply", conversation_id="conv_1", response_id="resp_1")
    assert await store.queue_offline(message, max_queued=10)
    assert await store.pending_offline("alice", now=1000.5) == [message]


async def test_offline_queue_is_bounded_per_user(store: ConversationStore) -> None:
    """A user with max_queued messages waiting gets no more; another user still does; delivery makes room."""
    assert await store.queue_offline(offline("m1"), max_queued=2)
    assert await store.queue_offline(offline("m2"), max_queued=2)
    assert not await store.queue_offline(offline("m3"), max_queued=2)
    assert await store.queue_offline(offline("b1", "bob"), max_queued=2)
    await store.mark_offline_delivered("alice", "m1", now=1001.0)
    assert await store.queue_offline(offline("m4", at=1001.0), max_queued=2)
    assert [m.message_id for m in await store.pending_offline("alice", now=1002.0)] == ["m2", "m4"]


async def test_expired_offline_messages_are_not_pending_and_are_dropped_and_counted(
    store: ConversationStore,
) -> None:
    """An expired message is never pending; dropping counts only the undelivered ones and deletes all."""
    await store.queue_offline(offline("short", ttl=5.0), max_queued=10)
    await store.queue_offline(offline("done", ttl=5.0), max_queued=10)
    await store.queue_offline(offline("long", ttl=500.0), max_queued=10)
    await store.mark_offline_delivered("alice", "done", now=1001.0)
    assert [m.message_id for m in await store.pending_offline("alice", now=1005.0)] == ["long"]
    assert await store.drop_expired_offline(now=1005.0) == 1
    assert [m.message_id for m in await store.offline_messages("alice", limit=10)] == ["long"]
    assert await store.drop_expired_offline(now=1005.0) == 0


async def test_offline_messages_survive_a_reopen(location: Path | str) -> None:
    """A queued message is still pending after the store is closed and opened again (a server restart)."""
    async with open_store(location) as store:
        await store.queue_offline(offline("m1"), max_queued=10)
    async with open_store(location) as store:
        assert [m.message_id for m in await store.pending_offline("alice", now=1001.0)] == ["m1"]
