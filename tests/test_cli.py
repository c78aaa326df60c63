"""The command line: options become the Config the server runs with; logs can be JSON lines."""

from __future__ import annotations

import json
import logging

from trio_voice.cli import JsonFormatter, build_parser, config_from_args


def parse(*argv: str):
    return config_from_args(build_parser().parse_args(["serve", *argv]))


def test_defaults_serve_the_embedded_models_on_the_documented_ports() -> None:
    """With no options: ports 8765 and 8080, no external LLM, no tokens."""
    config = parse()
    assert (config.ws_port, config.http_port, config.llm_url, config.tokens) == (8765, 8080, None, ())


def test_external_llm_options_reach_the_config() -> None:
    """--llm-url/--llm-api/--llm-model point the server at Ollama or an OpenAI-compatible server."""
    config = parse("--llm-url", "http://127.0.0.1:11434", "--llm-api", "ollama", "--llm-model", "llama3.2")
    assert (config.llm_url, config.llm_api, config.llm_model) == ("http://127.0.0.1:11434", "ollama", "llama3.2")


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
    record = logging.LogRecord("trio_voice.session", logging.INFO, __file__, 1, "session %s opened", ("s1",), None)
    line = json.loads(JsonFormatter().format(record))
    assert (line["level"], line["logger"], line["message"]) == ("INFO", "trio_voice.session", "session s1 opened")
