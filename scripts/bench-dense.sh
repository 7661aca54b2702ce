#!/usr/bin/env bash
# Prompt and generation speed on SmolLM2-135M-Instruct Q4_1: BlueWhale vs llama.cpp's llama-bench, run
# alternately in one go (the machine is shared: compare the ratios, not the absolute figures).
#   scripts/bench-dense.sh [THREADS] [ROUNDS]      (defaults: 2 threads, 3 rounds)
# Needs scripts/fetch-models.sh and scripts/build-llama-cpp.sh (llama-bench under $LLAMA_CPP_BUILD_ROOT,
# default .build-llama.cpp in the repository; or point LLAMA_BENCH at it).
set -euo pipefail
cd "$(dirname "$0")/.."
threads="${1:-2}"
rounds="${2:-3}"
model=models/SmolLM2-135M-Instruct.Q4_1.gguf
bench="${LLAMA_BENCH:-${LLAMA_CPP_BUILD_ROOT:-.build-llama.cpp}/build/bin/llama-bench}"
swift build -c release --product whale > /dev/null
whale=.build/release/whale
# A 512-token prompt of ordinary ids (the prompt speed does not depend on which).
prompt=$(python3 -c "print(','.join(str(100 + (i * 37) % 20000) for i in range(512)))")
for round in $(seq "$rounds"); do
    pp=$($whale run "$model" --tokens "$prompt" -n 1 --temp 0 -t "$threads" 2>&1 >/dev/null | sed -n 's/.*prompt: [0-9]* tokens, \([0-9.]*\) tokens\/s.*/\1/p')
    tg=$($whale run "$model" --tokens 1,2,3,4 -n 128 --temp 0 --repeat-penalty 1 -t "$threads" --ctx 256 2>&1 >/dev/null | sed -n 's/.*generation: [0-9]* tokens, \([0-9.]*\) tokens\/s.*/\1/p')
    echo "round $round whale:     pp512 $pp t/s   tg128 $tg t/s"
    if [[ -x "$bench" ]]; then
        "$bench" -m "$model" -t "$threads" -p 512 -n 128 -r 1 -o csv 2>/dev/null \
            | python3 -c "
import csv, sys
rows = list(csv.DictReader(sys.stdin))
pp = [r['avg_ts'] for r in rows if r['n_prompt'] == '512']
tg = [r['avg_ts'] for r in rows if r['n_gen'] == '128']
print('round $round llama.cpp: pp512 %.1f t/s   tg128 %.1f t/s' % (float(pp[0]), float(tg[0])))"
    fi
done
