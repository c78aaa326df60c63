"""The transcript check that keeps the end-of-turn model from answering half a question."""

from __future__ import annotations

import pytest

from trio_voice.completeness import ends_unfinished


@pytest.mark.parametrize(
    "text",
    [
        "How many days are there in a?",
        "Give me a tip for.",
        "What is the difference between",
        "Tell me about the",
        "I want tea and",
        "What is the capital of",
    ],
)
def test_a_transcript_that_stops_on_a_function_word_is_unfinished(text: str) -> None:
    """Whisper's closing punctuation does not make a dangling article or preposition an ending."""
    assert ends_unfinished(text)


@pytest.mark.parametrize(
    "text",
    ["What is the capital of France?", "Why is the sky blue", "Thank you.", "It's yours", "", "42"],
)
def test_a_complete_sentence_is_not_unfinished(text: str) -> None:
    assert not ends_unfinished(text)


def test_other_languages_are_not_judged() -> None:
    """Only English is known: a German sentence ending on "an" (a verb particle there) is left alone."""
    assert not ends_unfinished("Ich rufe dich an", language="de")
