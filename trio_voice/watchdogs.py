"""A session's watchers: graceful shutdown, and the heartbeat that finds a connection whose client vanished."""

from __future__ import annotations

import logging

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection

from .codec import codes
from .codec.codes import CancelReason
from .lifecycle import Shutdown
from .session_context import SessionContext

logger = logging.getLogger(__name__)


async def shutdown_task(shutdown: Shutdown, *, ctx: SessionContext) -> None:
    """Graceful shutdown, as this session sees it: finish the running reply, then close with 1001.

    New requests are refused from the moment the server drains (``SessionContext.request_turn``). When
    the server's grace period ends first (``closing``), the running reply is cancelled with reason
    ``shutdown`` and a request still waiting is dropped; the reply's ``response.done`` still goes out
    before the close.
    """
    await shutdown.draining.wait()
    turns = ctx.state.turns
    async with trio.open_nursery() as race:

        async def cancel_at_closing() -> None:
            await shutdown.closing.wait()
            turns.discard_pending()
            turns.cancel(CancelReason.SHUTDOWN)

        race.start_soon(cancel_at_closing)
        await turns.wait_idle()
        race.cancel_scope.cancel()
    await ctx.close(codes.CLOSE_GOING_AWAY, "server shutting down")


async def wait_heartbeat_lost(ws: WebSocketConnection, *, interval: float) -> None:
    """Ping every ``interval`` seconds; return once the peer has not answered within one interval (its
    network is gone without a word: the session then waits for a resume), or the connection closed."""
    while True:
        await trio.sleep(interval)
        with trio.move_on_after(interval) as waiting:
            try:
                await ws.ping()
            except ConnectionClosed:
                return
        if waiting.cancelled_caught:
            return
