/* status.c: status strings and the thread-local last-error message. */
#include "status.h"

#include <stdarg.h>
#include <stdio.h>

static _Thread_local char g_msg[512];

const char *opg_strerror(int status) {
    switch (status) {
    case OPG_OK: return "ok";
    case OPG_ERR_IO: return "i/o error";
    case OPG_ERR_FORMAT: return "format error";
    case OPG_ERR_NOMEM: return "out of memory";
    case OPG_ERR_ARG: return "invalid argument";
    case OPG_ERR_UNSUPPORTED: return "unsupported";
    case OPG_ERR_NOT_FOUND: return "not found";
    case OPG_ERR_LIMIT: return "limit exceeded";
    case OPG_ERR_STATE: return "invalid state";
    case OPG_ERR_TIMEOUT: return "timed out";
    case OPG_ERR_DENIED: return "denied";
    }
    return "unknown error";
}

const char *opg_last_error(void) { return g_msg; }

opg_status opg__fail(opg_status st, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_msg, sizeof g_msg, fmt, ap);
    va_end(ap);
    return st;
}

void opg__clear_error(void) { g_msg[0] = 0; }
