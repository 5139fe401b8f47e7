/* bench_util.c: opg-bench's small helpers: clock, aligned buffers, seeded
 * data, machine facts (CPU model, last-level cache) and JSON literals. */
#include "bench.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

double bench_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void *bench_alloc(size_t bytes) {
    void *p = NULL;
    size_t n = (bytes + 63) / 64 * 64;
    if (n == 0) n = 64;
    if (posix_memalign(&p, 64, n) != 0) {
        fprintf(stderr, "opg-bench: out of memory (%zu bytes)\n", bytes);
        exit(1);
    }
    memset(p, 0, n); /* also faults the pages in before any timing */
    return p;
}

void bench_free(void *p) { free(p); }

uint64_t bench_rng_u64(bench_rng *r) { /* splitmix64 */
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

float bench_rng_uniform(bench_rng *r, float lo, float hi) {
    float u = (float)(bench_rng_u64(r) >> 40) * (1.0f / 16777216.0f); /* [0, 1) */
    return lo + (hi - lo) * u;
}

void bench_fill_f32(bench_rng *r, float *x, size_t n, float lo, float hi) {
    for (size_t i = 0; i < n; i++) x[i] = bench_rng_uniform(r, lo, hi);
}

void bench_fill_bytes(bench_rng *r, void *p, size_t n) {
    uint8_t *b = p;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t v = bench_rng_u64(r);
        memcpy(b + i, &v, 8);
    }
    if (i < n) {
        uint64_t v = bench_rng_u64(r);
        memcpy(b + i, &v, n - i);
    }
}

/* ---- machine facts ---------------------------------------------------------- */

static void read_cpu_model(char *out, size_t n) {
    snprintf(out, n, "unknown");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "model name", 10) != 0) continue;
        const char *v = strchr(line, ':');
        if (!v) break;
        v++;
        while (*v == ' ' || *v == '\t') v++;
        snprintf(out, n, "%s", v);
        out[strcspn(out, "\n")] = '\0';
        break;
    }
    fclose(f);
}

/* Size of the highest-level cache cpu0 sees, from sysfs ("32768K"). sysfs
 * first: in a VM, sysconf (CPUID) can report the host's total L3 rather than
 * the slice these cores share. */
static size_t llc_from_sysfs(void) {
    size_t best = 0;
    int best_level = 0;
    for (int i = 0; i < 8; i++) {
        char path[96], buf[64];
        int level = 0;
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/level", i);
        FILE *f = fopen(path, "r");
        if (!f) break;
        if (fscanf(f, "%d", &level) != 1) level = 0;
        fclose(f);
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/size", i);
        f = fopen(path, "r");
        if (!f) continue;
        if (fgets(buf, sizeof buf, f)) {
            char *end = NULL;
            unsigned long long v = strtoull(buf, &end, 10);
            if (end && (*end == 'K' || *end == 'k')) v <<= 10;
            else if (end && (*end == 'M' || *end == 'm')) v <<= 20;
            if (level >= best_level && v > 0) { best_level = level; best = (size_t)v; }
        }
        fclose(f);
    }
    return best;
}

static size_t llc_bytes(const char **source) {
    size_t b = llc_from_sysfs();
    if (b) { *source = "sysfs"; return b; }
#ifdef _SC_LEVEL3_CACHE_SIZE
    long v = sysconf(_SC_LEVEL3_CACHE_SIZE);
    if (v <= 0) v = sysconf(_SC_LEVEL2_CACHE_SIZE);
    if (v > 0) { *source = "sysconf"; return (size_t)v; }
#endif
    *source = "default";
    return (size_t)32 << 20;
}

void bench_machine_read(bench_machine *m) {
    memset(m, 0, sizeof *m);
    read_cpu_model(m->cpu_model, sizeof m->cpu_model);
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    m->online_cpus = n > 0 ? (int)n : 1;
    m->llc_bytes = llc_bytes(&m->llc_source);
    m->cpu_level = opg_cpu_level_name(opg_cpu_get_level());
    m->best_level = opg_cpu_level_name(opg_cpu_best_level());
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(m->date, sizeof m->date, "%Y-%m-%dT%H:%M:%SZ", &tm);
#if defined(__clang__)
    m->compiler = "clang " __clang_version__;
#elif defined(__GNUC__)
    m->compiler = "gcc " __VERSION__;
#else
    m->compiler = "unknown";
#endif
}

/* ---- JSON -------------------------------------------------------------------- */

void bench_json_str(FILE *f, const char *s) {
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
        switch (*p) {
        case '"': fputs("\\\"", f); break;
        case '\\': fputs("\\\\", f); break;
        case '\n': fputs("\\n", f); break;
        case '\r': fputs("\\r", f); break;
        case '\t': fputs("\\t", f); break;
        default:
            if (*p < 0x20) fprintf(f, "\\u%04x", *p);
            else if (*p >= 0x80) fputc('?', f); /* keep the output ASCII, valid whatever the bytes */
            else fputc(*p, f);
        }
    }
    fputc('"', f);
}

void bench_json_num(FILE *f, double v) {
    if (!(v >= 0.0) || !isfinite(v)) fputs("null", f);
    else fprintf(f, "%.10g", v);
}
