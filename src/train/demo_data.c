/* The demo's data: small, learnable, generated on the spot so the main job needs no download.
 *
 * MRI-like slices: a bright elliptical "brain" with a darker rim, speckle noise, and two dark
 * ventricles in the middle that are clearly larger in the "dementia" class than in the "normal"
 * one (enlarged ventricles are the textbook sign). Iceberg-like radar records: two 75x75 bands in
 * dB with sea clutter and one bright target, compact and round for icebergs, elongated with a
 * brighter cross-polar return for ships, and an incidence angle. Everything is drawn from the
 * counter-based generator keyed by the seed, so the same seed writes the same files. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include <errno.h>
#include <math.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../core/atomic.h"
#include "core/rng.h"
#include "train/run.h"

#define DEMO_PURPOSE (((uint32_t)CT_RNG_TEST << 16) | 0x0de0u)

static float uni(uint64_t seed, uint32_t item, uint32_t stream, uint32_t draw) {
    return ct_rng_unit(ct_rng_word(seed, DEMO_PURPOSE, stream, item, draw));
}

static ct_status make_dir(const char *path) {
    if (mkdir(path, 0777) != 0 && errno != EEXIST)
        return ct_error(CT_EIO, "%s: cannot create: %s", path, strerror(errno));
    return CT_OK;
}

static ct_status write_gray_png(const char *path, const unsigned char *px, int size) {
    ct_atomic_file a;
    ct_status s = ct_atomic_open(&a, path, "wb");
    if (s != CT_OK) return s;
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png != NULL ? png_create_info_struct(png) : NULL;
    if (png == NULL || info == NULL || setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        ct_atomic_abort(&a);
        return ct_error(CT_EIO, "%s: libpng failed while writing", path);
    }
    png_init_io(png, a.f);
    png_set_IHDR(png, info, size, size, 8, PNG_COLOR_TYPE_GRAY, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    for (int y = 0; y < size; y++) png_write_row(png, (png_bytep)(px + (size_t)y * size));
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    return ct_atomic_commit(&a);
}

/* One slice: item selects the random draws, dementia enlarges the ventricles. */
static void mri_slice(unsigned char *px, int size, uint64_t seed, uint32_t item, bool dementia) {
    const float c = (size - 1) / 2.0f;
    const float rx = size * (0.36f + 0.06f * uni(seed, item, 1, 0));
    const float ry = size * (0.42f + 0.05f * uni(seed, item, 1, 1));
    const float cx = c + size * 0.04f * (uni(seed, item, 1, 2) - 0.5f);
    const float cy = c + size * 0.04f * (uni(seed, item, 1, 3) - 0.5f);
    /* Ventricle half-width: 5-8% of the slice when normal, 12-16% with dementia. */
    const float vr = size * (dementia ? 0.12f + 0.04f * uni(seed, item, 1, 4)
                                      : 0.05f + 0.03f * uni(seed, item, 1, 4));
    const float vh = size * (0.10f + 0.04f * uni(seed, item, 1, 5));
    for (int y = 0; y < size; y++) {
        for (int x = 0; x < size; x++) {
            float dx = (x - cx) / rx, dy = (y - cy) / ry, r2 = dx * dx + dy * dy;
            float v = 10.0f;
            if (r2 < 1.0f) {
                v = r2 > 0.8f ? 120.0f : 170.0f; /* rim and tissue */
                for (int side = -1; side <= 1; side += 2) {
                    float ex = (x - (cx + side * vr * 0.9f)) / (vr * 0.8f), ey = (y - cy) / vh;
                    if (ex * ex + ey * ey < 1.0f) v = 40.0f;
                }
            }
            v += 40.0f * (uni(seed, item, 2, (uint32_t)(y * size + x)) - 0.5f);
            px[(size_t)y * size + x] = (unsigned char)fminf(fmaxf(v, 0.0f), 255.0f);
        }
    }
}

static ct_status write_mri(const char *dir, const char *split, int per_class, int size,
                           uint64_t seed, uint32_t first_item) {
    static const char *const classes[2] = {"dementia", "normal"};
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", dir, split);
    ct_status s = make_dir(path);
    unsigned char *px = malloc((size_t)size * size);
    if (px == NULL) return ct_error(CT_ENOMEM, "cannot allocate a %dx%d slice", size, size);
    for (int k = 0; k < 2 && s == CT_OK; k++) {
        snprintf(path, sizeof path, "%s/%s/%s", dir, split, classes[k]);
        if ((s = make_dir(path)) != CT_OK) break;
        for (int i = 0; i < per_class && s == CT_OK; i++) {
            uint32_t item = first_item + (uint32_t)(k * per_class + i);
            mri_slice(px, size, seed, item, k == 0);
            snprintf(path, sizeof path, "%s/%s/%s/slice_%04d.png", dir, split, classes[k], i);
            s = write_gray_png(path, px, size);
        }
    }
    free(px);
    return s;
}

/* One radar record as JSON, bands in dB. */
static void iceberg_record(FILE *f, uint64_t seed, uint32_t item, bool iceberg, bool first,
                           bool labelled) {
    const int n = 75;
    const float c = 37.0f;
    const float tx = c + 16.0f * (uni(seed, item, 3, 0) - 0.5f);
    const float ty = c + 16.0f * (uni(seed, item, 3, 1) - 0.5f);
    const float angle_dir = 3.14159265f * uni(seed, item, 3, 2);
    const float len = iceberg ? 3.0f + 1.5f * uni(seed, item, 3, 3) : 9.0f + 4.0f * uni(seed, item, 3, 3);
    const float wid = iceberg ? 3.0f + 1.5f * uni(seed, item, 3, 4) : 2.0f + 0.8f * uni(seed, item, 3, 4);
    const float inc = 30.0f + 15.0f * uni(seed, item, 3, 5);
    fprintf(f, "%s{\"id\": \"demo%05u\", \"band_1\": [", first ? "" : ",\n", item);
    for (int band = 0; band < 2; band++) {
        if (band == 1) fputs("], \"band_2\": [", f);
        for (int y = 0; y < n; y++) {
            for (int x = 0; x < n; x++) {
                float dx = x - tx, dy = y - ty;
                float u = dx * cosf(angle_dir) + dy * sinf(angle_dir);
                float v = -dx * sinf(angle_dir) + dy * cosf(angle_dir);
                float t = expf(-0.5f * (u * u / (len * len) + v * v / (wid * wid)));
                float sea = band == 0 ? -24.0f : -30.0f;
                float gain = band == 0 ? 18.0f : (iceberg ? 8.0f : 14.0f);
                float db = sea + gain * t + 3.0f * (uni(seed, item, 4 + band, (uint32_t)(y * n + x)) - 0.5f);
                fprintf(f, "%s%.4f", y == 0 && x == 0 ? "" : ", ", db);
            }
        }
    }
    fputs("], \"inc_angle\": ", f);
    if (uni(seed, item, 3, 6) < 0.05f) fputs("\"na\"", f); /* a few missing angles, as in train.json */
    else fprintf(f, "%.4f", inc);
    if (labelled) fprintf(f, ", \"is_iceberg\": %d", iceberg ? 1 : 0);
    fputc('}', f);
}

static ct_status write_iceberg(const char *path, int records, uint64_t seed, uint32_t first_item,
                               bool labelled) {
    ct_atomic_file a;
    ct_status s = ct_atomic_open(&a, path, "w");
    if (s != CT_OK) return s;
    fputc('[', a.f);
    for (int i = 0; i < records; i++) {
        uint32_t item = first_item + (uint32_t)i;
        iceberg_record(a.f, seed, item, uni(seed, item, 3, 7) < 0.5f, i == 0, labelled);
    }
    fputs("]\n", a.f);
    return ct_atomic_commit(&a);
}

ct_status ct_demo_generate(const char *dir, int per_class, int size, uint64_t seed) {
    if (per_class < 1 || size < 32)
        return ct_error(CT_EINVAL, "demo data: at least 1 image per class of at least 32x32");
    ct_status s = make_dir(dir);
    if (s == CT_OK) s = write_mri(dir, "train", per_class, size, seed, 0);
    if (s == CT_OK) s = write_mri(dir, "val", per_class / 4 + 1, size, seed, 100000);
    char path[4200];
    snprintf(path, sizeof path, "%s/iceberg_train.json", dir);
    if (s == CT_OK) s = write_iceberg(path, 2 * per_class, seed, 200000, true);
    snprintf(path, sizeof path, "%s/iceberg_test.json", dir);
    if (s == CT_OK) s = write_iceberg(path, per_class / 2 + 1, seed, 300000, false);
    return s;
}
