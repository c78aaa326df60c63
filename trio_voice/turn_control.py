"""Who may start a reply, and when: the mailbox between a session's requesters and its one turn owner.

In the pattern of hypercorn's ``TrioSingleTask``: ``converse_task`` alone starts, cancels and replaces
turns; everything else (a typed message, a spoken final, ``response.cancel``, barge-in, shutdown) is a
*synchronous* call on :class:`TurnControl` that records what it wants and returns at once. So the task
that reads the socket never waits for a reply to wind down, and there is no window in which a request is
on its way but not yet visible to a cancel.

Rules:

- **The newest request wins.** A request cancels the running reply (``new_message``) and replaces any
  request not started yet. A replaced request is not lost: the owner still opens and closes a reply for
  it (``response.created``, then ``response.done`` ``cancelled``/``new_message``) and stores the user's
  words, so every request gets exactly one ``response.done``.
- **No reply starts over the user.** While the user is speaking, or a spoken utterance is still being
  transcribed, a request is held. A spoken final that was held is merged with the next spoken final
  (utterance 1's final arriving after utterance 2 began becomes one turn with both), never answered
  over the user; a typed request waits until the user has finished.
- **Barge-in** cancels the running reply (``turn_detected``) the moment speech starts.
- **Typing holds a spoken turn's end.** While the client says the user is typing (``typing.start``), a
  spoken request waits: the user is composing, not done. Typed requests are not held by it.

The state is written by the sync methods (any task of the session) and by :meth:`TurnControl.start` /
:meth:`TurnControl.finish` (the owner only); ``current`` has that one writer.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum

import attrs
import trio

from .codec.codes import CancelReason
from .pause import PauseGate


class TurnKind(StrEnum):
    CHAT = "chat"  # ask the LLM
    SPEAK = "speak"  # say the given text


@attrs.frozen
class PendingTurn:
    """A request for a reply, not started yet.

    ``started_at`` is when the user finished asking (the end of speech for a spoken turn): every latency
    of the reply is measured from it. ``spoken`` marks a final transcript, which may merge with the next.
    """

    kind: TurnKind
    text: str
    request_id: str | None
    started_at: float
    speech_marks: Mapping[str, float] = attrs.field(factory=dict)  # spoken turns: VAD/STT times
    spoken: bool = False

    def merged_with(self, later: PendingTurn) -> PendingTurn:
        """One spoken turn of this utterance and a later one: both texts, the later one's timing."""
        return attrs.evolve(later, text=f"{self.text} {later.text}")


@attrs.define
class TurnHandle:
    """The running turn: its cancel scope, and why it was cancelled (the first reason given wins)."""

    response_id: str
    request: PendingTurn
    scope: trio.CancelScope = attrs.field(factory=trio.CancelScope)
    reason: CancelReason | None = None
    speech_started_at: float | None = None  # barge-in: when the speech that cancelled it began
    gate: PauseGate = attrs.field(factory=PauseGate)  # response.pause / response.resume

    def cancel(self, reason: CancelReason) -> None:
        if self.reason is None:
            self.reason = reason
        self.scope.cancel()


class TurnControl:
    """The mailbox of one session's turns. See the module docstring for its rules.

    ``replies``, when given, is the server's map of running replies by id (for the HTTP reply controls):
    the running turn is in it from ``start`` to ``finish``.
    """

    def __init__(self, replies: dict[str, TurnHandle] | None = None) -> None:
        self._replies = replies
        self._typing = False
        self._pending: PendingTurn | None = None
        self._superseded: list[PendingTurn] = []
        self._current: TurnHandle | None = None
        self._speaking = False
        self._transcribing = 0  # spoken utterances whose final transcript is still coming
        self._changed = trio.Event()

    # --- reading ------------------------------------------------------------------------------------
    @property
    def current(self) -> TurnHandle | None:
        """The running turn, if any (written only by the owner)."""
        return self._current

    @property
    def user_speaking(self) -> bool:
        return self._speaking

    @property
    def pending(self) -> PendingTurn | None:
        """The request waiting to start, if any."""
        return self._pending

    @property
    def held(self) -> bool:
        """Whether a request must wait: the user is speaking, or a final transcript is on its way."""
        return self._speaking or self._transcribing > 0

    @property
    def typing(self) -> bool:
        return self._typing

    def _waits(self, turn: PendingTurn) -> bool:
        return self.held or (self._typing and turn.spoken)

    # --- requesters: synchronous, never wait ---------------------------------------------------------
    def request(self, turn: PendingTurn) -> None:
        """A new request: it cancels the running reply and replaces (or merges with) the waiting one."""
        waiting = self._pending
        if waiting is not None:
            if waiting.spoken and turn.spoken:
                turn = waiting.merged_with(turn)
            else:
                self._superseded.append(waiting)
        self._pending = turn
        if self._current is not None:
            self._current.cancel(CancelReason.NEW_MESSAGE)
        self._notify()

    def cancel(self, reason: CancelReason, response_id: str | None = None) -> bool:
        """Cancel the running reply (only if it is ``response_id``, when given); False if none matched."""
        running = self._current
        if running is None or (response_id is not None and response_id != running.response_id):
            return False
        running.cancel(reason)
        return True

    def speech_started(self, at: float) -> None:
        """The user started speaking (at server time ``at``): barge in on the running reply, hold the rest."""
        self._speaking = True
        running = self._current
        if running is not None:
            if running.speech_started_at is None:
                running.speech_started_at = at
            running.cancel(CancelReason.TURN_DETECTED)

    def speech_stopped(self) -> None:
        """The user stopped speaking (a final transcript, if any, was announced with transcription_started)."""
        self._speaking = False
        self._notify()

    def transcription_started(self) -> None:
        """A spoken utterance's final transcript is on its way: hold requests until it arrives."""
        self._transcribing += 1

    def transcription_done(self, turn: PendingTurn | None) -> None:
        """The final transcript arrived: ``turn`` is its request, or None when it held no words."""
        self._transcribing = max(0, self._transcribing - 1)
        if turn is not None:
            self.request(turn)
        else:
            self._notify()

    def set_typing(self, typing: bool) -> None:
        """The user started or stopped typing: a spoken request waits while it lasts."""
        self._typing = typing
        self._notify()

    def discard_pending(self) -> None:
        """Forget the waiting request (shutdown): it never started, so it has no reply to close."""
        self._pending = None
        self._notify()

    # --- the owner (converse_task) ---------------------------------------------------------------------
    async def wait_next(self) -> tuple[list[PendingTurn], PendingTurn | None]:
        """Wait until there is something to do; return the superseded requests to close, in order, and
        the request to start now (None while it is held)."""
        while not self._superseded and (self._pending is None or self._waits(self._pending)):
            await self._changed.wait()
        superseded, self._superseded = self._superseded, []
        turn = None
        if self._pending is not None and not self._waits(self._pending):
            turn, self._pending = self._pending, None
        return superseded, turn

    def start(self, turn: PendingTurn, response_id: str) -> TurnHandle:
        """Make ``turn`` the running one (the owner calls this, and nobody else)."""
        assert self._current is None, "one turn at a time"
        self._current = TurnHandle(response_id, turn)
        if self._replies is not None:
            self._replies[response_id] = self._current
        return self._current

    def finish(self, handle: TurnHandle) -> None:
        """The running turn has ended and sent its ``response.done`` (the owner calls this)."""
        assert self._current is handle
        self._current = None
        if self._replies is not None:
            self._replies.pop(handle.response_id, None)
        self._notify()

    async def wait_idle(self) -> None:
        """Wait until no turn runs and none waits to start."""
        while self._current is not None or self._pending is not None or self._superseded:
            await self._changed.wait()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()
