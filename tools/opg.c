/* opg.c: the opg command line (client side of the network; local generation). */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend.h"
#include "chat.h"
#include "contract.h"
#include "default_model.h"
#include "generate.h"
#include "model.h"
#include "piece.h"
#include "prompt.h"
#include "tokenizer.h"
#include "trace.h"
#ifdef OPG_HAVE_NETWORK
#include "cmd_net.h"
#endif


/* Prompts of other lengths that --batch-with runs beside the user's prompt. */
static const char *k_neighbours[] = {
    "The capital of France is",
    "Write a haiku about the sea.",
    "1, 2, 3, 4,",
    "Explain in one paragraph why the sky is blue, and mention Rayleigh scattering and the "
    "wavelength dependence of the effect.",
    "Hi",
    "List three prime numbers greater than one hundred:",
    "Once upon a time, in a small village at the edge of a great forest, there lived an old "
    "clockmaker who",
};
#define N_NEIGHBOURS (int)(sizeof k_neighbours / sizeof k_neighbours[0])

static void usage_main(FILE *f) {
    fprintf(f,
            "usage: opg <command> [options]\n"
            "\n"
            "commands:\n"
            "  run     generate text locally from a GGUF model, with its trace root\n"
#ifdef OPG_HAVE_NETWORK
            "  submit  send a job to a coordinator and print its output and trace root\n"
            "  status  a submitted job's state\n"
            "  result  a submitted job's output and trace root (--wait, --stream)\n"
            "  cancel  cancel a submitted job\n"
            "  keygen  write a new node identity key (CurveZMQ, receipts)\n"
            "  verify  check a saved job record offline: receipt, and the trace root re-executed\n"
#endif
            "\n"
            "opg <command> --help shows the command's options.\n");
}

static void usage_run(FILE *f) {
    fprintf(f,
            "usage: opg run [-m MODEL.gguf] -p PROMPT | -f FILE [options]\n"
            "\n"
            "  -m, --model PATH     GGUF model (default: $OPG_MODEL or %s)\n"
            "  -p, --prompt TEXT    the prompt\n"
            "  -f, --prompt-file F  the prompt is file F's text (\"-\": standard input; at most\n"
            "                       16 MiB), for prompts longer than a command line holds\n"
            "      --chat           wrap the prompt in the model's chat template\n"
            "  -n, --max-tokens N   tokens to generate (default 64)\n"
            "      --seed S         sampling seed (default 0)\n"
            "      --temp T         temperature, 0 = greedy (default 0)\n"
            "      --top-k K        top-k cut, 0 = off (default 40)\n"
            "      --top-p P        nucleus cut, 1 = off (default 0.95)\n"
            "  -t, --threads T      CPU threads (default, or 0: all)\n"
            "      --backend B      auto, cpu, cuda or cuda:N (default: $OPG_BACKEND or auto:\n"
            "                       the GPU when usable, else the cpu with a notice)\n"
            "  -c, --ctx N          context per sequence (default: prompt + max tokens, at\n"
            "                       most the model's training context; generation stops when\n"
            "                       the context is full)\n"
            "      --batch-with K   also generate for K other prompts (0..%d) in the same\n"
            "                       batches; the output and trace root of yours must not change\n"
            "      --verify         re-execute the job by teacher-forced prefill and compare\n"
            "                       its trace root (what a validator does)\n"
            "  -q, --quiet          no streamed text, only the summary\n"
            "  -h, --help           this help\n"
            "\n"
            "Exit 0 done; 3 --verify found another trace root; 1 an error (no model, a\n"
            "prompt that does not fit, logits all NaN); 2 usage.\n",
            OPG_DEFAULT_MODEL, N_NEIGHBOURS);
}

typedef struct {
    const opg_tokenizer *tok;
    int quiet;
} stream_ctx;

static int on_token(void *ctx, int seq, int32_t token) {
    stream_ctx *s = ctx;
    if (seq != 0 || s->quiet) return 0;
    opg_tool_write_piece(s->tok, token, stdout);
    fflush(stdout);
    return 0;
}

static void progress_bar(void *ctx, uint64_t done, uint64_t total) {
    (void)ctx;
    if (!isatty(STDERR_FILENO)) return;
    int width = 40, filled = total ? (int)(width * done / total) : width;
    fprintf(stderr, "\rloading [%.*s%*s] %3d%%", filled, "########################################",
            width - filled, "", total ? (int)(100 * done / total) : 100);
    if (done >= total) fputs("\r\033[K", stderr);
    fflush(stderr);
}

static int die(const char *what, opg_status st) {
    const char *msg = opg_last_error();
    size_t n = strlen(what);
    /* messages that already start with "what:" (the path, "tokenizer") get no second one */
    if (strncmp(msg, what, n) == 0 && msg[n] == ':')
        fprintf(stderr, "opg: %s (%s)\n", msg, opg_strerror(st));
    else
        fprintf(stderr, "opg: %s: %s (%s)\n", what, msg, opg_strerror(st));
    return 1;
}

static int parse_i64(const char *s, const char *name, int64_t lo, int64_t hi, int64_t *out) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end || end == s || v < lo || v > hi) {
        fprintf(stderr, "opg run: %s must be an integer in [%lld, %lld], got '%s'\n", name,
                (long long)lo, (long long)hi, s);
        return -1;
    }
    *out = v;
    return 0;
}

static int parse_f(const char *s, const char *name, double lo, double hi, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || *end || end == s || !(v >= lo && v <= hi)) {
        fprintf(stderr, "opg run: %s must be a number in [%g, %g], got '%s'\n", name, lo, hi, s);
        return -1;
    }
    *out = v;
    return 0;
}

static int cmd_run(int argc, char **argv) {
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'}, {"prompt", required_argument, 0, 'p'},
        {"prompt-file", required_argument, 0, 'f'},
        {"chat", no_argument, 0, 'C'},        {"max-tokens", required_argument, 0, 'n'},
        {"seed", required_argument, 0, 'S'},  {"temp", required_argument, 0, 'T'},
        {"top-k", required_argument, 0, 'K'}, {"top-p", required_argument, 0, 'P'},
        {"threads", required_argument, 0, 't'}, {"ctx", required_argument, 0, 'c'},
        {"batch-with", required_argument, 0, 'B'}, {"verify", no_argument, 0, 'V'},
        {"quiet", no_argument, 0, 'q'},       {"help", no_argument, 0, 'h'},
        {"backend", required_argument, 0, 'b'},
        {0, 0, 0, 0}};
    const char *model_path = opg_tool_default_model();
    const char *prompt = NULL, *prompt_file = NULL;
    char *prompt_buf = NULL; /* the file's text */
    const char *backend = getenv("OPG_BACKEND") && *getenv("OPG_BACKEND") ? getenv("OPG_BACKEND")
                                                                         : "auto";
    int chat = 0, verify = 0, quiet = 0;
    int64_t max_tokens = 64, seed = 0, top_k = 40, threads = 0, n_ctx = 0, batch_with = 0;
    double temp = 0.0, top_p = 0.95;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "m:p:f:n:t:c:qh", opts, NULL)) != -1) {
        switch (c) {
        case 'm': model_path = optarg; break;
        case 'p': prompt = optarg; break;
        case 'f': prompt_file = optarg; break;
        case 'C': chat = 1; break;
        case 'n': if (parse_i64(optarg, "--max-tokens", 0, 1 << 20, &max_tokens)) return 2; break;
        case 'S': if (parse_i64(optarg, "--seed", 0, INT64_MAX, &seed)) return 2; break;
        case 'T': if (parse_f(optarg, "--temp", 0, 100, &temp)) return 2; break;
        case 'K': if (parse_i64(optarg, "--top-k", 0, 1 << 24, &top_k)) return 2; break;
        case 'P': if (parse_f(optarg, "--top-p", 0, 1, &top_p)) return 2; break;
        case 't': if (parse_i64(optarg, "--threads", 0, 1024, &threads)) return 2; break; /* 0: all, as the worker's */
        case 'c': if (parse_i64(optarg, "--ctx", 1, 1 << 24, &n_ctx)) return 2; break;
        case 'B': if (parse_i64(optarg, "--batch-with", 0, N_NEIGHBOURS, &batch_with)) return 2; break;
        case 'V': verify = 1; break;
        case 'q': quiet = 1; break;
        case 'b': backend = optarg; break;
        case 'h': usage_run(stdout); return 0;
        default: usage_run(stderr); return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "opg run: unexpected argument '%s'\n", argv[optind]);
        usage_run(stderr);
        return 2;
    }
    if (!opg_backend_name_ok(backend)) {
        fprintf(stderr, "opg run: --backend must be auto, cpu, cuda or cuda:N, got '%s'\n",
                backend);
        return 2;
    }
    if (!prompt == !prompt_file) {
        fprintf(stderr, "opg run: %s\n", prompt ? "give the prompt once: -p TEXT or -f FILE"
                                                : "a prompt is required (-p TEXT or -f FILE)");
        usage_run(stderr);
        return 2;
    }
    if (access(model_path, R_OK) != 0) {
        fprintf(stderr, "opg run: cannot read model %s: %s\n%s", model_path, strerror(errno),
                strcmp(model_path, OPG_DEFAULT_MODEL) == 0
                    ? "  (scripts/fetch-model.sh downloads the default model)\n" : "");
        return 1;
    }

    if (prompt_file) {
        if (opg_tool_read_prompt("opg run", prompt_file, (size_t)16 << 20, &prompt_buf)) return 1;
        prompt = prompt_buf;
    }

    opg_backend *be = NULL;
    opg_model *m = NULL;
    opg_tokenizer *tok = NULL;
    int rc = 1;
    const char *notice = NULL;
    opg_status st = opg_backend_new_auto(backend, (int)threads, &be, &notice);
    if (st) {
        rc = die("backend", st);
        goto out;
    }
    if (notice) fprintf(stderr, "opg: %s\n", notice);
    if ((st = opg_model_load(model_path, be, progress_bar, NULL, &m))) { rc = die(model_path, st); goto out; }
    if ((st = opg_tokenizer_from_gguf(opg_model_gguf(m), &tok))) { rc = die("tokenizer", st); goto out; }

    const opg_hparams *hp = opg_model_hparams(m);
    if (opg_tokenizer_n_vocab(tok) > hp->n_vocab) {
        /* its ids past the embedding's rows could not be run */
        fprintf(stderr, "opg run: %s: the tokenizer has %d tokens but token_embd only %lld rows\n",
                model_path, (int)opg_tokenizer_n_vocab(tok), (long long)hp->n_vocab);
        goto out;
    }
    /* the context a sequence gets (the scheduler's rule): the prompt must leave room */
    const int64_t ctx_cap = n_ctx > 0 ? n_ctx : hp->n_ctx_train;
    int n_req = 0;
    opg_gen_request reqs[1 + N_NEIGHBOURS];
    opg_gen_result res[1 + N_NEIGHBOURS];
    int32_t *ids[1 + N_NEIGHBOURS] = {0};
    memset(reqs, 0, sizeof reqs);
    /* every end-of-generation token of the vocabulary stops */
    int32_t *stop = malloc((size_t)opg_tokenizer_n_vocab(tok) * sizeof *stop + 1);
    int n_stop = 0;
    if (!stop) { fprintf(stderr, "opg run: out of memory\n"); goto out; }
    for (int32_t i = 0; i < opg_tokenizer_n_vocab(tok); i++)
        if (opg_tokenizer_is_eog(tok, i)) stop[n_stop++] = i;
    for (int r = 0; r <= (int)batch_with; r++) {
        const char *text = r == 0 ? prompt : k_neighbours[r - 1];
        int64_t n_prompt = 0;
        if ((st = opg_chat_encode_prompt(tok, opg_model_gguf(m), text, chat, &ids[n_req], &n_prompt))) {
            if (r == 0) {
                rc = die("tokenize", st);
                goto free_ids;
            }
            fprintf(stderr, "opg run: --batch-with: neighbour prompt %d left out (%s)\n", r,
                    opg_last_error());
            continue;
        }
        /* the user's prompt must fit; a neighbour that does not is left out:
         * it is there to share the batches, and leaving it out changes nothing
         * of the user's job */
        const char *why = n_prompt == 0 ? "encodes to no tokens"
                          : n_prompt >= ctx_cap ? "does not fit the context" : NULL;
        if (why && r == 0) {
            if (n_prompt == 0) fprintf(stderr, "opg run: the prompt encodes to no tokens\n");
            else
                fprintf(stderr, "opg run: the prompt is %lld tokens, the context holds %lld%s\n",
                        (long long)n_prompt, (long long)ctx_cap,
                        n_ctx > 0 ? " (-c)" : " (the model's training context)");
            goto free_ids;
        }
        if (why) {
            fprintf(stderr, "opg run: --batch-with: neighbour prompt %d left out (%lld tokens: %s of %lld)\n",
                    r, (long long)n_prompt, why, (long long)ctx_cap);
            free(ids[n_req]);
            ids[n_req] = NULL;
            continue;
        }
        opg_gen_request *q = &reqs[n_req++];
        q->n_prompt = n_prompt;
        q->prompt = ids[n_req - 1];
        q->max_tokens = max_tokens;
        q->sampling.temperature = (float)temp;
        q->sampling.top_k = (int32_t)top_k;
        q->sampling.top_p = (float)top_p;
        q->sampling.seed = (uint64_t)seed + (uint64_t)r;
        q->stop = stop;
        q->n_stop = n_stop;
    }
    stream_ctx sc = {tok, quiet};
    opg_gen_options go = {0};
    go.n_ctx = n_ctx;
    go.on_token = on_token;
    go.ctx = &sc;
    if ((st = opg_generate(m, reqs, n_req, res, &go))) { rc = die("generate", st); goto free_ids; }
    if (!quiet) fputc('\n', stdout);

    uint8_t id[32], root[32];
    char hex[65];
    opg_model_id(m, id);
    opg_trace_root(res[0].trace, root);
    opg_hex(hex, root, 32);
    static const char *reasons[] = {"callback", "end of generation", "max tokens", "context full",
                                    "the logits were all NaN"};
    fprintf(stderr, "\n--- opg run\n");
    fprintf(stderr, "prompt tokens   %lld\n", (long long)reqs[0].n_prompt);
    fprintf(stderr, "output tokens   %lld (stopped: %s)\n", (long long)res[0].n_tokens, reasons[res[0].stop]);
    fprintf(stderr, "prefill         %.1f tokens/s (%lld tokens, %.3f s)\n",
                go.prefill_seconds > 0 ? go.prefill_tokens / go.prefill_seconds : 0.0,
                (long long)go.prefill_tokens, go.prefill_seconds);
    fprintf(stderr, "decode          %.1f tokens/s (%lld tokens, %.3f s)\n",
                go.decode_seconds > 0 ? go.decode_tokens / go.decode_seconds : 0.0,
                (long long)go.decode_tokens, go.decode_seconds);
    fprintf(stderr, "batch           %d sequence(s), threads %d, backend %s\n", n_req,
            threads ? (int)threads : (int)sysconf(_SC_NPROCESSORS_ONLN), be->ops->name);
    fprintf(stderr, "contract        v%d\n", OPG_CONTRACT_VERSION);
    opg_hex(hex, id, 32);
    fprintf(stderr, "model id        sha256:%s\n", hex);
    opg_hex(hex, root, 32);
    fprintf(stderr, "trace root      %s\n", hex);
    /* machine-readable line for scripts */
    printf("trace_root=%s\n", hex);
    rc = 0;
    if (res[0].stop == OPG_STOP_NAN) {
        fprintf(stderr, "opg run: the logits are all NaN at position %lld: the model overflows on this input, "
                        "no further token can be sampled\n",
                (long long)(reqs[0].n_prompt - 1 + res[0].n_tokens));
        rc = 1;
    } else if (verify) {
        opg_trace *rt = NULL;
        int64_t bad = -1;
        if ((st = opg_replay(m, reqs[0].prompt, reqs[0].n_prompt, res[0].tokens, res[0].n_tokens,
                             &reqs[0].sampling, 0, &rt, &bad))) {
            rc = die("replay", st);
        } else {
            uint8_t rroot[32];
            opg_trace_root(rt, rroot);
            int layer;
            int64_t diff = opg_trace_first_diff(res[0].trace, rt, &layer);
            opg_hex(hex, rroot, 32);
            int ok = memcmp(root, rroot, 32) == 0 && bad < 0;
            fprintf(stderr, "replay root     %s (%s)\n", hex, ok ? "match" : "MISMATCH");
            if (diff >= 0) fprintf(stderr, "first difference at output token %lld, layer %d\n", (long long)diff, layer);
            if (bad >= 0) fprintf(stderr, "sampler disagrees at output token %lld\n", (long long)bad);
            printf("replay_root=%s\n", hex);
            rc = ok ? 0 : 3;
            opg_trace_free(rt);
        }
    }
    for (int r = 0; r < n_req; r++) opg_gen_result_clear(&res[r]);
free_ids:
    for (int r = 0; r <= N_NEIGHBOURS; r++) free(ids[r]);
    free(stop);
out:
    opg_tokenizer_free(tok);
    opg_model_free(m);
    opg_backend_free(be);
    free(prompt_buf);
    return rc;
}

/* A command's exit status, made 1 when what it printed did not reach
 * standard output (a full disk, a closed pipe with SIGPIPE ignored): a
 * job id or result the caller never got is a failure, not success. */
static int output_checked(int rc) {
    if (fflush(stdout) == 0 && !ferror(stdout)) return rc;
    fprintf(stderr, "opg: writing to standard output: %s\n", strerror(errno));
    return rc ? rc : 1;
}

static int run_command(int argc, char **argv) {
    if (strcmp(argv[1], "run") == 0) return cmd_run(argc - 1, argv + 1);
#ifdef OPG_HAVE_NETWORK
    if (strcmp(argv[1], "submit") == 0) return opg_cmd_submit(argc - 1, argv + 1);
    if (strcmp(argv[1], "status") == 0) return opg_cmd_status(argc - 1, argv + 1);
    if (strcmp(argv[1], "result") == 0) return opg_cmd_result(argc - 1, argv + 1);
    if (strcmp(argv[1], "cancel") == 0) return opg_cmd_cancel(argc - 1, argv + 1);
    if (strcmp(argv[1], "keygen") == 0) return opg_cmd_keygen(argc - 1, argv + 1);
    if (strcmp(argv[1], "verify") == 0) return opg_cmd_verify(argc - 1, argv + 1);
#endif
    fprintf(stderr, "opg: unknown command '%s'\n", argv[1]);
    usage_main(stderr);
    return 2;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage_main(stderr);
        return 2;
    }
    if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
        usage_main(stdout);
        return output_checked(0);
    }
    return output_checked(run_command(argc, argv));
}
