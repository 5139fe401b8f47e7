/* zap.h: the ZAP handler (ZeroMQ Authentication Protocol, RFC 27) that
 * decides which CURVE clients a node's server sockets admit.
 *
 * libzmq asks the handler bound at inproc://zeromq.zap.01 of the socket's
 * context about every handshake on a socket with a ZAP domain (set by
 * opg_sock_curve_server, net/keys.h). This one runs on its own thread and
 * keeps, per domain ("workers", "clients" ...), an allow list of curve public
 * keys. It accepts (200) only mechanism CURVE with a key on the request's
 * domain list, and sets the reply's User-Id to that key in Z85, so receiving
 * code reads the peer's identity with zmq_msg_gets(msg, "User-Id").
 * Everything else is refused: 400 for an unknown domain, a NULL or PLAIN
 * mechanism, or a key not on the list; 500 for a malformed request.
 *
 * Start it before binding the server sockets it guards. */
#ifndef OPG_ZAP_H
#define OPG_ZAP_H

#include <stdint.h>

#include "log.h"
#include "status.h"

typedef struct opg_zap opg_zap;

/* Binds inproc://zeromq.zap.01 in zmq_ctx and starts the handler thread. On
 * success *out is the handler (caller owns, stop with opg_zap_stop); on
 * failure NULL. OPG_ERR_STATE when the context already has a ZAP handler. */
opg_status opg_zap_start(void *zmq_ctx, opg_zap **out);
/* Admits curve_pk on sockets of domain (1..255 characters); the domain is
 * created on first use. Thread-safe, any time; takes effect for the next
 * handshake. Adding a key twice is harmless. */
opg_status opg_zap_allow(opg_zap *z, const char *domain, const uint8_t curve_pk[32]);
/* Handshakes answered 200, and answered otherwise (400 and 500), so far. */
uint64_t opg_zap_accepted(opg_zap *z);
uint64_t opg_zap_refused(opg_zap *z);
/* Optional: one line per decision (event=zap_accept at debug level,
 * event=zap_refuse at warn, with domain, mechanism, address and key). *lg is
 * copied; its sink is called from the handler thread. NULL turns it off. */
void opg_zap_set_log(opg_zap *z, const opg_log *lg);
/* Stops the thread, closes the handler's sockets and frees z. Call before
 * zmq_ctx_term of its context. NULL is a no-op. */
void opg_zap_stop(opg_zap *z);

#endif
