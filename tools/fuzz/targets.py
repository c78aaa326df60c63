"""The fuzz targets: for each decoder, how raw fuzzer bytes become its input, its seeds and its dictionary.

A target's ``run(data)`` feeds one input to the decoder through :mod:`tools.fuzz.oracle` and raises on a
finding. Seeds are valid and documented-invalid inputs (every example in ``protocol/``, one message of
every type), so the fuzzer starts from the protocol's shapes rather than from nothing; the dictionary
gives libFuzzer the protocol's words (types, field names, JSON literals, escapes) to splice in.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Sequence

import attrs

from trio_voice import events
from trio_voice.audio import wav_bytes
from trio_voice.codec import (
    CLIENT_MESSAGE_TYPES,
    SERVER_EVENT_TYPES,
    SUPPORTED_SAMPLE_RATES,
    TURN_DETECTION_TYPES,
    InputAudioAppend,
    MessageCreate,
    Ping,
    ResponseCancel,
    ResponseTruncate,
    SessionUpdate,
    Transcribe,
    TurnDetection,
    codes,
    encode_client,
    encode_event,
)

from . import oracle

PCM = b"\x00\x00\x0c\x00\xf9\xff!\x00"  # four PCM16LE samples
MARKER = re.compile(r"^<!-- example: (?P<kind>[\w-]+)(?: \w+)? -->\n```\w*\n(?P<body>.*?)\n```", re.M | re.S)
BOUNDARY = "fuzzboundary1234"


@attrs.frozen
class Target:
    name: str
    run: Callable[[bytes], object]  # one input through the decoder and the oracle; raises on a finding
    seeds: Callable[[], Sequence[bytes]]
    tokens: Sequence[bytes]  # the libFuzzer dictionary
    max_len: int  # longest input libFuzzer builds


def protocol_examples(*kinds: str) -> list[bytes]:
    """The bodies of the fenced examples of ``kinds`` in protocol/*.md (transcripts split into lines)."""
    found = []
    for path in sorted(oracle.PROTOCOL.glob("*.md")):
        for match in MARKER.finditer(path.read_text(encoding="utf-8")):
            if match["kind"] in kinds:
                found.append(match["body"].encode())
            elif match["kind"] == "transcript":
                for line in match["body"].splitlines():
                    arrow, _, rest = line.partition(" ")
                    if (arrow == "→" and "client" in kinds) or (arrow == "←" and "server" in kinds):
                        if rest.startswith("{"):
                            found.append(rest.encode())
    return found


def _quoted(words) -> list[bytes]:
    return [f'"{word}"'.encode() for word in words]


JSON_TOKENS = [
    b"{",
    b"}",
    b"[",
    b"]",
    b":",
    b",",
    b"true",
    b"false",
    b"null",
    b"NaN",
    b"Infinity",
    b"-Infinity",
    b"-0",
    b"0.5",
    b"1e400",
    b"-1e-400",
    b"\\u0000",
    b"\\ud800",
    b"\\udc00",
    b"\\ud83d\\ude00",
    b"\\\\",
    b'\\"',
    b"\xc3\xa9",
    b"\xf0\x9f\x98\x80",
]


# --- text frames (decode_text) -----------------------------------------------------------------------


def run_text(data: bytes) -> object:
    # A WebSocket text frame reaches the codec as str decoded from valid UTF-8; map any bytes onto that.
    return oracle.check_text(data.decode("utf-8", "replace"))


def text_seeds() -> list[bytes]:
    samples = [
        SessionUpdate(
            instructions="Be brief.",
            conversation_id="conv_1",
            input_sample_rate=16000,
            turn_detection=TurnDetection("server_vad", 0.5, 500, 300),
            output_audio=True,
            request_id="r1",
        ),
        MessageCreate(text="Hello there", request_id="r2"),
        ResponseCancel(response_id="resp_1"),
        ResponseTruncate(response_id="resp_1", audio_end_ms=1200),
        Ping(request_id="p"),
        InputAudioAppend(audio=PCM),
        Transcribe(audio=PCM, sample_rate=8000),
        *(cls() for cls in CLIENT_MESSAGE_TYPES.values() if _all_optional(cls)),
    ]
    encoded = [encode_client(message) for message in samples]
    return [text.encode() for text in encoded if isinstance(text, str)] + protocol_examples(
        "client", "client-invalid"
    )


def _all_optional(cls: type) -> bool:
    return all(field.default is not attrs.NOTHING for field in attrs.fields(cls))


def client_field_names() -> set[str]:
    names = {"type", "request_id", "threshold", "silence_ms", "prefix_ms"}
    for cls in CLIENT_MESSAGE_TYPES.values():
        names.update(field.name for field in attrs.fields(cls))
    return names


TEXT = Target(
    "text",
    run_text,
    text_seeds,
    tokens=[
        *JSON_TOKENS,
        *_quoted(sorted(CLIENT_MESSAGE_TYPES)),
        *_quoted(sorted(client_field_names())),
        *_quoted(TURN_DETECTION_TYPES),
        *(str(rate).encode() for rate in SUPPORTED_SAMPLE_RATES),
        b'"AAAA"',
        b'"AA=="',
        base64.b64encode(PCM),
    ],
    max_len=4096,
)


# --- binary frames (decode_binary, check_frame_size) -------------------------------------------------


def run_binary(data: bytes) -> object:
    oracle.check_frame(len(data), max_frame_bytes=256)
    return oracle.check_binary(data)


BINARY = Target("binary", run_binary, lambda: [b"", b"\x00", PCM, PCM * 40], tokens=[], max_len=1024)


# --- multipart uploads (parse_form, TranscriptionRequest.from_form) -----------------------------------


def run_form(data: bytes) -> object:
    """The first line is the Content-Type header (decoded as latin-1, as ASGI gives it); the rest is the body."""
    head, newline, body = data.partition(b"\n")
    return oracle.check_form(body, head.decode("latin-1")) if newline else oracle.check_form(data, None)


def multipart(fields: Sequence[tuple[str, str | None, bytes]], boundary: str = BOUNDARY) -> bytes:
    out = bytearray()
    for name, filename, value in fields:
        out += f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"'.encode()
        if filename is not None:
            out += f'; filename="{filename}"\r\nContent-Type: audio/wav'.encode()
        out += b"\r\n\r\n" + value + b"\r\n"
    return bytes(out + f"--{boundary}--\r\n".encode())


def form_seeds() -> list[bytes]:
    header = f"multipart/form-data; boundary={BOUNDARY}\n".encode()
    wav = wav_bytes(PCM, 16000)
    return [
        header + multipart([("file", "a.wav", wav), ("model", None, b"whisper-1")]),
        header
        + multipart([("file", "b.wav", wav), ("response_format", None, b"text"), ("language", None, b"en")]),
        b'multipart/form-data; boundary="quoted boundary"\n'
        + multipart([("file", "c.wav", wav)], boundary="quoted boundary"),
        header + multipart([("language", None, b"fr")]),
        b"application/json\n{}",
    ]


FORM = Target(
    "form",
    run_form,
    form_seeds,
    tokens=[
        b"multipart/form-data",
        b"; boundary=",
        f"--{BOUNDARY}".encode(),
        b"\r\n",
        b"\r\n\r\n",
        b"--\r\n",
        b"Content-Disposition: form-data",
        b"Content-Type: ",
        b'; name="',
        b'; filename="',
        b"; filename*=utf-8''",
        b"%FF",
        b'"file"',
        b'"model"',
        b'"response_format"',
        b'"language"',
        b"json",
        b"text",
        b"\xff\xfe",
    ],
    max_len=4096,
)


# --- server frames, as a Python client reads them (decode_server_event) ------------------------------


def run_events(data: bytes) -> object:
    return oracle.check_server_event(data.decode("utf-8", "replace"))


def event_seeds() -> list[bytes]:
    samples = [
        events.SessionCreated("sess_1", "conv_1", {"instructions": "", "limits": {"max_frame_bytes": 1}}),
        events.ErrorEvent("invalid_field", "bad", response_id="resp_1"),
        events.Pong(),
        events.SpeechStarted(120),
        events.AudioReady("resp_1", 0, PCM, 22050),
        events.ReplyDone("resp_1", "cancelled", "turn_detected", "Hi", dict.fromkeys(codes.REQUIRED_METRICS)),
    ]
    rendered = [encode_event(event, seq=n, request_id="r") for n, event in enumerate(samples, 1)]
    return [text.encode() for text in rendered] + protocol_examples("server")


EVENTS = Target(
    "events",
    run_events,
    event_seeds,
    tokens=[
        *JSON_TOKENS,
        *_quoted(sorted(SERVER_EVENT_TYPES)),
        *_quoted(["seq", "request_id", "response_id", "audio", "status", "reason", "metrics", "index"]),
        *_quoted(sorted(codes.REPLY_STATUSES | codes.CANCEL_REASONS)),
    ],
    max_len=4096,
)

TARGETS: dict[str, Target] = {target.name: target for target in (TEXT, BINARY, FORM, EVENTS)}
