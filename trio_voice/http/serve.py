"""The HTTP listener: the ASGI app of ``trio_voice.http`` served by hypercorn's trio worker.

``serve_http`` is a ``serve_*`` function: it runs until cancelled (or until a graceful shutdown has run
its course) and reports the real bound port with ``task_status.started(port)`` (the config may ask for
port 0). On shutdown it stops accepting and gives requests in flight, such as a streamed reply,
``Config.shutdown_grace`` seconds to finish; cancelling it closes every connection at once.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from functools import partial
from typing import Any

import hypercorn.config
import hypercorn.trio
import trio

from trio_voice.config import Config
from trio_voice.engines import Engines
from trio_voice.handoff import bind_tcp
from trio_voice.lifecycle import Shutdown
from trio_voice.telemetry import Telemetry

from . import recordings, replies, speech, status, streaming, users
from .app import AppContext, make_app
from .static import serve_static

logger = logging.getLogger(__name__)

ROUTES = (
    *status.ROUTES,
    *streaming.ROUTES,
    *speech.ROUTES,
    *users.ROUTES,
    *replies.ROUTES,
    *recordings.ROUTES,
)
# Idle keep-alive connections are closed after this many seconds (hypercorn's default is 5).
KEEP_ALIVE_TIMEOUT = 15.0


def build_app(
    config: Config, engines: Engines, telemetry: Telemetry, sessions: Mapping[str, Any], host: Any = None
) -> Any:
    """The ASGI application (usable with any ASGI server; ``serve_http`` runs it on hypercorn).

    ``host`` is the server's ``SessionHost``: streamed replies run there (so they can be resumed), and
    the user, reply-control and recording endpoints reach the shared state through it.
    """
    return make_app(AppContext(config, engines, telemetry, sessions, host), ROUTES, fallback=serve_static)


def hypercorn_config(config: Config) -> hypercorn.config.Config:
    hc = hypercorn.config.Config()
    host = f"[{config.host}]" if ":" in config.host else config.host
    hc.bind = [f"{host}:{config.http_port}"]
    hc.accesslog = None
    hc.errorlog = logging.getLogger("hypercorn.error")  # through our logging, not hypercorn's stderr
    hc.keep_alive_timeout = KEEP_ALIVE_TIMEOUT
    if config.workers > 1:  # --workers: every worker binds the same port (SO_REUSEPORT); hypercorn gets it
        hc.bind = [f"fd://{bind_tcp(config.host, config.http_port, reuse_port=True).detach()}"]
    hc.graceful_timeout = config.shutdown_grace  # requests in flight when a shutdown starts may finish
    return hc


async def serve_http(
    config: Config,
    engines: Engines,
    telemetry: Telemetry,
    sessions: Mapping[str, Any],
    *,
    shutdown: Shutdown | None = None,
    host: Any = None,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the HTTP endpoints until cancelled, or until ``shutdown`` drains them; ``task_status.started(port)``
    once listening."""
    app = build_app(config, engines, telemetry, sessions, host)
    trigger = shutdown.draining.wait if shutdown is not None else None
    async with trio.open_nursery() as nursery:
        binds: list[str] = await nursery.start(
            partial(hypercorn.trio.serve, app, hypercorn_config(config), shutdown_trigger=trigger)
        )
        # hypercorn reports where it listens as URLs, e.g. "http://127.0.0.1:41234" or "http://[::1]:41234".
        port = int(binds[0].rpartition(":")[2])
        logger.debug("HTTP listener bound to %s", binds[0])
        task_status.started(port)
