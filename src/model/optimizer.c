/* Optimizer state and the update step over the trainable parameters.
 *
 * The learning-rate arithmetic that Keras does per step (time decay, Adam's bias correction)
 * happens here once per step on the host; the backends only apply elementwise updates. */
#include <math.h>
#include <string.h>

#include "internal.h"

void ct_optimizer_defaults(ct_optimizer_config *c, ct_optimizer_kind kind) {
    memset(c, 0, sizeof *c);
    c->kind = kind;
    c->lr = kind == CT_OPT_SGD ? 0.01f : 0.001f;
    c->beta1 = 0.9f;
    c->beta2 = 0.999f;
    c->epsilon = 1e-7f;
    c->weight_decay = kind == CT_OPT_ADAMW ? 0.004f : 0.0f;
}

/* Keras's names, in ct_optimizer_kind order: the one spelling of them. */
static const char *const optimizer_names[] = {"sgd", "adam", "adamw"};

const char *ct_optimizer_name(ct_optimizer_kind kind) {
    return (int)kind >= 0 && (size_t)kind < sizeof optimizer_names / sizeof optimizer_names[0]
               ? optimizer_names[kind]
               : "?";
}

ct_status ct_optimizer_parse(const char *name, ct_optimizer_kind *kind) {
    for (size_t k = 0; k < sizeof optimizer_names / sizeof optimizer_names[0]; k++)
        if (strcmp(name, optimizer_names[k]) == 0) {
            *kind = (ct_optimizer_kind)k;
            return CT_OK;
        }
    return ct_error(CT_EINVAL, "unknown optimizer '%s' (sgd, adam, adamw)", name);
}

static ct_status check_optimizer(const ct_optimizer_config *c) {
    if (!(c->lr > 0.0f) || !isfinite(c->lr))
        return ct_error(CT_EINVAL, "learning rate must be a positive number, not %g", c->lr);
    if (!(c->momentum >= 0.0f && c->momentum < 1.0f))
        return ct_error(CT_EINVAL, "momentum must be in [0, 1), not %g", c->momentum);
    if (!(c->decay >= 0.0f)) return ct_error(CT_EINVAL, "decay must be >= 0, not %g", c->decay);
    if (c->kind != CT_OPT_SGD &&
        !(c->beta1 >= 0.0f && c->beta1 < 1.0f && c->beta2 >= 0.0f && c->beta2 < 1.0f))
        return ct_error(CT_EINVAL, "Adam betas must be in [0, 1)");
    if (!(c->weight_decay >= 0.0f))
        return ct_error(CT_EINVAL, "weight decay must be >= 0, not %g", c->weight_decay);
    if (!(c->l2 >= 0.0f)) return ct_error(CT_EINVAL, "l2 must be >= 0, not %g", c->l2);
    return CT_OK;
}

ct_status ct_model_compile(ct_model *m, const ct_optimizer_config *c) {
    ct_status s = check_optimizer(c);
    if (s != CT_OK) return s;
    m->opt_cfg = *c;
    m->opt_slots = c->kind == CT_OPT_SGD ? (c->momentum > 0.0f ? 1 : 0) : 2;
    m->iterations = 0;
    m->compiled = true;
    return ct_model_replan(m);
}

uint64_t ct_model_iterations(const ct_model *m) { return m->iterations; }

void ct_model_set_iterations(ct_model *m, uint64_t iterations) { m->iterations = iterations; }

bool ct_model_get_optimizer(const ct_model *m, ct_optimizer_config *c) {
    if (!m->compiled) return false;
    *c = m->opt_cfg;
    return true;
}

/* VGG16's 16 weight layers plus a head: far below this. */
#define CT_MAX_LAYERS_UPDATE 64

ct_status ct_model_apply_gradients(ct_model *m, float lr_scale) {
    if (!m->compiled) return ct_error(CT_EINVAL, "the model has no optimizer: compile it first");
    const ct_optimizer_config *c = &m->opt_cfg;
    const double t = (double)m->iterations + 1.0;
    double lr = (double)c->lr * lr_scale / (1.0 + (double)c->decay * (double)m->iterations);
    ct_update_args u = {.momentum = c->momentum, .nesterov = c->nesterov, .beta1 = c->beta1,
                        .beta2 = c->beta2, .eps = c->epsilon};
    if (c->kind == CT_OPT_SGD) {
        u.lr = (float)lr;
    } else {
        /* Keras folds the bias corrections into the step size. */
        u.lr = (float)(lr * sqrt(1.0 - pow(c->beta2, t)) / (1.0 - pow(c->beta1, t)));
        if (c->kind == CT_OPT_ADAMW) u.weight_decay = (float)(lr * c->weight_decay);
    }
    /* Every trainable kernel and bias in one fused update (one launch on CUDA). */
    ct_update_tensor ts[2 * CT_MAX_LAYERS_UPDATE];
    int n = 0;
    for (int i = 0; i < m->n_layers; i++) {
        ct_layer *l = &m->layers[i];
        if (!ct_layer_has_params(l) || !l->trainable) continue;
        if (n + 2 > (int)(sizeof ts / sizeof ts[0]))
            return ct_error(CT_EINVAL, "more than %d trainable layers", CT_MAX_LAYERS_UPDATE);
        ct_tensor *p[2] = {&l->kernel, &l->bias};
        ct_tensor *g[2] = {&l->dkernel, &l->dbias};
        ct_tensor *s0[2] = {&l->opt_kernel[0], &l->opt_bias[0]};
        ct_tensor *s1[2] = {&l->opt_kernel[1], &l->opt_bias[1]};
        for (int k = 0; k < 2; k++)
            ts[n++] = (ct_update_tensor){
                .p = p[k]->data,
                .s0 = c->kind == CT_OPT_SGD && !m->opt_slots ? NULL : s0[k]->data,
                .s1 = c->kind == CT_OPT_SGD ? NULL : s1[k]->data,
                .g = g[k]->data,
                .count = p[k]->size,
                .lr_mult = l->lr_mult,
                .l2 = k == 0, /* Keras regularises kernels, not biases */
            };
    }
    u.l2 = c->l2;
    ct_status s = m->be->ops->update_multi(m->be->ctx, c->kind != CT_OPT_SGD, ts, n, &u);
    if (s != CT_OK) return ct_error(s, "optimizer update: %s", ct_last_error());
    m->iterations++;
    return CT_OK;
}
