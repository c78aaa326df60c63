"""Scripted loopback LLM servers for tests: real sockets, real HTTP/1.1, scripted good and bad behaviour.

One server, :class:`FakeLLM`, speaks both wire formats (chosen by the request path: ``/v1/chat/completions``
streams OpenAI SSE, ``/api/chat`` streams Ollama NDJSON) and answers the cheap GETs ``/v1/models``,
``/api/tags`` and ``/health`` with 200. What it does for each chat request is a :class:`ScriptedReply`:
which tokens, how fast, and how it misbehaves (stall before the first token, die after N tokens, end
without the end marker, answer an HTTP error, hang up without answering). Give one reply for every
request, or a function from the :class:`RecordedRequest` to the reply.

Usage::

    async with open_fake_llm(ScriptedReply(tokens=("Hi", "!"))) as llm:
        client = LLMClient(http, base_url=llm.base_url, model="m")
        ...
        assert llm.requests[0].json["messages"] == [...]

    # or, in a nursery:
    llm = FakeLLM(reply)
    await nursery.start(llm.serve)

``refused_url()`` gives a URL where nothing listens (connection refused).

The server watches each connection while it streams, so ``llm.disconnected`` (a ``trio.Event``) is set
when a client goes away mid-reply — the way to check that cancelling a turn really closes its stream.
Everything is bounded: request heads up to 64 KiB, bodies up to 1 MiB.
"""

from __future__ import annotations

import contextlib
import functools
import json
import socket
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import attrs
import trio

MAX_HEAD = 64 * 1024
MAX_BODY = 2**20

_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


@attrs.frozen(kw_only=True)
class ScriptedReply:
    """What the fake LLM does for one chat request.

    Attributes:
        tokens: the text pieces streamed, one chunk each.
        first_token_delay: seconds before the first token (``math.inf``: stall forever).
        token_delay: seconds between tokens.
        die_after: close the socket abruptly after this many tokens (no end of the HTTP body); wins
            over ``error_after`` when both are given.
        omit_done: end the HTTP body cleanly after the tokens, but without ``[DONE]`` / ``done: true``
            and without a finish reason.
        done_marker: OpenAI only: False sends the finish reason (and usage) but no ``data: [DONE]``,
            as some OpenAI-compatible servers do.
        usage: the token count the server reports at the end (default: ``len(tokens)``; ``None`` with
            ``report_usage=False`` sends no count at all).
        report_usage: whether a count is sent (OpenAI: only if the request asked with ``stream_options``).
        finish_reason: sent with the last chunk.
        status: HTTP status; a status >= 400 answers ``error_body`` instead of a stream.
        error_body: the body of an error answer.
        error_after: after this many tokens, send an ``{"error": ...}`` object in-stream instead of going on.
        hang_up: read the request, then close the connection without answering.
    """

    tokens: Sequence[str] = ("Hello", " there", ", friend", ".")
    first_token_delay: float = 0.0
    token_delay: float = 0.0
    die_after: int | None = None
    omit_done: bool = False
    done_marker: bool = True
    usage: int | None = None
    report_usage: bool = True
    finish_reason: str = "stop"
    status: int = 200
    error_body: str = '{"error": {"message": "scripted failure"}}'
    error_after: int | None = None
    hang_up: bool = False


@attrs.frozen
class RecordedRequest:
    """A request as the fake server read it."""

    method: str
    path: str
    headers: dict[str, str]  # names lower-cased
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


def refused_url() -> str:
    """A loopback URL where nothing listens: connecting to it is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


class _Disconnected(Exception):
    pass


class _Reader:
    """Buffered reads of an HTTP/1.1 request from a stream (bounded)."""

    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        self.stream = stream
        self.buffer = bytearray()

    async def _fill(self) -> bool:
        data = await self.stream.receive_some(65536)
        self.buffer += data
        return bool(data)

    async def read_request(self) -> RecordedRequest | None:
        """The next request, or None if the client closed the connection between requests."""
        while b"\r\n\r\n" not in self.buffer:
            if len(self.buffer) > MAX_HEAD:
                raise ValueError("request head too large")
            if not await self._fill():
                if self.buffer:
                    raise _Disconnected
                return None
        head, _, rest = bytes(self.buffer).partition(b"\r\n\r\n")
        self.buffer = bytearray(rest)
        request_line, *header_lines = head.decode("latin-1").split("\r\n")
        method, path, _version = request_line.split(" ", 2)
        headers = {}
        for header in header_lines:
            name, _, value = header.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        if length > MAX_BODY:
            raise ValueError("request body too large")
        while len(self.buffer) < length:
            if not await self._fill():
                raise _Disconnected
        body = bytes(self.buffer[:length])
        del self.buffer[:length]
        return RecordedRequest(method, path, headers, body)


def _head(status: int, content_type: str, body: bytes | None) -> bytes:
    """A response head, with the whole body when given one, else for a chunked body to follow."""
    length = "Transfer-Encoding: chunked" if body is None else f"Content-Length: {len(body)}"
    head = f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}\r\nContent-Type: {content_type}\r\n{length}\r\n\r\n"
    return head.encode() + (body or b"")


def _sse(obj: Any) -> bytes:
    return b"data: " + json.dumps(obj).encode() + b"\n\n"


def _openai_chunk(delta: dict[str, str], finish_reason: str | None) -> bytes:
    choice = {"index": 0, "delta": delta, "finish_reason": finish_reason}
    return _sse(
        {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "model": "fake", "choices": [choice]}
    )


def _openai_end(finish_reason: str, tokens: int | None, marker: bool) -> bytes:
    end = _openai_chunk({}, finish_reason)
    if tokens is not None:
        usage = {"prompt_tokens": 10, "completion_tokens": tokens, "total_tokens": 10 + tokens}
        end += _sse({"id": "chatcmpl-fake", "object": "chat.completion.chunk", "choices": [], "usage": usage})
    return end + b"data: [DONE]\n\n" if marker else end


def _ollama_line(content: str, done: bool, **extra: Any) -> bytes:
    obj = {"model": "fake", "message": {"role": "assistant", "content": content}, "done": done, **extra}
    return json.dumps(obj).encode() + b"\n"


def _ollama_end(finish_reason: str, tokens: int | None, marker: bool) -> bytes:
    extra: dict[str, Any] = {"done_reason": finish_reason}
    if tokens is not None:
        extra["eval_count"] = tokens
    return _ollama_line("", True, **extra)


@attrs.frozen
class _Format:
    """How one wire format renders the pieces of a streamed reply."""

    content_type: str
    preamble: bytes  # sent before the first token
    token: Callable[[str], bytes]
    end: Callable[[str, int | None, bool], bytes]  # (finish_reason, token count or None, marker) -> end
    error: Callable[[str], bytes]


_OPENAI = _Format(
    content_type="text/event-stream",
    # A comment and a role-only delta, as llama-server and OpenAI send before the first token.
    preamble=b": fake llm\n\n" + _openai_chunk({"role": "assistant"}, None),
    token=lambda text: _openai_chunk({"content": text}, None),
    end=_openai_end,
    error=lambda message: _sse({"error": {"message": message, "type": "server_error"}}),
)
_OLLAMA = _Format(
    content_type="application/x-ndjson",
    preamble=b"",
    token=lambda text: _ollama_line(text, False),
    end=_ollama_end,
    error=lambda message: json.dumps({"error": message}).encode() + b"\n",
)


class FakeLLM:
    """A scripted LLM server on a loopback port; start it with ``await nursery.start(llm.serve)``.

    Attributes (after start):
        base_url: ``http://127.0.0.1:PORT``.
        requests: every request read, in order.
        disconnected: set when a client closed its connection while a reply was still streaming.
        disconnects: how many times that happened.
        connections: how many connections were accepted (keep-alive reuse keeps this low).
    """

    def __init__(self, reply: ScriptedReply | Callable[[RecordedRequest], ScriptedReply] = ScriptedReply()):
        self._reply = reply
        self.base_url = ""
        self.requests: list[RecordedRequest] = []
        self.disconnected = trio.Event()
        self.disconnects = 0
        self.connections = 0

    def _script_for(self, request: RecordedRequest) -> ScriptedReply:
        return self._reply(request) if callable(self._reply) else self._reply

    async def serve(self, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen on a free loopback port until cancelled; ``task_status.started(base_url)``."""
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(
                functools.partial(trio.serve_tcp, self._handle, 0, host="127.0.0.1")
            )
            port = listeners[0].socket.getsockname()[1]
            self.base_url = f"http://127.0.0.1:{port}"
            task_status.started(self.base_url)

    async def _handle(self, stream: trio.SocketStream) -> None:
        self.connections += 1
        reader = _Reader(stream)
        try:
            while True:
                request = await reader.read_request()
                if request is None:
                    return
                self.requests.append(request)
                if not await self._respond(stream, request):
                    return
        except (_Disconnected, trio.BrokenResourceError, trio.ClosedResourceError):
            return
        except ValueError:
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await stream.send_all(_head(400, "text/plain", b"bad request"))
        finally:
            await stream.aclose()

    async def _respond(self, stream: trio.SocketStream, request: RecordedRequest) -> bool:
        """Answer one request; return whether the connection stays open for the next one."""
        if request.method == "GET" and request.path in ("/v1/models", "/api/tags", "/health"):
            body = json.dumps({"data": [{"id": "fake"}], "models": [{"name": "fake"}], "status": "ok"})
            await stream.send_all(_head(200, "application/json", body.encode()))
            return True
        if request.method != "POST" or request.path not in ("/v1/chat/completions", "/api/chat"):
            await stream.send_all(_head(404, "application/json", b'{"error": "not found"}'))
            return True

        script = self._script_for(request)
        if script.hang_up:
            return False
        if script.status >= 400:
            await stream.send_all(_head(script.status, "application/json", script.error_body.encode()))
            return True
        if request.path == "/api/chat":
            fmt = _OLLAMA
        else:
            fmt = _OPENAI
            if not request.json.get("stream_options", {}).get("include_usage"):
                script = attrs.evolve(script, report_usage=False)

        # Stream the reply while watching the connection: a client that goes away mid-reply is recorded
        # (and cancels the watch scope, so `outcome` keeps its default).
        outcome = "gone"
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._watch_for_disconnect, stream, nursery.cancel_scope)
            try:
                outcome = await self._stream(stream, script, fmt)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self._note_disconnect()
            nursery.cancel_scope.cancel()
        return outcome == "done"

    async def _watch_for_disconnect(self, stream: trio.SocketStream, scope: trio.CancelScope) -> None:
        try:
            while await stream.receive_some(65536):
                pass  # a client sends nothing while a reply streams; nothing to keep
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        self._note_disconnect()
        scope.cancel()

    def _note_disconnect(self) -> None:
        self.disconnects += 1
        self.disconnected.set()

    async def _stream(self, stream: trio.SocketStream, script: ScriptedReply, fmt: _Format) -> str:
        """Stream one scripted reply as a chunked body: "done", or "die" (the caller must then close
        the socket abruptly), or "error" (an in-stream error object ended it)."""

        async def send(data: bytes) -> None:
            await stream.send_all(b"%x\r\n%s\r\n" % (len(data), data))

        await stream.send_all(_head(200, fmt.content_type, None))
        if fmt.preamble:
            await send(fmt.preamble)
        stop = len(script.tokens)
        for limit in (script.die_after, script.error_after):
            stop = min(stop, limit) if limit is not None else stop
        for i, token in enumerate(script.tokens[:stop]):
            await trio.sleep(script.first_token_delay if i == 0 else script.token_delay)
            await send(fmt.token(token))
        if script.die_after is not None:
            return "die"
        if script.error_after is not None:
            await send(fmt.error("scripted in-stream failure"))
        elif not script.omit_done:
            count = script.usage if script.usage is not None else len(script.tokens)
            await send(
                fmt.end(script.finish_reason, count if script.report_usage else None, script.done_marker)
            )
        await stream.send_all(b"0\r\n\r\n")
        return "error" if script.error_after is not None else "done"


@asynccontextmanager
async def open_fake_llm(
    reply: ScriptedReply | Callable[[RecordedRequest], ScriptedReply] = ScriptedReply(),
) -> AsyncIterator[FakeLLM]:
    """Run a :class:`FakeLLM` for the duration of the block; it stops (and drops its connections) on exit."""
    async with trio.open_nursery() as nursery:
        llm = FakeLLM(reply)
        await nursery.start(llm.serve)
        yield llm
        nursery.cancel_scope.cancel()
