/* The CUDA backend's augment_standardize op against the CPU backend's.
 *
 * The CPU op is the oracle: test_augment_op.c shows it equals the loader's training stream.
 * Here both backends run the op on the same random batches (uint8 noise, which makes any wrong
 * sample position visible, and float images with values far outside 0..255) for many
 * configurations: no augmentation with each preprocess_input mode; rotation + zoom + shift +
 * shear + flips under each fill mode, bilinear and nearest; channel shift and brightness;
 * grey and RGBA images; each shift kind; samplewise and featurewise statistics on images large
 * enough to need several blocks per image. The device output starts as NaN, so an element the
 * kernel fails to write fails the test; each device run is repeated and must give the same bits
 * (the reductions use a fixed order). Finally the device path of a training step, a raw loader
 * batch copied to the device and augmented there, is compared with the float loader.
 *
 * Tolerances. cuda/augment.cu is compiled with --fmad=false, so every float operation of the
 * kernel is the IEEE operation the CPU's C code performs, in the same order: the outputs agree
 * bit for bit, except where (a) the affine matrix, built in double with CUDA's cos/sin (within
 * 2 ulp of double) rather than glibc's, rounds to another float - a chance of about 2^-28 per
 * entry, moving a sampling coordinate by ~1e-7 pixel - or (b) the samplewise sums, added in
 * double in another order, round to another float mean or deviation (one ulp, 6e-8 relative).
 * With bilinear sampling either moves a value by at most ~1e-7 * 255, but it can flip a
 * truncation (brightness truncates to uint8) by one grey level or, with nearest sampling, the
 * pixel chosen. Hence:
 *  - MISMATCH: |gpu - cpu| > 1e-3 * max(1, |cpu|), or a NaN on one side only. At most 0.1% of
 *    the elements may mismatch (none is expected);
 *  - ‖gpu - cpu‖ / ‖cpu‖ <= 1e-5 without brightness and with bilinear sampling (rounding
 *    effects are ~1e-7), <= 1e-3 with brightness (one flipped grey level in a 30,000-element
 *    batch is ~1e-4), and not checked norm-wise with nearest sampling (one flipped pixel moves
 *    the norm by ~1e-2; MISMATCH bounds the count instead).
 * The worst figures of every case are logged, so a run on a GPU shows the real margins.
 *
 * Without a usable device every test is skipped, visibly, with the reason. */
#include "test_data_util.h" /* first: it sets _XOPEN_SOURCE */

#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/backend.h"
#include "cutune/cuda.h"
#include "data/data.h"

#define SEED 0xA11CE5EEDULL
#define EPOCH 3

#define MISMATCH_FRACTION 1e-3
#define REL_PLAIN 1e-5
#define REL_BRIGHTNESS 1e-3
#define REL_UNCHECKED 0.0 /* nearest sampling: the count of mismatches only */

static ct_backend cpu, gpu;
static bool have_gpu;

static void setup(void) {
    if (!tu_gpu_usable()) return;
    cr_assert_eq(ct_backend_cpu_init(&cpu, 0), CT_OK, "cpu backend: %s", ct_last_error());
    cr_assert_eq(ct_backend_cuda_init(&gpu, 0), CT_OK, "cuda backend: %s", ct_last_error());
    have_gpu = true;
}

static void teardown(void) {
    if (!have_gpu) return;
    ct_backend_free(&gpu);
    ct_backend_free(&cpu);
}

TestSuite(cuda_augment, .init = setup, .fini = teardown, .timeout = 600);

#define OK(call) cr_assert_eq((call), CT_OK, "%s: %s", #call, ct_last_error())

/* ---- one case ------------------------------------------------------------------------------ */

typedef struct aug_case {
    const char *name;
    int n, h, w, c;
    bool float_input;       /* float pixels in [lo, hi) instead of uint8 noise */
    float lo, hi;
    ct_augment_config aug;  /* all zero: none */
    bool no_aug;            /* pass NULL instead of &aug */
    ct_standardize std;
    double rel_tol;         /* REL_* above */
} aug_case;

static void *gpu_alloc(size_t bytes) {
    void *p = NULL;
    OK(gpu.ops->alloc(gpu.ctx, &p, bytes));
    return p;
}

static void gpu_put(void *dst, const void *src, size_t bytes) {
    OK(gpu.ops->copy_to_device(gpu.ctx, dst, src, bytes));
}

static void poison(float *x, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] = NAN;
}

/* Runs the op on the device into `dev_out` (poisoned first) and returns the host copy. */
static float *run_gpu(const aug_case *k, float *dev_out, const uint8_t *dev_u8,
                      const float *dev_f32, const uint32_t *dev_idx, size_t count) {
    float *h = malloc(count * sizeof *h);
    cr_assert_not_null(h);
    poison(h, count);
    gpu_put(dev_out, h, count * sizeof *h);
    OK(gpu.ops->augment_standardize(gpu.ctx, dev_out, dev_u8, dev_f32, dev_idx, k->n, k->h, k->w,
                                    k->c, k->no_aug ? NULL : &k->aug, &k->std, SEED, EPOCH));
    OK(gpu.ops->copy_to_host(gpu.ctx, h, dev_out, count * sizeof *h));
    return h;
}

/* Compares gpu with cpu as the header comment says; returns the number of mismatches. */
static size_t compare(const char *name, const float *g, const float *c, size_t count,
                      double rel_tol) {
    size_t mismatches = 0, identical = 0, first_bad = (size_t)-1;
    double num = 0.0, den = 0.0, worst = 0.0;
    for (size_t i = 0; i < count; i++) {
        const double d = (double)g[i] - (double)c[i];
        const bool nan_g = isnan(g[i]), nan_c = isnan(c[i]);
        if (memcmp(&g[i], &c[i], sizeof(float)) == 0) identical++;
        bool bad = nan_g != nan_c || (!nan_g && fabs(d) > 1e-3 * fmax(1.0, fabs((double)c[i])));
        if (bad) {
            if (first_bad == (size_t)-1) first_bad = i;
            mismatches++;
        }
        if (!nan_g && !nan_c) {
            num += d * d;
            den += (double)c[i] * c[i];
            if (fabs(d) > worst) worst = fabs(d);
        }
    }
    const double rel = den > 0.0 ? sqrt(num / den) : sqrt(num);
    cr_log_info("%s: %zu of %zu elements bit-identical, %zu mismatches, rel err %.3g, worst "
                "|diff| %.3g",
                name, identical, count, mismatches, rel, worst);
    cr_expect(mismatches <= (size_t)(MISMATCH_FRACTION * (double)count),
              "%s: %zu of %zu elements differ (first at %zu: gpu %.9g, cpu %.9g)", name,
              mismatches, count, first_bad, first_bad < count ? (double)g[first_bad] : 0.0,
              first_bad < count ? (double)c[first_bad] : 0.0);
    if (rel_tol > 0.0)
        cr_expect_leq(rel, rel_tol, "%s: |gpu - cpu| / |cpu| = %.3g > %.3g", name, rel, rel_tol);
    return mismatches;
}

static void run_case(const aug_case *k) {
    const size_t count = (size_t)k->n * k->h * k->w * k->c;
    uint8_t *u8 = NULL;
    float *f32 = NULL;
    {
        float *tmp = malloc(count * sizeof *tmp);
        cr_assert_not_null(tmp);
        /* A stream per case, so every case sees fresh data. */
        uint32_t tag = 0;
        for (const char *p = k->name; *p; p++) tag = tag * 31u + (uint8_t)*p;
        if (k->float_input) {
            tu_fill(tmp, count, tag, k->lo, k->hi);
            f32 = tmp;
        } else {
            tu_fill(tmp, count, tag, 0.0f, 256.0f);
            u8 = malloc(count);
            cr_assert_not_null(u8);
            for (size_t i = 0; i < count; i++) u8[i] = (uint8_t)tmp[i];
            free(tmp);
        }
    }
    /* Dataset indices that are neither 0..n-1 nor in order, as a shuffled batch's are. */
    uint32_t *idx = malloc((size_t)k->n * sizeof *idx);
    cr_assert_not_null(idx);
    for (int i = 0; i < k->n; i++) idx[i] = (uint32_t)(1000 + 37 * (k->n - i));

    /* The CPU backend's memory is host memory. */
    float *want = malloc(count * sizeof *want);
    cr_assert_not_null(want);
    poison(want, count);
    OK(cpu.ops->augment_standardize(cpu.ctx, want, u8, f32, idx, k->n, k->h, k->w, k->c,
                                    k->no_aug ? NULL : &k->aug, &k->std, SEED, EPOCH));

    uint8_t *d_u8 = NULL;
    float *d_f32 = NULL;
    if (u8) {
        d_u8 = gpu_alloc(count);
        gpu_put(d_u8, u8, count);
    } else {
        d_f32 = gpu_alloc(count * sizeof(float));
        gpu_put(d_f32, f32, count * sizeof(float));
    }
    uint32_t *d_idx = gpu_alloc((size_t)k->n * sizeof *d_idx);
    gpu_put(d_idx, idx, (size_t)k->n * sizeof *idx);
    float *d_out = gpu_alloc(count * sizeof(float));

    float *got = run_gpu(k, d_out, d_u8, d_f32, d_idx, count);
    compare(k->name, got, want, count, k->rel_tol);
    float *again = run_gpu(k, d_out, d_u8, d_f32, d_idx, count);
    cr_expect(memcmp(got, again, count * sizeof(float)) == 0,
              "%s: two device runs on the same input differ", k->name);

    free(again);
    free(got);
    gpu.ops->release(gpu.ctx, d_out);
    gpu.ops->release(gpu.ctx, d_idx);
    gpu.ops->release(gpu.ctx, d_f32);
    gpu.ops->release(gpu.ctx, d_u8);
    free(want);
    free(idx);
    free(f32);
    free(u8);
}

/* Rotation, both shifts, shear, zoom and both flips. */
static ct_augment_config geometry(ct_fill_mode fill, bool nearest) {
    ct_augment_config a = {0};
    a.rotation_range = 30.0f;
    a.width_shift = (ct_shift_range){CT_SHIFT_FRACTION, 0.2f};
    a.height_shift = (ct_shift_range){CT_SHIFT_FRACTION, 0.15f};
    a.shear_range = 10.0f;
    a.zoom_lo = 0.75f;
    a.zoom_hi = 1.3f;
    a.horizontal_flip = a.vertical_flip = true;
    a.fill_mode = fill;
    a.cval = 17.0f;
    a.nearest_sampling = nearest;
    return a;
}

static ct_augment_config everything(ct_fill_mode fill) {
    ct_augment_config a = geometry(fill, false);
    a.channel_shift_range = 40.0f;
    a.brightness_lo = 0.6f;
    a.brightness_hi = 1.4f;
    return a;
}

static const ct_fill_mode fills[4] = {CT_FILL_NEAREST, CT_FILL_CONSTANT, CT_FILL_REFLECT,
                                      CT_FILL_WRAP};
static const char *fill_names[4] = {"nearest", "constant", "reflect", "wrap"};

/* ---- tests ------------------------------------------------------------------------------- */

Test(cuda_augment, no_augmentation_each_preprocess_mode) {
    TU_REQUIRE_GPU();
    static const ct_preprocess_mode modes[4] = {CT_PREPROCESS_NONE, CT_PREPROCESS_CAFFE,
                                                CT_PREPROCESS_TF, CT_PREPROCESS_TORCH};
    for (int i = 0; i < 4; i++) {
        char name[64];
        snprintf(name, sizeof name, "no augmentation, preprocess %d", (int)modes[i]);
        aug_case k = {.name = name, .n = 5, .h = 37, .w = 53, .c = 3, .no_aug = true,
                      .rel_tol = REL_PLAIN};
        k.std.preprocess = modes[i];
        k.std.rescale = i == 0 ? 1.0f / 255.0f : 0.0f;
        run_case(&k);
    }
    /* A config that is all zero augments nothing either. */
    aug_case z = {.name = "zero config", .n = 3, .h = 32, .w = 32, .c = 3, .rel_tol = REL_PLAIN};
    z.std.preprocess = CT_PREPROCESS_CAFFE;
    run_case(&z);
}

Test(cuda_augment, geometry_each_fill_mode_bilinear) {
    TU_REQUIRE_GPU();
    for (int f = 0; f < 4; f++) {
        char name[64];
        snprintf(name, sizeof name, "geometry, fill %s, bilinear", fill_names[f]);
        aug_case k = {.name = name, .n = 6, .h = 37, .w = 53, .c = 3,
                      .aug = geometry(fills[f], false), .rel_tol = REL_PLAIN};
        k.std.preprocess = CT_PREPROCESS_CAFFE;
        run_case(&k);
    }
}

Test(cuda_augment, geometry_each_fill_mode_nearest_sampling) {
    TU_REQUIRE_GPU();
    for (int f = 0; f < 4; f++) {
        char name[64];
        snprintf(name, sizeof name, "geometry, fill %s, nearest", fill_names[f]);
        aug_case k = {.name = name, .n = 6, .h = 41, .w = 29, .c = 3,
                      .aug = geometry(fills[f], true), .rel_tol = REL_UNCHECKED};
        k.std.preprocess = CT_PREPROCESS_CAFFE;
        run_case(&k);
    }
}

Test(cuda_augment, channel_shift_and_brightness_each_fill_mode) {
    TU_REQUIRE_GPU();
    for (int f = 0; f < 4; f++) {
        char name[64];
        snprintf(name, sizeof name, "everything, fill %s", fill_names[f]);
        aug_case k = {.name = name, .n = 6, .h = 37, .w = 53, .c = 3, .aug = everything(fills[f]),
                      .rel_tol = REL_BRIGHTNESS};
        k.std.preprocess = CT_PREPROCESS_CAFFE;
        run_case(&k);
    }
    /* Each colour step alone, without any geometry. */
    aug_case cs = {.name = "channel shift alone", .n = 4, .h = 33, .w = 35, .c = 3,
                   .rel_tol = REL_PLAIN};
    cs.aug.channel_shift_range = 60.0f;
    run_case(&cs);
    aug_case br = {.name = "brightness alone", .n = 4, .h = 33, .w = 35, .c = 3,
                   .rel_tol = REL_BRIGHTNESS};
    br.aug.brightness_lo = 0.5f;
    br.aug.brightness_hi = 1.5f;
    run_case(&br);
}

Test(cuda_augment, grey_two_channel_and_rgba_images) {
    TU_REQUIRE_GPU();
    for (int c = 1; c <= 4; c++) {
        if (c == 3) continue;
        char name[64];
        snprintf(name, sizeof name, "everything, %d channel%s", c, c > 1 ? "s" : "");
        /* RGBA: brightness leaves the alpha channel alone, as PIL does. */
        aug_case k = {.name = name, .n = 5, .h = 34, .w = 39, .c = c,
                      .aug = everything(CT_FILL_REFLECT), .rel_tol = REL_BRIGHTNESS};
        k.std.preprocess = CT_PREPROCESS_TF;
        run_case(&k);
    }
}

Test(cuda_augment, each_shift_kind) {
    TU_REQUIRE_GPU();
    static const ct_shift_kind kinds[3] = {CT_SHIFT_FRACTION, CT_SHIFT_PIXELS, CT_SHIFT_CHOICE};
    static const float values[3] = {0.3f, 6.5f, 7.0f};
    for (int i = 0; i < 3; i++) {
        char name[64];
        snprintf(name, sizeof name, "shift kind %d", (int)kinds[i]);
        aug_case k = {.name = name, .n = 8, .h = 31, .w = 45, .c = 3, .rel_tol = REL_PLAIN};
        k.aug.width_shift = (ct_shift_range){kinds[i], values[i]};
        k.aug.height_shift = (ct_shift_range){kinds[i], values[i]};
        k.aug.fill_mode = CT_FILL_CONSTANT;
        run_case(&k);
    }
}

Test(cuda_augment, float_images_outside_0_255) {
    TU_REQUIRE_GPU();
    /* Iceberg-like dB values: brightness takes its stretch path, and the fill value and the
     * channel shift's clip range are far from pixel values. */
    for (int f = 0; f < 4; f++) {
        char name[64];
        snprintf(name, sizeof name, "float dB images, fill %s", fill_names[f]);
        aug_case k = {.name = name, .n = 6, .h = 75, .w = 75, .c = 3, .float_input = true,
                      .lo = -45.0f, .hi = 5.0f, .aug = everything(fills[f]),
                      .rel_tol = REL_BRIGHTNESS};
        k.aug.channel_shift_range = 5.0f;
        k.aug.cval = -30.0f;
        run_case(&k);
    }
}

Test(cuda_augment, samplewise_and_featurewise_statistics) {
    TU_REQUIRE_GPU();
    /* 224x224 images: the statistics passes split each image over several blocks. */
    for (int variant = 0; variant < 4; variant++) {
        char name[96];
        snprintf(name, sizeof name, "statistics, variant %d", variant);
        aug_case k = {.name = name, .n = 3, .h = 224, .w = 224, .c = 3,
                      .rel_tol = variant == 3 ? REL_BRIGHTNESS : REL_PLAIN};
        k.std.samplewise_center = variant != 1;
        k.std.samplewise_std_normalization = variant != 0;
        k.std.featurewise_center = k.std.featurewise_std_normalization = variant >= 2;
        const float mean[4] = {1.5f, -2.0f, 0.25f, 0}, sd[4] = {0.8f, 1.7f, 2.5f, 1};
        memcpy(k.std.mean, mean, sizeof mean);
        memcpy(k.std.std, sd, sizeof sd);
        k.std.preprocess = variant == 2 ? CT_PREPROCESS_TORCH : CT_PREPROCESS_CAFFE;
        k.std.rescale = variant == 1 ? 0.01f : 0.0f;
        if (variant >= 2) k.aug = geometry(CT_FILL_WRAP, false);
        if (variant == 3) k.aug = everything(CT_FILL_CONSTANT);
        run_case(&k);
    }
    /* Samplewise statistics of float images, one image per batch and many. */
    aug_case one = {.name = "samplewise, one float image", .n = 1, .h = 75, .w = 75, .c = 3,
                    .float_input = true, .lo = -45.0f, .hi = 5.0f, .rel_tol = REL_PLAIN};
    one.std.samplewise_center = one.std.samplewise_std_normalization = true;
    run_case(&one);
    aug_case many = one;
    many.name = "samplewise, 300 float images";
    many.n = 300;
    many.h = many.w = 16;
    run_case(&many);
}

/* The device path of a training step: a raw loader batch (uint8) copied to the device and
 * augmented there equals what the float loader computed on the CPU for the same samples. */
Test(cuda_augment, raw_loader_batches_on_the_device_equal_the_float_loader) {
    TU_REQUIRE_GPU();
    enum { SIDE = 48, PER_CLASS = 6, B = 5 };
    char *dir = td_tmpdir();
    uint8_t px[SIDE * SIDE * 3];
    float f[SIDE * SIDE * 3];
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < PER_CLASS; i++) {
            tu_fill(f, sizeof px, (uint32_t)(700 + k * PER_CLASS + i), 0.0f, 256.0f);
            for (size_t j = 0; j < sizeof px; j++) px[j] = (uint8_t)f[j];
            char rel[64];
            snprintf(rel, sizeof rel, "%s/%02d.png", k ? "b" : "a", i);
            td_write_png8(td_path(dir, rel), px, SIDE, SIDE, 3);
        }
    ct_dataset *ds = NULL;
    OK(ct_dataset_open_folder(&ds, dir, NULL));
    ct_loader_config cfg;
    ct_loader_config_defaults(&cfg);
    cfg.batch_size = B;
    cfg.seed = 77;
    cfg.image.target_h = cfg.image.target_w = SIDE;
    cfg.standardize.preprocess = CT_PREPROCESS_CAFFE;
    ct_augment_config aug = everything(CT_FILL_NEAREST);
    ct_loader *lf = NULL, *lr = NULL;
    cfg.output = CT_OUTPUT_FLOAT;
    OK(ct_loader_init_training(&lf, ds, &cfg, &aug));
    cfg.output = CT_OUTPUT_RAW;
    OK(ct_loader_init_training(&lr, ds, &cfg, &aug));
    const size_t hwc = (size_t)SIDE * SIDE * 3;
    uint8_t *d_u8 = gpu_alloc(B * hwc);
    uint32_t *d_idx = gpu_alloc(B * sizeof(uint32_t));
    float *d_out = gpu_alloc(B * hwc * sizeof(float));
    float *got = malloc(B * hwc * sizeof *got);
    cr_assert_not_null(got);
    for (uint32_t epoch = 0; epoch < 2; epoch++) {
        OK(ct_loader_begin_epoch(lf, epoch));
        OK(ct_loader_begin_epoch(lr, epoch));
        for (;;) {
            const ct_batch *bf = NULL, *br = NULL;
            OK(ct_loader_next(lf, &bf));
            OK(ct_loader_next(lr, &br));
            cr_assert_eq(bf == NULL, br == NULL);
            if (bf == NULL) break;
            const size_t count = (size_t)br->n * hwc;
            gpu_put(d_u8, br->x_u8, count);
            gpu_put(d_idx, br->index, (size_t)br->n * sizeof(uint32_t));
            poison(got, count);
            gpu_put(d_out, got, count * sizeof(float));
            OK(gpu.ops->augment_standardize(gpu.ctx, d_out, d_u8, NULL, d_idx, br->n, SIDE, SIDE,
                                            3, &aug, &cfg.standardize, cfg.seed, epoch));
            OK(gpu.ops->copy_to_host(gpu.ctx, got, d_out, count * sizeof(float)));
            char name[64];
            snprintf(name, sizeof name, "loader epoch %u batch %u", epoch, br->number);
            compare(name, got, bf->x, count, REL_BRIGHTNESS);
            ct_loader_release(lf, bf);
            ct_loader_release(lr, br);
        }
    }
    free(got);
    gpu.ops->release(gpu.ctx, d_out);
    gpu.ops->release(gpu.ctx, d_idx);
    gpu.ops->release(gpu.ctx, d_u8);
    ct_loader_free(lr);
    ct_loader_free(lf);
    ct_dataset_free(ds);
    td_rmrf(dir);
}

Test(cuda_augment, bad_arguments_say_why) {
    TU_REQUIRE_GPU();
    uint8_t *d_u8 = gpu_alloc(64);
    float *d_out = gpu_alloc(64 * sizeof(float));
    uint32_t *d_idx = gpu_alloc(2 * sizeof(uint32_t));
    ct_standardize s = {0};
    ct_augment_config aug = everything(CT_FILL_NEAREST);
    const ct_backend_ops *o = gpu.ops;
    cr_expect_eq(o->augment_standardize(gpu.ctx, d_out, d_u8, d_out, d_idx, 2, 2, 2, 3, &aug, &s,
                                        1, 0),
                 CT_EINVAL, "both inputs");
    cr_expect_eq(o->augment_standardize(gpu.ctx, d_out, d_u8, NULL, d_idx, 2, 2, 2, 5, &aug, &s,
                                        1, 0),
                 CT_EINVAL, "5 channels");
    s.preprocess = CT_PREPROCESS_CAFFE;
    cr_expect_eq(o->augment_standardize(gpu.ctx, d_out, d_u8, NULL, d_idx, 2, 2, 2, 1, &aug, &s,
                                        1, 0),
                 CT_EINVAL, "caffe on grey");
    s.preprocess = CT_PREPROCESS_NONE;
    cr_expect_eq(o->augment_standardize(gpu.ctx, d_out, d_u8, NULL, NULL, 2, 2, 2, 3, &aug, &s,
                                        1, 0),
                 CT_EINVAL, "no sample index");
    cr_expect_eq(o->augment_standardize(gpu.ctx, d_out, d_u8, NULL, d_idx, 0, 2, 2, 3, &aug, &s,
                                        1, 0),
                 CT_OK, "empty batch");
    /* The context is still usable after refusals. */
    OK(o->augment_standardize(gpu.ctx, d_out, d_u8, NULL, d_idx, 2, 2, 2, 3, &aug, &s, 1, 0));
    OK(o->synchronize(gpu.ctx));
    gpu.ops->release(gpu.ctx, d_idx);
    gpu.ops->release(gpu.ctx, d_out);
    gpu.ops->release(gpu.ctx, d_u8);
}
