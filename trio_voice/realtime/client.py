"""Realtime client events: one frozen class per ``type``, parsed from a text frame of either dialect.

``parse_client_event`` turns one WebSocket frame into one of the classes below or raises
``RealtimeProtocolError`` (``type``, ``code``, ``param``, and the event's ``event_id`` whenever it could be
read). Parsing checks the event alone; whether it makes sense now (does the item exist, is a response
running) is ``RealtimeConnection.receive``'s business, which also fills the fields marked "set by the
connection" and replaces ``event_id`` (the client's, as parsed here) with a request id unique in the
connection. Nothing here does I/O.

The two dialects differ here only in ``session.update`` and ``response.create`` (see ``session_config``);
every other client event has one shape.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar, Final

import attrs

from . import codes
from .formats import AudioFormat
from .reader import Reader, RealtimeProtocolError, read_event_id
from .session_update import (
    SessionUpdate,
    read_beta_format,
    read_format,
    read_modalities,
    read_voice,
)

MAX_ITEM_ID_CHARS: Final = 64
MAX_METADATA_KEYS: Final = 16  # as the hosted API

# Client events the API defines that trio-voice does not implement: refused as unsupported, not unknown.
UNSUPPORTED_EVENTS: Final = frozenset({"output_audio_buffer.clear", "transcription_session.update"})


def _bytes_field() -> Any:
    return attrs.field(repr=lambda b: f"<{len(b)} bytes>")


def _optional_bytes_field() -> Any:
    return attrs.field(default=None, repr=lambda b: "None" if b is None else f"<{len(b)} bytes>")


@attrs.frozen
class InputAudioBufferAppend:
    type: ClassVar[str] = "input_audio_buffer.append"
    audio: bytes = _bytes_field()  # in the session's input format, as sent
    event_id: str | None = None
    pcm16: bytes | None = _optional_bytes_field()  # set by the connection: PCM16LE at the recognizer's rate


@attrs.frozen
class InputAudioBufferCommit:
    type: ClassVar[str] = "input_audio_buffer.commit"
    event_id: str | None = None
    item_id: str | None = None  # set by the connection: the user item the committed audio becomes


@attrs.frozen
class InputAudioBufferClear:
    type: ClassVar[str] = "input_audio_buffer.clear"
    event_id: str | None = None


@attrs.frozen
class InputText:
    text: str


@attrs.frozen
class InputAudio:
    audio: bytes = _bytes_field()  # in the session's input format, as sent
    transcript: str | None = None
    pcm16: bytes | None = _optional_bytes_field()  # set by the connection: at the recognizer's rate


@attrs.frozen
class ConversationItemCreate:
    """A user message: typed text and/or audio. It joins the conversation; it starts no response."""

    type: ClassVar[str] = "conversation.item.create"
    content: tuple[InputText | InputAudio, ...]
    item_id: str | None = None  # the client's id, kept; set by the connection when the client gave none
    previous_item_id: str | None = None
    event_id: str | None = None

    @property
    def text(self) -> str:
        """The typed parts, joined: what the conversation stores for this message."""
        return "\n".join(part.text for part in self.content if isinstance(part, InputText))


@attrs.frozen
class ConversationItemDelete:
    type: ClassVar[str] = "conversation.item.delete"
    item_id: str
    event_id: str | None = None
    response_id: str | None = None  # set by the connection: the reply an assistant item came from


@attrs.frozen
class ConversationItemRetrieve:
    type: ClassVar[str] = "conversation.item.retrieve"
    item_id: str
    event_id: str | None = None


@attrs.frozen
class ConversationItemTruncate:
    """The client played only ``audio_end_ms`` of an assistant item's audio (clamped to what was sent)."""

    type: ClassVar[str] = "conversation.item.truncate"
    item_id: str
    content_index: int
    audio_end_ms: int
    event_id: str | None = None
    response_id: str | None = None  # set by the connection: the reply to truncate in the core


@attrs.frozen
class ResponseCreate:
    """Start a response over the conversation; the per-response settings override the session's."""

    type: ClassVar[str] = "response.create"
    event_id: str | None = None
    instructions: str | None = None
    output_modalities: tuple[str, ...] | None = None
    metadata: dict[str, str] | None = None
    voice: str | None = None
    output_format: AudioFormat | None = None


@attrs.frozen
class ResponseCancel:
    type: ClassVar[str] = "response.cancel"
    event_id: str | None = None
    response_id: str | None = None


ClientEvent = (
    SessionUpdate
    | InputAudioBufferAppend
    | InputAudioBufferCommit
    | InputAudioBufferClear
    | ConversationItemCreate
    | ConversationItemDelete
    | ConversationItemRetrieve
    | ConversationItemTruncate
    | ResponseCreate
    | ResponseCancel
)


# --- parsing -----------------------------------------------------------------------------------------


def _append(r: Reader, dialect: str, limit: int) -> InputAudioBufferAppend:
    r.reject_unknown(("audio",))
    audio = r.read_base64("audio")
    assert audio is not None
    return InputAudioBufferAppend(audio=audio, event_id=r.event_id)


def _commit(r: Reader, dialect: str, limit: int) -> InputAudioBufferCommit:
    r.reject_unknown(())
    return InputAudioBufferCommit(event_id=r.event_id)


def _clear(r: Reader, dialect: str, limit: int) -> InputAudioBufferClear:
    r.reject_unknown(())
    return InputAudioBufferClear(event_id=r.event_id)


def _content_part(part: Reader, limit: int) -> InputText | InputAudio:
    part.reject_unknown(("type", "text", "audio", "transcript", "detail", "image_url", "id"))
    kind = part.read_str("type", required=True, choices=("input_text", "input_audio", "input_image"))
    if kind == "input_image":
        raise part.unsupported("type", "image input")
    if kind == "input_text":
        part.only("audio", None)
        part.only("transcript", None)
        text = part.read_str("text", required=True, non_blank=True, max_chars=limit)
        assert text is not None
        return InputText(text)
    part.only("text", None)
    audio = part.read_base64("audio")
    assert audio is not None
    return InputAudio(audio=audio, transcript=part.read_str("transcript", max_chars=limit))


def _item_create(r: Reader, dialect: str, limit: int) -> ConversationItemCreate:
    r.reject_unknown(("item", "previous_item_id"))
    item = r.read_object("item", required=True)
    assert item is not None
    item.reject_unknown(
        ("id", "type", "object", "status", "role", "content", "call_id", "name", "arguments", "output")
    )
    kind = item.read_str("type", required=True, choices=("message", "function_call", "function_call_output"))
    if kind != "message":
        raise item.unsupported("type", f"a {kind} item (tools)")
    role = item.read_str("role", required=True, choices=("user", "assistant", "system"))
    if role != "user":
        raise item.unsupported("role", f"a {role} item (only user messages may be created)")
    item.only("object", None, "realtime.item")
    item.read_str("status", choices=("completed", "incomplete", "in_progress"))
    parts = item.read_list("content", required=True)
    assert parts is not None
    if not parts:
        raise item.fail(
            "content", f"Invalid '{item.param('content')}': empty array.", code=codes.INVALID_VALUE
        )
    return ConversationItemCreate(
        content=tuple(_content_part(item.element("content", i, p), limit) for i, p in enumerate(parts)),
        item_id=item.read_str("id", non_blank=True, max_chars=MAX_ITEM_ID_CHARS),
        previous_item_id=r.read_str("previous_item_id", non_blank=True, max_chars=MAX_ITEM_ID_CHARS),
        event_id=r.event_id,
    )


def _item_id(r: Reader) -> str:
    item_id = r.read_str("item_id", required=True, non_blank=True, max_chars=MAX_ITEM_ID_CHARS)
    assert item_id is not None
    return item_id


def _item_delete(r: Reader, dialect: str, limit: int) -> ConversationItemDelete:
    r.reject_unknown(("item_id",))
    return ConversationItemDelete(item_id=_item_id(r), event_id=r.event_id)


def _item_retrieve(r: Reader, dialect: str, limit: int) -> ConversationItemRetrieve:
    r.reject_unknown(("item_id",))
    return ConversationItemRetrieve(item_id=_item_id(r), event_id=r.event_id)


def _item_truncate(r: Reader, dialect: str, limit: int) -> ConversationItemTruncate:
    r.reject_unknown(("item_id", "content_index", "audio_end_ms"))
    item_id = _item_id(r)
    content_index = r.read_int("content_index", required=True, minimum=0)
    audio_end_ms = r.read_int("audio_end_ms", required=True, minimum=0)
    assert content_index is not None and audio_end_ms is not None
    return ConversationItemTruncate(item_id, content_index, audio_end_ms, event_id=r.event_id)


def _response_create(r: Reader, dialect: str, limit: int) -> ResponseCreate:
    r.reject_unknown(("response",))
    resp = r.read_object("response")
    if resp is None:
        return ResponseCreate(event_id=r.event_id)
    beta = dialect == codes.BETA
    common = ("instructions", "metadata", "conversation", "input", "tools", "tool_choice")
    if beta:
        resp.reject_unknown(
            (
                *common,
                "modalities",
                "voice",
                "output_audio_format",
                "temperature",
                "max_response_output_tokens",
            )
        )
        resp.only("max_response_output_tokens", "inf")
        resp.read_number("temperature", minimum=0.0, maximum=2.0)  # accepted; the server's LLM settings apply
    else:
        resp.reject_unknown(
            (
                *common,
                "output_modalities",
                "audio",
                "max_output_tokens",
                "prompt",
                "parallel_tool_calls",
                "reasoning",
            )
        )
        resp.only("max_output_tokens", "inf")
        resp.only("prompt", None)
        resp.only("reasoning", None)
        resp.read_bool("parallel_tool_calls")
    resp.only("conversation", None, "auto")
    resp.only("input", None)
    resp.only("tools", None, [])
    resp.only("tool_choice", None, "auto", "none")
    fields: dict[str, Any] = {
        "instructions": resp.read_str("instructions", max_chars=limit),
        "metadata": resp.read_str_map("metadata", max_entries=MAX_METADATA_KEYS),
    }
    if beta:
        fields["output_modalities"] = read_modalities(resp, "modalities")
        fields["voice"] = read_voice(resp, "voice")
        fields["output_format"] = read_beta_format(resp, "output_audio_format")
    else:
        fields["output_modalities"] = read_modalities(resp, "output_modalities")
        audio = resp.read_object("audio")
        if audio is not None:
            audio.reject_unknown(("output",))
            output = audio.read_object("output")
            if output is not None:
                output.reject_unknown(("format", "voice"))
                fields["voice"] = read_voice(output, "voice")
                fields["output_format"] = read_format(output, "format")
    return ResponseCreate(event_id=r.event_id, **fields)


def _response_cancel(r: Reader, dialect: str, limit: int) -> ResponseCancel:
    r.reject_unknown(("response_id",))
    return ResponseCancel(event_id=r.event_id, response_id=r.read_str("response_id", non_blank=True))


def _session_update(r: Reader, dialect: str, limit: int) -> SessionUpdate:
    if dialect == codes.BETA:
        return SessionUpdate.from_beta(r, max_text_chars=limit)
    return SessionUpdate.from_ga(r, max_text_chars=limit)


_PARSERS: Final = {
    "session.update": _session_update,
    "input_audio_buffer.append": _append,
    "input_audio_buffer.commit": _commit,
    "input_audio_buffer.clear": _clear,
    "conversation.item.create": _item_create,
    "conversation.item.delete": _item_delete,
    "conversation.item.retrieve": _item_retrieve,
    "conversation.item.truncate": _item_truncate,
    "response.create": _response_create,
    "response.cancel": _response_cancel,
}

#: Every client event type trio-voice accepts.
CLIENT_EVENT_TYPES: Final = frozenset(_PARSERS)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def parse_client_event(frame: str | bytes, *, dialect: str = codes.GA, max_text_chars: int) -> ClientEvent:
    """Parse one WebSocket frame of a realtime client.

    Args:
        frame: the frame's payload (a binary frame is refused: the protocol is JSON text only).
        dialect: ``codes.GA`` or ``codes.BETA``.
        max_text_chars: the longest text, instructions or transcript accepted (``Config.max_text_chars``).

    Raises:
        RealtimeProtocolError: the frame is not an event trio-voice accepts; its ``code`` is one of
            ``codes.ERROR_CODES`` and its ``event_id`` the event's, whenever it could be read.
    """
    if isinstance(frame, (bytes, bytearray, memoryview)):
        raise RealtimeProtocolError(
            "Binary frames are not part of the Realtime API; send audio with input_audio_buffer.append.",
            code=codes.INVALID_EVENT,
        )
    try:
        obj = json.loads(frame, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as exc:
        raise RealtimeProtocolError(f"The event is not valid JSON: {exc}", code=codes.INVALID_JSON) from None
    if not isinstance(obj, dict):
        raise RealtimeProtocolError(
            f"An event must be a JSON object, not {type(obj).__name__}.", code=codes.INVALID_EVENT
        )
    event_id = read_event_id(obj)
    r = Reader(obj, path="", event_id=event_id)
    type_ = r.read_str("type", required=True)
    assert type_ is not None
    if type_ in UNSUPPORTED_EVENTS:
        raise r.unsupported("type", f"{type_!r}")
    parser = _PARSERS.get(type_)
    if parser is None:
        raise r.invalid_value("type", type_, CLIENT_EVENT_TYPES)
    return parser(r, dialect, max_text_chars)
