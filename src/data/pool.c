/* A parallel for-loop over [0, n) on short-lived pthreads, for the one-off passes over a dataset
 * (filling the cache, checking every file). Items are handed out one at a time from an atomic
 * counter, so uneven decode times balance out. */
#include <pthread.h>
#include <stdlib.h>

#include "internal.h"

typedef struct pool_job {
    ct_data_task fn;
    void *ctx;
    size_t n;
    atomic_size_t next;
} pool_job;

typedef struct pool_arg {
    pool_job *job;
    int thread;
} pool_arg;

static void *pool_main(void *arg) {
    pool_arg *a = arg;
    pool_job *job = a->job;
    for (;;) {
        size_t i = atomic_fetch_add(&job->next, 1);
        if (i >= job->n) break;
        job->fn(job->ctx, i, a->thread);
    }
    return NULL;
}

ct_status ct_data_parallel_for(size_t n, int threads, ct_data_task fn, void *ctx) {
    if (threads < 1) threads = 1;
    if ((size_t)threads > n) threads = n > 0 ? (int)n : 1;
    pool_job job = {.fn = fn, .ctx = ctx, .n = n};
    atomic_init(&job.next, 0);
    pthread_t *tid = malloc((size_t)threads * sizeof *tid);
    pool_arg *args = malloc((size_t)threads * sizeof *args);
    if (tid == NULL || args == NULL) {
        free(tid);
        free(args);
        return ct_error(CT_ENOMEM, "cannot allocate %d worker threads", threads);
    }
    int started = 0;
    for (int t = 1; t < threads; t++) {
        args[t] = (pool_arg){&job, t};
        if (pthread_create(&tid[t], NULL, pool_main, &args[t]) != 0) break;
        started = t;
    }
    /* The calling thread is worker 0; if some threads failed to start, it does their share. */
    args[0] = (pool_arg){&job, 0};
    pool_main(&args[0]);
    for (int t = 1; t <= started; t++) pthread_join(tid[t], NULL);
    free(tid);
    free(args);
    return CT_OK;
}
