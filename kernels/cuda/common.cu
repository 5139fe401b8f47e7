/* common.cu: the thread-local last-error message of the CUDA launchers and
 * the device count (declared in opg_cuda.h / common.cuh). */
#include <stdarg.h>
#include <stdio.h>

#include "common.cuh"

static thread_local char opg_cuda__msg[512];

extern "C" const char *opg_cuda_last_error(void) { return opg_cuda__msg; }

int opg_cuda__fail(int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(opg_cuda__msg, sizeof opg_cuda__msg, fmt, ap);
    va_end(ap);
    return code;
}

extern "C" int opg_cuda_device_count(void) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        (void)cudaGetLastError(); /* clear the sticky-free error state */
        return 0;
    }
    return n;
}
