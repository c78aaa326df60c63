"""The storage interface: what the server may ask of a conversation store, and the records it gets back.

Every backend (``sqlite``, ``postgres``) implements ``ConversationStore`` with the same semantics, and the
same test suite (``tests/test_storage.py``) runs against each. The interface speaks only of ids, plain
values and ``StoredMessage`` records, never of SQL or connections, so callers cannot tell backends apart.

The argument checks that are the caller's bug (a role outside ``ROLES``, a negative limit) live here, so
both backends raise the same ``ValueError`` before touching the database.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any, Protocol

import attrs

__all__ = [
    "ROLES",
    "SCHEMA_VERSION",
    "ConversationStore",
    "StoredMessage",
    "check_limit",
    "check_role",
    "new_conversation_id",
]

ROLES = frozenset({"user", "assistant", "system"})

# The version of the logical schema (tables, columns, meaning). Every backend keeps one migration per
# version, so a version number means the same data model whatever the backend; bump it with all of them.
SCHEMA_VERSION = 2  # 2: messages have an ``item_id`` (the realtime API's item, for conversation.item.delete)


@attrs.frozen
class StoredMessage:
    """One message of a conversation, as stored."""

    role: str  # "user" | "assistant" | "system"
    text: str
    interrupted: bool
    response_id: str | None
    created_at: float  # seconds since the epoch
    item_id: str | None = None  # the client's name for the message (a realtime item id), if it has one


class ConversationStore(Protocol):
    """What the server needs from a conversation store; every method may raise ``StorageError``."""

    async def create_conversation(self) -> str: ...

    async def conversation_exists(self, conversation_id: str) -> bool: ...

    async def add_message(
        self,
        conversation_id: str,
        role: str,
        text: str,
        *,
        interrupted: bool = False,
        response_id: str | None = None,
        item_id: str | None = None,
    ) -> None: ...

    async def delete_message(self, conversation_id: str, item_id: str) -> bool: ...

    async def history(self, conversation_id: str, *, limit: int) -> list[StoredMessage]: ...

    async def update_message_text(self, response_id: str, text: str, *, interrupted: bool) -> bool: ...

    async def record_turn(
        self,
        conversation_id: str,
        response_id: str,
        *,
        status: str,
        reason: str | None,
        metrics: Mapping[str, float | int | None],
    ) -> None: ...

    async def recent_turns(self, limit: int) -> list[dict[str, Any]]: ...

    async def message_count(self, conversation_id: str) -> int: ...


def new_conversation_id() -> str:
    """A fresh conversation id: ``conv_`` + 32 hex digits (random, so instances never collide)."""
    return f"conv_{uuid.uuid4().hex}"


def check_role(role: str) -> None:
    """Raise ``ValueError`` unless ``role`` is one of ``ROLES``."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {sorted(ROLES)}, not {role!r}")


def check_limit(limit: int) -> None:
    """Raise ``ValueError`` for a negative ``limit``."""
    if limit < 0:
        raise ValueError(f"limit must be >= 0, not {limit}")
