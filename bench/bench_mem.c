/* bench_mem.c: the machine's own memory-bandwidth ceiling, STREAM style.
 *
 * copy (b -> a), read (sum of b) and triad (a = b + s*c) over arrays of
 * at least 4x the last-level cache each (so the copy moves >= 8x LLC, and at
 * least 256 MB), split over the same opg_pool the kernels use, best of
 * several reps. Bytes are counted as STREAM does (copy 2x, read 1x, triad 3x
 * the array size); write-allocate traffic of the destination is not counted.
 * The loops use explicit AVX2 loads and normal stores (no streaming stores),
 * so the compiler cannot swap them for a library memcpy. */
#include "bench.h"

#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define BENCH_HAVE_AVX2_LOOPS 1
#endif

#define BW_CHUNK ((size_t)1 << 20) /* bytes per pool task: many tasks balance the threads */

typedef enum { BW_COPY, BW_READ, BW_TRIAD } bw_op;

typedef struct {
    uint8_t *a, *b, *c;
    size_t bytes;
    bw_op op;
    int avx2;
    uint64_t sink[256]; /* per-task read sums land here so the reads stay */
} bw_ctx;

#ifdef BENCH_HAVE_AVX2_LOOPS
__attribute__((target("avx2"))) static void copy_avx2(void *dst, const void *src, size_t n) {
    __m256i *d = dst;
    const __m256i *s = src;
    for (size_t i = 0; i < n / 32; i += 4) {
        __m256i v0 = _mm256_load_si256(s + i), v1 = _mm256_load_si256(s + i + 1);
        __m256i v2 = _mm256_load_si256(s + i + 2), v3 = _mm256_load_si256(s + i + 3);
        _mm256_store_si256(d + i, v0);
        _mm256_store_si256(d + i + 1, v1);
        _mm256_store_si256(d + i + 2, v2);
        _mm256_store_si256(d + i + 3, v3);
    }
}

__attribute__((target("avx2"))) static uint64_t read_avx2(const void *src, size_t n) {
    const __m256i *s = src;
    __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
    for (size_t i = 0; i < n / 32; i += 4) {
        a0 = _mm256_add_epi64(a0, _mm256_load_si256(s + i));
        a1 = _mm256_add_epi64(a1, _mm256_load_si256(s + i + 1));
        a2 = _mm256_add_epi64(a2, _mm256_load_si256(s + i + 2));
        a3 = _mm256_add_epi64(a3, _mm256_load_si256(s + i + 3));
    }
    __m256i t = _mm256_add_epi64(_mm256_add_epi64(a0, a1), _mm256_add_epi64(a2, a3));
    uint64_t lanes[4];
    _mm256_storeu_si256((__m256i *)lanes, t);
    return lanes[0] + lanes[1] + lanes[2] + lanes[3];
}

__attribute__((target("avx2"))) static void triad_avx2(float *a, const float *b, const float *c,
                                                       size_t n) {
    const __m256 s = _mm256_set1_ps(3.0f);
    for (size_t i = 0; i < n; i += 16) {
        __m256 x0 = _mm256_add_ps(_mm256_load_ps(b + i), _mm256_mul_ps(s, _mm256_load_ps(c + i)));
        __m256 x1 = _mm256_add_ps(_mm256_load_ps(b + i + 8),
                                  _mm256_mul_ps(s, _mm256_load_ps(c + i + 8)));
        _mm256_store_ps(a + i, x0);
        _mm256_store_ps(a + i + 8, x1);
    }
}
#endif

/* Portable fallbacks (no AVX2): memcpy for copy, 4 accumulators for read. */
static uint64_t read_plain(const void *src, size_t n) {
    const uint64_t *s = src;
    uint64_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
    for (size_t i = 0; i < n / 8; i += 4) {
        a0 += s[i]; a1 += s[i + 1]; a2 += s[i + 2]; a3 += s[i + 3];
    }
    return a0 + a1 + a2 + a3;
}

static void triad_plain(float *a, const float *b, const float *c, size_t n) {
    for (size_t i = 0; i < n; i++) a[i] = b[i] + 3.0f * c[i];
}

static void bw_task(void *arg, int64_t t) {
    bw_ctx *x = arg;
    size_t off = (size_t)t * BW_CHUNK;
    size_t n = x->bytes - off < BW_CHUNK ? x->bytes - off : BW_CHUNK;
    switch (x->op) {
    case BW_COPY:
#ifdef BENCH_HAVE_AVX2_LOOPS
        if (x->avx2) { copy_avx2(x->a + off, x->b + off, n); break; }
#endif
        memcpy(x->a + off, x->b + off, n);
        break;
    case BW_READ: {
        uint64_t s;
#ifdef BENCH_HAVE_AVX2_LOOPS
        if (x->avx2) s = read_avx2(x->b + off, n);
        else
#endif
            s = read_plain(x->b + off, n);
        x->sink[t & 255] += s;
        break;
    }
    case BW_TRIAD:
#ifdef BENCH_HAVE_AVX2_LOOPS
        if (x->avx2) {
            triad_avx2((float *)(x->a + off), (const float *)(x->b + off),
                       (const float *)(x->c + off), n / 4);
            break;
        }
#endif
        triad_plain((float *)(x->a + off), (const float *)(x->b + off),
                    (const float *)(x->c + off), n / 4);
        break;
    }
}

/* Best GB/s of `reps` runs of op over the arrays on pool. */
static double bw_best(bw_ctx *x, opg_pool *pool, bw_op op, int reps) {
    static const double counted[] = {2.0, 1.0, 3.0}; /* arrays each op moves */
    int64_t tasks = (int64_t)((x->bytes + BW_CHUNK - 1) / BW_CHUNK);
    double best = 1e30;
    x->op = op;
    opg_pool_run(pool, bw_task, x, tasks); /* warm-up: threads awake, TLB */
    for (int r = 0; r < reps; r++) {
        double t0 = bench_now();
        opg_pool_run(pool, bw_task, x, tasks);
        double t = bench_now() - t0;
        if (t < best) best = t;
    }
    return counted[op] * (double)x->bytes / best * 1e-9;
}

int bench_bw_measure(const bench_env *env, int reps, bench_bw *bw) {
    /* each array >= 4x LLC and >= 128 MiB: the copy streams >= 8x LLC, >= 256 MiB */
    size_t bytes = env->llc_bytes * 4;
    if (bytes < ((size_t)128 << 20)) bytes = (size_t)128 << 20;
    bytes = (bytes + BW_CHUNK - 1) / BW_CHUNK * BW_CHUNK;

    bw_ctx x;
    memset(&x, 0, sizeof x);
    x.bytes = bytes;
    x.avx2 = opg_cpu_best_level() >= OPG_CPU_AVX2;
    x.a = bench_alloc(bytes);
    x.b = bench_alloc(bytes);
    x.c = bench_alloc(bytes);
    memset(x.b, 0x3c, bytes); /* finite floats (0.0115); the values do not matter here */
    memset(x.c, 0x3d, bytes);

    bw->array_bytes = bytes;
    bw->reps = reps;
    bw->method = x.avx2 ? "avx2 loads, normal stores" : "memcpy / plain C";
    opg_pool *pools[2] = {env->pool1, env->pool};
    for (int i = 0; i < 2; i++) {
        if (i == 1 && env->threads == 1) { /* same pool size: no second run */
            bw->copy[1] = bw->copy[0]; bw->read[1] = bw->read[0]; bw->triad[1] = bw->triad[0];
            break;
        }
        bw->copy[i] = bw_best(&x, pools[i], BW_COPY, reps);
        bw->read[i] = bw_best(&x, pools[i], BW_READ, reps);
        bw->triad[i] = bw_best(&x, pools[i], BW_TRIAD, reps);
        fprintf(stderr, "opg-bench: bandwidth, %d thread%s: copy %.1f GB/s, read %.1f GB/s, "
                        "triad %.1f GB/s\n",
                opg_pool_threads(pools[i]), opg_pool_threads(pools[i]) == 1 ? "" : "s",
                bw->copy[i], bw->read[i], bw->triad[i]);
    }
    bench_free(x.a);
    bench_free(x.b);
    bench_free(x.c);
    return 0;
}
