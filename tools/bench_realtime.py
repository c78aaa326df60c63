"""``python -m tools.bench realtime`` (issue 12): voice-to-voice on ``/v1/realtime`` beside ``/v1/voice``.

One server (embedded models), the same spoken questions on both endpoints, interleaved question by
question; the client's times from ``tools.loadtest`` (``--protocol realtime`` for the realtime side),
the server's own stage times of every reply read from its turn records. BENCHMARKS.md quotes the report.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sqlite3
import sys
from pathlib import Path
from typing import Any

import numpy as np
import trio

from tools.bench import open_server, save, spoken_questions
from tools.loadtest.plan import Plan
from tools.loadtest.report import Recorder, percentiles
from tools.loadtest.run import run_level


async def bench_realtime(args: argparse.Namespace) -> dict:
    """The same spoken questions on /v1/voice and /v1/realtime, one server, interleaved: voice-to-voice.

    The machine is shared, so the protocols take turns question by question (voice then realtime, then
    realtime then voice, …), each question in a new session: a pair is measured seconds apart, under the
    same load. Client-side times include each protocol's own wire (binary 16 kHz frames vs base64 24 kHz
    appends, the realtime layer's resampling and its 100 ms audio deltas); the server's own stage times
    (from its store's turn records, for both) show the core doing the same work.
    """
    questions = spoken_questions(args)
    recorders = {p: Recorder(sessions=1) for p in ("voice", "realtime")}
    by_question: dict[str, dict[str, Any]] = {}
    first: dict[str, str] = {}  # question → the protocol that asked it first
    # The TTS cache would make the second asking of a question faster than the first (measured: ~400 ms);
    # the alternation cancels that, but without the cache each asking does the same work.
    async with open_server(args.url, fake=False, extra=["--tts-cache-mb", "0"]) as server:
        urls = {
            "voice": server.url,
            "realtime": server.url.replace("/v1/voice", "/v1/realtime") + "?model=bench",
        }
        for n, question in enumerate(questions):
            order = ("voice", "realtime") if n % 2 == 0 else ("realtime", "voice")
            first[question.name] = order[0]
            for protocol in order:
                plan = Plan(questions=[question], think_time=0.0, protocol=protocol)
                rec = await run_level(
                    urls[protocol], plan, sessions=1, ramp=1, turns=1, server_pid=server.pid, progress=None
                )
                combined = recorders[protocol]
                combined.samples += rec.samples
                combined.errors.update(rec.errors)
                combined.violations.update(rec.violations)
                combined.events += rec.events
                for sample in rec.samples:
                    by_question.setdefault(question.name, {})[protocol] = sample.voice_to_voice_ms
                await trio.sleep(args.think_time)
            pair = by_question.get(question.name, {})
            print(
                f"{question.name}: voice {pair.get('voice')} ms, realtime {pair.get('realtime')} ms",
                file=sys.stderr,
            )
        if server.data_dir is not None:  # the server's own stage times of every reply, realtime ones too
            for sample in recorders["realtime"].samples + recorders["voice"].samples:
                sample.server = sample.server or stored_metrics(server.data_dir, sample.response_id)
    levels = []
    for protocol, rec in recorders.items():
        level = rec.level_report()
        level["protocol"] = protocol
        levels.append(level)
    summary = {
        lv["protocol"]: {
            "client_voice_to_voice_ms": lv["summary"]["voice_to_voice_ms"],
            "server_voice_to_voice_ms": lv["summary"]["server"]["voice_to_voice_ms"],
        }
        for lv in levels
    }
    pairs = [
        (q["voice"], q["realtime"]) for q in by_question.values() if q.get("voice") and q.get("realtime")
    ]
    second_minus_first = [
        q[other] - q[first[name]]
        for name, q in by_question.items()
        if q.get("voice") and q.get("realtime")
        for other in ("voice", "realtime")
        if other != first[name]
    ]
    voice_p50 = summary["voice"]["client_voice_to_voice_ms"]["p50"]
    realtime_p50 = summary["realtime"]["client_voice_to_voice_ms"]["p50"]
    extra = {
        "order": "interleaved per question, alternating which protocol goes first",
        "summary": summary,
        "ratio_p50": round(realtime_p50 / voice_p50, 3) if voice_p50 and realtime_p50 else None,
        "paired": {
            "n": len(pairs),
            "median_difference_ms": round(float(np.median([r - v for v, r in pairs])), 1) if pairs else None,
            "median_ratio": round(float(np.median([r / v for v, r in pairs])), 3) if pairs else None,
        },
        "second_minus_first_median_ms": round(float(np.median(second_minus_first)), 1)
        if second_minus_first
        else None,
        # What each wire adds on top of the core: the client's voice-to-voice minus the server's own
        # (speech end → first audio handed to the writer) for the same reply.
        "client_minus_server_ms": {
            lv["protocol"]: percentiles(
                [
                    s["voice_to_voice_ms"] - s["server"]["voice_to_voice_ms"]
                    for s in lv["samples"]
                    if s["voice_to_voice_ms"] is not None and s["server"].get("voice_to_voice_ms") is not None
                ]
            )
            for lv in levels
        },
        "by_question": by_question,
    }
    print(
        f"realtime/voice p50 ratio {extra['ratio_p50']}, paired {extra['paired']}, "
        f"client minus server {extra['client_minus_server_ms']}",
        file=sys.stderr,
    )
    return save(args.name or "realtime", args, levels, extra, plot=plot_pairs)


def plot_pairs(report: dict[str, Any], path: Path, *, title: str) -> None:
    """The realtime benchmark's PNG: each question's voice-to-voice on both endpoints, and both histograms."""
    import matplotlib.pyplot as plt  # the bench extra, imported where it is used (as tools.loadtest.plot)

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4), dpi=80)
    names = list(report["by_question"])
    for protocol, style in (("voice", "o-"), ("realtime", "s-")):
        values = [report["by_question"][name].get(protocol) for name in names]
        left.plot(
            range(1, len(names) + 1), [np.nan if v is None else v for v in values], style, label=protocol
        )
    left.set_xlabel("question (each asked on both, seconds apart)")
    left.set_ylabel("voice_to_voice_ms (client side)")
    left.grid(True, alpha=0.3)
    left.legend()
    for level in report["levels"]:
        values = [s["voice_to_voice_ms"] for s in level["samples"] if s["voice_to_voice_ms"] is not None]
        right.hist(values, bins=20, alpha=0.5, label=f"/v1/{level['protocol']}")
    right.set_xlabel("voice_to_voice_ms")
    right.set_ylabel("turns")
    right.grid(True, alpha=0.3)
    right.legend()
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def stored_metrics(data_dir: Path, response_id: str | None) -> dict[str, Any]:
    """A reply's metrics as the server stored them (its turn record), read from its SQLite file."""
    if response_id is None:
        return {}
    with contextlib.closing(
        sqlite3.connect(f"file:{data_dir / 'conversations.sqlite3'}?mode=ro", uri=True)
    ) as db:
        row = db.execute("SELECT metrics FROM turns WHERE response_id = ?", (response_id,)).fetchone()
    return json.loads(row[0]) if row else {}
