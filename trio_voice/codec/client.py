"""Client → server messages of protocol v1: one frozen class per ``type``, parsed by named constructors.

``decode_text`` and ``decode_binary`` turn a received WebSocket frame into one of these classes or raise
``RemoteProtocolError`` with a stable code (see ``codes.py`` and ``protocol/errors.md``) and, whenever
the object could be read, the message's ``request_id``. ``encode_client`` is the inverse, for clients
written in Python (the load-test tool, the tests). Nothing here does I/O.

Each class has ``type`` (its wire name), ``from_json(obj, *, max_text_chars=None)`` and ``to_json()``.
``None`` in an optional field means "absent": for ``session.update`` that is "leave unchanged".
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping
from typing import Any, ClassVar

import attrs

from trio_voice.errors import RemoteProtocolError

from . import codes
from .controls import CONTROL_CLASSES, ControlMessage
from .fields import (
    FieldReader,
    check_pcm16,
    dump_message,
    holds_lone_surrogate,
    message_reader,
    read_request_id,
)

SUPPORTED_SAMPLE_RATES = (8000, 16000, 24000, 44100, 48000)  # input audio rates a client may choose
TURN_DETECTION_TYPES = ("server_vad", "semantic", "none")
EAGERNESS_LEVELS = ("low", "medium", "high", "auto")  # semantic turn detection: how soon a pause ends a turn
MAX_FALLBACK_MS = 10_000
MAX_SILENCE_MS = 10_000  # longer silences would make a turn never end in practice
MAX_PREFIX_MS = 2_000  # audio kept before speech start; more only delays the transcript
# Input audio a session may stream in binary frames (trio_voice.formats decodes all but pcm16).
INPUT_AUDIO_FORMATS = ("pcm16", "webm", "opus", "opus_packets")
# Reply audio a session may ask for (trio_voice.formats encodes all but pcm16).
OUTPUT_AUDIO_FORMATS = ("pcm16", "opus", "mp3", "aac")
MAX_NAME_CHARS = 128  # voice names and language codes are short identifiers
# Only frames with a \uD800-\uDFFF escape (or non-ASCII text) can decode to a lone surrogate.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _audio_field() -> Any:
    return attrs.field(repr=lambda b: f"<{len(b)} bytes>")


def _b64(audio: bytes) -> str:
    return base64.b64encode(audio).decode("ascii")


_dump = dump_message


def _read_name(r: FieldReader, name: str) -> str | None:
    """A voice name or language code: a short non-blank string (whether it exists is the session's call)."""
    value = r.read_str(name, non_blank=True)
    if value is not None and len(value) > MAX_NAME_CHARS:
        raise r.fail(name, f"must be at most {MAX_NAME_CHARS} characters")
    return value


def _reader(cls: Any, obj: Mapping[str, Any], known: tuple[str, ...]) -> FieldReader:
    return message_reader(cls.type, obj, known)


@attrs.frozen
class TurnDetection:
    """How the server finds the end of a user's spoken turn (part of ``session.update``).

    ``server_vad`` ends a turn after ``silence_ms`` of silence. ``semantic`` asks an end-of-turn model at
    every short pause whether the words make a complete turn (``eagerness`` sets how sure it must be) and
    ends the turn after ``fallback_ms`` of silence whatever it said; with ``speculative``, the reply starts
    at the pause and is held until the turn is confirmed. ``none``: only ``input_audio.commit`` ends a turn.
    In an update, ``None`` means "unchanged"; in the settings in force every field is set.
    """

    type: str | None = "server_vad"
    threshold: float | None = None  # speech probability 0..1 above which a chunk counts as speech
    silence_ms: int | None = None  # server_vad: silence that ends a turn
    prefix_ms: int | None = None  # audio kept from before the detected speech start
    eagerness: str | None = None  # semantic: low | medium | high | auto
    fallback_ms: int | None = None  # semantic: silence that ends a turn whatever the model says
    speculative: bool | None = None  # semantic: start the reply at a pause, hold it until confirmed

    @classmethod
    def from_json(cls, obj: Mapping[str, Any], *, reader: FieldReader) -> TurnDetection:
        """Parse the ``turn_detection`` object of an update; errors name it through the parent's ``reader``.

        Every field is optional: what is left out keeps its current value (``None`` here).
        """
        sub = FieldReader(obj, where=f"{reader.where}: turn_detection", request_id=reader.request_id)
        for name in obj:
            if name not in attrs.fields_dict(cls):
                raise sub.fail(name, "is not defined for this object")
        return cls(
            type=sub.read_str("type", choices=TURN_DETECTION_TYPES),
            threshold=sub.read_number("threshold", minimum=0.0, maximum=1.0),
            silence_ms=sub.read_int("silence_ms", minimum=0, maximum=MAX_SILENCE_MS),
            prefix_ms=sub.read_int("prefix_ms", minimum=0, maximum=MAX_PREFIX_MS),
            eagerness=sub.read_str("eagerness", choices=EAGERNESS_LEVELS),
            fallback_ms=sub.read_int("fallback_ms", minimum=300, maximum=MAX_FALLBACK_MS),
            speculative=sub.read_bool("speculative"),
        )

    def to_json(self) -> dict[str, Any]:
        return {name: value for name, value in attrs.asdict(self).items() if value is not None}

    def updated(self, update: TurnDetection) -> TurnDetection:
        """These settings with the fields ``update`` sets replaced (``session.update`` semantics)."""
        return attrs.evolve(self, **{k: v for k, v in attrs.asdict(update).items() if v is not None})


@attrs.frozen
class SessionUpdate:
    type: ClassVar[str] = "session.update"
    instructions: str | None = None
    conversation_id: str | None = None
    input_sample_rate: int | None = None
    turn_detection: TurnDetection | None = None
    output_audio: bool | None = None
    input_audio_format: str | None = None
    output_audio_format: str | None = None
    voice: str | None = None
    language: str | None = None
    user_id: str | None = None  # who is speaking: presence, typing and offline messages are per user
    record: bool | None = None  # record the session's audio and transcript (see protocol/voice.md)
    request_id: str | None = None

    @classmethod
    def from_json(cls, obj: Mapping[str, Any], *, max_text_chars: int | None = None) -> SessionUpdate:
        known = (
            "instructions",
            "conversation_id",
            "input_sample_rate",
            "turn_detection",
            "output_audio",
            "input_audio_format",
            "output_audio_format",
            "voice",
            "language",
            "user_id",
            "record",
        )
        r = _reader(cls, obj, known)
        conversation_id = r.read_id("conversation_id")
        turn_detection = r.read_object("turn_detection")
        return cls(
            instructions=r.read_str("instructions", max_chars=max_text_chars),
            conversation_id=conversation_id,
            input_sample_rate=r.read_sample_rate("input_sample_rate", supported=SUPPORTED_SAMPLE_RATES),
            turn_detection=None
            if turn_detection is None
            else TurnDetection.from_json(turn_detection, reader=r),
            output_audio=r.read_bool("output_audio"),
            input_audio_format=r.read_str("input_audio_format", choices=INPUT_AUDIO_FORMATS),
            output_audio_format=r.read_str("output_audio_format", choices=OUTPUT_AUDIO_FORMATS),
            voice=_read_name(r, "voice"),
            language=_read_name(r, "language"),
            user_id=r.read_id("user_id"),
            record=r.read_bool("record"),
            request_id=r.request_id,
        )

    def to_json(self) -> dict[str, Any]:
        return _dump(
            self.type,
            self.request_id,
            instructions=self.instructions,
            conversation_id=self.conversation_id,
            input_sample_rate=self.input_sample_rate,
            turn_detection=None if self.turn_detection is None else self.turn_detection.to_json(),
            output_audio=self.output_audio,
            input_audio_format=self.input_audio_format,
            output_audio_format=self.output_audio_format,
            voice=self.voice,
            language=self.language,
            user_id=self.user_id,
            record=self.record,
        )


@attrs.frozen
class MessageCreate:
    """A typed user message: starts a reply, cancelling a running one (reason ``new_message``)."""

    type: ClassVar[str] = "message.create"
    text: str
    request_id: str | None = None

    @classmethod
    def from_json(cls, obj: Mapping[str, Any], *, max_text_chars: int | None = None) -> MessageCreate:
        r = _reader(cls, obj, ("text",))
        text = r.read_str("text", required=True, non_blank=True, max_chars=max_text_chars)
        assert text is not None
        return cls(text=text, request_id=r.request_id)

    def to_json(self) -> dict[str, Any]:
        return _dump(self.type, self.request_id, text=self.text)


@attrs.frozen
class Speak:
    """Narration: synthesize ``text`` without the LLM, as a reply with the usual reply events."""

    type: ClassVar[str] = "speak"
    text: str
    voice: str | None = None  # None: the session's voice
    request_id: str | None = None

    @classmethod
    def from_json(cls, obj: Mapping[str, Any], *, max_text_chars: int | None = None) -> Speak:
        r = _reader(cls, obj, ("text", "voice"))
        text = r.read_str("text", required=True, non_blank=True, max_chars=max_text_chars)
        assert text is not None
        return cls(text=text, voice=_read_name(r, "voice"), request_id=r.request_id)

    def to_json(self) -> dict[str, Any]:
        return _dump(self.type, self.request_id, text=self.text, voice=self.voice)


@attrs.frozen
class Narrate:
    """Long-form narration: ``text`` (or the stored lesson ``lesson_id``) queued and spoken phrase by phrase.

    Exactly one of ``text`` and ``lesson_id``. The text's length is checked by the session against
    ``max_narration_chars`` (it is bounded here only by the frame size).
    """

    type: ClassVar[str] = "narrate"
    text: str | None = None
    lesson_id: str | None = None
    voice: str | None = None  # None: the session's voice
    request_id: str | None = None

    @classmethod
    def from_json(cls, obj: Mapping[str, Any], *, max_text_chars: int | None = None) -> Narrate:
        r = _reader(cls, obj, ("text", "lesson_id", "voice"))
        text = r.read_str("text", non_blank=True)
        lesson_id = _read_name(r, "lesson_id")
        if (text is None) == (lesson_id is None):
            raise r.fail("text", "or 'lesson_id' is required, and not both")
        return cls(text=text, lesson_id=lesson_id, voice=_read_name(r, "voice"), request_id=r.request_id)

    def to_json(self) -> dict[str, Any]:
        return _dump(self.type, self.request_id, text=self.text, lesson_id=self.lesson_id, voice=self.voice)


@attrs.frozen
class _NarrationControl:
    """``narration.pause`` / ``resume`` / ``cancel``: of ``narration_id``, or of the current narration."""

    type: ClassVar[str]
    narration_id: str | None = None
    request_id: str | None = None

    @classmethod
    def from_json(cls, obj: Mapping[str, Any], *, max_text_chars: int | None = None) -> Any:
        r = _reader(cls, obj, ("narration_id",))
        return cls(narration_id=_read_name(r, "narration_id"), request_id=r.request_id)

    def to_json(self) -> dict[str, Any]:
        return _dump(self.type, self.request_id, narration_id=self.narration_id)


@attrs.frozen
class NarrationPause(_NarrationControl):
    """Stop the narration where it is (its reply ends ``cancelled``, ``narration_paused``); keep its place."""

    type: ClassVar[str] = "narration.pause"


@attrs.frozen
class NarrationResume(_NarrationControl):
    """Go on with a paused (or interrupted) narration from where it stopped, once no reply runs."""

    type: ClassVar[str] = "narration.resume"


@attrs.frozen
class NarrationCancel(_NarrationControl):
    """Drop a narration, queued, running or paused."""

    type: ClassVar[str] = "narration.cancel"


@attrs.frozen
class ResponseCancel:
    """Stop the running reply (or only the reply ``response_id``, if it is the one running)."""

    type: ClassVar[str] = "response.cancel"
    response_id: str | None = None
    request_id: str | None = None

    @classmethod
    def from_json(cls, obj: Mapping[str, Any], *, max_text_chars: int | None = None) -> ResponseCancel:
        r = _reader(cls, obj, ("response_id",))
        return cls(response_id=r.read_str("response_id", non_blank=True), request_id=r.request_id)

    def to_json(self) -> dict[str, Any]:
        return _dump(self.type, self.request_id, response_id=self.response_id)


@attrs.frozen
class ResponseTruncate:
    """The client played only the first ``audio_end_ms`` of reply ``response_id``'s audio."""

    type: ClassVar[str] = "response.truncate"
    response_id: str
    audio_end_ms: int
    request_id: str | None = None

    @classmethod
    def from_json(cls, obj: Mapping[str, Any], *, max_text_chars: int | None = None) -> ResponseTruncate:
        r = _reader(cls, obj, ("response_id", "audio_end_ms"))
        response_id = r.read_str("response_id", required=True, non_blank=True)
        audio_end_ms = r.read_int("audio_end_ms", required=True, minimum=0)
        assert response_id is not None and audio_end_ms is not None
        return cls(response_id=response_id, audio_end_ms=audio_end_ms, request_id=r.request_id)

    def to_json(self) -> dict[str, Any]:
        return _dump(self.type, self.request_id, response_id=self.response_id, audio_end_ms=self.audio_end_ms)


@attrs.frozen
class Ping:
    """Answered with ``pong``; also keeps an otherwise silent session from idling out."""

    type: ClassVar[str] = "ping"
    request_id: str | None = None

    @classmethod
    def from_json(cls, obj: Mapping[str, Any], *, max_text_chars: int | None = None) -> Ping:
        return cls(request_id=_reader(cls, obj, ()).request_id)

    def to_json(self) -> dict[str, Any]:
        return _dump(self.type, self.request_id)


@attrs.frozen
class InputAudioAppend:
    """Base64 PCM16LE mono audio at the session's input rate, appended to the input buffer."""

    type: ClassVar[str] = "input_audio.append"
    audio: bytes = _audio_field()
    request_id: str | None = None

    @classmethod
    def from_json(cls, obj: Mapping[str, Any], *, max_text_chars: int | None = None) -> InputAudioAppend:
        r = _reader(cls, obj, ("audio",))
        return cls(audio=r.read_audio("audio"), request_id=r.request_id)

    def to_json(self) -> dict[str, Any]:
        return _dump(self.type, self.request_id, audio=_b64(self.audio))


@attrs.frozen
class InputAudioCommit:
    """End the user's spoken turn now: transcribe the buffered audio and reply to it."""

    type: ClassVar[str] = "input_audio.commit"
    request_id: str | None = None

    @classmethod
    def from_json(cls, obj: Mapping[str, Any], *, max_text_chars: int | None = None) -> InputAudioCommit:
        return cls(request_id=_reader(cls, obj, ()).request_id)

    def to_json(self) -> dict[str, Any]:
        return _dump(self.type, self.request_id)


@attrs.frozen
class InputAudioClear:
    """Drop the buffered input audio of the current (uncommitted) turn."""

    type: ClassVar[str] = "input_audio.clear"
    request_id: str | None = None

    @classmethod
    def from_json(cls, obj: Mapping[str, Any], *, max_text_chars: int | None = None) -> InputAudioClear:
        return cls(request_id=_reader(cls, obj, ()).request_id)

    def to_json(self) -> dict[str, Any]:
        return _dump(self.type, self.request_id)


@attrs.frozen
class Transcribe:
    """One-shot speech-to-text of ``audio``, answered with ``transcript.final``; starts no reply."""

    type: ClassVar[str] = "transcribe"
    audio: bytes = _audio_field()
    sample_rate: int | None = None  # None: the session's input_sample_rate (pcm16 clips only)
    format: str | None = None  # None: pcm16; a compressed clip is a whole stream of that format
    language: str | None = None  # None: the session's language
    request_id: str | None = None

    @classmethod
    def from_json(cls, obj: Mapping[str, Any], *, max_text_chars: int | None = None) -> Transcribe:
        r = _reader(cls, obj, ("audio", "sample_rate", "format", "language"))
        fmt = r.read_str("format", choices=INPUT_AUDIO_FORMATS)
        return cls(
            audio=r.read_audio("audio", pcm16=fmt in (None, "pcm16")),
            sample_rate=r.read_sample_rate("sample_rate", supported=SUPPORTED_SAMPLE_RATES),
            format=fmt,
            language=_read_name(r, "language"),
            request_id=r.request_id,
        )

    def to_json(self) -> dict[str, Any]:
        return _dump(
            self.type,
            self.request_id,
            audio=_b64(self.audio),
            sample_rate=self.sample_rate,
            format=self.format,
            language=self.language,
        )


@attrs.frozen
class InputAudioFrame:
    """A binary frame: input audio in the session's ``input_audio_format`` (PCM16LE mono at its input
    rate by default, the same as ``input_audio.append``)."""

    audio: bytes = _audio_field()
    request_id: str | None = None  # binary frames cannot carry one; always None


ClientMessage = (
    SessionUpdate
    | MessageCreate
    | Speak
    | Narrate
    | NarrationPause
    | NarrationResume
    | NarrationCancel
    | ResponseCancel
    | ResponseTruncate
    | Ping
    | InputAudioAppend
    | InputAudioCommit
    | InputAudioClear
    | Transcribe
    | InputAudioFrame
    | ControlMessage
)

#: wire type → class, for every JSON client message.
CLIENT_MESSAGE_TYPES: Mapping[str, Any] = {
    cls.type: cls
    for cls in (
        SessionUpdate,
        MessageCreate,
        Speak,
        Narrate,
        NarrationPause,
        NarrationResume,
        NarrationCancel,
        ResponseCancel,
        ResponseTruncate,
        Ping,
        InputAudioAppend,
        InputAudioCommit,
        InputAudioClear,
        Transcribe,
        *CONTROL_CLASSES,
    )
}


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def decode_text(text: str, *, max_text_chars: int) -> ClientMessage:
    """Parse one text frame into a client message.

    Args:
        text: the frame's payload.
        max_text_chars: the longest ``text`` / ``instructions`` accepted (``Config.max_text_chars``).

    Raises:
        RemoteProtocolError: ``invalid_json`` (also for a lone surrogate, which cannot be echoed back
            as UTF-8), ``invalid_message``, ``unknown_type``, ``invalid_field``,
            ``text_too_long`` or ``invalid_audio``; ``request_id`` is set whenever it could be read,
            ``close_code`` is always ``None`` (the session survives every one of these).
    """
    try:
        obj = json.loads(text, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as exc:
        # JSONDecodeError is a ValueError; RecursionError comes from absurdly deep nesting.
        raise RemoteProtocolError(f"frame is not valid JSON: {exc}", code=codes.INVALID_JSON) from None
    if (not text.isascii() or _SURROGATE_ESCAPE.search(text)) and holds_lone_surrogate(obj):
        raise RemoteProtocolError(
            "frame is not valid JSON: a string holds a lone UTF-16 surrogate (a \\uD800-\\uDFFF escape "
            "without its pair), which is not Unicode text",
            code=codes.INVALID_JSON,
        )
    if not isinstance(obj, dict):
        raise RemoteProtocolError(
            f"a message must be a JSON object, not {type(obj).__name__}", code=codes.INVALID_MESSAGE
        )
    request_id = read_request_id(obj)
    type_ = obj.get("type")
    if not isinstance(type_, str):
        raise RemoteProtocolError(
            "a message needs a string field 'type'", code=codes.INVALID_MESSAGE, request_id=request_id
        )
    cls = CLIENT_MESSAGE_TYPES.get(type_)
    if cls is None:
        raise RemoteProtocolError(
            f"unknown message type {type_!r}", code=codes.UNKNOWN_TYPE, request_id=request_id
        )
    return cls.from_json(obj, max_text_chars=max_text_chars)


def decode_binary(data: bytes, *, pcm16: bool = True) -> InputAudioFrame:
    """Parse one binary frame: raw PCM16LE mono audio at the session's input rate, or (``pcm16=False``)
    the next bytes of a compressed stream, which only its decoder can check.

    Raises:
        RemoteProtocolError: ``invalid_audio`` if the frame is empty or (PCM16) has an odd byte length.
    """

    def fail(problem: str) -> RemoteProtocolError:
        return RemoteProtocolError(f"binary frame {problem}", code=codes.INVALID_AUDIO)

    if pcm16:
        check_pcm16(data, fail=fail)
    elif not data:
        raise fail("holds no audio")
    return InputAudioFrame(audio=bytes(data))


def check_frame_size(size: int, *, max_frame_bytes: int) -> None:
    """Refuse a frame of ``size`` bytes if it is over ``max_frame_bytes`` (``Config.max_frame_bytes``).

    The session calls this before decoding; the frame is then dropped and the session goes on.

    Raises:
        RemoteProtocolError: ``frame_too_large``.
    """
    if size > max_frame_bytes:
        raise RemoteProtocolError(
            f"frame of {size} bytes is larger than the limit of {max_frame_bytes} bytes; it was dropped",
            code=codes.FRAME_TOO_LARGE,
        )


def encode_client(message: ClientMessage) -> str | bytes:
    """Render a client message as a WebSocket frame payload: ``str`` for text, ``bytes`` for binary."""
    if isinstance(message, InputAudioFrame):
        return message.audio
    return json.dumps(message.to_json(), separators=(",", ":"), ensure_ascii=False)
