"""Pure tests of the LLM wire formats: request bodies out, reply lines in, no sockets."""

from __future__ import annotations

import pytest

from trio_voice.errors import LLMError
from trio_voice.llm.wire import (
    Chunk,
    chat_request,
    chat_url,
    ollama_chat_request,
    openai_chat_request,
    parse_line,
    parse_ndjson_line,
    parse_sse_line,
    ready_url,
)

MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]


# --- request bodies --------------------------------------------------------------------------------


def test_openai_request_streams_with_usage() -> None:
    """The OpenAI body asks for a stream with a final usage chunk and carries the sampling limits."""
    body = openai_chat_request(MESSAGES, model="smollm2", max_tokens=160, temperature=0.7)
    assert body == {
        "model": "smollm2",
        "messages": MESSAGES,
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_tokens": 160,
        "temperature": 0.7,
    }


def test_ollama_request_puts_limits_in_options() -> None:
    """The Ollama body streams and puts max tokens and temperature in ``options``."""
    body = ollama_chat_request(MESSAGES, model="llama3.2", max_tokens=80, temperature=0.2)
    assert body == {
        "model": "llama3.2",
        "messages": MESSAGES,
        "stream": True,
        "options": {"num_predict": 80, "temperature": 0.2},
    }


def test_request_keeps_only_role_and_content() -> None:
    """Extra keys in a message (ids, timestamps) are not sent to the LLM."""
    body = chat_request(
        "openai", [{"role": "user", "content": "Hi", "id": "m1"}], model="m", max_tokens=1, temperature=0
    )
    assert body["messages"] == [{"role": "user", "content": "Hi"}]


def test_chat_request_rejects_unknown_api() -> None:
    """An api other than openai or ollama is a ValueError."""
    with pytest.raises(ValueError, match="unknown LLM api"):
        chat_request("grpc", MESSAGES, model="m", max_tokens=1, temperature=0)


def test_chat_url_per_api() -> None:
    """Each api has its chat endpoint under the base URL."""
    assert chat_url("http://h:1", "openai") == "http://h:1/v1/chat/completions"
    assert chat_url("http://h:1/", "ollama") == "http://h:1/api/chat"


def test_chat_url_accepts_openai_style_v1_base() -> None:
    """A base URL that already ends in /v1 does not get a second /v1."""
    assert chat_url("http://h:1/v1/", "openai") == "http://h:1/v1/chat/completions"


def test_ready_url_per_api() -> None:
    """The readiness probe is the model list of each api."""
    assert ready_url("http://h:1", "openai") == "http://h:1/v1/models"
    assert ready_url("http://h:1", "ollama") == "http://h:1/api/tags"


# --- SSE (OpenAI) -----------------------------------------------------------------------------------


def _sse_delta(content: str, finish: str = "null") -> str:
    return (
        'data: {"id":"c","object":"chat.completion.chunk","choices":[{"index":0,'
        f'"delta":{{"content":"{content}"}},"finish_reason":{finish}}}]}}'
    )


def test_sse_content_delta() -> None:
    """A data line with delta content gives a chunk with that text."""
    assert parse_sse_line(_sse_delta("Hel")) == Chunk(delta="Hel")


def test_sse_data_without_space() -> None:
    """``data:`` without the optional space parses the same."""
    assert parse_sse_line(_sse_delta("Hi").replace("data: ", "data:")) == Chunk(delta="Hi")


def test_sse_done_marker() -> None:
    """``data: [DONE]`` ends the stream."""
    assert parse_sse_line("data: [DONE]") == Chunk(done=True)


def test_sse_blank_line_is_nothing() -> None:
    """The blank line between events carries nothing."""
    assert parse_sse_line("") is None


def test_sse_comment_is_nothing() -> None:
    """A comment line (keep-alive) carries nothing."""
    assert parse_sse_line(": ping") is None


def test_sse_other_fields_are_nothing() -> None:
    """``event:``, ``id:`` and ``retry:`` lines carry nothing."""
    assert [parse_sse_line(x) for x in ("event: message", "id: 7", "retry: 100")] == [None, None, None]


def test_sse_role_only_delta_is_nothing() -> None:
    """The first chunk, which only names the assistant role, carries nothing."""
    line = 'data: {"choices":[{"index":0,"delta":{"role":"assistant","content":null},"finish_reason":null}]}'
    assert parse_sse_line(line) is None


def test_sse_finish_reason() -> None:
    """An empty delta with a finish reason reports the reason."""
    assert parse_sse_line(_sse_delta("", '"length"')) == Chunk(finish_reason="length")


def test_sse_usage_chunk() -> None:
    """The usage chunk (empty choices) reports the completion token count."""
    line = 'data: {"choices":[],"usage":{"prompt_tokens":9,"completion_tokens":42,"total_tokens":51}}'
    assert parse_sse_line(line) == Chunk(tokens=42)


def test_sse_trailing_carriage_return_is_ignored() -> None:
    """A CRLF line ending left on the line does not break parsing."""
    assert parse_sse_line("data: [DONE]\r") == Chunk(done=True)


def test_sse_malformed_json_is_bad_response() -> None:
    """A data line that is not JSON raises llm_bad_response."""
    with pytest.raises(LLMError) as info:
        parse_sse_line('data: {"choices": [')
    assert info.value.code == "llm_bad_response"


def test_sse_non_object_is_bad_response() -> None:
    """A JSON value that is not an object raises llm_bad_response."""
    with pytest.raises(LLMError) as info:
        parse_sse_line("data: [1, 2]")
    assert info.value.code == "llm_bad_response"


def test_sse_wrong_content_type_is_bad_response() -> None:
    """Delta content that is not a string raises llm_bad_response."""
    with pytest.raises(LLMError) as info:
        parse_sse_line('data: {"choices":[{"delta":{"content":5}}]}')
    assert info.value.code == "llm_bad_response"


def test_sse_error_object_is_bad_response_with_message() -> None:
    """An ``{"error": ...}`` object raises llm_bad_response carrying the server's message."""
    with pytest.raises(LLMError, match="context size exceeded") as info:
        parse_sse_line('data: {"error":{"code":400,"message":"context size exceeded","type":"x"}}')
    assert info.value.code == "llm_bad_response"


# --- NDJSON (Ollama) --------------------------------------------------------------------------------


def test_ndjson_content_delta() -> None:
    """A non-final line gives its message content as a delta."""
    line = '{"model":"m","message":{"role":"assistant","content":"Par"},"done":false}'
    assert parse_ndjson_line(line) == Chunk(delta="Par")


def test_ndjson_final_line() -> None:
    """The ``done: true`` line ends the stream with its reason and eval_count."""
    line = '{"model":"m","message":{"role":"assistant","content":""},"done":true,"done_reason":"stop","eval_count":17}'
    assert parse_ndjson_line(line) == Chunk(done=True, finish_reason="stop", tokens=17)


def test_ndjson_final_line_without_reason_means_stop() -> None:
    """Older Ollama versions send no done_reason; the reply stopped normally."""
    assert parse_ndjson_line('{"done":true}') == Chunk(done=True, finish_reason="stop")


def test_ndjson_empty_content_is_nothing() -> None:
    """A non-final line without text carries nothing."""
    assert parse_ndjson_line('{"message":{"role":"assistant","content":""},"done":false}') is None


def test_ndjson_blank_line_is_nothing() -> None:
    """A blank line carries nothing."""
    assert parse_ndjson_line("  ") is None


def test_ndjson_malformed_json_is_bad_response() -> None:
    """A line that is not JSON raises llm_bad_response."""
    with pytest.raises(LLMError) as info:
        parse_ndjson_line("{not json")
    assert info.value.code == "llm_bad_response"


def test_ndjson_error_object_is_bad_response() -> None:
    """Ollama's ``{"error": "..."}`` line raises llm_bad_response with the message."""
    with pytest.raises(LLMError, match="model 'x' not found") as info:
        parse_ndjson_line('{"error":"model \'x\' not found"}')
    assert info.value.code == "llm_bad_response"


def test_ndjson_non_boolean_done_is_bad_response() -> None:
    """A ``done`` that is not a boolean raises llm_bad_response."""
    with pytest.raises(LLMError) as info:
        parse_ndjson_line('{"done":"yes"}')
    assert info.value.code == "llm_bad_response"


def test_parse_line_dispatches_on_api() -> None:
    """parse_line reads SSE for openai and NDJSON for ollama."""
    assert parse_line("openai", "data: [DONE]") == Chunk(done=True)
    assert parse_line("ollama", '{"done":true,"eval_count":3}') == Chunk(
        done=True, finish_reason="stop", tokens=3
    )
