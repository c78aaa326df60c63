"""The shared state's JSON records (sans-I/O): round trips, and strictness about what is not ours."""

from __future__ import annotations

import pytest

from trio_voice.shared import MessageQueued, PresenceChanged, SessionRoute, TypingChanged
from trio_voice.shared.wire import (
    WireError,
    decode_event,
    decode_presence,
    decode_route,
    encode_event,
    encode_presence,
    encode_route,
)


@pytest.mark.parametrize(
    "event",
    [
        PresenceChanged("ann", "sess_1", "away", 1700000000.25),
        TypingChanged("ann", "sess_1", True),
        MessageQueued("üser ✓", "msg_1"),
    ],
)
def test_every_user_event_survives_a_round_trip(event: object) -> None:
    """Each kind of user event decodes to an equal record, non-ASCII ids included."""
    assert decode_event(encode_event(event)) == event  # type: ignore[arg-type]


def test_routes_and_presence_survive_a_round_trip() -> None:
    """A route (live or a tombstone) and a session's presence record come back as written."""
    for route in (
        SessionRoute("sess_1", "a", "f" * 64),
        SessionRoute("sess_1", "a", "f" * 64, "ann", "expired"),
    ):
        assert decode_route(encode_route(route)) == route
    assert decode_presence(encode_presence("online", 12.5, "a")) == ("online", 12.5, "a")


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("not json", "not JSON"),
        ("[1, 2]", "not a JSON object"),
        ('{"kind": "gossip", "user_id": "ann"}', "unknown kind 'gossip'"),
        ('{"user_id": "ann"}', "unknown kind None"),
        ('{"kind": "typing", "user_id": "ann"}', "typing event"),
        ('{"kind": "queued", "user_id": 7, "message_id": "m"}', "user_id is not a string"),
    ],
)
def test_a_malformed_event_is_refused_with_the_reason(text: str, match: str) -> None:
    """What this version does not write raises WireError saying what is wrong."""
    with pytest.raises(WireError, match=match):
        decode_event(text)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ('{"status": "offline", "last_seen": 1, "instance_id": "a"}', "status 'offline'"),
        ('{"status": "online", "last_seen": true, "instance_id": "a"}', "last_seen True"),
        ('{"status": "online", "last_seen": 1}', "instance_id is not a string"),
    ],
)
def test_a_malformed_presence_record_is_refused(text: str, match: str) -> None:
    with pytest.raises(WireError, match=match):
        decode_presence(text)


def test_a_route_missing_fields_is_refused() -> None:
    with pytest.raises(WireError, match="a route"):
        decode_route('{"session_id": "s"}')
    with pytest.raises(WireError, match="instance_id is not a string"):
        decode_route('{"session_id": "s", "instance_id": 3, "token_digest": "d"}')
