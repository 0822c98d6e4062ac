/* Optimizer updates on the CUDA backend: Keras 2 SGD (momentum, Nesterov) and Adam, with
 * decoupled weight decay.
 *
 * Each is one elementwise pass over a parameter tensor and its state; the optimizer in src/
 * resolves the schedule (decay, Adam's bias correction, decay times learning rate) and passes
 * the numbers of this step. The formulas are those of the op interface:
 *
 *   SGD:  v = momentum v - lr g;  p += nesterov ? momentum v - lr g : v
 *         (no velocity buffer when momentum is 0: p -= lr g)
 *   Adam: p -= weight_decay p;  m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g²;
 *         p -= lr m / (sqrt(v) + eps)                         (lr already bias-corrected)
 * with g replaced by g + 2 l2 p first when an L2 penalty is set. */
#include <math.h>

#include "context.h"

#define THREADS 256

__global__ void sgd_kernel(float *p, float *vel, const float *g, size_t count, float lr,
                           float momentum, bool nesterov, float l2x2) {
    size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < count; i += stride) {
        float gi = g[i] + l2x2 * p[i];
        if (!vel) {
            p[i] -= lr * gi;
            continue;
        }
        float v = momentum * vel[i] - lr * gi;
        vel[i] = v;
        p[i] += nesterov ? momentum * v - lr * gi : v;
    }
}

__global__ void adam_kernel(float *p, float *m, float *v, const float *g, size_t count, float lr,
                            float beta1, float beta2, float eps, float weight_decay, float l2x2) {
    size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < count; i += stride) {
        float pi = p[i];
        float gi = g[i] + l2x2 * pi;
        if (weight_decay > 0.0f) pi -= weight_decay * pi;
        float mi = beta1 * m[i] + (1.0f - beta1) * gi;
        float vi = beta2 * v[i] + (1.0f - beta2) * gi * gi;
        m[i] = mi;
        v[i] = vi;
        p[i] = pi - lr * mi / (sqrtf(vi) + eps);
    }
}

ct_status ct_cu_sgd_update(void *ctx_, float *p, float *velocity, const float *g, size_t count,
                           const ct_update_args *u) {
    ct_cu_ctx *ctx = (ct_cu_ctx *)ctx_;
    if (!u) return ct_error(CT_EINVAL, "cuda sgd_update: no hyper-parameters");
    if (!velocity && u->momentum != 0.0f) {
        return ct_error(CT_EINVAL, "cuda sgd_update: momentum %g needs a velocity buffer",
                        (double)u->momentum);
    }
    if (count == 0) return CT_OK;
    ct_status st = ct_cu_enter(ctx);
    if (st != CT_OK) return st;
    sgd_kernel<<<ct_cu_grid(ctx, count, THREADS), THREADS, 0, ctx->stream>>>(
        p, velocity, g, count, u->lr, u->momentum, u->nesterov, 2.0f * u->l2);
    CT_CU_CHECK_LAUNCH();
    return CT_OK;
}

ct_status ct_cu_adam_update(void *ctx_, float *p, float *m, float *v, const float *g,
                            size_t count, const ct_update_args *u) {
    ct_cu_ctx *ctx = (ct_cu_ctx *)ctx_;
    if (!u) return ct_error(CT_EINVAL, "cuda adam_update: no hyper-parameters");
    if (count == 0) return CT_OK;
    ct_status st = ct_cu_enter(ctx);
    if (st != CT_OK) return st;
    adam_kernel<<<ct_cu_grid(ctx, count, THREADS), THREADS, 0, ctx->stream>>>(
        p, m, v, g, count, u->lr, u->beta1, u->beta2, u->eps, u->weight_decay, 2.0f * u->l2);
    CT_CU_CHECK_LAUNCH();
    return CT_OK;
}
