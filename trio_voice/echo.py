"""Telling the reply's own echo from the user's voice in the microphone, sans-I/O.

On a speaker-phone (or a laptop without echo cancellation) the reply the server sends comes back in the
microphone a little later, quieter and coloured by the speaker and the room. Speech detection would take
it for the user and the reply would interrupt itself. :class:`EchoGuard` knows what was played and when,
and judges each 32 ms microphone chunk: is it explained by the reply's audio as heard through some echo
path? Speech detection then ignores the chunks that are.

How, per chunk (16 kHz on both sides; reply audio is resampled as it is recorded):

1. Gates: a quiet chunk is not judged; if no reply audio was playing within the plausible delays
   (0 to ``max_delay_ms`` before the chunk), nothing is echo. So with no reply playing, or during its
   pauses, nothing is ever ignored.
2. Delay: the normalised cross-correlation of the last ``window_ms`` of microphone audio with the
   reference (the reply audio on the microphone's timeline) over every delay in range, by FFT; the peak
   is the echo path's delay (network, client buffer, output latency, air).
3. Path: a least-squares FIR filter of ``taps`` taps around that delay (speaker colouring, early
   reflections), fitted on the whole window from the correlations already at hand plus an exact
   normal-equation matrix (:func:`_gram`).
4. Verdict: the share of the *newest chunk's* energy that the filtered reference predicts. Echo alone:
   0.95-1.0 with a pure delay. The user speaking, alone or over the echo: a path fitted on the window
   cannot predict a voice that is not the reply's, so the share falls as soon as the user's voice is in
   the chunk. Judging the newest chunk rather than the window keeps barge-in immediate. A share of 0.9
   is echo for sure and teaches the path's delay; a lower share (down to ``explained``) counts only at
   that delay, because a voice like the reply's (Piper's reply, a user with a similar voice) now and
   then fits some other delay by chance for a chunk.
5. Reverberation: a room's tail outlasts the taps and goes partly unexplained. The guard learns how loud
   the echo comes back (from chunks it explains clearly) and also calls echo a chunk that the path
   explains at least ``tail_explained`` of and that is no louder than the echo of the reply's loudest
   chunk over the last ``tail_ms``.

Measured on Piper speech (a reply; its echo 150 ms later at a quarter of the amplitude, over noise; a
different sentence in the same voice as the user): every echo chunk recognised with a pure delay, 94-96%
in a simulated 300 ms room with a small speaker's band limit, never two misses in a row; the user's
voice alone never taken for echo; over the echo, its first two chunks are not echo (so speech detection
starts at once) even at a quarter of the echo's amplitude, and no chunk where it is twice as loud as the
echo is. About 0.4 ms per judged chunk on one core; quiet chunks and chunks with no reply playing cost
nothing.

Limits, said plainly: the guard explains energy, it does not cancel it, so a user much quieter at the
microphone than the echo is taken for echo; a non-linear speaker or a changing echo path lowers the
share explained; the reference's timeline assumes the client plays reply audio back to back from when it
arrives, unless the client reports its playback position (:meth:`EchoGuard.reply_played`).

Timeline: milliseconds of the microphone stream (the listener's clock, the same as the segmenter's). The
caller converts the server times at which it sent reply audio into that clock.
"""

from __future__ import annotations

import math

import attrs
import numpy as np

from .audio import Resampler, pcm16_to_float

SAMPLE_RATE = 16000
CHUNK_SAMPLES = 512  # the VAD's chunk: 32 ms
_PRE = 16  # filter taps before the correlation peak (1 ms): the peak may sit on a later reflection
_CLEAR_ECHO = 0.9  # a chunk explained this well is echo for sure, and teaches the path's delay and loudness
_DRIFT = 20 * SAMPLE_RATE // 1000  # how far the path's delay may wander between clear echoes (buffers adapt)
_RIDGE = 1e-3  # regularisation of the path fit, relative to the reference's energy over the window


@attrs.frozen(kw_only=True)
class EchoSettings:
    max_delay_ms: int = 500  # the longest echo path considered: network, client buffer, output, air
    window_ms: int = 256  # microphone audio the echo path is fitted on
    taps: int = 64  # FIR taps of the path (4 ms): speaker colouring and the earliest reflections
    explained: float = 0.7  # share of a chunk's energy the reply must account for to be its echo
    min_reference_rms: float = 0.003  # reply audio quieter than this (over the delay range) is not playing
    min_chunk_rms: float = 0.003  # chunks quieter than this are not judged: there is nothing to ignore
    # The room's reverberation outlasts the taps. A chunk the path explains at least in part, and no
    # louder than the echo of the reply's loudest chunk over the last tail_ms, is that tail.
    tail_ms: int = 300
    tail_explained: float = 0.4

    def __attrs_post_init__(self) -> None:
        if (
            self.window_ms * SAMPLE_RATE // 1000 < CHUNK_SAMPLES
            or self.taps < 1
            or min(self.max_delay_ms, self.tail_ms) < 0
        ):
            raise ValueError(f"impossible echo settings: {self!r}")


@attrs.frozen
class EchoVerdict:
    echo: bool
    explained: float  # share of the chunk's energy the reply's echo accounts for, 0 to 1
    delay_ms: float | None = None  # the echo path's delay, when reply audio was playing


_QUIET = EchoVerdict(False, 0.0)


@attrs.define
class _Segment:
    start: int  # stream sample at which it plays
    samples: np.ndarray
    reply: object
    offset: int  # its position within its reply, in 16 kHz samples


class EchoGuard:
    """One session's record of reply audio on the microphone's timeline, and the per-chunk judgement."""

    def __init__(self, settings: EchoSettings | None = None) -> None:
        self.settings = settings or EchoSettings()
        s = self.settings
        self._window = s.window_ms * SAMPLE_RATE // 1000
        self._max_lag = s.max_delay_ms * SAMPLE_RATE // 1000
        self._position = 0  # stream sample after the last chunk checked
        self._mic = np.zeros(self._window, dtype=np.float32)
        self._segments: list[_Segment] = []
        self._queue_end = 0  # where the client's playback queue runs dry
        self._reply: object = None
        self._resampler: Resampler | None = None
        self._anchor = 0  # stream sample at which the current reply's first sample plays
        self._reply_in = 0.0  # the current reply's input so far, in 16 kHz samples
        self._reply_out = 0  # its resampled output so far
        self._echo_gain: float | None = None  # echo energy / reply energy, learnt from clear echo
        self._path_delay: int | None = None  # the echo path's delay in samples, learnt from clear echo

    @property
    def position_ms(self) -> float:
        return self._position * 1000 / SAMPLE_RATE

    # --- what was played --------------------------------------------------------------------------
    def reply_audio(self, pcm: bytes, sample_rate: int, *, sent_at_ms: float, reply: object = None) -> None:
        """Reply audio sent to the client at ``sent_at_ms``: PCM16LE mono at ``sample_rate``.

        It plays after whatever is queued, and not before it arrives. Audio of a new ``reply`` (any
        hashable key, such as the response id) starts a new stretch; audio of the same one follows on.

        Raises:
            ValueError: ``pcm`` has an odd number of bytes, or ``sample_rate`` is not a positive integer.
        """
        samples = pcm16_to_float(pcm)
        if reply != self._reply or self._resampler is None or self._resampler.from_rate != sample_rate:
            self._finish_reply()
            self._reply, self._resampler = reply, Resampler(sample_rate, SAMPLE_RATE)
            self._reply_in, self._reply_out = 0.0, 0
            self._anchor = max(_samples(sent_at_ms), self._queue_end)
        # A client whose queue ran dry plays late audio when it arrives: the rest of the reply moves too.
        chunk_start = self._anchor + round(self._reply_in)
        self._anchor += max(0, _samples(sent_at_ms) - chunk_start)
        self._reply_in += samples.size * SAMPLE_RATE / sample_rate
        self._add(self._resampler.process(samples))
        self._queue_end = max(self._queue_end, self._anchor + round(self._reply_in))

    def reply_played(self, played_ms: float, *, at_ms: float) -> None:
        """The client reports that, at ``at_ms``, it had played ``played_ms`` of the current reply.

        The rest of the reply is moved to match (the client plays it back to back from there).
        """
        if self._reply is None:
            return
        shift = _samples(at_ms - played_ms) - self._anchor
        played = _samples(played_ms)
        for segment in self._segments:
            if segment.reply == self._reply and segment.offset + segment.samples.size > played:
                segment.start += shift
        self._anchor += shift
        self._queue_end += shift

    def reply_stopped(self, at_ms: float) -> None:
        """Playback stops at ``at_ms`` (the reply was cancelled and the client flushed its queue)."""
        self._finish_reply()
        cut = _samples(at_ms)
        kept = []
        for segment in self._segments:
            if segment.start < cut:
                segment.samples = segment.samples[: cut - segment.start]
                kept.append(segment)
        self._segments = kept
        self._queue_end = min(self._queue_end, cut)

    # --- what is heard ----------------------------------------------------------------------------
    def check(self, chunk: np.ndarray) -> EchoVerdict:
        """Judge the next 512-sample chunk of 16 kHz microphone audio (chunks must come in order).

        Raises:
            ValueError: ``chunk`` is not 512 samples.
        """
        chunk = np.asarray(chunk, dtype=np.float32)
        if chunk.shape != (CHUNK_SAMPLES,):
            raise ValueError(f"the echo guard takes chunks of {CHUNK_SAMPLES} samples, got {chunk.shape}")
        self._mic = np.concatenate([self._mic[CHUNK_SAMPLES:], chunk])
        self._position += CHUNK_SAMPLES
        s = self.settings
        tail = math.ceil(s.tail_ms * SAMPLE_RATE / 1000 / CHUNK_SAMPLES) * CHUNK_SAMPLES  # whole chunks
        self._forget_before(self._position - max(self._window, CHUNK_SAMPLES + tail) - self._max_lag - s.taps)
        if _rms(chunk) < s.min_chunk_rms:
            return _QUIET
        # Reference from the longest delay (plus the taps after the peak) to the shortest (less _PRE).
        lo = self._position - self._window - self._max_lag - s.taps
        reference = self._reference(lo, self._position + _PRE)
        recent = reference[-(CHUNK_SAMPLES + self._max_lag + s.taps + _PRE) :]
        if _rms(recent) < s.min_reference_rms:
            return _QUIET
        explained, delay = self._fit(reference)
        return self._decide(chunk, explained, delay, tail)

    def _decide(self, chunk: np.ndarray, explained: float, delay: int, tail: int) -> EchoVerdict:
        """Echo or not, from the fit; learn the echo path's delay and loudness from clear echo."""
        s = self.settings
        clear = explained >= _CLEAR_ECHO
        if clear:
            self._path_delay = delay
        path = self._path_delay
        # Below clear echo, a fit only counts at the path's own delay: a voice like the reply's (Piper
        # talking to Piper) can fit some other delay by chance, never for long at this one.
        on_path = path is not None and abs(delay - path) <= _DRIFT
        heard = float(np.sum(np.square(chunk, dtype=np.float64)))
        # What the reply played one path delay ago, chunk by chunk over the tail, newest last.
        lag = delay if path is None else path
        played = self._reference(self._position - lag - CHUNK_SAMPLES - tail, self._position - lag)
        energies = np.sum(np.square(played.reshape(-1, CHUNK_SAMPLES), dtype=np.float64), axis=1)
        if clear and energies[-1] > s.min_reference_rms**2 * CHUNK_SAMPLES:
            gain = heard / energies[-1]
            self._echo_gain = gain if self._echo_gain is None else 0.8 * self._echo_gain + 0.2 * gain
        delay_ms = delay * 1000 / SAMPLE_RATE
        if clear or (on_path and explained >= s.explained):
            return EchoVerdict(True, explained, delay_ms)
        in_tail = (
            self._echo_gain is not None
            and path is not None
            and explained >= s.tail_explained
            and heard <= self._echo_gain * float(energies.max())
        )
        return EchoVerdict(in_tail, explained, delay_ms)

    def _fit(self, reference: np.ndarray) -> tuple[float, int]:
        """Fit the echo path on the window: (share of the newest chunk it explains, delay in samples)."""
        s, w, taps = self.settings, self._window, self.settings.taps
        mic = self._mic.astype(np.float64)
        ref = reference.astype(np.float64)
        # cc[k] = Σ_i mic[i]·ref[i + k]: mic sample i lines up with ref[i + k] under a delay of
        # (len(ref) - w - _PRE) - k samples. Every k from 0 to len(ref) - w is computed.
        n = 1 << math.ceil(math.log2(ref.size + w))
        cc = np.fft.irfft(np.fft.rfft(mic[::-1], n) * np.fft.rfft(ref, n), n)[w - 1 : ref.size]
        energy = np.concatenate([[0.0], np.cumsum(ref * ref)])
        ref_energy = energy[w:] - energy[:-w]  # of ref[k : k + w], for each k
        # Delays 0 … max_delay: k from (len(ref) - w - _PRE) down to taps (room for the taps after it).
        k_hi = ref.size - w - _PRE
        k_lo = k_hi - self._max_lag
        # Delays at which the reply was (nearly) silent get a floor, not a tiny divisor: the FFT's
        # round-off there would otherwise look like a perfect match.
        floor = s.min_reference_rms**2 * w
        ncc = cc[k_lo : k_hi + 1] / np.sqrt(np.maximum(ref_energy[k_lo : k_hi + 1], floor) * (mic @ mic))
        peak = k_lo + int(np.argmax(ncc))
        # The path's taps are the regressors ref[i + k0 + a], a = 0 … taps-1: from taps - _PRE - 1
        # samples after the peak's delay to _PRE before it (k is the delay counted backwards).
        k0 = peak + _PRE - taps + 1
        segment = ref[k0 : k0 + w + taps - 1]
        gram = _gram(segment, w, taps)
        gram[np.diag_indices(taps)] += _RIDGE * max(float(gram[0, 0]), 1e-12)
        h = np.linalg.solve(gram, cc[k0 : k0 + taps])
        # The newest chunk's echo as the fitted path predicts it.
        first = w - CHUNK_SAMPLES
        predicted = np.correlate(ref[first + k0 : w + k0 + taps - 1], h, mode="valid")
        newest = mic[first:]
        residual = newest - predicted
        explained = float(np.clip(1.0 - (residual @ residual) / (newest @ newest), 0.0, 1.0))
        return explained, k_hi - peak

    # --- the reference timeline -------------------------------------------------------------------
    def _add(self, samples: np.ndarray) -> None:
        if samples.size:
            start = self._anchor + self._reply_out
            self._segments.append(_Segment(start, samples, self._reply, self._reply_out))
            self._reply_out += samples.size

    def _finish_reply(self) -> None:
        if self._resampler is not None:
            self._add(self._resampler.flush())
        self._reply, self._resampler = None, None

    def _forget_before(self, sample: int) -> None:
        self._segments = [seg for seg in self._segments if seg.start + seg.samples.size > sample]

    def _reference(self, lo: int, hi: int) -> np.ndarray:
        """The played reply audio over stream samples ``[lo, hi)``, silence where nothing played."""
        out = np.zeros(hi - lo, dtype=np.float32)
        for seg in self._segments:
            a, b = max(lo, seg.start), min(hi, seg.start + seg.samples.size)
            if a < b:
                out[a - lo : b - lo] += seg.samples[a - seg.start : b - seg.start]
        return out


def _gram(s: np.ndarray, w: int, taps: int) -> np.ndarray:
    """The exact normal-equation matrix ``G[a, b] = Σ_{i<w} s[i+a]·s[i+b]`` for ``a, b < taps``.

    ``s`` holds ``w + taps - 1`` samples. The first row is an autocorrelation; each step down a diagonal
    adds the product entering the window and drops the one leaving it. (The usual Toeplitz shortcut, one
    autocorrelation for every diagonal, is wrong exactly when it matters: at a reply's first words, whose
    energy all sits at the window's end.)
    """
    first_row = np.correlate(s, s[:w], mode="valid")  # G[0, m]
    padded = np.concatenate([s, np.zeros(taps)])
    j = np.arange(taps)[:, None]
    m = np.arange(taps)[None, :]
    change = padded[w + j] * padded[w + j + m] - padded[j] * padded[j + m]
    along = first_row[None, :] + np.vstack([np.zeros((1, taps)), np.cumsum(change, axis=0)[:-1]])
    a = np.arange(taps)
    return along[np.minimum(a[:, None], a[None, :]), np.abs(a[:, None] - a[None, :])]


def _samples(ms: float) -> int:
    return round(ms * SAMPLE_RATE / 1000)


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))
