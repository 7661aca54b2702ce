#!/usr/bin/env bash
# llama-perplexity's KL-divergence files for the tests of `whale perplexity --kl-divergence(-base)`:
#   Tests/WhaleModelsTests/Fixtures/tiny-llama/kld-llamacpp/
#     base-f32.kld   llama-perplexity --kl-divergence-base on the F32 tiny Llama (4 chunks of 64 tokens of the
#                    GPL-3 text in smollm2/perplexity.txt)
#     kld-q8_0.txt   llama-perplexity --kl-divergence on the Q8_0 tiny Llama against that file: its statistics
#     MANIFEST.json  commands, llama.cpp source and sha256 of everything
# The llama.cpp build is scripts/build-llama-cpp.sh's (llama-cpp-python 0.3.36's vendored llama.cpp; set
# LLAMA_CPP_BUILD_ROOT to reuse a build).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(scripts/build-llama-cpp.sh -j2 | tail -n 1)
fixtures=Tests/WhaleModelsTests/Fixtures
out=$fixtures/tiny-llama/kld-llamacpp
text=$fixtures/smollm2/perplexity.txt
rm -rf "$out"
mkdir -p "$out"
base_args=(-m "$fixtures/tiny-llama/model-f32.gguf" -f "$text" -c 64 --chunks 4 -t 1 --kl-divergence-base "$out/base-f32.kld")
"$bin/llama-perplexity" "${base_args[@]}" > /dev/null 2>&1
kld_args=(-m "$fixtures/tiny-llama/model-q8_0.gguf" -c 64 -t 1 --kl-divergence-base "$out/base-f32.kld" --kl-divergence)
# The statistics only (from "====== Perplexity statistics" on), without llama.cpp's log prefixes.
"$bin/llama-perplexity" "${kld_args[@]}" 2>&1 | sed -n '/====== Perplexity statistics/,$p' |
    sed -E 's/^[0-9.]+ [IWE] //' | grep -v '^llama_\|^common_\|^main:' > "$out/kld-q8_0.txt"
python3 - "$out" "${base_args[*]}" "${kld_args[*]}" "$text" << 'PY'
import hashlib, json, pathlib, sys
out, base_command, kld_command, text = sys.argv[1:]
sha = lambda p: hashlib.sha256(pathlib.Path(p).read_bytes()).hexdigest()
fixtures = "Tests/WhaleModelsTests/Fixtures"
manifest = {
    "generator": "scripts/make-kld-fixtures.sh",
    "llama_cpp": "scripts/build-llama-cpp.sh: vendor/llama.cpp of the PyPI sdist llama-cpp-python==0.3.36 (commit 0c1e570), GGML_NATIVE",
    "commands": {"base-f32.kld": "llama-perplexity " + base_command, "kld-q8_0.txt": "llama-perplexity " + kld_command},
    "inputs": {p: sha(p) for p in [f"{fixtures}/tiny-llama/model-f32.gguf", f"{fixtures}/tiny-llama/model-q8_0.gguf", text]},
    "outputs": {name: sha(f"{out}/{name}") for name in ["base-f32.kld", "kld-q8_0.txt"]},
}
pathlib.Path(out, "MANIFEST.json").write_text(json.dumps(manifest, indent=2) + "\n")
PY
cat "$out/kld-q8_0.txt"
echo "wrote $out" >&2
