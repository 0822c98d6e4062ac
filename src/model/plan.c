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

/* Gradients go in backward order, the last layer's first, so that the buckets a data-parallel
 * step sums as backward goes (dist/buckets.h) are slices of the arena in the order they fill. */
static void plan_grads_and_state(ct_model *m, size_t (*off)[PLAN_SLOTS]) {
    for (int i = m->n_layers - 1; i >= 0; i--) {
        ct_layer *l = &m->layers[i];
        l->dkernel.data = l->dbias.data = NULL;
        if (!ct_layer_has_params(l) || !l->trainable) continue;
        off[i][0] = ct_arena_reserve(&m->grads, l->kernel.size);
        off[i][1] = ct_arena_reserve(&m->grads, l->bias.size);
    }
    for (int i = 0; i < m->n_layers; i++) {
        ct_layer *l = &m->layers[i];
        for (int s = 0; s < 2; s++) l->opt_kernel[s].data = l->opt_bias[s].data = NULL;
        if (!ct_layer_has_params(l) || !l->trainable) continue;
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

/* The activation arena's plan: offsets of every buffer, in floats reserved in this order. */
typedef struct act_plan {
    size_t (*off)[PLAN_SLOTS]; /* (layers) gradients, optimizer slots, own activation */
    int *where;                /* (layers) PLAN_* */
    size_t *aux_dout;          /* (layers) the aux branch's gradient buffers */
    size_t input, input16, bridge, dbridge, aux;
    size_t scratch[2], dscratch[2];
    size_t labels, weights, probs, dlogits, loss;
} act_plan;

/* The inputs: the image batch (and its bf16 copy), the bridge between a bf16 backbone and the
 * float32 head, the auxiliary values. Sizes are counted in floats; bf16 takes half as many. */
static void plan_inputs(ct_model *m, act_plan *p) {
    const bool bf = m->act_dtype == CT_BF16;
    const size_t nb = (size_t)m->cfg.max_batch;
    const size_t in_count = nb * m->cfg.input_h * m->cfg.input_w * m->cfg.input_c;
    p->input = ct_arena_reserve(&m->acts, in_count);
    p->input16 = bf ? ct_arena_reserve(&m->acts, (in_count + 1) / 2) : 0;
    const size_t bridge_count = nb * ct_layer_out_size(&m->layers[m->n_backbone - 1]);
    p->bridge = bf ? ct_arena_reserve(&m->acts, bridge_count) : 0;
    p->dbridge = bf ? ct_arena_reserve(&m->acts, bridge_count) : 0;
    p->aux = ct_arena_reserve(&m->acts, nb * (size_t)(m->cfg.aux_dim > 0 ? m->cfg.aux_dim : 1));
}

/* Every layer's output: kept in its own buffer from the layer below the lowest trainable one
 * up (backward reads them), through the ping-pong buffers below it; and the output gradients'
 * ping-pong buffers, as large as the largest gradient backward writes. */
static void plan_outputs(ct_model *m, act_plan *p) {
    const bool bf = m->act_dtype == CT_BF16;
    const size_t nb = (size_t)m->cfg.max_batch;
    const int ft = m->first_trainable;
    size_t scratch_floats = 0, dscratch_floats = 0;
    for (int i = 0; i < m->n_layers; i++) {
        ct_layer *l = &m->layers[i];
        l->dtype = bf && i < m->n_backbone ? CT_BF16 : CT_F32;
        size_t sz = nb * ct_layer_out_size(l);
        if (l->dtype == CT_BF16) sz = (sz + 1) / 2;
        bool keep = i >= ft - 1 || l->src == CT_SRC_AUX || i == m->n_layers - 1;
        int src_where = l->src >= 0 ? p->where[l->src] : PLAN_OWN;
        if (ct_layer_kind_get(l->kind)->view) {
            /* A reshape of NHWC data (flatten): it shares its input's buffer. */
            p->where[i] = src_where >= PLAN_SCRATCH0 ? src_where : PLAN_ALIAS;
        } else if (keep) {
            p->where[i] = PLAN_OWN;
            p->off[i][PLAN_ACT] = ct_arena_reserve(&m->acts, sz);
        } else {
            /* Write to the scratch buffer the input is not in. */
            p->where[i] = src_where == PLAN_SCRATCH0 ? PLAN_SCRATCH1 : PLAN_SCRATCH0;
            if (sz > scratch_floats) scratch_floats = sz;
        }
        if (i >= ft && sz > dscratch_floats) dscratch_floats = sz;
    }
    for (int k = 0; k < 2; k++) {
        p->scratch[k] = ct_arena_reserve(&m->acts, scratch_floats);
        p->dscratch[k] = ct_arena_reserve(&m->acts, dscratch_floats);
    }
}

/* The aux branch's gradients (concat writes both sides at once, so each has its own small
 * buffer), then the loss's labels, weights, probabilities, logits' gradient and value. */
static void plan_loss(ct_model *m, act_plan *p) {
    const size_t nb = (size_t)m->cfg.max_batch;
    for (int i = 0; i < m->n_layers; i++)
        if (m->layers[i].src == CT_SRC_AUX)
            p->aux_dout[i] = ct_arena_reserve(&m->acts, nb * ct_layer_out_size(&m->layers[i]));
    const size_t n_out = nb * (size_t)m->n_out;
    p->labels = ct_arena_reserve(&m->acts, n_out);
    p->weights = ct_arena_reserve(&m->acts, nb);
    p->probs = ct_arena_reserve(&m->acts, n_out);
    p->dlogits = ct_arena_reserve(&m->acts, n_out);
    p->loss = ct_arena_reserve(&m->acts, 1);
}

static void bind_buffers(ct_model *m, const act_plan *p) {
    const bool bf = m->act_dtype == CT_BF16;
    m->input = ct_arena_ptr(&m->acts, p->input);
    m->input16 = bf ? (void *)ct_arena_ptr(&m->acts, p->input16) : NULL;
    m->bridge = bf ? ct_arena_ptr(&m->acts, p->bridge) : NULL;
    m->dbridge = bf ? ct_arena_ptr(&m->acts, p->dbridge) : NULL;
    m->aux = m->cfg.aux_dim > 0 ? ct_arena_ptr(&m->acts, p->aux) : NULL;
    for (int k = 0; k < 2; k++) {
        m->scratch[k] = ct_arena_ptr(&m->acts, p->scratch[k]);
        m->dscratch[k] = ct_arena_ptr(&m->acts, p->dscratch[k]);
    }
    m->labels = ct_arena_ptr(&m->acts, p->labels);
    m->weights = ct_arena_ptr(&m->acts, p->weights);
    m->probs = ct_arena_ptr(&m->acts, p->probs);
    m->loss_value = ct_arena_ptr(&m->acts, p->loss);
}

static void bind_outputs(ct_model *m, const act_plan *p) {
    const bool bf = m->act_dtype == CT_BF16;
    for (int i = 0; i < m->n_layers; i++) {
        ct_layer *l = &m->layers[i];
        void *in = l->src == CT_SRC_IMAGE        ? (bf ? m->input16 : (void *)m->input)
                   : l->src == CT_SRC_AUX        ? (void *)m->aux
                   : ct_layer_reads_bridge(m, i) ? (void *)m->bridge
                                                 : m->layers[l->src].out;
        switch (p->where[i]) {
        case PLAN_OWN: l->out = ct_arena_ptr(&m->acts, p->off[i][PLAN_ACT]); break;
        case PLAN_ALIAS: l->out = in; break;
        default:
            l->out = ct_layer_kind_get(l->kind)->view ? in
                                                      : m->scratch[p->where[i] - PLAN_SCRATCH0];
            break;
        }
        l->dout = NULL;
    }
}

/* Output gradients, from the top down: the logits' gradient has its own buffer; each layer's
 * input gradient goes to the ping-pong buffer its own gradient is not in (flatten shares). */
static void bind_output_grads(ct_model *m, const act_plan *p) {
    ct_layer *top = &m->layers[m->n_layers - 1];
    top->dout = ct_arena_ptr(&m->acts, p->dlogits);
    for (int i = m->n_layers - 1; i >= 0; i--) {
        ct_layer *l = &m->layers[i];
        if (l->src == CT_SRC_AUX) l->dout = ct_arena_ptr(&m->acts, p->aux_dout[i]);
        if (l->src < 0 || l->dout == NULL) continue;
        ct_layer *src = &m->layers[l->src];
        if (src->dout != NULL) continue;
        if (l->src < m->first_trainable) continue; /* none needed below the lowest trainable */
        if (m->bridge != NULL && src->out == m->bridge)
            src->dout = m->dbridge; /* a flatten of the bridge */
        else if (ct_layer_kind_get(l->kind)->view && !ct_layer_reads_bridge(m, i))
            src->dout = l->dout;
        else
            src->dout = m->dscratch[l->dout == m->dscratch[0] ? 1 : 0];
    }
}

ct_status ct_model_replan(ct_model *m) {
    ct_arena_free(&m->grads);
    ct_arena_free(&m->opt);
    ct_arena_free(&m->acts);
    m->have_loss = m->loss_queued = false;
    m->first_trainable = compute_first_trainable(m);
    const size_t nl = (size_t)(unsigned)m->n_layers;
    act_plan p = {.off = calloc(nl, sizeof *p.off), .where = calloc(nl, sizeof *p.where),
                  .aux_dout = calloc(nl, sizeof *p.aux_dout)};
    ct_status s = CT_OK;
    if (p.off == NULL || p.where == NULL || p.aux_dout == NULL) {
        s = ct_error(CT_ENOMEM, "cannot plan the arenas");
        goto done;
    }
    plan_grads_and_state(m, p.off);
    plan_inputs(m, &p);
    plan_outputs(m, &p);
    plan_loss(m, &p);
    if ((s = ct_arena_alloc(&m->grads)) != CT_OK || (s = ct_arena_alloc(&m->opt)) != CT_OK ||
        (s = ct_arena_alloc(&m->acts)) != CT_OK) {
        ct_arena_free(&m->grads);
        ct_arena_free(&m->opt);
        ct_arena_free(&m->acts);
        goto done;
    }
    bind_grads_and_state(m, p.off);
    bind_buffers(m, &p);
    bind_outputs(m, &p);
    bind_output_grads(m, &p);
done:
    free(p.off);
    free(p.where);
    free(p.aux_dout);
    return s;
}

void ct_model_state_arenas(ct_model *m, void **params, size_t *params_bytes, void **opt,
                           size_t *opt_bytes) {
    *params = m->params.base;
    *params_bytes = m->params.bytes;
    *opt = m->opt.base;
    *opt_bytes = m->opt.bytes;
}

ct_status ct_model_zero_grads(ct_model *m) {
    if (m->grads.bytes == 0) return CT_OK;
    void *zeros = calloc(1, m->grads.bytes);
    if (zeros == NULL) return ct_error(CT_ENOMEM, "cannot allocate %zu bytes", m->grads.bytes);
    ct_status s = m->be->ops->copy_to_device(m->be->ctx, m->grads.base, zeros, m->grads.bytes);
    free(zeros);
    return s;
}
