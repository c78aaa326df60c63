"""The WebSocket listener: ``ws://HOST:PORT/v1/voice`` and ``/v1/realtime``, one ``serve_connection`` each.

Both paths share everything (authentication, origins, the session limit, the session core); the path
picks the session's wire protocol: trio-voice's own (``/v1/voice``) or the OpenAI Realtime API
(``/v1/realtime?model=…``, the GA dialect unless the handshake says ``OpenAI-Beta: realtime=v1``).

This is the connection boundary, the one place that catches broadly: a closed connection is a normal
end, and anything unexpected is logged with its traceback and ends that connection only (close code
1011). Sessions have their own boundary in ``trio_voice.session`` (they live in the session host).
"""

from __future__ import annotations

import logging
from functools import partial
from urllib.parse import parse_qs

import trio
from trio_websocket import ConnectionClosed, WebSocketRequest

from . import codec
from .admission import refusal
from .auth import identify, origin_allowed
from .config import Config
from .events import ErrorEvent
from .handoff import serve_voice_listener
from .native_wire import NativeWire
from .realtime import codes as realtime_codes
from .realtime_wire import RealtimeWire
from .session_host import SessionHost
from .session_link import serve_connection
from .wire import Wire
from .writer import Outgoing

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
    host: SessionHost,
    *,
    handler_nursery: trio.Nursery | None = None,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Accept voice connections until cancelled; ``task_status.started(port)`` once listening."""
    config, telemetry, sessions = host.services.config, host.services.telemetry, host.services.sessions

    async def handle(request: WebSocketRequest) -> None:
        path, _, query = request.path.partition("?")
        if path not in (VOICE_PATH, REALTIME_PATH):
            body = f"no endpoint here; connect to {VOICE_PATH} or {REALTIME_PATH}?model=…"
            await request.reject(404, body=body.encode())
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
        wire = wire_for(path, query, request.headers, config)
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
                for frame in wire.render(Outgoing(event)):
                    await ws.send_message(frame.text)
                await ws.aclose(codec.codes.CLOSE_TRY_AGAIN_LATER, "server full, try again later")
            except ConnectionClosed:
                pass
            return
        try:
            await serve_connection(ws, host=host, identity=identity, wire=wire)
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
