"""The two protocols the load-test client speaks: what it sends for a question, its audio and a cancel, and
which checker reads what comes back. One dialect object per conversation (the realtime one resamples the
microphone stream, which has state).

- ``voice`` (``/v1/voice``): binary PCM frames at 16 kHz, ``message.create``, ``response.cancel``;
  checked by :class:`~tools.loadtest.checks.ProtocolChecker`.
- ``realtime`` (``/v1/realtime``, the OpenAI Realtime API): ``input_audio_buffer.append`` of 24 kHz PCM,
  ``conversation.item.create`` + ``response.create`` (its ``metadata.request_id`` ties the response
  to the question), ``response.cancel``; checked by :class:`~tools.loadtest.realtime.RealtimeChecker`,
  which translates events into the shape the conversation script reads.
"""

from __future__ import annotations

import base64
import json
from typing import Protocol

from trio_voice import codec
from trio_voice.audio import Resampler, float_to_pcm16, pcm16_to_float

from .checks import ProtocolChecker
from .plan import SAMPLE_RATE
from .realtime import OUTPUT_RATE, RealtimeChecker

PROTOCOLS = ("voice", "realtime")


class Checker(Protocol):
    counts: object
    examples: list
    events: int
    lost_events: int
    duplicate_events: int

    def receive(self, frame: str | bytes) -> dict | None: ...

    def finish(self) -> None: ...


class Dialect(Protocol):
    name: str

    def checker(self) -> Checker: ...

    def setup(self) -> list[str]:
        """Frames sent once the session is created."""
        ...

    def audio(self, pcm: bytes) -> str | bytes:
        """One microphone frame (PCM16LE, 16 kHz) as the protocol sends it."""
        ...

    def ask(self, text: str, request_id: str) -> list[str]:
        """A typed question, and the request for its answer."""
        ...

    def cancel(self, response_id: str | None) -> str: ...


class VoiceDialect:
    name = "voice"

    def __init__(self, turn_detection: codec.TurnDetection | None = None) -> None:
        self.turn_detection = turn_detection

    def checker(self) -> ProtocolChecker:
        return ProtocolChecker()

    def setup(self) -> list[str]:
        if self.turn_detection is None:
            return []
        return [codec.encode_client(codec.SessionUpdate(turn_detection=self.turn_detection))]

    def audio(self, pcm: bytes) -> bytes:
        return pcm

    def ask(self, text: str, request_id: str) -> list[str]:
        return [codec.encode_client(codec.MessageCreate(text=text, request_id=request_id))]

    def cancel(self, response_id: str | None) -> str:
        return codec.encode_client(codec.ResponseCancel(response_id=response_id))


class RealtimeDialect:
    name = "realtime"

    def __init__(self) -> None:
        self._resampler = Resampler(SAMPLE_RATE, OUTPUT_RATE)

    def checker(self) -> RealtimeChecker:
        return RealtimeChecker()

    def setup(self) -> list[str]:
        # Transcripts are sent only when transcription is on; the samples record them.
        audio = {"input": {"transcription": {"model": "whisper-1"}}}
        return [json.dumps({"type": "session.update", "session": {"type": "realtime", "audio": audio}})]

    def audio(self, pcm: bytes) -> str:
        pcm24k = float_to_pcm16(self._resampler.process(pcm16_to_float(pcm)))
        return json.dumps({"type": "input_audio_buffer.append", "audio": base64.b64encode(pcm24k).decode()})

    def ask(self, text: str, request_id: str) -> list[str]:
        item = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}
        create = {
            "type": "response.create",
            "event_id": request_id,
            "response": {"metadata": {"request_id": request_id}},
        }
        return [json.dumps({"type": "conversation.item.create", "item": item}), json.dumps(create)]

    def cancel(self, response_id: str | None) -> str:
        event = {"type": "response.cancel"} | ({"response_id": response_id} if response_id else {})
        return json.dumps(event)


def dialect_for(protocol: str, *, turn_detection: codec.TurnDetection | None = None) -> Dialect:
    """A fresh dialect for one conversation; ``turn_detection`` (the native protocol's only) is sent in
    a ``session.update`` when the session opens."""
    if protocol == "realtime":
        if turn_detection is not None:
            raise ValueError("turn_detection is a /v1/voice setting; the realtime dialect keeps server_vad")
        return RealtimeDialect()
    if protocol == "voice":
        return VoiceDialect(turn_detection)
    raise ValueError(f"protocol must be one of {PROTOCOLS}, not {protocol!r}")
