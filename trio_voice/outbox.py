"""A session's outgoing frames, between its one writer and whichever connection is attached now.

The session's writer (``trio_voice.writer.send_task``) numbers each event and appends the frame here;
the attached connection's delivery loop reads frames from its cursor and writes them to its socket. The
frames live in a bounded :class:`~trio_voice.replay.ReplayLog`, so a session outlives its connection:
when the connection drops, the writer goes on appending (a running reply keeps running) until the log
is full of frames no client has seen, and then waits; a client that resumes is attached with the last
``seq`` it received and reads on from there.

One connection at a time: attaching a new one (a resume) detaches the old one, whose delivery loop
stops at its next frame, and whose writes no longer count.

Resource handling: everything waits on one ``trio.Event`` that is replaced at every change, as in
``TurnControl``; nothing here starts a task or touches a socket.
"""

from __future__ import annotations

from collections.abc import Callable

import attrs
import trio

from .replay import Frame, ReplayLog


@attrs.frozen
class CloseConnection:
    """Not an event: close the connection after everything before it, with this code; the session ends."""

    code: int
    reason: str


@attrs.define(eq=False)
class Attachment:
    """One connection's hold on the outbox: how far it has written."""

    cursor: int  # the seq of the last frame written to (or received by) this connection
    current: bool = True  # False once detached or replaced
    replaced: bool = False  # a newer connection took the session over (a resume elsewhere)


class Outbox:
    """The frames of one session. See the module docstring."""

    def __init__(self, log: ReplayLog) -> None:
        self.log = log
        self.attachment: Attachment | None = None
        self.closing: CloseConnection | None = None
        self.close_done = False  # a connection wrote everything up to the close, and closed
        self.ever_attached = False
        self._changed = trio.Event()

    # --- the writer ---------------------------------------------------------------------------------
    async def append(self, frame: Frame) -> None:
        """Keep ``frame`` for the attached connection (and a later resume); wait while the log is full of
        frames no client has seen (a slow client, or none at all)."""
        while not self.log.has_room(frame.size):
            await self._wait()
        self.log.append(frame)
        self._notify()

    def append_last(self, frame: Frame) -> None:
        """Keep ``frame`` now, over the bounds if need be: the last frame of a session that is ending."""
        self.log.force_append(frame)
        self._notify()

    def close(self, close: CloseConnection) -> None:
        """Close the attached connection once every frame before now is written."""
        if self.closing is None:
            self.closing = close
            self._notify()

    # --- connections --------------------------------------------------------------------------------
    def attach(self, last_seq: int) -> Attachment:
        """Attach a connection that has received every frame up to ``last_seq``; detach the one before.

        Raises:
            ReplayGap: the frames after ``last_seq`` cannot be replayed (evicted, or never sent).
        """
        self.log.check_resume(last_seq)
        if self.attachment is not None:
            self.attachment.current = False
            self.attachment.replaced = True
            self.log.detached()
        self.log.settle(last_seq)
        self.attachment = Attachment(last_seq)
        self.ever_attached = True
        self._notify()
        return self.attachment

    def closed(self, attachment: Attachment) -> None:
        """``attachment``'s connection made the session's close, after every frame before it."""
        if attachment.current:
            self.close_done = True
        self.detach(attachment)

    def detach(self, attachment: Attachment) -> None:
        """``attachment``'s connection is gone (a no-op if it was replaced already)."""
        if attachment.current:
            attachment.current = False
            self.attachment = None
            self.log.detached()
            self._notify()

    async def next_frame(self, attachment: Attachment) -> Frame | CloseConnection | None:
        """The next frame for ``attachment`` to write, the close it must make after its last frame, or None
        once it has been detached or replaced (its delivery loop then stops)."""
        while attachment.current:
            frame = self.log.after(attachment.cursor)
            if frame is not None:
                return frame
            if self.closing is not None:
                return self.closing
            await self._wait()
        return None

    def written(self, attachment: Attachment, seq: int) -> None:
        """``attachment`` wrote frame ``seq`` to its socket."""
        attachment.cursor = seq
        if attachment.current:
            self.log.written(seq)
            self._notify()

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        """Wait until ``predicate()`` holds (it is checked after every change of the outbox)."""
        while not predicate():
            await self._wait()

    async def wait_written(self, seq: int) -> None:
        """Wait until the attached connection has written frame ``seq`` (or there is none to write it)."""
        while self.attachment is not None and self.attachment.cursor < seq:
            await self._wait()

    # --- waiting ------------------------------------------------------------------------------------
    async def _wait(self) -> None:
        await self._changed.wait()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()


async def wait_for_end(
    outbox: Outbox,
    *,
    ttl: float,
    closes_when_detached: bool = True,
    on_connected: Callable[[bool], None] | None = None,
) -> str:
    """Until the outbox's owner should end: its close was made (``closed``), or its connection dropped
    and none attached again within ``ttl`` seconds (``expired``).

    ``closes_when_detached``: a close asked for while no connection is attached ends it at once (a
    session shutting down); otherwise the close waits for a connection to make it (a streamed reply that
    finished while its client was away). ``on_connected(bool)`` hears each detach and re-attach.
    """

    def done() -> bool:
        return outbox.close_done or (
            closes_when_detached and outbox.closing is not None and outbox.attachment is None
        )

    while True:
        await outbox.wait_for(lambda: outbox.attachment is None or done())
        if done():
            return "closed"
        if on_connected is not None:
            on_connected(False)
        with trio.move_on_after(ttl):
            await outbox.wait_for(lambda: outbox.attachment is not None or done())
            if done():
                return "closed"
            if on_connected is not None:
                on_connected(True)
            continue
        return "expired"
