/* `cutune advise` and `--strategy auto`: the linear probe on synthetic features (separable ->
 * near perfect, unrelated labels -> about the baseline), the stratified k-fold assignment, the
 * seed table's four cells and its fallbacks, and the command on tiny generated data: without
 * ImageNet weights it says so and recommends from the size alone; with a weights file it runs
 * the probe at three depths. */
#define _POSIX_C_SOURCE 200809L
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "train/run.h"
#include "util.h"

static char dir[64];

static void make_data(void) {
    /* The commands run here share 2 cores with other tests: OpenMP threads that sleep while
     * waiting, instead of spinning, make them several times faster on a loaded machine. */
    setenv("OMP_WAIT_POLICY", "PASSIVE", 0);
    snprintf(dir, sizeof dir, "/tmp/ct_adv_XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    char data[128];
    snprintf(data, sizeof data, "%s/d", dir);
    /* 8 slices per class (32x32), 16 iceberg records, 5 test records. */
    cr_assert_eq(ct_demo_generate(data, 8, 32, 3), CT_OK, "%s", ct_last_error());
}

static void remove_data(void) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
}

/* ---- the probe ---- */

/* Standard normal pairs from the test stream (Box-Muller). */
static void gaussian(float *x, size_t n, uint32_t tag) {
    float *u = malloc(2 * n * sizeof *u);
    cr_assert_not_null(u);
    tu_fill(u, 2 * n, tag, 1e-7f, 1.0f);
    for (size_t i = 0; i < n; i++)
        x[i] = (float)(sqrt(-2.0 * log(u[2 * i])) * cos(6.283185307179586 * u[2 * i + 1]));
    free(u);
}

Test(probe, separable_features_are_learnt) {
    /* Three classes whose means differ by 4 deviations along their own axis, in 20 noisy
     * dimensions (with a large offset the standardisation must remove). */
    const size_t n = 150;
    const int d = 20, k = 3;
    float *x = malloc(n * d * sizeof *x);
    int *y = malloc(n * sizeof *y);
    gaussian(x, n * d, 1);
    for (size_t i = 0; i < n; i++) {
        y[i] = (int)(i % k);
        x[i * d + y[i]] += 4.0f;
        for (int j = 0; j < d; j++) x[i * d + j] = 100.0f + 3.0f * x[i * d + j];
    }
    double acc = 0.0;
    cr_assert_eq(ct_probe_cv(x, y, n, d, k, 3, 0.0, 1, &acc), CT_OK, "%s", ct_last_error());
    cr_expect(acc >= 0.9, "separable classes: CV accuracy %.3f", acc);
    /* Deterministic for a seed. */
    double again = 0.0;
    cr_assert_eq(ct_probe_cv(x, y, n, d, k, 3, 0.0, 1, &again), CT_OK);
    cr_expect_eq(acc, again);
    free(x);
    free(y);
}

Test(probe, unrelated_labels_score_about_the_baseline) {
    /* Labels drawn independently of the features: more dimensions than a fold's samples, so
     * the training folds are always separable, yet held-out accuracy stays near chance. */
    const size_t n = 180;
    const int d = 150;
    float *x = malloc(n * d * sizeof *x);
    float *u = malloc(n * sizeof *u);
    int *y = malloc(n * sizeof *y);
    gaussian(x, n * d, 2);
    tu_fill(u, n, 3, 0.0f, 1.0f);
    for (size_t i = 0; i < n; i++) y[i] = u[i] < 0.5f;
    double acc = 0.0;
    cr_assert_eq(ct_probe_cv(x, y, n, d, 2, 3, 0.0, 1, &acc), CT_OK, "%s", ct_last_error());
    cr_expect(fabs(acc - 0.5) < 0.12, "unrelated labels: CV accuracy %.3f, expected ~0.5", acc);
    /* Unbalanced (75/25) unrelated labels: no better than always answering the majority. */
    for (size_t i = 0; i < n; i++) y[i] = u[i] < 0.25f;
    cr_assert_eq(ct_probe_cv(x, y, n, d, 2, 3, 0.0, 1, &acc), CT_OK);
    cr_expect(acc <= 0.80, "unbalanced unrelated labels: CV accuracy %.3f vs baseline ~0.75", acc);
    free(x);
    free(u);
    free(y);
}

Test(probe, bad_inputs) {
    float x[12] = {0};
    int y[6] = {0, 1, 0, 1, 0, 1};
    double acc;
    cr_expect_eq(ct_probe_cv(x, y, 6, 2, 1, 3, 0.0, 1, &acc), CT_EINVAL);
    cr_expect_eq(ct_probe_cv(x, y, 6, 0, 2, 3, 0.0, 1, &acc), CT_EINVAL);
    cr_expect_eq(ct_probe_cv(x, y, 6, 2, 2, 7, 0.0, 1, &acc), CT_EINVAL);
    cr_expect_eq(ct_probe_cv(x, y, 6, 2, 2, 1, 0.0, 1, &acc), CT_EINVAL);
    y[3] = 2;
    cr_expect_eq(ct_probe_cv(x, y, 6, 2, 2, 3, 0.0, 1, &acc), CT_EINVAL);
    cr_expect(strstr(ct_last_error(), "label 2") != NULL, "%s", ct_last_error());
    /* Constant features: nothing to learn, and no division by zero. */
    y[3] = 1;
    cr_expect_eq(ct_probe_cv(x, y, 6, 2, 2, 3, 0.0, 1, &acc), CT_OK);
    cr_expect(isfinite(acc));
}

Test(kfold, stratified_balanced_and_seeded) {
    enum { N = 103 };
    int labels[N], fold[N], fold2[N], other[N];
    for (int i = 0; i < N; i++) labels[i] = i < 70 ? 0 : i < 100 ? 1 : 2;
    cr_assert_eq(ct_kfold_assign(labels, N, 5, 7, fold), CT_OK);
    int size[5] = {0}, per[5][3] = {{0}};
    for (int i = 0; i < N; i++) {
        cr_assert(fold[i] >= 0 && fold[i] < 5);
        size[fold[i]]++;
        per[fold[i]][labels[i]]++;
    }
    for (int f = 0; f < 5; f++) {
        cr_expect(size[f] == 20 || size[f] == 21, "fold %d has %d", f, size[f]);
        cr_expect_eq(per[f][0], 14, "fold %d: %d of class 0", f, per[f][0]);
        cr_expect_eq(per[f][1], 6, "fold %d: %d of class 1", f, per[f][1]);
    }
    cr_assert_eq(ct_kfold_assign(labels, N, 5, 7, fold2), CT_OK);
    cr_expect_arr_eq(fold, fold2, sizeof fold);
    cr_assert_eq(ct_kfold_assign(labels, N, 5, 8, other), CT_OK);
    cr_expect(memcmp(fold, other, sizeof fold) != 0, "another seed deals other folds");
    cr_expect_eq(ct_kfold_assign(labels, N, 1, 7, fold), CT_EINVAL);
    cr_expect_eq(ct_kfold_assign(labels, 3, 5, 7, fold), CT_EINVAL);
}

/* ---- the recommendation table ---- */

static void case_advice(ct_advice *a, size_t per_class, double acc3, double acc4, double acc5) {
    memset(a, 0, sizeof *a);
    a->k = 2;
    a->counts[0] = a->counts[1] = per_class;
    a->n = 2 * per_class;
    snprintf(a->class_names[0], 64, "cats");
    snprintf(a->class_names[1], 64, "dogs");
    a->probed = true;
    a->probe_n = 300;
    a->probe_folds = 3;
    a->input_size = 112;
    a->baseline = 0.5;
    const double acc[3] = {acc3, acc4, acc5};
    static const char *const names[3] = {"block3_pool", "block4_pool", "block5_pool"};
    for (int i = 0; i < 3; i++) {
        a->depth[i].layer = names[i];
        a->depth[i].dim = i == 0 ? 256 : 512;
        a->depth[i].acc = acc[i];
        a->depth[i].se = sqrt(acc[i] * (1 - acc[i]) / 300.0);
    }
}

Test(advise, the_seed_table) {
    ct_advise_config c;
    ct_advise_config_defaults(&c);
    c.data = "data/train";
    ct_advice a;

    case_advice(&a, 200, 0.85, 0.90, 0.95); /* small, similar */
    ct_advise_decide(&a, &c);
    cr_expect(!a.large && a.similar);
    cr_expect_eq(a.strategy, CT_STRATEGY_HEAD);
    cr_expect_str_eq(a.freeze_to, "block5_pool");
    cr_expect_float_eq(a.similarity, 0.9, 1e-9);
    cr_expect(strstr(a.command, "cutune train --data data/train") == a.command, "%s", a.command);
    cr_expect(strstr(a.command, "--freeze-to block5_pool") != NULL, "%s", a.command);
    cr_expect(strstr(a.command, "--zoom-range 0.2") && strstr(a.command, "--rotation-range 10"),
              "%s", a.command);
    /* Class folders may carry the label in their orientation: no flips, and the reasoning says
     * when to add them. */
    cr_expect(strstr(a.command, "--horizontal-flip") == NULL, "%s", a.command);
    cr_expect(strstr(a.command, "--vertical-flip") == NULL, "%s", a.command);
    cr_expect(strstr(a.reasoning, "No flips") != NULL &&
                  strstr(a.reasoning, "add --horizontal-flip") != NULL, "%s", a.reasoning);
    /* The probe ran at 112 (case_advice), not train's 224: the command trains at 112. */
    cr_expect(strstr(a.command, "--input-size 112") != NULL, "%s", a.command);
    cr_expect(strstr(a.reasoning, "The probe ran at 112x112") != NULL, "%s", a.reasoning);
    cr_expect(strstr(a.command, "--weights") == NULL, "%s", a.command);
    cr_expect(strstr(a.reasoning, "Small data, similar domain") != NULL, "%s", a.reasoning);

    case_advice(&a, 200, 0.80, 0.72, 0.62); /* small, different: similarity 0.24 */
    ct_advise_decide(&a, &c);
    cr_expect(!a.large && !a.similar);
    cr_expect_eq(a.strategy, CT_STRATEGY_DEEP);
    cr_expect_str_eq(a.freeze_to, "block3_pool");
    cr_expect_float_eq(a.body_lr_mult, 0.1f, 1e-6);
    cr_expect(strstr(a.command, "--freeze-to block3_pool") != NULL, "%s", a.command);
    cr_expect(strstr(a.command, "--body-lr-mult 0.1") != NULL, "%s", a.command);
    cr_expect(strstr(a.command, "--warmup-epochs 2") != NULL, "%s", a.command);
    cr_expect(strstr(a.reasoning, "different from ImageNet's") != NULL, "%s", a.reasoning);

    case_advice(&a, 1500, 0.85, 0.90, 0.95); /* large, similar */
    ct_advise_decide(&a, &c);
    cr_expect(a.large && a.similar);
    cr_expect_eq(a.strategy, CT_STRATEGY_TOP);
    cr_expect_str_eq(a.freeze_to, "block4_pool");
    cr_expect(strstr(a.command, "--freeze-to block4_pool") != NULL, "%s", a.command);
    cr_expect(strstr(a.command, "--zoom-range") == NULL, "%s", a.command);

    case_advice(&a, 1500, 0.80, 0.72, 0.62); /* large, different */
    ct_advise_decide(&a, &c);
    cr_expect(a.large && !a.similar);
    cr_expect_eq(a.strategy, CT_STRATEGY_ALL);
    cr_expect_str_eq(a.freeze_to, "");
    cr_expect(strstr(a.command, "--freeze-to") == NULL, "%s", a.command);
    cr_expect(strstr(a.command, "--body-lr-mult 0.3") != NULL, "%s", a.command);

    /* High similarity, but block4 beats block5 by more than the slack: different. */
    case_advice(&a, 200, 0.80, 0.93, 0.86);
    ct_advise_decide(&a, &c);
    cr_expect(a.similarity >= CT_ADVISE_SIMILARITY && !a.similar);
    cr_expect_eq(a.strategy, CT_STRATEGY_DEEP);
    cr_expect(strstr(a.reasoning, "block4_pool beats block5_pool") != NULL, "%s", a.reasoning);

    /* The size threshold is per class on average. */
    case_advice(&a, CT_ADVISE_LARGE_PER_CLASS - 1, 0.85, 0.90, 0.95);
    ct_advise_decide(&a, &c);
    cr_expect(!a.large);
    case_advice(&a, CT_ADVISE_LARGE_PER_CLASS, 0.85, 0.90, 0.95);
    ct_advise_decide(&a, &c);
    cr_expect(a.large);

    /* Not probed: the size axis alone, the domain assumed similar. */
    case_advice(&a, 200, 0, 0, 0);
    a.probed = false;
    snprintf(a.weights_note, sizeof a.weights_note, "without ImageNet weights (--weights none).");
    ct_advise_decide(&a, &c);
    cr_expect_eq(a.strategy, CT_STRATEGY_HEAD);
    cr_expect(isnan(a.similarity));
    cr_expect(strstr(a.reasoning, "size axis alone") != NULL, "%s", a.reasoning);
    case_advice(&a, 5000, 0, 0, 0);
    a.probed = false;
    ct_advise_decide(&a, &c);
    cr_expect_eq(a.strategy, CT_STRATEGY_TOP);

    /* Unbalanced classes, iceberg data, quoting, a weights file. */
    case_advice(&a, 200, 0.85, 0.90, 0.95);
    a.counts[1] = 50;
    a.n = 250;
    a.iceberg = true;
    c.data = "my data/train.json";
    c.weights = "/w/vgg.h5";
    ct_advise_decide(&a, &c);
    cr_expect(a.balanced);
    cr_expect(strstr(a.command, "--class-weight balanced") != NULL, "%s", a.command);
    cr_expect(strstr(a.command, "--vertical-flip") != NULL, "%s", a.command);
    cr_expect(strstr(a.command, "--data 'my data/train.json'") != NULL, "%s", a.command);
    cr_expect(strstr(a.command, "--weights /w/vgg.h5") != NULL, "%s", a.command);
    /* Iceberg images keep their size: no --input-size; the flips come with their reason. */
    cr_expect(strstr(a.command, "--input-size") == NULL, "%s", a.command);
    cr_expect(strstr(a.command, "--horizontal-flip --vertical-flip") != NULL, "%s", a.command);
    cr_expect(strstr(a.reasoning, "radar images seen from above") != NULL, "%s", a.reasoning);
}

Test(advise, the_command_carries_the_weights_and_the_input_size) {
    ct_advise_config c;
    ct_advise_config_defaults(&c);
    c.data = "data/train";
    ct_advice a;
    /* "imagenet" asked for but not installed: the command trains from a random start, and the
     * reasoning says how to fetch the weights. */
    case_advice(&a, 200, 0, 0, 0);
    a.probed = false;
    a.input_size = 0;
    a.weights_missing = true;
    ct_advise_decide(&a, &c);
    cr_expect(strstr(a.command, " --weights none") != NULL, "%s", a.command);
    cr_expect(strstr(a.command, "--input-size") == NULL, "%s", a.command);
    cr_expect(strstr(a.reasoning, "weights/fetch.sh") != NULL, "%s", a.reasoning);
    /* --weights none given to advise is carried into the command. */
    a.weights_missing = false;
    c.weights = "none";
    ct_advise_decide(&a, &c);
    cr_expect(strstr(a.command, " --weights none") != NULL, "%s", a.command);
    cr_expect(strstr(a.reasoning, "weights/fetch.sh") == NULL, "%s", a.reasoning);
    /* An --input-size given to advise wins over the probe's, and needs no explanation. */
    case_advice(&a, 200, 0.85, 0.90, 0.95);
    c.weights = "imagenet";
    c.train_input_size = 160;
    ct_advise_decide(&a, &c);
    cr_expect(strstr(a.command, "--input-size 160") != NULL, "%s", a.command);
    cr_expect(strstr(a.reasoning, "The probe ran at") == NULL, "%s", a.reasoning);
    /* A probe at train's default size adds nothing. */
    case_advice(&a, 200, 0.85, 0.90, 0.95);
    a.input_size = 224;
    c.train_input_size = 0;
    ct_advise_decide(&a, &c);
    cr_expect(strstr(a.command, "--input-size") == NULL, "%s", a.command);
}

Test(advise, strategy_names) {
    ct_strategy s;
    cr_assert_eq(ct_parse_strategy("deep", &s), CT_OK);
    cr_expect_eq(s, CT_STRATEGY_DEEP);
    cr_expect_str_eq(ct_strategy_freeze_to(CT_STRATEGY_DEEP), "block3_pool");
    cr_expect_str_eq(ct_strategy_freeze_to(CT_STRATEGY_HEAD), "block5_pool");
    cr_expect_str_eq(ct_strategy_freeze_to(CT_STRATEGY_TOP), "block4_pool");
    cr_expect_str_eq(ct_strategy_freeze_to(CT_STRATEGY_ALL), "");
    cr_expect_eq(ct_parse_strategy("deeper", &s), CT_EINVAL);
}

/* ---- the command ---- */

TestSuite(advise_cli, .init = make_data, .fini = remove_data, .timeout = 300);

Test(advise_cli, without_imagenet_weights_it_says_so_and_uses_size) {
    char args[512];
    snprintf(args, sizeof args, "advise --data %s/d/train --weights none --threads 1", dir);
    TU_EXPECT_CLI(args, 0, "without ImageNet weights");
    cr_expect(strstr(tu_out, "Found 16 images belonging to 2 classes.") != NULL, "%s", tu_out);
    cr_expect(strstr(tu_out, "dementia") && strstr(tu_out, "normal"), "%s", tu_out);
    cr_expect(strstr(tu_out, "linear probe: not run") != NULL, "%s", tu_out);
    cr_expect(strstr(tu_out, "size axis alone") != NULL, "%s", tu_out);
    cr_expect(strstr(tu_out, "dataset size: small") != NULL, "%s", tu_out);
    cr_expect(strstr(tu_out, "cutune train --data") != NULL, "%s", tu_out);
    cr_expect(strstr(tu_out, "--freeze-to block5_pool") != NULL, "%s", tu_out);

    /* "imagenet" when the file is not installed: the same fallback, saying why. */
    snprintf(args, sizeof args,
             "advise --data %s/d/iceberg_train.json --threads 1 --out runs/ice", dir);
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "CUTUNE_WEIGHTS=%s/nowhere.h5 '%s' %s", dir, getenv("CUTUNE_CLI"),
             args);
    int rc = tu_sh(cmd);
    cr_expect_eq(rc, 0, "%s", tu_out);
    cr_expect(strstr(tu_out, "without ImageNet weights: they are not installed") != NULL, "%s",
              tu_out);
    cr_expect(strstr(tu_out, "--vertical-flip") != NULL, "%s", tu_out);
    cr_expect(strstr(tu_out, "--out runs/ice") != NULL, "%s", tu_out);
}

Test(advise_cli, probes_three_depths_with_a_weights_file) {
    char args[1024];
    snprintf(args, sizeof args,
             "advise --data %s/d/train --weights '%s' --input-size 32 --samples 12 --threads 1 "
             "--device cpu", dir, tu_fixture("keras1_notop_fixed.h5"));
    TU_EXPECT_CLI(args, 0, "linear probe: 12 images at 32x32, 3-fold cross-validation");
    cr_expect(strstr(tu_out, "block3_pool") && strstr(tu_out, "block4_pool") &&
                  strstr(tu_out, "block5_pool"), "%s", tu_out);
    cr_expect(strstr(tu_out, "majority class") != NULL, "%s", tu_out);
    cr_expect(strstr(tu_out, "similarity (block5): ") != NULL, "%s", tu_out);
    cr_expect(strstr(tu_out, "--input-size 32") != NULL, "%s", tu_out);
    cr_expect(strstr(tu_out, "rough") != NULL, "a 12-image probe is flagged as rough:\n%s",
              tu_out);

    /* The same file found as "imagenet" (CUTUNE_WEIGHTS), through the library. */
    char path[256];
    snprintf(path, sizeof path, "%s/d/train", dir);
    setenv("CUTUNE_WEIGHTS", tu_fixture("keras1_notop_fixed.h5"), 1);
    ct_advise_config c;
    ct_advise_config_defaults(&c);
    c.data = path;
    c.input_size = 32;
    c.samples = 12;
    c.threads = 1;
    c.device = "cpu";
    c.verbose = 0;
    ct_advice a;
    cr_assert_eq(ct_advise(&c, &a), CT_OK, "%s", ct_last_error());
    unsetenv("CUTUNE_WEIGHTS");
    cr_expect(a.probed);
    cr_expect_eq(a.probe_n, 12);
    cr_expect_float_eq(a.baseline, 0.5, 1e-12);
    cr_expect_eq(a.depth[0].dim, 256);
    cr_expect_eq(a.depth[2].dim, 512);
    for (int i = 0; i < CT_ADVISE_DEPTHS; i++)
        cr_expect(a.depth[i].acc >= 0.0 && a.depth[i].acc <= 1.0);
    cr_expect(a.similarity >= 0.0 && a.similarity <= 1.0);
    cr_expect(a.strategy == CT_STRATEGY_HEAD || a.strategy == CT_STRATEGY_DEEP);
}

/* The last line of tu_out that starts with "cutune train ", into line (without its newline). */
static void printed_command(char *line, size_t cap) {
    const char *found = NULL;
    for (const char *p = tu_out; (p = strstr(p, "cutune train ")) != NULL; p++)
        if (p == tu_out || p[-1] == '\n') found = p;
    cr_assert_not_null(found, "no `cutune train` line in:\n%s", tu_out);
    size_t n = strcspn(found, "\n");
    cr_assert(n < cap);
    memcpy(line, found, n);
    line[n] = '\0';
}

/* Runs advise's printed command as printed (the CLI in place of the word `cutune`), with
 * --epochs 1 added to keep it short, and expects a finished run in `out`. */
static void run_printed_command(const char *env, const char *out) {
    char line[4096], cmd[8192];
    printed_command(line, sizeof line);
    cr_expect(strstr(line, "--horizontal-flip") == NULL && strstr(line, "--vertical-flip") == NULL,
              "flips suggested for class folders: %s", line);
    snprintf(cmd, sizeof cmd, "%s '%s' %s --epochs 1", env, getenv("CUTUNE_CLI"),
             line + strlen("cutune "));
    int rc = tu_sh(cmd);
    cr_expect_eq(rc, 0, "the printed command failed (exit %d):\n%s\n%s", rc, cmd, tu_out);
    char path[512];
    snprintf(path, sizeof path, "%s/final.h5", out);
    struct stat st;
    cr_expect(stat(path, &st) == 0, "%s missing after:\n%s\n%s", path, cmd, tu_out);
}

Test(advise_cli, the_printed_command_runs_as_printed) {
    char cmd[2048], out[256];
    /* ImageNet weights not installed (CUTUNE_OFFLINE=1 under ctest: nothing is downloaded):
     * the command trains with --weights none and says how to fetch them. */
    char env[512];
    snprintf(env, sizeof env, "CUTUNE_OFFLINE=1 CUTUNE_WEIGHTS=%s/nowhere", dir);
    snprintf(out, sizeof out, "%s/advised_none", dir);
    snprintf(cmd, sizeof cmd, "%s '%s' advise --data %s/d/train --input-size 32 --threads 1 "
             "--out %s", env, getenv("CUTUNE_CLI"), dir, out);
    int rc = tu_sh(cmd);
    cr_assert_eq(rc, 0, "%s", tu_out);
    cr_expect(strstr(tu_out, " --weights none") != NULL, "%s", tu_out);
    cr_expect(strstr(tu_out, "weights/fetch.sh") != NULL, "%s", tu_out);
    cr_expect(strstr(tu_out, " --input-size 32") != NULL, "%s", tu_out);
    run_printed_command(env, out);

    /* With weights ("imagenet" found through CUTUNE_WEIGHTS) and no --input-size, the probe
     * runs at advise's CPU size and the command trains at it. The fixture's backbone holds
     * made-up values, not ImageNet's: they probe fine but training on them overflows, so here
     * the printed line is checked as far as the run's first epoch: every flag accepted, the
     * weights found, the model built at the probed size. */
    snprintf(env, sizeof env, "CUTUNE_OFFLINE=1 CUTUNE_WEIGHTS='%s'",
             tu_fixture("keras1_notop_fixed.h5"));
    snprintf(out, sizeof out, "%s/advised_probed", dir);
    snprintf(cmd, sizeof cmd, "%s '%s' advise --data %s/d/train --samples 12 --threads 1 "
             "--device cpu --out %s", env, getenv("CUTUNE_CLI"), dir, out);
    rc = tu_sh(cmd);
    cr_assert_eq(rc, 0, "%s", tu_out);
    char want[64];
    snprintf(want, sizeof want, " --input-size %d", CT_ADVISE_CPU_INPUT);
    cr_expect(strstr(tu_out, "linear probe: 12 images") != NULL, "%s", tu_out);
    cr_expect(strstr(tu_out, want) != NULL, "the command lacks '%s':\n%s", want, tu_out);
    cr_expect(strstr(tu_out, " --weights none") == NULL, "%s", tu_out);
    char line[4096], run[8192];
    printed_command(line, sizeof line);
    snprintf(run, sizeof run, "%s '%s' %s --epochs 1", env, getenv("CUTUNE_CLI"),
             line + strlen("cutune "));
    tu_sh(run);
    cr_expect(strstr(tu_out, "weights: imagenet") != NULL && strstr(tu_out, "Epoch 1/1") != NULL,
              "the printed command did not start training:\n%s\n%s", run, tu_out);
}

Test(advise_cli, bad_inputs) {
    char args[512];
    TU_EXPECT_CLI("advise", 2, "--data DIR|train.json is required");
    TU_EXPECT_CLI("advise --data /nonexistent/x --weights none", 1, "no such file or folder");
    TU_EXPECT_CLI("advise --data x --samples 3", 2, "--samples");
    TU_EXPECT_CLI("advise --data x --cv 1", 2, "--cv");
    TU_EXPECT_CLI("advise --data x --device tpu", 2, "--device");
    TU_EXPECT_CLI("advise --data x --input-size 16", 2, "--input-size");
    TU_EXPECT_CLI("advise --data x --frob", 2, "unknown flag '--frob'");
    TU_EXPECT_CLI("advise --help", 0, "usage: cutune advise");
    snprintf(args, sizeof args, "advise --data %s/d/iceberg_test.json --weights none", dir);
    TU_EXPECT_CLI(args, 2, "no labels");
    snprintf(args, sizeof args, "advise --data %s/d/iceberg_train.json --input-size 64 "
             "--weights '%s' --device cpu", dir, tu_fixture("keras1_notop_fixed.h5"));
    TU_EXPECT_CLI(args, 2, "the iceberg images are 75x75");
    snprintf(args, sizeof args, "advise --data %s/d/train --weights /nonexistent.h5 "
             "--device cpu --input-size 32", dir);
    int rc = tu_cli(args);
    cr_expect(rc != 0 && strstr(tu_out, "nonexistent.h5") != NULL, "exit %d:\n%s", rc, tu_out);
    /* One class only. */
    char cmd[512];
    snprintf(cmd, sizeof cmd, "mkdir -p %s/one/only && cp %s/d/train/normal/*.png %s/one/only/",
             dir, dir, dir);
    cr_assert_eq(system(cmd), 0);
    snprintf(args, sizeof args, "advise --data %s/one --weights none", dir);
    TU_EXPECT_CLI(args, 2, "at least 2 classes");
}

Test(advise_cli, train_strategy_auto_uses_the_advice) {
    char args[1024];
    snprintf(args, sizeof args,
             "train --data %s/d/train --out %s/run --strategy auto --weights none "
             "--input-size 32 --epochs 1 --batch-size 8 --threads 1 --device cpu --verbose 2 "
             "--head gap,dense:2:softmax", dir, dir);
    TU_EXPECT_CLI(args, 0, "--strategy auto: train the head only");
    cr_expect(strstr(tu_out, "size axis alone") != NULL, "%s", tu_out);
    char path[256];
    snprintf(path, sizeof path, "%s/run/config.txt", dir);
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f);
    char text[8192];
    size_t n = fread(text, 1, sizeof text - 1, f);
    text[n] = '\0';
    fclose(f);
    cr_expect(strstr(text, "freeze_to = block5_pool\n") != NULL, "%s", text);
}
