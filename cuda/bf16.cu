/* bf16 on the CUDA backend: the cast op between float32 and bfloat16 tensors, and the bias +
 * ReLU epilogue of bf16 convolutions.
 *
 * At bf16 precision the model keeps the backbone's activations and their gradients in bf16
 * (model.c), and the convolutions read and write them directly (conv.cu): cuDNN multiplies on
 * bf16 tensor cores with float32 accumulation and rounds its sum to bf16, then the epilogue here
 * adds the float32 bias, applies the ReLU and rounds again, in place. The kernels' per-element
 * functions are __host__ __device__, so tests/test_bf16_emulated.cu runs them on the host
 * against the CPU backend's emulation. */
#include <stdint.h>

#include <cuda_bf16.h>

#include "context.h"

#define THREADS 256

/* ---- per-element functions (host and device) --------------------------------------------- */

/* rn(act(float(yh) + b)); the ReLU is (v < 0 ? 0 : v), which keeps NaN as the CPU does. */
__host__ __device__ __forceinline__ __nv_bfloat16 bf16_bias_act(__nv_bfloat16 yh, float b,
                                                               bool relu) {
    float v = __bfloat162float(yh) + b;
    return __float2bfloat16_rn(relu && v < 0.0f ? 0.0f : v);
}

/* ---- kernels ------------------------------------------------------------------------------ */

static __global__ void to_bf16_kernel(__nv_bfloat16 *dst, const float *src, size_t count) {
    size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < count; i += stride)
        dst[i] = __float2bfloat16_rn(src[i]);
}

static __global__ void from_bf16_kernel(float *dst, const __nv_bfloat16 *src, size_t count) {
    size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < count; i += stride)
        dst[i] = __bfloat162float(src[i]);
}

/* In place over (count / cols, cols). I: the index type (ct_cu_fits_32). */
template <typename I>
__global__ void bias_act_bf16_kernel(__nv_bfloat16 *y, const float *b, I count, I cols,
                                     bool relu) {
    I stride = (I)gridDim.x * blockDim.x;
    for (I i = (I)blockIdx.x * blockDim.x + threadIdx.x; i < count; i += stride)
        y[i] = bf16_bias_act(y[i], b[i % cols], relu);
}

/* The same two channels at a time (cols even, y 4-byte aligned): pairs never straddle rows. */
template <typename I>
__global__ void bias_act_bf16x2_kernel(__nv_bfloat162 *y, const float2 *b, I count2, I cols2,
                                       bool relu) {
    I stride = (I)gridDim.x * blockDim.x;
    for (I i = (I)blockIdx.x * blockDim.x + threadIdx.x; i < count2; i += stride) {
        __nv_bfloat162 v = y[i];
        float2 c = b[i % cols2];
        v.x = bf16_bias_act(v.x, c.x, relu);
        v.y = bf16_bias_act(v.y, c.y, relu);
        y[i] = v;
    }
}

/* ---- entry points ------------------------------------------------------------------------- */

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

ct_status ct_cu_cast(void *c, void *dst, ct_dtype dst_type, const void *src, ct_dtype src_type,
                     size_t count) {
    ct_cu_ctx *ctx = (ct_cu_ctx *)c;
    if (count == 0) return CT_OK;
    if (!dst || !src) return ct_error(CT_EINVAL, "cuda cast: NULL buffer");
    ct_status st = ct_cu_enter(ctx);
    if (st != CT_OK) return st;
    if (dst_type == src_type) {
        CT_CU_CHECK(cudaMemcpyAsync(dst, src, count * ct_dtype_size(dst_type),
                                    cudaMemcpyDeviceToDevice, ctx->stream));
        return CT_OK;
    }
    if (dst_type == CT_BF16) return ct_cu_to_bf16(ctx, (__nv_bfloat16 *)dst, (const float *)src,
                                                  count);
    return ct_cu_from_bf16(ctx, (float *)dst, (const __nv_bfloat16 *)src, count);
}

ct_status ct_cu_bias_act_bf16(ct_cu_ctx *ctx, __nv_bfloat16 *y, const float *b, size_t rows,
                              int cols, bool relu) {
    size_t count = rows * (size_t)cols;
    if (count == 0) return CT_OK;
    const bool narrow = ct_cu_fits_32(count);
    if (cols % 2 == 0 && ((uintptr_t)y & 3u) == 0 && ((uintptr_t)b & 7u) == 0) {
        size_t count2 = count / 2;
        unsigned grid = ct_cu_grid(ctx, count2, THREADS);
        if (narrow)
            bias_act_bf16x2_kernel<uint32_t><<<grid, THREADS, 0, ctx->stream>>>(
                (__nv_bfloat162 *)y, (const float2 *)b, (uint32_t)count2, (uint32_t)cols / 2,
                relu);
        else
            bias_act_bf16x2_kernel<size_t><<<grid, THREADS, 0, ctx->stream>>>(
                (__nv_bfloat162 *)y, (const float2 *)b, count2, (size_t)cols / 2, relu);
    } else {
        unsigned grid = ct_cu_grid(ctx, count, THREADS);
        if (narrow)
            bias_act_bf16_kernel<uint32_t><<<grid, THREADS, 0, ctx->stream>>>(
                y, b, (uint32_t)count, (uint32_t)cols, relu);
        else
            bias_act_bf16_kernel<size_t><<<grid, THREADS, 0, ctx->stream>>>(y, b, count,
                                                                           (size_t)cols, relu);
    }
    CT_CU_CHECK_LAUNCH();
    return CT_OK;
}
