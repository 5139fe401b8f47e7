/* math_avx2.c: array forms of the AVX2 elementary functions, so tests can
 * check them bit for bit against opg_math.h (see math_impl.h). */
#include "math_impl.h"
#include "opg_math_avx2.h"

void opg__expf_avx2_array(float *y, const float *x, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, opg_expf_avx2(_mm256_loadu_ps(x + i)));
    for (; i < n; i++) y[i] = opg_expf(x[i]);
}

void opg__siluf_avx2_array(float *y, const float *x, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, opg_siluf_avx2(_mm256_loadu_ps(x + i)));
    for (; i < n; i++) y[i] = opg_siluf(x[i]);
}
