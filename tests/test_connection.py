"""The protocol's connection objects, sans-I/O: a server connection renders, a client connection reads back,
in the manner of h11's ConnectionPair. No socket anywhere."""

from __future__ import annotations

import pytest

from trio_voice import events
from trio_voice.codec import ClientConnection, ServerConnection, encode_event
from trio_voice.codec.codes import CancelReason, ReplyStatus
from trio_voice.errors import LocalProtocolError, RemoteProtocolError

METRICS = {
    "llm_first_token_ms": 1.0,
    "first_phrase_ms": 2.0,
    "first_audio_ms": 3.0,
    "total_ms": 4.0,
    "tokens": 1,
}


class ConnectionPair:
    """A server and a client connection joined by a list of frames."""

    def __init__(self) -> None:
        self.server = ServerConnection()
        self.client = ClientConnection()

    def send(self, event: events.ServerEvent, request_id: str | None = None) -> events.ServerEvent:
        message = self.client.receive(self.server.send(event, request_id=request_id))
        assert message.request_id == request_id
        return message.event


def reply(response_id: str = "resp_1") -> list[events.ServerEvent]:
    return [
        events.ReplyCreated(response_id),
        events.TextDelta(response_id, "Hi."),
        events.PhraseReady(response_id, 0, "Hi."),
        events.AudioReady(response_id, 0, b"\x00\x00" * 10, 22050),
        events.WarningEvent("tts_failed", "phrase 1", response_id),
        events.ReplyDone(response_id, ReplyStatus.COMPLETED, None, "Hi.", METRICS),
    ]


def test_a_reply_goes_through_and_seq_counts_up() -> None:
    """Every event of a reply, with session events between them, arrives as sent, numbered 1, 2, 3, …"""
    pair = ConnectionPair()
    sent = [
        events.Pong(),
        *reply("resp_1")[:3],
        events.SpeechStarted(120),
        *reply("resp_1")[3:],
        events.Pong(),
    ]
    received = [pair.send(event, "r1") for event in sent]
    assert received == sent
    assert pair.server.seq == pair.client.seq == len(sent)
    assert pair.server.open_reply is None and pair.client.open_reply is None


@pytest.mark.parametrize("late", reply("resp_1")[1:])
def test_every_reply_event_after_its_done_is_refused(late: events.ServerEvent) -> None:
    """After response.done, no event of that reply may be sent: the server connection refuses it and its
    state does not move (seq unchanged)."""
    pair = ConnectionPair()
    for event in reply("resp_1"):
        pair.send(event)
    seq = pair.server.seq
    with pytest.raises(LocalProtocolError):
        pair.server.send(late)
    assert pair.server.seq == seq


@pytest.mark.parametrize("early", reply("resp_1")[1:])
def test_reply_events_before_created_are_refused(early: events.ServerEvent) -> None:
    """A reply event (or response.done) before its response.created is our bug."""
    with pytest.raises(LocalProtocolError):
        ServerConnection().send(early)


def test_replies_do_not_overlap() -> None:
    """A second response.created while a reply is open is refused; after its done, the next may open."""
    server = ServerConnection()
    server.send(events.ReplyCreated("resp_1"))
    with pytest.raises(LocalProtocolError):
        server.send(events.ReplyCreated("resp_2"))
    server.send(events.ReplyDone("resp_1", ReplyStatus.CANCELLED, CancelReason.NEW_MESSAGE, "", METRICS))
    server.send(events.ReplyCreated("resp_2"))
    assert server.open_reply == "resp_2"


def test_errors_without_a_reply_may_come_any_time() -> None:
    """An error that names no reply is a session event: allowed inside and outside replies."""
    pair = ConnectionPair()
    pair.send(events.ErrorEvent("rate_limited", "slow down"))
    pair.send(events.ReplyCreated("resp_1"))
    pair.send(events.ErrorEvent("rate_limited", "slow down"))
    pair.send(events.ErrorEvent("llm_timeout", "no token", "resp_1"))
    pair.send(events.ReplyDone("resp_1", ReplyStatus.FAILED, "llm_timeout", "", METRICS))
    with pytest.raises(LocalProtocolError):
        pair.server.send(events.ErrorEvent("llm_timeout", "late", "resp_1"))


def test_the_client_catches_a_seq_gap() -> None:
    """A frame whose seq skips one is the server's fault: RemoteProtocolError."""
    client = ClientConnection()
    client.receive(encode_event(events.Pong(), seq=1))
    with pytest.raises(RemoteProtocolError, match="seq 3 where 2 was due"):
        client.receive(encode_event(events.Pong(), seq=3))


def test_the_client_catches_an_event_after_done() -> None:
    """A server that sends a reply's audio after its response.done broke the protocol."""
    client = ClientConnection()
    frames = [encode_event(event, seq=n) for n, event in enumerate(reply("resp_1"), 1)]
    for frame in frames:
        client.receive(frame)
    late = encode_event(events.AudioReady("resp_1", 0, b"\x00\x00", 22050), seq=len(frames) + 1)
    with pytest.raises(RemoteProtocolError, match="outside its reply"):
        client.receive(late)
