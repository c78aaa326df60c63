"""Test helper: `trio-voice serve` (or another server entry point) as a subprocess, as a user starts it.

Started with its command line, ready when it prints ``trio-voice ready: WS_URL  HTTP_URL/``, stopped
with SIGTERM (then killed). Its stdout is drained by a thread so a chatty server never blocks; stderr
goes to a log file the failure messages point at.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import threading
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SERVER_START_TIMEOUT = 180.0  # a cold start loads three models and starts llama-server


class ServerProcess:
    """A server subprocess: started, its ready line parsed, stopped with SIGTERM (then killed)."""

    def __init__(self, argv: list[str], log: Path) -> None:
        self._log = log.open("wb")
        self.proc = subprocess.Popen(
            argv,
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=self._log,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.log = log
        lines: queue.Queue[bytes] = queue.Queue()

        def read_lines() -> None:  # stdout must keep draining, or a chatty server would block on it
            for line in self.proc.stdout:
                lines.put(line)
            lines.put(b"")  # the server exited

        threading.Thread(target=read_lines, daemon=True).start()
        try:
            line = lines.get(timeout=SERVER_START_TIMEOUT).decode()
        except queue.Empty:
            self.stop()
            raise AssertionError(f"no ready line within {SERVER_START_TIMEOUT} s; see {log}") from None
        if not line:
            self.stop()
            raise AssertionError(f"the server exited ({self.proc.returncode}) before it was ready; see {log}")
        match = re.match(r"trio-voice ready: (\S+)\s+(\S+?)/?$", line.strip())
        if match is None:
            self.stop()
            raise AssertionError(f"unexpected first line {line!r}; see {log}")
        self.ws_url, self.http_url = match.groups()

    def stop(self) -> int:
        """SIGTERM, wait, and return the exit code (killing the server if it does not exit)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode
