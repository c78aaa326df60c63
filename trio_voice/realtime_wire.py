"""The wire of ``/v1/realtime``: the OpenAI Realtime API (``protocol/realtime.md``) as a session's ``Wire``.

The sans-I/O ``trio_voice.realtime.RealtimeConnection`` keeps the protocol's state; this puts it on the
same session core as ``/v1/voice``. Each client event is parsed (``decode``), charged to the session's
limits, accepted by the connection (``dispatch``, which then acts through the core: ``TurnControl``, the
listener, the store), and its acknowledgement goes to the session's single writer like every other event,
so it comes out in order with them. The writer renders neutral events through ``RealtimeConnection.send``.

How each client event reaches the core:

- ``session.update`` → ``receive.update_session`` (the native settings) and the turn-taking switches
  (``SessionState.create_response``: replies to speech only with server VAD and ``create_response``;
  ``interrupt_response``); answered by the core's ``session.updated``.
- ``input_audio_buffer.append`` → the listener, at 16 kHz, charged to the audio budget (not the message
  rate); ``commit`` and ``clear`` → the listener. A commit first holds requests (``transcription_started``),
  so a ``response.create`` right behind it answers the committed words.
- ``conversation.item.create`` → stored as a user message; its audio is transcribed first (held the same way).
- ``conversation.item.delete`` → deleted from the store; ``truncate`` → ``receive.truncate_reply``;
  ``retrieve`` → only its answer.
- ``response.create`` → a ``respond`` request (its instructions and modality with it); ``response.cancel``
  → ``TurnControl.cancel`` with ``client_cancelled``.

Errors: refusals by the connection keep their realtime ``code``, ``param`` and the client's ``event_id``;
refusals by the core (rate limits, a cancel that found nothing) are given the client's ``event_id`` too.
"""

from __future__ import annotations

import logging
from typing import Any, Final

import trio

from . import realtime
from .codec import codes as native_codes
from .codec.codes import CancelReason
from .errors import RemoteProtocolError, TrioVoiceError
from .listen_items import AudioIn, Clear, Commit, TranscribeClip
from .realtime import RealtimeConnection, RealtimeProtocolError, codes
from .realtime.session_update import AUDIO
from .receive import charge_audio, truncate_reply, update_session
from .replay import Frame
from .segmenter import SAMPLE_RATE
from .session_context import SessionContext
from .session_state import SessionState
from .turn_control import PendingTurn, TurnKind
from .writer import Outgoing

logger = logging.getLogger(__name__)

# Client events that need the server's voice input (a recognizer and a VAD).
_NEEDS_VOICE: Final = (
    realtime.InputAudioBufferAppend,
    realtime.InputAudioBufferCommit,
    realtime.InputAudioBufferClear,
)


class RealtimeWire:
    """One realtime session's wire (see the module docstring).

    Args:
        model: the ``model`` of the connection URL, echoed in the session.
        dialect: ``realtime.codes.GA`` or ``BETA`` (``realtime.codes.dialect_for(headers)``).
        max_text_chars: the longest text a client event may carry (``Config.max_text_chars``).
    """

    name = "realtime"
    input_sample_rate: int | None = SAMPLE_RATE  # the connection resamples input to the recognizer's rate
    # The API's turn detection is server_vad (silence) or none; its semantic_vad is refused, and the
    # session reports only what the API can name.
    semantic_turns = False
    # The API has no seq and no session.resume: a realtime session ends with its connection.
    resumable = False

    def __init__(self, *, model: str, dialect: str = codes.GA, max_text_chars: int) -> None:
        self.connection = RealtimeConnection(model=model, dialect=dialect, max_text_chars=max_text_chars)
        self._numbered = 0  # frames rendered: the outbox's numbers (the protocol has none)

    # --- client → core -----------------------------------------------------------------------------
    def decode(self, frame: str | bytes, *, ctx: SessionContext) -> realtime.ClientEvent:
        return self.connection.parse(frame)

    def is_audio(self, message: realtime.ClientEvent) -> bool:
        return isinstance(message, realtime.InputAudioBufferAppend)

    async def dispatch(self, message: realtime.ClientEvent, *, ctx: SessionContext) -> None:
        """Charge the event to the session's limits, accept it, and act on it through the core."""
        self._check_voice(message, ctx)
        self._charge(message, ctx)
        event = self.connection.accept(message)
        rid = event.event_id
        state = ctx.state
        match event:
            case realtime.SessionUpdate():
                self._sync_turn_taking(state)
                await update_session(event.to_native(), ctx=ctx)
            case realtime.InputAudioBufferAppend():
                assert ctx.audio_tx is not None and event.pcm16 is not None
                await ctx.audio_tx.send(AudioIn(event.pcm16, trio.current_time()))
            case realtime.InputAudioBufferCommit():
                assert ctx.audio_tx is not None
                await ctx.send(
                    event, rid
                )  # committed + the item (manual turns); VAD's come at speech_stopped
                state.turns.transcription_started()
                await ctx.audio_tx.send(Commit(rid, item_id=event.item_id, announced=True))
            case realtime.InputAudioBufferClear():
                assert ctx.audio_tx is not None
                await ctx.send(event, rid)
                await ctx.audio_tx.send(Clear(rid))
            case realtime.ConversationItemCreate():
                await ctx.send(event, rid)  # the item as the client sees it, in order with the rest
                await self._store_item(event, ctx)
            case realtime.ConversationItemDelete():
                await ctx.send(event, rid)
                await ctx.engines.store.delete_message(state.conversation_id, event.item_id)
            case realtime.ConversationItemTruncate():
                if event.response_id is not None:
                    try:
                        await truncate_reply(event.response_id, event.audio_end_ms, rid, ctx=ctx)
                    except RemoteProtocolError:
                        # Older than the replies a session remembers: the client's item is cut, the
                        # stored message keeps its words.
                        logger.info("session %s: truncate of a forgotten reply", state.session_id)
                await ctx.send(event, rid)
            case realtime.ConversationItemRetrieve():
                await ctx.send(event, rid)
            case realtime.ResponseCreate():
                modalities = event.output_modalities
                request = PendingTurn(
                    TurnKind.RESPOND,
                    "",
                    rid,
                    trio.current_time(),
                    instructions=event.instructions,
                    output_audio=None if modalities is None else modalities == AUDIO,
                )
                await ctx.request_turn(request)
            case realtime.ResponseCancel():
                if not state.turns.cancel(CancelReason.CLIENT_CANCELLED, event.response_id):
                    # The connection saw a response in progress, the core had just finished it: its
                    # response.done is on the way.
                    raise RemoteProtocolError(
                        "Cancellation failed: no active response found",
                        code=native_codes.NO_ACTIVE_RESPONSE,
                        request_id=rid,
                    )

    def _check_voice(self, message: realtime.ClientEvent, ctx: SessionContext) -> None:
        if ctx.audio_tx is not None:
            return
        unheard = isinstance(message, realtime.ConversationItemCreate) and any(
            isinstance(part, realtime.InputAudio) and part.transcript is None for part in message.content
        )
        if isinstance(message, _NEEDS_VOICE) or unheard:
            raise RealtimeProtocolError(
                f"{message.type} needs voice input, which this server was started without.",
                code=codes.UNSUPPORTED_FEATURE,
                event_id=message.event_id,
            )

    def _charge(self, message: realtime.ClientEvent, ctx: SessionContext) -> None:
        """Input audio (appended, or in an item to transcribe) is bounded by the session's audio budget."""
        fmt = self.connection.input.format
        if isinstance(message, realtime.InputAudioBufferAppend):
            seconds = fmt.duration_ms(message.audio) / 1000
        elif isinstance(message, realtime.ConversationItemCreate):
            seconds = sum(
                fmt.duration_ms(part.audio) / 1000
                for part in message.content
                if isinstance(part, realtime.InputAudio) and part.transcript is None
            )
        else:
            return
        charge_audio(ctx, seconds, message.event_id)

    def _sync_turn_taking(self, state: SessionState) -> None:
        config = self.connection.config
        state.create_response = config.server_vad and config.turn_detection.create_response is not False
        state.interrupt_response = config.turn_detection.interrupt_response is not False

    async def _store_item(self, event: realtime.ConversationItemCreate, ctx: SessionContext) -> None:
        """A user message: stored now, or once its audio is transcribed (requests wait for it)."""
        typed = [part.text for part in event.content if isinstance(part, realtime.InputText)]
        audio = [part for part in event.content if isinstance(part, realtime.InputAudio)]
        words = " ".join([*typed, *(part.transcript for part in audio if part.transcript is not None)])
        unheard = b"".join(part.pcm16 or b"" for part in audio if part.transcript is None)
        if unheard:
            assert ctx.audio_tx is not None
            ctx.state.turns.transcription_started()
            clip = TranscribeClip(
                unheard,
                SAMPLE_RATE,
                event.event_id,
                ctx.state.language,
                item_id=event.item_id,
                text=words,
                announced=True,
            )
            await ctx.audio_tx.send(clip)
        elif words:
            await ctx.add_user_message(words, event.item_id, event.event_id)

    def refusal(self, exc: TrioVoiceError, message: Any | None) -> Outgoing:
        if isinstance(exc, RealtimeProtocolError):
            return Outgoing(exc)
        # The core's refusals name the client event by the connection's request id, or not at all:
        # the client knows it by its own event_id, which the parsed message still carries.
        return Outgoing(exc, getattr(message, "event_id", None))

    # --- core → client -----------------------------------------------------------------------------
    def render(self, item: Outgoing) -> list[Frame]:
        """The realtime events ``item`` becomes, numbered for the session's outbox only: the protocol
        has no ``seq`` (nor a resume), and its ``event_id``s are the connection's."""
        conn, event, request_id = self.connection, item.event, item.request_id
        if isinstance(event, RealtimeProtocolError):
            frames = [conn.error(event)]
        elif isinstance(event, TrioVoiceError):
            frames = [conn.frames.error(event.code, event.message, event_id=request_id)]
        else:
            frames = conn.send(event, request_id=request_id)
        out = []
        for frame in frames:
            self._numbered += 1
            out.append(Frame(self._numbered, frame["type"], realtime.encode(frame)))
        return out
