"""The stable names of the OpenAI Realtime dialect: dialects, error types and codes, response statuses.

Every ``error.code`` a realtime client can receive from trio-voice is listed in ``ERROR_CODES`` with one
line saying what it means; ``protocol/realtime.md`` documents each (a test keeps the two in step). Codes
the hosted API also uses keep its spelling, so clients that already handle them (``response_cancel_not_active``
is routinely ignored) go on working. Code that raises or renders one of these uses the constant.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

# --- dialects --------------------------------------------------------------------------------------
GA: Final = "ga"  # the default: the Realtime API as released (openai>=2: openai.types.realtime)
BETA: Final = "beta"  # the 2024 preview, chosen by the header below (openai.types.beta.realtime)
DIALECTS: Final = frozenset({GA, BETA})
BETA_HEADER: Final = ("openai-beta", "realtime=v1")


def dialect_for(headers: Mapping[str, str] | list[tuple[str, str]]) -> str:
    """The dialect a WebSocket handshake asks for: ``BETA`` if it carries ``OpenAI-Beta: realtime=v1``."""
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    for name, value in pairs:
        if name.lower() == BETA_HEADER[0] and BETA_HEADER[1] in {v.strip() for v in value.split(",")}:
            return BETA
    return GA


#: GA event type → its beta name; ``None``: the beta dialect has no such event and it is not sent.
BETA_EVENT_NAMES: Final[Mapping[str, str | None]] = MappingProxyType(
    {
        "conversation.item.added": "conversation.item.created",
        "conversation.item.done": None,
        "response.output_audio.delta": "response.audio.delta",
        "response.output_audio.done": "response.audio.done",
        "response.output_audio_transcript.delta": "response.audio_transcript.delta",
        "response.output_audio_transcript.done": "response.audio_transcript.done",
        "response.output_text.delta": "response.text.delta",
        "response.output_text.done": "response.text.done",
    }
)

# --- error types (error.type) ----------------------------------------------------------------------
INVALID_REQUEST_ERROR: Final = "invalid_request_error"  # the client's fault; the session goes on
SERVER_ERROR: Final = "server_error"  # ours, or an engine's; the session goes on

# --- error codes (error.code) ----------------------------------------------------------------------
INVALID_JSON: Final = "invalid_json"
INVALID_EVENT: Final = "invalid_event"
MISSING_REQUIRED_PARAMETER: Final = "missing_required_parameter"
UNKNOWN_PARAMETER: Final = "unknown_parameter"
INVALID_TYPE: Final = "invalid_type"
INVALID_VALUE: Final = "invalid_value"
INTEGER_BELOW_MIN_VALUE: Final = "integer_below_min_value"
INTEGER_ABOVE_MAX_VALUE: Final = "integer_above_max_value"
DECIMAL_BELOW_MIN_VALUE: Final = "decimal_below_min_value"
DECIMAL_ABOVE_MAX_VALUE: Final = "decimal_above_max_value"
STRING_ABOVE_MAX_LENGTH: Final = "string_above_max_length"
UNSUPPORTED_FEATURE: Final = "unsupported_feature"
ITEM_NOT_FOUND: Final = "item_not_found"
DUPLICATE_ITEM_ID: Final = "duplicate_item_id"
CONVERSATION_ALREADY_HAS_ACTIVE_RESPONSE: Final = "conversation_already_has_active_response"
RESPONSE_CANCEL_NOT_ACTIVE: Final = "response_cancel_not_active"
INPUT_AUDIO_BUFFER_COMMIT_EMPTY: Final = "input_audio_buffer_commit_empty"

#: code → one-line meaning, for every realtime ``error.code`` trio-voice itself raises.
ERROR_CODES: Final[Mapping[str, str]] = MappingProxyType(
    {
        INVALID_JSON: "a text frame is not valid JSON",
        INVALID_EVENT: "a frame is not a JSON object with a string `type`, or is binary",
        MISSING_REQUIRED_PARAMETER: "a required field is missing or null",
        UNKNOWN_PARAMETER: "a field the API does not define (`param` names it)",
        INVALID_TYPE: "a field has the wrong JSON type",
        INVALID_VALUE: "a field's value is not one the API allows (an unknown event `type` included)",
        INTEGER_BELOW_MIN_VALUE: "an integer field is below its minimum",
        INTEGER_ABOVE_MAX_VALUE: "an integer field is above its maximum",
        DECIMAL_BELOW_MIN_VALUE: "a number field is below its minimum",
        DECIMAL_ABOVE_MAX_VALUE: "a number field is above its maximum",
        STRING_ABOVE_MAX_LENGTH: "a text field is longer than the server's `max_text_chars`",
        UNSUPPORTED_FEATURE: "a valid request for something trio-voice does not do (tools, images, other roles …)",
        ITEM_NOT_FOUND: "`item_id` (or `previous_item_id`) names no item of this conversation",
        DUPLICATE_ITEM_ID: "`conversation.item.create` gave an `id` an item already has",
        CONVERSATION_ALREADY_HAS_ACTIVE_RESPONSE: "`response.create` while a response is in progress",
        RESPONSE_CANCEL_NOT_ACTIVE: "`response.cancel` with no response in progress (or not the named one)",
        INPUT_AUDIO_BUFFER_COMMIT_EMPTY: "`input_audio_buffer.commit` with less than 100 ms of audio (or no speech)",
    }
)

#: trio-voice's own error codes (``trio_voice.codec.codes``) that have a realtime spelling.
NATIVE_CODES: Final[Mapping[str, str]] = MappingProxyType(
    {
        "input_audio_empty": INPUT_AUDIO_BUFFER_COMMIT_EMPTY,
        "no_active_response": RESPONSE_CANCEL_NOT_ACTIVE,
        "invalid_json": INVALID_JSON,
        "invalid_message": INVALID_EVENT,
        "text_too_long": STRING_ABOVE_MAX_LENGTH,
    }
)

#: trio-voice codes that are the server's (or an engine's) fault, rendered with type ``server_error``;
#: every other code passed on from the session core is the client's (``invalid_request_error``).
SERVER_SIDE_CODES: Final = frozenset(
    {
        "llm_failed",
        "llm_unreachable",
        "llm_timeout",
        "llm_http_error",
        "llm_stream_broken",
        "llm_bad_response",
        "stt_failed",
        "tts_failed",
        "storage_error",
        "model_unavailable",
        "engine_error",
        "internal_error",
        "shutting_down",
        "server_full",
    }
)

# --- responses -------------------------------------------------------------------------------------
#: trio-voice's cancel reason → the realtime ``status_details.reason`` of a cancelled response.
CANCEL_REASONS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "turn_detected": "turn_detected",  # barge-in: the user started speaking
        "client_cancelled": "client_cancelled",  # response.cancel
        "new_message": "client_cancelled",  # the client asked for something else
        "client_disconnected": "client_cancelled",  # nobody sees this one
    }
)
#: trio-voice reasons that end a response ``incomplete`` (the reply was cut short by a limit).
INCOMPLETE_REASONS: Final[Mapping[str, str]] = MappingProxyType({"max_output_tokens": "max_output_tokens"})
MIN_COMMIT_MS: Final = 100  # the hosted API refuses to commit less audio than this; so do we
