/* Building the model: the backbone from its table (backbones.c) with Keras's layer names, the head
 * from its spec, Keras's default initialisation from the seeded generator, freezing, and the
 * accessors. The memory the trainable flags call for is planned in plan.c. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "internal.h"

/* The backbone's layers from its table: names, kinds and filters from the row, shapes from the
 * kind's rule, each layer reading the one before it (the first reads the image). */
static void build_backbone(ct_model *m) {
    const ct_backbone *bb = m->backbone;
    int h = m->cfg.input_h, w = m->cfg.input_w, c = m->cfg.input_c;
    for (int i = 0; i < bb->n_layers; i++) {
        const ct_backbone_layer *row = &bb->layers[i];
        ct_layer *l = &m->layers[i];
        memset(l, 0, sizeof *l);
        snprintf(l->name, CT_NAME_MAX, "%s", row->name);
        l->kind = row->kind;
        l->act = row->kind == CT_LAYER_CONV ? CT_ACT_RELU : CT_ACT_LINEAR;
        l->units = row->units;
        l->src = i == 0 ? CT_SRC_IMAGE : i - 1;
        l->src2 = -1;
        l->trainable = true;
        l->lr_mult = 1.0f;
        l->in_h = h;
        l->in_w = w;
        l->in_c = c;
        ct_layer_kind_get(l->kind)->shape(m, l);
        h = l->out_h;
        w = l->out_w;
        c = l->out_c;
    }
    m->n_backbone = m->n_layers = bb->n_layers;
}

/* Glorot uniform kernels and zero biases, as Keras initialises Conv2D and Dense. */
static void glorot_uniform(float *dst, const ct_layer *l, size_t fan_in, size_t fan_out,
                           int layer_index, uint64_t seed) {
    const float limit = (float)sqrt(6.0 / (double)(fan_in + fan_out));
    const uint32_t purpose = (uint32_t)CT_RNG_INIT << 16;
    const size_t n = l->kernel.size;
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        uint32_t wd = ct_rng_word(seed, purpose, (uint32_t)layer_index, 0, (uint32_t)i);
        dst[i] = (2.0f * ct_rng_unit(wd) - 1.0f) * limit;
    }
}

/* Where a layer's parameters go in the arena, and the fans its initialisation is scaled by. */
typedef struct param_plan {
    size_t kernel, bias;
    size_t fan_in, fan_out;
} param_plan;

/* Shapes and names of every layer's parameters and their gradients and optimizer slots, and
 * each one's place in the parameter arena. */
static void plan_params(ct_model *m, param_plan *plan) {
    for (int i = 0; i < m->n_layers; i++) {
        ct_layer *l = &m->layers[i];
        if (!ct_layer_has_params(l)) continue;
        snprintf(m->names[i].kernel, sizeof m->names[i].kernel, "%s/kernel", l->name);
        snprintf(m->names[i].bias, sizeof m->names[i].bias, "%s/bias", l->name);
        ct_layer_kind_get(l->kind)->kernel(l, &l->kernel, &plan[i].fan_in, &plan[i].fan_out);
        ct_tensor_set_shape(&l->bias, 1, &l->units);
        l->kernel.name = l->dkernel.name = m->names[i].kernel;
        l->bias.name = l->dbias.name = m->names[i].bias;
        ct_tensor_set_shape(&l->dkernel, l->kernel.ndim, l->kernel.shape);
        ct_tensor_set_shape(&l->dbias, 1, &l->units);
        for (int s = 0; s < 2; s++) {
            l->opt_kernel[s] = l->dkernel;
            l->opt_bias[s] = l->dbias;
        }
        plan[i].kernel = ct_arena_reserve(&m->params, l->kernel.size);
        plan[i].bias = ct_arena_reserve(&m->params, l->bias.size);
    }
}

static ct_status init_params(ct_model *m) {
    ct_arena_init(&m->params, "params", m->be);
    param_plan *plan = calloc((size_t)(unsigned)m->n_layers, sizeof *plan);
    if (plan == NULL) return ct_error(CT_ENOMEM, "cannot plan the parameter arena");
    plan_params(m, plan);
    ct_status s = ct_arena_alloc(&m->params);
    if (s != CT_OK) {
        free(plan);
        return s;
    }
    /* Initialise on the host and copy once: the generator is the same function everywhere, so
     * the weights do not depend on the backend. */
    float *host = NULL;
    size_t host_cap = 0;
    for (int i = 0; i < m->n_layers && s == CT_OK; i++) {
        ct_layer *l = &m->layers[i];
        if (!ct_layer_has_params(l)) continue;
        l->kernel.data = ct_arena_ptr(&m->params, plan[i].kernel);
        l->bias.data = ct_arena_ptr(&m->params, plan[i].bias);
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
        glorot_uniform(host, l, plan[i].fan_in, plan[i].fan_out, i, m->cfg.seed);
        s = m->be->ops->copy_to_device(m->be->ctx, l->kernel.data, host,
                                       l->kernel.size * sizeof(float));
        /* Biases stay zero: the arena is allocated zero-filled. */
    }
    free(host);
    free(plan);
    return s;
}

static ct_status check_config(const ct_model_config *c, const ct_backbone **bb) {
    ct_status s = ct_backbone_lookup(c->backbone, bb);
    if (s != CT_OK) return s;
    if (c->input_h < CT_MIN_INPUT || c->input_w < CT_MIN_INPUT)
        return ct_error(CT_EINVAL, "input size %dx%d is too small: %s needs at least %dx%d",
                        c->input_h, c->input_w, (*bb)->keras_name, CT_MIN_INPUT, CT_MIN_INPUT);
    if (c->input_h > CT_MAX_INPUT || c->input_w > CT_MAX_INPUT)
        return ct_error(CT_EINVAL, "input size %dx%d is larger than %dx%d", c->input_h,
                        c->input_w, CT_MAX_INPUT, CT_MAX_INPUT);
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
    const ct_backbone *bb = NULL;
    ct_status s = check_config(cfg, &bb);
    if (s != CT_OK) return s;
    ct_model *m = calloc(1, sizeof *m);
    if (m == NULL) return ct_error(CT_ENOMEM, "cannot allocate the model");
    m->cfg = *cfg;
    m->cfg.head = NULL;
    m->backbone = bb;
    m->cfg.backbone = bb->name;
    m->be = be;
    m->act_dtype = strcmp(ct_backend_precision(be), "bf16") == 0 ? CT_BF16 : CT_F32;
    ct_arena_init(&m->grads, "grads", be);
    ct_arena_init(&m->opt, "optimizer", be);
    ct_arena_init(&m->acts, "activations", be);
    m->layers = calloc((size_t)bb->n_layers, sizeof *m->layers);
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
    if (m->free_owner != NULL) m->free_owner(m->owner);
    free(m);
}

void ct_model_set_owner(ct_model *m, void *owner, void (*free_owner)(void *owner)) {
    m->owner = owner;
    m->free_owner = free_owner;
}

void *ct_model_owner(const ct_model *m) { return m->owner; }

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
const ct_backbone *ct_model_backbone(const ct_model *m) { return m->backbone; }
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
        /* A kernel's multiply-adds at every output position (a dense layer has one). */
        f = 2.0 * (double)l->kernel.size * (double)l->out_h * l->out_w;
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
