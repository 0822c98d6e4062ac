/* The private context of the CUDA backend and the internal interface between its files.
 *
 * One context per backend: the device, one compute stream, one cuDNN and one cuBLAS handle bound
 * to that stream, one grow-only workspace shared by every op, and the cache of convolution plans
 * (descriptors and timed algorithm choices per shape). Every op runs on the one stream, so ops
 * are ordered among themselves without any synchronisation; only the host-facing calls
 * (copy_to_host, check_finite, synchronize) wait for the device. Like the CPU backend's, this
 * context serves one caller at a time: the stream, the workspace and the plan cache are shared
 * by all ops without locks.
 *
 * Internal functions are named ct_cu_*; the public entry points are those of cutune/cuda.h and
 * ct_backend_cuda_init in cutune/backend.h. */
#ifndef CUTUNE_CUDA_CONTEXT_H
#define CUTUNE_CUDA_CONTEXT_H

#include <stddef.h>

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <cudnn.h>

#include "check.h"
#include "core/backend.h"
#include "cutune/cuda.h"
#include "cutune/status.h"

/* Arithmetic of convolutions and GEMMs. TF32 rounds the inputs of each multiply to 10 mantissa
 * bits on tensor cores (Ampere and newer) and accumulates in fp32. BF16 is mixed precision: the
 * model stores the backbone's activations in bf16 and its convolutions take them as they are
 * (conv.cu, bf16.cu); float32 convolutions and the dense layers run as TF32. */
typedef enum { CT_CU_FP32, CT_CU_TF32, CT_CU_BF16 } ct_cu_precision;

struct ct_cu_conv_plan; /* conv.cu */

typedef struct ct_cu_ctx {
    int device;            /* CUDA ordinal */
    ct_device_info info;   /* as ct_cu_device_open found it */
    int sm_count;          /* sizes grids of the reduction kernels */
    ct_cu_precision precision;
    bool deterministic;    /* CUTUNE_DETERMINISTIC=1: only deterministic cuDNN algorithms */
    bool log_conv;         /* CUTUNE_CONV_LOG=1: each convolution plan's choices on stderr */

    cudaStream_t stream;   /* every op runs here */
    cudnnHandle_t cudnn;   /* bound to stream */
    cublasHandle_t cublas; /* bound to stream */
    cudnnActivationDescriptor_t relu_desc; /* for the fused conv + bias + ReLU */
    cudaEvent_t tune_start, tune_stop;     /* timing fused vs. unfused forward once per shape */

    void *ws;              /* grow-only workspace: cuDNN algorithms and reduction partials */
    size_t ws_bytes;
    size_t ws_high;        /* the most any chosen convolution algorithm needs, bytes */
    size_t tune_ws_cap;    /* the most workspace an algorithm search may ask for, bytes */

    /* Grow-only scratch buffers beside the workspace: the bf16 kernels and kernel gradients of
     * bf16 convolutions, the channel-padded copies of narrow convolution inputs, and the NCHW
     * copies of fp32 convolutions that run through NCHW (conv.cu). */
    void *scratch[3];
    size_t scratch_bytes[3];
    size_t layout_high;    /* the most layout scratch a direction that chose NCHW needs, bytes */
    size_t layout_last;    /* the layout scratch the last NCHW run asked for, bytes */

    /* Streaming inputs: a second stream for host-to-device copies, and per staging slot an
     * event recorded when its copies are queued (ready) and one recorded on the compute stream
     * when the ops reading it are queued (released). cudaStreamWaitEvent on an event never
     * recorded returns at once, so a fresh slot needs no special case. */
    cudaStream_t copy_stream;
    cudaEvent_t stage_ready[CT_STAGE_SLOTS], stage_released[CT_STAGE_SLOTS];
    /* Recorded after each allocation's zero-fill on the compute stream, and waited for by the
     * copy stream: a first copy into fresh memory must not race its memset. */
    cudaEvent_t alloc_done;

    cudaEvent_t *marks;    /* (CT_MARKS) profiling events, created on first use */

    int *flag_dev;         /* (1) check_finite result on the device */
    int *flag_host;        /* (1) pinned, so its copy is a real asynchronous DMA */

    struct ct_cu_conv_plan **plans; /* (n_plans) cached per (n, h, w, c, k) */
    int n_plans, cap_plans;
} ct_cu_ctx;

/* device.cu */

/* Checks that `device` exists and can run this build, fills `info` and leaves it current;
 * CT_ENODEV with the reason otherwise. */
ct_status ct_cu_device_open(int device, ct_device_info *info);

/* backend.cu */

/* Makes the workspace at least `bytes` large. Growing waits for the stream, because work already
 * queued may still read the old buffer. *out gets the workspace (NULL when bytes is 0). */
ct_status ct_cu_workspace(ct_cu_ctx *ctx, size_t bytes, void **out);

/* Scratch buffer `which` made at least `bytes` large (grown as the workspace is, waiting for the
 * stream first). */
enum { CT_CU_SCRATCH_CAST, CT_CU_SCRATCH_PAD, CT_CU_SCRATCH_LAYOUT, CT_CU_SCRATCH_COUNT };
ct_status ct_cu_scratch(ct_cu_ctx *ctx, int which, size_t bytes, void **out);
/* Frees scratch buffer `which` (after the stream's work is done); the next ct_cu_scratch grows
 * it again. */
ct_status ct_cu_scratch_release(ct_cu_ctx *ctx, int which);

/* Makes the context's device current on the calling thread: the runtime's current device is per
 * thread, and a loader or checkpoint thread may call into the backend. */
ct_status ct_cu_enter(ct_cu_ctx *ctx);

/* A grid for a grid-stride loop over `count` items: enough blocks to fill the device a few times
 * over, never more than needed. */
unsigned ct_cu_grid(const ct_cu_ctx *ctx, size_t count, unsigned threads);

/* Whether a kernel may index `count` elements with 32-bit integers. Index arithmetic with
 * division and modulo is several times cheaper in 32 bits (64-bit division is emulated), which
 * matters for memory-bound kernels over large activations; below 2^31 the last index plus a
 * grid-stride step cannot wrap around. */
static inline bool ct_cu_fits_32(size_t count) { return count < ((size_t)1 << 31); }

/* memory.cu */
ct_status ct_cu_alloc(void *ctx, void **out, size_t bytes);
void ct_cu_release(void *ctx, void *p);
ct_status ct_cu_copy_to_device(void *ctx, void *dst, const void *src, size_t bytes);
ct_status ct_cu_copy_to_host(void *ctx, void *dst, const void *src, size_t bytes);
ct_status ct_cu_synchronize(void *ctx);
ct_status ct_cu_host_alloc(void *ctx, void **out, size_t bytes);
void ct_cu_host_release(void *ctx, void *p);
ct_status ct_cu_stage_copy(void *ctx, int slot, void *dst, const void *src, size_t bytes);
ct_status ct_cu_stage_acquire(void *ctx, int slot);
ct_status ct_cu_stage_release(void *ctx, int slot);
ct_status ct_cu_stage_sync(void *ctx, int slot);
ct_status ct_cu_mark(void *ctx, int index);
ct_status ct_cu_elapsed_ms(void *ctx, int from, int to, float *ms);

/* The arithmetic ops, one per row of CT_BACKEND_MATH_OPS, each in the file of its kind:
 * conv.cu (conv3x3_*), pool.cu, dense.cu, elementwise.cu (dropout, concat, check_finite, flip),
 * loss.cu, bf16.cu (cast), augment.cu, optim.cu. */
#define CT_CU_DECLARE(name, params) ct_status ct_cu_##name params;
CT_BACKEND_MATH_OPS(CT_CU_DECLARE)
#undef CT_CU_DECLARE

/* conv.cu: destroys every cached plan; called by the context's free. */
void ct_cu_conv_plans_free(ct_cu_ctx *ctx);

/* elementwise.cu: pieces shared by conv and dense, on row-major (rows, cols) data whose column
 * is the channel (NHWC activations, dense outputs). */

/* Loads and stores of activation elements, float32 or bf16, as float32 arithmetic sees them:
 * kernels templated on the element type use these. */
__host__ __device__ __forceinline__ float ct_cu_ld(const float *p) { return *p; }
__host__ __device__ __forceinline__ float ct_cu_ld(const __nv_bfloat16 *p) {
    return __bfloat162float(*p);
}
__host__ __device__ __forceinline__ void ct_cu_st(float *p, float v) { *p = v; }
__host__ __device__ __forceinline__ void ct_cu_st(__nv_bfloat16 *p, float v) {
    *p = __float2bfloat16_rn(v);
}

/* y = y + b[col], then ReLU when `relu`. */
ct_status ct_cu_bias_act(ct_cu_ctx *ctx, float *y, const float *b, size_t rows, int cols,
                         bool relu);
/* dy = (y > 0 ? dy : 0), elementwise over `count` values of type dt: the ReLU's gradient
 * mask. */
ct_status ct_cu_relu_mask(ct_cu_ctx *ctx, ct_dtype dt, void *dy, const void *y, size_t count);
/* db[col] = sum over rows of dy[row, col]; when y is not NULL, dy is first masked in place as
 * by ct_cu_relu_mask, in the same pass. Deterministic: fixed-order partial sums, no atomics. Uses the
 * workspace for the partial sums, so call it before anything else that uses the workspace in
 * the same op. */
ct_status ct_cu_bias_grad(ct_cu_ctx *ctx, ct_dtype dt, float *db, void *dy, const void *y,
                          size_t rows, int cols);

/* bf16.cu */
ct_status ct_cu_to_bf16(ct_cu_ctx *ctx, __nv_bfloat16 *dst, const float *src, size_t count);
ct_status ct_cu_from_bf16(ct_cu_ctx *ctx, float *dst, const __nv_bfloat16 *src, size_t count);
/* y = rn(act(float(y) + b[col])) in place over (rows, cols) of bf16. */
ct_status ct_cu_bias_act_bf16(ct_cu_ctx *ctx, __nv_bfloat16 *y, const float *b, size_t rows,
                              int cols, bool relu);

#endif
