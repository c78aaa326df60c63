"""What counts as a correct answer to hostile input: the contract every decoder is fuzzed against.

A decoder given anything must either return a value the server can use, or raise
``RemoteProtocolError`` with a code the protocol documents (``protocol/errors.md``, plus the HTTP-only
codes of ``protocol/http.md`` for HTTP bodies). Anything else is a :class:`Finding`, or the foreign
exception itself, which the fuzzers report as a crash.

"Usable" goes one step past the decoder, to what the server does next with the result, because a
value that decodes but cannot be sent back is a crash waiting one call later: a client message must
re-encode to UTF-8 (the session echoes its ``request_id`` on every event it causes) and decode again to
itself; an error must render as the ``error`` event (or HTTP error body) the server would send.

Both drivers use these checks: the Hypothesis properties in ``tests/test_codec_properties.py`` and the
coverage-guided fuzzer in ``tools.fuzz.worker``. Pure functions, no I/O besides reading the protocol pages
once.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from pathlib import Path

from trio_voice import events
from trio_voice.codec import (
    ClientMessage,
    InputAudioFrame,
    ServerMessage,
    check_frame_size,
    decode_binary,
    decode_server_event,
    decode_text,
    encode_client,
    encode_event,
)
from trio_voice.errors import RemoteProtocolError
from trio_voice.http.forms import FormPart, parse_form
from trio_voice.http.speech import TranscriptionRequest

PROTOCOL = Path(__file__).resolve().parent.parent.parent / "protocol"
MAX_TEXT_CHARS = 64  # small, so the fuzzers reach text_too_long with small inputs


class Finding(AssertionError):
    """A decoder broke the contract without raising a foreign exception (wrong code, lossy round trip)."""


def _table_codes(page: str, after: str, column: int) -> frozenset[str]:
    """Every backticked code in column ``column`` of the first table after the line ``after`` in a page."""
    text = (PROTOCOL / page).read_text(encoding="utf-8")
    lines = text.split(f"\n{after}\n", 1)[1].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    found: set[str] = set()
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        cells = line.strip().strip("|").split("|")
        if len(cells) > column:
            found.update(re.findall(r"`(\w+)`", cells[column]))
    return frozenset(found)


@functools.cache
def websocket_codes() -> frozenset[str]:
    """The error codes ``protocol/errors.md`` documents for the WebSocket protocol."""
    return _table_codes("errors.md", "## Error codes", 0)


@functools.cache
def http_codes() -> frozenset[str]:
    """The error codes an HTTP endpoint may answer: errors.md's, plus the HTTP-only ones of http.md."""
    return websocket_codes() | _table_codes("http.md", "| status | code | when |", 1)


def sendable(text: str) -> bytes:
    """A WebSocket text frame is UTF-8: a string that cannot be encoded cannot be sent."""
    return text.encode("utf-8")


def check_refusal(exc: RemoteProtocolError, *, documented: frozenset[str]) -> None:
    """An error a decoder raised has a documented code and renders as the ``error`` event the session sends.

    The codec's refusals never close the connection (closing is the session's decision).
    """
    if exc.code not in documented:
        raise Finding(f"undocumented error code {exc.code!r}: {exc}") from exc
    if exc.close_code is not None:
        raise Finding(f"a decoder asked to close the connection ({exc.close_code}): {exc}") from exc
    sendable(encode_event(events.ErrorEvent(exc.code, exc.message), seq=1, request_id=exc.request_id))


def check_text(text: str, *, max_text_chars: int = MAX_TEXT_CHARS) -> ClientMessage | None:
    """Decode one text frame; return the message, or ``None`` if it was properly refused."""
    try:
        message = decode_text(text, max_text_chars=max_text_chars)
    except RemoteProtocolError as exc:
        check_refusal(exc, documented=websocket_codes())
        return None
    again = encode_client(message)
    assert isinstance(again, str)
    sendable(again)
    if decode_text(again, max_text_chars=max_text_chars) != message:
        raise Finding(f"{message!r} does not survive encode_client → decode_text")
    return message


def check_binary(data: bytes) -> InputAudioFrame | None:
    """Decode one binary frame; return the audio frame, or ``None`` if it was properly refused."""
    try:
        frame = decode_binary(data)
    except RemoteProtocolError as exc:
        check_refusal(exc, documented=websocket_codes())
        return None
    if frame.audio != data or encode_client(frame) != data:
        raise Finding("a binary frame's audio is not the frame's bytes")
    return frame


def check_frame(size: int, *, max_frame_bytes: int) -> bool:
    """Whether a frame of ``size`` bytes is let through; refusals must be ``frame_too_large``."""
    try:
        check_frame_size(size, max_frame_bytes=max_frame_bytes)
    except RemoteProtocolError as exc:
        check_refusal(exc, documented=websocket_codes())
        if exc.code != "frame_too_large" or size <= max_frame_bytes:
            raise Finding(f"frame of {size} bytes (limit {max_frame_bytes}) refused: {exc}") from exc
        return False
    if size > max_frame_bytes:
        raise Finding(f"frame of {size} bytes let through a limit of {max_frame_bytes}")
    return True


def check_server_event(text: str) -> ServerMessage | None:
    """Decode one server frame (the client side); return it, or ``None`` if it was properly refused."""
    try:
        decoded = decode_server_event(text)
    except RemoteProtocolError as exc:
        check_refusal(exc, documented=websocket_codes())
        return None
    return decoded


def check_http_refusal(exc: RemoteProtocolError) -> None:
    """An HTTP error has a documented code and renders as the JSON body ``trio_voice.http.app`` sends."""
    if exc.code not in http_codes():
        raise Finding(f"undocumented HTTP error code {exc.code!r}: {exc}") from exc
    json.dumps({"error": {"code": exc.code, "message": exc.message}}, separators=(",", ":")).encode()


def check_form(body: bytes, content_type: str | None) -> Mapping[str, FormPart] | None:
    """Parse an upload as ``POST /v1/audio/transcriptions`` does: the form, its text fields, the request.

    ``content_type`` is what the HTTP layer gives: a header decoded as latin-1.
    """
    try:
        form = parse_form(body, content_type)
    except RemoteProtocolError as exc:
        check_http_refusal(exc)
        return None
    for name, part in form.items():
        if part.name != name:
            raise Finding(f"form part {part.name!r} filed under {name!r}")
        try:
            part.text()
        except RemoteProtocolError as exc:
            check_http_refusal(exc)
    try:
        TranscriptionRequest.from_form(form)
    except RemoteProtocolError as exc:
        check_http_refusal(exc)
    return form
