/* bench_dispatch.c: opg-bench --dispatch, the load test of job dispatch.
 *
 * Starts the real opg-coordinator (fresh SQLite store in a temp dir, metrics
 * off) and N real opg-worker processes (1 thread each, a small model) on
 * 127.0.0.1, then loads the coordinator from client DEALER sockets in this
 * process, the way any client does: SubmitJob -> SubmitAck{id} ->
 * GetResult{id, wait} -> Result. Two phases:
 *   max   closed loop: a window of W jobs kept in flight (a Result frees a
 *         place, a new job takes it) -> jobs/s;
 *   rate  open loop at R jobs/s (default: half the max), paced per
 *         millisecond whatever the answers do -> latency percentiles.
 * Latency of a job: its Result's arrival minus its SubmitJob's send, both on
 * this process's monotonic clock. Every Result is checked (a job id this
 * client was given and waits for, exactly one output token); anything else
 * is counted as an error, not asserted: a benchmark reports.
 *
 * Everything (coordinator, workers, this client and their ZeroMQ I/O
 * threads) shares the machine's cores, so the CPU time each side used per
 * job (from /proc) is printed too: it says which side bounds the rate.
 *
 * Without the network targets (OPG_NETWORK=OFF) only the stub at the end is
 * compiled and --dispatch says so. */
#include "bench.h"

#ifdef OPG_BENCH_DISPATCH

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "contract.h"
#include "frame.h"
#include "lattrace.h"
#include "sock.h"

#define T(x) OPG__V1__MESSAGE_TYPE__MESSAGE_TYPE_##x
#define MAX_WORKERS 256
#define MAX_CLIENTS 64
#define OPEN_CAP 16384      /* open loop: jobs in flight per client before sends are skipped */
#define DRAIN_S 10.0        /* after a phase: seconds to wait for the last answers */
#define START_S 30.0        /* seconds for the daemons to start and the workers to connect */

static volatile sig_atomic_t g_stop;
static void on_signal(int sig) {
    (void)sig;
    g_stop = 1;
}

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void nap_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* ---- processes ------------------------------------------------------------------- */

typedef struct {
    pid_t pid;          /* 0: not running (never started, or reaped) */
    int status;         /* wait status once reaped */
    char log[640];      /* its stdout and stderr (x->dir + a file name) */
    const char *what;   /* "coordinator", "worker" */
} proc;

/* fork + exec with output to p->log. The child gets its own process group
 * (a terminal's Ctrl-C reaches only opg-bench, which then stops it in order)
 * and dies with opg-bench (PR_SET_PDEATHSIG), even when opg-bench is killed. */
static int spawn(proc *p, char *const argv[]) {
    pid_t parent = getpid();
    int fd = open(p->log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        fprintf(stderr, "opg-bench: cannot create %s: %s\n", p->log, strerror(errno));
        return -1;
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "opg-bench: fork: %s\n", strerror(errno));
        close(fd);
        return -1;
    }
    if (pid == 0) {
        setpgid(0, 0);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) _exit(127); /* the parent died before prctl */
        int nul = open("/dev/null", O_RDONLY);
        if (nul >= 0) dup2(nul, 0);
        dup2(fd, 1);
        dup2(fd, 2);
        signal(SIGINT, SIG_DFL);
        signal(SIGTERM, SIG_DFL);
        execv(argv[0], argv);
        fprintf(stderr, "opg-bench: cannot run %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    close(fd);
    p->pid = pid;
    return 0;
}

/* 1 when p is still running; reaps it otherwise. */
static int alive(proc *p) {
    if (p->pid <= 0) return 0;
    pid_t r = waitpid(p->pid, &p->status, WNOHANG);
    if (r == 0) return 1;
    p->pid = 0;
    return 0;
}

static void describe_exit(const proc *p, char *out, size_t n) {
    if (WIFEXITED(p->status)) snprintf(out, n, "exited with status %d", WEXITSTATUS(p->status));
    else if (WIFSIGNALED(p->status)) snprintf(out, n, "killed by signal %d", WTERMSIG(p->status));
    else snprintf(out, n, "stopped");
}

/* Prints the last lines of a daemon's log, for a failure report. */
static void print_log_tail(const proc *p) {
    FILE *f = fopen(p->log, "r");
    if (!f) return;
    char buf[4096];
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    long from = size > (long)sizeof buf - 1 ? size - (long)sizeof buf + 1 : 0;
    fseek(f, from, SEEK_SET);
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = 0;
    fclose(f);
    fprintf(stderr, "---- %s (%s), last lines:\n%s%s----\n", p->what, p->log, buf,
            n && buf[n - 1] != '\n' ? "\n" : "");
}

/* SIGTERM to all (workers first: they drain, then say Disconnect), then
 * SIGKILL to whatever still runs after timeout_ms; reaps every one. */
static void stop_all(proc *ps, int n, int timeout_ms) {
    for (int i = n - 1; i >= 0; i--)
        if (ps[i].pid > 0) kill(ps[i].pid, SIGTERM);
    int64_t deadline = now_ns() + (int64_t)timeout_ms * 1000000;
    for (;;) {
        int left = 0;
        for (int i = 0; i < n; i++) left += alive(&ps[i]);
        if (!left) return;
        if (now_ns() > deadline) break;
        nap_ms(10);
    }
    for (int i = 0; i < n; i++)
        if (ps[i].pid > 0) {
            fprintf(stderr, "opg-bench: %s %d did not stop on SIGTERM: SIGKILL\n", ps[i].what, (int)ps[i].pid);
            kill(ps[i].pid, SIGKILL);
            waitpid(ps[i].pid, &ps[i].status, 0);
            ps[i].pid = 0;
        }
}

/* CPU seconds (user + system, all threads) of a live process, -1 when gone. */
static double proc_cpu_s(pid_t pid) {
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    const char *p = strrchr(buf, ')'); /* the command name may hold spaces */
    if (!p) return -1;
    unsigned long ut = 0, st = 0;
    /* after ")": state(3) ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime(14) stime(15) */
    if (sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2) return -1;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* CPU seconds the whole machine spent busy (user, system, interrupts and a
 * VM's steal) since boot, from /proc/stat; -1 when unreadable. */
static double machine_busy_s(void) {
    FILE *f = fopen("/proc/stat", "r");
    if (!f) return -1;
    unsigned long long v[8] = {0};
    int n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6],
                   &v[7]);
    fclose(f);
    if (n != 8) return -1;
    /* user nice system idle iowait irq softirq steal: all but idle and iowait */
    return (double)(v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / (double)sysconf(_SC_CLK_TCK);
}

static double self_cpu_s(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec * 1e-6;
}

/* ---- temp dir ------------------------------------------------------------------- */

static void remove_dir(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    char path[1024];
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        unlink(path);
    }
    closedir(d);
    rmdir(dir);
}

static const char *fs_name(const char *dir) {
    struct statfs s;
    if (statfs(dir, &s) != 0) return "unknown";
    switch ((unsigned long)s.f_type) {
    case 0xEF53UL: return "ext4";
    case 0x01021994UL: return "tmpfs (fsync is free)";
    case 0x58465342UL: return "xfs";
    case 0x9123683EUL: return "btrfs";
    case 0x794c7630UL: return "overlayfs";
    default: return "other";
    }
}

/* ---- log scraping ------------------------------------------------------------------ */

/* Reads a whole log file into a new string (caller frees), NULL when missing. */
static char *slurp(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) return NULL;
    size_t cap = 4096, n = 0;
    char *s = malloc(cap);
    while (s) {
        if (n + 2048 > cap) {
            char *t = realloc(s, cap *= 2);
            if (!t) {
                free(s);
                s = NULL;
                break;
            }
            s = t;
        }
        size_t r = fread(s + n, 1, cap - n - 1, f);
        n += r;
        if (r == 0) break;
    }
    fclose(f);
    if (s) s[n] = 0;
    return s;
}

/* Copies the value of key (logfmt "key=value") from the first line holding
 * event; 0 when found. */
static int log_value(const char *log, const char *event, const char *key, char *out, size_t n) {
    const char *line = strstr(log, event);
    if (!line) return -1;
    const char *eol = strchr(line, '\n');
    char pat[64];
    snprintf(pat, sizeof pat, " %s=", key);
    const char *v = strstr(line, pat);
    if (!v || (eol && v > eol)) return -1;
    v += strlen(pat);
    size_t len = strcspn(v, " \n");
    if (len >= n) return -1;
    memcpy(out, v, len);
    out[len] = 0;
    return 0;
}

static int count_events(const char *log, const char *event) {
    int k = 0;
    for (const char *p = log; (p = strstr(p, event)); p += strlen(event)) k++;
    return k;
}

/* ---- the micro model -------------------------------------------------------------- */

/* --model micro: a llama model of 1 layer, width 32, 1 head, vocabulary 64,
 * f32 weights from a fixed seed, written here as GGUF v3. A job on it costs
 * the worker a few microseconds of forward pass, so what is measured is the
 * path of a job (client, coordinator, store, worker link, receipt), not
 * the model. The weights are noise: the output token means nothing. */
#define MICRO_D 32
#define MICRO_V 64

typedef struct {
    FILE *f;
    int err;
} gw;

static void gw_bytes(gw *w, const void *p, size_t n) {
    if (n && fwrite(p, 1, n, w->f) != n) w->err = 1;
}
static void gw_u32(gw *w, uint32_t v) { gw_bytes(w, &v, 4); } /* x86-64 and GGUF: little-endian */
static void gw_u64(gw *w, uint64_t v) { gw_bytes(w, &v, 8); }
static void gw_str(gw *w, const char *s) {
    gw_u64(w, strlen(s));
    gw_bytes(w, s, strlen(s));
}
static void gw_kv_u32(gw *w, const char *k, uint32_t v) {
    gw_str(w, k);
    gw_u32(w, 4); /* GGUF_TYPE_UINT32 */
    gw_u32(w, v);
}
static void gw_kv_f32(gw *w, const char *k, float v) {
    gw_str(w, k);
    gw_u32(w, 6); /* GGUF_TYPE_FLOAT32 */
    gw_bytes(w, &v, 4);
}
static void gw_kv_str(gw *w, const char *k, const char *v) {
    gw_str(w, k);
    gw_u32(w, 8); /* GGUF_TYPE_STRING */
    gw_str(w, v);
}

static int write_micro_model(const char *path) {
    struct {
        const char *name;
        uint64_t ne0, ne1; /* ne1 0: 1-D */
        float center, spread;
    } t[] = {
        {"token_embd.weight", MICRO_D, MICRO_V, 0, 1.0f},
        {"output_norm.weight", MICRO_D, 0, 1, 0.1f},
        {"blk.0.attn_norm.weight", MICRO_D, 0, 1, 0.1f},
        {"blk.0.attn_q.weight", MICRO_D, MICRO_D, 0, 0.2f},
        {"blk.0.attn_k.weight", MICRO_D, MICRO_D, 0, 0.2f},
        {"blk.0.attn_v.weight", MICRO_D, MICRO_D, 0, 0.2f},
        {"blk.0.attn_output.weight", MICRO_D, MICRO_D, 0, 0.2f},
        {"blk.0.ffn_norm.weight", MICRO_D, 0, 1, 0.1f},
        {"blk.0.ffn_gate.weight", MICRO_D, MICRO_D, 0, 0.2f},
        {"blk.0.ffn_up.weight", MICRO_D, MICRO_D, 0, 0.2f},
        {"blk.0.ffn_down.weight", MICRO_D, MICRO_D, 0, 0.2f},
    };
    const int n_t = (int)(sizeof t / sizeof t[0]);
    gw w = {fopen(path, "wb"), 0};
    if (!w.f) return -1;
    gw_bytes(&w, "GGUF", 4);
    gw_u32(&w, 3);
    gw_u64(&w, (uint64_t)n_t);
    gw_u64(&w, 9);
    gw_kv_str(&w, "general.architecture", "llama");
    gw_kv_str(&w, "general.name", "opg-bench micro");
    gw_kv_u32(&w, "llama.block_count", 1);
    gw_kv_u32(&w, "llama.context_length", 256);
    gw_kv_u32(&w, "llama.embedding_length", MICRO_D);
    gw_kv_u32(&w, "llama.feed_forward_length", MICRO_D);
    gw_kv_u32(&w, "llama.attention.head_count", 1);
    gw_kv_u32(&w, "llama.attention.head_count_kv", 1);
    gw_kv_f32(&w, "llama.attention.layer_norm_rms_epsilon", 1e-5f);
    uint64_t off = 0;
    for (int i = 0; i < n_t; i++) {
        gw_str(&w, t[i].name);
        gw_u32(&w, t[i].ne1 ? 2 : 1);
        gw_u64(&w, t[i].ne0);
        if (t[i].ne1) gw_u64(&w, t[i].ne1);
        gw_u32(&w, 0); /* F32 */
        gw_u64(&w, off);
        off += (t[i].ne0 * (t[i].ne1 ? t[i].ne1 : 1) * 4 + 31) / 32 * 32;
    }
    static const uint8_t zeros[32];
    long pos = ftell(w.f);
    if (pos < 0) w.err = 1;
    else gw_bytes(&w, zeros, (size_t)((32 - pos % 32) % 32)); /* data starts aligned (general.alignment 32) */
    bench_rng rng = {0x6f7067u};
    for (int i = 0; i < n_t; i++) {
        size_t n = (size_t)(t[i].ne0 * (t[i].ne1 ? t[i].ne1 : 1));
        float v[MICRO_D * MICRO_V];
        bench_fill_f32(&rng, v, n, t[i].center - t[i].spread, t[i].center + t[i].spread);
        gw_bytes(&w, v, n * 4);
        gw_bytes(&w, zeros, (32 - n * 4 % 32) % 32);
    }
    if (fclose(w.f) != 0) w.err = 1;
    return w.err ? -1 : 0;
}

/* ---- clients ---------------------------------------------------------------------- */

typedef struct {
    void *sock;
    int64_t *ring;      /* send times of SubmitJobs not yet acked, FIFO (acks come in order) */
    uint32_t cap, head, n;
    int inflight;       /* submitted, no Result or Error yet */
} dclient;

typedef struct {
    double target_rate;                      /* 0: closed loop */
    int window;
    int64_t submitted, completed;            /* in the measured window */
    double seconds, jobs_s;
    double p50, p90, p99, max, mean;         /* ms */
    double cpu_coord, cpu_workers, cpu_client; /* CPU seconds in the measured window */
    double cpu_other;                        /* the machine's other busy CPU seconds in it (other
                                                processes, kernel threads, VM steal) */
    int64_t err_frames, bad_id, bad_tokens, lost, skipped, send_fail;
    int64_t total_jobs;                      /* every job of the phase, warm-up included */
} phase_result;

typedef struct {
    const bench_dispatch_opts *o;
    proc procs[1 + MAX_WORKERS];             /* [0] coordinator */
    int n_procs;
    char dir[512];
    char cep[256], wep[256];
    uint8_t model_id[32];
    void *zctx;
    dclient cl[MAX_CLIENTS];
    int n_cl;
    uint8_t *submit_frame;                   /* the SubmitJob, encoded once */
    size_t submit_len;
    int64_t *sent_at;                        /* by job id: send time + 1 while waiting, -1 answered, 0 unknown */
    uint64_t n_sent_at;
    double *lat;                             /* latencies (ms) of the measured jobs */
    size_t n_lat, cap_lat;
    int micro;                               /* the model is the generated micro model */
} dctx;

static int grow_ids(dctx *x, uint64_t id) {
    if (id < x->n_sent_at) return 0;
    if (id > (1ull << 32)) return -1; /* a fresh store hands out ids 1, 2, ...: this is not one */
    uint64_t n = x->n_sent_at ? x->n_sent_at : 1 << 16;
    while (n <= id) n *= 2;
    int64_t *p = realloc(x->sent_at, n * sizeof *p);
    if (!p) return -1;
    memset(p + x->n_sent_at, 0, (n - x->n_sent_at) * sizeof *p);
    x->sent_at = p;
    x->n_sent_at = n;
    return 0;
}

static void add_latency(dctx *x, double ms) {
    if (x->n_lat == x->cap_lat) {
        size_t cap = x->cap_lat ? 2 * x->cap_lat : 1 << 16;
        double *p = realloc(x->lat, cap * sizeof *p);
        if (!p) return;
        x->lat = p;
        x->cap_lat = cap;
    }
    x->lat[x->n_lat++] = ms;
}

static int submit(dctx *x, dclient *c, phase_result *r) {
    if (c->n == c->cap) return -1;
    int64_t t = now_ns();
    if (opg_sock_send_raw(c->sock, NULL, x->submit_frame, x->submit_len) != OPG_OK) {
        r->send_fail++;
        return -1;
    }
    c->ring[(c->head + c->n++) & (c->cap - 1)] = t;
    c->inflight++;
    r->total_jobs++;
    return 0;
}

/* What the phase counts as measured: closed loop, Results that arrive in
 * [m0, m1); open loop, jobs sent in [m0, m1). */
typedef struct {
    int open;
    int64_t m0, m1;
} window_t;

static void handle(dctx *x, dclient *c, opg_frame *f, const window_t *w, phase_result *r) {
    int64_t t = now_ns();
    switch (f->type) {
    case T(SUBMIT_ACK): {
        uint64_t id = ((Opg__V1__SubmitAck *)f->msg)->job_id;
        if (!c->n) {
            r->bad_id++;
            break;
        }
        int64_t sent = c->ring[c->head];
        c->head = (c->head + 1) & (c->cap - 1);
        c->n--;
        if (grow_ids(x, id) != 0 || x->sent_at[id] != 0) {
            r->bad_id++; /* an id out of range or given twice */
            c->inflight--;
            break;
        }
        x->sent_at[id] = sent + 1;
        OPG_LT_AT(id, OPG_LT_B_SENT, w->open, sent);
        OPG_LT(id, OPG_LT_B_ACK, (uint32_t)w->open);
        Opg__V1__GetResult g = OPG__V1__GET_RESULT__INIT;
        g.job_id = id;
        g.wait = 1;
        if (opg_sock_send(c->sock, NULL, T(GET_RESULT), &g.base) != OPG_OK) {
            r->send_fail++;
            x->sent_at[id] = -1;
            c->inflight--;
        }
        break;
    }
    case T(RESULT): {
        const Opg__V1__Result *res = (const Opg__V1__Result *)f->msg;
        uint64_t id = res->job_id;
        if (id >= x->n_sent_at || x->sent_at[id] <= 0) {
            r->bad_id++; /* not a job this client waits for */
            break;
        }
        int64_t sent = x->sent_at[id] - 1;
        x->sent_at[id] = -1;
        OPG_LT(id, OPG_LT_B_RESULT, (uint32_t)w->open);
        c->inflight--;
        if (res->n_output_tokens != 1) r->bad_tokens++;
        int in = w->open ? (sent >= w->m0 && sent < w->m1) : (t >= w->m0 && t < w->m1);
        if (in) {
            r->completed++;
            add_latency(x, (double)(t - sent) * 1e-6);
        }
        break;
    }
    case T(ERROR): {
        const Opg__V1__Error *e = (const Opg__V1__Error *)f->msg;
        r->err_frames++;
        if (r->err_frames <= 3)
            fprintf(stderr, "opg-bench: coordinator error (job %llu, code %d): %s\n", (unsigned long long)e->job_id,
                    (int)e->code, e->message);
        if (e->job_id == 0 && c->n) { /* a refused SubmitJob: the oldest unacked one */
            c->head = (c->head + 1) & (c->cap - 1);
            c->n--;
            c->inflight--;
        } else if (e->job_id && e->job_id < x->n_sent_at && x->sent_at[e->job_id] > 0) {
            x->sent_at[e->job_id] = -1;
            c->inflight--;
        }
        break;
    }
    default:
        r->bad_id++;
        break;
    }
}

static int inflight(const dctx *x) {
    int n = 0;
    for (int i = 0; i < x->n_cl; i++) n += x->cl[i].inflight;
    return n;
}

static int daemons_alive(dctx *x) {
    for (int i = 0; i < x->n_procs; i++)
        if (!alive(&x->procs[i])) {
            char why[64];
            describe_exit(&x->procs[i], why, sizeof why);
            fprintf(stderr, "opg-bench: %s %s\n", x->procs[i].what, why);
            print_log_tail(&x->procs[i]);
            return 0;
        }
    return 1;
}

/* CPU seconds so far: c[0] coordinator, c[1] workers, c[2] this process, c[3] the whole machine. */
static void cpu_sample(dctx *x, double c[4]) {
    c[0] = proc_cpu_s(x->procs[0].pid);
    c[1] = 0;
    for (int i = 1; i < x->n_procs; i++) c[1] += proc_cpu_s(x->procs[i].pid);
    c[2] = self_cpu_s();
    c[3] = machine_busy_s();
}

static int cmp_double(const void *a, const void *b) {
    double u = *(const double *)a, v = *(const double *)b;
    return u < v ? -1 : u > v;
}

static double pct(const double *s, size_t n, double p) {
    if (!n) return -1;
    size_t i = (size_t)ceil(p / 100.0 * (double)n);
    return s[i ? i - 1 : 0];
}

/* One phase: warm-up, the measured window, then the drain (wait for every
 * answer, at most DRAIN_S). rate 0: closed loop with window jobs in flight. */
static int run_phase(dctx *x, double rate, int window, phase_result *r) {
    memset(r, 0, sizeof *r);
    r->target_rate = rate;
    r->window = rate > 0 ? 0 : window;
    r->seconds = x->o->seconds;
    x->n_lat = 0;
    int64_t t0 = now_ns();
    window_t w = {rate > 0, t0 + (int64_t)(x->o->warmup * 1e9), 0};
    w.m1 = w.m0 + (int64_t)(x->o->seconds * 1e9);
    int64_t drain_end = w.m1 + (int64_t)(DRAIN_S * 1e9);
    double interval = rate > 0 ? 1e9 / rate : 0;
    double next = (double)t0;  /* open loop: the next send's time */
    int per_client = (window + x->n_cl - 1) / x->n_cl;
    int rr = 0, measuring = 0, ok = 1;
    double c0[4] = {0}, c1[4] = {0};
    zmq_pollitem_t items[MAX_CLIENTS];
    for (int i = 0; i < x->n_cl; i++) items[i] = (zmq_pollitem_t){x->cl[i].sock, 0, ZMQ_POLLIN, 0};
    int64_t last_check = t0;
    for (;;) {
        if (g_stop) return -1;
        int64_t t = now_ns();
        if (!measuring && t >= w.m0) {
            measuring = 1;
            cpu_sample(x, c0);
        }
        if (measuring == 1 && t >= w.m1) {
            measuring = 2;
            cpu_sample(x, c1);
        }
        int submitting = t < w.m1;
        if (submitting && rate > 0) {
            while (next <= (double)t) {
                dclient *c = &x->cl[rr++ % x->n_cl];
                int in = next >= (double)w.m0;
                if (c->inflight >= OPEN_CAP || submit(x, c, r) != 0) r->skipped += in;
                else r->submitted += in;
                next += interval;
            }
        } else if (submitting) {
            for (int i = 0; i < x->n_cl; i++)
                while (x->cl[i].inflight < per_client && submit(x, &x->cl[i], r) == 0)
                    if (t >= w.m0) r->submitted++;
        }
        if (!submitting && inflight(x) == 0) break;
        if (!submitting && t >= drain_end) break;
        if (t - last_check > 500000000) { /* a dead daemon would leave the loop waiting */
            last_check = t;
            if (!daemons_alive(x)) {
                ok = 0;
                break;
            }
        }
        long timeout = 100;
        if (submitting && rate > 0) {
            double d = (next - (double)now_ns()) / 1e6;
            timeout = d <= 0 ? 0 : (long)ceil(d);
        } else if (submitting) {
            double d = (double)(w.m1 - now_ns()) / 1e6;
            timeout = d <= 0 ? 0 : d < 100 ? (long)ceil(d) : 100;
        }
        if (zmq_poll(items, x->n_cl, timeout) < 0 && zmq_errno() != EINTR) {
            fprintf(stderr, "opg-bench: poll: %s\n", zmq_strerror(zmq_errno()));
            return -1;
        }
        for (int i = 0; i < x->n_cl; i++) {
            for (;;) {
                opg_frame *f = NULL;
                opg_status st = opg_sock_recv(x->cl[i].sock, 0, NULL, &f);
                if (st == OPG_ERR_TIMEOUT) break;
                if (st) {
                    r->bad_id++; /* a frame that does not decode */
                    continue;
                }
                handle(x, &x->cl[i], f, &w, r);
                opg_frame_free(&f);
            }
        }
    }
    if (measuring < 2) cpu_sample(x, c1);
    r->lost = inflight(x);
    for (int i = 0; i < x->n_cl; i++) { /* forget what never came back: the next phase starts clean */
        x->cl[i].inflight = 0;
        x->cl[i].n = 0;
    }
    if (r->lost)
        for (uint64_t id = 0; id < x->n_sent_at; id++)
            if (x->sent_at[id] > 0) x->sent_at[id] = -1;
    r->cpu_coord = c1[0] - c0[0];
    r->cpu_workers = c1[1] - c0[1];
    r->cpu_client = c1[2] - c0[2];
    r->cpu_other = c1[3] - c0[3] - r->cpu_coord - r->cpu_workers - r->cpu_client;
    if (r->cpu_other < 0) r->cpu_other = 0; /* clock-tick rounding */
    r->jobs_s = (double)r->completed / x->o->seconds;
    qsort(x->lat, x->n_lat, sizeof *x->lat, cmp_double);
    double sum = 0;
    for (size_t i = 0; i < x->n_lat; i++) sum += x->lat[i];
    r->mean = x->n_lat ? sum / (double)x->n_lat : -1;
    r->p50 = pct(x->lat, x->n_lat, 50);
    r->p90 = pct(x->lat, x->n_lat, 90);
    r->p99 = pct(x->lat, x->n_lat, 99);
    r->max = x->n_lat ? x->lat[x->n_lat - 1] : -1;
    return ok ? 0 : -1;
}

static int64_t errors_of(const phase_result *r) {
    return r->err_frames + r->bad_id + r->bad_tokens + r->lost + r->send_fail;
}

/* ---- setup ------------------------------------------------------------------------ */

static int start_daemons(dctx *x) {
    const bench_dispatch_opts *o = x->o;
    char db[600];
    snprintf(db, sizeof db, "%s/jobs.db", x->dir);
    proc *co = &x->procs[0];
    co->what = "opg-coordinator";
    snprintf(co->log, sizeof co->log, "%s/coordinator.log", x->dir);
    /* --client-hwm: a window of thousands of jobs must not lose answers to
       the default per-client queue of 1000 messages */
    char *cargv[] = {(char *)o->coordinator_bin, "--workers", "tcp://127.0.0.1:*", "--clients", "tcp://127.0.0.1:*",
                     "--db", db, "--metrics", "off", "--client-hwm", "1000000", "--log-level", "info",
                     "--receipts", (char *)(o->receipts ? o->receipts : "full"), NULL};
    if (spawn(co, cargv) != 0) return -1;
    x->n_procs = 1;
    int64_t deadline = now_ns() + (int64_t)(START_S * 1e9);
    for (;;) {
        char *log = slurp(co->log);
        int got = log && !log_value(log, "event=started", "workers", x->wep, sizeof x->wep) &&
                  !log_value(log, "event=started", "clients", x->cep, sizeof x->cep);
        free(log);
        if (got) break;
        if (!daemons_alive(x) || g_stop || now_ns() > deadline) {
            if (now_ns() > deadline) fprintf(stderr, "opg-bench: the coordinator did not start in %.0f s\n", START_S);
            return -1;
        }
        nap_ms(10);
    }
    char slots[16];
    snprintf(slots, sizeof slots, "%d", o->slots);
    for (int i = 0; i < o->workers; i++) {
        proc *p = &x->procs[1 + i];
        p->what = "opg-worker";
        snprintf(p->log, sizeof p->log, "%s/worker-%d.log", x->dir, i);
        char name[32];
        snprintf(name, sizeof name, "bench-w%d", i);
        char *wargv[] = {(char *)o->worker_bin, "--coordinator", x->wep, "--model", (char *)o->model, "--backend",
                         "cpu", "--threads", "1", "--slots", slots, "--name", name, "--log-level", "info", NULL};
        if (spawn(p, wargv) != 0) return -1;
        x->n_procs++;
    }
    for (;;) {
        char *log = slurp(co->log);
        int ready = log ? count_events(log, "event=worker_ready") : 0;
        free(log);
        if (ready >= o->workers) break;
        if (!daemons_alive(x) || g_stop) return -1;
        if (now_ns() > deadline) {
            fprintf(stderr, "opg-bench: %d of %d workers connected in %.0f s\n", ready, o->workers, START_S);
            print_log_tail(&x->procs[1]);
            return -1;
        }
        nap_ms(10);
    }
    char *wlog = slurp(x->procs[1].log);
    char hex[80] = "";
    int ok = wlog && !log_value(wlog, "event=model_loaded", "id", hex, sizeof hex) && strlen(hex) == 64;
    free(wlog);
    for (int i = 0; ok && i < 32; i++) {
        unsigned v = 0;
        ok = sscanf(hex + 2 * i, "%2x", &v) == 1;
        x->model_id[i] = (uint8_t)v;
    }
    if (!ok) {
        fprintf(stderr, "opg-bench: no model id in the worker's log\n");
        print_log_tail(&x->procs[1]);
        return -1;
    }
    return 0;
}

static int open_clients(dctx *x) {
    const bench_dispatch_opts *o = x->o;
    if (!(x->zctx = zmq_ctx_new())) return -1;
    int per = (o->window + o->clients - 1) / o->clients;
    uint32_t cap = 1;
    while (cap < (uint32_t)(per > OPEN_CAP ? per : OPEN_CAP) + 1) cap *= 2;
    for (int i = 0; i < o->clients; i++) {
        dclient *c = &x->cl[i];
        c->cap = cap;
        c->ring = malloc(cap * sizeof *c->ring);
        c->sock = zmq_socket(x->zctx, ZMQ_DEALER);
        x->n_cl++;
        if (!c->ring || !c->sock || opg_sock_setup(c->sock, 0, 1000000, 1000000, 0) != OPG_OK ||
            zmq_connect(c->sock, x->cep) != 0) {
            fprintf(stderr, "opg-bench: client socket: %s\n", zmq_strerror(zmq_errno()));
            return -1;
        }
    }
    uint32_t ids[64];
    for (int i = 0; i < o->prompt; i++) ids[i] = (uint32_t)(1 + (i * 7) % 60); /* fits any vocabulary >= 61 */
    Opg__V1__TokenList tl = OPG__V1__TOKEN_LIST__INIT;
    tl.n_ids = (size_t)o->prompt;
    tl.ids = ids;
    Opg__V1__SubmitJob sj = OPG__V1__SUBMIT_JOB__INIT;
    sj.model_id = (ProtobufCBinaryData){32, x->model_id};
    sj.prompt_case = OPG__V1__SUBMIT_JOB__PROMPT_TOKENS;
    sj.tokens = &tl;
    sj.max_tokens = 1;
    sj.contract_version = OPG_CONTRACT_VERSION;
    if (opg_frame_encode(T(SUBMIT_JOB), &sj.base, &x->submit_frame, &x->submit_len) != OPG_OK) {
        fprintf(stderr, "opg-bench: encoding SubmitJob: %s\n", opg_last_error());
        return -1;
    }
    return 0;
}

static void close_clients(dctx *x) {
    for (int i = 0; i < x->n_cl; i++) {
        if (x->cl[i].sock) zmq_close(x->cl[i].sock);
        free(x->cl[i].ring);
    }
    x->n_cl = 0;
    if (x->zctx) zmq_ctx_term(x->zctx);
    x->zctx = NULL;
}

/* ---- output ----------------------------------------------------------------------- */

static void print_ms(FILE *f, double v) {
    if (v < 0) fprintf(f, " %8s", "-");
    else fprintf(f, " %8.2f", v);
}

static void us_per_job(double cpu_s, int64_t jobs, char *out, size_t n) {
    if (jobs > 0 && cpu_s >= 0) snprintf(out, n, "%.1f", cpu_s * 1e6 / (double)jobs);
    else snprintf(out, n, "-");
}

static void print_table(const dctx *x, const bench_machine *m, const phase_result *ph, int n_ph) {
    const bench_dispatch_opts *o = x->o;
    printf("opg-bench --dispatch   %s\n", m->date);
    printf("machine   %s, %d online CPUs (coordinator, workers and this client share them)\n", m->cpu_model,
           m->online_cpus);
    printf("setup     opg-coordinator (store %s, %s, synchronous=FULL, --receipts %s) + %d x opg-worker "
           "(--threads 1 --slots %d)\n",
           x->dir, fs_name(x->dir), o->receipts ? o->receipts : "full", o->workers, o->slots);
    if (x->micro)
        printf("model     micro (generated: llama, 1 layer, width %d, vocabulary %d, f32); prompt %d token ids, "
               "max_tokens 1\n", MICRO_D, MICRO_V, o->prompt);
    else printf("model     %s; prompt %d token ids, max_tokens 1\n", o->model, o->prompt);
    printf("load      %d client DEALER sockets; %.1f s warm-up + %.1f s measured per phase\n\n", o->clients, o->warmup,
           o->seconds);
    printf("%-6s %9s %7s %9s %9s %8s %8s %8s %8s %8s %6s %6s  %s\n", "phase", "target/s", "window", "jobs", "jobs/s",
           "mean ms", "p50 ms", "p90 ms", "p99 ms", "max ms", "errors", "other", "CPU us/job coord/workers/client");
    for (int i = 0; i < n_ph; i++) {
        const phase_result *r = &ph[i];
        char tgt[16] = "-", win[16] = "-", a[16], b[16], c[16];
        if (r->target_rate > 0) snprintf(tgt, sizeof tgt, "%.0f", r->target_rate);
        if (r->window > 0) snprintf(win, sizeof win, "%d", r->window);
        us_per_job(r->cpu_coord, r->completed, a, sizeof a);
        us_per_job(r->cpu_workers, r->completed, b, sizeof b);
        us_per_job(r->cpu_client, r->completed, c, sizeof c);
        printf("%-6s %9s %7s %9lld %9.0f", r->target_rate > 0 ? "rate" : "max", tgt, win, (long long)r->completed,
               r->jobs_s);
        print_ms(stdout, r->mean);
        print_ms(stdout, r->p50);
        print_ms(stdout, r->p90);
        print_ms(stdout, r->p99);
        print_ms(stdout, r->max);
        printf(" %6lld %6.2f  %s / %s / %s\n", (long long)errors_of(r), r->cpu_other / r->seconds, a, b, c);
    }
    printf("(other: CPUs busy with anything else during the measured window: other processes, kernel\n"
           " threads, VM steal; with 2 CPUs, 0.5 means a quarter of the machine was not ours)\n");
    for (int i = 0; i < n_ph; i++) {
        const phase_result *r = &ph[i];
        if (errors_of(r) || r->skipped)
            printf("%s: %lld Error frames, %lld unexpected ids or frames, %lld Results without exactly 1 token, "
                   "%lld unanswered, %lld send failures, %lld sends skipped (client cap %d in flight)\n",
                   r->target_rate > 0 ? "rate" : "max", (long long)r->err_frames, (long long)r->bad_id,
                   (long long)r->bad_tokens, (long long)r->lost, (long long)r->send_fail, (long long)r->skipped,
                   OPEN_CAP);
    }
}

static void json_phase(cJSON *o, const phase_result *r) {
    bench_json_add_str(o, "phase", r->target_rate > 0 ? "rate" : "max");
    bench_json_add_num(o, "target_rate", r->target_rate > 0 ? r->target_rate : -1);
    bench_json_add_int(o, "window", r->window);
    bench_json_add_num(o, "seconds", r->seconds);
    bench_json_add_int(o, "submitted", r->submitted);
    bench_json_add_int(o, "completed", r->completed);
    bench_json_add_num(o, "jobs_per_s", r->jobs_s);
    const char *k[] = {"mean_ms", "p50_ms", "p90_ms", "p99_ms", "max_ms"};
    double v[] = {r->mean, r->p50, r->p90, r->p99, r->max};
    for (int i = 0; i < 5; i++) bench_json_add_num(o, k[i], v[i]);
    cJSON *cpu = bench_json_add_obj(o, "cpu_s");
    const char *ck[] = {"coordinator", "workers", "client", "other"};
    double cv[] = {r->cpu_coord, r->cpu_workers, r->cpu_client, r->cpu_other};
    for (int i = 0; i < 4; i++) bench_json_add_num(cpu, ck[i], cv[i]);
    cJSON *err = bench_json_add_obj(o, "errors");
    const char *ek[] = {"error_frames", "unexpected", "bad_tokens", "unanswered", "send_failed"};
    long long ev[] = {r->err_frames, r->bad_id, r->bad_tokens, r->lost, r->send_fail};
    for (int i = 0; i < 5; i++) bench_json_add_int(err, ek[i], ev[i]);
    bench_json_add_int(o, "skipped", r->skipped);
}

static int print_json(const dctx *x, const bench_machine *m, const phase_result *ph, int n_ph) {
    const bench_dispatch_opts *o = x->o;
    cJSON *root = bench_json_new();
    bench_json_add_str(root, "bench", "dispatch");
    bench_json_add_str(root, "date", m->date);
    cJSON *mach = bench_json_add_obj(root, "machine");
    bench_json_add_str(mach, "cpu", m->cpu_model);
    bench_json_add_int(mach, "online_cpus", m->online_cpus);
    cJSON *cfg = bench_json_add_obj(root, "config");
    bench_json_add_int(cfg, "workers", o->workers);
    bench_json_add_int(cfg, "slots", o->slots);
    bench_json_add_int(cfg, "clients", o->clients);
    bench_json_add_int(cfg, "window", o->window);
    bench_json_add_str(cfg, "receipts", o->receipts ? o->receipts : "full");
    bench_json_add_int(cfg, "prompt_tokens", o->prompt);
    bench_json_add_int(cfg, "max_tokens", 1);
    bench_json_add_num(cfg, "seconds", o->seconds);
    bench_json_add_num(cfg, "warmup", o->warmup);
    bench_json_add_str(cfg, "model", x->micro ? "micro" : o->model);
    bench_json_add_str(cfg, "store_fs", fs_name(x->dir));
    cJSON *phases = bench_json_add_arr(root, "phases");
    for (int i = 0; i < n_ph; i++) json_phase(bench_json_push_obj(phases), &ph[i]);
    return bench_json_finish(stdout, root);
}

/* ---- entry ------------------------------------------------------------------------- */

int bench_dispatch_main(const bench_dispatch_opts *in) {
    bench_dispatch_opts o = *in;
    if (o.workers <= 0) o.workers = 4;
    if (o.slots <= 0) o.slots = 64;
    if (o.clients <= 0) o.clients = 2;
    if (o.window <= 0) o.window = 256;
    if (o.prompt <= 0) o.prompt = 4;
    if (o.seconds <= 0) o.seconds = 5;
    if (o.warmup < 0) o.warmup = 1;
    if (!o.coordinator_bin) o.coordinator_bin = OPG_BENCH_COORDINATOR_BIN;
    if (!o.worker_bin) o.worker_bin = OPG_BENCH_WORKER_BIN;
    if (!o.model) o.model = OPG_BENCH_TINY_MODEL;
    if (o.workers > MAX_WORKERS || o.clients > MAX_CLIENTS || o.prompt > 64) {
        fprintf(stderr, "opg-bench: --dispatch-workers at most %d, --dispatch-clients at most %d, prompt at most 64\n",
                MAX_WORKERS, MAX_CLIENTS);
        return 2;
    }
    const char *bins[] = {o.coordinator_bin, o.worker_bin};
    for (int i = 0; i < 2; i++)
        if (access(bins[i], X_OK) != 0) {
            fprintf(stderr, "opg-bench: cannot run %s: %s (--coordinator-bin / --worker-bin)\n", bins[i],
                    strerror(errno));
            return 2;
        }
    int micro = strcmp(o.model, "micro") == 0;
    if (!micro && access(o.model, R_OK) != 0) {
        fprintf(stderr,
                "opg-bench: model %s: %s\n  (the default is the test fixture's: run `ctest -R gen_tiny_models` in "
                "the build tree, or give --model PATH)\n",
                o.model, strerror(errno));
        return 2;
    }

    static dctx x; /* big (the process table): not on the stack */
    memset(&x, 0, sizeof x);
    opg_lt_init("bench"); /* OPG_LATTRACE=PREFIX: per-hop trace (net/lattrace.h) */
    x.o = &o;
    const char *tmp = o.dir ? o.dir : getenv("TMPDIR");
    snprintf(x.dir, sizeof x.dir, "%s/opg-dispatch-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(x.dir)) {
        fprintf(stderr, "opg-bench: cannot create a temp dir under %s: %s\n", tmp && *tmp ? tmp : "/tmp",
                strerror(errno));
        return 2;
    }

    char micro_path[600];
    if (micro) {
        snprintf(micro_path, sizeof micro_path, "%s/micro.gguf", x.dir);
        if (write_micro_model(micro_path) != 0) {
            fprintf(stderr, "opg-bench: cannot write %s: %s\n", micro_path, strerror(errno));
            remove_dir(x.dir);
            return 2;
        }
        o.model = micro_path;
        x.micro = 1;
    }

    struct sigaction sa, old_int, old_term, old_pipe;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal; /* no SA_RESTART: a poll returns EINTR and the loop sees g_stop */
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, &old_pipe);
    g_stop = 0;

    bench_machine m;
    bench_machine_read(&m);
    phase_result ph[2];
    int n_ph = 0, rc = 0;
    fprintf(stderr, "opg-bench: dispatch: starting opg-coordinator and %d opg-worker in %s\n", o.workers, x.dir);
    if (start_daemons(&x) != 0 || open_clients(&x) != 0) {
        rc = g_stop ? 130 : 1;
        goto out;
    }
    fprintf(stderr, "opg-bench: dispatch: max throughput, window %d, %.1f s + %.1f s\n", o.window, o.warmup,
            o.seconds);
    if (run_phase(&x, 0, o.window, &ph[n_ph]) != 0) {
        rc = g_stop ? 130 : 1;
        goto out;
    }
    n_ph++;
    double rate = o.rate > 0 ? o.rate : ph[0].jobs_s / 2;
    if (rate >= 1) {
        fprintf(stderr, "opg-bench: dispatch: fixed rate %.0f jobs/s, %.1f s + %.1f s\n", rate, o.warmup, o.seconds);
        if (run_phase(&x, rate, 0, &ph[n_ph]) != 0) {
            rc = g_stop ? 130 : 1;
            goto out;
        }
        n_ph++;
    }
    if (!daemons_alive(&x)) rc = 1;
    for (int i = 0; i < n_ph; i++)
        if (errors_of(&ph[i])) rc = 1;
out:
    close_clients(&x);
    stop_all(x.procs, x.n_procs, 5000);
    if (n_ph) {
        if (o.json) {
            if (print_json(&x, &m, ph, n_ph) != 0) rc = 1;
        } else {
            print_table(&x, &m, ph, n_ph);
        }
    }
    remove_dir(x.dir);
    free(x.submit_frame);
    free(x.sent_at);
    free(x.lat);
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    sigaction(SIGPIPE, &old_pipe, NULL);
    if (rc == 130) fprintf(stderr, "opg-bench: dispatch: interrupted; daemons stopped, %s removed\n", x.dir);
    return rc;
}

#else /* !OPG_BENCH_DISPATCH */

int bench_dispatch_main(const bench_dispatch_opts *o) {
    (void)o;
    fputs("opg-bench: --dispatch is not built: it needs opg-coordinator and opg-worker (configure with "
          "-DOPG_NETWORK=ON)\n",
          stderr);
    return 2;
}

#endif
