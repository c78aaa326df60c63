"""The command line: options become the Config the server runs with; logs can be JSON lines."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import attrs
import pytest

from trio_voice.cli import JsonFormatter, build_parser, config_from_args, main, settings
from trio_voice.config import Config
from trio_voice.errors import ConfigError


def parse(*argv: str):
    return config_from_args(build_parser().parse_args(["serve", *argv]))


def test_defaults_serve_the_embedded_models_on_the_documented_ports() -> None:
    """With no options: ports 8765 and 8080, no external LLM, no tokens."""
    config = parse()
    assert (config.ws_port, config.http_port, config.llm_url, config.tokens) == (8765, 8080, None, ())


def test_external_llm_options_reach_the_config() -> None:
    """--llm-url/--llm-api/--llm-model point the server at Ollama or an OpenAI-compatible server."""
    config = parse("--llm-url", "http://127.0.0.1:11434", "--llm-api", "ollama", "--llm-model", "llama3.2")
    assert (config.llm_url, config.llm_api, config.llm_model) == (
        "http://127.0.0.1:11434",
        "ollama",
        "llama3.2",
    )


def test_model_thread_counts_reach_the_config() -> None:
    """The end-of-turn model runs on one thread unless told otherwise."""
    assert parse().turn_model_threads == 1
    assert parse("--turn-model-threads", "2").turn_model_threads == 2


def test_tokens_come_from_options_or_the_environment(monkeypatch) -> None:
    """Repeated --token options, or TRIO_VOICE_TOKENS as a comma-separated list."""
    assert parse("--token", "a", "--token", "b").tokens == ("a", "b")
    monkeypatch.setenv("TRIO_VOICE_TOKENS", "x,y")
    assert parse().tokens == ("x", "y")


def test_json_log_lines_are_objects_with_the_message() -> None:
    """--log-format json writes one JSON object per line, with level, logger and the formatted message."""
    record = logging.LogRecord(
        "trio_voice.session", logging.INFO, __file__, 1, "session %s opened", ("s1",), None
    )
    line = json.loads(JsonFormatter().format(record))
    assert (line["level"], line["logger"], line["message"]) == (
        "INFO",
        "trio_voice.session",
        "session s1 opened",
    )


LIMITS_PAGE = Path(__file__).resolve().parent.parent / "protocol" / "limits.md"


def documented_limit_fields() -> list[str]:
    """The Config fields named in the table of protocol/limits.md."""
    return re.findall(r"^\|[^|]+\|[^|]+\| `(\w+)` \|", LIMITS_PAGE.read_text(), flags=re.MULTILINE)


def changed_value(field: attrs.Attribute) -> str:
    """A valid value for ``field`` that differs from its default, as the command line would give it."""
    default = getattr(Config(), field.name)
    return str(default * 2 if default else 1)


def test_every_documented_limit_is_a_config_field() -> None:
    """limits.md's table names real Config fields (and there are a dozen of them)."""
    names = {field.name for field in attrs.fields(Config)}
    documented = documented_limit_fields()
    assert len(documented) >= 10 and set(documented) <= names


@pytest.mark.parametrize("name", documented_limit_fields())
def test_every_documented_limit_is_settable_from_the_command_line_and_the_environment(
    name, monkeypatch
) -> None:
    """--field-name VALUE and TRIO_VOICE_FIELD_NAME=VALUE both set the limit; the option wins over the env."""
    field = attrs.fields_dict(Config)[name]
    value = changed_value(field)
    flag = "--" + name.replace("_", "-")
    assert str(getattr(parse(flag, value), name)) in (value, str(float(value)))
    monkeypatch.setenv(f"TRIO_VOICE_{name.upper()}", value)
    assert str(getattr(parse(), name)) in (value, str(float(value)))
    default = str(getattr(Config(), name))
    assert str(getattr(parse(flag, default), name)) == default


def test_every_cli_setting_has_help() -> None:
    """Each option built from the Config table says what it is for."""
    for field in settings():
        assert field.metadata["help"], field.name


def test_out_of_bounds_values_are_refused_with_the_option_named(capsys) -> None:
    """An invalid value stops the server before it starts, naming the option and the bound."""
    assert main(["serve", "--tts-workers", "0"]) == 2
    assert "--tts-workers (tts_workers) must be at least 1" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"tts_workers": 0}, "tts_workers must be at least 1"),
        ({"llm_stall_timeout": 0.0}, "llm_stall_timeout must be more than 0"),
        ({"idle_timeout": -1.0}, "idle_timeout must be more than 0"),
        ({"vad_threshold": 1.5}, "vad_threshold must be at most 1"),
        ({"llm_api": "grpc"}, "llm_api must be one of openai, ollama"),
        ({"first_phrase_max_tokens": 80}, "must not exceed phrase_max_tokens"),
        ({"max_sessions": 0}, "max_sessions must be at least 1"),
    ],
)
def test_config_checks_its_invariants(values, message) -> None:
    """Config refuses values that would break the server later, with a message naming the field."""
    with pytest.raises(ConfigError, match=message):
        Config(**values)


def test_a_bad_environment_value_is_refused(monkeypatch) -> None:
    """TRIO_VOICE_MAX_SESSIONS=lots is a clear error, not a crash."""
    monkeypatch.setenv("TRIO_VOICE_MAX_SESSIONS", "lots")
    with pytest.raises(ConfigError, match="TRIO_VOICE_MAX_SESSIONS='lots' is not a valid int"):
        parse()


def test_database_url_comes_from_the_option_or_the_environment(monkeypatch, tmp_path) -> None:
    """--database-url (or TRIO_VOICE_DATABASE_URL) makes the store PostgreSQL; without it, the SQLite file."""
    monkeypatch.delenv("TRIO_VOICE_DATABASE_URL", raising=False)
    config = parse("--data-dir", str(tmp_path))
    assert (config.database_url, config.store_location) == (None, tmp_path / "conversations.sqlite3")
    url = "postgresql://trio@db.internal/voice"
    assert parse("--database-url", url).store_location == url
    monkeypatch.setenv("TRIO_VOICE_DATABASE_URL", url)
    assert parse().store_location == url
