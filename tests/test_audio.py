"""Tests of the sans-I/O audio maths: PCM16 conversion, resampling (one-shot and streaming), WAV bytes."""

from __future__ import annotations

import io
import wave

import numpy as np
import pytest

from trio_voice.audio import (
    Resampler,
    float_to_pcm16,
    pcm16_to_float,
    read_wav,
    resample,
    wav_bytes,
)

RATE_PAIRS = [
    (8000, 16000),
    (16000, 8000),
    (22050, 16000),
    (24000, 16000),
    (44100, 16000),
    (48000, 16000),
    (16000, 24000),
    (16000, 48000),
    (22050, 24000),
    (16000, 22050),
]


def tone(freq: float, rate: int, seconds: float = 0.5, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def rms_amplitude(x: np.ndarray, trim: int = 400) -> float:
    """The amplitude of a sine from its RMS, away from the edges."""
    return float(np.sqrt(2 * np.mean(np.square(x[trim:-trim], dtype=np.float64))))


# --- PCM16 -----------------------------------------------------------------------------------------


def test_pcm16_round_trip_is_exact():
    """Every 16-bit value survives PCM → float → PCM unchanged."""
    pcm = np.arange(-32768, 32768, dtype="<i2").tobytes()
    assert float_to_pcm16(pcm16_to_float(pcm)) == pcm


def test_pcm16_to_float_scales_to_unit_range():
    """Full-scale PCM maps to -1.0 and just under +1.0, as float32."""
    x = pcm16_to_float(np.array([-32768, 0, 16384, 32767], dtype="<i2").tobytes())
    assert x.dtype == np.float32
    assert x.tolist() == [-1.0, 0.0, 0.5, 32767 / 32768]


def test_float_to_pcm16_clips_out_of_range_samples():
    """Samples beyond ±1 clip to the 16-bit limits instead of wrapping around."""
    pcm = float_to_pcm16(np.array([-3.0, 1.5, 1.0], dtype=np.float32))
    assert np.frombuffer(pcm, dtype="<i2").tolist() == [-32768, 32767, 32767]


def test_pcm16_to_float_rejects_odd_length():
    """Half a sample is an error, not silently dropped."""
    with pytest.raises(ValueError, match="even number of bytes"):
        pcm16_to_float(b"\x00\x01\x02")


# --- resampling ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("from_rate", "to_rate"), RATE_PAIRS)
def test_resample_preserves_sine_amplitude_and_length(from_rate, to_rate):
    """A 1 kHz tone comes out at the new rate with the same amplitude, phase and duration."""
    x = tone(1000, from_rate)
    y = resample(x, from_rate, to_rate)
    assert len(y) == len(x) * to_rate // from_rate
    assert y.dtype == np.float32
    assert rms_amplitude(y) == pytest.approx(0.5, rel=1e-3)
    np.testing.assert_allclose(y[400:-400], tone(1000, to_rate)[400:-400], atol=1e-3)


@pytest.mark.parametrize(
    ("from_rate", "to_rate"), [(48000, 16000), (44100, 16000), (22050, 16000), (24000, 16000)]
)
def test_resample_suppresses_tones_above_the_new_nyquist(from_rate, to_rate):
    """A 9 kHz tone, which 16 kHz cannot represent, is attenuated by more than 60 dB instead of aliasing."""
    y = resample(tone(9000, from_rate), from_rate, to_rate)
    assert 20 * np.log10(rms_amplitude(y) / 0.5) < -60


def test_resample_keeps_dc_level():
    """A constant signal stays at the same level (unit DC gain in every filter phase)."""
    y = resample(np.full(22050, 0.25, dtype=np.float32), 22050, 16000)
    np.testing.assert_allclose(y[100:-100], 0.25, atol=1e-5)


def test_resample_to_same_rate_is_identity():
    """Equal rates return an equal copy."""
    x = tone(440, 16000)
    y = resample(x, 16000, 16000)
    assert y is not x
    np.testing.assert_array_equal(y, x)


def test_resample_rejects_nonpositive_rates():
    """A zero or negative rate is an error."""
    with pytest.raises(ValueError, match="positive integers"):
        Resampler(0, 16000)


@pytest.mark.parametrize(
    ("from_rate", "to_rate"), [(48000, 16000), (22050, 16000), (22050, 24000), (8000, 16000)]
)
def test_streaming_resampler_matches_one_shot(from_rate, to_rate):
    """Feeding irregular chunks (including empty ones) then flushing gives the one-shot result."""
    rng = np.random.default_rng(1)
    x = (0.3 * rng.standard_normal(from_rate // 2)).astype(np.float32)
    resampler = Resampler(from_rate, to_rate)
    pieces, pos = [], 0
    for size in [0, 1, 7, 160, 0, 333, 1024, *([480] * 100)]:
        pieces.append(resampler.process(x[pos : pos + size]))
        pos += size
    pieces.append(resampler.flush())
    np.testing.assert_allclose(np.concatenate(pieces), resample(x, from_rate, to_rate), atol=1e-6)


def test_streaming_resampler_has_no_click_at_chunk_boundaries():
    """A tone fed in 20 ms chunks comes out as a smooth tone: no sample jumps at the joins."""
    x = tone(440, 48000, seconds=1.0)
    resampler = Resampler(48000, 16000)
    y = np.concatenate([resampler.process(x[i : i + 960]) for i in range(0, len(x), 960)])
    steps = np.abs(np.diff(y[200:]))
    assert steps.max() <= 0.5 * 2 * np.pi * 440 / 16000 * 1.01  # the steepest step of the sine itself


def test_streaming_resampler_is_reusable_after_flush():
    """After flush the resampler starts a new signal from scratch."""
    x = tone(700, 22050, seconds=0.1)
    resampler = Resampler(22050, 16000)
    first = np.concatenate([resampler.process(x), resampler.flush()])
    second = np.concatenate([resampler.process(x), resampler.flush()])
    np.testing.assert_array_equal(first, second)


# --- WAV -------------------------------------------------------------------------------------------


def test_wav_round_trip():
    """PCM wrapped by wav_bytes reads back as the same samples and rate."""
    x = tone(300, 24000, seconds=0.1)
    pcm = float_to_pcm16(x)
    y, rate = read_wav(wav_bytes(pcm, 24000))
    assert rate == 24000
    assert float_to_pcm16(y) == pcm


def test_read_wav_averages_stereo_to_mono():
    """Two channels are averaged into one."""
    frames = np.array([[16384, 0], [-16384, -16384]], dtype="<i2")
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(frames.tobytes())
    y, rate = read_wav(out.getvalue())
    assert rate == 8000
    assert y.tolist() == [0.25, -0.5]


def test_read_wav_rejects_non_wav_bytes():
    """Bytes that are not a WAV file raise ValueError."""
    with pytest.raises(ValueError, match="not a readable PCM WAV"):
        read_wav(b"definitely not a RIFF file")
