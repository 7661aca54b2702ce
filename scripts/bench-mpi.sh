#!/usr/bin/env bash
# What splitting a model across MPI ranks costs and saves, on one machine: `whale bench` in one process and
# under `mpirun -np 2` (alternating, ROUNDS times each), prompt and decode tokens/s and each rank's peak RSS;
# then (SERVE=1, the default) `whale serve` throughput with 8 concurrent requests, one process with
# SERVE_THREADS threads vs 2 ranks with SERVE_THREADS threads each — two ranks on two cores stand in for two
# one-core machines, and show what the server's micro-batches (one group of sequences per rank in flight at
# once) give.
#
#   scripts/bench-mpi.sh
#
# Settings (environment variables, all optional):
#   WHALE          whale binary          (default .build/release/whale)
#   MODEL          model for the bench   (default models/dsv3-mini-Q8_0.gguf: scripts/make-dsv3-models.py)
#   SERVE_MODEL    model for the server  (default models/SmolLM2-135M-Instruct.Q4_1.gguf)
#   ROUNDS         rounds each           (default 2; the table shows medians)
#   THREADS        bench threads / rank  (default 2)
#   P, N           bench prompt / decode lengths (default 512, 128)
#   SERVE          1 to measure the server too (default 1)
#   SERVE_THREADS  server threads / rank (default 1)
# Needs mpirun (Debian: openmpi-bin). Only 127.0.0.1 is used.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

WHALE=${WHALE:-.build/release/whale}
MODEL=${MODEL:-models/dsv3-mini-Q8_0.gguf}
SERVE_MODEL=${SERVE_MODEL:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
ROUNDS=${ROUNDS:-2}
THREADS=${THREADS:-2}
P=${P:-512}
N=${N:-128}
SERVE=${SERVE:-1}
SERVE_THREADS=${SERVE_THREADS:-1}
MPIRUN=(mpirun --allow-run-as-root --oversubscribe --bind-to none -np 2)

for file in "$WHALE" "$MODEL"; do
    [[ -e "$file" ]] || { echo "error: $file not found (see the settings above)" >&2; exit 1; }
done
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "whale bench $(basename "$MODEL") -p $P -n $N -t $THREADS: one process vs mpirun -np 2, $ROUNDS rounds each" >&2
for round in $(seq "$ROUNDS"); do
    "$WHALE" bench "$MODEL" -p "$P" -n "$N" -r 1 -t "$THREADS" -o json > "$work/one-$round.json" 2> /dev/null
    "${MPIRUN[@]}" "$WHALE" bench "$MODEL" -p "$P" -n "$N" -r 1 -t "$THREADS" -o json \
        > "$work/two-$round.json" 2> "$work/two-$round.err"
    echo "  round $round done" >&2
done

if [[ "$SERVE" == 1 ]]; then
    echo "whale serve $(basename "$SERVE_MODEL"), 8 concurrent requests: one process vs 2 ranks," \
        "$SERVE_THREADS thread(s) each, $ROUNDS rounds each" >&2
    for round in $(seq "$ROUNDS"); do
        for mode in one two; do
            port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
            launch=("$WHALE")
            [[ $mode == two ]] && launch=("${MPIRUN[@]}" "$WHALE")
            "${launch[@]}" serve "$SERVE_MODEL" --port "$port" --parallel 8 --ctx 1024 --threads "$SERVE_THREADS" \
                > /dev/null 2>&1 &
            server=$!
            python3 - "$port" > "$work/serve-$mode-$round.txt" << 'EOF'
import concurrent.futures, json, sys, time, urllib.request
port = int(sys.argv[1])
url = f"http://127.0.0.1:{port}"
for _ in range(600):
    try:
        if urllib.request.urlopen(url + "/health", timeout=2).status == 200:
            break
    except Exception:
        time.sleep(0.2)
def ask(i):
    body = {"model": "m", "prompt": f"Request {i}: a story about whales,", "max_tokens": 96, "temperature": 0,
            "logit_bias": {}}
    request = urllib.request.Request(url + "/v1/completions", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=600) as response:
        return json.loads(response.read())["usage"]["completion_tokens"]
ask(100)  # warm-up
start = time.time()
with concurrent.futures.ThreadPoolExecutor(8) as pool:
    tokens = sum(pool.map(ask, range(8)))
print(tokens / (time.time() - start))
EOF
            kill -TERM "$server" 2> /dev/null || true
            wait "$server" 2> /dev/null || true
        done
        echo "  round $round done" >&2
    done
fi

python3 - "$work" "$ROUNDS" "$SERVE" << 'EOF'
import glob, json, re, statistics, sys
work, rounds, serve = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"
def rows(kind):
    return [json.load(open(f"{work}/{kind}-{r}.json")) for r in range(1, rounds + 1)]
one, two = rows("one"), rows("two")
print("| test | one process t/s | 2 ranks t/s | ratio |")
print("|---|---|---|---|")
for i, test in enumerate(one[0]):
    a = statistics.median(run[i]["tokens_per_second"] for run in one)
    b = statistics.median(run[i]["tokens_per_second"] for run in two)
    print(f"| {test['test']} | {a:.1f} | {b:.1f} | {b / a:.2f}x |")
single_rss = statistics.median(run[-1]["peak_rss_bytes"] for run in one) / 2**20
ranks = {}
for r in range(1, rounds + 1):
    line = [l for l in open(f"{work}/two-{r}.err") if l.startswith("mpi: ")][-1]
    for rank, layers, rss in re.findall(r"rank (\d+): layers (\S+), peak RSS ([\d.]+) MiB", line):
        ranks.setdefault((int(rank), layers), []).append(float(rss))
print()
print("| process | layers | peak RSS | of one process |")
print("|---|---|---|---|")
print(f"| one process | all | {single_rss:.0f} MiB | 100% |")
for (rank, layers), values in sorted(ranks.items()):
    rss = statistics.median(values)
    print(f"| rank {rank} of 2 | {layers} | {rss:.0f} MiB | {100 * rss / single_rss:.0f}% |")
if serve:
    a = statistics.median(float(open(f"{work}/serve-one-{r}.txt").read()) for r in range(1, rounds + 1))
    b = statistics.median(float(open(f"{work}/serve-two-{r}.txt").read()) for r in range(1, rounds + 1))
    print()
    print("| server, 8 concurrent requests | generated t/s |")
    print("|---|---|")
    print(f"| one process | {a:.1f} |")
    print(f"| 2 ranks (micro-batches) | {b:.1f} ({b / a:.2f}x) |")
EOF
