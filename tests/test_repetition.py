"""The repetition guard: a looping reply is caught at the word that closes the loop; sensible replies never are."""

from __future__ import annotations

import pytest

from trio_voice.repetition import RepetitionGuard


def first_loop(text: str, step: int = 3) -> str | None:
    """Feed ``text`` in ``step``-character deltas; return what had been fed when the guard fired."""
    guard = RepetitionGuard()
    for i in range(0, len(text), step):
        if guard.feed(text[i : i + step]):
            return text[: i + step]
    return None


def test_a_long_run_said_twice_is_a_loop() -> None:
    """SmolLM2's French loop is stopped as soon as its six words come round a second time."""
    fed = first_loop("La femme au pays de France, la femme au pays de France, la femme au pays de France, ")
    assert fed is not None
    assert fed.lower().count("la femme au pays de france") == 2
    assert len(fed) < 60


def test_a_repeated_sentence_is_a_loop() -> None:
    """A sentence of four words or more said again is a loop, even with another sentence between."""
    assert first_loop("I am here to help. Ask me anything. I am here to help. ") is not None


def test_a_short_word_needs_four_in_a_row() -> None:
    """ "no, no" is speech; four of the same word in a row is a loop."""
    assert first_loop("No, no, that is wrong. ") is None
    assert first_loop("very very very very ") is not None


@pytest.mark.parametrize(
    "reply",
    [
        "The capital of France is Paris. It is a big city with many museums. ",
        "One, two, three, four, five, six. ",
        "A day is 24 hours and a week has 7 days. ",
        "I see. I see. ",  # short sentences may repeat
        "Water boils at 100 degrees Celsius, which is 212 degrees Fahrenheit. ",
    ],
)
def test_sensible_replies_are_not_loops(reply: str) -> None:
    """Ordinary answers run to their end."""
    assert first_loop(reply) is None


def test_a_word_split_across_deltas_is_one_word() -> None:
    """Words are compared once complete, however the deltas cut them."""
    guard = RepetitionGuard()
    fired = [guard.feed(piece) for piece in ["ver", "y ve", "ry v", "ery", " very", " "]]
    assert fired == [False, False, False, False, False, True]


def test_once_looped_it_stays_looped() -> None:
    """After it fires, every later delta is refused too."""
    guard = RepetitionGuard()
    guard.feed("go go go go ")
    assert guard.feed("anything") is True
