/* Which rank this process is, as its launcher says: one process per GPU (or per CPU rank).
 *
 * Three launchers, one code path after start-up:
 *   MPI   mpirun / srun (Open MPI's OMPI_COMM_WORLD_*, PMIx's PMIX_RANK, MPICH's PMI_*, Slurm's
 *         SLURM_PROCID with SLURM_NTASKS > 1): rank and size come from MPI itself once it is
 *         initialised; the variables only say that MPI launched us;
 *   ENV   torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR,
 *         MASTER_PORT), which Kubernetes job templates and `cutune train --gpus N` set too;
 *   NONE  a plain process: rank 0 of 1. */
#ifndef CUTUNE_DIST_WORLD_H
#define CUTUNE_DIST_WORLD_H

#include <stdbool.h>

#include "cutune/status.h"

typedef enum { CT_LAUNCH_NONE = 0, CT_LAUNCH_MPI, CT_LAUNCH_ENV } ct_launch;

typedef struct ct_world {
    ct_launch launch;
    int rank, size;             /* 0 .. size-1 */
    int local_rank, local_size; /* on this host: the GPU this rank binds to is local_rank */
    char master_addr[256];      /* ENV: rank 0's address (name or IP) */
    int master_port;            /* ENV: the rendezvous port */
    char host[256];             /* this host's name, for messages */
} ct_world;

/* Reads the launcher's environment into *w. CT_EINVAL naming the variable and its value when
 * one is malformed (RANK=abc, RANK >= WORLD_SIZE, MASTER_PORT out of 1..65535, ENV launch
 * without MASTER_ADDR or MASTER_PORT when WORLD_SIZE > 1). Under MPI, rank and size are filled
 * from the launcher's variables when present, and replaced by MPI's own after MPI_Init. */
ct_status ct_world_detect(ct_world *w);

/* "rank 1 of 4 (host gpu-b, local rank 1)", for messages. */
const char *ct_world_describe(const ct_world *w, char *buf, unsigned len);

/* The launcher's name in messages: "mpirun/srun", "torchrun environment", "none". */
const char *ct_launch_name(ct_launch l);

#endif
