/* The CPU reference of ImageDataGenerator.apply_transform: one image at a time, in Keras's order
 * (affine, channel shift, horizontal flip, vertical flip, brightness), built from the per-pixel
 * CT_HD functions of augment.h that a CUDA kernel uses too. The whole-image minimum and maximum
 * that channel shift and brightness need are the only reductions. ct_augment_standardize_image
 * is one sample of the training stream from raw pixels: the loader's workers and the CPU
 * backend's augment_standardize op both call it, so the two cannot drift apart. */
#include <string.h>

#include "data/augment.h"
#include "data/data.h"

static void min_max(const float *x, size_t n, float *lo, float *hi) {
    float a = x[0], b = x[0];
    for (size_t i = 1; i < n; i++) {
        if (x[i] < a) a = x[i];
        if (x[i] > b) b = x[i];
    }
    *lo = a;
    *hi = b;
}

void ct_augment_image(float *out, const float *in, int h, int w, int c,
                      const ct_augment_config *cfg, const ct_augment_params *p) {
    const size_t n = (size_t)h * w * c;
    if (ct_augment_has_affine(p)) {
        float m[6];
        ct_augment_matrix(p, h, w, m);
        for (int r = 0; r < h; r++)
            for (int q = 0; q < w; q++)
                ct_augment_affine_pixel(out + ((size_t)r * w + q) * c, in, h, w, c, m, r, q,
                                        cfg->fill_mode, cfg->cval, cfg->nearest_sampling);
    } else {
        memcpy(out, in, n * sizeof *out);
    }
    if (p->channel_shift) {
        float lo, hi;
        min_max(out, n, &lo, &hi);
        for (size_t i = 0; i < n; i++)
            out[i] = ct_augment_channel_shift_value(out[i], p->channel_shift_intensity, lo, hi);
    }
    if (p->flip_h)
        for (int r = 0; r < h; r++) {
            float *row = out + (size_t)r * w * c;
            for (int a = 0, b = w - 1; a < b; a++, b--)
                for (int k = 0; k < c; k++) {
                    float t = row[(size_t)a * c + k];
                    row[(size_t)a * c + k] = row[(size_t)b * c + k];
                    row[(size_t)b * c + k] = t;
                }
        }
    if (p->flip_v)
        for (int a = 0, b = h - 1; a < b; a++, b--) {
            float *ra = out + (size_t)a * w * c, *rb = out + (size_t)b * w * c;
            for (size_t i = 0; i < (size_t)w * c; i++) {
                float t = ra[i];
                ra[i] = rb[i];
                rb[i] = t;
            }
        }
    if (p->brightness) {
        float lo, hi;
        min_max(out, n, &lo, &hi);
        for (size_t i = 0; i < n; i++)
            out[i] = ct_augment_brightness_value(out[i], p->brightness_factor, lo, hi,
                                                 c == 4 && i % 4 == 3);
    }
}

void ct_augment_standardize_image(float *out, const uint8_t *u8, const float *f32, int h, int w,
                                  int c, const ct_augment_config *aug, const ct_standardize *s,
                                  uint64_t seed, uint32_t epoch, uint32_t sample, float *scratch) {
    const size_t n = (size_t)h * w * c;
    if (aug != NULL && ct_augment_enabled(aug)) {
        const float *in = f32;
        if (u8 != NULL) {
            for (size_t i = 0; i < n; i++) scratch[i] = (float)u8[i];
            in = scratch;
        }
        ct_augment_params p = ct_augment_draw(aug, seed, epoch, sample, h, w);
        ct_augment_image(out, in, h, w, c, aug, &p);
    } else if (u8 != NULL) {
        for (size_t i = 0; i < n; i++) out[i] = (float)u8[i];
    } else {
        memcpy(out, f32, n * sizeof *out);
    }
    ct_standardize_image(out, h, w, c, s);
}

ct_status ct_augment_standardize_check(const uint8_t *in_u8, const float *in_f32, int n, int h,
                                       int w, int c, const ct_augment_config *aug,
                                       const ct_standardize *s) {
    if (n < 0 || h < 1 || w < 1)
        return ct_error(CT_EINVAL, "augment_standardize: bad batch shape (%d, %d, %d, %d)", n, h,
                        w, c);
    if ((in_u8 == NULL) == (in_f32 == NULL))
        return ct_error(CT_EINVAL, "augment_standardize: give exactly one input, uint8 or float");
    if (s == NULL) return ct_error(CT_EINVAL, "augment_standardize: no standardize settings");
    if (aug != NULL && ct_augment_enabled(aug) && (unsigned)aug->fill_mode > CT_FILL_WRAP)
        return ct_error(CT_EINVAL, "augment_standardize: unknown fill mode %d",
                        (int)aug->fill_mode);
    return ct_standardize_check(s, c);
}

ct_status ct_flip_check(const float *x, int n, int h, int w, int c) {
    if (n < 0 || h < 1 || w < 1 || c < 1)
        return ct_error(CT_EINVAL, "flip: bad batch shape (%d, %d, %d, %d)", n, h, w, c);
    if (n > 0 && x == NULL) return ct_error(CT_EINVAL, "flip: no images");
    return CT_OK;
}
