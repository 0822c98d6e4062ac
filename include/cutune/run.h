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
#include <stdio.h>

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
    CT_STRATEGY_ALL,      /* everything trainable */
    CT_STRATEGY_DEEP      /* small data, different domain: blocks 4-5 trainable, 1-3 frozen */
} ct_strategy;

ct_status ct_parse_strategy(const char *s, ct_strategy *out);
/* The freeze_to layer of a strategy: "block5_pool" (head), "block4_pool" (top),
 * "block3_pool" (deep) or "" (all, none). */
const char *ct_strategy_freeze_to(ct_strategy s);
/* The same for a backbone ("vgg16", "vgg19"; NULL: the default). */
const char *ct_strategy_freeze_to_for(const char *backbone, ct_strategy s);

/* What Keras passes its callbacks: an epoch's logs (NAN where there is no validation data). */
typedef struct ct_epoch_logs {
    int epoch;                     /* 0-based */
    int epochs;                    /* of the run */
    double loss, acc, lr, val_loss, val_acc;
    double seconds;                /* the epoch's wall time, validation included */
} ct_epoch_logs;

/* A batch's logs: the running means of the epoch so far, as Keras's progress bar shows them. */
typedef struct ct_batch_logs {
    int epoch;                     /* 0-based */
    long batch;                    /* 0-based, within the epoch */
    long step;                     /* 0-based, over the run */
    double loss, acc;
} ct_batch_logs;

/* The user's callbacks, called after cutune's own (log row, best.h5, EarlyStopping,
 * ReduceLROnPlateau, checkpoint). Returning true stops the run as Keras's
 * model.stop_training = True does: after an epoch it ends like EarlyStopping (final.h5 is
 * written); after a batch it stops as Ctrl-C does (a checkpoint, CT_EINTR, --resume goes on).
 * Either may be NULL. */
typedef struct ct_train_callbacks {
    void *user;
    bool (*on_epoch_end)(void *user, const ct_epoch_logs *logs);
    bool (*on_batch_end)(void *user, const ct_batch_logs *logs);
} ct_train_callbacks;

typedef struct ct_train_config {
    /* Every field below that a flag sets is listed, with its flag, in `cutune train --help`;
     * ct_train_config_set sets fields by those names. */

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
} ct_train_config;

/* Keras's defaults: SGD lr 0.01, 10 epochs, batch 32, weights imagenet, monitor val_loss, ... */
void ct_train_config_defaults(ct_train_config *c);

/* ---- settings by name: the flags of `cutune train` ---- */

typedef enum {
    CT_SETTINGS_DATA,
    CT_SETTINGS_PREPROCESS,
    CT_SETTINGS_AUGMENT,
    CT_SETTINGS_MODEL,
    CT_SETTINGS_OPTIM,
    CT_SETTINGS_CALLBACKS,
    CT_SETTINGS_RUN,
    CT_SETTINGS_GROUPS
} ct_train_settings_group;

typedef struct ct_train_setting_info {
    const char *name;              /* "batch-size" (underscores are accepted too: batch_size) */
    const char *arg;               /* "N", "sgd|adam|adamw"; NULL for a switch */
    ct_train_settings_group group;
    const char *help;              /* one line */
} ct_train_setting_info;

/* The settings, 0 .. ct_train_settings_count() - 1, in the order they are applied; NULL past
 * the end. The section title of a group ("optimisation"). */
int ct_train_settings_count(void);
const ct_train_setting_info *ct_train_setting(int i);
const char *ct_train_settings_title(ct_train_settings_group g);

/* Sets one setting from text, as `--name value` would: numbers are range-checked, names are
 * checked, a switch is on for any value but NULL. Strings are kept by pointer: `value` must
 * outlive `c`. CT_EINVAL with a message naming the flag. */
ct_status ct_train_config_set(ct_train_config *c, const char *name, const char *value);
/* Sets n settings (the last of a repeated name wins) in the table's order, whatever their
 * order here (--optimizer brings its defaults before --lr changes one), then
 * ct_train_config_check. What the command line, --config files and bindings use. */
ct_status ct_train_config_apply(ct_train_config *c, int n, const char *const *names,
                                const char *const *values);
/* The checks that involve several settings (--nesterov with sgd, --test with --folds). */
ct_status ct_train_config_check(const ct_train_config *c);
/* The settings grouped, one `  --name ARG   help` line each, as `cutune train --help` prints. */
void ct_train_print_help(FILE *f);

/* What a finished (or stopped) run reports. */
typedef struct ct_train_result {
    int epochs_run;                /* epochs completed, in total over resumes */
    int best_epoch;                /* 0-based epoch whose weights best.h5 holds, -1 if none */
    double best_value;             /* of the monitor */
    double final_loss, final_acc, final_val_loss, final_val_acc;
    bool stopped_early, interrupted;
    bool stopped_by_callback;      /* an on_epoch_end returned true */
    char best_path[4200], final_path[4200];
} ct_train_result;

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

/* Trains as configured. CT_EINTR after SIGINT/SIGTERM (a checkpoint was written; the CLI exits
 * 130); CT_ENUMERIC on a NaN/Inf loss or gradient, naming the step and layer (the last good
 * checkpoint is kept); CT_EDEVMEM when the device runs out of memory, naming the largest batch
 * size that fits. */
ct_status ct_train(const ct_train_config *c, ct_train_result *r);

/* Installs SIGINT/SIGTERM handlers that ask a running ct_train to stop after its step. */
void ct_train_install_signal_handlers(void);
/* Asks a running ct_train to stop after the current step (what the handlers call). */
void ct_train_request_stop(void);
/* Whether a stop was asked for (a signal) since the last ct_train started: callers that run
 * several trainings (ct_train_folds) check it between them. */
bool ct_train_stop_requested(void);
/* Testing aid: when the environment variable CUTUNE_STOP_AFTER_STEPS=N (N >= 1) is set as
 * ct_train starts, the call stops as if interrupted after training N steps of its own (counted
 * from where it started or resumed): it writes checkpoint.h5 and returns CT_EINTR, and the CLI
 * exits 130. This makes exact-resume tests deterministic. Any other value is an error. */

/* ---- evaluate and predict ---- */

typedef struct ct_predict_config {
    const char *model;             /* a .h5 written by cutune (best.h5, final.h5) */
    const char *data;              /* class folders or iceberg JSON */
    const char *out;               /* predictions CSV (predict) */
    bool tta_hflip, tta_vflip;     /* average over flipped copies */
    int batch_size;
    int threads;                   /* loader workers; 0: ct_default_loader_threads */
    const char *device;
    const char *precision;         /* NULL (backend default), fp32, tf32, bf16 */
    const char *augment_on;        /* where standardisation runs: auto (NULL), device, loader */
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

/* ---- k-fold training (the seed notebook's workflow) ---- */

/* Assigns each of n samples to one of `folds` folds, stratified: within each label the samples
 * are shuffled (Philox, keyed by seed) and dealt round-robin, continuing from class to class so
 * the folds' sizes differ by at most one. labels[i] < 0 (unlabelled) are dealt as one more
 * group. fold_of: (n) values in [0, folds). */
ct_status ct_kfold_assign(const int *labels, size_t n, int folds, uint64_t seed, int *fold_of);

#define CT_MAX_FOLDS 100

typedef struct ct_fold_result {
    size_t n_train, n_val;
    int epochs_run;
    bool stopped_early;
    int best_epoch;                /* 0-based epoch of best.h5 (the monitor's best), -1 none */
    double best_val_loss, best_val_acc; /* the log's values at best_epoch */
} ct_fold_result;

typedef struct ct_folds_result {
    int folds;
    ct_fold_result fold[CT_MAX_FOLDS];
    double mean_val_loss, mean_val_acc; /* over the folds */
    size_t test_rows;              /* rows of predictions.csv (0 without a test set) */
    char predictions_path[4200];
} ct_folds_result;

/* K-fold training: `folds` stratified folds of c->data (ct_kfold_assign, keyed by c->seed); fold
 * k trains a ct_train run on the other folds and validates on fold k, into
 * c->out_dir/fold_<k>/ (k from 1), with c's callbacks (early stopping, best checkpoint, ...).
 * Then, when `test` is given (iceberg test.json or a folder), each fold's best.h5 predicts it
 * into fold_<k>/predictions.csv and their mean goes to c->out_dir/predictions.csv (Kaggle's
 * `id,is_iceberg` for an iceberg file). c->out_dir/folds.csv lists each finished fold's best
 * validation metrics. c->val, c->validation_split, c->train_ds must be unset.
 * Every fold trains with c->seed (the same initialisation: the folds differ by their data).
 * CT_STRATEGY_AUTO is resolved once, on the whole training data, before the first fold.
 * Resume (c->resume): folds listed in folds.csv are kept as they are, an interrupted fold
 * continues from its checkpoint, the rest start; each fold directory is a run of its own. */
ct_status ct_train_folds(const ct_train_config *c, int folds, const char *test,
                         ct_folds_result *r);

/* ---- advise: how much of the backbone to train, from the data ---- */

/* Thresholds of the recommendation. Large data: at least this many training images per class
 * on average (ImageNet has about 1,300 per class; below ~1,000 fine-tuning deep layers of a
 * 138M-parameter network overfits readily). Similar domain: block5 probe similarity at least
 * CT_ADVISE_SIMILARITY, and block5 no more than CT_ADVISE_DEPTH_SLACK below the best of the
 * shallower blocks (top ImageNet features at least as useful as generic lower ones). */
#define CT_ADVISE_LARGE_PER_CLASS 1000
#define CT_ADVISE_SIMILARITY 0.5
#define CT_ADVISE_DEPTH_SLACK 0.05
#define CT_ADVISE_DEPTHS 3 /* block3_pool, block4_pool, block5_pool */

typedef struct ct_advise_config {
    const char *data;              /* class folders or iceberg train.json (ct_advise) */
    const char *backbone;          /* "vgg16" (NULL: the default) or "vgg19" */
    const char *weights;           /* "imagenet" (default), "none" or a .h5 file */
    int input_size;                /* probe input; 0: CT_ADVISE_CPU_INPUT on the CPU, 224 on a
                                      GPU (folders); iceberg images keep their 75x75 */
    int samples;                   /* cap on the probe's images, drawn stratified; 0: default */
    int cv_folds;                  /* cross-validation folds of the probe (3) */
    double l2;                     /* probe L2 penalty; <= 0: 1 / n_train (sklearn's C = 1) */
    int batch_size;                /* forward batch (16) */
    int threads;                   /* loader workers and CPU backend threads; 0: defaults */
    const char *device;            /* cpu, cuda, auto */
    uint64_t seed;                 /* which samples and folds */
    ct_na_policy na_policy;
    float na_value;
    ct_color_mode color_mode;
    ct_interpolation interpolation;
    bool keep_aspect_ratio;
    ct_standardize standardize;    /* as train: caffe for folders, none for iceberg ... */
    bool preprocess_set;           /* ... unless standardize.preprocess was given */
    bool skip_bad;
    int train_input_size;          /* for the printed command: the --input-size to train with
                                      (0: train's default) */
    const char *out_dir;           /* for the printed command (NULL: runs/advised) */
    int verbose;                   /* 1: print the report to stdout */
} ct_advise_config;

#define CT_ADVISE_CPU_INPUT 112
#define CT_ADVISE_SAMPLES 300

void ct_advise_config_defaults(ct_advise_config *c);

typedef struct ct_probe_score {
    const char *layer;             /* "block3_pool", "block4_pool", "block5_pool" */
    int dim;                       /* features: the layer's channels, global average pooled */
    double acc;                    /* k-fold cross-validated accuracy of the linear probe */
    double se;                     /* its binomial standard error, sqrt(acc (1 - acc) / n) */
} ct_probe_score;

typedef struct ct_advice {
    /* the data */
    size_t n;                      /* labelled training images */
    int k;                         /* classes */
    size_t counts[CT_MAX_CLASSES];
    char class_names[CT_MAX_CLASSES][64];
    bool iceberg;                  /* in-memory radar images (overhead: both flips are fine) */
    double per_class;              /* n / k */
    bool large;                    /* per_class >= CT_ADVISE_LARGE_PER_CLASS */
    /* the probe */
    bool probed;                   /* false: no pretrained weights, or too little data */
    char weights_note[1024];       /* what was loaded, or why nothing was probed */
    int input_size;                /* of the probe */
    size_t probe_n;                /* images probed */
    int probe_folds;
    double baseline;               /* majority-class share of the probed images */
    ct_probe_score depth[CT_ADVISE_DEPTHS];
    double similarity;             /* (acc5 - baseline) / (1 - baseline) in [0, 1]; NAN unprobed */
    bool similar;                  /* the domain axis (assumed true when not probed) */
    double seconds;                /* the probe's wall time */
    /* the recommendation */
    ct_strategy strategy;          /* HEAD, TOP, DEEP or ALL */
    const char *freeze_to;         /* ct_strategy_freeze_to(strategy) */
    ct_optimizer_kind optimizer;
    float lr, momentum, body_lr_mult;
    bool nesterov;
    int warmup_epochs, epochs, patience;
    bool horizontal_flip, vertical_flip;
    float zoom_range, rotation_range;
    bool balanced;                 /* --class-weight balanced (classes 3x apart or more) */
    char summary[160];             /* the strategy in words: "train the head only: ..." */
    char reasoning[6144];          /* sentences, one paragraph per line */
    char command[4096];            /* the `cutune train ...` line */
} ct_advice;

/* Opens c->data (training data: labelled) and advises on it: ct_advise_dataset. */
ct_status ct_advise(const ct_advise_config *c, ct_advice *a);

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

/* Prints the class counts, the probe, the reasoning and the command. */
void ct_advise_print(FILE *f, const ct_advice *a);
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
