/* The cutune command as a user types it: help, version, devices, and every bad flag or
 * configuration ending with a message and a non-zero exit. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

static char out[1 << 16];

/* Runs `cutune ARGS` with stdout and stderr captured; returns the exit code. */
static int run(const char *args) {
    const char *cli = getenv("CUTUNE_CLI");
    cr_assert_not_null(cli, "CUTUNE_CLI is not set (run through ctest)");
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "'%s' %s 2>&1", cli, args);
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p);
    size_t n = fread(out, 1, sizeof out - 1, p);
    out[n] = '\0';
    int status = pclose(p);
    cr_assert(WIFEXITED(status), "cutune %s did not exit normally", args);
    return WEXITSTATUS(status);
}

#define EXPECT_RUN(args, code, text)                                                        \
    do {                                                                                    \
        int rc_ = run(args);                                                                \
        cr_expect_eq(rc_, code, "cutune %s: exit %d, expected %d; output:\n%s", args, rc_,  \
                     code, out);                                                            \
        cr_expect(strstr(out, text) != NULL, "cutune %s: output lacks '%s':\n%s", args,     \
                  text, out);                                                               \
    } while (0)

Test(cli, help_and_version) {
    EXPECT_RUN("--help", 0, "usage: cutune COMMAND");
    EXPECT_RUN("--version", 0, "cutune 0.");
    EXPECT_RUN("bench --help", 0, "--input-size");
    EXPECT_RUN("", 2, "usage: cutune COMMAND");
    EXPECT_RUN("frobnicate", 2, "unknown command 'frobnicate'");
}

Test(cli, devices_lists_or_says_why) {
    int rc = run("devices");
    if (rc == 0)
        cr_expect(strstr(out, "name") != NULL, "%s", out);
    else
        cr_expect(rc == 1 && strstr(out, "no usable CUDA device: ") != NULL, "%s", out);
}

Test(cli, bad_flags_and_values, .timeout = 120) {
    EXPECT_RUN("bench --bogus", 2, "unknown flag '--bogus'");
    EXPECT_RUN("bench --batch-size", 2, "--batch-size needs a value");
    EXPECT_RUN("bench --batch-size 0", 2, "--batch-size: expected a whole number from 1");
    EXPECT_RUN("bench --batch-size=eight", 2, "not 'eight'");
    EXPECT_RUN("bench --steps -3", 2, "--steps");
    EXPECT_RUN("bench stray", 2, "unexpected argument 'stray'");
    EXPECT_RUN("bench --device tpu", 2, "unknown device 'tpu'");
    EXPECT_RUN("bench --device cpu --input-size 16", 2, "too small: VGG16 needs at least 32x32");
    EXPECT_RUN("bench --device cpu --head gmp,frob,dense:1:sigmoid", 2, "unknown layer 'frob'");
    EXPECT_RUN("bench --device cpu --input-size 32 --freeze-to block9_pool", 1,
               "no layer named 'block9_pool'");
}

Test(cli, bench_runs_forward_and_backward, .timeout = 300) {
    EXPECT_RUN("bench --device cpu --input-size 32 --batch-size 2 --steps 1 --warmup 0 "
               "--freeze-to block3_pool", 0, "img/s");
    cr_expect(strstr(out, "lowest trainable layer block4_conv1") != NULL, "%s", out);
    cr_expect(strstr(out, "loss ") != NULL, "%s", out);
}
