"""One WebSocket connection attached to a session: its frames in, the session's outbox out, resumes.

Every accepted connection gets a fresh session (``session.created`` is its first event, as always). If
the client's first message is ``session.resume`` and the session it names can be resumed, the fresh
session says ``session.resumed`` (its last event) and ends, and the connection is attached to the named
session from the client's ``last_seq`` on: it first receives the events it missed, then the live stream,
``seq`` continuing. If not, the client gets ``error`` ``resume_failed`` with the reason, and the fresh
session goes on. ::

    serve_connection(ws)              the connection handler's task (trio-websocket's handler nursery)
    └── attached(...)                 one nursery per session the connection is attached to
        ├── deliver_task              the session's outbox → ws, from the cursor (trio_voice.writer)
        ├── heartbeat                 a peer that stops answering pings is gone (trio_voice.watchdogs)
        └── receive_task              ws → the session (trio_voice.receive), in this task

How the connection ends decides the session's fate: a close frame from the client ends the session at
once (its reply cancelled, ``client_disconnected``); a connection that breaks without one (a dropped
network, no answer to pings) only detaches, and the session waits ``resume_ttl`` seconds for a resume.
A session whose wire offers no resume (``/v1/realtime``: the API has no ``seq``) ends with its
connection, however it ends; ``session.resume`` is a message of ``/v1/voice`` only.
"""

from __future__ import annotations

import logging

import attrs
import trio
from trio_websocket import ConnectionClosed, WebSocketConnection

from . import codec
from .auth import Identity
from .codec import codes
from .errors import TrioVoiceError
from .events import ErrorEvent, SessionResumed
from .outbox import Attachment
from .receive import Lost, receive_task
from .session import open_session
from .session_host import LiveSession, ResumeRefused, SessionHost
from .watchdogs import wait_heartbeat_lost
from .wire import Wire
from .writer import Outgoing, deliver_task

logger = logging.getLogger(__name__)

# Seconds a refused session start may take to tell the client why.
LAST_WORDS_TIMEOUT = 1.0
# The close code and reason of a connection whose session was resumed on another one.
REPLACED_CLOSE = (codes.CLOSE_NORMAL, "session resumed on another connection")


@attrs.frozen
class Switch:
    """The connection resumed another session: attach to ``live`` with ``attachment`` next."""

    live: LiveSession
    attachment: Attachment


async def serve_connection(
    ws: WebSocketConnection, *, host: SessionHost, identity: Identity, wire: Wire
) -> None:
    """Serve one accepted connection until it closes, or breaks (its session then waits for a resume).
    ``wire`` is the protocol the connection speaks: its fresh session's.

    Raises:
        TrioVoiceError: the session could not start (after the client was told, as seq 1).
    """
    try:
        live, attachment = await open_session(host, identity, wire)
    except TrioVoiceError as exc:
        await _refuse(ws, wire, exc)
        raise
    first = True
    while True:
        outcome = await attached(ws, live, attachment, host=host, identity=identity, may_resume=first)
        first = False
        if isinstance(outcome, Switch):
            live.end("replaced")  # the fresh session: it said session.resumed, nothing else ran
            live, attachment = outcome.live, outcome.attachment
            host.services.telemetry.resume("resumed")
            continue
        if isinstance(outcome, Lost) and (outcome.clean or not live.wire.resumable):
            live.end("closed")
        elif attachment.replaced:
            with trio.move_on_after(LAST_WORDS_TIMEOUT):
                try:
                    await ws.aclose(*REPLACED_CLOSE)
                except ConnectionClosed:
                    pass
        elif isinstance(outcome, Lost):
            logger.info("session %s: connection lost; waiting for a resume", live.state.session_id)
        return


async def attached(
    ws: WebSocketConnection,
    live: LiveSession,
    attachment: Attachment,
    *,
    host: SessionHost,
    identity: Identity,
    may_resume: bool,
) -> Switch | Lost | None:
    """Serve ``ws`` attached to ``live`` until the connection ends, is replaced, or switches sessions.

    Returns a ``Switch`` (resume another session), ``Lost`` (the connection ended; ``clean`` when the
    client sent a close frame), or None (the session closed the connection, or another took it over).
    """
    assert live.ctx is not None
    ctx = live.ctx
    outcome: Switch | Lost | None = None

    async def on_resume(request: codec.SessionResume) -> Switch | None:
        """The first message was session.resume: switch to that session, or say why not."""
        try:
            target, new_attachment, missed = await host.resume(request, identity)
        except ResumeRefused as refused:
            host.services.telemetry.resume(refused.reason)
            ctx.telemetry.error(codes.RESUME_FAILED)
            error = ErrorEvent(
                codes.RESUME_FAILED, str(refused), reason=refused.reason, instance_id=refused.instance_id
            )
            await ctx.send(error, request.request_id)
            return None
        state = target.state
        await ctx.send(
            SessionResumed(state.session_id, state.conversation_id, request.last_seq, missed),
            request.request_id,
        )

        # session.resumed must reach this client before the resumed session's first event does. (The
        # writer may not have appended it yet when send returns: wait for the frame, then its write.)
        def written() -> bool:
            seq = live.outbox.log.newest_of("session.resumed")
            return not attachment.current or (seq is not None and attachment.cursor >= seq)

        await live.outbox.wait_for(written)
        logger.info("session %s resumed from seq %d (%d missed)", state.session_id, request.last_seq, missed)
        return Switch(target, new_attachment)

    async with trio.open_nursery() as conn:

        async def deliver() -> None:
            nonlocal outcome
            if not await deliver_task(ws, live.outbox, attachment) and not attachment.replaced:
                outcome = Lost.of(ws)  # the connection broke (or closed) under a write
            conn.cancel_scope.cancel()

        async def heartbeat(interval: float) -> None:
            nonlocal outcome
            await wait_heartbeat_lost(ws, interval=interval)
            logger.info("session %s: no pong within %.0f s", live.state.session_id, interval)
            outcome = Lost(clean=False)
            conn.cancel_scope.cancel()
            with trio.move_on_after(LAST_WORDS_TIMEOUT):
                await ws.aclose(codes.CLOSE_GOING_AWAY, "heartbeat timeout")

        async def session_ended() -> None:
            await live.ended.wait()
            with trio.move_on_after(LAST_WORDS_TIMEOUT):  # its last frames, if any, go out first
                await live.outbox.wait_for(lambda: not attachment.current)
            conn.cancel_scope.cancel()

        conn.start_soon(deliver)
        conn.start_soon(session_ended)
        if host.services.config.heartbeat_interval > 0:
            conn.start_soon(heartbeat, host.services.config.heartbeat_interval)
        try:
            outcome = await receive_task(
                ws, ctx=ctx, wire=live.wire, on_resume=on_resume if may_resume else None
            )
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            if not live.ended.is_set():
                raise  # the session's channels closed under a live session: a bug
        conn.cancel_scope.cancel()
    return outcome


async def _refuse(ws: WebSocketConnection, wire: Wire, exc: TrioVoiceError) -> None:
    """Tell the client why no session could start (its only event, seq 1), in ``wire``'s protocol."""
    logger.error("session not started: %s: %s", exc.code, exc)
    with trio.move_on_after(LAST_WORDS_TIMEOUT):
        try:
            for frame in wire.render(Outgoing(ErrorEvent(exc.code, exc.message))):
                await ws.send_message(frame.text)
        except ConnectionClosed:
            pass
