/* What a Keras weights file holds, the Keras code that loads one cutune wrote, and where the
 * official ImageNet files are.
 *
 * Reading accepts every layout a Keras user meets (shared/reference/keras-formats.md): the
 * official keras-applications files (Keras 1 era: `<layer>_W_1:0`, no keras_version), the
 * legacy `.h5` written by tf.keras 2 and Keras 3 (`kernel:0`, `<layer>/kernel`), whole-model
 * legacy files (weights under /model_weights), split name attributes (`layer_names0`, ...), and
 * Keras 3 `.weights.h5` (`layers/<class>[_N]/vars/<i>`). Layer order comes from the
 * `layer_names` attribute, never from HDF5 group iteration. Errors name the file, the layer or
 * array, and the reason. The HDF5 library is not thread-safe: call these from one thread at a
 * time. */
#ifndef CUTUNE_WEIGHTS_H
#define CUTUNE_WEIGHTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "cutune/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define CT_WEIGHTS_NAME_MAX 256 /* layer and weight names, bytes with the NUL */
#define CT_WEIGHTS_PATH_MAX 4096
#define CT_WEIGHTS_MAX_DIMS 8

/* ---- what a file holds ---- */

typedef enum {
    CT_WEIGHTS_KERAS1,       /* layer_names without keras_version: the official VGG16 files */
    CT_WEIGHTS_LEGACY,       /* legacy save_weights .h5 of tf.keras 2 / Keras 3 (and cutune's) */
    CT_WEIGHTS_LEGACY_MODEL, /* whole-model legacy .h5: the same under /model_weights */
    CT_WEIGHTS_KERAS3        /* Keras 3 .weights.h5 */
} ct_weights_format;

/* "Keras 1 weights (official keras-applications layout)", ... Never NULL. */
CT_API const char *ct_weights_format_name(ct_weights_format f);

typedef enum {
    CT_WDTYPE_F32,
    CT_WDTYPE_F64,   /* loaded, converted to float32, with a note in the report */
    CT_WDTYPE_F16,   /* loaded, converted to float32, with a note in the report */
    CT_WDTYPE_INT,   /* refused: weights must be floating point */
    CT_WDTYPE_OTHER  /* refused */
} ct_weights_dtype;

typedef struct ct_weights_array {
    char name[CT_WEIGHTS_NAME_MAX]; /* as the layer lists it: block1_conv1_W_1:0, fc2/kernel, 0 */
    char path[CT_WEIGHTS_PATH_MAX]; /* the dataset's HDF5 path */
    int ndim;
    int64_t dims[CT_WEIGHTS_MAX_DIMS]; /* as stored: conv kernels (3, 3, C, K) = HWIO */
    size_t count;                      /* elements */
    ct_weights_dtype dtype;
    char dtype_name[16];               /* "float32", "float64", "int32", ... */
} ct_weights_array;

typedef struct ct_weights_layer {
    char name[CT_WEIGHTS_NAME_MAX]; /* Keras layer name; a Keras 3 .weights.h5 without name
                                       metadata gives the group path (layers/conv2d_1) */
    char keras_class[64];           /* Keras 3 .weights.h5: the snake_case class of the group
                                       name (conv2d); "" for the legacy layouts */
    int class_index;                /* Keras 3: N of conv2d_N (0 for conv2d); -1 otherwise */
    int n_arrays;                   /* 0 for layers without weights (pools, inputs, ...) */
    ct_weights_array *arrays;       /* (n_arrays), in weight_names order */
} ct_weights_layer;

typedef struct ct_weights_file {
    char path[CT_WEIGHTS_PATH_MAX];
    ct_weights_format format;
    bool vlen_strings;        /* layer_names held variable-length strings (else fixed-length) */
    bool split_names;         /* layer_names was split into layer_names0, layer_names1, ... */
    bool names_known;         /* false: Keras 3 file without 'name' metadata (class order only) */
    char keras_version[32];   /* "" when absent */
    char backend[32];         /* "" when absent */
    int n_layers;
    ct_weights_layer *layers; /* (n_layers), in the file's layer order */
    int n_arrays;             /* arrays of every layer */
    size_t n_params;          /* elements of every array */
    bool has_config;          /* written by cutune: ct_weights_read_config works */
    bool is_checkpoint;       /* written by ct_checkpoint_save */
} ct_weights_file;

/* Reads the structure of a weights file (names, shapes, types; no array data). */
CT_API ct_status ct_weights_inspect(const char *path, ct_weights_file **out);
CT_API void ct_weights_file_free(ct_weights_file *f);

/* Finds the official ImageNet file, downloading it when no place has it, as Keras's get_file
 * does: `full` selects the file with fc1, fc2 and predictions. Looks, in order, at
 * $CUTUNE_WEIGHTS (a file, used as is, or a directory), ./weights/, the weights/ folder of the
 * cutune checkout the running executable belongs to, and ~/.keras/models/. Then downloads it
 * from Keras's URL ($CUTUNE_WEIGHTS_URL replaces the folder) into the $CUTUNE_WEIGHTS directory
 * or ~/.keras/models/ (created), with a progress bar on stderr; the file takes its name only
 * after its MD5 matches the published one, and a broken-off download resumes next time.
 * CUTUNE_OFFLINE=1 turns the download off. CT_ENOTFOUND: offline, no server reached, or HTTP
 * 404; CT_EIO: the transfer broke off, another HTTP error, or a wrong MD5. Each message names
 * the places tried, the URL and the reason, and says how to fetch the file by hand. May take
 * minutes (58.9 MB for VGG16's notop file); call it from one thread at a time. */
CT_API ct_status ct_weights_resolve_imagenet(const char *backbone, bool full, char *path, size_t cap);

/* Prints the Python code that builds the Keras model matching a file written by cutune (its
 * layers named as in the file) and loads the file with model.load_weights (export-keras). */
CT_API ct_status ct_weights_keras_code(const char *path, FILE *out);

#ifdef __cplusplus
}
#endif
#endif
