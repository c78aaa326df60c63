"""The shared state's records as JSON, the way instances exchange them through Redis: sans-I/O.

Routes, session presence and user events are frozen records (``interface``); here they become JSON
text and back, with a ``kind`` on events so a subscriber knows which record it holds. Decoding is strict
about shape (an instance of another version, a hand-edited key): a record that does not parse raises
``WireError`` naming what was wrong, and the caller decides (a route: ``StorageError``; an event: logged
and skipped, fan-out being lossy by design).
"""

from __future__ import annotations

import json
from typing import Any

import attrs

from .interface import (
    PRESENCE_STATUSES,
    MessageQueued,
    PresenceChanged,
    SessionRoute,
    TypingChanged,
    UserEvent,
)

__all__ = [
    "WireError",
    "decode_event",
    "decode_presence",
    "decode_route",
    "encode_event",
    "encode_presence",
    "encode_route",
]

EVENT_KINDS: dict[str, type] = {
    "presence": PresenceChanged,
    "typing": TypingChanged,
    "queued": MessageQueued,
}
_KIND_OF = {cls: kind for kind, cls in EVENT_KINDS.items()}


class WireError(ValueError):
    """A shared-state record that is not what this version writes."""


def _dumps(value: dict[str, Any]) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _loads(text: str | bytes, what: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise WireError(f"{what} is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise WireError(f"{what} is not a JSON object")
    return value


def _build(cls: type, fields: dict[str, Any], what: str) -> Any:
    names = {field.name for field in attrs.fields(cls)}
    try:
        return cls(**{name: value for name, value in fields.items() if name in names})
    except TypeError as exc:
        raise WireError(f"{what}: {exc}") from None


def _check_str(value: Any, what: str, *, optional: bool = False) -> None:
    if not (isinstance(value, str) or (optional and value is None)):
        raise WireError(f"{what} is not a string: {value!r}")


# --- routes -------------------------------------------------------------------------------------------
def encode_route(route: SessionRoute) -> str:
    return _dumps(attrs.asdict(route))


def decode_route(text: str | bytes) -> SessionRoute:
    route: SessionRoute = _build(SessionRoute, _loads(text, "a route"), "a route")
    for name in ("session_id", "instance_id", "token_digest"):
        _check_str(getattr(route, name), f"a route's {name}")
    _check_str(route.user_id, "a route's user_id", optional=True)
    _check_str(route.ended, "a route's ended", optional=True)
    return route


# --- one session's presence -----------------------------------------------------------------------------
def encode_presence(status: str, last_seen: float, instance_id: str) -> str:
    """A session's presence as stored in its user's hash, with the instance that holds the session (so a
    session of an instance that died can be told apart from a live one)."""
    return _dumps({"status": status, "last_seen": last_seen, "instance_id": instance_id})


def decode_presence(text: str | bytes) -> tuple[str, float, str]:
    """``(status, last_seen, instance_id)`` of an ``encode_presence`` record."""
    value = _loads(text, "a presence record")
    status, last_seen, instance_id = value.get("status"), value.get("last_seen"), value.get("instance_id")
    if status not in PRESENCE_STATUSES or status == "offline":
        raise WireError(f"a presence record has status {status!r}")
    if not isinstance(last_seen, (int, float)) or isinstance(last_seen, bool):
        raise WireError(f"a presence record has last_seen {last_seen!r}")
    _check_str(instance_id, "a presence record's instance_id")
    return status, float(last_seen), instance_id


# --- user events ----------------------------------------------------------------------------------------
def encode_event(event: UserEvent) -> str:
    return _dumps({"kind": _KIND_OF[type(event)], **attrs.asdict(event)})


def decode_event(text: str | bytes) -> UserEvent:
    value = _loads(text, "an event")
    kind = value.pop("kind", None)
    cls = EVENT_KINDS.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise WireError(f"an event of unknown kind {kind!r}")
    event: UserEvent = _build(cls, value, f"a {kind} event")
    _check_str(event.user_id, "an event's user_id")
    return event
