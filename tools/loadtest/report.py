"""What a load test measured: per-turn samples, error counts, summaries (p50/p95/p99) and the JSON report.

A :class:`Recorder` collects one level's results (one number of concurrent sessions) while the sessions
run; ``Recorder.level_report()`` turns them into plain JSON data, and ``build_report`` joins levels into
the report file the CLI and the benchmarks write. Nothing here does network I/O.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from .checks import ProtocolChecker, Violation

# Client-side metrics of a turn, in milliseconds, and the server-side ones copied from response.done.
CLIENT_METRICS = ("first_text_ms", "first_audio_ms", "voice_to_voice_ms", "interruption_ms")
SERVER_METRICS = (
    "llm_first_token_ms",
    "first_phrase_ms",
    "first_audio_ms",
    "total_ms",
    "speech_end_to_final_ms",
    "vad_hangover_ms",
    "voice_to_voice_ms",
    "interruption_ms",
)
OTHER_METRICS = ("reply_audio_s", "reply_chars")
REPLY_TEXT_CHARS = 160  # enough to see what the model said; reports stay small


@attrs.define
class TurnSample:
    """One turn as the client saw it. Times are client-side milliseconds; ``None`` when it never happened.

    ``first_text_ms`` / ``first_audio_ms`` count from the question (``message.create`` sent, or the last
    frame of the spoken question sent); ``voice_to_voice_ms`` is ``first_audio_ms`` of a spoken question;
    ``interruption_ms`` from the interruption sent (``response.cancel``, or the first frame of barge-in
    speech) to the interrupted reply's ``response.done``.
    """

    session: int
    turn: int
    kind: str  # "text" or "voice"
    started_at: float  # seconds since the level started
    interrupt: str | None = None  # None, "cancel" or "speech"
    dropped: bool = False  # the connection was dropped mid-reply and resumed
    response_id: str | None = None
    status: str | None = None  # response.done status, or "no_reply" / "timeout"
    reason: str | None = None
    first_text_ms: float | None = None
    first_audio_ms: float | None = None
    voice_to_voice_ms: float | None = None
    interruption_ms: float | None = None
    reply_audio_s: float = 0.0
    reply_chars: int = 0
    transcript: str | None = None
    # A spoken question whose reply started before the user had finished saying it (the turn was ended
    # at a mid-sentence pause): the server answered over the user.
    premature: bool = False
    reply_text: str | None = None  # response.done text, first REPLY_TEXT_CHARS characters
    server: dict[str, Any] = attrs.field(factory=dict)  # response.done.metrics


def percentiles(values: list[float]) -> dict[str, float | int | None]:
    """n, p50, p95, p99, mean and max of ``values`` (``None`` for an empty list), rounded to 0.1."""
    clean = [v for v in values if v is not None and math.isfinite(v)]
    if not clean:
        return {"n": 0, "p50": None, "p95": None, "p99": None, "mean": None, "max": None}
    arr = np.asarray(clean, dtype=float)
    p50, p95, p99 = np.percentile(arr, [50, 95, 99])
    r = lambda x: round(float(x), 1)  # noqa: E731
    return {
        "n": len(clean),
        "p50": r(p50),
        "p95": r(p95),
        "p99": r(p99),
        "mean": r(arr.mean()),
        "max": r(arr.max()),
    }


@attrs.define
class Recorder:
    """One level's live counters and results, shared by its sessions (all in one Trio thread)."""

    sessions: int
    samples: list[TurnSample] = attrs.field(factory=list)
    errors: Counter[str] = attrs.field(factory=Counter)
    violations: Counter[str] = attrs.field(factory=Counter)
    violation_examples: list[Violation] = attrs.field(factory=list)
    sessions_open: int = 0
    sessions_started: int = 0
    events: int = 0
    resumes: int = 0  # dropped connections whose session was resumed
    events_lost: int = 0  # across every session: seqs skipped (must be 0)
    events_duplicated: int = 0  # seqs received twice (must be 0)
    extra: dict[str, Any] = attrs.field(factory=dict)  # CPU, RSS, durations: filled by the runner

    def add_sample(self, sample: TurnSample) -> None:
        self.samples.append(sample)

    def error(self, kind: str) -> None:
        self.errors[kind] += 1

    def add_checker(self, checker: ProtocolChecker) -> None:
        """Fold a finished session's protocol checker into the level's counts."""
        self.violations.update(checker.counts)
        self.events += checker.events
        self.events_lost += checker.lost_events
        self.events_duplicated += checker.duplicate_events
        room = 50 - len(self.violation_examples)
        self.violation_examples.extend(checker.examples[: max(0, room)])

    def recent(self, metric: str, last: int = 200) -> list[float]:
        values = [getattr(s, metric) for s in self.samples[-last:]]
        return [v for v in values if v is not None]

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {m: percentiles([getattr(s, m) for s in self.samples]) for m in CLIENT_METRICS}
        for m in OTHER_METRICS:
            out[m] = percentiles([getattr(s, m) for s in self.samples if s.status == "completed"])
        out["server"] = {m: percentiles([s.server.get(m) for s in self.samples]) for m in SERVER_METRICS}
        return out

    def level_report(self) -> dict[str, Any]:
        statuses = Counter(s.status or "unknown" for s in self.samples)
        spoken = [s for s in self.samples if s.kind == "voice"]
        return {
            "sessions": self.sessions,
            "turns": len(self.samples),
            "statuses": dict(statuses),
            "premature_replies": sum(s.premature for s in spoken),
            "speculative_replies": sum(bool(s.server.get("speculative")) for s in spoken),
            "errors": dict(self.errors),
            "error_count": sum(self.errors.values()),
            "events": self.events,
            "drops": sum(1 for s in self.samples if s.dropped),
            "resumes": self.resumes,
            "events_lost": self.events_lost,
            "events_duplicated": self.events_duplicated,
            "violations": dict(self.violations),
            "violation_count": sum(self.violations.values()),
            "violation_examples": [attrs.asdict(v) for v in self.violation_examples],
            **self.extra,
            "summary": self.summary(),
            "samples": [attrs.asdict(s) for s in self.samples],
        }


def build_report(levels: list[dict[str, Any]], *, meta: dict[str, Any]) -> dict[str, Any]:
    """The whole report: ``meta`` (command, options, machine), every level, and totals."""
    return {
        **meta,
        "totals": {
            "turns": sum(level["turns"] for level in levels),
            "errors": sum(level["error_count"] for level in levels),
            "violations": sum(level["violation_count"] for level in levels),
            "resumes": sum(level.get("resumes", 0) for level in levels),
            "events_lost": sum(level.get("events_lost", 0) for level in levels),
            "events_duplicated": sum(level.get("events_duplicated", 0) for level in levels),
        },
        "levels": levels,
    }


def write_report(path: Path, report: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=1, default=str) + "\n", encoding="utf-8")


def load_report(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))
