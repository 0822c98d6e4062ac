/* The liveness channel (rendezvous.h): after the rendezvous its connections stay open, and a
 * watcher thread notices a rank that died or hangs, so that its peers stop with a message
 * naming it instead of waiting in a collective forever.
 *
 * A process killed by the kernel (kill -9, out of memory) still has its sockets closed by the
 * kernel, so its peer reads an end of stream without the goodbye a clean end sends; a host that
 * vanished or a process that hangs is caught by silence: every rank sends a heartbeat each
 * second, and `timeout_s` without any frame counts as lost. Rank 0 relays a loss to the others
 * before closing their connections, so every rank's message names the rank that was lost. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "dist/rendezvous_wire.h"

#define HEARTBEAT_S 1.0

/* Reports the loss of `rank` once and ends the watch; rank 0 first tells the others. */
static void watch_lost(ct_rendezvous *rv, int rank, const char *reason) {
    if (rv->w.rank == 0) {
        char text[RV_TEXT_MAX];
        snprintf(text, sizeof text, "%s", reason);
        for (int r = 1; r < rv->w.size; r++) {
            if (r == rank || rv->conns[r].fd < 0 || rv->conns[r].said_bye) continue;
            rv_send_text(rv->conns[r].fd, RV_LOST, rank, text, 0.5);
            shutdown(rv->conns[r].fd, SHUT_RDWR);
        }
    }
    rv->on_lost(rv->user, rank, reason);
}

/* The frames that have arrived from one peer. True when the watch must end (a loss was
 * reported, or rank 0 said goodbye). */
static bool watch_read(ct_rendezvous *rv, rv_conn *c) {
    char why[RV_TEXT_MAX], reason[RV_TEXT_MAX + 64];
    rv_frame f;
    int got;
    while ((got = rv_read_frame(c, &f, why, sizeof why)) == 1) {
        c->last_seen = rv_now();
        if (f.type == RV_BYE) c->said_bye = true;
        if (f.type == RV_LOST && rv->w.rank != 0 && f.len >= 4) {
            snprintf(reason, sizeof reason, "rank 0 lost it and stopped the run: %.*s",
                     (int)f.len - 4, (const char *)f.payload + 4);
            watch_lost(rv, (int)rv_get_u32(f.payload), reason);
            return true;
        }
    }
    if (got == 0) return false;
    bool bye = c->said_bye;
    rv_conn_close(c);
    if (bye) return rv->w.rank != 0;
    if (got == -1)
        snprintf(reason, sizeof reason, "its connection closed without a goodbye (the process "
                 "ended)");
    else
        snprintf(reason, sizeof reason, "%s", why);
    watch_lost(rv, c->rank, reason);
    return true;
}

/* Heartbeats out, silence in: true when a peer was lost. */
static bool watch_tick(ct_rendezvous *rv, double *next_ping) {
    double now = rv_now();
    for (int r = 0; r < rv->w.size; r++) {
        rv_conn *c = &rv->conns[r];
        if (c->fd < 0 || c->said_bye) continue;
        char why[160], reason[RV_TEXT_MAX];
        if (now >= *next_ping && !rv_send_frame(c->fd, RV_PING, NULL, 0, now, why, sizeof why) &&
            strstr(why, "takes nothing") == NULL) {
            snprintf(reason, sizeof reason, "its connection broke: %s", why);
            watch_lost(rv, r, reason);
            return true;
        }
        if (now - c->last_seen > rv->timeout_s) {
            snprintf(reason, sizeof reason, "it sent nothing for %g s (the process hangs, or the "
                     "network between the hosts is down)", rv->timeout_s);
            watch_lost(rv, r, reason);
            return true;
        }
    }
    if (now >= *next_ping) *next_ping = now + HEARTBEAT_S;
    return false;
}

static void *watch_main(void *arg) {
    ct_rendezvous *rv = arg;
    int n = rv->w.size;
    struct pollfd *p = calloc((size_t)n + 1, sizeof *p);
    double next_ping = rv_now();
    for (bool done = p == NULL; !done;) {
        p[0] = (struct pollfd){.fd = rv->wake[0], .events = POLLIN};
        for (int r = 0; r < n; r++) p[r + 1] = (struct pollfd){rv->conns[r].fd, POLLIN, 0};
        if (poll(p, (nfds_t)n + 1, 200) < 0) continue;
        if (p[0].revents != 0) break;
        for (int r = 0; r < n && !done; r++)
            if (p[r + 1].revents != 0 && rv->conns[r].fd >= 0)
                done = watch_read(rv, &rv->conns[r]);
        if (!done) done = watch_tick(rv, &next_ping);
    }
    free(p);
    return NULL;
}

ct_status ct_rendezvous_watch(ct_rendezvous *rv, double timeout_s,
                              void (*on_lost)(void *user, int rank, const char *reason),
                              void *user) {
    if (rv == NULL || on_lost == NULL || !(timeout_s > 0) || rv->watching)
        return ct_error(CT_EINVAL, "rendezvous watch: bad arguments (timeout %g s)", timeout_s);
    if (rv->w.size == 1) return CT_OK;
    if (pipe(rv->wake) != 0)
        return ct_error(CT_EIO, "rendezvous watch: cannot make a pipe to stop the watcher");
    fcntl(rv->wake[0], F_SETFD, FD_CLOEXEC);
    fcntl(rv->wake[1], F_SETFD, FD_CLOEXEC);
    rv->timeout_s = timeout_s;
    rv->on_lost = on_lost;
    rv->user = user;
    double now = rv_now();
    for (int r = 0; r < rv->w.size; r++) rv->conns[r].last_seen = now;
    if (pthread_create(&rv->thread, NULL, watch_main, rv) != 0)
        return ct_error(CT_EIO, "rendezvous watch: cannot start the watcher thread");
    rv->watching = true;
    return CT_OK;
}

void ct_rendezvous_close(ct_rendezvous *rv, bool clean) {
    if (rv == NULL) return;
    if (rv->watching) {
        char stop = 1;
        if (write(rv->wake[1], &stop, 1) == 1) pthread_join(rv->thread, NULL);
        rv->watching = false;
    }
    for (int i = 0; i < 2; i++)
        if (rv->wake[i] >= 0) close(rv->wake[i]);
    for (int r = 0; rv->conns != NULL && r < rv->w.size; r++) {
        char why[160];
        if (clean && rv->conns[r].fd >= 0)
            rv_send_frame(rv->conns[r].fd, RV_BYE, NULL, 0, rv_now() + 1.0, why, sizeof why);
        if (clean) rv_conn_close(&rv->conns[r]);
        else if (rv->conns[r].fd >= 0) close(rv->conns[r].fd);
    }
    if (rv->listen_fd >= 0) close(rv->listen_fd);
    free(rv->conns);
    free(rv->hosts);
    free(rv);
}
