/* model.h: Llama-family models from GGUF (Llama 2/3, SmolLM2, TinyLlama,
 * Mistral: arch "llama"; Qwen2: arch "qwen2", with QKV bias), their KV cache
 * and a batched forward pass on any backend.
 *
 * A batch holds tokens of several sequences; every row's bits depend only on
 * its own sequence (the kernels are batch invariant, attention runs per
 * sequence), so continuous batching never changes a sequence's output. */
#ifndef OPG_MODEL_H
#define OPG_MODEL_H

#include <stdint.h>

#include "backend.h"
#include "gguf.h"
#include "rope.h"
#include "status.h"

typedef struct {
    char arch[16];        /* "llama", "qwen2" */
    int n_layer;
    int n_embd;
    int n_ff;
    int n_head;
    int n_head_kv;
    int head_dim;
    int n_rot;            /* rotary dims per head (<= head_dim) */
    int64_t n_vocab;
    int64_t n_ctx_train;
    float norm_eps;
    double rope_base;
    opg_rope_mode rope_mode;
    int has_qkv_bias;
    int tied_output;      /* output projection is token_embd */
} opg_hparams;

typedef struct opg_model opg_model;
typedef struct opg_kv opg_kv;

/* Progress of a load: done/total bytes of weights made ready. */
typedef void (*opg_progress_fn)(void *ctx, uint64_t done, uint64_t total);

/* Opens path (GGUF), reads hyperparameters, checks every tensor's presence,
 * type and shape, and hands the weights to the backend. The model keeps the
 * file mapped and borrows be (which must outlive it). Caller owns *out:
 * opg_model_free. progress may be NULL. */
opg_status opg_model_load(const char *path, opg_backend *be, opg_progress_fn progress,
                          void *progress_ctx, opg_model **out);
void opg_model_free(opg_model *m);

const opg_hparams *opg_model_hparams(const opg_model *m);
/* SHA-256 of the model file (its id). */
void opg_model_id(opg_model *m, uint8_t sha256[32]);
/* The underlying file (for the tokenizer); owned by the model. */
opg_gguf *opg_model_gguf(opg_model *m);
opg_backend *opg_model_backend(opg_model *m);

/* A sequence's KV cache of n_ctx positions on the model's backend. */
opg_status opg_kv_new(opg_model *m, int64_t n_ctx, opg_kv **out);
void opg_kv_free(opg_kv *kv);
/* Positions filled so far. */
int64_t opg_kv_len(const opg_kv *kv);
int64_t opg_kv_capacity(const opg_kv *kv);
/* Forgets positions >= n (n <= len). */
void opg_kv_truncate(opg_kv *kv, int64_t n);

/* One sequence's part of a forward batch. Its tokens go to positions
 * kv_len .. kv_len+n-1 and are appended to the cache. Rows i with
 * i >= out_from get logits and, if requested, trace fingerprints; with
 * `sample` set, each of those rows is also sampled on the backend
 * (opg_sample_ref's token, without bringing the logits to the host): row i
 * as step sample_step + (i - out_from), into token[i - out_from]. */
typedef struct {
    opg_kv *kv;
    const int32_t *tokens;
    int64_t n;
    int64_t out_from;      /* n-1: last row only; n: no output */
    float *logits;         /* host [n - out_from][n_vocab], or NULL */
    uint64_t *layer_fp;    /* host [n - out_from][n_layer], or NULL */
    uint64_t *logits_fp;   /* host [n - out_from], or NULL */
    const opg_sample_params *sample; /* NULL: no sampling */
    uint64_t sample_step;  /* the job's step (the RNG counter) of row out_from */
    int64_t *token;        /* out, with sample: [n - out_from] ids, -1 where all logits are NaN */
} opg_batch_seq;

/* Runs one forward pass over all sequences' tokens together. On error no
 * cache is advanced. OPG_ERR_LIMIT when a sequence would exceed its cache. */
opg_status opg_model_forward(opg_model *m, opg_batch_seq *seqs, int n_seqs);

/* opg_model_forward that calls poll(ctx) after each layer (poll may be
 * NULL), so the caller can do small work of its own during a long pass: a
 * worker keeps its link to the coordinator alive (heartbeats) through a
 * prefill that takes seconds. poll runs on the calling thread and must not
 * use m. */
opg_status opg_model_forward_poll(opg_model *m, opg_batch_seq *seqs, int n_seqs, void (*poll)(void *ctx),
                                  void *ctx);

#endif
