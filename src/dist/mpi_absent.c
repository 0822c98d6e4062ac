/* The MPI entry points of a build without MPI: each says how to get it. */
#include "dist/comm.h"

static ct_status no_mpi(void) {
    return ct_error(CT_EUNSUPPORTED, "this cutune was built without MPI, so it cannot run under "
                    "mpirun or srun: install libopenmpi-dev and rebuild, or launch GPU ranks with "
                    "`cutune train --gpus N` or torchrun's environment");
}

ct_status ct_mpi_start(ct_world *w) {
    (void)w;
    return no_mpi();
}

ct_status ct_mpi_broadcast_bytes(void *buf, size_t bytes) {
    (void)buf;
    (void)bytes;
    return no_mpi();
}

ct_status ct_comm_mpi_open(ct_comm *c, ct_backend *be) {
    (void)c;
    (void)be;
    return no_mpi();
}
