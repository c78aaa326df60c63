"""How one session's frames are read and written: the wire protocol its receiver and writer share.

A session speaks one protocol, chosen by the endpoint it was opened on: ``NativeWire`` for
``/v1/voice`` (``trio_voice.native_wire``, over ``trio_voice.codec``) and ``RealtimeWire`` for
``/v1/realtime`` (``trio_voice.realtime_wire``, over ``trio_voice.realtime``). The receiver
(``receive_task``, in the attached connection's task) and the writer (``send_task``, in the session's)
take one and never ask which it is. Theirs are the limits, the idle timeout, error throttling, the order
of events, the outbox and the close handshake; the wire's are what a frame means, what the session core
does about it, and how an event of the core looks on the wire. So a second protocol is a second wire,
not a second pipeline.

The writer keeps what ``render`` returns in the session's outbox (``trio_voice.outbox``): numbered
frames, which the attached connection writes from its cursor. The native wire's numbers are the
protocol's own ``seq``, so a client that drops its connection can resume the session from the last one
it saw (``resumable``). The realtime protocol has no ``seq`` and no resume: its frames are numbered for
the outbox only, and its session ends with its connection.

A wire object belongs to one session: the realtime one keeps the protocol's state (items, the input
buffer, each response), which its ``dispatch`` (in the receiver) and ``render`` (in the writer) share.
Both run in one thread, never at the same time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from .errors import TrioVoiceError
from .replay import Frame
from .writer import Outgoing

if TYPE_CHECKING:
    from .session_context import SessionContext


class Wire(Protocol):
    """One session's wire protocol. Every method but ``dispatch`` is synchronous and does no I/O."""

    #: ``voice`` or ``realtime``: for logs.
    name: str
    #: The rate of the PCM the core hears from this wire, or ``None`` for the configured default.
    input_sample_rate: int | None
    #: Whether sessions may default to semantic turn detection (the end-of-turn model) when it is loaded.
    semantic_turns: bool
    #: Whether a session outlives a dropped connection, for a ``session.resume`` (frames numbered by ``seq``).
    resumable: bool

    def decode(self, frame: str | bytes, *, ctx: SessionContext) -> Any:
        """Parse one client frame into a message, changing nothing (``ctx`` says how, e.g. which audio
        format binary frames hold).

        Raises:
            RemoteProtocolError: the frame is not a message of this protocol.
        """
        ...

    def is_audio(self, message: Any) -> bool:
        """Whether ``message`` is input audio: bounded by the audio budget, not by the message rate."""
        ...

    async def dispatch(self, message: Any, *, ctx: SessionContext) -> None:
        """Act on one decoded message (never waiting for a reply).

        Raises:
            RemoteProtocolError: the message cannot be acted on now (the session goes on).
            StorageError: the store failed on the way.
        """
        ...

    def refusal(self, exc: TrioVoiceError, message: Any | None) -> Outgoing:
        """What the writer sends when ``message`` (``None``: undecodable) was refused with ``exc``."""
        ...

    def render(self, item: Outgoing) -> list[Frame]:
        """The frames one event of the session becomes, in order, numbered after the ones before.

        Raises:
            LocalProtocolError: sending ``event`` now would break the protocol (a bug).
        """
        ...
