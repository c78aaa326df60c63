"""Audio maths, sans I/O: PCM16 conversion, band-limited resampling (one-shot and streaming), WAV bytes.

Everything here is pure numpy on values in memory: no files, no sockets, no event loop. Audio is mono;
float audio is ``float32`` in [-1, 1), PCM is 16-bit little-endian signed.

Resampling is rational (``to_rate / from_rate = L / M`` in lowest terms) with a Kaiser-windowed sinc
low-pass evaluated directly at every output instant, through a polyphase table of ``L`` rows. The
cut-off sits below the lower of the two Nyquist frequencies, so downsampling suppresses what would
alias and upsampling removes the images. :class:`Resampler` keeps the filter history across chunks, so
chunked input gives the same samples as one call on the whole signal (no clicks at chunk boundaries).
"""

from __future__ import annotations

import io
import math
import wave

import numpy as np

# The pass band ends at ROLLOFF × the lower Nyquist frequency; the transition band is centred about
# there and is done just above that Nyquist (16 kHz output: flat to ~6.4 kHz, > 80 dB down from 8 kHz).
ROLLOFF = 0.9
# Zero crossings of the sinc on each side of the centre tap: longer filters, sharper transition.
ZERO_CROSSINGS = 24
# Kaiser window shape: ~80 dB of stop-band attenuation.
KAISER_BETA = 8.0
# Outputs computed per vectorised block, bounding the gather matrix (block × taps floats).
_BLOCK = 4096


def pcm16_to_float(data: bytes) -> np.ndarray:
    """Decode PCM16LE mono bytes to float32 samples in [-1, 1).

    Raises:
        ValueError: ``data`` has an odd number of bytes.
    """
    if len(data) % 2:
        raise ValueError(f"PCM16 data must have an even number of bytes, got {len(data)}")
    return np.frombuffer(data, dtype="<i2").astype(np.float32) / np.float32(32768.0)


def float_to_pcm16(x: np.ndarray) -> bytes:
    """Encode float samples as PCM16LE mono bytes, rounding and clipping to the 16-bit range."""
    scaled = np.round(np.asarray(x, dtype=np.float64) * 32768.0)
    return np.clip(scaled, -32768, 32767).astype("<i2").tobytes()


def resample(x: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """Resample a whole mono signal from ``from_rate`` to ``to_rate`` Hz, low-pass filtered.

    Returns ``ceil(len(x) * to_rate / from_rate)`` float32 samples; the same as feeding ``x`` to a
    :class:`Resampler` in any number of chunks and then calling :meth:`Resampler.flush`.
    """
    x = np.asarray(x, dtype=np.float32)
    if from_rate == to_rate:
        _check_rates(from_rate, to_rate)
        return x.copy()
    resampler = Resampler(from_rate, to_rate)
    return np.concatenate([resampler.process(x), resampler.flush()])


class Resampler:
    """A streaming band-limited resampler: feed chunks to :meth:`process`, end with :meth:`flush`.

    Output lags input by the filter's half-length (``ZERO_CROSSINGS`` periods of the lower rate, about
    1.5 ms for 16 kHz): :meth:`process` returns every output sample whose filter window is complete,
    and :meth:`flush` returns the rest, treating the signal as followed by silence. After a flush the
    resampler starts afresh, ready for a new signal.
    """

    def __init__(self, from_rate: int, to_rate: int) -> None:
        _check_rates(from_rate, to_rate)
        self.from_rate = from_rate
        self.to_rate = to_rate
        g = math.gcd(from_rate, to_rate)
        self._up = to_rate // g  # L
        self._down = from_rate // g  # M
        self._identity = from_rate == to_rate
        if not self._identity:
            self._half, self._table = _polyphase_table(self._up, self._down)
        self._reset()

    def _reset(self) -> None:
        self._received = 0  # input samples seen since the start of the signal
        self._next = 0  # index of the next output sample to compute
        if not self._identity:
            # The buffer holds input from absolute index ``_base`` on; the signal is preceded by silence.
            self._base = -(self._half - 1)
            self._buf = np.zeros(self._half - 1, dtype=np.float32)

    def process(self, chunk: np.ndarray) -> np.ndarray:
        """Take the next chunk of input and return every output sample that is now complete."""
        chunk = np.asarray(chunk, dtype=np.float32).reshape(-1)
        if self._identity:
            self._received += chunk.size
            return chunk.copy()
        self._buf = np.concatenate([self._buf, chunk])
        self._received += chunk.size
        # Output n needs input up to index floor(n·M/L) + half; count the outputs that have it.
        last_centre = self._received - 1 - self._half
        end = max(self._next, -(-(last_centre + 1) * self._up // self._down))
        return self._emit(end)

    def flush(self) -> np.ndarray:
        """Return the remaining output, as if the signal were followed by silence; then start afresh."""
        if self._identity:
            self._reset()
            return np.zeros(0, dtype=np.float32)
        total = -(-self._received * self._up // self._down)
        self._buf = np.concatenate([self._buf, np.zeros(self._half + 1, dtype=np.float32)])
        out = self._emit(max(total, self._next))
        self._reset()
        return out

    def _emit(self, end: int) -> np.ndarray:
        """Compute outputs ``_next`` up to ``end`` and drop input no later output needs."""
        taps = 2 * self._half
        n = np.arange(self._next, end, dtype=np.int64)
        pieces = []
        for start in range(0, n.size, _BLOCK):
            block = n[start : start + _BLOCK]
            centre = block * self._down // self._up
            phase = block * self._down % self._up
            first = centre - self._half + 1 - self._base
            frames = self._buf[first[:, None] + np.arange(taps)]
            pieces.append(np.einsum("ij,ij->i", frames, self._table[phase]))
        self._next = end
        keep_from = self._next * self._down // self._up - self._half + 1
        if keep_from > self._base:
            self._buf = self._buf[keep_from - self._base :]
            self._base = keep_from
        if not pieces:
            return np.zeros(0, dtype=np.float32)
        return np.concatenate(pieces).astype(np.float32, copy=False)


def _check_rates(from_rate: int, to_rate: int) -> None:
    for rate in (from_rate, to_rate):
        if not isinstance(rate, int) or rate <= 0:
            raise ValueError(f"sample rates must be positive integers, got {rate!r}")


def _polyphase_table(up: int, down: int) -> tuple[int, np.ndarray]:
    """The filter taps for every output phase: (half length in input samples, table of L × 2·half).

    Row ``p`` weights input samples ``c - half + 1 … c + half`` for an output whose instant lies a
    fraction ``p / L`` of an input period after input sample ``c``. Each row sums to one (unit DC gain).
    """
    # Cut-off in cycles per input sample is cutoff / 2; below the lower of the two Nyquist frequencies.
    cutoff = ROLLOFF * min(1.0, up / down)
    reach = ZERO_CROSSINGS / cutoff  # the window's half-width in input samples
    half = math.ceil(reach)
    frac = np.arange(up, dtype=np.float64)[:, None] / up
    offsets = frac + (half - 1) - np.arange(2 * half, dtype=np.float64)[None, :]
    inside = np.clip(1.0 - (offsets / reach) ** 2, 0.0, None)
    window = np.i0(KAISER_BETA * np.sqrt(inside)) / np.i0(KAISER_BETA)
    window[np.abs(offsets) >= reach] = 0.0
    table = cutoff * np.sinc(cutoff * offsets) * window
    table /= table.sum(axis=1, keepdims=True)
    return half, table.astype(np.float32)


def wav_bytes(pcm16: bytes, sample_rate: int) -> bytes:
    """Wrap PCM16LE mono samples in a WAV container."""
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(pcm16)
    return out.getvalue()


def read_wav(data: bytes) -> tuple[np.ndarray, int]:
    """Decode a PCM WAV file to (float32 mono samples, sample rate); channels are averaged.

    Raises:
        ValueError: ``data`` is not a PCM WAV file with 8, 16, 24 or 32-bit samples.
    """
    try:
        with wave.open(io.BytesIO(data), "rb") as w:
            channels, width, rate = w.getnchannels(), w.getsampwidth(), w.getframerate()
            raw = w.readframes(w.getnframes())
    except (wave.Error, EOFError) as exc:
        raise ValueError(f"not a readable PCM WAV file: {exc}") from None
    if width == 1:
        samples = (np.frombuffer(raw, dtype=np.uint8).astype(np.float32) - 128.0) / 128.0
    elif width == 2:
        samples = np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0
    elif width == 3:
        b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        ints = (b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)) << 8 >> 8  # sign-extend 24 bits
        samples = ints.astype(np.float32) / 8388608.0
    elif width == 4:
        samples = (np.frombuffer(raw, dtype="<i4").astype(np.float64) / 2147483648.0).astype(np.float32)
    else:
        raise ValueError(f"unsupported WAV sample width: {width} bytes")
    samples = samples[: samples.size - samples.size % channels]
    if channels > 1:
        samples = samples.reshape(-1, channels).mean(axis=1, dtype=np.float32)
    return samples.astype(np.float32, copy=False), rate
