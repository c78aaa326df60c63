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
from .errors import ModelPreparationError
from .llm import EmbeddedLLMStats, LLMClient, serve_embedded_llm
from .llm.client import make_http_client
from .storage import open_store
from .telemetry import Telemetry
from .tts_cache import CachedTTS

logger = logging.getLogger(__name__)

# Connect timeout for LLM HTTP calls; read timeouts are the turn's (first-token and stall deadlines).
LLM_CONNECT_TIMEOUT = 5.0
# The packaged Piper voice's name: the TTS cache's key when no --tts-model is given.
DEFAULT_VOICE = "en_US-joe-medium"


@attrs.define
class Loaded:
    """Engines as they finish loading in parallel."""

    tts: object = None
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
        loaded.tts.on_queue_wait = partial(telemetry.observe_queue_wait, "tts")  # type: ignore[attr-defined]
        loaded.stt.on_queue_wait = partial(telemetry.observe_queue_wait, "stt")  # type: ignore[attr-defined]
        tts = await _cached_tts(config, loaded.tts, telemetry)  # type: ignore[arg-type]
        logger.info("engines ready: LLM %s (%s), TTS %s Hz", base_url, api, tts.sample_rate)
        yield Engines(
            llm=llm,
            tts=tts,  # type: ignore[arg-type]
            stt=loaded.stt,  # type: ignore[arg-type]
            vad_factory=loaded.vad_factory,  # type: ignore[arg-type]
            turn_model=loaded.turn_model,  # type: ignore[arg-type]
            store=store,
        )


async def _cached_tts(config: Config, tts: TTS, telemetry: Telemetry) -> TTS:
    """The TTS engine behind its cache, warmed with ``config.tts_cache_warmup`` (or as is, if disabled)."""
    if config.tts_cache_mb <= 0:
        return tts
    voice = config.tts_model.stem if config.tts_model is not None else DEFAULT_VOICE
    cached = CachedTTS(
        tts, max_bytes=int(config.tts_cache_mb * 2**20), max_chars=config.tts_cache_max_chars, voice=voice
    )
    telemetry.watch_tts_cache(cached.statistics)
    if config.tts_cache_warmup:
        started = trio.current_time()
        count = await cached.warm(config.tts_cache_warmup)
        logger.info(
            "TTS cache warmed: %d phrase(s), %d bytes, in %.2f s",
            count,
            cached.statistics().bytes,
            trio.current_time() - started,
        )
    return cached


async def _load_tts(config: Config, loaded: Loaded) -> None:
    from .tts import Synthesizer

    loaded.tts = await trio.to_thread.run_sync(
        partial(
            Synthesizer.load, config.tts_model, instances=config.tts_instances, threads=config.tts_threads
        )
    )


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
    from .vad import SileroVAD

    model = config.stt_model
    if model is None:
        model = await trio.to_thread.run_sync(ensure_whisper_model, config.data_dir / "models")
    stt = await trio.to_thread.run_sync(partial(Recognizer.load, model, threads=config.stt_threads))
    await trio.to_thread.run_sync(stt.transcribe_sync, np.zeros(stt.sample_rate, dtype=np.float32))  # warm-up
    loaded.stt = stt
    loaded.vad_factory = SileroVAD
