/* curves.png: training and validation loss (top panel) and accuracy (bottom panel) per epoch,
 * rasterised here and encoded with libpng. A 5x7 bitmap font covers the few characters the
 * labels use, so no font library is needed. The axes are ticked at 1-2-5 numbers, as
 * matplotlib's default locator does, so the labels read 0.2, 0.4, 0.6 and not 0.213, 0.427;
 * a dashed line marks the best epoch of the monitored metric (the epoch best.h5 holds). */
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
                 TRAIN = {31, 119, 180}, VAL = {255, 127, 14}, BEST = {44, 160, 44};

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
    {'y', {0, 0, 0x11, 0x11, 0x0F, 0x01, 0x0E}},        {'b', {0x10, 0x10, 0x16, 0x19, 0x11, 0x11, 0x1E}},
    {'_', {0, 0, 0, 0, 0, 0, 0x1F}},                   {'(', {0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02}},
    {')', {0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08}},
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

int ct_axis_ticks(double lo, double hi, int max_ticks, double *ticks, int cap, double *step,
                  int *decimals) {
    if (!isfinite(lo) || !isfinite(hi)) lo = 0.0, hi = 1.0;
    if (hi < lo) {
        double t = lo;
        lo = hi;
        hi = t;
    }
    if (hi - lo <= 1e-12 * fmax(1.0, fabs(hi))) lo -= 0.5, hi += 0.5;
    /* Two ticks cannot bound a range that straddles a multiple of every step (0, for
     * [-3.2, 0.1]); three always can, with a step at least as wide as the range. */
    if (max_ticks < 3) max_ticks = 3;
    static const double mult[3] = {1.0, 2.0, 5.0};
    /* The steps from the one that would give exactly max_ticks intervals upwards: the first
     * that fits is the finest nice step. Each tick is (k0 + i) * step, never a running sum,
     * so 0.1 + 0.2 rounding cannot creep in; the 1e-9 slack keeps a bound that is a multiple
     * of the step (0.3 / 0.1 = 2.9999999999999996) from adding a tick beyond it. */
    for (int e = (int)floor(log10((hi - lo) / (max_ticks - 1))); e < 400; e++)
        for (int m = 0; m < 3; m++) {
            const double st = mult[m] * pow(10.0, e);
            const double k0 = floor(lo / st + 1e-9), k1 = ceil(hi / st - 1e-9);
            const int n = (int)(k1 - k0) + 1;
            if (n > max_ticks) continue;
            /* Below 1 the tick is a whole number over a power of ten: one correctly rounded
             * division gives the double nearest the decimal (0.693, not 0.6930000000000001). */
            for (int i = 0; i < n && i < cap && ticks != NULL; i++) {
                const double k = (k0 + i) * mult[m];
                const double t = e < 0 ? k / pow(10.0, -e) : k * pow(10.0, e);
                ticks[i] = t == 0.0 ? 0.0 : t; /* no -0 */
            }
            if (step != NULL) *step = st;
            if (decimals != NULL) *decimals = e < 0 ? -e : 0;
            return n;
        }
    return 0; /* unreachable for finite bounds */
}

/* The plot area of a panel and its value range. */
typedef struct area {
    int x0, x1, y0, y1;
    double lo, hi;
    int n; /* epochs */
} area;

static int x_of(const area *A, int epoch) { /* 0-based epoch */
    return A->n > 1 ? A->x0 + (A->x1 - A->x0) * epoch / (A->n - 1) : (A->x0 + A->x1) / 2;
}

/* The value axis: a grid line and a label at each nice tick; the range becomes the ticks'. */
static void y_axis(unsigned char *img, area *A) {
    double ticks[16], step;
    int decimals;
    int nt = ct_axis_ticks(A->lo, A->hi, 6, ticks, 16, &step, &decimals);
    if (nt > 16) nt = 16;
    A->lo = ticks[0];
    A->hi = ticks[nt - 1];
    for (int g = 0; g < nt; g++) {
        int y = A->y1 - (int)lround((ticks[g] - A->lo) / (A->hi - A->lo) * (A->y1 - A->y0));
        line(img, A->x0, y, A->x1, y, GRID, 1);
        char lab[32];
        snprintf(lab, sizeof lab, "%.*f", decimals, ticks[g]);
        text(img, A->x0 - 8 - 12 * (int)strlen(lab), y - 7, lab, BLACK);
    }
}

/* The epoch axis, numbered from 1 as Keras prints "Epoch 1/N": epoch 1 and the multiples of a
 * nice whole step. */
static void x_axis(unsigned char *img, const area *A) {
    double step = 1.0;
    ct_axis_ticks(1.0, A->n, 8, NULL, 0, &step, NULL);
    const int every = step < 1.0 ? 1 : (int)step;
    for (int e = 1; e <= A->n; e = e == 1 && every > 1 ? every : e + every) {
        char lab[16];
        snprintf(lab, sizeof lab, "%d", e);
        const int x = x_of(A, e - 1);
        line(img, x, A->y1, x, A->y1 + 4, BLACK, 1);
        text(img, x - 6 * (int)strlen(lab), A->y1 + 8, lab, BLACK);
    }
    text(img, A->x1 - 60, A->y1 + 24, "epoch", BLACK);
}

/* A dashed vertical line at the best epoch; the top panel names it. */
static void best_marker(unsigned char *img, const area *A, int top, int best,
                        const char *monitor, bool label) {
    if (best < 0 || best >= A->n) return;
    const int x = x_of(A, best);
    for (int y = A->y0; y < A->y1; y += 8)
        line(img, x, y, x, y + 4 < A->y1 ? y + 4 : A->y1, BEST, 2);
    if (!label) return;
    char lab[64];
    snprintf(lab, sizeof lab, "best: epoch %d%s%s%s", best + 1, monitor != NULL ? " (" : "",
             monitor != NULL ? monitor : "", monitor != NULL ? ")" : "");
    text(img, A->x0 + 130, top + 8, lab, BEST);
}

static void series(unsigned char *img, const area *A, const double *v, rgb colour) {
    int px = -1, py = -1;
    for (int i = 0; i < A->n; i++) {
        if (!isfinite(v[i])) continue;
        int x = x_of(A, i);
        int y = A->y1 - (int)lround((v[i] - A->lo) / (A->hi - A->lo) * (A->y1 - A->y0));
        if (px >= 0) line(img, px, py, x, y, colour, 2);
        for (int d = -2; d <= 2; d++) line(img, x + d, y - 2, x + d, y + 2, colour, 1);
        px = x;
        py = y;
    }
}

static void panel(unsigned char *img, int top, const char *title, const double *a,
                  const double *b, int n, int best, const char *monitor) {
    area A = {LEFT, W - RIGHT, top + TOP, top + PANEL_H - BOTTOM, INFINITY, -INFINITY, n};
    for (int i = 0; i < n; i++) {
        if (isfinite(a[i])) A.lo = fmin(A.lo, a[i]), A.hi = fmax(A.hi, a[i]);
        if (b != NULL && isfinite(b[i])) A.lo = fmin(A.lo, b[i]), A.hi = fmax(A.hi, b[i]);
    }
    if (!isfinite(A.lo)) A.lo = 0.0, A.hi = 1.0;
    /* A flat curve spans at least 0.001, so its tick labels need at most 4 decimals and fit
     * the margin. */
    if (A.hi - A.lo < 1e-3) {
        const double mid = (A.lo + A.hi) / 2;
        A.lo = mid - 5e-4;
        A.hi = mid + 5e-4;
    }
    y_axis(img, &A);
    x_axis(img, &A);
    best_marker(img, &A, top, best, monitor, top == 0);
    line(img, A.x0, A.y0, A.x0, A.y1, BLACK, 1);
    line(img, A.x0, A.y1, A.x1, A.y1, BLACK, 1);
    text(img, A.x0, top + 8, title, BLACK);
    text(img, A.x1 - 200, top + 8, "train", TRAIN);
    text(img, A.x1 - 110, top + 8, "val", VAL);
    series(img, &A, a, TRAIN);
    if (b != NULL) series(img, &A, b, VAL);
}

ct_status ct_curves_write(const char *path, const double *loss, const double *val_loss,
                          const double *acc, const double *val_acc, int epochs, int best_epoch,
                          const char *monitor) {
    if (epochs < 1) return ct_error(CT_EINVAL, "%s: no epochs to plot", path);
    unsigned char *img = malloc((size_t)W * H * 3);
    if (img == NULL) return ct_error(CT_ENOMEM, "%s: cannot allocate the image", path);
    memset(img, 255, (size_t)W * H * 3);
    panel(img, 0, "loss", loss, val_loss, epochs, best_epoch, monitor);
    panel(img, PANEL_H, "accuracy", acc, val_acc, epochs, best_epoch, monitor);
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
