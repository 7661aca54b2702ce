#!/usr/bin/env bash
# Serving throughput of `whale serve` vs llama.cpp's llama-server on the same model: aggregate generated
# tokens/s and mean time to first token (TTFT) with 1, 4 and 8 concurrent streamed chat requests.
#
#   scripts/bench-serve.sh
#
# Settings (environment variables, all optional):
#   WHALE         whale binary           (default .build/release/whale; built with `swift build` if missing)
#   LLAMA_SERVER  llama-server binary    (default ${LLAMA_CPP_BUILD_ROOT:-.build-llama.cpp}/build/bin/llama-server;
#                                         if absent, whale is measured alone)
#   MODEL         GGUF model             (default models/SmolLM2-135M-Instruct.Q4_1.gguf)
#   ROUNDS        rounds per server      (default 3; the table shows medians)
#   TOKENS        max_tokens per request (default 128)
#   THREADS       compute threads        (default 2)
#   CONCURRENCY   stream counts          (default "1 4 8")
#   TEMPERATURE   sampling temperature   (default 0: greedy; above 0 both servers also sample, with llama.cpp's
#                                         default chain top_k 40, top_p 0.95, min_p 0.05 sent explicitly)
#
# llama-server is built from the same llama.cpp as scripts/build-llama-cpp.sh, in its build directory:
#   cmake -S <llama.cpp> -B <build> -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF
#   cmake --build <build> --target llama-server
# (with both UI options OFF the web-UI step embeds no assets and downloads nothing).
#
# How it measures, and why:
# - Both servers get 8 slots, THREADS threads and 2048 tokens of context per sequence (whale: --ctx 2048
#   per sequence; llama-server's -c is shared by its slots, so -c 16384 = 8 × 2048).
# - Rounds alternate whale, llama-server, whale, ... (the machine may be shared: interleaving spreads
#   background load over both), and each round starts its server afresh, so an idle server's threads
#   never compete with the measured one. A short warm-up request precedes the measurements.
# - Every request is a streamed chat completion at temperature TEMPERATURE with max_tokens TOKENS. Both servers must
#   generate the full TOKENS so the token rates compare like for like: llama-server gets ignore_eos; whale
#   has no ignore_eos (and refuses unknown parameters), so it gets logit_bias -100 on the tokens it stops
#   on, read from the GGUF (the eos/eot/eom ids and the control tokens spelled like end-of-turn markers,
#   as whale's tokenizer decides), which at temperature 0 has the same effect. The generated counts come
#   from each response's `usage` (stream_options.include_usage) and are checked and printed.
# - Stream i of a batch uses prompt i of a fixed list, prefixed with a tag unique to the round and batch
#   (the same texts for both servers): no request can reuse an earlier one's user message from a prompt
#   cache, so TTFT includes prompt processing (the shared chat-template system prefix may still be cached,
#   by both servers alike).
# - Aggregate tokens/s = all generated tokens of the batch / wall time from the first request sent to the
#   last stream finished. TTFT = time from sending a request to its first chunk carrying text, averaged
#   over the batch's streams ("under load" for 4 and 8 streams: all prompts arrive together).
# - The table: medians over the rounds; ratio = whale tok/s / llama-server tok/s; TTFT in milliseconds.
# Only 127.0.0.1 is used.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

WHALE=${WHALE:-.build/release/whale}
LLAMA_SERVER=${LLAMA_SERVER:-${LLAMA_CPP_BUILD_ROOT:-.build-llama.cpp}/build/bin/llama-server}
MODEL=${MODEL:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
ROUNDS=${ROUNDS:-3}
TOKENS=${TOKENS:-128}
THREADS=${THREADS:-2}
CONCURRENCY=${CONCURRENCY:-"1 4 8"}
TEMPERATURE=${TEMPERATURE:-0}

if [[ ! -f "$MODEL" ]]; then
    echo "error: model $MODEL not found (scripts/fetch-models.sh, or set MODEL)" >&2
    exit 1
fi
if [[ ! -x "$WHALE" ]]; then
    echo "building whale (swift build -c release --product whale)" >&2
    swift build -c release --product whale >&2
fi
if [[ ! -x "$LLAMA_SERVER" ]]; then
    echo "warning: llama-server not found at $LLAMA_SERVER; measuring whale only (see the header for the build)" >&2
    LLAMA_SERVER=
fi

# Server logs go to a temporary directory, removed at exit (printed when a server fails to start).
LOGS=$(mktemp -d "${TMPDIR:-/tmp}/bench-serve.XXXXXX")
trap 'rm -rf "$LOGS"' EXIT

export WHALE LLAMA_SERVER MODEL ROUNDS TOKENS THREADS CONCURRENCY LOGS TEMPERATURE
# The driver: server lifecycle, concurrent streaming clients (threads + http.client, stdlib only), table.
python3 - <<'PY'
import http.client
import json
import os
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time

WHALE, LLAMA_SERVER, MODEL = os.environ["WHALE"], os.environ["LLAMA_SERVER"], os.environ["MODEL"]
ROUNDS, TOKENS, THREADS = int(os.environ["ROUNDS"]), int(os.environ["TOKENS"]), int(os.environ["THREADS"])
CONCURRENCY = [int(c) for c in os.environ["CONCURRENCY"].split()]
TEMPERATURE = float(os.environ["TEMPERATURE"])
LOGS = os.environ["LOGS"]
PARALLEL, CTX = 8, 2048

PROMPTS = [
    "Write a long story about a whale who travels around the world.",
    "Explain in detail how a steam engine works, step by step.",
    "Describe a busy market in a medieval town, with all its sounds and smells.",
    "Write a detailed guide to growing tomatoes in a small garden.",
    "Tell the history of the bicycle, from its invention to today.",
    "Write a long letter from a lighthouse keeper to his sister.",
    "Describe the water cycle to a curious ten-year-old, with examples.",
    "Write an adventure story about two friends lost in a forest at night.",
]


def gguf_eos_ids(path):
    """The tokens whale ends generation on, so that we can ban them: the end-of-sequence ids the GGUF names
    (eos, eot, eom) and the control tokens spelled like end-of-turn markers (as whale's tokenizer does)."""
    named = {"tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"}
    spellings = {"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|eom_id|>", "<EOT>",
                 "<|end_of_text|>", "<\uff5cend\u2581of\u2581sentence\uff5c>", "<eos>"}
    sizes = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
    ids, tokens, types = set(), [], []
    with open(path, "rb") as f:
        magic, _version, _tensors, count = struct.unpack("<4sIQQ", f.read(24))
        if magic != b"GGUF":
            sys.exit(f"error: {path} is not a GGUF file")

        def string():
            return f.read(struct.unpack("<Q", f.read(8))[0])

        def skip(kind):
            if kind == 8:
                f.seek(struct.unpack("<Q", f.read(8))[0], 1)
            elif kind == 9:
                inner, n = struct.unpack("<IQ", f.read(12))
                if inner in sizes:
                    f.seek(sizes[inner] * n, 1)
                else:
                    for _ in range(n):
                        skip(inner)
            else:
                f.seek(sizes[kind], 1)

        for _ in range(count):
            key = string().decode()
            kind = struct.unpack("<I", f.read(4))[0]
            if key in named and kind in (4, 5):
                ids.add(struct.unpack("<I" if kind == 4 else "<i", f.read(4))[0])
            elif key == "tokenizer.ggml.tokens" and kind == 9:
                _inner, n = struct.unpack("<IQ", f.read(12))
                tokens = [string() for _ in range(n)]
            elif key == "tokenizer.ggml.token_type" and kind == 9:
                inner, n = struct.unpack("<IQ", f.read(12))
                types = list(struct.unpack(f"<{n}i", f.read(4 * n))) if inner == 5 else []
                if inner != 5:
                    f.seek(sizes[inner] * n, 1)
            else:
                skip(kind)
    encoded = {s.encode() for s in spellings}
    ids.update(i for i, (t, k) in enumerate(zip(tokens, types)) if k == 3 and t in encoded)  # 3: control
    return sorted(ids)


EOS_IDS = gguf_eos_ids(MODEL)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(kind):
    port = free_port()
    if kind == "whale":
        cmd = [WHALE, "serve", MODEL, "--host", "127.0.0.1", "--port", str(port), "--parallel", str(PARALLEL),
               "--ctx", str(CTX), "-t", str(THREADS)]
    else:
        cmd = [LLAMA_SERVER, "-m", MODEL, "--host", "127.0.0.1", "--port", str(port), "--parallel", str(PARALLEL),
               "-c", str(PARALLEL * CTX), "-t", str(THREADS)]
    log = open(os.path.join(LOGS, f"{kind}.log"), "w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + 180
    while time.time() < deadline:
        if proc.poll() is not None:
            break
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/health")
            if conn.getresponse().status == 200:  # llama-server answers 503 while loading
                return proc, port
        except OSError:
            pass
        time.sleep(0.3)
    proc.kill()
    log.close()
    sys.stderr.write(open(log.name).read()[-4000:])
    sys.exit(f"error: {kind} did not become healthy: {' '.join(cmd)}")


def stop(proc):
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def body(kind, prompt, max_tokens):
    b = {"messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens, "temperature": TEMPERATURE,
         "stream": True, "stream_options": {"include_usage": True}}
    if TEMPERATURE > 0:
        b.update(top_k=40, top_p=0.95, min_p=0.05)
    if kind == "whale":
        b["logit_bias"] = {str(i): -100 for i in EOS_IDS}
    else:
        b["ignore_eos"] = True
    return json.dumps(b).encode()


def stream(kind, port, payload, barrier, out):
    """One streamed request: out gets send time, first-text time, end time, usage."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    barrier.wait()
    sent = time.perf_counter()
    conn.request("POST", "/v1/chat/completions", body=payload, headers={"Content-Type": "application/json"})
    response = conn.getresponse()
    if response.status != 200:
        out.update(error=f"HTTP {response.status}: {response.read()[:300]!r}")
        return
    first = usage = None
    while True:
        line = response.readline()
        if not line:
            break
        line = line.strip()
        if not line.startswith(b"data:"):
            continue
        data = line[5:].strip()
        if data == b"[DONE]":
            break
        chunk = json.loads(data)
        if chunk.get("usage"):
            usage = chunk["usage"]
        for choice in chunk.get("choices", []):
            if first is None and (choice.get("delta") or {}).get("content"):
                first = time.perf_counter()
    out.update(sent=sent, first=first, end=time.perf_counter(), usage=usage)
    conn.close()


def batch(kind, port, n, tag, max_tokens=TOKENS):
    outs = [{} for _ in range(n)]
    barrier = threading.Barrier(n)
    payloads = [body(kind, f"[{tag}-{i}] {PROMPTS[i % len(PROMPTS)]}", max_tokens) for i in range(n)]
    threads = [threading.Thread(target=stream, args=(kind, port, payloads[i], barrier, outs[i])) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for o in outs:
        if "error" in o or not o.get("usage") or o.get("first") is None:
            sys.exit(f"error: {kind} request failed: {o}")
    wall = max(o["end"] for o in outs) - min(o["sent"] for o in outs)
    generated = [o["usage"]["completion_tokens"] for o in outs]
    return {
        "tps": sum(generated) / wall,
        "ttft": statistics.mean(o["first"] - o["sent"] for o in outs),
        "generated": generated,
        "prompt": [o["usage"]["prompt_tokens"] for o in outs],
        "wall": wall,
    }


kinds = ["whale"] + (["llama"] if LLAMA_SERVER else [])
names = {"whale": "whale", "llama": "llama-server"}
results = {(k, c): [] for k in kinds for c in CONCURRENCY}
print(f"model {MODEL}, {THREADS} threads, {TOKENS} tokens per request, temperature {TEMPERATURE}, {ROUNDS} rounds, "
      f"whale end-of-sequence ids banned: {EOS_IDS}", flush=True)
for r in range(1, ROUNDS + 1):
    for kind in kinds:
        proc, port = start(kind)
        try:
            batch(kind, port, 1, f"warmup{r}", max_tokens=8)
            for c in CONCURRENCY:
                res = batch(kind, port, c, f"r{r}c{c}")
                results[(kind, c)].append(res)
                short = [g for g in res["generated"] if g != TOKENS]
                print(f"round {r} {names[kind]:12} x{c}: {res['tps']:7.1f} tok/s  TTFT {res['ttft'] * 1000:7.1f} ms  "
                      f"wall {res['wall']:6.2f} s  generated {min(res['generated'])}..{max(res['generated'])}  "
                      f"prompt {min(res['prompt'])}..{max(res['prompt'])} tokens"
                      + (f"  WARNING: {len(short)} stream(s) did not generate {TOKENS}" if short else ""),
                      flush=True)
        finally:
            stop(proc)


def med(kind, c, key):
    return statistics.median(x[key] for x in results[(kind, c)]) if (kind, c) in results else None


print()
print(f"medians over {ROUNDS} round(s):")
print(f"{'streams':>7}  {'whale tok/s':>11}  {'llama-server tok/s':>18}  {'ratio':>6}  {'whale TTFT':>10}  "
      f"{'llama-server TTFT':>17}")
for c in CONCURRENCY:
    w, wt = med("whale", c, "tps"), med("whale", c, "ttft")
    l, lt = med("llama", c, "tps"), med("llama", c, "ttft")
    print(f"{c:>7}  {w:>11.1f}  " + (f"{l:>18.1f}  {w / l:>6.2f}  " if l else f"{'-':>18}  {'-':>6}  ")
          + f"{wt * 1000:>8.0f}ms  " + (f"{lt * 1000:>15.0f}ms" if lt else f"{'-':>17}"))
if 1 in CONCURRENCY and 8 in CONCURRENCY:
    w1, w8 = med("whale", 1, "tps"), med("whale", 8, "tps")
    verdict = "met" if w8 >= 2 * w1 else "NOT met"
    print(f"\nwhale scaling, 8 streams / 1 stream: {w8 / w1:.2f}x (target >= 2x: {verdict})")
    if LLAMA_SERVER:
        l8 = med("llama", 8, "tps")
        print(f"whale / llama-server at 8 streams: {w8 / l8:.2f} (target >= 1: {'met' if w8 >= l8 else 'NOT met'})")
        l1 = med("llama", 1, "tps")
        print(f"llama-server scaling, 8 streams / 1 stream: {l8 / l1:.2f}x")
PY
