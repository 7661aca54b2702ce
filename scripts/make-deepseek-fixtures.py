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

Added later (own seeds, own code paths; the five above are unchanged byte for byte):

    fp8                DeepSeek-V3-style FP8 checkpoint: every attention / MLP / expert / shared-expert Linear weight
                       float8_e4m3fn + weight_scale_inv (float32, one per 128x128 block, ragged last blocks), the rest
                       bf16 (e_score_correction_bias float32), quantization_config as DeepSeek-V3's; hidden 192,
                       q_lora 160, kv_lora 144, dense 160. reference.json = transformers f32 on the exact dequantized
                       weights (fp8 * scale in float32)
    mtp                V3 with n_shared_experts 2 and a stored MTP module as model.layers.2 (enorm, hnorm, eh_proj,
                       embed_tokens, shared_head.{norm,head} + a full MLA / MoE block), bf16 storage. reference.json =
                       the main model (transformers ignores layer 2); mtp-reference.json = the MTP draft logits
                       (float32, make_mtp_reference), mtp-reference-vllm.json = the same with vLLM's zeroed
                       position-0 embedding

llama.cpp files (GGUF_VARIANTS): model-f32.gguf + gguf-layout.json + reference-llamacpp.json also for v3-no-qlora-yarn,
v2-group-limited and mtp; v3-sigmoid-noaux also gets model-q8_0.gguf (+ gguf-layout-q8_0.json,
reference-llamacpp-q8_0.json) and model-fused-kv-f32.gguf (+ gguf-layout-fused-kv.json), the pre-2025 deepseek2
layout with one attn_kv_b per layer, written with gguf-py.

Then Fixtures/deepseek/MANIFEST.json: versions, seeds, init, notes (transformers quirks), sha256 of every file.

Setup (pinned; the script refuses other versions): see scripts/make-dense-fixtures.py (same pins).

Run:

    python3 scripts/make-deepseek-fixtures.py                    # all variants + GGUF
    python3 scripts/make-deepseek-fixtures.py --variants v3-sigmoid-noaux,bf16 --no-gguf
    python3 scripts/make-deepseek-fixtures.py --variants fp8,mtp             # only the added directories
    python3 scripts/make-deepseek-fixtures.py --variants v3-sigmoid-noaux,v3-no-qlora-yarn,v2-group-limited --gguf-only
                                                                     # only the llama.cpp files of existing dirs
"""
import argparse
import importlib.util
import json
import os
import shutil
import subprocess
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
    # --- added later; own seeds and own code paths, so the variants above are unchanged ---
    "fp8": {
        "family": "v3", "kind": "fp8", "weights_seed": 3005, "sequence_seed": 4005, "sequence_length": 40,
        # wider than COMMON so that the 128x128 scale blocks are non-trivial: q_a_proj [160, 192],
        # kv_a_proj_with_mqa [152, 192], dense gate/up [160, 192] and down [192, 160] span 2x2 blocks with ragged
        # last blocks; q_b_proj [96, 160], kv_b_proj [128, 144], o_proj [192, 64], experts 1x2 / 2x1
        "config": dict(COMMON, hidden_size=192, intermediate_size=160, q_lora_rank=160, kv_lora_rank=144, n_group=4,
                       topk_group=2, n_shared_experts=1, norm_topk_prob=True, routed_scaling_factor=2.5,
                       rope_interleave=True, rope_parameters={"rope_type": "default", "rope_theta": 10000.0}),
        "extra_config": {"scoring_func": "sigmoid", "topk_method": "noaux_tc"},
        # stds scaled by sqrt(64/192) so the wider model's logits are about as peaked as the 64-wide ones
        "init": dict(INIT, linear_std=0.09, lm_head_std=0.18, router_std=0.18),
    },
    "mtp": {
        "family": "v3", "kind": "mtp", "weights_seed": 3006, "mtp_seed": 3007, "sequence_seed": 4006,
        "sequence_length": 40,
        "config": dict(COMMON, q_lora_rank=48, n_group=4, topk_group=2, n_shared_experts=2, norm_topk_prob=True,
                       routed_scaling_factor=2.5, rope_interleave=True, num_nextn_predict_layers=1,
                       rope_parameters={"rope_type": "default", "rope_theta": 10000.0}),
        "extra_config": {"scoring_func": "sigmoid", "topk_method": "noaux_tc"},
        "storage": "bfloat16",  # keeps safetensors (with the MTP layer) + GGUF f32 under ~1.3 MB
    },
}
GGUF_VARIANTS = ["v3-sigmoid-noaux", "v3-no-qlora-yarn", "v2-group-limited", "mtp"]
FP8_BLOCK = 128
FP8_E4M3_MAX = 448.0
FP8_QUANTIZED = r"\.(q_a_proj|q_b_proj|q_proj|kv_a_proj_with_mqa|kv_b_proj|o_proj|gate_proj|up_proj|down_proj)\.weight$"
FP8_QUANTIZATION_CONFIG = {"activation_scheme": "dynamic", "fmt": "e4m3", "quant_method": "fp8",
                           "weight_block_size": [FP8_BLOCK, FP8_BLOCK]}

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
    "config.json says num_nextn_predict_layers 1 (transformers' default) but no MTP layer is stored (except in "
    "mtp/); the reference ignores it.",
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
    # --- added with fp8/, mtp/ and the extra llama.cpp files ---
    "fp8/: laid out like DeepSeek-V3's release: each Linear weight of self_attn (q_a_proj, q_b_proj, "
    "kv_a_proj_with_mqa, kv_b_proj, o_proj), of the dense mlp, of every expert and of shared_experts is "
    "float8_e4m3fn with <name>.weight_scale_inv float32 [ceil(rows/128), ceil(cols/128)]; embed_tokens, lm_head, the "
    "norms and the router mlp.gate.weight are bfloat16, e_score_correction_bias float32; config.json has "
    "quantization_config {activation_scheme dynamic, fmt e4m3, quant_method fp8, weight_block_size [128, 128]} and "
    "dtype / torch_dtype bfloat16. Dequantization: w[r, c] = float32(fp8[r, c]) * weight_scale_inv[r // 128, "
    "c // 128], multiplied in float32; the last block row / column covers only the remainder (e.g. kv_a_proj_with_mqa "
    "[152, 192] has scales [2, 2]: rows 0..127 / 128..151, columns 0..127 / 128..191). Quantized here with scale = "
    "amax(block)/448 and round-to-nearest-even e4m3fn. The reference is transformers in float32 on exactly these "
    "dequantized weights (a non-quantized copy of the checkpoint); variants.fp8.fp8 records its distance to the "
    "unquantized float32 model (informational).",
    "fp8/ checks: an independent numpy / ml_dtypes reader re-dequantizes the written file bit-exactly; llama.cpp's "
    "converter (which dequantizes weight_scale_inv itself: repeat_interleave per block, crop, multiply in float32) "
    "gives bit-identical float32 tensors. transformers 5.23 itself is NOT a usable reference for this file on CPU: "
    "without `accelerate` it refuses to load it; with accelerate 1.15.0 (tried out of band, not a pinned dependency) "
    "it falls back to dequantize=True, whose Fp8Dequantize derives the block size as rows // scale_rows and "
    "cols // scale_cols, so every weight with a ragged block is dequantized with wrong block boundaries (all 16 "
    "non-expert fp8 weights here differ from the exact values by up to 0.09), and the forward then fails on a "
    "bf16 / float32 dtype mismatch. Real V3 has ragged shapes too (kv_a_proj_with_mqa [576, 7168]).",
    "fp8/ dims: hidden 192, q_lora_rank 160, kv_lora_rank 144, intermediate 160 (heads 4, dn 16, dr 8, dv 16, 8 "
    "experts of 32, 1 shared, vocab 288, 2 layers); init stds for linear / lm_head / router scaled to 0.09 / 0.18 / "
    "0.18 so its logits are about as peaked as the 64-wide variants'.",
    "mtp/: num_hidden_layers 2, num_nextn_predict_layers 1, n_shared_experts 2; layer 2 holds the MTP module named as "
    "in DeepSeek-V3's checkpoint: enorm.weight, hnorm.weight, eh_proj.weight [hidden, 2*hidden], embed_tokens.weight "
    "(copy of model.embed_tokens), shared_head.norm.weight, shared_head.head.weight (copy of lm_head), "
    "input_layernorm, self_attn.* (full MLA with q_lora), post_attention_layernorm, mlp.* (gate.weight, "
    "gate.e_score_correction_bias, experts.{e}.*, shared_experts.*). Stored bfloat16 (bias float32) to keep the "
    "directory with its GGUF under 1.3 MB; references come from the bf16 values upcast. transformers ignores layer 2 "
    "(it warns: its _keys_to_ignore_on_load_unexpected only names layer 61).",
    "mtp/mtp-reference.json semantics, checked against the sources: vLLM deepseek_mtp.py (DeepSeekMultiTokenPredictor"
    "Layer.forward: enorm(inputs_embeds), hnorm(previous_hidden_states), eh_proj(cat([e, h])), mtp_block(positions, "
    "residual=None), residual + out; compute_logits = shared_head.head(shared_head.norm(.))) fed by the EAGLE "
    "proposer (v1/spec_decode/eagle.py: input_ids[:-1] = target_token_ids[1:], positions and hidden states NOT "
    "shifted), whose target hidden states are DeepseekV2Model.forward's output, i.e. after model.norm "
    "(`hidden_states, _ = self.norm(hidden_states, residual)`). So entry i = (token ids[i+1], h_i after the final "
    "norm, rope position i). SGLang's deepseek_nextn.py and llama.cpp's deepseek2 graph_mtp (h = t_h_nextn, taken "
    "after output_norm) agree. One difference: vLLM zeroes the token embedding of entries at position 0 "
    "(`inputs_embeds[positions == 0] = 0`); SGLang and llama.cpp do not. mtp-reference.json follows the plain "
    "formula, mtp-reference-vllm.json vLLM's masking (it moves logprobs by up to ~8 here, mostly the first rows, "
    "since every entry attends to x_0). The harness (one transformers DeepseekV3DecoderLayer driven with an explicit "
    "causal mask and rope positions) reproduces the main model's layer 1 bit-exactly.",
    "llama.cpp / v3-no-qlora-yarn: the converter writes deepseek2.rope.scaling.type 'yarn', rope.scaling.factor 4.0, "
    "rope.scaling.original_context_length 32, rope.scaling.yarn_beta_fast 32.0, rope.scaling.yarn_beta_slow 1.0, "
    "rope.scaling.yarn_log_multiplier 0.1 (= 0.1 * mscale_all_dim: llama.cpp divides it by 0.1 again, "
    "TAG_DEEPSEEK2_YARN_LOG_MUL_FIX), rope.freq_base, rope.dimension_count 8; no mscale key (llama.cpp assumes "
    "mscale == mscale_all_dim), no q_lora_rank key and attn_q.weight instead of attn_q_a/attn_q_b. This llama.cpp "
    "cannot load that file: it reads attention.q_lora_rank unconditionally unless the model 'is lite', which it "
    "decides by layer count (26 / 27, or 48 with a 128256 vocab). reference-llamacpp.json comes from a temporary copy "
    "with deepseek2.attention.q_lora_rank = 0 added (the graph then uses attn_q); it matches transformers' YaRN to "
    "~7e-6.",
    "llama.cpp / v2-group-limited: expert_gating_func 1 (softmax), expert_group_count 4, expert_group_used_count 2, "
    "expert_weights_scale 2.0, no expert_weights_norm key (norm_topk_prob false). llama.cpp ranks groups by the sum of "
    "the top-2 selection probabilities (V3's rule) for every gating function, while V2 group_limited_greedy ranks them "
    "by the max: at tokens 3 and 5 that chooses other experts, so reference-llamacpp.json agrees with transformers to "
    "~6e-6 before position 3 and differs by up to ~3 from there on. It documents llama.cpp, not V2 semantics; use "
    "reference.json for V2.",
    "llama.cpp / mtp: the converter (conversion/deepseek.py DeepseekV2Model, skip_mtp = True) drops model.layers.2.* "
    "entirely and writes no nextn key (block_count 2); --mtp is refused for DeepseekV3ForCausalLM. llama.cpp's "
    "deepseek2 loader would take blk.2.nextn.{eh_proj [ne 2*hidden, hidden], enorm, hnorm, embed_tokens, "
    "shared_head_head, shared_head_norm} + deepseek2.nextn_predict_layers (block_count then includes the MTP block); "
    "see mtp/gguf-layout.json 'mtp'.",
    "v3-sigmoid-noaux/model-fused-kv-f32.gguf: the deepseek2 layout of llama.cpp before its 2025 MLA change (spring "
    "2025, when attn_k_b / attn_v_b and *_mla keys appeared): convert_hf_to_gguf.py's DeepseekV2Model.modify_tensors then only merged the experts and let "
    "kv_b_proj through as blk.N.attn_kv_b.weight, ne [kv_lora_rank, n_head*(dn+dv)] = HF's [H*(dn+dv), r_kv] row-major "
    "(per head dn key rows then dv value rows); the base class wrote attention.head_count_kv = num_key_value_heads (= "
    "head_count), and DeepseekV2Model key_length = dn + dr, value_length = dv, kv_lora_rank, q_lora_rank, no "
    "key_length_mla / value_length_mla. Written with gguf-py from model-f32.gguf (same keys otherwise, same tensor "
    "order, attn_kv_b where attn_k_b was) + model.safetensors' kv_b_proj; attn_k_b / attn_v_b of model-f32.gguf are "
    "verified to be exactly its views (k_b = kv_b.view(H, dn+dv, r)[:, :dn].transpose(1, 2), v_b = [:, dn:]). "
    "Files from that time were written before llama.cpp had expert_group_count / expert_group_used_count, and V2 "
    "files from 2024 also lack expert_gating_func / expert_weights_norm (llama.cpp then assumes softmax); this one "
    "keeps the current keys. The current llama.cpp "
    "still loads it (hparams.is_mla() is false without key_length_mla, so it takes the non-MLA attn_kv_b path) and "
    "matches transformers to ~6e-6; its expected logits are reference.json.",
    "v3-sigmoid-noaux/model-q8_0.gguf: converter --outtype q8_0. Q8_0 where ne[0] % 32 == 0; attn_q_b (ne[0] 48) and "
    "attn_k_b (ne[0] 16) fall back to F16, ffn_gate_inp stays F32, token_embd / output are Q8_0, 1-D tensors F32. "
    "llama.cpp on it differs from transformers by ~0.3 (max |dlogprob|): about 0.22 from the weight rounding alone "
    "(transformers on the Q8_0 weights dequantized back: llama_cpp.q8_0.error_split) and the rest from llama.cpp "
    "quantizing activations to Q8_0 for its dot products. A float32-activation engine on this file should land near "
    "the weights-only number, not at 1e-5.",
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


def init_weights(model, seed: int, init: dict = INIT) -> None:
    import torch

    INIT = init  # noqa: N806 -- the fp8 variant scales the stds for its wider matrices; the others use the global
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
    if spec.get("kind") == "fp8":
        return make_fp8(name, spec, ctx, out_dir, tok)
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
        if spec.get("storage") == "bfloat16":
            round_to_bf16(model)
        rng0 = np.random.default_rng(spec["sequence_seed"])
        ids0 = rng0.integers(0, VOCAB, size=spec["sequence_length"]).tolist()
        model.config._experts_implementation = "eager"
        model.set_attn_implementation("eager")
        with torch.no_grad():
            in_memory = model(torch.tensor([ids0])).logits[0].numpy()
        model.save_pretrained(out_dir, safe_serialization=True)
        cfg = write_config_extras(out_dir, spec)
        if spec.get("kind") == "mtp":
            cfg = add_mtp_layer(out_dir, spec, config, cfg)
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
    if spec.get("kind") == "mtp":
        summary["mtp"] = make_mtp_reference(out_dir, ids, cfg, spec)
    if name in GGUF_VARIANTS and ctx["gguf"]:
        summary["llama_cpp"] = gguf_step(name, out_dir, ids, lp, cfg, ctx)
    return summary


def make_gguf(out_dir: Path, ids, lp_hf, ctx: dict, add_keys: dict | None = None) -> dict:
    """add_keys: llama.cpp runs on a temporary copy of model-f32.gguf with these keys added (the fixture keeps the
    converter's file as it is)."""
    import tempfile

    import llama_cpp
    import numpy as np

    gguf_path = out_dir / "model-f32.gguf"
    conv = dense.run_converter(ctx["llama_src"], out_dir, gguf_path, TOKENIZER["pre"])
    layout = dense.gguf_summary(gguf_path)
    (out_dir / "gguf-layout.json").write_text(dense.dumps(layout) + "\n", encoding="utf-8")
    tmp = tempfile.TemporaryDirectory() if add_keys else None
    load_path = gguf_path
    if add_keys:
        load_path = Path(tmp.name) / "model-f32-patched.gguf"
        copy_gguf(gguf_path, load_path, add=add_keys)

    def logprobs(**kw):
        llm = llama_cpp.Llama(model_path=str(load_path), n_ctx=128, n_batch=128, n_threads=N_THREADS,
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
    extra = {"llama_cpp": ctx["llama_cpp"], "bindings": dense.bindings_info(),
             "max_abs_diff_vs_transformers": diffs, "converter": conv}
    source = ("llama.cpp through llama-cpp-python on model-f32.gguf: Llama(n_ctx=128, n_batch=128, n_threads=2, "
              "logits_all=True, type_k=F32, type_v=F32, flash_attn=False), all ids in one decode")
    if add_keys:
        tmp.cleanup()
        source = source.replace("on model-f32.gguf:", "on a copy of model-f32.gguf with " + ", ".join(
            f"{k} = {v[0]!r}" for k, v in add_keys.items()) + " added (llama.cpp cannot load the file as converted):")
        extra["keys_added_for_llama_cpp"] = {k: v[0] for k, v in add_keys.items()}
    dense.write_json(out_dir / "reference-llamacpp.json", dense.reference_doc(source, lp, ids, extra))
    log(f"{out_dir.name}: llama.cpp vs transformers max |dlogprob| {diff_all:.2e} (default cache {diff_default:.2e})")
    meta = layout["metadata"]
    res = {"converter": conv, "max_abs_diff_vs_transformers": diffs,
           "gguf_keys": {k: v for k, v in meta.items() if k.startswith("deepseek2.")}}
    if add_keys:
        res["keys_added_for_llama_cpp"] = extra["keys_added_for_llama_cpp"]
    return res


# ---------------------------------------------------------------------------------------------------------------
# Added variants (fp8, mtp) and the extra llama.cpp files. Everything below has its own seeds and code paths; the
# original five variants go through the code above unchanged and come out byte-identical.


def round_to_bf16(module) -> None:
    """Round every parameter to a bfloat16 value in place (buffers such as e_score_correction_bias stay float32)."""
    import torch

    with torch.no_grad():
        for _, p in module.named_parameters():
            p.copy_(p.to(torch.bfloat16).to(p.dtype))


def run_decoder_layer(layer, rotary, x, positions):
    """One transformers decoder layer over x [1, n, D]: causal mask, rope at the given absolute positions."""
    import torch

    n = x.shape[1]
    pos = torch.tensor([list(positions)])
    mask = torch.full((n, n), float("-inf"), dtype=x.dtype).triu(1)[None, None]
    out = layer(x, attention_mask=mask, position_ids=pos, position_embeddings=rotary(x, pos))
    return out[0] if isinstance(out, tuple) else out


def add_mtp_layer(out_dir: Path, spec: dict, config, cfg: dict) -> dict:
    """Append a DeepSeek-V3-style MTP module as model.layers.{num_hidden_layers} to model.safetensors."""
    import copy
    import tempfile

    import torch
    import transformers
    from safetensors.torch import load_file, save_file
    from torch import nn

    n = config.num_hidden_layers
    prefix = f"model.layers.{n}."
    config3 = copy.deepcopy(config)
    config3.num_hidden_layers = n + 1
    holder = transformers.DeepseekV3ForCausalLM(config3).to(torch.float32).eval()  # only its layer n is used
    D = config.hidden_size
    mod = nn.Module()
    mod.block = holder.model.layers[n]  # a normal MoE decoder layer (n >= first_k_dense_replace)
    mod.enorm = nn.Module()
    mod.enorm.weight = nn.Parameter(torch.empty(D))
    mod.hnorm = nn.Module()
    mod.hnorm.weight = nn.Parameter(torch.empty(D))
    mod.eh_proj = nn.Linear(2 * D, D, bias=False)
    mod.shared_head = nn.Module()
    mod.shared_head.norm = nn.Module()
    mod.shared_head.norm.weight = nn.Parameter(torch.empty(D))
    init_weights(mod, spec["mtp_seed"])
    if spec.get("storage") == "bfloat16":
        round_to_bf16(mod)
    with tempfile.TemporaryDirectory() as tmp:
        holder.save_pretrained(tmp, safe_serialization=True)  # per-expert checkpoint layout of layer n
        held = load_file(Path(tmp) / "model.safetensors")
    sd = load_file(out_dir / "model.safetensors")
    if any(k.startswith(prefix) for k in sd):
        dense.fail(f"{out_dir.name}: main model already has {prefix}*")
    sd.update({k: v for k, v in held.items() if k.startswith(prefix)})
    with torch.no_grad():
        sd[prefix + "enorm.weight"] = mod.enorm.weight.detach().clone()
        sd[prefix + "hnorm.weight"] = mod.hnorm.weight.detach().clone()
        sd[prefix + "eh_proj.weight"] = mod.eh_proj.weight.detach().clone()  # [D, 2D]
        sd[prefix + "shared_head.norm.weight"] = mod.shared_head.norm.weight.detach().clone()
    sd[prefix + "embed_tokens.weight"] = sd["model.embed_tokens.weight"].clone()
    sd[prefix + "shared_head.head.weight"] = sd["lm_head.weight"].clone()
    if spec.get("storage") == "bfloat16":
        sd = {k: (v if k.endswith("e_score_correction_bias") else v.to(torch.bfloat16)) for k, v in sd.items()}
        cfg["dtype"] = "bfloat16"
        (out_dir / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    save_file({k: v.contiguous() for k, v in sd.items()}, out_dir / "model.safetensors", metadata={"format": "pt"})
    return cfg


MTP_SEMANTICS = (
    "MTP module = model.layers.{n} (num_hidden_layers {n}, num_nextn_predict_layers 1), one draft step. For i = 0 .. "
    "T-2: h_i = the main model's final hidden state at position i AFTER model.norm (the lm_head input); e_i = "
    "embed_tokens(ids[i+1]) (model.layers.{n}.embed_tokens.weight, a copy of model.embed_tokens); x_i = eh_proj(concat("
    "[enorm(e_i), hnorm(h_i)])) - embedding half first, eh_proj.weight [hidden, 2*hidden] so y = W @ [e; h]; enorm, "
    "hnorm and shared_head.norm are RMSNorm with rms_norm_eps. x_0 .. x_(T-2) then go through decoder layer {n} like a "
    "normal layer: x + MLA(input_layernorm(x)) with a causal mask over the MTP sequence and rope position i for entry "
    "i (the positions of the h_i, not of the embedded tokens), then + MoE(post_attention_layernorm(.)) (sigmoid + "
    "bias router, {shared} shared experts). logits_i = shared_head.head(shared_head.norm(y_i)) (shared_head.head is a "
    "copy of lm_head). Row i predicts ids[i+2]: positions[i] = logprob of ids[i+2] and top-5 of row i (i <= T-3); "
    "last_position_logprobs = the full row T-2 (the draft of the token after the one following the sequence). ")
MTP_SEMANTICS_PLAIN = (
    "The embedding at position 0 is used as is (SGLang deepseek_nextn.py, llama.cpp's deepseek2 MTP graph, DeepSeek's "
    "training formulation). vLLM's deepseek_mtp.py zeroes it (inputs_embeds[positions == 0] = 0): see "
    "mtp-reference-vllm.json.")
MTP_SEMANTICS_VLLM = (
    "vLLM variant: as vLLM's deepseek_mtp.py, the token embedding of every entry at position 0 is replaced by zeros "
    "before enorm (inputs_embeds[positions == 0] = 0, so enorm(e_0) = 0 and x_0 = eh_proj([0, hnorm(h_0)])); every "
    "row changes, since later entries attend to x_0. Otherwise identical to mtp-reference.json.")


def make_mtp_reference(out_dir: Path, ids, cfg: dict, spec: dict) -> dict:
    import numpy as np
    import torch
    import transformers
    from safetensors.torch import load_file

    n = cfg["num_hidden_layers"]
    prefix = f"model.layers.{n}."
    eps = cfg["rms_norm_eps"]
    kw = dict(dtype=torch.float32, attn_implementation="eager", experts_implementation="eager")
    main = transformers.DeepseekV3ForCausalLM.from_pretrained(out_dir, **kw).eval()
    # the stored layer n loaded as a normal decoder layer (a 3-layer view of the same checkpoint)
    full, info = transformers.DeepseekV3ForCausalLM.from_pretrained(out_dir, num_hidden_layers=n + 1,
                                                                     output_loading_info=True, **kw)
    if info["missing_keys"]:
        dense.fail(f"mtp: layer {n} did not load completely: {sorted(info['missing_keys'])}")
    block, rotary = full.model.layers[n].eval(), full.model.rotary_emb
    st = {k[len(prefix):]: v.float() for k, v in load_file(out_dir / "model.safetensors").items()
          if k.startswith(prefix)}
    E = cfg["n_routed_experts"]
    with torch.no_grad():
        loaded_ok = all([
            torch.equal(block.self_attn.q_a_proj.weight, st["self_attn.q_a_proj.weight"]),
            torch.equal(block.self_attn.kv_b_proj.weight, st["self_attn.kv_b_proj.weight"]),
            torch.equal(block.mlp.gate.weight, st["mlp.gate.weight"]),
            torch.equal(block.mlp.gate.e_score_correction_bias, st["mlp.gate.e_score_correction_bias"]),
            torch.equal(block.mlp.shared_experts.down_proj.weight, st["mlp.shared_experts.down_proj.weight"]),
            *(torch.equal(block.mlp.experts.gate_up_proj[e], torch.cat([st[f"mlp.experts.{e}.gate_proj.weight"],
                                                                       st[f"mlp.experts.{e}.up_proj.weight"]]))
              for e in range(E)),
            *(torch.equal(block.mlp.experts.down_proj[e], st[f"mlp.experts.{e}.down_proj.weight"]) for e in range(E)),
        ])
    if not loaded_ok:
        dense.fail("mtp: the 3-layer view of the checkpoint does not hold the stored layer-n weights")

    # harness check: replaying the main model's last layer through run_decoder_layer gives the model's own output
    cap = {}

    def hook(mod, args, kwargs, out):
        cap["in"] = (args[0] if args else kwargs["hidden_states"]).detach().clone()
        cap["out"] = (out[0] if isinstance(out, tuple) else out).detach().clone()

    T = len(ids)
    hk = main.model.layers[n - 1].register_forward_hook(hook, with_kwargs=True)
    with torch.no_grad():
        res = main(torch.tensor([ids]), output_hidden_states=True)
        hk.remove()
        replay = run_decoder_layer(main.model.layers[n - 1], main.model.rotary_emb, cap["in"], range(T))
        harness_diff = float((replay - cap["out"]).abs().max())
        last = main.model(torch.tensor([ids])).last_hidden_state
        head_diff = float((main.lm_head(last) - res.logits).abs().max())  # last_hidden_state is after model.norm
    if harness_diff > 1e-5 or head_diff > 1e-5:
        dense.fail(f"mtp: harness check failed ({harness_diff:.2e}, {head_diff:.2e})")

    def rms(x, w):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w

    def mtp_logits(dtype, zero_pos0: bool):
        m, b, r = main.to(dtype), block.to(dtype), rotary.to(dtype)
        W = {k: v.to(dtype) for k, v in st.items()}
        with torch.no_grad():
            h = m.model(torch.tensor([ids])).last_hidden_state[0]  # [T, D], after model.norm
            e = W["embed_tokens.weight"][torch.tensor(ids[1:])]  # entry i embeds ids[i+1]
            if zero_pos0:
                e = e.clone()
                e[0] = 0  # entry 0 has position 0
            x = torch.cat([rms(e, W["enorm.weight"]), rms(h[:-1], W["hnorm.weight"])], -1) @ W["eh_proj.weight"].T
            y = run_decoder_layer(b, r, x[None], range(T - 1))[0]
            return (rms(y, W["shared_head.norm.weight"]) @ W["shared_head.head.weight"].T).numpy()

    lp = dense.log_softmax64(mtp_logits(torch.float32, False))
    lp_vllm = dense.log_softmax64(mtp_logits(torch.float32, True))

    def lsm64(x):
        x = x - x.max(-1, keepdims=True)
        return x - np.log(np.exp(x).sum(-1, keepdims=True))

    lp64 = lsm64(mtp_logits(torch.float64, False))
    lp64_vllm = lsm64(mtp_logits(torch.float64, True))
    self_diff = float(np.abs(lp - lp64).max())
    self_diff_vllm = float(np.abs(lp_vllm - lp64_vllm).max())
    vllm_vs_plain = float(np.abs(lp - lp_vllm).max())
    top1 = np.exp(lp.max(-1))
    # how good a draft it is (random weights: not meant to be good): share of rows whose argmax is ids[i+2]
    hits = int(sum(int(np.argmax(lp[i])) == ids[i + 2] for i in range(T - 2)))
    sem = MTP_SEMANTICS.format(n=n, shared=cfg["n_shared_experts"])
    source = (f"transformers {transformers.__version__} DeepseekV3DecoderLayer (layer {n} of from_pretrained(dir, "
              f"num_hidden_layers={n + 1}), eager attention + experts) driven by scripts/make-deepseek-fixtures.py "
              "(make_mtp_reference): main-model hidden states from DeepseekV3ForCausalLM.from_pretrained(dir), float32; "
              "logits float32 -> log_softmax float64")
    for fname, lpx, diff, text in (("mtp-reference.json", lp, self_diff, sem + MTP_SEMANTICS_PLAIN),
                                   ("mtp-reference-vllm.json", lp_vllm, self_diff_vllm, sem + MTP_SEMANTICS_VLLM)):
        doc = {"reference": source, "semantics": text, "mtp_layer_index": n,
               "max_abs_diff_vs_float64_forward": float(f"{diff:.3e}"),
               "harness_check_max_abs_diff": float(f"{harness_diff:.3e}"),
               "max_abs_diff_vllm_vs_plain": float(f"{vllm_vs_plain:.3e}"),
               "ids": [int(t) for t in ids],
               "logprobs": "log_softmax in float64 of float32 logits, rounded to 1e-6; row i predicts ids[i+2]",
               "positions": dense.reference_rows(lpx, ids[1:]),
               "last_position_logprobs": [dense.r(x) for x in lpx[-1]]}
        dense.write_json(out_dir / fname, doc)
    log(f"mtp: MTP rows {T - 1}, mean top-1 p {top1.mean():.3f}, f32-vs-f64 {self_diff:.1e}, harness {harness_diff:.1e},"
        f" vLLM pos-0 masking changes logprobs by up to {vllm_vs_plain:.2e}")
    return {"mtp_seed": spec["mtp_seed"], "rows": T - 1, "mean_top1_probability": dense.r(top1.mean()),
            "draft_argmax_hits": hits, "max_abs_diff_vs_float64_forward": float(f"{self_diff:.3e}"),
            "harness_check_max_abs_diff": float(f"{harness_diff:.3e}"),
            "max_abs_diff_vllm_position0_masking_vs_plain": float(f"{vllm_vs_plain:.3e}"),
            "transformers_unexpected_keys_with_num_hidden_layers_3": sorted(info["unexpected_keys"]),
            "mtp_only_tensors": sorted(k for k in st if k.split(".")[0] in
                                       ("enorm", "hnorm", "eh_proj", "embed_tokens", "shared_head"))}


# ----------------------------------------------------------------------------- fp8


def fp8_quantize(w):
    """float32 [rows, cols] -> (float8_e4m3fn weight, float32 weight_scale_inv [ceil(rows/128), ceil(cols/128)]).
    Per 128x128 block (the last row / column of blocks may be narrower): scale = amax(|block|) / 448 (float32),
    q = (block / scale) cast to e4m3fn (round to nearest even)."""
    import torch

    B = FP8_BLOCK
    rows, cols = w.shape
    nr, nc = -(-rows // B), -(-cols // B)
    scaled = torch.empty(rows, cols, dtype=torch.float32)
    scale = torch.empty(nr, nc, dtype=torch.float32)
    for i in range(nr):
        for j in range(nc):
            blk = w[i * B:(i + 1) * B, j * B:(j + 1) * B]
            amax = blk.abs().max()
            s = amax / FP8_E4M3_MAX if float(amax) > 0 else torch.ones((), dtype=torch.float32)
            scale[i, j] = s
            scaled[i * B:(i + 1) * B, j * B:(j + 1) * B] = blk / s
    q = scaled.to(torch.float8_e4m3fn)
    if torch.isnan(q.float()).any():
        dense.fail("fp8 quantization produced NaN")
    return q, scale


def fp8_dequantize(q, scale):
    """w[r, c] = float32(q[r, c]) * scale[r // 128, c // 128], in float32."""
    import torch

    rows, cols = q.shape
    full = scale.repeat_interleave(FP8_BLOCK, 0).repeat_interleave(FP8_BLOCK, 1)[:rows, :cols]
    return q.to(torch.float32) * full


def read_safetensors_raw(path: Path) -> dict:
    """Independent reader (json header + numpy / ml_dtypes), used to re-check the stored fp8 checkpoint."""
    import ml_dtypes
    import numpy as np

    dtypes = {"F32": np.float32, "BF16": ml_dtypes.bfloat16, "F8_E4M3": ml_dtypes.float8_e4m3fn}
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n])
    out = {}
    for k, meta in header.items():
        if k == "__metadata__":
            continue
        a, b = meta["data_offsets"]
        out[k] = np.frombuffer(raw[8 + n + a:8 + n + b], dtype=dtypes[meta["dtype"]]).reshape(meta["shape"])
    return out


def make_fp8(name: str, spec: dict, ctx: dict, out_dir: Path, tok: dict) -> dict:
    import re
    import tempfile

    import numpy as np
    import torch
    import transformers
    from safetensors.torch import load_file, save_file

    cls = transformers.DeepseekV3ForCausalLM
    config = transformers.DeepseekV3Config(**spec["config"], **tok)
    seed = spec["weights_seed"]
    torch.manual_seed(seed)
    model = cls(config).to(torch.float32).eval()
    init_weights(model, seed, spec["init"])
    rng = np.random.default_rng(spec["sequence_seed"])
    ids = rng.integers(0, VOCAB, size=spec["sequence_length"]).tolist()
    with tempfile.TemporaryDirectory() as tmp:
        src, ref_dir = Path(tmp) / "unquantized", Path(tmp) / "dequantized"
        model.save_pretrained(src, safe_serialization=True)
        cfg = write_config_extras(src, spec)
        _, lp_unq, _, _ = reference_forward(cls, src, ids, cfg, "v3")
        sd = load_file(src / "model.safetensors")
        stored, deq, quantized, rel_err = {}, {}, [], 0.0
        for k in sorted(sd):
            v = sd[k].to(torch.float32)
            if k.endswith("e_score_correction_bias"):
                stored[k] = v
                deq[k] = v
            elif re.search(FP8_QUANTIZED, k):
                q, s = fp8_quantize(v)
                stored[k] = q
                stored[k + "_scale_inv"] = s
                deq[k] = fp8_dequantize(q, s)
                quantized.append(k)
                rel_err = max(rel_err, float(((deq[k] - v).abs().max() / v.abs().max())))
            else:  # embed_tokens, lm_head, norms, router gate: bfloat16, as in DeepSeek-V3's release
                stored[k] = v.to(torch.bfloat16)
                deq[k] = stored[k].to(torch.float32)
        # the reference: the non-quantized config + the exact dequantized weights, loaded in float32
        ref_dir.mkdir()
        (ref_dir / "config.json").write_text((src / "config.json").read_text(), encoding="utf-8")
        save_file({k: v.contiguous() for k, v in deq.items()}, ref_dir / "model.safetensors", metadata={"format": "pt"})
        _, lp, self_diff, margins = reference_forward(cls, ref_dir, ids, cfg, "v3")
    cfg = dict(cfg, quantization_config=FP8_QUANTIZATION_CONFIG, dtype="bfloat16", torch_dtype="bfloat16")
    (out_dir / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    gen_cfg = out_dir / "generation_config.json"
    if gen_cfg.exists():
        gen_cfg.unlink()
    save_file({k: v.contiguous() for k, v in stored.items()}, out_dir / "model.safetensors", metadata={"format": "pt"})

    # re-read the written file with an independent reader and dequantize again (numpy, float32)
    raw = read_safetensors_raw(out_dir / "model.safetensors")
    worst = 0.0
    for k, ref in deq.items():
        a = raw[k].astype(np.float32)
        if k + "_scale_inv" in raw:
            s = raw[k + "_scale_inv"]
            a = a * np.repeat(np.repeat(s, FP8_BLOCK, 0), FP8_BLOCK, 1)[: a.shape[0], : a.shape[1]]
        worst = max(worst, float(np.abs(a - ref.numpy()).max()))
    if worst != 0.0:
        dense.fail(f"fp8: independent dequantization differs by {worst}")
    checks = {"independent_numpy_dequantization_max_abs_diff": worst,
              "transformers_from_pretrained_fp8_on_cpu": transformers_fp8_load(out_dir, ids, deq),
              "llama_cpp_converter_dequantization": (llama_converter_fp8_check(out_dir, deq, cfg, ctx)
                                                     if ctx["gguf"] else "skipped (--no-gguf)")}
    diff_unq = float(np.abs(lp - lp_unq).max())
    top1 = np.exp(lp.max(axis=-1))
    scale_shapes = {k.removesuffix(".weight").split("layers.", 1)[-1]: list(stored[k + "_scale_inv"].shape)
                    for k in quantized if ".experts." not in k or ".experts.0." in k}
    dequant = ("w[r, c] = float32(weight[r, c]) * weight_scale_inv[r // 128, c // 128], multiplied in float32; "
               "weight is float8_e4m3fn, weight_scale_inv float32 [ceil(rows/128), ceil(cols/128)] (the last block "
               "row / column covers the remainder). Quantized here as scale = amax(|block|) / 448, weight = "
               "round-to-nearest-even(block / scale) in e4m3fn.")
    doc = dense.reference_doc(
        f"transformers {transformers.__version__}, DeepseekV3ForCausalLM.from_pretrained(dir, dtype=float32, "
        "attn_implementation='eager', experts_implementation='eager') of a copy of this checkpoint with every fp8 "
        "weight replaced by its exact float32 dequantization, the bf16 tensors upcast and no quantization_config; "
        "one forward pass over all ids (no cache)", lp, ids,
        {"sequence_seed": spec["sequence_seed"],
         "sequence": f"numpy.random.default_rng({spec['sequence_seed']}).integers(0, {VOCAB}, "
                     f"size={spec['sequence_length']})",
         "dequantization": dequant,
         "mean_top1_probability": dense.r(top1.mean()),
         "max_abs_diff_vs_float64_forward": float(f"{self_diff:.3e}"),
         "max_abs_diff_vs_unquantized_model": float(f"{diff_unq:.3e}"),
         "routing": margins})
    dense.write_json(out_dir / "reference.json", doc)
    size = (out_dir / "model.safetensors").stat().st_size
    log(f"{name}: {len(ids)} ids, mean top-1 p {top1.mean():.3f}, safetensors {size} bytes, f32-vs-f64 "
        f"{self_diff:.1e}, vs unquantized {diff_unq:.2e}, margins {margins}, checks {checks}")
    return {"weights_seed": seed, "sequence_seed": spec["sequence_seed"], "sequence_length": len(ids),
            "mean_top1_probability": dense.r(top1.mean()), "safetensors_bytes": size,
            "safetensors_tensor_count": len(stored), "max_abs_diff_vs_float64_forward": float(f"{self_diff:.3e}"),
            "routing": margins,
            "fp8": {"quantized_weight_count": len(quantized), "quantization_config": FP8_QUANTIZATION_CONFIG,
                    "dequantization": dequant, "scale_inv_shapes": scale_shapes,
                    "kept_bf16": "model.embed_tokens, lm_head, every *norm.weight, mlp.gate.weight (router)",
                    "kept_float32": "mlp.gate.e_score_correction_bias",
                    "max_relative_weight_error": float(f"{rel_err:.3e}"),
                    "max_abs_logprob_diff_reference_vs_unquantized_float32_model": float(f"{diff_unq:.3e}"),
                    "init": spec["init"], "checks": checks}}


def transformers_fp8_load(out_dir: Path, ids, deq: dict) -> dict:
    """Informational: what transformers itself makes of the fp8 checkpoint on a CPU-only machine (it needs the
    unpinned `accelerate`; with it, FineGrainedFP8 falls back to dequantizing while loading)."""
    import re

    import torch
    import transformers

    try:
        m = transformers.DeepseekV3ForCausalLM.from_pretrained(out_dir, dtype=torch.float32,
                                                                attn_implementation="eager",
                                                                experts_implementation="eager").eval()
    except Exception as exc:  # noqa: BLE001 -- the failure is the finding
        return {"loads": False, "error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"}
    params = dict(m.named_parameters())
    wrong = {}
    for k, ref in deq.items():
        if re.search(FP8_QUANTIZED, k) and ".experts." not in k and k in params:
            d = float((params[k].detach().float() - ref).abs().max())
            if d:
                wrong[k.removeprefix("model.")] = float(f"{d:.3e}")
    try:
        with torch.no_grad():
            m(torch.tensor([ids]))
        fwd = "runs"
    except Exception as exc:  # noqa: BLE001
        fwd = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
    return {"loads": True, "dequantized_weights_that_differ_from_the_exact_ones": wrong, "forward": fwd}


def llama_converter_fp8_check(out_dir: Path, deq: dict, cfg: dict, ctx: dict) -> dict:
    """Convert the fp8 checkpoint with llama.cpp's converter (it dequantizes weight_scale_inv itself) into a temporary
    f32 GGUF and compare its tensors with our dequantization."""
    import re
    import tempfile

    import numpy as np
    from gguf import GGUFReader

    H, dn, dv = cfg["num_attention_heads"], cfg["qk_nope_head_dim"], cfg["v_head_dim"]
    names = {"attn_q_a": "self_attn.q_a_proj", "attn_q_b": "self_attn.q_b_proj", "attn_output": "self_attn.o_proj",
             "attn_kv_a_mqa": "self_attn.kv_a_proj_with_mqa", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
             "ffn_down": "mlp.down_proj", "ffn_gate_shexp": "mlp.shared_experts.gate_proj",
             "ffn_up_shexp": "mlp.shared_experts.up_proj", "ffn_down_shexp": "mlp.shared_experts.down_proj"}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fp8.gguf"
        ok, err = run_converter_as(ctx["llama_src"], out_dir, path, TOKENIZER["pre"], "f32")
        if not ok:
            return {"converted": False, "error": err}
        worst, compared = 0.0, 0
        for t in GGUFReader(str(path)).tensors:
            m = re.match(r"blk\.(\d+)\.(\w+)\.weight$", t.name)
            if not m:
                continue
            L, kind = m.group(1), m.group(2)
            p = f"model.layers.{L}."
            if kind in names:
                ref = deq[p + names[kind] + ".weight"].numpy()
            elif kind in ("ffn_gate_exps", "ffn_up_exps", "ffn_down_exps"):
                w = {"ffn_gate_exps": "gate_proj", "ffn_up_exps": "up_proj", "ffn_down_exps": "down_proj"}[kind]
                ref = np.stack([deq[f"{p}mlp.experts.{e}.{w}.weight"].numpy()
                                for e in range(cfg["n_routed_experts"])])
            elif kind in ("attn_k_b", "attn_v_b"):
                kv = deq[p + "self_attn.kv_b_proj.weight"].numpy().reshape(H, dn + dv, -1)
                ref = kv[:, :dn].transpose(0, 2, 1) if kind == "attn_k_b" else kv[:, dn:]
            else:
                continue
            worst = max(worst, float(np.abs(np.asarray(t.data, dtype=np.float32) - ref).max()))
            compared += 1
    return {"converted": True, "fp8_tensors_compared": compared, "max_abs_diff_vs_our_dequantization": worst}


# ----------------------------------------------------------------------------- extra llama.cpp files


def run_converter_as(llama_src: Path, model_dir: Path, outfile: Path, pre: str, outtype: str, extra=()):
    """dense.run_converter's in-process wrapper (pre-tokenizer name supplied), with any --outtype / extra args.
    Returns (ok, stderr tail)."""
    env = dict(os.environ, PYTHONHASHSEED="0")
    argv = [str(llama_src / "convert_hf_to_gguf.py"), str(model_dir), "--outtype", outtype, "--outfile",
            str(outfile), *extra]
    wrapper = (
        "import runpy, sys\n"
        f"sys.path.insert(0, {str(llama_src)!r}); sys.path.insert(1, {str(llama_src / 'gguf-py')!r})\n"
        "import conversion.base as base\n"
        f"base.TextModel.get_vocab_base_pre = lambda self, tokenizer: {pre!r}\n"
        f"sys.argv = {argv!r}\n"
        f"runpy.run_path({str(llama_src / 'convert_hf_to_gguf.py')!r}, run_name='__main__')\n"
    )
    proc = subprocess.run([sys.executable, "-c", wrapper], capture_output=True, text=True, env=env)
    lines = [ln.strip() for ln in proc.stderr.strip().splitlines() if ln.strip()]
    return proc.returncode == 0, (lines[-1] if lines else str(proc.returncode))


def llama_logprobs_subprocess(gguf_path: Path, ids) -> tuple:
    """llama.cpp logprobs (F32 KV cache, no flash attention) in a child process, so that a GGML_ASSERT / abort while
    loading an odd file is recorded instead of killing the generator. Returns (logprobs or None, log tail)."""
    import numpy as np

    code = (
        "import json, sys, numpy as np, llama_cpp\n"
        f"llm = llama_cpp.Llama(model_path={str(gguf_path)!r}, n_ctx=128, n_batch=128, n_threads={N_THREADS}, "
        f"logits_all=True, verbose=True, type_k={dense.GGML_TYPE_F32}, type_v={dense.GGML_TYPE_F32}, flash_attn=False)\n"
        f"ids = {list(map(int, ids))!r}\n"
        "llm.eval(ids)\n"
        "np.save(sys.argv[1], np.array(llm.scores[: len(ids)], dtype=np.float32))\n"
    )
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "scores.npy"
        proc = subprocess.run([sys.executable, "-c", code, str(out)], capture_output=True, text=True)
        interesting = [ln.strip() for ln in proc.stderr.splitlines()
                       if any(w in ln.lower() for w in ("error", "failed", "assert", "exception", "missing",
                                                         "wrong", "unknown", "abort"))]
        interesting = [ln.replace(str(ROOT) + "/", "") for ln in interesting]
        if proc.returncode != 0 or not out.exists():
            first = [ln for ln in interesting if "error loading model" in ln or "GGML_ASSERT" in ln][:1]
            return None, (first or interesting[-3:] or proc.stderr.strip().splitlines()[-3:]) + [
                f"exit {proc.returncode}"]
        return dense.log_softmax64(np.load(out)), interesting[-3:]


def llama_logprobs(gguf_path: Path, ids):
    import llama_cpp
    import numpy as np

    llm = llama_cpp.Llama(model_path=str(gguf_path), n_ctx=128, n_batch=128, n_threads=N_THREADS, logits_all=True,
                          verbose=False, type_k=dense.GGML_TYPE_F32, type_v=dense.GGML_TYPE_F32, flash_attn=False)
    llm.eval(ids)
    return dense.log_softmax64(np.array(llm.scores[: len(ids)], dtype=np.float32))


def logprob_diffs(lp, lp_hf, ids) -> dict:
    import numpy as np

    return {"all_logprobs": float(f"{float(np.abs(lp - lp_hf).max()):.3e}"),
            "next_token_logprobs": float(f"{max(abs(lp[i, ids[i + 1]] - lp_hf[i, ids[i + 1]]) for i in range(len(ids) - 1)):.3e}"),
            "same_argmax_everywhere": bool((lp.argmax(-1) == lp_hf.argmax(-1)).all())}


def gguf_step(name: str, out_dir: Path, ids, lp_hf, cfg: dict, ctx: dict) -> dict:
    add_keys = None
    if cfg.get("q_lora_rank") is None:
        # llama.cpp reads deepseek2.attention.q_lora_rank unconditionally unless the model "is lite", which it decides
        # by layer count (26 / 27, or 48 with a 128256 vocab); the converter writes no key when q_lora_rank is null
        from gguf import GGUFValueType

        add_keys = {"deepseek2.attention.q_lora_rank": (0, GGUFValueType.UINT32)}
    # model-f32.gguf, gguf-layout.json, reference-llamacpp.json
    res = make_gguf(out_dir, ids, lp_hf, ctx, add_keys) if add_keys else make_gguf(out_dir, ids, lp_hf, ctx)
    if add_keys:
        res["llama_cpp_on_the_converted_file"] = llama_logprobs_subprocess(out_dir / "model-f32.gguf", ids)[1]
    if name == "v3-sigmoid-noaux":
        res["q8_0"] = make_q8_0(out_dir, ids, lp_hf, ctx)
        res["fused_kv"] = make_fused_kv(out_dir, ids, lp_hf, cfg)
    elif name == "v2-group-limited":
        res["group_rule"] = group_rule_check(out_dir, ids, cfg, lp_hf)
    elif name == "mtp":
        res["mtp"] = mtp_gguf_facts(out_dir, cfg, ctx)
    meta = dense.gguf_summary(out_dir / "model-f32.gguf")["metadata"]
    if name == "v3-no-qlora-yarn":
        res["rope_keys"] = {k: v for k, v in meta.items() if ".rope." in k}
    return res


def make_q8_0(out_dir: Path, ids, lp_hf, ctx: dict) -> dict:
    from collections import Counter

    path = out_dir / "model-q8_0.gguf"
    ok, err = run_converter_as(ctx["llama_src"], out_dir, path, TOKENIZER["pre"], "q8_0")
    if not ok:
        dense.fail(f"convert_hf_to_gguf.py --outtype q8_0 failed: {err}")
    layout = dense.gguf_summary(path)
    (out_dir / "gguf-layout-q8_0.json").write_text(dense.dumps(layout) + "\n", encoding="utf-8")
    lp = llama_logprobs(path, ids)
    diffs = logprob_diffs(lp, lp_hf, ids)
    conv = {"command": "python3 convert_hf_to_gguf.py MODEL_DIR --outtype q8_0 --outfile model-q8_0.gguf",
            "used": "the same in-process wrapper as model-f32.gguf (pre-tokenizer name 'deepseek-v3' supplied)"}
    dense.write_json(out_dir / "reference-llamacpp-q8_0.json", dense.reference_doc(
        f"llama.cpp through llama-cpp-python on model-q8_0.gguf: Llama(n_ctx=128, n_batch=128, n_threads={N_THREADS}, "
        "logits_all=True, type_k=F32, type_v=F32, flash_attn=False), all ids in one decode", lp, ids,
        {"llama_cpp": ctx["llama_cpp"], "bindings": dense.bindings_info(), "max_abs_diff_vs_transformers": diffs,
         "converter": conv}))
    types = Counter(t["type"] for t in layout["tensors"])
    not_q8 = {t["name"]: t["type"] for t in layout["tensors"] if t["type"] != "Q8_0" and len(t["ne"]) > 1}
    lp_w8, margins = weight_only_reference(path, out_dir, ids)
    split = {"weights_only_q8_0_dequantized_in_transformers_vs_transformers_f32": logprob_diffs(lp_w8, lp_hf, ids),
             "llama_cpp_q8_0_vs_weights_only_q8_0_dequantized_in_transformers": logprob_diffs(lp, lp_w8, ids),
             "routing_margins_with_the_dequantized_weights": margins}
    log(f"{out_dir.name}: q8_0 GGUF vs transformers max |dlogprob| {diffs['all_logprobs']:.2e}; types {dict(types)}; "
        f"split {split}")
    return {"converter": conv, "max_abs_diff_vs_transformers": diffs, "tensor_types": dict(sorted(types.items())),
            "matrices_not_q8_0": not_q8, "error_split": split}


def weight_only_reference(gguf_path: Path, model_dir: Path, ids):
    """transformers (float32, eager) on the weights of a quantized deepseek2 GGUF dequantized back to the HF layout,
    to tell the weight quantization error from llama.cpp's activation quantization (Q8_0 x Q8_0 dot products)."""
    import re
    import tempfile

    import numpy as np
    import torch
    import transformers
    from gguf import GGUFReader
    from gguf.quants import dequantize
    from safetensors.torch import save_file

    cfg = json.loads((model_dir / "config.json").read_text())
    H, dn = cfg["num_attention_heads"], cfg["qk_nope_head_dim"]
    top = {"token_embd": "model.embed_tokens", "output": "lm_head", "output_norm": "model.norm"}
    per_layer = {"attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm",
                 "attn_q_a": "self_attn.q_a_proj", "attn_q_a_norm": "self_attn.q_a_layernorm",
                 "attn_q_b": "self_attn.q_b_proj", "attn_q": "self_attn.q_proj",
                 "attn_kv_a_mqa": "self_attn.kv_a_proj_with_mqa", "attn_kv_a_norm": "self_attn.kv_a_layernorm",
                 "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
                 "ffn_down": "mlp.down_proj", "ffn_gate_inp": "mlp.gate", "ffn_gate_shexp": "mlp.shared_experts.gate_proj",
                 "ffn_up_shexp": "mlp.shared_experts.up_proj", "ffn_down_shexp": "mlp.shared_experts.down_proj"}
    sd, kb, vb = {}, {}, {}
    for t in GGUFReader(str(gguf_path)).tensors:
        w = torch.from_numpy(np.ascontiguousarray(dequantize(t.data, t.tensor_type).astype(np.float32)))
        base = t.name.removesuffix(".weight").removesuffix(".bias")
        if base in top:
            sd[top[base] + ".weight"] = w
            continue
        m = re.match(r"blk\.(\d+)\.(\w+)$", base)
        L, kind = m.group(1), m.group(2)
        p = f"model.layers.{L}."
        if kind in per_layer:
            sd[p + per_layer[kind] + ".weight"] = w
        elif kind == "exp_probs_b":
            sd[p + "mlp.gate.e_score_correction_bias"] = w
        elif kind in ("ffn_gate_exps", "ffn_up_exps", "ffn_down_exps"):
            for e in range(w.shape[0]):
                sd[f"{p}mlp.experts.{e}.{kind.split('_')[1]}_proj.weight"] = w[e].clone()
        elif kind == "attn_k_b":
            kb[L] = w  # [H, r_kv, dn]
        elif kind == "attn_v_b":
            vb[L] = w  # [H, dv, r_kv]
        else:
            dense.fail(f"weight_only_reference: no mapping for {t.name}")
    for L in kb:
        kv = torch.cat([kb[L].transpose(1, 2), vb[L]], dim=1)  # [H, dn + dv, r_kv]
        sd[f"model.layers.{L}.self_attn.kv_b_proj.weight"] = kv.reshape(H * (dn + cfg["v_head_dim"]), -1)
    cls = transformers.DeepseekV3ForCausalLM if "V3" in cfg["architectures"][0] else transformers.DeepseekV2ForCausalLM
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "config.json").write_text((model_dir / "config.json").read_text(), encoding="utf-8")
        save_file({k: v.contiguous() for k, v in sd.items()}, Path(tmp) / "model.safetensors", metadata={"format": "pt"})
        _, lp, _, margins = reference_forward(cls, Path(tmp), ids, cfg, "v3" if cls.__name__.startswith("DeepseekV3")
                                              else "v2")
    return lp, margins


def copy_gguf(src: Path, dst: Path, override=None, drop=(), add=None, tensors=None) -> None:
    """Rewrite an F32 GGUF with gguf-py: same keys in the same order (values from `override`, keys in `drop`
    left out, `add` = {key: (value, GGUFValueType)} appended), tensors as they are or as tensors(t) -> [(name, array)]
    says."""
    import numpy as np
    from gguf import GGUFReader, GGUFValueType, GGUFWriter

    override = override or {}
    reader = GGUFReader(str(src))
    writer = GGUFWriter(str(dst), reader.fields["general.architecture"].contents())
    for key, field in reader.fields.items():
        if key.startswith("GGUF.") or key == "general.architecture" or key in drop:
            continue
        vtype = field.types[0]
        val = override.get(key, field.contents())
        if vtype == GGUFValueType.ARRAY:
            writer.add_key_value(key, val, vtype, sub_type=field.types[-1])
        else:
            writer.add_key_value(key, val, vtype)
    for key, (val, vtype) in (add or {}).items():
        writer.add_key_value(key, val, vtype)
    for t in reader.tensors:
        if t.tensor_type.name != "F32":
            dense.fail(f"{src.name}: copy_gguf handles F32 tensors only ({t.name} is {t.tensor_type.name})")
        for name, arr in (tensors(t) if tensors else [(t.name, np.array(t.data))]):
            writer.add_tensor(name, arr)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def make_fused_kv(out_dir: Path, ids, lp_hf, cfg: dict) -> dict:
    """model-fused-kv-f32.gguf: model-f32.gguf rewritten in the deepseek2 layout of llama.cpp before its 2025 MLA
    change (one attn_kv_b per layer, MHA-style head counts / key lengths, no *_mla keys)."""
    import re

    import numpy as np
    from gguf import GGUFReader
    from safetensors.numpy import load_file

    src, dst = out_dir / "model-f32.gguf", out_dir / "model-fused-kv-f32.gguf"
    H, dn, dr, dv = (cfg["num_attention_heads"], cfg["qk_nope_head_dim"], cfg["qk_rope_head_dim"], cfg["v_head_dim"])
    r_kv = cfg["kv_lora_rank"]
    st = load_file(out_dir / "model.safetensors")
    reader = GGUFReader(str(src))
    arch = reader.fields["general.architecture"].contents()
    override = {f"{arch}.attention.head_count_kv": H, f"{arch}.attention.key_length": dn + dr,
                f"{arch}.attention.value_length": dv}
    drop = {f"{arch}.attention.key_length_mla", f"{arch}.attention.value_length_mla"}
    split_ok = True

    def tensors(t):
        nonlocal split_ok
        m = re.match(r"blk\.(\d+)\.attn_([kv])_b\.weight$", t.name)
        if m is None:
            return [(t.name, np.array(t.data))]
        if m.group(2) == "v":
            return []  # folded into attn_kv_b, written where attn_k_b was
        kv_b = st[f"model.layers.{m.group(1)}.self_attn.kv_b_proj.weight"]  # [H*(dn+dv), r_kv], HF row-major
        # consistency: the converter's split tensors are exactly views of it
        kv = kv_b.reshape(H, dn + dv, r_kv)
        v_b = next(x for x in reader.tensors if x.name == f"blk.{m.group(1)}.attn_v_b.weight").data  # [H, dv, r_kv]
        split_ok &= bool(np.array_equal(t.data, kv[:, :dn].transpose(0, 2, 1))  # k_b: ne [dn, r_kv, H]
                         and np.array_equal(v_b, kv[:, dn:]))
        return [(f"blk.{m.group(1)}.attn_kv_b.weight", np.ascontiguousarray(kv_b))]

    copy_gguf(src, dst, override=override, drop=drop, tensors=tensors)
    if not split_ok:
        dense.fail("attn_k_b / attn_v_b are not the expected views of kv_b_proj")
    layout = dense.gguf_summary(dst)
    (out_dir / "gguf-layout-fused-kv.json").write_text(dense.dumps(layout) + "\n", encoding="utf-8")
    lp, tail = llama_logprobs_subprocess(dst, ids)
    if lp is None:
        loads = {"loads": False, "log": tail}
    else:
        loads = {"loads": True, "max_abs_diff_vs_transformers": logprob_diffs(lp, lp_hf, ids)}
    log(f"{out_dir.name}: fused-kv GGUF with llama.cpp: {loads}")
    kv_ne = [x["ne"] for x in layout["tensors"] if x["name"] == "blk.0.attn_kv_b.weight"][0]
    return {"written_by": "scripts/make-deepseek-fixtures.py (make_fused_kv) with gguf-py from model-f32.gguf + "
                          "model.safetensors' kv_b_proj",
            "attn_kv_b_ne": kv_ne, "keys_changed": override, "keys_removed": sorted(drop),
            "split_tensors_are_views_of_kv_b": split_ok, "current_llama_cpp": loads}


def group_rule_check(out_dir: Path, ids, cfg: dict, lp_hf) -> dict:
    """V2 group_limited_greedy ranks groups by their max softmax probability; llama.cpp's build_moe_ffn always ranks
    them by the sum of the top-2 (V3's rule). Count the tokens where that changes the chosen experts, and compare
    llama.cpp's error before / at those tokens."""
    import numpy as np
    import torch
    import transformers

    model = transformers.DeepseekV2ForCausalLM.from_pretrained(out_dir, dtype=torch.float32,
                                                               attn_implementation="eager",
                                                               experts_implementation="eager").eval()
    E, K, G, TG = cfg["n_routed_experts"], cfg["num_experts_per_tok"], cfg["n_group"], cfg["topk_group"]
    inputs, hooks, gates = {}, [], {}
    for i, layer in enumerate(model.model.layers):
        gate = getattr(layer.mlp, "gate", None)
        if gate is None or not hasattr(gate, "top_k"):
            continue
        gates[i] = gate.weight.detach().double().numpy()
        hooks.append(gate.register_forward_hook(
            lambda mod, args, res, i=i: inputs.__setitem__(i, args[0].detach().reshape(-1, args[0].shape[-1])
                                                           .double().numpy())))
    with torch.no_grad():
        model(torch.tensor([ids]))
    for hk in hooks:
        hk.remove()
    differs = set()
    for i, h in inputs.items():
        logits = h @ gates[i].T
        p = np.exp(logits - logits.max(-1, keepdims=True))
        p /= p.sum(-1, keepdims=True)
        grouped = p.reshape(len(p), G, E // G)

        def chosen(gscore):
            keep = np.argsort(-gscore, axis=-1, kind="stable")[:, :TG]
            mask = np.zeros_like(gscore, dtype=bool)
            np.put_along_axis(mask, keep, True, axis=-1)
            c = np.where(np.repeat(mask, E // G, axis=-1), p, -np.inf)
            return np.sort(np.argsort(-c, axis=-1, kind="stable")[:, :K], axis=-1)

        by_max = chosen(grouped.max(-1))
        by_top2 = chosen(np.sort(grouped, -1)[..., -2:].sum(-1))
        differs |= set(np.nonzero((by_max != by_top2).any(-1))[0].tolist())
    lp = llama_logprobs(out_dir / "model-f32.gguf", ids)
    per_pos = np.abs(lp - lp_hf).max(-1)
    first = min(differs) if differs else None
    return {"rule_transformers": "group score = max softmax prob in the group (V2 group_limited_greedy)",
            "rule_llama_cpp": "group score = sum of the 2 largest selection probs in the group (llama-graph.cpp "
                              "build_moe_ffn, whatever expert_gating_func is)",
            "tokens_where_rules_choose_different_experts": sorted(differs),
            "llama_cpp_max_abs_diff_before_first_such_token": (float(f"{float(per_pos[:first].max()):.3e}")
                                                               if first else float(f"{float(per_pos.max()):.3e}")),
            "llama_cpp_max_abs_diff_from_first_such_token": (float(f"{float(per_pos[first:].max()):.3e}")
                                                             if first is not None else None)}


def mtp_gguf_facts(out_dir: Path, cfg: dict, ctx: dict) -> dict:
    """What llama.cpp's converter does with the stored MTP layer, added to mtp/gguf-layout.json."""
    import tempfile

    n = cfg["num_hidden_layers"]
    layout_path = out_dir / "gguf-layout.json"
    layout = json.loads(layout_path.read_text())
    written = [t["name"] for t in layout["tensors"] if t["name"].startswith(f"blk.{n}.") or "nextn" in t["name"]]
    with tempfile.TemporaryDirectory() as tmp:
        ok_mtp, err_mtp = run_converter_as(ctx["llama_src"], out_dir, Path(tmp) / "mtp.gguf", TOKENIZER["pre"], "f32",
                                           ["--mtp"])
    D, V = cfg["hidden_size"], cfg["vocab_size"]
    facts = {
        "converter_writes_nextn_tensors": bool(written),
        "nextn_tensors_in_model_f32_gguf": written,
        "nextn_predict_layers_key_written": any(k.endswith(".nextn_predict_layers") for k in layout["metadata"]),
        "block_count_written": layout["metadata"].get("deepseek2.block_count"),
        "why": "conversion/deepseek.py DeepseekV2Model (registered for DeepseekV2ForCausalLM and DeepseekV3ForCausalLM)"
               " has skip_mtp = True: modify_tensors drops every model.layers.N.* with N >= num_hidden_layers; only "
               "DeepseekV32Model (V3.2) keeps them (blk.N.*, block_count + nextn_predict_layers).",
        "converter_with_--mtp": "converted" if ok_mtp else f"refused: {err_mtp}",
        "llama_cpp_loader_would_accept": {
            "key": "deepseek2.nextn_predict_layers (n_layer_nextn; block_count then counts the MTP block too)",
            "tensors (ne, from src/models/deepseek2.cpp load_arch_tensors)": {
                f"blk.{n}.nextn.eh_proj.weight": [2 * D, D], f"blk.{n}.nextn.enorm.weight": [D],
                f"blk.{n}.nextn.hnorm.weight": [D], f"blk.{n}.nextn.embed_tokens.weight (optional)": [D, V],
                f"blk.{n}.nextn.shared_head_head.weight (optional)": [D, V],
                f"blk.{n}.nextn.shared_head_norm.weight (optional)": [D],
                f"blk.{n}.<attn_* / ffn_* as every MoE block>": "same names and shapes as blk.1"},
            "hf_to_gguf_names (gguf-py tensor_mapping)": {
                "model.layers.{bid}.eh_proj": "blk.{bid}.nextn.eh_proj", "model.layers.{bid}.enorm": "blk.{bid}.nextn.enorm",
                "model.layers.{bid}.hnorm": "blk.{bid}.nextn.hnorm",
                "model.layers.{bid}.embed_tokens": "blk.{bid}.nextn.embed_tokens",
                "model.layers.{bid}.shared_head.head": "blk.{bid}.nextn.shared_head_head",
                "model.layers.{bid}.shared_head.norm": "blk.{bid}.nextn.shared_head_norm"},
            "graph": "llama_model_deepseek2::graph_mtp: concat(enorm(embd), hnorm(h)) with h = the trunk's output after "
                     "output_norm (t_h_nextn), eh_proj, one MLA (absorbed, needs q_lora) + MoE block, "
                     "shared_head_norm (or output_norm), shared_head_head (or output); no zeroing at position 0"},
    }
    layout["mtp"] = facts
    layout_path.write_text(dense.dumps(layout) + "\n", encoding="utf-8")
    return facts


README = """\
# DeepSeek V2 / V3 goldens

Written by `python3 scripts/make-deepseek-fixtures.py` (do not edit by hand; MANIFEST.json has versions, seeds,
init, notes on transformers 5.23 / llama.cpp quirks and the sha256 of every file). Logprobs are log_softmax in
float64 of float32 logits, rounded to 1e-6. Semantics: docs/DEEPSEEK.md.

- v3-sigmoid-noaux/: V3, q_lora 48, sigmoid + bias router (noaux_tc), 4 groups / 2 kept, 1 shared expert,
  norm_topk_prob, routed_scaling_factor 2.5. Also model-f32.gguf (llama.cpp converter), gguf-layout.json,
  reference-llamacpp.json (F32 KV cache, no flash attention); model-q8_0.gguf (converter --outtype q8_0),
  gguf-layout-q8_0.json, reference-llamacpp-q8_0.json (llama.cpp on Q8_0: ~0.3 from transformers, quantization
  error); model-fused-kv-f32.gguf + gguf-layout-fused-kv.json: the pre-2025 deepseek2 layout (one attn_kv_b
  [ne kv_lora, H*(dn+dv)] per layer, head_count_kv = head_count, key_length dn+dr, value_length dv, no *_mla keys),
  expected logits = reference.json.
- v3-no-qlora-yarn/: V3, q_proj (no q_lora), 2 shared experts, YaRN factor 4 over L0 = 32, 48 tokens;
  config.json in the real-hub form (rope_theta + rope_scaling). model-f32.gguf as converted (llama.cpp cannot
  load it: no q_lora_rank key), reference-llamacpp.json from a copy with deepseek2.attention.q_lora_rank = 0 added.
- v2-softmax-greedy/: V2, softmax router, greedy top-2, routed_scaling_factor 1.
- v2-group-limited/: V2, group_limited_greedy (group score = max), 4 groups / 2 kept, routed_scaling_factor 2.
  model-f32.gguf + reference-llamacpp.json: llama.cpp scores groups by a top-2 sum, so it departs from
  transformers at position 3 (documents llama.cpp, not V2).
- bf16/: v3-sigmoid-noaux's weights as bfloat16 (e_score_correction_bias float32); reference from the bf16
  weights upcast to float32.
- fp8/: V3 as DeepSeek ships it: float8_e4m3fn weights + weight_scale_inv (float32, per 128x128 block, ragged last
  blocks: hidden 192, q_lora 160, kv_lora 144, dense 160), bf16 embeddings / head / norms / router, float32
  e_score_correction_bias, quantization_config. reference.json = transformers f32 on w = float32(fp8) * scale
  (float32 multiply).
- mtp/: V3, 2 shared experts, with the multi-token-prediction module stored as model.layers.2 (bf16).
  reference.json = main model (transformers ignores layer 2); mtp-reference.json = one MTP draft step over the
  sequence (row i: h_i after model.norm + embedding of ids[i+1] at rope position i, predicts ids[i+2]; the
  formula is in its "semantics" field); mtp-reference-vllm.json = the same with vLLM's zeroed embedding at
  position 0. model-f32.gguf (the converter drops the MTP layer), gguf-layout.json (with an "mtp" section),
  reference-llamacpp.json.

reference.json: positions[i] = logprob of ids[i+1] and top-5 of row i; last_position_logprobs = full last row;
routing = smallest float64 margins of the MoE group / expert choices (a sanity check that the goldens do not
hinge on a near-tie).
"""


def gguf_only(name: str, ctx: dict) -> dict:
    """--gguf-only: the reference logprobs are recomputed from the directory as it is (same code as when it was
    written), then only the llama.cpp files are rewritten; the manifest entry keeps everything else."""
    import transformers

    out_dir = OUT / name
    spec = VARIANTS[name]
    ids = json.loads((out_dir / "reference.json").read_text())["ids"]
    cfg = json.loads((out_dir / "config.json").read_text())
    cls = transformers.DeepseekV3ForCausalLM if spec["family"] == "v3" else transformers.DeepseekV2ForCausalLM
    _, lp, _, _ = reference_forward(cls, out_dir, ids, cfg, spec["family"])
    old = json.loads((OUT / "MANIFEST.json").read_text()).get("variants", {}).get(name, {})
    return dict(old, llama_cpp=gguf_step(name, out_dir, ids, lp, cfg, ctx))


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
    ap.add_argument("--gguf-only", action="store_true",
                    help="keep the selected variants' directories as they are and only (re)write their llama.cpp "
                         "files (GGUFs, gguf-layout*.json, reference-llamacpp*.json); variants: "
                         + ",".join(GGUF_VARIANTS))
    ap.add_argument("--llama-cpp-build", type=Path,
                    default=Path(os.environ.get("LLAMA_CPP_BUILD_ROOT", ROOT / ".build-llama.cpp")),
                    help="root written by scripts/build-llama-cpp.sh (default $LLAMA_CPP_BUILD_ROOT, "
                         "else .build-llama.cpp in the repository)")
    args = ap.parse_args()
    names = [v for v in args.variants.split(",") if v]
    if unknown := [v for v in names if v not in VARIANTS]:
        dense.fail(f"unknown variant(s) {unknown}; known: {list(VARIANTS)}")
    if args.gguf_only and (args.no_gguf or (bad := [n for n in names if n not in GGUF_VARIANTS
                                                     or not (OUT / n / "reference.json").is_file()])):
        dense.fail(f"--gguf-only needs existing directories of {GGUF_VARIANTS} (and no --no-gguf)")
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
    if args.gguf_only:
        results = {n: gguf_only(n, ctx) for n in names}
    else:
        results = {n: make_variant(n, VARIANTS[n], ctx) for n in names}
    args_line = "" if names == list(VARIANTS) else " --variants " + ",".join(names)
    args_line += " --no-gguf" if args.no_gguf else ""
    args_line += " --gguf-only" if args.gguf_only else ""
    write_manifest(versions, ctx, results, args_line)


if __name__ == "__main__":
    main()
