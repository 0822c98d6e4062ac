/* The rendezvous's frames on the wire (rendezvous_wire.h): encoding, a reader that takes one
 * frame at a time into a fixed buffer and refuses anything malformed, and a sender that waits on
 * poll() against a deadline and never raises SIGPIPE. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include "dist/rendezvous_wire.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

double rv_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

int rv_poll_ms(double deadline, int cap_ms) {
    double ms = (deadline - rv_now()) * 1000.0;
    if (ms < 0) return 0;
    return ms > cap_ms ? cap_ms : (int)ms + 1;
}

void rv_put_u32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}

void rv_put_u64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

uint32_t rv_get_u32(const uint8_t *p) {
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) v |= (uint32_t)p[i] << (8 * i);
    return v;
}

uint64_t rv_get_u64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v |= (uint64_t)p[i] << (8 * i);
    return v;
}

bool rv_set_nonblocking(int fd) {
    int flags = fcntl(fd, F_GETFL, 0);
    return flags >= 0 && fcntl(fd, F_SETFL, flags | O_NONBLOCK) == 0;
}

/* Checks a whole header; false with the reason (the first bytes, printable, for a stranger). */
static bool header_ok(const uint8_t *h, char *why, size_t cap) {
    if (rv_get_u32(h) != RV_MAGIC) {
        char shown[5];
        for (int i = 0; i < 4; i++) shown[i] = h[i] >= 32 && h[i] < 127 ? (char)h[i] : '.';
        shown[4] = '\0';
        snprintf(why, cap, "not a cutune rendezvous message (it began with '%s')", shown);
        return false;
    }
    unsigned version = h[4] | (unsigned)h[5] << 8, type = h[6] | (unsigned)h[7] << 8;
    uint32_t len = rv_get_u32(h + 8);
    if (version != RV_VERSION) {
        snprintf(why, cap, "rendezvous protocol version %u, this cutune speaks %d (mixed cutune "
                 "versions?)", version, RV_VERSION);
        return false;
    }
    if (type < RV_HELLO || type >= RV_TYPE_END || len > RV_MAX_PAYLOAD) {
        snprintf(why, cap, "a malformed rendezvous message (type %u, %u bytes)", type,
                 (unsigned)len);
        return false;
    }
    return true;
}

int rv_read_frame(rv_conn *c, rv_frame *f, char *why, size_t cap) {
    for (;;) {
        size_t want = RV_HEADER;
        if (c->have >= RV_HEADER) want += rv_get_u32(c->buf + 8);
        if (c->have == want) {
            f->type = c->buf[6] | c->buf[7] << 8;
            f->len = (uint32_t)(want - RV_HEADER);
            f->payload = c->buf + RV_HEADER;
            c->have = 0;
            return 1;
        }
        ssize_t n = recv(c->fd, c->buf + c->have, want - c->have, MSG_DONTWAIT);
        if (n == 0) return -1;
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
            snprintf(why, cap, "its connection broke (%s)", strerror(errno));
            return errno == ECONNRESET ? -1 : -2;
        }
        c->have += (size_t)n;
        if (c->have == RV_HEADER && !header_ok(c->buf, why, cap)) return -2;
    }
}

bool rv_send_frame(int fd, int type, const void *payload, uint32_t len, double deadline,
                   char *why, size_t cap) {
    uint8_t frame[RV_HEADER + RV_MAX_PAYLOAD];
    if (len > RV_MAX_PAYLOAD) {
        snprintf(why, cap, "a message of %u bytes is too long", (unsigned)len);
        return false;
    }
    rv_put_u32(frame, RV_MAGIC);
    frame[4] = RV_VERSION & 0xff;
    frame[5] = RV_VERSION >> 8;
    frame[6] = (uint8_t)type;
    frame[7] = (uint8_t)(type >> 8);
    rv_put_u32(frame + 8, len);
    if (len > 0) memcpy(frame + RV_HEADER, payload, len);
    size_t sent = 0, total = RV_HEADER + (size_t)len;
    while (sent < total) {
        ssize_t n = send(fd, frame + sent, total - sent, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            sent += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
            snprintf(why, cap, "cannot send (%s)", strerror(errno));
            return false;
        }
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        if (rv_now() >= deadline) {
            snprintf(why, cap, "cannot send: the peer takes nothing (its buffers are full)");
            return false;
        }
        if (poll(&p, 1, rv_poll_ms(deadline, 1000)) < 0 && errno != EINTR) {
            snprintf(why, cap, "cannot send (poll: %s)", strerror(errno));
            return false;
        }
    }
    return true;
}

void rv_send_text(int fd, int type, int rank, const char *text, double seconds) {
    uint8_t payload[4 + RV_TEXT_MAX];
    size_t off = 0;
    if (type == RV_LOST) {
        rv_put_u32(payload, (uint32_t)rank);
        off = 4;
    }
    size_t n = strlen(text);
    if (n > RV_TEXT_MAX) n = RV_TEXT_MAX;
    memcpy(payload + off, text, n);
    char why[128];
    rv_send_frame(fd, type, payload, (uint32_t)(off + n), rv_now() + seconds, why, sizeof why);
}

void rv_conn_close(rv_conn *c) {
    if (c->fd < 0) return;
    shutdown(c->fd, SHUT_WR);
    /* Unread bytes at close() make the kernel reset the connection, which can discard what
     * this side sent last (a goodbye, a refusal) before the peer reads it: take them first. */
    uint8_t sink[512];
    while (recv(c->fd, sink, sizeof sink, MSG_DONTWAIT) > 0) {
    }
    close(c->fd);
    c->fd = -1;
}
