"""Pausing a reply: its events held back, in order, while its generation goes on, up to a bound.

Every reply's events pass through its :class:`PauseGate` on their way to the session's writer. Running,
the gate is a plain pass-through (an event is handed to the writer before ``emit`` returns, as without
it). ``response.pause`` makes the gate hold events instead: the LLM, the phrase cutter and the TTS
workers go on, their events queue up here, and once ``max_events`` or ``max_bytes`` are held, ``emit``
waits, so generation waits (backpressure, never an unbounded buffer). ``response.resume`` sends what was
held, in order, then passes events through again: the client receives exactly the events it would have,
later, none lost or repeated.

A paused reply is still a running turn: a cancel, a new message or barge-in cancels its scope, and what
was held is dropped with it, never sent. :func:`retract` then takes the dropped events out of the turn's
record, so the conversation keeps only what the client got.

::

    PauseGate.run(turn, emit)          a nursery inside the turn's cancel scope
    ├── turn(gate.emit)                the turn's stages, emitting through the gate
    └── _flush_task                    sends held events once resumed, strictly before any newer one
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import trio

from .events import AudioReady, PhraseReady, TextDelta

Emit = Callable[[Any], Awaitable[None]]

# What a held event that is neither text nor audio counts for, in bytes (roughly its JSON).
SMALL_EVENT_BYTES = 64


def event_bytes(event: Any) -> int:
    """What holding ``event`` costs: its audio or text, or a small constant."""
    if isinstance(event, AudioReady):
        return len(event.audio)
    if isinstance(event, TextDelta):
        return len(event.delta.encode())
    return SMALL_EVENT_BYTES


class PauseGate:
    """One reply's pause switch and the events held while it is paused. See the module docstring.

    ``pause()`` and ``resume()`` are synchronous, so the task reading the socket never waits on a reply.
    """

    def __init__(self, *, max_events: int = 512, max_bytes: int = 4 * 2**20) -> None:
        self.max_events = max_events
        self.max_bytes = max_bytes
        self.paused = False
        self.held: deque[Any] = deque()
        self.held_bytes = 0
        self.peak_events = 0  # the most events held at once (for tests and logs)
        self._emit: Emit | None = None
        self._flushing = False
        self._changed = trio.Event()

    # --- the switch (any task) ----------------------------------------------------------------------
    def pause(self) -> None:
        self.paused = True
        self._notify()

    def resume(self) -> None:
        self.paused = False
        self._notify()

    # --- the reply ----------------------------------------------------------------------------------
    async def run(self, turn: Callable[[Emit], Awaitable[None]], emit: Emit) -> None:
        """Run ``turn(gate_emit)`` with events going to ``emit`` through this gate; return once every
        event it made has been sent (so a reply that finished while paused waits for its resume).

        Cancellation: cancel the caller's scope; what is still held is left in ``held`` (see ``retract``).
        Error handling: an exception of ``turn`` is raised as itself, not wrapped in a group.
        """
        self._emit = emit
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._flush_task)
                await turn(self.emit)
                while self.held or self._flushing:
                    await self._changed.wait()
                nursery.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            leaves = list(_leaves(group))
            if len(leaves) == 1 and not isinstance(leaves[0], trio.Cancelled):
                raise leaves[0] from None
            raise

    async def emit(self, event: Any) -> None:
        """Send ``event`` now, or hold it behind the events already held; wait while the hold is full."""
        assert self._emit is not None, "emit before run"
        while True:
            if not self.paused and not self.held and not self._flushing:
                await self._emit(event)
                return
            size = event_bytes(event)
            if not self.held or (
                len(self.held) < self.max_events and self.held_bytes + size <= self.max_bytes
            ):
                self.held.append(event)
                self.held_bytes += size
                self.peak_events = max(self.peak_events, len(self.held))
                self._notify()
                return
            await self._changed.wait()

    async def _flush_task(self) -> None:
        assert self._emit is not None
        while True:
            while self.paused or not self.held:
                await self._changed.wait()
            self._flushing = True
            try:
                while self.held and not self.paused:
                    # Sent before it leaves the hold: cancelled mid-send, it was not delivered and stays held.
                    await self._emit(self.held[0])
                    event = self.held.popleft()
                    self.held_bytes -= event_bytes(event)
                    self._notify()
            finally:
                self._flushing = False
                self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()


def _leaves(group: BaseExceptionGroup[Any]) -> Iterable[BaseException]:
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            yield from _leaves(exc)
        else:
            yield exc


def _ms(event: AudioReady) -> float:
    """Milliseconds of speech in an audio event (encoded audio says so itself; PCM by its length)."""
    pcm_ms = getattr(event, "pcm_ms", 0.0)
    return pcm_ms or len(event.audio) / (event.sample_rate * 2 / 1000.0)


def retract(record: Any, dropped: Iterable[Any]) -> None:
    """Take events that were held and then dropped (the turn was cancelled while paused) out of the turn's
    ``TurnRecord``: the record counted them when the gate took them, the client never got them.

    They are always the newest events of the turn, so undoing them from the newest backwards restores
    the record as it was when the last event the client got was sent.
    """
    for event in reversed(list(dropped)):
        if isinstance(event, TextDelta) and record.text.endswith(event.delta):
            record.text = record.text[: len(record.text) - len(event.delta)]
        elif isinstance(event, AudioReady) and event.index < len(record.phrase_audio_ms):
            record.phrase_audio_ms[event.index] = max(0.0, record.phrase_audio_ms[event.index] - _ms(event))
        elif isinstance(event, PhraseReady) and record.phrases:
            record.phrases.pop()
            record.phrase_audio_ms.pop()
