/* test_cuemu.cu: the CUDA emulation's own behaviour (tests/cuemu), so its
 * checks cannot rot unseen: shuffles, barriers and wmma give CUDA's results;
 * shared memory starts as garbage in every block; a missing barrier makes
 * the forward and reverse orders disagree; and each fatal check (divergent
 * __syncthreads, a barrier after threads returned, a deadlock, partial warp
 * masks, a shuffle naming a returned lane, a host pointer argument, a launch
 * over CUDA's limits or a kernel's launch bounds, a misaligned wmma
 * pointer) aborts with its message
 * (run in a forked child; also a thread returning while others wait at
 * __syncthreads). Built like the kernels: launches and shared-memory declarations
 * rewritten by tests/cuemu/CMakeLists.txt. */
#include <mma.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- the runtime side: "device" memory is what dev_alloc handed out ---------- */

static char *g_dev[16];
static size_t g_dev_bytes[16];

extern "C" int cuemu_device_ptr_ok(const void *p) {
    for (int i = 0; i < 16; i++)
        if (g_dev[i] && (const char *)p >= g_dev[i] && (const char *)p <= g_dev[i] + g_dev_bytes[i])
            return 1;
    return 0;
}
extern "C" int cuemu_ptx_version(void) { return 90; }

template <typename T> static T *dev_alloc(size_t n) {
    for (int i = 0; i < 16; i++)
        if (!g_dev[i]) {
            void *p = nullptr;
            if (posix_memalign(&p, 256, n > 0 ? n * sizeof(T) : 1) != 0) abort();
            memset(p, 0, n * sizeof(T));
            g_dev[i] = (char *)p;
            g_dev_bytes[i] = n * sizeof(T);
            return (T *)p;
        }
    abort();
}
static void dev_free(void *p) {
    for (int i = 0; i < 16; i++)
        if (g_dev[i] == p) {
            free(p);
            g_dev[i] = nullptr;
        }
}

static int g_failed;
#define CHECK(cond, ...)                                                                  \
    do {                                                                                  \
        if (!(cond)) {                                                                    \
            fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__, #cond);      \
            fprintf(stderr, __VA_ARGS__);                                                 \
            fputc('\n', stderr);                                                          \
            g_failed = 1;                                                                 \
        }                                                                                 \
    } while (0)

/* ---- kernels ---------------------------------------------------------------------- */

/* out[t] = sum over the warp of t (butterfly), out[64 + t] = lane 5's value */
__global__ void k_shuffles(int *out) {
    const int t = (int)threadIdx.x;
    int s = t;
    for (int off = 16; off > 0; off >>= 1) s += __shfl_xor_sync(0xffffffffu, s, off);
    out[t] = s;
    out[64 + t] = __shfl_sync(0xffffffffu, t * 10, 5);
}

/* every thread writes s[t], then reads its neighbour's, with or without the barrier */
__global__ void k_neighbour(int *out, int with_barrier) {
    __shared__ int s[128];
    const int t = (int)threadIdx.x;
    s[t] = t + 1;
    if (with_barrier) __syncthreads();
    out[blockIdx.x * 128 + t] = s[(t + 1) % 128];
}

/* thread 0 reads a shared word nobody wrote in this block */
__global__ void k_unwritten(unsigned *out) {
    __shared__ unsigned s[64];
    if (threadIdx.x == 0) {
        out[blockIdx.x] = s[40];
        s[40] = 7; /* a later block must not see it */
    }
}

__global__ void k_divergent(int *out) {
    if (threadIdx.x < 16) {
        __syncthreads();
    } else {
        __syncthreads();
    }
    out[threadIdx.x] = 1;
}

__global__ void k_barrier_after_return(int *out) {
    if (threadIdx.x >= 40) return;
    __syncthreads();
    out[threadIdx.x] = 1;
}

/* lanes 0..15 wait for their warp, lanes 16..31 for the block */
__global__ void k_deadlock(int *out) {
    if (threadIdx.x < 16) __syncwarp();
    else __syncthreads();
    out[threadIdx.x] = 1;
}

/* warp 0 waits at the barrier while warp 1 returns */
__global__ void k_return_while_waiting(int *out) {
    if (threadIdx.x < 32) __syncthreads();
    out[threadIdx.x] = 1;
}

__global__ void k_partial_mask(int *out) {
    out[threadIdx.x] = __shfl_sync(0x0000ffffu, 1, 0);
}

__global__ void k_shuffle_returned(int *out) {
    if (threadIdx.x == 31) return;
    out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, 1, 1);
}

__global__ void k_nothing(int *out) { (void)out; }

__global__ void __launch_bounds__(64) k_bounded(int *out) { out[threadIdx.x] = 1; }

/* one warp: C = A (row-major 16x16) * B (col-major 16x16), int8 -> int32 */
__global__ void k_wmma(int *c, const signed char *a, const signed char *b, int misalign) {
    using namespace nvcuda;
    __shared__ __align__(32) signed char as[16 * 16 + 32];
    __shared__ __align__(32) signed char bs[16 * 16];
    __shared__ __align__(32) int cs[16 * 16];
    for (int i = (int)threadIdx.x; i < 256; i += 32) {
        as[i + misalign] = a[i];
        bs[i] = b[i];
    }
    __syncwarp();
    wmma::fragment<wmma::matrix_a, 16, 16, 16, signed char, wmma::row_major> fa;
    wmma::fragment<wmma::matrix_b, 16, 16, 16, signed char, wmma::col_major> fb;
    wmma::fragment<wmma::accumulator, 16, 16, 16, int> fc;
    wmma::fill_fragment(fc, 0);
    wmma::load_matrix_sync(fa, as + misalign, 16);
    wmma::load_matrix_sync(fb, bs, 16);
    wmma::mma_sync(fc, fa, fb, fc);
    wmma::store_matrix_sync(cs, fc, 16, wmma::mem_row_major);
    __syncwarp();
    for (int i = (int)threadIdx.x; i < 256; i += 32) c[i] = cs[i];
}

/* ---- a child that must die with a message ------------------------------------------ */

/* Runs fn in a child; checks it aborts and its stderr contains needle. */
static void expect_death(const char *what, void (*fn)(), const char *needle) {
    int pfd[2];
    if (pipe(pfd) != 0) abort();
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(pfd[1], 2);
        close(pfd[0]);
        fn();
        _exit(0); /* did not die */
    }
    close(pfd[1]);
    char buf[4096];
    size_t len = 0;
    ssize_t r;
    while ((r = read(pfd[0], buf + len, sizeof buf - 1 - len)) > 0) len += (size_t)r;
    buf[len] = 0;
    close(pfd[0]);
    int st = 0;
    waitpid(pid, &st, 0);
    CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT, "%s: the child did not abort (status %d)",
          what, st);
    CHECK(strstr(buf, needle) != nullptr, "%s: expected \"%s\" in: %s", what, needle, buf);
}

static void run_divergent() { k_divergent<<<1, 64>>>(dev_alloc<int>(64)); }
static void run_barrier_after_return() { k_barrier_after_return<<<1, 64>>>(dev_alloc<int>(64)); }
static void run_deadlock() { k_deadlock<<<1, 32>>>(dev_alloc<int>(32)); }
static void run_return_while_waiting() { k_return_while_waiting<<<1, 64>>>(dev_alloc<int>(64)); }
static void run_partial_mask() { k_partial_mask<<<1, 32>>>(dev_alloc<int>(32)); }
static void run_shuffle_returned() { k_shuffle_returned<<<1, 32>>>(dev_alloc<int>(32)); }
static void run_host_pointer() {
    static int host[4];
    k_nothing<<<1, 32>>>(host);
}
static void run_misaligned_pointer() { k_nothing<<<1, 32>>>((int *)((char *)dev_alloc<int>(4) + 2)); }
static void run_too_many_threads() { k_nothing<<<1, 2048>>>(dev_alloc<int>(1)); }
static void run_over_launch_bounds() { k_bounded<<<1, 96>>>(dev_alloc<int>(96)); }
static void run_wmma_misaligned() {
    k_wmma<<<1, 32>>>(dev_alloc<int>(256), dev_alloc<signed char>(256), dev_alloc<signed char>(256), 16);
}

int main() {
    const char *order = getenv("OPG_CUEMU_ORDER");
    const bool reverse = order && !strcmp(order, "reverse");

    /* shuffles */
    int *o = dev_alloc<int>(128);
    k_shuffles<<<1, 64>>>(o);
    for (int t = 0; t < 64; t++) {
        const int w = t / 32 * 32, want = 32 * w + 31 * 32 / 2; /* sum of w..w+31 */
        CHECK(o[t] == want, "butterfly sum of thread %d: %d, want %d", t, o[t], want);
        CHECK(o[64 + t] == (w + 5) * 10, "broadcast to thread %d: %d", t, o[64 + t]);
    }
    dev_free(o);

    /* a missing barrier: the neighbour's value under one order, stale under the other */
    int *nb = dev_alloc<int>(2 * 128);
    k_neighbour<<<2, 128>>>(nb, 1);
    for (int t = 0; t < 256; t++)
        CHECK(nb[t] == (t % 128 + 1) % 128 + 1, "with the barrier, thread %d read %d", t, nb[t]);
    k_neighbour<<<2, 128>>>(nb, 0);
    int stale = 0;
    for (int t = 0; t < 256; t++) stale += nb[t] != (t % 128 + 1) % 128 + 1;
    /* forward: thread t runs before t + 1 wrote (all but the last of each block are
     * stale); reverse: t + 1 ran first (only thread 127, reading s[0], is stale) */
    const bool random = order && !strncmp(order, "random", 6);
    CHECK(random ? stale > 0 && stale < 256 : stale == (reverse ? 2 : 254),
          "without the barrier, %d stale reads (order %s)", stale, order ? order : "forward");
    dev_free(nb);

    /* shared memory starts as garbage in every block */
    unsigned *uw = dev_alloc<unsigned>(3);
    k_unwritten<<<3, 32>>>(uw);
    for (int b = 0; b < 3; b++)
        CHECK(uw[b] == 0xA5A5A5A5u, "block %d read 0x%08x from unwritten shared memory", b, uw[b]);
    dev_free(uw);

    /* wmma: A * B against the plain product */
    signed char *a = dev_alloc<signed char>(256), *bm = dev_alloc<signed char>(256);
    int *c = dev_alloc<int>(256);
    for (int i = 0; i < 256; i++) {
        a[i] = (signed char)((i * 37 + 11) % 255 - 127);
        bm[i] = (signed char)((i * 91 + 3) % 255 - 127);
    }
    k_wmma<<<1, 32>>>(c, a, bm, 0);
    for (int i = 0; i < 16; i++)
        for (int j = 0; j < 16; j++) {
            int want = 0;
            for (int k = 0; k < 16; k++) want += a[i * 16 + k] * bm[j * 16 + k]; /* B col-major */
            CHECK(c[i * 16 + j] == want, "wmma C[%d][%d] = %d, want %d", i, j, c[i * 16 + j], want);
        }

    /* the fatal checks */
    expect_death("divergent __syncthreads", run_divergent, "divergent __syncthreads");
    expect_death("__syncthreads after a return", run_barrier_after_return, "returned");
    expect_death("deadlock", run_deadlock, "deadlocks");
    expect_death("return while others wait", run_return_while_waiting, "returned");
    expect_death("partial mask", run_partial_mask, "only full-warp masks");
    expect_death("shuffle naming a returned lane", run_shuffle_returned, "have returned");
    expect_death("host pointer", run_host_pointer, "is not device memory");
    expect_death("misaligned int *", run_misaligned_pointer, "is not aligned to its type (4 bytes)");
    expect_death("2048 threads", run_too_many_threads, "outside CUDA's limits");
    expect_death("over the launch bounds", run_over_launch_bounds, "96 threads per block, over its");
    int *kb = dev_alloc<int>(64);
    k_bounded<<<1, 64>>>(kb); /* at the bound: fine */
    CHECK(kb[63] == 1, "k_bounded at its bound did not run");
    dev_free(kb);
    expect_death("misaligned wmma", run_wmma_misaligned, "not 256-bit aligned");

    if (g_failed) return 1;
    printf("test_cuemu: all checks passed (order %s)\n", order ? order : "forward");
    return 0;
}
