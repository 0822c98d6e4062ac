/* The CPU backend's augment_standardize op is the loader's training stream.
 *
 * The CUDA kernel is checked against the CPU op (test_cuda_augment.c); this file makes the CPU
 * op the oracle by showing that, for the same (seed, epoch, sample), it produces bit for bit
 * what a CT_OUTPUT_FLOAT training loader produces: a raw loader (CT_OUTPUT_RAW) with the same
 * seed delivers the same samples in the same order, and the op applied to its raw batch must
 * equal the float loader's batch. Both a PNG class-folder dataset (uint8 input) and an iceberg
 * JSON file (float input, values far outside 0..255) are covered, with every augmentation and
 * the samplewise and featurewise standardisations, over two epochs. It also checks the op's
 * argument errors. Runs everywhere: no GPU involved. */
#include "test_data_util.h" /* first: it sets _XOPEN_SOURCE */

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/backend.h"
#include "data/data.h"

#define H 29
#define W 31
#define PER_CLASS 7
#define BATCH 4
#define SEED 4242

static ct_backend cpu;
static char *dir;

static void setup(void) {
    cr_assert_eq(ct_backend_cpu_init(&cpu, 2), CT_OK, "%s", ct_last_error());
}

static void teardown(void) {
    ct_backend_free(&cpu);
    td_rmrf(dir);
    dir = NULL;
}

TestSuite(augment_op, .init = setup, .fini = teardown, .timeout = 300);

static ct_augment_config full_augmentation(ct_fill_mode fill) {
    ct_augment_config a = {0};
    a.rotation_range = 25.0f;
    a.width_shift = (ct_shift_range){CT_SHIFT_FRACTION, 0.15f};
    a.height_shift = (ct_shift_range){CT_SHIFT_PIXELS, 3.5f};
    a.shear_range = 8.0f;
    a.zoom_lo = 0.8f;
    a.zoom_hi = 1.25f;
    a.channel_shift_range = 20.0f;
    a.brightness_lo = 0.7f;
    a.brightness_hi = 1.3f;
    a.horizontal_flip = a.vertical_flip = true;
    a.fill_mode = fill;
    a.cval = 11.0f;
    return a;
}

/* Two class folders of noisy PNGs (noise is what makes a wrong sample position visible). */
static void make_folder(void) {
    dir = td_tmpdir();
    uint8_t *px = malloc((size_t)H * W * 3);
    cr_assert_not_null(px);
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < PER_CLASS; i++) {
            float f[H * W * 3];
            tu_fill(f, (size_t)H * W * 3, (uint32_t)(100 + k * PER_CLASS + i), 0.0f, 256.0f);
            for (int j = 0; j < H * W * 3; j++) px[j] = (uint8_t)f[j];
            char rel[64];
            snprintf(rel, sizeof rel, "%s/img_%02d.png", k ? "normal" : "dementia", i);
            td_write_png8(td_path(dir, rel), px, H, W, 3);
        }
    free(px);
}

/* An iceberg file of `n` labelled records with dB-like values in [-45, 5). */
static char *make_iceberg(int n) {
    dir = td_tmpdir();
    char *path = strdup(td_path(dir, "train.json"));
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fprintf(f, "[");
    float *band = malloc(5625 * sizeof *band);
    for (int r = 0; r < n; r++) {
        fprintf(f, "%s{\"id\": \"rec%d\", \"inc_angle\": %d, \"is_iceberg\": %d", r ? ",\n" : "",
                r, 30 + r, r % 2);
        for (int b = 1; b <= 2; b++) {
            tu_fill(band, 5625, (uint32_t)(500 + 2 * r + b), -45.0f, 5.0f);
            fprintf(f, ", \"band_%d\": [", b);
            for (int i = 0; i < 5625; i++) fprintf(f, "%s%.7g", i ? "," : "", band[i]);
            fprintf(f, "]");
        }
        fprintf(f, "}");
    }
    fprintf(f, "]\n");
    fclose(f);
    free(band);
    return path;
}

/* Runs one epoch of a float training loader and of a raw one built from the same config, and
 * compares every batch of the first with the CPU op applied to the second. */
static void compare_epochs(const ct_dataset *ds, ct_loader_config cfg, const ct_augment_config *aug,
                           const char *what) {
    ct_loader *lf = NULL, *lr = NULL;
    cfg.output = CT_OUTPUT_FLOAT;
    cr_assert_eq(ct_loader_init_training(&lf, ds, &cfg, aug), CT_OK, "%s", ct_last_error());
    cfg.output = CT_OUTPUT_RAW;
    cr_assert_eq(ct_loader_init_training(&lr, ds, &cfg, aug), CT_OK, "%s", ct_last_error());
    int h, w, c, k;
    ct_loader_shape(lf, &h, &w, &c, &k);
    const size_t hwc = (size_t)h * w * c;
    float *out = malloc((size_t)cfg.batch_size * hwc * sizeof *out);
    cr_assert_not_null(out);
    size_t compared = 0;
    for (uint32_t epoch = 0; epoch < 2; epoch++) {
        cr_assert_eq(ct_loader_begin_epoch(lf, epoch), CT_OK, "%s", ct_last_error());
        cr_assert_eq(ct_loader_begin_epoch(lr, epoch), CT_OK, "%s", ct_last_error());
        for (;;) {
            const ct_batch *bf = NULL, *br = NULL;
            cr_assert_eq(ct_loader_next(lf, &bf), CT_OK, "%s", ct_last_error());
            cr_assert_eq(ct_loader_next(lr, &br), CT_OK, "%s", ct_last_error());
            cr_assert_eq(bf == NULL, br == NULL);
            if (bf == NULL) break;
            cr_assert_eq(bf->n, br->n);
            cr_assert_eq(memcmp(bf->index, br->index, (size_t)bf->n * sizeof(uint32_t)), 0,
                         "%s: the raw loader delivers other samples", what);
            for (size_t i = 0; i < (size_t)bf->n * hwc; i++) out[i] = NAN;
            cr_assert_eq(cpu.ops->augment_standardize(cpu.ctx, out, br->x_u8,
                                                      br->x_u8 ? NULL : br->x, br->index, br->n,
                                                      h, w, c, aug, &cfg.standardize, cfg.seed,
                                                      epoch),
                         CT_OK, "%s", ct_last_error());
            for (size_t i = 0; i < (size_t)bf->n * hwc; i++)
                if (memcmp(&out[i], &bf->x[i], sizeof(float)) != 0) {
                    cr_assert(false,
                              "%s: epoch %u batch %u element %zu: op %.9g, loader %.9g", what,
                              epoch, bf->number, i, (double)out[i], (double)bf->x[i]);
                }
            compared += (size_t)bf->n;
            ct_loader_release(lf, bf);
            ct_loader_release(lr, br);
        }
    }
    cr_assert_eq(compared, 2 * ct_dataset_count(ds), "%s: %zu samples compared", what, compared);
    free(out);
    ct_loader_free(lr);
    ct_loader_free(lf);
}

Test(augment_op, equals_the_float_loader_on_png_folders) {
    make_folder();
    ct_dataset *ds = NULL;
    cr_assert_eq(ct_dataset_open_folder(&ds, dir, NULL), CT_OK, "%s", ct_last_error());
    ct_loader_config cfg;
    ct_loader_config_defaults(&cfg);
    cfg.batch_size = BATCH;
    cfg.seed = SEED;
    cfg.threads = 3;
    cfg.image.target_h = H;
    cfg.image.target_w = W;
    cfg.standardize.preprocess = CT_PREPROCESS_CAFFE;
    static const ct_fill_mode fills[] = {CT_FILL_NEAREST, CT_FILL_CONSTANT, CT_FILL_REFLECT,
                                         CT_FILL_WRAP};
    for (int f = 0; f < 4; f++) {
        ct_augment_config aug = full_augmentation(fills[f]);
        aug.nearest_sampling = f == 3;
        char what[64];
        snprintf(what, sizeof what, "png, fill mode %d", (int)fills[f]);
        compare_epochs(ds, cfg, &aug, what);
    }
    /* No augmentation: the op is the standardisation alone. */
    compare_epochs(ds, cfg, NULL, "png, no augmentation");
    /* Every standardisation step at once. */
    cfg.standardize.preprocess = CT_PREPROCESS_TF;
    cfg.standardize.rescale = 0.5f;
    cfg.standardize.samplewise_center = cfg.standardize.samplewise_std_normalization = true;
    cfg.standardize.featurewise_center = cfg.standardize.featurewise_std_normalization = true;
    const float mean[4] = {0.1f, -0.2f, 0.05f, 0}, sd[4] = {0.9f, 1.1f, 1.3f, 1};
    memcpy(cfg.standardize.mean, mean, sizeof mean);
    memcpy(cfg.standardize.std, sd, sizeof sd);
    ct_augment_config aug = full_augmentation(CT_FILL_REFLECT);
    compare_epochs(ds, cfg, &aug, "png, samplewise and featurewise");
    ct_dataset_free(ds);
}

Test(augment_op, equals_the_float_loader_on_iceberg_records) {
    char *path = make_iceberg(6);
    ct_dataset *ds = NULL;
    cr_assert_eq(ct_dataset_open_iceberg(&ds, path, NULL), CT_OK, "%s", ct_last_error());
    ct_loader_config cfg;
    ct_loader_config_defaults(&cfg);
    cfg.batch_size = BATCH;
    cfg.seed = SEED;
    cfg.class_mode = CT_CLASS_BINARY;
    ct_augment_config aug = full_augmentation(CT_FILL_CONSTANT);
    /* dB values lie outside 0..255, so brightness takes its stretch path. */
    compare_epochs(ds, cfg, &aug, "iceberg");
    cfg.standardize.samplewise_center = cfg.standardize.samplewise_std_normalization = true;
    compare_epochs(ds, cfg, &aug, "iceberg, samplewise");
    ct_dataset_free(ds);
    free(path);
}

Test(augment_op, bad_arguments_say_why) {
    float out[2 * 4 * 4 * 5], f32[2 * 4 * 4 * 5] = {0};
    uint8_t u8[2 * 4 * 4 * 5] = {0};
    uint32_t idx[2] = {0, 1};
    ct_standardize s = {0};
    ct_augment_config aug = full_augmentation(CT_FILL_NEAREST);
    const ct_backend_ops *o = cpu.ops;
    cr_expect_eq(o->augment_standardize(cpu.ctx, out, u8, f32, idx, 2, 4, 4, 3, &aug, &s, 1, 0),
                 CT_EINVAL, "both inputs");
    cr_expect(strstr(ct_last_error(), "exactly one input") != NULL, "%s", ct_last_error());
    cr_expect_eq(o->augment_standardize(cpu.ctx, out, NULL, NULL, idx, 2, 4, 4, 3, &aug, &s, 1, 0),
                 CT_EINVAL, "no input");
    cr_expect_eq(o->augment_standardize(cpu.ctx, out, u8, NULL, idx, 2, 4, 4, 5, &aug, &s, 1, 0),
                 CT_EINVAL, "5 channels");
    s.preprocess = CT_PREPROCESS_CAFFE;
    cr_expect_eq(o->augment_standardize(cpu.ctx, out, u8, NULL, idx, 2, 4, 4, 1, &aug, &s, 1, 0),
                 CT_EINVAL, "caffe on grey");
    cr_expect(strstr(ct_last_error(), "3-channel") != NULL, "%s", ct_last_error());
    s.preprocess = CT_PREPROCESS_NONE;
    aug.fill_mode = (ct_fill_mode)9;
    cr_expect_eq(o->augment_standardize(cpu.ctx, out, u8, NULL, idx, 2, 4, 4, 3, &aug, &s, 1, 0),
                 CT_EINVAL, "fill mode");
    aug.fill_mode = CT_FILL_NEAREST;
    cr_expect_eq(o->augment_standardize(cpu.ctx, out, u8, NULL, idx, -1, 4, 4, 3, &aug, &s, 1, 0),
                 CT_EINVAL, "negative batch");
    cr_expect_eq(o->augment_standardize(cpu.ctx, out, u8, NULL, NULL, 2, 4, 4, 3, &aug, &s, 1, 0),
                 CT_EINVAL, "no sample index");
    s.featurewise_center = true;
    s.mean[0] = NAN;
    cr_expect_eq(o->augment_standardize(cpu.ctx, out, u8, NULL, idx, 2, 4, 4, 3, &aug, &s, 1, 0),
                 CT_EINVAL, "featurewise mean not set");
    s.featurewise_center = false;
    /* An empty batch is nothing to do, not an error. */
    cr_expect_eq(o->augment_standardize(cpu.ctx, out, u8, NULL, idx, 0, 4, 4, 3, &aug, &s, 1, 0),
                 CT_OK);
}
