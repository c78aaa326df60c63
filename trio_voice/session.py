"""One client session, as a nursery: receive, send, converse (and listen, for voice input).

::

    run_session(ws, ...)          ends when the client goes; cancels everything it started
    ├── receive_task    decode client frames → session updates, turn requests, audio
    ├── send_task       the only writer to the socket: stamps seq 1, 2, 3, …
    ├── converse_task   one turn at a time; a new request first cancels the running turn
    ├── listen_task     VAD + streaming STT (trio_voice.listen), when the server has STT engines
    └── heartbeat_task  WebSocket ping; closes a connection that stops answering

Interruption is ``TurnHandle.cancel(reason)``: one cancel scope around one turn nursery. The turn's
``response.done`` is sent by ``converse_task`` after that nursery has exited, through the same
unbuffered channel as every other event, so nothing of a reply can follow its ``response.done``.
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

import attrs
import trio
from trio_websocket import ConnectionClosed, WebSocketConnection

from . import codec
from .config import Config
from .converse import PendingTurn, TurnHandle, converse_task
from .engines import Engines
from .errors import EngineError, RemoteProtocolError, StorageError
from .events import (
    ErrorEvent,
    Pong,
    SessionCreated,
    SessionUpdated,
)
from .ids import new_id
from .lifecycle import SessionRegistry, Shutdown
from .limits import TokenBucket
from .listen import AudioIn, Clear, Commit, ListenItem, TranscribeClip, listen_task
from .telemetry import Telemetry
from .turn import TurnRecord

logger = logging.getLogger(__name__)

# Seconds of audio a client may send at once beyond the real-time budget (network jitter, reconnects).
AUDIO_BURST_S = 2.0
# Seconds a closing handshake may take before the connection is dropped.
CLOSE_TIMEOUT = 2.0
# Errors a flood would repeat for every frame: sent at most once per second each.
THROTTLED_ERRORS = frozenset({"rate_limited", "audio_rate_exceeded"})


@attrs.frozen
class Outgoing:
    """An event on its way to the socket, with the client ``request_id`` that caused it."""

    event: Any
    request_id: str | None = None


@attrs.frozen
class CloseConnection:
    """Not an event: tells the writer to close the socket after everything queued before it."""

    code: int
    reason: str


@attrs.define
class SessionState:
    """The few facts a session's tasks share. Read by ``/v1/sessions``; written only by its own tasks."""

    session_id: str
    conversation_id: str
    instructions: str
    output_audio: bool = True
    input_sample_rate: int = 16000
    turn_detection: dict[str, Any] = attrs.field(factory=dict)
    current_turn: TurnHandle | None = None
    turn_counts: Counter[str] = attrs.field(factory=Counter)
    records: OrderedDict[str, tuple[str, TurnRecord]] = attrs.field(factory=OrderedDict)
    created_at: float = attrs.field(factory=time.time)
    activity: str = "idle"  # idle | responding | listening

    def config_view(self, config: Config, output_sample_rate: int) -> dict[str, Any]:
        """The ``config`` object of ``session.created`` and ``session.updated``."""
        return codec.render_session_config(
            instructions=self.instructions,
            input_sample_rate=self.input_sample_rate,
            turn_detection=codec.TurnDetection(**self.turn_detection),
            output_audio=self.output_audio,
            output_sample_rate=output_sample_rate,
            config=config,
        )

    def snapshot(self) -> dict[str, Any]:
        return {
            "session_id": self.session_id,
            "conversation_id": self.conversation_id,
            "age_s": round(time.time() - self.created_at, 1),
            "state": self.activity,
            "turns": dict(self.turn_counts),
        }


async def run_session(
    ws: WebSocketConnection,
    *,
    engines: Engines,
    config: Config,
    telemetry: Telemetry,
    sessions: SessionRegistry | None = None,
    shutdown: Shutdown | None = None,
) -> None:
    """Serve one connected client until it goes away (or idles out); every task it started is gone after.

    Error handling: protocol errors become ``error`` events and the session goes on; engine failures
    fail one reply; a closed connection is a normal end. Anything else propagates to the server's
    connection handler, which logs it and ends this session only.
    """
    conversation_id = await engines.store.create_conversation()
    state = SessionState(
        session_id=new_id("sess"),
        conversation_id=conversation_id,
        instructions=config.system_prompt,
        input_sample_rate=config.input_sample_rate,
        turn_detection={
            "type": "server_vad" if engines.stt is not None else "none",
            "threshold": config.vad_threshold,
            "silence_ms": config.vad_silence_ms,
            "prefix_ms": config.vad_prefix_ms,
        },
    )
    log = logging.LoggerAdapter(logger, {"session_id": state.session_id})
    log.info("session %s opened (conversation %s)", state.session_id, conversation_id)
    if sessions is not None:
        sessions.add(state)
    telemetry.session_opened()
    try:
        async with trio.open_nursery() as nursery:
            out_tx, out_rx = trio.open_memory_channel[Outgoing](0)
            turn_tx, turn_rx = trio.open_memory_channel[PendingTurn](0)
            end_session = nursery.cancel_scope.cancel
            nursery.start_soon(partial(send_task, ws, out_rx, on_closed=end_session))
            await out_tx.send(
                Outgoing(
                    SessionCreated(
                        state.session_id, conversation_id, state.config_view(config, engines.tts.sample_rate)
                    )
                )
            )
            audio_tx, audio_rx = trio.open_memory_channel[ListenItem](config.audio_buffer)
            ctx = SessionContext(
                state,
                engines,
                config,
                telemetry,
                out_tx.clone(),
                turn_tx.clone(),
                audio_tx if engines.stt is not None else None,
                TokenBucket(rate=config.max_audio_realtime_factor, burst=AUDIO_BURST_S),
                shutdown or Shutdown(),
            )
            nursery.start_soon(partial(converse_task, turn_rx, ctx=ctx))
            if engines.stt is not None and engines.vad_factory is not None:
                nursery.start_soon(partial(listen_task, audio_rx, ctx=ctx))
            else:
                audio_rx.close()
            if shutdown is not None:
                nursery.start_soon(partial(shutdown_task, shutdown, ctx=ctx))
            if config.heartbeat_interval > 0:
                nursery.start_soon(partial(heartbeat_task, ws, ctx=ctx, interval=config.heartbeat_interval))
            with out_tx, turn_tx, audio_tx:
                await receive_task(ws, ctx=ctx)
            end_session()
    finally:
        if sessions is not None:
            sessions.remove(state.session_id)
        telemetry.session_closed()
        log.info("session %s closed after %s", state.session_id, dict(state.turn_counts) or "no turns")


@attrs.frozen
class SessionContext:
    """What the tasks of one session share: its state, the engines, and the two ways in to the writer."""

    state: SessionState
    engines: Engines
    config: Config
    telemetry: Telemetry
    out_tx: trio.MemorySendChannel[Outgoing]
    turn_tx: trio.MemorySendChannel[PendingTurn]
    audio_tx: trio.MemorySendChannel[ListenItem] | None = None
    audio_budget: TokenBucket = attrs.field(factory=lambda: TokenBucket(rate=1.0, burst=1.0))
    shutdown: Shutdown = attrs.field(factory=Shutdown)

    async def send(self, event: Any, request_id: str | None = None) -> None:
        await self.out_tx.send(Outgoing(event, request_id))

    async def close(self, code: int, reason: str) -> None:
        """Close the connection once everything queued so far is sent; the session then ends."""
        await self.out_tx.send(Outgoing(CloseConnection(code, reason)))

    async def error(
        self, exc: RemoteProtocolError | EngineError | StorageError, request_id: str | None = None
    ) -> None:
        self.telemetry.error(exc.code)
        await self.send(ErrorEvent(exc.code, exc.message), request_id)

    async def start_turn(
        self,
        kind: str,
        text: str,
        request_id: str | None,
        *,
        started_at: float | None = None,
        marks: Mapping[str, float] | None = None,
    ) -> None:
        """Cancel the running turn (a new request always wins) and queue the new one.

        ``started_at`` is when the user finished asking (default: now); voice turns pass the end of
        speech and their VAD/STT ``marks``, so every latency is measured from what the user felt.
        """
        if self.shutdown.draining.is_set():
            await self.send(
                ErrorEvent("shutting_down", "the server is shutting down; no new replies"), request_id
            )
            return
        if self.state.current_turn is not None:
            self.state.current_turn.cancel("new_message")
        at = trio.current_time() if started_at is None else started_at
        await self.turn_tx.send(PendingTurn(kind, text, request_id, at, dict(marks or {})))


async def send_task(
    ws: WebSocketConnection,
    out_rx: trio.MemoryReceiveChannel[Outgoing],
    *,
    on_closed: Callable[[], None],
) -> None:
    """The only writer to the socket: numbers events 1, 2, 3, … and closes the socket when told to."""
    seq = 0
    async with out_rx:
        async for item in out_rx:
            if isinstance(item.event, CloseConnection):
                with trio.move_on_after(CLOSE_TIMEOUT):
                    try:
                        await ws.aclose(item.event.code, item.event.reason)
                    except ConnectionClosed:
                        pass
                on_closed()
                return
            seq += 1
            text = codec.encode_event(item.event, seq=seq, request_id=item.request_id)
            try:
                await ws.send_message(text)
            except ConnectionClosed:
                on_closed()
                return


async def shutdown_task(shutdown: Shutdown, *, ctx: SessionContext) -> None:
    """Graceful shutdown, as this session sees it: finish the running reply, then close with 1001.

    When the server's grace period ends first (``closing``), the reply is cancelled with reason
    ``shutdown``; its ``response.done`` still goes out before the close.
    """
    await shutdown.draining.wait()
    turn = ctx.state.current_turn
    if turn is not None:
        async with trio.open_nursery() as race:

            async def cancel_at_closing() -> None:
                await shutdown.closing.wait()
                turn.cancel("shutdown")

            race.start_soon(cancel_at_closing)
            await turn.finished.wait()
            race.cancel_scope.cancel()
    await ctx.close(1001, "server shutting down")


async def heartbeat_task(ws: WebSocketConnection, *, ctx: SessionContext, interval: float) -> None:
    """Ping every ``interval`` seconds; a peer that does not answer within one interval is gone."""
    while True:
        await trio.sleep(interval)
        with trio.move_on_after(interval) as waiting:
            try:
                await ws.ping()
            except ConnectionClosed:
                return
        if waiting.cancelled_caught:
            logger.info("session %s: no pong within %.0f s; closing", ctx.state.session_id, interval)
            await ctx.close(1001, "heartbeat timeout")
            return


async def receive_task(ws: WebSocketConnection, *, ctx: SessionContext) -> None:
    """Read client frames until the connection ends or idles out; dispatch each decoded message."""
    config = ctx.config
    messages = TokenBucket(rate=config.max_messages_per_second, burst=config.max_messages_per_second)
    throttled: dict[str, float] = {}  # error code → when it was last sent
    while True:
        with trio.move_on_after(config.idle_timeout) as idle:
            try:
                frame = await ws.get_message()
            except ConnectionClosed:
                return
        if idle.cancelled_caught:
            await ctx.send(ErrorEvent("idle_timeout", f"no message for {config.idle_timeout:g} s"))
            await ctx.close(1000, "idle timeout")
            await trio.sleep_forever()  # the writer ends the session once the close handshake is done
        try:
            codec.check_frame_size(
                len(frame) if isinstance(frame, bytes) else len(frame.encode()),
                max_frame_bytes=config.max_frame_bytes,
            )
            if isinstance(frame, bytes):
                message: Any = codec.decode_binary(frame)
            else:
                message = codec.decode_text(frame, max_text_chars=config.max_text_chars)
                # Audio in JSON is bounded by the audio budget, like binary frames; everything else by this one.
                if not isinstance(message, codec.InputAudioAppend) and not messages.take(trio.current_time()):
                    raise RemoteProtocolError(
                        f"more than {config.max_messages_per_second:g} messages per second; message dropped",
                        code="rate_limited",
                        request_id=message.request_id,
                    )
            await dispatch(message, ctx=ctx)
        except RemoteProtocolError as exc:
            if exc.code in THROTTLED_ERRORS:
                now = trio.current_time()
                if now - throttled.get(exc.code, -math.inf) < 1.0:
                    continue
                throttled[exc.code] = now
            await ctx.error(exc, exc.request_id)
            if exc.close_code is not None:
                await ctx.close(exc.close_code, exc.message[:120])
                await trio.sleep_forever()  # the writer ends the session once the close handshake is done


async def dispatch(message: Any, *, ctx: SessionContext) -> None:
    """Act on one decoded client message."""
    state = ctx.state
    rid = message.request_id
    match message:
        case codec.Ping():
            await ctx.send(Pong(), rid)
        case codec.MessageCreate(text=text):
            await ctx.start_turn("chat", text, rid)
        case codec.Speak(text=text):
            await ctx.start_turn("speak", text, rid)
        case codec.ResponseCancel(response_id=response_id):
            turn = state.current_turn
            if turn is None or (response_id is not None and response_id != turn.response_id):
                raise RemoteProtocolError(
                    "no reply is running with that id", code="no_active_response", request_id=rid
                )
            turn.cancel("client_cancelled")
        case codec.SessionUpdate():
            await update_session(message, ctx=ctx)
        case codec.ResponseTruncate(response_id=response_id, audio_end_ms=audio_end_ms):
            await truncate_reply(response_id, audio_end_ms, rid, ctx=ctx)
        case _:
            await dispatch_audio(message, ctx=ctx)


async def dispatch_audio(message: Any, *, ctx: SessionContext) -> None:
    """Hand voice input to the session's listener, within the audio rate limit."""
    rid = message.request_id
    if ctx.audio_tx is None:
        raise RemoteProtocolError(
            f"{type(message).__name__} needs voice input, which this server was started without",
            code="unsupported",
            request_id=rid,
        )
    match message:
        case codec.InputAudioFrame() | codec.InputAudioAppend():
            seconds = len(message.audio) / 2 / ctx.state.input_sample_rate
            if not ctx.audio_budget.take(trio.current_time(), seconds):
                raise RemoteProtocolError(
                    f"audio is arriving faster than {ctx.config.max_audio_realtime_factor:g}x real time; frame dropped",
                    code="audio_rate_exceeded",
                    request_id=rid,
                )
            await ctx.audio_tx.send(AudioIn(message.audio, trio.current_time()))
        case codec.InputAudioCommit():
            await ctx.audio_tx.send(Commit(rid))
        case codec.InputAudioClear():
            await ctx.audio_tx.send(Clear(rid))
        case codec.Transcribe():
            await ctx.audio_tx.send(
                TranscribeClip(message.audio, message.sample_rate or ctx.state.input_sample_rate, rid)
            )


async def update_session(message: Any, *, ctx: SessionContext) -> None:
    state = ctx.state
    if message.conversation_id is not None and message.conversation_id != state.conversation_id:
        if not await ctx.engines.store.conversation_exists(message.conversation_id):
            raise RemoteProtocolError(
                f"no conversation {message.conversation_id!r}",
                code="conversation_not_found",
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
        state.turn_detection.update(
            {k: v for k, v in attrs.asdict(message.turn_detection).items() if v is not None}
        )
    view = state.config_view(ctx.config, ctx.engines.tts.sample_rate)
    await ctx.send(SessionUpdated(state.conversation_id, view), message.request_id)


async def truncate_reply(
    response_id: str, audio_end_ms: int, request_id: str | None, *, ctx: SessionContext
) -> None:
    """The client heard only ``audio_end_ms`` of a reply (running or recent): keep only those words."""
    found = ctx.state.records.get(response_id)
    if found is None:
        raise RemoteProtocolError(
            f"no recent reply {response_id!r}", code="response_not_found", request_id=request_id
        )
    _, record = found
    record.heard_ms = audio_end_ms
    if record.stored and audio_end_ms < record.audio_ms:
        # Queued behind the reply's own write on the store's single writer, so it lands after it.
        await ctx.engines.store.update_message_text(response_id, record.kept_text, interrupted=True)
