"""Realtime audio at the edge, sans I/O: the API's formats in and out of trio-voice's PCM16.

The Realtime API speaks ``audio/pcm`` (PCM16LE mono at 24 kHz, the only rate it knows) and G.711
``audio/pcmu`` (μ-law) and ``audio/pcma`` (A-law), one byte a sample at 8 kHz. trio-voice's recognizer
wants 16 kHz and Piper speaks 22050 Hz, so audio is converted here, at the edge, and nowhere else:

- ``InputAudio``: the client's appended audio → PCM16 at the recognizer's rate, through a streaming
  ``trio_voice.audio.Resampler`` (no clicks at chunk boundaries);
- ``OutputAudio``: one response's audio → the client's format, cut into deltas of ``DELTA_MIN_MS`` to
  ``DELTA_MAX_MS`` (only the last delta of a phrase may be shorter).

G.711 is computed with numpy lookup tables built from the ITU-T G.711 segment rules (the same arithmetic
as the reference ``g711.c``): Python's ``audioop`` is gone in 3.13, and nothing here needs it.
"""

from __future__ import annotations

from typing import Final

import attrs
import numpy as np

from trio_voice.audio import Resampler, float_to_pcm16, pcm16_to_float, resample
from trio_voice.segmenter import SAMPLE_RATE as RECOGNIZER_RATE

PCM: Final = "audio/pcm"
PCMU: Final = "audio/pcmu"
PCMA: Final = "audio/pcma"
RATES: Final = {PCM: 24000, PCMU: 8000, PCMA: 8000}
BETA_NAMES: Final = {PCM: "pcm16", PCMU: "g711_ulaw", PCMA: "g711_alaw"}
FROM_BETA: Final = {name: fmt for fmt, name in BETA_NAMES.items()}

# Output deltas: long enough that a 24 kHz stream is ~10 frames a second, short enough that a client
# stopping playback at barge-in drops little, and that truncation (audio_end_ms) lands near a word.
DELTA_MIN_MS: Final = 100
DELTA_MAX_MS: Final = 200


def _ulaw_decode_table() -> np.ndarray:
    u = ~np.arange(256, dtype=np.int32) & 0xFF
    t = (((u & 0x0F) << 3) + 0x84) << ((u & 0x70) >> 4)
    return np.where(u & 0x80, 0x84 - t, t - 0x84).astype(np.int16)


def _alaw_decode_table() -> np.ndarray:
    a = np.arange(256, dtype=np.int32) ^ 0x55
    seg = (a & 0x70) >> 4
    t = (a & 0x0F) << 4
    t = np.where(seg == 0, t + 8, (t + 0x108) << np.maximum(seg - 1, 0))
    return np.where(a & 0x80, t, -t).astype(np.int16)


def _segment(value: np.ndarray, ends: tuple[int, ...]) -> np.ndarray:
    """The G.711 segment of each magnitude: the first ``ends`` entry it does not exceed (8 = over all)."""
    return np.searchsorted(np.asarray(ends), value, side="left")


def _ulaw_encode_table() -> np.ndarray:
    pcm = np.arange(-32768, 32768, dtype=np.int32) >> 2  # 14-bit
    mask = np.where(pcm < 0, 0x7F, 0xFF)
    magnitude = np.minimum(np.abs(pcm), 8159) + (0x84 >> 2)
    seg = _segment(magnitude, (0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF))
    code = np.where(
        seg >= 8, 0x7F, (np.minimum(seg, 7) << 4) | ((magnitude >> (np.minimum(seg, 7) + 1)) & 0x0F)
    )
    return (code ^ mask).astype(np.uint8)


def _alaw_encode_table() -> np.ndarray:
    pcm = np.arange(-32768, 32768, dtype=np.int32) >> 3  # 13-bit
    mask = np.where(pcm >= 0, 0xD5, 0x55)
    magnitude = np.where(pcm >= 0, pcm, -pcm - 1)
    seg = _segment(magnitude, (0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF))
    shift = np.where(seg < 2, 1, np.minimum(seg, 7))
    code = np.where(seg >= 8, 0x7F, (np.minimum(seg, 7) << 4) | ((magnitude >> shift) & 0x0F))
    return (code ^ mask).astype(np.uint8)


# Constant tables (computed once at import, never mutated): 256 int16 to decode, 65536 bytes to encode.
_DECODE = {PCMU: _ulaw_decode_table(), PCMA: _alaw_decode_table()}
_ENCODE = {PCMU: _ulaw_encode_table(), PCMA: _alaw_encode_table()}


@attrs.frozen
class AudioFormat:
    """One of the API's audio formats; ``type`` is ``audio/pcm``, ``audio/pcmu`` or ``audio/pcma``."""

    type: str = attrs.field(validator=attrs.validators.in_(RATES))

    @property
    def rate(self) -> int:
        return RATES[self.type]

    @property
    def bytes_per_sample(self) -> int:
        return 2 if self.type == PCM else 1

    def duration_ms(self, data: bytes) -> float:
        return len(data) / self.bytes_per_sample * 1000.0 / self.rate

    def to_ga(self) -> dict[str, object]:
        return {"type": PCM, "rate": self.rate} if self.type == PCM else {"type": self.type}

    def to_beta(self) -> str:
        return BETA_NAMES[self.type]

    def decode(self, data: bytes) -> np.ndarray:
        """Wire bytes → float32 samples at ``rate``.

        Raises:
            ValueError: PCM data with an odd number of bytes.
        """
        if self.type == PCM:
            return pcm16_to_float(data)
        codes = np.frombuffer(data, dtype=np.uint8)
        return _DECODE[self.type][codes].astype(np.float32) / np.float32(32768.0)

    def encode(self, samples: np.ndarray) -> bytes:
        """Float samples at ``rate`` → wire bytes."""
        pcm = float_to_pcm16(samples)
        if self.type == PCM:
            return pcm
        ints = np.frombuffer(pcm, dtype="<i2").astype(np.int32) + 32768
        return _ENCODE[self.type][ints].tobytes()


DEFAULT_FORMAT: Final = AudioFormat(PCM)


class InputAudio:
    """The client's input audio in ``fmt`` → PCM16LE at ``to_rate`` (the recognizer's), streaming.

    One per session and format: the resampler keeps its filter history across appends, so the audio the
    listener gets is the same however the client chunks it.
    """

    def __init__(self, fmt: AudioFormat, *, to_rate: int = RECOGNIZER_RATE) -> None:
        self.format = fmt
        self.to_rate = to_rate
        self._resampler = Resampler(fmt.rate, to_rate)

    def convert(self, data: bytes) -> bytes:
        """Raises ``ValueError`` for PCM with an odd number of bytes."""
        return float_to_pcm16(self._resampler.process(self.format.decode(data)))


def convert_clip(fmt: AudioFormat, data: bytes, *, to_rate: int = RECOGNIZER_RATE) -> bytes:
    """A whole clip (an ``input_audio`` item) in ``fmt`` → PCM16LE at ``to_rate``."""
    return float_to_pcm16(resample(fmt.decode(data), fmt.rate, to_rate))


class OutputAudio:
    """One response's audio → deltas in the client's format, each ``min_ms`` to ``max_ms`` long.

    ``feed`` takes PCM16LE at whatever rate the synthesizer speaks (Piper: 22050 Hz) and returns the
    deltas now complete; up to ``min_ms`` is held back for the next call. ``end_phrase`` returns what is
    held back when a phrase's audio is complete, ``finish`` the rest when the response completed; a
    cancelled response simply drops the object, and its held-back tail with it. ``sent_ms`` is the
    duration of everything returned so far.
    """

    def __init__(self, fmt: AudioFormat, *, min_ms: int = DELTA_MIN_MS, max_ms: int = DELTA_MAX_MS) -> None:
        self.format = fmt
        self._min = fmt.rate * min_ms // 1000
        self._max = fmt.rate * max_ms // 1000
        self._resampler: Resampler | None = None
        self._pending = np.zeros(0, dtype=np.float32)
        self._sent = 0  # samples at the output rate

    @property
    def sent_ms(self) -> float:
        return self._sent * 1000.0 / self.format.rate

    def feed(self, pcm16: bytes, sample_rate: int) -> list[bytes]:
        """Raises ``ValueError`` for audio with an odd number of bytes."""
        samples = pcm16_to_float(pcm16)
        if self._resampler is None or self._resampler.from_rate != sample_rate:
            tail = self._resampler.flush() if self._resampler is not None else np.zeros(0, np.float32)
            self._resampler = Resampler(sample_rate, self.format.rate)
            self._pending = np.concatenate([self._pending, tail])
        self._pending = np.concatenate([self._pending, self._resampler.process(samples)])
        return self._take(final=False)

    def end_phrase(self) -> list[bytes]:
        """A phrase's audio is complete: send what is held back rather than keep its last words waiting
        for the next phrase (which may be seconds away). The resampler keeps its history: the signal
        goes on."""
        return self._take(final=True)

    def finish(self) -> list[bytes]:
        if self._resampler is not None:
            self._pending = np.concatenate([self._pending, self._resampler.flush()])
            self._resampler = None
        return self._take(final=True)

    def _take(self, *, final: bool) -> list[bytes]:
        deltas = []
        while self._pending.size >= self._max:
            deltas.append(self._emit(self._max))
        if self._pending.size >= self._min or (final and self._pending.size):
            deltas.append(self._emit(self._pending.size))
        return deltas

    def _emit(self, count: int) -> bytes:
        chunk, self._pending = self._pending[:count], self._pending[count:]
        self._sent += count
        return self.format.encode(chunk)
