/* prompt.c: a prompt given as a file (prompt.h). */
#include "prompt.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int opg_tool_read_prompt(const char *cmd, const char *path, size_t max, char **out) {
    *out = NULL;
    int is_stdin = strcmp(path, "-") == 0;
    const char *name = is_stdin ? "standard input" : path;
    FILE *f = is_stdin ? stdin : fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "%s: cannot open the prompt file %s: %s\n", cmd, path, strerror(errno));
        return -1;
    }
    /* read at most max + 1 bytes: one more than max says it is too long */
    size_t cap = 0, n = 0;
    char *buf = NULL;
    int err = 0, nomem = 0;
    for (;;) {
        if (n == cap) {
            if (cap > max) break;
            size_t want = cap ? 2 * cap : 65536;
            if (want > max + 1) want = max + 1;
            char *b = realloc(buf, want + 1);
            if (!b) {
                nomem = 1;
                break;
            }
            buf = b;
            cap = want;
        }
        size_t k = fread(buf + n, 1, cap - n, f);
        n += k;
        if (k == 0) {
            if (ferror(f)) err = errno ? errno : EIO;
            break;
        }
    }
    if (!is_stdin) fclose(f);
    char why[96] = "";
    if (nomem) snprintf(why, sizeof why, "out of memory");
    else if (err) snprintf(why, sizeof why, "cannot read it: %s", strerror(err));
    else if (n > max) snprintf(why, sizeof why, "over %zu bytes", max);
    else if (n == 0) snprintf(why, sizeof why, "empty");
    else if (memchr(buf, 0, n)) snprintf(why, sizeof why, "it holds a NUL byte (a prompt is text)");
    if (why[0]) {
        fprintf(stderr, "%s: prompt file %s: %s\n", cmd, name, why);
        free(buf);
        return -1;
    }
    buf[n] = 0;
    *out = buf;
    return 0;
}
