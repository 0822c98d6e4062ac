/* The CPU backend's augment_standardize op: the training stream's per-sample work on a raw batch,
 * one image at a time through ct_augment_standardize_image, the very function the loader's
 * workers call. It is therefore the oracle for the CUDA kernel (cuda/augment.cu) and equal, bit
 * for bit, to what a CT_OUTPUT_FLOAT training loader makes of the same samples. Images are
 * independent, so they are spread over the OpenMP threads, each with its own float copy of a
 * uint8 image in the workspace. The flip op (test-time augmentation's mirrored copies) is here
 * too. */
#include <stdlib.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "cpu.h"
#include "data/data.h"

ct_status ct_cpu_augment_standardize(void *ctx, float *out, const uint8_t *in_u8,
                                     const float *in_f32, const uint32_t *sample_index, int n,
                                     int h, int w, int c, const struct ct_augment_config *aug,
                                     const struct ct_standardize *std, uint64_t seed,
                                     uint32_t epoch) {
    ct_cpu_ctx *cx = ctx;
    ct_status s = ct_augment_standardize_check(in_u8, in_f32, n, h, w, c, aug, std);
    if (s != CT_OK) return s;
    if (n == 0) return CT_OK;
    if (sample_index == NULL) return ct_error(CT_EINVAL, "augment_standardize: no sample index");
    const size_t hwc = (size_t)h * w * c;
    int threads = 1;
#ifdef _OPENMP
    threads = omp_get_max_threads();
#endif
    if (threads > n) threads = n;
    /* Scratch is needed only to widen uint8 pixels before the affine step. */
    float *scratch = NULL;
    if (in_u8 != NULL && (s = ct_cpu_workspace(cx, hwc * (size_t)threads, &scratch)) != CT_OK)
        return s;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int i = 0; i < n; i++) {
        int t = 0;
#ifdef _OPENMP
        t = omp_get_thread_num();
#endif
        ct_augment_standardize_image(out + (size_t)i * hwc,
                                     in_u8 != NULL ? in_u8 + (size_t)i * hwc : NULL,
                                     in_f32 != NULL ? in_f32 + (size_t)i * hwc : NULL, h, w, c,
                                     aug, std, seed, epoch, sample_index[i],
                                     scratch != NULL ? scratch + (size_t)t * hwc : NULL);
    }
    return CT_OK;
}

/* Pixel p = y * w + x of an image trades places with its mirror q; the pair is swapped once, by
 * whichever of the two comes first. */
ct_status ct_cpu_flip(void *ctx, float *x, int n, int h, int w, int c, bool horizontal,
                      bool vertical) {
    (void)ctx;
    ct_status s = ct_flip_check(x, n, h, w, c);
    if (s != CT_OK || n == 0 || (!horizontal && !vertical)) return s;
#pragma omp parallel for collapse(2) schedule(static)
    for (int i = 0; i < n; i++)
        for (int y = 0; y < h; y++) {
            float *img = x + (size_t)i * h * w * c;
            const int my = vertical ? h - 1 - y : y;
            for (int px = 0; px < w; px++) {
                const int mx = horizontal ? w - 1 - px : px;
                const size_t p = (size_t)y * w + px, q = (size_t)my * w + mx;
                if (p >= q) continue;
                for (int k = 0; k < c; k++) {
                    float t = img[p * c + k];
                    img[p * c + k] = img[q * c + k];
                    img[q * c + k] = t;
                }
            }
        }
    return CT_OK;
}
