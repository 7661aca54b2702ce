#!/usr/bin/env python3
"""Writes the DeepSeek V2 / V3 reference fixtures ("goldens"): Tests/WhaleModelsTests/Fixtures/deepseek/.

Tiny random MLA + MoE models made with transformers + torch (fixed seeds, float32), one directory each:

    v3-sigmoid-noaux   DeepseekV3ForCausalLM, q_lora_rank 48, sigmoid router + e_score_correction_bias, noaux_tc,
                       n_group 4 / topk_group 2, 1 shared expert, norm_topk_prob, routed_scaling_factor 2.5
    v3-no-qlora-yarn   DeepseekV3ForCausalLM, q_lora_rank null (q_proj), 2 shared experts, YaRN (factor 4,
                       original_max_position_embeddings 32, beta_fast 32, beta_slow 1, mscale 1, mscale_all_dim 1),
                       48 tokens (longer than 32); config.json in the real-hub form (rope_theta + rope_scaling)
    v2-softmax-greedy  DeepseekV2ForCausalLM, softmax router, topk_method greedy, 1 shared expert
    v2-group-limited   DeepseekV2ForCausalLM, topk_method group_limited_greedy, n_group 4 / topk_group 2
    bf16               the v3-sigmoid-noaux weights stored as bfloat16 (e_score_correction_bias kept float32, as in
                       real V3 checkpoints); the reference is computed from the bf16 weights upcast to float32

Each directory: config.json + model.safetensors (save_pretrained, per-expert tensors), tokenizer.json +
tokenizer_config.json (a DeepSeek-V3-style byte-level BPE: its 3 split regexes, 256 bytes + learned merges + 3
specials), reference.json (transformers, eager attention + eager experts, float32 logits -> float64 log_softmax;
same layout as the dense fixtures) with the routing margins (how close each MoE top-k / group choice was).
v3-sigmoid-noaux additionally: model-f32.gguf (llama.cpp's convert_hf_to_gguf.py --outtype f32, pre-tokenizer
name supplied as in make-dense-fixtures.py), gguf-layout.json and reference-llamacpp.json (llama.cpp, F32 KV
cache, no flash attention, + max abs diff vs transformers).

Then Fixtures/deepseek/MANIFEST.json: versions, seeds, init, notes (transformers quirks), sha256 of every file.

Setup (pinned; the script refuses other versions): see scripts/make-dense-fixtures.py (same pins).

Run:

    python3 scripts/make-deepseek-fixtures.py                    # all variants + GGUF
    python3 scripts/make-deepseek-fixtures.py --variants v3-sigmoid-noaux,bf16 --no-gguf
"""
import argparse
import importlib.util
import json
import os
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "Tests" / "WhaleModelsTests" / "Fixtures" / "deepseek"

# Shared helpers (version pins, JSON layout, logprob rows, converter wrapper, BPE training) come from the dense
# fixture script so both sets of goldens are written the same way.
_spec = importlib.util.spec_from_file_location("dense_fixtures", ROOT / "scripts" / "make-dense-fixtures.py")
dense = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(dense)

NEEDED = ["torch", "transformers", "tokenizers", "gguf", "safetensors", "numpy", "sentencepiece", "llama_cpp_python"]
N_THREADS = 2

VOCAB = 288  # 256 byte tokens + 29 merges + 3 specials
COMMON = dict(
    vocab_size=VOCAB, hidden_size=64, intermediate_size=96, moe_intermediate_size=32, num_hidden_layers=2,
    num_attention_heads=4, num_key_value_heads=4, kv_lora_rank=32, qk_nope_head_dim=16, qk_rope_head_dim=8,
    v_head_dim=16, n_routed_experts=8, num_experts_per_tok=2, first_k_dense_replace=1, max_position_embeddings=128,
    rms_norm_eps=1e-6, tie_word_embeddings=False, attention_bias=False,
)
INIT = {"embed_std": 1.0, "linear_std": 0.15, "lm_head_std": 0.3, "router_std": 0.3, "norm_mean": 1.0,
        "norm_noise_std": 0.2, "e_score_correction_bias_mean": -0.8, "e_score_correction_bias_std": 0.3}
YARN = {"factor": 4.0, "original_max_position_embeddings": 32, "beta_fast": 32.0, "beta_slow": 1.0, "mscale": 1.0,
        "mscale_all_dim": 1.0}

VARIANTS = {
    "v3-sigmoid-noaux": {
        "family": "v3", "weights_seed": 3001, "sequence_seed": 4001, "sequence_length": 40,
        "config": dict(COMMON, q_lora_rank=48, n_group=4, topk_group=2, n_shared_experts=1, norm_topk_prob=True,
                       routed_scaling_factor=2.5, rope_interleave=True,
                       rope_parameters={"rope_type": "default", "rope_theta": 10000.0}),
        # keys real V3 configs carry that transformers 5 drops from DeepseekV3Config (the class ignores them,
        # llama.cpp's converter reads scoring_func)
        "extra_config": {"scoring_func": "sigmoid", "topk_method": "noaux_tc"},
    },
    "v3-no-qlora-yarn": {
        "family": "v3", "weights_seed": 3002, "sequence_seed": 4002, "sequence_length": 48,
        "config": dict(COMMON, q_lora_rank=None, n_group=4, topk_group=2, n_shared_experts=2, norm_topk_prob=True,
                       routed_scaling_factor=2.5, rope_interleave=True,
                       rope_parameters={"rope_type": "yarn", "rope_theta": 10000.0, **YARN}),
        "extra_config": {"scoring_func": "sigmoid", "topk_method": "noaux_tc"},
        "legacy_rope": True,
    },
    "v2-softmax-greedy": {
        "family": "v2", "weights_seed": 3003, "sequence_seed": 4003, "sequence_length": 40,
        "config": dict(COMMON, q_lora_rank=48, topk_method="greedy", n_group=None, topk_group=None,
                       n_shared_experts=1, routed_scaling_factor=1.0,
                       rope_parameters={"rope_type": "default", "rope_theta": 10000.0}),
        "extra_config": {"scoring_func": "softmax", "norm_topk_prob": False},
    },
    "v2-group-limited": {
        "family": "v2", "weights_seed": 3004, "sequence_seed": 4004, "sequence_length": 40,
        "config": dict(COMMON, q_lora_rank=48, topk_method="group_limited_greedy", n_group=4, topk_group=2,
                       n_shared_experts=1, routed_scaling_factor=2.0,
                       rope_parameters={"rope_type": "default", "rope_theta": 10000.0}),
        "extra_config": {"scoring_func": "softmax", "norm_topk_prob": False},
    },
    "bf16": {"family": "v3", "from": "v3-sigmoid-noaux", "sequence_seed": 4001, "sequence_length": 40},
}
GGUF_VARIANTS = ["v3-sigmoid-noaux"]

TOKENIZER = {
    # DeepSeek-V3 tokenizer.json pre-tokenizer: three isolated splits, then ByteLevel(use_regex=false)
    "regexes": [
        r"\p{N}{1,3}",
        r"[一-龥぀-ゟ゠-ヿ]+",
        r"[!\"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
    ],
    "specials": ["<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜▁pad▁｜>"],
    "pre": "deepseek-v3",
}

NOTES = [
    "transformers 5.23 DeepseekV3Config has no scoring_func / topk_method: DeepseekV3TopkRouter always does "
    "sigmoid + e_score_correction_bias + group-limited (top-2-sum group score, -inf masking) selection. The keys "
    "are added to config.json here (as in real V3 configs); llama.cpp's converter needs scoring_func to write "
    "deepseek2.expert_gating_func = sigmoid.",
    "DeepseekV2Config keeps topk_method (greedy / group_limited_greedy both implemented in eager mode) but drops "
    "scoring_func and norm_topk_prob; the V2 router is always softmax and never renormalises. scoring_func "
    "'softmax' and norm_topk_prob false are added to config.json as in real V2 configs.",
    "transformers writes head_dim = qk_rope_head_dim (8) and qk_head_dim = dn + dr (24) into config.json; head_dim "
    "is not the attention head width.",
    "transformers writes rope_parameters {rope_type, rope_theta, ...} instead of rope_theta / rope_scaling. "
    "v3-no-qlora-yarn's config.json is rewritten into the real-hub form (rope_theta + rope_scaling {type: yarn, "
    "...}, no rope_parameters) and the reference is computed from that reloaded file.",
    "V3 rope_interleave is true (transformers' default; real configs omit the key): rope pairs are adjacent dims "
    "(2i, 2i+1) of the dr-wide rope part. V2 is always interleaved.",
    "Experts: transformers 5 holds them fused in memory (experts.gate_up_proj [E, 2*I, D], experts.down_proj) but "
    "save_pretrained writes the per-expert checkpoint layout mlp.experts.{e}.{gate,up,down}_proj.weight.",
    "e_score_correction_bias is a buffer, saved as model.layers.N.mlp.gate.e_score_correction_bias (float32, also "
    "in the bf16 variant, as in real checkpoints). Its values here are N(-0.8, 0.3), so many bias-corrected "
    "scores are negative; routing.tokens_where_zero_masking_would_differ counts the tokens whose chosen experts "
    "would change with the old 0.0 masking of dropped groups instead of -inf.",
    "config.json says num_nextn_predict_layers 1 (transformers' default) but no MTP layer is stored; the "
    "reference ignores it.",
    "q_a_layernorm / kv_a_layernorm always use eps 1e-6; rms_norm_eps is 1e-6 here too, so it does not matter.",
    "Sizes: 2 layers (1 dense + 1 MoE) keep each float32 safetensors near 600 KB (3 layers were 900 KB); the "
    "dims are otherwise the requested ones (hidden 64, 4 heads, kv_lora 32, q_lora 48, dn 16, dr 8, dv 16, 8 experts "
    "of 32, dense 96, vocab 288 = 256 bytes + 29 merges + 3 specials at 285..287).",
    "llama.cpp (v3-sigmoid-noaux/model-f32.gguf): arch deepseek2; expert_gating_func 2 (= sigmoid, written only "
    "because config.json has scoring_func); attention.head_count_kv 1, key_length 40 (= kv_lora + dr), "
    "value_length 32, key_length_mla 24, value_length_mla 16; kv_b_proj is stored split as attn_k_b (per head, "
    "transposed) and attn_v_b; experts merged into 3-D ffn_*_exps. Its logprobs match transformers to ~7e-6 with "
    "an F32 KV cache, including the tokens where 0.0 group masking would pick other experts (so llama.cpp masks "
    "dropped groups like transformers); with llama.cpp's default F16 cache the diff is ~3e-3.",
    "bf16/: every tensor bfloat16 except e_score_correction_bias (float32, same values as v3-sigmoid-noaux); "
    "config.json dtype bfloat16. Its reference comes from from_pretrained(dtype=float32), i.e. the bf16 weights "
    "upcast exactly.",
    "V2 routing margins are in softmax probability units (smallest ~1e-4 here), V3's in sigmoid+bias units; all "
    "far above float32 rounding.",
    "reference: from_pretrained(dir, dtype=float32, attn_implementation='eager', experts_implementation='eager'), "
    "one forward pass over all ids, no cache.",
    "routing: per MoE layer, the smallest margin (in float64, recomputed from the hooked router input) between "
    "the last chosen and the first unchosen group score and expert score over all tokens. Tiny margins mean a "
    "float32 rounding difference could flip the choice.",
]


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def check_versions() -> dict:
    found = dense.installed_versions(NEEDED)
    wrong = [n for n in NEEDED if (found[n] or "").split("+")[0] != dense.EXPECTED_VERSIONS[n]]
    if wrong:
        dense.fail("wrong package versions:\n  " + "\n  ".join(
            f"{dense.DISTRIBUTIONS[n]}: found {found[n] or 'nothing'}, need {dense.EXPECTED_VERSIONS[n]}"
            for n in wrong))
    return found


def make_tokenizer(out_dir: Path, corpus: str) -> dict:
    from tokenizers import Regex, pre_tokenizers

    split = pre_tokenizers.Sequence(
        [pre_tokenizers.Split(Regex(rx), behavior="isolated", invert=False) for rx in TOKENIZER["regexes"]]
        + [pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    words = {}
    for piece, _ in split.pre_tokenize_str(corpus):
        words[piece] = words.get(piece, 0) + 1
    byte_map = dense.bytes_to_unicode()
    vocab = {byte_map[b]: b for b in range(256)}
    n_merges = VOCAB - 256 - len(TOKENIZER["specials"])
    merges = dense.learn_merges(words, n_merges)
    for a, b in merges:
        vocab[a + b] = len(vocab)
    if len(vocab) != 256 + n_merges:
        dense.fail("learned merges produced a duplicate token")
    added = [{"id": len(vocab) + i, "content": s, "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": False, "special": True} for i, s in enumerate(TOKENIZER["specials"])]
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}
    tok = {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": added, "normalizer": None,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            *({"type": "Split", "pattern": {"Regex": rx}, "behavior": "Isolated", "invert": False}
              for rx in TOKENIZER["regexes"]),
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}]},
        "post_processor": byte_level, "decoder": byte_level,
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": vocab, "merges": [[a, b] for a, b in merges]},
    }
    ids = {a["content"]: a["id"] for a in added}
    bos, eos, pad = TOKENIZER["specials"]
    cfg = {"tokenizer_class": "PreTrainedTokenizerFast", "add_bos_token": False, "add_eos_token": False,
           "bos_token": bos, "eos_token": eos, "pad_token": pad, "unk_token": None,
           "clean_up_tokenization_spaces": False, "model_max_length": 128,
           "added_tokens_decoder": {str(a["id"]): {k: a[k] for k in ("content", "lstrip", "normalized", "rstrip",
                                                                      "single_word", "special")} for a in added}}
    (out_dir / "tokenizer.json").write_text(json.dumps(tok, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    (out_dir / "tokenizer_config.json").write_text(json.dumps(cfg, ensure_ascii=False, indent=2) + "\n",
                                                   encoding="utf-8")
    return {"bos_token_id": ids[bos], "eos_token_id": ids[eos], "pad_token_id": ids[pad]}


def init_weights(model, seed: int) -> None:
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        params = list(model.named_parameters()) + [(n, b) for n, b in model.named_buffers()
                                                   if n.endswith("e_score_correction_bias")]
        for name, p in sorted(params, key=lambda kv: kv[0]):
            if name.endswith("embed_tokens.weight"):
                v = torch.randn(p.shape, generator=gen) * INIT["embed_std"]
            elif name == "lm_head.weight":
                v = torch.randn(p.shape, generator=gen) * INIT["lm_head_std"]
            elif name.endswith("norm.weight"):
                v = INIT["norm_mean"] + torch.randn(p.shape, generator=gen) * INIT["norm_noise_std"]
            elif name.endswith("e_score_correction_bias"):
                v = INIT["e_score_correction_bias_mean"] + torch.randn(p.shape, generator=gen) * INIT["e_score_correction_bias_std"]
            elif name.endswith("mlp.gate.weight"):
                v = torch.randn(p.shape, generator=gen) * INIT["router_std"]
            elif name.endswith(".weight") or name.endswith("experts.gate_up_proj") or name.endswith("experts.down_proj"):
                v = torch.randn(p.shape, generator=gen) * INIT["linear_std"]
            else:
                dense.fail(f"no init rule for parameter {name}")
            p.copy_(v)


def routing_margins(cfg: dict, family: str, router_inputs: dict, gate_weights: dict, biases: dict) -> dict:
    """Recompute each router in float64 from its hooked input; smallest choice margins per layer."""
    import numpy as np

    E, K = cfg["n_routed_experts"], cfg["num_experts_per_tok"]
    out = {}
    for layer, h in sorted(router_inputs.items()):
        logits = h.astype(np.float64) @ gate_weights[layer].astype(np.float64).T
        method = cfg.get("topk_method") if family == "v2" else "noaux_tc"
        G, TG = cfg.get("n_group"), cfg.get("topk_group")
        group_margin = None
        neg = 0
        zero_mask_differs = None
        if family == "v3":
            s = 1 / (1 + np.exp(-logits))
            c = s + biases[layer].astype(np.float64)
            neg = int((c < 0).sum())
            gs = np.sort(c.reshape(len(c), G, E // G), axis=-1)[..., -2:].sum(-1)
        else:
            z = np.exp(logits - logits.max(-1, keepdims=True))
            c = z / z.sum(-1, keepdims=True)
            gs = c.reshape(len(c), G, E // G).max(-1) if method == "group_limited_greedy" else None
        if gs is not None:
            sg = np.sort(gs, axis=-1)[:, ::-1]
            group_margin = float((sg[:, TG - 1] - sg[:, TG]).min())
            keep = np.argsort(-gs, axis=-1, kind="stable")[:, :TG]
            mask = np.zeros_like(gs, dtype=bool)
            np.put_along_axis(mask, keep, True, axis=-1)
            mask = np.repeat(mask, E // G, axis=-1)
            if family == "v3":  # would the pre-2025 0.0 masking of dropped groups choose other experts?
                c0 = np.where(mask, c, 0.0)
                pick = lambda x: np.sort(np.argsort(-x, axis=-1, kind="stable")[:, :K], axis=-1)
                zero_mask_differs = int((pick(c0) != pick(np.where(mask, c, -np.inf))).any(-1).sum())
            c = np.where(mask, c, -np.inf if family == "v3" else 0.0)
        sc = np.sort(c, axis=-1)[:, ::-1]
        expert_margin = float((sc[:, K - 1] - sc[:, K]).min())
        out[f"layer{layer}"] = {"min_group_margin": None if group_margin is None else float(f"{group_margin:.3e}"),
                                "min_expert_margin": float(f"{expert_margin:.3e}"),
                                "negative_bias_corrected_scores": neg if family == "v3" else None,
                                "tokens_where_zero_masking_would_differ": zero_mask_differs}
    return out


def reference_forward(cls, out_dir: Path, ids, cfg: dict, family: str):
    import numpy as np
    import torch

    model = cls.from_pretrained(out_dir, dtype=torch.float32, attn_implementation="eager",
                                experts_implementation="eager").eval()
    inputs, gates, biases = {}, {}, {}
    hooks = []
    for i, layer in enumerate(model.model.layers):
        gate = getattr(layer.mlp, "gate", None)
        if gate is None or not hasattr(gate, "top_k"):
            continue
        gates[i] = gate.weight.detach().float().numpy()
        if hasattr(gate, "e_score_correction_bias"):
            biases[i] = gate.e_score_correction_bias.detach().float().numpy()
        hooks.append(gate.register_forward_hook(
            lambda mod, args, res, i=i: inputs.__setitem__(i, args[0].detach().reshape(-1, args[0].shape[-1])
                                                           .float().numpy())))
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0].to(torch.float32).numpy()
        for hk in hooks:
            hk.remove()
        # cross-check: a float64 copy of the same model
        logits64 = model.to(torch.float64)(torch.tensor([ids])).logits[0].numpy()
    margins = routing_margins(cfg, family, inputs, gates, biases)
    lp = dense.log_softmax64(logits)
    lp64 = logits64 - logits64.max(-1, keepdims=True)
    lp64 = lp64 - np.log(np.exp(lp64).sum(-1, keepdims=True))
    return model, lp, float(np.abs(lp - lp64).max()), margins


def write_config_extras(out_dir: Path, spec: dict) -> dict:
    path = out_dir / "config.json"
    cfg = json.loads(path.read_text())
    for k, v in spec.get("extra_config", {}).items():
        cfg.setdefault(k, v)
    if spec.get("legacy_rope"):
        rp = cfg.pop("rope_parameters")
        cfg["rope_theta"] = rp.pop("rope_theta")
        rtype = rp.pop("rope_type")
        cfg["rope_scaling"] = {"type": rtype, **rp}
    path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return cfg


def make_variant(name: str, spec: dict, ctx: dict) -> dict:
    import numpy as np
    import torch
    import transformers
    from safetensors.torch import load_file, save_file

    out_dir = OUT / name
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    tok = make_tokenizer(out_dir, ctx["corpus"])
    family = spec["family"]
    cls = transformers.DeepseekV3ForCausalLM if family == "v3" else transformers.DeepseekV2ForCausalLM
    if "from" in spec:  # bf16 copy of another variant
        src = OUT / spec["from"]
        cfg = json.loads((src / "config.json").read_text())
        cfg["dtype"] = "bfloat16"
        (out_dir / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        sd = load_file(src / "model.safetensors")
        sd = {k: (v if k.endswith("e_score_correction_bias") else v.to(torch.bfloat16)).contiguous()
              for k, v in sd.items()}
        save_file(sd, out_dir / "model.safetensors", metadata={"format": "pt"})
        seed = VARIANTS[spec["from"]]["weights_seed"]
    else:
        ConfigCls = transformers.DeepseekV3Config if family == "v3" else transformers.DeepseekV2Config
        config = ConfigCls(**spec["config"], **tok)
        seed = spec["weights_seed"]
        torch.manual_seed(seed)
        model = cls(config).to(torch.float32).eval()
        init_weights(model, seed)
        rng0 = np.random.default_rng(spec["sequence_seed"])
        ids0 = rng0.integers(0, VOCAB, size=spec["sequence_length"]).tolist()
        model.config._experts_implementation = "eager"
        model.set_attn_implementation("eager")
        with torch.no_grad():
            in_memory = model(torch.tensor([ids0])).logits[0].numpy()
        model.save_pretrained(out_dir, safe_serialization=True)
        cfg = write_config_extras(out_dir, spec)
    gen_cfg = out_dir / "generation_config.json"
    if gen_cfg.exists():
        gen_cfg.unlink()

    rng = np.random.default_rng(spec["sequence_seed"])
    ids = rng.integers(0, VOCAB, size=spec["sequence_length"]).tolist()
    model, lp, self_diff, margins = reference_forward(cls, out_dir, ids, cfg, family)
    if "from" not in spec:
        # the reloaded config must give the in-memory model's exact forward (catches dropped / renamed keys)
        lp_mem = dense.log_softmax64(in_memory)
        reload_diff = float(np.abs(lp_mem - lp).max())
        if reload_diff > 1e-6:
            dense.fail(f"{name}: reloaded config.json gives a different forward (max diff {reload_diff:.2e})")
        rc = transformers.AutoConfig.from_pretrained(out_dir)
        reload_info = {"max_abs_diff_in_memory_vs_reloaded": float(f"{reload_diff:.3e}"),
                       "rope_parameters_after_reload": rc.rope_parameters,
                       "topk_method_after_reload": getattr(rc, "topk_method", None)}
    else:
        reload_info = {}
    top1 = np.exp(lp.max(axis=-1))
    keys = sorted(load_file(out_dir / "model.safetensors").keys())
    doc = dense.reference_doc(
        f"transformers {transformers.__version__}, {cls.__name__}.from_pretrained(dir, dtype=float32, "
        "attn_implementation='eager', experts_implementation='eager'), one forward pass over all ids (no cache)",
        lp, ids,
        {"sequence_seed": spec["sequence_seed"],
         "sequence": f"numpy.random.default_rng({spec['sequence_seed']}).integers(0, {VOCAB}, "
                     f"size={spec['sequence_length']})",
         "mean_top1_probability": dense.r(top1.mean()),
         "max_abs_diff_vs_float64_forward": float(f"{self_diff:.3e}"),
         "routing": margins})
    dense.write_json(out_dir / "reference.json", doc)
    size = (out_dir / "model.safetensors").stat().st_size
    log(f"{name}: {len(ids)} ids, mean top-1 p {top1.mean():.3f}, safetensors {size} bytes, "
        f"f32-vs-f64 {self_diff:.1e}, margins {margins}")
    summary = {"weights_seed": seed, "sequence_seed": spec["sequence_seed"], "sequence_length": len(ids),
               "mean_top1_probability": dense.r(top1.mean()), "safetensors_bytes": size,
               "safetensors_tensor_count": len(keys), "max_abs_diff_vs_float64_forward": float(f"{self_diff:.3e}"),
               "routing": margins, **reload_info}
    if name in GGUF_VARIANTS and ctx["gguf"]:
        summary["llama_cpp"] = make_gguf(out_dir, ids, lp, ctx)
    return summary


def make_gguf(out_dir: Path, ids, lp_hf, ctx: dict) -> dict:
    import llama_cpp
    import numpy as np

    gguf_path = out_dir / "model-f32.gguf"
    conv = dense.run_converter(ctx["llama_src"], out_dir, gguf_path, TOKENIZER["pre"])
    layout = dense.gguf_summary(gguf_path)
    (out_dir / "gguf-layout.json").write_text(dense.dumps(layout) + "\n", encoding="utf-8")

    def logprobs(**kw):
        llm = llama_cpp.Llama(model_path=str(gguf_path), n_ctx=128, n_batch=128, n_threads=N_THREADS,
                              logits_all=True, verbose=False, **kw)
        llm.eval(ids)
        return dense.log_softmax64(np.array(llm.scores[: len(ids)], dtype=np.float32))

    lp_default = logprobs()
    lp = logprobs(type_k=dense.GGML_TYPE_F32, type_v=dense.GGML_TYPE_F32, flash_attn=False)
    diff_all = float(np.abs(lp - lp_hf).max())
    diff_next = float(max(abs(lp[i, ids[i + 1]] - lp_hf[i, ids[i + 1]]) for i in range(len(ids) - 1)))
    diff_default = float(np.abs(lp_default - lp_hf).max())
    same_argmax = bool((lp.argmax(-1) == lp_hf.argmax(-1)).all())
    diffs = {"all_logprobs": float(f"{diff_all:.3e}"), "next_token_logprobs": float(f"{diff_next:.3e}"),
             "same_argmax_everywhere": same_argmax,
             "all_logprobs_with_llama_cpp_defaults_f16_kv_cache": float(f"{diff_default:.3e}")}
    dense.write_json(out_dir / "reference-llamacpp.json", dense.reference_doc(
        "llama.cpp through llama-cpp-python on model-f32.gguf: Llama(n_ctx=128, n_batch=128, n_threads=2, "
        "logits_all=True, type_k=F32, type_v=F32, flash_attn=False), all ids in one decode", lp, ids,
        {"llama_cpp": ctx["llama_cpp"], "bindings": dense.bindings_info(),
         "max_abs_diff_vs_transformers": diffs, "converter": conv}))
    log(f"{out_dir.name}: llama.cpp vs transformers max |dlogprob| {diff_all:.2e} (default cache {diff_default:.2e})")
    meta = layout["metadata"]
    return {"converter": conv, "max_abs_diff_vs_transformers": diffs,
            "gguf_keys": {k: v for k, v in meta.items() if k.startswith("deepseek2.")}}


README = """\
# DeepSeek V2 / V3 goldens

Written by `python3 scripts/make-deepseek-fixtures.py` (do not edit by hand; MANIFEST.json has versions, seeds,
init, notes on transformers 5.23 quirks and the sha256 of every file). Logprobs are log_softmax in float64 of
float32 logits, rounded to 1e-6. Semantics: /work/shared/reference/deepseek-semantics.md.

- v3-sigmoid-noaux/: V3, q_lora 48, sigmoid + bias router (noaux_tc), 4 groups / 2 kept, 1 shared expert,
  norm_topk_prob, routed_scaling_factor 2.5. Also model-f32.gguf (llama.cpp converter), gguf-layout.json,
  reference-llamacpp.json (F32 KV cache, no flash attention).
- v3-no-qlora-yarn/: V3, q_proj (no q_lora), 2 shared experts, YaRN factor 4 over L0 = 32, 48 tokens;
  config.json in the real-hub form (rope_theta + rope_scaling).
- v2-softmax-greedy/: V2, softmax router, greedy top-2, routed_scaling_factor 1.
- v2-group-limited/: V2, group_limited_greedy (group score = max), 4 groups / 2 kept, routed_scaling_factor 2.
- bf16/: v3-sigmoid-noaux's weights as bfloat16 (e_score_correction_bias float32); reference from the bf16
  weights upcast to float32.

reference.json: positions[i] = logprob of ids[i+1] and top-5 of row i; last_position_logprobs = full last row;
routing = smallest float64 margins of the MoE group / expert choices (a sanity check that the goldens do not
hinge on a near-tie).
"""


def write_manifest(versions: dict, ctx: dict, results: dict, args_line: str) -> None:
    path = OUT / "MANIFEST.json"
    old = json.loads(path.read_text()) if path.exists() else {}
    variants = dict(old.get("variants", {}))
    variants.update(results)
    files = {}
    for p in sorted(OUT.rglob("*")):
        if p.is_file() and p != path:
            files[str(p.relative_to(OUT))] = {"sha256": dense.sha256_file(p), "bytes": p.stat().st_size}
    manifest = {
        "generator": "scripts/make-deepseek-fixtures.py",
        "command": "python3 scripts/make-deepseek-fixtures.py" + args_line,
        "versions": versions,
        "python": sys.version.split()[0],
        "llama_cpp": ctx["llama_cpp"],
        "corpus_for_tokenizer_merges": {str(dense.PERPLEXITY_SOURCE): dense.PERPLEXITY_SHA256},
        "common_config": {k: v for k, v in COMMON.items()},
        "init": INIT,
        "seeds": {n: {"weights": s.get("weights_seed", VARIANTS.get(s.get("from", ""), {}).get("weights_seed")),
                      "sequence": s["sequence_seed"]} for n, s in VARIANTS.items()},
        "notes": NOTES,
        "variants": variants,
        "files": files,
    }
    path.write_text(dense.dumps(manifest) + "\n", encoding="utf-8")
    log(f"wrote {path.relative_to(ROOT)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated: " + ",".join(VARIANTS))
    ap.add_argument("--no-gguf", action="store_true", help="skip the llama.cpp conversion / reference")
    ap.add_argument("--llama-cpp-build", type=Path,
                    default=Path(os.environ.get("LLAMA_CPP_BUILD_ROOT", "/work/llama.cpp-build")),
                    help="root written by scripts/build-llama-cpp.sh (default /work/llama.cpp-build)")
    args = ap.parse_args()
    names = [v for v in args.variants.split(",") if v]
    if unknown := [v for v in names if v not in VARIANTS]:
        dense.fail(f"unknown variant(s) {unknown}; known: {list(VARIANTS)}")
    for n in names:
        src = VARIANTS[n].get("from")
        if src and src not in names and not (OUT / src / "model.safetensors").is_file():
            dense.fail(f"{n} needs {src}; run it too")
    versions = check_versions()
    import torch

    torch.set_num_threads(N_THREADS)
    llama_src = (args.llama_cpp_build / "src" / f"llama_cpp_python-{dense.LLAMA_CPP_PYTHON_VERSION}" / "vendor"
                 / "llama.cpp")
    if dense.sha256_file(dense.PERPLEXITY_SOURCE) != dense.PERPLEXITY_SHA256:
        dense.fail(f"{dense.PERPLEXITY_SOURCE} is not the expected text (the tokenizer's merges are learned on it)")
    ctx = {"llama_src": llama_src, "llama_cpp": dense.llama_cpp_source_info(llama_src), "gguf": not args.no_gguf,
           "corpus": dense.PERPLEXITY_SOURCE.read_text(encoding="utf-8")}
    if ctx["gguf"] and not (llama_src / "convert_hf_to_gguf.py").is_file():
        dense.fail(f"{llama_src}/convert_hf_to_gguf.py not found; run scripts/build-llama-cpp.sh or pass --no-gguf")
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "README.md").write_text(README, encoding="utf-8")
    results = {n: make_variant(n, VARIANTS[n], ctx) for n in names}
    args_line = "" if names == list(VARIANTS) else " --variants " + ",".join(names)
    args_line += " --no-gguf" if args.no_gguf else ""
    write_manifest(versions, ctx, results, args_line)


if __name__ == "__main__":
    main()
