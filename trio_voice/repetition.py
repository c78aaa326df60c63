"""Catching a reply that has started to loop, as its text streams in (sans-I/O).

Small local models fall into loops ("La femme au pays de France, la femme au pays de France, …") and
would otherwise be spoken until ``max_tokens``: half a minute of audio. :class:`RepetitionGuard` is fed
the reply's text deltas and says, at the first word that completes a loop, that the reply should stop.

A loop is, over words compared without case or punctuation, either:

- the last ``n`` words repeated back to back: ``n >= LONG_UNIT_WORDS`` words twice in a row, or a shorter
  unit ``SHORT_UNIT_REPEATS`` times in a row ("no no no no"), or
- a sentence of at least ``SENTENCE_MIN_WORDS`` words that the reply has already said.

Both are rare in a sensible reply and immediate in a looping one; the guard errs on the side of letting a
reply finish.
"""

from __future__ import annotations

import re

# A unit of this many words said twice in a row is a loop.
LONG_UNIT_WORDS = 5
# Shorter units must come this many times in a row.
SHORT_UNIT_REPEATS = 4
# The longest unit looked for: loops of whole sentences are caught by the sentence rule too.
MAX_UNIT_WORDS = 30
# A sentence repeated word for word is a loop from this length on ("I see. I see." is speech, not a loop).
SENTENCE_MIN_WORDS = 4

_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)*")
_SENTENCE_END = re.compile(r"[.!?。！？]")


class RepetitionGuard:
    """Fed a reply's text as it streams; ``feed`` returns True once the text has started looping."""

    def __init__(self) -> None:
        self._pending = ""  # text after the last whitespace: a word that may still grow
        self._words: list[str] = []
        self._sentence: list[str] = []
        self._sentences: set[tuple[str, ...]] = set()
        self.looped = False

    def feed(self, delta: str) -> bool:
        """Add a text delta; True if the reply is looping (and from then on)."""
        if self.looped:
            return True
        text = self._pending + delta
        # Only words followed by whitespace are complete; the rest waits for the next delta.
        cut = max(text.rfind(" "), text.rfind("\n"), text.rfind("\t"))
        complete, self._pending = text[: cut + 1], text[cut + 1 :]
        for piece in complete.split():
            if self._add_piece(piece):
                self.looped = True
                return True
        return False

    def _add_piece(self, piece: str) -> bool:
        for word in _WORD.findall(piece.lower()):
            self._words.append(word)
            self._sentence.append(word)
            if self._tail_repeats():
                return True
        if _SENTENCE_END.search(piece) and self._sentence:
            sentence = tuple(self._sentence)
            self._sentence = []
            if len(sentence) >= SENTENCE_MIN_WORDS:
                if sentence in self._sentences:
                    return True
                self._sentences.add(sentence)
        return False

    def _tail_repeats(self) -> bool:
        words = self._words
        for unit in range(1, min(MAX_UNIT_WORDS, len(words) // 2) + 1):
            needed = 2 if unit >= LONG_UNIT_WORDS else SHORT_UNIT_REPEATS
            if unit * needed > len(words):
                continue
            tail = words[-unit:]
            if all(words[-unit * (k + 1) : len(words) - unit * k] == tail for k in range(1, needed)):
                return True
        return False
