#!/usr/bin/env python3
"""gen_bench_model.py: a Llama-shaped GGUF model with random weights, for
timing whole-model prefill and decode at shapes and weight types no model at
hand has (SmolLM2-135M's width, 576, is no multiple of the K-quants' 256).

Usage: gen_bench_model.py OUT.gguf [--type T] [--dim D] [--layers L] [--ff F]
                          [--heads H] [--kv KV] [--tokenizer MODEL.gguf]

T: q8_0, q4_0, q4_K, q6_K or q4_K_M (Q4_K, with Q6_K for the output matrix
and for attn_v and ffn_down in every other layer: about what llama.cpp's
Q4_K_M mix gives). Defaults: TinyLlama-1.1B's shape (2048 wide, 22 layers,
feed-forward 5632, 32 heads, 4 KV heads). The tokenizer (and so the
vocabulary size) is copied from --tokenizer (default: the project's
SmolLM2 model), so `opg run -p TEXT` works on it.

Weights are random blocks with sane scales (the PyPI gguf package has no
K-quant quantizer, and values do not change the time a kernel takes): the
text it writes is noise. Timings only; no reference output.
"""
import argparse
import sys

try:
    import numpy as np
    import gguf
    from gguf import GGMLQuantizationType as Q
except ImportError as e:  # exit 77: ctest's "skipped" (bench_model_gen)
    print(f"skipped: gen_bench_model.py needs numpy and the PyPI gguf package ({e})", file=sys.stderr)
    sys.exit(77)

# block bytes, and byte offsets of the f16 scales to set (the rest random)
BLOCKS = {
    Q.Q8_0: (34, 32, [0]),
    Q.Q4_0: (18, 32, [0]),
    Q.Q4_K: (144, 256, [0, 2]),
    Q.Q6_K: (210, 256, [208]),
}
TYPES = {"q8_0": Q.Q8_0, "q4_0": Q.Q4_0, "q4_K": Q.Q4_K, "q6_K": Q.Q6_K, "q4_K_M": None}


def random_blocks(rng, rows, cols, qt, scale):
    size, per, scale_offs = BLOCKS[qt]
    if cols % per:
        sys.exit(f"gen_bench_model: {cols} columns is no multiple of {qt.name}'s block of {per}")
    nb = rows * cols // per
    blk = rng.integers(0, 256, size=(nb, size), dtype=np.uint8)
    for off in scale_offs:
        d = (np.abs(rng.standard_normal(nb)) * scale / 64 + scale / 512).astype(np.float16)
        blk[:, off:off + 2] = d.view(np.uint8).reshape(nb, 2)
    return blk.reshape(rows, cols // per * size)


def copy_tokenizer(w, src):
    try:
        r = gguf.GGUFReader(src)
    except (OSError, ValueError) as e:
        sys.exit(f"gen_bench_model: --tokenizer {src}: {e}")
    n_vocab = None
    for name, f in r.fields.items():
        if not name.startswith("tokenizer."):
            continue
        v = f.contents()
        t = f.types[0]
        if t == gguf.GGUFValueType.ARRAY:
            w.add_array(name, v)
            if name == "tokenizer.ggml.tokens":
                n_vocab = len(v)
        elif t == gguf.GGUFValueType.STRING:
            w.add_string(name, v)
        elif t == gguf.GGUFValueType.BOOL:
            w.add_bool(name, v)
        else:
            w.add_uint32(name, int(v))
    if not n_vocab:
        sys.exit(f"gen_bench_model: {src} has no tokenizer.ggml.tokens")
    return n_vocab


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out")
    ap.add_argument("--type", default="q4_K_M", choices=TYPES)
    ap.add_argument("--dim", type=int, default=2048)
    ap.add_argument("--layers", type=int, default=22)
    ap.add_argument("--ff", type=int, default=5632)
    ap.add_argument("--heads", type=int, default=32)
    ap.add_argument("--kv", type=int, default=4)
    ap.add_argument("--tokenizer", default="models/SmolLM2-135M-Instruct.Q4_1.gguf")
    a = ap.parse_args()
    if a.dim % a.heads or a.heads % a.kv:
        sys.exit("gen_bench_model: --dim must be a multiple of --heads, --heads of --kv")
    base = TYPES[a.type] or Q.Q4_K
    strong = Q.Q6_K if a.type == "q4_K_M" else base
    head_dim = a.dim // a.heads
    rng = np.random.default_rng(1)
    w = gguf.GGUFWriter(a.out, arch="llama")
    w.add_name(f"opg bench {a.type} {a.dim}x{a.layers}")
    n_vocab = copy_tokenizer(w, a.tokenizer)
    w.add_block_count(a.layers)
    w.add_context_length(2048)
    w.add_embedding_length(a.dim)
    w.add_feed_forward_length(a.ff)
    w.add_head_count(a.heads)
    w.add_head_count_kv(a.kv)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_freq_base(10000.0)

    def add(name, rows, cols, qt, scale):
        w.add_tensor(name, random_blocks(rng, rows, cols, qt, scale), raw_dtype=qt)

    def norm(name):
        w.add_tensor(name, (1.0 + 0.1 * rng.standard_normal(a.dim)).astype(np.float32))

    add("token_embd.weight", n_vocab, a.dim, base, 1.0)
    norm("output_norm.weight")
    add("output.weight", n_vocab, a.dim, strong, 0.1)
    for l in range(a.layers):
        p = f"blk.{l}."
        more = strong if l % 2 == 0 else base
        norm(p + "attn_norm.weight")
        add(p + "attn_q.weight", a.dim, a.dim, base, 0.08)
        add(p + "attn_k.weight", a.kv * head_dim, a.dim, base, 0.08)
        add(p + "attn_v.weight", a.kv * head_dim, a.dim, more, 0.08)
        add(p + "attn_output.weight", a.dim, a.dim, base, 0.05)
        norm(p + "ffn_norm.weight")
        add(p + "ffn_gate.weight", a.ff, a.dim, base, 0.08)
        add(p + "ffn_up.weight", a.ff, a.dim, base, 0.08)
        add(p + "ffn_down.weight", a.dim, a.ff, more, 0.05)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


if __name__ == "__main__":
    main()
