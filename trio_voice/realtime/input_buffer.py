"""The realtime input audio buffer: what is buffered, where speech is, and the user items it becomes.

The session core hears the audio (VAD, transcription); this keeps the client's view of it: how many
milliseconds were appended since the last commit (the API refuses to commit less than 100 ms), the
item id announced by ``speech_started`` and committed at ``speech_stopped``, and which user audio
items still wait for their transcript. Audio is converted here too, on its way in (``formats``).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

from . import codes
from .formats import AudioFormat, InputAudio
from .frames import Frames
from .items import Content, Conversation, Item, added


class InputBuffer:
    """One session's input audio buffer, in ``fmt``; new items go to ``conversation``."""

    def __init__(
        self, fmt: AudioFormat, conversation: Conversation, frames: Frames, new_id: Callable[[str], str]
    ) -> None:
        self._converter = InputAudio(fmt)
        self._conversation = conversation
        self._frames = frames
        self._new_id = new_id
        self.buffered_ms = 0.0  # appended since the last commit, clear or end of speech
        self._speech: tuple[str, int] | None = None  # in speech: (its item id, audio_start_ms)
        self._awaiting: deque[str] = deque()  # VAD turns' items waiting for a transcript, oldest first
        self._transcript_for: dict[str, str] = {}  # request id → item id (commits, audio items)

    @property
    def format(self) -> AudioFormat:
        return self._converter.format

    @property
    def in_speech(self) -> bool:
        return self._speech is not None

    def set_format(self, fmt: AudioFormat) -> None:
        if fmt != self._converter.format:
            self._converter = InputAudio(fmt)

    def append(self, audio: bytes) -> bytes:
        """Count ``audio`` in and return it as PCM16 at the recognizer's rate.

        Raises:
            ValueError: PCM audio with an odd number of bytes (nothing is counted).
        """
        pcm16 = self._converter.convert(audio)
        self.buffered_ms += self.format.duration_ms(audio)
        return pcm16

    def clear(self) -> None:
        self.buffered_ms = 0.0
        self._speech = None

    def commit(self, request_id: str) -> Item:
        """A manual commit: the buffered audio becomes a user item, its transcript due to ``request_id``."""
        item = Item(
            self._new_id("item"), "user", [Content("input_audio")], input_seconds=self.buffered_ms / 1000
        )
        self.buffered_ms = 0.0
        self._conversation.append(item)
        self.expect_transcript(request_id, item.id)
        return item

    def expect_transcript(self, request_id: str, item_id: str) -> None:
        self._transcript_for[request_id] = item_id

    def speech_started(self, audio_start_ms: int, item_id: str | None = None) -> list[dict[str, Any]]:
        """Speech began: the item it will become is named now (by the core when it gives a name, so
        that the stored message and the item agree)."""
        if self._speech is not None:
            item_id = self._speech[0]
        elif item_id is None:
            item_id = self._new_id("item")
        self._speech = (item_id, audio_start_ms)
        return [
            self._frames.event(
                "input_audio_buffer.speech_started", audio_start_ms=audio_start_ms, item_id=item_id
            )
        ]

    def speech_stopped(self, audio_end_ms: int) -> list[dict[str, Any]]:
        """The end of a VAD turn: the speech is committed as a user item, its transcript to follow."""
        item_id, start_ms = self._speech if self._speech is not None else (self._new_id("item"), audio_end_ms)
        self._speech = None
        self.buffered_ms = 0.0
        item = Item(
            item_id, "user", [Content("input_audio")], input_seconds=max(0, audio_end_ms - start_ms) / 1000
        )
        self._conversation.append(item)
        self._awaiting.append(item.id)
        stopped = self._frames.event(
            "input_audio_buffer.speech_stopped", audio_end_ms=audio_end_ms, item_id=item_id
        )
        return [stopped, *committed(item, self._frames)]

    def _waiting_item(self, request_id: str | None) -> Item | None:
        """The item a transcript (or its failure) is for: the one its request added, else the oldest VAD
        turn waiting for one. Either way it waits no more."""
        item_id = self._transcript_for.pop(request_id, None) if request_id is not None else None
        if item_id is None and self._awaiting:
            item_id = self._awaiting.popleft()
        return None if item_id is None else self._conversation.get(item_id)

    def transcript(self, text: str, request_id: str | None, *, enabled: bool) -> list[dict[str, Any]]:
        """A final transcript. Sends nothing when transcription is off, or the item was deleted meanwhile."""
        item = self._waiting_item(request_id)
        if item is None or not enabled:
            return []
        index = next((i for i, part in enumerate(item.content) if part.type == "input_audio"), 0)
        item.content[index] = Content("input_audio", transcript=text)
        where = {"item_id": item.id, "content_index": index}
        out = []
        if text:
            # The recognizer gives the whole text at once: one delta, then completed.
            out.append(
                self._frames.event(
                    "conversation.item.input_audio_transcription.delta", **where, delta=text, logprobs=None
                )
            )
        out.append(
            self._frames.event(
                "conversation.item.input_audio_transcription.completed",
                **where,
                transcript=text,
                logprobs=None,
                usage={"type": "duration", "seconds": round(item.input_seconds or 0.0, 3)},
            )
        )
        return out

    def transcription_failed(
        self, code: str, message: str, request_id: str | None, *, enabled: bool
    ) -> list[dict[str, Any]] | None:
        """The recognizer failed on a committed item: ``input_audio_transcription.failed`` for it, or
        ``None`` when no item waits (or transcription is off) and a plain ``error`` should go instead."""
        item = self._waiting_item(request_id)
        if item is None or not enabled:
            return None
        index = next((i for i, part in enumerate(item.content) if part.type == "input_audio"), 0)
        error = {"type": codes.SERVER_ERROR, "code": code, "message": message, "param": None}
        return [
            self._frames.event(
                "conversation.item.input_audio_transcription.failed",
                item_id=item.id,
                content_index=index,
                error=error,
            )
        ]


def committed(item: Item, frames: Frames) -> list[dict[str, Any]]:
    """``input_audio_buffer.committed`` and the user item it added."""
    event = frames.event("input_audio_buffer.committed", previous_item_id=item.previous_id, item_id=item.id)
    return [event, *added(item, frames)]
