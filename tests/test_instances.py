"""Two server instances sharing PostgreSQL and Redis, in this process (ports 0), no load balancer.

What the instances share shows between them: a user's presence and offline messages, the routes that
tell a resume where its session lives. The same behaviours through nginx, with ``trio-voice serve``
processes, are in ``test_scaleout.py``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import httpx
import trio
from trio_websocket import open_websocket_url

from tests.conftest import IO_TIMEOUT, RunningServer, connect, run_server
from tests.redis_server import TEST_REDIS_URL, fresh_prefix
from tests.test_resume import drop, recv
from tests.test_users import as_user


@asynccontextmanager
async def two_instances(tmp_path: Path, pg_url: str) -> AsyncIterator[tuple[RunningServer, RunningServer]]:
    """Instances ``a`` and ``b`` over one PostgreSQL schema and one Redis key prefix."""
    with fresh_prefix() as prefix:
        async with AsyncExitStack() as stack:
            servers = [
                await stack.enter_async_context(
                    run_server(
                        tmp_path / name,
                        database_url=pg_url,
                        redis_url=TEST_REDIS_URL,
                        redis_prefix=prefix,
                        instance_id=name,
                    )
                )
                for name in ("a", "b")
            ]
            yield servers[0], servers[1]


async def test_each_session_names_its_instance(tmp_path: Path, pg_url: str) -> None:
    """session.created carries the instance_id of the instance that holds the session."""
    async with two_instances(tmp_path, pg_url) as (a, b):
        async with connect(a.ws_url) as on_a, connect(b.ws_url) as on_b:
            assert on_a.received[0]["instance_id"] == "a"
            assert on_b.received[0]["instance_id"] == "b"


async def test_a_resume_on_the_wrong_instance_names_the_right_one(tmp_path: Path, pg_url: str) -> None:
    """A session of instance a resumed through instance b is refused with wrong_instance and a's id (b's
    fresh session goes on); the same resume through a succeeds."""
    async with two_instances(tmp_path, pg_url) as (a, b), AsyncExitStack() as stack:
        first = await stack.enter_async_context(open_websocket_url(a.ws_url))
        created = await recv(first)
        await drop(first)
        resume = {
            "type": "session.resume",
            "session_id": created["session_id"],
            "resume_token": created["resume_token"],
            "last_seq": 1,
            "request_id": "r",
        }
        async with connect(b.ws_url) as wrong:
            await wrong.send(resume)
            [refused] = await wrong.recv_until("error", request_id="r")
            assert (refused["code"], refused["reason"], refused["instance_id"]) == (
                "resume_failed",
                "wrong_instance",
                "a",
            )
            assert "?instance=a" in refused["message"]
            await wrong.send({"type": "ping", "request_id": "still"})
            await wrong.recv_until("pong", request_id="still")
        async with connect(a.ws_url) as right:
            await right.send(resume)
            [resumed] = await right.recv_until("session.resumed", request_id="r")
            assert resumed["session_id"] == created["session_id"]


async def test_presence_and_messages_cross_instances(tmp_path: Path, pg_url: str) -> None:
    """ann on a and ann on b see each other's presence and typing; a message queued through a's HTTP
    API reaches ann's connection on b; ann leaving a shows as offline on b."""
    async with two_instances(tmp_path, pg_url) as (a, b), connect(b.ws_url) as on_b:
        await as_user(on_b, "ann")
        async with connect(a.ws_url) as on_a:
            await as_user(on_a, "ann")
            a_id = on_a.received[0]["session_id"]
            seen = await on_b.recv_until("presence.update", session_id=a_id)
            assert (seen[-1]["user_id"], seen[-1]["status"]) == ("ann", "online")
            await on_a.send({"type": "typing.start"})
            assert (await on_b.recv_until("typing.update", session_id=a_id))[-1]["typing"] is True
            async with httpx.AsyncClient(base_url=a.http_url) as http:
                with trio.fail_after(IO_TIMEOUT):
                    queued = await http.post("/v1/users/ann/messages", json={"text": "from a"})
                assert queued.status_code in (200, 201, 202), queued.text
                presence = (await http.get("/v1/users/ann/presence")).json()
                assert len(presence["sessions"]) == 2
            [message] = [e for e in await on_b.recv_until("system.message") if e["type"] == "system.message"]
            assert message["text"] == "from a"
            await on_b.send({"type": "message.delivered", "message_id": message["message_id"]})
        gone = await on_b.recv_until("presence.update", session_id=a_id)
        assert gone[-1]["status"] == "offline"
        async with httpx.AsyncClient(base_url=b.http_url) as http:

            async def status() -> str:
                return (await http.get("/v1/users/ann/messages")).json()["messages"][0]["status"]

            with trio.fail_after(IO_TIMEOUT):
                while await status() != "delivered":  # noqa: ASYNC110 - polled over HTTP
                    await trio.sleep(0.01)
