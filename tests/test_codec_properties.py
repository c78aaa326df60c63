"""Properties of the wire codec and the form parser, checked on generated input (Hypothesis). No sockets.

Two kinds of property:

- round trips: every client message and every server event the strategies below can build survives
  encode → decode unchanged (and a client message is valid to the published JSON Schema);
- robustness: arbitrary JSON values, text and bytes given to a decoder give a value or a
  ``RemoteProtocolError`` with a documented code, never another exception. The contract itself lives
  in ``tools.fuzz.oracle``, shared with the coverage-guided fuzzer (``python -m tools.fuzz codec``).
  Random search rarely puts a given edge value in a given field, so one table test also sets every
  field of every message to every kind of JSON value, exhaustively.

Example counts come from the Hypothesis profile in ``conftest.py`` (200 per property unless
``TRIO_VOICE_HYPOTHESIS_EXAMPLES`` says otherwise), so the normal suite stays fast.
"""

from __future__ import annotations

import json
import typing
from pathlib import Path
from types import MappingProxyType

import attrs
import jsonschema
import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st

from tools.fuzz import oracle
from trio_voice import events
from trio_voice.codec import (
    CLIENT_MESSAGE_TYPES,
    SERVER_EVENT_TYPES,
    SUPPORTED_SAMPLE_RATES,
    TURN_DETECTION_TYPES,
    InputAudioAppend,
    InputAudioClear,
    InputAudioCommit,
    InputAudioFrame,
    MessageCreate,
    Ping,
    ResponseCancel,
    ResponseTruncate,
    ServerMessage,
    SessionUpdate,
    Speak,
    Transcribe,
    TurnDetection,
    codes,
    decode_server_event,
    encode_client,
    encode_event,
)
from trio_voice.codec.client import (
    EAGERNESS_LEVELS,
    INPUT_AUDIO_FORMATS,
    MAX_FALLBACK_MS,
    MAX_NAME_CHARS,
    MAX_PREFIX_MS,
    MAX_SILENCE_MS,
    OUTPUT_AUDIO_FORMATS,
    Narrate,
    NarrationCancel,
    NarrationPause,
    NarrationResume,
)
from trio_voice.codec.controls import (
    CLIENT_PRESENCE,
    MessageDelivered,
    PresenceSet,
    ResponsePause,
    ResponseResume,
    SessionResume,
    TypingStart,
    TypingStop,
)
from trio_voice.codec.fields import MAX_ID_CHARS, MAX_REQUEST_ID_CHARS
from trio_voice.errors import RemoteProtocolError
from trio_voice.http.forms import parse_form

LIMIT = 400  # max_text_chars for round trips: above every text the strategies build
CLIENT_SCHEMA = json.loads(
    (Path(__file__).resolve().parent.parent / "protocol/schema/client.schema.json").read_text()
)
CLIENT_VALIDATOR = jsonschema.Draft202012Validator(CLIENT_SCHEMA)

# --- strategies: valid client messages ---------------------------------------------------------------

# Strings a client may send: any Unicode scalar values (Hypothesis' default alphabet has no surrogates).
request_ids = st.none() | st.text(max_size=MAX_REQUEST_ID_CHARS)
non_blank = st.text(min_size=1, max_size=LIMIT).filter(str.strip)
pcm16 = st.integers(min_value=1, max_value=64).flatmap(lambda n: st.binary(min_size=2 * n, max_size=2 * n))
sample_rates = st.sampled_from(SUPPORTED_SAMPLE_RATES)

turn_detections = st.builds(
    TurnDetection,
    type=st.none() | st.sampled_from(TURN_DETECTION_TYPES),
    threshold=st.none() | st.floats(min_value=0.0, max_value=1.0),
    silence_ms=st.none() | st.integers(min_value=0, max_value=MAX_SILENCE_MS),
    prefix_ms=st.none() | st.integers(min_value=0, max_value=MAX_PREFIX_MS),
    eagerness=st.none() | st.sampled_from(EAGERNESS_LEVELS),
    fallback_ms=st.none() | st.integers(min_value=300, max_value=MAX_FALLBACK_MS),
    speculative=st.none() | st.booleans(),
)
# Voice names, language codes, lesson and narration ids: short identifiers, not blank.
names = st.text(min_size=1, max_size=MAX_NAME_CHARS).filter(str.strip)

CLIENT_STRATEGIES: dict[type, st.SearchStrategy] = {
    SessionUpdate: st.builds(
        SessionUpdate,
        instructions=st.none() | st.text(max_size=LIMIT),
        conversation_id=st.none() | st.text(min_size=1, max_size=MAX_ID_CHARS).filter(str.strip),
        input_sample_rate=st.none() | sample_rates,
        turn_detection=st.none() | turn_detections,
        output_audio=st.none() | st.booleans(),
        input_audio_format=st.none() | st.sampled_from(INPUT_AUDIO_FORMATS),
        output_audio_format=st.none() | st.sampled_from(OUTPUT_AUDIO_FORMATS),
        voice=st.none() | names,
        language=st.none() | names,
        request_id=request_ids,
    ),
    MessageCreate: st.builds(MessageCreate, text=non_blank, request_id=request_ids),
    SessionResume: st.builds(
        SessionResume,
        session_id=st.text(min_size=1, max_size=MAX_ID_CHARS).filter(str.strip),
        resume_token=st.text(min_size=1, max_size=MAX_ID_CHARS).filter(str.strip),
        last_seq=st.integers(min_value=0),
        request_id=request_ids,
    ),
    PresenceSet: st.builds(PresenceSet, status=st.sampled_from(CLIENT_PRESENCE), request_id=request_ids),
    TypingStart: st.builds(TypingStart, request_id=request_ids),
    TypingStop: st.builds(TypingStop, request_id=request_ids),
    MessageDelivered: st.builds(
        MessageDelivered,
        message_id=st.text(min_size=1, max_size=MAX_ID_CHARS).filter(str.strip),
        request_id=request_ids,
    ),
    ResponsePause: st.builds(ResponsePause, response_id=st.none() | non_blank, request_id=request_ids),
    ResponseResume: st.builds(ResponseResume, response_id=st.none() | non_blank, request_id=request_ids),
    Speak: st.builds(Speak, text=non_blank, voice=st.none() | names, request_id=request_ids),
    Narrate: st.one_of(
        st.builds(Narrate, text=non_blank, voice=st.none() | names, request_id=request_ids),
        st.builds(Narrate, lesson_id=names, voice=st.none() | names, request_id=request_ids),
    ),
    NarrationPause: st.builds(NarrationPause, narration_id=st.none() | names, request_id=request_ids),
    NarrationResume: st.builds(NarrationResume, narration_id=st.none() | names, request_id=request_ids),
    NarrationCancel: st.builds(NarrationCancel, narration_id=st.none() | names, request_id=request_ids),
    ResponseCancel: st.builds(ResponseCancel, response_id=st.none() | non_blank, request_id=request_ids),
    ResponseTruncate: st.builds(
        ResponseTruncate, response_id=non_blank, audio_end_ms=st.integers(min_value=0), request_id=request_ids
    ),
    Ping: st.builds(Ping, request_id=request_ids),
    InputAudioAppend: st.builds(InputAudioAppend, audio=pcm16, request_id=request_ids),
    InputAudioCommit: st.builds(InputAudioCommit, request_id=request_ids),
    InputAudioClear: st.builds(InputAudioClear, request_id=request_ids),
    Transcribe: st.builds(
        Transcribe,
        audio=pcm16,
        sample_rate=st.none() | sample_rates,
        language=st.none() | names,
        request_id=request_ids,
    ),
    InputAudioFrame: st.builds(InputAudioFrame, audio=pcm16),
}
client_messages = st.one_of(*CLIENT_STRATEGIES.values())

# --- strategies: valid server events -----------------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
json_objects = st.dictionaries(st.text(max_size=10), json_values, max_size=6)
# Configs are often read-only mappings on our side; the codec must render those too.
configs = json_objects | json_objects.map(MappingProxyType)
ids = st.text(max_size=40)
ints = st.integers()
metrics = st.fixed_dictionaries(
    {name: st.none() | st.integers(min_value=0) | st.floats(0, 1e9) for name in codes.REQUIRED_METRICS}
)
reply_endings = st.one_of(
    st.tuples(st.just(codes.STATUS_COMPLETED), st.none()),
    st.tuples(st.just(codes.STATUS_CANCELLED), st.sampled_from(sorted(codes.CANCEL_REASONS))),
    st.tuples(st.just(codes.STATUS_FAILED), st.sampled_from(sorted(codes.ERROR_CODES))),
)

EVENT_STRATEGIES: dict[type, st.SearchStrategy] = {
    events.SessionCreated: st.builds(
        events.SessionCreated, session_id=ids, conversation_id=ids, config=configs, resume_token=st.none() | ids
    ),
    events.SessionResumed: st.builds(
        events.SessionResumed, session_id=ids, conversation_id=ids, last_seq=ints, replayed=ints
    ),
    events.PresenceUpdate: st.builds(
        events.PresenceUpdate,
        user_id=ids,
        session_id=ids,
        status=st.sampled_from(("online", "away", "offline")),
        last_seen=st.floats(min_value=0, max_value=4e9),
    ),
    events.TypingUpdate: st.builds(events.TypingUpdate, user_id=ids, session_id=ids, typing=st.booleans()),
    events.SystemMessage: st.builds(
        events.SystemMessage,
        message_id=ids,
        kind=st.sampled_from(("system", "reply")),
        text=st.text(),
        created_at=st.floats(min_value=0, max_value=4e9),
        expires_at=st.floats(min_value=0, max_value=4e9),
        conversation_id=st.none() | ids,
    ),
    events.SessionUpdated: st.builds(events.SessionUpdated, conversation_id=ids, config=configs),
    events.ErrorEvent: st.builds(
        events.ErrorEvent,
        code=st.sampled_from(sorted(codes.ERROR_CODES)),
        message=st.text(),
        response_id=st.none() | ids,
        reason=st.none() | ids,
    ),
    events.WarningEvent: st.builds(
        events.WarningEvent,
        code=st.sampled_from(sorted(codes.WARNING_CODES)),
        message=st.text(),
        response_id=st.none() | ids,
    ),
    events.Pong: st.just(events.Pong()),
    events.SpeechStarted: st.builds(events.SpeechStarted, audio_start_ms=ints),
    events.SpeechStopped: st.builds(events.SpeechStopped, audio_end_ms=ints),
    events.TranscriptPartial: st.builds(events.TranscriptPartial, text=st.text()),
    events.TranscriptFinal: st.builds(events.TranscriptFinal, text=st.text(), language=st.none() | ids),
    events.ReplyCreated: st.builds(events.ReplyCreated, response_id=ids),
    events.TextDelta: st.builds(events.TextDelta, response_id=ids, delta=st.text()),
    events.PhraseReady: st.builds(events.PhraseReady, response_id=ids, index=ints, text=st.text()),
    events.AudioReady: st.builds(
        events.AudioReady,
        response_id=ids,
        index=ints,
        audio=st.just(b"") | pcm16,
        sample_rate=ints,
        format=st.sampled_from(OUTPUT_AUDIO_FORMATS),
    ),
    events.NarrationCreated: st.builds(events.NarrationCreated, narration_id=ids, total_phrases=ints, ahead=ints),
    events.NarrationProgress: st.builds(
        events.NarrationProgress,
        narration_id=ids,
        response_id=ids,
        phrase_index=ints,
        total_phrases=ints,
        position_ms=ints,
    ),
    events.NarrationPaused: st.builds(events.NarrationPaused, narration_id=ids, phrase_index=ints, reason=ids),
    events.NarrationDone: st.builds(events.NarrationDone, narration_id=ids, status=ids),
    events.ReplyDone: st.builds(
        lambda response_id, ending, text, metrics: events.ReplyDone(response_id, *ending, text, metrics),
        ids,
        reply_endings,
        st.text(),
        metrics,
    ),
}
server_events = st.one_of(*EVENT_STRATEGIES.values())

# --- strategies: hostile input -----------------------------------------------------------------------

# Lone surrogates are legal in a Python str and in JSON's \u escapes, but not in UTF-8.
any_chars = st.characters(codec="utf-8") | st.integers(0xD800, 0xDFFF).map(chr)
any_text = st.text(any_chars, max_size=80)
TURN_DETECTION_FIELDS = [field.name for field in attrs.fields(TurnDetection) if field.name != "type"]
huge_ints = st.integers(min_value=2**64, max_value=10**400) | st.integers(max_value=-(2**64)).map(
    lambda n: max(n, -(10**400))
)
hostile_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | huge_ints
    | st.floats()  # NaN and ±Infinity too: json.dumps writes them as JavaScript literals
    | any_text
    | st.sampled_from(["", " ", "AAAA", "AAA=", "AA==", "not base64!", "server_vad", "none"])
)


def hostile_containers(inner: st.SearchStrategy) -> st.SearchStrategy:
    return st.lists(inner, max_size=4) | st.dictionaries(any_text, inner, max_size=4)


hostile_values = st.recursive(hostile_scalars, hostile_containers, max_leaves=10)
# A field's value: a scalar half the time, so typed readers are reached with wrong scalars as often as
# with wrong containers.
field_values = hostile_scalars | hostile_values


@st.composite
def message_shaped(draw: st.DrawFn) -> dict:
    """A valid client message's JSON with one to three fields replaced by arbitrary values, removed, or
    added (``stray``), inside ``turn_detection`` too.

    Starting from valid messages lets the generated input reach every field reader, and each check after
    the broken field, rather than stopping at ``unknown_type`` or the first missing field.
    """
    message = draw(st.one_of(*(s for cls, s in CLIENT_STRATEGIES.items() if cls is not InputAudioFrame)))
    obj = message.to_json()
    names = ["type", "request_id", "stray", *(field.name for field in attrs.fields(type(message)))]
    for _ in range(draw(st.integers(1, 3))):
        target, choices = obj, names
        if isinstance(obj.get("turn_detection"), dict) and draw(st.booleans()):
            target, choices = obj["turn_detection"], ["type", "stray", *TURN_DETECTION_FIELDS]
        name = draw(st.sampled_from(choices))
        if draw(st.integers(0, 4)) == 0:
            target.pop(name, None)
        else:
            target[name] = draw(field_values)
    return obj


SERVER_FIELD_NAMES = sorted(
    {"seq", "request_id"}
    | {field.name for cls in typing.get_args(events.ServerEvent) for field in attrs.fields(cls)}
)
event_shaped = st.fixed_dictionaries(
    {"type": st.sampled_from(sorted(SERVER_EVENT_TYPES)) | field_values},
    optional={name: field_values for name in SERVER_FIELD_NAMES},
)


def as_json_text(value: object, ascii_only: bool) -> str:
    """JSON text for ``value`` the way a client library would write it (NaN and Infinity included)."""
    return json.dumps(value, ensure_ascii=ascii_only)


# --- round trips -------------------------------------------------------------------------------------


def test_strategies_cover_every_client_message_class():
    """Every client message class has a strategy, so the round trip covers the whole protocol."""
    assert set(CLIENT_STRATEGIES) == {*CLIENT_MESSAGE_TYPES.values(), InputAudioFrame}


def test_strategies_cover_every_server_event_class():
    """Every server event class has a strategy."""
    assert set(EVENT_STRATEGIES) == set(typing.get_args(events.ServerEvent))


@given(client_messages)
def test_client_message_round_trip(message):
    """encode_client then decode_text (or decode_binary) gives the same message back."""
    frame = encode_client(message)
    if isinstance(message, InputAudioFrame):
        assert oracle.check_binary(frame) == message
    else:
        assert oracle.check_text(frame, max_text_chars=LIMIT) == message


@given(st.one_of(*(strategy for cls, strategy in CLIENT_STRATEGIES.items() if cls is not InputAudioFrame)))
def test_encoded_client_message_is_valid_to_the_schema(message):
    """What encode_client writes is valid to protocol/schema/client.schema.json."""
    CLIENT_VALIDATOR.validate(json.loads(encode_client(message)))


@given(server_events, st.integers(min_value=1), request_ids)
def test_server_event_round_trip(event, seq, request_id):
    """encode_event then decode_server_event gives the same event, seq and request_id back."""
    text = encode_event(event, seq=seq, request_id=request_id)
    oracle.sendable(text)
    assert decode_server_event(text) == ServerMessage(event=event, seq=seq, request_id=request_id)


# --- robustness: arbitrary input ---------------------------------------------------------------------

# One value of every JSON kind, with the edges where conversions break: integers past float range and
# past int64, integral floats, -0.0, strings that are blank, numeric or a lone surrogate, containers.
EDGE_VALUES = [
    None,
    True,
    False,
    0,
    -1,
    2**63,
    2**64,
    10**400,
    -(10**400),
    0.5,
    -0.0,
    16000.0,
    1e308,
    "",
    " ",
    "16000",
    "server_vad",
    "AAAA",
    "\ud800",
    "x" * 300,
    [],
    [1],
    {},
    {"type": "none"},
]
PCM = b"\x00\x00\x0c\x00"
# A valid message of each JSON type with every field set.
FULL_MESSAGES = {
    SessionUpdate: SessionUpdate(
        instructions="Be brief.",
        conversation_id="conv_1",
        input_sample_rate=16000,
        turn_detection=TurnDetection("server_vad", 0.5, 500, 300, "auto", 700, True),
        output_audio=True,
        input_audio_format="pcm16",
        output_audio_format="opus",
        voice="en_US-joe-medium",
        language="en",
        request_id="r",
    ),
    MessageCreate: MessageCreate(text="hi", request_id="r"),
    Speak: Speak(text="hi", voice="en_US-joe-medium", request_id="r"),
    Narrate: Narrate(text="Once upon a time.", voice="en_US-joe-medium", request_id="r"),
    NarrationPause: NarrationPause(narration_id="narr_1", request_id="r"),
    NarrationResume: NarrationResume(narration_id="narr_1", request_id="r"),
    NarrationCancel: NarrationCancel(narration_id="narr_1", request_id="r"),
    ResponseCancel: ResponseCancel(response_id="resp_1", request_id="r"),
    ResponseTruncate: ResponseTruncate(response_id="resp_1", audio_end_ms=100, request_id="r"),
    Ping: Ping(request_id="r"),
    InputAudioAppend: InputAudioAppend(audio=PCM, request_id="r"),
    InputAudioCommit: InputAudioCommit(request_id="r"),
    InputAudioClear: InputAudioClear(request_id="r"),
    Transcribe: Transcribe(audio=PCM, sample_rate=16000, language="en", request_id="r"),
    SessionResume: SessionResume(session_id="sess_1", resume_token="tok", last_seq=3, request_id="r"),
    PresenceSet: PresenceSet(status="away", request_id="r"),
    TypingStart: TypingStart(request_id="r"),
    TypingStop: TypingStop(request_id="r"),
    MessageDelivered: MessageDelivered(message_id="msg_1", request_id="r"),
    ResponsePause: ResponsePause(response_id="resp_1", request_id="r"),
    ResponseResume: ResponseResume(response_id="resp_1", request_id="r"),
}
# Every field of every JSON client message (and of turn_detection), as (type, path) slots.
FIELD_SLOTS = [
    (cls, (name,))
    for cls in CLIENT_MESSAGE_TYPES.values()
    for name in ["type", *(field.name for field in attrs.fields(cls))]
] + [(SessionUpdate, ("turn_detection", name)) for name in ["type", *TURN_DETECTION_FIELDS, "stray"]]


@pytest.mark.parametrize(("cls", "path"), FIELD_SLOTS, ids=lambda v: getattr(v, "type", None) or ".".join(v))
def test_every_field_takes_every_kind_of_json_value(cls, path):
    """Each field of a valid message, set to each edge value in turn, gives a usable message or a
    documented error: the exhaustive version of "every wrong type" (random search rarely lands a
    400-digit integer in ``threshold``)."""
    for value in EDGE_VALUES:
        obj = FULL_MESSAGES[cls].to_json()
        (obj if len(path) == 1 else obj[path[0]])[path[-1]] = value
        for ascii_only in (True, False):
            oracle.check_text(as_json_text(obj, ascii_only))


@given(hostile_values, st.booleans())
@example({"type": "ping", "request_id": "\ud800"}, True)
@example({"type": "session.update", "turn_detection": {"type": "server_vad", "threshold": 10**400}}, True)
def test_arbitrary_json_is_decoded_or_refused_with_a_documented_code(value, ascii_only):
    """Any JSON value as a text frame gives a usable message or a documented error."""
    oracle.check_text(as_json_text(value, ascii_only))


@given(message_shaped(), st.booleans())
def test_message_shaped_json_is_decoded_or_refused_with_a_documented_code(obj, ascii_only):
    """Known types and field names with arbitrary values give a usable message or a documented error;
    whatever the codec accepts is valid to the schema."""
    message = oracle.check_text(as_json_text(obj, ascii_only))
    if message is not None:
        CLIENT_VALIDATOR.validate(json.loads(encode_client(message)))


@given(any_text)
def test_arbitrary_text_is_decoded_or_refused_with_a_documented_code(text):
    """Any text frame, JSON or not, gives a usable message or a documented error."""
    oracle.check_text(text)


@given(st.binary(max_size=256))
def test_arbitrary_bytes_are_decoded_or_refused_with_a_documented_code(data):
    """Any binary frame gives an audio frame of exactly its bytes or ``invalid_audio``."""
    if oracle.check_binary(data) is None:
        assert not data or len(data) % 2


@given(st.integers(min_value=-(2**70), max_value=2**70), st.integers(min_value=0, max_value=2**70))
def test_frame_size_check_refuses_exactly_the_oversized(size, limit):
    """check_frame_size lets through what fits and refuses the rest with ``frame_too_large``."""
    assert oracle.check_frame(size, max_frame_bytes=limit) == (size <= limit)


@given(event_shaped | hostile_values, st.booleans())
def test_arbitrary_server_frames_are_decoded_or_refused(value, ascii_only):
    """The client-side decoder of server events gives an event or a documented error."""
    oracle.check_server_event(as_json_text(value, ascii_only))


# --- the HTTP form parser ----------------------------------------------------------------------------

TOKEN = st.text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-", min_size=1, max_size=20)
form_parts = st.lists(
    st.tuples(
        TOKEN,  # field name
        st.none() | TOKEN.map(lambda name: f"{name}.wav"),  # filename
        st.none() | st.sampled_from(["audio/wav", "text/plain", "application/octet-stream"]),
        st.binary(max_size=200),
    ),
    max_size=6,
    unique_by=lambda part: part[0],
)
boundaries = st.text("abcdefghijklmnopqrstuvwxyz0123456789'()+_,-./:=?", min_size=8, max_size=70)


def multipart(boundary: str, parts) -> bytes:
    """Build a multipart/form-data body as an HTTP client would."""
    out = bytearray()
    for name, filename, content_type, data in parts:
        out += f"--{boundary}\r\n".encode()
        disposition = f'form-data; name="{name}"'
        if filename is not None:
            disposition += f'; filename="{filename}"'
        out += f"Content-Disposition: {disposition}\r\n".encode()
        if content_type is not None:
            out += f"Content-Type: {content_type}\r\n".encode()
        out += b"\r\n" + data + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return bytes(out)


@given(boundaries, form_parts)
def test_well_formed_form_round_trip(boundary, parts):
    """A well-formed multipart body parses into exactly the parts it was built from."""
    assume(not any(f"\r\n--{boundary}".encode() in b"\r\n" + data for *_, data in parts))
    body = multipart(boundary, parts)
    form = oracle.check_form(body, f'multipart/form-data; boundary="{boundary}"')
    assert form is not None
    assert {name: (part.filename, part.content_type, part.data) for name, part in form.items()} == {
        name: (filename, content_type, data) for name, filename, content_type, data in parts
    }


@given(
    st.binary(max_size=400),
    st.none() | st.text(st.characters(max_codepoint=255), max_size=80),
)
def test_arbitrary_upload_is_parsed_or_refused_with_a_documented_code(body, content_type):
    """Any body under any Content-Type header gives a form or a documented HTTP error."""
    oracle.check_form(body, content_type)


@given(boundaries, form_parts, st.data())
def test_damaged_form_is_parsed_or_refused_with_a_documented_code(boundary, parts, data):
    """A multipart body cut short, or with bytes flipped, inserted or removed, gives a form or a
    documented HTTP error."""
    body = bytearray(multipart(boundary, parts))
    for _ in range(data.draw(st.integers(1, 4))):
        where = data.draw(st.integers(0, len(body)))
        action = data.draw(st.sampled_from(["cut", "flip", "insert", "delete"]))
        if action == "cut":
            del body[where:]
        elif action == "flip" and where < len(body):
            body[where] ^= data.draw(st.integers(1, 255))
        elif action == "insert":
            body[where:where] = data.draw(st.sampled_from([b"\r\n", b"--", b'"', b";", b"\x00", b"\xff"]))
        elif where < len(body):
            del body[where]
    oracle.check_form(bytes(body), f"multipart/form-data; boundary={boundary}")


@pytest.mark.parametrize(
    "content_type", [None, "", "text/plain", "multipart/form-data", "multipart/mixed; boundary=x"]
)
def test_form_without_a_multipart_boundary_is_unsupported_media_type(content_type):
    """A body that is not multipart/form-data with a boundary is refused as ``unsupported_media_type``."""
    with pytest.raises(RemoteProtocolError) as info:
        parse_form(b"--x\r\n", content_type)
    assert info.value.code == "unsupported_media_type"


@pytest.mark.parametrize("length", [257, 300, 10_000])
def test_boundary_over_the_parsers_limit_is_unsupported_media_type(length):
    """Found by fuzzing: python-multipart refuses boundaries over 256 bytes with an error that escaped."""
    with pytest.raises(RemoteProtocolError) as info:
        parse_form(b"--x\r\n", f"multipart/form-data; boundary={'b' * length}")
    assert info.value.code == "unsupported_media_type"


def test_longest_boundary_the_parser_takes_still_works():
    """A 256-byte boundary (over RFC 2046's 70, but accepted) parses as usual."""
    boundary = "b" * 256
    form = parse_form(
        multipart(boundary, [("file", "a.wav", None, b"RIFF")]), f"multipart/form-data; boundary={boundary}"
    )
    assert form["file"].data == b"RIFF"
