"""The protocol checker of the load-test tool, sans-I/O: server frames in, decoded events and violations out.

It checks what a client can check from the outside (``protocol/README.md``, "Frames and envelope" and
"Ordering guarantees"): every frame decodes with the project's codec, ``seq`` counts 1, 2, 3 … with no
gap, every ``response.created`` is closed by exactly one ``response.done``, at most one reply runs at a
time, and no event of a reply follows its ``response.done``. It never raises on a broken server: each
problem becomes a :class:`Violation` and checking goes on, so a load test reports how often, not just
that, the protocol broke.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import attrs

from trio_voice import codec
from trio_voice.errors import RemoteProtocolError

# Violation kinds (stable names: they are the keys of the report's "violations" counts).
UNDECODABLE = "undecodable"  # not JSON, unknown type, missing or mistyped field (codec.decode_server)
BINARY_FRAME = "binary_frame"  # the server never sends binary frames
SEQ_GAP = "seq_gap"  # seq jumped forward: events were lost
SEQ_BACKWARDS = "seq_backwards"  # seq repeated or went back
EVENT_AFTER_DONE = "event_after_done"  # a reply event (or error/warning about it) after its response.done
DUPLICATE_DONE = "duplicate_done"  # a second response.done for one reply
DUPLICATE_CREATED = "duplicate_created"  # response.created twice for one response_id
EVENT_WITHOUT_CREATED = "event_without_created"  # a reply event before its response.created
OVERLAPPING_REPLIES = "overlapping_replies"  # response.created while another reply is still open
REPLY_NOT_DONE = "reply_not_done"  # the connection ended normally with a reply never closed

KEPT_EXAMPLES = 20  # violations kept verbatim per checker; the rest are only counted


@attrs.frozen
class Violation:
    """One broken rule: its ``kind`` (a constant above), the event's ``seq`` and a human ``detail``."""

    kind: str
    seq: int | None
    detail: str


class ProtocolChecker:
    """Checks one session's server frames in arrival order.

    ``receive(frame)`` returns the decoded event (a dict, as ``codec.decode_server`` gives it) or ``None``
    when the frame cannot be decoded; ``finish()`` is called when the connection ended normally, to
    catch replies left open. ``counts`` holds every violation by kind, ``examples`` the first few.
    """

    def __init__(self) -> None:
        self.expected_seq = 1
        self.open_replies: list[str] = []
        self.done_replies: set[str] = set()
        self.counts: Counter[str] = Counter()
        self.examples: list[Violation] = []
        self.events = 0
        self.lost_events = 0  # seqs skipped: events the client never got
        self.duplicate_events = 0  # seqs received again

    def _violate(self, kind: str, seq: int | None, detail: str) -> None:
        self.counts[kind] += 1
        if len(self.examples) < KEPT_EXAMPLES:
            self.examples.append(Violation(kind, seq, detail))

    @property
    def violations(self) -> int:
        return sum(self.counts.values())

    def receive(self, frame: str | bytes) -> dict[str, Any] | None:
        """Check one frame; return its decoded event, or ``None`` if it could not be decoded."""
        if isinstance(frame, bytes):
            self._violate(BINARY_FRAME, None, f"binary frame of {len(frame)} bytes")
            return None
        try:
            event = codec.decode_server(frame)
        except RemoteProtocolError as exc:
            self._violate(UNDECODABLE, None, f"{exc.code}: {exc.message}"[:300])
            return None
        self.events += 1
        self._check_seq(event)
        self._check_reply(event)
        return event

    def _check_seq(self, event: dict[str, Any]) -> None:
        seq = event["seq"]
        if seq > self.expected_seq:
            self.lost_events += seq - self.expected_seq
            self._violate(SEQ_GAP, seq, f"seq {seq} where {self.expected_seq} was due ({event['type']})")
        elif seq < self.expected_seq:
            self.duplicate_events += 1
            self._violate(
                SEQ_BACKWARDS, seq, f"seq {seq} where {self.expected_seq} was due ({event['type']})"
            )
        # Resynchronise on what arrived, so one lost event counts once, not on every later event.
        self.expected_seq = max(self.expected_seq, seq + 1)

    def _check_reply(self, event: dict[str, Any]) -> None:
        type_, seq, rid = event["type"], event["seq"], event.get("response_id")
        if rid is None:
            return
        if type_ == "response.created":
            if rid in self.done_replies or rid in self.open_replies:
                self._violate(DUPLICATE_CREATED, seq, f"response.created again for {rid}")
                return
            if self.open_replies:
                self._violate(OVERLAPPING_REPLIES, seq, f"{rid} created while {self.open_replies} still open")
            self.open_replies.append(rid)
        elif rid in self.done_replies:
            kind = DUPLICATE_DONE if type_ == "response.done" else EVENT_AFTER_DONE
            self._violate(kind, seq, f"{type_} of {rid} after its response.done")
        elif rid not in self.open_replies:
            # error/warning may name a reply the client never saw created only if the server broke the rules.
            self._violate(EVENT_WITHOUT_CREATED, seq, f"{type_} of {rid} before its response.created")
        elif type_ == "response.done":
            self.open_replies.remove(rid)
            self.done_replies.add(rid)

    def finish(self) -> None:
        """The session ended normally (the client waited for its replies): every reply must be closed."""
        for rid in self.open_replies:
            self._violate(REPLY_NOT_DONE, None, f"{rid} never got its response.done")
        self.open_replies.clear()
