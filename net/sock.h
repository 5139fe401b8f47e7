/* sock.h: opg frames over ZeroMQ sockets.
 *
 * Workers and clients use a DEALER socket, the coordinator a ROUTER for each
 * (docs/protocol.md, "Transport"). A message is one ZeroMQ frame holding one
 * opg frame (proto/frame.h); on a ROUTER it is preceded by the peer's routing
 * id. Anything else (more parts, an empty part) is malformed and dropped.
 * Sends never block: a peer whose queue is full (high-water mark) loses that
 * message rather than stalling the sender. */
#ifndef OPG_SOCK_H
#define OPG_SOCK_H

#include <stddef.h>
#include <stdint.h>

#include "frame.h"
#include "status.h"

/* Who a ROUTER message came from. */
typedef struct {
    uint8_t rid[256];     /* ZeroMQ routing id */
    size_t rid_len;
    char user_id[64];     /* ZAP User-Id (Z85 curve public key) or "" */
} opg_peer;

/* Options every opg socket gets: ZMQ_MAXMSGSIZE just above OPG_FRAME_MAX
 * (libzmq drops a peer that sends more), the given send/receive high-water
 * marks (messages; 0 keeps libzmq's 1000), linger_ms on close, and on a
 * ROUTER ZMQ_ROUTER_MANDATORY, so a send to a vanished peer is an error, not
 * a silent drop. */
opg_status opg_sock_setup(void *sock, int is_router, int sndhwm, int rcvhwm, int linger_ms);

/* Before binding or connecting sock to ep: a tcp endpoint whose host is an
 * IPv6 address in brackets ("tcp://[::1]:5555") needs ZMQ_IPV6, which
 * ZeroMQ leaves off. Only then is it set: with it on, a name such as
 * localhost may resolve to ::1 first while the other side listens on
 * 127.0.0.1 only. */
void opg_sock_ipv6_for(void *sock, const char *ep);

/* Encodes msg (of type) and sends it, to peer on a ROUTER (peer NULL on a
 * DEALER). OPG_ERR_LIMIT when the peer's queue is full, OPG_ERR_NOT_FOUND
 * when a ROUTER's peer is gone; encode errors as opg_frame_encode. */
opg_status opg_sock_send(void *sock, const opg_peer *peer, opg_msg_type type, const ProtobufCMessage *msg);
/* Sends already encoded bytes (tests use it to send malformed frames). */
opg_status opg_sock_send_raw(void *sock, const opg_peer *peer, const void *buf, size_t len);
/* Sends an Error {job_id, code, message}. */
opg_status opg_sock_send_error(void *sock, const opg_peer *peer, uint64_t job_id, opg_status code, const char *message);

/* Receives one message without blocking. OPG_OK: *out is the decoded frame
 * (caller frees: opg_frame_free) and, on a ROUTER, *peer its sender.
 * OPG_ERR_TIMEOUT: nothing waiting. A malformed message returns the decode
 * error (OPG_ERR_FORMAT, OPG_ERR_LIMIT, OPG_ERR_UNSUPPORTED) with *peer
 * filled when known (peer->rid_len > 0), so the caller can answer it; the
 * message is consumed either way. */
opg_status opg_sock_recv(void *sock, int is_router, opg_peer *peer, opg_frame **out);

/* Milliseconds of CLOCK_MONOTONIC, and of the wall clock (Unix epoch). */
int64_t opg_now_ms(void);
int64_t opg_wall_ms(void);

/* Reads one event from a socket monitor's PAIR (zmq_socket_monitor), both
 * its frames, without waiting: 1 with *event (ZMQ_EVENT_*) and *value set,
 * 0 when none waits. */
int opg_sock_monitor_event(void *mon, uint16_t *event, uint32_t *value);

/* OPG_OK when endpoint has a form ZeroMQ takes as meant: tcp://HOST:PORT
 * (PORT 0-65535 or *; libzmq itself takes any number and binds a random
 * port for one above 65535), ipc://PATH or inproc://NAME; else OPG_ERR_ARG
 * naming what is wrong. Whether HOST resolves is left to bind/connect. */
opg_status opg_endpoint_check(const char *endpoint);

/* Non-zero when a ZeroMQ endpoint stays on this machine: ipc://, inproc://,
 * or tcp:// on 127.0.0.0/8, ::1 or localhost. Sockets on any other endpoint
 * must use CurveZMQ. */
int opg_endpoint_is_local(const char *endpoint);

#endif
