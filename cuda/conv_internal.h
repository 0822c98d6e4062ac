/* The convolution files' shared state and calls (internal to cuda/conv*.cu).
 *
 *   conv.cu         the entry points: forward (fused or separate epilogue, bf16, narrow inputs
 *                   padded) and backward (ReLU mask and bias gradient, then data and filter)
 *   conv_plan.cu    the plan cache: one plan per shape, its descriptors, its scratch arrays
 *   conv_tune.cu    the choices made by measuring, once per shape: cuDNN's algorithm search
 *                   within the workspace policy, the fused call against the epilogue, padded
 *                   against plain narrow inputs (the route through NCHW is decided here too,
 *                   by ct_cu_conv_decide_route below)
 *   conv_layout.cu  the kernels and transposes that change layouts: channel padding, and the
 *                   fp32 route through NCHW copies
 *
 * Fused layer kinds on the GPU (cuDNN's graph API: convolution + bias + ReLU with bf16 out, data
 * gradient + ReLU backward + bias gradient) belong beside these as a fourth way to run a plan:
 * a graph per shape kept in the plan, tried and timed by conv_tune.cu against the legacy calls
 * as the fused call is today, the legacy path staying the fallback where a graph is not
 * supported. */
#ifndef CUTUNE_CUDA_CONV_INTERNAL_H
#define CUTUNE_CUDA_CONV_INTERNAL_H

#include <stdio.h>

#include "context.h"
#include "core/knobs.h"

/* Repetitions when timing fused against unfused forward: enough to see past one noisy run,
 * few enough to keep the first step short. */
#define TUNE_REPS 3

/* How much faster than the best algorithm within the workspace cap one beyond it must be to be
 * taken (fp32 plans; see "Workspace" above). */
#define WIDE_GAIN 2.0f
/* ... and how far beyond the cap such a search may look: the fast fp32 algorithm needs about
 * 6.4 GB for block1 at batch 256, while FFT variants ask for tens of gigabytes. */
#define WIDE_CAP_FACTOR 16

/* Headroom left free during an algorithm search for cuDNN's and cuBLAS's own allocations. */
#define TUNE_HEADROOM ((size_t)512 << 20)

typedef struct ct_cu_conv_plan {
    int n, h, w, c, k;
    bool bf16; /* x, y (and dx, dy) described as bf16 (see above) */
    bool nchw; /* an `alt` plan: tensors NCHW, the kernel KCRS (see "Layout route") */
    cudnnTensorDescriptor_t x_desc; /* (n, h, w, c) NHWC, or NCHW in an alt plan */
    cudnnTensorDescriptor_t y_desc; /* (n, h, w, k) NHWC, or NCHW */
    cudnnTensorDescriptor_t b_desc; /* (1, k, 1, 1) */
    cudnnFilterDescriptor_t w_desc; /* (k, 3, 3, c) KRSC, or (k, c, 3, 3) KCRS */
    cudnnConvolutionDescriptor_t conv_desc;

    /* Layout route of a float32 plan: the same shape in NCHW, made when first needed, and per
     * direction -1 not yet decided, 0 NHWC as described, 1 through `alt`. An alt plan holds
     * the kernel's two layouts as (k, c, 3, 3) tensors for cudnnTransformTensor. */
    struct ct_cu_conv_plan *alt;
    int fwd_route, bwd_data_route, bwd_filter_route;
    cudnnTensorDescriptor_t krsc_desc, kcrs_desc;

    bool fwd_ready;
    cudnnConvolutionFwdAlgo_t fwd_algo;
    cudnnMathType_t fwd_math;
    size_t fwd_ws;
    int fused;  /* forward with ReLU: -1 not yet tried, 0 separate kernels, 1 one cuDNN call */
    int padded; /* narrow input: -1 not yet timed, 0 as it is, 1 through padded channels */

    bool bwd_data_ready;
    cudnnConvolutionBwdDataAlgo_t bwd_data_algo;
    cudnnMathType_t bwd_data_math;
    size_t bwd_data_ws;

    bool bwd_filter_ready;
    cudnnConvolutionBwdFilterAlgo_t bwd_filter_algo;
    cudnnMathType_t bwd_filter_math;
    size_t bwd_filter_ws;
} ct_cu_conv_plan;

/* ---- conv_plan.cu ---- */

/* The plan of shape `a` (made and cached the first time), and the NCHW twin of a float32 plan
 * (made the first time the layout route is tried). */
ct_status ct_cu_conv_plan_get(ct_cu_ctx *ctx, const ct_conv_args *a, ct_cu_conv_plan **out);
ct_status ct_cu_conv_plan_alt(ct_cu_ctx *ctx, ct_cu_conv_plan *p, ct_cu_conv_plan **out);
/* The math type a search starts from (see conv_plan.cu), and names for messages. */
cudnnMathType_t ct_cu_conv_base_math(const ct_cu_ctx *ctx, const ct_cu_conv_plan *p);
const char *ct_cu_conv_precision_name(const ct_cu_ctx *ctx);
const char *ct_cu_conv_plan_type(const ct_cu_conv_plan *p);
const char *ct_cu_conv_math_name(cudnnMathType_t m);
/* Scratch buffer `which` carved into `count` arrays of `elem`-byte values of the given lengths,
 * each 256-byte aligned; the cast scratch as bf16 arrays. */
ct_status ct_cu_conv_scratch_arrays(ct_cu_ctx *ctx, int which, size_t elem, int count,
                                    const size_t *len, void **out);
ct_status ct_cu_conv_cast_arrays(ct_cu_ctx *ctx, int count, const size_t *len, __nv_bfloat16 **out);

/* ---- conv_tune.cu ---- */

/* cuDNN's algorithm for one direction of plan p, searched on the real buffers of its first call
 * (or from its heuristics under CUTUNE_DETERMINISTIC), within the workspace policy. */
ct_status ct_cu_conv_tune_forward(ct_cu_ctx *ctx, ct_cu_conv_plan *p, const void *x, const void *wt,
                                  void *y);
ct_status ct_cu_conv_tune_backward_data(ct_cu_ctx *ctx, ct_cu_conv_plan *p, const void *wt,
                                        const void *dy, void *dx);
ct_status ct_cu_conv_tune_backward_filter(ct_cu_ctx *ctx, ct_cu_conv_plan *p, const void *x,
                                          const void *dy, void *dw);
/* The fused call against the epilogue, and padded against plain narrow inputs: decided once
 * per shape by timing, leaving y computed the chosen way. */
ct_status ct_cu_conv_decide_fusion(ct_cu_ctx *ctx, ct_cu_conv_plan *p, const ct_conv_args *a,
                                   void *ws);
ct_status ct_cu_conv_decide_padding(ct_cu_ctx *ctx, ct_cu_conv_plan *p, const ct_conv_args *a,
                                    int cp);

/* ---- conv_layout.cu ---- */

/* Whether plan p times the route through NCHW (-1), is forced to it (1) or stays NHWC (0). */
int ct_cu_conv_route_policy(const ct_cu_ctx *ctx, const ct_cu_conv_plan *p);
/* After a route decision: the layout scratch keeps only what NCHW directions need. */
ct_status ct_cu_conv_layout_done(ct_cu_ctx *ctx, size_t need);
/* The three directions of a float32 plan through NCHW copies, transposes included. */
ct_status ct_cu_conv_forward_nchw(ct_cu_ctx *ctx, ct_cu_conv_plan *p, const ct_conv_args *a);
ct_status ct_cu_conv_backward_data_nchw(ct_cu_ctx *ctx, ct_cu_conv_plan *p, const ct_conv_args *a);
ct_status ct_cu_conv_backward_filter_nchw(ct_cu_ctx *ctx, ct_cu_conv_plan *p,
                                          const ct_conv_args *a);
/* (rows, c) <-> (rows, cp) with zero channels, in the activations' type (float32 or bf16), and
 * the padding scratch as arrays of the given byte lengths. */
ct_status ct_cu_conv_pad_channels(ct_cu_ctx *ctx, ct_dtype dt, void *dst, const void *src,
                                  size_t rows, int c, int cp);
ct_status ct_cu_conv_unpad_channels(ct_cu_ctx *ctx, ct_dtype dt, void *dst, const void *src,
                                    size_t rows, int c, int cp);
ct_status ct_cu_conv_pad_arrays(ct_cu_ctx *ctx, int count, const size_t *bytes, void **out);

/* ---- conv.cu ---- */

/* The two ways of a float32 NHWC forward with the chosen algorithm: cuDNN's fused call, or the
 * convolution then elementwise.cu's bias + ReLU. */
cudnnStatus_t ct_cu_conv_forward_fused(ct_cu_ctx *ctx, ct_cu_conv_plan *p, const ct_conv_args *a,
                                       void *ws);
ct_status ct_cu_conv_forward_separate(ct_cu_ctx *ctx, ct_cu_conv_plan *p, const ct_conv_args *a,
                                      void *ws);
/* The forward of a plan on the channels it has, and through channels padded to cp. */
ct_status ct_cu_conv_forward_as_is(ct_cu_ctx *ctx, ct_cu_conv_plan *p, const ct_conv_args *a);
ct_status ct_cu_conv_forward_padded(ct_cu_ctx *ctx, const ct_conv_args *a, int cp);
/* Backward data and filter of a plan on the buffers given, searched the first time. */
ct_status ct_cu_conv_run_backward_data(ct_cu_ctx *ctx, ct_cu_conv_plan *p, const void *wt,
                                       const void *dy, void *dx);
ct_status ct_cu_conv_run_backward_filter(ct_cu_ctx *ctx, ct_cu_conv_plan *p, const void *x,
                                         const void *dy, void *dw);

/* ---- timed choices (templates: the ways to compare are lambdas) ---- */

/* Milliseconds of TUNE_REPS runs of `run` (returning ct_status) on the stream. */
template <typename Run>
static inline ct_status ct_cu_conv_time_reps(ct_cu_ctx *ctx, Run run, float *ms) {
    CT_CU_CHECK(cudaEventRecord(ctx->tune_start, ctx->stream));
    for (int r = 0; r < TUNE_REPS; r++) {
        ct_status st = run();
        if (st != CT_OK) return st;
    }
    CT_CU_CHECK(cudaEventRecord(ctx->tune_stop, ctx->stream));
    CT_CU_CHECK(cudaEventSynchronize(ctx->tune_stop));
    CT_CU_CHECK(cudaEventElapsedTime(ms, ctx->tune_start, ctx->tune_stop));
    return CT_OK;
}

/* Decides direction `dir`'s route once (*route: 0 NHWC, 1 NCHW) and leaves its output computed
 * by the chosen way. `nhwc()` and `nchw()` each compute the whole direction, transposes
 * included, writing their outputs (not accumulating), so running them again is harmless. Each
 * runs twice untimed first, so that neither algorithm searches nor workspace growth are
 * timed. When the NCHW way fails (no algorithm, no memory for its buffers) NHWC stays. */
template <typename Nhwc, typename Nchw>
static inline ct_status ct_cu_conv_decide_route(ct_cu_ctx *ctx, ct_cu_conv_plan *p, const char *dir,
                                                int *route, Nhwc nhwc, Nchw nchw) {
    const int policy = ct_cu_conv_route_policy(ctx, p);
    if (policy >= 0) {
        *route = policy;
        return policy ? nchw() : nhwc();
    }
    ct_status st = nhwc();
    if (st != CT_OK) return st;
    if (nchw() != CT_OK) {
        (void)cudaGetLastError();
        *route = 0;
        if (ctx->log_conv)
            fprintf(stderr, "cutune: conv %s float32 (%d, %d, %d, %d) -> %d: NHWC (NCHW: %s)\n",
                    dir, p->n, p->h, p->w, p->c, p->k, ct_last_error());
        if ((st = ct_cu_conv_layout_done(ctx, 0)) != CT_OK) return st;
        return nhwc();
    }
    if ((st = nhwc()) != CT_OK || (st = nchw()) != CT_OK) return st;
    float t_nhwc = 0.0f, t_nchw = 0.0f;
    if ((st = ct_cu_conv_time_reps(ctx, nhwc, &t_nhwc)) != CT_OK ||
        (st = ct_cu_conv_time_reps(ctx, nchw, &t_nchw)) != CT_OK)
        return st;
    *route = t_nchw < t_nhwc ? 1 : 0;
    if (ctx->log_conv)
        fprintf(stderr,
                "cutune: conv %s float32 (%d, %d, %d, %d) -> %d: %s (NHWC %.3f ms, "
                "NCHW with transposes %.3f ms; %d runs each)\n",
                dir, p->n, p->h, p->w, p->c, p->k, *route ? "through NCHW" : "NHWC", (double)t_nhwc,
                (double)t_nchw, TUNE_REPS);
    if ((st = ct_cu_conv_layout_done(ctx, *route ? ctx->layout_last : 0)) != CT_OK) return st;
    /* The last run was the NCHW one; the output must come from the way later calls take. */
    return *route ? CT_OK : nhwc();
}

#endif
