/* opg_xxh3.h: XXH3-64 (seed 0, default secret) in plain C99, one source for
 * the host and the GPU, so the trace fingerprint (docs/determinism.md section
 * 12) can be computed where the data is. A port of xxhash 0.8's scalar
 * XXH3_64bits: every input length, no SIMD, no state, no allocation.
 * tests/test_xxh3.c checks it against libxxhash on every length 0..5000 and
 * random lengths up to 100k, so the code the GPU runs is verified on the CPU.
 *
 * All reads are bytewise little-endian (any alignment, any host byte order);
 * all arithmetic is on uint64_t modulo 2^64 (the 64x64->128 multiply is done
 * in 32-bit halves), so host and device run the very same operations.
 * Compiled by nvcc, the functions are __host__ __device__ (OPG_HD of
 * opg_math.h) and the secret lives in __constant__ memory for device code. */
#ifndef OPG_XXH3_H
#define OPG_XXH3_H

#include <stddef.h>
#include <stdint.h>

#include "opg_math.h" /* OPG_HD */

#define OPG_XXH3_SECRET_SIZE 192 /* the default secret (XXH3_kSecret) */
#define OPG_XXH3_SECRET_MIN 136  /* XXH3_SECRET_SIZE_MIN */
#define OPG_XXH3_MIDSIZE_MAX 240
#define OPG_XXH3_STRIPE_LEN 64
#define OPG_XXH3_CONSUME_RATE 8  /* secret bytes consumed per stripe */

#define OPG_XXH_P32_1 0x9E3779B1u
#define OPG_XXH_P32_2 0x85EBCA77u
#define OPG_XXH_P32_3 0xC2B2AE3Du
#define OPG_XXH_P64_1 0x9E3779B185EBCA87ull
#define OPG_XXH_P64_2 0xC2B2AE3D27D4EB4Full
#define OPG_XXH_P64_3 0x165667B19E3779F9ull
#define OPG_XXH_P64_4 0x85EBCA77C2B2AE63ull
#define OPG_XXH_P64_5 0x27D4EB2F165667C5ull

/* The default secret, taken from FARSH (xxhash.h's XXH3_kSecret). */
#define OPG_XXH3_SECRET_BYTES                                                                \
    {                                                                                       \
        0xb8, 0xfe, 0x6c, 0x39, 0x23, 0xa4, 0x4b, 0xbe, 0x7c, 0x01, 0x81, 0x2c, 0xf7, 0x21,  \
        0xad, 0x1c, 0xde, 0xd4, 0x6d, 0xe9, 0x83, 0x90, 0x97, 0xdb, 0x72, 0x40, 0xa4, 0xa4,  \
        0xb7, 0xb3, 0x67, 0x1f, 0xcb, 0x79, 0xe6, 0x4e, 0xcc, 0xc0, 0xe5, 0x78, 0x82, 0x5a,  \
        0xd0, 0x7d, 0xcc, 0xff, 0x72, 0x21, 0xb8, 0x08, 0x46, 0x74, 0xf7, 0x43, 0x24, 0x8e,  \
        0xe0, 0x35, 0x90, 0xe6, 0x81, 0x3a, 0x26, 0x4c, 0x3c, 0x28, 0x52, 0xbb, 0x91, 0xc3,  \
        0x00, 0xcb, 0x88, 0xd0, 0x65, 0x8b, 0x1b, 0x53, 0x2e, 0xa3, 0x71, 0x64, 0x48, 0x97,  \
        0xa2, 0x0d, 0xf9, 0x4e, 0x38, 0x19, 0xef, 0x46, 0xa9, 0xde, 0xac, 0xd8, 0xa8, 0xfa,  \
        0x76, 0x3f, 0xe3, 0x9c, 0x34, 0x3f, 0xf9, 0xdc, 0xbb, 0xc7, 0xc7, 0x0b, 0x4f, 0x1d,  \
        0x8a, 0x51, 0xe0, 0x4b, 0xcd, 0xb4, 0x59, 0x31, 0xc8, 0x9f, 0x7e, 0xc9, 0xd9, 0x78,  \
        0x73, 0x64, 0xea, 0xc5, 0xac, 0x83, 0x34, 0xd3, 0xeb, 0xc3, 0xc5, 0x81, 0xa0, 0xff,  \
        0xfa, 0x13, 0x63, 0xeb, 0x17, 0x0d, 0xdd, 0x51, 0xb7, 0xf0, 0xda, 0x49, 0xd3, 0x16,  \
        0x55, 0x26, 0x29, 0xd4, 0x68, 0x9e, 0x2b, 0x16, 0xbe, 0x58, 0x7d, 0x47, 0xa1, 0xfc,  \
        0x8f, 0xf8, 0xb8, 0xd1, 0x7a, 0xd0, 0x31, 0xce, 0x45, 0xcb, 0x3a, 0x8f, 0x95, 0x16,  \
        0x04, 0x28, 0xaf, 0xd7, 0xfb, 0xca, 0xbb, 0x4b, 0x40, 0x7e,                          \
    }

/* Host code reads the secret from a static array, device code from constant
 * memory (a host array is not addressable on the GPU); same bytes. */
static const uint8_t opg_xxh3__secret_host[OPG_XXH3_SECRET_SIZE] = OPG_XXH3_SECRET_BYTES;
#ifdef __CUDACC__
static __constant__ const uint8_t opg_xxh3__secret_dev[OPG_XXH3_SECRET_SIZE] =
    OPG_XXH3_SECRET_BYTES;
#endif
#ifdef __CUDA_ARCH__
#define OPG_XXH3__SECRET opg_xxh3__secret_dev
#else
#define OPG_XXH3__SECRET opg_xxh3__secret_host
#endif

/* ---- primitives ----------------------------------------------------------- */

OPG_HD uint32_t opg_xxh3__read32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
           ((uint32_t)p[3] << 24);
}

OPG_HD uint64_t opg_xxh3__read64(const uint8_t *p) {
    return (uint64_t)opg_xxh3__read32(p) | ((uint64_t)opg_xxh3__read32(p + 4) << 32);
}

/* A word of the input: its 4 bytes at p; with canon (rows of f32 values,
 * whose every read falls on a value: all reads are at multiples of 4 bytes
 * when the length is one) a NaN of any sign and payload reads as 0x7fc00000. */
OPG_HD uint32_t opg_xxh3__in32(const uint8_t *p, int canon) {
    uint32_t w = opg_xxh3__read32(p);
    return canon && (w & 0x7fffffffu) > 0x7f800000u ? 0x7fc00000u : w;
}

OPG_HD uint64_t opg_xxh3__in64(const uint8_t *p, int canon) {
    return (uint64_t)opg_xxh3__in32(p, canon) | ((uint64_t)opg_xxh3__in32(p + 4, canon) << 32);
}

OPG_HD uint32_t opg_xxh3__swap32(uint32_t x) {
    return ((x << 24) & 0xff000000u) | ((x << 8) & 0x00ff0000u) | ((x >> 8) & 0x0000ff00u) |
           ((x >> 24) & 0x000000ffu);
}

OPG_HD uint64_t opg_xxh3__swap64(uint64_t x) {
    return ((uint64_t)opg_xxh3__swap32((uint32_t)x) << 32) |
           (uint64_t)opg_xxh3__swap32((uint32_t)(x >> 32));
}

OPG_HD uint64_t opg_xxh3__rotl64(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

/* Low 64 bits of the 128-bit product XOR its high 64 bits, from four
 * 32x32->64 products (xxhash's portable XXH_mult64to128). */
OPG_HD uint64_t opg_xxh3__mul128_fold64(uint64_t lhs, uint64_t rhs) {
    uint64_t lo_lo = (lhs & 0xFFFFFFFFu) * (rhs & 0xFFFFFFFFu);
    uint64_t hi_lo = (lhs >> 32) * (rhs & 0xFFFFFFFFu);
    uint64_t lo_hi = (lhs & 0xFFFFFFFFu) * (rhs >> 32);
    uint64_t hi_hi = (lhs >> 32) * (rhs >> 32);
    uint64_t cross = (lo_lo >> 32) + (hi_lo & 0xFFFFFFFFu) + lo_hi;
    uint64_t upper = (hi_lo >> 32) + (cross >> 32) + hi_hi;
    uint64_t lower = (cross << 32) | (lo_lo & 0xFFFFFFFFu);
    return lower ^ upper;
}

OPG_HD uint64_t opg_xxh3__xorshift64(uint64_t v, int shift) { return v ^ (v >> shift); }

OPG_HD uint64_t opg_xxh3__xxh64_avalanche(uint64_t h) {
    h ^= h >> 33;
    h *= OPG_XXH_P64_2;
    h ^= h >> 29;
    h *= OPG_XXH_P64_3;
    h ^= h >> 32;
    return h;
}

OPG_HD uint64_t opg_xxh3__avalanche(uint64_t h) {
    h = opg_xxh3__xorshift64(h, 37);
    h *= 0x165667919E3779F9ull;
    h = opg_xxh3__xorshift64(h, 32);
    return h;
}

OPG_HD uint64_t opg_xxh3__rrmxmx(uint64_t h, uint64_t len) {
    h ^= opg_xxh3__rotl64(h, 49) ^ opg_xxh3__rotl64(h, 24);
    h *= 0x9FB21C651E98DF25ull;
    h ^= (h >> 35) + len;
    h *= 0x9FB21C651E98DF25ull;
    return opg_xxh3__xorshift64(h, 28);
}

/* ---- short inputs (seed 0) ------------------------------------------------ */

OPG_HD uint64_t opg_xxh3__len_1to3(const uint8_t *in, size_t len, const uint8_t *sec) {
    uint8_t c1 = in[0], c2 = in[len >> 1], c3 = in[len - 1];
    uint32_t combined = ((uint32_t)c1 << 16) | ((uint32_t)c2 << 24) | ((uint32_t)c3 << 0) |
                        ((uint32_t)len << 8);
    uint64_t bitflip = (uint64_t)(opg_xxh3__read32(sec) ^ opg_xxh3__read32(sec + 4));
    return opg_xxh3__xxh64_avalanche((uint64_t)combined ^ bitflip);
}

OPG_HD uint64_t opg_xxh3__len_4to8(const uint8_t *in, size_t len, const uint8_t *sec, int canon) {
    uint32_t in1 = opg_xxh3__in32(in, canon), in2 = opg_xxh3__in32(in + len - 4, canon);
    uint64_t bitflip = opg_xxh3__read64(sec + 8) ^ opg_xxh3__read64(sec + 16);
    uint64_t in64 = (uint64_t)in2 + ((uint64_t)in1 << 32);
    return opg_xxh3__rrmxmx(in64 ^ bitflip, (uint64_t)len);
}

OPG_HD uint64_t opg_xxh3__len_9to16(const uint8_t *in, size_t len, const uint8_t *sec, int canon) {
    uint64_t bitflip1 = opg_xxh3__read64(sec + 24) ^ opg_xxh3__read64(sec + 32);
    uint64_t bitflip2 = opg_xxh3__read64(sec + 40) ^ opg_xxh3__read64(sec + 48);
    uint64_t in_lo = opg_xxh3__in64(in, canon) ^ bitflip1;
    uint64_t in_hi = opg_xxh3__in64(in + len - 8, canon) ^ bitflip2;
    uint64_t acc = (uint64_t)len + opg_xxh3__swap64(in_lo) + in_hi +
                   opg_xxh3__mul128_fold64(in_lo, in_hi);
    return opg_xxh3__avalanche(acc);
}

OPG_HD uint64_t opg_xxh3__mix16(const uint8_t *in, const uint8_t *sec, int canon) {
    return opg_xxh3__mul128_fold64(opg_xxh3__in64(in, canon) ^ opg_xxh3__read64(sec),
                                   opg_xxh3__in64(in + 8, canon) ^ opg_xxh3__read64(sec + 8));
}

OPG_HD uint64_t opg_xxh3__len_17to128(const uint8_t *in, size_t len, const uint8_t *sec, int canon) {
    uint64_t acc = (uint64_t)len * OPG_XXH_P64_1;
    if (len > 32) {
        if (len > 64) {
            if (len > 96) {
                acc += opg_xxh3__mix16(in + 48, sec + 96, canon);
                acc += opg_xxh3__mix16(in + len - 64, sec + 112, canon);
            }
            acc += opg_xxh3__mix16(in + 32, sec + 64, canon);
            acc += opg_xxh3__mix16(in + len - 48, sec + 80, canon);
        }
        acc += opg_xxh3__mix16(in + 16, sec + 32, canon);
        acc += opg_xxh3__mix16(in + len - 32, sec + 48, canon);
    }
    acc += opg_xxh3__mix16(in + 0, sec + 0, canon);
    acc += opg_xxh3__mix16(in + len - 16, sec + 16, canon);
    return opg_xxh3__avalanche(acc);
}

OPG_HD uint64_t opg_xxh3__len_129to240(const uint8_t *in, size_t len, const uint8_t *sec, int canon) {
    uint64_t acc = (uint64_t)len * OPG_XXH_P64_1;
    int rounds = (int)len / 16;
    for (int i = 0; i < 8; i++) acc += opg_xxh3__mix16(in + 16 * i, sec + 16 * i, canon);
    acc = opg_xxh3__avalanche(acc);
    for (int i = 8; i < rounds; i++) acc += opg_xxh3__mix16(in + 16 * i, sec + 16 * (i - 8) + 3, canon);
    acc += opg_xxh3__mix16(in + len - 16, sec + OPG_XXH3_SECRET_MIN - 17, canon);
    return opg_xxh3__avalanche(acc);
}

/* ---- long inputs: 64-byte stripes into 8 accumulators ---------------------- */

OPG_HD void opg_xxh3__accumulate_512(uint64_t acc[8], const uint8_t *in, const uint8_t *sec, int canon) {
    for (int i = 0; i < 8; i++) {
        uint64_t data_val = opg_xxh3__in64(in + 8 * i, canon);
        uint64_t data_key = data_val ^ opg_xxh3__read64(sec + 8 * i);
        acc[i ^ 1] += data_val; /* swap adjacent lanes */
        acc[i] += (data_key & 0xFFFFFFFFu) * (data_key >> 32);
    }
}

OPG_HD void opg_xxh3__scramble(uint64_t acc[8], const uint8_t *sec) {
    for (int i = 0; i < 8; i++) {
        uint64_t a = opg_xxh3__xorshift64(acc[i], 47);
        a ^= opg_xxh3__read64(sec + 8 * i);
        a *= OPG_XXH_P32_1;
        acc[i] = a;
    }
}

OPG_HD uint64_t opg_xxh3__hash_long(const uint8_t *in, size_t len, const uint8_t *sec, int canon) {
    uint64_t acc[8] = {OPG_XXH_P32_3, OPG_XXH_P64_1, OPG_XXH_P64_2, OPG_XXH_P64_3,
                       OPG_XXH_P64_4, OPG_XXH_P32_2, OPG_XXH_P64_5, OPG_XXH_P32_1};
    const size_t stripes_per_block =
        (OPG_XXH3_SECRET_SIZE - OPG_XXH3_STRIPE_LEN) / OPG_XXH3_CONSUME_RATE; /* 16 */
    const size_t block_len = OPG_XXH3_STRIPE_LEN * stripes_per_block;            /* 1024 */
    size_t nb_blocks = (len - 1) / block_len;
    for (size_t b = 0; b < nb_blocks; b++) {
        for (size_t s = 0; s < stripes_per_block; s++)
            opg_xxh3__accumulate_512(acc, in + b * block_len + s * OPG_XXH3_STRIPE_LEN,
                                     sec + s * OPG_XXH3_CONSUME_RATE, canon);
        opg_xxh3__scramble(acc, sec + OPG_XXH3_SECRET_SIZE - OPG_XXH3_STRIPE_LEN);
    }
    /* last partial block, then the last stripe (which may overlap it) */
    size_t nb_stripes = ((len - 1) - block_len * nb_blocks) / OPG_XXH3_STRIPE_LEN;
    for (size_t s = 0; s < nb_stripes; s++)
        opg_xxh3__accumulate_512(acc, in + nb_blocks * block_len + s * OPG_XXH3_STRIPE_LEN,
                                 sec + s * OPG_XXH3_CONSUME_RATE, canon);
    opg_xxh3__accumulate_512(acc, in + len - OPG_XXH3_STRIPE_LEN,
                             sec + OPG_XXH3_SECRET_SIZE - OPG_XXH3_STRIPE_LEN - 7, canon);
    /* merge the accumulators */
    const uint8_t *ms = sec + 11;
    uint64_t r = (uint64_t)len * OPG_XXH_P64_1;
    for (int i = 0; i < 4; i++)
        r += opg_xxh3__mul128_fold64(acc[2 * i] ^ opg_xxh3__read64(ms + 16 * i),
                                     acc[2 * i + 1] ^ opg_xxh3__read64(ms + 16 * i + 8));
    return opg_xxh3__avalanche(r);
}

/* ---- entry points --------------------------------------------------------- */

OPG_HD uint64_t opg_xxh3__64(const uint8_t *in, size_t len, int canon) {
    const uint8_t *sec = OPG_XXH3__SECRET;
    if (len <= 16) {
        if (len > 8) return opg_xxh3__len_9to16(in, len, sec, canon);
        if (len >= 4) return opg_xxh3__len_4to8(in, len, sec, canon);
        if (len > 0) return opg_xxh3__len_1to3(in, len, sec); /* never canon: not a whole value */
        return opg_xxh3__xxh64_avalanche(opg_xxh3__read64(sec + 56) ^ opg_xxh3__read64(sec + 64));
    }
    if (len <= 128) return opg_xxh3__len_17to128(in, len, sec, canon);
    if (len <= OPG_XXH3_MIDSIZE_MAX) return opg_xxh3__len_129to240(in, len, sec, canon);
    return opg_xxh3__hash_long(in, len, sec, canon);
}

/* XXH3_64bits(data, len): seed 0, default secret. data may be NULL when len is 0. */
OPG_HD uint64_t opg_xxh3_64(const void *data, size_t len) { return opg_xxh3__64((const uint8_t *)data, len, 0); }

/* XXH3_64bits of the n f32 values' little-endian bytes with every NaN's
 * bytes those of 0x7fc00000 (the trace's canonical NaN, docs/determinism.md
 * section 12), without copying them. x may be NULL when n is 0. */
OPG_HD uint64_t opg_xxh3_64_f32(const float *x, size_t n) { return opg_xxh3__64((const uint8_t *)x, n * 4, 1); }

#endif /* OPG_XXH3_H */
