"""Speech-to-text: the shared whisper.cpp model (through pywhispercpp) and the hallucination filter.

One :class:`Recognizer` is built at start-up and shared by every session. A whisper context decodes one
clip at a time, so each recognizer carries a ``CapacityLimiter`` of one (FIFO: sessions take turns
fairly), and :meth:`Recognizer.transcribe` runs the blocking decode in a worker thread behind it.

whisper.cpp encodes a 30 s window unless told otherwise; we set ``audio_ctx`` from the clip length
(about 50 encoder frames per second of audio, plus a margin), which makes short utterances several
times faster to decode. On a shortened window tiny.en now and then repeats itself ("Can you help? Can
you help?"); :func:`is_looping` spots that and the clip is decoded again with the full window. Output
length is capped in proportion to the clip, so a loop stays cheap.

Languages: tiny.en knows English only. A multilingual model (``n_vocab`` 51865 or more, like whisper
base) is asked for the session's language on every call (whisper.cpp keeps the last one otherwise), or
``"auto"``, which detects it: :meth:`Recognizer.detect` also says which language it heard.

Error handling: a model file that is missing or does not load raises ``ModelPreparationError``; a
failure inside whisper.cpp while decoding raises ``RecognitionError`` (mapped in ``_recognition_errors``).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import re
import struct
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from trio_voice.errors import ModelPreparationError, RecognitionError
from trio_voice.fair_queue import FairLimiter
from trio_voice.threads import WaitObserver, run_model_call

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16000
# whisper's encoder makes 50 frames per second of audio; the margin keeps the last word in the window.
AUDIO_CTX_PER_SECOND = 50
AUDIO_CTX_MARGIN = 64
AUDIO_CTX_MAX = 1500  # the full 30 s window
# A shortened window sometimes makes tiny.en repeat itself ("Yes. Yes. Yes. ...", or a whole sentence
# twice; measured on Piper speech: 1 to 4 clips in 24): such a result is decoded again with the full
# window, which did not loop once. Decoding stops after this many tokens per second of audio (plus a
# floor), so a loop costs little: speech rarely exceeds 5 tokens per second.
MAX_TOKENS_PER_SECOND = 10
MAX_TOKENS_FLOOR = 10
_GGML_MAGIC = b"lmgg"  # 0x67676d6c, little-endian
# English-only whisper models have 51864 tokens; the multilingual ones 51865 (51866 for large-v3).
MULTILINGUAL_VOCAB = 51865


def audio_ctx_for(n_samples: int) -> int:
    """The encoder context (in 20 ms frames) to decode ``n_samples`` of 16 kHz audio with."""
    seconds = n_samples / SAMPLE_RATE
    return min(AUDIO_CTX_MAX, math.ceil(AUDIO_CTX_PER_SECOND * seconds) + AUDIO_CTX_MARGIN)


def max_tokens_for(n_samples: int) -> int:
    """The most tokens a clip of ``n_samples`` may decode to: a bound on runaway repetition."""
    return math.ceil(MAX_TOKENS_PER_SECOND * n_samples / SAMPLE_RATE) + MAX_TOKENS_FLOOR


# A run of two or more tokens (words or punctuation) said twice in a row, or one token thrice:
# "Yes. Yes.", "Can you tell me a story? Can you tell me a story?", "() () ()".
_LOOP = re.compile(r"(?:^|\s)(\S+(?:\s\S+){1,63})\s\1(?=\s|$)|(?:^|\s)(\S+)(?:\s\2){2,}(?=\s|$)")
_TOKEN = re.compile(r"\w+|[^\w\s]+")


def is_looping(text: str) -> bool:
    """True when ``text`` repeats itself: a run of words said twice in a row, or one word thrice.

    Real speech does that too ("no no no"); a false alarm only costs a second decode.
    """
    return _LOOP.search(" ".join(_TOKEN.findall(text.lower()))) is not None


class Recognizer:
    """A loaded whisper.cpp model that turns 16 kHz mono float32 clips into text.

    Build it with :meth:`load`. Share one instance between all sessions; ``limiter`` admits one decode
    at a time. ``transcribe_sync`` is also safe to call from several threads (a lock serialises it),
    but async code should use :meth:`transcribe`, which queues fairly on the limiter.
    """

    sample_rate = SAMPLE_RATE

    def __init__(
        self, model, *, threads: int = 2, model_path: Path | None = None, multilingual: bool = False
    ) -> None:
        """Wrap a loaded ``pywhispercpp.model.Model`` (or anything with its ``transcribe``)."""
        self._model = model
        self.multilingual = multilingual
        self._lock = threading.Lock()
        self.threads = threads
        self.model_path = model_path
        self.limiter = FairLimiter(1)  # sessions take turns (trio_voice.fair_queue)
        self.on_queue_wait: WaitObserver | None = None  # seconds each call waited for the limiter

    @classmethod
    def load(cls, model_path: Path, *, threads: int = 2) -> Recognizer:
        """Load a whisper.cpp ggml model file. Blocking (~0.1 s for tiny.en): call it at start-up.

        whisper.cpp's loading messages are captured (through its log callback, installed only while
        the model loads) and logged at DEBUG; when loading fails, they are part of the error message.

        Raises:
            ModelPreparationError: the file is missing, is not a ggml model, or whisper.cpp rejects it.
        """
        model_path = Path(model_path)
        # Only ever hand pywhispercpp an existing file: given anything else it downloads from a hub.
        n_vocab = _check_header(model_path)
        messages: list[str] = []
        try:
            model = _load_model(model_path, threads, messages)
        except Exception as exc:  # the bindings raise ValueError, RuntimeError, ... on a bad file
            raise ModelPreparationError(
                f"whisper.cpp could not load {model_path}: {type(exc).__name__}: {exc}\n{''.join(messages)}"
            ) from exc
        chatter = "".join(messages)
        logger.debug("whisper.cpp loading %s:\n%s", model_path, chatter)
        if "failed to load model" in chatter:
            # The bindings hand back a context wrapping NULL rather than raising: never use it.
            model._ctx = None
            tail = "\n".join(chatter.strip().splitlines()[-3:])
            raise ModelPreparationError(f"whisper.cpp could not load {model_path}:\n{tail}")
        multilingual = n_vocab >= MULTILINGUAL_VOCAB
        logger.info(
            "loaded whisper model %s (%s) with %d threads",
            model_path,
            "multilingual" if multilingual else "English only",
            threads,
        )
        return cls(model, threads=threads, model_path=model_path, multilingual=multilingual)

    def transcribe_sync(
        self, audio: np.ndarray, *, partial: bool = False, language: str | None = None
    ) -> str:
        """Transcribe a clip of 16 kHz mono float32 audio; blocks until done. Returns stripped text.

        A short window sometimes makes whisper repeat itself; a final transcript is then decoded again
        with the full window (about 0.5-0.9 s more). A ``partial`` one (a preview of speech still going
        on) is not worth that, and it would hold the recognizer just when the final arrives: a looping
        partial comes back as "" instead.

        The text may be one of whisper's stock outputs on silence or noise: see :func:`is_hallucination`.

        ``language``: a code (``"de"``) or ``"auto"``, for multilingual models; English-only models ignore it.

        Raises:
            ValueError: ``audio`` is not one-dimensional.
            RecognitionError: whisper.cpp failed.
        """
        return self._transcribe_sync(audio, partial=partial, language=language)[0]

    def detect_sync(self, audio: np.ndarray) -> tuple[str, str]:
        """Transcribe ``audio`` in the language whisper hears in it; return ``(text, language code)``.

        Raises:
            ValueError, RecognitionError: as :meth:`transcribe_sync`.
        """
        return self._transcribe_sync(audio, partial=False, language="auto")

    def _transcribe_sync(self, audio: np.ndarray, *, partial: bool, language: str | None) -> tuple[str, str]:
        if not self.multilingual:
            language = None  # tiny.en is English whatever it is told; its fakes take no language
        elif language is None:
            language = "en"
        audio = np.ascontiguousarray(audio, dtype=np.float32)
        if audio.ndim != 1:
            raise ValueError(f"audio must be mono (one dimension), got shape {audio.shape}")
        heard = language if language not in (None, "auto") else "en"
        if audio.size == 0:
            return "", heard
        max_tokens = max_tokens_for(audio.size)
        with self._lock, _recognition_errors():
            text = self._decode(audio, audio_ctx_for(audio.size), max_tokens, language)
            if is_looping(text):
                if partial:
                    logger.debug("whisper looped on a partial clip (%r); dropping it", text)
                    return "", heard
                logger.debug("whisper looped with a short window (%r); decoding with the full one", text)
                text = self._decode(audio, AUDIO_CTX_MAX, max_tokens, language)
            if language == "auto":
                heard = _detected_language(self._model)
        return text, heard

    def _decode(self, audio: np.ndarray, audio_ctx: int, max_tokens: int, language: str | None) -> str:
        params = {"audio_ctx": audio_ctx, "max_tokens": max_tokens}
        if language is not None:
            params["language"] = language
        segments = self._model.transcribe(audio, **params)
        return " ".join(s.text.strip() for s in segments).strip()

    async def detect(self, audio: np.ndarray) -> tuple[str, str]:
        """:meth:`detect_sync` in a worker thread, waiting in line on ``limiter`` (as :meth:`transcribe`)."""
        return await run_model_call(self.detect_sync, audio, limiter=self.limiter, on_wait=self.on_queue_wait)

    async def transcribe(
        self, audio: np.ndarray, *, partial: bool = False, language: str | None = None
    ) -> str:
        """Transcribe a clip in a worker thread, waiting in line on ``limiter``.

        Cancellation: while waiting in line, immediate. Once the decode has started, the call
        returns (raising ``Cancelled``) only when it ends: whisper.cpp is not interrupted midway. A
        short-window decode of a few seconds of speech takes ~0.1 s on two cores.

        Raises:
            RecognitionError: whisper.cpp failed.
        """
        return await run_model_call(
            functools.partial(self.transcribe_sync, partial=partial, language=language),
            audio,
            limiter=self.limiter,
            on_wait=self.on_queue_wait,
        )


def _detected_language(model) -> str:  # type: ignore[no-untyped-def]
    """The language whisper.cpp detected in its last decode (``language="auto"``)."""
    import _pywhispercpp

    return str(_pywhispercpp.whisper_lang_str(_pywhispercpp.whisper_full_lang_id(model._ctx)))


def _check_header(model_path: Path) -> int:
    """Refuse a file whose ggml header is implausible (whisper.cpp trusts it and may crash on it);
    return its vocabulary size."""
    try:
        with open(model_path, "rb") as f:
            header = f.read(4 + 4 * 11)
    except OSError as exc:
        raise ModelPreparationError(f"cannot open the whisper model {model_path}: {exc}") from exc
    if header[:4] != _GGML_MAGIC:
        raise ModelPreparationError(
            f"{model_path} is not a whisper.cpp ggml model (bad magic {header[:4]!r})"
        )
    if len(header) < 48:
        raise ModelPreparationError(f"{model_path} is truncated: its ggml header is incomplete")
    *sizes, ftype = struct.unpack("<11i", header[4:])
    if min(sizes) <= 0 or max(sizes) > 1_000_000 or not 0 <= ftype % 1000 <= 64:
        raise ModelPreparationError(f"{model_path} has an implausible ggml header {(*sizes, ftype)}")
    return sizes[0]


def _load_model(model_path: Path, threads: int, messages: list[str]):
    """Build pywhispercpp's Model from a file path (never a bare name: that would download).

    whisper.cpp's log messages go to ``messages`` meanwhile. The log callback is process-wide, so it
    is put back to the default (stderr) at once: a Python callback left installed crashes the
    interpreter at exit.
    """
    # Imported here so that the text helpers above work without the native bindings.
    import _pywhispercpp
    from pywhispercpp.model import Model

    _pywhispercpp.whisper_log_set(lambda level, text: messages.append(text))
    try:
        return Model(
            str(model_path.resolve()),
            n_threads=threads,
            print_progress=False,
            print_realtime=False,
            print_timestamps=False,
            single_segment=True,
            # With timestamps on, tiny.en loops less often on a shortened window (it can predict
            # where speech ends); they are not part of the text either way.
            no_timestamps=False,
            no_context=True,
            language="en",
            # No fallback to sampling at higher temperatures: on noise it multiplies the work
            # (five candidates per temperature) for a result that is thrown away anyway.
            temperature_inc=0.0,
        )
    finally:
        _pywhispercpp.whisper_log_set(None)


@contextlib.contextmanager
def _recognition_errors() -> Iterator[None]:
    """Map whatever pywhispercpp or whisper.cpp raises while decoding into ``RecognitionError``."""
    try:
        yield
    except Exception as exc:  # the bindings raise RuntimeError, TypeError, ...: all mean the same to us
        raise RecognitionError(f"whisper.cpp failed: {type(exc).__name__}: {exc}") from exc


# --- hallucinations --------------------------------------------------------------------------------

# What whisper (tiny.en especially) says to silence, noise, music or breathing, normalised to lowercase
# words. Matched against whole sentences only: "thank you for the help" is speech, "thank you" is not.
_STOCK_PHRASES = frozenset(
    {
        "you",
        "thank you",
        "thank you very much",
        "thank you so much",
        "thanks",
        "thanks for watching",
        "thank you for watching",
        "thanks for listening",
        "thank you for listening",
        "please subscribe",
        "like and subscribe",
        "bye",
        "bye bye",
        "the end",
    }
)
# Sound tags: [BLANK_AUDIO], [Music], (music), (coughs), *cough*, ♪ ...
_TAG = r"\[[^\]]*\]|\([^)]*\)|\*[^*]*\*|[♪♫]+"
_ONLY_TAGS = re.compile(rf"^(?:\s*(?:{_TAG})\s*[.,!?]*)*\s*$")
_CREDITS = re.compile(r"\b(?:subtitles by|transcribed by|translated by|captions by|amara\.org)\b")
_ALNUM = re.compile(r"[^\W_]")
_SENTENCE_END = re.compile(r"[.!?…]+")
_NOT_WORD = re.compile(r"[^a-z0-9']+")


def is_hallucination(text: str, *, clear_speech: bool = False) -> bool:
    """True when ``text`` is what whisper typically makes of silence or noise rather than speech.

    With ``clear_speech`` (the VAD was confident the clip is a voice), stock phrases are believed:
    a user who says "Thank you." means it. Empty text, tags and credits are never believed.

    That is: no letter or digit at all (``""``, ``"..."``, ``"() ()"``); only sound tags (``[BLANK_AUDIO]``, ``(music)``, ``*cough*``,
    ``♪``); subtitle credits; or sentences that are each a stock phrase ("Thank you.", "you",
    "Thanks for watching!"), possibly repeated.
    """
    lowered = text.strip().lower()
    if not _ALNUM.search(lowered) or _ONLY_TAGS.match(lowered) or _CREDITS.search(lowered):
        return True
    sentences = [_NOT_WORD.sub(" ", s).strip() for s in _SENTENCE_END.split(lowered)]
    sentences = [s for s in sentences if s]
    return not clear_speech and all(s in _STOCK_PHRASES for s in sentences)
