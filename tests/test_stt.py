"""Tests of speech-to-text: the hallucination filter, model loading errors, and whisper.cpp on real speech."""

from __future__ import annotations

import types

import numpy as np
import pytest
import trio

from tests.speech import synthesize_speech, whisper_model_path, word_error_rate
from trio_voice.errors import ModelPreparationError, RecognitionError
from trio_voice.stt import (
    AUDIO_CTX_MAX,
    Recognizer,
    audio_ctx_for,
    is_hallucination,
    is_looping,
    max_tokens_for,
)

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Please turn on the lights in the kitchen.",
    "What is the weather like in Paris tomorrow?",
]


@pytest.fixture(scope="module")
def recognizer() -> Recognizer:
    return Recognizer.load(whisper_model_path(), threads=2)


# --- hallucination filter --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        ".",
        "...",
        "you",
        "You.",
        "Thank you.",
        " Thank you. Thank you. ",
        "Thanks for watching!",
        "Thank you for watching.",
        "[BLANK_AUDIO]",
        "[Music]",
        "(music)",
        "(upbeat music)",
        "*cough*",
        "[Music] [Applause]",
        "♪ ♪",
        "Subtitles by the Amara.org community",
    ],
)
def test_stock_outputs_on_silence_are_hallucinations(text):
    """What whisper says to silence, noise and music is recognised as such."""
    assert is_hallucination(text)


@pytest.mark.parametrize(
    "text",
    [
        "Hello.",
        "Thank you for the help.",
        "You should see this.",
        "Can you hear me?",
        "[Music] Turn it down please.",
        "Thanks. Now what time is it?",
        "The end of the road is near.",
    ],
)
def test_real_sentences_are_not_hallucinations(text):
    """Speech that merely contains a stock phrase or a tag is kept."""
    assert not is_hallucination(text)


# --- audio context ---------------------------------------------------------------------------------


def test_audio_ctx_grows_with_clip_length():
    """50 encoder frames per second of audio plus a margin of 64."""
    assert audio_ctx_for(16000) == 114
    assert audio_ctx_for(2 * 16000) == 164
    assert audio_ctx_for(16001) == 115


def test_audio_ctx_is_capped_at_the_full_window():
    """Clips of 30 s or more use whisper's whole 1500-frame window."""
    assert audio_ctx_for(29 * 16000) == 1500
    assert audio_ctx_for(60 * 16000) == 1500


def test_max_tokens_grow_with_clip_length():
    """Output is capped at 10 tokens per second of audio plus 10."""
    assert max_tokens_for(0) == 10
    assert max_tokens_for(2 * 16000) == 30


# --- loop detection --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "Yes. Yes. Yes. Yes",
        "Yes. Yes.",
        "No No No No",
        "Can you tell me a story? Can you tell me a story? Can you",
        "Hello there. Hello there. Hello",
        "() () () (",
    ],
)
def test_repeated_runs_are_loops(text):
    """A phrase said twice in a row, or a single word thrice, counts as whisper looping."""
    assert is_looping(text)


@pytest.mark.parametrize(
    "text",
    ["", "Yes.", "no no", "very very good", "The dog. The cat.", "I said no. I said yes.", "Hello there."],
)
def test_ordinary_sentences_are_not_loops(text):
    """Sentences without a repeated run are taken as they are."""
    assert not is_looping(text)


class _Segment:
    def __init__(self, text: str) -> None:
        self.text = text


class _ShortWindowLoops:
    """Behaves as tiny.en sometimes does: loops on a shortened window, fine on the full one."""

    def __init__(self) -> None:
        self.windows: list[int] = []

    def transcribe(self, audio, *, audio_ctx, max_tokens):
        self.windows.append(audio_ctx)
        if audio_ctx < AUDIO_CTX_MAX:
            return [_Segment(" Stop. Stop. Stop. Stop.")]
        return [_Segment(" Stop.")]


def test_looping_result_is_decoded_again_with_the_full_window():
    """When the short window loops, the text from the full 30 s window is returned instead."""
    model = _ShortWindowLoops()
    assert Recognizer(model).transcribe_sync(np.zeros(16000, dtype=np.float32)) == "Stop."
    assert model.windows == [audio_ctx_for(16000), AUDIO_CTX_MAX]


# --- loading and error mapping ---------------------------------------------------------------------


def test_load_missing_file_raises_without_downloading(tmp_path):
    """A path that does not exist is an error; it is never taken for a model name to download."""
    with pytest.raises(ModelPreparationError, match="cannot open"):
        Recognizer.load(tmp_path / "tiny.en")


def test_load_non_ggml_file_raises(tmp_path):
    """A file without the ggml magic is refused before whisper.cpp sees it."""
    path = tmp_path / "model.bin"
    path.write_bytes(b"GGUF" + bytes(100))
    with pytest.raises(ModelPreparationError, match=r"not a whisper\.cpp ggml model"):
        Recognizer.load(path)


def test_load_implausible_ggml_header_raises(tmp_path):
    """A ggml header with zero sizes is refused before whisper.cpp (which would crash on it) reads it."""
    path = tmp_path / "model.bin"
    path.write_bytes(b"lmgg" + bytes(44))
    with pytest.raises(ModelPreparationError, match="implausible ggml header"):
        Recognizer.load(path)


@pytest.mark.models
def test_load_truncated_model_raises_with_whisper_cpp_reason(tmp_path):
    """A model file cut short gives ModelPreparationError carrying whisper.cpp's own explanation."""
    path = tmp_path / "model.bin"
    path.write_bytes(whisper_model_path().read_bytes()[:20_000_000])
    with pytest.raises(ModelPreparationError, match="not all tensors loaded"):
        Recognizer.load(path)


class _BrokenModel:
    """Stands in for pywhispercpp's Model when the native decode fails."""

    def transcribe(self, audio, **params):
        raise RuntimeError("whisper_full failed")


def test_library_failure_becomes_recognition_error():
    """An exception from the bindings surfaces as RecognitionError, with the cause chained."""
    recognizer = Recognizer(_BrokenModel())
    with pytest.raises(RecognitionError, match="whisper_full failed") as info:
        recognizer.transcribe_sync(np.zeros(16000, dtype=np.float32))
    assert isinstance(info.value.__cause__, RuntimeError)


def test_empty_clip_is_empty_text_without_decoding():
    """No audio gives "" at once; the model is not even asked."""
    assert Recognizer(_BrokenModel()).transcribe_sync(np.zeros(0, dtype=np.float32)) == ""


def test_stereo_input_is_refused():
    """Two-dimensional audio is a caller error."""
    with pytest.raises(ValueError, match="mono"):
        Recognizer(_BrokenModel()).transcribe_sync(np.zeros((2, 16000), dtype=np.float32))


async def test_transcribe_maps_errors_across_the_thread():
    """The async API raises the same RecognitionError as the blocking one."""
    with pytest.raises(RecognitionError):
        await Recognizer(_BrokenModel()).transcribe(np.zeros(16000, dtype=np.float32))


# --- the real model --------------------------------------------------------------------------------


@pytest.mark.models
@pytest.mark.parametrize("sentence", SENTENCES)
async def test_piper_speech_is_transcribed(recognizer, sentence):
    """A sentence spoken by the project's Piper voice comes back with a word error rate of at most 0.2."""
    text = await recognizer.transcribe(synthesize_speech(sentence))
    wer = word_error_rate(sentence, text)
    print(f"WER {wer:.2f}: {sentence!r} -> {text!r}")
    assert wer <= 0.2


@pytest.mark.models
async def test_concurrent_clips_take_turns_and_both_finish(recognizer):
    """Two clips submitted at once are decoded one after the other, each correctly."""
    clips = [synthesize_speech(s) for s in SENTENCES[:2]]
    results: dict[int, str] = {}

    async def run(i: int) -> None:
        results[i] = await recognizer.transcribe(clips[i])

    async with trio.open_nursery() as nursery:
        for i in range(2):
            nursery.start_soon(run, i)
    assert [word_error_rate(s, results[i]) <= 0.2 for i, s in enumerate(SENTENCES[:2])] == [True, True]


@pytest.mark.models
def test_one_word_clip_is_transcribed_once(recognizer):
    """A single word shorter than a second comes back as that word, not repeated."""
    audio = synthesize_speech("Yes.")
    assert len(audio) < 16000
    assert word_error_rate("yes", recognizer.transcribe_sync(audio)) == 0.0


@pytest.mark.models
def test_silence_gives_nothing_or_a_hallucination(recognizer):
    """Two seconds of digital silence yield "" or a stock phrase is_hallucination catches."""
    text = recognizer.transcribe_sync(np.zeros(2 * 16000, dtype=np.float32))
    print(f"silence -> {text!r}")
    assert is_hallucination(text)


@pytest.mark.models
def test_white_noise_gives_nothing_or_a_hallucination(recognizer):
    """Two seconds of white noise yield "" or a stock phrase is_hallucination catches."""
    noise = np.random.default_rng(3).normal(0.0, 0.05, 2 * 16000).astype(np.float32)
    text = recognizer.transcribe_sync(noise)
    print(f"white noise -> {text!r}")
    assert is_hallucination(text)


def test_stock_phrase_is_believed_when_the_voice_was_clear():
    """With clear_speech, "Thank you." counts as words; tags and empty text still do not."""
    assert not is_hallucination("Thank you.", clear_speech=True)
    assert is_hallucination("[BLANK_AUDIO]", clear_speech=True)
    assert is_hallucination("", clear_speech=True)


class _LoopingModel:
    """Stands in for pywhispercpp's Model: repeats itself with a short window, not with the full one."""

    def __init__(self) -> None:
        self.windows: list[int] = []

    def transcribe(self, audio, *, audio_ctx, max_tokens):
        self.windows.append(audio_ctx)
        text = (
            "Tell me more." if audio_ctx == AUDIO_CTX_MAX else "Tell me. Tell me. Tell me. Tell me. Tell me."
        )
        return [types.SimpleNamespace(text=text)]


def test_a_looping_final_is_decoded_again_with_the_full_window():
    """A final transcript that loops is decoded a second time with the whole 30 s window."""
    model = _LoopingModel()
    recognizer = Recognizer(model, threads=1)
    assert recognizer.transcribe_sync(np.zeros(16000, np.float32)) == "Tell me more."
    assert model.windows[-1] == AUDIO_CTX_MAX and len(model.windows) == 2


def test_a_looping_partial_is_dropped_without_a_second_decode():
    """A partial that loops comes back empty after one short decode, leaving the recognizer free."""
    model = _LoopingModel()
    recognizer = Recognizer(model, threads=1)
    assert recognizer.transcribe_sync(np.zeros(16000, np.float32), partial=True) == ""
    assert len(model.windows) == 1 and model.windows[0] < AUDIO_CTX_MAX
