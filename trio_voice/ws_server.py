"""The WebSocket listener: ``ws://HOST:PORT/v1/voice``, one ``serve_connection`` per accepted connection.

This is the connection boundary, the one place that catches broadly: a closed connection is a normal
end, and anything unexpected is logged with its traceback and ends that connection only (close code
1011). Sessions have their own boundary in ``trio_voice.session`` (they live in the session host).
"""

from __future__ import annotations

import logging
from functools import partial

import trio
from trio_websocket import ConnectionClosed, WebSocketRequest

from . import codec
from .admission import refusal
from .auth import identify, origin_allowed
from .events import ErrorEvent
from .handoff import serve_voice_listener
from .session_host import SessionHost
from .session_link import serve_connection

logger = logging.getLogger(__name__)

VOICE_PATH = "/v1/voice"
# Frames up to this many times max_frame_bytes are read and refused with an ``error`` (the session goes
# on); larger ones make trio-websocket close the connection with 1009.
HARD_FRAME_FACTOR = 4


async def serve_voice(
    host: SessionHost,
    *,
    handler_nursery: trio.Nursery | None = None,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Accept voice connections until cancelled; ``task_status.started(port)`` once listening."""
    config, telemetry, sessions = host.services.config, host.services.telemetry, host.services.sessions

    async def handle(request: WebSocketRequest) -> None:
        path, _, query = request.path.partition("?")
        if path != VOICE_PATH:
            await request.reject(404, body=f"no endpoint here; connect to {VOICE_PATH}".encode())
            return
        identity = identify(config, request.headers, query)
        if identity is None:
            telemetry.error("unauthorized")
            await request.reject(401, body=b"missing or wrong token")
            return
        if not origin_allowed(config, request.headers):
            telemetry.error("origin_not_allowed")
            await request.reject(403, body=b"origin not allowed")
            return
        ws = await request.accept()
        refused = refusal(
            open_sessions=len(sessions),
            max_sessions=config.max_sessions,
            waits=telemetry.recent_waits,
            max_wait_ms=config.admission_queue_wait_ms,
        )
        if refused is not None:
            telemetry.error(codec.codes.SERVER_FULL)
            event = ErrorEvent(
                codec.codes.SERVER_FULL, refused.message, retry_after_ms=refused.retry_after_ms
            )
            try:
                await ws.send_message(codec.ServerConnection().send(event))
                await ws.aclose(codec.codes.CLOSE_TRY_AGAIN_LATER, "server full, try again later")
            except ConnectionClosed:
                pass
            return
        try:
            await serve_connection(ws, host=host, identity=identity)
        except* ConnectionClosed:
            pass
        except* Exception:
            logger.exception("connection ended by an unexpected error")
            with trio.move_on_after(1):
                try:
                    await ws.aclose(1011, "internal error")
                except ConnectionClosed:
                    pass

    async with trio.open_nursery() as nursery:
        port = await nursery.start(
            partial(
                serve_voice_listener,  # a plain TCP listener, or a worker's (trio_voice.handoff)
                handle,
                config,
                handler_nursery=handler_nursery,
                max_message_size=config.max_frame_bytes * HARD_FRAME_FACTOR,
            )
        )
        task_status.started(port)
