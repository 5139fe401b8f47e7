/* lattrace.h: an optional per-hop latency trace for the dispatch path.
 *
 * Off unless OPG_LATTRACE=PREFIX is set in the environment: then each process
 * that calls opg_lt_init(who) keeps its last 4M events (job id, event, aux,
 * CLOCK_MONOTONIC ns; the same clock in every process of one machine) in
 * memory and writes them at exit to PREFIX.WHO.PID (raw opg_lt_rec records).
 * Off, an event costs one branch on a global. scripts/lattrace.py joins the
 * files by job id. A debugging aid: the files' format is not a contract. */
#ifndef OPG_LATTRACE_H
#define OPG_LATTRACE_H

#include <stdint.h>

typedef struct {
    uint64_t id;   /* job id, 0 for loop events */
    int64_t ns;    /* CLOCK_MONOTONIC */
    uint32_t ev;   /* OPG_LT_* */
    uint32_t aux;  /* per event: a count, a phase ... */
} opg_lt_rec;

enum {
    /* bench client */
    OPG_LT_B_SENT = 1, OPG_LT_B_ACK = 2, OPG_LT_B_RESULT = 3,
    /* coordinator, per job */
    OPG_LT_C_SUBMIT = 10, OPG_LT_C_ACK = 11, OPG_LT_C_JOB = 12, OPG_LT_C_RESULT = 13, OPG_LT_C_DELIVER = 14,
    OPG_LT_C_GETRESULT = 15, OPG_LT_C_LOOKUP = 16,
    /* coordinator, per loop: aux = messages handled / jobs */
    OPG_LT_C_WAKE = 20, OPG_LT_C_BATCH = 21, OPG_LT_C_COMMIT = 22, OPG_LT_C_DISPATCH = 23, OPG_LT_C_SYNCED = 24,
    /* worker */
    OPG_LT_W_JOB = 30, OPG_LT_W_DONE = 31, OPG_LT_W_SENT = 32, OPG_LT_W_STEP0 = 33, OPG_LT_W_STEP1 = 34,
};

extern int opg_lt_on;
void opg_lt_init(const char *who);
void opg_lt_add(uint64_t id, uint32_t ev, uint32_t aux);
void opg_lt_add_at(uint64_t id, uint32_t ev, uint32_t aux, int64_t ns);
void opg_lt_flush(void); /* writes the file now (also done at exit) */

#define OPG_LT(id, ev, aux)                                                                                            \
    do {                                                                                                               \
        if (opg_lt_on) opg_lt_add((id), (ev), (aux));                                                                  \
    } while (0)

#define OPG_LT_AT(id, ev, aux, ns)                                                                                     \
    do {                                                                                                               \
        if (opg_lt_on) opg_lt_add_at((id), (ev), (aux), (ns));                                                         \
    } while (0)

#endif
