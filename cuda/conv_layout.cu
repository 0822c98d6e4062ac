/* The CUDA convolutions' layout changes (conv_internal.h).
 *
 * Channel padding: a narrow input (VGG's 3-channel first layer) is copied, with its kernel,
 * into zero-padded channels (4 for TF32 tensor cores, 8 for bf16), and the gradients are cut
 * back. Zero channels add nothing to the sums, so both ways compute the same function up to
 * summation order.
 *
 * The route through NCHW (fp32): for float32 tensors in NHWC, cuDNN's legacy API offers only
 * its implicit-GEMM algorithms; FFT and Winograd, which do fewer multiplications than the
 * direct 3x3 sum and are what PyTorch's fp32 convolutions reach, need NCHW. So an fp32 plan
 * also times, once per direction, the same convolution in NCHW: its inputs transposed into the
 * layout scratch buffer (cudnnTransformTensor), an NCHW twin plan searched like any other, and
 * the output transposed back, the transposes counted in the time. CUTUNE_CONV_LAYOUT=nchw|nhwc
 * forces the route for every float32 plan (tests). */
#include <stdio.h>

#include "conv_internal.h"

/* A direction whose route is NCHW keeps its alt algorithm's workspace (see search_algorithm). */
static void alt_ws_taken(ct_cu_ctx *ctx, int route, size_t ws) {
    if (route == 1 && ws > ctx->ws_high) ctx->ws_high = ws;
}

/* dst (described by `to`) = src (described by `from`): the same values in another layout. */
static ct_status transpose(ct_cu_ctx *ctx, cudnnTensorDescriptor_t from, const void *src,
                           cudnnTensorDescriptor_t to, void *dst) {
    const float one = 1.0f, zero = 0.0f;
    CT_CU_CHECK(cudnnTransformTensor(ctx->cudnn, &one, from, src, &zero, to, dst));
    return CT_OK;
}

static ct_status layout_arrays(ct_cu_ctx *ctx, int count, const size_t *len, float **out) {
    void *p[8];
    ct_status st =
        ct_cu_conv_scratch_arrays(ctx, CT_CU_SCRATCH_LAYOUT, sizeof(float), count, len, p);
    for (int i = 0; st == CT_OK && i < count; i++) out[i] = (float *)p[i];
    ctx->layout_last = 0;
    for (int i = 0; i < count; i++) ctx->layout_last += (len[i] * sizeof(float) + 255) / 256 * 256;
    return st;
}

/* After a route decision: the layout scratch keeps what the directions that chose NCHW need
 * (`need`: this one's, 0 when it chose NHWC). Timing the NCHW way of a large shape that then
 * lost must not leave gigabytes held; the next NCHW call grows the buffer again as far as it
 * needs. */
ct_status ct_cu_conv_layout_done(ct_cu_ctx *ctx, size_t need) {
    if (need > ctx->layout_high) ctx->layout_high = need;
    if (ctx->scratch_bytes[CT_CU_SCRATCH_LAYOUT] > ctx->layout_high + ((size_t)64 << 20))
        return ct_cu_scratch_release(ctx, CT_CU_SCRATCH_LAYOUT);
    return CT_OK;
}

/* Whether plan p times the NCHW route (see "Layout route"); CUTUNE_CONV_LAYOUT=nchw|nhwc
 * forces it either way for any float32 plan. Read when a direction is decided. */
int ct_cu_conv_route_policy(const ct_cu_ctx *ctx, const ct_cu_conv_plan *p) {
    if (p->bf16 || p->nchw) return 0;
    const int force = ct_knob_conv_layout();
    if (force >= 0) return force;
    return ctx->precision == CT_CU_FP32 && !ctx->deterministic ? -1 : 0; /* -1: time both */
}

/* The NCHW twin of p and three float32 arrays of the layout scratch buffer for one direction. */
static ct_status nchw_begin(ct_cu_ctx *ctx, ct_cu_conv_plan *p, const size_t len[3],
                            ct_cu_conv_plan **q, float **buf) {
    ct_status st = ct_cu_conv_plan_alt(ctx, p, q);
    return st != CT_OK ? st : layout_arrays(ctx, 3, len, buf);
}

/* The forward of a float32 plan through NCHW: x and the kernel transposed in, the convolution
 * in NCHW, y transposed out, then bias and ReLU in the epilogue. */
ct_status ct_cu_conv_forward_nchw(ct_cu_ctx *ctx, ct_cu_conv_plan *p, const ct_conv_args *a) {
    ct_cu_conv_plan *q = NULL;
    ct_status st;
    const size_t hw = (size_t)a->n * a->h * a->w;
    const size_t len[3] = {hw * (size_t)a->c, (size_t)a->k * 9 * a->c, hw * (size_t)a->k};
    float *buf[3]; /* x, kernel, y */
    if ((st = nchw_begin(ctx, p, len, &q, buf)) != CT_OK ||
        (st = transpose(ctx, p->x_desc, a->x, q->x_desc, buf[0])) != CT_OK ||
        (st = transpose(ctx, q->krsc_desc, a->wt, q->kcrs_desc, buf[1])) != CT_OK)
        return st;
    if (!q->fwd_ready && (st = ct_cu_conv_tune_forward(ctx, q, buf[0], buf[1], buf[2])) != CT_OK)
        return st;
    alt_ws_taken(ctx, p->fwd_route, q->fwd_ws);
    void *ws = NULL;
    if ((st = ct_cu_workspace(ctx, q->fwd_ws, &ws)) != CT_OK) return st;
    const float one = 1.0f, zero = 0.0f;
    CT_CU_CHECK(cudnnSetConvolutionMathType(q->conv_desc, q->fwd_math));
    CT_CU_CHECK(cudnnConvolutionForward(ctx->cudnn, &one, q->x_desc, buf[0], q->w_desc, buf[1],
                                        q->conv_desc, q->fwd_algo, ws, q->fwd_ws, &zero, q->y_desc,
                                        buf[2]));
    if ((st = transpose(ctx, q->y_desc, buf[2], p->y_desc, a->y)) != CT_OK) return st;
    return ct_cu_bias_act(ctx, (float *)a->y, a->b, hw, a->k, a->relu);
}

/* Backward data through NCHW: dy and the kernel transposed in, dx transposed out. */
ct_status ct_cu_conv_backward_data_nchw(ct_cu_ctx *ctx, ct_cu_conv_plan *p, const ct_conv_args *a) {
    ct_cu_conv_plan *q = NULL;
    ct_status st;
    const size_t hw = (size_t)a->n * a->h * a->w;
    const size_t len[3] = {hw * (size_t)a->k, (size_t)a->k * 9 * a->c, hw * (size_t)a->c};
    float *buf[3]; /* dy, kernel, dx */
    if ((st = nchw_begin(ctx, p, len, &q, buf)) != CT_OK ||
        (st = transpose(ctx, p->y_desc, a->dy, q->y_desc, buf[0])) != CT_OK ||
        (st = transpose(ctx, q->krsc_desc, a->wt, q->kcrs_desc, buf[1])) != CT_OK ||
        (st = ct_cu_conv_run_backward_data(ctx, q, buf[1], buf[0], buf[2])) != CT_OK)
        return st;
    alt_ws_taken(ctx, p->bwd_data_route, q->bwd_data_ws);
    return transpose(ctx, q->x_desc, buf[2], p->x_desc, a->dx);
}

/* Backward filter through NCHW: x and dy transposed in, the kernel gradient transposed out. */
ct_status ct_cu_conv_backward_filter_nchw(ct_cu_ctx *ctx, ct_cu_conv_plan *p,
                                          const ct_conv_args *a) {
    ct_cu_conv_plan *q = NULL;
    ct_status st;
    const size_t hw = (size_t)a->n * a->h * a->w;
    const size_t len[3] = {hw * (size_t)a->c, hw * (size_t)a->k, (size_t)a->k * 9 * a->c};
    float *buf[3]; /* x, dy, dkernel */
    if ((st = nchw_begin(ctx, p, len, &q, buf)) != CT_OK ||
        (st = transpose(ctx, p->x_desc, a->x, q->x_desc, buf[0])) != CT_OK ||
        (st = transpose(ctx, p->y_desc, a->dy, q->y_desc, buf[1])) != CT_OK ||
        (st = ct_cu_conv_run_backward_filter(ctx, q, buf[0], buf[1], buf[2])) != CT_OK)
        return st;
    alt_ws_taken(ctx, p->bwd_filter_route, q->bwd_filter_ws);
    return transpose(ctx, q->kcrs_desc, buf[2], q->krsc_desc, a->dw);
}

/* dst (rows, cp) = src (rows, c) followed by zeros (the element types of both sides: float32
 * or bf16). */
template <typename Tout, typename Tin>
__global__ void pad_channels_kernel(Tout *dst, const Tin *src, size_t rows, int c, int cp) {
    size_t count = rows * (size_t)cp, stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < count; i += stride) {
        size_t r = i / (size_t)cp;
        int j = (int)(i - r * (size_t)cp);
        ct_cu_st(&dst[i], j < c ? ct_cu_ld(&src[r * (size_t)c + (size_t)j]) : 0.0f);
    }
}

/* dst (rows, c) = the first c columns of src (rows, cp). */
template <typename Tout, typename Tin>
__global__ void unpad_channels_kernel(Tout *dst, const Tin *src, size_t rows, int c, int cp) {
    size_t count = rows * (size_t)c, stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < count; i += stride) {
        size_t r = i / (size_t)c;
        ct_cu_st(&dst[i], ct_cu_ld(&src[r * (size_t)cp + (i - r * (size_t)c)]));
    }
}

/* The activation-typed copies: float32 or bf16 on both sides. */
ct_status ct_cu_conv_pad_channels(ct_cu_ctx *ctx, ct_dtype dt, void *dst, const void *src,
                                  size_t rows, int c, int cp) {
    const size_t count = rows * (size_t)cp;
    const unsigned grid = ct_cu_grid(ctx, count, 256);
    if (dt == CT_BF16)
        pad_channels_kernel<__nv_bfloat16, __nv_bfloat16><<<grid, 256, 0, ctx->stream>>>(
            (__nv_bfloat16 *)dst, (const __nv_bfloat16 *)src, rows, c, cp);
    else
        pad_channels_kernel<float, float>
            <<<grid, 256, 0, ctx->stream>>>((float *)dst, (const float *)src, rows, c, cp);
    CT_CU_CHECK_LAUNCH();
    return CT_OK;
}

ct_status ct_cu_conv_unpad_channels(ct_cu_ctx *ctx, ct_dtype dt, void *dst, const void *src,
                                    size_t rows, int c, int cp) {
    const size_t count = rows * (size_t)c;
    const unsigned grid = ct_cu_grid(ctx, count, 256);
    if (dt == CT_BF16)
        unpad_channels_kernel<__nv_bfloat16, __nv_bfloat16><<<grid, 256, 0, ctx->stream>>>(
            (__nv_bfloat16 *)dst, (const __nv_bfloat16 *)src, rows, c, cp);
    else
        unpad_channels_kernel<float, float>
            <<<grid, 256, 0, ctx->stream>>>((float *)dst, (const float *)src, rows, c, cp);
    CT_CU_CHECK_LAUNCH();
    return CT_OK;
}

/* Scratch buffer `which` as arrays of the given byte lengths. */
ct_status ct_cu_conv_pad_arrays(ct_cu_ctx *ctx, int count, const size_t *bytes, void **out) {
    return ct_cu_conv_scratch_arrays(ctx, CT_CU_SCRATCH_PAD, 1, count, bytes, out);
}
