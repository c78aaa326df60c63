"""The streaming chat fallbacks (SSE and NDJSON) against a real server: events, validation, disconnects."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import attrs
import httpx
import trio

from tests.conftest import IO_TIMEOUT, RunningServer, connect, run_server
from trio_voice import codec, events
from trio_voice.config import Config
from trio_voice.engines import Engines
from trio_voice.http.streaming import SSE_EVENT_NAMES, parse_sse
from trio_voice.server import serve
from trio_voice.storage import open_store
from trio_voice.telemetry import Telemetry
from trio_voice.testing import FakeLLM, FakeTTS


def http_client(running: RunningServer) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=running.http_url, timeout=IO_TIMEOUT, trust_env=False)


def check_reply_events(objs: list[dict[str, Any]]) -> None:
    """Every event decodes with the codec; seq runs 1, 2, 3, …; response.created first, response.done last."""
    assert [obj["seq"] for obj in objs] == list(range(1, len(objs) + 1))
    for obj in objs:
        codec.decode_server_event(obj)
    assert objs[0]["type"] == "response.created"
    assert objs[-1]["type"] == "response.done"
    assert all(obj["response_id"] == objs[0]["response_id"] for obj in objs if "response_id" in obj)


async def post_sse(
    http: httpx.AsyncClient, body: dict[str, Any]
) -> tuple[httpx.Response, list[tuple[str, dict]]]:
    response = await http.post("/v1/chat/stream", json=body)
    return response, parse_sse(response.text)


async def test_sse_streams_a_whole_reply(server: RunningServer) -> None:
    """SSE carries the reply's events, each named by its type, text only by default."""
    async with http_client(server) as http:
        response, frames = await post_sse(http, {"text": "hello"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert all(name == obj["type"] for name, obj in frames)
    objs = [obj for _, obj in frames]
    check_reply_events(objs)
    types = {obj["type"] for obj in objs}
    assert types == {"response.created", "response.text.delta", "response.phrase", "response.done"}
    done = objs[-1]
    assert done["status"] == "completed" and done["reason"] is None
    assert done["text"] == "".join(o["delta"] for o in objs if o["type"] == "response.text.delta")
    assert done["text"].startswith("You said: hello.")
    assert response.headers["x-conversation-id"]


async def test_ndjson_streams_audio_when_asked(server: RunningServer) -> None:
    """NDJSON carries one event per line, with audio deltas when ``audio`` is true."""
    async with http_client(server) as http:
        response = await http.post("/v1/chat/ndjson", json={"text": "hello", "audio": True})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/x-ndjson"
    objs = [json.loads(line) for line in response.text.splitlines()]
    check_reply_events(objs)
    audio = [codec.decode_server_event(o).event for o in objs if o["type"] == "response.audio.delta"]
    assert audio and all(a.sample_rate == 22050 and a.audio for a in audio)
    assert objs[-1]["metrics"]["first_audio_ms"] is not None


async def test_streamed_events_are_the_websocket_reply_events(server: RunningServer) -> None:
    """The same message gives the same kinds of events, text and phrases over NDJSON as over the WebSocket."""
    async with connect(server.ws_url) as client:
        ws_events = await client.reply({"type": "message.create", "text": "same"})
    async with http_client(server) as http:
        response = await http.post("/v1/chat/ndjson", json={"text": "same", "audio": True})
    http_events = [json.loads(line) for line in response.text.splitlines()]

    def summary(objs: list[dict[str, Any]]) -> tuple[Any, ...]:
        return (
            sorted(o["type"] for o in objs),
            [o["text"] for o in objs if o["type"] == "response.phrase"],
            objs[-1]["text"],
            objs[-1]["status"],
            sum(len(o["audio"]) for o in objs if o["type"] == "response.audio.delta"),
        )

    assert summary(http_events) == summary(ws_events)


def test_sse_event_names_are_the_codec_wire_types() -> None:
    """The SSE ``event:`` names agree with the codec's wire types for every event a stream carries."""
    samples = [
        events.ReplyCreated("r"),
        events.TextDelta("r", "x"),
        events.PhraseReady("r", 0, "x"),
        events.AudioReady("r", 0, b"\0\0", 22050),
        events.ReplyDone("r", "completed", None, "", {}),
        events.ErrorEvent("llm_timeout", "x"),
        events.WarningEvent("tts_failed", "x"),
    ]
    for event in samples:
        assert json.loads(codec.encode_event(event, seq=1))["type"] == SSE_EVENT_NAMES[type(event)]


async def test_a_conversation_continues_across_requests(server: RunningServer) -> None:
    """Passing back X-Conversation-Id gives the LLM the earlier exchange as context."""
    async with http_client(server) as http:
        first, first_frames = await post_sse(http, {"text": "my name is Ada"})
        conversation_id = first.headers["x-conversation-id"]
        second, frames = await post_sse(http, {"text": "what is my name", "conversation_id": conversation_id})
    assert second.headers["x-conversation-id"] == conversation_id
    assert frames[-1][1]["status"] == "completed"
    first_reply = first_frames[-1][1]["text"]
    contents = [m["content"] for m in server.engines.llm.calls[-1]]
    assert contents[1:] == ["my name is Ada", first_reply, "what is my name"]


async def test_unknown_conversation_is_404(server: RunningServer) -> None:
    """A conversation id the server does not have is refused before anything streams."""
    async with http_client(server) as http:
        response = await http.post("/v1/chat/stream", json={"text": "hi", "conversation_id": "conv_nope"})
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "conversation_not_found"


async def test_bad_requests_get_the_websocket_error_codes(tmp_path: Path) -> None:
    """Bad JSON, a missing or unknown field and an overlong text get 400 with the protocol's codes."""
    async with run_server(tmp_path, max_text_chars=10) as running, http_client(running) as http:
        cases = {
            "invalid_json": await http.post("/v1/chat/ndjson", content=b"{nope"),
            "invalid_field": await http.post("/v1/chat/ndjson", json={"txt": "hi"}),
            "text_too_long": await http.post("/v1/chat/ndjson", json={"text": "x" * 11}),
        }
        unknown = await http.post("/v1/chat/ndjson", json={"text": "hi", "colour": "red"})
    for code, response in cases.items():
        assert response.status_code == 400, code
        assert response.json()["error"]["code"] == code
    assert unknown.json()["error"]["code"] == "invalid_field"


async def test_llm_failure_ends_the_stream_with_error_and_failed_done(tmp_path: Path) -> None:
    """An LLM that breaks mid-reply gives an ``error`` event, then ``response.done`` failed with its code."""
    async with (
        run_server(tmp_path, {"llm": FakeLLM(fail_after_tokens=2)}) as running,
        http_client(running) as http,
    ):
        response, frames = await post_sse(http, {"text": "hi"})
    assert response.status_code == 200  # the failure is reported in-stream: the reply had begun
    objs = [obj for _, obj in frames]
    check_reply_events(objs)
    [error] = [o for o in objs if o["type"] == "error"]
    assert error["code"] == "llm_stream_broken"
    assert objs[-1]["status"] == "failed" and objs[-1]["reason"] == "llm_stream_broken"


@attrs.define
class RecordingStore:
    """The real store, plus an event set when a turn's record is stored (the last step of every turn)."""

    store: Any
    turn_recorded: trio.Event = attrs.field(factory=trio.Event)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    async def record_turn(self, *args: Any, **kwargs: Any) -> None:
        await self.store.record_turn(*args, **kwargs)
        self.turn_recorded.set()


@asynccontextmanager
async def server_with_recording_store(
    tmp_path: Path, llm: FakeLLM
) -> AsyncIterator[tuple[RunningServer, RecordingStore]]:
    # resume_ttl 0: a stream whose client hangs up is not kept for a resume (test_stream_resume has those).
    cfg = Config(data_dir=tmp_path, ws_port=0, http_port=0, heartbeat_interval=0, resume_ttl=0)
    async with open_store(cfg.database) as store, trio.open_nursery() as nursery:
        recording = RecordingStore(store)
        bundle = Engines(store=recording, llm=llm, tts=FakeTTS())  # type: ignore[arg-type]
        telemetry = Telemetry()
        listening = await nursery.start(partial(serve, cfg, engines=bundle, telemetry=telemetry))
        yield RunningServer(listening, bundle, cfg, telemetry), recording
        nursery.cancel_scope.cancel()


async def test_client_disconnect_cancels_the_turn(tmp_path: Path) -> None:
    """Hanging up mid-stream (with no resume kept) cancels the reply: the LLM stream ends, the turn is
    stored cancelled, interrupted."""
    llm = FakeLLM(token_delay=3600)  # after the first token, only a cancel can end this reply
    async with server_with_recording_store(tmp_path, llm) as (running, store), http_client(running) as http:
        async with http.stream("POST", "/v1/chat/ndjson", json={"text": "hi"}) as response:
            conversation_id = response.headers["x-conversation-id"]
            async for line in response.aiter_lines():
                if json.loads(line)["type"] == "response.text.delta":
                    break
        with trio.fail_after(IO_TIMEOUT):
            await store.turn_recorded.wait()
        assert llm.active == 0
        [turn] = await store.recent_turns(1)
        assert (turn["status"], turn["reason"]) == ("cancelled", "client_disconnected")
        history = await store.history(conversation_id, limit=10)
        assert [(m.role, m.text, m.interrupted) for m in history] == [
            ("user", "hi", False),
            ("assistant", "You", True),
        ]


async def test_streamed_reply_in_flight_finishes_on_graceful_shutdown(tmp_path: Path) -> None:
    """A shutdown lets an NDJSON reply already streaming run to response.done, and refuses new connections."""
    from trio_voice.lifecycle import Shutdown

    shutdown = Shutdown()
    llm = FakeLLM(token_delay=0.05)
    async with run_server(tmp_path, {"llm": llm}, shutdown=shutdown, shutdown_grace=10.0) as server:
        async with (
            http_client(server) as http,
            http.stream("POST", "/v1/chat/ndjson", json={"text": "hi"}) as response,
        ):
            lines = []
            async for line in response.aiter_lines():
                lines.append(json.loads(line))
                if len(lines) == 3:
                    shutdown.request()
        with trio.fail_after(IO_TIMEOUT):
            while True:
                try:
                    stream = await trio.open_tcp_stream("127.0.0.1", server.listening.http_port)
                except OSError:
                    break
                await stream.aclose()
                await trio.sleep(0.05)
    check_reply_events(lines)
    assert lines[-1]["status"] == "completed"
