"""A/B in one run: LLM first-token time per turn with a sliding vs a stepped history window.

Two conversations with the same questions are interleaved turn by turn against one embedded llama.cpp
server, so both see the same machine load. The sliding window changes the prompt's prefix every turn
once the conversation is longer than the window; the stepped one (trio_voice.conversation.window_start)
keeps it for half a window at a time, so the server's prompt cache is reused.

    .venv/bin/python -m tools.ab_history_window
"""

from __future__ import annotations

import statistics
from functools import partial

import trio

from trio_voice.config import Config
from trio_voice.conversation import window_start
from trio_voice.llm import EmbeddedLLMStats, LLMClient, serve_embedded_llm
from trio_voice.llm.client import make_http_client

QUESTIONS = [
    "What is the capital of France?", "Tell me about the moon.", "How do bees make honey?",
    "Why is the sky blue?", "What is a good breakfast?", "How far is the sun?", "Name a famous painter.",
    "What do cats eat?", "How do planes fly?", "What is rain?", "Tell me a joke.", "What is music?",
    "How big is the ocean?", "Who wrote Hamlet?", "What is a volcano?", "How do trees grow?",
]  # fmt: skip
LIMIT = 20  # Config.history_messages


def first_message(name: str, count: int) -> int:
    if name == "sliding":
        return max(0, count - LIMIT)
    return window_start(count, LIMIT)


async def first_token_ms(llm: LLMClient, messages: list[dict[str, str]]) -> tuple[float, str]:
    started = trio.current_time()
    first: list[float] = []

    async def on_delta(delta: str) -> None:
        if not first:
            first.append(trio.current_time() - started)

    result = await llm.stream_chat(messages, on_delta)
    return round(first[0] * 1000, 1), result.text


async def main() -> None:
    config = Config()
    async with trio.open_nursery() as nursery, make_http_client() as http:
        url = await nursery.start(partial(serve_embedded_llm, config, EmbeddedLLMStats()))
        llm = LLMClient(http, base_url=url, model=config.llm_model, max_tokens=160, temperature=0.3)
        history: dict[str, list[dict[str, str]]] = {"sliding": [], "stepped": []}
        times: dict[str, list[float]] = {"sliding": [], "stepped": []}
        for question in QUESTIONS:
            for name, turns in history.items():
                turns.append({"role": "user", "content": question})
                visible = turns[first_message(name, len(turns)) :]
                ms, reply = await first_token_ms(
                    llm, [{"role": "system", "content": config.system_prompt}, *visible]
                )
                turns.append({"role": "assistant", "content": reply})
                times[name].append(ms)
        for name, values in times.items():
            print(f"{name:8} first token per turn (ms): {values}")
            print(f"{name:8} median of turns 11-{len(values)}: {statistics.median(values[10:]):.0f} ms")
        nursery.cancel_scope.cancel()


if __name__ == "__main__":
    trio.run(main)
