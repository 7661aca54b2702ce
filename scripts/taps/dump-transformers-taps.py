#!/usr/bin/env python3
"""Dumps the intermediate tensors ("taps") of one transformers forward pass in BlueWhale's tap dump format.

    python3 scripts/taps/dump-transformers-taps.py MODEL_DIR --tokens 1,5,9 --out DIR [--threads 2]

MODEL_DIR is a Hugging Face checkpoint directory (config.json + safetensors). The model is loaded in float32
with eager attention (and eager experts), and the token ids run as ONE sequence in ONE forward pass
(positions 0..T-1, no cache). Forward hooks (and, where no module returns the value, wrappers around the
modeling file's RoPE function and a read of the router's outputs) record each tap; DIR gets manifest.json
({"source": "transformers", "model", "tokens", "taps": [{"name", "layer", "shape", "file"}]}, taps in the
order they were computed) and one float32 C-order .npy per (tap, layer). Compare with scripts/diff-taps.py.

Supported: DeepSeek V2 / V3 (MLA + MoE) and the Llama-style dense models (Llama, Qwen2, Mistral, ... any
whose attention calls apply_rotary_pos_emb and has q_proj / k_proj / v_proj).

Taps and where they come from (layer i = model.model.layers[i]):
    inp_embd        model.model.embed_tokens output
    attn_norm       input_layernorm output
    q, k            dense: the (q, k) returned by the modeling file's apply_rotary_pos_emb, i.e. after bias and
                    RoPE, [1, H, T, D] -> [T, H*D], in the checkpoint's (HF) layout: rotate-half pairs
                    (i, i + D/2). llama.cpp's converter permutes Llama's Q/K rows into interleaved pairs, so
                    compare with a llama GGUF dump through diff-taps.py --llama-permute-qk D.
    v               dense: v_proj output
    q               MLA: q_b_proj (or q_proj) output, before RoPE, [T, H*(nope+rope)]
    q_rope, k_rope  MLA: the rotated rope parts (the RoPE function's outputs), [T, H*rope] and [T, rope].
                    Written in the checkpoint's layout, where each rotated pair is two adjacent dims (2j, 2j+1):
                    V3 with rope_interleave (the default) rotates on a de-interleaved copy and returns
                    [evens..., odds...], which is re-interleaved here; V2 already returns adjacent pairs.
    kv_latent       MLA: kv_a_layernorm output
    attn_weights    self_attn's second output (eager softmax probabilities), [H, T, T]
    attn_out        self_attn's first output (after o_proj)
    ffn_inp         post_attention_layernorm input (the residual after attention)
    ffn_norm        post_attention_layernorm output
    router_logits   MoE: mlp.gate output 0
    router_probs    MoE: sigmoid (V3) / softmax (V2) of router_logits, computed here as the router does
    expert_ids      MoE: mlp.gate output 2 (top-k indices, as float32)
    expert_weights  MoE: mlp.gate output 1 (after normalisation and routed_scaling_factor)
    moe_out         MoE: mlp.experts output (weighted sum of the routed experts)
    shared_out      MoE: mlp.shared_experts output
    ffn_out         mlp output (dense MLP, or routed + shared)
    l_out           decoder layer output
    result_norm     model.model.norm output
    result_output   lm_head output (logits)

Setup: the pins of scripts/make-dense-fixtures.py (torch 2.15.0, transformers 5.23.0, safetensors 0.8.0,
numpy 2.4.6); other versions run with a warning.
"""
import argparse
import json
import sys
from pathlib import Path

PINS = {"torch": "2.15.0", "transformers": "5.23.0", "safetensors": "0.8.0", "numpy": "2.4.6"}


def fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(1)


def parse_tokens(text: str) -> list:
    try:
        ids = [int(x) for x in text.split(",") if x.strip() != ""]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--tokens wants comma-separated integers, got {text!r}")
    if not ids or any(i < 0 for i in ids):
        raise argparse.ArgumentTypeError(f"--tokens wants at least one non-negative id, got {text!r}")
    return ids


def check_versions() -> None:
    from importlib.metadata import PackageNotFoundError, version

    for name, want in PINS.items():
        try:
            have = version(name)
        except PackageNotFoundError:
            fail(f"{name} is not installed; pip install " + " ".join(f"{n}=={v}" for n, v in PINS.items()))
        if have.split("+")[0] != want:
            print(f"warning: {name} {have} (the fixture scripts pin {want})", file=sys.stderr)


class Recorder:
    """Collects taps; a (name, layer) recorded twice keeps the last value and moves to the end of the order."""

    def __init__(self, np):
        self.np = np
        self.taps = {}  # (name, layer) -> array; dicts keep insertion order
        self.layer = None

    def add(self, name, layer, array):
        key = (name, layer)
        self.taps.pop(key, None)
        self.taps[key] = self.np.ascontiguousarray(array, dtype=self.np.float32)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", type=Path, help="Hugging Face checkpoint directory (config.json + safetensors)")
    ap.add_argument("--tokens", required=True, type=parse_tokens, help="comma-separated token ids, e.g. 1,5,9")
    ap.add_argument("--out", required=True, type=Path, help="output directory (created; files are overwritten)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    args = ap.parse_args()

    if not (args.model / "config.json").is_file():
        fail(f"{args.model}/config.json not found (MODEL_DIR must be a Hugging Face checkpoint directory)")
    check_versions()

    import numpy as np
    import torch
    import transformers

    torch.set_num_threads(args.threads)
    config = transformers.AutoConfig.from_pretrained(args.model)
    if args.tokens and max(args.tokens) >= config.vocab_size:
        fail(f"token id {max(args.tokens)} >= vocab_size {config.vocab_size}")
    kwargs = dict(dtype=torch.float32, attn_implementation="eager")
    try:
        model = transformers.AutoModelForCausalLM.from_pretrained(args.model, experts_implementation="eager",
                                                                  **kwargs)
    except (TypeError, ValueError):
        model = transformers.AutoModelForCausalLM.from_pretrained(args.model, **kwargs)
    model.eval()

    rec = Recorder(np)
    T = len(args.tokens)
    model_type = getattr(config, "model_type", "")
    mla = model_type in ("deepseek_v2", "deepseek_v3")
    rope_interleave = model_type == "deepseek_v3" and bool(getattr(config, "rope_interleave", True))

    def arr(t):
        return t.detach().to(torch.float32).cpu().numpy()

    def tokens_first(t):
        """[1, T, ...] or [T, ...] -> [T, prod(rest)]."""
        a = arr(t)
        if a.ndim >= 3 and a.shape[0] == 1:
            a = a[0]
        return a.reshape(T, -1)

    def heads_to_tokens(t):
        """[1, H, T, D] -> [T, H*D]."""
        a = arr(t)[0]
        return a.transpose(1, 0, 2).reshape(T, -1)

    def interleave(a, d):
        """[..., n*d] with each d-chunk laid out [evens..., odds...] -> adjacent pairs (2j, 2j+1)."""
        shape = a.shape
        return a.reshape(*shape[:-1], -1, 2, d // 2).swapaxes(-1, -2).reshape(shape)

    def out_hook(name, convert=tokens_first, index=None):
        def hook(module, inputs, output):
            value = output[index] if index is not None else output
            rec.add(name, rec.layer, convert(value))
        return hook

    base = model.model
    handles = []
    handles.append(base.embed_tokens.register_forward_hook(
        lambda m, i, o: rec.add("inp_embd", None, tokens_first(o))))

    for idx, layer in enumerate(base.layers):
        def set_layer(module, inputs, idx=idx):
            rec.layer = idx
        handles.append(layer.register_forward_pre_hook(set_layer))
        handles.append(layer.input_layernorm.register_forward_hook(out_hook("attn_norm")))
        attn = layer.self_attn
        if mla:
            qproj = attn.q_b_proj if getattr(attn, "q_b_proj", None) is not None else attn.q_proj
            handles.append(qproj.register_forward_hook(out_hook("q")))
            handles.append(attn.kv_a_layernorm.register_forward_hook(out_hook("kv_latent")))
        else:
            handles.append(attn.v_proj.register_forward_hook(out_hook("v")))

        def attn_hook(module, inputs, output):
            attn_out, weights = output[0], output[1]
            if weights is None:
                fail("self_attn returned no attention weights (is attn_implementation eager?)")
            rec.add("attn_weights", rec.layer, arr(weights)[0])
            rec.add("attn_out", rec.layer, tokens_first(attn_out))
        handles.append(attn.register_forward_hook(attn_hook))
        handles.append(layer.post_attention_layernorm.register_forward_pre_hook(
            lambda m, inputs: rec.add("ffn_inp", rec.layer, tokens_first(inputs[0]))))
        handles.append(layer.post_attention_layernorm.register_forward_hook(out_hook("ffn_norm")))

        mlp = layer.mlp
        gate = getattr(mlp, "gate", None)
        if hasattr(mlp, "experts") and gate is not None and not isinstance(gate, torch.nn.Linear):
            if not mla:
                fail(f"MoE layers of model_type {model_type!r} are not supported (only DeepSeek V2 / V3)")

            def gate_hook(module, inputs, output):
                logits, weights, ids = output
                logits = logits.to(torch.float32)
                probs = logits.sigmoid() if model_type == "deepseek_v3" else logits.softmax(dim=-1)
                rec.add("router_logits", rec.layer, tokens_first(logits))
                rec.add("router_probs", rec.layer, tokens_first(probs))
                rec.add("expert_ids", rec.layer, tokens_first(ids))
                rec.add("expert_weights", rec.layer, tokens_first(weights))
            handles.append(gate.register_forward_hook(gate_hook))
            handles.append(mlp.experts.register_forward_hook(out_hook("moe_out")))
            if getattr(mlp, "shared_experts", None) is not None:
                handles.append(mlp.shared_experts.register_forward_hook(out_hook("shared_out")))
        handles.append(mlp.register_forward_hook(out_hook("ffn_out")))
        handles.append(layer.register_forward_hook(out_hook("l_out")))

    handles.append(base.norm.register_forward_hook(lambda m, i, o: rec.add("result_norm", None, tokens_first(o))))
    handles.append(model.lm_head.register_forward_hook(
        lambda m, i, o: rec.add("result_output", None, tokens_first(o))))

    # RoPE: the rotated q / k are only visible as the return value of the modeling file's rope function, which
    # the attention looks up as a module global at call time; wrap it there.
    modeling = sys.modules[type(base.layers[0].self_attn).__module__]
    rope_names = [n for n in ("apply_rotary_pos_emb_interleave", "apply_rotary_emb", "apply_rotary_pos_emb")
                  if hasattr(modeling, n)]
    if not rope_names:
        fail(f"{modeling.__name__} has no RoPE function to wrap; q / k taps need one")

    def wrap(fn):
        def wrapped(*a, **kw):
            q, k = fn(*a, **kw)
            if mla:
                qa, ka = heads_to_tokens(q), heads_to_tokens(k)
                if rope_interleave:
                    d = q.shape[-1]
                    qa, ka = interleave(qa, d), interleave(ka, d)
                rec.add("q_rope", rec.layer, qa)
                rec.add("k_rope", rec.layer, ka)
            else:
                rec.add("q", rec.layer, heads_to_tokens(q))
                rec.add("k", rec.layer, heads_to_tokens(k))
            return q, k
        return wrapped

    originals = {n: getattr(modeling, n) for n in rope_names}
    for n, fn in originals.items():
        setattr(modeling, n, wrap(fn))
    try:
        with torch.no_grad():
            ids = torch.tensor([args.tokens], dtype=torch.long)
            logits = model(input_ids=ids, use_cache=False).logits
    finally:
        for n, fn in originals.items():
            setattr(modeling, n, fn)
        for h in handles:
            h.remove()

    if ("result_output", None) in rec.taps:
        worst = float(np.abs(rec.taps[("result_output", None)] - arr(logits)[0]).max())
        if worst != 0.0:
            print(f"warning: result_output differs from the model's logits by {worst:g}", file=sys.stderr)
    if rope_names and not any(k[0] in ("q_rope", "q") for k in rec.taps):
        print("warning: the RoPE wrapper saw no call (q / k taps missing)", file=sys.stderr)

    args.out.mkdir(parents=True, exist_ok=True)
    entries = []
    for (name, layer), a in rec.taps.items():
        file = f"{name}.npy" if layer is None else f"{name}.{layer}.npy"
        np.save(args.out / file, a)
        entries.append({"name": name, "layer": layer, "shape": list(a.shape), "file": file})
    manifest = {"source": "transformers", "model": str(args.model), "tokens": args.tokens,
                "transformers": transformers.__version__, "torch": torch.__version__.split("+")[0],
                "taps": entries}
    (args.out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    print(f"{len(entries)} taps ({model_type}, {T} tokens) -> {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
