/* Losses from logits on the CPU, averaged over the batch as Keras does (sum over batch size),
 * with optional per-sample weights for class weighting.
 *
 * Both losses are computed from logits in the numerically stable form: binary cross-entropy as
 * max(z, 0) - z*y + log1p(exp(-|z|)), categorical cross-entropy through log-softmax with the row
 * maximum subtracted. Their gradients with respect to the logits are the classic
 * (probability - label) / n. */
#include <math.h>

#include "cpu.h"

ct_status ct_cpu_loss_forward_backward(void *ctx, ct_loss_kind kind, float *loss, float *probs,
                                       float *dlogits, const float *logits, const float *labels,
                                       const float *weights, int n, int k) {
    (void)ctx;
    double total = 0.0;
    const float inv_n = 1.0f / (float)n;
    for (int i = 0; i < n; i++) {
        const float wi = weights != NULL ? weights[i] : 1.0f;
        const float *z = logits + (size_t)i * k;
        const float *y = labels + (size_t)i * k;
        float *p = probs + (size_t)i * k;
        float *dz = dlogits + (size_t)i * k;
        if (kind == CT_LOSS_BINARY_CE) {
            for (int j = 0; j < k; j++) {
                float zj = z[j];
                float l = fmaxf(zj, 0.0f) - zj * y[j] + log1pf(expf(-fabsf(zj)));
                p[j] = zj >= 0.0f ? 1.0f / (1.0f + expf(-zj)) : expf(zj) / (1.0f + expf(zj));
                /* The loss averages over the k outputs, so each gradient carries 1/k. */
                dz[j] = (p[j] - y[j]) * wi * inv_n / (float)k;
                total += (double)wi * l / k;
            }
        } else {
            float m = z[0];
            for (int j = 1; j < k; j++) m = fmaxf(m, z[j]);
            float sum = 0.0f;
            for (int j = 0; j < k; j++) sum += expf(z[j] - m);
            float lse = m + logf(sum);
            float l = 0.0f;
            for (int j = 0; j < k; j++) {
                p[j] = expf(z[j] - lse);
                l -= y[j] * (z[j] - lse);
                dz[j] = (p[j] - y[j]) * wi * inv_n;
            }
            total += (double)wi * l;
        }
    }
    *loss = (float)(total / n);
    return CT_OK;
}
