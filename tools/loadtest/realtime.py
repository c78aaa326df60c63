"""The load-test tool's view of ``/v1/realtime``, sans-I/O: the realtime checker and the event translation.

``RealtimeChecker`` is :class:`~tools.loadtest.checks.ProtocolChecker`'s twin for the OpenAI Realtime
API: it checks what a realtime client can check from the outside (every frame is a JSON object with a
string ``type`` and a unique ``event_id``, every ``response.created`` is closed by exactly one
``response.done``, at most one response runs at a time, nothing of a response follows its
``response.done``), counts each problem as a violation of the same kinds, and returns each event
translated into the native shape the load-test conversation reads (``response.audio.delta`` with its
``audio`` and ``sample_rate``, ``response.done`` with ``status`` and ``reason`` …), so one client script
measures both protocols the same way.

Requests are matched to responses through ``metadata.request_id``, which the load-test client sets on
each ``response.create`` and the server echoes in ``response.created``.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from .checks import (
    BINARY_FRAME,
    DUPLICATE_CREATED,
    DUPLICATE_DONE,
    EVENT_AFTER_DONE,
    EVENT_WITHOUT_CREATED,
    KEPT_EXAMPLES,
    OVERLAPPING_REPLIES,
    REPLY_NOT_DONE,
    UNDECODABLE,
    Violation,
)

DUPLICATE_EVENT_ID = "duplicate_event_id"  # two server events with one event_id
OUTPUT_RATE = 24000  # the realtime API's PCM rate


def _text(done: dict[str, Any]) -> str:
    """The text a finished response carried (its transcript, or its text for a text-only response)."""
    for item in done.get("output") or []:
        for part in item.get("content") or []:
            return part.get("transcript") or part.get("text") or ""
    return ""


def translate(event: dict[str, Any]) -> dict[str, Any]:
    """A realtime server event in the native shape the load-test conversation reads (``type`` only for
    events it has no use for)."""
    type_ = event["type"]
    match type_:
        case "response.created":
            response = event["response"]
            request_id = (response.get("metadata") or {}).get("request_id")
            return {"type": type_, "response_id": response["id"], "request_id": request_id}
        case "response.output_text.delta" | "response.output_audio_transcript.delta":
            return {
                "type": "response.text.delta",
                "response_id": event["response_id"],
                "delta": event["delta"],
            }
        case "response.output_audio.delta":
            return {
                "type": "response.audio.delta",
                "response_id": event["response_id"],
                "audio": event["delta"],
                "sample_rate": OUTPUT_RATE,
            }
        case "response.done":
            response = event["response"]
            details = response.get("status_details") or {}
            error = details.get("error") or {}
            return {
                "type": type_,
                "response_id": response["id"],
                "status": response["status"],
                "reason": details.get("reason") or error.get("code"),
                "text": _text(response),
                "metrics": {},  # the realtime API has no place for trio-voice's stage metrics
            }
        case "error":
            error = event["error"]
            return {"type": type_, "code": error["code"], "request_id": error.get("event_id")}
        case "conversation.item.input_audio_transcription.completed":
            return {"type": "transcript.final", "text": event["transcript"]}
    return {"type": type_}


def _response_id(event: dict[str, Any]) -> str | None:
    if event["type"] in ("response.created", "response.done"):
        return event["response"]["id"]
    return event.get("response_id")


class RealtimeChecker:
    """Checks one realtime session's server frames in arrival order (the ``ProtocolChecker`` interface)."""

    def __init__(self) -> None:
        self.event_ids: set[str] = set()
        self.open_responses: list[str] = []
        self.done_responses: set[str] = set()
        self.counts: Counter[str] = Counter()
        self.examples: list[Violation] = []
        self.events = 0
        # The realtime API has no seq (and no resume): no event can be counted as lost or repeated.
        self.lost_events = 0
        self.duplicate_events = 0

    def _violate(self, kind: str, detail: str) -> None:
        self.counts[kind] += 1
        if len(self.examples) < KEPT_EXAMPLES:
            self.examples.append(Violation(kind, None, detail))

    @property
    def violations(self) -> int:
        return sum(self.counts.values())

    def receive(self, frame: str | bytes) -> dict[str, Any] | None:
        """Check one frame; return it translated (see ``translate``), or ``None`` if it did not decode."""
        if isinstance(frame, bytes):
            self._violate(BINARY_FRAME, f"binary frame of {len(frame)} bytes")
            return None
        try:
            event = json.loads(frame)
            if not isinstance(event, dict) or not isinstance(event.get("type"), str):
                raise ValueError("not an object with a string type")
            if not isinstance(event.get("event_id"), str):
                raise ValueError(f"{event['type']} has no event_id")
            translated = translate(event)
            response_id = _response_id(event)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            self._violate(UNDECODABLE, f"{type(exc).__name__}: {exc}"[:300])
            return None
        self.events += 1
        if event["event_id"] in self.event_ids:
            self._violate(DUPLICATE_EVENT_ID, f"{event['type']} reuses event_id {event['event_id']}")
        self.event_ids.add(event["event_id"])
        if response_id is not None:
            self._check_response(event["type"], response_id)
        return translated

    def _check_response(self, type_: str, rid: str) -> None:
        if type_ == "response.created":
            if rid in self.done_responses or rid in self.open_responses:
                self._violate(DUPLICATE_CREATED, f"response.created again for {rid}")
                return
            if self.open_responses:
                self._violate(OVERLAPPING_REPLIES, f"{rid} created while {self.open_responses} still open")
            self.open_responses.append(rid)
        elif rid in self.done_responses:
            kind = DUPLICATE_DONE if type_ == "response.done" else EVENT_AFTER_DONE
            self._violate(kind, f"{type_} of {rid} after its response.done")
        elif rid not in self.open_responses:
            self._violate(EVENT_WITHOUT_CREATED, f"{type_} of {rid} before its response.created")
        elif type_ == "response.done":
            self.open_responses.remove(rid)
            self.done_responses.add(rid)

    def finish(self) -> None:
        """The session ended normally: every response must be closed."""
        for rid in self.open_responses:
            self._violate(REPLY_NOT_DONE, f"{rid} never got its response.done")
        self.open_responses.clear()
