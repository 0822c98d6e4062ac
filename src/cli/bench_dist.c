/* `cutune bench` under a launcher (mpirun, srun, torchrun's environment, --gpus): every rank
 * times the same synthetic step on its own device with its --batch-size (weak scaling, as
 * throughput benchmarks of data-parallel training measure it), the gradient buckets summed
 * across the ranks as training sums them (dist/buckets.h); rank 0 prints each rank's median
 * step time and the global img/s. Without a launcher nothing here runs. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

ct_status bench_dist_start(bench_dist *d) {
    memset(d, 0, sizeof *d);
    ct_status s = ct_world_detect(&d->w);
    if (s == CT_OK && d->w.launch == CT_LAUNCH_MPI) s = ct_mpi_start(&d->w);
    return s;
}

bool bench_dist_quiet(const bench_dist *d) { return d != NULL && d->w.rank != 0; }

ct_status bench_dist_connect(bench_dist *d, ct_backend *be) {
    return ct_comm_wanted(&d->w, be) ? ct_comm_open(&d->comm, &d->w, be, 0) : CT_OK;
}

ct_status bench_dist_plan(bench_dist *d, ct_model *m) {
    return d != NULL && d->comm != NULL ? ct_grad_sync_attach(&d->sync, m, d->comm) : CT_OK;
}

void bench_dist_step_begin(bench_dist *d, long step) {
    if (d != NULL && d->comm != NULL) ct_grad_sync_begin(&d->sync, step);
}

ct_status bench_dist_step_end(bench_dist *d) {
    return d != NULL && d->comm != NULL ? ct_grad_sync_finish(&d->sync) : CT_OK;
}

ct_status bench_dist_report(bench_dist *d, double median_s, int batch) {
    if (d == NULL || d->comm == NULL) return CT_OK;
    const int n = d->w.size;
    double *ms = calloc((size_t)n, sizeof *ms);
    if (ms == NULL) return ct_error(CT_ENOMEM, "cannot allocate %d step times", n);
    ms[d->w.rank] = median_s * 1e3; /* a sum of one value per rank gathers them */
    ct_status s = ct_comm_sum(d->comm, ms, n, "the ranks' step times");
    if (s == CT_OK && d->w.rank == 0) {
        double slowest = 0.0;
        printf("\n| rank | median step ms | img/s |\n|---|---|---|\n");
        for (int r = 0; r < n; r++) {
            printf("| %d | %.3f | %.1f |\n", r, ms[r], batch / (ms[r] * 1e-3));
            if (ms[r] > slowest) slowest = ms[r];
        }
        printf("\n%d ranks (%s, gradients summed by %s): global batch %d, %.1f img/s "
               "(the slowest rank's step, %.3f ms, paces them all)\n", n,
               ct_launch_name(d->w.launch), d->comm->ops->name, batch * n,
               batch * n / (slowest * 1e-3), slowest);
    }
    free(ms);
    return s;
}

void bench_dist_close(bench_dist *d, bool clean) {
    ct_grad_sync_free(&d->sync);
    ct_comm_close(d->comm, clean);
    d->comm = NULL;
}
