/* test_net_keys.c: identity keys and key files (net/keys.h) and the ZAP
 * handler (net/zap.h).
 *
 * Keys: generate/save/load round trip, deterministic derivation checked
 * against RFC 8032 and libsodium's own conversion, refusal of an existing
 * file, of group/other-readable files, of every malformed line and of public
 * keys that do not match the seed; Z85 parsing; allow lists.
 * ZAP: the protocol spoken directly over inproc (every refusal and malformed
 * request answered, with the right code), then real CURVE sockets over
 * tcp://127.0.0.1: an allowed client gets through and is named by User-Id;
 * an unknown key, a plain client and a key of another domain get nothing
 * through. Files go to a mkdtemp directory under /tmp, removed at the end. */
#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "keys.h"
#include "sock.h"
#include "zap.h"

static char g_dir[64];

static int setup(void **state) {
    (void)state;
    if (sodium_init() < 0) return -1;
    if (!zmq_has("curve")) {
        fprintf(stderr, "test_net_keys: this libzmq has no CURVE support (zmq_has(\"curve\") is 0): "
                        "install a libzmq built with libsodium\n");
        return -1;
    }
    snprintf(g_dir, sizeof g_dir, "/tmp/opg_keys_XXXXXX");
    return mkdtemp(g_dir) ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    return system(cmd) == 0 ? 0 : -1;
}

static const char *tmp_path(const char *name) {
    static char p[4][128];
    static int k;
    k = (k + 1) % 4;
    snprintf(p[k], sizeof p[k], "%s/%s", g_dir, name);
    return p[k];
}

static void write_file(const char *path, const void *data, size_t n, mode_t mode) {
    unlink(path);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, mode);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, n), (ssize_t)n);
    assert_int_equal(fchmod(fd, mode), 0);
    close(fd);
}

#define assert_ok(x) assert_ok_((x), #x, __LINE__)
static void assert_ok_(opg_status st, const char *what, int line) {
    if (st != OPG_OK) {
        print_error("line %d: %s: %s: %s\n", line, what, opg_strerror(st), opg_last_error());
        fail();
    }
}

/* st must be want with needle (if any) in the message. */
#define expect_st(st, want, needle) expect_st_((st), want, needle, __LINE__)
static void expect_st_(opg_status st, opg_status want, const char *needle, int line) {
    const char *msg = opg_last_error();
    if (st != want || !msg[0] || (needle && !strstr(msg, needle))) {
        print_error("line %d: expected %s with \"%s\", got %s: \"%s\"\n", line, opg_strerror(want),
                    needle ? needle : "", opg_strerror(st), msg);
        fail();
    }
}

static void seed_fill(uint8_t seed[32], uint8_t base) {
    for (int i = 0; i < 32; i++) seed[i] = (uint8_t)(base + i);
}

/* ---- keypairs --------------------------------------------------------------------- */
static void test_from_seed(void **state) {
    (void)state;
    /* RFC 8032 section 7.1, test 1: the Ed25519 key of this secret. */
    static const char rfc_seed[] = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
    static const char rfc_pk[] = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
    uint8_t seed[32], pk[32];
    assert_int_equal(sodium_hex2bin(seed, 32, rfc_seed, 64, NULL, NULL, NULL), 0);
    assert_int_equal(sodium_hex2bin(pk, 32, rfc_pk, 64, NULL, NULL, NULL), 0);
    opg_keypair kp, kp2;
    assert_ok(opg_keypair_from_seed(seed, &kp));
    tu_assert_bytes(kp.sign_pk, pk, 32, "RFC 8032 public key");
    tu_assert_bytes(kp.seed, seed, 32, "seed kept");

    /* deterministic, and the curve pair is libsodium's conversion */
    seed_fill(seed, 0);
    assert_ok(opg_keypair_from_seed(seed, &kp));
    assert_ok(opg_keypair_from_seed(seed, &kp2));
    assert_memory_equal(&kp, &kp2, sizeof kp);
    uint8_t spk[32], ssk[64], cpk[32], csk[32], base[32];
    assert_int_equal(crypto_sign_seed_keypair(spk, ssk, seed), 0);
    assert_int_equal(crypto_sign_ed25519_pk_to_curve25519(cpk, spk), 0);
    assert_int_equal(crypto_sign_ed25519_sk_to_curve25519(csk, ssk), 0);
    tu_assert_bytes(kp.sign_pk, spk, 32, "sign_pk");
    tu_assert_bytes(kp.sign_sk, ssk, 64, "sign_sk");
    tu_assert_bytes(kp.curve_pk, cpk, 32, "curve_pk");
    tu_assert_bytes(kp.curve_sk, csk, 32, "curve_sk");
    /* the curve pair is a pair: pk = sk * basepoint */
    assert_int_equal(crypto_scalarmult_base(base, kp.curve_sk), 0);
    tu_assert_bytes(base, kp.curve_pk, 32, "X25519 public key of curve_sk");
    /* and stays what it is today (key files and allow lists depend on it) */
    char z85[41];
    opg_key_public_z85(kp.curve_pk, z85);
    assert_string_equal(z85, "m/*$&H^-y+t0OZ/ISr/LFYZlVkyTnmN9xTcTAhI+");

    /* a different seed, a different identity */
    seed[0] ^= 1;
    assert_ok(opg_keypair_from_seed(seed, &kp2));
    assert_memory_not_equal(kp.curve_pk, kp2.curve_pk, 32);

    opg_keypair_wipe(&kp);
    uint8_t zero[sizeof kp] = {0};
    assert_memory_equal(&kp, zero, sizeof kp);
    opg_keypair_wipe(NULL);
    expect_st(opg_keypair_from_seed(NULL, &kp), OPG_ERR_ARG, NULL);
    expect_st(opg_keypair_generate(NULL), OPG_ERR_ARG, NULL);
}

static void test_generate(void **state) {
    (void)state;
    opg_keypair a, b, c;
    assert_ok(opg_keypair_generate(&a));
    assert_ok(opg_keypair_generate(&b));
    assert_memory_not_equal(a.seed, b.seed, 32);
    assert_ok(opg_keypair_from_seed(a.seed, &c));
    assert_memory_equal(&a, &c, sizeof a);
}

/* ---- key files ---------------------------------------------------------------------- */
static void test_save_load(void **state) {
    (void)state;
    opg_keypair kp, back;
    assert_ok(opg_keypair_generate(&kp));
    const char *path = tmp_path("node.key");
    assert_ok(opg_key_save(path, &kp));
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(sb.st_mode & 07777, 0600);
    assert_int_equal(sb.st_size, OPG_KEY_FILE_LEN);
    assert_ok(opg_key_load(path, &back));
    assert_memory_equal(&kp, &back, sizeof kp);

    /* the text is exactly the documented format */
    char text[OPG_KEY_FILE_LEN + 1], want[512], seed_hex[65], sign_hex[65], z85[41];
    opg_key_format(&kp, text);
    assert_int_equal(strlen(text), OPG_KEY_FILE_LEN);
    sodium_bin2hex(seed_hex, sizeof seed_hex, kp.seed, 32);
    sodium_bin2hex(sign_hex, sizeof sign_hex, kp.sign_pk, 32);
    opg_key_public_z85(kp.curve_pk, z85);
    snprintf(want, sizeof want,
             "# opg identity key (keep secret)\nopg-key-v1\nseed %s\ncurve-public %s\nsign-public %s\n", seed_hex, z85,
             sign_hex);
    assert_string_equal(text, want);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    char disk[512];
    size_t n = fread(disk, 1, sizeof disk, f);
    fclose(f);
    assert_int_equal(n, OPG_KEY_FILE_LEN);
    assert_memory_equal(disk, want, n);

    /* never overwritten */
    opg_keypair other;
    assert_ok(opg_keypair_generate(&other));
    expect_st(opg_key_save(path, &other), OPG_ERR_STATE, "already exists");
    assert_ok(opg_key_load(path, &back));
    assert_memory_equal(&kp, &back, sizeof kp);

    /* keygen */
    char pub[41];
    const char *p2 = tmp_path("keygen.key");
    assert_ok(opg_keygen_file(p2, pub));
    assert_ok(opg_key_load(p2, &back));
    opg_key_public_z85(back.curve_pk, z85);
    assert_string_equal(pub, z85);
    expect_st(opg_keygen_file(p2, pub), OPG_ERR_STATE, "already exists");

    expect_st(opg_key_save(tmp_path("no/such/dir.key"), &kp), OPG_ERR_IO, "cannot create");
    expect_st(opg_key_load(tmp_path("absent.key"), &back), OPG_ERR_NOT_FOUND, "absent.key");
    expect_st(opg_key_load(g_dir, &back), OPG_ERR_IO, "not a regular file");
    expect_st(opg_key_save(NULL, &kp), OPG_ERR_ARG, NULL);
    expect_st(opg_key_load(path, NULL), OPG_ERR_ARG, NULL);
}

static void test_load_mode(void **state) {
    (void)state;
    opg_keypair kp, back;
    uint8_t seed[32];
    seed_fill(seed, 7);
    assert_ok(opg_keypair_from_seed(seed, &kp));
    char text[OPG_KEY_FILE_LEN + 1];
    opg_key_format(&kp, text);
    const char *path = tmp_path("mode.key");
    static const mode_t bad[] = {0644, 0640, 0604, 0660, 0601, 0610, 0666, 0777};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        write_file(path, text, OPG_KEY_FILE_LEN, bad[i]);
        expect_st(opg_key_load(path, &back), OPG_ERR_DENIED, "chmod 600");
    }
    write_file(path, text, OPG_KEY_FILE_LEN, 0400);
    assert_ok(opg_key_load(path, &back));
    assert_memory_equal(&kp, &back, sizeof kp);
    write_file(path, text, OPG_KEY_FILE_LEN, 0600);
    assert_ok(opg_key_load(path, &back));
}

/* text with line `line` (1-based) replaced by repl (without its newline). */
static void replace_line(const char *text, int line, const char *repl, char *out, size_t cap) {
    size_t o = 0;
    int cur = 1;
    for (const char *p = text; *p;) {
        const char *nl = strchr(p, '\n');
        size_t n = (size_t)(nl - p);
        const char *src = cur == line ? repl : p;
        size_t sn = cur == line ? strlen(repl) : n;
        assert_true(o + sn + 1 < cap);
        memcpy(out + o, src, sn);
        o += sn;
        out[o++] = '\n';
        p = nl + 1;
        cur++;
    }
    out[o] = 0;
}

static void test_parse_malformed(void **state) {
    (void)state;
    opg_keypair kp, other, back;
    uint8_t seed[32];
    seed_fill(seed, 1);
    assert_ok(opg_keypair_from_seed(seed, &kp));
    seed_fill(seed, 2);
    assert_ok(opg_keypair_from_seed(seed, &other));
    char text[OPG_KEY_FILE_LEN + 1], bad[1024];
    opg_key_format(&kp, text);
    assert_ok(opg_key_parse(text, strlen(text), &back));
    assert_memory_equal(&kp, &back, sizeof kp);

    char seed_hex[65], sign_hex[65], z85[41], other_sign[65], other_z85[41], upper[65];
    sodium_bin2hex(seed_hex, sizeof seed_hex, kp.seed, 32);
    sodium_bin2hex(sign_hex, sizeof sign_hex, kp.sign_pk, 32);
    sodium_bin2hex(other_sign, sizeof other_sign, other.sign_pk, 32);
    opg_key_public_z85(kp.curve_pk, z85);
    opg_key_public_z85(other.curve_pk, other_z85);
    for (int i = 0; i < 64; i++) upper[i] = (char)(seed_hex[i] >= 'a' ? seed_hex[i] - 32 : seed_hex[i]);
    upper[64] = 0;
    char l3[128], l4[128], l5[128];

    struct {
        int line;
        const char *repl;
        const char *needle;
    } cases[] = {
        {1, "# opg identity key", "line 1"},
        {1, "", "line 1"},
        {1, "# opg identity key (keep secret) ", "line 1"},
        {2, "opg-key-v2", "line 2: key file version not supported"},
        {2, "opg-key", "line 2"},
        {2, "OPG-KEY-V1", "line 2"},
        {3, "seed", "line 3"},
        {3, "seed  ", "line 3"},
        {3, l3, "line 3"}, /* upper-case hex */
        {4, "curve-public", "line 4"},
        {4, l4, "line 4: curve-public does not match the seed"},
        {5, "sign-public 00", "line 5"},
        {5, l5, "line 5: sign-public does not match the seed"},
        {3, "seed\t0000000000000000000000000000000000000000000000000000000000000000", "line 3"},
        {4, "curve-public  abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMN", "line 4"},
        {4, "curve-public abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLM\"", "line 4"},
        {4, "curve-public ########################################", "line 4"},
    };
    snprintf(l3, sizeof l3, "seed %s", upper);
    snprintf(l4, sizeof l4, "curve-public %s", other_z85);
    snprintf(l5, sizeof l5, "sign-public %s", other_sign);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        replace_line(text, cases[i].line, cases[i].repl, bad, sizeof bad);
        opg_status st = opg_key_parse(bad, strlen(bad), &back);
        if (st != OPG_ERR_FORMAT || !strstr(opg_last_error(), cases[i].needle)) {
            print_error("case %zu (line %d \"%s\"): %s: \"%s\"\n", i, cases[i].line, cases[i].repl,
                        opg_strerror(st), opg_last_error());
            fail();
        }
    }
    /* seed: 63 and 65 digits, a non-hex digit */
    char s63[80];
    snprintf(s63, sizeof s63, "seed %.63s", seed_hex);
    replace_line(text, 3, s63, bad, sizeof bad);
    expect_st(opg_key_parse(bad, strlen(bad), &back), OPG_ERR_FORMAT, "line 3");
    snprintf(s63, sizeof s63, "seed %s0", seed_hex);
    replace_line(text, 3, s63, bad, sizeof bad);
    expect_st(opg_key_parse(bad, strlen(bad), &back), OPG_ERR_FORMAT, "line 3");
    snprintf(s63, sizeof s63, "seed g%.63s", seed_hex);
    replace_line(text, 3, s63, bad, sizeof bad);
    expect_st(opg_key_parse(bad, strlen(bad), &back), OPG_ERR_FORMAT, "line 3");

    /* structure: CRLF, no final newline, extra line, empty, NUL, truncations */
    snprintf(bad, sizeof bad, "%s", text);
    bad[strlen(bad) - 1] = 0;
    expect_st(opg_key_parse(bad, strlen(bad), &back), OPG_ERR_FORMAT, "line 5: no newline");
    snprintf(bad, sizeof bad, "%s\n", text);
    expect_st(opg_key_parse(bad, strlen(bad), &back), OPG_ERR_FORMAT, "line 6");
    snprintf(bad, sizeof bad, "%s# comment\n", text);
    expect_st(opg_key_parse(bad, strlen(bad), &back), OPG_ERR_FORMAT, "line 6");
    snprintf(bad, sizeof bad, "# opg identity key (keep secret)\r\nopg-key-v1\r\nseed %s\r\ncurve-public %s\r\n"
             "sign-public %s\r\n", seed_hex, z85, sign_hex);
    expect_st(opg_key_parse(bad, strlen(bad), &back), OPG_ERR_FORMAT, "line 1");
    expect_st(opg_key_parse("", 0, &back), OPG_ERR_FORMAT, "line 1");
    expect_st(opg_key_parse(NULL, 0, &back), OPG_ERR_FORMAT, "line 1");
    memcpy(bad, text, OPG_KEY_FILE_LEN);
    bad[OPG_KEY_FILE_LEN - 3] = 0; /* a NUL inside sign-public */
    expect_st(opg_key_parse(bad, OPG_KEY_FILE_LEN, &back), OPG_ERR_FORMAT, "line 5");
    for (size_t n = 0; n < OPG_KEY_FILE_LEN; n++) {
        char *copy = malloc(n ? n : 1);
        assert_non_null(copy);
        memcpy(copy, text, n);
        opg_status st = opg_key_parse(copy, n, &back);
        free(copy);
        if (st != OPG_ERR_FORMAT) {
            print_error("truncated to %zu bytes: %s\n", n, opg_strerror(st));
            fail();
        }
    }
    /* every single-byte change is refused (the public lines cross-check the seed) */
    for (size_t i = 0; i < OPG_KEY_FILE_LEN; i++) {
        memcpy(bad, text, OPG_KEY_FILE_LEN);
        bad[i] ^= 0x01;
        opg_status st = opg_key_parse(bad, OPG_KEY_FILE_LEN, &back);
        if (st != OPG_ERR_FORMAT) {
            print_error("byte %zu flipped: %s\n", i, opg_strerror(st));
            fail();
        }
    }

    /* through opg_key_load the message names the file too */
    const char *path = tmp_path("bad.key");
    replace_line(text, 4, l4, bad, sizeof bad);
    write_file(path, bad, strlen(bad), 0600);
    expect_st(opg_key_load(path, &back), OPG_ERR_FORMAT, "bad.key: line 4");
    char big[5000];
    memset(big, '#', sizeof big);
    write_file(path, big, sizeof big, 0600);
    expect_st(opg_key_load(path, &back), OPG_ERR_LIMIT, "at most");
    /* a FIFO is refused at once, not waited on for a writer */
    unlink(path);
    assert_int_equal(mkfifo(path, 0600), 0);
    expect_st(opg_key_load(path, &back), OPG_ERR_IO, "not a regular file");
    unlink(path);
    expect_st(opg_key_parse(text, 4, NULL), OPG_ERR_ARG, NULL);
}

/* ---- Z85 and allow lists ------------------------------------------------------------ */
static void test_z85(void **state) {
    (void)state;
    opg_keypair kp;
    assert_ok(opg_keypair_generate(&kp));
    char z[41];
    opg_key_public_z85(kp.curve_pk, z);
    assert_int_equal(strlen(z), 40);
    uint8_t back[32];
    assert_ok(opg_key_parse_public(z, back));
    assert_memory_equal(back, kp.curve_pk, 32);

    /* the Z85 spec's example: 86 4F D2 6F B5 59 F7 5B -> "HelloWorld" */
    static const uint8_t hello[32] = {0x86, 0x4F, 0xD2, 0x6F, 0xB5, 0x59, 0xF7, 0x5B};
    opg_key_public_z85(hello, z);
    assert_memory_equal(z, "HelloWorld", 10);

    char bad[64];
    expect_st(opg_key_parse_public("", back), OPG_ERR_FORMAT, "40 Z85");
    snprintf(bad, sizeof bad, "%.39s", z);
    expect_st(opg_key_parse_public(bad, back), OPG_ERR_FORMAT, "40 Z85");
    snprintf(bad, sizeof bad, "%s0", z);
    expect_st(opg_key_parse_public(bad, back), OPG_ERR_FORMAT, "more than 40");
    static const char not_z85[] = " \"',;\\_`|~\x7f\x80";
    for (const char *c = not_z85; *c; c++) {
        snprintf(bad, sizeof bad, "%s", z);
        bad[17] = *c;
        expect_st(opg_key_parse_public(bad, back), OPG_ERR_FORMAT, "character 18 is not Z85");
    }
    /* "%nSc0" is 2^32 - 1, "%nSc1" is 2^32: too large for 4 bytes */
    snprintf(bad, sizeof bad, "%s", z);
    memcpy(bad + 5, "%nSc0", 5);
    assert_ok(opg_key_parse_public(bad, back));
    assert_memory_equal(back + 4, "\xff\xff\xff\xff", 4);
    memcpy(bad + 5, "%nSc1", 5);
    expect_st(opg_key_parse_public(bad, back), OPG_ERR_FORMAT, "Z85");
    memcpy(bad + 5, "#####", 5);
    expect_st(opg_key_parse_public(bad, back), OPG_ERR_FORMAT, "Z85");
    expect_st(opg_key_parse_public(NULL, back), OPG_ERR_ARG, NULL);
}

static void test_allowlist(void **state) {
    (void)state;
    /* keys never start with '#' (which starts comments), but may hold one */
    opg_keypair k[3];
    uint8_t seed[32] = {0};
    char hashkey[41] = "";
    for (uint32_t i = 0; i < 100000 && !strchr(hashkey, '#'); i++) {
        memcpy(seed, &i, sizeof i);
        assert_ok(opg_keypair_from_seed(seed, &k[0]));
        opg_key_public_z85(k[0].curve_pk, hashkey);
        assert_true(hashkey[0] != '#' && hashkey[0] != '$');
    }
    assert_non_null(strchr(hashkey, '#'));
    assert_ok(opg_keypair_generate(&k[1]));
    assert_ok(opg_keypair_generate(&k[2]));
    char z1[41], z2[41];
    opg_key_public_z85(k[1].curve_pk, z1);
    opg_key_public_z85(k[2].curve_pk, z2);

    char text[1024];
    snprintf(text, sizeof text,
             "# workers allowed on this coordinator\n"
             "\n"
             "%s\n"
             "   %s   # worker-2 (gpu box)\r\n"
             "\t\n"
             "#########################################\n"
             "%s\t# has a '#' inside",
             z1, z2, hashkey);
    const char *path = tmp_path("allow.txt");
    write_file(path, text, strlen(text), 0644);
    uint8_t (*keys)[32] = NULL;
    size_t n = 0;
    assert_ok(opg_allowlist_load(path, &keys, &n));
    assert_int_equal(n, 3);
    assert_memory_equal(keys[0], k[1].curve_pk, 32);
    assert_memory_equal(keys[1], k[2].curve_pk, 32);
    assert_memory_equal(keys[2], k[0].curve_pk, 32);
    free(keys);

    /* empty and comment-only lists: no keys */
    write_file(path, "", 0, 0644);
    assert_ok(opg_allowlist_load(path, &keys, &n));
    assert_int_equal(n, 0);
    assert_null(keys);
    write_file(path, "# nobody yet\n\n", 14, 0644);
    assert_ok(opg_allowlist_load(path, &keys, &n));
    assert_int_equal(n, 0);

    /* bad lines, named */
    const char *bad_lines[] = {
        "not-a-key",
        "%.39s",           /* 39 characters */
        "%s0",             /* 41 characters */
        "%s trailing",     /* text after the key that is not a comment */
        "%s#glued",        /* a comment must be separated by blanks */
        "%s %s",           /* two keys */
        "; %s",
    };
    for (size_t i = 0; i < sizeof bad_lines / sizeof bad_lines[0]; i++) {
        char line[200];
        snprintf(line, sizeof line, bad_lines[i], z1, z2);
        snprintf(text, sizeof text, "# ok\n%s\n\n%s\n", z2, line);
        write_file(path, text, strlen(text), 0644);
        keys = (uint8_t (*)[32])1;
        n = 99;
        opg_status st = opg_allowlist_load(path, &keys, &n);
        if (st != OPG_ERR_FORMAT || !strstr(opg_last_error(), "allow.txt: line 4") || keys || n) {
            print_error("bad line \"%s\": %s: \"%s\"\n", line, opg_strerror(st), opg_last_error());
            fail();
        }
    }
    snprintf(text, sizeof text, "%s\n%c\n", z1, 0);
    write_file(path, text, strlen(z1) + 3, 0644);
    expect_st(opg_allowlist_load(path, &keys, &n), OPG_ERR_FORMAT, "line 2");
    expect_st(opg_allowlist_load(tmp_path("none.txt"), &keys, &n), OPG_ERR_NOT_FOUND, "none.txt");
    /* the parser alone */
    snprintf(text, sizeof text, "%s # a\n%s", z1, z2);
    assert_ok(opg_allowlist_parse(text, strlen(text), &keys, &n));
    assert_int_equal(n, 2);
    free(keys);
    assert_ok(opg_allowlist_parse(text, 40, &keys, &n)); /* not NUL-terminated there */
    assert_int_equal(n, 1);
    free(keys);
    assert_ok(opg_allowlist_parse(NULL, 0, &keys, &n));
    assert_int_equal(n, 0);
    expect_st(opg_allowlist_parse(text, 39, &keys, &n), OPG_ERR_FORMAT, "line 1: expected");
    expect_st(opg_allowlist_parse(NULL, 3, &keys, &n), OPG_ERR_ARG, NULL);
    expect_st(opg_allowlist_load(path, NULL, &n), OPG_ERR_ARG, NULL);
}

/* ---- ZAP over inproc: the protocol itself --------------------------------------------- */
/* A log sink that keeps the lines (called on the handler's thread). */
static pthread_mutex_t g_log_mu = PTHREAD_MUTEX_INITIALIZER;
static char g_log[8192];

static void capture_sink(void *ctx, opg_log_level level, const char *line) {
    (void)ctx;
    (void)level;
    pthread_mutex_lock(&g_log_mu);
    size_t o = strlen(g_log);
    snprintf(g_log + o, sizeof g_log - o, "%s\n", line);
    pthread_mutex_unlock(&g_log_mu);
}

static int log_has(const char *needle) {
    pthread_mutex_lock(&g_log_mu);
    int r = strstr(g_log, needle) != NULL;
    pthread_mutex_unlock(&g_log_mu);
    return r;
}

/* Sends one request of n frames over req and returns the reply's status code
 * (and its User-Id in user, when given); checks version and request id. */
static int zap_ask(void *req, const void *const *f, const size_t *len, int n, char *user, size_t ucap) {
    for (int i = 0; i < n; i++) assert_true(zmq_send(req, f[i], len[i], i + 1 < n ? ZMQ_SNDMORE : 0) >= 0);
    char fr[6][256];
    int got = 0;
    for (;;) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        assert_true(zmq_msg_recv(&m, req, 0) >= 0);
        if (got < 6) {
            size_t s = zmq_msg_size(&m) < 255 ? zmq_msg_size(&m) : 255;
            memcpy(fr[got], zmq_msg_data(&m), s);
            fr[got][s] = 0;
        }
        got++;
        int more = zmq_msg_more(&m);
        zmq_msg_close(&m);
        if (!more) break;
    }
    assert_int_equal(got, 6);
    assert_string_equal(fr[0], "1.0");
    if (n >= 2 && len[1] < 255) assert_memory_equal(fr[1], f[1], len[1]);
    if (user) snprintf(user, ucap, "%s", fr[4]);
    return atoi(fr[2]);
}

static void test_zap_protocol(void **state) {
    (void)state;
    void *ctx = zmq_ctx_new();
    assert_non_null(ctx);
    opg_zap *z = NULL;
    assert_ok(opg_zap_start(ctx, &z));
    opg_zap *z2 = (opg_zap *)1;
    expect_st(opg_zap_start(ctx, &z2), OPG_ERR_STATE, "already has a ZAP handler");
    assert_null(z2);
    opg_keypair kp, other;
    assert_ok(opg_keypair_generate(&kp));
    assert_ok(opg_keypair_generate(&other));
    assert_ok(opg_zap_allow(z, "workers", kp.curve_pk));
    assert_ok(opg_zap_allow(z, "workers", kp.curve_pk)); /* twice: harmless */
    assert_ok(opg_zap_allow(z, "clients", other.curve_pk));
    expect_st(opg_zap_allow(z, "", kp.curve_pk), OPG_ERR_ARG, "domain");
    expect_st(opg_zap_allow(NULL, "x", kp.curve_pk), OPG_ERR_ARG, NULL);

    opg_log lg = {capture_sink, NULL, OPG_LOG_DEBUG};
    opg_zap_set_log(z, &lg);
    void *req = zmq_socket(ctx, ZMQ_REQ);
    int zero = 0, ms = 5000;
    zmq_setsockopt(req, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(req, ZMQ_RCVTIMEO, &ms, sizeof ms);
    assert_int_equal(zmq_connect(req, "inproc://zeromq.zap.01"), 0);

    char user[256], z85[41];
    opg_key_public_z85(kp.curve_pk, z85);
#define ASK(code, ...)                                                                   \
    do {                                                                                 \
        const void *f_[] = {__VA_ARGS__};                                                \
        int n_ = (int)(sizeof f_ / sizeof f_[0]);                                        \
        size_t l_[16];                                                                   \
        for (int i_ = 0; i_ < n_; i_++) l_[i_] = f_[i_] == key_ptr ? key_len : strlen(f_[i_]); \
        int got_ = zap_ask(req, f_, l_, n_, user, sizeof user);                          \
        if (got_ != (code)) {                                                            \
            print_error("line %d: ZAP status %d, expected %d\n", __LINE__, got_, code);  \
            fail();                                                                      \
        }                                                                                \
    } while (0)
    const void *key_ptr = kp.curve_pk;
    size_t key_len = 32;
    ASK(200, "1.0", "7", "workers", "127.0.0.1", "", "CURVE", key_ptr);
    assert_string_equal(user, z85);
    ASK(400, "1.0", "8", "clients", "127.0.0.1", "", "CURVE", key_ptr); /* other domain's list */
    assert_string_equal(user, "");
    ASK(400, "1.0", "9", "nobody", "127.0.0.1", "", "CURVE", key_ptr);  /* unknown domain */
    assert_true(log_has("level=debug event=zap_accept status=200 reason=OK domain=workers mechanism=CURVE "
                        "address=127.0.0.1 key="));
    assert_true(log_has(z85));
    assert_true(log_has("level=warn event=zap_refuse status=400 reason=\"unknown domain\" domain=nobody"));
    ASK(400, "1.0", "10", "workers", "127.0.0.1", "", "NULL");
    ASK(400, "1.0", "11", "workers", "127.0.0.1", "", "PLAIN", "admin", "secret");
    ASK(400, "1.0", "12", "workers", "127.0.0.1", "", "GSSAPI", "x");
    key_ptr = other.curve_pk;
    ASK(400, "1.0", "13", "workers", "127.0.0.1", "", "CURVE", key_ptr);  /* not on the list */
    ASK(200, "1.0", "14", "clients", "127.0.0.1", "", "CURVE", key_ptr);
    /* malformed: 500, and the handler keeps answering */
    ASK(500, "2.0", "20", "workers", "127.0.0.1", "", "CURVE", key_ptr);
    ASK(500, "1.0", "21", "workers", "127.0.0.1", "", "CURVE");
    ASK(500, "1.0", "22", "workers", "127.0.0.1", "", "CURVE", "short");
    ASK(500, "1.0", "23", "workers", "127.0.0.1", "", "CURVE", key_ptr, key_ptr);
    ASK(500, "1.0", "24", "workers", "127.0.0.1", "", "NULL", "extra");
    ASK(500, "1.0", "25", "workers", "127.0.0.1", "", "PLAIN", "only-user");
    ASK(500, "1.0", "26", "workers", "127.0.0.1", "", "KERBEROS");
    ASK(500, "1.0", "27", "workers");
    ASK(500, "1.0");
    ASK(500, "");
    ASK(500, "1.0", "28", "workers", "127.0.0.1", "", "CURVE", key_ptr, "a", "b", "c", "d", "e", "f", "g", "h");
    key_ptr = kp.curve_pk;
    ASK(200, "1.0", "29", "workers", "127.0.0.1", "", "CURVE", key_ptr);
#undef ASK
    assert_int_equal(opg_zap_accepted(z), 3);
    assert_int_equal(opg_zap_refused(z), 17);
    assert_true(log_has("status=500 reason=\"malformed ZAP request\""));
    opg_zap_set_log(z, NULL);

    zmq_close(req);
    opg_zap_stop(z);
    opg_zap_stop(NULL);
    assert_int_equal(zmq_ctx_term(ctx), 0);
}

/* ---- ZAP with CURVE sockets over TCP -------------------------------------------------- */
typedef struct {
    void *ctx;
    opg_zap *zap;
    opg_keypair server, allowed, unknown, client_only;
    void *router;
    char endpoint[128];
} net_fixture;

static void set_linger0(void *s) {
    int zero = 0;
    zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero);
}

static void net_open(net_fixture *nf, int with_zap) {
    memset(nf, 0, sizeof *nf);
    nf->ctx = zmq_ctx_new();
    assert_non_null(nf->ctx);
    assert_ok(opg_keypair_generate(&nf->server));
    assert_ok(opg_keypair_generate(&nf->allowed));
    assert_ok(opg_keypair_generate(&nf->unknown));
    assert_ok(opg_keypair_generate(&nf->client_only));
    if (with_zap) {
        assert_ok(opg_zap_start(nf->ctx, &nf->zap));
        assert_ok(opg_zap_allow(nf->zap, "workers", nf->allowed.curve_pk));
        assert_ok(opg_zap_allow(nf->zap, "clients", nf->client_only.curve_pk));
    }
    nf->router = zmq_socket(nf->ctx, ZMQ_ROUTER);
    assert_non_null(nf->router);
    set_linger0(nf->router);
    assert_ok(opg_sock_curve_server(nf->router, &nf->server, "workers"));
    assert_int_equal(zmq_bind(nf->router, "tcp://127.0.0.1:*"), 0);
    size_t n = sizeof nf->endpoint;
    assert_int_equal(zmq_getsockopt(nf->router, ZMQ_LAST_ENDPOINT, nf->endpoint, &n), 0);
}

static void net_close(net_fixture *nf) {
    zmq_close(nf->router);
    opg_zap_stop(nf->zap);
    assert_int_equal(zmq_ctx_term(nf->ctx), 0);
}

/* A DEALER connected to the server; curve keys kp, or plain when kp is NULL.
 * Sends "hello" (queued until the handshake completes). */
static void *dealer(net_fixture *nf, const opg_keypair *kp) {
    void *d = zmq_socket(nf->ctx, ZMQ_DEALER);
    assert_non_null(d);
    set_linger0(d);
    if (kp) assert_ok(opg_sock_curve_client(d, kp, nf->server.curve_pk));
    assert_int_equal(zmq_connect(d, nf->endpoint), 0);
    int rc = zmq_send(d, "hello", 5, ZMQ_DONTWAIT);
    assert_true(rc == 5 || (rc < 0 && zmq_errno() == EAGAIN));
    return d;
}

static int readable(void *s, long ms) {
    zmq_pollitem_t it = {s, 0, ZMQ_POLLIN, 0};
    return zmq_poll(&it, 1, ms) == 1;
}

/* Waits up to ms for the handler's refused count to pass `above`. */
static int refused_after(opg_zap *z, uint64_t above, long ms) {
    for (long t = 0; t < ms; t += 10) {
        if (opg_zap_refused(z) > above) return 1;
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return opg_zap_refused(z) > above;
}

static void expect_nothing_through(net_fixture *nf) {
    if (readable(nf->router, 500)) {
        print_error("a message got through to the server\n");
        fail();
    }
}

static void test_zap_allowed(void **state) {
    (void)state;
    net_fixture nf;
    net_open(&nf, 1);
    void *d = dealer(&nf, &nf.allowed);
    assert_true(readable(nf.router, 5000));
    zmq_msg_t rid, body;
    zmq_msg_init(&rid);
    zmq_msg_init(&body);
    assert_true(zmq_msg_recv(&rid, nf.router, 0) >= 0);
    assert_true(zmq_msg_more(&rid));
    assert_int_equal(zmq_msg_recv(&body, nf.router, 0), 5);
    assert_memory_equal(zmq_msg_data(&body), "hello", 5);
    const char *uid = zmq_msg_gets(&body, "User-Id");
    assert_non_null(uid);
    char want[41];
    opg_key_public_z85(nf.allowed.curve_pk, want);
    assert_string_equal(uid, want);
    const char *mech = zmq_msg_gets(&body, "Mechanism");
    if (mech) assert_string_equal(mech, "CURVE");
    /* and back */
    assert_true(zmq_msg_send(&rid, nf.router, ZMQ_SNDMORE) >= 0);
    assert_int_equal(zmq_send(nf.router, "pong", 4, 0), 4);
    zmq_msg_close(&body);
    assert_true(readable(d, 5000));
    char buf[8];
    assert_int_equal(zmq_recv(d, buf, sizeof buf, 0), 4);
    assert_memory_equal(buf, "pong", 4);
    assert_true(opg_zap_accepted(nf.zap) >= 1);
    assert_int_equal(opg_zap_refused(nf.zap), 0);
    zmq_close(d);
    net_close(&nf);
}

static void test_zap_unknown_key(void **state) {
    (void)state;
    net_fixture nf;
    net_open(&nf, 1);
    void *d = dealer(&nf, &nf.unknown);
    assert_true(refused_after(nf.zap, 0, 5000));
    expect_nothing_through(&nf);
    assert_int_equal(opg_zap_accepted(nf.zap), 0);
    zmq_close(d);
    net_close(&nf);
}

static void test_zap_plain_client(void **state) {
    (void)state;
    net_fixture nf;
    net_open(&nf, 1);
    void *d = dealer(&nf, NULL); /* NULL mechanism: the CURVE server never completes a handshake */
    expect_nothing_through(&nf);
    assert_int_equal(opg_zap_accepted(nf.zap), 0);
    zmq_close(d);
    net_close(&nf);
}

static void test_zap_other_domain(void **state) {
    (void)state;
    net_fixture nf;
    net_open(&nf, 1);
    void *d = dealer(&nf, &nf.client_only); /* allowed in "clients", not "workers" */
    assert_true(refused_after(nf.zap, 0, 5000));
    expect_nothing_through(&nf);
    assert_int_equal(opg_zap_accepted(nf.zap), 0);
    zmq_close(d);
    /* allowed later, the key gets in on its next handshake (a refused client
     * does not reconnect by itself: libzmq ends the session) */
    assert_ok(opg_zap_allow(nf.zap, "workers", nf.client_only.curve_pk));
    d = dealer(&nf, &nf.client_only);
    assert_true(readable(nf.router, 5000));
    zmq_close(d);
    net_close(&nf);
}

/* No handler at all: the server socket must not fall back to admitting
 * every key (where libzmq offers ZMQ_ZAP_ENFORCE_DOMAIN). */
static void test_zap_absent_fails_closed(void **state) {
    (void)state;
    void *probe_ctx = zmq_ctx_new();
    void *probe = zmq_socket(probe_ctx, ZMQ_ROUTER);
    int one = 1;
    int have = zmq_setsockopt(probe, 93 /* ZMQ_ZAP_ENFORCE_DOMAIN */, &one, sizeof one) == 0;
    zmq_close(probe);
    zmq_ctx_term(probe_ctx);
    if (!have) {
        print_message("skipped: this libzmq has no ZMQ_ZAP_ENFORCE_DOMAIN\n");
        skip();
    }
    net_fixture nf;
    net_open(&nf, 0);
    void *d = dealer(&nf, &nf.allowed);
    expect_nothing_through(&nf);
    zmq_close(d);
    net_close(&nf);
}

static void test_sock_args(void **state) {
    (void)state;
    opg_keypair kp;
    assert_ok(opg_keypair_generate(&kp));
    void *ctx = zmq_ctx_new();
    void *s = zmq_socket(ctx, ZMQ_ROUTER);
    expect_st(opg_sock_curve_server(s, &kp, ""), OPG_ERR_ARG, "domain");
    expect_st(opg_sock_curve_server(s, &kp, NULL), OPG_ERR_ARG, "domain");
    expect_st(opg_sock_curve_server(NULL, &kp, "w"), OPG_ERR_ARG, NULL);
    expect_st(opg_sock_curve_client(s, &kp, NULL), OPG_ERR_ARG, NULL);
    zmq_close(s);
    zmq_ctx_term(ctx);
}

/* Which endpoints may go without CurveZMQ: loopback addresses only, parsed
 * (a DNS name that merely starts with "127." is remote). */
static void test_endpoint_local(void **state) {
    (void)state;
    const char *local[] = {"tcp://127.0.0.1:5555", "tcp://127.8.9.10:1", "tcp://localhost:5555",
                           "tcp://[::1]:5555", "ipc:///tmp/x", "inproc://x",
                           "tcp://10.0.0.1;127.0.0.1:5555"};
    const char *remote[] = {"tcp://127.attacker.invalid:5556", "tcp://127.0.0.1.example.com:5555",
                            "tcp://localhost.example.com:5555", "tcp://10.0.0.5:5556", "tcp://*:5555",
                            "tcp://[::2]:5555", "tcp://[::1:5555", "tcp://:5555", "tcp://128.0.0.1:1",
                            "tcp://127.0.0.1;10.0.0.5:5555", "udp://127.0.0.1:1", "tcp://", NULL};
    for (size_t i = 0; i < sizeof local / sizeof *local; i++) {
        if (!opg_endpoint_is_local(local[i])) print_message("not local: %s\n", local[i]);
        assert_true(opg_endpoint_is_local(local[i]));
    }
    for (size_t i = 0; i < sizeof remote / sizeof *remote; i++) {
        if (opg_endpoint_is_local(remote[i])) print_message("local: %s\n", remote[i] ? remote[i] : "NULL");
        assert_false(opg_endpoint_is_local(remote[i]));
    }
}

/* Endpoints of a form ZeroMQ would take otherwise than meant (a port over
 * 65535 binds a random one) or not at all are refused, naming the problem. */
static void test_endpoint_check(void **state) {
    (void)state;
    const char *good[] = {"tcp://127.0.0.1:5555", "tcp://*:0", "tcp://127.0.0.1:*", "tcp://[::1]:65535",
                          "tcp://eth0:1", "tcp://10.0.0.1;127.0.0.1:5555", "ipc:///tmp/x", "inproc://x",
                          "tcp://localhost:1"};
    struct { const char *ep, *why; } bad[] = {
        {"tcp://127.0.0.1:99999", "port '99999' is not a number from 0 to 65535"},
        {"tcp://127.0.0.1:655350", "port '655350'"},
        {"tcp://127.0.0.1:-1", "port '-1'"},
        {"tcp://127.0.0.1:", "port ''"},
        {"tcp://127.0.0.1:80x", "port '80x'"},
        {"tcp://127.0.0.1", "no HOST:PORT"},
        {"tcp://:5555", "no HOST:PORT"},
        {"tcp://[::1:5555", "no HOST:PORT"},
        {"tcp://", "no HOST:PORT"},
        {"bogus", "not tcp://HOST:PORT, ipc://PATH or inproc://NAME"},
        {"udp://127.0.0.1:1", "not tcp://HOST:PORT"},
        {"ipc://", "no path or name"},
        {"inproc://", "no path or name"},
        {"", "empty endpoint"},
    };
    for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
        if (opg_endpoint_check(good[i]) != OPG_OK) print_message("refused %s: %s\n", good[i], opg_last_error());
        assert_int_equal(opg_endpoint_check(good[i]), OPG_OK);
    }
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        opg_status st = opg_endpoint_check(bad[i].ep);
        if (st != OPG_ERR_ARG || !strstr(opg_last_error(), bad[i].why))
            print_message("%s: %d \"%s\", want \"%s\"\n", bad[i].ep, st, opg_last_error(), bad[i].why);
        assert_int_equal(st, OPG_ERR_ARG);
        assert_non_null(strstr(opg_last_error(), bad[i].why));
    }
    assert_int_equal(opg_endpoint_check(NULL), OPG_ERR_ARG);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_endpoint_local),
        cmocka_unit_test(test_endpoint_check),
        cmocka_unit_test(test_from_seed),
        cmocka_unit_test(test_generate),
        cmocka_unit_test(test_save_load),
        cmocka_unit_test(test_load_mode),
        cmocka_unit_test(test_parse_malformed),
        cmocka_unit_test(test_z85),
        cmocka_unit_test(test_allowlist),
        cmocka_unit_test(test_zap_protocol),
        cmocka_unit_test(test_zap_allowed),
        cmocka_unit_test(test_zap_unknown_key),
        cmocka_unit_test(test_zap_plain_client),
        cmocka_unit_test(test_zap_other_domain),
        cmocka_unit_test(test_zap_absent_fails_closed),
        cmocka_unit_test(test_sock_args),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
