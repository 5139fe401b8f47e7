/* keys.h: a node's identity key, its key file, allow lists of peer keys, and
 * CurveZMQ socket setup.
 *
 * One identity per node: an Ed25519 keypair derived from a 32-byte seed signs
 * receipts (proto/receipt.h); its X25519 form (libsodium's
 * crypto_sign_ed25519_{pk,sk}_to_curve25519) is the node's CurveZMQ keypair,
 * so one secret file covers both. Peers are named by their curve public key
 * in Z85 (40 characters), the form ZeroMQ tools print and the form ZAP
 * (net/zap.h) sets as a message's User-Id.
 *
 * Return codes (runtime/status.h), with opg_last_error() naming the problem:
 *   OPG_ERR_IO         a file cannot be opened, read or written, or is no regular file
 *   OPG_ERR_NOT_FOUND  the file to read does not exist
 *   OPG_ERR_LIMIT      a key file or allow list larger than its limit
 *   OPG_ERR_FORMAT     a key file or allow list deviating from its format (the
 *                      message names the file and line), a bad Z85 key
 *   OPG_ERR_STATE      opg_key_save: the file already exists (never overwritten)
 *   OPG_ERR_DENIED     opg_key_load: the key file is readable by group or others
 *   OPG_ERR_ARG        NULL arguments
 *   OPG_ERR_NOMEM      allocation failed
 *   OPG_ERR_UNSUPPORTED libsodium failed to initialise, or libzmq lacks CURVE */
#ifndef OPG_KEYS_H
#define OPG_KEYS_H

#include <stddef.h>
#include <stdint.h>

#include "status.h"

/* Both keypairs of one identity; everything follows from seed. sign_sk is
 * libsodium's 64-byte form (seed || sign_pk). Secret: wipe with
 * opg_keypair_wipe when done. */
typedef struct {
    uint8_t seed[32];
    uint8_t sign_pk[32], sign_sk[64];   /* Ed25519 */
    uint8_t curve_pk[32], curve_sk[32]; /* X25519, the CurveZMQ keypair */
} opg_keypair;

/* A new identity from the system's random source. */
opg_status opg_keypair_generate(opg_keypair *kp);
/* The identity of seed (deterministic). */
opg_status opg_keypair_from_seed(const uint8_t seed[32], opg_keypair *kp);
/* Zeroes *kp (libsodium's sodium_memzero, not optimised away). NULL ok. */
void opg_keypair_wipe(opg_keypair *kp);

/* ---- key file -------------------------------------------------------------------
 * Text, exactly these five lines, each ending in '\n' (245 bytes):
 *   # opg identity key (keep secret)
 *   opg-key-v1
 *   seed <64 lowercase hex digits>
 *   curve-public <40-char Z85>
 *   sign-public <64 lowercase hex digits>
 * The public lines let a person read the node's keys without a tool; the
 * parser recomputes both from the seed and refuses a file where they differ. */
#define OPG_KEY_FILE_LEN 245u

/* The key file's text of kp into out (OPG_KEY_FILE_LEN bytes + NUL). The text
 * holds the secret seed: wipe it when done. */
void opg_key_format(const opg_keypair *kp, char out[OPG_KEY_FILE_LEN + 1]);
/* Writes kp to a new file at path, mode 0600, created with O_EXCL:
 * OPG_ERR_STATE when path exists (a key is never overwritten). A partly
 * written file is removed. */
opg_status opg_key_save(const char *path, const opg_keypair *kp);
/* Reads the key file at path. OPG_ERR_DENIED when the file's mode gives group
 * or others any access ("chmod 600 <path>"), like ssh; OPG_ERR_FORMAT for any
 * deviation from the format above, naming path and line. */
opg_status opg_key_load(const char *path, opg_keypair *kp);
/* The parser of opg_key_load alone, over text[0..len) (need not be
 * NUL-terminated); messages name the line but no path. */
opg_status opg_key_parse(const char *text, size_t len, opg_keypair *kp);
/* Generates a new identity, saves it at path (as opg_key_save) and writes its
 * curve public key in Z85 to public_z85_out (may be NULL). For `opg keygen`. */
opg_status opg_keygen_file(const char *path, char public_z85_out[41]);

/* ---- public keys in Z85 -------------------------------------------------------- */
/* curve_pk as 40 Z85 characters + NUL. */
void opg_key_public_z85(const uint8_t curve_pk[32], char out[41]);
/* Parses exactly 40 Z85 characters (NUL-terminated, nothing around them) in
 * canonical form (the one opg_key_public_z85 writes); OPG_ERR_FORMAT else. */
opg_status opg_key_parse_public(const char *z85, uint8_t curve_pk[32]);

/* Reads an allow list: one Z85 curve public key per line, optionally followed
 * by blanks and a '#' comment (a peer's name); blank lines and lines starting
 * with '#' are ignored (no key starts with '#': the first character of a Z85
 * group encodes at most 82, and '#' is 84); blanks around a line and a CR
 * before the newline are allowed.
 * Anything else is OPG_ERR_FORMAT naming path and line. On success *keys
 * (caller owns, free with free(); NULL when *n is 0) holds *n keys in file
 * order; on failure *keys is NULL and *n 0. */
opg_status opg_allowlist_load(const char *path, uint8_t (**keys)[32], size_t *n);
/* The parser of opg_allowlist_load alone, over text[0..len). */
opg_status opg_allowlist_parse(const char *text, size_t len, uint8_t (**keys)[32], size_t *n);

/* ---- CurveZMQ sockets ------------------------------------------------------------
 * Call before bind/connect. libzmq must have CURVE (zmq_has("curve")), else
 * OPG_ERR_UNSUPPORTED. */

/* Makes sock a CURVE server with kp's curve keys, authenticating clients
 * through ZAP domain zap_domain (net/zap.h; non-empty). Where libzmq offers
 * ZMQ_ZAP_ENFORCE_DOMAIN it is set too, so that the socket refuses clients
 * when no ZAP handler runs instead of admitting every key. */
opg_status opg_sock_curve_server(void *sock, const opg_keypair *kp, const char *zap_domain);
/* Makes sock a CURVE client with kp's curve keys, talking to the server whose
 * curve public key is server_curve_pk. */
opg_status opg_sock_curve_client(void *sock, const opg_keypair *kp, const uint8_t server_curve_pk[32]);

#endif
