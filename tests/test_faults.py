"""Fault tests: the real LLM client against misbehaving LLM servers, and the embedded LLM child killed mid-reply.

Each fault must fail one reply cleanly (an ``error`` event, then ``response.done`` failed with the
fault's code), leave the server serving, let the next reply in the same session complete, and be
counted in ``/metrics``.
"""

from __future__ import annotations

import math
import os
import signal
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from tests.conftest import IO_TIMEOUT, RunningServer, connect, run_server
from tests.llm_servers import RecordedRequest, ScriptedReply, open_fake_llm, refused_url
from trio_voice.config import Config
from trio_voice.engines import Engines
from trio_voice.errors import ModelPreparationError
from trio_voice.llm import EmbeddedLLMStats, LLMClient, make_http_client
from trio_voice.server import serve
from trio_voice.storage import open_store
from trio_voice.telemetry import Telemetry
from trio_voice.testing import FakeTTS

GOOD = ScriptedReply(tokens=("Hello", " there", ", friend", "."))


def first_request_misbehaves(bad: ScriptedReply) -> Callable[[RecordedRequest], ScriptedReply]:
    """A script: the server's first chat request gets ``bad``, every later one a good reply."""
    seen: list[RecordedRequest] = []

    def script(request: RecordedRequest) -> ScriptedReply:
        seen.append(request)
        return bad if len(seen) == 1 else GOOD

    return script


# fault -> (the first request's script, or None for "nothing listens yet"; the error code; config)
FAULTS: dict[str, tuple[ScriptedReply | None, str, dict[str, Any]]] = {
    "refused": (None, "llm_unreachable", {}),
    "stalls_before_first_token": (
        ScriptedReply(first_token_delay=math.inf),
        "llm_timeout",
        {"llm_first_token_timeout": 0.5},
    ),
    "dies_mid_stream": (ScriptedReply(tokens=GOOD.tokens, die_after=2), "llm_stream_broken", {}),
}


async def metrics_text(running: RunningServer) -> str:
    async with httpx.AsyncClient(base_url=running.http_url, timeout=IO_TIMEOUT, trust_env=False) as http:
        response = await http.get("/metrics")
    assert response.status_code == 200
    return response.text


@pytest.mark.parametrize("fault", FAULTS)
async def test_llm_fault_fails_one_reply_and_the_next_works(tmp_path: Path, fault: str) -> None:
    """A refused, stalled or dying LLM fails one reply with its code; the next reply works; /metrics counts it."""
    bad, code, config = FAULTS[fault]
    script = first_request_misbehaves(bad) if bad is not None else GOOD
    async with open_fake_llm(script) as fake_llm, make_http_client(trust_env=False) as http:
        llm = LLMClient(http, base_url=fake_llm.base_url if bad is not None else refused_url(), model="fake")
        async with run_server(tmp_path, {"llm": llm}, **config) as running, connect(running.ws_url) as client:
            first = await client.reply({"type": "message.create", "text": "first"})
            if bad is None:
                llm.base_url = fake_llm.base_url  # the LLM server comes up
            second = await client.reply({"type": "message.create", "text": "second"})
            metrics = await metrics_text(running)
    assert [e["code"] for e in first if e["type"] == "error"] == [code], first
    assert (first[-1]["status"], first[-1]["reason"]) == ("failed", code)
    assert (second[-1]["status"], second[-1]["reason"], second[-1]["text"]) == (
        "completed",
        None,
        "Hello there, friend.",
    )
    assert f'trio_voice_errors_total{{code="{code}"}} 1.0' in metrics
    assert f'trio_voice_turns_total{{reason="{code}",status="failed"}} 1.0' in metrics


async def test_stalled_llm_stream_is_closed_when_the_reply_times_out(tmp_path: Path) -> None:
    """When the first-token deadline fails a reply, its HTTP stream to the LLM server is closed too."""
    script = first_request_misbehaves(ScriptedReply(first_token_delay=math.inf))
    async with open_fake_llm(script) as fake_llm, make_http_client(trust_env=False) as http:
        llm = LLMClient(http, base_url=fake_llm.base_url, model="fake")
        async with run_server(tmp_path, {"llm": llm}, llm_first_token_timeout=0.5) as running:
            async with connect(running.ws_url) as client:
                await client.reply({"type": "message.create", "text": "first"})
                with trio.fail_after(IO_TIMEOUT):
                    await fake_llm.disconnected.wait()


# --- the embedded llama.cpp server, killed mid-reply -------------------------------------------------


@asynccontextmanager
async def server_with_embedded_llm(tmp_path: Path) -> AsyncIterator[tuple[RunningServer, EmbeddedLLMStats]]:
    """The whole server with the real embedded LLM child (small: one slot) and a fake TTS."""
    from trio_voice.llm.embedded import llama_server_path, serve_embedded_llm

    try:
        llama_server_path()
    except ModelPreparationError as exc:
        pytest.skip(f"the llama-server binary is not installed yet: {exc}")
    config = Config(
        data_dir=tmp_path,
        ws_port=0,
        http_port=0,
        heartbeat_interval=0,
        llama_parallel=1,
        llama_ctx_per_slot=1024,
        llama_restart_backoff=(0.1, 1.0),
        llm_max_tokens=60,
    )
    stats = EmbeddedLLMStats()
    telemetry = Telemetry()
    telemetry.watch_llm_restarts(lambda: stats.restarts)
    async with open_store(config.database) as store, make_http_client(trust_env=False) as http:
        async with trio.open_nursery() as nursery:
            with trio.fail_after(config.llama_ready_timeout):
                base_url = await nursery.start(partial(serve_embedded_llm, config, stats))
            llm = LLMClient(http, base_url=base_url, model=config.llm_model, max_tokens=config.llm_max_tokens)
            engines = Engines(llm=llm, tts=FakeTTS(), store=store)
            listening = await nursery.start(partial(serve, config, engines=engines, telemetry=telemetry))
            yield RunningServer(listening, engines, config, telemetry), stats
            nursery.cancel_scope.cancel()


@pytest.mark.models
async def test_killed_llm_child_fails_the_reply_restarts_and_the_next_reply_works(tmp_path: Path) -> None:
    """SIGKILL of llama-server mid-reply fails that reply cleanly; the child restarts; the next reply completes."""
    async with server_with_embedded_llm(tmp_path) as (running, stats), connect(running.ws_url) as client:
        await client.send({"type": "message.create", "text": "Tell me a long story about a lighthouse."})
        events = await client.recv_until("response.text.delta")
        assert stats.pid is not None
        os.kill(stats.pid, signal.SIGKILL)
        events += await client.recv_until("response.done", response_id=events[-1]["response_id"])
        done = events[-1]
        assert done["status"] == "failed" and done["reason"].startswith("llm_"), done
        assert [e["code"] for e in events if e["type"] == "error"] == [done["reason"]]

        with trio.fail_after(running.config.llama_ready_timeout):
            await stats.wait_until(lambda s: s.ready and s.restarts == 1)
        again = await client.reply({"type": "message.create", "text": "Say hello."})
        assert again[-1]["status"] == "completed" and again[-1]["text"], again[-1]
        metrics = await metrics_text(running)
    assert "trio_voice_llm_child_restarts 1.0" in metrics
    assert f'trio_voice_errors_total{{code="{done["reason"]}"}} 1.0' in metrics
