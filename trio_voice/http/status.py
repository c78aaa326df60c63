"""Status endpoints: ``/healthz``, ``/readyz``, ``/metrics``, ``/v1/sessions`` and ``/v1/stats``.

``/healthz`` answers as long as the process serves; ``/readyz`` says whether a reply could be made now
(engines loaded, the LLM server answering its cheap GET). Both are public, for load balancers and
orchestrators; the others need a token when tokens are configured.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import trio
from prometheus_client import CONTENT_TYPE_LATEST

from trio_voice.errors import LLMError

from .app import AppContext, Request, Route

# How long /readyz waits for the LLM's answer: a health probe must answer well inside a prober's own
# timeout (Kubernetes defaults to 1 s per probe; most load balancers allow a few seconds).
READY_LLM_TIMEOUT = 2.0


async def healthz(request: Request, ctx: AppContext) -> None:
    await request.respond_json(200, {"status": "ok"})


async def readiness(ctx: AppContext) -> tuple[dict[str, str], list[str]]:
    """The readiness checks (name -> "ok", "disabled" or a problem) and the reasons for not being ready."""
    checks: dict[str, str] = {
        "tts": "ok" if ctx.engines.tts is not None else "missing",
        "stt": "ok" if ctx.engines.stt is not None else "disabled",
    }
    reasons: list[str] = []
    if ctx.engines.tts is None:
        reasons.append("tts: no speech synthesizer loaded")
    with trio.move_on_after(READY_LLM_TIMEOUT) as waited:
        try:
            await ctx.engines.llm.check_ready()
        except LLMError as exc:
            checks["llm"] = exc.code
            reasons.append(f"llm: {exc.code}: {exc.message}")
        else:
            checks["llm"] = "ok"
    if waited.cancelled_caught:
        checks["llm"] = "llm_timeout"
        reasons.append(f"llm: llm_timeout: no answer within {READY_LLM_TIMEOUT} s")
    return checks, reasons


async def readyz(request: Request, ctx: AppContext) -> None:
    checks, reasons = await readiness(ctx)
    if reasons:
        await request.respond_json(503, {"ready": False, "reasons": reasons, "checks": checks})
    else:
        await request.respond_json(200, {"ready": True, "checks": checks})


async def metrics(request: Request, ctx: AppContext) -> None:
    await request.respond(200, ctx.telemetry.render(), CONTENT_TYPE_LATEST)


async def client_config(request: Request, ctx: AppContext) -> None:
    """Where the WebSocket endpoint listens, for the demo page (public: the page asks before it has a token)."""
    body = {
        "ws_port": ctx.config.ws_port,
        "ws_path": "/v1/voice",
        "auth_required": bool(ctx.config.tokens or ctx.config.user_tokens),
    }
    await request.respond_json(200, body)


async def sessions(request: Request, ctx: AppContext) -> None:
    await request.respond_json(200, {"sessions": [state.snapshot() for state in list(ctx.sessions.values())]})


def session_counts(ctx: AppContext) -> dict[str, Any]:
    """Open WebSocket sessions by activity (idle, responding, listening), and the configured maximum."""
    by_state = Counter(state.activity for state in list(ctx.sessions.values()))
    return {"open": len(ctx.sessions), "max": ctx.config.max_sessions, "by_state": dict(by_state)}


async def stats(request: Request, ctx: AppContext) -> None:
    await request.respond_json(200, {**ctx.telemetry.stats(), "sessions": session_counts(ctx)})


ROUTES = (
    Route("GET", "/healthz", healthz, public=True),
    Route("GET", "/v1/config", client_config, public=True),
    Route("GET", "/readyz", readyz, public=True),
    Route("GET", "/metrics", metrics),
    Route("GET", "/v1/sessions", sessions),
    Route("GET", "/v1/stats", stats),
)
