/* file.h: reading a small file (key, allow list, config, job record) whole.
 *
 * Only a regular file is read: a FIFO, device or directory given by mistake
 * (or by someone else) is refused at once, never waited on. */
#ifndef OPG_NET_FILE_H
#define OPG_NET_FILE_H

#include <stddef.h>
#include <sys/types.h>

#include "status.h"

/* The regular file at path, at most max bytes, into a new buffer (*out,
 * NUL-terminated, the caller frees it; the buffer is wiped before it is
 * freed on every error, as it may hold a secret); *len its length, *mode
 * (when not NULL) its mode bits. Errors (the message names path):
 * OPG_ERR_NOT_FOUND no such file; OPG_ERR_IO cannot open or read it, not a
 * regular file, or it changed while being read; OPG_ERR_LIMIT larger than
 * max; OPG_ERR_NOMEM. */
opg_status opg_file_read(const char *path, size_t max, char **out, size_t *len, mode_t *mode);

#endif
