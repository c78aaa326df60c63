"""The echo guard, sans-I/O: reply audio on the microphone's timeline, and which microphone chunks are its echo.

The timeline tests use noise as the reply (its correlation peak is sharp, so the delay found is exact to
the sample). The speech tests use the project's Piper voice: a reply, its echo through a simulated
speaker-phone, and the user saying something else.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from trio_voice.audio import float_to_pcm16, resample
from trio_voice.echo import CHUNK_SAMPLES, EchoGuard, EchoSettings, EchoVerdict

RATE = 16000
LOUD = 0.01  # chunks above this RMS are what a VAD would look at


def noise(seconds: float, seed: int, level: float = 0.1) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(int(seconds * RATE)) * level).astype(np.float32)


def at(x: np.ndarray, start_s: float, total_s: float) -> np.ndarray:
    """``x`` placed at ``start_s`` in ``total_s`` of silence."""
    out = np.zeros(int(total_s * RATE), dtype=np.float32)
    start = int(start_s * RATE)
    out[start : start + x.size] = x[: out.size - start]
    return out


def listen(guard: EchoGuard, mic: np.ndarray) -> list[tuple[float, EchoVerdict, float]]:
    """Run the guard over ``mic``: (chunk end in ms, verdict, chunk RMS) per 32 ms chunk."""
    out = []
    for end in range(CHUNK_SAMPLES, mic.size + 1, CHUNK_SAMPLES):
        chunk = mic[end - CHUNK_SAMPLES : end]
        out.append((end * 1000 / RATE, guard.check(chunk), float(np.sqrt(np.mean(chunk**2)))))
    return out


def loud_verdicts(
    results: list[tuple[float, EchoVerdict, float]], since_ms: float = 0.0
) -> list[EchoVerdict]:
    return [v for t, v, rms in results if rms > LOUD and t > since_ms]


# --- the timeline -----------------------------------------------------------------------------------


def test_echo_of_the_reply_is_found_at_its_delay() -> None:
    """Reply audio sent at 1.0 s comes back 120 ms after it plays: echo, at exactly that delay."""
    reply = noise(1.0, seed=1)
    guard = EchoGuard()
    guard.reply_audio(float_to_pcm16(reply), RATE, sent_at_ms=1000)
    mic = at(reply * 0.3, 1.12, 2.5) + noise(2.5, seed=2, level=0.001)
    verdicts = loud_verdicts(listen(guard, mic))
    assert len(verdicts) == 32  # the second of echo spans 32 chunks
    assert all(v.echo and v.delay_ms == 120.0 and v.explained > 0.99 for v in verdicts)


def test_audio_sent_faster_than_real_time_plays_back_to_back() -> None:
    """Chunks sent in a burst queue up at the client: the second plays when the first ends."""
    reply = noise(1.0, seed=1)
    pcm = float_to_pcm16(reply)
    guard = EchoGuard()
    guard.reply_audio(pcm[: len(pcm) // 2], RATE, sent_at_ms=1000, reply="r1")
    guard.reply_audio(pcm[len(pcm) // 2 :], RATE, sent_at_ms=1010, reply="r1")
    mic = at(reply * 0.3, 1.05, 2.5)
    assert {v.delay_ms for v in loud_verdicts(listen(guard, mic))} == {50.0}


def test_audio_sent_after_the_queue_ran_dry_plays_when_it_arrives() -> None:
    """An underrun: the second half arrives 300 ms late and plays from then, shifting what follows."""
    reply = noise(1.0, seed=1)
    pcm = float_to_pcm16(reply)
    guard = EchoGuard()
    guard.reply_audio(pcm[: len(pcm) // 2], RATE, sent_at_ms=1000, reply="r1")
    guard.reply_audio(pcm[len(pcm) // 2 :], RATE, sent_at_ms=1800, reply="r1")
    mic = at(reply[:8000] * 0.3, 1.05, 3.0) + at(reply[8000:] * 0.3, 1.85, 3.0)
    verdicts = loud_verdicts(listen(guard, mic))
    assert all(v.echo for v in verdicts) and {v.delay_ms for v in verdicts} == {50.0}


def test_reported_playback_position_moves_the_rest_of_the_reply() -> None:
    """Sent at 1.0 s but, the client says, only 200 ms played by 1.4 s: playback began at 1.2 s.

    With delays up to 200 ms considered, the echo 250 ms after the send is out of reach until the
    report puts it 50 ms after playback."""
    reply = noise(1.0, seed=1)
    mic = at(reply * 0.3, 1.25, 3.0)
    settings = EchoSettings(max_delay_ms=200)
    unaware, told = EchoGuard(settings), EchoGuard(settings)
    for guard in (unaware, told):
        guard.reply_audio(float_to_pcm16(reply), RATE, sent_at_ms=1000, reply="r1")
    told.reply_played(200, at_ms=1400)
    assert not any(v.echo for v in loud_verdicts(listen(unaware, mic)))
    verdicts = loud_verdicts(listen(told, mic))
    assert all(v.echo for v in verdicts) and {v.delay_ms for v in verdicts} == {50.0}


def test_a_new_reply_queues_after_the_last_one() -> None:
    """A reply sent while another still plays starts when that one ends."""
    first, second = noise(0.5, seed=1), noise(0.5, seed=3)
    guard = EchoGuard()
    guard.reply_audio(float_to_pcm16(first), RATE, sent_at_ms=1000, reply="r1")
    guard.reply_audio(float_to_pcm16(second), RATE, sent_at_ms=1100, reply="r2")
    mic = at(np.concatenate([first, second]) * 0.3, 1.08, 2.5)
    assert {v.delay_ms for v in loud_verdicts(listen(guard, mic))} == {80.0}


def test_nothing_is_echo_after_the_reply_stopped() -> None:
    """A cancelled reply's unplayed audio is not the reference: a voice after the stop is never ignored."""
    reply = noise(2.0, seed=1)
    guard = EchoGuard(EchoSettings(max_delay_ms=200))
    guard.reply_audio(float_to_pcm16(reply), RATE, sent_at_ms=1000, reply="r1")
    guard.reply_stopped(1500)
    # The speaker played 0.5 s (echo 50 ms later); from 2.0 s the user makes a different sound.
    mic = at(reply[:8000] * 0.3, 1.05, 3.0) + at(noise(0.8, seed=9), 2.0, 3.0)
    results = listen(guard, mic)
    assert all(v.echo for v in loud_verdicts(results)[:10])
    after = loud_verdicts(results, since_ms=2000)
    assert after and not any(v.echo for v in after)
    assert all(v.delay_ms is None for v in after)  # no reply audio within 200 ms: not even judged


def test_reply_audio_at_another_rate_is_resampled() -> None:
    """Piper's 22 050 Hz reply is recognised in the 16 kHz microphone."""
    reply_22k = (np.random.default_rng(4).standard_normal(22050) * 0.1).astype(np.float32)
    guard = EchoGuard()
    guard.reply_audio(float_to_pcm16(reply_22k), 22050, sent_at_ms=500)
    mic = at(resample(reply_22k, 22050, RATE) * 0.3, 0.6, 2.0)
    verdicts = loud_verdicts(listen(guard, mic))
    assert verdicts and all(v.echo and v.delay_ms == 100.0 for v in verdicts)


def test_a_reverberant_room_is_still_echo() -> None:
    """A 300 ms room tail and a small speaker's missing bass: the path's taps cannot hold the tail, the
    learnt echo level can. Never two misses in a row, so speech detection (two chunks) never starts."""
    rng = np.random.default_rng(3)
    bursts = np.tile(np.r_[np.ones(2400), np.zeros(1600)], 12).astype(np.float32)  # 150 ms on, 100 off
    reply = noise(3.0, seed=1) * bursts
    t = np.arange(int(0.3 * RATE)) / RATE
    room = rng.standard_normal(t.size) * np.exp(-6.9 * t / 0.3)  # -60 dB after 300 ms
    room[:32] = 0.0
    room *= 0.5 / np.sqrt(np.sum(room**2))  # the tail at half the direct sound's amplitude
    room[0] = 1.0
    echo = np.convolve(at(reply * 0.25, 0.62, 4.5), room)[: int(4.5 * RATE)]
    spectrum = np.fft.rfft(echo)
    spectrum[np.fft.rfftfreq(echo.size, 1 / RATE) < 300] = 0.0
    mic = np.fft.irfft(spectrum, echo.size).astype(np.float32) + noise(4.5, seed=2, level=0.002)
    guard = EchoGuard()
    guard.reply_audio(float_to_pcm16(reply), RATE, sent_at_ms=500)
    flags = [v.echo for v in loud_verdicts(listen(guard, mic))]
    assert len(flags) > 50 and sum(flags) >= 0.9 * len(flags)
    assert not any(not a and not b for a, b in itertools.pairwise(flags))


def test_a_quiet_chunk_is_not_judged() -> None:
    """Below min_chunk_rms there is nothing a VAD would hear, so nothing to ignore and no work done."""
    guard = EchoGuard()
    guard.reply_audio(float_to_pcm16(noise(1.0, seed=1)), RATE, sent_at_ms=0)
    verdict = guard.check(np.full(CHUNK_SAMPLES, 0.001, dtype=np.float32))
    assert verdict == EchoVerdict(False, 0.0, None)


def test_chunks_of_another_size_are_refused() -> None:
    with pytest.raises(ValueError, match="512"):
        EchoGuard().check(np.zeros(480, dtype=np.float32))


def test_impossible_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="echo settings"):
        EchoSettings(window_ms=10)


# --- real speech ------------------------------------------------------------------------------------

REPLY = "Sure. The capital of France is Paris, a city on the river Seine, famous for its museums."
USER = "Wait, stop, I wanted to ask about the weather in London tomorrow instead."


@pytest.fixture(scope="module")
def voices() -> dict[str, np.ndarray]:
    """The reply as Piper makes it (22 050 Hz) and the user's different sentence (16 kHz)."""
    from tests.speech import synthesize_speech

    return {
        "reply_22k": synthesize_speech(REPLY, 22050, deterministic=True),
        "user": synthesize_speech(USER, deterministic=True),
    }


def speaker_phone(reply_22k: np.ndarray, sent_at_s: float, total_s: float) -> tuple[EchoGuard, np.ndarray]:
    """The reply sent in 200 ms pieces at ``sent_at_s`` (a burst, as TTS outruns playback), and the
    microphone's echo of it: 150 ms later, at a quarter of the amplitude, over a little noise."""
    guard = EchoGuard()
    pcm = float_to_pcm16(reply_22k)
    piece = 2 * 4410
    for i in range(0, len(pcm), piece):
        guard.reply_audio(pcm[i : i + piece], 22050, sent_at_ms=sent_at_s * 1000, reply="resp_1")
    echo = at(resample(reply_22k, 22050, RATE) * 0.25, sent_at_s + 0.15, total_s)
    return guard, echo + noise(total_s, seed=5, level=0.002)


@pytest.mark.models
def test_the_replys_own_echo_is_ignored(voices: dict[str, np.ndarray]) -> None:
    """Every loud chunk of the echo is recognised: speech detection would hear nothing."""
    guard, mic = speaker_phone(voices["reply_22k"], 0.5, 7.0)
    verdicts = loud_verdicts(listen(guard, mic))
    assert len(verdicts) > 80
    assert all(v.echo for v in verdicts)


@pytest.mark.models
def test_a_different_sentence_over_the_reply_is_not_ignored(voices: dict[str, np.ndarray]) -> None:
    """The user talking over the echo: not echo from the first chunk, nor wherever the voice dominates.

    Chunks where the user's voice is as quiet as the echo (word ends, soft consonants) may go either
    way: the guard explains energy, and there the echo has most of it."""
    guard, echo = speaker_phone(voices["reply_22k"], 0.5, 7.0)
    user = at(voices["user"] * 0.5, 1.5, 7.0)
    results = listen(guard, echo + user)

    def rms(x: np.ndarray, t: float) -> float:
        return float(np.sqrt(np.mean(x[int(t * 16) - CHUNK_SAMPLES : int(t * 16)] ** 2)))

    spoken = [(t, v) for t, v, _ in results if rms(user, t) > LOUD]
    dominant = [v for t, v in spoken if rms(user, t) >= 2 * rms(echo, t)]
    assert len(spoken) > 80 and len(dominant) > 60
    assert [v.echo for _, v in spoken[:2]] == [False, False]  # barge-in: the segmenter starts on two
    assert not any(v.echo for v in dominant)
    assert sum(v.echo for _, v in spoken) <= 0.15 * len(spoken)


@pytest.mark.models
def test_a_different_sentence_without_echo_is_never_ignored(voices: dict[str, np.ndarray]) -> None:
    """Headphones: the reply plays but does not come back; the user's voice is never taken for it."""
    guard, _ = speaker_phone(voices["reply_22k"], 0.5, 7.0)
    mic = at(voices["user"] * 0.5, 1.5, 7.0) + noise(7.0, seed=6, level=0.002)
    verdicts = loud_verdicts(listen(guard, mic))
    assert len(verdicts) > 60 and not any(v.echo for v in verdicts)


@pytest.mark.models
def test_speech_in_the_replys_silence_is_never_ignored(voices: dict[str, np.ndarray]) -> None:
    """Reply, a second of silence, reply again: the user speaking in the gap is heard, chunk for chunk."""
    reply = voices["reply_22k"]
    gap = np.zeros(int(22050 * 1.5), dtype=np.float32)
    guard, mic = speaker_phone(np.concatenate([reply[: 22050 * 2], gap, reply[22050 * 2 :]]), 0.5, 9.0)
    user = voices["user"][: int(0.8 * RATE)] * 0.5
    results = listen(guard, mic + at(user, 3.3, 9.0))  # the gap's echo spans 2.65-4.15 s
    in_gap = [v for t, v, rms in results if 3300 < t <= 4100 and rms > LOUD]
    assert len(in_gap) > 8 and not any(v.echo for v in in_gap)
