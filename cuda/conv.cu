/* 3x3 'same' convolutions on the CUDA backend through cuDNN: the entry points, forward with bias
 * and ReLU and backward to the data, the kernel and the bias (the plan cache, the measured
 * choices and the layout kernels are in conv_plan.cu, conv_tune.cu and conv_layout.cu; see
 * conv_internal.h).
 *
 * Layouts are the op interface's: activations NHWC, kernels (K, 3, 3, C), which cuDNN calls
 * KRSC and describes as an NHWC-format filter; cross-correlation, padding 1, stride 1.
 *
 * Forward with ReLU can be one call, cudnnConvolutionBiasActivationForward, or the convolution
 * followed by this backend's bias + ReLU kernel; conv_tune.cu measures which once per shape.
 * Backward first masks dy in place by the ReLU (dy *= y > 0), computing the bias gradient in
 * the same pass, then runs backward data and backward filter, each writing its output
 * (beta = 0).
 *
 * bf16 activations (a->act == CT_BF16, what models store at bf16 precision) get plans of their
 * own whose tensors are bf16: cuDNN reads x and dy and writes y and dx as they are, on bf16
 * tensor cores with float32 accumulation. Only the kernel is cast (to a bf16 copy in the cast
 * buffer, each call: 1/100 of an activation's traffic), and the kernel gradient comes back as a
 * bf16 copy widened into the float32 dw. Bias and ReLU follow the convolution in bf16.cu's
 * epilogue, in place; the backward mask and bias sum read the bf16 y and dy directly. Float32
 * convolutions at bf16 precision run as TF32.
 *
 * Narrow inputs: TF32 tensor-core kernels want the channel count a multiple of 4, and VGG's
 * first convolution reads 3; bf16 tensor cores want multiples of 8. A float32 narrow shape
 * runs through zero-padded channels when conv_tune.cu measured that faster; a bf16 one always
 * does. Backward follows the forward's choice, cutting the padded gradients back to the real
 * channels.
 *
 * With CUTUNE_DETERMINISTIC=1 nothing is chosen by timing, so the same GPU, cuDNN and settings
 * give the same bits on every run. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conv_internal.h"

/* The fused call: y = ReLU(conv(x) + b). z is y with scale 0, the documented way to say "no
 * residual input" (cuDNN does not read a tensor whose scale is zero). */
cudnnStatus_t ct_cu_conv_forward_fused(ct_cu_ctx *ctx, ct_cu_conv_plan *p, const ct_conv_args *a,
                                       void *ws) {
    const float one = 1.0f, zero = 0.0f;
    return cudnnConvolutionBiasActivationForward(
        ctx->cudnn, &one, p->x_desc, a->x, p->w_desc, a->wt, p->conv_desc, p->fwd_algo, ws,
        p->fwd_ws, &zero, p->y_desc, a->y, p->b_desc, a->b, ctx->relu_desc, p->y_desc, a->y);
}

/* The convolution, then the bias (and ReLU) in one pass of elementwise.cu's kernel. */
ct_status ct_cu_conv_forward_separate(ct_cu_ctx *ctx, ct_cu_conv_plan *p, const ct_conv_args *a,
                                      void *ws) {
    const float one = 1.0f, zero = 0.0f;
    CT_CU_CHECK(cudnnConvolutionForward(ctx->cudnn, &one, p->x_desc, a->x, p->w_desc, a->wt,
                                        p->conv_desc, p->fwd_algo, ws, p->fwd_ws, &zero, p->y_desc,
                                        a->y));
    size_t rows = (size_t)a->n * a->h * a->w;
    return ct_cu_bias_act(ctx, (float *)a->y, a->b, rows, a->k, a->relu);
}

/* The channel count a narrow input is padded to, or 0 when the shape needs no padding (see
 * "Narrow inputs" above). */
static int pad_target(int c, ct_dtype act) {
    if (act == CT_BF16) return c % 8 == 0 ? 0 : (c + 7) / 8 * 8;
    return c % 4 == 0 || c > 64 ? 0 : (c + 3) / 4 * 4;
}

static ct_status conv_args_ok(const char *what, const ct_conv_args *a) {
    if (!a || a->n <= 0 || a->h <= 0 || a->w <= 0 || a->c <= 0 || a->k <= 0) {
        return ct_error(CT_EINVAL, "cuda %s: bad shape (%d, %d, %d, %d) -> %d", what, a ? a->n : -1,
                        a ? a->h : -1, a ? a->w : -1, a ? a->c : -1, a ? a->k : -1);
    }
    /* cuDNN's legacy descriptors take int sizes and strides: a tensor of 2^31 elements or more
     * cannot be described (VGG16 at 224x224 reaches it at a batch of 669). */
    const size_t rows = (size_t)a->n * a->h * a->w;
    int wide = a->c > a->k ? a->c : a->k;
    if (pad_target(a->c, a->act) > wide) wide = pad_target(a->c, a->act);
    const size_t widest = (size_t)wide;
    if (rows * widest >= ((size_t)1 << 31)) {
        const size_t per = (size_t)a->h * a->w * widest;
        return ct_error(CT_EUNSUPPORTED,
                        "cuda %s: (%d, %d, %d, %d) -> %d is too large for "
                        "cuDNN's 32-bit tensor sizes; use a batch of at most %zu",
                        what, a->n, a->h, a->w, a->c, a->k, (((size_t)1 << 31) - 1) / per);
    }
    return CT_OK;
}

/* Forward of a bf16 plan: x and y are bf16 already; the kernel is rounded into the cast buffer,
 * and bias + ReLU are applied in place after the convolution. */
static ct_status forward_bf16(ct_cu_ctx *ctx, ct_cu_conv_plan *p, const ct_conv_args *a) {
    const size_t rows = (size_t)a->n * a->h * a->w;
    const size_t len[1] = {(size_t)a->k * 9 * a->c};
    __nv_bfloat16 *kh[1];
    ct_status st = ct_cu_conv_cast_arrays(ctx, 1, len, kh);
    if (st != CT_OK || (st = ct_cu_to_bf16(ctx, kh[0], a->wt, len[0])) != CT_OK) return st;
    if (!p->fwd_ready && (st = ct_cu_conv_tune_forward(ctx, p, a->x, kh[0], a->y)) != CT_OK)
        return st;
    void *ws = NULL;
    if ((st = ct_cu_workspace(ctx, p->fwd_ws, &ws)) != CT_OK) return st;
    const float one = 1.0f, zero = 0.0f;
    CT_CU_CHECK(cudnnSetConvolutionMathType(p->conv_desc, p->fwd_math));
    CT_CU_CHECK(cudnnConvolutionForward(ctx->cudnn, &one, p->x_desc, a->x, p->w_desc, kh[0],
                                        p->conv_desc, p->fwd_algo, ws, p->fwd_ws, &zero, p->y_desc,
                                        a->y));
    return ct_cu_bias_act_bf16(ctx, (__nv_bfloat16 *)a->y, a->b, rows, a->k, a->relu);
}

/* The forward of a float32 plan in NHWC: the fused call or the convolution and the epilogue. */
static ct_status forward_nhwc(ct_cu_ctx *ctx, ct_cu_conv_plan *p, const ct_conv_args *a) {
    ct_status st;
    if (!p->fwd_ready && (st = ct_cu_conv_tune_forward(ctx, p, a->x, a->wt, a->y)) != CT_OK)
        return st;

    void *ws = NULL;
    if ((st = ct_cu_workspace(ctx, p->fwd_ws, &ws)) != CT_OK) return st;
    CT_CU_CHECK(cudnnSetConvolutionMathType(p->conv_desc, p->fwd_math));
    if (!a->relu)
        return ct_cu_conv_forward_separate(ctx, p, a, ws); /* IDENTITY fuses with one algo only */
    if (p->fused < 0) return ct_cu_conv_decide_fusion(ctx, p, a, ws);
    if (p->fused) {
        CT_CU_CHECK(ct_cu_conv_forward_fused(ctx, p, a, ws));
        return CT_OK;
    }
    return ct_cu_conv_forward_separate(ctx, p, a, ws);
}

/* The forward of a plan, on the channels it has. */
ct_status ct_cu_conv_forward_as_is(ct_cu_ctx *ctx, ct_cu_conv_plan *p, const ct_conv_args *a) {
    if (p->bf16) return forward_bf16(ctx, p, a);
    auto nhwc = [&]() { return forward_nhwc(ctx, p, a); };
    auto nchw = [&]() { return ct_cu_conv_forward_nchw(ctx, p, a); };
    if (p->fwd_route < 0)
        return ct_cu_conv_decide_route(ctx, p, "forward", &p->fwd_route, nhwc, nchw);
    return p->fwd_route ? nchw() : nhwc();
}

/* Forward through padded channels: the padded shape is a plan of its own (its channel count is
 * a multiple of 4, or of 8 for bf16, so this does not recurse further). The input is copied in
 * its own type; the padded kernel stays float32. */
ct_status ct_cu_conv_forward_padded(ct_cu_ctx *ctx, const ct_conv_args *a, int cp) {
    const size_t rows = (size_t)a->n * a->h * a->w, krows = (size_t)a->k * 9;
    const size_t len[2] = {rows * (size_t)cp * ct_dtype_size(a->act),
                           krows * (size_t)cp * sizeof(float)};
    void *buf[2]; /* x, kernel */
    ct_status st = ct_cu_conv_pad_arrays(ctx, 2, len, buf);
    if (st != CT_OK ||
        (st = ct_cu_conv_pad_channels(ctx, a->act, buf[0], a->x, rows, a->c, cp)) != CT_OK ||
        (st = ct_cu_conv_pad_channels(ctx, CT_F32, buf[1], a->wt, krows, a->c, cp)) != CT_OK)
        return st;
    ct_conv_args b = *a;
    b.c = cp;
    b.x = buf[0];
    b.wt = (const float *)buf[1];
    return ct_cu_conv3x3_forward(ctx, &b);
}

ct_status ct_cu_conv3x3_forward(void *c, const ct_conv_args *a) {
    ct_cu_ctx *ctx = (ct_cu_ctx *)c;
    ct_status st = conv_args_ok("conv3x3_forward", a);
    if (st != CT_OK) return st;
    if (!a->x || !a->wt || !a->b || !a->y)
        return ct_error(CT_EINVAL, "cuda conv3x3_forward: x, wt, b or y is NULL");
    if ((st = ct_cu_enter(ctx)) != CT_OK) return st;
    const int cp = pad_target(a->c, a->act);
    if (cp > 0 && a->act == CT_BF16) return ct_cu_conv_forward_padded(ctx, a, cp);
    ct_cu_conv_plan *p = NULL;
    if ((st = ct_cu_conv_plan_get(ctx, a, &p)) != CT_OK) return st;
    if (cp > 0 && p->padded < 0) return ct_cu_conv_decide_padding(ctx, p, a, cp);
    if (cp > 0 && p->padded > 0) return ct_cu_conv_forward_padded(ctx, a, cp);
    return ct_cu_conv_forward_as_is(ctx, p, a);
}

/* Backward data and backward filter of a plan on the buffers given (float32, or the bf16
 * copies of a bf16 plan): searched the first time, then with the chosen algorithm and math. */
ct_status ct_cu_conv_run_backward_data(ct_cu_ctx *ctx, ct_cu_conv_plan *p, const void *wt,
                                       const void *dy, void *dx) {
    ct_status st;
    if (!p->bwd_data_ready && (st = ct_cu_conv_tune_backward_data(ctx, p, wt, dy, dx)) != CT_OK)
        return st;
    void *ws = NULL;
    if ((st = ct_cu_workspace(ctx, p->bwd_data_ws, &ws)) != CT_OK) return st;
    const float one = 1.0f, zero = 0.0f;
    CT_CU_CHECK(cudnnSetConvolutionMathType(p->conv_desc, p->bwd_data_math));
    CT_CU_CHECK(cudnnConvolutionBackwardData(ctx->cudnn, &one, p->w_desc, wt, p->y_desc, dy,
                                             p->conv_desc, p->bwd_data_algo, ws, p->bwd_data_ws,
                                             &zero, p->x_desc, dx));
    return CT_OK;
}

ct_status ct_cu_conv_run_backward_filter(ct_cu_ctx *ctx, ct_cu_conv_plan *p, const void *x,
                                         const void *dy, void *dw) {
    ct_status st;
    if (!p->bwd_filter_ready && (st = ct_cu_conv_tune_backward_filter(ctx, p, x, dy, dw)) != CT_OK)
        return st;
    void *ws = NULL;
    if ((st = ct_cu_workspace(ctx, p->bwd_filter_ws, &ws)) != CT_OK) return st;
    const float one = 1.0f, zero = 0.0f;
    CT_CU_CHECK(cudnnSetConvolutionMathType(p->conv_desc, p->bwd_filter_math));
    CT_CU_CHECK(cudnnConvolutionBackwardFilter(ctx->cudnn, &one, p->x_desc, x, p->y_desc, dy,
                                               p->conv_desc, p->bwd_filter_algo, ws,
                                               p->bwd_filter_ws, &zero, p->w_desc, dw));
    return CT_OK;
}

/* Backward of a bf16 plan, after dy was masked (and db summed): backward data from a bf16
 * copy of the kernel straight into the bf16 dx, and backward filter into a bf16 kernel
 * gradient that is widened into the float32 dw. */
static ct_status backward_bf16(ct_cu_ctx *ctx, ct_cu_conv_plan *p, const ct_conv_args *a,
                               bool need_dgrad, bool need_wgrad) {
    const size_t ks = (size_t)a->k * 9 * a->c;
    const size_t len[2] = {need_dgrad ? ks : 0, need_wgrad ? ks : 0};
    __nv_bfloat16 *h[2]; /* kernel, dkernel */
    ct_status st = ct_cu_conv_cast_arrays(ctx, 2, len, h);
    if (st != CT_OK) return st;
    if (need_dgrad && ((st = ct_cu_to_bf16(ctx, h[0], a->wt, ks)) != CT_OK ||
                       (st = ct_cu_conv_run_backward_data(ctx, p, h[0], a->dy, a->dx)) != CT_OK))
        return st;
    if (need_wgrad && ((st = ct_cu_conv_run_backward_filter(ctx, p, a->x, a->dy, h[1])) != CT_OK ||
                       (st = ct_cu_from_bf16(ctx, a->dw, h[1], ks)) != CT_OK))
        return st;
    return CT_OK;
}

/* Backward through padded channels, when the forward chose them: the padded plan masks dy and
 * sums db as usual; its kernel and input gradients are cut back to the real channels. */
static ct_status backward_padded(ct_cu_ctx *ctx, const ct_conv_args *a, bool need_dgrad,
                                 bool need_wgrad, int cp) {
    const size_t rows = (size_t)a->n * a->h * a->w, krows = (size_t)a->k * 9;
    const size_t es = ct_dtype_size(a->act);
    const size_t len[4] = {need_wgrad ? rows * (size_t)cp * es : 0,
                           need_dgrad ? krows * (size_t)cp * sizeof(float) : 0,
                           need_wgrad ? krows * (size_t)cp * sizeof(float) : 0,
                           need_dgrad ? rows * (size_t)cp * es : 0};
    void *buf[4]; /* x, kernel, dkernel, dx */
    ct_status st = ct_cu_conv_pad_arrays(ctx, 4, len, buf);
    if (st != CT_OK) return st;
    if (need_wgrad &&
        (st = ct_cu_conv_pad_channels(ctx, a->act, buf[0], a->x, rows, a->c, cp)) != CT_OK)
        return st;
    /* The kernel is read by the data gradient only (the first layer's has none). */
    if (need_dgrad &&
        (st = ct_cu_conv_pad_channels(ctx, CT_F32, buf[1], a->wt, krows, a->c, cp)) != CT_OK)
        return st;
    ct_conv_args b = *a;
    b.c = cp;
    b.x = buf[0];
    b.wt = need_dgrad ? (const float *)buf[1] : NULL;
    b.dw = need_wgrad ? (float *)buf[2] : NULL;
    b.dx = need_dgrad ? buf[3] : NULL;
    if ((st = ct_cu_conv3x3_backward(ctx, &b, need_dgrad, need_wgrad)) != CT_OK) return st;
    if (need_wgrad &&
        (st = ct_cu_conv_unpad_channels(ctx, CT_F32, a->dw, buf[2], krows, a->c, cp)) != CT_OK)
        return st;
    if (need_dgrad &&
        (st = ct_cu_conv_unpad_channels(ctx, a->act, a->dx, buf[3], rows, a->c, cp)) != CT_OK)
        return st;
    return CT_OK;
}

ct_status ct_cu_conv3x3_backward(void *c, const ct_conv_args *a, bool need_dgrad, bool need_wgrad) {
    ct_cu_ctx *ctx = (ct_cu_ctx *)c;
    ct_status st = conv_args_ok("conv3x3_backward", a);
    if (st != CT_OK) return st;
    if (!need_dgrad && !need_wgrad) return CT_OK;
    if (!a->dy || (need_dgrad && (!a->dx || !a->wt)) ||
        (need_wgrad && (!a->dw || !a->db || !a->x)) || (a->relu && !a->y)) {
        return ct_error(CT_EINVAL, "cuda conv3x3_backward: a gradient buffer is NULL");
    }
    if ((st = ct_cu_enter(ctx)) != CT_OK) return st;
    const int cp = pad_target(a->c, a->act);
    if (cp > 0 && a->act == CT_BF16) return backward_padded(ctx, a, need_dgrad, need_wgrad, cp);
    ct_cu_conv_plan *p = NULL;
    if ((st = ct_cu_conv_plan_get(ctx, a, &p)) != CT_OK) return st;
    if (cp > 0 && p->padded > 0) return backward_padded(ctx, a, need_dgrad, need_wgrad, cp);

    /* dy becomes dL/d(pre-activation) in place; with weight gradients wanted, the same pass
     * sums it per channel into db. This comes first because both cuDNN calls read the masked
     * dy, and because its partial sums use the workspace that cuDNN will use next. */
    size_t rows = (size_t)a->n * a->h * a->w;
    if (need_wgrad) {
        st = ct_cu_bias_grad(ctx, a->act, a->db, a->dy, a->relu ? a->y : NULL, rows, a->k);
    } else if (a->relu) {
        st = ct_cu_relu_mask(ctx, a->act, a->dy, a->y, rows * (size_t)a->k);
    }
    if (st != CT_OK) return st;

    if (p->bf16) return backward_bf16(ctx, p, a, need_dgrad, need_wgrad);

    if (need_dgrad) {
        auto nhwc = [&]() { return ct_cu_conv_run_backward_data(ctx, p, a->wt, a->dy, a->dx); };
        auto nchw = [&]() { return ct_cu_conv_backward_data_nchw(ctx, p, a); };
        st = p->bwd_data_route < 0
                 ? ct_cu_conv_decide_route(ctx, p, "backward data", &p->bwd_data_route, nhwc, nchw)
             : p->bwd_data_route ? nchw()
                                 : nhwc();
        if (st != CT_OK) return st;
    }
    if (need_wgrad) {
        auto nhwc = [&]() { return ct_cu_conv_run_backward_filter(ctx, p, a->x, a->dy, a->dw); };
        auto nchw = [&]() { return ct_cu_conv_backward_filter_nchw(ctx, p, a); };
        st = p->bwd_filter_route < 0 ? ct_cu_conv_decide_route(ctx, p, "backward filter",
                                                               &p->bwd_filter_route, nhwc, nchw)
             : p->bwd_filter_route   ? nchw()
                                     : nhwc();
        if (st != CT_OK) return st;
    }
    return CT_OK;
}
