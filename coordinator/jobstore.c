/* jobstore.c: the coordinator's durable job store on SQLite (jobstore.h). */
#include "jobstore.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#define JS_APPLICATION_ID 0x4f504731 /* "OPG1": marks the file as an opg job store */
#define JS_SCHEMA_VERSION 3          /* PRAGMA user_version */
#define JS_BUSY_MS 5000

/* Schema 3 (each change is a new user_version and an upgrade step in open;
 * schema 1 lacked jobs.owner and the jobs_del trigger, schema 2 the tries
 * table).
 *  - ids are SQLite rowids without AUTOINCREMENT: a new row gets max(id) + 1,
 *    read from the table itself, so ids increase and, since the row with the
 *    highest id is never deleted (prune keeps it), are never given twice,
 *    across restarts too. No sqlite_sequence write per insert.
 *  - a job's outcome is a row of its own in results, inserted once, instead
 *    of growing the job's row in place (cheaper for SQLite: an append to a
 *    second B-tree rather than rewriting a cell that no longer fits its
 *    page). A job has a results row iff it is final. finish is that one
 *    INSERT; its trigger moves jobs.state to the final state (a same-size
 *    rewrite, which drops the row from jobs_open) within the same statement,
 *    so the two never disagree, even when a write fails halfway.
 *  - jobs_open holds only non-final rows, ordered by id: pending() reads it
 *    without touching the (ever growing) final rows.
 *  - no count triggers (one statement less per insert, two per finish):
 *    counts() scans the table; it is for tests and tools, not the job path.
 *  - jobs.owner (schema 2) is added by ALTER TABLE in both a new file and an
 *    upgraded one, so the two hold the same table definition; rows of a
 *    schema 1 file keep NULL there (no owner).
 *  - prune (schema 2) deletes jobs rows; the jobs_del trigger deletes the
 *    results row in the same statement. It walks results by id with a
 *    cursor, a bounded number of rows per call, so no call scans the table
 *    (finished_ms has no index: one more B-tree write per finish otherwise).
 *  - tries (schema 3): a row only for a job a worker was lost under (rare),
 *    so the job path writes nothing more and a re-queue rewrites a few bytes,
 *    not the job's row with its request. jobs_del deletes it with the job.
 *  - a new file is made as schema 2 and upgraded, like an old file, so every
 *    file holds the same definitions (the test compares them). */

/* The upgrade from schema 1: one column, NULL in every existing row (SQLite
 * adds such a column without rewriting the table), and the delete trigger. */
static const char k_upgrade_1_2[] =
    "ALTER TABLE jobs ADD COLUMN owner TEXT;"
    "CREATE TRIGGER jobs_del AFTER DELETE ON jobs BEGIN DELETE FROM results WHERE id = OLD.id; END;";
/* The upgrade from schema 2: the tries table, and jobs_del deleting there too. */
static const char k_upgrade_2_3[] =
    "CREATE TABLE tries("
    " id INTEGER PRIMARY KEY,"
    " attempts INTEGER NOT NULL CHECK(attempts >= 0),"
    " alone INTEGER NOT NULL CHECK(alone IN (0, 1)),"
    " lost_alone INTEGER NOT NULL CHECK(lost_alone >= 0));"
    "DROP TRIGGER jobs_del;"
    "CREATE TRIGGER jobs_del AFTER DELETE ON jobs BEGIN"
    " DELETE FROM results WHERE id = OLD.id; DELETE FROM tries WHERE id = OLD.id; END;";
static const char k_schema_2[] =
    "CREATE TABLE jobs("
    " id INTEGER PRIMARY KEY,"
    " state INTEGER NOT NULL CHECK(state BETWEEN 1 AND 5),"
    " created_ms INTEGER NOT NULL,"
    " request BLOB NOT NULL);"
    "CREATE INDEX jobs_open ON jobs(id) WHERE state IN (1, 2);"
    "ALTER TABLE jobs ADD COLUMN owner TEXT;"
    "CREATE TRIGGER jobs_del AFTER DELETE ON jobs BEGIN DELETE FROM results WHERE id = OLD.id; END;"
    "CREATE TABLE results("
    " id INTEGER PRIMARY KEY,"
    " state INTEGER NOT NULL CHECK(state BETWEEN 3 AND 5),"
    " finished_ms INTEGER NOT NULL,"
    " result BLOB);"
    "CREATE TRIGGER results_ins AFTER INSERT ON results BEGIN"
    " UPDATE jobs SET state = NEW.state WHERE id = NEW.id; END;";

/* Statements prepared once at open and reused (the coordinator inserts tens
 * of thousands of jobs a second). */
enum {
    ST_BEGIN, ST_COMMIT, ST_ROLLBACK, ST_INSERT, ST_FINISH, ST_EXISTS, ST_GET, ST_PENDING, ST_COUNTS,
    ST_PRUNE_SPAN, ST_PRUNE, ST_SET_TRIES, ST_N
};
static const char *const k_sql[ST_N] = {
    [ST_BEGIN] = "BEGIN IMMEDIATE",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",
    [ST_INSERT] = "INSERT INTO jobs(state, created_ms, request, owner) VALUES (1, ?1, ?2, ?3)",
    /* the IGNORE (results.id taken: already final) makes finish idempotent;
     * FROM jobs: no row for an unknown id */
    [ST_FINISH] = "INSERT OR IGNORE INTO results(id, state, finished_ms, result)"
                  " SELECT ?4, ?1, ?3, ?2 FROM jobs WHERE id = ?4",
    [ST_EXISTS] = "SELECT 1 FROM jobs WHERE id = ?1",
    [ST_GET] = "SELECT j.state, j.created_ms, r.finished_ms, j.request, r.result, j.owner,"
               " t.attempts, t.alone, t.lost_alone"
               " FROM jobs j LEFT JOIN results r ON r.id = j.id LEFT JOIN tries t ON t.id = j.id WHERE j.id = ?1",
    /* same WHERE as the partial index, so the planner uses it (and its order) */
    [ST_PENDING] = "SELECT j.id, j.request, j.created_ms, j.owner, t.attempts, t.alone, t.lost_alone"
                   " FROM jobs j LEFT JOIN tries t ON t.id = j.id WHERE j.state IN (1, 2) ORDER BY j.id",
    [ST_COUNTS] = "SELECT state, count(*) FROM jobs GROUP BY state",
    /* the finished jobs one prune call looks at: the next ?2 after id ?1 */
    [ST_PRUNE_SPAN] = "SELECT max(id), count(*) FROM (SELECT id FROM results WHERE id > ?1 ORDER BY id LIMIT ?2)",
    /* those of them finished before ?3, but never the highest id (a new id
       is max(id) + 1: deleting the last row would hand its id out again) */
    [ST_PRUNE] = "DELETE FROM jobs WHERE id IN (SELECT id FROM (SELECT id, finished_ms FROM results WHERE id > ?1"
                 " ORDER BY id LIMIT ?2) WHERE finished_ms < ?3) AND id < (SELECT max(id) FROM jobs)",
    /* only for a job not final (FROM jobs: none for an unknown id) */
    [ST_SET_TRIES] = "INSERT INTO tries(id, attempts, alone, lost_alone)"
                     " SELECT ?1, ?2, ?3, ?4 FROM jobs WHERE id = ?1 AND state IN (1, 2)"
                     " ON CONFLICT(id) DO UPDATE SET attempts = ?2, alone = ?3, lost_alone = ?4",
};

struct opg_jobstore {
    sqlite3 *db;
    char *path;
    sqlite3_stmt *st[ST_N];
    int lock_fd; /* <path>.lock, held from opg_jobstore_open_exclusive to close; else -1 */
};

static opg_status map_rc(int rc) {
    switch (rc & 0xff) {
    case SQLITE_NOMEM: return OPG_ERR_NOMEM;
    case SQLITE_NOTADB:
    case SQLITE_CORRUPT:
    case SQLITE_FORMAT: return OPG_ERR_FORMAT;
    case SQLITE_TOOBIG: return OPG_ERR_LIMIT;
    case SQLITE_BUSY:
    case SQLITE_LOCKED: return OPG_ERR_TIMEOUT;
    case SQLITE_MISUSE: return OPG_ERR_STATE;
    default: return OPG_ERR_IO; /* IOERR, CANTOPEN, FULL, READONLY, PERM, ... */
    }
}

/* Records "jobstore <path>: <what>: <sqlite message> [(errno text)]" and
 * returns the mapped status. Call before sqlite3_reset, which may change the
 * message. */
static opg_status db_fail(const opg_jobstore *s, int rc, const char *what) {
    const char *msg = s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc);
    int prim = rc & 0xff;
    int e = s->db ? sqlite3_system_errno(s->db) : 0;
    /* the OS error says why a file could not be opened or written */
    if (e && (prim == SQLITE_CANTOPEN || prim == SQLITE_IOERR || prim == SQLITE_FULL))
        return opg__fail(map_rc(rc), "jobstore %s: %s: %s (%s)", s->path, what, msg, strerror(e));
    return opg__fail(map_rc(rc), "jobstore %s: %s: %s", s->path, what, msg);
}

/* Runs a cached statement that returns no rows, then resets it. */
static opg_status step_done(opg_jobstore *s, sqlite3_stmt *st, const char *what) {
    int rc = sqlite3_step(st);
    opg_status ret = OPG_OK;
    if (rc != SQLITE_DONE) ret = db_fail(s, rc, what);
    sqlite3_reset(st);
    return ret;
}

/* One-shot SQL (open only): exec, or a single integer/text result. */
static opg_status exec_sql(opg_jobstore *s, const char *sql, const char *what) {
    int rc = sqlite3_exec(s->db, sql, NULL, NULL, NULL);
    return rc == SQLITE_OK ? OPG_OK : db_fail(s, rc, what);
}

static opg_status query_int(opg_jobstore *s, const char *sql, const char *what, int64_t *v) {
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);
    if (rc == SQLITE_OK) {
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            *v = sqlite3_column_int64(st, 0);
            rc = SQLITE_OK;
        }
    }
    opg_status ret = rc == SQLITE_OK ? OPG_OK : db_fail(s, rc, what);
    sqlite3_finalize(st);
    return ret;
}

/* Reads the file's identity without writing anything, so a file that is not
 * ours is refused untouched. *empty = 1 for a new (or zero-length) file. */
static opg_status check_identity(opg_jobstore *s, int *empty, int64_t *version) {
    int64_t app = 0, ver = 0, n_obj = 0;
    const char *what = "reading the file header";
    opg_status st = query_int(s, "PRAGMA application_id", what, &app);
    if (st == OPG_OK) st = query_int(s, "PRAGMA user_version", what, &ver);
    if (st == OPG_OK) st = query_int(s, "SELECT count(*) FROM sqlite_master", what, &n_obj);
    if (st != OPG_OK) return st;
    *empty = app == 0 && ver == 0 && n_obj == 0;
    *version = ver;
    if (*empty) return OPG_OK;
    if (app != JS_APPLICATION_ID)
        return opg__fail(OPG_ERR_FORMAT,
                         "jobstore %s: not an opg job store (SQLite application_id 0x%llx, user_version %lld, "
                         "%lld schema objects); refusing to use it",
                         s->path, (unsigned long long)app, (long long)ver, (long long)n_obj);
    if (ver < 1 || ver > JS_SCHEMA_VERSION)
        return opg__fail(OPG_ERR_UNSUPPORTED, "jobstore %s: schema version %lld, this build knows 1 to %d",
                         s->path, (long long)ver, JS_SCHEMA_VERSION);
    return OPG_OK;
}

/* Prepares the cached statements: every table and column they name must
 * exist, so a file whose identity matches but whose tables do not (damaged
 * or forged) fails here with OPG_ERR_FORMAT. */
static opg_status prepare_all(opg_jobstore *s) {
    for (int i = 0; i < ST_N; i++) {
        if (s->st[i]) continue;
        int rc = sqlite3_prepare_v3(s->db, k_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &s->st[i], NULL);
        if (rc != SQLITE_OK) {
            char what[48];
            snprintf(what, sizeof what, "schema does not match version %d", JS_SCHEMA_VERSION);
            opg_status st = db_fail(s, rc, what);
            return st == OPG_ERR_IO ? OPG_ERR_FORMAT : st;
        }
    }
    return OPG_OK;
}

/* Creates the schema in a new file, or upgrades a schema 1 or 2 file, in one
 * transaction (a crash leaves the file as it was or done, never between);
 * re-checks inside it because another process may have done it since
 * check_identity. The statements are prepared before the commit, so an
 * upgrade of tables that are not what the file's version says is rolled
 * back: the file is refused unchanged. */
static opg_status set_up_schema(opg_jobstore *s) {
    opg_status st = exec_sql(s, "BEGIN IMMEDIATE", "setting up the schema");
    if (st != OPG_OK) return st;
    int empty = 0;
    int64_t ver = 0;
    st = check_identity(s, &empty, &ver);
    if (st == OPG_OK && empty) {
        st = exec_sql(s, k_schema_2, "creating the schema");
        if (st == OPG_OK) st = exec_sql(s, k_upgrade_2_3, "creating the schema");
        char ids[96]; /* the identity, written in the same transaction as the tables */
        snprintf(ids, sizeof ids, "PRAGMA application_id = %d; PRAGMA user_version = %d;", JS_APPLICATION_ID,
                 JS_SCHEMA_VERSION);
        if (st == OPG_OK) st = exec_sql(s, ids, "creating the schema");
    } else if (st == OPG_OK && ver < JS_SCHEMA_VERSION) {
        char what[64];
        snprintf(what, sizeof what, "upgrading the schema from version %lld", (long long)ver);
        if (ver == 1) st = exec_sql(s, k_upgrade_1_2, what);
        if (st == OPG_OK) st = exec_sql(s, k_upgrade_2_3, what);
        char set_ver[48];
        snprintf(set_ver, sizeof set_ver, "PRAGMA user_version = %d", JS_SCHEMA_VERSION);
        if (st == OPG_OK) st = exec_sql(s, set_ver, what);
        /* an SQL error here: the tables are not what the file's version says */
        if (st == OPG_ERR_IO && (sqlite3_extended_errcode(s->db) & 0xff) == SQLITE_ERROR) {
            char msg[512];
            snprintf(msg, sizeof msg, "%s", opg_last_error());
            st = opg__fail(OPG_ERR_FORMAT, "%s", msg);
        }
    }
    if (st == OPG_OK) st = prepare_all(s);
    if (st == OPG_OK) st = exec_sql(s, "COMMIT", "setting up the schema");
    if (st != OPG_OK) sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL); /* keeps the first message */
    return st;
}

static opg_status take_lock(opg_jobstore *s);

static opg_status open_store(const char *path, int exclusive, opg_jobstore **out) {
    if (!out) return opg__fail(OPG_ERR_ARG, "jobstore: out is NULL");
    *out = NULL;
    if (!path || !path[0]) return opg__fail(OPG_ERR_ARG, "jobstore: empty path");
    opg_jobstore *s = calloc(1, sizeof *s);
    if (!s) return opg__fail(OPG_ERR_NOMEM, "jobstore %s: out of memory", path);
    s->lock_fd = -1;
    s->path = strdup(path);
    if (!s->path) {
        free(s);
        return opg__fail(OPG_ERR_NOMEM, "jobstore %s: out of memory", path);
    }
    opg_status st;
    /* before the file is opened: an upgrade must not rewrite a store another coordinator serves */
    if (exclusive && (st = take_lock(s))) goto fail;
    /* NOMUTEX: one thread at a time per handle (jobstore.h), no lock per call */
    int rc = sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        st = db_fail(s, rc, "cannot open");
        goto fail;
    }
    sqlite3_extended_result_codes(s->db, 1);
    /* SQLite silently falls back to read-only on a write-protected file; a
     * store that cannot record jobs must fail here, not at the first insert */
    if (sqlite3_db_readonly(s->db, "main") == 1) {
        st = opg__fail(OPG_ERR_IO, "jobstore %s: cannot open for writing (read-only file)", s->path);
        goto fail;
    }
    sqlite3_busy_timeout(s->db, JS_BUSY_MS);

    int empty = 0;
    int64_t ver = 0;
    st = check_identity(s, &empty, &ver);
    if (st != OPG_OK) goto fail;

    /* WAL: readers never block the writer; FULL: a commit is fsynced before it
     * returns, so an acknowledged job survives power loss, not only a crash. */
    sqlite3_stmt *jm = NULL;
    rc = sqlite3_prepare_v2(s->db, "PRAGMA journal_mode = WAL", -1, &jm, NULL);
    if (rc == SQLITE_OK) rc = sqlite3_step(jm);
    if (rc != SQLITE_ROW) {
        st = db_fail(s, rc, "setting WAL mode");
        sqlite3_finalize(jm);
        goto fail;
    }
    const char *mode = (const char *)sqlite3_column_text(jm, 0);
    if (!mode || strcmp(mode, "wal") != 0) {
        st = opg__fail(OPG_ERR_UNSUPPORTED, "jobstore %s: cannot use WAL mode (journal_mode is %s)", s->path,
                       mode ? mode : "unknown");
        sqlite3_finalize(jm);
        goto fail;
    }
    sqlite3_finalize(jm);
    st = exec_sql(s, "PRAGMA synchronous = FULL", "setting synchronous=FULL");
    if (st != OPG_OK) goto fail;

    if ((empty || ver < JS_SCHEMA_VERSION) && (st = set_up_schema(s)) != OPG_OK) goto fail;
    if ((st = prepare_all(s)) != OPG_OK) goto fail;
    *out = s;
    return OPG_OK;
fail:
    opg_jobstore_close(s);
    return st;
}

void opg_jobstore_close(opg_jobstore *s) {
    if (!s) return;
    for (int i = 0; i < ST_N; i++) sqlite3_finalize(s->st[i]);
    sqlite3_close(s->db); /* rolls back an open transaction; the last closer checkpoints the WAL */
    if (s->lock_fd >= 0) close(s->lock_fd); /* releases the lock; the file stays (unlinking would race a taker) */
    free(s->path);
    free(s);
}

opg_status opg_jobstore_open(const char *path, opg_jobstore **out) { return open_store(path, 0, out); }

opg_status opg_jobstore_open_exclusive(const char *path, opg_jobstore **out) { return open_store(path, 1, out); }

/* The file path names once symbolic links are followed, also when that
 * file is not there yet (a link to a store SQLite will create): dst holds
 * PATH_MAX bytes. A directory's links and "." need no resolving here (they
 * lead to the same lock file by themselves); a file's link does. As given
 * when it cannot be resolved (the open then says what is wrong). */
static void store_file_of(const char *path, char *dst) {
    char cur[PATH_MAX], target[PATH_MAX];
    snprintf(cur, sizeof cur, "%s", path);
    for (int hops = 0; hops < 40; hops++) { /* 40: the kernel's own limit on links followed */
        if (realpath(cur, dst)) return;
        ssize_t n = readlink(cur, target, sizeof target - 1);
        if (n < 0) break; /* not a link: a file not made yet, at cur */
        target[n] = 0;
        const char *slash = strrchr(cur, '/');
        if (target[0] == '/' || !slash) {
            snprintf(cur, sizeof cur, "%s", target);
        } else { /* relative to the link's directory */
            char next[PATH_MAX];
            if ((size_t)snprintf(next, sizeof next, "%.*s/%s", (int)(slash - cur), cur, target) >= sizeof next) break;
            snprintf(cur, sizeof cur, "%s", next);
        }
    }
    snprintf(dst, PATH_MAX, "%s", cur);
}

static opg_status take_lock(opg_jobstore *s) {
    /* beside the file, so each of its names takes one lock */
    char canon[PATH_MAX], lp[PATH_MAX + 8];
    store_file_of(s->path, canon);
    if ((size_t)snprintf(lp, sizeof lp, "%s.lock", canon) >= sizeof lp)
        return opg__fail(OPG_ERR_ARG, "jobstore %s: path too long for its lock file", s->path);
    int fd = open(lp, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return opg__fail(OPG_ERR_IO, "jobstore %s: cannot open its lock file %s: %s", s->path, lp, strerror(errno));
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        char pid[32] = "";
        ssize_t n = pread(fd, pid, sizeof pid - 1, 0);
        pid[n > 0 ? n : 0] = 0;
        pid[strcspn(pid, "\n")] = 0;
        close(fd);
        if (e == EWOULDBLOCK)
            return opg__fail(OPG_ERR_STATE, "jobstore %s: in use by another process (pid %s, holding %s)", s->path,
                             pid[0] ? pid : "unknown", lp);
        return opg__fail(OPG_ERR_IO, "jobstore %s: cannot lock %s: %s", s->path, lp, strerror(e));
    }
    /* the holder's pid, for the message another process gets (not needed for the lock itself) */
    char buf[32];
    int len = snprintf(buf, sizeof buf, "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, buf, (size_t)len, 0) != len) { /* the lock holds all the same */ }
    s->lock_fd = fd;
    return OPG_OK;
}

opg_status opg_jobstore_begin(opg_jobstore *s) {
    if (!s) return opg__fail(OPG_ERR_ARG, "jobstore: NULL handle");
    if (!sqlite3_get_autocommit(s->db))
        return opg__fail(OPG_ERR_STATE, "jobstore %s: begin: a transaction is already open", s->path);
    return step_done(s, s->st[ST_BEGIN], "begin");
}

opg_status opg_jobstore_commit(opg_jobstore *s) {
    if (!s) return opg__fail(OPG_ERR_ARG, "jobstore: NULL handle");
    if (sqlite3_get_autocommit(s->db))
        return opg__fail(OPG_ERR_STATE, "jobstore %s: commit: no transaction open", s->path);
    return step_done(s, s->st[ST_COMMIT], "commit");
}

opg_status opg_jobstore_rollback(opg_jobstore *s) {
    if (!s) return opg__fail(OPG_ERR_ARG, "jobstore: NULL handle");
    if (sqlite3_get_autocommit(s->db)) return OPG_OK; /* none open, or SQLite already rolled it back */
    return step_done(s, s->st[ST_ROLLBACK], "rollback");
}

/* A zero-length blob must still be bound as a blob, not as NULL. */
static int bind_bytes(sqlite3_stmt *st, int i, const uint8_t *p, size_t len) {
    return sqlite3_bind_blob64(st, i, p ? (const void *)p : (const void *)"", len, SQLITE_STATIC);
}

opg_status opg_jobstore_insert(opg_jobstore *s, const uint8_t *request, size_t len, const char *owner,
                               int64_t now_ms, uint64_t *job_id) {
    if (job_id) *job_id = 0;
    if (!s || !job_id || (!request && len)) return opg__fail(OPG_ERR_ARG, "jobstore insert: NULL argument");
    if (owner && strlen(owner) > OPG_JOBSTORE_MAX_OWNER)
        return opg__fail(OPG_ERR_ARG, "jobstore %s: insert: owner longer than %d bytes", s->path,
                         OPG_JOBSTORE_MAX_OWNER);
    sqlite3_stmt *st = s->st[ST_INSERT];
    int rc = sqlite3_bind_int64(st, 1, now_ms);
    if (rc == SQLITE_OK) rc = bind_bytes(st, 2, request, len);
    if (rc == SQLITE_OK) rc = owner ? sqlite3_bind_text(st, 3, owner, -1, SQLITE_STATIC) : sqlite3_bind_null(st, 3);
    if (rc != SQLITE_OK) {
        opg_status ret = db_fail(s, rc, "insert: request");
        sqlite3_clear_bindings(st);
        return ret;
    }
    opg_status ret = step_done(s, st, "insert");
    sqlite3_clear_bindings(st); /* drop the pointer to the caller's buffer */
    if (ret == OPG_OK) *job_id = (uint64_t)sqlite3_last_insert_rowid(s->db);
    return ret;
}

static int is_final(int state) {
    return state == OPG_JOB_DONE || state == OPG_JOB_FAILED || state == OPG_JOB_CANCELLED;
}

/* SQLite rowids are int64 and ours start at 1: anything else cannot exist. */
static int id_ok(uint64_t id) { return id >= 1 && id <= (uint64_t)INT64_MAX; }

/* OPG_OK when job_id has a row, OPG_ERR_NOT_FOUND ("what: no job N") when
 * not, or the lookup's error. */
static opg_status job_exists(opg_jobstore *s, uint64_t job_id, const char *what) {
    sqlite3_stmt *st = s->st[ST_EXISTS];
    sqlite3_bind_int64(st, 1, (int64_t)job_id);
    int rc = sqlite3_step(st);
    opg_status ret = OPG_OK;
    if (rc == SQLITE_DONE)
        ret = opg__fail(OPG_ERR_NOT_FOUND, "jobstore %s: %s: no job %llu", s->path, what, (unsigned long long)job_id);
    else if (rc != SQLITE_ROW) {
        char w[64];
        snprintf(w, sizeof w, "%s: lookup", what);
        ret = db_fail(s, rc, w);
    }
    sqlite3_reset(st);
    return ret;
}

opg_status opg_jobstore_finish(opg_jobstore *s, uint64_t job_id, int state, const uint8_t *result, size_t len,
                               int64_t now_ms, int *changed) {
    if (changed) *changed = 0;
    if (!s || (!result && len)) return opg__fail(OPG_ERR_ARG, "jobstore finish: NULL argument");
    if (!is_final(state))
        return opg__fail(OPG_ERR_ARG, "jobstore %s: finish job %llu: state %d is not final (3, 4 or 5)", s->path,
                         (unsigned long long)job_id, state);
    if (!id_ok(job_id))
        return opg__fail(OPG_ERR_NOT_FOUND, "jobstore %s: finish: no job %llu", s->path,
                         (unsigned long long)job_id);
    sqlite3_stmt *st = s->st[ST_FINISH];
    int rc = sqlite3_bind_int(st, 1, state);
    if (rc == SQLITE_OK) rc = result ? bind_bytes(st, 2, result, len) : sqlite3_bind_null(st, 2);
    if (rc == SQLITE_OK) rc = sqlite3_bind_int64(st, 3, now_ms);
    if (rc == SQLITE_OK) rc = sqlite3_bind_int64(st, 4, (int64_t)job_id);
    if (rc != SQLITE_OK) {
        opg_status ret = db_fail(s, rc, "finish: result");
        sqlite3_clear_bindings(st);
        return ret;
    }
    opg_status ret = step_done(s, st, "finish");
    sqlite3_clear_bindings(st);
    if (ret != OPG_OK) return ret;
    if (sqlite3_changes(s->db) > 0) { /* the trigger's change is not counted here */
        if (changed) *changed = 1;
        return OPG_OK;
    }
    return job_exists(s, job_id, "finish"); /* nothing updated: already final (OPG_OK), or no such job */
}

/* Copies a blob column; a non-NULL zero-length blob comes back as a 1-byte
 * allocation with *len = 0, so "no result" (NULL) stays distinguishable. */
static opg_status copy_blob(opg_jobstore *s, sqlite3_stmt *st, int col, uint8_t **p, size_t *len) {
    *p = NULL;
    *len = 0;
    if (sqlite3_column_type(st, col) == SQLITE_NULL) return OPG_OK;
    const void *b = sqlite3_column_blob(st, col); /* blob before bytes, as SQLite asks */
    int n = sqlite3_column_bytes(st, col);
    if (n > 0 && !b) return db_fail(s, sqlite3_errcode(s->db), "get: reading a blob");
    *p = malloc(n > 0 ? (size_t)n : 1);
    if (!*p) return opg__fail(OPG_ERR_NOMEM, "jobstore %s: get: out of memory for %d bytes", s->path, n);
    if (n > 0) memcpy(*p, b, (size_t)n);
    *len = (size_t)n;
    return OPG_OK;
}

/* The owner column: NULL -> *has = 0; text of at most OPG_JOBSTORE_MAX_OWNER
 * bytes without NUL -> copied; anything else is not what insert writes. */
static opg_status read_owner(opg_jobstore *s, sqlite3_stmt *st, int col, uint64_t id,
                             char out[OPG_JOBSTORE_MAX_OWNER + 1], int *has) {
    out[0] = 0;
    *has = 0;
    int type = sqlite3_column_type(st, col);
    if (type == SQLITE_NULL) return OPG_OK;
    const unsigned char *t = type == SQLITE_TEXT ? sqlite3_column_text(st, col) : NULL;
    int n = sqlite3_column_bytes(st, col);
    if (!t || n > OPG_JOBSTORE_MAX_OWNER || strlen((const char *)t) != (size_t)n)
        return opg__fail(OPG_ERR_FORMAT, "jobstore %s: job %llu has an invalid owner", s->path,
                         (unsigned long long)id);
    memcpy(out, t, (size_t)n + 1);
    *has = 1;
    return OPG_OK;
}

/* The tries columns from col on: NULL (no tries row) is a job no worker was
 * lost under; values the schema's checks allow but an int cannot hold are
 * not what set_tries writes. */
static opg_status read_tries(opg_jobstore *s, sqlite3_stmt *st, int col, uint64_t id, opg_job_tries *t) {
    memset(t, 0, sizeof *t);
    if (sqlite3_column_type(st, col) == SQLITE_NULL) return OPG_OK;
    int ints = 1; /* not STRICT: a text or real would pass the CHECKs and read as some int */
    for (int i = 0; i < 3; i++) ints &= sqlite3_column_type(st, col + i) == SQLITE_INTEGER;
    int64_t a = sqlite3_column_int64(st, col), al = sqlite3_column_int64(st, col + 1),
            l = sqlite3_column_int64(st, col + 2);
    if (!ints || a < 0 || a > INT32_MAX || al < 0 || al > 1 || l < 0 || l > INT32_MAX)
        return opg__fail(OPG_ERR_FORMAT, "jobstore %s: job %llu has invalid tries", s->path,
                         (unsigned long long)id);
    t->attempts = (int)a;
    t->alone = (int)al;
    t->lost_alone = (int)l;
    return OPG_OK;
}

opg_status opg_jobstore_set_tries(opg_jobstore *s, uint64_t job_id, const opg_job_tries *t) {
    if (!s || !t) return opg__fail(OPG_ERR_ARG, "jobstore set_tries: NULL argument");
    if (t->attempts < 0 || t->lost_alone < 0 || (t->alone != 0 && t->alone != 1))
        return opg__fail(OPG_ERR_ARG, "jobstore %s: set_tries job %llu: attempts %d, alone %d, lost_alone %d "
                         "(want counts >= 0, alone 0 or 1)", s->path, (unsigned long long)job_id, t->attempts,
                         t->alone, t->lost_alone);
    if (!id_ok(job_id))
        return opg__fail(OPG_ERR_NOT_FOUND, "jobstore %s: set_tries: no job %llu", s->path,
                         (unsigned long long)job_id);
    sqlite3_stmt *st = s->st[ST_SET_TRIES];
    sqlite3_bind_int64(st, 1, (int64_t)job_id);
    sqlite3_bind_int(st, 2, t->attempts);
    sqlite3_bind_int(st, 3, t->alone);
    sqlite3_bind_int(st, 4, t->lost_alone);
    opg_status ret = step_done(s, st, "set_tries");
    if (ret != OPG_OK || sqlite3_changes(s->db) > 0) return ret;
    /* nothing written: final, or no such job */
    if ((ret = job_exists(s, job_id, "set_tries")) == OPG_OK)
        ret = opg__fail(OPG_ERR_STATE, "jobstore %s: set_tries: job %llu is final", s->path,
                        (unsigned long long)job_id);
    return ret;
}

opg_status opg_jobstore_get(opg_jobstore *s, uint64_t job_id, opg_job_row *row) {
    if (row) memset(row, 0, sizeof *row);
    if (!s || !row) return opg__fail(OPG_ERR_ARG, "jobstore get: NULL argument");
    if (!id_ok(job_id))
        return opg__fail(OPG_ERR_NOT_FOUND, "jobstore %s: get: no job %llu", s->path, (unsigned long long)job_id);
    sqlite3_stmt *st = s->st[ST_GET];
    sqlite3_bind_int64(st, 1, (int64_t)job_id);
    int rc = sqlite3_step(st);
    opg_status ret;
    if (rc == SQLITE_ROW) {
        row->id = job_id;
        row->state = sqlite3_column_int(st, 0);
        row->created_ms = sqlite3_column_int64(st, 1);
        row->finished_ms = sqlite3_column_int64(st, 2); /* NULL (no results row) reads as 0 */
        ret = copy_blob(s, st, 3, &row->request, &row->request_len);
        if (ret == OPG_OK && !row->request) /* NOT NULL in the schema; never hand back NULL */
            ret = opg__fail(OPG_ERR_FORMAT, "jobstore %s: get: job %llu has no request", s->path,
                            (unsigned long long)job_id);
        if (ret == OPG_OK) ret = copy_blob(s, st, 4, &row->result, &row->result_len);
        if (ret == OPG_OK) ret = read_owner(s, st, 5, job_id, row->owner, &row->has_owner);
        if (ret == OPG_OK) ret = read_tries(s, st, 6, job_id, &row->tries);
        if (ret != OPG_OK) opg_job_row_clear(row);
    } else if (rc == SQLITE_DONE) {
        ret = opg__fail(OPG_ERR_NOT_FOUND, "jobstore %s: get: no job %llu", s->path, (unsigned long long)job_id);
    } else {
        ret = db_fail(s, rc, "get");
    }
    sqlite3_reset(st);
    return ret;
}

void opg_job_row_clear(opg_job_row *row) {
    if (!row) return;
    free(row->request);
    free(row->result);
    memset(row, 0, sizeof *row);
}

opg_status opg_jobstore_pending(opg_jobstore *s, opg_jobstore_fn fn, void *ctx) {
    if (!s || !fn) return opg__fail(OPG_ERR_ARG, "jobstore pending: NULL argument");
    sqlite3_stmt *st = s->st[ST_PENDING];
    opg_status ret = OPG_OK;
    for (;;) {
        int rc = sqlite3_step(st);
        if (rc == SQLITE_DONE) break;
        if (rc != SQLITE_ROW) {
            ret = db_fail(s, rc, "pending");
            break;
        }
        uint64_t id = (uint64_t)sqlite3_column_int64(st, 0);
        const uint8_t *req = sqlite3_column_blob(st, 1);
        size_t n = (size_t)sqlite3_column_bytes(st, 1);
        if (n && !req) {
            ret = db_fail(s, sqlite3_errcode(s->db), "pending: reading a request");
            break;
        }
        if (!req) req = (const uint8_t *)""; /* zero-length request: still a valid pointer */
        char owner[OPG_JOBSTORE_MAX_OWNER + 1];
        int has_owner = 0;
        opg_job_pending job = {.id = id, .request = req, .request_len = n, .created_ms = sqlite3_column_int64(st, 2)};
        ret = read_owner(s, st, 3, id, owner, &has_owner);
        if (ret == OPG_OK) ret = read_tries(s, st, 4, id, &job.tries);
        if (ret != OPG_OK) break;
        job.owner = has_owner ? owner : NULL;
        if (fn(ctx, &job)) break;
    }
    sqlite3_reset(st); /* ends the read transaction */
    return ret;
}

opg_status opg_jobstore_prune(opg_jobstore *s, int64_t before_ms, int max_rows, uint64_t *cursor,
                              int64_t *deleted) {
    if (deleted) *deleted = 0;
    if (!s || !cursor || max_rows < 1) return opg__fail(OPG_ERR_ARG, "jobstore prune: bad argument");
    if (*cursor > (uint64_t)INT64_MAX) *cursor = 0;
    sqlite3_stmt *st = s->st[ST_PRUNE_SPAN];
    sqlite3_bind_int64(st, 1, (int64_t)*cursor);
    sqlite3_bind_int(st, 2, max_rows);
    int rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) {
        opg_status ret = db_fail(s, rc, "prune");
        sqlite3_reset(st);
        return ret;
    }
    int64_t last = sqlite3_column_int64(st, 0), n = sqlite3_column_int64(st, 1);
    sqlite3_reset(st);
    st = s->st[ST_PRUNE];
    sqlite3_bind_int64(st, 1, (int64_t)*cursor);
    sqlite3_bind_int(st, 2, max_rows);
    sqlite3_bind_int64(st, 3, before_ms);
    opg_status ret = step_done(s, st, "prune");
    if (ret != OPG_OK) return ret;
    if (deleted) *deleted = sqlite3_changes(s->db); /* jobs rows; the trigger's are not counted */
    *cursor = n < max_rows ? 0 : (uint64_t)last; /* the end: the next call starts over */
    return OPG_OK;
}

opg_status opg_jobstore_counts(opg_jobstore *s, int64_t counts[6]) {
    if (!s || !counts) return opg__fail(OPG_ERR_ARG, "jobstore counts: NULL argument");
    for (int i = 0; i < 6; i++) counts[i] = 0;
    sqlite3_stmt *st = s->st[ST_COUNTS];
    opg_status ret = OPG_OK;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        int state = sqlite3_column_int(st, 0);
        if (state >= 1 && state <= 5) counts[state] = sqlite3_column_int64(st, 1);
    }
    if (rc != SQLITE_DONE) {
        ret = db_fail(s, rc, "counts");
        for (int i = 0; i < 6; i++) counts[i] = 0;
    }
    sqlite3_reset(st);
    return ret;
}
