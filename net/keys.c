/* keys.c: identity keys, key files, allow lists, CurveZMQ socket options
 * (keys.h). Crypto is libsodium's, Z85 is libzmq's. */
#include "keys.h"

#include "file.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

/* Draft option in libzmq 4.3 headers, but present at run time in builds with
 * the draft API (Debian's); setting it where it is absent fails with EINVAL,
 * which is ignored. */
#ifndef ZMQ_ZAP_ENFORCE_DOMAIN
#define ZMQ_ZAP_ENFORCE_DOMAIN 93
#endif

#define KEY_COMMENT "# opg identity key (keep secret)"
#define KEY_MAGIC "opg-key-v1"
#define KEY_SEED "seed "
#define KEY_CURVE "curve-public "
#define KEY_SIGN "sign-public "
/* Largest key file or allow list read, in bytes. */
#define KEY_FILE_MAX 4096u
#define ALLOWLIST_MAX (16u << 20)

static const char z85_chars[] =
    "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#";

static opg_status sodium_ready(void) {
    if (sodium_init() < 0) return opg__fail(OPG_ERR_UNSUPPORTED, "libsodium failed to initialise");
    return OPG_OK;
}

/* ---- keypairs ------------------------------------------------------------------- */
opg_status opg_keypair_from_seed(const uint8_t seed[32], opg_keypair *kp) {
    if (!seed || !kp) return opg__fail(OPG_ERR_ARG, "opg_keypair_from_seed: NULL argument");
    opg_status st = sodium_ready();
    if (st != OPG_OK) return st;
    opg_keypair k;
    memcpy(k.seed, seed, 32);
    if (crypto_sign_seed_keypair(k.sign_pk, k.sign_sk, k.seed) != 0 ||
        crypto_sign_ed25519_pk_to_curve25519(k.curve_pk, k.sign_pk) != 0 ||
        crypto_sign_ed25519_sk_to_curve25519(k.curve_sk, k.sign_sk) != 0) {
        sodium_memzero(&k, sizeof k);
        return opg__fail(OPG_ERR_FORMAT, "seed gives no valid Ed25519/X25519 keypair");
    }
    *kp = k;
    sodium_memzero(&k, sizeof k);
    return OPG_OK;
}

opg_status opg_keypair_generate(opg_keypair *kp) {
    if (!kp) return opg__fail(OPG_ERR_ARG, "opg_keypair_generate: NULL argument");
    opg_status st = sodium_ready();
    if (st != OPG_OK) return st;
    uint8_t seed[32];
    randombytes_buf(seed, sizeof seed);
    st = opg_keypair_from_seed(seed, kp);
    sodium_memzero(seed, sizeof seed);
    return st;
}

void opg_keypair_wipe(opg_keypair *kp) {
    if (kp) sodium_memzero(kp, sizeof *kp);
}

/* ---- Z85 ---------------------------------------------------------------------------- */
void opg_key_public_z85(const uint8_t curve_pk[32], char out[41]) {
    if (!zmq_z85_encode(out, curve_pk, 32)) out[0] = 0; /* only fails for sizes not a multiple of 4 */
}

opg_status opg_key_parse_public(const char *z85, uint8_t curve_pk[32]) {
    if (!z85 || !curve_pk) return opg__fail(OPG_ERR_ARG, "opg_key_parse_public: NULL argument");
    size_t n = strnlen(z85, 41);
    if (n != 40) return opg__fail(OPG_ERR_FORMAT, "public key: %s40 Z85 characters expected", n > 40 ? "more than " : "");
    size_t ok = strspn(z85, z85_chars);
    if (ok != 40) return opg__fail(OPG_ERR_FORMAT, "public key: character %zu is not Z85", ok + 1);
    uint8_t k[32];
    char again[41];
    /* zmq_z85_decode rejects groups above 2^32 - 1; the round trip also
     * makes the text canonical, so one key has one spelling. */
    if (!zmq_z85_decode(k, z85)) return opg__fail(OPG_ERR_FORMAT, "public key: not valid Z85");
    opg_key_public_z85(k, again);
    if (memcmp(again, z85, 40) != 0) return opg__fail(OPG_ERR_FORMAT, "public key: not canonical Z85");
    memcpy(curve_pk, k, 32);
    return OPG_OK;
}

/* ---- key file ----------------------------------------------------------------------- */
void opg_key_format(const opg_keypair *kp, char out[OPG_KEY_FILE_LEN + 1]) {
    char seed_hex[65], sign_hex[65], curve[41];
    sodium_bin2hex(seed_hex, sizeof seed_hex, kp->seed, 32);
    sodium_bin2hex(sign_hex, sizeof sign_hex, kp->sign_pk, 32);
    opg_key_public_z85(kp->curve_pk, curve);
    snprintf(out, OPG_KEY_FILE_LEN + 1, KEY_COMMENT "\n" KEY_MAGIC "\n" KEY_SEED "%s\n" KEY_CURVE "%s\n" KEY_SIGN "%s\n",
             seed_hex, curve, sign_hex);
    sodium_memzero(seed_hex, sizeof seed_hex);
}

/* 64 lowercase hex digits into 32 bytes. */
static int parse_hex32(const char *s, size_t n, uint8_t out[32]) {
    if (n != 64) return -1;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return -1;
    size_t bin_len = 0;
    return sodium_hex2bin(out, 32, s, n, NULL, &bin_len, NULL) == 0 && bin_len == 32 ? 0 : -1;
}

static int line_is(const char *s, size_t n, const char *want) { return n == strlen(want) && memcmp(s, want, n) == 0; }

static int line_has_prefix(const char *s, size_t n, const char *prefix) {
    size_t p = strlen(prefix);
    return n >= p && memcmp(s, prefix, p) == 0;
}

opg_status opg_key_parse(const char *text, size_t len, opg_keypair *kp) {
    if (!kp || (!text && len)) return opg__fail(OPG_ERR_ARG, "opg_key_parse: NULL argument");
    if (!text) text = "";
    const char *p = text, *end = text + len;
    const char *line[5];
    size_t line_len[5];
    for (int i = 0; i < 5; i++) {
        if (p >= end) return opg__fail(OPG_ERR_FORMAT, "line %d: missing (the key file has 5 lines)", i + 1);
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl) return opg__fail(OPG_ERR_FORMAT, "line %d: no newline at its end", i + 1);
        line[i] = p;
        line_len[i] = (size_t)(nl - p);
        p = nl + 1;
    }
    if (p != end) return opg__fail(OPG_ERR_FORMAT, "line 6: unexpected content after sign-public");

    if (!line_is(line[0], line_len[0], KEY_COMMENT))
        return opg__fail(OPG_ERR_FORMAT, "line 1: expected \"" KEY_COMMENT "\"");
    if (!line_is(line[1], line_len[1], KEY_MAGIC)) {
        if (line_has_prefix(line[1], line_len[1], "opg-key-v"))
            return opg__fail(OPG_ERR_FORMAT, "line 2: key file version not supported (this node reads " KEY_MAGIC ")");
        return opg__fail(OPG_ERR_FORMAT, "line 2: expected \"" KEY_MAGIC "\" (not an opg key file?)");
    }
    uint8_t seed[32], sign_pk[32], curve_pk[32];
    size_t pl = strlen(KEY_SEED);
    if (!line_has_prefix(line[2], line_len[2], KEY_SEED) || parse_hex32(line[2] + pl, line_len[2] - pl, seed) != 0) {
        sodium_memzero(seed, sizeof seed);
        return opg__fail(OPG_ERR_FORMAT, "line 3: expected \"seed <64 lowercase hex digits>\"");
    }
    pl = strlen(KEY_CURVE);
    char z85[41];
    if (!line_has_prefix(line[3], line_len[3], KEY_CURVE) || line_len[3] - pl != 40) {
        sodium_memzero(seed, sizeof seed);
        return opg__fail(OPG_ERR_FORMAT, "line 4: expected \"curve-public <40 Z85 characters>\"");
    }
    memcpy(z85, line[3] + pl, 40);
    z85[40] = 0;
    if (opg_key_parse_public(z85, curve_pk) != OPG_OK) {
        char why[256];
        snprintf(why, sizeof why, "%s", opg_last_error());
        sodium_memzero(seed, sizeof seed);
        return opg__fail(OPG_ERR_FORMAT, "line 4: curve-public: %s", why);
    }
    pl = strlen(KEY_SIGN);
    if (!line_has_prefix(line[4], line_len[4], KEY_SIGN) || parse_hex32(line[4] + pl, line_len[4] - pl, sign_pk) != 0) {
        sodium_memzero(seed, sizeof seed);
        return opg__fail(OPG_ERR_FORMAT, "line 5: expected \"sign-public <64 lowercase hex digits>\"");
    }
    opg_keypair k;
    opg_status st = opg_keypair_from_seed(seed, &k);
    sodium_memzero(seed, sizeof seed);
    if (st != OPG_OK) return st;
    if (memcmp(k.curve_pk, curve_pk, 32) != 0) {
        sodium_memzero(&k, sizeof k);
        return opg__fail(OPG_ERR_FORMAT, "line 4: curve-public does not match the seed");
    }
    if (memcmp(k.sign_pk, sign_pk, 32) != 0) {
        sodium_memzero(&k, sizeof k);
        return opg__fail(OPG_ERR_FORMAT, "line 5: sign-public does not match the seed");
    }
    *kp = k;
    sodium_memzero(&k, sizeof k);
    return OPG_OK;
}

/* Re-records the last error with "path: " in front, keeping the status. */
static opg_status fail_in(opg_status st, const char *path) {
    char why[400];
    snprintf(why, sizeof why, "%s", opg_last_error());
    return opg__fail(st, "%s: %s", path, why);
}

static opg_status write_all(int fd, const char *buf, size_t n) {
    while (n) {
        ssize_t w = write(fd, buf, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return OPG_ERR_IO;
        buf += w;
        n -= (size_t)w;
    }
    return OPG_OK;
}

opg_status opg_key_save(const char *path, const opg_keypair *kp) {
    if (!path || !kp) return opg__fail(OPG_ERR_ARG, "opg_key_save: NULL argument");
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        if (errno == EEXIST)
            return opg__fail(OPG_ERR_STATE, "%s: already exists (a key file is never overwritten)", path);
        return opg__fail(OPG_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
    }
    char text[OPG_KEY_FILE_LEN + 1];
    opg_key_format(kp, text);
    opg_status st = write_all(fd, text, OPG_KEY_FILE_LEN);
    sodium_memzero(text, sizeof text);
    int err = st != OPG_OK ? errno : 0;
    if (st == OPG_OK && fsync(fd) != 0) {
        st = OPG_ERR_IO;
        err = errno;
    }
    if (close(fd) != 0 && st == OPG_OK) {
        st = OPG_ERR_IO;
        err = errno;
    }
    if (st != OPG_OK) {
        unlink(path);
        return opg__fail(st, "%s: cannot write: %s", path, strerror(err ? err : EIO));
    }
    return OPG_OK;
}

opg_status opg_key_load(const char *path, opg_keypair *kp) {
    if (!path || !kp) return opg__fail(OPG_ERR_ARG, "opg_key_load: NULL argument");
    char *text;
    size_t len;
    mode_t mode = 0;
    opg_status st = opg_file_read(path, KEY_FILE_MAX, &text, &len, &mode);
    if (st != OPG_OK) return st;
    if (mode & 077) {
        sodium_memzero(text, len);
        free(text);
        return opg__fail(OPG_ERR_DENIED, "%s: mode %04o lets group or others read a secret key: chmod 600 %s", path,
                         (unsigned)(mode & 07777), path);
    }
    st = opg_key_parse(text, len, kp);
    sodium_memzero(text, len);
    free(text);
    return st == OPG_OK ? OPG_OK : fail_in(st, path);
}

opg_status opg_keygen_file(const char *path, char public_z85_out[41]) {
    if (!path) return opg__fail(OPG_ERR_ARG, "opg_keygen_file: NULL path");
    opg_keypair kp;
    opg_status st = opg_keypair_generate(&kp);
    if (st == OPG_OK) st = opg_key_save(path, &kp);
    if (st == OPG_OK && public_z85_out) opg_key_public_z85(kp.curve_pk, public_z85_out);
    opg_keypair_wipe(&kp);
    return st;
}

/* ---- allow lists -------------------------------------------------------------------- */
static int is_blank(char c) { return c == ' ' || c == '\t' || c == '\r'; }

/* One line (no '\n'): 1 and *key set for a key, 0 for blank or comment, -1
 * for anything else. */
static int allow_line(const char *s, size_t n, uint8_t key[32]) {
    while (n && is_blank(*s)) s++, n--;
    while (n && is_blank(s[n - 1])) n--;
    if (n == 0 || s[0] == '#') return 0;
    if (n < 40 || memchr(s, 0, n)) return -1;
    size_t rest = 40;
    while (rest < n && is_blank(s[rest])) rest++;
    if (rest < n && (rest == 40 || s[rest] != '#')) return -1; /* text after the key, not a comment */
    char z85[41];
    memcpy(z85, s, 40);
    z85[40] = 0;
    return opg_key_parse_public(z85, key) == OPG_OK ? 1 : -1;
}

opg_status opg_allowlist_parse(const char *text, size_t len, uint8_t (**keys)[32], size_t *n) {
    if (!keys || !n) return opg__fail(OPG_ERR_ARG, "opg_allowlist_parse: NULL output");
    *keys = NULL;
    *n = 0;
    if (!text && len) return opg__fail(OPG_ERR_ARG, "opg_allowlist_parse: NULL text");
    if (!text) text = "";
    uint8_t (*arr)[32] = NULL;
    size_t count = 0, cap = 0, lineno = 0;
    for (const char *p = text, *end = text + len; p < end;) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t ll = nl ? (size_t)(nl - p) : (size_t)(end - p);
        lineno++;
        uint8_t key[32];
        int r = allow_line(p, ll, key);
        if (r < 0) {
            free(arr);
            return opg__fail(OPG_ERR_FORMAT, "line %zu: expected a 40-character Z85 public key or a # comment",
                             lineno);
        }
        if (r == 1) {
            if (count == cap) {
                size_t nc = cap ? cap * 2 : 16;
                void *g = realloc(arr, nc * sizeof *arr);
                if (!g) {
                    free(arr);
                    return opg__fail(OPG_ERR_NOMEM, "allow list of %zu keys", nc);
                }
                arr = g;
                cap = nc;
            }
            memcpy(arr[count++], key, 32);
        }
        p += ll + (nl ? 1 : 0);
    }
    *keys = arr;
    *n = count;
    return OPG_OK;
}

opg_status opg_allowlist_load(const char *path, uint8_t (**keys)[32], size_t *n) {
    if (!keys || !n) return opg__fail(OPG_ERR_ARG, "opg_allowlist_load: NULL output");
    *keys = NULL;
    *n = 0;
    if (!path) return opg__fail(OPG_ERR_ARG, "opg_allowlist_load: NULL path");
    char *text;
    size_t len;
    opg_status st = opg_file_read(path, ALLOWLIST_MAX, &text, &len, NULL);
    if (st != OPG_OK) return st;
    st = opg_allowlist_parse(text, len, keys, n);
    free(text);
    return st == OPG_OK ? OPG_OK : fail_in(st, path);
}

/* ---- sockets -------------------------------------------------------------------------- */
static opg_status curve_ready(void *sock, const opg_keypair *kp, const char *fn) {
    if (!sock || !kp) return opg__fail(OPG_ERR_ARG, "%s: NULL argument", fn);
    if (!zmq_has("curve"))
        return opg__fail(OPG_ERR_UNSUPPORTED, "%s: this libzmq is built without CURVE (libsodium)", fn);
    return OPG_OK;
}

static opg_status setopt(void *sock, int opt, const void *v, size_t n, const char *name) {
    if (zmq_setsockopt(sock, opt, v, n) != 0)
        return opg__fail(OPG_ERR_ARG, "zmq_setsockopt(%s): %s", name, zmq_strerror(zmq_errno()));
    return OPG_OK;
}

#define TRY(x)                         \
    do {                               \
        opg_status st_ = (x);          \
        if (st_ != OPG_OK) return st_; \
    } while (0)

opg_status opg_sock_curve_server(void *sock, const opg_keypair *kp, const char *zap_domain) {
    TRY(curve_ready(sock, kp, "opg_sock_curve_server"));
    if (!zap_domain || !zap_domain[0] || strlen(zap_domain) > 255)
        return opg__fail(OPG_ERR_ARG, "opg_sock_curve_server: ZAP domain must be 1..255 characters");
    int one = 1;
    TRY(setopt(sock, ZMQ_CURVE_SERVER, &one, sizeof one, "ZMQ_CURVE_SERVER"));
    TRY(setopt(sock, ZMQ_CURVE_PUBLICKEY, kp->curve_pk, 32, "ZMQ_CURVE_PUBLICKEY"));
    TRY(setopt(sock, ZMQ_CURVE_SECRETKEY, kp->curve_sk, 32, "ZMQ_CURVE_SECRETKEY"));
    TRY(setopt(sock, ZMQ_ZAP_DOMAIN, zap_domain, strlen(zap_domain), "ZMQ_ZAP_DOMAIN"));
    (void)zmq_setsockopt(sock, ZMQ_ZAP_ENFORCE_DOMAIN, &one, sizeof one); /* fail closed where offered */
    return OPG_OK;
}

opg_status opg_sock_curve_client(void *sock, const opg_keypair *kp, const uint8_t server_curve_pk[32]) {
    TRY(curve_ready(sock, kp, "opg_sock_curve_client"));
    if (!server_curve_pk) return opg__fail(OPG_ERR_ARG, "opg_sock_curve_client: NULL server key");
    TRY(setopt(sock, ZMQ_CURVE_SERVERKEY, server_curve_pk, 32, "ZMQ_CURVE_SERVERKEY"));
    TRY(setopt(sock, ZMQ_CURVE_PUBLICKEY, kp->curve_pk, 32, "ZMQ_CURVE_PUBLICKEY"));
    TRY(setopt(sock, ZMQ_CURVE_SECRETKEY, kp->curve_sk, 32, "ZMQ_CURVE_SECRETKEY"));
    return OPG_OK;
}
