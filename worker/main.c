/* opg-worker: the worker daemon, a thin shell over worker.h: options,
 * backend and model loading, keys, logs, /metrics, signals (SIGTERM drains). */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backend.h"
#include "keys.h"
#include "log.h"
#include "metrics.h"
#include "model.h"
#include "opts.h"
#include "frame.h"
#include "sock.h"
#include "worker.h"

#ifndef OPG_DEFAULT_MODEL
#define OPG_DEFAULT_MODEL "models/SmolLM2-135M-Instruct.Q4_1.gguf"
#endif

static volatile sig_atomic_t g_stop;
static void on_signal(int sig) {
    (void)sig;
    g_stop = g_stop ? 2 : 1; /* the first drains, the second stops at once (worker.h) */
}

static int fail(const char *what, opg_status st) {
    const char *msg = opg_last_error();
    size_t n = strlen(what);
    /* a message that starts with "what:" (a model's path) gets no second one */
    if (strncmp(msg, what, n) == 0 && msg[n] == ':') fprintf(stderr, "opg-worker: %s (%s)\n", msg, opg_strerror(st));
    else fprintf(stderr, "opg-worker: %s: %s (%s)\n", what, msg, opg_strerror(st));
    return 1;
}

int main(int argc, char **argv) {
    char *coordinator = "tcp://127.0.0.1:5555", *server_key = NULL, *key_path = NULL, *name = NULL;
    char *backend = "auto", *metrics_addr = "off", *log_level = "info";
    static char *default_models[] = {OPG_DEFAULT_MODEL};
    opg_strv models = {NULL, 0}; /* none given: the default model */
    int64_t slots = 8, threads = 0, price = 0, heartbeat = 1000, liveness = 3, reconnect = 250,
            reconnect_max = 8000, stream_ms = 50, n_ctx = 0;
    const opg_opt opts[] = {
        {"coordinator", 'C', OPG_OPT_STR, &coordinator, 0, 0, "ENDPOINT", "the coordinator's worker endpoint"},
        {"server-key", 0, OPG_OPT_STR, &server_key, 0, 0, "Z85", "the coordinator's public key (CurveZMQ)"},
        {"key", 'k', OPG_OPT_STR, &key_path, 0, 0, "FILE", "identity key (opg keygen): CURVE and receipt signing"},
        {"model", 'm', OPG_OPT_STRS, &models, 0, 0, "PATH", "GGUF model to serve, repeatable (default: " OPG_DEFAULT_MODEL ")"},
        {"backend", 'b', OPG_OPT_STR, &backend, 0, 0, "NAME", "auto, cpu, cuda or cuda:N"},
        {"threads", 't', OPG_OPT_INT, &threads, 0, 1024, "N", "CPU threads (0: all cores)"},
        {"slots", 's', OPG_OPT_INT, &slots, 1, 4096, "N", "jobs run at once (one batch)"},
        {"ctx", 0, OPG_OPT_INT, &n_ctx, 0, 1 << 24, "N", "cache positions per job, 0 or >= 2 (0: the model's training context)"},
        {"price", 0, OPG_OPT_INT, &price, 0, INT64_MAX, "N", "price per token, in the ledger's smallest unit"},
        {"name", 'n', OPG_OPT_STR, &name, 0, 0, "NAME", "label in the coordinator's logs (default: host name)"},
        {"heartbeat-ms", 0, OPG_OPT_INT, &heartbeat, 10, 600000, "MS", "heartbeat period"},
        {"liveness", 0, OPG_OPT_INT, &liveness, 1, 100, "N", "missed heartbeats before reconnecting"},
        {"reconnect-ms", 0, OPG_OPT_INT, &reconnect, 1, 600000, "MS", "first reconnect back-off"},
        {"reconnect-max-ms", 0, OPG_OPT_INT, &reconnect_max, 1, 3600000, "MS", "longest back-off"},
        {"stream-ms", 0, OPG_OPT_INT, &stream_ms, 1, 60000, "MS", "send a job's new tokens at most this often"},
        {"metrics", 0, OPG_OPT_STR, &metrics_addr, 0, 0, "HOST:PORT", "Prometheus /metrics address; \"off\": none"},
        {"log-level", 0, OPG_OPT_STR, &log_level, 0, 0, "LEVEL", "debug, info, warn or error"},
    };
    const int n_opts = (int)(sizeof opts / sizeof opts[0]);
    char *text = NULL;
    int code = opg_opts_main(opts, n_opts, argc, argv,
                             "opg-worker [OPTIONS]\n"
                             "Serves GGUF models to a coordinator: takes jobs, runs them with the\n"
                             "deterministic kernels, returns output, trace root and a signed receipt.\n"
                             "SIGTERM/SIGINT drain: running jobs finish, then it disconnects; a second\n"
                             "signal stops it at once, giving its jobs back to the coordinator.", &text);
    if (code >= 0) {
        if (code) fprintf(stderr, "opg-worker: %s\n", text ? text : opg_last_error());
        else if (text) fputs(text, stdout);
        free(text);
        opg_opts_free(opts, n_opts);
        return code;
    }
    opg_status st = OPG_OK;
    int level = opg_log_level_parse(log_level);
    if (level < 0) {
        fprintf(stderr, "opg-worker: --log-level must be debug, info, warn or error, got '%s'\n", log_level);
        return 2;
    }
    if (n_ctx == 1) { /* a prompt token and one to generate need 2 */
        fprintf(stderr, "opg-worker: --ctx must be 0 (the model's training context) or at least 2\n");
        return 2;
    }
    if (models.n < 1) {
        models.v = default_models;
        models.n = 1;
    }
    /* from here on SIGTERM/SIGINT end the worker cleanly, even while a model loads */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    opg_log log = {opg_log_stderr_sink, stderr, (opg_log_level)level};
    opg_keypair key;
    uint8_t spk[32];
    if (reconnect > reconnect_max) {
        fprintf(stderr, "opg-worker: --reconnect-ms (%lld) is above --reconnect-max-ms (%lld)\n", (long long)reconnect,
                (long long)reconnect_max);
        return 2;
    }
    if (name && strlen(name) > OPG_PROTO_MAX_NAME) { /* Ready.name's limit: refused, not cut short */
        fprintf(stderr, "opg-worker: --name is %zu bytes, at most %u\n", strlen(name), OPG_PROTO_MAX_NAME);
        return 2;
    }
    if ((st = opg_endpoint_check(coordinator))) return fail("--coordinator", st); /* before loading models */
    if (!opg_backend_name_ok(backend)) {
        fprintf(stderr, "opg-worker: --backend must be auto, cpu, cuda or cuda:N, got '%s'\n", backend);
        return 2;
    }
    if (key_path && (st = opg_key_load(key_path, &key))) return fail("--key", st);
    if (server_key && (st = opg_key_parse_public(server_key, spk))) return fail("--server-key", st);
    if (server_key && !key_path) {
        fprintf(stderr, "opg-worker: --server-key needs --key (the coordinator admits workers by key)\n");
        return 2;
    }

    for (int i = 0; i < models.n; i++) { /* one file named twice: refused before either is loaded */
        struct stat si, sk;
        if (stat(models.v[i], &si)) continue; /* the load names what is wrong with it */
        for (int k = 0; k < i; k++)
            if (stat(models.v[k], &sk) == 0 && si.st_dev == sk.st_dev && si.st_ino == sk.st_ino) {
                fprintf(stderr, "opg-worker: -m %s and -m %s are the same file: give each model once\n", models.v[i],
                        models.v[k]);
                return 2;
            }
    }

    int rc = 1;
    opg_backend *be = NULL;
    opg_model **ms = calloc((size_t)models.n, sizeof *ms);
    opg_metrics *metrics = NULL;
    opg_metrics_http *http = NULL;
    opg_worker *w = NULL;
    const char *notice = NULL;
    if (!ms) goto out;
    if ((st = opg_backend_new_auto(backend, (int)threads, &be, &notice))) {
        rc = fail("backend", st);
        goto out;
    }
    if (notice) opg_log_emit(&log, OPG_LOG_WARN, "backend_fallback", "notice=\"%s\"", notice);
    for (int i = 0; i < models.n && !g_stop; i++) {
        if ((st = opg_model_load(models.v[i], be, NULL, NULL, &ms[i]))) {
            rc = fail(models.v[i], st);
            if (strcmp(models.v[i], OPG_DEFAULT_MODEL) == 0)
                fprintf(stderr, "  (scripts/fetch-model.sh downloads the default model)\n");
            goto out;
        }
        uint8_t id[32];
        char hex[65];
        opg_model_id(ms[i], id);
        for (int k = 0; k < 32; k++) snprintf(hex + 2 * k, 3, "%02x", id[k]);
        for (int k = 0; k < i; k++) { /* the same bytes in two files: one model, its memory twice */
            uint8_t other[32];
            opg_model_id(ms[k], other);
            if (memcmp(id, other, 32) == 0) {
                fprintf(stderr, "opg-worker: -m %s is the same model as -m %s (id %s): give each model once\n",
                        models.v[i], models.v[k], hex);
                rc = 2;
                goto out;
            }
        }
        opg_log_emit(&log, OPG_LOG_INFO, "model_loaded", "path=%s id=%s backend=%s", models.v[i], hex, be->ops->name);
    }
    if (g_stop) { /* stopped while loading */
        rc = 0;
        goto out;
    }
    if ((st = opg_metrics_new(&metrics))) {
        rc = fail("metrics", st);
        goto out;
    }
    opg_worker_config cfg = {0};
    cfg.coordinator = coordinator;
    cfg.server_key = server_key ? spk : NULL;
    cfg.key = key_path ? &key : NULL;
    cfg.name = name;
    cfg.models = ms;
    cfg.n_models = models.n;
    cfg.slots = (int)slots;
    cfg.price_per_token = (uint64_t)price;
    cfg.heartbeat_ms = (int)heartbeat;
    cfg.liveness = (int)liveness;
    cfg.reconnect_ms = (int)reconnect;
    cfg.reconnect_max_ms = (int)reconnect_max;
    cfg.stream_ms = (int)stream_ms;
    cfg.n_ctx = n_ctx;
    cfg.log = log;
    cfg.metrics = metrics;
    if ((st = opg_worker_new(&cfg, &w))) {
        rc = fail("start", st);
        goto out;
    }
    if (strcmp(metrics_addr, "off") != 0 && (st = opg_metrics_serve(metrics, metrics_addr, &http))) {
        rc = fail("metrics endpoint", st);
        goto out;
    }
    rc = 0;
    if ((st = opg_worker_run(w, &g_stop))) rc = fail("run", st);
out:
    opg_worker_free(w);
    opg_metrics_http_stop(http);
    opg_metrics_free(metrics);
    for (int i = 0; ms && i < models.n; i++) opg_model_free(ms[i]);
    free(ms);
    opg_backend_free(be);
    if (key_path) opg_keypair_wipe(&key);
    opg_opts_free(opts, n_opts);
    return rc;
}
