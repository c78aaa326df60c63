"""The protocol's state, in h11's manner: one object per side that owns ``seq`` and each reply's lifecycle.

``ServerConnection.send(event)`` is the only way a server event becomes a frame: it numbers events 1, 2,
3, … (nobody else counts), tracks each reply from ``response.created`` to ``response.done``, and raises
``LocalProtocolError`` when asked to send what the protocol forbids: a reply event before its
``response.created`` or after its ``response.done``, a second ``response.created`` for one id, a new reply
while another is open. The WebSocket writer and the HTTP streaming fallbacks both send through one.

``ClientConnection.receive(text)`` is its mirror for clients written in Python: it decodes a frame and
raises ``RemoteProtocolError`` when the server broke the same rules (a seq gap, an event after done).

Rules, as h11 states its own:

- At most one reply is open at a time; replies are opened by ``response.created`` and closed by exactly one
  ``response.done``.
- Reply events (``response.*``) and ``error``/``warning`` events that name a ``response_id`` belong to the
  open reply with that id.
- Events outside replies (session, input, transcript, pong, errors without a response_id) may come at any
  time, also between a reply's events.
- Nothing here does I/O or keeps more than the open reply's id: the state is O(1).
"""

from __future__ import annotations

from trio_voice import events
from trio_voice.errors import LocalProtocolError, RemoteProtocolError

from . import codes
from .server import ServerMessage, decode_server_event, encode_event

_REPLY_EVENTS = (events.TextDelta, events.PhraseReady, events.AudioReady)


def _check_reply_rules(open_reply: str | None, event: events.ServerEvent) -> str | None:
    """Apply the reply rules to ``event``; return the open reply after it. Raises ValueError with why not."""
    if isinstance(event, events.ReplyCreated):
        if open_reply is not None:
            raise ValueError(f"response.created for {event.response_id} while {open_reply} is still open")
        return event.response_id
    if isinstance(event, events.ReplyDone):
        if event.response_id != open_reply:
            raise ValueError(f"response.done for {event.response_id}, which is not open ({open_reply} is)")
        return None
    if isinstance(event, _REPLY_EVENTS) or (
        isinstance(event, (events.ErrorEvent, events.WarningEvent)) and event.response_id is not None
    ):
        if event.response_id != open_reply:
            raise ValueError(
                f"{type(event).__name__} of {event.response_id} outside its reply (open: {open_reply})"
            )
    return open_reply


class ServerConnection:
    """One session's (or one HTTP stream's) outgoing protocol state. Not thread-safe; one writer owns it."""

    def __init__(self) -> None:
        self.seq = 0  # the seq of the last event sent
        self.open_reply: str | None = None  # response_id between response.created and response.done

    def send(self, event: events.ServerEvent, *, request_id: str | None = None) -> str:
        """Render ``event`` as the next frame's text, numbered ``seq + 1``.

        Raises:
            LocalProtocolError: the event breaks a rule of the module docstring, or cannot be rendered
                (see ``encode_event``). The state is unchanged then, so the caller may still send an
                ``error`` and close.
        """
        try:
            open_after = _check_reply_rules(self.open_reply, event)
        except ValueError as exc:
            raise LocalProtocolError(str(exc)) from None
        text = encode_event(event, seq=self.seq + 1, request_id=request_id)
        self.seq += 1
        self.open_reply = open_after
        return text


class ClientConnection:
    """A client's view of one session: decodes frames and checks the server kept the protocol."""

    def __init__(self) -> None:
        self.seq = 0  # the seq of the last event received
        self.open_reply: str | None = None

    def receive(self, text: str) -> ServerMessage:
        """Decode one server text frame and check it follows the frames before it.

        Raises:
            RemoteProtocolError: the frame does not decode (see ``decode_server_event``), its ``seq`` is
                not the next one (code ``protocol_error``), or it breaks a reply rule (``protocol_error``).
        """
        message = decode_server_event(text)
        if message.seq != self.seq + 1:
            raise RemoteProtocolError(
                f"seq {message.seq} where {self.seq + 1} was due", code=codes.PROTOCOL_ERROR
            )
        try:
            open_after = _check_reply_rules(self.open_reply, message.event)
        except ValueError as exc:
            raise RemoteProtocolError(str(exc), code=codes.PROTOCOL_ERROR) from None
        self.seq = message.seq
        self.open_reply = open_after
        return message
