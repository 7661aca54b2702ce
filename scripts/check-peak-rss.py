#!/usr/bin/env python3
"""Peak memory of a real run against the budget of the speed issue: `whale run` of a PROMPT-token prompt
(default 512) and GENERATE generated tokens (default 128, greedy) must peak at no more than the model file's
size + the cache of the tokens it holds + 5 %.

  python3 scripts/check-peak-rss.py [--prompt 512] [--generate 128] [--whale PATH] MODEL.gguf...

The prompt is the start of the GPL-3 licence (the repository's copy, the perplexity fixture; or --text FILE)
tokenized by the model's own tokenizer and cut to exactly PROMPT tokens (`whale tokenize`, then `whale run --tokens`).
The peak is the child's ru_maxrss (resident set: mapped weights plus everything allocated); the cache bytes
per token come from `whale inspect --json`. Exit status 1 if a model is over its budget. Uses the release
build at .build/release/whale unless --whale names another binary (build it with `swift build -c release`).
"""
import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+")
    parser.add_argument("--prompt", type=int, default=512)
    parser.add_argument("--generate", type=int, default=128)
    parser.add_argument("--text", default=str(ROOT / "Tests/WhaleModelsTests/Fixtures/smollm2/perplexity.txt"))
    parser.add_argument("--whale", default=str(ROOT / ".build" / "release" / "whale"))
    args = parser.parse_args()
    if not os.access(args.whale, os.X_OK):
        sys.exit(f"check-peak-rss: no whale binary at {args.whale}; run `swift build -c release` first")
    over = 0
    for model in args.models:
        ids = json.loads(subprocess.check_output([args.whale, "tokenize", model, "--file", args.text]))
        if isinstance(ids, dict):
            ids = ids["ids"]
        if len(ids) < args.prompt:
            sys.exit(f"check-peak-rss: {args.text} is only {len(ids)} tokens for {model}; give a longer --text")
        prompt = ids[: args.prompt]
        inspect = json.loads(subprocess.check_output([args.whale, "inspect", model, "--json"]))
        per_token = inspect["cache_bytes_per_token"]
        # Peaks only grow: measure each model in a fresh process so one model's peak is not another's.
        measured = subprocess.run(
            [sys.executable, "-c", MEASURE, args.whale, model, ",".join(map(str, prompt)), str(args.generate)],
            capture_output=True, text=True)
        if measured.returncode != 0:
            sys.exit(f"check-peak-rss: whale run failed on {model}:\n{measured.stderr}")
        result = json.loads(measured.stdout)
        held = args.prompt + result["generated"]
        file_bytes = os.path.getsize(model)
        budget = (file_bytes + per_token * held) * 1.05
        verdict = "ok" if result["peak"] <= budget else "OVER"
        over += verdict != "ok"
        mib = 2**20
        print(
            f"{Path(model).name}: peak RSS {result['peak'] / mib:.1f} MiB for {args.prompt} + {result['generated']} "
            f"tokens; budget {budget / mib:.1f} MiB = (file {file_bytes / mib:.1f} + cache {per_token * held / mib:.1f}"
            f" MiB) + 5 %: {verdict} ({result['peak'] / budget:.3f} of the budget)")
    return 1 if over else 0


# Runs in a fresh interpreter: one `whale run`, then its peak and how many tokens it generated.
MEASURE = """
import json, resource, subprocess, sys
whale, model, prompt, generate = sys.argv[1:5]
run = subprocess.run([whale, "run", model, "--tokens", prompt, "-n", generate, "--temp", "0", "--json"],
                     capture_output=True, text=True)
if run.returncode != 0:
    sys.exit(run.stderr)
out = run.stdout
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
peak = peak if sys.platform == "darwin" else peak * 1024
print(json.dumps({"peak": peak, "generated": len(json.loads(out)["tokens"])}))
"""

if __name__ == "__main__":
    sys.exit(main())
