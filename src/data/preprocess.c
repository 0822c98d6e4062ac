/* ImageDataGenerator.standardize: preprocess_input (Keras's imagenet_utils modes), rescale,
 * samplewise and featurewise centring and scaling, in Keras's order and float32 arithmetic.
 * The per-pixel preprocess_input is the CT_HD function in augment.h, shared with the GPU. */
#include <math.h>
#include <stddef.h>

#include "internal.h"

ct_status ct_standardize_check(const ct_standardize *s, int c) {
    if ((unsigned)s->preprocess > CT_PREPROCESS_TORCH)
        return ct_error(CT_EINVAL, "unknown preprocess mode %d", (int)s->preprocess);
    if ((s->preprocess == CT_PREPROCESS_CAFFE || s->preprocess == CT_PREPROCESS_TORCH) && c != 3)
        return ct_error(CT_EINVAL, "preprocess '%s' needs 3-channel RGB images, not %d channels",
                        s->preprocess == CT_PREPROCESS_CAFFE ? "caffe" : "torch", c);
    if (!isfinite(s->rescale)) return ct_error(CT_EINVAL, "rescale must be a finite number");
    if (c < 1 || c > 4) return ct_error(CT_EINVAL, "images must have 1 to 4 channels, not %d", c);
    for (int k = 0; k < c; k++)
        if ((s->featurewise_center && !isfinite(s->mean[k])) ||
            (s->featurewise_std_normalization && !(s->std[k] >= 0.0f && isfinite(s->std[k]))))
            return ct_error(CT_EINVAL,
                            "featurewise statistics of channel %d are not set or not "
                            "finite (compute them with ct_loader_feature_stats)",
                            k);
    return CT_OK;
}

void ct_preprocess_input(float *x, size_t n_pixels, int c, ct_preprocess_mode mode) {
    if (mode == CT_PREPROCESS_NONE) return;
    for (size_t i = 0; i < n_pixels; i++) ct_preprocess_pixel(x + i * (size_t)c, c, mode);
}

void ct_standardize_image(float *x, int h, int w, int c, const ct_standardize *s) {
    const size_t np = (size_t)h * w, n = np * (size_t)c;
    ct_preprocess_input(x, np, c, s->preprocess);
    if (s->rescale != 0.0f)
        for (size_t i = 0; i < n; i++) x[i] *= s->rescale;
    if (s->samplewise_center) {
        double sum = 0.0;
        for (size_t i = 0; i < n; i++) sum += x[i];
        const float mean = (float)(sum / (double)n);
        for (size_t i = 0; i < n; i++) x[i] -= mean;
    }
    if (s->samplewise_std_normalization) {
        double sum = 0.0, sq = 0.0;
        for (size_t i = 0; i < n; i++) sum += x[i];
        const double mean = sum / (double)n;
        for (size_t i = 0; i < n; i++) sq += ((double)x[i] - mean) * ((double)x[i] - mean);
        const float sd = (float)sqrt(sq / (double)n) + 1e-6f;
        for (size_t i = 0; i < n; i++) x[i] /= sd;
    }
    if (s->featurewise_center)
        for (size_t i = 0; i < np; i++)
            for (int k = 0; k < c; k++) x[i * c + k] -= s->mean[k];
    if (s->featurewise_std_normalization) {
        float sd[4];
        for (int k = 0; k < c; k++) sd[k] = s->std[k] + 1e-6f;
        for (size_t i = 0; i < np; i++)
            for (int k = 0; k < c; k++) x[i * c + k] /= sd[k];
    }
}
