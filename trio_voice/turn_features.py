"""Smart Turn's input, sans I/O: the last 8 s of an utterance as Whisper log-mel features, numpy only.

The Smart Turn v3 end-of-turn model is Whisper tiny's encoder with a classifier on top, so it reads what
Whisper reads: 80 log-mel bands every 10 ms. It was trained on features from transformers'
``WhisperFeatureExtractor(chunk_length=8)`` with ``do_normalize=True``; pipecat vendors a numpy copy of
that (``pipecat/audio/turn/smart_turn/_whisper_features.py``), and this module computes the same numbers
without transformers, torch or pipecat (the tests compare the two on speech and noise). The steps:

1. :func:`fit_window`: keep the last 8 s (128 000 samples at 16 kHz); a shorter utterance gets zeros in
   *front*, so the speech sits at the end of the window where the model looks for the turn's end
   (pipecat's ``LocalSmartTurnAnalyzerV3`` and the model card both say so).
2. Zero-mean, unit-variance normalisation of the whole window (padding included), in float32.
3. A centred STFT: reflect-pad 200 samples each side, a periodic Hann window of 400 samples (25 ms), a hop
   of 160 (10 ms): 801 frames; the power spectrum ``|rfft|²`` in float64.
4. The slaney mel filterbank (80 bands, 0-8 kHz; the one whisper.cpp reads, from
   ``trio_voice.models.whisper_ggml``), floored at 1e-10, ``log10``; the last frame is dropped (800 left).
5. Whisper's dynamic range clamp (at most 8 decades below the loudest cell) and scaling
   ``(x + 4) / 4``.

Speed: most of the window is padding for a short question, and after normalisation the padding is one
constant, so every frame that lies wholly inside it has the same spectrum (the Hann window's, scaled).
That spectrum is computed once and the FFT runs only over the frames that touch the audio: a 2 s
question costs a quarter of the full 801-frame transform.
"""

from __future__ import annotations

import functools

import numpy as np

SAMPLE_RATE = 16000
WINDOW_SECONDS = 8
WINDOW_SAMPLES = WINDOW_SECONDS * SAMPLE_RATE  # 128 000
N_FFT = 400  # 25 ms analysis frames
HOP = 160  # 10 ms between frames
N_MELS = 80
N_FRAMES = WINDOW_SAMPLES // HOP  # 800 frames reach the model (the STFT makes 801; the last is dropped)
# transformers' constants: the variance guard of the waveform normalisation, the mel floor before log10,
# and the dynamic range kept below the loudest cell (8 decades of power = 80 dB).
_NORM_EPS = 1e-7
_MEL_FLOOR = 1e-10
_DYNAMIC_RANGE = 8.0


def fit_window(audio: np.ndarray) -> np.ndarray:
    """The model's 8 s window of ``audio`` (16 kHz mono): its last 8 s, or all of it after leading zeros.

    Returns float32 of exactly ``WINDOW_SAMPLES`` samples.

    Raises:
        ValueError: ``audio`` is not one-dimensional.
    """
    x = np.asarray(audio, dtype=np.float32)
    if x.ndim != 1:
        raise ValueError(f"audio must be mono (one dimension), got shape {x.shape}")
    if x.size >= WINDOW_SAMPLES:
        return x[-WINDOW_SAMPLES:].copy()
    return np.concatenate([np.zeros(WINDOW_SAMPLES - x.size, dtype=np.float32), x])


def log_mel_features(audio: np.ndarray) -> np.ndarray:
    """Whisper log-mel features of an utterance as Smart Turn reads them: float32 ``(80, 800)``.

    ``audio`` is 16 kHz mono float audio of any length: it is fitted with :func:`fit_window` first.
    Values lie in roughly [-1, 1.5].

    Raises:
        ValueError: ``audio`` is not one-dimensional.
    """
    window = fit_window(audio)
    leading = WINDOW_SAMPLES - min(np.asarray(audio).size, WINDOW_SAMPLES)
    # Normalised in float32, as transformers does it (it normalises the float32 buffer it padded).
    x = (window - window.mean()) / np.sqrt(window.var() + np.float32(_NORM_EPS))
    log_spec = np.log10(np.maximum(_MEL_FLOOR, _mel_power(x, leading)))[:, :N_FRAMES]
    log_spec = np.maximum(log_spec, log_spec.max() - _DYNAMIC_RANGE)
    return ((log_spec + 4.0) / 4.0).astype(np.float32)


def model_input(audio: np.ndarray) -> np.ndarray:
    """The ONNX model's ``input_features`` for one utterance: float32 ``(1, 80, 800)``."""
    return log_mel_features(audio)[np.newaxis]


def _mel_power(x: np.ndarray, leading: int) -> np.ndarray:
    """Mel band power of the 801 centred, Hann-windowed frames of ``x``: float64 ``(80, 801)``.

    ``x[:leading]`` is known to be one constant ``c`` (normalised zero padding). Frame ``k`` covers
    ``x[k·HOP - 200 : k·HOP + 200]``, its start reflected about ``x[0]``; reflecting a constant gives the
    same constant, so every frame with ``k·HOP + 200 < leading`` sees only ``c`` and its mel power is
    ``c² · mel(|rfft(hann)|²)``, computed once. The FFT and the filterbank product cover the rest.
    """
    pad = N_FFT // 2
    n_frames = 1 + x.size // HOP
    constant = 0 if leading <= pad else min(n_frames, (leading - pad - 1) // HOP + 1)
    padded = np.pad(x.astype(np.float64), (pad, pad), mode="reflect")
    frames = np.lib.stride_tricks.sliding_window_view(padded[constant * HOP :], N_FFT)[::HOP]
    power = np.abs(np.fft.rfft(frames * _hann(), axis=-1)) ** 2  # (frames, 201)
    mel = np.empty((N_MELS, n_frames), dtype=np.float64)
    if constant:
        c = float(x[0])
        mel[:, :constant] = (c * c * _hann_mel())[:, None]
    bins, weights, starts = _mel_sparse()
    mel[:, constant:] = np.add.reduceat(power[:, bins] * weights, starts, axis=1).T
    return mel


@functools.cache
def _hann() -> np.ndarray:
    """The periodic Hann window of ``N_FFT`` samples (torch's ``hann_window`` default), float64."""
    return np.hanning(N_FFT + 1)[:-1]


@functools.cache
def _hann_mel() -> np.ndarray:
    """The mel power of a frame of ones: ``mel(|rfft(hann)|²)``."""
    bins, weights, starts = _mel_sparse()
    return np.add.reduceat((np.abs(np.fft.rfft(_hann())) ** 2)[bins] * weights, starts)


@functools.cache
def _mel_sparse() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The filterbank as its 391 non-zero weights: (bin of each, weight, where each band's run starts).

    A triangle spans two or three FFT bins, so the projection is a gather, a multiply and a segmented
    sum rather than a dense matrix product. That also keeps it out of BLAS: numpy's OpenBLAS runs a
    product of this size on every core and spin-waits, which on two busy cores made it 20-40 times
    slower (measured 16 ms against 0.7 ms for the whole of a 2 s question).
    """
    filters = _mel_filters()
    bands, bins = np.nonzero(filters)  # row-major: grouped by band, in band order
    starts = np.searchsorted(bands, np.arange(N_MELS))
    if np.any(np.diff(np.append(starts, bands.size)) == 0):
        raise AssertionError("an empty mel band: reduceat would misread it")  # not so for 80 bands at 16 kHz
    return bins, filters[bands, bins], starts


@functools.cache
def _mel_filters() -> np.ndarray:
    """The slaney mel filterbank, float64 ``(80, 201)``."""
    from trio_voice.models.whisper_ggml import mel_filters

    return mel_filters(SAMPLE_RATE, N_FFT, N_MELS).astype(np.float64)
