"""Sans-I/O tests of the realtime connection: scripted neutral events through it, strict SDK checks on all out.

Every server event in these tests passes through ``RealtimePair``, which validates it strictly against the
``openai`` SDK's types and checks event-id uniqueness and the response lifecycle as a client would.
"""

from __future__ import annotations

import base64
import copy
import json
import subprocess
import sys

import pytest

from tests.realtime_pair import (
    METRICS,
    NATIVE_CONFIG,
    RealtimePair,
    audio_reply,
    b64,
    pcm24k,
    piper,
    scripted_session,
)
from tests.realtime_sdk import NotTheSDKShape, validate_server
from trio_voice import events
from trio_voice.errors import LocalProtocolError
from trio_voice.realtime import RealtimeConnection, codes, encode

MANUAL = {
    "type": "session.update",
    "session": {"type": "realtime", "audio": {"input": {"turn_detection": None}}},
}
TRANSCRIBE = {
    "type": "session.update",
    "session": {"type": "realtime", "audio": {"input": {"transcription": {"model": "whisper-1"}}}},
}


def started(dialect: str = codes.GA, *updates: dict) -> RealtimePair:
    pair = RealtimePair(dialect)
    pair.core(events.SessionCreated("sess_1", "conv_1", NATIVE_CONFIG))
    for update in updates:
        pair.client(update)
    return pair


def text_item(text: str = "Hi", **item) -> dict:
    return {
        "type": "conversation.item.create",
        "item": {
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": text}],
            **item,
        },
    }


def done(response_id: str, status: str = "completed", reason: str | None = None) -> events.ReplyDone:
    return events.ReplyDone(response_id, status, reason, "", METRICS)


# --- the strict validator is itself honest ---------------------------------------------------------


def test_the_sdk_validator_refuses_unknown_fields_and_wrong_types():
    """A field the SDK does not define, at any depth, or a float where it wants an int, fails."""
    frame = started().frames[0]
    validate_server(frame)
    extra = copy.deepcopy(frame)
    extra["session"]["audio"]["input"]["colour"] = "blue"
    with pytest.raises(NotTheSDKShape, match="colour"):
        validate_server(extra)
    stopped = {
        "type": "input_audio_buffer.speech_stopped",
        "event_id": "e",
        "item_id": "i",
        "audio_end_ms": 2.5,
    }
    with pytest.raises(NotTheSDKShape):
        validate_server(stopped)
    with pytest.raises(NotTheSDKShape, match="knows no event"):
        validate_server({"type": "response.phrase", "event_id": "e"})


# --- session -----------------------------------------------------------------------------------------


def test_session_created_comes_first_with_the_full_effective_config():
    """session.created carries the core's instructions and VAD settings in the API's names."""
    pair = started()
    (created,) = pair.frames
    session = created["session"]
    assert created["type"] == "session.created"
    assert session["instructions"] == NATIVE_CONFIG["instructions"]
    assert session["audio"]["input"]["turn_detection"] == {
        "type": "server_vad",
        "threshold": 0.5,
        "prefix_padding_ms": 300,
        "silence_duration_ms": 500,
        "create_response": True,
        "interrupt_response": True,
        "idle_timeout_ms": None,
    }
    assert session["audio"]["output"]["format"] == {"type": "audio/pcm", "rate": 24000}
    assert session["audio"]["input"]["transcription"] is None  # explicit null: off


def test_session_updated_merges_the_clients_settings_with_the_cores():
    """Formats, voice and transcription come from the update; VAD values from the core's answer."""
    pair = started()
    update = pair.client(
        {
            "type": "session.update",
            "session": {
                "type": "realtime",
                "audio": {
                    "input": {"format": {"type": "audio/pcmu"}, "transcription": {"model": "whisper-1"}},
                    "output": {"voice": "cedar"},
                },
            },
        }
    )
    assert pair.since(1) == []  # the core answers, not the codec
    core_config = {**NATIVE_CONFIG, "turn_detection": {**NATIVE_CONFIG["turn_detection"], "silence_ms": 800}}
    (updated,) = pair.core(events.SessionUpdated("conv_1", core_config), update.event_id)
    audio = updated["session"]["audio"]
    assert audio["input"]["format"] == {"type": "audio/pcmu"}
    assert audio["input"]["transcription"] == {"model": "whisper-1", "language": None, "prompt": None}
    assert audio["input"]["turn_detection"]["silence_duration_ms"] == 800
    assert audio["output"]["voice"] == "cedar"


def test_text_only_session_from_the_core_is_reported_as_text_modality():
    """output_audio false in the core's config is output_modalities ["text"]."""
    pair = RealtimePair()
    (created,) = pair.core(events.SessionCreated("s", "c", {**NATIVE_CONFIG, "output_audio": False}))
    assert created["session"]["output_modalities"] == ["text"]


# --- items -------------------------------------------------------------------------------------------


def test_item_create_is_added_with_the_client_id_and_previous_item_id():
    """conversation.item.added then .done, the client's id kept, previous_item_id null then chained."""
    pair = started()
    pair.client(text_item(id="msg_a"))
    first = pair.since(1)
    assert pair.types(first) == ["conversation.item.added", "conversation.item.done"]
    assert first[0]["previous_item_id"] is None
    assert first[0]["item"] == {
        "id": "msg_a",
        "type": "message",
        "object": "realtime.item",
        "status": "completed",
        "role": "user",
        "content": [{"type": "input_text", "text": "Hi"}],
    }
    mark = pair.mark()
    event = pair.client(text_item("Again"))
    assert pair.since(mark)[0]["previous_item_id"] == "msg_a"
    assert event.item_id == pair.since(mark)[0]["item"]["id"]


def test_item_ids_are_unique_and_insertion_is_refused():
    """A duplicate id, an unknown previous item and a mid-conversation insert each get their code."""
    pair = started()
    pair.client(text_item(id="msg_a"))
    pair.client(text_item(id="msg_b"))
    assert pair.refused(text_item(id="msg_a"))["error"]["code"] == codes.DUPLICATE_ITEM_ID
    assert pair.refused({**text_item(), "previous_item_id": "nope"})["error"]["code"] == codes.ITEM_NOT_FOUND
    error = pair.refused({**text_item(), "previous_item_id": "msg_a"})["error"]
    assert (error["code"], error["param"]) == (codes.UNSUPPORTED_FEATURE, "previous_item_id")
    pair.client({**text_item(), "previous_item_id": "msg_b"})  # naming the last item is appending


def test_input_audio_item_is_converted_and_transcribed():
    """An input_audio item reaches the core at 16 kHz; its transcript arrives on its request id."""
    pair = started(codes.GA, TRANSCRIBE)
    obj = {
        "type": "conversation.item.create",
        "event_id": "evt_clip",
        "item": {
            "type": "message",
            "role": "user",
            "content": [{"type": "input_audio", "audio": b64(pcm24k(0.5))}],
        },
    }
    event = pair.client(obj)
    assert len(event.content[0].pcm16) == 8000 * 2  # 0.5 s at 16 kHz
    added = pair.frames[-2]
    assert added["item"]["content"] == [{"type": "input_audio", "audio": None, "transcript": None}]
    frames = pair.core(events.TranscriptFinal("Good morning."), event.event_id)
    assert pair.types(frames) == [
        "conversation.item.input_audio_transcription.delta",
        "conversation.item.input_audio_transcription.completed",
    ]
    assert frames[1]["item_id"] == event.item_id
    assert frames[1]["usage"] == {"type": "duration", "seconds": 0.5}


def test_delete_and_retrieve():
    """A deleted item is gone for retrieve and delete; retrieve shows an item as it stands."""
    pair = started()
    event = pair.client(text_item("Keep me"))
    mark = pair.mark()
    pair.client({"type": "conversation.item.retrieve", "item_id": event.item_id})
    (retrieved,) = pair.since(mark)
    assert retrieved["item"]["content"][0]["text"] == "Keep me"
    pair.client({"type": "conversation.item.delete", "item_id": event.item_id, "event_id": "del"})
    assert pair.frames[-1] == {
        "type": "conversation.item.deleted",
        "event_id": pair.frames[-1]["event_id"],
        "item_id": event.item_id,
    }
    error = pair.refused({"type": "conversation.item.retrieve", "item_id": event.item_id, "event_id": "r2"})[
        "error"
    ]
    assert (error["code"], error["param"], error["event_id"]) == (codes.ITEM_NOT_FOUND, "item_id", "r2")


# --- input audio -------------------------------------------------------------------------------------


def test_server_vad_turn_commits_the_item_announced_at_speech_start():
    """speech_started names the item that speech_stopped commits, added with its transcript to come."""
    pair = started(codes.GA, TRANSCRIBE)
    (start,) = pair.core(events.SpeechStarted(1200))
    stop = pair.core(events.SpeechStopped(2600))
    assert pair.types(stop) == [
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.committed",
        "conversation.item.added",
        "conversation.item.done",
    ]
    assert start["audio_start_ms"] == 1200 and stop[0]["audio_end_ms"] == 2600
    assert start["item_id"] == stop[0]["item_id"] == stop[1]["item_id"] == stop[2]["item"]["id"]
    assert pair.core(events.TranscriptPartial("What")) == []  # partials are not deltas of an unadded item
    completed = pair.core(events.TranscriptFinal("What time is it?"))[-1]
    assert (completed["item_id"], completed["transcript"]) == (start["item_id"], "What time is it?")
    assert completed["usage"] == {"type": "duration", "seconds": 1.4}


def test_a_failed_transcription_is_reported_on_its_item_and_stops_waiting():
    """stt_failed becomes input_audio_transcription.failed for that item; the next transcript is the next's."""
    pair = started(codes.GA, TRANSCRIBE)
    for start in (0, 2000):
        pair.core(events.SpeechStarted(start))
        pair.core(events.SpeechStopped(start + 900))
    first, second = (f["item_id"] for f in pair.frames if f["type"] == "input_audio_buffer.committed")
    (failed,) = pair.core(events.ErrorEvent("stt_failed", "whisper.cpp failed"))
    assert failed["type"] == "conversation.item.input_audio_transcription.failed"
    assert (failed["item_id"], failed["error"]["code"], failed["error"]["type"]) == (
        first,
        "stt_failed",
        "server_error",
    )
    assert pair.core(events.TranscriptFinal("Second"))[-1]["item_id"] == second
    (error,) = pair.core(
        events.ErrorEvent("stt_failed", "whisper.cpp failed")
    )  # no item waits: a plain error
    assert error["type"] == "error"


def test_transcripts_are_not_sent_while_transcription_is_off():
    """With transcription null (the default) the core's transcript stays internal."""
    pair = started()
    pair.core(events.SpeechStarted(0))
    pair.core(events.SpeechStopped(900))
    assert pair.core(events.TranscriptFinal("Hello")) == []


def test_append_converts_24k_to_16k_and_counts_milliseconds():
    """Appended audio reaches the core at the recognizer's rate."""
    pair = started()
    event = pair.client({"type": "input_audio_buffer.append", "audio": b64(pcm24k(0.2))})
    assert 3100 < len(event.pcm16) // 2 <= 3200  # 0.2 s at 16 kHz, less the filter's lag
    assert pair.conn.input.buffered_ms == pytest.approx(200.0)
    assert pair.since(1) == []  # appends are not acknowledged


def test_manual_commit_needs_100_ms_then_commits_a_user_item():
    """turn_detection null: commit refuses < 100 ms (keeping the audio), then commits the buffer."""
    pair = started(codes.GA, MANUAL, TRANSCRIBE)
    pair.client({"type": "input_audio_buffer.append", "audio": b64(pcm24k(0.05))})
    error = pair.refused({"type": "input_audio_buffer.commit", "event_id": "c1"})["error"]
    assert (error["code"], error["event_id"]) == (codes.INPUT_AUDIO_BUFFER_COMMIT_EMPTY, "c1")
    pair.client({"type": "input_audio_buffer.append", "audio": b64(pcm24k(0.1))})
    mark = pair.mark()
    commit = pair.client({"type": "input_audio_buffer.commit", "event_id": "c2"})
    frames = pair.since(mark)
    assert pair.types(frames) == [
        "input_audio_buffer.committed",
        "conversation.item.added",
        "conversation.item.done",
    ]
    assert frames[0]["item_id"] == commit.item_id
    assert pair.conn.input.buffered_ms == 0.0
    completed = pair.core(events.TranscriptFinal("Hello"), commit.event_id)[-1]
    assert completed["item_id"] == commit.item_id
    assert completed["usage"]["seconds"] == pytest.approx(0.15)


def test_commit_with_server_vad_needs_speech_in_progress():
    """Under server VAD a commit ends the speech in progress; with none it is refused."""
    pair = started()
    assert (
        pair.refused({"type": "input_audio_buffer.commit"})["error"]["code"]
        == codes.INPUT_AUDIO_BUFFER_COMMIT_EMPTY
    )
    pair.core(events.SpeechStarted(100))
    mark = pair.mark()
    pair.client({"type": "input_audio_buffer.commit"})
    assert pair.since(mark) == []  # the core's speech_stopped will commit it
    assert pair.types(pair.core(events.SpeechStopped(800)))[1] == "input_audio_buffer.committed"


def test_clear_is_acknowledged_and_forgets_the_speech():
    """input_audio_buffer.cleared; a commit right after has nothing to commit."""
    pair = started()
    pair.core(events.SpeechStarted(100))
    pair.client({"type": "input_audio_buffer.clear"})
    assert pair.types()[-1] == "input_audio_buffer.cleared"
    assert (
        pair.refused({"type": "input_audio_buffer.commit"})["error"]["code"]
        == codes.INPUT_AUDIO_BUFFER_COMMIT_EMPTY
    )


def test_odd_pcm_bytes_are_refused_without_counting_them():
    """Half a PCM16 sample is an invalid_value on 'audio'."""
    pair = started()
    error = pair.refused({"type": "input_audio_buffer.append", "audio": b64(b"\x00\x00\x01")})["error"]
    assert (error["code"], error["param"]) == (codes.INVALID_VALUE, "audio")
    assert pair.conn.input.buffered_ms == 0.0


def test_g711_input_is_decoded_and_upsampled():
    """audio/pcmu input: one byte a sample at 8 kHz in, 16 kHz PCM16 out."""
    update = {
        "type": "session.update",
        "session": {"type": "realtime", "audio": {"input": {"format": {"type": "audio/pcmu"}}}},
    }
    pair = started(codes.GA, update)
    event = pair.client({"type": "input_audio_buffer.append", "audio": b64(b"\xff" * 800)})
    assert pair.conn.input.buffered_ms == 100.0
    assert 1500 < len(event.pcm16) // 2 <= 1600


# --- responses ---------------------------------------------------------------------------------------


def test_an_audio_response_in_the_documented_order():
    """created, item added, part added, transcript and audio deltas, the *.done events, response.done."""
    pair = started()
    mark = pair.mark()
    audio_reply(pair, "resp_1", [("It is noon.", 0.5), ("Anything else?", 0.45)])
    pair.core(events.ReplyDone("resp_1", "completed", None, "It is noon. Anything else?", METRICS))
    frames = pair.since(mark)
    kinds = pair.types(frames)
    assert kinds[:4] == [
        "response.created",
        "response.output_item.added",
        "conversation.item.added",
        "response.content_part.added",
    ]
    assert kinds[-6:] == [
        "response.output_audio.done",
        "response.output_audio_transcript.done",
        "response.content_part.done",
        "response.output_item.done",
        "conversation.item.done",
        "response.done",
    ]
    assert "response.output_text.delta" not in kinds  # the LLM's text runs ahead of the audio; not sent
    transcript = "".join(f["delta"] for f in frames if f["type"] == "response.output_audio_transcript.delta")
    assert transcript == "It is noon. Anything else?"
    audio = [base64.b64decode(f["delta"]) for f in frames if f["type"] == "response.output_audio.delta"]
    assert [round(len(a) / 48) for a in audio] == [200, 200, 99, 200, 200, 51]  # phrase ends flush
    assert sum(len(a) for a in audio) / 48 == pytest.approx(950, abs=1)  # 24 kHz PCM16: 48 bytes a ms
    response = frames[-1]["response"]
    assert (response["status"], response["status_details"]) == ("completed", None)
    assert response["output"][0]["content"] == [
        {"type": "output_audio", "audio": None, "transcript": transcript}
    ]
    assert response["usage"]["output_tokens"] == METRICS["tokens"]
    assert response["output"][0]["status"] == "completed"


def test_a_text_only_response_sends_text_deltas_and_ignores_audio():
    """response.create with output_modalities ["text"]: output_text.* only; metadata echoed."""
    pair = started()
    ask = pair.client(
        {"type": "response.create", "response": {"output_modalities": ["text"], "metadata": {"k": "v"}}}
    )
    mark = pair.mark()
    pair.core(events.ReplyCreated("resp_t"), ask.event_id)
    pair.core(events.TextDelta("resp_t", "Two"), ask.event_id)
    pair.core(events.PhraseReady("resp_t", 0, "Two"), ask.event_id)
    pair.core(events.AudioReady("resp_t", 0, piper(0.3), 22050), ask.event_id)
    pair.core(events.TextDelta("resp_t", " words."), ask.event_id)
    pair.core(done("resp_t"), ask.event_id)
    frames = pair.since(mark)
    assert pair.types(frames) == [
        "response.created",
        "response.output_item.added",
        "conversation.item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "conversation.item.done",
        "response.done",
    ]
    assert frames[0]["response"]["metadata"] == {"k": "v"}
    assert frames[0]["response"]["output_modalities"] == ["text"]
    assert frames[6]["text"] == "Two words."


def test_response_create_while_one_is_active_is_refused():
    """conversation_already_has_active_response, both before and after the response is created."""
    pair = started()
    ask = pair.client({"type": "response.create", "event_id": "r1"})
    assert (
        pair.refused({"type": "response.create"})["error"]["code"]
        == codes.CONVERSATION_ALREADY_HAS_ACTIVE_RESPONSE
    )
    assert pair.conn.active_response_id is None  # asked for, not created yet
    pair.core(events.ReplyCreated("resp_1"), ask.event_id)
    assert pair.conn.active_response_id == "resp_1"
    error = pair.refused({"type": "response.create", "event_id": "r2"})["error"]
    assert (error["code"], error["event_id"]) == (codes.CONVERSATION_ALREADY_HAS_ACTIVE_RESPONSE, "r2")
    assert "resp_1" in error["message"]
    pair.core(done("resp_1"), ask.event_id)
    pair.client({"type": "response.create"})  # free again


def test_cancel_is_refused_when_nothing_runs_and_the_connection_goes_on():
    """A cancel answered, a second cancel refused with response_cancel_not_active, then a new response."""
    pair = started()
    error = pair.refused({"type": "response.cancel", "event_id": "x1"})["error"]
    assert (error["code"], error["event_id"], error["type"]) == (
        codes.RESPONSE_CANCEL_NOT_ACTIVE,
        "x1",
        codes.INVALID_REQUEST_ERROR,
    )
    audio_reply(pair, "resp_1", [("Counting to ten.", 0.4)])
    cancel = pair.client({"type": "response.cancel"})
    assert cancel.response_id is None
    (*_, closed) = pair.core(done("resp_1", "cancelled", "client_cancelled"))
    assert closed["response"]["status_details"] == {
        "type": "cancelled",
        "reason": "client_cancelled",
        "error": None,
    }
    assert pair.refused({"type": "response.cancel"})["error"]["code"] == codes.RESPONSE_CANCEL_NOT_ACTIVE
    assert pair.refused({"type": "response.cancel", "response_id": "resp_0"})["error"]["code"] == (
        codes.RESPONSE_CANCEL_NOT_ACTIVE
    )
    audio_reply(pair, "resp_2", [("Still here.", 0.2)])


def test_barge_in_cancels_with_turn_detected_and_drops_the_audio_tail():
    """Speech over a response: response.done cancelled/turn_detected; its held-back audio is never sent."""
    pair = started()
    audio_reply(pair, "resp_1", [("A long answer", 0.25)])  # 250 ms: one 200 ms delta, 50 ms held back
    sent = [f for f in pair.frames if f["type"] == "response.output_audio.delta"]
    pair.core(events.SpeechStarted(5000))
    mark = pair.mark()
    pair.core(events.ReplyDone("resp_1", "cancelled", "turn_detected", "A long answer", METRICS))
    frames = pair.since(mark)
    assert "response.output_audio.delta" not in pair.types(frames)
    assert pair.conn.conversation.get(frames[-1]["response"]["output"][0]["id"]).audio_ms == pytest.approx(
        sum(len(base64.b64decode(f["delta"])) for f in sent) / 48
    )
    response = frames[-1]["response"]
    assert response["status"] == "cancelled"
    assert response["status_details"]["reason"] == "turn_detected"
    assert response["output"][0]["status"] == "incomplete"
    with pytest.raises(LocalProtocolError, match=r"after its response\.done"):
        pair.conn.send(events.AudioReady("resp_1", 0, piper(0.1), 22050))


@pytest.mark.parametrize(
    ("status", "reason", "expected"),
    [
        (
            "cancelled",
            "new_message",
            ("cancelled", {"type": "cancelled", "reason": "client_cancelled", "error": None}),
        ),
        ("cancelled", "shutdown", ("cancelled", {"type": "cancelled", "reason": None, "error": None})),
        (
            "cancelled",
            "max_output_tokens",
            ("incomplete", {"type": "incomplete", "reason": "max_output_tokens", "error": None}),
        ),
    ],
)
def test_trio_voice_reasons_map_onto_the_apis(status, reason, expected):
    """Every trio-voice cancel reason has a realtime status and reason."""
    pair = started()
    pair.core(events.ReplyCreated("r"))
    response = pair.core(done("r", status, reason))[-1]["response"]
    assert (response["status"], response["status_details"]) == expected


def test_a_failed_response_carries_the_stable_error_code():
    """An LLM timeout: the core's error event (server_error), then response.done failed with the code."""
    pair = started()
    pair.core(events.ReplyCreated("resp_f"))
    (error,) = pair.core(events.ErrorEvent("llm_timeout", "the LLM sent no first token in time", "resp_f"))
    assert (error["error"]["type"], error["error"]["code"]) == (codes.SERVER_ERROR, "llm_timeout")
    response = pair.core(done("resp_f", "failed", "llm_timeout"))[-1]["response"]
    assert response["status"] == "failed"
    assert response["status_details"]["error"]["code"] == "llm_timeout"
    assert response["output"][0]["content"] == []  # nothing was said


def test_truncate_keeps_the_words_heard_and_clamps_an_overlong_end():
    """Truncating at the middle of the second phrase keeps the first and half the second."""
    pair = started()
    audio_reply(pair, "resp_1", [("One two three four.", 0.5), ("Five six seven eight.", 0.5)])
    pair.core(done("resp_1"))
    item_id = pair.frames[-1]["response"]["output"][0]["id"]
    event = pair.client(
        {"type": "conversation.item.truncate", "item_id": item_id, "content_index": 0, "audio_end_ms": 750}
    )
    assert (event.audio_end_ms, event.response_id) == (750, "resp_1")
    assert pair.frames[-1]["audio_end_ms"] == 750
    pair.client({"type": "conversation.item.retrieve", "item_id": item_id})
    assert pair.frames[-1]["item"]["content"][0]["transcript"] == "One two three four. Five six"
    event = pair.client(
        {"type": "conversation.item.truncate", "item_id": item_id, "content_index": 0, "audio_end_ms": 99999}
    )
    assert event.audio_end_ms == 1000  # all the audio that was sent
    assert pair.frames[-1]["audio_end_ms"] == 1000


def test_truncate_during_the_response_survives_its_end():
    """A truncation while the reply still runs decides what the finished item keeps."""
    pair = started()
    audio_reply(pair, "resp_1", [("Alpha beta.", 0.5)])
    item_id = pair.frames[2]["item"]["id"]
    pair.client(
        {"type": "conversation.item.truncate", "item_id": item_id, "content_index": 0, "audio_end_ms": 100}
    )
    pair.core(events.PhraseReady("resp_1", 1, "Gamma delta."))
    pair.core(events.AudioReady("resp_1", 1, piper(0.5), 22050))
    final = pair.core(done("resp_1"))
    (transcript_done,) = [f for f in final if f["type"] == "response.output_audio_transcript.done"]
    assert transcript_done["transcript"] == "Alpha beta. Gamma delta."  # what was sent
    assert final[-1]["response"]["output"][0]["content"][0]["transcript"] == ""  # what was heard


@pytest.mark.parametrize(
    ("change", "code", "param"),
    [
        ({"item_id": "nope", "content_index": 0}, codes.ITEM_NOT_FOUND, "item_id"),
        ({"item_id": "USER", "content_index": 0}, codes.INVALID_VALUE, "item_id"),
        ({"item_id": "ASSISTANT", "content_index": 1}, codes.INVALID_VALUE, "content_index"),
    ],
)
def test_truncate_refusals(change, code, param):
    """Only an existing assistant audio item's part 0 can be truncated."""
    pair = started()
    user = pair.client(text_item()).item_id
    audio_reply(pair, "resp_1", [("Hello.", 0.2)])
    pair.core(done("resp_1"))
    assistant = pair.frames[-1]["response"]["output"][0]["id"]
    item_id = {"USER": user, "ASSISTANT": assistant}.get(change["item_id"], change["item_id"])
    obj = {"type": "conversation.item.truncate", **change, "item_id": item_id, "audio_end_ms": 10}
    error = pair.refused(obj)["error"]
    assert (error["code"], error["param"]) == (code, param)


def test_the_item_of_a_running_response_cannot_be_deleted():
    """Deleting it would leave the response's events pointing at nothing."""
    pair = started()
    pair.core(events.ReplyCreated("resp_1"))
    item_id = pair.frames[-1]["item"]["id"]
    assert pair.refused({"type": "conversation.item.delete", "item_id": item_id})["error"]["code"] == (
        codes.UNSUPPORTED_FEATURE
    )


def test_g711_output_gets_8k_deltas():
    """A pcma response: deltas one byte a sample at 8 kHz, 100-200 ms each."""
    pair = started()
    ask = pair.client(
        {"type": "response.create", "response": {"audio": {"output": {"format": {"type": "audio/pcma"}}}}}
    )
    audio_reply(pair, "resp_1", [("Hello there.", 0.6)], ask.event_id)
    pair.core(done("resp_1"), ask.event_id)
    deltas = [base64.b64decode(f["delta"]) for f in pair.frames if f["type"] == "response.output_audio.delta"]
    assert sum(len(d) for d in deltas) == 4800
    assert all(800 <= len(d) <= 1600 for d in deltas[:-1])
    assert pair.frames[-1]["response"]["audio"]["output"]["format"] == {"type": "audio/pcma"}


# --- the lifecycle guarantee -------------------------------------------------------------------------


def test_our_own_lifecycle_bugs_raise_local_protocol_error():
    """Events of unknown or finished responses, or two responses at once, are bugs, not frames."""
    pair = started()
    with pytest.raises(LocalProtocolError, match="not the one running"):
        pair.conn.send(events.TextDelta("resp_x", "hi"))
    pair.core(events.ReplyCreated("resp_1"))
    with pytest.raises(LocalProtocolError, match="while resp_1 is running"):
        pair.conn.send(events.ReplyCreated("resp_2"))
    pair.core(done("resp_1"))
    with pytest.raises(LocalProtocolError, match=r"after its response\.done"):
        pair.conn.send(done("resp_1"))
    with pytest.raises(LocalProtocolError, match="created again"):
        pair.conn.send(events.ReplyCreated("resp_1"))
    with pytest.raises(LocalProtocolError, match="renders"):
        pair.conn.send(object())


# --- errors ------------------------------------------------------------------------------------------


def test_core_errors_get_the_realtime_spelling_and_echo_only_client_event_ids():
    """input_audio_empty → input_audio_buffer_commit_empty; the client's event_id is echoed, or null."""
    pair = started()
    clear = pair.client({"type": "input_audio_buffer.clear", "event_id": "evt_client"})
    assert clear.event_id != "evt_client"  # the core gets a request id unique in the connection
    assert pair.conn.client_event_id(clear.event_id) == "evt_client"
    (error,) = pair.core(events.ErrorEvent("input_audio_empty", "no speech"), clear.event_id)
    assert error["error"] == {
        "type": codes.INVALID_REQUEST_ERROR,
        "code": codes.INPUT_AUDIO_BUFFER_COMMIT_EMPTY,
        "message": "no speech",
        "param": None,
        "event_id": "evt_client",
    }
    made_up = pair.client({"type": "input_audio_buffer.clear"}).event_id
    (error,) = pair.core(events.ErrorEvent("rate_limited", "slow down"), made_up)
    assert error["error"]["event_id"] is None


def test_reused_client_event_ids_do_not_mix_up_items():
    """Two commits with the same event_id still get their own items, acks and transcripts."""
    pair = started(codes.GA, MANUAL, TRANSCRIBE)
    commits = []
    for _ in range(2):
        pair.client({"type": "input_audio_buffer.append", "audio": b64(pcm24k(0.2))})
        commits.append(
            pair.conn.receive(json.dumps({"type": "input_audio_buffer.commit", "event_id": "same"}))
        )
    for commit in commits:  # the writer renders the acknowledgements later, in order
        assert pair.core(commit)[0]["item_id"] == commit.item_id
    second = pair.core(events.TranscriptFinal("Second"), commits[1].event_id)[-1]
    first = pair.core(events.TranscriptFinal("First"), commits[0].event_id)[-1]
    assert (first["item_id"], second["item_id"]) == (commits[0].item_id, commits[1].item_id)


def test_an_error_for_a_pending_response_create_frees_the_slot():
    """If the core refuses to start a response (shutting down), another response.create is possible."""
    pair = started()
    ask = pair.client({"type": "response.create"})
    pair.core(events.ErrorEvent("shutting_down", "no new replies"), ask.event_id)
    assert pair.frames[-1]["error"]["type"] == codes.SERVER_ERROR
    pair.client({"type": "response.create"})


def test_a_malformed_event_is_answered_with_its_event_id():
    """A field of the wrong type: error with type, code, param and the event_id; the connection goes on."""
    pair = started()
    error = pair.refused({"type": "response.create", "event_id": "evt_bad", "response": {"instructions": 7}})[
        "error"
    ]
    assert error == {
        "type": codes.INVALID_REQUEST_ERROR,
        "code": codes.INVALID_TYPE,
        "message": "Invalid type for 'response.instructions': expected a string, but got an integer instead.",
        "param": "response.instructions",
        "event_id": "evt_bad",
    }
    pair.client({"type": "response.create"})


def test_nothing_is_sent_for_warnings_pongs_or_client_events_the_core_answers():
    """Warnings and pongs have no realtime counterpart; session.update waits for the core's answer."""
    pair = started()
    assert pair.core(events.WarningEvent("tts_failed", "a phrase was lost")) == []
    assert pair.core(events.Pong()) == []


def test_server_events_encode_as_compact_json():
    """encode gives one compact JSON text frame."""
    frame = started().frames[0]
    text = encode(frame)
    assert json.loads(text) == frame and ", " not in text


# --- the beta dialect --------------------------------------------------------------------------------


def test_beta_renames_events_and_reshapes_the_session():
    """OpenAI-Beta: realtime=v1 gets conversation.item.created, response.audio.*, response.text.* and the
    top-level session fields; each frame validates against the SDK's beta types."""
    pair = started(codes.BETA)
    session = pair.frames[0]["session"]
    assert session["input_audio_format"] == "pcm16" and session["modalities"] == ["audio", "text"]
    assert session["turn_detection"]["silence_duration_ms"] == 500
    pair.client(text_item())
    audio_reply(pair, "resp_1", [("Hello.", 0.3)])
    pair.core(done("resp_1"))
    kinds = set(pair.types())
    assert {"conversation.item.created", "response.audio.delta", "response.audio_transcript.delta"} <= kinds
    assert not {"conversation.item.added", "conversation.item.done", "response.output_audio.delta"} & kinds
    response = pair.frames[-1]["response"]
    assert (response["modalities"], response["output_audio_format"]) == (["audio", "text"], "pcm16")
    assert response["output"][0]["content"][0]["type"] == "audio"


def test_beta_text_response_uses_response_text_events():
    """A beta text-only response: response.text.delta / done."""
    pair = started(codes.BETA)
    ask = pair.client({"type": "response.create", "response": {"modalities": ["text"]}})
    pair.core(events.ReplyCreated("r"), ask.event_id)
    pair.core(events.TextDelta("r", "Hi."), ask.event_id)
    pair.core(done("r"), ask.event_id)
    assert {"response.text.delta", "response.text.done"} <= set(pair.types())
    assert pair.frames[-1]["response"]["output"][0]["content"] == [{"type": "text", "text": "Hi."}]


@pytest.mark.parametrize("dialect", [codes.GA, codes.BETA])
def test_the_scripted_session_is_valid_from_start_to_end(dialect):
    """The canonical conversation of the spec: every frame validates; it has a barge-in, and ends with
    a failed transcription."""
    pair = scripted_session(dialect)
    assert pair.types()[0] == "session.created"
    reasons = [f["response"]["status_details"] for f in pair.frames if f["type"] == "response.done"]
    assert reasons[-1]["reason"] == "turn_detected"
    assert pair.types()[-1] == "conversation.item.input_audio_transcription.failed"
    assert not pair.view.open_responses


def test_dialect_is_chosen_by_the_beta_header():
    """OpenAI-Beta: realtime=v1 (any case, possibly among other values) picks the beta dialect."""
    assert codes.dialect_for({"OpenAI-Beta": "realtime=v1"}) == codes.BETA
    assert codes.dialect_for([("openai-beta", "assistants=v2, realtime=v1")]) == codes.BETA
    assert codes.dialect_for({"Authorization": "Bearer x"}) == codes.GA
    with pytest.raises(ValueError):
        RealtimeConnection(model="m", dialect="v2")


def test_the_realtime_package_imports_neither_trio_nor_a_socket_library():
    """Sans I/O by construction: a fresh interpreter imports it without trio or trio-websocket."""
    code = (
        "import sys, trio_voice.realtime; "
        "bad = sorted(m for m in ('trio', 'trio_websocket', 'socket', 'httpx') if m in sys.modules); "
        "print(','.join(bad))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""
