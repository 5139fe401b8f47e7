/* common.cuh: helpers shared by every kernels/cuda/<op>.cu: the OPG_CUDA_CHECK
 * macro (records the failing statement, file and line into a thread-local
 * message read back by opg_cuda_last_error()), the argument-error helper and
 * a few index helpers. Device code only sees plain integer/float arithmetic;
 * the math shared with the C reference lives in opg_math.h (OPG_HD). */
#ifndef OPG_CUDA_COMMON_CUH
#define OPG_CUDA_COMMON_CUH

#include <cuda_runtime.h>
#include <stdint.h>

#include "dtype.h"
#include "rope.h"
#include "opg_cuda.h"

/* Records a message (printf format) for opg_cuda_last_error() on this thread
 * and returns code, so launchers can write `return opg_cuda__fail(...)`. */
extern "C" int opg_cuda__fail(int code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* Runs a CUDA runtime call (or checks the launch just made when given
 * cudaGetLastError()); on error records "<statement> failed at file:line:
 * <cuda error string>" and returns OPG_CUDA_ERR_LAUNCH from the enclosing
 * int function. */
#define OPG_CUDA_CHECK(call)                                                              \
    do {                                                                                  \
        cudaError_t opg_cuda__e = (call);                                                 \
        if (opg_cuda__e != cudaSuccess)                                                   \
            return opg_cuda__fail(OPG_CUDA_ERR_LAUNCH, "%s failed at %s:%d: %s", #call,   \
                                  __FILE__, __LINE__, cudaGetErrorString(opg_cuda__e));  \
    } while (0)

/* Same for a kernel launch just made: OPG_CUDA_CHECK_LAUNCH(). */
#define OPG_CUDA_CHECK_LAUNCH() OPG_CUDA_CHECK(cudaGetLastError())

/* Ceil division of non-negative integers. */
static inline int64_t opg_cuda__cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

#endif
