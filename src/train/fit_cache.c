/* The frozen-prefix cache: when nothing random happens before the lowest trainable layer (no
 * augmentation; dropout only lives in the head), the output of the frozen layers is the same
 * every epoch. It is computed once per sample, kept in host memory, and each epoch trains only
 * the layers above it, from batches gathered out of the cache in the epoch's shuffled order.
 * Validation reuses its own cache the same way. The pass that fills the cache shows a progress
 * bar and stops between batches on Ctrl-C (nothing is trained yet; the checkpoint, when there is
 * one, is untouched). */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/rng.h"
#include "../core/shuffle.h"
#include "fit.h"

static void cache_free_data(fit_cache *fc) {
    free(fc->train);
    free(fc->val);
    free(fc->y_train);
    free(fc->y_val);
    free(fc->bx);
    free(fc->by);
    free(fc->baux);
    free(fc->bidx);
    free(fc->order);
    memset(fc, 0, sizeof *fc);
}

void fit_cache_free(fit_cache *fc) { cache_free_data(fc); }

/* Labels of sample i in the loader's layout: (k) one-hot, or (1) 0/1 for binary. */
static void label_row(const fit_run *r, const ct_dataset *ds, size_t i, float *y) {
    int cls = ct_dataset_label(ds, i);
    if (r->n_out == 1) {
        y[0] = (float)cls;
        return;
    }
    for (int j = 0; j < r->n_out; j++) y[j] = j == cls ? 1.0f : 0.0f;
}

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* The cache pass's progress: batches of the training and validation data, one bar. */
typedef struct fill_progress {
    ct_progbar bar;
    long done;
    bool shown;
} fill_progress;

static void progress_start(const fit_run *r, fill_progress *p) {
    const fit_cache *fc = &r->cache;
    const size_t bs = (size_t)r->c->batch_size;
    const long batches = (long)((fc->n_train + bs - 1) / bs + (fc->n_val + bs - 1) / bs);
    p->done = 0;
    p->shown = r->c->verbose > 0;
    if (!p->shown) return;
    printf("frozen-prefix cache: computing the frozen layers (up to %s) once for %zu training "
           "and %zu validation samples\n", ct_model_layer(r->m, fc->layer)->name, fc->n_train,
           fc->n_val);
    fflush(stdout);
    ct_progbar_init(&p->bar, batches, stdout, isatty(fileno(stdout)) && r->c->verbose == 1,
                    now_seconds());
}

/* Runs the frozen prefix over every sample of `ds` (through a plain, unshuffled loader). */
static ct_status fill(fit_run *r, ct_dataset *ds, float *feat, float *y, fill_progress *p) {
    ct_loader *l = NULL;
    ct_loader_config lc = r->loader_cfg;
    lc.shuffle = false;
    ct_status s = ct_loader_init(&l, ds, &lc);
    if (s == CT_OK) s = ct_loader_begin_epoch(l, 0);
    const size_t dim = r->cache.dim;
    float *tmp = malloc((size_t)r->c->batch_size * dim * sizeof *tmp);
    if (tmp == NULL && s == CT_OK) s = ct_error(CT_ENOMEM, "cannot allocate the feature batch");
    while (s == CT_OK) {
        const ct_batch *b = NULL;
        if ((s = ct_loader_next(l, &b)) != CT_OK || b == NULL) break;
        s = ct_model_features(r->m, r->cache.layer, b->x, b->aux, b->n, tmp);
        for (int i = 0; s == CT_OK && i < b->n; i++) {
            memcpy(feat + (size_t)b->index[i] * dim, tmp + (size_t)i * dim, dim * sizeof(float));
            label_row(r, ds, b->index[i], y + (size_t)b->index[i] * r->n_out);
        }
        ct_loader_release(l, b);
        if (p->shown) ct_progbar_update(&p->bar, ++p->done, NULL, NULL, 0, now_seconds());
        if (s == CT_OK && fit_stop_requested())
            s = ct_error(CT_EINTR, "interrupted while computing the frozen-prefix cache, before "
                         "this call trained a step: %s", r->resuming
                         ? "the checkpoint is unchanged; the same command continues the run"
                         : "the same command starts the run again");
    }
    free(tmp);
    ct_loader_free(l);
    return s;
}

ct_status fit_cache_prepare(fit_run *r) {
    fit_cache *fc = &r->cache;
    const int ft = ct_model_first_trainable(r->m);
    if (fc->active && fc->layer == ft - 1) return CT_OK;
    cache_free_data(fc);
    if (r->c->no_feature_cache || ct_augment_enabled(&r->c->augment) || ft <= 0 ||
        ft >= ct_model_num_layers(r->m))
        return CT_OK;
    /* Skipping bad files changes which samples exist per epoch; keep the plain path then. */
    if (r->c->skip_bad) return CT_OK;
    const ct_layer *l = ct_model_layer(r->m, ft - 1);
    fc->layer = ft - 1;
    fc->dim = (size_t)l->out_h * l->out_w * l->out_c;
    fc->n_train = ct_dataset_count(r->train);
    fc->n_val = r->val != NULL ? ct_dataset_count(r->val) : 0;
    size_t bytes = (fc->n_train + fc->n_val) * fc->dim * sizeof(float);
    if (bytes > r->c->cache_bytes) {
        if (r->c->verbose > 0)
            printf("frozen-prefix cache: %zu MiB would exceed the %zu MiB budget; recomputing "
                   "the frozen layers every step\n", bytes >> 20, r->c->cache_bytes >> 20);
        memset(fc, 0, sizeof *fc);
        return CT_OK;
    }
    const int aux = ct_dataset_aux_dim(r->train), bs = r->c->batch_size;
    fc->train = malloc(fc->n_train * fc->dim * sizeof(float));
    fc->y_train = malloc(fc->n_train * (size_t)r->n_out * sizeof(float));
    fc->val = fc->n_val ? malloc(fc->n_val * fc->dim * sizeof(float)) : NULL;
    fc->y_val = fc->n_val ? malloc(fc->n_val * (size_t)r->n_out * sizeof(float)) : NULL;
    fc->bx = malloc((size_t)bs * fc->dim * sizeof(float));
    fc->by = malloc((size_t)bs * r->n_out * sizeof(float));
    fc->baux = malloc((size_t)bs * (aux > 0 ? aux : 1) * sizeof(float));
    fc->bidx = malloc((size_t)bs * sizeof(uint32_t));
    fc->order = malloc(fc->n_train * sizeof(uint32_t));
    if (fc->train == NULL || fc->y_train == NULL || (fc->n_val && (!fc->val || !fc->y_val)) ||
        !fc->bx || !fc->by || !fc->baux || !fc->bidx || !fc->order) {
        cache_free_data(fc);
        return ct_error(CT_ENOMEM, "cannot allocate the frozen-prefix cache (%zu MiB)",
                        bytes >> 20);
    }
    uint64_t key = 0;
    char where[4200];
    if (fit_cache_load(r, &key, where, sizeof where)) {
        fc->active = true;
        if (r->c->verbose > 0)
            printf("frozen-prefix cache: the frozen layers' output (up to %s) read from %s\n",
                   l->name, where);
        return CT_OK;
    }
    fill_progress progress;
    progress_start(r, &progress);
    ct_status s = fill(r, r->train, fc->train, fc->y_train, &progress);
    if (s == CT_OK && fc->n_val) s = fill(r, r->val, fc->val, fc->y_val, &progress);
    if (s != CT_OK) {
        cache_free_data(fc);
        return s;
    }
    fc->active = true;
    if (r->rank == 0) fit_cache_store(r, key); /* one writer per run */
    if (r->c->verbose > 0)
        printf("frozen-prefix cache: the output of %s (%zu values per sample, %zu MiB) is "
               "computed once; each epoch trains the layers above it\n", l->name, fc->dim,
               bytes >> 20);
    return CT_OK;
}

void fit_cache_begin_epoch(fit_run *r, uint32_t epoch, uint32_t first_batch, bool training) {
    fit_cache *fc = &r->cache;
    fc->training = training;
    size_t n = training ? fc->n_train : fc->n_val;
    if (training) {
        /* The training loader's own permutation (ct_loader_begin_epoch_at), so the cache changes
         * no batch: a run trains the same with --no-feature-cache, and a resumed run sees the
         * same batches as one never interrupted. */
        ct_shuffle_order(fc->order, n, r->c->seed, (uint32_t)CT_RNG_SHUFFLE << 16, epoch);
    }
    fc->pos = (size_t)first_batch * r->c->batch_size;
    fc->epoch = epoch;
    fc->number = first_batch;
}

const ct_batch *fit_cache_next(fit_run *r) {
    fit_cache *fc = &r->cache;
    const ct_dataset *ds = fc->training ? r->train : r->val;
    const float *feat = fc->training ? fc->train : fc->val;
    const float *y = fc->training ? fc->y_train : fc->y_val;
    size_t n = fc->training ? fc->n_train : fc->n_val;
    if (fc->pos >= n) return NULL;
    const int aux = ct_dataset_aux_dim(ds);
    /* A data-parallel rank takes its slice of the global batch (data.h: ct_shard_rows). */
    const size_t B = (size_t)r->c->batch_size, g = n - fc->pos < B ? n - fc->pos : B;
    size_t first = 0;
    const int take = (int)ct_shard_rows(g, r->rank, r->world, &first);
    const size_t start = fc->pos + first;
    fc->pos += g;
    for (int rows = 0; rows < take; rows++) {
        const size_t pos = start + (size_t)rows;
        uint32_t i = fc->training ? fc->order[pos] : (uint32_t)pos;
        memcpy(fc->bx + (size_t)rows * fc->dim, feat + (size_t)i * fc->dim,
               fc->dim * sizeof(float));
        memcpy(fc->by + (size_t)rows * r->n_out, y + (size_t)i * r->n_out,
               (size_t)r->n_out * sizeof(float));
        if (aux > 0) memcpy(fc->baux + (size_t)rows * aux, ct_dataset_aux(ds, i),
                            (size_t)aux * sizeof(float));
        fc->bidx[rows] = i;
    }
    fc->batch.x = fc->bx;
    fc->batch.y = fc->by;
    fc->batch.aux = aux > 0 ? fc->baux : NULL;
    fc->batch.index = fc->bidx;
    fc->batch.n = take;
    fc->batch.epoch = fc->epoch;
    fc->batch.number = fc->number++;
    return &fc->batch;
}
