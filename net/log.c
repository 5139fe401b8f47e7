/* log.c: logfmt lines (log.h). */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

static const char *const level_names[] = {"debug", "info", "warn", "error"};

const char *opg_log_level_name(opg_log_level level) {
    return (unsigned)level < 4 ? level_names[level] : "unknown";
}

int opg_log_level_parse(const char *name) {
    for (int i = 0; name && i < 4; i++)
        if (strcmp(name, level_names[i]) == 0) return i;
    return -1;
}

void opg_log_emit(const opg_log *lg, opg_log_level level, const char *event, const char *kv_fmt, ...) {
    if (!lg || !lg->sink || level < lg->min) return;
    char line[2048];
    int n = snprintf(line, sizeof line, "level=%s event=%s", opg_log_level_name(level), event);
    if (kv_fmt && n > 0 && (size_t)n < sizeof line - 1) {
        line[n++] = ' ';
        va_list ap;
        va_start(ap, kv_fmt);
        vsnprintf(line + n, sizeof line - (size_t)n, kv_fmt, ap);
        va_end(ap);
    }
    lg->sink(lg->ctx, level, line);
}

const char *opg_log_q(char *buf, size_t n, const char *s) {
    if (!n) return buf;
    if (!s) s = "";
    int plain = s[0] != 0;
    for (const unsigned char *p = (const unsigned char *)s; *p && plain; p++)
        if (*p <= ' ' || *p == '"' || *p == '=' || *p == '\\' || *p >= 0x7f) plain = 0;
    size_t o = 0;
    if (plain) {
        snprintf(buf, n, "%s", s);
        return buf;
    }
    buf[o++] = '"';
    for (const unsigned char *p = (const unsigned char *)s; *p && o + 6 < n; p++) {
        if (*p == '"' || *p == '\\') { buf[o++] = '\\'; buf[o++] = (char)*p; }
        else if (*p == '\n') { buf[o++] = '\\'; buf[o++] = 'n'; }
        else if (*p < ' ' || *p == 0x7f) o += (size_t)snprintf(buf + o, n - o, "\\x%02x", *p);
        else buf[o++] = (char)*p;
    }
    if (o + 1 < n) buf[o++] = '"';
    buf[o < n ? o : n - 1] = 0;
    return buf;
}

void opg_log_stderr_sink(void *ctx, opg_log_level level, const char *line) {
    (void)level;
    FILE *f = ctx ? (FILE *)ctx : stderr;
    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    gmtime_r(&tv.tv_sec, &tm);
    char out[2200];
    int n = snprintf(out, sizeof out, "ts=%04d-%02d-%02dT%02d:%02d:%02d.%03dZ %s\n", tm.tm_year + 1900, tm.tm_mon + 1,
                     tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(tv.tv_usec / 1000), line);
    if (n < 0) return;
    if ((size_t)n >= sizeof out) { n = (int)sizeof out - 1; out[n - 1] = '\n'; }
    fwrite(out, 1, (size_t)n, f); /* one call: stdio locks the stream per call */
    fflush(f);
}
