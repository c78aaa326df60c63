"""Admission: whether a new session may start, judged by the sessions open and the engines' recent load.

A fixed ``max_sessions`` is a poor proxy for load: forty sessions that listen cost little, four that all
await the recognizer at once may already queue for it. So a new session is also refused while the
engines are measurably behind: while calls to the shared models (recognizer, synthesizers, end-of-turn
model) have waited longer than ``Config.admission_queue_wait_ms`` for their turn, at the 90th percentile
over the last ``WINDOW`` seconds (:class:`RecentWaits`, fed by the same measurements as the
``trio_voice_engine_queue_wait_seconds`` histogram). Sessions already open are never affected: they
slow down; new ones are asked to come back (``server_full``, close 1013, ``retry_after_ms``), and a load
balancer sends the retry to an instance with room.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

import attrs

# Seconds of queue waits admission looks back over.
WINDOW = 10.0
# Samples kept (the newest): bounds memory and the percentile's cost at any call rate.
MAX_SAMPLES = 2048
# The retry hint: after a refusal at max_sessions, and after one for load (about one window's turnover).
RETRY_FULL_MS = 5000
RETRY_LOADED_MS = 2000


class RecentWaits:
    """Queue waits of the last ``window`` seconds. ``observe`` may be called from worker threads."""

    def __init__(self, window: float = WINDOW, clock: Callable[[], float] = time.monotonic) -> None:
        self.window = window
        self.clock = clock
        self._samples: deque[tuple[float, float]] = deque(maxlen=MAX_SAMPLES)
        self._lock = threading.Lock()

    def observe(self, seconds: float) -> None:
        with self._lock:
            self._samples.append((self.clock(), seconds))

    def percentile(self, q: float) -> float:
        """The ``q`` quantile (0-1) of the waits within the window; 0 with none."""
        since = self.clock() - self.window
        with self._lock:
            while self._samples and self._samples[0][0] < since:
                self._samples.popleft()
            waits = sorted(wait for _, wait in self._samples)
        if not waits:
            return 0.0
        return waits[min(len(waits) - 1, int(q * len(waits)))]


@attrs.frozen
class Refusal:
    message: str
    retry_after_ms: int


def refusal(
    *, open_sessions: int, max_sessions: int, waits: RecentWaits, max_wait_ms: float
) -> Refusal | None:
    """Why a new session may not start now, or None if it may."""
    if open_sessions >= max_sessions:
        return Refusal(f"the server is at its limit of {max_sessions} sessions", RETRY_FULL_MS)
    if max_wait_ms > 0:
        p90_ms = waits.percentile(0.9) * 1000.0
        if p90_ms > max_wait_ms:
            return Refusal(
                f"the server is busy: model calls wait {p90_ms:.0f} ms for their turn (limit {max_wait_ms:.0f} ms)",
                RETRY_LOADED_MS,
            )
    return None
