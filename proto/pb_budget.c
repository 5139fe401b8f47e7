/* pb_budget.c: the budgeted protobuf-c allocator (pb_budget.h). */
#include "pb_budget.h"

#include <stdlib.h>

static void *budget_alloc(void *ud, size_t n) {
    opg_pb_budget *b = ud;
    if (n > b->budget - b->used) {
        b->over = 1;
        return NULL;
    }
    void *p = malloc(n ? n : 1);
    if (!p) {
        b->oom = 1;
        return NULL;
    }
    b->used += n;
    return p;
}

static void budget_free(void *ud, void *p) {
    (void)ud;
    free(p);
}

void opg_pb_budget_init(opg_pb_budget *b, size_t budget) {
    b->used = 0;
    b->budget = budget;
    b->over = b->oom = 0;
    b->alloc.alloc = budget_alloc;
    b->alloc.free = budget_free;
    b->alloc.allocator_data = b;
}

opg_status opg_pb_budget_fail(const opg_pb_budget *b, const char *what) {
    if (b->over) return opg__fail(OPG_ERR_LIMIT, "%s: decoding needs more than the budget of %zu bytes", what, b->budget);
    if (b->oom) return opg__fail(OPG_ERR_NOMEM, "%s: out of memory while decoding", what);
    return opg__fail(OPG_ERR_FORMAT, "%s: not a valid protobuf encoding", what);
}
