/* softmax_avx2.c: AVX2 softmax with the reference's bits (see elementwise_impl.h).
 *
 * The max is exact in any order (NaN lanes skipped as in the reference; the
 * sign of a zero max changes no x_i - m). exp and the division take
 * lanes = elements. The sum keeps its chains: eight full 256-chunks at once,
 * one per lane, the rest scalar, partials added left to right. */
#include <math.h>

#include "contract.h"
#include "elementwise_avx2.h"
#include "elementwise_impl.h"
#include "opg_math_avx2.h"

static float max_row(const float *x, int64_t n) {
    __m256 vm = _mm256_set1_ps(-INFINITY);
    int64_t i = 0;
    /* max_ps(a, b) returns b when a is NaN: NaN inputs never enter vm. */
    for (; i + 8 <= n; i += 8) vm = _mm256_max_ps(_mm256_loadu_ps(x + i), vm);
    float lanes[8];
    _mm256_storeu_ps(lanes, vm);
    float m = -INFINITY;
    for (int j = 0; j < 8; j++)
        if (lanes[j] > m) m = lanes[j];
    for (; i < n; i++)
        if (x[i] > m) m = x[i];
    return m;
}

static float sum_row(const float *e, int64_t n) {
    const int64_t C = OPG_DOT_CHUNK;
    int64_t n_chunks = (n + C - 1) / C;
    int64_t n_full = n / C;
    float total = 0.0f;
    int64_t c = 0;
    for (; c + 8 <= n_full; c += 8) {
        const float *p[8];
        for (int j = 0; j < 8; j++) p[j] = e + (c + j) * C;
        float part[8];
        _mm256_storeu_ps(part, ew_sum8(p, C));
        for (int j = 0; j < 8; j++) total = c + j == 0 ? part[j] : total + part[j];
    }
    for (; c < n_chunks; c++) {
        int64_t k1 = (c + 1) * C < n ? (c + 1) * C : n;
        float p = 0.0f;
        for (int64_t k = c * C; k < k1; k++) p = p + e[k];
        total = c == 0 ? p : total + p;
    }
    return total;
}

static void softmax_row(float *y, const float *x, int64_t n) {
    float m = max_row(x, n);
    __m256 vm = _mm256_set1_ps(m);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, opg_expf_avx2(_mm256_sub_ps(_mm256_loadu_ps(x + i), vm)));
    for (; i < n; i++) y[i] = opg_expf(x[i] - m);
    float s = sum_row(y, n);
    __m256 vs = _mm256_set1_ps(s);
    for (i = 0; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_div_ps(_mm256_loadu_ps(y + i), vs));
    for (; i < n; i++) y[i] = y[i] / s;
}

void opg__softmax_rows_avx2(float *y, const float *x, int64_t n_rows, int64_t n) {
    for (int64_t r = 0; r < n_rows; r++) softmax_row(y + r * n, x + r * n, n);
}
