"""Measure the semantic turn-taking parts on this machine: Smart Turn's scores and latency, the echo guard's cost.

``python -m tools.turn_probe turn [--threads N] [--runs R]`` speaks complete questions and the same
questions cut where the speaker pauses mid-sentence (Piper, noise off so every run hears the same
audio), adds the 200 ms pause at which the policy asks the model, and prints P(complete) and the median
latency of a call (features + model) per clip.

``python -m tools.turn_probe echo`` runs the echo guard over a Piper reply's simulated speaker-phone echo
with the user talking over it, and prints the CPU time per 32 ms chunk (thread time, so other processes
on the machine do not count) and how the chunks were judged.

Both print numbers and assert nothing: they inform the defaults in ``trio_voice.turn_policy`` and
``trio_voice.echo`` and the benchmark notes.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np

PAIRS = [
    ("What is the capital of", "France?"),
    ("I would like to", "book a table for two."),
    ("Can you tell me a", "joke?"),
    ("How far away is the", "moon?"),
    ("Please turn off the lights in the", "kitchen."),
    ("My name is", "John."),
    ("Could you explain how", "a rainbow forms?"),
    ("What is the weather like in", "Paris today?"),
    ("Tell me something about", "the ocean."),
    ("Why is the sky", "blue?"),
    ("Who wrote the book", "Moby Dick?"),
    ("How many legs does a", "spider have?"),
    ("What should I cook for", "dinner tonight?"),
    ("Where is the nearest", "train station?"),
]


def probe_turn(threads: int, runs: int) -> None:
    from tests.speech import synthesize_speech
    from tests.test_smart_turn import as_turn, speech_before_pause
    from tools.make_speech import trim
    from trio_voice.smart_turn import EndOfTurnModel

    model = EndOfTurnModel.load(threads=threads)

    def measure(audio: np.ndarray) -> tuple[float, float, float]:
        """P(complete), median wall-clock ms, median CPU ms of the calling thread (with one intra-op
        thread onnxruntime computes on the caller, so that is all of it; other load does not count)."""
        walls, cpus, p = [], [], 0.0
        for _ in range(runs):
            wall, cpu = time.perf_counter(), time.thread_time()
            p = model.predict_sync(audio)
            walls.append(time.perf_counter() - wall)
            cpus.append(time.thread_time() - cpu)
        return p, statistics.median(walls) * 1000, statistics.median(cpus) * 1000

    print(f"Smart Turn v3.2, {threads} thread(s), median of {runs} calls; 200 ms pause after the speech")
    print(f"{'question':48} {'complete: p, wall, cpu':>26} {'cut mid-sentence: p, wall, cpu':>34}")
    for head, tail in PAIRS:
        full = as_turn(trim(synthesize_speech(f"{head} {tail}", deterministic=True)))
        cut = as_turn(speech_before_pause(trim(synthesize_speech(f"{head}, {tail}", deterministic=True))))
        row = " ".join(
            f"{p:7.3f} {wall:5.1f} ms {cpu:5.1f} ms" for p, wall, cpu in (measure(full), measure(cut))
        )
        print(f"{head + ' ' + tail:48} {row}")


def probe_echo() -> None:
    from tests.speech import synthesize_speech
    from tests.test_echo import LOUD, REPLY, USER, at, speaker_phone
    from trio_voice.echo import CHUNK_SAMPLES

    reply = synthesize_speech(REPLY, 22050, deterministic=True)
    guard, echo = speaker_phone(reply, 0.5, 7.0)
    user = at(synthesize_speech(USER, deterministic=True) * 0.5, 1.5, 7.0)
    mic = echo + user
    judged, skipped, flagged = [], [], 0
    for end in range(CHUNK_SAMPLES, mic.size + 1, CHUNK_SAMPLES):
        chunk = mic[end - CHUNK_SAMPLES : end]
        start = time.thread_time()
        verdict = guard.check(chunk)
        spent = (time.thread_time() - start) * 1000
        (judged if verdict.delay_ms is not None else skipped).append(spent)
        flagged += verdict.echo and float(np.sqrt(np.mean(chunk**2))) > LOUD
    print(
        f"echo guard: {len(judged)} chunks judged, CPU per chunk median {statistics.median(judged):.3f} ms, "
        f"p95 {np.percentile(judged, 95):.3f} ms, max {max(judged):.3f} ms; "
        f"{len(skipped)} skipped (quiet, or no reply playing), median {statistics.median(skipped):.4f} ms; "
        f"{flagged} loud chunks taken for echo"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.turn_probe", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    turn = sub.add_parser("turn", help="Smart Turn scores and latency on Piper questions")
    turn.add_argument("--threads", type=int, default=1)
    turn.add_argument("--runs", type=int, default=5)
    sub.add_parser("echo", help="the echo guard's CPU time per chunk")
    args = parser.parse_args(argv)
    if args.what == "turn":
        probe_turn(args.threads, args.runs)
    else:
        probe_echo()
    return 0


if __name__ == "__main__":
    sys.exit(main())
