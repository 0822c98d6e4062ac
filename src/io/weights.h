/* Keras HDF5 weights into and out of a model, and training checkpoints: the library's side of
 * the files (cutune/weights.h says what a C program reads of a file).
 *
 * Reading accepts every layout a Keras user meets (reference/keras-formats.md): the official
 * keras-applications VGG16 files (Keras 1 era: `<layer>_W_1:0`, no keras_version), the legacy
 * `.h5` written by tf.keras 2 and Keras 3 (`kernel:0`, `<layer>/kernel`), whole-model legacy
 * files (weights under /model_weights), split name attributes (`layer_names0`, `layer_names1`,
 * ...), and Keras 3 `.weights.h5` (`layers/<class>[_N]/vars/<i>`). Layer order always comes from
 * the `layer_names` attribute (Keras 3 `.weights.h5`: from the class counters in the group
 * names), never from HDF5 group iteration. Conv kernels are converted from Keras's HWIO to
 * cutune's KRSC on the way in and back on the way out.
 *
 * Writing produces the legacy layout that Keras `load_weights` reads, by order or by name, into
 * the model `cutune export-keras` prints, plus cutune's own root attributes (head spec, input
 * size, aux_dim, preprocessing, class names) from which ct_weights_read_config rebuilds the
 * model. Every file is built in memory (a save holds the file's size in memory while it runs),
 * written to a temporary name in the same directory, flushed to disk and renamed over the
 * final name: a failed save (a full disk, say) leaves the previous file as it was.
 *
 * Loading is all or nothing: every array is read and checked (shape, type, finite values)
 * before the first parameter of the model changes.
 *
 * Errors name the file, the layer or array, and the reason; HDF5's own error printing is
 * silenced and its innermost message is appended to cutune's. The HDF5 library used here is
 * not thread-safe: call these functions from one thread at a time. */
#ifndef CUTUNE_IO_WEIGHTS_H
#define CUTUNE_IO_WEIGHTS_H

#include <stdbool.h>
#include <stdio.h>
#include <stddef.h>
#include <stdint.h>

#include "cutune/weights.h"
#include "model/model.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- loading into a model ---- */

typedef enum {
    CT_WEIGHTS_MATCH_NAME,  /* pair model and file layers by layer name (default). A Keras 3
                               .weights.h5 without names pairs the k-th Conv2D / Dense of the
                               model with the file's conv2d_k / dense_k, as Keras does. */
    CT_WEIGHTS_MATCH_ORDER  /* Keras load_weights' default: the k-th model layer with weights
                               (in Keras's model.layers order) gets the k-th file layer whose
                               weight_names is not empty */
} ct_weights_match;

typedef enum {
    CT_WEIGHTS_SCOPE_ALL,     /* every model layer with weights, backbone and head (default) */
    CT_WEIGHTS_SCOPE_BACKBONE, /* block1_conv1 .. block5_conv3 only: the file's other layers are
                                  skipped and the head keeps its initialisation (both reported) */
    CT_WEIGHTS_SCOPE_AUTO      /* BACKBONE when every layer with weights in the file is a
                                  convolution (the official notop file, a backbone-only save),
                                  else ALL: Keras's VGG16(weights=path, include_top=False) under a
                                  new head, or a whole saved model loaded back */
} ct_weights_scope;

typedef struct ct_weights_load_opts {
    ct_weights_match match;
    ct_weights_scope scope;
    bool allow_missing; /* model layers the file lacks keep their initialisation instead of
                           failing (reported) */
    bool allow_extra;   /* file layers with weights that the model lacks are skipped instead
                           of failing (reported) */
    bool dry_run;       /* check names, shapes and types; read no data, change nothing */
} ct_weights_load_opts;

/* Defaults: by name, all layers, strict. */
void ct_weights_load_defaults(ct_weights_load_opts *o);

typedef struct ct_weights_report {
    ct_weights_format format;
    int n_loaded;           /* model layers whose weights came from the file */
    int n_kept;             /* model layers with weights that kept their initialisation */
    int n_skipped;          /* file layers with weights that were not used */
    size_t n_params_loaded;
    char notes[2048];       /* sentences, one per line: what was kept, skipped or converted */
} ct_weights_report;

/* Loads the weights in `path` into `m` (any backend). `opts` NULL means the defaults; `rep` may
 * be NULL. Fails, changing nothing, on: a file that is not HDF5 or is truncated (CT_EFORMAT or
 * CT_EIO), a missing layer (CT_ENOTFOUND), an extra layer (CT_EFORMAT), a shape that differs
 * (CT_ESHAPE, "expected (..) found (..)"), integer or non-float arrays (CT_EFORMAT), NaN or Inf
 * (CT_ENUMERIC). float64 and float16 arrays are converted to float32 with a note. */
ct_status ct_weights_load(ct_model *m, const char *path, const ct_weights_load_opts *opts,
                          ct_weights_report *rep);

/* Loads "imagenet" or a file path. For "imagenet": when the model's head has layers named fc1,
 * fc2 and predictions the full file is loaded into every layer (it then needs a 224x224
 * input); otherwise the notop file is loaded into the backbone (scope BACKBONE) and the report
 * says which head layers keep their initialisation. `opts` (NULL: defaults) gives the match
 * mode and dry_run; for "imagenet" its scope and allow flags are chosen as above. A file path
 * with `opts` NULL loads with scope AUTO (`cutune train --weights FILE`). */
ct_status ct_weights_load_spec(ct_model *m, const char *spec, const ct_weights_load_opts *opts,
                               ct_weights_report *rep);

/* ---- saving ---- */

typedef struct ct_weights_save_opts {
    const char *preprocessing;       /* "caffe" (VGG16's), "tf", "torch", "none"; NULL: "caffe" */
    const char *const *class_names;  /* (n_classes) or NULL */
    int n_classes;
    bool backbone_only;              /* the 13 conv layers only, like the notop file */
} ct_weights_save_opts;

/* Writes the model in the legacy Keras layout, atomically. The layer order is the one Keras
 * gives model.layers for the model `cutune export-keras` prints (image input, backbone, head;
 * an aux branch where Keras's depth ordering puts it). Fails with CT_ENUMERIC, writing
 * nothing, when a parameter is NaN or Inf. `opts` may be NULL. */
ct_status ct_weights_save(ct_model *m, const char *path, const ct_weights_save_opts *opts);

#define CT_CONFIG_HEAD_MAX 1024

/* cutune's root attributes, beside the model configuration. */
typedef struct ct_saved_config {
    char backbone[32];             /* "vgg16", "vgg19" */
    char head[CT_CONFIG_HEAD_MAX]; /* expanded head spec */
    char preprocessing[512];       /* ct_standardize_format's text: "caffe", "none;..." */
    char cutune_version[32];       /* "" for a Keras file */
    bool from_keras;               /* described by a Keras model_config, not by cutune */
    int n_classes;
    char **class_names;            /* (n_classes), owned: ct_saved_config_free */
} ct_saved_config;

/* What a file's cutune attributes may say. Everything a model is built from is checked against
 * these before anything is allocated for it, so a damaged attribute is a message naming the
 * file and the attribute, not gigabytes allocated and a minute spent.
 *
 * CT_WEIGHTS_MAX_INPUT is also the upper bound of `cutune train --input-size` (the input-size
 * row of train/settings_table.h): VGG's first block alone holds 64 x 1024 x 1024 floats (268 MB)
 * per activation per image at 1024 x 1024, about 1.3 GB for one image's forward pass through
 * the backbone and twice that to train, so larger inputs are beyond what a GPU trains in
 * batches. The head bounds are the head parser's own (units) and what the file can hold: a
 * head's weights are in the file, so a head with more parameters than the file has bytes for
 * (at 2 bytes, float16, the narrowest weights cutune reads) is a damaged attribute. */
#define CT_WEIGHTS_MAX_INPUT CT_MAX_INPUT /* pixels a side (cutune/model.h) */
#define CT_WEIGHTS_MAX_AUX 4096        /* auxiliary values per sample (the model's bound) */
#define CT_WEIGHTS_MAX_UNITS (1 << 20) /* units of one dense layer (the head parser's bound) */
#define CT_WEIGHTS_MAX_HEAD_PARAMS ((int64_t)1 << 32) /* 16 GiB of float32 */
#define CT_WEIGHTS_MAX_CLASS_NAME 255  /* bytes: a folder name's limit */
#define CT_WEIGHTS_MAX_RUN_CONFIG (1 << 20) /* bytes of a checkpoint's run configuration */

/* Reads the configuration of a file written by cutune, or of a Keras model file (its
 * model_config JSON, io/keras_config.c; CT_EUNSUPPORTED names a layer cutune cannot run): fills
 * cfg->backbone, input_h, input_w, input_c, aux_dim and head (pointing into `extra`, which must
 * outlive cfg's use); max_batch and seed keep the caller's values. CT_ENOTFOUND when the file
 * holds weights only (save_weights);
 * CT_EFORMAT, naming the file and the attribute, when an attribute is outside the bounds above
 * or does not parse (the numbers of the head, the preprocessing, the class names). */
ct_status ct_weights_read_config(const char *path, ct_model_config *cfg, ct_saved_config *extra);
void ct_saved_config_free(ct_saved_config *c);

/* The configuration of a weights-only file (save_weights) from what the user gives: `head` (a
 * spec or preset) and a square `input_size`. The backbone is the one whose convolutions the
 * file holds (VGG19's 16 kernels, else VGG16); a head with an aux branch takes one auxiliary
 * value (the iceberg angle); the preprocessing is caffe (VGG's). Fills cfg as
 * ct_weights_read_config does. */
ct_status ct_weights_config_given(const char *path, const char *head, int input_size,
                                  ct_model_config *cfg, ct_saved_config *extra);

/* The status of building the model that ct_weights_read_config described (`s`, from
 * ct_model_init with `cfg`), with a message naming the file: a head the parser refuses is the
 * file's fault (CT_EFORMAT, "FILE: cutune_head 'SPEC': ..."); any other failure (memory) keeps
 * its status and says which model the file asked for. CT_OK stays CT_OK. */
ct_status ct_weights_model_error(const char *path, const ct_model_config *cfg, ct_status s);

/* ---- checkpoints ---- */

/* Everything a training loop needs, beside the weights and the optimizer state, to continue a
 * run exactly. Draws from the counter-based generator are addressed by (seed, epoch, sample),
 * so seed + epoch + loader position is the whole random state. */
typedef struct ct_checkpoint_state {
    int64_t epoch;            /* epochs completed: training resumes at this 0-based epoch */
    int64_t step;             /* batches trained over the whole run */
    int64_t batch_in_epoch;   /* loader position: batches of `epoch` already trained */
    int64_t sample_in_epoch;  /* loader position: samples of `epoch` already trained */
    uint64_t seed;            /* the run seed (shuffle order, augmentation, dropout) */
    double lr_scale;          /* current learning-rate multiplier (schedules, plateaus) */
    int64_t plateau_wait;     /* ReduceLROnPlateau: epochs without improvement */
    int64_t plateau_cooldown; /* ReduceLROnPlateau: cooldown epochs left */
    double plateau_best;      /* ReduceLROnPlateau: best monitored value */
    double best_metric;       /* ModelCheckpoint: best monitored value */
    int64_t best_epoch;       /* EarlyStopping: epoch of its best value (-1: none yet) */
    double es_best;           /* EarlyStopping: best monitored value */
    int64_t patience_wait;    /* EarlyStopping: epochs without improvement */
    double epoch_loss_sum;    /* running sums of the epoch in progress (mid-epoch resume): */
    double epoch_correct;     /*   loss * samples, correct predictions, */
    int64_t epoch_seen;       /*   samples */
    char monitor[32];         /* the monitored metric's name: "val_loss" */
    char *config;             /* the run's configuration (JSON or key=value lines). Save: the
                                 caller's string (NULL: none). Load: allocated, free it with
                                 ct_checkpoint_state_free. */
} ct_checkpoint_state;

/* Writes weights (the legacy Keras layout, so the checkpoint also loads into Keras), cutune's
 * configuration attributes, the optimizer state of every trainable layer, the optimizer's
 * iteration count, the trainable flags and `st`, atomically: to a temporary file in the same
 * directory, H5Fflush + fsync, then rename. On failure the previous file at `path` is
 * untouched and no temporary file remains. */
ct_status ct_checkpoint_save(ct_model *m, const char *path, const ct_weights_save_opts *opts,
                             const ct_checkpoint_state *st);

/* Restores the weights, optimizer state and iteration count into `m`, which must have been
 * built with the same configuration, compiled with the same optimizer kind and frozen the same
 * way (each difference is an error that says what differs), and fills `st`. All or nothing. */
ct_status ct_checkpoint_load(ct_model *m, const char *path, ct_checkpoint_state *st);
void ct_checkpoint_state_free(ct_checkpoint_state *st);

#ifdef __cplusplus
}
#endif
#endif
