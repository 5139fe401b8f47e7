/* matmul_avx2.c: AVX2+FMA float GEMV and GEMM with the bits of the reference
 * (docs/determinism.md section 4).
 *
 * Vector lanes always hold different outputs, never different k of one
 * output: each output's chunk is one fma chain in k order from +0, and the
 * chunk partials are folded into it left to right (total = p_0, then
 * total + p_c), exactly as opg_dot_*_ref. f16/bf16 weights are widened to
 * f32 exactly when loaded, so all three types share the arithmetic.
 *
 * GEMV (M <= 8): 8 rows of W x 8 k are loaded and transposed 8x8 in
 * registers so that one vector holds W[n..n+7][k]; it is fma'd with a
 * broadcast x[k] into an accumulator whose lane i is output n+i. Up to 4 rows
 * of X share each transposed tile; with fewer, several chunks of the same
 * rows run side by side (independent chains, combined in chunk order).
 * GEMM: per 256-chunk, 16 rows of W are packed k-major (panel[k][16], lane =
 * output column) and a 6x16 register tile of Y is fed in k order. */
#include <immintrin.h>
#include <string.h>

#include "contract.h"
#include "matmul_impl.h"

#define AI static inline __attribute__((always_inline))

enum {
    CHUNK = OPG_DOT_CHUNK,
    GEMV_MAX_M = 4,    /* x rows sharing one pass over W in the GEMV kernel */
    GEMV_TILE_N = 64,  /* rows of W per GEMV task */
    GEMV_AUTO_MAX_M = 8, /* above this M, GEMM (packing W pays off); measured */
    GEMV_MAX_CP = 4,   /* chunks in flight in the GEMV kernel (4 for M = 1, 2 for M = 2) */
    MR = 6, NR = 16,   /* GEMM register tile: 6 rows of X x 16 columns of Y */
    GEMM_TILE_N = 64,  /* columns of Y per GEMM task */
    GEMM_TILE_M = 240, /* rows of Y per GEMM task (a multiple of MR) */
};

typedef struct {
    float *y;                  /* [M][N] */
    const float *x;            /* [M][K] */
    const unsigned char *w;    /* [N] rows of rb bytes */
    size_t rb;
    opg_dtype wt;
    const float *bias;         /* [N] or NULL */
    int64_t M, N, K;
    int64_t tiles_n;           /* tasks along N; task t = (t / tiles_n, t % tiles_n) */
} mm_job;

/* ---- loading W --------------------------------------------------------------- */

/* [a[0..3] | b[0..3]] of two f32 rows. */
AI __m256 pair4(const float *a, const float *b) {
    return _mm256_insertf128_ps(_mm256_castps128_ps256(_mm_loadu_ps(a)), _mm_loadu_ps(b), 1);
}

/* 4x4 transpose inside each 128-bit half. */
AI void tr4(__m256 *t, __m256 a0, __m256 a1, __m256 a2, __m256 a3) {
    __m256 u0 = _mm256_unpacklo_ps(a0, a1), u1 = _mm256_unpackhi_ps(a0, a1);
    __m256 u2 = _mm256_unpacklo_ps(a2, a3), u3 = _mm256_unpackhi_ps(a2, a3);
    t[0] = _mm256_shuffle_ps(u0, u2, 0x44);
    t[1] = _mm256_shuffle_ps(u0, u2, 0xee);
    t[2] = _mm256_shuffle_ps(u1, u3, 0x44);
    t[3] = _mm256_shuffle_ps(u1, u3, 0xee);
}

/* t[j] lane i = W row r[i] at k + j, for i, j < 8. Loading rows i and i+4
 * into the two halves leaves only in-half 4x4 transposes to do. f16/bf16
 * rows are loaded 8 values at a time and split into halves before widening. */
AI void tile8(__m256 t[8], const void *const r[8], int64_t k, opg_dtype wt) {
    __m256 a[4], b[4];
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) {
        if (wt == OPG_F32) {
            const float *ri = (const float *)r[i] + k, *ri4 = (const float *)r[i + 4] + k;
            a[i] = pair4(ri, ri4);
            b[i] = pair4(ri + 4, ri4 + 4);
        } else {
            __m128i lo = _mm_loadu_si128((const __m128i *)((const uint16_t *)r[i] + k));
            __m128i hi = _mm_loadu_si128((const __m128i *)((const uint16_t *)r[i + 4] + k));
            if (wt == OPG_F16) {
                a[i] = _mm256_cvtph_ps(_mm_unpacklo_epi64(lo, hi));
                b[i] = _mm256_cvtph_ps(_mm_unpackhi_epi64(lo, hi));
            } else { /* bf16: (0, h) interleaved as 16-bit pairs is h << 16 */
                __m256i v = _mm256_inserti128_si256(_mm256_castsi128_si256(lo), hi, 1);
                a[i] = _mm256_castsi256_ps(_mm256_unpacklo_epi16(_mm256_setzero_si256(), v));
                b[i] = _mm256_castsi256_ps(_mm256_unpackhi_epi16(_mm256_setzero_si256(), v));
            }
        }
    }
    tr4(t, a[0], a[1], a[2], a[3]);
    tr4(t + 4, b[0], b[1], b[2], b[3]);
}

/* tile8 for the last rem < 8 k of a chunk; t[j] for j >= rem are zero and
 * must not be used (an extra fma of +0 could turn an accumulated -0 into +0). */
static void tile8_tail(__m256 t[8], const void *const r[8], int64_t k, int rem, opg_dtype wt) {
    size_t es = wt == OPG_F32 ? 4 : 2;
    _Alignas(32) unsigned char buf[8][32];
    const void *p[8];
    memset(buf, 0, sizeof buf);
    for (int i = 0; i < 8; i++) {
        memcpy(buf[i], (const unsigned char *)r[i] + (size_t)k * es, (size_t)rem * es);
        p[i] = buf[i];
    }
    tile8(t, p, 0, wt);
}

/* Row n of W, clamped into range: lanes past N compute a copy of row N-1
 * and are never stored. */
static const void *wrow(const mm_job *j, int64_t n) {
    return j->w + (size_t)(n < j->N ? n : j->N - 1) * j->rb;
}

/* y[m][n0 .. n0+cnt) from the lanes of v (cnt <= 8), = v or y + v. */
AI void put8(float *y, __m256 v, int cnt, int first) {
    if (cnt == 8) {
        _mm256_storeu_ps(y, first ? v : _mm256_add_ps(_mm256_loadu_ps(y), v));
        return;
    }
    _Alignas(32) float tmp[8];
    _mm256_store_ps(tmp, v);
    for (int i = 0; i < cnt; i++) y[i] = first ? tmp[i] : y[i] + tmp[i];
}

/* total = total + bias[n] over a tile, after every chunk is folded in. */
static void add_bias(const mm_job *j, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
    if (!j->bias) return;
    for (int64_t m = m0; m < m1; m++) {
        float *yr = j->y + m * j->N;
        int64_t n = n0;
        for (; n + 8 <= n1; n += 8)
            _mm256_storeu_ps(yr + n, _mm256_add_ps(_mm256_loadu_ps(yr + n),
                                                   _mm256_loadu_ps(j->bias + n)));
        for (; n < n1; n++) yr[n] = yr[n] + j->bias[n];
    }
}

/* ---- GEMV: lanes = 8 consecutive rows of W ----------------------------------- */

/* Chunks c0, c0 + 256, ... (ncp of them, each of length L: all full, or
 * ncp = 1) of outputs y[m0 .. m0+mx)[n0 .. n0+8), rows r of W. The ncp
 * chunks are independent fma chains (more work in flight than one chain of
 * 8 dependent fmas per tile); their partials are folded into y in chunk order:
 * total = p_0, then total = total + p_c. */
AI void gemv_chunks(const mm_job *j, const void *const r[8], const float *const xr[],
                    int64_t n0, int64_t m0, int64_t c0, int64_t L, const int ncp, const int mx,
                    const opg_dtype wt) {
    __m256 acc[GEMV_MAX_CP][GEMV_MAX_M], t[8];
#pragma GCC unroll 8
    for (int c = 0; c < ncp; c++)
#pragma GCC unroll 8
        for (int m = 0; m < mx; m++) acc[c][m] = _mm256_setzero_ps();
    int64_t kk = 0;
    for (; kk + 8 <= L; kk += 8) {
#pragma GCC unroll 8
        for (int c = 0; c < ncp; c++) {
            int64_t k = c0 + c * CHUNK + kk;
            tile8(t, r, k, wt);
#pragma GCC unroll 8
            for (int q = 0; q < 8; q++)
#pragma GCC unroll 8
                for (int m = 0; m < mx; m++)
                    acc[c][m] = _mm256_fmadd_ps(t[q], _mm256_broadcast_ss(&xr[m][k + q]), acc[c][m]);
        }
    }
    if (kk < L) { /* ncp == 1 here: only the last chunk is partial */
        int rem = (int)(L - kk);
        tile8_tail(t, r, c0 + kk, rem, wt);
        for (int q = 0; q < rem; q++)
#pragma GCC unroll 8
            for (int m = 0; m < mx; m++)
                acc[0][m] = _mm256_fmadd_ps(t[q], _mm256_broadcast_ss(&xr[m][c0 + kk + q]),
                                            acc[0][m]);
    }
    int64_t left = j->N - n0;
    int cnt = left < 8 ? (int)left : 8;
#pragma GCC unroll 8
    for (int c = 0; c < ncp; c++)
#pragma GCC unroll 8
        for (int m = 0; m < mx; m++)
            put8(j->y + (m0 + m) * j->N + n0, acc[c][m], cnt, c0 + c * CHUNK == 0);
}

/* Outputs y[m0 .. m0+mx)[n0 .. n0+8): ncp full chunks at a time, then the
 * rest one by one. */
AI void gemv_rows(const mm_job *j, int64_t n0, int64_t m0, const int mx, const int ncp,
                  const opg_dtype wt) {
    const void *r[8];
    const float *xr[GEMV_MAX_M];
    for (int i = 0; i < 8; i++) r[i] = wrow(j, n0 + i);
    for (int m = 0; m < mx; m++) xr[m] = j->x + (m0 + m) * j->K;
    int64_t c0 = 0;
    for (; c0 + ncp * CHUNK <= j->K; c0 += ncp * CHUNK)
        gemv_chunks(j, r, xr, n0, m0, c0, CHUNK, ncp, mx, wt);
    for (; c0 < j->K; c0 += CHUNK)
        gemv_chunks(j, r, xr, n0, m0, c0, j->K - c0 < CHUNK ? j->K - c0 : CHUNK, 1, mx, wt);
}

/* Rows [n0, n1) of W against every row of X. The last group of 8 may run
 * past N: it reads row N-1 again (wrow) and stores only rows < N. */
AI void gemv_tile(const mm_job *j, int64_t n0, int64_t n1, const opg_dtype wt) {
    for (int64_t m0 = 0; m0 < j->M; m0 += GEMV_MAX_M) {
        int64_t mx = j->M - m0 < GEMV_MAX_M ? j->M - m0 : GEMV_MAX_M;
        for (int64_t n = n0; n < n1; n += 8) {
            switch (mx) {
            case 1: gemv_rows(j, n, m0, 1, 4, wt); break;
            case 2: gemv_rows(j, n, m0, 2, 2, wt); break;
            case 3: gemv_rows(j, n, m0, 3, 1, wt); break;
            default: gemv_rows(j, n, m0, 4, 1, wt); break;
            }
        }
    }
}

static void gemv_task(void *ctx, int64_t t) {
    const mm_job *j = ctx;
    int64_t n0 = t * GEMV_TILE_N, n1 = n0 + GEMV_TILE_N < j->N ? n0 + GEMV_TILE_N : j->N;
    switch (j->wt) {
    case OPG_F16: gemv_tile(j, n0, n1, OPG_F16); break;
    case OPG_BF16: gemv_tile(j, n0, n1, OPG_BF16); break;
    default: gemv_tile(j, n0, n1, OPG_F32); break;
    }
    add_bias(j, 0, j->M, n0, n1);
}

/* ---- GEMM: W packed k-major, 6x16 register tile -------------------------------- */

/* panel[kk][i] = W[row i][c0 + kk] for kk < L, i < 16 (32-byte aligned). */
AI void pack_panel(float *panel, const void *const r[16], int64_t c0, int64_t L,
                   const opg_dtype wt) {
    __m256 t[8];
    for (int g = 0; g < 2; g++) {
        int64_t kk = 0;
        for (; kk + 8 <= L; kk += 8) {
            tile8(t, r + 8 * g, c0 + kk, wt);
#pragma GCC unroll 8
            for (int q = 0; q < 8; q++) _mm256_store_ps(panel + (kk + q) * NR + 8 * g, t[q]);
        }
        if (kk < L) {
            tile8_tail(t, r + 8 * g, c0 + kk, (int)(L - kk), wt);
            for (int q = 0; q < L - kk; q++) _mm256_store_ps(panel + (kk + q) * NR + 8 * g, t[q]);
        }
    }
}

/* y[0 .. mr)[0 .. ncols) (row stride ldy) = or += the chunk's partial
 * sums of x[i][0 .. L) (stride ldx) against the panel. */
AI void gemm_micro(float *y, int64_t ldy, const float *x, int64_t ldx, const float *panel,
                   int64_t L, int ncols, int first, const int mr) {
    __m256 acc[MR][2];
#pragma GCC unroll 8
    for (int i = 0; i < mr; i++) acc[i][0] = acc[i][1] = _mm256_setzero_ps();
    for (int64_t kk = 0; kk < L; kk++) {
        __m256 w0 = _mm256_load_ps(panel + kk * NR), w1 = _mm256_load_ps(panel + kk * NR + 8);
#pragma GCC unroll 8
        for (int i = 0; i < mr; i++) {
            __m256 xb = _mm256_broadcast_ss(x + i * ldx + kk);
            acc[i][0] = _mm256_fmadd_ps(w0, xb, acc[i][0]);
            acc[i][1] = _mm256_fmadd_ps(w1, xb, acc[i][1]);
        }
    }
#pragma GCC unroll 8
    for (int i = 0; i < mr; i++) {
        put8(y + i * ldy, acc[i][0], ncols < 8 ? ncols : 8, first);
        if (ncols > 8) put8(y + i * ldy + 8, acc[i][1], ncols - 8, first);
    }
}

AI void gemm_tile(const mm_job *j, int64_t m0, int64_t m1, int64_t n0, int64_t n1,
                  const opg_dtype wt) {
    _Alignas(32) float panel[CHUNK * NR];
    const int64_t N = j->N, K = j->K;
    for (int64_t c0 = 0; c0 < K; c0 += CHUNK) {
        int64_t L = K - c0 < CHUNK ? K - c0 : CHUNK;
        for (int64_t p0 = n0; p0 < n1; p0 += NR) {
            const void *r[NR];
            for (int i = 0; i < NR; i++) r[i] = wrow(j, p0 + i);
            pack_panel(panel, r, c0, L, wt);
            int ncols = n1 - p0 < NR ? (int)(n1 - p0) : NR;
            for (int64_t i0 = m0; i0 < m1; i0 += MR) {
                float *y = j->y + i0 * N + p0;
                const float *x = j->x + i0 * K + c0;
                switch (m1 - i0 < MR ? m1 - i0 : MR) {
                case 1: gemm_micro(y, N, x, K, panel, L, ncols, c0 == 0, 1); break;
                case 2: gemm_micro(y, N, x, K, panel, L, ncols, c0 == 0, 2); break;
                case 3: gemm_micro(y, N, x, K, panel, L, ncols, c0 == 0, 3); break;
                case 4: gemm_micro(y, N, x, K, panel, L, ncols, c0 == 0, 4); break;
                case 5: gemm_micro(y, N, x, K, panel, L, ncols, c0 == 0, 5); break;
                default: gemm_micro(y, N, x, K, panel, L, ncols, c0 == 0, 6); break;
                }
            }
        }
    }
}

static void gemm_task(void *ctx, int64_t t) {
    const mm_job *j = ctx;
    int64_t n0 = (t % j->tiles_n) * GEMM_TILE_N, m0 = (t / j->tiles_n) * GEMM_TILE_M;
    int64_t n1 = n0 + GEMM_TILE_N < j->N ? n0 + GEMM_TILE_N : j->N;
    int64_t m1 = m0 + GEMM_TILE_M < j->M ? m0 + GEMM_TILE_M : j->M;
    switch (j->wt) {
    case OPG_F16: gemm_tile(j, m0, m1, n0, n1, OPG_F16); break;
    case OPG_BF16: gemm_tile(j, m0, m1, n0, n1, OPG_BF16); break;
    default: gemm_tile(j, m0, m1, n0, n1, OPG_F32); break;
    }
    add_bias(j, m0, m1, n0, n1);
}

void opg__matmul_float_avx2(opg_pool *pool, float *y, const float *x, const void *w,
                            opg_dtype wt, const float *bias, int64_t M, int64_t N, int64_t K,
                            opg__mm_path path) {
    mm_job j = {y, x, w, (size_t)K * (wt == OPG_F32 ? 4 : 2), wt, bias, M, N, K, 0};
    if (path == OPG__MM_AUTO) path = M <= GEMV_AUTO_MAX_M ? OPG__MM_GEMV : OPG__MM_GEMM;
    if (path == OPG__MM_GEMV) {
        j.tiles_n = (N + GEMV_TILE_N - 1) / GEMV_TILE_N;
        opg_pool_run(pool, gemv_task, &j, j.tiles_n);
    } else {
        j.tiles_n = (N + GEMM_TILE_N - 1) / GEMM_TILE_N;
        opg_pool_run(pool, gemm_task, &j, j.tiles_n * ((M + GEMM_TILE_M - 1) / GEMM_TILE_M));
    }
}
