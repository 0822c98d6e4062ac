/* The epochs of a run. Each epoch: the freezing of the epoch (warm-up, then the target), the
 * frozen-prefix cache when it applies, the batch loop (a step per batch, a progress bar, a stop
 * request ending the step with a checkpoint), then the epoch's end: validation, the log row,
 * curves.png, the callbacks, and the checkpoint. The run's end writes final.h5.
 *
 * In a data-parallel run the epoch's loss and accuracy sums and the validation sums are reduced
 * across ranks before the row is formed, so every rank's callbacks decide the same. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fit.h"

const char *const fit_log_keys[FIT_KEYS] = {"acc", "loss", "lr", "val_acc", "val_loss"};

int fit_n_log_keys(const fit_run *r) { return r->val != NULL ? FIT_KEYS : 3; }

double fit_log_value(const double *row, const char *name) {
    for (int i = 0; i < FIT_KEYS; i++)
        if (strcmp(fit_log_keys[i], name) == 0) return row[i];
    return NAN;
}

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* A fresh run's first files: config.txt and the log's header. */
static ct_status loop_begin_files(fit_run *r) {
    ct_status s = fit_apply_freezing(r, 0);
    if (s != CT_OK) return s;
    if ((s = fit_write_text(r->path.config, r->config_text)) != CT_OK) return s;
    r->wrote_config = true;
    s = ct_csv_log_open(&r->log, r->path.log, fit_log_keys, fit_n_log_keys(r), false);
    if (s == CT_OK) r->wrote_log = true;
    return s;
}

/* The loop's state at the start: fresh, or what the checkpoint holds (--resume); in a
 * data-parallel run, rank 0's on every rank. */
static ct_status loop_begin(fit_run *r) {
    const ct_train_config *c = r->c;
    ct_status s = fit_callbacks_init(r, &r->cb);
    if (s != CT_OK) return s;
    memset(&r->st, 0, sizeof r->st);
    r->st.seed = c->seed;
    r->st.lr_scale = 1.0;
    fit_callbacks_save(&r->cb, &r->st);
    if (r->rank == 0) s = r->resuming ? fit_resume(r) : loop_begin_files(r);
    else s = fit_apply_freezing(r, 0);
    s = fit_dist_agree(r, s, r->resuming ? "resuming from the checkpoint" : "starting the log");
    return s == CT_OK ? fit_dist_share_start(r) : s;
}

/* Where the epoch's batches start: the cache or the loader, at the checkpoint's batch. */
static ct_status epoch_begin(fit_run *r, int epoch) {
    ct_status s = fit_apply_freezing(r, epoch);
    if (s == CT_OK) s = fit_dist_plan_buckets(r);
    if (s == CT_OK) s = fit_cache_prepare(r);
    if (s != CT_OK) return s;
    if (r->cache.active) {
        fit_cache_begin_epoch(r, (uint32_t)epoch, (uint32_t)r->st.batch_in_epoch, true);
        return CT_OK;
    }
    return ct_loader_begin_epoch_at(r->tl, (uint32_t)epoch, (uint32_t)r->st.batch_in_epoch);
}

/* A stop request between steps: the checkpoint, then CT_EINTR. */
static ct_status interrupted(fit_run *r, const ct_batch *b, int slot, ct_train_result *res) {
    ct_status s = fit_release_train(r, b, slot);
    if (s != CT_OK) return s;
    if (r->c->verbose > 0) fputc('\n', stdout);
    if ((s = fit_save_checkpoint(r)) != CT_OK) return s;
    res->interrupted = true;
    if (r->rank != 0)
        return ct_error(CT_EINTR, "rank %d: interrupted at epoch %lld, batch %lld with every rank "
                        "(rank 0 wrote the checkpoint)", r->rank, (long long)r->st.epoch + 1,
                        (long long)r->st.batch_in_epoch);
    return ct_error(CT_EINTR, "interrupted at epoch %lld, batch %lld: checkpoint written to %s; "
                    "continue with --resume", (long long)r->st.epoch + 1,
                    (long long)r->st.batch_in_epoch, r->path.ckpt);
}

/* One step and its bookkeeping; *b and *slot move on to the next batch. */
static ct_status step_and_count(fit_run *r, const ct_batch **b, int *slot, long steps,
                                double lr_scale) {
    double sums[FIT_SUMS] = {0};
    const ct_batch *nb = NULL;
    int nslot = -1;
    const bool prefetch = r->st.batch_in_epoch + 1 < steps && !fit_last_step_before_stop();
    ct_status s = fit_train_step(r, *b, *slot, prefetch, &nb, &nslot, lr_scale, sums);
    /* Giving the batches back must not replace the step's own error message. */
    char msg[4096] = "";
    if (s != CT_OK) snprintf(msg, sizeof msg, "%s", ct_last_error());
    ct_status rs = fit_release_train(r, *b, *slot);
    *b = nb;
    *slot = nslot;
    if (s == CT_OK && rs != CT_OK) {
        s = rs;
        snprintf(msg, sizeof msg, "%s", ct_last_error());
    }
    if (s != CT_OK) {
        (void)fit_release_train(r, *b, *slot);
        return ct_error(s, "%s", msg);
    }
    r->st.epoch_loss_sum += sums[0];
    r->st.epoch_correct += sums[1];
    r->st.epoch_seen += (int64_t)sums[2];
    r->st.step++;
    r->st.batch_in_epoch++;
    r->st.sample_in_epoch += (int64_t)sums[2];
    fit_count_step();
    return CT_OK;
}

/* The batches of one epoch, from the checkpoint's position. The bar is drawn up to the step
 * before the last: as Keras 2's ProgbarLogger does, the epoch's final line waits for the
 * validation metrics (epoch_row), so it is written once and carries them. */
static ct_status train_batches(fit_run *r, ct_progbar *bar, long steps, double lr_scale,
                               ct_train_result *res) {
    const ct_train_config *c = r->c;
    const ct_batch *b = NULL;
    int slot = -1;
    ct_status s = CT_OK;
    if (r->st.batch_in_epoch < steps && (s = fit_fetch_train(r, &b, &slot)) != CT_OK) return s;
    while (r->st.batch_in_epoch < steps && b != NULL) {
        if ((s = step_and_count(r, &b, &slot, steps, lr_scale)) != CT_OK) return s;
        if (b == NULL && r->cache.active && !fit_stop_agreed(r) && r->st.batch_in_epoch < steps)
            b = fit_cache_next(r);
        const double loss = r->st.epoch_loss_sum / r->st.epoch_seen;
        const double acc = r->st.epoch_correct / r->st.epoch_seen;
        if (c->verbose == 1 && r->st.batch_in_epoch < steps) {
            const char *names[2] = {"loss", "acc"};
            double vals[2] = {loss, acc};
            ct_progbar_update(bar, r->st.batch_in_epoch, names, vals, 2, now_seconds());
        }
        fit_callbacks_batch_end(r, steps, loss, acc);
        if (fit_stop_agreed(r)) return interrupted(r, b, slot, res);
    }
    return fit_release_train(r, b, slot);
}

static void print_epoch_line(const fit_run *r, const double *row, double seconds) {
    printf(" - %.0fs - loss: %.4f - acc: %.4f", seconds, row[FIT_LOSS], row[FIT_ACC]);
    if (r->val != NULL)
        printf(" - val_loss: %.4f - val_acc: %.4f", row[FIT_VAL_LOSS], row[FIT_VAL_ACC]);
    printf("\n");
}

/* The bar's final line: the epoch's metrics, validation included, on the one line. */
static void finish_bar(const fit_run *r, ct_progbar *bar, const double *row) {
    const char *names[4] = {"loss", "acc", "val_loss", "val_acc"};
    double vals[4] = {row[FIT_LOSS], row[FIT_ACC], row[FIT_VAL_LOSS], row[FIT_VAL_ACC]};
    ct_progbar_update(bar, bar->target, names, vals, r->val != NULL ? 4 : 2, now_seconds());
}

static ct_status write_curves(fit_run *r, int epochs) {
    double *loss = malloc(4 * (size_t)epochs * sizeof(double));
    if (loss == NULL) return ct_error(CT_ENOMEM, "cannot allocate the curves");
    double *vloss = loss + epochs, *acc = vloss + epochs, *vacc = acc + epochs;
    for (int e = 0; e < epochs; e++) {
        const double *row = r->history + (size_t)e * FIT_KEYS;
        loss[e] = row[FIT_LOSS];
        acc[e] = row[FIT_ACC];
        vloss[e] = row[FIT_VAL_LOSS];
        vacc[e] = row[FIT_VAL_ACC];
    }
    /* The history holds this epoch already, so the best so far includes it. */
    const int best = fit_callbacks_best_epoch(r, epochs);
    ct_status s = ct_curves_write(r->path.curves, loss, vloss, acc, vacc, epochs, best,
                                  r->cb.monitor);
    free(loss);
    return s;
}

/* The epoch's row (validation included), printed, logged and plotted. */
static ct_status epoch_row(fit_run *r, ct_progbar *bar, int epoch, double lr_scale, double t0,
                           double *row) {
    const ct_train_config *c = r->c;
    row[FIT_ACC] = r->st.epoch_correct / r->st.epoch_seen;
    row[FIT_LOSS] = r->st.epoch_loss_sum / r->st.epoch_seen;
    row[FIT_LR] = c->optimizer.lr * lr_scale;
    row[FIT_VAL_ACC] = row[FIT_VAL_LOSS] = NAN;
    ct_status s = CT_OK;
    if (r->val != NULL && (s = fit_validate(r, &row[FIT_VAL_LOSS], &row[FIT_VAL_ACC])) != CT_OK)
        return s;
    if (c->verbose == 2) print_epoch_line(r, row, now_seconds() - t0);
    else if (c->verbose == 1) finish_bar(r, bar, row);
    memcpy(r->history + (size_t)epoch * FIT_KEYS, row, FIT_KEYS * sizeof *row);
    if (r->rank != 0) return CT_OK; /* rank 0 alone writes the run folder */
    if ((s = ct_csv_log_row(&r->log, epoch, row)) != CT_OK) return s;
    if ((s = write_curves(r, epoch + 1)) != CT_OK) return s;
    r->wrote_curves = true;
    return CT_OK;
}

/* The end of an epoch: the row, the callbacks, the checkpoint. *stop: the run ends here. */
static ct_status epoch_end(fit_run *r, ct_progbar *bar, int epoch, double lr_scale, double t0,
                           ct_train_result *res, bool *stop) {
    double row[FIT_KEYS];
    ct_status s = epoch_row(r, bar, epoch, lr_scale, t0, row);
    bool early = false;
    if (s == CT_OK) s = fit_callbacks_epoch_end(r, epoch, row, now_seconds() - t0, stop, &early);
    if (s != CT_OK) return s;
    r->st.epoch = epoch + 1;
    r->st.batch_in_epoch = 0;
    r->st.sample_in_epoch = 0;
    r->st.epoch_loss_sum = r->st.epoch_correct = 0.0;
    r->st.epoch_seen = 0;
    s = fit_save_checkpoint(r);
    if (s == CT_OK) s = fit_keep_epoch_checkpoint(r, epoch + 1);
    char what[64];
    snprintf(what, sizeof what, "the end of epoch %d", epoch + 1);
    if ((s = fit_dist_agree(r, s, what)) != CT_OK) return s;
    fflush(stdout);
    res->epochs_run = epoch + 1;
    res->final_loss = row[FIT_LOSS];
    res->final_acc = row[FIT_ACC];
    res->final_val_loss = row[FIT_VAL_LOSS];
    res->final_val_acc = row[FIT_VAL_ACC];
    if (!*stop) return CT_OK;
    res->stopped_early = early;
    res->stopped_by_callback = !early;
    if (r->c->verbose > 0) printf("Epoch %d: %s\n", epoch + 1, early ? "early stopping"
                                                                      : "stopped by a callback");
    return early ? fit_callbacks_restore_best(r) : CT_OK;
}

/* final.h5 and the result. */
static ct_status loop_end(fit_run *r, ct_train_result *res) {
    res->best_value = r->cb.best.best;
    res->best_epoch = fit_callbacks_best_epoch(r, (int)r->st.epoch);
    const char *model = NULL;
    ct_status s = fit_save_final(r, &model);
    if (s == CT_OK) s = fit_finish_files(r);
    if (s != CT_OK) return s;
    snprintf(res->final_path, sizeof res->final_path, "%s", model);
    snprintf(res->best_path, sizeof res->best_path, "%s", r->path.best);
    if (r->c->verbose > 0 && model == r->path.best)
        printf("saved %s (--save-best-only: no final.h5; %s %.5f)\n", model, r->cb.monitor,
               r->cb.best.best);
    else if (r->c->verbose > 0)
        printf("saved %s (best: %s, %s %.5f)\n", model, r->path.best, r->cb.monitor,
               r->cb.best.best);
    return CT_OK;
}

ct_status fit_run_epochs(fit_run *r, ct_train_result *res) {
    const ct_train_config *c = r->c;
    ct_status s = loop_begin(r);
    if (s != CT_OK) return s;
    const long n_batches = (long)ct_loader_num_batches(r->tl);
    const long steps = c->steps_per_epoch > 0 && c->steps_per_epoch < n_batches
                           ? c->steps_per_epoch
                           : n_batches;
    bool stop = false;
    for (int epoch = (int)r->st.epoch; epoch < c->epochs && !stop; epoch++) {
        if ((s = epoch_begin(r, epoch)) != CT_OK) return s;
        const double lr_scale = ct_schedule_factor(&r->schedule, epoch) * r->st.lr_scale;
        if (c->verbose > 0) {
            printf("Epoch %d/%d\n", epoch + 1, c->epochs);
            fflush(stdout); /* a piped or tee'd log follows the run, not its exit */
        }
        const double t0 = now_seconds();
        ct_progbar bar;
        ct_progbar_init(&bar, steps, stdout, isatty(fileno(stdout)) && c->verbose == 1, t0);
        if ((s = train_batches(r, &bar, steps, lr_scale, res)) != CT_OK) return s;
        if ((s = epoch_end(r, &bar, epoch, lr_scale, t0, res, &stop)) != CT_OK) return s;
    }
    return loop_end(r, res);
}
