"""Test helper: a strict realtime client over trio-websocket, for session tests against a real server.

Every frame it reads is checked as ``tests.realtime_pair.ClientView`` checks the codec's output: strictly
against the ``openai`` SDK's own pydantic types (unknown fields or wrong types fail), unique
``event_id``s, and nothing of a response outside its ``response.created`` … ``response.done``.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import attrs
import numpy as np
import trio
from trio_websocket import WebSocketConnection, open_websocket_url

from tests.conftest import IO_TIMEOUT
from tests.realtime_pair import ClientView
from trio_voice.audio import float_to_pcm16
from trio_voice.realtime import codes

RATE = 24000  # the API's PCM rate, both ways
FRAME_S = 0.02


def speech(seconds: float, *, amplitude: float = 0.3, hz: float = 220.0) -> bytes:
    """A tone at 24 kHz: what the fake VAD hears as speech (and the fake recognizer transcribes)."""
    t = np.arange(int(RATE * seconds)) / RATE
    return float_to_pcm16((amplitude * np.sin(2 * np.pi * hz * t)).astype(np.float32))


def silence(seconds: float) -> bytes:
    return bytes(2 * int(RATE * seconds))


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


@attrs.define
class RealtimeClient:
    ws: WebSocketConnection
    view: ClientView
    received: list[dict[str, Any]] = attrs.field(factory=list)

    async def send(self, event: dict[str, Any] | str) -> None:
        await self.ws.send_message(event if isinstance(event, str) else json.dumps(event))

    async def recv(self) -> dict[str, Any]:
        with trio.fail_after(IO_TIMEOUT):
            event = json.loads(await self.ws.get_message())
        self.view.check(event)
        self.received.append(event)
        return event

    async def recv_until(self, type_: str, **match: Any) -> list[dict[str, Any]]:
        """Events up to and including the first of ``type_`` whose fields equal ``match``."""
        out = []
        while True:
            event = await self.recv()
            out.append(event)
            if event["type"] == type_ and all(event.get(k) == v for k, v in match.items()):
                return out

    async def stream(self, pcm: bytes, *, frame_s: float = FRAME_S) -> None:
        """Append ``pcm`` in real-time paced frames, like a microphone."""
        step = int(RATE * frame_s) * 2
        start = trio.current_time()
        for n, offset in enumerate(range(0, len(pcm), step)):
            await self.send({"type": "input_audio_buffer.append", "audio": b64(pcm[offset : offset + step])})
            await trio.sleep_until(start + (n + 1) * frame_s)

    async def expect_quiet(self, seconds: float = 0.3) -> None:
        """Nothing more arrives for a while (a stale event would)."""
        with trio.move_on_after(seconds):
            extra = await self.ws.get_message()
            raise AssertionError(f"unexpected event: {extra[:300]}")


@asynccontextmanager
async def connect_realtime(
    url: str, *, model: str = "gpt-realtime", dialect: str = codes.GA, headers: list | None = None
) -> AsyncIterator[RealtimeClient]:
    """Open a realtime session and read its ``session.created``."""
    extra = list(headers or [])
    if dialect == codes.BETA:
        extra.append(("OpenAI-Beta", "realtime=v1"))
    async with open_websocket_url(f"{url}?model={model}", extra_headers=extra) as ws:
        client = RealtimeClient(ws, ClientView(dialect))
        first = await client.recv()
        assert first["type"] == "session.created", first
        yield client


def types(events: list[dict[str, Any]]) -> list[str]:
    return [event["type"] for event in events]
