"""Turn detection on VAD probabilities: when the user starts and stops speaking (sans-I/O).

Feed one speech probability per 32 ms chunk (512 samples at 16 kHz); get ``SpeechStart`` /
``SpeechEnd`` decisions, positioned in milliseconds of the input audio stream. Hysteresis keeps a
breath or a plosive from flipping the state: speech starts after ``min_speech_ms`` above
``threshold``, and ends only after ``silence_ms`` below ``threshold - HYSTERESIS``.
"""

from __future__ import annotations

import attrs

CHUNK_SAMPLES = 512
SAMPLE_RATE = 16000
CHUNK_MS = CHUNK_SAMPLES * 1000 / SAMPLE_RATE  # 32 ms
# How far below the start threshold a chunk must fall to count as silence (Silero's own recipe).
HYSTERESIS = 0.15


@attrs.frozen(kw_only=True)
class SegmenterSettings:
    threshold: float = 0.5
    silence_ms: int = 500  # silence that ends a turn (the VAD hangover)
    prefix_ms: int = 300  # audio kept before the detected start, so the first syllable is not lost
    min_speech_ms: int = 64  # speech shorter than this (a click, a cough) does not start a turn


@attrs.frozen
class SpeechStart:
    start_ms: float  # where the kept audio begins (detected start minus the prefix, at least 0)
    detected_ms: float  # where the first speech chunk began


@attrs.frozen
class SpeechEnd:
    end_ms: float  # where the last speech chunk ended
    decided_ms: float  # where the silence that ended the turn reached silence_ms


class Segmenter:
    """The state machine: silence ⇄ speech, one chunk at a time."""

    def __init__(self, settings: SegmenterSettings) -> None:
        self.settings = settings
        self.position_ms = 0.0  # end of the last chunk fed
        self.in_speech = False
        self._run_start: float | None = None  # first chunk of the current above-threshold run
        self._last_speech_end = 0.0

    def is_voiced(self, probability: float) -> bool:
        """Whether a chunk keeps a turn going: above the start threshold less the hysteresis."""
        return probability >= self.settings.threshold - HYSTERESIS

    def feed(self, probability: float) -> SpeechStart | SpeechEnd | None:
        s = self.settings
        start = self.position_ms
        self.position_ms += CHUNK_MS
        if not self.in_speech:
            if probability >= s.threshold:
                if self._run_start is None:
                    self._run_start = start
                if self.position_ms - self._run_start >= s.min_speech_ms:
                    self.in_speech = True
                    self._last_speech_end = self.position_ms
                    return SpeechStart(max(0.0, self._run_start - s.prefix_ms), self._run_start)
            else:
                self._run_start = None
            return None
        if self.is_voiced(probability):
            self._last_speech_end = self.position_ms
            return None
        if self.position_ms - self._last_speech_end >= s.silence_ms:
            return self.end_now()
        return None

    def end_now(self) -> SpeechEnd | None:
        """End the current turn here (``input_audio.commit``, or an utterance that grew too long)."""
        if not self.in_speech:
            return None
        self.in_speech = False
        self._run_start = None
        return SpeechEnd(self._last_speech_end, self.position_ms)

    def reset(self) -> None:
        """Forget any speech in progress (``input_audio.clear``); the stream position keeps counting."""
        self.in_speech = False
        self._run_start = None
