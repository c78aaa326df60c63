"""Where sessions live: a server-level nursery that outlives connections, and how a connection finds one.

A session is no longer its connection's child. :class:`SessionHost` owns the nursery every session runs
in (``run_session``, started by ``trio_voice.session.open_session``), so a session can outlive a dropped
connection for ``resume_ttl`` seconds; connections attach to a session and detach from it
(``trio_voice.session_link``). :meth:`SessionHost.resume` is the one way a connection takes over a session
that is waiting for its client: it checks the request against the session's route in the shared state
(``trio_voice.shared``: where it lives, the digest of its resume token, its user) and attaches.

::

    serve(config)
    ├── SessionHost nursery                     sessions, each until it ends (not until its connection does)
    │   └── run_session(...)                    trio_voice.session
    └── WebSocket listener                      one serve_connection per connection (trio_voice.session_link)

Resource handling: the host never holds a session's objects longer than the session runs (``live`` drops
them as each ends); the route stays in the shared state as a tombstone, so a late resume learns why.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable
from functools import partial
from typing import TYPE_CHECKING, Any

import attrs
import trio

from .auth import Identity
from .codec import SessionResume
from .codec.codes import ResumeFailure
from .config import Config
from .engines import Engines
from .lifecycle import SessionRegistry, Shutdown
from .outbox import Attachment, Outbox
from .recording import RecordingBudget
from .replay import ReplayGap
from .shared import SharedState
from .telemetry import Telemetry

if TYPE_CHECKING:
    from .session_context import SessionContext
    from .session_state import SessionState
    from .turn_control import TurnHandle
    from .wire import Wire


def token_digest(token: str) -> str:
    """What the shared state keeps of a resume token: its SHA-256, never the token itself."""
    return hashlib.sha256(token.encode()).hexdigest()


class ResumeRefused(Exception):
    """A ``session.resume`` that cannot be honoured; ``reason`` is a ``ResumeFailure``, and
    ``instance_id`` names the instance to go to when the reason is ``wrong_instance``."""

    def __init__(self, reason: ResumeFailure, message: str, *, instance_id: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.instance_id = instance_id


@attrs.frozen(kw_only=True)
class Services:
    """What every session of a server shares, built once at start-up."""

    engines: Engines
    config: Config
    telemetry: Telemetry
    sessions: SessionRegistry  # WebSocket sessions by id, for /v1/sessions and the shutdown
    shutdown: Shutdown
    shared: SharedState
    replies: dict[str, TurnHandle]  # running replies by response_id, for the HTTP reply controls
    recordings: RecordingBudget | None = None


@attrs.define(eq=False)
class LiveSession:
    """A running session, as its host and its connections see it."""

    state: SessionState
    outbox: Outbox
    resume_token: str | None  # None: no resume offered (resume_ttl 0, or a wire without one)
    wire: Wire  # the protocol its client speaks (its receiver and writer share it)
    ctx: SessionContext | None = None
    scope: trio.CancelScope = attrs.field(factory=trio.CancelScope)  # the session nursery's
    ended: trio.Event = attrs.field(factory=trio.Event)
    end_reason: str | None = None

    @property
    def ending(self) -> bool:
        return self.end_reason is not None

    def connected(self, connected: bool) -> None:
        """A connection detached (dropped) or attached again: the session's presence says so."""
        self.state.connected = connected
        self.state.user.set_connected(connected)

    def end(self, reason: str) -> None:
        """End the session now: its reply is cancelled (``client_disconnected``), its tasks stop."""
        if self.end_reason is None:
            self.end_reason = reason
        self.scope.cancel()


class SessionHost:
    """The server's sessions: the nursery they run in, and the live ones by id."""

    def __init__(self, nursery: trio.Nursery, services: Services) -> None:
        self._nursery = nursery
        self.services = services
        self.live: dict[str, LiveSession] = {}
        self.streams: dict[str, Any] = {}  # streamed replies by stream id (trio_voice.http.hosted)

    async def start(self, run: Callable[..., Awaitable[None]], **kwargs: Any) -> Any:
        """Start ``run(host=self, **kwargs)`` in the host's nursery; return what it passes to ``started``.

        Used by ``trio_voice.session.open_session`` (a fresh session for a new connection) and by the
        HTTP streams, whose replies outlive their requests in the same way.
        """
        return await self._nursery.start(partial(run, host=self, **kwargs))

    async def resume(self, request: SessionResume, identity: Identity) -> tuple[LiveSession, Attachment, int]:
        """Attach a new connection to the waiting session ``request`` names, from ``request.last_seq`` on.

        Returns the session, the new connection's attachment and how many events it will replay. A
        connection still attached to the session is detached (its connection is closed).

        Raises:
            ResumeRefused: with the reason the client gets in ``resume_failed``.
        """
        shared = self.services.shared
        if self.services.config.resume_ttl <= 0:
            raise ResumeRefused(ResumeFailure.RESUME_DISABLED, "this server keeps no session for a resume")
        route = await shared.get_route(request.session_id)
        if route is None:
            raise ResumeRefused(ResumeFailure.UNKNOWN_SESSION, f"no session {request.session_id!r}")
        if not hmac.compare_digest(token_digest(request.resume_token), route.token_digest):
            raise ResumeRefused(ResumeFailure.INVALID_TOKEN, "the resume_token is not that session's")
        if route.ended is not None:
            reason = (
                ResumeFailure.SESSION_EXPIRED if route.ended == "expired" else ResumeFailure.SESSION_CLOSED
            )
            raise ResumeRefused(reason, f"session {request.session_id} has ended ({route.ended})")
        if identity.user_id is not None and route.user_id not in (None, identity.user_id):
            raise ResumeRefused(ResumeFailure.USER_MISMATCH, "that session belongs to another user")
        if route.instance_id != shared.instance_id:
            # Behind a load balancer the client reached another instance than the one holding the
            # session (sessions do not move): say which one, so it reconnects with ?instance=ID.
            raise ResumeRefused(
                ResumeFailure.WRONG_INSTANCE,
                f"session {request.session_id} is held by instance {route.instance_id}; "
                f"reconnect to /v1/voice?instance={route.instance_id}",
                instance_id=route.instance_id,
            )
        live = self.live.get(request.session_id)
        if live is None or live.ending:
            raise ResumeRefused(ResumeFailure.SESSION_EXPIRED, f"session {request.session_id} has ended")
        try:
            missed = live.outbox.log.check_resume(request.last_seq)
            attachment = live.outbox.attach(request.last_seq)
        except ReplayGap as gap:
            raise ResumeRefused(ResumeFailure(gap.reason), str(gap)) from None
        return live, attachment, missed
