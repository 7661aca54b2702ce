#!/usr/bin/env bash
# Speed side by side: `whale bench` and llama.cpp's `llama-bench` on the same GGUF files, alternating (whale,
# llama.cpp, whale, …) one repetition at a time so that both see the same machine load — the machine is
# shared and noisy: compare the ratios, not the absolute figures. Prints a markdown table of medians and
# whale / llama.cpp ratios per model and test.
#
#   scripts/bench-vs-llamacpp.sh [-t THREADS] [-r ROUNDS] [-p 512] [-n 128] [-d 0,2048] MODEL.gguf...
#
# Defaults: one thread per physical core (whale's default), 3 rounds, pp512 and tg128 at depth 0.
# Needs scripts/build-llama-cpp.sh (llama-bench under $LLAMA_CPP_BUILD_ROOT, default .build-llama.cpp in the
# repository; or point LLAMA_BENCH at a llama-bench binary, e.g. ik_llama.cpp's). Extra llama-bench
# arguments go in LLAMA_BENCH_ARGS (e.g. "-rtr 1" for ik_llama.cpp's run-time repacking).
# The rounds' raw figures are kept in $WHALE_BENCH_OUT (default: a temporary directory, printed at the end).
set -euo pipefail
cd "$(dirname "$0")/.."
threads=""
rounds=3
prompt=512
generate=128
depths=0
while getopts "t:r:p:n:d:" option; do
    case $option in
        t) threads=$OPTARG ;;
        r) rounds=$OPTARG ;;
        p) prompt=$OPTARG ;;
        n) generate=$OPTARG ;;
        d) depths=$OPTARG ;;
        *)
            sed -n '2,14p' "$0" >&2
            exit 2
            ;;
    esac
done
shift $((OPTIND - 1))
if [ $# -eq 0 ]; then
    sed -n '2,14p' "$0" >&2
    exit 2
fi
bench=${LLAMA_BENCH:-${LLAMA_CPP_BUILD_ROOT:-.build-llama.cpp}/build/bin/llama-bench}
if [ ! -x "$bench" ]; then
    echo "bench-vs-llamacpp: no llama-bench at $bench; run scripts/build-llama-cpp.sh or set LLAMA_BENCH" >&2
    exit 2
fi
out=${WHALE_BENCH_OUT:-$(mktemp -d)}
mkdir -p "$out"
swift build -c release --product whale > "$out/build.log" 2>&1 || {
    tail -n 30 "$out/build.log" >&2
    exit 1
}
whale=.build/release/whale
if [ -z "$threads" ]; then
    threads=$(python3 -c 'import os; print(len({open(f"/sys/devices/system/cpu/cpu{c}/topology/core_cpus_list").read() for c in os.sched_getaffinity(0)}))' 2> /dev/null || nproc)
fi
# -d only when a depth other than 0 is asked for: ik_llama.cpp's llama-bench has no -d (it runs at depth 0).
depth_args=()
if [ "$depths" != 0 ]; then
    depth_args=(-d "$depths")
fi
for round in $(seq "$rounds"); do
    for model in "$@"; do
        name=$(basename "$model")
        echo "round $round/$rounds: $name" >&2
        "$whale" bench "$model" -p "$prompt" -n "$generate" -d "$depths" -t "$threads" -r 1 -o json \
            > "$out/whale-$round-$name.json"
        # shellcheck disable=SC2086
        "$bench" -m "$model" -p "$prompt" -n "$generate" ${depth_args[@]+"${depth_args[@]}"} -t "$threads" -r 1 \
            -o json ${LLAMA_BENCH_ARGS:-} > "$out/llama-$round-$name.json" 2> "$out/llama-$round-$name.log"
    done
done

python3 - "$out" "$threads" "$@" << 'PY'
import json, os, statistics, sys
out, threads, models = sys.argv[1], sys.argv[2], sys.argv[3:]

def test_name(tokens_prompt, tokens_gen, depth):
    name = f"pp{tokens_prompt}" if tokens_prompt else f"tg{tokens_gen}"
    return name + (f" @ d{depth}" if depth else "")

print(f"| model | test | whale t/s | llama.cpp t/s | ratio | whale peak RSS |")
print(f"|---|---|---:|---:|---:|---:|")
for model in models:
    name = os.path.basename(model)
    whale, llama, rss = {}, {}, {}
    for f in sorted(os.listdir(out)):
        path = os.path.join(out, f)
        if f.startswith("whale-") and f.endswith(f"-{name}.json"):
            for row in json.load(open(path)):
                whale.setdefault(row["test"], []).append(row["tokens_per_second"])
                rss[row["test"]] = max(rss.get(row["test"], 0), row["peak_rss_bytes"])
        elif f.startswith("llama-") and f.endswith(f"-{name}.json"):
            for row in json.load(open(path)):
                test = test_name(row["n_prompt"], row["n_gen"], row.get("n_depth", 0))
                llama.setdefault(test, []).append(row["avg_ts"])
    for test in whale:
        w = statistics.median(whale[test])
        l = statistics.median(llama[test]) if test in llama else float("nan")
        print(f"| {name} | {test} | {w:.1f} | {l:.1f} | {w / l:.2f}× | {rss[test] / 2**20:.0f} MiB |")
print(f"\n{threads} threads, medians of {len(whale[next(iter(whale))])} alternating rounds; raw figures in {out}")
PY
