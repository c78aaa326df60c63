"""``python -m tools.loadtest``: the command line of the load-test tool.

Example (four levels, spoken questions, a fifth of the turns interrupted by barge-in speech)::

    python -m tools.loadtest --url ws://127.0.0.1:8765/v1/voice --sessions 1,2,4,8 --ramp 2 \\
        --turns 5 --questions ~/.cache/trio-voice/bench-speech/*.wav --interrupt-share 0.2 \\
        --interrupt-by speech --report out.json --plot out.png

The same against the OpenAI Realtime API endpoint: ``--protocol realtime`` (the URL defaults to
``ws://127.0.0.1:8765/v1/realtime?model=trio-voice``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import trio

from .plan import Plan, Question, load_questions
from .report import build_report, write_report
from .run import run_level, wall_clock


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tools.loadtest", description="Load-test a trio-voice server.")
    p.add_argument(
        "--url", help="the server's endpoint (default ws://127.0.0.1:8765/v1/voice, or /v1/realtime)"
    )
    p.add_argument(
        "--protocol",
        choices=("voice", "realtime"),
        default="voice",
        help="/v1/voice's own protocol, or the OpenAI Realtime API at /v1/realtime",
    )
    p.add_argument(
        "--sessions", default="10", help="concurrent sessions; a comma list runs one level each (1,2,4)"
    )
    p.add_argument(
        "--ramp", type=float, default=10.0, help="sessions started per second (default %(default)s)"
    )
    stop = p.add_mutually_exclusive_group()
    stop.add_argument("--duration", type=float, help="seconds per level after the ramp")
    stop.add_argument("--turns", type=int, help="turns per session")
    p.add_argument(
        "--think-time", type=float, default=1.0, help="seconds between a reply's end and the next question"
    )
    p.add_argument(
        "--interrupt-share", type=float, default=0.0, help="fraction of turns interrupted after first audio"
    )
    p.add_argument("--interrupt-by", choices=("speech", "cancel"), default="cancel")
    p.add_argument("--interrupt-wav", type=Path, help="barge-in speech (default: the next spoken question)")
    p.add_argument(
        "--questions",
        nargs="+",
        default=["text"],
        help="'text' (built-in typed questions), FILE.wav (spoken), FILE.txt (typed, one per line) or literal text",
    )
    p.add_argument("--frame-ms", type=int, default=20, help="audio per binary frame, sent in real time")
    p.add_argument(
        "--tail-silence", type=float, default=0.8, help="seconds of silence after each spoken question"
    )
    p.add_argument(
        "--idle-audio",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="stream silence between questions (default: when questions are spoken)",
    )
    p.add_argument("--turn-timeout", type=float, default=30.0)
    p.add_argument(
        "--conversation-turns",
        type=int,
        help="turns per WebSocket session, then reconnect with an empty history (default: one session)",
    )
    p.add_argument(
        "--listen",
        action="store_true",
        help="wait out each reply's audio (played in real time) before thinking",
    )
    p.add_argument(
        "--drop-rate",
        type=float,
        default=0.0,
        help="fraction of turns whose connection is dropped (no close frame) mid-reply, then resumed",
    )
    p.add_argument("--server-pid", type=int, help="read the server's CPU and RSS from /proc")
    p.add_argument("--report", type=Path, help="write the JSON report here")
    p.add_argument("--plot", type=Path, help="write a PNG plot here")
    p.add_argument("--quiet", action="store_true", help="no progress line")
    return p


def plan_from_args(args: argparse.Namespace) -> Plan:
    return Plan(
        questions=load_questions(args.questions),
        think_time=args.think_time,
        interrupt_share=args.interrupt_share,
        interrupt_by=args.interrupt_by,
        interrupt_speech=Question.from_wav(args.interrupt_wav) if args.interrupt_wav else None,
        frame_ms=args.frame_ms,
        tail_silence_s=args.tail_silence,
        idle_audio=args.idle_audio,
        turn_timeout=args.turn_timeout,
        conversation_turns=args.conversation_turns,
        listen=args.listen,
        protocol=args.protocol,
        drop_rate=args.drop_rate,
    )


def summary_text(level: dict) -> str:
    s = level["summary"]
    parts = [
        f"{level['sessions']:>4} sessions: {level['turns']} turns, {level['error_count']} errors, "
        f"{level['violation_count']} violations"
    ]
    if level.get("drops"):
        parts.append(
            f"{level['drops']} drops, {level['resumes']} resumed, {level['events_lost']} events lost, "
            f"{level['events_duplicated']} duplicated"
        )
    for metric in ("first_text_ms", "first_audio_ms", "voice_to_voice_ms", "interruption_ms"):
        if s[metric]["n"]:
            parts.append(
                f"{metric} p50 {s[metric]['p50']} p95 {s[metric]['p95']} p99 {s[metric]['p99']} (n={s[metric]['n']})"
            )
    if level["errors"]:
        parts.append(f"errors: {level['errors']}")
    if level["violations"]:
        parts.append(f"violations: {level['violations']}")
    return "\n    ".join(parts)


def default_url(protocol: str) -> str:
    if protocol == "realtime":
        return "ws://127.0.0.1:8765/v1/realtime?model=trio-voice"
    return "ws://127.0.0.1:8765/v1/voice"


async def run(args: argparse.Namespace) -> dict:
    plan = plan_from_args(args)
    args.url = args.url or default_url(args.protocol)
    if args.duration is None and args.turns is None:
        args.duration = 30.0
    levels = []
    for sessions in (int(n) for n in str(args.sessions).split(",")):
        recorder = await run_level(
            args.url,
            plan,
            sessions=sessions,
            ramp=args.ramp,
            duration=args.duration,
            turns=args.turns,
            server_pid=args.server_pid,
            progress=None if args.quiet else sys.stderr,
        )
        level = recorder.level_report()
        levels.append(level)
        print(summary_text(level), file=sys.stderr, flush=True)
    options = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    return build_report(levels, meta={"tool": "tools.loadtest", "date": wall_clock(), "options": options})


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    report = trio.run(run, args)
    if args.report:
        write_report(args.report, report)
    if args.plot:
        from .plot import plot_report

        plot_report(report, args.plot)
    bad = report["totals"]["violations"]
    return 1 if bad else 0
