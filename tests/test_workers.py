"""``trio-voice serve --workers 2``: two processes on one port, and resumes that find their worker.

The kernel spreads connections over the workers (SO_REUSEPORT) by a hash of the client's address, so
these tests make enough connections that every path is taken with overwhelming probability: both
workers get sessions; a resume without ``?instance=`` sometimes lands on the other worker (and is told
``wrong_instance``); with ``?instance=`` every resume succeeds, whichever worker accepted the TCP
connection (the other one passes it over before the handshake).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from trio_websocket import open_websocket_url

from tests.redis_server import TEST_REDIS_URL, fresh_prefix
from tests.server_process import REPO, ServerProcess
from tests.test_resume import drop, recv
from trio_voice.handoff import instance_of

pytestmark = pytest.mark.scaleout

ATTEMPTS = 12  # resumes without ?instance=: all landing on the home worker has probability 2**-12


def test_the_instance_is_read_from_the_request_line_only() -> None:
    """instance_of finds ?instance= in a complete request line and nothing in anything else."""
    assert instance_of(b"GET /v1/voice?instance=w-1&x=2 HTTP/1.1\r\nHost: a\r\n") == "w-1"
    assert instance_of(b"GET /v1/voice HTTP/1.1\r\n") is None
    assert instance_of(b"GET /v1/voice?instance=w-1 HTTP/1.1") is None  # no line end yet
    assert instance_of(b"\xff\xfe garbage\r\n") is None


@pytest.fixture
def workers(tmp_path: Path, pg_url: str) -> Iterator[ServerProcess]:
    with fresh_prefix() as prefix:
        server = ServerProcess(
            [
                str(REPO / ".venv/bin/trio-voice"),
                "serve",
                "--workers",
                "2",
                "--fake-engines",
                "--port",
                "0",
                "--http-port",
                "0",
                "--data-dir",
                str(tmp_path),
                "--database-url",
                pg_url,
                "--redis-url",
                TEST_REDIS_URL,
                "--redis-prefix",
                prefix,
                "--instance-id",
                "w",
                "--heartbeat-interval",
                "0",
            ],
            tmp_path / "workers.log",
        )
        try:
            yield server
        finally:
            assert server.stop() == 0, (tmp_path / "workers.log").read_text()[-3000:]


async def test_two_workers_share_the_port_and_resumes_find_their_worker(workers: ServerProcess) -> None:
    """Sessions land on both workers; every resume through ?instance= succeeds; some resumes without it
    reach the other worker and are told which one holds the session."""
    seen: set[str] = set()
    outcomes = {"with": [], "without": []}
    for attempt in range(ATTEMPTS):
        for how in ("with", "without"):
            async with open_websocket_url(workers.ws_url) as first:
                created = await recv(first)
                seen.add(created["instance_id"])
                await drop(first)
                url = workers.ws_url + (f"?instance={created['instance_id']}" if how == "with" else "")
                async with open_websocket_url(url) as second:
                    await recv(second)
                    await second.send_message(
                        json.dumps(
                            {
                                "type": "session.resume",
                                "session_id": created["session_id"],
                                "resume_token": created["resume_token"],
                                "last_seq": 1,
                                "request_id": f"r{attempt}",
                            }
                        )
                    )
                    answer = await recv(second)
                    outcomes[how].append(answer.get("reason", answer["type"]))
                    if answer["type"] == "error":
                        assert answer["instance_id"] == created["instance_id"]
    assert seen == {"w-0", "w-1"}
    assert outcomes["with"] == ["session.resumed"] * ATTEMPTS
    assert set(outcomes["without"]) == {"session.resumed", "wrong_instance"}


async def test_the_workers_share_the_http_port(workers: ServerProcess) -> None:
    """The HTTP API answers on the shared port (whichever worker takes the connection)."""
    async with httpx.AsyncClient(base_url=workers.http_url) as http:
        for _ in range(4):
            assert (await http.get("/healthz")).json() == {"status": "ok"}
