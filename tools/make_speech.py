"""Spoken-question fixtures: WAV files (16 kHz mono PCM16) of questions read by the project's Piper voice.

``python -m tools.make_speech [--out DIR]`` writes one ``qNN.wav`` per built-in question of the load-test
tool, one ``sNN.wav`` per long-answer question (for barge-in), and ``q-questions.txt`` / ``s-questions.txt``
listing them (``uNN.wav`` for texts given on the command line). Leading and trailing silence is trimmed to
``MARGIN_S``, so "end of speech" is where the voice stops, not where Piper's padding ends. The files are
made, not committed: they take ~1.5 MB and a few seconds of synthesis; the benchmarks call
:func:`ensure_speech` to make them once into the cache directory.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from trio_voice.audio import float_to_pcm16, pcm16_to_float, resample, wav_bytes
from trio_voice.config import default_data_dir

SAMPLE_RATE = 16000
MARGIN_S = 0.05  # silence kept before the first and after the last loud sample
LOUD = 0.02  # |sample| above this counts as voice when trimming


def default_dir() -> Path:
    return default_data_dir() / "bench-speech"


def trim(x: np.ndarray, *, rate: int = SAMPLE_RATE) -> np.ndarray:
    loud = np.flatnonzero(np.abs(x) > LOUD)
    if loud.size == 0:
        return x
    margin = int(MARGIN_S * rate)
    return x[max(0, loud[0] - margin) : loud[-1] + margin]


def stretch_pause(audio: np.ndarray, pause_s: float, *, rate: int = SAMPLE_RATE) -> np.ndarray:
    """``audio`` of one sentence read with a comma, the pause Piper made at the comma stretched to ``pause_s``.

    A person who hesitates mid-sentence ("What is the capital of … France?") keeps the intonation of an
    unfinished sentence; one sentence read with a comma does too. Two parts spoken separately and joined
    would each sound finished, which is not what a hesitating user sounds like.
    """
    frame = rate // 100  # 10 ms
    energy = np.sqrt(np.mean(audio[: audio.size // frame * frame].reshape(-1, frame) ** 2, axis=1))
    quiet = energy < max(energy) * 0.02
    best, start = (0, 0), None  # the longest quiet run away from both ends is the comma's pause
    for i, q in enumerate(quiet):
        if q and start is None:
            start = i
        if (not q or i == len(quiet) - 1) and start is not None:
            if start > len(quiet) * 0.1 and i < len(quiet) * 0.9 and i - start > best[1] - best[0]:
                best = (start, i)
            start = None
    middle = (best[0] + best[1]) // 2 * frame
    extra = max(0, int(pause_s * rate) - (best[1] - best[0]) * frame)
    return np.concatenate([audio[:middle], np.zeros(extra, np.float32), audio[middle:]])


def make_paused_speech(out: Path) -> list[Path]:
    """``pNN.wav``: the questions of ``PAUSED_QUESTIONS``, each with a 300-600 ms hesitation in it."""
    from tools.loadtest.plan import PAUSED_QUESTIONS
    from trio_voice.tts import Synthesizer

    synth = Synthesizer.load()
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for n, (text, pause_s) in enumerate(PAUSED_QUESTIONS, start=1):
        speech = resample(pcm16_to_float(synth.synthesize_sync(text)), synth.sample_rate, SAMPLE_RATE)
        x = trim(stretch_pause(speech, pause_s))
        path = out / f"p{n:02d}.wav"
        path.write_bytes(wav_bytes(float_to_pcm16(x), SAMPLE_RATE))
        paths.append(path)
    listing = "".join(
        f"{p.name}\t{t}\t{pause}\n" for p, (t, pause) in zip(paths, PAUSED_QUESTIONS, strict=True)
    )
    (out / "p-questions.txt").write_text(listing, encoding="utf-8")
    return paths


def make_speech(texts: list[str], out: Path, *, prefix: str = "q") -> list[Path]:
    """Synthesize each of ``texts`` to ``out/{prefix}NN.wav`` (16 kHz); return the paths. Blocking (~0.2 s each)."""
    from trio_voice.tts import Synthesizer

    synth = Synthesizer.load()
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for n, text in enumerate(texts, start=1):
        pcm = synth.synthesize_sync(text)
        x = trim(resample(pcm16_to_float(pcm), synth.sample_rate, SAMPLE_RATE))
        path = out / f"{prefix}{n:02d}.wav"
        path.write_bytes(wav_bytes(float_to_pcm16(x), SAMPLE_RATE))
        paths.append(path)
    listing = "".join(f"{p.name}\t{t}\n" for p, t in zip(paths, texts, strict=True))
    (out / f"{prefix}-questions.txt").write_text(listing, encoding="utf-8")
    return paths


def ensure_paused_speech(out: Path | None = None) -> list[Path]:
    """The paused-question WAVs (``p01.wav`` …) in ``out`` (default: the cache dir), made first if missing."""
    from tools.loadtest.plan import PAUSED_QUESTIONS

    out = out or default_dir()
    paths = [out / f"p{n:02d}.wav" for n in range(1, len(PAUSED_QUESTIONS) + 1)]
    if not all(p.exists() for p in paths):
        paths = make_paused_speech(out)
    return paths


def ensure_speech(out: Path | None = None, *, stories: bool = False) -> list[Path]:
    """The spoken-question WAVs in ``out`` (default: the cache dir), made first if missing.

    ``stories``: the long-answer questions (``s01.wav`` …) instead of the short ones (``q01.wav`` …).
    """
    from tools.loadtest.plan import STORY_QUESTIONS, TEXT_QUESTIONS

    out = out or default_dir()
    texts, prefix = (STORY_QUESTIONS, "s") if stories else (TEXT_QUESTIONS, "q")
    paths = [out / f"{prefix}{n:02d}.wav" for n in range(1, len(texts) + 1)]
    if not all(p.exists() for p in paths):
        paths = make_speech(list(texts), out, prefix=prefix)
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.make_speech", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=default_dir(), help="directory (default %(default)s)")
    parser.add_argument(
        "texts", nargs="*", help="questions to speak (default: the load-test tool's built-in ones)"
    )
    args = parser.parse_args(argv)
    if args.texts:
        paths = make_speech(args.texts, args.out, prefix="u")
    else:
        from tools.loadtest.plan import STORY_QUESTIONS, TEXT_QUESTIONS

        paths = make_speech(list(TEXT_QUESTIONS), args.out) + make_speech(
            list(STORY_QUESTIONS), args.out, prefix="s"
        )
    total = sum((p.stat().st_size - 44) / 2 / SAMPLE_RATE for p in paths)
    print(f"wrote {len(paths)} WAV files ({total:.1f} s of speech) to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
