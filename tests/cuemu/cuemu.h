/* cuemu.h: a host emulation of the CUDA device constructs opg's kernels use,
 * so the kernels/cuda/<op>.cu sources themselves (not a rewrite of them) run
 * in CI without a GPU, against the C reference. Compiled with g++ (C++17,
 * -ffp-contract=off) after tests/cuemu/CMakeLists.txt turns each
 * `k<<<grid, block, smem, stream>>>(args)` into
 * `cuemu::launcher(grid, block, smem, stream).run("k", k, args)`, adds
 * cuemu::fresh_shared after each __shared__ declaration and turns
 * __launch_bounds__(n) into a cuemu::launch_bounds(n) call in the body.
 *
 * Model (cuemu.cpp): a launch runs at once, block after block; the threads of
 * a block are fibers on one host thread, each running until it reaches a
 * barrier (__syncthreads, __syncwarp, a shuffle, a wmma call) or returns.
 * Independent thread scheduling as on sm_70+: lanes of a warp run apart
 * between warp barriers. Shared memory starts as garbage in each block.
 * OPG_CUEMU_ORDER=forward|reverse|random[:seed] picks the order the runnable
 * threads (and the blocks) take, so code that relies on an order nothing
 * enforces (a missing barrier) gives different bits under different orders.
 * Checked, and fatal with a message naming the kernel: a __syncthreads
 * reached at two different places (divergent), after or while threads of
 * the block return (undefined in CUDA), a deadlock, a warp mask other than
 * the full warp (not emulated; the kernels use none), a shuffle or wmma call
 * naming a lane that returned or reading one that did not take part, lanes
 * meeting at different warp operations, a pointer argument that is neither
 * NULL nor inside a device allocation (cuemu_device_ptr_ok, given by the
 * runtime stand-in), launch shapes over CUDA's limits or the kernel's
 * __launch_bounds__, wmma pointers or strides CUDA rejects. Code under
 * `defined(__CUDA_ARCH__) || defined(OPG_CUEMU)` takes the device's path
 * (OPG_CUEMU is defined here).
 *
 * Arithmetic is the host's IEEE binary32 with no contraction, which is what
 * the kernels ask of nvcc (-fmad=false, -prec-div=true, -prec-sqrt=true,
 * -ftz=false, explicit __fmaf_rn): the same roundings. What it cannot show:
 * nvcc's code generation, the hardware, timing, memory-model effects beyond
 * barriers, CUB's sort (a stable host sort stands in for it). */
#ifndef OPG_CUEMU_H
#define OPG_CUEMU_H

#define OPG_CUEMU 1

#include <cuda_runtime_api.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include <tuple>
#include <type_traits>
#include <utility>

/* ---- qualifiers -------------------------------------------------------------- */
#undef __global__
#undef __device__
#undef __host__
#undef __forceinline__
#undef __shared__
#undef __constant__
#undef __align__
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline __attribute__((always_inline))
#define __shared__ static
#define __constant__
#define __align__(n) __attribute__((aligned(n)))

/* ---- the runtime stand-in's side (tests/cuda_mock.c) ----------------------- */
extern "C" {
/* Whether p (non-NULL) lies inside a live device allocation (one past its end
 * included: a view may start there when empty). */
int cuemu_device_ptr_ok(const void *p);
/* The PTX version cudaFuncGetAttributes reports (OPG_CUEMU_PTX, default 90). */
int cuemu_ptx_version(void);
}

namespace cuemu {

struct idx3 {
    unsigned x, y, z;
};

/* The running thread's coordinates (set by the scheduler). */
struct thread_coords {
    idx3 thread, block, block_dim, grid_dim;
};
extern thread_local thread_coords *g_coords;

[[noreturn]] void die(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Barriers; site identifies the call (file:line) for the divergence check.
 * Warp operations take the full mask only (the kernels use no other):
 * anything else is fatal rather than emulated. */
void syncthreads(const char *site);
void syncwarp(const char *site, unsigned mask = 0xffffffffu);
/* A warp-collective operation (wmma) at file:line: every lane of the warp,
 * the same call, the same key (the operation's pointer and stride). */
void warp_collective(const char *what, const char *file, int line, uint64_t key);
/* Warp exchange: lane deposits v, waits for the lanes of mask, returns the
 * value lane src deposited. */
uint64_t exchange(unsigned mask, uint64_t v, int src, const char *site);
int lane_id();
/* __shared__ variable at p (bytes long) is declared: the first thread of a
 * block to get here fills it with garbage, as shared memory starts on a GPU
 * (CMake adds the call after each declaration). */
void fresh_shared(void *p, size_t bytes);
/* The kernel was declared __launch_bounds__(max_threads): a launch with more
 * threads per block fails on a GPU, so here it is fatal (CMake moves the
 * bound into a call at the top of the kernel's body). */
void launch_bounds(unsigned max_threads);

/* Runs body(arg) as every thread of a grid<<<grid, block>>>. */
void launch(const char *kernel, dim3 grid, dim3 block, void (*body)(void *), void *arg);

template <typename P> void check_arg(const char *kernel, int i, const P &p) {
    if constexpr (std::is_pointer<P>::value) {
        if (p && !cuemu_device_ptr_ok((const void *)p))
            die("kernel %s: argument %d (%p) is not device memory", kernel, i, (const void *)p);
        /* a T* a GPU loads from must be aligned to T (else a misaligned-address
           fault); x86 would load it anyway */
        using T = typename std::remove_cv<typename std::remove_pointer<P>::type>::type;
        if constexpr (!std::is_void<T>::value && !std::is_function<T>::value)
            if ((uintptr_t)p % alignof(T))
                die("kernel %s: argument %d (%p) is not aligned to its type (%zu bytes)", kernel, i,
                    (const void *)p, alignof(T));
    }
}

struct launcher {
    dim3 grid, block;
    launcher(dim3 g, dim3 b, size_t smem = 0, cudaStream_t s = 0) : grid(g), block(b) {
        if (smem) die("dynamic shared memory is not emulated");
        (void)s; /* one stream: launches run in program order */
    }
    /* name: the kernel as written at the launch, for messages */
    template <typename... P, typename... A>
    void run(const char *name, void (*k)(P...), A &&...a) {
        std::tuple<typename std::decay<P>::type...> args(std::forward<A>(a)...);
        int i = 0;
        std::apply([&](const auto &...p) { (check_arg(name, i++, p), ...); }, args);
        struct call {
            void (*k)(P...);
            std::tuple<typename std::decay<P>::type...> *args;
            static void body(void *c) {
                call *self = (call *)c;
                std::apply(self->k, *self->args); /* each thread: its own copies */
            }
        } c{k, &args};
        launch(name, grid, block, &call::body, &c);
    }
};

template <typename T> T shfl(unsigned mask, T v, int src, const char *site) {
    static_assert(sizeof(T) <= 8 && std::is_trivially_copyable<T>::value, "shuffle of a word");
    uint64_t u = 0;
    memcpy(&u, &v, sizeof v);
    u = exchange(mask, u, src, site);
    T r;
    memcpy(&r, &u, sizeof r);
    return r;
}

} // namespace cuemu

#define CUEMU_STR2(x) #x
#define CUEMU_STR(x) CUEMU_STR2(x)
#define CUEMU_SITE __FILE__ ":" CUEMU_STR(__LINE__)

#define threadIdx (cuemu::g_coords->thread)
#define blockIdx (cuemu::g_coords->block)
#define blockDim (cuemu::g_coords->block_dim)
#define gridDim (cuemu::g_coords->grid_dim)

#define __syncthreads() cuemu::syncthreads(CUEMU_SITE)
#define __syncwarp(...) cuemu::syncwarp(CUEMU_SITE __VA_OPT__(, ) __VA_ARGS__)
#define __shfl_sync(mask, v, src) cuemu::shfl((mask), (v), (src), CUEMU_SITE)
#define __shfl_xor_sync(mask, v, lm) \
    cuemu::shfl((mask), (v), cuemu::lane_id() ^ (lm), CUEMU_SITE)
#define __fmaf_rn(a, b, c) fmaf((a), (b), (c))
#define __trap() cuemu::die("__trap() at %s", CUEMU_SITE)

/* c + the 4 products of the signed bytes of a and b (the device's dp4a). */
static inline int __dp4a(int a, int b, int c) {
    for (int i = 0; i < 4; i++)
        c += (int)(int8_t)(uint8_t)((unsigned)a >> 8 * i) * (int)(int8_t)(uint8_t)((unsigned)b >> 8 * i);
    return c;
}

/* CUDA's integer max/min overloads of device code. */
static inline unsigned max(unsigned a, unsigned b) { return a > b ? a : b; }
static inline int max(int a, int b) { return a > b ? a : b; }
static inline unsigned min(unsigned a, unsigned b) { return a < b ? a : b; }
static inline int min(int a, int b) { return a < b ? a : b; }

/* The runtime's C++ overload (cuda_runtime.h) for a kernel's address. */
template <typename T> cudaError_t cudaFuncGetAttributes(cudaFuncAttributes *a, T *entry) {
    (void)entry;
    memset(a, 0, sizeof *a);
    a->ptxVersion = cuemu_ptx_version();
    a->binaryVersion = a->ptxVersion;
    a->maxThreadsPerBlock = 1024;
    return cudaSuccess;
}

#endif
