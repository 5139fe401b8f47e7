/* lattrace.c: the optional per-hop latency trace (lattrace.h). */
#include "lattrace.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#define LT_CAP (1u << 22)

int opg_lt_on;
static opg_lt_rec *lt_buf;
static uint64_t lt_n;
static char lt_path[600];

void opg_lt_flush(void) {
    if (!lt_buf || !lt_path[0]) return;
    FILE *f = fopen(lt_path, "wb");
    if (!f) return;
    uint64_t n = lt_n < LT_CAP ? lt_n : LT_CAP, start = lt_n < LT_CAP ? 0 : lt_n % LT_CAP;
    for (uint64_t i = 0; i < n; i++) fwrite(&lt_buf[(start + i) % LT_CAP], sizeof *lt_buf, 1, f);
    fclose(f);
    lt_path[0] = 0; /* once */
}

void opg_lt_init(const char *who) {
    const char *pre = getenv("OPG_LATTRACE");
    if (!pre || !*pre || lt_buf) return;
    lt_buf = malloc((size_t)LT_CAP * sizeof *lt_buf);
    if (!lt_buf) return;
    snprintf(lt_path, sizeof lt_path, "%s.%s.%ld", pre, who, (long)getpid());
    atexit(opg_lt_flush);
    opg_lt_on = 1;
}

void opg_lt_add_at(uint64_t id, uint32_t ev, uint32_t aux, int64_t ns) {
    opg_lt_rec *r = &lt_buf[lt_n++ % LT_CAP];
    r->id = id;
    r->ns = ns;
    r->ev = ev;
    r->aux = aux;
}

void opg_lt_add(uint64_t id, uint32_t ev, uint32_t aux) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    opg_lt_add_at(id, ev, aux, (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec);
}
