"""Protocol-neutral server events: what sessions and turns say, before any renderer touches them.

The turn pipeline and the session emit these; ``trio_voice.codec`` renders them for the native
WebSocket protocol, and the HTTP streaming fallbacks render the same objects as SSE or NDJSON. No stage
knows about sockets, JSON or base64.

Reply events (``ReplyCreated`` … ``ReplyDone``) carry a ``response_id``; an interruption cancels the
frames of a reply that have not been sent yet, never the ``ReplyDone`` that closes it.

The core names the messages it stores (``item_id`` on ``SpeechStarted`` and ``ReplyCreated``), so that a
renderer whose protocol names conversation items (the realtime API) uses the names the store knows.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

# --- session ---------------------------------------------------------------------------------------


@attrs.frozen
class SessionCreated:
    session_id: str
    conversation_id: str
    config: Mapping[str, Any]
    resume_token: str | None = None  # None when the server keeps no session for a resume
    instance_id: str | None = None  # the server instance holding the session: where a resume must go


@attrs.frozen
class SessionResumed:
    """The last event of a connection's fresh session: what follows is session ``session_id``, from
    ``last_seq + 1`` on (``replayed`` events the client missed, then the live stream)."""

    session_id: str
    conversation_id: str
    last_seq: int
    replayed: int


@attrs.frozen
class SessionUpdated:
    conversation_id: str
    config: Mapping[str, Any]


@attrs.frozen
class ErrorEvent:
    """Something the client should know went wrong; ``code`` is stable (see protocol/errors.md)."""

    code: str
    message: str
    response_id: str | None = None
    reason: str | None = None  # a finer cause, for codes that have several (resume_failed)
    instance_id: str | None = None  # resume_failed wrong_instance: the instance holding the session
    retry_after_ms: int | None = None  # server_full: when to try again


@attrs.frozen
class WarningEvent:
    """A degradation that did not stop the work (e.g. one phrase could not be synthesized)."""

    code: str
    message: str
    response_id: str | None = None


@attrs.frozen
class Pong:
    pass


# --- users ---------------------------------------------------------------------------------------


@attrs.frozen
class PresenceUpdate:
    """Another session of the same user is now ``status`` (``online``, ``away``, ``offline``)."""

    user_id: str
    session_id: str
    status: str
    last_seen: float  # seconds since the epoch


@attrs.frozen
class TypingUpdate:
    """Another session of the same user started or stopped typing."""

    user_id: str
    session_id: str
    typing: bool


@attrs.frozen
class SystemMessage:
    """A message queued for the user while it had no connection (or sent to all its connections)."""

    message_id: str
    kind: str  # "system" (from an operator) or "reply" (a reply that finished after the user left)
    text: str
    created_at: float
    expires_at: float
    conversation_id: str | None = None  # a reply's conversation


# --- voice input -----------------------------------------------------------------------------------


@attrs.frozen
class SpeechStarted:
    audio_start_ms: int
    item_id: str | None = None  # the name the utterance's user message will be stored under


@attrs.frozen
class SpeechStopped:
    audio_end_ms: int


@attrs.frozen
class TranscriptPartial:
    text: str


@attrs.frozen
class TranscriptFinal:
    text: str
    language: str | None = None  # the language whisper detected, when the session's language is "auto"


# --- reply (one turn) ------------------------------------------------------------------------------


@attrs.frozen
class ReplyCreated:
    response_id: str
    item_id: str | None = None  # the name the reply's assistant message is stored under


@attrs.frozen
class TextDelta:
    response_id: str
    delta: str


@attrs.frozen
class PhraseReady:
    response_id: str
    index: int
    text: str


@attrs.frozen
class AudioReady:
    """Audio of phrase ``index``; one phrase may arrive as several of these, in order.

    ``format`` ``pcm16``: PCM16LE mono at ``sample_rate``. Otherwise the next bytes of the reply's one
    encoded stream (``trio_voice.formats.encoders``), whose decoded rate is ``sample_rate``.
    """

    response_id: str
    index: int
    audio: bytes = attrs.field(repr=lambda b: f"<{len(b)} bytes>")
    sample_rate: int
    format: str = "pcm16"
    # Milliseconds of speech this event carries (not on the wire: for encoded audio, bytes do not say).
    pcm_ms: float = attrs.field(default=0.0, eq=False)


@attrs.frozen
class ReplyDone:
    """The last event of every reply. ``status`` is ``completed``, ``cancelled`` or ``failed``."""

    response_id: str
    status: str
    reason: str | None
    text: str
    metrics: Mapping[str, Any]


# --- narration (trio_voice.narration) ----------------------------------------------------------------


@attrs.frozen
class NarrationCreated:
    """A ``narrate`` request was queued: ``total_phrases`` phrases, ``ahead`` narrations before it."""

    narration_id: str
    total_phrases: int
    ahead: int


@attrs.frozen
class NarrationProgress:
    """Phrase ``phrase_index`` of the narration has all its audio sent; ``position_ms`` of the
    narration's audio has been sent so far (from its first phrase, across pauses)."""

    narration_id: str
    response_id: str
    phrase_index: int
    total_phrases: int
    position_ms: int


@attrs.frozen
class NarrationPaused:
    """The narration stopped before phrase ``phrase_index``; ``narration.resume`` goes on from there."""

    narration_id: str
    phrase_index: int
    reason: str


@attrs.frozen
class NarrationDone:
    """The narration left the queue: ``completed`` (all spoken) or ``cancelled`` (``narration.cancel``)."""

    narration_id: str
    status: str


NarrationEvent = NarrationCreated | NarrationProgress | NarrationPaused | NarrationDone
ReplyEvent = ReplyCreated | TextDelta | PhraseReady | AudioReady | ReplyDone
ServerEvent = (
    SessionCreated
    | SessionResumed
    | SessionUpdated
    | ErrorEvent
    | WarningEvent
    | Pong
    | SpeechStarted
    | SpeechStopped
    | TranscriptPartial
    | TranscriptFinal
    | PresenceUpdate
    | TypingUpdate
    | SystemMessage
    | ReplyEvent
    | NarrationEvent
)
