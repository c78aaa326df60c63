"""The OpenAI-compatible speech endpoints against a real server: fake engines, then the real Piper and whisper."""

from __future__ import annotations

import io
import wave
from collections.abc import Awaitable, Callable
from pathlib import Path

import attrs
import httpx
import numpy as np
import pytest
import trio

from tests.audio_codecs import decode_file, similarity, voiced
from tests.conftest import IO_TIMEOUT, RunningServer, run_server
from trio_voice.audio import float_to_pcm16, wav_bytes
from trio_voice.errors import SynthesisError
from trio_voice.testing import VOICE_HZ, FakeSTT, FakeTTS, tone


def http_client(running: RunningServer) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=running.http_url, timeout=IO_TIMEOUT, trust_env=False)


def wav_info(data: bytes) -> tuple[int, int, int, int]:
    """(channels, sample width, rate, frames) of a WAV file."""
    with wave.open(io.BytesIO(data), "rb") as w:
        return w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()


def upload(data: bytes, **fields: str) -> dict[str, object]:
    return {"files": {"file": ("speech.wav", data, "audio/wav")}, "data": fields}


@attrs.define
class ScriptedTTS:
    """A TTS that gives these chunks (or raises these errors) one sentence at a time, each after its gate."""

    chunks: list[bytes | Exception]
    sample_rate: int = 22050
    gates: dict[int, trio.Event] = attrs.field(factory=dict)
    synthesized: int = 0

    async def synthesize(self, text: str, on_audio: Callable[[bytes], Awaitable[None]]) -> None:
        for n, chunk in enumerate(self.chunks):
            if n in self.gates:
                await self.gates[n].wait()
            await trio.lowlevel.checkpoint()
            if isinstance(chunk, Exception):
                raise chunk
            self.synthesized += 1
            await on_audio(chunk)


# --- /v1/audio/speech --------------------------------------------------------------------------------


async def test_speech_answers_a_wav_of_the_synthesized_audio(server: RunningServer) -> None:
    """The default answer is a mono 16-bit WAV at the voice's rate holding all of the synthesized audio."""
    text = "Hello there."
    async with http_client(server) as http:
        response = await http.post(
            "/v1/audio/speech", json={"model": "tts-1", "voice": "alloy", "input": text}
        )
    assert response.status_code == 200
    assert response.headers["content-type"] == "audio/wav"
    expected_frames = len(tone(len(text) * 0.060, 22050)) // 2  # FakeTTS: 60 ms per character
    assert wav_info(response.content) == (1, 2, 22050, expected_frames)


async def test_speech_answers_raw_pcm_with_its_rate(server: RunningServer) -> None:
    """``response_format: pcm`` answers the bare PCM16LE samples and says their rate in X-Sample-Rate."""
    async with http_client(server) as http:
        response = await http.post("/v1/audio/speech", json={"input": "Hi.", "response_format": "pcm"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "audio/pcm"
    assert response.headers["x-sample-rate"] == "22050"
    assert response.content == tone(3 * 0.060, 22050, VOICE_HZ)


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"voice": "alloy"}, "invalid_field"),
        ({"input": "  "}, "invalid_field"),
        ({"input": "hi", "response_format": "ogg"}, "invalid_field"),
        ({"input": "hi", "speed": 2.0}, "invalid_field"),
        ({"input": "x" * 4001}, "text_too_long"),
    ],
)
async def test_speech_refuses_what_it_cannot_do(server: RunningServer, body: dict, code: str) -> None:
    """Missing input, unsupported formats and speeds, and overlong text are 400s with a stable code."""
    async with http_client(server) as http:
        response = await http.post("/v1/audio/speech", json=body)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == code


async def test_speech_lists_the_formats_it_can_answer(server: RunningServer) -> None:
    """An unsupported ``response_format`` is refused with every supported one named."""
    async with http_client(server) as http:
        response = await http.post("/v1/audio/speech", json={"input": "hi", "response_format": "wma"})
    assert response.status_code == 400
    assert "aac, flac, mp3, opus, pcm, wav" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    ("fmt", "content_type", "codec", "rate"),
    [
        ("opus", "audio/ogg; codecs=opus", "opus", 24000),
        ("mp3", "audio/mpeg", "mp3", 22050),
        ("aac", "audio/aac", "aac", 22050),
        ("flac", "audio/flac", "flac", 22050),
    ],
)
async def test_speech_answers_compressed_formats_that_decode(
    tmp_path: Path, fmt: str, content_type: str, codec: str, rate: int
) -> None:
    """Each compressed ``response_format`` is a stream FFmpeg decodes back to the synthesized audio."""
    source = voiced(1.2, 22050)
    tts = ScriptedTTS([float_to_pcm16(source)])
    async with run_server(tmp_path, {"tts": tts}) as running, http_client(running) as http:
        response = await http.post("/v1/audio/speech", json={"input": "Hello.", "response_format": fmt})
    assert response.status_code == 200
    assert response.headers["content-type"] == content_type
    assert response.headers["x-sample-rate"] == str(rate)
    assert "content-length" not in response.headers  # streamed
    got, stream = decode_file(response.content, 22050)
    assert codec in stream.codec_context.name
    assert similarity(got, source, max_lag=2500)[1] > 0.98


async def test_compressed_speech_streams_each_sentence_as_it_is_synthesized(tmp_path: Path) -> None:
    """The first sentence's bytes arrive while the second is still being synthesized."""
    second_may_start = trio.Event()
    tts = ScriptedTTS([float_to_pcm16(voiced(0.5, 22050)), float_to_pcm16(voiced(0.5, 22050, seed=2))])
    tts.gates[1] = second_may_start
    async with run_server(tmp_path, {"tts": tts}) as running, http_client(running) as http:
        async with http.stream(
            "POST", "/v1/audio/speech", json={"input": "One. Two.", "response_format": "opus"}
        ) as response:
            chunks = response.aiter_bytes()
            first = await chunks.__anext__()
            assert first.startswith(b"OggS") and tts.synthesized == 1
            second_may_start.set()
            rest = b"".join([chunk async for chunk in chunks])
    got, _ = decode_file(first + rest, 22050)
    assert abs(got.size - 22050) <= 0.03 * 22050


async def test_a_synthesis_failure_mid_stream_cuts_the_answer_short(tmp_path: Path) -> None:
    """A failure after the first bytes cannot become a 500: the body ends early, never complete."""
    tts = ScriptedTTS([float_to_pcm16(voiced(0.5, 22050)), SynthesisError("broken voice")])
    async with run_server(tmp_path, {"tts": tts}) as running, http_client(running) as http:
        with pytest.raises(httpx.RemoteProtocolError):
            await http.post("/v1/audio/speech", json={"input": "One. Two.", "response_format": "mp3"})
        assert running.telemetry.errors.labels(code="tts_failed")._value.get() == 1


async def test_a_synthesis_failure_before_any_audio_is_a_clean_500(tmp_path: Path) -> None:
    """A compressed answer that fails on its first sentence is still a JSON 500, as WAV is."""
    async with (
        run_server(tmp_path, {"tts": FakeTTS(fail_on="Boom")}) as running,
        http_client(running) as http,
    ):
        response = await http.post("/v1/audio/speech", json={"input": "Boom.", "response_format": "opus"})
    assert response.status_code == 500 and response.json()["error"]["code"] == "tts_failed"


async def test_speech_requires_the_token(tmp_path: Path) -> None:
    """The speech endpoint is protected like the others."""
    async with run_server(tmp_path, tokens=("t",)) as running, http_client(running) as http:
        response = await http.post("/v1/audio/speech", json={"input": "hi"})
    assert response.status_code == 401


# --- /v1/audio/transcriptions ------------------------------------------------------------------------


async def test_transcription_resamples_the_upload_for_the_recognizer(tmp_path: Path) -> None:
    """A stereo 8 kHz WAV reaches the recognizer as 16 kHz mono, and its text comes back as JSON."""
    stt = FakeSTT(text=lambda audio: "a tone")
    stereo = np.repeat(np.frombuffer(tone(1.0, 8000), dtype="<i2")[:, None], 2, axis=1)
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(stereo.tobytes())
    async with run_server(tmp_path, {"stt": stt}) as running, http_client(running) as http:
        response = await http.post("/v1/audio/transcriptions", **upload(buffer.getvalue(), model="whisper-1"))
    assert response.status_code == 200
    assert response.json() == {"text": "a tone"}
    assert stt.calls == [pytest.approx(1.0, abs=0.01)]


async def test_transcription_can_answer_plain_text(tmp_path: Path) -> None:
    """``response_format=text`` answers the transcript as text/plain."""
    stt = FakeSTT(text=lambda audio: "plain words")
    async with run_server(tmp_path, {"stt": stt}) as running, http_client(running) as http:
        response = await http.post(
            "/v1/audio/transcriptions", **upload(wav_bytes(tone(0.5, 16000), 16000), response_format="text")
        )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert response.text == "plain words"


async def test_transcription_without_a_recognizer_is_503(server: RunningServer) -> None:
    """A server started without speech recognition answers 503 model_unavailable."""
    async with http_client(server) as http:
        response = await http.post("/v1/audio/transcriptions", **upload(wav_bytes(tone(0.5, 16000), 16000)))
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "model_unavailable"


async def test_transcription_refuses_bad_uploads(tmp_path: Path) -> None:
    """Not a WAV, no file, not multipart, another language, or too big: each refused with its code."""
    wav = wav_bytes(tone(0.2, 16000), 16000)
    async with (
        run_server(tmp_path, {"stt": FakeSTT()}, max_frame_bytes=1024) as running,
        http_client(running) as http,
    ):
        url = "/v1/audio/transcriptions"
        answers = {
            "invalid_audio": await http.post(url, **upload(b"RIFF not really")),
            "invalid_field": await http.post(url, data={"model": "whisper-1"}, files={"other": ("x", b"1")}),
            "unsupported_media_type": await http.post(url, json={"file": "x"}),
            # Found by fuzzing: the parser refuses boundaries over 256 bytes, which was a 500.
            "boundary": await http.post(
                url,
                content=b"--x\r\n",
                headers={"content-type": "multipart/form-data; boundary=" + "b" * 300},
            ),
            "language": await http.post(url, **upload(wav, language="fr")),
            "request_too_large": await http.post(url, **upload(wav_bytes(tone(1.0, 16000), 16000))),
        }
    statuses = {code: (r.status_code, r.json()["error"]["code"]) for code, r in answers.items()}
    assert statuses == {
        "invalid_audio": (400, "invalid_audio"),
        "invalid_field": (400, "invalid_field"),
        "unsupported_media_type": (415, "unsupported_media_type"),
        "boundary": (415, "unsupported_media_type"),
        "language": (400, "language_unavailable"),
        "request_too_large": (413, "request_too_large"),
    }
    assert len(wav) < 1024 * 16


# --- real models -------------------------------------------------------------------------------------


@pytest.mark.models
async def test_real_piper_speech_round_trips_through_real_whisper(tmp_path: Path) -> None:
    """Piper's WAV from /v1/audio/speech is 22050 Hz speech of plausible length that whisper transcribes back."""
    from tests.speech import whisper_model_path, word_error_rate
    from trio_voice.stt import Recognizer
    from trio_voice.tts import Synthesizer

    tts = await trio.to_thread.run_sync(Synthesizer.load)
    stt = await trio.to_thread.run_sync(lambda: Recognizer.load(whisper_model_path(), threads=2))
    text = "The weather is lovely today."
    async with run_server(tmp_path, {"tts": tts, "stt": stt}) as running, http_client(running) as http:
        spoken = await http.post("/v1/audio/speech", json={"input": text})
        channels, width, rate, frames = wav_info(spoken.content)
        heard = await http.post("/v1/audio/transcriptions", **upload(spoken.content))
    assert (spoken.status_code, channels, width, rate) == (200, 1, 2, 22050)
    assert 1.0 < frames / rate < 4.0  # five words spoken at a natural pace
    assert heard.status_code == 200
    assert word_error_rate(text, heard.json()["text"]) <= 0.2, heard.json()
