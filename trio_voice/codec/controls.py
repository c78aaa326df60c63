"""Client messages that act on a session beyond one connection and one reply: resume, presence, typing,
delivery acknowledgements, and pausing a reply (protocol/voice.md). Same shape as ``client``: one frozen
class per ``type``, parsed by ``from_json``, rendered by ``to_json``; nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import attrs

from .fields import dump_message, message_reader

# What a client may say about itself; ``offline`` is the server's to say (the session ended).
CLIENT_PRESENCE = ("online", "away")
# A resume token is 43 characters (32 random bytes, URL-safe base64); longer ones are not ours.
MAX_TOKEN_CHARS = 128


@attrs.frozen
class SessionResume:
    """Resume session ``session_id`` after a dropped connection: the first message on a new connection."""

    type: ClassVar[str] = "session.resume"
    session_id: str
    resume_token: str
    last_seq: int  # the seq of the last event the client received from that session (0: none)
    request_id: str | None = None

    @classmethod
    def from_json(cls, obj: Mapping[str, Any], *, max_text_chars: int | None = None) -> SessionResume:
        r = message_reader(cls.type, obj, ("session_id", "resume_token", "last_seq"))
        session_id = r.read_id("session_id", required=True)
        token = r.read_str("resume_token", required=True, non_blank=True)
        if token is not None and len(token) > MAX_TOKEN_CHARS:
            raise r.fail("resume_token", f"must be at most {MAX_TOKEN_CHARS} characters")
        last_seq = r.read_int("last_seq", required=True, minimum=0)
        assert session_id is not None and token is not None and last_seq is not None
        return cls(session_id=session_id, resume_token=token, last_seq=last_seq, request_id=r.request_id)

    def to_json(self) -> dict[str, Any]:
        return dump_message(
            self.type,
            self.request_id,
            session_id=self.session_id,
            resume_token=self.resume_token,
            last_seq=self.last_seq,
        )


@attrs.frozen
class PresenceSet:
    """The client's own presence: ``online`` or ``away`` (the user stepped away, the app went to background)."""

    type: ClassVar[str] = "presence.set"
    status: str
    request_id: str | None = None

    @classmethod
    def from_json(cls, obj: Mapping[str, Any], *, max_text_chars: int | None = None) -> PresenceSet:
        r = message_reader(cls.type, obj, ("status",))
        status = r.read_str("status", required=True, choices=CLIENT_PRESENCE)
        assert status is not None
        return cls(status=status, request_id=r.request_id)

    def to_json(self) -> dict[str, Any]:
        return dump_message(self.type, self.request_id, status=self.status)


@attrs.frozen
class TypingStart:
    """The user is typing: a spoken turn's end waits until typing stops (or expires), and the user's other
    connections see it. Send it again while typing goes on: it expires by itself after a few seconds."""

    type: ClassVar[str] = "typing.start"
    request_id: str | None = None

    @classmethod
    def from_json(cls, obj: Mapping[str, Any], *, max_text_chars: int | None = None) -> TypingStart:
        return cls(request_id=message_reader(cls.type, obj, ()).request_id)

    def to_json(self) -> dict[str, Any]:
        return dump_message(self.type, self.request_id)


@attrs.frozen
class TypingStop:
    type: ClassVar[str] = "typing.stop"
    request_id: str | None = None

    @classmethod
    def from_json(cls, obj: Mapping[str, Any], *, max_text_chars: int | None = None) -> TypingStop:
        return cls(request_id=message_reader(cls.type, obj, ()).request_id)

    def to_json(self) -> dict[str, Any]:
        return dump_message(self.type, self.request_id)


@attrs.frozen
class MessageDelivered:
    """The client has a ``system.message``: it is marked delivered and not sent again."""

    type: ClassVar[str] = "message.delivered"
    message_id: str
    request_id: str | None = None

    @classmethod
    def from_json(cls, obj: Mapping[str, Any], *, max_text_chars: int | None = None) -> MessageDelivered:
        r = message_reader(cls.type, obj, ("message_id",))
        message_id = r.read_id("message_id", required=True)
        assert message_id is not None
        return cls(message_id=message_id, request_id=r.request_id)

    def to_json(self) -> dict[str, Any]:
        return dump_message(self.type, self.request_id, message_id=self.message_id)


@attrs.frozen
class ResponsePause:
    """Stop sending the running reply's events (it goes on being made, up to a bound); see ``response.resume``."""

    type: ClassVar[str] = "response.pause"
    response_id: str | None = None
    request_id: str | None = None

    @classmethod
    def from_json(cls, obj: Mapping[str, Any], *, max_text_chars: int | None = None) -> ResponsePause:
        r = message_reader(cls.type, obj, ("response_id",))
        return cls(response_id=r.read_str("response_id", non_blank=True), request_id=r.request_id)

    def to_json(self) -> dict[str, Any]:
        return dump_message(self.type, self.request_id, response_id=self.response_id)


@attrs.frozen
class ResponseResume:
    """Send a paused reply on from exactly where it stopped."""

    type: ClassVar[str] = "response.resume"
    response_id: str | None = None
    request_id: str | None = None

    @classmethod
    def from_json(cls, obj: Mapping[str, Any], *, max_text_chars: int | None = None) -> ResponseResume:
        r = message_reader(cls.type, obj, ("response_id",))
        return cls(response_id=r.read_str("response_id", non_blank=True), request_id=r.request_id)

    def to_json(self) -> dict[str, Any]:
        return dump_message(self.type, self.request_id, response_id=self.response_id)


ControlMessage = (
    SessionResume | PresenceSet | TypingStart | TypingStop | MessageDelivered | ResponsePause | ResponseResume
)
CONTROL_CLASSES = (
    SessionResume,
    PresenceSet,
    TypingStart,
    TypingStop,
    MessageDelivered,
    ResponsePause,
    ResponseResume,
)
