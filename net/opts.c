/* opts.c: flags, JSON config and --help from one option table (opts.h).
 *
 * Parsing runs in two phases: every flag value and every config document is
 * checked first (check_*), and only then applied (apply_*), so an error
 * leaves the destinations as they were. Strings and arrays the parser
 * allocates are recorded in a process-wide set (g_owned), which is how it
 * tells them from caller-owned defaults such as string literals. */
#include "opts.h"

#include "file.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MAX_CONFIG_BYTES (1u << 20)
#define MAX_EXACT_INT 9007199254740992.0 /* 2^53: integers a JSON number holds exactly */

/* ---- the set of parser-owned allocations ------------------------------------------ */

static pthread_mutex_t g_owned_mu = PTHREAD_MUTEX_INITIALIZER;
static void **g_owned;
static size_t g_n_owned, g_cap_owned;

static int own_find(const void *p) {
    for (size_t i = 0; i < g_n_owned; i++)
        if (g_owned[i] == p) return (int)i;
    return -1;
}

/* Records p; 0 when out of memory. */
static int own_add(void *p) {
    int ok = 1;
    pthread_mutex_lock(&g_owned_mu);
    if (g_n_owned == g_cap_owned) {
        size_t cap = g_cap_owned ? 2 * g_cap_owned : 32;
        void **np = realloc(g_owned, cap * sizeof *np);
        if (np) {
            g_owned = np;
            g_cap_owned = cap;
        } else {
            ok = 0;
        }
    }
    if (ok) g_owned[g_n_owned++] = p;
    pthread_mutex_unlock(&g_owned_mu);
    return ok;
}

/* Forgets p; 1 when it was recorded (the caller then frees it). */
static int own_take(const void *p) {
    if (!p) return 0;
    pthread_mutex_lock(&g_owned_mu);
    int i = own_find(p);
    if (i >= 0) g_owned[i] = g_owned[--g_n_owned];
    if (g_n_owned == 0) { /* drop the table with the last entry: nothing left for leak checkers */
        free(g_owned);
        g_owned = NULL;
        g_cap_owned = 0;
    }
    pthread_mutex_unlock(&g_owned_mu);
    return i >= 0;
}

static int own_has(const void *p) {
    if (!p) return 0;
    pthread_mutex_lock(&g_owned_mu);
    int i = own_find(p);
    pthread_mutex_unlock(&g_owned_mu);
    return i >= 0;
}

/* Replaces the record of old by new (new != NULL; no allocation). */
static void own_swap(const void *old, void *new_) {
    pthread_mutex_lock(&g_owned_mu);
    int i = own_find(old);
    if (i >= 0) g_owned[i] = new_;
    pthread_mutex_unlock(&g_owned_mu);
}

/* A heap copy of s recorded as parser-owned; NULL when out of memory. */
static char *own_strdup(const char *s) {
    char *c = strdup(s);
    if (c && !own_add(c)) {
        free(c);
        c = NULL;
    }
    return c;
}

static void set_str(char **dst, char *s) {
    char *old = *dst;
    *dst = s;
    if (own_take(old)) free(old);
}

static void free_entries(char **v, int n) {
    for (int i = 0; i < n; i++) free(v[i]);
    free(v);
}

void opg_strv_clear(opg_strv *v) {
    if (!v) return;
    own_take(v->v); /* owned or a heap vector of the caller's: freed alike */
    if (v->v) free_entries(v->v, v->n);
    v->v = NULL;
    v->n = 0;
}

/* Replaces *v by a new vector; frees the old one only when the parser made
 * it (a caller's default vector is dropped, not freed). */
static void set_strv(opg_strv *v, char **arr, int n) {
    char **old = v->v;
    int old_n = v->n;
    v->v = arr;
    v->n = n;
    if (own_take(old)) free_entries(old, old_n);
}

/* Appends a copy of s to a vector the parser made; a caller-owned vector
 * (a default) is replaced by a new one holding s alone. */
static opg_status strv_append(opg_strv *v, const char *s) {
    char *c = strdup(s);
    if (!c) return opg__fail(OPG_ERR_NOMEM, "options: out of memory");
    if (own_has(v->v)) {
        char **arr = realloc(v->v, (size_t)(v->n + 1) * sizeof *arr);
        if (!arr) {
            free(c);
            return opg__fail(OPG_ERR_NOMEM, "options: out of memory");
        }
        if (arr != v->v) own_swap(v->v, arr);
        arr[v->n] = c;
        v->v = arr;
        v->n++;
        return OPG_OK;
    }
    char **arr = malloc(sizeof *arr);
    if (!arr || !own_add(arr)) {
        free(arr);
        free(c);
        return opg__fail(OPG_ERR_NOMEM, "options: out of memory");
    }
    arr[0] = c;
    v->v = arr; /* the caller's vector is dropped, not freed */
    v->n = 1;
    return OPG_OK;
}

void opg_opts_free(const opg_opt *opts, int n) {
    for (int i = 0; opts && i < n; i++) {
        if (!opts[i].dst) continue;
        if (opts[i].type == OPG_OPT_STR) {
            char **dst = opts[i].dst;
            if (own_take(*dst)) {
                free(*dst);
                *dst = NULL;
            }
        } else if (opts[i].type == OPG_OPT_STRS) {
            opg_strv *v = opts[i].dst;
            if (own_take(v->v)) {
                free_entries(v->v, v->n);
                v->v = NULL;
                v->n = 0;
            }
        }
    }
}

/* ---- the table ---------------------------------------------------------------- */

static int name_ok(const char *s) {
    if (!s || !*s) return 0;
    for (const char *p = s; *p; p++) {
        char c = *p;
        int alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
        if (!alnum && (p == s || (c != '-' && c != '_' && c != '.'))) return 0;
    }
    return 1;
}

static opg_status check_table(const opg_opt *opts, int n) {
    if (n < 0 || (n > 0 && !opts)) return opg__fail(OPG_ERR_ARG, "options: bad table (%d entries)", n);
    for (int i = 0; i < n; i++) {
        const opg_opt *o = &opts[i];
        if (!name_ok(o->name))
            return opg__fail(OPG_ERR_ARG, "options: entry %d: bad name \"%s\"", i, o->name ? o->name : "(null)");
        if (strcmp(o->name, "help") == 0 || strcmp(o->name, "config") == 0)
            return opg__fail(OPG_ERR_ARG, "options: --%s is built in", o->name);
        if (!o->dst) return opg__fail(OPG_ERR_ARG, "options: --%s has no destination", o->name);
        if ((unsigned)o->type > OPG_OPT_DOUBLE) return opg__fail(OPG_ERR_ARG, "options: --%s: bad type", o->name);
        if (o->type == OPG_OPT_INT && o->min > o->max)
            return opg__fail(OPG_ERR_ARG, "options: --%s: min > max", o->name);
        char sn = o->short_name;
        if (sn && (sn == 'h' || !((sn >= 'a' && sn <= 'z') || (sn >= 'A' && sn <= 'Z') || (sn >= '0' && sn <= '9'))))
            return opg__fail(OPG_ERR_ARG, "options: --%s: bad short name", o->name);
        for (int j = 0; j < i; j++) {
            if (strcmp(opts[j].name, o->name) == 0)
                return opg__fail(OPG_ERR_ARG, "options: --%s defined twice", o->name);
            if (sn && opts[j].short_name == sn)
                return opg__fail(OPG_ERR_ARG, "options: -%c defined twice", sn);
        }
    }
    return OPG_OK;
}

static const opg_opt *find_long(const opg_opt *opts, int n, const char *name, size_t len) {
    for (int i = 0; i < n; i++)
        if (strlen(opts[i].name) == len && memcmp(opts[i].name, name, len) == 0) return &opts[i];
    return NULL;
}

static const opg_opt *find_short(const opg_opt *opts, int n, char c) {
    for (int i = 0; i < n; i++)
        if (opts[i].short_name == c) return &opts[i];
    return NULL;
}

static int bounded(const opg_opt *o) { return o->min != 0 || o->max != 0; }

/* ---- values from text (flags) ----------------------------------------------------- */

static opg_status parse_bool_text(const char *flag, const char *s, int *out) {
    if (strcmp(s, "true") == 0 || strcmp(s, "1") == 0) *out = 1;
    else if (strcmp(s, "false") == 0 || strcmp(s, "0") == 0) *out = 0;
    else return opg__fail(OPG_ERR_ARG, "%s: \"%s\" is not true or false", flag, s);
    return OPG_OK;
}

static opg_status range_check(const char *where, const opg_opt *o, int64_t v) {
    if (bounded(o) && (v < o->min || v > o->max))
        return opg__fail(OPG_ERR_ARG, "%s: %" PRId64 " is out of range [%" PRId64 ", %" PRId64 "]", where, v,
                         o->min, o->max);
    return OPG_OK;
}

/* Checks (and with out != NULL converts) a flag value; bool values are
 * handled by the caller. */
static opg_status parse_text(const opg_opt *o, const char *flag, const char *s, void *out) {
    if (o->type == OPG_OPT_INT) {
        char *end;
        errno = 0;
        long long v = strtoll(s, &end, 10);
        if (!*s || *s == ' ' || *s == '\t' || *end)
            return opg__fail(OPG_ERR_ARG, "%s: \"%s\" is not an integer", flag, s);
        if (errno == ERANGE) return opg__fail(OPG_ERR_ARG, "%s: %s is out of the 64-bit range", flag, s);
        opg_status st = range_check(flag, o, (int64_t)v);
        if (st == OPG_OK && out) *(int64_t *)out = (int64_t)v;
        return st;
    }
    if (o->type == OPG_OPT_DOUBLE) {
        char *end;
        double v = strtod(s, &end);
        if (!*s || *s == ' ' || *s == '\t' || *end)
            return opg__fail(OPG_ERR_ARG, "%s: \"%s\" is not a number", flag, s);
        if (!isfinite(v)) return opg__fail(OPG_ERR_ARG, "%s: %s is not a finite number", flag, s);
        if (out) *(double *)out = v;
        return OPG_OK;
    }
    return OPG_OK;
}

/* ---- values from JSON ------------------------------------------------------------- */

static opg_status json_type_error(const char *src, const opg_opt *o, const char *want) {
    return opg__fail(OPG_ERR_ARG, "%s: key \"%s\" must be %s", src, o->name, want);
}

/* Checks one config value against its option. */
static opg_status check_json(const char *src, const opg_opt *o, const cJSON *v) {
    switch (o->type) {
    case OPG_OPT_STR:
        return cJSON_IsString(v) ? OPG_OK : json_type_error(src, o, "a string");
    case OPG_OPT_BOOL:
        return cJSON_IsBool(v) ? OPG_OK : json_type_error(src, o, "true or false");
    case OPG_OPT_DOUBLE:
        if (!cJSON_IsNumber(v)) return json_type_error(src, o, "a number");
        if (!isfinite(v->valuedouble)) return json_type_error(src, o, "a finite number");
        return OPG_OK;
    case OPG_OPT_INT: {
        if (!cJSON_IsNumber(v)) return json_type_error(src, o, "an integer");
        double d = v->valuedouble;
        if (!(d == floor(d)) || fabs(d) > MAX_EXACT_INT)
            return opg__fail(OPG_ERR_ARG, "%s: key \"%s\": %g is not an integer within +-2^53", src, o->name, d);
        char where[600];
        snprintf(where, sizeof where, "%s: key \"%s\"", src, o->name);
        return range_check(where, o, (int64_t)d);
    }
    case OPG_OPT_STRS: {
        if (!cJSON_IsArray(v)) return json_type_error(src, o, "an array of strings");
        int i = 0;
        for (const cJSON *e = v->child; e; e = e->next, i++)
            if (!cJSON_IsString(e))
                return opg__fail(OPG_ERR_ARG, "%s: key \"%s\": element %d is not a string", src, o->name, i);
        return OPG_OK;
    }
    }
    return OPG_OK;
}

static opg_status apply_json(const opg_opt *o, const cJSON *v) {
    switch (o->type) {
    case OPG_OPT_STR: {
        char *s = own_strdup(v->valuestring);
        if (!s) return opg__fail(OPG_ERR_NOMEM, "options: out of memory");
        set_str(o->dst, s);
        return OPG_OK;
    }
    case OPG_OPT_BOOL: *(int *)o->dst = cJSON_IsTrue(v) ? 1 : 0; return OPG_OK;
    case OPG_OPT_DOUBLE: *(double *)o->dst = v->valuedouble; return OPG_OK;
    case OPG_OPT_INT: *(int64_t *)o->dst = (int64_t)v->valuedouble; return OPG_OK;
    case OPG_OPT_STRS: {
        int cnt = cJSON_GetArraySize(v), k = 0;
        char **arr = NULL;
        if (cnt > 0) {
            arr = malloc((size_t)cnt * sizeof *arr);
            if (arr)
                for (const cJSON *e = v->child; e && k < cnt; e = e->next, k++)
                    if (!(arr[k] = strdup(e->valuestring))) break;
            if (!arr || k < cnt || !own_add(arr)) {
                if (arr) free_entries(arr, k);
                return opg__fail(OPG_ERR_NOMEM, "options: out of memory");
            }
        }
        set_strv(o->dst, arr, cnt);
        return OPG_OK;
    }
    }
    return OPG_OK;
}

/* Parses json (len bytes) into *root and checks every key; src names it in
 * messages ("config" or "config FILE"). */
static opg_status load_config(const opg_opt *opts, int n, const char *src, const char *json, size_t len,
                              cJSON **root) {
    *root = NULL;
    if (len > MAX_CONFIG_BYTES) return opg__fail(OPG_ERR_LIMIT, "%s: larger than %u bytes", src, MAX_CONFIG_BYTES);
    if (len && !json) return opg__fail(OPG_ERR_ARG, "%s: NULL text", src);
    /* cJSON reads up to a NUL: copy into a terminated buffer, and refuse a
     * NUL inside (it would silently cut the document short). */
    char *text = malloc(len + 1);
    if (!text) return opg__fail(OPG_ERR_NOMEM, "options: out of memory");
    if (len) memcpy(text, json, len);
    text[len] = 0;
    const char *err_at = NULL;
    size_t nul = strlen(text);
    /* an escaped NUL would cut a decoded string short just as silently
       (coarse: also refuses an escaped backslash before "u0000") */
    const char *esc = nul < len ? NULL : memmem(text, len, "\\u0000", 6);
    cJSON *doc = NULL;
    if (nul < len) err_at = text + nul;
    else if (esc) err_at = esc;
    else doc = cJSON_ParseWithOpts(text, &err_at, 1);
    if (!doc) {
        size_t off = err_at && err_at >= text && err_at <= text + len ? (size_t)(err_at - text) : len;
        int line = 1, col = 1;
        for (size_t i = 0; i < off; i++) {
            if (text[i] == '\n') {
                line++;
                col = 1;
            } else {
                col++;
            }
        }
        free(text);
        return opg__fail(OPG_ERR_FORMAT, "%s: %s near line %d, column %d", src,
                         nul < len ? "NUL byte" : esc ? "\\u0000 (a NUL character)" : "invalid JSON", line, col);
    }
    free(text);
    if (!cJSON_IsObject(doc)) {
        cJSON_Delete(doc);
        return opg__fail(OPG_ERR_FORMAT, "%s: the top level must be a JSON object", src);
    }
    for (const cJSON *e = doc->child; e; e = e->next) {
        const char *key = e->string ? e->string : "";
        const opg_opt *o = find_long(opts, n, key, strlen(key));
        opg_status st = OPG_OK;
        if (!o) {
            char shown[64]; /* the key is untrusted: no control bytes in the message */
            size_t k = 0;
            for (; key[k] && k + 1 < sizeof shown; k++)
                shown[k] = (unsigned char)key[k] < 0x20 || key[k] == 0x7f ? '?' : key[k];
            shown[k] = 0;
            st = opg__fail(OPG_ERR_ARG, "%s: unknown key \"%s%s\"", src, shown, key[k] ? "..." : "");
        } else {
            for (const cJSON *p = doc->child; p != e && st == OPG_OK; p = p->next)
                if (p->string && strcmp(p->string, key) == 0)
                    st = opg__fail(OPG_ERR_ARG, "%s: key \"%s\" given twice", src, key);
            if (st == OPG_OK) st = check_json(src, o, e);
        }
        if (st != OPG_OK) {
            cJSON_Delete(doc);
            return st;
        }
    }
    *root = doc;
    return OPG_OK;
}

static opg_status apply_config(const opg_opt *opts, int n, const cJSON *doc) {
    for (const cJSON *e = doc->child; e; e = e->next) {
        opg_status st = apply_json(find_long(opts, n, e->string, strlen(e->string)), e);
        if (st != OPG_OK) return st;
    }
    return OPG_OK;
}

opg_status opg_opts_parse_config(const opg_opt *opts, int n, const char *json, size_t len) {
    opg_status st = check_table(opts, n);
    if (st != OPG_OK) return st;
    cJSON *doc = NULL;
    st = load_config(opts, n, "config", json, len, &doc);
    if (st != OPG_OK) return st;
    st = apply_config(opts, n, doc);
    cJSON_Delete(doc);
    return st;
}

/* ---- flags ---------------------------------------------------------------------- */

typedef enum { IT_OPT, IT_CONFIG, IT_POS } item_kind;
typedef struct {
    item_kind kind;
    const opg_opt *o;
    const char *val; /* NULL: a bool flag without value */
    int neg;         /* --no-name */
    char flag[80];   /* as written, for messages */
} item;

/* Tokenizes argv into items and checks every value. Stops at the first
 * error but keeps looking for --help, which wins. */
static opg_status scan_args(const opg_opt *opts, int n, int argc, char **argv, int *help, int want_pos,
                            item *items, int *n_items) {
    opg_status err = OPG_OK;
    char msg[512] = "";
    int dashdash = 0;
    *n_items = 0;
#define FAIL_ONCE(expr)                                                 \
    do {                                                                \
        opg_status st_ = (expr);                                        \
        if (st_ != OPG_OK && err == OPG_OK) {                           \
            err = st_;                                                  \
            snprintf(msg, sizeof msg, "%s", opg_last_error());          \
        }                                                               \
    } while (0)
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!a) continue;
        item it = {.kind = IT_OPT};
        if (dashdash || a[0] != '-' || a[1] == 0) {
            if (!want_pos) FAIL_ONCE(opg__fail(OPG_ERR_ARG, "unexpected argument \"%.100s\"", a));
            it.kind = IT_POS;
            it.val = a;
            items[(*n_items)++] = it;
            continue;
        }
        if (strcmp(a, "--") == 0) {
            dashdash = 1;
            continue;
        }
        if (help && (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0)) {
            *help = 1;
            return OPG_OK;
        }
        const char *eq = NULL;
        if (a[1] == '-') {
            const char *name = a + 2;
            eq = strchr(name, '=');
            size_t len = eq ? (size_t)(eq - name) : strlen(name);
            snprintf(it.flag, sizeof it.flag, "--%.*s", (int)(len < 70 ? len : 70), name);
            if (len == 6 && memcmp(name, "config", 6) == 0) {
                it.kind = IT_CONFIG;
            } else {
                it.o = find_long(opts, n, name, len);
                if (!it.o && len > 3 && memcmp(name, "no-", 3) == 0) {
                    const opg_opt *b = find_long(opts, n, name + 3, len - 3);
                    if (b && b->type == OPG_OPT_BOOL) {
                        it.o = b;
                        it.neg = 1;
                    }
                }
                if (!it.o) {
                    FAIL_ONCE(opg__fail(OPG_ERR_ARG, "unknown flag %s", it.flag));
                    continue;
                }
            }
        } else {
            snprintf(it.flag, sizeof it.flag, "%.70s", a);
            it.o = find_short(opts, n, a[1]);
            size_t word = strcspn(a + 1, "=");
            int long_one = 0; /* -name=x meant --name=x, not -n ame=x */
            for (int k = 0; it.o && a[2] && k < n && !long_one; k++)
                if (strlen(opts[k].name) == word && !strncmp(opts[k].name, a + 1, word)) {
                    FAIL_ONCE(opg__fail(OPG_ERR_ARG, "unknown flag %.70s (a long option takes two dashes: --%s)", a,
                                        opts[k].name));
                    long_one = 1;
                }
            if (long_one) continue;
            if (it.o && a[2] && it.o->type != OPG_OPT_BOOL) {
                snprintf(it.flag, sizeof it.flag, "-%c", a[1]); /* -n8: the value attached, as getopt takes it */
                eq = a + 1; /* it.val = eq + 1 below */
            } else if (a[2]) {
                it.o = NULL;
            }
            if (!it.o) {
                FAIL_ONCE(opg__fail(OPG_ERR_ARG, "unknown flag %s", it.flag));
                continue;
            }
        }
        if (it.o && it.o->type == OPG_OPT_BOOL) {
            if (eq && it.neg) {
                FAIL_ONCE(opg__fail(OPG_ERR_ARG, "%s takes no value", it.flag));
                continue;
            }
            it.val = eq ? eq + 1 : NULL;
            int b;
            if (it.val) FAIL_ONCE(parse_bool_text(it.flag, it.val, &b));
        } else {
            if (eq) {
                it.val = eq + 1;
            } else if (i + 1 < argc && argv[i + 1]) {
                it.val = argv[++i];
            } else {
                FAIL_ONCE(opg__fail(OPG_ERR_ARG, "%s needs a value", it.flag));
                continue;
            }
            if (it.o) FAIL_ONCE(parse_text(it.o, it.flag, it.val, NULL));
        }
        items[(*n_items)++] = it;
    }
#undef FAIL_ONCE
    if (err != OPG_OK) return opg__fail(err, "%s", msg);
    return OPG_OK;
}

static opg_status apply_item(const item *it, opg_strv *pos) {
    const opg_opt *o = it->o;
    if (it->kind == IT_POS) return strv_append(pos, it->val);
    switch (o->type) {
    case OPG_OPT_BOOL: {
        int b = 1;
        if (it->val) parse_bool_text(it->flag, it->val, &b);
        *(int *)o->dst = it->neg ? 0 : b;
        return OPG_OK;
    }
    case OPG_OPT_STR: {
        char *s = own_strdup(it->val);
        if (!s) return opg__fail(OPG_ERR_NOMEM, "options: out of memory");
        set_str(o->dst, s);
        return OPG_OK;
    }
    case OPG_OPT_STRS: return strv_append(o->dst, it->val);
    case OPG_OPT_INT:
    case OPG_OPT_DOUBLE: return parse_text(o, it->flag, it->val, o->dst);
    }
    return OPG_OK;
}

opg_status opg_opts_parse(const opg_opt *opts, int n, int argc, char **argv, int *help, opg_strv *pos) {
    opg_status st = check_table(opts, n);
    if (st != OPG_OK) return st;
    if (argc < 1) return OPG_OK;
    if (!argv) return opg__fail(OPG_ERR_ARG, "options: argv is NULL");
    item *items = malloc((size_t)argc * sizeof *items);
    cJSON **docs = calloc((size_t)argc, sizeof *docs);
    if (!items || !docs) {
        free(items);
        free(docs);
        return opg__fail(OPG_ERR_NOMEM, "options: out of memory");
    }
    int n_items = 0, n_docs = 0, h = 0;
    st = scan_args(opts, n, argc, argv, help ? &h : NULL, pos != NULL, items, &n_items);
    if (st == OPG_OK && h) {
        *help = 1;
        goto done;
    }
    /* the config files, checked in full before anything is stored */
    for (int i = 0; i < n_items && st == OPG_OK; i++) {
        if (items[i].kind != IT_CONFIG) continue;
        char *text = NULL;
        size_t len = 0;
        st = opg_file_read(items[i].val, MAX_CONFIG_BYTES, &text, &len, NULL);
        if (st != OPG_OK) {
            char why[600];
            snprintf(why, sizeof why, "%s", opg_last_error());
            opg__fail(st, "config %s", why);
            break;
        }
        char src[600];
        snprintf(src, sizeof src, "config %s", items[i].val);
        st = load_config(opts, n, src, text, len, &docs[n_docs]);
        free(text);
        if (st == OPG_OK) n_docs++;
    }
    for (int i = 0; i < n_docs && st == OPG_OK; i++) st = apply_config(opts, n, docs[i]);
    for (int i = 0; i < n_items && st == OPG_OK; i++)
        if (items[i].kind != IT_CONFIG) st = apply_item(&items[i], pos);
done:
    for (int i = 0; i < n_docs; i++) cJSON_Delete(docs[i]);
    free(docs);
    free(items);
    return st;
}

/* ---- help ----------------------------------------------------------------------- */

typedef struct {
    char *p;
    size_t n, cap;
    int failed;
} sbuf;

static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *b, const char *fmt, ...) {
    if (b->failed) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        size_t room = b->cap - b->n;
        int k = vsnprintf(b->p ? b->p + b->n : NULL, b->p ? room : 0, fmt, ap);
        va_end(ap);
        if (k < 0) {
            b->failed = 1;
            return;
        }
        if (b->p && (size_t)k < room) {
            b->n += (size_t)k;
            return;
        }
        size_t cap = b->cap ? b->cap : 1024;
        while (cap < b->n + (size_t)k + 1) cap *= 2;
        char *np = realloc(b->p, cap);
        if (!np) {
            b->failed = 1;
            return;
        }
        b->p = np;
        b->cap = cap;
    }
}

static const char *metavar(const opg_opt *o) {
    if (o->metavar) return o->metavar;
    return o->type == OPG_OPT_INT ? "N" : o->type == OPG_OPT_DOUBLE ? "X" : "STR";
}

/* The left column: "  -l, --name METAVAR" */
static void left_col(sbuf *b, const opg_opt *o) {
    if (o->short_name) sb_printf(b, "  -%c, ", o->short_name);
    else sb_printf(b, "      ");
    if (o->type == OPG_OPT_BOOL) sb_printf(b, "--[no-]%s", o->name);
    else sb_printf(b, "--%s %s", o->name, metavar(o));
}

static void default_of(sbuf *b, const opg_opt *o) {
    switch (o->type) {
    case OPG_OPT_STR: {
        const char *s = *(char *const *)o->dst;
        if (!s) sb_printf(b, "none");
        else if (!*s) sb_printf(b, "\"\"");
        else sb_printf(b, "%s", s);
        break;
    }
    case OPG_OPT_INT: sb_printf(b, "%" PRId64, *(const int64_t *)o->dst); break;
    case OPG_OPT_BOOL: sb_printf(b, "%s", *(const int *)o->dst ? "true" : "false"); break;
    case OPG_OPT_DOUBLE: sb_printf(b, "%g", *(const double *)o->dst); break;
    case OPG_OPT_STRS: {
        const opg_strv *v = o->dst;
        if (v->n == 0) sb_printf(b, "none");
        for (int i = 0; i < v->n; i++) sb_printf(b, "%s%s", i ? "," : "", v->v[i]);
        break;
    }
    }
}

char *opg_opts_help(const opg_opt *opts, int n, const char *usage) {
    if (n < 0 || (n > 0 && !opts)) return NULL;
    sbuf b = {0};
    sb_printf(&b, "%s", "");
    if (usage) sb_printf(&b, "usage: %s\n\noptions:\n", usage);
    /* the width of the widest left column, to align the help text */
    size_t width = strlen("      --config FILE");
    for (int i = 0; i < n; i++) {
        sbuf t = {0};
        left_col(&t, &opts[i]);
        if (t.failed) {
            free(b.p);
            return NULL;
        }
        if (t.n > width) width = t.n;
        free(t.p);
    }
    for (int i = 0; i < n; i++) {
        const opg_opt *o = &opts[i];
        size_t start = b.n;
        left_col(&b, o);
        sb_printf(&b, "%*s%s", (int)(width + 2 - (b.failed ? 0 : b.n - start)), "", o->help ? o->help : "");
        /* a help text that states its default itself (one the variable
           cannot show: "host name") gets none added; nor "repeatable" twice */
        int own_default = o->help && strstr(o->help, "(default:");
        const char *sep = " (";
        if (o->type == OPG_OPT_INT && bounded(o)) {
            sb_printf(&b, "%s%" PRId64 "..%" PRId64, sep, o->min, o->max);
            sep = ", ";
        }
        if (o->type == OPG_OPT_STRS && !(o->help && strstr(o->help, "repeatable"))) {
            sb_printf(&b, "%srepeatable", sep);
            sep = ", ";
        }
        if (!own_default) {
            sb_printf(&b, "%sdefault: ", sep);
            default_of(&b, o);
            sep = ", ";
        }
        sb_printf(&b, "%s\n", sep[0] == ',' ? ")" : "");
    }
    sb_printf(&b, "%-*s%s\n", (int)(width + 2), "      --config FILE",
              "JSON object of option names to values, applied before the flags");
    sb_printf(&b, "%-*s%s\n", (int)(width + 2), "  -h, --help", "this help");
    if (b.failed) {
        free(b.p);
        return NULL;
    }
    return b.p;
}

int opg_opts_main(const opg_opt *opts, int n, int argc, char **argv, const char *usage, char **text) {
    *text = NULL;
    int help = 0;
    if (opg_opts_parse(opts, n, argc, argv, &help, NULL) != OPG_OK) {
        const char *why = opg_last_error();
        size_t len = strlen(why) + 64;
        *text = malloc(len);
        if (*text) snprintf(*text, len, "%s\n(--help lists the options)", why);
        return 2;
    }
    if (!help) return -1;
    *text = opg_opts_help(opts, n, usage);
    return 0;
}
