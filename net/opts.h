/* opts.h: command-line flags and a JSON config file (cJSON) from one option
 * table, and the --help text made from the same table.
 *
 *   static char *listen = "tcp://0.0.0.0:5555";     default: a literal is fine
 *   static int64_t threads = 4;
 *   static int verbose = 0;
 *   static opg_strv peers;                           {NULL, 0}
 *   const opg_opt opts[] = {
 *       {"listen-workers", 'l', OPG_OPT_STR, &listen, 0, 0, "ADDR", "where workers connect"},
 *       {"threads", 0, OPG_OPT_INT, &threads, 1, 64, "N", "worker threads"},
 *       {"verbose", 'v', OPG_OPT_BOOL, &verbose, 0, 0, NULL, "debug logs"},
 *       {"peer", 0, OPG_OPT_STRS, &peers, 0, 0, "ADDR", "a peer (repeatable)"},
 *   };
 *   int help = 0;
 *   if (opg_opts_parse(opts, 4, argc, argv, &help, NULL) != OPG_OK) { print opg_last_error(); exit 2 }
 *   if (help) { char *t = opg_opts_help(opts, 4, "opg-worker [OPTIONS]"); print t; free(t); exit 0 }
 *   ...
 *   opg_opts_free(opts, 4);
 *
 * Ownership of STR and STRS destinations: before parsing, *dst may hold a
 * default the caller owns (a string literal, static storage, a strv of
 * literals): the parser never frees or writes into it, it only replaces the
 * pointer. Every string and array the parser allocates is recorded in a
 * process-wide set (mutex-protected), and only what is in that set is ever
 * freed: by a later parse that replaces it, by opg_opts_free and by
 * opg_strv_clear. So a table may be parsed more than once (flags, then a
 * reload with opg_opts_parse_config) without leaks. Free parser-made values
 * only through these functions, never with free() directly. */
#ifndef OPG_OPTS_H
#define OPG_OPTS_H

#include <stddef.h>
#include <stdint.h>

#include "status.h"

typedef enum { OPG_OPT_STR, OPG_OPT_INT, OPG_OPT_BOOL, OPG_OPT_STRS, OPG_OPT_DOUBLE } opg_opt_type;

/* For OPG_OPT_STRS (a repeatable flag / a JSON array of strings), and the
 * positional arguments. */
typedef struct {
    char **v;
    int n;
} opg_strv;

typedef struct {
    const char *name;    /* long flag without "--", and the config file key ("listen-workers");
                            [a-z0-9][a-z0-9-_]*, not "help" or "config" (built in) */
    char short_name;     /* 0: none; not 'h' (built in) */
    opg_opt_type type;
    void *dst;           /* char ** (STR), int64_t * (INT), int * (BOOL: 0/1), opg_strv * (STRS),
                            double * (DOUBLE) */
    int64_t min, max;    /* INT bounds (inclusive); min == max == 0: no bounds */
    const char *metavar; /* "ADDR" in the help (NULL: STR, N, X by type) */
    const char *help;    /* one line; the default is whatever *dst holds before parsing and is shown
                            in --help */
} opg_opt;

/* Parses argv[1..argc-1]:
 *   --name value, --name=value, -x value, -xvalue (STR, INT, DOUBLE, STRS)
 *   --name, --no-name, --name=true|false|1|0    (BOOL; -x sets it)
 *   --config FILE / --config=FILE               a JSON object of option names (always understood)
 *   --help, -h                                  *help = 1, OPG_OK, nothing applied (only when help
 *                                               is not NULL; wins over any error on the line)
 *   --                                          everything after it is positional
 * The config files are applied first, in order, then every flag in order,
 * wherever --config appears: a flag always beats the config. STRS: a
 * config array replaces the list; flags append to the list the config (or
 * an earlier parse) made, but the first flag replaces a caller-owned
 * default, so `--model a --model b` gives {a, b}, not {default, a, b}.
 * Positional arguments ("-" is one) go to pos when pos is not NULL
 * (strdup'ed, appended by the same rule; free with opg_strv_clear), else
 * they are an error.
 *
 * Errors name the flag or key: OPG_ERR_ARG for an unknown flag or config
 * key, a missing value, a malformed or out-of-range number, a JSON value of
 * the wrong type, a positional argument without pos, a bad table;
 * OPG_ERR_NOT_FOUND when a config file does not exist, OPG_ERR_IO when it
 * cannot be read (or is no regular file); OPG_ERR_FORMAT when it is not
 * JSON ("line L, column C" of the error) or not a JSON object; OPG_ERR_LIMIT
 * for a config over 1 MiB. Every flag value and every config is checked
 * before anything is stored, so on error the destinations are unchanged
 * (except on OPG_ERR_NOMEM). */
opg_status opg_opts_parse(const opg_opt *opts, int n, int argc, char **argv, int *help, opg_strv *pos);

/* Applies one in-memory JSON config (what --config does with a file's
 * bytes; json need not be NUL-terminated, but may not contain a NUL byte).
 * Values: STR a string, INT an integer-valued number within +-2^53 and the
 * bounds, BOOL true/false, STRS an array of strings, DOUBLE a number. A key
 * given twice is an error. Same errors and same all-or-nothing rule. */
opg_status opg_opts_parse_config(const opg_opt *opts, int n, const char *json, size_t len);

/* The --help text: "usage: <usage>\n" (skipped when usage is NULL), then
 * one aligned line per option ("  -l, --listen-workers ADDR  help (default:
 * tcp://0.0.0.0:5555)"), then --config and --help. Defaults are read from the
 * dsts now. NULL when out of memory; the caller frees with free(). */
char *opg_opts_help(const opg_opt *opts, int n, const char *usage);

/* Frees what the parser allocated into the dsts and resets those dsts (STR
 * to NULL, STRS to {NULL, 0}); caller-owned defaults are left alone. */
void opg_opts_free(const opg_opt *opts, int n);

/* Frees a vector: through the parser's records when the parser made it,
 * else v->v and each entry with free() (so it must then be heap memory);
 * resets it to {NULL, 0}. NULL is a no-op. */
void opg_strv_clear(opg_strv *v);

/* What a binary's main() does with its options, in one call: parses argv.
 * Returns -1 to go on (*text NULL); 0 after --help, with the help text in
 * *text (print it to stdout); 2 on a bad option, with "<error>\n(--help
 * lists the options)" in *text (print it to stderr, after the program's
 * name). Caller frees *text with free(). */
int opg_opts_main(const opg_opt *opts, int n, int argc, char **argv, const char *usage, char **text);

#endif
