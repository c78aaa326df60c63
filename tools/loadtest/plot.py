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


def plot_report(report: dict[str, Any], path: Path, *, title: str | None = None) -> None:
    """Write a PNG: percentiles vs sessions (when several levels ran) beside a histogram of every sample."""
    levels = report["levels"]
    metric = main_metric(report)
    several = len(levels) > 1
    fig, axes = plt.subplots(1, 2 if several else 1, figsize=(11 if several else 6, 4), dpi=80)
    axes = list(axes) if several else [axes]
    if several:
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
    for level in levels:
        values = [s[metric] for s in level["samples"] if s[metric] is not None]
        if values:
            ax.hist(values, bins=30, alpha=0.5, label=f"{level['sessions']} sessions")
    ax.set_xlabel(f"{metric}")
    ax.set_ylabel("turns")
    ax.grid(True, alpha=0.3)
    if several or levels:
        ax.legend(fontsize="small")
    ax.set_title("distribution")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
