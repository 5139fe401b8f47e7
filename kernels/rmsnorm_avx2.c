/* rmsnorm_avx2.c: AVX2 RMSNorm with the reference's bits (see elementwise_impl.h).
 *
 * The sum of squares of one row is a fixed chain per 256-chunk, so lanes
 * carry whole chains: eight rows at once (lane = row), or, for the rows
 * left over, eight chunks of one row at once (lane = chunk) whose partials
 * are then added left to right as in the reference. The scaling
 * (x * inv) * w is elementwise and takes lanes = dims. */
#include <math.h>

#include "contract.h"
#include "elementwise_avx2.h"
#include "elementwise_impl.h"

/* y_i = (x_i * inv) * w_i: two roundings, no fma. */
static void scale_row(float *y, const float *x, const float *w, int64_t D, float inv) {
    __m256 vinv = _mm256_set1_ps(inv);
    int64_t i = 0;
    for (; i + 8 <= D; i += 8) {
        __m256 t = _mm256_mul_ps(_mm256_loadu_ps(x + i), vinv);
        _mm256_storeu_ps(y + i, _mm256_mul_ps(t, _mm256_loadu_ps(w + i)));
    }
    for (; i < D; i++) y[i] = (x[i] * inv) * w[i];
}

/* Canonical dot(x, x) of one row: groups of 8 full chunks in lanes, the
 * remaining chunks as scalar chains; partials combined left to right. */
static float sumsq_row(const float *x, int64_t D) {
    const int64_t C = OPG_DOT_CHUNK;
    int64_t n_chunks = (D + C - 1) / C;
    int64_t n_full = D / C;
    float total = 0.0f;
    int64_t c = 0;
    for (; c + 8 <= n_full; c += 8) {
        const float *p[8];
        for (int j = 0; j < 8; j++) p[j] = x + (c + j) * C;
        float part[8];
        _mm256_storeu_ps(part, ew_sumsq8(p, C));
        for (int j = 0; j < 8; j++) total = c + j == 0 ? part[j] : total + part[j];
    }
    for (; c < n_chunks; c++) {
        int64_t k1 = (c + 1) * C < D ? (c + 1) * C : D;
        float p = 0.0f;
        for (int64_t k = c * C; k < k1; k++) p = fmaf(x[k], x[k], p);
        total = c == 0 ? p : total + p;
    }
    return total;
}

void opg__rmsnorm_rows_avx2(float *y, const float *x, const float *w, int64_t n_rows,
                            int64_t D, float eps) {
    const int64_t C = OPG_DOT_CHUNK;
    int64_t r = 0;
    for (; r + 8 <= n_rows; r += 8) {
        __m256 total = _mm256_setzero_ps();
        for (int64_t c0 = 0; c0 < D; c0 += C) {
            const float *p[8];
            for (int j = 0; j < 8; j++) p[j] = x + (r + j) * D + c0;
            __m256 part = ew_sumsq8(p, c0 + C < D ? C : D - c0);
            total = c0 == 0 ? part : _mm256_add_ps(total, part);
        }
        __m256 ms = _mm256_div_ps(total, _mm256_set1_ps((float)D));
        __m256 inv = _mm256_div_ps(_mm256_set1_ps(1.0f),
                                   _mm256_sqrt_ps(_mm256_add_ps(ms, _mm256_set1_ps(eps))));
        float inv8[8];
        _mm256_storeu_ps(inv8, inv);
        for (int j = 0; j < 8; j++) scale_row(y + (r + j) * D, x + (r + j) * D, w, D, inv8[j]);
    }
    for (; r < n_rows; r++) {
        float ss = sumsq_row(x + r * D, D);
        float ms = ss / (float)D;
        float inv = 1.0f / sqrtf(ms + eps);
        scale_row(y + r * D, x + r * D, w, D, inv);
    }
}
