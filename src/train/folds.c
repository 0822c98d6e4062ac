/* `cutune train --folds K`: the seed notebook's k-fold workflow. The labelled data is dealt into
 * K stratified folds (seeded); fold k trains one ct_train run on the other folds, validating on
 * fold k, into RUN_DIR/fold_<k>/ with the configured callbacks (early stopping, best
 * checkpoint); then each fold's best.h5 predicts the test data and the predictions are
 * averaged, as the notebook does for its Kaggle submission.
 *
 * RUN_DIR/folds.csv lists the folds that finished, with their best validation metrics; with
 * --resume those folds are kept, an interrupted fold continues from its own checkpoint, and the
 * rest start. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../core/atomic.h"
#include "train/run.h"
#include "fit.h"

static bool exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0;
}

static bool is_dir(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

/* ---- CSV (RFC 4180 quoting, as predict writes it) ---- */

typedef struct csv_table {
    int rows, cols;      /* rows include the header */
    char **cell;         /* rows * cols */
} csv_table;

static void csv_free(csv_table *t) {
    if (t->cell != NULL)
        for (int i = 0; i < t->rows * t->cols; i++) free(t->cell[i]);
    free(t->cell);
    memset(t, 0, sizeof *t);
}

static char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (f == NULL) return NULL;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    while (buf != NULL) {
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (n < cap) break;
        char *grown = realloc(buf, 2 * cap + 1);
        if (grown == NULL) {
            free(buf);
            buf = NULL;
            break;
        }
        buf = grown;
        cap *= 2;
    }
    fclose(f);
    if (buf != NULL) buf[n] = '\0';
    *len = n;
    return buf;
}

/* Parses a whole CSV file; every row must have as many fields as the header. */
static ct_status csv_read(const char *path, csv_table *t) {
    memset(t, 0, sizeof *t);
    size_t len = 0;
    char *text = slurp(path, &len);
    if (text == NULL) return ct_error(CT_EIO, "%s: cannot read: %s", path, strerror(errno));
    size_t cap = 64, n = 0;
    char **cells = malloc(cap * sizeof *cells);
    char *field = malloc(len + 1);
    ct_status s = CT_OK;
    int row_fields = 0, rows = 0, cols = -1;
    size_t i = 0;
    if (cells == NULL || field == NULL) {
        s = ct_error(CT_ENOMEM, "%s: cannot allocate", path);
        goto done;
    }
    while (i < len) {
        size_t fl = 0;
        if (text[i] == '"') {
            i++;
            for (;;) {
                if (i >= len) {
                    s = ct_error(CT_EFORMAT, "%s: unterminated quoted field", path);
                    goto done;
                }
                if (text[i] == '"') {
                    if (i + 1 < len && text[i + 1] == '"') {
                        field[fl++] = '"';
                        i += 2;
                        continue;
                    }
                    i++;
                    break;
                }
                field[fl++] = text[i++];
            }
        } else {
            while (i < len && text[i] != ',' && text[i] != '\n' && text[i] != '\r')
                field[fl++] = text[i++];
        }
        field[fl] = '\0';
        if (n == cap) {
            char **grown = realloc(cells, 2 * cap * sizeof *cells);
            if (grown == NULL) {
                s = ct_error(CT_ENOMEM, "%s: cannot allocate", path);
                goto done;
            }
            cells = grown;
            cap *= 2;
        }
        if ((cells[n] = malloc(fl + 1)) == NULL) {
            s = ct_error(CT_ENOMEM, "%s: cannot allocate", path);
            goto done;
        }
        memcpy(cells[n++], field, fl + 1);
        row_fields++;
        if (i < len && text[i] == ',') {
            i++;
            continue;
        }
        /* End of the row. */
        if (i < len && text[i] == '\r') i++;
        if (i < len && text[i] == '\n') i++;
        if (cols < 0) cols = row_fields;
        else if (row_fields != cols) {
            s = ct_error(CT_EFORMAT, "%s: row %d has %d fields, the header %d", path, rows + 1,
                         row_fields, cols);
            goto done;
        }
        rows++;
        row_fields = 0;
    }
    if (rows == 0) s = ct_error(CT_EFORMAT, "%s: empty file", path);
done:
    free(text);
    free(field);
    t->cell = cells;
    t->rows = rows;
    t->cols = cols < 0 ? 0 : cols;
    if (s != CT_OK) {
        for (size_t k = 0; k < n; k++) free(cells[k]);
        free(cells);
        memset(t, 0, sizeof *t);
    }
    return s;
}

/* Averages the per-fold prediction files (same header, same names in the same order) into
 * `out`. */
static ct_status average_predictions(char (*paths)[4200], int k, const char *out, size_t *rows) {
    csv_table *t = calloc((size_t)k, sizeof *t);
    if (t == NULL) return ct_error(CT_ENOMEM, "cannot allocate the predictions");
    ct_status s = CT_OK;
    for (int f = 0; f < k && s == CT_OK; f++) s = csv_read(paths[f], &t[f]);
    for (int f = 1; f < k && s == CT_OK; f++) {
        if (t[f].rows != t[0].rows || t[f].cols != t[0].cols) {
            s = ct_error(CT_EFORMAT, "%s has %d rows of %d columns but %s has %d of %d", paths[f],
                         t[f].rows, t[f].cols, paths[0], t[0].rows, t[0].cols);
            break;
        }
        for (int r = 0; r < t[0].rows && s == CT_OK; r++) {
            int cmax = r == 0 ? t[0].cols : 1; /* the header, and the name of every row */
            for (int c = 0; c < cmax; c++)
                if (strcmp(t[f].cell[r * t[f].cols + c], t[0].cell[r * t[0].cols + c]) != 0)
                    s = ct_error(CT_EFORMAT, "%s and %s differ at row %d ('%s' vs '%s')",
                                 paths[0], paths[f], r + 1, t[0].cell[r * t[0].cols + c],
                                 t[f].cell[r * t[f].cols + c]);
        }
    }
    ct_atomic_file a;
    if (s == CT_OK) s = ct_atomic_open(&a, out, "w");
    if (s == CT_OK) {
        const int cols = t[0].cols;
        for (int c = 0; c < cols; c++) {
            if (c > 0) fputc(',', a.f);
            ct_csv_field(a.f, t[0].cell[c]);
        }
        fputc('\n', a.f);
        for (int r = 1; r < t[0].rows && s == CT_OK; r++) {
            ct_csv_field(a.f, t[0].cell[r * cols]);
            for (int c = 1; c < cols; c++) {
                double sum = 0.0;
                for (int f = 0; f < k; f++) {
                    const char *v = t[f].cell[r * cols + c];
                    char *end = NULL;
                    double x = strtod(v, &end);
                    if (end == v || *end != '\0' || !isfinite(x)) {
                        s = ct_error(CT_EFORMAT, "%s row %d: '%s' is not a probability",
                                     paths[f], r + 1, v);
                        break;
                    }
                    sum += x;
                }
                fprintf(a.f, ",%.6f", sum / k);
            }
            fputc('\n', a.f);
        }
        if (s == CT_OK) s = ct_atomic_commit(&a);
        else ct_atomic_abort(&a);
        if (s == CT_OK) *rows = (size_t)(t[0].rows - 1);
    }
    for (int f = 0; f < k; f++) csv_free(&t[f]);
    free(t);
    return s;
}

/* ---- folds.csv: the finished folds ----
 *
 * best_epoch counts from 0, as the epoch column of each fold's log.csv does (Keras's
 * CSVLogger), so a fold's best row is found in its log by that number. The printed table counts
 * from 1, as the "Epoch N/M" lines do. */

static ct_status write_summary(const char *path, const ct_folds_result *r, const bool *done) {
    ct_atomic_file a;
    ct_status s = ct_atomic_open(&a, path, "w");
    if (s != CT_OK) return s;
    fputs("fold,n_train,n_val,epochs,best_epoch,val_loss,val_acc\n", a.f);
    for (int k = 0; k < r->folds; k++) {
        if (!done[k]) continue;
        const ct_fold_result *f = &r->fold[k];
        char l[64], acc[64];
        ct_format_double(l, sizeof l, f->best_val_loss);
        ct_format_double(acc, sizeof acc, f->best_val_acc);
        fprintf(a.f, "%d,%zu,%zu,%d,%d,%s,%s\n", k + 1, f->n_train, f->n_val, f->epochs_run,
                f->best_epoch, l, acc);
    }
    return ct_atomic_commit(&a);
}

/* The finished folds of an earlier run (resume). */
static ct_status read_summary(const char *path, ct_folds_result *r, bool *done) {
    if (!exists(path)) return CT_OK;
    csv_table t;
    ct_status s = csv_read(path, &t);
    if (s != CT_OK) return s;
    if (t.cols != 7 || strcmp(t.cell[0], "fold") != 0) {
        csv_free(&t);
        return ct_error(CT_EFORMAT, "%s: not a folds summary written by cutune", path);
    }
    for (int row = 1; row < t.rows; row++) {
        char **c = t.cell + row * t.cols;
        int k = atoi(c[0]);
        if (k < 1 || k > r->folds) {
            csv_free(&t);
            return ct_error(CT_EINVAL, "%s lists fold %s, but this run has %d folds (--folds "
                            "must stay as the run started)", path, c[0], r->folds);
        }
        ct_fold_result *f = &r->fold[k - 1];
        f->n_train = (size_t)strtoull(c[1], NULL, 10);
        f->n_val = (size_t)strtoull(c[2], NULL, 10);
        f->epochs_run = atoi(c[3]);
        f->best_epoch = atoi(c[4]);
        f->best_val_loss = strtod(c[5], NULL);
        f->best_val_acc = strtod(c[6], NULL);
        done[k - 1] = true;
    }
    csv_free(&t);
    return CT_OK;
}

/* The best epoch of a fold's log by the monitor (ModelCheckpoint's rule: strictly better, no
 * min_delta), with its validation metrics. */
static ct_status fold_best(const ct_train_config *c, const char *dir, ct_fold_result *f) {
    static const char *const keys[5] = {"acc", "loss", "lr", "val_acc", "val_loss"};
    char path[4400];
    snprintf(path, sizeof path, "%s/log.csv", dir);
    const int max_rows = c->epochs + 1000;
    double *v = malloc((size_t)max_rows * 5 * sizeof *v);
    if (v == NULL) return ct_error(CT_ENOMEM, "cannot read %s", path);
    int rows = 0;
    ct_status s = ct_csv_log_read(path, keys, 5, 5, v, max_rows, &rows);
    ct_monitor mon;
    if (s == CT_OK) s = ct_monitor_init(&mon, c->monitor, c->monitor_mode, 0.0);
    int col = 4;
    for (int i = 0; i < 5; i++)
        if (strcmp(keys[i], c->monitor) == 0) col = i;
    f->best_epoch = -1;
    f->best_val_loss = f->best_val_acc = NAN;
    for (int e = 0; s == CT_OK && e < rows; e++) {
        double x = v[(size_t)e * 5 + col];
        if (ct_monitor_better(&mon, x, mon.best)) {
            mon.best = x;
            f->best_epoch = e;
            f->best_val_acc = v[(size_t)e * 5 + 3];
            f->best_val_loss = v[(size_t)e * 5 + 4];
        }
    }
    if (s == CT_OK) f->epochs_run = rows;
    free(v);
    return s;
}

/* ---- the run ---- */

static ct_status open_all(const ct_train_config *c, ct_dataset **ds) {
    if (!exists(c->data)) return ct_error(CT_ENOTFOUND, "%s: no such file or folder", c->data);
    ct_status s;
    if (is_dir(c->data)) {
        ct_folder_options fo = {.role = CT_ROLE_TRAINING};
        s = ct_dataset_open_folder(ds, c->data, &fo);
    } else {
        ct_iceberg_options io = {.na_policy = c->na_policy, .na_value = c->na_value,
                                 .role = CT_ROLE_TRAINING};
        s = ct_dataset_open_iceberg(ds, c->data, &io);
    }
    if (s != CT_OK) return s;
    if (!ct_dataset_labelled(*ds))
        return ct_error(CT_EINVAL, "%s has no labels (is_iceberg): it is test data; train on "
                        "train.json and give the test file with --test", c->data);
    /* Once for every fold: the folds' runs get their data open and say nothing. */
    if (c->png16 == CT_PNG16_CLIP && c->verbose >= 0)
        ct_png16_note(ct_dataset_png16_count(*ds), c->png16, c->data);
    return CT_OK;
}

static ct_status views(const ct_dataset *all, const int *fold_of, int k, ct_dataset **train,
                       ct_dataset **val) {
    const size_t n = ct_dataset_count(all);
    size_t *tr = malloc(n * sizeof *tr), *va = malloc(n * sizeof *va);
    if (tr == NULL || va == NULL) {
        free(tr);
        free(va);
        return ct_error(CT_ENOMEM, "cannot allocate fold %d", k + 1);
    }
    size_t nt = 0, nv = 0;
    for (size_t i = 0; i < n; i++) {
        if (fold_of[i] == k) va[nv++] = i;
        else tr[nt++] = i;
    }
    ct_status s = ct_dataset_subset(all, tr, nt, CT_ROLE_TRAINING, train);
    if (s == CT_OK) s = ct_dataset_subset(all, va, nv, CT_ROLE_VALIDATION, val);
    free(tr);
    free(va);
    return s;
}

static void print_table(const ct_folds_result *r, const bool *done, const char *monitor) {
    printf("\n%d-fold cross-validation (best epoch by %s):\n", r->folds, monitor);
    printf("%-6s %8s %8s %7s %10s %10s %9s\n", "fold", "train", "val", "epochs", "best epoch",
           "val_loss", "val_acc");
    for (int k = 0; k < r->folds; k++) {
        const ct_fold_result *f = &r->fold[k];
        if (!done[k]) continue;
        printf("%-6d %8zu %8zu %7d %10d %10.4f %9.4f\n", k + 1, f->n_train, f->n_val,
               f->epochs_run, f->best_epoch + 1, f->best_val_loss, f->best_val_acc);
    }
    printf("%-6s %8s %8s %7s %10s %10.4f %9.4f\n", "mean", "", "", "", "", r->mean_val_loss,
           r->mean_val_acc);
}

/* What can be refused before anything is opened; `summary` and `first` are folds.csv and
 * fold_1/ of the run folder. */
static ct_status check_request(const ct_train_config *c, int folds, const char *test,
                               const char *summary, const char *first) {
    if (folds < 2 || folds > CT_MAX_FOLDS)
        return ct_error(CT_EINVAL, "--folds %d: expected 2 to %d", folds, CT_MAX_FOLDS);
    if (c->val != NULL || c->validation_split > 0.0)
        return ct_error(CT_EINVAL, "--folds takes each fold's validation data from the "
                        "training data: drop --val / --validation-split");
    if (c->train_ds != NULL)
        return ct_error(CT_EINVAL, "k-fold training opens its own data (train_ds must be "
                        "unset)");
    if (c->data == NULL) return ct_error(CT_EINVAL, "--data DIR|train.json is required");
    if (c->out_dir == NULL || c->out_dir[0] == '\0')
        return ct_error(CT_EINVAL, "--out RUN_DIR is required: the folds' runs go to "
                        "RUN_DIR/fold_<k>/");
    if (c->epochs < 1) return ct_error(CT_EINVAL, "--epochs must be at least 1");
    if (test != NULL && !exists(test))
        return ct_error(CT_ENOTFOUND, "--test %s: no such file or folder", test);
    if (exists(c->out_dir) && !is_dir(c->out_dir))
        return ct_error(CT_EINVAL, "%s exists and is not a directory", c->out_dir);
    if (!c->resume && (exists(summary) || exists(first)))
        return ct_error(CT_EINVAL, "%s already holds a k-fold run: add --resume to continue "
                        "it, or choose another --out (nothing was changed)", c->out_dir);
    if (c->resume && !exists(summary) && !exists(first))
        return ct_error(CT_ENOTFOUND, "%s holds no k-fold run to resume (start it without "
                        "--resume)", c->out_dir);
    return CT_OK;
}

/* The fold of every sample: the stratified deal keyed by the seed. */
static ct_status deal(const ct_train_config *c, const ct_dataset *all, int folds,
                      int **fold_of) {
    const size_t n = ct_dataset_count(all);
    if (n < (size_t)folds)
        return ct_error(CT_EINVAL, "--folds %d: %s has only %zu samples", folds, c->data, n);
    int *labels = malloc(n * sizeof *labels);
    *fold_of = malloc(n * sizeof **fold_of);
    ct_status s = CT_OK;
    if (labels == NULL || *fold_of == NULL) {
        s = ct_error(CT_ENOMEM, "cannot allocate the folds");
    } else {
        for (size_t i = 0; i < n; i++) labels[i] = ct_dataset_label(all, i);
        s = ct_kfold_assign(labels, n, folds, c->seed, *fold_of);
    }
    free(labels);
    return s;
}

/* Fold k: a ct_train run on the other folds, validating on fold k, into RUN_DIR/fold_<k+1>/
 * (resumed from its checkpoint when there is one); then its best epoch into folds.csv. */
static ct_status train_fold(const ct_train_config *c, ct_train_config *fc, const ct_dataset *all,
                            const int *fold_of, int k, int folds, ct_folds_result *r) {
    char dir[4300], subset[128], ckpt[4400], log[4400];
    snprintf(dir, sizeof dir, "%s/fold_%d", c->out_dir, k + 1);
    snprintf(subset, sizeof subset, "fold %d/%d, seed %llu", k + 1, folds,
             (unsigned long long)c->seed);
    snprintf(ckpt, sizeof ckpt, "%s/checkpoint.h5", dir);
    snprintf(log, sizeof log, "%s/log.csv", dir);
    fc->resume = c->resume && exists(ckpt);
    if (c->resume && !fc->resume && exists(log))
        return ct_error(CT_EINVAL, "fold %d: %s has no checkpoint to resume from (the run "
                        "stopped before its first epoch ended): remove that folder and run "
                        "again with --resume", k + 1, dir);
    ct_dataset *train = NULL, *val = NULL;
    ct_status s = views(all, fold_of, k, &train, &val);
    ct_fold_result *f = &r->fold[k];
    ct_train_result tr;
    if (s == CT_OK) {
        fc->out_dir = dir;
        fc->train_ds = train;
        fc->val_ds = val;
        fc->data_subset = subset;
        f->n_train = ct_dataset_count(train);
        f->n_val = ct_dataset_count(val);
        if (c->verbose > 0)
            printf("\nfold %d/%d: training on %zu samples, validating on %zu, into %s%s\n",
                   k + 1, folds, f->n_train, f->n_val, dir, fc->resume ? " (resuming)" : "");
        s = ct_train(fc, &tr);
    }
    ct_dataset_free(train);
    ct_dataset_free(val);
    if (s == CT_OK) s = fold_best(c, dir, f);
    if (s == CT_OK) f->stopped_early = tr.stopped_early;
    return s;
}

/* Each fold's best.h5 (final.h5 when none improved) predicts `test`; the mean goes to
 * RUN_DIR/predictions.csv. */
static ct_status predict_test(const ct_train_config *c, int folds, const char *test,
                              ct_folds_result *r) {
    char(*paths)[4200] = calloc((size_t)folds, sizeof *paths);
    if (paths == NULL) return ct_error(CT_ENOMEM, "cannot allocate the prediction paths");
    ct_status s = CT_OK;
    for (int k = 0; k < folds && s == CT_OK; k++) {
        if (ct_train_stop_requested()) {
            s = ct_error(CT_EINTR, "interrupted while predicting %s (the folds are trained: "
                         "predict with each fold_<k>/best.h5)", test);
            break;
        }
        char model[4400];
        snprintf(model, sizeof model, "%s/fold_%d/best.h5", c->out_dir, k + 1);
        if (!exists(model)) snprintf(model, sizeof model, "%s/fold_%d/final.h5", c->out_dir, k + 1);
        snprintf(paths[k], sizeof paths[k], "%s/fold_%d/predictions.csv", c->out_dir, k + 1);
        ct_predict_config pc;
        ct_predict_config_defaults(&pc);
        pc.model = model;
        pc.data = test;
        pc.out = paths[k];
        pc.batch_size = c->batch_size;
        pc.threads = c->threads; /* 0: predict's default for its backend */
        pc.device = c->device;
        pc.skip_bad = c->skip_bad;
        pc.png16 = c->png16;
        pc.png16_noted = k > 0; /* the test data's note once, with fold 1's predictions */
        size_t rows = 0;
        s = ct_predict(&pc, &rows);
        if (s == CT_OK && c->verbose > 0)
            printf("fold %d: %zu predictions of %s by %s -> %s\n", k + 1, rows, test, model,
                   paths[k]);
    }
    snprintf(r->predictions_path, sizeof r->predictions_path, "%s/predictions.csv", c->out_dir);
    if (s == CT_OK) s = average_predictions(paths, folds, r->predictions_path, &r->test_rows);
    if (s == CT_OK && c->verbose >= 0)
        printf("wrote %s: the mean of the %d folds' predictions (%zu rows)\n",
               r->predictions_path, folds, r->test_rows);
    free(paths);
    return s;
}

static void fold_means(ct_folds_result *r, int folds) {
    double sl = 0.0, sa = 0.0;
    for (int k = 0; k < folds; k++) {
        sl += r->fold[k].best_val_loss;
        sa += r->fold[k].best_val_acc;
    }
    r->mean_val_loss = sl / folds;
    r->mean_val_acc = sa / folds;
}

ct_status ct_train_folds(const ct_train_config *c, int folds, const char *test,
                         ct_folds_result *r) {
    memset(r, 0, sizeof *r);
    r->folds = folds;
    r->mean_val_loss = r->mean_val_acc = NAN;
    char summary[4300], first[4300];
    snprintf(summary, sizeof summary, "%s/folds.csv", c->out_dir ? c->out_dir : "");
    snprintf(first, sizeof first, "%s/fold_1", c->out_dir ? c->out_dir : "");
    ct_status s = check_request(c, folds, test, summary, first);
    if (s != CT_OK) return s;
    ct_dataset *all = NULL;
    int *fold_of = NULL, lock_fd = -1;
    bool done[CT_MAX_FOLDS] = {false};
    if ((s = open_all(c, &all)) != CT_OK || (s = deal(c, all, folds, &fold_of)) != CT_OK ||
        (s = ct_make_dirs(c->out_dir, NULL)) != CT_OK ||
        (s = fit_lock_run_dir(c->out_dir, &lock_fd)) != CT_OK)
        goto out;
    if (c->resume && (s = read_summary(summary, r, done)) != CT_OK) goto out;
    ct_train_config fc = *c;
    /* --strategy auto once, on the whole training data, rather than once per fold. */
    if (c->strategy == CT_STRATEGY_AUTO && (s = fit_auto_strategy(c, all, &fc.strategy)) != CT_OK)
        goto out;
    for (int k = 0; k < folds && s == CT_OK; k++) {
        if (ct_train_stop_requested())
            s = ct_error(CT_EINTR, "interrupted before fold %d: continue with --resume", k + 1);
        else if (done[k] && c->verbose > 0)
            printf("fold %d/%d: finished earlier (%s)\n", k + 1, folds, summary);
        else if (!done[k] && (s = train_fold(c, &fc, all, fold_of, k, folds, r)) == CT_OK) {
            done[k] = true;
            s = write_summary(summary, r, done);
        }
    }
    if (s != CT_OK) goto out;
    fold_means(r, folds);
    print_table(r, done, c->monitor);
    if (test != NULL) s = predict_test(c, folds, test, r);
out:
    fit_unlock_run_dir(lock_fd);
    ct_dataset_free(all);
    free(fold_of);
    return s;
}
