/* A data-parallel run's part of the training loop (fit.h): one process per GPU or CPU rank.
 *
 * Every rank runs the same loop on its share of each global batch (the loaders' shards). What
 * keeps them one run:
 *   - start-up: the launcher's world, the backend on the rank's local device, the communicator;
 *     a failure on any rank stops every rank at the same point (fit_dist_agree);
 *   - rank 0 alone touches the run folder; it reads the initial weights or the checkpoint, and
 *     hands the others the loop's state, the freezing, the weights and the optimizer state;
 *   - each step's loss is scaled by the global batch (per-sample weights of n_rank / n_global),
 *     so the summed gradients are the global batch's mean; the buckets are summed as backward
 *     writes them (dist/buckets.h); the step's loss, accuracy and sample sums, a non-finite loss
 *     anywhere and a stop request anywhere are summed too, so every rank logs, stops and fails
 *     at the same step;
 *   - validation sums are summed, so every callback decides the same on every rank. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/hash.h"
#include "fit.h"

ct_status fit_dist_open(fit_run *r, ct_world *w) {
    r->rank = 0;
    r->world = 1;
    ct_status s = ct_world_detect(w);
    if (s != CT_OK || w->launch == CT_LAUNCH_NONE) return s;
    if (w->launch == CT_LAUNCH_MPI && (s = ct_mpi_start(w)) != CT_OK) return s;
    if (r->c->folds > 0)
        return ct_error(CT_EUNSUPPORTED, "k-fold runs train on one rank: train the folds one "
                        "after another, or each fold as its own run with --fold");
    r->rank = w->rank;
    r->world = w->size;
    if (r->rank != 0) { /* one voice: rank 0 prints, logs and writes */
        r->quiet = *r->c;
        r->quiet.verbose = 0;
        r->c = &r->quiet;
    }
    r->device = w->local_rank;
    if ((s = fit_open_backend(r)) != CT_OK) return s;
    return ct_comm_wanted(w, &r->be) ? ct_comm_open(&r->comm, w, &r->be, 0) : CT_OK;
}

ct_status fit_dist_agree(fit_run *r, ct_status s, const char *stage) {
    if (r->comm == NULL) return s;
    char msg[4096];
    snprintf(msg, sizeof msg, "%s", s != CT_OK ? ct_last_error() : "");
    double failed[1] = {s != CT_OK};
    ct_status cs = ct_comm_sum(r->comm, failed, 1, stage);
    if (cs != CT_OK) return cs;
    /* Every rank stops here: the liveness channel (rendezvous.h) is closed with a goodbye, so
     * that no rank takes another's end for a loss and prints that instead of the reason. */
    r->failed_together = failed[0] > 0.0;
    if (s != CT_OK) return ct_error(s, "%s", msg);
    if (failed[0] > 0.0)
        return ct_error(CT_EIO, "rank %d: %s failed on %.0f other rank(s), whose message says why",
                        r->rank, stage, failed[0]);
    return CT_OK;
}

ct_status fit_dist_same_settings(fit_run *r) {
    if (r->comm == NULL) return CT_OK;
    const uint64_t h = ct_fnv1a(CT_FNV1A_START, r->config_text, strlen(r->config_text));
    return ct_comm_same(r->comm, h, "the run's settings");
}

ct_status fit_dist_plan_buckets(fit_run *r) {
    return r->comm != NULL ? ct_grad_sync_attach(&r->sync, r->m, r->comm) : CT_OK;
}

/* The freezing rank 0 trains under, on this rank too. */
static ct_status follow_freezing(fit_run *r, const char *name) {
    if (r->compiled && strcmp(r->freeze_now, name) == 0) return CT_OK;
    ct_status s = ct_model_freeze_to(r->m, name);
    if (s == CT_OK) s = ct_model_compile(r->m, &r->c->optimizer);
    if (s != CT_OK) return s;
    snprintf(r->freeze_now, sizeof r->freeze_now, "%s", name);
    r->compiled = true;
    return CT_OK;
}

ct_status fit_dist_share_weights(fit_run *r) {
    if (r->comm == NULL) return CT_OK;
    void *params, *opt;
    size_t pb, ob;
    ct_model_state_arenas(r->m, &params, &pb, &opt, &ob);
    return ct_comm_broadcast(r->comm, params, pb, true, "rank 0's weights");
}

ct_status fit_dist_share_start(fit_run *r) {
    if (r->comm == NULL) return CT_OK;
    char *config = r->st.config;
    uint64_t iterations = ct_model_iterations(r->m);
    ct_status s = ct_comm_broadcast(r->comm, &r->st, sizeof r->st, false, "the loop's state");
    r->st.config = r->rank == 0 ? config : NULL;
    const size_t rows = (size_t)(r->c->epochs + 1000) * FIT_KEYS;
    if (s == CT_OK) s = ct_comm_broadcast(r->comm, r->history, rows * sizeof *r->history, false,
                                          "the log's rows");
    char freezing[sizeof r->freeze_now];
    memcpy(freezing, r->freeze_now, sizeof freezing);
    if (s == CT_OK) s = ct_comm_broadcast(r->comm, freezing, sizeof freezing, false,
                                          "the freezing");
    if (s == CT_OK) s = ct_comm_broadcast(r->comm, &iterations, sizeof iterations, false,
                                          "the optimizer's iterations");
    if (s == CT_OK && r->rank != 0) s = follow_freezing(r, freezing);
    s = fit_dist_agree(r, s, "following rank 0's freezing");
    void *params, *opt;
    size_t pb, ob;
    ct_model_state_arenas(r->m, &params, &pb, &opt, &ob);
    if (s == CT_OK) s = ct_comm_broadcast(r->comm, params, pb, true, "rank 0's weights");
    if (s == CT_OK && ob > 0)
        s = ct_comm_broadcast(r->comm, opt, ob, true, "rank 0's optimizer state");
    if (s != CT_OK) return s;
    ct_model_set_iterations(r->m, iterations);
    fit_callbacks_load(&r->cb, &r->st);
    r->resuming = r->st.step > 0;
    return fit_dist_plan_buckets(r);
}

/* ---- a step ---- */

/* The rows of this step's global batch: every rank's share of batch `number`. */
static size_t global_rows(const fit_run *r, const ct_batch *b) {
    const size_t n = r->cache.active ? r->cache.n_train : ct_dataset_count(r->train);
    const size_t B = (size_t)r->c->batch_size, start = (size_t)b->number * B;
    return n - start < B ? n - start : B;
}

const float *fit_dist_step_begin(fit_run *r, const ct_batch *b) {
    const size_t g = global_rows(r, b);
    size_t first = 0;
    ct_shard_rows(g, r->rank, r->world, &first);
    ct_model_set_row_offset(r->m, (uint32_t)first);
    ct_grad_sync_begin(&r->sync, r->st.step);
    /* The mean over the global batch: row i weighs w_i * n / g on a rank of n rows, whose loss
     * op divides by n. */
    const float share = (float)((double)b->n / (double)g);
    for (int i = 0; i < b->n; i++) r->weights[i] = (r->use_weights ? r->weights[i] : 1.0f) * share;
    r->step_rows = g;
    return r->weights;
}

ct_status fit_dist_step_sums(fit_run *r, ct_status loss_status, double sums[FIT_SUMS]) {
    /* sums[0] comes as this rank's loss, whose rows weigh n / g: times g it is the sum of the
     * loss over this rank's rows, which the other ranks' complete. */
    sums[0] = loss_status == CT_OK ? sums[0] * (double)r->step_rows : 0.0;
    sums[3] = loss_status == CT_ENUMERIC;
    sums[4] = fit_stop_requested();
    char what[64];
    snprintf(what, sizeof what, "the sums of step %lld", (long long)r->st.step + 1);
    ct_status s = ct_comm_sum(r->comm, sums, FIT_SUMS, what);
    if (s != CT_OK) return s;
    r->stop_votes = sums[4];
    r->failed_together = sums[3] > 0.0; /* every rank stops at this step */
    if (loss_status != CT_OK) return loss_status;
    if (sums[3] > 0.0)
        return ct_error(CT_ENUMERIC, "step %lld (epoch %lld, batch %lld): the loss is not finite "
                        "on %.0f other rank(s), whose message names where it started",
                        (long long)r->st.step + 1, (long long)r->st.epoch + 1,
                        (long long)r->st.batch_in_epoch + 1, sums[3]);
    return CT_OK;
}

ct_status fit_dist_validation_sums(fit_run *r, double *loss_sum, double *correct, long *seen) {
    if (r->comm == NULL) return CT_OK;
    double v[3] = {*loss_sum, *correct, (double)*seen};
    ct_status s = ct_comm_sum(r->comm, v, 3, "the validation sums");
    *loss_sum = v[0];
    *correct = v[1];
    *seen = (long)v[2];
    return s;
}

ct_status fit_dist_vote_stop(fit_run *r, bool *stop) {
    if (r->comm == NULL) return CT_OK;
    double v[1] = {*stop};
    ct_status s = ct_comm_sum(r->comm, v, 1, "the end of the epoch");
    *stop = v[0] > 0.0;
    return s;
}

bool fit_stop_agreed(const fit_run *r) {
    return r->comm == NULL ? fit_stop_requested() : r->stop_votes > 0.0 || fit_count_stopped();
}

void fit_dist_close(fit_run *r, bool clean) {
    ct_grad_sync_free(&r->sync);
    ct_comm_close(r->comm, clean);
    r->comm = NULL;
}
