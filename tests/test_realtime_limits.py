"""``/v1/realtime`` shares ``/v1/voice``'s boundary: tokens, the session limit, the idle timeout, graceful
shutdown and the engines the server has; every frame read here is validated strictly (``tests.realtime_ws``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import trio
from trio_websocket import ConnectionRejected, open_websocket_url

from tests.conftest import run_server
from tests.realtime_pair import ClientView
from tests.realtime_ws import b64, connect_realtime, silence, types
from tests.test_limits import closed_with
from trio_voice.lifecycle import Shutdown
from trio_voice.realtime import codes
from trio_voice.testing import FakeLLM, FakeTTS


async def test_the_same_tokens_let_realtime_clients_in(tmp_path: Path) -> None:
    """With tokens set, no token gets 401; the SDK's Authorization: Bearer header or ?token= get in."""
    async with run_server(tmp_path, tokens=("s3cret",)) as server:
        url = server.listening.realtime_url
        with pytest.raises(ConnectionRejected) as info:
            async with open_websocket_url(f"{url}?model=m"):
                pass
        assert info.value.status_code == 401
        async with connect_realtime(url, headers=[("Authorization", "Bearer s3cret")]) as client:
            assert client.received[0]["session"]["model"] == "gpt-realtime"
        async with open_websocket_url(f"{url}?model=m&token=s3cret") as ws:
            assert json.loads(await ws.get_message())["type"] == "session.created"


async def test_other_paths_name_both_endpoints(tmp_path: Path) -> None:
    """A path that is neither endpoint is refused at the handshake with 404."""
    async with run_server(tmp_path) as server:
        with pytest.raises(ConnectionRejected) as info:
            async with open_websocket_url(server.listening.realtime_url + "/extra"):
                pass
    assert info.value.status_code == 404 and b"/v1/realtime" in info.value.body


@pytest.mark.parametrize("dialect", [codes.GA, codes.BETA])
async def test_server_full_is_a_realtime_error_then_close_1013(tmp_path: Path, dialect: str) -> None:
    """Past max_sessions a realtime client gets an SDK-valid error (server_full, server_error), then 1013."""
    headers = [("OpenAI-Beta", "realtime=v1")] if dialect == codes.BETA else []
    async with (
        run_server(tmp_path, max_sessions=1) as server,
        connect_realtime(server.listening.realtime_url),
    ):
        async with open_websocket_url(
            f"{server.listening.realtime_url}?model=m", extra_headers=headers
        ) as ws:
            event = json.loads(await ws.get_message())
            ClientView(dialect).check(event)
            assert (event["type"], event["error"]["code"]) == ("error", "server_full")
            assert event["error"]["type"] == codes.SERVER_ERROR
            assert await closed_with(ws) == 1013


async def test_an_idle_realtime_session_is_told_and_closed_1000(tmp_path: Path) -> None:
    """No frame for idle_timeout seconds: error idle_timeout, then close 1000."""
    async with (
        run_server(tmp_path, idle_timeout=0.3) as server,
        connect_realtime(server.listening.realtime_url) as c,
    ):
        [event] = await c.recv_until("error")
        assert event["error"]["code"] == "idle_timeout"
        assert await closed_with(c.ws) == 1000


async def test_graceful_shutdown_finishes_the_response_then_closes_1001(tmp_path: Path) -> None:
    """On shutdown the running response completes (response.done completed), then close 1001."""
    shutdown = Shutdown()
    llm, tts = FakeLLM(token_delay=0.02), FakeTTS(delay=lambda text: 0.05)
    async with run_server(
        tmp_path, {"llm": llm, "tts": tts}, shutdown=shutdown, shutdown_grace=10.0
    ) as server:
        async with connect_realtime(server.listening.realtime_url) as client:
            await client.send({"type": "response.create"})
            await client.recv_until("response.output_audio.delta")
            shutdown.request()
            events = await client.recv_until("response.done")
            assert events[-1]["response"]["status"] == "completed"
            assert await closed_with(client.ws) == 1001


async def test_a_server_without_voice_input_refuses_audio_but_takes_given_transcripts(tmp_path: Path) -> None:
    """Without a recognizer, appends are refused (unsupported_feature, event_id echoed); an audio item that
    brings its own transcript is stored as that text and answered."""
    llm = FakeLLM()
    async with (
        run_server(tmp_path, {"llm": llm}) as server,
        connect_realtime(server.listening.realtime_url) as c,
    ):
        assert c.received[0]["session"]["audio"]["input"]["turn_detection"] is None
        await c.send({"type": "input_audio_buffer.append", "event_id": "evt_a", "audio": b64(silence(0.1))})
        [refused] = await c.recv_until("error")
        part = {"type": "input_audio", "audio": b64(silence(0.1)), "transcript": "typed for me"}
        item = {"type": "message", "role": "user", "content": [part]}
        await c.send({"type": "conversation.item.create", "item": item})
        await c.send({"type": "response.create"})
        events = await c.recv_until("response.done")
    assert (refused["error"]["code"], refused["error"]["event_id"]) == (codes.UNSUPPORTED_FEATURE, "evt_a")
    assert types(events)[:2] == ["conversation.item.added", "conversation.item.done"]
    assert llm.calls[0][-1] == {"role": "user", "content": "typed for me"}


async def test_metrics_and_sessions_count_realtime_sessions(tmp_path: Path) -> None:
    """A realtime session is a session: /v1/sessions lists it while it is open."""
    import httpx

    async with run_server(tmp_path) as server, connect_realtime(server.listening.realtime_url):
        async with httpx.AsyncClient(base_url=server.http_url) as http:
            with trio.fail_after(5):
                listed = (await http.get("/v1/sessions")).json()
    assert len(listed["sessions"]) == 1


async def test_a_protocol_bug_is_told_as_internal_error_then_close_1011(tmp_path: Path, monkeypatch) -> None:
    """If the realtime connection refuses what the core asks it to send (our bug: LocalProtocolError),
    the client gets an internal_error and the connection is closed with 1011; the server goes on."""
    from trio_voice.errors import LocalProtocolError
    from trio_voice.realtime import RealtimeConnection

    def broken_start(self, response_id, request_id, item_id):  # type: ignore[no-untyped-def]
        raise LocalProtocolError(f"response {response_id} refused (test)")

    monkeypatch.setattr(RealtimeConnection, "_start", broken_start)
    async with run_server(tmp_path) as server:
        async with connect_realtime(server.listening.realtime_url) as client:
            await client.send({"type": "response.create"})
            [error] = await client.recv_until("error")
            assert (error["error"]["code"], error["error"]["type"]) == ("internal_error", codes.SERVER_ERROR)
            assert await closed_with(client.ws) == 1011
        monkeypatch.undo()
        async with connect_realtime(server.listening.realtime_url) as client:
            await client.send({"type": "response.create", "response": {"output_modalities": ["text"]}})
            assert (await client.recv_until("response.done"))[-1]["response"]["status"] == "completed"
