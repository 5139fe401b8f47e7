/* metrics.c: Prometheus registry and its HTTP endpoint (metrics.h).
 *
 * One mutex guards the whole registry: updates are a bounds check, a few
 * additions and a binary search over at most 256 bucket bounds, so the lock
 * is held for nanoseconds; rendering (every scrape, seconds apart) formats
 * under the same lock. Series live in one array indexed by id; each family
 * chains its series (first/next) so rendering keeps registration order
 * without a scan per family. */
#include "metrics.h"

#include <errno.h>
#include <math.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_SERIES 65536
#define MAX_BOUNDS 256
#define MAX_LABELS 64

const double opg_metrics_latency_bounds[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                             0.25,   0.5,   1,      2.5,   5,    10,   30,    60};
const int opg_metrics_n_latency_bounds = (int)(sizeof opg_metrics_latency_bounds / sizeof opg_metrics_latency_bounds[0]);

typedef enum { K_COUNTER, K_GAUGE, K_HISTOGRAM } kind;
static const char *const kind_names[] = {"counter", "gauge", "histogram"};

typedef struct {
    char *name, *help;
    kind type;
    double *bounds; /* histogram: nb ascending upper bounds */
    int nb;
    int first, last; /* series chain (ids), -1 when empty */
} family;

typedef struct {
    int fam, next;      /* family index; next series of the family or -1 */
    char *labels;       /* "" when none */
    double v;           /* counter/gauge value; histogram sum */
    uint64_t count;     /* histogram observations */
    uint64_t *buckets;  /* histogram: nb + 1 (last is +Inf), not cumulative */
} series;

struct opg_metrics {
    pthread_mutex_t mu;
    family *fams;
    int nf, capf;
    series *ser;
    int ns, caps;
};

opg_status opg_metrics_new(opg_metrics **out) {
    if (!out) return opg__fail(OPG_ERR_ARG, "opg_metrics_new: out is NULL");
    *out = NULL;
    opg_metrics *m = calloc(1, sizeof *m);
    if (!m) return opg__fail(OPG_ERR_NOMEM, "metrics: out of memory");
    if (pthread_mutex_init(&m->mu, NULL) != 0) {
        free(m);
        return opg__fail(OPG_ERR_NOMEM, "metrics: cannot create mutex");
    }
    *out = m;
    return OPG_OK;
}

void opg_metrics_free(opg_metrics *m) {
    if (!m) return;
    for (int i = 0; i < m->ns; i++) {
        free(m->ser[i].labels);
        free(m->ser[i].buckets);
    }
    for (int i = 0; i < m->nf; i++) {
        free(m->fams[i].name);
        free(m->fams[i].help);
        free(m->fams[i].bounds);
    }
    free(m->ser);
    free(m->fams);
    pthread_mutex_destroy(&m->mu);
    free(m);
}

/* ---- validation ---------------------------------------------------------------- */

static int valid_name(const char *s) {
    if (!s || !*s) return 0;
    for (const char *p = s; *p; p++) {
        char c = *p;
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' ||
                 (p > s && c >= '0' && c <= '9');
        if (!ok) return 0;
    }
    return 1;
}

static int label_start(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
static int label_char(char c) { return label_start(c) || (c >= '0' && c <= '9'); }

/* Checks a label set (without braces); sets a message and returns nonzero
 * when malformed. */
static opg_status check_labels(const char *name, const char *labels, int histogram) {
    const char *spans[MAX_LABELS];
    size_t lens[MAX_LABELS];
    int n = 0;
    const char *p = labels;
    if (!*p) return OPG_OK;
    for (;;) {
        const char *start = p;
        if (!label_start(*p))
            return opg__fail(OPG_ERR_ARG, "metric %s: labels \"%s\": bad label name at offset %d", name, labels,
                             (int)(p - labels));
        while (label_char(*p)) p++;
        size_t len = (size_t)(p - start);
        if (len >= 2 && start[0] == '_' && start[1] == '_')
            return opg__fail(OPG_ERR_ARG, "metric %s: label names starting with __ are reserved", name);
        if (histogram && len == 2 && memcmp(start, "le", 2) == 0)
            return opg__fail(OPG_ERR_ARG, "metric %s: label le is reserved for histogram buckets", name);
        for (int i = 0; i < n; i++)
            if (lens[i] == len && memcmp(spans[i], start, len) == 0)
                return opg__fail(OPG_ERR_ARG, "metric %s: label %.*s given twice", name, (int)len, start);
        if (n == MAX_LABELS) return opg__fail(OPG_ERR_ARG, "metric %s: more than %d labels", name, MAX_LABELS);
        spans[n] = start;
        lens[n++] = len;
        if (p[0] != '=' || p[1] != '"')
            return opg__fail(OPG_ERR_ARG, "metric %s: labels \"%s\": expected =\" at offset %d", name, labels,
                             (int)(p - labels));
        p += 2;
        for (;;) {
            unsigned char c = (unsigned char)*p;
            if (c == '"') break;
            if (c == 0)
                return opg__fail(OPG_ERR_ARG, "metric %s: labels \"%s\": unterminated value", name, labels);
            if (c < 0x20 || c == 0x7f)
                return opg__fail(OPG_ERR_ARG, "metric %s: labels: control byte 0x%02x in a value", name, c);
            if (c == '\\') {
                if (p[1] != '\\' && p[1] != '"' && p[1] != 'n')
                    return opg__fail(OPG_ERR_ARG, "metric %s: labels \"%s\": bad escape at offset %d", name,
                                     labels, (int)(p - labels));
                p++;
            }
            p++;
        }
        p++;
        if (*p == 0) return OPG_OK;
        if (*p != ',' || !label_start(p[1]))
            return opg__fail(OPG_ERR_ARG, "metric %s: labels \"%s\": expected , and a label at offset %d", name,
                             labels, (int)(p - labels));
        p++;
    }
}

static int is_suffixed(const char *name, const char *base) {
    static const char *const suffixes[] = {"_bucket", "_sum", "_count"};
    size_t nb = strlen(base);
    if (strncmp(name, base, nb) != 0) return 0;
    for (int i = 0; i < 3; i++)
        if (strcmp(name + nb, suffixes[i]) == 0) return 1;
    return 0;
}

/* ---- registration -------------------------------------------------------------- */

static int reg(opg_metrics *m, kind type, const char *name, const char *labels, const char *help,
               const double *bounds, int nb) {
    if (!m) return opg__fail(OPG_ERR_ARG, "metrics: registry is NULL");
    if (!valid_name(name))
        return opg__fail(OPG_ERR_ARG, "metric name \"%s\" is not [a-zA-Z_:][a-zA-Z0-9_:]*", name ? name : "(null)");
    if (!labels) labels = "";
    if (!help) help = "";
    opg_status st = check_labels(name, labels, type == K_HISTOGRAM);
    if (st != OPG_OK) return st;
    if (type == K_HISTOGRAM) {
        if (nb < 0 || nb > MAX_BOUNDS || (nb > 0 && !bounds))
            return opg__fail(OPG_ERR_ARG, "histogram %s: %d bounds (want 0..%d, non-NULL)", name, nb, MAX_BOUNDS);
        for (int i = 0; i < nb; i++) {
            if (!isfinite(bounds[i]))
                return opg__fail(OPG_ERR_ARG, "histogram %s: bound %d is not finite (+Inf is implicit)", name, i);
            if (i > 0 && !(bounds[i] > bounds[i - 1]))
                return opg__fail(OPG_ERR_ARG, "histogram %s: bounds not strictly ascending at %d", name, i);
        }
    }

    pthread_mutex_lock(&m->mu);
    int id = -1;
    int fi = -1;
    for (int i = 0; i < m->nf; i++) {
        family *f = &m->fams[i];
        if (strcmp(f->name, name) == 0) {
            fi = i;
            continue;
        }
        if ((f->type == K_HISTOGRAM && is_suffixed(name, f->name)) ||
            (type == K_HISTOGRAM && is_suffixed(f->name, name))) {
            id = opg__fail(OPG_ERR_ARG, "metric %s collides with the series of histogram %s", name,
                           f->type == K_HISTOGRAM ? f->name : name);
            goto out;
        }
    }
    if (fi >= 0) {
        family *f = &m->fams[fi];
        if (f->type != type) {
            id = opg__fail(OPG_ERR_ARG, "metric %s is already registered as a %s, not a %s", name,
                           kind_names[f->type], kind_names[type]);
            goto out;
        }
        if (type == K_HISTOGRAM &&
            (f->nb != nb || (nb > 0 && memcmp(f->bounds, bounds, (size_t)nb * sizeof *bounds) != 0))) {
            id = opg__fail(OPG_ERR_ARG, "histogram %s is already registered with other bounds", name);
            goto out;
        }
        for (int s = f->first; s >= 0; s = m->ser[s].next)
            if (strcmp(m->ser[s].labels, labels) == 0) {
                id = s; /* the same series again */
                goto out;
            }
    }
    if (m->ns >= MAX_SERIES) {
        id = opg__fail(OPG_ERR_LIMIT, "metric %s: registry full (%d series)", name, MAX_SERIES);
        goto out;
    }
    /* grow both arrays first, so nothing below can fail half-way */
    if (m->ns == m->caps) {
        int cap = m->caps ? 2 * m->caps : 16;
        series *ns = realloc(m->ser, (size_t)cap * sizeof *ns);
        if (!ns) goto nomem;
        m->ser = ns;
        m->caps = cap;
    }
    if (fi < 0 && m->nf == m->capf) {
        int cap = m->capf ? 2 * m->capf : 16;
        family *nf = realloc(m->fams, (size_t)cap * sizeof *nf);
        if (!nf) goto nomem;
        m->fams = nf;
        m->capf = cap;
    }
    series s = {.fam = fi, .next = -1, .labels = strdup(labels)};
    if (!s.labels) goto nomem;
    int n_buckets = fi >= 0 ? m->fams[fi].nb : nb;
    if (type == K_HISTOGRAM) {
        s.buckets = calloc((size_t)n_buckets + 1, sizeof *s.buckets);
        if (!s.buckets) {
            free(s.labels);
            goto nomem;
        }
    }
    if (fi < 0) {
        family f = {.name = strdup(name), .help = strdup(help), .type = type, .nb = nb, .first = -1, .last = -1};
        if (type == K_HISTOGRAM && nb > 0) {
            f.bounds = malloc((size_t)nb * sizeof *bounds);
            if (f.bounds) memcpy(f.bounds, bounds, (size_t)nb * sizeof *bounds);
        }
        if (!f.name || !f.help || (type == K_HISTOGRAM && nb > 0 && !f.bounds)) {
            free(f.name);
            free(f.help);
            free(f.bounds);
            free(s.labels);
            free(s.buckets);
            goto nomem;
        }
        fi = m->nf++;
        m->fams[fi] = f;
        s.fam = fi;
    }
    id = m->ns++;
    m->ser[id] = s;
    family *f = &m->fams[fi];
    if (f->last >= 0) m->ser[f->last].next = id;
    else f->first = id;
    f->last = id;
    goto out;
nomem:
    id = opg__fail(OPG_ERR_NOMEM, "metric %s: out of memory", name);
out:
    pthread_mutex_unlock(&m->mu);
    return id;
}

int opg_metrics_counter(opg_metrics *m, const char *name, const char *labels, const char *help) {
    return reg(m, K_COUNTER, name, labels, help, NULL, 0);
}

int opg_metrics_gauge(opg_metrics *m, const char *name, const char *labels, const char *help) {
    return reg(m, K_GAUGE, name, labels, help, NULL, 0);
}

int opg_metrics_histogram(opg_metrics *m, const char *name, const char *labels, const char *help,
                          const double *bounds, int n) {
    return reg(m, K_HISTOGRAM, name, labels, help, bounds, n);
}

/* ---- updates ------------------------------------------------------------------- */

static inline kind series_kind(const opg_metrics *m, int id) { return m->fams[m->ser[id].fam].type; }

void opg_metrics_add(opg_metrics *m, int id, double v) {
    if (!m || id < 0) return;
    pthread_mutex_lock(&m->mu);
    if (id < m->ns) {
        kind k = series_kind(m, id);
        if (k == K_GAUGE || (k == K_COUNTER && v >= 0)) m->ser[id].v += v;
    }
    pthread_mutex_unlock(&m->mu);
}

void opg_metrics_set(opg_metrics *m, int id, double v) {
    if (!m || id < 0) return;
    pthread_mutex_lock(&m->mu);
    if (id < m->ns && series_kind(m, id) == K_GAUGE) m->ser[id].v = v;
    pthread_mutex_unlock(&m->mu);
}

void opg_metrics_observe(opg_metrics *m, int id, double v) {
    if (!m || id < 0 || isnan(v)) return;
    pthread_mutex_lock(&m->mu);
    if (id < m->ns && series_kind(m, id) == K_HISTOGRAM) {
        series *s = &m->ser[id];
        const family *f = &m->fams[s->fam];
        /* first bound >= v (a bucket counts v <= le) */
        int lo = 0, hi = f->nb;
        while (lo < hi) {
            int mid = (lo + hi) / 2;
            if (f->bounds[mid] < v) lo = mid + 1;
            else hi = mid;
        }
        s->buckets[lo]++;
        s->count++;
        s->v += v;
    }
    pthread_mutex_unlock(&m->mu);
}

double opg_metrics_value(opg_metrics *m, int id) {
    if (!m || id < 0) return NAN;
    double v = NAN;
    pthread_mutex_lock(&m->mu);
    if (id < m->ns) v = series_kind(m, id) == K_HISTOGRAM ? (double)m->ser[id].count : m->ser[id].v;
    pthread_mutex_unlock(&m->mu);
    return v;
}

/* ---- rendering ----------------------------------------------------------------- */

typedef struct {
    char *p;
    size_t n, cap;
    int failed;
} buf;

static void put(buf *b, const char *s, size_t n) {
    if (b->failed) return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (b->n + n + 1 > cap) cap *= 2;
        char *np = realloc(b->p, cap);
        if (!np) {
            b->failed = 1;
            return;
        }
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

static void puts_(buf *b, const char *s) { put(b, s, strlen(s)); }

/* Integers in full, else the shortest %g form that reads back to the same
 * double. */
static const char *fmt_num(char out[40], double v) {
    if (isnan(v)) return "NaN";
    if (isinf(v)) return v > 0 ? "+Inf" : "-Inf";
    if (v == floor(v) && fabs(v) < 9007199254740992.0) { /* counts: 400000, not 4e+05 */
        snprintf(out, 40, "%.0f", v);
        return out;
    }
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(out, 40, "%.*g", prec, v);
        if (strtod(out, NULL) == v) break;
    }
    return out;
}

static void put_help(buf *b, const char *help) {
    for (const char *p = help; *p; p++) {
        if (*p == '\\') puts_(b, "\\\\");
        else if (*p == '\n') puts_(b, "\\n");
        else put(b, p, 1);
    }
}

/* name{labels[,le="x"]} value\n */
static void put_sample(buf *b, const char *name, const char *suffix, const char *labels, const char *le,
                       double v) {
    char num[40];
    puts_(b, name);
    puts_(b, suffix);
    if (*labels || le) {
        puts_(b, "{");
        puts_(b, labels);
        if (le) {
            if (*labels) puts_(b, ",");
            puts_(b, "le=\"");
            puts_(b, le);
            puts_(b, "\"");
        }
        puts_(b, "}");
    }
    puts_(b, " ");
    puts_(b, fmt_num(num, v));
    puts_(b, "\n");
}

opg_status opg_metrics_render(opg_metrics *m, char **out, size_t *len) {
    if (!m || !out) return opg__fail(OPG_ERR_ARG, "opg_metrics_render: NULL argument");
    *out = NULL;
    if (len) *len = 0;
    buf b = {0};
    put(&b, "", 0); /* an empty registry renders as "" */
    pthread_mutex_lock(&m->mu);
    for (int fi = 0; fi < m->nf && !b.failed; fi++) {
        const family *f = &m->fams[fi];
        puts_(&b, "# HELP ");
        puts_(&b, f->name);
        puts_(&b, " ");
        put_help(&b, f->help);
        puts_(&b, "\n# TYPE ");
        puts_(&b, f->name);
        puts_(&b, " ");
        puts_(&b, kind_names[f->type]);
        puts_(&b, "\n");
        for (int id = f->first; id >= 0; id = m->ser[id].next) {
            const series *s = &m->ser[id];
            if (f->type != K_HISTOGRAM) {
                put_sample(&b, f->name, "", s->labels, NULL, s->v);
                continue;
            }
            uint64_t cum = 0;
            char le[40];
            for (int i = 0; i < f->nb; i++) {
                cum += s->buckets[i];
                put_sample(&b, f->name, "_bucket", s->labels, fmt_num(le, f->bounds[i]), (double)cum);
            }
            cum += s->buckets[f->nb];
            put_sample(&b, f->name, "_bucket", s->labels, "+Inf", (double)cum);
            put_sample(&b, f->name, "_sum", s->labels, NULL, s->v);
            put_sample(&b, f->name, "_count", s->labels, NULL, (double)s->count);
        }
    }
    pthread_mutex_unlock(&m->mu);
    if (b.failed) {
        free(b.p);
        return opg__fail(OPG_ERR_NOMEM, "metrics: out of memory rendering");
    }
    *out = b.p;
    if (len) *len = b.n;
    return OPG_OK;
}

/* ---- HTTP ---------------------------------------------------------------------- */

struct opg_metrics_http {
    struct MHD_Daemon *d;
    opg_metrics *m;
    int port;
};

static enum MHD_Result reply(struct MHD_Connection *c, unsigned code, const char *type, char *body, size_t n,
                             enum MHD_ResponseMemoryMode mode) {
    struct MHD_Response *r = MHD_create_response_from_buffer(n, body, mode);
    if (!r) {
        if (mode == MHD_RESPMEM_MUST_FREE) free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    if (code == MHD_HTTP_METHOD_NOT_ALLOWED) MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
    enum MHD_Result ret = MHD_queue_response(c, code, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                              const char *version, const char *upload_data, size_t *upload_data_size,
                              void **con_cls) {
    (void)version, (void)upload_data, (void)upload_data_size, (void)con_cls;
    opg_metrics_http *h = cls;
    static const char text[] = "text/plain; charset=utf-8";
    if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0) {
        static const char msg[] = "method not allowed\n";
        return reply(c, MHD_HTTP_METHOD_NOT_ALLOWED, text, (char *)msg, sizeof msg - 1, MHD_RESPMEM_PERSISTENT);
    }
    if (strcmp(url, "/metrics") == 0) {
        char *body = NULL;
        size_t n = 0;
        if (opg_metrics_render(h->m, &body, &n) != OPG_OK) {
            static const char msg[] = "cannot render metrics\n";
            return reply(c, MHD_HTTP_INTERNAL_SERVER_ERROR, text, (char *)msg, sizeof msg - 1,
                         MHD_RESPMEM_PERSISTENT);
        }
        return reply(c, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8", body, n, MHD_RESPMEM_MUST_FREE);
    }
    if (strcmp(url, "/healthz") == 0) {
        static const char ok[] = "ok";
        return reply(c, MHD_HTTP_OK, text, (char *)ok, sizeof ok - 1, MHD_RESPMEM_PERSISTENT);
    }
    static const char msg[] = "not found\n";
    return reply(c, MHD_HTTP_NOT_FOUND, text, (char *)msg, sizeof msg - 1, MHD_RESPMEM_PERSISTENT);
}

/* Splits "HOST:PORT" / "[V6]:PORT"; host "" or "*" means every IPv4
 * address. */
static opg_status split_addr(const char *addr, char *host, size_t hn, char *port, size_t pn) {
    const char *colon;
    const char *h0 = addr, *h1;
    if (addr[0] == '[') {
        const char *rb = strchr(addr, ']');
        if (!rb || rb[1] != ':') return opg__fail(OPG_ERR_ARG, "metrics address \"%s\": want [HOST]:PORT", addr);
        h0 = addr + 1;
        h1 = rb;
        colon = rb + 1;
    } else {
        colon = strrchr(addr, ':');
        if (!colon) return opg__fail(OPG_ERR_ARG, "metrics address \"%s\": want HOST:PORT", addr);
        h1 = colon;
    }
    if ((size_t)(h1 - h0) >= hn) return opg__fail(OPG_ERR_ARG, "metrics address \"%s\": host too long", addr);
    memcpy(host, h0, (size_t)(h1 - h0));
    host[h1 - h0] = 0;
    const char *p = colon + 1;
    size_t len = strlen(p);
    int v = 0;
    if (len == 0 || len > 5) return opg__fail(OPG_ERR_ARG, "metrics address \"%s\": bad port", addr);
    for (size_t i = 0; i < len; i++) {
        if (p[i] < '0' || p[i] > '9') return opg__fail(OPG_ERR_ARG, "metrics address \"%s\": bad port", addr);
        v = v * 10 + (p[i] - '0');
    }
    if (v > 65535) return opg__fail(OPG_ERR_ARG, "metrics address \"%s\": port above 65535", addr);
    snprintf(port, pn, "%d", v);
    if (strcmp(host, "*") == 0 || host[0] == 0) snprintf(host, hn, "0.0.0.0");
    return OPG_OK;
}

opg_status opg_metrics_serve(opg_metrics *m, const char *addr, opg_metrics_http **out) {
    if (!out) return opg__fail(OPG_ERR_ARG, "opg_metrics_serve: out is NULL");
    *out = NULL;
    if (!m || !addr) return opg__fail(OPG_ERR_ARG, "opg_metrics_serve: NULL argument");
    char host[256], port[16];
    opg_status st = split_addr(addr, host, sizeof host, port, sizeof port);
    if (st != OPG_OK) return st;

    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *ai = NULL;
    int gai = getaddrinfo(host, port, &hints, &ai);
    if (gai != 0) return opg__fail(OPG_ERR_ARG, "metrics address \"%s\": %s", addr, gai_strerror(gai));

    /* Bind the socket here rather than in libmicrohttpd, so a failure
     * reports its reason (address in use, permission) and port 0 works. */
    int fd = -1, af = AF_INET, err = 0;
    const char *what = "socket";
    for (struct addrinfo *a = ai; a && fd < 0; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
        if (fd < 0) {
            err = errno;
            what = "socket";
            continue;
        }
        int one = 1;
        (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, a->ai_addr, a->ai_addrlen) != 0 || listen(fd, 64) != 0) {
            err = errno;
            what = "bind/listen";
            close(fd);
            fd = -1;
            continue;
        }
        af = a->ai_family;
    }
    freeaddrinfo(ai);
    if (fd < 0) return opg__fail(OPG_ERR_IO, "metrics address \"%s\": %s: %s", addr, what, strerror(err));

    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    int bound = -1;
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0) {
        if (ss.ss_family == AF_INET) bound = ntohs(((struct sockaddr_in *)&ss)->sin_port);
        else if (ss.ss_family == AF_INET6) bound = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    }
    opg_metrics_http *h = calloc(1, sizeof *h);
    if (!h || bound < 0) {
        close(fd);
        free(h);
        return h ? opg__fail(OPG_ERR_IO, "metrics address \"%s\": getsockname: %s", addr, strerror(errno))
                 : opg__fail(OPG_ERR_NOMEM, "metrics: out of memory");
    }
    h->m = m;
    h->port = bound;
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO | (af == AF_INET6 ? MHD_USE_IPv6 : 0);
    /* Idle connections are dropped after OPG_METRICS_IDLE_S; until then a
     * full server leaves new ones in the backlog, so a health check waits.
     * One address may hold at most half the connections (more are closed
     * at once): a peer that opens many cannot shut out the others. */
    h->d = MHD_start_daemon(flags, 0, NULL, NULL, handle, h, MHD_OPTION_LISTEN_SOCKET, (MHD_socket)fd,
                            MHD_OPTION_CONNECTION_LIMIT, (unsigned)OPG_METRICS_MAX_CONN,
                            MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)(OPG_METRICS_MAX_CONN / 2),
                            MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)OPG_METRICS_IDLE_S, MHD_OPTION_END);
    if (!h->d) {
        /* Whether libmicrohttpd already closed a socket handed to a start
         * that failed is not specified; leaking one descriptor on this rare
         * path is safer than closing a number another thread may reuse. */
        free(h);
        return opg__fail(OPG_ERR_IO, "metrics address \"%s\": cannot start the HTTP server", addr);
    }
    *out = h;
    return OPG_OK;
}

int opg_metrics_http_port(const opg_metrics_http *h) { return h ? h->port : -1; }

void opg_metrics_http_stop(opg_metrics_http *h) {
    if (!h) return;
    MHD_stop_daemon(h->d); /* joins the thread and closes the listening socket */
    free(h);
}
