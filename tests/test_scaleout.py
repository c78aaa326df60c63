"""End to end: two ``trio-voice serve`` processes behind Debian's nginx, sharing PostgreSQL and Redis.

nginx runs ``deploy/nginx.conf`` itself, with only its addresses rewritten to this test's ports (the
upstream names ``tv1``/``tv2`` become the two servers' loopback ports) and its files under a prefix
directory of its own; it runs in the foreground and is stopped by the test. The servers use fake
engines (``--fake-engines``; a slow fake LLM where a reply must be caught mid-way), the real local
PostgreSQL (a fresh schema) and Redis (a fresh key prefix). Never skipped: without nginx, PostgreSQL or
Redis the tests fail and say which is missing.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
import yaml
from trio_websocket import ConnectionClosed, WebSocketConnection, open_websocket_url

from tests.conftest import IO_TIMEOUT
from tests.redis_server import TEST_REDIS_URL, fresh_prefix
from tests.server_process import REPO, ServerProcess
from tests.test_resume import drop, recv
from trio_voice.storage import open_store

pytestmark = pytest.mark.scaleout

DEPLOY = REPO / "deploy"
NGINX_START_TIMEOUT = 10.0


def nginx_binary() -> str:
    path = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if path is None:
        pytest.fail("nginx is not installed (apt-get install nginx; .ci/run does it)", pytrace=False)
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_of(url: str) -> int:
    return int(re.search(r":(\d+)(/|$)", url.split("://", 1)[1]).group(1))  # type: ignore[union-attr]


def nginx_config(ports: dict[str, tuple[int, int]], listen: int, prefix: Path) -> str:
    """deploy/nginx.conf with tvN:8765 / tvN:8080 at these (ws, http) ports, listening on ``listen``,
    its temporary files under ``prefix``."""
    text = (DEPLOY / "nginx.conf").read_text()
    for name, (ws, http) in ports.items():
        text = text.replace(f"{name}:8765", f"127.0.0.1:{ws}").replace(f"{name}:8080", f"127.0.0.1:{http}")
    assert "listen 80;" in text
    text = text.replace("listen 80;", f"listen 127.0.0.1:{listen};")
    temp = "".join(
        f"    {kind}_temp_path {prefix / kind};\n"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    text = text.replace("http {\n", "http {\n" + temp, 1)
    return text.replace("worker_processes auto;", "worker_processes 1;")


class Nginx:
    """nginx in the foreground with its own prefix directory; stopped with SIGQUIT (then killed)."""

    def __init__(self, config: str, prefix: Path, port: int) -> None:
        prefix.mkdir(parents=True, exist_ok=True)
        (prefix / "nginx.conf").write_text(config)
        self.log = prefix / "nginx.log"
        self.port = port
        self._log = self.log.open("wb")
        self.proc = subprocess.Popen(
            [
                nginx_binary(),
                "-p",
                str(prefix),
                "-c",
                str(prefix / "nginx.conf"),
                "-g",
                f"daemon off; pid {prefix / 'nginx.pid'};",
            ],
            stdout=self._log,
            stderr=self._log,
        )
        deadline = time.monotonic() + NGINX_START_TIMEOUT
        while time.monotonic() < deadline:  # blocking: the fixture runs before the test's event loop
            if self.proc.poll() is not None:
                raise AssertionError(f"nginx exited ({self.proc.returncode}): {self.log.read_text()}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise AssertionError(f"nginx did not listen on {port}; see {self.log}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


@attrs.define
class Cluster:
    servers: dict[str, ServerProcess]
    nginx: Nginx
    pg_url: str

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.nginx.port}/v1/voice"

    def voice(self, instance: str | None = None) -> str:
        return self.ws_url + (f"?instance={instance}" if instance else "")

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.nginx.port}"


@pytest.fixture
def cluster(tmp_path: Path, pg_url: str) -> Iterator[Cluster]:
    """tv1 and tv2 (``trio-voice serve --fake-engines``) behind nginx, on one schema and one prefix."""
    nginx_binary()  # fail first, and clearly, when nginx is missing
    with fresh_prefix() as prefix:
        servers: dict[str, ServerProcess] = {}
        nginx = None
        try:
            for name in ("tv1", "tv2"):
                servers[name] = ServerProcess(
                    [
                        str(REPO / ".venv/bin/trio-voice"),
                        "serve",
                        "--fake-engines",
                        "--fake-llm-token-delay",
                        "0.05",
                        "--port",
                        "0",
                        "--http-port",
                        "0",
                        "--data-dir",
                        str(tmp_path / name),
                        "--database-url",
                        pg_url,
                        "--redis-url",
                        TEST_REDIS_URL,
                        "--redis-prefix",
                        prefix,
                        "--instance-id",
                        name,
                        "--heartbeat-interval",
                        "0",
                    ],
                    tmp_path / f"{name}.log",
                )
            ports = {name: (port_of(s.ws_url), port_of(s.http_url)) for name, s in servers.items()}
            listen = free_port()
            nginx = Nginx(nginx_config(ports, listen, tmp_path / "nginx"), tmp_path / "nginx", listen)
            yield Cluster(servers, nginx, pg_url)
        finally:
            if nginx is not None:
                nginx.stop()
            for server in servers.values():
                server.stop()


async def created(ws: WebSocketConnection) -> dict[str, Any]:
    event = await recv(ws)
    assert event["type"] == "session.created", event
    return event


async def until(ws: WebSocketConnection, type_: str, **match: Any) -> list[dict[str, Any]]:
    events = []
    while True:
        event = await recv(ws)
        events.append(event)
        if event["type"] == type_ and all(event.get(k) == v for k, v in match.items()):
            return events


async def send(ws: WebSocketConnection, message: dict[str, Any]) -> None:
    await ws.send_message(json.dumps(message))


async def ask(ws: WebSocketConnection, text: str, request_id: str) -> dict[str, Any]:
    await send(ws, {"type": "message.create", "text": text, "request_id": request_id})
    return (await until(ws, "response.done", request_id=request_id))[-1]


def test_the_compose_file_and_nginx_name_the_same_instances() -> None:
    """docker-compose.yml parses, runs nginx, PostgreSQL, Redis and one trio-voice service per instance
    that nginx.conf routes to, each with its own --instance-id, all on the shared database and Redis."""
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"nginx", "postgres", "redis"} <= set(services)
    instances = {name for name, s in services.items() if "trio-voice" in " ".join(s.get("command", []))}
    conf = (DEPLOY / "nginx.conf").read_text()
    routed = set(re.findall(r"^\s+(tv\d+)\s+voice_tv\d+;", conf, re.M))
    assert instances == routed == {"tv1", "tv2"}
    for name in instances:
        command = services[name]["command"]
        assert command[command.index("--instance-id") + 1] == name
        env = services[name]["environment"]
        assert env["TRIO_VOICE_DATABASE_URL"].startswith("postgresql://")
        assert env["TRIO_VOICE_REDIS_URL"].startswith("redis://")


async def test_a_conversation_started_on_one_instance_continues_on_the_other(cluster: Cluster) -> None:
    """A turn through tv1, then the same conversation through tv2 (session.update conversation_id):
    the shared store holds all four messages, in order."""
    async with AsyncExitStack() as stack:
        on_1 = await stack.enter_async_context(open_websocket_url(cluster.voice("tv1")))
        first = await created(on_1)
        assert first["instance_id"] == "tv1"
        assert (await ask(on_1, "one", "q1"))["status"] == "completed"
        on_2 = await stack.enter_async_context(open_websocket_url(cluster.voice("tv2")))
        assert (await created(on_2))["instance_id"] == "tv2"
        await send(
            on_2, {"type": "session.update", "conversation_id": first["conversation_id"], "request_id": "u"}
        )
        await until(on_2, "session.updated", request_id="u")
        assert (await ask(on_2, "two", "q2"))["status"] == "completed"
    async with open_store(cluster.pg_url) as store:
        history = await store.history(first["conversation_id"], limit=10)
    assert [(m.role, m.text.split(".")[0]) for m in history] == [
        ("user", "one"),
        ("assistant", "You said: one"),
        ("user", "two"),
        ("assistant", "You said: two"),
    ]


async def test_presence_and_offline_messages_cross_instances_through_nginx(cluster: Cluster) -> None:
    """ann on tv1 is seen online by ann's connection on tv2; a message queued through tv1's HTTP API
    (through nginx too) while ann has no connection is delivered on ann's next connection, on tv2."""
    import httpx

    async with AsyncExitStack() as stack:
        on_2 = await stack.enter_async_context(open_websocket_url(cluster.voice("tv2")))
        await created(on_2)
        await send(on_2, {"type": "session.update", "user_id": "ann", "request_id": "u"})
        await until(on_2, "session.updated", request_id="u")
        on_1 = await stack.enter_async_context(open_websocket_url(cluster.voice("tv1")))
        one = await created(on_1)
        await send(on_1, {"type": "session.update", "user_id": "ann", "request_id": "u"})
        seen = (await until(on_2, "presence.update", session_id=one["session_id"]))[-1]
        assert (seen["user_id"], seen["status"]) == ("ann", "online")
    async with httpx.AsyncClient(base_url=cluster.servers["tv1"].http_url) as http:
        with trio.fail_after(IO_TIMEOUT):
            queued = await http.post("/v1/users/bob/messages", json={"text": "while you were out"})
    assert queued.status_code < 300, queued.text
    async with open_websocket_url(cluster.voice("tv2")) as bob:
        await created(bob)
        await send(bob, {"type": "session.update", "user_id": "bob", "request_id": "u"})
        message = (await until(bob, "system.message"))[-1]
        assert message["text"] == "while you were out"


async def test_a_dropped_connection_resumes_on_its_own_instance_through_nginx(cluster: Cluster) -> None:
    """A session created through nginx, dropped mid-reply (no close frame), is resumed through nginx with
    ?instance=: the reply arrives whole; a resume sent to the other instance is told where to go."""
    async with AsyncExitStack() as stack:
        first = await stack.enter_async_context(open_websocket_url(cluster.voice()))
        session = await created(first)
        home = session["instance_id"]
        other = "tv2" if home == "tv1" else "tv1"
        await send(first, {"type": "message.create", "text": "tell me", "request_id": "q"})
        seen = await until(first, "response.text.delta")
        await drop(first)
        resume = {
            "type": "session.resume",
            "session_id": session["session_id"],
            "resume_token": session["resume_token"],
            "last_seq": seen[-1]["seq"],
            "request_id": "r",
        }
        wrong = await stack.enter_async_context(open_websocket_url(cluster.voice(other)))
        assert (await created(wrong))["instance_id"] == other
        await send(wrong, resume)
        refused = (await until(wrong, "error", request_id="r"))[-1]
        assert (refused["reason"], refused["instance_id"]) == ("wrong_instance", home)

        right = await stack.enter_async_context(open_websocket_url(cluster.voice(refused["instance_id"])))
        await created(right)
        await send(right, resume)
        resumed = (await until(right, "session.resumed", request_id="r"))[-1]
        assert resumed["session_id"] == session["session_id"]
        rest = await until(right, "response.done", request_id="q")
        assert rest[0]["seq"] == seen[-1]["seq"] + 1  # seq goes on, nothing lost
        text = "".join(e["delta"] for e in [*seen[1:], *rest] if e["type"] == "response.text.delta")
        assert rest[-1]["status"] == "completed" and text == rest[-1]["text"]


async def test_a_draining_instance_finishes_its_reply_and_new_sessions_go_elsewhere(cluster: Cluster) -> None:
    """SIGTERM to tv1 mid-reply: its reply completes and is stored, its session closes with 1001, new
    sessions through nginx land on tv2, and a resume aimed at tv1 is answered (session_closed) by tv2."""
    async with AsyncExitStack() as stack:
        on_1 = await stack.enter_async_context(open_websocket_url(cluster.voice("tv1")))
        session = await created(on_1)
        await send(on_1, {"type": "message.create", "text": "long one", "request_id": "q"})
        await until(on_1, "response.text.delta")
        cluster.servers["tv1"].proc.send_signal(signal.SIGTERM)
        done = (await until(on_1, "response.done", request_id="q"))[-1]
        assert done["status"] == "completed"
        with trio.fail_after(IO_TIMEOUT), pytest.raises(ConnectionClosed) as closed:
            while True:
                await on_1.get_message()
        assert closed.value.reason.code == 1001
        for _ in range(3):
            async with open_websocket_url(cluster.voice()) as new:
                assert (await created(new))["instance_id"] == "tv2"
        async with open_websocket_url(cluster.voice("tv1")) as late:
            assert (await created(late))["instance_id"] == "tv2"  # nginx's backup for tv1
            await send(
                late,
                {
                    "type": "session.resume",
                    "session_id": session["session_id"],
                    "resume_token": session["resume_token"],
                    "last_seq": 1,
                    "request_id": "r",
                },
            )
            refused = (await until(late, "error", request_id="r"))[-1]
            assert refused["reason"] == "session_closed"
    with trio.fail_after(IO_TIMEOUT):
        assert await trio.to_thread.run_sync(cluster.servers["tv1"].proc.wait) == 0
    async with open_store(cluster.pg_url) as store:
        history = await store.history(session["conversation_id"], limit=10)
    assert [(m.role, m.text, m.interrupted) for m in history] == [
        ("user", "long one", False),
        ("assistant", done["text"], False),
    ]
