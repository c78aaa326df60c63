"""When a spoken turn ends, by meaning as well as by silence (``turn_detection.type: "semantic"``), sans-I/O.

The fixed-silence rule (``trio_voice.segmenter``) waits half a second after every pause, because a
shorter wait would cut off users who pause mid-sentence. :class:`TurnPolicy` waits only ``pause_ms``
(~200 ms) and then asks the end-of-turn model (``trio_voice.smart_turn``) whether the words so far make a
complete turn:

- **complete** (probability ≥ ``threshold``): the turn ends at once;
- **incomplete**: keep listening; the turn ends after ``fallback_ms`` of silence whatever the model said,
  or goes on if speech resumes (and the next pause is judged afresh);
- meanwhile, at the same tentative pause, a **speculative reply** may start on the speech so far (final
  transcription → LLM → first phrase → TTS, its events held back). When the turn ends with no speech in
  between, that reply is the turn's reply and is released at once; when speech resumes, it is abandoned
  and nothing of it may ever be sent or stored. At most ``max_speculative`` starts per turn, and none
  once the utterance is longer than ``max_speculative_ms`` (its transcription alone is costly to waste).

Pauses are measured exactly as the segmenter measures them, because the policy *is* a segmenter with
more to say: it holds a :class:`~trio_voice.segmenter.Segmenter` whose ``silence_ms`` is the fallback,
passes its ``SpeechStart`` through, and turns its ``SpeechEnd`` into the fallback end. A chunk counts as
speech when ``Segmenter.is_voiced`` says so (the start threshold less the hysteresis), and any such chunk
after a tentative pause means the user went on.

Usage: feed one VAD probability per 32 ms chunk to :meth:`TurnPolicy.feed`, hand each model verdict
back to :meth:`TurnPolicy.verdict`, and act on the decisions they return, in order. Times are
milliseconds of the input audio stream, like the segmenter's. Nothing here knows about Trio, threads or
models: the caller runs the model and the replies, and a verdict may come back at any later point
(verdicts that are stale by then, because speech resumed or the turn ended, are ignored).
"""

from __future__ import annotations

from typing import Literal

import attrs

from .segmenter import Segmenter, SegmenterSettings, SpeechEnd, SpeechStart

Eagerness = Literal["low", "medium", "high", "auto"]

# (threshold, fallback_ms) per eagerness. Measured with Smart Turn at a 200 ms pause on Piper speech: of
# the voice benchmark's 22 questions, 91% score >= 0.9 and 73% >= 0.95; fifteen questions cut where the
# speaker paused mid-sentence score 0.006-0.94, two of them above 0.9, none above 0.95. Pipecat's default,
# 0.5, is tuned on human speech. "high" answers soonest and is cut off most; "low" waits longest; "auto"
# is "medium". The fallback must outlast the longest mid-sentence pause a user should be allowed (the
# voice benchmark reads pauses of up to 600 ms).
EAGERNESS: dict[str, tuple[float, int]] = {
    "high": (0.5, 500),
    "medium": (0.95, 700),
    "low": (0.98, 1000),
}


@attrs.frozen(kw_only=True)
class SemanticSettings:
    """How eagerly a pause ends the turn. Every field can be set by ``session.update``."""

    threshold: float = EAGERNESS["medium"][0]  # P(complete) at or above which a pause ends the turn
    pause_ms: int = 200  # silence that makes a pause tentative: the model runs, a reply may start
    fallback_ms: int = EAGERNESS["medium"][1]  # silence that ends the turn whatever the model said
    speculative: bool = True  # start replies at tentative pauses, held until the turn is confirmed
    # Silence after which a speculative reply starts (None: at pause_ms, with the model check). Shorter
    # than pause_ms puts the reply's transcription ahead of the verdict, which it would otherwise trail.
    speculate_ms: int | None = None
    max_speculative: int = 2  # speculative starts per turn (each resumption of speech wastes one)
    max_speculative_ms: int = 10_000  # no speculative start once the utterance is longer than this

    def __attrs_post_init__(self) -> None:
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold must be within [0, 1], not {self.threshold}")
        if not 0 < self.pause_ms < self.fallback_ms:
            raise ValueError(
                f"need 0 < pause_ms < fallback_ms, not pause_ms={self.pause_ms}, fallback_ms={self.fallback_ms}"
            )
        if self.speculate_ms is not None and not 0 < self.speculate_ms <= self.pause_ms:
            raise ValueError(f"need 0 < speculate_ms <= pause_ms, not speculate_ms={self.speculate_ms}")
        if self.max_speculative < 0 or self.max_speculative_ms < 0:
            raise ValueError("max_speculative and max_speculative_ms must be >= 0")

    @classmethod
    def for_eagerness(cls, eagerness: Eagerness, **overrides: object) -> SemanticSettings:
        """The settings of a named eagerness (``low``, ``medium``, ``high``, ``auto``), with overrides.

        Raises:
            ValueError: an unknown eagerness, or overrides that make invalid settings.
        """
        name = "medium" if eagerness == "auto" else eagerness
        if name not in EAGERNESS:
            raise ValueError(f"eagerness must be one of low, medium, high, auto; not {eagerness!r}")
        threshold, fallback_ms = EAGERNESS[name]
        return cls(**{"threshold": threshold, "fallback_ms": fallback_ms, **overrides})  # type: ignore[arg-type]


# --- decisions --------------------------------------------------------------------------------------


@attrs.frozen
class RunTurnModel:
    """Ask the end-of-turn model about the utterance from ``start_ms`` to ``end_ms`` (pause included);
    hand its probability back with ``verdict(check, p)``."""

    check: int
    start_ms: float
    end_ms: float


@attrs.frozen
class StartSpeculation:
    """Start a held reply on the speech from ``start_ms`` to ``end_ms`` (the last voiced chunk's end)."""

    attempt: int
    start_ms: float
    end_ms: float


@attrs.frozen
class AbandonSpeculation:
    """The user went on (or the turn was cleared or forced): cancel the held reply; send nothing of it."""

    attempt: int


@attrs.frozen
class TurnEnd:
    """The turn is over. ``speculation`` is the held reply to release as this turn's reply (it was
    started on exactly this turn's speech); when it is ``None``, transcribe and reply as usual."""

    end_ms: float  # where the last speech chunk ended
    decided_ms: float  # the stream position at which the turn was declared over
    reason: Literal["model", "fallback", "forced", "silence"]
    speculation: int | None = None
    probability: float | None = None  # the model's last verdict in this turn, if any
    speculative_starts: int = 0
    speculations_abandoned: int = 0

    @property
    def speech_end(self) -> SpeechEnd:
        """The segmenter's view of this end, for code written against it."""
        return SpeechEnd(self.end_ms, self.decided_ms)


Decision = SpeechStart | RunTurnModel | StartSpeculation | AbandonSpeculation | TurnEnd


@attrs.define
class _Turn:
    """What the policy knows about the turn in progress."""

    start: SpeechStart
    last_voiced_ms: float  # end of the last voiced chunk
    paused: bool = False  # a tentative pause was reached since the last voiced chunk (the model was asked)
    speculated: bool = False  # a speculative reply was considered in this pause (started or not)
    check: int | None = None  # the model call about the current pause; older verdicts are stale
    probability: float | None = None
    speculation: int | None = None  # the live held reply, if any
    speculative_starts: int = 0
    abandoned: int = 0


class TurnPolicy:
    """The semantic turn-taking state machine: VAD probabilities and model verdicts in, decisions out."""

    def __init__(self, segmenter: SegmenterSettings, settings: SemanticSettings) -> None:
        self.settings = settings
        self.segmenter = Segmenter(attrs.evolve(segmenter, silence_ms=settings.fallback_ms))
        self._turn: _Turn | None = None
        self._next_id = 0

    @property
    def position_ms(self) -> float:
        return self.segmenter.position_ms

    @property
    def in_speech(self) -> bool:
        return self.segmenter.in_speech

    def is_voiced(self, probability: float) -> bool:
        return self.segmenter.is_voiced(probability)

    def configure(self, segmenter: SegmenterSettings, settings: SemanticSettings) -> None:
        """New settings from ``session.update``; a turn in progress goes on under them."""
        self.settings = settings
        self.segmenter.settings = attrs.evolve(segmenter, silence_ms=settings.fallback_ms)

    def feed(self, probability: float) -> list[Decision]:
        """One 32 ms chunk's speech probability; returns what to do now, in order."""
        decision = self.segmenter.feed(probability)
        if isinstance(decision, SpeechStart):
            self._turn = _Turn(decision, last_voiced_ms=self.position_ms)
            return [decision]
        turn = self._turn
        if turn is None:
            return []
        if isinstance(decision, SpeechEnd):
            return self._end(decision, "fallback")
        if self.segmenter.is_voiced(probability):
            turn.last_voiced_ms = self.position_ms
            return self._resume(turn) if turn.paused or turn.speculated else []
        silence = self.position_ms - turn.last_voiced_ms
        decisions: list[Decision] = []
        if not turn.paused and silence >= self.settings.pause_ms:
            decisions.append(self._pause(turn))
        if not turn.speculated and silence >= (self.settings.speculate_ms or self.settings.pause_ms):
            decisions += self._speculate(turn)
        return decisions

    def verdict(self, check: int, probability: float) -> list[Decision]:
        """The model's P(complete) for ``RunTurnModel(check, …)``; ends the turn if it is high enough."""
        turn = self._turn
        if turn is None or check != turn.check:
            return []  # stale: the user went on, or the turn already ended
        turn.probability = probability
        if probability < self.settings.threshold:
            return []
        end = self.segmenter.end_now()
        assert end is not None  # a live check implies a turn in progress
        return self._end(end, "model")

    def end_now(self) -> list[Decision]:
        """End the turn here (``input_audio.commit``, or an utterance grown too long).

        A held reply is abandoned rather than released: the caller ends such turns on audio that may
        go past the speech the reply was started on.
        """
        end = self.segmenter.end_now()
        if end is None or self._turn is None:
            return []
        abandon = self._abandon(self._turn)
        return [*abandon, *self._end(end, "forced")]

    def reset(self) -> list[Decision]:
        """Forget the turn in progress (``input_audio.clear``); a held reply is abandoned."""
        self.segmenter.reset()
        turn, self._turn = self._turn, None
        return [] if turn is None else self._abandon(turn)

    # --- transitions --------------------------------------------------------------------------------
    def _pause(self, turn: _Turn) -> RunTurnModel:
        turn.paused = True
        turn.check = self._new_id()
        return RunTurnModel(turn.check, turn.start.start_ms, self.position_ms)

    def _speculate(self, turn: _Turn) -> list[Decision]:
        turn.speculated = True
        s = self.settings
        if (
            s.speculative
            and turn.speculative_starts < s.max_speculative
            and turn.last_voiced_ms - turn.start.detected_ms <= s.max_speculative_ms
        ):
            turn.speculation = self._new_id()
            turn.speculative_starts += 1
            return [StartSpeculation(turn.speculation, turn.start.start_ms, turn.last_voiced_ms)]
        return []

    def _resume(self, turn: _Turn) -> list[Decision]:
        turn.paused = False
        turn.speculated = False
        turn.check = None
        turn.probability = None
        return self._abandon(turn)

    def _abandon(self, turn: _Turn) -> list[Decision]:
        if turn.speculation is None:
            return []
        attempt, turn.speculation = turn.speculation, None
        turn.abandoned += 1
        return [AbandonSpeculation(attempt)]

    def _end(self, end: SpeechEnd, reason: Literal["model", "fallback", "forced"]) -> list[Decision]:
        turn, self._turn = self._turn, None
        assert turn is not None
        return [
            TurnEnd(
                end.end_ms,
                end.decided_ms,
                reason,
                speculation=turn.speculation,
                probability=turn.probability,
                speculative_starts=turn.speculative_starts,
                speculations_abandoned=turn.abandoned,
            )
        ]

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id
