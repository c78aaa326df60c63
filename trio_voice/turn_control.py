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
- **Barge-in** cancels the running reply (``turn_detected``) the moment speech starts, unless the session
  turned interruption off (the realtime API's ``interrupt_response: false``): the reply then goes on,
  and only new requests are held.
- **A cancel** stops the running reply; with none running, it cancels the request waiting to start,
  which is then opened and closed with that reason like a superseded one.
- **Background work waits for quiet.** A ``background`` source (the session's narrations) is asked for
  a turn only when no request waits, none is held and no turn runs; call :meth:`TurnControl.poke`
  when what it would answer changes.
- **Speculative replies** (semantic turn detection): at a tentative pause the listener may start a reply
  before the turn is over. It runs as a *gated* turn: its events are held by its :class:`ReplyGate`
  until :meth:`TurnControl.confirm` releases them (the turn ended with no more speech), or vanish with
  it when :meth:`TurnControl.abandon` cancels it (the user went on); an abandoned reply sends nothing and
  stores nothing. A speculation starts only when nothing else is running or waiting, and any request
  that arrives meanwhile abandons it (the newest request wins, and this one was never sent).
- **Typing holds a spoken turn's end.** While the client says the user is typing (``typing.start``), a
  spoken request waits: the user is composing, not done. Typed requests are not held by it.

The state is written by the sync methods (any task of the session) and by :meth:`TurnControl.start` /
:meth:`TurnControl.finish` (the owner only); ``current`` has that one writer.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from enum import StrEnum
from typing import Any

import attrs
import trio

from .codec.codes import CancelReason
from .pause import PauseGate


class TurnKind(StrEnum):
    CHAT = "chat"  # store the user's words, then ask the LLM
    SPEAK = "speak"  # say the given text
    RESPOND = "respond"  # ask the LLM to answer the conversation as it stands (no new user words)
    NARRATE = "narrate"  # go on with a narration (trio_voice.narration)


@attrs.frozen
class PendingTurn:
    """A request for a reply, not started yet.

    ``started_at`` is when the user finished asking (the end of speech for a spoken turn): every latency
    of the reply is measured from it. ``spoken`` marks a final transcript, which may merge with the next.
    ``item_id`` names the user's message in the store (a realtime item); ``instructions`` and
    ``output_audio``, when set, replace the session's for this reply only (``response.create``).
    """

    kind: TurnKind
    text: str
    request_id: str | None
    started_at: float
    speech_marks: Mapping[str, float] = attrs.field(factory=dict)  # spoken turns: VAD/STT times
    spoken: bool = False
    item_id: str | None = None  # the user's message in the store (a realtime item)
    instructions: str | None = None  # this reply only: instead of the session's
    output_audio: bool | None = None  # this reply only: instead of the session's
    voice: str | None = None  # None: the session's voice
    language: str | None = None  # the language it was asked in, when detected (language "auto")
    narration: Any = None  # NARRATE turns: the trio_voice.narration.Narration to go on with
    # Events sent just before the reply's response.created: a speculative turn's transcript.final, held
    # with the reply it started.
    preamble: tuple[Any, ...] = ()
    speculative: bool = False  # transcribed at a pause, before the turn was over (semantic turn detection)

    def merged_with(self, later: PendingTurn) -> PendingTurn:
        """One spoken turn of this utterance and a later one: both texts, the later one's timing."""
        return attrs.evolve(later, text=f"{self.text} {later.text}")


@attrs.define
class ReplyGate:
    """What holds a speculative reply's events until the turn is confirmed (see ``converse``).

    ``scope`` wraps the whole gated reply, its held events included: abandoning cancels it, and nothing
    of the reply is sent or stored. ``release`` lets the held events out, in order, and the rest after them.
    """

    attempt: int
    scope: trio.CancelScope = attrs.field(factory=trio.CancelScope)
    released: trio.Event = attrs.field(factory=trio.Event)
    released_at: float | None = None
    marks: dict[str, float] = attrs.field(factory=dict)  # the turn's end, known only at release
    abandoned: bool = False

    def release(self, marks: Mapping[str, float]) -> None:
        if not self.abandoned and not self.released.is_set():
            self.marks.update(marks)
            self.released_at = trio.current_time()
            self.released.set()

    def abandon(self) -> None:
        if not self.released.is_set():
            self.abandoned = True
            self.scope.cancel()


@attrs.define
class TurnHandle:
    """The running turn: its cancel scope, and why it was cancelled (the first reason given wins).

    ``gate`` is set for a speculative reply that has not been confirmed yet.
    """

    response_id: str
    request: PendingTurn
    scope: trio.CancelScope = attrs.field(factory=trio.CancelScope)
    reason: CancelReason | None = None
    speech_started_at: float | None = None  # barge-in: when the speech that cancelled it began
    gate: ReplyGate | None = None
    pause: PauseGate = attrs.field(factory=PauseGate)  # response.pause / response.resume

    def cancel(self, reason: CancelReason) -> None:
        if self.gate is not None and not self.gate.released.is_set():
            self.gate.abandon()  # nothing of it was sent: it vanishes instead of being cancelled
            return
        if self.reason is None:
            self.reason = reason
        self.scope.cancel()


@attrs.define
class Speculation:
    """A speculative reply the listener started at a pause, from transcription to release."""

    attempt: int
    turn: PendingTurn | None = None  # its request, once the speech so far is transcribed
    confirmed_marks: dict[str, float] | None = None  # the turn ended before the reply started
    handle: TurnHandle | None = None  # running, gated


class TurnControl:
    """The mailbox of one session's turns. See the module docstring for its rules.

    ``replies``, when given, is the server's map of running replies by id (for the HTTP reply controls):
    the running turn is in it from ``start`` to ``finish``.
    """

    def __init__(self, replies: dict[str, TurnHandle] | None = None) -> None:
        self._replies = replies
        self._typing = False
        self._pending: PendingTurn | None = None
        self._superseded: list[tuple[PendingTurn, CancelReason]] = []
        self._current: TurnHandle | None = None
        self._speaking = False
        self._transcribing = 0  # spoken utterances whose final transcript is still coming
        self._speculation: Speculation | None = None
        self._changed = trio.Event()
        # Asked for a turn when nothing else is to do (narration); see the module docstring.
        self.background: Callable[[], PendingTurn | None] | None = None

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
        self._drop_speculation()
        waiting = self._pending
        if waiting is not None:
            if waiting.spoken and turn.spoken:
                turn = waiting.merged_with(turn)
            else:
                self._superseded.append((waiting, CancelReason.NEW_MESSAGE))
        self._pending = turn
        if self._current is not None:
            self._current.cancel(CancelReason.NEW_MESSAGE)
        self._notify()

    def cancel(self, reason: CancelReason, response_id: str | None = None) -> bool:
        """Cancel the running reply (only if it is ``response_id``, when given), or with none running and
        no id given, the request waiting to start. False if nothing matched."""
        running = self._current
        if running is not None and response_id in (None, running.response_id):
            if running.gate is not None:
                return False  # a speculative reply the client has not seen: nothing of it is running for them
            running.cancel(reason)
            return True
        if running is None and response_id is None and self._pending is not None:
            self._superseded.append((self._pending, reason))
            self._pending = None
            self._notify()
            return True
        return False

    def speech_started(self, at: float, *, interrupt: bool = True) -> None:
        """The user started speaking (at server time ``at``): barge in on the running reply (unless
        ``interrupt`` is off), hold the rest."""
        self._speaking = True
        running = self._current
        if running is not None and interrupt:
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

    # --- speculation (semantic turn detection) -------------------------------------------------------
    def may_speculate(self) -> bool:
        """Whether a speculative reply may start now: nothing runs, waits, or is being transcribed, and
        the user is not typing (a turn's end is held then, so there is nothing to get ahead of)."""
        return (
            self._current is None
            and self._pending is None
            and not self._superseded
            and self._transcribing == 0
            and self._speculation is None
            and not self._typing
        )

    def speculation_live(self, attempt: int) -> bool:
        """Whether speculative reply ``attempt`` is still wanted (not abandoned or replaced)."""
        return self._speculation is not None and self._speculation.attempt == attempt

    async def wait_speculation_text(self, attempt: int) -> str | None:
        """The words speculative reply ``attempt`` was transcribed to, once they are known; None if it is
        gone (abandoned, replaced, empty) or the turn already ended on it."""
        while True:
            spec = self._speculation
            if spec is None or spec.attempt != attempt or spec.confirmed_marks is not None:
                return None
            if spec.turn is not None:
                return spec.turn.text
            await self._changed.wait()

    def speculation_confirmed(self, attempt: int) -> bool:
        """Whether the turn ended on speculation ``attempt``'s speech before its transcript was ready:
        that transcript is then the turn's final one."""
        spec = self._speculation
        return spec is not None and spec.attempt == attempt and spec.confirmed_marks is not None

    def speculation_started(self, attempt: int) -> None:
        """The listener is transcribing the speech so far for a speculative reply ``attempt``."""
        self._speculation = Speculation(attempt)

    def speculation_ready(self, attempt: int, turn: PendingTurn | None) -> None:
        """The speculative transcription is done: ``turn`` is the reply's request (None: no words)."""
        spec = self._speculation
        if spec is None or spec.attempt != attempt:
            return  # abandoned meanwhile
        if spec.confirmed_marks is not None:  # the turn already ended: this is its final, run it plainly
            self._speculation = None
            self._transcribing = max(0, self._transcribing - 1)
            if turn is not None:
                self.request(attrs.evolve(turn, speech_marks={**turn.speech_marks, **spec.confirmed_marks}))
            else:
                self._notify()
            return
        if turn is None:
            self._speculation = None
        else:
            spec.turn = turn
        self._notify()

    def confirm(self, attempt: int, marks: Mapping[str, float]) -> bool:
        """The turn ended on exactly the speech ``attempt`` was started on: its reply is the turn's reply.

        Returns False if that speculation is gone (abandoned, or replaced by a request): the caller then
        transcribes and requests the reply as usual.
        """
        spec = self._speculation
        if spec is None or spec.attempt != attempt:
            return False
        if spec.handle is not None:  # running, gated: let its events out
            assert spec.handle.gate is not None
            spec.handle.gate.release(marks)
            spec.handle.gate = None
            self._speculation = None
        elif spec.turn is not None:  # transcribed but not started: an ordinary request now
            self._speculation = None
            self._pending = attrs.evolve(spec.turn, speech_marks={**spec.turn.speech_marks, **marks})
        else:  # still being transcribed: hold requests for it, as for any final on its way
            spec.confirmed_marks = dict(marks)
            self._transcribing += 1
        self._notify()
        return True

    def abandon(self, attempt: int) -> None:
        """The user went on speaking: the speculative reply ``attempt`` vanishes, unsent and unstored."""
        spec = self._speculation
        if spec is not None and spec.attempt == attempt:
            self._drop_speculation()

    def _drop_speculation(self) -> None:
        spec, self._speculation = self._speculation, None
        if spec is None:
            return
        if spec.confirmed_marks is not None:
            self._transcribing = max(0, self._transcribing - 1)
        if spec.handle is not None and spec.handle.gate is not None:
            spec.handle.gate.abandon()
        self._notify()

    def poke(self) -> None:
        """What the ``background`` source would answer may have changed: let the owner ask again."""
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
    async def wait_next(self) -> tuple[list[tuple[PendingTurn, CancelReason]], PendingTurn | None]:
        """Wait until there is something to do; return the superseded (or cancelled) requests to close, in
        order, each with its reason, and the request to start now (None while it is held). A speculative
        request is started gated (see :meth:`start_speculation`) and is not returned here."""
        while (
            not self._superseded
            and (self._pending is None or self._waits(self._pending))
            and not self._speculation_due()
        ):
            if (
                self._pending is None
                and not self.held
                and self._current is None
                and self._speculation is None
                and self.background
            ):
                quiet = self.background()
                if quiet is not None:
                    return [], quiet
            await self._changed.wait()
        superseded, self._superseded = self._superseded, []
        turn = None
        if self._pending is not None and not self._waits(self._pending):
            turn, self._pending = self._pending, None
        return superseded, turn

    def _speculation_due(self) -> bool:
        spec = self._speculation
        return spec is not None and spec.turn is not None and spec.handle is None and self._current is None

    def start_speculation(self, response_id: str) -> TurnHandle | None:
        """Start the transcribed speculative request as a gated turn (the owner calls this)."""
        if not self._speculation_due():
            return None
        spec = self._speculation
        assert spec is not None and spec.turn is not None
        handle = self.start(spec.turn, response_id)
        handle.gate = ReplyGate(spec.attempt)
        spec.handle = handle
        return handle

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
        spec = self._speculation
        if spec is not None and spec.handle is handle:  # it ended (abandoned or done) while still gated
            self._speculation = None
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
