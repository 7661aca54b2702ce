#!/usr/bin/env bash
# Reference tap dumps from llama.cpp (llama-dump-taps: one pass, f32 cache, no flash attention) for the
# tests that compare `whale score --dump-taps` with them through scripts/diff-taps.py:
#   Tests/WhaleModelsTests/Fixtures/{deepseek/v3-sigmoid-noaux,tiny-llama}/taps-llamacpp/
# The llama.cpp build is scripts/build-llama-cpp.sh's (llama-cpp-python 0.3.36's vendored llama.cpp; set
# LLAMA_CPP_BUILD_ROOT to reuse a build). Deterministic: the same build writes the same files.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(scripts/build-llama-cpp.sh -j2 | tail -n 1)
# Twelve ids of each tiny vocabulary (the first twelve of the fixtures' reference sequences).
declare -A tokens=(
    ["deepseek/v3-sigmoid-noaux"]="275,19,176,161,223,93,270,16,71,0,283,169"
    ["tiny-llama"]="$(python3 -c "import json; print(','.join(map(str, json.load(open('Tests/WhaleModelsTests/Fixtures/tiny-llama/reference.json'))['ids'][:12])))")"
)
for model in "${!tokens[@]}"; do
    dir=Tests/WhaleModelsTests/Fixtures/$model
    rm -rf "$dir/taps-llamacpp"
    "$bin/llama-dump-taps" -m "$dir/model-f32.gguf" --tokens "${tokens[$model]}" --out "$dir/taps-llamacpp"
    # The manifest names the model by the path it was given: keep it repository-relative.
    echo "wrote $dir/taps-llamacpp" >&2
done
