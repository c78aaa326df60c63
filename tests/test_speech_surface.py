"""Voices, languages and compressed audio through a real server with fake engines (the codecs are real)."""

from __future__ import annotations

import base64

import httpx
import numpy as np
import pytest

from tests.audio_codecs import decode_file, encode_opus, voiced
from tests.conftest import IO_TIMEOUT, Client, connect, run_server
from trio_voice.audio import float_to_pcm16
from trio_voice.testing import FakeSTT, FakeTTS, FakeVAD
from trio_voice.voices import Voice, Voices

from .test_voice_session import FRAME_S, stream


def two_voices(joe: FakeTTS | None = None, other: FakeTTS | None = None) -> Voices:
    """The packaged voice's name on a fake, and a German 'thorsten' on another (24 kHz, so it is told apart)."""
    joe = joe or FakeTTS()
    other = other or FakeTTS(sample_rate=24000)
    return Voices(
        [
            Voice("en_US-joe-medium", "en_US", joe.sample_rate, joe),
            Voice("de_DE-thorsten-medium", "de_DE", other.sample_rate, other),
        ]
    )


def engines_with_voices(**extra) -> dict:
    joe, other = FakeTTS(), FakeTTS(sample_rate=24000)
    return {"tts": joe, "voices": two_voices(joe, other), **extra}


def audio_of(events: list[dict]) -> bytes:
    return b"".join(base64.b64decode(e["audio"]) for e in events if e["type"] == "response.audio.delta")


# --- voices --------------------------------------------------------------------------------------------


async def test_voices_are_listed_with_language_and_rate(tmp_path) -> None:
    """GET /v1/voices names the default and each voice's language and sample rate."""
    async with run_server(tmp_path, engines_with_voices()) as server:
        async with httpx.AsyncClient(base_url=server.http_url, timeout=IO_TIMEOUT) as http:
            body = (await http.get("/v1/voices")).json()
    assert body == {
        "default": "en_US-joe-medium",
        "voices": [
            {"name": "en_US-joe-medium", "language": "en_US", "sample_rate": 22050},
            {"name": "de_DE-thorsten-medium", "language": "de_DE", "sample_rate": 24000},
        ],
    }


async def test_a_session_voice_and_a_speak_voice_choose_the_engine(tmp_path) -> None:
    """session.update {voice} switches every later reply; speak {voice} one request; unknown is invalid_field."""
    engines = engines_with_voices()
    joe, other = engines["tts"], engines["voices"].get("de_DE-thorsten-medium").tts
    async with run_server(tmp_path, engines) as server, connect(server.ws_url) as client:
        await client.send({"type": "session.update", "voice": "de_DE-thorsten-medium"})
        updated = (await client.recv_until("session.updated"))[-1]
        first = await client.reply({"type": "speak", "text": "Guten Tag."})
        second = await client.reply({"type": "speak", "text": "Hello.", "voice": "en_US-joe-medium"})
        await client.send({"type": "speak", "text": "Hi.", "voice": "nobody"})
        await client.send({"type": "session.update", "voice": "nobody"})
        errors = [(await client.recv_until("error"))[-1] for _ in range(2)]
    assert (updated["config"]["voice"], updated["config"]["output_sample_rate"]) == (
        "de_DE-thorsten-medium",
        24000,
    )
    assert {e["sample_rate"] for e in first if e["type"] == "response.audio.delta"} == {24000}
    assert {e["sample_rate"] for e in second if e["type"] == "response.audio.delta"} == {22050}
    assert other.started == ["Guten Tag."] and joe.started == ["Hello."]
    assert [e["code"] for e in errors] == ["invalid_field", "invalid_field"]
    assert "en_US-joe-medium" in errors[0]["message"]


async def test_speech_endpoint_takes_a_voice(tmp_path) -> None:
    """/v1/audio/speech speaks in the named voice; OpenAI's names mean the default; others are refused."""
    async with run_server(tmp_path, engines_with_voices()) as server:
        async with httpx.AsyncClient(base_url=server.http_url, timeout=IO_TIMEOUT) as http:
            other = await http.post(
                "/v1/audio/speech", json={"input": "Hallo.", "voice": "de_DE-thorsten-medium"}
            )
            alloy = await http.post("/v1/audio/speech", json={"input": "Hi.", "voice": "alloy"})
            bad = await http.post("/v1/audio/speech", json={"input": "Hi.", "voice": "nobody"})
    assert (other.status_code, other.headers["x-sample-rate"]) == (200, "24000")
    assert (alloy.status_code, alloy.headers["x-sample-rate"]) == (200, "22050")
    assert (bad.status_code, bad.json()["error"]["code"]) == (400, "invalid_field")


# --- languages ---------------------------------------------------------------------------------------


async def test_a_language_needs_a_multilingual_recognizer_and_a_voice(tmp_path) -> None:
    """English-only STT refuses 'de' and 'auto'; with a multilingual one, 'de' switches to the German
    voice, 'fr' is refused naming the missing voice, and a refused update changes nothing."""
    async with run_server(tmp_path, engines_with_voices(stt=FakeSTT(), vad_factory=FakeVAD)) as server:
        async with connect(server.ws_url) as client:
            for language in ("de", "auto"):
                await client.send(
                    {"type": "session.update", "language": language, "voice": "en_US-joe-medium"}
                )
                error = (await client.recv_until("error"))[-1]
                assert error["code"] == "language_unavailable" and "multilingual" in error["message"]
    stt = FakeSTT(multilingual=True)
    async with run_server(tmp_path, engines_with_voices(stt=stt, vad_factory=FakeVAD)) as server:
        async with connect(server.ws_url) as client:
            await client.send({"type": "session.update", "language": "de"})
            updated = (await client.recv_until("session.updated"))[-1]["config"]
            await client.send({"type": "session.update", "language": "fr", "output_audio": False})
            error = (await client.recv_until("error"))[-1]
            await client.send({"type": "session.update"})
            unchanged = (await client.recv_until("session.updated"))[-1]["config"]
    assert (updated["language"], updated["voice"]) == ("de", "de_DE-thorsten-medium")
    assert error["code"] == "language_unavailable" and "no installed voice speaks 'fr'" in error["message"]
    assert (unchanged["language"], unchanged["output_audio"]) == ("de", True)


async def test_the_recognizer_hears_the_session_language(tmp_path) -> None:
    """Spoken turns and transcribe clips are transcribed in the session's language (or the clip's own)."""
    stt = FakeSTT(multilingual=True)
    async with run_server(tmp_path, engines_with_voices(stt=stt, vad_factory=FakeVAD)) as server:
        async with connect(server.ws_url) as client:
            await client.send({"type": "session.update", "language": "de"})
            await client.recv_until("session.updated")
            await stream(client, utterance_pcm(1.0))
            events = await client.recv_until("response.done")
            clip = base64.b64encode(utterance_pcm(0.5)).decode()
            await client.send({"type": "transcribe", "request_id": "t", "audio": clip, "language": "es"})
            await client.recv_until("transcript.final", request_id="t")
    reply = [e for e in events if e["type"] == "response.audio.delta"]
    assert reply and {e["sample_rate"] for e in reply} == {24000}  # answered by the German voice
    assert "de" in stt.languages and stt.languages[-1] == "es"


async def test_auto_reports_the_detected_language_and_answers_in_its_voice(tmp_path) -> None:
    """language 'auto': transcript.final carries the detected language; the reply uses a voice of it."""
    stt = FakeSTT(multilingual=True, detected="de")
    async with run_server(tmp_path, engines_with_voices(stt=stt, vad_factory=FakeVAD)) as server:
        async with connect(server.ws_url) as client:
            await client.send({"type": "session.update", "language": "auto"})
            config = (await client.recv_until("session.updated"))[-1]["config"]
            await stream(client, utterance_pcm(1.0))
            events = await client.recv_until("response.done")
    assert (config["language"], config["voice"]) == ("auto", "en_US-joe-medium")
    final = next(e for e in events if e["type"] == "transcript.final")
    assert final["language"] == "de"
    assert {e["sample_rate"] for e in events if e["type"] == "response.audio.delta"} == {24000}


def utterance_pcm(seconds: float) -> bytes:
    from trio_voice.testing import utterance

    return utterance(seconds, lead_silence_s=0.2)


# --- compressed audio --------------------------------------------------------------------------------


def webm_blobs(seconds: float, *, lead_silence_s: float = 0.2, tail_silence_s: float = 0.8) -> list[bytes]:
    """A voiced stretch as WebM/Opus by FFmpeg's muxer, cut into 250 ms-ish blobs like MediaRecorder's."""
    rate = 48000
    audio = np.concatenate(
        [
            np.zeros(int(lead_silence_s * rate), np.float32),
            voiced(seconds, rate),
            np.zeros(int(tail_silence_s * rate), np.float32),
        ]
    )
    data = encode_opus(audio, rate, "webm")
    step = max(1, len(data) // int((lead_silence_s + seconds + tail_silence_s) * 4))
    return [data[i : i + step] for i in range(0, len(data), step)]


async def send_blobs(client: Client, blobs: list[bytes]) -> None:
    import trio

    for blob in blobs:
        await client.send(blob)
        await trio.sleep(FRAME_S)


async def test_webm_opus_frames_are_decoded_and_heard_as_speech(tmp_path) -> None:
    """MediaRecorder-style WebM/Opus blobs (odd sizes, header in the first) give a spoken turn whose
    audio reached the recognizer at its length; clear does not lose the stream's header."""
    stt = FakeSTT()
    async with (
        run_server(tmp_path, {"stt": stt, "vad_factory": FakeVAD}) as server,
        connect(server.ws_url) as client,
    ):
        await client.send({"type": "session.update", "input_audio_format": "webm"})
        assert (await client.recv_until("session.updated"))[-1]["config"]["input_audio_format"] == "webm"
        blobs = webm_blobs(1.2)
        await send_blobs(client, blobs[:1])
        await client.send({"type": "input_audio.clear"})
        await send_blobs(client, blobs[1:])
        events = await client.recv_until("response.done")
    final = next(e for e in events if e["type"] == "transcript.final")
    seconds = float(final["text"].split()[3])  # FakeSTT: "I spoke for N seconds"
    assert 1.1 <= seconds <= 1.8


async def test_bad_compressed_input_is_refused_and_pcm_json_is_not_mixed_in(tmp_path) -> None:
    """Garbage in a webm session is invalid_audio (and the session goes on); input_audio.append is refused."""
    async with (
        run_server(tmp_path, {"stt": FakeSTT(), "vad_factory": FakeVAD}) as server,
        connect(server.ws_url) as client,
    ):
        await client.send({"type": "session.update", "input_audio_format": "webm"})
        await client.recv_until("session.updated")
        await client.send(b"this is not webm at all")
        first = (await client.recv_until("error"))[-1]
        await client.send({"type": "input_audio.append", "audio": "AAAAAA=="})
        second = (await client.recv_until("error"))[-1]
        await client.send({"type": "ping", "request_id": "p"})
        await client.recv_until("pong")
    assert first["code"] == second["code"] == "invalid_audio"
    assert "binary frames" in second["message"]


async def test_a_compressed_transcribe_clip_is_decoded_on_its_own(tmp_path) -> None:
    """transcribe {format: opus} decodes the whole Ogg/Opus clip with a fresh decoder."""
    stt = FakeSTT()
    clip = encode_opus(voiced(0.8, 48000), 48000, "ogg")
    async with (
        run_server(tmp_path, {"stt": stt, "vad_factory": FakeVAD}) as server,
        connect(server.ws_url) as client,
    ):
        await client.send(
            {
                "type": "transcribe",
                "request_id": "t",
                "format": "opus",
                "audio": base64.b64encode(clip).decode(),
            }
        )
        final = (await client.recv_until("transcript.final"))[-1]
    assert final["text"] == "I spoke for 0.8 seconds"


@pytest.mark.parametrize(("fmt", "rate"), [("opus", 24000), ("mp3", 22050), ("aac", 22050)])
async def test_reply_audio_is_one_encoded_stream_of_the_whole_reply(tmp_path, fmt: str, rate: int) -> None:
    """With output_audio_format, a reply's audio deltas concatenate to one file FFmpeg decodes to the
    reply's length (PCM length, give or take the codec's padding per phrase)."""
    tts = FakeTTS(ms_per_char=40.0)
    async with run_server(tmp_path, {"tts": tts}) as server, connect(server.ws_url) as client:
        await client.send({"type": "session.update", "output_audio_format": fmt})
        config = (await client.recv_until("session.updated"))[-1]["config"]
        events = await client.reply(
            {"type": "speak", "text": "The first phrase is here. And the second one follows it."}
        )
    deltas = [e for e in events if e["type"] == "response.audio.delta"]
    assert config["output_sample_rate"] == rate and {(e["format"], e["sample_rate"]) for e in deltas} == {
        (fmt, rate)
    }
    assert sorted({e["index"] for e in deltas}) == [0, 1]
    decoded, _ = decode_file(audio_of(events), 16000)
    done = events[-1]
    expected_s = done["metrics"]["audio_ms"] / 1000
    assert expected_s - 0.03 <= decoded.size / 16000 <= expected_s + 0.25
    assert done["metrics"]["first_audio_ms"] is not None


async def test_a_cancelled_encoded_reply_sends_nothing_after_done(tmp_path) -> None:
    """Cancelling an Opus reply drops its encoder: nothing of it follows response.done."""
    tts = FakeTTS(delay=lambda text: 0.1)
    async with run_server(tmp_path, {"tts": tts}) as server, connect(server.ws_url) as client:
        await client.send({"type": "session.update", "output_audio_format": "opus"})
        await client.recv_until("session.updated")
        await client.send({"type": "speak", "text": "One. Two. Three. Four. Five. Six. Seven."})
        first = await client.recv_until("response.audio.delta")
        await client.send({"type": "response.cancel"})
        rest = await client.recv_until("response.done")
        await client.expect_quiet()
    assert rest[-1]["status"] == "cancelled"
    assert audio_of(first + rest).startswith(b"OggS") and tts.active == 0


def test_pcm_of_a_voiced_stretch_is_what_the_webm_helper_encodes() -> None:
    """The WebM helper's audio decodes back to about its length (so the session test measures decoding)."""
    blobs = webm_blobs(1.0, lead_silence_s=0.0, tail_silence_s=0.0)
    decoded, _ = decode_file(b"".join(blobs), 16000)
    assert abs(decoded.size / 16000 - 1.0) < 0.05
    assert len(float_to_pcm16(decoded)) == decoded.size * 2
