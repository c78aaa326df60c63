"""Pure tests of realtime audio at the edge: G.711 against the reference arithmetic, resampling, delta sizes."""

from __future__ import annotations

import numpy as np
import pytest

from trio_voice.audio import float_to_pcm16, pcm16_to_float, resample
from trio_voice.realtime.formats import (
    DELTA_MAX_MS,
    DELTA_MIN_MS,
    PCM,
    PCMA,
    PCMU,
    AudioFormat,
    InputAudio,
    OutputAudio,
    convert_clip,
)

# --- the reference G.711 arithmetic (Sun Microsystems' public-domain g711.c), one sample at a time ------


def _segment(value: int, ends: list[int]) -> int:
    return next((i for i, end in enumerate(ends) if value <= end), 8)


def ref_linear_to_ulaw(sample: int) -> int:
    sample >>= 2
    mask = 0x7F if sample < 0 else 0xFF
    sample = min(abs(sample), 8159) + (0x84 >> 2)
    seg = _segment(sample, [0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF])
    if seg >= 8:
        return 0x7F ^ mask
    return ((seg << 4) | ((sample >> (seg + 1)) & 0xF)) ^ mask


def ref_ulaw_to_linear(code: int) -> int:
    code = ~code & 0xFF
    t = (((code & 0xF) << 3) + 0x84) << ((code & 0x70) >> 4)
    return 0x84 - t if code & 0x80 else t - 0x84


def ref_linear_to_alaw(sample: int) -> int:
    sample >>= 3
    if sample >= 0:
        mask = 0xD5
    else:
        mask, sample = 0x55, -sample - 1
    seg = _segment(sample, [0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF])
    if seg >= 8:
        return 0x7F ^ mask
    code = (seg << 4) | (((sample >> 1) if seg < 2 else (sample >> seg)) & 0xF)
    return code ^ mask


def ref_alaw_to_linear(code: int) -> int:
    code ^= 0x55
    t = (code & 0xF) << 4
    seg = (code & 0x70) >> 4
    t = t + 8 if seg == 0 else (t + 0x108) << max(seg - 1, 0)
    return t if code & 0x80 else -t


ALL_SAMPLES = np.arange(-32768, 32768, dtype=np.int32)


def samples_of(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype="<i2").astype(np.int32)


def pcm(samples: np.ndarray) -> bytes:
    return np.asarray(samples, dtype="<i2").tobytes()


@pytest.mark.parametrize(("fmt", "reference"), [(PCMU, ref_linear_to_ulaw), (PCMA, ref_linear_to_alaw)])
def test_g711_encoding_matches_the_reference_for_every_sample(fmt, reference):
    """Every one of the 65536 PCM16 values encodes to the byte the reference g711.c gives."""
    encoded = AudioFormat(fmt).encode(pcm16_to_float(pcm(ALL_SAMPLES)))
    assert list(encoded) == [reference(int(s)) for s in ALL_SAMPLES]


@pytest.mark.parametrize(("fmt", "reference"), [(PCMU, ref_ulaw_to_linear), (PCMA, ref_alaw_to_linear)])
def test_g711_decoding_matches_the_reference_for_every_code(fmt, reference):
    """Every one of the 256 codes decodes to the sample the reference g711.c gives."""
    decoded = np.round(AudioFormat(fmt).decode(bytes(range(256))) * 32768).astype(int)
    assert list(decoded) == [reference(code) for code in range(256)]


@pytest.mark.parametrize(
    ("fmt", "silence", "top", "bottom"), [(PCMU, 0xFF, 0x80, 0x00), (PCMA, 0xD5, 0xAA, 0x2A)]
)
def test_g711_landmarks(fmt, silence, top, bottom):
    """Silence and full scale land on the codes every G.711 implementation agrees on."""
    codec = AudioFormat(fmt)
    assert codec.encode(np.array([0.0, 1.0, -1.0], dtype=np.float32)) == bytes([silence, top, bottom])


@pytest.mark.parametrize("fmt", [PCMU, PCMA])
def test_g711_round_trip_error_is_within_a_quantization_step(fmt):
    """Decoding what was encoded gives the signal back within G.711's logarithmic step (~5% of the value)."""
    codec = AudioFormat(fmt)
    x = np.sin(np.linspace(0, 40 * np.pi, 8000, dtype=np.float32)) * 0.8
    y = codec.decode(codec.encode(x))
    assert np.all(np.abs(y - x) <= np.abs(x) * 0.05 + 16 / 32768)


def test_formats_know_their_rates_and_wire_names():
    """audio/pcm is 24 kHz, G.711 8 kHz; each has its GA object and its beta name."""
    assert AudioFormat(PCM).to_ga() == {"type": "audio/pcm", "rate": 24000}
    assert AudioFormat(PCMU).to_ga() == {"type": "audio/pcmu"}
    assert [AudioFormat(f).to_beta() for f in (PCM, PCMU, PCMA)] == ["pcm16", "g711_ulaw", "g711_alaw"]
    assert AudioFormat(PCMA).duration_ms(b"\x00" * 800) == 100.0
    assert AudioFormat(PCM).duration_ms(b"\x00" * 4800) == 100.0


def test_an_unknown_format_is_refused():
    """Only the API's three formats exist."""
    with pytest.raises(ValueError):
        AudioFormat("audio/opus")


def tone(rate: int, seconds: float, hz: float = 440.0) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (0.5 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def test_input_audio_resamples_24k_to_16k_the_same_however_it_is_chunked():
    """Chunked 24 kHz input gives the samples of a one-shot resample (no clicks at chunk edges)."""
    signal = tone(24000, 0.5)
    data = float_to_pcm16(signal)
    converter = InputAudio(AudioFormat(PCM))
    out = b"".join(converter.convert(data[i : i + 962]) for i in range(0, len(data), 962))
    whole = samples_of(float_to_pcm16(resample(signal, 24000, 16000)))
    chunked = samples_of(out)
    assert np.abs(chunked - whole[: chunked.size]).max() <= 1  # float rounding, at most 1 LSB
    assert whole.size - chunked.size < 100  # only the filter's lag is held back


def test_input_audio_decodes_g711_and_upsamples_to_16k():
    """8 kHz μ-law in becomes 16 kHz PCM16 of the same tone."""
    codec = AudioFormat(PCMU)
    converted = InputAudio(codec).convert(codec.encode(tone(8000, 0.5)))
    samples = pcm16_to_float(converted)
    assert 7800 < samples.size <= 8000
    spectrum = np.abs(np.fft.rfft(samples[1000:7000]))
    assert abs(np.argmax(spectrum) * 16000 / 6000 - 440) < 5


def test_input_audio_refuses_half_a_pcm_sample():
    """PCM input must be whole 16-bit samples."""
    with pytest.raises(ValueError):
        InputAudio(AudioFormat(PCM)).convert(b"\x00\x00\x00")


def test_convert_clip_resamples_a_whole_item():
    """An input_audio item's clip is resampled in one go, nothing held back."""
    assert len(convert_clip(AudioFormat(PCM), float_to_pcm16(tone(24000, 0.3)))) == 4800 * 2


def test_output_deltas_are_100_to_200_ms_and_rejoin_to_the_one_shot_resample():
    """Piper's 22050 Hz becomes 24 kHz deltas of 100-200 ms (the last may be shorter), losslessly."""
    signal = tone(22050, 1.37)
    data = float_to_pcm16(signal)
    out = OutputAudio(AudioFormat(PCM))
    deltas = []
    for start in range(0, len(data), 2 * 2205 * 3):  # 300 ms pieces, as the sequencer emits them
        deltas += out.feed(data[start : start + 2 * 2205 * 3], 22050)
    deltas += out.finish()
    ms = [len(d) / 2 / 24 for d in deltas]
    assert all(DELTA_MIN_MS <= m <= DELTA_MAX_MS for m in ms[:-1])
    joined = samples_of(b"".join(deltas))
    whole = samples_of(float_to_pcm16(resample(signal, 22050, 24000)))
    assert joined.size == whole.size
    assert np.abs(joined - whole).max() <= 1  # float rounding, at most 1 LSB
    assert out.sent_ms == pytest.approx(1370, abs=1)


def test_output_holds_back_less_than_a_delta_until_more_comes():
    """50 ms of audio is not sent alone; with 60 ms more it leaves as one 110 ms delta."""
    out = OutputAudio(AudioFormat(PCM))
    assert out.feed(float_to_pcm16(tone(24000, 0.05)), 24000) == []
    (delta,) = out.feed(float_to_pcm16(tone(24000, 0.06)), 24000)
    assert len(delta) == 2 * 2640


def test_output_to_g711_is_8k_one_byte_a_sample():
    """An A-law response gets 8 kHz deltas, one byte a sample."""
    out = OutputAudio(AudioFormat(PCMA))
    deltas = out.feed(float_to_pcm16(tone(22050, 0.4)), 22050) + out.finish()
    assert sum(len(d) for d in deltas) == 3200
    assert all(800 <= len(d) <= 1600 for d in deltas[:-1])


def test_end_of_a_phrase_sends_what_is_held_back_without_breaking_the_signal():
    """The held-back tail leaves at a phrase's end; the joined audio is still the one-shot resample."""
    signal = tone(22050, 0.55)
    data = float_to_pcm16(signal)
    split = 2 * 5512  # the first phrase is 250 ms
    out = OutputAudio(AudioFormat(PCM))
    first = out.feed(data[:split], 22050)
    tail = out.end_phrase()
    rest = out.feed(data[split:], 22050) + out.finish()
    assert [len(d) // 48 for d in first] == [200]
    assert len(tail) == 1 and 40 < len(tail[0]) // 48 < 50  # 50 ms less the filter's lag
    joined = samples_of(b"".join(first + tail + rest))
    assert np.abs(joined - samples_of(float_to_pcm16(resample(signal, 22050, 24000)))).max() <= 1
