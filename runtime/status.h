/* status.h: return codes of the library layers and the last-error message.
 *
 * Library functions return opg_status (0 ok, negative on error) and never
 * print or exit; on error they leave a human-readable message, naming the
 * problem (file offset, key, tensor ...), in a thread-local buffer. */
#ifndef OPG_STATUS_H
#define OPG_STATUS_H

typedef enum {
    OPG_OK = 0,
    OPG_ERR_IO = -1,          /* open/read/mmap failed */
    OPG_ERR_FORMAT = -2,      /* malformed or hostile input bytes */
    OPG_ERR_NOMEM = -3,       /* allocation failed */
    OPG_ERR_ARG = -4,         /* invalid argument from the caller */
    OPG_ERR_UNSUPPORTED = -5, /* valid but not supported (type, version, architecture) */
    OPG_ERR_NOT_FOUND = -6,   /* key, tensor or object absent */
    OPG_ERR_LIMIT = -7,       /* a size or context limit exceeded */
    OPG_ERR_STATE = -8,       /* call not valid in the object's current state */
    OPG_ERR_TIMEOUT = -9,     /* a peer did not answer in time */
    OPG_ERR_DENIED = -10,     /* refused: unauthenticated peer, cancelled job, not allowed */
} opg_status;

/* Short constant description of a status ("format error", ...). */
const char *opg_strerror(int status);
/* Message of the last error on this thread ("" if none). Valid until the
 * next failing call on this thread. */
const char *opg_last_error(void);

/* For library code: records printf-style message and returns st. */
opg_status opg__fail(opg_status st, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void opg__clear_error(void);

#endif
