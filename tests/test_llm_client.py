"""LLMClient against real loopback servers (tests/llm_servers.py): both wire formats, every failure
mapped to its code, and cancellation closing the stream."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator

import httpx
import pytest
import trio

from tests.llm_servers import RecordedRequest, ScriptedReply, open_fake_llm, refused_url
from trio_voice.errors import LLMError
from trio_voice.llm.client import ChatResult, LLMClient, make_http_client

MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
TOKENS = ("Hello", " there", ", friend", ".")

# Guard on every test that talks to a socket: a hang fails the test instead of the run.
IO_GUARD = 10


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with make_http_client() as client:
        yield client


class Deltas:
    """An on_delta callback that records what it is given."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    async def __call__(self, text: str) -> None:
        self.seen.append(text)


def _client(http: httpx.AsyncClient, base_url: str, api: str = "openai", **kwargs: object) -> LLMClient:
    return LLMClient(http, base_url=base_url, api=api, model="test-model", **kwargs)  # type: ignore[arg-type]


async def _code_of(client: LLMClient) -> str:
    with trio.fail_after(IO_GUARD), pytest.raises(LLMError) as info:
        await client.stream_chat(MESSAGES, Deltas())
    return info.value.code


# --- both formats, happy path -----------------------------------------------------------------------


@pytest.mark.parametrize("api", ["openai", "ollama"])
async def test_streams_deltas_in_order(http: httpx.AsyncClient, api: str) -> None:
    """Every token reaches on_delta in order, and the result holds the whole text."""
    deltas = Deltas()
    async with open_fake_llm(ScriptedReply(tokens=TOKENS)) as llm:
        with trio.fail_after(IO_GUARD):
            result = await _client(http, llm.base_url, api).stream_chat(MESSAGES, deltas)
    assert deltas.seen == list(TOKENS)
    assert result == ChatResult(text="Hello there, friend.", tokens=4, finish_reason="stop")


@pytest.mark.parametrize("api", ["openai", "ollama"])
async def test_tokens_come_from_server_count(http: httpx.AsyncClient, api: str) -> None:
    """The server's own token count (usage / eval_count) wins over the number of deltas."""
    async with open_fake_llm(ScriptedReply(tokens=TOKENS, usage=9)) as llm:
        with trio.fail_after(IO_GUARD):
            result = await _client(http, llm.base_url, api).stream_chat(MESSAGES, Deltas())
    assert result.tokens == 9


@pytest.mark.parametrize("api", ["openai", "ollama"])
async def test_tokens_fall_back_to_delta_count(http: httpx.AsyncClient, api: str) -> None:
    """Without a server count, tokens is the number of deltas."""
    async with open_fake_llm(ScriptedReply(tokens=("a", "b", "c"), report_usage=False)) as llm:
        with trio.fail_after(IO_GUARD):
            result = await _client(http, llm.base_url, api).stream_chat(MESSAGES, Deltas())
    assert result.tokens == 3


async def test_finish_reason_length_is_reported(http: httpx.AsyncClient) -> None:
    """A reply cut by max_tokens reports finish_reason "length"."""
    async with open_fake_llm(ScriptedReply(finish_reason="length")) as llm:
        with trio.fail_after(IO_GUARD):
            result = await _client(http, llm.base_url).stream_chat(MESSAGES, Deltas())
    assert result.finish_reason == "length"


async def test_openai_request_as_sent(http: httpx.AsyncClient) -> None:
    """The OpenAI request goes to /v1/chat/completions with the model, limits, messages and bearer key."""
    async with open_fake_llm() as llm:
        client = _client(http, llm.base_url, api_key="sk-test", max_tokens=33, temperature=0.1)
        with trio.fail_after(IO_GUARD):
            await client.stream_chat(MESSAGES, Deltas())
    [request] = llm.requests
    assert (request.method, request.path) == ("POST", "/v1/chat/completions")
    assert request.headers["authorization"] == "Bearer sk-test"
    assert request.json["model"] == "test-model"
    assert request.json["messages"] == MESSAGES
    assert (request.json["max_tokens"], request.json["temperature"]) == (33, 0.1)


async def test_ollama_request_as_sent(http: httpx.AsyncClient) -> None:
    """The Ollama request goes to /api/chat with limits in options and no auth header."""
    async with open_fake_llm() as llm:
        with trio.fail_after(IO_GUARD):
            await _client(http, llm.base_url, "ollama", max_tokens=21).stream_chat(MESSAGES, Deltas())
    [request] = llm.requests
    assert (request.method, request.path) == ("POST", "/api/chat")
    assert "authorization" not in request.headers
    assert request.json["options"] == {"num_predict": 21, "temperature": 0.7}


async def test_reply_can_depend_on_request(http: httpx.AsyncClient) -> None:
    """A scripted server given a function answers each request from its content."""

    def echo(request: RecordedRequest) -> ScriptedReply:
        return ScriptedReply(tokens=(request.json["messages"][-1]["content"].upper(),))

    async with open_fake_llm(echo) as llm:
        with trio.fail_after(IO_GUARD):
            result = await _client(http, llm.base_url).stream_chat(MESSAGES, Deltas())
    assert result.text == "HI"


async def test_connection_is_reused(http: httpx.AsyncClient) -> None:
    """Two replies in a row share one pooled connection: the body is read to its end after the marker."""
    async with open_fake_llm() as llm:
        client = _client(http, llm.base_url)
        with trio.fail_after(IO_GUARD):
            await client.stream_chat(MESSAGES, Deltas())
            await client.stream_chat(MESSAGES, Deltas())
    assert (len(llm.requests), llm.connections) == (2, 1)


async def test_finish_reason_without_done_marker_is_complete(http: httpx.AsyncClient) -> None:
    """A stream that gives a finish reason and then ends without [DONE] is a complete reply."""
    async with open_fake_llm(ScriptedReply(tokens=("ok",), done_marker=False)) as llm:
        with trio.fail_after(IO_GUARD):
            result = await _client(http, llm.base_url).stream_chat(MESSAGES, Deltas())
    assert (result.text, result.finish_reason) == ("ok", "stop")


async def test_openai_base_url_may_end_in_v1(http: httpx.AsyncClient) -> None:
    """A base URL ending in /v1, as OpenAI clients are often configured, reaches the same endpoint."""
    async with open_fake_llm() as llm:
        with trio.fail_after(IO_GUARD):
            await _client(http, llm.base_url + "/v1").stream_chat(MESSAGES, Deltas())
    assert [r.path for r in llm.requests] == ["/v1/chat/completions"]


async def test_base_url_can_be_set_later(http: httpx.AsyncClient) -> None:
    """A client built before its server is up fails as unreachable, then works once base_url is set."""
    client = _client(http, "")
    assert await _code_of(client) == "llm_unreachable"
    async with open_fake_llm() as llm:
        client.base_url = llm.base_url
        with trio.fail_after(IO_GUARD):
            result = await client.stream_chat(MESSAGES, Deltas())
    assert result.text == "".join(ScriptedReply().tokens)


async def test_unknown_api_is_rejected(http: httpx.AsyncClient) -> None:
    """An api other than openai or ollama is refused at construction."""
    with pytest.raises(ValueError, match="unknown LLM api"):
        LLMClient(http, base_url="http://x", api="grpc", model="m")


# --- failures, each mapped to its code --------------------------------------------------------------


async def test_refused_connection_is_unreachable(http: httpx.AsyncClient) -> None:
    """Nothing listening at the URL is llm_unreachable."""
    assert await _code_of(_client(http, refused_url())) == "llm_unreachable"


@pytest.mark.parametrize("api", ["openai", "ollama"])
async def test_http_500_is_http_error_with_body(http: httpx.AsyncClient, api: str) -> None:
    """An HTTP 500 is llm_http_error whose message has the status and the start of the body."""
    reply = ScriptedReply(status=500, error_body='{"error": "out of memory"}')
    async with open_fake_llm(reply) as llm:
        with trio.fail_after(IO_GUARD), pytest.raises(LLMError) as info:
            await _client(http, llm.base_url, api).stream_chat(MESSAGES, Deltas())
    assert info.value.code == "llm_http_error"
    assert "HTTP 500" in info.value.message
    assert "out of memory" in info.value.message


async def test_http_error_snippet_is_bounded(http: httpx.AsyncClient) -> None:
    """A huge error body is cut to a short snippet in the message."""
    async with open_fake_llm(ScriptedReply(status=503, error_body="x" * 100_000)) as llm:
        with trio.fail_after(IO_GUARD), pytest.raises(LLMError) as info:
            await _client(http, llm.base_url).stream_chat(MESSAGES, Deltas())
    assert info.value.code == "llm_http_error"
    assert len(info.value.message) < 500


@pytest.mark.parametrize("api", ["openai", "ollama"])
async def test_death_mid_stream_is_stream_broken(http: httpx.AsyncClient, api: str) -> None:
    """A server that drops the connection after two tokens is llm_stream_broken, after those two deltas."""
    deltas = Deltas()
    async with open_fake_llm(ScriptedReply(tokens=TOKENS, die_after=2)) as llm:
        with trio.fail_after(IO_GUARD), pytest.raises(LLMError) as info:
            await _client(http, llm.base_url, api).stream_chat(MESSAGES, deltas)
    assert info.value.code == "llm_stream_broken"
    assert deltas.seen == list(TOKENS[:2])


@pytest.mark.parametrize("api", ["openai", "ollama"])
async def test_clean_end_without_marker_is_stream_broken(http: httpx.AsyncClient, api: str) -> None:
    """A body that ends cleanly with neither end marker nor finish reason is llm_stream_broken."""
    async with open_fake_llm(ScriptedReply(omit_done=True)) as llm:
        assert await _code_of(_client(http, llm.base_url, api)) == "llm_stream_broken"


async def test_hang_up_before_answer_is_stream_broken(http: httpx.AsyncClient) -> None:
    """A server that reads the request and closes without answering is llm_stream_broken."""
    async with open_fake_llm(ScriptedReply(hang_up=True)) as llm:
        assert await _code_of(_client(http, llm.base_url)) == "llm_stream_broken"


@pytest.mark.parametrize("api", ["openai", "ollama"])
async def test_in_stream_error_object_is_bad_response(http: httpx.AsyncClient, api: str) -> None:
    """An error object sent part-way through the stream is llm_bad_response."""
    async with open_fake_llm(ScriptedReply(error_after=1)) as llm:
        assert await _code_of(_client(http, llm.base_url, api)) == "llm_bad_response"


async def test_on_delta_exception_propagates_unmapped(http: httpx.AsyncClient) -> None:
    """An exception raised by on_delta is the caller's own and comes out unchanged."""

    async def explode(text: str) -> None:
        raise KeyError(text)

    async with open_fake_llm() as llm:
        with trio.fail_after(IO_GUARD), pytest.raises(KeyError):
            await _client(http, llm.base_url).stream_chat(MESSAGES, explode)


# --- cancellation and timeouts belong to the caller -------------------------------------------------


async def test_cancelling_mid_stream_closes_connection(http: httpx.AsyncClient) -> None:
    """Cancelling the caller's scope after the first delta makes the server see the disconnect."""
    async with open_fake_llm(ScriptedReply(tokens=TOKENS, token_delay=3600)) as llm:
        deltas = Deltas()
        with trio.CancelScope() as scope:

            async def cancel_on_first(text: str) -> None:
                await deltas(text)
                scope.cancel()

            await _client(http, llm.base_url).stream_chat(MESSAGES, cancel_on_first)
        assert scope.cancelled_caught
        with trio.fail_after(IO_GUARD):
            await llm.disconnected.wait()
    assert deltas.seen == [TOKENS[0]]


async def test_first_token_timeout_is_the_callers(http: httpx.AsyncClient) -> None:
    """A server that stalls before the first token is cut by the caller's fail_after, which closes the stream."""
    async with open_fake_llm(ScriptedReply(first_token_delay=math.inf)) as llm:
        with pytest.raises(trio.TooSlowError), trio.fail_after(0.3):
            await _client(http, llm.base_url).stream_chat(MESSAGES, Deltas())
        with trio.fail_after(IO_GUARD):
            await llm.disconnected.wait()


# --- readiness --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("api", "path"), [("openai", "/v1/models"), ("ollama", "/api/tags")])
async def test_check_ready_gets_model_list(http: httpx.AsyncClient, api: str, path: str) -> None:
    """check_ready makes one GET of the api's model list and returns when it answers 200."""
    async with open_fake_llm() as llm:
        with trio.fail_after(IO_GUARD):
            await _client(http, llm.base_url, api).check_ready()
    assert [(r.method, r.path) for r in llm.requests] == [("GET", path)]


async def test_check_ready_unreachable(http: httpx.AsyncClient) -> None:
    """check_ready on a URL where nothing listens raises llm_unreachable."""
    with trio.fail_after(IO_GUARD), pytest.raises(LLMError) as info:
        await _client(http, refused_url()).check_ready()
    assert info.value.code == "llm_unreachable"
