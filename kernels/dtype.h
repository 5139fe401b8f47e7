/* dtype.h: tensor element types and the byte layout of the quantized blocks.
 *
 * Type ids and block layouts are GGUF's (ggml's), so a GGUF tensor's bytes
 * are used as they are. OPG_Q8A is ours: the per-32 quantized activation
 * block of the integer path (docs/determinism.md section 5). */
#ifndef OPG_DTYPE_H
#define OPG_DTYPE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
#define OPG_STATIC_ASSERT(c, msg) static_assert(c, msg)
extern "C" { /* the CUDA sources include this header as C++ */
#else
#define OPG_STATIC_ASSERT(c, msg) _Static_assert(c, msg)
#endif

typedef enum {
    OPG_F32 = 0,
    OPG_F16 = 1,
    OPG_Q4_0 = 2,
    OPG_Q4_1 = 3,
    OPG_Q8_0 = 8,
    OPG_Q4_K = 12,
    OPG_Q6_K = 14,
    OPG_BF16 = 30,
    /* Not GGUF types: Q4_0/Q4_1/Q8_0/Q4_K/Q6_K matrices re-laid out by opg_pack_x8
     * (quant.h) for the CPU's AVX2 path, same values and bytes, 8 rows
     * interleaved. */
    OPG_Q4_0_X8 = 0x100 | OPG_Q4_0,
    OPG_Q4_1_X8 = 0x100 | OPG_Q4_1,
    OPG_Q8_0_X8 = 0x100 | OPG_Q8_0,
    OPG_Q4_K_X8 = 0x100 | OPG_Q4_K,
    OPG_Q6_K_X8 = 0x100 | OPG_Q6_K,
} opg_dtype;

#define OPG_QK 32   /* elements per activation block and per Q4_0/Q4_1/Q8_0 block */
#define OPG_QK_K 256 /* elements per K-quant super-block */

typedef struct { uint16_t d; int8_t qs[32]; } opg_block_q8_0;                 /* 34 bytes  */
typedef struct { uint16_t d; uint8_t qs[16]; } opg_block_q4_0;                /* 18 bytes  */
typedef struct { uint16_t d, m; uint8_t qs[16]; } opg_block_q4_1;             /* 20 bytes  */
typedef struct { uint16_t d, dmin; uint8_t scales[12]; uint8_t qs[128]; } opg_block_q4_K; /* 144 */
typedef struct { uint8_t ql[128]; uint8_t qh[64]; int8_t scales[16]; uint16_t d; } opg_block_q6_K; /* 210 */

/* Quantized activations: d = amax/127, qs = round-half-even(x/d), sum = sum(qs). */
typedef struct { float d; int32_t sum; int8_t qs[32]; } opg_block_q8a;       /* 40 bytes  */

OPG_STATIC_ASSERT(sizeof(opg_block_q8_0) == 34, "q8_0 layout");
OPG_STATIC_ASSERT(sizeof(opg_block_q4_0) == 18, "q4_0 layout");
OPG_STATIC_ASSERT(sizeof(opg_block_q4_1) == 20, "q4_1 layout");
OPG_STATIC_ASSERT(sizeof(opg_block_q4_K) == 144, "q4_K layout");
OPG_STATIC_ASSERT(sizeof(opg_block_q6_K) == 210, "q6_K layout");
OPG_STATIC_ASSERT(sizeof(opg_block_q8a) == 40, "q8a layout");

/* Elements per block (1 for plain types), 0 for an unknown type. */
int opg_dtype_block_elems(opg_dtype t);
/* Bytes per block (per element for plain types), 0 for an unknown type. */
size_t opg_dtype_block_bytes(opg_dtype t);
/* Bytes of a row of n elements; 0 when t is unknown or n is not a multiple of the block. */
size_t opg_dtype_row_bytes(opg_dtype t, int64_t n);
/* "f32", "q4_K", ...; "unknown" for an unknown type. Static string. */
const char *opg_dtype_name(opg_dtype t);
/* 1 when t takes the integer path (quantized weights), 0 otherwise. */
int opg_dtype_is_quant(opg_dtype t);
/* For an _X8 type the GGUF type it re-lays out; t itself otherwise. */
opg_dtype opg_dtype_base(opg_dtype t);
/* 1 for the _X8 types: not row-addressable (see opg_pack_x8). */
int opg_dtype_is_x8(opg_dtype t);
/* The _X8 type of a quantized GGUF type t (every one has one); t itself
 * for any other type. */
opg_dtype opg_dtype_x8(opg_dtype t);

#ifdef __cplusplus
}
#endif

#endif
