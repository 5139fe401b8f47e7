/* bench_report.c: opg-bench's output: the human table (stdout) and the one
 * JSON object of --json. Both say the same things: machine, measured memory
 * bandwidth, then per op its median time, GFLOP/s, GB/s, % of the copy
 * bandwidth for memory-bound ops, and whether the bits were the same. */
#include "bench.h"

#include <string.h>

#include "contract.h"

#define Q8_AIM_PCT 70.0 /* acceptance aim for Q8_0 GEMV, % of copy bandwidth */

static int measured(const bench_case *c) { return !c->skipped && !c->failed; }

double bench_case_gflops(const bench_case *c) {
    return measured(c) && c->flops > 0 ? c->flops / c->median_s * 1e-9 : -1.0;
}

double bench_case_gbs(const bench_case *c) {
    return measured(c) && c->bytes > 0 ? c->bytes / c->median_s * 1e-9 : -1.0;
}

double bench_case_pct_copy(const bench_case *c, const bench_bw *bw) {
    double g = bench_case_gbs(c);
    return c->mem_bound && g >= 0 && bw->copy[1] > 0 ? 100.0 * g / bw->copy[1] : -1.0;
}

const bench_case *bench_find_q8_gemv(const bench_report *r) {
    for (int i = 0; i < r->n_cases; i++)
        if (strcmp(r->cases[i].name, "gemv_q8_0") == 0 && measured(&r->cases[i]))
            return &r->cases[i];
    return NULL;
}

static const char *bits_word(const bench_case *c) {
    return c->failed ? "ERROR" : c->bits_same ? "same" : "DIFF";
}

/* ---- table ------------------------------------------------------------------------ */

void bench_print_num(FILE *f, int width, double v, const char *fmt) {
    fputc(' ', f);
    if (v < 0) fprintf(f, "%*s", width, "-");
    else fprintf(f, fmt, width, v);
}

static void print_header(FILE *f, const bench_report *r) {
    const bench_machine *m = r->machine;
    const bench_bw *bw = r->bw;
    fprintf(f, "opg-bench (CPU, contract v%d): %s\n", OPG_CONTRACT_VERSION, m->cpu_model);
    if (r->env->quick)
        fputs("  --quick: small shapes, few reps, inputs not rotated (cache-warm): a smoke run,\n"
              "  not a measurement\n", f);
    fprintf(f, "  %d threads of %d online CPUs, level %s (best %s), LLC %zu KiB (%s), %s\n",
            r->env->threads, m->online_cpus, m->cpu_level, m->best_level, m->llc_bytes >> 10,
            m->llc_source, m->date);
    fprintf(f, "\nmemory bandwidth, STREAM-like (arrays of %zu MiB, best of %d, %s), GB/s:\n",
            bw->array_bytes >> 20, bw->reps, bw->method);
    fprintf(f, "  %-10s %8s %8s %8s\n", "", "copy", "read", "triad");
    fprintf(f, "  %-10s %8.1f %8.1f %8.1f\n", "1 thread", bw->copy[0], bw->read[0], bw->triad[0]);
    char t[16];
    snprintf(t, sizeof t, "%d threads", r->env->threads);
    fprintf(f, "  %-10s %8.1f %8.1f %8.1f\n\n", t, bw->copy[1], bw->read[1], bw->triad[1]);
}

static void print_row(FILE *f, const bench_case *c, const bench_bw *bw) {
    fprintf(f, "%-18s %-20s %-5s %6d", c->name, c->shape, c->dtype, c->copies);
    if (c->failed) {
        fprintf(f, "  ERROR: %s\n", c->err);
        return;
    }
    fprintf(f, " %4dx%-6d", c->reps, c->inner);
    fprintf(f, " %11.2f", c->median_s * 1e6);
    bench_print_num(f, 9, bench_case_gflops(c), "%*.2f");
    bench_print_num(f, 9, bench_case_gbs(c), "%*.2f");
    double pct = bench_case_pct_copy(c, bw);
    if (pct < 0) fprintf(f, " %6s", "-");
    else fprintf(f, " %5.1f%%", pct);
    fprintf(f, "  %s\n", bits_word(c));
}

/* 1 when the Q8_0 case is the acceptance measurement: 4096x4096, weights
 * rotated past the cache (not --quick). */
static int q8_is_acceptance(const bench_case *q, const bench_env *env) {
    return q->p.N == 4096 && q->p.K == 4096 && !env->quick;
}

static void print_q8_line(FILE *f, const bench_report *r) {
    const bench_case *q = bench_find_q8_gemv(r);
    if (!q) return;
    double g = bench_case_gbs(q), pc = bench_case_pct_copy(q, r->bw);
    double pr = r->bw->read[1] > 0 ? 100.0 * g / r->bw->read[1] : -1.0;
    char verdict[64];
    if (q8_is_acceptance(q, r->env))
        snprintf(verdict, sizeof verdict, "aim >= %.0f%%: %s", Q8_AIM_PCT,
                 pc >= Q8_AIM_PCT ? "met" : "NOT met");
    else snprintf(verdict, sizeof verdict, "--quick: not the 4096x4096 measurement");
    fprintf(f, "\nQ8_0 GEMV %s on %d threads: %.2f GB/s = %.1f%% of copy bandwidth (%s), "
               "%.1f%% of read bandwidth\n",
            q->shape, r->env->threads, g, pc, verdict, pr);
}

static void print_verdict(FILE *f, const bench_report *r) {
    int n = 0, bad = 0;
    for (int i = 0; i < r->n_cases; i++) {
        const bench_case *c = &r->cases[i];
        if (c->skipped) continue;
        n++;
        if (c->failed || !c->bits_same) {
            bad++;
            fprintf(f, "%s %s: %s\n", c->failed ? "ERROR" : "DIFF", c->name,
                    c->failed ? c->err : c->bits_why);
        }
    }
    if (bad == 0) {
        fprintf(f, "determinism: all %d ops gave the same bits (two runs", n);
        if (r->env->threads > 1) fprintf(f, ", 1 thread vs %d", r->env->threads);
        fputs(", first rows / last queries alone", f);
        if (opg_cpu_best_level() != OPG_CPU_SCALAR)
            fprintf(f, ", scalar vs %s", opg_cpu_level_name(opg_cpu_best_level()));
        fputs(", C reference)\n", f);
    }
    else fprintf(f, "determinism: %d of %d ops FAILED\n", bad, n);
}

void bench_print_table(FILE *f, const bench_report *r) {
    print_header(f, r);
    fprintf(f, "%-18s %-20s %-5s %6s %11s %11s %9s %9s %6s  %s\n", "op", "shape", "dtype",
            "copies", "reps x inner", "median us", "GFLOP/s", "GB/s", "%copy", "bits");
    for (int i = 0; i < r->n_cases; i++)
        if (!r->cases[i].skipped) print_row(f, &r->cases[i], r->bw);
    print_q8_line(f, r);
    print_verdict(f, r);
}

/* ---- JSON ------------------------------------------------------------------------- */

static void json_machine(cJSON *o, const bench_report *r) {
    const bench_machine *m = r->machine;
    bench_json_add_str(o, "cpu_model", m->cpu_model);
    bench_json_add_int(o, "online_cpus", m->online_cpus);
    bench_json_add_int(o, "threads", r->env->threads);
    bench_json_add_str(o, "cpu_level", m->cpu_level);
    bench_json_add_str(o, "best_level", m->best_level);
    bench_json_add_int(o, "llc_bytes", (long long)m->llc_bytes);
    bench_json_add_str(o, "llc_source", m->llc_source);
    bench_json_add_str(o, "compiler", m->compiler);
    bench_json_add_str(o, "date", m->date);
}

static void json_bw(cJSON *o, const bench_bw *bw) {
    bench_json_add_int(o, "array_bytes", (long long)bw->array_bytes);
    bench_json_add_int(o, "reps", bw->reps);
    bench_json_add_str(o, "method", bw->method);
    const char *names[3] = {"copy", "read", "triad"};
    const double *v[3] = {bw->copy, bw->read, bw->triad};
    for (int i = 0; i < 3; i++) {
        char key[32];
        snprintf(key, sizeof key, "%s_gbs_1t", names[i]);
        bench_json_add_num(o, key, v[i][0]);
        snprintf(key, sizeof key, "%s_gbs", names[i]);
        bench_json_add_num(o, key, v[i][1]);
    }
}

static void json_case(cJSON *o, const bench_case *c, const bench_report *r) {
    bench_json_add_str(o, "name", c->name);
    bench_json_add_str(o, "group", c->group);
    bench_json_add_str(o, "shape", c->shape);
    bench_json_add_str(o, "dtype", c->dtype);
    bench_json_add_int(o, "threads", r->env->threads);
    bench_json_add_int(o, "copies", c->copies);
    bench_json_add_int(o, "reps", c->reps);
    bench_json_add_int(o, "inner", c->inner);
    bench_json_add_num(o, "median_s", c->failed ? -1.0 : c->median_s);
    bench_json_add_num(o, "min_s", c->failed ? -1.0 : c->min_s);
    bench_json_add_num(o, "flops", c->flops > 0 ? c->flops : -1.0);
    bench_json_add_num(o, "bytes", c->bytes);
    bench_json_add_num(o, "gflops", bench_case_gflops(c));
    bench_json_add_num(o, "gbs", bench_case_gbs(c));
    bench_json_add_bool(o, "mem_bound", c->mem_bound);
    bench_json_add_num(o, "pct_copy", bench_case_pct_copy(c, r->bw));
    bench_json_add_str(o, "bits", bits_word(c));
    bench_json_add_str(o, "checks", c->checks);
    bench_json_add_str(o, "detail", c->failed ? c->err : c->bits_same ? "" : c->bits_why);
}

static void json_q8(cJSON *root, const bench_report *r) {
    const bench_case *q = bench_find_q8_gemv(r);
    if (!q) {
        bench_json_add_null(root, "q8_0_gemv");
        return;
    }
    cJSON *o = bench_json_add_obj(root, "q8_0_gemv");
    double g = bench_case_gbs(q), pc = bench_case_pct_copy(q, r->bw);
    bench_json_add_str(o, "shape", q->shape);
    bench_json_add_num(o, "gbs", g);
    bench_json_add_num(o, "pct_copy", pc);
    bench_json_add_num(o, "pct_read", r->bw->read[1] > 0 ? 100.0 * g / r->bw->read[1] : -1.0);
    int acc = q8_is_acceptance(q, r->env);
    bench_json_add_num(o, "aim_pct_copy", Q8_AIM_PCT);
    bench_json_add_bool(o, "acceptance_shape", acc);
    if (acc) bench_json_add_bool(o, "met", pc >= Q8_AIM_PCT);
    else bench_json_add_null(o, "met"); /* not the acceptance shape */
}

int bench_print_json(FILE *f, const bench_report *r) {
    int ok = 1;
    cJSON *root = bench_json_new();
    bench_json_add_str(root, "tool", "opg-bench");
    bench_json_add_str(root, "part", "cpu");
    bench_json_add_int(root, "contract_version", OPG_CONTRACT_VERSION);
    bench_json_add_str(root, "mode", r->env->quick ? "quick" : "full");
    json_machine(bench_json_add_obj(root, "machine"), r);
    json_bw(bench_json_add_obj(root, "bandwidth"), r->bw);
    cJSON *ops = bench_json_add_arr(root, "ops");
    for (int i = 0; i < r->n_cases; i++) {
        const bench_case *c = &r->cases[i];
        if (c->skipped) continue;
        if (c->failed || !c->bits_same) ok = 0;
        json_case(bench_json_push_obj(ops), c, r);
    }
    json_q8(root, r);
    bench_json_add_bool(root, "ok", ok);
    return bench_json_finish(f, root);
}
