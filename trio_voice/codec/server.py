"""Server → client events of protocol v1: rendering ``trio_voice.events`` objects as JSON text frames.

``encode_event`` is what the session's send task calls; it stamps ``seq`` and the echoed ``request_id``
and raises ``LocalProtocolError`` if asked to send something the protocol does not allow (a bug on our
side). ``decode_server`` and ``decode_server_event`` are the client-side inverse, for the load-test tool,
the tests and Python client authors: they check the wire type and the required fields and ignore
fields they do not know (a v1 server may add some).

One table, ``_EVENTS``, maps each event class to its wire type and the JSON kind of each field; both
directions read it, so they cannot drift apart. Event attribute names are the wire field names.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from typing import Any

import attrs

from trio_voice import events
from trio_voice.errors import LocalProtocolError, RemoteProtocolError

from . import codes
from .client import TurnDetection
from .fields import is_integer, is_number

# Field kinds: "str", "int", "number", "bool", "object", "base64" (bytes on our side), "str|null" (always
# present, may be null), "str?" and "int?" (left out when None).
_EVENTS: Mapping[type, tuple[str, Mapping[str, str]]] = {
    events.SessionCreated: (
        "session.created",
        {
            "session_id": "str",
            "conversation_id": "str",
            "config": "object",
            "resume_token": "str?",
            "instance_id": "str?",
        },
    ),
    events.SessionResumed: (
        "session.resumed",
        {"session_id": "str", "conversation_id": "str", "last_seq": "int", "replayed": "int"},
    ),
    events.SessionUpdated: ("session.updated", {"conversation_id": "str", "config": "object"}),
    events.ErrorEvent: (
        "error",
        {
            "code": "str",
            "message": "str",
            "response_id": "str?",
            "reason": "str?",
            "instance_id": "str?",
            "retry_after_ms": "int?",
        },
    ),
    events.WarningEvent: ("warning", {"code": "str", "message": "str", "response_id": "str?"}),
    events.Pong: ("pong", {}),
    events.SpeechStarted: ("input.speech_started", {"audio_start_ms": "int"}),
    events.SpeechStopped: ("input.speech_stopped", {"audio_end_ms": "int"}),
    events.TranscriptPartial: ("transcript.partial", {"text": "str"}),
    events.TranscriptFinal: ("transcript.final", {"text": "str", "language": "str?"}),
    events.PresenceUpdate: (
        "presence.update",
        {"user_id": "str", "session_id": "str", "status": "str", "last_seen": "number"},
    ),
    events.TypingUpdate: ("typing.update", {"user_id": "str", "session_id": "str", "typing": "bool"}),
    events.SystemMessage: (
        "system.message",
        {
            "message_id": "str",
            "kind": "str",
            "text": "str",
            "created_at": "number",
            "expires_at": "number",
            "conversation_id": "str?",
        },
    ),
    events.ReplyCreated: ("response.created", {"response_id": "str"}),
    events.TextDelta: ("response.text.delta", {"response_id": "str", "delta": "str"}),
    events.PhraseReady: ("response.phrase", {"response_id": "str", "index": "int", "text": "str"}),
    events.AudioReady: (
        "response.audio.delta",
        {"response_id": "str", "index": "int", "audio": "base64", "sample_rate": "int", "format": "str"},
    ),
    events.ReplyDone: (
        "response.done",
        {"response_id": "str", "status": "str", "reason": "str|null", "text": "str", "metrics": "object"},
    ),
    events.NarrationCreated: (
        "narration.created",
        {"narration_id": "str", "total_phrases": "int", "ahead": "int"},
    ),
    events.NarrationProgress: (
        "narration.progress",
        {
            "narration_id": "str",
            "response_id": "str",
            "phrase_index": "int",
            "total_phrases": "int",
            "position_ms": "int",
        },
    ),
    events.NarrationPaused: (
        "narration.paused",
        {"narration_id": "str", "phrase_index": "int", "reason": "str"},
    ),
    events.NarrationDone: ("narration.done", {"narration_id": "str", "status": "str"}),
}
_BY_WIRE_TYPE: Mapping[str, tuple[type, Mapping[str, str]]] = {
    wire: (cls, kinds) for cls, (wire, kinds) in _EVENTS.items()
}

#: Every server event's wire type.
SERVER_EVENT_TYPES = frozenset(_BY_WIRE_TYPE)


@attrs.frozen
class ServerMessage:
    """A decoded server event with its envelope."""

    event: events.ServerEvent
    seq: int
    request_id: str | None = None


def _plain(value: object) -> object:
    # json.dumps refuses read-only mappings (MappingProxyType), which frozen configs often are.
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


def _check_reply_done(event: events.ReplyDone) -> None:
    if event.status not in codes.REPLY_STATUSES:
        raise LocalProtocolError(
            f"response.done status {event.status!r} is not one of {codes.REPLY_STATUSES}"
        )
    if event.status == codes.STATUS_COMPLETED and event.reason is not None:
        raise LocalProtocolError("a completed reply has no reason")
    if event.status == codes.STATUS_CANCELLED and event.reason not in codes.CANCEL_REASONS:
        raise LocalProtocolError(f"cancel reason {event.reason!r} is not one of {codes.CANCEL_REASONS}")
    if event.status == codes.STATUS_FAILED and not event.reason:
        raise LocalProtocolError("a failed reply needs the error code as its reason")


def event_type(event: events.ServerEvent) -> str:
    """The wire ``type`` of a server event (SSE's ``event:`` name, a replay frame's kind).

    Raises:
        LocalProtocolError: ``event`` is not a server event.
    """
    spec = _EVENTS.get(type(event))
    if spec is None:
        raise LocalProtocolError(f"{event!r} is not a server event")
    return spec[0]


def encode_event(event: events.ServerEvent, *, seq: int, request_id: str | None = None) -> str:
    """Render ``event`` as the JSON text of one WebSocket frame.

    Args:
        event: one of the classes in ``trio_voice.events``.
        seq: the session's next sequence number (1, 2, 3, … with no gaps: the caller keeps the count).
        request_id: the ``request_id`` of the client message that caused the event, if any.

    Raises:
        LocalProtocolError: ``event`` is not a server event, ``seq`` is not a positive integer, a
            ``response.done`` has a status or reason the protocol does not define, or audio is not
            whole PCM16 samples.
    """
    spec = _EVENTS.get(type(event))
    if spec is None:
        raise LocalProtocolError(f"{event!r} is not a server event")
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
        raise LocalProtocolError(f"seq must be a positive integer, not {seq!r}")
    wire_type, kinds = spec
    obj: dict[str, Any] = {"type": wire_type, "seq": seq}
    if request_id is not None:
        obj["request_id"] = request_id
    if isinstance(event, events.ReplyDone):
        _check_reply_done(event)
    for name, kind in kinds.items():
        value = getattr(event, name)
        if kind in ("str?", "int?") and value is None:
            continue
        if kind == "base64":
            if len(value) % 2 and getattr(event, "format", "pcm16") == "pcm16":
                raise LocalProtocolError(f"audio of {len(value)} bytes is not whole PCM16 samples")
            value = base64.b64encode(value).decode("ascii")
        elif kind == "object":
            value = _plain(value)
        obj[name] = value
    try:
        return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise LocalProtocolError(f"{wire_type} cannot be rendered as JSON: {exc}") from None


@attrs.frozen(kw_only=True)
class SessionLimits:
    """The limits a session announces in ``config.limits`` (see protocol/limits.md)."""

    max_frame_bytes: int
    max_text_chars: int
    max_messages_per_second: float
    max_audio_realtime_factor: float
    idle_timeout: float
    resume_ttl: float


def render_session_config(
    *,
    instructions: str,
    input_sample_rate: int,
    turn_detection: TurnDetection,
    output_audio: bool,
    output_sample_rate: int,
    limits: SessionLimits,
    input_audio_format: str = "pcm16",
    output_audio_format: str = "pcm16",
    voice: str = "en_US-joe-medium",
    language: str = "en",
    user_id: str | None = None,
    record: bool = False,
) -> dict[str, Any]:
    """Build the ``config`` object of ``session.created`` / ``session.updated`` (see protocol/voice.md).

    Args:
        instructions ... output_sample_rate, input_audio_format ... language, user_id, record: the
            session's settings now in force; every field of ``turn_detection`` must be set (these are the
            values in force, not an update). ``output_sample_rate`` is the rate of the encoded reply audio.
        limits: the limits the client should respect.

    Raises:
        LocalProtocolError: ``turn_detection`` has an unset field.
    """
    detection = attrs.asdict(turn_detection)
    if any(value is None for value in detection.values()):
        raise LocalProtocolError(f"session config needs every turn_detection field: {turn_detection!r}")
    return {
        "instructions": instructions,
        "input_sample_rate": input_sample_rate,
        "turn_detection": detection,
        "output_audio": output_audio,
        "output_sample_rate": output_sample_rate,
        "input_audio_format": input_audio_format,
        "output_audio_format": output_audio_format,
        "voice": voice,
        "language": language,
        "user_id": user_id,
        "record": record,
        "limits": attrs.asdict(limits),
    }


def _fail(message: str) -> RemoteProtocolError:
    return RemoteProtocolError(message, code=codes.INVALID_MESSAGE)


def _check_kind(wire_type: str, name: str, kind: str, value: object) -> None:
    ok = {
        "str": isinstance(value, str),
        "str?": value is None or isinstance(value, str),
        "int?": value is None or is_integer(value),
        "str|null": value is None or isinstance(value, str),
        "int": is_integer(value),
        "number": is_number(value),
        "bool": isinstance(value, bool),
        "object": isinstance(value, dict),
        "base64": isinstance(value, str),
    }[kind]
    if not ok:
        raise _fail(f"{wire_type}: field {name!r} must be {kind}, not {value!r:.80}")


def decode_server(text: str) -> dict[str, Any]:
    """Parse one server text frame and check its envelope and required fields; return the object.

    Unknown fields are kept and not checked (a v1 server may add fields); an unknown ``type`` is refused.

    Raises:
        RemoteProtocolError: ``invalid_json`` or ``invalid_message`` (the server broke the protocol).
    """
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise RemoteProtocolError(f"server frame is not valid JSON: {exc}", code=codes.INVALID_JSON) from None
    _check_server_object(obj)
    return obj


def _check_server_object(obj: object) -> None:
    if not isinstance(obj, Mapping):
        raise _fail("a server event must be a JSON object")
    wire_type = obj.get("type")
    if not isinstance(wire_type, str) or wire_type not in _BY_WIRE_TYPE:  # a dict or list is unhashable
        raise _fail(f"unknown server event type {wire_type!r}")
    seq = obj.get("seq")
    if not is_integer(seq) or seq < 1:
        raise _fail(f"{wire_type}: 'seq' must be a positive integer")
    _check_kind(wire_type, "request_id", "str?", obj.get("request_id"))
    _, kinds = _BY_WIRE_TYPE[wire_type]
    for name, kind in kinds.items():
        if kind not in ("str?", "int?") and name not in obj:
            raise _fail(f"{wire_type}: field {name!r} is required")
        _check_kind(wire_type, name, kind, obj.get(name))


def decode_server_event(obj: Mapping[str, Any] | str) -> ServerMessage:
    """Turn a server event (JSON text, or an object from ``decode_server``) back into an event object.

    Raises:
        RemoteProtocolError: as ``decode_server``; also ``invalid_audio`` for audio that is not base64.
    """
    if isinstance(obj, str):
        obj = decode_server(obj)
    else:
        _check_server_object(obj)
    wire_type = obj["type"]
    cls, kinds = _BY_WIRE_TYPE[wire_type]
    fields: dict[str, Any] = {}
    for name, kind in kinds.items():
        value = obj.get(name)
        if kind == "base64":
            try:
                value = base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                raise RemoteProtocolError(
                    f"{wire_type}: field {name!r} is not valid base64", code=codes.INVALID_AUDIO
                ) from None
        elif kind == "int":
            value = int(value)
        elif kind == "number":
            value = float(value)
        fields[name] = value
    return ServerMessage(event=cls(**fields), seq=int(obj["seq"]), request_id=obj.get("request_id"))
