"""The only writer of a session's events: events in, through the session's wire protocol, frames out.

Every event of a session reaches its client through :func:`send_task`, by way of an unbuffered channel:
when a sender's ``send`` returns, the writer holds the event; when it is cancelled, the event was never
taken. The writer numbers and checks nothing itself: the session's wire renders each event (``Wire.render``)
through the protocol's connection object (``codec.ServerConnection`` owns ``seq``, the realtime
``RealtimeConnection`` its event ids), which checks each reply's lifecycle, so a bug that would send a
reply event after its ``response.done`` fails loudly instead. One event may become several frames (a
realtime ``response.done`` is preceded by the ``*.done`` events of its parts); they are kept in order.

The writer does not write to a socket: it appends each frame to the session's
:class:`~trio_voice.outbox.Outbox`, and :func:`deliver_task`, run by whichever connection is attached,
writes them out in order. So a session goes on while its connection is gone (see ``trio_voice.outbox``),
and its ``seq`` goes on across a resume.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import attrs
import trio
from trio_websocket import ConnectionClosed, WebSocketConnection

from . import codec, events
from .codec.codes import ReplyStatus
from .outbox import Attachment, CloseConnection, Outbox
from .replay import Frame

__all__ = [
    "CloseConnection",
    "Outgoing",
    "Render",
    "deliver_task",
    "emitter",
    "frame_for",
    "numbered",
    "send_task",
]

# Seconds a closing handshake may take before the connection is dropped.
CLOSE_TIMEOUT = 2.0

Tap = Callable[[Any], Awaitable[None]]


@attrs.frozen
class Outgoing:
    """An event on its way to the socket, with the client ``request_id`` that caused it."""

    event: Any
    request_id: str | None = None


def emitter(
    out_tx: trio.MemorySendChannel[Outgoing | CloseConnection], request_id: str | None
) -> Callable[[Any], Awaitable[None]]:
    """An ``emit(event)`` that sends through the writer, echoing ``request_id`` on every event."""

    async def emit(event: Any) -> None:
        await out_tx.send(Outgoing(event, request_id))

    return emit


def frame_for(connection: codec.ServerConnection, item: Outgoing) -> Frame:
    """Number and render one event as the session's next frame.

    Raises:
        LocalProtocolError: the event breaks a protocol rule (see ``codec.ServerConnection``).
    """
    event = item.event
    text = connection.send(event, request_id=item.request_id)
    done = None
    if isinstance(event, events.ReplyDone) and event.status == ReplyStatus.COMPLETED:
        done = (event.response_id, event.text)
    return Frame(connection.seq, codec.event_type(event), text, done)


#: How a session's events become its frames, in order (``Wire.render``; :func:`numbered` for protocol v1).
Render = Callable[[Outgoing], list[Frame]]


def numbered(connection: codec.ServerConnection) -> Render:
    """Protocol v1's rendering: one frame per event, numbered by ``connection`` (see :func:`frame_for`)."""
    return lambda item: [frame_for(connection, item)]


async def send_task(
    out_rx: trio.MemoryReceiveChannel[Outgoing | CloseConnection],
    render: Render,
    outbox: Outbox,
    *,
    tap: Tap | None = None,
    on_sent: Callable[[Any, float], None] | None = None,
) -> None:
    """Render every event and keep its frames in the outbox, in order, until the channel closes.

    ``render`` is the session wire's (``Wire.render``, or :func:`numbered` for a protocol v1 stream).
    ``tap(event)`` sees each event once it is rendered (the session's recording listens here, so it
    records exactly what was sent); ``on_sent(event, time)`` hears it too (the echo guard's record of
    reply audio: while a connection is attached, frames are written as they are kept). Raises
    ``LocalProtocolError`` for an event the protocol forbids: a bug, which ends the session.
    """
    async with out_rx:
        async for item in out_rx:
            if isinstance(item, CloseConnection):
                outbox.close(item)
                continue
            frames = render(item)
            # The tap hears the event before any connection can see it: a client that reacts to it (say,
            # stops the recording) must find it already recorded.
            if tap is not None:
                await tap(item.event)
            for frame in frames:
                await outbox.append(frame)
            if on_sent is not None:
                on_sent(item.event, trio.current_time())


async def deliver_task(ws: WebSocketConnection, outbox: Outbox, attachment: Attachment) -> bool:
    """Write the outbox's frames to ``ws`` from ``attachment``'s cursor on, until detached or closed.

    Returns True when it closed the connection on the session's request (a ``CloseConnection``), False
    when the connection broke or ``attachment`` was replaced by a newer connection. Detaches ``attachment``
    either way.
    """
    try:
        while True:
            item = await outbox.next_frame(attachment)
            if item is None:
                return False
            if isinstance(item, CloseConnection):
                with trio.move_on_after(CLOSE_TIMEOUT):
                    try:
                        await ws.aclose(item.code, item.reason)
                    except ConnectionClosed:
                        pass
                outbox.closed(attachment)
                return True
            try:
                await ws.send_message(item.text)
            except ConnectionClosed:
                return False
            outbox.written(attachment, item.seq)
    finally:
        outbox.detach(attachment)
