"""Opus packets to and from PCM16 mono, with libopus through PyAV: the codec half of Opus in and out.

PyAV bundles FFmpeg built with libopus (and LAME), so this is a wheel install and no system library.
Only FFmpeg's *codec* contexts are used here, never its demuxers: a codec context takes one packet at a
time and gives its audio back at once, which is what a live stream needs.

Decoding: libopus always decodes at 48 kHz; the samples are mixed down to mono and resampled to the
caller's rate with ``trio_voice.audio.Resampler`` (16 kHz for the recognizer: 1.5 ms of filter delay).
With the stream's OpusHead as extradata, FFmpeg drops the encoder's pre-skip itself.

Encoding: PCM16 mono at an Opus rate (48, 24, 16, 12 or 8 kHz) in, one packet per 20 ms frame out.

Error handling: FFmpeg's errors are mapped in ``ffmpeg_errors``, the one place for the formats package:
while decoding they are the peer's fault (``RemoteProtocolError``, code ``invalid_audio``), while
encoding ours (``LocalProtocolError``).
"""

from __future__ import annotations

import contextlib
import struct
from collections.abc import Iterator

import av
import av.error
import numpy as np

from trio_voice.audio import Resampler, float_to_pcm16
from trio_voice.codec import codes
from trio_voice.errors import LocalProtocolError, RemoteProtocolError

__all__ = ["DECODE_RATE", "OPUS_RATES", "OpusDecoder", "OpusEncoder", "ffmpeg_errors", "opus_head"]

DECODE_RATE = 48000  # libopus (as wrapped by FFmpeg) always decodes at this rate
OPUS_RATES = (48000, 24000, 16000, 12000, 8000)
FRAME_MS = 20  # Opus's default frame: the usual trade of latency (lower) against overhead (higher)
# 32 kbit/s for mono speech sampled at 24 kHz: libopus codes its full band there, and a 20 ms packet
# is about 80 bytes.
DEFAULT_BITRATE = 32000
MAX_CHANNELS = 2  # mono and stereo (channel mapping family 0); surround needs multistream mapping


@contextlib.contextmanager
def ffmpeg_errors(decoding: bool) -> Iterator[None]:
    """Map PyAV/FFmpeg failures: the one place that does."""
    try:
        yield
    except (av.error.FFmpegError, ValueError) as exc:
        if decoding:
            raise RemoteProtocolError(
                f"the Opus audio cannot be decoded: {exc}", code=codes.INVALID_AUDIO
            ) from None
        raise LocalProtocolError(f"the Opus encoder failed: {exc}") from exc


def opus_head(channels: int = 1, pre_skip: int = 0, input_rate: int = 48000) -> bytes:
    """An OpusHead identification header (RFC 7845 §5.1), channel mapping family 0."""
    return b"OpusHead" + struct.pack("<BBHIhB", 1, channels, pre_skip, input_rate, 0, 0)


def parse_opus_head(head: bytes) -> int:
    """The channel count of an OpusHead (RFC 7845 §5.1). Raises RemoteProtocolError (``invalid_audio``)."""
    if len(head) < 19 or not head.startswith(b"OpusHead"):
        raise RemoteProtocolError("the Opus stream does not start with an OpusHead", code=codes.INVALID_AUDIO)
    version, channels, _pre_skip, _rate, _gain, mapping = struct.unpack_from("<BBHIhB", head, 8)
    if version >> 4 != 0 or not 1 <= channels <= MAX_CHANNELS or mapping != 0:
        raise RemoteProtocolError(
            f"unsupported OpusHead (version {version}, {channels} channels, mapping family {mapping}): "
            "mono or stereo Opus only",
            code=codes.INVALID_AUDIO,
        )
    return channels


class OpusDecoder:
    """Opus packets in, PCM16LE mono at ``sample_rate`` out; one instance per stream.

    ``head`` is the stream's OpusHead (from Ogg's first packet or WebM's CodecPrivate); without one (raw
    packets), ``channels`` says the layout and nothing is skipped at the start.
    """

    def __init__(self, sample_rate: int, *, head: bytes | None = None, channels: int = 1) -> None:
        if head is not None:
            channels = parse_opus_head(head)
        elif not 1 <= channels <= MAX_CHANNELS:
            raise ValueError(f"channels must be 1 or 2, not {channels}")
        self.sample_rate = sample_rate
        self.channels = channels
        with ffmpeg_errors(decoding=True):
            self._context = av.CodecContext.create("libopus", "r")
            self._context.extradata = head or opus_head(channels)
            self._context.layout = "stereo" if channels == 2 else "mono"
            self._context.sample_rate = DECODE_RATE
            self._context.open()
        self._resampler = Resampler(DECODE_RATE, sample_rate)

    def decode(self, packet: bytes) -> bytes:
        """One Opus packet's audio (none for an empty packet).

        Raises RemoteProtocolError: ``invalid_audio``, the packet is not Opus.
        """
        if not packet:
            return b""
        with ffmpeg_errors(decoding=True):
            frames = self._context.decode(av.Packet(packet))
        return self._pcm(frames)

    def flush(self) -> bytes:
        """The resampler's last samples (about 1.5 ms at 16 kHz): call at the end of the stream."""
        return float_to_pcm16(self._resampler.flush())

    def _pcm(self, frames: list[av.AudioFrame]) -> bytes:
        out = []
        for frame in frames:
            if frame.format.name != "s16":
                raise LocalProtocolError(f"libopus decoded to {frame.format.name}, not interleaved s16")
            samples = frame.to_ndarray()  # interleaved: shape (1, samples × channels)
            audio = samples.reshape(-1, self.channels).astype(np.float32).mean(axis=1) / np.float32(32768.0)
            out.append(self._resampler.process(audio))
        if not out:
            return b""
        return float_to_pcm16(np.concatenate(out))


class OpusEncoder:
    """PCM16LE mono at ``sample_rate`` (an Opus rate) in, 20 ms Opus packets out.

    ``frame_samples`` is the packet size in input samples. :attr:`head` is the OpusHead for a container
    (its pre-skip is libopus's look-ahead: the decoder drops that many 48 kHz samples at the start).
    :meth:`encode_frame` takes exactly one frame; callers keep the remainder (see ``encoders``).
    """

    def __init__(self, sample_rate: int = 24000, *, bitrate: int = DEFAULT_BITRATE) -> None:
        if sample_rate not in OPUS_RATES:
            raise ValueError(f"Opus encodes at {OPUS_RATES} Hz, not {sample_rate}")
        self.sample_rate = sample_rate
        self.frame_samples = sample_rate * FRAME_MS // 1000
        with ffmpeg_errors(decoding=False):
            context = av.CodecContext.create("libopus", "w")
            context.sample_rate = sample_rate
            context.layout = "mono"
            context.format = "s16"
            context.bit_rate = bitrate
            # "audio", not "voip": voip high-passes and re-emphasizes formants, which suits a noisy
            # microphone, not Piper's clean voice. Measured at 32 kbit/s on a synthetic voice: audio
            # keeps the waveform (correlation 0.998, 23 dB SNR), voip does not (0.87, 6 dB).
            context.options = {"application": "audio", "frame_duration": str(FRAME_MS)}
            context.open()
        self._context = context
        self.head: bytes = bytes(context.extradata)
        self.pre_skip: int = struct.unpack_from("<H", self.head, 10)[0]  # in 48 kHz samples
        self._pts = 0

    def encode_frame(self, pcm: bytes) -> list[bytes]:
        """One frame of ``frame_samples`` samples in; the packets it completes out (one, once warmed up)."""
        samples = np.frombuffer(pcm, dtype="<i2")
        if samples.size != self.frame_samples:
            raise LocalProtocolError(f"an Opus frame is {self.frame_samples} samples, not {samples.size}")
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = self.sample_rate
        frame.pts = self._pts
        self._pts += samples.size
        with ffmpeg_errors(decoding=False):
            return [bytes(packet) for packet in self._context.encode(frame)]
