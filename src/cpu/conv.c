/* 3x3 stride-1 'same' convolution + bias + ReLU on the CPU, forward and backward.
 *
 * Each image is lowered to a column matrix (im2col: one row per output pixel, 9*C values in
 * (r, s, c) order) so that the arithmetic is one OpenBLAS sgemm against the (K, 3, 3, C) kernel.
 * The data gradient is gathered back (col2im) per input pixel rather than scattered, so every
 * element is written by one thread in a fixed order and the result does not depend on the thread
 * count. Images are processed one at a time to keep the column buffer at one image's size.
 *
 * bf16 activations are emulated: per image, the operands are widened to float32 (exact) and the
 * kernel rounded to bf16, the float32 path computes, and the results are rounded where cuDNN's
 * bf16 convolutions round (backend.h). Products of two bf16 values are exact in float32, so the
 * two backends differ only by summation order before each rounding. */
#include <cblas.h>
#include <stdlib.h>
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

static ct_status forward_f32(void *ctx, const ct_conv_args *a) {
    const int hw = a->h * a->w, kk = 9 * a->c;
    float *col = NULL;
    ct_status s = ct_cpu_workspace(ctx, (size_t)hw * kk, &col);
    if (s != CT_OK) return s;
    for (int i = 0; i < a->n; i++) {
        const float *x = (const float *)a->x + (size_t)i * hw * a->c;
        float *y = (float *)a->y + (size_t)i * hw * a->k;
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

static ct_status backward_f32(void *ctx, const ct_conv_args *a, bool need_dgrad,
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
        const float *dz = (const float *)a->dy + (size_t)i * hw * a->k;
        if (need_wgrad) {
            im2col(col, (const float *)a->x + (size_t)i * hw * a->c, a->h, a->w, a->c);
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
            col2im((float *)a->dx + (size_t)i * hw * a->c, dcol, a->h, a->w, a->c);
        }
    }
    return CT_OK;
}

static void round_bf16(float *dst, const float *src, size_t count) {
#pragma omp parallel for schedule(static) if (count > 65536)
    for (size_t i = 0; i < count; i++) dst[i] = ct_bf16_round(src[i]);
}

/* The float32 op's arguments for one image of a bf16 op: widened input x and kernel wt, the
 * activation left to the caller (it rounds before it). */
static ct_conv_args one_image_f32(const ct_conv_args *a, const float *x, const float *wt) {
    ct_conv_args f = *a;
    f.n = 1;
    f.act = CT_F32;
    f.x = x;
    f.wt = wt;
    f.relu = false;
    return f;
}

static ct_status forward_bf16(void *ctx, const ct_conv_args *a) {
    const size_t hw = (size_t)a->h * a->w, xs = hw * a->c, ys = hw * a->k;
    const size_t ks = (size_t)a->k * 9 * a->c;
    const size_t counts[4] = {xs, ks, ys, (size_t)a->k};
    float *t[4]; /* x, kernel, y, zero bias */
    ct_status s = ct_cpu_temp(4, counts, t);
    if (s != CT_OK) return s;
    round_bf16(t[1], a->wt, ks);
    memset(t[3], 0, (size_t)a->k * sizeof(float));
    for (int i = 0; i < a->n && s == CT_OK; i++) {
        ct_bf16_to_f32(t[0], (const ct_bf16 *)a->x + i * xs, xs);
        ct_conv_args f = one_image_f32(a, t[0], t[1]);
        f.b = t[3];
        f.y = t[2];
        if ((s = forward_f32(ctx, &f)) != CT_OK) break;
        ct_bf16 *y = (ct_bf16 *)a->y + i * ys;
#pragma omp parallel for schedule(static)
        for (size_t j = 0; j < ys; j++) {
            float v = ct_bf16_round(t[2][j]) + a->b[j % (size_t)a->k];
            y[j] = ct_bf16_from_float(a->relu && v < 0.0f ? 0.0f : v);
        }
    }
    for (int j = 0; j < 4; j++) free(t[j]);
    return s;
}

static ct_status backward_bf16(void *ctx, const ct_conv_args *a, bool need_dgrad,
                               bool need_wgrad) {
    const size_t hw = (size_t)a->h * a->w, xs = hw * a->c, ys = hw * a->k;
    const size_t ks = (size_t)a->k * 9 * a->c;
    const size_t counts[7] = {xs, ks, ys, ys, xs, ks, (size_t)a->k};
    float *t[7]; /* x, kernel, dy, y, dx, one image's dw, one image's db */
    ct_status s = ct_cpu_temp(7, counts, t);
    if (s != CT_OK) return s;
    if (need_dgrad) round_bf16(t[1], a->wt, ks);
    for (int i = 0; i < a->n && s == CT_OK; i++) {
        ct_bf16 *dy = (ct_bf16 *)a->dy + i * ys;
        ct_bf16_to_f32(t[2], dy, ys);
        if (a->relu) {
            ct_bf16_to_f32(t[3], (const ct_bf16 *)a->y + i * ys, ys);
            ct_cpu_relu_backward_inplace(t[2], t[3], ys);
            ct_f32_to_bf16(dy, t[2], ys); /* exact: kept or zeroed */
        }
        if (!need_dgrad && !need_wgrad) continue;
        if (need_wgrad) ct_bf16_to_f32(t[0], (const ct_bf16 *)a->x + i * xs, xs);
        ct_conv_args f = one_image_f32(a, t[0], t[1]);
        f.dy = t[2];
        f.dx = t[4];
        f.dw = i == 0 ? a->dw : t[5];
        f.db = i == 0 ? a->db : t[6];
        if ((s = backward_f32(ctx, &f, need_dgrad, need_wgrad)) != CT_OK) break;
        if (need_wgrad && i > 0) {
            for (size_t j = 0; j < ks; j++) a->dw[j] += t[5][j];
            for (int j = 0; j < a->k; j++) a->db[j] += t[6][j];
        }
        if (need_dgrad) ct_f32_to_bf16((ct_bf16 *)a->dx + i * xs, t[4], xs);
    }
    if (s == CT_OK && need_wgrad) round_bf16(a->dw, a->dw, ks);
    for (int j = 0; j < 7; j++) free(t[j]);
    return s;
}

/* float32 goes through oneDNN unless CUTUNE_CPU_KERNELS=reference (cpu.h); the emulated bf16
 * path keeps the reference arithmetic, whose rounding points it reproduces. */
ct_status ct_cpu_conv3x3_forward(void *ctx, const ct_conv_args *a) {
    ct_cpu_ctx *c = ctx;
    if (a->act == CT_BF16) return forward_bf16(ctx, a);
    return c->dnnl != NULL && a->n > 0 ? ct_cpu_dnnl_conv_forward(c, a) : forward_f32(ctx, a);
}

ct_status ct_cpu_conv3x3_backward(void *ctx, const ct_conv_args *a, bool need_dgrad,
                                  bool need_wgrad) {
    ct_cpu_ctx *c = ctx;
    if (a->act == CT_BF16) return backward_bf16(ctx, a, need_dgrad, need_wgrad);
    return c->dnnl != NULL && a->n > 0 ? ct_cpu_dnnl_conv_backward(c, a, need_dgrad, need_wgrad)
                           : backward_f32(ctx, a, need_dgrad, need_wgrad);
}
