/* Pooling kernels of the CUDA backend: 2x2 stride-2 max pooling and global average / max
 * pooling, forward and backward, on NHWC tensors.
 *
 * These are written by hand rather than with cudnnPoolingForward/Backward because the op
 * interface fixes details cuDNN leaves open: with ties, the whole gradient goes to the first
 * maximum in row-major window order; odd sizes drop the last row or column ('valid', floor);
 * and backward writes every element of dx, zeros included, so dx needs no memset first. The
 * kernels are memory-bound, one pass each, with the channel as the fastest index so that a warp
 * reads 32 consecutive floats. Backward recomputes the argmax from x, which is what the tie
 * rule needs; y is accepted for interface symmetry and not read. */
#include <float.h>
#include <stdint.h>

#include "context.h"

#define THREADS 256

/* ---- 2x2 / 2 max pooling ---------------------------------------------------------------- */

/* Index of the first maximum of (v0, v1, v2, v3) in that order: a later value wins only when it
 * is strictly greater. */
__host__ __device__ __forceinline__ int first_max4(float v0, float v1, float v2, float v3,
                                                   float *best) {
    int arg = 0;
    float m = v0;
    if (v1 > m) { m = v1; arg = 1; }
    if (v2 > m) { m = v2; arg = 2; }
    if (v3 > m) { m = v3; arg = 3; }
    *best = m;
    return arg;
}

/* One thread per output element (b, oh, ow, ch). T: float or bf16 (compared as floats, stored
 * back exactly: the maximum is one of the inputs). I is the index type: 32-bit when the input
 * has fewer than 2^31 elements, because 64-bit division and modulo (six per element here) are
 * emulated in software and would make this memory-bound kernel compute-bound. */
template <typename T, typename I>
__global__ void maxpool_forward_kernel(T *y, const T *x, I n, I h, I w, I c, I ho, I wo) {
    I total = n * ho * wo * c;
    I stride = (I)gridDim.x * blockDim.x;
    I row = w * c;
    for (I i = (I)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += stride) {
        I ch = i % c, t = i / c;
        I ow = t % wo;
        t /= wo;
        I oh = t % ho, b = t / ho;
        const T *p = x + ((b * h + 2 * oh) * w + 2 * ow) * c + ch;
        float best;
        first_max4(ct_cu_ld(p), ct_cu_ld(p + c), ct_cu_ld(p + row), ct_cu_ld(p + row + c),
                   &best);
        ct_cu_st(&y[i], best);
    }
}

/* One thread per output element: it writes its whole 2x2 window of dx, and the threads of the
 * last output row / column also zero the row / column that the floor dropped. */
template <typename T, typename I>
__global__ void maxpool_backward_kernel(T *dx, const T *dy, const T *x, I n, I h, I w, I c, I ho,
                                        I wo) {
    I total = n * ho * wo * c;
    I stride = (I)gridDim.x * blockDim.x;
    I row = w * c;
    bool odd_h = (h & 1) != 0, odd_w = (w & 1) != 0;
    for (I i = (I)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += stride) {
        I ch = i % c, t = i / c;
        I ow = t % wo;
        t /= wo;
        I oh = t % ho, b = t / ho;
        I base = ((b * h + 2 * oh) * w + 2 * ow) * c + ch;
        const T *p = x + base;
        float best;
        int arg = first_max4(ct_cu_ld(p), ct_cu_ld(p + c), ct_cu_ld(p + row),
                             ct_cu_ld(p + row + c), &best);
        float g = ct_cu_ld(&dy[i]);
        T *q = dx + base;
        ct_cu_st(q, arg == 0 ? g : 0.0f);
        ct_cu_st(q + c, arg == 1 ? g : 0.0f);
        ct_cu_st(q + row, arg == 2 ? g : 0.0f);
        ct_cu_st(q + row + c, arg == 3 ? g : 0.0f);
        bool last_h = odd_h && oh == ho - 1, last_w = odd_w && ow == wo - 1;
        if (last_h) { /* row h - 1 under this window */
            ct_cu_st(q + 2 * row, 0.0f);
            ct_cu_st(q + 2 * row + c, 0.0f);
        }
        if (last_w) { /* column w - 1 beside this window */
            ct_cu_st(q + 2 * c, 0.0f);
            ct_cu_st(q + row + 2 * c, 0.0f);
        }
        if (last_h && last_w) ct_cu_st(q + 2 * row + 2 * c, 0.0f); /* the corner */
    }
}

static ct_status pool_args(const char *what, int n, int h, int w, int c) {
    if (n < 0 || h < 0 || w < 0 || c < 0) {
        return ct_error(CT_EINVAL, "cuda %s: bad shape (%d, %d, %d, %d)", what, n, h, w, c);
    }
    return CT_OK;
}

template <typename T>
static void maxpool_forward_launch(ct_cu_ctx *ctx, void *y, const void *x, int n, int h, int w,
                                   int c) {
    int ho = h / 2, wo = w / 2;
    unsigned grid = ct_cu_grid(ctx, (size_t)n * ho * wo * c, THREADS);
    if (ct_cu_fits_32((size_t)n * h * w * c))
        maxpool_forward_kernel<T, uint32_t><<<grid, THREADS, 0, ctx->stream>>>(
            (T *)y, (const T *)x, n, h, w, c, ho, wo);
    else
        maxpool_forward_kernel<T, size_t><<<grid, THREADS, 0, ctx->stream>>>(
            (T *)y, (const T *)x, n, h, w, c, ho, wo);
}

template <typename T>
static void maxpool_backward_launch(ct_cu_ctx *ctx, void *dx, const void *dy, const void *x,
                                    int n, int h, int w, int c) {
    int ho = h / 2, wo = w / 2;
    unsigned grid = ct_cu_grid(ctx, (size_t)n * ho * wo * c, THREADS);
    if (ct_cu_fits_32((size_t)n * h * w * c))
        maxpool_backward_kernel<T, uint32_t><<<grid, THREADS, 0, ctx->stream>>>(
            (T *)dx, (const T *)dy, (const T *)x, n, h, w, c, ho, wo);
    else
        maxpool_backward_kernel<T, size_t><<<grid, THREADS, 0, ctx->stream>>>(
            (T *)dx, (const T *)dy, (const T *)x, n, h, w, c, ho, wo);
}

ct_status ct_cu_maxpool_forward(void *p, ct_dtype dt, void *y, const void *x, int n, int h, int w,
                                int c) {
    ct_cu_ctx *ctx = (ct_cu_ctx *)p;
    ct_status st = pool_args("maxpool_forward", n, h, w, c);
    if (st != CT_OK) return st;
    size_t total = (size_t)n * (h / 2) * (w / 2) * c;
    if (total == 0) return CT_OK;
    if ((st = ct_cu_enter(ctx)) != CT_OK) return st;
    if (dt == CT_BF16)
        maxpool_forward_launch<__nv_bfloat16>(ctx, y, x, n, h, w, c);
    else
        maxpool_forward_launch<float>(ctx, y, x, n, h, w, c);
    CT_CU_CHECK_LAUNCH();
    return CT_OK;
}

ct_status ct_cu_maxpool_backward(void *p, ct_dtype dt, void *dx, const void *dy, const void *x,
                                 const void *y, int n, int h, int w, int c) {
    ct_cu_ctx *ctx = (ct_cu_ctx *)p;
    (void)y; /* see the file comment: the argmax is recomputed from x */
    ct_status st = pool_args("maxpool_backward", n, h, w, c);
    if (st != CT_OK) return st;
    size_t in_total = (size_t)n * h * w * c;
    if (in_total == 0) return CT_OK;
    if ((st = ct_cu_enter(ctx)) != CT_OK) return st;
    size_t total = (size_t)n * (h / 2) * (w / 2) * c;
    if (total == 0) {
        /* A 1-pixel-high or -wide input has no window at all: no element gets a gradient. */
        CT_CU_CHECK(cudaMemsetAsync(dx, 0, in_total * ct_dtype_size(dt), ctx->stream));
        return CT_OK;
    }
    if (dt == CT_BF16)
        maxpool_backward_launch<__nv_bfloat16>(ctx, dx, dy, x, n, h, w, c);
    else
        maxpool_backward_launch<float>(ctx, dx, dy, x, n, h, w, c);
    CT_CU_CHECK_LAUNCH();
    return CT_OK;
}

/* ---- global pooling -------------------------------------------------------------------- */

/* One thread per (b, ch), scanning the h * w positions in order. As on the CPU, the maximum
 * starts from -FLT_MAX and the average is a sum in scan order divided by h * w, so both agree
 * bit for bit with it. */
__global__ void global_pool_forward_kernel(float *y, const float *x, int n, int hw, int c,
                                           bool is_max) {
    size_t total = (size_t)n * c;
    size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += stride) {
        size_t ch = i % c, b = i / c;
        const float *p = x + b * (size_t)hw * c + ch;
        float acc = is_max ? -FLT_MAX : 0.0f;
        for (int s = 0; s < hw; s++) {
            float v = p[(size_t)s * c];
            if (is_max) {
                if (v > acc) acc = v;
            } else {
                acc += v;
            }
        }
        y[i] = is_max ? acc : acc / (float)hw;
    }
}

/* Average: every position gets dy / (h * w); one thread per element of dx. */
__global__ void global_avg_backward_kernel(float *dx, const float *dy, int n, int hw, int c) {
    size_t total = (size_t)n * hw * c;
    size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += stride) {
        size_t ch = i % c, b = i / ((size_t)hw * c);
        dx[i] = dy[b * c + ch] / (float)hw;
    }
}

/* Max: the gradient goes to the first position in (h, w) scan order that holds the maximum,
 * zeros elsewhere; one thread per (b, ch) finds the maximum as forward does, then writes its
 * whole column of dx. */
__global__ void global_max_backward_kernel(float *dx, const float *dy, const float *x, int n,
                                           int hw, int c) {
    size_t total = (size_t)n * c;
    size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += stride) {
        size_t ch = i % c, b = i / c;
        size_t base = b * (size_t)hw * c + ch;
        const float *p = x + base;
        float best = -FLT_MAX;
        for (int s = 0; s < hw; s++) {
            float v = p[(size_t)s * c];
            if (v > best) best = v;
        }
        float g = dy[i];
        float *q = dx + base;
        bool given = false;
        for (int s = 0; s < hw; s++) {
            bool here = !given && p[(size_t)s * c] == best;
            q[(size_t)s * c] = here ? g : 0.0f;
            given = given || here;
        }
    }
}

ct_status ct_cu_global_pool_forward(void *p, ct_global_pool kind, float *y, const float *x,
                                    int n, int h, int w, int c) {
    ct_cu_ctx *ctx = (ct_cu_ctx *)p;
    ct_status st = pool_args("global_pool_forward", n, h, w, c);
    if (st != CT_OK) return st;
    if (h * w == 0 && (size_t)n * c > 0) {
        return ct_error(CT_EINVAL, "cuda global_pool_forward: empty image (%d x %d)", h, w);
    }
    size_t total = (size_t)n * c;
    if (total == 0) return CT_OK;
    if ((st = ct_cu_enter(ctx)) != CT_OK) return st;
    global_pool_forward_kernel<<<ct_cu_grid(ctx, total, THREADS), THREADS, 0, ctx->stream>>>(
        y, x, n, h * w, c, kind == CT_GLOBAL_MAX);
    CT_CU_CHECK_LAUNCH();
    return CT_OK;
}

ct_status ct_cu_global_pool_backward(void *p, ct_global_pool kind, float *dx, const float *dy,
                                     const float *x, const float *y, int n, int h, int w,
                                     int c) {
    ct_cu_ctx *ctx = (ct_cu_ctx *)p;
    (void)y; /* the max position is recomputed from x, as the tie rule needs */
    ct_status st = pool_args("global_pool_backward", n, h, w, c);
    if (st != CT_OK) return st;
    size_t total = (size_t)n * h * w * c;
    if (total == 0) return CT_OK;
    if ((st = ct_cu_enter(ctx)) != CT_OK) return st;
    if (kind == CT_GLOBAL_MAX) {
        size_t cols = (size_t)n * c;
        global_max_backward_kernel<<<ct_cu_grid(ctx, cols, THREADS), THREADS, 0, ctx->stream>>>(
            dx, dy, x, n, h * w, c);
    } else {
        global_avg_backward_kernel<<<ct_cu_grid(ctx, total, THREADS), THREADS, 0, ctx->stream>>>(
            dx, dy, n, h * w, c);
    }
    CT_CU_CHECK_LAUNCH();
    return CT_OK;
}
