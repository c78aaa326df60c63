"""The server: one root nursery holding the listeners and the engines' background tasks.

::

    serve(config)                      root nursery
    ├── session host                   every session and streamed reply, outliving its connection
    ├── WebSocket listener             one task per connection → serve_connection (attaches to a session)
    ├── HTTP listener                  health, metrics, fallbacks, demo page (trio_voice.http)
    ├── offline sweep                  drops (and counts) offline messages that expired undelivered
    └── LLM child process              the embedded llama.cpp server, when no --llm-url is given
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import attrs
import trio

from .config import Config
from .engines import Engines
from .http import serve_http
from .lifecycle import SessionRegistry, Shutdown
from .offline import sweep_task
from .recording import RecordingBudget
from .session_host import Services, SessionHost
from .shared import SharedState, open_shared_state
from .startup import open_engines
from .telemetry import Telemetry
from .ws_server import serve_voice

logger = logging.getLogger(__name__)

# Seconds sessions get to send their last response.done and close, once the grace period is over.
CLOSING_TIMEOUT = 3.0


@attrs.frozen
class Listening:
    """Where a started server listens (ports are real even when the config asked for port 0)."""

    host: str
    ws_port: int
    http_port: int | None

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.ws_port}/v1/voice"

    @property
    def realtime_url(self) -> str:
        """The OpenAI Realtime API endpoint (add ``?model=…``)."""
        return f"ws://{self.host}:{self.ws_port}/v1/realtime"

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.http_port}"


async def serve(
    config: Config,
    *,
    engines: Engines | None = None,
    telemetry: Telemetry | None = None,
    shutdown: Shutdown | None = None,
    shared: SharedState | None = None,
    task_status: trio.TaskStatus[Listening] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the server until cancelled, or until ``shutdown`` is requested and has run its course.

    ``engines`` defaults to the real models (loaded here); ``shared`` to the one the config asks for
    (in this process, or Redis with ``redis_url``) over the engines' store. ``task_status.started(Listening(...))`` is called once every listener
    accepts connections. See ``trio_voice.lifecycle`` for the shutdown phases.
    """
    telemetry = telemetry or Telemetry()
    shutdown = shutdown or Shutdown()
    async with trio.open_nursery() as nursery:
        if engines is None:
            async with open_engines(config, nursery, telemetry) as real:
                await _serve_with(config, real, telemetry, shutdown, shared, task_status)
        else:
            await _serve_with(config, engines, telemetry, shutdown, shared, task_status)
        nursery.cancel_scope.cancel()  # the embedded LLM server, if any


async def _serve_with(
    config: Config,
    engines: Engines,
    telemetry: Telemetry,
    shutdown: Shutdown,
    shared: SharedState | None,
    task_status: trio.TaskStatus[Listening],
) -> None:
    if shared is None:
        async with open_shared_state(config, engines.store) as opened:
            await _serve_with(config, engines, telemetry, shutdown, opened, task_status)
        return
    sessions = SessionRegistry()
    recordings = None
    if config.recording == "allowed":
        recordings = await trio.to_thread.run_sync(
            RecordingBudget, config.recordings, int(config.recording_max_mb * 2**20)
        )
    services = Services(
        engines=engines,
        config=config,
        telemetry=telemetry,
        sessions=sessions,
        shutdown=shutdown,
        shared=shared,
        replies={},
        recordings=recordings,
    )
    async with trio.open_nursery() as session_nursery:
        host = SessionHost(session_nursery, services)
        session_nursery.start_soon(
            partial(sweep_task, services.shared, telemetry, interval=config.offline_sweep_interval)
        )
        async with trio.open_nursery() as listeners:
            ws_port = await listeners.start(
                partial(
                    _until_draining, shutdown, partial(serve_voice, host, handler_nursery=session_nursery)
                )
            )
            # The HTTP side tells browsers where the WebSocket really listens (the config may say port 0).
            http_config = attrs.evolve(config, ws_port=ws_port)
            http_port = await listeners.start(
                partial(serve_http, http_config, engines, telemetry, sessions, shutdown=shutdown, host=host)
            )
            listening = Listening(config.host, ws_port, http_port)
            logger.info("listening: %s and %s", listening.ws_url, listening.http_url)
            task_status.started(listening)
            await shutdown.draining.wait()
            # Both listeners stop accepting now; HTTP requests in flight get the same grace (hypercorn's own).
            logger.info(
                "shutting down: no new connections; %d session(s) finishing their replies", len(sessions)
            )
            with trio.move_on_after(config.shutdown_grace):
                await sessions.wait_empty()
            shutdown.closing.set()
            with trio.move_on_after(CLOSING_TIMEOUT):
                await sessions.wait_empty()
        session_nursery.cancel_scope.cancel()


async def _until_draining(
    shutdown: Shutdown, serve_fn: Callable[..., Awaitable[None]], *, task_status: trio.TaskStatus[Any]
) -> None:
    """Run a ``serve_*`` function until the shutdown starts draining."""
    async with trio.open_nursery() as nursery:
        task_status.started(await nursery.start(serve_fn))
        await shutdown.draining.wait()
        nursery.cancel_scope.cancel()
