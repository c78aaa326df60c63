"""The ``trio-voice`` command: ``serve`` runs the server, ``prepare`` readies the embedded models."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from .config import Config

SERVE_EPILOG = """\
With no --llm-url, the embedded llama.cpp server answers with SmolLM2-135M (demo quality).
Point --llm-url at Ollama (--llm-api ollama, e.g. http://127.0.0.1:11434) or any OpenAI-compatible
server (--llm-api openai, e.g. http://127.0.0.1:8000) for real answers.
"""


class JsonFormatter(logging.Formatter):
    """One JSON object per log line, for log shippers."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "ts": round(record.created, 3),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


def setup_logging(level: str, fmt: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
    for noisy in ("httpx", "httpcore", "hypercorn.access", "trio-websocket"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="trio-voice", description="Real-time voice AI server on Trio.")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the server", epilog=SERVE_EPILOG)
    d = Config()
    serve.add_argument("--host", default=d.host, help="address to listen on (default %(default)s)")
    serve.add_argument("--port", type=int, default=d.ws_port, help="WebSocket port (default %(default)s)")
    serve.add_argument("--http-port", type=int, default=d.http_port, help="HTTP port (default %(default)s)")
    serve.add_argument(
        "--data-dir", type=Path, default=d.data_dir, help="models cache and database (default %(default)s)"
    )
    serve.add_argument(
        "--db", type=Path, default=None, help="SQLite file (default DATA_DIR/conversations.sqlite3)"
    )
    serve.add_argument("--llm-url", default=None, help="external LLM server; default: the embedded one")
    serve.add_argument("--llm-api", choices=("openai", "ollama"), default=d.llm_api)
    serve.add_argument("--llm-model", default=d.llm_model, help="model name sent to the LLM server")
    serve.add_argument(
        "--llm-api-key", default=None, help="bearer key for the LLM server (or env OPENAI_API_KEY)"
    )
    serve.add_argument("--system-prompt", default=d.system_prompt)
    serve.add_argument(
        "--tts-workers", type=int, default=d.tts_workers, help="phrases synthesized at once per reply"
    )
    serve.add_argument(
        "--tts-instances", type=int, default=d.tts_instances, help="Piper instances shared by sessions"
    )
    serve.add_argument(
        "--tts-model", type=Path, default=None, help="a Piper .onnx voice (default en_US-joe-medium)"
    )
    serve.add_argument(
        "--stt-model", type=Path, default=None, help="a whisper.cpp ggml model (default tiny.en)"
    )
    serve.add_argument("--stt-threads", type=int, default=d.stt_threads)
    serve.add_argument(
        "--turn-model-threads", type=int, default=d.turn_model_threads, help="Smart Turn onnxruntime threads"
    )
    serve.add_argument("--llama-parallel", type=int, default=d.llama_parallel, help="embedded LLM slots")
    serve.add_argument("--llama-threads", type=int, default=d.llama_threads, help="embedded LLM threads")
    serve.add_argument("--max-sessions", type=int, default=d.max_sessions)
    serve.add_argument("--idle-timeout", type=float, default=d.idle_timeout)
    serve.add_argument(
        "--token",
        action="append",
        default=None,
        help="require this bearer token (repeatable; env TRIO_VOICE_TOKENS)",
    )
    serve.add_argument(
        "--allowed-origin", action="append", default=None, help="allowed WebSocket Origin (repeatable)"
    )
    serve.add_argument("--shutdown-grace", type=float, default=d.shutdown_grace)
    serve.add_argument("--log-format", choices=("text", "json"), default=d.log_format)
    serve.add_argument("--log-level", default=d.log_level)
    serve.add_argument(
        "--fake-engines",
        action="store_true",
        help="instant fake models from trio_voice.testing, for load tests and benchmarks only",
    )

    commands.add_parser("prepare", help="prepare and check the embedded models, then exit")
    return parser


def config_from_args(args: argparse.Namespace) -> Config:
    import os

    tokens = tuple(args.token or ()) or tuple(
        t for t in os.environ.get("TRIO_VOICE_TOKENS", "").split(",") if t
    )
    return Config(
        host=args.host,
        ws_port=args.port,
        http_port=args.http_port,
        data_dir=args.data_dir,
        db_path=args.db,
        llm_url=args.llm_url,
        llm_api=args.llm_api,
        llm_model=args.llm_model,
        llm_api_key=args.llm_api_key or os.environ.get("OPENAI_API_KEY"),
        system_prompt=args.system_prompt,
        tts_workers=args.tts_workers,
        tts_instances=args.tts_instances,
        tts_model=args.tts_model,
        stt_model=args.stt_model,
        stt_threads=args.stt_threads,
        turn_model_threads=args.turn_model_threads,
        llama_parallel=args.llama_parallel,
        llama_threads=args.llama_threads,
        max_sessions=args.max_sessions,
        idle_timeout=args.idle_timeout,
        tokens=tokens,
        allowed_origins=tuple(args.allowed_origin or ()),
        shutdown_grace=args.shutdown_grace,
        log_format=args.log_format,
        log_level=args.log_level,
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "prepare":
        setup_logging("INFO", "text")
        from .prepare import prepare_models

        return prepare_models(Config())
    config = config_from_args(args)
    setup_logging(config.log_level, config.log_format)
    from .runner import run_server

    return run_server(config, fake_engines=args.fake_engines)


if __name__ == "__main__":
    sys.exit(main())
