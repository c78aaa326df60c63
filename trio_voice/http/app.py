"""The ASGI application of the HTTP listener: requests, responses, the route table, auth and error mapping.

A deliberately small core (no web framework): :class:`Request` wraps one ASGI ``http`` scope with its
``receive``/``send``; handlers are ``async def handler(request, ctx) -> None`` and send their own
response (so streaming handlers need nothing special); :func:`make_app` builds the ASGI callable from a
route table. Endpoint modules (``status``, ``streaming``, ``speech``, ``static``) only declare routes.

Error handling: a handler raises :class:`~trio_voice.errors.RemoteProtocolError` (the client's fault) or
:class:`~trio_voice.errors.EngineError` (a model failed); this module turns it into a JSON error answer
``{"error": {"code": ..., "message": ...}}`` with the status from :data:`STATUS_BY_CODE` (400 for other
client errors, 500 for other engine errors) and counts it in ``trio_voice_errors_total``. Anything
else propagates to hypercorn, which logs it and answers 500 if nothing was sent yet.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import unquote

import attrs

from trio_voice.auth import Identity, identify
from trio_voice.config import Config
from trio_voice.engines import Engines
from trio_voice.errors import EngineError, RemoteProtocolError
from trio_voice.telemetry import Telemetry

logger = logging.getLogger(__name__)

Scope = Mapping[str, Any]
Receive = Callable[[], Awaitable[Mapping[str, Any]]]
Send = Callable[[Mapping[str, Any]], Awaitable[None]]
Handler = Callable[["Request", "AppContext"], Awaitable[None]]

JSON_TYPE = "application/json"

#: HTTP status of each error code an HTTP endpoint can answer (see protocol/http.md).
STATUS_BY_CODE: Mapping[str, int] = {
    "unauthorized": 401,
    "forbidden": 403,
    "not_found": 404,
    "conversation_not_found": 404,
    "response_not_found": 404,
    "recording_not_found": 404,
    "method_not_allowed": 405,
    "resume_failed": 409,
    "request_too_large": 413,
    "unsupported_media_type": 415,
    "queue_full": 429,
    "model_unavailable": 503,
    "unsupported": 503,
}


@attrs.frozen
class AppContext:
    """What every handler may use: the server's config, engines, telemetry and live sessions.

    ``host`` (a ``trio_voice.session_host.SessionHost``) is where streamed replies run and how the user,
    reply and recording endpoints reach shared state; None in an app built without one (those endpoints
    then answer 503 ``unsupported``... see each module).
    """

    config: Config
    engines: Engines
    telemetry: Telemetry
    sessions: Mapping[str, Any]  # session_id -> trio_voice.session_state.SessionState
    host: Any = None


@attrs.frozen
class Route:
    """``path`` may hold ``{name}`` segments (``/v1/users/{user_id}/presence``): each matches one path
    segment, handed to the handler as ``request.params[name]``."""

    method: str
    path: str
    handler: Handler
    public: bool = False  # True: no token needed (health checks, the demo page)

    def match(self, path: str) -> dict[str, str] | None:
        """The path parameters if ``path`` is this route's, else None."""
        mine, theirs = self.path.split("/"), path.split("/")
        if len(mine) != len(theirs):
            return None
        params: dict[str, str] = {}
        for pattern, segment in zip(mine, theirs, strict=True):
            if pattern.startswith("{") and pattern.endswith("}"):
                if not segment:
                    return None
                params[pattern[1:-1]] = unquote(segment)
            elif pattern != segment:
                return None
        return params


class Request:
    """One HTTP request: its scope, and the ASGI ``receive``/``send`` a handler answers through."""

    def __init__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.scope = scope
        self.receive = receive
        self.send = send
        self.method: str = scope["method"]
        self.path: str = scope["path"]
        self.query: str = scope.get("query_string", b"").decode("latin-1")
        self.headers: list[tuple[bytes, bytes]] = list(scope.get("headers", ()))
        self.started = False  # a response head has been sent
        self.params: dict[str, str] = {}  # the route's {name} segments
        self.identity: Identity = Identity()  # who presented the request's token (an operator when public)

    def header(self, name: str) -> str | None:
        wanted = name.lower().encode("latin-1")
        for key, value in self.headers:
            if key.lower() == wanted:
                return value.decode("latin-1")
        return None

    async def body(self, *, limit: int) -> bytes:
        """The whole request body, refusing (``request_too_large``, 413) one over ``limit`` bytes.

        The declared ``Content-Length`` is checked first, so an oversized upload is refused unread.
        """
        declared = self.header("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise _too_large(limit)
        data = bytearray()
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                raise RemoteProtocolError("the client went away while sending", code="client_disconnected")
            data += message.get("body", b"")
            if len(data) > limit:
                raise _too_large(limit)
            if not message.get("more_body", False):
                return bytes(data)

    async def json_object(self, *, limit: int) -> dict[str, Any]:
        """The body as one JSON object (``invalid_json`` otherwise)."""
        body = await self.body(limit=limit)
        try:
            obj = json.loads(body)
        except (ValueError, RecursionError) as exc:
            raise RemoteProtocolError(
                f"the request body is not valid JSON: {exc}", code="invalid_json"
            ) from None
        if not isinstance(obj, dict):
            raise RemoteProtocolError("the request body must be a JSON object", code="invalid_json")
        return obj

    async def start(self, status: int, content_type: str, headers: Iterable[tuple[str, str]] = ()) -> None:
        """Send the response head; the body follows with :meth:`write` (and ends with ``more=False``)."""
        raw = [(b"content-type", content_type.encode("latin-1"))]
        raw += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers]
        self.started = True
        await self.send({"type": "http.response.start", "status": status, "headers": raw})

    async def write(self, data: bytes, *, more: bool = True) -> None:
        await self.send({"type": "http.response.body", "body": data, "more_body": more})

    async def respond(
        self, status: int, body: bytes, content_type: str, headers: Sequence[tuple[str, str]] = ()
    ) -> None:
        """Send a whole response at once."""
        await self.start(status, content_type, [("content-length", str(len(body))), *headers])
        await self.write(body, more=False)

    async def respond_json(self, status: int, obj: Any, headers: Sequence[tuple[str, str]] = ()) -> None:
        await self.respond(status, json.dumps(obj, separators=(",", ":")).encode(), JSON_TYPE, headers)


def _too_large(limit: int) -> RemoteProtocolError:
    return RemoteProtocolError(f"the request body is larger than {limit} bytes", code="request_too_large")


def error_body(code: str, message: str, reason: str | None = None) -> dict[str, Any]:
    error = {"code": code, "message": message}
    if reason is not None:
        error["reason"] = reason
    return {"error": error}


def status_for(exc: RemoteProtocolError | EngineError) -> int:
    default = 400 if isinstance(exc, RemoteProtocolError) else 500
    return STATUS_BY_CODE.get(exc.code, default)


def make_app(
    ctx: AppContext, routes: Sequence[Route], fallback: Handler | None = None
) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    """Build the ASGI application: ``routes`` by exact path, then ``fallback`` for other GETs (static files).

    Every route that is not ``public`` needs a token when tokens are configured (401 with
    ``WWW-Authenticate: Bearer`` otherwise); ``request.identity`` then says whose it is (an operator, or
    one user, who may act only as that user: the handlers check). The fallback is public: it serves the demo page, which must
    load before it can ask the user for a token.
    """
    table: dict[str, dict[str, Route]] = {}
    for route in routes:
        table.setdefault(route.path, {})[route.method] = route
    patterns = [path for path in table if "{" in path]

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return  # no WebSocket here: hypercorn refuses the upgrade when the app does not accept it
        request = Request(scope, receive, send)
        try:
            await _dispatch(request, ctx, table, patterns, fallback)
        except (RemoteProtocolError, EngineError) as exc:
            if exc.code == "client_disconnected":
                return
            ctx.telemetry.error(exc.code)
            if request.started:
                logger.warning("%s %s failed after its answer began: %s", request.method, request.path, exc)
                return
            headers = [("www-authenticate", "Bearer")] if exc.code == "unauthorized" else []
            reason = getattr(exc, "reason", None)
            await request.respond_json(status_for(exc), error_body(exc.code, exc.message, reason), headers)

    return app


async def _dispatch(
    request: Request,
    ctx: AppContext,
    table: Mapping[str, Mapping[str, Route]],
    patterns: Sequence[str],
    fallback: Handler | None,
) -> None:
    methods = table.get(request.path)
    if methods is None:
        for pattern in patterns:
            params = next(iter(table[pattern].values())).match(request.path)
            if params is not None:
                methods, request.params = table[pattern], params
                break
    if methods is None:
        if fallback is not None and request.method in ("GET", "HEAD"):
            await fallback(request, ctx)
            return
        raise RemoteProtocolError(f"no endpoint at {unquote(request.path)}", code="not_found")
    route = methods.get(request.method)
    if route is None:
        allowed = ", ".join(sorted(methods))
        raise RemoteProtocolError(
            f"{request.method} is not allowed here; use {allowed}", code="method_not_allowed"
        )
    if not route.public:
        identity = identify(ctx.config, request.headers, request.query)
        if identity is None:
            raise RemoteProtocolError("missing or wrong bearer token", code="unauthorized")
        request.identity = identity
    await route.handler(request, ctx)


async def _lifespan(receive: Receive, send: Send) -> None:
    """Nothing to set up or tear down: engines belong to the server nursery, not the ASGI app."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
