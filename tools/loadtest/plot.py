"""PNG plots of a load-test report: latency percentiles against concurrent sessions, and a latency histogram."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers and CI
import matplotlib.pyplot as plt

# Which latency a plot shows first: the one the user hears, if the run had spoken questions.
PREFERRED = ("voice_to_voice_ms", "first_audio_ms", "first_text_ms")


def main_metric(report: dict[str, Any]) -> str:
    for metric in PREFERRED:
        if any(level["summary"][metric]["n"] for level in report["levels"]):
            return metric
    return "first_audio_ms"


# Server stages drawn beside the client's numbers, turn by turn (from response.done.metrics).
STAGES = ("speech_end_to_final_ms", "llm_first_token_ms", "first_phrase_ms")


def _per_turn(ax: Any, samples: list[dict[str, Any]], metric: str) -> None:
    """One session level: the metric turn by turn, with the server's stage times under it."""
    ordered = sorted(samples, key=lambda s: s["started_at"])
    x = list(range(1, len(ordered) + 1))
    ax.plot(x, [s[metric] for s in ordered], "o-", label=f"{metric} (client)")
    for stage in STAGES:
        values = [s["server"].get(stage) for s in ordered]
        if any(v is not None for v in values):
            ax.plot(x, [float("nan") if v is None else v for v in values], ".--", label=f"server {stage}")
    ax.set_xlabel("turn (in order)")
    ax.set_ylabel("ms")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    ax.set_title("turn by turn")


def plot_report(report: dict[str, Any], path: Path, *, title: str | None = None) -> None:
    """Write a PNG: percentiles vs sessions (when several levels ran) beside a histogram of every sample."""
    levels = report["levels"]
    metric = main_metric(report)
    several = len(levels) > 1
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), dpi=80)
    if not several:
        _per_turn(axes[0], levels[0]["samples"], metric)
    else:
        ax = axes[0]
        x = [level["sessions"] for level in levels]
        for q, style in (("p50", "o-"), ("p95", "s--"), ("p99", "^:")):
            ax.plot(x, [level["summary"][metric][q] for level in levels], style, label=q)
        ax.set_xscale("log", base=2)
        ax.set_xticks(x, [str(v) for v in x])
        ax.set_xlabel("concurrent sessions")
        ax.set_ylabel(f"{metric} (client side)")
        ax.grid(True, alpha=0.3)
        ax.legend()
        ax.set_title("latency vs concurrency")
    ax = axes[-1]
    if not any(level["samples"] for level in levels):
        _cpu(ax, levels)  # a report kept without its samples (capacity): show what the load cost instead
    else:
        _histogram(ax, levels, metric)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def _cpu(ax: Any, levels: list[dict[str, Any]]) -> None:
    x = [level["sessions"] for level in levels]
    for key, label in (("server_cpu_percent", "server"), ("client_cpu_percent", "load generator")):
        if all(key in level for level in levels):
            ax.plot(x, [level[key] for level in levels], "o-", label=label)
    ax.set_xlabel("concurrent sessions")
    ax.set_ylabel("CPU, % of one core")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    ax.set_title("CPU")


def _histogram(ax: Any, levels: list[dict[str, Any]], metric: str) -> None:
    for level in levels:
        values = [s[metric] for s in level["samples"] if s[metric] is not None]
        if values:
            ax.hist(values, bins=30, alpha=0.5, label=f"{level['sessions']} sessions")
    ax.set_xlabel(f"{metric}")
    ax.set_ylabel("turns")
    ax.grid(True, alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize="small")
    ax.set_title("distribution")
