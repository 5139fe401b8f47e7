/* file.c: reading a small regular file whole (file.h). */
#include "file.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

opg_status opg_file_read(const char *path, size_t max, char **out, size_t *len, mode_t *mode) {
    *out = NULL;
    *len = 0;
    /* O_NONBLOCK: opening a FIFO for reading would wait for a writer; on a
       regular file it changes nothing */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0)
        return opg__fail(errno == ENOENT ? OPG_ERR_NOT_FOUND : OPG_ERR_IO, "%s: cannot open: %s", path,
                         strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return opg__fail(OPG_ERR_IO, "%s: not a regular file", path);
    }
    if (mode) *mode = sb.st_mode;
    if ((uint64_t)sb.st_size > max) {
        close(fd);
        return opg__fail(OPG_ERR_LIMIT, "%s: %lld bytes, at most %zu expected", path, (long long)sb.st_size, max);
    }
    size_t cap = (size_t)sb.st_size;
    char *buf = malloc(cap + 1);
    if (!buf) {
        close(fd);
        return opg__fail(OPG_ERR_NOMEM, "%s: %zu bytes", path, cap);
    }
    size_t n = 0;
    for (;;) {
        ssize_t r = read(fd, buf + n, cap + 1 - n);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            int e = errno;
            close(fd);
            sodium_memzero(buf, n);
            free(buf);
            return opg__fail(OPG_ERR_IO, "%s: cannot read: %s", path, strerror(e));
        }
        if (r == 0) break;
        n += (size_t)r;
        if (n > cap) { /* grew since fstat */
            close(fd);
            sodium_memzero(buf, n);
            free(buf);
            return opg__fail(OPG_ERR_IO, "%s: changed while being read", path);
        }
    }
    close(fd);
    buf[n] = 0;
    *out = buf;
    *len = n;
    return OPG_OK;
}
