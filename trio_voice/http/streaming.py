"""Streaming chat fallbacks for clients without WebSockets: ``POST /v1/chat/stream`` (SSE) and ``/v1/chat/ndjson``.

One request is one reply. Its events are the WebSocket reply's events, rendered by the same codec
(``codec.encode_event``, ``seq`` from 1), so a client reuses its parser: ``response.created``,
``response.text.delta``, ``response.phrase``, ``response.audio.delta`` (only with ``"audio": true``),
``warning``/``error`` when something fails, and ``response.done`` last.

The reply runs through ``trio_voice.converse.run_one_turn``, the very function a WebSocket session uses,
so statuses, reasons, metrics, telemetry and storage are the same; the request task is the owner of
its one turn. A client that disconnects mid-reply cancels the turn (status ``cancelled``, reason
``client_disconnected``; what was sent is stored as interrupted)::

    stream_reply(request)                the request's nursery
    ├── watch_disconnect_task            ASGI receive() → http.disconnect → cancel the running turn
    ├── write_task                       the only writer: codec.ServerConnection numbers and checks events
    └── run_one_turn                     the turn (LLM → phrases → TTS), emitting into write_task
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

import attrs
import trio

from trio_voice import codec, events
from trio_voice.codec import codes
from trio_voice.codec.codes import CancelReason
from trio_voice.codec.fields import FieldReader
from trio_voice.converse import run_one_turn
from trio_voice.errors import RemoteProtocolError
from trio_voice.ids import new_id
from trio_voice.session_state import SessionState
from trio_voice.turn_control import PendingTurn, TurnHandle, TurnKind
from trio_voice.writer import Outgoing, emitter

from .app import AppContext, Request, Route

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


def sse_frame(event: Any, text: str) -> bytes:
    """One Server-Sent Event: ``event: <type>`` and the codec's JSON as its one ``data:`` line."""
    return f"event: {SSE_EVENT_NAMES[type(event)]}\ndata: {text}\n\n".encode()


def ndjson_line(event: Any, text: str) -> bytes:
    return text.encode() + b"\n"


Render = Callable[[Any, str], bytes]


async def write_task(request: Request, out_rx: trio.MemoryReceiveChannel[Outgoing], render: Render) -> None:
    """The only writer of the response body: events through a ``ServerConnection``, framed for the stream."""
    connection = codec.ServerConnection()
    async with out_rx:
        async for item in out_rx:
            await request.write(render(item.event, connection.send(item.event, request_id=item.request_id)))
    await request.write(b"", more=False)


async def watch_disconnect_task(request: Request, handle: TurnHandle) -> None:
    """Wait for the client to go away, then cancel the turn (reason ``client_disconnected``)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass
    handle.cancel(CancelReason.CLIENT_DISCONNECTED)


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

    state = SessionState(
        session_id=new_id("http"),
        conversation_id=conversation_id,
        instructions=chat.instructions if chat.instructions is not None else config.system_prompt,
        output_audio=chat.audio,
    )
    # One request is one turn, and this task its owner.
    handle = state.turns.start(
        PendingTurn(TurnKind.CHAT, chat.text, None, trio.current_time()), new_id("resp")
    )
    out_tx, out_rx = trio.open_memory_channel[Outgoing](0)

    await request.start(200, content_type, [("x-conversation-id", conversation_id), *STREAM_HEADERS])
    async with trio.open_nursery() as nursery:
        nursery.start_soon(watch_disconnect_task, request, handle)
        async with trio.open_nursery() as writing:
            writing.start_soon(write_task, request, out_rx, render)
            async with out_tx:
                await run_one_turn(
                    handle,
                    emit=emitter(out_tx, None),
                    engines=ctx.engines,
                    config=config,
                    telemetry=ctx.telemetry,
                    state=state,
                )
        state.turns.finish(handle)
        nursery.cancel_scope.cancel()


async def chat_sse(request: Request, ctx: AppContext) -> None:
    await stream_reply(request, ctx, content_type="text/event-stream; charset=utf-8", render=sse_frame)


async def chat_ndjson(request: Request, ctx: AppContext) -> None:
    await stream_reply(request, ctx, content_type="application/x-ndjson", render=ndjson_line)


def parse_sse(data: str) -> list[tuple[str, dict[str, Any]]]:
    """Parse a whole SSE body into (event name, JSON data) pairs: for Python clients and the tests."""
    parsed = []
    for block in data.replace("\r\n", "\n").split("\n\n"):
        name, lines = "message", []
        for line in block.split("\n"):
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                lines.append(line[5:].removeprefix(" "))
        if lines:
            parsed.append((name, json.loads("\n".join(lines))))
    return parsed


ROUTES = (
    Route("POST", "/v1/chat/stream", chat_sse),
    Route("POST", "/v1/chat/ndjson", chat_ndjson),
)
