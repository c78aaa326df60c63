"""The Ogg and WebM framing of trio_voice.formats, sans I/O: pages and elements in, packets out."""

from __future__ import annotations

import struct

import pytest

from tests.audio_codecs import encode_opus, unknown_size_clusters, voiced
from trio_voice.formats.ogg import MAX_PACKET_BYTES, OggError, OggReader, OggWriter, crc32
from trio_voice.formats.webm import MAX_ELEMENT_BYTES, AudioTrack, WebmError, WebmReader

# --- Ogg ---------------------------------------------------------------------------------------------


def test_ogg_crc_is_the_unreflected_crc32() -> None:
    """Ogg's CRC-32 is CRC-32/CKSUM (poly 0x04C11DB7, init 0, unreflected) without its final xor."""
    assert crc32(b"123456789") ^ 0xFFFFFFFF == 0x765E7680  # the catalogued CKSUM check value


def test_ogg_pages_written_are_read_back_with_their_packets() -> None:
    """Packets of every lacing length (0, 254, 255, 510, 600 bytes) survive a write and a read."""
    packets = [b"", b"a" * 254, b"b" * 255, b"c" * 510, b"d" * 600]
    writer = OggWriter(serial=7)
    data = writer.page(packets[:2], 100, bos=True) + writer.page(packets[2:], 200, eos=True)
    pages = OggReader().feed(data)
    assert [(p.serial, p.sequence, p.granule, p.bos, p.eos) for p in pages] == [
        (7, 0, 100, True, False),
        (7, 1, 200, False, True),
    ]
    assert [packet for page in pages for packet in page.packets] == packets


def test_ogg_reader_takes_bytes_cut_anywhere() -> None:
    """Fed one byte at a time, the reader returns the same pages as fed all at once."""
    writer = OggWriter(serial=1)
    data = b"".join(writer.page([bytes([n]) * (40 * n)], n) for n in range(1, 6))
    whole = OggReader().feed(data)
    reader = OggReader()
    bytewise = [page for i in range(len(data)) for page in reader.feed(data[i : i + 1])]
    assert bytewise == whole and len(whole) == 5


def test_ogg_packet_spanning_pages_is_joined() -> None:
    """A packet continued on the next page is listed once, on the page where it ends."""
    packet = bytes(range(256)) * 3  # 768 bytes
    first = _raw_page(serial=3, sequence=0, flags=0, lacing=[255, 255], body=packet[:510])
    second = _raw_page(serial=3, sequence=1, flags=0x01, lacing=[255, 3], body=packet[510:])
    pages = OggReader().feed(first + second)
    assert pages[0].packets == () and pages[1].packets == (packet,)


def test_ogg_continuation_without_its_start_is_dropped() -> None:
    """Joining mid-stream: the tail of a packet whose start was never seen is skipped, the next kept."""
    page = _raw_page(serial=3, sequence=9, flags=0x01, lacing=[255, 10, 4], body=b"x" * 265 + b"next")
    assert OggReader().feed(page)[0].packets == (b"next",)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"RIFF\x00\x00\x00\x00WAVEfmt ", "capture pattern"),
        (b"Ogg", None),  # too short to tell: waits for more
        (b"OggS\x01" + bytes(22), "version"),
    ],
)
def test_ogg_reader_refuses_what_is_not_ogg(data: bytes, message: str | None) -> None:
    """Another format, or an Ogg version other than 0, is refused at once."""
    if message is None:
        assert OggReader().feed(data) == []
        return
    with pytest.raises(OggError, match=message):
        OggReader().feed(data)


def test_ogg_reader_refuses_a_corrupt_page() -> None:
    """One flipped bit in a page's body fails its CRC."""
    page = bytearray(OggWriter(serial=1).page([b"hello"], 1))
    page[-1] ^= 0x10
    with pytest.raises(OggError, match="CRC"):
        OggReader().feed(bytes(page))


def test_ogg_reader_bounds_a_packet() -> None:
    """A packet that never ends (all 255 lacing values, page after page) is refused past the limit."""
    reader = OggReader()
    with pytest.raises(OggError, match="larger than"):
        for sequence in range(MAX_PACKET_BYTES // (255 * 255) + 2):
            flags = 0x01 if sequence else 0
            reader.feed(_raw_page(3, sequence, flags, [255] * 255, b"z" * 255 * 255))


def _raw_page(serial: int, sequence: int, flags: int, lacing: list[int], body: bytes) -> bytes:
    header = struct.pack("<4sBBqIIIB", b"OggS", 0, flags, 0, serial, sequence, 0, len(lacing))
    page = bytearray(header + bytes(lacing) + body)
    page[22:26] = struct.pack("<I", crc32(bytes(page)))
    return bytes(page)


# --- WebM --------------------------------------------------------------------------------------------


def _element(element: int, body: bytes) -> bytes:
    id_bytes = element.to_bytes((element.bit_length() + 7) // 8, "big")
    return id_bytes + (0x01 << 56 | len(body)).to_bytes(8, "big") + body


def _init_segment(codec: bytes = b"A_OPUS") -> bytes:
    """An EBML header, an unknown-size Segment and Tracks with one audio track (number 1)."""
    from trio_voice.formats.opus import opus_head

    entry = (
        _element(0xD7, b"\x01")
        + _element(0x83, b"\x02")
        + _element(0x86, codec)
        + _element(0x63A2, opus_head(1, 312))
        + _element(0xE1, _element(0x9F, b"\x01") + _element(0xB5, struct.pack(">d", 48000.0)))
    )
    header = _element(0x1A45DFA3, _element(0x4282, b"webm"))
    return (
        header
        + b"\x18\x53\x80\x67\x01\xff\xff\xff\xff\xff\xff\xff"
        + _element(0x1654AE6B, _element(0xAE, entry))
    )


def _frames(items: list) -> list[bytes]:
    return [item for item in items if isinstance(item, bytes)]


@pytest.fixture(scope="module")
def webm() -> bytes:
    return encode_opus(voiced(1.0, 48000), 48000, "webm")


def test_webm_reader_finds_the_opus_track_then_its_frames(webm: bytes) -> None:
    """The audio track comes first, with its OpusHead; then one frame per 20 ms block."""
    items = WebmReader().feed(webm)
    track = items[0]
    assert isinstance(track, AudioTrack)
    assert (track.codec_id, track.channels, track.sample_rate) == ("A_OPUS", 1, 48000.0)
    assert track.codec_private.startswith(b"OpusHead")
    assert 50 <= len(_frames(items)) <= 52 and all(_frames(items))


def test_webm_reader_takes_bytes_cut_anywhere(webm: bytes) -> None:
    """Fed in 1..97-byte pieces, the reader yields exactly what it yields fed whole."""
    whole = WebmReader().feed(webm)
    reader = WebmReader()
    pieces: list = []
    position, size = 0, 1
    while position < len(webm):
        pieces += reader.feed(webm[position : position + size])
        position += size
        size = size % 97 + 1
    assert pieces == whole


def test_webm_reader_follows_unknown_size_clusters(webm: bytes) -> None:
    """Clusters of unknown size (Chrome's MediaRecorder writes them so) give the same frames."""
    live = unknown_size_clusters(webm)
    assert live != webm
    assert WebmReader().feed(live) == WebmReader().feed(webm)


def test_webm_reader_restarts_at_a_new_ebml_header(webm: bytes) -> None:
    """A recorder restarted mid-stream sends a new init segment: its track is announced again."""
    items = WebmReader().feed(webm + webm)
    tracks = [item for item in items if isinstance(item, AudioTrack)]
    assert len(tracks) == 2 and len(_frames(items)) == 2 * len(_frames(WebmReader().feed(webm)))


@pytest.mark.parametrize("lacing", ["xiph", "ebml", "fixed"])
def test_webm_reader_unlaces_blocks(lacing: str) -> None:
    """A SimpleBlock holding several frames (Xiph, EBML or fixed-size lacing) yields each frame."""
    frames = [b"A" * 300, b"B" * 40, b"C" * 41] if lacing != "fixed" else [b"A" * 50, b"B" * 50, b"C" * 50]
    if lacing == "xiph":
        flags, sizes = 0x82, bytes([255, 45, 40])
    elif lacing == "ebml":
        # 300 as a 2-byte vint; 40 - 300 = -260 as a 2-byte signed vint (bias 8191)
        flags, sizes = 0x86, (0x4000 | 300).to_bytes(2, "big") + (0x4000 | (8191 - 260)).to_bytes(2, "big")
    else:
        flags, sizes = 0x84, b""
    block = b"\x81\x00\x00" + bytes([flags, len(frames) - 1]) + sizes + b"".join(frames)
    items = WebmReader().feed(_init_segment() + _element(0x1F43B675, _element(0xA3, block)))
    assert _frames(items) == frames


def test_webm_reader_skips_other_tracks() -> None:
    """Blocks of a video track (track 2) are dropped; the Opus track's are kept."""
    video = b"\x82\x00\x00\x80" + b"video"
    audio = b"\x81\x00\x00\x80" + b"opus!"
    cluster = _element(0x1F43B675, _element(0xA3, video) + _element(0xA3, audio))
    assert _frames(WebmReader().feed(_init_segment() + cluster)) == [b"opus!"]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"OggS\x00\x02" + bytes(30), "EBML header"),
        (_element(0x1A45DFA3, _element(0x4282, b"mkv3d")), "document type"),
        (b"\x1a\x45\xdf\xa3\x00", "variable-length"),
    ],
)
def test_webm_reader_refuses_what_is_not_webm(data: bytes, message: str) -> None:
    """Another format, another EBML document type, or a malformed size is refused."""
    with pytest.raises(WebmError, match=message):
        WebmReader().feed(data)


def test_webm_reader_refuses_a_stream_without_opus() -> None:
    """A Vorbis-only recording is refused with the codecs it does hold."""
    data = _init_segment(codec=b"A_VORBIS") + _element(0x1F43B675, _element(0xA3, b"\x81\x00\x00\x80x"))
    with pytest.raises(WebmError, match="A_VORBIS"):
        WebmReader().feed(data)


def test_webm_reader_bounds_what_it_buffers() -> None:
    """A block larger than the limit is refused from its header, before its bytes arrive."""
    header = b"\xa3" + (0x01 << 56 | (MAX_ELEMENT_BYTES + 1)).to_bytes(8, "big")
    with pytest.raises(WebmError, match="more than"):
        WebmReader().feed(_init_segment() + b"\x1f\x43\xb6\x75\x01\xff\xff\xff\xff\xff\xff\xff" + header)


def test_webm_reader_skips_big_elements_without_holding_them() -> None:
    """An element the reader does not need (here 200 KB of Void) is skipped as it streams past."""
    reader = WebmReader()
    void = _element(0xEC, bytes(200_000))
    reader.feed(_init_segment() + void[:1000])
    assert len(reader._buffer) == 0
    for start in range(1000, len(void), 4096):
        reader.feed(void[start : start + 4096])
        assert len(reader._buffer) == 0
    assert _frames(reader.feed(_element(0x1F43B675, _element(0xA3, b"\x81\x00\x00\x80ok")))) == [b"ok"]
