"""The wire of ``/v1/voice``: trio-voice's own protocol v1 (``protocol/voice.md``) as a session's ``Wire``.

Frames are decoded by ``trio_voice.codec``, acted on by ``receive.dispatch``, and events rendered by
``codec.ServerConnection``, which owns ``seq`` and each reply's lifecycle: the frames' numbers are the
protocol's ``seq``, so a session on this wire can be resumed from any of them.
"""

from __future__ import annotations

from . import codec
from .errors import TrioVoiceError
from .events import ErrorEvent
from .receive import dispatch
from .replay import Frame
from .session_context import SessionContext
from .writer import Outgoing, frame_for


class NativeWire:
    """trio-voice's own protocol v1 (``protocol/voice.md``): ``codec`` in, ``codec.ServerConnection`` out."""

    name = "voice"
    input_sample_rate: int | None = None
    semantic_turns = True
    resumable = True

    def __init__(self, *, max_text_chars: int) -> None:
        self.max_text_chars = max_text_chars
        self.connection = codec.ServerConnection()  # owns seq and each reply's lifecycle

    def decode(self, frame: str | bytes, *, ctx: SessionContext) -> codec.ClientMessage:
        if isinstance(frame, bytes):
            # PCM16 must be whole samples; a compressed stream's frames are any bytes.
            return codec.decode_binary(frame, pcm16=not ctx.input_audio.compressed)
        return codec.decode_text(frame, max_text_chars=self.max_text_chars)

    def is_audio(self, message: codec.ClientMessage) -> bool:
        return isinstance(message, (codec.InputAudioFrame, codec.InputAudioAppend))

    async def dispatch(self, message: codec.ClientMessage, *, ctx: SessionContext) -> None:
        await dispatch(message, ctx=ctx)

    def refusal(self, exc: TrioVoiceError, message: codec.ClientMessage | None) -> Outgoing:
        request_id = getattr(exc, "request_id", None) or getattr(message, "request_id", None)
        return Outgoing(ErrorEvent(exc.code, exc.message, reason=getattr(exc, "reason", None)), request_id)

    def render(self, item: Outgoing) -> list[Frame]:
        return [frame_for(self.connection, item)]
