/* `cutune train --device cuda` end to end, through the CLI a user types: the streamed training
 * step (pinned loader buffers, the copy stream, double-buffered staging slots, augmentation and
 * preprocessing in the device kernel, one wait per step) against the same run on the CPU
 * backend; the loader path against the device path on CUDA; the iceberg two-input model; and the
 * out-of-memory message naming a batch size that then does fit.
 *
 * Tolerances: the runs start from the same Glorot weights (same seed) and see the same batches
 * and augmentation draws; only float rounding differs (FP32 here: CUTUNE_PRECISION=fp32, where
 * test_cuda_model bounds one step's loss at 1e-3 and ten steps' at 2e-3 relative). Six SGD steps
 * at lr 1e-3 stay in that regime: each epoch's mean loss within 5e-3 relative, accuracy (a count
 * of thresholded probabilities) may differ by a sample near 0.5, so it is not compared.
 *
 * Without a usable device every test is skipped, visibly, with the reason. */
#include <criterion/logging.h>

#include "cutune/cuda.h"
#include "train_cli_util.h"
#include "util.h"

static bool have_gpu;

static void setup(void) {
    if (!tu_gpu_usable()) return;
    have_gpu = true;
    tc_setup();
}

static void teardown(void) {
    if (have_gpu) tc_teardown();
}

TestSuite(cuda_train, .init = setup, .fini = teardown, .timeout = 900);

#define FP32 "CUTUNE_PRECISION=fp32"

/* The whole network trains (so every conv's backward runs), with augmentation. */
#define RUN_FLAGS                                                                              \
    "--data %s/d/train --val %s/d/val --input-size 32 --batch-size 4 --weights none "          \
    "--threads 2 --head " TC_DROP_HEAD " --strategy all --momentum 0.9 --lr 0.001 --epochs 2 " \
    "--horizontal-flip --rotation-range 15 --zoom-range 0.1 --verbose 2 --deterministic"

static void expect_close_logs(const char *a, const char *b, double tol, const char *what) {
    tc_csv *la = tc_csv_read(tc_path("%s/log.csv", a));
    tc_csv *lb = tc_csv_read(tc_path("%s/log.csv", b));
    cr_assert_eq(la->rows, lb->rows, "%s: %d vs %d epochs", what, la->rows, lb->rows);
    const char *cols[] = {"loss", "val_loss"};
    for (int k = 0; k < 2; k++) {
        int ca = tc_col(la, cols[k]), cb = tc_col(lb, cols[k]);
        for (int r = 0; r < la->rows; r++) {
            double x = la->v[r][ca], y = lb->v[r][cb];
            double d = fabs(x - y) / fmax(fabs(x), 1e-12);
            cr_log_info("%s: epoch %d %s %.7f vs %.7f (relative %.2g)", what, r + 1, cols[k], x,
                        y, d);
            cr_expect(d <= tol, "%s: epoch %d %s %.7f vs %.7f: relative %.3g > %.3g", what, r + 1,
                      cols[k], x, y, d, tol);
        }
    }
    free(la);
    free(lb);
}

Test(cuda_train, streamed_device_path_follows_the_cpu_run) {
    TU_REQUIRE_GPU();
    char flags[1024];
    snprintf(flags, sizeof flags, RUN_FLAGS, D, D);
    TC_MUST(FP32, "train %s --device cpu --out %s", flags, tc_path("cpu"));
    TC_MUST(FP32, "train %s --device cuda --out %s", flags, tc_path("cuda"));
    cr_expect(strstr(tc_out, "augmentation: on the device") != NULL, "%s", tc_out);
    expect_close_logs("cpu", "cuda", 5e-3, "cpu vs cuda (device augmentation)");
    /* What the run wrote loads back and predicts on either backend. */
    TC_MUST(NULL, "evaluate --model %s --data %s/d/val --device cuda",
            tc_path("cuda/final.h5"), D);
}

Test(cuda_train, loader_path_equals_device_path_on_cuda) {
    TU_REQUIRE_GPU();
    char flags[1024];
    snprintf(flags, sizeof flags, RUN_FLAGS, D, D);
    TC_MUST(FP32, "train %s --device cuda --augment-on device --out %s", flags, tc_path("dev"));
    cr_expect(strstr(tc_out, "augmentation: on the device") != NULL, "%s", tc_out);
    TC_MUST(FP32, "train %s --device cuda --augment-on loader --out %s", flags, tc_path("ldr"));
    cr_expect(strstr(tc_out, "augmentation: in the loader threads") != NULL, "%s", tc_out);
    /* The same inputs up to the kernel's rounding (test_cuda_augment), the same arithmetic. */
    expect_close_logs("dev", "ldr", 5e-3, "cuda: device vs loader augmentation");
}

/* Predictions streamed on the device (raw pixels standardised by the kernel, the flipped views
 * made from the batch on the device) against the CPU's, and the loader path against the device
 * path, on image folders (uint8 batches; the iceberg test predicts from float batches). FP32:
 * the same model's probabilities agree to float rounding. */
Test(cuda_train, streamed_predictions_with_tta_follow_the_cpu) {
    TU_REQUIRE_GPU();
    TC_MUST(NULL, "train --data %s/d/train " TC_SMALL " --head " TC_DROP_HEAD " --strategy head "
            "--epochs 1 --verbose 0 --out %s", D, tc_path("m"));
    const char *tta = "--tta hflip,vflip --batch-size 5";
    TC_MUST(FP32, "predict --model %s --data %s/d/train --out %s --device cpu %s",
            tc_path("m/final.h5"), D, tc_path("cpu.csv"), tta);
    TC_MUST(FP32, "predict --model %s --data %s/d/train --out %s --device cuda %s",
            tc_path("m/final.h5"), D, tc_path("dev.csv"), tta);
    TC_MUST(FP32, "predict --model %s --data %s/d/train --out %s --device cuda --augment-on "
            "loader %s", tc_path("m/final.h5"), D, tc_path("ldr.csv"), tta);
    tc_csv *c = tc_csv_read(tc_path("cpu.csv"));
    const char *other[2] = {"dev.csv", "ldr.csv"};
    for (int k = 0; k < 2; k++) {
        tc_csv *g = tc_csv_read(tc_path("%s", other[k]));
        cr_assert_eq(g->rows, c->rows);
        for (int i = 0; i < c->rows; i++) {
            cr_expect_str_eq(g->first[i], c->first[i]);
            for (int j = 1; j < c->cols; j++)
                cr_expect(fabs(g->v[i][j] - c->v[i][j]) < 1e-4, "%s row %d: %.7f, cpu %.7f",
                          other[k], i, g->v[i][j], c->v[i][j]);
        }
        free(g);
    }
    free(c);
}

/* Mixed precision through the CLI: bf16 activations on the GPU against the CPU's emulation of
 * the same rounding. The per-step bound of test_cuda_model at bf16 (6e-2 on the loss curve)
 * applies to the epoch means as well. */
Test(cuda_train, bf16_run_follows_the_cpu_emulation) {
    TU_REQUIRE_GPU();
    char flags[1024];
    snprintf(flags, sizeof flags, RUN_FLAGS, D, D);
    TC_MUST(NULL, "train %s --device cpu --precision bf16 --out %s", flags, tc_path("cpu16"));
    TC_MUST(NULL, "train %s --device cuda --precision bf16 --out %s", flags, tc_path("cuda16"));
    cr_expect(strstr(tc_out, "precision bf16") != NULL, "%s", tc_out);
    expect_close_logs("cpu16", "cuda16", 6e-2, "bf16: cpu emulation vs cuda");
    TC_MUST(NULL, "evaluate --model %s --data %s/d/val --device cuda --precision bf16",
            tc_path("cuda16/final.h5"), D);
}

Test(cuda_train, iceberg_two_inputs_follow_the_cpu_run) {
    TU_REQUIRE_GPU();
    const char *f = "--data %s/d/iceberg_train.json --head iceberg --validation-split 0.25 "
                    "--batch-size 4 --weights none --threads 2 --epochs 2 --lr 0.001 "
                    "--horizontal-flip --verbose 2 --deterministic";
    char flags[1024];
    snprintf(flags, sizeof flags, f, D);
    TC_MUST(FP32, "train %s --device cpu --out %s", flags, tc_path("ice_cpu"));
    TC_MUST(FP32, "train %s --device cuda --out %s", flags, tc_path("ice_cuda"));
    expect_close_logs("ice_cpu", "ice_cuda", 5e-3, "iceberg cpu vs cuda");
    TC_MUST(NULL, "predict --model %s --data %s/d/iceberg_test.json --out %s --device cuda",
            tc_path("ice_cuda/final.h5"), D, tc_path("sub.csv"));
}

Test(cuda_train, out_of_memory_names_a_batch_size_that_fits) {
    TU_REQUIRE_GPU();
    /* 224x224, whole network trainable: tens of MiB of activations per sample, so a batch of
     * 65,536 (the largest the flag takes) cannot fit on any device. */
    const char *f = "--data %s/d/train --input-size 224 --weights none --threads 2 --head mri "
                    "--epochs 1 --steps-per-epoch 1 --verbose 0 --device cuda";
    char flags[512];
    snprintf(flags, sizeof flags, f, D);
    int rc = tc_run(NULL, "train %s --batch-size 65536 --out %s", flags, tc_path("oom"));
    cr_assert_eq(rc, 1, "exit %d:\n%s", rc, tc_out);
    const char *p = strstr(tc_out, "try --batch-size ");
    cr_assert_not_null(p, "no batch size named:\n%s", tc_out);
    cr_expect(strstr(tc_out, "the largest batch that fits is about") != NULL, "%s", tc_out);
    int fit = atoi(p + strlen("try --batch-size "));
    cr_log_info("out of memory at batch 65536; suggested --batch-size %d", fit);
    cr_assert_gt(fit, 1, "%s", tc_out);
    cr_assert_lt(fit, 65536, "%s", tc_out);
    /* The suggestion holds: a model with batch `fit` is planned, allocated and steps. */
    TC_MUST(NULL, "train %s --batch-size %d --out %s", flags, fit, tc_path("fits"));
}
