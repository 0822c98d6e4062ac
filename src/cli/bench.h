/* Pieces of `cutune bench` shared by its two files: cmd_bench.c (flags, the synthetic-data
 * benchmark and the freeze x batch sweep) and bench_data.c (timing from a dataset through the
 * loader, augmenting on the CPU or with the backend's augment op). */
#ifndef CUTUNE_CLI_BENCH_H
#define CUTUNE_CLI_BENCH_H

#include <stdbool.h>
#include <stddef.h>

#include "core/backend.h"
#include "cutune/status.h"

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

/* The backend --device asks for, with --precision applied (the CUDA backend reads
 * CUTUNE_PRECISION at init) and --threads for the CPU backend. *precision gets the precision the
 * backend computes in ("fp32", "tf32"). Prints the backend's fallback note, if any, to stderr. */
ct_status bench_backend(const char *cmd, const bench_opts *o, ct_backend *be,
                        const char **precision);

/* Device memory in use now (bytes) on the CUDA backend's device; 0 on the CPU backend. */
size_t bench_device_memory(const ct_backend *be);

/* `cutune bench --data DIR`. Returns the exit code. */
int bench_data(const char *cmd, const bench_opts *o);

#endif
