"""The WebSocket listener: ``ws://HOST:PORT/v1/voice`` and ``/v1/realtime``, one ``run_session`` per connection.

Both paths share everything (authentication, origins, the session limit, the session core); the path
picks the session's wire protocol: trio-voice's own (``/v1/voice``) or the OpenAI Realtime API
(``/v1/realtime?model=…``, the GA dialect unless the handshake says ``OpenAI-Beta: realtime=v1``).

This is the session boundary, the one place that catches broadly: a closed connection is a normal end,
and anything unexpected is logged with its traceback and ends that session only (close code 1011).
"""

from __future__ import annotations

import logging
from functools import partial
from urllib.parse import parse_qs

import trio
from trio_websocket import ConnectionClosed, WebSocketRequest, serve_websocket

from . import codec
from .auth import is_authorized, origin_allowed
from .config import Config
from .engines import Engines
from .events import ErrorEvent
from .lifecycle import SessionRegistry, Shutdown
from .native_wire import NativeWire
from .realtime import codes as realtime_codes
from .realtime_wire import RealtimeWire
from .session import run_session
from .telemetry import Telemetry
from .wire import Wire

logger = logging.getLogger(__name__)

VOICE_PATH = "/v1/voice"
REALTIME_PATH = "/v1/realtime"
# The model a realtime session reports when the client names none (the SDK always names one).
DEFAULT_REALTIME_MODEL = "trio-voice"
MAX_MODEL_CHARS = 128  # the model name is echoed in every session object: keep it short
# Frames up to this many times max_frame_bytes are read and refused with an ``error`` (the session goes
# on); larger ones make trio-websocket close the connection with 1009.
HARD_FRAME_FACTOR = 4


async def serve_voice(
    config: Config,
    engines: Engines,
    telemetry: Telemetry,
    sessions: SessionRegistry,
    shutdown: Shutdown,
    *,
    handler_nursery: trio.Nursery | None = None,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Accept voice sessions until cancelled; ``task_status.started(port)`` once listening."""

    async def handle(request: WebSocketRequest) -> None:
        path, _, query = request.path.partition("?")
        if path not in (VOICE_PATH, REALTIME_PATH):
            body = f"no endpoint here; connect to {VOICE_PATH} or {REALTIME_PATH}?model=…"
            await request.reject(404, body=body.encode())
            return
        if not is_authorized(config, request.headers, query):
            telemetry.error("unauthorized")
            await request.reject(401, body=b"missing or wrong token")
            return
        if not origin_allowed(config, request.headers):
            telemetry.error("origin_not_allowed")
            await request.reject(403, body=b"origin not allowed")
            return
        wire = wire_for(path, query, request.headers, config)
        ws = await request.accept()
        if len(sessions) >= config.max_sessions:
            telemetry.error(codec.codes.SERVER_FULL)
            event = ErrorEvent(
                codec.codes.SERVER_FULL, f"the server is at its limit of {config.max_sessions} sessions"
            )
            try:
                for text in wire.render(event, None):
                    await ws.send_message(text)
                await ws.aclose(codec.codes.CLOSE_TRY_AGAIN_LATER, "server full, try again later")
            except ConnectionClosed:
                pass
            return
        try:
            await run_session(
                ws,
                engines=engines,
                config=config,
                telemetry=telemetry,
                sessions=sessions,
                shutdown=shutdown,
                wire=wire,
            )
        except* ConnectionClosed:
            pass
        except* Exception:
            logger.exception("session ended by an unexpected error")
            with trio.move_on_after(1):
                try:
                    await ws.aclose(1011, "internal error")
                except ConnectionClosed:
                    pass

    async with trio.open_nursery() as nursery:
        server = await nursery.start(
            partial(
                serve_websocket,
                handle,
                config.host,
                config.ws_port,
                None,
                handler_nursery=handler_nursery,
                max_message_size=config.max_frame_bytes * HARD_FRAME_FACTOR,
            )
        )
        task_status.started(server.port)


def wire_for(path: str, query: str, headers: list[tuple[bytes, bytes]], config: Config) -> Wire:
    """The wire protocol of a new session on ``path`` (one of the two endpoints)."""
    if path == VOICE_PATH:
        return NativeWire(max_text_chars=config.max_text_chars)
    models = parse_qs(query).get("model")
    pairs = [(name.decode("latin-1"), value.decode("latin-1")) for name, value in headers]
    return RealtimeWire(
        model=models[0][:MAX_MODEL_CHARS] if models else DEFAULT_REALTIME_MODEL,
        dialect=realtime_codes.dialect_for(pairs),
        max_text_chars=config.max_text_chars,
    )
