/* The child process that reads a new HDF5 file first (src/io/h5_probe.c): every way the child
 * can end other than "libhdf5 got through" makes the file damaged, and this process never reads
 * it itself. A child stopped with exit status 1 (as AddressSanitizer stops a heap overflow) on
 * the input that overflows libhdf5's heap is reported, not followed by this process crashing on
 * the same file; so is a child that exits 1 on a good file. The time limit is wall-clock time:
 * with every sleep of this process stretched (a large timer slack, as a loaded machine
 * stretches them), the input on which libhdf5 loops forever is still given up on in time. */
#define _GNU_SOURCE /* prctl's timer slack */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#include "io/io.h"
#include "io/weights.h"
#include "util.h"

TestSuite(weights_probe, .timeout = 120);

static const char *bug(const char *name) {
    static char p[2][4096];
    static int k;
    char *b = p[k++ & 1];
    snprintf(b, 4096, "%s/../fuzz/hdf5_bugs/%s", tu_fixture(""), name);
    return b;
}

/* What a sanitizer does on finding a bug: report and exit 1. */
static void exit_like_a_sanitizer(void) { _exit(1); }

Test(weights_probe, a_child_stopped_with_exit_status_1_makes_the_file_damaged) {
    ct__h5_probe_set_hook(exit_like_a_sanitizer);
    /* On the input that overflows libhdf5's heap, this process must not read it after all. */
    const char *crash = bug("h5hg_read_overflow.bin");
    ct_weights_file *wf = NULL;
    cr_expect_eq(ct_weights_inspect(crash, &wf), CT_EFORMAT, "%s", ct_last_error());
    cr_expect(strstr(ct_last_error(), crash) != NULL &&
                  strstr(ct_last_error(), "exit status 1") != NULL &&
                  strstr(ct_last_error(), "damaged") != NULL,
              "the message should name the file and the child's exit status: %s",
              ct_last_error());
    ct_weights_file_free(wf);
    /* Whatever the file: a child that did not get through is never second-guessed. */
    const char *good = tu_fixture("keras3_nonames_mri64.weights.h5");
    wf = NULL;
    cr_expect_eq(ct_weights_inspect(good, &wf), CT_EFORMAT,
                 "a file whose child exited 1 was read anyway");
    cr_expect(strstr(ct_last_error(), "exit status 1") != NULL, "%s", ct_last_error());
    ct_weights_file_free(wf);
    ct_model_config mc = {0};
    ct_saved_config sc;
    cr_expect_eq(ct_weights_read_config(good, &mc, &sc), CT_EFORMAT, "%s", ct_last_error());
    ct__h5_probe_set_hook(NULL);
    /* Without the hook the same good file reads. */
    wf = NULL;
    cr_expect_eq(ct_weights_inspect(good, &wf), CT_OK, "%s", ct_last_error());
    ct_weights_file_free(wf);
}

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

Test(weights_probe, the_time_limit_is_wall_clock_time_however_long_sleeps_take) {
    cr_assert_eq(setenv("CUTUNE_H5_PROBE_S", "1", 1), 0);
    /* Every sleep of this thread may now last 40 ms longer than asked, as sleeps do on a busy
     * machine: 1 s counted in 2 ms sleeps would take 20 s or more. */
    cr_assert_eq(prctl(PR_SET_TIMERSLACK, 40UL * 1000 * 1000, 0, 0, 0), 0);
    const char *hang = bug("h5hg_protect_hang.bin");
    ct_weights_file *wf = NULL;
    double t0 = now();
    ct_status s = ct_weights_inspect(hang, &wf);
    double took = now() - t0;
    prctl(PR_SET_TIMERSLACK, 0UL, 0, 0, 0);
    cr_expect_eq(s, CT_EFORMAT, "%s", ct_last_error());
    cr_expect(strstr(ct_last_error(), hang) != NULL &&
                  strstr(ct_last_error(), "did not finish within 1 s") != NULL,
              "%s", ct_last_error());
    /* 1 s, one stretched pause and the time to reap the killed child; 2.5 s is well short of
     * what counting pauses gives. */
    cr_expect_lt(took, 2.5, "a 1 s limit took %.1f s", took);
    cr_expect_geq(took, 0.95, "a 1 s limit ended after %.2f s", took);
    ct_weights_file_free(wf);
}
