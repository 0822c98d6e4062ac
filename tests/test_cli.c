/* The cutune command as a user types it: help, version, devices, and every bad flag or
 * configuration ending with a message and a non-zero exit. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

Test(cli, help_and_version) {
    TU_EXPECT_CLI("--help", 0, "usage: cutune COMMAND");
    TU_EXPECT_CLI("--version", 0, "cutune 0.");
    TU_EXPECT_CLI("bench --help", 0, "--input-size");
    TU_EXPECT_CLI("", 2, "usage: cutune COMMAND");
    TU_EXPECT_CLI("frobnicate", 2, "unknown command 'frobnicate'");
}

Test(cli, devices_lists_or_says_why) {
    int rc = tu_cli("devices");
    if (rc == 0)
        cr_expect(strstr(tu_out, "name") != NULL, "%s", tu_out);
    else
        cr_expect(rc == 1 && strstr(tu_out, "no usable CUDA device: ") != NULL, "%s", tu_out);
}

Test(cli, bad_flags_and_values, .timeout = 120) {
    TU_EXPECT_CLI("bench --bogus", 2, "unknown flag '--bogus'");
    TU_EXPECT_CLI("bench --batch-size", 2, "--batch-size needs a value");
    TU_EXPECT_CLI("bench --batch-size 0", 2, "--batch-size: expected a whole number from 1");
    TU_EXPECT_CLI("bench --batch-size=eight", 2, "not 'eight'");
    TU_EXPECT_CLI("bench --steps -3", 2, "--steps");
    TU_EXPECT_CLI("bench stray", 2, "unexpected argument 'stray'");
    TU_EXPECT_CLI("bench --device tpu", 2, "unknown device 'tpu'");
    TU_EXPECT_CLI("bench --device cpu --input-size 16", 2, "too small: VGG16 needs at least 32x32");
    TU_EXPECT_CLI("bench --device cpu --head gmp,frob,dense:1:sigmoid", 2, "unknown layer 'frob'");
    TU_EXPECT_CLI("bench --device cpu --input-size 32 --freeze-to block9_pool", 2,
               "no layer named 'block9_pool'");
}

Test(cli, bench_runs_forward_and_backward, .timeout = 300) {
    TU_EXPECT_CLI("bench --device cpu --input-size 32 --batch-size 2 --steps 1 --warmup 0 "
               "--freeze-to block3_pool", 0, "img/s");
    cr_expect(strstr(tu_out, "lowest trainable layer block4_conv1") != NULL, "%s", tu_out);
    cr_expect(strstr(tu_out, "loss ") != NULL, "%s", tu_out);
}
