"""Pure tests of realtime client event parsing, both dialects: frames in, frozen events or errors out."""

from __future__ import annotations

import base64
import json

import pytest

from tests.realtime_sdk import validate_client
from trio_voice.realtime import (
    AudioFormat,
    ConversationItemCreate,
    ConversationItemDelete,
    ConversationItemRetrieve,
    ConversationItemTruncate,
    InputAudio,
    InputAudioBufferAppend,
    InputAudioBufferClear,
    InputAudioBufferCommit,
    InputText,
    RealtimeProtocolError,
    ResponseCancel,
    ResponseCreate,
    SessionUpdate,
    TurnDetection,
    codes,
    parse_client_event,
)
from trio_voice.realtime.session_update import MANUAL_TURNS, TRANSCRIPTION_OFF, Transcription

LIMIT = 4000
PCM = b"\x00\x00\x10\x00\xf0\xff\x20\x00"
PCM_B64 = base64.b64encode(PCM).decode()


def parse(obj: object, dialect: str = codes.GA):
    return parse_client_event(json.dumps(obj), dialect=dialect, max_text_chars=LIMIT)


def refused(obj: object, dialect: str = codes.GA, *, limit: int = LIMIT) -> RealtimeProtocolError:
    text = obj if isinstance(obj, (str, bytes)) else json.dumps(obj)
    with pytest.raises(RealtimeProtocolError) as info:
        parse_client_event(text, dialect=dialect, max_text_chars=limit)
    return info.value


GA_SESSION_UPDATE = {
    "type": "session.update",
    "event_id": "evt_1",
    "session": {
        "type": "realtime",
        "model": "gpt-realtime",
        "instructions": "Be brief.",
        "output_modalities": ["audio"],
        "audio": {
            "input": {
                "format": {"type": "audio/pcm", "rate": 24000},
                "transcription": {"model": "whisper-1", "language": "en"},
                "turn_detection": {
                    "type": "server_vad",
                    "threshold": 0.6,
                    "prefix_padding_ms": 200,
                    "silence_duration_ms": 700,
                    "create_response": True,
                    "interrupt_response": False,
                },
                "noise_reduction": None,
            },
            "output": {"format": {"type": "audio/pcmu"}, "voice": "marin", "speed": 1.0},
        },
        "tools": [],
        "tool_choice": "auto",
        "max_output_tokens": "inf",
        "tracing": None,
    },
}


def test_ga_session_update_reads_every_nested_setting():
    """The GA shape: audio.input.format / turn_detection / transcription, audio.output.format / voice."""
    update = parse(GA_SESSION_UPDATE)
    assert update == SessionUpdate(
        event_id="evt_1",
        model="gpt-realtime",
        instructions="Be brief.",
        output_modalities=("audio",),
        input_format=AudioFormat("audio/pcm"),
        output_format=AudioFormat("audio/pcmu"),
        voice="marin",
        turn_detection=TurnDetection("server_vad", 0.6, 200, 700, True, False),
        transcription=Transcription(model="whisper-1", language="en"),
    )


def test_ga_session_update_is_what_the_sdk_sends():
    """The example above is a valid SDK client event (so the parser is tested on the real shape)."""
    validate_client(GA_SESSION_UPDATE)


def test_turn_detection_null_means_manual_turns_and_transcription_null_turns_it_off():
    """null is not "unchanged": it switches VAD (and transcript events) off."""
    update = parse(
        {
            "type": "session.update",
            "session": {
                "type": "realtime",
                "audio": {"input": {"turn_detection": None, "transcription": None}},
            },
        }
    )
    assert update.turn_detection == MANUAL_TURNS
    assert update.transcription == TRANSCRIPTION_OFF


def test_absent_fields_leave_the_session_unchanged():
    """A minimal update changes nothing but what it names."""
    update = parse({"type": "session.update", "session": {"type": "realtime", "instructions": "Hi."}})
    assert update == SessionUpdate(event_id=None, instructions="Hi.")


def test_session_update_to_native_maps_onto_the_core_request():
    """The core gets instructions, VAD settings and audio on/off in its own names."""
    native = parse(GA_SESSION_UPDATE).to_native()
    assert native.instructions == "Be brief."
    assert native.output_audio is True
    assert native.request_id == "evt_1"
    assert (
        native.turn_detection.type,
        native.turn_detection.silence_ms,
        native.turn_detection.prefix_ms,
    ) == (
        "server_vad",
        700,
        200,
    )
    assert (
        parse({"type": "session.update", "session": {"type": "realtime", "output_modalities": ["text"]}})
        .to_native()
        .output_audio
        is False
    )


def test_beta_session_update_reads_the_top_level_shape():
    """The beta dialect: modalities, input_audio_format, turn_detection … at the top of the session."""
    obj = {
        "type": "session.update",
        "session": {
            "modalities": ["text", "audio"],
            "instructions": "Be brief.",
            "voice": "alloy",
            "input_audio_format": "g711_alaw",
            "output_audio_format": "pcm16",
            "input_audio_transcription": {"model": "whisper-1"},
            "turn_detection": {"type": "server_vad", "silence_duration_ms": 400},
            "temperature": 0.8,
        },
    }
    validate_client(obj, codes.BETA)
    update = parse(obj, codes.BETA)
    assert update.output_modalities == ("audio",)
    assert update.input_format == AudioFormat("audio/pcma")
    assert update.output_format == AudioFormat("audio/pcm")
    assert update.turn_detection == TurnDetection(silence_duration_ms=400)
    assert update.transcription == Transcription(model="whisper-1")


def test_the_ga_shape_is_refused_in_the_beta_dialect_and_the_other_way_round():
    """Each dialect has its own session shape; the other's fields are unknown parameters."""
    assert refused(GA_SESSION_UPDATE, codes.BETA).param == "session.type"
    error = refused({"type": "session.update", "session": {"type": "realtime", "modalities": ["text"]}})
    assert (error.code, error.param) == (codes.UNKNOWN_PARAMETER, "session.modalities")


@pytest.mark.parametrize(
    ("session", "code", "param"),
    [
        (
            {"type": "realtime", "tools": [{"type": "function", "name": "f"}]},
            codes.UNSUPPORTED_FEATURE,
            "session.tools",
        ),
        ({"type": "transcription"}, codes.UNSUPPORTED_FEATURE, "session.type"),
        ({}, codes.MISSING_REQUIRED_PARAMETER, "session.type"),
        ({"type": "realtime", "instructions": 5}, codes.INVALID_TYPE, "session.instructions"),
        (
            {"type": "realtime", "output_modalities": ["video"]},
            codes.INVALID_VALUE,
            "session.output_modalities",
        ),
        (
            {"type": "realtime", "audio": {"input": {"format": {"type": "audio/pcm", "rate": 16000}}}},
            codes.INVALID_VALUE,
            "session.audio.input.format.rate",
        ),
        (
            {"type": "realtime", "audio": {"input": {"format": {"type": "audio/opus"}}}},
            codes.INVALID_VALUE,
            "session.audio.input.format.type",
        ),
        (
            {"type": "realtime", "audio": {"input": {"turn_detection": {"type": "semantic_vad"}}}},
            codes.UNSUPPORTED_FEATURE,
            "session.audio.input.turn_detection.type",
        ),
        (
            {
                "type": "realtime",
                "audio": {"input": {"turn_detection": {"type": "server_vad", "threshold": 1.5}}},
            },
            codes.DECIMAL_ABOVE_MAX_VALUE,
            "session.audio.input.turn_detection.threshold",
        ),
        (
            {
                "type": "realtime",
                "audio": {"input": {"turn_detection": {"type": "server_vad", "silence_duration_ms": -1}}},
            },
            codes.INTEGER_BELOW_MIN_VALUE,
            "session.audio.input.turn_detection.silence_duration_ms",
        ),
        (
            {
                "type": "realtime",
                "audio": {"input": {"turn_detection": {"type": "server_vad", "prefix_padding_ms": 2.5}}},
            },
            codes.INVALID_TYPE,
            "session.audio.input.turn_detection.prefix_padding_ms",
        ),
        (
            {"type": "realtime", "audio": {"output": {"speed": 1.5}}},
            codes.UNSUPPORTED_FEATURE,
            "session.audio.output.speed",
        ),
        ({"type": "realtime", "colour": "blue"}, codes.UNKNOWN_PARAMETER, "session.colour"),
        (
            {"type": "realtime", "instructions": "x" * (LIMIT + 1)},
            codes.STRING_ABOVE_MAX_LENGTH,
            "session.instructions",
        ),
    ],
)
def test_bad_session_updates_name_the_field_and_echo_the_event_id(session, code, param):
    """Each refusal carries the realtime code, the dotted param and the offending event_id."""
    error = refused({"type": "session.update", "event_id": "evt_bad", "session": session})
    assert (error.code, error.param, error.event_id) == (code, param, "evt_bad")
    assert error.error_type == codes.INVALID_REQUEST_ERROR
    assert error.close_code is None  # the session survives


def test_input_audio_buffer_events():
    """append carries decoded bytes; commit and clear carry nothing but their id."""
    assert parse({"type": "input_audio_buffer.append", "audio": PCM_B64, "event_id": "a"}) == (
        InputAudioBufferAppend(audio=PCM, event_id="a")
    )
    assert parse({"type": "input_audio_buffer.commit"}) == InputAudioBufferCommit()
    assert parse({"type": "input_audio_buffer.clear"}) == InputAudioBufferClear()


@pytest.mark.parametrize("audio", ["not base64!", "", 7])
def test_append_refuses_what_is_not_audio(audio):
    """Bad base64, no audio, or not a string: the param is 'audio'."""
    error = refused({"type": "input_audio_buffer.append", "audio": audio, "event_id": "x"})
    assert error.param == "audio"
    assert error.code in (codes.INVALID_VALUE, codes.INVALID_TYPE, codes.MISSING_REQUIRED_PARAMETER)


def test_item_create_keeps_the_client_id_and_every_part():
    """A user message with text and audio parts; the client's item id is kept."""
    obj = {
        "type": "conversation.item.create",
        "previous_item_id": "item_0",
        "item": {
            "id": "msg_client_1",
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": "Hello"}, {"type": "input_audio", "audio": PCM_B64}],
        },
    }
    validate_client(obj)
    event = parse(obj)
    assert event == ConversationItemCreate(
        content=(InputText("Hello"), InputAudio(audio=PCM)), item_id="msg_client_1", previous_item_id="item_0"
    )
    assert event.text == "Hello"


@pytest.mark.parametrize(
    ("item", "code", "param"),
    [
        ({"type": "message", "role": "assistant", "content": []}, codes.UNSUPPORTED_FEATURE, "item.role"),
        ({"type": "function_call", "name": "f", "arguments": "{}"}, codes.UNSUPPORTED_FEATURE, "item.type"),
        ({"type": "message", "role": "user", "content": []}, codes.INVALID_VALUE, "item.content"),
        (
            {"type": "message", "role": "user", "content": [{"type": "input_image", "image_url": "x"}]},
            codes.UNSUPPORTED_FEATURE,
            "item.content[0].type",
        ),
        (
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "  "}]},
            codes.INVALID_VALUE,
            "item.content[0].text",
        ),
        ({"type": "message", "role": "user", "content": ["hi"]}, codes.INVALID_TYPE, "item.content[0]"),
        ({"type": "message", "role": "user"}, codes.MISSING_REQUIRED_PARAMETER, "item.content"),
    ],
)
def test_item_create_refusals(item, code, param):
    """Only user messages of text and audio may be created; the error names the part."""
    error = refused({"type": "conversation.item.create", "item": item, "event_id": "e9"})
    assert (error.code, error.param, error.event_id) == (code, param, "e9")


def test_item_delete_retrieve_truncate():
    """The three item events carry an item id (and truncate its position)."""
    assert parse({"type": "conversation.item.delete", "item_id": "i"}) == ConversationItemDelete("i")
    assert parse({"type": "conversation.item.retrieve", "item_id": "i"}) == ConversationItemRetrieve("i")
    assert parse(
        {"type": "conversation.item.truncate", "item_id": "i", "content_index": 0, "audio_end_ms": 1500}
    ) == ConversationItemTruncate("i", 0, 1500)
    error = refused(
        {"type": "conversation.item.truncate", "item_id": "i", "content_index": 0, "audio_end_ms": -5}
    )
    assert (error.code, error.param) == (codes.INTEGER_BELOW_MIN_VALUE, "audio_end_ms")


def test_response_create_with_per_response_settings():
    """instructions, output_modalities, metadata and the audio output settings override the session's."""
    obj = {
        "type": "response.create",
        "response": {
            "instructions": "Answer in French.",
            "output_modalities": ["text"],
            "metadata": {"topic": "weather"},
            "conversation": "auto",
            "audio": {"output": {"voice": "cedar", "format": {"type": "audio/pcma"}}},
        },
    }
    validate_client(obj)
    assert parse(obj) == ResponseCreate(
        instructions="Answer in French.",
        output_modalities=("text",),
        metadata={"topic": "weather"},
        voice="cedar",
        output_format=AudioFormat("audio/pcma"),
    )
    assert parse({"type": "response.create"}) == ResponseCreate()


def test_beta_response_create():
    """The beta dialect spells them modalities, voice and output_audio_format."""
    obj = {
        "type": "response.create",
        "response": {"modalities": ["text"], "output_audio_format": "g711_ulaw"},
    }
    validate_client(obj, codes.BETA)
    event = parse(obj, codes.BETA)
    assert (event.output_modalities, event.output_format) == (("text",), AudioFormat("audio/pcmu"))


@pytest.mark.parametrize(
    ("response", "code", "param"),
    [
        ({"conversation": "none"}, codes.UNSUPPORTED_FEATURE, "response.conversation"),
        ({"input": [{"type": "message"}]}, codes.UNSUPPORTED_FEATURE, "response.input"),
        ({"metadata": {"k": 1}}, codes.INVALID_TYPE, "response.metadata.k"),
        ({"metadata": {str(i): "v" for i in range(17)}}, codes.INVALID_VALUE, "response.metadata"),
        ({"max_output_tokens": 50}, codes.UNSUPPORTED_FEATURE, "response.max_output_tokens"),
    ],
)
def test_response_create_refusals(response, code, param):
    """Out-of-band responses, inputs and token limits are not implemented; metadata is strings only."""
    error = refused({"type": "response.create", "response": response})
    assert (error.code, error.param) == (code, param)


def test_response_cancel():
    """response.cancel may name the response."""
    assert parse({"type": "response.cancel", "response_id": "resp_1", "event_id": "c"}) == ResponseCancel(
        event_id="c", response_id="resp_1"
    )


@pytest.mark.parametrize(
    ("frame", "code", "param"),
    [
        ("{not json", codes.INVALID_JSON, None),
        ("[1, 2]", codes.INVALID_EVENT, None),
        (b"\x00\x01", codes.INVALID_EVENT, None),
        ('{"event_id": "x"}', codes.MISSING_REQUIRED_PARAMETER, "type"),
        ('{"type": "session.create"}', codes.INVALID_VALUE, "type"),
        ('{"type": "output_audio_buffer.clear"}', codes.UNSUPPORTED_FEATURE, "type"),
        ('{"type": "input_audio_buffer.commit", "extra": 1}', codes.UNKNOWN_PARAMETER, "extra"),
        ('{"type": "input_audio_buffer.commit", "event_id": 5}', codes.INVALID_TYPE, "event_id"),
        ('{"type": "response.cancel", "x": NaN}', codes.INVALID_JSON, None),
    ],
)
def test_malformed_frames(frame, code, param):
    """Frames that are not events at all get a code and, where one field is to blame, its param."""
    error = refused(frame)
    assert (error.code, error.param) == (code, param)


def test_the_event_id_is_echoed_whenever_it_could_be_read():
    """Even an unknown type echoes the client's event_id."""
    assert refused({"type": "nope", "event_id": "evt_42"}).event_id == "evt_42"
    assert refused("{nope").event_id is None


def test_every_error_code_raised_is_a_documented_one():
    """The codes the parser uses are all in codes.ERROR_CODES."""
    frames = [
        "{x",
        "[]",
        '{"type": "x"}',
        '{"type": "input_audio_buffer.commit", "x": 1}',
        json.dumps({"type": "session.update", "session": {"type": "realtime", "tools": [1]}}),
    ]
    for frame in frames:
        assert refused(frame).code in codes.ERROR_CODES
