/* curves.png: training and validation loss (top panel) and accuracy (bottom panel) per epoch,
 * rasterised here and encoded with libpng. A 5x7 bitmap font covers the few characters the
 * labels use, so no font library is needed. */
#include <math.h>
#include <png.h>
#include <stdlib.h>
#include <string.h>

#include "../core/atomic.h"
#include "train/callbacks.h"

#define W 800
#define H 600
#define PANEL_H (H / 2)
#define LEFT 90
#define RIGHT 20
#define TOP 36
#define BOTTOM 40
#define SCALE 2 /* font pixels per bitmap pixel */

typedef struct rgb {
    unsigned char r, g, b;
} rgb;

static const rgb WHITE = {255, 255, 255}, BLACK = {0, 0, 0}, GRID = {225, 225, 225},
                 TRAIN = {31, 119, 180}, VAL = {255, 127, 14};

typedef struct glyph {
    char c;
    unsigned char rows[7];
} glyph;

static const glyph font[] = {
    {'0', {0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E}}, {'1', {0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E}},
    {'2', {0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F}}, {'3', {0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E}},
    {'4', {0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02}}, {'5', {0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E}},
    {'6', {0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E}}, {'7', {0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08}},
    {'8', {0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E}}, {'9', {0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C}},
    {'.', {0, 0, 0, 0, 0, 0x0C, 0x0C}},                 {'-', {0, 0, 0, 0x1F, 0, 0, 0}},
    {'+', {0, 0x04, 0x04, 0x1F, 0x04, 0x04, 0}},        {':', {0, 0x0C, 0x0C, 0, 0x0C, 0x0C, 0}},
    {'a', {0, 0, 0x0E, 0x01, 0x0F, 0x11, 0x0F}},        {'c', {0, 0, 0x0E, 0x10, 0x10, 0x11, 0x0E}},
    {'d', {0x01, 0x01, 0x0D, 0x13, 0x11, 0x11, 0x0F}},  {'e', {0, 0, 0x0E, 0x11, 0x1F, 0x10, 0x0E}},
    {'h', {0x10, 0x10, 0x16, 0x19, 0x11, 0x11, 0x11}},  {'i', {0x04, 0, 0x0C, 0x04, 0x04, 0x04, 0x0E}},
    {'l', {0x0C, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E}},  {'m', {0, 0, 0x1A, 0x15, 0x15, 0x11, 0x11}},
    {'n', {0, 0, 0x16, 0x19, 0x11, 0x11, 0x11}},        {'o', {0, 0, 0x0E, 0x11, 0x11, 0x11, 0x0E}},
    {'p', {0, 0, 0x1E, 0x11, 0x1E, 0x10, 0x10}},        {'r', {0, 0, 0x16, 0x19, 0x10, 0x10, 0x10}},
    {'s', {0, 0, 0x0E, 0x10, 0x0E, 0x01, 0x1E}},        {'t', {0x08, 0x08, 0x1C, 0x08, 0x08, 0x09, 0x06}},
    {'u', {0, 0, 0x11, 0x11, 0x11, 0x13, 0x0D}},        {'v', {0, 0, 0x11, 0x11, 0x11, 0x0A, 0x04}},
    {'y', {0, 0, 0x11, 0x11, 0x0F, 0x01, 0x0E}},
};

static void put(unsigned char *img, int x, int y, rgb c) {
    if (x < 0 || x >= W || y < 0 || y >= H) return;
    unsigned char *p = img + ((size_t)y * W + x) * 3;
    p[0] = c.r;
    p[1] = c.g;
    p[2] = c.b;
}

static void text(unsigned char *img, int x, int y, const char *s, rgb c) {
    for (; *s != '\0'; s++, x += 6 * SCALE) {
        const glyph *g = NULL;
        for (size_t i = 0; i < sizeof font / sizeof font[0]; i++)
            if (font[i].c == *s) g = &font[i];
        if (g == NULL) continue; /* spaces and characters without a glyph leave a gap */
        for (int r = 0; r < 7; r++)
            for (int b = 0; b < 5; b++)
                if (g->rows[r] & (0x10 >> b))
                    for (int dy = 0; dy < SCALE; dy++)
                        for (int dx = 0; dx < SCALE; dx++)
                            put(img, x + b * SCALE + dx, y + r * SCALE + dy, c);
    }
}

static void line(unsigned char *img, int x0, int y0, int x1, int y1, rgb c, int thick) {
    int dx = abs(x1 - x0), dy = -abs(y1 - y0), sx = x0 < x1 ? 1 : -1, sy = y0 < y1 ? 1 : -1;
    int err = dx + dy;
    for (;;) {
        for (int a = 0; a < thick; a++)
            for (int b = 0; b < thick; b++) put(img, x0 + a, y0 + b, c);
        if (x0 == x1 && y0 == y1) break;
        int e2 = 2 * err;
        if (e2 >= dy) {
            err += dy;
            x0 += sx;
        }
        if (e2 <= dx) {
            err += dx;
            y0 += sy;
        }
    }
}

static void panel(unsigned char *img, int top, const char *title, const double *a,
                  const double *b, int n) {
    double lo = INFINITY, hi = -INFINITY;
    for (int i = 0; i < n; i++) {
        if (isfinite(a[i])) lo = fmin(lo, a[i]), hi = fmax(hi, a[i]);
        if (b != NULL && isfinite(b[i])) lo = fmin(lo, b[i]), hi = fmax(hi, b[i]);
    }
    if (!isfinite(lo)) lo = 0.0, hi = 1.0;
    if (hi - lo < 1e-9) lo -= 0.5, hi += 0.5;
    const int x0 = LEFT, x1 = W - RIGHT, y0 = top + TOP, y1 = top + PANEL_H - BOTTOM;
    for (int g = 0; g <= 4; g++) {
        int y = y1 - (y1 - y0) * g / 4;
        line(img, x0, y, x1, y, GRID, 1);
        char lab[32];
        snprintf(lab, sizeof lab, "%.3g", lo + (hi - lo) * g / 4);
        text(img, 4, y - 7, lab, BLACK);
    }
    line(img, x0, y0, x0, y1, BLACK, 1);
    line(img, x0, y1, x1, y1, BLACK, 1);
    text(img, x0, top + 8, title, BLACK);
    text(img, x1 - 200, top + 8, "train", TRAIN);
    text(img, x1 - 110, top + 8, "val", VAL);
    char lab[32];
    snprintf(lab, sizeof lab, "epoch 1");
    text(img, x0, y1 + 10, lab, BLACK);
    snprintf(lab, sizeof lab, "%d", n);
    text(img, x1 - 12 * (int)strlen(lab), y1 + 10, lab, BLACK);
    const double *series[2] = {a, b};
    const rgb colour[2] = {TRAIN, VAL};
    for (int s = 0; s < 2; s++) {
        if (series[s] == NULL) continue;
        int px = -1, py = -1;
        for (int i = 0; i < n; i++) {
            double v = series[s][i];
            if (!isfinite(v)) continue;
            int x = n > 1 ? x0 + (x1 - x0) * i / (n - 1) : (x0 + x1) / 2;
            int y = y1 - (int)lround((v - lo) / (hi - lo) * (y1 - y0));
            if (px >= 0) line(img, px, py, x, y, colour[s], 2);
            for (int d = -2; d <= 2; d++) line(img, x + d, y - 2, x + d, y + 2, colour[s], 1);
            px = x;
            py = y;
        }
    }
}

ct_status ct_curves_write(const char *path, const double *loss, const double *val_loss,
                          const double *acc, const double *val_acc, int epochs) {
    if (epochs < 1) return ct_error(CT_EINVAL, "%s: no epochs to plot", path);
    unsigned char *img = malloc((size_t)W * H * 3);
    if (img == NULL) return ct_error(CT_ENOMEM, "%s: cannot allocate the image", path);
    memset(img, 255, (size_t)W * H * 3);
    panel(img, 0, "loss", loss, val_loss, epochs);
    panel(img, PANEL_H, "accuracy", acc, val_acc, epochs);
    (void)WHITE;

    ct_atomic_file a;
    ct_status s = ct_atomic_open(&a, path, "wb");
    if (s != CT_OK) {
        free(img);
        return s;
    }
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png != NULL ? png_create_info_struct(png) : NULL;
    if (png == NULL || info == NULL) {
        png_destroy_write_struct(&png, NULL);
        ct_atomic_abort(&a);
        free(img);
        return ct_error(CT_ENOMEM, "%s: libpng could not start", path);
    }
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        ct_atomic_abort(&a);
        free(img);
        return ct_error(CT_EIO, "%s: libpng failed while writing", path);
    }
    png_init_io(png, a.f);
    png_set_IHDR(png, info, W, H, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    for (int y = 0; y < H; y++) png_write_row(png, img + (size_t)y * W * 3);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    free(img);
    return ct_atomic_commit(&a);
}
