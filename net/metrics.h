/* metrics.h: a thread-safe Prometheus registry (counters, gauges, histograms)
 * and the HTTP endpoint that serves it (libmicrohttpd, its own thread).
 *
 * A daemon registers its series once at start-up and keeps the integer ids;
 * updates (opg_metrics_add/_set/_observe) take one mutex and never allocate,
 * so the main loop can call them tens of thousands of times a second while
 * the HTTP thread renders. Output is the text exposition format 0.0.4:
 *
 *   # HELP opg_jobs_finished_total Jobs finished, by final state.
 *   # TYPE opg_jobs_finished_total counter
 *   opg_jobs_finished_total{state="done"} 12
 *   opg_jobs_finished_total{state="failed"} 1
 *
 * Families (and the series inside a family) appear in registration order. */
#ifndef OPG_METRICS_H
#define OPG_METRICS_H

#include <stddef.h>

#include "status.h"

typedef struct opg_metrics opg_metrics;

/* A new empty registry; free with opg_metrics_free (NULL is a no-op), after
 * any opg_metrics_http serving it has been stopped. */
opg_status opg_metrics_new(opg_metrics **out);
void opg_metrics_free(opg_metrics *m);

/* Registers a series and returns its id (>= 0), or a negative opg_status.
 *
 * name: [a-zA-Z_:][a-zA-Z0-9_:]*. labels: NULL or "" for none, else a label
 * set in exposition syntax without the braces, `state="queued"` or
 * `worker="w1",gpu="0"`: label names [a-zA-Z_][a-zA-Z0-9_]* (not starting
 * with "__", no name twice, "le" not on a histogram), values in double
 * quotes with only \\, \" and \n as escapes and no raw newline; comma
 * separated, no spaces. help: one line (NULL: empty); backslashes and
 * newlines are escaped on output. The strings are copied.
 *
 * Several series may share a name with different labels: one HELP/TYPE
 * block per name, with the help of the first registration. Registering a
 * name with another type than before (or, for histograms, other bounds), or
 * a name that collides with a histogram's _bucket/_sum/_count series, is
 * OPG_ERR_ARG. Registering exactly the same name and labels again returns
 * the existing id (so a reconnecting peer's series can simply be
 * registered again). At most 65536 series: OPG_ERR_LIMIT beyond. */
int opg_metrics_counter(opg_metrics *m, const char *name, const char *labels, const char *help);
int opg_metrics_gauge(opg_metrics *m, const char *name, const char *labels, const char *help);
/* bounds: n (0..256) strictly ascending finite upper bounds; the +Inf bucket
 * is implicit. Copied. */
int opg_metrics_histogram(opg_metrics *m, const char *name, const char *labels, const char *help,
                          const double *bounds, int n);

/* Updates. An id that is not a series of the right type (or negative, as
 * returned by a failed registration) is ignored, as is a negative or NaN
 * add to a counter and a NaN observation: metrics must never take the
 * daemon down. */
void opg_metrics_add(opg_metrics *m, int id, double v);     /* counter (v >= 0) or gauge */
void opg_metrics_set(opg_metrics *m, int id, double v);     /* gauge */
void opg_metrics_observe(opg_metrics *m, int id, double v); /* histogram */

/* Current value of a counter or gauge, the observation count of a
 * histogram (NaN for an unknown id). For tests and for daemons that log a
 * summary. */
double opg_metrics_value(opg_metrics *m, int id);

/* The text exposition format 0.0.4 (# HELP, # TYPE, samples; histograms as
 * cumulative _bucket{le="..."} lines ending with le="+Inf", then _sum and
 * _count). Values are printed with the fewest digits that read back exactly
 * (+Inf, -Inf, NaN spelled so). *out is NUL-terminated, *len excludes the
 * NUL (len may be NULL); the caller frees *out with free(). */
opg_status opg_metrics_render(opg_metrics *m, char **out, size_t *len);

/* Buckets for latencies in seconds: 0.0005, 0.001, 0.0025, 0.005, 0.01,
 * 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60. */
extern const double opg_metrics_latency_bounds[];
extern const int opg_metrics_n_latency_bounds;

/* ---- HTTP endpoint -------------------------------------------------------- */

typedef struct opg_metrics_http opg_metrics_http;

#define OPG_METRICS_MAX_CONN 256 /* open HTTP connections; half of them per peer address */
#define OPG_METRICS_IDLE_S 10    /* an idle connection is closed after this many seconds */

/* Serves m on addr "HOST:PORT" ("127.0.0.1:9100", "[::1]:9100", "*:9100" or
 * ":9100" for every address; port 0 picks a free one) with libmicrohttpd on
 * its own internal thread:
 *   GET /metrics  200, Content-Type: text/plain; version=0.0.4; charset=utf-8
 *   GET /healthz  200, "ok"
 *   other paths 404; other methods than GET and HEAD 405 (Allow: GET, HEAD).
 * At most OPG_METRICS_MAX_CONN connections, half of them from one address.
 * m must outlive the server. Errors: OPG_ERR_ARG (addr malformed or host not
 * found), OPG_ERR_IO (socket/bind/listen failed: the message has the
 * reason), OPG_ERR_NOMEM. *out: stop with opg_metrics_http_stop. */
opg_status opg_metrics_serve(opg_metrics *m, const char *addr, opg_metrics_http **out);
/* The bound port (useful after port 0). */
int opg_metrics_http_port(const opg_metrics_http *h);
/* Stops the thread, closes the socket and frees h. NULL is a no-op. */
void opg_metrics_http_stop(opg_metrics_http *h);

#endif
