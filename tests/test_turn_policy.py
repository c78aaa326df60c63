"""The semantic turn-end policy, sans-I/O: VAD probabilities and model verdicts in, decisions out, exact times.

Chunks are 32 ms. With the default segmenter settings, speech is detected at the first of two loud chunks
and kept from 300 ms before it (clamped at 0); a tentative pause is reached at the first chunk whose end
lies 200 ms or more after the last voiced chunk's end (7 chunks: 224 ms), the fallback at 700 ms (22
chunks: 704 ms).
"""

from __future__ import annotations

import pytest

from trio_voice.segmenter import SegmenterSettings, SpeechStart
from trio_voice.turn_policy import (
    AbandonSpeculation,
    Decision,
    RunTurnModel,
    SemanticSettings,
    StartSpeculation,
    TurnEnd,
    TurnPolicy,
)

SPEECH, SILENCE, UNSURE = 0.9, 0.0, 0.4  # UNSURE: below the start threshold, above the voiced floor


def policy(**settings: object) -> TurnPolicy:
    return TurnPolicy(SegmenterSettings(), SemanticSettings(**settings))  # type: ignore[arg-type]


def feed(p: TurnPolicy, probability: float, chunks: int) -> list[tuple[float, Decision]]:
    """Feed ``chunks`` chunks of one probability; the decisions, each with the position it came at."""
    out = []
    for _ in range(chunks):
        out += [(p.position_ms, d) for d in p.feed(probability)]
    return out


def test_speech_start_passes_through() -> None:
    """The segmenter's start decision comes out unchanged, at the second loud chunk."""
    p = policy()
    assert feed(p, SILENCE, 20) == []
    assert feed(p, SPEECH, 2) == [(704.0, SpeechStart(340.0, 640.0))]


def test_tentative_pause_runs_the_model_and_starts_a_speculative_reply() -> None:
    """200 ms into a pause: judge the utterance (pause included) and start a reply on the speech alone."""
    p = policy()
    feed(p, SPEECH, 10)  # voiced until 320 ms
    assert feed(p, SILENCE, 6) == []  # 192 ms of silence: not yet a pause
    assert feed(p, SILENCE, 1) == [
        (544.0, RunTurnModel(1, 0.0, 544.0)),
        (544.0, StartSpeculation(2, 0.0, 320.0)),
    ]
    assert feed(p, SILENCE, 5) == []  # one check per pause


def test_speculation_can_start_before_the_model_check() -> None:
    """With speculate_ms 128, the reply starts 128 ms into the pause (its transcription gets ahead), and
    the model is still asked at 200 ms; speech resuming after both abandons the reply, once."""
    p = policy(speculate_ms=128)
    feed(p, SPEECH, 10)  # voiced until 320 ms
    assert feed(p, SILENCE, 3) == []  # 96 ms
    assert feed(p, SILENCE, 1) == [(448.0, StartSpeculation(1, 0.0, 320.0))]  # 128 ms
    assert feed(p, SILENCE, 2) == []
    assert feed(p, SILENCE, 1) == [(544.0, RunTurnModel(2, 0.0, 544.0))]  # 224 ms
    assert feed(p, SPEECH, 1) == [(576.0, AbandonSpeculation(1))]
    assert p.verdict(2, 0.99) == []  # stale: the user went on


def test_speech_resuming_before_the_check_abandons_an_early_speculation() -> None:
    """A hesitation of 160 ms: long enough to start a reply, too short for the model; the reply is dropped
    when speech resumes, and the next pause may start another."""
    p = policy(speculate_ms=128)
    feed(p, SPEECH, 10)
    feed(p, SILENCE, 5)  # 160 ms: speculation 1 started at 128 ms
    assert feed(p, SPEECH, 1) == [(512.0, AbandonSpeculation(1))]
    feed(p, SPEECH, 5)
    assert [d for _, d in feed(p, SILENCE, 4)] == [StartSpeculation(2, 0.0, 672.0)]


def test_complete_verdict_ends_the_turn_at_once_and_keeps_the_speculative_reply() -> None:
    """A verdict at or above the threshold ends the turn where the stream is, confirming the held reply."""
    p = policy(threshold=0.8)
    feed(p, SPEECH, 10)
    feed(p, SILENCE, 8)  # the check went out at 544 ms; its verdict arrives at 576 ms
    assert p.verdict(1, 0.8) == [
        TurnEnd(320.0, 576.0, "model", speculation=2, probability=0.8, speculative_starts=1)
    ]
    assert not p.in_speech
    assert feed(p, SILENCE, 30) == []  # no fallback end later


def test_incomplete_verdict_waits_for_the_fallback_which_keeps_the_speculative_reply() -> None:
    """Below the threshold the turn goes on; 700 ms of silence ends it, and the held reply is still right."""
    p = policy(threshold=0.8)
    feed(p, SPEECH, 10)
    feed(p, SILENCE, 7)
    assert p.verdict(1, 0.79) == []
    assert feed(p, SILENCE, 14) == []  # 672 ms of silence
    assert feed(p, SILENCE, 1) == [
        (1024.0, TurnEnd(320.0, 1024.0, "fallback", speculation=2, probability=0.79, speculative_starts=1))
    ]


def test_fallback_ends_the_turn_when_the_model_never_answers() -> None:
    """A model that fails or is missing leaves the fixed-silence rule: the turn still ends."""
    p = policy()
    feed(p, SPEECH, 10)
    decisions = feed(p, SILENCE, 22)
    assert decisions[-1] == (1024.0, TurnEnd(320.0, 1024.0, "fallback", speculation=2, speculative_starts=1))


def test_resumed_speech_abandons_the_speculation_and_makes_the_old_verdict_stale() -> None:
    """One voiced chunk after a pause: the held reply is cancelled, and the old check no longer counts."""
    p = policy()
    feed(p, SPEECH, 10)
    feed(p, SILENCE, 7)  # check 1 and speculation 2 at 544 ms
    assert feed(p, UNSURE, 1) == [(576.0, AbandonSpeculation(2))]
    assert p.verdict(1, 0.99) == []  # about speech that has since gone on
    feed(p, SPEECH, 9)  # voiced until 864 ms
    assert feed(p, SILENCE, 7) == [
        (1088.0, RunTurnModel(3, 0.0, 1088.0)),
        (1088.0, StartSpeculation(4, 0.0, 864.0)),
    ]
    assert p.verdict(3, 0.99) == [
        TurnEnd(
            864.0,
            1088.0,
            "model",
            speculation=4,
            probability=0.99,
            speculative_starts=2,
            speculations_abandoned=1,
        )
    ]


def test_a_short_gap_is_not_a_pause() -> None:
    """Silence shorter than pause_ms asks nothing, and the next pause is measured from the latest speech."""
    p = policy()
    feed(p, SPEECH, 10)
    assert feed(p, SILENCE, 6) == []
    assert feed(p, SPEECH, 1) == []  # voiced until 544 ms
    assert feed(p, SILENCE, 7)[0] == (768.0, RunTurnModel(1, 0.0, 768.0))


def test_at_most_max_speculative_starts_per_turn() -> None:
    """Past the bound a pause still runs the model, but starts no reply."""
    p = policy(max_speculative=2)
    feed(p, SPEECH, 10)
    kinds = []
    for _ in range(3):  # three pauses of 224 ms, each followed by 96 ms of speech: voiced until 1280 ms
        kinds += [type(d).__name__ for _, d in feed(p, SILENCE, 7) + feed(p, SPEECH, 3)]
    assert kinds == [
        "RunTurnModel",
        "StartSpeculation",
        "AbandonSpeculation",
        "RunTurnModel",
        "StartSpeculation",
        "AbandonSpeculation",
        "RunTurnModel",
    ]
    end = feed(p, SILENCE, 22)[-1][1]
    assert end == TurnEnd(1280.0, 1984.0, "fallback", speculative_starts=2, speculations_abandoned=2)


def test_no_speculation_for_a_long_utterance() -> None:
    """Once the speech is longer than max_speculative_ms, pauses only run the model."""
    p = policy(max_speculative_ms=1000)
    feed(p, SPEECH, 33)  # detected at 0, voiced until 1056 ms
    assert [d for _, d in feed(p, SILENCE, 7)] == [RunTurnModel(1, 0.0, 1280.0)]


def test_speculation_can_be_turned_off() -> None:
    """speculative=False: the model still decides, and the turn end carries no reply to release."""
    p = policy(speculative=False)
    feed(p, SPEECH, 10)
    assert [d for _, d in feed(p, SILENCE, 7)] == [RunTurnModel(1, 0.0, 544.0)]
    assert p.verdict(1, 0.95) == [TurnEnd(320.0, 544.0, "model", probability=0.95)]


def test_a_verdict_after_the_turn_ended_is_ignored() -> None:
    """A slow model whose answer arrives after the fallback changes nothing."""
    p = policy()
    feed(p, SPEECH, 10)
    feed(p, SILENCE, 22)
    assert p.verdict(1, 0.99) == []
    assert p.verdict(12345, 0.99) == []


def test_forced_end_abandons_the_speculation() -> None:
    """input_audio.commit or the length cap: the turn ends here and the held reply is dropped."""
    p = policy()
    feed(p, SPEECH, 10)
    feed(p, SILENCE, 8)
    assert p.end_now() == [
        AbandonSpeculation(2),
        TurnEnd(320.0, 576.0, "forced", speculative_starts=1, speculations_abandoned=1),
    ]
    assert p.end_now() == []


def test_reset_abandons_the_speculation_and_forgets_the_turn() -> None:
    """input_audio.clear: the held reply is dropped and a late verdict ends nothing."""
    p = policy()
    feed(p, SPEECH, 10)
    feed(p, SILENCE, 7)
    assert p.reset() == [AbandonSpeculation(2)]
    assert p.verdict(1, 0.99) == []
    assert feed(p, SILENCE, 30) == []
    assert p.reset() == []


def test_new_settings_apply_to_the_turn_in_progress() -> None:
    """A shorter fallback set mid-turn ends this turn sooner."""
    p = policy()
    feed(p, SPEECH, 10)
    p.configure(SegmenterSettings(), SemanticSettings(fallback_ms=400, speculative=False))
    decisions = feed(p, SILENCE, 13)
    assert decisions == [(544.0, RunTurnModel(1, 0.0, 544.0)), (736.0, TurnEnd(320.0, 736.0, "fallback"))]


def test_each_turn_starts_afresh() -> None:
    """The next turn counts its own speculative starts, with ids that never repeat."""
    p = policy(max_speculative=1)
    feed(p, SPEECH, 10)
    feed(p, SILENCE, 22)
    feed(p, SPEECH, 10)
    decisions = [d for _, d in feed(p, SILENCE, 7)]
    assert [type(d) for d in decisions] == [RunTurnModel, StartSpeculation]
    assert decisions[0].check == 3 and decisions[1].attempt == 4


def test_eagerness_presets() -> None:
    """Named eagerness levels set threshold and fallback; auto is medium; overrides win."""
    assert (
        SemanticSettings.for_eagerness("auto")
        == SemanticSettings.for_eagerness("medium")
        == SemanticSettings()
    )
    high = SemanticSettings.for_eagerness("high")
    low = SemanticSettings.for_eagerness("low")
    assert high.threshold < SemanticSettings().threshold < low.threshold
    assert high.fallback_ms < SemanticSettings().fallback_ms < low.fallback_ms
    assert SemanticSettings.for_eagerness("high", fallback_ms=900).fallback_ms == 900


@pytest.mark.parametrize(
    "kwargs",
    [
        {"threshold": 1.5},
        {"threshold": -0.1},
        {"pause_ms": 0},
        {"pause_ms": 700, "fallback_ms": 700},
        {"max_speculative": -1},
    ],
)
def test_invalid_settings_are_refused(kwargs: dict[str, object]) -> None:
    """Settings that cannot work raise ValueError, naming the field."""
    with pytest.raises(ValueError, match=r"threshold|pause_ms|max_speculative"):
        SemanticSettings(**kwargs)  # type: ignore[arg-type]


def test_unknown_eagerness_is_refused() -> None:
    """An eagerness that is not a preset raises ValueError listing the presets."""
    with pytest.raises(ValueError, match="low, medium, high, auto"):
        SemanticSettings.for_eagerness("eager")  # type: ignore[arg-type]
