/* testutil_model.c: test helpers that use the runtime (opg_testutil only;
 * testutil.c alone is also built into tests without it). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "backend.h"
#include "gguf.h"
#include "status.h"
#include "testutil.h"

void tu_inf_embedding_model(const char *src, int token, char *path, size_t n) {
    FILE *f = fopen(src, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc((size_t)size);
    assert_true(b && fread(b, 1, (size_t)size, f) == (size_t)size);
    fclose(f);
    opg_gguf *g = NULL;
    assert_int_equal(opg_gguf_open_memory(b, (size_t)size, &g), OPG_OK);
    opg_gguf_tensor t;
    assert_int_equal(opg_gguf_tensor_info(g, opg_gguf_find_tensor(g, "token_embd.weight"), &t), OPG_OK);
    assert_int_equal(t.type, OPG_F32);
    assert_true(token >= 0 && token < t.ne[1]);
    float *row = (float *)(b + opg_gguf_data_offset(g) + t.offset) + (int64_t)token * t.ne[0];
    for (int64_t i = 0; i < t.ne[0]; i++) row[i] = INFINITY;
    opg_gguf_close(g);
    snprintf(path, n, "/tmp/opg_inf_model_XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_true(write(fd, b, (size_t)size) == size);
    close(fd);
    free(b);
}

/* ---- a backend that fails on demand ------------------------------------------ */

typedef struct {
    opg_backend base;
    opg_backend_ops ops;
    opg_backend *in;
    _Atomic long countdown; /* calls until the failing one; < 0: disarmed (armed from another thread
                               while no call is in flight) */
    _Atomic int fail_with;
    _Atomic long calls;
    _Atomic int poison;      /* embedding this token fails with OPG_ERR_STATE; -1: none */
    _Atomic long delay_us;   /* each embed (one per forward pass) sleeps this long first */
} faulty;

static opg_backend *in_of(opg_backend *be) { return ((faulty *)be)->in; }

/* Counts the call; the armed status when it is the armed one. */
static opg_status tick(opg_backend *be, const char *op) {
    faulty *f = (faulty *)be;
    f->calls++;
    long c = f->countdown;
    if (c < 0) return OPG_OK;
    f->countdown = c - 1;
    if (c > 0) return OPG_OK;
    return opg__fail((opg_status)f->fail_with, "faulty backend: injected failure in %s", op);
}

static void f_destroy(opg_backend *be) {
    opg_backend_free(in_of(be));
    free(be);
}
static opg_status f_alloc(opg_backend *be, size_t bytes, opg_buf **out) {
    opg_status st = tick(be, "alloc");
    if (st) {
        *out = NULL;
        return st;
    }
    return in_of(be)->ops->alloc(in_of(be), bytes, out);
}
static void f_free(opg_backend *be, opg_buf *b) { in_of(be)->ops->free(in_of(be), b); }
#define FWD(name, params, args)                                                                    \
    static opg_status f_##name params {                                                            \
        opg_status st = tick(be, #name);                                                           \
        return st ? st : in_of(be)->ops->name args;                                                \
    }
FWD(upload, (opg_backend *be, opg_view dst, const void *src, size_t bytes), (in_of(be), dst, src, bytes))
FWD(download, (opg_backend *be, void *dst, opg_view src, size_t bytes), (in_of(be), dst, src, bytes))
FWD(wrap_weights, (opg_backend *be, const void *host, size_t bytes, opg_buf **out), (in_of(be), host, bytes, out))
FWD(wrap_matrix,
    (opg_backend *be, const void *host, size_t bytes, opg_dtype wt, int64_t N, int64_t K, opg_buf **out,
     opg_dtype *out_wt),
    (in_of(be), host, bytes, wt, N, K, out, out_wt))
FWD(matmul,
    (opg_backend *be, opg_view y, opg_view x, opg_view w, opg_dtype wt, opg_view bias, int64_t M, int64_t N,
     int64_t K),
    (in_of(be), y, x, w, wt, bias, M, N, K))
FWD(rmsnorm, (opg_backend *be, opg_view y, opg_view x, opg_view w, int64_t M, int64_t D, float eps),
    (in_of(be), y, x, w, M, D, eps))
FWD(rope,
    (opg_backend *be, opg_view x, int64_t n_tok, const int32_t *pos, int n_heads, int head_dim, int n_dims,
     const double *inv_freq, opg_rope_mode mode),
    (in_of(be), x, n_tok, pos, n_heads, head_dim, n_dims, inv_freq, mode))
FWD(attention,
    (opg_backend *be, opg_view out, opg_view q, opg_view k, opg_view v, int64_t n_q, int64_t pos0, int n_head,
     int n_kv, int head_dim, float scale),
    (in_of(be), out, q, k, v, n_q, pos0, n_head, n_kv, head_dim, scale))
FWD(swiglu, (opg_backend *be, opg_view out, opg_view gate, opg_view up, int64_t n), (in_of(be), out, gate, up, n))
FWD(add, (opg_backend *be, opg_view y, opg_view a, opg_view b, int64_t n), (in_of(be), y, a, b, n))
/* embed: the forward pass's first op, where a poison token fails it as a
 * device fault would (every time its job runs, on any worker) */
static opg_status f_embed(opg_backend *be, opg_view out, opg_view table, opg_dtype t, int64_t dim, int64_t n_vocab,
                          const int32_t *tokens, int64_t n) {
    faulty *f = (faulty *)be;
    if (f->delay_us > 0) usleep((useconds_t)f->delay_us);
    opg_status st = tick(be, "embed");
    if (st) return st;
    for (int64_t i = 0; f->poison >= 0 && i < n; i++)
        if (tokens[i] == f->poison)
            return opg__fail(OPG_ERR_STATE, "faulty backend: poison token %d (an illegal address, say)", f->poison);
    return in_of(be)->ops->embed(in_of(be), out, table, t, dim, n_vocab, tokens, n);
}
FWD(copy, (opg_backend *be, opg_view dst, opg_view src, size_t bytes), (in_of(be), dst, src, bytes))
FWD(fingerprint, (opg_backend *be, uint64_t *out, opg_view x, int64_t n, int64_t len, int64_t stride),
    (in_of(be), out, x, n, len, stride))
FWD(sample,
    (opg_backend *be, int64_t *token, opg_view logits, int64_t n, const opg_sample_params *p, uint64_t step),
    (in_of(be), token, logits, n, p, step))
FWD(sync, (opg_backend *be), (in_of(be)))
#undef FWD
static const char *f_device(opg_backend *be) {
    return in_of(be)->ops->device ? in_of(be)->ops->device(in_of(be)) : NULL;
}

opg_backend *tu_faulty_backend(opg_backend *inner) {
    faulty *f = calloc(1, sizeof *f);
    assert_non_null(f);
    f->in = inner;
    f->countdown = -1;
    f->poison = -1;
    f->ops = *inner->ops;
    f->ops.destroy = f_destroy;
    f->ops.alloc = f_alloc;
    f->ops.free = f_free;
    f->ops.upload = f_upload;
    f->ops.download = f_download;
    f->ops.wrap_weights = f_wrap_weights;
    f->ops.wrap_matrix = inner->ops->wrap_matrix ? f_wrap_matrix : NULL;
    f->ops.matmul = f_matmul;
    f->ops.rmsnorm = f_rmsnorm;
    f->ops.rope = f_rope;
    f->ops.attention = f_attention;
    f->ops.swiglu = f_swiglu;
    f->ops.add = f_add;
    f->ops.embed = f_embed;
    f->ops.copy = f_copy;
    f->ops.fingerprint = f_fingerprint;
    f->ops.sample = f_sample;
    f->ops.sync = f_sync;
    f->ops.device = f_device;
    f->base.ops = &f->ops;
    return &f->base;
}

void tu_faulty_arm(opg_backend *be, long after, int status) {
    ((faulty *)be)->fail_with = status;
    ((faulty *)be)->countdown = after;
}

long tu_faulty_calls(opg_backend *be) { return ((faulty *)be)->calls; }

void tu_faulty_poison(opg_backend *be, int token, long delay_us) {
    ((faulty *)be)->poison = token;
    ((faulty *)be)->delay_us = delay_us;
}
