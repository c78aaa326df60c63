"""The benchmark harness: one command per benchmark, each writing a JSON report and a PNG to ``benchmarks/``.

::

    python -m tools.bench first-audio     # issue 2: typed question → first audio byte, real models
    python -m tools.bench voice           # issue 3: spoken question → first reply audio; barge-in latency
    python -m tools.bench conversation    # 1, 2, 4, 8 concurrent spoken conversations, real models
    python -m tools.bench realtime        # issue 12: voice-to-voice on /v1/realtime beside /v1/voice, one run
    python -m tools.bench capacity        # --fake-engines server: sessions per core, CPU and RSS per session

Each command starts the server itself (``trio-voice serve --port 0 --http-port 0`` in a subprocess with a
throwaway data directory, ready when it prints its ready line; SIGTERM at the end) unless ``--url`` is
given. Numbers are measured, never assumed; BENCHMARKS.md quotes them.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shlex
import signal
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import trio

from tools.loadtest.plan import TEXT_QUESTIONS, Plan, Question
from tools.loadtest.plot import plot_report
from tools.loadtest.report import build_report, percentiles, write_report
from tools.loadtest.run import run_level, wall_clock
from trio_voice.config import default_data_dir

OUT_DIR = Path("benchmarks")
READY = re.compile(rb"trio-voice ready: (ws://\S+)\s+(http://\S+?)/?\s")
START_TIMEOUT = 180.0  # seconds for the server's ready line (the embedded models load in ~30 s)
STOP_TIMEOUT = 20.0  # seconds after SIGTERM before SIGKILL
LEVEL_PAUSE = 3.0  # seconds between capacity levels
STAGES_TEXT = ("llm_first_token_ms", "first_phrase_ms", "first_audio_ms", "total_ms")
STAGES_VOICE = (
    "speech_end_to_final_ms",
    "vad_hangover_ms",
    "llm_first_token_ms",
    "first_phrase_ms",
    "voice_to_voice_ms",
)


@attrs.frozen
class Server:
    url: str
    pid: int | None  # None when the benchmark was given --url
    http_url: str | None = None
    data_dir: Path | None = None  # the throwaway data directory of a server the benchmark started


def machine() -> dict[str, Any]:
    """Cores, CPU model, RAM, Python and the commit: what BENCHMARKS.md prints above each table."""
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = next(
        (line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")), "?"
    )
    meminfo = Path("/proc/meminfo").read_text()
    mem_kb = int(re.search(r"MemTotal:\s+(\d+)", meminfo).group(1))  # type: ignore[union-attr]
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
        ).stdout.strip()
    except OSError:
        commit = "?"
    return {
        "cores": os.cpu_count(),
        "cpu": model,
        "ram_gb": round(mem_kb / 2**20, 1),
        "python": platform.python_version(),
        "commit": commit,
        "load_avg_at_start": os.getloadavg(),
    }


def stt_model() -> Path | None:
    """An already converted whisper model, so a throwaway data dir does not convert it again."""
    for folder in ("models", "test-models"):
        found = sorted((default_data_dir() / folder).glob("whisper-*.ggml.bin"))
        if found:
            return found[0]
    return None


@asynccontextmanager
async def open_server(url: str | None, *, fake: bool, extra: list[str] = ()) -> AsyncIterator[Server]:  # type: ignore[assignment]
    """A trio-voice server in a subprocess (or the one at ``url``), stopped with SIGTERM on exit."""
    if url:
        yield Server(url, None)
        return
    with tempfile.TemporaryDirectory(prefix="trio-voice-bench-") as data_dir:
        cmd = [
            sys.executable,
            "-m",
            "trio_voice.cli",
            "serve",
            "--port",
            "0",
            "--http-port",
            "0",
            "--data-dir",
            data_dir,
        ]
        cmd += ["--fake-engines"] if fake else []
        model = stt_model()
        cmd += ["--stt-model", str(model)] if model and not fake else []
        cmd += ["--log-level", "WARNING", *extra]
        log = open(Path(data_dir) / "server.log", "wb")  # noqa: ASYNC230 - a log file, opened once before the server starts
        proc = await trio.lowlevel.open_process(cmd, stdout=subprocess.PIPE, stderr=log)
        try:
            seen = b""
            with trio.fail_after(START_TIMEOUT):
                while not (match := READY.search(seen)):
                    chunk = await proc.stdout.receive_some(4096)  # type: ignore[union-attr]
                    if not chunk:
                        raise RuntimeError(f"server exited before it was ready: {cmd}")
                    seen += chunk
            print(f"server ready: {match.group(1).decode()} (pid {proc.pid})", file=sys.stderr)
            yield Server(match.group(1).decode(), proc.pid, match.group(2).decode(), Path(data_dir))
        finally:
            with trio.CancelScope(shield=True):
                proc.send_signal(signal.SIGTERM)
                with trio.move_on_after(STOP_TIMEOUT) as waiting:
                    await proc.wait()
                if waiting.cancelled_caught:
                    proc.kill()
                    await proc.wait()
                log.close()
                tail = (Path(data_dir) / "server.log").read_text(errors="replace").splitlines()[-15:]
                problems = [line for line in tail if "ERROR" in line or "Traceback" in line]
                if problems:
                    print("server log (errors):\n  " + "\n  ".join(problems), file=sys.stderr)


def spoken_questions(args: argparse.Namespace) -> list[Question]:
    from tools.make_speech import ensure_speech

    return [Question.from_wav(p) for p in ensure_speech(args.speech_dir)]


def stage_table(level: dict[str, Any], stages: tuple[str, ...]) -> dict[str, Any]:
    return {stage: level["summary"]["server"][stage] for stage in stages}


def save(
    name: str,
    args: argparse.Namespace,
    levels: list[dict],
    extra: dict[str, Any],
    *,
    keep_samples: bool = True,
    plot: Any = plot_report,
) -> dict:
    meta = {
        "benchmark": name,
        "date": wall_clock(),
        "command": " ".join(["python -m tools.bench", *sys.argv[1:]]),
        "machine": machine(),
        **extra,
    }
    report = build_report(levels, meta=meta)
    out = Path(args.out)
    plot(report, out / f"{name}.png", title=f"trio-voice {name}")
    if not keep_samples:
        for level in report["levels"]:
            level["samples"] = []
    write_report(out / f"{name}.json", report)
    print(f"wrote {out / name}.json and .png", file=sys.stderr)
    return report


async def bench_first_audio(args: argparse.Namespace) -> dict:
    """Typed questions one at a time on the embedded models: message.create → first audio byte."""
    plan = Plan(
        questions=[Question.typed(t) for t in TEXT_QUESTIONS],
        think_time=args.think_time,
        conversation_turns=args.conversation_turns or None,
    )
    async with open_server(args.url, fake=False) as server:
        rec = await run_level(server.url, plan, sessions=1, ramp=1, turns=args.turns, server_pid=server.pid)
    level = rec.level_report()
    return save(args.name or "first-audio", args, [level], {"stages": stage_table(level, STAGES_TEXT)})


def question_texts(speech_dir: Path | None) -> dict[str, str]:
    """WAV file name → the words it says, from the listings ``tools.make_speech`` writes beside them."""
    from tools.make_speech import default_dir

    texts: dict[str, str] = {}
    for listing in (speech_dir or default_dir()).glob("?-questions.txt"):
        for line in listing.read_text(encoding="utf-8").splitlines():
            name, text, *_ = line.split("\t")
            texts[name] = text.replace(",", "")
    return texts


def transcript_wer(level: dict[str, Any], texts: dict[str, str], questions: list[Question]) -> float | None:
    """Mean word error rate of the final transcripts against what the questions say."""
    from trio_voice.wer import word_error_rate

    by_turn = {n: q.name for n, q in enumerate(questions)}
    rates = [
        word_error_rate(texts[by_turn[s["turn"] % len(questions)]], s["transcript"])
        for s in level["samples"]
        if s["transcript"] is not None and by_turn[s["turn"] % len(questions)] in texts
    ]
    return round(sum(rates) / len(rates), 3) if rates else None


async def speculation_counts(server: Server) -> dict[str, float]:
    """The server's speculative-reply and turn-end counters, from /metrics."""
    import httpx

    if server.http_url is None:
        return {}
    async with httpx.AsyncClient(trust_env=False, timeout=10) as http:
        text = (await http.get(server.http_url + "/metrics")).text
    found = re.findall(
        r'^trio_voice_(speculative_replies_total|turn_ends_total)\{\w+="(\w+)"\} (\S+)$', text, re.M
    )
    return {f"{name.removesuffix('_total')}:{label}": float(value) for name, label, value in found}


async def bench_voice(args: argparse.Namespace) -> dict:
    """Spoken questions streamed in real time, one session: voice-to-voice in the default (semantic) turn
    detection and in the old fixed-silence mode, in one run; questions with a mid-sentence pause, counting
    replies that started before the user had finished; then barge-in on long replies."""
    from tools.make_speech import ensure_paused_speech, ensure_speech
    from trio_voice import codec

    short = spoken_questions(args)
    paused = [Question.from_wav(p) for p in ensure_paused_speech(args.speech_dir)]
    texts = question_texts(args.speech_dir)
    modes = {
        "semantic": None,  # the server's default
        "server_vad": codec.TurnDetection(type="server_vad", silence_ms=500),
    }
    # Barge-in: every other question asks for a long answer, and the next question interrupts it.
    stories = [Question.from_wav(p) for p in ensure_speech(args.speech_dir, stories=True)]
    mixed = [q for pair in zip(short, stories, strict=False) for q in pair]  # as many pairs as stories
    barge = Plan(
        questions=mixed,
        think_time=args.think_time,
        interrupt_share=0.5,
        interrupt_by="speech",
        conversation_turns=2,
    )
    levels: dict[str, dict[str, Any]] = {}
    extra: dict[str, Any] = {"modes": {}}
    async with open_server(args.url, fake=False) as server:
        for questions, label in ((short, ""), (paused, "-paused")):
            for mode, detection in modes.items():
                plan = Plan(
                    questions=questions,
                    think_time=args.think_time,
                    conversation_turns=args.conversation_turns or None,
                    turn_detection=detection,
                )
                before = await speculation_counts(server)
                turns = len(questions) if label else args.turns
                rec = await run_level(
                    server.url, plan, sessions=1, ramp=1, turns=turns, server_pid=server.pid
                )
                after = await speculation_counts(server)
                level = rec.level_report()
                level["mode"] = mode + label
                levels[mode + label] = level
                v2v = level["summary"]["voice_to_voice_ms"]
                extra["modes"][mode + label] = {
                    "voice_to_voice_ms": v2v,
                    "stages": stage_table(level, STAGES_VOICE),
                    "premature_replies": level["premature_replies"],
                    "speculative_replies": level["speculative_replies"],
                    "turns": level["turns"],
                    "transcript_wer": transcript_wer(level, texts, questions),
                    "server_counters": {
                        k: after[k] - before.get(k, 0.0) for k in after if after[k] != before.get(k)
                    },
                }
                print(
                    f"{mode}{label}: voice-to-voice p50 {v2v['p50']} p95 {v2v['p95']}, premature "
                    f"{level['premature_replies']}/{level['turns']}, speculative {level['speculative_replies']}",
                    file=sys.stderr,
                )
        save(args.name or "voice", args, list(levels.values()), extra)
        rec = await run_level(
            server.url, barge, sessions=1, ramp=1, turns=args.barge_in_turns, server_pid=server.pid
        )
    level = rec.level_report()
    interrupted = [s for s in level["samples"] if s["interrupt"] == "speech"]
    barge_extra = {
        "interruption": {
            "attempted": len([s for s in level["samples"] if s["interrupt"]]),
            "landed": len(interrupted),
            "client_speech_start_to_done_ms": percentiles([s["interruption_ms"] for s in interrupted]),
            "server_interruption_ms": percentiles([s["server"].get("interruption_ms") for s in interrupted]),
            "reasons": sorted({str(s["reason"]) for s in interrupted}),
        },
    }
    return save((args.name or "voice") + "-barge-in", args, [level], barge_extra)


async def bench_conversation(args: argparse.Namespace) -> dict:
    """1, 2, 4, 8 … concurrent spoken conversations on the embedded models."""
    plan = Plan(questions=spoken_questions(args), think_time=args.think_time, listen=True)
    levels = []
    async with open_server(args.url, fake=False) as server:
        for n in (int(x) for x in args.levels.split(",")):
            rec = await run_level(
                server.url, plan, sessions=n, ramp=2, turns=args.turns, server_pid=server.pid
            )
            levels.append(rec.level_report())
            s = levels[-1]["summary"]
            print(
                f"{n} sessions: voice-to-voice p50 {s['voice_to_voice_ms']['p50']} p95 {s['voice_to_voice_ms']['p95']}",
                file=sys.stderr,
            )
    conversational = [
        lv["sessions"] for lv in levels if (lv["summary"]["voice_to_voice_ms"]["p95"] or 1e9) <= args.limit_ms
    ]
    return save(
        args.name or "conversation",
        args,
        levels,
        {"p95_limit_ms": args.limit_ms, "conversational_up_to": max(conversational, default=0)},
    )


async def bench_realtime(args: argparse.Namespace) -> dict:
    """The same spoken questions on /v1/voice and /v1/realtime, one server, interleaved: voice-to-voice."""
    from tools.bench_realtime import bench_realtime as run

    return await run(args)


def levels_idle_rss(done: list[dict], current: dict) -> float:
    first = done[0] if done else current
    return first.get("server_rss_start_mb", 0.0)


async def bench_capacity(args: argparse.Namespace) -> dict:
    """Fake engines: step concurrency up until p99 added latency or the error rate crosses its threshold."""
    plan = Plan(
        questions=spoken_questions(args), think_time=args.think_time, frame_ms=args.frame_ms, listen=True
    )
    levels: list[dict] = []
    baseline: float | None = None
    extra = ["--max-sessions", "100000", "--idle-timeout", "600", *shlex.split(args.server_args)]
    async with open_server(args.url, fake=True, extra=extra) as server:
        for n in (int(x) for x in args.levels.split(",")):
            rec = await run_level(
                server.url, plan, sessions=n, ramp=args.ramp, duration=args.duration, server_pid=server.pid
            )
            level = rec.level_report()
            v2v = level["summary"]["voice_to_voice_ms"]
            baseline = v2v["p50"] if baseline is None else baseline
            attempts = level["turns"] + level["errors"].get("connect_failed:HandshakeError", 0)
            error_rate = level["error_count"] / max(1, attempts)
            added = None if v2v["p99"] is None or baseline is None else round(v2v["p99"] - baseline, 1)
            cores = os.cpu_count() or 1
            level.update(
                added_p99_ms=added,
                error_rate=round(error_rate, 4),
                # Against the RSS of the idle server before the first level (Python keeps freed memory).
                server_rss_per_session_kb=round(
                    (level.get("server_rss_mb", 0) - levels_idle_rss(levels, level)) * 1024 / n, 1
                ),
                server_cpu_per_session_percent=round(level.get("server_cpu_percent", 0) / n, 3),
                sessions_per_core_at_this_load=round(
                    n / max(0.01, level.get("server_cpu_percent", 0) / 100), 1
                ),
                cores=cores,
            )
            levels.append(level)
            print(
                f"{n} sessions: v2v p50 {v2v['p50']} p99 {v2v['p99']} added p99 {added} errors {level['error_count']} "
                f"server cpu {level.get('server_cpu_percent')}% rss {level.get('server_rss_mb')} MB "
                f"client cpu {level['client_cpu_percent']}%",
                file=sys.stderr,
            )
            if added is None or added > args.max_added_ms or error_rate > args.max_error_rate:
                break
            await trio.sleep(LEVEL_PAUSE)  # let the server close the last level's sessions
    return save(
        args.name or "capacity",
        args,
        levels,
        {
            "baseline_p50_ms": baseline,
            "max_added_ms": args.max_added_ms,
            "max_error_rate": args.max_error_rate,
            "frame_ms": args.frame_ms,
            "server_args": args.server_args,
            "load_average": os.getloadavg(),
        },
        keep_samples=False,
    )


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tools.bench", description="trio-voice benchmarks")
    sub = p.add_subparsers(dest="benchmark", required=True)

    def add(name: str, fn: Any, **defaults: Any) -> argparse.ArgumentParser:
        b = sub.add_parser(name, help=fn.__doc__.splitlines()[0])
        b.set_defaults(fn=fn)
        b.add_argument("--url", help="use this running server instead of starting one")
        b.add_argument(
            "--out", default=str(OUT_DIR), help="directory for the JSON and PNG (default %(default)s)"
        )
        b.add_argument("--think-time", type=float, default=defaults.pop("think_time", 1.0))
        b.add_argument(
            "--speech-dir",
            type=Path,
            default=None,
            help="spoken-question WAVs (default: made into the cache)",
        )
        b.add_argument("--name", help="file name of the JSON and PNG (default: the benchmark's name)")
        for key, value in defaults.items():
            b.add_argument(f"--{key.replace('_', '-')}", type=type(value), default=value)
        return b

    # conversation_turns: turns per WebSocket session (0: all in one). The LLM's prompt grows with the
    # history, so a long conversation on the embedded CPU model measures prompt growth, not the pipeline.
    add("first-audio", bench_first_audio, turns=22, think_time=0.5, conversation_turns=1)
    add("voice", bench_voice, turns=22, barge_in_turns=16, conversation_turns=1)
    add("conversation", bench_conversation, levels="1,2,4,8", turns=3, limit_ms=1500.0)
    add("realtime", bench_realtime)
    add(
        "capacity",
        bench_capacity,
        levels="10,50,100,200,400,800,1600",
        duration=20.0,
        ramp=50.0,
        frame_ms=20,
        max_added_ms=300.0,
        max_error_rate=0.01,
        # e.g. "--fake-vad silero" (the real VAD in the frame path) or "--workers 2"
        server_args="",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    trio.run(args.fn, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
