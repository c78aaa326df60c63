"""A session's user: who it is, its presence and typing, shown to the user's other sessions.

A session learns its user from the connection's user token, or from ``session.update {user_id}``; one
user may have several sessions (a phone and a laptop). What one session of a user does that the others
should see goes through the shared state's per-user fan-out (``trio_voice.shared``), never through
another session's objects, so it works the same when the sessions live on different server instances.

The task that reads the socket only changes this session's :class:`UserLink` (synchronously);
:func:`user_task` publishes the changes and forwards the other sessions' events to this client::

    user_task(ctx)                      once the session has a user, until it ends
    ├── publish_task                    this session's presence and typing → shared state, fan-out
    └── (loop)                          the user's events → presence.update / typing.update / messages

Typing also holds a spoken turn's end (``TurnControl.set_typing``), and ends by itself ``typing_timeout``
seconds after the last ``typing.start`` (:func:`typing_task`).

Error handling: presence is best effort. A shared-state failure (``StorageError``) is logged and ends
the fan-out of this session only; the session goes on.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import trio

from .errors import StorageError
from .events import PresenceUpdate, TypingUpdate
from .offline import deliver_pending
from .shared import MessageQueued, PresenceChanged, TypingChanged
from .user_link import UserLink as UserLink

if TYPE_CHECKING:
    from .session_context import SessionContext

logger = logging.getLogger(__name__)

# Seconds the farewell (this session is offline) may take when the session ends.
FAREWELL_TIMEOUT = 2.0


def start_typing(ctx: SessionContext) -> None:
    """``typing.start``: hold spoken turns and tell the user's other sessions, for ``typing_timeout`` s."""
    ctx.state.user.set_typing(True, trio.current_time() + ctx.config.typing_timeout)
    ctx.state.turns.set_typing(True)


def stop_typing(ctx: SessionContext) -> None:
    """``typing.stop``, a typed message, or the timeout: a held spoken turn may start now."""
    if ctx.state.user.typing or ctx.state.turns.typing:
        ctx.state.user.set_typing(False)
        ctx.state.turns.set_typing(False)


async def typing_task(ctx: SessionContext) -> None:
    """End typing ``typing_timeout`` seconds after the last ``typing.start``, if no ``typing.stop`` came."""
    link = ctx.state.user
    while True:
        with trio.CancelScope(deadline=link.typing_deadline):
            await link.wait_changed()
            continue
        if link.typing and trio.current_time() >= link.typing_deadline:
            stop_typing(ctx)


async def user_task(ctx: SessionContext) -> None:
    """Wait for the session's user, then run its presence and fan-out until the session ends."""
    link = ctx.state.user
    while link.user_id is None:
        await link.wait_changed()
    if ctx.shared is None:
        return
    user_id, session_id = link.user_id, ctx.state.session_id
    try:
        async with ctx.shared.subscribe(user_id) as events, trio.open_nursery() as nursery:
            nursery.start_soon(_publish_task, ctx, user_id)
            await _show_other_sessions(ctx, user_id)
            await deliver_pending(ctx)
            async for event in events:
                await _forward(ctx, event)
    except StorageError as exc:
        logger.warning("session %s: presence of %s stopped: %s", session_id, user_id, exc)
    finally:
        with trio.CancelScope(shield=True), trio.move_on_after(FAREWELL_TIMEOUT):
            await _farewell(ctx, user_id)


async def _publish_task(ctx: SessionContext, user_id: str) -> None:
    """Publish this session's presence and typing whenever they change (first, as it joins)."""
    assert ctx.shared is not None
    link, session_id = ctx.state.user, ctx.state.session_id
    status, typing = None, False
    while True:
        if link.status != status:
            status = link.status
            last_seen = await ctx.shared.set_presence(user_id, session_id, status)
            await ctx.shared.publish(PresenceChanged(user_id, session_id, status, last_seen))
        if link.typing != typing:
            typing = link.typing
            await ctx.shared.set_typing(user_id, session_id, typing)
            await ctx.shared.publish(TypingChanged(user_id, session_id, typing))
        if (link.status, link.typing) == (status, typing):
            await link.wait_changed()


async def _show_other_sessions(ctx: SessionContext, user_id: str) -> None:
    """A session that joins sees where else its user is, as if each had just said so."""
    assert ctx.shared is not None
    presence = await ctx.shared.presence(user_id)
    for other in presence.sessions:
        if other.session_id == ctx.state.session_id:
            continue
        await ctx.send(PresenceUpdate(user_id, other.session_id, other.status, other.last_seen))
        if other.typing:
            await ctx.send(TypingUpdate(user_id, other.session_id, True))


async def _forward(ctx: SessionContext, event: object) -> None:
    match event:
        case PresenceChanged() if event.session_id != ctx.state.session_id:
            await ctx.send(PresenceUpdate(event.user_id, event.session_id, event.status, event.last_seen))
        case TypingChanged() if event.session_id != ctx.state.session_id:
            await ctx.send(TypingUpdate(event.user_id, event.session_id, event.typing))
        case MessageQueued():
            await deliver_pending(ctx)


async def _farewell(ctx: SessionContext, user_id: str) -> None:
    assert ctx.shared is not None
    session_id = ctx.state.session_id
    try:
        if ctx.state.user.typing:
            await ctx.shared.publish(TypingChanged(user_id, session_id, False))
        last_seen = await ctx.shared.set_presence(user_id, session_id, "offline")
        await ctx.shared.publish(PresenceChanged(user_id, session_id, "offline", last_seen))
    except StorageError as exc:
        logger.warning("session %s: could not say %s went offline: %s", session_id, user_id, exc)
