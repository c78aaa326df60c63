"""Phrase buffering: cutting streamed LLM tokens into speakable phrases for TTS, as early as sounds natural.

``PhraseBuffer`` is sans-I/O: tokens and timestamps in, cleaned phrases out; it never reads a clock and
uses nothing from trio. ``phrase_task`` is the turn stage that drives it from a token channel and the
trio clock.

Rules, in the order they are tried on the pending text (the first one that applies cuts):

- A newline ends a phrase (paragraphs, list items, table rows, headings).
- A sentence end (``. ! ? …`` and the CJK full stop, exclamation and question marks, with any closing
  quotes or brackets) ends a phrase, but only once the next non-space character has arrived (pipecat's
  trick: "$29." vs "$29. Next"), so that "3.14", "Dr. Smith", "e.g. apples", "J. R. R. Tolkien" and
  "well… maybe" stay whole. ``;`` ends a phrase like a sentence end, but only after the minimum number
  of words (see below).
- A natural pause (comma, colon, em or en dash, or a spaced hyphen) ends the first phrase of a reply at
  the punctuation once it has ``first_phrase_min_words`` words, whatever word follows (the first audio
  is what the user waits for); later phrases end at a pause only when a connector word ("and", "but",
  "so", …) follows and they have ``min_words`` words, so later speech does not become choppy.
- ``max_wait`` seconds after a phrase's first token, or after ``max_tokens`` tokens
  (``first_phrase_max_tokens`` for the first phrase, so audio starts sooner), the phrase is forced out,
  cut at its last word boundary; the unfinished last word starts the next phrase.

Every phrase handed out has gone through ``clean_for_speech``; phrases with nothing speakable are dropped.
"""

from __future__ import annotations

import logging
import math
import re
import unicodedata
from typing import TYPE_CHECKING

import attrs
import trio

if TYPE_CHECKING:
    from trio_voice.config import Config

logger = logging.getLogger(__name__)

# Words that may start a new phrase right after a comma, colon or dash: a pause a listener expects.
DEFAULT_CONNECTORS = frozenset(
    "and but so then because however although though which while or yet whereas unless since until "
    "otherwise therefore meanwhile instead plus especially including".split()
)
# A period after these never ends a sentence. Abbreviations that can end one ("etc.", "Inc.", "a.m.") are
# not listed: a lowercase next word already keeps them inside the sentence.
DEFAULT_ABBREVIATIONS = frozenset(
    "mr. mrs. ms. dr. prof. st. mt. fr. gen. col. capt. lt. sgt. rev. hon. sen. rep. gov. pres. "
    "e.g. i.e. vs. cf. approx. ca. fig. dept. ave. blvd.".split()
)
DEFAULT_MIN_WORDS = 6  # words before a pause cut after the first phrase: fewer sounds choppy

_SENTENCE_ENDS = ".!?…。！？"
# CJK is written without spaces: the next character may follow a sentence end at once.
_CJK_ENDS = "。！？"
_CLOSERS = "\"'”’)]}»」』*_`"
_PAUSES = ",:—–"
_OPENERS = "\"'“‘([{«*_`"
_INITIALS = re.compile(r"(?:[A-Z]\.)+")  # "J.", "R.", "U.S." keep a name or acronym whole
_WORD = re.compile(r"[^\W\d_]+")  # letters only


@attrs.frozen(kw_only=True)
class PhraseRules:
    """Settings of the phrase buffer; build from the server's ``Config`` with ``from_config``."""

    max_wait: float = attrs.field(default=2.0, validator=attrs.validators.gt(0))
    max_tokens: int = attrs.field(default=50, validator=attrs.validators.ge(1))
    first_phrase_min_words: int = attrs.field(default=3, validator=attrs.validators.ge(1))
    first_phrase_max_tokens: int = attrs.field(default=20, validator=attrs.validators.ge(1))
    min_words: int = attrs.field(default=DEFAULT_MIN_WORDS, validator=attrs.validators.ge(1))
    connectors: frozenset[str] = attrs.field(default=DEFAULT_CONNECTORS, converter=frozenset)
    abbreviations: frozenset[str] = attrs.field(default=DEFAULT_ABBREVIATIONS, converter=frozenset)

    @classmethod
    def from_config(cls, config: Config) -> PhraseRules:
        return cls(
            max_wait=config.phrase_max_wait,
            max_tokens=config.phrase_max_tokens,
            first_phrase_min_words=config.first_phrase_min_words,
            first_phrase_max_tokens=config.first_phrase_max_tokens,
            min_words=config.phrase_min_words,
        )


class PhraseBuffer:
    """Collects the tokens of one reply and hands out cleaned phrases (sans-I/O: the caller brings ``now``).

    Usage: ``feed`` every token, call ``poll`` whenever ``deadline()`` has passed, and ``flush`` at the end
    of the stream. Each returns the phrases completed by that call, in order. After ``flush`` the buffer is
    empty and the next phrase counts as the first of a new reply again.
    """

    def __init__(self, rules: PhraseRules | None = None) -> None:
        self.rules = rules if rules is not None else PhraseRules()
        self._text = ""
        # (offset in _text, arrival time) of each token of the pending phrase; len() is its token count.
        self._marks: list[tuple[int, float]] = []
        self._emitted = 0  # phrases handed out in this reply

    def feed(self, token: str, now: float) -> list[str]:
        """Add one token that arrived at ``now``; return the phrases it completed."""
        if not self._text:
            token = token.lstrip()  # a phrase starts with its first non-space character
        if not token:
            return []
        self._marks.append((len(self._text), now))
        self._text += token
        phrases: list[str] = []
        while (cut := self._find_cut()) is not None:
            self._take(*cut, phrases)
        limit = self.rules.max_tokens if self._emitted else self.rules.first_phrase_max_tokens
        if len(self._marks) >= limit:
            self._force(now, phrases, timed=False)
        phrases += self.poll(now)  # a caller that feeds late still gets the overdue phrase
        return phrases

    def poll(self, now: float) -> list[str]:
        """Force out the pending phrase if its ``max_wait`` has run out at ``now``; else return ``[]``.

        Afterwards ``deadline()`` is either ``None`` or later than ``now``.
        """
        deadline = self.deadline()
        if deadline is None or now < deadline:
            return []
        phrases: list[str] = []
        self._force(now, phrases, timed=True)
        return phrases

    def deadline(self) -> float | None:
        """When ``poll`` should next be called: ``max_wait`` after the pending phrase's first token."""
        return self._marks[0][1] + self.rules.max_wait if self._marks else None

    def flush(self) -> list[str]:
        """End of stream: return whatever remains as a last phrase, and reset for the next reply."""
        phrases: list[str] = []
        if self._text:
            self._take(len(self._text), len(self._text), phrases)
        self._emitted = 0
        return phrases

    # --- internals ---------------------------------------------------------------------------------

    def _take(self, end: int, rest: int, out: list[str]) -> None:
        """Hand out ``_text[:end]`` (cleaned) and keep ``_text[rest:]`` as the next phrase."""
        phrase = clean_for_speech(self._text[:end])
        if phrase:
            out.append(phrase)
            self._emitted += 1
        while rest < len(self._text) and self._text[rest].isspace():
            rest += 1
        if rest >= len(self._text):
            self._text, self._marks = "", []
            return
        # The token holding the first kept character dates the new phrase.
        first = max(i for i, (offset, _) in enumerate(self._marks) if offset <= rest)
        kept = [(offset - rest, t) for offset, t in self._marks[first + 1 :]]
        self._marks = [(0, self._marks[first][1]), *kept]
        self._text = self._text[rest:]

    def _force(self, now: float, out: list[str], *, timed: bool) -> None:
        """Cut the pending phrase at its last word boundary (or whole, when there is none)."""
        text = self._text
        words_end = len(text.rstrip())
        space = max(text.rfind(" ", 0, words_end), text.rfind("\t", 0, words_end))
        if words_end < len(text) or (space <= 0 and timed):
            self._take(len(text), len(text), out)  # last word complete, or a single unbroken word
            return
        if space <= 0:
            return  # too many tokens but no word boundary yet: never split a word before max_wait
        self._take(space, space + 1, out)
        if timed and self._marks and self._marks[0][1] + self.rules.max_wait <= now:
            self._take(len(self._text), len(self._text), out)  # the kept word is overdue as well

    def _find_cut(self) -> tuple[int, int] | None:
        """The first decided boundary in the pending text, as (end of phrase, start of the rest)."""
        text = self._text
        for i, ch in enumerate(text):
            if ch == "\n":
                cut = (i, i + 1)
            elif ch in _SENTENCE_ENDS or ch == ";":
                if i + 1 < len(text) and text[i + 1] in _SENTENCE_ENDS:
                    continue  # judge "?!" or "..." at the last mark of the run
                cut = self._sentence_end(text, i)
            elif ch in _PAUSES or (ch == "-" and text[i - 1 : i] == " " and text[i + 1 : i + 2] == " "):
                cut = self._pause(text, i)
            else:
                continue
            if cut is not None:
                return cut
        return None

    def _sentence_end(self, text: str, i: int) -> tuple[int, int] | None:
        end = i + 1
        while end < len(text) and text[end] in _CLOSERS:
            end += 1
        if end == len(text):
            return None  # wait for what follows
        if text[i] not in _CJK_ENDS and not text[end].isspace():
            return None  # "3.14", "$29.99", "e.g", "example.com"
        rest = end
        while rest < len(text) and text[rest].isspace():
            rest += 1
        if rest == len(text):
            return None  # wait for the next non-space character
        head = text[:end]
        if not any(c.isalpha() for c in head):
            return None  # "1." of a numbered list, or a bare number: say it with what follows
        if text[i] == ";":
            return (end, rest) if _count_words(head) >= self._min_words() else None
        if text[i] in ".…" and text[rest].islower():
            return None  # "etc. and", "e.g. apples", "well… maybe"
        if text[i] == "." and text[i - 1 : i] != ".":
            word = head[: i + 1].rsplit(None, 1)[-1].lstrip(_OPENERS)
            if word.lower() in self.rules.abbreviations or _INITIALS.fullmatch(word):
                return None  # "Dr. Smith", "J. R. R. Tolkien", "the U.S. Army"
        return end, rest

    def _pause(self, text: str, i: int) -> tuple[int, int] | None:
        rest = i + 1
        while rest < len(text) and text[rest] in " \t":
            rest += 1
        word = _WORD.match(text, rest)
        if word is None or word.end() == len(text) or text[word.end()] in "'’-":
            return None  # no word yet, a word still growing ("and" → "android"), or not a word
        # The first phrase may end at any pause: its audio is what the user waits for, and a comma is
        # where a speaker breathes anyway. Later ones need a connector, or speech turns choppy.
        if self._emitted and word.group().lower() not in self.rules.connectors:
            return None
        if _count_words(text[: i + 1]) < self._min_words():
            return None
        return i + 1, rest

    def _min_words(self) -> int:
        return self.rules.min_words if self._emitted else self.rules.first_phrase_min_words


def _count_words(text: str) -> int:
    return sum(1 for word in text.split() if any(c.isalnum() for c in word))


# --- speakable text ---------------------------------------------------------------------------------

_FENCE = re.compile(r"^[ \t]*(?:```|~~~).*$", re.MULTILINE)
_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
_HEADING = re.compile(r"^[ \t]{0,3}#{1,6}(?=\s|$)", re.MULTILINE)
_QUOTE = re.compile(r"^[ \t]*>+", re.MULTILINE)
_RULE = re.compile(r"^[ \t]*([-*_])(?:[ \t]*\1){2,}[ \t]*$", re.MULTILINE)
_LIST_MARKER = re.compile(r"^[ \t]*(?:[-*+•]|\d{1,3}[.)])(?=\s)", re.MULTILINE)
_EDGE_UNDERSCORES = re.compile(r"(?<![^\W_])_+|_+(?![^\W_])")  # emphasis, not snake_case
_SPACE_BEFORE = re.compile(r"\s+([,.!?;:…%)\]}”’])")
_SPACE_AFTER = re.compile(r"([(\[{“‘])\s+")
_MARKUP = frozenset("*`|\\~^•")
_KEPT_SYMBOLS = frozenset("+=<>°")  # symbols a voice can say; currency (Sc) is kept as a category
_VARIATION_SELECTORS = range(0xFE00, 0xFE10)


def clean_for_speech(text: str) -> str:
    """Return ``text`` as a voice can say it: markdown, emoji and unsayable symbols removed.

    Keeps letters, digits, marks, punctuation, currency signs, ``%`` and a few sayable symbols
    (``+ = < > °``); links become their text, table rows become comma-separated cells; whitespace
    collapses to single spaces. Returns ``""`` when nothing with a letter or digit remains.
    """
    text = _FENCE.sub("", text)
    text = _LINK.sub(r"\1", text)
    text = _RULE.sub("", text)
    text = _HEADING.sub("", text)
    text = _QUOTE.sub("", text)
    text = _LIST_MARKER.sub("", text)
    text = "\n".join(_table_row(line) if "|" in line else line for line in text.split("\n"))
    text = text.replace("**", "").replace("__", "").replace("~~", "")
    text = _EDGE_UNDERSCORES.sub("", text).replace("_", " ")
    text = "".join(_speakable(c) for c in text)
    text = " ".join(text.split())
    text = _SPACE_AFTER.sub(r"\1", _SPACE_BEFORE.sub(r"\1", text))
    return text if any(c.isalnum() for c in text) else ""


def _table_row(line: str) -> str:
    if not line.strip(" \t|-:"):
        return ""  # a separator row such as |---|:--:|
    cells = (cell.strip() for cell in line.strip().strip("|").split("|"))
    return ", ".join(cell for cell in cells if cell)


def _speakable(c: str) -> str:
    if c in _MARKUP or ord(c) in _VARIATION_SELECTORS:
        return ""
    category = unicodedata.category(c)
    if category[0] in "LNP" or category in ("Mn", "Mc", "Sc") or c in _KEPT_SYMBOLS:
        return c
    if category[0] == "Z" or c.isspace():
        return " "
    return ""  # emoji and other symbols (So, Sk, Sm), keycap marks (Me), format and control characters


# --- the stage ----------------------------------------------------------------------------------------


async def phrase_task(
    token_rx: trio.MemoryReceiveChannel[str],
    phrase_tx: trio.MemorySendChannel[str],
    *,
    config: Config,
) -> None:
    """Turn stage: receive tokens until the channel ends, send phrases as they complete.

    Waits for the next token only until the pending phrase's deadline, then forces it out; at end of
    stream sends the rest.

    Resource handling: closes both ``token_rx`` and ``phrase_tx`` when it returns or is cancelled.

    Cancellation: a cancelled turn drops the pending text; nothing is sent after the cancellation.
    """
    buffer = PhraseBuffer(PhraseRules.from_config(config))
    async with token_rx, phrase_tx:
        while True:
            deadline = buffer.deadline()
            phrases: list[str] = []
            with trio.move_on_at(math.inf if deadline is None else deadline):
                try:
                    token = await token_rx.receive()
                except trio.EndOfChannel:
                    break
                phrases = buffer.feed(token, trio.current_time())
            phrases += buffer.poll(trio.current_time())
            for phrase in phrases:
                logger.debug("phrase: %r", phrase)
                await phrase_tx.send(phrase)
        for phrase in buffer.flush():
            logger.debug("last phrase: %r", phrase)
            await phrase_tx.send(phrase)
