"""Compressed output audio, encoded as it is synthesized: PCM16 mono to Ogg/Opus, MP3, AAC (ADTS) or FLAC.

One encoder is one stream: a reply on the WebSocket, or one ``/v1/audio/speech`` answer. Each is
sans-I/O and incremental:

- ``encode(pcm)`` takes PCM16LE mono at ``input_rate`` (Piper's 22050 Hz) and returns the encoded bytes
  it completes, ready to send (possibly ``b""``). Cut long audio into pieces (:func:`pcm_pieces`) and
  send each piece's bytes before encoding the next, so the first bytes go out after one short piece's
  work rather than a whole sentence's (Opus: ~1.2 ms instead of ~10 ms per second of speech).
- ``flush()`` at the end of a phrase returns what the codec still holds (its look-ahead and the part
  of a frame), so a phrase's end is not left waiting for the next phrase; the stream goes on.
- ``close()`` at the end of the stream returns the rest, with the container's end marks.

What a client receives, per format (``content_type``, ``sample_rate`` of the encoded audio):

- ``opus``: one Ogg/Opus stream (RFC 7845), mono, 32 kbit/s, encoded at the Opus rate at or above the
  input rate (24 kHz for Piper's 22050 Hz; decoders play Opus at 48 kHz). The first non-empty chunk
  begins with the two header pages (OpusHead, BOS; OpusTags); every later chunk is whole pages of
  20 ms packets. A ``flush`` pads the phrase with silence to the end of a 20 ms frame past the codec's
  6.5 ms look-ahead (at most 26.5 ms of silence between phrases); ``close`` ends with an EOS page whose
  granule position trims the final padding. Concatenated, the chunks are one valid ``.opus`` file.
- ``mp3``: MPEG audio frames (no ID3 tag, no Xing header), mono, 48 kbit/s, at the input rate when LAME
  supports it (22050 Hz does). A ``flush`` ends an MPEG stream segment and the next phrase starts a
  new one (LAME's priming adds ~50 ms of silence at each phrase start); MPEG frames concatenate, so the
  chunks are one valid ``.mp3`` file.
- ``aac``: AAC-LC in ADTS frames, mono, 64 kbit/s, at the input rate; flushed per phrase like MP3.
- ``flac``: a FLAC stream (``fLaC``, STREAMINFO without total length, then frames), lossless at the
  input rate. FLAC cannot end a frame early mid-stream, so ``flush`` returns what is complete and the
  held samples (up to one block: 2304 samples at 22050 Hz) follow with the next phrase or ``close``.

Errors: an encoder failure is ours, ``LocalProtocolError`` (see ``trio_voice.formats.opus``).
"""

from __future__ import annotations

import io
import math
import random
from collections.abc import Iterator
from typing import Protocol

import attrs
import av
import numpy as np

from trio_voice.audio import Resampler, float_to_pcm16, pcm16_to_float
from trio_voice.errors import LocalProtocolError

from .ogg import OggWriter
from .opus import OPUS_RATES, OpusEncoder, ffmpeg_errors

__all__ = [
    "OUTPUT_FORMATS",
    "MuxedEncoder",
    "OggOpusEncoder",
    "OutputEncoder",
    "encoded_sample_rate",
    "make_output_encoder",
    "pcm_pieces",
]

#: Encoded ``output_audio_format`` / ``response_format`` values and their media types (``pcm16`` and
#: ``wav`` are not encoders: the server sends PCM as it is).
OUTPUT_FORMATS = {
    "opus": "audio/ogg; codecs=opus",
    "mp3": "audio/mpeg",
    "aac": "audio/aac",
    "flac": "audio/flac",
}
# Audio encoded per piece by pcm_pieces. The first piece of a chunk is short, so its first bytes wait
# for little encoding (measured: ~1.2 ms for Opus and MP3), yet long enough for LAME and AAC to give a
# first frame (they hold back ~80 ms); later pieces are longer, so each Ogg page (27 bytes of header
# and a byte per packet) carries more audio: 3 % overhead at 32 kbit/s.
FIRST_PIECE_SECONDS = 0.1
PIECE_SECONDS = 0.25
# Opus packets per Ogg page at most: a long piece is split so a page stays under 255 segments.
_MAX_PACKETS_PER_PAGE = 50


class OutputEncoder(Protocol):
    content_type: str
    sample_rate: int

    def encode(self, pcm: bytes) -> bytes: ...

    def flush(self) -> bytes: ...

    def close(self) -> bytes: ...


def make_output_encoder(fmt: str, input_rate: int) -> OutputEncoder:
    """An encoder for ``fmt`` (a key of :data:`OUTPUT_FORMATS`) taking PCM16 mono at ``input_rate``.

    Raises ValueError: an unknown format, or a rate the codec cannot take.
    """
    if fmt == "opus":
        return OggOpusEncoder(input_rate)
    if fmt in _MUXED:
        return MuxedEncoder(fmt, input_rate)
    raise ValueError(f"unknown output audio format {fmt!r}; one of {', '.join(OUTPUT_FORMATS)}")


def encoded_sample_rate(fmt: str, input_rate: int) -> int:
    """The rate of ``fmt`` audio encoded from PCM at ``input_rate`` (what its encoder's ``sample_rate``
    will be), without opening a codec: Opus runs at the Opus rate at or above it, the others at it."""
    if fmt == "opus":
        return next((r for r in sorted(OPUS_RATES) if r >= input_rate), max(OPUS_RATES))
    return input_rate


def pcm_pieces(
    pcm: bytes, sample_rate: int, *, first: float = FIRST_PIECE_SECONDS, rest: float = PIECE_SECONDS
) -> Iterator[bytes]:
    """``pcm`` (PCM16 mono) cut into a piece of ``first`` seconds, then pieces of ``rest`` seconds."""
    start, step = 0, max(2, int(sample_rate * first) * 2)
    while start < len(pcm):
        yield pcm[start : start + step]
        start += step
        step = max(2, int(sample_rate * rest) * 2)


class OggOpusEncoder:
    """PCM16 mono → one Ogg/Opus stream (see the module docstring for exactly what is sent)."""

    content_type = OUTPUT_FORMATS["opus"]

    def __init__(self, input_rate: int, *, serial: int | None = None) -> None:
        self.input_rate = input_rate
        self.sample_rate = encoded_sample_rate("opus", input_rate)
        self._opus = OpusEncoder(self.sample_rate)
        self._resampler = Resampler(input_rate, self.sample_rate)
        self._writer = OggWriter(serial if serial is not None else random.getrandbits(32))
        self._scale = 48000 // self.sample_rate  # granule positions count 48 kHz samples
        self._lookahead = math.ceil(self._opus.pre_skip / self._scale)  # in encoder samples
        self._pending = bytearray()  # encoder-rate PCM16 short of a whole frame
        self._frames = 0  # frames given to libopus
        self._packets = 0  # packets it gave back (one per frame, after its look-ahead)
        self._dirty = False  # audio since the last flush
        self._headers: bytes | None = self._header_pages()
        self._closed = False

    def _header_pages(self) -> bytes:
        tags = b"OpusTags" + _le32(len(b"trio-voice")) + b"trio-voice" + _le32(0)
        return self._writer.page([self._opus.head], 0, bos=True) + self._writer.page([tags], 0)

    def encode(self, pcm: bytes) -> bytes:
        """The pages completed by ``pcm`` (PCM16LE mono at ``input_rate``), headers first the first time."""
        self._check_open()
        resampled = self._resampler.process(pcm16_to_float(pcm))
        if resampled.size:
            self._dirty = True
        return self._pages(float_to_pcm16(resampled))

    def flush(self) -> bytes:
        """End of a phrase: pad with silence until every sample given so far is in a packet."""
        self._check_open()
        if not self._dirty:
            return b""
        self._dirty = False
        return self._pages(self._padded(float_to_pcm16(self._resampler.flush())))

    def close(self) -> bytes:
        """End of the stream: the rest, on a final EOS page that trims the padding."""
        self._check_open()
        self._closed = True
        tail = float_to_pcm16(self._resampler.flush())
        real_end = self._frames * self._opus.frame_samples + (len(self._pending) + len(tail)) // 2
        # The padding always completes at least one frame, so the EOS page holds a packet (an empty
        # stream is the headers and one silent packet that the granule position trims away).
        return self._pages(self._padded(tail), final_granule=(real_end + self._lookahead) * self._scale)

    def _padded(self, tail: bytes) -> bytes:
        """``tail`` plus the silence that completes the frame holding the last real sample + look-ahead."""
        held = (len(self._pending) + len(tail)) // 2
        given = self._frames * self._opus.frame_samples + held
        frames_needed = -(-(given + self._lookahead) // self._opus.frame_samples)
        silence = frames_needed * self._opus.frame_samples - given
        return tail + bytes(2 * silence)

    def _pages(self, pcm: bytes, *, final_granule: int | None = None) -> bytes:
        self._pending += pcm
        frame_bytes = 2 * self._opus.frame_samples
        packets = []
        while len(self._pending) >= frame_bytes:
            packets += self._opus.encode_frame(bytes(self._pending[:frame_bytes]))
            del self._pending[:frame_bytes]
            self._frames += 1
        out = bytearray()
        if packets:
            out += self._take_headers()
        for start in range(0, len(packets), _MAX_PACKETS_PER_PAGE):
            page = packets[start : start + _MAX_PACKETS_PER_PAGE]
            self._packets += len(page)
            last = start + _MAX_PACKETS_PER_PAGE >= len(packets)
            granule = self._packets * self._opus.frame_samples * self._scale
            if last and final_granule is not None:
                out += self._writer.page(page, min(granule, final_granule), eos=True)
            else:
                out += self._writer.page(page, granule)
        return bytes(out)

    def _take_headers(self) -> bytes:
        headers, self._headers = self._headers or b"", None
        return headers

    def _check_open(self) -> None:
        if self._closed:
            raise LocalProtocolError("this Opus stream is closed")


def _le32(n: int) -> bytes:
    return n.to_bytes(4, "little")


@attrs.frozen
class _Muxed:
    container: str
    codec: str
    bitrate: int | None
    per_phrase: bool  # flush ends a stream segment (the format concatenates); else flush holds
    options: tuple[tuple[str, str], ...] = ()


_MUXED = {
    # No ID3 tag or Xing/Info frame: they belong at the start of a file, not of every phrase's segment.
    "mp3": _Muxed("mp3", "libmp3lame", 48000, True, (("id3v2_version", "0"), ("write_xing", "0"))),
    "aac": _Muxed("adts", "aac", 64000, True),
    # No 8 KiB padding block for tags that will never be written back into a stream.
    "flac": _Muxed("flac", "flac", None, False),
}


class _Sink(io.RawIOBase):
    """The file PyAV's muxer writes into: collects its bytes until taken."""

    def __init__(self) -> None:
        self.data = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, b: bytes) -> int:  # type: ignore[override]
        self.data += b
        return len(b)

    def take(self) -> bytes:
        out, self.data = bytes(self.data), bytearray()
        return out


class MuxedEncoder:
    """PCM16 mono → MP3, AAC/ADTS or FLAC through FFmpeg's own encoder and muxer (written to memory).

    The muxer flushes after every packet, so ``encode`` returns each packet as soon as the codec has it.
    """

    def __init__(self, fmt: str, input_rate: int) -> None:
        if fmt not in _MUXED:
            raise ValueError(f"no muxed encoder for {fmt!r}")
        self._spec = _MUXED[fmt]
        self.content_type = OUTPUT_FORMATS[fmt]
        self.sample_rate = input_rate
        rates = av.Codec(self._spec.codec, "w").audio_rates
        if rates and input_rate not in rates:
            raise ValueError(f"{fmt} cannot encode {input_rate} Hz audio (it takes {sorted(rates)})")
        self._sink = _Sink()
        self._container: av.container.OutputContainer | None = None
        self._stream: av.audio.stream.AudioStream | None = None
        self._pts = 0
        self._closed = False

    def _open(self) -> None:
        with ffmpeg_errors(decoding=False):
            container = av.open(
                self._sink,
                "w",
                format=self._spec.container,
                options=dict(self._spec.options),
                container_options={"flush_packets": "1", "metadata_header_padding": "0"},
            )
            stream = container.add_stream(self._spec.codec, rate=self.sample_rate, layout="mono")
            if self._spec.bitrate:
                stream.bit_rate = self._spec.bitrate
        self._container, self._stream = container, stream

    def encode(self, pcm: bytes) -> bytes:
        """The encoded bytes ``pcm`` completes (the codec keeps up to about a frame back)."""
        if self._closed:
            raise LocalProtocolError(f"this {self._spec.codec} stream is closed")
        if not pcm:
            return b""
        if self._container is None:
            self._open()
        assert self._stream is not None
        samples = np.frombuffer(pcm, dtype="<i2").reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        frame.sample_rate = self.sample_rate
        frame.pts = self._pts
        self._pts += samples.shape[1]
        with ffmpeg_errors(decoding=False):
            # PyAV converts the sample format and cuts the codec's frame size, keeping the remainder.
            for packet in self._stream.encode(frame):
                self._container.mux(packet)  # type: ignore[union-attr]
        return self._sink.take()

    def flush(self) -> bytes:
        """End of a phrase: MP3 and AAC end their segment here; FLAC returns only what is complete."""
        if self._closed or not self._spec.per_phrase:
            return self._sink.take()
        return self._end_segment()

    def close(self) -> bytes:
        """End of the stream: everything left."""
        self._closed = True
        return self._end_segment()

    def _end_segment(self) -> bytes:
        if self._container is not None:
            assert self._stream is not None
            with ffmpeg_errors(decoding=False):
                for packet in self._stream.encode(None):
                    self._container.mux(packet)
                self._container.close()
            self._container = self._stream = None
            self._pts = 0
        return self._sink.take()
