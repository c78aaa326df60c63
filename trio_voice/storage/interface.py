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
    "MESSAGE_KINDS",
    "ROLES",
    "SCHEMA_VERSION",
    "ConversationStore",
    "OfflineMessage",
    "StoredMessage",
    "check_limit",
    "check_role",
    "new_conversation_id",
]

ROLES = frozenset({"user", "assistant", "system"})

# The version of the logical schema (tables, columns, meaning). Every backend keeps one migration per
# version, so a version number means the same data model whatever the backend; bump it with all of them.
# 2: offline_messages, the per-user queue of messages for users with no connection.
# 3: messages have an ``item_id`` (the realtime API's item, for conversation.item.delete).
SCHEMA_VERSION = 3

# What an offline message is: a ``system`` message an operator sent, or a ``reply`` that finished after
# its user had left.
MESSAGE_KINDS = frozenset({"system", "reply"})


@attrs.frozen
class StoredMessage:
    """One message of a conversation, as stored."""

    role: str  # "user" | "assistant" | "system"
    text: str
    interrupted: bool
    response_id: str | None
    created_at: float  # seconds since the epoch
    item_id: str | None = None  # the client's name for the message (a realtime item id), if it has one


@attrs.frozen
class OfflineMessage:
    """A message queued for a user, delivered on the user's next connection unless it expires first.

    ``status`` is ``queued`` until a connection of the user acknowledges it, then ``delivered``. Times are
    seconds since the epoch.
    """

    message_id: str
    user_id: str
    kind: str  # one of MESSAGE_KINDS
    text: str
    created_at: float
    expires_at: float
    status: str = "queued"  # "queued" | "delivered"
    delivered_at: float | None = None
    conversation_id: str | None = None  # a reply's conversation
    response_id: str | None = None  # a reply's id


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

    # --- offline messages (SCHEMA_VERSION 2) ------------------------------------------------------

    async def queue_offline(self, message: OfflineMessage, *, max_queued: int) -> bool:
        """Queue ``message``; False (nothing stored) when its user already has ``max_queued`` waiting."""
        ...

    async def pending_offline(self, user_id: str, *, now: float) -> list[OfflineMessage]:
        """The user's queued messages that have not expired at ``now``, oldest first."""
        ...

    async def mark_offline_delivered(self, user_id: str, message_id: str, *, now: float) -> bool:
        """Mark a queued message of ``user_id`` delivered; False if there is none (or it was already)."""
        ...

    async def offline_messages(self, user_id: str, *, limit: int) -> list[OfflineMessage]:
        """The user's messages of any status (delivered ones too, until they expire), newest first."""
        ...

    async def drop_expired_offline(self, *, now: float) -> int:
        """Delete every message that expired by ``now``; return how many were never delivered."""
        ...


def new_conversation_id() -> str:
    """A fresh conversation id: ``conv_`` + 32 hex digits (random, so instances never collide)."""
    return f"conv_{uuid.uuid4().hex}"


def check_role(role: str) -> None:
    """Raise ``ValueError`` unless ``role`` is one of ``ROLES``."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {sorted(ROLES)}, not {role!r}")


def check_kind(kind: str) -> None:
    """Raise ``ValueError`` unless ``kind`` is one of ``MESSAGE_KINDS``."""
    if kind not in MESSAGE_KINDS:
        raise ValueError(f"kind must be one of {sorted(MESSAGE_KINDS)}, not {kind!r}")


def check_limit(limit: int) -> None:
    """Raise ``ValueError`` for a negative ``limit``."""
    if limit < 0:
        raise ValueError(f"limit must be >= 0, not {limit}")
