"""The HTTP listener's status endpoints, auth, routing and static files, against a real server on port 0."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from prometheus_client import CONTENT_TYPE_LATEST

from tests.conftest import IO_TIMEOUT, RunningServer, connect, run_server
from trio_voice.http.static import content_type, find_static, safe_parts
from trio_voice.testing import FakeLLM


def http_client(running: RunningServer, **kwargs) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=running.http_url, timeout=IO_TIMEOUT, trust_env=False, **kwargs)


async def test_healthz_answers_ok(server: RunningServer) -> None:
    """/healthz says ok while the process serves."""
    async with http_client(server) as http:
        response = await http.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_readyz_is_ready_with_a_reachable_llm(server: RunningServer) -> None:
    """/readyz is 200 with every check ok when the engines are loaded and the LLM answers."""
    async with http_client(server) as http:
        response = await http.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"ready": True, "checks": {"llm": "ok", "tts": "ok", "stt": "disabled"}}


async def test_readyz_is_503_when_the_llm_is_unreachable(tmp_path: Path) -> None:
    """/readyz is 503 with the LLM's error code as the reason when the LLM cannot be reached."""
    async with (
        run_server(tmp_path, {"llm": FakeLLM(unreachable=True)}) as running,
        http_client(running) as http,
    ):
        response = await http.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["ready"] is False
    assert body["checks"]["llm"] == "llm_unreachable"
    assert len(body["reasons"]) == 1 and body["reasons"][0].startswith("llm: llm_unreachable")


async def test_metrics_render_prometheus_text(server: RunningServer) -> None:
    """/metrics answers the Prometheus exposition format with the server's own metrics."""
    server.telemetry.error("invalid_json")
    async with http_client(server) as http:
        response = await http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"] == CONTENT_TYPE_LATEST
    assert "trio_voice_sessions_open 0.0" in response.text
    assert 'trio_voice_errors_total{code="invalid_json"} 1.0' in response.text


async def test_sessions_lists_the_open_websocket_sessions(server: RunningServer) -> None:
    """/v1/sessions shows a connected WebSocket session with its ids and state."""
    async with connect(server.ws_url) as client, http_client(server) as http:
        created = client.received[0]
        response = await http.get("/v1/sessions")
    assert response.status_code == 200
    [session] = response.json()["sessions"]
    assert session["session_id"] == created["session_id"]
    assert session["conversation_id"] == created["conversation_id"]
    assert session["state"] == "idle"


async def test_stats_include_health_and_session_counts(server: RunningServer) -> None:
    """/v1/stats gives the telemetry window and the open sessions by state."""
    async with connect(server.ws_url), http_client(server) as http:
        response = await http.get("/v1/stats")
    body = response.json()
    assert response.status_code == 200
    assert body["health"] == "unknown"  # no turns yet
    assert body["sessions_open"] == 1
    assert body["sessions"] == {"open": 1, "max": server.config.max_sessions, "by_state": {"idle": 1}}


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}])
async def test_protected_endpoint_refuses_missing_or_wrong_token(
    tmp_path: Path, headers: dict[str, str]
) -> None:
    """Without the right token a protected endpoint answers 401 with WWW-Authenticate: Bearer."""
    async with run_server(tmp_path, tokens=("s3cret",)) as running, http_client(running) as http:
        response = await http.get("/metrics", headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json()["error"]["code"] == "unauthorized"


@pytest.mark.parametrize("how", ["header", "query"])
async def test_protected_endpoint_accepts_token_in_header_or_query(tmp_path: Path, how: str) -> None:
    """The token works as a bearer header and as ?token= (for browsers)."""
    async with run_server(tmp_path, tokens=("s3cret",)) as running, http_client(running) as http:
        if how == "header":
            response = await http.get("/v1/stats", headers={"Authorization": "Bearer s3cret"})
        else:
            response = await http.get("/v1/stats", params={"token": "s3cret"})
    assert response.status_code == 200


async def test_health_checks_need_no_token(tmp_path: Path) -> None:
    """/healthz and /readyz stay public when tokens are configured."""
    async with run_server(tmp_path, tokens=("s3cret",)) as running, http_client(running) as http:
        assert (await http.get("/healthz")).status_code == 200
        assert (await http.get("/readyz")).status_code == 200


async def test_unknown_path_and_wrong_method_answer_json_errors(server: RunningServer) -> None:
    """A path with no endpoint is 404 not_found; a known path with another method is 405."""
    async with http_client(server) as http:
        missing = await http.post("/v1/nothing-here")
        wrong = await http.post("/healthz")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    assert wrong.status_code == 405 and wrong.json()["error"]["code"] == "method_not_allowed"


async def test_static_files_outside_the_package_dir_are_not_served(server: RunningServer) -> None:
    """An encoded ``..`` path cannot reach files outside trio_voice/static."""
    async with http_client(server) as http:
        response = await http.get("/%2e%2e/__init__.py")
    assert response.status_code == 404


def test_static_lookup_serves_index_and_refuses_escapes(tmp_path: Path) -> None:
    """``/`` finds index.html; dot segments, hidden files and backslashes find nothing."""
    (tmp_path / "index.html").write_text("<h1>hi</h1>")
    (tmp_path / "app.js").write_text("1")
    (tmp_path / ".secret").write_text("x")
    assert find_static("/", tmp_path) == tmp_path / "index.html"
    assert find_static("/app.js", tmp_path) == tmp_path / "app.js"
    for path in ("/../index.html", "/%2e%2e/x", "/.secret", "/a\\b", "/sub/", "/missing.js"):
        assert find_static(path, tmp_path) is None, path
    assert safe_parts("/a/../b") is None


def test_static_content_types_are_explicit() -> None:
    """Pages, scripts and styles get their content types with a charset."""
    assert content_type("index.html") == "text/html; charset=utf-8"
    assert content_type("app.js") == "text/javascript; charset=utf-8"
    assert content_type("style.css") == "text/css; charset=utf-8"
    assert content_type("blob") == "application/octet-stream"


async def test_client_config_tells_where_the_websocket_listens(tmp_path) -> None:
    """/v1/config is public and names the real WebSocket port, even when the server was asked for port 0."""
    async with run_server(tmp_path, tokens=("t",)) as server, httpx.AsyncClient() as http:
        response = await http.get(server.http_url + "/v1/config")
    assert response.status_code == 200
    assert response.json() == {
        "ws_port": server.listening.ws_port,
        "ws_path": "/v1/voice",
        "auth_required": True,
    }
