/* Forward, loss and backward passes over the layer list, through the backend's op table.
 *
 * Backward walks from the loss down to the lowest trainable layer and stops there: a layer
 * computes its data gradient only when a trainable layer lies below it, and its weight gradient
 * only when it is trainable itself. The per-layer counters record both so tests can show that
 * no work is done under a frozen prefix. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* What layer i reads: the image (its bf16 copy at bf16 precision), the auxiliary values, the
 * bridge (the backbone's output as float32), or its source layer's output. */
static const void *layer_input(const ct_model *m, int i) {
    const ct_layer *l = &m->layers[i];
    if (l->src == CT_SRC_IMAGE) return m->input16 != NULL ? m->input16 : (const void *)m->input;
    if (l->src == CT_SRC_AUX) return m->aux;
    if (ct_layer_reads_bridge(m, i)) return m->bridge;
    return m->layers[l->src].out;
}

/* Where layer i's input gradient goes (NULL when none is kept). */
static void *layer_input_grad(const ct_model *m, int i) {
    const ct_layer *l = &m->layers[i];
    if (l->src < 0) return NULL;
    if (ct_layer_reads_bridge(m, i)) return m->dbridge;
    return m->layers[l->src].dout;
}

static ct_status cast(ct_model *m, void *dst, ct_dtype dt, const void *src, ct_dtype st,
                      size_t count) {
    return m->be->ops->cast(m->be->ctx, dst, dt, src, st, count);
}

/* Layer i's forward step, through its kind's row (kinds.c). */
static ct_status layer_forward(ct_model *m, int i, int n, bool training) {
    ct_layer_step st = {.m = m, .be = m->be, .i = i, .l = &m->layers[i], .n = n,
                        .x = layer_input(m, i), .training = training};
    return ct_layer_kind_get(m->layers[i].kind)->forward(&st);
}

/* Runs layers [from, to). */
static ct_status forward_range(ct_model *m, int from, int to, int n, bool training,
                               uint32_t step) {
    if (n <= 0 || n > m->cfg.max_batch)
        return ct_error(CT_EINVAL, "batch of %d samples: expected 1 to %d (the model's batch "
                        "size)", n, m->cfg.max_batch);
    m->last_n = n;
    m->last_training = training;
    m->last_step = step;
    m->have_loss = m->loss_queued = false;
    if (m->profile)
        for (int i = 0; i < m->n_layers; i++) m->fwd_marked[i] = m->bwd_marked[i] = false;
    const ct_backend_ops *ops = m->be->ops;
    const ct_model_config *c = &m->cfg;
    for (int i = from; i < to; i++) {
        ct_status s = m->profile ? ops->mark(m->be->ctx, 2 * i) : CT_OK;
        /* bf16: the first layer's input rounded, the last backbone layer's output widened into
         * the bridge; each counted in its layer's time. */
        if (s == CT_OK && i == 0 && m->input16 != NULL)
            s = cast(m, m->input16, CT_BF16, m->input, CT_F32,
                     (size_t)n * c->input_h * c->input_w * c->input_c);
        if (s == CT_OK) s = layer_forward(m, i, n, training);
        if (s == CT_OK && m->bridge != NULL && i == m->n_backbone - 1)
            s = cast(m, m->bridge, CT_F32, m->layers[i].out, CT_BF16,
                     (size_t)n * ct_layer_out_size(&m->layers[i]));
        if (s == CT_OK && m->profile) s = ops->mark(m->be->ctx, 2 * i + 1);
        if (s != CT_OK)
            return ct_error(s, "forward of %s: %s", m->layers[i].name, ct_last_error());
        if (m->profile) m->fwd_marked[i] = true;
    }
    return CT_OK;
}

ct_status ct_model_forward(ct_model *m, int n, bool training, uint32_t step) {
    return forward_range(m, 0, m->n_layers, n, training, step);
}

ct_status ct_model_set_input(ct_model *m, const float *x, const float *aux, int n) {
    if (n <= 0 || n > m->cfg.max_batch)
        return ct_error(CT_EINVAL, "batch of %d samples: expected 1 to %d (the model's batch "
                        "size)", n, m->cfg.max_batch);
    if (m->cfg.aux_dim > 0 && aux == NULL)
        return ct_error(CT_EINVAL, "the model takes %d auxiliary value(s) per sample, but none "
                        "were given", m->cfg.aux_dim);
    const ct_model_config *c = &m->cfg;
    ct_status s = m->be->ops->copy_to_device(
        m->be->ctx, m->input, x, (size_t)n * c->input_h * c->input_w * c->input_c * sizeof(float));
    if (s == CT_OK && c->aux_dim > 0)
        s = m->be->ops->copy_to_device(m->be->ctx, m->aux, aux,
                                       (size_t)n * c->aux_dim * sizeof(float));
    return s;
}

ct_status ct_model_flip_input(ct_model *m, int n, bool horizontal, bool vertical) {
    if (n <= 0 || n > m->cfg.max_batch)
        return ct_error(CT_EINVAL, "batch of %d samples: expected 1 to %d (the model's batch "
                        "size)", n, m->cfg.max_batch);
    const ct_model_config *c = &m->cfg;
    return m->be->ops->flip(m->be->ctx, m->input, n, c->input_h, c->input_w, c->input_c,
                            horizontal, vertical);
}

ct_status ct_model_forward_host(ct_model *m, const float *x, const float *aux, int n,
                                bool training, uint32_t step) {
    ct_status s = ct_model_set_input(m, x, aux, n);
    return s != CT_OK ? s : ct_model_forward(m, n, training, step);
}

ct_status ct_model_features(ct_model *m, int layer, const float *x, const float *aux, int n,
                             float *out) {
    if (layer < 0 || layer >= m->n_layers || m->layers[layer].src == CT_SRC_AUX)
        return ct_error(CT_EINVAL, "features: layer %d is not on the image path", layer);
    ct_status s = ct_model_set_input(m, x, aux, n);
    if (s == CT_OK) s = forward_range(m, 0, layer + 1, n, false, 0);
    if (s == CT_OK) s = ct_model_layer_output(m, layer, n, out);
    return s;
}

ct_status ct_model_forward_from_host(ct_model *m, int layer, const float *act, const float *aux,
                                     int n, bool training, uint32_t step) {
    if (layer < 1 || layer >= m->n_layers || m->layers[layer - 1].src == CT_SRC_AUX ||
        layer > m->first_trainable)
        return ct_error(CT_EINVAL, "forward from layer %d: it must follow the frozen layer whose "
                        "output is given, at or below the lowest trainable layer", layer);
    if (n <= 0 || n > m->cfg.max_batch)
        return ct_error(CT_EINVAL, "batch of %d samples: expected 1 to %d (the model's batch "
                        "size)", n, m->cfg.max_batch);
    const ct_layer *in = &m->layers[layer - 1];
    const size_t count = (size_t)n * ct_layer_out_size(in);
    ct_status s;
    if (in->dtype == CT_BF16 && m->bridge != NULL && layer - 1 == m->n_backbone - 1) {
        /* block5_pool's output (the head-only cache, every training step): straight into the
         * float32 bridge the head reads, whichever head layer that is (an aux branch may come
         * first), and rounded on the device into the layer's own buffer. Exact: the values came
         * from bf16 through ct_model_features. */
        s = m->be->ops->copy_to_device(m->be->ctx, m->bridge, act, count * sizeof(float));
        if (s == CT_OK) s = cast(m, in->out, CT_BF16, m->bridge, CT_F32, count);
    } else if (in->dtype == CT_BF16) {
        ct_bf16 *h = malloc(count * sizeof *h);
        if (h == NULL)
            return ct_error(CT_ENOMEM, "cannot allocate %zu bf16 values for %s", count, in->name);
        ct_f32_to_bf16(h, act, count); /* exact, as above */
        s = m->be->ops->copy_to_device(m->be->ctx, in->out, h, count * sizeof *h);
        free(h);
    } else {
        s = m->be->ops->copy_to_device(m->be->ctx, in->out, act, count * sizeof(float));
    }
    if (s == CT_OK && m->cfg.aux_dim > 0) {
        if (aux == NULL)
            return ct_error(CT_EINVAL, "the model takes %d auxiliary value(s) per sample, but "
                            "none were given", m->cfg.aux_dim);
        s = m->be->ops->copy_to_device(m->be->ctx, m->aux, aux,
                                       (size_t)n * m->cfg.aux_dim * sizeof(float));
    }
    return s != CT_OK ? s : forward_range(m, layer, m->n_layers, n, training, step);
}

ct_status ct_model_predict_host(ct_model *m, const float *x, const float *aux, int n,
                                float *probs_host) {
    ct_status s = ct_model_set_input(m, x, aux, n);
    return s != CT_OK ? s : ct_model_predict(m, n, probs_host);
}

static ct_status queue_loss(ct_model *m, const float *labels, const float *weights) {
    const ct_backend_ops *ops = m->be->ops;
    void *ctx = m->be->ctx;
    const int n = m->last_n;
    ct_layer *top = &m->layers[m->n_layers - 1];
    ct_status s = ops->copy_to_device(ctx, m->labels, labels, (size_t)n * m->n_out * sizeof(float));
    if (s == CT_OK && weights != NULL)
        s = ops->copy_to_device(ctx, m->weights, weights, (size_t)n * sizeof(float));
    if (s == CT_OK)
        s = ops->loss_forward_backward(ctx, m->loss, m->loss_value, m->probs, top->dout, top->out,
                                       m->labels, weights != NULL ? m->weights : NULL, n,
                                       m->n_out);
    return s;
}

ct_status ct_model_loss_start(ct_model *m, const float *labels, const float *weights) {
    if (m->last_n <= 0) return ct_error(CT_EINVAL, "loss requested before any forward pass");
    m->have_loss = m->loss_queued = false;
    ct_status s = queue_loss(m, labels, weights);
    if (s != CT_OK) return s;
    m->have_loss = m->loss_queued = true;
    return CT_OK;
}

ct_status ct_model_loss_value(ct_model *m, float *loss) {
    if (!m->loss_queued) return ct_error(CT_EINVAL, "no loss queued since the last forward pass");
    float value = 0.0f;
    ct_status s = m->be->ops->copy_to_host(m->be->ctx, &value, m->loss_value, sizeof value);
    if (s != CT_OK) return s;
    if (loss != NULL) *loss = value;
    if (!isfinite(value))
        return ct_error(CT_ENUMERIC, "the loss is %s (at step %u): lower the learning rate or "
                        "check the inputs for NaN", isnan(value) ? "NaN" : "infinite",
                        m->last_step);
    return CT_OK;
}

ct_status ct_model_loss(ct_model *m, const float *labels, const float *weights, float *loss) {
    ct_status s = ct_model_loss_start(m, labels, weights);
    if (s == CT_OK) s = ct_model_loss_value(m, loss);
    if (s == CT_ENUMERIC) m->have_loss = false;
    return s;
}

ct_status ct_model_grads_finite(ct_model *m, bool *finite) {
    *finite = true;
    if (m->grads.base == NULL || m->grads.bytes == 0) return CT_OK;
    /* The arena is zero-filled when allocated and its padding is never written, so the whole
     * allocation can be checked in one call. */
    return m->be->ops->check_finite(m->be->ctx, finite, (const float *)m->grads.base,
                                    m->grads.bytes / sizeof(float));
}

ct_status ct_model_probs(ct_model *m, float *out) {
    if (m->last_n <= 0) return ct_error(CT_EINVAL, "no predictions yet");
    return m->be->ops->copy_to_host(m->be->ctx, out, m->probs,
                                    (size_t)m->last_n * m->n_out * sizeof(float));
}

ct_status ct_model_predict(ct_model *m, int n, float *probs_host) {
    ct_status s = ct_model_forward(m, n, false, 0);
    if (s != CT_OK) return s;
    /* The loss op also yields the output activation. The probabilities do not depend on the
     * labels, so whatever the label buffer holds serves; the loss it computes is discarded. */
    ct_layer *top = &m->layers[m->n_layers - 1];
    s = m->be->ops->loss_forward_backward(m->be->ctx, m->loss, m->loss_value, m->probs, top->dout,
                                          top->out, m->labels, NULL, n, m->n_out);
    if (s == CT_OK && probs_host != NULL) s = ct_model_probs(m, probs_host);
    return s;
}

/* Layer i's backward step: the data gradient only when a trainable layer lies below it, the
 * weight gradients only when it is trainable itself. */
static ct_status layer_backward(ct_model *m, int i) {
    ct_layer *l = &m->layers[i];
    const ct_layer_kind_ops *kind = ct_layer_kind_get(l->kind);
    const bool wgrad = kind->has_params && l->trainable;
    const bool dgrad = l->src >= m->first_trainable;
    ct_layer_step st = {.m = m, .be = m->be, .i = i, .l = l, .n = m->last_n,
                        .x = layer_input(m, i), .dx = dgrad ? layer_input_grad(m, i) : NULL,
                        .training = m->last_training, .dgrad = dgrad, .wgrad = wgrad};
    ct_status s = kind->backward(&st);
    if (s != CT_OK) return s;
    if (dgrad && !kind->view) l->n_dgrad++;
    if (wgrad) l->n_wgrad++;
    return CT_OK;
}

ct_status ct_model_backward(ct_model *m) {
    if (!m->have_loss) return ct_error(CT_EINVAL, "backward needs a forward pass and a loss first");
    const int base = 2 * m->n_layers; /* backward marks follow the forward ones */
    for (int i = m->n_layers - 1; i >= m->first_trainable; i--) {
        ct_status s = m->profile ? m->be->ops->mark(m->be->ctx, base + 2 * i) : CT_OK;
        /* bf16: the head's gradient for block5_pool, rounded into the backbone. */
        if (s == CT_OK && m->bridge != NULL && i == m->n_backbone - 1 &&
            m->layers[i].dout != NULL)
            s = cast(m, m->layers[i].dout, CT_BF16, m->dbridge, CT_F32,
                     (size_t)m->last_n * ct_layer_out_size(&m->layers[i]));
        if (s == CT_OK && m->hook != NULL && m->layers[i].dout != NULL)
            s = m->hook(m->hook_user, m, i);
        if (s == CT_OK) s = layer_backward(m, i);
        if (s == CT_OK && m->grads_hook != NULL && m->layers[i].dkernel.data != NULL)
            s = m->grads_hook(m->grads_hook_user, m, i);
        if (s == CT_OK && m->profile) s = m->be->ops->mark(m->be->ctx, base + 2 * i + 1);
        if (s != CT_OK)
            return ct_error(s, "backward of %s: %s", m->layers[i].name, ct_last_error());
        if (m->profile) m->bwd_marked[i] = true;
    }
    m->have_loss = false; /* the ReLU masks were applied in place: a second backward is wrong */
    return CT_OK;
}

ct_status ct_model_set_profile(ct_model *m, bool on) {
    if (on && 4 * m->n_layers > CT_MARKS)
        return ct_error(CT_EINVAL, "profile: %d layers need %d marks, the backend has %d",
                        m->n_layers, 4 * m->n_layers, CT_MARKS);
    m->profile = on;
    memset(m->fwd_marked, 0, sizeof m->fwd_marked);
    memset(m->bwd_marked, 0, sizeof m->bwd_marked);
    return CT_OK;
}

ct_status ct_model_profile(ct_model *m, double *fwd_ms, double *bwd_ms) {
    const int base = 2 * m->n_layers;
    for (int i = 0; i < m->n_layers; i++) {
        float ms = 0.0f;
        fwd_ms[i] = bwd_ms[i] = -1.0;
        if (!m->profile) continue;
        ct_status s;
        if (m->fwd_marked[i]) {
            if ((s = m->be->ops->elapsed_ms(m->be->ctx, 2 * i, 2 * i + 1, &ms)) != CT_OK) return s;
            fwd_ms[i] = ms;
        }
        if (m->bwd_marked[i]) {
            if ((s = m->be->ops->elapsed_ms(m->be->ctx, base + 2 * i, base + 2 * i + 1, &ms)) !=
                CT_OK)
                return s;
            bwd_ms[i] = ms;
        }
    }
    return CT_OK;
}

void ct_model_set_backward_hook(ct_model *m, ct_backward_hook hook, void *user) {
    m->hook = hook;
    m->hook_user = user;
}

void ct_model_set_grads_hook(ct_model *m, ct_backward_hook hook, void *user) {
    m->grads_hook = hook;
    m->grads_hook_user = user;
}

void ct_model_set_row_offset(ct_model *m, uint32_t row0) { m->row0 = row0; }
