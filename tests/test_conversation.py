"""The LLM's view of a conversation: a history window that keeps its prefix stable between jumps."""

from __future__ import annotations

import itertools

from trio_voice.conversation import context_for, window_start
from trio_voice.storage import open_store


def test_short_conversations_are_shown_whole() -> None:
    """Up to the limit, every message is in the window."""
    assert [window_start(n, 20) for n in (0, 1, 20)] == [0, 0, 0]


def test_the_window_jumps_half_a_window_at_a_time() -> None:
    """Past the limit the start moves in steps of limit/2, so it stays put for ten messages at a time."""
    starts = [window_start(n, 20) for n in range(21, 52)]
    assert starts[:10] == [10] * 10 and starts[10:20] == [20] * 10 and starts[20:30] == [30] * 10
    assert all(10 < n - window_start(n, 20) <= 20 for n in range(21, 200))


async def test_context_keeps_the_same_prefix_across_turns(tmp_path) -> None:
    """Consecutive turns between jumps send the same leading messages (what an LLM's prompt cache needs)."""
    async with open_store(tmp_path / "c.sqlite3") as store:
        conversation = await store.create_conversation()
        contexts = []
        for turn in range(14):
            await store.add_message(conversation, "user", f"q{turn}")
            contexts.append(await context_for(store, conversation, instructions="sys", limit=8))
            await store.add_message(conversation, "assistant", f"a{turn}")
    assert contexts[0] == [{"role": "system", "content": "sys"}, {"role": "user", "content": "q0"}]
    lengths = [len(c) - 1 for c in contexts]
    assert max(lengths) <= 8 and min(lengths[4:]) > 4
    for before, after in itertools.pairwise(contexts):
        if after[1] != before[1]:
            continue  # a jump: the window moved on by half
        assert after[: len(before)] == before
