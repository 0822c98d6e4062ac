/* The CUDA augmentation kernel's decomposition, run on the host, against the CPU op.
 *
 * cuda/augment.cu splits the reference's per-image pipeline into passes: parameters per image,
 * statistics passes (the affine output's min/max, from which the brightness range is derived
 * through the channel shift; the samplewise mean; the samplewise variance as Σx² − (Σx)²/n),
 * and one pass per output pixel that reads through the flips and the affine tap. That
 * decomposition rests on arguments (flips permute pixels; the channel shift is monotone; the
 * variance identity) that a mistake would break on some configurations only. Its per-image and
 * per-pixel functions are __host__ __device__, so this program includes the file and runs them
 * on the host, thread by thread and block by block as the kernels would (the same partial
 * sums, the same tree reduction), and requires the result to equal the CPU backend's
 * augment_standardize bit for bit: on the host both sides are the same IEEE float operations
 * with the same libm. It needs no GPU, so the decomposition is checked on every build with
 * CUDA; test_cuda_augment.c checks the kernels themselves on a device. */
#include <criterion/criterion.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vector>

/* The kernel file itself; only its entry point has external linkage, renamed here so that it
 * cannot clash with the library's copy. */
#define ct_cu_augment_standardize ct_cu_augment_standardize_emulated
#include "augment.cu"
#undef ct_cu_augment_standardize

#include "core/backend.h"
#include "data/data.h"
extern "C" {
#include "util.h" /* a C header without C++ guards */
}

#define SEED 123
#define EPOCH 3

/* The kernels' passes, in run_passes's order, with one host loop per grid dimension. */
template <typename T, int C>
static void emulate(float *out, const T *x, const uint32_t *idx, int n, int h, int w,
                    const ct_augment_config *aug, const ct_standardize &s, int parts) {
    const bool augment = aug != NULL && ct_augment_enabled(aug);
    ct_augment_config cfg;
    memset(&cfg, 0, sizeof cfg);
    if (augment) cfg = *aug;
    const bool need_range = augment && (cfg.channel_shift_range != 0.0f ||
                                        cfg.brightness_lo != 0.0f || cfg.brightness_hi != 0.0f);
    std::vector<aug_image> img((size_t)n);
    for (int i = 0; i < n; i++) img[i] = draw_image(cfg, augment, SEED, EPOCH, idx[i], h, w);
    int stages[3], n_stages = 0;
    if (need_range) stages[n_stages++] = STAGE_AFFINE;
    if (s.samplewise_center) stages[n_stages++] = STAGE_MEAN;
    if (s.samplewise_std_normalization) stages[n_stages++] = STAGE_VAR;
    const int hw = h * w;
    std::vector<aug_partial> part((size_t)parts);
    std::vector<double> s_sum(THREADS), s_sq(THREADS);
    std::vector<float> s_lo(THREADS), s_hi(THREADS);
    for (int si = 0; si < n_stages; si++)
        for (int b = 0; b < n; b++) {
            const T *xb = x + (size_t)b * hw * C;
            for (int j = 0; j < parts; j++) { /* block (j, b) */
                for (int t = 0; t < THREADS; t++) {
                    double sum = 0.0, sq = 0.0;
                    float lo = INFINITY, hi = -INFINITY;
                    for (int p = j * THREADS + t; p < hw; p += parts * THREADS) {
                        float v[4];
                        affine_values<T, C>(v, xb, h, w, img[b], cfg, p / w, p % w);
                        if (stages[si] != STAGE_AFFINE) finish_values<C>(v, img[b], s, stages[si]);
                        for (int k = 0; k < C; k++) {
                            lo = fminf(lo, v[k]);
                            hi = fmaxf(hi, v[k]);
                            sum += (double)v[k];
                            sq += (double)v[k] * (double)v[k];
                        }
                    }
                    s_lo[t] = lo;
                    s_hi[t] = hi;
                    s_sum[t] = sum;
                    s_sq[t] = sq;
                }
                for (int half = THREADS / 2; half > 0; half /= 2)
                    for (int t = 0; t < half; t++) {
                        s_lo[t] = fminf(s_lo[t], s_lo[t + half]);
                        s_hi[t] = fmaxf(s_hi[t], s_hi[t + half]);
                        s_sum[t] += s_sum[t + half];
                        s_sq[t] += s_sq[t + half];
                    }
                part[j].lo = s_lo[0];
                part[j].hi = s_hi[0];
                part[j].sum = s_sum[0];
                part[j].sq = s_sq[0];
            }
            finish_stats(&img[b], part.data(), parts, (double)hw * C, stages[si]);
        }
    for (size_t i = 0; i < (size_t)n * hw; i++) {
        const int b = (int)(i / hw), rc = (int)(i % hw);
        float v[4];
        affine_values<T, C>(v, x + (size_t)b * hw * C, h, w, img[b], cfg, rc / w, rc % w);
        finish_values<C>(v, img[b], s, STAGE_FINAL);
        for (int k = 0; k < C; k++) out[i * C + k] = v[k];
    }
}

static ct_augment_config geometry(ct_fill_mode fill, bool nearest) {
    ct_augment_config a;
    memset(&a, 0, sizeof a);
    a.rotation_range = 30.0f;
    a.width_shift.kind = CT_SHIFT_FRACTION;
    a.width_shift.value = 0.2f;
    a.height_shift.kind = CT_SHIFT_PIXELS;
    a.height_shift.value = 4.5f;
    a.shear_range = 10.0f;
    a.zoom_lo = 0.75f;
    a.zoom_hi = 1.3f;
    a.horizontal_flip = a.vertical_flip = true;
    a.fill_mode = fill;
    a.cval = 17.0f;
    a.nearest_sampling = nearest;
    return a;
}

static ct_augment_config everything(ct_fill_mode fill, bool nearest) {
    ct_augment_config a = geometry(fill, nearest);
    a.channel_shift_range = 40.0f;
    a.brightness_lo = 0.6f;
    a.brightness_hi = 1.4f;
    return a;
}

static ct_standardize plain(ct_preprocess_mode mode) {
    ct_standardize s;
    memset(&s, 0, sizeof s);
    s.preprocess = mode;
    return s;
}

/* Runs one case through the CPU op and the emulation and requires identical bits. */
template <int C>
static void check(const char *name, bool float_input, int n, int h, int w,
                  const ct_augment_config *aug, const ct_standardize &s, int parts) {
    ct_backend cpu;
    cr_assert_eq(ct_backend_cpu_init(&cpu, 1), CT_OK, "%s", ct_last_error());
    const size_t count = (size_t)n * h * w * C;
    std::vector<float> f32(count), want(count, NAN), got(count, NAN);
    uint32_t tag = 0;
    for (const char *p = name; *p; p++) tag = tag * 31u + (unsigned char)*p;
    tu_fill(f32.data(), count, tag, float_input ? -45.0f : 0.0f, float_input ? 5.0f : 256.0f);
    std::vector<uint8_t> u8(count);
    for (size_t i = 0; i < count; i++) u8[i] = (uint8_t)f32[i];
    std::vector<uint32_t> idx((size_t)n);
    for (int i = 0; i < n; i++) idx[i] = (uint32_t)(1000 + 37 * (n - i));
    cr_assert_eq(cpu.ops->augment_standardize(cpu.ctx, want.data(),
                                              float_input ? NULL : u8.data(),
                                              float_input ? f32.data() : NULL, idx.data(), n, h,
                                              w, C, aug, &s, SEED, EPOCH),
                 CT_OK, "%s: %s", name, ct_last_error());
    if (float_input)
        emulate<float, C>(got.data(), f32.data(), idx.data(), n, h, w, aug, s, parts);
    else
        emulate<uint8_t, C>(got.data(), u8.data(), idx.data(), n, h, w, aug, s, parts);
    size_t differ = 0, first = 0;
    for (size_t i = 0; i < count; i++)
        if (memcmp(&got[i], &want[i], sizeof(float)) != 0 && differ++ == 0) first = i;
    cr_expect_eq(differ, 0, "%s: %zu of %zu elements differ (first %zu: emulated %.9g, cpu %.9g)",
                 name, differ, count, first, (double)got[first], (double)want[first]);
    ct_backend_free(&cpu);
}

static const char *fill_names[4] = {"nearest", "constant", "reflect", "wrap"};

Test(augment_emulated, geometry_and_colour_each_fill_mode_and_order) {
    const ct_standardize caffe = plain(CT_PREPROCESS_CAFFE);
    for (int f = 0; f < 4; f++)
        for (int nearest = 0; nearest < 2; nearest++) {
            char name[96];
            ct_augment_config a = everything((ct_fill_mode)f, nearest != 0);
            snprintf(name, sizeof name, "everything, fill %s, %s", fill_names[f],
                     nearest ? "nearest" : "bilinear");
            check<3>(name, false, 5, 37, 53, &a, caffe, 3);
            a = geometry((ct_fill_mode)f, nearest != 0);
            snprintf(name, sizeof name, "geometry, fill %s, %s", fill_names[f],
                     nearest ? "nearest" : "bilinear");
            check<3>(name, false, 5, 37, 53, &a, caffe, 1);
        }
}

Test(augment_emulated, no_augmentation_and_other_channel_counts) {
    check<3>("no augmentation", false, 3, 20, 30, NULL, plain(CT_PREPROCESS_CAFFE), 1);
    const ct_augment_config a = everything(CT_FILL_CONSTANT, false);
    check<1>("grey", false, 4, 33, 21, &a, plain(CT_PREPROCESS_TF), 2);
    check<2>("two channels", false, 4, 33, 21, &a, plain(CT_PREPROCESS_NONE), 2);
    check<4>("rgba", false, 4, 33, 21, &a, plain(CT_PREPROCESS_TF), 2);
}

Test(augment_emulated, float_images_and_samplewise_statistics) {
    ct_augment_config a = everything(CT_FILL_REFLECT, false);
    a.cval = -30.0f;
    a.channel_shift_range = 5.0f;
    ct_standardize s = plain(CT_PREPROCESS_NONE);
    check<3>("float dB images", true, 4, 75, 75, &a, s, 5);
    s.samplewise_center = s.samplewise_std_normalization = true;
    check<3>("float dB images, samplewise", true, 4, 75, 75, &a, s, 5);
    ct_standardize centre = plain(CT_PREPROCESS_NONE), scale = centre;
    centre.samplewise_center = true;
    scale.samplewise_std_normalization = true;
    check<3>("samplewise centre only", false, 3, 40, 40, NULL, centre, 2);
    check<3>("samplewise scaling only", false, 3, 40, 40, NULL, scale, 2);
    const ct_augment_config e = everything(CT_FILL_WRAP, false);
    ct_standardize all = plain(CT_PREPROCESS_TORCH);
    all.rescale = 0.5f;
    all.samplewise_center = all.samplewise_std_normalization = true;
    all.featurewise_center = all.featurewise_std_normalization = true;
    const float mean[4] = {1.5f, -2.0f, 0.25f, 0.0f}, sd[4] = {0.8f, 1.7f, 2.5f, 1.0f};
    memcpy(all.mean, mean, sizeof mean);
    memcpy(all.std, sd, sizeof sd);
    check<3>("every standardisation step", false, 3, 64, 64, &e, all, 4);
}
