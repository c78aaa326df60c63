"""The realtime conversation as a client sees it: items, their ids and order, rendered per dialect.

Items are user messages (typed text, or committed audio and its transcript) and assistant messages
(one per response). ``Conversation`` keeps their order, so every ``conversation.item.added`` can name
its ``previous_item_id``; it holds text only (never audio) and at most ``MAX_ITEMS`` items, dropping
the oldest: the LLM sees far fewer (``Config.history_messages``) anyway.

Items are appended only. The API lets a client insert an item mid-conversation; trio-voice's
conversation store appends, so an insertion would show the client an order the LLM never sees, and
it is refused (``unsupported_feature``) rather than faked.
"""

from __future__ import annotations

from typing import Any, Final

import attrs

from . import codes
from .frames import Frames

MAX_ITEMS: Final = 1000
ROOT: Final = "root"  # previous_item_id meaning "at the start of the conversation"

# GA content type → beta content type, where they differ.
_BETA_CONTENT: Final = {"output_text": "text", "output_audio": "audio"}


@attrs.frozen
class Content:
    """One content part: ``input_text``, ``input_audio`` (user) or ``output_text``, ``output_audio``."""

    type: str
    text: str | None = None
    transcript: str | None = None

    def render(self, dialect: str) -> dict[str, Any]:
        type_ = _BETA_CONTENT.get(self.type, self.type) if dialect == codes.BETA else self.type
        if self.type.endswith("_text"):
            return {"type": type_, "text": self.text}
        # Audio is never stored or echoed back (null): the client has it, the transcript is the record.
        return {"type": type_, "audio": None, "transcript": self.transcript}


@attrs.define
class Item:
    """A message of the conversation. Assistant items also keep what truncation needs: the words of each
    phrase with the milliseconds of audio sent for it."""

    id: str
    role: str  # "user" or "assistant"
    content: list[Content]
    status: str = "completed"  # or "in_progress", "incomplete"
    response_id: str | None = None  # assistant items: the response (trio-voice reply) that produced it
    previous_id: str | None = None  # the item before it when it was added (set by Conversation.append)
    input_seconds: float | None = None  # user audio items: how long the audio is, when known
    audio_ms: float = 0.0  # assistant audio sent, at the client's output rate
    phrase_ms: dict[int, float] = attrs.field(factory=dict)  # phrase index → ms of its audio received
    phrase_text: dict[int, str] = attrs.field(factory=dict)  # phrase index → its words
    truncated_ms: float | None = None  # conversation.item.truncate: the client played only this much

    def render(self, dialect: str) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": "message",
            "object": "realtime.item",
            "status": self.status,
            "role": self.role,
            "content": [part.render(dialect) for part in self.content],
        }

    def heard_transcript(self, audio_end_ms: float) -> str:
        """The words a listener heard in the first ``audio_end_ms`` of this item's audio, proportionally
        within the phrase being spoken then (as ``TurnRecord.heard_text`` does for ``/v1/voice``)."""
        heard: list[str] = []
        remaining = audio_end_ms
        for index in sorted(self.phrase_text):
            duration = self.phrase_ms.get(index, 0.0)
            words = self.phrase_text[index].split()
            if remaining >= duration:
                heard.extend(words)
                remaining -= duration
                continue
            if duration > 0 and remaining > 0:
                heard.extend(words[: int(len(words) * remaining / duration)])
            break
        return " ".join(heard)


class Conversation:
    """The items of one session in order, by id; bounded to the newest ``MAX_ITEMS``."""

    def __init__(self) -> None:
        self._order: list[str] = []
        self._items: dict[str, Item] = {}

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._items

    def __len__(self) -> int:
        return len(self._order)

    @property
    def last_id(self) -> str | None:
        return self._order[-1] if self._order else None

    def get(self, item_id: str) -> Item | None:
        return self._items.get(item_id)

    def append(self, item: Item) -> str | None:
        """Add ``item`` at the end; return (and set on it) its ``previous_item_id``."""
        previous = item.previous_id = self.last_id
        self._order.append(item.id)
        self._items[item.id] = item
        while len(self._order) > MAX_ITEMS:
            del self._items[self._order.pop(0)]
        return previous

    def delete(self, item_id: str) -> Item:
        item = self._items.pop(item_id)
        self._order.remove(item_id)
        return item

    def ids(self) -> list[str]:
        return list(self._order)


def added(item: Item, frames: Frames) -> list[dict[str, Any]]:
    """``conversation.item.added`` and ``conversation.item.done`` for an item complete when added."""
    rendered = item.render(frames.dialect)
    return frames.for_dialect(
        [
            frames.event("conversation.item.added", previous_item_id=item.previous_id, item=rendered),
            frames.event("conversation.item.done", previous_item_id=item.previous_id, item=rendered),
        ]
    )
