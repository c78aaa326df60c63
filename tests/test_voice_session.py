"""Voice input over a real server with fake engines: VAD events, partials, finals, replies, barge-in."""

from __future__ import annotations

import base64

import numpy as np
import trio

from tests.conftest import Client, connect, run_server
from trio_voice.testing import FakeLLM, FakeSTT, FakeTTS, FakeVAD, tone, utterance

FRAME_S = 0.02


async def stream(client: Client, pcm: bytes, *, rate: int = 16000, speed: float = 4.0) -> None:
    """Send PCM in 20 ms binary frames, ``speed`` times faster than real time."""
    step = int(rate * FRAME_S) * 2
    for i in range(0, len(pcm), step):
        await client.send(pcm[i : i + step])
        await trio.sleep(FRAME_S / speed)


def voice_engines(**stt: object) -> dict:
    return {"stt": FakeSTT(**stt), "vad_factory": FakeVAD}


async def test_spoken_question_gets_events_transcripts_and_a_reply(tmp_path) -> None:
    """Speech then silence yields speech_started, partials, speech_stopped, a final and a full reply."""
    async with (
        run_server(tmp_path, voice_engines(), partial_interval=0.3) as server,
        connect(server.ws_url) as client,
    ):
        await stream(client, utterance(1.5))
        events = await client.recv_until("response.done")
    types = [e["type"] for e in events]
    assert (
        types.index("input.speech_started")
        < types.index("transcript.partial")
        < types.index("input.speech_stopped")
    )
    assert (
        types.index("input.speech_stopped")
        < types.index("transcript.final")
        < types.index("response.created")
    )
    started = next(e for e in events if e["type"] == "input.speech_started")
    stopped = next(e for e in events if e["type"] == "input.speech_stopped")
    assert abs(started["audio_start_ms"] - 200) <= 64 and abs(stopped["audio_end_ms"] - 1700) <= 64
    final = next(e for e in events if e["type"] == "transcript.final")
    assert final["text"].startswith("I spoke for")
    done = events[-1]
    assert done["status"] == "completed"
    for key in ("speech_end_to_final_ms", "vad_hangover_ms", "voice_to_voice_ms", "llm_first_token_ms"):
        assert done["metrics"][key] is not None, key


async def test_barge_in_cancels_the_reply_and_nothing_stale_follows(tmp_path) -> None:
    """Speech during a reply ends it as cancelled/turn_detected at once; the new question gets its own reply."""
    llm = FakeLLM(token_delay=0.05)
    tts = FakeTTS(delay=lambda text: 0.2)
    engines = {"llm": llm, "tts": tts, **voice_engines()}
    async with run_server(tmp_path, engines) as server, connect(server.ws_url) as client:
        await client.send({"type": "message.create", "text": "tell me a long story"})
        first = await client.recv_until("response.audio.delta")
        first_id = first[0]["response_id"]
        await stream(client, utterance(1.0, lead_silence_s=0.1))
        events = await client.recv_until("response.done", status="completed")
        await client.expect_quiet()
    everything = first + events
    done_first = next(e for e in everything if e["type"] == "response.done" and e["response_id"] == first_id)
    assert (done_first["status"], done_first["reason"]) == ("cancelled", "turn_detected")
    assert done_first["metrics"]["interruption_ms"] is not None
    at = everything.index(done_first)
    assert [e for e in everything[at + 1 :] if e.get("response_id") == first_id] == []
    speech_at = next(i for i, e in enumerate(everything) if e["type"] == "input.speech_started")
    assert speech_at < at
    assert llm.active == 0 and tts.active == 0


async def test_manual_turns_commit_and_clear(tmp_path) -> None:
    """With turn_detection none, audio waits for input_audio.commit; input_audio.clear drops it."""
    async with run_server(tmp_path, voice_engines()) as server, connect(server.ws_url) as client:
        await client.send({"type": "session.update", "turn_detection": {"type": "none"}})
        assert (await client.recv())["type"] == "session.updated"
        await stream(client, utterance(0.5))
        await client.send({"type": "input_audio.clear"})
        await client.send({"type": "input_audio.commit", "request_id": "c1"})
        error = await client.recv()
        assert (error["type"], error["code"], error["request_id"]) == ("error", "input_audio_empty", "c1")
        await stream(client, utterance(0.8, tail_silence_s=0.0))
        await client.send({"type": "input_audio.commit", "request_id": "c2"})
        events = await client.recv_until("response.done")
    assert not any(e["type"].startswith("input.speech") for e in events)
    final = next(e for e in events if e["type"] == "transcript.final")
    assert final["request_id"] == "c2" and final["text"].startswith("I spoke for 1.0")
    assert events[-1]["status"] == "completed"


async def test_transcribe_one_shot_answers_without_a_reply(tmp_path) -> None:
    """transcribe returns transcript.final for the clip, and no reply starts."""
    clip = base64.b64encode(tone(1.0, 24000, amplitude=0.3)).decode()
    async with run_server(tmp_path, voice_engines()) as server, connect(server.ws_url) as client:
        await client.send({"type": "transcribe", "audio": clip, "sample_rate": 24000, "request_id": "t1"})
        event = await client.recv()
        await client.expect_quiet()
    assert (event["type"], event["request_id"], event["text"]) == (
        "transcript.final",
        "t1",
        "I spoke for 1.0 seconds",
    )


async def test_base64_audio_and_other_rates_are_resampled(tmp_path) -> None:
    """input_audio.append at 48 kHz is heard like binary frames at 16 kHz."""
    pcm = utterance(1.0, rate=48000)
    async with run_server(tmp_path, voice_engines()) as server, connect(server.ws_url) as client:
        await client.send({"type": "session.update", "input_sample_rate": 48000})
        await client.recv()
        step = int(48000 * FRAME_S) * 2
        for i in range(0, len(pcm), step):
            await client.send(
                {"type": "input_audio.append", "audio": base64.b64encode(pcm[i : i + step]).decode()}
            )
            await trio.sleep(FRAME_S / 4)
        events = await client.recv_until("transcript.final")
    # The 0.2 s of lead silence (inside the 300 ms prefix), the speech, and the 100 ms tail.
    assert events[-1]["text"] == "I spoke for 1.3 seconds"


async def test_silence_and_noise_start_no_reply(tmp_path) -> None:
    """Silence never starts a turn; a recognizer hallucination on noise gives an empty final and no reply."""
    stt = {"text": lambda audio: "Thank you."}
    async with run_server(tmp_path, voice_engines(**stt)) as server, connect(server.ws_url) as client:
        await stream(client, bytes(32000))
        await client.expect_quiet(0.3)
        await stream(client, utterance(0.5, amplitude=0.019))  # the VAD hears it, unsure: noise
        events = await client.recv_until("transcript.final")
        await client.expect_quiet(0.5)
    assert events[-1]["text"] == ""


async def test_thank_you_in_a_clear_voice_is_believed(tmp_path) -> None:
    """When the VAD is sure it heard a voice, "Thank you." is what the user said, and it gets a reply."""
    stt = {"text": lambda audio: "Thank you."}
    async with run_server(tmp_path, voice_engines(**stt)) as server, connect(server.ws_url) as client:
        await stream(client, utterance(0.6))
        events = await client.recv_until("response.done")
    final = next(e for e in events if e["type"] == "transcript.final")
    assert final["text"] == "Thank you." and events[-1]["status"] == "completed"


async def test_audio_faster_than_allowed_is_refused(tmp_path) -> None:
    """A client blasting minutes of audio at once gets audio_rate_exceeded, and the session survives."""
    async with run_server(tmp_path, voice_engines()) as server, connect(server.ws_url) as client:
        second = bytes(32000)
        codes = []
        for _ in range(10):
            await client.send(second)
        await client.send({"type": "ping"})
        while (event := await client.recv())["type"] != "pong":
            codes.append(event.get("code"))
    assert "audio_rate_exceeded" in codes


async def test_voice_messages_without_stt_are_unsupported(tmp_path) -> None:
    """A server started without voice engines answers audio with error unsupported."""
    async with run_server(tmp_path) as server, connect(server.ws_url) as client:
        await client.send(np.zeros(320, dtype="<i2").tobytes())
        event = await client.recv()
    assert (event["type"], event["code"]) == ("error", "unsupported")
