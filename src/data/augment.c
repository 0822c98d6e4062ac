/* The CPU reference of ImageDataGenerator.apply_transform: one image at a time, in Keras's order
 * (affine, channel shift, horizontal flip, vertical flip, brightness), built from the per-pixel
 * CT_HD functions of augment.h that a CUDA kernel uses too. The whole-image minimum and maximum
 * that channel shift and brightness need are the only reductions. */
#include <string.h>

#include "cutune/augment.h"

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
