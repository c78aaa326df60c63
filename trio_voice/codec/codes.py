"""The stable names of the wire protocol: error and warning codes, close codes, reply statuses and reasons.

Every code a client can receive is listed here with one line saying what it means; ``protocol/errors.md``
documents each of them (a test keeps the two in step). Code that raises or sends one of these should
use the constant's value, never a fresh string literal.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType
from typing import Final

# --- error codes the codec raises (RemoteProtocolError.code) ---------------------------------------
INVALID_JSON: Final = "invalid_json"
INVALID_MESSAGE: Final = "invalid_message"
UNKNOWN_TYPE: Final = "unknown_type"
INVALID_FIELD: Final = "invalid_field"
TEXT_TOO_LONG: Final = "text_too_long"
INVALID_AUDIO: Final = "invalid_audio"
FRAME_TOO_LARGE: Final = "frame_too_large"
# --- error codes the session sends --------------------------------------------------------------------
RATE_LIMITED: Final = "rate_limited"
AUDIO_RATE_EXCEEDED: Final = "audio_rate_exceeded"
RESPONSE_NOT_FOUND: Final = "response_not_found"
NO_ACTIVE_RESPONSE: Final = "no_active_response"
INPUT_AUDIO_EMPTY: Final = "input_audio_empty"
CONVERSATION_NOT_FOUND: Final = "conversation_not_found"
UNSUPPORTED: Final = "unsupported"
SHUTTING_DOWN: Final = "shutting_down"
SERVER_FULL: Final = "server_full"
IDLE_TIMEOUT: Final = "idle_timeout"
STORAGE_ERROR: Final = "storage_error"
INTERNAL_ERROR: Final = "internal_error"
PROTOCOL_ERROR: Final = "protocol_error"
RESUME_FAILED: Final = "resume_failed"
USER_REQUIRED: Final = "user_required"
USER_MISMATCH: Final = "user_mismatch"
MESSAGE_NOT_FOUND: Final = "message_not_found"
RECORDING_FORBIDDEN: Final = "recording_forbidden"
RECORDING_FAILED: Final = "recording_failed"
RECORDING_LIMIT_REACHED: Final = "recording_limit_reached"
LANGUAGE_UNAVAILABLE: Final = "language_unavailable"
NARRATION_NOT_FOUND: Final = "narration_not_found"
LESSON_NOT_FOUND: Final = "lesson_not_found"
TOO_MANY_NARRATIONS: Final = "too_many_narrations"

#: code → one-line meaning, for every ``error`` code in protocol v1.
ERROR_CODES: Final[Mapping[str, str]] = MappingProxyType(
    {
        # bad client input; the message is dropped, the session goes on
        INVALID_JSON: "a text frame is not valid JSON",
        INVALID_MESSAGE: "a message is not a JSON object with a string `type`",
        UNKNOWN_TYPE: "`type` names no client message of this protocol version",
        INVALID_FIELD: "a field is missing, unknown, of the wrong type or out of range",
        TEXT_TOO_LONG: "a text field is longer than `max_text_chars`",
        INVALID_AUDIO: "audio is not valid base64, has an odd byte length, is empty, or has an unsupported rate",
        FRAME_TOO_LARGE: "a frame is larger than `max_frame_bytes`; it was dropped",
        RATE_LIMITED: "more than `max_messages_per_second` messages; the excess was dropped",
        AUDIO_RATE_EXCEEDED: "audio arrives faster than `max_audio_realtime_factor` times real time; the excess was dropped",
        RESPONSE_NOT_FOUND: "`response.truncate` names no recent reply of this session",
        NO_ACTIVE_RESPONSE: "`response.cancel` found no running reply (or not the named one); it may have just finished",
        INPUT_AUDIO_EMPTY: "`input_audio.commit` with no buffered audio",
        CONVERSATION_NOT_FOUND: "`session.update` named a conversation the server does not have",
        UNSUPPORTED: "the message needs a capability this server was started without (voice input)",
        SHUTTING_DOWN: "the server is shutting down and starts no new replies",
        RESUME_FAILED: "`session.resume` could not resume that session (`reason` says why); this connection's fresh session goes on",
        USER_REQUIRED: "the message needs a user (`session.update` `user_id`, or a user token) and the session has none",
        USER_MISMATCH: "`session.update` named a user other than the session's (set by its token, or earlier)",
        MESSAGE_NOT_FOUND: "`message.delivered` names no message waiting for this user",
        RECORDING_FORBIDDEN: "`session.update` asked to record and the server does not allow recording",
        RECORDING_FAILED: "writing the session's recording failed (a full disk); recording stopped, the session goes on",
        RECORDING_LIMIT_REACHED: "recordings use all the disk the server allows them; recording stopped, the session goes on",
        LANGUAGE_UNAVAILABLE: "a language was asked for that the recognizer or the installed voices cannot handle; the message names what is missing",
        NARRATION_NOT_FOUND: "`narration.pause`/`resume`/`cancel` named no narration of this session (or there is none)",
        LESSON_NOT_FOUND: "`narrate` named a lesson the server does not have (or has no lessons folder)",
        TOO_MANY_NARRATIONS: "`narrate` while `max_queued_narrations` narrations are queued or paused",
        # sent just before the server closes the connection
        SERVER_FULL: "`max_sessions` sessions are open already (close 1013)",
        IDLE_TIMEOUT: "no frame from the client for `idle_timeout` seconds (close 1000)",
        # a reply or transcription failed; the session goes on
        "llm_failed": "the LLM failed for a reason without a more specific code",
        "llm_unreachable": "the LLM server could not be reached",
        "llm_timeout": "the LLM sent no first token, or stalled between tokens, for too long",
        "llm_http_error": "the LLM server answered with an HTTP error status",
        "llm_stream_broken": "the LLM stream ended before its end marker",
        "llm_bad_response": "the LLM server sent something that is not a chat stream",
        "stt_failed": "speech-to-text failed on a clip",
        "tts_failed": "text-to-speech failed outside a reply (inside one it is a per-phrase warning)",
        STORAGE_ERROR: "the conversation store failed",
        "model_unavailable": "a model the request needs is not available",
        "engine_error": "a model or model server failed for a reason without a more specific code",
        PROTOCOL_ERROR: "a protocol rule was broken that has no more specific code",
        # our fault
        INTERNAL_ERROR: "a bug in the server; the session is closed (close 1011)",
    }
)

WARNING_REPLY_REPEATING: Final = "reply_repeating"

#: code → one-line meaning, for every ``warning`` code in protocol v1.
WARNING_CODES: Final[Mapping[str, str]] = MappingProxyType(
    {
        "tts_failed": "one phrase could not be synthesized; its text was still sent, the reply goes on",
        WARNING_REPLY_REPEATING: "the LLM's reply started looping; it was cut there and completes with what came before",
    }
)


class ResumeFailure(StrEnum):
    """Why a ``session.resume`` failed: the ``reason`` of its ``resume_failed`` error."""

    UNKNOWN_SESSION = "unknown_session"  # no such session (or forgotten long ago)
    SESSION_EXPIRED = "session_expired"  # the client did not come back within resume_ttl
    SESSION_CLOSED = "session_closed"  # the session ended (the client closed it, idle timeout, shutdown)
    INVALID_TOKEN = "invalid_token"  # the resume_token is not that session's
    USER_MISMATCH = "user_mismatch"  # the connection's user token names another user
    REPLAY_OVERFLOW = "replay_overflow"  # events after last_seq are no longer kept (buffer overflow)
    INVALID_SEQ = "invalid_seq"  # last_seq is ahead of what the session sent
    NOT_FIRST_MESSAGE = "not_first_message"  # session.resume after other messages on this connection
    RESUME_DISABLED = "resume_disabled"  # the server keeps no session for a resume (resume_ttl 0)
    WRONG_INSTANCE = "wrong_instance"  # another instance holds the session (the error names it)


RESUME_FAILURES: Final = frozenset(ResumeFailure)

# --- the handshake ---------------------------------------------------------------------------------
# Refusals happen before a WebSocket exists, as plain HTTP answers: nothing is accepted for nothing.
HTTP_NOT_FOUND: Final = 404  # a path other than /v1/voice
HTTP_UNAUTHORIZED: Final = 401  # missing or wrong bearer token
HTTP_FORBIDDEN: Final = 403  # Origin not in the allowed list
HARD_FRAME_FACTOR: Final = 4  # frames over this many times max_frame_bytes get close 1009, not an error

# --- WebSocket close codes (RFC 6455 §7.4.1) ----------------------------------------------------------
# The close reason text is for people; programs read the code and the `error` event sent just before.
CLOSE_NORMAL: Final = 1000
CLOSE_GOING_AWAY: Final = 1001
CLOSE_MESSAGE_TOO_BIG: Final = 1009
CLOSE_INTERNAL_ERROR: Final = 1011
CLOSE_TRY_AGAIN_LATER: Final = 1013

#: close code → when the server uses it.
CLOSE_CODES: Final[Mapping[int, str]] = MappingProxyType(
    {
        CLOSE_NORMAL: "idle for `idle_timeout` seconds (after an `idle_timeout` error), or the session was resumed on another connection",
        CLOSE_GOING_AWAY: "server shutdown, or the heartbeat found the client gone",
        CLOSE_MESSAGE_TOO_BIG: "a frame over HARD_FRAME_FACTOR times max_frame_bytes",
        CLOSE_INTERNAL_ERROR: "a bug ended the session",
        CLOSE_TRY_AGAIN_LATER: "max_sessions reached (after a `server_full` error)",
    }
)

# --- replies ---------------------------------------------------------------------------------------


class ReplyStatus(StrEnum):
    """How a reply ended: the ``status`` of its ``response.done``."""

    COMPLETED = "completed"
    CANCELLED = "cancelled"
    FAILED = "failed"  # the reason is then the error code


class CancelReason(StrEnum):
    """Why a reply was cancelled: the ``reason`` of a ``cancelled`` ``response.done``."""

    CLIENT_CANCELLED = "client_cancelled"  # response.cancel
    NEW_MESSAGE = "new_message"  # a newer request (typed, spoken or speak) superseded it
    TURN_DETECTED = "turn_detected"  # barge-in: the user started speaking
    CLIENT_DISCONNECTED = "client_disconnected"
    SHUTDOWN = "shutdown"
    NARRATION_PAUSED = "narration_paused"  # narration.pause (or narration.cancel) stopped a narration


STATUS_COMPLETED: Final = ReplyStatus.COMPLETED
STATUS_CANCELLED: Final = ReplyStatus.CANCELLED
STATUS_FAILED: Final = ReplyStatus.FAILED
REPLY_STATUSES: Final = frozenset(ReplyStatus)

CANCEL_CLIENT_CANCELLED: Final = CancelReason.CLIENT_CANCELLED
CANCEL_NEW_MESSAGE: Final = CancelReason.NEW_MESSAGE
CANCEL_TURN_DETECTED: Final = CancelReason.TURN_DETECTED
CANCEL_CLIENT_DISCONNECTED: Final = CancelReason.CLIENT_DISCONNECTED
CANCEL_SHUTDOWN: Final = CancelReason.SHUTDOWN
CANCEL_REASONS: Final = frozenset(CancelReason)

#: Keys every ``response.done`` carries in ``metrics`` (a value is null when its stage never happened).
REQUIRED_METRICS: Final = ("llm_first_token_ms", "first_phrase_ms", "first_audio_ms", "total_ms", "tokens")
