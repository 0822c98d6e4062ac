/* `cutune bench`'s GPU-benchmark flags, checked on the CPU backend: --precision (tf32 refused
 * on the CPU with the reason, bf16 emulated), the --sweep table, and --data timing through the
 * loader, where augmenting in the loader threads and with the backend's op after copying the
 * raw batch must train on the same images (the same losses, step by step). The timings
 * themselves are not checked: no test asserts a time. */
#include "test_data_util.h" /* first: it sets _XOPEN_SOURCE */

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "train/run.h"

Test(bench_cli, precision_flag) {
    TU_EXPECT_CLI("bench --device cpu --precision bf16 --input-size 32 --batch-size 1 --steps 1 "
                  "--warmup 0 --freeze-to block5_pool",
                  0, "precision bf16");
    TU_EXPECT_CLI("bench --device cpu --precision tf32", 2, "needs the cuda backend");
    TU_EXPECT_CLI("bench --precision fp16", 2, "expected fp32, tf32 or bf16");
    TU_EXPECT_CLI("bench --device cpu --precision fp32 --input-size 32 --batch-size 1 --steps 1 "
                  "--warmup 0 --freeze-to block5_pool",
                  0, "precision fp32");
}

Test(bench_cli, bad_combinations_say_why) {
    TU_EXPECT_CLI("bench --sweep --data x", 2, "separate benchmarks");
    TU_EXPECT_CLI("bench --sweep --batch-size 8", 2, "--sweep-batch");
    TU_EXPECT_CLI("bench --sweep --sweep-batch 8,x", 2, "--sweep-batch: expected a whole number");
    TU_EXPECT_CLI("bench --augment-on device", 2, "go with --data");
    TU_EXPECT_CLI("bench --data x --augment-on gpu", 2, "expected loader or device");
    TU_EXPECT_CLI("bench --device cpu --data /nonexistent/cutune", 1, "no such file or folder");
}

Test(bench_cli, sweep_prints_one_markdown_table, .timeout = 300) {
    TU_EXPECT_CLI("bench --sweep --device cpu --input-size 32 --sweep-batch 1,2 "
                  "--sweep-freeze all,1-4 --steps 1 --warmup 0",
                  0,
                  "| impl | precision | frozen | batch | img/s | TFLOP/s | ms/step | "
                  "device GiB |");
    const char *rows[] = {"| cutune | fp32 | all | 1 |", "| cutune | fp32 | all | 2 |",
                          "| cutune | fp32 | 1-4 | 1 |", "| cutune | fp32 | 1-4 | 2 |"};
    const char *at = tu_out;
    for (int i = 0; i < 4; i++) {
        const char *r = strstr(at, rows[i]);
        cr_expect(r != NULL, "row '%s' missing or out of order:\n%s", rows[i], tu_out);
        if (r != NULL) at = r;
    }
    TU_EXPECT_CLI("bench --sweep --device cpu --input-size 32 --sweep-batch 1 "
                  "--sweep-freeze block9_pool --steps 1 --warmup 0",
                  2, "no layer named 'block9_pool'");
}

/* The losses printed by `bench --data` (or any bench run), in order. */
static int losses(const char *out, float *v, int cap) {
    int n = 0;
    for (const char *p = strstr(out, "loss "); p != NULL && n < cap; p = strstr(p + 5, "loss "))
        v[n++] = strtof(p + 5, NULL);
    return n;
}

Test(bench_cli, data_through_the_loader_or_the_augment_op_trains_on_the_same_images,
     .timeout = 300) {
    char *dir = td_tmpdir();
    cr_assert_eq(ct_demo_generate(dir, 5, 40, 3), CT_OK, "%s", ct_last_error());
    char args[1024];
    float a[8], b[8];
    int na = 0, nb = 0;
    for (int path = 0; path < 2; path++) {
        snprintf(args, sizeof args,
                 "bench --device cpu --data %s/train --input-size 32 --batch-size 4 --steps 3 "
                 "--warmup 1 --freeze-to block4_pool --augment-on %s",
                 dir, path ? "device" : "loader");
        TU_EXPECT_CLI(args, 0, "img/s over the 3 timed steps");
        if (path == 0)
            na = losses(tu_out, a, 8);
        else
            nb = losses(tu_out, b, 8);
    }
    cr_assert_eq(na, 4, "%d losses", na);
    cr_assert_eq(nb, 4, "%d losses", nb);
    for (int i = 0; i < 4; i++)
        cr_expect_eq(a[i], b[i], "step %d: loss %g (loader) vs %g (augment op)", i + 1, a[i], b[i]);
    snprintf(args, sizeof args, "bench --device cpu --data %s/train --head iceberg", dir);
    TU_EXPECT_CLI(args, 2, "no auxiliary values");
    td_rmrf(dir);
}

/* --profile: a row per layer in model order, times that are numbers, "-" for the backward of
 * layers below the lowest trainable one, and layer times that sum to no more than the steps. */
Test(bench_cli, profile_times_every_layer) {
    TU_EXPECT_CLI("bench --device cpu --input-size 32 --batch-size 2 --steps 3 --warmup 1 "
                  "--freeze-to block3_pool --profile",
                  0, "| layer | forward ms | backward ms |");
    const char *names[] = {"block1_conv1", "block2_conv2", "block3_pool", "block4_conv1",
                           "block5_conv3", "dense_1"};
    const char *at = tu_out;
    for (int i = 0; i < 6; i++) {
        char key[64];
        snprintf(key, sizeof key, "| %s | ", names[i]);
        const char *r = strstr(at, key);
        cr_assert(r != NULL, "no row for %s in order:\n%s", names[i], tu_out);
        at = r;
        double f = -1.0;
        char bwd[16] = "";
        cr_assert_eq(sscanf(r + strlen(key), "%lf | %15s", &f, bwd), 2, "%s", r);
        cr_expect_geq(f, 0.0, "%s forward", names[i]);
        /* Frozen blocks 1-3 run no backward at all. */
        if (i < 3) cr_expect_str_eq(bwd, "-", "%s has a backward time", names[i]);
        else cr_expect(strtod(bwd, NULL) >= 0.0 && strcmp(bwd, "-") != 0, "%s: %s", names[i], bwd);
    }
    const char *sum = strstr(tu_out, "| (layers) | | | | | ");
    cr_assert_not_null(sum, "%s", tu_out);
    double layers_ms = strtod(sum + strlen("| (layers) | | | | | "), NULL);
    const char *med = strstr(tu_out, "median step ");
    cr_assert_not_null(med);
    double step_ms = strtod(med + strlen("median step "), NULL) * 1e3;
    /* Medians of parts need not add up to the median whole: a loose bound, against double
     * counting. */
    cr_expect(layers_ms > 0.0 && layers_ms <= step_ms * 1.5, "layers %.3f ms, step %.3f ms",
              layers_ms, step_ms);
    TU_EXPECT_CLI("bench --sweep --profile", 2, "--profile times the layers of one configuration");
}

/* --input device trains every step on one batch uploaded before the timing, --input host on a
 * new batch each step: the first steps see the same batch and weights (the same loss, which
 * also checks the upload), the second ones different batches. */
Test(bench_cli, input_device_uploads_one_batch_input_host_copies_each_step) {
    const char *base = "bench --device cpu --input-size 32 --batch-size 2 --steps 2 --warmup 0 "
                       "--freeze-to block5_pool --input";
    float dev[4], host[4];
    char cmd[256];
    snprintf(cmd, sizeof cmd, "%s device", base);
    TU_EXPECT_CLI(cmd, 0, "input on the device (one batch)");
    cr_assert_eq(losses(tu_out, dev, 4), 2, "%s", tu_out);
    snprintf(cmd, sizeof cmd, "%s host", base);
    TU_EXPECT_CLI(cmd, 0, "input copied from pageable host memory each step");
    cr_assert_eq(losses(tu_out, host, 4), 2, "%s", tu_out);
    cr_expect_eq(dev[0], host[0], "first step: %.6f on the device, %.6f from the host", dev[0],
                 host[0]);
    cr_expect_neq(dev[1], host[1], "second step: the same loss %.6f with one batch and two",
                  dev[1]);
    TU_EXPECT_CLI("bench --input gpu", 2, "expected device or host");
    TU_EXPECT_CLI("bench --data x --input host", 2, "--data streams its own");
}
