"""Building realtime server events: a fresh ``event_id`` on each, beta renames, the ``error`` event.

Every server event is built here as a plain ``dict`` (what ``json.dumps`` writes, and what the tests
validate against the ``openai`` SDK's types) in the GA dialect; ``Frames.for_dialect`` then renames
the events the beta dialect spells differently and drops the ones it does not have.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from . import codes


class Frames:
    """Makes the server events of one connection: ``dialect``, and ids from ``new_id("event")``."""

    def __init__(self, new_id: Callable[[str], str], dialect: str) -> None:
        self._new_id = new_id
        self.dialect = dialect

    @property
    def beta(self) -> bool:
        return self.dialect == codes.BETA

    def event(self, type_: str, **fields: Any) -> dict[str, Any]:
        return {"type": type_, "event_id": self._new_id("event"), **fields}

    def for_dialect(self, frames: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Rename GA events for the beta dialect, dropping those it does not have."""
        if not self.beta:
            return frames
        out = []
        for frame in frames:
            if frame["type"] in codes.BETA_EVENT_NAMES:
                renamed = codes.BETA_EVENT_NAMES[frame["type"]]
                if renamed is None:
                    continue
                frame["type"] = renamed
            out.append(frame)
        return out

    def error(
        self,
        code: str,
        message: str,
        *,
        event_id: str | None,
        param: str | None = None,
        error_type: str | None = None,
    ) -> dict[str, Any]:
        """An ``error`` event. trio-voice's own codes are given their realtime spelling where one exists,
        and typed ``server_error`` when they are the server's fault."""
        code = codes.NATIVE_CODES.get(code, code)
        if error_type is None:
            error_type = (
                codes.SERVER_ERROR if code in codes.SERVER_SIDE_CODES else codes.INVALID_REQUEST_ERROR
            )
        error = {"type": error_type, "code": code, "message": message, "param": param, "event_id": event_id}
        return self.event("error", error=error)


def encode(frame: dict[str, Any]) -> str:
    """One server event as the text of one WebSocket frame."""
    return json.dumps(frame, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
