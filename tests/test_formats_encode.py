"""Incremental output encoders: Ogg/Opus, MP3, AAC and FLAC streams decoded back by FFmpeg's own demuxers."""

from __future__ import annotations

import numpy as np
import pytest

from tests.audio_codecs import decode_file, similarity, voiced
from trio_voice.audio import float_to_pcm16, pcm16_to_float
from trio_voice.errors import LocalProtocolError
from trio_voice.formats import OUTPUT_FORMATS, OggOpusEncoder, make_output_encoder, pcm_pieces
from trio_voice.formats.ogg import OggReader

RATE = 22050  # Piper's
PHRASE_1 = voiced(1.5, RATE, seed=1)
PHRASE_2 = voiced(1.0, RATE, seed=2)


def encode_phrases(fmt: str, *phrases: np.ndarray, rate: int = RATE) -> list[bytes]:
    """Each phrase in pieces as a session would send it, ``flush`` after each, ``close`` at the end."""
    encoder = make_output_encoder(fmt, rate)
    chunks = []
    for phrase in phrases:
        chunks += [encoder.encode(piece) for piece in pcm_pieces(float_to_pcm16(phrase), rate)]
        chunks.append(encoder.flush())
    chunks.append(encoder.close())
    return [chunk for chunk in chunks if chunk]


# --- Ogg/Opus ----------------------------------------------------------------------------------------


def test_opus_stream_starts_with_its_headers_in_the_first_chunk() -> None:
    """The first chunk is the OpusHead page (BOS), the OpusTags page, and the first audio page."""
    encoder = OggOpusEncoder(RATE)
    first = encoder.encode(float_to_pcm16(PHRASE_1[: int(0.06 * RATE)]))
    pages = OggReader().feed(first)
    assert first.startswith(b"OggS") and pages[0].bos
    assert pages[0].packets[0].startswith(b"OpusHead") and pages[1].packets[0].startswith(b"OpusTags")
    assert len(pages) == 3 and len(pages[2].packets) >= 2  # 60 ms: two 20 ms packets, a third in the making


def test_opus_chunks_are_whole_pages() -> None:
    """Every chunk after the first is whole Ogg pages: each parses alone, with nothing left over."""
    chunks = encode_phrases("opus", PHRASE_1, PHRASE_2)
    for chunk in chunks[1:]:
        reader = OggReader()
        assert reader.feed(chunk) and not reader._buffer and not reader._partial
    last = OggReader().feed(b"".join(chunks))[-1]
    assert last.eos


def test_opus_stream_decodes_to_the_phrases() -> None:
    """FFmpeg decodes the concatenated chunks to both phrases, with at most 26.5 ms of silence between."""
    data = b"".join(encode_phrases("opus", PHRASE_1, PHRASE_2))
    got, stream = decode_file(data, RATE)
    assert stream.codec_context.name in ("opus", "libopus") and stream.sample_rate == 48000
    # Each flush pads its phrase by at most 26.5 ms; the last flush's padding stays (close came after).
    padding = got.size - PHRASE_1.size - PHRASE_2.size
    assert 0 <= padding <= 2 * 0.0265 * RATE + 2
    lag, correlation, _ = similarity(got, PHRASE_1)
    assert abs(lag) <= 1 and correlation > 0.98  # measured 0.998: the pre-skip was honoured
    assert similarity(got[PHRASE_1.size :], PHRASE_2, max_lag=700)[1] > 0.98


def test_opus_final_page_trims_the_padding() -> None:
    """Without phrase flushes, the decoded length is the input's to the sample (the EOS granule trims)."""
    encoder = OggOpusEncoder(RATE)
    chunks = [encoder.encode(piece) for piece in pcm_pieces(float_to_pcm16(PHRASE_1), RATE)]
    data = b"".join([*chunks, encoder.close()])
    got, _ = decode_file(data, RATE)
    assert abs(got.size - PHRASE_1.size) <= 2  # resampling 24 kHz back to 22050 Hz rounds


def test_opus_flush_sends_the_end_of_a_phrase() -> None:
    """After ``flush``, everything sent decodes to the whole phrase: nothing waits for the next one."""
    encoder = OggOpusEncoder(RATE)
    sent = b"".join(encoder.encode(piece) for piece in pcm_pieces(float_to_pcm16(PHRASE_1), RATE))
    before_flush = OggReader().feed(sent)[-1].granule
    sent += encoder.flush()
    after_flush = OggReader().feed(sent)[-1].granule
    pre_skip = int.from_bytes(OggReader().feed(sent)[0].packets[0][10:12], "little")
    assert (before_flush - pre_skip) / 48000 < PHRASE_1.size / RATE <= (after_flush - pre_skip) / 48000
    assert encoder.flush() == b""  # nothing new: nothing to flush


@pytest.mark.parametrize(("input_rate", "opus_rate"), [(16000, 16000), (22050, 24000), (44100, 48000)])
def test_opus_encodes_at_the_opus_rate_at_or_above_the_input(input_rate: int, opus_rate: int) -> None:
    """Opus takes 48/24/16/12/8 kHz: the encoder picks the lowest at or above the input's rate."""
    encoder = OggOpusEncoder(input_rate)
    assert encoder.sample_rate == opus_rate
    source = voiced(0.5, input_rate)
    data = encoder.encode(float_to_pcm16(source)) + encoder.close()
    got, _ = decode_file(data, input_rate)
    assert similarity(got, source)[1] > 0.98


def test_an_empty_opus_stream_is_still_a_valid_file() -> None:
    """Closing at once gives headers and an EOS page that decode to nothing."""
    data = OggOpusEncoder(RATE).close()
    pages = OggReader().feed(data)
    pre_skip = int.from_bytes(pages[0].packets[0][10:12], "little")
    assert pages[0].bos and pages[-1].eos and pages[-1].granule == pre_skip


# --- MP3, AAC, FLAC ----------------------------------------------------------------------------------


def test_mp3_is_bare_mpeg_frames_that_decode_to_the_phrases() -> None:
    """No ID3 tag, no Xing frame: a frame sync first; FFmpeg decodes both phrases at 22050 Hz."""
    chunks = encode_phrases("mp3", PHRASE_1, PHRASE_2)
    data = b"".join(chunks)
    assert data[0] == 0xFF and data[1] & 0xE0 == 0xE0
    got, stream = decode_file(data, RATE)
    assert stream.sample_rate == RATE
    lag, correlation, _ = similarity(got, PHRASE_1, max_lag=2000)
    assert 0 < lag < 0.08 * RATE and correlation > 0.98  # LAME's priming delay: ~50 ms
    assert similarity(got[PHRASE_1.size :], PHRASE_2, max_lag=4000)[1] > 0.98


def test_mp3_flush_ends_a_segment_so_the_phrase_is_all_sent() -> None:
    """After ``flush`` the bytes sent decode to at least the whole phrase."""
    encoder = make_output_encoder("mp3", RATE)
    sent = b"".join(encoder.encode(piece) for piece in pcm_pieces(float_to_pcm16(PHRASE_1), RATE))
    held_back = decode_file(sent, RATE)[0].size < PHRASE_1.size
    sent += encoder.flush()
    assert held_back and decode_file(sent, RATE)[0].size >= PHRASE_1.size


def test_aac_is_adts_that_decodes() -> None:
    """AAC comes in ADTS frames (sync 0xFFF) that FFmpeg decodes to the phrase."""
    data = b"".join(encode_phrases("aac", PHRASE_1))
    assert data[0] == 0xFF and data[1] & 0xF0 == 0xF0
    got, stream = decode_file(data, RATE)
    assert stream.codec_context.name == "aac" and similarity(got, PHRASE_1, max_lag=2500)[1] > 0.98


def test_flac_is_lossless() -> None:
    """FLAC decodes to exactly the PCM given, both phrases back to back."""
    data = b"".join(encode_phrases("flac", PHRASE_1, PHRASE_2))
    assert data.startswith(b"fLaC")
    got, _ = decode_file(data, RATE)
    expected = pcm16_to_float(float_to_pcm16(np.concatenate([PHRASE_1, PHRASE_2])))
    np.testing.assert_array_equal(got, expected)


def test_first_bytes_come_from_the_first_piece() -> None:
    """Opus, MP3 and AAC have audio to send from a phrase's first 100 ms piece; FLAC after its first block."""
    for fmt in OUTPUT_FORMATS:
        encoder = make_output_encoder(fmt, RATE)
        pieces = pcm_pieces(float_to_pcm16(PHRASE_1), RATE)
        first = encoder.encode(next(pieces))
        if fmt == "flac":  # 2304-sample blocks at 22050 Hz: 104 ms, just over the first piece
            assert first == b"" and encoder.encode(next(pieces)).startswith(b"fLaC")
        else:
            assert len(first) > 100, fmt


# --- misuse ------------------------------------------------------------------------------------------


def test_unknown_formats_and_rates_are_refused() -> None:
    """An unknown format, or a rate the codec cannot take, is a ValueError."""
    with pytest.raises(ValueError, match="unknown output audio format"):
        make_output_encoder("wma", RATE)
    with pytest.raises(ValueError, match="cannot encode 22051 Hz"):
        make_output_encoder("mp3", 22051)


@pytest.mark.parametrize("fmt", sorted(OUTPUT_FORMATS))
def test_a_closed_stream_takes_no_more_audio(fmt: str) -> None:
    """Encoding after ``close`` is our own bug: LocalProtocolError."""
    encoder = make_output_encoder(fmt, RATE)
    encoder.encode(float_to_pcm16(PHRASE_2))
    encoder.close()
    with pytest.raises(LocalProtocolError):
        encoder.encode(float_to_pcm16(PHRASE_2))


def test_pieces_are_short_first_then_longer() -> None:
    """``pcm_pieces`` cuts 100 ms, then 250 ms pieces, and loses nothing."""
    pcm = float_to_pcm16(PHRASE_1)
    pieces = list(pcm_pieces(pcm, RATE))
    assert [len(p) // 2 for p in pieces[:2]] == [int(0.1 * RATE), int(0.25 * RATE)]
    assert b"".join(pieces) == pcm
