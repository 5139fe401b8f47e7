/* bench_run.c: how every case is measured. Setup, warm-up, a calibrated
 * number of calls per timed sample (so microsecond ops are not clock noise),
 * the median of the samples; then the determinism check: the same bits from
 * two runs, from a 1-thread pool, from the first rows / last queries alone,
 * from the other CPU level (scalar vs AVX2) and from the plain C reference. */
#include "bench.h"

#include <stdlib.h>
#include <string.h>

#define BENCH_POISON 0xA5 /* fills the output before each compared run */

int bench_copies_for(const bench_env *env, size_t bytes) {
    size_t want = env->llc_bytes * 4;
    if (env->quick || bytes == 0 || bytes > want) return 1; /* --quick: smoke run, cache-warm */
    size_t n = want / bytes + 1; /* total strictly above 4x LLC */
    return n > 4096 ? 4096 : (int)n;
}

/* ---- timing ------------------------------------------------------------------ */

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* Runs calls [*next, *next + n) in the timing loop, rotating weight copies. */
static int run_calls(bench_case *c, const bench_env *env, int64_t *next, int n) {
    for (int i = 0; i < n; i++, (*next)++)
        if (c->kind->run(c, env->pool, (int)(*next % c->copies), BENCH_TIMED) != 0) return -1;
    return 0;
}

static int time_case(bench_case *c, const bench_env *env) {
    const double target = env->quick ? 2e-4 : 2e-3; /* seconds per sample, at least */
    const double budget = env->quick ? 0.05 : 2.0; /* seconds of samples per case */
    int64_t next = 0;

    if (run_calls(c, env, &next, env->quick ? 1 : 2) != 0) return -1; /* warm-up */
    double t0 = bench_now();
    if (run_calls(c, env, &next, 1) != 0) return -1;
    double one = bench_now() - t0;
    if (one < 1e-9) one = 1e-9;
    c->inner = one >= target ? 1 : (int)(target / one) + 1;
    if (c->inner > 100000) c->inner = 100000;

    c->reps = env->reps;
    if (c->reps <= 0) {
        int by_budget = (int)(budget / (one * c->inner));
        c->reps = env->quick ? 5 : 21;
        if (by_budget < c->reps) c->reps = by_budget < 3 ? 3 : by_budget;
    }
    double *s = malloc(sizeof *s * (size_t)c->reps);
    if (!s) return -1;
    for (int r = 0; r < c->reps; r++) {
        t0 = bench_now();
        if (run_calls(c, env, &next, c->inner) != 0) { free(s); return -1; }
        s[r] = (bench_now() - t0) / c->inner;
    }
    c->median_s = median(s, c->reps);
    c->min_s = s[0]; /* sorted by median() */
    free(s);
    return 0;
}

/* ---- determinism ------------------------------------------------------------------ */

/* 1 when out[off, off+len) matches want there; otherwise records where not. */
static int same_bits(bench_case *c, const uint8_t *want, size_t off, size_t len,
                     const char *what) {
    const uint8_t *got = (const uint8_t *)c->out;
    if (memcmp(got + off, want + off, len) == 0) return 1;
    size_t i = off;
    while (got[i] == want[i]) i++;
    size_t w = i / 4 * 4; /* show the 32-bit word (one f32 of most outputs) */
    uint32_t g = 0, e = 0;
    memcpy(&g, got + w, 4);
    memcpy(&e, want + w, 4);
    snprintf(c->bits_why, sizeof c->bits_why, "%s: word %zu is 0x%08x, expected 0x%08x", what,
             w / 4, (unsigned)g, (unsigned)e);
    return 0;
}

static void note_check(bench_case *c, const char *name) {
    size_t n = strlen(c->checks);
    snprintf(c->checks + n, sizeof c->checks - n, "%s%s", n ? "," : "", name);
}

/* One run in `mode` on `pool` at CPU `level`, into a poisoned output. */
static int run_at(bench_case *c, opg_pool *pool, bench_mode mode, opg_cpu_level level,
                  const bench_env *env) {
    memset(c->out, BENCH_POISON, c->out_bytes);
    if (level != env->level) opg_cpu_set_level(level);
    int rc = c->kind->run(c, pool, 0, mode);
    if (level != env->level) opg_cpu_set_level(env->level);
    if (rc != 0) snprintf(c->err, sizeof c->err, "kernel returned an error");
    return rc;
}

/* Returns 0 when every comparison ran (c->bits_same tells whether they
 * matched), -1 when a kernel reported an error. */
static int check_case(bench_case *c, const bench_env *env) {
    uint8_t *want = bench_alloc(c->out_bytes);
    size_t all = c->out_bytes, so = c->sub_off, sl = c->sub_len;
    int subset = !(so == 0 && sl == all);
    opg_cpu_level other = env->level == OPG_CPU_SCALAR ? opg_cpu_best_level() : OPG_CPU_SCALAR;
    int ok = 1, rc = -1;
    c->checks[0] = '\0';

    if (run_at(c, env->pool, BENCH_FULL, env->level, env) != 0) goto out;
    memcpy(want, c->out, all);
    if (run_at(c, env->pool, BENCH_FULL, env->level, env) != 0) goto out;
    ok = ok && same_bits(c, want, 0, all, "second run");
    note_check(c, "repeat");
    if (ok && env->threads > 1) {
        if (run_at(c, env->pool1, BENCH_FULL, env->level, env) != 0) goto out;
        ok = same_bits(c, want, 0, all, "1 thread vs T");
        note_check(c, "1-thread");
    }
    if (ok && subset) {
        if (run_at(c, env->pool, BENCH_SUBSET, env->level, env) != 0) goto out;
        ok = same_bits(c, want, so, sl, "subset vs whole batch");
        note_check(c, "subset");
    }
    if (ok && other != env->level) {
        if (run_at(c, env->pool, BENCH_SUBSET, other, env) != 0) goto out;
        ok = same_bits(c, want, so, sl, other == OPG_CPU_SCALAR ? "scalar vs best" : "best vs scalar");
        note_check(c, opg_cpu_level_name(other));
    }
    if (ok) {
        memset(c->out, BENCH_POISON, all);
        if (c->kind->ref(c) != 0) {
            snprintf(c->err, sizeof c->err, "reference returned an error");
            goto out;
        }
        ok = same_bits(c, want, so, sl, "C reference");
        note_check(c, "ref");
    }
    rc = 0;
out:
    c->bits_same = rc == 0 && ok;
    bench_free(want);
    return rc;
}

/* ---- one case ------------------------------------------------------------------- */

static void progress_start(const bench_case *c) {
    fprintf(stderr, "opg-bench: %-18s %-20s %-5s x%-4d ... ", c->name, c->shape, c->dtype,
            c->copies);
    fflush(stderr);
}

static void progress_end(const bench_case *c) {
    if (c->failed) fprintf(stderr, "FAILED: %s\n", c->err);
    else
        fprintf(stderr, "%10.1f us  bits %s%s%s\n", c->median_s * 1e6,
                c->bits_same ? "same" : "DIFF", c->bits_same ? "" : " - ",
                c->bits_same ? "" : c->bits_why);
}

int bench_case_measure(bench_case *c, const bench_env *env) {
    c->copies = 1;
    c->dtype = "f32";
    if (c->kind->setup(c, env) != 0) {
        c->failed = 1;
        fprintf(stderr, "opg-bench: %-18s setup FAILED: %s\n", c->name, c->err);
        c->kind->teardown(c);
        return -1;
    }
    progress_start(c);
    if (time_case(c, env) != 0 || check_case(c, env) != 0) {
        c->failed = 1;
        if (!c->err[0]) snprintf(c->err, sizeof c->err, "kernel returned an error");
    }
    progress_end(c);
    c->kind->teardown(c);
    return c->failed || !c->bits_same ? -1 : 0;
}
