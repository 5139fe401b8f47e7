/* log.h: structured log lines (logfmt: `key=value` pairs) for the daemons.
 *
 * Library code builds a line and hands it to the sink its caller installed;
 * it never prints. A line is "level=warn event=worker_lost worker=w1 jobs=3 why=\"heartbeat timeout\"":
 * event is a fixed snake_case name, the rest comes from a printf format whose
 * string values go through opg_log_q (quoted when needed). The daemons'
 * sink (opg_log_stderr_sink) prefixes an RFC 3339 UTC timestamp. */
#ifndef OPG_LOG_H
#define OPG_LOG_H

#include <stddef.h>

typedef enum { OPG_LOG_DEBUG = 0, OPG_LOG_INFO = 1, OPG_LOG_WARN = 2, OPG_LOG_ERROR = 3 } opg_log_level;

/* Receives one complete line without the trailing newline. */
typedef void (*opg_log_sink)(void *ctx, opg_log_level level, const char *line);

typedef struct {
    opg_log_sink sink;   /* NULL: logging off */
    void *ctx;
    opg_log_level min;   /* lines below this level are dropped */
} opg_log;

/* Emits "level=<level> event=<event> <kv_fmt...>" (kv_fmt may be NULL). */
void opg_log_emit(const opg_log *lg, opg_log_level level, const char *event, const char *kv_fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* s as a logfmt value: unchanged when it is a plain token, else in double
 * quotes with \" \\ \n escaped and other control bytes as \xNN. Writes into
 * buf (n bytes, truncating) and returns buf. */
const char *opg_log_q(char *buf, size_t n, const char *s);

/* For daemons: writes "ts=2026-11-25T13:30:25.123Z <line>\n" to the FILE *
 * in ctx (stderr when NULL) in one write, so threads never interleave lines. */
void opg_log_stderr_sink(void *ctx, opg_log_level level, const char *line);

/* "debug", "info", "warn", "error"; parses the same names (-1 when unknown). */
const char *opg_log_level_name(opg_log_level level);
int opg_log_level_parse(const char *name);

#endif
