/* Sums and broadcasts between the ranks of a data-parallel run.
 *
 * A communicator is a table of functions plus a private context, as a backend is: "mpi" sums
 * host memory with MPI_Allreduce (the CPU backend, whose memory is host memory), "nccl" sums
 * device memory with NCCL on a stream of its own (the CUDA backend). Which one a run gets
 * follows from its backend; the launcher (world.h) says how the ranks find each other: MPI
 * itself, or the TCP rendezvous (rendezvous.h) that hands rank 0's NCCL id to the others.
 *
 * Every collective goes through the ct_comm_* wrappers below, which time it: a collective that
 * waits longer than CUTUNE_COLLECTIVE_TIMEOUT seconds (default 600) for the other ranks stops
 * this rank with a message naming what it waited for, never a silent hang. */
#ifndef CUTUNE_DIST_COMM_H
#define CUTUNE_DIST_COMM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/backend.h"
#include "dist/world.h"

typedef struct ct_comm_ops {
    const char *name; /* "mpi", "nccl" */
    /* Sums `count` floats of backend memory over the ranks, in place. Queued behind the
     * backend's work so far (NCCL: on the communication stream, after an event of the compute
     * stream); MPI returns when it is done. */
    ct_status (*allreduce)(void *ctx, float *buf, size_t count);
    /* The backend's next ops wait for every all-reduce queued so far. */
    ct_status (*wait)(void *ctx);
    /* Sums `count` doubles of host memory over the ranks, in place; returns when done. */
    ct_status (*sum_host)(void *ctx, double *buf, int count);
    /* Rank 0's `bytes` at `buf` to every rank: backend memory when `device`, else host. */
    ct_status (*broadcast)(void *ctx, void *buf, size_t bytes, bool device);
    /* Ends every collective in flight (after a lost rank); the communicator is unusable after. */
    void (*abort)(void *ctx);
    void (*free)(void *ctx);
} ct_comm_ops;

typedef struct ct_comm {
    const ct_comm_ops *ops;
    void *ctx;
    ct_world world;               /* rank, size, local rank, launcher */
    struct ct_rendezvous *rv;     /* ENV launches: the liveness channel; NULL otherwise */
    double timeout_s;             /* CUTUNE_COLLECTIVE_TIMEOUT */
} ct_comm;

/* Whether a process launched as `w` sums with the other ranks: not without a launcher, nor as
 * the single CPU rank of a torchrun-style launch (torchrun --nproc-per-node 1 on a machine
 * without a GPU trains as a plain run). */
bool ct_comm_wanted(const ct_world *w, const ct_backend *be);
/* The communicator of a run on backend `be`, for the ranks `w` describes (w->launch must not
 * be CT_LAUNCH_NONE). Under MPI, w's rank, size and local rank become MPI's. `check` is a
 * value of the run's settings that every rank must share (the rendezvous compares it).
 * CT_EUNSUPPORTED with the way on when the build or the backend cannot do it (an MPI launch
 * without MPI, CPU ranks without MPI, GPU ranks without NCCL). */
ct_status ct_comm_open(ct_comm **out, ct_world *w, ct_backend *be, uint64_t check);
/* `clean`: the run ended normally (the rendezvous says goodbye). NULL is a no-op. */
void ct_comm_close(ct_comm *c, bool clean);

/* The collectives, timed against the communicator's timeout. `what` names the collective in
 * messages ("the gradients of step 12"). */
ct_status ct_comm_allreduce(ct_comm *c, float *buf, size_t count, const char *what);
ct_status ct_comm_wait(ct_comm *c, const char *what);
ct_status ct_comm_sum(ct_comm *c, double *buf, int count, const char *what);
ct_status ct_comm_broadcast(ct_comm *c, void *buf, size_t bytes, bool device, const char *what);
/* Whether every rank holds the same `value` (a hash of its settings): CT_EINVAL on every rank
 * when one differs, naming this rank when it is one of them. */
ct_status ct_comm_same(ct_comm *c, uint64_t value, const char *what);

/* Initialises MPI once per process (threads: funneled) when it was launched by mpirun or srun,
 * and fills w's rank, size and local rank from MPI_COMM_WORLD (local: MPI_Comm_split_type
 * shared). CT_EUNSUPPORTED when cutune was built without MPI. Finalised at exit. */
ct_status ct_mpi_start(ct_world *w);
/* The communicators of each kind (comm_mpi.c, cuda/comm_nccl.cu), and their stand-ins in builds
 * without them (mpi_absent.c, nccl_absent.c) that say so. `id` is NCCL's unique id: written on
 * rank 0 by ct_nccl_unique_id, read by every rank. */
ct_status ct_comm_mpi_open(ct_comm *c, ct_backend *be);
#define CT_NCCL_ID_BYTES 128
ct_status ct_nccl_unique_id(uint8_t id[CT_NCCL_ID_BYTES]);
ct_status ct_comm_nccl_open(ct_comm *c, ct_backend *be, const uint8_t id[CT_NCCL_ID_BYTES]);
/* MPI's broadcast of host bytes from rank 0, for handing out the NCCL id under mpirun. */
ct_status ct_mpi_broadcast_bytes(void *buf, size_t bytes);

#endif
