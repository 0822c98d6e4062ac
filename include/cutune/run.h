/* The seed workflows as library calls: train (fit_generator with callbacks), evaluate, predict,
 * and the synthetic demo data. The cutune command parses flags into these configurations; a
 * program can fill them itself.
 *
 * A run directory holds log.csv (Keras CSVLogger), curves.png, best.h5 and final.h5 (Keras
 * loadable weights with cutune's configuration), checkpoint.h5 (exact resume) and config.txt
 * (the run's settings, one `key = value` per line). */
#ifndef CUTUNE_RUN_H
#define CUTUNE_RUN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cutune/augment.h"
#include "cutune/data.h"
#include "cutune/optim.h"
#include "cutune/status.h"
#include "cutune/train.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Where the backbone starts: which layers stay frozen. */
typedef enum {
    CT_STRATEGY_NONE = 0, /* use freeze_to (or nothing) */
    CT_STRATEGY_AUTO,     /* from the data: the seed table, see ct_advise */
    CT_STRATEGY_HEAD,     /* small data, similar domain: the whole backbone frozen */
    CT_STRATEGY_TOP,      /* the top block (block5) trainable, blocks 1-4 frozen */
    CT_STRATEGY_ALL       /* everything trainable */
} ct_strategy;

ct_status ct_parse_strategy(const char *s, ct_strategy *out);
/* The freeze_to layer of a strategy: "block5_pool", "block4_pool" or "" (none). */
const char *ct_strategy_freeze_to(ct_strategy s);

typedef struct ct_train_config {
    /* data */
    const char *data;              /* class folders or iceberg train.json */
    const char *val;               /* separate validation folder / JSON, or NULL */
    double validation_split;       /* 0: none (or `val`) */
    ct_split_method split_method;
    ct_class_mode class_mode;      /* categorical (softmax heads) or binary (sigmoid heads);
                                      CT_CLASS_NONE: chosen from the head */
    int input_size;                /* 0: 224 for folders, 75 for iceberg JSON */
    ct_color_mode color_mode;
    ct_interpolation interpolation;
    bool keep_aspect_ratio;
    ct_na_policy na_policy;
    float na_value;                /* CT_NA_VALUE */
    ct_standardize standardize;    /* preprocess: caffe for folders, none for iceberg (dB) */
    bool preprocess_set;           /* standardize.preprocess was given explicitly */
    ct_augment_config augment;
    bool skip_bad;
    int threads;                   /* loader workers; 0: 2 */
    size_t cache_bytes;            /* decoded images and the frozen-prefix cache */
    bool no_feature_cache;         /* recompute the frozen layers every step */

    /* model */
    const char *weights;           /* "imagenet", "none" or a .h5 file */
    const char *head;              /* NULL: "flatten,dense:256:relu,dropout:0.5,dense:K:softmax"
                                      for folders (K classes; dense:1:sigmoid in binary mode),
                                      "iceberg" for iceberg JSON */
    const char *freeze_to;         /* a layer name, or NULL */
    ct_strategy strategy;
    int warmup_epochs;             /* epochs with the backbone frozen before freeze_to applies */
    float body_lr_mult;            /* learning-rate factor for the backbone (1: none) */
    float block_lr_decay;          /* discriminative rates: block5 x d, block4 x d^2, ... (1) */

    /* optimisation */
    int epochs, batch_size;
    long steps_per_epoch;          /* 0: the whole training set */
    ct_optimizer_config optimizer;
    const char *schedule;          /* "constant", "step:E:F", "cosine[:MIN]" */
    const char *class_weight;      /* NULL, "balanced", or "w0,w1,..." */

    /* callbacks */
    const char *monitor;           /* "val_loss" (or "loss" without validation data) */
    ct_monitor_mode monitor_mode;
    int early_stopping_patience;   /* < 0: off */
    double min_delta;
    bool restore_best_weights;
    int reduce_lr_patience;        /* < 0: off */
    double reduce_lr_factor, min_lr;
    int reduce_lr_cooldown;

    /* run */
    uint64_t seed;
    const char *device;            /* cpu, cuda, auto */
    const char *out_dir;
    bool resume;
    bool deterministic;
    int verbose;                   /* 0 quiet, 1 progress bar, 2 one line per epoch */
} ct_train_config;

/* Keras's defaults: SGD lr 0.01, 10 epochs, batch 32, weights imagenet, monitor val_loss, ... */
void ct_train_config_defaults(ct_train_config *c);

/* What a finished (or stopped) run reports. */
typedef struct ct_train_result {
    int epochs_run;                /* epochs completed, in total over resumes */
    int best_epoch;                /* 0-based, -1 if none */
    double best_value;             /* of the monitor */
    double final_loss, final_acc, final_val_loss, final_val_acc;
    bool stopped_early, interrupted;
    char best_path[4200], final_path[4200];
} ct_train_result;

/* Trains as configured. CT_EINTR after SIGINT/SIGTERM (a checkpoint was written; the CLI exits
 * 130); CT_ENUMERIC on a NaN/Inf loss or gradient, naming the step and layer (the last good
 * checkpoint is kept). */
ct_status ct_train(const ct_train_config *c, ct_train_result *r);

/* Installs SIGINT/SIGTERM handlers that ask a running ct_train to stop after its step. */
void ct_train_install_signal_handlers(void);
/* Asks a running ct_train to stop after the current step (what the handlers call). */
void ct_train_request_stop(void);

/* ---- evaluate and predict ---- */

typedef struct ct_predict_config {
    const char *model;             /* a .h5 written by cutune (best.h5, final.h5) */
    const char *data;              /* class folders or iceberg JSON */
    const char *out;               /* predictions CSV (predict) */
    bool tta_hflip, tta_vflip;     /* average over flipped copies */
    int batch_size;
    int threads;
    const char *device;
    bool skip_bad;
    ct_na_policy na_policy;
    float na_value;
} ct_predict_config;

void ct_predict_config_defaults(ct_predict_config *c);

/* Metrics of `model` on labelled data, printed to stdout and returned (free with
 * ct_metrics_free). */
ct_status ct_evaluate(const ct_predict_config *c, ct_metrics *m);

/* Writes one row per sample: file name (or iceberg id) and the class probabilities; Kaggle's
 * `id,is_iceberg` for an iceberg file. Written atomically. */
ct_status ct_predict(const ct_predict_config *c, size_t *rows);

/* ---- the standardisation a model was trained with, as saved in its file ---- */

/* "caffe", or e.g. "none;featurewise_center=-25.1,-31.2,-28.1;featurewise_std_normalization=
 * 2.1,1.7,1.6": the preprocess mode, then what ImageDataGenerator.standardize applies. */
void ct_standardize_format(const ct_standardize *s, char *buf, size_t len);
ct_status ct_standardize_parse(const char *text, ct_standardize *s);

/* ---- demo data ---- */

/* Writes a small learnable dataset: `dir`/train/{normal,dementia}/ and `dir`/val/... PNG
 * slices (an elliptical "brain" whose dark ventricles are larger in the dementia class), and
 * `dir`/iceberg.json (75x75 two-band records whose target is a bright compact blob for icebergs
 * or an elongated one for ships, with an incidence angle). Deterministic in `seed`. */
ct_status ct_demo_generate(const char *dir, int per_class, int size, uint64_t seed);

#ifdef __cplusplus
}
#endif
#endif
