/* Pieces of `cutune bench` shared by its two files: cmd_bench.c (flags, the synthetic-data
 * benchmark and the freeze x batch sweep) and bench_data.c (timing from a dataset through the
 * loader, augmenting on the CPU or with the backend's augment op). */
#ifndef CUTUNE_CLI_BENCH_H
#define CUTUNE_CLI_BENCH_H

#include <stdbool.h>
#include <stddef.h>

#include "core/backend.h"
#include "cutune/status.h"
#include "dist/buckets.h"
#include "dist/comm.h"
#include "model/model.h"

typedef struct bench_opts {
    const char *device, *head, *freeze_to;
    const char *backbone;     /* NULL: vgg16 */
    const char *precision;    /* NULL: the backend's default (tf32 on cuda, fp32 on cpu) */
    const char *sweep_freeze; /* comma-separated depths for --sweep */
    const char *sweep_batch;  /* comma-separated batch sizes for --sweep */
    const char *data;         /* --data DIR: time from a dataset */
    const char *augment_on;   /* --augment-on loader|device (NULL: device on cuda) */
    const char *augment;      /* --augment keras|none */
    const char *input;        /* --input device|host: where generated batches come from */
    long size, batch, steps, warmup, seed, threads, workers;
    bool sweep, no_cache, profile;
} bench_opts;

/* Seconds on the monotonic clock. */
double bench_now(void);

/* The median of `n` values (sorts them). */
double bench_median(double *v, size_t n);

/* The backend --device asks for (CUDA: on `device`), with --precision applied (the CUDA backend reads
 * CUTUNE_PRECISION at init) and --threads for the CPU backend. *precision gets the precision the
 * backend computes in ("fp32", "tf32"). Prints the backend's fallback note, if any, to stderr. */
ct_status bench_backend(const char *cmd, const bench_opts *o, ct_backend *be,
                        const char **precision, int device);

/* Device memory in use now (bytes) on the CUDA backend's device; 0 on the CPU backend. */
size_t bench_device_memory(const ct_backend *be);

/* ---- bench_dist.c: the ranks of a launcher ---- */

typedef struct bench_dist {
    ct_world w;
    ct_comm *comm;       /* NULL without a launcher */
    ct_grad_sync sync;
} bench_dist;

/* The launcher's world (MPI initialised under mpirun/srun, for the local rank). */
ct_status bench_dist_start(bench_dist *d);
/* Ranks but 0 print nothing but errors. */
bool bench_dist_quiet(const bench_dist *d);
/* The communicator, on the rank's backend; nothing without a launcher. */
ct_status bench_dist_connect(bench_dist *d, ct_backend *be);
/* The model's gradient buckets, summed as backward writes them. */
ct_status bench_dist_plan(bench_dist *d, ct_model *m);
void bench_dist_step_begin(bench_dist *d, long step);
/* Queues the last buckets and the wait for their sums (before the update). */
ct_status bench_dist_step_end(bench_dist *d);
/* Rank 0 prints every rank's median step and the global img/s. */
ct_status bench_dist_report(bench_dist *d, double median_s, int batch);
void bench_dist_close(bench_dist *d, bool clean);

/* `cutune bench --data DIR`. Returns the exit code. */
int bench_data(const char *cmd, const bench_opts *o);

#endif
