/* opg_bench.c: entry point of opg-bench (CPU part). Parses the command line,
 * measures the memory bandwidth ceiling, runs every selected case (timing
 * plus determinism check) and prints the table or --json. Exit status: 0 all
 * same bits, 1 a DIFF or a kernel error, 2 a usage error. --dispatch runs the
 * dispatch load test instead (bench_dispatch.c). */
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
    int dispatch;         /* --dispatch: the load test instead of the kernels */
    const char *backend;  /* --backend: a backend's ops (and --model) instead */
    bench_dispatch_opts d;
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
          "A backend's ops as the model calls them (the GPU part: --backend cuda), each\n"
          "timed on it and compared bit for bit with the cpu backend (all CPUs; 1 thread\n"
          "when it is the cpu backend); next to float matmuls, cuBLAS at the same shape:\n"
          "  --backend B              cpu, cuda, cuda:N or auto (instead of the kernels;\n"
          "                           --threads, --op, --reps, --quick, --json, --list apply;\n"
          "                           --op none: no op, the model alone)\n"
          "  --model PATH             also the whole model on B: prefill and decode tokens/s\n"
          "                           (1 and 8 sequences) and its jobs' trace roots against\n"
          "                           the cpu backend's, alone and batched\n"
          "\n"
          "Dispatch load test (instead of the kernels): starts opg-coordinator and N\n"
          "opg-worker on 127.0.0.1 with a fresh store, loads them from client sockets\n"
          "here: jobs/s with a window of jobs in flight, then latency at a fixed rate.\n"
          "  --dispatch               run it\n"
          "  --dispatch-workers N     opg-worker processes, 1 thread each (default 4)\n"
          "  --dispatch-slots N       --slots of each worker (default 64)\n"
          "  --dispatch-clients N     client DEALER sockets (default 2)\n"
          "  --dispatch-window N      jobs in flight in the max-throughput phase (default 256)\n"
          "  --dispatch-receipts C    the coordinator's --receipts: full (default: every receipt's\n"
          "                           signature verified) or fields (all but the signature)\n"
          "  --dispatch-seconds S     measured seconds per phase (default 5)\n"
          "  --dispatch-warmup S      warm-up seconds before each phase (default 1)\n"
          "  --dispatch-rate R        fixed-rate phase, jobs/s (default: half the max)\n"
          "  --dispatch-prompt N      prompt length in token ids (default 4; max_tokens 1)\n"
          "  --dispatch-dir DIR       where the temp dir with the store goes ($TMPDIR, /tmp)\n"
          "  --model PATH|micro       model the workers serve (default: the test fixture's\n"
          "                           tiny-f32.gguf in the build tree); micro: a generated\n"
          "                           1-layer width-32 model, so a job costs ~ its dispatch\n"
          "  --coordinator-bin PATH, --worker-bin PATH   the daemons (default: the build tree's)\n"
          "\n"
          "Exit status: 0 all bits the same, 1 a DIFF or a kernel error, 2 bad usage,\n"
          "3 (--backend) the backend cannot be created (no CUDA device, driver or build).\n"
          "(--dispatch: 0 every job answered correctly, 1 errors, 130 interrupted.)\n"
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

/* Parses a number in [lo, hi] that is the whole of s. */
static int parse_double(const char *s, double lo, double hi, double *out) {
    char *end = NULL;
    double v = strtod(s, &end);
    if (!*s || *end || !(v >= lo && v <= hi)) return -1;
    *out = v;
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
        } else if ((v = flag_value(argc, argv, &i, "--backend"))) {
            if (!*v) return usage_error("--backend needs cpu, cuda, cuda:N or auto%s", "");
            o->backend = v;
        } else if (strcmp(a, "--dispatch") == 0) {
            o->dispatch = 1;
        } else if ((v = flag_value(argc, argv, &i, "--dispatch-workers"))) {
            if (parse_int(v, 1, 256, &o->d.workers) != 0)
                return usage_error("--dispatch-workers needs an integer from 1 to 256, got '%s'", v);
        } else if ((v = flag_value(argc, argv, &i, "--dispatch-slots"))) {
            if (parse_int(v, 1, 4096, &o->d.slots) != 0)
                return usage_error("--dispatch-slots needs an integer from 1 to 4096, got '%s'", v);
        } else if ((v = flag_value(argc, argv, &i, "--dispatch-clients"))) {
            if (parse_int(v, 1, 64, &o->d.clients) != 0)
                return usage_error("--dispatch-clients needs an integer from 1 to 64, got '%s'", v);
        } else if ((v = flag_value(argc, argv, &i, "--dispatch-window"))) {
            if (parse_int(v, 1, 1000000, &o->d.window) != 0)
                return usage_error("--dispatch-window needs an integer from 1 to 1000000, got '%s'", v);
        } else if ((v = flag_value(argc, argv, &i, "--dispatch-prompt"))) {
            if (parse_int(v, 1, 64, &o->d.prompt) != 0)
                return usage_error("--dispatch-prompt needs an integer from 1 to 64, got '%s'", v);
        } else if ((v = flag_value(argc, argv, &i, "--dispatch-seconds"))) {
            if (parse_double(v, 0.1, 3600, &o->d.seconds) != 0)
                return usage_error("--dispatch-seconds needs seconds from 0.1 to 3600, got '%s'", v);
        } else if ((v = flag_value(argc, argv, &i, "--dispatch-warmup"))) {
            if (parse_double(v, 0, 3600, &o->d.warmup) != 0)
                return usage_error("--dispatch-warmup needs seconds from 0 to 3600, got '%s'", v);
        } else if ((v = flag_value(argc, argv, &i, "--dispatch-rate"))) {
            if (parse_double(v, 1, 1e7, &o->d.rate) != 0)
                return usage_error("--dispatch-rate needs jobs/s from 1 to 1e7, got '%s'", v);
        } else if ((v = flag_value(argc, argv, &i, "--dispatch-receipts"))) {
            if (strcmp(v, "full") && strcmp(v, "fields"))
                return usage_error("--dispatch-receipts needs full or fields, got '%s'", v);
            o->d.receipts = v;
        } else if ((v = flag_value(argc, argv, &i, "--dispatch-dir"))) {
            if (!*v) return usage_error("--dispatch-dir needs a directory%s", "");
            o->d.dir = v;
        } else if ((v = flag_value(argc, argv, &i, "--model"))) {
            if (!*v) return usage_error("--model needs a path%s", "");
            o->d.model = v; /* --dispatch: the workers'; --backend: the one timed */
        } else if ((v = flag_value(argc, argv, &i, "--coordinator-bin"))) {
            if (!*v) return usage_error("--coordinator-bin needs a path%s", "");
            o->d.coordinator_bin = v;
        } else if ((v = flag_value(argc, argv, &i, "--worker-bin"))) {
            if (!*v) return usage_error("--worker-bin needs a path%s", "");
            o->d.worker_bin = v;
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
    o.d.warmup = -1; /* default */
    int rc = parse_args(argc, argv, &o);
    if (rc != 0) return rc;
    if (o.dispatch && o.backend)
        return usage_error("--dispatch and --backend are separate runs%s", "");
    if (o.backend && o.d.model && strcmp(o.d.model, "micro") == 0)
        return usage_error("--model micro is for --dispatch; --backend needs a GGUF path%s", "");
    if (o.backend) {
        if (o.list) {
            bench_backend_list(stdout);
            return 0;
        }
        bench_backend_opts b = {o.backend, o.threads, o.quick, o.json, o.reps, o.d.model,
                                o.ops, o.n_ops};
        return bench_backend_main(&b);
    }
    if (o.dispatch) {
        o.d.json = o.json;
        return bench_dispatch_main(&o.d);
    }

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
    if (o.json) {
        if (bench_print_json(stdout, &r) != 0) bad++;
    } else {
        bench_print_table(stdout, &r);
    }

    opg_pool_free(env.pool);
    opg_pool_free(env.pool1);
    return bad ? 1 : 0;
}
