"""One session's side of its user, as plain data: who, from where, its presence and typing, a change event.

Written by the session's own tasks (the receiver, the session lifecycle), read by ``trio_voice.presence``,
which publishes the changes; kept apart from it so ``session_state`` can hold one without importing
the tasks that use it.
"""

from __future__ import annotations

import math

import attrs
import trio


@attrs.define(eq=False)
class UserLink:
    """One session's side of its user (plain data and a change event; written by the session's tasks)."""

    user_id: str | None = None
    from_token: bool = False  # the user came with the connection's token: session.update may not change it
    client_status: str = "online"  # what the client said (presence.set)
    connected: bool = True  # False while the session waits for its client to resume
    typing: bool = False
    typing_deadline: float = math.inf  # trio time at which typing ends by itself
    sent_messages: set[str] = attrs.field(factory=set)  # offline messages sent on this session
    _changed: trio.Event = attrs.field(factory=trio.Event)

    @property
    def status(self) -> str:
        """``online``, or ``away`` when the client said so or is gone for now."""
        return self.client_status if self.connected else "away"

    def set_user(self, user_id: str, *, from_token: bool = False) -> None:
        self.user_id = user_id
        self.from_token = from_token
        self._notify()

    def set_client_status(self, status: str) -> None:
        self.client_status = status
        self._notify()

    def set_connected(self, connected: bool) -> None:
        self.connected = connected
        self._notify()

    def set_typing(self, typing: bool, deadline: float = math.inf) -> None:
        self.typing = typing
        self.typing_deadline = deadline if typing else math.inf
        self._notify()

    async def wait_changed(self) -> None:
        await self._changed.wait()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()
