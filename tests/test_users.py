"""Users across connections, against a real server on port 0: presence and typing seen from another
connection of the same user, typing holding a spoken turn's end, offline messages across a restart and
their expiry, and who may do what with user tokens."""

from __future__ import annotations

import json
from contextlib import AsyncExitStack
from typing import Any

import httpx
import trio
from trio_websocket import open_websocket_url

from tests.conftest import Client, connect, run_server
from tests.test_resume import drop, recv, wait_sessions_open
from trio_voice.shared import InProcessState
from trio_voice.testing import FakeLLM, FakeSTT, FakeVAD, utterance


async def as_user(client: Client, user_id: str) -> dict[str, Any]:
    await client.send({"type": "session.update", "user_id": user_id, "request_id": "who"})
    updated = await client.recv_until("session.updated", request_id="who")
    assert updated[-1]["config"]["user_id"] == user_id
    return updated[-1]


async def test_presence_and_typing_are_seen_from_another_connection_of_the_same_user(tmp_path) -> None:
    """A second connection of alice appears online to the first (and the first to it), its typing shows
    and stops, its away shows, and its end shows as offline; the presence endpoint agrees."""
    async with run_server(tmp_path) as server, connect(server.ws_url) as phone:
        await as_user(phone, "alice")
        phone_id = phone.received[0]["session_id"]
        async with connect(server.ws_url) as laptop:
            await as_user(laptop, "alice")
            laptop_id = laptop.received[0]["session_id"]
            seen = await phone.recv_until("presence.update", session_id=laptop_id)
            assert (seen[-1]["user_id"], seen[-1]["status"]) == ("alice", "online")
            snapshot = await laptop.recv_until("presence.update", session_id=phone_id)
            assert snapshot[-1]["status"] == "online" and snapshot[-1]["last_seen"] > 0

            await laptop.send({"type": "typing.start"})
            typing = await phone.recv_until("typing.update", session_id=laptop_id)
            assert typing[-1]["typing"] is True
            async with httpx.AsyncClient(base_url=server.http_url) as http:
                body = (await http.get("/v1/users/alice/presence")).json()
            assert (body["status"], body["typing"]) == ("online", True)
            assert {s["session_id"] for s in body["sessions"]} == {phone_id, laptop_id}
            await laptop.send({"type": "typing.stop"})
            assert (await phone.recv_until("typing.update", session_id=laptop_id))[-1]["typing"] is False

            await laptop.send({"type": "presence.set", "status": "away"})
            away = await phone.recv_until("presence.update", session_id=laptop_id)
            assert away[-1]["status"] == "away"
        gone = await phone.recv_until("presence.update", session_id=laptop_id)
        assert gone[-1]["status"] == "offline"


async def test_typing_ends_by_itself(tmp_path) -> None:
    """Without typing.stop, typing ends typing_timeout seconds after the last typing.start."""
    async with (
        run_server(tmp_path, typing_timeout=0.3) as server,
        connect(server.ws_url) as watcher,
        connect(server.ws_url) as typist,
    ):
        await as_user(watcher, "bob")
        await as_user(typist, "bob")
        typist_id = typist.received[0]["session_id"]
        await typist.send({"type": "typing.start"})
        assert (await watcher.recv_until("typing.update", session_id=typist_id))[-1]["typing"] is True
        with trio.fail_after(2):
            stopped = await watcher.recv_until("typing.update", session_id=typist_id)
        assert stopped[-1]["typing"] is False


async def test_typing_holds_a_spoken_turns_end(tmp_path) -> None:
    """While the user types, a spoken turn's transcript comes but its reply waits; typing.stop lets it go."""
    engines = {"llm": FakeLLM(), "stt": FakeSTT(), "vad_factory": FakeVAD}
    async with run_server(tmp_path, engines) as server, connect(server.ws_url) as client:
        await client.send({"type": "typing.start"})
        audio = utterance(0.8)
        for offset in range(0, len(audio), 3200):
            await client.send(audio[offset : offset + 3200])
        final = await client.recv_until("transcript.final")
        assert final[-1]["text"]
        await client.expect_quiet(0.5)  # the user is composing: no reply starts
        await client.send({"type": "typing.stop"})
        reply = await client.recv_until("response.done")
        assert reply[0]["type"] == "response.created" and reply[-1]["status"] == "completed"


async def test_an_offline_message_survives_a_restart_and_is_delivered_once(tmp_path) -> None:
    """Queued while carol has no connection, kept across a server restart, delivered on her next
    connection, acknowledged with message.delivered, and not sent again after that."""
    async with run_server(tmp_path) as server, httpx.AsyncClient(base_url=server.http_url) as http:
        answer = await http.post("/v1/users/carol/messages", json={"text": "Your order has shipped."})
        assert answer.status_code == 202
        queued = answer.json()
        assert (queued["status"], queued["kind"]) == ("queued", "system")
    async with run_server(tmp_path) as server:  # a restart: a new process state, the same store file
        async with connect(server.ws_url) as client:
            await as_user(client, "carol")
            message = (await client.recv_until("system.message"))[-1]
            assert (message["message_id"], message["text"]) == (
                queued["message_id"],
                "Your order has shipped.",
            )
            await client.send({"type": "message.delivered", "message_id": message["message_id"]})
            await client.send(
                {"type": "message.delivered", "message_id": message["message_id"], "request_id": "2"}
            )
            again = await client.recv_until("error")
            assert (again[-1]["code"], again[-1]["request_id"]) == ("message_not_found", "2")
        async with httpx.AsyncClient(base_url=server.http_url) as http:
            listed = (await http.get("/v1/users/carol/messages")).json()["messages"]
        assert [(m["message_id"], m["status"]) for m in listed] == [(queued["message_id"], "delivered")]
        async with connect(server.ws_url) as client:
            await as_user(client, "carol")
            await client.send({"type": "ping"})
            events = await client.recv_until("pong")
            await client.expect_quiet(0.3)
            assert "system.message" not in {e["type"] for e in events}
        metrics = server.telemetry.render().decode()
        assert 'trio_voice_offline_messages_total{event="delivered"} 1.0' in metrics


async def test_an_expired_offline_message_is_not_delivered_and_is_counted(tmp_path) -> None:
    """A message whose TTL passed before its user came back is dropped unsent and counted in /metrics;
    one still within its TTL is delivered."""
    now = [1_000_000.0]

    def shared(store: Any) -> InProcessState:
        return InProcessState(store, clock=lambda: now[0])

    async with (
        run_server(tmp_path, shared=shared) as server,
        httpx.AsyncClient(base_url=server.http_url) as http,
    ):
        await http.post("/v1/users/dave/messages", json={"text": "short-lived", "ttl_s": 10})
        kept = (await http.post("/v1/users/dave/messages", json={"text": "long-lived", "ttl_s": 3600})).json()
        now[0] += 60
        async with connect(server.ws_url) as client:
            await as_user(client, "dave")
            first = (await client.recv_until("system.message"))[-1]  # oldest first: the expired one is gone
            assert first["message_id"] == kept["message_id"] and first["text"] == "long-lived"
        metrics = (await http.get("/metrics")).text
        assert 'trio_voice_offline_messages_total{event="expired"} 1.0' in metrics


async def test_a_message_reaches_a_user_who_is_connected_at_once(tmp_path) -> None:
    """Queued while the user is connected, the message is sent to the live session straight away."""
    async with run_server(tmp_path) as server, connect(server.ws_url) as client:
        await as_user(client, "erin")
        async with httpx.AsyncClient(base_url=server.http_url) as http:
            await http.post("/v1/users/erin/messages", json={"text": "Hello, Erin."})
        message = (await client.recv_until("system.message"))[-1]
        assert message["text"] == "Hello, Erin."


async def test_a_reply_that_finished_after_the_user_left_waits_for_the_next_connection(tmp_path) -> None:
    """The connection drops; the reply completes; no resume comes: the reply is queued for the user and
    delivered as a system.message of kind reply on the next connection."""
    llm = FakeLLM(token_delay=0.01)
    async with run_server(tmp_path, {"llm": llm}, resume_ttl=0.3) as server:
        async with open_websocket_url(server.ws_url) as first:
            created = await recv(first)
            await first.send_message(json.dumps({"type": "session.update", "user_id": "fay"}))
            await first.send_message(json.dumps({"type": "message.create", "text": "are you there"}))
            while (await recv(first))["type"] != "response.created":
                pass
            await drop(first)
        await wait_sessions_open(server, 0)
        async with connect(server.ws_url) as client:
            await as_user(client, "fay")
            message = (await client.recv_until("system.message"))[-1]
        assert message["kind"] == "reply"
        assert message["conversation_id"] == created["conversation_id"]
        assert message["text"].startswith("You said: are you there.")


async def test_user_tokens_fix_the_user_and_limit_what_it_may_do(tmp_path) -> None:
    """A user token names its session's user (another user_id is refused), reads only its own user's
    presence and messages, and may not send messages; an operator token may."""
    async with run_server(tmp_path, tokens=("op-token",), user_tokens=("gus=gus-token",)) as server:
        async with open_websocket_url(server.ws_url + "?token=gus-token") as ws:
            created = await recv(ws)
            assert created["config"]["user_id"] == "gus"
            await ws.send_message(json.dumps({"type": "session.update", "user_id": "hal", "request_id": "u"}))
            error = await recv(ws)
            assert (error["code"], error["request_id"]) == ("user_mismatch", "u")
        gus = {"authorization": "Bearer gus-token"}
        op = {"authorization": "Bearer op-token"}
        async with httpx.AsyncClient(base_url=server.http_url) as http:
            assert (await http.get("/v1/users/gus/presence", headers=gus)).status_code == 200
            other = await http.get("/v1/users/hal/presence", headers=gus)
            assert (other.status_code, other.json()["error"]["code"]) == (403, "forbidden")
            assert (
                await http.post("/v1/users/gus/messages", json={"text": "x"}, headers=gus)
            ).status_code == 403
            assert (
                await http.post("/v1/users/gus/messages", json={"text": "x"}, headers=op)
            ).status_code == 202
            assert (await http.get("/v1/users/gus/presence")).status_code == 401


async def test_presence_needs_a_user_and_the_queue_is_bounded(tmp_path) -> None:
    """presence.set without a user is user_required; a user's queue past offline_max_queued is 429 queue_full."""
    async with run_server(tmp_path, offline_max_queued=2) as server, connect(server.ws_url) as client:
        await client.send({"type": "presence.set", "status": "away", "request_id": "p"})
        error = await client.recv()
        assert (error["code"], error["request_id"]) == ("user_required", "p")
        async with httpx.AsyncClient(base_url=server.http_url) as http:
            codes = [
                (await http.post("/v1/users/ivy/messages", json={"text": f"m{n}"})).status_code
                for n in range(3)
            ]
            full = await http.post("/v1/users/ivy/messages", json={"text": "m3"})
        assert codes == [202, 202, 429] and full.json()["error"]["code"] == "queue_full"


async def test_a_dropped_connection_shows_away_until_it_resumes(tmp_path) -> None:
    """While a session waits for its client to resume, the user's other sessions see it away; resumed,
    online again."""
    from tests.test_resume import resume

    async with run_server(tmp_path) as server, connect(server.ws_url) as watcher:
        await as_user(watcher, "kim")
        async with AsyncExitStack() as stack:
            mobile = await stack.enter_async_context(open_websocket_url(server.ws_url))
            created = await recv(mobile)
            await mobile.send_message(json.dumps({"type": "session.update", "user_id": "kim"}))
            updated = await recv(mobile)
            online = await watcher.recv_until("presence.update", session_id=created["session_id"])
            assert online[-1]["status"] == "online"
            await drop(mobile)
            away = await watcher.recv_until("presence.update", session_id=created["session_id"])
            assert away[-1]["status"] == "away"
            _, answer = await resume(server.ws_url, created, updated["seq"], stack=stack)
            assert answer["type"] == "session.resumed"
            back = await watcher.recv_until("presence.update", session_id=created["session_id"])
            assert back[-1]["status"] == "online"
