"""Whether a transcript stops where an English sentence cannot end (sans-I/O).

The end-of-turn model hears prosody; on a hesitation that happens to sound final ("How many days are
there in a … leap year?") it may say "complete". The words then tell what the sound does not: an
utterance that stops on an article, a possessive, a conjunction or a preposition waiting for its object
is not over. :func:`ends_unfinished` is that check, for the transcript of the speech so far.

It errs towards waiting: a question that really ends on a stranded preposition ("What is it for?") is
judged unfinished and answered after the fallback silence instead of at the model's verdict, some
hundreds of milliseconds later. An answer to half a question is the worse mistake.
"""

from __future__ import annotations

import re

UNFINISHED_EN = frozenset(
    # articles, possessive determiners, conjunctions, and prepositions that take an object
    "a an the my your our their its and or but because if than of to for with about between from into "
    "at by through during without".split()
)
_WORD = re.compile(r"[^\W\d_]+(?:['’][^\W\d_]+)*")


def ends_unfinished(text: str, language: str | None = "en") -> bool:
    """True when ``text`` (a transcript) ends on a word no English sentence ends on; False otherwise,
    and for other languages (nothing is known about them here)."""
    if language not in (None, "en"):
        return False
    words = _WORD.findall(text.lower())
    return bool(words) and words[-1] in UNFINISHED_EN
