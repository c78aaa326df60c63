"""The two automatic turn detectors behind one face: fixed silence (``server_vad``) and ``semantic``.

The listener feeds VAD probabilities and acts on the decisions that come back, whichever detector runs:
``SpeechStart``, ``TurnEnd`` and, for the semantic one only, ``RunTurnModel``, ``StartSpeculation`` and
``AbandonSpeculation`` (see ``trio_voice.turn_policy``). :class:`SilenceDetector` is the segmenter of
``trio_voice.segmenter`` speaking that vocabulary; :class:`~trio_voice.turn_policy.TurnPolicy` already does.
Sans-I/O, like both of them.
"""

from __future__ import annotations

from typing import Protocol

from . import codec
from .segmenter import Segmenter, SegmenterSettings, SpeechEnd, SpeechStart
from .turn_policy import Decision, SemanticSettings, TurnEnd, TurnPolicy


class TurnDetector(Protocol):
    @property
    def position_ms(self) -> float: ...

    @property
    def in_speech(self) -> bool: ...

    def is_voiced(self, probability: float) -> bool: ...

    def feed(self, probability: float) -> list[Decision]: ...

    def end_now(self) -> list[Decision]: ...

    def reset(self) -> list[Decision]: ...


class SilenceDetector:
    """``server_vad``: the turn ends after ``silence_ms`` of silence, as the segmenter decides."""

    def __init__(self, settings: SegmenterSettings) -> None:
        self.segmenter = Segmenter(settings)

    @property
    def position_ms(self) -> float:
        return self.segmenter.position_ms

    @property
    def in_speech(self) -> bool:
        return self.segmenter.in_speech

    def is_voiced(self, probability: float) -> bool:
        return self.segmenter.is_voiced(probability)

    def configure(self, settings: SegmenterSettings) -> None:
        self.segmenter.settings = settings

    def feed(self, probability: float) -> list[Decision]:
        return self._said(self.segmenter.feed(probability))

    def end_now(self) -> list[Decision]:
        return self._said(self.segmenter.end_now())

    def reset(self) -> list[Decision]:
        self.segmenter.reset()
        return []

    @staticmethod
    def _said(decision: SpeechStart | SpeechEnd | None) -> list[Decision]:
        if decision is None:
            return []
        if isinstance(decision, SpeechEnd):
            return [TurnEnd(decision.end_ms, decision.decided_ms, "silence")]
        return [decision]


def segmenter_settings(td: codec.TurnDetection) -> SegmenterSettings:
    assert td.threshold is not None and td.silence_ms is not None and td.prefix_ms is not None
    return SegmenterSettings(threshold=td.threshold, silence_ms=td.silence_ms, prefix_ms=td.prefix_ms)


def semantic_settings(
    td: codec.TurnDetection, *, pause_ms: int, speculate_ms: int | None = None
) -> SemanticSettings:
    assert td.eagerness is not None and td.fallback_ms is not None and td.speculative is not None
    pause_ms = min(pause_ms, td.fallback_ms - 1)
    return SemanticSettings.for_eagerness(
        td.eagerness,  # type: ignore[arg-type]
        fallback_ms=td.fallback_ms,
        pause_ms=pause_ms,
        speculative=td.speculative,
        speculate_ms=None if speculate_ms is None else min(speculate_ms, pause_ms),
    )


def make_detector(
    td: codec.TurnDetection, *, pause_ms: int, speculate_ms: int | None = None
) -> SilenceDetector | TurnPolicy:
    """The detector for the session's ``turn_detection`` (``server_vad`` or ``semantic``)."""
    if td.type == "semantic":
        settings = semantic_settings(td, pause_ms=pause_ms, speculate_ms=speculate_ms)
        return TurnPolicy(segmenter_settings(td), settings)
    return SilenceDetector(segmenter_settings(td))


def configure(
    detector: SilenceDetector | TurnPolicy,
    td: codec.TurnDetection,
    *,
    pause_ms: int,
    speculate_ms: int | None = None,
) -> None:
    """New settings of the same type, from ``session.update``: a turn in progress goes on under them."""
    if isinstance(detector, TurnPolicy):
        detector.configure(
            segmenter_settings(td), semantic_settings(td, pause_ms=pause_ms, speculate_ms=speculate_ms)
        )
    else:
        detector.configure(segmenter_settings(td))


def kind_of(detector: SilenceDetector | TurnPolicy) -> str:
    return "semantic" if isinstance(detector, TurnPolicy) else "server_vad"
