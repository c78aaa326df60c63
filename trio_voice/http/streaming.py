"""Streaming chat fallbacks for clients without WebSockets: ``POST /v1/chat/stream`` (SSE) and ``/v1/chat/ndjson``.

One request is one reply. Its events are the WebSocket reply's events, rendered by the same codec
(``seq`` from 1), so a client reuses its parser: ``response.created``, ``response.text.delta``,
``response.phrase``, ``response.audio.delta`` (only with ``"audio": true``), ``warning``/``error`` when
something fails, and ``response.done`` last.

The reply runs in the session host (``trio_voice.http.hosted``) through ``run_one_turn``, the very
function a WebSocket session uses, so statuses, reasons, metrics, telemetry and storage are the same;
the request only writes its frames. Every SSE event has an ``id:`` (``<stream id>:<seq>``); a client
whose connection drops resumes with ``GET`` and ``Last-Event-ID`` (what ``EventSource`` sends by itself)
within ``resume_ttl`` and gets every event after it, ``seq`` going on. A client that does not come back
in time leaves a reply cancelled with reason ``client_disconnected``, stored as what was sent.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl

import attrs

from trio_voice import events
from trio_voice.codec import codes
from trio_voice.codec.fields import FieldReader
from trio_voice.errors import RemoteProtocolError
from trio_voice.replay import Frame
from trio_voice.session_host import ResumeRefused, SessionHost

from .app import AppContext, Request, Route
from .hosted import LiveStream, Render, deliver, resume_stream, run_stream

# The SSE ``event:`` name of each event a reply stream carries: the codec's wire type (a test checks).
SSE_EVENT_NAMES: Mapping[type, str] = {
    events.ReplyCreated: "response.created",
    events.TextDelta: "response.text.delta",
    events.PhraseReady: "response.phrase",
    events.AudioReady: "response.audio.delta",
    events.ReplyDone: "response.done",
    events.ErrorEvent: "error",
    events.WarningEvent: "warning",
}
STREAM_HEADERS = (("cache-control", "no-cache"), ("x-accel-buffering", "no"))


@attrs.frozen(kw_only=True)
class ChatRequest:
    """The body of a streaming chat request."""

    text: str
    conversation_id: str | None = None
    instructions: str | None = None
    audio: bool = False

    @classmethod
    def from_json(cls, obj: Mapping[str, Any], *, max_text_chars: int) -> ChatRequest:
        """Raises RemoteProtocolError: ``invalid_field`` or ``text_too_long``, as the WebSocket codec does."""
        r = FieldReader(obj, where="chat request", request_id=None)
        r.reject_unknown(("text", "conversation_id", "instructions", "audio"))
        text = r.read_str("text", required=True, non_blank=True, max_chars=max_text_chars)
        assert text is not None
        return cls(
            text=text,
            conversation_id=r.read_str("conversation_id", non_blank=True),
            instructions=r.read_str("instructions", max_chars=max_text_chars),
            audio=bool(r.read_bool("audio")),
        )


def sse_frame(frame: Frame, stream_id: str) -> bytes:
    """One Server-Sent Event: ``id: <stream id>:<seq>``, ``event: <type>`` and the codec's JSON as its one
    ``data:`` line."""
    return f"id: {stream_id}:{frame.seq}\nevent: {frame.type}\ndata: {frame.text}\n\n".encode()


def ndjson_line(frame: Frame, stream_id: str) -> bytes:
    return frame.text.encode() + b"\n"


def host_of(ctx: AppContext) -> SessionHost:
    if ctx.host is None:
        raise RemoteProtocolError("this server runs without a session host", code="unsupported")
    host: SessionHost = ctx.host
    return host


async def stream_reply(request: Request, ctx: AppContext, *, content_type: str, render: Render) -> None:
    """Validate the request, then stream one reply's events (see the module docstring)."""
    config, store = ctx.config, ctx.engines.store
    chat = ChatRequest.from_json(
        await request.json_object(limit=config.max_frame_bytes), max_text_chars=config.max_text_chars
    )
    if chat.conversation_id is not None:
        if not await store.conversation_exists(chat.conversation_id):
            raise RemoteProtocolError(
                f"no conversation {chat.conversation_id!r}", code=codes.CONVERSATION_NOT_FOUND
            )
        conversation_id = chat.conversation_id
    else:
        conversation_id = await store.create_conversation()

    instructions = chat.instructions if chat.instructions is not None else config.system_prompt
    live, attachment = await host_of(ctx).start(
        run_stream,
        text=chat.text,
        conversation_id=conversation_id,
        instructions=instructions,
        audio=chat.audio,
    )
    await request.start(200, content_type, stream_headers(live))
    await deliver(request, live, attachment, render)


def stream_headers(live: LiveStream) -> list[tuple[str, str]]:
    return [
        ("x-conversation-id", live.state.conversation_id),
        ("x-stream-id", live.stream_id),
        *STREAM_HEADERS,
    ]


async def resume_reply(request: Request, ctx: AppContext, *, content_type: str, render: Render) -> None:
    """``GET`` with ``Last-Event-ID: <stream id>:<seq>`` (or ``?last_event_id=``): the stream from ``seq + 1``.

    Raises:
        RemoteProtocolError: ``invalid_field`` for a missing or malformed id; ``resume_failed`` (409,
            with the reason) when the stream cannot be resumed.
    """
    last_event_id = request.header("last-event-id") or dict(parse_qsl(request.query)).get("last_event_id")
    stream_id, _, seq = (last_event_id or "").rpartition(":")
    if not stream_id or not seq.isdigit():
        raise RemoteProtocolError(
            "resuming a stream needs Last-Event-ID: <stream id>:<seq> (the id: of the last event received)",
            code="invalid_field",
        )
    try:
        live, attachment = await resume_stream(host_of(ctx), stream_id, int(seq))
    except ResumeRefused as refused:
        ctx.telemetry.resume(refused.reason)
        raise RemoteProtocolError(str(refused), code=codes.RESUME_FAILED, reason=refused.reason) from None
    ctx.telemetry.resume("resumed")
    await request.start(200, content_type, stream_headers(live))
    await deliver(request, live, attachment, render)


SSE_TYPE = "text/event-stream; charset=utf-8"
NDJSON_TYPE = "application/x-ndjson"


async def chat_sse(request: Request, ctx: AppContext) -> None:
    await stream_reply(request, ctx, content_type=SSE_TYPE, render=sse_frame)


async def chat_ndjson(request: Request, ctx: AppContext) -> None:
    await stream_reply(request, ctx, content_type=NDJSON_TYPE, render=ndjson_line)


async def resume_sse(request: Request, ctx: AppContext) -> None:
    await resume_reply(request, ctx, content_type=SSE_TYPE, render=sse_frame)


async def resume_ndjson(request: Request, ctx: AppContext) -> None:
    await resume_reply(request, ctx, content_type=NDJSON_TYPE, render=ndjson_line)


def parse_sse(data: str) -> list[tuple[str, dict[str, Any]]]:
    """Parse a whole SSE body into (event name, JSON data) pairs: for Python clients and the tests."""
    return [(name, obj) for name, obj, _ in parse_sse_with_ids(data)]


def parse_sse_with_ids(data: str) -> list[tuple[str, dict[str, Any], str | None]]:
    """Parse a whole SSE body into (event name, JSON data, id) triples (the id to resume from)."""
    parsed = []
    for block in data.replace("\r\n", "\n").split("\n\n"):
        name, lines, event_id = "message", [], None
        for line in block.split("\n"):
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                lines.append(line[5:].removeprefix(" "))
            elif line.startswith("id:"):
                event_id = line[3:].strip()
        if lines:
            parsed.append((name, json.loads("\n".join(lines)), event_id))
    return parsed


ROUTES = (
    Route("POST", "/v1/chat/stream", chat_sse),
    Route("GET", "/v1/chat/stream", resume_sse),
    Route("POST", "/v1/chat/ndjson", chat_ndjson),
    Route("GET", "/v1/chat/ndjson", resume_ndjson),
)
