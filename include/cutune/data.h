/* Datasets as Keras's data loaders see them: the class folders of flow_from_directory and the
 * Statoil/C-CORE iceberg JSON file, their splits, and the settings that say how images are read
 * (load_img's), labelled (class_mode) and preprocessed (preprocess_input and
 * ImageDataGenerator.standardize).
 *
 * A dataset is a list of samples with labels: the images of a class-folder tree (files decoded
 * on demand) or the records of an iceberg file (float images held in memory). Splits are cheap
 * views that share the samples. Training, evaluation and prediction open their data
 * themselves (train.h); these calls are for looking at data first, as `cutune scan` does. */
#ifndef CUTUNE_DATA_H
#define CUTUNE_DATA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cutune/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- images ---- */

typedef enum { CT_COLOR_RGB = 0, CT_COLOR_GRAYSCALE, CT_COLOR_RGBA } ct_color_mode;

/* PIL's resampling filters under Keras's names. nearest is Keras's default; box is "area". */
typedef enum {
    CT_INTERP_NEAREST = 0,
    CT_INTERP_BILINEAR,
    CT_INTERP_BICUBIC,
    CT_INTERP_LANCZOS,
    CT_INTERP_BOX,
    CT_INTERP_HAMMING
} ct_interpolation;

/* How 16-bit grey images (PNG, TIFF) become 8-bit. Keras's load_img does img.convert('RGB'),
 * and Pillow's conversion of its 16-bit grey mode (I;16) clips every value above 255 to 255:
 * clip is that, for parity. scale keeps the range: round(v / 257), libpng's
 * png_set_scale_16 arithmetic (0..65535 onto 0..255). 16-bit colour is the high byte either
 * way, as Pillow reads it. */
typedef enum { CT_PNG16_CLIP = 0, CT_PNG16_SCALE } ct_png16;

/* How files become images: Keras load_img's arguments. */
typedef struct ct_image_options {
    int target_h, target_w; /* 0, 0: keep the decoded size */
    ct_color_mode color_mode;
    ct_interpolation interpolation;
    bool keep_aspect_ratio; /* centre-crop to the target aspect ratio, then resize */
    uint64_t max_pixels;    /* refuse larger images (read from the header); 0: default */
    ct_png16 png16;         /* 16-bit grey: clip (Keras, the default) or scale */
} ct_image_options;

/* Keras's defaults: 256x256, rgb, nearest, no crop, 64 Mpx. */
CT_API void ct_image_options_defaults(ct_image_options *o);

/* ---- preprocessing ---- */

/* Keras's imagenet_utils.preprocess_input modes (the preprocessing_function). */
typedef enum {
    CT_PREPROCESS_NONE = 0,
    CT_PREPROCESS_CAFFE, /* RGB -> BGR, minus [103.939, 116.779, 123.68]: VGG16, ResNet50 */
    CT_PREPROCESS_TF,    /* x / 127.5 - 1 */
    CT_PREPROCESS_TORCH  /* x / 255, minus [0.485, 0.456, 0.406], over [0.229, 0.224, 0.225] */
} ct_preprocess_mode;

/* preprocess_input (the preprocessing_function), then rescale, then samplewise, then featurewise
 * standardisation, in Keras's order. A zero-initialised struct does nothing. */
typedef struct ct_standardize {
    ct_preprocess_mode preprocess;
    float rescale; /* 0: none (Keras rescale=None) */
    bool samplewise_center, samplewise_std_normalization;
    bool featurewise_center, featurewise_std_normalization;
    float mean[4], std[4]; /* (C): from ct_loader_feature_stats */
} ct_standardize;

/* ---- labels ---- */

typedef enum {
    CT_CLASS_CATEGORICAL = 0,
    CT_CLASS_BINARY,
    CT_CLASS_SPARSE,
    CT_CLASS_NONE
} ct_class_mode;

/* ---- datasets ---- */

typedef struct ct_dataset ct_dataset;

/* What a dataset is for. A loader with augmentation refuses validation and test datasets. */
typedef enum {
    CT_ROLE_ANY = 0, /* not said: a loader may augment it */
    CT_ROLE_TRAINING,
    CT_ROLE_VALIDATION,
    CT_ROLE_TEST
} ct_role;

/* Class-folder options: flow_from_directory's follow_links and classes. */
typedef struct ct_folder_options {
    bool follow_links;          /* descend into symlinked subfolders (Keras: False) */
    const char *const *classes; /* optional explicit class list, in index order */
    int n_classes;
    ct_role role;
} ct_folder_options;

/* Opens a flow_from_directory tree: dir/<class>/.../<file>. Classes are the sorted names of the
 * subfolders (symlinked ones included, hidden ones too, as Keras does); each class folder is
 * walked recursively, folders in byte order of their paths and files in byte order within a
 * folder (Python's sorted(os.walk(...)) and sorted(files)); a file is an image when its name ends,
 * case-insensitively, with png, jpg, jpeg, bmp, ppm, tif or tiff (Keras's str.endswith test, so no
 * dot is required); other files are recorded as ignored. Samples are ordered class by class.
 * Errors: a missing path (CT_ENOTFOUND), a path that is not a folder, an unreadable folder
 * (CT_EIO, naming it), no class subfolder (CT_EFORMAT). Files are not opened here. */
CT_API ct_status ct_dataset_open_folder(ct_dataset **out, const char *dir, const ct_folder_options *o);

/* How a missing incidence angle ("na") is filled. */
typedef enum {
    CT_NA_MEAN = 0, /* mean of the file's numeric angles */
    CT_NA_MEDIAN,   /* their median (mean of the middle two for an even count) */
    CT_NA_FFILL,    /* previous record's angle, as pandas ffill (leading "na": next angle) */
    CT_NA_VALUE,    /* na_value, e.g. the training set's mean for a test file */
    CT_NA_ERROR     /* refuse the file */
} ct_na_policy;

typedef struct ct_iceberg_options {
    ct_na_policy na_policy;
    float na_value; /* CT_NA_VALUE */
    ct_role role;
} ct_iceberg_options;

/* Opens a Statoil/C-CORE iceberg file: a JSON array of records {id, band_1, band_2 (5625 numbers
 * each: 75x75 row-major dB), inc_angle (number or "na"), is_iceberg (0/1, training files only)}.
 * Images are 75x75x3 float: [band_1, band_2, (band_1 + band_2) / 2]; the angle is the auxiliary
 * scalar; is_iceberg is the label (classes "ship" 0, "iceberg" 1); a file without is_iceberg is
 * unlabelled (a test file: predictions go by id). The file is mapped, not read, and each record
 * is parsed by cJSON on its own, so memory is the images (67.5 KB per record: 108 MB for the
 * 1,604 training records, 569 MB for the 8,424 test records) plus one record's cJSON tree.
 * Errors name the record index and id: not an object, missing field, wrong type, wrong band
 * length, non-finite number, is_iceberg other than 0/1, labels on some records only, "na" under
 * CT_NA_ERROR, JSON syntax (with the byte offset). */
CT_API ct_status ct_dataset_open_iceberg(ct_dataset **out, const char *path, const ct_iceberg_options *o);

/* Opens a folder tree or, for a regular file, an iceberg JSON file with default options. */
CT_API ct_status ct_dataset_open(ct_dataset **out, const char *path);

/* How a validation subset is chosen. */
typedef enum {
    /* flow_from_directory's rule: within each class (in the class's sorted file order), the
     * first int(n * split) files are validation and the rest training. For an iceberg file,
     * NumpyArrayIterator's rule: the first int(N * split) records of the file. */
    CT_SPLIT_KERAS = 0,
    /* Per class, a seeded random choice of int(n * split) samples (Philox, CT_RNG_SHUFFLE purpose
     * word low bits 1, outer = class); both subsets keep the dataset order. */
    CT_SPLIT_STRATIFIED
} ct_split_method;

/* Splits `ds` into training and validation views (roles set accordingly); 0 < split < 1. */
CT_API ct_status ct_dataset_split(const ct_dataset *ds, double split, ct_split_method method,
                           uint64_t seed, ct_dataset **training, ct_dataset **validation);


CT_API void ct_dataset_free(ct_dataset *ds);

CT_API size_t ct_dataset_count(const ct_dataset *ds);
CT_API int ct_dataset_num_classes(const ct_dataset *ds);
CT_API const char *ct_dataset_class_name(const ct_dataset *ds, int k);
/* Samples of class k in this view. */
CT_API size_t ct_dataset_class_count(const ct_dataset *ds, int k);
/* Whether samples carry labels (false for an iceberg test file). */
CT_API bool ct_dataset_labelled(const ct_dataset *ds);
/* Class index of sample i, or -1 when unlabelled. */
CT_API int ct_dataset_label(const ct_dataset *ds, size_t i);
/* Keras's filenames entry ("cat/sub/img.png") or the iceberg id. */
CT_API const char *ct_dataset_name(const ct_dataset *ds, size_t i);
/* Auxiliary scalars per sample (1 for iceberg: the angle; 0 for folders). */
CT_API int ct_dataset_aux_dim(const ct_dataset *ds);
/* Iceberg: records whose angle was "na", and the value that filled them (NAN if none). */
CT_API size_t ct_dataset_na_count(const ct_dataset *ds);
/* Folders: files skipped for their extension (relative names, walk order). */
CT_API size_t ct_dataset_ignored_count(const ct_dataset *ds);
CT_API const char *ct_dataset_ignored(const ct_dataset *ds, size_t i);
/* Keras's message for this view: "Found N images belonging to K classes." */
CT_API void ct_dataset_found_message(const ct_dataset *ds, char *buf, size_t size);

/* Decodes every file of `ds` as a loader would (threads workers, 0: 1) and calls `bad` for each
 * that fails, in dataset order, with its index and the message. Returns the number of bad files
 * in *n_bad. In-memory datasets have nothing to check. */
CT_API ct_status ct_dataset_check(const ct_dataset *ds, const ct_image_options *o, int threads,
                           void (*bad)(void *user, size_t i, const char *message), void *user,
                           size_t *n_bad);

#ifdef __cplusplus
}
#endif
#endif
