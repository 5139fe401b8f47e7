/* test_net_jobrecord.c: job records (net/jobrecord.h): format, parse and
 * save round trip; every broken record refused with the key named; a save
 * never overwrites. (tests/cli_verify.sh drives them through opg submit
 * --save and opg verify with the real daemons.) */
#include "testutil.h"

#include <cjson/cJSON.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "jobrecord.h"

#define T(x) OPG__V1__MESSAGE_TYPE__MESSAGE_TYPE_##x

static uint8_t g_model[32], g_root[32];
static uint32_t g_prompt[3] = {5, 6, 7}, g_out[2] = {9, 10};

/* A request and a result (receipt bytes need not verify here: that is
 * opg verify's part). */
typedef struct {
    Opg__V1__SubmitJob sj;
    Opg__V1__TokenList tl;
    Opg__V1__Result res;
    Opg__V1__Usage u;
} sample;

static void make(sample *s, uint64_t id) {
    opg__v1__submit_job__init(&s->sj);
    opg__v1__token_list__init(&s->tl);
    opg__v1__result__init(&s->res);
    opg__v1__usage__init(&s->u);
    memset(g_model, 0xab, 32);
    memset(g_root, 0xcd, 32);
    s->tl.n_ids = 3;
    s->tl.ids = g_prompt;
    s->sj.model_id = (ProtobufCBinaryData){32, g_model};
    s->sj.prompt_case = OPG__V1__SUBMIT_JOB__PROMPT_TOKENS;
    s->sj.tokens = &s->tl;
    s->sj.max_tokens = 2;
    s->sj.contract_version = 1;
    s->u.prompt_tokens = 3;
    s->u.completion_tokens = 2;
    s->res.job_id = id;
    s->res.n_output_tokens = 2;
    s->res.output_tokens = g_out;
    s->res.usage = &s->u;
    s->res.trace_root = (ProtobufCBinaryData){32, g_root};
    s->res.stop_reason = OPG__V1__STOP_REASON__STOP_REASON_MAX_TOKENS;
    s->res.receipt = (ProtobufCBinaryData){3, (uint8_t *)"rcp"};
}

static void test_round_trip(void **state) {
    (void)state;
    sample s;
    make(&s, 17);
    char *text = NULL;
    assert_int_equal(opg_jobrecord_format("tcp://127.0.0.1:5556", &s.sj, &s.res, &text), OPG_OK);
    opg_jobrecord *r = NULL;
    assert_int_equal(opg_jobrecord_parse(text, strlen(text), &r), OPG_OK);
    assert_int_equal(r->job_id, 17);
    assert_string_equal(r->coordinator, "tcp://127.0.0.1:5556");
    const Opg__V1__SubmitJob *sj = (const Opg__V1__SubmitJob *)r->request->msg;
    const Opg__V1__Result *res = (const Opg__V1__Result *)r->result->msg;
    assert_int_equal(sj->tokens->n_ids, 3);
    assert_memory_equal(sj->tokens->ids, g_prompt, sizeof g_prompt);
    assert_memory_equal(res->output_tokens, g_out, sizeof g_out);
    assert_memory_equal(res->trace_root.data, g_root, 32);
    assert_int_equal(res->receipt.len, 3);
    opg_jobrecord_free(r);
    /* without the NUL: a buffer of exactly the text */
    size_t n = strlen(text);
    char *exact = malloc(n);
    memcpy(exact, text, n);
    assert_int_equal(opg_jobrecord_parse(exact, n, &r), OPG_OK);
    opg_jobrecord_free(r);
    free(exact);
    free(text);
}

/* Each broken variant of a good record: FORMAT (or UNSUPPORTED for another
 * version) with a message holding needle. */
static void expect_broken(cJSON *o, opg_status want, const char *needle) {
    char *text = cJSON_PrintUnformatted(o);
    opg_jobrecord *r = (opg_jobrecord *)1;
    opg_status st = opg_jobrecord_parse(text, strlen(text), &r);
    if (st != want || r != NULL || !strstr(opg_last_error(), needle)) {
        print_error("expected %s with \"%s\", got %s: \"%s\"\n", opg_strerror(want), needle, opg_strerror(st),
                    opg_last_error());
        fail();
    }
    free(text);
}

static cJSON *good(void) {
    sample s;
    make(&s, 17);
    char *text = NULL;
    assert_int_equal(opg_jobrecord_format("c", &s.sj, &s.res, &text), OPG_OK);
    cJSON *o = cJSON_Parse(text);
    free(text);
    assert_non_null(o);
    return o;
}

/* A good record with key's value replaced by v (which it takes): refused. */
static void expect_replaced(const char *key, cJSON *v, opg_status want, const char *needle) {
    cJSON *o = good();
    cJSON_ReplaceItemInObject(o, key, v);
    expect_broken(o, want, needle);
    cJSON_Delete(o);
}

static void test_broken(void **state) {
    (void)state;
    cJSON *o;
    opg_jobrecord *r = NULL;
    assert_int_equal(opg_jobrecord_parse("[1]", 3, &r), OPG_ERR_FORMAT);
    assert_int_equal(opg_jobrecord_parse("{", 1, &r), OPG_ERR_FORMAT);
    assert_int_equal(opg_jobrecord_parse("", 0, &r), OPG_ERR_FORMAT);
    const char *keys[] = {"opg_job_record", "job_id", "request", "result"};
    for (int k = 0; k < 4; k++) {
        o = good();
        cJSON_DeleteItemFromObject(o, keys[k]);
        expect_broken(o, OPG_ERR_FORMAT, keys[k]);
        cJSON_Delete(o);
    }
    o = good(); /* coordinator is optional */
    cJSON_DeleteItemFromObject(o, "coordinator");
    char *text = cJSON_PrintUnformatted(o);
    assert_int_equal(opg_jobrecord_parse(text, strlen(text), &r), OPG_OK);
    assert_string_equal(r->coordinator, "");
    opg_jobrecord_free(r);
    free(text);
    cJSON_Delete(o);
    o = good();
    cJSON_AddNumberToObject(o, "extra", 1);
    expect_broken(o, OPG_ERR_FORMAT, "unknown key \"extra\"");
    cJSON_Delete(o);
    o = good();
    cJSON_AddNumberToObject(o, "job_id", 17); /* twice */
    expect_broken(o, OPG_ERR_FORMAT, "\"job_id\" given twice");
    cJSON_Delete(o);
    expect_replaced("opg_job_record", cJSON_CreateNumber(2), OPG_ERR_UNSUPPORTED, "format version");
    double ids[] = {0, 1.5, -3, 1e300};
    for (int i = 0; i < 4; i++)
        expect_replaced("job_id", cJSON_CreateNumber(ids[i]), OPG_ERR_FORMAT, "\"job_id\" is not an integer");
    o = good(); /* ids that disagree parse: opg verify reports such a record invalid */
    cJSON_ReplaceItemInObject(o, "job_id", cJSON_CreateNumber(18));
    text = cJSON_PrintUnformatted(o);
    assert_int_equal(opg_jobrecord_parse(text, strlen(text), &r), OPG_OK);
    assert_true(r->job_id == 18 && ((const Opg__V1__Result *)r->result->msg)->job_id == 17);
    opg_jobrecord_free(r);
    free(text);
    cJSON_Delete(o);
    expect_replaced("result", cJSON_CreateString("AAAA!"), OPG_ERR_FORMAT, "\"result\" is not base64");
    expect_replaced("result", cJSON_CreateNumber(3), OPG_ERR_FORMAT, "\"result\" is not a string");
    o = good(); /* the two frames swapped: each of the other type */
    cJSON *req = cJSON_DetachItemFromObject(o, "request"), *res = cJSON_DetachItemFromObject(o, "result");
    cJSON_AddItemToObject(o, "request", res);
    cJSON_AddItemToObject(o, "result", req);
    expect_broken(o, OPG_ERR_FORMAT, "\"request\" is a Result frame, expected SubmitJob");
    cJSON_Delete(o);
    /* a frame that does not decode: base64 of "xyz" */
    expect_replaced("request", cJSON_CreateString("eHl6"), OPG_ERR_FORMAT, "\"request\":");
    /* text after the object; a NUL, raw or escaped (it would cut a key short) */
    o = good();
    char *g = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    size_t gl = strlen(g);
    char *buf = malloc(gl + 64);
    snprintf(buf, gl + 64, "%s \n\t", g); /* whitespace after it: fine */
    assert_int_equal(opg_jobrecord_parse(buf, strlen(buf), &r), OPG_OK);
    opg_jobrecord_free(r);
    snprintf(buf, gl + 64, "%s {}", g);
    assert_int_equal(opg_jobrecord_parse(buf, strlen(buf), &r), OPG_ERR_FORMAT);
    assert_non_null(strstr(opg_last_error(), "text after the JSON object"));
    memcpy(buf, g, gl);
    buf[gl - 1] = 0; /* a raw NUL in place of the closing brace */
    assert_int_equal(opg_jobrecord_parse(buf, gl, &r), OPG_ERR_FORMAT);
    assert_non_null(strstr(opg_last_error(), "NUL"));
    char *k = strstr(g, "\"result\"");
    assert_non_null(k);
    snprintf(buf, gl + 64, "%.*s\"result\\u0000x\"%s", (int)(k - g), g, k + 8);
    assert_int_equal(opg_jobrecord_parse(buf, strlen(buf), &r), OPG_ERR_FORMAT);
    assert_non_null(strstr(opg_last_error(), "NUL"));
    free(buf);
    free(g);
    /* the format refuses what a frame may not hold */
    sample s;
    make(&s, 17);
    s.sj.max_tokens = 0;
    text = (char *)1;
    assert_int_equal(opg_jobrecord_format("c", &s.sj, &s.res, &text), OPG_ERR_ARG);
    assert_null(text);
}

static void test_save_load(void **state) {
    (void)state;
    char dir[] = "/tmp/opg-jobrecord-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[128];
    snprintf(path, sizeof path, "%s/job.json", dir);
    sample s;
    make(&s, 5);
    char *text = NULL;
    assert_int_equal(opg_jobrecord_format(NULL, &s.sj, &s.res, &text), OPG_OK);
    assert_int_equal(opg_jobrecord_save(path, text), OPG_OK);
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0644 & ~umask(022));
    /* never overwritten: OPG_ERR_STATE, the file as it was */
    assert_int_equal(opg_jobrecord_save(path, "{}"), OPG_ERR_STATE);
    assert_non_null(strstr(opg_last_error(), "never overwritten"));
    opg_jobrecord *r = NULL;
    assert_int_equal(opg_jobrecord_load(path, &r), OPG_OK);
    assert_int_equal(r->job_id, 5);
    opg_jobrecord_free(r);
    free(text);
    /* errors name the file */
    char missing[160];
    snprintf(missing, sizeof missing, "%s/none.json", dir);
    assert_int_equal(opg_jobrecord_load(missing, &r), OPG_ERR_NOT_FOUND);
    assert_non_null(strstr(opg_last_error(), "none.json"));
    assert_int_equal(opg_jobrecord_load(dir, &r), OPG_ERR_IO); /* a directory */
    /* a FIFO is refused at once, not waited on for a writer */
    char fifo[160];
    snprintf(fifo, sizeof fifo, "%s/fifo.json", dir);
    assert_int_equal(mkfifo(fifo, 0600), 0);
    assert_int_equal(opg_jobrecord_load(fifo, &r), OPG_ERR_IO);
    assert_non_null(strstr(opg_last_error(), "not a regular file"));
    unlink(fifo);
    char broken[160];
    snprintf(broken, sizeof broken, "%s/broken.json", dir);
    assert_int_equal(opg_jobrecord_save(broken, "{\"opg_job_record\": 1}"), OPG_OK);
    assert_int_equal(opg_jobrecord_load(broken, &r), OPG_ERR_FORMAT);
    assert_non_null(strstr(opg_last_error(), "broken.json: job record: key \"job_id\" missing"));
    unlink(broken);
    unlink(path);
    rmdir(dir);
}

int main(void) {
    if (sodium_init() < 0) return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_broken),
        cmocka_unit_test(test_save_load),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
