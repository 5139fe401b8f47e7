/* jobrecord.c: job records (jobrecord.h): JSON with cJSON, base64 with
 * libsodium, the frames with proto/frame.h. */
#include "jobrecord.h"

#include "file.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define T(x) OPG__V1__MESSAGE_TYPE__MESSAGE_TYPE_##x
#define FAIL(...) opg__fail(OPG_ERR_FORMAT, __VA_ARGS__)

static char *base64_of(const uint8_t *b, size_t n) {
    size_t cap = sodium_base64_encoded_len(n, sodium_base64_VARIANT_ORIGINAL);
    char *s = malloc(cap);
    if (s) sodium_bin2base64(s, cap, b, n, sodium_base64_VARIANT_ORIGINAL);
    return s;
}

opg_status opg_jobrecord_format(const char *coordinator, const Opg__V1__SubmitJob *request,
                                const Opg__V1__Result *result, char **out) {
    if (!out || !request || !result) return opg__fail(OPG_ERR_ARG, "opg_jobrecord_format: NULL argument");
    *out = NULL;
    if (sodium_init() < 0) return opg__fail(OPG_ERR_UNSUPPORTED, "libsodium failed to initialise");
    if (result->job_id > (1ull << 53))
        return opg__fail(OPG_ERR_ARG, "job id %llu does not fit a JSON number exactly",
                         (unsigned long long)result->job_id);
    uint8_t *req = NULL, *res = NULL;
    size_t req_len = 0, res_len = 0;
    opg_status st = opg_frame_encode(T(SUBMIT_JOB), &request->base, &req, &req_len);
    if (st == OPG_OK) st = opg_frame_encode(T(RESULT), &result->base, &res, &res_len);
    char *req64 = st == OPG_OK ? base64_of(req, req_len) : NULL;
    char *res64 = st == OPG_OK ? base64_of(res, res_len) : NULL;
    cJSON *o = st == OPG_OK ? cJSON_CreateObject() : NULL;
    if (st == OPG_OK && (!req64 || !res64 || !o ||
                         !cJSON_AddNumberToObject(o, "opg_job_record", OPG_JOBRECORD_VERSION) ||
                         !cJSON_AddStringToObject(o, "coordinator", coordinator ? coordinator : "") ||
                         !cJSON_AddNumberToObject(o, "job_id", (double)result->job_id) ||
                         !cJSON_AddStringToObject(o, "request", req64) ||
                         !cJSON_AddStringToObject(o, "result", res64) || !(*out = cJSON_Print(o))))
        st = opg__fail(OPG_ERR_NOMEM, "job record of %zu + %zu bytes", req_len, res_len);
    if (st != OPG_OK) {
        free(*out);
        *out = NULL;
    }
    cJSON_Delete(o);
    free(req64);
    free(res64);
    free(req);
    free(res);
    return st;
}

opg_status opg_jobrecord_save(const char *path, const char *text) {
    if (!path || !text) return opg__fail(OPG_ERR_ARG, "opg_jobrecord_save: NULL argument");
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0)
        return opg__fail(errno == EEXIST ? OPG_ERR_STATE : OPG_ERR_IO, "%s: %s%s", path, strerror(errno),
                         errno == EEXIST ? " (a job record is never overwritten)" : "");
    size_t n = strlen(text), done = 0;
    while (done < n) {
        ssize_t w = write(fd, text + done, n - done);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) break;
        done += (size_t)w;
    }
    int ok = done == n && write(fd, "\n", 1) == 1 && fsync(fd) == 0;
    int err = errno;
    if (close(fd) != 0 && ok) {
        ok = 0;
        err = errno;
    }
    if (!ok) {
        unlink(path); /* a half-written record is no record */
        return opg__fail(OPG_ERR_IO, "%s: writing the job record: %s", path, strerror(err));
    }
    return OPG_OK;
}

/* The frame of type want in base64 string v. */
static opg_status frame_of(const cJSON *v, const char *key, opg_msg_type want, opg_frame **out) {
    if (!cJSON_IsString(v)) return FAIL("job record: \"%s\" is not a string", key);
    const char *s = v->valuestring, *end = NULL;
    size_t n = strlen(s), cap = n / 4 * 3 + 3, len = 0;
    if (cap > OPG_FRAME_MAX + 3) return opg__fail(OPG_ERR_LIMIT, "job record: \"%s\" is over the frame limit", key);
    uint8_t *b = malloc(cap);
    if (!b) return opg__fail(OPG_ERR_NOMEM, "job record: %zu bytes for \"%s\"", cap, key);
    if (sodium_base642bin(b, cap, s, n, NULL, &len, &end, sodium_base64_VARIANT_ORIGINAL) != 0 || end != s + n) {
        free(b);
        return FAIL("job record: \"%s\" is not base64 (RFC 4648, padded)", key);
    }
    opg_status st = opg_frame_decode(b, len, out);
    free(b);
    if (st != OPG_OK) {
        char why[400];
        snprintf(why, sizeof why, "%s", opg_last_error());
        return opg__fail(st == OPG_ERR_NOMEM ? st : OPG_ERR_FORMAT, "job record: \"%s\": %s", key, why);
    }
    if ((*out)->type != want) {
        const char *got = opg_frame_type_name((*out)->type);
        opg_frame_free(out);
        return FAIL("job record: \"%s\" is a %s frame, expected %s", key, got, opg_frame_type_name(want));
    }
    return OPG_OK;
}

opg_status opg_jobrecord_parse(const char *text, size_t len, opg_jobrecord **out) {
    if (!out) return opg__fail(OPG_ERR_ARG, "opg_jobrecord_parse: NULL output");
    *out = NULL;
    if (!text && len) return opg__fail(OPG_ERR_ARG, "opg_jobrecord_parse: NULL text of %zu bytes", len);
    if (len > OPG_JOBRECORD_MAX)
        return opg__fail(OPG_ERR_LIMIT, "job record of %zu bytes exceeds %u", len, OPG_JOBRECORD_MAX);
    if (sodium_init() < 0) return opg__fail(OPG_ERR_UNSUPPORTED, "libsodium failed to initialise");
    if (!text) text = "";
    /* decoded strings are C strings: a NUL byte, raw or escaped, would cut a
       key or a value short unseen (so "result\u0000x" would count as "result") */
    if (memchr(text, 0, len) || memmem(text, len, "\\u0000", 6))
        return FAIL("job record: a NUL character (raw or \\u0000)");
    const char *end = NULL;
    cJSON *o = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (!o || !cJSON_IsObject(o)) {
        cJSON_Delete(o);
        return FAIL("job record: not a JSON object");
    }
    while (end && end < text + len && (*end == ' ' || *end == '\t' || *end == '\n' || *end == '\r')) end++;
    if (end != text + len) {
        cJSON_Delete(o);
        return FAIL("job record: text after the JSON object (at byte %zu)", end ? (size_t)(end - text) : (size_t)0);
    }
    opg_status st = OPG_OK;
    opg_jobrecord *r = calloc(1, sizeof *r);
    if (!r) st = opg__fail(OPG_ERR_NOMEM, "job record");
    /* known keys, each once: anything else is another format */
    static const char *const keys[] = {"opg_job_record", "coordinator", "job_id", "request", "result"};
    const cJSON *seen[5] = {0};
    for (const cJSON *it = o->child; it && st == OPG_OK; it = it->next) {
        int k = 0;
        while (k < 5 && strcmp(it->string, keys[k]) != 0) k++;
        if (k == 5) st = FAIL("job record: unknown key \"%.64s\"", it->string);
        else if (seen[k]) st = FAIL("job record: key \"%s\" given twice", keys[k]);
        else seen[k] = it;
    }
    for (int k = 0; k < 5 && st == OPG_OK; k++)
        if (!seen[k] && k != 1) st = FAIL("job record: key \"%s\" missing", keys[k]);
    if (st == OPG_OK && (!cJSON_IsNumber(seen[0]) || seen[0]->valuedouble != OPG_JOBRECORD_VERSION))
        st = opg__fail(cJSON_IsNumber(seen[0]) ? OPG_ERR_UNSUPPORTED : OPG_ERR_FORMAT,
                       "job record: format version other than %d", OPG_JOBRECORD_VERSION);
    if (st == OPG_OK && seen[1] && !cJSON_IsString(seen[1])) st = FAIL("job record: \"coordinator\" is not a string");
    if (st == OPG_OK && !(r->coordinator = strdup(seen[1] ? seen[1]->valuestring : "")))
        st = opg__fail(OPG_ERR_NOMEM, "job record");
    if (st == OPG_OK) {
        double d = cJSON_IsNumber(seen[2]) ? seen[2]->valuedouble : -1;
        if (!(d >= 1 && d <= 9007199254740992.0) || floor(d) != d)
            st = FAIL("job record: \"job_id\" is not an integer from 1 to 2^53");
        else r->job_id = (uint64_t)d;
    }
    if (st == OPG_OK) st = frame_of(seen[3], "request", T(SUBMIT_JOB), &r->request);
    if (st == OPG_OK) st = frame_of(seen[4], "result", T(RESULT), &r->result);
    cJSON_Delete(o);
    if (st != OPG_OK) {
        opg_jobrecord_free(r);
        return st;
    }
    *out = r;
    return OPG_OK;
}

opg_status opg_jobrecord_load(const char *path, opg_jobrecord **out) {
    if (!out) return opg__fail(OPG_ERR_ARG, "opg_jobrecord_load: NULL output");
    *out = NULL;
    char *text = NULL;
    size_t n = 0;
    opg_status rs = opg_file_read(path, OPG_JOBRECORD_MAX, &text, &n, NULL);
    if (rs != OPG_OK) return rs;
    opg_status st = opg_jobrecord_parse(text, n, out);
    free(text);
    if (st != OPG_OK) {
        char why[480];
        snprintf(why, sizeof why, "%s", opg_last_error());
        opg__fail(st, "%s: %s", path, why);
    }
    return st;
}

void opg_jobrecord_free(opg_jobrecord *r) {
    if (!r) return;
    free(r->coordinator);
    opg_frame_free(&r->request);
    opg_frame_free(&r->result);
    free(r);
}
