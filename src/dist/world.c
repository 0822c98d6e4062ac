/* Which rank this process is: reads the launcher's environment (world.h) into a ct_world.
 *
 * MPI's variables win over torchrun's, because an MPI launcher may run inside a job whose
 * environment also carries RANK (a Kubernetes template, a wrapper script), while the reverse
 * does not happen. Every value is checked whole: "RANK=1x" is an error naming RANK and its value,
 * never rank 1, so that a typo in a job file is reported before any rank waits for another. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L /* gethostname */
#endif
#include "dist/world.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The most ranks any launcher may claim: far above any real job, low enough that a bad value
 * (WORLD_SIZE=4000000000) is caught here instead of sizing arrays later. */
#define WORLD_MAX_RANKS (1 << 20)

/* Reads the whole number in variable `name` into *out when it is set (*set = true). CT_EINVAL
 * naming the variable and its value when it is not a whole number in [lo, hi]. */
static ct_status env_int(const char *name, long lo, long hi, int *out, bool *set) {
    const char *v = getenv(name);
    *set = v != NULL;
    if (v == NULL) return CT_OK;
    char *end = NULL;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (*v == '\0' || *end != '\0' || errno != 0 || x < lo || x > hi || v[0] == ' ' ||
        v[0] == '+')
        return ct_error(CT_EINVAL, "%s=%s: expected a whole number from %ld to %ld", name, v, lo,
                        hi);
    *out = (int)x;
    return CT_OK;
}

/* The first of `names` that is set, read like env_int; *set says whether any was. */
static ct_status env_int_any(const char *const *names, int n, long lo, long hi, int *out,
                             bool *set) {
    *set = false;
    for (int i = 0; i < n && !*set; i++) {
        ct_status s = env_int(names[i], lo, hi, out, set);
        if (s != CT_OK) return s;
    }
    return CT_OK;
}

/* Slurm's SLURM_TASKS_PER_NODE ("4(x2),3": two nodes of 4 tasks, one of 3): the tasks of node
 * `node`, or 0 when the text is malformed or lists fewer nodes. */
static int slurm_tasks_on_node(const char *text, int node) {
    const char *p = text;
    while (*p != '\0') {
        char *end = NULL;
        long tasks = strtol(p, &end, 10), repeat = 1;
        if (end == p || tasks < 1) return 0;
        p = end;
        if (strncmp(p, "(x", 2) == 0) {
            repeat = strtol(p + 2, &end, 10);
            if (end == p + 2 || *end != ')' || repeat < 1) return 0;
            p = end + 1;
        }
        if (node < repeat) return (int)tasks;
        node -= (int)repeat;
        if (*p == ',') p++;
        else if (*p != '\0') return 0;
    }
    return 0;
}

/* Slurm's rank variables, for an srun step of more than one task. Slurm's own batch shell
 * carries SLURM_PROCID=0 too; a step says SLURM_STEP_NUM_TASKS, so that is read first. */
static ct_status detect_slurm(ct_world *w, bool *found) {
    static const char *const size_names[] = {"SLURM_STEP_NUM_TASKS", "SLURM_NTASKS"};
    bool has_rank, has_size, set;
    int rank = 0, size = 1, node = 0;
    ct_status s = env_int("SLURM_PROCID", 0, WORLD_MAX_RANKS - 1, &rank, &has_rank);
    if (s == CT_OK) s = env_int_any(size_names, 2, 1, WORLD_MAX_RANKS, &size, &has_size);
    *found = s == CT_OK && has_rank && has_size && size > 1;
    if (!*found) return s;
    w->rank = rank;
    w->size = size;
    if ((s = env_int("SLURM_LOCALID", 0, WORLD_MAX_RANKS - 1, &w->local_rank, &set)) != CT_OK)
        return s;
    if ((s = env_int("SLURM_NTASKS_PER_NODE", 1, WORLD_MAX_RANKS, &w->local_size, &set)) !=
        CT_OK)
        return s;
    const char *per_node = getenv("SLURM_TASKS_PER_NODE");
    if (!set && per_node != NULL &&
        env_int("SLURM_NODEID", 0, WORLD_MAX_RANKS - 1, &node, &set) == CT_OK && set)
        w->local_size = slurm_tasks_on_node(per_node, node);
    if (w->local_size <= w->local_rank) w->local_size = 0; /* not known before MPI_Init */
    return CT_OK;
}

/* MPI launchers: Open MPI, PMIx, MPICH's PMI, Slurm. *found says whether one launched us; a
 * size (or local size) left at 0 is not known before MPI_Init (PMIx alone does not say it). */
static ct_status detect_mpi(ct_world *w, bool *found) {
    static const char *const rank_names[] = {"OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK"};
    static const char *const size_names[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE"};
    static const char *const lrank_names[] = {"OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID"};
    static const char *const lsize_names[] = {"OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS"};
    bool has_rank, has_size, set;
    w->size = 0;
    w->local_size = 0;
    ct_status s = env_int_any(rank_names, 3, 0, WORLD_MAX_RANKS - 1, &w->rank, &has_rank);
    if (s == CT_OK) s = env_int_any(size_names, 2, 1, WORLD_MAX_RANKS, &w->size, &has_size);
    if (s != CT_OK) return s;
    if (!has_rank && !has_size) {
        w->size = 1;
        w->local_size = 1;
        return detect_slurm(w, found);
    }
    *found = true;
    if ((s = env_int_any(lrank_names, 2, 0, WORLD_MAX_RANKS - 1, &w->local_rank, &set)) != CT_OK)
        return s;
    return env_int_any(lsize_names, 2, 1, WORLD_MAX_RANKS, &w->local_size, &set);
}

/* MASTER_ADDR and MASTER_PORT, which a world of more than one rank needs (torchrun's defaults
 * are not assumed: a rank that guessed 127.0.0.1 would wait on itself). */
static ct_status detect_master(ct_world *w) {
    const char *addr = getenv("MASTER_ADDR");
    bool has_port;
    ct_status s = env_int("MASTER_PORT", 1, 65535, &w->master_port, &has_port);
    if (s != CT_OK) return s;
    if (addr != NULL && (addr[0] == '\0' || strlen(addr) >= sizeof w->master_addr))
        return ct_error(CT_EINVAL, "MASTER_ADDR='%.300s': expected rank 0's host name or IP "
                        "address (1 to %zu characters)", addr, sizeof w->master_addr - 1);
    if (addr != NULL) snprintf(w->master_addr, sizeof w->master_addr, "%s", addr);
    if (w->size > 1 && (addr == NULL || !has_port))
        return ct_error(CT_EINVAL, "WORLD_SIZE=%d but %s is not set: every rank needs rank 0's "
                        "address (MASTER_ADDR) and rendezvous port (MASTER_PORT)", w->size,
                        addr == NULL ? "MASTER_ADDR" : "MASTER_PORT");
    /* torchrun's static rendezvous keeps its agent's own store on MASTER_PORT and says so:
     * cutune's rendezvous then listens on the next port, on every rank alike. */
    const char *agent = getenv("TORCHELASTIC_USE_AGENT_STORE");
    if (has_port && agent != NULL && strcmp(agent, "True") == 0)
        w->master_port = w->master_port < 65535 ? w->master_port + 1 : 1024;
    return CT_OK;
}

/* torchrun's variables: RANK and WORLD_SIZE both, LOCAL_* defaulting to one host. */
static ct_status detect_env(ct_world *w) {
    bool has_rank, has_size, set;
    ct_status s = env_int("RANK", 0, WORLD_MAX_RANKS - 1, &w->rank, &has_rank);
    if (s == CT_OK) s = env_int("WORLD_SIZE", 1, WORLD_MAX_RANKS, &w->size, &has_size);
    if (s != CT_OK) return s;
    if (has_rank != has_size)
        return ct_error(CT_EINVAL, "%s=%s is set but %s is not: a launched rank needs both",
                        has_rank ? "RANK" : "WORLD_SIZE", getenv(has_rank ? "RANK" : "WORLD_SIZE"),
                        has_rank ? "WORLD_SIZE" : "RANK");
    if (w->rank >= w->size)
        return ct_error(CT_EINVAL, "RANK=%d: not below WORLD_SIZE=%d", w->rank, w->size);
    w->local_rank = w->rank;
    w->local_size = w->size;
    if ((s = env_int("LOCAL_WORLD_SIZE", 1, w->size, &w->local_size, &set)) != CT_OK) return s;
    if ((s = env_int("LOCAL_RANK", 0, WORLD_MAX_RANKS - 1, &w->local_rank, &set)) != CT_OK)
        return s;
    if (w->local_rank >= w->local_size)
        return ct_error(CT_EINVAL, "LOCAL_RANK=%d: not below LOCAL_WORLD_SIZE=%d", w->local_rank,
                        w->local_size);
    return detect_master(w);
}

ct_status ct_world_detect(ct_world *w) {
    memset(w, 0, sizeof *w);
    w->size = 1;
    w->local_size = 1;
    if (gethostname(w->host, sizeof w->host - 1) != 0) snprintf(w->host, sizeof w->host, "?");
    w->host[sizeof w->host - 1] = '\0';
    bool mpi = false;
    ct_status s = detect_mpi(w, &mpi);
    if (s != CT_OK) return s;
    if (mpi) {
        w->launch = CT_LAUNCH_MPI;
        if (w->size > 0 && w->rank >= w->size)
            return ct_error(CT_EINVAL, "the MPI launcher says rank %d of %d: the rank is not "
                            "below the size", w->rank, w->size);
        return CT_OK;
    }
    w->rank = w->local_rank = 0;
    w->size = w->local_size = 1;
    if (getenv("RANK") == NULL && getenv("WORLD_SIZE") == NULL) return CT_OK;
    w->launch = CT_LAUNCH_ENV;
    return detect_env(w);
}

const char *ct_world_describe(const ct_world *w, char *buf, unsigned len) {
    if (w->size > 0)
        snprintf(buf, len, "rank %d of %d (host %s, local rank %d)", w->rank, w->size, w->host,
                 w->local_rank);
    else
        snprintf(buf, len, "rank %d (host %s, local rank %d)", w->rank, w->host, w->local_rank);
    return buf;
}

const char *ct_launch_name(ct_launch l) {
    switch (l) {
    case CT_LAUNCH_MPI: return "mpirun/srun";
    case CT_LAUNCH_ENV: return "torchrun environment";
    default: return "none";
    }
}
