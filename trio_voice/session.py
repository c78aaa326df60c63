"""One client session, as a nursery: the wiring of its tasks (each lives in the module named beside it).

::

    run_session(ws, wire, ...)    ends when the client goes; cancels everything it started
    ├── receive_task    decode client frames → requests, cancels, settings, audio   (trio_voice.receive)
    ├── send_task       the only writer: events → the wire's renderer → frames       (trio_voice.writer)
    ├── converse_task   the only owner of turns: one at a time, the newest wins      (trio_voice.converse)
    ├── listen_task     VAD + streaming STT, when the server has STT engines          (trio_voice.listen)
    ├── heartbeat_task  WebSocket ping; closes a connection that stops answering      (trio_voice.watchdogs)
    └── shutdown_task   graceful shutdown: finish the reply, close with 1001          (trio_voice.watchdogs)

The wire (``trio_voice.wire``) is the protocol the client speaks, ``/v1/voice``'s own or the OpenAI
Realtime API's; everything else here is the same for both.

Interruption is ``TurnHandle.cancel(reason)``: one cancel scope around one turn nursery, reached through
the session's ``TurnControl``. The turn's ``response.done`` is sent by ``converse_task`` after that nursery
has exited, through the same unbuffered channel as every other event, so nothing of a reply can follow
its ``response.done``; the wire's connection object would refuse it if it did.

Error handling (the session boundary): a closed connection is a normal end; protocol errors become
``error`` events inside the session; a trio-voice error that escapes every handler is sent to the client
as an ``error`` event (with the next ``seq``) before it propagates to the connection handler, which
logs it and closes with 1011.
"""

from __future__ import annotations

import logging
from functools import partial

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection

from .config import Config
from .converse import converse_task
from .engines import Engines
from .errors import TrioVoiceError
from .events import ErrorEvent, SessionCreated
from .ids import new_id
from .lifecycle import SessionRegistry, Shutdown
from .limits import TokenBucket
from .listen import listen_task
from .listen_items import ListenItem
from .native_wire import NativeWire
from .receive import receive_task
from .session_context import SessionContext
from .session_state import SessionState, default_turn_detection
from .telemetry import Telemetry
from .watchdogs import heartbeat_task, shutdown_task
from .wire import Wire
from .writer import CloseConnection, Outgoing, emitter, send_task

logger = logging.getLogger(__name__)

# Seconds of audio a client may send at once beyond the real-time budget (network jitter, reconnects).
AUDIO_BURST_S = 2.0
# Seconds the boundary waits to tell the client about the error that ends its session.
LAST_WORDS_TIMEOUT = 1.0


async def run_session(
    ws: WebSocketConnection,
    *,
    engines: Engines,
    config: Config,
    telemetry: Telemetry,
    sessions: SessionRegistry | None = None,
    shutdown: Shutdown | None = None,
    wire: Wire | None = None,
) -> None:
    """Serve one connected client until it goes away (or idles out); every task it started is gone after.

    ``wire`` is the protocol the client speaks (default: ``/v1/voice``'s own); it belongs to this session.

    Error handling: see the module docstring. Anything that is not a closed connection propagates to the
    server's connection handler, which logs it and ends this session only.
    """
    voice = engines.stt is not None and engines.vad_factory is not None
    wire = wire if wire is not None else NativeWire(max_text_chars=config.max_text_chars)
    try:
        conversation_id = await engines.store.create_conversation()
    except TrioVoiceError as exc:
        await _tell_client(ws, wire, exc, "(not started)")
        raise
    state = SessionState(
        session_id=new_id("sess"),
        conversation_id=conversation_id,
        instructions=config.system_prompt,
        input_sample_rate=wire.input_sample_rate or config.input_sample_rate,
        turn_detection=default_turn_detection(
            config, voice=voice, semantic=engines.turn_model is not None and wire.semantic_turns
        ),
        language=config.language,
    )
    state.turns.background = state.narrations.next_turn
    logger.info("session %s opened on %s (conversation %s)", state.session_id, wire.name, conversation_id)
    if sessions is not None:
        sessions.add(state)
    telemetry.session_opened()
    try:
        async with trio.open_nursery() as nursery:
            out_tx, out_rx = trio.open_memory_channel[Outgoing | CloseConnection](0)
            audio_tx, audio_rx = trio.open_memory_channel[ListenItem](config.audio_buffer)
            end_session = nursery.cancel_scope.cancel
            nursery.start_soon(
                partial(
                    send_task, ws, out_rx, wire.render, on_closed=end_session, on_sent=state.playback.on_sent
                )
            )
            ctx = SessionContext(
                state,
                engines,
                config,
                telemetry,
                out_tx.clone(),
                audio_tx if voice else None,
                TokenBucket(rate=config.max_audio_realtime_factor, burst=AUDIO_BURST_S),
                shutdown or Shutdown(),
            )
            await ctx.send(
                SessionCreated(state.session_id, conversation_id, state.config_view(config, engines.voices))
            )
            nursery.start_soon(
                partial(
                    converse_task,
                    state.turns,
                    emit_for=partial(emitter, out_tx.clone()),
                    engines=engines,
                    config=config,
                    telemetry=telemetry,
                    state=state,
                )
            )
            if voice:
                nursery.start_soon(partial(listen_task, audio_rx, ctx=ctx))
            else:
                audio_rx.close()
            if shutdown is not None:
                nursery.start_soon(partial(shutdown_task, shutdown, ctx=ctx))
            if config.heartbeat_interval > 0:
                nursery.start_soon(partial(heartbeat_task, ws, ctx=ctx, interval=config.heartbeat_interval))
            with out_tx, audio_tx:
                await receive_task(ws, ctx=ctx, wire=wire)
            end_session()
    except* TrioVoiceError as group:
        await _tell_client(ws, wire, group.exceptions[0], state.session_id)
        raise
    finally:
        if sessions is not None:
            sessions.remove(state.session_id)
        telemetry.session_closed()
        logger.info("session %s closed after %s", state.session_id, dict(state.turn_counts) or "no turns")


async def _tell_client(ws: WebSocketConnection, wire: Wire, exc: BaseException, session_id: str) -> None:
    """Send the error that is ending the session, numbered after everything sent so far.

    Every task of the session has ended, so this is the only writer left.
    """
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    assert isinstance(exc, TrioVoiceError)
    logger.error("session %s: ending on %s: %s", session_id, exc.code, exc)
    with trio.move_on_after(LAST_WORDS_TIMEOUT):
        try:
            for text in wire.render(ErrorEvent(exc.code, exc.message), None):
                await ws.send_message(text)
        except ConnectionClosed:
            pass
