"""Resuming a session after a dropped connection, against a real server on port 0 with fake engines.

A drop here is the TCP connection closed under the WebSocket, without a close frame (what a phone
switching networks looks like to the server); a resume is a new connection whose first message is
``session.resume``.
"""

from __future__ import annotations

import base64
import json
from contextlib import AsyncExitStack
from typing import Any

import httpx
import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, open_websocket_url

from tests.conftest import IO_TIMEOUT, run_server, server_validator
from trio_voice.testing import FakeLLM, FakeStore, FakeTTS


def long_reply(_messages: object) -> str:
    return " ".join(f"Sentence number {n} is here." for n in range(12))


async def recv(ws: WebSocketConnection) -> dict[str, Any]:
    with trio.fail_after(IO_TIMEOUT):
        event = json.loads(await ws.get_message())
    server_validator().validate(event)
    return event


async def drop(ws: WebSocketConnection) -> None:
    """Close the TCP connection under the WebSocket: no close frame, as when a network goes away."""
    await ws._stream.aclose()  # trio-websocket has no public way to vanish without a close handshake


async def wait_sessions_open(server, count: int) -> None:
    with trio.fail_after(IO_TIMEOUT):
        while server.telemetry.sessions_open._value.get() != count:  # noqa: ASYNC110 - no event to await
            await trio.sleep(0.01)


async def wait_disconnected(server) -> None:
    """Until /v1/sessions shows every session waiting for its client."""
    async with httpx.AsyncClient(base_url=server.http_url) as http:
        with trio.fail_after(IO_TIMEOUT):
            while any(s["connected"] for s in (await http.get("/v1/sessions")).json()["sessions"]):  # noqa: ASYNC110 - polled over HTTP
                await trio.sleep(0.01)


class Stream:
    """One session's events as a client sees them across connections: seq must run 1, 2, 3, … exactly."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    @property
    def last_seq(self) -> int:
        return self.events[-1]["seq"] if self.events else 0

    def take(self, event: dict[str, Any]) -> dict[str, Any]:
        assert event["seq"] == self.last_seq + 1, f"seq {event['seq']} after {self.last_seq}: {event}"
        self.events.append(event)
        return event

    async def until(self, ws: WebSocketConnection, type_: str, **match: Any) -> dict[str, Any]:
        while True:
            event = self.take(await recv(ws))
            if event["type"] == type_ and all(event.get(k) == v for k, v in match.items()):
                return event


async def resume(
    url: str, created: dict[str, Any], last_seq: int, *, stack
) -> tuple[WebSocketConnection, dict]:
    """Open a connection and resume ``created``'s session from ``last_seq``; return it and the answer."""
    ws = await stack.enter_async_context(open_websocket_url(url))
    fresh = await recv(ws)
    assert (fresh["type"], fresh["seq"]) == ("session.created", 1)
    await ws.send_message(
        json.dumps(
            {
                "type": "session.resume",
                "session_id": created["session_id"],
                "resume_token": created["resume_token"],
                "last_seq": last_seq,
                "request_id": "resume",
            }
        )
    )
    answer = await recv(ws)
    assert answer["seq"] == 2 and answer["request_id"] == "resume", answer
    return ws, answer


def audio_of(events: list[dict[str, Any]]) -> bytes:
    return b"".join(base64.b64decode(e["audio"]) for e in events if e["type"] == "response.audio.delta")


async def test_a_reply_survives_a_dropped_connection_and_resumes_exactly(tmp_path) -> None:
    """Dropped mid-reply and resumed within the TTL: every missed event arrives exactly once, seq goes on
    from where the client was, the reply completes, and it is stored once."""
    llm = FakeLLM(reply=long_reply, token_delay=0.01)
    tts = FakeTTS(delay=lambda text: 0.02)
    async with run_server(tmp_path, {"llm": llm, "tts": tts}) as server, AsyncExitStack() as stack:
        stream = Stream()
        first = await stack.enter_async_context(open_websocket_url(server.ws_url))
        created = stream.take(await recv(first))
        assert created["type"] == "session.created" and created["resume_token"]
        await first.send_message(json.dumps({"type": "message.create", "text": "tell me", "request_id": "q"}))
        await stream.until(first, "response.audio.delta")
        seen_before_drop = stream.last_seq
        await drop(first)

        second, answer = await resume(server.ws_url, created, seen_before_drop, stack=stack)
        assert answer["type"] == "session.resumed"
        assert (answer["session_id"], answer["last_seq"]) == (created["session_id"], seen_before_drop)
        assert answer["replayed"] >= 0
        done = await stream.until(second, "response.done")
        assert done["status"] == "completed" and done["request_id"] == "q"
        await second.send_message(json.dumps({"type": "ping", "request_id": "after"}))
        assert (await stream.until(second, "pong"))["request_id"] == "after"

        reply = [e for e in stream.events if e.get("response_id") == done["response_id"]]
        assert [e["type"] for e in reply].count("response.created") == 1
        assert "".join(e["delta"] for e in reply if e["type"] == "response.text.delta") == done["text"]
        assert done["text"] == long_reply(None)
        assert len(audio_of(reply)) == round(done["metrics"]["audio_ms"] * 22.05) * 2
        history = await server.engines.store.history(created["conversation_id"], limit=10)
        assert [(m.role, m.response_id, m.interrupted) for m in history] == [
            ("user", None, False),
            ("assistant", done["response_id"], False),
        ]
        assert llm.active == 0 and tts.active == 0


async def test_a_resume_after_the_ttl_fails_and_the_reply_was_cancelled(tmp_path) -> None:
    """Past resume_ttl the session is gone: its reply was cancelled (client_disconnected) and stored as
    such, a resume gets resume_failed (session_expired), and the new connection's fresh session goes on."""
    llm = FakeLLM(reply=long_reply, token_delay=0.02)
    tts = FakeTTS(delay=lambda text: 0.05)
    async with (
        run_server(tmp_path, {"llm": llm, "tts": tts}, resume_ttl=0.2) as server,
        AsyncExitStack() as stack,
    ):
        stream = Stream()
        first = await stack.enter_async_context(open_websocket_url(server.ws_url))
        created = stream.take(await recv(first))
        await first.send_message(json.dumps({"type": "message.create", "text": "tell me"}))
        await stream.until(first, "response.audio.delta")
        await drop(first)
        await wait_sessions_open(server, 0)
        assert llm.active == 0 and tts.active == 0

        second, answer = await resume(server.ws_url, created, stream.last_seq, stack=stack)
        assert (answer["type"], answer["code"], answer["reason"]) == (
            "error",
            "resume_failed",
            "session_expired",
        )
        await second.send_message(json.dumps({"type": "ping"}))
        assert (await recv(second))["seq"] == 3
        turns = await server.engines.store.recent_turns(5)
        assert [(t["status"], t["reason"]) for t in turns] == [("cancelled", "client_disconnected")]
        history = await server.engines.store.history(created["conversation_id"], limit=10)
        assert [(m.role, m.interrupted) for m in history] == [("user", False), ("assistant", True)]
        metrics = server.telemetry.render().decode()
        assert 'trio_voice_session_resumes_total{outcome="session_expired"} 1.0' in metrics
        assert 'trio_voice_sessions_ended_total{how="expired"} 1.0' in metrics


async def test_a_replay_buffer_overflow_is_reported_not_truncated(tmp_path) -> None:
    """Events the replay buffer no longer holds cannot be replayed: the resume fails with replay_overflow,
    naming what was lost, instead of skipping it."""
    async with (
        run_server(tmp_path, {"llm": FakeLLM(reply=long_reply)}, replay_buffer_events=16) as server,
        AsyncExitStack() as stack,
    ):
        stream = Stream()
        first = await stack.enter_async_context(open_websocket_url(server.ws_url))
        created = stream.take(await recv(first))
        await first.send_message(json.dumps({"type": "message.create", "text": "tell me"}))
        await stream.until(first, "response.done")
        assert stream.last_seq > 20
        await drop(first)
        _, answer = await resume(server.ws_url, created, 1, stack=stack)
        assert (answer["code"], answer["reason"]) == ("resume_failed", "replay_overflow")
        assert "no longer kept" in answer["message"]
        # What the buffer still holds can be resumed: from the last event received, nothing is missing.
        _, answer = await resume(server.ws_url, created, stream.last_seq, stack=stack)
        assert (answer["type"], answer["replayed"]) == ("session.resumed", 0)


async def test_resume_refusals_name_their_reason(tmp_path) -> None:
    """A wrong token, an unknown session, a seq never sent, and session.resume after other messages are
    each refused with their own reason; the connection's fresh session goes on every time."""
    async with run_server(tmp_path) as server, AsyncExitStack() as stack:
        first = await stack.enter_async_context(open_websocket_url(server.ws_url))
        created = await recv(first)
        cases = [
            ({**created, "resume_token": "not-the-token"}, 1, "invalid_token"),
            ({**created, "session_id": "sess_nobody"}, 1, "unknown_session"),
            (created, 99, "invalid_seq"),
        ]
        for target, last_seq, reason in cases:
            _, answer = await resume(server.ws_url, target, last_seq, stack=stack)
            assert (answer["type"], answer["code"], answer["reason"]) == ("error", "resume_failed", reason)
        await first.send_message(json.dumps({"type": "ping"}))
        assert (await recv(first))["type"] == "pong"  # the session was never taken from its connection
        await first.send_message(
            json.dumps({"type": "session.resume", "session_id": "s", "resume_token": "t", "last_seq": 0})
        )
        late = await recv(first)
        assert (late["code"], late["reason"]) == ("resume_failed", "not_first_message")


async def test_a_closed_session_cannot_be_resumed(tmp_path) -> None:
    """A client that closes its connection properly ends its session at once: a resume learns it was closed."""
    async with run_server(tmp_path) as server, AsyncExitStack() as stack:
        async with open_websocket_url(server.ws_url) as first:
            created = await recv(first)
        await wait_sessions_open(server, 0)
        _, answer = await resume(server.ws_url, created, 1, stack=stack)
        assert answer["reason"] == "session_closed"


async def test_resuming_takes_the_session_over_from_a_connection_still_open(tmp_path) -> None:
    """The server may not have noticed the old connection died: a resume takes the session over and the
    old connection is closed with 1000; the stream goes on, on the new one."""
    async with run_server(tmp_path) as server, AsyncExitStack() as stack:
        stream = Stream()
        first = await stack.enter_async_context(open_websocket_url(server.ws_url))
        created = stream.take(await recv(first))
        second, answer = await resume(server.ws_url, created, 1, stack=stack)
        assert answer["type"] == "session.resumed"
        try:
            with trio.fail_after(IO_TIMEOUT):
                await first.get_message()
        except ConnectionClosed as closed:
            assert closed.reason.code == 1000
        else:
            raise AssertionError("the old connection should have been closed")
        await second.send_message(json.dumps({"type": "ping"}))
        assert stream.take(await recv(second))["type"] == "pong"


async def test_a_reply_waits_while_no_one_reads_and_nothing_is_lost(tmp_path) -> None:
    """With a small replay buffer and no connection, the reply fills the buffer and then waits; resumed,
    it delivers every event exactly once and completes."""
    store = FakeStore()
    llm = FakeLLM(reply=long_reply)
    async with (
        run_server(tmp_path, {"llm": llm, "store": store}, replay_buffer_events=16) as server,
        AsyncExitStack() as stack,
    ):
        stream = Stream()
        first = await stack.enter_async_context(open_websocket_url(server.ws_url))
        created = stream.take(await recv(first))
        await first.send_message(json.dumps({"type": "message.create", "text": "tell me"}))
        await stream.until(first, "response.created")
        await drop(first)
        await wait_disconnected(server)  # from here the reply runs until 16 unseen events fill the buffer
        second, answer = await resume(server.ws_url, created, stream.last_seq, stack=stack)
        assert answer["type"] == "session.resumed"
        done = await stream.until(second, "response.done")
        assert done["status"] == "completed" and done["text"] == long_reply(None)
        assert [t["status"] for t in store.turns] == ["completed"]
