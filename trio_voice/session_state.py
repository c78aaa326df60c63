"""A session's plain shared data: its settings, its turn control, its recent replies (no tasks, no I/O).

Everything a session's tasks (and an HTTP streaming reply, which is a one-turn session) share lives here,
so that the modules that run those tasks (``session``, ``receive``, ``writer``, ``converse``, ``listen``)
depend on this one and not on each other.
"""

from __future__ import annotations

import time
from collections import Counter, OrderedDict
from typing import Any

import attrs

from . import codec
from .config import Config
from .formats import encoded_sample_rate
from .narration import Narrations
from .playback import PlaybackLog
from .turn import TurnRecord
from .turn_control import TurnControl
from .user_link import UserLink
from .voices import Voices

# Turn records kept per session so a late ``response.truncate`` can still find its reply.
KEPT_TURN_RECORDS = 16


def session_limits(config: Config) -> codec.SessionLimits:
    """The limits a session announces to its client."""
    return codec.SessionLimits(
        max_frame_bytes=config.max_frame_bytes,
        max_text_chars=config.max_text_chars,
        max_messages_per_second=config.max_messages_per_second,
        max_audio_realtime_factor=config.max_audio_realtime_factor,
        idle_timeout=config.idle_timeout,
        resume_ttl=config.resume_ttl,
    )


def default_turn_detection(config: Config, *, voice: bool, semantic: bool = False) -> codec.TurnDetection:
    """A new session's turn detection: semantic when the end-of-turn model is loaded, the server's VAD
    settings without it, ``none`` without voice input."""
    return codec.TurnDetection(
        type=("semantic" if semantic else "server_vad") if voice else "none",
        threshold=config.vad_threshold,
        silence_ms=config.vad_silence_ms,
        prefix_ms=config.vad_prefix_ms,
        eagerness=config.turn_eagerness,
        fallback_ms=config.turn_fallback_ms,
        speculative=config.turn_speculative,
    )


@attrs.define
class SessionState:
    """The facts a session's tasks share. Read by ``/v1/sessions``; written only by the session's own tasks.

    ``turns`` is the session's :class:`~trio_voice.turn_control.TurnControl`: requests, cancels and
    barge-ins go through it to the one task that runs turns. ``create_response`` off: a final transcript
    is stored as the user's message and asks for no reply (the realtime API's manual turns and
    ``create_response: false``); ``interrupt_response`` off: speech does not cancel a running reply.
    """

    session_id: str
    conversation_id: str
    instructions: str
    output_audio: bool = True
    input_sample_rate: int = 16000
    turn_detection: codec.TurnDetection = attrs.field(factory=codec.TurnDetection)
    create_response: bool = True
    interrupt_response: bool = True
    input_audio_format: str = "pcm16"
    output_audio_format: str = "pcm16"
    voice: str | None = None  # None: the server's default voice
    language: str = "en"
    turns: TurnControl = attrs.field(factory=TurnControl)
    narrations: Narrations = attrs.field(factory=Narrations)
    turn_counts: Counter[str] = attrs.field(factory=Counter)
    records: OrderedDict[str, tuple[str, TurnRecord]] = attrs.field(factory=OrderedDict)
    playback: PlaybackLog = attrs.field(factory=PlaybackLog)  # reply audio sent, for the echo guard
    created_at: float = attrs.field(factory=time.time)
    user: UserLink = attrs.field(factory=UserLink)  # who is speaking, their presence and typing
    record: bool = False  # session.update record: the session's audio and transcript go to disk
    connected: bool = True  # False while the session waits for its client to resume

    @property
    def activity(self) -> str:
        """``responding``, ``listening`` (the user is speaking) or ``idle``."""
        if self.turns.current is not None:
            return "responding"
        return "listening" if self.turns.user_speaking else "idle"

    def remember(self, response_id: str, record: TurnRecord) -> None:
        """Keep a reply's record (of the conversation it belongs to) for a later ``response.truncate``."""
        self.records[response_id] = (self.conversation_id, record)
        while len(self.records) > KEPT_TURN_RECORDS:
            self.records.popitem(last=False)

    def config_view(self, config: Config, voices: Voices) -> dict[str, Any]:
        """The ``config`` object of ``session.created`` and ``session.updated``."""
        voice = voices.get(self.voice)
        rate = voice.sample_rate
        if self.output_audio_format != "pcm16":
            rate = encoded_sample_rate(self.output_audio_format, rate)
        return codec.render_session_config(
            instructions=self.instructions,
            input_sample_rate=self.input_sample_rate,
            turn_detection=self.turn_detection,
            output_audio=self.output_audio,
            output_sample_rate=rate,
            limits=session_limits(config),
            input_audio_format=self.input_audio_format,
            output_audio_format=self.output_audio_format,
            voice=voice.name,
            language=self.language,
            user_id=self.user.user_id,
            record=self.record,
        )

    def snapshot(self) -> dict[str, Any]:
        return {
            "session_id": self.session_id,
            "conversation_id": self.conversation_id,
            "age_s": round(time.time() - self.created_at, 1),
            "state": self.activity,
            "turns": dict(self.turn_counts),
            "user_id": self.user.user_id,
            "connected": self.connected,
            "record": self.record,
        }
