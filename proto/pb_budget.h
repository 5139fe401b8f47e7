/* pb_budget.h: a protobuf-c allocator that charges a byte budget, for
 * decoding untrusted bytes (frame.c, receipt.c): a small hostile input cannot
 * make protobuf-c allocate without bound. Frees are not credited back, so the
 * budget bounds everything allocated while decoding one input. Blocks come
 * from malloc. */
#ifndef OPG_PB_BUDGET_H
#define OPG_PB_BUDGET_H

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>

#include "status.h"

typedef struct {
    size_t used, budget;
    int over, oom;
    ProtobufCAllocator alloc;  /* pass &b->alloc to protobuf-c; points back at b */
} opg_pb_budget;

/* Sets up b with `budget` bytes. b must not move while alloc is in use. */
void opg_pb_budget_init(opg_pb_budget *b, size_t budget);
/* Why an unpack of `what` returned NULL: OPG_ERR_LIMIT (budget spent),
 * OPG_ERR_NOMEM, else OPG_ERR_FORMAT (not a valid protobuf encoding). */
opg_status opg_pb_budget_fail(const opg_pb_budget *b, const char *what);

#endif
