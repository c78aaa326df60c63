"""One fuzzing process: atheris (libFuzzer for Python) drives one target until libFuzzer's limits end it.

Started by :mod:`tools.fuzz.cli`, never by hand::

    python -m tools.fuzz.worker TARGET CRASH_DIR [libFuzzer flags and corpus dirs]

The code under test is imported inside ``atheris.instrument_imports`` so libFuzzer sees its branches
(this module imports nothing of trio_voice at its top for that reason).

Error handling: any exception escaping a target is a crash. It is caught here rather than left to
libFuzzer, so one run finds every distinct crash instead of stopping at the first: the first input for
each signature (exception type and innermost frames) is written to ``CRASH_DIR`` with its traceback,
and a line ``fuzz-crash<TAB>SIGNATURE<TAB>FILE`` goes to stderr for the driver. Timeouts and running out of
memory are left to libFuzzer, which writes the input and exits.
"""

from __future__ import annotations

import hashlib
import sys
import traceback
from pathlib import Path

CRASH_LINE = "fuzz-crash"
FRAMES_IN_SIGNATURE = 3


def crash_signature(exc: BaseException) -> str:
    """Exception type and the innermost frames where it was raised: the same bug gives the same signature."""
    frames = traceback.extract_tb(exc.__traceback__)[-FRAMES_IN_SIGNATURE:]
    where = "<".join(f"{Path(frame.filename).name}:{frame.lineno}" for frame in reversed(frames))
    return f"{type(exc).__name__}@{where}"


def write_crash(crash_dir: Path, target: str, data: bytes, exc: BaseException) -> Path:
    """Write the crashing input (``.input``) and a report (``.txt``); return the input's path."""
    signature = crash_signature(exc)
    stem = f"{target}-{hashlib.sha1(signature.encode()).hexdigest()[:10]}"
    crash_dir.mkdir(parents=True, exist_ok=True)
    path = crash_dir / f"{stem}.input"
    path.write_bytes(data)
    report = [
        f"target: {target}",
        f"signature: {signature}",
        f"input ({len(data)} bytes): {data[:2000]!r}",
        "",
        *traceback.format_exception(exc),
    ]
    # Exception messages may quote the input, lone surrogates and all.
    (crash_dir / f"{stem}.txt").write_text("\n".join(report), encoding="utf-8", errors="backslashreplace")
    return path


def main(argv: list[str]) -> None:
    target_name, crash_dir, *libfuzzer_args = argv[1:]
    import atheris

    with atheris.instrument_imports(include=["trio_voice", "python_multipart", "tools.fuzz"]):
        from tools.fuzz.targets import TARGETS
    target = TARGETS[target_name]
    seen: set[str] = set()

    def test_one_input(data: bytes) -> None:
        try:
            target.run(data)
        except Exception as exc:
            signature = crash_signature(exc)
            if signature not in seen:
                seen.add(signature)
                path = write_crash(Path(crash_dir), target_name, data, exc)
                print(f"{CRASH_LINE}\t{signature}\t{path}", file=sys.stderr, flush=True)

    atheris.Setup([argv[0], *libfuzzer_args], test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
