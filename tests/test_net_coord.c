/* test_net_coord.c: the coordinator's client API and the worker's answers,
 * in one process: opg_coord_run and opg_worker_run on their own threads over
 * tcp://127.0.0.1 (ports picked by the kernel), the test as the client
 * (net/client.h). The tiny f32 model of tests/data/gen_tiny_models.py has no
 * tokenizer, so prompts are token ids.
 *  - a job streamed: Tokens pieces in order, then the Result, whose tokens and
 *    trace root equal opg_generate alone, and whose receipt verifies and names
 *    the job, the model, the prompt, the output and the worker's key;
 *  - Status, GetResult (with and without wait), Cancel, unknown ids;
 *  - refusals: another contract version, a full queue, a text prompt on a
 *    model without a tokenizer (FAILED with the worker's error);
 *  - the metrics the coordinator publishes agree. */
#include "testutil.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#include "backend.h"
#include "chat.h"
#include "client.h"
#include "contract.h"
#include "coord.h"
#include "generate.h"
#include "metrics.h"
#include "model.h"
#include "receipt.h"
#include "tokenizer.h"
#include "trace.h"
#include "worker.h"

#define T(x) OPG__V1__MESSAGE_TYPE__MESSAGE_TYPE_##x
#define TIMEOUT 20000

/* A tiny model's path (tests/data/gen_tiny_models.py), e.g. "f32"; the
 * buffer is reused by the next call. */
static const char *tiny_file(const char *name) {
    static char buf[1024];
    const char *dir = getenv("OPG_TINY_DIR");
#ifdef OPG_TINY_DIR
    if (!dir || !*dir) dir = OPG_TINY_DIR;
#endif
    snprintf(buf, sizeof buf, "%s/tiny-%s.gguf", dir && *dir ? dir : "tiny", name);
    return buf;
}

static const char *tiny_path(void) { return tiny_file("f32"); }

typedef struct {
    opg_coord *coord;
    opg_worker *worker;
    volatile sig_atomic_t stop_coord, stop_worker;
    pthread_t tc, tw;
    opg_backend *be;
    opg_model *m;
    opg_metrics *metrics;
    char dir[64], db[128];
    uint8_t model_id[32];
    opg_keypair wkey;
    opg_status worker_st; /* what opg_worker_run returned */
    _Atomic int worker_ended;
    char worker_err[600];
    int coord_joined;     /* net_stop_coord ran */
} net;

static int g_faulty_backend; /* net_start puts the model on tu_faulty_backend */
static const char *g_host = "127.0.0.1"; /* where net_start binds */
static int g_heartbeat_ms = 100;          /* the coordinator's and the worker's */

static void *coord_main(void *arg) {
    net *n = arg;
    opg_status st = opg_coord_run(n->coord, &n->stop_coord);
    if (st) fprintf(stderr, "coordinator: %s\n", opg_last_error());
    return NULL;
}

static void *worker_main(void *arg) {
    net *n = arg;
    opg_status st = opg_worker_run(n->worker, &n->stop_worker);
    if (st) fprintf(stderr, "worker: %s\n", opg_last_error());
    n->worker_st = st;
    snprintf(n->worker_err, sizeof n->worker_err, "%s", st ? opg_last_error() : "");
    n->worker_ended = 1;
    return NULL;
}

static void must(opg_status st, const char *what) {
    if (st) {
        print_error("%s: %s: %s\n", what, opg_strerror(st), opg_last_error());
        fail();
    }
}

static void worker_start(net *n);

static void net_start(net *n, int with_worker, int64_t queue_max) {
    memset(n, 0, sizeof *n);
    snprintf(n->dir, sizeof n->dir, "/tmp/opg-test-coord-XXXXXX");
    assert_non_null(mkdtemp(n->dir));
    snprintf(n->db, sizeof n->db, "%s/jobs.db", n->dir);
    must(opg_metrics_new(&n->metrics), "metrics");
    opg_coord_config cc = {0};
    char wep[64], cep[64];
    snprintf(wep, sizeof wep, "tcp://%s:*", g_host);
    snprintf(cep, sizeof cep, "tcp://%s:*", g_host);
    cc.workers_endpoint = wep;
    cc.clients_endpoint = cep;
    cc.db_path = n->db;
    cc.heartbeat_ms = g_heartbeat_ms;
    cc.queue_max = queue_max;
    cc.metrics = n->metrics;
    must(opg_coord_new(&cc, &n->coord), "opg_coord_new");
    must(opg_backend_cpu_new(1, &n->be), "backend");
    if (g_faulty_backend) n->be = tu_faulty_backend(n->be);
    must(opg_model_load(tiny_path(), n->be, NULL, NULL, &n->m), tiny_path());
    opg_model_id(n->m, n->model_id);
    must(opg_keypair_generate(&n->wkey), "keypair");
    assert_int_equal(pthread_create(&n->tc, NULL, coord_main, n), 0);
    if (with_worker) worker_start(n);
}

static void worker_start(net *n) {
    n->worker_st = OPG_OK;
    n->worker_err[0] = 0;
    n->worker_ended = 0;
    opg_worker_config wc = {0};
    wc.coordinator = opg_coord_workers_endpoint(n->coord);
    wc.key = &n->wkey;
    wc.name = "test-worker";
    wc.models = &n->m;
    wc.n_models = 1;
    wc.slots = 4;
    wc.heartbeat_ms = g_heartbeat_ms;
    wc.stream_ms = 1;
    must(opg_worker_new(&wc, &n->worker), "opg_worker_new");
    assert_int_equal(pthread_create(&n->tw, NULL, worker_main, n), 0);
}

/* Stops the coordinator's thread (its handle stays until net_stop). */
static void net_stop_coord(net *n) {
    if (n->coord_joined) return;
    n->stop_coord = 1;
    /* a request wakes a coordinator waiting out a long heartbeat period */
    opg_client *c = NULL;
    int st = 0;
    uint32_t done = 0;
    if (opg_client_new(opg_coord_clients_endpoint(n->coord), NULL, NULL, &c) == OPG_OK) {
        (void)opg_client_status(c, 1, 200, &st, &done);
        opg_client_free(c);
    }
    pthread_join(n->tc, NULL);
    n->coord_joined = 1;
}

static void net_stop(net *n) {
    if (n->worker) {
        n->stop_worker = 1;
        pthread_join(n->tw, NULL);
        opg_worker_free(n->worker);
    }
    net_stop_coord(n);
    opg_coord_free(n->coord);
    opg_model_free(n->m);
    opg_backend_free(n->be);
    opg_metrics_free(n->metrics);
    char cmd[160];
    snprintf(cmd, sizeof cmd, "rm -rf %s", n->dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", n->dir);
}

static opg_client *client(net *n) {
    opg_client *c = NULL;
    must(opg_client_new(opg_coord_clients_endpoint(n->coord), NULL, NULL, &c), "opg_client_new");
    return c;
}

static uint32_t g_prompt[5] = {3, 14, 15, 9, 2};

static void job_init(Opg__V1__SubmitJob *j, Opg__V1__TokenList *tl, Opg__V1__SamplingParams *sp, net *n,
                     uint32_t max_tokens) {
    opg__v1__submit_job__init(j);
    opg__v1__token_list__init(tl);
    opg__v1__sampling_params__init(sp);
    tl->ids = g_prompt;
    tl->n_ids = 5;
    sp->temperature = 0.7f;
    sp->top_k = 20;
    sp->top_p = 0.9f;
    sp->seed = 1234;
    j->model_id.data = n->model_id;
    j->model_id.len = 32;
    j->prompt_case = OPG__V1__SUBMIT_JOB__PROMPT_TOKENS;
    j->tokens = tl;
    j->sampling = sp;
    j->max_tokens = max_tokens;
    j->contract_version = OPG_CONTRACT_VERSION;
}

/* job_init's job run alone in this process: its result and trace root. */
static void reference(net *n, uint32_t max_tokens, opg_gen_result *ref, uint8_t root[32]) {
    int32_t p32[5];
    for (int i = 0; i < 5; i++) p32[i] = (int32_t)g_prompt[i];
    opg_gen_request q = {0};
    q.prompt = p32;
    q.n_prompt = 5;
    q.max_tokens = max_tokens;
    q.sampling = (opg_sample_params){0.7f, 20, 0.9f, 1234};
    must(opg_generate(n->m, &q, 1, ref, NULL), "reference");
    opg_trace_root(ref->trace, root);
}

/* A /metrics text's value of one series line ("name{labels}"); -1: none. */
static double metric_of(opg_metrics *m, const char *series) {
    char *text = NULL;
    size_t len = 0;
    must(opg_metrics_render(m, &text, &len), "render");
    double v = -1;
    size_t sl = strlen(series);
    for (char *p = text; p && *p;) {
        if (!strncmp(p, series, sl) && p[sl] == ' ') {
            v = strtod(p + sl + 1, NULL);
            break;
        }
        p = strchr(p, '\n');
        if (p) p++;
    }
    free(text);
    return v;
}

/* The coordinator's. */
static double metric(net *n, const char *series) { return metric_of(n->metrics, series); }

typedef struct {
    uint32_t toks[64];
    uint32_t n;
    int pieces;
} collected;

static void collect(void *ctx, uint32_t index, const uint32_t *t, size_t k) {
    collected *c = ctx;
    assert_int_equal(index, c->n); /* in order, never repeated */
    for (size_t i = 0; i < k; i++) c->toks[c->n++] = t[i];
    c->pieces++;
}

static void test_stream_result_receipt(void **state) {
    (void)state;
    net n;
    net_start(&n, 1, 0);
    /* reference: the same request alone, in this process */
    opg_gen_result ref;
    uint8_t ref_root[32];
    reference(&n, 24, &ref, ref_root);

    opg_client *c = client(&n);
    Opg__V1__SubmitJob j;
    Opg__V1__TokenList tl;
    Opg__V1__SamplingParams sp;
    job_init(&j, &tl, &sp, &n, 24);
    uint64_t id = 0;
    must(opg_client_submit(c, &j, TIMEOUT, &id), "submit");
    assert_true(id >= 1);
    collected col = {0};
    opg_frame *f = NULL;
    must(opg_client_stream(c, id, collect, &col, TIMEOUT, &f), "stream");
    const Opg__V1__Result *r = (const Opg__V1__Result *)f->msg;
    assert_int_equal(r->job_id, id);
    assert_int_equal(r->n_output_tokens, (size_t)ref.n_tokens);
    assert_int_equal(col.n, (uint32_t)ref.n_tokens);
    for (int64_t i = 0; i < ref.n_tokens; i++) {
        assert_int_equal(r->output_tokens[i], (uint32_t)ref.tokens[i]);
        assert_int_equal(col.toks[i], (uint32_t)ref.tokens[i]);
    }
    assert_memory_equal(r->trace_root.data, ref_root, 32);
    assert_int_equal(r->usage->prompt_tokens, 5);
    assert_int_equal(r->stop_reason, OPG__V1__STOP_REASON__STOP_REASON_MAX_TOKENS);
    /* the receipt: signed by the worker's key, about this job */
    Opg__V1__Receipt *rc = NULL;
    must(opg_receipt_verify(r->receipt.data, r->receipt.len, &rc), "receipt");
    assert_int_equal(rc->job_id, id);
    assert_memory_equal(rc->model_id.data, n.model_id, 32);
    assert_memory_equal(rc->trace_root.data, ref_root, 32);
    assert_memory_equal(rc->worker_key.data, n.wkey.sign_pk, 32);
    uint8_t h[32];
    opg_receipt_hash_tokens(g_prompt, 5, h);
    assert_memory_equal(rc->prompt_hash.data, h, 32);
    opg_receipt_hash_tokens(r->output_tokens, r->n_output_tokens, h);
    assert_memory_equal(rc->output_hash.data, h, 32);
    opg_receipt_free(rc);
    opg_frame_free(&f);

    /* finished: Status, GetResult, a Stream after the fact, Cancel too late */
    int st_state = 0;
    uint32_t done = 0;
    must(opg_client_status(c, id, TIMEOUT, &st_state, &done), "status");
    assert_int_equal(st_state, OPG__V1__JOB_STATE__JOB_STATE_DONE);
    assert_int_equal(done, (uint32_t)ref.n_tokens);
    must(opg_client_result(c, id, 0, TIMEOUT, &f), "result");
    assert_memory_equal(((Opg__V1__Result *)f->msg)->trace_root.data, ref_root, 32);
    opg_frame_free(&f);
    collected again = {0};
    must(opg_client_stream(c, id, collect, &again, TIMEOUT, &f), "stream again");
    assert_int_equal(again.n, (uint32_t)ref.n_tokens);
    opg_frame_free(&f);
    must(opg_client_cancel(c, id, TIMEOUT, &st_state), "cancel");
    assert_int_equal(st_state, OPG__V1__JOB_STATE__JOB_STATE_DONE);

    /* several jobs at once, batched on the worker: the same answer each */
    uint64_t ids[6];
    for (int i = 0; i < 6; i++) must(opg_client_submit(c, &j, TIMEOUT, &ids[i]), "submit");
    for (int i = 0; i < 6; i++) {
        must(opg_client_result(c, ids[i], 1, TIMEOUT, &f), "result wait");
        assert_memory_equal(((Opg__V1__Result *)f->msg)->trace_root.data, ref_root, 32);
        opg_frame_free(&f);
    }
    assert_true(metric(&n, "opg_jobs_finished_total{state=\"done\"}") == 7.0);
    assert_true(metric(&n, "opg_jobs_submitted_total") == 7.0);
    assert_true(metric(&n, "opg_workers") == 1.0);

    /* unknown id */
    assert_int_equal(opg_client_status(c, 999999, TIMEOUT, &st_state, &done), OPG_ERR_NOT_FOUND);
    assert_int_equal(opg_client_result(c, 999999, 1, TIMEOUT, &f), OPG_ERR_NOT_FOUND);

    /* text prompt on a model without a tokenizer: the worker's error is the job's answer */
    Opg__V1__SubmitJob jt = j;
    jt.prompt_case = OPG__V1__SUBMIT_JOB__PROMPT_TEXT;
    jt.text = "hello";
    must(opg_client_submit(c, &jt, TIMEOUT, &id), "submit text");
    assert_int_equal(opg_client_result(c, id, 1, TIMEOUT, &f), OPG_ERR_UNSUPPORTED);
    assert_non_null(strstr(opg_last_error(), "tokenizer"));
    must(opg_client_status(c, id, TIMEOUT, &st_state, &done), "status");
    assert_int_equal(st_state, OPG__V1__JOB_STATE__JOB_STATE_FAILED);

    opg_client_free(c);
    opg_gen_result_clear(&ref);
    net_stop(&n);
}

static void test_queue_cancel_refusals(void **state) {
    (void)state;
    net n;
    net_start(&n, 0, 3); /* no worker: jobs stay queued; at most 3 */
    opg_client *c = client(&n);
    Opg__V1__SubmitJob j;
    Opg__V1__TokenList tl;
    Opg__V1__SamplingParams sp;
    job_init(&j, &tl, &sp, &n, 8);
    uint64_t ids[3];
    for (int i = 0; i < 3; i++) must(opg_client_submit(c, &j, TIMEOUT, &ids[i]), "submit");
    assert_true(ids[0] < ids[1] && ids[1] < ids[2]);
    uint64_t extra = 0;
    assert_int_equal(opg_client_submit(c, &j, TIMEOUT, &extra), OPG_ERR_LIMIT);
    assert_non_null(strstr(opg_last_error(), "queue full"));
    int s = 0;
    uint32_t done = 0;
    must(opg_client_status(c, ids[0], TIMEOUT, &s, &done), "status");
    assert_int_equal(s, OPG__V1__JOB_STATE__JOB_STATE_QUEUED);
    opg_frame *f = NULL;
    assert_int_equal(opg_client_result(c, ids[0], 0, TIMEOUT, &f), OPG_ERR_STATE);
    /* waiting for a job nobody runs: the client's timeout, not a hang */
    assert_int_equal(opg_client_result(c, ids[1], 1, 300, &f), OPG_ERR_TIMEOUT);
    /* cancel a queued job: CANCELLED, its answer is an Error, the queue has room again */
    must(opg_client_cancel(c, ids[0], TIMEOUT, &s), "cancel");
    assert_int_equal(s, OPG__V1__JOB_STATE__JOB_STATE_CANCELLED);
    assert_int_equal(opg_client_result(c, ids[0], 0, TIMEOUT, &f), OPG_ERR_DENIED);
    must(opg_client_status(c, ids[0], TIMEOUT, &s, &done), "status");
    assert_int_equal(s, OPG__V1__JOB_STATE__JOB_STATE_CANCELLED);
    must(opg_client_submit(c, &j, TIMEOUT, &extra), "submit after cancel");
    /* another determinism contract */
    Opg__V1__SubmitJob jv = j;
    jv.contract_version = OPG_CONTRACT_VERSION + 1;
    assert_int_equal(opg_client_submit(c, &jv, TIMEOUT, &extra), OPG_ERR_UNSUPPORTED);
    assert_true(metric(&n, "opg_queue_depth") == 3.0);
    assert_true(metric(&n, "opg_jobs_finished_total{state=\"cancelled\"}") == 1.0);
    opg_client_free(c);
    net_stop(&n);
}

/* The worker's backend fails under a job. Out of memory fails that step
 * only: its job comes back (Error NOMEM re-queues) and the same worker
 * finishes it. OPG_ERR_STATE (a device fault leaves a CUDA context
 * unusable), in a step or in the KV cache's allocation of a new job, stops
 * the worker with the error after a Disconnect, so the coordinator
 * re-queues its job at once (heartbeats of 10 s here: not by a timeout),
 * and the next worker finishes it. Each time the answer is the job's alone.
 * Any other failure of a step fails its job (final) and the worker goes on. */
static void test_backend_failure(void **state) {
    (void)state;
    net n;
    g_faulty_backend = 1;
    g_heartbeat_ms = 10000;
    net_start(&n, 1, 0);
    g_faulty_backend = 0;
    g_heartbeat_ms = 100;
    opg_client *c = client(&n);
    static const struct {
        int status;
        long at;            /* backend calls after the job arrives */
        uint32_t max_tokens; /* another than before: a new KV cache, allocated in the Job's handler */
    } cases[3] = {{OPG_ERR_NOMEM, 20, 24}, {OPG_ERR_STATE, 20, 24}, {OPG_ERR_STATE, 0, 9}};
    for (int k = 0; k < 3; k++) {
        opg_gen_result ref;
        uint8_t ref_root[32];
        reference(&n, cases[k].max_tokens, &ref, ref_root);
        Opg__V1__SubmitJob j;
        Opg__V1__TokenList tl;
        Opg__V1__SamplingParams sp;
        job_init(&j, &tl, &sp, &n, cases[k].max_tokens);
        tu_faulty_arm(n.be, cases[k].at, cases[k].status);
        uint64_t id = 0;
        must(opg_client_submit(c, &j, TIMEOUT, &id), "submit");
        if (cases[k].status == OPG_ERR_STATE) {
            for (int t = 0; t < TIMEOUT / 10 && !n.worker_ended; t++) usleep(10000); /* it stops by itself */
            if (!n.worker_ended) {
                print_error("case %d: the worker did not stop after its backend failed\n", k);
                fail();
            }
            pthread_join(n.tw, NULL);
            if (n.worker_st != OPG_ERR_STATE || !strstr(n.worker_err, "backend failed") ||
                !strstr(n.worker_err, "injected")) {
                print_error("case %d: the worker returned %s: \"%s\"\n", k, opg_strerror(n.worker_st), n.worker_err);
                fail();
            }
            opg_worker_free(n.worker);
            n.worker = NULL;
            int st_state = 0;
            uint32_t done = 0;
            for (int t = 0; t < 200; t++) { /* 2 s: only the Disconnect can re-queue it that soon */
                must(opg_client_status(c, id, TIMEOUT, &st_state, &done), "status");
                if (st_state == OPG__V1__JOB_STATE__JOB_STATE_QUEUED && metric(&n, "opg_workers") == 0.0) break;
                usleep(10000);
            }
            assert_int_equal(st_state, OPG__V1__JOB_STATE__JOB_STATE_QUEUED);
            assert_true(metric(&n, "opg_workers") == 0.0);
            g_heartbeat_ms = 10000;
            worker_start(&n);
            g_heartbeat_ms = 100;
        }
        opg_frame *f = NULL;
        must(opg_client_result(c, id, 1, TIMEOUT, &f), "result");
        const Opg__V1__Result *r = (const Opg__V1__Result *)f->msg;
        assert_int_equal(r->n_output_tokens, (size_t)ref.n_tokens);
        assert_memory_equal(r->trace_root.data, ref_root, 32);
        opg_frame_free(&f);
        assert_true(metric(&n, "opg_jobs_requeued_total") == (double)(k + 1));
        assert_false(n.worker_ended); /* the worker (or the new one) goes on */
        opg_gen_result_clear(&ref);
    }
    assert_true(metric(&n, "opg_jobs_finished_total{state=\"done\"}") == 3.0);
    assert_true(metric(&n, "opg_jobs_finished_total{state=\"failed\"}") <= 0.0);
    /* any other failure of a step (a bug a job's shape meets, the same on
       every worker) fails the step's job, once; the worker goes on */
    Opg__V1__SubmitJob j;
    Opg__V1__TokenList tl;
    Opg__V1__SamplingParams sp;
    job_init(&j, &tl, &sp, &n, 24);
    tu_faulty_arm(n.be, 20, OPG_ERR_ARG);
    uint64_t id = 0;
    must(opg_client_submit(c, &j, TIMEOUT, &id), "submit");
    opg_frame *f = NULL;
    opg_status rs = opg_client_result(c, id, 1, TIMEOUT, &f);
    if (rs != OPG_ERR_STATE || !strstr(opg_last_error(), "injected")) {
        print_error("a step failing with ARG: the job's answer is %s: \"%s\"\n", opg_strerror(rs), opg_last_error());
        fail();
    }
    assert_true(metric(&n, "opg_jobs_finished_total{state=\"failed\"}") == 1.0);
    assert_true(metric(&n, "opg_jobs_requeued_total") == 3.0);
    assert_false(n.worker_ended);
    must(opg_client_submit(c, &j, TIMEOUT, &id), "submit after");
    must(opg_client_result(c, id, 1, TIMEOUT, &f), "result after");
    opg_frame_free(&f);
    assert_false(n.worker_ended);
    opg_client_free(c);
    net_stop(&n);
}

/* Endpoints on the IPv6 loopback (tcp://[::1]:..., local by
 * docs/operations.md): the coordinator binds there, a worker and a client
 * connect, a job runs. Skipped, visibly, on a host without IPv6. */
static void test_ipv6_loopback(void **state) {
    (void)state;
    void *zctx = zmq_ctx_new(), *probe = zmq_socket(zctx, ZMQ_ROUTER);
    int one = 1, zero = 0;
    zmq_setsockopt(probe, ZMQ_IPV6, &one, sizeof one);
    zmq_setsockopt(probe, ZMQ_LINGER, &zero, sizeof zero);
    int have = zmq_bind(probe, "tcp://[::1]:*") == 0;
    zmq_close(probe);
    zmq_ctx_term(zctx);
    if (!have) {
        print_message("skipped: no IPv6 loopback on this host\n");
        skip();
    }
    net n;
    g_host = "[::1]";
    net_start(&n, 1, 0);
    g_host = "127.0.0.1";
    assert_non_null(strstr(opg_coord_clients_endpoint(n.coord), "[::1]"));
    opg_client *c = client(&n);
    Opg__V1__SubmitJob j;
    Opg__V1__TokenList tl;
    Opg__V1__SamplingParams sp;
    job_init(&j, &tl, &sp, &n, 6);
    uint64_t id = 0;
    must(opg_client_submit(c, &j, TIMEOUT, &id), "submit over [::1]");
    opg_frame *f = NULL;
    must(opg_client_result(c, id, 1, TIMEOUT, &f), "result over [::1]");
    assert_int_equal(((const Opg__V1__Result *)f->msg)->n_output_tokens, 6);
    opg_frame_free(&f);
    opg_client_free(c);
    net_stop(&n);
}

/* ---- a job that brings its worker down (test_poison_job) ------------------------------ */

/* A worker of its own (model on a faulty backend of its own) that a test
 * restarts when it stops, as a supervisor would. */
typedef struct {
    net *n;
    opg_backend *be;
    opg_model *m;
    opg_keypair key;
    opg_worker *w;
    pthread_t t;
    volatile sig_atomic_t stop;
    _Atomic int ended;
    int starts;
    int poison;
} own_worker;

static void *own_worker_main(void *arg) {
    own_worker *o = arg;
    (void)opg_worker_run(o->w, &o->stop);
    o->ended = 1;
    return NULL;
}

static void own_worker_start(own_worker *o) {
    if (!o->m) {
        must(opg_backend_cpu_new(1, &o->be), "backend");
        o->be = tu_faulty_backend(o->be);
        must(opg_model_load(tiny_path(), o->be, NULL, NULL, &o->m), tiny_path());
        must(opg_keypair_generate(&o->key), "keypair");
    }
    tu_faulty_poison(o->be, o->poison, 20000); /* 20 ms a forward pass: jobs overlap */
    opg_worker_config wc = {0};
    wc.coordinator = opg_coord_workers_endpoint(o->n->coord);
    wc.key = &o->key;
    wc.name = "poisoned";
    wc.models = &o->m;
    wc.n_models = 1;
    wc.slots = 4;
    wc.heartbeat_ms = 100; /* the coordinator's 10 s sets the liveness: only a Disconnect gives jobs back soon */
    wc.stream_ms = 1;
    o->stop = 0;
    o->ended = 0;
    must(opg_worker_new(&wc, &o->w), "opg_worker_new");
    assert_int_equal(pthread_create(&o->t, NULL, own_worker_main, o), 0);
    o->starts++;
}

/* Joins a worker that stopped by itself; 1 when it had. */
static int own_worker_reap(own_worker *o) {
    if (!o->w || !o->ended) return 0;
    pthread_join(o->t, NULL);
    opg_worker_free(o->w);
    o->w = NULL;
    return 1;
}

static void own_worker_free(own_worker *o) {
    if (o->w) {
        o->stop = 1;
        pthread_join(o->t, NULL);
        opg_worker_free(o->w);
    }
    opg_model_free(o->m);
    opg_backend_free(o->be);
}

static int job_state(opg_client *c, uint64_t id) {
    int st = 0;
    uint32_t done = 0;
    must(opg_client_status(c, id, TIMEOUT, &st, &done), "status");
    return st;
}

/* The job's final answer: its trace root equals root, or (root NULL) it
 * failed with an error naming how. */
static void expect_final(opg_client *c, uint64_t id, const uint8_t *root, const char *error_has) {
    opg_frame *f = NULL;
    opg_status st = opg_client_result(c, id, 1, TIMEOUT, &f);
    if (root) {
        must(st, "result");
        assert_memory_equal(((const Opg__V1__Result *)f->msg)->trace_root.data, root, 32);
        opg_frame_free(&f);
    } else if (st != OPG_ERR_STATE || !strstr(opg_last_error(), error_has)) {
        print_error("job %llu: %s: \"%s\" (wanted a failure saying \"%s\")\n", (unsigned long long)id,
                    opg_strerror(st), opg_last_error(), error_has);
        fail();
    }
}

/* Restarts a stopped worker once the coordinator has dropped it (its
 * Disconnect handled, its jobs re-queued): the new link's Ready could be
 * read first, while the old worker still counts with its jobs running. */
static void restart_when_gone(net *n, own_worker *o) {
    for (int t = 0; t < 500 && metric(n, "opg_workers") != 0.0; t++) usleep(10000);
    assert_true(metric(n, "opg_workers") == 0.0);
    own_worker_start(o);
}

/* A job that faults every worker it runs on (a kernel bug its shape meets,
 * as tu_faulty_poison makes one): each worker that runs it stops (Disconnect,
 * backend failed) and is restarted here. The jobs that were on the lost worker
 * with it run alone from then on: the innocent ones finish with their
 * reference roots, the poisoned one fails once two workers were lost while
 * it ran alone on them; no other job runs beside a job that runs alone, and
 * a busy worker is held (gets no new jobs) until it drains for one. With the
 * jobs re-queued together as before, the innocent ones failed with it after
 * --max-attempts (5) lost workers. */
static void test_poison_job(void **state) {
    (void)state;
    net n;
    g_heartbeat_ms = 10000;
    net_start(&n, 0, 0);
    g_heartbeat_ms = 100;
    opg_client *c = client(&n);
    opg_gen_result ref24, ref64;
    uint8_t root24[32], root64[32];
    reference(&n, 24, &ref24, root24);
    reference(&n, 64, &ref64, root64);
    /* the poison: a token no innocent job embeds (their prompt and output) */
    int poison = -1;
    for (int t = 1; t < 256 && poison < 0; t++) {
        int used = 0;
        for (int i = 0; i < 5; i++) used |= (int)g_prompt[i] == t;
        for (int64_t i = 0; i < ref64.n_tokens; i++) used |= ref64.tokens[i] == t;
        if (!used) poison = t;
    }
    assert_true(poison > 0);
    uint32_t bad_prompt[5] = {3, 14, (uint32_t)poison, 9, 2};

    own_worker w[2] = {{.n = &n, .poison = poison}, {.n = &n, .poison = poison}};
    own_worker_start(&w[0]);
    for (int t = 0; t < 500 && metric(&n, "opg_workers") != 1.0; t++) usleep(10000);

    /* 1: two innocent jobs and the poisoned one on one worker: it stops */
    Opg__V1__SubmitJob j;
    Opg__V1__TokenList tl;
    Opg__V1__SamplingParams sp;
    uint64_t x = 0, y = 0, p = 0;
    job_init(&j, &tl, &sp, &n, 24);
    must(opg_client_submit(c, &j, TIMEOUT, &x), "submit x");
    must(opg_client_submit(c, &j, TIMEOUT, &y), "submit y");
    tl.ids = bad_prompt;
    must(opg_client_submit(c, &j, TIMEOUT, &p), "submit p");
    for (int t = 0; t < 1000 && !w[0].ended; t++) usleep(10000);
    assert_true(own_worker_reap(&w[0]));
    /* x, y and p are back in the queue: whichever comes to the restarted
       worker runs there alone */
    restart_when_gone(&n, &w[0]);
    uint64_t q = 0;
    tl.ids = g_prompt;
    for (int t = 0; t < 3000; t++) {
        if (own_worker_reap(&w[0])) restart_when_gone(&n, &w[0]);
        double running = metric(&n, "opg_jobs_running");
        if (running > 1.0) print_error("%g jobs running on the one worker\n", running);
        assert_true(running <= 1.0); /* each alone on the one worker, and no new job beside it */
        if (running == 1.0 && !q) must(opg_client_submit(c, &j, TIMEOUT, &q), "submit q");
        if (q && job_state(c, p) == OPG__V1__JOB_STATE__JOB_STATE_FAILED &&
            job_state(c, x) == OPG__V1__JOB_STATE__JOB_STATE_DONE &&
            job_state(c, y) == OPG__V1__JOB_STATE__JOB_STATE_DONE &&
            job_state(c, q) == OPG__V1__JOB_STATE__JOB_STATE_DONE)
            break;
        usleep(5000);
    }
    assert_true(q != 0);
    expect_final(c, x, root24, NULL);
    expect_final(c, y, root24, NULL);
    expect_final(c, p, NULL, "2 workers lost while it ran alone on them");
    expect_final(c, q, root24, NULL);
    /* stopped by the batch it was in, then twice alone; restarted each time */
    assert_int_equal(w[0].starts, 4);

    /* 2: a worker stops under a new job (not yet alone); a busy worker is
       held for it: it takes no new job while it drains, then runs it alone */
    own_worker_start(&w[1]);
    for (int t = 0; t < 500 && metric(&n, "opg_workers") != 2.0; t++) usleep(10000);
    uint64_t z = 0, p2 = 0, q2 = 0;
    job_init(&j, &tl, &sp, &n, 64);
    must(opg_client_submit(c, &j, TIMEOUT, &z), "submit z"); /* over 1.3 s: 20 ms a step */
    for (int t = 0; t < 500 && job_state(c, z) != OPG__V1__JOB_STATE__JOB_STATE_RUNNING; t++) usleep(2000);
    tl.ids = bad_prompt;
    must(opg_client_submit(c, &j, TIMEOUT, &p2), "submit p2"); /* to the idle worker, which stops */
    own_worker *busy = NULL;
    for (int t = 0; t < 1000 && !busy; t++) {
        for (int k = 0; k < 2; k++)
            if (w[k].ended) busy = &w[1 - k];
        usleep(10000);
    }
    assert_non_null(busy);
    for (int t = 0; t < 500 && metric(&n, "opg_workers") != 1.0; t++) usleep(10000);
    tl.ids = g_prompt;
    job_init(&j, &tl, &sp, &n, 24);
    must(opg_client_submit(c, &j, TIMEOUT, &q2), "submit q2");
    usleep(100000);
    /* z still runs on the busy worker, which has free slots, and q2 waits */
    assert_int_equal(job_state(c, z), OPG__V1__JOB_STATE__JOB_STATE_RUNNING);
    assert_int_equal(job_state(c, q2), OPG__V1__JOB_STATE__JOB_STATE_QUEUED);
    /* the stopped worker stays down: the busy one finishes z, then runs p2
       alone and stops; q2 never went to it */
    for (int t = 0; t < 1000 && !busy->ended; t++) usleep(10000);
    assert_true(busy->ended);
    assert_int_equal(job_state(c, z), OPG__V1__JOB_STATE__JOB_STATE_DONE);
    assert_int_equal(job_state(c, q2), OPG__V1__JOB_STATE__JOB_STATE_QUEUED);
    for (int t = 0; t < 2000; t++) {
        for (int k = 0; k < 2; k++)
            if (own_worker_reap(&w[k])) own_worker_start(&w[k]);
        if (job_state(c, p2) == OPG__V1__JOB_STATE__JOB_STATE_FAILED &&
            job_state(c, q2) == OPG__V1__JOB_STATE__JOB_STATE_DONE)
            break;
        usleep(10000);
    }
    expect_final(c, z, root64, NULL);
    expect_final(c, q2, root24, NULL);
    expect_final(c, p2, NULL, "2 workers lost while it ran alone on them");
    assert_true(metric(&n, "opg_jobs_finished_total{state=\"failed\"}") == 2.0);
    assert_true(metric(&n, "opg_jobs_finished_total{state=\"done\"}") == 5.0);
    for (int k = 0; k < 2; k++) own_worker_free(&w[k]);
    opg_gen_result_clear(&ref24);
    opg_gen_result_clear(&ref64);
    opg_client_free(c);
    net_stop(&n);
}

/* ---- text prompts tokenized off the worker's loop (test_text_prompt_off_loop) ---- */

/* The worker's tokenize hook: holds each text prompt back, before it is
 * encoded, while the gate is closed. */
typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int closed;
    int entered;      /* prompts that reached the gate */
    uint64_t ids[16]; /* their job ids, in order */
} gate;

static void gate_hook(void *ctx, uint64_t job_id) {
    gate *g = ctx;
    pthread_mutex_lock(&g->mu);
    if (g->entered < 16) g->ids[g->entered] = job_id;
    g->entered++;
    pthread_cond_broadcast(&g->cv);
    while (g->closed) pthread_cond_wait(&g->cv, &g->mu);
    pthread_mutex_unlock(&g->mu);
}

static void gate_set(gate *g, int closed) {
    pthread_mutex_lock(&g->mu);
    g->closed = closed;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
}

/* Waits (10 s at most) until n prompts reached the gate; 1 when they had. */
static int gate_wait(gate *g, int n) {
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 10;
    pthread_mutex_lock(&g->mu);
    int e = 0;
    while (g->entered < n && e == 0) e = pthread_cond_timedwait(&g->cv, &g->mu, &until);
    int ok = g->entered >= n;
    pthread_mutex_unlock(&g->mu);
    return ok;
}

typedef struct {
    opg_worker *w;
    volatile sig_atomic_t stop;
} plain_worker;

static void *plain_worker_main(void *arg) {
    plain_worker *p = arg;
    opg_status st = opg_worker_run(p->w, &p->stop);
    if (st) fprintf(stderr, "worker: %s\n", opg_last_error());
    return NULL;
}

static uint64_t submit_text(opg_client *c, const uint8_t *model_id, const char *text) {
    Opg__V1__SubmitJob j;
    Opg__V1__TokenList tl;
    Opg__V1__SamplingParams sp;
    net fake;
    memcpy(fake.model_id, model_id, 32);
    job_init(&j, &tl, &sp, &fake, 8);
    j.prompt_case = OPG__V1__SUBMIT_JOB__PROMPT_TEXT;
    j.text = (char *)text;
    uint64_t id = 0;
    must(opg_client_submit(c, &j, TIMEOUT, &id), "submit text");
    return id;
}

/* Waits (5 s at most) until a metric has a value: the worker counts a job
 * just after sending its answer. */
static void wait_metric(opg_metrics *m, const char *series, double want) {
    for (int t = 0; t < 500 && metric_of(m, series) != want; t++) usleep(10000);
    if (metric_of(m, series) != want) {
        print_error("%s is %g, not %g\n", series, metric_of(m, series), want);
        fail();
    }
}

static void wait_state(opg_client *c, uint64_t id, int want) {
    for (int t = 0; t < 1000 && job_state(c, id) != want; t++) usleep(5000);
    assert_int_equal(job_state(c, id), want);
}

/* A text prompt is tokenized on the worker's tokenizing thread, not on its
 * loop: while one is held back before encoding, a token job sent after it
 * runs and finishes. Then the held one runs with the ids the model's
 * tokenizer gives (the same trace root as a job of those ids). Cancelled
 * while queued for encoding, a prompt is never encoded; cancelled while
 * being encoded, its ids are thrown away; neither sends anything. A prompt
 * the tokenizer refuses fails the job with its error. With the tokenizing
 * done on the loop (the hook called there), the token job never finishes. */
static void test_text_prompt_off_loop(void **state) {
    (void)state;
    net n;
    net_start(&n, 0, 0);
    opg_client *c = client(&n);
    opg_backend *be = NULL;
    opg_model *m = NULL;
    must(opg_backend_cpu_new(1, &be), "backend");
    must(opg_model_load(tiny_file("tok-long"), be, NULL, NULL, &m), tiny_file("tok-long"));
    uint8_t mid[32];
    opg_model_id(m, mid);
    opg_metrics *wmet = NULL;
    must(opg_metrics_new(&wmet), "metrics");
    gate g = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 1, 0, {0}};
    opg_worker_config wc = {0};
    wc.coordinator = opg_coord_workers_endpoint(n.coord);
    wc.name = "tokenizing";
    wc.models = &m;
    wc.n_models = 1;
    wc.slots = 8;
    wc.heartbeat_ms = g_heartbeat_ms;
    wc.stream_ms = 1;
    wc.metrics = wmet;
    wc.tokenize_hook = gate_hook;
    wc.tokenize_hook_ctx = &g;
    plain_worker pw = {0};
    must(opg_worker_new(&wc, &pw.w), "opg_worker_new");
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, plain_worker_main, &pw), 0);
    for (int i = 0; i < 500 && metric(&n, "opg_workers") != 1.0; i++) usleep(10000);

    const char *text_b = "abcabcxyzq";
    uint64_t b = submit_text(c, mid, text_b);
    assert_true(gate_wait(&g, 1));
    assert_int_equal(g.ids[0], b);
    uint64_t d = submit_text(c, mid, "zzz"); /* queued behind b's */
    wait_state(c, d, OPG__V1__JOB_STATE__JOB_STATE_RUNNING);
    int cs = 0;
    must(opg_client_cancel(c, d, TIMEOUT, &cs), "cancel d");
    assert_int_equal(cs, OPG__V1__JOB_STATE__JOB_STATE_CANCELLED);
    /* a token job sent after them finishes while b's prompt is held */
    Opg__V1__SubmitJob j;
    Opg__V1__TokenList tl;
    Opg__V1__SamplingParams sp;
    job_init(&j, &tl, &sp, &n, 16);
    memcpy(n.model_id, mid, 32);
    uint64_t a = 0;
    must(opg_client_submit(c, &j, TIMEOUT, &a), "submit a");
    opg_frame *f = NULL;
    must(opg_client_result(c, a, 1, TIMEOUT, &f), "the token job, while a text prompt waits to be encoded");
    opg_frame_free(&f);
    assert_int_equal(job_state(c, b), OPG__V1__JOB_STATE__JOB_STATE_RUNNING);
    assert_int_equal(g.entered, 1);
    wait_metric(wmet, "opg_worker_jobs_running", 1.0); /* b; d dropped */

    /* b runs with its prompt's ids: the trace root of a job of those ids */
    gate_set(&g, 0);
    must(opg_client_result(c, b, 1, TIMEOUT, &f), "b");
    const Opg__V1__Result *rb = (const Opg__V1__Result *)f->msg;
    opg_tokenizer *tok = NULL;
    int32_t *ids = NULL;
    int64_t nids = 0;
    must(opg_tokenizer_from_gguf(opg_model_gguf(m), &tok), "tokenizer");
    must(opg_chat_encode_prompt(tok, opg_model_gguf(m), text_b, 0, &ids, &nids), "encode");
    assert_int_equal(rb->usage->prompt_tokens, nids);
    uint32_t ids32[64];
    assert_true(nids > 0 && nids <= 64);
    for (int64_t i = 0; i < nids; i++) ids32[i] = (uint32_t)ids[i];
    tl.ids = ids32;
    tl.n_ids = (size_t)nids;
    j.max_tokens = 8;
    uint64_t cj = 0;
    must(opg_client_submit(c, &j, TIMEOUT, &cj), "submit c");
    expect_final(c, cj, rb->trace_root.data, NULL);
    opg_frame_free(&f);
    /* d was never encoded: the next prompt is the second at the gate */
    uint64_t e1 = submit_text(c, mid, "xyz");
    must(opg_client_result(c, e1, 1, TIMEOUT, &f), "e1");
    opg_frame_free(&f);
    assert_int_equal(g.entered, 2);
    assert_int_equal(g.ids[1], e1);

    /* cancelled while being encoded: its ids are thrown away */
    gate_set(&g, 1);
    uint64_t e2 = submit_text(c, mid, "abc");
    assert_true(gate_wait(&g, 3));
    wait_state(c, e2, OPG__V1__JOB_STATE__JOB_STATE_RUNNING);
    must(opg_client_cancel(c, e2, TIMEOUT, &cs), "cancel e2");
    assert_int_equal(cs, OPG__V1__JOB_STATE__JOB_STATE_CANCELLED);
    /* the worker has the Cancel once a later job's answer came back */
    uint64_t e3 = submit_text(c, mid, "ABC"); /* no token for these bytes */
    gate_set(&g, 0);
    opg_status st = opg_client_result(c, e3, 1, TIMEOUT, &f);
    if (st != OPG_ERR_UNSUPPORTED || !strstr(opg_last_error(), "a character has no token") ||
        job_state(c, e3) != OPG__V1__JOB_STATE__JOB_STATE_FAILED) {
        print_error("a prompt the tokenizer refuses: %s (%s)\n", opg_strerror(st), opg_last_error());
        fail();
    }
    uint64_t e4 = submit_text(c, mid, "cab");
    must(opg_client_result(c, e4, 1, TIMEOUT, &f), "e4");
    opg_frame_free(&f);
    assert_int_equal(g.entered, 5);
    wait_metric(wmet, "opg_worker_jobs_total{result=\"done\"}", 5.0);    /* a b c e1 e4 */
    wait_metric(wmet, "opg_worker_jobs_total{result=\"dropped\"}", 2.0); /* d e2 */
    wait_metric(wmet, "opg_worker_jobs_total{result=\"failed\"}", 1.0);  /* e3 */
    wait_metric(wmet, "opg_worker_jobs_running", 0.0);
    assert_int_equal(job_state(c, d), OPG__V1__JOB_STATE__JOB_STATE_CANCELLED);
    assert_int_equal(job_state(c, e2), OPG__V1__JOB_STATE__JOB_STATE_CANCELLED);

    /* the link lost while one prompt is being encoded and one waits: both
       dropped (the coordinator re-queues them) and counted */
    gate_set(&g, 1);
    submit_text(c, mid, "abc");
    submit_text(c, mid, "bca");
    assert_true(gate_wait(&g, 6));
    wait_metric(wmet, "opg_worker_jobs_running", 2.0);
    net_stop_coord(&n); /* silent: the worker's heartbeat timeout */
    wait_metric(wmet, "opg_worker_reconnects_total", 1.0);
    wait_metric(wmet, "opg_worker_jobs_running", 0.0);
    wait_metric(wmet, "opg_worker_jobs_total{result=\"dropped\"}", 4.0);
    gate_set(&g, 0);

    pw.stop = 1;
    pthread_join(t, NULL);
    opg_worker_free(pw.w);
    free(ids);
    opg_tokenizer_free(tok);
    opg_metrics_free(wmet);
    opg_model_free(m);
    opg_backend_free(be);
    opg_client_free(c);
    net_stop(&n);
}

/* An in-process worker of the tok-long model with its own model, backend
 * and metrics: context n_ctx (0: the model's), this price. */
typedef struct {
    plain_worker pw;
    pthread_t t;
    opg_backend *be;
    opg_model *m;
    opg_metrics *met;
} ctx_worker;

static void ctx_worker_start(ctx_worker *cw, net *n, const char *name, int64_t n_ctx, uint64_t price) {
    memset(cw, 0, sizeof *cw);
    must(opg_backend_cpu_new(1, &cw->be), "backend");
    must(opg_model_load(tiny_file("tok-long"), cw->be, NULL, NULL, &cw->m), tiny_file("tok-long"));
    must(opg_metrics_new(&cw->met), "metrics");
    opg_worker_config wc = {0};
    wc.coordinator = opg_coord_workers_endpoint(n->coord);
    wc.name = name;
    wc.models = &cw->m;
    wc.n_models = 1;
    wc.slots = 4;
    wc.n_ctx = n_ctx;
    wc.price_per_token = price;
    wc.heartbeat_ms = g_heartbeat_ms;
    wc.metrics = cw->met;
    must(opg_worker_new(&wc, &cw->pw.w), "opg_worker_new");
    assert_int_equal(pthread_create(&cw->t, NULL, plain_worker_main, &cw->pw), 0);
}

static void ctx_worker_stop(ctx_worker *cw) {
    cw->pw.stop = 1;
    pthread_join(cw->t, NULL);
    opg_worker_free(cw->pw.w);
    opg_metrics_free(cw->met);
    opg_model_free(cw->m);
    opg_backend_free(cw->be);
}

/* A text prompt's length is not known to the coordinator (it does not
 * tokenize). Sent to the cheaper worker, whose context holds the prompt but
 * not its 8 output tokens, while a worker of a larger context is registered,
 * the job asks for all of its output (Job.min_tokens): the cheap worker says
 * how long the prompt is instead of running it, and the job runs on the
 * large one (before, it ran on the cheap one and stopped early with
 * "context"). Once the large one is gone, the same job runs on the small
 * context, as far as it holds. */
static void test_text_prompt_context(void **state) {
    (void)state;
    net n;
    net_start(&n, 0, 0);
    opg_client *c = client(&n);
    const char *text = "abcabcxyzqabc";
    int32_t *ids = NULL;
    int64_t nids = 0;
    ctx_worker big, small;
    ctx_worker_start(&big, &n, "big", 0, 5);
    opg_tokenizer *tok = NULL;
    must(opg_tokenizer_from_gguf(opg_model_gguf(big.m), &tok), "tokenizer");
    must(opg_chat_encode_prompt(tok, opg_model_gguf(big.m), text, 0, &ids, &nids), "encode");
    assert_true(nids >= 2);
    ctx_worker_start(&small, &n, "small", nids + 3, 1); /* the prompt + 4 of the 8 tokens */
    for (int i = 0; i < 500 && metric(&n, "opg_workers") != 2.0; i++) usleep(10000);
    assert_true(metric(&n, "opg_workers") == 2.0);
    uint8_t mid[32];
    opg_model_id(big.m, mid);
    uint64_t a = submit_text(c, mid, text);
    opg_frame *f = NULL;
    must(opg_client_result(c, a, 1, TIMEOUT, &f), "the text job");
    const Opg__V1__Result *r = (const Opg__V1__Result *)f->msg;
    assert_int_equal(r->usage->prompt_tokens, nids);
    if (r->stop_reason == OPG__V1__STOP_REASON__STOP_REASON_CONTEXT) {
        print_error("the text job stopped at a full context after %zu tokens: it ran on the small worker\n",
                    r->n_output_tokens);
        fail();
    }
    opg_frame_free(&f);
    wait_metric(big.met, "opg_worker_jobs_total{result=\"done\"}", 1.0);
    assert_true(metric_of(small.met, "opg_worker_jobs_total{result=\"done\"}") == 0.0);
    assert_true(metric_of(small.met, "opg_worker_jobs_total{result=\"refused\"}") == 1.0); /* it was asked first */

    ctx_worker_stop(&big);
    for (int i = 0; i < 500 && metric(&n, "opg_workers") != 1.0; i++) usleep(10000);
    uint64_t b = submit_text(c, mid, text);
    must(opg_client_result(c, b, 1, TIMEOUT, &f), "the text job on the small context alone");
    r = (const Opg__V1__Result *)f->msg;
    assert_true(r->n_output_tokens >= 1 && r->n_output_tokens <= 4);
    if (r->n_output_tokens == 4) assert_int_equal(r->stop_reason, OPG__V1__STOP_REASON__STOP_REASON_CONTEXT);
    opg_frame_free(&f);
    wait_metric(small.met, "opg_worker_jobs_total{result=\"done\"}", 1.0);
    ctx_worker_stop(&small);
    free(ids);
    opg_tokenizer_free(tok);
    opg_client_free(c);
    net_stop(&n);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stream_result_receipt),
        cmocka_unit_test(test_queue_cancel_refusals),
        cmocka_unit_test(test_backend_failure),
        cmocka_unit_test(test_ipv6_loopback),
        cmocka_unit_test(test_poison_job),
        cmocka_unit_test(test_text_prompt_off_loop),
        cmocka_unit_test(test_text_prompt_context),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
