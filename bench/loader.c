/* Loader throughput: images per second delivered by ct_loader for decode-only (streamed from
 * disk, raw uint8 batches), cached (decoded once, float batches with caffe preprocessing) and
 * cached + augmentation (rotation, shifts, zoom, flips; CPU reference), with 1 and 2 worker
 * threads. The dataset is generated here: half 224x224 PNGs and half 224x224 JPEGs (quality 90)
 * in two class folders of a temporary directory (removed at the end). Files are read through the
 * page cache, so "decode-only" measures decoding, not the disk. Prints a markdown table.
 *
 *   bench_loader [IMAGES] [BATCH]      (defaults 256 and 32) */
#define _XOPEN_SOURCE 700 /* mkdtemp, nftw, clock_gettime */

#include <ftw.h>
#include <stdint.h>
#include <stdio.h> /* before jpeglib.h, which uses FILE */

#include <jpeglib.h>
#include <png.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "data/data.h"

#define SIDE 224

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* A photo-like test image: smooth gradients, a few shapes and mild noise (so PNG compresses
 * like a photo does, poorly, and JPEG has detail to code). */
static void make_pixels(uint8_t *px, int seed) {
    uint32_t state = 2463534242u ^ (uint32_t)seed * 2654435761u;
    for (int y = 0; y < SIDE; y++)
        for (int x = 0; x < SIDE; x++) {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            int noise = (int)(state % 9) - 4;
            int cx = x - 112 + seed % 40, cy = y - 112;
            int disc = cx * cx + cy * cy < 60 * 60 ? 60 : 0;
            for (int c = 0; c < 3; c++) {
                int v = (x * (c + 1) + y * (3 - c) + seed * 17) / 2 % 256 + disc + noise;
                px[(y * SIDE + x) * 3 + c] = (uint8_t)(v < 0 ? 0 : (v > 255 ? 255 : v));
            }
        }
}

static int write_png(const char *path, const uint8_t *px) {
    FILE *f = fopen(path, "wb");
    if (f == NULL) return -1;
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        fclose(f);
        return -1;
    }
    png_init_io(png, f);
    png_set_IHDR(png, info, SIDE, SIDE, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    for (int y = 0; y < SIDE; y++) png_write_row(png, (png_const_bytep)(px + y * SIDE * 3));
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    fclose(f);
    return 0;
}

static int write_jpeg(const char *path, const uint8_t *px) {
    FILE *f = fopen(path, "wb");
    if (f == NULL) return -1;
    struct jpeg_compress_struct cinfo;
    struct jpeg_error_mgr jerr;
    cinfo.err = jpeg_std_error(&jerr);
    jpeg_create_compress(&cinfo);
    jpeg_stdio_dest(&cinfo, f);
    cinfo.image_width = SIDE;
    cinfo.image_height = SIDE;
    cinfo.input_components = 3;
    cinfo.in_color_space = JCS_RGB;
    jpeg_set_defaults(&cinfo);
    jpeg_set_quality(&cinfo, 90, TRUE);
    jpeg_start_compress(&cinfo, TRUE);
    while (cinfo.next_scanline < SIDE) {
        JSAMPROW row = (JSAMPROW)(px + cinfo.next_scanline * SIDE * 3);
        jpeg_write_scanlines(&cinfo, &row, 1);
    }
    jpeg_finish_compress(&cinfo);
    jpeg_destroy_compress(&cinfo);
    fclose(f);
    return 0;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

typedef struct mode {
    const char *name;
    bool cache, augment;
    ct_output_kind output;
} mode;

/* Seconds for one epoch (the best of `reps`, after one warm-up epoch). */
static double time_epochs(ct_loader *l, int reps, size_t *n_out) {
    double best = 1e30;
    for (int r = 0; r <= reps; r++) {
        double t0 = now();
        size_t n = 0;
        if (ct_loader_begin_epoch(l, (uint32_t)r) != CT_OK) return -1.0;
        const ct_batch *b;
        while (ct_loader_next(l, &b) == CT_OK && b != NULL) {
            n += (size_t)b->n;
            ct_loader_release(l, b);
        }
        double t = now() - t0;
        if (r > 0 && t < best) best = t;
        *n_out = n;
    }
    return best;
}

int main(int argc, char **argv) {
    const int n_images = argc > 1 ? atoi(argv[1]) : 256;
    const int batch = argc > 2 ? atoi(argv[2]) : 32;
    if (n_images < 2 || batch < 1) {
        fprintf(stderr, "usage: bench_loader [IMAGES >= 2] [BATCH >= 1]\n");
        return 2;
    }
    char dir[] = "/tmp/cutune_bench_loader_XXXXXX";
    if (mkdtemp(dir) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    char path[4096];
    for (int k = 0; k < 2; k++) {
        snprintf(path, sizeof path, "%s/class%d", dir, k);
        mkdir(path, 0755);
    }
    uint8_t *px = malloc(SIDE * SIDE * 3);
    size_t png_bytes = 0, jpg_bytes = 0;
    for (int i = 0; i < n_images; i++) {
        make_pixels(px, i);
        bool png = i % 2 == 0;
        snprintf(path, sizeof path, "%s/class%d/img%04d.%s", dir, i % 4 < 2, i,
                 png ? "png" : "jpg");
        if ((png ? write_png(path, px) : write_jpeg(path, px)) != 0) {
            fprintf(stderr, "cannot write %s\n", path);
            return 1;
        }
        struct stat st;
        stat(path, &st);
        *(png ? &png_bytes : &jpg_bytes) += (size_t)st.st_size;
    }
    free(px);

    ct_dataset *ds = NULL;
    if (ct_dataset_open_folder(&ds, dir, NULL) != CT_OK) {
        fprintf(stderr, "%s\n", ct_last_error());
        return 1;
    }
    printf("# cutune loader throughput\n\n");
    printf(
        "%d images of %dx%d (%d PNG averaging %.0f KB, %d JPEG q90 averaging %.0f KB), batch %d, "
        "%ld online CPUs.\n\n",
        n_images, SIDE, SIDE, (n_images + 1) / 2, png_bytes / 1024.0 / ((n_images + 1) / 2),
        n_images / 2, jpg_bytes / 1024.0 / (n_images / 2), batch, sysconf(_SC_NPROCESSORS_ONLN));
    printf("| mode | threads | img/s | ms/batch |\n|---|---:|---:|---:|\n");
    const mode modes[] = {
        {"decode-only (stream, raw uint8)", false, false, CT_OUTPUT_RAW},
        {"decode + caffe (stream, float)", false, false, CT_OUTPUT_FLOAT},
        {"cached (float, caffe)", true, false, CT_OUTPUT_FLOAT},
        {"cached + augment (float, caffe)", true, true, CT_OUTPUT_FLOAT},
    };
    ct_augment_config aug = {0};
    aug.rotation_range = 10.0f;
    aug.width_shift = (ct_shift_range){CT_SHIFT_FRACTION, 0.1f};
    aug.height_shift = (ct_shift_range){CT_SHIFT_FRACTION, 0.1f};
    aug.zoom_lo = 0.8f;
    aug.zoom_hi = 1.2f;
    aug.horizontal_flip = aug.vertical_flip = true;
    for (size_t m = 0; m < sizeof modes / sizeof modes[0]; m++)
        for (int threads = 1; threads <= 2; threads++) {
            ct_loader_config c;
            ct_loader_config_defaults(&c);
            c.batch_size = batch;
            c.threads = threads;
            c.seed = 1;
            c.image.target_h = c.image.target_w = SIDE;
            c.output = modes[m].output;
            c.cache_bytes = modes[m].cache ? (size_t)1 << 31 : 0;
            c.standardize.preprocess = CT_PREPROCESS_CAFFE;
            ct_loader *l = NULL;
            if (ct_loader_init_training(&l, ds, &c, modes[m].augment ? &aug : NULL) != CT_OK ||
                ct_loader_fill_cache(l) != CT_OK) {
                fprintf(stderr, "%s\n", ct_last_error());
                return 1;
            }
            size_t n = 0;
            double t = time_epochs(l, 3, &n);
            if (t <= 0.0) {
                fprintf(stderr, "%s\n", ct_last_error());
                return 1;
            }
            const double batches = (double)ct_loader_num_batches(l);
            printf("| %s | %d | %.0f | %.1f |\n", modes[m].name, threads, (double)n / t,
                   1e3 * t / batches);
            fflush(stdout);
            ct_loader_free(l);
        }
    printf(
        "\nBest of 3 epochs after a warm-up epoch; the cached modes decode everything first "
        "(ct_loader_fill_cache, not timed).\n");
    ct_dataset_free(ds);
    nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    return 0;
}
