"""Long-form narration: a session's queue of texts to speak, each one's place in it, pause and resume.

A narration is a kind of turn (``TurnKind.NARRATE``), run by ``converse_task`` like every other: the
session's :class:`~trio_voice.turn_control.TurnControl` asks :class:`Narrations` for one whenever no
request waits and the user is not speaking (``TurnControl.background``). So narration never overlaps
a reply, and everything that interrupts a reply interrupts it the same way (barge-in, a new message,
``response.cancel``): the running *segment* (one reply, from a start or resume to a stop) ends
``cancelled``, and the narration keeps its place, paused, until the client sends ``narration.resume``.
The user's question is answered meanwhile, as any request is.

Rules:

- **A queue, in order.** ``narrate`` appends; the head narrates; a paused head holds the queue (the
  ones behind it wait for it to be resumed, finished or cancelled). ``narration.cancel`` drops one.
- **The place** is the first phrase not yet wholly sent (``next_index``). When the client reports with
  ``response.truncate`` how much of a segment it played, resuming starts at the phrase playing then.
- **Bounded memory** however long the text: the text is cut into phrases once (at most
  ``max_narration_chars`` of them in all), and a segment feeds them to the turn's TTS stage one at a
  time, which synthesizes at most ``tts_workers`` ahead and buffers at most ``audio_buffer`` chunks
  per phrase (``trio_voice.turn``). No audio is kept once sent.

Plain data and pure functions (no tasks, no I/O but the lesson file read, done in a worker thread).
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable
from pathlib import Path

import attrs
import trio

from .phrases import PhraseBuffer, PhraseRules
from .turn_control import PendingTurn, TurnKind

__all__ = ["LESSON_ID", "Narration", "Narrations", "read_lesson", "split_phrases"]

# A lesson id names a file in the lessons folder: no separators, no dots up front.
LESSON_ID = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


def split_phrases(text: str, rules: PhraseRules | None = None) -> tuple[str, ...]:
    """``text`` cut into speakable phrases by the reply's own rules (sentence ends, pauses, length).

    Timing rules do not apply (the whole text is here): phrases end at sentence ends and natural
    pauses, or after ``max_tokens`` words.
    """
    buffer = PhraseBuffer(rules)
    phrases: list[str] = []
    for line in text.splitlines(keepends=True):
        for word in re.findall(r"\S+\s*", line) or [line]:
            phrases += buffer.feed(word, 0.0)
    phrases += buffer.flush()
    return tuple(phrases)


def read_lesson(folder: Path, lesson_id: str, *, max_chars: int) -> str | None:
    """The text of lesson ``lesson_id`` (``folder/ID.txt``), or None when there is none (blocking).

    Raises:
        ValueError: the lesson is longer than ``max_chars`` or is not UTF-8 text.
    """
    if not LESSON_ID.match(lesson_id):
        return None
    path = folder / f"{lesson_id}.txt"
    try:
        with open(path, encoding="utf-8") as file:
            text = file.read(max_chars + 1)
    except FileNotFoundError:
        return None
    except UnicodeDecodeError:
        raise ValueError(f"lesson {lesson_id!r} is not UTF-8 text") from None
    if len(text) > max_chars:
        raise ValueError(f"lesson {lesson_id!r} is longer than {max_chars} characters")
    return text


@attrs.define(eq=False)
class Narration:
    """One queued narration and its place."""

    narration_id: str
    phrases: tuple[str, ...] = attrs.field(repr=lambda p: f"<{len(p)} phrases>")
    voice: str | None
    request_id: str | None
    next_index: int = 0  # the first phrase not wholly sent
    position_ms: float = 0.0  # audio sent of the phrases before next_index
    paused: bool = False
    resume_asked: bool = False  # narration.resume came while its paused segment was still winding down
    # The running (or last) segment: its first phrase and each phrase's audio, for a truncate-aware resume.
    segment_start: int = 0
    segment_audio_ms: list[float] = attrs.field(factory=list)
    heard_ms: Callable[[], float | None] = lambda: None

    @property
    def total(self) -> int:
        return len(self.phrases)

    @property
    def finished(self) -> bool:
        return self.next_index >= self.total

    def begin_segment(self, heard_ms: Callable[[], float | None]) -> None:
        """A segment starts at ``next_index``; ``heard_ms`` reads the client's playback report of it."""
        self.segment_start = self.next_index
        self.segment_audio_ms = []
        self.heard_ms = heard_ms

    def phrase_sent(self, audio_ms: float) -> None:
        """The segment's next phrase has all its audio sent."""
        self.segment_audio_ms.append(audio_ms)
        self.next_index += 1
        self.position_ms += audio_ms

    def rewind_to_heard(self) -> None:
        """Move the place back to the phrase the client was playing when it reported (``response.truncate``)."""
        heard = self.heard_ms()
        if heard is None:
            return
        index, played = self.segment_start, 0.0
        for duration in self.segment_audio_ms:
            if played + duration > heard:
                break
            played += duration
            index += 1
        if index < self.next_index:
            self.position_ms -= sum(self.segment_audio_ms[index - self.segment_start :])
            self.segment_audio_ms = self.segment_audio_ms[: index - self.segment_start]
            self.next_index = index


class Narrations:
    """A session's narration queue (see the module docstring). Written by the session's own tasks only."""

    def __init__(self) -> None:
        self._queue: deque[Narration] = deque()

    def __len__(self) -> int:
        return len(self._queue)

    @property
    def head(self) -> Narration | None:
        return self._queue[0] if self._queue else None

    def add(self, narration: Narration) -> int:
        """Queue ``narration``; returns how many are ahead of it."""
        self._queue.append(narration)
        return len(self._queue) - 1

    def find(self, narration_id: str | None) -> Narration | None:
        """The narration ``narration_id``, or the head when None."""
        if narration_id is None:
            return self.head
        return next((n for n in self._queue if n.narration_id == narration_id), None)

    def all(self) -> tuple[Narration, ...]:
        return tuple(self._queue)

    def remove(self, narration: Narration) -> None:
        if narration in self._queue:
            self._queue.remove(narration)

    def ready(self) -> Narration | None:
        """The narration to speak next: the head, unless it is paused or done."""
        head = self.head
        if head is None or head.paused or head.finished:
            return None
        return head

    def next_turn(self) -> PendingTurn | None:
        """``TurnControl.background``: a turn that goes on with the head narration, if it may go on."""
        narration = self.ready()
        if narration is None:
            return None
        return PendingTurn(
            TurnKind.NARRATE,
            "",
            narration.request_id,
            trio.current_time(),
            voice=narration.voice,
            narration=narration,
        )
