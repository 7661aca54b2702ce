#!/usr/bin/env python3
"""Writes the GGUF / safetensors fixtures for Tests/WhaleFormatsTests and the reference readings of them.

Every reference value comes from the PyPI package `gguf` (its GGUFWriter writes the files, its
GGUFReader reads them back into the expected JSON) and `safetensors`; BlueWhale's tests then read the
same files and must agree.

    pip install gguf==0.19.0 safetensors==0.8.0 numpy==2.4.6
    python3 scripts/make-format-fixtures.py            # small fixtures (committed)
    python3 scripts/make-format-fixtures.py --real     # also the readings of models/*.gguf (fetch them first)

Pinned versions and the seed are recorded in Fixtures/MANIFEST.json with each file's sha256.
"""
import argparse
import hashlib
import json
import os
import struct
import sys
from pathlib import Path

import numpy as np
import gguf
import safetensors
from safetensors.numpy import load_file, save_file

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "Tests" / "WhaleFormatsTests" / "Fixtures"
SEED = 20261123
EXPECTED_VERSIONS = {"gguf": "0.19.0", "safetensors": "0.8.0"}


def gguf_version():
    from importlib.metadata import version
    return version("gguf")


def value_json(field: gguf.ReaderField):
    """The field's value as gguf-py reads it, with its type chain (e.g. ["array", "array", "i32"]).

    gguf-py's `contents()` flattens arrays of arrays into one list; the Swift test flattens likewise."""
    types = [t.name.lower() for t in field.types]
    value = field.contents()
    if isinstance(value, float) and (value != value):
        value = "nan"
    return {"types": types, "value": value}


def read_gguf(path: Path, with_values=True):
    reader = gguf.GGUFReader(path)
    fields = []
    for key, field in reader.fields.items():
        if key.startswith("GGUF."):
            continue
        entry = {"key": key}
        if with_values:
            entry.update(value_json(field))
        fields.append(entry)
    tensors = []
    for t in reader.tensors:
        tensors.append({
            "name": t.name,
            "type": t.tensor_type.name,
            # gguf-py lists ne (innermost first); BlueWhale lists outermost first.
            "shape": [int(x) for x in reversed(t.shape.tolist())],
            "offset": int(t.data_offset),  # absolute in the file (gguf-py adds the data section start)
            "bytes": int(t.n_bytes),
            "elements": int(t.n_elements),
        })
    return {
        "version": int(reader.fields["GGUF.version"].contents()),
        "alignment": int(reader.alignment),
        "data_offset": int(reader.data_offset),
        "fields": fields,
        "tensors": tensors,
    }


def q8_0_bytes(rng, rows, cols):
    blocks = rows * cols // 32
    raw = bytearray()
    for _ in range(blocks):
        raw += np.float16(rng.uniform(0.001, 0.1)).tobytes()
        raw += rng.integers(-127, 128, 32, dtype=np.int8).tobytes()
    return np.frombuffer(bytes(raw), dtype=np.uint8).reshape(rows, cols // 32 * 34)


def write_gguf_fixtures(rng):
    out = OUT / "gguf"
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.gguf"):
        old.unlink()

    # 1. Every metadata value type, arrays of every type, arrays of arrays, a custom alignment and tensors
    #    of several types.
    path = out / "all-types.gguf"
    w = gguf.GGUFWriter(path, "llama")
    w.add_custom_alignment(64)
    w.add_name("all types")
    w.add_uint8("test.u8", 200)
    w.add_int8("test.i8", -100)
    w.add_uint16("test.u16", 60000)
    w.add_int16("test.i16", -30000)
    w.add_uint32("test.u32", 4000000000)
    w.add_int32("test.i32", -2000000000)
    w.add_float32("test.f32", 0.15625)
    w.add_bool("test.bool", True)
    w.add_string("test.string", "héllo, 世界 🐋\n")
    w.add_uint64("test.u64", 2**63 + 5)
    w.add_int64("test.i64", -(2**62))
    w.add_float64("test.f64", -1.0e300)
    w.add_array("test.array.i32", [1, -2, 3])
    w.add_array("test.array.f32", [0.5, -1.25])
    w.add_array("test.array.string", ["a", "", "ü"])
    w.add_array("test.array.bool", [True, False])
    w.add_array("test.array.empty", [])
    w.add_array("test.array.nested", [[1, 2], [3]])
    w.add_array("test.array.nested_strings", [["x", "y"], ["z"]])
    w.add_key_value("test.array.u8", [1, 2, 255], gguf.GGUFValueType.ARRAY, sub_type=gguf.GGUFValueType.UINT8)
    w.add_key_value("test.array.i64", [-(2**40), 7], gguf.GGUFValueType.ARRAY, sub_type=gguf.GGUFValueType.INT64)
    w.add_key_value("test.array.f64", [1.5, -2.0], gguf.GGUFValueType.ARRAY, sub_type=gguf.GGUFValueType.FLOAT64)
    w.add_context_length(4096)
    w.add_tensor("f32.weight", rng.standard_normal((3, 5)).astype(np.float32))
    w.add_tensor("f16.weight", rng.standard_normal((2, 32)).astype(np.float16))
    w.add_tensor("q8_0.weight", q8_0_bytes(rng, 2, 64), raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    w.add_tensor("vector", rng.standard_normal(7).astype(np.float32))
    w.add_tensor("cube", rng.standard_normal((2, 3, 4)).astype(np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()

    # 2. A split set: five tensors, two per shard → NAME-0000{1,2,3}-of-00003.gguf.
    w = gguf.GGUFWriter(out / "split.gguf", "llama", split_max_tensors=2)
    w.add_name("split")
    w.add_context_length(128)
    for i in range(5):
        w.add_tensor(f"t{i}", (np.arange(8 * (i + 1), dtype=np.float32) + i).reshape(i + 1, 8))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()

    # 3. A vocab-only file: metadata, no tensors.
    w = gguf.GGUFWriter(out / "no-tensors.gguf", "llama")
    w.add_tokenizer_model("gpt2")
    w.add_token_list(["a", "b", "ab"])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()

    expected = {}
    for file in sorted(out.glob("*.gguf")):
        expected[file.name] = read_gguf(file)
    (out / "expected.json").write_text(json.dumps(expected, indent=1, ensure_ascii=False, default=str) + "\n")


def write_safetensors(path: Path, tensors: dict, metadata=None):
    """Writes a safetensors file by the spec (header padded with spaces to 8 bytes), for dtypes numpy lacks."""
    header = {}
    offset = 0
    blobs = []
    for name, (dtype, shape, data) in tensors.items():
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(data)
    if metadata:
        header["__metadata__"] = metadata
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def bf16_bytes(array):
    bits = np.asarray(array, dtype=np.float32).view(np.uint32)
    return ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16).tobytes()


def write_safetensors_fixtures(rng):
    base = OUT / "safetensors"
    # Single file, llama config, tokenizer_config with a chat template.
    d = base / "llama-single"
    d.mkdir(parents=True, exist_ok=True)
    save_file({
        "model.embed_tokens.weight": rng.standard_normal((16, 8)).astype(np.float32),
        "model.norm.weight": np.ones(8, dtype=np.float16),
        "lm_head.weight": rng.standard_normal((16, 8)).astype(np.float32),
    }, str(d / "model.safetensors"), metadata={"format": "pt"})
    (d / "config.json").write_text(json.dumps({
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 16, "hidden_size": 8,
        "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1,
        "max_position_embeddings": 256, "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": False,
        "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                         "original_max_position_embeddings": 128},
        "bos_token_id": 1, "eos_token_id": [2, 3], "torch_dtype": "float32"}, indent=1))
    (d / "generation_config.json").write_text(json.dumps({"temperature": 0.6, "top_p": 0.95, "eos_token_id": 2}))
    (d / "tokenizer_config.json").write_text(json.dumps({"chat_template": "{{ messages }}"}))

    # Sharded via model.safetensors.index.json, qwen2 config, BF16 weights.
    d = base / "qwen2-sharded"
    d.mkdir(parents=True, exist_ok=True)
    a = rng.standard_normal((4, 6)).astype(np.float32)
    b = rng.standard_normal((6,)).astype(np.float32)
    write_safetensors(d / "model-00001-of-00002.safetensors", {"a.weight": ("BF16", a.shape, bf16_bytes(a))})
    write_safetensors(d / "model-00002-of-00002.safetensors", {"b.bias": ("BF16", b.shape, bf16_bytes(b)),
                                                                "c.weight": ("F32", (2, 2), np.eye(2, dtype=np.float32).tobytes())})
    (d / "model.safetensors.index.json").write_text(json.dumps({
        "metadata": {"total_size": 4 * 6 * 2 + 6 * 2 + 16},
        "weight_map": {"a.weight": "model-00001-of-00002.safetensors", "b.bias": "model-00002-of-00002.safetensors",
                       "c.weight": "model-00002-of-00002.safetensors"}}, indent=1))
    (d / "config.json").write_text(json.dumps({
        "model_type": "qwen2", "vocab_size": 4, "hidden_size": 6, "intermediate_size": 12, "num_hidden_layers": 1,
        "num_attention_heads": 2, "num_key_value_heads": 2, "max_position_embeddings": 64, "tie_word_embeddings": True}))

    # DeepSeek-V3-style FP8 with 128×128 weight_scale_inv blocks.
    d = base / "deepseek-fp8"
    d.mkdir(parents=True, exist_ok=True)
    rows, cols = 200, 300
    codes = rng.integers(0, 256, rows * cols, dtype=np.uint8)
    codes[(codes & 0x7F) == 0x7F] = 0x3C  # no NaN codes in weights
    scales = rng.uniform(0.5, 2.0, (2, 3)).astype(np.float32)
    write_safetensors(d / "model.safetensors", {
        "model.layers.0.mlp.gate_proj.weight": ("F8_E4M3", (rows, cols), codes.tobytes()),
        "model.layers.0.mlp.gate_proj.weight_scale_inv": ("F32", (2, 3), scales.tobytes()),
        "model.norm.weight": ("BF16", (8,), bf16_bytes(np.ones(8))),
    })
    (d / "config.json").write_text(json.dumps({
        "model_type": "deepseek_v3", "vocab_size": 32, "hidden_size": 8, "intermediate_size": 300,
        "moe_intermediate_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 2,
        "max_position_embeddings": 163840, "q_lora_rank": None, "kv_lora_rank": 4, "qk_nope_head_dim": 4,
        "qk_rope_head_dim": 2, "v_head_dim": 4, "n_routed_experts": 4, "n_shared_experts": 1,
        "num_experts_per_tok": 2, "first_k_dense_replace": 1, "n_group": 2, "topk_group": 1,
        "routed_scaling_factor": 2.5, "num_nextn_predict_layers": 1,
        "rope_scaling": {"type": "yarn", "factor": 40, "original_max_position_embeddings": 4096, "beta_fast": 32,
                         "beta_slow": 1, "mscale": 1.0, "mscale_all_dim": 1.0},
        "quantization_config": {"quant_method": "fp8", "fmt": "e4m3", "weight_block_size": [128, 128],
                                "activation_scheme": "dynamic"}}, indent=1))

    # Reference readings: safetensors' own parser for the header of every file.
    expected = {}
    for file in sorted(base.rglob("*.safetensors")):
        with open(file, "rb") as f:
            n = struct.unpack("<Q", f.read(8))[0]
            header = json.loads(f.read(n))
        header.pop("__metadata__", None)
        expected[str(file.relative_to(base))] = {
            name: {"dtype": v["dtype"], "shape": v["shape"], "offset": 8 + n + v["data_offsets"][0],
                   "bytes": v["data_offsets"][1] - v["data_offsets"][0]}
            for name, v in header.items()}
    # The library must accept what we wrote (F32/F16 only: numpy has no bf16/fp8).
    assert set(load_file(str(base / "llama-single" / "model.safetensors"))) == set(expected["llama-single/model.safetensors"])
    (base / "expected.json").write_text(json.dumps(expected, indent=1, sort_keys=True) + "\n")


def write_real_model_readings():
    """Figures `whale inspect` must print for the real models, read by gguf-py."""
    out = {}
    for name in ["SmolLM2-135M-Instruct.Q4_1.gguf", "gemma-3-270m-q4_k_m.gguf"]:
        path = ROOT / "models" / name
        reader = gguf.GGUFReader(path)
        arch = reader.fields["general.architecture"].contents()
        mix = {}
        for t in reader.tensors:
            m = mix.setdefault(t.tensor_type.name, {"tensors": 0, "elements": 0, "bytes": 0})
            m["tensors"] += 1
            m["elements"] += int(t.n_elements)
            m["bytes"] += int(t.n_bytes)
        tensors = read_gguf(path, with_values=False)["tensors"]
        f = reader.fields
        out[name] = {
            "architecture": arch,
            "name": f["general.name"].contents() if "general.name" in f else None,
            "version": int(f["GGUF.version"].contents()),
            "file_size": os.path.getsize(path),
            "parameters": sum(int(t.n_elements) for t in reader.tensors),
            "tensor_count": len(reader.tensors),
            "metadata_count": len([k for k in f if not k.startswith("GGUF.")]),
            "context_length": int(f[f"{arch}.context_length"].contents()),
            "vocab_size": len(f["tokenizer.ggml.tokens"].data),
            "tokenizer": f["tokenizer.ggml.model"].contents(),
            "pre_tokenizer": f["tokenizer.ggml.pre"].contents() if "tokenizer.ggml.pre" in f else None,
            "chat_template": "tokenizer.chat_template" in f,
            "data_offset": int(reader.data_offset),
            "weight_types": mix,
            "tensors_sample": tensors[:3] + tensors[-3:],
        }
    (OUT / "real-models.json").write_text(json.dumps(out, indent=1) + "\n")


def write_manifest():
    files = {}
    for file in sorted(OUT.rglob("*")):
        if file.is_file() and file.name != "MANIFEST.json":
            files[str(file.relative_to(OUT))] = hashlib.sha256(file.read_bytes()).hexdigest()
    manifest = {"script": "scripts/make-format-fixtures.py", "seed": SEED,
                "versions": {"gguf": gguf_version(), "safetensors": safetensors.__version__, "numpy": np.__version__},
                "files": files}
    (OUT / "MANIFEST.json").write_text(json.dumps(manifest, indent=1) + "\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--real", action="store_true", help="also read models/*.gguf (run scripts/fetch-models.sh)")
    args = parser.parse_args()
    if gguf_version() != EXPECTED_VERSIONS["gguf"] or safetensors.__version__ != EXPECTED_VERSIONS["safetensors"]:
        sys.exit(f"pin versions first: pip install gguf=={EXPECTED_VERSIONS['gguf']} safetensors=={EXPECTED_VERSIONS['safetensors']}")
    rng = np.random.default_rng(SEED)
    OUT.mkdir(parents=True, exist_ok=True)
    write_gguf_fixtures(rng)
    write_safetensors_fixtures(rng)
    if args.real:
        write_real_model_readings()
    write_manifest()


if __name__ == "__main__":
    main()
