"""The listener's buffers: the recent input audio by stream position, and one-slot mailboxes."""

from __future__ import annotations

from typing import Generic, TypeVar

import attrs
import numpy as np
import trio

from .segmenter import SAMPLE_RATE

T = TypeVar("T")


class AudioWindow:
    """The recent 16 kHz input, addressed by stream position in milliseconds; bounded by ``trim``.

    Frames are kept as a list and joined only when a clip is read (a partial every half second, a
    final per turn): appending is O(1) however long the utterance grows.
    """

    def __init__(self) -> None:
        self._start = 0  # absolute sample index of the first kept sample
        self._chunks: list[np.ndarray] = []
        self._size = 0  # samples kept

    @property
    def end_ms(self) -> float:
        return (self._start + self._size) * 1000.0 / SAMPLE_RATE

    def append(self, samples: np.ndarray) -> None:
        if samples.size:
            self._chunks.append(samples)
            self._size += samples.size

    def between(self, start_ms: float, end_ms: float) -> np.ndarray:
        lo = max(0, int(start_ms * SAMPLE_RATE / 1000) - self._start)
        hi = max(lo, int(end_ms * SAMPLE_RATE / 1000) - self._start)
        if len(self._chunks) > 1:
            self._chunks = [np.concatenate(self._chunks)]
        data = self._chunks[0] if self._chunks else np.zeros(0, dtype=np.float32)
        return data[lo:hi].copy()

    def trim(self, keep_from_ms: float) -> None:
        """Forget audio before ``keep_from_ms`` (whole frames only: a few ms more may stay)."""
        cut = int(keep_from_ms * SAMPLE_RATE / 1000) - self._start
        while self._chunks and cut >= self._chunks[0].size:
            dropped = self._chunks.pop(0).size
            self._start += dropped
            self._size -= dropped
            cut -= dropped


@attrs.define
class PartialJob:
    utterance: int
    audio: np.ndarray


@attrs.define
class Mailbox(Generic[T]):
    """Holds only the newest job; posting replaces what has not been taken yet."""

    job: T | None = None
    posted: trio.Event = attrs.field(factory=trio.Event)

    def post(self, job: T) -> None:
        self.job = job
        self.posted.set()

    async def take(self) -> T:
        while self.job is None:
            await self.posted.wait()
            self.posted = trio.Event()
        job, self.job = self.job, None
        return job
