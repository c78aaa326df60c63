"""One client session, as a nursery in the server's session host: the wiring of its tasks.

::

    run_session(host, identity, wire)  in the SessionHost nursery; ends when the client is gone for good
    ├── send_task       the only writer: events → the wire's renderer → the outbox   (trio_voice.writer)
    ├── converse_task   the only owner of turns: one at a time, the newest wins      (trio_voice.converse)
    ├── listen_task     VAD + streaming STT, when the server has STT engines          (trio_voice.listen)
    ├── shutdown_task   graceful shutdown: finish the reply, close with 1001          (trio_voice.watchdogs)
    ├── user_task       presence, typing and offline messages of the session's user   (trio_voice.presence)
    ├── typing_task     typing ends by itself                                         (trio_voice.presence)
    └── recording_task  session.update record: audio and transcript to disk          (trio_voice.recording)

The wire (``trio_voice.wire``) is the protocol the client speaks, ``/v1/voice``'s own or the OpenAI
Realtime API's; it is chosen when the session opens and everything else here is the same for both,
except that a realtime session offers no resume (the API has no ``seq``): it ends with its connection.

The connection is not in this tree: it is a writer target that attaches to the session and detaches
from it (``trio_voice.session_link`` reads its frames and writes the outbox to it). A native session
outlives a connection that drops without a close frame for ``resume_ttl`` seconds: its reply keeps
running (its events kept in the bounded replay log) and a client that sends ``session.resume`` is
attached again and receives everything it missed, ``seq`` going on. When the TTL expires first, the
session ends: the reply is cancelled (``client_disconnected``), finished replies that never reached the
client are queued for its user (``trio_voice.offline``). A client that closes the connection properly
ends the session at once.

Interruption is ``TurnHandle.cancel(reason)``: one cancel scope around one turn nursery, reached through
the session's ``TurnControl``. The turn's ``response.done`` is sent by ``converse_task`` after that nursery
has exited, through the same unbuffered channel as every other event, so nothing of a reply can follow
its ``response.done``; the wire's connection object would refuse it if it did.

Error handling (the session boundary, the only broad catch): a trio-voice error that escapes every handler
is sent to the client as an ``error`` event (after everything sent) and the connection is closed with
1011; anything else is logged with its traceback and closes the connection with 1011. Neither reaches
the host's nursery: one session's failure ends that session only.
"""

from __future__ import annotations

import logging
import secrets
from functools import partial

import trio

from .auth import Identity
from .codec import codes
from .converse import converse_task
from .errors import TrioVoiceError
from .events import ErrorEvent, SessionCreated, SessionUpdated
from .fair_queue import current_flow
from .ids import new_id
from .limits import TokenBucket
from .listen import listen_task
from .listen_items import ListenItem
from .offline import queue_unsent_replies
from .outbox import Attachment, CloseConnection, Outbox, wait_for_end
from .presence import typing_task, user_task
from .recording import Recording, RecordingError, recording_task
from .replay import ReplayLog
from .session_context import SessionContext
from .session_host import LiveSession, Services, SessionHost, token_digest
from .session_state import SessionState, default_turn_detection
from .shared import SessionRoute
from .turn_control import TurnControl
from .watchdogs import shutdown_task
from .wire import Wire
from .writer import Outgoing, emitter, send_task

logger = logging.getLogger(__name__)

# Seconds of audio a client may send at once beyond the real-time budget (network jitter, reconnects).
AUDIO_BURST_S = 2.0
# Seconds the boundary waits for an ending session's last frames to be written.
LAST_WORDS_TIMEOUT = 1.0


async def open_session(host: SessionHost, identity: Identity, wire: Wire) -> tuple[LiveSession, Attachment]:
    """Start a fresh session for a new connection in ``host``, speaking ``wire`` (which belongs to it from
    now on); return it, attached to that connection.

    Raises:
        TrioVoiceError: the session could not start (the store failed creating its conversation).
    """
    result: tuple[LiveSession, Attachment] = await host.start(run_session, identity=identity, wire=wire)
    return result


async def run_session(
    *,
    host: SessionHost,
    identity: Identity,
    wire: Wire,
    task_status: trio.TaskStatus[object] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run one session until its client is gone for good; ``task_status.started((live, attachment))``
    once it has sent ``session.created`` to the connection that opened it.

    Raises (before it started only): ``TrioVoiceError`` when its conversation cannot be created.
    """
    services = host.services
    engines, config, telemetry, shared = (
        services.engines,
        services.config,
        services.telemetry,
        services.shared,
    )
    voice = engines.stt is not None and engines.vad_factory is not None
    conversation_id = await engines.store.create_conversation()
    state = SessionState(
        session_id=new_id("sess"),
        conversation_id=conversation_id,
        instructions=config.system_prompt,
        input_sample_rate=wire.input_sample_rate or config.input_sample_rate,
        turn_detection=default_turn_detection(
            config, voice=voice, semantic=engines.turn_model is not None and wire.semantic_turns
        ),
        language=config.language,
        turns=TurnControl(services.replies),
    )
    state.turns.background = state.narrations.next_turn
    current_flow.set(state.session_id)  # the session's model calls queue as one flow (fair_queue)
    if identity.user_id is not None:
        state.user.set_user(identity.user_id, from_token=True)
    resumable = wire.resumable and config.resume_ttl > 0
    token = secrets.token_urlsafe(32) if resumable else None
    log = ReplayLog(max_frames=config.replay_buffer_events, max_bytes=config.replay_buffer_bytes)
    live = LiveSession(state, Outbox(log), token, wire)
    if token is not None:
        await shared.put_route(
            SessionRoute(state.session_id, shared.instance_id, token_digest(token), identity.user_id)
        )
    host.live[state.session_id] = live
    services.sessions.add(state)
    telemetry.session_opened()
    logger.info("session %s opened on %s (conversation %s)", state.session_id, wire.name, conversation_id)
    how = "closed"
    try:
        with live.scope:
            async with trio.open_nursery() as nursery:
                out_tx, out_rx = trio.open_memory_channel[Outgoing | CloseConnection](0)
                audio_tx, audio_rx = trio.open_memory_channel[ListenItem](config.audio_buffer)
                recording = Recording(state.session_id, config.recordings)
                nursery.start_soon(
                    partial(
                        send_task,
                        out_rx,
                        wire.render,
                        live.outbox,
                        tap=recording.on_sent,
                        on_sent=state.playback.on_sent,
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
                    services.shutdown,
                    shared=shared,
                    recording=recording if services.recordings is not None else None,
                )
                live.ctx = ctx
                attachment = live.outbox.attach(0)
                await ctx.send(
                    SessionCreated(
                        state.session_id,
                        conversation_id,
                        state.config_view(config, engines.voices),
                        token,
                        shared.instance_id,
                    )
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
                nursery.start_soon(partial(shutdown_task, services.shutdown, ctx=ctx))
                nursery.start_soon(user_task, ctx)
                nursery.start_soon(typing_task, ctx)
                if services.recordings is not None:
                    failed = partial(_recording_failed, ctx)
                    nursery.start_soon(
                        partial(recording_task, recording, services.recordings, on_failure=failed)
                    )
                task_status.started((live, attachment))
                with out_tx, audio_tx:
                    how = await wait_for_end(
                        live.outbox, ttl=config.resume_ttl if resumable else 0, on_connected=live.connected
                    )
                nursery.cancel_scope.cancel()
            if how == "expired" and not wire.resumable:
                how = "closed"  # a realtime session ends with its connection: no client can come back
            if how == "expired":
                await _expire(live, services)
    except* TrioVoiceError as group:
        how = "closed"
        await _last_words(live, group.exceptions[0])
    except* Exception:
        how = "closed"
        logger.exception("session %s ended by an unexpected error", state.session_id)
        live.outbox.close(CloseConnection(codes.CLOSE_INTERNAL_ERROR, "internal error"))
    finally:
        how = live.end_reason or how
        host.live.pop(state.session_id, None)
        services.sessions.remove(state.session_id)
        live.ended.set()
        telemetry.session_closed()
        telemetry.session_ended("expired" if how == "expired" else "closed")
        if token is not None:
            with trio.CancelScope(shield=True), trio.move_on_after(LAST_WORDS_TIMEOUT):
                await shared.end_route(state.session_id, "expired" if how == "expired" else "closed")
        logger.info("session %s %s after %s", state.session_id, how, dict(state.turn_counts) or "no turns")


async def _expire(live: LiveSession, services: Services) -> None:
    """The client never came back: its finished, never-delivered replies wait for its user instead."""
    state = live.state
    logger.info("session %s: no resume within %g s", state.session_id, services.config.resume_ttl)
    unsent = live.outbox.log.unsettled_done()
    if unsent and state.user.user_id is not None:
        with trio.CancelScope(shield=True), trio.move_on_after(LAST_WORDS_TIMEOUT):
            await queue_unsent_replies(
                services.shared,
                services.telemetry,
                state.user.user_id,
                unsent,
                conversation_id=state.conversation_id,
                ttl=services.config.offline_ttl,
            )


async def _last_words(live: LiveSession, exc: BaseException) -> None:
    """Tell the client about the error that ends the session, numbered after everything sent, then close.

    Every task of the session has ended, so nothing else writes (nor renders); the frames are kept even if
    the log is full.
    """
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    assert isinstance(exc, TrioVoiceError)
    logger.error("session %s: ending on %s: %s", live.state.session_id, exc.code, exc)
    for frame in live.wire.render(Outgoing(ErrorEvent(exc.code, exc.message))):
        live.outbox.append_last(frame)
    live.outbox.close(CloseConnection(codes.CLOSE_INTERNAL_ERROR, exc.code))


async def _recording_failed(ctx: SessionContext, error: RecordingError) -> None:
    """The recording stopped (a full disk, the budget spent): say so, and show ``record: false``."""
    ctx.state.record = False
    await ctx.error(error)
    view = ctx.state.config_view(ctx.config, ctx.engines.voices)
    await ctx.send(SessionUpdated(ctx.state.conversation_id, view))
