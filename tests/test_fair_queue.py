"""Per-session fair queueing in front of a shared model (trio_voice.fair_queue), under autojump_clock."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from trio_voice.fair_queue import FairLimiter, current_flow

CALL = 1.0  # seconds one fake model call holds its token


async def call(limiter: FairLimiter, flow: str, name: str, log: list[tuple[str, float]]) -> None:
    """One model call of ``flow``: wait for a token, hold it CALL seconds, note when it started."""
    current_flow.set(flow)
    async with limiter:
        log.append((name, trio.current_time()))
        await trio.sleep(CALL)


async def test_one_sessions_burst_does_not_starve_anothers_final(autojump_clock) -> None:
    """Session a queues ten calls at once; b's one call, queued just after, runs third (after the call
    running and the one of a's whose turn it was), not eleventh."""
    limiter, log = FairLimiter(1), []
    async with trio.open_nursery() as nursery:
        for n in range(10):
            nursery.start_soon(call, limiter, "a", f"a{n}", log)
            await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(call, limiter, "b", "final", log)
    assert [name for name, _ in log][:3] == ["a0", "a1", "final"]
    assert dict(log)["final"] == 2.0
    assert [name for name, _ in log if name.startswith("a")] == [f"a{n}" for n in range(10)]  # FIFO in a flow


async def test_waiting_flows_take_turns_and_every_token_is_used(autojump_clock) -> None:
    """Three sessions with three calls each, queued a's first, on two tokens: once a's are done b and c
    alternate (FIFO would run all of b's before c's), and no token ever idles."""
    limiter, log = FairLimiter(2), []
    async with trio.open_nursery() as nursery:
        for flow in "abc":
            for n in range(3):
                nursery.start_soon(call, limiter, flow, f"{flow}{n}", log)
                await trio.testing.wait_all_tasks_blocked()
    started: dict[float, set[str]] = {}
    for name, at in log:  # calls granted at one instant run in any order: compare them as sets
        started.setdefault(at, set()).add(name)
    assert started == {
        0.0: {"a0", "a1"},
        1.0: {"a2", "b0"},
        2.0: {"c0", "b1"},  # FIFO would run b1 and b2 before any of c's
        3.0: {"c1", "b2"},
        4.0: {"c2"},
    }
    assert trio.current_time() == 5.0  # nine calls on two tokens
    assert limiter.statistics().borrowed_tokens == 0


async def test_a_cancelled_waiter_leaves_no_trace(autojump_clock) -> None:
    """A call cancelled while waiting takes no token and keeps no place in line; the others run."""
    limiter, log = FairLimiter(1), []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(call, limiter, "a", "a0", log)
        await trio.testing.wait_all_tasks_blocked()
        async with trio.open_nursery() as inner:
            inner.start_soon(call, limiter, "b", "b0", log)
            await trio.testing.wait_all_tasks_blocked()
            assert limiter.statistics().waiting == 1
            inner.cancel_scope.cancel()
        assert limiter.statistics().waiting == 0
        nursery.start_soon(call, limiter, "c", "c0", log)
    assert [name for name, _ in log] == ["a0", "c0"]
    assert limiter.statistics() == limiter.statistics().__class__(0, 1, 0, 0)


async def test_it_is_a_limiter_trio_threads_accept() -> None:
    """trio.to_thread.run_sync takes it, and the token comes back after the call."""
    limiter = FairLimiter(1)
    assert await trio.to_thread.run_sync(lambda: 42, limiter=limiter) == 42  # type: ignore[arg-type]
    assert limiter.borrowed_tokens == 0
    with pytest.raises(ValueError, match="at least 1"):
        FairLimiter(0)
