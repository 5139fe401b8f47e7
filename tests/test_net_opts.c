/* test_net_opts.c: flags, JSON config files and --help from one option
 * table (net/opts.h): every type from flags and from a config file, flags
 * beating the config wherever --config stands, errors that name the flag or
 * key (JSON syntax errors with line and column), all-or-nothing on error,
 * the help text, and that caller-owned defaults are never freed (run under
 * the Asan build too, whose leak checker sees what the parser keeps). */
#include "testutil.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "opts.h"

/* ---- the table under test --------------------------------------------------------- */

static char *g_listen;
static char *g_name;
static int64_t g_threads;
static int g_verbose, g_color;
static opg_strv g_peers;
static double g_ratio;
static char *g_peer_defaults[] = {"d1", "d2"};

static const opg_opt g_opts[] = {
    {"listen-workers", 'l', OPG_OPT_STR, &g_listen, 0, 0, "ADDR", "where workers connect"},
    {"name", 0, OPG_OPT_STR, &g_name, 0, 0, NULL, "node name"},
    {"threads", 't', OPG_OPT_INT, &g_threads, 1, 64, "N", "worker threads"},
    {"verbose", 'v', OPG_OPT_BOOL, &g_verbose, 0, 0, NULL, "debug logs"},
    {"color", 0, OPG_OPT_BOOL, &g_color, 0, 0, NULL, "colored output"},
    {"peer", 'p', OPG_OPT_STRS, &g_peers, 0, 0, "ADDR", "a peer"},
    {"ratio", 0, OPG_OPT_DOUBLE, &g_ratio, 0, 0, "R", "sampling ratio"},
};
#define N_OPTS ((int)(sizeof g_opts / sizeof g_opts[0]))

static int reset(void **state) {
    (void)state;
    g_listen = "tcp://0.0.0.0:5555"; /* a literal: the parser must never free it */
    g_name = NULL;
    g_threads = 4;
    g_verbose = 0;
    g_color = 1;
    g_peers.v = g_peer_defaults;
    g_peers.n = 2;
    g_ratio = 0.5;
    return 0;
}

static int cleanup(void **state) {
    (void)state;
    opg_opts_free(g_opts, N_OPTS);
    return 0;
}

/* Frees what the parser made, then the defaults again. */
static void restart(void) {
    opg_opts_free(g_opts, N_OPTS);
    reset(NULL);
}

static char g_path[64];

/* Writes text to a fresh file under /tmp; returns its path. */
static const char *write_config(const char *text) {
    static int seq;
    snprintf(g_path, sizeof g_path, "/tmp/opg_test_opts_%d_%d.json", (int)getpid(), seq++);
    FILE *f = fopen(g_path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, strlen(text), f), strlen(text));
    fclose(f);
    return g_path;
}

/* argv from a NULL-terminated list; argv[0] is "prog". */
#define PARSE(...) parse_(NULL, NULL, (const char *[]){"prog", __VA_ARGS__, NULL})
static opg_status parse_(int *help, opg_strv *pos, const char **args) {
    int argc = 0;
    while (args[argc]) argc++;
    return opg_opts_parse(g_opts, N_OPTS, argc, (char **)args, help, pos);
}

#define expect_ok(expr) expect_ok_(expr, #expr, __LINE__)
static void expect_ok_(opg_status st, const char *what, int line) {
    if (st != OPG_OK) {
        print_error("line %d: %s: %s: %s\n", line, what, opg_strerror(st), opg_last_error());
        fail();
    }
}

#define expect_err(expr, want, n1, n2) expect_err_(expr, want, n1, n2, #expr, __LINE__)
static void expect_err_(opg_status st, opg_status want, const char *n1, const char *n2, const char *what,
                        int line) {
    const char *msg = opg_last_error();
    if (st != want || !msg[0] || (n1 && !strstr(msg, n1)) || (n2 && !strstr(msg, n2))) {
        print_error("line %d: %s: expected %s with \"%s\" and \"%s\", got %s: \"%s\"\n", line, what,
                    opg_strerror(want), n1 ? n1 : "", n2 ? n2 : "", opg_strerror(st), msg);
        fail();
    }
}

static void expect_peers(const char *const *want, int n) {
    if (g_peers.n != n) {
        print_error("peers: %d entries, want %d\n", g_peers.n, n);
        fail();
    }
    for (int i = 0; i < n; i++) assert_string_equal(g_peers.v[i], want[i]);
}

static void expect_defaults(void) {
    assert_string_equal(g_listen, "tcp://0.0.0.0:5555");
    assert_null(g_name);
    assert_int_equal(g_threads, 4);
    assert_int_equal(g_verbose, 0);
    assert_int_equal(g_color, 1);
    assert_ptr_equal(g_peers.v, g_peer_defaults);
    assert_int_equal(g_peers.n, 2);
    assert_true(g_ratio == 0.5);
}

/* ---- flags ------------------------------------------------------------------------- */

static void test_no_args(void **state) {
    (void)state;
    expect_ok(parse_(NULL, NULL, (const char *[]){"prog", NULL}));
    expect_defaults();
    expect_ok(opg_opts_parse(g_opts, N_OPTS, 0, NULL, NULL, NULL));
    expect_defaults();
}

static void test_flags_every_type(void **state) {
    (void)state;
    expect_ok(PARSE("--listen-workers", "tcp://a:1", "--name=bob", "-t", "8", "--verbose", "--no-color",
                    "--peer", "x", "--peer=y", "-p", "z", "--ratio", "0.25"));
    assert_string_equal(g_listen, "tcp://a:1");
    assert_string_equal(g_name, "bob");
    assert_int_equal(g_threads, 8);
    assert_int_equal(g_verbose, 1);
    assert_int_equal(g_color, 0);
    expect_peers((const char *[]){"x", "y", "z"}, 3); /* the first flag replaces the default */
    assert_string_equal(g_peer_defaults[0], "d1");     /* which is not touched */
    assert_true(g_ratio == 0.25);

    /* the later flag wins; a second parse replaces what the first allocated */
    expect_ok(PARSE("-l", "first", "-l", "second", "--threads=2", "--threads", "64", "--ratio=-1e-3"));
    assert_string_equal(g_listen, "second");
    assert_int_equal(g_threads, 64);
    assert_true(g_ratio == -1e-3);
    expect_ok(PARSE("-t8", "-lattached")); /* a short option's value attached, as getopt takes it */
    assert_int_equal(g_threads, 8);
    assert_string_equal(g_listen, "attached");
    expect_ok(PARSE("--name", "", "--listen-workers=a=b"));
    assert_string_equal(g_name, "");
    assert_string_equal(g_listen, "a=b");

    opg_opts_free(g_opts, N_OPTS);
    assert_null(g_listen);
    assert_null(g_name);
    assert_null(g_peers.v);
    assert_int_equal(g_peers.n, 0);
}

static void test_bools(void **state) {
    (void)state;
    expect_ok(PARSE("-v", "--color"));
    assert_int_equal(g_verbose, 1);
    assert_int_equal(g_color, 1);
    expect_ok(PARSE("--no-verbose", "--no-color"));
    assert_int_equal(g_verbose, 0);
    assert_int_equal(g_color, 0);
    expect_ok(PARSE("--verbose=true", "--color=1"));
    assert_int_equal(g_verbose, 1);
    assert_int_equal(g_color, 1);
    expect_ok(PARSE("--verbose=false", "--color=0"));
    assert_int_equal(g_verbose, 0);
    assert_int_equal(g_color, 0);
    expect_ok(PARSE("--verbose", "--no-verbose"));
    assert_int_equal(g_verbose, 0);
    /* a bool never takes the next argument as its value */
    opg_strv pos = {0};
    expect_ok(parse_(NULL, &pos, (const char *[]){"prog", "--verbose", "false", NULL}));
    assert_int_equal(g_verbose, 1);
    assert_int_equal(pos.n, 1);
    assert_string_equal(pos.v[0], "false");
    opg_strv_clear(&pos);
    assert_null(pos.v);

    expect_err(PARSE("--verbose=maybe"), OPG_ERR_ARG, "--verbose", "maybe");
    expect_err(PARSE("--no-verbose=1"), OPG_ERR_ARG, "--no-verbose", "no value");
    expect_err(PARSE("--no-threads"), OPG_ERR_ARG, "unknown flag --no-threads", NULL);
}

static void test_positional(void **state) {
    (void)state;
    opg_strv pos = {0};
    expect_ok(parse_(NULL, &pos, (const char *[]){"prog", "a", "-t", "2", "-", "b", "--", "--threads", "-v", NULL}));
    assert_int_equal(g_threads, 2);
    assert_int_equal(g_verbose, 0);
    assert_int_equal(pos.n, 5);
    const char *want[] = {"a", "-", "b", "--threads", "-v"};
    for (int i = 0; i < 5; i++) assert_string_equal(pos.v[i], want[i]);
    opg_strv_clear(&pos);
    opg_strv_clear(NULL);
    expect_err(PARSE("-t", "2", "extra"), OPG_ERR_ARG, "unexpected argument", "extra");
    assert_int_equal(g_threads, 2); /* from the call before: the failed one changed nothing */
}

/* ---- config files ------------------------------------------------------------------ */

static const char g_full_config[] =
    "{\n"
    "  \"listen-workers\": \"tcp://cfg:7\",\n"
    "  \"name\": \"from-config\",\n"
    "  \"threads\": 9,\n"
    "  \"verbose\": true,\n"
    "  \"color\": false,\n"
    "  \"peer\": [\"c1\", \"c2\"],\n"
    "  \"ratio\": 2.5e-1\n"
    "}\n";

static void test_config_every_type(void **state) {
    (void)state;
    const char *path = write_config(g_full_config);
    expect_ok(PARSE("--config", path));
    assert_string_equal(g_listen, "tcp://cfg:7");
    assert_string_equal(g_name, "from-config");
    assert_int_equal(g_threads, 9);
    assert_int_equal(g_verbose, 1);
    assert_int_equal(g_color, 0);
    expect_peers((const char *[]){"c1", "c2"}, 2); /* a config array replaces the list */
    assert_true(g_ratio == 0.25);
    unlink(path);

    /* in memory; an empty array, an integer-valued number for an int */
    const char doc[] = "{\"peer\": [], \"threads\": 12.0, \"listen-workers\": \"mem\"}";
    expect_ok(opg_opts_parse_config(g_opts, N_OPTS, doc, strlen(doc)));
    assert_int_equal(g_peers.n, 0);
    assert_null(g_peers.v);
    assert_int_equal(g_threads, 12);
    assert_string_equal(g_listen, "mem");
    expect_ok(opg_opts_parse_config(g_opts, N_OPTS, " {} ", 4));
    assert_int_equal(g_threads, 12);
    /* not NUL-terminated: only len bytes are read */
    const char cut[] = "{\"threads\": 3}garbage";
    expect_ok(opg_opts_parse_config(g_opts, N_OPTS, cut, 14));
    assert_int_equal(g_threads, 3);
}

static void test_precedence(void **state) {
    (void)state;
    const char *path = write_config(g_full_config);
    char eq[96];
    snprintf(eq, sizeof eq, "--config=%s", path);
    /* config before, after and between the flags: the flags win */
    expect_ok(PARSE("--threads", "3", "--config", path, "--no-verbose", "--peer", "f1"));
    assert_int_equal(g_threads, 3);
    assert_int_equal(g_verbose, 0);
    assert_int_equal(g_color, 0);                             /* from the config */
    expect_peers((const char *[]){"c1", "c2", "f1"}, 3);      /* flags append to the config's list */
    assert_string_equal(g_name, "from-config");

    restart();
    expect_ok(PARSE("-l", "flag", "--ratio", "7", eq));
    assert_string_equal(g_listen, "flag");
    assert_true(g_ratio == 7);
    assert_int_equal(g_threads, 9);

    /* two configs: in order */
    const char *p2 = write_config("{\"threads\": 20, \"peer\": [\"second\"]}");
    char p2c[64];
    snprintf(p2c, sizeof p2c, "%s", p2);
    expect_ok(PARSE("--config", p2c, eq));
    assert_int_equal(g_threads, 9);
    expect_peers((const char *[]){"c1", "c2"}, 2);
    unlink(p2c);
    unlink(path);
}

static void test_config_errors(void **state) {
    (void)state;
    const char *p = write_config("{\n  \"threads\": 4,\n  \"bogus\": 1\n}\n");
    expect_err(PARSE("--config", p), OPG_ERR_ARG, "unknown key \"bogus\"", p);
    unlink(p);

    p = write_config("{\n  \"threads\": 4,\n  oops\n}\n");
    /* cJSON points at or just after the offending byte */
    expect_err(PARSE("--config", p), OPG_ERR_FORMAT, "near line 3, column ", p);
    assert_true(strstr(opg_last_error(), "column 3") || strstr(opg_last_error(), "column 4"));
    unlink(p);
    p = write_config("{\n\"threads\": 4,\n}");
    expect_err(PARSE("--config", p), OPG_ERR_FORMAT, "near line 3, column ", NULL);
    unlink(p);
    p = write_config("{\"threads\": 4}\n}");
    expect_err(PARSE("--config", p), OPG_ERR_FORMAT, "near line 2, column 1", NULL);
    unlink(p);

    expect_err(PARSE("--config", "/nonexistent/opg.json"), OPG_ERR_NOT_FOUND, "config /nonexistent/opg.json", NULL);
    expect_err(PARSE("--config"), OPG_ERR_ARG, "--config needs a value", NULL);

#define CFG_ERR(text, want, n1, n2) \
    expect_err(opg_opts_parse_config(g_opts, N_OPTS, text, strlen(text)), want, n1, n2)
    CFG_ERR("{\"threads\": \"4\"}", OPG_ERR_ARG, "\"threads\"", "integer");
    CFG_ERR("{\"threads\": 4.5}", OPG_ERR_ARG, "\"threads\"", "integer");
    CFG_ERR("{\"threads\": 1e300}", OPG_ERR_ARG, "\"threads\"", "integer");
    CFG_ERR("{\"threads\": 65}", OPG_ERR_ARG, "\"threads\"", "out of range [1, 64]");
    CFG_ERR("{\"threads\": 0}", OPG_ERR_ARG, "\"threads\"", "out of range");
    CFG_ERR("{\"verbose\": 1}", OPG_ERR_ARG, "\"verbose\"", "true or false");
    CFG_ERR("{\"name\": 3}", OPG_ERR_ARG, "\"name\"", "string");
    CFG_ERR("{\"name\": null}", OPG_ERR_ARG, "\"name\"", "string");
    CFG_ERR("{\"ratio\": \"x\"}", OPG_ERR_ARG, "\"ratio\"", "number");
    CFG_ERR("{\"peer\": \"one\"}", OPG_ERR_ARG, "\"peer\"", "array of strings");
    CFG_ERR("{\"peer\": [\"a\", 2]}", OPG_ERR_ARG, "\"peer\"", "element 1");
    CFG_ERR("{\"threads\": 4, \"threads\": 5}", OPG_ERR_ARG, "\"threads\"", "twice");
    CFG_ERR("{\"config\": \"x\"}", OPG_ERR_ARG, "unknown key \"config\"", NULL);
    CFG_ERR("[1, 2]", OPG_ERR_FORMAT, "object", NULL);
    CFG_ERR("", OPG_ERR_FORMAT, "line 1, column 1", NULL);
    expect_err(opg_opts_parse_config(g_opts, N_OPTS, "{\"a\"\0}", 6), OPG_ERR_FORMAT, "NUL byte",
               "line 1, column 5");
    /* escaped, a NUL would cut the decoded string short ("a\u0000b" read as "a") */
    CFG_ERR("{\n \"name\": \"a\\u0000b\"}", OPG_ERR_FORMAT, "\\u0000 (a NUL character)", "line 2, column 12");
#undef CFG_ERR
    /* every failure above left the defaults alone */
    expect_defaults();
    /* a config error after good flags changes nothing either */
    p = write_config("{\"threads\": 4, \"verbose\": \"yes\"}");
    expect_err(PARSE("-t", "7", "--config", p, "-l", "x"), OPG_ERR_ARG, "\"verbose\"", p);
    unlink(p);
    expect_defaults();
}

static void test_flag_errors(void **state) {
    (void)state;
    expect_err(PARSE("--bogus"), OPG_ERR_ARG, "unknown flag --bogus", NULL);
    expect_err(PARSE("--bogus=1"), OPG_ERR_ARG, "unknown flag --bogus", NULL);
    expect_err(PARSE("-x"), OPG_ERR_ARG, "unknown flag -x", NULL);
    expect_err(PARSE("-tv"), OPG_ERR_ARG, "-t: \"v\" is not an integer", NULL); /* -t with the value v attached */
    expect_err(PARSE("-vt"), OPG_ERR_ARG, "unknown flag -vt", NULL); /* no clusters of booleans */
    expect_err(PARSE("-x5"), OPG_ERR_ARG, "unknown flag -x5", NULL);
    /* a long name after one dash is not -t with "hreads=4" attached */
    expect_err(PARSE("-threads=4"), OPG_ERR_ARG, "unknown flag -threads=4 (a long option takes two dashes: --threads)",
               NULL);
    expect_err(PARSE("-threads", "4"), OPG_ERR_ARG, "two dashes: --threads", NULL);
    expect_err(PARSE("--threads", "abc"), OPG_ERR_ARG, "--threads", "\"abc\" is not an integer");
    expect_err(PARSE("--threads", "4x"), OPG_ERR_ARG, "--threads", "not an integer");
    expect_err(PARSE("--threads", " 4"), OPG_ERR_ARG, "--threads", "not an integer");
    expect_err(PARSE("--threads="), OPG_ERR_ARG, "--threads", "not an integer");
    expect_err(PARSE("-t", "99999999999999999999"), OPG_ERR_ARG, "-t", "64-bit");
    expect_err(PARSE("--threads", "65"), OPG_ERR_ARG, "--threads", "65 is out of range [1, 64]");
    expect_err(PARSE("-t", "0"), OPG_ERR_ARG, "-t", "out of range");
    expect_err(PARSE("--ratio", "fast"), OPG_ERR_ARG, "--ratio", "not a number");
    expect_err(PARSE("--ratio", "inf"), OPG_ERR_ARG, "--ratio", "finite");
    expect_err(PARSE("--threads"), OPG_ERR_ARG, "--threads needs a value", NULL);
    expect_err(PARSE("-v", "-l"), OPG_ERR_ARG, "-l needs a value", NULL);
    /* the first error is the one reported; nothing was applied */
    expect_err(PARSE("-t", "5", "--bogus", "--threads", "x"), OPG_ERR_ARG, "--bogus", NULL);
    expect_defaults();
}

/* ---- help -------------------------------------------------------------------------- */

static void test_help(void **state) {
    (void)state;
    int help = 0;
    expect_ok(parse_(&help, NULL, (const char *[]){"prog", "-t", "5", "--help", NULL}));
    assert_int_equal(help, 1);
    assert_int_equal(g_threads, 4); /* nothing applied */
    help = 0;
    /* --help wins over errors anywhere on the line */
    expect_ok(parse_(&help, NULL, (const char *[]){"prog", "--bogus", "-t", "x", "-h", NULL}));
    assert_int_equal(help, 1);
    /* without a help pointer it is an ordinary unknown flag */
    expect_err(PARSE("--help"), OPG_ERR_ARG, "unknown flag --help", NULL);
    help = 0;
    expect_ok(parse_(&help, NULL, (const char *[]){"prog", "-t", "5", NULL}));
    assert_int_equal(help, 0);

    restart();
    g_name = "";
    char *text = opg_opts_help(g_opts, N_OPTS, "opg-worker [OPTIONS]");
    assert_non_null(text);
    const char *want[] = {
        "usage: opg-worker [OPTIONS]\n",
        "  -l, --listen-workers ADDR",
        "where workers connect (default: tcp://0.0.0.0:5555)\n",
        "      --name STR",
        "node name (default: \"\")\n",
        "  -t, --threads N",
        "worker threads (1..64, default: 4)\n",
        "  -v, --[no-]verbose",
        "debug logs (default: false)\n",
        "      --[no-]color",
        "colored output (default: true)\n",
        "  -p, --peer ADDR",
        "a peer (repeatable, default: d1,d2)\n",
        "      --ratio R",
        "sampling ratio (default: 0.5)\n",
        "      --config FILE",
        "  -h, --help",
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        if (!strstr(text, want[i])) {
            print_error("help lacks \"%s\":\n%s", want[i], text);
            fail();
        }
    }
    /* the help column is aligned */
    const char *a = strstr(text, "where workers"), *b = strstr(text, "node name");
    const char *la = a, *lb = b;
    while (la > text && la[-1] != '\n') la--;
    while (lb > text && lb[-1] != '\n') lb--;
    assert_int_equal(a - la, b - lb);
    free(text);
    g_name = NULL;

    text = opg_opts_help(g_opts, 0, NULL);
    assert_non_null(text);
    assert_null(strstr(text, "usage"));
    assert_non_null(strstr(text, "--help"));
    free(text);
}

/* ---- the table itself and ownership --------------------------------------------------- */

static void test_bad_tables(void **state) {
    (void)state;
    int64_t i64 = 0;
    char sn = 0;
    const char *args[] = {"prog", NULL};
    opg_opt t[2] = {{"a", 0, OPG_OPT_INT, &i64, 0, 0, NULL, NULL}, {"b", 0, OPG_OPT_INT, &i64, 0, 0, NULL, NULL}};
    expect_ok(opg_opts_parse(t, 2, 1, (char **)args, NULL, NULL));
    t[1].name = "a";
    expect_err(opg_opts_parse(t, 2, 1, (char **)args, NULL, NULL), OPG_ERR_ARG, "--a defined twice", NULL);
    t[1].name = "help";
    expect_err(opg_opts_parse(t, 2, 1, (char **)args, NULL, NULL), OPG_ERR_ARG, "built in", NULL);
    t[1].name = "config";
    expect_err(opg_opts_parse_config(t, 2, "{}", 2), OPG_ERR_ARG, "built in", NULL);
    t[1].name = "-b";
    expect_err(opg_opts_parse(t, 2, 1, (char **)args, NULL, NULL), OPG_ERR_ARG, "bad name", NULL);
    t[1].name = "b";
    t[0].short_name = t[1].short_name = 'x';
    expect_err(opg_opts_parse(t, 2, 1, (char **)args, NULL, NULL), OPG_ERR_ARG, "-x defined twice", NULL);
    t[1].short_name = 'h';
    expect_err(opg_opts_parse(t, 2, 1, (char **)args, NULL, NULL), OPG_ERR_ARG, "short name", NULL);
    t[1].short_name = sn;
    t[1].min = 5;
    t[1].max = 1;
    expect_err(opg_opts_parse(t, 2, 1, (char **)args, NULL, NULL), OPG_ERR_ARG, "min > max", NULL);
    t[1].min = t[1].max = 0;
    t[1].dst = NULL;
    expect_err(opg_opts_parse(t, 2, 1, (char **)args, NULL, NULL), OPG_ERR_ARG, "destination", NULL);
    /* min == max == 0: unbounded */
    t[1].dst = &i64;
    const char *big[] = {"prog", "--a", "-9223372036854775808", NULL};
    expect_ok(opg_opts_parse(t, 2, 3, (char **)big, NULL, NULL));
    assert_true(i64 == INT64_MIN);
}

static void test_ownership(void **state) {
    (void)state;
    /* a caller-owned heap default survives a parse and opg_opts_free */
    char *mine = strdup("mine");
    g_listen = mine;
    expect_ok(PARSE("-l", "parsed"));
    assert_string_equal(g_listen, "parsed");
    opg_opts_free(g_opts, N_OPTS);
    assert_null(g_listen);
    assert_string_equal(mine, "mine");
    g_listen = mine;
    opg_opts_free(g_opts, N_OPTS); /* not the parser's: left alone */
    assert_ptr_equal(g_listen, mine);
    free(mine);
    g_listen = NULL;

    /* a config array replacing a parsed one frees the old; flags then append */
    expect_ok(PARSE("--peer", "a"));
    const char doc[] = "{\"peer\": [\"b\", \"c\"]}";
    expect_ok(opg_opts_parse_config(g_opts, N_OPTS, doc, strlen(doc)));
    expect_peers((const char *[]){"b", "c"}, 2);
    expect_ok(PARSE("-p", "d", "-p", "e"));
    expect_peers((const char *[]){"b", "c", "d", "e"}, 4);
    /* opg_strv_clear on a parsed vector, then free finds nothing to do */
    opg_strv_clear(&g_peers);
    assert_null(g_peers.v);
    opg_opts_free(g_opts, N_OPTS);
    /* repeated parses of strings: each replaces and frees the previous */
    for (int i = 0; i < 100; i++) expect_ok(PARSE("--name", "x", "-l", "y"));
    assert_string_equal(g_name, "x");
}


/* opg_opts_main: what the binaries' main() calls. */
static void test_main_helper(void **state) {
    (void)state;
    char *text = NULL;
    char *a1[] = {"prog", "-t", "3", NULL};
    assert_int_equal(opg_opts_main(g_opts, N_OPTS, 3, a1, "prog [OPTIONS]", &text), -1);
    assert_null(text);
    assert_int_equal(g_threads, 3);
    char *a2[] = {"prog", "--help", NULL};
    assert_int_equal(opg_opts_main(g_opts, N_OPTS, 2, a2, "prog [OPTIONS]", &text), 0);
    assert_non_null(text);
    assert_non_null(strstr(text, "prog [OPTIONS]"));
    assert_non_null(strstr(text, "--listen-workers"));
    free(text);
    char *a3[] = {"prog", "--threads", "99", NULL};
    assert_int_equal(opg_opts_main(g_opts, N_OPTS, 3, a3, "prog [OPTIONS]", &text), 2);
    assert_non_null(text);
    assert_non_null(strstr(text, "--threads"));
    assert_non_null(strstr(text, "--help lists the options"));
    free(text);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_no_args, reset, cleanup),
        cmocka_unit_test_setup_teardown(test_flags_every_type, reset, cleanup),
        cmocka_unit_test_setup_teardown(test_bools, reset, cleanup),
        cmocka_unit_test_setup_teardown(test_positional, reset, cleanup),
        cmocka_unit_test_setup_teardown(test_config_every_type, reset, cleanup),
        cmocka_unit_test_setup_teardown(test_precedence, reset, cleanup),
        cmocka_unit_test_setup_teardown(test_config_errors, reset, cleanup),
        cmocka_unit_test_setup_teardown(test_flag_errors, reset, cleanup),
        cmocka_unit_test_setup_teardown(test_help, reset, cleanup),
        cmocka_unit_test_setup_teardown(test_bad_tables, reset, cleanup),
        cmocka_unit_test_setup_teardown(test_ownership, reset, cleanup),
        cmocka_unit_test_setup_teardown(test_main_helper, reset, cleanup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
