"""The energy gate in front of Silero: silence skips the model, speech never does, the state stays right."""

from __future__ import annotations

import numpy as np
import pytest

from trio_voice.segmenter import CHUNK_SAMPLES
from trio_voice.vad import GATE_HANGOVER, GATE_WARMUP, EnergyGate, SileroVAD


class CountingVAD:
    """A stand-in model that records what reaches it: chunk loudness per call, and resets."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def probability(self, chunk: np.ndarray) -> float:
        loud = float(np.abs(chunk).max()) > 0.01
        self.seen.append("loud" if loud else "quiet")
        return 0.9 if loud else 0.1

    def reset(self) -> None:
        self.seen.append("reset")


LOUD = np.full(CHUNK_SAMPLES, 0.1, dtype=np.float32)
QUIET = np.zeros(CHUNK_SAMPLES, dtype=np.float32)


def test_quiet_chunks_after_the_hangover_skip_the_model_and_sound_resets_it() -> None:
    """The model sees sound and the first GATE_HANGOVER quiet chunks; later quiet ones are 0 without it;
    the next sound finds the model reset, then warmed up on the last GATE_WARMUP skipped chunks."""
    model = CountingVAD()
    gate = EnergyGate(model, threshold_dbfs=-70.0)  # type: ignore[arg-type]
    out = [gate.probability(c) for c in [LOUD, *[QUIET] * (GATE_HANGOVER + 5), LOUD]]
    assert out == [0.9, *[0.1] * GATE_HANGOVER, *[0.0] * 5, 0.9]
    assert model.seen == ["loud", *["quiet"] * GATE_HANGOVER, "reset", *["quiet"] * GATE_WARMUP, "loud"]
    assert (gate.calls, gate.skipped) == (GATE_HANGOVER + 2, 5)


def test_a_short_pause_never_closes_the_gate() -> None:
    """Quiet runs shorter than the hangover (gaps between words) all reach the model, with no reset."""
    model = CountingVAD()
    gate = EnergyGate(model, threshold_dbfs=-70.0)  # type: ignore[arg-type]
    for chunk in [LOUD, *[QUIET] * GATE_HANGOVER, LOUD]:
        gate.probability(chunk)
    assert "reset" not in model.seen and gate.skipped == 0


def test_needs_model_says_when_a_batch_needs_no_thread() -> None:
    """A batch of only gated chunks needs no model; one loud chunk, or chunks still in the hangover, do."""
    gate = EnergyGate(CountingVAD(), threshold_dbfs=-70.0)  # type: ignore[arg-type]
    assert gate.needs_model(np.stack([QUIET] * 2))  # fresh: still within the hangover
    for _ in range(GATE_HANGOVER):
        gate.probability(QUIET)
    assert not gate.needs_model(np.stack([QUIET] * 3))
    assert gate.needs_model(np.stack([QUIET, LOUD]))
    noise = np.random.default_rng(1).standard_normal(CHUNK_SAMPLES).astype(np.float32) * 10 ** (-60 / 20)
    assert gate.needs_model(noise[None, :])  # a real microphone's noise floor (-60 dBFS) is above it


@pytest.mark.models
def test_on_real_speech_the_gate_changes_no_decision() -> None:
    """Speech, silence, speech through Silero with and without the gate: every chunk's speech/no-speech
    decision is the same, the gate skipped most of the silence, and the probabilities stay close (the
    warmed-up state is the state after silence)."""
    from tests.speech import synthesize_speech

    speech = synthesize_speech("How far away is the Moon from the Earth tonight?", deterministic=True)
    silence = np.zeros(16000 * 2, dtype=np.float32)
    audio = np.concatenate([silence[:8000], speech, silence, speech * 0.05, silence])
    chunks = audio[: audio.size // CHUNK_SAMPLES * CHUNK_SAMPLES].reshape(-1, CHUNK_SAMPLES)
    plain, gate = SileroVAD(), EnergyGate(SileroVAD(), threshold_dbfs=-70.0)
    ungated = np.array([plain.probability(c) for c in chunks])
    gated = np.array([gate.probability(c) for c in chunks])
    assert ((ungated >= 0.5) == (gated >= 0.5)).all()
    assert (ungated >= 0.5).sum() > 20  # both utterances were heard
    assert gate.skipped > 0.4 * len(chunks)
    assert np.abs(ungated - gated).max() < 0.3


def test_the_config_turns_the_gate_off_at_minus_200_dbfs() -> None:
    """-200 dBFS gives Silero alone (digital silence would pass any finite threshold); the default gates."""
    from trio_voice.config import Config
    from trio_voice.vad import gated_silero_factory

    assert type(gated_silero_factory(Config(vad_gate_dbfs=-200.0))()) is SileroVAD
    gate = gated_silero_factory(Config())()
    assert isinstance(gate, EnergyGate) and gate.threshold == pytest.approx(10 ** (-70 / 20))
