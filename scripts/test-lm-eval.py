#!/usr/bin/env python3
"""lm-evaluation-harness against `whale serve`, checked against `whale score` and `whale run`.

Starts `whale serve MODEL` on 127.0.0.1 (a free port), writes two small local tasks (YAML over JSONL, no download):
  - whale_mc, multiple choice (log-likelihoods): lm_eval's accuracy must equal the accuracy computed directly from
    `whale score` (the same context / continuation split lm_eval makes), and every choice's log-likelihood must
    match whale score's to 1e-3;
  - whale_gen, generate_until (greedy, stop at a newline): every generation must equal `whale run --temp 0`'s.
lm_eval runs as users run it: `--model local-completions --model_args base_url=…/v1/completions`, its tokenizer
backend left on auto (it finds the server's /tokenizer_info and /tokenize and uses them).
Usage: scripts/test-lm-eval.py WHALE_BINARY MODEL.  Needs `pip install "lm_eval[api]"`. Prints 'N passed, N failed'.
"""
import glob
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

WHALE, MODEL = sys.argv[1], sys.argv[2]
passed = failed = 0

MULTIPLE_CHOICE = [
    ("What is the capital of France?", ["Paris", "London", "Berlin", "Madrid"], 0),
    ("How many legs does a spider have?", ["Six", "Eight", "Four", "Ten"], 1),
    ("Which planet is known as the Red Planet?", ["Venus", "Jupiter", "Mars", "Saturn"], 2),
    ("What do bees make?", ["Milk", "Silk", "Wax paper", "Honey"], 3),
    ("What is the opposite of hot?", ["Cold", "Warm", "Loud", "Bright"], 0),
    ("Which animal is the largest mammal?", ["Elephant", "Blue whale", "Giraffe", "Horse"], 1),
    ("What color is the sky on a clear day?", ["Green", "Red", "Blue", "Purple"], 2),
    ("How many days are in a week?", ["Five", "Six", "Ten", "Seven"], 3),
    ("What is frozen water called?", ["Ice", "Steam", "Sand", "Glass"], 0),
    ("Which language is spoken in Brazil?", ["Spanish", "Portuguese", "French", "Italian"], 1),
    ("What is 2 + 2?", ["Three", "Five", "Four", "Six"], 2),
    ("Which season comes after winter?", ["Autumn", "Summer", "Winter", "Spring"], 3),
]
GENERATION = [
    "Q: What is the capital of Italy?\nA:",
    "Q: Name a fruit that is yellow.\nA:",
    "Q: What is the color of grass?\nA:",
    "Q: How many wheels does a bicycle have?\nA:",
]


def check(name, condition, detail=""):
    global passed, failed
    if condition:
        passed += 1
        print(f"ok   {name}")
    else:
        failed += 1
        print(f"FAIL {name} {detail}")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(url, body):
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


work = tempfile.mkdtemp(prefix="whale-lm-eval-")
with open(os.path.join(work, "mc.jsonl"), "w") as f:
    for question, choices, answer in MULTIPLE_CHOICE:
        f.write(json.dumps({"question": question, "choices": choices, "answer": answer}) + "\n")
with open(os.path.join(work, "gen.jsonl"), "w") as f:
    for prompt in GENERATION:
        f.write(json.dumps({"prompt": prompt, "answer": ""}) + "\n")
with open(os.path.join(work, "whale_mc.yaml"), "w") as f:
    f.write(f"""task: whale_mc
dataset_path: json
dataset_kwargs:
  data_files:
    test: {os.path.join(work, "mc.jsonl")}
test_split: test
output_type: multiple_choice
doc_to_text: "Question: {{{{question}}}}\\nAnswer:"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: answer
metric_list:
  - metric: acc
""")
with open(os.path.join(work, "whale_gen.yaml"), "w") as f:
    f.write(f"""task: whale_gen
dataset_path: json
dataset_kwargs:
  data_files:
    test: {os.path.join(work, "gen.jsonl")}
test_split: test
output_type: generate_until
doc_to_text: "{{{{prompt}}}}"
doc_to_target: answer
generation_kwargs:
  until: ["\\n"]
  max_gen_toks: 12
  do_sample: false
  temperature: 0
metric_list:
  - metric: exact_match
""")

port = free_port()
base = f"http://127.0.0.1:{port}"
server = subprocess.Popen([WHALE, "serve", MODEL, "--port", str(port), "--parallel", "2", "--ctx", "1024"],
                          stderr=subprocess.DEVNULL)
try:
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(base + "/health", timeout=2) as r:
                if r.status == 200:
                    break
        except Exception:
            time.sleep(0.3)
    else:
        raise SystemExit("whale serve did not come up")

    output = os.path.join(work, "out")
    env = dict(os.environ, HF_DATASETS_OFFLINE="1", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    run = subprocess.run(
        [sys.executable, "-m", "lm_eval", "--model", "local-completions", "--model_args",
         f"base_url={base}/v1/completions,model=whale,num_concurrent=1,max_retries=1",
         "--tasks", "whale_mc,whale_gen", "--include_path", work, "--output_path", output, "--log_samples"],
        capture_output=True, text=True, env=env)
    check("lm_eval runs", run.returncode == 0, run.stderr[-3000:])
    check("lm_eval used the server's tokenizer", "remote tokenizer" in run.stderr.lower(), run.stderr[-2000:])
    results_files = glob.glob(os.path.join(output, "**", "results_*.json"), recursive=True)
    if run.returncode != 0 or not results_files:
        raise SystemExit(f"{passed} passed, {failed + 1} failed (no lm_eval results)")
    results = json.load(open(results_files[0]))["results"]

    def samples(task):
        path = glob.glob(os.path.join(output, "**", f"samples_{task}_*.jsonl"), recursive=True)[0]
        return sorted((json.loads(line) for line in open(path)), key=lambda s: s["doc_id"])

    # Multiple choice, directly: lm_eval's split (context "Question: …\nAnswer:", continuation " " + choice), the
    # continuation's tokens scored by whale score over the whole sequence.
    def tokenize(text):
        return post(base + "/tokenize", {"prompt": text, "add_special_tokens": False})["tokens"]

    correct = 0
    worst, worst_case = 0.0, None
    logged = samples("whale_mc")
    for (question, choices, answer), sample in zip(MULTIPLE_CHOICE, logged):
        context = f"Question: {question}\nAnswer:"
        context_ids = tokenize(context)
        scores = []
        for choice in choices:
            whole = tokenize(context + " " + choice)
            score = json.loads(subprocess.run(
                [WHALE, "score", MODEL, "--tokens", ",".join(map(str, whole)), "--json", "--top", "1"],
                capture_output=True, text=True, check=True).stdout)
            scores.append(sum(score["logprobs"][len(context_ids):]))
        correct += max(range(len(choices)), key=lambda i: scores[i]) == answer
        theirs = [r[0][0] if isinstance(r[0], list) else r[0] for r in sample["resps"]]
        for choice, a, b in zip(choices, theirs, scores):
            if abs(float(a) - b) > worst:
                worst, worst_case = abs(float(a) - b), (question, choice, float(a), b)
    direct = correct / len(MULTIPLE_CHOICE)
    acc = results["whale_mc"]["acc,none"]
    check("multiple choice: lm_eval accuracy equals whale score's", abs(acc - direct) < 1e-9, f"{acc} vs {direct}")
    check("multiple choice: log-likelihoods equal whale score's", worst < 1e-3, f"largest difference: {worst_case}")
    print(f"     whale_mc accuracy {acc:.3f} ({correct}/{len(MULTIPLE_CHOICE)}), largest difference {worst:.2e}")

    # Generation: each equals whale run greedy with the same stop.
    mismatches = []
    for prompt, sample in zip(GENERATION, samples("whale_gen")):
        ours = json.loads(subprocess.run(
            [WHALE, "run", MODEL, "-p", prompt, "--temp", "0", "-n", "12", "--stop", "\n", "--json"],
            capture_output=True, text=True, check=True).stdout)["text"]
        theirs = sample["resps"][0][0] if isinstance(sample["resps"][0], list) else sample["resps"][0]
        if theirs != ours:
            mismatches.append((prompt, theirs, ours))
    check("generate_until equals whale run --temp 0", not mismatches, repr(mismatches))
finally:
    server.terminate()
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.kill()

print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
