"""A ``ConnectionPair`` for the realtime codec: a scripted session core on one side, a strict client on the other.

``RealtimePair`` plays the session core's part with plain calls (no trio, no socket): ``client(obj)``
is a frame arriving from the client (``receive``, then its acknowledgement through ``send``, as the
session's writer will do), ``core(event)`` is a neutral event the core emits. Every server event
either produces is checked as a strict client would: against the ``openai`` SDK's own types (extra
fields or wrong types fail), with unique ``event_id``s, and with nothing of a response outside its
``response.created`` … ``response.done``.

``scripted_session`` is the canonical conversation the spec test (protocol/realtime.md) draws on.
"""

from __future__ import annotations

import base64
import itertools
import json
from typing import Any

import attrs
import numpy as np

from tests.realtime_sdk import validate_server
from trio_voice import events
from trio_voice.audio import float_to_pcm16
from trio_voice.realtime import RealtimeConnection, codes

NATIVE_CONFIG = {
    "instructions": "You are a friendly voice assistant.",
    "input_sample_rate": 16000,
    "turn_detection": {"type": "server_vad", "threshold": 0.5, "silence_ms": 500, "prefix_ms": 300},
    "output_audio": True,
    "output_sample_rate": 22050,
}
METRICS = {
    "llm_first_token_ms": 120.0,
    "first_phrase_ms": 300.0,
    "first_audio_ms": 500.0,
    "total_ms": 900.0,
    "tokens": 9,
}


def counter_ids() -> Any:
    """Deterministic ids: event_1, item_2, …"""
    count = itertools.count(1)
    return lambda prefix: f"{prefix}_{next(count)}"


def pcm24k(seconds: float, hz: float = 220.0) -> bytes:
    t = np.arange(int(24000 * seconds)) / 24000
    return float_to_pcm16((0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32))


def piper(seconds: float) -> bytes:
    """Audio as Piper gives it: PCM16 at 22050 Hz."""
    t = np.arange(int(22050 * seconds)) / 22050
    return float_to_pcm16((0.3 * np.sin(2 * np.pi * 330 * t)).astype(np.float32))


@attrs.define
class ClientView:
    """What a strict client checks on every server event it receives."""

    dialect: str
    event_ids: set[str] = attrs.field(factory=set)
    open_responses: set[str] = attrs.field(factory=set)
    done_responses: set[str] = attrs.field(factory=set)

    def check(self, frame: dict[str, Any]) -> None:
        validate_server(json.loads(json.dumps(frame)), self.dialect)  # exactly what goes on the wire
        assert frame["event_id"] not in self.event_ids, f"event_id reused: {frame}"
        self.event_ids.add(frame["event_id"])
        response_id = frame.get("response_id") or (frame.get("response") or {}).get("id")
        if response_id is None:
            return
        assert response_id not in self.done_responses, f"{frame['type']} after response.done of {response_id}"
        if frame["type"] == "response.created":
            assert not self.open_responses, "a second response while one is in progress"
            self.open_responses.add(response_id)
        else:
            assert response_id in self.open_responses, f"{frame['type']} of a response never created"
        if frame["type"] == "response.done":
            self.open_responses.discard(response_id)
            self.done_responses.add(response_id)


class RealtimePair:
    def __init__(self, dialect: str = codes.GA, *, model: str = "gpt-realtime") -> None:
        self.conn = RealtimeConnection(model=model, dialect=dialect, new_id=counter_ids())
        self.view = ClientView(dialect)
        self.frames: list[dict[str, Any]] = []

    def _record(self, frames: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for frame in frames:
            self.view.check(frame)
        self.frames += frames
        return frames

    def client(self, obj: dict[str, Any] | str) -> Any:
        """A client frame: returns the accepted event (its acknowledgements are recorded)."""
        event = self.conn.receive(obj if isinstance(obj, str) else json.dumps(obj))
        self._record(self.conn.send(event))
        return event

    def refused(self, obj: dict[str, Any] | str) -> dict[str, Any]:
        """A client frame the connection refuses: returns the ``error`` event the session would send."""
        try:
            self.conn.receive(obj if isinstance(obj, str) else json.dumps(obj))
        except Exception as exc:  # the RealtimeProtocolError under test
            (frame,) = self._record([self.conn.error(exc)])
            return frame
        raise AssertionError(f"{obj} was accepted")

    def core(self, event: Any, request_id: str | None = None) -> list[dict[str, Any]]:
        """A neutral event of the session core: returns the server events it became."""
        return self._record(self.conn.send(event, request_id=request_id))

    def types(self, frames: list[dict[str, Any]] | None = None) -> list[str]:
        return [frame["type"] for frame in (self.frames if frames is None else frames)]

    def mark(self) -> int:
        return len(self.frames)

    def since(self, mark: int) -> list[dict[str, Any]]:
        return self.frames[mark:]


def audio_reply(
    pair: RealtimePair, response_id: str, phrases: list[tuple[str, float]], request_id: str | None = None
) -> None:
    """The core speaking a reply: ReplyCreated, then each phrase and its audio."""
    pair.core(events.ReplyCreated(response_id), request_id)
    for index, (text, seconds) in enumerate(phrases):
        pair.core(events.TextDelta(response_id, text + " "), request_id)
        pair.core(events.PhraseReady(response_id, index, text), request_id)
        pair.core(events.AudioReady(response_id, index, piper(seconds), 22050), request_id)


def scripted_session(dialect: str = codes.GA) -> RealtimePair:
    """One conversation touching every server event trio-voice sends (used by the spec test)."""
    pair = RealtimePair(dialect)
    pair.core(events.SessionCreated("sess_1", "conv_1", NATIVE_CONFIG))
    if dialect == codes.BETA:
        update: dict[str, Any] = {
            "type": "session.update",
            "session": {"input_audio_transcription": {"model": "whisper-1"}},
        }
    else:
        update = {
            "type": "session.update",
            "session": {"type": "realtime", "audio": {"input": {"transcription": {"model": "whisper-1"}}}},
        }
    pair.client(update)
    pair.core(events.SessionUpdated("conv_1", NATIVE_CONFIG))
    # A typed question, answered in text only.
    pair.client(
        {
            "type": "conversation.item.create",
            "item": {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Hi!"}]},
        }
    )
    modalities = "modalities" if dialect == codes.BETA else "output_modalities"
    ask = pair.client(
        {
            "type": "response.create",
            "event_id": "evt_ask",
            "response": {modalities: ["text"], "metadata": {"turn": "1"}},
        }
    )
    pair.core(events.ReplyCreated("resp_1"), ask.event_id)
    pair.core(events.TextDelta("resp_1", "Hello"), ask.event_id)
    pair.core(events.TextDelta("resp_1", " there."), ask.event_id)
    pair.core(events.ReplyDone("resp_1", "completed", None, "Hello there.", METRICS), ask.event_id)
    # A spoken question, found by the server's VAD, answered in audio, and cut off by the user.
    pair.core(events.SpeechStarted(1000))
    pair.core(events.SpeechStopped(2500))
    pair.core(events.TranscriptFinal("What time is it?"))
    pair.core(events.ReplyCreated("resp_2"))
    pair.core(events.PhraseReady("resp_2", 0, "It is noon."))
    pair.core(events.AudioReady("resp_2", 0, piper(0.001), 22050))
    pair.core(events.ReplyDone("resp_2", "completed", None, "It is noon.", METRICS))
    assistant = pair.conn.conversation.ids()[-1]
    pair.client(
        {"type": "conversation.item.truncate", "item_id": assistant, "content_index": 0, "audio_end_ms": 0}
    )
    pair.client({"type": "conversation.item.retrieve", "item_id": assistant})
    pair.client({"type": "input_audio_buffer.clear"})
    pair.client({"type": "conversation.item.delete", "item_id": assistant})
    pair.refused({"type": "response.cancel", "event_id": "evt_cancel"})
    # Asked to go on, and interrupted by the user speaking over the answer (barge-in).
    more = pair.client({"type": "response.create", "event_id": "evt_more"})
    pair.core(events.ReplyCreated("resp_3"), more.event_id)
    pair.core(events.PhraseReady("resp_3", 0, "Shall I go on?"), more.event_id)
    pair.core(events.AudioReady("resp_3", 0, piper(0.001), 22050), more.event_id)
    pair.core(events.SpeechStarted(9000))
    pair.core(
        events.ReplyDone("resp_3", "cancelled", "turn_detected", "Shall I go on?", METRICS), more.event_id
    )
    pair.core(events.SpeechStopped(9800))
    pair.core(events.ErrorEvent("stt_failed", "speech-to-text failed on a clip"))
    return pair


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
