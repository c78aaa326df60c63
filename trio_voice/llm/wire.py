"""The two LLM wire formats, sans-I/O: request bodies out, reply lines in, :class:`Chunk` records out.

Formats:

- ``openai``: ``POST /v1/chat/completions`` with ``stream: true``; the reply is Server-Sent Events, one
  ``data: {json}`` line per chunk, ended by ``data: [DONE]``. Spoken by llama.cpp's ``llama-server``, vLLM,
  LM Studio, Ollama's ``/v1`` and OpenAI itself.
- ``ollama``: ``POST /api/chat`` with ``stream: true``; the reply is NDJSON, one object per line, the last
  one with ``done: true`` and the token count in ``eval_count``.

Rules: this module imports neither trio nor httpx. A line in, at most one :class:`Chunk` out. Lines that
carry nothing (blank lines, SSE comments and non-``data`` fields, a role-only delta) give ``None``. Anything
the server should not have sent (malformed JSON, an ``{"error": ...}`` object, a JSON value of the wrong
shape) raises ``LLMError(code="llm_bad_response")``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from trio_voice.errors import LLMError

APIS = ("openai", "ollama")

OPENAI_CHAT_PATH = "/v1/chat/completions"
OPENAI_MODELS_PATH = "/v1/models"
OLLAMA_CHAT_PATH = "/api/chat"
OLLAMA_TAGS_PATH = "/api/tags"

# Enough of a bad line to recognise it in a log, not enough to flood one.
_SNIPPET_CHARS = 200


@attrs.frozen
class Chunk:
    """One parsed line of a streamed reply.

    ``delta`` is the new text (may be empty); ``done`` is true for the end-of-stream marker
    (``data: [DONE]`` or ``done: true``); ``finish_reason`` is the server's reason for stopping
    (``"stop"``, ``"length"``…) when this line gives one; ``tokens`` is the server's count of generated
    tokens when this line carries one.
    """

    delta: str = ""
    done: bool = False
    finish_reason: str | None = None
    tokens: int | None = None


def _check_api(api: str) -> None:
    if api not in APIS:
        raise ValueError(f"unknown LLM api {api!r}: expected one of {', '.join(APIS)}")


def _join(base_url: str, path: str) -> str:
    base = base_url.rstrip("/")
    # OpenAI clients conventionally take a base URL that already ends in /v1; accept both spellings.
    if path.startswith("/v1/") and base.endswith("/v1"):
        base = base[: -len("/v1")]
    return base + path


def chat_url(base_url: str, api: str) -> str:
    """The streaming chat endpoint of a server at ``base_url`` speaking ``api``."""
    _check_api(api)
    return _join(base_url, OPENAI_CHAT_PATH if api == "openai" else OLLAMA_CHAT_PATH)


def ready_url(base_url: str, api: str) -> str:
    """A cheap GET endpoint that answers 200 when the server is up (the model list)."""
    _check_api(api)
    return _join(base_url, OPENAI_MODELS_PATH if api == "openai" else OLLAMA_TAGS_PATH)


def _plain_messages(messages: Sequence[Mapping[str, str]]) -> list[dict[str, str]]:
    return [{"role": m["role"], "content": m["content"]} for m in messages]


def openai_chat_request(
    messages: Sequence[Mapping[str, str]], *, model: str, max_tokens: int, temperature: float
) -> dict[str, Any]:
    """The JSON body of a streaming OpenAI-compatible chat completion request."""
    return {
        "model": model,
        "messages": _plain_messages(messages),
        "stream": True,
        # Asks for a final chunk with the token count, so ChatResult.tokens is the server's own.
        "stream_options": {"include_usage": True},
        "max_tokens": max_tokens,
        "temperature": temperature,
    }


def ollama_chat_request(
    messages: Sequence[Mapping[str, str]], *, model: str, max_tokens: int, temperature: float
) -> dict[str, Any]:
    """The JSON body of a streaming Ollama ``/api/chat`` request."""
    return {
        "model": model,
        "messages": _plain_messages(messages),
        "stream": True,
        "options": {"num_predict": max_tokens, "temperature": temperature},
    }


def chat_request(
    api: str, messages: Sequence[Mapping[str, str]], *, model: str, max_tokens: int, temperature: float
) -> dict[str, Any]:
    """The JSON body of a streaming chat request in the format ``api`` (``"openai"`` or ``"ollama"``)."""
    _check_api(api)
    build = openai_chat_request if api == "openai" else ollama_chat_request
    return build(messages, model=model, max_tokens=max_tokens, temperature=temperature)


def _bad(message: str, line: str) -> LLMError:
    return LLMError(f"{message}: {line[:_SNIPPET_CHARS]!r}", code="llm_bad_response")


def _load_object(text: str, line: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        raise _bad("the LLM sent malformed JSON", line) from None
    if not isinstance(value, dict):
        raise _bad("the LLM sent a JSON value that is not an object", line)
    if "error" in value:
        error = value["error"]
        if isinstance(error, Mapping):
            error = error.get("message", error)
        raise LLMError(f"the LLM reported an error: {str(error)[:_SNIPPET_CHARS]}", code="llm_bad_response")
    return value


def _optional_int(value: Any, line: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad("the LLM sent a token count that is not an integer", line)
    return value


def _optional_str(value: Any, line: str, what: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise _bad(f"the LLM sent a {what} that is not a string", line)
    return value


def parse_sse_line(line: str) -> Chunk | None:
    """Parse one line of an OpenAI-compatible SSE reply (without its line ending).

    Returns ``None`` for lines that carry nothing: blank lines, comments (``:``), other SSE fields
    (``event:``, ``id:``, ``retry:``) and chunks without text, end or usage (the role-only first delta).

    Raises:
        LLMError: ``llm_bad_response`` for malformed JSON, a JSON value of the wrong shape, or an
            ``{"error": ...}`` object.
    """
    line = line.rstrip("\r\n")
    if not line or line.startswith(":"):
        return None
    field, _, value = line.partition(":")
    if field != "data":
        return None
    if value.startswith(" "):
        value = value[1:]
    if value.strip() == "[DONE]":
        return Chunk(done=True)
    obj = _load_object(value, line)

    choices = obj.get("choices") or []
    if not isinstance(choices, list):
        raise _bad("the LLM sent 'choices' that is not a list", line)
    delta_text = ""
    finish_reason = None
    if choices:
        choice = choices[0]
        if not isinstance(choice, Mapping):
            raise _bad("the LLM sent a choice that is not an object", line)
        delta = choice.get("delta") or {}
        if not isinstance(delta, Mapping):
            raise _bad("the LLM sent a delta that is not an object", line)
        delta_text = _optional_str(delta.get("content"), line, "delta content") or ""
        finish_reason = _optional_str(choice.get("finish_reason"), line, "finish_reason")

    usage = obj.get("usage")
    tokens = None
    if usage is not None:
        if not isinstance(usage, Mapping):
            raise _bad("the LLM sent 'usage' that is not an object", line)
        tokens = _optional_int(usage.get("completion_tokens"), line)

    if not delta_text and finish_reason is None and tokens is None:
        return None
    return Chunk(delta=delta_text, finish_reason=finish_reason, tokens=tokens)


def parse_ndjson_line(line: str) -> Chunk | None:
    """Parse one line of an Ollama ``/api/chat`` NDJSON reply (without its line ending).

    Returns ``None`` for blank lines and for non-final objects without text.

    Raises:
        LLMError: ``llm_bad_response`` for malformed JSON, a JSON value of the wrong shape, or an
            ``{"error": ...}`` object.
    """
    line = line.strip()
    if not line:
        return None
    obj = _load_object(line, line)

    message = obj.get("message") or {}
    if not isinstance(message, Mapping):
        raise _bad("the LLM sent a message that is not an object", line)
    delta_text = _optional_str(message.get("content"), line, "message content") or ""
    done = obj.get("done", False)
    if not isinstance(done, bool):
        raise _bad("the LLM sent 'done' that is not a boolean", line)
    if not done:
        return Chunk(delta=delta_text) if delta_text else None
    return Chunk(
        delta=delta_text,
        done=True,
        finish_reason=_optional_str(obj.get("done_reason"), line, "done_reason") or "stop",
        tokens=_optional_int(obj.get("eval_count"), line),
    )


def parse_line(api: str, line: str) -> Chunk | None:
    """Parse one reply line in the format ``api``: :func:`parse_sse_line` or :func:`parse_ndjson_line`."""
    _check_api(api)
    return parse_sse_line(line) if api == "openai" else parse_ndjson_line(line)
