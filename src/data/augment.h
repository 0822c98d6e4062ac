/* Keras ImageDataGenerator augmentation and preprocess_input as pure functions.
 *
 * This header is the contract between the CPU reference (src/data/augment.c) and a future CUDA
 * kernel: everything random is drawn from the counter-based generator by address, and everything
 * per pixel is a pure function, so both sides compute the same transform for the same
 * (seed, epoch, sample). The functions are CT_HD (static inline on the host, __host__ __device__
 * under nvcc) and use float arithmetic per pixel; the affine matrix is built in double once per
 * image, as NumPy does.
 *
 * Semantics (Keras's ImageDataGenerator.get_random_transform / apply_transform / standardize):
 *  - theta ~ U(-rotation_range, rotation_range) degrees;
 *  - height shift tx (rows) and width shift ty (columns): a fraction f < 1 of the side
 *    (U(-f, f) * side), a pixel range p >= 1 (U(-p, p)), or an integer n (one of 0..n-1, times
 *    a random sign) - Keras's float < 1 / float >= 1 / int rules;
 *  - shear ~ U(-shear_range, shear_range) degrees; zoom zx (rows), zy (columns) ~ U(lo, hi)
 *    drawn independently;
 *  - one matrix R(theta) . Shift(tx, ty) . Shear . Zoom about the image centre ((h-1)/2,
 *    (w-1)/2), applied to (row, col) output coordinates to find the input coordinate, sampled
 *    like scipy.ndimage.affine_transform (order 1 bilinear or order 0 nearest) with fill modes
 *    constant / nearest / reflect / wrap exactly as scipy maps out-of-range coordinates;
 *  - then channel shift (one U(-c, c) added to every channel, clipped to the image's min/max),
 *    horizontal flip (p = 0.5), vertical flip (p = 0.5), brightness (PIL's
 *    ImageEnhance.Brightness on the uint8 image, as Keras 3's apply_brightness_shift(scale=False)).
 * Differences from Keras, on purpose: the centre is (h-1)/2 as in Keras 3 (Keras 2 used h/2+0.5,
 * one pixel off), and the height shift moves rows and the width shift columns (Keras 3's axis
 * swap applies the height shift to columns). A 90-degree rotation is therefore an exact rot90.
 *
 * Random draws: word = ct_rng_word(seed, CT_RNG_AUGMENT << 16, epoch, sample, CT_AUG_DRAW_*),
 * where sample is the index of the sample in its dataset (not its position in the shuffled
 * order), and u = ct_rng_unit(word) in [0, 1). The words are bit-identical on every device;
 * parameters derived from them in float may differ in the last bits between compilers (nvcc
 * contracts to FMA), which moves the output by far less than one grey level. */
#ifndef CUTUNE_DATA_AUGMENT_H
#define CUTUNE_DATA_AUGMENT_H

#include <math.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/rng.h"
#include "cutune/data.h"

#ifdef __cplusplus
extern "C" {
#endif

/* How points outside the input are filled (Keras fill_mode, scipy mode). Zero is Keras's
 * default. */
typedef enum {
    CT_FILL_NEAREST = 0, /* a a a | a b c d | d d d                                          */
    CT_FILL_CONSTANT,    /* k k k | a b c d | k k k  (k = cval; no interpolation outside)    */
    CT_FILL_REFLECT,     /* c b a | a b c d | d c b  (half-sample symmetric)                 */
    CT_FILL_WRAP         /* scipy's 'wrap': period side-1, first and last samples overlap    */
} ct_fill_mode;

/* Keras's three meanings of width_shift_range / height_shift_range. */
typedef enum {
    CT_SHIFT_FRACTION = 0, /* float < 1: U(-v, v) * side                                      */
    CT_SHIFT_PIXELS,       /* float >= 1: U(-v, v) pixels                                     */
    CT_SHIFT_CHOICE        /* int n: k * s pixels, k uniform in 0..n-1, s = -1 or +1          */
} ct_shift_kind;

typedef struct ct_shift_range {
    ct_shift_kind kind;
    float value; /* 0: no shift */
} ct_shift_range;

/* ImageDataGenerator's augmentation arguments. A zero-initialised config augments nothing; every
 * field's zero is Keras's default. */
typedef struct ct_augment_config {
    float rotation_range;               /* degrees */
    ct_shift_range width_shift;         /* columns */
    ct_shift_range height_shift;        /* rows */
    float shear_range;                  /* degrees */
    float zoom_lo, zoom_hi;             /* {0, 0}: no zoom (Keras zoom_range=0 means [1, 1]) */
    float channel_shift_range;          /* in pixel units */
    float brightness_lo, brightness_hi; /* {0, 0}: off (Keras brightness_range=None) */
    bool horizontal_flip, vertical_flip;
    ct_fill_mode fill_mode;
    float cval;
    bool nearest_sampling; /* interpolation_order 0; false: order 1 (Keras default) */
} ct_augment_config;

/* One image's drawn parameters (Keras's transform_parameters). */
typedef struct ct_augment_params {
    float theta;  /* degrees */
    float tx, ty; /* pixels: rows, columns */
    float shear;  /* degrees */
    float zx, zy; /* zoom of rows, columns */
    bool flip_h, flip_v;
    bool channel_shift; /* whether channel_shift_intensity applies */
    float channel_shift_intensity;
    bool brightness; /* whether brightness applies */
    float brightness_factor;
} ct_augment_params;

/* The fixed draw number of each random parameter. Never renumber: checkpoints and the CUDA
 * kernel rely on them. */
enum {
    CT_AUG_DRAW_THETA = 0,
    CT_AUG_DRAW_TX = 1,      /* height shift value */
    CT_AUG_DRAW_TX_SIGN = 2, /* its sign (CT_SHIFT_CHOICE) */
    CT_AUG_DRAW_TY = 3,      /* width shift value */
    CT_AUG_DRAW_TY_SIGN = 4,
    CT_AUG_DRAW_SHEAR = 5,
    CT_AUG_DRAW_ZX = 6,
    CT_AUG_DRAW_ZY = 7,
    CT_AUG_DRAW_FLIP_H = 8,
    CT_AUG_DRAW_FLIP_V = 9,
    CT_AUG_DRAW_CHANNEL_SHIFT = 10,
    CT_AUG_DRAW_BRIGHTNESS = 11,
    CT_AUG_DRAW_COUNT = 12
};

/* u in [0, 1) for one parameter of one sample in one epoch. */
CT_HD float ct_augment_unit(uint64_t seed, uint32_t epoch, uint32_t sample, uint32_t draw) {
    return ct_rng_unit(ct_rng_word(seed, (uint32_t)CT_RNG_AUGMENT << 16, epoch, sample, draw));
}

/* Whether the config changes anything at all. */
CT_HD bool ct_augment_enabled(const ct_augment_config *c) {
    return c->rotation_range != 0.0f || c->width_shift.value != 0.0f ||
           c->height_shift.value != 0.0f || c->shear_range != 0.0f ||
           !((c->zoom_lo == 0.0f && c->zoom_hi == 0.0f) ||
             (c->zoom_lo == 1.0f && c->zoom_hi == 1.0f)) ||
           c->channel_shift_range != 0.0f || c->brightness_lo != 0.0f || c->brightness_hi != 0.0f ||
           c->horizontal_flip || c->vertical_flip;
}

/* A shift in pixels along a side of `side` pixels, from the value draw u and the sign draw s. */
CT_HD float ct_augment_shift(ct_shift_range r, int side, float u, float s) {
    if (r.value == 0.0f) return 0.0f;
    switch (r.kind) {
    case CT_SHIFT_CHOICE: {
        int n = (int)r.value;
        int k = (int)(u * (float)n);
        if (k >= n) k = n - 1;
        return (float)k * (s < 0.5f ? -1.0f : 1.0f);
    }
    case CT_SHIFT_PIXELS:
        return -r.value + 2.0f * r.value * u;
    default:
        return (-r.value + 2.0f * r.value * u) * (float)side;
    }
}

/* Draws the parameters of `sample` in `epoch` for an h x w image: Keras's get_random_transform
 * with the counter-based generator in place of np.random. */
CT_HD ct_augment_params ct_augment_draw(const ct_augment_config *c, uint64_t seed, uint32_t epoch,
                                        uint32_t sample, int h, int w) {
    ct_augment_params p;
    p.theta = 0.0f;
    if (c->rotation_range != 0.0f)
        p.theta = -c->rotation_range + 2.0f * c->rotation_range *
                                           ct_augment_unit(seed, epoch, sample, CT_AUG_DRAW_THETA);
    p.tx =
        ct_augment_shift(c->height_shift, h, ct_augment_unit(seed, epoch, sample, CT_AUG_DRAW_TX),
                         ct_augment_unit(seed, epoch, sample, CT_AUG_DRAW_TX_SIGN));
    p.ty = ct_augment_shift(c->width_shift, w, ct_augment_unit(seed, epoch, sample, CT_AUG_DRAW_TY),
                            ct_augment_unit(seed, epoch, sample, CT_AUG_DRAW_TY_SIGN));
    p.shear = 0.0f;
    if (c->shear_range != 0.0f)
        p.shear = -c->shear_range +
                  2.0f * c->shear_range * ct_augment_unit(seed, epoch, sample, CT_AUG_DRAW_SHEAR);
    p.zx = 1.0f;
    p.zy = 1.0f;
    if (!((c->zoom_lo == 0.0f && c->zoom_hi == 0.0f) ||
          (c->zoom_lo == 1.0f && c->zoom_hi == 1.0f))) {
        float span = c->zoom_hi - c->zoom_lo;
        p.zx = c->zoom_lo + span * ct_augment_unit(seed, epoch, sample, CT_AUG_DRAW_ZX);
        p.zy = c->zoom_lo + span * ct_augment_unit(seed, epoch, sample, CT_AUG_DRAW_ZY);
    }
    p.flip_h =
        c->horizontal_flip && ct_augment_unit(seed, epoch, sample, CT_AUG_DRAW_FLIP_H) < 0.5f;
    p.flip_v = c->vertical_flip && ct_augment_unit(seed, epoch, sample, CT_AUG_DRAW_FLIP_V) < 0.5f;
    p.channel_shift = c->channel_shift_range != 0.0f;
    p.channel_shift_intensity = 0.0f;
    if (p.channel_shift)
        p.channel_shift_intensity =
            -c->channel_shift_range +
            2.0f * c->channel_shift_range *
                ct_augment_unit(seed, epoch, sample, CT_AUG_DRAW_CHANNEL_SHIFT);
    p.brightness = c->brightness_lo != 0.0f || c->brightness_hi != 0.0f;
    p.brightness_factor = 1.0f;
    if (p.brightness)
        p.brightness_factor =
            c->brightness_lo + (c->brightness_hi - c->brightness_lo) *
                                   ct_augment_unit(seed, epoch, sample, CT_AUG_DRAW_BRIGHTNESS);
    return p;
}

/* Whether the parameters move any pixel (Keras skips the resampling when they do not). */
CT_HD bool ct_augment_has_affine(const ct_augment_params *p) {
    return p->theta != 0.0f || p->tx != 0.0f || p->ty != 0.0f || p->shear != 0.0f ||
           p->zx != 1.0f || p->zy != 1.0f;
}

/* 3x3 affine product c = a . b, rows of 3 (the last row is implicit 0 0 1). */
CT_HD void ct_augment_compose(double c[6], const double a[6], const double b[6]) {
    double r[6];
    r[0] = a[0] * b[0] + a[1] * b[3];
    r[1] = a[0] * b[1] + a[1] * b[4];
    r[2] = a[0] * b[2] + a[1] * b[5] + a[2];
    r[3] = a[3] * b[0] + a[4] * b[3];
    r[4] = a[3] * b[1] + a[4] * b[4];
    r[5] = a[3] * b[2] + a[4] * b[5] + a[5];
    for (int i = 0; i < 6; i++) c[i] = r[i];
}

/* The 2x3 matrix m taking an output pixel (row, col) to its input coordinate:
 * (row_in, col_in) = (m0 row + m1 col + m2, m3 row + m4 col + m5). Built in double as Keras's
 * apply_affine_transform does: R(theta) . Shift . Shear . Zoom, about the centre. */
CT_HD void ct_augment_matrix(const ct_augment_params *p, int h, int w, float m[6]) {
    const double deg = 0.017453292519943295; /* pi / 180, as np.deg2rad */
    double t = (double)p->theta * deg, s = (double)p->shear * deg;
    double a[6] = {cos(t), -sin(t), 0.0, sin(t), cos(t), 0.0};
    double shift[6] = {1.0, 0.0, (double)p->tx, 0.0, 1.0, (double)p->ty};
    double shear[6] = {1.0, -sin(s), 0.0, 0.0, cos(s), 0.0};
    double zoom[6] = {(double)p->zx, 0.0, 0.0, 0.0, (double)p->zy, 0.0};
    ct_augment_compose(a, a, shift);
    ct_augment_compose(a, a, shear);
    ct_augment_compose(a, a, zoom);
    double orow = (double)h / 2.0 - 0.5, ocol = (double)w / 2.0 - 0.5;
    double offset[6] = {1.0, 0.0, orow, 0.0, 1.0, ocol};
    double reset[6] = {1.0, 0.0, -orow, 0.0, 1.0, -ocol};
    ct_augment_compose(a, offset, a);
    ct_augment_compose(a, a, reset);
    for (int i = 0; i < 6; i++) m[i] = (float)a[i];
}

/* scipy.ndimage's map_coordinate: folds a coordinate outside [0, len-1] back inside according to
 * the fill mode. For CT_FILL_CONSTANT it returns -1 for any point outside (the caller fills). */
CT_HD float ct_augment_map_coord(float in, int len, ct_fill_mode mode) {
    if (in < 0.0f) {
        switch (mode) {
        case CT_FILL_REFLECT:
            if (len <= 1) return 0.0f;
            {
                float sz2 = 2.0f * (float)len;
                if (in < -sz2) in = sz2 * (float)(long long)(-in / sz2) + in;
                if (in < -(float)len) {
                    in = in + sz2;
                } else {
                    in = -in - 1.0f;
                    /* scipy keeps this strictly above -1 (its 1e-15 guard). */
                    if (in <= -1.0f) in = -0.99999994f;
                }
            }
            return in;
        case CT_FILL_WRAP:
            if (len <= 1) return 0.0f;
            {
                float sz = (float)(len - 1);
                return in + sz * ((float)(long long)(-in / sz) + 1.0f);
            }
        case CT_FILL_NEAREST:
            return 0.0f;
        default:
            return -1.0f;
        }
    }
    if (in > (float)(len - 1)) {
        switch (mode) {
        case CT_FILL_REFLECT:
            if (len <= 1) return 0.0f;
            {
                float sz2 = 2.0f * (float)len;
                in -= sz2 * (float)(long long)(in / sz2);
                if (in >= (float)len) in = sz2 - in - 1.0f;
            }
            return in;
        case CT_FILL_WRAP:
            if (len <= 1) return 0.0f;
            {
                float sz = (float)(len - 1);
                return in - sz * (float)(long long)(in / sz);
            }
        case CT_FILL_NEAREST:
            return (float)(len - 1);
        default:
            return -1.0f;
        }
    }
    return in;
}

CT_HD int ct_augment_clamp_index(int i, int len) { return i < 0 ? 0 : (i >= len ? len - 1 : i); }

/* Where one output pixel of the affine resampling reads its input: the fill value, one nearest
 * pixel, or four bilinear neighbours with their weights. Split from the blend so that a kernel
 * reading uint8 pixels and the CPU reference reading float pixels share every coordinate
 * operation; the blend below is the only arithmetic on pixel values. */
typedef enum { CT_TAP_FILL = 0, CT_TAP_NEAREST, CT_TAP_BILINEAR } ct_tap_kind;

typedef struct ct_augment_tap {
    ct_tap_kind kind;
    int p00, p01, p10, p11; /* pixel indices (row * w + col); NEAREST uses p00 only */
    float fr, fq;           /* BILINEAR: weight of the second row and of the second column */
} ct_augment_tap;

/* The tap of output (row, col) of an h x w image transformed by m, as
 * scipy.ndimage.affine_transform with order 1 (or 0 when `nearest`) and mode `fill` reads it. */
CT_HD ct_augment_tap ct_augment_affine_tap(int h, int w, const float m[6], int row, int col,
                                           ct_fill_mode fill, bool nearest) {
    ct_augment_tap t;
    t.kind = CT_TAP_FILL;
    t.p00 = t.p01 = t.p10 = t.p11 = 0;
    t.fr = t.fq = 0.0f;
    float r = m[0] * (float)row + m[1] * (float)col + m[2];
    float q = m[3] * (float)row + m[4] * (float)col + m[5];
    if (fill == CT_FILL_CONSTANT &&
        (r < 0.0f || r > (float)(h - 1) || q < 0.0f || q > (float)(w - 1)))
        return t;
    r = ct_augment_map_coord(r, h, fill);
    q = ct_augment_map_coord(q, w, fill);
    if (nearest) {
        int ri = ct_augment_clamp_index((int)floorf(r + 0.5f), h);
        int qi = ct_augment_clamp_index((int)floorf(q + 0.5f), w);
        t.kind = CT_TAP_NEAREST;
        t.p00 = ri * w + qi;
        return t;
    }
    float rf = floorf(r), qf = floorf(q);
    int r0 = ct_augment_clamp_index((int)rf, h), r1 = ct_augment_clamp_index((int)rf + 1, h);
    int q0 = ct_augment_clamp_index((int)qf, w), q1 = ct_augment_clamp_index((int)qf + 1, w);
    t.kind = CT_TAP_BILINEAR;
    t.fr = r - rf;
    t.fq = q - qf;
    t.p00 = r0 * w + q0;
    t.p01 = r0 * w + q1;
    t.p10 = r1 * w + q0;
    t.p11 = r1 * w + q1;
    return t;
}

/* The bilinear blend of four neighbour values with a tap's weights. */
CT_HD float ct_augment_tap_blend(const ct_augment_tap *t, float v00, float v01, float v10,
                                 float v11) {
    float top = (1.0f - t->fq) * v00 + t->fq * v01;
    float bottom = (1.0f - t->fq) * v10 + t->fq * v11;
    return (1.0f - t->fr) * top + t->fr * bottom;
}

/* One output pixel of the affine resampling: writes the c channels of output (row, col) of an
 * h x w x c image `img` (HWC, float) transformed by m. Matches scipy.ndimage.affine_transform
 * with order 1 (or 0 when `nearest`), mode = fill, cval. */
CT_HD void ct_augment_affine_pixel(float *out, const float *img, int h, int w, int c,
                                   const float m[6], int row, int col, ct_fill_mode fill,
                                   float cval, bool nearest) {
    ct_augment_tap t = ct_augment_affine_tap(h, w, m, row, col, fill, nearest);
    for (int k = 0; k < c; k++) {
        if (t.kind == CT_TAP_FILL)
            out[k] = cval;
        else if (t.kind == CT_TAP_NEAREST)
            out[k] = img[(long long)t.p00 * c + k];
        else
            out[k] = ct_augment_tap_blend(&t, img[(long long)t.p00 * c + k],
                                          img[(long long)t.p01 * c + k],
                                          img[(long long)t.p10 * c + k],
                                          img[(long long)t.p11 * c + k]);
    }
}

/* Channel shift of one value: Keras's np.clip(x + intensity, min_x, max_x), where lo/hi are the
 * minimum and maximum of the whole image after the affine step. */
CT_HD float ct_augment_channel_shift_value(float v, float intensity, float lo, float hi) {
    v = v + intensity;
    return v < lo ? lo : (v > hi ? hi : v);
}

/* Brightness of one value, as Keras 3's apply_brightness_shift(x, factor, scale=False): the
 * image becomes uint8 (truncated; first stretched to 0..255 when it has values outside that
 * range), PIL's ImageEnhance.Brightness blends with black in float and truncates, and a stretched
 * image is mapped back to its range. lo/hi: the image's minimum and maximum. `alpha`: the 4th
 * channel of an RGBA image, which PIL leaves unchanged. */
CT_HD float ct_augment_brightness_value(float v, float factor, float lo, float hi, bool alpha) {
    bool stretch = lo < 0.0f || hi > 255.0f;
    float span = hi - lo;
    if (stretch) {
        v = v - lo;
        if (span != 0.0f) v = v / span;
        v = v * 255.0f;
    }
    float u8 = (float)(int)v; /* astype('uint8') of a value in [0, 255] */
    float out = u8;
    if (!alpha) {
        float t = factor * u8;
        out = t <= 0.0f ? 0.0f : (t >= 255.0f ? 255.0f : (float)(int)t);
    }
    if (stretch) out = out / 255.0f * span + lo;
    return out;
}

/* preprocess_input on one pixel of c channels, in place, with Keras's float32 operations in
 * Keras's order (bit-exact on the host; caffe and torch need c == 3). */
CT_HD void ct_preprocess_pixel(float *px, int c, ct_preprocess_mode mode) {
    switch (mode) {
    case CT_PREPROCESS_CAFFE: {
        float r = px[0], b = px[2];
        px[0] = b - 103.939f;
        px[1] = px[1] - 116.779f;
        px[2] = r - 123.68f;
        break;
    }
    case CT_PREPROCESS_TF:
        for (int k = 0; k < c; k++) px[k] = px[k] / 127.5f - 1.0f;
        break;
    case CT_PREPROCESS_TORCH: {
        const float mean[3] = {0.485f, 0.456f, 0.406f}, sd[3] = {0.229f, 0.224f, 0.225f};
        for (int k = 0; k < 3; k++) px[k] = (px[k] / 255.0f - mean[k]) / sd[k];
        break;
    }
    default:
        break;
    }
}

/* The CPU reference of one image's augmentation, in Keras's order: affine, channel shift,
 * horizontal flip, vertical flip, brightness. `in` and `out` are (h, w, c) and must not overlap.
 * Defined in src/data/augment.c. */
void ct_augment_image(float *out, const float *in, int h, int w, int c,
                      const ct_augment_config *cfg, const ct_augment_params *p);

#ifdef __cplusplus
}
#endif
#endif
