"""End to end on the real embedded models: `trio-voice serve` as a user starts it, driven over the WebSocket.

One server process for the whole module (embedded llama.cpp SmolLM2, Piper joe-medium, whisper tiny.en,
Silero VAD), started with the real command line. Speech going in is made by the project's Piper voice
from known sentences and streamed at real-time pace, like a microphone.
"""

from __future__ import annotations

import base64
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import trio
from trio_websocket import ConnectionClosed

from tests.conftest import Client, connect
from tests.server_process import ServerProcess
from tests.speech import speech_with_pause, synthesize_speech, word_error_rate
from trio_voice.audio import float_to_pcm16, pcm16_to_float, resample

pytestmark = pytest.mark.models

FRAME_S = 0.02


def serve_command(db: Path, *extra: str) -> list[str]:
    """`trio-voice serve` on free ports with the default models (prepared in the default cache dir)."""
    return [
        sys.executable,
        "-m",
        "trio_voice.cli",
        "serve",
        "--port",
        "0",
        "--http-port",
        "0",
        "--db",
        str(db),
        *extra,
    ]


@pytest.fixture(scope="module")
def real_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """One real server for the module; it must exit 0 on SIGTERM at the end."""
    folder = tmp_path_factory.mktemp("real")
    server = ServerProcess(serve_command(folder / "conversations.sqlite3"), folder / "server.log")
    try:
        yield {"ws": server.ws_url, "http": server.http_url}
    finally:
        assert server.stop() == 0, f"the server did not exit cleanly on SIGTERM; see {server.log}"


@pytest.fixture(scope="module")
def recognizer():
    """The same whisper model the server uses, to check what the server said."""
    from tests.speech import whisper_model_path
    from trio_voice.stt import Recognizer

    return Recognizer.load(whisper_model_path(), threads=1)


async def stream_speech(client: Client, audio16k: np.ndarray, *, trailing_silence_s: float = 1.0) -> None:
    """Stream speech and then silence as 20 ms binary frames, at real-time pace."""
    pcm = float_to_pcm16(np.concatenate([audio16k, np.zeros(int(16000 * trailing_silence_s), np.float32)]))
    step = int(16000 * FRAME_S) * 2
    start = trio.current_time()
    for n, i in enumerate(range(0, len(pcm), step)):
        await client.send(pcm[i : i + step])
        await trio.sleep_until(start + (n + 1) * FRAME_S)


def reply_audio(events: list[dict]) -> tuple[np.ndarray, int]:
    chunks = [e for e in events if e["type"] == "response.audio.delta"]
    rate = chunks[0]["sample_rate"]
    return pcm16_to_float(b"".join(base64.b64decode(e["audio"]) for e in chunks)), rate


async def test_text_question_gets_a_spoken_answer(real_server) -> None:
    """The embedded LLM answers a typed question with streamed text, phrases and audio at the stated rate."""
    async with connect(real_server["ws"]) as client:
        events = await client.reply({"type": "message.create", "text": "What is the capital of France?"})
    done = events[-1]
    print(f"reply {done['text']!r}; metrics {done['metrics']}")
    assert done["status"] == "completed", done
    assert done["text"].strip() and done["metrics"]["first_audio_ms"] is not None
    audio, rate = reply_audio(events)
    assert rate == 22050 and len(audio) / rate > 0.5
    assert float(np.sqrt(np.mean(np.square(audio)))) > 0.01


async def test_spoken_reply_is_real_speech(real_server, recognizer) -> None:
    """What the server speaks is speech: whisper transcribes the audio of a speak turn back to its text."""
    text = "Welcome back. Today we will practise ordering food in a restaurant."
    async with connect(real_server["ws"]) as client:
        events = await client.reply({"type": "speak", "text": text})
    audio, rate = reply_audio(events)
    heard = await trio.to_thread.run_sync(recognizer.transcribe_sync, resample(audio, rate, 16000))
    wer = word_error_rate(text, heard)
    print(f"spoke {text!r}; whisper heard {heard!r}; WER {wer:.2f}")
    assert wer <= 0.2


SPOKEN = [
    "What is the capital of France?",
    "Tell me a fun fact about the ocean.",
    "How many legs does a spider have?",
]


@pytest.mark.parametrize("sentence", SPOKEN)
async def test_spoken_question_is_transcribed_and_answered(real_server, sentence: str) -> None:
    """Real speech streamed in real time: partials while speaking, an accurate final, then a spoken reply."""
    speech = await trio.to_thread.run_sync(synthesize_speech, sentence)
    async with connect(real_server["ws"]) as client:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(stream_speech, client, speech)
            events = await client.recv_until("response.done")
    types = [e["type"] for e in events]
    assert (
        types.index("input.speech_started")
        < types.index("input.speech_stopped")
        < types.index("transcript.final")
    )
    final = next(e["text"] for e in events if e["type"] == "transcript.final")
    wer = word_error_rate(sentence, final)
    partials = [e["text"] for e in events if e["type"] == "transcript.partial"]
    done = events[-1]
    print(
        f"said {sentence!r}; final {final!r} (WER {wer:.2f}); partials {partials}; metrics {done['metrics']}"
    )
    assert wer <= 0.2
    assert partials and types.index("transcript.partial") < types.index("input.speech_stopped")
    assert done["status"] == "completed"
    assert done["metrics"]["voice_to_voice_ms"] is not None


async def test_a_short_pause_does_not_split_the_turn(real_server) -> None:
    """A question read with a 400 ms hesitation in it ("I would like to know, … how far away the moon is.")
    is one turn: the end-of-turn model hears an unfinished sentence, and the pause is under the fallback."""
    speech = await trio.to_thread.run_sync(
        speech_with_pause, "I would like to know, how far away the moon is.", 0.4
    )
    async with connect(real_server["ws"]) as client:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(stream_speech, client, speech)
            events = await client.recv_until("response.done")
    finals = [e["text"] for e in events if e["type"] == "transcript.final"]
    print(f"finals {finals}")
    assert len(finals) == 1 and [e["type"] for e in events].count("input.speech_stopped") == 1
    assert word_error_rate("I would like to know how far away the moon is.", finals[0]) <= 0.25


async def test_barge_in_on_real_models_stops_the_reply(real_server) -> None:
    """Speaking over a long spoken reply cancels it (turn_detected); none of it follows its response.done."""
    speech = await trio.to_thread.run_sync(synthesize_speech, "Stop, please tell me the time instead.")
    async with connect(real_server["ws"]) as client:
        # Twelve different sentences: repeats of one would be TTS cache hits, sent in no time.
        long_text = " ".join(f"This is part {n} of a long announcement." for n in range(1, 13))
        await client.send({"type": "speak", "text": long_text})
        first = await client.recv_until("response.audio.delta")
        first_id = first[0]["response_id"]
        async with trio.open_nursery() as nursery:
            nursery.start_soon(stream_speech, client, speech)
            events = await client.recv_until("response.done", response_id=first_id)
            events += await client.recv_until("response.done")
    done_first = events[len(events) - 1 - [e["type"] for e in reversed(events)].index("response.done")]
    cancelled = next(e for e in events if e["type"] == "response.done" and e["response_id"] == first_id)
    assert (cancelled["status"], cancelled["reason"]) == ("cancelled", "turn_detected")
    print(f"interruption: {cancelled['metrics']}")
    at = events.index(cancelled)
    assert [e for e in events[at + 1 :] if e.get("response_id") == first_id] == []
    assert done_first["response_id"] != first_id


def test_server_exits_cleanly_on_sigterm_with_a_reply_in_flight(tmp_path: Path) -> None:
    """SIGTERM mid-reply: the reply finishes or is cancelled with reason shutdown, the socket closes 1001, exit 0."""

    async def scenario(ws_url: str, process: subprocess.Popen) -> list[dict]:
        async with connect(ws_url) as client:
            text = " ".join(f"Part {n} of a reply that is still being spoken." for n in range(1, 7))
            await client.send({"type": "speak", "text": text})
            await client.recv_until("response.audio.delta")
            process.send_signal(signal.SIGTERM)
            events = await client.recv_until("response.done")
            with trio.fail_after(20):
                try:
                    while True:
                        await client.ws.get_message()
                except ConnectionClosed as exc:
                    assert exc.reason.code == 1001, exc
            return events

    server = ServerProcess(
        serve_command(tmp_path / "db.sqlite3", "--shutdown-grace", "1"), tmp_path / "server.log"
    )
    try:
        events = trio.run(scenario, server.ws_url, server.proc)
        assert events[-1]["status"] in ("completed", "cancelled")
        if events[-1]["status"] == "cancelled":
            assert events[-1]["reason"] == "shutdown"
        assert server.proc.wait(timeout=30) == 0
    finally:
        server.stop()


async def test_metrics_count_turns_and_engine_queue_waits(real_server) -> None:
    """After the turns above, /metrics has latency histograms and the TTS/STT queue waits of real calls."""
    import httpx

    async with httpx.AsyncClient() as http:
        text = (await http.get(real_server["http"] + "/metrics")).text
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    assert samples['trio_voice_engine_queue_wait_seconds_count{engine="tts"}'] > 0
    assert samples['trio_voice_engine_queue_wait_seconds_count{engine="stt"}'] > 0
    assert samples["trio_voice_first_audio_seconds_count"] >= 3
    assert samples["trio_voice_voice_to_voice_seconds_count"] >= 3
