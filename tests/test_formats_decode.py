"""Incremental input decoders: WebM/Opus, Ogg/Opus and raw Opus made by FFmpeg, fed in random pieces."""

from __future__ import annotations

import numpy as np
import pytest

from tests.audio_codecs import (
    encode_opus,
    feed_in_random_pieces,
    opus_packets,
    similarity,
    unknown_size_clusters,
    voiced,
    webm_elements,
)
from trio_voice.audio import pcm16_to_float, resample
from trio_voice.errors import RemoteProtocolError
from trio_voice.formats import (
    INPUT_FORMATS,
    OggOpusDecoder,
    OpusPacketDecoder,
    WebmOpusDecoder,
    make_input_decoder,
)
from trio_voice.formats.ogg import OggWriter

SECONDS = 2.0
SOURCE = voiced(SECONDS, 48000)
EXPECTED_16K = resample(SOURCE, 48000, 16000)


@pytest.fixture(scope="module")
def webm() -> bytes:
    return encode_opus(SOURCE, 48000, "webm")


@pytest.fixture(scope="module")
def ogg() -> bytes:
    return encode_opus(SOURCE, 48000, "ogg")


def check_matches_source(pcm: bytes, expected: np.ndarray = EXPECTED_16K, rate: int = 16000) -> None:
    """Decoded audio is the source: the same length (±20 ms), aligned, and close in waveform."""
    got = pcm16_to_float(pcm)
    assert abs(got.size - expected.size) <= 0.02 * rate, (got.size, expected.size)
    lag, correlation, snr = similarity(got, expected)
    assert abs(lag) <= 2  # the encoder's pre-skip was dropped: no delay beyond the resampler's rounding
    assert correlation > 0.99 and snr > 20.0, (correlation, snr)  # measured: 0.9997 and 31.7 dB


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_webm_opus_decodes_in_random_pieces(webm: bytes, seed: int) -> None:
    """WebM/Opus fed in random pieces of 1-700 bytes decodes to the source audio at 16 kHz."""
    check_matches_source(feed_in_random_pieces(WebmOpusDecoder(), webm, seed=seed))


def test_webm_opus_as_a_live_recorder_writes_it(webm: bytes) -> None:
    """Unknown-size Clusters, fed as a MediaRecorder's blobs (a few hundred bytes each), decode the same."""
    live = unknown_size_clusters(webm)
    check_matches_source(feed_in_random_pieces(WebmOpusDecoder(), live, seed=4, largest=400))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_ogg_opus_decodes_in_random_pieces(ogg: bytes, seed: int) -> None:
    """Ogg/Opus fed in random pieces of 1-700 bytes decodes to the source audio at 16 kHz."""
    check_matches_source(feed_in_random_pieces(OggOpusDecoder(), ogg, seed=seed))


def test_raw_opus_packets_decode() -> None:
    """Raw 20 ms Opus packets, one per feed, decode to the source (delayed by libopus's look-ahead)."""
    decoder = OpusPacketDecoder()
    pcm = b"".join(decoder.feed(packet) for packet in opus_packets(SOURCE)) + decoder.flush()
    got = pcm16_to_float(pcm)
    lag, correlation, _ = similarity(got, EXPECTED_16K, max_lag=400)
    assert 0 < lag <= 120  # no OpusHead, so nothing says to skip the 6.5 ms (104 samples) of look-ahead
    assert correlation > 0.97


def test_decoding_is_incremental(webm: bytes) -> None:
    """Audio comes out as its bytes come in: the first half of the stream gives about half the audio."""
    decoder = WebmOpusDecoder()
    first = decoder.feed(webm[: len(webm) // 2])
    assert 0.35 * SECONDS < len(first) / 2 / 16000 < 0.65 * SECONDS


def test_decoders_output_the_rate_asked_for(ogg: bytes) -> None:
    """A decoder made for 24 kHz gives 24 kHz audio."""
    pcm = feed_in_random_pieces(make_input_decoder("opus", 24000), ogg, seed=5)
    check_matches_source(pcm, resample(SOURCE, 48000, 24000), rate=24000)


@pytest.mark.parametrize("container", ["webm", "ogg"])
def test_stereo_is_mixed_to_mono(container: str) -> None:
    """A stereo recording (both channels the source) decodes to the mono source."""
    data = encode_opus(SOURCE, 48000, container, channels=2, bitrate=96000)
    decoder = WebmOpusDecoder() if container == "webm" else OggOpusDecoder()
    check_matches_source(feed_in_random_pieces(decoder, data, seed=6))


def test_chained_ogg_streams_decode_one_after_the_other(ogg: bytes) -> None:
    """Two Ogg/Opus streams back to back (chained Ogg) decode to both."""
    decoder = OggOpusDecoder()
    got = pcm16_to_float(feed_in_random_pieces(decoder, ogg + ogg, seed=7))
    assert abs(got.size - 2 * EXPECTED_16K.size) <= 640


def test_other_ogg_streams_are_ignored(ogg: bytes) -> None:
    """Pages of another logical stream interleaved with the Opus one are skipped."""
    other = OggWriter(serial=0xBEEF)
    data = other.page([b"\x80theora"], 0, bos=True) + ogg + other.page([b"frame"], 1, eos=True)
    check_matches_source(feed_in_random_pieces(OggOpusDecoder(), data, seed=8))


@pytest.mark.parametrize(
    ("fmt", "garbage"),
    [
        ("webm", b"this is not audio at all, just text" * 10),
        ("opus", b"this is not audio at all, just text" * 10),
        ("webm", bytes(range(256)) * 4),
        ("opus", b"RIFF" + bytes(100)),
    ],
)
def test_garbage_is_invalid_audio(fmt: str, garbage: bytes) -> None:
    """Bytes that are not the announced format raise RemoteProtocolError ``invalid_audio``."""
    decoder = make_input_decoder(fmt)
    assert decoder is not None
    with pytest.raises(RemoteProtocolError) as caught:
        decoder.feed(garbage)
    assert caught.value.code == "invalid_audio"


@pytest.mark.parametrize("fmt", ["webm", "opus"])
def test_corruption_mid_stream_is_invalid_audio_then_a_new_stream_decodes(
    fmt: str, webm: bytes, ogg: bytes
) -> None:
    """A corrupt stream fails with ``invalid_audio``; the decoder is reset and takes a fresh stream.

    (Corruption inside an Opus packet cannot be told from a bad signal: the damage here is to framing,
    an element header for WebM and a page body, caught by its CRC, for Ogg.)
    """
    data = webm if fmt == "webm" else ogg
    decoder = make_input_decoder(fmt)
    assert decoder is not None
    corrupt = bytearray(data)
    if fmt == "webm":
        start = next(offset for offset, *_ in webm_elements(data) if offset > len(data) // 2)
    else:
        start = len(data) // 2
    corrupt[start : start + 4] = b"\x00" * 4  # webm: an element's ID; ogg: four bytes of a page
    with pytest.raises(RemoteProtocolError) as caught:
        feed_in_random_pieces(decoder, bytes(corrupt), seed=9)
    assert caught.value.code == "invalid_audio"
    check_matches_source(feed_in_random_pieces(decoder, data, seed=10))


def test_reset_drops_a_half_fed_stream(webm: bytes) -> None:
    """After reset, the decoder expects a new stream from its first byte."""
    decoder = WebmOpusDecoder()
    decoder.feed(webm[: len(webm) // 3])
    decoder.reset()
    check_matches_source(feed_in_random_pieces(decoder, webm, seed=11))


def test_a_webm_without_its_init_segment_is_refused(webm: bytes) -> None:
    """Joining a WebM stream mid-way (no EBML header) is refused rather than guessed at."""
    with pytest.raises(RemoteProtocolError, match="EBML header"):
        WebmOpusDecoder().feed(webm[len(webm) // 2 :])


def test_the_format_names() -> None:
    """``pcm16`` needs no decoder; the others each have one; an unknown name is a ValueError."""
    assert INPUT_FORMATS == ("pcm16", "webm", "opus", "opus_packets")
    assert make_input_decoder("pcm16") is None
    assert isinstance(make_input_decoder("opus_packets"), OpusPacketDecoder)
    with pytest.raises(ValueError, match="unknown input audio format"):
        make_input_decoder("aac")
