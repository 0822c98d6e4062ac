/* The rendezvous of a torchrun-style launch (rendezvous.h): rank 0 listens and checks every
 * rank's hello, the others connect, and every rank leaves with rank 0's blob (NCCL's id).
 *
 * Ranks start in any order, so a rank that finds nobody listening retries until its deadline;
 * rank 0 waits for the missing ranks until its own. Every wait is a poll() against a deadline on
 * CLOCK_MONOTONIC, and every failure says who (rank, host), where (address, port) and why, since
 * the message is read on one host about a process on another. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L /* getaddrinfo, nanosleep */
#endif
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/knobs.h"
#include "dist/rendezvous_wire.h"

/* Where rank 0 is, for messages: "10.0.0.1:29500", "[fe80::1]:29500". */
static const char *master_text(const ct_world *w, char *buf, size_t cap) {
    snprintf(buf, cap, strchr(w->master_addr, ':') ? "[%s]:%d" : "%s:%d", w->master_addr,
             w->master_port);
    return buf;
}

/* A listening socket on `port` of every address: IPv6 accepting IPv4 too, or IPv4 alone where
 * the host has no IPv6. */
static ct_status listen_any(int port, int backlog, int *out) {
    int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1, zero = 0, err = 0;
    if (fd >= 0) {
        struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_port = htons((uint16_t)port),
                                 .sin6_addr = in6addr_any};
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
        if (bind(fd, (struct sockaddr *)&a, sizeof a) == 0 && listen(fd, backlog) == 0) {
            *out = fd;
            return CT_OK;
        }
        err = errno;
        close(fd);
    }
    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd >= 0) {
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                                .sin_addr.s_addr = htonl(INADDR_ANY)};
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, (struct sockaddr *)&a, sizeof a) == 0 && listen(fd, backlog) == 0) {
            *out = fd;
            return CT_OK;
        }
        err = errno;
        close(fd);
    }
    return ct_error(CT_EIO, "rendezvous: rank 0 cannot listen on port %d (every address): %s%s",
                    port, strerror(err ? err : errno),
                    err == EADDRINUSE ? " (another run or service holds it: choose another "
                                        "MASTER_PORT)" : "");
}

/* One hello's fields, checked against rank 0's; "" when they agree, else the reason. */
static void check_hello(const ct_rendezvous *rv, const rv_frame *f, uint64_t check, int *rank,
                        char *host, char *why, size_t cap) {
    *rank = (int)rv_get_u32(f->payload);
    int size = (int)rv_get_u32(f->payload + 4);
    uint64_t their = rv_get_u64(f->payload + 8);
    memcpy(host, f->payload + 16, RV_HOST_LEN);
    host[RV_HOST_LEN - 1] = '\0';
    why[0] = '\0';
    if (size != rv->w.size)
        snprintf(why, cap, "rank %d (host %s) expects a world of %d ranks, rank 0 of %d "
                 "(WORLD_SIZE differs between ranks)", *rank, host, size, rv->w.size);
    else if (*rank < 1 || *rank >= rv->w.size)
        snprintf(why, cap, "a process on host %s says it is rank %d, %s", host, *rank,
                 *rank == 0 ? "but rank 0 is this process (two ranks have RANK=0)"
                            : "outside the world's ranks");
    else if (rv->conns[*rank].fd >= 0)
        snprintf(why, cap, "rank %d arrived twice (hosts %s and %s): two processes have RANK=%d",
                 *rank, rv->hosts[*rank], host, *rank);
    else if (their != check)
        snprintf(why, cap, "rank %d (host %s) runs with different settings (check %016llx, rank "
                 "0's %016llx): start every rank with the same command and configuration",
                 *rank, host, (unsigned long long)their, (unsigned long long)check);
}

/* Rank 0's failure: every rank that arrived learns the reason, then the error is recorded. */
static ct_status root_fail(ct_rendezvous *rv, rv_conn *pending, int n_pending, ct_status code,
                           const char *why) {
    char text[RV_TEXT_MAX];
    snprintf(text, sizeof text, "rank 0 (host %s) stopped the rendezvous: %s", rv->w.host, why);
    for (int r = 1; r < rv->w.size; r++)
        if (rv->conns[r].fd >= 0) rv_send_text(rv->conns[r].fd, RV_REFUSE, 0, text, 0.5);
    for (int i = 0; i < n_pending; i++)
        if (pending[i].fd >= 0) rv_send_text(pending[i].fd, RV_REFUSE, 0, text, 0.5);
    return ct_error(code, "rendezvous on port %d (rank 0, host %s): %s", rv->w.master_port,
                    rv->w.host, why);
}

/* A frame from a connection that has not said hello yet: 1 when it was a good hello (moved to
 * rv->conns), 0 when the stranger was dropped, -1 on a mismatch that ends the rendezvous. */
static int root_take_hello(ct_rendezvous *rv, rv_conn *c, const rv_frame *f, uint64_t check,
                           char *why, size_t cap) {
    char host[RV_HOST_LEN];
    int rank;
    if (f->type != RV_HELLO || f->len != RV_HELLO_LEN) {
        rv_send_text(c->fd, RV_REFUSE, 0, "expected a hello", 0.2);
        rv_conn_close(c);
        return 0;
    }
    check_hello(rv, f, check, &rank, host, why, cap);
    if (why[0] != '\0') {
        rv_send_text(c->fd, RV_REFUSE, 0, why, 0.5);
        rv_conn_close(c);
        return -1;
    }
    rv->conns[rank] = *c;
    rv->conns[rank].rank = rank;
    rv->conns[rank].last_seen = rv_now();
    snprintf(rv->hosts[rank], RV_HOST_LEN, "%s", host);
    c->fd = -1;
    return 1;
}

/* The ranks that have not arrived, "1, 3" (at most ~40 named). */
static void missing_ranks(const ct_rendezvous *rv, char *buf, size_t cap) {
    size_t off = 0;
    int named = 0, missing = 0;
    buf[0] = '\0';
    for (int r = 1; r < rv->w.size; r++) {
        if (rv->conns[r].fd >= 0) continue;
        missing++;
        if (named < 40 && off + 16 < cap) {
            off += (size_t)snprintf(buf + off, cap - off, "%s%d", named ? ", " : "", r);
            named++;
        }
    }
    if (missing > named) snprintf(buf + off, cap - off, " and %d more", missing - named);
}

/* Accepts a connection into a free pending slot, or closes it when there is none. */
static void root_accept(ct_rendezvous *rv, rv_conn *pending, int n_pending) {
    int fd = accept(rv->listen_fd, NULL, NULL);
    if (fd < 0) return;
    for (int i = 0; i < n_pending; i++)
        if (pending[i].fd < 0 && rv_set_nonblocking(fd)) {
            pending[i] = (rv_conn){.fd = fd, .rank = -1, .last_seen = rv_now()};
            return;
        }
    close(fd);
}

/* Waits for every other rank's hello until `deadline`. */
static ct_status root_gather(ct_rendezvous *rv, uint64_t check, double deadline,
                             double timeout_s) {
    int n_pending = rv->w.size + 15, arrived = 0;
    rv_conn *pending = calloc((size_t)n_pending, sizeof *pending);
    struct pollfd *p = calloc((size_t)n_pending + 1, sizeof *p);
    char why[RV_TEXT_MAX] = "", list[400];
    if (pending == NULL || p == NULL) {
        free(pending);
        free(p);
        return ct_error(CT_ENOMEM, "rendezvous: no memory for %d connections", n_pending);
    }
    for (int i = 0; i < n_pending; i++) pending[i].fd = -1;
    while (arrived < rv->w.size - 1 && rv_now() < deadline && why[0] == '\0') {
        p[0] = (struct pollfd){.fd = rv->listen_fd, .events = POLLIN};
        for (int i = 0; i < n_pending; i++) p[i + 1] = (struct pollfd){pending[i].fd, POLLIN, 0};
        if (poll(p, (nfds_t)n_pending + 1, rv_poll_ms(deadline, 1000)) <= 0) continue;
        for (int i = 0; i < n_pending && why[0] == '\0'; i++) {
            rv_frame f;
            char bad[RV_TEXT_MAX];
            if (pending[i].fd < 0 || p[i + 1].revents == 0) continue;
            int got = rv_read_frame(&pending[i], &f, bad, sizeof bad);
            if (got < 0) rv_conn_close(&pending[i]);
            if (got == 1 && root_take_hello(rv, &pending[i], &f, check, why, sizeof why) == 1)
                arrived++;
        }
        if (p[0].revents & POLLIN) root_accept(rv, pending, n_pending);
    }
    ct_status s = CT_OK;
    if (why[0] != '\0') {
        s = root_fail(rv, pending, n_pending, CT_EINVAL, why);
    } else if (arrived < rv->w.size - 1) {
        missing_ranks(rv, list, sizeof list);
        snprintf(why, sizeof why, "rank%s %s of %d never arrived within %g s (not started, "
                 "or they cannot reach this host at MASTER_ADDR:%d)", strchr(list, ',') ? "s" : "",
                 list, rv->w.size, timeout_s, rv->w.master_port);
        s = root_fail(rv, pending, n_pending, CT_EIO, why);
    }
    for (int i = 0; i < n_pending; i++) rv_conn_close(&pending[i]);
    free(pending);
    free(p);
    return s;
}

/* Rank 0: listen, gather the hellos, send every rank the blob. */
static ct_status open_root(ct_rendezvous *rv, uint64_t check, const void *blob, size_t blob_len,
                           double deadline, double timeout_s) {
    int backlog = rv->w.size < 128 ? 128 : rv->w.size;
    ct_status s = listen_any(rv->w.master_port, backlog, &rv->listen_fd);
    if (s == CT_OK) s = rv_set_nonblocking(rv->listen_fd) ? CT_OK : CT_EIO;
    if (s == CT_OK) s = root_gather(rv, check, deadline, timeout_s);
    if (rv->listen_fd >= 0) close(rv->listen_fd);
    rv->listen_fd = -1;
    if (s != CT_OK) return s;
    uint8_t payload[RV_MAX_PAYLOAD] = {0};
    snprintf((char *)payload, RV_HOST_LEN, "%s", rv->w.host);
    if (blob_len > 0) memcpy(payload + RV_HOST_LEN, blob, blob_len);
    for (int r = 1; r < rv->w.size; r++) {
        char why[160];
        if (!rv_send_frame(rv->conns[r].fd, RV_WELCOME, payload,
                           (uint32_t)(RV_HOST_LEN + blob_len), rv_now() + 5.0, why, sizeof why))
            return ct_error(CT_EIO, "rendezvous on port %d (rank 0): rank %d (host %s) arrived "
                            "but the id could not be sent to it: %s", rv->w.master_port, r,
                            rv->hosts[r], why);
    }
    return CT_OK;
}

/* One connection attempt to every address of rank 0, each bounded by `deadline`. */
static int try_connect(const ct_world *w, double deadline, char *last, size_t cap) {
    char port[16];
    snprintf(port, sizeof port, "%d", w->master_port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *ai = NULL;
    int g = getaddrinfo(w->master_addr, port, &hints, &ai);
    if (g != 0) {
        snprintf(last, cap, "cannot resolve '%.200s': %s", w->master_addr, gai_strerror(g));
        return -1;
    }
    int fd = -1;
    for (struct addrinfo *a = ai; a != NULL && fd < 0; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
        if (fd < 0 || !rv_set_nonblocking(fd)) {
            snprintf(last, cap, "socket: %s", strerror(errno));
            if (fd >= 0) close(fd);
            fd = -1;
            continue;
        }
        int err = connect(fd, a->ai_addr, a->ai_addrlen) == 0 ? 0 : errno;
        if (err == EINPROGRESS) {
            struct pollfd p = {.fd = fd, .events = POLLOUT};
            socklen_t len = sizeof err;
            err = poll(&p, 1, rv_poll_ms(deadline, 2000)) == 1 &&
                          getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0
                      ? err
                      : ETIMEDOUT;
        }
        if (err != 0) {
            snprintf(last, cap, "%s", strerror(err));
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(ai);
    return fd;
}

/* Connects to rank 0, retrying (it may start after this rank) until `deadline`. */
static ct_status peer_connect(ct_rendezvous *rv, double deadline, double timeout_s) {
    char last[400] = "no attempt", where[300];
    for (;;) {
        int fd = try_connect(&rv->w, deadline, last, sizeof last);
        if (fd >= 0) {
            rv->conns[0] = (rv_conn){.fd = fd, .rank = 0, .last_seen = rv_now()};
            return CT_OK;
        }
        if (rv_now() + 0.1 >= deadline) break;
        struct timespec pause = {0, 100 * 1000 * 1000};
        nanosleep(&pause, NULL);
    }
    bool refused = strstr(last, "refused") != NULL;
    return ct_error(CT_EIO, "rendezvous: rank %d (host %s): rank 0 at %s %s within %g s (%s)%s",
                    rv->w.rank, rv->w.host, master_text(&rv->w, where, sizeof where),
                    refused ? "refused every connection" : "never answered", timeout_s, last,
                    refused ? ": nobody listens on that port there; is rank 0 running, and is "
                              "MASTER_PORT the same on every rank?" : "");
}

/* Rank 0's answer to this rank's hello: the blob, or the reason it refused. */
static ct_status peer_answer(ct_rendezvous *rv, const rv_frame *f, void *blob, size_t blob_len,
                             const char *where) {
    const ct_world *w = &rv->w;
    if (f->type == RV_REFUSE)
        return ct_error(CT_EINVAL, "rendezvous: rank %d (host %s): rank 0 at %s refused it: %.*s",
                        w->rank, w->host, where, (int)f->len, (const char *)f->payload);
    if (f->type != RV_WELCOME || f->len != RV_HOST_LEN + blob_len)
        return ct_error(CT_EINVAL, "rendezvous: rank %d (host %s): rank 0 at %s answered a "
                        "message of type %d and %u bytes, expected the %zu-byte id (mixed cutune "
                        "versions?)", w->rank, w->host, where, f->type, (unsigned)f->len,
                        blob_len);
    memcpy(rv->hosts[0], f->payload, RV_HOST_LEN);
    rv->hosts[0][RV_HOST_LEN - 1] = '\0';
    if (blob_len > 0) memcpy(blob, f->payload + RV_HOST_LEN, blob_len);
    return CT_OK;
}

/* Rank k > 0: connect, say hello, wait for the blob. */
static ct_status open_peer(ct_rendezvous *rv, uint64_t check, void *blob, size_t blob_len,
                           double deadline, double timeout_s) {
    char where[300], why[RV_TEXT_MAX];
    master_text(&rv->w, where, sizeof where);
    ct_status s = peer_connect(rv, deadline, timeout_s);
    if (s != CT_OK) return s;
    uint8_t hello[RV_HELLO_LEN] = {0};
    rv_put_u32(hello, (uint32_t)rv->w.rank);
    rv_put_u32(hello + 4, (uint32_t)rv->w.size);
    rv_put_u64(hello + 8, check);
    snprintf((char *)hello + 16, RV_HOST_LEN, "%s", rv->w.host);
    if (!rv_send_frame(rv->conns[0].fd, RV_HELLO, hello, sizeof hello, deadline, why, sizeof why))
        return ct_error(CT_EIO, "rendezvous: rank %d (host %s): hello to rank 0 at %s: %s",
                        rv->w.rank, rv->w.host, where, why);
    while (rv_now() < deadline) {
        struct pollfd p = {.fd = rv->conns[0].fd, .events = POLLIN};
        if (poll(&p, 1, rv_poll_ms(deadline, 1000)) <= 0) continue;
        rv_frame f;
        int got = rv_read_frame(&rv->conns[0], &f, why, sizeof why);
        if (got == 1) return peer_answer(rv, &f, blob, blob_len, where);
        if (got == -1)
            return ct_error(CT_EIO, "rendezvous: rank %d (host %s): rank 0 at %s closed the "
                            "connection without sending the id (it failed or stopped: see its "
                            "log)", rv->w.rank, rv->w.host, where);
        if (got == -2)
            return ct_error(CT_EIO, "rendezvous: rank %d (host %s): %s answered %s: is "
                            "MASTER_PORT another service's port?", rv->w.rank, rv->w.host, where,
                            why);
    }
    return ct_error(CT_EIO, "rendezvous: rank %d (host %s): rank 0 at %s accepted the "
                    "connection but sent no id within %g s (other ranks may be missing: see rank "
                    "0's log)", rv->w.rank, rv->w.host, where, timeout_s);
}

/* The rendezvous itself, without the checks of its arguments. */
static ct_status rendezvous_run(ct_rendezvous *rv, uint64_t check, void *blob, size_t blob_len,
                                double timeout_s) {
    double deadline = rv_now() + timeout_s;
    if (rv->w.size == 1) return CT_OK;
    if (rv->w.rank == 0) return open_root(rv, check, blob, blob_len, deadline, timeout_s);
    return open_peer(rv, check, blob, blob_len, deadline, timeout_s);
}

ct_status ct_rendezvous_open(ct_rendezvous **out, const ct_world *w, uint64_t check, void *blob,
                             size_t blob_len, double timeout_s) {
    *out = NULL;
    if (blob_len > CT_RENDEZVOUS_MAX_BLOB || (blob == NULL && blob_len > 0) || w->size < 1 ||
        w->rank < 0 || w->rank >= w->size || !(timeout_s > 0))
        return ct_error(CT_EINVAL, "rendezvous: bad arguments (rank %d of %d, a %zu-byte id, "
                        "timeout %g s)", w->rank, w->size, blob_len, timeout_s);
    if (w->size > 1 && (w->master_port < 1 || w->master_port > 65535 || !w->master_addr[0]))
        return ct_error(CT_EINVAL, "rendezvous: rank %d of %d has no MASTER_ADDR or MASTER_PORT",
                        w->rank, w->size);
    ct_rendezvous *rv = calloc(1, sizeof *rv);
    if (rv == NULL) return ct_error(CT_ENOMEM, "rendezvous: no memory");
    rv->w = *w;
    rv->listen_fd = -1;
    rv->wake[0] = rv->wake[1] = -1;
    rv->conns = calloc((size_t)w->size, sizeof *rv->conns);
    rv->hosts = calloc((size_t)w->size, sizeof *rv->hosts);
    if (rv->conns == NULL || rv->hosts == NULL) {
        ct_rendezvous_close(rv, false);
        return ct_error(CT_ENOMEM, "rendezvous: no memory for %d ranks", w->size);
    }
    for (int r = 0; r < w->size; r++) rv->conns[r].fd = -1;
    snprintf(rv->hosts[w->rank], RV_HOST_LEN, "%s", w->host);
    ct_status s = rendezvous_run(rv, check, blob, blob_len, timeout_s);
    if (s != CT_OK) {
        ct_rendezvous_close(rv, false);
        return s;
    }
    *out = rv;
    return CT_OK;
}

const char *ct_rendezvous_host(const ct_rendezvous *rv, int rank) {
    if (rv == NULL || rank < 0 || rank >= rv->w.size || rv->hosts[rank][0] == '\0') return NULL;
    return rv->hosts[rank];
}

ct_status ct_rendezvous_timeout(double *seconds) {
    return ct_knob_rendezvous_timeout(seconds);
}
