/* `cutune train --folds K`: K stratified folds of generated iceberg JSON (75x75) and class
 * folders (32x32), 2 epochs each with the backbone frozen and no weights (quick on 2 cores):
 * the fold runs exist, folds.csv and the printed table agree, predictions.csv is the mean of
 * what each fold's best.h5 predicts (recomputed here with `cutune predict`), an interrupted
 * k-fold run resumes to the same result, and the bad combinations are refused. */
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
    snprintf(dir, sizeof dir, "/tmp/ct_folds_XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    char data[128];
    snprintf(data, sizeof data, "%s/d", dir);
    /* 9 slices per class (train), 3 per class (val), 18 iceberg records, 5 test records. */
    cr_assert_eq(ct_demo_generate(data, 9, 32, 5), CT_OK, "%s", ct_last_error());
}

static void remove_data(void) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
}

TestSuite(folds, .init = make_data, .fini = remove_data, .timeout = 600);

static bool exists(const char *fmt, const char *a, int k, const char *file) {
    char p[512];
    snprintf(p, sizeof p, fmt, a, k, file);
    struct stat st;
    return stat(p, &st) == 0;
}

/* A small CSV: header, then `name,v1,...` rows (no quoting needed for the generated names). */
typedef struct table {
    char header[1024];
    int rows, cols;
    char name[64][64];
    double v[64][8];
} table;

static void read_table(const char *path, table *t) {
    memset(t, 0, sizeof *t);
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f, "cannot open %s", path);
    char line[1024];
    cr_assert_not_null(fgets(line, sizeof line, f));
    line[strcspn(line, "\r\n")] = '\0';
    snprintf(t->header, sizeof t->header, "%s", line);
    while (fgets(line, sizeof line, f) != NULL && t->rows < 64) {
        line[strcspn(line, "\r\n")] = '\0';
        char *save = NULL, *tok = strtok_r(line, ",", &save);
        cr_assert_not_null(tok);
        snprintf(t->name[t->rows], 64, "%s", tok);
        int c = 0;
        while ((tok = strtok_r(NULL, ",", &save)) != NULL && c < 8) t->v[t->rows][c++] = atof(tok);
        t->cols = c;
        t->rows++;
    }
    fclose(f);
}

static const char *common =
    "--weights none --freeze-to block5_pool --epochs 2 --batch-size 8 --threads 1 "
    "--device cpu --verbose 2";

Test(folds, iceberg_three_folds_average_the_predictions) {
    char args[2048], run[128];
    snprintf(run, sizeof run, "%s/ice", dir);
    snprintf(args, sizeof args,
             "train --data %s/d/iceberg_train.json --folds 3 --test %s/d/iceberg_test.json "
             "--out %s %s", dir, dir, run, common);
    TU_EXPECT_CLI(args, 0, "3-fold cross-validation (best epoch by val_loss):");
    cr_expect(strstr(tu_out, "fold 1/3: training on 12 samples, validating on 6") != NULL, "%s",
              tu_out);
    cr_expect(strstr(tu_out, "\nmean ") != NULL, "%s", tu_out);
    cr_expect(strstr(tu_out, "the mean of the 3 folds' predictions (5 rows)") != NULL, "%s",
              tu_out);
    for (int k = 1; k <= 3; k++) {
        cr_expect(exists("%s/fold_%d/%s", run, k, "best.h5"), "fold %d best.h5", k);
        cr_expect(exists("%s/fold_%d/%s", run, k, "log.csv"), "fold %d log.csv", k);
        cr_expect(exists("%s/fold_%d/%s", run, k, "predictions.csv"), "fold %d preds", k);
        char cfg[512], text[8192];
        snprintf(cfg, sizeof cfg, "%s/fold_%d/config.txt", run, k);
        FILE *f = fopen(cfg, "r");
        cr_assert_not_null(f);
        size_t n = fread(text, 1, sizeof text - 1, f);
        text[n] = '\0';
        fclose(f);
        char want[64];
        snprintf(want, sizeof want, "data_subset = fold %d/3, seed 1\n", k);
        cr_expect(strstr(text, want) != NULL, "%s", text);
    }
    cr_expect(!exists("%s/fold_%d/%s", run, 4, "best.h5"));

    /* folds.csv: every sample validated exactly once; the printed mean is the rows' mean. */
    char path[512];
    snprintf(path, sizeof path, "%s/folds.csv", run);
    table s;
    read_table(path, &s);
    cr_expect_str_eq(s.header, "fold,n_train,n_val,epochs,best_epoch,val_loss,val_acc");
    cr_assert_eq(s.rows, 3);
    double n_val = 0, mean_loss = 0;
    for (int r = 0; r < 3; r++) {
        n_val += s.v[r][1];
        cr_expect_eq(s.v[r][0] + s.v[r][1], 18.0);
        /* best_epoch counts from 0 as the fold's log.csv does (Keras's CSVLogger): it is the
         * epoch of the log's lowest val_loss, and that row's val_loss is the fold's. */
        table log;
        snprintf(path, sizeof path, "%s/fold_%d/log.csv", run, r + 1);
        read_table(path, &log);
        cr_expect_str_eq(log.header, "epoch,acc,loss,lr,val_acc,val_loss");
        int best = 0;
        for (int e = 1; e < log.rows; e++)
            if (log.v[e][4] < log.v[best][4]) best = e;
        cr_expect_str_eq(log.name[0], "0", "log.csv counts epochs from 0");
        cr_expect_eq(s.v[r][3], atof(log.name[best]), "fold %d: best_epoch %g, log.csv's %s",
                     r + 1, s.v[r][3], log.name[best]);
        cr_expect_float_eq(s.v[r][4], log.v[best][4], 1e-12);
        mean_loss += s.v[r][4] / 3;
        cr_expect(s.v[r][5] >= 0.0 && s.v[r][5] <= 1.0, "val_acc %g", s.v[r][5]);
    }
    cr_expect_eq(n_val, 18.0);
    char want[64];
    snprintf(want, sizeof want, "%10.4f", mean_loss);
    cr_expect(strstr(tu_out, want) != NULL, "mean val_loss %s not printed:\n%s", want, tu_out);

    /* predictions.csv = the mean of each fold's best.h5 predictions, recomputed here. */
    table avg, one[3];
    snprintf(path, sizeof path, "%s/predictions.csv", run);
    read_table(path, &avg);
    cr_expect_str_eq(avg.header, "id,is_iceberg");
    cr_assert_eq(avg.rows, 5);
    for (int k = 0; k < 3; k++) {
        snprintf(args, sizeof args,
                 "predict --model %s/fold_%d/best.h5 --data %s/d/iceberg_test.json "
                 "--out %s/again_%d.csv --threads 1 --device cpu", run, k + 1, dir, dir, k + 1);
        TU_EXPECT_CLI(args, 0, "wrote 5 predictions");
        snprintf(path, sizeof path, "%s/again_%d.csv", dir, k + 1);
        read_table(path, &one[k]);
        cr_assert_eq(one[k].rows, 5);
    }
    bool differ = false;
    for (int r = 0; r < 5; r++) {
        cr_expect_str_eq(avg.name[r], one[0].name[r]);
        double m = (one[0].v[r][0] + one[1].v[r][0] + one[2].v[r][0]) / 3.0;
        cr_expect(fabs(avg.v[r][0] - m) <= 1e-6, "row %d: %.6f vs the folds' mean %.6f", r,
                  avg.v[r][0], m);
        differ |= one[0].v[r][0] != one[1].v[r][0];
    }
    cr_expect(differ, "the folds trained on different data should predict differently");

    /* Run again into the same directory: refused without --resume; with it, every fold is
     * kept and the predictions are the same. */
    snprintf(args, sizeof args,
             "train --data %s/d/iceberg_train.json --folds 3 --test %s/d/iceberg_test.json "
             "--out %s %s", dir, dir, run, common);
    TU_EXPECT_CLI(args, 2, "already holds a k-fold run: add --resume");
    snprintf(args, sizeof args,
             "train --data %s/d/iceberg_train.json --folds 3 --test %s/d/iceberg_test.json "
             "--out %s %s --resume", dir, dir, run, common);
    TU_EXPECT_CLI(args, 0, "fold 3/3: finished earlier");
    /* From the folder alone: the folds and the data come from the folds' records. A fold's
     * folder is not a run of its own. */
    snprintf(args, sizeof args, "train --out %s --resume --verbose 1", run);
    TU_EXPECT_CLI(args, 0, "fold 3/3: finished earlier");
    snprintf(args, sizeof args, "train --out %s/fold_2 --resume", run);
    TU_EXPECT_CLI(args, 2, "fold_2 is fold 2 of a k-fold run: continue the whole run with --out "
                  "set to the folder that holds fold_1/ to fold_3/");
    table again;
    snprintf(path, sizeof path, "%s/predictions.csv", run);
    read_table(path, &again);
    cr_expect_arr_eq(again.v, avg.v, sizeof avg.v);
}

Test(folds, interrupted_run_resumes_to_the_same_result) {
    char args[2048], env[4096];
    const char *data = "--input-size 32 --head gap,dense:2:softmax";
    /* Uninterrupted. */
    snprintf(args, sizeof args,
             "train --data %s/d/train --folds 3 --test %s/d/val %s --out %s/a %s", dir, dir,
             data, dir, common);
    TU_EXPECT_CLI(args, 0, "3-fold cross-validation");
    /* Stopped after 3 steps of fold 1 (in its second epoch; the CLI exits 130, as after
     * Ctrl-C), then resumed. */
    snprintf(args, sizeof args,
             "train --data %s/d/train --folds 3 --test %s/d/val %s --out %s/b %s", dir, dir,
             data, dir, common);
    snprintf(env, sizeof env, "CUTUNE_STOP_AFTER_STEPS=3 '%s' %s", getenv("CUTUNE_CLI"), args);
    int rc = tu_sh(env);
    cr_expect_eq(rc, 130, "exit %d:\n%s", rc, tu_out);
    char p[512];
    snprintf(p, sizeof p, "%s/b/predictions.csv", dir);
    struct stat st;
    cr_expect(stat(p, &st) != 0, "no predictions after an interrupted run");
    strncat(args, " --resume", sizeof args - strlen(args) - 1);
    TU_EXPECT_CLI(args, 0, "(resuming)");
    cr_expect(strstr(tu_out, "at epoch 2, batch 2") != NULL, "%s", tu_out);
    table a, b;
    snprintf(p, sizeof p, "%s/a/predictions.csv", dir);
    read_table(p, &a);
    snprintf(p, sizeof p, "%s/b/predictions.csv", dir);
    read_table(p, &b);
    cr_assert_eq(a.rows, 6);
    cr_assert_eq(b.rows, 6);
    for (int r = 0; r < 6; r++)
        for (int c = 0; c < 2; c++)
            cr_expect(fabs(a.v[r][c] - b.v[r][c]) <= 1e-6,
                      "row %d: %.6f uninterrupted, %.6f resumed", r, a.v[r][c], b.v[r][c]);
}

Test(folds, class_folders_and_a_test_folder) {
    char args[2048], run[128];
    snprintf(run, sizeof run, "%s/mri", dir);
    /* --device auto (after common's cpu: the last flag wins) where no GPU is usable says why
     * it runs on the CPU once, not once per fold and again for the test predictions. */
    snprintf(args, sizeof args,
             "train --data %s/d/train --folds 3 --test %s/d/val --input-size 32 "
             "--head gap,dense:2:softmax --out %s %s --device auto", dir, dir, run, common);
    TU_EXPECT_CLI(args, 0, "3-fold cross-validation");
    int notes = 0;
    for (const char *p = tu_out; (p = strstr(p, "using the CPU backend")) != NULL; p++) notes++;
    cr_expect(notes <= 1, "the backend's note said %d times:\n%s", notes, tu_out);
    if (strstr(tu_out, "device: cpu") != NULL)
        cr_expect_eq(notes, 1, "auto ran on the CPU without saying why:\n%s", tu_out);
    cr_expect(strstr(tu_out, "fold 3/3: training on 12 samples, validating on 6") != NULL, "%s",
              tu_out);
    char path[512];
    snprintf(path, sizeof path, "%s/predictions.csv", run);
    table t;
    read_table(path, &t);
    cr_expect_str_eq(t.header, "filename,dementia,normal");
    cr_expect_eq(t.rows, 6); /* 3 validation slices per class */
    for (int r = 0; r < t.rows; r++)
        cr_expect(fabs(t.v[r][0] + t.v[r][1] - 1.0) <= 2e-6, "row %d: %.6f + %.6f", r,
                  t.v[r][0], t.v[r][1]);
}

Test(folds, bad_combinations) {
    char args[2048];
    snprintf(args, sizeof args, "train --data %s/d/train --folds 3 --val %s/d/val --out %s/x %s",
             dir, dir, dir, common);
    TU_EXPECT_CLI(args, 2, "--folds takes each fold's validation data from --data");
    snprintf(args, sizeof args,
             "train --data %s/d/train --folds 3 --validation-split 0.2 --out %s/x %s", dir, dir,
             common);
    TU_EXPECT_CLI(args, 2, "drop --val / --validation-split");
    snprintf(args, sizeof args, "train --data %s/d/train --folds 1 --out %s/x %s", dir, dir,
             common);
    TU_EXPECT_CLI(args, 2, "--folds: expected a whole number from 2");
    snprintf(args, sizeof args, "train --data %s/d/train --test %s/d/val --out %s/x %s", dir,
             dir, dir, common);
    TU_EXPECT_CLI(args, 2, "--test goes with --folds");
    snprintf(args, sizeof args,
             "train --data %s/d/train --folds 3 --test %s/nothing --out %s/x %s", dir, dir, dir,
             common);
    TU_EXPECT_CLI(args, 1, "--test");
    snprintf(args, sizeof args, "train --data %s/d/train --folds 30 --out %s/x %s", dir, dir,
             common);
    TU_EXPECT_CLI(args, 2, "has only 18 samples");
    snprintf(args, sizeof args, "train --data %s/d/iceberg_test.json --folds 3 --out %s/x %s",
             dir, dir, common);
    TU_EXPECT_CLI(args, 2, "no labels");
    snprintf(args, sizeof args, "train --data %s/d/train --folds 3 --out %s/empty --resume %s",
             dir, dir, common);
    TU_EXPECT_CLI(args, 1, "no k-fold run to resume");
    snprintf(args, sizeof args, "train --data %s/d/train --folds 3 %s", dir, common);
    TU_EXPECT_CLI(args, 2, "--out RUN_DIR is required");
    struct stat st;
    char p[256];
    snprintf(p, sizeof p, "%s/x", dir);
    cr_expect(stat(p, &st) != 0, "refused runs create nothing");
}
