#!/usr/bin/env python3
"""gen_tiny_models.py: tiny Llama-family GGUF models written with the PyPI
`gguf` package (independently of opg's loader), and the logits of an
independent float64 numpy forward pass over a fixed token sequence.

Usage: gen_tiny_models.py OUT_DIR
Writes, per variant V:
  OUT_DIR/tiny-V.gguf         the model
  OUT_DIR/tiny-V.ref          reference: magic b"OPGREF01", u32 T, u32 n_vocab,
                              T x i32 tokens, T x n_vocab f64 logits (little-endian)
Variants: every weight type (f32 f16 bf16 q8_0 q4_0 q4_1 q4_K q6_K) for the
llama architecture (GQA, separate output matrix), plus qwen2-f32 (QKV bias,
NeoX RoPE), tied-f32 and tied-q8_0 (output tied to token_embd; the cpu
backend packs the Q8_0 one for its matmul), linear-f32 (linear RoPE
scaling, factor 4), llama3-f32 (Llama 3 style rope_freqs.weight divisors) and
mixed (a weight type per tensor, as real files mix them: f16 embedding,
Q6_K output, and the layers' matrices over Q4_K, Q8_0, Q6_K, Q4_0, Q4_1,
BF16 in an order that turns from layer to layer). Also writes the
broken models of write_broken_variants() (no .ref), which opg must refuse.

The reference uses the dequantized weights (gguf.quants.dequantize) in float64
with plain numpy: RMSNorm, RoPE (adjacent pairs for llama, halves for qwen2),
causal softmax attention with GQA, SwiGLU. Activations are not quantized in
the reference, so for quantized weights the comparison bound includes opg's
int8 activation quantization (docs/determinism.md section 5).
"""
import struct
import sys

import numpy as np
import gguf
from gguf import GGMLQuantizationType as Q

N_VOCAB, N_EMBD, N_FF, N_HEAD, N_KV, N_LAYER = 96, 256, 512, 4, 2, 2
HEAD_DIM = N_EMBD // N_HEAD
EPS = 1e-5
ROPE_BASE = 10000.0
TOKENS = [1, 5, 17, 42, 3, 88, 60, 7, 7, 95, 0, 33, 64, 12, 21, 50, 2, 71, 9, 30]


def f16_round(a):
    return a.astype(np.float16).astype(np.float32)


def make_weight(rng, shape, qtype, scale):
    """Returns (bytes-or-array for the writer, raw_dtype, float64 values)."""
    rows, cols = shape
    w = (rng.standard_normal(shape) * scale).astype(np.float32)
    if qtype == Q.F32:
        return w, None, w.astype(np.float64)
    if qtype == Q.F16:
        h = w.astype(np.float16)
        return h, None, h.astype(np.float64)
    if qtype in (Q.Q8_0, Q.Q4_0, Q.Q4_1, Q.BF16):
        qd = gguf.quants.quantize(w, qtype)
        return qd, qtype, gguf.quants.dequantize(qd, qtype).astype(np.float64).reshape(shape)
    # K-quants: gguf has no quantizer for them; random block bytes with sane
    # scales are valid blocks, and gguf's dequantize() defines their values.
    if qtype == Q.Q4_K:
        nb = rows * cols // 256
        blk = rng.integers(0, 256, size=(nb, 144), dtype=np.uint8)
        d = f16_round(np.abs(rng.standard_normal(nb)) * scale / 1024 + scale / 8192)
        dmin = f16_round(np.abs(rng.standard_normal(nb)) * scale / 2048)
        blk[:, 0:2] = d.astype(np.float16).view(np.uint8).reshape(nb, 2)
        blk[:, 2:4] = dmin.astype(np.float16).view(np.uint8).reshape(nb, 2)
    elif qtype == Q.Q6_K:
        nb = rows * cols // 256
        blk = rng.integers(0, 256, size=(nb, 210), dtype=np.uint8)
        d = f16_round(np.abs(rng.standard_normal(nb)) * scale / 2048 + scale / 16384)
        blk[:, 208:210] = d.astype(np.float16).view(np.uint8).reshape(nb, 2)
    else:
        raise ValueError(qtype)
    qd = blk.reshape(rows, cols // 256 * blk.shape[1])
    return qd, qtype, gguf.quants.dequantize(qd, qtype).astype(np.float64).reshape(shape)


MIXED_CYCLE = [Q.Q4_K, Q.Q8_0, Q.Q6_K, Q.Q4_0, Q.Q4_1, Q.BF16, Q.Q4_K]
MIXED_MATRICES = ["attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"]


def mixed_type(tname):
    """The "mixed" variant's type of tensor tname."""
    if tname == "token_embd.weight":
        return Q.F16
    if tname == "output.weight":
        return Q.Q6_K
    layer, matrix = tname.split(".")[1:3]
    i = MIXED_MATRICES.index(matrix) + 3 * int(layer)
    return MIXED_CYCLE[i % len(MIXED_CYCLE)]


def rope_inv_freq(linear_factor=None, freq_factors=None):
    """RoPE inverse frequencies, with linear scaling or Llama 3 style
    per-frequency divisors (the file's rope_freqs.weight) applied."""
    inv = ROPE_BASE ** (-(2.0 * np.arange(HEAD_DIM // 2)) / HEAD_DIM)
    if linear_factor:
        inv = inv / linear_factor
    if freq_factors is not None:
        inv = inv / freq_factors
    return inv


def rope(x, pos, neox, inv):
    """x: [n_heads, head_dim] float64, rotated at position pos."""
    half = HEAD_DIM // 2
    a = pos * inv
    c, s = np.cos(a), np.sin(a)
    y = x.copy()
    if neox:
        x0, x1 = x[:, :half], x[:, half:]
        y[:, :half] = x0 * c - x1 * s
        y[:, half:] = x0 * s + x1 * c
    else:
        x0, x1 = x[:, 0::2], x[:, 1::2]
        y[:, 0::2] = x0 * c - x1 * s
        y[:, 1::2] = x0 * s + x1 * c
    return y


def rmsnorm(x, w):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + EPS) * w


def forward(W, arch, tokens, inv):
    neox = arch == "qwen2"
    T = len(tokens)
    x = W["token_embd.weight"][tokens]  # [T, D]
    for l in range(N_LAYER):
        p = f"blk.{l}."
        h = rmsnorm(x, W[p + "attn_norm.weight"])
        q = h @ W[p + "attn_q.weight"].T
        k = h @ W[p + "attn_k.weight"].T
        v = h @ W[p + "attn_v.weight"].T
        if arch == "qwen2":
            q += W[p + "attn_q.bias"]
            k += W[p + "attn_k.bias"]
            v += W[p + "attn_v.bias"]
        q = q.reshape(T, N_HEAD, HEAD_DIM)
        k = k.reshape(T, N_KV, HEAD_DIM)
        v = v.reshape(T, N_KV, HEAD_DIM)
        for t in range(T):
            q[t] = rope(q[t], t, neox, inv)
            k[t] = rope(k[t], t, neox, inv)
        att = np.zeros((T, N_HEAD, HEAD_DIM))
        for hd in range(N_HEAD):
            g = hd // (N_HEAD // N_KV)
            s = (q[:, hd, :] @ k[:, g, :].T) / np.sqrt(HEAD_DIM)
            s = s + np.triu(np.full((T, T), -np.inf), 1)
            s = np.exp(s - s.max(axis=1, keepdims=True))
            s /= s.sum(axis=1, keepdims=True)
            att[:, hd, :] = s @ v[:, g, :]
        x = x + att.reshape(T, -1) @ W[p + "attn_output.weight"].T
        h = rmsnorm(x, W[p + "ffn_norm.weight"])
        gt = h @ W[p + "ffn_gate.weight"].T
        up = h @ W[p + "ffn_up.weight"].T
        x = x + ((gt / (1.0 + np.exp(-gt))) * up) @ W[p + "ffn_down.weight"].T
    h = rmsnorm(x, W["output_norm.weight"])
    out = W.get("output.weight", W["token_embd.weight"])
    return h @ out.T


def write_variant(out_dir, name, arch, qtype, tied, seed, linear_factor=None, freq_factors=False):
    rng = np.random.default_rng(seed)
    path = f"{out_dir}/tiny-{name}.gguf"
    w = gguf.GGUFWriter(path, arch=arch)
    w.add_name(f"opg tiny {name}")
    w.add_block_count(N_LAYER)
    w.add_context_length(256)
    w.add_embedding_length(N_EMBD)
    w.add_feed_forward_length(N_FF)
    w.add_head_count(N_HEAD)
    w.add_head_count_kv(N_KV)
    w.add_layer_norm_rms_eps(EPS)
    w.add_rope_freq_base(ROPE_BASE)
    factors = None
    if linear_factor:
        w.add_string(f"{arch}.rope.scaling.type", "linear")
        w.add_float32(f"{arch}.rope.scaling.factor", linear_factor)
    if freq_factors:
        factors = rng.uniform(1.0, 8.0, HEAD_DIM // 2).astype(np.float32)
        w.add_tensor("rope_freqs.weight", factors)
    inv = rope_inv_freq(linear_factor, None if factors is None else factors.astype(np.float64))
    W = {}

    def add(tname, shape, qt, scale):
        if callable(qt):
            qt = qt(tname)
        data, raw, vals = make_weight(rng, shape, qt, scale)
        w.add_tensor(tname, data, raw_dtype=raw)
        W[tname] = vals

    def add_f32(tname, n, center, spread):
        v = (center + spread * rng.standard_normal(n)).astype(np.float32)
        w.add_tensor(tname, v)
        W[tname] = v.astype(np.float64)

    add("token_embd.weight", (N_VOCAB, N_EMBD), qtype, 0.3 if tied else 1.0)
    add_f32("output_norm.weight", N_EMBD, 1.0, 0.1)
    if not tied:
        add("output.weight", (N_VOCAB, N_EMBD), qtype, 0.1)
    for l in range(N_LAYER):
        p = f"blk.{l}."
        add_f32(p + "attn_norm.weight", N_EMBD, 1.0, 0.1)
        add(p + "attn_q.weight", (N_EMBD, N_EMBD), qtype, 0.08)
        add(p + "attn_k.weight", (N_KV * HEAD_DIM, N_EMBD), qtype, 0.08)
        add(p + "attn_v.weight", (N_KV * HEAD_DIM, N_EMBD), qtype, 0.08)
        if arch == "qwen2":
            add_f32(p + "attn_q.bias", N_EMBD, 0.0, 0.1)
            add_f32(p + "attn_k.bias", N_KV * HEAD_DIM, 0.0, 0.1)
            add_f32(p + "attn_v.bias", N_KV * HEAD_DIM, 0.0, 0.1)
        add(p + "attn_output.weight", (N_EMBD, N_EMBD), qtype, 0.05)
        add_f32(p + "ffn_norm.weight", N_EMBD, 1.0, 0.1)
        add(p + "ffn_gate.weight", (N_FF, N_EMBD), qtype, 0.08)
        add(p + "ffn_up.weight", (N_FF, N_EMBD), qtype, 0.08)
        add(p + "ffn_down.weight", (N_EMBD, N_FF), qtype, 0.05)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()

    logits = forward(W, arch, TOKENS, inv)
    with open(f"{out_dir}/tiny-{name}.ref", "wb") as f:
        f.write(b"OPGREF01")
        f.write(struct.pack("<II", len(TOKENS), N_VOCAB))
        f.write(np.asarray(TOKENS, dtype="<i4").tobytes())
        f.write(np.asarray(logits, dtype="<f8").tobytes())


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: gen_tiny_models.py OUT_DIR")
    out = sys.argv[1]
    types = [("f32", Q.F32), ("f16", Q.F16), ("bf16", Q.BF16), ("q8_0", Q.Q8_0),
             ("q4_0", Q.Q4_0), ("q4_1", Q.Q4_1), ("q4_K", Q.Q4_K), ("q6_K", Q.Q6_K)]
    for i, (name, qt) in enumerate(types):
        write_variant(out, name, "llama", qt, False, 1000 + i)
    write_variant(out, "qwen2-f32", "qwen2", Q.F32, False, 2000)
    write_variant(out, "tied-f32", "llama", Q.F32, True, 3000)
    write_variant(out, "tied-q8_0", "llama", Q.Q8_0, True, 3001)
    write_variant(out, "linear-f32", "llama", Q.F32, False, 4000, linear_factor=4.0)
    write_variant(out, "llama3-f32", "llama", Q.F32, False, 5000, freq_factors=True)
    write_variant(out, "mixed", "llama", mixed_type, False, 6000)
    write_broken_variants(out)


def write_broken_variants(out_dir):
    """Models opg must refuse to load (tests/test_model.c), f32 weights:
    tiny-bad-arch.gguf        general.architecture = "gpt2"
    tiny-missing-tensor.gguf  no blk.1.ffn_down.weight
    tiny-bad-shape.gguf       blk.0.attn_k.weight is [N_EMBD, N_EMBD] (not N_KV*HEAD_DIM rows)
    tiny-missing-key.gguf     no llama.block_count
    And two with a GPT-2 style tokenizer, for `opg run` (tests/cli_run.sh):
    tiny-tok-over.gguf        100 tokens (the last four end-of-generation) for
                              96 embedding rows: opg run must refuse it
    tiny-tok-long.gguf        a-z, then 70 tokens of 257..326 letters: the
                              streamed text must hold them whole
    No .ref files: nothing is computed with them."""
    rng = np.random.default_rng(4000)

    def tensor(rows, cols=None):
        shape = (rows,) if cols is None else (rows, cols)
        return (rng.standard_normal(shape) * 0.05).astype(np.float32)

    def write(name, arch="llama", skip=(), kv_rows=N_KV * HEAD_DIM, block_count=True, tokens=None):
        w = gguf.GGUFWriter(f"{out_dir}/tiny-{name}.gguf", arch=arch)
        if tokens:
            w.add_tokenizer_model("gpt2")
            w.add_tokenizer_pre("gpt-2")
            w.add_token_list([text for text, _ in tokens])
            w.add_token_types([ttype for _, ttype in tokens])
            w.add_token_merges(["a a"])  # one rank (an empty array is not written); "aa" is no token
        if block_count:
            w.add_block_count(N_LAYER)
        w.add_context_length(256)
        w.add_embedding_length(N_EMBD)
        w.add_feed_forward_length(N_FF)
        w.add_head_count(N_HEAD)
        w.add_head_count_kv(N_KV)
        w.add_layer_norm_rms_eps(EPS)
        w.add_rope_freq_base(ROPE_BASE)
        ts = {"token_embd.weight": tensor(N_VOCAB, N_EMBD),
              "output_norm.weight": tensor(N_EMBD) + 1,
              "output.weight": tensor(N_VOCAB, N_EMBD)}
        for l in range(N_LAYER):
            p = f"blk.{l}."
            ts[p + "attn_norm.weight"] = tensor(N_EMBD) + 1
            ts[p + "attn_q.weight"] = tensor(N_EMBD, N_EMBD)
            ts[p + "attn_k.weight"] = tensor(kv_rows if l == 0 else N_KV * HEAD_DIM, N_EMBD)
            ts[p + "attn_v.weight"] = tensor(N_KV * HEAD_DIM, N_EMBD)
            ts[p + "attn_output.weight"] = tensor(N_EMBD, N_EMBD)
            ts[p + "ffn_norm.weight"] = tensor(N_EMBD) + 1
            ts[p + "ffn_gate.weight"] = tensor(N_FF, N_EMBD)
            ts[p + "ffn_up.weight"] = tensor(N_FF, N_EMBD)
            ts[p + "ffn_down.weight"] = tensor(N_EMBD, N_FF)
        for tname, v in ts.items():
            if tname not in skip:
                w.add_tensor(tname, v)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()

    write("bad-arch", arch="gpt2")
    write("missing-tensor", skip=("blk.1.ffn_down.weight",))
    write("bad-shape", kv_rows=N_EMBD)
    write("missing-key", block_count=False)
    letters = [(chr(ord("a") + i), gguf.TokenType.NORMAL) for i in range(26)]
    eog = [(s, gguf.TokenType.CONTROL) for s in ("<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|eom_id|>")]
    long = [(chr(ord("a") + i % 26) * (257 + i), gguf.TokenType.NORMAL) for i in range(N_VOCAB - 26)]
    write("tok-over", tokens=letters + long + eog)
    write("tok-long", tokens=letters + long)


if __name__ == "__main__":
    main()
