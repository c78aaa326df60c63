"""``session.update``, parsed from either dialect into one frozen class, and the values it carries.

``SessionUpdate.from_ga`` / ``from_beta`` read the two shapes of the same request (GA nests the audio
settings under ``audio.input`` / ``audio.output``; the beta dialect has them at the top level).
``TurnDetection`` and ``Transcription`` are the nested settings, each able to render itself back.

Fields the API defines but trio-voice does not implement are accepted only with the value that asks
for nothing (``tools: []``, ``tracing: null``, ``speed: 1.0`` …) and refused otherwise with
``unsupported_feature``; fields the API does not define at all are refused with ``unknown_parameter``.
"""

from __future__ import annotations

from typing import Any, ClassVar, Final

import attrs

from trio_voice.codec import SessionUpdate as NativeSessionUpdate
from trio_voice.codec import TurnDetection as NativeTurnDetection
from trio_voice.codec.client import MAX_PREFIX_MS, MAX_SILENCE_MS

from .formats import FROM_BETA, PCM, RATES, AudioFormat
from .reader import Reader

AUDIO: Final = ("audio",)
TEXT: Final = ("text",)
# A voice name clients know; trio-voice speaks with its own Piper voice whatever the name.
DEFAULT_VOICE: Final = "alloy"


@attrs.frozen
class TurnDetection:
    """``server_vad`` settings, or ``type="none"`` for ``turn_detection: null`` (the client commits turns).

    In an update a ``None`` field keeps its current value.
    """

    type: str = "server_vad"
    threshold: float | None = None
    prefix_padding_ms: int | None = None
    silence_duration_ms: int | None = None
    create_response: bool | None = None
    interrupt_response: bool | None = None

    @classmethod
    def read(cls, r: Reader, *, beta: bool) -> TurnDetection:
        r.reject_unknown(
            (
                "type",
                "threshold",
                "prefix_padding_ms",
                "silence_duration_ms",
                "create_response",
                "interrupt_response",
                "idle_timeout_ms",
                "eagerness",
            )
        )
        type_ = r.read_str("type", required=not beta, choices=("server_vad", "semantic_vad")) or "server_vad"
        if type_ == "semantic_vad":
            raise r.unsupported("type", "semantic_vad (turn detection is Silero VAD)")
        r.only("idle_timeout_ms", None)
        r.only("eagerness", None)
        return cls(
            type=type_,
            threshold=r.read_number("threshold", minimum=0.0, maximum=1.0),
            prefix_padding_ms=r.read_int("prefix_padding_ms", minimum=0, maximum=MAX_PREFIX_MS),
            silence_duration_ms=r.read_int("silence_duration_ms", minimum=0, maximum=MAX_SILENCE_MS),
            create_response=r.read_bool("create_response"),
            interrupt_response=r.read_bool("interrupt_response"),
        )

    def render(self, *, beta: bool) -> dict[str, Any] | None:
        if self.type == "none":
            return None
        out: dict[str, Any] = {
            "type": self.type,
            "threshold": self.threshold,
            "prefix_padding_ms": self.prefix_padding_ms,
            "silence_duration_ms": self.silence_duration_ms,
            "create_response": self.create_response,
            "interrupt_response": self.interrupt_response,
        }
        if not beta:
            out["idle_timeout_ms"] = None
        return out


MANUAL_TURNS: Final = TurnDetection(type="none")


@attrs.frozen
class Transcription:
    """Input transcription settings; ``enabled=False`` for ``transcription: null`` (no transcript events).

    trio-voice always transcribes with its own recognizer (the LLM needs the words); the ``model`` named
    here is echoed, not loaded. Transcript events are sent only while transcription is enabled.
    """

    enabled: bool = True
    model: str | None = None
    language: str | None = None
    prompt: str | None = None

    @classmethod
    def read(cls, r: Reader, *, max_text_chars: int) -> Transcription:
        r.reject_unknown(("model", "language", "prompt", "delay", "keywords", "languages"))
        for name in ("delay", "keywords", "languages"):
            r.only(name, None)
        return cls(
            model=r.read_str("model", max_chars=128),
            language=r.read_str("language", max_chars=16),
            prompt=r.read_str("prompt", max_chars=max_text_chars),
        )

    def render(self) -> dict[str, Any] | None:
        if not self.enabled:
            return None
        return {"model": self.model, "language": self.language, "prompt": self.prompt}


TRANSCRIPTION_OFF: Final = Transcription(enabled=False)


def read_modalities(r: Reader, name: str) -> tuple[str, ...] | None:
    """``["audio"]`` (beta: ``["audio", "text"]``) → ``AUDIO``; ``["text"]`` → ``TEXT``.

    Audio output always comes with its transcript, so any list naming ``audio`` means audio.
    """
    values = r.read_list(name)
    if values is None:
        return None
    if (
        not values
        or any(value not in ("audio", "text") for value in values)
        or len(set(values)) != len(values)
    ):
        raise r.invalid_value(name, values, (["audio"], ["text"], ["audio", "text"]))
    return AUDIO if "audio" in values else TEXT


def render_modalities(modalities: tuple[str, ...], *, beta: bool) -> list[str]:
    # The beta dialect always paired audio with its transcript text.
    return ["audio", "text"] if beta and modalities == AUDIO else list(modalities)


def read_format(r: Reader, name: str) -> AudioFormat | None:
    """A GA ``format`` object: ``{"type": "audio/pcm", "rate": 24000}``, ``{"type": "audio/pcmu"}`` …"""
    sub = r.read_object(name)
    if sub is None:
        return None
    sub.reject_unknown(("type", "rate"))
    fmt = AudioFormat(sub.read_str("type", required=True, choices=tuple(RATES)))  # type: ignore[arg-type]
    rate = sub.read_int("rate")
    if rate is not None and (fmt.type != PCM or rate != fmt.rate):
        raise sub.invalid_value("rate", rate, (24000,) if fmt.type == PCM else ())
    return fmt


def read_beta_format(r: Reader, name: str) -> AudioFormat | None:
    value = r.read_str(name, choices=tuple(FROM_BETA))
    return None if value is None else AudioFormat(FROM_BETA[value])


def read_voice(r: Reader, name: str) -> str | None:
    if isinstance(r.obj.get(name), dict):
        raise r.unsupported(name, "a custom voice")
    return r.read_str(name, non_blank=True, max_chars=64)


@attrs.frozen
class SessionUpdate:
    """``session.update``; ``None`` in a field means "leave unchanged"."""

    type: ClassVar[str] = "session.update"
    event_id: str | None = None
    model: str | None = None
    instructions: str | None = None
    output_modalities: tuple[str, ...] | None = None
    input_format: AudioFormat | None = None
    output_format: AudioFormat | None = None
    voice: str | None = None
    turn_detection: TurnDetection | None = None  # MANUAL_TURNS for null
    transcription: Transcription | None = None  # TRANSCRIPTION_OFF for null

    @classmethod
    def from_ga(cls, r: Reader, *, max_text_chars: int) -> SessionUpdate:
        r.reject_unknown(("session",))
        s = r.read_object("session", required=True)
        assert s is not None
        s.reject_unknown(
            (
                "type",
                "model",
                "instructions",
                "output_modalities",
                "audio",
                "tools",
                "tool_choice",
                "max_output_tokens",
                "tracing",
                "truncation",
                "prompt",
                "include",
                "parallel_tool_calls",
                "reasoning",
            )
        )
        session_type = s.read_str("type", required=True, choices=("realtime", "transcription"))
        if session_type == "transcription":
            raise s.unsupported("type", "a transcription session")
        _only_noops(s, max_tokens="max_output_tokens")
        s.only("truncation", "auto")
        s.only("include", None, [])
        s.only("reasoning", None)
        update = cls(
            event_id=r.event_id,
            model=s.read_str("model", non_blank=True, max_chars=128),
            instructions=s.read_str("instructions", max_chars=max_text_chars),
            output_modalities=read_modalities(s, "output_modalities"),
        )
        audio = s.read_object("audio")
        if audio is None:
            return update
        audio.reject_unknown(("input", "output"))
        fields: dict[str, Any] = {}
        inp = audio.read_object("input")
        if inp is not None:
            inp.reject_unknown(("format", "transcription", "noise_reduction", "turn_detection"))
            inp.only("noise_reduction", None)
            fields["input_format"] = read_format(inp, "format")
            fields["turn_detection"] = _read_turn_detection(inp, beta=False)
            fields["transcription"] = _read_transcription(inp, "transcription", max_text_chars)
        out = audio.read_object("output")
        if out is not None:
            out.reject_unknown(("format", "voice", "speed"))
            out.only("speed", 1.0, 1)
            fields["output_format"] = read_format(out, "format")
            fields["voice"] = read_voice(out, "voice")
        return attrs.evolve(update, **fields)

    @classmethod
    def from_beta(cls, r: Reader, *, max_text_chars: int) -> SessionUpdate:
        r.reject_unknown(("session",))
        s = r.read_object("session", required=True)
        assert s is not None
        s.reject_unknown(
            (
                "model",
                "modalities",
                "instructions",
                "voice",
                "input_audio_format",
                "output_audio_format",
                "input_audio_transcription",
                "turn_detection",
                "input_audio_noise_reduction",
                "tools",
                "tool_choice",
                "temperature",
                "max_response_output_tokens",
                "speed",
                "tracing",
            )
        )
        _only_noops(s, max_tokens="max_response_output_tokens")
        s.only("input_audio_noise_reduction", None)
        s.only("speed", 1.0, 1)
        s.read_number("temperature", minimum=0.0, maximum=2.0)  # accepted; the server's LLM settings apply
        return cls(
            event_id=r.event_id,
            model=s.read_str("model", non_blank=True, max_chars=128),
            instructions=s.read_str("instructions", max_chars=max_text_chars),
            output_modalities=read_modalities(s, "modalities"),
            input_format=read_beta_format(s, "input_audio_format"),
            output_format=read_beta_format(s, "output_audio_format"),
            voice=read_voice(s, "voice"),
            turn_detection=_read_turn_detection(s, beta=True),
            transcription=_read_transcription(s, "input_audio_transcription", max_text_chars),
        )

    def to_native(self) -> NativeSessionUpdate:
        """The same request for the session core, as a ``trio_voice.codec.SessionUpdate``.

        Input audio reaches the core already at the recognizer's rate (see ``formats.InputAudio``), so
        the native ``input_sample_rate`` is left unchanged; ``create_response`` and ``interrupt_response``
        have no native counterpart yet (see ``protocol/realtime.md``).
        """
        detection = None
        if self.turn_detection is not None:
            td = self.turn_detection
            detection = NativeTurnDetection(
                type=td.type,
                threshold=td.threshold,
                silence_ms=td.silence_duration_ms,
                prefix_ms=td.prefix_padding_ms,
            )
        return NativeSessionUpdate(
            instructions=self.instructions,
            turn_detection=detection,
            output_audio=None if self.output_modalities is None else self.output_modalities == AUDIO,
            request_id=self.event_id,
        )


def _only_noops(s: Reader, *, max_tokens: str) -> None:
    s.only("tools", [])
    s.only("tool_choice", "auto", "none")
    s.only(max_tokens, "inf")
    s.only("tracing", None)
    s.only("prompt", None)
    s.read_bool("parallel_tool_calls")  # meaningless without tools; accepted


def _read_turn_detection(r: Reader, *, beta: bool) -> TurnDetection | None:
    if r.is_null("turn_detection"):
        return MANUAL_TURNS
    sub = r.read_object("turn_detection")
    return None if sub is None else TurnDetection.read(sub, beta=beta)


def _read_transcription(r: Reader, name: str, max_text_chars: int) -> Transcription | None:
    if r.is_null(name):
        return TRANSCRIPTION_OFF
    sub = r.read_object(name)
    return None if sub is None else Transcription.read(sub, max_text_chars=max_text_chars)
