/* Building the model: the VGG16 backbone with Keras's layer names, the head from its spec, Keras's
 * default initialisation from the seeded generator, and the arenas that freezing decides.
 *
 * Memory follows the trainable flags. Parameters always exist. Gradients and optimizer state exist
 * only for trainable layers. Activations are kept only where backward reads them (from the layer
 * below the lowest trainable one upwards); the frozen prefix below that runs through two shared
 * ping-pong buffers, which is what lets a frozen backbone train with a larger batch. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cutune/rng.h"
#include "internal.h"

static const int vgg16_blocks[5][2] = {{2, 64}, {2, 128}, {3, 256}, {3, 512}, {3, 512}};

static void build_backbone(ct_model *m) {
    int h = m->cfg.input_h, w = m->cfg.input_w, c = m->cfg.input_c, idx = 0;
    for (int b = 0; b < 5; b++) {
        for (int j = 0; j < vgg16_blocks[b][0]; j++) {
            ct_layer *l = &m->layers[idx];
            memset(l, 0, sizeof *l);
            snprintf(l->name, CT_NAME_MAX, "block%d_conv%d", b + 1, j + 1);
            l->kind = CT_LAYER_CONV;
            l->act = CT_ACT_RELU;
            l->units = vgg16_blocks[b][1];
            l->src = idx - 1 < 0 ? CT_SRC_IMAGE : idx - 1;
            l->src2 = -1;
            l->trainable = true;
            l->lr_mult = 1.0f;
            l->in_h = l->out_h = h;
            l->in_w = l->out_w = w;
            l->in_c = c;
            l->out_c = c = l->units;
            idx++;
        }
        ct_layer *p = &m->layers[idx];
        memset(p, 0, sizeof *p);
        snprintf(p->name, CT_NAME_MAX, "block%d_pool", b + 1);
        p->kind = CT_LAYER_MAXPOOL;
        p->src = idx - 1;
        p->src2 = -1;
        p->trainable = true;
        p->lr_mult = 1.0f;
        p->in_h = h;
        p->in_w = w;
        p->in_c = p->out_c = c;
        p->out_h = h /= 2;
        p->out_w = w /= 2;
        idx++;
    }
    m->n_backbone = m->n_layers = idx;
}

/* Glorot uniform kernels and zero biases, as Keras initialises Conv2D and Dense. */
static void glorot_uniform(float *dst, const ct_layer *l, int layer_index, uint64_t seed) {
    size_t fan_in, fan_out;
    if (l->kind == CT_LAYER_CONV) {
        fan_in = (size_t)9 * l->in_c;
        fan_out = (size_t)9 * l->units;
    } else {
        fan_in = (size_t)l->in_c;
        fan_out = (size_t)l->units;
    }
    const float limit = (float)sqrt(6.0 / (double)(fan_in + fan_out));
    const uint32_t purpose = (uint32_t)CT_RNG_INIT << 16;
    const size_t n = l->kernel.size;
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        uint32_t wd = ct_rng_word(seed, purpose, (uint32_t)layer_index, 0, (uint32_t)i);
        dst[i] = (2.0f * ct_rng_unit(wd) - 1.0f) * limit;
    }
}

static ct_status init_params(ct_model *m) {
    ct_arena_init(&m->params, "params", m->be);
    size_t *off = calloc((size_t)(unsigned)m->n_layers * 2, sizeof *off);
    if (off == NULL) return ct_error(CT_ENOMEM, "cannot plan the parameter arena");
    for (int i = 0; i < m->n_layers; i++) {
        ct_layer *l = &m->layers[i];
        if (!ct_layer_has_params(l)) continue;
        snprintf(m->names[i].kernel, sizeof m->names[i].kernel, "%s/kernel", l->name);
        snprintf(m->names[i].bias, sizeof m->names[i].bias, "%s/bias", l->name);
        if (l->kind == CT_LAYER_CONV) {
            int ks[4] = {l->units, 3, 3, l->in_c};
            ct_tensor_set_shape(&l->kernel, 4, ks);
        } else {
            int ks[2] = {l->in_c * l->in_h * l->in_w, l->units};
            ct_tensor_set_shape(&l->kernel, 2, ks);
        }
        ct_tensor_set_shape(&l->bias, 1, &l->units);
        l->kernel.name = l->dkernel.name = m->names[i].kernel;
        l->bias.name = l->dbias.name = m->names[i].bias;
        ct_tensor_set_shape(&l->dkernel, l->kernel.ndim, l->kernel.shape);
        ct_tensor_set_shape(&l->dbias, 1, &l->units);
        for (int s = 0; s < 2; s++) {
            l->opt_kernel[s] = l->dkernel;
            l->opt_bias[s] = l->dbias;
        }
        off[2 * i] = ct_arena_reserve(&m->params, l->kernel.size);
        off[2 * i + 1] = ct_arena_reserve(&m->params, l->bias.size);
    }
    ct_status s = ct_arena_alloc(&m->params);
    if (s != CT_OK) {
        free(off);
        return s;
    }
    /* Initialise on the host and copy once: the generator is the same function everywhere, so
     * the weights do not depend on the backend. */
    float *host = NULL;
    size_t host_cap = 0;
    for (int i = 0; i < m->n_layers && s == CT_OK; i++) {
        ct_layer *l = &m->layers[i];
        if (!ct_layer_has_params(l)) continue;
        l->kernel.data = ct_arena_ptr(&m->params, off[2 * i]);
        l->bias.data = ct_arena_ptr(&m->params, off[2 * i + 1]);
        if (l->kernel.size > host_cap) {
            free(host);
            host_cap = l->kernel.size;
            host = malloc(host_cap * sizeof *host);
            if (host == NULL) {
                s = ct_error(CT_ENOMEM, "cannot allocate %zu floats to initialise %s", host_cap,
                             l->name);
                break;
            }
        }
        glorot_uniform(host, l, i, m->cfg.seed);
        s = m->be->ops->copy_to_device(m->be->ctx, l->kernel.data, host,
                                       l->kernel.size * sizeof(float));
        /* Biases stay zero: the arena is allocated zero-filled. */
    }
    free(host);
    free(off);
    return s;
}

static ct_status check_config(const ct_model_config *c) {
    if (c->input_h < CT_MIN_INPUT || c->input_w < CT_MIN_INPUT)
        return ct_error(CT_EINVAL, "input size %dx%d is too small: VGG16 needs at least %dx%d",
                        c->input_h, c->input_w, CT_MIN_INPUT, CT_MIN_INPUT);
    if (c->input_h > 4096 || c->input_w > 4096)
        return ct_error(CT_EINVAL, "input size %dx%d is larger than 4096x4096", c->input_h,
                        c->input_w);
    if (c->input_c != 3)
        return ct_error(CT_EINVAL, "the model takes 3 input channels, not %d (ImageNet weights "
                        "are RGB; grey images are repeated to 3 channels)", c->input_c);
    if (c->max_batch <= 0)
        return ct_error(CT_EINVAL, "batch size must be at least 1, not %d", c->max_batch);
    if (c->aux_dim < 0 || c->aux_dim > 4096)
        return ct_error(CT_EINVAL, "auxiliary input size %d is out of range", c->aux_dim);
    return CT_OK;
}

static ct_status unknown_layer(const ct_model *m, const char *name) {
    char names[512] = "";
    size_t used = 0;
    for (int i = 0; i < m->n_layers && used + CT_NAME_MAX + 2 < sizeof names; i++)
        used += (size_t)snprintf(names + used, sizeof names - used, "%s%s", i ? ", " : "",
                                 m->layers[i].name);
    return ct_error(CT_ENOTFOUND, "no layer named '%s' (layers: %s)", name, names);
}

ct_status ct_model_init(ct_model **out, const ct_model_config *cfg, ct_backend *be) {
    *out = NULL;
    ct_status s = check_config(cfg);
    if (s != CT_OK) return s;
    ct_model *m = calloc(1, sizeof *m);
    if (m == NULL) return ct_error(CT_ENOMEM, "cannot allocate the model");
    m->cfg = *cfg;
    m->cfg.head = NULL;
    m->be = be;
    m->act_dtype = strcmp(ct_backend_precision(be), "bf16") == 0 ? CT_BF16 : CT_F32;
    ct_arena_init(&m->grads, "grads", be);
    ct_arena_init(&m->opt, "optimizer", be);
    ct_arena_init(&m->acts, "activations", be);
    m->layers = calloc(18, sizeof *m->layers);
    if (m->layers == NULL) {
        s = ct_error(CT_ENOMEM, "cannot allocate the layers");
        goto fail;
    }
    build_backbone(m);
    if ((s = ct_head_build(m, cfg->head)) != CT_OK) goto fail;
    m->cfg.head = m->head;
    m->names = calloc((size_t)(unsigned)m->n_layers, sizeof *m->names);
    if (m->names == NULL) {
        s = ct_error(CT_ENOMEM, "cannot allocate the tensor names");
        goto fail;
    }
    if ((s = init_params(m)) != CT_OK) goto fail;
    m->cfg.freeze_to = NULL; /* the caller's string; the flags below keep what it says */
    if (cfg->freeze_to != NULL && strcmp(cfg->freeze_to, CT_FREEZE_ALL) == 0) {
        for (int i = 0; i < m->n_layers; i++) m->layers[i].trainable = false;
    } else if (cfg->freeze_to != NULL && cfg->freeze_to[0] != '\0') {
        ct_layer *l = ct_model_find(m, cfg->freeze_to);
        if (l == NULL) {
            /* A bad setting of the caller's (exit 2 in the CLI), not a failed lookup. */
            (void)unknown_layer(m, cfg->freeze_to); /* the message, with the list of names */
            s = ct_error(CT_EINVAL, "--freeze-to: %s", ct_last_error());
            goto fail;
        }
        for (int i = 0; i < m->n_layers; i++) m->layers[i].trainable = i > (int)(l - m->layers);
    }
    if ((s = ct_model_replan(m)) != CT_OK) goto fail;
    *out = m;
    return CT_OK;
fail:
    ct_model_free(m);
    return s;
}

void ct_model_free(ct_model *m) {
    if (m == NULL) return;
    ct_arena_free(&m->acts);
    ct_arena_free(&m->opt);
    ct_arena_free(&m->grads);
    ct_arena_free(&m->params);
    free(m->names);
    free(m->layers);
    free(m);
}

/* ---- planning the arenas from the trainable flags ---- */

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

/* ---- accessors and freezing ---- */

int ct_model_num_layers(const ct_model *m) { return m->n_layers; }

ct_layer *ct_model_layer(ct_model *m, int i) {
    return i >= 0 && i < m->n_layers ? &m->layers[i] : NULL;
}

ct_layer *ct_model_find(ct_model *m, const char *name) {
    for (int i = 0; i < m->n_layers; i++)
        if (strcmp(m->layers[i].name, name) == 0) return &m->layers[i];
    return NULL;
}

ct_loss_kind ct_model_loss_kind(const ct_model *m) { return m->loss; }
int ct_model_num_outputs(const ct_model *m) { return m->n_out; }
const ct_model_config *ct_model_get_config(const ct_model *m) { return &m->cfg; }
int ct_model_first_trainable(const ct_model *m) { return m->first_trainable; }
const char *ct_model_head_spec(const ct_model *m) { return m->head; }
ct_backend *ct_model_backend(ct_model *m) { return m->be; }
float *ct_model_input(ct_model *m) { return m->input; }
float *ct_model_aux_input(ct_model *m) { return m->aux; }

size_t ct_model_num_params(const ct_model *m, size_t *trainable) {
    size_t all = 0, tr = 0;
    for (int i = 0; i < m->n_layers; i++) {
        const ct_layer *l = &m->layers[i];
        if (!ct_layer_has_params(l)) continue;
        all += l->kernel.size + l->bias.size;
        if (l->trainable) tr += l->kernel.size + l->bias.size;
    }
    if (trainable != NULL) *trainable = tr;
    return all;
}

void ct_model_memory_get(const ct_model *m, ct_model_memory *mem) {
    mem->params = m->params.bytes;
    mem->grads = m->grads.bytes;
    mem->optimizer = m->opt.bytes;
    mem->activations = m->acts.bytes;
    mem->workspace = 0;
}

ct_status ct_model_set_trainable(ct_model *m, const char *name, bool trainable) {
    ct_layer *l = ct_model_find(m, name);
    if (l == NULL) return unknown_layer(m, name);
    l->trainable = trainable;
    return ct_model_replan(m);
}

ct_status ct_model_freeze_to(ct_model *m, const char *name) {
    int upto = -1;
    if (name != NULL && name[0] != '\0') {
        ct_layer *l = ct_model_find(m, name);
        if (l == NULL) return unknown_layer(m, name);
        upto = (int)(l - m->layers);
    }
    for (int i = 0; i < m->n_layers; i++) m->layers[i].trainable = i > upto;
    return ct_model_replan(m);
}

ct_status ct_model_set_trainable_mask(ct_model *m, const bool *trainable) {
    for (int i = 0; i < m->n_layers; i++) m->layers[i].trainable = trainable[i];
    return ct_model_replan(m);
}

ct_dtype ct_model_activation_dtype(const ct_model *m) { return m->act_dtype; }

ct_status ct_model_layer_output(ct_model *m, int i, int n, float *host) {
    if (i < 0 || i >= m->n_layers || n <= 0 || n > m->cfg.max_batch)
        return ct_error(CT_EINVAL, "layer output: layer %d or batch %d out of range", i, n);
    const ct_layer *l = &m->layers[i];
    if (l->out == NULL) return ct_error(CT_EINVAL, "layer %s has no output buffer", l->name);
    size_t count = (size_t)n * ct_layer_out_size(l);
    ct_status s = m->be->ops->copy_to_host(m->be->ctx, host, l->out,
                                           count * ct_dtype_size(l->dtype));
    if (s == CT_OK && l->dtype == CT_BF16) ct_bf16_widen_inplace(host, count);
    return s;
}

ct_status ct_model_layer_finite(ct_model *m, int i, int n, bool *finite) {
    *finite = true;
    if (i < 0 || i >= m->n_layers || n <= 0 || n > m->cfg.max_batch)
        return ct_error(CT_EINVAL, "layer output: layer %d or batch %d out of range", i, n);
    const ct_layer *l = &m->layers[i];
    if (l->out == NULL) return CT_OK;
    size_t count = (size_t)n * ct_layer_out_size(l);
    if (l->dtype == CT_F32) return m->be->ops->check_finite(m->be->ctx, finite, l->out, count);
    /* bf16: through the host in pieces (this runs once, after a step went wrong). */
    enum { PIECE = 1 << 20 };
    ct_bf16 *buf = malloc(PIECE * sizeof *buf);
    if (buf == NULL) return ct_error(CT_ENOMEM, "cannot allocate a buffer to check %s", l->name);
    ct_status s = CT_OK;
    for (size_t at = 0; at < count && *finite && s == CT_OK; at += PIECE) {
        size_t len = count - at < PIECE ? count - at : PIECE;
        s = m->be->ops->copy_to_host(m->be->ctx, buf, (const ct_bf16 *)l->out + at,
                                     len * sizeof *buf);
        for (size_t j = 0; s == CT_OK && j < len; j++)
            if ((buf[j] & 0x7f80u) == 0x7f80u) *finite = false;
    }
    free(buf);
    return s;
}

ct_status ct_model_tensor_get(ct_model *m, const ct_tensor *t, float *host) {
    if (t->data == NULL)
        return ct_error(CT_EINVAL, "%s is not allocated (the layer is frozen)", t->name);
    return m->be->ops->copy_to_host(m->be->ctx, host, t->data, t->size * sizeof(float));
}

ct_status ct_model_tensor_set(ct_model *m, ct_tensor *t, const float *host) {
    if (t->data == NULL)
        return ct_error(CT_EINVAL, "%s is not allocated (the layer is frozen)", t->name);
    return m->be->ops->copy_to_device(m->be->ctx, t->data, host, t->size * sizeof(float));
}

void ct_model_layer_flops(const ct_model *m, int i, double *forward, double *backward) {
    const ct_layer *l = &m->layers[i];
    double f = 0.0, b = 0.0;
    if (ct_layer_has_params(l)) {
        f = 2.0 * (double)l->kernel.size *
            (l->kind == CT_LAYER_CONV ? (double)l->out_h * l->out_w : 1.0);
        if (l->trainable) b += f;                 /* weight gradient */
        if (l->src >= m->first_trainable) b += f; /* data gradient */
    }
    if (forward != NULL) *forward = f;
    if (backward != NULL) *backward = b;
}

void ct_model_flops(const ct_model *m, double *forward, double *train) {
    double fwd = 0.0, bwd = 0.0;
    for (int i = 0; i < m->n_layers; i++) {
        double f, b;
        ct_model_layer_flops(m, i, &f, &b);
        fwd += f;
        bwd += b;
    }
    if (forward != NULL) *forward = fwd;
    if (train != NULL) *train = fwd + bwd;
}

void ct_model_synthetic_batch(const ct_model *m, int n, uint32_t stream, uint64_t seed, float *x,
                              float *aux, float *labels) {
    const ct_model_config *c = ct_model_get_config(m);
    const size_t per = (size_t)c->input_h * c->input_w * c->input_c;
    const uint32_t purpose = (uint32_t)CT_RNG_TEST << 16;
    for (size_t i = 0; i < (size_t)n * per; i++)
        x[i] = (2.0f * ct_rng_unit(ct_rng_word(seed, purpose, stream, 0, (uint32_t)i)) - 1.0f) *
               60.0f;
    for (int i = 0; i < n * c->aux_dim; i++)
        aux[i] = ct_rng_unit(ct_rng_word(seed, purpose, stream, 1, (uint32_t)i));
    const int k = ct_model_num_outputs(m);
    for (int i = 0; i < n; i++) {
        uint32_t w = ct_rng_word(seed, purpose, stream, 2, (uint32_t)i);
        if (k == 1) {
            labels[i] = (float)(w & 1u);
        } else {
            for (int j = 0; j < k; j++) labels[i * k + j] = 0.0f;
            labels[i * k + (int)(w % (uint32_t)k)] = 1.0f;
        }
    }
}
