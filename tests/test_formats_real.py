"""Compressed audio on the real models: Piper speech through Opus and MP3, heard by whisper as it was said.

Input: Piper's speech encoded to WebM/Opus and Ogg/Opus by FFmpeg's muxers (a MediaRecorder's and an
app's formats), fed to the incremental decoders in random pieces; whisper must hear the same words in
the decoded audio as in the PCM. Output: ``/v1/audio/speech`` with Opus and MP3 from the real Piper,
decoded back by FFmpeg and transcribed.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import pytest
import trio

from tests.audio_codecs import decode_file, encode_opus, feed_in_random_pieces
from tests.conftest import IO_TIMEOUT, run_server
from tests.speech import synthesize_speech, word_error_rate
from trio_voice.audio import pcm16_to_float
from trio_voice.formats import make_input_decoder

pytestmark = pytest.mark.models

SENTENCE = "Please book a table for two at seven tonight."


@pytest.fixture(scope="module")
def recognizer():
    from tests.speech import whisper_model_path
    from trio_voice.stt import Recognizer

    return Recognizer.load(whisper_model_path(), threads=2)


@pytest.fixture(scope="module")
def piper():
    from trio_voice.tts import Synthesizer

    return Synthesizer.load()


@pytest.mark.parametrize(("fmt", "container"), [("webm", "webm"), ("opus", "ogg")])
def test_compressed_speech_input_is_heard_like_pcm(recognizer, fmt: str, container: str) -> None:
    """Piper speech as WebM/Opus or Ogg/Opus, decoded piece by piece, gives whisper the PCM's words."""
    speech = synthesize_speech(SENTENCE, 48000)
    from_pcm = recognizer.transcribe_sync(synthesize_speech(SENTENCE, 16000))
    data = encode_opus(speech, 48000, container, bitrate=24000)  # MediaRecorder's usual rate for a voice
    decoder = make_input_decoder(fmt)
    decoded = pcm16_to_float(feed_in_random_pieces(decoder, data, seed=12, largest=1000))
    from_opus = recognizer.transcribe_sync(decoded)
    print(f"{fmt}: {len(data)} bytes; PCM heard {from_pcm!r}; {fmt} heard {from_opus!r}")
    assert word_error_rate(SENTENCE, from_pcm) <= 0.15
    assert word_error_rate(from_pcm, from_opus) == 0.0


@pytest.mark.parametrize("fmt", ["opus", "mp3"])
async def test_compressed_speech_output_is_heard(tmp_path: Path, recognizer, piper, fmt: str) -> None:
    """The real Piper's /v1/audio/speech answer in Opus or MP3 decodes to speech whisper transcribes."""
    async with (
        run_server(tmp_path, {"tts": piper}) as running,
        httpx.AsyncClient(base_url=running.http_url, timeout=IO_TIMEOUT, trust_env=False) as http,
    ):
        response = await http.post("/v1/audio/speech", json={"input": SENTENCE, "response_format": fmt})
    assert response.status_code == 200
    audio, _ = decode_file(response.content, 16000)
    heard = await trio.to_thread.run_sync(recognizer.transcribe_sync, audio)
    seconds = audio.size / 16000
    print(f"{fmt}: {len(response.content)} bytes for {seconds:.2f} s; whisper heard {heard!r}")
    assert 1.5 < seconds < 5.0 and float(np.sqrt(np.mean(audio**2))) > 0.01
    assert word_error_rate(SENTENCE, heard) <= 0.15
