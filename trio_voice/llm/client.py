"""The LLM client: one streamed chat reply over a shared ``httpx.AsyncClient``, in either wire format.

Error handling: every httpx exception is mapped to :class:`~trio_voice.errors.LLMError` in one place,
:func:`_mapped_httpx_errors`::

    httpx.ConnectError, httpx.ConnectTimeout       -> llm_unreachable
    HTTP status >= 400                             -> llm_http_error (status and a body snippet in the message)
    httpx.ReadError, httpx.RemoteProtocolError,
    other network errors, a stream without an end  -> llm_stream_broken
    other httpx timeouts (only if the caller set them) -> llm_timeout
    other transport errors (bad scheme, proxy)     -> llm_unreachable
    malformed reply lines (see trio_voice.llm.wire) -> llm_bad_response

Timeouts belong to the caller: nothing here waits with a deadline. Wrap :meth:`LLMClient.stream_chat` in
``trio.fail_after`` (first token) and restart a deadline from ``on_delta`` (stall). The shared
``httpx.AsyncClient`` should have a connect timeout and no read timeout: see :func:`make_http_client`.

Resource handling: cancelling :meth:`LLMClient.stream_chat` closes the HTTP response at once; the
connection is dropped rather than returned to the pool, so the server sees the disconnect and stops
generating.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence

import attrs
import httpx

from trio_voice.errors import LLMError
from trio_voice.llm import wire

logger = logging.getLogger(__name__)

# A local or LAN LLM server accepts a connection in milliseconds; 5 s means it is not there.
CONNECT_TIMEOUT = 5.0
# Connections kept to the LLM server, shared by all sessions (llama-server serves --parallel at once).
MAX_CONNECTIONS = 100
# How much of an error body goes into the LLMError message.
ERROR_BODY_SNIPPET = 300


def make_http_client(
    *, connect_timeout: float = CONNECT_TIMEOUT, trust_env: bool = True
) -> httpx.AsyncClient:
    """A new ``httpx.AsyncClient`` set up for streaming LLM replies: connect timeout only, no read,
    write or pool timeout (those belong to the caller). Use it as ``async with make_http_client() as http:``
    once at start-up and share it."""
    return httpx.AsyncClient(
        timeout=httpx.Timeout(None, connect=connect_timeout),
        limits=httpx.Limits(max_connections=MAX_CONNECTIONS, max_keepalive_connections=MAX_CONNECTIONS),
        trust_env=trust_env,
    )


@attrs.frozen
class ChatResult:
    """A finished reply: its full ``text``; ``tokens``, the server's count of generated tokens when it
    gave one, else the number of deltas; and the server's ``finish_reason`` (``None`` if it gave none)."""

    text: str
    tokens: int
    finish_reason: str | None


@contextlib.contextmanager
def _mapped_httpx_errors(url: str) -> Iterator[None]:
    """Translate httpx's exceptions into LLMError; the only place that does."""
    try:
        yield
    except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
        raise LLMError(f"cannot reach the LLM at {url}: {exc}", code="llm_unreachable") from None
    except (httpx.ReadError, httpx.RemoteProtocolError, httpx.NetworkError) as exc:
        raise LLMError(f"the LLM reply from {url} broke off: {exc}", code="llm_stream_broken") from None
    except httpx.TimeoutException as exc:
        raise LLMError(f"the LLM at {url} timed out: {exc}", code="llm_timeout") from None
    except httpx.TransportError as exc:
        raise LLMError(f"cannot reach the LLM at {url}: {exc!r}", code="llm_unreachable") from None


async def _raise_for_status(response: httpx.Response, url: str) -> None:
    if response.status_code < 400:
        return
    body = b""
    async for data in response.aiter_bytes():
        body += data
        if len(body) >= ERROR_BODY_SNIPPET:
            break
    snippet = body[:ERROR_BODY_SNIPPET].decode("utf-8", "replace").strip()
    raise LLMError(f"the LLM at {url} answered HTTP {response.status_code}: {snippet}", code="llm_http_error")


class LLMClient:
    """Streams chat replies from an OpenAI-compatible or Ollama server.

    Args:
        http: the shared client (see :func:`make_http_client`); this object never closes it.
        base_url: the server's root, e.g. ``http://127.0.0.1:11434`` (an OpenAI-style ``.../v1`` is
            accepted too). May be set later, as the embedded supervisor does once its server is up.
        api: ``"openai"`` or ``"ollama"``.
        model: the model name sent with each request.
        api_key: sent as ``Authorization: Bearer ...`` when given.
        max_tokens, temperature: sampling limits sent with each request.
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        base_url: str,
        api: str = "openai",
        model: str,
        api_key: str | None = None,
        max_tokens: int = 160,
        temperature: float = 0.7,
    ) -> None:
        if api not in wire.APIS:
            raise ValueError(f"unknown LLM api {api!r}: expected one of {', '.join(wire.APIS)}")
        self.http = http
        self.base_url = base_url
        self.api = api
        self.model = model
        self.max_tokens = max_tokens
        self.temperature = temperature
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}

    def __repr__(self) -> str:
        return f"<LLMClient {self.api} {self.base_url or '(no url yet)'} model={self.model!r}>"

    def _url(self, make: Callable[[str, str], str]) -> str:
        if not self.base_url:
            raise LLMError("the LLM server has no URL yet (still starting)", code="llm_unreachable")
        return make(self.base_url, self.api)

    async def stream_chat(
        self, messages: Sequence[Mapping[str, str]], on_delta: Callable[[str], Awaitable[None]]
    ) -> ChatResult:
        """Stream one reply to ``messages`` (``{"role": ..., "content": ...}`` mappings).

        Awaits ``on_delta(text)`` for each non-empty piece of text as it arrives, in order, then returns
        the whole reply. A stream that ends after a ``finish_reason`` but without the end marker is
        accepted as complete; one that ends with neither is broken.

        Raises:
            LLMError: with ``code`` one of ``llm_unreachable``, ``llm_http_error``, ``llm_stream_broken``,
                ``llm_bad_response`` (see the module docstring). Exceptions from ``on_delta`` propagate.

        Cancellation: closes the HTTP stream before the cancellation propagates; no timeout is applied
        here.
        """
        url = self._url(wire.chat_url)
        body = wire.chat_request(
            self.api, messages, model=self.model, max_tokens=self.max_tokens, temperature=self.temperature
        )
        pieces: list[str] = []
        server_tokens: int | None = None
        finish_reason: str | None = None
        done = False
        with _mapped_httpx_errors(url):
            async with self.http.stream("POST", url, json=body, headers=self._headers) as response:
                await _raise_for_status(response, url)
                async for line in response.aiter_lines():
                    if done:
                        # Read to the end of the body (normally nothing is left) so the connection
                        # goes back to the pool instead of being closed.
                        continue
                    chunk = wire.parse_line(self.api, line)
                    if chunk is None:
                        continue
                    if chunk.tokens is not None:
                        server_tokens = chunk.tokens
                    if chunk.finish_reason is not None:
                        finish_reason = chunk.finish_reason
                    if chunk.delta:
                        pieces.append(chunk.delta)
                        await on_delta(chunk.delta)
                    done = chunk.done
            if not done and finish_reason is None:
                raise LLMError(
                    f"the LLM reply from {url} ended without an end marker after {len(pieces)} deltas",
                    code="llm_stream_broken",
                )
        tokens = server_tokens if server_tokens is not None else len(pieces)
        logger.debug("LLM reply done: %d tokens, finish_reason=%s", tokens, finish_reason)
        return ChatResult(text="".join(pieces), tokens=tokens, finish_reason=finish_reason)

    async def check_ready(self) -> None:
        """Make one cheap GET (the model list) to check the server is up; for ``/readyz``.

        Raises:
            LLMError: ``llm_unreachable`` or ``llm_http_error``. No timeout is applied here.
        """
        url = self._url(wire.ready_url)
        with _mapped_httpx_errors(url):
            async with self.http.stream("GET", url, headers=self._headers) as response:
                await _raise_for_status(response, url)
                await response.aread()
