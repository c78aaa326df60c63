"""End of turn from the sound of speech: the Smart Turn v3.2 model on onnxruntime, shared by all sessions.

A pause in speech is either the end of the user's turn ("What is the capital of France?") or a breath in
the middle of it ("What is the capital of … France?"). Smart Turn (BSD-2, by the pipecat team) tells the
two apart from the audio itself, prosody included: Whisper tiny's encoder with a classifier, int8, 8.7 MB.
It reads the last 8 s of the utterance as log-mel features (``trio_voice.turn_features``) and returns
the probability that the turn is complete.

The model file ships inside the ``pipecat-ai`` wheel, which ``tools/install.sh`` installs with
``--no-deps`` for that file alone. :func:`model_path` finds it with ``importlib.util.find_spec``, which
locates the package without running any of it: no framework code enters the process.

One :class:`EndOfTurnModel` is built at start-up and shared. Its onnxruntime session runs one call at a
time behind ``limiter`` (FIFO, so sessions take turns fairly), with ``threads`` intra-op threads (default
1), one inter-op thread, and thread spinning off: an idle onnxruntime worker otherwise keeps spinning on a
core after each call, which on two cores taxes whatever whisper.cpp, llama.cpp or Piper run next.

Error handling: a model that is missing or does not load raises ``ModelPreparationError``; a failure
inside onnxruntime while predicting raises ``TurnModelError`` (mapped in ``_prediction_errors``). A
listener that gets one should fall back to ending the turn on silence: a broken turn model must not stop
anybody from being answered.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import math
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnxruntime
from onnxruntime.capi import onnxruntime_pybind11_state as _ort_state

from .errors import ModelPreparationError, TurnModelError
from .fair_queue import FairLimiter
from .threads import WaitObserver, run_model_call
from .turn_features import SAMPLE_RATE, model_input

logger = logging.getLogger(__name__)

MODEL_PACKAGE = "pipecat"  # the import name of the pipecat-ai wheel; located, never imported
MODEL_FILE = "audio/turn/smart_turn/data/smart-turn-v3.2-cpu.onnx"
# Intra-op threads for one call. Measured here (2 cores): ~25-70 ms with 1 thread depending on load,
# ~40 ms with 2; one thread leaves the other core to whatever else is running.
DEFAULT_THREADS = 1
_INPUT = "input_features"

_ORT_ERRORS: tuple[type[BaseException], ...] = (
    RuntimeError,
    ValueError,
    *(v for v in vars(_ort_state).values() if isinstance(v, type) and issubclass(v, Exception)),
)


def model_path() -> Path:
    """The Smart Turn v3.2 CPU model shipped in the ``pipecat-ai`` wheel (located without importing it).

    Raises:
        ModelPreparationError: the package is not installed or does not hold the file.
    """
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelPreparationError(
            "semantic turn detection needs the Smart Turn model from the pipecat-ai wheel, which is not "
            "installed: `pip install --no-deps pipecat-ai` (only its model file is used)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / MODEL_FILE
    if not path.is_file():
        raise ModelPreparationError(f"the package pipecat-ai is installed but {path} is missing")
    return path


def session_options(threads: int) -> onnxruntime.SessionOptions:
    """onnxruntime options for a short call on a shared two-core machine: few threads, none spinning."""
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Worker threads sleep as soon as a call ends instead of spinning for more work.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


class EndOfTurnModel:
    """The loaded Smart Turn model: 16 kHz mono audio of an utterance in, P(turn complete) out.

    Build it with :meth:`load`. Share one instance between all sessions; ``limiter`` admits one call at a
    time. ``predict_sync`` is also safe from several threads (a lock serialises it), but async code
    should use :meth:`predict`, which queues fairly on the limiter.
    """

    sample_rate = SAMPLE_RATE

    def __init__(self, session, *, threads: int = DEFAULT_THREADS, path: Path | None = None) -> None:  # type: ignore[no-untyped-def]
        """Wrap a loaded ``onnxruntime.InferenceSession`` of the model (or anything with its ``run``)."""
        self._session = session
        self._lock = threading.Lock()
        self.threads = threads
        self.path = path
        self.limiter = FairLimiter(1)  # sessions take turns (trio_voice.fair_queue)
        self.on_queue_wait: WaitObserver | None = None  # seconds each call waited for the limiter

    @classmethod
    def load(cls, path: Path | None = None, *, threads: int = DEFAULT_THREADS) -> EndOfTurnModel:
        """Load the model (default: the one in the ``pipecat-ai`` wheel) and run it once to warm it up.

        Blocking, about 0.2 s: call it at start-up, from a worker thread if a Trio loop is running.

        Raises:
            ValueError: ``threads`` is below 1.
            ModelPreparationError: the file is missing, is not this model, or onnxruntime rejects it.
        """
        if threads < 1:
            raise ValueError(f"threads must be >= 1, not {threads}")
        path = Path(path) if path is not None else model_path()
        try:
            session = onnxruntime.InferenceSession(
                str(path), sess_options=session_options(threads), providers=["CPUExecutionProvider"]
            )
        except _ORT_ERRORS as exc:
            raise ModelPreparationError(
                f"onnxruntime could not load the turn model {path}: {type(exc).__name__}: {exc}"
            ) from exc
        inputs = [i.name for i in session.get_inputs()]
        if inputs != [_INPUT]:
            raise ModelPreparationError(f"{path} is not a Smart Turn v3 model: its inputs are {inputs}")
        model = cls(session, threads=threads, path=path)
        try:
            model.predict_sync(np.zeros(SAMPLE_RATE, dtype=np.float32))  # the first run allocates
        except TurnModelError as exc:
            raise ModelPreparationError(f"the turn model {path} loads but does not run: {exc}") from exc
        logger.info("loaded turn model %s with %d thread(s)", path.name, threads)
        return model

    def predict_sync(self, audio: np.ndarray) -> float:
        """P(the user's turn is complete) given the utterance so far; blocks for one model call.

        ``audio`` is 16 kHz mono float32: the whole utterance (from a little before speech started)
        up to now, pause included. Only its last 8 s are read.

        Raises:
            ValueError: ``audio`` is not one-dimensional.
            TurnModelError: onnxruntime failed, or the model returned something that is not a probability.
        """
        features = model_input(audio)
        with self._lock, _prediction_errors():
            outputs = self._session.run(None, {_INPUT: features})
        probability = float(np.asarray(outputs[0]).reshape(-1)[0])
        # The exported graph ends in a sigmoid (its output is misleadingly named "logits").
        if not (math.isfinite(probability) and 0.0 <= probability <= 1.0):
            raise TurnModelError(f"the turn model returned {probability!r}, not a probability")
        return probability

    async def predict(self, audio: np.ndarray) -> float:
        """:meth:`predict_sync` in a worker thread, waiting in line on ``limiter``.

        Cancellation: immediate while waiting in line; once the call has started, it returns (raising
        ``Cancelled``) only when the call ends, some tens of milliseconds later.

        Raises:
            TurnModelError: onnxruntime failed.
        """
        return await run_model_call(
            self.predict_sync, audio, limiter=self.limiter, on_wait=self.on_queue_wait
        )


@contextlib.contextmanager
def _prediction_errors() -> Iterator[None]:
    """Map whatever onnxruntime raises while running the model into ``TurnModelError``."""
    try:
        yield
    except _ORT_ERRORS as exc:
        raise TurnModelError(f"the turn model failed: {type(exc).__name__}: {exc}") from exc
