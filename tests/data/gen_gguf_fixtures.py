#!/usr/bin/env python3
"""gen_gguf_fixtures.py: writes the GGUF test fixtures with the PyPI `gguf`
package (GGUFWriter), independently of opg's reader, plus their SHA-256 sums
(hashlib) and a copy of the small ones as fuzzing seeds.

    python3 tests/data/gen_gguf_fixtures.py      # from the repository root

Outputs (checked in; each well under 100 KB):
  tests/data/gguf/kv_tensors_v3.gguf   every value type, arrays of every element
                                       type, 8 tensors of 8 types, alignment 64
  tests/data/gguf/kv_tensors_v2.gguf   the same bytes with the version set to 2
  tests/data/gguf/all_ggml_types.gguf  one tensor of every GGML type, with the
                                       expected byte sizes (GGML_QUANT_SIZES) as
                                       metadata
  tests/data/gguf/no_tensors.gguf      metadata only
  tests/data/gguf/big_endian.gguf      written big-endian (opg rejects)
  tests/data/gguf/nested_array.gguf    an array of arrays (opg rejects)
  tests/data/gguf/SHA256SUMS           hashlib digests, `sha256sum -c` format
  tests/fuzz/corpus/gguf/seed_*.gguf   copies of the fixtures above

tests/test_gguf.c knows the values written here; the formulas for tensor
contents are repeated there (keep them in sync).
"""
import hashlib
import os
import struct
import sys

import numpy as np

import gguf
from gguf import GGMLQuantizationType as Q
from gguf import GGUFValueType as V

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
OUT = os.path.join(HERE, "gguf")
CORPUS = os.path.join(ROOT, "tests", "fuzz", "corpus", "gguf")


def pattern_bytes(n, k):
    """Raw bytes of tensor number k: byte j = (j*7 + k*13) & 0xff (test_gguf.c: pattern_byte)."""
    return np.array([(j * 7 + k * 13) & 0xFF for j in range(n)], dtype=np.uint8)


def array_strings():
    """test.arr_str: 300 strings of 0..11 bytes (test_gguf.c: arr_str_expect)."""
    return ["" if i % 37 == 0 else ("s%d" % i) * (1 + i % 3) for i in range(300)]


def write(path, w):
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def kv_tensors(path):
    w = gguf.GGUFWriter(path, arch="opgtest")
    w.add_custom_alignment(64)
    w.add_uint8("test.u8", 200)
    w.add_int8("test.i8", -100)
    w.add_uint16("test.u16", 60000)
    w.add_int16("test.i16", -30000)
    w.add_uint32("test.u32", 4000000000)
    w.add_int32("test.i32", -2000000000)
    w.add_float32("test.f32", 0.15625)
    w.add_uint64("test.u64", 123456789012)
    w.add_uint64("test.u64_big", 2**63 + 5)  # does not fit int64
    w.add_int64("test.i64", -(2**62) - 7)
    w.add_float64("test.f64", 2.718281828459045)
    w.add_bool("test.bool_t", True)
    w.add_bool("test.bool_f", False)
    w.add_string("test.str", "h\u00e9llo w\u00f6rld \u2713")
    w.add_key_value("test.str_empty", "", V.STRING)
    w.add_key_value("test.str_raw", b"\xff\xfe\x00raw", V.STRING)  # not UTF-8, holds a NUL
    w.add_key_value("test.arr_u8", list(range(250, 256)), V.ARRAY, sub_type=V.UINT8)
    w.add_key_value("test.arr_i8", [-128, -1, 0, 127], V.ARRAY, sub_type=V.INT8)
    w.add_key_value("test.arr_u16", [0, 1, 65535], V.ARRAY, sub_type=V.UINT16)
    w.add_key_value("test.arr_i16", [-32768, 7, 32767], V.ARRAY, sub_type=V.INT16)
    w.add_key_value("test.arr_u32", [i * 1000003 for i in range(10)], V.ARRAY, sub_type=V.UINT32)
    w.add_key_value("test.arr_i32", list(range(-50, 50)), V.ARRAY, sub_type=V.INT32)
    w.add_key_value("test.arr_u64", [2**64 - 1, 0, 42], V.ARRAY, sub_type=V.UINT64)
    w.add_key_value("test.arr_i64", [-(2**63), 2**63 - 1], V.ARRAY, sub_type=V.INT64)
    w.add_key_value("test.arr_f32", [i * 0.5 - 1.0 for i in range(7)], V.ARRAY, sub_type=V.FLOAT32)
    w.add_key_value("test.arr_f64", [1.0 / 3.0, -0.0, 1e300], V.ARRAY, sub_type=V.FLOAT64)
    w.add_key_value("test.arr_bool", [True, False, True, True], V.ARRAY, sub_type=V.BOOL)
    w.add_key_value("test.arr_str", array_strings(), V.ARRAY, sub_type=V.STRING)

    # f32 t.f32: numpy shape (3, 8) -> ne = [8, 3]; value i = i*0.25 - 2
    w.add_tensor("t.f32", (np.arange(24, dtype=np.float32) * 0.25 - 2).reshape(3, 8))
    # f16 t.f16: shape (2, 2, 4) -> ne = [4, 2, 2]; value i = i*0.5 - 4 (exact in f16)
    w.add_tensor("t.f16", (np.arange(16, dtype=np.float16) * np.float16(0.5) - np.float16(4)).reshape(2, 2, 4))
    # q8_0 t.q8_0: ne = [64, 2], quantized by gguf.quants from x_i = sin(i*0.1)*3
    x = (np.sin(np.arange(128, dtype=np.float32) * np.float32(0.1)) * np.float32(3)).reshape(2, 64)
    w.add_tensor("t.q8_0", gguf.quants.quantize(x, Q.Q8_0), raw_dtype=Q.Q8_0)
    # raw blocks with pattern bytes (tensor number k as listed)
    for k, (name, qt, shape) in enumerate([
        ("t.q4_K", Q.Q4_K, (2, 144)),        # ne = [256, 2]
        ("t.q6_K", Q.Q6_K, (1, 210 * 2)),    # ne = [512, 1]
        ("t.q5_K", Q.Q5_K, (1, 176)),        # ne = [256, 1]: a type opg does not compute
        ("t.iq2_xxs", Q.IQ2_XXS, (3, 66)),   # ne = [256, 3]
    ], start=3):
        w.add_tensor(name, pattern_bytes(shape[0] * shape[1], k).reshape(shape), raw_dtype=qt)
    # i32 t.i32 4-D: shape (2, 1, 3, 2) -> ne = [2, 3, 1, 2]; value i = i*1000 - 5000
    w.add_tensor("t.i32", (np.arange(12, dtype=np.int32) * 1000 - 5000).reshape(2, 1, 3, 2))
    write(path, w)


def all_types(path):
    w = gguf.GGUFWriter(path, arch="opgtest")
    ids, sizes = [], []
    tensors = []
    for k, qt in enumerate(sorted(gguf.GGML_QUANT_SIZES, key=int)):
        blck, nbytes = gguf.GGML_QUANT_SIZES[qt]
        rows = 2
        ids.append(int(qt))
        sizes.append(rows * nbytes)
        tensors.append((qt.name, qt, pattern_bytes(rows * nbytes, k).reshape(rows, nbytes)))
    w.add_key_value("test.type_ids", ids, V.ARRAY, sub_type=V.UINT32)
    w.add_key_value("test.type_nbytes", sizes, V.ARRAY, sub_type=V.UINT64)
    w.add_key_value("test.type_blck", [gguf.GGML_QUANT_SIZES[Q(i)][0] for i in ids], V.ARRAY, sub_type=V.UINT32)
    for name, qt, data in tensors:
        w.add_tensor(name, data, raw_dtype=qt)
    write(path, w)


def no_tensors(path):
    w = gguf.GGUFWriter(path, arch="opgtest")
    w.add_key_value("tokenizer.ggml.tokens", ["<s>", "</s>", "a", "b"], V.ARRAY, sub_type=V.STRING)
    w.add_uint32("test.u32", 7)
    write(path, w)


def big_endian(path):
    w = gguf.GGUFWriter(path, arch="opgtest", endianess=gguf.GGUFEndian.BIG)
    w.add_uint32("test.u32", 7)
    w.add_tensor("t", np.arange(8, dtype=np.float32))
    write(path, w)


def nested_array(path):
    w = gguf.GGUFWriter(path, arch="opgtest")
    w.add_array("test.nested", [[1, 2], [3]])
    write(path, w)


def main():
    os.makedirs(OUT, exist_ok=True)
    os.makedirs(CORPUS, exist_ok=True)
    files = {
        "kv_tensors_v3.gguf": kv_tensors,
        "all_ggml_types.gguf": all_types,
        "no_tensors.gguf": no_tensors,
        "big_endian.gguf": big_endian,
        "nested_array.gguf": nested_array,
    }
    for name, fn in files.items():
        fn(os.path.join(OUT, name))
    # v2: identical layout for little-endian files; only the version differs.
    with open(os.path.join(OUT, "kv_tensors_v3.gguf"), "rb") as f:
        b = bytearray(f.read())
    assert b[:4] == b"GGUF" and struct.unpack_from("<I", b, 4)[0] == 3
    struct.pack_into("<I", b, 4, 2)
    with open(os.path.join(OUT, "kv_tensors_v2.gguf"), "wb") as f:
        f.write(b)

    names = sorted(list(files) + ["kv_tensors_v2.gguf"])
    with open(os.path.join(OUT, "SHA256SUMS"), "w") as sums:
        for name in names:
            with open(os.path.join(OUT, name), "rb") as f:
                data = f.read()
            assert len(data) < 100 * 1024, name
            sums.write("%s  %s\n" % (hashlib.sha256(data).hexdigest(), name))
            with open(os.path.join(CORPUS, "seed_" + name), "wb") as f:
                f.write(data)
            print("%-22s %6d bytes" % (name, len(data)), file=sys.stderr)


if __name__ == "__main__":
    main()
