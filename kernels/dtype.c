/* dtype.c: sizes and names of the element types (see dtype.h). */
#include "dtype.h"

int opg_dtype_block_elems(opg_dtype t) {
    t = opg_dtype_base(t);
    switch (t) {
    case OPG_F32: case OPG_F16: case OPG_BF16: return 1;
    case OPG_Q4_0: case OPG_Q4_1: case OPG_Q8_0: return OPG_QK;
    case OPG_Q4_K: case OPG_Q6_K: return OPG_QK_K;
    case OPG_Q4_0_X8: case OPG_Q4_1_X8: case OPG_Q8_0_X8: case OPG_Q4_K_X8: case OPG_Q6_K_X8:
        break; /* mapped to their base above */
    }
    return 0;
}

size_t opg_dtype_block_bytes(opg_dtype t) {
    t = opg_dtype_base(t);
    switch (t) {
    case OPG_F32: return 4;
    case OPG_F16: case OPG_BF16: return 2;
    case OPG_Q4_0: return sizeof(opg_block_q4_0);
    case OPG_Q4_1: return sizeof(opg_block_q4_1);
    case OPG_Q8_0: return sizeof(opg_block_q8_0);
    case OPG_Q4_K: return sizeof(opg_block_q4_K);
    case OPG_Q6_K: return sizeof(opg_block_q6_K);
    case OPG_Q4_0_X8: case OPG_Q4_1_X8: case OPG_Q8_0_X8: case OPG_Q4_K_X8: case OPG_Q6_K_X8:
        break; /* mapped to their base above */
    }
    return 0;
}

size_t opg_dtype_row_bytes(opg_dtype t, int64_t n) {
    int be = opg_dtype_block_elems(t);
    if (be == 0 || n < 0 || n % be != 0) return 0;
    return (size_t)(n / be) * opg_dtype_block_bytes(t);
}

const char *opg_dtype_name(opg_dtype t) {
    switch (t) {
    case OPG_F32: return "f32";
    case OPG_F16: return "f16";
    case OPG_BF16: return "bf16";
    case OPG_Q4_0: return "q4_0";
    case OPG_Q4_1: return "q4_1";
    case OPG_Q8_0: return "q8_0";
    case OPG_Q4_K: return "q4_K";
    case OPG_Q6_K: return "q6_K";
    case OPG_Q4_0_X8: return "q4_0x8";
    case OPG_Q4_1_X8: return "q4_1x8";
    case OPG_Q8_0_X8: return "q8_0x8";
    case OPG_Q4_K_X8: return "q4_Kx8";
    case OPG_Q6_K_X8: return "q6_Kx8";
    }
    return "unknown";
}

int opg_dtype_is_quant(opg_dtype t) {
    t = opg_dtype_base(t);
    return t == OPG_Q4_0 || t == OPG_Q4_1 || t == OPG_Q8_0 || t == OPG_Q4_K || t == OPG_Q6_K;
}

opg_dtype opg_dtype_base(opg_dtype t) {
    return opg_dtype_is_x8(t) ? (opg_dtype)(t & 0xff) : t;
}

int opg_dtype_is_x8(opg_dtype t) {
    return t == OPG_Q4_0_X8 || t == OPG_Q4_1_X8 || t == OPG_Q8_0_X8 || t == OPG_Q4_K_X8 ||
           t == OPG_Q6_K_X8;
}

opg_dtype opg_dtype_x8(opg_dtype t) {
    switch (t) {
    case OPG_Q4_0: return OPG_Q4_0_X8;
    case OPG_Q4_1: return OPG_Q4_1_X8;
    case OPG_Q8_0: return OPG_Q8_0_X8;
    case OPG_Q4_K: return OPG_Q4_K_X8;
    case OPG_Q6_K: return OPG_Q6_K_X8;
    default: return t;
    }
}
