"""Limits, auth and graceful shutdown of the WebSocket endpoint, against a real server on port 0."""

from __future__ import annotations

import json

import pytest
import trio
from trio_websocket import ConnectionClosed, ConnectionRejected, open_websocket_url

from tests.conftest import IO_TIMEOUT, connect, run_server
from trio_voice.lifecycle import Shutdown
from trio_voice.testing import FakeLLM, FakeTTS


async def closed_with(client_ws) -> int:
    """Read until the server closes the connection; return its close code."""
    with trio.fail_after(IO_TIMEOUT):
        try:
            while True:
                await client_ws.get_message()
        except ConnectionClosed as exc:
            return exc.reason.code


async def test_wrong_path_is_rejected_with_404(server) -> None:
    """Only /v1/voice speaks the protocol; other paths are refused at the handshake."""
    with pytest.raises(ConnectionRejected) as info:
        async with open_websocket_url(server.ws_url.replace("/v1/voice", "/elsewhere")):
            pass
    assert info.value.status_code == 404


async def test_tokens_are_required_when_configured(tmp_path) -> None:
    """With tokens set, no token or a wrong one gets 401; a right one via header or ?token= gets in."""
    async with run_server(tmp_path, tokens=("s3cret",)) as server:
        for url, headers in ((server.ws_url, None), (server.ws_url + "?token=nope", None)):
            with pytest.raises(ConnectionRejected) as info:
                async with open_websocket_url(url, extra_headers=headers):
                    pass
            assert info.value.status_code == 401
        async with connect(server.ws_url + "?token=s3cret"):
            pass
        async with open_websocket_url(
            server.ws_url, extra_headers=[("Authorization", "Bearer s3cret")]
        ) as ws:
            assert json.loads(await ws.get_message())["type"] == "session.created"


async def test_origins_outside_the_allowed_list_are_rejected(tmp_path) -> None:
    """A browser page from an origin that is not allowed gets 403."""
    async with run_server(tmp_path, allowed_origins=("https://app.example",)) as server:
        with pytest.raises(ConnectionRejected) as info:
            async with open_websocket_url(server.ws_url, extra_headers=[("Origin", "https://evil.example")]):
                pass
        assert info.value.status_code == 403
        async with open_websocket_url(server.ws_url, extra_headers=[("Origin", "https://app.example")]) as ws:
            assert json.loads(await ws.get_message())["type"] == "session.created"


async def test_server_full_closes_with_1013_and_a_reason(tmp_path) -> None:
    """Past max_sessions, a new connection gets error server_full and close code 1013."""
    async with run_server(tmp_path, max_sessions=1) as server, connect(server.ws_url):
        async with open_websocket_url(server.ws_url) as ws:
            event = json.loads(await ws.get_message())
            assert (event["type"], event["code"]) == ("error", "server_full")
            assert await closed_with(ws) == 1013


async def test_idle_session_is_closed_after_the_idle_timeout(tmp_path) -> None:
    """A client that sends nothing for idle_timeout seconds gets error idle_timeout and close 1000."""
    async with run_server(tmp_path, idle_timeout=0.3) as server, connect(server.ws_url) as client:
        event = await client.recv()
        assert (event["type"], event["code"]) == ("error", "idle_timeout")
        assert await closed_with(client.ws) == 1000


async def test_message_flood_is_rate_limited_and_the_session_survives(tmp_path) -> None:
    """Messages past the per-second budget are dropped with one rate_limited error per second."""
    async with run_server(tmp_path, max_messages_per_second=5.0) as server, connect(server.ws_url) as client:
        for _ in range(30):
            await client.send({"type": "ping"})
        types = [(await client.recv()).get("code", "pong") for _ in range(6)]
        await client.expect_quiet(0.2)
        assert sorted(types) == ["pong"] * 5 + ["rate_limited"]
        await trio.sleep(1.1)
        await client.send({"type": "ping"})
        assert (await client.recv())["type"] == "pong"


async def test_heartbeat_closes_a_peer_that_stops_answering(tmp_path) -> None:
    """A client that stops reading (so never answers pings) is closed by the server's heartbeat; its
    session then waits resume_ttl for a resume, and ends."""
    async with run_server(tmp_path, heartbeat_interval=0.2, resume_ttl=0.3) as server:
        async with open_websocket_url(server.ws_url) as ws:
            # trio-websocket answers pings while someone reads; a live reader keeps the session up.
            await ws.get_message()
            with trio.move_on_after(0.7):
                await ws.get_message()
            assert not ws.closed
        # A raw TCP peer that completes the handshake and then goes silent never answers a ping.
        stream = await trio.open_tcp_stream("127.0.0.1", server.listening.ws_port)
        await stream.send_all(
            b"GET /v1/voice HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        with trio.fail_after(5):
            while server.telemetry.sessions_open._value.get() < 1:  # noqa: ASYNC110 - no event to await
                await trio.sleep(0.01)
            while server.telemetry.sessions_open._value.get() > 0:  # noqa: ASYNC110 - no event to await
                await trio.sleep(0.05)
        await stream.aclose()


async def test_graceful_shutdown_lets_a_running_reply_finish_then_closes_1001(tmp_path) -> None:
    """On shutdown the running reply completes, then the session closes with 1001 and new turns are refused."""
    llm = FakeLLM(token_delay=0.02)
    tts = FakeTTS(delay=lambda text: 0.05)
    shutdown = Shutdown()
    async with run_server(
        tmp_path, {"llm": llm, "tts": tts}, shutdown=shutdown, shutdown_grace=10.0
    ) as server:
        async with connect(server.ws_url) as client, connect(server.ws_url) as idle:
            await client.send({"type": "message.create", "text": "a reply in flight"})
            await client.recv_until("response.audio.delta")
            shutdown.request()
            events = await client.recv_until("response.done")
            assert events[-1]["status"] == "completed"
            assert await closed_with(client.ws) == 1001
            assert await closed_with(idle.ws) == 1001
        with pytest.raises(OSError):
            await trio.open_tcp_stream("127.0.0.1", server.listening.ws_port)


async def test_shutdown_grace_ends_cancels_replies_with_reason_shutdown(tmp_path) -> None:
    """A reply still running when the grace period ends is cancelled with reason shutdown, then closed 1001."""
    llm = FakeLLM(token_delay=0.5)
    shutdown = Shutdown()
    async with run_server(tmp_path, {"llm": llm}, shutdown=shutdown, shutdown_grace=0.3) as server:
        async with connect(server.ws_url) as client:
            await client.send({"type": "message.create", "text": "a very slow reply"})
            await client.recv_until("response.text.delta")
            shutdown.request()
            events = await client.recv_until("response.done")
            assert (events[-1]["status"], events[-1]["reason"]) == ("cancelled", "shutdown")
            assert await closed_with(client.ws) == 1001
        assert llm.active == 0
