"""The stable names of the wire protocol: error and warning codes, close codes, reply statuses and reasons.

Every code a client can receive is listed here with one line saying what it means; ``protocol/errors.md``
documents each of them (a test keeps the two in step). Code that raises or sends one of these should
use the constant's value, never a fresh string literal.
"""

from __future__ import annotations

from collections.abc import Mapping
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
        "rate_limited": "more than `max_messages_per_second` messages; the excess was dropped",
        "audio_rate_exceeded": "audio arrives faster than `max_audio_realtime_factor` times real time; the excess was dropped",
        "response_not_found": "`response.truncate` names no recent reply of this session",
        "no_active_response": "`response.cancel` found no running reply (or not the named one); it may have just finished",
        "input_audio_empty": "`input_audio.commit` with no buffered audio",
        "conversation_not_found": "`session.update` named a conversation the server does not have",
        "unsupported": "the message needs a capability this server was started without (voice input)",
        "shutting_down": "the server is shutting down and starts no new replies",
        # sent just before the server closes the connection
        "server_full": "`max_sessions` sessions are open already (close 1013)",
        "idle_timeout": "no frame from the client for `idle_timeout` seconds (close 1000)",
        # a reply or transcription failed; the session goes on
        "llm_failed": "the LLM failed for a reason without a more specific code",
        "llm_unreachable": "the LLM server could not be reached",
        "llm_timeout": "the LLM sent no first token, or stalled between tokens, for too long",
        "llm_http_error": "the LLM server answered with an HTTP error status",
        "llm_stream_broken": "the LLM stream ended before its end marker",
        "llm_bad_response": "the LLM server sent something that is not a chat stream",
        "stt_failed": "speech-to-text failed on a clip",
        "tts_failed": "text-to-speech failed outside a reply (inside one it is a per-phrase warning)",
        "storage_error": "the conversation store failed",
        "model_unavailable": "a model the request needs is not available",
        "engine_error": "a model or model server failed for a reason without a more specific code",
        "protocol_error": "a protocol rule was broken that has no more specific code",
        # our fault
        "internal_error": "a bug in the server; the session is closed (close 1011)",
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
        CLOSE_NORMAL: "idle for `idle_timeout` seconds (after an `idle_timeout` error)",
        CLOSE_GOING_AWAY: "server shutdown, or the heartbeat found the client gone",
        CLOSE_MESSAGE_TOO_BIG: "a frame over HARD_FRAME_FACTOR times max_frame_bytes",
        CLOSE_INTERNAL_ERROR: "a bug ended the session",
        CLOSE_TRY_AGAIN_LATER: "max_sessions reached (after a `server_full` error)",
    }
)

# --- replies ---------------------------------------------------------------------------------------
STATUS_COMPLETED: Final = "completed"
STATUS_CANCELLED: Final = "cancelled"
STATUS_FAILED: Final = "failed"
REPLY_STATUSES: Final = frozenset({STATUS_COMPLETED, STATUS_CANCELLED, STATUS_FAILED})

CANCEL_CLIENT_CANCELLED: Final = "client_cancelled"  # response.cancel
CANCEL_NEW_MESSAGE: Final = "new_message"  # message.create or speak while a reply ran
CANCEL_TURN_DETECTED: Final = "turn_detected"  # barge-in: the user started speaking
CANCEL_CLIENT_DISCONNECTED: Final = "client_disconnected"
CANCEL_SHUTDOWN: Final = "shutdown"
CANCEL_REASONS: Final = frozenset(
    {
        CANCEL_CLIENT_CANCELLED,
        CANCEL_NEW_MESSAGE,
        CANCEL_TURN_DETECTED,
        CANCEL_CLIENT_DISCONNECTED,
        CANCEL_SHUTDOWN,
    }
)

#: Keys every ``response.done`` carries in ``metrics`` (a value is null when its stage never happened).
REQUIRED_METRICS: Final = ("llm_first_token_ms", "first_phrase_ms", "first_audio_ms", "total_ms", "tokens")
