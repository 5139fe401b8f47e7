/* fuzz_opts_config.c: libFuzzer target for the JSON config reader of the
 * option tables (net/opts.h, opg_opts_parse_config).
 *
 * A fixed table holds every option type, with caller-owned defaults (a
 * string literal, a vector of literals). Each input is applied to it. A
 * rejected input must give a known status and a message, and leave every
 * destination as it was. An accepted one must leave values that obey the
 * table (ints inside their bounds, bools 0/1, finite doubles, vectors of
 * strings); the help text is rendered from them, and opg_opts_free must
 * release everything the parser made (the leak checker sees the rest) while
 * never touching the defaults. Violations are __builtin_trap(). */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "opts.h"

#define CHECK(c)                        \
    do {                                \
        if (!(c)) __builtin_trap();     \
    } while (0)

static char *const g_default_peers[] = {"tcp://a:1", "tcp://b:2"};
static char g_default_listen[] = "tcp://0.0.0.0:5555";

static char *g_listen, *g_name;
static int64_t g_threads, g_any;
static int g_verbose;
static opg_strv g_peers;
static double g_ratio;

static const opg_opt g_opts[] = {
    {"listen", 'l', OPG_OPT_STR, &g_listen, 0, 0, "ADDR", "address"},
    {"name", 0, OPG_OPT_STR, &g_name, 0, 0, NULL, "name"},
    {"threads", 't', OPG_OPT_INT, &g_threads, 1, 64, "N", "threads"},
    {"any", 0, OPG_OPT_INT, &g_any, 0, 0, "N", "unbounded"},
    {"verbose", 'v', OPG_OPT_BOOL, &g_verbose, 0, 0, NULL, "verbose"},
    {"peer", 'p', OPG_OPT_STRS, &g_peers, 0, 0, "ADDR", "peers"},
    {"ratio", 0, OPG_OPT_DOUBLE, &g_ratio, 0, 0, NULL, "ratio"},
};
#define N_OPTS ((int)(sizeof g_opts / sizeof g_opts[0]))

static volatile size_t g_sink;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    g_listen = g_default_listen;
    g_name = NULL;
    g_threads = 4;
    g_any = -1;
    g_verbose = 0;
    g_peers.v = (char **)g_default_peers;
    g_peers.n = 2;
    g_ratio = 0.5;

    opg_status st = opg_opts_parse_config(g_opts, N_OPTS, (const char *)data, size);
    if (st != OPG_OK) {
        CHECK(st == OPG_ERR_ARG || st == OPG_ERR_FORMAT || st == OPG_ERR_LIMIT || st == OPG_ERR_NOMEM);
        CHECK(opg_last_error()[0] != 0);
        g_sink += strlen(opg_last_error());
        if (st != OPG_ERR_NOMEM) { /* all or nothing */
            CHECK(g_listen == g_default_listen && g_name == NULL && g_threads == 4 && g_any == -1);
            CHECK(g_verbose == 0 && g_ratio == 0.5);
            CHECK(g_peers.v == (char **)g_default_peers && g_peers.n == 2);
        }
    } else {
        CHECK(g_listen != NULL);
        g_sink += strlen(g_listen) + (g_name ? strlen(g_name) : 0);
        CHECK(g_threads >= 1 && g_threads <= 64);
        CHECK(g_verbose == 0 || g_verbose == 1);
        CHECK(isfinite(g_ratio));
        CHECK(g_peers.n >= 0 && (g_peers.n == 0 || g_peers.v != NULL));
        for (int i = 0; i < g_peers.n; i++) {
            CHECK(g_peers.v[i] != NULL);
            g_sink += strlen(g_peers.v[i]);
        }
        char *help = opg_opts_help(g_opts, N_OPTS, "fuzz [OPTIONS]");
        CHECK(help != NULL);
        g_sink += strlen(help);
        free(help);
    }
    opg_opts_free(g_opts, N_OPTS);
    /* parser-made values are gone; defaults were never freed */
    CHECK(g_listen == NULL || g_listen == g_default_listen);
    CHECK(g_name == NULL);
    CHECK(g_peers.v == NULL || g_peers.v == (char **)g_default_peers);
    CHECK(strcmp(g_default_listen, "tcp://0.0.0.0:5555") == 0);
    CHECK(strcmp(g_default_peers[0], "tcp://a:1") == 0 && strcmp(g_default_peers[1], "tcp://b:2") == 0);
    return 0;
}
