/* test_chat.c: the ChatML, Llama 3 and Llama 2 chat templates: exact strings
 * for a three-message conversation, detection from template text, errors,
 * and the rendered string through a tokenizer (specials as single ids). */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "chat.h"
#include "gguf.h"
#include "tokenizer.h"

static const opg_chat_msg CONV[] = {
    {"system", "You are a helpful assistant."},
    {"user", "  What is 2+2?\n"},
    {"assistant", "4"},
};

static char *apply_ok(opg_chat_format f, const opg_chat_msg *m, size_t n, int gen) {
    char *s = NULL;
    size_t len = 0;
    opg_status st = opg_chat_apply(f, m, n, gen, &s, &len);
    if (st) print_message("%s\n", opg_last_error());
    assert_int_equal(st, OPG_OK);
    assert_non_null(s);
    assert_int_equal(strlen(s), len);
    return s;
}

#define EXPECT_RENDER(f, m, n, gen, want)                                                   \
    do {                                                                                     \
        char *got_ = apply_ok(f, m, n, gen);                                                 \
        if (strcmp(got_, want) != 0) print_message("want:\n%s\ngot:\n%s\n", want, got_);     \
        assert_string_equal(got_, want);                                                     \
        free(got_);                                                                          \
    } while (0)

static void test_chatml(void **state) {
    (void)state;
    EXPECT_RENDER(OPG_CHAT_CHATML, CONV, 3, 0,
                  "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
                  "<|im_start|>user\n  What is 2+2?\n<|im_end|>\n"
                  "<|im_start|>assistant\n4<|im_end|>\n");
    EXPECT_RENDER(OPG_CHAT_CHATML, CONV, 3, 1,
                  "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
                  "<|im_start|>user\n  What is 2+2?\n<|im_end|>\n"
                  "<|im_start|>assistant\n4<|im_end|>\n"
                  "<|im_start|>assistant\n");
    EXPECT_RENDER(OPG_CHAT_CHATML, CONV + 1, 1, 1,
                  "<|im_start|>user\n  What is 2+2?\n<|im_end|>\n<|im_start|>assistant\n");
    EXPECT_RENDER(OPG_CHAT_CHATML, NULL, 0, 0, "");
}

static void test_llama3(void **state) {
    (void)state;
    EXPECT_RENDER(OPG_CHAT_LLAMA3, CONV, 3, 0,
                  "<|begin_of_text|>"
                  "<|start_header_id|>system<|end_header_id|>\n\nYou are a helpful assistant.<|eot_id|>"
                  "<|start_header_id|>user<|end_header_id|>\n\nWhat is 2+2?<|eot_id|>"
                  "<|start_header_id|>assistant<|end_header_id|>\n\n4<|eot_id|>");
    EXPECT_RENDER(OPG_CHAT_LLAMA3, CONV, 3, 1,
                  "<|begin_of_text|>"
                  "<|start_header_id|>system<|end_header_id|>\n\nYou are a helpful assistant.<|eot_id|>"
                  "<|start_header_id|>user<|end_header_id|>\n\nWhat is 2+2?<|eot_id|>"
                  "<|start_header_id|>assistant<|end_header_id|>\n\n4<|eot_id|>"
                  "<|start_header_id|>assistant<|end_header_id|>\n\n");
    EXPECT_RENDER(OPG_CHAT_LLAMA3, NULL, 0, 1, "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

static void test_llama2(void **state) {
    (void)state;
    /* Meta's template strips "<<SYS>>..." + user as one string: the user's
     * leading spaces stay, its trailing newline goes */
    const char *want = "<s>[INST] <<SYS>>\nYou are a helpful assistant.\n<</SYS>>\n\n  What is 2+2? [/INST] 4 </s>";
    EXPECT_RENDER(OPG_CHAT_LLAMA2, CONV, 3, 0, want);
    EXPECT_RENDER(OPG_CHAT_LLAMA2, CONV, 3, 1, want); /* no generation prompt in this format */
    const opg_chat_msg four[] = {CONV[0], CONV[1], CONV[2], {"user", "And 3+3? "}};
    EXPECT_RENDER(OPG_CHAT_LLAMA2, four, 4, 1,
                  "<s>[INST] <<SYS>>\nYou are a helpful assistant.\n<</SYS>>\n\n  What is 2+2? [/INST] 4 </s>"
                  "<s>[INST] And 3+3? [/INST]");
    EXPECT_RENDER(OPG_CHAT_LLAMA2, CONV + 1, 2, 1, "<s>[INST] What is 2+2? [/INST] 4 </s>");

    /* order and roles */
    char *s = (char *)1;
    const opg_chat_msg two_users[] = {{"user", "a"}, {"user", "b"}};
    assert_int_equal(opg_chat_apply(OPG_CHAT_LLAMA2, two_users, 2, 1, &s, NULL), OPG_ERR_ARG);
    assert_null(s);
    print_message("%s\n", opg_last_error());
    assert_non_null(strstr(opg_last_error(), "message 1"));
    const opg_chat_msg starts_assistant[] = {{"assistant", "a"}};
    assert_int_equal(opg_chat_apply(OPG_CHAT_LLAMA2, starts_assistant, 1, 1, &s, NULL), OPG_ERR_ARG);
    const opg_chat_msg late_system[] = {{"user", "a"}, {"system", "b"}};
    assert_int_equal(opg_chat_apply(OPG_CHAT_LLAMA2, late_system, 2, 1, &s, NULL), OPG_ERR_ARG);
    assert_int_equal(opg_chat_apply(OPG_CHAT_LLAMA2, CONV, 1, 1, &s, NULL), OPG_ERR_ARG);
}

static void test_errors_and_names(void **state) {
    (void)state;
    char *s = NULL;
    const opg_chat_msg null_content[] = {{"user", NULL}};
    assert_int_equal(opg_chat_apply(OPG_CHAT_CHATML, null_content, 1, 1, &s, NULL), OPG_ERR_ARG);
    assert_int_equal(opg_chat_apply((opg_chat_format)99, CONV, 3, 1, &s, NULL), OPG_ERR_ARG);
    assert_int_equal(opg_chat_apply(OPG_CHAT_CHATML, NULL, 2, 1, &s, NULL), OPG_ERR_ARG);
    assert_int_equal(opg_chat_apply(OPG_CHAT_CHATML, CONV, 3, 1, NULL, NULL), OPG_ERR_ARG);

    opg_chat_format f;
    const char *names[] = {"chatml", "llama3", "llama2"};
    for (int i = 0; i < 3; i++) {
        assert_int_equal(opg_chat_format_from_name(names[i], &f), OPG_OK);
        assert_int_equal(f, OPG_CHAT_CHATML + i);
        assert_string_equal(opg_chat_format_name(f), names[i]);
    }
    assert_int_equal(opg_chat_format_from_name("gemma", &f), OPG_ERR_NOT_FOUND);
    assert_string_equal(opg_chat_format_name((opg_chat_format)0), "unknown");
}

/* Excerpts of the real templates (tokenizer_config.json chat_template). */
static void test_detect(void **state) {
    (void)state;
    const char *chatml =
        "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
        "{{ '<|im_start|>system\\nYou are a helpful assistant<|im_end|>\\n' }}{% endif %}"
        "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}";
    const char *llama3 =
        "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
        "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + "
        "'<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}";
    const char *llama2 =
        "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = "
        "messages[0]['content'] %}{% endif %}{% if loop.index0 == 0 and system_message != false %}{% set content = "
        "'<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}{% endif %}"
        "{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}";
    const char *mistral = "{{ bos_token }}{% for message in messages %}{{ '[INST] ' + message['content'] + ' [/INST]' }}";
    const char *gemma = "{{ '<start_of_turn>' + role + '\\n' + message['content'] | trim + '<end_of_turn>\\n' }}";
    opg_chat_format f;
    assert_int_equal(opg_chat_format_detect(chatml, strlen(chatml), &f), OPG_OK);
    assert_int_equal(f, OPG_CHAT_CHATML);
    assert_int_equal(opg_chat_format_detect(llama3, strlen(llama3), &f), OPG_OK);
    assert_int_equal(f, OPG_CHAT_LLAMA3);
    assert_int_equal(opg_chat_format_detect(llama2, strlen(llama2), &f), OPG_OK);
    assert_int_equal(f, OPG_CHAT_LLAMA2);
    assert_int_equal(opg_chat_format_detect(mistral, strlen(mistral), &f), OPG_ERR_UNSUPPORTED);
    assert_int_equal(opg_chat_format_detect(gemma, strlen(gemma), &f), OPG_ERR_UNSUPPORTED);
    print_message("%s\n", opg_last_error());
    assert_int_equal(opg_chat_format_detect("", 0, &f), OPG_ERR_UNSUPPORTED);
    assert_int_equal(opg_chat_format_detect(NULL, 0, &f), OPG_ERR_UNSUPPORTED);
}

/* ---- through GGUF metadata and a tokenizer ------------------------------------- */

static void test_from_gguf(void **state) {
    (void)state;
    tu_gguf b;
    tu_gguf_begin(&b);
    tu_gguf_kv_str(&b, "general.architecture", "qwen2");
    tu_gguf_kv_str(&b, "tokenizer.chat_template",
              "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + "
              "'<|im_end|>' + '\\n'}}{% endfor %}");
    tu_gguf_end(&b);
    opg_gguf *g = NULL;
    opg_status st = opg_gguf_open_memory(b.p, b.n, &g);
    if (st) print_message("%s\n", opg_last_error());
    assert_int_equal(st, OPG_OK);
    opg_chat_format f = 0;
    assert_int_equal(opg_chat_format_from_gguf(g, &f), OPG_OK);
    assert_int_equal(f, OPG_CHAT_CHATML);
    opg_gguf_close(g);
    free(b.p);

    tu_gguf_begin(&b);
    tu_gguf_kv_str(&b, "general.architecture", "llama");
    tu_gguf_end(&b);
    assert_int_equal(opg_gguf_open_memory(b.p, b.n, &g), OPG_OK);
    assert_int_equal(opg_chat_format_from_gguf(g, &f), OPG_ERR_NOT_FOUND);
    opg_gguf_close(g);
    free(b.p);
}

/* ChatML through a byte-level BPE vocabulary that has the ChatML control
 * tokens: each marker is one id, <|im_end|> ends generation, and the text
 * decodes back to the rendered string. */
static void test_chatml_tokens(void **state) {
    (void)state;
    static char bytes[256][3];
    const char *toks[260];
    int32_t types[260];
    for (int c = 0, k = 0; c < 256; c++) {
        int keep = (c >= 33 && c <= 126) || (c >= 161 && c <= 172) || c >= 174;
        int cp = keep ? c : 256 + k++;
        if (cp < 0x80) bytes[c][0] = (char)cp, bytes[c][1] = 0;
        else bytes[c][0] = (char)(0xC0 | (cp >> 6)), bytes[c][1] = (char)(0x80 | (cp & 0x3F)), bytes[c][2] = 0;
    }
    for (int c = 0; c < 256; c++) toks[c] = bytes[c], types[c] = OPG_TOKEN_NORMAL;
    toks[256] = "<|im_start|>", types[256] = OPG_TOKEN_CONTROL;
    toks[257] = "<|im_end|>", types[257] = OPG_TOKEN_CONTROL;
    opg_tokenizer_params p;
    opg_tokenizer_params_init(&p);
    p.model = OPG_TOK_BPE;
    p.pre = "qwen2";
    p.n_tokens = 258;
    p.tokens = toks;
    p.types = types;
    opg_tokenizer *t;
    assert_int_equal(opg_tokenizer_new(&p, &t), OPG_OK);
    assert_true(opg_tokenizer_is_eog(t, 257));
    assert_false(opg_tokenizer_is_eog(t, 256));
    char *s = apply_ok(OPG_CHAT_CHATML, CONV, 3, 1);
    size_t n;
    int32_t ids[512];
    assert_int_equal(opg_tokenizer_encode(t, s, strlen(s), OPG_TOK_PARSE_SPECIAL, ids, 512, &n), OPG_OK);
    size_t starts = 0, ends = 0;
    for (size_t i = 0; i < n; i++) starts += ids[i] == 256, ends += ids[i] == 257;
    assert_int_equal(starts, 4);
    assert_int_equal(ends, 3);
    assert_int_equal(ids[0], 256);
    char back[1024];
    size_t len;
    assert_int_equal(opg_tokenizer_decode(t, ids, n, OPG_TOK_DECODE_SPECIAL, back, sizeof back, &len), OPG_OK);
    assert_string_equal(back, s);
    free(s);
    opg_tokenizer_free(t);
}

/* Llama 2 through the shared SentencePiece vocabulary: "<s>" and "</s>" are
 * BOS and EOS, and "[INST]" follows the special token with SentencePiece's
 * space prefix, as the reference tokenizers do ([1, 518, 25580, 29962, ...]). */
static void test_llama2_tokens(void **state) {
    (void)state;
    char path[4096];
    snprintf(path, sizeof path, "%s/testdata/tokenizer/ggml-vocab-llama-spm.gguf", tu_shared_dir());
    struct stat sb;
    if (stat(path, &sb) != 0) {
        print_message("skipped: ../shared/testdata not present (%s)\n", path);
        skip();
    }
    opg_gguf *g;
    assert_int_equal(opg_gguf_open(path, &g), OPG_OK);
    opg_chat_format f;
    assert_int_equal(opg_chat_format_from_gguf(g, &f), OPG_ERR_NOT_FOUND); /* vocab-only file: no template */
    opg_tokenizer *t;
    assert_int_equal(opg_tokenizer_from_gguf(g, &t), OPG_OK);
    opg_gguf_close(g);
    char *s = apply_ok(OPG_CHAT_LLAMA2, CONV + 1, 2, 1);
    size_t n;
    int32_t ids[256];
    assert_int_equal(opg_tokenizer_encode(t, s, strlen(s), OPG_TOK_PARSE_SPECIAL, ids, 256, &n), OPG_OK);
    const int32_t head[] = {1, 518, 25580, 29962};
    assert_true(n > 8);
    assert_memory_equal(ids, head, sizeof head);
    assert_int_equal(ids[n - 1], 2);
    free(s);
    opg_tokenizer_free(t);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chatml),        cmocka_unit_test(test_llama3),
        cmocka_unit_test(test_llama2),        cmocka_unit_test(test_errors_and_names),
        cmocka_unit_test(test_detect),        cmocka_unit_test(test_from_gguf),
        cmocka_unit_test(test_chatml_tokens), cmocka_unit_test(test_llama2_tokens),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
