"""The server's lifecycle: the registry of live sessions, and the phases of a graceful shutdown.

Shutdown runs in two phases that every session watches:

1. *draining*: listeners stop accepting; new turns are refused (``shutting_down``); a session whose
   reply is running lets it finish, then closes with 1001;
2. *closing* (after ``Config.shutdown_grace`` seconds): every session still open cancels its reply
   (reason ``shutdown``) and closes with 1001. Then the server's nursery is cancelled, which also
   terminates the embedded LLM server.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

import attrs
import trio

if TYPE_CHECKING:
    from .session_state import SessionState


class SessionRegistry(Mapping[str, "SessionState"]):
    """Live sessions by id (read by ``/v1/sessions``), with a way to wait until none is left."""

    def __init__(self) -> None:
        self._sessions: dict[str, SessionState] = {}
        self._changed = trio.Event()

    def __getitem__(self, session_id: str) -> SessionState:
        return self._sessions[session_id]

    def __iter__(self) -> Iterator[str]:
        return iter(self._sessions)

    def __len__(self) -> int:
        return len(self._sessions)

    def add(self, state: SessionState) -> None:
        self._sessions[state.session_id] = state
        self._notify()

    def remove(self, session_id: str) -> None:
        self._sessions.pop(session_id, None)
        self._notify()

    async def wait_empty(self) -> None:
        while self._sessions:
            await self._changed.wait()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()


@attrs.define
class Shutdown:
    """The two shutdown phases as events; ``request()`` starts the first."""

    draining: trio.Event = attrs.field(factory=trio.Event)
    closing: trio.Event = attrs.field(factory=trio.Event)

    def request(self) -> None:
        self.draining.set()
