"""The exception tree of trio-voice, rooted at one base class.

::

    TrioVoiceError
    ├── ProtocolError                 a wire message broke the protocol
    │   ├── RemoteProtocolError       the client's fault: becomes an ``error`` event (or a close code)
    │   └── LocalProtocolError        our own misuse of the codec: a bug
    ├── EngineError                   a model or model server failed
    │   ├── LLMError                  the LLM is unreachable, stalled, or broke mid-stream
    │   ├── SynthesisError            Piper failed on a phrase
    │   ├── RecognitionError          whisper.cpp failed on a clip
    │   └── TurnModelError            the end-of-turn model failed (never sent: the turn ends on silence)
    ├── ModelPreparationError         a default model could not be found or converted
    ├── StorageError                  the conversation store failed
    └── ConfigError                   a configuration value is out of its bounds (at start-up)

Every error that reaches a client carries a stable ``code`` (snake_case, documented in
``protocol/errors.md``) and a human ``message``. Foreign exceptions (httpx, trio-websocket, the model
libraries, sqlite3, psycopg) are mapped into this tree in exactly one place each.
"""

from __future__ import annotations


class TrioVoiceError(Exception):
    """Base class of every error trio-voice raises on purpose."""

    code: str = "internal_error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else self.code


class ProtocolError(TrioVoiceError):
    """A message on the wire broke the protocol."""

    code = "protocol_error"


class RemoteProtocolError(ProtocolError, ValueError):
    """The client sent something the protocol does not allow.

    ``close_code`` is ``None`` when the session survives (the usual case: the client gets an ``error``
    event and goes on); otherwise it is the RFC 6455 close code to end the connection with.
    ``request_id`` is the client's id of the offending message, when it could be read; ``reason`` a finer
    cause for the codes that have several (``resume_failed``).
    """

    code = "invalid_message"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        close_code: int | None = None,
        request_id: str | None = None,
        reason: str | None = None,
    ) -> None:
        super().__init__(message, code=code)
        self.close_code = close_code
        self.request_id = request_id
        self.reason = reason


class LocalProtocolError(ProtocolError, RuntimeError):
    """We tried to send something the protocol does not allow: a bug in trio-voice."""

    code = "internal_error"


class EngineError(TrioVoiceError):
    """A model or model server failed."""

    code = "engine_error"


class LLMError(EngineError):
    """The LLM failed. Codes: ``llm_unreachable``, ``llm_timeout``, ``llm_http_error``,
    ``llm_stream_broken``, ``llm_bad_response``."""

    code = "llm_failed"


class SynthesisError(EngineError):
    """Text-to-speech failed on a phrase."""

    code = "tts_failed"


class RecognitionError(EngineError):
    """Speech-to-text failed on a clip."""

    code = "stt_failed"


class TurnModelError(EngineError):
    """The end-of-turn model failed on an utterance. It keeps ``engine_error`` as its code: a listener
    falls back to ending the turn on silence, so the client is never told."""


class ModelPreparationError(TrioVoiceError, RuntimeError):
    """A default model could not be located, converted or verified."""

    code = "model_unavailable"


class StorageError(TrioVoiceError):
    """The conversation store failed."""

    code = "storage_error"


class ConfigError(TrioVoiceError, ValueError):
    """A configuration value is out of its bounds, or two values contradict each other."""

    code = "config_error"
