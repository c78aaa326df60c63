"""First audio with Opus and MP3 replies beside PCM, of a TTS cache hit, and narration memory against text length.

``python -m tools.bench_speech_surface [--runs N]`` starts one in-process server on loopback (real Piper
joe-medium, the scripted LLM, a throw-away SQLite store) and drives it over the WebSocket like a client:

1. ``speak`` replies of distinct sentences (no cache), the output format rotating pcm16 → opus → mp3
   on every run, so the three share the machine's load alike; ``first_audio_ms`` is the server's own
   measure (request in → first audio event handed to the writer).
2. A short opening spoken once (a cache miss), then again ``N`` times (hits).
3. Narrations of 5,000, 20,000 and 80,000 characters (fake TTS making real-size 22 kHz audio, so
   synthesis time does not stretch the run), peak RSS growth of this process, server and client both.

The machine is shared: compare numbers of one run with each other (ratios), not across runs.
"""

from __future__ import annotations

import argparse
import base64
import gc
import json
import statistics
import tempfile
from functools import partial
from pathlib import Path

import trio
from trio_websocket import open_websocket_url

from trio_voice.config import Config
from trio_voice.engines import Engines
from trio_voice.server import serve
from trio_voice.storage import open_store
from trio_voice.telemetry import Telemetry
from trio_voice.testing import FakeLLM, FakeTTS
from trio_voice.tts_cache import CachedTTS

SENTENCES = [
    f"{opening} the {thing} is {state} today."
    for opening in ("Well,", "So,", "Right,", "Okay,")
    for thing in ("library", "station", "market", "museum", "harbour")
    for state in ("open", "closed", "busy")
]
OPENING = "Sure, I can help with that."
STORY = "The quick brown fox jumps over the lazy dog near the river bank. "


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096


async def read_until(ws, type_: str) -> list[dict]:  # type: ignore[no-untyped-def]
    events = []
    while True:
        event = json.loads(await ws.get_message())
        events.append(event)
        if event["type"] == type_:
            return events


async def first_audio(ws, text: str) -> float:  # type: ignore[no-untyped-def]
    await ws.send_message(json.dumps({"type": "speak", "text": text}))
    done = (await read_until(ws, "response.done"))[-1]
    return float(done["metrics"]["first_audio_ms"])


async def narration_growth(ws, chars: int) -> tuple[int, float, float]:  # type: ignore[no-untyped-def]
    """Narrate ``chars`` characters; (phrases, MiB of audio, MiB of peak RSS growth)."""
    text = (STORY * (chars // len(STORY) + 1))[:chars]
    gc.collect()
    base = peak = rss_bytes()
    await ws.send_message(json.dumps({"type": "narrate", "text": text}))
    phrases = audio = 0
    while True:
        event = json.loads(await ws.get_message())
        if event["type"] == "response.audio.delta":
            audio += len(base64.b64decode(event["audio"]))
        elif event["type"] == "narration.progress":
            phrases += 1
            if phrases % 10 == 0:
                peak = max(peak, rss_bytes())
        elif event["type"] == "narration.done":
            return phrases, audio / 2**20, (max(peak, rss_bytes()) - base) / 2**20


def summary(values: list[float]) -> str:
    ordered = sorted(values)
    p90 = ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]
    return f"p50 {statistics.median(values):6.1f}  p90 {p90:6.1f}  (n={len(values)})"


async def run(runs: int, data_dir: Path) -> None:
    from trio_voice.tts import Synthesizer

    piper = await trio.to_thread.run_sync(partial(Synthesizer.load, threads=1))
    config = Config(
        data_dir=data_dir, ws_port=0, http_port=0, heartbeat_interval=0, max_narration_chars=100_000
    )
    cached = CachedTTS(piper, max_bytes=16 * 2**20, voice="en_US-joe-medium")
    async with open_store(config.store_location) as store, trio.open_nursery() as nursery:
        for label, tts in (("piper", piper), ("cached", cached), ("fake", FakeTTS())):
            engines = Engines(llm=FakeLLM(), tts=tts, store=store)
            listening = await nursery.start(partial(serve, config, engines=engines, telemetry=Telemetry()))
            async with open_websocket_url(listening.ws_url) as ws:
                await read_until(ws, "session.created")
                if label == "piper":
                    await first_audio(ws, "A warm-up sentence.")
                    times: dict[str, list[float]] = {"pcm16": [], "opus": [], "mp3": []}
                    for n in range(runs):
                        for fmt in times:
                            await ws.send_message(
                                json.dumps({"type": "session.update", "output_audio_format": fmt})
                            )
                            await read_until(ws, "session.updated")
                            times[fmt].append(
                                await first_audio(ws, SENTENCES[(n * 3 + len(times[fmt])) % len(SENTENCES)])
                            )
                    print("first audio of a speak reply, ms (server: request in -> first audio event out):")
                    for fmt, values in times.items():
                        print(f"  {fmt:6} {summary(values)}")
                elif label == "cached":
                    miss = await first_audio(ws, OPENING)
                    hits = [await first_audio(ws, OPENING) for _ in range(runs)]
                    stats = cached.statistics()
                    print(
                        f"cache: miss {miss:.1f} ms; hits {summary(hits)}; counted {stats.hits} hits, {stats.misses} misses"
                    )
                else:
                    await narration_growth(ws, 2_000)  # warm-up: the allocator's pools
                    print(
                        "narration (fake TTS, real-size 22 kHz audio): chars, phrases, audio MiB, peak RSS growth MiB"
                    )
                    for chars in (5_000, 20_000, 80_000):
                        phrases, audio, growth = await narration_growth(ws, chars)
                        print(f"  {chars:6d} {phrases:5d} {audio:8.1f} {growth:8.1f}")
        nursery.cancel_scope.cancel()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as data_dir:
        trio.run(run, args.runs, Path(data_dir))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
