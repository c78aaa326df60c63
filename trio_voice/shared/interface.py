"""The interface to state shared across connections: resume routes, presence, typing, fan-out, offline queues.

A session may outlive its connection and a user may hold several connections, so some facts belong to no
one connection: where a session can be resumed (and with which token), who is online, who is typing,
which messages wait for a user. Every caller reaches them through :class:`SharedState` only, never
through another session's objects, so the one implementation here (``local.InProcessState``, the
embedded default) can be swapped for one that several server instances share (Redis, issue 14) without
touching a caller. Hence the rules every method keeps:

- async, and each a single round trip for a networked implementation;
- values in and out are the frozen records below (plain strings, numbers, tuples), never live objects;
- times are wall-clock seconds since the epoch, from the implementation's clock, so instances agree;
- fan-out is :meth:`SharedState.publish` / :meth:`SharedState.subscribe` per user, lossy by design
  (presence and typing are indicators; offline messages are persisted, a notification only says "look").

Error handling: a failing backend raises ``StorageError`` (the same tree as the store), and callers
treat these facts as best effort: a presence update that fails is logged, never fatal to a session.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Protocol

import attrs
import trio

from ..storage import OfflineMessage

__all__ = [
    "PRESENCE_STATUSES",
    "MessageQueued",
    "PresenceChanged",
    "QueueFull",
    "SessionPresence",
    "SessionRoute",
    "SharedState",
    "TypingChanged",
    "UserEvent",
    "UserPresence",
]

# A user's presence: ``online`` (a connection is attached and active), ``away`` (every session is idle,
# set away by its client, or waiting for its client to resume), ``offline`` (no session).
PRESENCE_STATUSES = ("online", "away", "offline")


@attrs.frozen
class SessionRoute:
    """Where a session can be resumed: the instance holding it and the digest of its resume token.

    ``ended`` is None while the session lives; afterwards the route is kept a while as a tombstone that
    says why it ended (``expired``, ``closed``), so a late resume gets that reason instead of "unknown".
    """

    session_id: str
    instance_id: str
    token_digest: str  # sha256 hex of the resume token: the token itself is never stored
    user_id: str | None = None
    ended: str | None = None


@attrs.frozen
class SessionPresence:
    session_id: str
    status: str  # "online" or "away"
    last_seen: float
    typing: bool = False


@attrs.frozen
class UserPresence:
    """A user's presence across sessions: ``online`` if any session is, ``away`` if all are, else ``offline``."""

    user_id: str
    status: str
    last_seen: float | None  # the newest of its sessions' (kept after the last one ends)
    typing: bool
    sessions: tuple[SessionPresence, ...] = ()


@attrs.frozen
class PresenceChanged:
    """Session ``session_id`` of ``user_id`` is now ``status`` (``offline`` when it ended)."""

    user_id: str
    session_id: str
    status: str
    last_seen: float


@attrs.frozen
class TypingChanged:
    user_id: str
    session_id: str
    typing: bool


@attrs.frozen
class MessageQueued:
    """A message was queued for ``user_id``: its live sessions fetch and deliver what is pending."""

    user_id: str
    message_id: str


UserEvent = PresenceChanged | TypingChanged | MessageQueued


class QueueFull(Exception):
    """The user already has as many undelivered messages as the queue holds."""


class SharedState(Protocol):
    """State shared by every connection of every instance; see the module docstring for the rules."""

    instance_id: str  # this server instance, as routes name it

    def now(self) -> float:
        """The wall clock every time here is on (seconds since the epoch)."""
        ...

    # --- resume routes --------------------------------------------------------------------------------
    async def put_route(self, route: SessionRoute) -> None:
        """Record (or replace) a live session's route."""
        ...

    async def get_route(self, session_id: str) -> SessionRoute | None:
        """A session's route, its tombstone if it ended a short while ago, or None."""
        ...

    async def end_route(self, session_id: str, reason: str) -> None:
        """The session ended (``expired``, ``closed``): keep a tombstone with that reason for a while."""
        ...

    # --- presence and typing ------------------------------------------------------------------------
    async def set_presence(self, user_id: str, session_id: str, status: str) -> float:
        """Set one session's status (``offline`` forgets the session); return the ``last_seen`` stamped."""
        ...

    async def set_typing(self, user_id: str, session_id: str, typing: bool) -> None: ...

    async def presence(self, user_id: str) -> UserPresence: ...

    # --- fan-out ------------------------------------------------------------------------------------
    async def publish(self, event: UserEvent) -> None:
        """Tell every subscriber of ``event.user_id`` (on any instance), the publisher's own too."""
        ...

    def subscribe(self, user_id: str) -> AbstractAsyncContextManager[trio.MemoryReceiveChannel[UserEvent]]:
        """Receive the user's events while the block runs. A subscriber that falls behind loses events."""
        ...

    # --- offline queue ------------------------------------------------------------------------------
    async def queue_message(self, message: OfflineMessage) -> None:
        """Persist ``message`` for its user and notify the user's sessions. Raises ``QueueFull``."""
        ...

    async def pending_messages(self, user_id: str) -> list[OfflineMessage]:
        """The user's undelivered, unexpired messages, oldest first."""
        ...

    async def mark_delivered(self, user_id: str, message_id: str) -> bool:
        """A connection of the user acknowledged the message; False if it names none waiting."""
        ...

    async def messages(self, user_id: str, *, limit: int) -> list[OfflineMessage]:
        """The user's messages with their delivery status, newest first."""
        ...

    async def drop_expired(self) -> int:
        """Delete expired messages; return how many of them were never delivered."""
        ...
