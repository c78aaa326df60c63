"""The official ``openai`` Python SDK against a real ``trio-voice serve``, over ``/v1/realtime``.

``client.realtime.connect(model=..., websocket_base_url="ws://127.0.0.1:PORT/v1")`` is what any realtime
app does; here it drives a ``trio-voice serve`` subprocess started with its real command line (fake
engines for speed, with paced replies so they can be interrupted; one test on the embedded models). The
test talks through the SDK's own resource methods, and reads every frame raw (``recv_bytes``) to
validate it strictly against the SDK's pydantic types (``tests.realtime_sdk``: unknown fields or wrong
types fail), check event ids unique and nothing of a response outside its created … done, and then
parse it with the SDK itself.

The SDK's connection is synchronous (``websockets``' threaded client), so these tests are plain
functions; a watchdog thread closes a connection that waits longer than ``IO_TIMEOUT`` for an event.
"""

from __future__ import annotations

import base64
import json
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.realtime_pair import ClientView
from tests.server_process import ServerProcess
from trio_voice.audio import float_to_pcm16
from trio_voice.realtime import codes

openai = pytest.importorskip("openai")
pytest.importorskip("websockets")  # openai[realtime]

IO_TIMEOUT = 30.0
TOKEN = "sk-trio-voice-test"
RATE = 24000
LONG_QUESTION = " ".join(f"point{n}" for n in range(150))  # the fake LLM echoes it: a long answer


def serve(folder: Path, *extra: str) -> ServerProcess:
    """`trio-voice serve` on free ports, a token required, as a user starts it."""
    argv = [sys.executable, "-m", "trio_voice.cli", "serve", "--port", "0", "--http-port", "0"]
    argv += ["--data-dir", str(folder), "--token", TOKEN, *extra]
    return ServerProcess(argv, folder / "server.log")


@pytest.fixture(scope="module")
def fake_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    folder = tmp_path_factory.mktemp("realtime-sdk")
    server = serve(folder, "--fake-engines", "--fake-llm-token-delay", "0.02", "--vad-silence-ms", "300")
    try:
        yield server
    finally:
        assert server.stop() == 0, f"the server did not exit cleanly on SIGTERM; see {server.log}"


def base_url(server: ServerProcess) -> str:
    return server.ws_url.removesuffix("/voice")  # ws://127.0.0.1:PORT/v1


def tone(seconds: float, hz: float = 220.0) -> bytes:
    t = np.arange(int(RATE * seconds)) / RATE
    return float_to_pcm16((0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32))


def quiet(seconds: float) -> bytes:
    return bytes(2 * int(RATE * seconds))


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


class Strict:
    """An SDK realtime connection whose every received frame is checked strictly before it is used."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.view = ClientView(codes.GA)
        self.received: list[dict[str, Any]] = []
        self.typed: list[Any] = []  # the same events as the SDK parses them

    def recv(self) -> dict[str, Any]:
        expired = threading.Event()

        def give_up() -> None:
            expired.set()
            self.conn.close()

        watchdog = threading.Timer(IO_TIMEOUT, give_up)
        watchdog.start()
        try:
            raw = self.conn.recv_bytes()
        except Exception:
            if expired.is_set():
                raise AssertionError(f"no server event within {IO_TIMEOUT} s") from None
            raise
        finally:
            watchdog.cancel()
        event = json.loads(raw)
        self.view.check(event)  # strict SDK types, unique event_id, response lifecycle
        typed = self.conn.parse_event(raw)
        assert typed.type == event["type"]
        self.received.append(event)
        self.typed.append(typed)
        return event

    def until(self, type_: str, **match: Any) -> list[dict[str, Any]]:
        """Events up to and including the first of ``type_`` whose fields equal ``match``."""
        out = []
        while True:
            event = self.recv()
            out.append(event)
            if event["type"] == type_ and all(event.get(k) == v for k, v in match.items()):
                return out

    def stream(self, pcm: bytes, frame_s: float = 0.05) -> None:
        """Append ``pcm`` at real-time pace through the SDK, like a microphone."""
        step = int(RATE * frame_s) * 2
        start = time.monotonic()
        for n, offset in enumerate(range(0, len(pcm), step)):
            self.conn.input_audio_buffer.append(audio=b64(pcm[offset : offset + step]))
            time.sleep(max(0.0, start + (n + 1) * frame_s - time.monotonic()))


def connect(server: ServerProcess) -> Any:
    client = openai.OpenAI(api_key=TOKEN, websocket_base_url=base_url(server))
    return client.realtime.connect(model="gpt-realtime")


def opened(conn: Any) -> Strict:
    strict = Strict(conn)
    first = strict.recv()
    assert first["type"] == "session.created"
    return strict


def types(events: list[dict[str, Any]]) -> list[str]:
    return [event["type"] for event in events]


def ask_long(s: Strict) -> None:
    """A question whose (fake) answer takes seconds to stream; wait for its first audio."""
    item = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": LONG_QUESTION}]}
    s.conn.conversation.item.create(item=item)
    s.conn.response.create()
    s.until("response.output_audio.delta")


def test_sdk_session_update_and_a_typed_question_answered_in_text(fake_server: ServerProcess) -> None:
    """session.update is answered with the full session; a text item and response.create with text
    output give text deltas and a completed response, its metadata echoed."""
    with connect(fake_server) as conn:
        s = opened(conn)
        conn.session.update(
            session={"type": "realtime", "instructions": "Be brief.", "output_modalities": ["text"]}
        )
        [updated] = s.until("session.updated")
        item = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Hello?"}]}
        conn.conversation.item.create(item=item)
        conn.response.create(response={"output_modalities": ["text"], "metadata": {"turn": "1"}})
        events = s.until("response.done")
    assert updated["session"]["instructions"] == "Be brief."
    assert updated["session"]["output_modalities"] == ["text"]
    assert types(events)[:2] == ["conversation.item.added", "conversation.item.done"]
    text = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    done = events[-1]["response"]
    assert text.startswith("You said: Hello?") and done["output"][0]["content"][0]["text"] == text
    assert (done["status"], done["metadata"]) == ("completed", {"turn": "1"})
    assert type(s.typed[-1]).__name__ == "ResponseDoneEvent"


def test_sdk_audio_turn_by_append_and_commit(fake_server: ServerProcess) -> None:
    """Manual turns: appended 24 kHz audio, committed, is transcribed; response.create answers it in audio."""
    with connect(fake_server) as conn:
        s = opened(conn)
        input_settings = {"turn_detection": None, "transcription": {"model": "whisper-1"}}
        conn.session.update(session={"type": "realtime", "audio": {"input": input_settings}})
        s.until("session.updated")
        second = tone(1.0)
        for offset in range(0, len(second), RATE // 5):  # in 100 ms appends
            conn.input_audio_buffer.append(audio=b64(second[offset : offset + RATE // 5]))
        conn.input_audio_buffer.commit(event_id="evt_commit")
        conn.response.create()
        events = s.until("response.done")
    names = types(events)
    assert names[:3] == ["input_audio_buffer.committed", "conversation.item.added", "conversation.item.done"]
    [completed] = [e for e in events if e["type"] == "conversation.item.input_audio_transcription.completed"]
    assert completed["transcript"].startswith("I spoke for 1.0 seconds")
    assert names.index("response.created") > names.index(completed["type"])
    audio = b"".join(
        base64.b64decode(e["delta"]) for e in events if e["type"] == "response.output_audio.delta"
    )
    assert len(audio) > RATE  # more than half a second of 24 kHz PCM16
    assert events[-1]["response"]["status"] == "completed"


def test_sdk_server_vad_turn_is_answered_automatically(fake_server: ServerProcess) -> None:
    """The default session: speech streamed in real time is detected, committed, transcribed and answered."""
    with connect(fake_server) as conn:
        s = opened(conn)
        conn.session.update(
            session={"type": "realtime", "audio": {"input": {"transcription": {"model": "w"}}}}
        )
        s.until("session.updated")
        s.stream(quiet(0.3) + tone(0.8) + quiet(0.6))
        events = s.until("response.done")
    names = types(events)
    assert names[:3] == [
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.committed",
    ]
    assert "conversation.item.input_audio_transcription.completed" in names
    assert "response.output_audio.delta" in names and events[-1]["response"]["status"] == "completed"


def test_sdk_cancel_then_a_second_cancel_and_the_connection_goes_on(fake_server: ServerProcess) -> None:
    """response.cancel ends the response as cancelled/client_cancelled; a second cancel gets
    response_cancel_not_active echoing its event_id; the connection still answers."""
    with connect(fake_server) as conn:
        s = opened(conn)
        ask_long(s)
        conn.response.cancel(event_id="evt_cancel_1")
        events = s.until("response.done")
        conn.response.cancel(event_id="evt_cancel_2")
        [error] = s.until("error")
        item_id = events[-1]["response"]["output"][0]["id"]
        conn.conversation.item.retrieve(item_id=item_id)
        [retrieved] = s.until("conversation.item.retrieved")
    cancelled = events[-1]["response"]
    assert cancelled["status"] == "cancelled" and cancelled["status_details"]["reason"] == "client_cancelled"
    assert (error["error"]["code"], error["error"]["event_id"]) == (
        "response_cancel_not_active",
        "evt_cancel_2",
    )
    assert retrieved["item"]["status"] == "incomplete"


def test_sdk_truncate_keeps_the_words_that_were_heard(fake_server: ServerProcess) -> None:
    """conversation.item.truncate after an audio response: acknowledged, and the item keeps only what
    the first 300 ms of audio carried (fewer words than were sent)."""
    with connect(fake_server) as conn:
        s = opened(conn)
        item = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Hi there."}]}
        conn.conversation.item.create(item=item)
        conn.response.create()
        done = s.until("response.done")[-1]["response"]
        sent = done["output"][0]["content"][0]["transcript"]
        item_id = done["output"][0]["id"]
        conn.conversation.item.truncate(item_id=item_id, content_index=0, audio_end_ms=300)
        [truncated] = s.until("conversation.item.truncated")
        conn.conversation.item.retrieve(item_id=item_id)
        [retrieved] = s.until("conversation.item.retrieved")
    assert truncated["audio_end_ms"] == 300
    heard = retrieved["item"]["content"][0]["transcript"]
    assert len(heard.split()) < len(sent.split()) and sent.startswith(heard)


def test_sdk_barge_in_cancels_the_response_with_turn_detected(fake_server: ServerProcess) -> None:
    """Speech over a response: speech_started, that response's response.done cancelled/turn_detected
    (nothing of it after), then the spoken turn's own response."""
    with connect(fake_server) as conn:
        s = opened(conn)
        ask_long(s)
        speaking = threading.Thread(target=s.stream, args=(tone(0.8) + quiet(0.6),))
        speaking.start()
        try:
            events = s.until("response.done")
            answer = s.until("response.done")
        finally:
            speaking.join()
    assert "input_audio_buffer.speech_started" in types(events)
    details = events[-1]["response"]["status_details"]
    assert (events[-1]["response"]["status"], details["reason"]) == ("cancelled", "turn_detected")
    assert answer[-1]["response"]["status"] == "completed"


def test_sdk_malformed_events_are_answered_with_errors_echoing_their_event_id(
    fake_server: ServerProcess,
) -> None:
    """An event with a field the API does not define gets an error naming it and echoing the event_id;
    the session goes on."""
    with connect(fake_server) as conn:
        s = opened(conn)
        conn.send({"type": "response.create", "event_id": "evt_bad", "response": {"colour": "blue"}})
        [error] = s.until("error")
        conn.send({"type": "conversation.item.delete", "event_id": "evt_404", "item_id": "item_nope"})
        [missing] = s.until("error")
    assert error["error"] == {
        "type": "invalid_request_error",
        "code": "unknown_parameter",
        "message": error["error"]["message"],
        "param": "response.colour",
        "event_id": "evt_bad",
    }
    assert (missing["error"]["code"], missing["error"]["event_id"]) == ("item_not_found", "evt_404")


@pytest.mark.models
def test_sdk_on_the_embedded_models(tmp_path: Path) -> None:
    """The embedded models behind the SDK: a spoken question (Piper speech at 24 kHz) is heard by whisper
    and answered in audio by SmolLM2 and Piper; a typed one is answered in text."""
    from tests.speech import synthesize_speech, word_error_rate

    question = "What is the capital of France?"
    pcm = float_to_pcm16(synthesize_speech(question, RATE))
    server = serve(tmp_path)
    try:
        with connect(server) as conn:
            s = opened(conn)
            conn.session.update(
                session={"type": "realtime", "audio": {"input": {"transcription": {"model": "w"}}}}
            )
            s.until("session.updated")
            s.stream(quiet(0.3) + pcm + quiet(1.0), frame_s=0.02)
            spoken = s.until("response.done")
            item = {
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "Say hello."}],
            }
            conn.conversation.item.create(item=item)
            conn.response.create(response={"output_modalities": ["text"]})
            typed = s.until("response.done")
    finally:
        assert server.stop() == 0, f"the server did not exit cleanly on SIGTERM; see {server.log}"
    [heard] = [e for e in spoken if e["type"] == "conversation.item.input_audio_transcription.completed"]
    assert word_error_rate(question, heard["transcript"]) <= 0.34
    audio = b"".join(
        base64.b64decode(e["delta"]) for e in spoken if e["type"] == "response.output_audio.delta"
    )
    assert spoken[-1]["response"]["status"] == "completed" and len(audio) > RATE  # over half a second
    assert typed[-1]["response"]["status"] == "completed"
    assert typed[-1]["response"]["output"][0]["content"][0]["text"].strip()
