/* State of one `cutune train` run, shared by the files of the training loop. */
#ifndef CUTUNE_FIT_INTERNAL_H
#define CUTUNE_FIT_INTERNAL_H

#include "../core/atomic.h"
#include "cutune/data.h"
#include "cutune/model.h"
#include "cutune/run.h"
#include "cutune/stream.h"
#include "cutune/train.h"
#include "cutune/weights.h"

#define FIT_KEYS 5 /* acc, loss, lr, val_acc, val_loss: Keras's sorted column order */

/* The frozen-prefix cache (fit_cache.c). */
typedef struct fit_cache {
    bool active;
    int layer;                   /* whose output is cached: the last frozen layer */
    size_t dim;                  /* values per sample */
    size_t n_train, n_val;
    float *train, *val;          /* (n, dim) in dataset order */
    float *y_train, *y_val;      /* (n, n_out) labels as the loader gives them */
    float *bx, *by, *baux;       /* one gathered batch */
    uint32_t *bidx;
    uint32_t *order;             /* (n_train) the epoch's order */
    size_t pos;
    uint32_t epoch, number;
    bool training;
    ct_batch batch;
} fit_cache;

typedef struct fit_run {
    const ct_train_config *c;
    ct_backend be;
    ct_model *m;
    ct_dataset *all, *train, *val;
    ct_loader *tl, *vl;
    int k;                       /* classes */
    int n_out;                   /* model outputs: 1 (sigmoid) or k */
    int input;                   /* input size */
    ct_class_mode class_mode;
    ct_strategy strategy;        /* resolved (never AUTO) */
    char head[1024];
    char freeze_target[64], freeze_now[64];
    bool compiled;
    ct_made_dirs made;           /* the folders this run created (the run directory, parents) */
    bool wrote_config, wrote_log, wrote_curves; /* ... and these files in it */
    bool use_weights;
    float class_w[CT_MAX_CLASSES];
    float *labels, *weights, *probs; /* (batch, n_out), (batch), (batch, n_out) host */
    char ckpt_path[4200], best_path[4200], final_path[4200], log_path[4200], curves_path[4200],
        config_path[4200], es_best_path[4200];
    char *config_text;           /* the run's settings, key = value lines */
    ct_schedule schedule;
    ct_csv_log log;
    double *history;             /* (epochs, FIT_KEYS) in log column order */
    ct_checkpoint_state st;
    ct_loader_config loader_cfg;  /* as the evaluation loader uses it */
    fit_cache cache;
    ct_stream *stream;           /* training batches through the staging slots */
    ct_stream *vstream;          /* validation batches, the same way (no augmentation) */
} fit_run;

/* Builds (or keeps) the cache for the current lowest trainable layer, when it applies. */
ct_status fit_cache_prepare(fit_run *r);
void fit_cache_begin_epoch(fit_run *r, uint32_t epoch, uint32_t first_batch, bool training);
/* The next gathered batch, or NULL at the end of the epoch. */
const ct_batch *fit_cache_next(fit_run *r);
void fit_cache_free(fit_cache *fc);

/* The strategy the advisor picks for this training set (CT_STRATEGY_AUTO resolved), with its
 * reasoning printed when verbose. */
ct_status ct_fit_auto_strategy(fit_run *r, ct_strategy *out);

#endif
