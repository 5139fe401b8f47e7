/* bench.h: what the parts of opg-bench (CPU part) share: the benchmark case
 * (an op at one shape, with its timing and determinism result), the
 * environment the cases run in, the memory-bandwidth result, and helpers for
 * time, memory, seeded data and machine facts. */
#ifndef OPG_BENCH_H
#define OPG_BENCH_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cjson/cJSON.h>

#include "cpu.h"
#include "dtype.h"
#include "pool.h"

typedef struct opg_backend opg_backend;

/* ---- environment ----------------------------------------------------------- */

typedef struct {
    opg_pool *pool;      /* T threads: every timing runs on it */
    opg_pool *pool1;     /* 1 thread: the thread-count determinism check */
    int threads;         /* T */
    size_t llc_bytes;    /* last-level cache, for sizing arrays past it */
    int quick;           /* small shapes, few reps */
    int reps;            /* --reps, 0 = default */
    opg_cpu_level level; /* level the timings run at (the best, or OPG_CPU=scalar) */
} bench_env;

/* ---- one benchmark case ----------------------------------------------------- */

/* How a case's run function is called:
 *   TIMED  : inside the timing loop (no resets, weight copy `copy`);
 *   FULL   : the whole op from pristine inputs into c->out;
 *   SUBSET : only the part of the op that c->sub_off/sub_len covers (first rows
 *            of a GEMM, last queries of a prefill), written where the full run
 *            would write it. Used for the scalar run on big shapes. */
typedef enum { BENCH_TIMED, BENCH_FULL, BENCH_SUBSET } bench_mode;

typedef struct bench_case bench_case;

typedef struct {
    /* Allocates and fills inputs, sets shape/flops/bytes/copies/out/sub_*.
     * Returns 0, or -1 with a message in c->err. */
    int (*setup)(bench_case *c, const bench_env *env);
    /* Runs the op once. Returns 0, or -1 when the kernel reports an error. */
    int (*run)(bench_case *c, opg_pool *pool, int copy, bench_mode mode);
    /* The plain C reference over the subset, into c->out at its place. */
    int (*ref)(bench_case *c);
    void (*teardown)(bench_case *c);
} bench_kind;

/* Shape parameters; each kind reads the ones it needs. */
typedef struct {
    int64_t M, N, K;            /* matmul Y[M][N] = X[M][K] W[N][K]^T; row ops: M rows of N */
    opg_dtype wt;               /* matmul weight type */
    int64_t n_q, pos0;          /* attention: queries and first position; rope: tokens */
    int n_head, n_kv, head_dim; /* attention, rope */
    int32_t top_k;              /* sample */
    float top_p, temperature;   /* sample */
} bench_params;

struct bench_case {
    /* from the case table */
    const char *name;   /* unique, e.g. "gemv_q8_0" */
    const char *group;  /* --op filter group, e.g. "gemv" */
    const bench_kind *kind;
    bench_params p;

    /* set by setup */
    char shape[48];     /* printed shape, e.g. "1x4096x4096" */
    const char *dtype;  /* printed element type */
    double flops;       /* per call (0: not counted, see docs/benchmarks.md) */
    double bytes;       /* per call: bytes the op must move (in + out + weights) */
    int mem_bound;      /* inputs streamed from memory: gets a % of copy BW */
    int copies;         /* input copies rotated through by the timing loop */
    void *out;          /* the op's output, compared bit for bit */
    size_t out_bytes;
    size_t sub_off, sub_len; /* byte range of out that a SUBSET run writes */
    void *state;        /* the kind's buffers */
    char err[160];

    /* results */
    int skipped;        /* filtered out by --op */
    int failed;         /* setup or kernel error (err says which) */
    int reps, inner;    /* timed samples; calls per sample */
    double median_s, min_s;
    int bits_same;      /* 1: every determinism comparison matched */
    char checks[64];    /* the comparisons made, e.g. "repeat,1-thread,scalar,ref" */
    char bits_why[160]; /* the first comparison that differed */
};

/* Case table: fills cases[0..max) for the mode, returns the count. */
int bench_cases_build(bench_case *cases, int max, int quick);

/* Kinds (bench_matmul.c, bench_ops.c). */
extern const bench_kind bench_kind_matmul, bench_kind_quantize_act, bench_kind_rmsnorm,
    bench_kind_swiglu, bench_kind_softmax, bench_kind_rope, bench_kind_attention,
    bench_kind_sample;

/* Runs one case: setup, warm-up, timed reps, determinism check, teardown.
 * Fills the result fields. Returns 0, or -1 when it failed or differed. */
int bench_case_measure(bench_case *c, const bench_env *env);

/* How many input copies to rotate so that their total exceeds 4x the LLC
 * (STYLE.md item 10), for one copy of `bytes`. At least 1; always 1 with
 * --quick, whose numbers are a smoke run on warm caches. */
int bench_copies_for(const bench_env *env, size_t bytes);

/* ---- memory bandwidth (bench_mem.c) ----------------------------------------- */

typedef struct {
    size_t array_bytes; /* each of the arrays */
    int reps;           /* best of */
    const char *method; /* "avx2 loads/stores" or "memcpy" */
    /* GB/s (1e9 bytes/s), index 0: 1 thread, 1: T threads. Bytes counted
     * STREAM's way: copy 2x, read 1x, triad 3x the array size. */
    double copy[2], read[2], triad[2];
} bench_bw;

/* Measures on env->pool1 and env->pool, progress on stderr. Returns 0. */
int bench_bw_measure(const bench_env *env, int reps, bench_bw *bw);

/* ---- machine ------------------------------------------------------------------ */

typedef struct {
    char cpu_model[128];
    int online_cpus;
    size_t llc_bytes;
    const char *llc_source; /* "sysfs", "sysconf" or "default" */
    const char *cpu_level;  /* level of the timed runs */
    const char *best_level; /* best the CPU supports */
    char date[32];          /* UTC, ISO 8601 */
    const char *compiler;
} bench_machine;

void bench_machine_read(bench_machine *m);

/* ---- output (bench_report.c) --------------------------------------------------- */

typedef struct {
    const bench_machine *machine;
    const bench_bw *bw;
    const bench_env *env;
    bench_case *cases;
    int n_cases;
} bench_report;

void bench_print_table(FILE *f, const bench_report *r);
int bench_print_json(FILE *f, const bench_report *r); /* bench_json_finish's result */
/* " value" (fmt with a width, e.g. "%*.1f") in width columns, or " -" when v
 * is negative (not applicable). */
void bench_print_num(FILE *f, int width, double v, const char *fmt);
/* Achieved rates of a measured case; negative when not applicable. */
double bench_case_gflops(const bench_case *c);
double bench_case_gbs(const bench_case *c);
double bench_case_pct_copy(const bench_case *c, const bench_bw *bw);
/* The acceptance case (Q8_0 GEMV at 4096x4096), or NULL when not run. */
const bench_case *bench_find_q8_gemv(const bench_report *r);

/* ---- dispatch load (bench_dispatch.c) --------------------------------------------- */

/* opg-bench --dispatch: the real opg-coordinator and N opg-worker processes
 * on 127.0.0.1, loaded by DEALER clients in this process (docs/benchmarks.md,
 * "Dispatch"). Zero fields take the defaults. */
typedef struct {
    int workers;                 /* opg-worker processes (default 4) */
    int slots;                   /* --slots of each worker (default 64) */
    int clients;                 /* client DEALER sockets (default 2) */
    int window;                  /* jobs in flight in the max-throughput phase (default 256) */
    int prompt;                  /* prompt length in token ids (default 4); max_tokens is 1 */
    double seconds;              /* measured seconds per phase (default 5) */
    double warmup;               /* seconds before each measurement (negative: default 1) */
    double rate;                 /* fixed-rate phase, jobs/s; 0: half the measured max */
    const char *coordinator_bin; /* NULL: the build tree's */
    const char *worker_bin;
    const char *model;           /* NULL: the tiny f32 test model of the build tree */
    const char *dir;             /* parent of the temp dir (NULL: $TMPDIR or /tmp) */
    const char *receipts;        /* the coordinator's --receipts (NULL: its default, full) */
    int json;
} bench_dispatch_opts;

/* Runs the dispatch benchmark and prints its table (or JSON) on stdout.
 * Returns the exit status: 0 every job answered correctly, 1 errors or a
 * daemon failed, 2 not built / bad setup, 130 interrupted (SIGINT/SIGTERM). */
int bench_dispatch_main(const bench_dispatch_opts *o);

/* ---- a backend's ops, and a model on it (bench_backend*.c) -------------------------- */

/* opg-bench --backend B: every op of backend.h at Llama-7B-like shapes on B,
 * timed, and bit-compared with the cpu backend (all CPUs; 1 thread when B is
 * the cpu backend itself); with --model, the model too. */
typedef struct {
    const char *backend;       /* "cpu", "cuda", "cuda:N", "auto" */
    int threads;               /* of a cpu backend under test (0: all CPUs) */
    int quick, json, reps;
    const char *model;         /* NULL: ops only */
    char *const *ops;          /* --op filter ("none": no op, e.g. the model alone) */
    int n_ops;
} bench_backend_opts;

/* Prints the table (or JSON) on stdout. Returns the exit status: 0 every
 * compared result the same, 1 a DIFF or an error, 2 bad usage, 3 the backend
 * cannot be created (no CUDA device or driver, built without CUDA). */
int bench_backend_main(const bench_backend_opts *o);
void bench_backend_list(FILE *f);

typedef struct {
    char model[256];           /* file name */
    char arch[16];
    int n_layer, batch;
    int64_t n_vocab, prompt, gen;
    double load_s, prefill_tps, decode_tps_1, decode_tps_batch; /* <= 0: not measured */
    char root[65], root_ref[65]; /* job 0 alone: on the backend, on the cpu backend */
    int same_alone, same_batched, same_in_batch;
    int failed;
    char err[256];
} bench_model_result;

/* Loads path on be and on ref (the cpu backend), times it on be and compares
 * trace roots. Returns 0 when every root matched, -1 otherwise (r->err). */
int bench_model_measure(opg_backend *be, opg_backend *ref, const char *path, int quick,
                        bench_model_result *r);
void bench_model_print(FILE *f, const bench_model_result *r);
void bench_model_json(cJSON *obj, const char *key, const bench_model_result *r);

/* Device references (bench_cuda_ref.c), -1 when not available: copy bandwidth
 * of CUDA device `device` in GB/s (2x bytes), and cuBLAS's seconds per call
 * of the float matmul y[M][N] = x[M][K] w[N][K]^T with weights of type wt. */
double bench_cuda_copy_gbs(int device, int quick);
double bench_cublas_matmul_s(int device, opg_dtype wt, int64_t M, int64_t N, int64_t K,
                             int copies, int quick);

/* ---- helpers (bench_util.c) ------------------------------------------------------ */

double bench_now(void); /* monotonic seconds */
/* 64-byte aligned, zero-filled; prints and exits(1) when out of memory (a
 * benchmark has nothing sensible to do without its buffers). */
void *bench_alloc(size_t bytes);
void bench_free(void *p);

typedef struct { uint64_t s; } bench_rng;
uint64_t bench_rng_u64(bench_rng *r);
float bench_rng_uniform(bench_rng *r, float lo, float hi);
void bench_fill_f32(bench_rng *r, float *x, size_t n, float lo, float hi);
void bench_fill_bytes(bench_rng *r, void *p, size_t n);
/* One copy of [N][K] weights of type wt as real ones look: float values in
 * +-0.05, quantized blocks with small finite scales (bench_matmul.c). */
void bench_fill_weights(bench_rng *r, uint8_t *w, opg_dtype wt, int64_t N, int64_t K);

/* JSON output, built with cJSON. Each add puts one member into obj (NULL
 * obj: nothing); a failed allocation is remembered and reported by
 * bench_json_finish. */
void bench_json_add_str(cJSON *obj, const char *key, const char *s); /* NULL as ""; bytes >= 0x80 as '?' */
void bench_json_add_num(cJSON *obj, const char *key, double v);      /* null when v < 0 or not finite */
void bench_json_add_int(cJSON *obj, const char *key, long long v);
void bench_json_add_bool(cJSON *obj, const char *key, int v);
void bench_json_add_null(cJSON *obj, const char *key);
cJSON *bench_json_add_obj(cJSON *obj, const char *key);  /* the new object */
cJSON *bench_json_add_arr(cJSON *obj, const char *key);  /* the new array */
cJSON *bench_json_push_obj(cJSON *arr);                  /* a new object appended to arr */
cJSON *bench_json_new(void);                             /* a root object */
/* Prints root (indented, then a newline) to f and frees it. 0, or -1 with a
 * line on stderr when an allocation failed on the way (nothing printed) or
 * the write failed. */
int bench_json_finish(FILE *f, cJSON *root);

#endif
