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

static int json_failed; /* an allocation failed since the last bench_json_finish */

static cJSON *json_put(cJSON *obj, const char *key, cJSON *item) {
    if (!obj || !item || !cJSON_AddItemToObject(obj, key, item)) {
        cJSON_Delete(item);
        json_failed = 1;
        return NULL;
    }
    return item;
}

void bench_json_add_str(cJSON *obj, const char *key, const char *s) {
    /* ASCII only: the output stays valid UTF-8 whatever bytes a message holds */
    size_t n = strlen(s ? s : "");
    char *a = malloc(n + 1);
    if (!a) {
        json_failed = 1;
        return;
    }
    for (size_t i = 0; i <= n; i++) {
        unsigned char c = i < n ? (unsigned char)s[i] : 0;
        a[i] = (char)(c >= 0x80 ? '?' : c);
    }
    json_put(obj, key, cJSON_CreateString(a));
    free(a);
}

void bench_json_add_num(cJSON *obj, const char *key, double v) {
    json_put(obj, key, v >= 0.0 && isfinite(v) ? cJSON_CreateNumber(v) : cJSON_CreateNull());
}

void bench_json_add_int(cJSON *obj, const char *key, long long v) {
    json_put(obj, key, cJSON_CreateNumber((double)v));
}

void bench_json_add_bool(cJSON *obj, const char *key, int v) {
    json_put(obj, key, cJSON_CreateBool(v != 0));
}

void bench_json_add_null(cJSON *obj, const char *key) {
    json_put(obj, key, cJSON_CreateNull());
}

cJSON *bench_json_add_obj(cJSON *obj, const char *key) {
    return json_put(obj, key, cJSON_CreateObject());
}

cJSON *bench_json_add_arr(cJSON *obj, const char *key) {
    return json_put(obj, key, cJSON_CreateArray());
}

cJSON *bench_json_push_obj(cJSON *arr) {
    cJSON *o = cJSON_CreateObject();
    if (!arr || !o || !cJSON_AddItemToArray(arr, o)) {
        cJSON_Delete(o);
        json_failed = 1;
        return NULL;
    }
    return o;
}

cJSON *bench_json_new(void) {
    cJSON *o = cJSON_CreateObject();
    if (!o) json_failed = 1;
    return o;
}

int bench_json_finish(FILE *f, cJSON *root) {
    char *text = root && !json_failed ? cJSON_Print(root) : NULL;
    cJSON_Delete(root);
    json_failed = 0;
    if (!text) {
        fputs("opg-bench: out of memory while writing the JSON\n", stderr);
        return -1;
    }
    fputs(text, f);
    fputc('\n', f);
    cJSON_free(text);
    if (fflush(f) != 0 || ferror(f)) {
        fputs("opg-bench: could not write the JSON\n", stderr);
        return -1;
    }
    return 0;
}
