/* fuzz_keyfile.c: libFuzzer target for the identity key file and allow list
 * parsers (net/keys.h).
 *
 * The input goes through opg_key_parse, opg_allowlist_parse, and (as a
 * NUL-terminated string of at most 64 bytes) opg_key_parse_public. A
 * rejected input must give OPG_ERR_FORMAT and a message. An accepted key file
 * must be exactly opg_key_format of the parsed keypair (one text per key),
 * and the keypair exactly opg_keypair_from_seed of its seed; every key of an
 * accepted allow list must appear in the input in Z85; an accepted public
 * key must re-encode to the input. Violations are __builtin_trap(). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "keys.h"

#define CHECK(c)                        \
    do {                                \
        if (!(c)) __builtin_trap();     \
    } while (0)

static volatile uint64_t g_sink;

static void check_failure(opg_status st) {
    CHECK(st == OPG_ERR_FORMAT);
    CHECK(opg_last_error()[0] != 0);
    g_sink += strlen(opg_last_error());
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *text = (const char *)data;

    opg_keypair kp, again;
    opg_status st = opg_key_parse(text, size, &kp);
    if (st != OPG_OK) {
        check_failure(st);
    } else {
        CHECK(size == OPG_KEY_FILE_LEN);
        char fmt[OPG_KEY_FILE_LEN + 1];
        opg_key_format(&kp, fmt);
        CHECK(memcmp(fmt, data, size) == 0);
        CHECK(opg_keypair_from_seed(kp.seed, &again) == OPG_OK);
        CHECK(memcmp(&kp, &again, sizeof kp) == 0);
    }

    uint8_t (*keys)[32] = (uint8_t (*)[32])1;
    size_t n = 99;
    st = opg_allowlist_parse(text, size, &keys, &n);
    if (st != OPG_OK) {
        check_failure(st);
        CHECK(keys == NULL && n == 0);
    } else {
        CHECK((keys == NULL) == (n == 0));
        CHECK(n <= size / 40);
        for (size_t i = 0; i < n; i++) {
            char z[41];
            opg_key_public_z85(keys[i], z);
            CHECK(memmem(data, size, z, 40) != NULL);
        }
        free(keys);
    }

    if (size <= 64) {
        char s[65];
        memcpy(s, data, size);
        s[size] = 0;
        uint8_t pk[32];
        st = opg_key_parse_public(s, pk);
        if (st != OPG_OK) {
            check_failure(st);
        } else {
            char z[41];
            opg_key_public_z85(pk, z);
            CHECK(strlen(s) == 40 && memcmp(z, s, 40) == 0);
        }
    }
    return 0;
}
