#!/usr/bin/env python3
"""The DeepSeek-V3-architecture benchmark models (random weights, never committed: ~2.9 GB each as F16):

  dsv3-mini     DeepSeek-V3's shape scaled down: vocabulary 129280 (DeepSeek-V3's tokenizer), hidden 1024,
                12 layers, 16 heads, q_lora_rank 512, kv_lora_rank 256, qk_nope 64, qk_rope 32, v 64, 64 routed
                experts (6 per token) + 1 shared, moe_intermediate 512, intermediate 4096, first_k_dense_replace
                1, n_group 8 / topk_group 4, noaux_tc + sigmoid, routed_scaling_factor 2.5, norm_topk_prob,
                rope_interleave, YaRN (factor 40, original 4096, beta_fast 32, beta_slow 1, mscale 1,
                mscale_all_dim 1). 1.44 B parameters, 0.305 B active per token.
  dsv3-fulldim  the same with DeepSeek-V3's own per-head attention shape: kv_lora_rank 512, qk_rope 64,
                qk_nope 128, v 128 (576 cached values per token and layer, as V3/R1), 8 heads.

Weights: torch seed 1234, every matrix N(0, 0.02), norms 1, e_score_correction_bias N(0, 0.01), saved in bf16
(transformers' save_pretrained), config.json in the hub's form (rope_theta + rope_scaling, scoring_func,
topk_method). Then llama.cpp's convert_hf_to_gguf.py --outtype f16 and llama-quantize to Q8_0 and Q4_K_M.

Usage:
  python3 scripts/make-dsv3-models.py [--models dsv3-mini,dsv3-fulldim] [--types Q8_0,Q4_K_M]
Writes $WHALE_MODELS (default models/ in the repository)/NAME/ (the safetensors) and NAME-{F16,Q8_0,Q4_K_M}.gguf;
a file already there is kept (delete it to remake it). Needs torch, transformers, safetensors, sentencepiece and
numpy from PyPI, models/tokenizers/deepseek-v3 (scripts/fetch-tokenizers.sh deepseek-v3), and llama.cpp's
sources and llama-quantize from scripts/build-llama-cpp.sh (LLAMA_CPP_BUILD_ROOT, default .build-llama.cpp).
About 10 minutes and 12 GB of memory per model on a 2-core machine.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODELS = Path(os.environ.get("WHALE_MODELS", ROOT / "models"))
TOKENIZER = ROOT / "models" / "tokenizers" / "deepseek-v3"
SEED = 1234

YARN = {"factor": 40.0, "original_max_position_embeddings": 4096, "beta_fast": 32.0, "beta_slow": 1.0,
        "mscale": 1.0, "mscale_all_dim": 1.0}
MINI = dict(
    vocab_size=129280, hidden_size=1024, intermediate_size=4096, moe_intermediate_size=512, num_hidden_layers=12,
    num_attention_heads=16, num_key_value_heads=16, q_lora_rank=512, kv_lora_rank=256, qk_nope_head_dim=64,
    qk_rope_head_dim=32, v_head_dim=64, n_routed_experts=64, num_experts_per_tok=6, n_shared_experts=1,
    first_k_dense_replace=1, n_group=8, topk_group=4, norm_topk_prob=True, routed_scaling_factor=2.5,
    rope_interleave=True, max_position_embeddings=163840, rms_norm_eps=1e-6, tie_word_embeddings=False,
    attention_bias=False, bos_token_id=0, eos_token_id=1,
    rope_parameters={"rope_type": "yarn", "rope_theta": 10000.0, **YARN},
)
CONFIGS = {
    "dsv3-mini": MINI,
    "dsv3-fulldim": dict(MINI, num_attention_heads=8, num_key_value_heads=8, kv_lora_rank=512, qk_rope_head_dim=64,
                         qk_nope_head_dim=128, v_head_dim=128),
}


def log(message: str) -> None:
    print(f"make-dsv3-models: {message}", file=sys.stderr, flush=True)


def make_safetensors(name: str, out: Path) -> None:
    import torch
    import transformers

    torch.manual_seed(SEED)
    config = transformers.DeepseekV3Config(**CONFIGS[name])
    model = transformers.DeepseekV3ForCausalLM(config).to(torch.float32).eval()
    generator = torch.Generator().manual_seed(SEED)
    with torch.no_grad():
        tensors = list(model.named_parameters()) + [
            (n, b) for n, b in model.named_buffers() if n.endswith("e_score_correction_bias")]
        for tensor_name, p in sorted(tensors, key=lambda kv: kv[0]):
            if tensor_name.endswith("norm.weight"):
                p.fill_(1.0)
            elif tensor_name.endswith("e_score_correction_bias"):
                p.copy_(torch.randn(p.shape, generator=generator) * 0.01)
            else:
                p.copy_(torch.randn(p.shape, generator=generator) * 0.02)
    parameters = sum(p.numel() for p in model.parameters())
    model.to(torch.bfloat16).save_pretrained(out, safe_serialization=True)
    # The hub's form of config.json, which llama.cpp's converter reads: rope_theta + rope_scaling, and the router
    # keys transformers 5's DeepseekV3Config drops (its router always does noaux_tc + sigmoid).
    path = out / "config.json"
    cfg = json.loads(path.read_text())
    rope = cfg.pop("rope_parameters")
    cfg["rope_theta"] = rope.pop("rope_theta")
    cfg["rope_scaling"] = {"type": rope.pop("rope_type"), **rope}
    cfg.update(scoring_func="sigmoid", topk_method="noaux_tc")
    path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    for f in ["tokenizer.json", "tokenizer_config.json"]:
        shutil.copy(TOKENIZER / f, out / f)
    (out / "generation_config.json").unlink(missing_ok=True)
    log(f"{name}: {parameters / 1e9:.3f} B parameters -> {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="dsv3-mini,dsv3-fulldim")
    parser.add_argument("--types", default="Q8_0,Q4_K_M")
    args = parser.parse_args()
    build_root = Path(os.environ.get("LLAMA_CPP_BUILD_ROOT", ROOT / ".build-llama.cpp"))
    sources = sorted(build_root.glob("src/llama_cpp_python-*/vendor/llama.cpp"))
    quantize = build_root / "build" / "bin" / "llama-quantize"
    if not sources or not quantize.is_file():
        sys.exit(f"make-dsv3-models: no llama.cpp sources / llama-quantize under {build_root}; "
                 "run scripts/build-llama-cpp.sh (or set LLAMA_CPP_BUILD_ROOT)")
    if not (TOKENIZER / "tokenizer.json").is_file():
        sys.exit("make-dsv3-models: no DeepSeek-V3 tokenizer; run scripts/fetch-tokenizers.sh deepseek-v3")
    llama_src = sources[-1]
    MODELS.mkdir(parents=True, exist_ok=True)
    for name in args.models.split(","):
        if name not in CONFIGS:
            sys.exit(f"make-dsv3-models: unknown model {name}; known: {', '.join(CONFIGS)}")
        directory = MODELS / name
        if not (directory / "config.json").is_file():
            make_safetensors(name, directory)
        f16 = MODELS / f"{name}-F16.gguf"
        if not f16.is_file():
            env = dict(os.environ, PYTHONPATH=str(llama_src / "gguf-py"))
            subprocess.run([sys.executable, str(llama_src / "convert_hf_to_gguf.py"), str(directory), "--outtype",
                            "f16", "--outfile", str(f16)], check=True, env=env)
            log(f"{name}: converted -> {f16}")
        for quant in args.types.split(","):
            target = MODELS / f"{name}-{quant}.gguf"
            if not target.is_file():
                subprocess.run([str(quantize), str(f16), str(target), quant], check=True,
                               stdout=subprocess.DEVNULL)
                log(f"{name}: quantized -> {target}")


if __name__ == "__main__":
    main()
