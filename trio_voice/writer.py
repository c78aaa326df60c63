"""The only writer of a session's events: events in, through the protocol's connection object, frames out.

Every event of a session reaches its client through :func:`send_task`, by way of an unbuffered channel:
when a sender's ``send`` returns, the writer holds the event; when it is cancelled, the event was never
taken. The writer numbers nothing itself: ``codec.ServerConnection`` owns ``seq`` and checks each reply's
lifecycle, so a bug that would send a reply event after its ``response.done`` fails loudly instead.

The writer does not write to a socket: it appends each numbered frame to the session's
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

__all__ = ["CloseConnection", "Outgoing", "deliver_task", "emitter", "frame_for", "send_task"]

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


async def send_task(
    out_rx: trio.MemoryReceiveChannel[Outgoing | CloseConnection],
    connection: codec.ServerConnection,
    outbox: Outbox,
    *,
    tap: Tap | None = None,
    on_sent: Callable[[Any, float], None] | None = None,
) -> None:
    """Number every event and keep it in the outbox, in order, until the channel closes.

    ``tap(event)`` sees each event once it is numbered (the session's recording listens here, so it
    records exactly what was sent); ``on_sent(event, time)`` hears it too (the echo guard's record of
    reply audio: while a connection is attached, frames are written as they are kept). Raises
    ``LocalProtocolError`` for an event the protocol forbids: a bug, which ends the session.
    """
    async with out_rx:
        async for item in out_rx:
            if isinstance(item, CloseConnection):
                outbox.close(item)
                continue
            frame = frame_for(connection, item)
            # The tap hears the event before any connection can see it: a client that reacts to it (say,
            # stops the recording) must find it already recorded.
            if tap is not None:
                await tap(item.event)
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
