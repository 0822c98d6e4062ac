/* Fine-tuning as Keras users run it: the seed workflows as library calls. A training run takes
 * its settings by the names of `cutune train`'s flags (ct_train_config_set(c, "epochs", "20")),
 * streams the data through VGG16 or VGG19 with the head, and writes a run folder: log.csv
 * (Keras CSVLogger), curves.png, best.h5 and final.h5 (Keras-loadable weights with cutune's
 * configuration), checkpoint.h5 (exact resume) and config.txt (the run's settings). Keras-style
 * callbacks see every epoch and batch. evaluate and predict read a saved model; advise says how
 * much of the backbone to train, measured on the data. */
#ifndef CUTUNE_TRAIN_H
#define CUTUNE_TRAIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "cutune/data.h"
#include "cutune/model.h"
#include "cutune/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define CT_MAX_CLASSES 256

/* Where the backbone starts: which layers stay frozen. */
typedef enum {
    CT_STRATEGY_NONE = 0, /* use freeze_to (or nothing) */
    CT_STRATEGY_AUTO,     /* from the data: the seed table, see ct_advise */
    CT_STRATEGY_HEAD,     /* small data, similar domain: the whole backbone frozen */
    CT_STRATEGY_TOP,      /* the top block (block5) trainable, blocks 1-4 frozen */
    CT_STRATEGY_ALL,      /* everything trainable */
    CT_STRATEGY_DEEP      /* small data, different domain: blocks 4-5 trainable, 1-3 frozen */
} ct_strategy;

/* ---- training ---- */

/* A run's settings: every flag of `cutune train`, by name. */
typedef struct ct_train_config ct_train_config;

/* Keras's defaults (SGD lr 0.01, 10 epochs, batch 32, weights imagenet, monitor val_loss, ...);
 * free with ct_train_config_free. Values given to ct_train_config_set are copied. */
CT_API ct_status ct_train_config_new(ct_train_config **out);
CT_API void ct_train_config_free(ct_train_config *c);

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
    long steps;                    /* batches in the epoch (the progress bar's end) */
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

/* Sets the callbacks (copied); NULL removes them. */
CT_API void ct_train_config_set_callbacks(ct_train_config *c, const ct_train_callbacks *cb);

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
CT_API int ct_train_settings_count(void);
CT_API const ct_train_setting_info *ct_train_setting(int i);
CT_API const char *ct_train_settings_title(ct_train_settings_group g);

/* Sets one setting from text, as `--name value` would: numbers are range-checked, names are
 * checked, a switch is on for any value but NULL ("0" and "false" too, as on the command line:
 * give NULL to turn one off). Strings are copied. CT_EINVAL with a message naming the flag. */
CT_API ct_status ct_train_config_set(ct_train_config *c, const char *name, const char *value);
/* Sets n settings (the last of a repeated name wins) in the table's order, whatever their
 * order here (--optimizer brings its defaults before --lr changes one), then checks the
 * settings that go together (--nesterov with sgd, --test with --folds). What the command line,
 * --config files and bindings use. */
CT_API ct_status ct_train_config_apply(ct_train_config *c, int n, const char *const *names,
                                const char *const *values);
/* The settings a run folder records (RUN_DIR/config.txt; for a k-fold run, its first fold's,
 * with `folds`), applied to c: continuing a run from its folder alone, as
 * `cutune train --out RUN_DIR --resume` does, with the caller's own settings applied after (only
 * those that agree with the record, and --epochs, then pass --resume's check). CT_OK and nothing
 * changed when the folder holds no record; CT_EINVAL for the folder of one fold of a k-fold run;
 * CT_EFORMAT naming the file and line of a record that does not read. */
CT_API ct_status ct_train_config_read_run(ct_train_config *c, const char *run_dir);
/* The settings grouped, one `  --name ARG   help` line each, as `cutune train --help` prints. */
CT_API void ct_train_print_help(FILE *f);

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

/* Trains as configured. CT_EINTR after SIGINT/SIGTERM (a checkpoint was written; the CLI exits
 * 130); CT_ENUMERIC on a NaN/Inf loss or gradient, naming the step and layer (the last good
 * checkpoint is kept); CT_EDEVMEM when the device runs out of memory, naming the largest batch
 * size that fits. */
CT_API ct_status ct_train(const ct_train_config *c, ct_train_result *r);

/* Installs SIGINT/SIGTERM handlers that ask a running ct_train to stop after its step. */
CT_API void ct_train_install_signal_handlers(void);
/* Asks a running ct_train to stop after the current step (what the handlers call). */
CT_API void ct_train_request_stop(void);

/* ---- k-fold training (the seed notebook's workflow) ---- */

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

/* K-fold training: `folds` stratified folds of the data (keyed by the seed); fold k trains a
 * ct_train run on the other folds and validates on fold k, into RUN_DIR/fold_<k>/ (k from 1),
 * with the configured callbacks (early stopping, best checkpoint, ...).
 * Then, when `test` is given (iceberg test.json or a folder), each fold's best.h5 predicts it
 * into fold_<k>/predictions.csv and their mean goes to RUN_DIR/predictions.csv (Kaggle's
 * `id,is_iceberg` for an iceberg file). RUN_DIR/folds.csv lists each finished fold's best
 * validation metrics. Not with --val or --validation-split. Every fold trains with the same
 * seed (the same initialisation: the folds differ by their data). --strategy auto is resolved
 * once, on the whole training data, before the first fold. With --resume: folds listed in folds.csv are kept as they are, an interrupted fold
 * continues from its checkpoint, the rest start; each fold directory is a run of its own. */
CT_API ct_status ct_train_folds(const ct_train_config *c, int folds, const char *test,
                         ct_folds_result *r);

/* ---- evaluate and predict ---- */

typedef struct ct_metrics {
    long n;                  /* samples */
    int k;                   /* classes (2 for a sigmoid output) */
    double loss;             /* weighted cross-entropy, probabilities clipped to [1e-7, 1-1e-7] */
    double accuracy;         /* argmax (softmax) or p >= 0.5 (sigmoid) */
    double auc;              /* binary ROC AUC with ties averaged; NAN if one class is absent */
    long *confusion;         /* (k, k): row = true class, column = predicted */
    double *precision;       /* (k); 0 where nothing was predicted as the class (0/0: set to
                                0.0 as scikit-learn's zero_division default; the printed
                                report says so) */
    double *recall;          /* (k); 0 where the class is absent (likewise) */
    char **class_names;      /* (k) the data's class names (ct_evaluate), or NULL */
} ct_metrics;

CT_API void ct_metrics_free(ct_metrics *m);
/* Prints accuracy, loss, AUC, the confusion matrix and per-class precision/recall. */
CT_API void ct_metrics_print(FILE *f, const ct_metrics *m, const char *const *class_names);

typedef struct ct_predict_config {
    const char *model;             /* a .h5 written by cutune (best.h5, final.h5) or by Keras */
    const char *data;              /* class folders, a folder of images, or iceberg JSON */
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
    /* A weights-only file (save_weights) keeps no model; these describe it (NULL / 0 for a file
     * that carries its model: cutune's, or Keras's model.save('m.h5')): */
    const char *head;              /* head spec or preset: 'gap,dense:3:softmax', mri, iceberg */
    int input_size;                /* square input in pixels; 0: 224 */
    /* Any file: */
    const char *preprocess;        /* caffe, tf, torch, none; NULL: the file's (Keras's: caffe) */
    const char *classes;           /* class names, comma-separated, for the output columns;
                                      NULL: the file's (a Keras file has none: the data's) */
    ct_png16 png16;                /* 16-bit grey PNGs: clip at 255 (Keras, default) or scale */
    bool png16_noted;              /* the 16-bit note was printed already in this run */
} ct_predict_config;

CT_API void ct_predict_config_defaults(ct_predict_config *c);

/* Metrics of `model` on labelled data, with the data's class names (free with
 * ct_metrics_free; ct_metrics_print prints them as `cutune evaluate` does). */
CT_API ct_status ct_evaluate(const ct_predict_config *c, ct_metrics *m);

/* Predictions in memory: a row per sample read (unreadable ones skipped with skip_bad are left
 * out), in the data's order. */
typedef struct ct_predictions {
    size_t rows;
    int outputs;       /* probabilities per row: 1 for a sigmoid (class 1's), K for a softmax */
    float *probs;      /* (rows, outputs) */
    char **names;      /* (rows) Keras's filenames entry ("cat/img.png") or the iceberg id */
    char **columns;    /* (outputs) the model's class names ("p" where the file has none) */
    bool kaggle;       /* an iceberg file and a sigmoid: written as Kaggle's id,is_iceberg */
} ct_predictions;

CT_API ct_status ct_predict_arrays(const ct_predict_config *c, ct_predictions *p);
CT_API void ct_predictions_free(ct_predictions *p);

/* ct_predict_arrays written to c->out as CSV, atomically: `filename,<class>...` rows, or
 * Kaggle's `id,is_iceberg` for an iceberg file. *rows: the rows written. */
CT_API ct_status ct_predict(const ct_predict_config *c, size_t *rows);

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

CT_API void ct_advise_config_defaults(ct_advise_config *c);
/* A config with the defaults on the heap (for bindings); free with ct_advise_config_free. */
CT_API ct_status ct_advise_config_new(ct_advise_config **out);
CT_API void ct_advise_config_free(ct_advise_config *c);
/* Sets one setting by the name of its `cutune advise` flag, as the command line does: data,
 * backbone, weights, input-size, samples, cv, batch-size, seed, device, threads, na-policy,
 * skip-bad (on for any value but NULL), out, verbose (0 or 1). Checked at once; CT_EINVAL with
 * a message naming the flag. Text values are not copied: they must outlive the config's use. */
CT_API ct_status ct_advise_config_set(ct_advise_config *c, const char *name, const char *value);

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
    bool weights_missing;          /* "imagenet" was asked for but is not installed: the command
                                      trains with --weights none, and says how to fetch them */
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
CT_API ct_status ct_advise(const ct_advise_config *c, ct_advice *a);

/* Prints the class counts, the probe, the reasoning and the command. */
CT_API void ct_advise_print(FILE *f, const ct_advice *a);
#ifdef __cplusplus
}
#endif
#endif
