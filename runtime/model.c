/* model.c: Llama-family graph (pre-norm decoder, GQA attention, SwiGLU FFN)
 * over the backend interface, with per-sequence KV caches and batching. */
#include "model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fpenv.h"
#include "trace.h"

typedef struct {
    opg_buf *buf; /* NULL when absent (optional bias) */
    opg_dtype type;
} weight;

typedef struct {
    weight attn_norm, wq, wk, wv, wo, bq, bk, bv, ffn_norm, wg, wu, wd;
} layer;

struct opg_model {
    opg_hparams hp;
    opg_gguf *g;
    opg_backend *be;
    weight tok_embd, out_norm, output;
    layer *layers;
    double *inv_freq;   /* [n_rot/2], binary64 (docs/determinism.md section 7) */
    opg_buf **owned;    /* every buffer the model made, for free */
    int n_owned, cap_owned;
    opg_buf *ws;        /* activation workspace, grown on demand */
    size_t ws_bytes;
};

struct opg_kv {
    opg_model *m;
    int64_t n_ctx, len;
    opg_buf *k, *v;     /* [n_layer][n_ctx][n_head_kv*head_dim] f32 */
};

/* ---- loading ----------------------------------------------------------------- */

static opg_status own(opg_model *m, opg_buf *b) {
    if (m->n_owned == m->cap_owned) {
        int cap = m->cap_owned ? 2 * m->cap_owned : 64;
        opg_buf **p = realloc(m->owned, (size_t)cap * sizeof *p);
        if (!p) return opg__fail(OPG_ERR_NOMEM, "model: out of memory");
        m->owned = p;
        m->cap_owned = cap;
    }
    m->owned[m->n_owned++] = b;
    return OPG_OK;
}

static opg_status key_int(const opg_model *m, const char *suffix, int64_t dflt, int required,
                          int64_t lo, int64_t hi, int64_t *out) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", m->hp.arch, suffix);
    opg_status st = opg_gguf_get_int(m->g, key, out);
    if (st == OPG_ERR_NOT_FOUND && !required) { *out = dflt; st = OPG_OK; }
    if (st == OPG_ERR_NOT_FOUND) return opg__fail(st, "model: missing metadata key %s", key);
    if (st) return opg__fail(st, "model: metadata key %s: %s", key, opg_last_error());
    if (*out < lo || *out > hi)
        return opg__fail(OPG_ERR_FORMAT, "model: %s = %lld outside [%lld, %lld]", key,
                         (long long)*out, (long long)lo, (long long)hi);
    return OPG_OK;
}

static opg_status key_float(const opg_model *m, const char *suffix, double dflt, double *out) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", m->hp.arch, suffix);
    opg_status st = opg_gguf_get_float(m->g, key, out);
    if (st == OPG_ERR_NOT_FOUND) { *out = dflt; return OPG_OK; }
    if (st) return opg__fail(st, "model: metadata key %s: %s", key, opg_last_error());
    if (!isfinite(*out)) return opg__fail(OPG_ERR_FORMAT, "model: %s is not finite", key);
    return OPG_OK;
}

static opg_status read_hparams(opg_model *m) {
    opg_hparams *hp = &m->hp;
    const char *arch;
    size_t len;
    opg_status st = opg_gguf_get_str(m->g, "general.architecture", &arch, &len);
    if (st) return opg__fail(OPG_ERR_FORMAT, "model: no general.architecture string");
    if (len == 5 && memcmp(arch, "llama", 5) == 0) {
        strcpy(hp->arch, "llama");
        hp->rope_mode = OPG_ROPE_NORMAL;
    } else if (len == 5 && memcmp(arch, "qwen2", 5) == 0) {
        strcpy(hp->arch, "qwen2");
        hp->rope_mode = OPG_ROPE_NEOX;
        hp->has_qkv_bias = 1;
    } else {
        return opg__fail(OPG_ERR_UNSUPPORTED,
                         "model: architecture '%.*s' is not supported (llama, qwen2)",
                         (int)(len > 32 ? 32 : len), arch);
    }
    int64_t v;
    if ((st = key_int(m, "block_count", 0, 1, 1, 1024, &v))) return st;
    hp->n_layer = (int)v;
    if ((st = key_int(m, "embedding_length", 0, 1, 1, 65536, &v))) return st;
    hp->n_embd = (int)v;
    if ((st = key_int(m, "feed_forward_length", 0, 1, 1, 1 << 20, &v))) return st;
    hp->n_ff = (int)v;
    if ((st = key_int(m, "attention.head_count", 0, 1, 1, 1024, &v))) return st;
    hp->n_head = (int)v;
    if ((st = key_int(m, "attention.head_count_kv", hp->n_head, 0, 1, hp->n_head, &v))) return st;
    hp->n_head_kv = (int)v;
    if (hp->n_head % hp->n_head_kv)
        return opg__fail(OPG_ERR_FORMAT, "model: %d heads not a multiple of %d kv heads",
                         hp->n_head, hp->n_head_kv);
    if ((st = key_int(m, "attention.key_length", hp->n_embd / hp->n_head, 0, 1, 1024, &v)))
        return st;
    hp->head_dim = (int)v;
    if ((st = key_int(m, "rope.dimension_count", hp->head_dim, 0, 2, hp->head_dim, &v))) return st;
    if (v % 2) return opg__fail(OPG_ERR_FORMAT, "model: odd rope.dimension_count %lld", (long long)v);
    hp->n_rot = (int)v;
    if ((st = key_int(m, "context_length", 2048, 0, 1, (int64_t)1 << 24, &v))) return st;
    hp->n_ctx_train = v;
    double d;
    if ((st = key_float(m, "attention.layer_norm_rms_epsilon", 1e-5, &d))) return st;
    if (d <= 0 || d > 1) return opg__fail(OPG_ERR_FORMAT, "model: rms epsilon %g out of range", d);
    hp->norm_eps = (float)d;
    if ((st = key_float(m, "rope.freq_base", 10000.0, &d))) return st;
    if (d <= 1.0) return opg__fail(OPG_ERR_FORMAT, "model: rope.freq_base %g out of range", d);
    hp->rope_base = d;
    return OPG_OK;
}

/* Looks up name, checks its shape [ne0, ne1] (ne1 = 0: 1-D) and type class.
 * matmul_weight: 0 f32 only, 1 any type, 2 any type and read by matmul alone
 * (the backend may re-lay it out: wrap_matrix), 3 the same for a tensor
 * embed reads too (a tied output) but only when the backend re-lays it out:
 * w->buf stays NULL otherwise. A re-laid-out copy replaces the file's bytes
 * (their pages are dropped). */
static opg_status get_weight(opg_model *m, const char *name, int64_t ne0, int64_t ne1,
                             int matmul_weight, int optional, weight *w) {
    w->buf = NULL;
    int64_t i = opg_gguf_find_tensor(m->g, name);
    if (i < 0) {
        if (optional) return OPG_OK;
        return opg__fail(OPG_ERR_FORMAT, "model: tensor %s missing", name);
    }
    opg_gguf_tensor t;
    opg_status st = opg_gguf_tensor_info(m->g, i, &t);
    if (st) return st;
    int dims = ne1 ? 2 : 1;
    if (t.n_dims != dims || t.ne[0] != ne0 || (dims == 2 && t.ne[1] != ne1))
        return opg__fail(OPG_ERR_FORMAT,
                         "model: tensor %s has shape [%lld, %lld] (%d dims), expected [%lld, %lld]",
                         name, (long long)t.ne[0], (long long)t.ne[1], t.n_dims, (long long)ne0,
                         (long long)(ne1 ? ne1 : 1));
    if (opg_dtype_block_elems(t.type) == 0)
        return opg__fail(OPG_ERR_UNSUPPORTED, "model: tensor %s has GGML type %d, not supported "
                         "(f32, f16, bf16, q8_0, q4_0, q4_1, q4_K, q6_K)", name, (int)t.type);
    if (!matmul_weight && t.type != OPG_F32)
        return opg__fail(OPG_ERR_UNSUPPORTED, "model: tensor %s must be f32, is %s", name,
                         opg_dtype_name(t.type));
    w->type = t.type;
    if (matmul_weight == 3 && !(dims == 2 && m->be->ops->wrap_matrix)) return OPG_OK;
    if (matmul_weight >= 2 && dims == 2 && m->be->ops->wrap_matrix)
        st = m->be->ops->wrap_matrix(m->be, t.data, t.size, t.type, ne1, ne0, &w->buf, &w->type);
    else
        st = m->be->ops->wrap_weights(m->be, t.data, t.size, &w->buf);
    if (st) return st;
    if (matmul_weight == 3 && w->type == t.type) { /* not re-laid out: no second wrap */
        m->be->ops->free(m->be, w->buf);
        w->buf = NULL;
        return OPG_OK;
    }
    /* re-laid out into a copy: the file's pages are not read again */
    if (w->type != t.type) opg_gguf_drop_pages(m->g, t.data, t.size);
    if ((st = own(m, w->buf))) {
        m->be->ops->free(m->be, w->buf);
        w->buf = NULL;
    }
    return st;
}

static opg_status load_weights(opg_model *m, opg_progress_fn progress, void *pctx) {
    const opg_hparams *hp = &m->hp;
    int64_t D = hp->n_embd, F = hp->n_ff, QD = (int64_t)hp->n_head * hp->head_dim,
            KD = (int64_t)hp->n_head_kv * hp->head_dim;
    opg_status st;
    /* vocab size comes from the embedding's shape */
    int64_t ti = opg_gguf_find_tensor(m->g, "token_embd.weight");
    if (ti < 0) return opg__fail(OPG_ERR_FORMAT, "model: tensor token_embd.weight missing");
    opg_gguf_tensor t;
    if ((st = opg_gguf_tensor_info(m->g, ti, &t))) return st;
    if (t.n_dims != 2 || t.ne[1] < 1)
        return opg__fail(OPG_ERR_FORMAT, "model: token_embd.weight is not a matrix");
    m->hp.n_vocab = t.ne[1];
    uint64_t total = opg_gguf_file_size(m->g), done = 0;
    if ((st = get_weight(m, "token_embd.weight", D, hp->n_vocab, 1, 0, &m->tok_embd))) return st;
    if ((st = get_weight(m, "output_norm.weight", D, 0, 0, 0, &m->out_norm))) return st;
    if ((st = get_weight(m, "output.weight", D, hp->n_vocab, 2, 1, &m->output))) return st;
    if (!m->output.buf) {
        /* tied: the output projection is token_embd. The backend may re-lay
         * it out for the matmul (the cpu backend packs it: the decode's
         * largest GEMV); embed then reads its rows from that copy too. */
        m->hp.tied_output = 1;
        if ((st = get_weight(m, "token_embd.weight", D, hp->n_vocab, 3, 0, &m->output))) return st;
        if (m->output.buf) m->tok_embd = m->output;
        else m->output = m->tok_embd;
    }
    m->layers = calloc((size_t)hp->n_layer, sizeof *m->layers);
    if (!m->layers) return opg__fail(OPG_ERR_NOMEM, "model: out of memory");
    for (int l = 0; l < hp->n_layer; l++) {
        layer *L = &m->layers[l];
        char n[96];
#define W(field, nm, ne0, ne1, mm, opt)                                            \
    snprintf(n, sizeof n, "blk.%d." nm, l);                                        \
    if ((st = get_weight(m, n, ne0, ne1, mm, opt, &L->field))) return st;
        W(attn_norm, "attn_norm.weight", D, 0, 0, 0)
        W(wq, "attn_q.weight", D, QD, 2, 0)
        W(wk, "attn_k.weight", D, KD, 2, 0)
        W(wv, "attn_v.weight", D, KD, 2, 0)
        W(wo, "attn_output.weight", QD, D, 2, 0)
        W(bq, "attn_q.bias", QD, 0, 0, !hp->has_qkv_bias)
        W(bk, "attn_k.bias", KD, 0, 0, !hp->has_qkv_bias)
        W(bv, "attn_v.bias", KD, 0, 0, !hp->has_qkv_bias)
        W(ffn_norm, "ffn_norm.weight", D, 0, 0, 0)
        W(wg, "ffn_gate.weight", D, F, 2, 0)
        W(wu, "ffn_up.weight", D, F, 2, 0)
        W(wd, "ffn_down.weight", F, D, 2, 0)
#undef W
        done = total * (uint64_t)(l + 1) / (uint64_t)hp->n_layer;
        if (progress) progress(pctx, done, total);
    }
    return OPG_OK;
}

/* RoPE frequencies (binary64), then the file's scaling applied in binary64:
 * linear scaling divides each frequency by the factor; Llama 3 style files
 * carry per-frequency divisors in rope_freqs.weight. */
static opg_status build_rope(opg_model *m) {
    const opg_hparams *hp = &m->hp;
    int n_half = hp->n_rot / 2;
    m->inv_freq = malloc((size_t)n_half * sizeof(double));
    if (!m->inv_freq) return opg__fail(OPG_ERR_NOMEM, "model: out of memory");
    opg_rope_freqs(m->inv_freq, hp->n_rot, hp->rope_base);
    char key[128];
    const char *type = NULL;
    size_t tlen = 0;
    snprintf(key, sizeof key, "%s.rope.scaling.type", hp->arch);
    if (opg_gguf_get_str(m->g, key, &type, &tlen) == OPG_OK &&
        !(tlen == 4 && memcmp(type, "none", 4) == 0)) {
        double factor;
        snprintf(key, sizeof key, "%s.rope.scaling.factor", hp->arch);
        if (opg_gguf_get_float(m->g, key, &factor) != OPG_OK || !(factor >= 1.0 && factor <= 1024))
            return opg__fail(OPG_ERR_FORMAT, "model: rope scaling without a valid factor");
        if (tlen == 6 && memcmp(type, "linear", 6) == 0) {
            for (int i = 0; i < n_half; i++) m->inv_freq[i] /= factor;
        } else {
            return opg__fail(OPG_ERR_UNSUPPORTED, "model: rope scaling '%.*s' not supported (linear)",
                             (int)(tlen > 16 ? 16 : tlen), type);
        }
    }
    int64_t fi = opg_gguf_find_tensor(m->g, "rope_freqs.weight");
    if (fi >= 0) {
        opg_gguf_tensor t;
        opg_status st = opg_gguf_tensor_info(m->g, fi, &t);
        if (st) return st;
        if (t.type != OPG_F32 || t.n_dims != 1 || t.ne[0] != n_half)
            return opg__fail(OPG_ERR_FORMAT, "model: rope_freqs.weight must be f32 [%d]", n_half);
        for (int i = 0; i < n_half; i++) {
            float f;
            memcpy(&f, (const char *)t.data + 4 * i, 4);
            if (!(f > 0) || !isfinite(f))
                return opg__fail(OPG_ERR_FORMAT, "model: rope_freqs.weight[%d] = %g", i, (double)f);
            m->inv_freq[i] /= (double)f;
        }
    }
    return OPG_OK;
}

static opg_status model_load(const char *path, opg_backend *be, opg_progress_fn progress, void *progress_ctx,
                             opg_model **out) {
    *out = NULL;
    opg_model *m = calloc(1, sizeof *m);
    if (!m) return opg__fail(OPG_ERR_NOMEM, "model: out of memory");
    m->be = be;
    opg_status st = opg_gguf_open(path, &m->g);
    if (!st) st = read_hparams(m);
    if (!st) st = load_weights(m, progress, progress_ctx);
    if (!st) st = build_rope(m);
    if (st) {
        opg_model_free(m);
        return st;
    }
    *out = m;
    return OPG_OK;
}

/* Under the contract's floating-point environment (fpenv.h): the RoPE
 * frequencies are computed here. */
opg_status opg_model_load(const char *path, opg_backend *be, opg_progress_fn progress,
                          void *progress_ctx, opg_model **out) {
    opg_fpenv saved;
    opg_fpenv_enter(&saved);
    opg_status st = model_load(path, be, progress, progress_ctx, out);
    opg_fpenv_leave(&saved);
    return st;
}

void opg_model_free(opg_model *m) {
    if (!m) return;
    for (int i = 0; i < m->n_owned; i++) m->be->ops->free(m->be, m->owned[i]);
    if (m->ws) m->be->ops->free(m->be, m->ws);
    free(m->owned);
    free(m->layers);
    free(m->inv_freq);
    opg_gguf_close(m->g);
    free(m);
}

const opg_hparams *opg_model_hparams(const opg_model *m) { return &m->hp; }
void opg_model_id(opg_model *m, uint8_t sha256[32]) { opg_gguf_sha256(m->g, sha256); }
opg_gguf *opg_model_gguf(opg_model *m) { return m->g; }
opg_backend *opg_model_backend(opg_model *m) { return m->be; }

/* ---- KV cache ---------------------------------------------------------------- */

static size_t kv_row_bytes(const opg_model *m) {
    return (size_t)m->hp.n_head_kv * (size_t)m->hp.head_dim * sizeof(float);
}

opg_status opg_kv_new(opg_model *m, int64_t n_ctx, opg_kv **out) {
    *out = NULL;
    if (n_ctx < 1 || n_ctx > ((int64_t)1 << 24))
        return opg__fail(OPG_ERR_ARG, "kv cache: context %lld out of range", (long long)n_ctx);
    opg_kv *kv = calloc(1, sizeof *kv);
    if (!kv) return opg__fail(OPG_ERR_NOMEM, "kv cache: out of memory");
    kv->m = m;
    kv->n_ctx = n_ctx;
    size_t bytes = (size_t)m->hp.n_layer * (size_t)n_ctx * kv_row_bytes(m);
    opg_status st = m->be->ops->alloc(m->be, bytes, &kv->k);
    if (!st) st = m->be->ops->alloc(m->be, bytes, &kv->v);
    if (st) {
        char why[400]; /* the backend's reason (a device fault, out of memory) */
        snprintf(why, sizeof why, "%s", opg_last_error());
        opg_kv_free(kv);
        return opg__fail(st, "kv cache: cannot allocate 2 x %zu bytes for %lld positions: %s", bytes,
                         (long long)n_ctx, why);
    }
    *out = kv;
    return OPG_OK;
}

void opg_kv_free(opg_kv *kv) {
    if (!kv) return;
    kv->m->be->ops->free(kv->m->be, kv->k);
    kv->m->be->ops->free(kv->m->be, kv->v);
    free(kv);
}

int64_t opg_kv_len(const opg_kv *kv) { return kv->len; }
int64_t opg_kv_capacity(const opg_kv *kv) { return kv->n_ctx; }
void opg_kv_truncate(opg_kv *kv, int64_t n) {
    if (n >= 0 && n < kv->len) kv->len = n;
}

/* ---- forward ----------------------------------------------------------------- */

typedef struct {
    size_t x, h, q, k, v, att, o, g, u, hr, logits, end;
} ws_layout;

static ws_layout layout(const opg_hparams *hp, int64_t M, int64_t R) {
    ws_layout L;
    size_t f = sizeof(float), off = 0;
#define SLOT(name, count) L.name = off; off += (((size_t)(count) * f) + 63) & ~(size_t)63;
    SLOT(x, M * hp->n_embd)
    SLOT(h, M * hp->n_embd)
    SLOT(q, M * hp->n_head * hp->head_dim)
    SLOT(k, M * hp->n_head_kv * hp->head_dim)
    SLOT(v, M * hp->n_head_kv * hp->head_dim)
    SLOT(att, M * hp->n_head * hp->head_dim)
    SLOT(o, M * hp->n_embd)
    SLOT(g, M * hp->n_ff)
    SLOT(u, M * hp->n_ff)
    SLOT(hr, R * hp->n_embd)
    SLOT(logits, R * hp->n_vocab)
#undef SLOT
    L.end = off;
    return L;
}

static opg_status forward(opg_model *m, opg_batch_seq *seqs, int n_seqs, void (*poll)(void *ctx), void *poll_ctx) {
    const opg_hparams *hp = &m->hp;
    const opg_backend_ops *be = m->be->ops;
    opg_backend *b = m->be;
    int64_t M = 0, R = 0;
    for (int s = 0; s < n_seqs; s++) {
        opg_batch_seq *q = &seqs[s];
        if (!q->kv || q->kv->m != m || q->n < 0 || q->out_from < 0 || q->out_from > q->n ||
            (q->n > 0 && !q->tokens) || (q->sample && !q->token))
            return opg__fail(OPG_ERR_ARG, "forward: sequence %d is malformed", s);
        if (q->kv->len + q->n > q->kv->n_ctx)
            return opg__fail(OPG_ERR_LIMIT,
                             "context limit: sequence %d needs %lld positions, its cache holds %lld",
                             s, (long long)(q->kv->len + q->n), (long long)q->kv->n_ctx);
        for (int t = 0; t < s; t++)
            if (seqs[t].kv == q->kv) return opg__fail(OPG_ERR_ARG, "forward: a cache appears twice");
        for (int64_t i = 0; i < q->n; i++)
            if (q->tokens[i] < 0 || q->tokens[i] >= hp->n_vocab)
                return opg__fail(OPG_ERR_ARG, "forward: token id %d outside the vocabulary [0, %lld)",
                                 (int)q->tokens[i], (long long)hp->n_vocab);
        M += q->n;
        R += q->n - q->out_from;
    }
    if (M == 0) return OPG_OK;

    ws_layout L = layout(hp, M, R);
    if (L.end > m->ws_bytes) {
        if (m->ws) be->free(b, m->ws);
        m->ws = NULL;
        m->ws_bytes = 0;
        opg_status st = be->alloc(b, L.end, &m->ws);
        if (st) return st;
        m->ws_bytes = L.end;
    }
    int32_t *tokens = malloc((size_t)M * sizeof *tokens);
    int32_t *pos = malloc((size_t)M * sizeof *pos);
    uint64_t *fp = malloc((size_t)M * sizeof *fp);
    if (!tokens || !pos || !fp) {
        free(tokens); free(pos); free(fp);
        return opg__fail(OPG_ERR_NOMEM, "forward: out of memory");
    }
    for (int s = 0, r = 0; s < n_seqs; s++)
        for (int64_t i = 0; i < seqs[s].n; i++, r++) {
            tokens[r] = seqs[s].tokens[i];
            pos[r] = (int32_t)(seqs[s].kv->len + i);
        }

    const int64_t D = hp->n_embd, F = hp->n_ff, QD = (int64_t)hp->n_head * hp->head_dim,
                  KD = (int64_t)hp->n_head_kv * hp->head_dim;
    const float scale = 1.0f / sqrtf((float)hp->head_dim);
    const size_t f4 = sizeof(float), kvrow = kv_row_bytes(m);
    opg_buf *w = m->ws;
    opg_view X = opg_view_of(w, L.x), H = opg_view_of(w, L.h), Q = opg_view_of(w, L.q),
             K = opg_view_of(w, L.k), V = opg_view_of(w, L.v), A = opg_view_of(w, L.att),
             O = opg_view_of(w, L.o), G = opg_view_of(w, L.g), U = opg_view_of(w, L.u);
    opg_view none = {NULL, 0};
#define BV(wt) opg_view_of((wt).buf, 0)
#define TRY(call) do { st = (call); if (st) goto done; } while (0)
    opg_status st = OPG_OK;
    TRY(be->embed(b, X, BV(m->tok_embd), m->tok_embd.type, D, hp->n_vocab, tokens, M));
    for (int l = 0; l < hp->n_layer; l++) {
        const layer *ly = &m->layers[l];
        TRY(be->rmsnorm(b, H, X, BV(ly->attn_norm), M, D, hp->norm_eps));
        TRY(be->matmul(b, Q, H, BV(ly->wq), ly->wq.type, ly->bq.buf ? BV(ly->bq) : none, M, QD, D));
        TRY(be->matmul(b, K, H, BV(ly->wk), ly->wk.type, ly->bk.buf ? BV(ly->bk) : none, M, KD, D));
        TRY(be->matmul(b, V, H, BV(ly->wv), ly->wv.type, ly->bv.buf ? BV(ly->bv) : none, M, KD, D));
        TRY(be->rope(b, Q, M, pos, hp->n_head, hp->head_dim, hp->n_rot, m->inv_freq, hp->rope_mode));
        TRY(be->rope(b, K, M, pos, hp->n_head_kv, hp->head_dim, hp->n_rot, m->inv_freq, hp->rope_mode));
        int64_t r0 = 0;
        for (int s = 0; s < n_seqs; s++) {
            opg_batch_seq *q = &seqs[s];
            if (q->n == 0) continue;
            size_t cache_off = ((size_t)l * (size_t)q->kv->n_ctx + (size_t)q->kv->len) * kvrow;
            size_t layer_off = (size_t)l * (size_t)q->kv->n_ctx * kvrow;
            TRY(be->copy(b, opg_view_of(q->kv->k, cache_off), opg_view_of(w, L.k + (size_t)r0 * kvrow),
                         (size_t)q->n * kvrow));
            TRY(be->copy(b, opg_view_of(q->kv->v, cache_off), opg_view_of(w, L.v + (size_t)r0 * kvrow),
                         (size_t)q->n * kvrow));
            TRY(be->attention(b, opg_view_of(w, L.att + (size_t)(r0 * QD) * f4),
                              opg_view_of(w, L.q + (size_t)(r0 * QD) * f4),
                              opg_view_of(q->kv->k, layer_off), opg_view_of(q->kv->v, layer_off),
                              q->n, q->kv->len, hp->n_head, hp->n_head_kv, hp->head_dim, scale));
            r0 += q->n;
        }
        TRY(be->matmul(b, O, A, BV(ly->wo), ly->wo.type, none, M, D, QD));
        TRY(be->add(b, X, X, O, M * D));
        TRY(be->rmsnorm(b, H, X, BV(ly->ffn_norm), M, D, hp->norm_eps));
        TRY(be->matmul(b, G, H, BV(ly->wg), ly->wg.type, none, M, F, D));
        TRY(be->matmul(b, U, H, BV(ly->wu), ly->wu.type, none, M, F, D));
        TRY(be->swiglu(b, G, G, U, M * F));
        TRY(be->matmul(b, O, G, BV(ly->wd), ly->wd.type, none, M, D, F));
        TRY(be->add(b, X, X, O, M * D));
        /* trace: the hidden state after this layer, rows with outputs */
        r0 = 0;
        for (int s = 0; s < n_seqs; s++) {
            opg_batch_seq *q = &seqs[s];
            int64_t nr = q->n - q->out_from;
            if (q->layer_fp && nr > 0) {
                TRY(be->fingerprint(b, fp, opg_view_of(w, L.x + (size_t)((r0 + q->out_from) * D) * f4),
                                    nr, D, D));
                for (int64_t i = 0; i < nr; i++) q->layer_fp[i * hp->n_layer + l] = fp[i];
            }
            r0 += q->n;
        }
        if (poll) poll(poll_ctx);
    }
    if (R > 0) {
        /* gather the output rows, final norm, logits */
        int64_t r0 = 0, ro = 0;
        for (int s = 0; s < n_seqs; s++) {
            opg_batch_seq *q = &seqs[s];
            int64_t nr = q->n - q->out_from;
            if (nr > 0)
                TRY(be->copy(b, opg_view_of(w, L.hr + (size_t)(ro * D) * f4),
                             opg_view_of(w, L.x + (size_t)((r0 + q->out_from) * D) * f4),
                             (size_t)(nr * D) * f4));
            r0 += q->n;
            ro += nr;
        }
        opg_view HR = opg_view_of(w, L.hr), LG = opg_view_of(w, L.logits);
        TRY(be->rmsnorm(b, HR, HR, BV(m->out_norm), R, D, hp->norm_eps));
        TRY(be->matmul(b, LG, HR, BV(m->output), m->output.type, none, R, hp->n_vocab, D));
        ro = 0;
        for (int s = 0; s < n_seqs; s++) {
            opg_batch_seq *q = &seqs[s];
            int64_t nr = q->n - q->out_from;
            if (nr <= 0) continue;
            opg_view rows = opg_view_of(w, L.logits + (size_t)(ro * hp->n_vocab) * f4);
            if (q->logits)
                TRY(be->download(b, q->logits, rows, (size_t)(nr * hp->n_vocab) * f4));
            if (q->logits_fp) TRY(be->fingerprint(b, q->logits_fp, rows, nr, hp->n_vocab, hp->n_vocab));
            for (int64_t i = 0; q->sample && i < nr; i++) {
                opg_view row = opg_view_of(w, L.logits + (size_t)((ro + i) * hp->n_vocab) * f4);
                TRY(be->sample(b, &q->token[i], row, hp->n_vocab, q->sample,
                               q->sample_step + (uint64_t)i));
            }
            ro += nr;
        }
    }
    for (int s = 0; s < n_seqs; s++) seqs[s].kv->len += seqs[s].n;
#undef TRY
#undef BV
done:
    free(tokens);
    free(pos);
    free(fp);
    return st;
}

/* Under the contract's floating-point environment (fpenv.h), the caller's back after. */
opg_status opg_model_forward_poll(opg_model *m, opg_batch_seq *seqs, int n_seqs, void (*poll)(void *ctx),
                                  void *ctx) {
    opg_fpenv saved;
    opg_fpenv_enter(&saved);
    opg_status st = forward(m, seqs, n_seqs, poll, ctx);
    opg_fpenv_leave(&saved);
    return st;
}

opg_status opg_model_forward(opg_model *m, opg_batch_seq *seqs, int n_seqs) {
    return opg_model_forward_poll(m, seqs, n_seqs, NULL, NULL);
}
