/* sock.c: opg frames over ZeroMQ (sock.h). */
#include "sock.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

opg_status opg_sock_setup(void *sock, int is_router, int sndhwm, int rcvhwm, int linger_ms) {
    int64_t maxsz = (int64_t)OPG_FRAME_MAX + 1024;
    int one = 1;
    if (zmq_setsockopt(sock, ZMQ_MAXMSGSIZE, &maxsz, sizeof maxsz) ||
        (sndhwm > 0 && zmq_setsockopt(sock, ZMQ_SNDHWM, &sndhwm, sizeof sndhwm)) ||
        (rcvhwm > 0 && zmq_setsockopt(sock, ZMQ_RCVHWM, &rcvhwm, sizeof rcvhwm)) ||
        zmq_setsockopt(sock, ZMQ_LINGER, &linger_ms, sizeof linger_ms) ||
        (is_router && zmq_setsockopt(sock, ZMQ_ROUTER_MANDATORY, &one, sizeof one)))
        return opg__fail(OPG_ERR_IO, "socket options: %s", zmq_strerror(zmq_errno()));
    return OPG_OK;
}

static opg_status send_fail(const char *what) {
    int e = zmq_errno();
    if (e == EAGAIN) return opg__fail(OPG_ERR_LIMIT, "%s: the peer's queue is full", what);
    if (e == EHOSTUNREACH) return opg__fail(OPG_ERR_NOT_FOUND, "%s: the peer is gone", what);
    return opg__fail(OPG_ERR_IO, "%s: %s", what, zmq_strerror(e));
}

opg_status opg_sock_send_raw(void *sock, const opg_peer *peer, const void *buf, size_t len) {
    if (peer && zmq_send(sock, peer->rid, peer->rid_len, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0)
        return send_fail("send");
    if (zmq_send(sock, buf, len, ZMQ_DONTWAIT) < 0) return send_fail("send");
    return OPG_OK;
}

opg_status opg_sock_send(void *sock, const opg_peer *peer, opg_msg_type type, const ProtobufCMessage *msg) {
    uint8_t *buf = NULL;
    size_t len = 0;
    opg_status st = opg_frame_encode(type, msg, &buf, &len);
    if (st) return st;
    st = opg_sock_send_raw(sock, peer, buf, len);
    free(buf);
    return st;
}

opg_status opg_sock_send_error(void *sock, const opg_peer *peer, uint64_t job_id, opg_status code, const char *message) {
    Opg__V1__Error e = OPG__V1__ERROR__INIT;
    e.job_id = job_id;
    e.code = code < 0 ? code : OPG_ERR_STATE;
    char msg[OPG_PROTO_MAX_SHORT_STRING + 1];
    snprintf(msg, sizeof msg, "%s", message && message[0] ? message : opg_strerror(e.code));
    e.message = msg;
    return opg_sock_send(sock, peer, OPG__V1__MESSAGE_TYPE__MESSAGE_TYPE_ERROR, &e.base);
}

/* Drops the remaining parts of a message. */
static void drain(void *sock) {
    int more = 1;
    size_t sz = sizeof more;
    while (zmq_getsockopt(sock, ZMQ_RCVMORE, &more, &sz) == 0 && more) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        zmq_msg_recv(&m, sock, ZMQ_DONTWAIT);
        zmq_msg_close(&m);
    }
}

opg_status opg_sock_recv(void *sock, int is_router, opg_peer *peer, opg_frame **out) {
    *out = NULL;
    if (peer) {
        peer->rid_len = 0;
        peer->user_id[0] = 0;
    }
    zmq_msg_t m;
    zmq_msg_init(&m);
    if (is_router) {
        if (zmq_msg_recv(&m, sock, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&m);
            if (zmq_errno() == EAGAIN) return opg__fail(OPG_ERR_TIMEOUT, "no message");
            return opg__fail(OPG_ERR_IO, "receive: %s", zmq_strerror(zmq_errno()));
        }
        size_t n = zmq_msg_size(&m);
        if (peer && n <= sizeof peer->rid) {
            memcpy(peer->rid, zmq_msg_data(&m), n);
            peer->rid_len = n;
        }
        int more = zmq_msg_more(&m);
        zmq_msg_close(&m);
        if (!more) return opg__fail(OPG_ERR_FORMAT, "message without a body");
        zmq_msg_init(&m);
    }
    if (zmq_msg_recv(&m, sock, ZMQ_DONTWAIT) < 0) {
        zmq_msg_close(&m);
        if (!is_router && zmq_errno() == EAGAIN) return opg__fail(OPG_ERR_TIMEOUT, "no message");
        return opg__fail(OPG_ERR_IO, "receive: %s", zmq_strerror(zmq_errno()));
    }
    if (peer) {
        const char *uid = zmq_msg_gets(&m, "User-Id");
        if (uid) snprintf(peer->user_id, sizeof peer->user_id, "%s", uid);
    }
    if (zmq_msg_more(&m)) {
        zmq_msg_close(&m);
        drain(sock);
        return opg__fail(OPG_ERR_FORMAT, "message of more than one frame");
    }
    opg_status st = opg_frame_decode(zmq_msg_data(&m), zmq_msg_size(&m), out);
    zmq_msg_close(&m);
    return st;
}

int64_t opg_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t opg_wall_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void opg_sock_ipv6_for(void *sock, const char *ep) {
    if (!ep || strncmp(ep, "tcp://", 6) || !strchr(ep, '[')) return;
    int one = 1;
    zmq_setsockopt(sock, ZMQ_IPV6, &one, sizeof one);
}

int opg_sock_monitor_event(void *mon, uint16_t *event, uint32_t *value) {
    *event = 0;
    *value = 0;
    zmq_msg_t m;
    zmq_msg_init(&m);
    if (!mon || zmq_msg_recv(&m, mon, ZMQ_DONTWAIT) < 0) {
        zmq_msg_close(&m);
        return 0;
    }
    if (zmq_msg_size(&m) >= 6) { /* frame 1: event (16 bits), value (32 bits); frame 2: the endpoint */
        memcpy(event, zmq_msg_data(&m), 2);
        memcpy(value, (const char *)zmq_msg_data(&m) + 2, 4);
    }
    while (zmq_msg_more(&m)) {
        zmq_msg_close(&m);
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, mon, 0) < 0) break;
    }
    zmq_msg_close(&m);
    return 1;
}

opg_status opg_endpoint_check(const char *ep) {
    if (!ep || !ep[0]) return opg__fail(OPG_ERR_ARG, "empty endpoint");
    const char *forms = "tcp://HOST:PORT, ipc://PATH or inproc://NAME";
    size_t pre = !strncmp(ep, "ipc://", 6) ? 6 : !strncmp(ep, "inproc://", 9) ? 9 : 0;
    if (pre)
        return ep[pre] ? OPG_OK : opg__fail(OPG_ERR_ARG, "endpoint %s: no path or name (%s)", ep, forms);
    if (strncmp(ep, "tcp://", 6))
        return opg__fail(OPG_ERR_ARG, "endpoint %s: not %s", ep, forms);
    const char *h = ep + 6;
    const char *semi = strrchr(h, ';'); /* "source;destination" */
    if (semi) h = semi + 1;
    const char *colon = strrchr(h, ':');
    if (!colon || colon == h || (h[0] == '[' && colon[-1] != ']'))
        return opg__fail(OPG_ERR_ARG, "endpoint %s: no HOST:PORT after tcp://", ep);
    const char *port = colon + 1;
    if (!strcmp(port, "*")) return OPG_OK; /* a bind to any free port */
    size_t nd = strspn(port, "0123456789");
    if (nd == 0 || port[nd] || nd > 5 || atol(port) > 65535)
        return opg__fail(OPG_ERR_ARG, "endpoint %s: port '%s' is not a number from 0 to 65535 (or *)", ep, port);
    return OPG_OK;
}

int opg_endpoint_is_local(const char *ep) {
    if (!ep) return 0;
    if (!strncmp(ep, "ipc://", 6) || !strncmp(ep, "inproc://", 9)) return 1;
    if (strncmp(ep, "tcp://", 6)) return 0;
    const char *h = ep + 6;
    const char *semi = strrchr(h, ';'); /* "source;destination": the destination counts */
    if (semi) h = semi + 1;
    /* the host is an address that parses as loopback, or exactly "localhost": a
       prefix test would take a DNS name such as 127.example.net for local */
    char host[64];
    const char *colon = strrchr(h, ':');
    size_t n = colon ? (size_t)(colon - h) : strlen(h);
    if (n == 0 || n >= sizeof host) return 0;
    memcpy(host, h, n);
    host[n] = 0;
    if (!strcmp(host, "localhost")) return 1;
    if (host[0] == '[' && host[n - 1] == ']') {
        struct in6_addr a6;
        host[n - 1] = 0;
        return inet_pton(AF_INET6, host + 1, &a6) == 1 && IN6_IS_ADDR_LOOPBACK(&a6);
    }
    struct in_addr a4;
    return inet_pton(AF_INET, host, &a4) == 1 && (ntohl(a4.s_addr) >> 24) == 127;
}
