"""A session's compressed input audio: the one decoder of its stream, owned by the receive side.

With ``input_audio_format`` ``webm``, ``opus`` or ``opus_packets``, binary frames carry the client's
stream, cut anywhere (``trio_voice.formats.decoders``); the receiver decodes each frame as it comes and
hands the listener PCM16 at 16 kHz, the recognizer's rate, exactly as if the client had sent PCM.

Lifetime of the decoder: one per session and format. ``input_audio.clear`` does not reset it: a browser
sends the WebM header once, at the start of its recording, and later blobs only make sense after it.
``input_audio.commit`` flushes it (the last ~1.5 ms the resampler holds) so the turn is whole. A
``transcribe`` clip is a stream of its own and gets a fresh decoder. Changing the format starts a new one.

Error handling: bytes that are not the announced format raise ``RemoteProtocolError`` ``invalid_audio``;
the decoder has then been reset, so the client may start its stream again.
"""

from __future__ import annotations

from .formats import InputDecoder, make_input_decoder

# The rate decoded audio is handed on at: the recognizer's and the VAD's, so nothing is resampled twice.
DECODED_RATE = 16000


class InputAudio:
    """The current input format and its decoder (``None`` for ``pcm16``)."""

    def __init__(self, fmt: str = "pcm16") -> None:
        self.format = fmt
        self._decoder: InputDecoder | None = make_input_decoder(fmt, DECODED_RATE)

    @property
    def compressed(self) -> bool:
        return self._decoder is not None

    def set_format(self, fmt: str) -> None:
        """Expect ``fmt`` from now on; a different format starts a new stream (and decoder)."""
        if fmt != self.format:
            self.format = fmt
            self._decoder = make_input_decoder(fmt, DECODED_RATE)

    def decode(self, data: bytes) -> bytes:
        """The PCM16 (at ``DECODED_RATE``) that ``data``, the stream's next bytes, completes.

        Raises:
            RemoteProtocolError: ``invalid_audio``.
        """
        assert self._decoder is not None, "pcm16 input needs no decoding"
        return self._decoder.feed(data)

    def flush(self) -> bytes:
        """What the decoder still holds (a commit ends the turn here); the stream goes on."""
        return self._decoder.flush() if self._decoder is not None else b""


def decode_clip(fmt: str, data: bytes) -> bytes:
    """A whole compressed clip (a ``transcribe``) as PCM16 at ``DECODED_RATE``, by a decoder of its own.

    Raises:
        RemoteProtocolError: ``invalid_audio``.
    """
    decoder = make_input_decoder(fmt, DECODED_RATE)
    assert decoder is not None
    return decoder.feed(data) + decoder.flush()
