"""Stage tests of phrase_task: memory channels, a scripted token feeder and the autojump clock."""

from __future__ import annotations

from functools import partial

import pytest
import trio
import trio.testing

from trio_voice.config import Config
from trio_voice.phrases import phrase_task

Script = list[tuple[float, str]]  # (delay before sending, token)


async def feed(token_tx: trio.MemorySendChannel[str], script: Script) -> None:
    """Send each token after its delay, like an LLM streaming with latency, then end the stream."""
    async with token_tx:
        for delay, token in script:
            await trio.sleep(delay)
            await token_tx.send(token)


async def collect(
    phrase_rx: trio.MemoryReceiveChannel[str], log: list[tuple[float, str]], *, first_delay: float = 0.0
) -> None:
    """Record every phrase with the time (from test start) it was received."""
    start = trio.current_time()
    await trio.sleep(first_delay)
    async with phrase_rx:
        async for phrase in phrase_rx:
            log.append((trio.current_time() - start, phrase))


async def run_stage(script: Script, *, consumer_delay: float = 0.0) -> list[tuple[float, str]]:
    """Run feeder → phrase_task → collector to completion; return the timed phrases."""
    token_tx, token_rx = trio.open_memory_channel[str](0)
    phrase_tx, phrase_rx = trio.open_memory_channel[str](0)
    log: list[tuple[float, str]] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(partial(collect, phrase_rx, log, first_delay=consumer_delay))
        nursery.start_soon(partial(phrase_task, token_rx, phrase_tx, config=Config()))
        nursery.start_soon(feed, token_tx, script)
    return log


async def test_phrase_is_forced_out_exactly_at_max_wait_while_tokens_trickle(autojump_clock):
    """With one token every 0.75 s and no punctuation, phrases leave exactly 2.0 s after their first token."""
    script = [
        (0.0, "This"),
        (0.75, " reply"),
        (0.75, " trickles"),
        (0.75, " very"),
        (0.75, " slowly"),
        (0.75, "."),
    ]
    # 2.0: cut before "trickles" (arrived 1.5, so due at 3.5); 3.5: cut before "slowly"; 3.75: end of stream.
    assert await run_stage(script) == [(2.0, "This reply"), (3.5, "trickles very"), (3.75, "slowly.")]


async def test_sentence_goes_out_when_the_next_token_arrives(autojump_clock):
    """A finished sentence is sent at the moment the next non-space token arrives."""
    script = [(0.0, "Hello"), (0.25, " there"), (0.25, "."), (0.5, " How"), (0.25, " are"), (0.25, " you?")]
    assert await run_stage(script) == [(1.0, "Hello there."), (1.5, "How are you?")]


async def test_end_of_stream_flushes_at_once(autojump_clock):
    """When the token channel ends, the pending phrase is sent immediately, without waiting for max_wait."""
    script = [(0.0, "It"), (0.25, " costs"), (0.25, " $"), (0.0, "29"), (0.0, ".")]
    assert await run_stage(script) == [(0.5, "It costs $29.")]


async def test_max_wait_counts_from_the_phrases_first_token(autojump_clock):
    """The wait starts when the phrase's first token arrives, not when the stage starts."""
    script = [(1.0, "Thinking"), (2.5, " done")]
    assert await run_stage(script) == [(3.0, "Thinking"), (3.5, "done")]


async def test_overdue_phrase_goes_out_as_soon_as_a_slow_consumer_takes_the_previous_one(autojump_clock):
    """A phrase that came due while the stage waited on a slow consumer is forced out right after."""
    script = [(0.0, "One."), (0.25, " Two"), (4.75, " three")]
    # "Two" was due at 2.25 while the stage was still handing "One." over (until 3.0).
    log = await run_stage(script, consumer_delay=3.0)
    assert log == [(3.0, "One."), (3.0, "Two"), (5.0, "three")]


async def test_empty_stream_sends_nothing(autojump_clock):
    """A reply without tokens ends the phrase channel without sending anything."""
    assert await run_stage([]) == []


async def test_both_channel_ends_are_closed_when_the_stream_ends(autojump_clock):
    """After the stream ends, the stage has closed its token receiver and its phrase sender."""
    token_tx, token_rx = trio.open_memory_channel[str](0)
    phrase_tx, phrase_rx = trio.open_memory_channel[str](0)
    log: list[tuple[float, str]] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(collect, phrase_rx, log)
        nursery.start_soon(partial(phrase_task, token_rx, phrase_tx, config=Config()))
        await token_tx.send("Bye.")
        await token_tx.aclose()
    assert [phrase for _, phrase in log] == ["Bye."]
    with pytest.raises(trio.ClosedResourceError):
        token_rx.receive_nowait()
    with pytest.raises(trio.ClosedResourceError):
        phrase_tx.send_nowait("late")


async def test_cancelling_mid_phrase_sends_nothing_afterwards(autojump_clock):
    """Cancelling the turn's scope mid-phrase drops the pending text: nothing is sent after the cancel."""
    token_tx, token_rx = trio.open_memory_channel[str](0)
    phrase_tx, phrase_rx = trio.open_memory_channel[str](0)
    log: list[tuple[float, str]] = []
    start = trio.current_time()
    async with trio.open_nursery() as session:
        session.start_soon(collect, phrase_rx, log)
        with trio.CancelScope() as turn_scope:
            async with trio.open_nursery() as turn:
                turn.start_soon(partial(phrase_task, token_rx, phrase_tx, config=Config()))
                for token in ["Hello", " there", ".", " Next", " part"]:
                    await trio.sleep(0.25)
                    await token_tx.send(token)
                await trio.testing.wait_all_tasks_blocked()
                turn_scope.cancel()
        cancelled_at = trio.current_time() - start
        await trio.sleep(10.0)  # well past every deadline: a leaked phrase would show up
    # The collector ended because the stage closed its sender: no phrase can ever follow.
    assert log == [(1.0, "Hello there.")]
    assert all(when <= cancelled_at for when, _ in log)
    with pytest.raises(trio.BrokenResourceError):
        token_tx.send_nowait("more")  # the stage closed its receiver too
    with pytest.raises(trio.ClosedResourceError):
        phrase_tx.send_nowait("late")
