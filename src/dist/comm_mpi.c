/* The MPI communicator: the CPU backend's ranks, launched by mpirun or srun.
 *
 * The CPU backend's memory is host memory, so the gradient buckets go to MPI_Allreduce as they
 * are, in place. MPI is initialised once per process (a k-fold run trains several times in one
 * process) and finalised at exit; each run duplicates MPI_COMM_WORLD so that its collectives
 * never meet another's. MPI's own defaults decide what a failed call does: Open MPI aborts the
 * job with a message naming the rank, and mpirun stops every rank. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mpi.h>

#include "dist/comm.h"

static bool mpi_started;

static void mpi_finish(void) {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized) MPI_Finalize();
}

static ct_status mpi_error(int rc, const char *call) {
    char text[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(rc, text, &len) != MPI_SUCCESS) snprintf(text, sizeof text, "code %d", rc);
    return ct_error(CT_EIO, "%s failed: %s", call, text);
}

ct_status ct_mpi_start(ct_world *w) {
    if (!mpi_started) {
        int provided = 0, rc = MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided);
        if (rc != MPI_SUCCESS) return mpi_error(rc, "MPI_Init_thread");
        atexit(mpi_finish);
        mpi_started = true;
    }
    MPI_Comm_rank(MPI_COMM_WORLD, &w->rank);
    MPI_Comm_size(MPI_COMM_WORLD, &w->size);
    MPI_Comm local;
    if (MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, w->rank, MPI_INFO_NULL,
                            &local) == MPI_SUCCESS) {
        MPI_Comm_rank(local, &w->local_rank);
        MPI_Comm_size(local, &w->local_size);
        MPI_Comm_free(&local);
    }
    w->launch = CT_LAUNCH_MPI;
    return CT_OK;
}

ct_status ct_mpi_broadcast_bytes(void *buf, size_t bytes) {
    if (bytes > INT_MAX) return ct_error(CT_EINVAL, "MPI broadcast of %zu bytes", bytes);
    int rc = MPI_Bcast(buf, (int)bytes, MPI_BYTE, 0, MPI_COMM_WORLD);
    return rc == MPI_SUCCESS ? CT_OK : mpi_error(rc, "MPI_Bcast");
}

typedef struct mpi_ctx {
    MPI_Comm comm;
} mpi_ctx;

/* MPI counts are ints: larger buffers go in pieces. */
#define MPI_PIECE ((size_t)1 << 30)

static ct_status mpi_allreduce(void *ctx, float *buf, size_t count) {
    mpi_ctx *m = ctx;
    for (size_t at = 0; at < count; at += MPI_PIECE) {
        const size_t n = count - at < MPI_PIECE ? count - at : MPI_PIECE;
        int rc = MPI_Allreduce(MPI_IN_PLACE, buf + at, (int)n, MPI_FLOAT, MPI_SUM, m->comm);
        if (rc != MPI_SUCCESS) return mpi_error(rc, "MPI_Allreduce");
    }
    return CT_OK;
}

static ct_status mpi_wait(void *ctx) {
    (void)ctx; /* every all-reduce returned when done */
    return CT_OK;
}

static ct_status mpi_sum_host(void *ctx, double *buf, int count) {
    mpi_ctx *m = ctx;
    int rc = MPI_Allreduce(MPI_IN_PLACE, buf, count, MPI_DOUBLE, MPI_SUM, m->comm);
    return rc == MPI_SUCCESS ? CT_OK : mpi_error(rc, "MPI_Allreduce");
}

static ct_status mpi_broadcast(void *ctx, void *buf, size_t bytes, bool device) {
    (void)device; /* the CPU backend's memory is host memory */
    mpi_ctx *m = ctx;
    for (size_t at = 0; at < bytes; at += MPI_PIECE) {
        const size_t n = bytes - at < MPI_PIECE ? bytes - at : MPI_PIECE;
        int rc = MPI_Bcast((char *)buf + at, (int)n, MPI_BYTE, 0, m->comm);
        if (rc != MPI_SUCCESS) return mpi_error(rc, "MPI_Bcast");
    }
    return CT_OK;
}

/* The watchdog's thread calls this while the main thread may sit in a collective: MPI (funneled)
 * may not be called from it. The process exits next, and mpirun, seeing a rank end with an
 * error, stops the others. */
static void mpi_abort(void *ctx) { (void)ctx; }

static void mpi_free(void *ctx) {
    mpi_ctx *m = ctx;
    if (m == NULL) return;
    MPI_Comm_free(&m->comm);
    free(m);
}

static const ct_comm_ops mpi_ops = {
    .name = "mpi", .allreduce = mpi_allreduce, .wait = mpi_wait, .sum_host = mpi_sum_host,
    .broadcast = mpi_broadcast, .abort = mpi_abort, .free = mpi_free,
};

ct_status ct_comm_mpi_open(ct_comm *c, ct_backend *be) {
    if (strcmp(be->ops->name, "cpu") != 0)
        return ct_error(CT_EUNSUPPORTED, "the MPI communicator sums host memory: the %s backend's "
                        "ranks use NCCL", be->ops->name);
    if (!mpi_started)
        return ct_error(CT_EUNSUPPORTED, "the CPU backend's ranks talk through MPI: launch them "
                        "with mpirun or srun");
    mpi_ctx *m = calloc(1, sizeof *m);
    if (m == NULL) return ct_error(CT_ENOMEM, "cannot allocate the MPI communicator");
    int rc = MPI_Comm_dup(MPI_COMM_WORLD, &m->comm);
    if (rc != MPI_SUCCESS) {
        free(m);
        return mpi_error(rc, "MPI_Comm_dup");
    }
    c->ops = &mpi_ops;
    c->ctx = m;
    return CT_OK;
}
