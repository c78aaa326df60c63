"""Resuming a streamed reply (SSE) with Last-Event-ID, against a real server on port 0 with fake engines."""

from __future__ import annotations

from typing import Any

import httpx
import trio

from tests.conftest import IO_TIMEOUT, run_server
from trio_voice.http.streaming import parse_sse_with_ids
from trio_voice.testing import FakeLLM, FakeStore, FakeTTS


def long_reply(_messages: object) -> str:
    return " ".join(f"Sentence number {n} is here." for n in range(12))


def http_client(server) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=server.http_url, timeout=IO_TIMEOUT, trust_env=False)


async def read_until(http: httpx.AsyncClient, body: dict, stop: Any) -> tuple[list, dict[str, str]]:
    """POST a stream and read events until ``stop(events)``; then hang up (the connection is closed)."""
    events: list[tuple[str, dict, str | None]] = []
    async with http.stream("POST", "/v1/chat/stream", json=body) as response:
        assert response.status_code == 200
        buffer = ""
        async for chunk in response.aiter_text():
            buffer += chunk
            complete, _, buffer = buffer.rpartition("\n\n")
            if complete:
                events += parse_sse_with_ids(complete + "\n\n")
            if stop(events):
                return events, dict(response.headers)
    raise AssertionError("the stream ended before the stop condition")


async def wait_turn_stored(store: FakeStore) -> None:
    with trio.fail_after(IO_TIMEOUT):
        while not store.turns:  # noqa: ASYNC110 - the store has no event to await
            await trio.sleep(0.01)


async def test_an_sse_stream_resumed_with_last_event_id_misses_nothing(tmp_path) -> None:
    """Hung up mid-reply and resumed with Last-Event-ID within the TTL: every missed event arrives once,
    seq goes on, every event has an id, the reply completes and is stored once."""
    store = FakeStore()
    llm = FakeLLM(reply=long_reply, token_delay=0.01)
    tts = FakeTTS(delay=lambda text: 0.02)
    async with (
        run_server(tmp_path, {"llm": llm, "tts": tts, "store": store}) as server,
        http_client(server) as http,
    ):
        first, headers = await read_until(
            http,
            {"text": "tell me", "audio": True},
            lambda events: any(obj["type"] == "response.audio.delta" for _, obj, _ in events),
        )
        stream_id = headers["x-stream-id"]
        assert all(event_id == f"{stream_id}:{obj['seq']}" for _, obj, event_id in first)
        last_id = first[-1][2]
        resumed = await http.get("/v1/chat/stream", headers={"last-event-id": last_id})
        assert resumed.status_code == 200 and resumed.headers["x-stream-id"] == stream_id
        rest = parse_sse_with_ids(resumed.text)

    objs = [obj for _, obj, _ in first + rest]
    assert [obj["seq"] for obj in objs] == list(range(1, len(objs) + 1))
    assert rest[0][1]["seq"] == first[-1][1]["seq"] + 1
    assert all(name == obj["type"] for name, obj, _ in first + rest)
    done = objs[-1]
    assert done["type"] == "response.done" and done["status"] == "completed"
    assert (
        "".join(o["delta"] for o in objs if o["type"] == "response.text.delta")
        == done["text"]
        == long_reply(None)
    )
    assert [(t["status"], t["response_id"]) for t in store.turns] == [("completed", done["response_id"])]
    [messages] = store.conversations.values()
    assert [(m.role, m.interrupted) for m in messages] == [("user", False), ("assistant", False)]


async def test_an_sse_resume_after_the_ttl_fails_and_the_reply_was_cancelled(tmp_path) -> None:
    """Past resume_ttl the stream is gone: its reply was cancelled (client_disconnected), and a resume
    is answered 409 resume_failed, reason session_expired."""
    store = FakeStore()
    llm = FakeLLM(reply=long_reply, token_delay=0.05)
    async with (
        run_server(tmp_path, {"llm": llm, "store": store}, resume_ttl=0.2) as server,
        http_client(server) as http,
    ):
        first, _ = await read_until(http, {"text": "tell me"}, lambda events: len(events) >= 3)
        await wait_turn_stored(store)
        assert [(t["status"], t["reason"]) for t in store.turns] == [("cancelled", "client_disconnected")]
        late = await http.get("/v1/chat/stream", headers={"last-event-id": first[-1][2]})
        error = late.json()["error"]
        assert (late.status_code, error["code"], error["reason"]) == (409, "resume_failed", "session_expired")


async def test_an_sse_replay_overflow_is_reported(tmp_path) -> None:
    """Asking for events the replay buffer let go (they were written to the dropped connection) is a
    409 resume_failed, reason replay_overflow; from the last event received, the stream resumes."""
    llm = FakeLLM(reply=long_reply, token_delay=0.01)
    async with (
        run_server(tmp_path, {"llm": llm}, replay_buffer_events=16) as server,
        http_client(server) as http,
    ):
        first, headers = await read_until(http, {"text": "tell me"}, lambda events: len(events) >= 20)
        stream_id = headers["x-stream-id"]
        old = await http.get("/v1/chat/stream", params={"last_event_id": f"{stream_id}:1"})
        error = old.json()["error"]
        assert (old.status_code, error["code"], error["reason"]) == (409, "resume_failed", "replay_overflow")
        resumed = await http.get("/v1/chat/stream", headers={"last-event-id": first[-1][2]})
        rest = parse_sse_with_ids(resumed.text)
        assert rest[0][1]["seq"] == first[-1][1]["seq"] + 1 and rest[-1][1]["type"] == "response.done"


async def test_bad_or_unknown_last_event_ids_are_refused(tmp_path) -> None:
    """A malformed Last-Event-ID is 400 invalid_field; an unknown stream 409 resume_failed unknown_session."""
    async with run_server(tmp_path) as server, http_client(server) as http:
        missing = await http.get("/v1/chat/stream")
        assert (missing.status_code, missing.json()["error"]["code"]) == (400, "invalid_field")
        unknown = await http.get("/v1/chat/stream", headers={"last-event-id": "strm_nope:3"})
        assert unknown.status_code == 409 and unknown.json()["error"]["reason"] == "unknown_session"


async def test_http_reply_controls_pause_resume_and_cancel_a_streamed_reply(tmp_path) -> None:
    """POST /v1/responses/{id}/pause holds a streamed reply, …/resume sends it on, …/cancel ends it; an
    unknown id is 404 response_not_found."""
    llm = FakeLLM(reply=long_reply, token_delay=0.01)
    async with run_server(tmp_path, {"llm": llm}) as server, http_client(server) as http:
        events: list[dict] = []
        async with http.stream("POST", "/v1/chat/stream", json={"text": "tell me"}) as response:
            buffer = ""
            async for chunk in response.aiter_text():
                buffer += chunk
                complete, _, buffer = buffer.rpartition("\n\n")
                fresh = [obj for _, obj, _ in parse_sse_with_ids(complete + "\n\n")] if complete else []
                events += fresh
                if any(obj["type"] == "response.created" for obj in fresh):
                    rid = events[0]["response_id"]
                    paused = await http.post(f"/v1/responses/{rid}/pause")
                    assert paused.json() == {"response_id": rid, "paused": True}
                    assert (await http.post(f"/v1/responses/{rid}/resume")).json()["paused"] is False
                if len(events) == 6:
                    assert (await http.post(f"/v1/responses/{rid}/cancel")).json()["cancelled"] is True
        done = events[-1]
        assert (done["type"], done["status"], done["reason"]) == (
            "response.done",
            "cancelled",
            "client_cancelled",
        )
        assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
        missing = await http.post("/v1/responses/resp_nope/pause")
        assert (missing.status_code, missing.json()["error"]["code"]) == (404, "response_not_found")
