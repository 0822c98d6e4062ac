/* 3x3 stride-1 'same' convolution + bias + ReLU on the CPU, forward and backward.
 *
 * Each image is lowered to a column matrix (im2col: one row per output pixel, 9*C values in
 * (r, s, c) order) so that the arithmetic is one OpenBLAS sgemm against the (K, 3, 3, C) kernel.
 * The data gradient is gathered back (col2im) per input pixel rather than scattered, so every
 * element is written by one thread in a fixed order and the result does not depend on the thread
 * count. Images are processed one at a time to keep the column buffer at one image's size. */
#include <cblas.h>
#include <string.h>

#include "cpu.h"

/* col (h*w, 9*c) from x (h, w, c) with zero padding 1. */
static void im2col(float *col, const float *x, int h, int w, int c) {
    const size_t row = (size_t)9 * c;
#pragma omp parallel for schedule(static)
    for (int yy = 0; yy < h; yy++) {
        for (int xx = 0; xx < w; xx++) {
            float *dst = col + ((size_t)yy * w + xx) * row;
            for (int r = 0; r < 3; r++) {
                int iy = yy + r - 1;
                for (int s = 0; s < 3; s++) {
                    int ix = xx + s - 1;
                    float *d = dst + (size_t)(r * 3 + s) * c;
                    if (iy < 0 || iy >= h || ix < 0 || ix >= w)
                        memset(d, 0, (size_t)c * sizeof(float));
                    else
                        memcpy(d, x + ((size_t)iy * w + ix) * c, (size_t)c * sizeof(float));
                }
            }
        }
    }
}

/* dx (h, w, c) = sum of the column entries that read each input pixel. */
static void col2im(float *dx, const float *dcol, int h, int w, int c) {
    const size_t row = (size_t)9 * c;
#pragma omp parallel for schedule(static)
    for (int iy = 0; iy < h; iy++) {
        for (int ix = 0; ix < w; ix++) {
            float *d = dx + ((size_t)iy * w + ix) * c;
            memset(d, 0, (size_t)c * sizeof(float));
            for (int r = 0; r < 3; r++) {
                int yy = iy - r + 1;
                if (yy < 0 || yy >= h) continue;
                for (int s = 0; s < 3; s++) {
                    int xx = ix - s + 1;
                    if (xx < 0 || xx >= w) continue;
                    const float *src = dcol + ((size_t)yy * w + xx) * row + (size_t)(r * 3 + s) * c;
                    for (int ch = 0; ch < c; ch++) d[ch] += src[ch];
                }
            }
        }
    }
}

ct_status ct_cpu_conv3x3_forward(void *ctx, const ct_conv_args *a) {
    const int hw = a->h * a->w, kk = 9 * a->c;
    float *col = NULL;
    ct_status s = ct_cpu_workspace(ctx, (size_t)hw * kk, &col);
    if (s != CT_OK) return s;
    for (int i = 0; i < a->n; i++) {
        const float *x = a->x + (size_t)i * hw * a->c;
        float *y = a->y + (size_t)i * hw * a->k;
        im2col(col, x, a->h, a->w, a->c);
        /* y (hw, k) = col (hw, 9c) . wt^T, wt being (k, 9c) */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, hw, a->k, kk, 1.0f, col, kk, a->wt,
                    kk, 0.0f, y, a->k);
#pragma omp parallel for schedule(static)
        for (int p = 0; p < hw; p++) {
            float *yp = y + (size_t)p * a->k;
            for (int o = 0; o < a->k; o++) {
                float v = yp[o] + a->b[o];
                yp[o] = a->relu && v < 0.0f ? 0.0f : v;
            }
        }
    }
    return CT_OK;
}

ct_status ct_cpu_conv3x3_backward(void *ctx, const ct_conv_args *a, bool need_dgrad,
                                  bool need_wgrad) {
    const int hw = a->h * a->w, kk = 9 * a->c;
    const size_t col_floats = (size_t)hw * kk;
    if (a->relu) ct_cpu_relu_backward_inplace(a->dy, a->y, (size_t)a->n * hw * a->k);
    if (!need_dgrad && !need_wgrad) return CT_OK;

    float *ws = NULL;
    ct_status s = ct_cpu_workspace(ctx, col_floats * ((need_dgrad && need_wgrad) ? 2 : 1), &ws);
    if (s != CT_OK) return s;
    float *col = ws;
    float *dcol = need_wgrad ? ws + col_floats : ws;

    if (need_wgrad) memset(a->db, 0, (size_t)a->k * sizeof(float));
    for (int i = 0; i < a->n; i++) {
        const float *dz = a->dy + (size_t)i * hw * a->k;
        if (need_wgrad) {
            im2col(col, a->x + (size_t)i * hw * a->c, a->h, a->w, a->c);
            /* dw (k, 9c) += dz^T (k, hw) . col (hw, 9c) */
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, a->k, kk, hw, 1.0f, dz, a->k,
                        col, kk, i == 0 ? 0.0f : 1.0f, a->dw, kk);
            for (int p = 0; p < hw; p++) {
                const float *dzp = dz + (size_t)p * a->k;
                for (int o = 0; o < a->k; o++) a->db[o] += dzp[o];
            }
        }
        if (need_dgrad) {
            /* dcol (hw, 9c) = dz (hw, k) . wt (k, 9c) */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, hw, kk, a->k, 1.0f, dz, a->k,
                        a->wt, kk, 0.0f, dcol, kk);
            col2im(a->dx + (size_t)i * hw * a->c, dcol, a->h, a->w, a->c);
        }
    }
    return CT_OK;
}
