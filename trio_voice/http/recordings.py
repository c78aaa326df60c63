"""Session recordings over HTTP: ``GET /v1/sessions/{id}/recording`` and ``…/recording/{file}``.

A recording outlives its session (it is files under ``RECORDINGS/<session_id>/``), so these read the
disk, not the live sessions. An operator may read any; a user token only the recordings of sessions its
user had (``meta.json`` says whose). Files are read in a worker thread.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import trio

from trio_voice.errors import RemoteProtocolError
from trio_voice.recording import describe

from .app import AppContext, Request, Route

# Session ids and file names are ours: letters, digits, _ - . only (no path tricks).
SAFE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
CONTENT_TYPES = {
    ".wav": "audio/wav",
    ".ogg": "audio/ogg",
    ".mp3": "audio/mpeg",
    ".aac": "audio/aac",
    ".jsonl": "application/x-ndjson",
    ".json": "application/json",
}


def recording_dir(request: Request, ctx: AppContext) -> Path:
    """This request's recording directory, once the caller may read it."""
    session_id = request.params["session_id"]
    directory = ctx.config.recordings / session_id
    meta = directory / "meta.json"
    if not SAFE_NAME.match(session_id) or not meta.is_file():
        raise RemoteProtocolError(f"no recording of session {session_id!r}", code="recording_not_found")
    user_id = json.loads(meta.read_text(encoding="utf-8")).get("user_id")
    if not request.identity.operator and request.identity.user_id != user_id:
        raise RemoteProtocolError("this token may not read that recording", code="forbidden")
    return directory


async def listing(request: Request, ctx: AppContext) -> None:
    def read() -> dict[str, Any]:
        return describe(recording_dir(request, ctx))

    await request.respond_json(200, await trio.to_thread.run_sync(read))


async def download(request: Request, ctx: AppContext) -> None:
    name = request.params["name"]

    def read() -> bytes:
        path = recording_dir(request, ctx) / name
        if not SAFE_NAME.match(name) or not path.is_file():
            raise RemoteProtocolError(f"no file {name!r} in that recording", code="recording_not_found")
        return path.read_bytes()

    body = await trio.to_thread.run_sync(read)
    await request.respond(200, body, CONTENT_TYPES.get(Path(name).suffix, "application/octet-stream"))


ROUTES = (
    Route("GET", "/v1/sessions/{session_id}/recording", listing),
    Route("GET", "/v1/sessions/{session_id}/recording/{name}", download),
)
