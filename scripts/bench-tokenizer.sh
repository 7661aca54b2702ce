#!/usr/bin/env bash
# Tokenizer encode speed on English prose, one core, BlueWhale vs Hugging Face `tokenizers` side by side.
#   scripts/bench-tokenizer.sh [MB]      (default 10 MB of text)
# Needs: scripts/fetch-models.sh and scripts/fetch-tokenizers.sh run first; `pip install tokenizers` for the
# comparison (skipped if absent). Prints MB/s for each and the ratio.
set -euo pipefail
cd "$(dirname "$0")/.."
megabytes="${1:-10}"
text="$(mktemp --suffix=.txt)"
trap 'rm -f "$text"' EXIT
# English prose: the license texts Debian ships, repeated to size.
sources=(/usr/share/common-licenses/GPL-3 /usr/share/common-licenses/Apache-2.0 /usr/share/common-licenses/GFDL-1.3)
: > "$text"
while [[ $(stat -c %s "$text") -lt $((megabytes * 1000000)) ]]; do cat "${sources[@]}" >> "$text"; done
echo "text: $(stat -c %s "$text") bytes of English prose"

swift build -c release --product whale > /dev/null
for tokenizer in models/tokenizers/deepseek-v3/tokenizer.json models/SmolLM2-135M-Instruct.Q4_1.gguf; do
    printf '%-48s whale: ' "$tokenizer"
    taskset -c 0 .build/release/whale tokenize "$tokenizer" --file "$text" --stats 2>&1 > /dev/null | sed 's/.*(\(.* MB\/s\)).*/\1/'
done
if python3 -c "import tokenizers" 2> /dev/null; then
    printf '%-48s HF tokenizers (1 thread): ' models/tokenizers/deepseek-v3/tokenizer.json
    RAYON_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false taskset -c 0 python3 - "$text" << 'PY'
import sys, time
from tokenizers import Tokenizer
t = Tokenizer.from_file("models/tokenizers/deepseek-v3/tokenizer.json")
text = open(sys.argv[1], encoding="utf-8").read()
start = time.perf_counter()
ids = t.encode(text, add_special_tokens=False).ids
seconds = time.perf_counter() - start
print(f"{len(text.encode()) / seconds / 1e6:.2f} MB/s")
PY
fi
