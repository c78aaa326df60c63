"""protocol/realtime.md is the contract: every example parses, validates against the SDK, or is what we render.

Examples are fenced blocks after a marker line ``<!-- realtime-example: KIND [CODE] -->`` (a marker of its
own, so the native protocol's spec test leaves this page alone). Kinds:

- ``client`` / ``client-beta``: parsed by the codec, and valid (strictly) as the SDK's client event;
- ``client-invalid CODE``: refused by a fresh connection with that realtime error code;
- ``server`` / ``server-beta``: valid (strictly) as the SDK's server event, and equal to a frame the
  connection renders in ``scripted_session`` once ids are put in canonical form (the page may use any ids).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import attrs
import pytest

from tests.realtime_pair import NATIVE_CONFIG, scripted_session
from tests.realtime_sdk import validate_client, validate_server
from trio_voice import events
from trio_voice.realtime import (
    CLIENT_EVENT_TYPES,
    RealtimeConnection,
    RealtimeProtocolError,
    codes,
    parse_client_event,
)

PAGE = Path(__file__).resolve().parent.parent / "protocol" / "realtime.md"
TEXT = PAGE.read_text(encoding="utf-8")
MARKER = re.compile(r"^<!-- realtime-example: (?P<kind>[\w-]+)(?: (?P<arg>\w+))? -->$", re.MULTILINE)
FENCE = re.compile(r"\n```\w*\n(?P<body>.*?)\n```", re.DOTALL)
ID_FIELDS = frozenset({"event_id", "item_id", "previous_item_id", "response_id", "id", "conversation_id"})
KINDS = {"client", "client-beta", "client-invalid", "server", "server-beta"}


@attrs.frozen
class Example:
    where: str
    kind: str
    arg: str | None
    body: str | None

    @property
    def dialect(self) -> str:
        return codes.BETA if self.kind.endswith("-beta") else codes.GA

    def obj(self) -> Any:
        return json.loads(self.body or "")


def load_examples() -> list[Example]:
    found = []
    for marker in MARKER.finditer(TEXT):
        fence = FENCE.match(TEXT, marker.end())
        line = TEXT.count("\n", 0, marker.start()) + 1
        found.append(
            Example(f"realtime.md:{line}", marker["kind"], marker["arg"], fence["body"] if fence else None)
        )
    return found


EXAMPLES = load_examples()


def of(*kinds: str) -> list[Example]:
    return [example for example in EXAMPLES if example.kind in kinds]


def ids(example: Example) -> str:
    return example.where


def canonical(obj: Any) -> Any:
    """The object with every id replaced by its order of first appearance (``<id 1>``, ``<id 2>`` …)."""
    names: dict[str, str] = {}

    def walk(value: Any, key: str | None = None) -> Any:
        if isinstance(value, dict):
            return {k: walk(v, k) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v) for v in value]
        if key in ID_FIELDS and isinstance(value, str):
            return names.setdefault(value, f"<id {len(names) + 1}>")
        return value

    return walk(obj)


RENDERED = {dialect: scripted_session(dialect).frames for dialect in (codes.GA, codes.BETA)}


def test_page_has_examples_of_every_kind():
    """Every kind of marker is used, and each is followed by its fenced block."""
    assert {example.kind for example in EXAMPLES} == KINDS
    assert all(example.body is not None for example in EXAMPLES)


@pytest.mark.parametrize("example", of("client", "client-beta"), ids=ids)
def test_client_example_parses_and_is_an_sdk_client_event(example):
    """Each documented client event is accepted by the codec and is the SDK's shape, strictly."""
    parse_client_event(example.body or "", dialect=example.dialect, max_text_chars=4000)
    validate_client(example.obj(), example.dialect)


@pytest.mark.parametrize("example", of("client-invalid"), ids=ids)
def test_invalid_client_example_is_refused_with_its_code(example):
    """Each documented bad event is refused, by a fresh connection, with the documented code."""
    conn = RealtimeConnection(model="gpt-realtime")
    conn.send(events.SessionCreated("sess_1", "conv_1", NATIVE_CONFIG))
    with pytest.raises(RealtimeProtocolError) as info:
        conn.receive(example.body or "")
    assert info.value.code == example.arg
    assert example.arg in codes.ERROR_CODES


@pytest.mark.parametrize("example", of("server", "server-beta"), ids=ids)
def test_server_example_is_an_sdk_server_event(example):
    """Each documented server event validates strictly against the SDK's type for it."""
    validate_server(example.obj(), example.dialect)


@pytest.mark.parametrize("example", of("server", "server-beta"), ids=ids)
def test_server_example_is_what_the_connection_renders(example):
    """Each documented server event is, ids aside, a frame the connection renders in the scripted session."""
    rendered = [
        canonical(frame) for frame in RENDERED[example.dialect] if frame["type"] == example.obj()["type"]
    ]
    assert rendered, f"the scripted session renders no {example.obj()['type']}"
    assert canonical(example.obj()) in rendered


def test_every_client_event_type_has_an_example_and_a_section():
    """Each client event the codec accepts is shown, and has its ``### `type``` heading."""
    shown = {example.obj()["type"] for example in of("client", "client-invalid") if example.body}
    assert set(CLIENT_EVENT_TYPES) <= shown
    assert set(CLIENT_EVENT_TYPES) <= headings()


def headings() -> set[str]:
    return set(re.findall(r"^### `([\w.]+)`", TEXT, re.MULTILINE))


def test_every_server_event_type_has_an_example_and_a_section():
    """Each server event type the connection renders (GA) is shown and has its heading."""
    rendered = {frame["type"] for frame in RENDERED[codes.GA]}
    shown = {example.obj()["type"] for example in of("server")}
    assert rendered == shown
    assert rendered <= headings()


def test_every_beta_rename_has_an_example():
    """Each event the beta dialect spells differently is shown in its beta form."""
    renamed = {name for name in codes.BETA_EVENT_NAMES.values() if name is not None}
    rendered = {frame["type"] for frame in RENDERED[codes.BETA]}
    shown = {example.obj()["type"] for example in of("server-beta")}
    assert renamed & rendered <= shown


def test_error_table_lists_exactly_the_realtime_codes():
    """The page's error table has a row for every code in codes.ERROR_CODES and nothing else."""
    body = TEXT.split("\n## Errors\n", 1)[1]
    assert set(re.findall(r"^\| `(\w+)` \|", body, re.MULTILINE)) == set(codes.ERROR_CODES)


def test_the_page_is_listed_in_the_protocol_readme():
    """Client authors find the page from the protocol's index."""
    assert "(realtime.md)" in (PAGE.parent / "README.md").read_text(encoding="utf-8")
