#!/usr/bin/env python3
"""gen_quant_vectors.py: dequantization test vectors for tests/test_quant.c,
computed independently of opg by the PyPI `gguf` package (its numpy
quantizers and dequantizers, the reference of the GGUF block layouts).

Regenerate (deterministic, seeded; the output is checked in):
    python3 tests/data/gen_quant_vectors.py tests/data/quant_vectors.bin
(tested with gguf 0.19.0 and numpy 2.4.6)

File format, all little-endian:
    header : 8 bytes magic b"OPGQVEC1", u32 record count
    record : u32 dtype (GGUF type id: 0 f32, 1 f16, 2 q4_0, 3 q4_1, 8 q8_0,
             12 q4_K, 14 q6_K, 30 bf16), u32 n (elements), u32 nbytes,
             nbytes bytes of the row as stored in a GGUF tensor,
             n f32 values: gguf.quants.dequantize() of those bytes.

Where gguf can quantize (q8_0, q4_0, q4_1, bf16) the bytes come from
gguf.quants.quantize() of seeded random data; the K-quants (which gguf only
dequantizes) and the extreme cases are random or hand-made block bytes with
finite f16 scales: q = -128 and 127 for q8_0, all-15 and all-0 nibbles,
negative, zero and subnormal scales, every 6-bit q4_K scale/min pattern,
q6_K int8 scales -128..127.
"""
import struct
import sys

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf import quants

rng = np.random.default_rng(20240531)
records = []


def add(qtype, raw):
    raw = np.ascontiguousarray(raw, dtype=np.uint8).reshape(1, -1)
    y = quants.dequantize(raw, qtype).astype(np.float32).reshape(-1)
    bs, ts = quants.GGML_QUANT_SIZES[qtype]
    assert raw.size % ts == 0 and y.size == raw.size // ts * bs
    assert qtype in (T.F32, T.F16, T.BF16) or np.all(np.isfinite(y)), qtype
    records.append((int(qtype), y.size, raw.tobytes(), y.astype("<f4").tobytes()))


def f16(v):
    return np.array([v], dtype=np.float16).view(np.uint8)


def f16_bits(b):
    return np.array([b], dtype=np.uint16).view(np.uint8)


def rand_f16_scale(lo=-3.0, hi=3.0):
    """A finite f16 of random magnitude 2^lo..2^hi and random sign."""
    return f16(float(rng.choice([-1, 1]) * 2.0 ** rng.uniform(lo, hi)))


def rand_bytes(n):
    return rng.integers(0, 256, size=n, dtype=np.uint8)


# special f16 scale bit patterns: 0, -0, smallest subnormal, largest subnormal,
# smallest normal, 1, -1.5, largest finite
SPECIAL_SCALES = [0x0000, 0x8000, 0x0001, 0x03FF, 0x0400, 0x3C00, 0xBE00, 0x7BFF]

# ---- q8_0: {f16 d; int8 qs[32]} ------------------------------------------
x = (rng.standard_normal(32 * 6) * rng.choice([1e-3, 1.0, 50.0], size=32 * 6)).astype(np.float32)
add(T.Q8_0, quants.quantize(x.reshape(1, -1), T.Q8_0))
blocks = []
for sb in SPECIAL_SCALES:
    qs = rng.integers(-128, 128, size=32).astype(np.int8)
    qs[0], qs[1], qs[2] = -128, 127, 0
    blocks.append(np.concatenate([f16_bits(sb), qs.view(np.uint8)]))
blocks.append(np.concatenate([f16(-0.125), np.full(32, -128, np.int8).view(np.uint8)]))
add(T.Q8_0, np.concatenate(blocks))

# ---- q4_0: {f16 d; u8 qs[16]}, value d*(q-8) -------------------------------
x = (rng.standard_normal(32 * 6) * 3.0).astype(np.float32)
add(T.Q4_0, quants.quantize(x.reshape(1, -1), T.Q4_0))
blocks = []
for sb in SPECIAL_SCALES:
    blocks.append(np.concatenate([f16_bits(sb), rand_bytes(16)]))
blocks.append(np.concatenate([rand_f16_scale(), np.full(16, 0xFF, np.uint8)]))  # all 15
blocks.append(np.concatenate([rand_f16_scale(), np.zeros(16, np.uint8)]))       # all 0
add(T.Q4_0, np.concatenate(blocks))

# ---- q4_1: {f16 d, m; u8 qs[16]}, value d*q + m ----------------------------
x = (rng.standard_normal(32 * 6) * 2.0 + 0.5).astype(np.float32)
add(T.Q4_1, quants.quantize(x.reshape(1, -1), T.Q4_1))
blocks = []
for sb in SPECIAL_SCALES:
    blocks.append(np.concatenate([f16_bits(sb), rand_f16_scale(), rand_bytes(16)]))
blocks.append(np.concatenate([rand_f16_scale(), f16(-7.5), np.full(16, 0xFF, np.uint8)]))
blocks.append(np.concatenate([f16(0.0), f16(0.0), rand_bytes(16)]))
add(T.Q4_1, np.concatenate(blocks))

# ---- q4_K: {f16 d, dmin; u8 scales[12]; u8 qs[128]} ------------------------
blocks = []
for i in range(8):
    d = f16_bits(SPECIAL_SCALES[i]) if i < 3 else rand_f16_scale(-8, 0)
    blocks.append(np.concatenate([d, rand_f16_scale(-8, 0), rand_bytes(12), rand_bytes(128)]))
blocks.append(np.concatenate([rand_f16_scale(), rand_f16_scale(), np.full(12, 0xFF, np.uint8),
                              np.full(128, 0xFF, np.uint8)]))  # sc = m = 63, q = 15
blocks.append(np.concatenate([f16(0.0), f16(0.0), rand_bytes(12), rand_bytes(128)]))
add(T.Q4_K, np.concatenate(blocks))

# ---- q6_K: {u8 ql[128]; u8 qh[64]; int8 scales[16]; f16 d} ----------------
blocks = []
for i in range(8):
    sc = rng.integers(-128, 128, size=16).astype(np.int8)
    sc[0], sc[1], sc[2] = -128, 127, 0
    d = f16_bits(SPECIAL_SCALES[i]) if i < 3 else rand_f16_scale(-10, -2)
    blocks.append(np.concatenate([rand_bytes(128), rand_bytes(64), sc.view(np.uint8), d]))
blocks.append(np.concatenate([np.full(128, 0xFF, np.uint8), np.full(64, 0xFF, np.uint8),
                              np.full(16, -128, np.int8).view(np.uint8), f16(-0.001)]))  # q = 63
blocks.append(np.concatenate([np.zeros(128, np.uint8), np.zeros(64, np.uint8),
                              np.full(16, 127, np.int8).view(np.uint8), f16(0.002)]))    # q = -32
add(T.Q6_K, np.concatenate(blocks))

# ---- plain types ----------------------------------------------------------
special = np.array([0.0, -0.0, 1.0, -2.5, 65504.0, -65504.0, 6.1035156e-05, 5.9604645e-08,
                    1e-40, -3.4028235e38, np.inf, -np.inf, 1.1754944e-38], dtype=np.float32)
x = np.concatenate([special, (rng.standard_normal(51) * 100).astype(np.float32)])
add(T.F32, x.view(np.uint8))
add(T.BF16, quants.quantize(x.reshape(1, -1), T.BF16))
h = np.concatenate([np.array([0x0000, 0x8000, 0x0001, 0x83FF, 0x0400, 0x7BFF, 0xFBFF, 0x7C00,
                              0xFC00, 0x3C00], dtype=np.uint16),
                    rng.integers(0, 0x7C00, size=54, dtype=np.uint16) | (rng.integers(0, 2, size=54, dtype=np.uint16) << 15)])
add(T.F16, h.view(np.uint8))

out = sys.argv[1] if len(sys.argv) > 1 else "quant_vectors.bin"
with open(out, "wb") as f:
    f.write(b"OPGQVEC1" + struct.pack("<I", len(records)))
    for qtype, n, raw, y in records:
        f.write(struct.pack("<III", qtype, n, len(raw)))
        f.write(raw)
        f.write(y)
print(f"wrote {len(records)} records to {out}")
