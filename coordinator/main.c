/* opg-coordinator: the coordinator daemon, a thin shell over coord.h:
 * options (flags and a JSON config file), keys, logs, /metrics, signals. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coord.h"
#include "keys.h"
#include "log.h"
#include "metrics.h"
#include "opts.h"

static volatile sig_atomic_t g_stop;
static void on_signal(int sig) {
    (void)sig;
    g_stop = 1;
}

static int fail(const char *what, opg_status st) {
    fprintf(stderr, "opg-coordinator: %s: %s (%s)\n", what, opg_last_error(), opg_strerror(st));
    return 1;
}

int main(int argc, char **argv) {
    char *workers = "tcp://127.0.0.1:5555", *clients = "tcp://127.0.0.1:5556", *db = "opg-coordinator.db";
    char *metrics_addr = "127.0.0.1:9100", *key_path = NULL, *allow_workers = NULL, *allow_clients = NULL;
    char *log_level = "info", *receipts = "full";
    int64_t heartbeat = 1000, liveness = 3, attempts = 5, queue_max = 1000000, client_hwm = 1000, verify_threads = 0;
    int64_t retention_s = 0, lost_alone = 2;
    const opg_opt opts[] = {
        {"workers", 'w', OPG_OPT_STR, &workers, 0, 0, "ENDPOINT", "where workers connect (ZeroMQ bind endpoint)"},
        {"clients", 'c', OPG_OPT_STR, &clients, 0, 0, "ENDPOINT", "where clients connect"},
        {"db", 'd', OPG_OPT_STR, &db, 0, 0, "PATH", "SQLite job store (created when missing)"},
        {"metrics", 'm', OPG_OPT_STR, &metrics_addr, 0, 0, "HOST:PORT", "Prometheus /metrics address; \"off\": none"},
        {"key", 'k', OPG_OPT_STR, &key_path, 0, 0, "FILE", "identity key (opg keygen): CurveZMQ on both sockets"},
        {"allow-workers", 0, OPG_OPT_STR, &allow_workers, 0, 0, "FILE", "public keys of the workers admitted (with --key)"},
        {"allow-clients", 0, OPG_OPT_STR, &allow_clients, 0, 0, "FILE", "public keys of the clients admitted (with --key)"},
        {"heartbeat-ms", 0, OPG_OPT_INT, &heartbeat, 10, 600000, "MS", "heartbeat period, both ways"},
        {"liveness", 0, OPG_OPT_INT, &liveness, 1, 100, "N", "missed heartbeats before a worker is lost"},
        {"max-attempts", 0, OPG_OPT_INT, &attempts, 1, 1000, "N",
         "lost workers (and transient worker errors) before a job fails"},
        {"max-lost-alone", 0, OPG_OPT_INT, &lost_alone, 1, 1000, "N",
         "a job whose worker failed (backend failed, or fell silent) runs alone from then on; it fails once "
         "N workers failed while it ran alone on them"},
        {"queue-max", 0, OPG_OPT_INT, &queue_max, 1, INT64_MAX, "N", "queued jobs before submissions are refused"},
        {"client-hwm", 0, OPG_OPT_INT, &client_hwm, 1, 10000000, "N", "messages queued per client before drops"},
        {"retention-s", 0, OPG_OPT_INT, &retention_s, 0, INT64_MAX / 1000, "S",
         "delete a finished job's request and result from the store S seconds after it finished; 0: keep forever"},
        {"log-level", 0, OPG_OPT_STR, &log_level, 0, 0, "LEVEL", "debug, info, warn or error"},
        {"receipts", 0, OPG_OPT_STR, &receipts, 0, 0, "CHECK",
         "full: every Result's receipt signature is verified (~50 us CPU per job); fields: all its fields "
         "but not the signature"},
        {"verify-threads", 0, OPG_OPT_INT, &verify_threads, 0, 256, "N",
         "threads checking a batch's receipt signatures, the loop's own included; 0: one per CPU, at most 4"},
    };
    const int n_opts = (int)(sizeof opts / sizeof opts[0]);
    char *text = NULL;
    int code = opg_opts_main(opts, n_opts, argc, argv,
                             "opg-coordinator [OPTIONS]\n"
                             "Takes jobs from clients, stores them (SQLite, WAL) and dispatches them to\n"
                             "workers over ZeroMQ. SIGINT/SIGTERM stop it; every accepted job survives a restart.", &text);
    if (code >= 0) {
        if (code) fprintf(stderr, "opg-coordinator: %s\n", text ? text : opg_last_error());
        else if (text) fputs(text, stdout);
        free(text);
        opg_opts_free(opts, n_opts);
        return code;
    }
    opg_status st = OPG_OK;
    int level = opg_log_level_parse(log_level);
    if (level < 0) {
        fprintf(stderr, "opg-coordinator: --log-level must be debug, info, warn or error, got '%s'\n", log_level);
        return 2;
    }
    if (strcmp(receipts, "full") && strcmp(receipts, "fields")) {
        fprintf(stderr, "opg-coordinator: --receipts must be full or fields, got '%s'\n", receipts);
        return 2;
    }
    opg_keypair key;
    uint8_t(*wkeys)[32] = NULL, (*ckeys)[32] = NULL;
    size_t n_wkeys = 0, n_ckeys = 0;
    if (key_path) {
        if ((st = opg_key_load(key_path, &key))) return fail("--key", st);
        if (!allow_workers || !allow_clients) {
            fprintf(stderr, "opg-coordinator: with --key, both --allow-workers and --allow-clients are needed "
                            "(files of the public keys that may connect; %s missing)\n",
                    !allow_workers && !allow_clients ? "both" : !allow_workers ? "--allow-workers" : "--allow-clients");
            return 2;
        }
        if ((st = opg_allowlist_load(allow_workers, &wkeys, &n_wkeys))) return fail(allow_workers, st);
        if ((st = opg_allowlist_load(allow_clients, &ckeys, &n_ckeys))) return fail(allow_clients, st);
        if (!n_wkeys || !n_ckeys) { /* a list changes only with a restart: an empty one admits nobody for good */
            fprintf(stderr, "opg-coordinator: %s holds no key: no %s could connect\n",
                    !n_wkeys ? allow_workers : allow_clients, !n_wkeys ? "worker" : "client");
            free(wkeys);
            free(ckeys);
            return 2;
        }
    } else if (allow_workers || allow_clients) {
        fprintf(stderr, "opg-coordinator: allow lists need --key (CurveZMQ)\n");
        return 2;
    }
    opg_metrics *metrics = NULL;
    opg_metrics_http *http = NULL;
    if ((st = opg_metrics_new(&metrics))) return fail("metrics", st);
    opg_coord_config cfg = {0};
    cfg.workers_endpoint = workers;
    cfg.clients_endpoint = clients;
    cfg.db_path = db;
    cfg.heartbeat_ms = (int)heartbeat;
    cfg.liveness = (int)liveness;
    cfg.max_attempts = (int)attempts;
    cfg.max_lost_alone = (int)lost_alone;
    cfg.queue_max = queue_max;
    cfg.client_hwm = (int)client_hwm;
    cfg.retention_ms = retention_s * 1000;
    cfg.receipts = strcmp(receipts, "fields") ? OPG_RECEIPTS_FULL : OPG_RECEIPTS_FIELDS;
    cfg.verify_threads = (int)verify_threads;
    cfg.key = key_path ? &key : NULL;
    cfg.worker_keys = (const uint8_t(*)[32])wkeys;
    cfg.n_worker_keys = n_wkeys;
    cfg.client_keys = (const uint8_t(*)[32])ckeys;
    cfg.n_client_keys = n_ckeys;
    cfg.log = (opg_log){opg_log_stderr_sink, stderr, (opg_log_level)level};
    cfg.metrics = metrics;
    opg_coord *c = NULL;
    int rc = 0;
    if ((st = opg_coord_new(&cfg, &c))) {
        rc = fail("start", st);
        goto out;
    }
    if (strcmp(metrics_addr, "off") != 0 && (st = opg_metrics_serve(metrics, metrics_addr, &http))) {
        rc = fail("metrics endpoint", st);
        goto out;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    char pub[41] = "-", pubq[96];
    if (key_path) opg_key_public_z85(key.curve_pk, pub);
    opg_log_emit(&cfg.log, OPG_LOG_INFO, "started", "workers=%s clients=%s db=%s metrics=%s metrics_port=%d key=%s",
                 opg_coord_workers_endpoint(c), opg_coord_clients_endpoint(c), db, http ? metrics_addr : "off",
                 http ? opg_metrics_http_port(http) : 0, opg_log_q(pubq, sizeof pubq, pub));
    if ((st = opg_coord_run(c, &g_stop))) rc = fail("run", st);
    opg_log_emit(&cfg.log, OPG_LOG_INFO, "stopped", "ok=%d", rc == 0);
out:
    opg_metrics_http_stop(http);
    opg_coord_free(c);
    opg_metrics_free(metrics);
    free(wkeys);
    free(ckeys);
    if (key_path) opg_keypair_wipe(&key);
    opg_opts_free(opts, n_opts);
    return rc;
}
