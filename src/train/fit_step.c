/* One training step and one validation pass. A step queues everything first (input, forward,
 * loss, backward), fetches the next batch while the device works, and only then waits, once,
 * for the loss, the probabilities and the gradients' finite check; the update is applied after
 * the checks, so a NaN never reaches the weights and its message names the step and the tensor.
 *
 * Data-parallel training adds one call to this step: between ct_model_backward and the finite
 * check, every rank's gradient buckets are reduced (NCCL on the GPU, MPI on the CPU), the loss
 * having been scaled by the global batch; the check then sees the same sums on every rank, so
 * every rank skips or applies the same update. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fit.h"

/* Labels in the model's layout from a loader batch: (n, 1) 0/1 for sigmoid, (n, k) one-hot for
 * softmax; per-sample weights from the class weights. */
static void batch_targets(fit_run *r, const ct_batch *b) {
    const int n = b->n;
    for (int i = 0; i < n; i++) {
        int cls;
        if (r->n_out == 1) {
            r->labels[i] = b->y[i];
            cls = b->y[i] >= 0.5f;
        } else {
            memcpy(r->labels + (size_t)i * r->n_out, b->y + (size_t)i * r->n_out,
                   (size_t)r->n_out * sizeof(float));
            cls = 0;
            for (int j = 1; j < r->n_out; j++)
                if (b->y[(size_t)i * r->n_out + j] > b->y[(size_t)i * r->n_out + cls]) cls = j;
        }
        r->weights[i] = r->class_w[cls];
    }
}

static double batch_correct(const fit_run *r, int n) {
    double correct = 0.0;
    for (int i = 0; i < n; i++) {
        const float *p = r->probs + (size_t)i * r->n_out, *y = r->labels + (size_t)i * r->n_out;
        if (r->n_out == 1) {
            correct += (p[0] >= 0.5f) == (y[0] >= 0.5f);
        } else {
            int pa = 0, ya = 0;
            for (int j = 1; j < r->n_out; j++) {
                if (p[j] > p[pa]) pa = j;
                if (y[j] > y[ya]) ya = j;
            }
            correct += pa == ya;
        }
    }
    return correct;
}

/* The end of a numeric error's message: what is safe on disk. */
static const char *saved_note(const fit_run *r, char *buf, size_t len) {
    if (fit_exists(r->path.ckpt))
        snprintf(buf, len, "The last good checkpoint %s is unchanged", r->path.ckpt);
    else
        snprintf(buf, len, "No checkpoint was written yet (the first is written at the end of "
                 "epoch 1)");
    return buf;
}

/* Names the first trainable tensor whose gradient is not finite. */
static ct_status check_gradients(fit_run *r, int64_t step) {
    ct_backend *be = ct_model_backend(r->m);
    for (int i = ct_model_num_layers(r->m) - 1; i >= 0; i--) {
        const ct_layer *l = ct_model_layer(r->m, i);
        const ct_tensor *t[2] = {&l->dkernel, &l->dbias};
        for (int k = 0; k < 2; k++) {
            if (t[k]->data == NULL) continue;
            bool finite = true;
            ct_status s = be->ops->check_finite(be->ctx, &finite, t[k]->data, t[k]->size);
            if (s != CT_OK) return s;
            char note[4400];
            if (!finite)
                return ct_error(CT_ENUMERIC, "step %lld: the gradient of %s is not finite (NaN or "
                                "Inf); lower the learning rate or check the data. %s",
                                (long long)step + 1, t[k]->name,
                                saved_note(r, note, sizeof note));
        }
    }
    return CT_OK;
}

/* After a non-finite loss: the first trainable tensor (kernel, bias, then output, in forward
 * order) holding a NaN or Inf, so the message can say where it started. Layers below the
 * lowest trainable one keep no outputs and their weights do not change, so they are skipped. */
static void nonfinite_culprit(fit_run *r, int n, char *buf, size_t len) {
    ct_backend *be = ct_model_backend(r->m);
    int ft = ct_model_first_trainable(r->m);
    for (int i = ft > 0 ? ft : 0; i < ct_model_num_layers(r->m); i++) {
        const ct_layer *l = ct_model_layer(r->m, i);
        const ct_tensor *t[2] = {&l->kernel, &l->bias};
        bool finite = true;
        for (int k = 0; k < 2; k++) {
            if (t[k]->data == NULL) continue;
            if (be->ops->check_finite(be->ctx, &finite, t[k]->data, t[k]->size) != CT_OK) break;
            if (!finite) {
                snprintf(buf, len, "the weights %s hold NaN or Inf (the previous update "
                         "overflowed)", t[k]->name);
                return;
            }
        }
        if (ct_model_layer_finite(r->m, i, n, &finite) == CT_OK && !finite) {
            snprintf(buf, len, "the output of layer %s is the first to hold NaN or Inf", l->name);
            return;
        }
    }
    snprintf(buf, len, "every weight and activation is finite: the loss %s overflowed",
             ct_model_loss_kind(r->m) == CT_LOSS_BINARY_CE ? "(binary cross-entropy)"
                                                           : "(categorical cross-entropy)");
}

/* A batch of images, or of cached frozen-prefix outputs. */
static ct_status forward(fit_run *r, const ct_batch *b, bool training, uint32_t step) {
    if (r->cache.active)
        return ct_model_forward_from_host(r->m, r->cache.layer + 1, b->x, b->aux, b->n, training,
                                          step);
    return ct_model_forward_host(r->m, b->x, b->aux, b->n, training, step);
}

/* The next training batch: from the cache, or from the loader and copied into a staging slot
 * (*slot; -1 for cached batches and at the end of the epoch). */
ct_status fit_fetch_train(fit_run *r, const ct_batch **b, int *slot) {
    if (r->cache.active) {
        *slot = -1;
        *b = fit_cache_next(r);
        return CT_OK;
    }
    return ct_stream_next(r->stream, r->tl, b, slot);
}

ct_status fit_release_train(fit_run *r, const ct_batch *b, int slot) {
    if (b == NULL || r->cache.active) return CT_OK;
    return ct_stream_done(r->stream, r->tl, slot);
}

/* The loss's message: where a non-finite value started, and what is safe on disk. */
static ct_status nonfinite_loss(fit_run *r, const ct_batch *b, float loss) {
    char where[256], note[4400];
    nonfinite_culprit(r, b->n, where, sizeof where);
    return ct_error(CT_ENUMERIC, "step %lld (epoch %lld, batch %lld): the loss is %s; %s. Lower "
                    "the learning rate or check the data. %s", (long long)r->st.step + 1,
                    (long long)r->st.epoch + 1, (long long)r->st.batch_in_epoch + 1,
                    isnan(loss) ? "NaN" : "infinite", where, saved_note(r, note, sizeof note));
}

/* Input, forward, loss and backward of `b`, queued; a data-parallel rank with no rows in this
 * step adds zero gradients. The gradient buckets are summed as backward writes them. */
static ct_status queue_pass(fit_run *r, const ct_batch *b, int slot, const float *weights) {
    const uint32_t step = (uint32_t)r->st.step;
    ct_status s;
    if (b->n == 0)
        return ct_model_zero_grads(r->m);
    if (r->cache.active)
        s = ct_model_forward_from_host(r->m, r->cache.layer + 1, b->x, b->aux, b->n, true, step);
    else if ((s = ct_stream_input(r->stream, slot, &r->c->augment)) == CT_OK)
        s = ct_model_forward(r->m, b->n, true, step);
    if (s == CT_OK) s = ct_model_loss_start(r->m, r->labels, weights);
    if (s == CT_OK) s = ct_model_backward(r->m);
    return s;
}

/* The step's loss, probabilities and sums {loss * rows, correct, rows, ...}: this rank's, or
 * every rank's in a data-parallel run. */
static ct_status step_sums(fit_run *r, const ct_batch *b, double *sums) {
    float loss = 0.0f;
    ct_status s = b->n > 0 ? ct_model_loss_value(r->m, &loss) : CT_OK;
    ct_status ls = s;
    if (s == CT_OK && b->n > 0) s = ct_model_probs(r->m, r->probs);
    if (s != CT_OK && s != CT_ENUMERIC) return s;
    sums[0] = (double)loss * b->n;
    sums[1] = s == CT_OK ? batch_correct(r, b->n) : 0.0;
    sums[2] = b->n;
    if (r->comm != NULL) {
        sums[0] = loss;
        s = fit_dist_step_sums(r, ls, sums);
        if (s == CT_ENUMERIC && ls == CT_OK) return s; /* another rank's */
    }
    return s == CT_ENUMERIC ? nonfinite_loss(r, b, loss) : s;
}

/* One training step on `b` (in staging slot `slot`). Everything is queued first - input,
 * forward, loss, backward - then, while the device works, the next batch is fetched and its
 * copy queued (*next, *next_slot; only when `prefetch`), and only then does the host wait, once,
 * for the loss, the probabilities and the gradients' finite check. The update is applied after
 * the checks, so a NaN never reaches the weights. sums: the step's loss sum, correct
 * predictions and rows (over every rank). */
ct_status fit_train_step(fit_run *r, const ct_batch *b, int slot, bool prefetch,
                         const ct_batch **next, int *next_slot, double lr_scale,
                         double sums[FIT_SUMS]) {
    r->best_is_current = false;
    *next = NULL;
    *next_slot = -1;
    batch_targets(r, b);
    const float *weights = r->use_weights ? r->weights : NULL;
    if (r->comm != NULL) weights = fit_dist_step_begin(r, b);
    ct_status s = queue_pass(r, b, slot, weights);
    if (s == CT_OK && r->comm != NULL) s = ct_grad_sync_finish(&r->sync);
    /* Cached batches come from host memory and share one buffer with `b`: no prefetch. */
    if (s == CT_OK && prefetch && !r->cache.active) s = fit_fetch_train(r, next, next_slot);
    if (s == CT_OK) s = step_sums(r, b, sums);
    if (s != CT_OK) return s;
    bool finite = true;
    if ((s = ct_model_grads_finite(r->m, &finite)) != CT_OK) return s;
    /* Name the tensor; one check per tensor only on the way to the error. */
    if (!finite && (s = check_gradients(r, r->st.step)) != CT_OK) return s;
    if (!finite) {
        char note[4400];
        return ct_error(CT_ENUMERIC, "step %lld: a gradient is not finite (NaN or Inf); lower "
                        "the learning rate or check the data. %s", (long long)r->st.step + 1,
                        saved_note(r, note, sizeof note));
    }
    return ct_model_apply_gradients(r->m, (float)lr_scale);
}

/* ---- validation ---- */

static ct_status next_batch(fit_run *r, ct_loader *l, const ct_batch **b) {
    if (r->cache.active) {
        *b = fit_cache_next(r);
        return CT_OK;
    }
    return ct_loader_next(l, b);
}

static void release_batch(fit_run *r, ct_loader *l, const ct_batch *b) {
    if (!r->cache.active) ct_loader_release(l, b);
}

/* Validation from the loader through the stream: each batch's forward and loss are queued, the
 * next batch's copy is queued behind them, and only then does the host wait for the loss. */
typedef struct val_sums {
    fit_run *r;
    double loss_sum, correct;
    long seen;
} val_sums;

static ct_status validate_step(void *user, const ct_batch *b, int slot, const ct_batch **nb,
                               int *nslot) {
    val_sums *v = user;
    fit_run *r = v->r;
    if (b->n == 0) /* a data-parallel rank's empty share of the last batch */
        return ct_stream_next(r->vstream, r->vl, nb, nslot);
    batch_targets(r, b);
    float loss = 0.0f;
    ct_status s = ct_stream_input(r->vstream, slot, NULL);
    if (s == CT_OK) s = ct_model_forward(r->m, b->n, false, 0);
    /* Keras's val_loss has no class weights: the mean loss over the validation samples. */
    if (s == CT_OK) s = ct_model_loss_start(r->m, r->labels, NULL);
    if (s == CT_OK) s = ct_stream_next(r->vstream, r->vl, nb, nslot);
    if (s == CT_OK) s = ct_model_loss_value(r->m, &loss);
    if (s == CT_OK) s = ct_model_probs(r->m, r->probs);
    if (s == CT_OK) {
        v->loss_sum += (double)loss * b->n;
        v->correct += batch_correct(r, b->n);
        v->seen += b->n;
    }
    return s;
}

ct_status fit_validate(fit_run *r, double *val_loss, double *val_acc) {
    double loss_sum = 0.0, correct = 0.0;
    long seen = 0;
    ct_status s = CT_OK;
    if (!r->cache.active) {
        val_sums v = {r, 0.0, 0.0, 0};
        if ((s = ct_stream_pass(r->vstream, r->vl, 0, validate_step, &v)) != CT_OK) return s;
        if ((s = fit_dist_validation_sums(r, &v.loss_sum, &v.correct, &v.seen)) != CT_OK)
            return s;
        *val_loss = v.seen > 0 ? v.loss_sum / v.seen : NAN;
        *val_acc = v.seen > 0 ? v.correct / v.seen : NAN;
        return CT_OK;
    }
    /* Cached frozen-prefix outputs, from host memory. */
    fit_cache_begin_epoch(r, 0, 0, false);
    for (;;) {
        const ct_batch *b = NULL;
        if ((s = next_batch(r, r->vl, &b)) != CT_OK) return s;
        if (b == NULL) break;
        if (b->n == 0) continue; /* a data-parallel rank's empty share of the last batch */
        batch_targets(r, b);
        float loss = 0.0f;
        s = forward(r, b, false, 0);
        /* Keras's val_loss has no class weights: the mean loss over the validation samples. */
        if (s == CT_OK) s = ct_model_loss(r->m, r->labels, NULL, &loss);
        if (s == CT_OK) s = ct_model_probs(r->m, r->probs);
        if (s != CT_OK) {
            release_batch(r, r->vl, b);
            return s;
        }
        loss_sum += (double)loss * b->n;
        correct += batch_correct(r, b->n);
        seen += b->n;
        release_batch(r, r->vl, b);
    }
    if ((s = fit_dist_validation_sums(r, &loss_sum, &correct, &seen)) != CT_OK) return s;
    *val_loss = seen > 0 ? loss_sum / seen : NAN;
    *val_acc = seen > 0 ? correct / seen : NAN;
    return CT_OK;
}

