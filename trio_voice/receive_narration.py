"""The session side of narration: ``narrate`` queues one, ``narration.pause|resume|cancel`` steer it.

These run in the receive task and never wait for a reply: they change the session's
:class:`~trio_voice.narration.Narrations` and, when the running turn is the narration concerned, cancel
it through :class:`~trio_voice.turn_control.TurnControl` (reason ``narration_paused``); the turn's owner
then reports the pause (see ``trio_voice.converse``). A narration that is not running is answered here.
"""

from __future__ import annotations

from functools import partial

import trio

from . import codec
from .codec import codes
from .codec.codes import CancelReason
from .errors import RemoteProtocolError
from .events import NarrationCreated, NarrationDone, NarrationPaused
from .ids import new_id
from .narration import Narration, read_lesson, split_phrases
from .phrases import PhraseRules
from .session_context import SessionContext


async def start_narration(message: codec.Narrate, *, ctx: SessionContext) -> None:
    """Queue a narration of ``text`` or of a stored lesson; answered with ``narration.created``.

    Raises:
        RemoteProtocolError: ``text_too_long``, ``lesson_not_found``, ``too_many_narrations``.
    """
    config, rid = ctx.config, message.request_id
    narrations = ctx.state.narrations
    if len(narrations) >= config.max_queued_narrations:
        raise RemoteProtocolError(
            f"{config.max_queued_narrations} narrations are queued or paused already; cancel one first",
            code=codes.TOO_MANY_NARRATIONS,
            request_id=rid,
        )
    text = message.text
    if message.lesson_id is not None:
        text = await _lesson(message.lesson_id, ctx=ctx, request_id=rid)
    assert text is not None
    if len(text) > config.max_narration_chars:
        raise RemoteProtocolError(
            f"narrate: field 'text' is longer than {config.max_narration_chars} characters",
            code=codes.TEXT_TOO_LONG,
            request_id=rid,
        )
    # Up to max_narration_chars of text: cut in a worker thread (0.5 s for 100,000 characters here).
    phrases = await trio.to_thread.run_sync(split_phrases, text, PhraseRules.from_config(config))
    if not phrases:
        raise RemoteProtocolError(
            "narrate: the text has nothing to say", code=codes.INVALID_FIELD, request_id=rid
        )
    narration = Narration(new_id("narr"), phrases, message.voice, rid)
    ahead = narrations.add(narration)
    await ctx.send(NarrationCreated(narration.narration_id, narration.total, ahead), rid)
    ctx.state.turns.poke()


async def _lesson(lesson_id: str, *, ctx: SessionContext, request_id: str | None) -> str:
    folder = ctx.config.lessons_dir
    text = None
    if folder is not None:
        try:
            text = await trio.to_thread.run_sync(
                partial(read_lesson, folder, lesson_id, max_chars=ctx.config.max_narration_chars)
            )
        except ValueError as exc:
            raise RemoteProtocolError(
                f"narrate: {exc}", code=codes.TEXT_TOO_LONG, request_id=request_id
            ) from None
    if text is None:
        raise RemoteProtocolError(
            f"no lesson {lesson_id!r}" + ("" if folder is not None else " (the server has no --lessons-dir)"),
            code=codes.LESSON_NOT_FOUND,
            request_id=request_id,
        )
    return text


async def control_narration(
    message: codec.NarrationPause | codec.NarrationResume | codec.NarrationCancel, *, ctx: SessionContext
) -> None:
    """Pause, resume or cancel a narration (``narration_id``, or the current one).

    Raises:
        RemoteProtocolError: ``narration_not_found``.
    """
    rid = message.request_id
    narrations, turns = ctx.state.narrations, ctx.state.turns
    narration = narrations.find(message.narration_id)
    if narration is None:
        raise RemoteProtocolError(
            "no such narration" if message.narration_id else "no narration is queued",
            code=codes.NARRATION_NOT_FOUND,
            request_id=rid,
        )
    running = turns.current is not None and turns.current.request.narration is narration
    match message:
        case codec.NarrationPause():
            if narration.paused:
                return
            narration.paused = True
            if running:
                turns.cancel(CancelReason.NARRATION_PAUSED)  # its owner reports narration.paused
            else:
                await ctx.send(
                    NarrationPaused(
                        narration.narration_id, narration.next_index, CancelReason.NARRATION_PAUSED
                    ),
                    rid,
                )
        case codec.NarrationResume():
            if running:
                # Paused a moment ago and still winding down: go on once it has stopped.
                narration.resume_asked = narration.paused
            elif narration.paused:
                narration.rewind_to_heard()
                narration.paused = False
                turns.poke()
        case codec.NarrationCancel():
            narrations.remove(narration)
            if running:
                turns.cancel(CancelReason.NARRATION_PAUSED)  # its owner reports narration.done
            else:
                await ctx.send(NarrationDone(narration.narration_id, "cancelled"), rid)
            turns.poke()
