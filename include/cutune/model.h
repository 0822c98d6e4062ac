/* Models: a keras.applications backbone (VGG16 or VGG19) with Keras's layer names and a head
 * described by a spec string, built on a device, loaded from and saved to Keras-loadable .h5
 * files, and predicting.
 *
 * Head spec: comma-separated tokens, each optionally followed by @name to set the Keras name.
 *   flatten | gap | gmp             Flatten, GlobalAveragePooling2D, GlobalMaxPooling2D
 *   aux:U                           Dense(U) on the auxiliary input, joined by the next concat
 *   concat                          concatenate([features, aux branch])
 *   dense:U[:relu|linear|sigmoid|softmax]
 *   dropout:R                       Dropout(R), 0 <= R < 1
 * Presets: "iceberg" (the seed notebook's head) and "mri" (the seed book's head). The last layer
 * is dense:1:sigmoid (binary) or dense:K:softmax (K classes).
 *
 * A model made here owns its backend (the device); ct_model_free releases both. Training is
 * train.h's: it builds, trains and saves its own model from a configuration. */
#ifndef CUTUNE_MODEL_H
#define CUTUNE_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "cutune/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define CT_HEAD_ICEBERG                                                                        \
    "gmp,aux:1,concat,dense:512:relu@fc2,dropout:0.3,dense:512:relu@fc3,dropout:0.3,"          \
    "dense:1:sigmoid"
#define CT_HEAD_MRI "flatten,dense:64:relu,dense:2:softmax"

#define CT_MIN_INPUT 32 /* ImageNet VGG16 needs inputs of at least 32x32 */
/* The largest input side: VGG's first block holds 64 x 1024 x 1024 floats (268 MB) per image
 * at 1024 x 1024, so larger inputs are beyond what a GPU trains in batches. */
#define CT_MAX_INPUT 1024
#define CT_NAME_MAX 64 /* layer names, bytes with the NUL */

typedef struct ct_model_config {
    const char *backbone;  /* "vgg16" (NULL or "": the default) or "vgg19" */
    int input_h, input_w;  /* >= CT_MIN_INPUT */
    int input_c;           /* 3 (ImageNet weights need 3 channels) */
    int aux_dim;           /* auxiliary scalars per sample (0: none) */
    int max_batch;         /* largest batch forward will see; activations are sized for it */
    const char *head;      /* head spec or preset name; see above */
    uint64_t seed;         /* Glorot init and dropout streams */
    /* Layers frozen from the start, as ct_model_freeze_to(name) right after init, but with the
     * arenas planned for it at once: a batch that only fits with the backbone frozen (its
     * activations are not kept) never needs the fully trainable model's memory. NULL or "":
     * everything trainable; CT_FREEZE_ALL: every layer frozen (inference). */
    const char *freeze_to;
} ct_model_config;

#define CT_FREEZE_ALL "*"

/* Keras's optimizers (train.h's --optimizer). */
typedef enum { CT_OPT_SGD, CT_OPT_ADAM, CT_OPT_ADAMW } ct_optimizer_kind;

typedef struct ct_model ct_model;

/* A new model on `device` ("cpu", "cuda" or "auto": CUDA when usable), initialised the Keras
 * way (Glorot-uniform kernels, zero biases) from cfg->seed. */
CT_API ct_status ct_model_create(ct_model **out, const ct_model_config *cfg, const char *device);

/* The model a cutune .h5 file (best.h5, final.h5) describes, with its weights, on `device`, for
 * batches of up to `max_batch` images. It keeps the file's preprocessing and class names, so
 * ct_model_predict_image feeds it what it was trained on. */
CT_API ct_status ct_model_load(ct_model **out, const char *path, const char *device,
                               int max_batch);

/* Frees the model and, when it made it, its backend. NULL is a no-op. */
CT_API void ct_model_free(ct_model *m);

/* Loads weights: "imagenet" (the official file of the backbone: the notop file into the
 * convolutions, or the full file into a model whose head has fc1, fc2 and predictions) or a
 * Keras .h5 / .weights.h5 file (a backbone-only file fills the backbone; one with a head loads
 * whole). All or nothing: a file that does not fit changes nothing. */
CT_API ct_status ct_model_load_weights(ct_model *m, const char *spec);

/* Saves the model in the legacy Keras layout (what `cutune export-keras` builds the Keras
 * model for), atomically, with its preprocessing and class names when it has them. */
CT_API ct_status ct_model_save(ct_model *m, const char *path);

CT_API const ct_model_config *ct_model_get_config(const ct_model *m);
/* 1 for a sigmoid output, K for a K-class softmax. */
CT_API int ct_model_num_outputs(const ct_model *m);
/* The class names of a loaded model (NULL past the end, or when the file had none). */
CT_API const char *ct_model_class_name(const ct_model *m, int k);
/* Parameters: all, and those of trainable layers. */
CT_API size_t ct_model_num_params(const ct_model *m, size_t *trainable);
/* Freezes every layer up to and including `name` (e.g. "block4_pool") and unfreezes the rest;
 * NULL or "" unfreezes everything. */
CT_API ct_status ct_model_freeze_to(ct_model *m, const char *name);
/* Keras's model.summary(): every layer with its output shape and parameters. */
CT_API void ct_model_summary(const ct_model *m, FILE *out);

/* Probabilities (n, outputs) of n preprocessed images (n, H, W, 3) and their auxiliary values
 * (n, aux_dim; NULL without), all host memory. */
CT_API ct_status ct_model_predict_host(ct_model *m, const float *x, const float *aux, int n,
                                       float *probs);
/* Probabilities (n, outputs) of n images (n, H, W, C) at the model's input size with their
 * pixel values as Keras's load_img + img_to_array give them (RGB 0-255 as float; iceberg: the
 * bands), preprocessed as the model's file says (as ct_model_predict_image does after reading
 * and resizing), and their auxiliary values (n, aux_dim; NULL without). Host memory; any n, in
 * batches of the model's max_batch. */
CT_API ct_status ct_model_predict_pixels(ct_model *m, const float *pixels, const float *aux, int n,
                                         float *probs);
/* Probabilities of one image file (PNG or JPEG), read, resized and preprocessed as the model's
 * file says (ct_model_load; a model made with ct_model_create takes Keras's defaults: nearest
 * resizing, caffe preprocessing). `probs` holds ct_model_num_outputs values. */
CT_API ct_status ct_model_predict_image(ct_model *m, const char *path, float *probs);

#ifdef __cplusplus
}
#endif
#endif
