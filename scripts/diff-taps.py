#!/usr/bin/env python3
"""Compares two tap dumps (BlueWhale `whale score --dump-taps`, scripts/taps/llama-dump-taps,
scripts/taps/dump-transformers-taps.py) and names the first tap that diverges.

    python3 scripts/diff-taps.py A_DIR B_DIR [--tolerance 1e-3] [--relative] [--llama-permute-qk HEAD_DIM]

Walks A's taps in A's order (the order of A's forward pass) and compares each with B's tap of the same
(name, layer). One line per tap: name, layer, shape, max |Δ|, max |ref| (max |B|, the reference's
magnitude), the relative error max |Δ| / max |ref|, and a mark: "ok", "DIVERGES", "MISSING in B" or "SHAPE MISMATCH".
Shapes must match after squeezing size-1 dimensions. expert_ids / expert_weights rows are compared as sets:
each row's (id, weight) pairs are sorted by expert id on both sides first, since engines order the top-k
differently (a row whose id sets differ is reported as different ids).

A tap diverges when max |Δ| > tolerance (or, with --relative, when max |Δ| / max |ref| > tolerance); a shape
mismatch counts as a divergence, a missing tap does not. The last line is "first divergence: NAME layer L
(max |Δ| X > TOL)" or "no divergence". Exit code 0 when nothing diverges, 1 otherwise, 2 on bad input.

--llama-permute-qk HEAD_DIM (or HEADS,KV_HEADS,HEAD_DIM): llama.cpp's converter permutes the Q and K rows of
Llama-family checkpoints so its RoPE can rotate adjacent pairs; q / k taps computed from such a GGUF hold,
per head, element 2i+s where the checkpoint (and transformers) holds element s*HEAD_DIM/2+i. The option maps
the q / k taps of one side (--permute-side, default b: B is the transformers / safetensors side, A the GGUF
side) into the GGUF layout before comparing. DeepSeek GGUFs are not permuted (their rope part is already
interleaved in the checkpoint); do not use it there.

numpy only.
"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np


def fail(message: str, code: int = 2) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(code)


def load_manifest(d: Path) -> dict:
    path = d / "manifest.json"
    if not path.is_file():
        fail(f"{path} not found (expected a tap dump directory)")
    try:
        m = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        fail(f"{path}: not valid JSON ({e})")
    if not isinstance(m.get("taps"), list):
        fail(f"{path}: no 'taps' list")
    for t in m["taps"]:
        if not isinstance(t, dict) or "name" not in t or "file" not in t:
            fail(f"{path}: every tap needs 'name' and 'file' (got {t!r})")
    return m


def load_tap(d: Path, tap: dict) -> np.ndarray:
    path = d / tap["file"]
    if not path.is_file():
        fail(f"{path} (tap {tap['name']} layer {tap.get('layer')}) not found")
    try:
        a = np.load(path, allow_pickle=False)
    except Exception as e:  # noqa: BLE001 - numpy raises several kinds
        fail(f"{path}: cannot read as .npy ({e})")
    return a.astype(np.float64)


def parse_permute(text: str) -> tuple:
    """HEAD_DIM or HEADS,KV_HEADS,HEAD_DIM -> (heads or None, kv_heads or None, head_dim)."""
    try:
        parts = [int(x) for x in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HEAD_DIM or HEADS,KV_HEADS,HEAD_DIM, got {text!r}")
    if len(parts) not in (1, 3) or min(parts) <= 0 or parts[-1] % 2:
        raise argparse.ArgumentTypeError(f"expected HEAD_DIM (even) or HEADS,KV_HEADS,HEAD_DIM, got {text!r}")
    return (parts[0], parts[1], parts[2]) if len(parts) == 3 else (None, None, parts[0])


def to_gguf_qk(a: np.ndarray, head_dim: int, heads: int = None) -> np.ndarray:
    """Checkpoint (rotate-half) layout -> llama.cpp's GGUF layout, per head: out[2i+s] = in[s*D/2+i]."""
    if a.shape[-1] % head_dim:
        raise ValueError(f"last dimension {a.shape[-1]} is not a multiple of head_dim {head_dim}")
    if heads is not None and a.shape[-1] != heads * head_dim:
        raise ValueError(f"last dimension {a.shape[-1]} is not {heads} heads x {head_dim}")
    shape = a.shape
    return a.reshape(*shape[:-1], -1, 2, head_dim // 2).swapaxes(-1, -2).reshape(shape)


def sorted_by_id(ids: np.ndarray, weights: np.ndarray = None):
    """Sorts each row's entries by expert id; returns (ids, weights) sorted the same way."""
    order = np.argsort(ids, axis=-1, kind="stable")
    sids = np.take_along_axis(ids, order, axis=-1)
    sw = None if weights is None else np.take_along_axis(weights, order, axis=-1)
    return sids, sw


def fmt(x: float) -> str:
    return f"{x:.3e}"


def short(x: float) -> str:
    """1.2e-03 -> 1.2e-3."""
    mant, _, exp = f"{x:.1e}".partition("e")
    return f"{mant}e{int(exp)}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("a", type=Path, help="tap dump to check (its order is the walk order)")
    ap.add_argument("b", type=Path, help="reference tap dump")
    ap.add_argument("--tolerance", default="1e-3", help="divergence threshold (default 1e-3)")
    ap.add_argument("--relative", action="store_true",
                    help="compare max |Δ| / max |ref| (ref = B) with the tolerance instead of max |Δ|")
    ap.add_argument("--llama-permute-qk", type=parse_permute, metavar="HEAD_DIM|HEADS,KV_HEADS,HEAD_DIM",
                    help="map one side's q / k taps from the checkpoint's rotate-half layout to llama.cpp's "
                         "permuted GGUF layout before comparing (Llama-family GGUFs)")
    ap.add_argument("--permute-side", choices=("a", "b"), default="b",
                    help="the side in checkpoint layout that --llama-permute-qk converts (default b)")
    args = ap.parse_args()
    tol_text = args.tolerance
    try:
        args.tolerance = float(tol_text)
    except ValueError:
        fail(f"--tolerance: {tol_text!r} is not a number")
    if not args.tolerance >= 0:
        fail("--tolerance must be >= 0")

    ma, mb = load_manifest(args.a), load_manifest(args.b)
    ta, tb = ma.get("tokens"), mb.get("tokens")
    if ta is not None and tb is not None and list(ta) != list(tb):
        print(f"warning: the dumps ran different tokens (A {ta[:8]}..., B {tb[:8]}...)", file=sys.stderr)
    b_taps = {(t["name"], t.get("layer")): t for t in mb["taps"]}
    a_ids_by_layer = {t.get("layer"): t for t in ma["taps"] if t["name"] == "expert_ids"}
    b_ids_by_layer = {t.get("layer"): t for t in mb["taps"] if t["name"] == "expert_ids"}

    print(f"A: {args.a} ({ma.get('source', '?')})")
    print(f"B: {args.b} ({mb.get('source', '?')})")
    measure = "max |Δ| / max |ref|" if args.relative else "max |Δ|"
    print(f"tolerance {tol_text} on {measure}")
    print(f"{'tap':<16} {'layer':>5}  {'shape':<16} {'max |Δ|':>10} {'max |ref|':>10} {'rel':>10}  result")

    first = None
    n_missing = n_bad = 0
    for tap in ma["taps"]:
        name, layer = tap["name"], tap.get("layer")
        lay = "-" if layer is None else str(layer)
        other = b_taps.get((name, layer))
        if other is None:
            n_missing += 1
            print(f"{name:<16} {lay:>5}  {'':<16} {'':>10} {'':>10} {'':>10}  MISSING in B")
            continue
        a, b = load_tap(args.a, tap), load_tap(args.b, other)
        shape = "x".join(str(s) for s in a.shape)
        a_sq, b_sq = np.squeeze(a), np.squeeze(b)
        if a_sq.shape != b_sq.shape:
            n_bad += 1
            note = f"SHAPE MISMATCH (A {list(a.shape)}, B {list(b.shape)})"
            print(f"{name:<16} {lay:>5}  {shape:<16} {'':>10} {'':>10} {'':>10}  {note}")
            if first is None:
                first = (name, layer, note)
            continue
        a, b = a_sq, b_sq
        note = ""
        if args.llama_permute_qk and name in ("q", "k"):
            heads, kv_heads, head_dim = args.llama_permute_qk
            n = heads if name == "q" else kv_heads
            try:
                if args.permute_side == "a":
                    a = to_gguf_qk(a, head_dim, n)
                else:
                    b = to_gguf_qk(b, head_dim, n)
                note = " (q/k permuted)"
            except ValueError as e:
                fail(f"--llama-permute-qk on {name} layer {lay}: {e}")
        if name in ("expert_ids", "expert_weights"):
            if name == "expert_ids":
                ia, ib = a, b
            else:
                pa, pb = a_ids_by_layer.get(layer), b_ids_by_layer.get(layer)
                if pa is None or pb is None:
                    fail(f"expert_weights layer {lay} needs expert_ids of the same layer in both dumps")
                ia, ib = np.squeeze(load_tap(args.a, pa)), np.squeeze(load_tap(args.b, pb))
                if ia.shape != a.shape or ib.shape != b.shape:
                    fail(f"expert_weights layer {lay}: shape differs from its expert_ids")
            ia = ia.reshape(-1, ia.shape[-1]) if ia.ndim else ia.reshape(1, 1)
            ib = ib.reshape(-1, ib.shape[-1]) if ib.ndim else ib.reshape(1, 1)
            a2, b2 = a.reshape(ia.shape), b.reshape(ib.shape)
            ia_s, a2 = sorted_by_id(ia, a2)
            ib_s, b2 = sorted_by_id(ib, b2)
            rows = np.nonzero((ia_s != ib_s).any(axis=-1))[0]
            if len(rows):
                note += f" (different expert ids in {len(rows)} row(s), first row {rows[0]})"
            a, b = a2, b2
        d = np.abs(a - b)
        worst = float(np.nanmax(d)) if d.size else 0.0
        if d.size and np.isnan(d).any():
            worst = float("inf")
        ref = float(np.abs(b).max()) if b.size else 0.0
        rel = worst / ref if ref > 0 else (0.0 if worst == 0 else float("inf"))
        value = rel if args.relative else worst
        bad = value > args.tolerance
        if bad:
            n_bad += 1
            if first is None:
                first = (name, layer, f"{measure} {short(value)} > {tol_text}")
            if name in ("q", "k") and not args.llama_permute_qk:
                hint = permute_hint(a, b, args.tolerance, args.relative)
                if hint:
                    note += f" (matches with --llama-permute-qk {hint})"
        print(f"{name:<16} {lay:>5}  {shape:<16} {fmt(worst):>10} {fmt(ref):>10} {fmt(rel):>10}  "
              f"{'DIVERGES' if bad else 'ok'}{note}")

    extra = [t for t in mb["taps"] if (t["name"], t.get("layer")) not in {(x["name"], x.get("layer")) for x in ma["taps"]}]
    print(f"{len(ma['taps'])} taps in A, {n_missing} missing in B, {len(extra)} only in B, {n_bad} diverge")
    if first is None:
        print("no divergence")
        sys.exit(0)
    name, layer, why = first
    print(f"first divergence: {name}{'' if layer is None else f' layer {layer}'} ({why})")
    sys.exit(1)


def permute_hint(a: np.ndarray, b: np.ndarray, tol: float, relative: bool):
    """A head_dim for which one side's q/k in the GGUF layout matches the other, or None."""
    width = a.shape[-1]
    ref = float(np.abs(b).max()) or 1.0
    for d in range(2, width + 1, 2):
        if width % d:
            continue
        for side, x, y in (("b", to_gguf_qk(b, d), a), ("a", to_gguf_qk(a, d), b)):
            worst = float(np.abs(x - y).max())
            if (worst / ref if relative else worst) <= tol:
                return f"{d}" + (" --permute-side a" if side == "a" else "")
    return None


if __name__ == "__main__":
    main()
