"""The only writer to a session's socket: events in, through the session's wire protocol, frames out.

Every event of a session reaches the client through :func:`send_task`, by way of an unbuffered channel:
when a sender's ``send`` returns, the writer holds the event; when it is cancelled, the event was never
taken. The writer numbers and checks nothing itself: the session's wire (``Wire.render``) renders each event,
through the protocol's connection object (``codec.ServerConnection`` owns ``seq``, the realtime
``RealtimeConnection`` its event ids), which checks each reply's lifecycle, so a bug that would send a
reply event after its ``response.done`` fails loudly instead. One event may become several frames (a
realtime ``response.done`` is preceded by the ``*.done`` events of its parts); they go out in order.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import attrs
import trio
from trio_websocket import ConnectionClosed, WebSocketConnection

# Seconds a closing handshake may take before the connection is dropped.
CLOSE_TIMEOUT = 2.0


@attrs.frozen
class Outgoing:
    """An event on its way to the socket, with the client ``request_id`` that caused it."""

    event: Any
    request_id: str | None = None


@attrs.frozen
class CloseConnection:
    """Not an event: tells the writer to close the socket after everything queued before it."""

    code: int
    reason: str


def emitter(
    out_tx: trio.MemorySendChannel[Outgoing | CloseConnection], request_id: str | None
) -> Callable[[Any], Awaitable[None]]:
    """An ``emit(event)`` that sends through the writer, echoing ``request_id`` on every event."""

    async def emit(event: Any) -> None:
        await out_tx.send(Outgoing(event, request_id))

    return emit


async def send_task(
    ws: WebSocketConnection,
    out_rx: trio.MemoryReceiveChannel[Outgoing | CloseConnection],
    render: Callable[[Any, str | None], list[str]],
    *,
    on_closed: Callable[[], None],
    on_sent: Callable[[Any, float], None] | None = None,
) -> None:
    """Write every event to the socket, in order, until told to close or the connection is gone.

    ``render(event, request_id)`` is the session wire's (``Wire.render``): the frames an event becomes.

    Calls ``on_closed()`` (which ends the session) when the socket closed under it or it closed it, and
    ``on_sent(event, time)`` after each event is written (the echo guard's record of reply audio).
    Raises ``LocalProtocolError`` for an event the protocol forbids: a bug, which ends the session.
    """
    async with out_rx:
        async for item in out_rx:
            if isinstance(item, CloseConnection):
                with trio.move_on_after(CLOSE_TIMEOUT):
                    try:
                        await ws.aclose(item.code, item.reason)
                    except ConnectionClosed:
                        pass
                on_closed()
                return
            try:
                for text in render(item.event, item.request_id):
                    await ws.send_message(text)
            except ConnectionClosed:
                on_closed()
                return
            if on_sent is not None:
                on_sent(item.event, trio.current_time())
