/* bench_cuda_ref.c: what opg-bench's GPU part compares against: the device's
 * copy bandwidth (cudaMemcpy device to device) and cuBLAS at the shape of a
 * float-weight matmul (cublasGemmEx, both operands of the weight type, fp32
 * accumulation, default math mode: what a non-deterministic engine would
 * run). Built with CUDA only (OPG_BENCH_CUDA, OPG_BENCH_CUBLAS); otherwise
 * every function answers "not available" (-1). */
#include "bench.h"

#include <stdlib.h>
#include <string.h>

#if defined(OPG_BENCH_CUDA)
#include <cuda_runtime_api.h>
#endif
#if defined(OPG_BENCH_CUBLAS)
#include <cublas_v2.h>

#include "opg_math.h"
#endif

#if defined(OPG_BENCH_CUDA)
/* Copy bandwidth is a ceiling: the best of the runs, bytes counted 2x (STREAM). */
double bench_cuda_copy_gbs(int device, int quick) {
    size_t bytes = quick ? (size_t)64 << 20 : (size_t)1 << 30;
    void *a = NULL, *b = NULL;
    double best = -1;
    if (cudaSetDevice(device) != cudaSuccess) goto out;
    if (cudaMalloc(&a, bytes) != cudaSuccess || cudaMalloc(&b, bytes) != cudaSuccess) goto out;
    if (cudaMemset(a, 1, bytes) != cudaSuccess || cudaMemset(b, 2, bytes) != cudaSuccess) goto out;
    for (int r = 0; r < (quick ? 3 : 10); r++) {
        if (cudaDeviceSynchronize() != cudaSuccess) goto out;
        double t0 = bench_now();
        if (cudaMemcpy(b, a, bytes, cudaMemcpyDeviceToDevice) != cudaSuccess ||
            cudaDeviceSynchronize() != cudaSuccess)
            goto out;
        double gbs = 2.0 * (double)bytes / (bench_now() - t0) * 1e-9;
        if (gbs > best) best = gbs;
    }
out:
    if (a) cudaFree(a);
    if (b) cudaFree(b);
    (void)cudaGetLastError();
    return best;
}
#else
double bench_cuda_copy_gbs(int device, int quick) {
    (void)device;
    (void)quick;
    return -1;
}
#endif

#if defined(OPG_BENCH_CUBLAS)
/* n values of type t from +-0.05 (f32, f16 or bf16), uploaded to dev. */
static int fill_dev(void *dev, opg_dtype t, size_t n, uint64_t seed) {
    size_t es = t == OPG_F32 ? 4 : 2;
    void *h = malloc(n * es);
    if (!h) return -1;
    bench_rng r = {seed};
    for (size_t i = 0; i < n; i++) {
        float v = bench_rng_uniform(&r, -0.05f, 0.05f);
        if (t == OPG_F32) ((float *)h)[i] = v;
        else ((uint16_t *)h)[i] = t == OPG_F16 ? opg_f32_to_f16(v) : opg_f32_to_bf16(v);
    }
    int rc = cudaMemcpy(dev, h, n * es, cudaMemcpyHostToDevice) == cudaSuccess ? 0 : -1;
    free(h);
    return rc;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* y[M][N] = x[M][K] w[N][K]^T. cuBLAS is column-major: row-major y is the
 * N x M matrix C, w the K x N matrix A, x the K x M matrix B, so C = A^T B.
 * Weights rotated through `copies` as ours are. */
double bench_cublas_matmul_s(int device, opg_dtype wt, int64_t M, int64_t N, int64_t K,
                             int copies, int quick) {
    cudaDataType_t dt = wt == OPG_F32 ? CUDA_R_32F : wt == OPG_F16 ? CUDA_R_16F
                      : wt == OPG_BF16 ? CUDA_R_16BF : (cudaDataType_t)-1;
    if ((int)dt == -1) return -1;
    size_t es = wt == OPG_F32 ? 4 : 2, wbytes = (size_t)N * (size_t)K * es;
    size_t stride = (wbytes + 4095) / 4096 * 4096;
    if (copies < 1) copies = 1;
    cublasHandle_t h = NULL;
    void *w = NULL, *x = NULL, *y = NULL;
    double *s = NULL, result = -1;
    cudaStream_t stream = NULL;
    if (cudaSetDevice(device) != cudaSuccess) goto out;
    if (cublasCreate(&h) != CUBLAS_STATUS_SUCCESS) goto out;
    if (cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking) != cudaSuccess) goto out;
    if (cublasSetStream(h, stream) != CUBLAS_STATUS_SUCCESS) goto out;
    if (cudaMalloc(&w, stride * (size_t)copies) != cudaSuccess ||
        cudaMalloc(&x, (size_t)M * (size_t)K * es) != cudaSuccess ||
        cudaMalloc(&y, (size_t)M * (size_t)N * 4) != cudaSuccess)
        goto out;
    for (int k = 0; k < copies; k++)
        if (fill_dev((char *)w + (size_t)k * stride, wt, (size_t)N * (size_t)K, 42) != 0) goto out;
    if (fill_dev(x, wt, (size_t)M * (size_t)K, 43) != 0) goto out;
    /* the fills ran on the legacy stream; the GEMMs run on a non-blocking one */
    if (cudaDeviceSynchronize() != cudaSuccess) goto out;
    const float alpha = 1.0f, beta = 0.0f;
    int next = 0;
#define GEMM()                                                                                 \
    cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, (int)N, (int)M, (int)K, &alpha,                  \
                 (char *)w + (size_t)(next++ % copies) * stride, dt, (int)K, x, dt, (int)K,    \
                 &beta, y, CUDA_R_32F, (int)N, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT)
    if (GEMM() != CUBLAS_STATUS_SUCCESS || cudaStreamSynchronize(stream) != cudaSuccess) goto out;
    double t0 = bench_now();
    if (GEMM() != CUBLAS_STATUS_SUCCESS || cudaStreamSynchronize(stream) != cudaSuccess) goto out;
    double one = bench_now() - t0, target = quick ? 5e-4 : 5e-3;
    int inner = one >= target ? 1 : (int)(target / (one > 1e-9 ? one : 1e-9)) + 1;
    if (inner > 100000) inner = 100000;
    int reps = quick ? 5 : 21;
    if (!(s = malloc(sizeof *s * (size_t)reps))) goto out;
    for (int r = 0; r < reps; r++) {
        t0 = bench_now();
        for (int i = 0; i < inner; i++)
            if (GEMM() != CUBLAS_STATUS_SUCCESS) goto out;
        if (cudaStreamSynchronize(stream) != cudaSuccess) goto out;
        s[r] = (bench_now() - t0) / inner;
    }
#undef GEMM
    qsort(s, (size_t)reps, sizeof *s, cmp_double);
    result = s[reps / 2];
out:
    free(s);
    if (h) cublasDestroy(h);
    if (stream) cudaStreamDestroy(stream);
    if (w) cudaFree(w);
    if (x) cudaFree(x);
    if (y) cudaFree(y);
    (void)cudaGetLastError();
    return result;
}
#else
double bench_cublas_matmul_s(int device, opg_dtype wt, int64_t M, int64_t N, int64_t K,
                             int copies, int quick) {
    (void)device, (void)wt, (void)M, (void)N, (void)K, (void)copies, (void)quick;
    return -1;
}
#endif
