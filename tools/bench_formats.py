"""What compressed output adds to first audio: encoder set-up and first bytes per format, on Piper speech.

``python -m tools.bench_formats [--runs N]`` synthesizes a few sentences with the packaged Piper voice
(once), then for each output format times, over ``N`` runs: making the encoder (a session makes one per
reply), encoding the first piece of a sentence until bytes are ready to send (what is added to first
audio), and encoding a whole sentence in pieces (CPU per second of speech). Medians and 90th
percentiles in milliseconds; the numbers go to BENCHMARKS.md by hand.
"""

from __future__ import annotations

import argparse
import statistics
import time

from trio_voice.formats import OUTPUT_FORMATS, make_output_encoder, pcm_pieces

SENTENCES = (
    "Sure, I can help with that.",
    "The weather tomorrow looks sunny, with a light breeze in the afternoon.",
    "Let me think about it for a moment.",
)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args(argv)

    from trio_voice.tts import Synthesizer

    tts = Synthesizer.load()
    audio = [tts.synthesize_sync(text) for text in SENTENCES]
    rate = tts.sample_rate
    seconds = sum(len(pcm) for pcm in audio) / 2 / rate
    print(f"{len(audio)} sentences, {seconds:.2f} s of {rate} Hz speech, {args.runs} runs each\n")
    print("format   make p50/p90    first bytes p50/p90    CPU per s of speech   kbit/s")
    for fmt in OUTPUT_FORMATS:
        made, first, total, size = [], [], [], 0
        for _ in range(args.runs):
            for pcm in audio:
                t0 = time.perf_counter()
                encoder = make_output_encoder(fmt, rate)
                t1 = time.perf_counter()
                got_first = None
                for piece in pcm_pieces(pcm, rate):
                    data = encoder.encode(piece)
                    size += len(data)
                    if data and got_first is None:
                        got_first = time.perf_counter()
                size += len(encoder.close())
                t2 = time.perf_counter()
                made.append((t1 - t0) * 1000)
                first.append(((got_first or t2) - t1) * 1000)
                total.append((t2 - t1) * 1000 / (len(pcm) / 2 / rate))
        print(
            f"{fmt:6} {statistics.median(made):6.2f} / {percentile(made, 0.9):5.2f}"
            f"   {statistics.median(first):8.2f} / {percentile(first, 0.9):5.2f}"
            f"   {statistics.median(total):15.1f} ms   {size * 8 / 1000 / (seconds * args.runs):6.1f}"
        )
    print("\n(first bytes: from the first PCM of a sentence to the first encoded bytes ready to send)")
    print(f"pieces: {list(len(p) // 2 for p in pcm_pieces(audio[0], rate))[:3]}... samples")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
