"""Reading a session's socket: client frames in, decoded and acted on, never waiting for a reply.

``receive_task`` reads one connection's frames, applies the size and rate limits and the idle timeout,
and hands each message its session's wire (``trio_voice.wire``) decoded to the wire's ``dispatch``;
refusals go out as the wire renders them. ``dispatch`` here is the native protocol's; ``update_session``,
``truncate_reply`` and ``charge_audio`` are shared with the realtime one. Requests, cancels, pauses and
truncations are synchronous calls on the session's ``TurnControl`` and state, so a flood of requests or
a reply winding down never stops this task from reading the next frame (a ``response.cancel``, or the
audio that barges in). It runs in the connection's task (``trio_voice.session_link``), not the
session's: it ends with its connection, the session may not.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, assert_never

import attrs
import trio
from trio_websocket import ConnectionClosed, WebSocketConnection

from . import codec
from .codec import codes
from .codec.codes import CancelReason, ResumeFailure
from .errors import RemoteProtocolError, StorageError, TrioVoiceError
from .events import ErrorEvent, Pong, SessionUpdated
from .input_audio import DECODED_RATE, decode_clip
from .languages import check_language
from .limits import TokenBucket
from .listen_items import AudioIn, Clear, Commit, TranscribeClip
from .offline import acknowledge
from .presence import start_typing, stop_typing
from .receive_narration import control_narration, start_narration
from .session_context import SessionContext
from .turn_control import PendingTurn, TurnKind

if TYPE_CHECKING:
    from .wire import Wire

logger = logging.getLogger(__name__)

# Errors a flood would repeat for every frame: sent at most once per second each.
THROTTLED_ERRORS = frozenset({codes.RATE_LIMITED, codes.AUDIO_RATE_EXCEEDED})
# WebSocket close code of a connection that ended without a close frame (RFC 6455 §7.1.5).
ABNORMAL_CLOSURE = 1006


@attrs.frozen
class Lost:
    """The connection ended: ``clean`` when the client closed it with a close frame (it is done with the
    session), not when it broke (the session waits for a resume)."""

    clean: bool

    @classmethod
    def of(cls, ws: WebSocketConnection) -> Lost:
        reason = ws.closed
        return cls(clean=reason is not None and reason.code != ABNORMAL_CLOSURE)


OnResume = Callable[[codec.SessionResume], Awaitable[Any]]


async def receive_task(
    ws: WebSocketConnection, *, ctx: SessionContext, wire: Wire, on_resume: OnResume | None = None
) -> Any:
    """Read client frames until the connection ends or idles out; ``wire`` decodes and dispatches each.

    ``on_resume`` handles a ``session.resume`` that is the first message on this connection (only the
    native wire decodes one); when it returns something (the connection switches sessions), so does
    this. Otherwise returns ``Lost``.
    """
    config = ctx.config
    messages = TokenBucket(rate=config.max_messages_per_second, burst=config.max_messages_per_second)
    throttled: dict[str, float] = {}  # error code → when it was last sent
    first = True
    while True:
        with trio.move_on_after(config.idle_timeout) as idle:
            try:
                frame = await ws.get_message()
            except ConnectionClosed:
                return Lost.of(ws)
        if idle.cancelled_caught:
            await ctx.send(ErrorEvent(codes.IDLE_TIMEOUT, f"no message for {config.idle_timeout:g} s"))
            await ctx.close(codes.CLOSE_NORMAL, "idle timeout")
            await trio.sleep_forever()  # the writer ends the session once the close handshake is done
        message: Any = None
        try:
            codec.check_frame_size(
                len(frame) if isinstance(frame, bytes) else len(frame.encode()),
                max_frame_bytes=config.max_frame_bytes,
            )
            message = wire.decode(frame, ctx=ctx)
            # Audio is bounded by the audio budget; everything else by this one.
            if not wire.is_audio(message) and not messages.take(trio.current_time()):
                raise RemoteProtocolError(
                    f"more than {config.max_messages_per_second:g} messages per second; message dropped",
                    code=codes.RATE_LIMITED,
                    request_id=getattr(message, "request_id", None),
                )
            if isinstance(message, codec.SessionResume):
                if not first or on_resume is None:
                    raise _resume_not_first(message)
                first = False
                switched = await on_resume(message)
                if switched is not None:
                    return switched
                continue
            first = False
            await wire.dispatch(message, ctx=ctx)
        except RemoteProtocolError as exc:
            if exc.code in THROTTLED_ERRORS:
                now = trio.current_time()
                if now - throttled.get(exc.code, -math.inf) < 1.0:
                    continue
                throttled[exc.code] = now
            await _refuse(ctx, wire, exc, message)
            if exc.close_code is not None:
                await ctx.close(exc.close_code, exc.message[:120])
                await trio.sleep_forever()  # the writer ends the session once the close handshake is done
        except StorageError as exc:
            # The store failed while a message was acted on (a conversation looked up, a message
            # stored or deleted): the client is told, the session goes on.
            logger.warning("session %s: storage failed: %s", ctx.state.session_id, exc)
            await _refuse(ctx, wire, exc, message)


async def _refuse(ctx: SessionContext, wire: Wire, exc: TrioVoiceError, message: Any) -> None:
    ctx.telemetry.error(exc.code)
    await ctx.out_tx.send(wire.refusal(exc, message))


def _resume_not_first(message: codec.SessionResume) -> RemoteProtocolError:
    return RemoteProtocolError(
        "session.resume must be the first message on a new connection",
        code=codes.RESUME_FAILED,
        request_id=message.request_id,
        reason=ResumeFailure.NOT_FIRST_MESSAGE,
    )


async def dispatch(message: codec.ClientMessage, *, ctx: SessionContext) -> None:
    """Act on one decoded client message.

    Raises:
        RemoteProtocolError: the message cannot be acted on (the session goes on).
        StorageError: the store failed while checking a conversation.
    """
    state = ctx.state
    rid = message.request_id
    match message:
        case codec.Ping():
            await ctx.send(Pong(), rid)
        case codec.MessageCreate(text=text):
            stop_typing(ctx)  # the user sent what they typed
            if ctx.recording is not None:
                await ctx.recording.on_user_text("user_message", text)
            await ctx.request_turn(PendingTurn(TurnKind.CHAT, text, rid, trio.current_time()))
        case codec.Speak(text=text, voice=voice):
            check_voice(voice, ctx=ctx, request_id=rid, where="speak")
            if ctx.recording is not None:
                await ctx.recording.on_user_text("speak", text)
            await ctx.request_turn(PendingTurn(TurnKind.SPEAK, text, rid, trio.current_time(), voice=voice))
        case codec.Narrate():
            check_voice(message.voice, ctx=ctx, request_id=rid, where="narrate")
            await start_narration(message, ctx=ctx)
        case codec.NarrationPause() | codec.NarrationResume() | codec.NarrationCancel():
            await control_narration(message, ctx=ctx)
        case codec.ResponseCancel(response_id=response_id):
            if not state.turns.cancel(CancelReason.CLIENT_CANCELLED, response_id):
                raise RemoteProtocolError(
                    "no reply is running with that id", code=codes.NO_ACTIVE_RESPONSE, request_id=rid
                )
        case codec.ResponsePause(response_id=response_id) | codec.ResponseResume(response_id=response_id):
            running = state.turns.current
            if running is None or (response_id is not None and response_id != running.response_id):
                raise RemoteProtocolError(
                    "no reply is running with that id", code=codes.NO_ACTIVE_RESPONSE, request_id=rid
                )
            running.pause.pause() if isinstance(message, codec.ResponsePause) else running.pause.resume()
        case codec.TypingStart():
            start_typing(ctx)
        case codec.TypingStop():
            stop_typing(ctx)
        case codec.PresenceSet(status=status):
            if state.user.user_id is None:
                raise RemoteProtocolError(
                    "presence.set needs a user", code=codes.USER_REQUIRED, request_id=rid
                )
            state.user.set_client_status(status)
        case codec.MessageDelivered(message_id=message_id):
            await acknowledge(ctx, message_id, rid)
        case codec.SessionResume():
            raise _resume_not_first(message)
        case codec.SessionUpdate():
            await update_session(message, ctx=ctx)
        case codec.ResponseTruncate(response_id=response_id, audio_end_ms=audio_end_ms):
            await truncate_reply(response_id, audio_end_ms, rid, ctx=ctx)
        case (
            codec.InputAudioFrame()
            | codec.InputAudioAppend()
            | codec.InputAudioCommit()
            | codec.InputAudioClear()
            | codec.Transcribe()
        ):
            await dispatch_audio(message, ctx=ctx)
        case _:
            assert_never(message)


async def dispatch_audio(
    message: codec.InputAudioFrame
    | codec.InputAudioAppend
    | codec.InputAudioCommit
    | codec.InputAudioClear
    | codec.Transcribe,
    *,
    ctx: SessionContext,
) -> None:
    """Hand voice input to the session's listener, within the audio rate limit (clips included)."""
    rid = message.request_id
    if ctx.audio_tx is None:
        raise RemoteProtocolError(
            f"{type(message).__name__} needs voice input, which this server was started without",
            code=codes.UNSUPPORTED,
            request_id=rid,
        )
    decoder = ctx.input_audio
    match message:
        case codec.InputAudioFrame() if decoder.compressed:
            # Charged on the decoded seconds: what the listener and the recognizer will work through.
            pcm = decoder.decode(message.audio)
            if pcm:
                charge_audio(ctx, len(pcm) / 2 / DECODED_RATE, rid)
                if ctx.recording is not None:
                    await ctx.recording.on_input(pcm, DECODED_RATE)  # what the server heard
                await ctx.audio_tx.send(AudioIn(pcm, trio.current_time(), DECODED_RATE))
        case codec.InputAudioAppend() if decoder.compressed:
            raise RemoteProtocolError(
                f"input_audio.append carries PCM16; with input_audio_format {decoder.format!r} send the "
                "stream in binary frames",
                code=codes.INVALID_AUDIO,
                request_id=rid,
            )
        case codec.InputAudioFrame() | codec.InputAudioAppend():
            charge_audio(ctx, len(message.audio) / 2 / ctx.state.input_sample_rate, rid)
            if ctx.recording is not None:
                await ctx.recording.on_input(message.audio, ctx.state.input_sample_rate)
            await ctx.audio_tx.send(AudioIn(message.audio, trio.current_time()))
        case codec.InputAudioCommit():
            tail = decoder.flush()
            if tail:
                await ctx.audio_tx.send(AudioIn(tail, trio.current_time(), DECODED_RATE))
            await ctx.audio_tx.send(Commit(rid))
        case codec.InputAudioClear():
            await ctx.audio_tx.send(Clear(rid))  # the decoder goes on: the stream's header came once
        case codec.Transcribe():
            language = message.language
            if language is not None:
                check_language(
                    language,
                    stt=ctx.engines.stt,
                    voices=ctx.engines.voices,
                    voice=None,
                    voice_named=True,
                    request_id=rid,
                )
            if message.format not in (None, "pcm16"):
                audio, rate = decode_clip(message.format, message.audio), DECODED_RATE
                if not audio:
                    raise RemoteProtocolError(
                        f"the {message.format} clip holds no audio", code=codes.INVALID_AUDIO, request_id=rid
                    )
            else:
                audio, rate = message.audio, message.sample_rate or ctx.state.input_sample_rate
            charge_audio(ctx, len(audio) / 2 / rate, rid)
            await ctx.audio_tx.send(TranscribeClip(audio, rate, rid, language or ctx.state.language))
        case _:
            assert_never(message)


def check_voice(voice: str | None, *, ctx: SessionContext, request_id: str | None, where: str) -> None:
    """Refuse a voice name the server has not installed (``invalid_field``, listing the installed ones)."""
    voices = ctx.engines.voices
    if voice is not None and voice not in voices:
        raise RemoteProtocolError(
            f"{where}: field 'voice' names no installed voice ({', '.join(voices.names)}; see GET /v1/voices)",
            code=codes.INVALID_FIELD,
            request_id=request_id,
        )


def charge_audio(ctx: SessionContext, seconds: float, request_id: str | None) -> None:
    """Take ``seconds`` of input audio from the session's audio budget, or refuse the audio.

    Raises:
        RemoteProtocolError: ``audio_rate_exceeded``.
    """
    if not ctx.audio_budget.take(trio.current_time(), seconds):
        raise RemoteProtocolError(
            f"audio is arriving faster than {ctx.config.max_audio_realtime_factor:g}x real time; audio dropped",
            code=codes.AUDIO_RATE_EXCEEDED,
            request_id=request_id,
        )


async def update_session(message: codec.SessionUpdate, *, ctx: SessionContext) -> None:
    """Apply a ``session.update`` (fields left out keep their values) and answer with the settings in force.

    Everything is checked before anything changes: a refused update leaves every setting as it was.
    """
    state = ctx.state
    # Checked before anything changes: a refused update is dropped whole, never half applied.
    if message.turn_detection is not None and message.turn_detection.type == "semantic":
        if ctx.engines.turn_model is None:
            raise RemoteProtocolError(
                "turn_detection 'semantic' needs the end-of-turn model, which this server was started without",
                code=codes.UNSUPPORTED,
                request_id=message.request_id,
            )
    rid = message.request_id
    check_voice(message.voice, ctx=ctx, request_id=rid, where="session.update")
    voice = message.voice if message.voice is not None else state.voice
    if message.language is not None:
        switch = check_language(
            message.language,
            stt=ctx.engines.stt,
            voices=ctx.engines.voices,
            voice=voice,
            voice_named=message.voice is not None,
            request_id=rid,
        )
        voice = switch or voice
    if message.user_id is not None and message.user_id != state.user.user_id:
        if state.user.user_id is not None:
            how = "its token's" if state.user.from_token else "the one it was given"
            raise RemoteProtocolError(
                f"this session's user is {how}, not {message.user_id!r}",
                code=codes.USER_MISMATCH,
                request_id=rid,
            )
        if ctx.shared is None:
            raise RemoteProtocolError(
                "this server does not serve users", code=codes.UNSUPPORTED, request_id=rid
            )
    if message.record and not state.record:
        if ctx.recording is None or ctx.config.recording != "allowed":
            raise RemoteProtocolError(
                "this server does not allow recording", code=codes.RECORDING_FORBIDDEN, request_id=rid
            )
    if message.conversation_id is not None and message.conversation_id != state.conversation_id:
        if not await ctx.engines.store.conversation_exists(message.conversation_id):
            raise RemoteProtocolError(
                f"no conversation {message.conversation_id!r}",
                code=codes.CONVERSATION_NOT_FOUND,
                request_id=message.request_id,
            )
        state.conversation_id = message.conversation_id
    if message.instructions is not None:
        state.instructions = message.instructions
    if message.output_audio is not None:
        state.output_audio = message.output_audio
    if message.input_sample_rate is not None:
        state.input_sample_rate = message.input_sample_rate
    if message.turn_detection is not None:
        state.turn_detection = state.turn_detection.updated(message.turn_detection)
    if message.user_id is not None and state.user.user_id is None:
        state.user.set_user(message.user_id)
    if message.record is not None and ctx.recording is not None and message.record != state.record:
        state.record = message.record
        if message.record:
            ctx.recording.start(
                {
                    "session_id": state.session_id,
                    "user_id": state.user.user_id,
                    "conversation_id": state.conversation_id,
                    "started_at": ctx.shared.now() if ctx.shared is not None else None,
                }
            )
        else:
            ctx.recording.stop()
    if message.input_audio_format is not None:
        state.input_audio_format = message.input_audio_format
        ctx.input_audio.set_format(message.input_audio_format)
    if message.output_audio_format is not None:
        state.output_audio_format = message.output_audio_format
    if message.language is not None:
        state.language = message.language
    state.voice = voice
    view = state.config_view(ctx.config, ctx.engines.voices)
    await ctx.send(SessionUpdated(state.conversation_id, view), message.request_id)


async def truncate_reply(
    response_id: str, audio_end_ms: int, request_id: str | None, *, ctx: SessionContext
) -> None:
    """The client heard only ``audio_end_ms`` of a reply (running or recent): keep only those words."""
    found = ctx.state.records.get(response_id)
    if found is None:
        raise RemoteProtocolError(
            f"no recent reply {response_id!r}", code=codes.RESPONSE_NOT_FOUND, request_id=request_id
        )
    _, record = found
    record.heard_ms = audio_end_ms
    ctx.state.playback.heard(response_id, audio_end_ms, trio.current_time())
    if record.stored and audio_end_ms < record.audio_ms:
        # Queued behind the reply's own write on the store's single writer, so it lands after it.
        await ctx.engines.store.update_message_text(response_id, record.kept_text, interrupted=True)
