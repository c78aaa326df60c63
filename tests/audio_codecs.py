"""Test helper: compressed audio made and read by PyAV's own muxers and demuxers, and ways to compare audio.

Not a test module. Encoding here goes through FFmpeg's muxers (the Ogg, WebM, MP3 writers a real app or
``ffmpeg`` uses), decoding through FFmpeg's demuxers: independent of trio_voice.formats' own framing,
so a round trip checks that framing against the reference implementation.
"""

from __future__ import annotations

import io

import av
import numpy as np

from trio_voice.audio import float_to_pcm16


def voiced(seconds: float, rate: int, *, seed: int = 1) -> np.ndarray:
    """Speech-like float32 audio: a gliding harmonic voice with syllable-rate loudness, in [-0.5, 0.5]."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    f0 = 140 + 30 * np.sin(2 * np.pi * 0.7 * t) + rng.uniform(-5, 5)
    phase = 2 * np.pi * np.cumsum(f0) / rate
    voice = sum(np.sin(k * phase) / k for k in range(1, 16) if k * 180 < rate / 2)
    syllables = 0.55 + 0.45 * np.sin(2 * np.pi * 4.0 * t) ** 2
    audio = voice * syllables
    return (0.5 * audio / np.max(np.abs(audio))).astype(np.float32)


class _Sink(io.RawIOBase):
    """A non-seekable output, like a socket: muxers write as a live recorder does (unknown sizes)."""

    def __init__(self) -> None:
        self.data = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, b: bytes) -> int:  # type: ignore[override]
        self.data += b
        return len(b)


def encode_opus(
    audio: np.ndarray, rate: int, container: str, *, bitrate: int = 48000, channels: int = 1
) -> bytes:
    """``audio`` (float mono at an Opus rate) as Opus in ``container`` ("webm" or "ogg"), by FFmpeg."""
    sink = _Sink()
    layout = "stereo" if channels == 2 else "mono"
    pcm = np.frombuffer(float_to_pcm16(audio), dtype="<i2")
    with av.open(sink, "w", format=container) as out:
        stream = out.add_stream("libopus", rate=rate, layout=layout)
        stream.bit_rate = bitrate
        step = rate // 50
        for start in range(0, pcm.size, step):
            piece = pcm[start : start + step]
            samples = np.repeat(piece, channels).reshape(1, -1) if channels == 2 else piece.reshape(1, -1)
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples), format="s16", layout=layout)
            frame.sample_rate = rate
            frame.pts = start
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return bytes(sink.data)


def opus_packets(audio: np.ndarray, rate: int = 48000) -> list[bytes]:
    """``audio`` as raw 20 ms Opus packets (no container), by libopus."""
    context = av.CodecContext.create("libopus", "w")
    context.sample_rate, context.layout, context.format, context.bit_rate = rate, "mono", "s16", 48000
    context.open()
    pcm = np.frombuffer(float_to_pcm16(audio), dtype="<i2")
    packets = []
    step = rate // 50
    for start in range(0, pcm.size - pcm.size % step, step):
        frame = av.AudioFrame.from_ndarray(
            pcm[None, start : start + step].copy(), format="s16", layout="mono"
        )
        frame.sample_rate, frame.pts = rate, start
        packets += [bytes(p) for p in context.encode(frame)]
    return packets


def decode_file(data: bytes, rate: int) -> tuple[np.ndarray, av.audio.stream.AudioStream]:
    """A whole compressed file decoded by FFmpeg (its demuxer and decoder) to float mono at ``rate``."""
    container = av.open(io.BytesIO(data))
    stream = container.streams.audio[0]
    resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
    pieces = []
    for frame in container.decode(stream):
        pieces += [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
    pieces += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
    return np.concatenate(pieces).astype(np.float32), stream


def best_lag(got: np.ndarray, ref: np.ndarray, max_lag: int) -> int:
    """The shift of ``got`` against ``ref`` (positive: ``got`` is late) that matches them best."""
    n = min(got.size, ref.size) - 2 * max_lag
    scores = [
        float(np.dot(got[max_lag + lag : max_lag + lag + n], ref[max_lag : max_lag + n]))
        for lag in range(-max_lag, max_lag + 1)
    ]
    return int(np.argmax(scores)) - max_lag


def similarity(got: np.ndarray, ref: np.ndarray, *, max_lag: int = 400) -> tuple[int, float, float]:
    """(lag, correlation, SNR in dB) of ``got`` against ``ref`` after aligning them."""
    lag = best_lag(got, ref, max_lag)
    a = got[lag:] if lag >= 0 else np.concatenate([np.zeros(-lag, np.float32), got])
    n = min(a.size, ref.size)
    a, b = a[:n], ref[:n]
    correlation = float(np.corrcoef(a, b)[0, 1])
    snr = 10 * np.log10(float(np.sum(b**2)) / max(float(np.sum((a - b) ** 2)), 1e-12))
    return lag, correlation, snr


def feed_in_random_pieces(decoder, data: bytes, *, seed: int, largest: int = 700) -> bytes:
    """All of ``data`` through ``decoder.feed`` in random piece sizes (1 to ``largest`` bytes), then flush."""
    rng = np.random.default_rng(seed)
    out = bytearray()
    position = 0
    while position < len(data):
        size = int(rng.integers(1, largest + 1))
        out += decoder.feed(data[position : position + size])
        position += size
    return bytes(out + decoder.flush())


def webm_elements(webm: bytes) -> list[tuple[int, int, int, int]]:
    """(offset, ID, header length, body size) of each element down to blocks, entering Segment and Cluster."""
    from trio_voice.formats import webm as w

    found = []
    pos = 0
    while pos < len(webm):
        element, id_len = w._vint(webm, pos, keep_marker=True, max_len=4)  # type: ignore[misc]
        size, size_len = w._vint(webm, pos + id_len, keep_marker=False, max_len=8)  # type: ignore[misc]
        found.append((pos, element, id_len + size_len, size))
        pos += id_len + size_len + (0 if element in (w.SEGMENT, w.CLUSTER) else size)
    return found


def unknown_size_clusters(webm: bytes) -> bytes:
    """``webm`` rewritten with every Cluster of unknown size, as Chrome's MediaRecorder writes them."""
    from trio_voice.formats.webm import CLUSTER, SEGMENT

    out = bytearray()
    for offset, element, head, size in webm_elements(webm):
        if element == CLUSTER:
            out += webm[offset : offset + 4] + b"\x01" + b"\xff" * 7  # a Cluster ID has 4 bytes
        elif element == SEGMENT:
            out += webm[offset : offset + head]
        else:
            out += webm[offset : offset + head + size]
    return bytes(out)
