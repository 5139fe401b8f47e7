/* bench_backend.c: opg-bench --backend B: the ops of a backend (backend.h)
 * as the model calls them, timed on B and checked bit for bit against the
 * cpu backend; with --model, a whole model on B too (bench_backend_model.c).
 * On a GPU this is opg-bench's GPU part (--backend cuda); on the cpu backend
 * the same code runs in CI, its check then being T threads against 1.
 *
 * Timing: a warm-up call, then samples of `inner` calls followed by the
 * backend's sync (so a GPU's queue is drained inside the sample), inner
 * chosen so a sample lasts >= 5 ms; the median per call. Matmul weights are
 * rotated through copies totalling > 512 MiB (4x the largest GPU L2 or CPU
 * LLC around), so a GEMV streams them from memory as in real decoding.
 * Next to float GEMMs, cuBLAS at the same shape (both operands of the weight
 * type, fp32 accumulation, its fastest default) says what determinism costs;
 * next to memory-bound ops, the device's own copy bandwidth. */
#include "bench.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <errno.h>

#include "backend.h"
#include "contract.h"

#define ROTATE_BYTES (512ull << 20)
#define NBUF 4

typedef enum { OP_MATMUL, OP_RMSNORM, OP_ROPE, OP_ATTENTION, OP_SWIGLU, OP_ADD, OP_EMBED,
               OP_FINGERPRINT, OP_SAMPLE } bk_op;

typedef struct {
    const char *name, *group;
    bk_op op;
    opg_dtype wt;         /* matmul weights, embedding table */
    int64_t M, N, K;      /* matmul; row ops: M rows of N */
    int64_t n_q, pos0;    /* attention, rope (n_q tokens at pos0) */

    /* set by setup */
    char shape[48];
    double flops, bytes;  /* per call */
    int mem_bound;
    int copies;           /* weight copies rotated (matmul) */
    size_t size[NBUF];    /* bytes of each buffer (one copy) */
    size_t stride;        /* bytes between weight copies */
    void *host[NBUF];     /* inputs' contents; NULL for outputs */
    int out;              /* buffer holding the output; -1: host fingerprints or token */
    opg_sample_params sp; /* sample */
    int32_t *tokens;      /* embedding ids, rope/attention positions */
    double *inv_freq;

    /* results */
    int skipped, failed, bits_same;
    int reps, inner;
    double median_s, cublas_s;
    char err[256];
} bk_case;

typedef struct {
    opg_backend *be, *ref;
    const bench_backend_opts *o;
    int device;           /* CUDA device of be, -1 for the cpu */
    double copy_gbs;      /* be's copy bandwidth (GB/s), for % of copy */
    const char *copy_how;
} bk_env;

/* ---- the case list ---------------------------------------------------------- */

static int n_cases_built;

static bk_case *add(bk_case *cs, int max, const char *name, const char *group, bk_op op) {
    if (n_cases_built >= max) return NULL;
    bk_case *c = &cs[n_cases_built++];
    memset(c, 0, sizeof *c);
    c->name = name;
    c->group = group;
    c->op = op;
    c->cublas_s = -1;
    return c;
}

/* Llama-7B-like shapes as in the CPU part (hidden 4096, FFN 11008, 32 query
 * heads over 8 KV heads of 128, vocabulary 32000), prefill batches of 512. */
static int build_cases(bk_case *cs, int max, int quick) {
    static const struct { const char *gemv, *gemm; opg_dtype t; } types[] = {
        {"gemv_f32", "gemm_f32", OPG_F32},    {"gemv_f16", "gemm_f16", OPG_F16},
        {"gemv_bf16", "gemm_bf16", OPG_BF16}, {"gemv_q8_0", "gemm_q8_0", OPG_Q8_0},
        {"gemv_q4_0", "gemm_q4_0", OPG_Q4_0}, {"gemv_q4_1", "gemm_q4_1", OPG_Q4_1},
        {"gemv_q4_K", "gemm_q4_K", OPG_Q4_K}, {"gemv_q6_K", "gemm_q6_K", OPG_Q6_K},
    };
    const int64_t dim = quick ? 1024 : 4096, ffn = quick ? 2752 : 11008;
    const int64_t rows = quick ? 16 : 512, ctx = quick ? 256 : 4096;
    n_cases_built = 0;
    bk_case *c;
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        for (int g = 0; g < 2; g++) {
            if (!(c = add(cs, max, g ? types[i].gemm : types[i].gemv, g ? "gemm" : "gemv",
                          OP_MATMUL)))
                return n_cases_built;
            c->wt = types[i].t;
            c->M = g ? rows : 1;
            c->N = c->K = dim;
        }
    }
    if ((c = add(cs, max, "rmsnorm", "rmsnorm", OP_RMSNORM))) c->M = rows, c->N = dim;
    if ((c = add(cs, max, "rope", "rope", OP_ROPE))) c->n_q = rows, c->pos0 = ctx - rows;
    if ((c = add(cs, max, "attn_decode", "attention", OP_ATTENTION))) c->n_q = 1, c->pos0 = ctx - 1;
    if ((c = add(cs, max, "attn_prefill", "attention", OP_ATTENTION))) c->n_q = rows, c->pos0 = 0;
    if ((c = add(cs, max, "swiglu", "swiglu", OP_SWIGLU))) c->M = rows, c->N = ffn;
    if ((c = add(cs, max, "add", "add", OP_ADD))) c->M = rows, c->N = dim;
    if ((c = add(cs, max, "embed_q8_0", "embed", OP_EMBED)))
        c->wt = OPG_Q8_0, c->M = rows, c->N = dim, c->K = 32000;
    if ((c = add(cs, max, "fingerprint", "fingerprint", OP_FINGERPRINT))) c->M = rows, c->N = dim;
    /* one logits row of the vocabulary: top-k/top-p as chat defaults, and the
     * full distribution (the whole vocabulary sorted) */
    if ((c = add(cs, max, "sample_topk", "sample", OP_SAMPLE)))
        c->M = 1, c->N = 32000, c->sp = (opg_sample_params){0.8f, 40, 0.95f, 7};
    if ((c = add(cs, max, "sample_full", "sample", OP_SAMPLE)))
        c->M = 1, c->N = 32000, c->sp = (opg_sample_params){1.0f, 0, 0.0f, 7};
    return n_cases_built;
}

/* ---- setup: shapes, sizes, host inputs ---------------------------------------------- */

enum { HEADS = 32, KV_HEADS = 8, HEAD_DIM = 128 };

static float *host_f32(bench_rng *r, size_t n, float lo, float hi) {
    float *p = bench_alloc(n * sizeof *p);
    bench_fill_f32(r, p, n, lo, hi);
    return p;
}

static int setup(bk_case *c, int quick) {
    bench_rng r = {0x0b5e55edull + (uint64_t)c->op * 7919u + (uint64_t)c->wt * 104729u +
                   (uint64_t)c->M};
    const size_t f = sizeof(float);
    c->out = 2;
    switch (c->op) {
    case OP_MATMUL: {
        size_t row = opg_dtype_row_bytes(c->wt, c->K);
        size_t wbytes = (size_t)c->N * row;
        c->stride = (wbytes + 4095) / 4096 * 4096;
        c->copies = quick ? 1 : (int)(ROTATE_BYTES / wbytes + 1);
        c->size[0] = (size_t)(c->M * c->K) * f;
        c->size[1] = wbytes;
        c->size[2] = (size_t)(c->M * c->N) * f;
        c->host[0] = host_f32(&r, (size_t)(c->M * c->K), -1.0f, 1.0f);
        c->host[1] = bench_alloc(wbytes);
        bench_fill_weights(&r, c->host[1], c->wt, c->N, c->K);
        c->flops = 2.0 * (double)c->M * (double)c->N * (double)c->K;
        c->bytes = (double)(wbytes + c->size[0] + c->size[2]);
        c->mem_bound = c->M == 1;
        snprintf(c->shape, sizeof c->shape, "%lldx%lldx%lld", (long long)c->M, (long long)c->N,
                 (long long)c->K);
        return 0;
    }
    case OP_RMSNORM:
        c->size[0] = (size_t)(c->M * c->N) * f;
        c->size[1] = (size_t)c->N * f;
        c->size[2] = c->size[0];
        c->host[0] = host_f32(&r, (size_t)(c->M * c->N), -2.0f, 2.0f);
        c->host[1] = host_f32(&r, (size_t)c->N, 0.5f, 1.5f);
        c->bytes = 2.0 * (double)c->size[0];
        break;
    case OP_SWIGLU:
    case OP_ADD:
        c->size[0] = c->size[1] = c->size[2] = (size_t)(c->M * c->N) * f;
        c->host[0] = host_f32(&r, (size_t)(c->M * c->N), -8.0f, 8.0f);
        c->host[1] = host_f32(&r, (size_t)(c->M * c->N), -2.0f, 2.0f);
        c->bytes = 3.0 * (double)c->size[0];
        break;
    case OP_ROPE: {
        size_t n = (size_t)c->n_q * HEADS * HEAD_DIM;
        c->size[0] = n * f;
        c->host[0] = host_f32(&r, n, -1.0f, 1.0f);
        c->out = 0; /* in place */
        c->tokens = bench_alloc((size_t)c->n_q * sizeof *c->tokens);
        for (int64_t i = 0; i < c->n_q; i++) c->tokens[i] = (int32_t)(c->pos0 + i);
        c->inv_freq = bench_alloc(HEAD_DIM / 2 * sizeof *c->inv_freq);
        for (int i = 0; i < HEAD_DIM / 2; i++)
            c->inv_freq[i] = pow(10000.0, -2.0 * i / (double)HEAD_DIM);
        c->bytes = 2.0 * (double)c->size[0];
        snprintf(c->shape, sizeof c->shape, "%lldx%dx%d @%lld", (long long)c->n_q, HEADS,
                 HEAD_DIM, (long long)c->pos0);
        return 0;
    }
    case OP_ATTENTION: {
        int64_t ctx = c->pos0 + c->n_q;
        size_t qn = (size_t)c->n_q * HEADS * HEAD_DIM, kvn = (size_t)ctx * KV_HEADS * HEAD_DIM;
        c->size[0] = c->size[3] = qn * f;
        c->size[1] = c->size[2] = kvn * f;
        c->host[0] = host_f32(&r, qn, -1.0f, 1.0f);
        c->host[1] = host_f32(&r, kvn, -1.0f, 1.0f);
        c->host[2] = host_f32(&r, kvn, -1.0f, 1.0f);
        c->out = 3;
        /* causal: query i sees pos0 + i + 1 keys; QK^T and PV per head */
        double pairs = (double)c->n_q * (double)c->pos0 + (double)c->n_q * (c->n_q + 1) / 2.0;
        c->flops = 4.0 * HEADS * HEAD_DIM * pairs;
        c->bytes = (double)(2 * qn + 2 * kvn) * f;
        c->mem_bound = c->n_q == 1;
        snprintf(c->shape, sizeof c->shape, "q%lld ctx%lld %d/%dx%d", (long long)c->n_q,
                 (long long)ctx, HEADS, KV_HEADS, HEAD_DIM);
        return 0;
    }
    case OP_EMBED: {
        size_t row = opg_dtype_row_bytes(c->wt, c->N);
        c->size[0] = (size_t)c->K * row;
        c->size[1] = (size_t)(c->M * c->N) * f;
        c->host[0] = bench_alloc(c->size[0]);
        bench_fill_weights(&r, c->host[0], c->wt, c->K, c->N);
        c->out = 1;
        c->tokens = bench_alloc((size_t)c->M * sizeof *c->tokens);
        for (int64_t i = 0; i < c->M; i++) c->tokens[i] = (int32_t)(bench_rng_u64(&r) % (uint64_t)c->K);
        c->bytes = (double)c->M * (double)(row + (size_t)c->N * f);
        snprintf(c->shape, sizeof c->shape, "%lld of %lldx%lld", (long long)c->M, (long long)c->K,
                 (long long)c->N);
        return 0;
    }
    case OP_FINGERPRINT:
        c->size[0] = (size_t)(c->M * c->N) * f;
        c->host[0] = host_f32(&r, (size_t)(c->M * c->N), -4.0f, 4.0f);
        c->out = -1;
        c->bytes = (double)c->size[0];
        break;
    case OP_SAMPLE:
        c->size[0] = (size_t)c->N * f;
        c->host[0] = host_f32(&r, (size_t)c->N, -12.0f, 12.0f);
        c->out = -1;
        snprintf(c->shape, sizeof c->shape, "%lld T%.1f k%d p%.2f", (long long)c->N,
                 (double)c->sp.temperature, c->sp.top_k, (double)c->sp.top_p);
        return 0;
    }
    c->mem_bound = 1;
    snprintf(c->shape, sizeof c->shape, "%lldx%lld", (long long)c->M, (long long)c->N);
    return 0;
}

static void teardown(bk_case *c) {
    for (int i = 0; i < NBUF; i++) {
        bench_free(c->host[i]);
        c->host[i] = NULL;
    }
    bench_free(c->tokens);
    bench_free(c->inv_freq);
    c->tokens = NULL;
    c->inv_freq = NULL;
}

/* ---- buffers on a backend --------------------------------------------------------- */

typedef struct {
    opg_backend *be;
    opg_buf *b[NBUF];
    uint64_t *fp; /* host fingerprints (OP_FINGERPRINT) or the token (OP_SAMPLE) */
    int copies;
} bk_bufs;

static void bufs_free(bk_bufs *u) {
    for (int i = 0; i < NBUF; i++) u->be->ops->free(u->be, u->b[i]);
    free(u->fp);
    memset(u->b, 0, sizeof u->b);
    u->fp = NULL;
}

/* Uploads the inputs (again): before a compared run, in-place ops start from
 * the same values on both backends. */
static opg_status bufs_fill(bk_case *c, bk_bufs *u) {
    for (int i = 0; i < NBUF; i++) {
        if (!c->host[i]) continue;
        int n = i == 1 && c->op == OP_MATMUL ? u->copies : 1;
        for (int k = 0; k < n; k++) {
            opg_status st = u->be->ops->upload(u->be, opg_view_of(u->b[i], (size_t)k * c->stride),
                                               c->host[i], c->size[i]);
            if (st) return st;
        }
    }
    return OPG_OK;
}

static opg_status bufs_new(bk_case *c, opg_backend *be, int copies, bk_bufs *u) {
    memset(u, 0, sizeof *u);
    u->be = be;
    u->copies = copies;
    for (int i = 0; i < NBUF; i++) {
        if (!c->size[i]) continue;
        size_t bytes = i == 1 && c->op == OP_MATMUL ? c->stride * (size_t)copies : c->size[i];
        opg_status st = be->ops->alloc(be, bytes, &u->b[i]);
        if (st) {
            bufs_free(u);
            return st;
        }
    }
    if ((c->op == OP_FINGERPRINT || c->op == OP_SAMPLE) &&
        !(u->fp = calloc((size_t)c->M, sizeof *u->fp))) {
        bufs_free(u);
        return opg__fail(OPG_ERR_NOMEM, "out of host memory");
    }
    opg_status st = bufs_fill(c, u);
    if (st) bufs_free(u);
    return st;
}

/* One call of the op, weights from copy `copy`. */
static opg_status run_op(const bk_case *c, bk_bufs *u, int copy) {
    opg_backend *be = u->be;
    const opg_backend_ops *o = be->ops;
    opg_view v0 = opg_view_of(u->b[0], 0), v1 = opg_view_of(u->b[1], 0),
             v2 = opg_view_of(u->b[2], 0), v3 = opg_view_of(u->b[3], 0), none = {0};
    switch (c->op) {
    case OP_MATMUL:
        v1.off = (size_t)copy * c->stride;
        return o->matmul(be, v2, v0, v1, c->wt, none, c->M, c->N, c->K);
    case OP_RMSNORM: return o->rmsnorm(be, v2, v0, v1, c->M, c->N, 1e-5f);
    case OP_ROPE:
        return o->rope(be, v0, c->n_q, c->tokens, HEADS, HEAD_DIM, HEAD_DIM, c->inv_freq,
                       OPG_ROPE_NORMAL);
    case OP_ATTENTION:
        return o->attention(be, v3, v0, v1, v2, c->n_q, c->pos0, HEADS, KV_HEADS, HEAD_DIM,
                            1.0f / sqrtf((float)HEAD_DIM));
    case OP_SWIGLU: return o->swiglu(be, v2, v0, v1, c->M * c->N);
    case OP_ADD: return o->add(be, v2, v0, v1, c->M * c->N);
    case OP_EMBED: return o->embed(be, v1, v0, c->wt, c->N, c->K, c->tokens, c->M);
    case OP_FINGERPRINT: return o->fingerprint(be, u->fp, v0, c->M, c->N, c->N);
    case OP_SAMPLE:
        return o->sample(be, (int64_t *)u->fp, v0, c->N, &c->sp, (uint64_t)copy);
    }
    return opg__fail(OPG_ERR_ARG, "unknown op");
}

/* The output's bytes, downloaded into a new host array (caller frees). */
static opg_status fetch_out(const bk_case *c, bk_bufs *u, void **out, size_t *bytes) {
    *bytes = c->out < 0 ? (size_t)c->M * sizeof *u->fp : c->size[c->out];
    *out = bench_alloc(*bytes);
    if (c->out < 0) {
        memcpy(*out, u->fp, *bytes);
        return OPG_OK;
    }
    return u->be->ops->download(u->be, *out, opg_view_of(u->b[c->out], 0), *bytes);
}

/* ---- one case ------------------------------------------------------------------------ */

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Records the failure of the last opg call (its message). */
static int fail(bk_case *c, const char *what) {
    snprintf(c->err, sizeof c->err, "%s: %s", what, opg_last_error());
    c->failed = 1;
    return -1;
}

static int time_case(bk_case *c, bk_bufs *u, const bk_env *e) {
    const double target = e->o->quick ? 5e-4 : 5e-3, budget = e->o->quick ? 0.05 : 2.0;
    opg_backend *be = u->be;
    int next = 0;
    opg_status st;
    if ((st = run_op(c, u, next++ % u->copies)) || (st = be->ops->sync(be)))
        return fail(c, "warm-up");
    double t0 = bench_now();
    if ((st = run_op(c, u, next++ % u->copies)) || (st = be->ops->sync(be)))
        return fail(c, "run");
    double one = bench_now() - t0;
    if (one < 1e-9) one = 1e-9;
    c->inner = one >= target ? 1 : (int)(target / one) + 1;
    if (c->inner > 100000) c->inner = 100000;
    c->reps = e->o->reps;
    if (c->reps <= 0) {
        int by_budget = (int)(budget / (one * c->inner));
        c->reps = e->o->quick ? 5 : 21;
        if (by_budget < c->reps) c->reps = by_budget < 3 ? 3 : by_budget;
    }
    double *s = malloc(sizeof *s * (size_t)c->reps);
    if (!s) {
        snprintf(c->err, sizeof c->err, "timing: out of host memory");
        c->failed = 1;
        return -1;
    }
    for (int r = 0; r < c->reps; r++) {
        t0 = bench_now();
        for (int i = 0; i < c->inner; i++)
            if ((st = run_op(c, u, next++ % u->copies))) break;
        if (!st) st = be->ops->sync(be);
        if (st) {
            free(s);
            return fail(c, "run");
        }
        s[r] = (bench_now() - t0) / c->inner;
    }
    qsort(s, (size_t)c->reps, sizeof *s, cmp_double);
    c->median_s = c->reps % 2 ? s[c->reps / 2] : 0.5 * (s[c->reps / 2 - 1] + s[c->reps / 2]);
    free(s);
    return 0;
}

/* The output of one run from fresh inputs on the backend under test, against
 * the reference backend's. */
static int check_case(bk_case *c, bk_bufs *u, const bk_env *e) {
    opg_status st;
    void *got = NULL, *want = NULL;
    size_t n = 0, n2 = 0;
    if ((st = bufs_fill(c, u)) || (st = run_op(c, u, 0)) || (st = fetch_out(c, u, &got, &n)))
        return bench_free(got), fail(c, "checked run");
    bk_bufs r;
    if ((st = bufs_new(c, e->ref, 1, &r))) return bench_free(got), fail(c, "reference setup");
    st = run_op(c, &r, 0);
    if (!st) st = fetch_out(c, &r, &want, &n2);
    bufs_free(&r);
    if (st) {
        bench_free(got);
        bench_free(want);
        return fail(c, "reference run");
    }
    c->bits_same = n == n2 && memcmp(got, want, n) == 0;
    if (!c->bits_same) {
        size_t i = 0;
        const uint8_t *g = got, *w = want;
        while (i < n && g[i] == w[i]) i++;
        size_t word = i / 4 * 4;
        uint32_t gw = 0, ww = 0;
        memcpy(&gw, g + word, 4);
        memcpy(&ww, w + word, 4);
        snprintf(c->err, sizeof c->err, "byte %zu of %zu differs (word %08x, reference %08x)", i,
                 n, gw, ww);
    }
    bench_free(got);
    bench_free(want);
    return c->bits_same ? 0 : -1;
}

static int measure(bk_case *c, const bk_env *e) {
    if (setup(c, e->o->quick) != 0) return -1;
    fprintf(stderr, "opg-bench: %-14s %s ...\n", c->name, c->shape);
    bk_bufs u;
    opg_status st = bufs_new(c, e->be, c->copies > 0 ? c->copies : 1, &u);
    if (st) {
        fail(c, "setup");
        teardown(c);
        return -1;
    }
    int rc = time_case(c, &u, e);
    bufs_free(&u);
    if (rc == 0) {
        /* a second set without copies: keeps the device's peak memory down */
        if ((st = bufs_new(c, e->be, 1, &u))) rc = fail(c, "setup");
        else {
            rc = check_case(c, &u, e);
            bufs_free(&u);
        }
    }
    if (c->op == OP_MATMUL && e->device >= 0 && !c->failed)
        c->cublas_s = bench_cublas_matmul_s(e->device, c->wt, c->M, c->N, c->K, c->copies,
                                            e->o->quick);
    teardown(c);
    return rc;
}

/* ---- output ------------------------------------------------------------------------ */

static double gflops(const bk_case *c) {
    return !c->failed && c->flops > 0 ? c->flops / c->median_s * 1e-9 : -1;
}
static double gbs(const bk_case *c) {
    return !c->failed && c->bytes > 0 ? c->bytes / c->median_s * 1e-9 : -1;
}
static double pct_copy(const bk_case *c, const bk_env *e) {
    return c->mem_bound && gbs(c) >= 0 && e->copy_gbs > 0 ? 100.0 * gbs(c) / e->copy_gbs : -1;
}
static const char *bits_word(const bk_case *c) {
    return c->failed ? "ERROR" : c->bits_same ? "same" : "DIFF";
}

static void print_table(FILE *f, const bk_env *e, bk_case *cs, int n, const bench_machine *m,
                        const bench_model_result *mr) {
    fprintf(f, "opg-bench (backend %s, contract v%d): %s\n", e->be->ops->name,
            OPG_CONTRACT_VERSION,
            *opg_backend_device(e->be) ? opg_backend_device(e->be) : m->cpu_model);
    if (e->o->quick)
        fputs("  --quick: small shapes, few reps, weights not rotated: a smoke run, not a "
              "measurement\n", f);
    fprintf(f, "  host %s, %d online CPUs, %s\n", m->cpu_model, m->online_cpus, m->date);
    fprintf(f, "  bits compared with: the cpu backend, %s\n",
            strcmp(e->be->ops->name, "cpu") == 0 ? "1 thread" : "all CPUs");
    if (e->copy_gbs > 0)
        fprintf(f, "  copy bandwidth: %.1f GB/s (%s)\n", e->copy_gbs, e->copy_how);
    fprintf(f, "\n%-14s %-22s %10s %6s %9s %8s %7s %10s %6s  %s\n", "op", "shape", "median us",
            "inner", "GFLOP/s", "GB/s", "%copy", "cuBLAS us", "x cuB", "bits");
    for (int i = 0; i < n; i++) {
        const bk_case *c = &cs[i];
        if (c->skipped) continue;
        fprintf(f, "%-14s %-22s", c->name, c->shape);
        bench_print_num(f, 10, c->failed ? -1 : c->median_s * 1e6, "%*.1f");
        bench_print_num(f, 6, c->failed ? -1 : c->inner, "%*.0f");
        bench_print_num(f, 9, gflops(c), "%*.1f");
        bench_print_num(f, 8, gbs(c), "%*.1f");
        bench_print_num(f, 7, pct_copy(c, e), "%*.1f");
        bench_print_num(f, 10, c->cublas_s > 0 ? c->cublas_s * 1e6 : -1, "%*.1f");
        bench_print_num(f, 6, c->cublas_s > 0 && !c->failed ? c->median_s / c->cublas_s : -1, "%*.2f");
        fprintf(f, "  %s\n", bits_word(c));
        if (c->err[0]) fprintf(f, "    %s\n", c->err);
    }
    if (mr) bench_model_print(f, mr);
}

static int print_json(FILE *f, const bk_env *e, bk_case *cs, int n, const bench_machine *m,
                      const bench_model_result *mr) {
    cJSON *root = bench_json_new();
    bench_json_add_str(root, "backend", e->be->ops->name);
    bench_json_add_str(root, "device", opg_backend_device(e->be));
    bench_json_add_str(root, "host_cpu", m->cpu_model);
    bench_json_add_int(root, "contract", OPG_CONTRACT_VERSION);
    bench_json_add_bool(root, "quick", e->o->quick);
    bench_json_add_str(root, "date", m->date);
    bench_json_add_num(root, "copy_gbs", e->copy_gbs);
    cJSON *ops = bench_json_add_arr(root, "ops");
    for (int i = 0; i < n; i++) {
        const bk_case *c = &cs[i];
        if (c->skipped) continue;
        cJSON *o = bench_json_push_obj(ops);
        bench_json_add_str(o, "op", c->name);
        bench_json_add_str(o, "shape", c->shape);
        bench_json_add_num(o, "median_us", c->failed ? -1 : c->median_s * 1e6);
        bench_json_add_int(o, "reps", c->reps);
        bench_json_add_int(o, "inner", c->inner);
        bench_json_add_num(o, "gflops", gflops(c));
        bench_json_add_num(o, "gbs", gbs(c));
        bench_json_add_num(o, "pct_copy", pct_copy(c, e));
        bench_json_add_num(o, "cublas_us", c->cublas_s > 0 ? c->cublas_s * 1e6 : -1);
        bench_json_add_str(o, "bits", bits_word(c));
        bench_json_add_str(o, "error", c->err);
    }
    if (mr) bench_model_json(root, "model", mr);
    else bench_json_add_null(root, "model");
    return bench_json_finish(f, root);
}

/* ---- main ------------------------------------------------------------------------- */

static int selected(const bk_case *c, const bench_backend_opts *o) {
    if (o->n_ops == 0) return 1;
    for (int i = 0; i < o->n_ops; i++)
        if (strcasecmp(o->ops[i], c->name) == 0 || strcasecmp(o->ops[i], c->group) == 0)
            return 1;
    return 0;
}

void bench_backend_list(FILE *f) {
    static bk_case cs[64];
    int n = build_cases(cs, 64, 1);
    fprintf(f, "%-18s %s\n", "op (--backend)", "group");
    for (int i = 0; i < n; i++) fprintf(f, "%-18s %s\n", cs[i].name, cs[i].group);
}

int bench_backend_main(const bench_backend_opts *o) {
    static bk_case cs[64];
    int n = build_cases(cs, 64, o->quick);
    for (int i = 0; i < o->n_ops; i++) {
        int hit = 0;
        for (int j = 0; j < n; j++)
            hit |= strcasecmp(o->ops[i], cs[j].name) == 0 || strcasecmp(o->ops[i], cs[j].group) == 0;
        if (!hit && strcasecmp(o->ops[i], "none") != 0) {
            fprintf(stderr, "opg-bench: unknown op '%s' (see --list)\n", o->ops[i]);
            return 2;
        }
    }
    for (int j = 0; j < n; j++) cs[j].skipped = !selected(&cs[j], o);
    if (o->model && access(o->model, R_OK) != 0) {
        fprintf(stderr, "opg-bench: cannot read model %s: %s\n", o->model, strerror(errno));
        return 2;
    }

    bk_env e = {0};
    e.o = o;
    e.device = -1;
    const char *notice = NULL;
    /* a name opg_backend_new_auto does not know is bad usage ("cuda:7" on a
     * one-GPU machine is not: that device just does not exist) */
    if (!opg_backend_name_ok(o->backend)) {
        fprintf(stderr, "opg-bench: --backend must be auto, cpu, cuda or cuda:N, got '%s'\n",
                o->backend);
        return 2;
    }
    opg_status st = opg_backend_new_auto(o->backend, o->threads, &e.be, &notice);
    if (st) {
        fprintf(stderr, "opg-bench: %s\n", opg_last_error());
        return st == OPG_ERR_UNSUPPORTED ? 3 : 1;
    }
    if (notice) fprintf(stderr, "opg-bench: %s\n", notice);
    int is_cpu = strcmp(e.be->ops->name, "cpu") == 0;
    if ((st = opg_backend_cpu_new(is_cpu ? 1 : 0, &e.ref))) {
        fprintf(stderr, "opg-bench: reference cpu backend: %s\n", opg_last_error());
        opg_backend_free(e.be);
        return 1;
    }
    bench_machine m;
    bench_machine_read(&m);
    if (!is_cpu) {
        e.device = strncmp(o->backend, "cuda:", 5) == 0 ? atoi(o->backend + 5) : 0;
        e.copy_gbs = bench_cuda_copy_gbs(e.device, o->quick);
        e.copy_how = "cudaMemcpy device to device, 2x bytes";
    } else {
        bench_env env = {0};
        env.threads = o->threads > 0 ? o->threads : m.online_cpus;
        env.llc_bytes = m.llc_bytes;
        env.quick = o->quick;
        env.pool = opg_pool_new(env.threads);
        env.pool1 = opg_pool_new(1);
        if (env.pool && env.pool1) {
            bench_bw bw;
            memset(&bw, 0, sizeof bw);
            bench_bw_measure(&env, o->quick ? 3 : 10, &bw);
            e.copy_gbs = bw.copy[1];
            e.copy_how = "STREAM-like copy on the cpu backend's threads";
        }
        opg_pool_free(env.pool);
        opg_pool_free(env.pool1);
    }

    int bad = 0;
    for (int i = 0; i < n; i++)
        if (!cs[i].skipped && measure(&cs[i], &e) != 0) bad++;

    bench_model_result mr;
    int have_model = o->model != NULL;
    if (have_model && bench_model_measure(e.be, e.ref, o->model, o->quick, &mr) != 0) bad++;

    if (o->json) {
        if (print_json(stdout, &e, cs, n, &m, have_model ? &mr : NULL) != 0) bad++;
    } else {
        print_table(stdout, &e, cs, n, &m, have_model ? &mr : NULL);
    }
    opg_backend_free(e.ref);
    opg_backend_free(e.be);
    return bad ? 1 : 0;
}
