/* act_avx2.c: AVX2 SwiGLU, lanes = elements, with the reference's bits. */
#include "elementwise_impl.h"
#include "opg_math_avx2.h"

void opg__swiglu_avx2(float *out, const float *gate, const float *up, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 s = opg_siluf_avx2(_mm256_loadu_ps(gate + i));
        _mm256_storeu_ps(out + i, _mm256_mul_ps(s, _mm256_loadu_ps(up + i)));
    }
    for (; i < n; i++) out[i] = opg_siluf(gate[i]) * up[i];
}
