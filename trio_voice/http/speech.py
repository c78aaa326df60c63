"""OpenAI-compatible speech endpoints: ``POST /v1/audio/speech`` (TTS) and ``/v1/audio/transcriptions`` (STT),
and ``GET /v1/voices``, the installed voices.

They follow OpenAI's request and response shapes closely enough that its client libraries work when
pointed at this server (``base_url=http://HOST:PORT/v1``). What this server cannot do is refused
clearly rather than faked: ``voice`` names an installed voice (OpenAI's own voice names, which its SDKs
require, mean the default voice; any other unknown name is ``invalid_field``), ``model`` is ignored,
``speed`` 1.0 only, and a transcription ``language`` other than English needs a multilingual model
(``language_unavailable`` otherwise). Every OpenAI ``response_format`` is served: ``wav``
and ``pcm`` whole, ``opus``, ``mp3``, ``aac`` and ``flac`` streamed as they are synthesized and encoded
(``trio_voice.formats.encoders`` says exactly what each stream holds).

Limits: a speech request body is at most ``max_frame_bytes``, its ``input`` at most ``max_text_chars``;
an upload to transcribe at most ``max_frame_bytes * UPLOAD_FACTOR`` bytes (16 MiB by default: about 8
minutes of 16 kHz 16-bit mono WAV).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs
import numpy as np
import trio

from trio_voice.audio import read_wav, resample, wav_bytes
from trio_voice.codec import codes
from trio_voice.codec.fields import FieldReader
from trio_voice.engines import TTS
from trio_voice.errors import RemoteProtocolError
from trio_voice.formats import OUTPUT_FORMATS, make_output_encoder, pcm_pieces
from trio_voice.languages import AUTO, check_language

from .app import AppContext, Request, Route
from .forms import parse_form

# Audio uploads may be this many times larger than a WebSocket frame.
UPLOAD_FACTOR = 16
# The whole clip, made before the answer starts; the compressed formats are streamed (OUTPUT_FORMATS).
WHOLE_FORMATS = {"wav": "audio/wav", "pcm": "audio/pcm"}
SPEECH_FORMATS = {**WHOLE_FORMATS, **OUTPUT_FORMATS}
STREAM_HEADERS = (("cache-control", "no-cache"), ("x-accel-buffering", "no"))
TRANSCRIPTION_FORMATS = ("json", "text")
# OpenAI's voice names: its SDKs require one, so they stand for the server's default voice.
OPENAI_VOICES = frozenset(
    "alloy ash ballad coral echo fable nova onyx sage shimmer verse marin cedar".split()
)


@attrs.frozen(kw_only=True)
class SpeechRequest:
    """The body of ``POST /v1/audio/speech``."""

    input: str
    response_format: str = "wav"
    voice: str | None = None

    @classmethod
    def from_json(cls, obj: Mapping[str, Any], *, max_text_chars: int) -> SpeechRequest:
        """Raises RemoteProtocolError: ``invalid_field`` or ``text_too_long``.

        Unknown fields are ignored, as OpenAI clients send fields this server has no use for.
        """
        r = FieldReader(obj, where="speech request", request_id=None)
        text = r.read_str("input", required=True, non_blank=True, max_chars=max_text_chars)
        assert text is not None
        r.read_str("model")
        voice = r.read_str("voice", non_blank=True)
        response_format = r.read_str("response_format", choices=SPEECH_FORMATS) or "wav"
        speed = r.read_number("speed", minimum=0.25, maximum=4.0)
        if speed is not None and speed != 1.0:
            raise r.fail("speed", "must be 1.0: this server speaks at its voice's own pace")
        return cls(input=text, response_format=response_format, voice=voice)


def _voice_tts(ctx: AppContext, name: str | None) -> TTS:
    """The engine of voice ``name`` (None: the default). Raises RemoteProtocolError ``invalid_field``."""
    voices = ctx.engines.voices
    if name in OPENAI_VOICES and name not in voices:
        name = None
    if name is not None and name not in voices:
        raise RemoteProtocolError(
            f"speech request: field 'voice' names no installed voice ({', '.join(voices.names)}; see GET /v1/voices)",
            code=codes.INVALID_FIELD,
        )
    return voices.get(name).tts


async def voices(request: Request, ctx: AppContext) -> None:
    """The installed voices: ``{"default": NAME, "voices": [{name, language, sample_rate}, ...]}``."""
    await request.respond_json(200, ctx.engines.voices.describe())


async def speech(request: Request, ctx: AppContext) -> None:
    """Answer ``input`` spoken, in ``response_format``, with ``X-Sample-Rate`` (the encoded audio's rate).

    ``wav`` and ``pcm``: the whole clip is made before the answer starts, so a synthesis failure is a
    clean 500 (``tts_failed``) rather than a truncated 200. The compressed formats stream: each
    sentence is encoded and sent as Piper finishes it, so a failure after the first bytes ends the
    answer early (the body is cut off without its end; the error is logged and counted).
    """
    config = ctx.config
    spoken = SpeechRequest.from_json(
        await request.json_object(limit=config.max_frame_bytes), max_text_chars=config.max_text_chars
    )
    tts = _voice_tts(ctx, spoken.voice)
    if spoken.response_format in OUTPUT_FORMATS:
        await _stream_speech(request, tts, spoken)
        return
    pcm = bytearray()

    async def on_audio(chunk: bytes) -> None:
        pcm.extend(chunk)

    await tts.synthesize(spoken.input, on_audio)
    headers = [("x-sample-rate", str(tts.sample_rate))]
    if spoken.response_format == "pcm":
        await request.respond(200, bytes(pcm), SPEECH_FORMATS["pcm"], headers)
    else:
        await request.respond(200, wav_bytes(bytes(pcm), tts.sample_rate), SPEECH_FORMATS["wav"], headers)


async def _stream_speech(request: Request, tts: TTS, spoken: SpeechRequest) -> None:
    """Encode each sentence as it is synthesized and send its bytes at once.

    The answer starts with the first encoded bytes (so a failure of the first sentence is still a
    clean 500); encoding runs in short pieces, each sent before the next is encoded, so the first
    bytes leave a few milliseconds after the first sentence's audio (see BENCHMARKS.md).
    """
    encoder = make_output_encoder(spoken.response_format, tts.sample_rate)
    headers = [("x-sample-rate", str(encoder.sample_rate)), *STREAM_HEADERS]

    async def send(data: bytes, *, more: bool = True) -> None:
        if not request.started:
            await request.start(200, encoder.content_type, headers)
        await request.write(data, more=more)

    async def on_audio(chunk: bytes) -> None:
        for piece in pcm_pieces(chunk, tts.sample_rate):
            data = encoder.encode(piece)
            if data:
                await send(data)

    await tts.synthesize(spoken.input, on_audio)
    await send(encoder.close(), more=False)


@attrs.frozen(kw_only=True)
class TranscriptionRequest:
    """The form of ``POST /v1/audio/transcriptions``: a WAV ``file`` and options."""

    audio: bytes
    response_format: str = "json"
    language: str | None = None

    @classmethod
    def from_form(cls, form: Mapping[str, Any]) -> TranscriptionRequest:
        """Raises RemoteProtocolError: ``invalid_field`` for a missing file or an unsupported option."""
        if "file" not in form or not form["file"].data:
            raise RemoteProtocolError("form field 'file' (a WAV file) is required", code=codes.INVALID_FIELD)
        fields = {name: part.text() for name, part in form.items() if name != "file"}
        r = FieldReader(fields, where="transcription request", request_id=None)
        r.read_str("model")
        response_format = r.read_str("response_format", choices=TRANSCRIPTION_FORMATS) or "json"
        language = r.read_str("language", non_blank=True)
        if language is not None and language.lower() == "english":
            language = "en"
        return cls(audio=form["file"].data, response_format=response_format, language=language)


def decode_upload(data: bytes, sample_rate: int) -> np.ndarray:
    """A WAV upload as float32 mono at ``sample_rate`` (``invalid_audio`` if it is not a PCM WAV)."""
    try:
        samples, rate = read_wav(data)
    except ValueError as exc:
        raise RemoteProtocolError(
            f"form field 'file' is not a PCM WAV file: {exc}", code=codes.INVALID_AUDIO
        ) from None
    if samples.size == 0:
        raise RemoteProtocolError("form field 'file' holds no audio", code=codes.INVALID_AUDIO)
    return resample(samples, rate, sample_rate).astype(np.float32, copy=False)


async def transcriptions(request: Request, ctx: AppContext) -> None:
    stt = ctx.engines.stt
    if stt is None:
        raise RemoteProtocolError(
            "this server was started without speech recognition", code="model_unavailable"
        )
    body = await request.body(limit=ctx.config.max_frame_bytes * UPLOAD_FACTOR)
    asked = TranscriptionRequest.from_form(parse_form(body, request.header("content-type")))
    if asked.language is not None:
        check_language(asked.language, stt=stt, voices=ctx.engines.voices, voice=None, voice_named=True)
    # Decoding and resampling minutes of audio takes a while: off the event loop, like model work.
    audio = await trio.to_thread.run_sync(decode_upload, asked.audio, stt.sample_rate)
    answer: dict[str, str] = {}
    if asked.language == AUTO:
        answer["text"], answer["language"] = await stt.detect(audio)
    else:
        answer["text"] = await stt.transcribe(audio, language=asked.language)
    if asked.response_format == "text":
        await request.respond(200, answer["text"].encode(), "text/plain; charset=utf-8")
    else:
        await request.respond_json(200, answer)


ROUTES = (
    Route("GET", "/v1/voices", voices),
    Route("POST", "/v1/audio/speech", speech),
    Route("POST", "/v1/audio/transcriptions", transcriptions),
)
