"""Compressed input audio, decoded as it arrives: WebM/Opus, Ogg/Opus and raw Opus packets to PCM16 mono.

Each decoder is sans-I/O: ``feed(data)`` takes the next bytes of the client's stream, cut anywhere, and
returns the PCM16LE mono audio at ``sample_rate`` (16 kHz by default, the recognizer's rate) that they
complete; ``flush()`` returns the last ~1.5 ms held by the resampler at the end of a stream; ``reset()``
forgets the stream, so the next bytes must start a new one. What a session does with the PCM is what it
does with raw ``pcm16`` frames.

Formats (the names of ``session.update {input_audio_format}``):

- ``webm``: WebM with one Opus track, as a browser's ``MediaRecorder`` makes with
  ``mimeType: "audio/webm;codecs=opus"``. Send every ``dataavailable`` blob as it comes: the first holds
  the init segment (EBML header and Tracks), later ones Clusters. A new EBML header starts a new stream.
- ``opus``: Ogg/Opus (RFC 7845) pages: OpusHead, OpusTags, then audio, as ``opusenc`` or an app's Ogg
  muxer writes them. A new stream after the last one's end (chained Ogg) is followed.
- ``opus_packets``: one raw Opus packet per call (per WebSocket binary frame), mono unless told, no
  container and no pre-skip: for clients with their own encoder (WebCodecs ``AudioEncoder``).

Bounded: each holds at most one incomplete container element (64 KiB) plus the resampler's filter.
The audio out is never more than the bytes in can carry, so a session's audio-rate limit still applies.

Error handling: bytes that are not the announced format, or are corrupt, raise ``RemoteProtocolError``
with code ``invalid_audio``; the decoder has then been reset, so the client may start a new stream.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Protocol

from trio_voice.codec import codes
from trio_voice.errors import RemoteProtocolError

from .ogg import OggError, OggReader
from .opus import OpusDecoder
from .webm import AudioTrack, WebmError, WebmReader

__all__ = [
    "INPUT_FORMATS",
    "InputDecoder",
    "OggOpusDecoder",
    "OpusPacketDecoder",
    "WebmOpusDecoder",
    "make_input_decoder",
]

#: ``input_audio_format`` values: ``pcm16`` needs no decoder.
INPUT_FORMATS = ("pcm16", "webm", "opus", "opus_packets")
DEFAULT_RATE = 16000


class InputDecoder(Protocol):
    sample_rate: int

    def feed(self, data: bytes) -> bytes: ...

    def flush(self) -> bytes: ...

    def reset(self) -> None: ...


def make_input_decoder(fmt: str, sample_rate: int = DEFAULT_RATE) -> InputDecoder | None:
    """The decoder for ``fmt`` (one of :data:`INPUT_FORMATS`), or None for ``pcm16``."""
    if fmt == "pcm16":
        return None
    if fmt == "webm":
        return WebmOpusDecoder(sample_rate)
    if fmt == "opus":
        return OggOpusDecoder(sample_rate)
    if fmt == "opus_packets":
        return OpusPacketDecoder(sample_rate)
    raise ValueError(f"unknown input audio format {fmt!r}; one of {', '.join(INPUT_FORMATS)}")


class _Decoder:
    """What the three share: the Opus decoder of the current stream, and reset-on-error."""

    def __init__(self, sample_rate: int) -> None:
        self.sample_rate = sample_rate
        self._opus: OpusDecoder | None = None

    def reset(self) -> None:
        self._opus = None

    def flush(self) -> bytes:
        return self._opus.flush() if self._opus is not None else b""

    @contextlib.contextmanager
    def _resetting_on_error(self, what: str) -> Iterator[None]:
        try:
            yield
        except (OggError, WebmError) as exc:
            self.reset()
            raise RemoteProtocolError(f"invalid {what} audio: {exc}", code=codes.INVALID_AUDIO) from None
        except RemoteProtocolError:
            self.reset()
            raise

    def _new_stream(self, *, head: bytes | None, channels: int = 1) -> bytes:
        """Start decoding a new stream; returns the previous stream's last samples."""
        tail = self.flush()
        self._opus = OpusDecoder(self.sample_rate, head=head, channels=channels)
        return tail


class WebmOpusDecoder(_Decoder):
    """WebM/Opus bytes (a ``MediaRecorder``'s blobs) in any pieces → PCM16 mono at ``sample_rate``."""

    def __init__(self, sample_rate: int = DEFAULT_RATE) -> None:
        super().__init__(sample_rate)
        self._reader = WebmReader()

    def reset(self) -> None:
        super().reset()
        self._reader.reset()

    def feed(self, data: bytes) -> bytes:
        """Raises RemoteProtocolError: ``invalid_audio`` (and the decoder is reset)."""
        out = bytearray()
        with self._resetting_on_error("WebM/Opus"):
            for item in self._reader.feed(data):
                if isinstance(item, AudioTrack):
                    out += self._new_stream(head=item.codec_private or None, channels=item.channels)
                else:
                    assert self._opus is not None
                    out += self._opus.decode(item)
        return bytes(out)


class OggOpusDecoder(_Decoder):
    """Ogg/Opus bytes in any pieces → PCM16 mono at ``sample_rate``; other logical streams are ignored."""

    def __init__(self, sample_rate: int = DEFAULT_RATE) -> None:
        super().__init__(sample_rate)
        self._reader = OggReader()
        self._serial: int | None = None
        self._ended = True  # no stream yet, or the last one sent its EOS page: a new BOS may follow
        self._tags_due = False

    def reset(self) -> None:
        super().reset()
        self._reader.reset()
        self._serial = None
        self._ended = True
        self._tags_due = False

    def feed(self, data: bytes) -> bytes:
        """Raises RemoteProtocolError: ``invalid_audio`` (and the decoder is reset)."""
        out = bytearray()
        with self._resetting_on_error("Ogg/Opus"):
            for page in self._reader.feed(data):
                if page.bos:
                    if self._ended and page.packets[:1] and page.packets[0].startswith(b"OpusHead"):
                        out += self._new_stream(head=page.packets[0])
                        self._serial, self._ended, self._tags_due = page.serial, False, True
                    continue  # else the start of another logical stream (video, a skeleton): not ours
                if self._serial is None:
                    # Every stream's first page comes before any other page: none of them was Opus.
                    raise OggError("the Ogg stream holds no Opus stream (no OpusHead on its first pages)")
                if page.serial != self._serial:
                    continue
                for packet in page.packets:
                    if self._tags_due:
                        if not packet.startswith(b"OpusTags"):
                            raise OggError("the second Ogg/Opus packet is not OpusTags")
                        self._tags_due = False
                        continue
                    assert self._opus is not None
                    out += self._opus.decode(packet)
                self._ended = page.eos
        return bytes(out)


class OpusPacketDecoder(_Decoder):
    """Raw Opus packets, one per :meth:`feed` call, → PCM16 mono at ``sample_rate``."""

    def __init__(self, sample_rate: int = DEFAULT_RATE, *, channels: int = 1) -> None:
        super().__init__(sample_rate)
        self.channels = channels

    def feed(self, data: bytes) -> bytes:
        """``data`` is exactly one Opus packet. Raises RemoteProtocolError: ``invalid_audio``."""
        with self._resetting_on_error("Opus packet"):
            if self._opus is None:
                self._new_stream(head=None, channels=self.channels)
            assert self._opus is not None
            return self._opus.decode(data)
