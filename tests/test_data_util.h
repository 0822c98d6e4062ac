/* Helpers for the data-pipeline tests: temporary folders, images written with libpng and
 * libjpeg in every format the decoders must read, the pattern shared with
 * tests/reference/data_reference.py, and fixture reading. Header-only (static functions), so
 * each test_data_*.c program includes what it uses. */
#ifndef CUTUNE_TEST_DATA_UTIL_H
#define CUTUNE_TEST_DATA_UTIL_H

#define _XOPEN_SOURCE 700 /* mkdtemp, nftw */

#include <criterion/criterion.h>
#include <errno.h>
#include <ftw.h>
#include <jpeglib.h>
#include <png.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util.h"

/* The uint8 pattern of data_reference.py's pattern_u8 (alpha cycles through 0..255). */
static inline uint8_t td_pattern_at(int y, int x, int ch, int c) {
    static const uint8_t alpha[5] = {0, 64, 128, 200, 255};
    if (c == 4 && ch == 3) return alpha[(x * 3 + y) % 5];
    return (uint8_t)((x * 37 + y * 91 + ch * 53 + ((x * y) % 17) * 7) & 255);
}

__attribute__((unused)) static uint8_t *td_pattern(int h, int w, int c) {
    uint8_t *p = malloc((size_t)h * w * c);
    cr_assert_not_null(p);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int ch = 0; ch < c; ch++)
                p[((size_t)y * w + x) * c + ch] = td_pattern_at(y, x, ch, c);
    return p;
}

/* A fresh folder under /tmp; removed by td_rmrf. */
__attribute__((unused)) static char *td_tmpdir(void) {
    char *t = strdup("/tmp/cutune_data_XXXXXX");
    cr_assert_not_null(mkdtemp(t), "mkdtemp: %s", strerror(errno));
    return t;
}

static int td_rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st;
    (void)flag;
    (void)ftw;
    chmod(path, 0700); /* so a folder made unreadable on purpose can be removed */
    return remove(path);
}

__attribute__((unused)) static void td_rmrf(char *path) {
    if (path == NULL) return;
    nftw(path, td_rm_one, 16, FTW_DEPTH | FTW_PHYS);
    free(path);
}

/* path = dir/rel; creates the parent folders of rel. Returns a static buffer. */
__attribute__((unused)) static const char *td_path(const char *dir, const char *rel) {
    static char buf[4096];
    snprintf(buf, sizeof buf, "%s/%s", dir, rel);
    for (char *p = buf + strlen(dir) + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        mkdir(buf, 0755);
        *p = '/';
    }
    return buf;
}

__attribute__((unused)) static void td_write(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f, "%s: %s", path, strerror(errno));
    if (n > 0) cr_assert_eq(fwrite(data, 1, n, f), n);
    fclose(f);
}

__attribute__((unused)) static uint8_t *td_read(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "%s: %s", path, strerror(errno));
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc((size_t)len + 1);
    cr_assert_eq(fread(b, 1, (size_t)len, f), (size_t)len);
    b[len] = 0;
    fclose(f);
    *n = (size_t)len;
    return b;
}

/* ---- PNG writing ---- */

typedef struct td_png {
    int w, h;
    int color_type; /* PNG_COLOR_TYPE_* */
    int bit_depth;  /* 1, 2, 4, 8, 16 */
    bool interlace;
    const uint16_t
        *samples; /* (h, w, channels) sample values in 0 .. 2^depth-1; palette: indices */
    const png_color *palette;
    int n_palette;
    const png_byte *trans; /* palette alpha entries, or NULL */
    int n_trans;
    const png_color_16 *trans_color; /* grey/RGB colour key, or NULL */
} td_png;

static int td_png_channels(int color_type) {
    switch (color_type) {
    case PNG_COLOR_TYPE_GRAY:
        return 1;
    case PNG_COLOR_TYPE_GRAY_ALPHA:
        return 2;
    case PNG_COLOR_TYPE_RGB:
        return 3;
    case PNG_COLOR_TYPE_RGB_ALPHA:
        return 4;
    default:
        return 1; /* palette */
    }
}

__attribute__((unused)) static void td_write_png(const char *path, const td_png *p) {
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f, "%s: %s", path, strerror(errno));
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    cr_assert(png != NULL && info != NULL);
    cr_assert_eq(setjmp(png_jmpbuf(png)), 0, "libpng failed writing %s", path);
    png_init_io(png, f);
    png_set_IHDR(png, info, p->w, p->h, p->bit_depth, p->color_type,
                 p->interlace ? PNG_INTERLACE_ADAM7 : PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    if (p->palette != NULL) png_set_PLTE(png, info, p->palette, p->n_palette);
    if (p->trans != NULL || p->trans_color != NULL)
        png_set_tRNS(png, info, p->trans, p->n_trans, p->trans_color);
    png_write_info(png, info);
    const int c = td_png_channels(p->color_type);
    const size_t rowbytes = ((size_t)p->w * c * p->bit_depth + 7) / 8;
    png_bytep *rows = malloc((size_t)p->h * sizeof *rows);
    for (int y = 0; y < p->h; y++) {
        rows[y] = calloc(rowbytes, 1);
        for (int x = 0; x < p->w; x++)
            for (int ch = 0; ch < c; ch++) {
                const unsigned v = p->samples[((size_t)y * p->w + x) * c + ch];
                const size_t i = (size_t)x * c + ch;
                if (p->bit_depth == 16) {
                    rows[y][i * 2] = (png_byte)(v >> 8);
                    rows[y][i * 2 + 1] = (png_byte)v;
                } else if (p->bit_depth == 8) {
                    rows[y][i] = (png_byte)v;
                } else {
                    const size_t bit = i * p->bit_depth;
                    rows[y][bit / 8] |= (png_byte)(v << (8 - p->bit_depth - bit % 8));
                }
            }
    }
    png_write_image(png, rows);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    fclose(f);
    for (int y = 0; y < p->h; y++) free(rows[y]);
    free(rows);
}

/* An 8-bit RGB (c = 3), grey (1) or RGBA (4) PNG of `pixels`. */
__attribute__((unused)) static void td_write_png8(const char *path, const uint8_t *pixels, int h,
                                                  int w, int c) {
    uint16_t *s = malloc((size_t)h * w * c * sizeof *s);
    for (size_t i = 0; i < (size_t)h * w * c; i++) s[i] = pixels[i];
    td_png p = {.w = w,
                .h = h,
                .bit_depth = 8,
                .samples = s,
                .color_type = c == 1 ? PNG_COLOR_TYPE_GRAY
                                     : (c == 4 ? PNG_COLOR_TYPE_RGB_ALPHA : PNG_COLOR_TYPE_RGB)};
    td_write_png(path, &p);
    free(s);
}

/* ---- JPEG writing ---- */

/* Encodes (h, w, comps) samples in colour space `in_space` stored as `jpeg_space`. Returns a
 * malloc'd buffer. */
__attribute__((unused)) static uint8_t *td_jpeg(const uint8_t *pixels, int h, int w, int comps,
                                                J_COLOR_SPACE in_space, J_COLOR_SPACE jpeg_space,
                                                int quality, unsigned long *size) {
    struct jpeg_compress_struct cinfo;
    struct jpeg_error_mgr jerr;
    cinfo.err = jpeg_std_error(&jerr);
    jpeg_create_compress(&cinfo);
    unsigned char *buf = NULL;
    *size = 0;
    jpeg_mem_dest(&cinfo, &buf, size);
    cinfo.image_width = (JDIMENSION)w;
    cinfo.image_height = (JDIMENSION)h;
    cinfo.input_components = comps;
    cinfo.in_color_space = in_space;
    jpeg_set_defaults(&cinfo);
    jpeg_set_colorspace(&cinfo, jpeg_space);
    jpeg_set_quality(&cinfo, quality, TRUE);
    for (int k = 0; k < cinfo.num_components; k++) /* no chroma subsampling */
        cinfo.comp_info[k].h_samp_factor = cinfo.comp_info[k].v_samp_factor = 1;
    jpeg_start_compress(&cinfo, TRUE);
    while (cinfo.next_scanline < cinfo.image_height) {
        JSAMPROW row = (JSAMPROW)(pixels + (size_t)cinfo.next_scanline * w * comps);
        jpeg_write_scanlines(&cinfo, &row, 1);
    }
    jpeg_finish_compress(&cinfo);
    jpeg_destroy_compress(&cinfo);
    uint8_t *out = malloc(*size);
    memcpy(out, buf, *size);
    free(buf);
    return out;
}

__attribute__((unused)) static void td_write_jpeg(const char *path, const uint8_t *pixels, int h,
                                                  int w, int c, int quality) {
    unsigned long n = 0;
    uint8_t *b = td_jpeg(pixels, h, w, c, c == 1 ? JCS_GRAYSCALE : JCS_RGB,
                         c == 1 ? JCS_GRAYSCALE : JCS_YCbCr, quality, &n);
    td_write(path, b, n);
    free(b);
}

/* The max absolute difference of two byte arrays. */
__attribute__((unused)) static int td_max_diff(const uint8_t *a, const uint8_t *b, size_t n) {
    int m = 0;
    for (size_t i = 0; i < n; i++) {
        int d = abs((int)a[i] - (int)b[i]);
        if (d > m) m = d;
    }
    return m;
}

/* Decodes a hex string into bytes; returns the count. */
__attribute__((unused)) static size_t td_unhex(const char *hex, uint8_t *out, size_t cap) {
    size_t n = 0;
    for (; hex[0] && hex[1] && n < cap; hex += 2) {
        unsigned v;
        if (sscanf(hex, "%2x", &v) != 1) break;
        out[n++] = (uint8_t)v;
    }
    return n;
}

#endif
