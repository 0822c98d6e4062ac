/* Losses from logits on the CUDA backend: sigmoid + binary cross-entropy and softmax +
 * categorical cross-entropy, forward and backward in one kernel.
 *
 * The batch is small (tens to hundreds of rows) and the rows are short (one logit, or a few
 * classes), so one block does everything: each warp takes rows in turn, reduces across its row
 * with shuffles, and the block then sums the weighted row losses in a fixed order into the mean.
 * One launch, no atomics, the same result on every run. The formulas are the numerically stable
 * ones the CPU backend uses:
 *
 *   binary:      loss = max(z, 0) - z y + log1p(exp(-|z|)),  p = sigmoid(z)
 *   categorical: lse = max z + log sum exp(z - max z),  loss = -sum_j y_j (z_j - lse),
 *                p = exp(z - lse)
 *   both:        dz = (p - y) w_r (1 / n),   mean loss = sum_r w_r loss_r / n (in double). */
#include "context.h"

#define LOSS_THREADS 512
#define WARPS (LOSS_THREADS / 32)

__device__ __forceinline__ float warp_sum(float v) {
    for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
    return v;
}

__device__ __forceinline__ float warp_max(float v) {
    for (int off = 16; off > 0; off >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, off));
    return v;
}

/* sigmoid without overflow: exp of a non-positive number only. */
__device__ __forceinline__ float stable_sigmoid(float z) {
    if (z >= 0.0f) return 1.0f / (1.0f + expf(-z));
    float e = expf(z);
    return e / (1.0f + e);
}

__global__ void loss_kernel(bool categorical, float *loss, float *probs, float *dlogits,
                            const float *logits, const float *labels, const float *weights,
                            int n, int k) {
    /* The batch mean is summed in double, as the CPU backend does, so that the two agree to
     * fp32 rounding whatever the order of the sum. */
    __shared__ double row_sums[WARPS];
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const float inv_n = 1.0f / (float)n;
    double acc = 0.0; /* this warp's sum of w_r * loss_r, kept by lane 0 */
    for (int r = warp; r < n; r += WARPS) {
        const float *z = logits + (size_t)r * k;
        const float *y = labels + (size_t)r * k;
        float *p = probs + (size_t)r * k;
        float *dz = dlogits + (size_t)r * k;
        float wr = weights ? weights[r] : 1.0f;
        float row_loss = 0.0f;
        if (categorical) {
            float m = -INFINITY;
            for (int j = lane; j < k; j += 32) m = fmaxf(m, z[j]);
            m = warp_max(m);
            float s = 0.0f;
            for (int j = lane; j < k; j += 32) s += expf(z[j] - m);
            s = warp_sum(s);
            float lse = m + logf(s);
            float part = 0.0f;
            for (int j = lane; j < k; j += 32) {
                float sm = expf(z[j] - lse);
                part -= y[j] * (z[j] - lse);
                p[j] = sm;
                dz[j] = (sm - y[j]) * wr * inv_n;
            }
            row_loss = warp_sum(part);
        } else if (lane == 0) {
            /* k == 1 (checked by the caller): lane 0 does the row. */
            float zz = z[0], yy = y[0];
            row_loss = fmaxf(zz, 0.0f) - zz * yy + log1pf(expf(-fabsf(zz)));
            float sg = stable_sigmoid(zz);
            p[0] = sg;
            dz[0] = (sg - yy) * wr * inv_n;
        }
        acc += (double)wr * row_loss;
    }
    if (lane == 0) row_sums[warp] = acc;
    __syncthreads();
    if (threadIdx.x == 0) {
        double total = 0.0;
        for (int i = 0; i < WARPS; i++) total += row_sums[i];
        *loss = (float)(total / n);
    }
}

ct_status ct_cu_loss_forward_backward(void *p, ct_loss_kind kind, float *loss, float *probs,
                                      float *dlogits, const float *logits, const float *labels,
                                      const float *weights, int n, int k) {
    ct_cu_ctx *ctx = (ct_cu_ctx *)p;
    if (n <= 0 || k <= 0) {
        return ct_error(CT_EINVAL, "cuda loss: empty batch or no outputs (n %d, k %d)", n, k);
    }
    if (kind == CT_LOSS_BINARY_CE && k != 1) {
        return ct_error(CT_EINVAL, "cuda loss: binary cross-entropy takes one logit per row, "
                                   "got %d", k);
    }
    if (kind != CT_LOSS_BINARY_CE && kind != CT_LOSS_CATEGORICAL_CE) {
        return ct_error(CT_EINVAL, "cuda loss: unknown loss kind %d", (int)kind);
    }
    ct_status st = ct_cu_enter(ctx);
    if (st != CT_OK) return st;
    loss_kernel<<<1, LOSS_THREADS, 0, ctx->stream>>>(kind == CT_LOSS_CATEGORICAL_CE, loss, probs,
                                                     dlogits, logits, labels, weights, n, k);
    CT_CU_CHECK_LAUNCH();
    return CT_OK;
}
