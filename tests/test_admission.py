"""Load-aware admission: new sessions refused while the models are behind, not only at max_sessions."""

from __future__ import annotations

import json

from trio_websocket import open_websocket_url

from tests.conftest import connect, run_server
from tests.test_limits import closed_with
from trio_voice.admission import RETRY_FULL_MS, RETRY_LOADED_MS, RecentWaits, refusal


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_p90_of_recent_waits_decides_and_old_ones_are_forgotten() -> None:
    """Over the bound at p90 refuses (with the load retry hint); past the window the waits no longer count;
    max_sessions refuses first, with its own hint; 0 turns the load check off."""
    clock = Clock()
    waits = RecentWaits(window=10.0, clock=clock)
    for _ in range(8):
        waits.observe(0.05)
    for _ in range(2):
        waits.observe(3.0)
    assert waits.percentile(0.9) == 3.0
    loaded = refusal(open_sessions=1, max_sessions=10, waits=waits, max_wait_ms=1000)
    assert loaded is not None and loaded.retry_after_ms == RETRY_LOADED_MS and "3000 ms" in loaded.message
    assert refusal(open_sessions=1, max_sessions=10, waits=waits, max_wait_ms=0) is None
    full = refusal(open_sessions=10, max_sessions=10, waits=waits, max_wait_ms=1000)
    assert full is not None and full.retry_after_ms == RETRY_FULL_MS
    clock.now += 10.5
    assert waits.percentile(0.9) == 0.0
    assert refusal(open_sessions=1, max_sessions=10, waits=waits, max_wait_ms=1000) is None


def test_one_slow_call_among_many_is_not_overload() -> None:
    """A single outlier below the 90th percentile does not refuse anyone."""
    waits = RecentWaits(clock=Clock())
    for _ in range(19):
        waits.observe(0.01)
    waits.observe(5.0)
    assert refusal(open_sessions=0, max_sessions=10, waits=waits, max_wait_ms=1000) is None


async def test_a_loaded_server_refuses_new_sessions_with_1013_and_keeps_the_open_ones(tmp_path) -> None:
    """With model calls measured waiting 2 s, a new connection gets server_full with retry_after_ms and
    close 1013, while a session opened before goes on answering."""
    async with run_server(tmp_path, admission_queue_wait_ms=500) as server, connect(server.ws_url) as before:
        for _ in range(10):
            server.telemetry.observe_queue_wait("stt", 2.0)
        async with open_websocket_url(server.ws_url) as ws:
            event = json.loads(await ws.get_message())
            assert (event["type"], event["code"], event["retry_after_ms"]) == ("error", "server_full", 2000)
            assert "wait 2000 ms" in event["message"]
            assert await closed_with(ws) == 1013
        done = await before.reply({"type": "message.create", "text": "still here?"})
        assert done[-1]["status"] == "completed"
