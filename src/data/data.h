/* The data pipeline: datasets, image decoding and resizing, preprocessing, and the threaded loader.
 *
 * A dataset is a list of samples with labels: the images of a Keras flow_from_directory
 * class-folder tree (files decoded on demand), or the records of a Statoil/C-CORE iceberg JSON
 * file (float images held in memory). Splits and subsets are cheap views that share the samples.
 *
 * Images are decoded with libpng, libjpeg-turbo, libtiff and stb_image, converted to the colour
 * mode and resized as Keras's load_img does with PIL (same conversions, same resampling
 * arithmetic), and kept as uint8 HWC. A loader turns a dataset into batches: worker threads
 * decode (into an in-memory cache when the dataset fits a memory budget), a training stream
 * augments (include/cutune/augment.h), every stream applies preprocess_input and the
 * ImageDataGenerator standardisation, and batches arrive in a deterministic order that does not
 * depend on the number of threads.
 *
 * Keras names are kept: class_mode, color_mode, interpolation, keep_aspect_ratio, follow_links,
 * validation_split, subset, rescale, featurewise_center, ... Differences from Keras are listed at
 * each declaration. */
#ifndef CUTUNE_DATA_DATA_H
#define CUTUNE_DATA_DATA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cutune/data.h"
#include "data/augment.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------------------------ */
/* Images                                                                                      */

#define CT_DEFAULT_MAX_PIXELS ((uint64_t)64 << 20) /* 64 Mpx decompression-bomb guard */

/* A decoded image: uint8, (h, w, c) row-major, c = 1 (grey), 3 (RGB) or 4 (RGBA). */
typedef struct ct_image {
    uint8_t *data; /* (h, w, c) */
    int h, w, c;
} ct_image;

/* Channels of a colour mode: 3, 1 or 4. */
int ct_color_mode_channels(ct_color_mode m);

/* Decodes an image held in memory and converts it to `mode` as PIL's convert() does (grey
 * repeated into R, G and B; RGB to grey with ITU-R 601-2 weights; alpha dropped for rgb, 255 when
 * absent for rgba), with the default options otherwise (16-bit grey clipped, as Keras). `name`
 * is used in messages. The format is sniffed from the bytes, as PIL does, not from the name.
 * PNG: every colour type and bit depth, palette, tRNS, interlaced; 16-bit colour keeps its high
 * byte, as PIL reads it; 16-bit grey is PIL's I;16, which Keras's convert('RGB') clips at 255
 * (o->png16 clip, the default) or, with CT_PNG16_SCALE, round(v / 257). JPEG: grey, YCbCr, RGB,
 * CMYK and YCCK (Adobe inverted CMYK converted like PIL); EXIF orientation is not applied (nor
 * by Keras). TIFF (libtiff): the first image, every layout libtiff reads; 16-bit grey as PNG's.
 * BMP (1 to 32 bits, not RLE) and binary PPM/PGM with maxval 255 (stb_image). GIF and WebP are
 * refused with a message that says to convert them. Truncated or corrupt data is an error
 * (CT_EFORMAT), as PIL raises. Pixels equal Pillow's (tests/test_data_formats.c). */
ct_status ct_image_decode(const void *bytes, size_t size, const char *name, ct_color_mode mode,
                          uint64_t max_pixels, ct_image *out);
/* The same with all of load_img's decoding options (color_mode, max_pixels, png16). */
ct_status ct_image_decode_with(const void *bytes, size_t size, const char *name,
                               const ct_image_options *o, ct_image *out);

/* The files of `ds` that are 16-bit grey PNGs, read from each file's IHDR chunk (unreadable
 * files count 0: decoding reports them). In-memory datasets have none. */
size_t ct_dataset_png16_count(const ct_dataset *ds);

/* Says once, on stderr, what the 16-bit grey files of a run become: with clip (Keras's
 * behaviour) that n of them were clipped at 255 and that --png16 scale keeps their range.
 * Nothing when n is 0 or png16 is scale. `what` names the data ("training data", "DIR"). */
void ct_png16_note(size_t n, ct_png16 png16, const char *what);

/* Reads, decodes, converts and resizes one file (Keras load_img). */
ct_status ct_image_load(const char *path, const ct_image_options *o, ct_image *out);

/* Resizes to h x w with PIL's Image.resize arithmetic (nearest: PIL's pixel choice; the others:
 * PIL's separable filters with its fixed-point rounding, antialiased when shrinking; RGBA is
 * resized premultiplied as PIL does). box: the source region {x0, y0, x1, y1} in pixels, or NULL
 * for the whole image. */
ct_status ct_image_resize(const ct_image *in, int h, int w, ct_interpolation interp,
                          const float box[4], ct_image *out);

/* Keras's keep_aspect_ratio crop box for an in_h x in_w image resized to h x w. */
void ct_image_crop_box(int in_h, int in_w, int h, int w, float box[4]);

void ct_image_free(ct_image *img);

/* ------------------------------------------------------------------------------------------ */
/* Preprocessing: ImageDataGenerator.standardize                                              */

/* Checks the settings against a channel count (caffe and torch need 3 channels). */
ct_status ct_standardize_check(const ct_standardize *s, int c);

/* preprocess_input over n pixels of c channels, in place (Keras's float32 arithmetic). */
void ct_preprocess_input(float *x, size_t n_pixels, int c, ct_preprocess_mode mode);

/* Applies `s` to one (h, w, c) image in place. Samplewise statistics are over the whole image
 * (Keras: np.mean(x), np.std(x) + 1e-6), accumulated in double. */
void ct_standardize_image(float *x, int h, int w, int c, const ct_standardize *s);

/* One training sample as the loader makes it and as the backends' augment_standardize op makes
 * it: uint8 (`u8`) or float (`f32`, the other NULL) pixels to float, augmented with `aug` for
 * (seed, epoch, sample) when `aug` is not NULL and ct_augment_enabled, then standardised with
 * `s`. `sample` is the sample's index in its dataset (ct_batch.index). `scratch` holds (h, w, c)
 * floats and is used for uint8 input with augmentation. `out` is (h, w, c) and must not overlap
 * the input. */
void ct_augment_standardize_image(float *out, const uint8_t *u8, const float *f32, int h, int w,
                                  int c, const ct_augment_config *aug, const ct_standardize *s,
                                  uint64_t seed, uint32_t epoch, uint32_t sample, float *scratch);

/* Checks the arguments of a backend's augment_standardize op (backend.h): sizes, exactly one
 * input, a known fill mode, and ct_standardize_check. Both backends call it first. */
ct_status ct_augment_standardize_check(const uint8_t *in_u8, const float *in_f32, int n, int h,
                                       int w, int c, const ct_augment_config *aug,
                                       const ct_standardize *s);
/* Checks the arguments of a backend's flip op: the batch shape, and a buffer when n > 0. */
ct_status ct_flip_check(const float *x, int n, int h, int w, int c);

/* ------------------------------------------------------------------------------------------ */
/* Datasets                                                                                    */

/* Every image under `dir`, unlabelled, as test images are laid out: the image files directly in
 * `dir` (byte order of their names), then each subfolder walked as flow_from_directory walks a
 * class folder (class_mode=None: its files listed, the folder names ignored), names relative to
 * `dir` ("a.png", "unknown/b.png"). No class names. Errors as ct_dataset_open_folder's, but a
 * folder without subfolders is a flat set of images, not an error. */
ct_status ct_dataset_open_images(ct_dataset **out, const char *dir, const ct_folder_options *o);

/* ---- views, and what the loaders read of a dataset ---- */

/* A view of the samples idx[0..n) of `ds` (e.g. one k-fold), in that order, with `role`. */
ct_status ct_dataset_subset(const ct_dataset *ds, const size_t *idx, size_t n, ct_role role,
                            ct_dataset **out);
ct_role ct_dataset_role(const ct_dataset *ds);
void ct_dataset_set_role(ct_dataset *ds, ct_role role);
/* The file of sample i, or NULL for in-memory samples. */
const char *ct_dataset_path(const ct_dataset *ds, size_t i);
/* Index of sample i in the dataset it was opened as (stable across views). */
size_t ct_dataset_origin(const ct_dataset *ds, size_t i);
const float *ct_dataset_aux(const ct_dataset *ds, size_t i);
/* In-memory float images: their shape, and sample i's pixels (h, w, c); NULL for files. */
bool ct_dataset_in_memory(const ct_dataset *ds, int *h, int *w, int *c);
const float *ct_dataset_pixels(const ct_dataset *ds, size_t i);
float ct_dataset_na_fill(const ct_dataset *ds);

/* ------------------------------------------------------------------------------------------ */
/* Loader                                                                                      */

/* What the loader writes into a batch. */
typedef enum {
    CT_OUTPUT_FLOAT = 0, /* x: augmented (training stream) and standardised float images */
    CT_OUTPUT_RAW        /* x_u8 (file datasets) or x (in-memory float datasets): the decoded,
                            resized pixels, untouched, for a device-side augment kernel */
} ct_output_kind;

/* One batch. The loader fills the first n rows of each buffer; buffers given by the caller are
 * used as they are (e.g. pinned host memory), otherwise the loader allocates them. */
typedef struct ct_batch {
    float *x;        /* (batch_size, H, W, C) */
    uint8_t *x_u8;   /* (batch_size, H, W, C): CT_OUTPUT_RAW of a file dataset */
    float *y;        /* (batch_size, K) categorical, (batch_size) binary / sparse, NULL none */
    float *aux;      /* (batch_size, aux_dim) or NULL when aux_dim = 0 */
    uint32_t *index; /* (batch_size) sample indices into the dataset (names, augment draws) */
    int n;           /* rows filled: batch_size, fewer in the last batch or after skips */
    uint32_t epoch;
    uint32_t number; /* batch number within the epoch */
} ct_batch;

typedef struct ct_loader_config {
    int batch_size; /* 32 */
    bool shuffle;   /* Philox Fisher-Yates per epoch */
    uint64_t seed;  /* shuffle and augmentation */
    int threads;    /* worker threads (>= 1) */
    ct_class_mode class_mode;
    ct_output_kind output;
    ct_image_options image; /* ignored for in-memory datasets (their own size) */
    ct_standardize standardize;
    size_t cache_bytes; /* cache decoded images when they fit; 0: never cache */
    bool skip_bad;      /* skip undecodable files (and count them) instead of failing */
    int shard_rank;     /* data parallel: this rank's slice of every global batch of */
    int shard_count;    /*   batch_size (ct_shard_rows); 0 or 1: the whole batch */
    ct_batch *buffers;  /* optional caller buffers, n_buffers of them */
    int n_buffers;      /* batches in flight (bounded prefetch queue); 0: threads + 1 */
} ct_loader_config;

/* batch 32, shuffle, seed 0, 2 threads, categorical, float output, Keras image defaults,
 * 2 GiB cache budget. */
void ct_loader_config_defaults(ct_loader_config *c);

typedef struct ct_loader ct_loader;

/* A loader for evaluation or prediction: never augments. `ds` must outlive the loader. */
ct_status ct_loader_init(ct_loader **out, const ct_dataset *ds, const ct_loader_config *cfg);

/* A loader for the training stream: augments every image with `aug` (may be NULL). Refuses a
 * dataset whose role is validation or test: augmentation belongs to training data only. */
ct_status ct_loader_init_training(ct_loader **out, const ct_dataset *ds,
                                  const ct_loader_config *cfg, const ct_augment_config *aug);

/* Starts an epoch (aborting one in progress): computes the order and lets the workers run.
 * ct_loader_begin_epoch_at resumes at batch `first_batch` of that epoch. */
ct_status ct_loader_begin_epoch(ct_loader *l, uint32_t epoch);
ct_status ct_loader_begin_epoch_at(ct_loader *l, uint32_t epoch, uint32_t first_batch);

/* The next batch of the epoch, in order, or *out = NULL at the end of the epoch. The batch stays
 * valid until ct_loader_release. A failed file stops the epoch with its message (unless
 * skip_bad), at the batch that holds it; later calls return the same error until the next
 * begin_epoch. */
ct_status ct_loader_next(ct_loader *l, const ct_batch **out);
void ct_loader_release(ct_loader *l, const ct_batch *b);

/* Decodes every image into the cache now (parallel); a no-op when not caching. */
ct_status ct_loader_fill_cache(ct_loader *l);

/* Batches of an epoch: global batches, the same on every rank (a rank's share of the last may
 * be empty: ct_loader_next then gives a batch with n = 0). */
size_t ct_loader_num_batches(const ct_loader *l);
/* This rank's samples of an epoch (the dataset's count on one rank). */
size_t ct_loader_num_samples(const ct_loader *l);
bool ct_loader_caching(const ct_loader *l);
/* The sample order of the current epoch (ct_dataset indices), length ct_dataset_count. */
const uint32_t *ct_loader_order(const ct_loader *l);
/* The shape of x: H, W, C; K label columns per sample (0 for none). */
void ct_loader_shape(const ct_loader *l, int *h, int *w, int *c, int *k);
/* Distinct files found bad so far (skip_bad), with their messages. */
size_t ct_loader_bad_count(const ct_loader *l);
const char *ct_loader_bad_message(const ct_loader *l, size_t i);
size_t ct_loader_bad_sample(const ct_loader *l, size_t i);

/* Featurewise statistics: per-channel mean and std of the (unaugmented) images of the loader's
 * dataset after preprocess_input, rescale and samplewise steps - the values featurewise_center
 * and featurewise_std_normalization are applied to. (Keras's fit() takes an array the user
 * loaded, with rescale only; cutune computes them where they are used.) Accumulated in double. */
ct_status ct_loader_feature_stats(const ct_dataset *ds, const ct_loader_config *cfg, float mean[4],
                                  float std[4]);

/* Stops the workers (mid-epoch is fine) and frees everything the loader allocated. */
void ct_loader_free(ct_loader *l);

/* ------------------------------------------------------------------------------------------ */
/* Shards: a data-parallel rank's part of each global batch (shard.c)                          */

/* The rows [*first, *first + result) of a global batch of g samples that rank `rank` of
 * `count` takes: floor(rank * g / count) up to floor((rank + 1) * g / count), so shares differ
 * by one sample at most and their union, in rank order, is the batch. count <= 1: all of it.
 * `first` may be NULL. */
size_t ct_shard_rows(size_t g, int rank, int count, size_t *first);
/* This rank's samples of an epoch of n samples in global batches of B. */
size_t ct_shard_count_samples(size_t n, size_t B, int rank, int count);
/* dst gets this rank's samples from the global order (n, batches of B), batch by batch. */
void ct_shard_take(uint32_t *dst, const uint32_t *global, size_t n, size_t B, int rank,
                   int count);

/* ------------------------------------------------------------------------------------------ */
/* Names, for command lines                                                                    */

ct_status ct_parse_color_mode(const char *s, ct_color_mode *out);
ct_status ct_parse_interpolation(const char *s, ct_interpolation *out);
ct_status ct_parse_class_mode(const char *s, ct_class_mode *out);
ct_status ct_parse_preprocess(const char *s, ct_preprocess_mode *out);
/* The words the parsers read ("none", "caffe", "tf" or "torch" for the preprocessing), as a
 * run's config.txt records them; "unknown" for a value out of range. ct_na_policy_name has
 * none for CT_NA_VALUE (the number is the word). */
const char *ct_preprocess_name(ct_preprocess_mode m);
const char *ct_color_mode_name(ct_color_mode m);
const char *ct_interpolation_name(ct_interpolation m);
const char *ct_class_mode_name(ct_class_mode m);
const char *ct_fill_mode_name(ct_fill_mode m);
const char *ct_na_policy_name(ct_na_policy p);
/* "clip" or "scale" (--png16). */
const char *ct_png16_name(ct_png16 m);
ct_status ct_parse_png16(const char *s, ct_png16 *out);
ct_status ct_parse_fill_mode(const char *s, ct_fill_mode *out);
/* "mean", "median", "ffill", "error", or a number (CT_NA_VALUE with *value set). */
ct_status ct_parse_na_policy(const char *s, ct_na_policy *out, float *value);
/* Keras's shift range text: "0.1" (fraction), "12.0" (pixels), "12" (integer choice). */
ct_status ct_parse_shift_range(const char *s, ct_shift_range *out);
/* Keras's zoom_range: "0.2" gives [0.8, 1.2]; "0.8,1.2" is taken as is. */
ct_status ct_parse_zoom_range(const char *s, float *lo, float *hi);
/* "lo,hi", e.g. brightness_range "0.8,1.2". */
ct_status ct_parse_range(const char *s, float *lo, float *hi);

#ifdef __cplusplus
}
#endif
#endif
