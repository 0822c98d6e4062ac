/* State and helpers shared by the files of src/data: the sample store behind dataset views, the
 * per-format decoders, and small utilities. */
#ifndef CUTUNE_DATA_INTERNAL_H
#define CUTUNE_DATA_INTERNAL_H

#include <stdatomic.h>

#include "data/data.h"

/* The samples a dataset was opened with. Views (splits, subsets) share one store. */
typedef struct ct_data_store {
    atomic_int refs;
    bool in_memory; /* iceberg: float pixels below; folders: files */
    int n_classes;
    char **class_names; /* (n_classes) */
    size_t n;
    char **paths;    /* (n) full paths, NULL in memory */
    char **names;    /* (n) Keras filenames or ids */
    int32_t *labels; /* (n) class index, -1 unlabelled */
    bool labelled;
    int aux_dim;
    float *aux;    /* (n, aux_dim) */
    int h, w, c;   /* in-memory image shape */
    float *pixels; /* (n, h, w, c) in memory */
    size_t n_ignored;
    char **ignored; /* (n_ignored) relative names of non-image files */
    size_t na_count;
    float na_fill;
} ct_data_store;

struct ct_dataset {
    ct_data_store *store;
    size_t n;
    size_t *idx;          /* (n) store indices */
    size_t *class_counts; /* (n_classes) in this view */
    ct_role role;
};

ct_data_store *ct_data_store_new(void);
void ct_data_store_unref(ct_data_store *s);
/* A view of idx[0..n) (copied) over `s`, taking a new reference to it. */
ct_status ct_data_view(ct_data_store *s, const size_t *idx, size_t n, ct_role role,
                       ct_dataset **out);

/* Reads a whole file. Messages name the file. */
ct_status ct_data_read_file(const char *path, uint8_t **data, size_t *size);

/* Decoders to the file's own layout: c = 1 (grey), 2 (grey + alpha), 3 (RGB) or 4 (RGBA),
 * 8 bits per sample; png16 says how 16-bit grey becomes 8-bit. They check w * h against
 * max_pixels from the header before allocating. */
ct_status ct_data_decode_png(const uint8_t *bytes, size_t size, const char *name,
                             uint64_t max_pixels, ct_png16 png16, ct_image *out);
ct_status ct_data_decode_tiff(const uint8_t *bytes, size_t size, const char *name,
                              uint64_t max_pixels, ct_png16 png16, ct_image *out);
/* BMP (bmp true) or binary PPM/PGM through stb_image. */
ct_status ct_data_decode_stb(const uint8_t *bytes, size_t size, const char *name, bool bmp,
                             uint64_t max_pixels, ct_image *out);
ct_status ct_data_decode_jpeg(const uint8_t *bytes, size_t size, const char *name,
                              uint64_t max_pixels, ct_image *out);

/* The guard both decoders apply. */
ct_status ct_data_check_pixels(const char *name, uint64_t w, uint64_t h, uint64_t max_pixels);

/* PIL's ITU-R 601-2 luma with rounding: (19595 R + 38470 G + 7471 B + 0x8000) >> 16. */
static inline uint8_t ct_data_luma(uint8_t r, uint8_t g, uint8_t b) {
    return (
        uint8_t)(((uint32_t)r * 19595u + (uint32_t)g * 38470u + (uint32_t)b * 7471u + 0x8000u) >>
                 16);
}

/* PIL's MULDIV255: a * b / 255 rounded, in integers. */
static inline uint32_t ct_data_muldiv255(uint32_t a, uint32_t b) {
    uint32_t t = a * b + 128u;
    return ((t >> 8) + t) >> 8;
}

/* Runs fn(ctx, i, thread) for i in [0, n) on `threads` threads (the caller is thread 0). */
typedef void (*ct_data_task)(void *ctx, size_t i, int thread);
ct_status ct_data_parallel_for(size_t n, int threads, ct_data_task fn, void *ctx);

/* Byte-order string comparison for qsort of char *. */
int ct_data_strcmp_ptr(const void *a, const void *b);

char *ct_data_strdup(const char *s);

#endif
