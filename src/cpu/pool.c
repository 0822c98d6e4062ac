/* Max pooling (2x2, stride 2, 'valid') and global average / max pooling on the CPU.
 *
 * Max-pool backward finds the winner again from the kept input and output instead of storing
 * argmax indices: the comparison is exact because the output is a copy of one input value, and
 * ties go to the first maximum in row-major window order, as in Keras and PyTorch. */
#include <float.h>
#include <stdlib.h>
#include <string.h>

#include "cpu.h"

static void maxpool_forward_f32(float *y, const float *x, int n, int h, int w, int c) {
    const int oh = h / 2, ow = w / 2;
#pragma omp parallel for collapse(2) schedule(static)
    for (int i = 0; i < n; i++) {
        for (int oy = 0; oy < oh; oy++) {
            for (int ox = 0; ox < ow; ox++) {
                const float *x00 = x + (((size_t)i * h + 2 * oy) * w + 2 * ox) * c;
                const float *x01 = x00 + c;
                const float *x10 = x00 + (size_t)w * c;
                const float *x11 = x10 + c;
                float *yp = y + (((size_t)i * oh + oy) * ow + ox) * c;
                for (int ch = 0; ch < c; ch++) {
                    float m = x00[ch];
                    if (x01[ch] > m) m = x01[ch];
                    if (x10[ch] > m) m = x10[ch];
                    if (x11[ch] > m) m = x11[ch];
                    yp[ch] = m;
                }
            }
        }
    }
}

static void maxpool_backward_f32(float *dx, const float *dy, const float *x, const float *y,
                                 int n, int h, int w, int c) {
    const int oh = h / 2, ow = w / 2;
    memset(dx, 0, (size_t)n * h * w * c * sizeof(float));
#pragma omp parallel for collapse(2) schedule(static)
    for (int i = 0; i < n; i++) {
        for (int oy = 0; oy < oh; oy++) {
            for (int ox = 0; ox < ow; ox++) {
                size_t o = (((size_t)i * oh + oy) * ow + ox) * c;
                size_t base = (((size_t)i * h + 2 * oy) * w + 2 * ox) * c;
                size_t off[4] = {base, base + c, base + (size_t)w * c, base + (size_t)w * c + c};
                for (int ch = 0; ch < c; ch++) {
                    for (int q = 0; q < 4; q++) {
                        if (x[off[q] + ch] == y[o + ch]) {
                            dx[off[q] + ch] = dy[o + ch];
                            break;
                        }
                    }
                }
            }
        }
    }
}

/* The float32 max-pool backward goes through oneDNN (onednn_pool.c) unless
 * CUTUNE_CPU_KERNELS=reference, or the output is empty (oneDNN takes no window larger than its
 * input). The forward stays here: oneDNN's max turns NaN into -FLT_MAX, which would hide a
 * diverging run from the NaN-loss check, and this loop (one parallel region over the batch) was
 * as fast as oneDNN's on the development machine; its backward, a memset and four comparisons per
 * output, took 2 to 8 times oneDNN's. */
static bool use_dnnl(const void *ctx, int n, int h, int w) {
    return ((const ct_cpu_ctx *)ctx)->dnnl != NULL && n > 0 && h >= 2 && w >= 2;
}

/* bf16: one image at a time through float32 copies. Every output is a copy of an input value,
 * so narrowing the results back is exact. */
ct_status ct_cpu_maxpool_forward(void *ctx, ct_dtype dt, void *y, const void *x, int n, int h,
                                 int w, int c) {
    (void)ctx;
    if (dt == CT_F32) {
        maxpool_forward_f32(y, x, n, h, w, c);
        return CT_OK;
    }
    const size_t xs = (size_t)h * w * c, ys = (size_t)(h / 2) * (w / 2) * c;
    const size_t counts[2] = {xs, ys};
    float *t[2];
    ct_status s = ct_cpu_temp(2, counts, t);
    if (s != CT_OK) return s;
    for (int i = 0; i < n; i++) {
        ct_bf16_to_f32(t[0], (const ct_bf16 *)x + i * xs, xs);
        maxpool_forward_f32(t[1], t[0], 1, h, w, c);
        ct_f32_to_bf16((ct_bf16 *)y + i * ys, t[1], ys);
    }
    free(t[0]);
    free(t[1]);
    return CT_OK;
}

ct_status ct_cpu_maxpool_backward(void *ctx, ct_dtype dt, void *dx, const void *dy, const void *x,
                                  const void *y, int n, int h, int w, int c) {
    if (dt == CT_F32 && use_dnnl(ctx, n, h, w))
        return ct_cpu_dnnl_maxpool_backward(ctx, dx, dy, x, n, h, w, c);
    if (dt == CT_F32) {
        maxpool_backward_f32(dx, dy, x, y, n, h, w, c);
        return CT_OK;
    }
    const size_t xs = (size_t)h * w * c, ys = (size_t)(h / 2) * (w / 2) * c;
    const size_t counts[4] = {xs, ys, ys, xs};
    float *t[4]; /* x, y, dy, dx */
    ct_status s = ct_cpu_temp(4, counts, t);
    if (s != CT_OK) return s;
    for (int i = 0; i < n; i++) {
        ct_bf16_to_f32(t[0], (const ct_bf16 *)x + i * xs, xs);
        ct_bf16_to_f32(t[1], (const ct_bf16 *)y + i * ys, ys);
        ct_bf16_to_f32(t[2], (const ct_bf16 *)dy + i * ys, ys);
        maxpool_backward_f32(t[3], t[2], t[0], t[1], 1, h, w, c);
        ct_f32_to_bf16((ct_bf16 *)dx + i * xs, t[3], xs);
    }
    for (int j = 0; j < 4; j++) free(t[j]);
    return CT_OK;
}

ct_status ct_cpu_global_pool_forward(void *ctx, ct_global_pool kind, float *y, const float *x,
                                     int n, int h, int w, int c) {
    (void)ctx;
    const int hw = h * w;
#pragma omp parallel for schedule(static)
    for (int i = 0; i < n; i++) {
        const float *xi = x + (size_t)i * hw * c;
        float *yi = y + (size_t)i * c;
        for (int ch = 0; ch < c; ch++) yi[ch] = kind == CT_GLOBAL_MAX ? -FLT_MAX : 0.0f;
        for (int p = 0; p < hw; p++) {
            const float *xp = xi + (size_t)p * c;
            if (kind == CT_GLOBAL_MAX) {
                for (int ch = 0; ch < c; ch++)
                    if (xp[ch] > yi[ch]) yi[ch] = xp[ch];
            } else {
                for (int ch = 0; ch < c; ch++) yi[ch] += xp[ch];
            }
        }
        if (kind == CT_GLOBAL_AVG)
            for (int ch = 0; ch < c; ch++) yi[ch] /= (float)hw;
    }
    return CT_OK;
}

ct_status ct_cpu_global_pool_backward(void *ctx, ct_global_pool kind, float *dx, const float *dy,
                                      const float *x, const float *y, int n, int h, int w, int c) {
    (void)ctx;
    const int hw = h * w;
#pragma omp parallel for schedule(static)
    for (int i = 0; i < n; i++) {
        const float *xi = x + (size_t)i * hw * c;
        const float *dyi = dy + (size_t)i * c;
        float *dxi = dx + (size_t)i * hw * c;
        if (kind == CT_GLOBAL_AVG) {
            for (int p = 0; p < hw; p++)
                for (int ch = 0; ch < c; ch++) dxi[(size_t)p * c + ch] = dyi[ch] / (float)hw;
            continue;
        }
        memset(dxi, 0, (size_t)hw * c * sizeof(float));
        for (int ch = 0; ch < c; ch++) {
            for (int p = 0; p < hw; p++) {
                if (xi[(size_t)p * c + ch] == y[(size_t)i * c + ch]) {
                    dxi[(size_t)p * c + ch] = dyi[ch];
                    break;
                }
            }
        }
    }
    return CT_OK;
}
