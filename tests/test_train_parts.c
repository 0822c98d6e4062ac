/* The training-loop parts against independent references: metrics against scikit-learn, the
 * EarlyStopping and ReduceLROnPlateau logic against Keras's own callbacks fed the same values
 * (tests/reference/train_parts_reference.py), plus schedules, the CSV log, the progress bar and
 * the curves plot. */
#define _POSIX_C_SOURCE 200809L /* mkstemp */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "model/model.h"
#include "model/optim.h"
#include "train/run.h"
#include "train/callbacks.h"
#include "data/data.h"
#include "util.h"

static tu_golden ref;

static void load(void) { cr_assert_eq(tu_golden_load(&ref, tu_fixture("train_parts.txt")), 0); }
static void unload(void) { tu_golden_free(&ref); }

TestSuite(train_parts, .init = load, .fini = unload);

static const double *get(const char *name, size_t size) {
    const tu_array *a = tu_golden_get(&ref, name);
    cr_assert_not_null(a, "fixture lacks %s", name);
    cr_assert_eq(a->size, size, "%s has %zu values, expected %zu", name, a->size, size);
    return a->v;
}

static float *as_float(const double *v, size_t n) {
    float *f = malloc(n * sizeof *f);
    for (size_t i = 0; i < n; i++) f[i] = (float)v[i];
    return f;
}

/* Metrics are sums of at most 40 logarithms in double from float32 inputs: they agree with
 * scikit-learn to ~1e-12; 1e-6 relative also absorbs scikit-learn's renormalisation of
 * softmax rows whose float32 sum is 1 +- 1e-7. */
#define METRIC_TOL 1e-6

static void expect_close(double got, double want, const char *what) {
    cr_expect(fabs(got - want) <= METRIC_TOL * fmax(1.0, fabs(want)), "%s: %.9g, expected %.9g",
              what, got, want);
}

Test(train_parts, binary_metrics_match_sklearn) {
    const int n = 40;
    float *p = as_float(get("bin/probs", n), n), *y = as_float(get("bin/labels", n), n);
    float *w = as_float(get("bin/weights", n), n);
    ct_metrics m;
    cr_assert_eq(ct_metrics_compute(&m, p, y, NULL, n, 1), CT_OK);
    expect_close(m.loss, get("bin/log_loss", 1)[0], "log loss");
    expect_close(m.accuracy, get("bin/accuracy", 1)[0], "accuracy");
    expect_close(m.auc, get("bin/auc", 1)[0], "ROC AUC");
    const double *conf = get("bin/confusion", 4), *prec = get("bin/precision", 2),
                 *rec = get("bin/recall", 2);
    for (int i = 0; i < 4; i++) cr_expect_eq(m.confusion[i], (long)conf[i], "confusion[%d]", i);
    for (int c = 0; c < 2; c++) {
        expect_close(m.precision[c], prec[c], "precision");
        expect_close(m.recall[c], rec[c], "recall");
    }
    ct_metrics_free(&m);
    cr_assert_eq(ct_metrics_compute(&m, p, y, w, n, 1), CT_OK);
    expect_close(m.loss, get("bin/weighted_loss", 1)[0], "weighted loss");
    expect_close(m.accuracy, get("bin/weighted_accuracy", 1)[0], "weighted accuracy");
    ct_metrics_free(&m);
    /* The same task as a two-class softmax (the mri head): the AUC of the second column. */
    float *p2 = malloc(2 * n * sizeof *p2), *y2 = malloc(2 * n * sizeof *y2);
    for (int i = 0; i < n; i++) {
        p2[2 * i] = 1.0f - p[i];
        p2[2 * i + 1] = p[i];
        y2[2 * i] = 1.0f - y[i];
        y2[2 * i + 1] = y[i];
    }
    cr_assert_eq(ct_metrics_compute(&m, p2, y2, NULL, n, 2), CT_OK);
    expect_close(m.auc, get("bin/auc", 1)[0], "ROC AUC of a two-class softmax");
    ct_metrics_free(&m);
    free(p2);
    free(y2);
    free(p);
    free(y);
    free(w);
}

Test(train_parts, categorical_metrics_match_sklearn) {
    const int n = 30;
    float *p = as_float(get("cat/probs", n * 3), n * 3);
    float *y = as_float(get("cat/labels", n * 3), n * 3);
    ct_metrics m;
    cr_assert_eq(ct_metrics_compute(&m, p, y, NULL, n, 3), CT_OK);
    expect_close(m.loss, get("cat/log_loss", 1)[0], "log loss");
    expect_close(m.accuracy, get("cat/accuracy", 1)[0], "accuracy");
    cr_expect(isnan(m.auc), "AUC is for two classes only");
    const double *conf = get("cat/confusion", 9), *prec = get("cat/precision", 3),
                 *rec = get("cat/recall", 3);
    for (int i = 0; i < 9; i++) cr_expect_eq(m.confusion[i], (long)conf[i], "confusion[%d]", i);
    /* The fixture marks 0/0 with NaN (zero_division=np.nan); scikit-learn's default,
     * zero_division="warn", reports 0.0 there and warns, and so does cutune. */
    int undefined = -1;
    for (int c = 0; c < 3; c++) {
        if (isnan(prec[c])) {
            cr_expect_eq(m.precision[c], 0.0, "precision[%d] of a never-predicted class", c);
            undefined = c;
        } else {
            expect_close(m.precision[c], prec[c], "precision");
        }
        expect_close(m.recall[c], rec[c], "recall");
    }
    cr_assert_eq(undefined, 2, "the fixture's class 2 is never predicted");
    /* The report says so, in scikit-learn's words, naming the class; no nan anywhere. */
    char report[8192] = "";
    FILE *f = tmpfile();
    cr_assert_not_null(f);
    const char *const names[3] = {"cats", "dogs", "birds"};
    ct_metrics_print(f, &m, names);
    rewind(f);
    report[fread(report, 1, sizeof report - 1, f)] = '\0';
    fclose(f);
    cr_expect(strstr(report, "Precision is ill-defined and being set to 0.0 in labels with no "
                             "predicted samples: birds") != NULL, "%s", report);
    cr_expect(strstr(report, "Recall is ill-defined") == NULL, "%s", report);
    cr_expect(strstr(report, "nan") == NULL, "%s", report);
    ct_metrics_free(&m);
    free(p);
    free(y);
}

Test(train_parts, metrics_reject_bad_input) {
    ct_metrics m;
    float p = 0.5f, y = 1.0f;
    cr_assert_eq(ct_metrics_compute(&m, &p, &y, NULL, 0, 1), CT_EINVAL);
    cr_assert_eq(ct_metrics_compute(&m, &p, &y, NULL, 1, 0), CT_EINVAL);
    cr_assert_eq(ct_metrics_compute(&m, &p, &y, NULL, 1, 1), CT_OK);
    cr_assert(isnan(m.auc), "AUC with one class present is undefined");
    ct_metrics_free(&m);
}

static int early_stop(const char *seq, const char *monitor, int patience, double min_delta,
                      double baseline, int start_from) {
    const double *v = get(seq, 12);
    ct_monitor mon;
    cr_assert_eq(ct_monitor_init(&mon, monitor, CT_MODE_AUTO, min_delta), CT_OK);
    ct_early_stopping e;
    ct_early_stopping_init(&e, &mon, patience);
    e.start_from_epoch = start_from;
    if (!isnan(baseline)) {
        e.has_baseline = true;
        e.baseline = baseline;
    }
    for (int epoch = 0; epoch < 12; epoch++) {
        bool improved;
        if (ct_early_stopping_update(&e, epoch, v[epoch], &improved)) return epoch;
    }
    return -1;
}

Test(train_parts, early_stopping_matches_keras) {
    cr_expect_eq(early_stop("seq/a", "val_loss", 2, 0.01, NAN, 0),
                 (int)get("es1/stopped_epoch", 1)[0]);
    cr_expect_eq(early_stop("seq/a", "val_loss", 0, 0.0, NAN, 0),
                 (int)get("es2/stopped_epoch", 1)[0]);
    cr_expect_eq(early_stop("seq/b", "val_acc", 2, 0.0, NAN, 0),
                 (int)get("es3/stopped_epoch", 1)[0]);
    cr_expect_eq(early_stop("seq/a", "val_loss", 1, 0.0, 0.8, 0),
                 (int)get("es4/stopped_epoch", 1)[0]);
    cr_expect_eq(early_stop("seq/a", "val_loss", 1, 0.0, NAN, 6),
                 (int)get("es5/stopped_epoch", 1)[0]);
}

static void reduce_lr(const char *seq, const char *monitor, double factor, int patience,
                      int cooldown, double min_lr, double min_delta, const char *want) {
    const double *v = get(seq, 12), *lrs = get(want, 12);
    ct_monitor mon;
    cr_assert_eq(ct_monitor_init(&mon, monitor, CT_MODE_AUTO, min_delta), CT_OK);
    ct_reduce_lr r;
    ct_reduce_lr_init(&r, &mon);
    r.factor = factor;
    r.patience = patience;
    r.cooldown = cooldown;
    r.min_lr = min_lr;
    double lr = 0.1;
    for (int epoch = 0; epoch < 12; epoch++) {
        ct_reduce_lr_update(&r, v[epoch], &lr);
        /* Keras keeps the rate as a float32 variable; compare at float32 precision. */
        cr_expect(fabs(lr - lrs[epoch]) <= 1e-6 * lrs[epoch], "%s epoch %d: lr %g, Keras %g",
                  want, epoch, lr, lrs[epoch]);
    }
}

Test(train_parts, reduce_lr_on_plateau_matches_keras) {
    reduce_lr("seq/a", "val_loss", 0.5, 2, 1, 0.01, 1e-4, "rl1/lr");
    reduce_lr("seq/b", "val_acc", 0.1, 1, 0, 0.0, 0.02, "rl2/lr");
}

Test(train_parts, monitors_and_schedules) {
    ct_monitor m;
    cr_assert_eq(ct_monitor_init(&m, "val_acc", CT_MODE_AUTO, 0.0), CT_OK);
    cr_assert(m.maximize);
    cr_assert_eq(ct_monitor_init(&m, "val_loss", CT_MODE_AUTO, 0.0), CT_OK);
    cr_assert(!m.maximize);
    cr_assert(!ct_monitor_better(&m, NAN, 1.0), "NaN never improves");
    cr_assert_eq(ct_monitor_init(&m, "", CT_MODE_AUTO, 0.0), CT_EINVAL);
    ct_monitor_mode mode;
    cr_assert_eq(ct_monitor_mode_parse("sideways", &mode), CT_EINVAL);

    ct_schedule s;
    cr_assert_eq(ct_schedule_parse(&s, "step:10:0.1", 30), CT_OK);
    cr_assert_float_eq(ct_schedule_factor(&s, 9.99), 1.0, 1e-12);
    cr_assert_float_eq(ct_schedule_factor(&s, 10.0), 0.1, 1e-12);
    cr_assert_float_eq(ct_schedule_factor(&s, 25.0), 0.01, 1e-12);
    cr_assert_eq(ct_schedule_parse(&s, "cosine:0.1", 10), CT_OK);
    cr_assert_float_eq(ct_schedule_factor(&s, 0.0), 1.0, 1e-12);
    cr_assert_float_eq(ct_schedule_factor(&s, 5.0), 0.55, 1e-12);
    cr_assert_float_eq(ct_schedule_factor(&s, 10.0), 0.1, 1e-12);
    s.warmup_epochs = 1;
    cr_assert_float_eq(ct_schedule_factor(&s, 0.0), 0.5, 1e-12);
    static const char *bad[] = {"step", "step:0:0.5", "step:5:2", "cosine:1.5", "linear"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_assert_eq(ct_schedule_parse(&s, bad[i], 10), CT_EINVAL, "'%s' accepted", bad[i]);
}

Test(train_parts, csv_log_is_keras_format) {
    char path[] = "/tmp/cutune-csv-XXXXXX";
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    close(fd);
    const char *keys[] = {"val_loss", "loss", "acc", "val_acc"};
    ct_csv_log log;
    cr_assert_eq(ct_csv_log_open(&log, path, keys, 4, false), CT_OK);
    /* Values in sorted key order: acc, loss, val_acc, val_loss. */
    double row0[4] = {0.5, 0.6931471824645996, 0.75, 1.0};
    double row1[4] = {0.625, 0.5, NAN, 0.25};
    cr_assert_eq(ct_csv_log_row(&log, 0, row0), CT_OK);
    cr_assert_eq(ct_csv_log_row(&log, 1, row1), CT_OK);
    FILE *f = fopen(path, "r");
    char text[512] = {0};
    cr_assert_gt(fread(text, 1, sizeof text - 1, f), 0);
    fclose(f);
    cr_assert_str_eq(text, "epoch,acc,loss,val_acc,val_loss\n"
                           "0,0.5,0.6931471824645996,0.75,1.0\n"
                           "1,0.625,0.5,nan,0.25\n");
    ct_csv_log resumed;
    cr_assert_eq(ct_csv_log_open(&resumed, path, keys, 4, true), CT_OK);
    cr_assert_eq(ct_csv_log_row(&resumed, 2, row0), CT_OK);
    const char *want[] = {"loss", "val_loss"};
    double back[6];
    int rows = 0;
    cr_assert_eq(ct_csv_log_read(path, want, 2, 2, back, 3, &rows), CT_OK);
    cr_assert_eq(rows, 3);
    cr_assert_eq(back[0], 0.6931471824645996);
    cr_assert_eq(back[3], 0.25);
    cr_assert_eq(ct_csv_log_read(path, (const char *[]){"auc"}, 1, 1, back, 3, &rows), CT_EFORMAT);
    remove(path);
}

Test(train_parts, progress_bar_is_keras_2) {
    ct_progbar p;
    ct_progbar_init(&p, 62, stdout, false, 100.0);
    const char *names[] = {"loss", "acc"};
    double values[] = {0.4123, 0.8};
    char line[512];
    ct_progbar_format(&p, 12, names, values, 2, 103.0, line, sizeof line);
    /* 12/62 of 30 columns is 5: four '=' and the '>' head. 3 s for 12 steps: ETA 12.5 s. */
    cr_assert_str_eq(line, "12/62 [====>.........................] - ETA: 12s - loss: 0.4123 - "
                           "acc: 0.8000");
    values[0] = 0.0004;
    ct_progbar_format(&p, 62, names, values, 2, 121.0, line, sizeof line);
    cr_assert_str_eq(line, "62/62 [==============================] - 21s 339ms/step - loss: "
                           "4.0000e-04 - acc: 0.8000");
    ct_progbar_init(&p, 5000, stdout, false, 0.0);
    ct_progbar_format(&p, 7, names, values, 0, 700.0, line, sizeof line);
    cr_assert(strstr(line, "   7/5000 [") == line, "%s", line);
    cr_assert(strstr(line, "ETA: 138:20:00") != NULL || strstr(line, "ETA: 13") != NULL, "%s",
              line);
}

Test(train_parts, curves_png_is_written_atomically) {
    char path[] = "/tmp/cutune-curves-XXXXXX";
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    close(fd);
    double loss[] = {0.9, 0.6, 0.4}, vloss[] = {1.0, 0.7, NAN};
    double acc[] = {0.5, 0.7, 0.8}, vacc[] = {0.45, 0.65, 0.75};
    cr_assert_eq(ct_curves_write(path, loss, vloss, acc, vacc, 3, 1, "val_loss"), CT_OK);
    FILE *f = fopen(path, "rb");
    unsigned char sig[8];
    cr_assert_eq(fread(sig, 1, 8, f), 8);
    fclose(f);
    cr_assert_eq(memcmp(sig, "\x89PNG\r\n\x1a\n", 8), 0, "not a PNG file");
    cr_assert_eq(ct_curves_write(path, loss, vloss, acc, vacc, 0, -1, NULL), CT_EINVAL);
    cr_assert_eq(ct_curves_write("/nonexistent-dir/curves.png", loss, vloss, acc, vacc, 3, -1,
                                 NULL), CT_EIO);
    cr_assert(strstr(ct_last_error(), "/nonexistent-dir/curves.png") != NULL);
    remove(path);
}

/* The green (44, 160, 44) pixels of curves.png in column x, and in the whole image. */
static void count_best_pixels(const char *path, int x, int *in_column, int *anywhere) {
    ct_image_options o;
    ct_image_options_defaults(&o);
    o.target_h = o.target_w = 0; /* the decoded 800x600, not Keras's 256x256 default */
    ct_image img;
    cr_assert_eq(ct_image_load(path, &o, &img), CT_OK, "%s", ct_last_error());
    *in_column = *anywhere = 0;
    for (int y = 0; y < img.h; y++)
        for (int i = 0; i < img.w; i++) {
            const uint8_t *p = img.data + ((size_t)y * img.w + i) * 3;
            const bool best = p[0] == 44 && p[1] == 160 && p[2] == 44;
            *anywhere += best;
            *in_column += best && i == x;
        }
    ct_image_free(&img);
}

Test(train_parts, curves_png_marks_the_best_epoch) {
    char path[] = "/tmp/cutune-curves-XXXXXX";
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    close(fd);
    double loss[] = {0.9, 0.6, 0.4}, vloss[] = {1.0, 0.7, 0.8};
    double acc[] = {0.5, 0.7, 0.8}, vacc[] = {0.45, 0.65, 0.6};
    /* Epoch 2 of 3 (index 1) is drawn halfway across the 800-pixel image's plot area, which
     * runs from x = 90 to x = 780 (curves.c's LEFT and W - RIGHT). */
    const int x_best = 90 + (780 - 90) * 1 / 2;
    cr_assert_eq(ct_curves_write(path, loss, vloss, acc, vacc, 3, 1, "val_loss"), CT_OK);
    int column = 0, anywhere = 0;
    count_best_pixels(path, x_best, &column, &anywhere);
    cr_expect(column > 100, "%d best-epoch pixels in column %d: the dashed line is missing",
              column, x_best);
    cr_assert_eq(ct_curves_write(path, loss, vloss, acc, vacc, 3, -1, NULL), CT_OK);
    count_best_pixels(path, x_best, &column, &anywhere);
    cr_expect_eq(anywhere, 0, "no best epoch, yet %d best-epoch pixels", anywhere);
    remove(path);
}

Test(train_parts, axis_ticks_are_nice_numbers) {
    double t[16], step = 0;
    int dec = -1;
    /* A loss from 0.213 to 0.927 with at most 6 ticks: steps of 0.2 from 0.2 to 1.0. */
    int n = ct_axis_ticks(0.213, 0.927, 6, t, 16, &step, &dec);
    cr_assert_eq(n, 5);
    cr_expect_float_eq(step, 0.2, 1e-12);
    cr_expect_eq(dec, 1);
    const double want[] = {0.2, 0.4, 0.6, 0.8, 1.0};
    for (int i = 0; i < n; i++) cr_expect_float_eq(t[i], want[i], 1e-12, "tick %d: %g", i, t[i]);
    /* Bounds on a multiple of the step get no extra tick (0.3 / 0.1 is 2.9999999999999996). */
    n = ct_axis_ticks(0.3, 0.7, 6, t, 16, &step, &dec);
    cr_assert_eq(n, 5, "%d ticks from %g", n, t[0]);
    cr_expect_float_eq(t[0], 0.3, 1e-12);
    cr_expect_float_eq(t[4], 0.7, 1e-12);
    cr_expect_eq(dec, 1);
    /* Every step is 1, 2 or 5 times a power of ten, the ticks bound the range, the count never
     * exceeds the limit, and the tick values are whole multiples of the step. */
    const double ranges[][2] = {{0.0, 1.0},   {0.68, 0.71},  {1.0, 30.0}, {-3.2, 0.1},
                                {2e-5, 9e-5}, {0.5, 0.5},    {1.0, 2.0},  {0.0, 12345.0},
                                {0.45, 0.75}, {0.693, 0.6932}};
    for (size_t r = 0; r < sizeof ranges / sizeof ranges[0]; r++) {
        const double lo = ranges[r][0], hi = ranges[r][1];
        for (int max = 3; max <= 10; max++) {
            n = ct_axis_ticks(lo, hi, max, t, 16, &step, &dec);
            cr_assert(n >= 2 && n <= max, "[%g, %g] max %d: %d ticks", lo, hi, max, n);
            cr_expect(t[0] <= lo && t[n - 1] >= hi, "[%g, %g]: ticks %g..%g", lo, hi, t[0],
                      t[n - 1]);
            const double mant = step / pow(10.0, floor(log10(step) + 1e-9));
            cr_expect(fabs(mant - 1) < 1e-9 || fabs(mant - 2) < 1e-9 || fabs(mant - 5) < 1e-9,
                      "[%g, %g]: step %g", lo, hi, step);
            for (int i = 0; i < n; i++) {
                const double k = t[i] / step;
                cr_expect(fabs(k - round(k)) < 1e-6, "tick %g is not a multiple of %g", t[i],
                          step);
                /* Printed with `dec` decimals, a tick reads back as itself. */
                char buf[64];
                snprintf(buf, sizeof buf, "%.*f", dec, t[i]);
                cr_expect(fabs(atof(buf) - t[i]) < step * 1e-6, "%s for %g", buf, t[i]);
            }
        }
    }
    /* The epoch axis of a 30-epoch run: steps of 5. */
    n = ct_axis_ticks(1.0, 30.0, 8, t, 16, &step, &dec);
    cr_expect_float_eq(step, 5.0, 1e-12);
    cr_expect_eq(dec, 0);
}

/* The out-of-device-memory message's arithmetic: the memory plan is exactly linear in the batch
 * size (fixed + n x per-sample, whatever is frozen), which is what lets ct_train read the fixed
 * and per-sample parts off plans at batch 1 and 2; and the largest batch keeps a tenth back. */
static size_t plan_bytes(int n, const char *freeze_to) {
    ct_backend be;
    cr_assert_eq(ct_backend_cpu_init(&be, 1), CT_OK);
    ct_model_config mc = {.input_h = 48, .input_w = 48, .input_c = 3, .aux_dim = 1,
                          .max_batch = n, .head = "iceberg", .seed = 1};
    ct_model *m = NULL;
    cr_assert_eq(ct_model_init(&m, &mc, &be), CT_OK, "%s", ct_last_error());
    cr_assert_eq(ct_model_freeze_to(m, freeze_to), CT_OK, "%s", ct_last_error());
    ct_optimizer_config oc;
    ct_optimizer_defaults(&oc, CT_OPT_ADAM);
    cr_assert_eq(ct_model_compile(m, &oc), CT_OK, "%s", ct_last_error());
    ct_model_memory mem;
    ct_model_memory_get(m, &mem);
    ct_model_free(m);
    ct_backend_free(&be);
    return mem.params + mem.grads + mem.optimizer + mem.activations;
}

Test(train_parts, largest_batch_from_the_memory_plan) {
    const char *depths[] = {"", "block3_pool", "block5_pool"};
    for (int d = 0; d < 3; d++) {
        size_t b1 = plan_bytes(1, depths[d]), b2 = plan_bytes(2, depths[d]);
        size_t b7 = plan_bytes(7, depths[d]);
        cr_assert_gt(b2, b1);
        cr_expect_eq(b7, b1 + 6 * (b2 - b1), "freeze to '%s': the plan is not linear in the batch",
                     depths[d]);
    }
    /* fixed 100, 10 per sample: 90% of the 1000 left over is 900, i.e. 90 samples. */
    cr_expect_eq(ct_train_largest_batch(100, 10, 1100), 90);
    cr_expect_eq(ct_train_largest_batch(100, 10, 100), 0);
    cr_expect_eq(ct_train_largest_batch(100, 10, 50), 0);
    cr_expect_eq(ct_train_largest_batch(100, 0, 1100), 0);
    cr_expect_eq(ct_train_largest_batch(100, 10, 110), 0);
    cr_expect_eq(ct_train_largest_batch(0, 1, (size_t)1 << 40), 1000000);
    /* 224 x 224 x 64 x 668 < 2^31 <= 224 x 224 x 64 x 669 */
    cr_expect_eq(ct_train_cudnn_batch_cap(224), 668);
    cr_expect_eq(ct_train_cudnn_batch_cap(32), 32767);
}
