/* The choices the CUDA convolutions make by measuring, once per shape (conv_internal.h).
 *
 * Algorithms: cudnnFind*AlgorithmEx on the real buffers of the first call, among the
 * algorithms that respect the precision policy (fp32: FMA kernels only; tf32: tensor cores
 * allowed), CUTUNE_DETERMINISTIC and the workspace policy. A search hands cuDNN at most
 * CUTUNE_WORKSPACE_MB (1 GiB by default) and what the device can spare, and the grow-only
 * workspace then keeps what the chosen algorithms need. fp32 plans are the exception: their
 * fast FMA algorithm (cuDNN's algorithm 1 on an H100) needs about twice the input tensor in
 * workspace, 803 MB at (64, 112, 112, 128) and over the cap from VGG16's block1 at batch 64,
 * and without it the search fell back to algorithm 0, 50 to 100 times slower. So fp32
 * searches look up to WIDE_CAP_FACTOR times the cap (as far as the device has room) and take
 * an algorithm beyond the cap when it is at least WIDE_GAIN times faster than the best within
 * it. A bf16 plan's backward filter takes the fastest deterministic algorithm: on an H100 the
 * others gave kernel gradients several bf16 steps from one rounding of the float32 sum, and
 * different ones on each run.
 *
 * The fused call: cudnnConvolutionBiasActivationForward does y = ReLU(conv(x) + b) in one
 * call where the cuDNN version and GPU support it for the shape; it is timed against the
 * convolution followed by the epilogue kernel, and the faster kept.
 *
 * Narrow inputs: TF32 tensor-core kernels want the channel count a multiple of 4, and VGG's
 * first convolution reads 3; such a float32 shape times itself as it is against zero-padded
 * channels (conv_layout.cu) and keeps the faster.
 *
 * CUTUNE_CONV_LOG=1 prints every choice with the times compared; CUTUNE_DETERMINISTIC=1
 * times nothing: algorithms from cuDNN's heuristics, no fused call, no timed padding. */
#include <stdio.h>
#include <stdlib.h>

#include "conv_internal.h"

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
                    dir, ct_cu_conv_plan_type(p), p->n, p->h, p->w, p->c, p->k, limit >> 20,
                    ct_cu_conv_precision_name(ctx),
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
    CT_CU_CHECK(cudnnSetConvolutionMathType(p->conv_desc, ct_cu_conv_base_math(ctx, p)));
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
    size_t limit = look ? tune_limit(ctx, max_need, WIDE_CAP_FACTOR * ctx->tune_ws_cap) : cap_limit;
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
        fprintf(stderr,
                "cutune: conv %s %s (%d, %d, %d, %d) -> %d: algorithm %d, %s, %s, "
                "%.1f ms, %zu KiB workspace\n",
                dir, ct_cu_conv_plan_type(p), p->n, p->h, p->w, p->c, p->k, (int)chosen->algo,
                ct_cu_conv_math_name(chosen->mathType),
                chosen->determinism == CUDNN_DETERMINISTIC ? "deterministic" : "non-deterministic",
                (double)chosen->time, chosen->memory >> 10);
    if (ctx->log_conv && j >= 0 && j != i)
        fprintf(stderr,
                "cutune: conv %s %s (%d, %d, %d, %d) -> %d: past the workspace cap, "
                "algorithm %d would take %.1f ms with %zu KiB\n",
                dir, ct_cu_conv_plan_type(p), p->n, p->h, p->w, p->c, p->k, (int)perf[j].algo,
                (double)perf[j].time, perf[j].memory >> 10);
    /* An alt plan's choice counts toward the workspace kept only once its route is taken
     * (alt_ws_taken): a losing NCHW trial must not keep the workspace large. */
    return tune_done(ctx, p->nchw ? 0 : chosen->memory);
}

ct_status ct_cu_conv_tune_forward(ct_cu_ctx *ctx, ct_cu_conv_plan *p, const void *x, const void *wt,
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
                return cudnnGetConvolutionForwardAlgorithm_v7(
                    ctx->cudnn, p->x_desc, p->w_desc, p->conv_desc, p->y_desc,
                    CUDNN_CONVOLUTION_FWD_ALGO_COUNT, got, perf);
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

ct_status ct_cu_conv_tune_backward_data(ct_cu_ctx *ctx, ct_cu_conv_plan *p, const void *wt,
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

ct_status ct_cu_conv_tune_backward_filter(ct_cu_ctx *ctx, ct_cu_conv_plan *p, const void *x,
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

static ct_status time_forward(ct_cu_ctx *ctx, ct_cu_conv_plan *p, const ct_conv_args *a, void *ws,
                              bool fused, float *ms) {
    return ct_cu_conv_time_reps(
        ctx,
        [&]() {
            return fused ? CT_CU_STATUS(ct_cu_conv_forward_fused(ctx, p, a, ws))
                         : ct_cu_conv_forward_separate(ctx, p, a, ws);
        },
        ms);
}

/* Decides once per shape whether the fused call is supported and faster; leaves y computed. */
ct_status ct_cu_conv_decide_fusion(ct_cu_ctx *ctx, ct_cu_conv_plan *p, const ct_conv_args *a,
                                   void *ws) {
    if (ctx->deterministic) { /* no timing: the same choice on every run */
        p->fused = 0;
        return ct_cu_conv_forward_separate(ctx, p, a, ws);
    }
    cudnnStatus_t s = ct_cu_conv_forward_fused(ctx, p, a, ws);
    if (s != CUDNN_STATUS_SUCCESS) {
        /* Not every algorithm, layout and cuDNN version supports the fused call; falling back is
         * the intended use, not an error. A real device fault will show again in the separate
         * path and be reported there. A launch error cuDNN may have left behind is cleared so
         * that the separate path's launch check does not report it as its own. */
        (void)cudaGetLastError();
        p->fused = 0;
        if (ctx->log_conv)
            fprintf(stderr,
                    "cutune: conv forward float32 (%d, %d, %d, %d) -> %d: bias + ReLU "
                    "separate (the fused call: %s)\n",
                    p->n, p->h, p->w, p->c, p->k, cudnnGetErrorString(s));
        return ct_cu_conv_forward_separate(ctx, p, a, ws);
    }
    float t_fused = 0.0f, t_separate = 0.0f;
    ct_status st = time_forward(ctx, p, a, ws, true, &t_fused);
    if (st != CT_OK) return st;
    st = time_forward(ctx, p, a, ws, false, &t_separate);
    if (st != CT_OK) return st;
    p->fused = t_fused < t_separate ? 1 : 0;
    if (ctx->log_conv)
        fprintf(stderr,
                "cutune: conv forward float32 (%d, %d, %d, %d) -> %d: bias + ReLU %s "
                "(%d runs: fused call %.3f ms, convolution then epilogue %.3f ms)\n",
                p->n, p->h, p->w, p->c, p->k, p->fused ? "fused" : "separate", TUNE_REPS,
                (double)t_fused, (double)t_separate);
    /* y must come from the path every later call will take, so that the first call's result
     * is bitwise the same as theirs; the last timed run was the separate one. */
    if (p->fused) CT_CU_CHECK(ct_cu_conv_forward_fused(ctx, p, a, ws));
    return CT_OK;
}

static ct_status time_path(ct_cu_ctx *ctx, ct_cu_conv_plan *p, const ct_conv_args *a, int cp,
                           float *ms) {
    return ct_cu_conv_time_reps(
        ctx,
        [&]() {
            return cp > 0 ? ct_cu_conv_forward_padded(ctx, a, cp)
                          : ct_cu_conv_forward_as_is(ctx, p, a);
        },
        ms);
}

/* Decides once per narrow shape whether padding pays; leaves y computed by the chosen way. Each
 * way runs once untimed first, so that its algorithm searches are not what gets timed. */
ct_status ct_cu_conv_decide_padding(ct_cu_ctx *ctx, ct_cu_conv_plan *p, const ct_conv_args *a,
                                    int cp) {
    /* CUTUNE_CONV_PAD=always|never overrides the timing (tests, benchmarks). */
    const int force = ct_knob_conv_pad();
    if (force == 1) {
        p->padded = 1;
        return ct_cu_conv_forward_padded(ctx, a, cp);
    }
    if (force == 0 || (force < 0 && ctx->deterministic)) {
        p->padded = 0;
        return ct_cu_conv_forward_as_is(ctx, p, a);
    }
    ct_status st = ct_cu_conv_forward_as_is(ctx, p, a);
    if (st != CT_OK) return st;
    if (ct_cu_conv_forward_padded(ctx, a, cp) != CT_OK) {
        /* No algorithm, or no memory, for the padded shape: the plain way stays. */
        (void)cudaGetLastError();
        p->padded = 0;
        return ct_cu_conv_forward_as_is(ctx, p, a);
    }
    /* Once more each, untimed: the workspace only grows from here on, so no reallocation
     * lands inside a timed run. */
    if ((st = ct_cu_conv_forward_as_is(ctx, p, a)) != CT_OK ||
        (st = ct_cu_conv_forward_padded(ctx, a, cp)) != CT_OK)
        return st;
    float t_plain = 0.0f, t_padded = 0.0f;
    if ((st = time_path(ctx, p, a, 0, &t_plain)) != CT_OK ||
        (st = time_path(ctx, p, a, cp, &t_padded)) != CT_OK)
        return st;
    p->padded = t_padded < t_plain ? 1 : 0;
    if (ctx->log_conv)
        fprintf(stderr,
                "cutune: conv forward (%d, %d, %d, %d) -> %d: %s (as is %.3f ms, padded "
                "to %d channels %.3f ms; %d runs each)\n",
                a->n, a->h, a->w, a->c, a->k, p->padded ? "padded" : "as is", (double)t_plain, cp,
                (double)t_padded, TUNE_REPS);
    /* The last run was the padded one; y must come from the way every later call takes. */
    return p->padded ? CT_OK : ct_cu_conv_forward_as_is(ctx, p, a);
}
