/* The callbacks of a run, Keras's and the user's, with the state a checkpoint keeps of them.
 *
 * At the end of every epoch, in Keras's order: ModelCheckpoint(save_best_only) writes best.h5
 * when the monitored value improves (no min_delta, as in Keras); EarlyStopping counts epochs
 * without an improvement larger than --min-delta and, with --restore-best-weights, keeps the
 * weights of its own best epoch in es_best.h5 when best.h5 moves past them; ReduceLROnPlateau
 * lowers the rate. Then the user's on_epoch_end (ct_train_callbacks), which may stop the run.
 * fit_callbacks_save and fit_callbacks_load are the one place the state moves into and out of
 * ct_checkpoint_state, so a resumed run's callbacks decide exactly as an uninterrupted run's. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "fit.h"

ct_status fit_callbacks_init(fit_run *r, fit_callbacks *cb) {
    const ct_train_config *c = r->c;
    const char *monitor = c->monitor;
    if (r->val == NULL && strncmp(monitor, "val_", 4) == 0) monitor += 4;
    bool known = false;
    for (int i = 0; i < fit_n_log_keys(r); i++) known |= strcmp(fit_log_keys[i], monitor) == 0;
    if (!known || strcmp(monitor, "lr") == 0)
        return ct_error(CT_EINVAL, "--monitor %s: not a logged metric (loss, acc%s)", c->monitor,
                        r->val != NULL ? ", val_loss, val_acc" : "");
    if (monitor != c->monitor && c->verbose > 0)
        printf("no validation data: monitoring '%s' instead of '%s'\n", monitor, c->monitor);
    memset(cb, 0, sizeof *cb);
    cb->monitor = monitor;
    ct_status s = ct_monitor_init(&cb->best, monitor, c->monitor_mode, 0.0);
    if (s != CT_OK) return s;
    ct_monitor es_mon = cb->best;
    es_mon.min_delta = c->min_delta;
    ct_early_stopping_init(&cb->es, &es_mon, c->early_stopping_patience);
    ct_monitor rl_mon = cb->best;
    rl_mon.min_delta = 1e-4; /* Keras's ReduceLROnPlateau default */
    ct_reduce_lr_init(&cb->rl, &rl_mon);
    if (c->reduce_lr_patience >= 0) {
        cb->rl.patience = c->reduce_lr_patience;
        cb->rl.factor = c->reduce_lr_factor;
        cb->rl.min_lr = c->min_lr;
        cb->rl.cooldown = c->reduce_lr_cooldown;
    }
    return CT_OK;
}

void fit_callbacks_save(const fit_callbacks *cb, ct_checkpoint_state *st) {
    snprintf(st->monitor, sizeof st->monitor, "%s", cb->monitor);
    st->best_metric = cb->best.best;
    st->best_epoch = cb->es.best_epoch;
    st->es_best = cb->es.mon.best;
    st->patience_wait = cb->es.wait;
    st->plateau_best = cb->rl.mon.best;
    st->plateau_wait = cb->rl.wait;
    st->plateau_cooldown = cb->rl.cooldown_counter;
}

void fit_callbacks_load(fit_callbacks *cb, const ct_checkpoint_state *st) {
    cb->best.best = st->best_metric;
    cb->es.best_epoch = (int)st->best_epoch;
    cb->es.mon.best = st->es_best;
    cb->es.wait = (int)st->patience_wait;
    cb->rl.mon.best = st->plateau_best;
    cb->rl.wait = (int)st->plateau_wait;
    cb->rl.cooldown_counter = (int)st->plateau_cooldown;
}

/* ModelCheckpoint(save_best_only=True). EarlyStopping's best epoch (with --min-delta) is always
 * also a checkpoint improvement, so best.h5 held it when it happened. A checkpoint improvement
 * that EarlyStopping does not count would replace it: for --restore-best-weights it moves to
 * es_best.h5 first (once; later such epochs just replace best.h5). */
static ct_status checkpoint_best(fit_run *r, int epoch, double value, bool es_improved) {
    const ct_train_config *c = r->c;
    fit_callbacks *cb = &r->cb;
    if (!ct_monitor_better(&cb->best, value, cb->best.best)) {
        if (c->verbose > 0)
            printf("Epoch %d: %s did not improve from %.5f\n", epoch + 1, cb->monitor,
                   cb->best.best);
        return CT_OK;
    }
    if (c->verbose > 0)
        printf("Epoch %d: %s improved from %.5f to %.5f, saving model to %s\n", epoch + 1,
               cb->monitor, cb->best.best, value, r->path.best);
    cb->best.best = value;
    if (r->rank != 0) return CT_OK; /* rank 0 alone writes the run folder */
    if (c->restore_best_weights && c->early_stopping_patience >= 0 && !es_improved &&
        fit_exists(r->path.best) && !fit_exists(r->path.es_best) &&
        rename(r->path.best, r->path.es_best) != 0)
        return ct_error(CT_EIO, "%s: cannot keep EarlyStopping's best weights as %s: %s",
                        r->path.best, r->path.es_best, strerror(errno));
    ct_status s = fit_save_weights(r, r->path.best);
    if (s != CT_OK) return s;
    r->best_is_current = true;
    if (es_improved && fit_exists(r->path.es_best) && remove(r->path.es_best) != 0)
        return ct_error(CT_EIO, "%s: cannot remove: %s", r->path.es_best, strerror(errno));
    return CT_OK;
}

static void reduce_on_plateau(fit_run *r, int epoch, double value) {
    const ct_train_config *c = r->c;
    if (c->reduce_lr_patience < 0) return;
    double lr = c->optimizer.lr * r->st.lr_scale;
    if (!ct_reduce_lr_update(&r->cb.rl, value, &lr)) return;
    if (c->verbose > 0)
        printf("Epoch %d: ReduceLROnPlateau reducing learning rate to %g.\n", epoch + 1, lr);
    r->st.lr_scale = lr / c->optimizer.lr;
}

/* The user's on_epoch_end, with Keras's logs. */
static bool user_epoch_end(fit_run *r, int epoch, const double *row, double seconds) {
    const ct_train_callbacks *u = &r->c->callbacks;
    if (u->on_epoch_end == NULL) return false;
    ct_epoch_logs logs = {.epoch = epoch, .epochs = r->c->epochs, .seconds = seconds,
                          .acc = row[FIT_ACC], .loss = row[FIT_LOSS], .lr = row[FIT_LR],
                          .val_acc = row[FIT_VAL_ACC], .val_loss = row[FIT_VAL_LOSS]};
    return u->on_epoch_end(u->user, &logs);
}

ct_status fit_callbacks_epoch_end(fit_run *r, int epoch, const double *row, double seconds,
                                  bool *stop, bool *early) {
    const ct_train_config *c = r->c;
    const double value = fit_log_value(row, r->cb.monitor);
    bool es_improved = false;
    *early = c->early_stopping_patience >= 0 &&
             ct_early_stopping_update(&r->cb.es, epoch, value, &es_improved);
    ct_status s = checkpoint_best(r, epoch, value, es_improved);
    if (s != CT_OK) return s;
    reduce_on_plateau(r, epoch, value);
    *stop = user_epoch_end(r, epoch, row, seconds) || *early;
    return fit_dist_vote_stop(r, stop);
}

void fit_callbacks_batch_end(fit_run *r, long steps, double loss, double acc) {
    const ct_train_callbacks *u = &r->c->callbacks;
    if (u->on_batch_end == NULL) return;
    ct_batch_logs logs = {.epoch = (int)r->st.epoch, .batch = (long)r->st.batch_in_epoch - 1,
                          .steps = steps, .step = (long)r->st.step - 1, .loss = loss,
                          .acc = acc};
    if (u->on_batch_end(u->user, &logs)) ct_train_request_stop();
}

ct_status fit_callbacks_restore_best(fit_run *r) {
    /* Keras restores EarlyStopping's best (with min_delta): es_best.h5 when a later checkpoint
     * improvement replaced best.h5, else best.h5. Rank 0 reads its file; the other ranks of a
     * data-parallel run get the weights from it. */
    const char *from = fit_exists(r->path.es_best) ? r->path.es_best : r->path.best;
    if (!r->c->restore_best_weights || r->cb.es.best_epoch < 0) return CT_OK;
    const bool found = r->rank == 0 && fit_exists(from);
    if (found && r->c->verbose > 0)
        printf("Restoring model weights from the end of the best epoch: %d (%s).\n",
               r->cb.es.best_epoch + 1, from);
    ct_status s = found ? ct_weights_load(r->m, from, NULL, NULL) : CT_OK;
    if (found) r->best_is_current = s == CT_OK && from == r->path.best;
    s = fit_dist_agree(r, s, "restoring the best weights");
    return s == CT_OK ? fit_dist_share_weights(r) : s;
}

int fit_callbacks_best_epoch(const fit_run *r, int epochs) {
    ct_monitor scan;
    int best = -1;
    if (ct_monitor_init(&scan, r->cb.monitor, r->c->monitor_mode, 0.0) != CT_OK) return -1;
    for (int e = 0; e < epochs; e++) {
        double v = fit_log_value(r->history + (size_t)e * FIT_KEYS, r->cb.monitor);
        if (ct_monitor_better(&scan, v, scan.best)) {
            scan.best = v;
            best = e;
        }
    }
    return best;
}
