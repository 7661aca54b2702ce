#!/usr/bin/env python3
"""Golden fixtures for WhaleKernels' dequantize-to-f32 (Tests/WhaleKernelsTests/Fixtures/dequant/).

One command regenerates everything:

    python3 scripts/make-dequant-fixtures.py            # golden blocks + real-tensors.json
    python3 scripts/make-dequant-fixtures.py --no-real  # golden blocks only (no model files needed)

Writes, for each type, <TYPE>.raw (the stored bytes) and <TYPE>.f32 (the expected little-endian float32
output), FP8_BLOCK_SCALED.{weight,scale_inv,f32,json}, real-tensors.json, and MANIFEST.json (versions,
seed, sha256 of each file).

The reference is gguf-py's `gguf.quants.dequantize` (pinned below); F8_E4M3 comes from `ml_dtypes`
(float8_e4m3fn) cross-checked against a table derived by hand here. The block-scaled FP8 case follows
DeepSeek's `weight_dequant`: w[r][c] = float32(fp8[r][c]) * scale_inv[r // 128][c // 128] in float32.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import sys
from importlib.metadata import version
from pathlib import Path

import numpy as np

PINNED = {"gguf": "0.19.0", "numpy": "2.4.6", "ml_dtypes": "0.6.0"}
SEED = 20261123

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "Tests" / "WhaleKernelsTests" / "Fixtures" / "dequant"
MODELS = ["SmolLM2-135M-Instruct.Q4_1.gguf", "gemma-3-270m-q4_k_m.gguf"]

# Byte offsets of the float16 scale fields (d, dmin / m) inside one block, from ggml-common.h.
F16_FIELDS = {
    "Q4_0": [0],  # d, qs[16]
    "Q4_1": [0, 2],  # d, m, qs[16]
    "Q5_0": [0],  # d, qh[4], qs[16]
    "Q5_1": [0, 2],  # d, m, qh[4], qs[16]
    "Q8_0": [0],  # d, qs[32]
    "Q2_K": [80, 82],  # scales[16], qs[64], d, dmin
    "Q3_K": [108],  # hmask[32], qs[64], scales[12], d
    "Q4_K": [0, 2],  # d, dmin, scales[12], qs[128]
    "Q5_K": [0, 2],  # d, dmin, scales[12], qh[32], qs[128]
    "Q6_K": [208],  # ql[128], qh[64], scales[16] (int8), d
}
BLOCKS = {"Q4_0": 64, "Q4_1": 64, "Q5_0": 64, "Q5_1": 64, "Q8_0": 64,
          "Q2_K": 12, "Q3_K": 12, "Q4_K": 12, "Q5_K": 12, "Q6_K": 12}

# Special float16 scale bit patterns written into the last blocks of each type, one row per block:
# zero, negative zero, subnormals, negatives, the largest and smallest normals.
SPECIAL_SCALES = [
    (0x0000, 0x0000),
    (0x8000, 0x8000),
    (0x0001, 0x03FF),
    (0x83FF, 0x0200),
    (0xBC00, 0xC500),  # -1.0, -5.0
    (0x7BFF, 0x0400),  # 65504, 2^-14
]


def check_versions(allow_other: bool) -> dict[str, str]:
    found = {name: version(name) for name in PINNED}
    wrong = {k: v for k, v in found.items() if v != PINNED[k]}
    if wrong and not allow_other:
        sys.exit(f"pinned versions {PINNED}, found {found}; pip install "
                 + " ".join(f"{k}=={v}" for k, v in PINNED.items()) + " (or pass --allow-other-versions)")
    return found


def random_normal_f16(rng: np.random.Generator, n: int) -> np.ndarray:
    """Random finite normal float16 bit patterns of either sign (exponent 1...30)."""
    sign = rng.integers(0, 2, n, dtype=np.uint16) << 15
    exponent = rng.integers(1, 31, n, dtype=np.uint16) << 10
    mantissa = rng.integers(0, 1024, n, dtype=np.uint16)
    return sign | exponent | mantissa


def write(name: str, data: bytes, files: dict[str, dict]) -> None:
    (OUT / name).write_bytes(data)
    files[name] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def f32_bytes(values: np.ndarray) -> bytes:
    assert values.dtype == np.float32
    return values.astype("<f4", copy=False).tobytes()


def quantized_cases(rng: np.random.Generator, files: dict, cases: list) -> None:
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType
    from gguf.quants import dequantize

    for name, offsets in F16_FIELDS.items():
        qtype = GGMLQuantizationType[name]
        block_size, type_size = GGML_QUANT_SIZES[qtype]
        n_blocks = BLOCKS[name]
        blocks = rng.integers(0, 256, (n_blocks, type_size), dtype=np.uint8)
        for offset in offsets:
            blocks[:, offset:offset + 2] = random_normal_f16(rng, n_blocks).astype("<u2").view(np.uint8).reshape(-1, 2)
        for row, special in enumerate(SPECIAL_SCALES):
            block = n_blocks - len(SPECIAL_SCALES) + row
            for offset, bits in zip(offsets, special):
                blocks[block, offset:offset + 2] = np.array([bits], dtype="<u2").view(np.uint8)
        raw = blocks.reshape(-1)
        expected = dequantize(raw, qtype)
        assert expected.dtype == np.float32 and expected.size == n_blocks * block_size
        assert np.isfinite(expected).all(), name
        write(f"{name}.raw", raw.tobytes(), files)
        write(f"{name}.f32", f32_bytes(expected.reshape(-1)), files)
        cases.append({"type": name, "elements": int(expected.size), "blocks": n_blocks,
                      "special_scale_blocks": [n_blocks - len(SPECIAL_SCALES), n_blocks - 1]})


def float_cases(rng: np.random.Generator, files: dict, cases: list) -> None:
    from gguf import GGMLQuantizationType
    from gguf.quants import dequantize

    # F16: every bit pattern except NaN (exponent 31 with a nonzero mantissa); infinities stay.
    bits = np.arange(65536, dtype=np.uint32).astype(np.uint16)
    bits = bits[~(((bits & 0x7C00) == 0x7C00) & ((bits & 0x03FF) != 0))]
    raw = bits.astype("<u2").view(np.uint8)
    expected = dequantize(raw, GGMLQuantizationType.F16)
    write("F16.raw", raw.tobytes(), files)
    write("F16.f32", f32_bytes(expected), files)
    cases.append({"type": "F16", "elements": int(bits.size), "note": "all 65536 patterns except NaNs"})

    # BF16: a random sample plus the interesting patterns (zeros, subnormals, infinities, extremes).
    special = np.array([0x0000, 0x8000, 0x0001, 0x8001, 0x007F, 0x0080, 0x7F7F, 0xFF7F, 0x7F80, 0xFF80,
                        0x3F80, 0xBF80], dtype=np.uint16)
    sample = rng.integers(0, 65536, 8192 - special.size, dtype=np.uint32).astype(np.uint16)
    sample = np.where(((sample & 0x7F80) == 0x7F80) & ((sample & 0x007F) != 0), sample & 0xFF80, sample)
    bits = np.concatenate([special, sample.astype(np.uint16)])
    raw = bits.astype("<u2").view(np.uint8)
    expected = dequantize(raw, GGMLQuantizationType.BF16)
    write("BF16.raw", raw.tobytes(), files)
    write("BF16.f32", f32_bytes(expected.reshape(-1)), files)
    cases.append({"type": "BF16", "elements": int(bits.size), "note": "random sample, NaNs excluded"})

    # F32 is a copy: random bit patterns, NaN payloads included, must come back unchanged.
    bits = rng.integers(0, 2**32, 1024, dtype=np.uint64).astype(np.uint32)
    bits[:4] = [0x7FC00001, 0xFFBFFFFF, 0x7F800001, 0x80000000]
    raw = bits.astype("<u4").view(np.uint8)
    expected = dequantize(raw, GGMLQuantizationType.F32)
    assert (expected.view(np.uint32) == bits).all()
    write("F32.raw", raw.tobytes(), files)
    write("F32.f32", expected.astype("<f4", copy=False).tobytes(), files)
    cases.append({"type": "F32", "elements": int(bits.size), "note": "random bits incl. NaN payloads"})


def e4m3fn_by_hand(code: int) -> float:
    """float8_e4m3fn: 1 sign, 4 exponent (bias 7), 3 mantissa bits; no infinities; S.1111.111 is NaN."""
    sign = -1.0 if code & 0x80 else 1.0
    exponent = (code >> 3) & 0x0F
    mantissa = code & 0x07
    if exponent == 0x0F and mantissa == 0x07:
        return float("nan")
    if exponent == 0:
        return sign * mantissa * 2.0**-9
    return sign * (1 + mantissa / 8) * 2.0 ** (exponent - 7)


def fp8_cases(rng: np.random.Generator, files: dict, cases: list) -> None:
    import ml_dtypes

    codes = np.arange(256, dtype=np.uint32).astype(np.uint8)
    expected = codes.view(ml_dtypes.float8_e4m3fn).astype(np.float32)
    by_hand = np.array([e4m3fn_by_hand(c) for c in range(256)], dtype=np.float32)
    nan = np.isnan(by_hand)
    assert (np.isnan(expected) == nan).all() and (expected[~nan].view(np.uint32) == by_hand[~nan].view(np.uint32)).all()
    assert nan.sum() == 2 and nan[0x7F] and nan[0xFF]
    write("F8_E4M3.raw", codes.tobytes(), files)
    write("F8_E4M3.f32", f32_bytes(expected), files)
    cases.append({"type": "F8_E4M3", "elements": 256, "note": "all codes; NaN is 0x7FC00000 with the code's sign"})

    # DeepSeek block-scaled FP8: [rows, cols] e4m3fn weight, float32 scale_inv [ceil(rows/128), ceil(cols/128)].
    rows, cols, block = 200, 300, 128
    weight = rng.integers(0, 256, (rows, cols), dtype=np.uint32).astype(np.uint8)
    weight[weight & 0x7F == 0x7F] = 0x3C  # DeepSeek checkpoints hold no NaN codes
    scale_rows, scale_cols = -(-rows // block), -(-cols // block)
    scale_inv = (rng.standard_normal((scale_rows, scale_cols)) * 1e-3).astype(np.float32)
    scale_inv[0, 0] = np.float32(1.0)
    scale_inv[-1, -1] = np.float32(0.0)
    expanded = np.repeat(np.repeat(scale_inv, block, axis=0), block, axis=1)[:rows, :cols]
    expected = weight.view(ml_dtypes.float8_e4m3fn).astype(np.float32) * expanded
    assert expected.dtype == np.float32 and np.isfinite(expected).all()
    write("FP8_BLOCK_SCALED.weight", weight.tobytes(), files)
    write("FP8_BLOCK_SCALED.scale_inv", scale_inv.astype("<f4").tobytes(), files)
    write("FP8_BLOCK_SCALED.f32", f32_bytes(expected.reshape(-1)), files)
    shape = {"rows": rows, "cols": cols, "block_size": block, "scale_rows": scale_rows, "scale_cols": scale_cols}
    write("FP8_BLOCK_SCALED.json", (json.dumps(shape, indent=2) + "\n").encode(), files)
    cases.append({"type": "FP8_BLOCK_SCALED", **shape})


def checksum(values: np.ndarray) -> int:
    """sum over i of uint64(bits[i]) * uint64(2*i + 1), wrapping mod 2^64."""
    bits = values.reshape(-1).view(np.uint32).astype(np.uint64)
    weights = np.arange(bits.size, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    with np.errstate(over="ignore"):
        return int(np.sum(bits * weights, dtype=np.uint64))


def real_tensors(models_dir: Path, files: dict) -> None:
    from gguf import GGUFReader
    from gguf.quants import dequantize

    entries = []
    for model in MODELS:
        reader = GGUFReader(models_dir / model)
        base = reader.data.ctypes.data
        by_type: dict[str, list] = {}
        for tensor in reader.tensors:
            by_type.setdefault(tensor.tensor_type.name, []).append(tensor)
        for type_name, tensors in sorted(by_type.items()):
            tensors.sort(key=lambda t: (int(t.n_elements), t.name))
            small = [t for t in tensors if t.n_elements <= 3_000_000] or tensors[:1]
            chosen = [small[0]] + ([small[-1]] if small[-1].n_elements != small[0].n_elements else [])
            for tensor in chosen:
                # GGUFReader's ReaderTensor.data_offset is already absolute (it adds reader.data_offset);
                # check that against where the numpy view really points in the mapped file.
                offset = int(tensor.data_offset)
                assert tensor.data.ctypes.data - base == offset, tensor.name
                values = dequantize(tensor.data, tensor.tensor_type).astype(np.float32, copy=False).reshape(-1)
                assert values.size == int(tensor.n_elements)
                entries.append({
                    "model": model,
                    "tensor": tensor.name,
                    "type": type_name,
                    "offset": offset,
                    "offset_in_data_section": offset - int(reader.data_offset),
                    "elements": int(tensor.n_elements),
                    "bytes": int(tensor.n_bytes),
                    "first": [float(v) for v in values[:8]],
                    "first_bits": [int(b) for b in values[:8].view(np.uint32)],
                    "checksum": str(checksum(values)),
                })
    text = json.dumps({"checksum": "sum of uint64(bits[i]) * uint64(2*i+1) mod 2^64", "tensors": entries},
                      indent=2) + "\n"
    write("real-tensors.json", text.encode(), files)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models-dir", type=Path, default=ROOT / "models")
    parser.add_argument("--no-real", action="store_true", help="keep the existing real-tensors.json")
    parser.add_argument("--allow-other-versions", action="store_true")
    args = parser.parse_args()

    found = check_versions(args.allow_other_versions)
    OUT.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(SEED)
    files: dict[str, dict] = {}
    cases: list[dict] = []
    float_cases(rng, files, cases)
    quantized_cases(rng, files, cases)
    fp8_cases(rng, files, cases)
    if args.no_real:
        data = (OUT / "real-tensors.json").read_bytes()
        files["real-tensors.json"] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    else:
        real_tensors(args.models_dir, files)

    manifest = {
        "generator": "scripts/make-dequant-fixtures.py",
        "reference": "gguf.quants.dequantize (PyPI gguf); F8_E4M3 via ml_dtypes.float8_e4m3fn",
        "versions": {**found, "python": platform.python_version()},
        "seed": SEED,
        "cases": cases,
        "files": dict(sorted(files.items())),
    }
    (OUT / "MANIFEST.json").write_text(json.dumps(manifest, indent=2) + "\n")
    total = sum(f["bytes"] for f in files.values())
    print(f"wrote {len(files)} files, {total} bytes, to {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
