/* bf16 precision on the CUDA backend: casts between the float32 tensors of the op interface and
 * bfloat16 copies that cuDNN's tensor cores read and write.
 *
 * With CUTUNE_PRECISION=bf16 the convolutions run as PyTorch's autocast runs them: the input
 * and the kernel are rounded to bfloat16 (round to nearest even), cuDNN multiplies on bf16
 * tensor cores and accumulates in float32, and the bf16 result is widened back; the activations
 * kept for backward, the gradients the optimizer reads and the master weights stay float32.
 * Bias and ReLU are added in float32 while widening the output, in the same pass. The copies
 * live in one grow-only cast buffer (backend.cu), separate from the algorithms' workspace. */
#include <cuda_bf16.h>

#include "context.h"

#define THREADS 256

__global__ void to_bf16_kernel(__nv_bfloat16 *dst, const float *src, size_t count) {
    size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < count; i += stride)
        dst[i] = __float2bfloat16_rn(src[i]);
}

__global__ void from_bf16_kernel(float *dst, const __nv_bfloat16 *src, size_t count) {
    size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < count; i += stride)
        dst[i] = __bfloat162float(src[i]);
}

/* y = act(float(yh) + b[col]); the ReLU is (v < 0 ? 0 : v), which keeps NaN as the CPU does. */
__global__ void bias_act_bf16_kernel(float *y, const __nv_bfloat16 *yh, const float *b,
                                     size_t count, unsigned cols, bool relu) {
    size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < count; i += stride) {
        float v = __bfloat162float(yh[i]) + b[i % cols];
        y[i] = relu && v < 0.0f ? 0.0f : v;
    }
}

ct_status ct_cu_to_bf16(ct_cu_ctx *ctx, __nv_bfloat16 *dst, const float *src, size_t count) {
    if (count == 0) return CT_OK;
    to_bf16_kernel<<<ct_cu_grid(ctx, count, THREADS), THREADS, 0, ctx->stream>>>(dst, src, count);
    CT_CU_CHECK_LAUNCH();
    return CT_OK;
}

ct_status ct_cu_from_bf16(ct_cu_ctx *ctx, float *dst, const __nv_bfloat16 *src, size_t count) {
    if (count == 0) return CT_OK;
    from_bf16_kernel<<<ct_cu_grid(ctx, count, THREADS), THREADS, 0, ctx->stream>>>(dst, src,
                                                                                  count);
    CT_CU_CHECK_LAUNCH();
    return CT_OK;
}

ct_status ct_cu_bias_act_bf16(ct_cu_ctx *ctx, float *y, const __nv_bfloat16 *yh, const float *b,
                              size_t rows, int cols, bool relu) {
    size_t count = rows * (size_t)cols;
    if (count == 0) return CT_OK;
    bias_act_bf16_kernel<<<ct_cu_grid(ctx, count, THREADS), THREADS, 0, ctx->stream>>>(
        y, yh, b, count, (unsigned)cols, relu);
    CT_CU_CHECK_LAUNCH();
    return CT_OK;
}
