"""``python -m tools.fuzz``: the command line of the fuzzing tool.

``codec`` runs the coverage-guided fuzzer over each decoder target (``tools.fuzz.targets``) for
``--seconds`` each, one target at a time, in a worker process (``tools.fuzz.worker``) per target::

    python -m tools.fuzz codec --seconds 600                 # every target, 600 s each
    python -m tools.fuzz codec --seconds 60 --target text    # one target

It prints executions, coverage (libFuzzer's edges and features) and distinct crashes per target, writes
each crashing input to ``--out``/crashes and a JSON summary to ``--out``/summary.json, and exits 1 if
anything crashed. The corpus is kept in ``--out``/corpus, so a later run goes on from where this one got.

Resource handling: a worker that libFuzzer ends early (an input ran past ``--timeout``, or memory past
``--rss-limit-mb``: both count as crashes) is started again for the rest of the target's time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import attrs

from .worker import CRASH_LINE

ROOT = Path(__file__).resolve().parent.parent.parent
MAX_RESTARTS = 50  # a target that keeps dying is reported, not retried forever


@attrs.define
class TargetStats:
    """What the workers of one target reported, summed over restarts."""

    target: str
    seconds: float = 0.0
    executions: int = 0
    edges: int = 0  # libFuzzer "cov": instrumented branches reached
    features: int = 0  # libFuzzer "ft": edges refined by hit counts and comparisons
    corpus: int = 0
    crashes: dict[str, str] = attrs.field(factory=dict)  # signature -> file holding the input
    restarts: int = 0


@attrs.frozen
class WorkerLog:
    executions: int
    edges: int
    features: int
    corpus: int
    crashes: dict[str, str]  # signature -> file, from the worker's crash lines
    death: str | None  # libFuzzer's reason for stopping early ("timeout", "out-of-memory", ...)
    death_input: str | None


def parse_worker_log(text: str) -> WorkerLog:
    """Read one worker's stderr: libFuzzer's status lines, final stats, and the worker's crash lines."""
    stat = re.search(r"stat::number_of_executed_units: (\d+)", text)
    runs = [int(n) for n in re.findall(r"^#(\d+)\s", text, re.M)]
    executions = int(stat[1]) if stat else max(runs, default=0)
    status = re.findall(r"cov: (\d+) ft: (\d+) corp: (\d+)/", text)
    edges, features, corpus = (int(n) for n in status[-1]) if status else (0, 0, 0)
    crashes = dict(re.findall(rf"^{CRASH_LINE}\t([^\t]+)\t(.+)$", text, re.M))
    death = re.search(r"==\d+== ERROR: libFuzzer: ([\w-]+)|^==\d+==ERROR: libFuzzer: ([\w-]+)", text, re.M)
    written = re.search(r"Test unit written to (\S+)", text)
    return WorkerLog(
        executions,
        edges,
        features,
        corpus,
        crashes,
        death=(death[1] or death[2]) if death else None,
        death_input=written[1] if written else None,
    )


def machine() -> dict[str, object]:
    """The CPU (lscpu's model name), core count and software the figures were measured with."""
    model = platform.processor() or "unknown"
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        found = re.search(r"^Model name:\s*(.+)$", lscpu, re.M)
        model = found[1].strip() if found else model
    except (OSError, subprocess.CalledProcessError):
        pass
    try:
        from importlib.metadata import version

        atheris_version = version("atheris")
    except Exception:  # the summary is still useful without it
        atheris_version = "not installed"
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "atheris": atheris_version,
    }


def write_dictionary(path: Path, tokens: Sequence[bytes]) -> None:
    """A libFuzzer dictionary: one quoted token per line, non-printable bytes as \\xNN."""

    def quote(token: bytes) -> str:
        return "".join(chr(b) if 0x20 <= b < 0x7F and b not in b'"\\' else f"\\x{b:02x}" for b in token)

    path.write_text("".join(f'"{quote(token)}"\n' for token in tokens), encoding="ascii")


def fuzz_target(
    name: str, *, seconds: float, runs: int | None, out: Path, args: argparse.Namespace
) -> TargetStats:
    """Fuzz one target for ``seconds`` (or ``runs`` executions), restarting the worker if libFuzzer stops it."""
    from .targets import TARGETS

    target = TARGETS[name]
    corpus, seeds, crashes, logs = (
        out / "corpus" / name,
        out / "seeds" / name,
        out / "crashes",
        out / "logs",
    )
    for folder in (corpus, seeds, crashes, logs):
        folder.mkdir(parents=True, exist_ok=True)
    for n, seed in enumerate(target.seeds()):
        (seeds / f"seed-{n:03d}").write_bytes(seed)
    dictionary = out / f"{name}.dict"
    write_dictionary(dictionary, target.tokens)
    log_path = logs / f"{name}.log"
    log_path.write_text("")

    stats = TargetStats(name)
    started = time.monotonic()
    while True:
        remaining = seconds - (time.monotonic() - started)
        if runs is None and remaining < 1:
            break
        command = [
            sys.executable,
            "-m",
            "tools.fuzz.worker",
            name,
            str(crashes),
            f"-max_len={target.max_len}",
            f"-timeout={args.timeout}",
            f"-rss_limit_mb={args.rss_limit_mb}",
            f"-artifact_prefix={crashes}/{name}-",
            "-print_final_stats=1",
            *([f"-dict={dictionary}"] if target.tokens else []),
            *([f"-runs={runs}"] if runs is not None else [f"-max_total_time={int(remaining)}"]),
            str(corpus),
            str(seeds),
        ]
        # libFuzzer reports on stderr: straight to the log, so a long run can be watched with tail -f.
        with log_path.open("ab") as log:
            start = log.tell()
            result = subprocess.run(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=log)
        with log_path.open("rb") as log:
            log.seek(start)
            worker = parse_worker_log(log.read().decode("utf-8", "replace"))
        stats.executions += worker.executions
        stats.edges, stats.features = max(stats.edges, worker.edges), max(stats.features, worker.features)
        stats.corpus = max(stats.corpus, worker.corpus)
        for signature, path in worker.crashes.items():
            stats.crashes.setdefault(signature, path)
        if result.returncode == 0:
            break
        reason = worker.death or f"worker exited with status {result.returncode}"
        stats.crashes.setdefault(f"libFuzzer:{reason}", worker.death_input or str(log_path))
        stats.restarts += 1
        if runs is not None or stats.restarts >= MAX_RESTARTS:
            break
    stats.seconds = time.monotonic() - started
    return stats


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tools.fuzz", description="Fuzz trio-voice's decoders.")
    sub = p.add_subparsers(dest="command", required=True)
    codec = sub.add_parser("codec", help="coverage-guided fuzzing of the wire codec and the form parser")
    codec.add_argument("--seconds", type=float, default=60.0, help="time per target (default %(default)s)")
    codec.add_argument("--runs", type=int, help="stop each target after this many executions instead")
    codec.add_argument(
        "--target",
        default="text,binary,form,events",
        help="comma list of targets: text, binary, form, events (default: all)",
    )
    codec.add_argument("--out", type=Path, default=ROOT / "artifacts" / "fuzz", help="corpus, crashes, logs")
    codec.add_argument("--timeout", type=int, default=10, help="seconds one input may take (default 10)")
    codec.add_argument(
        "--rss-limit-mb", type=int, default=1024, help="memory limit of a worker (default 1024)"
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        import atheris  # noqa: F401
    except ImportError:
        print("atheris is not installed: pip install -e '.[fuzz]'", file=sys.stderr)
        return 2
    from .targets import TARGETS

    names = [name.strip() for name in args.target.split(",") if name.strip()]
    unknown = [name for name in names if name not in TARGETS]
    if unknown:
        print(f"unknown target(s) {', '.join(unknown)}; known: {', '.join(TARGETS)}", file=sys.stderr)
        return 2
    about = machine()
    print(
        f"machine: {about['cpu']}, {about['cores']} cores, Python {about['python']}, atheris {about['atheris']}"
    )
    results = []
    for name in names:
        budget = f"{args.runs} runs" if args.runs is not None else f"{args.seconds:g} s"
        print(f"{name}: fuzzing for {budget} (log: {args.out / 'logs' / (name + '.log')})", flush=True)
        stats = fuzz_target(name, seconds=args.seconds, runs=args.runs, out=args.out, args=args)
        results.append(stats)
        print(
            f"{name}: {stats.executions:,} executions in {stats.seconds:.0f} s "
            f"({stats.executions / max(stats.seconds, 1e-9):,.0f}/s), coverage {stats.edges} edges / "
            f"{stats.features} features, corpus {stats.corpus}, crashes {len(stats.crashes)}",
            flush=True,
        )
        for signature, path in stats.crashes.items():
            print(f"  crash {signature}: {path}")
    total_crashes = sum(len(stats.crashes) for stats in results)
    total = sum(stats.executions for stats in results)
    print(f"total: {total:,} executions, {total_crashes} distinct crashes")
    summary = {"machine": about, "targets": [attrs.asdict(stats) for stats in results]}
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return 1 if total_crashes else 0
