/* The CUDA backend's context: creation, teardown, the op table and the shared workspace.
 *
 * ct_backend_cuda_init opens the device, creates one compute stream with the cuDNN and cuBLAS
 * handles bound to it, reads the precision policy from the environment, and fills the op table
 * whose functions live in the other files of cuda/. Initialisation has many steps that can each
 * fail; it backs out through `goto fail_x` labels in the reverse order of creation, so a failure
 * leaks nothing and leaves the backend zeroed.
 *
 * Options (ct_backend_options), else the environment (core/knobs.h), read at init:
 *   precision, CUTUNE_PRECISION=tf32|fp32|bf16  tf32 (default) lets cuDNN and cuBLAS use
 *                               TF32 tensor cores on fp32 data; fp32 forbids it; bf16 is mixed precision:
 *                               models keep the backbone's activations in bf16 and convolve them
 *                               on bf16 tensor cores (bf16.cu; compute capability 8.0+).
 *   deterministic, CUTUNE_DETERMINISTIC=1  only deterministic cuDNN algorithms, chosen by cuDNN's
 *                               heuristics rather than by timing, and no timed choices of
 *                               fusion or padding: bitwise repeatable runs on the same GPU,
 *                               cuDNN and settings (sometimes slower weight gradients).
 *   CUTUNE_WORKSPACE_MB=N       the most workspace a chosen algorithm may need (default 1024;
 *                               fp32 plans may exceed it for a 2x faster one, conv.cu).
 *   CUTUNE_CONV_PAD=always|never  narrow convolution inputs (VGG16's 3 channels) through
 *                               zero-padded channels, or never; by default the faster way,
 *                               timed once per shape (conv.cu). Read when a shape is decided.
 *   CUTUNE_CONV_LAYOUT=nchw|nhwc  float32 convolutions through NCHW copies (where cuDNN has
 *                               FFT and Winograd algorithms), or never; by default fp32 runs
 *                               time both once per shape and direction (conv.cu). */
#include <stdlib.h>
#include <string.h>

#include "core/knobs.h"
#include "context.h"

/* Algorithm searches may ask for at most this much workspace unless told otherwise: enough for
 * every fast VGG16 algorithm at batch sizes that fit beside the activations, and not so much
 * that an FFT variant's multi-gigabyte request is granted and then kept by the grow-only
 * workspace. */
#define DEFAULT_TUNE_WS_MB 1024

/* The workspace grows in steps of this size so that slightly different requests of successive
 * layers do not each cost a synchronisation and a reallocation. */
#define WS_GRANULE ((size_t)1 << 20)

/* The precision asked for (the options, else CUTUNE_PRECISION), tf32 when neither says. */
static ct_status read_precision(const ct_backend_options *o, ct_cu_precision *out) {
    const char *s = o != NULL ? o->precision : NULL;
    if (s == NULL) {
        ct_status st = ct_knob_precision(&s);
        if (st != CT_OK) return st;
    }
    if (s == NULL || strcmp(s, "tf32") == 0) *out = CT_CU_TF32;
    else if (strcmp(s, "fp32") == 0) *out = CT_CU_FP32;
    else if (strcmp(s, "bf16") == 0) *out = CT_CU_BF16;
    else return ct_error(CT_EINVAL, "precision '%s': expected tf32, fp32 or bf16", s);
    return CT_OK;
}

ct_status ct_cu_enter(ct_cu_ctx *ctx) {
    CT_CU_CHECK(cudaSetDevice(ctx->device));
    return CT_OK;
}

unsigned ct_cu_grid(const ct_cu_ctx *ctx, size_t count, unsigned threads) {
    size_t needed = (count + threads - 1) / threads;
    /* Eight blocks of 256 threads per SM keep every SM busy; more only adds scheduling. */
    size_t full = (size_t)ctx->sm_count * 8;
    size_t g = needed < full ? needed : full;
    return g > 0 ? (unsigned)g : 1u;
}


/* Grows a grow-only device buffer to at least `bytes` (in WS_GRANULE steps). Queued work may
 * still read the old buffer: cudaFree would wait for the whole device, this waits for our stream
 * only, which is all that uses it. */
static ct_status grow_buffer(ct_cu_ctx *ctx, void **buf, size_t *have, size_t bytes,
                             const char *what) {
    if (bytes <= *have) return CT_OK;
    size_t grown = (bytes + WS_GRANULE - 1) / WS_GRANULE * WS_GRANULE;
    CT_CU_CHECK(cudaStreamSynchronize(ctx->stream));
    if (*buf) {
        CT_CU_CHECK(cudaFree(*buf));
        *buf = NULL;
        *have = 0;
    }
    cudaError_t e = cudaMalloc(buf, grown);
    if (e != cudaSuccess) {
        *buf = NULL;
        size_t free_b = 0, total_b = 0;
        (void)cudaGetLastError();
        if (cudaMemGetInfo(&free_b, &total_b) != cudaSuccess) (void)cudaGetLastError();
        return ct_error(e == cudaErrorMemoryAllocation ? CT_EDEVMEM : CT_EDEVICE,
                        "cuda %s: cudaMalloc of %zu MiB failed: %s (%zu MiB free of %zu MiB of "
                        "device memory); try a smaller batch size",
                        what, grown >> 20, cudaGetErrorString(e), free_b >> 20, total_b >> 20);
    }
    *have = grown;
    return CT_OK;
}

ct_status ct_cu_workspace(ct_cu_ctx *ctx, size_t bytes, void **out) {
    ct_status st = grow_buffer(ctx, &ctx->ws, &ctx->ws_bytes, bytes, "workspace");
    if (st != CT_OK) return st;
    if (out) *out = bytes > 0 ? ctx->ws : NULL;
    return CT_OK;
}

ct_status ct_cu_scratch(ct_cu_ctx *ctx, int which, size_t bytes, void **out) {
    static const char *const names[CT_CU_SCRATCH_COUNT] = {
        "bf16 cast buffer", "channel padding buffer", "NCHW layout buffer"};
    ct_status st = grow_buffer(ctx, &ctx->scratch[which], &ctx->scratch_bytes[which], bytes,
                               names[which]);
    if (st != CT_OK) return st;
    *out = ctx->scratch[which];
    return CT_OK;
}

ct_status ct_cu_scratch_release(ct_cu_ctx *ctx, int which) {
    if (!ctx->scratch[which]) return CT_OK;
    CT_CU_CHECK(cudaStreamSynchronize(ctx->stream));
    CT_CU_CHECK(cudaFree(ctx->scratch[which]));
    ctx->scratch[which] = NULL;
    ctx->scratch_bytes[which] = 0;
    return CT_OK;
}

/* The copy stream and the slots' events; a partly created set is destroyed as far as it got
 * (handles that were never created are zero). */
static void destroy_staging(ct_cu_ctx *ctx) {
    if (ctx->copy_stream) CT_CU_DISCARD(cudaStreamSynchronize(ctx->copy_stream));
    for (int i = 0; i < CT_STAGE_SLOTS; i++) {
        if (ctx->stage_ready[i]) CT_CU_DISCARD(cudaEventDestroy(ctx->stage_ready[i]));
        if (ctx->stage_released[i]) CT_CU_DISCARD(cudaEventDestroy(ctx->stage_released[i]));
        ctx->stage_ready[i] = ctx->stage_released[i] = NULL;
    }
    if (ctx->alloc_done) CT_CU_DISCARD(cudaEventDestroy(ctx->alloc_done));
    ctx->alloc_done = NULL;
    if (ctx->copy_stream) CT_CU_DISCARD(cudaStreamDestroy(ctx->copy_stream));
    ctx->copy_stream = NULL;
}

static ct_status create_staging(ct_cu_ctx *ctx) {
    ct_status st = CT_CU_STATUS(cudaStreamCreateWithFlags(&ctx->copy_stream,
                                                          cudaStreamNonBlocking));
    if (st == CT_OK)
        st = CT_CU_STATUS(cudaEventCreateWithFlags(&ctx->alloc_done, cudaEventDisableTiming));
    /* The host waits on stage_ready (stage_sync) while loader threads decode: blocking sync
     * yields the core instead of spinning on it. */
    for (int i = 0; st == CT_OK && i < CT_STAGE_SLOTS; i++) {
        st = CT_CU_STATUS(cudaEventCreateWithFlags(&ctx->stage_ready[i],
                                                   cudaEventDisableTiming |
                                                       cudaEventBlockingSync));
        if (st == CT_OK)
            st = CT_CU_STATUS(cudaEventCreateWithFlags(&ctx->stage_released[i],
                                                       cudaEventDisableTiming));
    }
    if (st != CT_OK) destroy_staging(ctx);
    return st;
}


static void cuda_free(void *p) {
    ct_cu_ctx *ctx = (ct_cu_ctx *)p;
    if (!ctx) return;
    /* Teardown cannot report failures (see CT_CU_DISCARD); it releases everything it can. */
    CT_CU_DISCARD(cudaSetDevice(ctx->device));
    CT_CU_DISCARD(cudaStreamSynchronize(ctx->stream));
    ct_cu_conv_plans_free(ctx);
    free(ctx->plans);
    if (ctx->ws) CT_CU_DISCARD(cudaFree(ctx->ws));
    for (int i = 0; i < CT_CU_SCRATCH_COUNT; i++)
        if (ctx->scratch[i]) CT_CU_DISCARD(cudaFree(ctx->scratch[i]));
    CT_CU_DISCARD(cudaFreeHost(ctx->flag_host));
    CT_CU_DISCARD(cudaFree(ctx->flag_dev));
    destroy_staging(ctx);
    for (int i = 0; ctx->marks && i < CT_MARKS; i++)
        if (ctx->marks[i]) CT_CU_DISCARD(cudaEventDestroy(ctx->marks[i]));
    free(ctx->marks);
    CT_CU_DISCARD(cudaEventDestroy(ctx->tune_stop));
    CT_CU_DISCARD(cudaEventDestroy(ctx->tune_start));
    CT_CU_DISCARD(cudnnDestroyActivationDescriptor(ctx->relu_desc));
    CT_CU_DISCARD(cublasDestroy(ctx->cublas));
    CT_CU_DISCARD(cudnnDestroy(ctx->cudnn));
    CT_CU_DISCARD(cudaStreamDestroy(ctx->stream));
    free(ctx);
}

static const char *cuda_precision(void *c) {
    ct_cu_precision p = ((const ct_cu_ctx *)c)->precision;
    return p == CT_CU_FP32 ? "fp32" : p == CT_CU_TF32 ? "tf32" : "bf16";
}

/* In the order of ct_backend_ops; C++17 has no designated initialisers. */
static const ct_backend_ops cuda_ops = {
    "cuda",
    cuda_free,
    cuda_precision,
    ct_cu_alloc,
    ct_cu_release,
    ct_cu_copy_to_device,
    ct_cu_copy_to_host,
    ct_cu_synchronize,
#define CT_CU_MEMBER(name, params) ct_cu_##name,
    CT_BACKEND_MATH_OPS(CT_CU_MEMBER)
#undef CT_CU_MEMBER
    ct_cu_host_alloc,
    ct_cu_host_release,
    ct_cu_stage_copy,
    ct_cu_stage_acquire,
    ct_cu_stage_release,
    ct_cu_stage_sync,
    ct_cu_mark,
    ct_cu_elapsed_ms,
};

extern "C" ct_status ct_backend_cuda_init(ct_backend *be, int device) {
    return ct_backend_cuda_open(be, device, NULL);
}

extern "C" ct_status ct_backend_cuda_open(ct_backend *be, int device,
                                          const ct_backend_options *o) {
    if (!be) return ct_error(CT_EINVAL, "ct_backend_cuda_open: backend is NULL");
    be->ops = NULL;
    be->ctx = NULL;

    /* The device first: on a machine without one, CT_ENODEV is the answer that lets "auto"
     * fall back to the CPU, whatever the environment says about precision. */
    ct_device_info info;
    ct_status st = ct_cu_device_open(device, &info); /* leaves the device current */
    if (st != CT_OK) return st;
    ct_cu_precision precision;
    size_t tune_cap;
    if ((st = read_precision(o, &precision)) != CT_OK) return st;
    if (precision == CT_CU_BF16 && !info.tensor_cores_bf16)
        return ct_error(CT_EUNSUPPORTED, "CUTUNE_PRECISION=bf16 needs bf16 tensor cores (compute "
                        "capability 8.0 or newer); %s is %d.%d: use tf32 or fp32", info.name,
                        info.cc_major, info.cc_minor);
    if ((st = ct_knob_workspace((size_t)DEFAULT_TUNE_WS_MB << 20, &tune_cap)) != CT_OK)
        return st;

    ct_cu_ctx *ctx = (ct_cu_ctx *)calloc(1, sizeof *ctx);
    if (!ctx) return ct_error(CT_ENOMEM, "cuda backend: out of host memory for the context");
    ctx->device = device;
    ctx->info = info;
    ctx->sm_count = info.sm_count > 0 ? info.sm_count : 1;
    ctx->precision = precision;
    ctx->deterministic = (o != NULL && o->deterministic) || ct_knob_deterministic();
    ctx->log_conv = ct_knob_conv_log();
    ctx->tune_ws_cap = tune_cap;

    /* Each label below is named after the step that failed and undoes the steps before it. */
    /* Non-blocking: nothing of ours runs on the legacy default stream, and work other
     * libraries put there must not serialise with the training step. */
    CT_CU_CHECK_GOTO(st, cudaStreamCreateWithFlags(&ctx->stream, cudaStreamNonBlocking),
                     fail_stream);
    CT_CU_CHECK_GOTO(st, cudnnCreate(&ctx->cudnn), fail_cudnn);
    CT_CU_CHECK_GOTO(st, cudnnSetStream(ctx->cudnn, ctx->stream), fail_cublas);
    CT_CU_CHECK_GOTO(st, cublasCreate(&ctx->cublas), fail_cublas);
    CT_CU_CHECK_GOTO(st, cublasSetStream(ctx->cublas, ctx->stream), fail_relu);
    /* cuBLAS's default math never uses TF32 for sgemm; TF32_TENSOR_OP_MATH allows it. The
     * convolutions get the same policy through their descriptors' math type (conv.cu). */
    CT_CU_CHECK_GOTO(st,
                     cublasSetMathMode(ctx->cublas, precision != CT_CU_FP32
                                                        ? CUBLAS_TF32_TENSOR_OP_MATH
                                                        : CUBLAS_DEFAULT_MATH),
                     fail_relu);
    CT_CU_CHECK_GOTO(st, cudnnCreateActivationDescriptor(&ctx->relu_desc), fail_relu);
    /* Propagating NaN makes the fused ReLU agree with the separate bias + ReLU kernel and the
     * CPU backend, which compute (v < 0 ? 0 : v): a NaN must reach check_finite, not become 0. */
    CT_CU_CHECK_GOTO(st,
                     cudnnSetActivationDescriptor(ctx->relu_desc, CUDNN_ACTIVATION_RELU,
                                                  CUDNN_PROPAGATE_NAN, 0.0),
                     fail_events);
    CT_CU_CHECK_GOTO(st, cudaEventCreate(&ctx->tune_start), fail_events);
    CT_CU_CHECK_GOTO(st, cudaEventCreate(&ctx->tune_stop), fail_stop);
    CT_CU_CHECK_GOTO(st, cudaMalloc(&ctx->flag_dev, sizeof(int)), fail_flag_dev);
    CT_CU_CHECK_GOTO(st, cudaMallocHost(&ctx->flag_host, sizeof(int)), fail_flag_host);
    if ((st = create_staging(ctx)) != CT_OK) goto fail_staging;

    be->ops = &cuda_ops;
    be->ctx = ctx;
    return CT_OK;

fail_staging:
    CT_CU_DISCARD(cudaFreeHost(ctx->flag_host));
fail_flag_host:
    CT_CU_DISCARD(cudaFree(ctx->flag_dev));
fail_flag_dev:
    CT_CU_DISCARD(cudaEventDestroy(ctx->tune_stop));
fail_stop:
    CT_CU_DISCARD(cudaEventDestroy(ctx->tune_start));
fail_events:
    CT_CU_DISCARD(cudnnDestroyActivationDescriptor(ctx->relu_desc));
fail_relu:
    CT_CU_DISCARD(cublasDestroy(ctx->cublas));
fail_cublas:
    CT_CU_DISCARD(cudnnDestroy(ctx->cudnn));
fail_cudnn:
    CT_CU_DISCARD(cudaStreamDestroy(ctx->stream));
fail_stream:
    free(ctx);
    return st;
}

extern "C" ct_status ct_cuda_backend_device(const ct_backend *be, ct_device_info *info) {
    if (!be || be->ops != &cuda_ops || !be->ctx || !info)
        return ct_error(CT_EINVAL, "not a CUDA backend");
    *info = ((const ct_cu_ctx *)be->ctx)->info;
    return CT_OK;
}
