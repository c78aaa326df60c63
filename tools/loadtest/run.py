"""One load level: N concurrent conversations ramped up at R per second, with live progress and process costs.

``run_level`` starts the sessions, stops them after ``duration`` seconds of steady state (or when each has
done ``turns`` turns), and returns the level's :class:`Recorder` with CPU and memory of the load
generator itself and, given ``server_pid``, of the server process (read from /proc while it runs).
"""

from __future__ import annotations

import sys
import time
from functools import partial
from typing import TextIO

import trio

from .client import run_session_slot
from .plan import Plan
from .procstat import ProcSample, cpu_percent, read_self, read_tree
from .report import Recorder, percentiles

PROGRESS_INTERVAL = 0.5  # seconds between progress-line updates on a terminal
PROGRESS_INTERVAL_LOG = 10.0  # seconds between progress lines when stderr is not a terminal
PROC_INTERVAL = 1.0  # seconds between /proc samples of the server
DRAIN_LIMIT = 60.0  # extra seconds a --turns level may run past its estimate before it is cut


def progress_line(recorder: Recorder, elapsed: float) -> str:
    """The single-line live display: sessions open, turns done, errors, recent first-audio p50/p95."""
    recent = percentiles(recorder.recent("first_audio_ms"))
    lat = "-" if recent["n"] == 0 else f"{recent['p50']:.0f}/{recent['p95']:.0f} ms"
    return (
        f"[{elapsed:6.1f}s] sessions {recorder.sessions_open}/{recorder.sessions} "
        f"turns {len(recorder.samples)} errors {sum(recorder.errors.values())} "
        f"violations {sum(recorder.violations.values())} first audio p50/p95 {lat}"
    )


async def _progress_task(recorder: Recorder, started: float, out: TextIO) -> None:
    tty = out.isatty()
    try:
        while True:
            await trio.sleep(PROGRESS_INTERVAL if tty else PROGRESS_INTERVAL_LOG)
            line = progress_line(recorder, trio.current_time() - started)
            out.write(f"\r{line}\x1b[K" if tty else line + "\n")
            out.flush()
    finally:
        if tty:
            out.write("\n")
            out.flush()


async def _server_stats_task(pid: int, peak: list[ProcSample]) -> None:
    while True:
        sample = read_tree(pid)
        if sample is not None and (not peak or sample.rss_bytes > peak[0].rss_bytes):
            peak[:] = [sample]
        await trio.sleep(PROC_INTERVAL)


async def run_level(
    url: str,
    plan: Plan,
    *,
    sessions: int,
    ramp: float,
    duration: float | None = None,
    turns: int | None = None,
    server_pid: int | None = None,
    progress: TextIO | None = sys.stderr,
) -> Recorder:
    """Run ``sessions`` conversations against ``url`` and return what they measured.

    Args:
        ramp: sessions started per second.
        duration: seconds to run once all sessions have started (``None``: run until ``turns``).
        turns: turns per session (``None``: until ``duration``). One of the two is required.
        server_pid: the server's process id, for its CPU and RSS (with its child processes, such as
            the embedded llama-server); ``None`` skips them.
        progress: where the live progress line goes (``None`` for silence).
    """
    if duration is None and turns is None:
        raise ValueError("give duration or turns")
    recorder = Recorder(sessions=sessions)
    ramp_s = sessions / ramp
    if duration is not None:
        limit = ramp_s + duration
    else:
        assert turns is not None
        limit = ramp_s + turns * (plan.turn_timeout + plan.think_time) + DRAIN_LIMIT
    t0 = trio.current_time()
    client_before, server_before = read_self(), read_tree(server_pid) if server_pid else None
    peak: list[ProcSample] = []
    async with trio.open_nursery() as outer:
        if progress is not None:
            outer.start_soon(_progress_task, recorder, t0, progress)
        if server_pid:
            outer.start_soon(_server_stats_task, server_pid, peak)
        with trio.move_on_after(limit) as deadline:
            async with trio.open_nursery() as nursery:
                for index in range(sessions):
                    conversation = partial(
                        run_session_slot, url, plan, recorder, session=index, turns=turns, t0=t0
                    )
                    nursery.start_soon(conversation)
                    await trio.sleep_until(t0 + (index + 1) / ramp)
        outer.cancel_scope.cancel()
    client_after = read_self()
    wall = trio.current_time() - t0
    recorder.extra.update(
        wall_s=round(wall, 2),
        ramp_s=round(ramp_s, 2),
        stopped_by="duration"
        if duration is not None
        else ("limit" if deadline.cancelled_caught else "turns"),
        turns_per_s=round(len(recorder.samples) / wall, 2) if wall else None,
        client_cpu_percent=cpu_percent(client_before, client_after),
        client_rss_mb=round(client_after.rss_bytes / 2**20, 1),
    )
    server_after = read_tree(server_pid) if server_pid else None
    if server_before is not None and server_after is not None:
        rss = max(server_after.rss_bytes, peak[0].rss_bytes if peak else 0)
        recorder.extra.update(
            server_cpu_percent=cpu_percent(server_before, server_after),
            server_rss_mb=round(rss / 2**20, 1),
            server_rss_start_mb=round(server_before.rss_bytes / 2**20, 1),
        )
    return recorder


def wall_clock() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S %Z")
