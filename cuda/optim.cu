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
#include <string.h>

#include "context.h"

#define THREADS 256

/* One element of each update: the single-tensor and the fused kernels share these, so both
 * compute the same floats. */
__device__ __forceinline__ void sgd_one(float *p, float *vel, const float *g, size_t i, float lr,
                                        float momentum, bool nesterov, float l2x2) {
    float gi = g[i] + l2x2 * p[i];
    if (!vel || momentum == 0.0f) { /* as the CPU: no momentum leaves the velocity alone */
        p[i] -= lr * gi;
        return;
    }
    float v = momentum * vel[i] - lr * gi;
    vel[i] = v;
    p[i] += nesterov ? momentum * v - lr * gi : v;
}

__device__ __forceinline__ void adam_one(float *p, float *m, float *v, const float *g, size_t i,
                                         float lr, float beta1, float beta2, float eps,
                                         float weight_decay, float l2x2) {
    float pi = p[i];
    float gi = g[i] + l2x2 * pi;
    if (weight_decay > 0.0f) pi -= weight_decay * pi;
    float mi = beta1 * m[i] + (1.0f - beta1) * gi;
    float vi = beta2 * v[i] + (1.0f - beta2) * gi * gi;
    m[i] = mi;
    v[i] = vi;
    p[i] = pi - lr * mi / (sqrtf(vi) + eps);
}

__global__ void sgd_kernel(float *p, float *vel, const float *g, size_t count, float lr,
                           float momentum, bool nesterov, float l2x2) {
    size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < count; i += stride)
        sgd_one(p, vel, g, i, lr, momentum, nesterov, l2x2);
}

__global__ void adam_kernel(float *p, float *m, float *v, const float *g, size_t count, float lr,
                            float beta1, float beta2, float eps, float weight_decay, float l2x2) {
    size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < count; i += stride)
        adam_one(p, m, v, g, i, lr, beta1, beta2, eps, weight_decay, l2x2);
}

/* The fused update: up to MULTI_MAX tensors per launch, passed by value (kernel parameters
 * live in constant memory; this struct is about 1.3 KB of the 4 KB allowed). Element e of the
 * concatenation belongs to the tensor t with end[t-1] <= e < end[t]; a thread's elements only
 * increase, so it finds its tensor once and then steps forward. */
#define MULTI_MAX 24

typedef struct multi_args {
    float *p[MULTI_MAX], *s0[MULTI_MAX], *s1[MULTI_MAX];
    const float *g[MULTI_MAX];
    size_t end[MULTI_MAX];
    float lr[MULTI_MAX], wd[MULTI_MAX], l2x2[MULTI_MAX];
    int n;
} multi_args;

__global__ void multi_kernel(multi_args a, bool adam, float momentum, bool nesterov, float beta1,
                             float beta2, float eps) {
    const size_t total = a.end[a.n - 1];
    size_t stride = (size_t)gridDim.x * blockDim.x;
    int t = 0;
    for (size_t e = (size_t)blockIdx.x * blockDim.x + threadIdx.x; e < total; e += stride) {
        while (e >= a.end[t]) t++;
        const size_t i = e - (t > 0 ? a.end[t - 1] : 0);
        if (adam)
            adam_one(a.p[t], a.s0[t], a.s1[t], a.g[t], i, a.lr[t], beta1, beta2, eps, a.wd[t],
                     a.l2x2[t]);
        else
            sgd_one(a.p[t], a.s0[t], a.g[t], i, a.lr[t], momentum, nesterov, a.l2x2[t]);
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

ct_status ct_cu_update_multi(void *ctx_, bool adam, const ct_update_tensor *t, int n,
                             const ct_update_args *u) {
    ct_cu_ctx *ctx = (ct_cu_ctx *)ctx_;
    if (!u || (n > 0 && !t)) return ct_error(CT_EINVAL, "cuda update_multi: no tensors");
    /* Every tensor is checked before anything is launched: never half an update. */
    for (int i = 0; i < n; i++) {
        const ct_update_tensor *x = &t[i];
        if (x->count > 0 && (!x->p || !x->g || (adam && (!x->s0 || !x->s1)) ||
                             (!adam && !x->s0 && u->momentum != 0.0f)))
            return ct_error(CT_EINVAL, "cuda update_multi: tensor %d lacks a buffer", i);
    }
    ct_status st = ct_cu_enter(ctx);
    if (st != CT_OK) return st;
    int i = 0;
    while (i < n) {
        multi_args a;
        memset(&a, 0, sizeof a);
        size_t total = 0;
        for (; i < n && a.n < MULTI_MAX; i++) {
            const ct_update_tensor *x = &t[i];
            if (x->count == 0) continue;
            const int k = a.n++;
            a.p[k] = x->p;
            a.s0[k] = x->s0;
            a.s1[k] = x->s1;
            a.g[k] = x->g;
            total += x->count;
            a.end[k] = total;
            /* The same float products as the per-tensor path (cpu/optim.c). */
            a.lr[k] = u->lr * x->lr_mult;
            a.wd[k] = u->weight_decay * x->lr_mult;
            a.l2x2[k] = 2.0f * (x->l2 ? u->l2 : 0.0f);
        }
        if (a.n == 0) continue;
        multi_kernel<<<ct_cu_grid(ctx, total, THREADS), THREADS, 0, ctx->stream>>>(
            a, adam, u->momentum, u->nesterov, u->beta1, u->beta2, u->eps);
        CT_CU_CHECK_LAUNCH();
    }
    return CT_OK;
}
