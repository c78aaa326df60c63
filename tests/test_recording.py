"""Recording a session: the WAV writer and the budget (pure), a full disk (a real ENOSPC from /dev/full),
and whole recorded sessions against a real server on port 0."""

from __future__ import annotations

import base64
import io
import json
import wave
from functools import partial
from pathlib import Path

import httpx
import pytest
import trio

from tests.conftest import connect, run_server
from trio_voice.events import AudioReady
from trio_voice.recording import Recording, RecordingBudget, WavWriter, recording_task
from trio_voice.testing import FakeLLM, FakeSTT, FakeVAD, tone, utterance


async def recording_of(http: httpx.AsyncClient, session_id: str, replies: int) -> dict:
    """The recording's listing once its writer has caught up with ``replies`` finished replies (the
    recording is written behind the session, in order: a reply's last line comes after its audio)."""
    with trio.fail_after(10):
        while True:
            listing = (await http.get(f"/v1/sessions/{session_id}/recording")).json()
            if sum(line["type"] == "reply_done" for line in listing.get("transcript", ())) >= replies:
                return listing
            await trio.sleep(0.02)


def decode(data: bytes) -> tuple[int, bytes]:
    with wave.open(io.BytesIO(data)) as wav:
        assert (wav.getnchannels(), wav.getsampwidth()) == (1, 2)
        return wav.getframerate(), wav.readframes(wav.getnframes())


def test_a_wav_is_valid_after_every_append(tmp_path: Path) -> None:
    """The header is rewritten after each append, so the file decodes at any moment (even after a crash)."""
    writer = WavWriter(tmp_path / "a.wav", 16000)
    first, second = tone(0.1, 16000), tone(0.2, 16000)
    writer.append(first)
    assert decode((tmp_path / "a.wav").read_bytes()) == (16000, first)
    writer.append(second)
    assert decode((tmp_path / "a.wav").read_bytes()) == (16000, first + second)
    writer.close()


def test_the_budget_counts_what_is_there_and_refuses_beyond(tmp_path: Path) -> None:
    """The budget starts from the bytes already recorded and refuses what would go past it."""
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "x.wav").write_bytes(b"\x00" * 600)
    budget = RecordingBudget(tmp_path, 1000)
    assert budget.used == 600
    assert budget.take(400) and not budget.take(1)


async def test_a_full_disk_stops_the_recording_with_an_error_not_a_crash(tmp_path: Path) -> None:
    """Writing into a full disk (/dev/full answers ENOSPC) stops the recording and reports
    recording_failed; the task goes on and later items are ignored."""
    if not Path("/dev/full").exists():  # noqa: ASYNC240 - a device check, once
        pytest.skip("no /dev/full on this system")
    recording = Recording("sess_full", tmp_path)
    directory = tmp_path / "sess_full"
    directory.mkdir()
    (directory / "reply-resp_1.wav").symlink_to("/dev/full")
    failures = []
    failed = trio.Event()

    async def on_failure(error) -> None:
        failures.append(error)
        failed.set()

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            budget = RecordingBudget(tmp_path, 10**9)
            nursery.start_soon(partial(recording_task, recording, budget, on_failure=on_failure))
            recording.start({"session_id": "sess_full"})
            await recording.on_sent(AudioReady("resp_1", 0, tone(0.5, 22050), 22050))
            await failed.wait()
            await recording.on_sent(AudioReady("resp_1", 0, tone(0.5, 22050), 22050))  # ignored: stopped
            nursery.cancel_scope.cancel()
    assert [f.code for f in failures] == ["recording_failed"] and not recording.active
    assert "No space left" in failures[0].message


async def test_a_recorded_session_has_decodable_wavs_of_what_was_streamed_and_its_transcript(
    tmp_path,
) -> None:
    """Input audio and every reply's audio are recorded as streamed (durations to the sample), and the
    transcript has the user's words and the replies' texts, with timings."""
    engines = {"llm": FakeLLM(), "stt": FakeSTT(), "vad_factory": FakeVAD}
    async with run_server(tmp_path, engines) as server, connect(server.ws_url) as client:
        session_id = client.received[0]["session_id"]
        await client.send({"type": "session.update", "record": True, "request_id": "rec"})
        updated = await client.recv_until("session.updated")
        assert updated[-1]["config"]["record"] is True
        audio = utterance(0.8)
        for offset in range(0, len(audio), 3200):
            await client.send(audio[offset : offset + 3200])
        spoken = await client.recv_until("response.done")
        typed = await client.reply({"type": "message.create", "text": "and typed"})
        await client.send({"type": "session.update", "record": False, "request_id": "off"})
        await client.recv_until("session.updated", request_id="off")
        async with httpx.AsyncClient(base_url=server.http_url) as http:
            listing = await recording_of(http, session_id, 2)
            files = {f["name"]: f for f in listing["files"]}
            wavs = {
                name: decode((await http.get(f"/v1/sessions/{session_id}/recording/{name}")).content)
                for name in files
            }

    assert listing["session_id"] == session_id
    assert wavs["input-1.wav"] == (16000, audio)
    assert files["input-1.wav"]["duration_ms"] == len(audio) / 32.0
    for events in (spoken, typed):
        done = events[-1]
        streamed = b"".join(
            base64.b64decode(e["audio"]) for e in events if e["type"] == "response.audio.delta"
        )
        name = f"reply-{done['response_id']}.wav"
        assert wavs[name] == (22050, streamed)
        assert files[name]["duration_ms"] == pytest.approx(done["metrics"]["audio_ms"], abs=0.1)
    transcript = listing["transcript"]
    final = next(e for e in spoken if e["type"] == "transcript.final")
    assert [line["text"] for line in transcript if line["type"] == "transcript"] == [final["text"]]
    assert [line["text"] for line in transcript if line["type"] == "user_message"] == ["and typed"]
    done_lines = [line for line in transcript if line["type"] == "reply_done"]
    assert [line["text"] for line in done_lines] == [spoken[-1]["text"], typed[-1]["text"]]
    assert all(line["status"] == "completed" for line in done_lines)
    times = [line["t"] for line in transcript]
    assert times == sorted(times)
    assert transcript[0]["input_ms"] >= 0 and done_lines[0]["input_ms"] == pytest.approx(len(audio) / 32.0)


async def test_recording_can_be_forbidden(tmp_path) -> None:
    """A server started with --recording forbidden refuses record: true with recording_forbidden."""
    async with run_server(tmp_path, recording="forbidden") as server, connect(server.ws_url) as client:
        await client.send({"type": "session.update", "record": True, "request_id": "rec"})
        error = await client.recv()
        assert (error["code"], error["request_id"]) == ("recording_forbidden", "rec")


async def test_recording_stops_at_the_disk_budget_with_an_error(tmp_path) -> None:
    """Past recording_max_mb the recording stops: an error recording_limit_reached, then record: false;
    the session goes on."""
    engines = {"stt": FakeSTT(), "vad_factory": FakeVAD}
    async with (
        run_server(tmp_path, engines, recording_max_mb=0.02) as server,
        connect(server.ws_url) as client,
    ):
        await client.send({"type": "session.update", "record": True, "request_id": "rec"})
        await client.recv_until("session.updated")
        silence = bytes(3200)
        for _ in range(20):  # 64 KB of audio for a 20 KB budget
            await client.send(silence)
        error = await client.recv_until("error")
        assert error[-1]["code"] == "recording_limit_reached"
        updated = await client.recv_until("session.updated")
        assert updated[-1]["config"]["record"] is False
        await client.send({"type": "ping"})
        await client.recv_until("pong")


async def test_encoded_replies_are_recorded_as_the_stream_that_was_sent(tmp_path) -> None:
    """With output_audio_format mp3, a reply is recorded as the MP3 bytes sent, in a .mp3 file."""
    async with run_server(tmp_path) as server, connect(server.ws_url) as client:
        session_id = client.received[0]["session_id"]
        await client.send({"type": "session.update", "record": True, "output_audio_format": "mp3"})
        await client.recv_until("session.updated")
        events = await client.reply({"type": "message.create", "text": "in mp3 please"})
        async with httpx.AsyncClient(base_url=server.http_url) as http:
            listing = await recording_of(http, session_id, 1)
            name = f"reply-{events[-1]['response_id']}.mp3"
            recorded = await http.get(f"/v1/sessions/{session_id}/recording/{name}")
    streamed = b"".join(base64.b64decode(e["audio"]) for e in events if e["type"] == "response.audio.delta")
    assert recorded.headers["content-type"] == "audio/mpeg"
    assert recorded.content == streamed
    assert [line["file"] for line in listing["transcript"] if line["type"] == "reply_done"] == [name]


async def test_what_was_queued_before_a_stop_is_still_written(tmp_path: Path) -> None:
    """A stop is immediate for what comes next, but what was queued before it (a reply's last line, when
    the client turned recording off right after the reply) is written: the writer may lag behind."""
    recording = Recording("sess_1", tmp_path)
    recording.start({"session_id": "sess_1"})
    await recording.on_user_text("user_message", "hello")
    recording.stop()  # before the writer has taken anything
    await recording.on_user_text("user_message", "not recorded")

    async def never_fails(error: Exception) -> None:
        raise AssertionError(error)

    recording.close()
    with trio.fail_after(10):
        await recording_task(recording, RecordingBudget(tmp_path, 2**20), on_failure=never_fails)
    transcript = tmp_path / "sess_1" / "transcript.jsonl"
    lines = [json.loads(line) for line in transcript.read_text().splitlines()]
    assert [line["text"] for line in lines] == ["hello"]
