"""Fake engines with the real engines' methods: instant or scripted, for tests, benchmarks and load tests.

They simulate latency with ``trio.sleep`` (never threads), so they are exact under ``autojump_clock``.
They are never what a user gets: ``trio-voice serve`` always runs the real models unless told
``--fake-engines`` explicitly (used by the capacity benchmark).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import attrs
import numpy as np
import trio

from .errors import LLMError, StorageError, SynthesisError, TurnModelError
from .storage import OfflineMessage, StoredMessage


@attrs.frozen
class FakeChatResult:
    text: str
    tokens: int
    finish_reason: str | None = "stop"


def _default_reply(messages: Sequence[Mapping[str, str]]) -> str:
    last = next((m["content"] for m in reversed(messages) if m.get("role") == "user"), "")
    return f"You said: {last}. That is a fine question, and here is a short answer. Goodbye for now."


def split_tokens(text: str) -> list[str]:
    """Split text into LLM-like tokens: words with their leading space, punctuation apart."""
    tokens: list[str] = []
    for i, word in enumerate(text.split(" ")):
        lead = " " if i else ""
        if word and word[-1] in ".,!?;:" and len(word) > 1:
            tokens += [lead + word[:-1], word[-1]]
        else:
            tokens.append(lead + word)
    return [t for t in tokens if t]


@attrs.define
class FakeLLM:
    """A scripted LLM: ``reply(messages) -> str`` is streamed token by token.

    ``first_token_delay`` and ``token_delay`` are seconds of ``trio.sleep``; ``fail_after_tokens`` makes
    the stream break like a dying server; ``unreachable`` fails at once like a refused connection.
    """

    reply: Callable[[Sequence[Mapping[str, str]]], str] = _default_reply
    first_token_delay: float = 0.0
    token_delay: float = 0.0
    fail_after_tokens: int | None = None
    unreachable: bool = False
    calls: list[list[dict[str, str]]] = attrs.field(factory=list)
    active: int = 0  # streams running now: tests check that interruption leaves none

    async def stream_chat(
        self, messages: Sequence[Mapping[str, str]], on_delta: Callable[[str], Awaitable[None]]
    ) -> FakeChatResult:
        self.calls.append([dict(m) for m in messages])
        self.active += 1
        try:
            return await self._stream(messages, on_delta)
        finally:
            self.active -= 1

    async def _stream(
        self, messages: Sequence[Mapping[str, str]], on_delta: Callable[[str], Awaitable[None]]
    ) -> FakeChatResult:
        if self.unreachable:
            await trio.lowlevel.checkpoint()
            raise LLMError("connection refused (fake)", code="llm_unreachable")
        text = self.reply(messages)
        tokens = split_tokens(text)
        await trio.sleep(self.first_token_delay)
        for n, token in enumerate(tokens):
            if self.fail_after_tokens is not None and n >= self.fail_after_tokens:
                raise LLMError("stream broken (fake)", code="llm_stream_broken")
            if n:
                await trio.sleep(self.token_delay)
            await on_delta(token)
        return FakeChatResult(text, len(tokens))

    async def check_ready(self) -> None:
        await trio.lowlevel.checkpoint()
        if self.unreachable:
            raise LLMError("connection refused (fake)", code="llm_unreachable")


VOICE_HZ = 440.0  # the fake voice's tone; the fake user's is 220 Hz


@attrs.define
class FakeTTS:
    """A scripted synthesizer: ``ms_per_char`` of audio per character, after ``delay(text)`` seconds.

    The audio is a quiet tone, so it decodes and has a measurable length; at 440 Hz, so that the echo
    guard can tell it from the 220 Hz tone that stands in for the user's voice (:func:`utterance`).
    ``fail_on`` makes phrases containing that substring fail like a broken voice.
    """

    sample_rate: int = 22050
    ms_per_char: float = 60.0
    delay: Callable[[str], float] = lambda text: 0.0
    fail_on: str | None = None
    started: list[str] = attrs.field(factory=list)
    active: int = 0  # syntheses running now: tests check that interruption leaves none

    async def synthesize(self, text: str, on_audio: Callable[[bytes], Awaitable[None]]) -> None:
        self.started.append(text)
        self.active += 1
        try:
            await self._synthesize(text, on_audio)
        finally:
            self.active -= 1

    async def _synthesize(self, text: str, on_audio: Callable[[bytes], Awaitable[None]]) -> None:
        await trio.sleep(self.delay(text))
        if self.fail_on is not None and self.fail_on in text:
            raise SynthesisError(f"cannot synthesize {text!r} (fake)")
        await on_audio(tone(len(text) * self.ms_per_char / 1000.0, self.sample_rate, VOICE_HZ))

    def synthesize_sync(self, text: str) -> bytes:
        return tone(len(text) * self.ms_per_char / 1000.0, self.sample_rate, VOICE_HZ)


def tone(seconds: float, sample_rate: int, frequency: float = 220.0, amplitude: float = 0.2) -> bytes:
    """PCM16LE mono of a sine tone."""
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    return (np.sin(2 * np.pi * frequency * t) * amplitude * 32767).astype("<i2").tobytes()


@attrs.define
class FakeSTT:
    """A scripted recognizer: ``text(audio)`` after ``seconds_per_audio_second`` × the clip length of sleep.

    The default transcript says how long the clip was, so tests can tell partials from finals; silent
    clips come back as "" like whisper's blank output. ``loops`` makes every quick decode (``partial``)
    come back "" like a looping short-window decode of whisper's, which only a full decode gets right.
    """

    sample_rate: int = 16000
    seconds_per_audio_second: float = 0.0
    text: Callable[[np.ndarray], str] = lambda audio: f"I spoke for {len(audio) / 16000:.1f} seconds"
    calls: list[float] = attrs.field(factory=list)  # clip lengths in seconds
    active: int = 0
    multilingual: bool = False  # True: like a multilingual whisper, any language may be asked for
    detected: str = "en"  # what ``detect`` hears
    languages: list[str | None] = attrs.field(factory=list)  # the language of each call, in order
    loops: bool = False

    async def detect(self, audio: np.ndarray) -> tuple[str, str]:
        """``(transcript, language)``: the transcript, and ``detected``."""
        return await self.transcribe(audio, language=self.detected), self.detected

    async def transcribe(
        self, audio: np.ndarray, *, partial: bool = False, language: str | None = None
    ) -> str:
        seconds = len(audio) / self.sample_rate
        self.calls.append(seconds)
        self.languages.append(language)
        self.active += 1
        try:
            await trio.sleep(seconds * self.seconds_per_audio_second)
            if audio.size == 0 or float(np.sqrt(np.mean(np.square(audio)))) < 0.01:
                return ""
            if partial and self.loops:
                return ""
            return self.text(audio)
        finally:
            self.active -= 1


class FakeVAD:
    """An energy detector with Silero's interface: loud chunks are speech. Exact on tones and silence."""

    blocking = False  # cheap enough to run inline, so no thread disturbs autojump_clock

    def __init__(self, full_scale_rms: float = 0.02) -> None:
        self.full_scale_rms = full_scale_rms

    def probability(self, chunk: np.ndarray) -> float:
        rms = float(np.sqrt(np.mean(np.square(chunk))))
        return min(1.0, rms / self.full_scale_rms)

    def reset(self) -> None:
        pass


@attrs.define
class FakeTurnModel:
    """A scripted end-of-turn model: answers ``script`` in call order (then ``default``) after ``delay``
    seconds of ``trio.sleep``; ``fail`` makes every call raise ``TurnModelError`` like a broken model."""

    script: list[float] = attrs.field(factory=list)
    default: float = 1.0
    delay: float = 0.0
    fail: bool = False
    sample_rate: int = 16000
    calls: list[float] = attrs.field(factory=list)  # clip lengths in seconds
    active: int = 0  # calls running now: tests check that a cancelled turn leaves none

    async def predict(self, audio: np.ndarray) -> float:
        self.calls.append(len(audio) / self.sample_rate)
        self.active += 1
        try:
            await trio.sleep(self.delay)
            return self._answer()
        finally:
            self.active -= 1

    def predict_sync(self, audio: np.ndarray) -> float:
        self.calls.append(len(audio) / self.sample_rate)
        return self._answer()

    def _answer(self) -> float:
        if self.fail:
            raise TurnModelError("the turn model failed (fake)")
        return self.script.pop(0) if self.script else self.default


def fake_voice_input() -> tuple[FakeSTT, Callable[[], FakeVAD]]:
    """The voice-input engines of a fake server: an instant recognizer and energy VADs."""
    return FakeSTT(), FakeVAD


def utterance(
    speech_s: float,
    *,
    lead_silence_s: float = 0.2,
    tail_silence_s: float = 0.8,
    rate: int = 16000,
    amplitude: float = 0.3,
) -> bytes:
    """PCM16LE of silence, a tone standing in for speech, and silence: what FakeVAD hears as one turn.

    At the default amplitude FakeVAD is certain it is speech; near 0.02 it is unsure (noise-like)."""
    silence = lambda s: bytes(2 * int(s * rate))  # noqa: E731
    return silence(lead_silence_s) + tone(speech_s, rate, amplitude=amplitude) + silence(tail_silence_s)


@attrs.define
class FakeStore:
    """An in-memory conversation store with ``ConversationStore``'s methods, for stage tests.

    ``delay`` seconds of ``trio.sleep`` per call (a slow disk); ``gate``, when set, holds every call until
    the event is set (a stuck disk, released by the test); ``failing`` makes every call raise
    ``StorageError`` like a store whose disk or server is gone (set it back to recover).
    """

    delay: float = 0.0
    failing: bool = False
    gate: trio.Event | None = None
    conversations: dict[str, list[StoredMessage]] = attrs.field(factory=dict)
    turns: list[dict[str, Any]] = attrs.field(factory=list)
    offline: list[OfflineMessage] = attrs.field(factory=list)

    async def _call(self) -> None:
        await trio.sleep(self.delay)
        if self.gate is not None:
            await self.gate.wait()
        if self.failing:
            raise StorageError("the store is failing (fake)")

    async def create_conversation(self) -> str:
        await self._call()
        conversation_id = f"conv_{len(self.conversations) + 1}"
        self.conversations[conversation_id] = []
        return conversation_id

    async def conversation_exists(self, conversation_id: str) -> bool:
        await self._call()
        return conversation_id in self.conversations

    async def add_message(
        self,
        conversation_id: str,
        role: str,
        text: str,
        *,
        interrupted: bool = False,
        response_id: str | None = None,
    ) -> None:
        await self._call()
        message = StoredMessage(role, text, interrupted, response_id, float(len(self.turns)))
        self.conversations.setdefault(conversation_id, []).append(message)

    async def history(self, conversation_id: str, *, limit: int) -> list[StoredMessage]:
        await self._call()
        return self.conversations.get(conversation_id, [])[-limit:] if limit > 0 else []

    async def message_count(self, conversation_id: str) -> int:
        await self._call()
        return len(self.conversations.get(conversation_id, []))

    async def update_message_text(self, response_id: str, text: str, *, interrupted: bool) -> bool:
        await self._call()
        for messages in self.conversations.values():
            for i, message in enumerate(messages):
                if message.response_id == response_id:
                    messages[i] = attrs.evolve(message, text=text, interrupted=interrupted)
                    return True
        return False

    async def record_turn(
        self,
        conversation_id: str,
        response_id: str,
        *,
        status: str,
        reason: str | None,
        metrics: Mapping[str, float | int | None],
    ) -> None:
        await self._call()
        self.turns.append(
            {
                "conversation_id": conversation_id,
                "response_id": response_id,
                "status": status,
                "reason": reason,
            }
        )

    async def recent_turns(self, limit: int) -> list[dict[str, Any]]:
        await self._call()
        return self.turns[-limit:]

    async def queue_offline(self, message: OfflineMessage, *, max_queued: int) -> bool:
        await self._call()
        waiting = await self.pending_offline(message.user_id, now=message.created_at)
        if len(waiting) >= max_queued:
            return False
        self.offline.append(message)
        return True

    async def pending_offline(self, user_id: str, *, now: float) -> list[OfflineMessage]:
        await self._call()
        return [
            m for m in self.offline if m.user_id == user_id and m.status == "queued" and m.expires_at > now
        ]

    async def mark_offline_delivered(self, user_id: str, message_id: str, *, now: float) -> bool:
        await self._call()
        for i, m in enumerate(self.offline):
            if m.message_id == message_id and m.user_id == user_id and m.status == "queued":
                self.offline[i] = attrs.evolve(m, status="delivered", delivered_at=now)
                return True
        return False

    async def offline_messages(self, user_id: str, *, limit: int) -> list[OfflineMessage]:
        await self._call()
        return [m for m in reversed(self.offline) if m.user_id == user_id][:limit]

    async def drop_expired_offline(self, *, now: float) -> int:
        await self._call()
        expired = [m for m in self.offline if m.expires_at <= now]
        self.offline = [m for m in self.offline if m.expires_at > now]
        return sum(1 for m in expired if m.status == "queued")
