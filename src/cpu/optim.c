/* Optimizer updates on the CPU, in Keras's formulation: SGD with momentum and Nesterov as Keras 2
 * wrote it (velocity holds -lr * accumulated gradient), Adam with the bias correction folded into
 * the learning rate by the caller, AdamW's decoupled weight decay, and an L2 penalty's
 * gradient (2 l2 p) added to the gradient first, as Keras's kernel_regularizer does. */
#include <math.h>

#include "cpu.h"

ct_status ct_cpu_sgd_update(void *ctx, float *p, float *velocity, const float *g, size_t count,
                            const ct_update_args *u) {
    (void)ctx;
    const float lr = u->lr, mu = u->momentum;
    if (velocity == NULL && mu != 0.0f)
        return ct_error(CT_EINVAL, "SGD with momentum %g needs a velocity buffer", mu);
    const float l2x2 = 2.0f * u->l2;
    if (mu == 0.0f) {
#pragma omp parallel for schedule(static)
        for (size_t i = 0; i < count; i++) p[i] -= lr * (g[i] + l2x2 * p[i]);
        return CT_OK;
    }
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < count; i++) {
        float gi = g[i] + l2x2 * p[i];
        float v = mu * velocity[i] - lr * gi;
        velocity[i] = v;
        p[i] += u->nesterov ? mu * v - lr * gi : v;
    }
    return CT_OK;
}

ct_status ct_cpu_adam_update(void *ctx, float *p, float *m, float *v, const float *g, size_t count,
                             const ct_update_args *u) {
    (void)ctx;
    const float b1 = u->beta1, b2 = u->beta2, l2x2 = 2.0f * u->l2;
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < count; i++) {
        float gi = g[i] + l2x2 * p[i]; /* the L2 penalty's gradient, before any decay */
        if (u->weight_decay > 0.0f) p[i] -= u->weight_decay * p[i];
        float mi = b1 * m[i] + (1.0f - b1) * gi;
        float vi = b2 * v[i] + (1.0f - b2) * gi * gi;
        m[i] = mi;
        v[i] = vi;
        p[i] -= u->lr * mi / (sqrtf(vi) + u->eps);
    }
    return CT_OK;
}

ct_status ct_cpu_update_multi(void *ctx, bool adam, const ct_update_tensor *t, int n,
                              const ct_update_args *u) {
    for (int i = 0; i < n; i++) {
        ct_update_args a = *u;
        a.lr = u->lr * t[i].lr_mult;
        a.weight_decay = u->weight_decay * t[i].lr_mult;
        if (!t[i].l2) a.l2 = 0.0f;
        ct_status s = adam ? ct_cpu_adam_update(ctx, t[i].p, t[i].s0, t[i].s1, t[i].g,
                                                t[i].count, &a)
                           : ct_cpu_sgd_update(ctx, t[i].p, t[i].s0, t[i].g, t[i].count, &a);
        if (s != CT_OK) return s;
    }
    return CT_OK;
}
