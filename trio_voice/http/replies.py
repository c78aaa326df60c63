"""Reply controls over HTTP: ``POST /v1/responses/{id}/pause``, ``…/resume`` and ``…/cancel``.

The WebSocket messages ``response.pause``, ``response.resume`` and ``response.cancel`` for clients of the
streaming fallbacks (``/v1/chat/stream``), which cannot send anything up their stream: a second request
names the reply by the ``response_id`` of its ``response.created``. They reach any running reply of this
server, WebSocket replies too, through the map of running replies every ``TurnControl`` keeps current.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from trio_voice.codec.codes import CancelReason
from trio_voice.errors import RemoteProtocolError

from .app import AppContext, Request, Route


def running(ctx: AppContext, response_id: str) -> Any:
    replies: Mapping[str, Any] = ctx.host.services.replies if ctx.host is not None else {}
    handle = replies.get(response_id)
    if handle is None:
        raise RemoteProtocolError(f"no reply {response_id!r} is running", code="response_not_found")
    return handle


async def pause(request: Request, ctx: AppContext) -> None:
    handle = running(ctx, request.params["response_id"])
    handle.pause.pause()
    await request.respond_json(200, {"response_id": handle.response_id, "paused": True})


async def resume(request: Request, ctx: AppContext) -> None:
    handle = running(ctx, request.params["response_id"])
    handle.pause.resume()
    await request.respond_json(200, {"response_id": handle.response_id, "paused": False})


async def cancel(request: Request, ctx: AppContext) -> None:
    handle = running(ctx, request.params["response_id"])
    handle.cancel(CancelReason.CLIENT_CANCELLED)
    await request.respond_json(200, {"response_id": handle.response_id, "cancelled": True})


ROUTES = (
    Route("POST", "/v1/responses/{response_id}/pause", pause),
    Route("POST", "/v1/responses/{response_id}/resume", resume),
    Route("POST", "/v1/responses/{response_id}/cancel", cancel),
)
