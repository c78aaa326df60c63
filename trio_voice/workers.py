"""``trio-voice serve --workers N``: N server processes on one machine, one Trio loop per core.

One process runs its Python on one core; with fake engines (or models in other processes) that core is
the limit (BENCHMARKS.md, capacity). The parent process here serves nothing itself::

    run_workers(config)                 the parent
    ├── embedded llama-server           one for all workers (unless --llm-url): each worker gets its URL
    └── worker 0 … N-1                  spawned processes, each a full server (trio_voice.runner)
                                        on the same ports (SO_REUSEPORT), each an instance of its own

Each worker is an instance (``--instance-id`` ``BASE-0`` …, BASE given or random), with its own session
host; a resume reaches the worker that holds its session through ``?instance=`` (``trio_voice.handoff``
passes the connection there), exactly as through nginx. What several instances share, they share here
too: give ``--database-url`` and ``--redis-url`` and a user's presence and offline messages are one view
across workers. Without them each worker keeps its own (SQLite files in ``DATA_DIR/worker-I``; presence
per worker): workers then behave as separate servers behind one port. ``max_sessions`` is per worker.

Signals: the first SIGINT/SIGTERM is passed to every worker, which drains (trio_voice.lifecycle); the
parent waits for them, then stops the LLM. A second one kills the workers. A worker that dies on its own
takes the others down with it (the parent exits 1): a half-served port is worse than a restart by the
supervisor (systemd, Kubernetes).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import queue
import shutil
import signal
import tempfile
from functools import partial
from pathlib import Path
from typing import Any

import attrs
import trio

from .config import Config
from .handoff import bind_tcp
from .ids import new_id
from .log_setup import setup_logging
from .runner import FakeEngines, print_ready, serve_process
from .server import Listening

logger = logging.getLogger(__name__)

# Seconds a worker has to report ready (each loads its own STT/TTS models).
WORKER_START_TIMEOUT = 300.0


def worker_configs(config: Config, *, llm_url: str | None, run_dir: Path) -> list[Config]:
    """One config per worker: the same ports (made concrete), the shared LLM, an instance id each."""
    base = config.instance_id or new_id("inst")
    ws_port, http_port = config.ws_port, config.http_port
    if ws_port == 0 or http_port == 0:  # every worker must bind the same port: pick it here
        ports = []
        for wanted in (ws_port, http_port):
            probe = bind_tcp(config.host, wanted, reuse_port=True)
            ports.append(probe.getsockname()[1])
            probe.close()
        ws_port, http_port = ports
    peers = tuple((f"{base}-{i}", str(run_dir / f"worker-{i}.sock")) for i in range(config.workers))
    configs = []
    for i, (instance_id, _) in enumerate(peers):
        changes: dict[str, Any] = {
            "ws_port": ws_port,
            "http_port": http_port,
            "instance_id": instance_id,
            "worker_peers": peers,
        }
        if llm_url is not None and config.llm_url is None:
            changes |= {"llm_url": llm_url, "llm_api": "openai"}
        if config.database_url is None and config.db_path is None:
            changes["db_path"] = config.data_dir / f"worker-{i}" / "conversations.sqlite3"
        configs.append(attrs.evolve(config, **changes))
    return configs


def worker_main(config: Config, fake: FakeEngines | None, ready: Any, index: int) -> None:
    """A worker process: a full server; it reports its ports (or its failure) on ``ready``."""
    os.setpgrp()  # a terminal's Ctrl-C goes to the parent, which passes it on once
    setup_logging(config.log_level, config.log_format)
    if config.db_path is not None:
        config.db_path.parent.mkdir(parents=True, exist_ok=True)

    def on_ready(listening: Listening) -> None:
        ready.put((index, listening.ws_port, listening.http_port))

    try:
        trio.run(serve_process, config, fake, on_ready)
    except BaseException:
        ready.put((index, None, None))
        raise


def run_workers(config: Config, fake: FakeEngines | None) -> int:
    """Run ``config.workers`` worker processes until SIGINT/SIGTERM; the exit code."""
    return trio.run(_parent, config, fake)


async def _parent(config: Config, fake: FakeEngines | None) -> int:
    run_dir = Path(tempfile.mkdtemp(prefix="trio-voice-workers-"))  # private (0700): the hand-over sockets
    try:
        async with trio.open_nursery() as nursery:
            llm_url = None
            if config.llm_url is None and fake is None:
                from .llm import EmbeddedLLMStats, serve_embedded_llm

                llm_url = await nursery.start(partial(serve_embedded_llm, config, EmbeddedLLMStats()))
                logger.info("embedded LLM for %d workers at %s", config.workers, llm_url)
            status = await _run_workers(worker_configs(config, llm_url=llm_url, run_dir=run_dir), fake)
            nursery.cancel_scope.cancel()
        return status
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)


async def _run_workers(configs: list[Config], fake: FakeEngines | None) -> int:
    context = multiprocessing.get_context("spawn")  # never fork a process that runs threads
    ready = context.Queue()
    processes = [
        context.Process(target=worker_main, args=(cfg, fake, ready, i), name=f"trio-voice-worker-{i}")
        for i, cfg in enumerate(configs)
    ]
    for process in processes:
        process.start()
    stopping = trio.Event()
    status = 0
    async with trio.open_nursery() as nursery:

        async def watch_signals() -> None:
            with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for signum in signals:
                    if stopping.is_set():
                        logger.warning("second %s: killing the workers", signal.Signals(signum).name)
                        for process in processes:
                            process.kill()
                        return
                    logger.info("received %s: the workers drain", signal.Signals(signum).name)
                    stopping.set()
                    for process in processes:
                        if process.is_alive():
                            os.kill(process.pid, signal.SIGTERM)

        async def watch(process: multiprocessing.process.BaseProcess) -> None:
            nonlocal status
            await trio.to_thread.run_sync(process.join, abandon_on_cancel=True)
            if not stopping.is_set():
                logger.error("%s exited (%s): stopping the others", process.name, process.exitcode)
                status = 1
                stopping.set()
                for other in processes:
                    if other.is_alive():
                        os.kill(other.pid, signal.SIGTERM)

        nursery.start_soon(watch_signals)
        try:
            with trio.fail_after(WORKER_START_TIMEOUT):
                ports = [await trio.to_thread.run_sync(_next_ready, ready) for _ in processes]
        except (trio.TooSlowError, RuntimeError) as exc:
            logger.error("workers did not start: %s", exc)
            status = 1
            stopping.set()
            for process in processes:
                if process.is_alive():
                    os.kill(process.pid, signal.SIGTERM)
        else:
            logger.info(
                "%d workers ready: %s", len(processes), ", ".join(c.instance_id or "" for c in configs)
            )
            print_ready(Listening(configs[0].host, *ports[0]))
        async with trio.open_nursery() as watchers:
            for process in processes:
                watchers.start_soon(watch, process)
        nursery.cancel_scope.cancel()
    return status


def _next_ready(ready: Any) -> tuple[int, int]:
    """The next worker's ports, from the queue (blocking, in a thread). Raises RuntimeError on a failure."""
    try:
        index, ws_port, http_port = ready.get(timeout=WORKER_START_TIMEOUT)
    except queue.Empty:
        raise RuntimeError("no worker reported ready") from None
    if ws_port is None:
        raise RuntimeError(f"worker {index} failed to start (see its log lines above)")
    return ws_port, http_port
