/* Max pooling (2x2, stride 2, 'valid') and global average / max pooling on the CPU.
 *
 * Max-pool backward finds the winner again from the kept input and output instead of storing
 * argmax indices: the comparison is exact because the output is a copy of one input value, and
 * ties go to the first maximum in row-major window order, as in Keras and PyTorch. */
#include <float.h>
#include <string.h>

#include "cpu.h"

ct_status ct_cpu_maxpool_forward(void *ctx, float *y, const float *x, int n, int h, int w, int c) {
    (void)ctx;
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
    return CT_OK;
}

ct_status ct_cpu_maxpool_backward(void *ctx, float *dx, const float *dy, const float *x,
                                  const float *y, int n, int h, int w, int c) {
    (void)ctx;
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
