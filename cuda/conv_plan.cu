/* The plan cache of the CUDA convolutions (conv_internal.h): one plan per shape (n, h, w, c, k)
 * and activation type, made the first time the shape is seen and kept for the life of the
 * backend, with its tensor, filter and convolution descriptors; the NCHW twin a float32 plan
 * times its layout route with; and the scratch arrays a call carves from the backend's
 * grow-only scratch buffers. A run sees a handful of shapes per layer (the training batch, a
 * last partial batch, the evaluation batch), so the cache stays small and is scanned
 * linearly. */
#include <stdlib.h>

#include "conv_internal.h"

static void plan_destroy(ct_cu_conv_plan *p) {
    if (!p) return;
    plan_destroy(p->alt);
    if (p->kcrs_desc) CT_CU_DISCARD(cudnnDestroyTensorDescriptor(p->kcrs_desc));
    if (p->krsc_desc) CT_CU_DISCARD(cudnnDestroyTensorDescriptor(p->krsc_desc));
    if (p->conv_desc) CT_CU_DISCARD(cudnnDestroyConvolutionDescriptor(p->conv_desc));
    if (p->w_desc) CT_CU_DISCARD(cudnnDestroyFilterDescriptor(p->w_desc));
    if (p->b_desc) CT_CU_DISCARD(cudnnDestroyTensorDescriptor(p->b_desc));
    if (p->y_desc) CT_CU_DISCARD(cudnnDestroyTensorDescriptor(p->y_desc));
    if (p->x_desc) CT_CU_DISCARD(cudnnDestroyTensorDescriptor(p->x_desc));
    free(p);
}

void ct_cu_conv_plans_free(ct_cu_ctx *ctx) {
    for (int i = 0; i < ctx->n_plans; i++) plan_destroy(ctx->plans[i]);
    ctx->n_plans = 0;
}

/* The math type the search starts from. cuDNN's DEFAULT_MATH permits TF32 tensor cores on fp32
 * data (Ampere and newer); FMA_MATH restricts it to full-precision FMA kernels.
 * TENSOR_OP_MATH_ALLOW_CONVERSION is deliberately not used: it also permits down-converting
 * fp32 inputs to half precision, which is less precise than TF32 and not what "tf32" promises.
 * The search reports the math type each algorithm ran with, and that is what later calls set. */
cudnnMathType_t ct_cu_conv_base_math(const ct_cu_ctx *ctx, const ct_cu_conv_plan *p) {
    if (p->bf16) return CUDNN_TENSOR_OP_MATH;
    return ctx->precision == CT_CU_FP32 ? CUDNN_FMA_MATH : CUDNN_DEFAULT_MATH;
}

const char *ct_cu_conv_precision_name(const ct_cu_ctx *ctx) {
    return ctx->precision == CT_CU_FP32 ? "fp32" : ctx->precision == CT_CU_TF32 ? "tf32" : "bf16";
}

/* The element type (and layout, when not NHWC) of a plan's tensors, for messages. */
const char *ct_cu_conv_plan_type(const ct_cu_conv_plan *p) {
    return p->bf16 ? "bf16" : p->nchw ? "float32 NCHW" : "float32";
}

const char *ct_cu_conv_math_name(cudnnMathType_t m) {
    switch (m) {
    case CUDNN_FMA_MATH: return "fma math";
    case CUDNN_TENSOR_OP_MATH: return "tensor-op math";
    case CUDNN_DEFAULT_MATH: return "default math";
    default: return "other math";
    }
}

/* The descriptors of a plan for shape `a`, in NHWC (or NCHW for an alt plan); no cache. */
static ct_status plan_new(ct_cu_ctx *ctx, const ct_conv_args *a, bool nchw, ct_cu_conv_plan **out) {
    ct_cu_conv_plan *p = (ct_cu_conv_plan *)calloc(1, sizeof *p);
    if (!p) return ct_error(CT_ENOMEM, "cuda conv: out of host memory for a plan");
    p->n = a->n;
    p->h = a->h;
    p->w = a->w;
    p->c = a->c;
    p->k = a->k;
    p->fused = -1;
    p->padded = -1;
    p->fwd_route = p->bwd_data_route = p->bwd_filter_route = -1;
    p->bf16 = a->act == CT_BF16;
    p->nchw = nchw;
    const cudnnDataType_t dt = p->bf16 ? CUDNN_DATA_BFLOAT16 : CUDNN_DATA_FLOAT;
    const cudnnTensorFormat_t fmt = nchw ? CUDNN_TENSOR_NCHW : CUDNN_TENSOR_NHWC;

    /* plan_destroy skips descriptors not created yet, so every failure below can use it. */
    ct_status st;
    CT_CU_CHECK_GOTO(st, cudnnCreateTensorDescriptor(&p->x_desc), fail);
    CT_CU_CHECK_GOTO(st, cudnnCreateTensorDescriptor(&p->y_desc), fail);
    CT_CU_CHECK_GOTO(st, cudnnCreateTensorDescriptor(&p->b_desc), fail);
    CT_CU_CHECK_GOTO(st, cudnnCreateFilterDescriptor(&p->w_desc), fail);
    CT_CU_CHECK_GOTO(st, cudnnCreateConvolutionDescriptor(&p->conv_desc), fail);

    CT_CU_CHECK_GOTO(st, cudnnSetTensor4dDescriptor(p->x_desc, fmt, dt, a->n, a->c, a->h, a->w),
                     fail);
    CT_CU_CHECK_GOTO(st, cudnnSetTensor4dDescriptor(p->y_desc, fmt, dt, a->n, a->k, a->h, a->w),
                     fail);
    CT_CU_CHECK_GOTO(
        st, cudnnSetTensor4dDescriptor(p->b_desc, fmt, CUDNN_DATA_FLOAT, 1, a->k, 1, 1), fail);
    CT_CU_CHECK_GOTO(st, cudnnSetFilter4dDescriptor(p->w_desc, dt, fmt, a->k, a->c, 3, 3), fail);
    if (nchw) {
        /* The kernel (k, c, 3, 3) as stored (KRSC: NHWC order) and as the alt plan reads it
         * (KCRS: NCHW order). */
        CT_CU_CHECK_GOTO(st, cudnnCreateTensorDescriptor(&p->krsc_desc), fail);
        CT_CU_CHECK_GOTO(st, cudnnCreateTensorDescriptor(&p->kcrs_desc), fail);
        CT_CU_CHECK_GOTO(
            st, cudnnSetTensor4dDescriptor(p->krsc_desc, CUDNN_TENSOR_NHWC, dt, a->k, a->c, 3, 3),
            fail);
        CT_CU_CHECK_GOTO(
            st, cudnnSetTensor4dDescriptor(p->kcrs_desc, CUDNN_TENSOR_NCHW, dt, a->k, a->c, 3, 3),
            fail);
    }
    CT_CU_CHECK_GOTO(st,
                     cudnnSetConvolution2dDescriptor(p->conv_desc, 1, 1, 1, 1, 1, 1,
                                                     CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT),
                     fail);
    CT_CU_CHECK_GOTO(st, cudnnSetConvolutionMathType(p->conv_desc, ct_cu_conv_base_math(ctx, p)),
                     fail);
    *out = p;
    return CT_OK;

fail:
    plan_destroy(p);
    return st;
}

static ct_status plan_create(ct_cu_ctx *ctx, const ct_conv_args *a, ct_cu_conv_plan **out) {
    ct_cu_conv_plan *p = NULL;
    ct_status st = plan_new(ctx, a, false, &p);
    if (st != CT_OK) return st;
    if (ctx->n_plans == ctx->cap_plans) {
        int cap = ctx->cap_plans ? ctx->cap_plans * 2 : 16;
        ct_cu_conv_plan **grown =
            (ct_cu_conv_plan **)realloc(ctx->plans, (size_t)cap * sizeof *grown);
        if (!grown) {
            st = ct_error(CT_ENOMEM, "cuda conv: out of host memory for the plan cache");
            goto fail;
        }
        ctx->plans = grown;
        ctx->cap_plans = cap;
    }
    ctx->plans[ctx->n_plans++] = p;
    *out = p;
    return CT_OK;

fail:
    plan_destroy(p);
    return st;
}

ct_status ct_cu_conv_plan_get(ct_cu_ctx *ctx, const ct_conv_args *a, ct_cu_conv_plan **out) {
    /* A linear scan: a run has a few dozen shapes at most, and this is host work of
     * nanoseconds beside a convolution. */
    for (int i = 0; i < ctx->n_plans; i++) {
        ct_cu_conv_plan *p = ctx->plans[i];
        if (p->n == a->n && p->h == a->h && p->w == a->w && p->c == a->c && p->k == a->k &&
            p->bf16 == (a->act == CT_BF16)) {
            *out = p;
            return CT_OK;
        }
    }
    return plan_create(ctx, a, out);
}

/* The NCHW twin of float32 plan p, made the first time a route through it is tried. */
ct_status ct_cu_conv_plan_alt(ct_cu_ctx *ctx, ct_cu_conv_plan *p, ct_cu_conv_plan **out) {
    if (!p->alt) {
        ct_conv_args a = {};
        a.n = p->n;
        a.h = p->h;
        a.w = p->w;
        a.c = p->c;
        a.k = p->k;
        a.act = CT_F32;
        ct_status st = plan_new(ctx, &a, true, &p->alt);
        if (st != CT_OK) return st;
    }
    *out = p->alt;
    return CT_OK;
}

/* Carves scratch buffer `which` into consecutive arrays of `elem` bytes per value and the
 * given lengths, each 256-byte aligned as cuDNN prefers. */
ct_status ct_cu_conv_scratch_arrays(ct_cu_ctx *ctx, int which, size_t elem, int count,
                                    const size_t *len, void **out) {
    size_t off[8], total = 0;
    for (int i = 0; i < count; i++) {
        off[i] = total;
        total += (len[i] * elem + 255) / 256 * 256;
    }
    void *base = NULL;
    ct_status st = ct_cu_scratch(ctx, which, total, &base);
    if (st != CT_OK) return st;
    for (int i = 0; i < count; i++) out[i] = (char *)base + off[i];
    return CT_OK;
}

ct_status ct_cu_conv_cast_arrays(ct_cu_ctx *ctx, int count, const size_t *len,
                                 __nv_bfloat16 **out) {
    void *p[8];
    ct_status st =
        ct_cu_conv_scratch_arrays(ctx, CT_CU_SCRATCH_CAST, sizeof(__nv_bfloat16), count, len, p);
    for (int i = 0; st == CT_OK && i < count; i++) out[i] = (__nv_bfloat16 *)p[i];
    return st;
}
