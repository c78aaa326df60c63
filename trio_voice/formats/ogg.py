"""Ogg page framing (RFC 3533), sans I/O: bytes in, packets out, and packets in, pages out.

Ogg is only the envelope around Opus packets; the codec itself is libopus (``trio_voice.formats.opus``).
The framing is written here rather than taken from PyAV because FFmpeg's demuxers read from a blocking
file: a short read is the end of the stream for good (its ``AVIOContext`` sets ``eof_reached`` and never
reads again), so they cannot take a client's bytes as they arrive. A page is a fixed 27-byte header, a
table of segment lengths and the segments; packets are cut from the segments by their lengths (a length
of 255 means "the packet goes on"), possibly across pages.

Bounded: the reader holds at most one incomplete page (under 64 KiB by construction) and one packet in
the making (at most ``MAX_PACKET_BYTES``). Every page's CRC is checked, so garbage is refused at the
first page rather than decoded into noise.
"""

from __future__ import annotations

import struct

import attrs

__all__ = ["MAX_PACKET_BYTES", "OggError", "OggPage", "OggReader", "OggWriter", "crc32"]

CAPTURE = b"OggS"
_HEADER = struct.Struct("<4sBBqIII B")  # capture, version, flags, granule, serial, sequence, crc, segments
HEADER_BYTES = _HEADER.size  # 27
FLAG_CONTINUED = 0x01  # the first packet on this page began on an earlier page
FLAG_BOS = 0x02  # first page of a logical stream
FLAG_EOS = 0x04  # last page of a logical stream
# A packet larger than this is refused: an Opus packet is at most 120 ms of 1275-byte frames (~8 KiB per
# channel pair); 64 KiB leaves room for header packets with cover art in OpusTags.
MAX_PACKET_BYTES = 64 * 1024
# Packets per page the writer puts on one page at most (255 segments is the format's own limit).
MAX_SEGMENTS = 255


class OggError(ValueError):
    """The bytes are not a valid Ogg stream: a bad capture pattern, version, CRC or packet size."""


def _crc_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        r = byte << 24
        for _ in range(8):
            r = ((r << 1) ^ 0x04C11DB7) if r & 0x80000000 else (r << 1)
        table.append(r & 0xFFFFFFFF)
    return tuple(table)


_CRC_TABLE = _crc_table()


def crc32(data: bytes) -> int:
    """Ogg's CRC-32: polynomial 0x04C11DB7, not reflected, initial value 0 (``zlib.crc32`` is reflected)."""
    crc = 0
    table = _CRC_TABLE
    for byte in data:
        crc = ((crc << 8) & 0xFFFFFFFF) ^ table[(crc >> 24) ^ byte]
    return crc


@attrs.frozen
class OggPage:
    """One page: the packets that *end* on it (a packet begun here and continued later is not listed)."""

    serial: int
    sequence: int
    granule: int
    flags: int
    packets: tuple[bytes, ...]

    @property
    def bos(self) -> bool:
        return bool(self.flags & FLAG_BOS)

    @property
    def eos(self) -> bool:
        return bool(self.flags & FLAG_EOS)


class OggReader:
    """Cut pages, and the packets on them, out of an Ogg byte stream fed in arbitrary pieces.

    ``feed(data)`` returns the pages completed by ``data``, in order. Packets that span pages are joined:
    a page lists each packet once, on the page where it ends. Several interleaved logical streams are
    returned as they come; callers pick theirs by ``serial``.
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forget everything: the next bytes must start a page."""
        self._buffer = bytearray()
        self._partial: dict[int, bytearray] = {}  # serial → the packet in the making

    def feed(self, data: bytes) -> list[OggPage]:
        """Raises OggError: the stream is not Ogg, is corrupt, or holds an oversized packet."""
        self._buffer += data
        pages = []
        while (page := self._next_page()) is not None:
            pages.append(page)
        return pages

    def _next_page(self) -> OggPage | None:
        buf = self._buffer
        if len(buf) < HEADER_BYTES:
            if buf and not CAPTURE.startswith(bytes(buf[:4])):
                raise OggError("not an Ogg stream: no 'OggS' capture pattern")
            return None
        capture, version, flags, granule, serial, sequence, crc, count = _HEADER.unpack_from(buf)
        if capture != CAPTURE:
            raise OggError("not an Ogg stream: no 'OggS' capture pattern where a page should start")
        if version != 0:
            raise OggError(f"unsupported Ogg version {version}")
        if len(buf) < HEADER_BYTES + count:
            return None
        lacing = buf[HEADER_BYTES : HEADER_BYTES + count]
        size = HEADER_BYTES + count + sum(lacing)
        if len(buf) < size:
            return None
        raw = bytes(buf[:size])
        del buf[:size]
        if crc32(raw[:22] + b"\0\0\0\0" + raw[26:]) != crc:
            raise OggError(f"Ogg page {sequence} of stream {serial:#x} fails its CRC check")
        return OggPage(serial, sequence, granule, flags, self._packets(serial, flags, lacing, raw))

    def _packets(self, serial: int, flags: int, lacing: bytes | bytearray, raw: bytes) -> tuple[bytes, ...]:
        partial = self._partial.pop(serial, None)
        if partial is not None and not flags & FLAG_CONTINUED:
            partial = None  # a page was lost; the spec says to drop the broken packet
        current = partial if partial is not None else bytearray()
        # A page that continues a packet we never saw the start of (we joined mid-stream, or the page
        # before was lost): skip that packet's tail.
        orphan = partial is None and bool(flags & FLAG_CONTINUED)
        packets = []
        position = HEADER_BYTES + len(lacing)
        for length in lacing:
            if orphan:
                position += length
                orphan = length == 255
                continue
            current += raw[position : position + length]
            position += length
            if len(current) > MAX_PACKET_BYTES:
                raise OggError(f"an Ogg packet is larger than {MAX_PACKET_BYTES} bytes")
            if length < 255:
                packets.append(bytes(current))
                current = bytearray()
        if current:
            self._partial[serial] = current
        return tuple(packets)


class OggWriter:
    """Put packets on pages of one logical stream: ``page(packets, granule)`` returns the page's bytes.

    The caller decides what goes on a page (so it decides latency against overhead: 27 bytes plus one
    per 255 bytes of packet, per page) and the granule position (for Opus: 48 kHz samples up to the end
    of the page's last packet, pre-skip included).
    """

    def __init__(self, serial: int) -> None:
        self.serial = serial
        self._sequence = 0

    def page(self, packets: list[bytes], granule: int, *, bos: bool = False, eos: bool = False) -> bytes:
        """Raises ValueError: the packets need more than 255 segments (put fewer on a page)."""
        lacing = bytearray()
        for packet in packets:
            lacing += b"\xff" * (len(packet) // 255) + bytes([len(packet) % 255])
        if len(lacing) > MAX_SEGMENTS:
            raise ValueError(f"{len(packets)} packets need {len(lacing)} segments; a page holds 255")
        flags = (FLAG_BOS if bos else 0) | (FLAG_EOS if eos else 0)
        header = _HEADER.pack(CAPTURE, 0, flags, granule, self.serial, self._sequence, 0, len(lacing))
        self._sequence += 1
        page = bytearray(header + lacing + b"".join(packets))
        page[22:26] = struct.pack("<I", crc32(bytes(page)))
        return bytes(page)
