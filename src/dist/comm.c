/* Opening a run's communicator, and the timed collectives every caller goes through.
 *
 * Opening: the launcher decides how the ranks meet (MPI, or the TCP rendezvous for
 * torchrun-style launches), the backend decides what sums (MPI for the CPU, NCCL for GPUs).
 * ct_comm_same then lets a run check that every rank was started with the same settings.
 *
 * A watchdog thread per communicator watches the collective in progress: one that waits longer
 * than the timeout for the other ranks ends the process with a message naming the collective,
 * after aborting the communicator (NCCL's are non-blocking, so they can be). A rank lost on the
 * rendezvous's liveness channel (torchrun-style launches) ends it the same way at once. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/knobs.h"
#include "dist/comm.h"
#include "dist/rendezvous.h"

/* The watchdog's view of the communicator (one per process is enough: a process runs one
 * communicator at a time). */
static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t tid;
    bool running, stop;
    ct_comm *comm;
    double busy_since; /* 0: no collective in progress */
    char what[160];
} dog = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Ends this rank, saying why. Files already saved stay as they are (every save is atomic). */
static void stop_rank(ct_comm *c, const char *why) {
    fprintf(stderr, "cutune: rank %d of %d (%s): %s; stopping this rank\n", c->world.rank,
            c->world.size, c->world.host, why);
    fflush(stderr);
    if (c->ops != NULL && c->ops->abort != NULL) c->ops->abort(c->ctx);
    _exit(1);
}

static void *watchdog_main(void *arg) {
    (void)arg;
    pthread_mutex_lock(&dog.mu);
    while (!dog.stop) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += 1;
        pthread_cond_timedwait(&dog.cv, &dog.mu, &until);
        if (dog.stop || dog.busy_since == 0.0) continue;
        const double waited = now_s() - dog.busy_since;
        if (waited < dog.comm->timeout_s) continue;
        char why[400];
        snprintf(why, sizeof why, "%s waited %.0f s for the other ranks (CUTUNE_COLLECTIVE_TIMEOUT"
                 "=%g): a rank has stopped or hangs", dog.what, waited, dog.comm->timeout_s);
        stop_rank(dog.comm, why);
    }
    pthread_mutex_unlock(&dog.mu);
    return NULL;
}

static void busy(const char *what) {
    pthread_mutex_lock(&dog.mu);
    dog.busy_since = now_s();
    snprintf(dog.what, sizeof dog.what, "%s", what);
    pthread_mutex_unlock(&dog.mu);
}

static ct_status idle(ct_comm *c, ct_status s, const char *what) {
    pthread_mutex_lock(&dog.mu);
    dog.busy_since = 0.0;
    pthread_mutex_unlock(&dog.mu);
    if (s == CT_OK) return CT_OK;
    return ct_error(s, "rank %d of %d: %s: %s", c->world.rank, c->world.size, what,
                    ct_last_error());
}

ct_status ct_comm_allreduce(ct_comm *c, float *buf, size_t count, const char *what) {
    busy(what);
    return idle(c, c->ops->allreduce(c->ctx, buf, count), what);
}

ct_status ct_comm_wait(ct_comm *c, const char *what) {
    busy(what);
    return idle(c, c->ops->wait(c->ctx), what);
}

ct_status ct_comm_sum(ct_comm *c, double *buf, int count, const char *what) {
    busy(what);
    return idle(c, c->ops->sum_host(c->ctx, buf, count), what);
}

ct_status ct_comm_broadcast(ct_comm *c, void *buf, size_t bytes, bool device, const char *what) {
    busy(what);
    return idle(c, c->ops->broadcast(c->ctx, buf, bytes, device), what);
}

static void on_lost(void *user, int rank, const char *reason) {
    char why[512];
    snprintf(why, sizeof why, "lost rank %d: %s", rank, reason);
    stop_rank(user, why);
}

/* GPU ranks: rank 0's NCCL id to everyone (MPI, or the rendezvous), then NCCL. */
static ct_status open_nccl(ct_comm *c, ct_backend *be, uint64_t check) {
    uint8_t id[CT_NCCL_ID_BYTES] = {0};
    ct_status s = c->world.rank == 0 ? ct_nccl_unique_id(id) : CT_OK;
    if (s != CT_OK) return s;
    if (c->world.launch == CT_LAUNCH_MPI) {
        s = ct_mpi_broadcast_bytes(id, sizeof id);
    } else {
        double timeout = 0.0;
        if ((s = ct_knob_rendezvous_timeout(&timeout)) != CT_OK) return s;
        s = ct_rendezvous_open(&c->rv, &c->world, check, id, sizeof id, timeout);
        /* A dead process closes its connection at once; a silent host (a network cut) is
         * taken for lost after a minute without its heartbeat. */
        if (s == CT_OK) s = ct_rendezvous_watch(c->rv, 60.0, on_lost, c);
    }
    return s == CT_OK ? ct_comm_nccl_open(c, be, id) : s;
}

ct_status ct_comm_same(ct_comm *c, uint64_t value, const char *what) {
    uint64_t theirs = value;
    ct_status s = ct_comm_broadcast(c, &theirs, sizeof theirs, false, what);
    double differs[1] = {theirs != value};
    if (s == CT_OK) s = ct_comm_sum(c, differs, 1, what);
    if (s != CT_OK) return s;
    if (theirs != value)
        return ct_error(CT_EINVAL, "rank %d (%s): %s differ from rank 0's: every rank must run "
                        "the same command", c->world.rank, c->world.host, what);
    if (differs[0] > 0.0)
        return ct_error(CT_EINVAL, "%s of %.0f rank(s) differ from rank 0's: every rank must run "
                        "the same command", what, differs[0]);
    return CT_OK;
}

static ct_status start_watchdog(ct_comm *c) {
    pthread_mutex_lock(&dog.mu);
    dog.comm = c;
    dog.stop = false;
    dog.busy_since = 0.0;
    int rc = dog.running ? 0 : pthread_create(&dog.tid, NULL, watchdog_main, NULL);
    if (rc == 0) dog.running = true;
    pthread_mutex_unlock(&dog.mu);
    return rc == 0 ? CT_OK : ct_error(CT_ENOMEM, "cannot start the collectives' watchdog");
}

static void stop_watchdog(void) {
    pthread_mutex_lock(&dog.mu);
    const bool running = dog.running;
    dog.stop = true;
    pthread_cond_broadcast(&dog.cv);
    pthread_mutex_unlock(&dog.mu);
    if (running) pthread_join(dog.tid, NULL);
    dog.running = false;
    dog.comm = NULL;
}

static ct_status open_kind(ct_comm *c, ct_world *w, ct_backend *be, uint64_t check) {
    ct_status s = w->launch == CT_LAUNCH_MPI ? ct_mpi_start(w) : CT_OK;
    if (s != CT_OK) return s;
    c->world = *w;
    if (strcmp(be->ops->name, "cpu") != 0) return open_nccl(c, be, check);
    if (w->launch != CT_LAUNCH_MPI)
        return ct_error(CT_EUNSUPPORTED, "%s: the CPU backend's ranks sum their gradients "
                        "through MPI, so launch them with mpirun or srun (torchrun's environment "
                        "and --gpus start GPU ranks)", ct_launch_name(w->launch));
    return ct_comm_mpi_open(c, be);
}

bool ct_comm_wanted(const ct_world *w, const ct_backend *be) {
    if (w->launch == CT_LAUNCH_NONE) return false;
    return !(w->launch == CT_LAUNCH_ENV && w->size == 1 && strcmp(be->ops->name, "cpu") == 0);
}

ct_status ct_comm_open(ct_comm **out, ct_world *w, ct_backend *be, uint64_t check) {
    *out = NULL;
    ct_comm *c = calloc(1, sizeof *c);
    if (c == NULL) return ct_error(CT_ENOMEM, "cannot allocate the communicator");
    ct_status s = ct_knob_collective_timeout(&c->timeout_s);
    if (s == CT_OK) s = open_kind(c, w, be, check);
    if (s == CT_OK) s = start_watchdog(c);
    if (s != CT_OK) {
        char msg[2048];
        snprintf(msg, sizeof msg, "%s", ct_last_error());
        ct_comm_close(c, false);
        return ct_error(s, "%s", msg);
    }
    *out = c;
    return CT_OK;
}

void ct_comm_close(ct_comm *c, bool clean) {
    if (c == NULL) return;
    stop_watchdog();
    if (c->ops != NULL) c->ops->free(c->ctx);
    ct_rendezvous_close(c->rv, clean);
    free(c);
}
