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

static void json_machine(FILE *f, const bench_report *r) {
    const bench_machine *m = r->machine;
    fputs("\"machine\":{\"cpu_model\":", f);
    bench_json_str(f, m->cpu_model);
    fprintf(f, ",\"online_cpus\":%d,\"threads\":%d,\"cpu_level\":", m->online_cpus,
            r->env->threads);
    bench_json_str(f, m->cpu_level);
    fputs(",\"best_level\":", f);
    bench_json_str(f, m->best_level);
    fprintf(f, ",\"llc_bytes\":%zu,\"llc_source\":", m->llc_bytes);
    bench_json_str(f, m->llc_source);
    fputs(",\"compiler\":", f);
    bench_json_str(f, m->compiler);
    fputs(",\"date\":", f);
    bench_json_str(f, m->date);
    fputs("}", f);
}

static void json_bw(FILE *f, const bench_bw *bw) {
    fprintf(f, "\"bandwidth\":{\"array_bytes\":%zu,\"reps\":%d,\"method\":", bw->array_bytes,
            bw->reps);
    bench_json_str(f, bw->method);
    const char *names[3] = {"copy", "read", "triad"};
    const double *v[3] = {bw->copy, bw->read, bw->triad};
    for (int i = 0; i < 3; i++) {
        fprintf(f, ",\"%s_gbs_1t\":", names[i]);
        bench_json_num(f, v[i][0]);
        fprintf(f, ",\"%s_gbs\":", names[i]);
        bench_json_num(f, v[i][1]);
    }
    fputs("}", f);
}

static void json_case(FILE *f, const bench_case *c, const bench_report *r) {
    fputs("{\"name\":", f);
    bench_json_str(f, c->name);
    fputs(",\"group\":", f);
    bench_json_str(f, c->group);
    fputs(",\"shape\":", f);
    bench_json_str(f, c->shape);
    fputs(",\"dtype\":", f);
    bench_json_str(f, c->dtype);
    fprintf(f, ",\"threads\":%d,\"copies\":%d,\"reps\":%d,\"inner\":%d,\"median_s\":",
            r->env->threads, c->copies, c->reps, c->inner);
    bench_json_num(f, c->failed ? -1.0 : c->median_s);
    fputs(",\"min_s\":", f);
    bench_json_num(f, c->failed ? -1.0 : c->min_s);
    fputs(",\"flops\":", f);
    bench_json_num(f, c->flops > 0 ? c->flops : -1.0);
    fputs(",\"bytes\":", f);
    bench_json_num(f, c->bytes);
    fputs(",\"gflops\":", f);
    bench_json_num(f, bench_case_gflops(c));
    fputs(",\"gbs\":", f);
    bench_json_num(f, bench_case_gbs(c));
    fprintf(f, ",\"mem_bound\":%s,\"pct_copy\":", c->mem_bound ? "true" : "false");
    bench_json_num(f, bench_case_pct_copy(c, r->bw));
    fputs(",\"bits\":", f);
    bench_json_str(f, bits_word(c));
    fputs(",\"checks\":", f);
    bench_json_str(f, c->checks);
    fputs(",\"detail\":", f);
    bench_json_str(f, c->failed ? c->err : c->bits_same ? "" : c->bits_why);
    fputs("}", f);
}

static void json_q8(FILE *f, const bench_report *r) {
    const bench_case *q = bench_find_q8_gemv(r);
    fputs("\"q8_0_gemv\":", f);
    if (!q) {
        fputs("null", f);
        return;
    }
    double g = bench_case_gbs(q), pc = bench_case_pct_copy(q, r->bw);
    fputs("{\"shape\":", f);
    bench_json_str(f, q->shape);
    fputs(",\"gbs\":", f);
    bench_json_num(f, g);
    fputs(",\"pct_copy\":", f);
    bench_json_num(f, pc);
    fputs(",\"pct_read\":", f);
    bench_json_num(f, r->bw->read[1] > 0 ? 100.0 * g / r->bw->read[1] : -1.0);
    int acc = q8_is_acceptance(q, r->env);
    fprintf(f, ",\"aim_pct_copy\":%.0f,\"acceptance_shape\":%s,\"met\":%s}", Q8_AIM_PCT,
            acc ? "true" : "false", !acc ? "null" : pc >= Q8_AIM_PCT ? "true" : "false");
}

void bench_print_json(FILE *f, const bench_report *r) {
    int ok = 1;
    fprintf(f, "{\"tool\":\"opg-bench\",\"part\":\"cpu\",\"contract_version\":%d,\"mode\":\"%s\",",
            OPG_CONTRACT_VERSION, r->env->quick ? "quick" : "full");
    json_machine(f, r);
    fputs(",", f);
    json_bw(f, r->bw);
    fputs(",\"ops\":[", f);
    int first = 1;
    for (int i = 0; i < r->n_cases; i++) {
        const bench_case *c = &r->cases[i];
        if (c->skipped) continue;
        if (c->failed || !c->bits_same) ok = 0;
        fputs(first ? "\n" : ",\n", f);
        first = 0;
        json_case(f, c, r);
    }
    fputs("],\n", f);
    json_q8(f, r);
    fprintf(f, ",\"ok\":%s}\n", ok ? "true" : "false");
}
