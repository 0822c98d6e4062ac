/* Optimizer updates on the CPU, in Keras's formulation: SGD with momentum and Nesterov as Keras 2
 * wrote it (velocity holds -lr * accumulated gradient), Adam with the bias correction folded into
 * the learning rate by the caller, and AdamW's decoupled weight decay. */
#include <math.h>

#include "cpu.h"

ct_status ct_cpu_sgd_update(void *ctx, float *p, float *velocity, const float *g, size_t count,
                            const ct_update_args *u) {
    (void)ctx;
    const float lr = u->lr, mu = u->momentum;
    if (velocity == NULL && mu != 0.0f)
        return ct_error(CT_EINVAL, "SGD with momentum %g needs a velocity buffer", mu);
    if (mu == 0.0f) {
#pragma omp parallel for schedule(static)
        for (size_t i = 0; i < count; i++) p[i] -= lr * g[i];
        return CT_OK;
    }
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < count; i++) {
        float v = mu * velocity[i] - lr * g[i];
        velocity[i] = v;
        p[i] += u->nesterov ? mu * v - lr * g[i] : v;
    }
    return CT_OK;
}

ct_status ct_cpu_adam_update(void *ctx, float *p, float *m, float *v, const float *g, size_t count,
                             const ct_update_args *u) {
    (void)ctx;
    const float b1 = u->beta1, b2 = u->beta2;
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < count; i++) {
        if (u->weight_decay > 0.0f) p[i] -= u->weight_decay * p[i];
        float mi = b1 * m[i] + (1.0f - b1) * g[i];
        float vi = b2 * v[i] + (1.0f - b2) * g[i] * g[i];
        m[i] = mi;
        v[i] = vi;
        p[i] -= u->lr * mi / (sqrtf(vi) + u->eps);
    }
    return CT_OK;
}
