/* Dense (fully connected) layers on the CUDA backend: cuBLAS sgemm plus the shared bias, ReLU
 * and bias-gradient kernels of elementwise.cu.
 *
 * The op interface stores matrices row-major, as Keras does: x (n, in), w (in, out), y (n, out).
 * cuBLAS is column-major, and a row-major (r, c) matrix read column-major is its transpose
 * (c, r). So every product is computed transposed, which swaps the operand order:
 *
 *   y  = x · w     is   yᵀ  = wᵀ · xᵀ      gemm(N, N, m = out, n = n,   k = in)
 *   dx = dz · wᵀ   is   dxᵀ = w  · dzᵀ     gemm(T, N, m = in,  n = n,   k = out)
 *   dw = xᵀ · dz   is   dwᵀ = dzᵀ · x      gemm(N, T, m = out, n = in,  k = n)
 *
 * and no matrix is ever copied or transposed in memory. The math mode set on the handle at init
 * (backend.cu) decides whether these run on TF32 tensor cores. The dense layers of the heads
 * this tool builds are small next to the convolutions, so a fused cuBLASLt epilogue (bias +
 * ReLU in the GEMM) would save little; the separate epilogue kernel keeps the code plain. */
#include "context.h"

static ct_status dense_args_ok(const char *what, const ct_dense_args *a) {
    if (!a || a->n < 0 || a->in < 0 || a->out < 0) {
        return ct_error(CT_EINVAL, "cuda %s: bad arguments (n %d, in %d, out %d)", what,
                        a ? a->n : -1, a ? a->in : -1, a ? a->out : -1);
    }
    return CT_OK;
}

ct_status ct_cu_dense_forward(void *p, const ct_dense_args *a) {
    ct_cu_ctx *ctx = (ct_cu_ctx *)p;
    ct_status st = dense_args_ok("dense_forward", a);
    if (st != CT_OK) return st;
    if (a->n == 0 || a->out == 0) return CT_OK;
    if ((st = ct_cu_enter(ctx)) != CT_OK) return st;
    const float one = 1.0f, zero = 0.0f;
    if (a->in == 0) {
        /* An empty product is zero; cuBLAS rejects k = 0 with lda = 0 on some versions. */
        CT_CU_CHECK(cudaMemsetAsync(a->y, 0, (size_t)a->n * a->out * sizeof(float),
                                    ctx->stream));
    } else {
        CT_CU_CHECK(cublasSgemm(ctx->cublas, CUBLAS_OP_N, CUBLAS_OP_N, a->out, a->n, a->in, &one,
                                a->wt, a->out, a->x, a->in, &zero, a->y, a->out));
    }
    return ct_cu_bias_act(ctx, a->y, a->b, (size_t)a->n, a->out, a->relu);
}

ct_status ct_cu_dense_backward(void *p, const ct_dense_args *a, bool need_dgrad,
                               bool need_wgrad) {
    ct_cu_ctx *ctx = (ct_cu_ctx *)p;
    ct_status st = dense_args_ok("dense_backward", a);
    if (st != CT_OK) return st;
    if ((st = ct_cu_enter(ctx)) != CT_OK) return st;
    size_t rows = (size_t)a->n;

    /* dz = dy masked by the ReLU, in place; the bias gradient reads dz in the same pass. */
    if (need_wgrad) {
        st = ct_cu_bias_grad(ctx, CT_F32, a->db, a->dy, a->relu ? a->y : NULL, rows, a->out);
    } else if (a->relu) {
        st = ct_cu_relu_mask(ctx, CT_F32, a->dy, a->y, rows * (size_t)a->out);
    }
    if (st != CT_OK) return st;

    const float one = 1.0f, zero = 0.0f;
    if (need_dgrad && a->n > 0 && a->in > 0) {
        if (a->out == 0) {
            CT_CU_CHECK(cudaMemsetAsync(a->dx, 0, rows * a->in * sizeof(float), ctx->stream));
        } else {
            CT_CU_CHECK(cublasSgemm(ctx->cublas, CUBLAS_OP_T, CUBLAS_OP_N, a->in, a->n, a->out,
                                    &one, a->wt, a->out, a->dy, a->out, &zero, a->dx, a->in));
        }
    }
    if (need_wgrad && a->in > 0 && a->out > 0) {
        if (a->n == 0) {
            /* No samples: the gradient is written as zeros, never left stale. */
            CT_CU_CHECK(cudaMemsetAsync(a->dw, 0, (size_t)a->in * a->out * sizeof(float),
                                        ctx->stream));
        } else {
            CT_CU_CHECK(cublasSgemm(ctx->cublas, CUBLAS_OP_N, CUBLAS_OP_T, a->out, a->in, a->n,
                                    &one, a->dy, a->out, a->x, a->in, &zero, a->dw, a->out));
        }
    }
    return CT_OK;
}
