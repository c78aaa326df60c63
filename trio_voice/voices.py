"""The installed voices: each Piper voice's name, language and rate, and the TTS engine that speaks it.

A server has one :class:`Voices` book, built at start-up (``trio_voice.startup``): the packaged
``en_US-joe-medium`` plus every ``--tts-model`` voice. Sessions name a voice (``session.update {voice}``,
``speak {voice}``, ``/v1/audio/speech``'s ``voice``); a name the book does not hold is the client's
mistake (``invalid_field``), refused before anything is synthesized. ``GET /v1/voices`` lists them.

A voice's name is its model file's name without ``.onnx`` (Piper's own naming:
``LANG_REGION-NAME-QUALITY``); its language and rate come from the ``.onnx.json`` config beside it.
Languages are matched on their primary subtag: a session in ``de`` is spoken by a ``de_DE`` voice.

Sharing: every voice's engine goes through one ``CapacityLimiter`` (FIFO), so several voices together
use no more model instances at once than one would, and sessions are served in arrival order whatever
voice they chose (``Synthesizer.load(limiter=...)``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import attrs

from .errors import ModelPreparationError

# A voice's engine has the ``trio_voice.engines.TTS`` protocol; typed loosely here because engines
# imports this module (the bundle of engines holds the book of voices).
TTS = Any

__all__ = ["DEFAULT_VOICE", "Voice", "VoiceInfo", "Voices", "language_of", "read_voice_info"]

# The packaged Piper voice: always installed, the default unless --default-voice names another.
DEFAULT_VOICE = "en_US-joe-medium"
DEFAULT_LANGUAGE = "en_US"


def language_of(code: str) -> str:
    """The primary language subtag of a code, lowercased: ``en_US`` → ``en``, ``pt-BR`` → ``pt``."""
    return code.replace("-", "_").split("_", 1)[0].lower()


@attrs.frozen
class VoiceInfo:
    """What a Piper voice's files say about it."""

    name: str
    language: str  # as the voice config has it, e.g. "en_US"
    sample_rate: int
    model_path: Path | None = None
    config_path: Path | None = None


def read_voice_info(model_path: Path, config_path: Path | None = None) -> VoiceInfo:
    """Name, language and rate of the Piper voice at ``model_path`` (config: ``model_path + ".json"``).

    Raises:
        ModelPreparationError: the config is missing, not JSON, or has no sample rate.
    """
    model_path = Path(model_path)
    config_path = Path(config_path) if config_path is not None else Path(f"{model_path}.json")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
        rate = int(config["audio"]["sample_rate"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelPreparationError(f"cannot read the Piper voice config {config_path}: {exc}") from None
    language = (config.get("language") or {}).get("code") or (config.get("espeak") or {}).get("voice")
    name = model_path.name.removesuffix(".onnx")
    return VoiceInfo(name, str(language or "und"), rate, model_path, config_path)


@attrs.frozen
class Voice:
    """An installed voice and the engine that speaks it."""

    name: str
    language: str
    sample_rate: int
    tts: TTS = attrs.field(repr=False)

    def describe(self) -> dict[str, Any]:
        """One entry of ``GET /v1/voices``."""
        return {"name": self.name, "language": self.language, "sample_rate": self.sample_rate}


class Voices:
    """The server's voices by name, one of them the default.

    Raises ``ValueError`` on construction if ``voices`` is empty, names repeat, or ``default`` is not
    among them (a start-up mistake, reported by ``startup`` as a ``ConfigError``).
    """

    def __init__(self, voices: Iterable[Voice], *, default: str | None = None) -> None:
        self._voices: dict[str, Voice] = {}
        for voice in voices:
            if voice.name in self._voices:
                raise ValueError(f"two voices are named {voice.name!r}")
            self._voices[voice.name] = voice
        if not self._voices:
            raise ValueError("a server needs at least one voice")
        default = default if default is not None else next(iter(self._voices))
        if default not in self._voices:
            raise ValueError(f"the default voice {default!r} is not installed ({', '.join(self._voices)})")
        self.default: Voice = self._voices[default]

    @classmethod
    def single(cls, tts: TTS, name: str = DEFAULT_VOICE, language: str = DEFAULT_LANGUAGE) -> Voices:
        """A book of one voice (fake engines, tools)."""
        return cls([Voice(name, language, tts.sample_rate, tts)])

    def __contains__(self, name: object) -> bool:
        return name in self._voices

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._voices.values())

    def __len__(self) -> int:
        return len(self._voices)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._voices)

    def get(self, name: str | None) -> Voice:
        """The voice ``name`` (``None``: the default). Raises ``KeyError`` for a name not installed."""
        return self.default if name is None else self._voices[name]

    def for_language(self, code: str) -> Voice | None:
        """The first installed voice speaking ``code``'s language (the default voice first), or None."""
        wanted = language_of(code)
        for voice in (self.default, *self._voices.values()):
            if language_of(voice.language) == wanted:
                return voice
        return None

    @property
    def languages(self) -> tuple[str, ...]:
        """The primary subtags of the installed voices' languages, without repeats."""
        return tuple(dict.fromkeys(language_of(voice.language) for voice in self._voices.values()))

    def describe(self) -> dict[str, Any]:
        """The body of ``GET /v1/voices``."""
        return {"default": self.default.name, "voices": [voice.describe() for voice in self._voices.values()]}
