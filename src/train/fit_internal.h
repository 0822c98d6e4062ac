/* State of one `cutune train` run, shared by the files of the training loop. */
#ifndef CUTUNE_FIT_INTERNAL_H
#define CUTUNE_FIT_INTERNAL_H

#include "cutune/data.h"
#include "cutune/model.h"
#include "cutune/run.h"
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

/* Streaming of training batches through the backend's staging slots (feed.c). */
typedef struct fit_feed {
    bool ready;                  /* fit_feed_init ran: the training loader uses these buffers */
    bool on_device;              /* raw batches; the backend augments and standardises */
    bool raw_f32;                /* the raw pixels are floats (in-memory datasets) */
    int h, w, c, k, aux_dim, batch;
    ct_standardize std;          /* the standardisation the device path applies */
    uint64_t seed;
    ct_batch *host;              /* (n_host) loader buffers in the backend's host memory */
    int n_host;
    void *x[CT_STAGE_SLOTS];     /* backend memory: raw pixels or finished floats */
    uint32_t *index[CT_STAGE_SLOTS];
    float *aux[CT_STAGE_SLOTS];
    const ct_batch *pending[CT_STAGE_SLOTS]; /* the loader batch each slot was copied from */
    int next_slot;
} fit_feed;

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
    bool use_weights;
    float class_w[CT_MAX_CLASSES];
    float *labels, *weights, *probs; /* (batch, n_out), (batch), (batch, n_out) host */
    char ckpt_path[4200], best_path[4200], final_path[4200], log_path[4200], curves_path[4200],
        config_path[4200];
    char *config_text;           /* the run's settings, key = value lines */
    ct_schedule schedule;
    ct_csv_log log;
    double *history;             /* (epochs, FIT_KEYS) in log column order */
    ct_checkpoint_state st;
    ct_loader_config loader_cfg;  /* as the evaluation loader uses it */
    fit_cache cache;
    fit_feed feed;
} fit_run;

/* Picks the path from --augment-on (auto: the device path on every backend but the CPU). */
ct_status fit_feed_choose(fit_run *r, const char *augment_on);
/* Allocates the loader's host buffers and the staging slots, and points the training loader's
 * configuration at them (buffers, output kind). */
ct_status fit_feed_init(fit_run *r, ct_loader_config *lc);
/* Queues the copy of a loader batch into the next free slot (*slot). */
ct_status fit_feed_put(fit_run *r, const ct_batch *b, int *slot);
/* Queues the model's input from the slot: augmentation + standardisation on the device path, a
 * copy on the loader path; then the auxiliary values. */
ct_status fit_feed_input(fit_run *r, int slot, const ct_augment_config *aug);
/* Waits for the slot's copy and gives its batch back to the loader. */
ct_status fit_feed_done(fit_run *r, ct_loader *l, int slot);
/* Gives back every batch still held by a slot. */
void fit_feed_drop(fit_run *r, ct_loader *l);
/* Frees the buffers; call after the training loader is freed, before the backend is. */
void fit_feed_free(fit_run *r);

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
