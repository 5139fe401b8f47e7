/* backend_select.c: a backend by name ("auto", "cpu", "cuda", "cuda:N"), with
 * auto's fallback to the cpu backend when no usable GPU is present. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"

/* "cuda" -> 0, "cuda:N" -> N; -1 when name is not of that form. */
static int cuda_device_of(const char *name) {
    if (strncmp(name, "cuda", 4) != 0) return -1;
    if (name[4] == 0) return 0;
    if (name[4] != ':' || name[5] < '0' || name[5] > '9') return -1;
    char *end;
    errno = 0;
    long d = strtol(name + 5, &end, 10);
    if (errno || *end || d > 1024) return -1;
    return (int)d;
}

int opg_backend_name_ok(const char *name) {
    return !name || strcmp(name, "auto") == 0 || strcmp(name, "cpu") == 0 || cuda_device_of(name) >= 0;
}

opg_status opg_backend_new_auto(const char *name, int n_threads, opg_backend **out,
                                const char **notice) {
    static _Thread_local char msg[600];
    *out = NULL;
    if (notice) *notice = NULL;
    if (!name || strcmp(name, "auto") == 0) {
        if (opg_backend_cuda_new(0, out) == OPG_OK) return OPG_OK;
        snprintf(msg, sizeof msg, "no usable GPU, running on the cpu backend (%s)",
                 opg_last_error());
        opg_status st = opg_backend_cpu_new(n_threads, out);
        if (st) return st;
        opg__clear_error();
        if (notice) *notice = msg;
        return OPG_OK;
    }
    if (strcmp(name, "cpu") == 0) return opg_backend_cpu_new(n_threads, out);
    int dev = cuda_device_of(name);
    if (dev >= 0) return opg_backend_cuda_new(dev, out);
    return opg__fail(OPG_ERR_ARG, "backend '%.64s' is not one of auto, cpu, cuda, cuda:N", name);
}

const char *opg_backend_device(opg_backend *be) {
    const char *d = be && be->ops->device ? be->ops->device(be) : NULL;
    return d ? d : "";
}
