/* cuda_runtime.h of the CUDA emulation: the runtime API's declarations (the
 * toolkit's cuda_runtime_api.h, implemented by tests/cuda_mock.c) and the
 * device constructs of cuemu.h. Found before the toolkit's own header. */
#ifndef OPG_CUEMU_CUDA_RUNTIME_H
#define OPG_CUEMU_CUDA_RUNTIME_H
#include "cuemu.h"
#endif
