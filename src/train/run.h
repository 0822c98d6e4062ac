/* The training side's internals, for the library and its command: the run configuration's
 * fields (public code sees ct_train_config as a handle set by name, cutune/train.h), the
 * strategies' cut points, the standardisation text saved in model files, the k-fold deal,
 * advise's decision and probe, and the demo data. */
#ifndef CUTUNE_TRAIN_RUN_H
#define CUTUNE_TRAIN_RUN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "cutune/train.h"
#include "data/augment.h"
#include "data/data.h"
#include "model/optim.h"
#include "train/callbacks.h"

#ifdef __cplusplus
extern "C" {
#endif

ct_status ct_parse_strategy(const char *s, ct_strategy *out);
/* The freeze_to layer of a strategy: "block5_pool" (head), "block4_pool" (top),
 * "block3_pool" (deep) or "" (all, none). */
const char *ct_strategy_freeze_to(ct_strategy s);
/* The same for a backbone ("vgg16", "vgg19"; NULL: the default). */
const char *ct_strategy_freeze_to_for(const char *backbone, ct_strategy s);

struct ct_strpool;

struct ct_train_config {
    /* Every field below that a flag sets is listed, with its flag, in `cutune train --help`;
     * ct_train_config_set sets fields by those names. Strings are borrowed, except in a config
     * made by ct_train_config_new, which keeps copies in `pool`. */

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
    ct_png16 png16;                /* 16-bit grey PNG: clip at 255 (Keras) or scale */
    ct_na_policy na_policy;
    float na_value;                /* CT_NA_VALUE */
    ct_standardize standardize;    /* preprocess: caffe for folders, none for iceberg (dB) */
    bool preprocess_set;           /* standardize.preprocess was given explicitly */
    ct_augment_config augment;
    bool skip_bad;
    int threads;                   /* loader workers; 0: ct_default_loader_threads */
    size_t cache_bytes;            /* decoded images and the frozen-prefix cache */
    bool no_feature_cache;         /* recompute the frozen layers every step */

    /* model */
    const char *backbone;          /* "vgg16" (NULL: the default) or "vgg19" */
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
    bool save_best_only;           /* no final.h5: best.h5 is the run's model */
    int keep_checkpoints;          /* epochs' checkpoints kept (1); 0: none once the run ends */

    /* run */
    uint64_t seed;
    const char *device;            /* cpu, cuda, auto */
    const char *precision;         /* NULL (backend default), fp32, tf32, bf16 */
    const char *augment_on;        /* NULL/auto, device, loader: where augmentation runs */
    const char *out_dir;
    bool resume;
    bool deterministic;
    int verbose;                   /* 0 quiet, 1 progress bar, 2 one line per epoch */
    ct_train_callbacks callbacks;  /* per epoch and per batch; zero: none */
    int folds;                     /* k-fold runs (ct_train_folds); 0 for ct_train */
    const char *test;              /* ct_train_folds: data the folds predict, or NULL */

    /* Already-open data instead of `data` / `val` (k-fold runs, see ct_train_folds). When
     * train_ds is not NULL, ct_train trains on a view of it and validates on a view of val_ds
     * (NULL: no validation); `val` and `validation_split` must be unset. Both are borrowed: the
     * caller keeps them and frees them after ct_train returns. `data` is still what config.txt
     * records, and data_subset (e.g. "fold 2/5, seed 1") beside it, so --resume of the run
     * refuses other data. */
    const ct_dataset *train_ds, *val_ds;
    const char *data_subset;

    struct ct_strpool *pool;       /* copies of the strings set by name; NULL: borrowed */
};

/* Keras's defaults: SGD lr 0.01, 10 epochs, batch 32, weights imagenet, monitor val_loss, ... */
void ct_train_config_defaults(ct_train_config *c);
/* The checks that involve several settings (--nesterov with sgd, --test with --folds). */
ct_status ct_train_config_check(const ct_train_config *c);

/* Loader threads when --threads is not given: 2 on the CPU backend, whose own threads need the
 * cores; on a GPU, where the cores would otherwise idle while the device computes, one per core
 * but one, from 2 to 8. */
int ct_default_loader_threads(const ct_backend *be);

/* The largest batch whose memory fits in `available` bytes, for a model that needs `fixed`
 * bytes plus `per_sample` bytes per sample of the batch, keeping a tenth of the rest for the
 * libraries' workspaces. ct_train's out-of-device-memory errors name it. */
int ct_train_largest_batch(size_t fixed, size_t per_sample, size_t available);
/* The largest batch whose activations cuDNN's 32-bit tensor descriptors can describe at this
 * input size (VGG16's widest activation is block1's, input x input x 64 per sample): 668 at 224. */
long ct_train_cudnn_batch_cap(int input);

/* Whether a stop was asked for (a signal) since the last ct_train started: callers that run
 * several trainings (ct_train_folds) check it between them. */
bool ct_train_stop_requested(void);
/* Testing aid (core/knobs.h): when CUTUNE_STOP_AFTER_STEPS=N (N >= 1) is set as ct_train
 * starts, the call stops as if interrupted after training N steps of its own (counted from where
 * it started or resumed): it writes checkpoint.h5 and returns CT_EINTR, and the CLI exits 130.
 * This makes exact-resume tests deterministic. Any other value is an error. */

/* ---- the standardisation a model was trained with, as saved in its file ---- */

/* "caffe", or e.g. "none;featurewise_center=-25.1,-31.2,-28.1;featurewise_std_normalization=
 * 2.1,1.7,1.6": the preprocess mode, then what ImageDataGenerator.standardize applies. */
void ct_standardize_format(const ct_standardize *s, char *buf, size_t len);
ct_status ct_standardize_parse(const char *text, ct_standardize *s);

/* ---- k-fold training (the seed notebook's workflow) ---- */

/* Assigns each of n samples to one of `folds` folds, stratified: within each label the samples
 * are shuffled (Philox, keyed by seed) and dealt round-robin, continuing from class to class so
 * the folds' sizes differ by at most one. labels[i] < 0 (unlabelled) are dealt as one more
 * group. fold_of: (n) values in [0, folds). */
ct_status ct_kfold_assign(const int *labels, size_t n, int folds, uint64_t seed, int *fold_of);

/* Counts the classes of `ds`, probes frozen features of c->weights at three depths (global
 * average pooled block3_pool, block4_pool and block5_pool outputs of at most c->samples
 * stratified images, ct_probe_cv on each), then ct_advise_decide. Without pretrained weights
 * ("none", or "imagenet" when the file is not found) nothing is probed: features of a random
 * network say nothing about the domain, and the advice rests on the size axis alone. Prints
 * the report when c->verbose. */
ct_status ct_advise_dataset(const ct_dataset *ds, const ct_advise_config *c, ct_advice *a);

/* The recommendation from what `a` holds (n, k, counts, iceberg, probed, baseline, depth[]):
 * fills per_class, large, similarity, similar, the strategy and hyper-parameters, the
 * reasoning and the command. The seed table: small + similar -> head only (freeze
 * block5_pool); small + different -> blocks 4-5 (freeze block3_pool) with a 10x lower body
 * rate; large + similar -> the top block (freeze block4_pool); large + different -> everything,
 * with a lower body rate. */
void ct_advise_decide(ct_advice *a, const ct_advise_config *c);

/* Prints the reasoning, each paragraph on its own line after `indent`. */
void ct_advise_print_reasoning(FILE *f, const char *indent, const ct_advice *a);

/* The linear probe: multinomial logistic regression with an L2 penalty (l2 <= 0: 1 / n_train)
 * on features standardised with each training fold's mean and deviation, fitted by
 * accelerated full-batch gradient descent, scored by `folds`-fold stratified cross-validation
 * (ct_kfold_assign keyed by seed). x: (n, d) row-major; y: (n) labels in [0, k). *acc: the
 * share of the n samples whose held-out prediction is right. */
ct_status ct_probe_cv(const float *x, const int *y, size_t n, int d, int k, int folds, double l2,
                      uint64_t seed, double *acc);

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
