"""What the tasks of one WebSocket session share: its state, the engines, and the ways in to the writer.

A session outlives its connections (see ``trio_voice.session``), so nothing here names a socket: events
go to the session's writer, which keeps them for whichever connection is attached.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs
import trio

from .codec import codes
from .config import Config
from .engines import Engines
from .errors import StorageError, TrioVoiceError
from .events import ErrorEvent
from .input_audio import InputAudio
from .lifecycle import Shutdown
from .limits import TokenBucket
from .listen_items import ListenItem
from .session_state import SessionState
from .telemetry import Telemetry
from .turn_control import PendingTurn
from .writer import CloseConnection, Outgoing

if TYPE_CHECKING:
    from .recording import Recording
    from .shared import SharedState


@attrs.frozen
class SessionContext:
    """One session's shared parts. Built by ``run_session``; its tasks take it as ``ctx``."""

    state: SessionState
    engines: Engines
    config: Config
    telemetry: Telemetry
    out_tx: trio.MemorySendChannel[Outgoing | CloseConnection]
    audio_tx: trio.MemorySendChannel[ListenItem] | None = None
    audio_budget: TokenBucket = attrs.field(factory=lambda: TokenBucket(rate=1.0, burst=1.0))
    shutdown: Shutdown = attrs.field(factory=Shutdown)
    input_audio: InputAudio = attrs.field(factory=InputAudio)  # the receive side's decoder
    shared: SharedState | None = None  # users, presence, typing, offline messages (None: not served)
    recording: Recording | None = None  # session.update record (None: not served)

    async def send(self, event: Any, request_id: str | None = None) -> None:
        await self.out_tx.send(Outgoing(event, request_id))

    async def close(self, code: int, reason: str) -> None:
        """Close the connection once everything queued so far is sent; the session then ends."""
        await self.out_tx.send(CloseConnection(code, reason))

    async def error(
        self, exc: TrioVoiceError, request_id: str | None = None, *, reason: str | None = None
    ) -> None:
        """Tell the client about an error that is not part of a reply (those carry their response_id)."""
        self.telemetry.error(exc.code)
        await self.send(ErrorEvent(exc.code, exc.message, reason=reason), request_id)

    async def add_user_message(self, text: str, item_id: str | None, request_id: str | None) -> None:
        """Store words of the user that ask for no reply now (a later ``respond`` request sees them).
        A store failure is told to the client, not raised: the session goes on."""
        try:
            await self.engines.store.add_message(self.state.conversation_id, "user", text, item_id=item_id)
        except StorageError as exc:
            await self.error(exc, request_id)

    async def request_turn(self, turn: PendingTurn) -> None:
        """Ask for a reply (the newest request wins; see ``TurnControl``); refused while shutting down."""
        if self.shutdown.draining.is_set():
            await self._refuse(turn.request_id)
            return
        self.state.turns.request(turn)

    async def spoken_turn_done(self, turn: PendingTurn) -> None:
        """A spoken utterance's final transcript arrived with words: ``turn`` asks for its reply."""
        if self.shutdown.draining.is_set():
            self.state.turns.transcription_done(None)
            await self._refuse(turn.request_id)
            return
        self.state.turns.transcription_done(turn)

    async def _refuse(self, request_id: str | None) -> None:
        self.telemetry.error(codes.SHUTTING_DOWN)
        await self.send(
            ErrorEvent(codes.SHUTTING_DOWN, "the server is shutting down; no new replies"), request_id
        )
