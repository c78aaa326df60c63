"""Realtime sessions in the session host (issue 13 beside issue 12): a real server on port 0, fake engines.

A ``/v1/realtime`` session is a session of the host like any other (one writer, its frames kept in its
outbox), but the API has no ``seq`` and no resume: it ends with its connection, however the connection
ends. A user's realtime session shows its presence to the user's other sessions and is sent none of
theirs (``presence.update``, ``typing.update`` and ``system.message`` have no realtime counterpart).
"""

from __future__ import annotations

import json

import httpx
import trio
from trio_websocket import open_websocket_url

from tests.conftest import IO_TIMEOUT, connect, run_server
from tests.realtime_ws import connect_realtime
from tests.test_resume import drop, recv, wait_sessions_open
from trio_voice import events
from trio_voice.realtime.connection import RealtimeConnection
from trio_voice.realtime_wire import RealtimeWire
from trio_voice.testing import FakeLLM, FakeTTS
from trio_voice.writer import Outgoing


def long_reply(_messages: object) -> str:
    return " ".join(f"Sentence number {n} is here." for n in range(12))


def ask(text: str) -> list[dict]:
    item = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}
    return [{"type": "conversation.item.create", "item": item}, {"type": "response.create"}]


async def recv_realtime(ws) -> dict:
    with trio.fail_after(IO_TIMEOUT):
        return json.loads(await ws.get_message())


async def only_session_id(http_url: str) -> str:
    async with httpx.AsyncClient(base_url=http_url) as http:
        [session] = (await http.get("/v1/sessions")).json()["sessions"]
    return session["session_id"]


def test_users_events_render_as_nothing_on_the_realtime_wire() -> None:
    """Presence, typing and system messages become no realtime event (the API has no users)."""
    conn = RealtimeConnection(model="m", max_text_chars=100)
    for event in (
        events.PresenceUpdate("ann", "sess_1", "online", 1.0),
        events.TypingUpdate("ann", "sess_1", True),
        events.SystemMessage("msg_1", "system", "hello", 1.0, 2.0),
    ):
        assert conn.send(event) == []


def test_the_realtime_wire_numbers_its_frames_for_the_outbox() -> None:
    """One event may become several frames; each is numbered after the one before (the outbox's order),
    and carries its realtime type; no number reaches the client's JSON."""
    wire = RealtimeWire(model="m", max_text_chars=100)
    created = wire.render(Outgoing(events.SessionCreated("sess_1", "conv_1", {}, "token")))
    started = wire.render(Outgoing(events.ReplyCreated("resp_1")))
    done = wire.render(Outgoing(events.ReplyDone("resp_1", "completed", None, "", {})))
    frames = created + started + done
    assert [f.seq for f in frames] == list(range(1, len(frames) + 1))
    assert len(started) > 1 and len(done) > 1
    assert [f.type for f in created] == ["session.created"] and done[-1].type == "response.done"
    assert all("seq" not in json.loads(f.text) and "resume_token" not in f.text for f in frames)


async def test_a_dropped_realtime_connection_ends_its_session_at_once(tmp_path) -> None:
    """No close frame, mid-response, with resume_ttl at its default: the session ends now (its response
    cancelled, client_disconnected), and /v1/voice's session.resume does not know it."""
    llm = FakeLLM(reply=long_reply, token_delay=0.02)
    tts = FakeTTS(delay=lambda text: 0.05)
    async with run_server(tmp_path, {"llm": llm, "tts": tts}) as server:
        assert server.config.resume_ttl > 0
        async with open_websocket_url(server.listening.realtime_url + "?model=m") as ws:
            assert (await recv_realtime(ws))["type"] == "session.created"
            session_id = await only_session_id(server.http_url)
            for event in ask("tell me"):
                await ws.send_message(json.dumps(event))
            while (await recv_realtime(ws))["type"] != "response.output_audio.delta":
                pass
            await drop(ws)
            await wait_sessions_open(server, 0)
        assert llm.active == 0 and tts.active == 0
        turns = await server.engines.store.recent_turns(5)
        assert [(t["status"], t["reason"]) for t in turns] == [("cancelled", "client_disconnected")]
        metrics = server.telemetry.render().decode()
        assert 'trio_voice_sessions_ended_total{how="closed"} 1.0' in metrics
        async with open_websocket_url(server.ws_url) as native:
            await recv(native)
            resume = {"type": "session.resume", "session_id": session_id, "resume_token": "x", "last_seq": 1}
            await native.send_message(json.dumps(resume))
            answer = await recv(native)
    assert (answer["code"], answer["reason"]) == ("resume_failed", "unknown_session")


async def test_a_users_realtime_session_shows_presence_and_is_sent_none_of_the_users_events(tmp_path) -> None:
    """A realtime connection with ann's token is ann's: her /v1/voice session sees it online, then offline;
    her typing and a system message for her (which her /v1/voice session gets) reach the realtime client
    as nothing, and the realtime session goes on answering."""
    operator = {"authorization": "Bearer op"}
    async with (
        run_server(tmp_path, tokens=("op",), user_tokens=("ann=ann-token",)) as server,
        connect(server.ws_url + "?token=ann-token") as phone,
        httpx.AsyncClient(base_url=server.http_url, headers=operator) as http,
    ):
        phone_id = phone.received[0]["session_id"]
        async with connect_realtime(
            server.listening.realtime_url, headers=[("Authorization", "Bearer ann-token")]
        ) as client:
            listed = (await http.get("/v1/sessions")).json()["sessions"]
            [realtime_id] = [s["session_id"] for s in listed if s["session_id"] != phone_id]
            online = await phone.recv_until("presence.update", session_id=realtime_id)
            assert (online[-1]["user_id"], online[-1]["status"]) == ("ann", "online")

            await phone.send({"type": "typing.start"})
            assert (await http.post("/v1/users/ann/messages", json={"text": "hello"})).status_code == 202
            message = (await phone.recv_until("system.message"))[-1]
            assert message["text"] == "hello"
            await client.expect_quiet(0.3)
            for event in ask("are you there"):
                await client.send(event)
            done = (await client.recv_until("response.done"))[-1]
            assert done["response"]["status"] == "completed"
            assert not any(e["type"].startswith(("presence", "typing", "system")) for e in client.received)
        offline = await phone.recv_until("presence.update", session_id=realtime_id)
        assert offline[-1]["status"] == "offline"
