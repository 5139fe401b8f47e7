/* default_model.h: the model an opg command uses when given no -m. */
#ifndef OPG_TOOL_DEFAULT_MODEL_H
#define OPG_TOOL_DEFAULT_MODEL_H

#include <stdlib.h>

#ifndef OPG_DEFAULT_MODEL /* CMake gives the checkout's absolute path */
#define OPG_DEFAULT_MODEL "models/SmolLM2-135M-Instruct.Q4_1.gguf"
#endif

/* $OPG_MODEL when set and not empty, else OPG_DEFAULT_MODEL (the model
 * scripts/fetch-model.sh downloads). */
static inline const char *opg_tool_default_model(void) {
    const char *e = getenv("OPG_MODEL");
    return e && *e ? e : OPG_DEFAULT_MODEL;
}

#endif
