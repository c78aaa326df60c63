"""CPU time and resident memory of a process, read from /proc (Linux): for server and client cost per session."""

from __future__ import annotations

import os
import resource
import time

import attrs

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@attrs.frozen
class ProcSample:
    at: float  # time.monotonic()
    cpu_s: float  # user + system CPU seconds since the process started
    rss_bytes: int


def read_proc(pid: int) -> ProcSample | None:
    """CPU seconds and RSS of ``pid`` (``None`` if it is gone). Threads' CPU time is included."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            stat = f.read()
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            status = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name (field 2) may hold spaces; fields after its closing parenthesis are fixed.
    fields = stat[stat.rindex(")") + 2 :].split()
    utime, stime = int(fields[11]), int(fields[12])
    rss_kb = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
    return ProcSample(time.monotonic(), (utime + stime) / CLOCK_TICKS, rss_kb * 1024)


def children(pid: int) -> list[int]:
    """Direct child processes of ``pid`` (e.g. the embedded llama-server of a trio-voice server)."""
    # Each thread lists the children it spawned (trio spawns from worker threads), so read them all.
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except (FileNotFoundError, ProcessLookupError):
        return []
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/children", encoding="ascii") as f:
                found += [int(p) for p in f.read().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return found


def read_tree(pid: int) -> ProcSample | None:
    """``read_proc`` summed over ``pid`` and its children, so a server's model subprocesses count too."""
    root = read_proc(pid)
    if root is None:
        return None
    parts = [root, *(s for c in children(pid) if (s := read_proc(c)) is not None)]
    return ProcSample(root.at, sum(s.cpu_s for s in parts), sum(s.rss_bytes for s in parts))


def read_self() -> ProcSample:
    """This process (the load generator): CPU of all its threads, and RSS."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    sample = read_proc(os.getpid())
    rss = sample.rss_bytes if sample else usage.ru_maxrss * 1024
    return ProcSample(time.monotonic(), usage.ru_utime + usage.ru_stime, rss)


def cpu_percent(before: ProcSample, after: ProcSample) -> float:
    """CPU use between two samples, in percent of one core (200 = two cores busy)."""
    wall = after.at - before.at
    return round(100.0 * (after.cpu_s - before.cpu_s) / wall, 1) if wall > 0 else 0.0
