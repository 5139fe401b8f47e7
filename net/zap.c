/* zap.c: the ZAP handler thread (zap.h, RFC 27).
 *
 * One REP socket at inproc://zeromq.zap.01 answers libzmq's requests; an
 * inproc PAIR tells the thread to stop, so stopping never waits on a poll
 * timeout and the handler's sockets are closed before zmq_ctx_term. The
 * allow lists sit behind a mutex: opg_zap_allow may run on any thread while
 * handshakes are being answered. */
#include "zap.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "keys.h"

#define ZAP_ENDPOINT "inproc://zeromq.zap.01"
/* A request has 6 frames + credentials (CURVE 1, PLAIN 2); more is malformed,
 * and frames past this many are received and dropped. */
#define ZAP_MAX_FRAMES 8
#define ZAP_MAX_DOMAIN 255

typedef struct {
    char name[ZAP_MAX_DOMAIN + 1];
    uint8_t (*keys)[32];
    size_t n, cap;
} zap_domain;

struct opg_zap {
    void *ctx;
    void *rep;        /* handler thread's */
    void *ctl_thread; /* handler thread's end of the stop signal */
    void *ctl_main;   /* opg_zap_stop's end */
    pthread_t thread;
    pthread_mutex_t mu; /* domains, log */
    zap_domain *domains;
    size_t n_domains, cap_domains;
    opg_log log;
    _Atomic uint64_t accepted, refused;
};

/* ---- allow lists ------------------------------------------------------------------- */
/* Under z->mu. */
static zap_domain *find_domain(opg_zap *z, const char *name, size_t len) {
    for (size_t i = 0; i < z->n_domains; i++)
        if (strlen(z->domains[i].name) == len && memcmp(z->domains[i].name, name, len) == 0) return &z->domains[i];
    return NULL;
}

static int domain_has(const zap_domain *d, const uint8_t key[32]) {
    for (size_t i = 0; i < d->n; i++)
        if (memcmp(d->keys[i], key, 32) == 0) return 1;
    return 0;
}

opg_status opg_zap_allow(opg_zap *z, const char *domain, const uint8_t curve_pk[32]) {
    if (!z || !domain || !curve_pk) return opg__fail(OPG_ERR_ARG, "opg_zap_allow: NULL argument");
    size_t dlen = strlen(domain);
    if (dlen == 0 || dlen > ZAP_MAX_DOMAIN)
        return opg__fail(OPG_ERR_ARG, "opg_zap_allow: domain must be 1..%d characters", ZAP_MAX_DOMAIN);
    opg_status st = OPG_OK;
    pthread_mutex_lock(&z->mu);
    zap_domain *d = find_domain(z, domain, dlen);
    if (!d) {
        if (z->n_domains == z->cap_domains) {
            size_t nc = z->cap_domains ? z->cap_domains * 2 : 4;
            zap_domain *g = realloc(z->domains, nc * sizeof *g);
            if (!g) {
                st = opg__fail(OPG_ERR_NOMEM, "opg_zap_allow: %zu domains", nc);
                goto out;
            }
            z->domains = g;
            z->cap_domains = nc;
        }
        d = &z->domains[z->n_domains++];
        memset(d, 0, sizeof *d);
        memcpy(d->name, domain, dlen + 1);
    }
    if (domain_has(d, curve_pk)) goto out;
    if (d->n == d->cap) {
        size_t nc = d->cap ? d->cap * 2 : 16;
        void *g = realloc(d->keys, nc * sizeof *d->keys);
        if (!g) {
            st = opg__fail(OPG_ERR_NOMEM, "opg_zap_allow: %zu keys", nc);
            goto out;
        }
        d->keys = g;
        d->cap = nc;
    }
    memcpy(d->keys[d->n++], curve_pk, 32);
out:
    pthread_mutex_unlock(&z->mu);
    return st;
}

uint64_t opg_zap_accepted(opg_zap *z) { return z ? atomic_load(&z->accepted) : 0; }
uint64_t opg_zap_refused(opg_zap *z) { return z ? atomic_load(&z->refused) : 0; }

void opg_zap_set_log(opg_zap *z, const opg_log *lg) {
    if (!z) return;
    pthread_mutex_lock(&z->mu);
    if (lg) z->log = *lg;
    else memset(&z->log, 0, sizeof z->log);
    pthread_mutex_unlock(&z->mu);
}

/* ---- one request ------------------------------------------------------------------- */
typedef struct {
    zmq_msg_t f[ZAP_MAX_FRAMES];
    int n;     /* frames kept in f */
    int total; /* frames received */
} zap_req;

static int frame_is(zmq_msg_t *m, const char *s) {
    size_t n = strlen(s);
    return zmq_msg_size(m) == n && memcmp(zmq_msg_data(m), s, n) == 0;
}

/* Frame as a NUL-terminated string for logs (truncated). */
static void frame_str(zap_req *r, int i, char *out, size_t cap) {
    out[0] = 0;
    if (i >= r->n) return;
    size_t n = zmq_msg_size(&r->f[i]);
    if (n > cap - 1) n = cap - 1;
    memcpy(out, zmq_msg_data(&r->f[i]), n);
    out[n] = 0;
    for (size_t k = 0; k < n; k++)
        if (!out[k]) out[k] = '?';
}

/* Receives every frame of one request, keeping the first ZAP_MAX_FRAMES;
 * -1 when the socket failed (ETERM). */
static int recv_req(void *rep, zap_req *r) {
    r->n = r->total = 0;
    zmq_msg_t spare;
    for (;;) {
        zmq_msg_t *m = r->n < ZAP_MAX_FRAMES ? &r->f[r->n] : &spare;
        zmq_msg_init(m);
        if (zmq_msg_recv(m, rep, 0) < 0) {
            int e = zmq_errno();
            zmq_msg_close(m);
            if (e == EINTR) continue;
            errno = e;
            return -1;
        }
        int more = zmq_msg_more(m);
        r->total++;
        if (m == &spare) zmq_msg_close(m);
        else r->n++;
        if (!more) return 0;
    }
}

static void free_req(zap_req *r) {
    for (int i = 0; i < r->n; i++) zmq_msg_close(&r->f[i]);
    r->n = 0;
}

static int send_frame(void *s, const void *p, size_t n, int more) {
    for (;;) {
        if (zmq_send(s, p, n, more ? ZMQ_SNDMORE : 0) >= 0) return 0;
        if (zmq_errno() != EINTR) return -1;
    }
}

/* The six reply frames: version, request id, status code, text, user id, metadata. */
static int send_reply(void *rep, zap_req *r, const char *code, const char *text, const char *user_id) {
    const void *rid = r->n >= 2 ? zmq_msg_data(&r->f[1]) : "";
    size_t rid_len = r->n >= 2 ? zmq_msg_size(&r->f[1]) : 0;
    if (send_frame(rep, "1.0", 3, 1) || send_frame(rep, rid, rid_len, 1) || send_frame(rep, code, 3, 1) ||
        send_frame(rep, text, strlen(text), 1) || send_frame(rep, user_id, strlen(user_id), 1) ||
        send_frame(rep, "", 0, 0))
        return -1;
    return 0;
}

/* The status code for request r ("200", "400", "500"), its text in *text,
 * and for 200 the key in Z85 in user_id. */
static const char *decide(opg_zap *z, zap_req *r, const char **text, char user_id[41]) {
    *text = "malformed ZAP request";
    if (r->total < 6 || r->total > ZAP_MAX_FRAMES || !frame_is(&r->f[0], "1.0")) return "500";
    int ncred = r->total - 6;
    zmq_msg_t *mech = &r->f[5];
    if (frame_is(mech, "NULL") || frame_is(mech, "PLAIN") || frame_is(mech, "GSSAPI")) {
        if ((frame_is(mech, "NULL") && ncred != 0) || (frame_is(mech, "PLAIN") && ncred != 2)) return "500";
        *text = "only CURVE is allowed";
        return "400";
    }
    if (!frame_is(mech, "CURVE")) {
        *text = "unknown mechanism";
        return "500";
    }
    if (ncred != 1 || zmq_msg_size(&r->f[6]) != 32) {
        *text = "CURVE credentials must be one 32-byte key";
        return "500";
    }
    const uint8_t *key = zmq_msg_data(&r->f[6]);
    const char *code = "400";
    size_t dlen = zmq_msg_size(&r->f[2]);
    pthread_mutex_lock(&z->mu);
    zap_domain *d = dlen <= ZAP_MAX_DOMAIN ? find_domain(z, zmq_msg_data(&r->f[2]), dlen) : NULL;
    if (!d) *text = "unknown domain";
    else if (!domain_has(d, key)) *text = "key not allowed";
    else {
        code = "200";
        *text = "OK";
        opg_key_public_z85(key, user_id);
    }
    pthread_mutex_unlock(&z->mu);
    return code;
}

/* Answers one request; returns -1 when the socket failed. */
static int handle(opg_zap *z, zap_req *r) {
    const char *text;
    char user_id[41] = "";
    const char *code = decide(z, r, &text, user_id);
    atomic_fetch_add(code[0] == '2' ? &z->accepted : &z->refused, 1);
    pthread_mutex_lock(&z->mu);
    opg_log lg = z->log;
    pthread_mutex_unlock(&z->mu);
    if (lg.sink) {
        char dom[64], mch[16], addr[64], qd[96], qm[32], qa[96], qt[64], kz[41] = "-";
        frame_str(r, 2, dom, sizeof dom);
        frame_str(r, 5, mch, sizeof mch);
        frame_str(r, 3, addr, sizeof addr);
        if (r->n >= 7 && zmq_msg_size(&r->f[6]) == 32) opg_key_public_z85(zmq_msg_data(&r->f[6]), kz);
        int ok = code[0] == '2';
        char qk[48];
        opg_log_emit(&lg, ok ? OPG_LOG_DEBUG : OPG_LOG_WARN, ok ? "zap_accept" : "zap_refuse",
                     "status=%s reason=%s domain=%s mechanism=%s address=%s key=%s", code,
                     opg_log_q(qt, sizeof qt, text), opg_log_q(qd, sizeof qd, dom), opg_log_q(qm, sizeof qm, mch),
                     opg_log_q(qa, sizeof qa, addr), opg_log_q(qk, sizeof qk, kz));
    }
    return send_reply(z->rep, r, code, text, user_id);
}

static void *zap_thread(void *arg) {
    opg_zap *z = arg;
    zap_req req;
    for (;;) {
        zmq_pollitem_t items[2] = {{z->rep, 0, ZMQ_POLLIN, 0}, {z->ctl_thread, 0, ZMQ_POLLIN, 0}};
        if (zmq_poll(items, 2, -1) < 0) {
            if (zmq_errno() == EINTR) continue;
            break; /* ETERM: the context is going away */
        }
        if (items[1].revents & ZMQ_POLLIN) break;
        if (!(items[0].revents & ZMQ_POLLIN)) continue;
        if (recv_req(z->rep, &req) != 0) {
            int e = zmq_errno();
            free_req(&req);
            if (e == EAGAIN) continue;
            break;
        }
        int rc = handle(z, &req);
        free_req(&req);
        if (rc != 0 && zmq_errno() == ETERM) break;
    }
    zmq_close(z->rep);
    zmq_close(z->ctl_thread);
    z->rep = z->ctl_thread = NULL;
    return NULL;
}

/* ---- lifetime ------------------------------------------------------------------------ */
static void close_sock(void **s) {
    if (*s) zmq_close(*s);
    *s = NULL;
}

static void *open_sock(void *ctx, int type) {
    void *s = zmq_socket(ctx, type);
    if (s) {
        int zero = 0;
        zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero);
    }
    return s;
}

opg_status opg_zap_start(void *zmq_ctx, opg_zap **out) {
    if (!out) return opg__fail(OPG_ERR_ARG, "opg_zap_start: NULL output");
    *out = NULL;
    if (!zmq_ctx) return opg__fail(OPG_ERR_ARG, "opg_zap_start: NULL context");
    opg_zap *z = calloc(1, sizeof *z);
    if (!z) return opg__fail(OPG_ERR_NOMEM, "opg_zap_start");
    z->ctx = zmq_ctx;
    atomic_init(&z->accepted, 0);
    atomic_init(&z->refused, 0);
    opg_status st = OPG_OK;
    if (pthread_mutex_init(&z->mu, NULL) != 0) {
        free(z);
        return opg__fail(OPG_ERR_NOMEM, "opg_zap_start: mutex");
    }
    char ctl[64];
    snprintf(ctl, sizeof ctl, "inproc://opg-zap-ctl-%p", (void *)z);
    z->rep = open_sock(zmq_ctx, ZMQ_REP);
    z->ctl_thread = open_sock(zmq_ctx, ZMQ_PAIR);
    z->ctl_main = open_sock(zmq_ctx, ZMQ_PAIR);
    if (!z->rep || !z->ctl_thread || !z->ctl_main) {
        st = opg__fail(OPG_ERR_IO, "opg_zap_start: zmq_socket: %s", zmq_strerror(zmq_errno()));
        goto fail;
    }
    if (zmq_bind(z->rep, ZAP_ENDPOINT) != 0) {
        int e = zmq_errno();
        st = opg__fail(e == EADDRINUSE ? OPG_ERR_STATE : OPG_ERR_IO, "opg_zap_start: bind " ZAP_ENDPOINT ": %s%s",
                       zmq_strerror(e), e == EADDRINUSE ? " (this context already has a ZAP handler)" : "");
        goto fail;
    }
    if (zmq_bind(z->ctl_thread, ctl) != 0 || zmq_connect(z->ctl_main, ctl) != 0) {
        st = opg__fail(OPG_ERR_IO, "opg_zap_start: %s: %s", ctl, zmq_strerror(zmq_errno()));
        goto fail;
    }
    /* The thread takes over rep and ctl_thread; pthread_create is the full
     * memory barrier libzmq asks for when a socket changes threads. */
    if (pthread_create(&z->thread, NULL, zap_thread, z) != 0) {
        st = opg__fail(OPG_ERR_NOMEM, "opg_zap_start: cannot start the thread");
        goto fail;
    }
    *out = z;
    return OPG_OK;

fail:
    close_sock(&z->rep);
    close_sock(&z->ctl_thread);
    close_sock(&z->ctl_main);
    pthread_mutex_destroy(&z->mu);
    free(z);
    return st;
}

void opg_zap_stop(opg_zap *z) {
    if (!z) return;
    /* Non-blocking: if the thread already left on ETERM the signal has no
     * reader, and the join below returns at once. */
    (void)zmq_send(z->ctl_main, "", 0, ZMQ_DONTWAIT);
    pthread_join(z->thread, NULL);
    close_sock(&z->ctl_main);
    for (size_t i = 0; i < z->n_domains; i++) free(z->domains[i].keys);
    free(z->domains);
    pthread_mutex_destroy(&z->mu);
    free(z);
}
