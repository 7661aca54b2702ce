#!/usr/bin/env python3
"""End-to-end test of whale across the ranks of an Open MPI job (README, "Several machines").

Runs `mpirun -np 2 whale …` on 127.0.0.1 and checks, against the same command in one process:
  - `whale run --temp 0 --json` and a seeded sampled run give the same tokens; `whale score` the same
    log-probabilities (to 1e-6) — on SmolLM2 (Llama, GGUF Q4_1), a tiny DeepSeek-V3 GGUF and a tiny
    DeepSeek safetensors checkpoint, split by memory and by --split-layers;
  - a run long enough to shift the context (the shift replayed on rank 1's layers) gives the same tokens, and
    `whale perplexity` the same figures;
  - `whale bench` runs and rank 0 reports each rank's layers and peak memory;
  - `whale serve` under 2 ranks answers the `openai` client: the same text as `whale run --chat`, four
    concurrent requests each equal to the same request alone; SIGTERM to mpirun ends the job;
  - faults: a rank that cannot open its model ends the job with rank 0 naming it; a rank killed mid-run ends
    the job within seconds (no hang); bad --split-layers, --mtp across ranks, --split-layers outside mpirun.
Usage: scripts/test-mpi.py WHALE_BINARY SMOLLM2_GGUF FIXTURES_DIR.  Needs mpirun (Debian: openmpi-bin) and
`pip install openai`. Prints 'N passed, N failed'.
"""
import concurrent.futures
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import openai

WHALE, SMOLLM2, FIXTURES = sys.argv[1], sys.argv[2], sys.argv[3]
MPIRUN = ["mpirun", "--allow-run-as-root", "--oversubscribe", "--bind-to", "none"]
passed = failed = 0


def check(name, condition, detail=""):
    global passed, failed
    if condition:
        passed += 1
        print(f"ok   {name}")
    else:
        failed += 1
        print(f"FAIL {name} {detail}")


def whale(args, ranks=1, timeout=600):
    """Runs whale (under mpirun with `ranks` > 1); returns (exit code, stdout, stderr, seconds)."""
    command = ([*MPIRUN, "-np", str(ranks)] if ranks > 1 else []) + [WHALE, *args]
    start = time.time()
    p = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    return p.returncode, p.stdout, p.stderr, time.time() - start


def as_json(out):
    return json.loads(out.strip().splitlines()[-1])


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def healthy(port, seconds=120):
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                if r.status == 200:
                    return True
        except Exception:
            time.sleep(0.3)
    return False


def rank_pids(mpirun_pid, rank):
    """The pids of mpirun's processes whose OMPI_COMM_WORLD_RANK is `rank`."""
    pids = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as f:
                env = f.read().split(b"\0")
            with open(f"/proc/{name}/cmdline", "rb") as f:
                cmdline = f.read()
        except OSError:
            continue
        if f"OMPI_COMM_WORLD_RANK={rank}".encode() in env and WHALE.encode() in cmdline:
            pids.append(int(name))
    return pids


# -- Same tokens and log-probabilities as one process ----------------------------------------------------------
PROMPT = "1,2,3,4,5,6,7,8,9,10,11,12"
models = [
    ("SmolLM2 Q4_1", SMOLLM2, ["--ctx", "512"], ["10,20", "29,1"]),
    ("DeepSeek-V3 tiny GGUF", f"{FIXTURES}/deepseek/mtp/model-f32.gguf", ["--ctx", "128"], ["1,1"]),
    ("DeepSeek tiny safetensors", f"{FIXTURES}/deepseek/bf16", ["--ctx", "128"], ["1,1"]),
]
for name, model, ctx, splits in models:
    greedy = ["run", model, *ctx, "--tokens", PROMPT, "-n", "24", "--temp", "0", "--json"]
    sampled = ["run", model, *ctx, "--tokens", PROMPT, "-n", "24", "--temp", "0.9", "--seed", "7", "--json"]
    score = ["score", model, *ctx, "--tokens", PROMPT + ",40,41,42,43", "--top", "5", "--json"]
    single = {key: whale(args) for key, args in [("greedy", greedy), ("sampled", sampled), ("score", score)]}
    for key, result in single.items():
        check(f"{name}: {key} in one process", result[0] == 0, result[2][-400:])
    for split in [None, *splits]:
        extra = ["--split-layers", split] if split else []
        label = f"{name}, 2 ranks" + (f" split {split}" if split else "")
        for key, args in [("greedy", greedy), ("sampled", sampled)]:
            code, out, err, _ = whale(args + extra, ranks=2)
            ok = code == 0 and as_json(out)["tokens"] == as_json(single[key][1])["tokens"]
            check(f"{label}: {key} tokens equal one process's", ok, err[-600:])
        code, out, err, _ = whale(score + extra, ranks=2)
        if code != 0:
            check(f"{label}: score", False, err[-600:])
            continue
        a, b = as_json(out), as_json(single["score"][1])
        diff = max(abs(x - y) for x, y in zip(a["logprobs"][1:], b["logprobs"][1:]))
        top_ids = [[t[0] for t in row] for row in a["top"]] == [[t[0] for t in row] for row in b["top"]]
        check(f"{label}: score logprobs equal one process's (max diff {diff:.2e})", diff <= 1e-6 and top_ids)
        check(f"{label}: rank 0 reports the split and each rank's peak RSS",
              "mpi: rank 0: layers 0..<" in err and "rank 1: layers" in err and "peak RSS" in err, err[-300:])

# A context of 48 tokens and 80 generated: the context shifts (rank 1 replays it on its layers).
shift = ["run", SMOLLM2, "--ctx", "48", "--tokens", PROMPT, "-n", "80", "--temp", "0", "--json"]
one, two = whale(shift), whale(shift, ranks=2)
check("context shift across ranks: same tokens",
      one[0] == 0 and two[0] == 0 and as_json(two[1])["tokens"] == as_json(one[1])["tokens"]
      and as_json(one[1])["timings"]["context_shift_dropped_tokens"] > 0, two[2][-400:])

perplexity = ["perplexity", SMOLLM2, "-f", f"{FIXTURES}/smollm2/perplexity.txt", "--ctx", "256", "--chunks", "4"]
one, two = whale(perplexity), whale(perplexity, ranks=2)
final = [next((l for l in r[1].splitlines() if l.startswith("Final estimate")), None) for r in (one, two)]
check("perplexity across ranks equals one process's", one[0] == 0 and two[0] == 0 and final[0] and final[0] == final[1],
      f"{final} {two[2][-300:]}")

code, out, err, _ = whale(["bench", SMOLLM2, "-p", "32", "-n", "8", "-r", "1", "-o", "json"], ranks=2)
check("bench under 2 ranks", code == 0 and len(json.loads(out)) == 2 and "rank 1: layers" in err, err[-400:])

# -- Faults ----------------------------------------------------------------------------------------------------
p = subprocess.run(
    [*MPIRUN, "-np", "1", WHALE, "run", SMOLLM2, "--tokens", "1,2", "-n", "2", ":",
     "-np", "1", WHALE, "run", "/nonexistent/model.gguf", "--tokens", "1,2", "-n", "2"],
    capture_output=True, text=True, timeout=120)
check("a rank that cannot open the model: rank 0 names it, the job fails",
      p.returncode != 0 and "error: rank 1: /nonexistent/model.gguf: no such file" in p.stderr, p.stderr[-600:])

code, out, err, _ = whale(["run", SMOLLM2, "--tokens", "1,2", "--split-layers", "20,20"], ranks=2)
check("--split-layers not summing to the layers is refused",
      code != 0 and "error: --split-layers: 20,20 is not 2 counts" in err, err[-400:])
code, out, err, _ = whale(["run", SMOLLM2, "--tokens", "1,2", "--split-layers", "15,15"])
check("--split-layers outside mpirun is refused", code != 0 and "only means something across the ranks" in err)
code, out, err, _ = whale(["run", f"{FIXTURES}/deepseek/mtp/model-f32.gguf", "--tokens", "1,2", "--temp", "0",
                           "--mtp"], ranks=2)
check("--mtp across ranks is refused", code != 0 and "--mtp: self-speculative decoding does not run across" in err,
      err[-400:])

job = subprocess.Popen([*MPIRUN, "-np", "2", WHALE, "run", SMOLLM2, "--ctx", "8192", "--tokens", "1,2,3",
                        "-n", "100000", "--temp", "0"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
time.sleep(4)
victims = rank_pids(job.pid, 1)
for pid in victims:
    os.kill(pid, signal.SIGKILL)
start = time.time()
try:
    job.wait(timeout=30)
    ended = time.time() - start
except subprocess.TimeoutExpired:
    job.kill()
    ended = None
err = job.stderr.read()
check(f"a rank killed mid-run ends the job within seconds ({ended and round(ended, 1)} s)",
      len(victims) == 1 and ended is not None and ended < 15 and job.returncode != 0
      and "rank 1" in err, err[-400:])

# -- whale serve under 2 ranks, with the openai client ---------------------------------------------------------
QUESTION = "Name three colors."
code, out, err, _ = whale(["run", SMOLLM2, "--chat", "-p", QUESTION, "-n", "24", "--temp", "0", "--json"])
expected_text = as_json(out)["text"] if code == 0 else None
port = free_port()
server = subprocess.Popen([*MPIRUN, "-np", "2", WHALE, "serve", SMOLLM2, "--port", str(port), "--ctx", "1024",
                           "--parallel", "4"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
try:
    up = healthy(port)
    check("serve under 2 ranks comes up", up)
    if up:
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="none")

        def chat(question, tokens=24):
            response = client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": question}], temperature=0, max_tokens=tokens)
            return response.choices[0].message.content

        text = chat(QUESTION)
        check("serve under 2 ranks: chat equals whale run --chat", text == expected_text,
              f"{text!r} vs {expected_text!r}")
        questions = ["Name three colors.", "What is 2+2?", "Say hello.", "Name a fruit."]
        alone = [chat(q) for q in questions]
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            together = list(pool.map(chat, questions))
        check("serve under 2 ranks: 4 concurrent requests each equal to alone", together == alone)
finally:
    server.send_signal(signal.SIGTERM)
    try:
        server.wait(timeout=30)
        stopped = True
    except subprocess.TimeoutExpired:
        server.kill()
        stopped = False
check("SIGTERM to mpirun ends the serving job", stopped)

print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
