"""The demo page and its assets: GET files from the package directory ``trio_voice/static/``.

``/`` serves ``index.html``. Paths are checked segment by segment before they touch the file system
(no ``..``, no hidden files, no backslashes or NULs), so nothing outside that directory can be read.
Public, like the page itself: it asks the user for a token before opening the WebSocket.
"""

from __future__ import annotations

import importlib.resources
import mimetypes
from importlib.resources.abc import Traversable
from urllib.parse import unquote

import trio

from trio_voice.errors import RemoteProtocolError

from .app import AppContext, Request

STATIC_PACKAGE = "trio_voice"
STATIC_DIR = "static"
# Content types that mimetypes may not know on a minimal system, or knows differently.
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".svg": "image/svg+xml",
    ".wasm": "application/wasm",
    ".ico": "image/x-icon",
    ".png": "image/png",
    ".txt": "text/plain; charset=utf-8",
    ".onnx": "application/octet-stream",
}


def safe_parts(path: str) -> list[str] | None:
    """The path's segments under the static root, or None when the path could escape it."""
    decoded = unquote(path)
    if decoded in ("", "/"):
        return ["index.html"]
    parts = decoded.lstrip("/").split("/")
    for part in parts:
        if not part or part.startswith(".") or "\\" in part or "\x00" in part or ":" in part:
            return None
    return parts


def content_type(name: str) -> str:
    suffix = name[name.rfind(".") :].lower() if "." in name else ""
    return CONTENT_TYPES.get(suffix) or mimetypes.guess_type(name)[0] or "application/octet-stream"


def find_static(path: str, root: Traversable | None = None) -> Traversable | None:
    """The static file a URL path names, or None (no such file, a directory, or an unsafe path)."""
    parts = safe_parts(path)
    if parts is None:
        return None
    if root is None:
        root = importlib.resources.files(STATIC_PACKAGE) / STATIC_DIR
    target = root.joinpath(*parts)
    return target if target.is_file() else None


async def serve_static(request: Request, ctx: AppContext) -> None:
    found = await trio.to_thread.run_sync(find_static, request.path)
    if found is None:
        raise RemoteProtocolError(f"no file at {unquote(request.path)}", code="not_found")
    body = await trio.to_thread.run_sync(found.read_bytes)
    headers = [("cache-control", "no-cache"), ("x-content-type-options", "nosniff")]
    if request.method == "HEAD":
        await request.start(200, content_type(found.name), [("content-length", str(len(body))), *headers])
        await request.write(b"", more=False)
        return
    await request.respond(200, body, content_type(found.name), headers)
