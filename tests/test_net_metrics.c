/* test_net_metrics.c: the Prometheus registry and endpoint (net/metrics.h):
 * the exact exposition text of a small registry, refused names, labels,
 * bounds and type clashes, the HTTP endpoint fetched with raw HTTP/1.0
 * requests, and exact totals after two threads update while a third
 * renders. */
#include "testutil.h"

#include <arpa/inet.h>
#include <math.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "metrics.h"

static opg_metrics *new_registry(void) {
    opg_metrics *m = NULL;
    assert_int_equal(opg_metrics_new(&m), OPG_OK);
    assert_non_null(m);
    return m;
}

static char *render_ok(opg_metrics *m) {
    char *out = NULL;
    size_t len = 0;
    opg_status st = opg_metrics_render(m, &out, &len);
    if (st != OPG_OK) {
        print_error("render: %s: %s\n", opg_strerror(st), opg_last_error());
        fail();
    }
    assert_non_null(out);
    assert_int_equal(len, strlen(out));
    return out;
}

#define expect_text(got, want) expect_text_(got, want, __LINE__)
static void expect_text_(const char *got, const char *want, int line) {
    if (strcmp(got, want) != 0) {
        print_error("line %d: rendered text differs\n--- got:\n%s--- want:\n%s---\n", line, got, want);
        fail();
    }
}

/* ---- exposition text ------------------------------------------------------------- */

static void test_render_exact(void **state) {
    (void)state;
    opg_metrics *m = new_registry();
    int done = opg_metrics_counter(m, "opg_jobs_total", "state=\"done\"", "Jobs by final state.");
    int failed = opg_metrics_counter(m, "opg_jobs_total", "state=\"failed\"", "ignored: the first help wins");
    int workers = opg_metrics_gauge(m, "opg_workers", NULL, "Connected workers.");
    const double bounds[] = {0.5, 1, 10};
    int lat = opg_metrics_histogram(m, "opg_latency_seconds", "op=\"gen\",model=\"a\\\"b\"", "Latency.", bounds, 3);
    int plain = opg_metrics_histogram(m, "opg_sizes", "", "Help with \\ and\nnewline.", bounds, 1);
    assert_true(done >= 0 && failed >= 0 && workers >= 0 && lat >= 0 && plain >= 0);
    assert_int_not_equal(done, failed);
    /* the same series again is the same id */
    assert_int_equal(opg_metrics_counter(m, "opg_jobs_total", "state=\"done\"", NULL), done);

    opg_metrics_add(m, done, 3);
    opg_metrics_add(m, done, 2);
    opg_metrics_add(m, done, -7); /* ignored: counters only go up */
    opg_metrics_add(m, done, NAN);
    opg_metrics_add(m, failed, 1);
    opg_metrics_set(m, done, 100); /* ignored: set is for gauges */
    opg_metrics_set(m, workers, 4);
    opg_metrics_add(m, workers, -1.5);
    opg_metrics_observe(m, lat, 0.25);
    opg_metrics_observe(m, lat, 0.5); /* le is inclusive */
    opg_metrics_observe(m, lat, 5);
    opg_metrics_observe(m, lat, 100);
    opg_metrics_observe(m, lat, NAN); /* ignored */
    opg_metrics_observe(m, workers, 1); /* wrong type: ignored */
    opg_metrics_add(m, 1000, 1);        /* unknown ids: ignored */
    opg_metrics_add(m, -3, 1);
    opg_metrics_observe(m, plain, 0.1);
    opg_metrics_observe(m, plain, 0.7);

    char *out = render_ok(m);
    expect_text(out,
                "# HELP opg_jobs_total Jobs by final state.\n"
                "# TYPE opg_jobs_total counter\n"
                "opg_jobs_total{state=\"done\"} 5\n"
                "opg_jobs_total{state=\"failed\"} 1\n"
                "# HELP opg_workers Connected workers.\n"
                "# TYPE opg_workers gauge\n"
                "opg_workers 2.5\n"
                "# HELP opg_latency_seconds Latency.\n"
                "# TYPE opg_latency_seconds histogram\n"
                "opg_latency_seconds_bucket{op=\"gen\",model=\"a\\\"b\",le=\"0.5\"} 2\n"
                "opg_latency_seconds_bucket{op=\"gen\",model=\"a\\\"b\",le=\"1\"} 2\n"
                "opg_latency_seconds_bucket{op=\"gen\",model=\"a\\\"b\",le=\"10\"} 3\n"
                "opg_latency_seconds_bucket{op=\"gen\",model=\"a\\\"b\",le=\"+Inf\"} 4\n"
                "opg_latency_seconds_sum{op=\"gen\",model=\"a\\\"b\"} 105.75\n"
                "opg_latency_seconds_count{op=\"gen\",model=\"a\\\"b\"} 4\n"
                "# HELP opg_sizes Help with \\\\ and\\nnewline.\n"
                "# TYPE opg_sizes histogram\n"
                "opg_sizes_bucket{le=\"0.5\"} 1\n"
                "opg_sizes_bucket{le=\"+Inf\"} 2\n"
                "opg_sizes_sum 0.7999999999999999\n"
                "opg_sizes_count 2\n");
    free(out);
    assert_true(opg_metrics_value(m, done) == 5);
    assert_true(opg_metrics_value(m, lat) == 4);
    assert_true(isnan(opg_metrics_value(m, 1000)));
    opg_metrics_free(m);
}

static void test_render_numbers(void **state) {
    (void)state;
    opg_metrics *m = new_registry();
    const char *want[] = {"0.1", "1e+21", "-2", "+Inf", "-Inf", "NaN", "0", "123456789012", "1.5e-07"};
    double vals[] = {0.1, 1e21, -2, INFINITY, -INFINITY, NAN, 0, 123456789012.0, 1.5e-7};
    for (int i = 0; i < 9; i++) {
        char labels[32];
        snprintf(labels, sizeof labels, "i=\"%d\"", i);
        int id = opg_metrics_gauge(m, "g", labels, NULL);
        assert_int_equal(id, i);
        opg_metrics_set(m, id, vals[i]);
    }
    char *out = render_ok(m);
    assert_non_null(strstr(out, "# HELP g \n# TYPE g gauge\n"));
    for (int i = 0; i < 9; i++) {
        char line[64];
        snprintf(line, sizeof line, "g{i=\"%d\"} %s\n", i, want[i]);
        if (!strstr(out, line)) {
            print_error("missing line %s in:\n%s", line, out);
            fail();
        }
    }
    free(out);

    /* the latency buckets, and an empty registry */
    assert_int_equal(opg_metrics_n_latency_bounds, 16);
    assert_true(opg_metrics_latency_bounds[0] == 0.0005 && opg_metrics_latency_bounds[15] == 60);
    opg_metrics *e = new_registry();
    out = render_ok(e);
    expect_text(out, "");
    free(out);
    opg_metrics_free(e);
    opg_metrics_free(m);
    opg_metrics_free(NULL);
}

/* ---- refused registrations ------------------------------------------------------- */

#define expect_refused(expr, want, needle) expect_refused_(expr, want, needle, #expr, __LINE__)
static void expect_refused_(int got, opg_status want, const char *needle, const char *what, int line) {
    const char *msg = opg_last_error();
    if (got != (int)want || !msg[0] || (needle && !strstr(msg, needle))) {
        print_error("line %d: %s: expected %s with \"%s\", got %d: \"%s\"\n", line, what, opg_strerror(want),
                    needle ? needle : "", got, msg);
        fail();
    }
}

static void test_refused(void **state) {
    (void)state;
    opg_metrics *m = new_registry();
    const double b[] = {1, 2};
    const double bad_order[] = {2, 1};
    const double bad_nan[] = {1, NAN};
    const double bad_inf[] = {1, INFINITY};

    /* names */
    expect_refused(opg_metrics_counter(m, "", NULL, NULL), OPG_ERR_ARG, "name");
    expect_refused(opg_metrics_counter(m, NULL, NULL, NULL), OPG_ERR_ARG, "name");
    expect_refused(opg_metrics_counter(m, "1abc", NULL, NULL), OPG_ERR_ARG, "1abc");
    expect_refused(opg_metrics_counter(m, "a-b", NULL, NULL), OPG_ERR_ARG, "a-b");
    expect_refused(opg_metrics_counter(m, "a b", NULL, NULL), OPG_ERR_ARG, "a b");
    expect_refused(opg_metrics_counter(m, "caf\xc3\xa9", NULL, NULL), OPG_ERR_ARG, "name");
    assert_true(opg_metrics_counter(m, "_ok:name_9", NULL, NULL) >= 0);
    assert_true(opg_metrics_counter(m, ":colon", NULL, NULL) >= 0);

    /* labels */
    const char *bad_labels[] = {
        "state=queued",        /* no quotes */
        "state=\"queued",      /* unterminated */
        "=\"x\"",              /* no name */
        "1a=\"x\"",            /* name starts with a digit */
        "a=\"1\",",            /* trailing comma */
        "a=\"1\" ,b=\"2\"",    /* space */
        "a=\"1\",a=\"2\"",     /* twice */
        "__x=\"1\"",           /* reserved */
        "a=\"\\q\"",           /* bad escape */
        "a=\"x\ny\"",          /* raw newline */
        "a=\"1\"b=\"2\"",      /* no comma */
        "a-b=\"1\"",           /* bad character */
        "{a=\"1\"}",           /* braces */
    };
    for (size_t i = 0; i < sizeof bad_labels / sizeof bad_labels[0]; i++) {
        int id = opg_metrics_gauge(m, "lbl", bad_labels[i], NULL);
        if (id != OPG_ERR_ARG || !strstr(opg_last_error(), "lbl")) {
            print_error("labels %s: got %d: \"%s\"\n", bad_labels[i], id, opg_last_error());
            fail();
        }
    }
    assert_true(opg_metrics_gauge(m, "lbl", "a=\"\",b_2=\"x\\\\y\\ny\\\"\"", NULL) >= 0);
    expect_refused(opg_metrics_histogram(m, "h", "le=\"1\"", NULL, b, 2), OPG_ERR_ARG, "le");

    /* bounds */
    expect_refused(opg_metrics_histogram(m, "h", NULL, NULL, bad_order, 2), OPG_ERR_ARG, "ascending");
    expect_refused(opg_metrics_histogram(m, "h", NULL, NULL, bad_nan, 2), OPG_ERR_ARG, "finite");
    expect_refused(opg_metrics_histogram(m, "h", NULL, NULL, bad_inf, 2), OPG_ERR_ARG, "finite");
    expect_refused(opg_metrics_histogram(m, "h", NULL, NULL, b, -1), OPG_ERR_ARG, "bounds");
    expect_refused(opg_metrics_histogram(m, "h", NULL, NULL, NULL, 2), OPG_ERR_ARG, "bounds");

    /* type clashes */
    assert_true(opg_metrics_counter(m, "x_total", "a=\"1\"", NULL) >= 0);
    expect_refused(opg_metrics_gauge(m, "x_total", "a=\"2\"", NULL), OPG_ERR_ARG, "counter");
    expect_refused(opg_metrics_histogram(m, "x_total", NULL, NULL, b, 2), OPG_ERR_ARG, "x_total");
    assert_true(opg_metrics_histogram(m, "h", NULL, NULL, b, 2) >= 0);
    expect_refused(opg_metrics_counter(m, "h", "a=\"1\"", NULL), OPG_ERR_ARG, "histogram");
    expect_refused(opg_metrics_histogram(m, "h", "a=\"1\"", NULL, b, 1), OPG_ERR_ARG, "bounds");
    expect_refused(opg_metrics_counter(m, "h_count", NULL, NULL), OPG_ERR_ARG, "collides");
    expect_refused(opg_metrics_gauge(m, "h_bucket", NULL, NULL), OPG_ERR_ARG, "collides");
    assert_true(opg_metrics_gauge(m, "g_sum", NULL, NULL) >= 0);
    expect_refused(opg_metrics_histogram(m, "g", NULL, NULL, b, 2), OPG_ERR_ARG, "collides");
    assert_true(opg_metrics_histogram(m, "h", "a=\"1\"", NULL, b, 2) >= 0);

    /* nothing refused reached the output */
    char *out = render_ok(m);
    assert_null(strstr(out, "lbl{a=\"1\"}"));
    assert_non_null(strstr(out, "\nh_count 0\n"));
    assert_non_null(strstr(out, "h_count{a=\"1\"} 0\n"));
    free(out);
    opg_metrics_free(m);
}

/* ---- HTTP ------------------------------------------------------------------------- */

/* One HTTP/1.0 exchange on 127.0.0.1:port; returns the whole response. */
static char *http_raw(int port, const char *request) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct timeval tv = {.tv_sec = 10};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    size_t n = strlen(request);
    assert_int_equal(send(fd, request, n, 0), (ssize_t)n);
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    assert_non_null(buf);
    for (;;) {
        if (len + 1 == cap) {
            cap *= 2;
            buf = realloc(buf, cap);
            assert_non_null(buf);
        }
        ssize_t k = recv(fd, buf + len, cap - len - 1, 0);
        assert_true(k >= 0); /* a timeout fails the test */
        if (k == 0) break;
        len += (size_t)k;
    }
    buf[len] = 0;
    close(fd);
    return buf;
}

static const char *body_of(const char *resp) {
    const char *p = strstr(resp, "\r\n\r\n");
    assert_non_null(p);
    return p + 4;
}

#define expect_status(resp, code) expect_status_(resp, code, __LINE__)
static void expect_status_(const char *resp, int code, int line) {
    char want[32];
    snprintf(want, sizeof want, " %d ", code);
    if (strncmp(resp, "HTTP/1.", 7) != 0 || strncmp(resp + 8, want, strlen(want)) != 0) {
        print_error("line %d: expected status %d, got:\n%.200s\n", line, code, resp);
        fail();
    }
}

static void test_http(void **state) {
    (void)state;
    opg_metrics *m = new_registry();
    int c = opg_metrics_counter(m, "opg_requests_total", "path=\"/x\"", "Requests.");
    opg_metrics_add(m, c, 42);
    opg_metrics_http *h = NULL;
    opg_status st = opg_metrics_serve(m, "127.0.0.1:0", &h);
    if (st != OPG_OK) {
        print_error("serve: %s: %s\n", opg_strerror(st), opg_last_error());
        fail();
    }
    int port = opg_metrics_http_port(h);
    assert_true(port > 0 && port < 65536);

    char *resp = http_raw(port, "GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n");
    expect_status(resp, 200);
    assert_non_null(strstr(resp, "text/plain; version=0.0.4"));
    char *want = render_ok(m);
    expect_text(body_of(resp), want);
    free(want);
    free(resp);

    resp = http_raw(port, "GET /healthz HTTP/1.0\r\n\r\n");
    expect_status(resp, 200);
    expect_text(body_of(resp), "ok");
    free(resp);

    resp = http_raw(port, "GET /nope HTTP/1.0\r\n\r\n");
    expect_status(resp, 404);
    free(resp);

    resp = http_raw(port, "POST /metrics HTTP/1.0\r\nContent-Length: 3\r\n\r\nabc");
    expect_status(resp, 405);
    assert_non_null(strstr(resp, "GET, HEAD"));
    free(resp);

    resp = http_raw(port, "HEAD /metrics HTTP/1.0\r\n\r\n");
    expect_status(resp, 200);
    expect_text(body_of(resp), "");
    free(resp);

    /* the port is taken: the reason is in the message */
    char addr[32];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
    opg_metrics_http *h2 = (opg_metrics_http *)1;
    st = opg_metrics_serve(m, addr, &h2);
    assert_int_equal(st, OPG_ERR_IO);
    assert_null(h2);
    assert_non_null(strstr(opg_last_error(), "in use"));

    opg_metrics_http_stop(h);
    opg_metrics_http_stop(NULL);

    /* malformed addresses */
    const char *bad[] = {"nope", "127.0.0.1", "127.0.0.1:", "127.0.0.1:65536", "127.0.0.1:12a", "[::1:80",
                         "[::1]80"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        st = opg_metrics_serve(m, bad[i], &h2);
        if (st != OPG_ERR_ARG || h2 != NULL || !strstr(opg_last_error(), bad[i])) {
            print_error("address %s: got %s: \"%s\"\n", bad[i], opg_strerror(st), opg_last_error());
            fail();
        }
    }
    opg_metrics_free(m);
}

/* ---- concurrency -------------------------------------------------------------------- */

#define N_UPDATES 200000

typedef struct {
    opg_metrics *m;
    int counter, gauge, hist;
    atomic_int finished;
} updater;

static void *update_loop(void *arg) {
    updater *u = arg;
    for (int i = 0; i < N_UPDATES; i++) {
        opg_metrics_add(u->m, u->counter, 1);
        opg_metrics_add(u->m, u->gauge, (i & 1) ? -1 : 1);
        opg_metrics_observe(u->m, u->hist, (i % 4) * 0.5); /* 0, 0.5, 1, 1.5 */
    }
    atomic_fetch_add(&u->finished, 1);
    return NULL;
}

/* Connections held open and idle, more than one address may keep, do not
 * keep /healthz from another address waiting for them to time out. */
static void test_idle_connections(void **state) {
    (void)state;
    opg_metrics *m = new_registry();
    opg_metrics_http *h = NULL;
    assert_int_equal(opg_metrics_serve(m, "127.0.0.1:0", &h), OPG_OK);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)opg_metrics_http_port(h))};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    enum { n_idle = OPG_METRICS_MAX_CONN + 8 };
    int idle[n_idle];
    for (int i = 0; i < n_idle; i++) {
        idle[i] = socket(AF_INET, SOCK_STREAM, 0);
        assert_true(idle[i] >= 0);
        assert_int_equal(connect(idle[i], (struct sockaddr *)&sa, sizeof sa), 0);
    }
    /* from 127.0.0.2 (loopback too), with a wait well below the idle timeout */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in src = {.sin_family = AF_INET};
    src.sin_addr.s_addr = htonl(INADDR_LOOPBACK + 1);
    assert_int_equal(bind(fd, (struct sockaddr *)&src, sizeof src), 0);
    struct timeval tv = {.tv_sec = OPG_METRICS_IDLE_S / 2};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    const char *req = "GET /healthz HTTP/1.0\r\n\r\n";
    assert_int_equal(send(fd, req, strlen(req), 0), (ssize_t)strlen(req));
    char buf[256];
    ssize_t k = recv(fd, buf, sizeof buf - 1, 0);
    if (k <= 0) {
        print_error("/healthz with %d idle connections open: no answer in %d s\n", n_idle, OPG_METRICS_IDLE_S / 2);
        fail();
    }
    buf[k] = 0;
    expect_status(buf, 200);
    close(fd);
    for (int i = 0; i < n_idle; i++) close(idle[i]);
    opg_metrics_http_stop(h);
    opg_metrics_free(m);
}

static void test_concurrent(void **state) {
    (void)state;
    opg_metrics *m = new_registry();
    updater u = {.m = m};
    atomic_init(&u.finished, 0);
    u.counter = opg_metrics_counter(m, "c_total", NULL, NULL);
    u.gauge = opg_metrics_gauge(m, "g", NULL, NULL);
    const double b[] = {0.5, 1};
    u.hist = opg_metrics_histogram(m, "h", NULL, NULL, b, 2);
    opg_metrics_http *h = NULL;
    assert_int_equal(opg_metrics_serve(m, "127.0.0.1:0", &h), OPG_OK);

    pthread_t t[2];
    for (int i = 0; i < 2; i++) assert_int_equal(pthread_create(&t[i], NULL, update_loop, &u), 0);
    /* render meanwhile (until both are done), here and over HTTP; counts
     * only grow */
    double last = 0;
    for (int i = 0; i < 20 || atomic_load(&u.finished) < 2; i++) {
        char *out = render_ok(m);
        double v = 0;
        const char *p = strstr(out, "\nc_total ");
        assert_non_null(p);
        v = strtod(p + 9, NULL);
        assert_true(v >= last);
        last = v;
        free(out);
        if (i % 5 == 0) {
            char *resp = http_raw(opg_metrics_http_port(h), "GET /metrics HTTP/1.0\r\n\r\n");
            expect_status(resp, 200);
            free(resp);
        }
    }
    for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
    opg_metrics_http_stop(h);

    char *out = render_ok(m);
    expect_text(out,
                "# HELP c_total \n# TYPE c_total counter\nc_total 400000\n"
                "# HELP g \n# TYPE g gauge\ng 0\n"
                "# HELP h \n# TYPE h histogram\n"
                "h_bucket{le=\"0.5\"} 200000\n"
                "h_bucket{le=\"1\"} 300000\n"
                "h_bucket{le=\"+Inf\"} 400000\n"
                "h_sum 300000\n"
                "h_count 400000\n");
    free(out);
    opg_metrics_free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_render_exact),
        cmocka_unit_test(test_render_numbers),
        cmocka_unit_test(test_refused),
        cmocka_unit_test(test_http),
        cmocka_unit_test(test_idle_connections),
        cmocka_unit_test(test_concurrent),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
