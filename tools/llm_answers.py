"""What the embedded LLM answers to everyday questions, under given sampling settings: a table for BENCHMARKS.md.

::

    python -m tools.llm_answers                                   # the server's defaults
    python -m tools.llm_answers --temperature 0.3 --repeat-penalty 1.0

Starts the embedded llama-server exactly as ``trio-voice serve`` does (same command line, same system
prompt), asks each question of :data:`QUESTIONS` once with a fresh context, and prints a Markdown table:
the answer (shortened), its length in tokens, the language it is in (a word-list guess: English,
French, or unsure) and whether the reply looped (the phrase stage's repetition guard would have stopped it).
"""

from __future__ import annotations

import argparse
import re
import sys

import attrs
import httpx
import trio

from trio_voice.config import Config
from trio_voice.llm import EmbeddedLLMStats, serve_embedded_llm
from trio_voice.repetition import RepetitionGuard

QUESTIONS = (
    "What is the capital of France?",
    "How many days are in a week?",
    "What color is the sky?",
    "How many legs does a spider have?",
    "What is two plus two?",
    "Who wrote Romeo and Juliet?",
    "At what temperature does water boil?",
    "Can you recommend a good book?",
    "What should I cook for dinner tonight?",
    "Tell me a fun fact about cats.",
)

# A few of the most frequent words of each language: enough to tell an English answer from a French one.
_ENGLISH = set(
    "the a an is are of and to in it you i that for on with this be was what how at has have can my your by".split()
)
_FRENCH = set("le la les un une est sont de des du et à en il elle que pour avec ce qui au aux".split())
ANSWER_CHARS = 90


def language_of(text: str) -> str:
    words = re.findall(r"[a-zàâçéèêëîïôûùüÿœ']+", text.lower())
    english = sum(w in _ENGLISH for w in words)
    french = sum(w in _FRENCH for w in words)
    if english > french:
        return "English"
    if french > english:
        return "French"
    return "unsure"


@attrs.frozen
class Answer:
    question: str
    text: str
    tokens: int
    looped: bool


async def ask(
    http: httpx.AsyncClient, base_url: str, question: str, *, config: Config, args: argparse.Namespace
) -> Answer:
    body = {
        "model": config.llm_model,
        "messages": [
            {"role": "system", "content": config.system_prompt},
            {"role": "user", "content": question},
        ],
        "max_tokens": config.llm_max_tokens,
        "temperature": args.temperature,
    }
    if args.repeat_penalty is not None:
        body["repeat_penalty"] = args.repeat_penalty
    response = await http.post(f"{base_url}/v1/chat/completions", json=body)
    response.raise_for_status()
    reply = response.json()
    text = reply["choices"][0]["message"]["content"]
    guard = RepetitionGuard()
    looped = any(guard.feed(word + " ") for word in text.split())
    return Answer(question, text, reply["usage"]["completion_tokens"], looped)


async def main(args: argparse.Namespace) -> None:
    config = Config()
    stats = EmbeddedLLMStats()
    async with trio.open_nursery() as nursery:
        base_url = await nursery.start(serve_embedded_llm, config, stats)
        async with httpx.AsyncClient(timeout=120, trust_env=False) as http:
            answers = [await ask(http, base_url, q, config=config, args=args) for q in QUESTIONS]
        nursery.cancel_scope.cancel()
    penalty = "server default" if args.repeat_penalty is None else args.repeat_penalty
    print(f"temperature {args.temperature}, repeat_penalty {penalty}\n")
    print("| question | answer | tokens | language | looped |")
    print("|---|---|---|---|---|")
    for a in answers:
        text = " ".join(a.text.split())
        short = text if len(text) <= ANSWER_CHARS else text[: ANSWER_CHARS - 1] + "…"
        short = short.replace("|", "\\|")
        print(
            f"| {a.question} | {short} | {a.tokens} | {language_of(a.text)} | {'yes' if a.looped else 'no'} |"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--temperature", type=float, default=Config().llm_temperature)
    parser.add_argument(
        "--repeat-penalty",
        type=float,
        default=None,
        help="sent with each request; default: the server's own (set by trio-voice's command line)",
    )
    trio.run(main, parser.parse_args(sys.argv[1:]))
