/* testutil_model.c: test helpers that use the runtime (opg_testutil only;
 * testutil.c alone is also built into tests without it). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "gguf.h"
#include "testutil.h"

void tu_inf_embedding_model(const char *src, int token, char *path, size_t n) {
    FILE *f = fopen(src, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc((size_t)size);
    assert_true(b && fread(b, 1, (size_t)size, f) == (size_t)size);
    fclose(f);
    opg_gguf *g = NULL;
    assert_int_equal(opg_gguf_open_memory(b, (size_t)size, &g), OPG_OK);
    opg_gguf_tensor t;
    assert_int_equal(opg_gguf_tensor_info(g, opg_gguf_find_tensor(g, "token_embd.weight"), &t), OPG_OK);
    assert_int_equal(t.type, OPG_F32);
    assert_true(token >= 0 && token < t.ne[1]);
    float *row = (float *)(b + opg_gguf_data_offset(g) + t.offset) + (int64_t)token * t.ne[0];
    for (int64_t i = 0; i < t.ne[0]; i++) row[i] = INFINITY;
    opg_gguf_close(g);
    snprintf(path, n, "/tmp/opg_inf_model_XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_true(write(fd, b, (size_t)size) == size);
    close(fd);
    free(b);
}
