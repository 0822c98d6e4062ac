/* Dense layers on the CPU: y = act(x . w + b) with x (n, in) and w (in, out) in Keras's layout,
 * one OpenBLAS sgemm per product. */
#include <cblas.h>
#include <string.h>

#include "cpu.h"

void ct_cpu_relu_backward_inplace(float *dy, const float *y, size_t count) {
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < count; i++)
        if (!(y[i] > 0.0f)) dy[i] = 0.0f;
}

ct_status ct_cpu_dense_forward(void *ctx, const ct_dense_args *a) {
    (void)ctx;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, a->n, a->out, a->in, 1.0f, a->x, a->in,
                a->wt, a->out, 0.0f, a->y, a->out);
    for (int i = 0; i < a->n; i++) {
        float *yi = a->y + (size_t)i * a->out;
        for (int o = 0; o < a->out; o++) {
            float v = yi[o] + a->b[o];
            yi[o] = a->relu && v < 0.0f ? 0.0f : v;
        }
    }
    return CT_OK;
}

ct_status ct_cpu_dense_backward(void *ctx, const ct_dense_args *a, bool need_dgrad,
                                bool need_wgrad) {
    (void)ctx;
    if (a->relu) ct_cpu_relu_backward_inplace(a->dy, a->y, (size_t)a->n * a->out);
    if (need_wgrad) {
        /* dw (in, out) = x^T (in, n) . dz (n, out) */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, a->in, a->out, a->n, 1.0f, a->x,
                    a->in, a->dy, a->out, 0.0f, a->dw, a->out);
        memset(a->db, 0, (size_t)a->out * sizeof(float));
        for (int i = 0; i < a->n; i++)
            for (int o = 0; o < a->out; o++) a->db[o] += a->dy[(size_t)i * a->out + o];
    }
    if (need_dgrad) {
        /* dx (n, in) = dz (n, out) . w^T (out, in) */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, a->n, a->in, a->out, 1.0f, a->dy,
                    a->out, a->wt, a->out, 0.0f, a->dx, a->in);
    }
    return CT_OK;
}
