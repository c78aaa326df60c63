"""WebM (Matroska) framing, sans I/O: the audio frames of a live WebM stream, as its bytes arrive.

A browser's ``MediaRecorder`` emits an EBML header, a ``Segment`` (usually of unknown size), ``Info``
and ``Tracks`` (the init segment), then ``Cluster``s of ``SimpleBlock``s, each one Opus packet. Only
that skeleton is read here; the codec is libopus (``trio_voice.formats.opus``). FFmpeg's own demuxer
cannot be fed bytes as they arrive (see ``trio_voice.formats.ogg``), hence this reader.

The reader walks the element tree flatly: it *enters* the few master elements on the way to the audio
(Segment, Tracks, TrackEntry, Audio, Cluster, BlockGroup), reads the leaves it needs (codec, channels,
blocks) and skips every other element by its size without buffering it, so it needs no end offsets and
unknown-size Segments and Clusters just work. A new EBML header mid-stream (a recorder restarted)
starts a new stream.

Bounded: at most one element being read (``MAX_ELEMENT_BYTES``); skipped elements are counted, not held.
"""

from __future__ import annotations

import struct

import attrs

__all__ = ["MAX_ELEMENT_BYTES", "AudioTrack", "WebmError", "WebmReader"]

EBML_HEADER = 0x1A45DFA3
DOC_TYPE = 0x4282
SEGMENT = 0x18538067
TRACKS = 0x1654AE6B
TRACK_ENTRY = 0xAE
TRACK_NUMBER = 0xD7
TRACK_TYPE = 0x83
CODEC_ID = 0x86
CODEC_PRIVATE = 0x63A2
AUDIO = 0xE1
CHANNELS = 0x9F
SAMPLING_FREQUENCY = 0xB5
CLUSTER = 0x1F43B675
SIMPLE_BLOCK = 0xA3
BLOCK_GROUP = 0xA0
BLOCK = 0xA1

_ENTER = frozenset({SEGMENT, TRACKS, TRACK_ENTRY, AUDIO, CLUSTER, BLOCK_GROUP})
_TRACK_FIELDS = frozenset({TRACK_NUMBER, TRACK_TYPE, CODEC_ID, CODEC_PRIVATE, CHANNELS, SAMPLING_FREQUENCY})
_READ = _TRACK_FIELDS | {EBML_HEADER, SIMPLE_BLOCK, BLOCK}
TRACK_TYPE_AUDIO = 2

# Largest element read into memory (a block, the codec's private data, the EBML header). An Opus block
# is a few hundred bytes; lacing a handful of packets stays far below this.
MAX_ELEMENT_BYTES = 64 * 1024
# Largest element skipped unread. A live recorder sends nothing this big; a size past it means the
# stream is corrupt, and skipping it would swallow everything that follows without complaint.
MAX_SKIP_BYTES = 16 * 1024 * 1024
_UNKNOWN = -1


class WebmError(ValueError):
    """The bytes are not a WebM/Matroska stream this reader can follow."""


@attrs.frozen
class AudioTrack:
    """The track whose frames follow: its codec (``A_OPUS``), codec private data (the OpusHead), layout."""

    number: int
    codec_id: str
    codec_private: bytes
    channels: int
    sample_rate: float


def _vint(buf: bytes | bytearray, pos: int, *, keep_marker: bool, max_len: int) -> tuple[int, int] | None:
    """An EBML variable-length integer at ``pos``: (value, length), or None if it is not all there yet."""
    if pos >= len(buf):
        return None
    first = buf[pos]
    if first == 0:
        raise WebmError("invalid EBML variable-length integer (a zero first byte)")
    length = 9 - first.bit_length()
    if length > max_len:
        raise WebmError(f"an EBML {'ID' if keep_marker else 'size'} is longer than {max_len} bytes")
    if pos + length > len(buf):
        return None
    value = first if keep_marker else first & (0xFF >> length)
    for byte in buf[pos + 1 : pos + length]:
        value = (value << 8) | byte
    if not keep_marker and value == (1 << (7 * length)) - 1:
        value = _UNKNOWN  # all ones: the size is unknown (a live stream's Segment or Cluster)
    return value, length


class WebmReader:
    """Feed WebM bytes in any pieces; get back the audio track (once, before its frames) and its frames.

    ``feed(data)`` returns a list of items in stream order: an :class:`AudioTrack` when the audio track
    is settled (at the first block, and again after a restart), then each of its frames as ``bytes``.
    Frames of other tracks (a recorder's video) are dropped.
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forget everything: the next bytes must start with an EBML header."""
        self._buffer = bytearray()
        self._skip = 0
        self._started = False
        self._tracks: list[dict[int, object]] = []
        self._audio: AudioTrack | None = None

    def feed(self, data: bytes) -> list[AudioTrack | bytes]:
        """Raises WebmError: not WebM, corrupt, no Opus audio track, or an element over the limits."""
        out: list[AudioTrack | bytes] = []
        if self._skip:
            dropped = min(self._skip, len(data))
            self._skip -= dropped
            data = data[dropped:]
        self._buffer += data
        while self._step(out):
            pass
        return out

    def _step(self, out: list[AudioTrack | bytes]) -> bool:
        """Consume one element's header (and body, if needed and here); False when more bytes must come."""
        buf = self._buffer
        id_ = _vint(buf, 0, keep_marker=True, max_len=4)
        if id_ is None:
            return False
        element, id_len = id_
        if not self._started and element != EBML_HEADER:
            raise WebmError("not a WebM stream: it does not begin with an EBML header")
        size_ = _vint(buf, id_len, keep_marker=False, max_len=8)
        if size_ is None:
            return False
        size, size_len = size_
        head = id_len + size_len
        if element in _ENTER:
            del buf[:head]
            if element == TRACK_ENTRY:
                self._tracks.append({})
            return True
        if size == _UNKNOWN:
            raise WebmError(f"element {element:#x} has an unknown size; only Segment and Cluster may")
        if element not in _READ:
            if size > MAX_SKIP_BYTES:
                raise WebmError(f"element {element:#x} claims {size} bytes; the stream looks corrupt")
            skipped = min(size, len(buf) - head)
            del buf[: head + skipped]
            self._skip = size - skipped
            if self._skip:
                return False
            return True
        if size > MAX_ELEMENT_BYTES:
            raise WebmError(f"element {element:#x} is {size} bytes, more than {MAX_ELEMENT_BYTES}")
        if len(buf) < head + size:
            return False
        body = bytes(buf[head : head + size])
        del buf[: head + size]
        self._leaf(element, body, out)
        return True

    def _leaf(self, element: int, body: bytes, out: list[AudioTrack | bytes]) -> None:
        if element == EBML_HEADER:
            self._start(body)
        elif element in _TRACK_FIELDS:
            if not self._tracks:
                raise WebmError(f"track field {element:#x} outside a TrackEntry")
            self._tracks[-1][element] = body
        else:
            track, frames = _block_frames(body)
            if self._audio is None:
                self._audio = self._choose_track()
                out.append(self._audio)
            if track == self._audio.number:
                out.extend(frames)

    def _start(self, header: bytes) -> None:
        """An EBML header: a new stream begins (a restarted recorder sends one mid-stream)."""
        doc_type = _child(header, DOC_TYPE)
        if doc_type is not None and doc_type.rstrip(b"\0") not in (b"webm", b"matroska"):
            raise WebmError(f"EBML document type {doc_type!r} is not WebM or Matroska")
        self._started = True
        self._tracks = []
        self._audio = None

    def _choose_track(self) -> AudioTrack:
        found = []
        for fields in self._tracks:
            codec_id: bytes = fields.get(CODEC_ID, b"")  # type: ignore[assignment]
            codec = codec_id.rstrip(b"\0").decode("ascii", "replace")
            found.append(codec)
            kind = _uint(fields.get(TRACK_TYPE, b"\x02"))  # type: ignore[arg-type]
            if kind == TRACK_TYPE_AUDIO and codec == "A_OPUS" and TRACK_NUMBER in fields:
                rate = fields.get(SAMPLING_FREQUENCY)
                return AudioTrack(
                    number=_uint(fields[TRACK_NUMBER]),  # type: ignore[arg-type]
                    codec_id=codec,
                    codec_private=fields.get(CODEC_PRIVATE, b""),  # type: ignore[arg-type]
                    channels=_uint(fields.get(CHANNELS, b"\x01")),  # type: ignore[arg-type]
                    sample_rate=_float(rate) if rate else 48000.0,  # type: ignore[arg-type]
                )
        raise WebmError(f"no Opus audio track in the WebM stream (tracks: {', '.join(found) or 'none'})")


def _child(body: bytes, wanted: int) -> bytes | None:
    """The first child element ``wanted`` of a master element's complete ``body``."""
    pos = 0
    while pos < len(body):
        id_ = _vint(body, pos, keep_marker=True, max_len=4)
        size_ = id_ and _vint(body, pos + id_[1], keep_marker=False, max_len=8)
        if not id_ or not size_ or size_[0] == _UNKNOWN:
            raise WebmError("a truncated or malformed EBML header")
        start = pos + id_[1] + size_[1]
        if id_[0] == wanted:
            return body[start : start + size_[0]]
        pos = start + size_[0]
    return None


def _uint(body: bytes) -> int:
    return int.from_bytes(body, "big") if body else 0


def _float(body: bytes) -> float:
    if len(body) == 4:
        return struct.unpack(">f", body)[0]
    if len(body) == 8:
        return struct.unpack(">d", body)[0]
    raise WebmError(f"a float element of {len(body)} bytes")


def _block_frames(body: bytes) -> tuple[int, list[bytes]]:
    """A SimpleBlock's or Block's track number and frames, unlaced (Xiph, fixed-size or EBML lacing)."""
    track_ = _vint(body, 0, keep_marker=False, max_len=8)
    if track_ is None or len(body) < track_[1] + 3:
        raise WebmError("a truncated block")
    track, pos = track_[0], track_[1] + 3  # track number, 16-bit timecode, flags
    lacing = (body[pos - 1] >> 1) & 3
    if lacing == 0:
        return track, [body[pos:]]
    if pos >= len(body):
        raise WebmError("a truncated laced block")
    count = body[pos] + 1
    pos += 1
    sizes: list[int] = []
    if lacing == 1:  # Xiph: each size as a run of 255s and a final byte
        for _ in range(count - 1):
            size = 0
            while True:
                if pos >= len(body):
                    raise WebmError("a truncated Xiph lace")
                size += body[pos]
                pos += 1
                if body[pos - 1] != 255:
                    break
            sizes.append(size)
    elif lacing == 3:  # EBML: the first size, then signed differences
        for n in range(count - 1):
            v = _vint(body, pos, keep_marker=False, max_len=8)
            if v is None or v[0] == _UNKNOWN:
                raise WebmError("a truncated or malformed EBML lace")
            value, length = v
            pos += length
            if n == 0:
                sizes.append(value)
            else:
                sizes.append(sizes[-1] + value - ((1 << (7 * length - 1)) - 1))
    else:  # fixed: equal sizes
        each, rest = divmod(len(body) - pos, count)
        if rest:
            raise WebmError("a fixed-size lace that does not divide evenly")
        sizes = [each] * (count - 1)
    frames = []
    for size in sizes:
        if size < 0 or pos + size > len(body):
            raise WebmError("a lace size beyond its block")
        frames.append(body[pos : pos + size])
        pos += size
    frames.append(body[pos:])
    return track, frames
