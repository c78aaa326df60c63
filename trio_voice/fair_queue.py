"""Per-session fair queueing in front of a shared model: a capacity limiter that takes sessions in turn.

A ``trio.CapacityLimiter`` is FIFO over *calls*: a session that queues twenty TTS chunks at once (a long
reply, three synthesis workers) puts every other session's calls behind all twenty, and a user who just
finished speaking waits for someone else's paragraph before their final transcript. :class:`FairLimiter`
is a drop-in limiter (``trio.to_thread.run_sync(..., limiter=...)`` takes it) that keeps one FIFO per
*flow* and grants free tokens round-robin across the flows that wait: one call of each waiting session
in turn, so a burst costs its own session, and anyone else waits for at most one call of each other
session ahead of it.

The flow is the session: :data:`current_flow` is a context variable that ``run_session`` sets once, and
every task the session starts inherits it (Trio copies the context into child tasks), so no call site
passes anything. Calls outside any session (HTTP requests) share the flow ``None``.
"""

from __future__ import annotations

import contextvars
from collections import OrderedDict, deque
from typing import Any

import attrs
import trio

# The flow (session id) the calling task belongs to; set by run_session, inherited by its tasks.
current_flow: contextvars.ContextVar[str | None] = contextvars.ContextVar("trio_voice_flow", default=None)


@attrs.frozen
class FairLimiterStatistics:
    borrowed_tokens: int
    total_tokens: int
    waiting: int  # calls waiting for a token
    flows_waiting: int  # sessions with at least one call waiting


@attrs.define(eq=False)
class _Waiter:
    borrower: Any
    granted: trio.Event = attrs.field(factory=trio.Event)


class FairLimiter:
    """``total_tokens`` calls at once, granted round-robin across waiting flows (FIFO within a flow)."""

    def __init__(self, total_tokens: int) -> None:
        if total_tokens < 1:
            raise ValueError("total_tokens must be at least 1")
        self.total_tokens = total_tokens
        self._borrowers: set[Any] = set()
        self._flows: OrderedDict[str | None, deque[_Waiter]] = OrderedDict()  # in turn order

    @property
    def borrowed_tokens(self) -> int:
        return len(self._borrowers)

    @property
    def available_tokens(self) -> int:
        return self.total_tokens - len(self._borrowers)

    def statistics(self) -> FairLimiterStatistics:
        waiting = sum(len(queue) for queue in self._flows.values())
        return FairLimiterStatistics(len(self._borrowers), self.total_tokens, waiting, len(self._flows))

    async def acquire_on_behalf_of(self, borrower: Any) -> None:
        """Wait for a token in the calling task's flow's turn. Cancellation leaves no trace."""
        await trio.lowlevel.checkpoint_if_cancelled()
        if borrower in self._borrowers:
            raise RuntimeError("this borrower already holds a token of this limiter")
        if not self._flows and self.available_tokens > 0:
            self._borrowers.add(borrower)
            await trio.lowlevel.cancel_shielded_checkpoint()
            return
        flow = current_flow.get()
        waiter = _Waiter(borrower)
        self._flows.setdefault(flow, deque()).append(waiter)
        try:
            await waiter.granted.wait()
        except BaseException:
            if waiter.granted.is_set():  # granted as we were cancelled: hand the token on
                self.release_on_behalf_of(borrower)
            else:
                queue = self._flows.get(flow)
                if queue is not None:
                    queue.remove(waiter)
                    if not queue:
                        del self._flows[flow]
            raise

    def release_on_behalf_of(self, borrower: Any) -> None:
        """Give the token back; the next flow in turn gets it."""
        self._borrowers.remove(borrower)
        self._grant()

    def _grant(self) -> None:
        while self._flows and self.available_tokens > 0:
            flow, queue = next(iter(self._flows.items()))
            waiter = queue.popleft()
            del self._flows[flow]
            if queue:
                self._flows[flow] = queue  # to the back of the line: the others go first
            self._borrowers.add(waiter.borrower)
            waiter.granted.set()

    # The rest of CapacityLimiter's interface that callers use.
    async def acquire(self) -> None:
        await self.acquire_on_behalf_of(trio.lowlevel.current_task())

    def release(self) -> None:
        self.release_on_behalf_of(trio.lowlevel.current_task())

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(self, *exc: object) -> None:
        self.release()
