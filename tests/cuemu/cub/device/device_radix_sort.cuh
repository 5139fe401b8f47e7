/* cub/device/device_radix_sort.cuh of the CUDA emulation: SortPairs as a
 * stable host sort on bits [begin_bit, end_bit) of the keys, run at once
 * (one stream). It stands in for CUB, which is not emulated: sample.cu's
 * keys, layout and use of the result are what runs. */
#ifndef OPG_CUEMU_CUB_RADIX_H
#define OPG_CUEMU_CUB_RADIX_H

#include <stddef.h>

#include <algorithm>
#include <numeric>
#include <vector>

#include "cuemu.h"

namespace cub {

struct DeviceRadixSort {
    template <typename K, typename V>
    static cudaError_t SortPairs(void *temp, size_t &temp_bytes, const K *keys_in, K *keys_out,
                                 const V *vals_in, V *vals_out, int n, int begin_bit = 0,
                                 int end_bit = (int)sizeof(K) * 8, cudaStream_t s = 0) {
        (void)s;
        const size_t need = 512 + (size_t)(n > 0 ? n : 0) / 64; /* some scratch, as CUB asks */
        if (!temp) {
            temp_bytes = need;
            return cudaSuccess;
        }
        if (temp_bytes < need) return cudaErrorInvalidValue;
        if (n <= 0) return cudaSuccess;
        const void *ptrs[] = {temp, (const char *)temp + need - 1, keys_in, keys_in + n - 1,
                              keys_out, keys_out + n - 1, vals_in, vals_in + n - 1, vals_out,
                              vals_out + n - 1};
        for (const void *p : ptrs)
            if (!cuemu_device_ptr_ok(p)) cuemu::die("cub::DeviceRadixSort::SortPairs: %p is not device memory", p);
        memset(temp, 0x5a, need); /* CUB owns it during the sort */
        using U = typename std::make_unsigned<K>::type;
        const U lo_mask = begin_bit >= (int)sizeof(K) * 8 ? 0 : (U)(~(U)0 << begin_bit);
        const U hi_mask = end_bit >= (int)sizeof(K) * 8 ? (U)~(U)0 : (U)(((U)1 << end_bit) - 1);
        const U mask = lo_mask & hi_mask;
        std::vector<int> idx((size_t)n);
        std::iota(idx.begin(), idx.end(), 0);
        std::stable_sort(idx.begin(), idx.end(), [&](int a, int b) {
            return ((U)keys_in[a] & mask) < ((U)keys_in[b] & mask);
        });
        std::vector<K> k((size_t)n);
        std::vector<V> v((size_t)n);
        for (int i = 0; i < n; i++) {
            k[(size_t)i] = keys_in[idx[(size_t)i]];
            v[(size_t)i] = vals_in[idx[(size_t)i]];
        }
        std::copy(k.begin(), k.end(), keys_out);
        std::copy(v.begin(), v.end(), vals_out);
        return cudaSuccess;
    }
};

} // namespace cub

#endif
