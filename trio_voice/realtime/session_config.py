"""The realtime session's configuration in force, and the ``session`` object of either dialect.

``SessionConfig`` applies ``session.update`` requests, takes the values the session core owns
(instructions, VAD settings, audio on or off) from the core's neutral ``session.created`` /
``session.updated`` config, and renders the full ``session`` object, with explicit ``null`` wherever
a setting is off.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from . import codes
from .formats import DEFAULT_FORMAT, AudioFormat
from .session_update import (
    AUDIO,
    DEFAULT_VOICE,
    TEXT,
    TRANSCRIPTION_OFF,
    SessionUpdate,
    Transcription,
    TurnDetection,
    render_modalities,
)

# What the hosted API starts with; the session core's own values replace these at session.created.
SERVER_VAD_DEFAULTS = TurnDetection(
    threshold=0.5,
    prefix_padding_ms=300,
    silence_duration_ms=500,
    create_response=True,
    interrupt_response=True,
)


@attrs.define
class SessionConfig:
    """The realtime session's configuration in force.

    The session core owns instructions, VAD settings and whether replies have audio, and reports them in
    its neutral config; ``sync`` takes them from there. Everything else (formats, voice, transcription,
    ``create_response``, ``interrupt_response``) exists only at this edge and changes in ``apply``.
    """

    model: str
    instructions: str = ""
    output_modalities: tuple[str, ...] = AUDIO
    input_format: AudioFormat = DEFAULT_FORMAT
    output_format: AudioFormat = DEFAULT_FORMAT
    voice: str = DEFAULT_VOICE
    turn_detection: TurnDetection = SERVER_VAD_DEFAULTS
    transcription: Transcription = TRANSCRIPTION_OFF

    def apply(self, update: SessionUpdate) -> None:
        for name in ("model", "instructions", "output_modalities", "input_format", "output_format", "voice"):
            value = getattr(update, name)
            if value is not None:
                setattr(self, name, value)
        if update.transcription is not None:
            self.transcription = update.transcription
        td = update.turn_detection
        if td is not None:
            if td.type == "none":
                self.turn_detection = attrs.evolve(self.turn_detection, type="none")
            else:
                changes = {k: v for k, v in attrs.asdict(td).items() if v is not None}
                self.turn_detection = attrs.evolve(self.turn_detection, **changes)

    def sync(self, native: Mapping[str, Any]) -> None:
        """Take the values the session core reports in force (its ``session.created/updated`` config)."""
        if "instructions" in native:
            self.instructions = native["instructions"]
        if "output_audio" in native:
            self.output_modalities = AUDIO if native["output_audio"] else TEXT
        td = native.get("turn_detection")
        if td:
            self.turn_detection = attrs.evolve(
                self.turn_detection,
                type=td.get("type", self.turn_detection.type),
                threshold=td.get("threshold", self.turn_detection.threshold),
                silence_duration_ms=td.get("silence_ms", self.turn_detection.silence_duration_ms),
                prefix_padding_ms=td.get("prefix_ms", self.turn_detection.prefix_padding_ms),
            )

    @property
    def server_vad(self) -> bool:
        return self.turn_detection.type == "server_vad"

    def render(self, dialect: str, *, session_id: str) -> dict[str, Any]:
        """The ``session`` object of ``session.created`` / ``session.updated``."""
        if dialect == codes.BETA:
            return {
                "id": session_id,
                "modalities": render_modalities(self.output_modalities, beta=True),
                "instructions": self.instructions,
                "voice": self.voice,
                "input_audio_format": self.input_format.to_beta(),
                "output_audio_format": self.output_format.to_beta(),
                "input_audio_transcription": self.transcription.render(),
                "turn_detection": self.turn_detection.render(beta=True),
                "input_audio_noise_reduction": None,
                "tools": [],
                "tool_choice": "auto",
                "max_response_output_tokens": "inf",
                "speed": 1.0,
                "tracing": None,
            }
        return {
            "type": "realtime",
            "model": self.model,
            "output_modalities": list(self.output_modalities),
            "instructions": self.instructions,
            "tools": [],
            "tool_choice": "auto",
            "max_output_tokens": "inf",
            "tracing": None,
            "truncation": "auto",
            "prompt": None,
            "include": None,
            "audio": {
                "input": {
                    "format": self.input_format.to_ga(),
                    "transcription": self.transcription.render(),
                    "noise_reduction": None,
                    "turn_detection": self.turn_detection.render(beta=False),
                },
                "output": {"format": self.output_format.to_ga(), "voice": self.voice, "speed": 1.0},
            },
        }
