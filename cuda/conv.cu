/* 3x3 'same' convolutions on the CUDA backend through cuDNN: forward with bias and ReLU, and
 * backward to the data, the kernel and the bias.
 *
 * Layouts are the op interface's: activations NHWC, kernels (K, 3, 3, C), which cuDNN calls
 * KRSC and describes as an NHWC-format filter; cross-correlation, padding 1, stride 1.
 *
 * Each distinct shape (n, h, w, c, k) gets a plan, made the first time the shape is seen and
 * kept for the life of the backend: its tensor, filter and convolution descriptors, and for
 * each direction (forward, backward data, backward filter) the algorithm that measured fastest
 * on this device. The choice is made once, by cudnnFind*AlgorithmEx on the real buffers of the
 * first call, among the algorithms that respect the precision policy (fp32: FMA kernels only;
 * tf32: tensor cores allowed), CUTUNE_DETERMINISTIC, and a workspace cap. A training run sees a
 * handful of shapes per layer (the training batch, a last partial batch, the evaluation batch),
 * so the search costs a few seconds once and nothing after.
 *
 * Forward with ReLU can be one call, cudnnConvolutionBiasActivationForward. Whether that fused
 * call is supported for a shape, and whether it is actually faster than the convolution followed
 * by this backend's bias + ReLU kernel, depends on the cuDNN version and the GPU, so the plan
 * tries it and times both once. Backward first masks dy in place by the ReLU (dy *= y > 0),
 * computing the bias gradient in the same pass, then runs backward data and backward filter,
 * each writing its output (beta = 0).
 *
 * bf16 activations (a->act == CT_BF16, what models store at bf16 precision) get plans of their
 * own whose tensors are bf16: cuDNN reads x and dy and writes y and dx as they are, on bf16
 * tensor cores with float32 accumulation. Only the kernel is cast (to a bf16 copy in the cast
 * buffer, each call: 1/100 of an activation's traffic), and the kernel gradient comes back as a
 * bf16 copy widened into the float32 dw. Bias and ReLU follow the convolution in bf16.cu's
 * epilogue, in place; the backward mask and bias sum read the bf16 y and dy directly. Float32
 * convolutions at bf16 precision run as TF32.
 *
 * A bf16 plan's backward filter takes the fastest deterministic algorithm (any other only when
 * none runs). The non-deterministic ones cuDNN offers lost precision there: on an H100 (cuDNN
 * 9.14) the kernel gradients they gave were up to 7 bf16 steps from one rounding of the
 * float32 sum, a quarter of the values of a (2, 28, 28, 128) -> 256 gradient differed from it,
 * and two identical passes gave different gradients, as if partial sums were added in bf16 in
 * no fixed order. The deterministic choice (algorithm 1 for every VGG16 layer there) rounds
 * once, as the CPU's emulation does, and the bf16 sweep measured no slower with it.
 *
 * Narrow inputs: TF32 tensor-core kernels want the channel count a multiple of 4, and VGG16's
 * first convolution reads 3. For such a float32 shape the first forward times the convolution as
 * it is against copying input and kernel into zero-padded channels (4) and convolving those, and
 * keeps the faster; backward follows the choice, cutting the padded kernel's (and input's)
 * gradient back to the real channels. Zero channels add nothing to the sums, so both ways
 * compute the same function up to summation order. bf16 tensor cores need multiples of 8, so a
 * bf16 shape with other channel counts is always padded to the next multiple of 8.
 *
 * Workspace. A search hands cuDNN at most CUTUNE_WORKSPACE_MB (1 GiB by default) and what the
 * device can spare, and the grow-only workspace then keeps what the chosen algorithms need, so
 * the cap keeps a marginally faster algorithm from holding gigabytes. fp32 plans are the
 * exception: their fast FMA algorithm (cuDNN's algorithm 1 on an H100) needs about twice the
 * input tensor in workspace, 803 MB at (64, 112, 112, 128) and over the cap from VGG16's block1
 * at batch 64 or block2 at batch 128, and without it the search fell back to algorithm 0, 50 to
 * 100 times slower (a 488 ms backward data at (64, 224, 224, 64); full fine-tuning at 88 img/s
 * against 1,600 at TF32). So fp32 searches look up to WIDE_CAP_FACTOR times the cap (as far as
 * the device has room) and take an algorithm beyond the cap when it is at least WIDE_GAIN times
 * faster than the best within it.
 *
 * Layout route (fp32). For float32 tensors in NHWC, cuDNN's legacy API offers only its
 * implicit-GEMM algorithms; FFT and Winograd, which do fewer multiplications than the direct
 * 3x3 sum and are what PyTorch's fp32 convolutions reach (bench/RESULTS.md), need NCHW. So an
 * fp32 plan also times, once per direction (forward, backward data, backward filter), the same
 * convolution in NCHW: its inputs transposed into the layout scratch buffer
 * (cudnnTransformTensor), an NCHW plan of its own (`alt`) searched like any other, and the
 * output transposed back. The transposes are part of what is timed, and the faster way is
 * kept. Forward through NCHW applies bias and ReLU with the separate epilogue after the
 * transpose back. CUTUNE_CONV_LAYOUT=nchw|nhwc forces the route for every float32 plan at any
 * precision (tests); TF32, bf16 and CUTUNE_DETERMINISTIC runs otherwise stay in NHWC.
 *
 * CUTUNE_CONV_LOG=1 prints each plan's choices (algorithm, math type, determinism, time,
 * workspace; fused or separate bias + ReLU and padded or plain input, with the times compared)
 * to stderr as they are made. Its searches also time the algorithms past the cap
 * and name the fastest of them when the cap ruled it out (the choice stays the same), which
 * is how the fp32 case was found.
 *
 * With CUTUNE_DETERMINISTIC=1 nothing is chosen by timing: algorithms come from cuDNN's
 * heuristics (the first deterministic one that fits), the fused call and the timed padding of
 * float32 inputs are not used (bf16 inputs are padded always, timing nothing), so the same GPU,
 * cuDNN and settings give the same bits on every run. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    int fused; /* forward with ReLU: -1 not yet tried, 0 separate kernels, 1 one cuDNN call */
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

/* ---- plans ------------------------------------------------------------------------------ */

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
static cudnnMathType_t base_math(const ct_cu_ctx *ctx, const ct_cu_conv_plan *p) {
    if (p->bf16) return CUDNN_TENSOR_OP_MATH;
    return ctx->precision == CT_CU_FP32 ? CUDNN_FMA_MATH : CUDNN_DEFAULT_MATH;
}

static const char *precision_name(const ct_cu_ctx *ctx) {
    return ctx->precision == CT_CU_FP32 ? "fp32" : ctx->precision == CT_CU_TF32 ? "tf32" : "bf16";
}

/* The element type (and layout, when not NHWC) of a plan's tensors, for messages. */
static const char *plan_type(const ct_cu_conv_plan *p) {
    return p->bf16 ? "bf16" : p->nchw ? "float32 NCHW" : "float32";
}

static const char *math_name(cudnnMathType_t m) {
    switch (m) {
    case CUDNN_FMA_MATH: return "fma math";
    case CUDNN_TENSOR_OP_MATH: return "tensor-op math";
    case CUDNN_DEFAULT_MATH: return "default math";
    default: return "other math";
    }
}

/* The descriptors of a plan for shape `a`, in NHWC (or NCHW for an alt plan); no cache. */
static ct_status plan_new(ct_cu_ctx *ctx, const ct_conv_args *a, bool nchw,
                          ct_cu_conv_plan **out) {
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
    CT_CU_CHECK_GOTO(st,
                     cudnnSetTensor4dDescriptor(p->b_desc, fmt, CUDNN_DATA_FLOAT, 1, a->k, 1, 1),
                     fail);
    CT_CU_CHECK_GOTO(st, cudnnSetFilter4dDescriptor(p->w_desc, dt, fmt, a->k, a->c, 3, 3), fail);
    if (nchw) {
        /* The kernel (k, c, 3, 3) as stored (KRSC: NHWC order) and as the alt plan reads it
         * (KCRS: NCHW order). */
        CT_CU_CHECK_GOTO(st, cudnnCreateTensorDescriptor(&p->krsc_desc), fail);
        CT_CU_CHECK_GOTO(st, cudnnCreateTensorDescriptor(&p->kcrs_desc), fail);
        CT_CU_CHECK_GOTO(st,
                         cudnnSetTensor4dDescriptor(p->krsc_desc, CUDNN_TENSOR_NHWC, dt, a->k,
                                                    a->c, 3, 3),
                         fail);
        CT_CU_CHECK_GOTO(st,
                         cudnnSetTensor4dDescriptor(p->kcrs_desc, CUDNN_TENSOR_NCHW, dt, a->k,
                                                    a->c, 3, 3),
                         fail);
    }
    CT_CU_CHECK_GOTO(st,
                     cudnnSetConvolution2dDescriptor(p->conv_desc, 1, 1, 1, 1, 1, 1,
                                                     CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT),
                     fail);
    CT_CU_CHECK_GOTO(st, cudnnSetConvolutionMathType(p->conv_desc, base_math(ctx, p)), fail);
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

static ct_status plan_get(ct_cu_ctx *ctx, const ct_conv_args *a, ct_cu_conv_plan **out) {
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

/* ---- algorithm search ------------------------------------------------------------------- */

/* How much workspace a search may hand cuDNN: what the hungriest algorithm asks for, but no
 * more than the cap and what the device can spare. Algorithms that need more are skipped by
 * the search itself. */
static size_t tune_limit(ct_cu_ctx *ctx, size_t max_need, size_t cap) {
    size_t limit = max_need < cap ? max_need : cap;
    size_t free_b = 0, total_b = 0;
    if (cudaMemGetInfo(&free_b, &total_b) == cudaSuccess) {
        size_t avail = free_b + ctx->ws_bytes; /* our own workspace can be reused */
        avail = avail > TUNE_HEADROOM ? avail - TUNE_HEADROOM : avail / 2;
        if (limit > avail) limit = avail;
    } else {
        (void)cudaGetLastError(); /* without the answer the cap alone limits the search */
    }
    return limit;
}

/* The search may have grown the workspace far beyond what the chosen algorithms need; giving it
 * back now keeps the grow-only workspace at the size of the algorithms actually used (the next
 * ct_cu_workspace call grows it again to that). Only searches pay for this, once per shape. */
static ct_status tune_done(ct_cu_ctx *ctx, size_t chosen_ws) {
    if (chosen_ws > ctx->ws_high) ctx->ws_high = chosen_ws;
    if (ctx->ws && ctx->ws_bytes > ctx->ws_high + ((size_t)64 << 20)) {
        CT_CU_CHECK(cudaStreamSynchronize(ctx->stream));
        CT_CU_CHECK(cudaFree(ctx->ws));
        ctx->ws = NULL;
        ctx->ws_bytes = 0;
    }
    return CT_OK;
}

/* The first result, in the search's fastest-first order, that ran, fits the workspace and
 * respects the precision and determinism policies; -1 when none does. The three perf structs of
 * cuDNN have the same fields, hence the template. */
template <typename Perf>
static int pick(const ct_cu_ctx *ctx, const ct_cu_conv_plan *p, const Perf *perf, int count,
                size_t limit, bool deterministic) {
    for (int i = 0; i < count; i++) {
        const Perf *r = &perf[i];
        if (r->status != CUDNN_STATUS_SUCCESS || r->memory > limit) continue;
        if (deterministic && r->determinism != CUDNN_DETERMINISTIC) continue;
        if (r->mathType == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION) continue;
        if (!p->bf16 && ctx->precision == CT_CU_FP32 && r->mathType != CUDNN_FMA_MATH) continue;
        return i;
    }
    return -1;
}

static ct_status no_algorithm(const ct_cu_ctx *ctx, const char *dir, const ct_cu_conv_plan *p,
                              size_t limit) {
    return ct_error(CT_EUNSUPPORTED,
                    "cuda conv %s: cuDNN has no usable algorithm for %s (%d, %d, %d, %d) -> %d "
                    "channels within %zu MiB of workspace (precision %s%s); raise "
                    "CUTUNE_WORKSPACE_MB or change CUTUNE_PRECISION",
                    dir, plan_type(p), p->n, p->h, p->w, p->c, p->k, limit >> 20,
                    precision_name(ctx),
                    ctx->deterministic ? ", deterministic only" : "");
}

/* The search's workspace: `*limit` bytes, or half as much each time the allocation fails (free
 * memory can be fragmented), down to none; the search then skips what does not fit. */
static ct_status search_workspace(ct_cu_ctx *ctx, size_t *limit, void **ws) {
    for (;;) {
        ct_status st = ct_cu_workspace(ctx, *limit, ws);
        if (st != CT_EDEVMEM || *limit == 0) return st;
        *limit = *limit > ((size_t)1 << 20) ? *limit / 2 : 0;
    }
}

/* One algorithm search, whatever the direction: the math type first (workspace needs depend
 * on it), the most workspace any algorithm asks for (`size_of(algo, &bytes)`; algorithms that
 * cannot do the shape answer NOT_SUPPORTED and are skipped), that much workspace within the
 * limits, then cuDNN's heuristics (CUTUNE_DETERMINISTIC: no timing) or a timed search on the
 * real buffers (`search(perf, &got, ws, limit)`), and the first result `pick` accepts. */
template <typename Perf, int Count, typename SizeOf, typename Heuristic, typename Search>
static ct_status search_algorithm(ct_cu_ctx *ctx, ct_cu_conv_plan *p, const char *dir,
                                  bool prefer_deterministic, SizeOf size_of, Heuristic heuristic,
                                  Search search, Perf *chosen) {
    CT_CU_CHECK(cudnnSetConvolutionMathType(p->conv_desc, base_math(ctx, p)));
    size_t max_need = 0;
    for (int i = 0; i < Count; i++) {
        size_t sz = 0;
        if (size_of(i, &sz) == CUDNN_STATUS_SUCCESS && sz > max_need) max_need = sz;
    }
    /* fp32 plans search past the cap too (see "Workspace" above); the rest stay within it, but
     * with CUTUNE_CONV_LOG the search looks past it to report what the cap cost. */
    const bool widen = !ctx->deterministic && !p->bf16 && ctx->precision == CT_CU_FP32;
    const bool look = widen || (!ctx->deterministic && ctx->log_conv);
    size_t cap_limit = tune_limit(ctx, max_need, ctx->tune_ws_cap);
    size_t limit = look ? tune_limit(ctx, max_need, WIDE_CAP_FACTOR * ctx->tune_ws_cap)
                        : cap_limit;
    void *ws = NULL;
    ct_status st = search_workspace(ctx, &limit, &ws);
    if (st != CT_OK) return st;
    if (cap_limit > limit) cap_limit = limit;
    Perf perf[Count];
    int got = 0;
    if (ctx->deterministic)
        CT_CU_CHECK(heuristic(perf, &got));
    else
        CT_CU_CHECK(search(perf, &got, ws, limit));
    auto choose = [&](size_t lim) {
        int k = pick(ctx, p, perf, got, lim, ctx->deterministic || prefer_deterministic);
        if (k < 0 && !ctx->deterministic) k = pick(ctx, p, perf, got, lim, false);
        return k;
    };
    int i = choose(cap_limit);
    const int j = limit > cap_limit ? choose(limit) : -1; /* the fastest with no cap */
    if (widen && j >= 0 && (i < 0 || perf[j].time * WIDE_GAIN < perf[i].time)) i = j;
    if (i < 0) {
        (void)tune_done(ctx, 0); /* give back the search's workspace */
        return no_algorithm(ctx, dir, p, limit);
    }
    *chosen = perf[i];
    if (ctx->log_conv)
        fprintf(stderr, "cutune: conv %s %s (%d, %d, %d, %d) -> %d: algorithm %d, %s, %s, "
                "%.1f ms, %zu KiB workspace\n", dir, plan_type(p), p->n, p->h,
                p->w, p->c, p->k, (int)chosen->algo, math_name(chosen->mathType),
                chosen->determinism == CUDNN_DETERMINISTIC ? "deterministic"
                                                           : "non-deterministic",
                (double)chosen->time, chosen->memory >> 10);
    if (ctx->log_conv && j >= 0 && j != i)
        fprintf(stderr, "cutune: conv %s %s (%d, %d, %d, %d) -> %d: past the workspace cap, "
                "algorithm %d would take %.1f ms with %zu KiB\n", dir, plan_type(p), p->n,
                p->h, p->w, p->c, p->k, (int)perf[j].algo,
                (double)perf[j].time, perf[j].memory >> 10);
    /* An alt plan's choice counts toward the workspace kept only once its route is taken
     * (alt_ws_taken): a losing NCHW trial must not keep the workspace large. */
    return tune_done(ctx, p->nchw ? 0 : chosen->memory);
}

static ct_status tune_forward(ct_cu_ctx *ctx, ct_cu_conv_plan *p, const void *x, const void *wt,
                              void *y) {
    cudnnConvolutionFwdAlgoPerf_t r = {};
    ct_status st =
        search_algorithm<cudnnConvolutionFwdAlgoPerf_t, CUDNN_CONVOLUTION_FWD_ALGO_COUNT>(
        ctx, p, "forward", false,
        [&](int algo, size_t *sz) {
            return cudnnGetConvolutionForwardWorkspaceSize(ctx->cudnn, p->x_desc, p->w_desc,
                                                           p->conv_desc, p->y_desc,
                                                           (cudnnConvolutionFwdAlgo_t)algo, sz);
        },
        [&](cudnnConvolutionFwdAlgoPerf_t *perf, int *got) {
            return cudnnGetConvolutionForwardAlgorithm_v7(ctx->cudnn, p->x_desc, p->w_desc,
                                                          p->conv_desc, p->y_desc,
                                                          CUDNN_CONVOLUTION_FWD_ALGO_COUNT, got,
                                                          perf);
        },
        [&](cudnnConvolutionFwdAlgoPerf_t *perf, int *got, void *ws, size_t limit) {
            return cudnnFindConvolutionForwardAlgorithmEx(
                ctx->cudnn, p->x_desc, x, p->w_desc, wt, p->conv_desc, p->y_desc, y,
                CUDNN_CONVOLUTION_FWD_ALGO_COUNT, got, perf, ws, limit);
        },
        &r);
    if (st != CT_OK) return st;
    p->fwd_algo = r.algo;
    p->fwd_math = r.mathType;
    p->fwd_ws = r.memory;
    p->fwd_ready = true;
    return CT_OK;
}

static ct_status tune_backward_data(ct_cu_ctx *ctx, ct_cu_conv_plan *p, const void *wt,
                                    const void *dy, void *dx) {
    cudnnConvolutionBwdDataAlgoPerf_t r = {};
    ct_status st =
        search_algorithm<cudnnConvolutionBwdDataAlgoPerf_t, CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT>(
            ctx, p, "backward data", false,
            [&](int algo, size_t *sz) {
                return cudnnGetConvolutionBackwardDataWorkspaceSize(
                    ctx->cudnn, p->w_desc, p->y_desc, p->conv_desc, p->x_desc,
                    (cudnnConvolutionBwdDataAlgo_t)algo, sz);
            },
            [&](cudnnConvolutionBwdDataAlgoPerf_t *perf, int *got) {
                return cudnnGetConvolutionBackwardDataAlgorithm_v7(
                    ctx->cudnn, p->w_desc, p->y_desc, p->conv_desc, p->x_desc,
                    CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, got, perf);
            },
            [&](cudnnConvolutionBwdDataAlgoPerf_t *perf, int *got, void *ws, size_t limit) {
                return cudnnFindConvolutionBackwardDataAlgorithmEx(
                    ctx->cudnn, p->w_desc, wt, p->y_desc, dy, p->conv_desc, p->x_desc, dx,
                    CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, got, perf, ws, limit);
            },
            &r);
    if (st != CT_OK) return st;
    p->bwd_data_algo = r.algo;
    p->bwd_data_math = r.mathType;
    p->bwd_data_ws = r.memory;
    p->bwd_data_ready = true;
    return CT_OK;
}

static ct_status tune_backward_filter(ct_cu_ctx *ctx, ct_cu_conv_plan *p, const void *x,
                                      const void *dy, void *dw) {
    cudnnConvolutionBwdFilterAlgoPerf_t r = {};
    ct_status st = search_algorithm<cudnnConvolutionBwdFilterAlgoPerf_t,
                                    CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT>(
        ctx, p, "backward filter", p->bf16,
        [&](int algo, size_t *sz) {
            return cudnnGetConvolutionBackwardFilterWorkspaceSize(
                ctx->cudnn, p->x_desc, p->y_desc, p->conv_desc, p->w_desc,
                (cudnnConvolutionBwdFilterAlgo_t)algo, sz);
        },
        [&](cudnnConvolutionBwdFilterAlgoPerf_t *perf, int *got) {
            return cudnnGetConvolutionBackwardFilterAlgorithm_v7(
                ctx->cudnn, p->x_desc, p->y_desc, p->conv_desc, p->w_desc,
                CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT, got, perf);
        },
        [&](cudnnConvolutionBwdFilterAlgoPerf_t *perf, int *got, void *ws, size_t limit) {
            return cudnnFindConvolutionBackwardFilterAlgorithmEx(
                ctx->cudnn, p->x_desc, x, p->y_desc, dy, p->conv_desc, p->w_desc, dw,
                CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT, got, perf, ws, limit);
        },
        &r);
    if (st != CT_OK) return st;
    p->bwd_filter_algo = r.algo;
    p->bwd_filter_math = r.mathType;
    p->bwd_filter_ws = r.memory;
    p->bwd_filter_ready = true;
    return CT_OK;
}

/* Backward data and backward filter of a plan on the buffers given (float32, or the bf16
 * copies of a bf16 plan): searched the first time, then with the chosen algorithm and math. */
static ct_status run_backward_data(ct_cu_ctx *ctx, ct_cu_conv_plan *p, const void *wt,
                                   const void *dy, void *dx) {
    ct_status st;
    if (!p->bwd_data_ready && (st = tune_backward_data(ctx, p, wt, dy, dx)) != CT_OK) return st;
    void *ws = NULL;
    if ((st = ct_cu_workspace(ctx, p->bwd_data_ws, &ws)) != CT_OK) return st;
    const float one = 1.0f, zero = 0.0f;
    CT_CU_CHECK(cudnnSetConvolutionMathType(p->conv_desc, p->bwd_data_math));
    CT_CU_CHECK(cudnnConvolutionBackwardData(ctx->cudnn, &one, p->w_desc, wt, p->y_desc, dy,
                                             p->conv_desc, p->bwd_data_algo, ws, p->bwd_data_ws,
                                             &zero, p->x_desc, dx));
    return CT_OK;
}

static ct_status run_backward_filter(ct_cu_ctx *ctx, ct_cu_conv_plan *p, const void *x,
                                     const void *dy, void *dw) {
    ct_status st;
    if (!p->bwd_filter_ready && (st = tune_backward_filter(ctx, p, x, dy, dw)) != CT_OK)
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

/* ---- layout route ----------------------------------------------------------------------- */

/* The NCHW twin of float32 plan p, made the first time a route through it is tried. */
static ct_status alt_get(ct_cu_ctx *ctx, ct_cu_conv_plan *p, ct_cu_conv_plan **out) {
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

/* The layout scratch buffer as float32 arrays of the given lengths. */
static ct_status scratch_arrays(ct_cu_ctx *ctx, int which, size_t elem, int count,
                                const size_t *len, void **out);
static ct_status layout_arrays(ct_cu_ctx *ctx, int count, const size_t *len, float **out) {
    void *p[8];
    ct_status st = scratch_arrays(ctx, CT_CU_SCRATCH_LAYOUT, sizeof(float), count, len, p);
    for (int i = 0; st == CT_OK && i < count; i++) out[i] = (float *)p[i];
    ctx->layout_last = 0;
    for (int i = 0; i < count; i++) ctx->layout_last += (len[i] * sizeof(float) + 255) / 256 * 256;
    return st;
}

/* After a route decision: the layout scratch keeps what the directions that chose NCHW need
 * (`need`: this one's, 0 when it chose NHWC). Timing the NCHW way of a large shape that then
 * lost must not leave gigabytes held; the next NCHW call grows the buffer again as far as it
 * needs. */
static ct_status layout_done(ct_cu_ctx *ctx, size_t need) {
    if (need > ctx->layout_high) ctx->layout_high = need;
    if (ctx->scratch_bytes[CT_CU_SCRATCH_LAYOUT] > ctx->layout_high + ((size_t)64 << 20))
        return ct_cu_scratch_release(ctx, CT_CU_SCRATCH_LAYOUT);
    return CT_OK;
}

/* Whether plan p times the NCHW route (see "Layout route"); CUTUNE_CONV_LAYOUT=nchw|nhwc
 * forces it either way for any float32 plan. Read when a direction is decided. */
static int route_policy(const ct_cu_ctx *ctx, const ct_cu_conv_plan *p) {
    if (p->bf16 || p->nchw) return 0;
    const int force = ct_knob_conv_layout();
    if (force >= 0) return force;
    return ctx->precision == CT_CU_FP32 && !ctx->deterministic ? -1 : 0; /* -1: time both */
}

/* Milliseconds of TUNE_REPS runs of `run` (returning ct_status) on the stream. */
template <typename Run>
static ct_status time_reps(ct_cu_ctx *ctx, Run run, float *ms);

/* Decides direction `dir`'s route once (*route: 0 NHWC, 1 NCHW) and leaves its output computed
 * by the chosen way. `nhwc()` and `nchw()` each compute the whole direction, transposes
 * included, writing their outputs (not accumulating), so running them again is harmless. Each
 * runs twice untimed first, so that neither algorithm searches nor workspace growth are
 * timed. When the NCHW way fails (no algorithm, no memory for its buffers) NHWC stays. */
template <typename Nhwc, typename Nchw>
static ct_status decide_route(ct_cu_ctx *ctx, ct_cu_conv_plan *p, const char *dir, int *route,
                              Nhwc nhwc, Nchw nchw) {
    const int policy = route_policy(ctx, p);
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
        if ((st = layout_done(ctx, 0)) != CT_OK) return st;
        return nhwc();
    }
    if ((st = nhwc()) != CT_OK || (st = nchw()) != CT_OK) return st;
    float t_nhwc = 0.0f, t_nchw = 0.0f;
    if ((st = time_reps(ctx, nhwc, &t_nhwc)) != CT_OK ||
        (st = time_reps(ctx, nchw, &t_nchw)) != CT_OK)
        return st;
    *route = t_nchw < t_nhwc ? 1 : 0;
    if (ctx->log_conv)
        fprintf(stderr, "cutune: conv %s float32 (%d, %d, %d, %d) -> %d: %s (NHWC %.3f ms, "
                "NCHW with transposes %.3f ms; %d runs each)\n", dir, p->n, p->h, p->w, p->c,
                p->k, *route ? "through NCHW" : "NHWC", (double)t_nhwc, (double)t_nchw,
                TUNE_REPS);
    if ((st = layout_done(ctx, *route ? ctx->layout_last : 0)) != CT_OK) return st;
    /* The last run was the NCHW one; the output must come from the way later calls take. */
    return *route ? CT_OK : nhwc();
}

/* The NCHW twin of p and three float32 arrays of the layout scratch buffer for one direction. */
static ct_status nchw_begin(ct_cu_ctx *ctx, ct_cu_conv_plan *p, const size_t len[3],
                            ct_cu_conv_plan **q, float **buf) {
    ct_status st = alt_get(ctx, p, q);
    return st != CT_OK ? st : layout_arrays(ctx, 3, len, buf);
}

/* Backward data through NCHW: dy and the kernel transposed in, dx transposed out. */
static ct_status backward_data_nchw(ct_cu_ctx *ctx, ct_cu_conv_plan *p, const ct_conv_args *a) {
    ct_cu_conv_plan *q = NULL;
    ct_status st;
    const size_t hw = (size_t)a->n * a->h * a->w;
    const size_t len[3] = {hw * (size_t)a->k, (size_t)a->k * 9 * a->c, hw * (size_t)a->c};
    float *buf[3]; /* dy, kernel, dx */
    if ((st = nchw_begin(ctx, p, len, &q, buf)) != CT_OK ||
        (st = transpose(ctx, p->y_desc, a->dy, q->y_desc, buf[0])) != CT_OK ||
        (st = transpose(ctx, q->krsc_desc, a->wt, q->kcrs_desc, buf[1])) != CT_OK ||
        (st = run_backward_data(ctx, q, buf[1], buf[0], buf[2])) != CT_OK)
        return st;
    alt_ws_taken(ctx, p->bwd_data_route, q->bwd_data_ws);
    return transpose(ctx, q->x_desc, buf[2], p->x_desc, a->dx);
}

/* Backward filter through NCHW: x and dy transposed in, the kernel gradient transposed out. */
static ct_status backward_filter_nchw(ct_cu_ctx *ctx, ct_cu_conv_plan *p,
                                      const ct_conv_args *a) {
    ct_cu_conv_plan *q = NULL;
    ct_status st;
    const size_t hw = (size_t)a->n * a->h * a->w;
    const size_t len[3] = {hw * (size_t)a->c, hw * (size_t)a->k, (size_t)a->k * 9 * a->c};
    float *buf[3]; /* x, dy, dkernel */
    if ((st = nchw_begin(ctx, p, len, &q, buf)) != CT_OK ||
        (st = transpose(ctx, p->x_desc, a->x, q->x_desc, buf[0])) != CT_OK ||
        (st = transpose(ctx, p->y_desc, a->dy, q->y_desc, buf[1])) != CT_OK ||
        (st = run_backward_filter(ctx, q, buf[0], buf[1], buf[2])) != CT_OK)
        return st;
    alt_ws_taken(ctx, p->bwd_filter_route, q->bwd_filter_ws);
    return transpose(ctx, q->kcrs_desc, buf[2], q->krsc_desc, a->dw);
}

/* ---- forward ---------------------------------------------------------------------------- */

/* The fused call: y = ReLU(conv(x) + b). z is y with scale 0, the documented way to say "no
 * residual input" (cuDNN does not read a tensor whose scale is zero). */
static cudnnStatus_t forward_fused(ct_cu_ctx *ctx, ct_cu_conv_plan *p, const ct_conv_args *a,
                                   void *ws) {
    const float one = 1.0f, zero = 0.0f;
    return cudnnConvolutionBiasActivationForward(
        ctx->cudnn, &one, p->x_desc, a->x, p->w_desc, a->wt, p->conv_desc, p->fwd_algo, ws,
        p->fwd_ws, &zero, p->y_desc, a->y, p->b_desc, a->b, ctx->relu_desc, p->y_desc, a->y);
}

/* The convolution, then the bias (and ReLU) in one pass of elementwise.cu's kernel. */
static ct_status forward_separate(ct_cu_ctx *ctx, ct_cu_conv_plan *p, const ct_conv_args *a,
                                  void *ws) {
    const float one = 1.0f, zero = 0.0f;
    CT_CU_CHECK(cudnnConvolutionForward(ctx->cudnn, &one, p->x_desc, a->x, p->w_desc, a->wt,
                                        p->conv_desc, p->fwd_algo, ws, p->fwd_ws, &zero,
                                        p->y_desc, a->y));
    size_t rows = (size_t)a->n * a->h * a->w;
    return ct_cu_bias_act(ctx, (float *)a->y, a->b, rows, a->k, a->relu);
}

/* Milliseconds of TUNE_REPS runs of `run` (returning ct_status) on the stream. */
template <typename Run>
static ct_status time_reps(ct_cu_ctx *ctx, Run run, float *ms) {
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

static ct_status time_forward(ct_cu_ctx *ctx, ct_cu_conv_plan *p, const ct_conv_args *a,
                              void *ws, bool fused, float *ms) {
    return time_reps(ctx, [&]() {
        return fused ? CT_CU_STATUS(forward_fused(ctx, p, a, ws)) : forward_separate(ctx, p, a, ws);
    }, ms);
}

/* Decides once per shape whether the fused call is supported and faster; leaves y computed. */
static ct_status decide_fusion(ct_cu_ctx *ctx, ct_cu_conv_plan *p, const ct_conv_args *a,
                               void *ws) {
    if (ctx->deterministic) { /* no timing: the same choice on every run */
        p->fused = 0;
        return forward_separate(ctx, p, a, ws);
    }
    cudnnStatus_t s = forward_fused(ctx, p, a, ws);
    if (s != CUDNN_STATUS_SUCCESS) {
        /* Not every algorithm, layout and cuDNN version supports the fused call; falling back is
         * the intended use, not an error. A real device fault will show again in the separate
         * path and be reported there. A launch error cuDNN may have left behind is cleared so
         * that the separate path's launch check does not report it as its own. */
        (void)cudaGetLastError();
        p->fused = 0;
        if (ctx->log_conv)
            fprintf(stderr, "cutune: conv forward float32 (%d, %d, %d, %d) -> %d: bias + ReLU "
                    "separate (the fused call: %s)\n", p->n, p->h, p->w, p->c, p->k,
                    cudnnGetErrorString(s));
        return forward_separate(ctx, p, a, ws);
    }
    float t_fused = 0.0f, t_separate = 0.0f;
    ct_status st = time_forward(ctx, p, a, ws, true, &t_fused);
    if (st != CT_OK) return st;
    st = time_forward(ctx, p, a, ws, false, &t_separate);
    if (st != CT_OK) return st;
    p->fused = t_fused < t_separate ? 1 : 0;
    if (ctx->log_conv)
        fprintf(stderr, "cutune: conv forward float32 (%d, %d, %d, %d) -> %d: bias + ReLU %s "
                "(%d runs: fused call %.3f ms, convolution then epilogue %.3f ms)\n", p->n, p->h,
                p->w, p->c, p->k, p->fused ? "fused" : "separate", TUNE_REPS, (double)t_fused,
                (double)t_separate);
    /* y must come from the path every later call will take, so that the first call's result
     * is bitwise the same as theirs; the last timed run was the separate one. */
    if (p->fused) CT_CU_CHECK(forward_fused(ctx, p, a, ws));
    return CT_OK;
}

/* The channel count a narrow input is padded to, or 0 when the shape needs no padding (see
 * "Narrow inputs" above). */
static int pad_target(int c, ct_dtype act) {
    if (act == CT_BF16) return c % 8 == 0 ? 0 : (c + 7) / 8 * 8;
    return c % 4 == 0 || c > 64 ? 0 : (c + 3) / 4 * 4;
}

static ct_status conv_args_ok(const char *what, const ct_conv_args *a) {
    if (!a || a->n <= 0 || a->h <= 0 || a->w <= 0 || a->c <= 0 || a->k <= 0) {
        return ct_error(CT_EINVAL, "cuda %s: bad shape (%d, %d, %d, %d) -> %d", what,
                        a ? a->n : -1, a ? a->h : -1, a ? a->w : -1, a ? a->c : -1,
                        a ? a->k : -1);
    }
    /* cuDNN's legacy descriptors take int sizes and strides: a tensor of 2^31 elements or more
     * cannot be described (VGG16 at 224x224 reaches it at a batch of 669). */
    const size_t rows = (size_t)a->n * a->h * a->w;
    int wide = a->c > a->k ? a->c : a->k;
    if (pad_target(a->c, a->act) > wide) wide = pad_target(a->c, a->act);
    const size_t widest = (size_t)wide;
    if (rows * widest >= ((size_t)1 << 31)) {
        const size_t per = (size_t)a->h * a->w * widest;
        return ct_error(CT_EUNSUPPORTED, "cuda %s: (%d, %d, %d, %d) -> %d is too large for "
                        "cuDNN's 32-bit tensor sizes; use a batch of at most %zu", what, a->n,
                        a->h, a->w, a->c, a->k, (((size_t)1 << 31) - 1) / per);
    }
    return CT_OK;
}

/* Carves scratch buffer `which` into consecutive arrays of `elem` bytes per value and the
 * given lengths, each 256-byte aligned as cuDNN prefers. */
static ct_status scratch_arrays(ct_cu_ctx *ctx, int which, size_t elem, int count,
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

static ct_status cast_arrays(ct_cu_ctx *ctx, int count, const size_t *len, __nv_bfloat16 **out) {
    void *p[8];
    ct_status st = scratch_arrays(ctx, CT_CU_SCRATCH_CAST, sizeof(__nv_bfloat16), count, len, p);
    for (int i = 0; st == CT_OK && i < count; i++) out[i] = (__nv_bfloat16 *)p[i];
    return st;
}

/* Forward of a bf16 plan: x and y are bf16 already; the kernel is rounded into the cast buffer,
 * and bias + ReLU are applied in place after the convolution. */
static ct_status forward_bf16(ct_cu_ctx *ctx, ct_cu_conv_plan *p, const ct_conv_args *a) {
    const size_t rows = (size_t)a->n * a->h * a->w;
    const size_t len[1] = {(size_t)a->k * 9 * a->c};
    __nv_bfloat16 *kh[1];
    ct_status st = cast_arrays(ctx, 1, len, kh);
    if (st != CT_OK || (st = ct_cu_to_bf16(ctx, kh[0], a->wt, len[0])) != CT_OK) return st;
    if (!p->fwd_ready && (st = tune_forward(ctx, p, a->x, kh[0], a->y)) != CT_OK) return st;
    void *ws = NULL;
    if ((st = ct_cu_workspace(ctx, p->fwd_ws, &ws)) != CT_OK) return st;
    const float one = 1.0f, zero = 0.0f;
    CT_CU_CHECK(cudnnSetConvolutionMathType(p->conv_desc, p->fwd_math));
    CT_CU_CHECK(cudnnConvolutionForward(ctx->cudnn, &one, p->x_desc, a->x, p->w_desc, kh[0],
                                        p->conv_desc, p->fwd_algo, ws, p->fwd_ws, &zero,
                                        p->y_desc, a->y));
    return ct_cu_bias_act_bf16(ctx, (__nv_bfloat16 *)a->y, a->b, rows, a->k, a->relu);
}

/* The forward of a float32 plan in NHWC: the fused call or the convolution and the epilogue. */
static ct_status forward_nhwc(ct_cu_ctx *ctx, ct_cu_conv_plan *p, const ct_conv_args *a) {
    ct_status st;
    if (!p->fwd_ready && (st = tune_forward(ctx, p, a->x, a->wt, a->y)) != CT_OK) return st;

    void *ws = NULL;
    if ((st = ct_cu_workspace(ctx, p->fwd_ws, &ws)) != CT_OK) return st;
    CT_CU_CHECK(cudnnSetConvolutionMathType(p->conv_desc, p->fwd_math));
    if (!a->relu) return forward_separate(ctx, p, a, ws); /* IDENTITY fuses with one algo only */
    if (p->fused < 0) return decide_fusion(ctx, p, a, ws);
    if (p->fused) {
        CT_CU_CHECK(forward_fused(ctx, p, a, ws));
        return CT_OK;
    }
    return forward_separate(ctx, p, a, ws);
}

/* The forward of a float32 plan through NCHW: x and the kernel transposed in, the convolution
 * in NCHW, y transposed out, then bias and ReLU in the epilogue. */
static ct_status forward_nchw(ct_cu_ctx *ctx, ct_cu_conv_plan *p, const ct_conv_args *a) {
    ct_cu_conv_plan *q = NULL;
    ct_status st;
    const size_t hw = (size_t)a->n * a->h * a->w;
    const size_t len[3] = {hw * (size_t)a->c, (size_t)a->k * 9 * a->c, hw * (size_t)a->k};
    float *buf[3]; /* x, kernel, y */
    if ((st = nchw_begin(ctx, p, len, &q, buf)) != CT_OK ||
        (st = transpose(ctx, p->x_desc, a->x, q->x_desc, buf[0])) != CT_OK ||
        (st = transpose(ctx, q->krsc_desc, a->wt, q->kcrs_desc, buf[1])) != CT_OK)
        return st;
    if (!q->fwd_ready && (st = tune_forward(ctx, q, buf[0], buf[1], buf[2])) != CT_OK) return st;
    alt_ws_taken(ctx, p->fwd_route, q->fwd_ws);
    void *ws = NULL;
    if ((st = ct_cu_workspace(ctx, q->fwd_ws, &ws)) != CT_OK) return st;
    const float one = 1.0f, zero = 0.0f;
    CT_CU_CHECK(cudnnSetConvolutionMathType(q->conv_desc, q->fwd_math));
    CT_CU_CHECK(cudnnConvolutionForward(ctx->cudnn, &one, q->x_desc, buf[0], q->w_desc, buf[1],
                                        q->conv_desc, q->fwd_algo, ws, q->fwd_ws, &zero,
                                        q->y_desc, buf[2]));
    if ((st = transpose(ctx, q->y_desc, buf[2], p->y_desc, a->y)) != CT_OK) return st;
    return ct_cu_bias_act(ctx, (float *)a->y, a->b, hw, a->k, a->relu);
}

/* The forward of a plan, on the channels it has. */
static ct_status forward_as_is(ct_cu_ctx *ctx, ct_cu_conv_plan *p, const ct_conv_args *a) {
    if (p->bf16) return forward_bf16(ctx, p, a);
    auto nhwc = [&]() { return forward_nhwc(ctx, p, a); };
    auto nchw = [&]() { return forward_nchw(ctx, p, a); };
    if (p->fwd_route < 0) return decide_route(ctx, p, "forward", &p->fwd_route, nhwc, nchw);
    return p->fwd_route ? nchw() : nhwc();
}

/* ---- narrow inputs ------------------------------------------------------------------------ */

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
static ct_status pad_channels(ct_cu_ctx *ctx, ct_dtype dt, void *dst, const void *src,
                              size_t rows, int c, int cp) {
    const size_t count = rows * (size_t)cp;
    const unsigned grid = ct_cu_grid(ctx, count, 256);
    if (dt == CT_BF16)
        pad_channels_kernel<__nv_bfloat16, __nv_bfloat16><<<grid, 256, 0, ctx->stream>>>(
            (__nv_bfloat16 *)dst, (const __nv_bfloat16 *)src, rows, c, cp);
    else
        pad_channels_kernel<float, float><<<grid, 256, 0, ctx->stream>>>(
            (float *)dst, (const float *)src, rows, c, cp);
    CT_CU_CHECK_LAUNCH();
    return CT_OK;
}

static ct_status unpad_channels(ct_cu_ctx *ctx, ct_dtype dt, void *dst, const void *src,
                                size_t rows, int c, int cp) {
    const size_t count = rows * (size_t)c;
    const unsigned grid = ct_cu_grid(ctx, count, 256);
    if (dt == CT_BF16)
        unpad_channels_kernel<__nv_bfloat16, __nv_bfloat16><<<grid, 256, 0, ctx->stream>>>(
            (__nv_bfloat16 *)dst, (const __nv_bfloat16 *)src, rows, c, cp);
    else
        unpad_channels_kernel<float, float><<<grid, 256, 0, ctx->stream>>>(
            (float *)dst, (const float *)src, rows, c, cp);
    CT_CU_CHECK_LAUNCH();
    return CT_OK;
}

/* Scratch buffer `which` as arrays of the given byte lengths. */
static ct_status pad_arrays(ct_cu_ctx *ctx, int count, const size_t *bytes, void **out) {
    return scratch_arrays(ctx, CT_CU_SCRATCH_PAD, 1, count, bytes, out);
}

/* Forward through padded channels: the padded shape is a plan of its own (its channel count is
 * a multiple of 4, or of 8 for bf16, so this does not recurse further). The input is copied in
 * its own type; the padded kernel stays float32. */
static ct_status forward_padded(ct_cu_ctx *ctx, const ct_conv_args *a, int cp) {
    const size_t rows = (size_t)a->n * a->h * a->w, krows = (size_t)a->k * 9;
    const size_t len[2] = {rows * (size_t)cp * ct_dtype_size(a->act),
                           krows * (size_t)cp * sizeof(float)};
    void *buf[2]; /* x, kernel */
    ct_status st = pad_arrays(ctx, 2, len, buf);
    if (st != CT_OK || (st = pad_channels(ctx, a->act, buf[0], a->x, rows, a->c, cp)) != CT_OK ||
        (st = pad_channels(ctx, CT_F32, buf[1], a->wt, krows, a->c, cp)) != CT_OK)
        return st;
    ct_conv_args b = *a;
    b.c = cp;
    b.x = buf[0];
    b.wt = (const float *)buf[1];
    return ct_cu_conv3x3_forward(ctx, &b);
}

static ct_status time_path(ct_cu_ctx *ctx, ct_cu_conv_plan *p, const ct_conv_args *a, int cp,
                           float *ms) {
    return time_reps(ctx, [&]() {
        return cp > 0 ? forward_padded(ctx, a, cp) : forward_as_is(ctx, p, a);
    }, ms);
}

/* Decides once per narrow shape whether padding pays; leaves y computed by the chosen way. Each
 * way runs once untimed first, so that its algorithm searches are not what gets timed. */
static ct_status decide_padding(ct_cu_ctx *ctx, ct_cu_conv_plan *p, const ct_conv_args *a,
                                int cp) {
    /* CUTUNE_CONV_PAD=always|never overrides the timing (tests, benchmarks). */
    const int force = ct_knob_conv_pad();
    if (force == 1) {
        p->padded = 1;
        return forward_padded(ctx, a, cp);
    }
    if (force == 0 || (force < 0 && ctx->deterministic)) {
        p->padded = 0;
        return forward_as_is(ctx, p, a);
    }
    ct_status st = forward_as_is(ctx, p, a);
    if (st != CT_OK) return st;
    if (forward_padded(ctx, a, cp) != CT_OK) {
        /* No algorithm, or no memory, for the padded shape: the plain way stays. */
        (void)cudaGetLastError();
        p->padded = 0;
        return forward_as_is(ctx, p, a);
    }
    /* Once more each, untimed: the workspace only grows from here on, so no reallocation
     * lands inside a timed run. */
    if ((st = forward_as_is(ctx, p, a)) != CT_OK || (st = forward_padded(ctx, a, cp)) != CT_OK)
        return st;
    float t_plain = 0.0f, t_padded = 0.0f;
    if ((st = time_path(ctx, p, a, 0, &t_plain)) != CT_OK ||
        (st = time_path(ctx, p, a, cp, &t_padded)) != CT_OK)
        return st;
    p->padded = t_padded < t_plain ? 1 : 0;
    if (ctx->log_conv)
        fprintf(stderr, "cutune: conv forward (%d, %d, %d, %d) -> %d: %s (as is %.3f ms, padded "
                "to %d channels %.3f ms; %d runs each)\n", a->n, a->h, a->w, a->c, a->k,
                p->padded ? "padded" : "as is", (double)t_plain, cp, (double)t_padded, TUNE_REPS);
    /* The last run was the padded one; y must come from the way every later call takes. */
    return p->padded ? CT_OK : forward_as_is(ctx, p, a);
}

ct_status ct_cu_conv3x3_forward(void *c, const ct_conv_args *a) {
    ct_cu_ctx *ctx = (ct_cu_ctx *)c;
    ct_status st = conv_args_ok("conv3x3_forward", a);
    if (st != CT_OK) return st;
    if (!a->x || !a->wt || !a->b || !a->y)
        return ct_error(CT_EINVAL, "cuda conv3x3_forward: x, wt, b or y is NULL");
    if ((st = ct_cu_enter(ctx)) != CT_OK) return st;
    const int cp = pad_target(a->c, a->act);
    if (cp > 0 && a->act == CT_BF16) return forward_padded(ctx, a, cp);
    ct_cu_conv_plan *p = NULL;
    if ((st = plan_get(ctx, a, &p)) != CT_OK) return st;
    if (cp > 0 && p->padded < 0) return decide_padding(ctx, p, a, cp);
    if (cp > 0 && p->padded > 0) return forward_padded(ctx, a, cp);
    return forward_as_is(ctx, p, a);
}

/* ---- backward --------------------------------------------------------------------------- */

/* Backward of a bf16 plan, after dy was masked (and db summed): backward data from a bf16
 * copy of the kernel straight into the bf16 dx, and backward filter into a bf16 kernel
 * gradient that is widened into the float32 dw. */
static ct_status backward_bf16(ct_cu_ctx *ctx, ct_cu_conv_plan *p, const ct_conv_args *a,
                               bool need_dgrad, bool need_wgrad) {
    const size_t ks = (size_t)a->k * 9 * a->c;
    const size_t len[2] = {need_dgrad ? ks : 0, need_wgrad ? ks : 0};
    __nv_bfloat16 *h[2]; /* kernel, dkernel */
    ct_status st = cast_arrays(ctx, 2, len, h);
    if (st != CT_OK) return st;
    if (need_dgrad && ((st = ct_cu_to_bf16(ctx, h[0], a->wt, ks)) != CT_OK ||
                       (st = run_backward_data(ctx, p, h[0], a->dy, a->dx)) != CT_OK))
        return st;
    if (need_wgrad && ((st = run_backward_filter(ctx, p, a->x, a->dy, h[1])) != CT_OK ||
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
    ct_status st = pad_arrays(ctx, 4, len, buf);
    if (st != CT_OK) return st;
    if (need_wgrad && (st = pad_channels(ctx, a->act, buf[0], a->x, rows, a->c, cp)) != CT_OK)
        return st;
    /* The kernel is read by the data gradient only (the first layer's has none). */
    if (need_dgrad && (st = pad_channels(ctx, CT_F32, buf[1], a->wt, krows, a->c, cp)) != CT_OK)
        return st;
    ct_conv_args b = *a;
    b.c = cp;
    b.x = buf[0];
    b.wt = need_dgrad ? (const float *)buf[1] : NULL;
    b.dw = need_wgrad ? (float *)buf[2] : NULL;
    b.dx = need_dgrad ? buf[3] : NULL;
    if ((st = ct_cu_conv3x3_backward(ctx, &b, need_dgrad, need_wgrad)) != CT_OK) return st;
    if (need_wgrad && (st = unpad_channels(ctx, CT_F32, a->dw, buf[2], krows, a->c, cp)) != CT_OK)
        return st;
    if (need_dgrad && (st = unpad_channels(ctx, a->act, a->dx, buf[3], rows, a->c, cp)) != CT_OK)
        return st;
    return CT_OK;
}

ct_status ct_cu_conv3x3_backward(void *c, const ct_conv_args *a, bool need_dgrad,
                                 bool need_wgrad) {
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
    if ((st = plan_get(ctx, a, &p)) != CT_OK) return st;
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
        auto nhwc = [&]() { return run_backward_data(ctx, p, a->wt, a->dy, a->dx); };
        auto nchw = [&]() { return backward_data_nchw(ctx, p, a); };
        st = p->bwd_data_route < 0
                 ? decide_route(ctx, p, "backward data", &p->bwd_data_route, nhwc, nchw)
             : p->bwd_data_route ? nchw()
                                 : nhwc();
        if (st != CT_OK) return st;
    }
    if (need_wgrad) {
        auto nhwc = [&]() { return run_backward_filter(ctx, p, a->x, a->dy, a->dw); };
        auto nchw = [&]() { return backward_filter_nchw(ctx, p, a); };
        st = p->bwd_filter_route < 0
                 ? decide_route(ctx, p, "backward filter", &p->bwd_filter_route, nhwc, nchw)
             : p->bwd_filter_route ? nchw()
                                   : nhwc();
        if (st != CT_OK) return st;
    }
    return CT_OK;
}
