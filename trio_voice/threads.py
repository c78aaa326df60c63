"""Blocking model calls in worker threads, behind the model's ``CapacityLimiter``, with queue waits measured.

Every model instance has one FIFO limiter shared by all sessions. How long a call waits for it is the
queueing delay users feel when the machine is busy; ``on_wait`` (set at start-up to a Prometheus
histogram) receives it in seconds, from the worker thread.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

import trio

T = TypeVar("T")

WaitObserver = Callable[[float], None]


async def run_model_call(
    fn: Callable[..., T],
    *args: Any,
    limiter: trio.CapacityLimiter,
    on_wait: WaitObserver | None = None,
    abandon_on_cancel: bool = False,
) -> T:
    """``trio.to_thread.run_sync(fn, *args, limiter=limiter)``, reporting the wait for the limiter."""
    queued = time.monotonic()

    def timed() -> T:
        if on_wait is not None:
            on_wait(time.monotonic() - queued)
        return fn(*args)

    return await trio.to_thread.run_sync(timed, limiter=limiter, abandon_on_cancel=abandon_on_cancel)
