#!/usr/bin/env python3
# A GGUF with every tensor dequantized to F32 (what `llama-quantize --allow-requantize IN OUT F32` writes): the
# float base of a quantized file for `whale perplexity --kl-divergence-base`. Needs PyPI gguf and numpy.
# Usage: scripts/make-f32-gguf.py IN.gguf OUT.gguf
import sys, numpy as np, gguf
src, dst = sys.argv[1:]
r = gguf.GGUFReader(src)
arch = r.fields["general.architecture"].contents()
w = gguf.GGUFWriter(dst, arch)
for name, field in r.fields.items():
    if name.startswith("GGUF.") or name == "general.architecture": continue
    t = field.types[0]
    if t == gguf.GGUFValueType.ARRAY:
        w.add_key_value(name, field.contents(), t, sub_type=field.types[-1])
    else:
        w.add_key_value(name, field.contents(), t)
for t in r.tensors:
    data = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32)
    w.add_tensor(t.name, data.reshape([int(x) for x in reversed(t.shape)]) if data.ndim == 1 and len(t.shape) > 1 else data)
w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()
