"""A streamed reply as a session of one turn in the session host: it outlives its HTTP request, so a client
whose connection drops can resume it with ``Last-Event-ID``.

``POST /v1/chat/stream`` starts :func:`run_stream` in the server's ``SessionHost`` and attaches the
request to it; the request then only writes the stream's frames (:func:`deliver`). When the client hangs
up, the request detaches and the reply goes on for ``resume_ttl`` seconds, its events kept in the same
bounded replay log a WebSocket session uses; a ``GET`` with ``Last-Event-ID: <stream id>:<seq>``
attaches again from that ``seq``. When the TTL passes first, the reply is cancelled
(``client_disconnected``) and stored as what was sent. ::

    SessionHost nursery
    └── run_stream(...)               until the reply is done and delivered, or its client stays away
        ├── send_task                 events → codec.ServerConnection → the outbox (trio_voice.writer)
        └── reply                     run_one_turn, the very function WebSocket sessions use

The stream id is unguessable (it is the resume credential: it goes only to the client that started the
stream) and only its SHA-256 is kept in the shared state's route, as for a session's resume token.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from typing import Any

import attrs
import trio

from trio_voice import codec
from trio_voice.codec.codes import ResumeFailure
from trio_voice.converse import run_one_turn
from trio_voice.ids import new_id
from trio_voice.outbox import Attachment, CloseConnection, Outbox, wait_for_end
from trio_voice.replay import Frame, ReplayGap, ReplayLog
from trio_voice.session_host import ResumeRefused, SessionHost, token_digest
from trio_voice.session_state import SessionState
from trio_voice.shared import SessionRoute
from trio_voice.turn_control import PendingTurn, TurnControl, TurnHandle, TurnKind
from trio_voice.writer import Outgoing, emitter, numbered, send_task

from .app import Request

logger = logging.getLogger(__name__)

# Seconds a store write for the route of an ending stream may take.
ROUTE_TIMEOUT = 1.0
# The close that ends a stream's body after its last frame (not a WebSocket code: a marker).
END_OF_STREAM = CloseConnection(1000, "reply done")

Render = Callable[[Frame, str], bytes]


@attrs.define(eq=False)
class LiveStream:
    stream_id: str  # secret: the resume credential
    state: SessionState
    handle: TurnHandle
    outbox: Outbox
    ended: trio.Event = attrs.field(factory=trio.Event)


async def run_stream(
    *,
    host: SessionHost,
    text: str,
    conversation_id: str,
    instructions: str,
    audio: bool,
    task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED,
) -> None:
    """One streamed reply; ``task_status.started((live, attachment))`` once the request may attach."""
    services = host.services
    config, shared = services.config, services.shared
    state = SessionState(
        session_id=new_id("http"),
        conversation_id=conversation_id,
        instructions=instructions,
        output_audio=audio,
        turns=TurnControl(services.replies),
    )
    # One request is one turn, and this task its owner.
    handle = state.turns.start(PendingTurn(TurnKind.CHAT, text, None, trio.current_time()), new_id("resp"))
    log = ReplayLog(max_frames=config.replay_buffer_events, max_bytes=config.replay_buffer_bytes)
    live = LiveStream(f"strm_{secrets.token_urlsafe(24)}", state, handle, Outbox(log))
    resumable = config.resume_ttl > 0
    if resumable:
        await shared.put_route(SessionRoute(live.stream_id, shared.instance_id, token_digest(live.stream_id)))
    host.streams[live.stream_id] = live
    how = "closed"
    try:  # the stream's boundary: whatever happens here ends this stream only, never the host
        async with trio.open_nursery() as nursery:
            out_tx, out_rx = trio.open_memory_channel[Outgoing | CloseConnection](0)
            nursery.start_soon(send_task, out_rx, numbered(codec.ServerConnection()), live.outbox)

            async def reply() -> None:
                try:
                    async with out_tx:
                        await run_one_turn(
                            handle,
                            emit=emitter(out_tx, None),
                            engines=services.engines,
                            config=config,
                            telemetry=services.telemetry,
                            state=state,
                        )
                finally:
                    state.turns.finish(handle)
                live.outbox.close(END_OF_STREAM)  # the body ends after the last frame is written

            nursery.start_soon(reply)
            task_status.started((live, live.outbox.attach(0)))
            how = await wait_for_end(live.outbox, ttl=config.resume_ttl, closes_when_detached=False)
            nursery.cancel_scope.cancel()  # past the TTL: the reply, if still running, is cancelled
    except* Exception:
        logger.exception("stream of %s ended by an unexpected error", handle.response_id)
        live.outbox.close(END_OF_STREAM)
    finally:
        host.streams.pop(live.stream_id, None)
        live.ended.set()
        if how == "expired":
            logger.info("stream of %s: no resume within %g s", handle.response_id, config.resume_ttl)
        if resumable:
            with trio.CancelScope(shield=True), trio.move_on_after(ROUTE_TIMEOUT):
                await shared.end_route(live.stream_id, how)


async def resume_stream(host: SessionHost, stream_id: str, last_seq: int) -> tuple[LiveStream, Attachment]:
    """Attach a resuming request to stream ``stream_id`` from ``last_seq`` on.

    Raises:
        ResumeRefused: with the reason the client gets.
    """
    shared = host.services.shared
    if host.services.config.resume_ttl <= 0:
        raise ResumeRefused(ResumeFailure.RESUME_DISABLED, "this server keeps no stream for a resume")
    route = await shared.get_route(stream_id)
    if route is None or route.token_digest != token_digest(stream_id):
        raise ResumeRefused(ResumeFailure.UNKNOWN_SESSION, "no such stream")
    if route.ended is not None:
        reason = ResumeFailure.SESSION_EXPIRED if route.ended == "expired" else ResumeFailure.SESSION_CLOSED
        raise ResumeRefused(reason, f"the stream has ended ({route.ended})")
    live = host.streams.get(stream_id)
    if live is None:
        raise ResumeRefused(ResumeFailure.SESSION_EXPIRED, "the stream has ended")
    try:
        return live, live.outbox.attach(last_seq)
    except ReplayGap as gap:
        raise ResumeRefused(ResumeFailure(gap.reason), str(gap)) from None


async def deliver(request: Request, live: LiveStream, attachment: Attachment, render: Render) -> None:
    """Write the stream's frames to the response body from ``attachment``'s cursor, until the reply's
    last frame (then end the body) or the client hangs up (then detach: the reply goes on)."""
    outbox = live.outbox
    async with trio.open_nursery() as nursery:

        async def watch_disconnect() -> None:
            while (await request.receive())["type"] != "http.disconnect":
                pass
            outbox.detach(attachment)
            nursery.cancel_scope.cancel()

        nursery.start_soon(watch_disconnect)
        try:
            while True:
                item = await outbox.next_frame(attachment)
                if item is None:
                    break  # another request resumed this stream
                if isinstance(item, CloseConnection):
                    await request.write(b"", more=False)
                    outbox.closed(attachment)
                    break
                await request.write(render(item, live.stream_id))
                outbox.written(attachment, item.seq)
        finally:
            outbox.detach(attachment)
        nursery.cancel_scope.cancel()
