"""The engine seam: what a session needs from models, as protocols, and the bundle passed around.

Engines are built once at start-up (``trio_voice.startup``) and shared by every session. Each real
engine has a fake twin in ``trio_voice.testing`` with the same methods, so tests, benchmarks and the
load-test tool can run the whole server with instant or scripted engines.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Protocol

import attrs

from .voices import Voices

if TYPE_CHECKING:
    import numpy as np

    from .storage import ConversationStore


class ChatResultLike(Protocol):
    text: str
    tokens: int
    finish_reason: str | None


class LLM(Protocol):
    async def stream_chat(
        self, messages: Sequence[Mapping[str, str]], on_delta: Callable[[str], Awaitable[None]]
    ) -> ChatResultLike: ...

    async def check_ready(self) -> None: ...


class TTS(Protocol):
    sample_rate: int

    async def synthesize(self, text: str, on_audio: Callable[[bytes], Awaitable[None]]) -> None: ...


class STT(Protocol):
    """``language``: a code (``"de"``) the model should hear, ``None`` for its own default. ``multilingual``
    says whether any but English can be asked for; ``detect`` transcribes in the language it hears and
    says which (``language: "auto"``)."""

    sample_rate: int
    multilingual: bool

    async def transcribe(
        self, audio: np.ndarray, *, partial: bool = False, language: str | None = None
    ) -> str: ...

    async def detect(self, audio: np.ndarray) -> tuple[str, str]: ...


class VAD(Protocol):
    """One detector state per session: ``probability`` of speech in a 512-sample 16 kHz chunk."""

    def probability(self, chunk: np.ndarray) -> float: ...

    def reset(self) -> None: ...


class TurnModel(Protocol):
    """End of turn from the audio: P(the user's turn is complete) for 16 kHz mono float32 audio of the
    utterance so far, pause included (``trio_voice.smart_turn``). Shared by all sessions."""

    sample_rate: int

    async def predict(self, audio: np.ndarray) -> float: ...


def _one_voice(engines: Engines) -> Voices:
    return Voices.single(engines.tts)


@attrs.frozen(kw_only=True)
class Engines:
    """The shared engines. ``tts`` is the default voice's engine; ``voices`` every installed voice (by
    default just ``tts``, named as the packaged voice)."""

    llm: LLM
    tts: TTS
    store: ConversationStore
    stt: STT | None = None
    vad_factory: Callable[[], VAD] | None = None
    turn_model: TurnModel | None = None  # semantic turn detection; without it, silence alone ends turns
    voices: Voices = attrs.field(default=attrs.Factory(_one_voice, takes_self=True))
