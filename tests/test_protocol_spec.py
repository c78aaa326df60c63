"""The spec in protocol/ is the contract: every documented example must match the codec and the JSON Schemas.

Examples are fenced blocks preceded by a marker line: ``<!-- example: client -->``, ``<!-- example: server -->``,
``<!-- example: client-invalid CODE -->`` or ``<!-- example: transcript -->`` (lines ``→ {json}``, ``← {json}``,
``→ [binary …]`` and ``# comments``).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import attrs
import jsonschema
import pytest

from trio_voice import errors
from trio_voice.codec import (
    CLIENT_MESSAGE_TYPES,
    SERVER_EVENT_TYPES,
    SUPPORTED_SAMPLE_RATES,
    codes,
    decode_server,
    decode_server_event,
    decode_text,
    encode_client,
    encode_event,
    render_session_config,
)
from trio_voice.config import Config
from trio_voice.errors import RemoteProtocolError
from trio_voice.events import SessionCreated
from trio_voice.session_state import default_turn_detection, session_limits

PROTOCOL = Path(__file__).resolve().parent.parent / "protocol"
MARKER = re.compile(r"^<!-- example: (?P<kind>[\w-]+)(?: (?P<arg>\w+))? -->$", re.MULTILINE)
FENCE = re.compile(r"\n```\w*\n(?P<body>.*?)\n```", re.DOTALL)
MAX_TEXT_CHARS = Config().max_text_chars


@attrs.frozen
class Example:
    where: str  # file:line, for test ids and failure messages
    kind: str
    arg: str | None
    body: str


def load_examples() -> list[Example]:
    found = []
    for path in sorted(PROTOCOL.glob("*.md")):
        text = path.read_text(encoding="utf-8")
        for marker in MARKER.finditer(text):
            where = f"{path.name}:{text.count(chr(10), 0, marker.start()) + 1}"
            fence = FENCE.match(text, marker.end())
            body = fence["body"] if fence else None
            found.append(Example(where, marker["kind"], marker["arg"], body))
    return found


EXAMPLES = load_examples()


def examples(kind: str) -> list[Example]:
    return [example for example in EXAMPLES if example.kind == kind]


def ids(example: Example) -> str:
    return example.where


def load_schema(name: str) -> dict:
    return json.loads((PROTOCOL / "schema" / f"{name}.schema.json").read_text(encoding="utf-8"))


CLIENT_SCHEMA = load_schema("client")
SERVER_SCHEMA = load_schema("server")
CLIENT_VALIDATOR = jsonschema.Draft202012Validator(CLIENT_SCHEMA)
SERVER_VALIDATOR = jsonschema.Draft202012Validator(SERVER_SCHEMA)


def check_client(obj: dict) -> None:
    """A documented client message is valid to the schema, decodes, and re-encodes to itself."""
    CLIENT_VALIDATOR.validate(obj)
    message = decode_text(json.dumps(obj), max_text_chars=MAX_TEXT_CHARS)
    without_nulls = {key: value for key, value in obj.items() if value is not None}
    assert json.loads(encode_client(message)) == without_nulls


def check_server(obj: dict) -> None:
    """A documented server event is valid to the schema and is exactly what encode_event renders for it."""
    SERVER_VALIDATOR.validate(obj)
    decoded = decode_server_event(obj)
    rendered = json.loads(encode_event(decoded.event, seq=decoded.seq, request_id=decoded.request_id))
    assert list(rendered.items()) == list(obj.items())  # same fields, same values, same order


# --- the examples ------------------------------------------------------------------------------------


def test_spec_has_examples():
    """The spec pages hold examples of every kind the tests know."""
    assert {example.kind for example in EXAMPLES} == {"client", "server", "client-invalid", "transcript"}


@pytest.mark.parametrize("example", EXAMPLES, ids=ids)
def test_every_marker_is_followed_by_a_fenced_block(example):
    """A marker line is directly followed by the fenced block it labels."""
    assert example.body is not None, f"{example.where}: no fenced block after the marker"


@pytest.mark.parametrize("example", examples("client"), ids=ids)
def test_client_example_matches_codec_and_schema(example):
    """Each documented client message validates, decodes with the codec and re-encodes to itself."""
    check_client(json.loads(example.body))


@pytest.mark.parametrize("example", examples("server"), ids=ids)
def test_server_example_matches_codec_and_schema(example):
    """Each documented server event validates and equals encode_event of the event it describes."""
    check_server(json.loads(example.body))


@pytest.mark.parametrize("example", examples("client-invalid"), ids=ids)
def test_invalid_client_example_is_refused_with_its_code(example):
    """Each documented bad message is refused by the codec with the documented code."""
    with pytest.raises(RemoteProtocolError) as info:
        decode_text(example.body, max_text_chars=MAX_TEXT_CHARS)
    assert info.value.code == example.arg


def is_json(text: str | None) -> bool:
    try:
        json.loads(text or "")
    except ValueError:
        return False
    return True


@pytest.mark.parametrize("example", [e for e in examples("client-invalid") if is_json(e.body)], ids=ids)
def test_invalid_client_example_is_refused_by_the_schema(example):
    """Each documented bad message that is JSON at all is rejected by the client schema too."""
    assert not CLIENT_VALIDATOR.is_valid(json.loads(example.body))


def transcript_frames(example: Example) -> list[tuple[str, dict | None]]:
    """The frames of a transcript: ("client" | "server", object), or ("client", None) for binary."""
    frames: list[tuple[str, dict | None]] = []
    for line in example.body.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        arrow, _, rest = line.partition(" ")
        direction = {"→": "client", "←": "server"}[arrow]
        frames.append((direction, None if rest.startswith("[binary") else json.loads(rest)))
    return frames


@pytest.mark.parametrize("example", examples("transcript"), ids=ids)
def test_transcript_frames_match_codec_and_schema(example):
    """Every frame of a documented conversation is valid, in the codec's exact rendering."""
    for direction, obj in transcript_frames(example):
        if obj is None:
            continue
        check_client(obj) if direction == "client" else check_server(obj)


@pytest.mark.parametrize("example", examples("transcript"), ids=ids)
def test_transcript_seq_counts_without_gaps(example):
    """The server events of a documented conversation are numbered 1, 2, 3, …"""
    seqs = [obj["seq"] for direction, obj in transcript_frames(example) if direction == "server"]
    assert seqs == list(range(1, len(seqs) + 1))


@pytest.mark.parametrize("example", examples("transcript"), ids=ids)
def test_transcript_replies_are_well_formed(example):
    """In a documented conversation each reply runs from created to done, one at a time, text matching."""
    running, text = None, ""
    for direction, obj in transcript_frames(example):
        if direction != "server" or not obj["type"].startswith("response."):
            continue
        if obj["type"] == "response.created":
            assert running is None, "a reply started while another ran"
            running, text = obj["response_id"], ""
            continue
        assert obj["response_id"] == running
        if obj["type"] == "response.text.delta":
            text += obj["delta"]
        if obj["type"] == "response.done":
            assert obj["text"] == text
            running = None
    assert running is None


@pytest.mark.parametrize("example", examples("transcript"), ids=ids)
def test_transcript_echoes_request_ids(example):
    """Every request_id a server event carries was sent by the client before it."""
    sent: set[str] = set()
    for direction, obj in transcript_frames(example):
        if obj is None or "request_id" not in obj:
            continue
        if direction == "client":
            sent.add(obj["request_id"])
        else:
            assert obj["request_id"] in sent


# --- coverage: every message is documented -----------------------------------------------------------


def documented_types(kind: str) -> set[str]:
    found = {json.loads(example.body)["type"] for example in examples(kind)}
    for example in examples("transcript"):
        direction = "client" if kind == "client" else "server"
        found |= {obj["type"] for d, obj in transcript_frames(example) if d == direction and obj}
    return found


def test_every_client_message_type_has_an_example():
    """Each client message type of the codec is shown in at least one example."""
    assert documented_types("client") == set(CLIENT_MESSAGE_TYPES)


def test_every_server_event_type_has_an_example():
    """Each server event type of the codec is shown in at least one example."""
    assert documented_types("server") == set(SERVER_EVENT_TYPES)


def test_voice_page_has_a_section_per_message():
    """voice.md has a ``### `type``` heading for every client message and server event."""
    headings = set(re.findall(r"^### `([\w.]+)`", (PROTOCOL / "voice.md").read_text(encoding="utf-8"), re.M))
    assert headings == set(CLIENT_MESSAGE_TYPES) | set(SERVER_EVENT_TYPES)


# --- the schemas agree with the codec ----------------------------------------------------------------


@pytest.mark.parametrize("schema", [CLIENT_SCHEMA, SERVER_SCHEMA], ids=["client", "server"])
def test_schema_is_valid_draft_2020_12(schema):
    """Each schema is itself a valid draft 2020-12 schema."""
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)


def one_of_types(schema: dict) -> set[str]:
    refs = [entry["$ref"].removeprefix("#/$defs/") for entry in schema["oneOf"]]
    return {schema["$defs"][ref]["properties"]["type"]["const"] for ref in refs}


def test_client_schema_covers_exactly_the_client_types():
    """The client schema's oneOf has one branch per client message type of the codec."""
    assert one_of_types(CLIENT_SCHEMA) == set(CLIENT_MESSAGE_TYPES)


def test_server_schema_covers_exactly_the_server_types():
    """The server schema's oneOf has one branch per server event type of the codec."""
    assert one_of_types(SERVER_SCHEMA) == set(SERVER_EVENT_TYPES)


def test_schemas_list_the_supported_sample_rates():
    """Both schemas allow exactly the codec's input sample rates."""
    assert CLIENT_SCHEMA["$defs"]["sample_rate"]["enum"] == list(SUPPORTED_SAMPLE_RATES)
    config = SERVER_SCHEMA["$defs"]["session_config"]["properties"]
    assert config["input_sample_rate"]["enum"] == list(SUPPORTED_SAMPLE_RATES)


def test_server_schema_lists_the_cancel_reasons_and_metrics():
    """response.done's schema names the codec's cancel reasons and required metrics."""
    rules = SERVER_SCHEMA["$defs"]["response.done"]["allOf"]
    cancelled = next(rule for rule in rules if rule["if"]["properties"]["status"]["const"] == "cancelled")
    assert set(cancelled["then"]["properties"]["reason"]["enum"]) == codes.CANCEL_REASONS
    assert tuple(SERVER_SCHEMA["$defs"]["metrics"]["required"]) == codes.REQUIRED_METRICS


def test_rendered_session_config_matches_the_schema_and_the_example():
    """render_session_config from the default Config is valid and has the documented keys."""
    config = Config()
    rendered = render_session_config(
        instructions=config.system_prompt,
        input_sample_rate=config.input_sample_rate,
        turn_detection=default_turn_detection(config, voice=True, semantic=True),
        output_audio=True,
        output_sample_rate=22050,
        limits=session_limits(config),
    )
    event = json.loads(encode_event_session_created(rendered))
    SERVER_VALIDATOR.validate(event)
    (documented,) = [json.loads(e.body) for e in examples("server") if '"session.created"' in e.body]
    assert rendered["limits"] == documented["config"]["limits"]
    assert rendered["turn_detection"] == documented["config"]["turn_detection"]
    assert rendered.keys() == documented["config"].keys()


def encode_event_session_created(config: dict) -> str:
    return encode_event(SessionCreated("sess_1", "conv_1", config), seq=1)


# --- errors.md agrees with the code lists -------------------------------------------------------------


def code_table(section: str) -> set[str]:
    """The codes in the first column of the table under ``## {section}`` in errors.md."""
    text = (PROTOCOL / "errors.md").read_text(encoding="utf-8")
    body = text.split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `(\w+)` \|", body, re.MULTILINE))


def test_errors_page_documents_exactly_the_error_codes():
    """errors.md's error table lists every code in codes.ERROR_CODES and nothing else."""
    assert code_table("Error codes") == set(codes.ERROR_CODES)


def test_errors_page_documents_exactly_the_warning_codes():
    """errors.md's warning table lists every code in codes.WARNING_CODES and nothing else."""
    assert code_table("Warning codes") == set(codes.WARNING_CODES)


def test_errors_page_documents_every_close_code():
    """errors.md's close-code table has a row for exactly the close codes the server uses."""
    text = (PROTOCOL / "errors.md").read_text(encoding="utf-8")
    body = text.split("## Close codes\n", 1)[1].split("\n## ", 1)[0]
    documented = {int(code) for code in re.findall(r"^\| (\d{4}) \|", body, re.MULTILINE)}
    assert documented == set(codes.CLOSE_CODES)


def test_errors_sent_before_a_close_are_documented_codes():
    """Each error code errors.md names in its close-code table is a documented error code."""
    text = (PROTOCOL / "errors.md").read_text(encoding="utf-8")
    body = text.split("## Close codes\n", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| \d{4} \|.*\| (.*?) \| .*? \|$", body, re.MULTILINE)
    named = {code for cell in rows for code in re.findall(r"`(\w+)`", cell)}
    assert named and named <= set(codes.ERROR_CODES)


def test_default_codes_of_the_error_classes_are_documented():
    """Every error class's default code is one a client may receive, so errors.md lists it (ConfigError
    only happens at start-up, before any client)."""
    classes = [
        cls
        for cls in vars(errors).values()
        if isinstance(cls, type) and issubclass(cls, errors.TrioVoiceError) and cls is not errors.ConfigError
    ]
    assert {cls.code for cls in classes} <= set(codes.ERROR_CODES)


@pytest.mark.parametrize("example", examples("server"), ids=ids)
def test_codes_in_examples_are_documented(example):
    """An error or warning code shown in an example is one errors.md documents."""
    obj = decode_server(example.body.replace("\n", " "))
    known = {"error": codes.ERROR_CODES, "warning": codes.WARNING_CODES}.get(obj["type"])
    if known is not None:
        assert obj["code"] in known
    if obj["type"] == "response.done" and obj["status"] == "failed":
        assert obj["reason"] in codes.ERROR_CODES


def test_limits_page_names_every_reported_limit():
    """limits.md names each limit a session reports in config.limits."""
    text = (PROTOCOL / "limits.md").read_text(encoding="utf-8")
    limits = render_session_config(
        instructions="",
        input_sample_rate=16000,
        turn_detection=default_turn_detection(Config(), voice=False),
        output_audio=True,
        output_sample_rate=22050,
        limits=session_limits(Config()),
    )["limits"]
    assert all(f"`{name}`" in text for name in limits)


def test_errors_page_documents_exactly_the_resume_failure_reasons():
    """errors.md's table of resume_failed reasons lists every ResumeFailure and nothing else."""
    assert code_table("Resume failure reasons") == set(codes.RESUME_FAILURES)


def test_server_schema_lists_the_presence_statuses():
    """presence.update's schema allows exactly the shared state's presence statuses."""
    from trio_voice.shared import PRESENCE_STATUSES

    status = SERVER_SCHEMA["$defs"]["presence.update"]["properties"]["status"]
    assert status["enum"] == list(PRESENCE_STATUSES)


def test_http_page_gives_every_mapped_error_its_status():
    """http.md's error table names each code the HTTP app maps to a status, with that status."""
    from trio_voice.http.app import STATUS_BY_CODE

    text = (PROTOCOL / "http.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| (\d{3}) \| (.*?) \|", text, re.MULTILINE)
    documented = {code: int(status) for status, cell in rows for code in re.findall(r"`(\w+)`", cell)}
    assert {code: documented.get(code) for code in STATUS_BY_CODE} == dict(STATUS_BY_CODE)
