/* sample.c: the reference argmax, counter RNG and temperature/top-k/top-p
 * sampling of docs/determinism.md section 10 (the contract in code). */
#include "sample.h"

#include <stdint.h>

#include "opg_math.h"
#include "sample_impl.h"

/* ---- RNG --------------------------------------------------------------- */

static uint64_t rng_mix(uint64_t z) {
    z ^= z >> 30;
    z *= 0xbf58476d1ce4e5b9ull;
    z ^= z >> 27;
    z *= 0x94d049bb133111ebull;
    z ^= z >> 31;
    return z;
}

uint64_t opg_rng_u64(uint64_t seed, uint64_t counter) {
    uint64_t k = rng_mix(seed);
    return rng_mix(k + (counter + 1u) * 0x9e3779b97f4a7c15ull);
}

float opg_rng_uniform(uint64_t seed, uint64_t counter) {
    /* 24 bits convert to f32 exactly and the scaling by 2^-24 is exact. */
    return (float)(opg_rng_u64(seed, counter) >> 40) * 0x1p-24f;
}

/* ---- argmax ------------------------------------------------------------ */

int64_t opg_argmax_ref(const float *x, int64_t n) {
    int64_t best = -1;
    for (int64_t i = 0; i < n; i++) {
        if (x[i] != x[i]) continue; /* NaN never wins */
        /* strict >: a later equal value (incl. -0 vs +0) keeps the lower index */
        if (best < 0 || x[i] > x[best]) best = i;
    }
    return best < 0 ? 0 : best;
}

/* ---- order: (logit desc, id asc), NaN dropped ---------------------------- */

/* A strict total order on non-NaN ids (ids are unique), so the first k of any
 * correct selection are the same ids in the same order as a full sort's. */
static int ranks_before(const float *l, int64_t a, int64_t b) {
    return l[a] > l[b] || (l[a] == l[b] && a < b);
}

/* The heap keeps its worst id at the root, so a candidate is compared with
 * the worst kept one only: O(n log k) for top-k over a large vocabulary. */
static void heap_sift_up(const float *l, int64_t *h, int64_t i) {
    while (i > 0) {
        int64_t parent = (i - 1) / 2;
        if (!ranks_before(l, h[parent], h[i])) break;
        int64_t t = h[parent];
        h[parent] = h[i];
        h[i] = t;
        i = parent;
    }
}

static void heap_sift_down(const float *l, int64_t *h, int64_t size, int64_t i) {
    for (;;) {
        int64_t worst = i, c = 2 * i + 1;
        if (c < size && ranks_before(l, h[worst], h[c])) worst = c;
        if (c + 1 < size && ranks_before(l, h[worst], h[c + 1])) worst = c + 1;
        if (worst == i) return;
        int64_t t = h[worst];
        h[worst] = h[i];
        h[i] = t;
        i = worst;
    }
}

int64_t opg_sample_order_ref(const float *logits, int64_t n, int32_t top_k, int64_t *ids) {
    if (n <= 0) return 0;
    int64_t cap = top_k > 0 && (int64_t)top_k < n ? (int64_t)top_k : n;
    int64_t size = 0;
    for (int64_t i = 0; i < n; i++) {
        if (logits[i] != logits[i]) continue;
        if (size < cap) {
            ids[size] = i;
            heap_sift_up(logits, ids, size);
            size++;
        } else if (ranks_before(logits, i, ids[0])) {
            ids[0] = i;
            heap_sift_down(logits, ids, size, 0);
        }
    }
    /* Heapsort: the worst left goes to the end each time, so ids end up
     * best first. */
    for (int64_t end = size - 1; end > 0; end--) {
        int64_t t = ids[0];
        ids[0] = ids[end];
        ids[end] = t;
        heap_sift_down(logits, ids, end, 0);
    }
    return size;
}

/* ---- sampling ------------------------------------------------------------ */

size_t opg_sample_scratch_bytes(int64_t n) {
    if (n <= 0) return 0;
    /* ids[n] (int64) then e[n] (f32): the ids come first so both are aligned. */
    if ((uint64_t)n > SIZE_MAX / (sizeof(int64_t) + sizeof(float))) return SIZE_MAX;
    return (size_t)n * (sizeof(int64_t) + sizeof(float));
}

int64_t opg_sample_ref(const float *logits, int64_t n, const opg_sample_params *p,
                       uint64_t step, void *scratch) {
    if (n <= 0) return -1;
    int64_t first = -1;
    for (int64_t i = 0; i < n && first < 0; i++)
        if (logits[i] == logits[i]) first = i;
    if (first < 0) return -1; /* every logit NaN: no token */

    const float T = p->temperature;
    if (!(T > 0.0f) || p->top_k == 1) return opg_argmax_ref(logits, n); /* NaN T too */

    int64_t *order = (int64_t *)scratch;                       /* [n] ids, best first */
    float *e = (float *)((char *)scratch + (size_t)n * sizeof(int64_t)); /* [kept] */
    int64_t kept = opg_sample_order_ref(logits, n, p->top_k, order);

    const float z_first = logits[order[0]] / T;
    /* An infinite largest z (an inf logit, l/T overflowing, all -inf) would
     * make e_first NaN: the contract picks the top token then. */
    if (z_first - z_first != 0.0f) return order[0];
    for (int64_t j = 0; j < kept; j++) {
        float z = logits[order[j]] / T;
        e[j] = opg_expf(z - z_first);
    }
    return order[opg__sample_pick(e, kept, p->top_p, opg_rng_uniform(p->seed, step))];
}
