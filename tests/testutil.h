/* testutil.h: helpers shared by the cmocka tests: seeded data, bit-exact
 * comparison that prints both sides, ulp distance, float64 references. */
#ifndef OPG_TESTUTIL_H
#define OPG_TESTUTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

/* Deterministic generator (splitmix64), so a failure is reproducible. */
typedef struct { uint64_t s; } tu_rng;
uint64_t tu_u64(tu_rng *r);
/* Uniform in [lo, hi). */
float tu_uniform(tu_rng *r, float lo, float hi);
/* Integer in [lo, hi]. */
int tu_int(tu_rng *r, int lo, int hi);
void tu_fill(tu_rng *r, float *x, size_t n, float lo, float hi);
/* Fills with values of mixed magnitudes and signs (wide exponent range,
 * a few exact zeros and negative zeros), to exercise rounding. */
void tu_fill_wild(tu_rng *r, float *x, size_t n);

/* Keep going after a difference: while tu_keep_going is set (the GPU tests,
 * so that one run on a device shows every case that differs, not only the
 * first), tu_assert_bits, tu_assert_bytes and tu_mismatch print and count a
 * difference instead of failing at once; tu_check_mismatches, the cmocka
 * teardown of such tests, then fails the test if any was counted (and
 * resets the count). Errors after which nothing can go on (a launch that
 * fails, a device fault) still fail at once. */
extern int tu_keep_going;
/* Two switches from the environment for a test binary, to call before
 * cmocka's runner (the GPU tests: bench/gpu_check.sh reruns each test of a
 * binary that met a device fault in a process of its own, since the fault
 * ends the process's CUDA context and fails every test after it):
 * OPG_TEST_LIST=1 prints the tests' names, one a line, and returns 0 (run
 * none); OPG_TEST_ONLY=NAME sets cmocka's filter to it (* and ? are
 * wildcards) and returns -1 (run), or returns 1 after saying so when it
 * matches no test (else the binary would pass having run nothing). -1 when
 * neither is set. */
int tu_select_tests(const struct CMUnitTest *tests, size_t n);
/* A difference the caller found and printed itself: fails now, or counts it. */
void tu_mismatch(void);
int tu_check_mismatches(void **state);

/* Fails the current test when a and b differ in any bit; reports the first
 * and last differing index, both values and their bit patterns, how many
 * differ and the largest distance in ulps among them. */
#define tu_assert_bits(a, b, n, what) tu_assert_bits_(a, b, n, what, __FILE__, __LINE__)
void tu_assert_bits_(const float *a, const float *b, size_t n, const char *what,
                     const char *file, int line);
/* Same, but any NaN equals any NaN (where the contract promises only "NaN
 * in, NaN out"). */
#define tu_assert_bits_nan(a, b, n, what) tu_assert_bits_nan_(a, b, n, what, __FILE__, __LINE__)
void tu_assert_bits_nan_(const float *a, const float *b, size_t n, const char *what, const char *file, int line);
/* Same for raw bytes. */
#define tu_assert_bytes(a, b, n, what) tu_assert_bytes_(a, b, n, what, __FILE__, __LINE__)
void tu_assert_bytes_(const void *a, const void *b, size_t n, const char *what,
                      const char *file, int line);

/* Distance in units in the last place between two finite floats (0 when
 * bitwise equal or both zero). */
uint64_t tu_ulp_f32(float a, float b);
/* Distance in f32 ulps between the f32 a and the exact value ref. */
double tu_ulp_vs_f64(float a, double ref);

/* Aligned, zeroed allocation that fails the test when out of memory; free
 * with tu_free. */
void *tu_alloc(size_t bytes);
void tu_free(void *p);

/* A GGUF v3 file built in memory (tokenizer/chat tests): begin, add
 * key/values, end (patches the key count); free b.p when done. Values are
 * written little-endian as the host stores them (x86-64). */
typedef struct {
    uint8_t *p;
    size_t n, cap;
    uint64_t n_kv;
} tu_gguf;
void tu_gguf_begin(tu_gguf *b);
void tu_gguf_end(tu_gguf *b);
void tu_gguf_put(tu_gguf *b, const void *d, size_t n);
void tu_gguf_u32(tu_gguf *b, uint32_t v);
void tu_gguf_u64(tu_gguf *b, uint64_t v);
void tu_gguf_str(tu_gguf *b, const char *s);
/* Key and value type of the next pair (counts the pair). */
void tu_gguf_key(tu_gguf *b, const char *key, uint32_t type);
void tu_gguf_kv_str(tu_gguf *b, const char *key, const char *v);
void tu_gguf_kv_u32(tu_gguf *b, const char *key, uint32_t v);
void tu_gguf_kv_bool(tu_gguf *b, const char *key, int v);
void tu_gguf_kv_strs(tu_gguf *b, const char *key, const char *const *v, size_t n);
void tu_gguf_kv_i32s(tu_gguf *b, const char *key, uint32_t type, const int32_t *v, size_t n);

/* Copies the f32 GGUF model at src to a new temp file (its name into
 * path[n]; the caller removes it) with token's embedding row all +inf: a
 * sequence that feeds token gets all-NaN hidden states and logits. */
void tu_inf_embedding_model(const char *src, int token, char *path, size_t n);

/* A backend over inner (which it then owns) that forwards every call and
 * fails one on demand: tu_faulty_arm(be, n, status) makes the call n + 1
 * from then on (alloc, upload, wrap, any op; not free) return status (an
 * opg_status), once; n < 0 disarms. Another thread may arm it while the
 * backend is idle (a worker waiting for jobs), not during a call.
 * tu_faulty_calls counts the calls so far. Free it with opg_backend_free. */
typedef struct opg_backend opg_backend;
opg_backend *tu_faulty_backend(opg_backend *inner);
void tu_faulty_arm(opg_backend *be, long n, int status);
long tu_faulty_calls(opg_backend *be);
/* From now on every forward pass embedding token (-1: none) fails with
 * OPG_ERR_STATE, as a job meeting a kernel bug faults the device on any
 * worker; every forward pass first sleeps delay_us (jobs then overlap). */
void tu_faulty_poison(opg_backend *be, int token, long delay_us);

/* Directory of checked-in test data; of ../shared (may not exist). */
const char *tu_data_dir(void);
const char *tu_shared_dir(void);

#endif
