/* mma.h of the CUDA emulation: the nvcuda::wmma calls quant.cu makes, for
 * 16x16x16 tiles. A fragment holds the whole tile in each lane (the real
 * per-lane layout is unspecified and the kernels never touch it). Loads,
 * mma and stores are warp-collective (every lane, the same call site, the
 * same pointer and stride); a lane owns
 * the accumulator elements e with e % 32 == lane: mma computes and a store
 * writes only those, so a lane that reads the stored tile
 * before the warp synchronizes sees stale data, as it may on a GPU. Pointers
 * must be 256-bit aligned and ldm a multiple of 16 bytes, as CUDA requires. */
#ifndef OPG_CUEMU_MMA_H
#define OPG_CUEMU_MMA_H

#include <stdint.h>

#include "cuemu.h"

namespace nvcuda {
namespace wmma {

struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };

template <typename Use, int M, int N, int K> struct shape_of;
template <int M, int N, int K> struct shape_of<matrix_a, M, N, K> { enum { R = M, C = K }; };
template <int M, int N, int K> struct shape_of<matrix_b, M, N, K> { enum { R = K, C = N }; };
template <int M, int N, int K> struct shape_of<accumulator, M, N, K> { enum { R = M, C = N }; };

template <typename Use, int M, int N, int K, typename T, typename Layout = void>
struct fragment {
    enum { R = shape_of<Use, M, N, K>::R, C = shape_of<Use, M, N, K>::C };
    static_assert(M == 16 && N == 16 && K == 16, "only m16n16k16 is emulated");
    T v[R][C];
};

namespace detail {
template <typename T> void check_mem(const void *p, unsigned ldm, const char *what) {
    if ((uintptr_t)p % 32 != 0)
        cuemu::die("wmma::%s: pointer %p is not 256-bit aligned", what, p);
    if ((ldm * sizeof(T)) % 16 != 0)
        cuemu::die("wmma::%s: ldm %u is not a multiple of 16 bytes", what, ldm);
}
} // namespace detail

template <typename Use, int M, int N, int K, typename T, typename L>
void fill_fragment(fragment<Use, M, N, K, T, L> &f, T v) {
    for (auto &row : f.v)
        for (auto &e : row) e = v;
}

/* Element (r, c) of a matrix_a / matrix_b tile stored in layout L. */
template <typename Use, int M, int N, int K, typename T, typename L>
void load_matrix_sync(fragment<Use, M, N, K, T, L> &f, const T *p, unsigned ldm,
                      const char *file = __builtin_FILE(), int line = __builtin_LINE()) {
    cuemu::warp_collective("wmma::load_matrix_sync", file, line,
                           (uint64_t)(uintptr_t)p * 31 + ldm);
    detail::check_mem<T>(p, ldm, "load_matrix_sync");
    for (int r = 0; r < f.R; r++)
        for (int c = 0; c < f.C; c++)
            f.v[r][c] = std::is_same<L, row_major>::value ? p[(size_t)r * ldm + c]
                                                          : p[(size_t)c * ldm + r];
}

/* Each lane computes the accumulator elements it owns (e % 32 == lane, the
 * ones its store writes); the others are left as they were. */
template <int M, int N, int K, typename Ta, typename La, typename Tb, typename Lb>
void mma_sync(fragment<accumulator, M, N, K, int> &d, const fragment<matrix_a, M, N, K, Ta, La> &a,
              const fragment<matrix_b, M, N, K, Tb, Lb> &b,
              const fragment<accumulator, M, N, K, int> &c, const char *file = __builtin_FILE(),
              int line = __builtin_LINE()) {
    cuemu::warp_collective("wmma::mma_sync", file, line, 0);
    for (int e = cuemu::lane_id(); e < M * N; e += 32) {
        const int i = e / N, j = e % N;
        uint32_t s = (uint32_t)c.v[i][j]; /* wraps as the hardware's int32 adds */
        for (int k = 0; k < K; k++) s += (uint32_t)((int)a.v[i][k] * (int)b.v[k][j]);
        d.v[i][j] = (int)s;
    }
}

template <int M, int N, int K, typename T>
void store_matrix_sync(T *p, const fragment<accumulator, M, N, K, T> &f, unsigned ldm,
                       layout_t layout, const char *file = __builtin_FILE(),
                       int line = __builtin_LINE()) {
    cuemu::warp_collective("wmma::store_matrix_sync", file, line,
                           ((uint64_t)(uintptr_t)p * 31 + ldm) * 2 + (uint64_t)layout);
    detail::check_mem<T>(p, ldm, "store_matrix_sync");
    const int lane = cuemu::lane_id();
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++)
            if ((i * N + j) % 32 == lane)
                (layout == mem_row_major ? p[(size_t)i * ldm + j] : p[(size_t)j * ldm + i]) =
                    f.v[i][j];
}

} // namespace wmma
} // namespace nvcuda

#endif
