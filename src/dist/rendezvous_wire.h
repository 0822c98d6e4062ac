/* The rendezvous's wire format and socket helpers, shared by rendezvous.c (hello and id) and
 * liveness.c (heartbeats): private to src/dist/.
 *
 * A frame is a 12-byte header (magic "CTRV", protocol version, type, payload length, all
 * little-endian) and a payload of at most RV_MAX_PAYLOAD bytes whose exact length each type
 * fixes. A reader takes a frame into a fixed buffer and refuses anything else, so a stranger on
 * the port (an HTTP client, a port scanner) costs one closed connection, never memory. */
#ifndef CUTUNE_DIST_RENDEZVOUS_WIRE_H
#define CUTUNE_DIST_RENDEZVOUS_WIRE_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dist/rendezvous.h"

#define RV_MAGIC 0x56525443u /* "CTRV" as little-endian bytes */
#define RV_VERSION 1
#define RV_HEADER 12
#define RV_HOST_LEN 256 /* host name field of a hello or welcome, NUL-padded */
#define RV_HELLO_LEN (4 + 4 + 8 + RV_HOST_LEN)
#define RV_TEXT_MAX 512 /* a refusal's or a loss report's text */
#define RV_MAX_PAYLOAD (RV_HOST_LEN + CT_RENDEZVOUS_MAX_BLOB)

enum {
    RV_HELLO = 1, /* rank -> 0: rank i32, size i32, check u64, host */
    RV_WELCOME,   /* 0 -> rank: rank 0's host, then the blob */
    RV_REFUSE,    /* 0 -> rank: why, as text */
    RV_PING,      /* either way, empty: the heartbeat */
    RV_BYE,       /* either way, empty: a clean end */
    RV_LOST,      /* 0 -> rank: the lost rank i32, then why, as text */
    RV_TYPE_END
};

/* One connection: its socket, the peer's rank (-1 before its hello) and the frame being read. */
typedef struct rv_conn {
    int fd;                                  /* -1: none */
    int rank;
    uint8_t buf[RV_HEADER + RV_MAX_PAYLOAD]; /* the frame being read */
    size_t have;                             /* bytes of it read so far */
    double last_seen;                        /* rv_now() of its last frame */
    bool said_bye;
} rv_conn;

/* A frame read whole: payload points into the connection's buffer until its next read. */
typedef struct rv_frame {
    int type;
    uint32_t len;
    const uint8_t *payload; /* (len) */
} rv_frame;

struct ct_rendezvous {
    ct_world w;
    int listen_fd;
    rv_conn *conns;            /* (w.size) by peer rank; rank k > 0 uses conns[0] only */
    char (*hosts)[RV_HOST_LEN]; /* (w.size) */
    /* the watcher (liveness.c) */
    bool watching;
    pthread_t thread;
    int wake[2];               /* a pipe: a byte written stops the watcher */
    double timeout_s;
    void (*on_lost)(void *user, int rank, const char *reason);
    void *user;
};

/* Seconds on CLOCK_MONOTONIC. */
double rv_now(void);
/* Milliseconds from now to `deadline`, clamped to [0, cap_ms], for poll(). */
int rv_poll_ms(double deadline, int cap_ms);
void rv_put_u32(uint8_t *p, uint32_t v);
void rv_put_u64(uint8_t *p, uint64_t v);
uint32_t rv_get_u32(const uint8_t *p);
uint64_t rv_get_u64(const uint8_t *p);
bool rv_set_nonblocking(int fd);

/* Reads what has arrived on c without blocking. 1: a whole frame in *f; 0: not yet; -1: the peer
 * closed its end; -2: a read error or a malformed frame, the reason in `why`. */
int rv_read_frame(rv_conn *c, rv_frame *f, char *why, size_t cap);

/* Sends one frame on a non-blocking socket, waiting until `deadline` for room. False with the
 * reason in `why` (never SIGPIPE: the peer may be gone). */
bool rv_send_frame(int fd, int type, const void *payload, uint32_t len, double deadline,
                   char *why, size_t cap);

/* Sends a text frame (RV_REFUSE, or RV_LOST with `rank`), best effort within `seconds`. */
void rv_send_text(int fd, int type, int rank, const char *text, double seconds);

/* Closes c's socket after a best-effort drain, so that its peer sees an orderly end. */
void rv_conn_close(rv_conn *c);

#endif
