/* test_net_jobstore.c: the coordinator's job store (coordinator/jobstore.h):
 * round trips, ids never reused, idempotent finish, the pending walk, tries, counts,
 * group commit and rollback, persistence across reopen, durability of every
 * acknowledged job when the writer is killed with SIGKILL mid-batch, refusal
 * of files that are not ours, and a throughput print (no assert). Files live
 * in a mkdtemp directory under /tmp, removed at the end. */
#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "jobstore.h"

/* ---- helpers ------------------------------------------------------------------ */
static char g_dir[64];

static int setup(void **state) {
    (void)state;
    snprintf(g_dir, sizeof g_dir, "/tmp/opg_jobstore_XXXXXX");
    return mkdtemp(g_dir) ? 0 : -1;
}

static int rm_entry(const char *p, const struct stat *sb, int type, struct FTW *ftw) {
    (void)sb, (void)type, (void)ftw;
    return remove(p);
}

static int teardown(void **state) {
    (void)state;
    return nftw(g_dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
}

/* g_dir/name, in a static buffer per slot (two paths may be live at once). */
static const char *path_of(const char *name) {
    static char buf[4][256];
    static int slot;
    char *p = buf[slot++ & 3];
    snprintf(p, sizeof buf[0], "%s/%s", g_dir, name);
    return p;
}

#define ok(expr) ok_((expr), #expr, __LINE__)
static void ok_(opg_status st, const char *expr, int line) {
    if (st != OPG_OK) {
        print_error("line %d: %s: %s: %s\n", line, expr, opg_strerror(st), opg_last_error());
        fail();
    }
}

/* Expects status want and a message holding every non-NULL needle. */
#define expect_err(expr, want, n1, n2) expect_err_((expr), want, n1, n2, #expr, __LINE__)
static void expect_err_(opg_status st, opg_status want, const char *n1, const char *n2, const char *expr,
                        int line) {
    const char *msg = opg_last_error();
    if (st != want || (n1 && !strstr(msg, n1)) || (n2 && !strstr(msg, n2))) {
        print_error("line %d: %s: expected %s with \"%s\" and \"%s\", got %s: \"%s\"\n", line, expr,
                    opg_strerror(want), n1 ? n1 : "", n2 ? n2 : "", opg_strerror(st), msg);
        fail();
    }
}

static opg_jobstore *open_ok(const char *path) {
    opg_jobstore *s = NULL;
    ok(opg_jobstore_open(path, &s));
    assert_non_null(s);
    return s;
}

/* Request bytes derived from a sequence number, so any row can be checked. */
#define REQ_LEN 64
static void make_req(uint8_t *b, uint64_t seq) {
    for (int i = 0; i < REQ_LEN; i++) b[i] = (uint8_t)(seq * 131 + (uint64_t)i * 7 + (seq >> 8));
}

/* The owner insert_ok gives row seq: none, "" (no CURVE) or a key-like text,
 * in turn, so every walk and read checks all three. NULL: no owner. */
static const char *owner_of(uint64_t seq, char buf[OPG_JOBSTORE_MAX_OWNER + 1]) {
    if (seq % 3 == 0) return NULL;
    if (seq % 3 == 1) return "";
    snprintf(buf, OPG_JOBSTORE_MAX_OWNER + 1, "client-%040llu", (unsigned long long)seq);
    return buf;
}

static uint64_t insert_ok(opg_jobstore *s, uint64_t seq, int64_t now) {
    uint8_t req[REQ_LEN];
    make_req(req, seq);
    char ob[OPG_JOBSTORE_MAX_OWNER + 1];
    uint64_t id = 0;
    ok(opg_jobstore_insert(s, req, sizeof req, owner_of(seq, ob), now, &id));
    return id;
}

/* Whether a row's owner is the one insert_ok gave it. */
static int owner_matches(uint64_t seq, int has_owner, const char *owner) {
    char ob[OPG_JOBSTORE_MAX_OWNER + 1];
    const char *want = owner_of(seq, ob);
    return want ? has_owner && owner && !strcmp(owner, want) : !has_owner && (!owner || !owner[0]);
}

/* Direct SQLite access, for what the API deliberately does not offer. */
static void sql_exec(const char *path, const char *sql) {
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    char *err = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK) {
        print_error("%s: %s\n", sql, err ? err : "?");
        sqlite3_free(err);
        sqlite3_close(db);
        fail();
    }
    sqlite3_close(db);
}

/* First column of the first row as text (into buf). */
static const char *sql_text(const char *path, const char *sql, char *buf, size_t n) {
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    buf[0] = 0;
    if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0))
        snprintf(buf, n, "%s", (const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    sqlite3_close(db);
    return buf;
}

static int64_t sql_int(const char *path, const char *sql) {
    char buf[64];
    return strtoll(sql_text(path, sql, buf, sizeof buf), NULL, 10);
}

/* What "consistent" means after a crash: integrity_check; the store's counts
 * against a count of the rows themselves; a results row for exactly the final
 * jobs, with the job's state (finish writes both in one statement). */
static void assert_consistent(const char *path, opg_jobstore *s) {
    char buf[256];
    assert_string_equal(sql_text(path, "PRAGMA integrity_check", buf, sizeof buf), "ok");
    int64_t c[6];
    ok(opg_jobstore_counts(s, c));
    for (int st = 1; st <= 5; st++) {
        char q[96];
        snprintf(q, sizeof q, "SELECT count(*) FROM jobs WHERE state = %d", st);
        assert_int_equal(c[st], sql_int(path, q));
    }
    assert_int_equal(sql_int(path, "SELECT count(*) FROM results"),
                     c[OPG_JOB_DONE] + c[OPG_JOB_FAILED] + c[OPG_JOB_CANCELLED]);
    assert_int_equal(sql_int(path, "SELECT count(*) FROM jobs j WHERE (j.state >= 3) <>"
                                   " EXISTS(SELECT 1 FROM results r WHERE r.id = j.id AND r.state = j.state)"),
                     0);
    assert_int_equal(sql_int(path, "SELECT count(*) FROM results r WHERE NOT EXISTS"
                                   " (SELECT 1 FROM jobs j WHERE j.id = r.id)"),
                     0);
}

/* path's tables, indexes and triggers are those a new store gets. */
static void assert_same_schema(const char *path) {
    const char *fresh = path_of("fresh-schema.db");
    remove(fresh);
    opg_jobstore_close(open_ok(fresh));
    char a[1024], b[1024];
    const char *q = "SELECT group_concat(sql, ';') FROM (SELECT sql FROM sqlite_master ORDER BY name)";
    assert_string_equal(sql_text(path, q, a, sizeof a), sql_text(fresh, q, b, sizeof b));
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ---- tests -------------------------------------------------------------------- */
static void test_round_trip(void **state) {
    (void)state;
    const char *path = path_of("rt.db");
    opg_jobstore *s = open_ok(path);
    uint8_t req[300];
    for (int i = 0; i < 300; i++) req[i] = (uint8_t)(i * 37 + 11);
    uint64_t id = 0;
    const char *key = "rq9Sg6*Wu@oqRJ0Fo+Zc!?cu5N{YXc$C@xAeCcm6"; /* a Z85 public key */
    ok(opg_jobstore_insert(s, req, sizeof req, key, 1700000000123, &id));
    assert_int_equal(id, 1);

    opg_job_row r;
    ok(opg_jobstore_get(s, id, &r));
    assert_int_equal(r.id, id);
    assert_int_equal(r.state, OPG_JOB_QUEUED);
    assert_int_equal(r.created_ms, 1700000000123);
    assert_int_equal(r.finished_ms, 0);
    assert_int_equal(r.request_len, sizeof req);
    tu_assert_bytes(r.request, req, sizeof req, "request");
    assert_null(r.result);
    assert_int_equal(r.result_len, 0);
    assert_int_equal(r.has_owner, 1);
    assert_string_equal(r.owner, key);
    opg_job_row_clear(&r);
    assert_int_equal(r.has_owner, 0);
    assert_null(r.request);
    opg_job_row_clear(&r); /* twice is harmless */
    opg_job_row_clear(NULL);

    /* an empty request (a SubmitJob with all defaults packs to 0 bytes) */
    uint64_t id2 = 0;
    ok(opg_jobstore_insert(s, NULL, 0, NULL, 5, &id2));
    assert_int_equal(id2, 2);
    ok(opg_jobstore_get(s, id2, &r));
    assert_non_null(r.request);
    assert_int_equal(r.request_len, 0);
    assert_int_equal(r.has_owner, 0); /* no owner */
    assert_string_equal(r.owner, "");
    opg_job_row_clear(&r);

    /* results: a blob, none, and an empty one (kept apart from none) */
    const uint8_t res[5] = {9, 8, 7, 6, 5};
    int changed = -1;
    ok(opg_jobstore_finish(s, id, OPG_JOB_DONE, res, sizeof res, 1700000000999, &changed));
    assert_int_equal(changed, 1);
    ok(opg_jobstore_get(s, id, &r));
    assert_int_equal(r.state, OPG_JOB_DONE);
    assert_int_equal(r.created_ms, 1700000000123);
    assert_int_equal(r.finished_ms, 1700000000999);
    tu_assert_bytes(r.request, req, sizeof req, "request after finish");
    assert_int_equal(r.result_len, sizeof res);
    tu_assert_bytes(r.result, res, sizeof res, "result");
    opg_job_row_clear(&r);

    ok(opg_jobstore_finish(s, id2, OPG_JOB_CANCELLED, NULL, 0, 6, NULL));
    ok(opg_jobstore_get(s, id2, &r));
    assert_int_equal(r.state, OPG_JOB_CANCELLED);
    assert_null(r.result);
    opg_job_row_clear(&r);

    uint64_t id3 = insert_ok(s, 3, 7);
    ok(opg_jobstore_finish(s, id3, OPG_JOB_FAILED, res, 0, 8, &changed));
    ok(opg_jobstore_get(s, id3, &r));
    assert_int_equal(r.state, OPG_JOB_FAILED);
    assert_non_null(r.result);
    assert_int_equal(r.result_len, 0);
    assert_true(owner_matches(3, r.has_owner, r.owner));
    opg_job_row_clear(&r);
    /* "" (a client without CURVE) is an owner, not the absence of one */
    uint64_t id4 = insert_ok(s, 4, 9);
    ok(opg_jobstore_get(s, id4, &r));
    assert_int_equal(r.has_owner, 1);
    assert_string_equal(r.owner, "");
    opg_job_row_clear(&r);
    opg_jobstore_close(s);
    opg_jobstore_close(NULL);
}

static void test_ids_never_reused(void **state) {
    (void)state;
    const char *path = path_of("ids.db");
    opg_jobstore *s = open_ok(path);
    uint64_t last = 0;
    for (uint64_t i = 0; i < 10; i++) {
        uint64_t id = insert_ok(s, i, 1);
        assert_int_equal(id, last + 1);
        last = id;
    }
    opg_jobstore_close(s);

    s = open_ok(path);
    assert_int_equal(insert_ok(s, 10, 2), 11);
    opg_jobstore_close(s);

    /* finished jobs keep their ids spent too (a job's outcome never deletes
     * or moves its row), and ids go on after another restart */
    s = open_ok(path);
    for (uint64_t i = 1; i <= 11; i++) ok(opg_jobstore_finish(s, i, OPG_JOB_DONE, NULL, 0, 3, NULL));
    opg_jobstore_close(s);
    s = open_ok(path);
    assert_int_equal(insert_ok(s, 11, 3), 12);
    opg_job_row r;
    ok(opg_jobstore_get(s, 11, &r));
    assert_int_equal(r.state, OPG_JOB_DONE);
    opg_job_row_clear(&r);
    expect_err(opg_jobstore_get(s, 13, &r), OPG_ERR_NOT_FOUND, "no job 13", path);
    assert_consistent(path, s);
    opg_jobstore_close(s);
}

static void test_finish_idempotent(void **state) {
    (void)state;
    opg_jobstore *s = open_ok(path_of("idem.db"));
    uint64_t id = insert_ok(s, 1, 100);
    const uint8_t first[3] = {1, 2, 3}, second[4] = {4, 5, 6, 7};
    int changed = -1;
    ok(opg_jobstore_finish(s, id, OPG_JOB_DONE, first, sizeof first, 200, &changed));
    assert_int_equal(changed, 1);
    /* a late duplicate (worker retry, cancel racing completion) changes nothing */
    ok(opg_jobstore_finish(s, id, OPG_JOB_FAILED, second, sizeof second, 300, &changed));
    assert_int_equal(changed, 0);
    ok(opg_jobstore_finish(s, id, OPG_JOB_DONE, second, sizeof second, 400, &changed));
    assert_int_equal(changed, 0);
    ok(opg_jobstore_finish(s, id, OPG_JOB_CANCELLED, NULL, 0, 500, NULL));
    opg_job_row r;
    ok(opg_jobstore_get(s, id, &r));
    assert_int_equal(r.state, OPG_JOB_DONE);
    assert_int_equal(r.finished_ms, 200);
    assert_int_equal(r.result_len, sizeof first);
    tu_assert_bytes(r.result, first, sizeof first, "first result");
    opg_job_row_clear(&r);
    int64_t c[6];
    ok(opg_jobstore_counts(s, c));
    assert_int_equal(c[OPG_JOB_DONE], 1);
    assert_int_equal(c[OPG_JOB_FAILED], 0);
    assert_int_equal(c[OPG_JOB_CANCELLED], 0);
    opg_jobstore_close(s);
}

static void test_finish_errors(void **state) {
    (void)state;
    const char *path = path_of("ferr.db");
    opg_jobstore *s = open_ok(path);
    uint64_t id = insert_ok(s, 1, 1);
    int changed = -1;
    expect_err(opg_jobstore_finish(s, 999, OPG_JOB_DONE, NULL, 0, 2, &changed), OPG_ERR_NOT_FOUND, "no job 999",
               path);
    assert_int_equal(changed, 0);
    expect_err(opg_jobstore_finish(s, 0, OPG_JOB_DONE, NULL, 0, 2, NULL), OPG_ERR_NOT_FOUND, "no job 0", NULL);
    expect_err(opg_jobstore_finish(s, UINT64_MAX, OPG_JOB_DONE, NULL, 0, 2, NULL), OPG_ERR_NOT_FOUND, "no job",
               NULL);
    const int bad[] = {0, OPG_JOB_QUEUED, OPG_JOB_RUNNING, 6, -1};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        expect_err(opg_jobstore_finish(s, id, bad[i], NULL, 0, 2, NULL), OPG_ERR_ARG, "not final", NULL);
    expect_err(opg_jobstore_finish(s, id, OPG_JOB_DONE, NULL, 3, 2, NULL), OPG_ERR_ARG, NULL, NULL);
    /* none of that touched the job */
    opg_job_row r;
    ok(opg_jobstore_get(s, id, &r));
    assert_int_equal(r.state, OPG_JOB_QUEUED);
    opg_job_row_clear(&r);
    memset(&r, 0xab, sizeof r);
    expect_err(opg_jobstore_get(s, 42, &r), OPG_ERR_NOT_FOUND, "no job 42", path);
    assert_null(r.request);
    assert_null(r.result);
    assert_int_equal(r.state, 0);
    opg_jobstore_close(s);
}

typedef struct {
    uint64_t ids[64];
    opg_job_tries tries[64];
    int n, stop_after;
    int bad; /* a request or created_ms that did not match its id */
} walk;

static int collect(void *ctx, const opg_job_pending *p) {
    walk *w = ctx;
    uint8_t want[REQ_LEN];
    make_req(want, p->id); /* the tests insert seq == id */
    if (p->request_len != REQ_LEN || memcmp(p->request, want, REQ_LEN) != 0 || p->created_ms != (int64_t)p->id * 10)
        w->bad++;
    if (!owner_matches(p->id, p->owner != NULL, p->owner)) w->bad++;
    if (w->n < 64) {
        w->tries[w->n] = p->tries;
        w->ids[w->n++] = p->id;
    }
    return w->stop_after && w->n >= w->stop_after;
}

static void test_pending(void **state) {
    (void)state;
    opg_jobstore *s = open_ok(path_of("pend.db"));
    walk w = {0};
    ok(opg_jobstore_pending(s, collect, &w)); /* empty store */
    assert_int_equal(w.n, 0);
    for (uint64_t i = 1; i <= 12; i++) assert_int_equal(insert_ok(s, i, (int64_t)i * 10), i);
    ok(opg_jobstore_finish(s, 2, OPG_JOB_DONE, NULL, 0, 1, NULL));
    ok(opg_jobstore_finish(s, 5, OPG_JOB_FAILED, NULL, 0, 1, NULL));
    ok(opg_jobstore_finish(s, 9, OPG_JOB_CANCELLED, NULL, 0, 1, NULL));
    ok(opg_jobstore_finish(s, 12, OPG_JOB_DONE, NULL, 0, 1, NULL));
    ok(opg_jobstore_pending(s, collect, &w));
    const uint64_t want[] = {1, 3, 4, 6, 7, 8, 10, 11};
    assert_int_equal(w.n, 8);
    assert_int_equal(w.bad, 0);
    for (int i = 0; i < 8; i++) assert_int_equal(w.ids[i], want[i]);

    /* fn returning nonzero stops the walk, still OPG_OK; the walk can run again */
    walk w2 = {.stop_after = 3};
    ok(opg_jobstore_pending(s, collect, &w2));
    assert_int_equal(w2.n, 3);
    assert_int_equal(w2.ids[2], 4);
    walk w3 = {0};
    ok(opg_jobstore_pending(s, collect, &w3));
    assert_int_equal(w3.n, 8);
    /* and the store is usable after a stopped walk (no read left open) */
    ok(opg_jobstore_begin(s));
    ok(opg_jobstore_finish(s, 1, OPG_JOB_DONE, NULL, 0, 1, NULL));
    ok(opg_jobstore_commit(s));
    opg_jobstore_close(s);
}

static void test_counts(void **state) {
    (void)state;
    const char *path = path_of("counts.db");
    opg_jobstore *s = open_ok(path);
    int64_t c[6] = {7, 7, 7, 7, 7, 7};
    ok(opg_jobstore_counts(s, c));
    for (int i = 0; i < 6; i++) assert_int_equal(c[i], 0);
    for (uint64_t i = 1; i <= 20; i++) insert_ok(s, i, 1);
    for (uint64_t i = 1; i <= 6; i++) ok(opg_jobstore_finish(s, i, OPG_JOB_DONE, NULL, 0, 2, NULL));
    for (uint64_t i = 7; i <= 9; i++) ok(opg_jobstore_finish(s, i, OPG_JOB_FAILED, NULL, 0, 2, NULL));
    ok(opg_jobstore_finish(s, 10, OPG_JOB_CANCELLED, NULL, 0, 2, NULL));
    ok(opg_jobstore_finish(s, 10, OPG_JOB_DONE, NULL, 0, 2, NULL)); /* no-op: not counted twice */
    ok(opg_jobstore_counts(s, c));
    assert_int_equal(c[0], 0);
    assert_int_equal(c[OPG_JOB_QUEUED], 10);
    assert_int_equal(c[OPG_JOB_RUNNING], 0);
    assert_int_equal(c[OPG_JOB_DONE], 6);
    assert_int_equal(c[OPG_JOB_FAILED], 3);
    assert_int_equal(c[OPG_JOB_CANCELLED], 1);
    assert_consistent(path, s);
    opg_jobstore_close(s);
    s = open_ok(path);
    int64_t c2[6];
    ok(opg_jobstore_counts(s, c2));
    for (int i = 0; i < 6; i++) assert_int_equal(c2[i], c[i]);
    opg_jobstore_close(s);
}

static void test_transactions(void **state) {
    (void)state;
    const char *path = path_of("tx.db");
    opg_jobstore *s = open_ok(path);
    expect_err(opg_jobstore_commit(s), OPG_ERR_STATE, "no transaction", path);
    ok(opg_jobstore_rollback(s)); /* none open: harmless */
    ok(opg_jobstore_begin(s));
    expect_err(opg_jobstore_begin(s), OPG_ERR_STATE, "already open", path);
    uint64_t a = insert_ok(s, 1, 1), b = insert_ok(s, 2, 1);
    ok(opg_jobstore_commit(s));
    assert_int_equal(a, 1);
    assert_int_equal(b, 2);

    /* a rolled-back batch leaves nothing: no rows, no finish, no counts */
    ok(opg_jobstore_begin(s));
    uint64_t dropped[5];
    for (int i = 0; i < 5; i++) dropped[i] = insert_ok(s, 10 + (uint64_t)i, 1);
    ok(opg_jobstore_finish(s, a, OPG_JOB_DONE, NULL, 0, 2, NULL));
    int64_t c[6];
    ok(opg_jobstore_counts(s, c)); /* inside the transaction its own writes show */
    assert_int_equal(c[OPG_JOB_QUEUED], 6);
    ok(opg_jobstore_rollback(s));
    opg_job_row r;
    for (int i = 0; i < 5; i++) expect_err(opg_jobstore_get(s, dropped[i], &r), OPG_ERR_NOT_FOUND, NULL, NULL);
    ok(opg_jobstore_get(s, a, &r));
    assert_int_equal(r.state, OPG_JOB_QUEUED);
    opg_job_row_clear(&r);
    ok(opg_jobstore_counts(s, c));
    assert_int_equal(c[OPG_JOB_QUEUED], 2);
    assert_int_equal(c[OPG_JOB_DONE], 0);

    /* a second handle (another process) sees only committed batches */
    ok(opg_jobstore_begin(s));
    uint64_t d = insert_ok(s, 20, 1);
    opg_jobstore *s2 = open_ok(path);
    expect_err(opg_jobstore_get(s2, d, &r), OPG_ERR_NOT_FOUND, NULL, NULL);
    ok(opg_jobstore_commit(s));
    ok(opg_jobstore_get(s2, d, &r));
    opg_job_row_clear(&r);
    opg_jobstore_close(s2);

    /* close with a transaction open rolls it back */
    ok(opg_jobstore_begin(s));
    uint64_t e = insert_ok(s, 21, 1);
    opg_jobstore_close(s);
    s = open_ok(path);
    expect_err(opg_jobstore_get(s, e, &r), OPG_ERR_NOT_FOUND, NULL, NULL);
    assert_consistent(path, s);
    opg_jobstore_close(s);
}

static void test_reopen_persists(void **state) {
    (void)state;
    const char *path = path_of("persist.db");
    opg_jobstore *s = open_ok(path);
    const uint8_t res[6] = {'r', 'e', 's', 'u', 'l', 't'};
    /* some writes in batches, some on their own */
    for (int b = 0; b < 4; b++) {
        ok(opg_jobstore_begin(s));
        for (int i = 0; i < 25; i++) insert_ok(s, (uint64_t)(b * 25 + i + 1), (b * 25 + i + 1) * 10);
        ok(opg_jobstore_commit(s));
    }
    for (uint64_t id = 1; id <= 100; id += 3)
        ok(opg_jobstore_finish(s, id, id % 2 ? OPG_JOB_DONE : OPG_JOB_FAILED, res, sizeof res, 5000 + (int64_t)id,
                               NULL));
    opg_jobstore_close(s);

    s = open_ok(path);
    for (uint64_t id = 1; id <= 100; id++) {
        opg_job_row r;
        ok(opg_jobstore_get(s, id, &r));
        uint8_t want[REQ_LEN];
        make_req(want, id);
        assert_int_equal(r.request_len, REQ_LEN);
        tu_assert_bytes(r.request, want, REQ_LEN, "request after reopen");
        assert_true(owner_matches(id, r.has_owner, r.owner));
        assert_int_equal(r.created_ms, (int64_t)id * 10);
        if ((id - 1) % 3 == 0) {
            assert_int_equal(r.state, id % 2 ? OPG_JOB_DONE : OPG_JOB_FAILED);
            assert_int_equal(r.finished_ms, 5000 + (int64_t)id);
            assert_int_equal(r.result_len, sizeof res);
            tu_assert_bytes(r.result, res, sizeof res, "result after reopen");
        } else {
            assert_int_equal(r.state, OPG_JOB_QUEUED);
            assert_null(r.result);
        }
        opg_job_row_clear(&r);
    }
    int64_t c[6];
    ok(opg_jobstore_counts(s, c));
    assert_int_equal(c[OPG_JOB_QUEUED], 66);
    assert_int_equal(c[OPG_JOB_DONE] + c[OPG_JOB_FAILED], 34);
    assert_consistent(path, s);
    char buf[32];
    assert_string_equal(sql_text(path, "PRAGMA journal_mode", buf, sizeof buf), "wal");
    opg_jobstore_close(s);
}

/* Child of the crash test: inserts batches of 1..40 jobs forever, each batch
 * committed before its (id, seq) records go down the pipe in one write (so
 * the parent only ever hears of committed jobs). Never returns. */
static _Noreturn void crash_child(const char *path, int fd, uint64_t seq) {
    opg_jobstore *s = NULL;
    if (opg_jobstore_open(path, &s) != OPG_OK) _exit(2);
    uint64_t rec[40][2];
    for (;;) {
        int n = (int)(seq % 40) + 1;
        if (opg_jobstore_begin(s) != OPG_OK) _exit(3);
        for (int i = 0; i < n; i++) {
            uint8_t req[REQ_LEN];
            make_req(req, seq);
            uint64_t id = 0;
            if (opg_jobstore_insert(s, req, sizeof req, "", (int64_t)seq, &id) != OPG_OK) _exit(4);
            rec[i][0] = id;
            rec[i][1] = seq++;
        }
        if (opg_jobstore_commit(s) != OPG_OK) _exit(5);
        size_t bytes = (size_t)n * sizeof rec[0]; /* <= PIPE_BUF: one atomic write */
        if (write(fd, rec, bytes) != (ssize_t)bytes) _exit(6);
    }
}

static void test_crash_durability(void **state) {
    (void)state;
    const char *path = path_of("crash.db");
    /* kill points (records heard before SIGKILL); each round reopens what the
     * last one left, WAL and all */
    const int kill_at[] = {50, 400, 1500};
    uint64_t total_acked = 0, max_id = 0;
    for (int round = 0; round < 3; round++) {
        int fds[2];
        assert_int_equal(pipe(fds), 0);
        fflush(NULL);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            close(fds[0]);
            crash_child(path, fds[1], (uint64_t)round * 1000000 + 1);
        }
        close(fds[1]);
        size_t cap = 4096, n = 0;
        uint64_t(*recs)[2] = malloc(cap * sizeof *recs);
        assert_non_null(recs);
        uint8_t part[16];
        size_t part_n = 0;
        int killed = 0;
        for (;;) {
            ssize_t got = read(fds[0], part + part_n, sizeof part - part_n);
            if (got < 0 && errno == EINTR) continue;
            assert_true(got >= 0);
            if (got == 0) break; /* child dead and pipe drained */
            part_n += (size_t)got;
            if (part_n < sizeof part) continue;
            part_n = 0;
            if (n == cap) {
                cap *= 2;
                recs = realloc(recs, cap * sizeof *recs);
                assert_non_null(recs);
            }
            memcpy(recs[n++], part, sizeof part);
            if (!killed && n >= (size_t)kill_at[round]) {
                assert_int_equal(kill(pid, SIGKILL), 0);
                killed = 1; /* keep reading: records already in the pipe were acknowledged */
            }
        }
        close(fds[0]);
        int wst = 0;
        assert_int_equal(waitpid(pid, &wst, 0), pid);
        if (!(WIFSIGNALED(wst) && WTERMSIG(wst) == SIGKILL)) {
            print_error("round %d: child did not die by SIGKILL (exit status %d)\n", round,
                        WIFEXITED(wst) ? WEXITSTATUS(wst) : -1);
            fail();
        }
        assert_int_equal(part_n, 0);

        opg_jobstore *s = open_ok(path);
        for (size_t i = 0; i < n; i++) {
            opg_job_row r;
            opg_status st = opg_jobstore_get(s, recs[i][0], &r);
            if (st != OPG_OK) {
                print_error("round %d: acknowledged job %llu (seq %llu) lost after SIGKILL: %s\n", round,
                            (unsigned long long)recs[i][0], (unsigned long long)recs[i][1], opg_last_error());
                fail();
            }
            uint8_t want[REQ_LEN];
            make_req(want, recs[i][1]);
            assert_int_equal(r.state, OPG_JOB_QUEUED);
            assert_int_equal(r.created_ms, (int64_t)recs[i][1]);
            assert_int_equal(r.request_len, REQ_LEN);
            tu_assert_bytes(r.request, want, REQ_LEN, "request after SIGKILL");
            opg_job_row_clear(&r);
            assert_true(recs[i][0] > max_id); /* never an id from an earlier round */
            if (i) assert_true(recs[i][0] > recs[i - 1][0]);
        }
        max_id = recs[n - 1][0];
        total_acked += n;
        assert_consistent(path, s);
        int64_t c[6];
        ok(opg_jobstore_counts(s, c));
        assert_true(c[OPG_JOB_QUEUED] >= (int64_t)total_acked); /* committed but unheard rows may exist */
        /* the next id after recovery is past everything acknowledged */
        uint64_t next = insert_ok(s, 0, 0);
        assert_true(next > max_id);
        max_id = next;
        opg_jobstore_close(s);
        free(recs);
    }
    printf("crash: %llu acknowledged jobs over 3 SIGKILLs, all present, integrity ok\n",
           (unsigned long long)total_acked);
}

static void test_not_a_database(void **state) {
    (void)state;
    const char *path = path_of("garbage.db");
    uint8_t junk[8192];
    tu_rng rng = {42};
    for (size_t i = 0; i < sizeof junk; i++) junk[i] = (uint8_t)tu_u64(&rng);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(junk, 1, sizeof junk, f), sizeof junk);
    fclose(f);
    opg_jobstore *s = (opg_jobstore *)1;
    expect_err(opg_jobstore_open(path, &s), OPG_ERR_FORMAT, path, "not a database");
    assert_null(s);
    /* left as it was */
    uint8_t back[sizeof junk + 1];
    f = fopen(path, "rb");
    assert_non_null(f);
    assert_int_equal(fread(back, 1, sizeof back, f), sizeof junk);
    fclose(f);
    tu_assert_bytes(back, junk, sizeof junk, "garbage file untouched");

    /* a short text file */
    const char *txt = path_of("text.db");
    f = fopen(txt, "w");
    assert_non_null(f);
    fputs("coordinator jobs go here\n", f);
    fclose(f);
    expect_err(opg_jobstore_open(txt, &s), OPG_ERR_FORMAT, txt, "not a database");
}

static void test_foreign_schema(void **state) {
    (void)state;
    char buf[64];
    /* another program's SQLite file: refused, and not switched to WAL */
    const char *other = path_of("other.db");
    sql_exec(other, "CREATE TABLE jobs(x); INSERT INTO jobs VALUES (1);");
    opg_jobstore *s = (opg_jobstore *)1;
    expect_err(opg_jobstore_open(other, &s), OPG_ERR_FORMAT, other, "not an opg job store");
    assert_null(s);
    assert_string_equal(sql_text(other, "PRAGMA journal_mode", buf, sizeof buf), "delete");
    /* user_version 1 alone is not enough: the application_id says whose file it is */
    sql_exec(other, "PRAGMA user_version = 1");
    expect_err(opg_jobstore_open(other, &s), OPG_ERR_FORMAT, other, "not an opg job store");

    /* ours, but a schema version this build does not know */
    const char *newer = path_of("newer.db");
    s = open_ok(newer);
    insert_ok(s, 1, 1);
    opg_jobstore_close(s);
    sql_exec(newer, "PRAGMA user_version = 4");
    expect_err(opg_jobstore_open(newer, &s), OPG_ERR_UNSUPPORTED, newer, "schema version 4");
    assert_null(s);
    sql_exec(newer, "PRAGMA user_version = -1");
    expect_err(opg_jobstore_open(newer, &s), OPG_ERR_UNSUPPORTED, newer, "schema version -1");

    /* right identity, tables missing: damaged or forged */
    const char *forged = path_of("forged.db");
    sql_exec(forged, "CREATE TABLE t(x); PRAGMA application_id = 1330661169; PRAGMA user_version = 3;");
    expect_err(opg_jobstore_open(forged, &s), OPG_ERR_FORMAT, forged, "no such table");
    /* schema 2's identity on schema 1's tables (no owner column) */
    const char *half = path_of("half.db");
    sql_exec(half, "CREATE TABLE jobs(id INTEGER PRIMARY KEY, state INTEGER NOT NULL, created_ms INTEGER NOT NULL,"
                   " request BLOB NOT NULL); CREATE TABLE results(id INTEGER PRIMARY KEY, state INTEGER NOT NULL,"
                   " finished_ms INTEGER NOT NULL, result BLOB);"
                   " PRAGMA application_id = 1330661169; PRAGMA user_version = 2;");
    expect_err(opg_jobstore_open(half, &s), OPG_ERR_FORMAT, half, "upgrading the schema from version 2");
    assert_int_equal(sql_int(half, "PRAGMA user_version"), 2); /* the upgrade rolled back */
    assert_int_equal(sql_int(half, "SELECT count(*) FROM sqlite_master WHERE name = 'tries'"), 0);
    /* the same with schema 2's trigger: the upgrade's own statements succeed,
       the tables are found wrong before its commit, and the file stays as it was */
    sql_exec(half, "CREATE TRIGGER jobs_del AFTER DELETE ON jobs BEGIN DELETE FROM results WHERE id = OLD.id; END;");
    expect_err(opg_jobstore_open(half, &s), OPG_ERR_FORMAT, half, "owner");
    assert_null(s);
    assert_int_equal(sql_int(half, "PRAGMA user_version"), 2);
    assert_int_equal(sql_int(half, "SELECT count(*) FROM sqlite_master WHERE name = 'tries'"), 0);
    /* schema 3's identity on schema 2's tables (no tries table) */
    const char *half3 = path_of("half3.db");
    s = open_ok(half3);
    opg_jobstore_close(s);
    sql_exec(half3, "DROP TABLE tries");
    expect_err(opg_jobstore_open(half3, &s), OPG_ERR_FORMAT, half3, "tries");
}

/* Schema 1 as the first coordinators wrote it (before job owners). */
static const char k_schema_v1[] =
    "CREATE TABLE jobs("
    " id INTEGER PRIMARY KEY,"
    " state INTEGER NOT NULL CHECK(state BETWEEN 1 AND 5),"
    " created_ms INTEGER NOT NULL,"
    " request BLOB NOT NULL);"
    "CREATE INDEX jobs_open ON jobs(id) WHERE state IN (1, 2);"
    "CREATE TABLE results("
    " id INTEGER PRIMARY KEY,"
    " state INTEGER NOT NULL CHECK(state BETWEEN 3 AND 5),"
    " finished_ms INTEGER NOT NULL,"
    " result BLOB);"
    "CREATE TRIGGER results_ins AFTER INSERT ON results BEGIN"
    " UPDATE jobs SET state = NEW.state WHERE id = NEW.id; END;"
    "PRAGMA application_id = 1330661169; PRAGMA user_version = 1; PRAGMA journal_mode = WAL;";

static void test_upgrade_from_1(void **state) {
    (void)state;
    const char *path = path_of("v1.db");
    sql_exec(path, k_schema_v1);
    uint8_t r1[REQ_LEN], r2[REQ_LEN];
    make_req(r1, 1);
    make_req(r2, 2);
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, "INSERT INTO jobs(state, created_ms, request) VALUES (1, ?1, ?2)", -1,
                                        &st, NULL),
                     SQLITE_OK);
    for (int i = 1; i <= 2; i++) {
        sqlite3_bind_int64(st, 1, i * 10);
        sqlite3_bind_blob(st, 2, i == 1 ? r1 : r2, REQ_LEN, SQLITE_STATIC);
        assert_int_equal(sqlite3_step(st), SQLITE_DONE);
        sqlite3_reset(st);
    }
    sqlite3_finalize(st);
    assert_int_equal(sqlite3_exec(db, "INSERT INTO results VALUES (2, 3, 99, x'0102')", NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(db);

    /* opened: upgraded in place, its jobs kept, without an owner */
    opg_jobstore *s = open_ok(path);
    assert_int_equal(sql_int(path, "PRAGMA user_version"), 3);
    opg_job_row r;
    ok(opg_jobstore_get(s, 1, &r));
    assert_int_equal(r.state, OPG_JOB_QUEUED);
    assert_int_equal(r.has_owner, 0);
    tu_assert_bytes(r.request, r1, REQ_LEN, "request kept");
    opg_job_row_clear(&r);
    ok(opg_jobstore_get(s, 2, &r));
    assert_int_equal(r.state, OPG_JOB_DONE);
    assert_int_equal(r.result_len, 2);
    assert_int_equal(r.has_owner, 0);
    opg_job_row_clear(&r);
    walk w = {0};
    ok(opg_jobstore_pending(s, collect, &w)); /* seq 1's owner_of is "", so one mismatch: the missing owner */
    assert_int_equal(w.n, 1);
    assert_int_equal(w.ids[0], 1);
    assert_int_equal(w.bad, 1);
    /* new jobs carry owners; ids go on from the old ones */
    assert_int_equal(insert_ok(s, 3, 30), 3);
    ok(opg_jobstore_get(s, 3, &r));
    assert_true(owner_matches(3, r.has_owner, r.owner));
    opg_job_row_clear(&r);
    assert_consistent(path, s);
    /* the upgrade's delete trigger: job 2, final and not the highest, pruned with its result */
    uint64_t cur = 0;
    int64_t del = 0;
    ok(opg_jobstore_prune(s, INT64_MAX, 16, &cur, &del));
    assert_int_equal(del, 1);
    expect_err(opg_jobstore_get(s, 2, &r), OPG_ERR_NOT_FOUND, NULL, NULL);
    assert_int_equal(sql_int(path, "SELECT count(*) FROM results"), 0);
    assert_consistent(path, s);
    opg_jobstore_close(s);

    /* the upgraded tables are the ones a new store gets, and reopening changes nothing */
    assert_same_schema(path);
    s = open_ok(path);
    assert_int_equal(sql_int(path, "PRAGMA user_version"), 3);
    opg_jobstore_close(s);
}

/* Schema 2 as coordinators wrote it before tries: schema 1 and its upgrade. */
static const char k_upgrade_v1_v2[] =
    "ALTER TABLE jobs ADD COLUMN owner TEXT;"
    "CREATE TRIGGER jobs_del AFTER DELETE ON jobs BEGIN DELETE FROM results WHERE id = OLD.id; END;"
    "PRAGMA user_version = 2;";

static void test_upgrade_from_2(void **state) {
    (void)state;
    const char *path = path_of("v2old.db");
    sql_exec(path, k_schema_v1);
    sql_exec(path, k_upgrade_v1_v2);
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, "INSERT INTO jobs(state, created_ms, request, owner)"
                                            " VALUES (1, ?1, ?2, ?3)", -1, &st, NULL),
                     SQLITE_OK);
    for (uint64_t i = 1; i <= 3; i++) {
        uint8_t r[REQ_LEN];
        char ob[OPG_JOBSTORE_MAX_OWNER + 1];
        const char *o = owner_of(i, ob);
        make_req(r, i);
        sqlite3_bind_int64(st, 1, (int64_t)i * 10);
        sqlite3_bind_blob(st, 2, r, REQ_LEN, SQLITE_TRANSIENT);
        if (o) sqlite3_bind_text(st, 3, o, -1, SQLITE_TRANSIENT);
        else sqlite3_bind_null(st, 3);
        assert_int_equal(sqlite3_step(st), SQLITE_DONE);
        sqlite3_reset(st);
    }
    sqlite3_finalize(st);
    assert_int_equal(sqlite3_exec(db, "INSERT INTO results VALUES (1, 3, 99, x'01')", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);

    /* upgraded in place: jobs and owners kept, no tries yet */
    opg_jobstore *s = open_ok(path);
    assert_int_equal(sql_int(path, "PRAGMA user_version"), 3);
    walk w = {0};
    ok(opg_jobstore_pending(s, collect, &w));
    assert_int_equal(w.n, 2);
    assert_int_equal(w.bad, 0);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(w.ids[i], (uint64_t)i + 2);
        assert_int_equal(w.tries[i].attempts + w.tries[i].alone + w.tries[i].lost_alone, 0);
    }
    opg_job_tries t = {2, 1, 1};
    ok(opg_jobstore_set_tries(s, 2, &t));
    ok(opg_jobstore_finish(s, 2, OPG_JOB_FAILED, NULL, 0, 100, NULL));
    /* the upgraded delete trigger takes a pruned job's tries too (2: final, not the highest) */
    uint64_t cur = 0;
    int64_t del = 0;
    ok(opg_jobstore_prune(s, INT64_MAX, 16, &cur, &del));
    assert_int_equal(del, 2);
    assert_int_equal(sql_int(path, "SELECT count(*) FROM tries"), 0);
    assert_consistent(path, s);
    opg_jobstore_close(s);
    assert_same_schema(path);
}

/* Tries: written only for a job not final, read back by get and pending,
 * kept across a reopen, gone with a rolled-back transaction and with the
 * pruned job. */
static void test_tries(void **state) {
    (void)state;
    const char *path = path_of("tries.db");
    opg_jobstore *s = open_ok(path);
    for (uint64_t i = 1; i <= 4; i++) assert_int_equal(insert_ok(s, i, (int64_t)i * 10), i);
    opg_job_row r;
    ok(opg_jobstore_get(s, 1, &r));
    assert_int_equal(r.tries.attempts + r.tries.alone + r.tries.lost_alone, 0);
    opg_job_row_clear(&r);
    opg_job_tries t1 = {1, 1, 0}, t3 = {3, 0, 0};
    ok(opg_jobstore_set_tries(s, 1, &t1));
    t1.lost_alone = 2; /* replaced, not added */
    t1.attempts = 4;
    ok(opg_jobstore_set_tries(s, 1, &t1));
    ok(opg_jobstore_set_tries(s, 3, &t3));
    /* a rolled-back write leaves the last committed tries */
    ok(opg_jobstore_begin(s));
    opg_job_tries tx = {9, 0, 9};
    ok(opg_jobstore_set_tries(s, 3, &tx));
    ok(opg_jobstore_rollback(s));
    /* final, unknown, bad values: refused, nothing written */
    ok(opg_jobstore_finish(s, 2, OPG_JOB_DONE, NULL, 0, 50, NULL));
    expect_err(opg_jobstore_set_tries(s, 2, &t3), OPG_ERR_STATE, "job 2 is final", NULL);
    expect_err(opg_jobstore_set_tries(s, 99, &t3), OPG_ERR_NOT_FOUND, "no job 99", NULL);
    expect_err(opg_jobstore_set_tries(s, 0, &t3), OPG_ERR_NOT_FOUND, NULL, NULL);
    const opg_job_tries bad[] = {{-1, 0, 0}, {0, 2, 0}, {0, -1, 0}, {0, 0, -3}};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        expect_err(opg_jobstore_set_tries(s, 4, &bad[i]), OPG_ERR_ARG, "set_tries job 4", NULL);
    expect_err(opg_jobstore_set_tries(s, 4, NULL), OPG_ERR_ARG, NULL, NULL);
    expect_err(opg_jobstore_set_tries(NULL, 4, &t3), OPG_ERR_ARG, NULL, NULL);
    assert_int_equal(sql_int(path, "SELECT count(*) FROM tries"), 2);
    opg_jobstore_close(s);

    s = open_ok(path);
    walk w = {0};
    ok(opg_jobstore_pending(s, collect, &w));
    assert_int_equal(w.n, 3);
    assert_int_equal(w.bad, 0);
    const uint64_t want_id[] = {1, 3, 4};
    const opg_job_tries want[] = {{4, 1, 2}, {3, 0, 0}, {0, 0, 0}};
    for (int i = 0; i < 3; i++) {
        assert_int_equal(w.ids[i], want_id[i]);
        assert_int_equal(w.tries[i].attempts, want[i].attempts);
        assert_int_equal(w.tries[i].alone, want[i].alone);
        assert_int_equal(w.tries[i].lost_alone, want[i].lost_alone);
    }
    ok(opg_jobstore_get(s, 1, &r));
    assert_int_equal(r.tries.attempts, 4);
    assert_int_equal(r.tries.alone, 1);
    assert_int_equal(r.tries.lost_alone, 2);
    opg_job_row_clear(&r);
    /* a job's tries stay readable once it is final, and go when it is pruned */
    ok(opg_jobstore_finish(s, 1, OPG_JOB_FAILED, NULL, 0, 60, NULL));
    ok(opg_jobstore_get(s, 1, &r));
    assert_int_equal(r.state, OPG_JOB_FAILED);
    assert_int_equal(r.tries.attempts, 4);
    opg_job_row_clear(&r);
    uint64_t cur = 0;
    int64_t del = 0;
    ok(opg_jobstore_prune(s, INT64_MAX, 16, &cur, &del));
    assert_int_equal(del, 2);
    assert_int_equal(sql_int(path, "SELECT count(*) FROM tries"), 1); /* job 3's */
    assert_consistent(path, s);
    opg_jobstore_close(s);

    /* tries not what set_tries writes: refused on read, not read as some
       number (a text or real passes the schema's checks: the table is not STRICT) */
    const char *bad_sql[] = {"PRAGMA ignore_check_constraints = 1; UPDATE tries SET alone = 7 WHERE id = 3",
                             "UPDATE tries SET alone = 0, attempts = 'garbage' WHERE id = 3",
                             "UPDATE tries SET attempts = 2.9 WHERE id = 3",
                             "UPDATE tries SET attempts = 1, lost_alone = x'05' WHERE id = 3"};
    for (size_t i = 0; i < sizeof bad_sql / sizeof *bad_sql; i++) {
        sql_exec(path, bad_sql[i]);
        s = open_ok(path);
        expect_err(opg_jobstore_get(s, 3, &r), OPG_ERR_FORMAT, "invalid tries", NULL);
        walk w2 = {0};
        expect_err(opg_jobstore_pending(s, collect, &w2), OPG_ERR_FORMAT, "job 3 has invalid tries", NULL);
        opg_jobstore_close(s);
    }
}

/* An owner that is not text of at most OPG_JOBSTORE_MAX_OWNER bytes was not
 * written by insert: refused on read, not truncated or passed on. */
static void test_bad_owner_in_file(void **state) {
    (void)state;
    const char *path = path_of("badowner.db");
    opg_jobstore *s = open_ok(path);
    insert_ok(s, 1, 10);
    insert_ok(s, 2, 20);
    opg_jobstore_close(s);
    const char *bad[] = {"UPDATE jobs SET owner = x'6b6579' WHERE id = 2",         /* a blob */
                         "UPDATE jobs SET owner = printf('%.64c', 'k') WHERE id = 2", /* 64 bytes */
                         "UPDATE jobs SET owner = 'a' || char(0) || 'b' WHERE id = 2"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        sql_exec(path, bad[i]);
        s = open_ok(path);
        opg_job_row r;
        expect_err(opg_jobstore_get(s, 2, &r), OPG_ERR_FORMAT, "invalid owner", NULL);
        assert_null(r.request);
        ok(opg_jobstore_get(s, 1, &r)); /* the others still read */
        opg_job_row_clear(&r);
        walk w = {0};
        expect_err(opg_jobstore_pending(s, collect, &w), OPG_ERR_FORMAT, "invalid owner", NULL);
        assert_int_equal(w.n, 1);
        opg_jobstore_close(s);
    }
}

/* One prune call: what it deleted and where its cursor went. */
static void prune_ok(opg_jobstore *s, int64_t before, int max_rows, uint64_t *cur, int64_t want_deleted,
                     uint64_t want_cursor) {
    int64_t del = -1;
    ok(opg_jobstore_prune(s, before, max_rows, cur, &del));
    assert_int_equal(del, want_deleted);
    assert_int_equal(*cur, want_cursor);
}

static void test_prune(void **state) {
    (void)state;
    const char *path = path_of("prune.db");
    opg_jobstore *s = open_ok(path);
    /* 1..10; all final but 9, job id finished at id x 100 ms; 10 (the highest) too */
    for (uint64_t i = 1; i <= 10; i++) assert_int_equal(insert_ok(s, i, (int64_t)i * 10), i);
    const uint8_t res[3] = {1, 2, 3};
    for (uint64_t i = 1; i <= 10; i++)
        if (i != 9) ok(opg_jobstore_finish(s, i, i % 2 ? OPG_JOB_DONE : OPG_JOB_CANCELLED, res, sizeof res,
                                           (int64_t)i * 100, NULL));
    /* before 550, three final jobs a call: 1-3 go; 4, 5 go, 6 stays; 7, 8, 10
       stay; then the end, and the cursor starts over */
    uint64_t cur = 0;
    prune_ok(s, 550, 3, &cur, 3, 3);
    prune_ok(s, 550, 3, &cur, 2, 6);
    prune_ok(s, 550, 3, &cur, 0, 10);
    prune_ok(s, 550, 3, &cur, 0, 0);
    /* everything old: 6, 7, 8 go; 9 is not final, 10 is the highest */
    prune_ok(s, INT64_MAX, 100, &cur, 3, 0);
    prune_ok(s, INT64_MAX, 100, &cur, 0, 0);
    opg_job_row r;
    for (uint64_t i = 1; i <= 8; i++) expect_err(opg_jobstore_get(s, i, &r), OPG_ERR_NOT_FOUND, NULL, NULL);
    ok(opg_jobstore_get(s, 9, &r));
    assert_int_equal(r.state, OPG_JOB_QUEUED);
    opg_job_row_clear(&r);
    ok(opg_jobstore_get(s, 10, &r));
    assert_int_equal(r.state, OPG_JOB_CANCELLED);
    assert_int_equal(r.result_len, sizeof res);
    opg_job_row_clear(&r);
    assert_int_equal(sql_int(path, "SELECT count(*) FROM results"), 1);
    assert_consistent(path, s);
    walk w = {0};
    ok(opg_jobstore_pending(s, collect, &w));
    assert_int_equal(w.n, 1);
    assert_int_equal(w.ids[0], 9);
    /* ids go on from the highest, after a reopen too */
    assert_int_equal(insert_ok(s, 11, 110), 11);
    opg_jobstore_close(s);
    s = open_ok(path);
    assert_int_equal(insert_ok(s, 12, 120), 12);
    /* 10 is no longer the highest: it goes now, 12 (not final) stays */
    prune_ok(s, INT64_MAX, 100, &cur, 1, 0);
    /* a prune inside a transaction that is rolled back deleted nothing */
    ok(opg_jobstore_finish(s, 11, OPG_JOB_DONE, NULL, 0, 5, NULL));
    ok(opg_jobstore_begin(s));
    prune_ok(s, INT64_MAX, 100, &cur, 1, 0);
    ok(opg_jobstore_rollback(s));
    ok(opg_jobstore_get(s, 11, &r));
    assert_int_equal(r.state, OPG_JOB_DONE);
    opg_job_row_clear(&r);
    assert_consistent(path, s);
    /* bad arguments; a cursor beyond every id starts over */
    int64_t del = 7;
    expect_err(opg_jobstore_prune(s, 0, 0, &cur, &del), OPG_ERR_ARG, NULL, NULL);
    assert_int_equal(del, 0);
    expect_err(opg_jobstore_prune(s, 0, 1, NULL, NULL), OPG_ERR_ARG, NULL, NULL);
    expect_err(opg_jobstore_prune(NULL, 0, 1, &cur, NULL), OPG_ERR_ARG, NULL, NULL);
    cur = 1000; /* past the last id: nothing looked at, back to the start */
    prune_ok(s, INT64_MAX, 100, &cur, 0, 0);
    cur = UINT64_MAX; /* not an id at all (SQLite's are int64): starts over at once */
    prune_ok(s, INT64_MAX, 100, &cur, 1, 0);
    opg_jobstore_close(s);
}

/* The store's lock: one exclusive holder at a time, another gets the
 * holder's pid and leaves the store untouched (no upgrade); released by
 * close; plain opens are not kept out. */
static void test_lock(void **state) {
    (void)state;
    const char *path = path_of("lock.db");
    opg_jobstore *a = NULL, *b = (opg_jobstore *)1;
    ok(opg_jobstore_open_exclusive(path, &a));
    char pid[32];
    snprintf(pid, sizeof pid, "pid %ld", (long)getpid());
    expect_err(opg_jobstore_open_exclusive(path, &b), OPG_ERR_STATE, "in use by another process", pid);
    assert_null(b);
    b = open_ok(path); /* the lock keeps out exclusive opens only */
    assert_int_equal(insert_ok(b, 1, 10), 1);
    opg_jobstore_close(b);
    /* another process too (a child: flock is per open file); it opens nothing else */
    pid_t child = fork();
    if (child == 0) {
        opg_jobstore *c = NULL;
        opg_status st = opg_jobstore_open_exclusive(path, &c);
        _exit(st == OPG_ERR_STATE && strstr(opg_last_error(), pid) ? 0 : 1);
    }
    int wst = 0;
    assert_int_equal(waitpid(child, &wst, 0), child);
    assert_true(WIFEXITED(wst) && WEXITSTATUS(wst) == 0);
    opg_jobstore_close(a);
    ok(opg_jobstore_open_exclusive(path, &b));
    opg_jobstore_close(b);

    /* refused before the store is opened: a schema 2 file stays schema 2 */
    const char *old = path_of("lock2.db");
    sql_exec(old, k_schema_v1);
    sql_exec(old, k_upgrade_v1_v2);
    char lk[300];
    snprintf(lk, sizeof lk, "%s.lock", old);
    int fd = open(lk, O_RDWR | O_CREAT, 0644);
    assert_true(fd >= 0 && flock(fd, LOCK_EX) == 0);
    expect_err(opg_jobstore_open_exclusive(old, &b), OPG_ERR_STATE, "in use by another process", NULL);
    assert_int_equal(sql_int(old, "PRAGMA user_version"), 2);
    close(fd);
    ok(opg_jobstore_open_exclusive(old, &b));
    assert_int_equal(sql_int(old, "PRAGMA user_version"), 3);
    opg_jobstore_close(b);

    /* every name of one store takes one lock: a link to the file, a link
       to its directory (the file there not made yet), "." and ".." */
    char real[256], link[256], sub[320], alias[320], odd[320];
    snprintf(real, sizeof real, "%s", path_of("lockreal"));
    snprintf(link, sizeof link, "%s", path_of("locklink"));
    assert_int_equal(mkdir(real, 0755), 0);
    assert_int_equal(symlink(real, link), 0);
    snprintf(sub, sizeof sub, "%s/a.db", real);
    ok(opg_jobstore_open_exclusive(sub, &a));
    snprintf(alias, sizeof alias, "%s/a.db", link);
    expect_err(opg_jobstore_open_exclusive(alias, &b), OPG_ERR_STATE, "in use by another process", NULL);
    snprintf(alias, sizeof alias, "%s/./../lockreal/a.db", real);
    expect_err(opg_jobstore_open_exclusive(alias, &b), OPG_ERR_STATE, "in use by another process", NULL);
    snprintf(odd, sizeof odd, "%s/b.db", link); /* b.db is not there yet */
    opg_jobstore *held = NULL;
    ok(opg_jobstore_open_exclusive(odd, &held));
    snprintf(alias, sizeof alias, "%s/b.db", real);
    expect_err(opg_jobstore_open_exclusive(alias, &b), OPG_ERR_STATE, "in use by another process", NULL);
    opg_jobstore_close(held);
    snprintf(odd, sizeof odd, "%s/alias.db", real); /* a link to the store file itself */
    assert_int_equal(symlink(sub, odd), 0);
    expect_err(opg_jobstore_open_exclusive(odd, &b), OPG_ERR_STATE, "in use by another process", NULL);
    opg_jobstore_close(a);
    snprintf(odd, sizeof odd, "%s/d-link.db", real); /* a link to a store not made yet */
    assert_int_equal(symlink("d.db", odd), 0);
    ok(opg_jobstore_open_exclusive(odd, &a));
    snprintf(alias, sizeof alias, "%s/d.db", real);
    expect_err(opg_jobstore_open_exclusive(alias, &b), OPG_ERR_STATE, "in use by another process", NULL);
    opg_jobstore_close(a);
    snprintf(alias, sizeof alias, "%s/c.db.lock", real); /* held, its store not made yet: */
    fd = open(alias, O_RDWR | O_CREAT, 0644);
    assert_true(fd >= 0 && flock(fd, LOCK_EX) == 0);
    snprintf(odd, sizeof odd, "%s/c.db", link);
    expect_err(opg_jobstore_open_exclusive(odd, &b), OPG_ERR_STATE, "in use by another process", NULL);
    close(fd);

    /* a lock file that cannot be made */
    const char *dir = path_of("lockdir");
    assert_int_equal(mkdir(dir, 0755), 0);
    char db[300], lockp[310];
    snprintf(db, sizeof db, "%s/x.db", dir);
    snprintf(lockp, sizeof lockp, "%s.lock", db);
    assert_int_equal(mkdir(lockp, 0755), 0); /* a directory where the lock file goes */
    expect_err(opg_jobstore_open_exclusive(db, &b), OPG_ERR_IO, "lock file", lockp);
    expect_err(opg_jobstore_open_exclusive(NULL, &b), OPG_ERR_ARG, NULL, NULL);
}

static void test_missing_dir(void **state) {
    (void)state;
    const char *path = path_of("no/such/dir/jobs.db");
    opg_jobstore *s = (opg_jobstore *)1;
    expect_err(opg_jobstore_open(path, &s), OPG_ERR_IO, path, "unable to open");
    assert_null(s);
    /* a directory where the file should be */
    expect_err(opg_jobstore_open(g_dir, &s), OPG_ERR_IO, g_dir, NULL);
    assert_null(s);
}

static void test_bad_args(void **state) {
    (void)state;
    opg_jobstore *s = NULL;
    expect_err(opg_jobstore_open(NULL, &s), OPG_ERR_ARG, NULL, NULL);
    expect_err(opg_jobstore_open("", &s), OPG_ERR_ARG, NULL, NULL);
    expect_err(opg_jobstore_open(path_of("x.db"), NULL), OPG_ERR_ARG, NULL, NULL);
    s = open_ok(path_of("args.db"));
    uint64_t id = 7;
    expect_err(opg_jobstore_insert(s, NULL, 5, NULL, 1, &id), OPG_ERR_ARG, NULL, NULL);
    assert_int_equal(id, 0);
    expect_err(opg_jobstore_insert(s, (const uint8_t *)"x", 1, NULL, 1, NULL), OPG_ERR_ARG, NULL, NULL);
    expect_err(opg_jobstore_insert(NULL, (const uint8_t *)"x", 1, NULL, 1, &id), OPG_ERR_ARG, NULL, NULL);
    char long_owner[OPG_JOBSTORE_MAX_OWNER + 2];
    memset(long_owner, 'k', sizeof long_owner - 1);
    long_owner[sizeof long_owner - 1] = 0;
    expect_err(opg_jobstore_insert(s, (const uint8_t *)"x", 1, long_owner, 1, &id), OPG_ERR_ARG, "owner longer",
               NULL);
    /* beyond SQLite's blob limit (SQLITE_STATIC binding: the bytes are never read) */
    expect_err(opg_jobstore_insert(s, (const uint8_t *)"x", (size_t)3 << 30, NULL, 1, &id), OPG_ERR_LIMIT,
               "too big", NULL);
    expect_err(opg_jobstore_get(s, 1, NULL), OPG_ERR_ARG, NULL, NULL);
    expect_err(opg_jobstore_pending(s, NULL, NULL), OPG_ERR_ARG, NULL, NULL);
    expect_err(opg_jobstore_counts(s, NULL), OPG_ERR_ARG, NULL, NULL);
    expect_err(opg_jobstore_begin(NULL), OPG_ERR_ARG, NULL, NULL);
    expect_err(opg_jobstore_commit(NULL), OPG_ERR_ARG, NULL, NULL);
    expect_err(opg_jobstore_rollback(NULL), OPG_ERR_ARG, NULL, NULL);
    /* the failed insert left nothing behind */
    assert_int_equal(insert_ok(s, 1, 1), 1);
    opg_jobstore_close(s);
}

/* Not a pass/fail test: the rate the coordinator's batching can expect. */
static void test_throughput(void **state) {
    (void)state;
    const char *path = path_of("bench.db");
    opg_jobstore *s = open_ok(path);
    enum { N = 20000, BATCH = 256, LEN = 200 };
    uint8_t req[LEN];
    for (int i = 0; i < LEN; i++) req[i] = (uint8_t)(i * 29 + 3);
    double t0 = now_s();
    for (int done = 0; done < N;) {
        ok(opg_jobstore_begin(s));
        for (int i = 0; i < BATCH && done < N; i++, done++) {
            uint64_t id;
            ok(opg_jobstore_insert(s, req, LEN, "rq9Sg6*Wu@oqRJ0Fo+Zc!?cu5N{YXc$C@xAeCcm6", done, &id));
        }
        ok(opg_jobstore_commit(s));
    }
    double t1 = now_s();
    const uint8_t res[120] = {1};
    for (int done = 0; done < N;) {
        ok(opg_jobstore_begin(s));
        for (int i = 0; i < BATCH && done < N; i++, done++)
            ok(opg_jobstore_finish(s, (uint64_t)done + 1, OPG_JOB_DONE, res, sizeof res, done, NULL));
        ok(opg_jobstore_commit(s));
    }
    double t2 = now_s();
    insert_ok(s, 1, 1);
    walk w = {0};
    ok(opg_jobstore_pending(s, collect, &w)); /* over 20000 final rows: reads the index only */
    double t3 = now_s();
    assert_int_equal(w.n, 1);
    printf("throughput: %d inserts (%d B, batches of %d) in %.3f s = %.0f jobs/s; "
           "%d finishes %.3f s = %.0f jobs/s; pending over %d final rows %.3f ms\n",
           N, LEN, BATCH, t1 - t0, N / (t1 - t0), N, t2 - t1, N / (t2 - t1), N, (t3 - t2) * 1e3);
    opg_jobstore_close(s);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_ids_never_reused),
        cmocka_unit_test(test_finish_idempotent),
        cmocka_unit_test(test_finish_errors),
        cmocka_unit_test(test_pending),
        cmocka_unit_test(test_counts),
        cmocka_unit_test(test_transactions),
        cmocka_unit_test(test_reopen_persists),
        cmocka_unit_test(test_crash_durability),
        cmocka_unit_test(test_not_a_database),
        cmocka_unit_test(test_foreign_schema),
        cmocka_unit_test(test_upgrade_from_1),
        cmocka_unit_test(test_upgrade_from_2),
        cmocka_unit_test(test_tries),
        cmocka_unit_test(test_bad_owner_in_file),
        cmocka_unit_test(test_prune),
        cmocka_unit_test(test_lock),
        cmocka_unit_test(test_missing_dir),
        cmocka_unit_test(test_bad_args),
        cmocka_unit_test(test_throughput),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
