#!/usr/bin/env python3
"""Writes the reference fixtures ("goldens") for the dense Llama / Qwen2 models: Tests/WhaleModelsTests/Fixtures/.

Parts (--parts, default all):

    smollm2      llama.cpp (llama-cpp-python) on models/SmolLM2-135M-Instruct.Q4_1.gguf: 5 prompts, their token ids,
                 the logprob of every prompt token, 64 greedy tokens (argmax of llama.cpp's float32 logits, taken
                 here, not by a sampler) with the chosen token's logprob, the top-5 and the top1-top2 gap per step
                 -> smollm2/greedy.json
    perplexity   llama.cpp's own `llama-perplexity` (built by scripts/build-llama-cpp.sh) on smollm2/perplexity.txt
                 (a copy of Debian's /usr/share/common-licenses/GPL-3) with -c 512 -b 512 -t 2; its final estimate,
                 running per-chunk values and the exact command; plus the same algorithm re-done here in Python with
                 llama-cpp-python (per-chunk NLL, as a cross-check and a readable spec) -> smollm2/perplexity.json
    tiny         three tiny random dense models made with transformers + torch (fixed seeds, float32):
                   tiny-llama        LlamaConfig, untied embeddings, rope_theta 10000
                   tiny-qwen2        Qwen2Config, q/k/v biases, tied embeddings, rope_theta 1e6
                   tiny-llama3-rope  LlamaConfig with rope_parameters rope_type "llama3" (factor 8, low 1, high 4,
                                     original_max_position_embeddings 64), rope_theta 500000, a 100-token sequence
                 each: config.json, generation_config.json, model.safetensors (save_pretrained), a byte-level BPE
                 tokenizer.json + tokenizer_config.json made here (256 byte tokens + learned merges + 3 specials =
                 vocab_size), model-f32.gguf written by llama.cpp's convert_hf_to_gguf.py --outtype f32,
                 reference.json (transformers, eager attention, float32 logits -> float64 log_softmax) and
                 reference-llamacpp.json (llama.cpp on model-f32.gguf, same ids, same layout, + the max abs diff)
    tiny-q8      for the tiny models above: model-q8_0.gguf (the converter with --outtype q8_0) and
                 reference-llamacpp-q8_0.json (llama.cpp on it with its defaults: F16 KV cache, no flash
                 attention — the numerics BlueWhale reproduces bit for bit)

Every part then rewrites Fixtures/MANIFEST.json: versions, seeds, commands, sha256 of every file under Fixtures/.

Setup (pinned; the script refuses other versions):

    scripts/fetch-models.sh smollm2
    pip install torch==2.15.0 transformers==5.23.0 tokenizers==0.23.3 gguf==0.19.0 safetensors==0.8.0 \\
        numpy==2.4.6 jinja2==3.1.6 sentencepiece==0.2.3
    CMAKE_ARGS="-DGGML_NATIVE=OFF -DLLAMA_BUILD_TESTS=OFF" pip install --no-build-isolation llama-cpp-python==0.3.36
    scripts/build-llama-cpp.sh          # llama-perplexity etc. in $LLAMA_CPP_BUILD_ROOT/build/bin, and the
                                        # llama.cpp sources (convert_hf_to_gguf.py) in $LLAMA_CPP_BUILD_ROOT/src

Run:

    python3 scripts/make-dense-fixtures.py                      # everything
    python3 scripts/make-dense-fixtures.py --parts tiny         # one part
    python3 scripts/make-dense-fixtures.py --llama-cpp-build /path/to/llama.cpp-build

The tokenizer trick for the converter: convert_hf_to_gguf.py identifies a byte-level BPE pre-tokenizer by hashing the
ids its tokenizer gives for a fixed test string (get_vocab_base_pre), and a 320-token vocabulary can never hash like a
real model's. The script first runs the converter untouched and records the refusal; then it runs the same,
unmodified converter files in-process with only TextModel.get_vocab_base_pre replaced by a function returning the
pre-tokenizer name that the tokenizer.json really implements ("llama-bpe" for the Llama 3 split regex, "qwen2" for
Qwen2's). Everything else in the GGUF (tensor names, the Q/K row permutation of Llama, rope_freqs, metadata) is the
converter's own code.
"""
import argparse
import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "Tests" / "WhaleModelsTests" / "Fixtures"
SMOLLM2_GGUF = ROOT / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
PERPLEXITY_SOURCE = Path("/usr/share/common-licenses/GPL-3")
PERPLEXITY_SHA256 = "3972dc9744f6499f0f9b2dbf76696f2ae7ad8af9b23dde66d6af86c9dfb36986"  # Debian base-files 12.4

LLAMA_CPP_PYTHON_VERSION = "0.3.36"
EXPECTED_VERSIONS = {
    "torch": "2.15.0",
    "transformers": "5.23.0",
    "tokenizers": "0.23.3",
    "gguf": "0.19.0",
    "safetensors": "0.8.0",
    "numpy": "2.4.6",
    "jinja2": "3.1.6",
    "sentencepiece": "0.2.3",  # convert_hf_to_gguf.py imports it before it looks for a tokenizer.model
    "llama_cpp_python": LLAMA_CPP_PYTHON_VERSION,
}
DISTRIBUTIONS = {
    "torch": "torch", "transformers": "transformers", "tokenizers": "tokenizers", "gguf": "gguf",
    "safetensors": "safetensors", "numpy": "numpy", "jinja2": "Jinja2", "sentencepiece": "sentencepiece",
    "llama_cpp_python": "llama_cpp_python",
}
PARTS = ["smollm2", "perplexity", "tiny", "tiny-q8"]
PARTS_NEED = {
    "smollm2": ["llama_cpp_python", "numpy", "transformers", "jinja2"],
    "perplexity": ["llama_cpp_python", "numpy"],
    "tiny": ["torch", "transformers", "tokenizers", "gguf", "safetensors", "numpy", "sentencepiece", "llama_cpp_python"],
    "tiny-q8": ["torch", "transformers", "gguf", "safetensors", "numpy", "sentencepiece", "llama_cpp_python"],
}

N_THREADS = 2
GGML_TYPE_F32 = 0
GGML_TYPE_F16 = 1
GREEDY_STEPS = 64
TOP_K = 5
DIGITS = 6  # logprobs are written rounded to 1e-6

SMOLLM2_PROMPTS = [
    # name, kind, content. "chat" is rendered with the GGUF's own chat template (which adds SmolLM's default
    # system message when there is none) and add_generation_prompt=True.
    ("chat", "chat", [{"role": "user", "content": "What is the capital of France? Answer in one sentence."}]),
    ("english", "text", "The old lighthouse keeper climbed the narrow stairs every evening, and"),
    ("code", "text", 'def fibonacci(n):\n    """Return the n-th Fibonacci number."""\n'),
    ("list", "text", "Three simple ways to save water at home:\n1."),
    ("question", "text", "Question: Why is the sky blue?\nAnswer:"),
]

# Tiny models. std values are deliberately large (the HF default is 0.02) so that logits are far from flat and a
# wrong rope, norm, bias or head mapping changes the logprobs visibly.
TINY_COMMON = dict(
    vocab_size=320, hidden_size=64, intermediate_size=160, num_hidden_layers=2, num_attention_heads=4,
    num_key_value_heads=2, head_dim=16, max_position_embeddings=256,
)
TINY_INIT = {"embed_std": 1.0, "linear_std": 0.15, "lm_head_std": 0.3, "bias_std": 0.3, "norm_mean": 1.0,
             "norm_noise_std": 0.2}
TINY_MODELS = {
    "tiny-llama": {
        "family": "llama", "weights_seed": 1001, "sequence_seed": 2001, "sequence_length": 40,
        "config": dict(TINY_COMMON, rms_norm_eps=1e-5, tie_word_embeddings=False,
                       rope_parameters={"rope_type": "default", "rope_theta": 10000.0}),
    },
    "tiny-qwen2": {
        "family": "qwen2", "weights_seed": 1002, "sequence_seed": 2002, "sequence_length": 40,
        # tied: the embedding is also the output head, so a smaller std keeps the logits from being too peaked
        "init": {"embed_std": 0.4},
        "config": dict(TINY_COMMON, rms_norm_eps=1e-6, tie_word_embeddings=True, use_sliding_window=False,
                       rope_parameters={"rope_type": "default", "rope_theta": 1000000.0}),
    },
    "tiny-llama3-rope": {
        "family": "llama", "weights_seed": 1003, "sequence_seed": 2003, "sequence_length": 100,
        "config": dict(TINY_COMMON, rms_norm_eps=1e-5, tie_word_embeddings=False,
                       rope_parameters={"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0,
                                        "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                        "original_max_position_embeddings": 64}),
    },
}

# Tokenizers for the tiny models: byte-level BPE, ids 0..255 = the 256 bytes (GPT-2's byte-to-unicode alphabet, in
# byte order), then merges learned here on perplexity.txt, then 3 special tokens at the end.
TOKENIZER_FAMILIES = {
    "llama": {  # Llama 3 style; llama.cpp pre-tokenizer "llama-bpe" (ignore_merges, adds BOS)
        "pre": "llama-bpe",
        "regex": r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
        "ignore_merges": True,
        "specials": ["<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>"],
        "bos": "<|begin_of_text|>", "eos": "<|eot_id|>", "add_bos": True,
    },
    "qwen2": {  # Qwen2 style; llama.cpp pre-tokenizer "qwen2" (no BOS, single digits)
        "pre": "qwen2",
        "regex": r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
        "ignore_merges": False,
        "specials": ["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        "bos": None, "eos": "<|im_end|>", "pad": "<|endoftext|>", "add_bos": False,
    },
}
TOKENIZER_CHECK_TEXTS = [
    "Hello world! The GNU General Public License is a free, copyleft license.",
    "  leading spaces, tabs\tand\nnewlines\n\n123 4567 89",
    "Ünïcödé — 你好 🙂 it's, we've, they'll",
]


# ---------------------------------------------------------------------------------------------------------------
# small helpers


def fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(1)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def installed_versions(names) -> dict:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in names:
        try:
            found[name] = version(DISTRIBUTIONS[name])
        except PackageNotFoundError:
            found[name] = None
    return found


def check_versions(parts) -> dict:
    needed = sorted({n for p in parts for n in PARTS_NEED[p]})
    found = installed_versions(needed)
    # torch wheels carry a local version (2.15.0+cu132): compare the public part
    wrong = [n for n in needed if (found[n] or "").split("+")[0] != EXPECTED_VERSIONS[n]]
    if wrong:
        lines = [f"{DISTRIBUTIONS[n]}: found {found[n] or 'nothing'}, need {EXPECTED_VERSIONS[n]}" for n in wrong]
        hint = "pip install " + " ".join(f"{DISTRIBUTIONS[n]}=={EXPECTED_VERSIONS[n]}" for n in wrong)
        fail("wrong package versions for parts " + ",".join(parts) + ":\n  " + "\n  ".join(lines) + "\n" + hint)
    return found


def r(x: float) -> float:
    return round(float(x), DIGITS)


def log_softmax64(logits_f32):
    """log_softmax in float64 of a float32 logit row (the row is widened first, nothing is computed in float32)."""
    import numpy as np

    x = np.asarray(logits_f32, dtype=np.float32).astype(np.float64)
    m = x.max(axis=-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=-1, keepdims=True))


def top_k(logprobs, k=TOP_K):
    """[[id, logprob], ...] best first; equal values keep the lower id first (stable sort)."""
    import numpy as np

    order = np.argsort(-logprobs, kind="stable")[:k]
    return [[int(i), r(logprobs[i])] for i in order]


def argmax_f32(logits_f32) -> int:
    import numpy as np

    return int(np.argmax(np.asarray(logits_f32, dtype=np.float32)))  # first index among equal maxima


def _flat(v) -> bool:
    if isinstance(v, (str, int, float, bool)) or v is None:
        return True
    if isinstance(v, list):
        return all(isinstance(x, (str, int, float, bool)) or x is None
                   or (isinstance(x, list) and all(not isinstance(y, (list, dict)) for y in x)) for x in v)
    if isinstance(v, dict):
        return len(v) <= 12 and all(_flat(x) and not isinstance(x, dict) for x in v.values())
    return False


def dumps(v, indent: int = 0) -> str:
    """JSON with one line per flat value (lists of numbers, per-step records) and nested objects indented."""
    pad = " " * indent
    if _flat(v):
        return json.dumps(v, ensure_ascii=False, separators=(", ", ": "))
    if isinstance(v, dict):
        items = [f'{pad}  {json.dumps(k)}: {dumps(x, indent + 2)}' for k, x in v.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    items = [f"{pad}  {dumps(x, indent + 2)}" for x in v]
    return "[\n" + ",\n".join(items) + "\n" + pad + "]"


def write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dumps(obj) + "\n", encoding="utf-8")
    log(f"wrote {path.relative_to(ROOT)} ({path.stat().st_size} bytes)")


def llama_cpp_source_info(llama_src: Path) -> dict:
    info = {"llama_cpp_python": LLAMA_CPP_PYTHON_VERSION, "source": "vendor/llama.cpp of the PyPI sdist "
            f"llama-cpp-python=={LLAMA_CPP_PYTHON_VERSION}"}
    if llama_src.is_dir():
        try:
            commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=llama_src, capture_output=True, text=True,
                                    check=True).stdout.strip()
            count = subprocess.run(["git", "rev-list", "--count", "HEAD"], cwd=llama_src, capture_output=True,
                                   text=True, check=True).stdout.strip()
            info["commit"] = commit
            info["rev_list_count_in_sdist"] = int(count)
        except (subprocess.CalledProcessError, FileNotFoundError):
            pass
    return info


def bindings_info() -> dict:
    import llama_cpp

    return {
        "llama_cpp_python": llama_cpp.__version__,
        "llama_version": llama_cpp.llama_version().decode() if hasattr(llama_cpp, "llama_version") else None,
        "system_info": llama_cpp.llama_print_system_info().decode().strip(),
    }


# ---------------------------------------------------------------------------------------------------------------
# B. SmolLM2 greedy goldens


def render_chat(template: str, messages, bos: str, eos: str) -> str:
    from transformers.utils.chat_template_utils import render_jinja_template

    rendered, _ = render_jinja_template(conversations=[messages], chat_template=template,
                                        add_generation_prompt=True, bos_token=bos, eos_token=eos)
    return rendered[0]


def make_smollm2(ctx: dict) -> dict:
    import llama_cpp
    import numpy as np

    if sha256_file(SMOLLM2_GGUF) != SMOLLM2_SHA256:
        fail(f"{SMOLLM2_GGUF} has the wrong sha256; run scripts/fetch-models.sh smollm2")
    llm = llama_cpp.Llama(model_path=str(SMOLLM2_GGUF), n_ctx=512, n_threads=N_THREADS, logits_all=True,
                          verbose=False)
    meta = llm.metadata
    add_bos = meta.get("tokenizer.ggml.add_bos_token", "false") == "true"
    n_vocab = llm.n_vocab()
    eog = {llm.token_eos()}
    bos_text = llm.detokenize([llm.token_bos()], special=True).decode()
    eos_text = llm.detokenize([llm.token_eos()], special=True).decode()

    prompts = []
    for name, kind, content in SMOLLM2_PROMPTS:
        text = render_chat(meta["tokenizer.chat_template"], content, bos_text, eos_text) if kind == "chat" else content
        ids = llm.tokenize(text.encode("utf-8"), add_bos=add_bos, special=True)
        llm.reset()
        llm.eval(ids)  # the whole prompt in one llama_decode (n_batch 512)
        prompt_rows = np.array(llm.scores[: len(ids)], dtype=np.float32)
        lp = log_softmax64(prompt_rows)
        prompt_logprobs = [r(lp[i - 1, ids[i]]) for i in range(1, len(ids))]
        last_top = top_k(lp[-1])

        steps, generated = [], []
        for step in range(GREEDY_STEPS):
            row = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float32)
            tok = argmax_f32(row)
            lps = log_softmax64(row)
            top = top_k(lps)
            steps.append({"id": tok, "logprob": r(lps[tok]), "gap": r(top[0][1] - top[1][1]), "top": top})
            generated.append(tok)
            if step + 1 < GREEDY_STEPS:
                llm.eval([tok])  # one token per llama_decode
        first_eog = next((i for i, t in enumerate(generated) if t in eog), None)
        gaps = [s["gap"] for s in steps]
        prompts.append({
            "name": name,
            "text": text,
            "ids": ids,
            "prompt_logprobs": prompt_logprobs,
            "prompt_last_top": last_top,
            "generated": generated,
            "generated_text": llm.detokenize(generated, special=True).decode("utf-8", errors="replace"),
            "first_eog_step": first_eog,
            "min_gap_first_32": r(min(gaps[:32])),
            "min_gap_all": r(min(gaps)),
            "steps": steps,
        })
        log(f"smollm2 {name}: {len(ids)} prompt tokens, min top1-top2 gap (32 steps) {min(gaps[:32]):.4f}")

    doc = {
        "model": SMOLLM2_GGUF.name,
        "model_sha256": SMOLLM2_SHA256,
        "reference": "llama.cpp through llama-cpp-python: Llama(model_path, n_ctx=512, n_threads=2, "
                     "logits_all=True) with llama.cpp's default F16 KV cache and no flash attention; the prompt "
                     "evaluated in one batch, then one token per decode",
        "llama_cpp": ctx["llama_cpp"],
        "bindings": bindings_info(),
        "n_vocab": n_vocab,
        "add_bos": add_bos,
        "tokenize": "llama_tokenize(text, add_special=add_bos (GGUF tokenizer.ggml.add_bos_token), "
                    "parse_special=true)",
        "greedy": "argmax of llama.cpp's float32 logits (first index on ties), no sampler; exactly "
                  f"{GREEDY_STEPS} tokens, not stopped at end-of-generation (first_eog_step says where it came)",
        "logprobs": "log_softmax in float64 over all n_vocab float32 logits, rounded to 1e-6",
        "fields": {
            "prompt_logprobs": "entry i-1 = logprob of ids[i] given ids[..<i], for i = 1..len(ids)-1",
            "prompt_last_top": "top-5 [id, logprob] of the distribution after the last prompt token",
            "steps": "per generated token: id, logprob, gap = top1 - top2 logprob, top = top-5 [id, logprob]",
        },
        "tolerance_note": "Q4_1 weights: llama.cpp's CPU matmul quantizes activations to Q8_1 before the dot "
                          "product, so an implementation with float activations differs by ~1e-2 in logprobs; "
                          "compare greedy ids only where the gap is clearly larger than that.",
        "prompts": prompts,
    }
    out = OUT / "smollm2" / "greedy.json"
    write_json(out, doc)
    return {"outputs": [str(out.relative_to(OUT))],
            "min_gap_first_32": {p["name"]: p["min_gap_first_32"] for p in prompts}}


# ---------------------------------------------------------------------------------------------------------------
# C. Perplexity golden


def parse_perplexity_output(text: str) -> dict:
    import re

    result = {}
    if m := re.search(r"Final estimate: PPL = ([0-9.]+) \+/- ([0-9.]+)", text):
        result["ppl"] = float(m.group(1))
        result["ppl_error"] = float(m.group(2))
        result["final_line"] = m.group(0)
    if m := re.search(r"calculating perplexity over (\d+) chunks, n_ctx=(\d+), batch_size=(\d+), n_seq=(\d+)", text):
        result["n_chunks"], result["n_ctx"], result["n_batch"], result["n_seq"] = map(int, m.groups())
    result["running_ppl"] = [float(v) for _, v in re.findall(r"\[(\d+)\]([0-9.]+|nan|inf),", text)]
    return result


def perplexity_python(text: str, n_ctx: int) -> dict:
    """tools/perplexity/perplexity.cpp, perplexity() without --ppl-stride, redone with llama-cpp-python."""
    import llama_cpp
    import numpy as np

    llm = llama_cpp.Llama(model_path=str(SMOLLM2_GGUF), n_ctx=n_ctx, n_batch=n_ctx, n_ubatch=n_ctx,
                          n_threads=N_THREADS, logits_all=True, verbose=False, type_k=GGML_TYPE_F16,
                          type_v=GGML_TYPE_F16, flash_attn=False)
    add_bos = llm.metadata.get("tokenizer.ggml.add_bos_token", "false") == "true"
    # common_tokenize(ctx, text, add_special=true, parse_special=false): BOS only if the vocab adds it
    tokens = llm.tokenize(text.encode("utf-8"), add_bos=add_bos, special=False)
    n_chunk = len(tokens) // n_ctx
    first = n_ctx // 2
    nll = nll2 = 0.0
    count = 0
    chunks = []
    for i in range(n_chunk):
        chunk = list(tokens[i * n_ctx:(i + 1) * n_ctx])
        if add_bos:
            chunk[0] = llm.token_bos()  # the first token of every chunk is replaced by BOS
        llm.reset()
        llm.eval(chunk)
        rows = np.array(llm.scores[first:n_ctx - 1], dtype=np.float32)
        lp = log_softmax64(rows)
        targets = chunk[first + 1:n_ctx]
        v = -lp[np.arange(len(targets)), targets]
        nll += float(v.sum())
        nll2 += float((v * v).sum())
        count += len(targets)
        chunks.append({"chunk": i + 1, "mean_nll": r(v.mean()), "running_ppl": round(math.exp(nll / count), 4)})
    mean = nll / count
    var = nll2 / count - mean * mean
    ppl = math.exp(mean)
    return {"n_tokens": len(tokens), "n_chunks": n_chunk, "scored_tokens": count, "add_bos": add_bos,
            "ppl": round(ppl, 4), "ppl_error": round(math.sqrt(var / (count - 1)) * ppl, 5), "chunks": chunks}


PERPLEXITY_VARIANTS = [
    # extra flags after the brief's command; the first (none) is the golden
    ([], "llama.cpp defaults: flash attention 'auto' (on for this CPU build), F16 KV cache"),
    (["-fa", "off"], "no flash attention, F16 KV cache"),
    (["-fa", "off", "-ctk", "f32", "-ctv", "f32"], "no flash attention, F32 KV cache: the closest to a float "
                                                   "reference"),
]


def run_llama_perplexity(binary: Path, base: list, extra: list) -> dict:
    command = [str(binary)] + base + extra
    log("running " + " ".join(command))
    proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    output = proc.stdout + proc.stderr
    if proc.returncode != 0:
        fail(f"llama-perplexity exited {proc.returncode}:\n{output[-3000:]}")
    parsed = parse_perplexity_output(output)
    if "ppl" not in parsed:
        fail("could not find 'Final estimate' in llama-perplexity's output:\n" + output[-3000:])
    sysinfo = [ln[ln.index("system_info:"):] for ln in output.splitlines() if "system_info:" in ln]
    return {"command": "llama-perplexity " + " ".join(base + extra), "system_info": sysinfo[0] if sysinfo else None,
            **parsed}


def make_perplexity(ctx: dict) -> dict:
    if sha256_file(PERPLEXITY_SOURCE) != PERPLEXITY_SHA256:
        fail(f"{PERPLEXITY_SOURCE} is not the expected text (sha256 {PERPLEXITY_SHA256}, Debian base-files 12.4)")
    text_path = OUT / "smollm2" / "perplexity.txt"
    text_path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(PERPLEXITY_SOURCE, text_path)
    n_ctx = 512
    binary = ctx["bin_dir"] / "llama-perplexity"
    base = ["-m", str(SMOLLM2_GGUF.relative_to(ROOT)), "-f", str(text_path.relative_to(ROOT)), "-c", str(n_ctx),
            "-b", str(n_ctx), "-t", str(N_THREADS)]
    doc = {
        "model": SMOLLM2_GGUF.name,
        "model_sha256": SMOLLM2_SHA256,
        "text": "perplexity.txt = Debian's /usr/share/common-licenses/GPL-3 (base-files 12.4), byte for byte",
        "text_sha256": PERPLEXITY_SHA256,
        "llama_cpp": ctx["llama_cpp"],
        "running_ppl_note": "llama-perplexity prints [i]PPL after chunk i = exp(sum of NLL over chunks 1..i / "
                            "count), not the chunk's own value; per-chunk mean NLLs are in python_reimplementation",
        "tolerance_note": "Q4_1 is numerically touchy here: flash attention, the KV cache type and even the CPU "
                          "build (AVX2 vs AVX-512 kernels) move a single chunk's PPL by up to ~2% and the final "
                          "estimate by ~0.5%; compare against the variant whose settings match yours, with a "
                          "tolerance of that order",
    }
    if binary.is_file():
        version = subprocess.run([str(binary), "--version"], capture_output=True, text=True)
        runs = []
        for extra, what in PERPLEXITY_VARIANTS:
            runs.append({"settings": what, **run_llama_perplexity(binary, base, extra)})
        doc["llama_perplexity"] = {"version": (version.stdout + version.stderr).strip(),
                                   "build": "scripts/build-llama-cpp.sh: cmake Release, GGML_NATIVE=ON", **runs[0]}
        doc["llama_perplexity_variants"] = runs[1:]
    else:
        log(f"warning: {binary} not found; only the Python re-implementation is recorded "
            "(run scripts/build-llama-cpp.sh)")
        doc["llama_perplexity"] = None
    log("re-doing the perplexity algorithm with llama-cpp-python")
    py = perplexity_python(text_path.read_text(encoding="utf-8"), n_ctx)
    doc["python_reimplementation"] = {
        "what": "tools/perplexity/perplexity.cpp perplexity() re-done with llama-cpp-python, no flash attention, "
                "F16 KV cache (llama.cpp's default; its libllama is built without GGML_NATIVE: AVX2 kernels, not "
                "the AVX-512 ones of the native llama-perplexity) — the numerics BlueWhale reproduces bit for bit",
        "algorithm": [
            "tokens = tokenize(whole text, add BOS only if tokenizer.ggml.add_bos_token, parse_special=false)",
            "n_chunk = len(tokens) / n_ctx (remainder dropped); chunk i = tokens[i*n_ctx, (i+1)*n_ctx)",
            "if add_bos: the first token of each chunk is replaced by BOS (not inserted)",
            "each chunk is decoded alone from an empty KV cache, positions 0..n_ctx-1",
            "first = n_ctx/2; score tokens first+1 .. n_ctx-1 from the logits at positions first .. n_ctx-2 "
            "(n_ctx/2 - 1 = 255 tokens per chunk)",
            "nll += -log_softmax(logits)[target] (llama.cpp: float max, double sum of expf); count += 255",
            "running PPL after chunk i = exp(nll / count); final = exp(nll / count) +/- "
            "sqrt((nll2/count - (nll/count)^2) / (count - 1)) * PPL",
        ],
        **py,
    }
    golden = doc["llama_perplexity"]
    log(f"perplexity: python {py['ppl']} +/- {py['ppl_error']}"
        + (f"; llama-perplexity {golden['ppl']} (variants "
           + ", ".join(str(v["ppl"]) for v in doc["llama_perplexity_variants"]) + ")" if golden else ""))
    out = OUT / "smollm2" / "perplexity.json"
    write_json(out, doc)
    return {"outputs": [str(p.relative_to(OUT)) for p in (out, text_path)],
            "commands": [v["command"] for v in [golden] + doc["llama_perplexity_variants"]] if golden else [],
            "ppl": golden["ppl"] if golden else None, "ppl_error": golden["ppl_error"] if golden else None,
            "ppl_python": py["ppl"]}


# ---------------------------------------------------------------------------------------------------------------
# D. Tiny random dense models


def bytes_to_unicode() -> dict:
    """GPT-2's reversible byte -> printable character map (as in HF tokenizers' ByteLevel)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def learn_merges(words: dict, n_merges: int) -> list:
    """Plain BPE training: repeatedly merge the most frequent adjacent pair; ties go to the smallest pair
    (lexicographic on the two strings), so the result is fully determined by the corpus."""
    seqs = {w: list(w) for w in words}
    merges = []
    for _ in range(n_merges):
        counts = {}
        for w, freq in words.items():
            s = seqs[w]
            for a, b in zip(s, s[1:]):
                counts[(a, b)] = counts.get((a, b), 0) + freq
        if not counts:
            break
        best = min(counts, key=lambda p: (-counts[p], p))
        merges.append(best)
        joined = best[0] + best[1]
        for w, s in seqs.items():
            i, out = 0, []
            while i < len(s):
                if i + 1 < len(s) and s[i] == best[0] and s[i + 1] == best[1]:
                    out.append(joined)
                    i += 2
                else:
                    out.append(s[i])
                    i += 1
            seqs[w] = out
    return merges


def make_tokenizer(family: str, vocab_size: int, corpus: str, out_dir: Path) -> dict:
    from tokenizers import Regex, pre_tokenizers

    spec = TOKENIZER_FAMILIES[family]
    split = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(spec["regex"]), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    words = {}
    for piece, _ in split.pre_tokenize_str(corpus):
        words[piece] = words.get(piece, 0) + 1
    byte_map = bytes_to_unicode()
    vocab = {byte_map[b]: b for b in range(256)}
    n_merges = vocab_size - 256 - len(spec["specials"])
    merges = learn_merges(words, n_merges)
    if len(merges) != n_merges:
        fail(f"the corpus gave only {len(merges)} merges, need {n_merges}")
    for a, b in merges:
        vocab[a + b] = len(vocab)
    if len(vocab) != 256 + n_merges:
        fail("learned merges produced a duplicate token")
    added = []
    for name in spec["specials"]:
        added.append({"id": len(vocab) + len(added), "content": name, "single_word": False, "lstrip": False,
                      "rstrip": False, "normalized": False, "special": True})
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}
    if spec["add_bos"]:
        bos_id = next(a["id"] for a in added if a["content"] == spec["bos"])
        post = {"type": "TemplateProcessing",
                "single": [{"SpecialToken": {"id": spec["bos"], "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
                "pair": [{"SpecialToken": {"id": spec["bos"], "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                         {"SpecialToken": {"id": spec["bos"], "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
                "special_tokens": {spec["bos"]: {"id": spec["bos"], "ids": [bos_id], "tokens": [spec["bos"]]}}}
    else:
        post = byte_level
    tokenizer_json = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": None,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": spec["regex"]}, "behavior": "Isolated", "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]},
        "post_processor": post,
        "decoder": byte_level,
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
                  "ignore_merges": spec["ignore_merges"], "vocab": vocab, "merges": [[a, b] for a, b in merges]},
    }
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "add_bos_token": spec["add_bos"],
        "add_eos_token": False,
        "bos_token": spec["bos"],
        "eos_token": spec["eos"],
        "pad_token": spec.get("pad"),
        "unk_token": None,
        "clean_up_tokenization_spaces": False,
        "model_max_length": 256,
        "added_tokens_decoder": {str(a["id"]): {k: a[k] for k in ("content", "lstrip", "normalized", "rstrip",
                                                                   "single_word", "special")} for a in added},
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "tokenizer.json").write_text(json.dumps(tokenizer_json, ensure_ascii=False, indent=1) + "\n",
                                            encoding="utf-8")
    (out_dir / "tokenizer_config.json").write_text(json.dumps(config, ensure_ascii=False, indent=2) + "\n",
                                                   encoding="utf-8")
    ids = {a["content"]: a["id"] for a in added}
    return {"bos_token_id": ids.get(spec["bos"]), "eos_token_id": ids[spec["eos"]],
            "pad_token_id": ids.get(spec.get("pad")), "specials": ids}


def init_weights(model, seed: int, overrides: dict) -> None:
    import torch

    init = {**TINY_INIT, **overrides}
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters(), key=lambda kv: kv[0]):
            if name.endswith("embed_tokens.weight"):
                p.copy_(torch.randn(p.shape, generator=gen) * init["embed_std"])
            elif name == "lm_head.weight":
                p.copy_(torch.randn(p.shape, generator=gen) * init["lm_head_std"])
            elif name.endswith("norm.weight"):
                p.copy_(init["norm_mean"] + torch.randn(p.shape, generator=gen) * init["norm_noise_std"])
            elif name.endswith(".bias"):
                p.copy_(torch.randn(p.shape, generator=gen) * init["bias_std"])
            elif name.endswith(".weight"):
                p.copy_(torch.randn(p.shape, generator=gen) * init["linear_std"])
            else:
                fail(f"no init rule for parameter {name}")


def reference_rows(logprobs, ids) -> list:
    """Per position i < T-1: the logprob of ids[i+1] and the top-5 of row i."""
    return [{"pos": i, "next": int(ids[i + 1]), "logprob": r(logprobs[i, ids[i + 1]]), "top": top_k(logprobs[i])}
            for i in range(len(ids) - 1)]


def reference_doc(source: str, logprobs, ids, extra: dict) -> dict:
    return {
        "reference": source,
        **extra,
        "ids": [int(t) for t in ids],
        "logprobs": "log_softmax in float64 of float32 logits, rounded to 1e-6",
        "positions": reference_rows(logprobs, ids),
        "last_position_logprobs": [r(x) for x in logprobs[-1]],
    }


def run_converter(llama_src: Path, model_dir: Path, outfile: Path, pre: str, outtype: str = "f32") -> dict:
    """convert_hf_to_gguf.py --outtype OUTTYPE. First as is (records why it refuses), then with only the
    pre-tokenizer detection replaced (see the module docstring)."""
    env = dict(os.environ, PYTHONHASHSEED="0")
    plain = [sys.executable, str(llama_src / "convert_hf_to_gguf.py"), str(model_dir), "--outtype", outtype,
             "--outfile", str(outfile)]
    proc = subprocess.run(plain, capture_output=True, text=True, env=env)
    result = {"plain_command": f"python3 convert_hf_to_gguf.py MODEL_DIR --outtype {outtype} "
                               f"--outfile {outfile.name}"}
    if proc.returncode == 0:
        result["plain_result"] = "converted"
        return result
    chk = [ln.split("chkhsh:")[1].strip() for ln in proc.stderr.splitlines() if "chkhsh:" in ln]
    last = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()][-1:]
    result["plain_result"] = f"refused: {last[0].strip() if last else proc.returncode}"
    result["plain_chkhsh"] = chk[0] if chk else None
    wrapper = (
        "import runpy, sys\n"
        f"sys.path.insert(0, {str(llama_src)!r}); sys.path.insert(1, {str(llama_src / 'gguf-py')!r})\n"
        "import conversion.base as base\n"
        f"base.TextModel.get_vocab_base_pre = lambda self, tokenizer: {pre!r}\n"
        f"sys.argv = [{str(llama_src / 'convert_hf_to_gguf.py')!r}, {str(model_dir)!r}, '--outtype', {outtype!r}, "
        f"'--outfile', {str(outfile)!r}]\n"
        f"runpy.run_path({str(llama_src / 'convert_hf_to_gguf.py')!r}, run_name='__main__')\n"
    )
    proc = subprocess.run([sys.executable, "-c", wrapper], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        fail(f"convert_hf_to_gguf.py failed on {model_dir}:\n{proc.stderr[-4000:]}")
    result["used"] = ("convert_hf_to_gguf.py run in-process from the unmodified sources with "
                      f"conversion.base.TextModel.get_vocab_base_pre replaced by `lambda self, tok: {pre!r}`")
    return result


def gguf_summary(path: Path) -> dict:
    from gguf import GGUFReader

    reader = GGUFReader(str(path))
    keys = {}
    for k, f in reader.fields.items():
        if k.startswith("tokenizer.ggml.") and k.split(".")[-1] in ("tokens", "token_type", "merges", "scores"):
            keys[k] = f"[{len(f.data)} entries]"
            continue
        try:
            v = f.contents()
        except Exception:  # noqa: BLE001 -- a field gguf-py cannot render is listed by name only
            v = "?"
        keys[k] = v
    tensors = [{"name": t.name, "type": t.tensor_type.name, "ne": [int(x) for x in t.shape]} for t in reader.tensors]
    return {"metadata": keys, "tensors": tensors}


def make_tiny(ctx: dict) -> dict:
    import llama_cpp
    import numpy as np
    import torch
    import transformers

    torch.set_num_threads(N_THREADS)
    corpus = PERPLEXITY_SOURCE.read_text(encoding="utf-8")
    if sha256_file(PERPLEXITY_SOURCE) != PERPLEXITY_SHA256:
        fail(f"{PERPLEXITY_SOURCE} is not the expected text (the tokenizers' merges are learned on it)")
    llama_src = ctx["llama_src"]
    if not (llama_src / "convert_hf_to_gguf.py").is_file():
        fail(f"{llama_src}/convert_hf_to_gguf.py not found; run scripts/build-llama-cpp.sh (it unpacks the sdist)")

    summary = {}
    for name, spec in TINY_MODELS.items():
        out_dir = OUT / name
        if out_dir.exists():
            shutil.rmtree(out_dir)
        out_dir.mkdir(parents=True)
        family = spec["family"]
        tok = make_tokenizer(family, spec["config"]["vocab_size"], corpus, out_dir)

        if family == "llama":
            config = transformers.LlamaConfig(**spec["config"], bos_token_id=tok["bos_token_id"],
                                              eos_token_id=tok["eos_token_id"], attention_bias=False,
                                              mlp_bias=False)
            cls = transformers.LlamaForCausalLM
        else:
            config = transformers.Qwen2Config(**spec["config"], bos_token_id=tok["bos_token_id"],
                                              eos_token_id=tok["eos_token_id"], pad_token_id=tok["pad_token_id"])
            cls = transformers.Qwen2ForCausalLM
        torch.manual_seed(spec["weights_seed"])
        model = cls(config).to(torch.float32).eval()
        init_weights(model, spec["weights_seed"], spec.get("init", {}))
        if config.tie_word_embeddings and model.lm_head.weight.data_ptr() != model.model.embed_tokens.weight.data_ptr():
            fail(f"{name}: lm_head is not tied to embed_tokens")
        model.save_pretrained(out_dir, safe_serialization=True)

        # the reference: reload from disk (what is committed), eager attention, float32
        ref_model = cls.from_pretrained(out_dir, dtype=torch.float32, attn_implementation="eager").eval()
        rng = np.random.default_rng(spec["sequence_seed"])
        ids = rng.integers(0, config.vocab_size, size=spec["sequence_length"]).tolist()
        with torch.no_grad():
            logits = ref_model(torch.tensor([ids])).logits[0].to(torch.float32).numpy()
        lp_hf = log_softmax64(logits)
        top1 = np.exp(lp_hf.max(axis=-1))
        write_json(out_dir / "reference.json", reference_doc(
            "transformers " + transformers.__version__ + f", {cls.__name__}.from_pretrained(dir, dtype=float32, "
            "attn_implementation='eager'), one forward pass over all ids (no cache)", lp_hf, ids,
            {"sequence_seed": spec["sequence_seed"],
             "sequence": f"numpy.random.default_rng({spec['sequence_seed']}).integers(0, {config.vocab_size}, "
                         f"size={spec['sequence_length']})",
             "mean_top1_probability": r(top1.mean())}))

        # GGUF via llama.cpp's converter, then llama.cpp's logprobs on it
        gguf_path = out_dir / "model-f32.gguf"
        conv = run_converter(llama_src, out_dir, gguf_path, TOKENIZER_FAMILIES[family]["pre"])
        # F32 KV cache and no flash attention: llama.cpp's defaults (F16 cache; F16 inside CPU flash attention)
        # round K/V to half precision, which moves these logprobs by up to ~1e-2 and would hide real bugs.
        # The diff with the defaults is recorded too.
        def llama_cpp_logprobs(**kwargs):
            llm = llama_cpp.Llama(model_path=str(gguf_path), n_ctx=config.max_position_embeddings,
                                  n_batch=config.max_position_embeddings, n_threads=N_THREADS, logits_all=True,
                                  verbose=False, **kwargs)
            llm.eval(ids)
            return llm, log_softmax64(np.array(llm.scores[: len(ids)], dtype=np.float32))

        _, lp_default = llama_cpp_logprobs()
        diff_default = float(np.abs(lp_default - lp_hf).max())
        llm, lp_cpp = llama_cpp_logprobs(type_k=GGML_TYPE_F32, type_v=GGML_TYPE_F32, flash_attn=False)
        diff_all = float(np.abs(lp_cpp - lp_hf).max())
        diff_next = float(max(abs(lp_cpp[i, ids[i + 1]] - lp_hf[i, ids[i + 1]]) for i in range(len(ids) - 1)))
        same_argmax = bool((lp_cpp.argmax(-1) == lp_hf.argmax(-1)).all())
        tok_check = tokenizer_cross_check(out_dir, llm)
        write_json(out_dir / "reference-llamacpp.json", reference_doc(
            "llama.cpp through llama-cpp-python on model-f32.gguf: Llama(n_ctx=256, n_batch=256, n_threads=2, "
            "logits_all=True, type_k=F32, type_v=F32, flash_attn=False), all ids in one decode", lp_cpp, ids,
            {"llama_cpp": ctx["llama_cpp"], "bindings": bindings_info(),
             "max_abs_diff_vs_transformers": {"all_logprobs": float(f"{diff_all:.3e}"),
                                              "next_token_logprobs": float(f"{diff_next:.3e}"),
                                              "same_argmax_everywhere": same_argmax,
                                              "all_logprobs_with_llama_cpp_defaults_f16_kv_cache":
                                                  float(f"{diff_default:.3e}")},
             "converter": conv, "tokenizer_cross_check": tok_check}))
        log(f"{name}: mean top-1 p {top1.mean():.3f}; llama.cpp vs transformers max |dlogprob| {diff_all:.2e}")
        summary[name] = {
            "weights_seed": spec["weights_seed"], "sequence_seed": spec["sequence_seed"],
            "max_abs_diff_llamacpp_vs_transformers": float(f"{diff_all:.3e}"),
            "max_abs_diff_with_llama_cpp_default_f16_kv_cache": float(f"{diff_default:.3e}"), "converter": conv,
            "tokenizer_identical_hf_llamacpp": tok_check["identical"],
            "gguf": gguf_summary(gguf_path)["metadata"].get("general.architecture"),
        }
        (out_dir / "gguf-layout.json").write_text(dumps(gguf_summary(gguf_path)) + "\n", encoding="utf-8")
    return summary


def make_tiny_q8(ctx: dict) -> dict:
    """Q8_0 GGUFs of the tiny models (llama.cpp's converter, --outtype q8_0) and llama.cpp's logprobs on them
    with its defaults (F16 KV cache, no flash attention) over reference.json's ids: the configuration whose
    float operations BlueWhale reproduces exactly, so these references are matched to their rounding."""
    import llama_cpp
    import numpy as np

    summary = {}
    for name, spec in TINY_MODELS.items():
        out_dir = OUT / name
        if not (out_dir / "reference.json").is_file():
            fail(f"{out_dir}/reference.json not found; run --parts tiny first")
        ids = json.loads((out_dir / "reference.json").read_text(encoding="utf-8"))["ids"]
        gguf_path = out_dir / "model-q8_0.gguf"
        conv = run_converter(ctx["llama_src"], out_dir, gguf_path, TOKENIZER_FAMILIES[spec["family"]]["pre"],
                             outtype="q8_0")
        n_ctx = spec["config"]["max_position_embeddings"]
        llm = llama_cpp.Llama(model_path=str(gguf_path), n_ctx=n_ctx, n_batch=n_ctx, n_threads=N_THREADS,
                              logits_all=True, verbose=False)
        llm.eval(ids)
        lp = log_softmax64(np.array(llm.scores[: len(ids)], dtype=np.float32))
        write_json(out_dir / "reference-llamacpp-q8_0.json", reference_doc(
            f"llama.cpp through llama-cpp-python on model-q8_0.gguf: Llama(n_ctx={n_ctx}, n_batch={n_ctx}, "
            "n_threads=2, logits_all=True) with its defaults (F16 KV cache, no flash attention), all ids in one "
            "decode", lp, ids, {"llama_cpp": ctx["llama_cpp"], "bindings": bindings_info(), "converter": conv}))
        log(f"{name}: model-q8_0.gguf and reference-llamacpp-q8_0.json written")
        summary[name] = {"converter": conv, "outputs": ["model-q8_0.gguf", "reference-llamacpp-q8_0.json"]}
    return summary


def tokenizer_cross_check(model_dir: Path, llm) -> dict:
    """HF tokenizers on tokenizer.json vs llama.cpp on the GGUF's vocabulary, for a few strings."""
    from tokenizers import Tokenizer

    hf = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    rows, identical = [], True
    for text in TOKENIZER_CHECK_TEXTS:
        a = hf.encode(text, add_special_tokens=False).ids
        b = llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)
        identical &= a == b
        rows.append({"text": text, "hf": a, "llama_cpp": b})
    return {"identical": identical, "add_special_tokens": False, "rows": rows}


# ---------------------------------------------------------------------------------------------------------------
# manifest


README = """\
# Dense-model goldens

Written by `python3 scripts/make-dense-fixtures.py` (do not edit by hand; MANIFEST.json has versions, seeds,
commands and the sha256 of every file). Logprobs are log_softmax in float64 of float32 logits, rounded to 1e-6.

## smollm2/ (models/SmolLM2-135M-Instruct.Q4_1.gguf, llama.cpp as the reference)

- greedy.json: 5 prompts (chat via the GGUF's own ChatML template, which inserts SmolLM's default system
  message; English; code; a list; a question). ids are llama.cpp's (add_bos=false because the GGUF says
  tokenizer.ggml.add_bos_token=false; special tokens parsed). prompt_logprobs[i-1] = logprob of ids[i]. 64
  greedy steps (argmax of the float32 logits, not stopped at <|im_end|>; first_eog_step says where it came),
  each with the chosen logprob, top-5 and gap = top1 - top2. llama.cpp ran with its default F16 KV cache, the
  prompt in one batch, then one token per decode.
- perplexity.txt / perplexity.json: llama-perplexity -c 512 -b 512 -t 2 (golden: llama.cpp defaults), two
  variants (-fa off; -fa off -ctk f32 -ctv f32), and the algorithm redone in Python with per-chunk NLL. [i]
  values are running PPLs. Q4_1 is touchy: settings and CPU build move a chunk's PPL by ~1-2%.

## tiny-llama/, tiny-qwen2/, tiny-llama3-rope/ (random float32 models, transformers as the reference)

- config.json, generation_config.json, model.safetensors: transformers save_pretrained. Note transformers 5
  writes `rope_parameters` (with rope_theta inside), not `rope_theta` / `rope_scaling`.
- tokenizer.json, tokenizer_config.json: byte-level BPE, ids 0..255 = bytes, 61 merges learned on GPL-3, 3
  specials (317..319). llama: Llama 3 split regex, ignore_merges, BOS <|begin_of_text|> added; qwen2: Qwen2
  regex, no BOS.
- model-f32.gguf: llama.cpp's convert_hf_to_gguf.py --outtype f32 (pre-tokenizer name supplied, see
  MANIFEST). gguf-layout.json lists its metadata and tensors (ne = GGUF order, innermost first).
- reference.json: transformers, eager attention, one forward pass over `ids` (random, specials included):
  positions[i] = logprob of ids[i+1] and top-5 of row i; last_position_logprobs = the full last row.
- reference-llamacpp.json: the same from llama.cpp on model-f32.gguf with an F32 KV cache and no flash
  attention (max abs diff vs transformers ~1e-5; with llama.cpp's default F16 cache it is ~1e-2).

Layout facts a loader needs:
- Llama GGUF: attn_q / attn_k rows are permuted by the converter (per head, HF's [first half | second half]
  rotate_half pairs (i, i + d/2) become adjacent pairs (2i, 2i+1)); llama.cpp ropes llama with adjacent pairs.
  Safetensors: rotate_half. Same model either way; do not permute twice.
- Qwen2 GGUF: no permutation (llama.cpp uses NEOX / rotate_half rope for qwen2); biases are
  blk.N.attn_{q,k,v}.bias; tied embeddings, so there is no output.weight (use token_embd.weight); no
  qwen2.vocab_size key and no BOS id.
- llama3 rope: the GGUF has no rope-scaling keys; only rope_freqs.weight [head_dim/2] = per-frequency divisors
  (here [1, 2.44, 8, 8, 8, 8, 8, 8]: one unscaled, one smoothed, six scaled), applied as
  base^(-2i/d) / rope_freqs[i].
"""


def write_manifest(versions: dict, ctx: dict, results: dict) -> None:
    path = OUT / "MANIFEST.json"
    old = json.loads(path.read_text()) if path.exists() else {}
    parts = dict(old.get("parts", {}))
    parts.update(results)
    files = {}
    for p in sorted(OUT.rglob("*")):
        if p.is_file() and p != path:
            files[str(p.relative_to(OUT))] = {"sha256": sha256_file(p), "bytes": p.stat().st_size}
    manifest = {
        "generator": "scripts/make-dense-fixtures.py",
        "command": "python3 scripts/make-dense-fixtures.py --parts " + ",".join(PARTS),
        "versions": {**{k: v for k, v in (old.get("versions") or {}).items()}, **versions},
        "python": sys.version.split()[0],
        "llama_cpp": ctx["llama_cpp"],
        "llama_cpp_binaries": "scripts/build-llama-cpp.sh (cmake Release, GGML_NATIVE=ON)",
        "seeds": {name: {"weights": s["weights_seed"], "sequence": s["sequence_seed"]}
                  for name, s in TINY_MODELS.items()},
        "tiny_init": {"default": TINY_INIT, **{n: s["init"] for n, s in TINY_MODELS.items() if "init" in s}},
        "inputs": {"models/" + SMOLLM2_GGUF.name: SMOLLM2_SHA256, str(PERPLEXITY_SOURCE): PERPLEXITY_SHA256},
        "parts": parts,
        "files": files,
    }
    path.write_text(dumps(manifest) + "\n", encoding="utf-8")
    log(f"wrote {path.relative_to(ROOT)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--parts", default=",".join(PARTS), help="comma-separated: " + ",".join(PARTS))
    ap.add_argument("--llama-cpp-build", type=Path,
                    default=Path(os.environ.get("LLAMA_CPP_BUILD_ROOT", ROOT / ".build-llama.cpp")),
                    help="root written by scripts/build-llama-cpp.sh (default $LLAMA_CPP_BUILD_ROOT, "
                         "else .build-llama.cpp in the repository)")
    args = ap.parse_args()
    parts = [p for p in args.parts.split(",") if p]
    if unknown := [p for p in parts if p not in PARTS]:
        fail(f"unknown part(s) {unknown}; known: {PARTS}")
    versions = check_versions(parts)
    llama_src = args.llama_cpp_build / "src" / f"llama_cpp_python-{LLAMA_CPP_PYTHON_VERSION}" / "vendor" / "llama.cpp"
    ctx = {"bin_dir": args.llama_cpp_build / "build" / "bin", "llama_src": llama_src,
           "llama_cpp": llama_cpp_source_info(llama_src)}
    if not SMOLLM2_GGUF.is_file() and ({"smollm2", "perplexity"} & set(parts)):
        fail(f"{SMOLLM2_GGUF} missing; run scripts/fetch-models.sh smollm2")
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "README.md").write_text(README, encoding="utf-8")
    makers = {"smollm2": make_smollm2, "perplexity": make_perplexity, "tiny": make_tiny, "tiny-q8": make_tiny_q8}
    results = {}
    for part in parts:
        results[part] = makers[part](ctx)
    write_manifest(versions, ctx, results)


if __name__ == "__main__":
    main()
