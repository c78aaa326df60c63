"""Shared fixtures: a real trio-voice server on port 0 with fake engines, and a protocol-checking client."""

from __future__ import annotations

import functools
import json
import os
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import attrs
import jsonschema
import pytest
import trio
from hypothesis import HealthCheck, settings
from trio_websocket import WebSocketConnection, open_websocket_url

from tests.postgres import fresh_schema
from trio_voice.config import Config
from trio_voice.engines import Engines
from trio_voice.lifecycle import Shutdown
from trio_voice.server import Listening, serve
from trio_voice.storage import open_store
from trio_voice.telemetry import Telemetry
from trio_voice.testing import FakeLLM, FakeTTS

SERVER_SCHEMA = json.loads((Path(__file__).parent.parent / "protocol/schema/server.schema.json").read_text())


@functools.cache
def server_validator() -> jsonschema.protocols.Validator:
    return jsonschema.Draft202012Validator(SERVER_SCHEMA)


# Every socket test runs under this bound, so a hang fails fast instead of stalling CI.
IO_TIMEOUT = 20.0


@attrs.define
class RunningServer:
    listening: Listening
    engines: Engines
    config: Config
    telemetry: Telemetry

    @property
    def ws_url(self) -> str:
        return self.listening.ws_url

    @property
    def http_url(self) -> str:
        return self.listening.http_url


@asynccontextmanager
async def run_server(
    tmp_path: Path,
    engines: dict[str, Any] | None = None,
    *,
    shutdown: Shutdown | None = None,
    shared: Callable[[Any], Any] | None = None,
    **config: Any,
) -> AsyncIterator[RunningServer]:
    """A real server on loopback port 0 with fake engines (overridable, the store too), torn down on exit.

    ``shared(store)``, when given, builds the server's shared state (a test's own clock, say)."""
    cfg = Config(**({"data_dir": tmp_path, "ws_port": 0, "http_port": 0, "heartbeat_interval": 0} | config))
    parts = {"llm": FakeLLM(), "tts": FakeTTS()} | dict(engines or {})
    async with open_store(cfg.store_location) as store, trio.open_nursery() as nursery:
        bundle = Engines(**({"store": store} | parts))
        telemetry = Telemetry()
        state = shared(store) if shared is not None else None
        listening = await nursery.start(
            partial(serve, cfg, engines=bundle, telemetry=telemetry, shutdown=shutdown, shared=state)
        )
        yield RunningServer(listening, bundle, cfg, telemetry)
        nursery.cancel_scope.cancel()


@attrs.define
class Client:
    """A test client that checks the protocol as it reads: seq from 1 without gaps, and every event valid
    against the published JSON Schema (protocol/schema/server.schema.json)."""

    ws: WebSocketConnection
    received: list[dict[str, Any]] = attrs.field(factory=list)

    async def send(self, message: dict[str, Any] | str | bytes) -> None:
        await self.ws.send_message(json.dumps(message) if isinstance(message, dict) else message)

    async def recv(self) -> dict[str, Any]:
        with trio.fail_after(IO_TIMEOUT):
            event = json.loads(await self.ws.get_message())
        server_validator().validate(event)
        expected = len(self.received) + 1
        assert event["seq"] == expected, f"seq {event['seq']} where {expected} was due: {event}"
        self.received.append(event)
        return event

    async def recv_until(self, type_: str, **match: Any) -> list[dict[str, Any]]:
        """Events up to and including the first of ``type_`` whose fields equal ``match``."""
        events = []
        while True:
            event = await self.recv()
            events.append(event)
            if event["type"] == type_ and all(event.get(k) == v for k, v in match.items()):
                return events

    async def reply(self, message: dict[str, Any]) -> list[dict[str, Any]]:
        """Send a message that starts a reply; return that reply's events up to its response.done."""
        await self.send(message)
        events = await self.recv_until("response.created")
        response_id = events[-1]["response_id"]
        return [events[-1], *await self.recv_until("response.done", response_id=response_id)]

    async def expect_quiet(self, seconds: float = 0.3) -> None:
        """Nothing more arrives for a while (a stale event would)."""
        with trio.move_on_after(seconds):
            extra = await self.ws.get_message()
            raise AssertionError(f"unexpected event: {extra[:300]}")


@asynccontextmanager
async def connect(url: str, *, created: bool = True) -> AsyncIterator[Client]:
    """Open a WebSocket to the server; by default, read and check session.created first."""
    async with open_websocket_url(url) as ws:
        client = Client(ws)
        if created:
            event = await client.recv()
            assert event["type"] == "session.created"
        yield client


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a fresh schema of its own, dropped after the test."""
    with fresh_schema() as url:
        yield url


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[RunningServer]:
    async with run_server(tmp_path) as running:
        yield running


# Hypothesis: a bounded number of examples per property so the normal suite stays fast; more on demand
# (TRIO_VOICE_HYPOTHESIS_EXAMPLES=20000). No deadline: tests never assert wall-clock speed, and this
# machine's two cores are shared.
settings.register_profile(
    "trio-voice",
    max_examples=int(os.environ.get("TRIO_VOICE_HYPOTHESIS_EXAMPLES", "200")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("trio-voice")
