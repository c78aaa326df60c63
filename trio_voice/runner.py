"""Running the server as a process: signals, graceful shutdown, the ready line, the exit code."""

from __future__ import annotations

import logging
import signal
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager

import attrs
import trio

from .config import Config
from .engines import Engines
from .lifecycle import Shutdown
from .server import Listening, serve

logger = logging.getLogger(__name__)


@attrs.frozen
class FakeEngines:
    """``--fake-engines`` and which VAD is in its frame path (how slow the fake LLM is, is
    ``Config.fake_llm_token_delay``)."""

    vad: str = "energy"  # "energy" (the fake) or "silero" (the real one, behind the energy gate)


@asynccontextmanager
async def open_fake_engines(config: Config, fake: FakeEngines | None = None) -> AsyncIterator[Engines]:
    """Instant fake models with a real store: for the capacity benchmark and load tests only."""
    from .storage import open_store
    from .testing import FakeLLM, FakeTTS, fake_voice_input
    from .vad import gated_silero_factory

    fake = fake or FakeEngines()
    async with open_store(config.store_location) as store:
        stt, vad_factory = fake_voice_input()
        if fake.vad == "silero":
            vad_factory = gated_silero_factory(config)  # type: ignore[assignment]
        llm = FakeLLM(token_delay=config.fake_llm_token_delay)
        yield Engines(llm=llm, tts=FakeTTS(), store=store, stt=stt, vad_factory=vad_factory)


def print_ready(listening: Listening) -> None:
    """The ready line tests, tools and people wait for."""
    print(f"trio-voice ready: {listening.ws_url}  {listening.http_url}/", flush=True)


async def serve_process(
    config: Config,
    fake_engines: FakeEngines | None,
    on_ready: Callable[[Listening], None] = print_ready,
) -> None:
    """One server process until SIGINT/SIGTERM has run the graceful shutdown (a worker is one too)."""
    async with AsyncExitStack() as stack:
        engines = (
            await stack.enter_async_context(open_fake_engines(config, fake_engines)) if fake_engines else None
        )
        shutdown = Shutdown()
        async with trio.open_nursery() as nursery:

            async def serve_then_stop(task_status: trio.TaskStatus[Listening]) -> None:
                await serve(config, engines=engines, shutdown=shutdown, task_status=task_status)
                nursery.cancel_scope.cancel()  # the server is done: stop watching for signals

            nursery.start_soon(_watch_signals, shutdown, nursery.cancel_scope)
            listening: Listening = await nursery.start(serve_then_stop)
            on_ready(listening)


async def _watch_signals(shutdown: Shutdown, scope: trio.CancelScope) -> None:
    """The first SIGINT/SIGTERM starts a graceful shutdown; a second one stops at once."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            name = signal.Signals(signum).name
            if shutdown.draining.is_set():
                logger.warning("second %s: stopping now", name)
                scope.cancel()
                return
            logger.info("received %s: shutting down gracefully", name)
            shutdown.request()


def run_server(config: Config, *, fake_engines: FakeEngines | None = None) -> int:
    """Run one server process until SIGINT/SIGTERM (``--workers N`` is trio_voice.workers); the exit code."""
    trio.run(serve_process, config, fake_engines)
    return 0
