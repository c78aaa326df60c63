"""The end-of-turn engine: its features against pipecat's reference, its onnxruntime wrapping, the real model.

The reference for the features is the numpy port of transformers' WhisperFeatureExtractor that the
``pipecat-ai`` wheel ships (``pipecat/audio/turn/smart_turn/_whisper_features.py``); it is loaded here by
file path, so the test process runs it without importing the pipecat package.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import onnxruntime
import pytest
import trio

from trio_voice.errors import ModelPreparationError, TurnModelError
from trio_voice.smart_turn import EndOfTurnModel, model_path, session_options
from trio_voice.testing import FakeTurnModel
from trio_voice.turn_features import N_FRAMES, N_MELS, WINDOW_SAMPLES, fit_window, log_mel_features

RATE = 16000


def pipecat_reference() -> ModuleType:
    root = Path(next(iter(importlib.util.find_spec("pipecat").submodule_search_locations)))  # type: ignore[union-attr]
    path = root / "audio/turn/smart_turn/_whisper_features.py"
    spec = importlib.util.spec_from_file_location("pipecat_whisper_features_reference", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def voice_like(seconds: float, seed: int = 0) -> np.ndarray:
    """Harmonics on a wandering pitch with a syllable-rate envelope, plus a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    pitch = 120 + 30 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(pitch) / RATE
    x = sum(np.sin(k * phase) / k for k in range(1, 12)) * (0.5 + 0.5 * np.sin(2 * np.pi * 4 * t) ** 2)
    return (0.1 * x + 0.003 * rng.standard_normal(t.size)).astype(np.float32)


# --- features -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "samples", [0, 1, 200, 201, 361, 16_000, 32_037, WINDOW_SAMPLES - 1, WINDOW_SAMPLES, 150_000]
)
def test_features_match_pipecats_reference(samples: int) -> None:
    """Same numbers as pipecat's port of WhisperFeatureExtractor on the fitted window, to a float32 ulp or two.

    The lengths probe the shortcut for frames that lie wholly in the leading padding: none, one frame's
    edge, a few frames, most of the window, all of it, and a clip longer than the window."""
    audio = voice_like(samples / RATE, seed=samples)
    reference = pipecat_reference().compute_whisper_log_mel_features(fit_window(audio), do_normalize=True)
    ours = log_mel_features(audio)
    assert ours.shape == (N_MELS, N_FRAMES) == reference.shape
    assert ours.dtype == np.float32
    np.testing.assert_allclose(ours, reference, rtol=0, atol=1e-6)


def test_features_of_noise_match_the_reference() -> None:
    """White noise fills every band: the whole filterbank and the dynamic-range clamp are exercised."""
    audio = np.random.default_rng(7).standard_normal(40_000).astype(np.float32) * 0.2
    reference = pipecat_reference().compute_whisper_log_mel_features(fit_window(audio), do_normalize=True)
    np.testing.assert_allclose(log_mel_features(audio), reference, rtol=0, atol=1e-6)


def test_window_keeps_the_end_and_pads_in_front() -> None:
    """The model looks for the turn's end at the end of its 8 s window: speech goes last, zeros first."""
    short = np.arange(1, 101, dtype=np.float32)
    fitted = fit_window(short)
    assert fitted.shape == (WINDOW_SAMPLES,)
    assert not fitted[:-100].any() and np.array_equal(fitted[-100:], short)
    long = np.arange(WINDOW_SAMPLES + 500, dtype=np.float32)
    assert np.array_equal(fit_window(long), long[500:])


def test_stereo_audio_is_refused() -> None:
    """Two-dimensional audio is a caller's mistake, said plainly."""
    with pytest.raises(ValueError, match="mono"):
        log_mel_features(np.zeros((2, 1000), dtype=np.float32))


# --- the engine around onnxruntime --------------------------------------------------------------


class ScriptedSession:
    """Stands in for an onnxruntime session: returns ``output`` (or raises ``error``) and keeps the inputs."""

    def __init__(self, output: object = None, error: BaseException | None = None) -> None:
        self.output = np.array([[0.75]], dtype=np.float32) if output is None else output
        self.error = error
        self.inputs: list[dict[str, np.ndarray]] = []

    def run(self, names: object, feed: dict[str, np.ndarray]) -> list[object]:
        self.inputs.append(feed)
        if self.error is not None:
            raise self.error
        return [self.output]


def test_predict_feeds_features_and_returns_the_probability() -> None:
    """One (1, 80, 800) float32 input named input_features; the sigmoid output comes back as a float."""
    session = ScriptedSession()
    model = EndOfTurnModel(session)
    assert model.predict_sync(voice_like(1.0)) == pytest.approx(0.75)
    (feed,) = session.inputs
    assert list(feed) == ["input_features"]
    assert feed["input_features"].shape == (1, N_MELS, N_FRAMES)
    assert feed["input_features"].dtype == np.float32


@pytest.mark.parametrize("output", [np.array([[1.5]]), np.array([[np.nan]]), np.array([[-0.1]])])
def test_an_output_that_is_not_a_probability_is_an_error(output: np.ndarray) -> None:
    """A model file that is not the sigmoid-headed Smart Turn gives values that must not end turns."""
    with pytest.raises(TurnModelError, match="not a probability"):
        EndOfTurnModel(ScriptedSession(output)).predict_sync(voice_like(0.5))


def test_onnxruntime_failures_become_turn_model_errors() -> None:
    """onnxruntime's own exceptions are mapped in one place, with the cause kept."""
    failure = onnxruntime.capi.onnxruntime_pybind11_state.Fail("kernel exploded")
    with pytest.raises(TurnModelError, match="kernel exploded") as caught:
        EndOfTurnModel(ScriptedSession(error=failure)).predict_sync(voice_like(0.5))
    assert caught.value.__cause__ is failure
    assert caught.value.code == "engine_error"


async def test_predict_runs_in_a_thread_behind_the_limiter() -> None:
    """The async call queues on the model's one-slot limiter and reports its wait."""
    model = EndOfTurnModel(ScriptedSession())
    waits: list[float] = []
    model.on_queue_wait = waits.append
    results: list[float] = []

    async def one() -> None:
        results.append(await model.predict(voice_like(0.5)))

    async with trio.open_nursery() as nursery:
        for _ in range(3):
            nursery.start_soon(one)
    assert results == [pytest.approx(0.75)] * 3
    assert len(waits) == 3 and model.limiter.total_tokens == 1


def test_session_options_do_not_spin() -> None:
    """Few threads, and idle ones sleep: on two cores a spinning thread taxes every other stage."""
    options = session_options(2)
    assert options.intra_op_num_threads == 2
    assert options.inter_op_num_threads == 1
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"


def test_threads_below_one_are_refused() -> None:
    with pytest.raises(ValueError, match="threads"):
        EndOfTurnModel.load(threads=0)


def test_a_file_that_is_not_a_model_is_refused(tmp_path: Path) -> None:
    """A broken model file fails at start-up with a message naming it, not at the first pause."""
    bad = tmp_path / "smart-turn.onnx"
    bad.write_bytes(b"not an onnx model")
    with pytest.raises(ModelPreparationError, match=r"smart-turn\.onnx"):
        EndOfTurnModel.load(bad)


def test_the_model_file_is_found_without_importing_pipecat() -> None:
    """find_spec locates the wheel's directory; none of pipecat's code runs in the process."""
    path = model_path()
    assert path.name == "smart-turn-v3.2-cpu.onnx" and path.stat().st_size > 8_000_000
    assert "pipecat" not in sys.modules


def test_missing_model_package_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the pipecat-ai wheel, the error names it and the --no-deps way to install it."""
    import trio_voice.smart_turn

    monkeypatch.setattr(trio_voice.smart_turn, "MODEL_PACKAGE", "no_such_model_package_xyz")
    with pytest.raises(ModelPreparationError, match="pip install --no-deps pipecat-ai"):
        model_path()


async def test_fake_answers_its_script_after_its_delay(autojump_clock: trio.testing.MockClock) -> None:
    """The fake takes its scripted time under the mock clock, answers in order, then its default."""
    fake = FakeTurnModel(script=[0.2, 0.9], default=0.5, delay=0.04)
    start = trio.current_time()
    answers = [await fake.predict(np.zeros(RATE, dtype=np.float32)) for _ in range(3)]
    assert answers == [0.2, 0.9, 0.5]
    assert trio.current_time() - start == pytest.approx(0.12)
    assert fake.calls == [1.0, 1.0, 1.0] and fake.active == 0


async def test_failing_fake_raises_like_the_real_model() -> None:
    fake = FakeTurnModel(fail=True)
    with pytest.raises(TurnModelError):
        await fake.predict(np.zeros(10, dtype=np.float32))
    assert fake.active == 0


# --- the real model on real speech ----------------------------------------------------------------

# Questions and the same questions cut where a speaker paused mid-sentence. The cut is made where Piper
# pauses at a comma, so the words before it carry the rising, unfinished melody of a sentence that goes
# on; a prefix spoken as a sentence of its own would sound finished (and score as complete).
# These four are clear cases (complete 0.86-0.99, cut 0.01-0.27 here); others are not: "What is the
# capital of, France?" cut scores 0.74 and "Where is the nearest, train station?" 0.92, which is why the
# default threshold (trio_voice.turn_policy.EAGERNESS) is well above the model's own 0.5.
PAIRS = [
    ("Can you tell me a", "joke?"),
    ("What is the weather like in", "Paris today?"),
    ("Why is the sky", "blue?"),
    ("What should I cook for", "dinner tonight?"),
]
PAUSE_S = 0.2  # the tentative pause at which the policy asks the model
LEAD_S = 0.3  # the audio kept before speech starts (the segmenter's prefix)


def speech_before_pause(audio: np.ndarray, frame: int = 160, quiet: float = 0.01) -> np.ndarray:
    """The audio before its longest inner silence (10 ms frames below ``quiet`` RMS)."""
    n = audio.size // frame
    silent = np.sqrt(np.mean(audio[: n * frame].reshape(n, frame) ** 2, axis=1)) < quiet
    best, start = (0, 0), None
    for i, s in enumerate(silent):
        if s and start is None:
            start = i
        elif not s and start is not None:
            if start > 0 and i - start > best[1] - best[0]:
                best = (start, i)
            start = None
    assert best[1] > best[0], "no pause found"
    return audio[: best[0] * frame]


def as_turn(speech: np.ndarray) -> np.ndarray:
    silence = lambda s: np.zeros(int(s * RATE), dtype=np.float32)  # noqa: E731
    return np.concatenate([silence(LEAD_S), speech, silence(PAUSE_S)])


@pytest.fixture(scope="module")
def real_model() -> EndOfTurnModel:
    return EndOfTurnModel.load()


@pytest.mark.models
@pytest.mark.parametrize(("head", "tail"), PAIRS)
def test_complete_question_scores_above_the_same_question_cut_short(
    real_model: EndOfTurnModel, head: str, tail: str
) -> None:
    """Smart Turn hears the difference between a finished question and one paused mid-sentence."""
    from tests.speech import synthesize_speech
    from tools.make_speech import trim

    complete = trim(synthesize_speech(f"{head} {tail}", deterministic=True))
    cut = speech_before_pause(trim(synthesize_speech(f"{head}, {tail}", deterministic=True)))
    p_complete = real_model.predict_sync(as_turn(complete))
    p_cut = real_model.predict_sync(as_turn(cut))
    assert p_complete > p_cut
    assert p_complete > 0.5 > p_cut  # on the right side of the model's own threshold, too


@pytest.mark.models
async def test_async_prediction_equals_the_blocking_one(real_model: EndOfTurnModel) -> None:
    """The thread hop changes nothing: one thread, deterministic kernels, the same number."""
    audio = as_turn(voice_like(1.5))
    assert await real_model.predict(audio) == real_model.predict_sync(audio)
