/* opg_bench.c: entry point of opg-bench (CPU part). Parses the command line,
 * measures the memory bandwidth ceiling, runs every selected case (timing
 * plus determinism check) and prints the table or --json. Exit status: 0 all
 * same bits, 1 a DIFF or a kernel error, 2 a usage error. */
#include "bench.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define MAX_CASES 64
#define MAX_OPS 64

typedef struct {
    int threads; /* 0: all online CPUs */
    int quick, json, list, reps;
    char *ops[MAX_OPS]; /* --op tokens (point into op_buf) */
    int n_ops;
    char op_buf[1024];
    size_t op_used;
} bench_opts;

static void usage(FILE *f) {
    fputs("usage: opg-bench [options]\n"
          "Times opg's CPU kernels per op and shape (median of reps after warm-up), next to\n"
          "the machine's own STREAM-like memory bandwidth, and checks that every op gives\n"
          "the same bits twice, on 1 thread and T threads, on the scalar and the best CPU\n"
          "path, and as the plain C reference. Table on stdout, progress on stderr.\n"
          "\n"
          "  --threads T   threads of the kernel pool (default: all online CPUs)\n"
          "  --op NAME     only these ops: a name or a group from --list; repeat the\n"
          "                flag or give a comma list (default: all)\n"
          "  --reps N      timed samples per op (default: 21 within a ~2 s budget)\n"
          "  --quick       small shapes and few reps, a few seconds (smoke run, CI)\n"
          "  --json        print one JSON object instead of the table\n"
          "  --list        print the op names and groups, then exit\n"
          "  -h, --help    this text\n"
          "\n"
          "Exit status: 0 all bits the same, 1 a DIFF or a kernel error, 2 bad usage.\n"
          "Columns and conventions: docs/benchmarks.md.\n",
          f);
}

static int usage_error(const char *fmt, const char *arg) {
    fputs("opg-bench: ", stderr);
    fprintf(stderr, fmt, arg);
    fputs("\n\n", stderr);
    usage(stderr);
    return 2;
}

/* Parses an integer in [lo, hi] that is the whole of s. */
static int parse_int(const char *s, int lo, int hi, int *out) {
    char *end = NULL;
    long v = strtol(s, &end, 10);
    if (!*s || *end || v < lo || v > hi) return -1;
    *out = (int)v;
    return 0;
}

/* Splits a comma list of op names into o->ops. */
static int add_ops(bench_opts *o, const char *list) {
    size_t n = strlen(list) + 1;
    if (o->op_used + n > sizeof o->op_buf) return -1;
    char *copy = o->op_buf + o->op_used;
    memcpy(copy, list, n);
    o->op_used += n;
    for (char *save = NULL, *tok = strtok_r(copy, ",", &save); tok;
         tok = strtok_r(NULL, ",", &save)) {
        if (o->n_ops >= MAX_OPS) return -1;
        o->ops[o->n_ops++] = tok;
    }
    return 0;
}

/* The value of "--flag V" or "--flag=V"; advances *i past it. NULL if none. */
static const char *flag_value(int argc, char **argv, int *i, const char *flag) {
    size_t n = strlen(flag);
    if (strncmp(argv[*i], flag, n) != 0) return NULL;
    if (argv[*i][n] == '=') return argv[*i] + n + 1;
    if (argv[*i][n] != '\0') return NULL;
    if (*i + 1 >= argc) return "";
    return argv[++*i];
}

static int parse_args(int argc, char **argv, bench_opts *o) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            exit(0);
        } else if (strcmp(a, "--quick") == 0) {
            o->quick = 1;
        } else if (strcmp(a, "--json") == 0) {
            o->json = 1;
        } else if (strcmp(a, "--list") == 0) {
            o->list = 1;
        } else if ((v = flag_value(argc, argv, &i, "--threads"))) {
            if (parse_int(v, 1, 1024, &o->threads) != 0)
                return usage_error("--threads needs an integer from 1 to 1024, got '%s'", v);
        } else if ((v = flag_value(argc, argv, &i, "--reps"))) {
            if (parse_int(v, 1, 100000, &o->reps) != 0)
                return usage_error("--reps needs an integer from 1 to 100000, got '%s'", v);
        } else if ((v = flag_value(argc, argv, &i, "--op"))) {
            if (!*v) return usage_error("--op needs a name%s", "");
            if (add_ops(o, v) != 0) return usage_error("too many --op names%s", "");
        } else {
            return usage_error("unknown option '%s'", a);
        }
    }
    return 0;
}

static int case_selected(const bench_case *c, const bench_opts *o) {
    if (o->n_ops == 0) return 1;
    for (int i = 0; i < o->n_ops; i++)
        if (strcasecmp(o->ops[i], c->name) == 0 || strcasecmp(o->ops[i], c->group) == 0) return 1;
    return 0;
}

/* Marks unselected cases skipped; 2 when an --op token matches nothing. */
static int apply_filter(bench_case *cases, int n, const bench_opts *o) {
    for (int i = 0; i < o->n_ops; i++) {
        int hit = 0;
        for (int j = 0; j < n; j++)
            hit |= strcasecmp(o->ops[i], cases[j].name) == 0 ||
                   strcasecmp(o->ops[i], cases[j].group) == 0;
        if (!hit) return usage_error("unknown op '%s' (see --list)", o->ops[i]);
    }
    for (int j = 0; j < n; j++) cases[j].skipped = !case_selected(&cases[j], o);
    return 0;
}

static void list_cases(const bench_case *cases, int n) {
    printf("%-18s %s\n", "op", "group");
    for (int i = 0; i < n; i++) printf("%-18s %s\n", cases[i].name, cases[i].group);
}

int main(int argc, char **argv) {
    bench_opts o;
    memset(&o, 0, sizeof o);
    int rc = parse_args(argc, argv, &o);
    if (rc != 0) return rc;

    static bench_case cases[MAX_CASES];
    int n = bench_cases_build(cases, MAX_CASES, o.quick);
    if ((rc = apply_filter(cases, n, &o)) != 0) return rc;
    if (o.list) {
        list_cases(cases, n);
        return 0;
    }

    bench_machine m;
    bench_machine_read(&m);
    bench_env env = {0};
    env.threads = o.threads > 0 ? o.threads : m.online_cpus;
    env.llc_bytes = m.llc_bytes;
    env.quick = o.quick;
    env.reps = o.reps;
    env.level = opg_cpu_get_level();
    env.pool = opg_pool_new(env.threads);
    env.pool1 = opg_pool_new(1);
    if (!env.pool || !env.pool1) {
        fprintf(stderr, "opg-bench: cannot start %d threads\n", env.threads);
        return 1;
    }
    if (env.threads > m.online_cpus)
        fprintf(stderr, "opg-bench: note: %d threads on %d online CPUs (oversubscribed)\n",
                env.threads, m.online_cpus);

    bench_bw bw;
    memset(&bw, 0, sizeof bw);
    bench_bw_measure(&env, o.quick ? 3 : 10, &bw);

    int bad = 0;
    for (int i = 0; i < n; i++)
        if (!cases[i].skipped && bench_case_measure(&cases[i], &env) != 0) bad++;

    bench_report r = {&m, &bw, &env, cases, n};
    if (o.json) bench_print_json(stdout, &r);
    else bench_print_table(stdout, &r);

    opg_pool_free(env.pool);
    opg_pool_free(env.pool1);
    return bad ? 1 : 0;
}
