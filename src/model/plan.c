/* Planning the model's memory from the trainable flags (llm.c's one allocation per category).
 *
 * Parameters always exist. Gradients and optimizer state exist only for trainable layers.
 * Activations are kept only where backward reads them (from the layer below the lowest trainable
 * one upwards); the frozen prefix below that runs through two shared ping-pong buffers, which is
 * what lets a frozen backbone train with a larger batch. Output gradients ping-pong the same way
 * from the top down. */
#include <stdlib.h>

#include "internal.h"

static int compute_first_trainable(const ct_model *m) {
    for (int i = 0; i < m->n_layers; i++)
        if (ct_layer_has_params(&m->layers[i]) && m->layers[i].trainable) return i;
    return m->n_layers;
}

/* Offsets planned per layer: kernel and bias gradients, two optimizer slots of each, and the
 * layer's activation. */
enum { PLAN_SLOTS = 7, PLAN_ACT = 6 };

static void plan_grads_and_state(ct_model *m, size_t (*off)[PLAN_SLOTS]) {
    for (int i = 0; i < m->n_layers; i++) {
        ct_layer *l = &m->layers[i];
        l->dkernel.data = l->dbias.data = NULL;
        for (int s = 0; s < 2; s++) l->opt_kernel[s].data = l->opt_bias[s].data = NULL;
        if (!ct_layer_has_params(l) || !l->trainable) continue;
        off[i][0] = ct_arena_reserve(&m->grads, l->kernel.size);
        off[i][1] = ct_arena_reserve(&m->grads, l->bias.size);
        for (int s = 0; s < m->opt_slots; s++) {
            off[i][2 + 2 * s] = ct_arena_reserve(&m->opt, l->kernel.size);
            off[i][3 + 2 * s] = ct_arena_reserve(&m->opt, l->bias.size);
        }
    }
}

static void bind_grads_and_state(ct_model *m, size_t (*off)[PLAN_SLOTS]) {
    for (int i = 0; i < m->n_layers; i++) {
        ct_layer *l = &m->layers[i];
        if (!ct_layer_has_params(l) || !l->trainable) continue;
        l->dkernel.data = ct_arena_ptr(&m->grads, off[i][0]);
        l->dbias.data = ct_arena_ptr(&m->grads, off[i][1]);
        for (int s = 0; s < m->opt_slots; s++) {
            l->opt_kernel[s].data = ct_arena_ptr(&m->opt, off[i][2 + 2 * s]);
            l->opt_bias[s].data = ct_arena_ptr(&m->opt, off[i][3 + 2 * s]);
        }
    }
}

/* Where each layer's output lives: its own piece of the arena, its input's buffer (flatten), or
 * one of the two ping-pong buffers of the frozen prefix. */
enum { PLAN_OWN, PLAN_ALIAS, PLAN_SCRATCH0, PLAN_SCRATCH1 };

ct_status ct_model_replan(ct_model *m) {
    ct_arena_free(&m->grads);
    ct_arena_free(&m->opt);
    ct_arena_free(&m->acts);
    m->have_loss = m->loss_queued = false;
    m->first_trainable = compute_first_trainable(m);
    const int ft = m->first_trainable;
    const size_t nb = (size_t)m->cfg.max_batch;
    ct_status s = CT_OK;

    const size_t nl = (size_t)(unsigned)m->n_layers;
    size_t (*off)[PLAN_SLOTS] = calloc(nl, sizeof *off);
    int *kind = calloc(nl, sizeof *kind);
    if (off == NULL || kind == NULL) {
        s = ct_error(CT_ENOMEM, "cannot plan the arenas");
        goto done;
    }
    plan_grads_and_state(m, off);

    /* Activations. Sizes are counted in floats; a bf16 tensor takes half as many. */
    const bool bf = m->act_dtype == CT_BF16;
    const size_t in_count = nb * m->cfg.input_h * m->cfg.input_w * m->cfg.input_c;
    size_t in_off = ct_arena_reserve(&m->acts, in_count);
    size_t in16_off = bf ? ct_arena_reserve(&m->acts, (in_count + 1) / 2) : 0;
    const size_t bridge_count = nb * ct_layer_out_size(&m->layers[m->n_backbone - 1]);
    size_t bridge_off = bf ? ct_arena_reserve(&m->acts, bridge_count) : 0;
    size_t dbridge_off = bf ? ct_arena_reserve(&m->acts, bridge_count) : 0;
    size_t aux_off = ct_arena_reserve(&m->acts, nb * (size_t)(m->cfg.aux_dim > 0 ? m->cfg.aux_dim
                                                                                : 1));
    size_t scratch_floats = 0, dscratch_floats = 0;
    for (int i = 0; i < m->n_layers; i++) {
        ct_layer *l = &m->layers[i];
        l->dtype = bf && i < m->n_backbone ? CT_BF16 : CT_F32;
        size_t sz = nb * ct_layer_out_size(l);
        if (l->dtype == CT_BF16) sz = (sz + 1) / 2;
        bool keep = i >= ft - 1 || l->src == CT_SRC_AUX || i == m->n_layers - 1;
        int src_kind = l->src >= 0 ? kind[l->src] : PLAN_OWN;
        if (l->kind == CT_LAYER_FLATTEN) {
            /* Flatten is a reshape of NHWC data: it shares its input's buffer. */
            kind[i] = src_kind >= PLAN_SCRATCH0 ? src_kind : PLAN_ALIAS;
        } else if (keep) {
            kind[i] = PLAN_OWN;
            off[i][PLAN_ACT] = ct_arena_reserve(&m->acts, sz);
        } else {
            /* Write to the scratch buffer the input is not in. */
            kind[i] = src_kind == PLAN_SCRATCH0 ? PLAN_SCRATCH1 : PLAN_SCRATCH0;
            if (sz > scratch_floats) scratch_floats = sz;
        }
        if (i >= ft && sz > dscratch_floats) dscratch_floats = sz;
    }
    size_t sc_off[2], dsc_off[2];
    for (int k = 0; k < 2; k++) {
        sc_off[k] = ct_arena_reserve(&m->acts, scratch_floats);
        dsc_off[k] = ct_arena_reserve(&m->acts, dscratch_floats);
    }
    /* Aux branch gradients get their own small buffers: concat writes both sides at once. */
    size_t *aux_dout = calloc(nl, sizeof *aux_dout);
    if (aux_dout == NULL) {
        s = ct_error(CT_ENOMEM, "cannot plan the arenas");
        goto done;
    }
    for (int i = 0; i < m->n_layers; i++)
        if (m->layers[i].src == CT_SRC_AUX)
            aux_dout[i] = ct_arena_reserve(&m->acts, nb * ct_layer_out_size(&m->layers[i]));
    const size_t n_out = nb * (size_t)m->n_out;
    size_t labels_off = ct_arena_reserve(&m->acts, n_out);
    size_t weights_off = ct_arena_reserve(&m->acts, nb);
    size_t probs_off = ct_arena_reserve(&m->acts, n_out);
    size_t dlogits_off = ct_arena_reserve(&m->acts, n_out);
    size_t loss_off = ct_arena_reserve(&m->acts, 1);

    if ((s = ct_arena_alloc(&m->grads)) != CT_OK) goto fail_aux;
    if ((s = ct_arena_alloc(&m->opt)) != CT_OK) goto fail_aux;
    if ((s = ct_arena_alloc(&m->acts)) != CT_OK) goto fail_aux;
    bind_grads_and_state(m, off);

    m->input = ct_arena_ptr(&m->acts, in_off);
    m->input16 = bf ? (void *)ct_arena_ptr(&m->acts, in16_off) : NULL;
    m->bridge = bf ? ct_arena_ptr(&m->acts, bridge_off) : NULL;
    m->dbridge = bf ? ct_arena_ptr(&m->acts, dbridge_off) : NULL;
    m->aux = m->cfg.aux_dim > 0 ? ct_arena_ptr(&m->acts, aux_off) : NULL;
    for (int k = 0; k < 2; k++) {
        m->scratch[k] = ct_arena_ptr(&m->acts, sc_off[k]);
        m->dscratch[k] = ct_arena_ptr(&m->acts, dsc_off[k]);
    }
    m->labels = ct_arena_ptr(&m->acts, labels_off);
    m->weights = ct_arena_ptr(&m->acts, weights_off);
    m->probs = ct_arena_ptr(&m->acts, probs_off);
    m->loss_value = ct_arena_ptr(&m->acts, loss_off);

    for (int i = 0; i < m->n_layers; i++) {
        ct_layer *l = &m->layers[i];
        void *in = l->src == CT_SRC_IMAGE   ? (bf ? m->input16 : (void *)m->input)
                   : l->src == CT_SRC_AUX   ? (void *)m->aux
                   : ct_layer_reads_bridge(m, i) ? (void *)m->bridge
                                                 : m->layers[l->src].out;
        switch (kind[i]) {
        case PLAN_OWN: l->out = ct_arena_ptr(&m->acts, off[i][PLAN_ACT]); break;
        case PLAN_ALIAS: l->out = in; break;
        default:
            l->out = l->kind == CT_LAYER_FLATTEN ? in : m->scratch[kind[i] - PLAN_SCRATCH0];
            break;
        }
        l->dout = NULL;
    }
    /* Output gradients, from the top down: the logits' gradient has its own buffer; each layer's
     * input gradient goes to the ping-pong buffer its own gradient is not in (flatten shares). */
    ct_layer *top = &m->layers[m->n_layers - 1];
    top->dout = ct_arena_ptr(&m->acts, dlogits_off);
    for (int i = m->n_layers - 1; i >= 0; i--) {
        ct_layer *l = &m->layers[i];
        if (l->src == CT_SRC_AUX) l->dout = ct_arena_ptr(&m->acts, aux_dout[i]);
        if (l->src < 0 || l->dout == NULL) continue;
        ct_layer *src = &m->layers[l->src];
        if (src->dout != NULL) continue;
        if (l->src < ft) continue; /* no gradient is needed below the lowest trainable layer */
        if (m->bridge != NULL && src->out == m->bridge)
            src->dout = m->dbridge; /* a flatten of the bridge */
        else if (l->kind == CT_LAYER_FLATTEN && !ct_layer_reads_bridge(m, i))
            src->dout = l->dout;
        else
            src->dout = m->dscratch[l->dout == m->dscratch[0] ? 1 : 0];
    }
    s = CT_OK;
    goto ok_aux;
fail_aux:
    ct_arena_free(&m->grads);
    ct_arena_free(&m->opt);
    ct_arena_free(&m->acts);
ok_aux:
    free(aux_dout);
done:
    free(off);
    free(kind);
    return s;
}

