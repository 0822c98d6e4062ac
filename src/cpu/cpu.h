/* The CPU backend's private interface: its context and the ops each file implements. */
#ifndef CUTUNE_CPU_H
#define CUTUNE_CPU_H

#include <stddef.h>

#include "core/backend.h"

/* Staging slots (backend.h): the CPU copies at once, but checks the protocol the CUDA backend
 * relies on, and with CUTUNE_CPU_LAZY_STAGING=1 defers each copy to the latest moment the
 * protocol allows (the slot's acquire or sync), as an asynchronous copy may land: a caller that
 * reuses a host buffer too early, or reads a slot it has not acquired, then computes with
 * other data and the tests comparing runs see it. */
#define CT_CPU_STAGE_COPIES 8
typedef enum { CT_SLOT_FREE, CT_SLOT_ACQUIRED } ct_cpu_slot_state;
typedef struct ct_cpu_stage {
    ct_cpu_slot_state state;
    int n_pending;
    struct {
        void *dst;
        const void *src;
        size_t bytes;
    } pending[CT_CPU_STAGE_COPIES];
} ct_cpu_stage;

struct ct_dnnl;

typedef struct ct_cpu_ctx {
    int threads;       /* OpenMP and OpenBLAS threads */
    /* fp32 convolutions and max-pool backward through oneDNN (onednn_*.c), whole batch per
     * call; NULL with CUTUNE_CPU_KERNELS=reference, which keeps the hand-written im2col +
     * OpenBLAS path (conv.c, pool.c) that the tests compare oneDNN against. */
    struct ct_dnnl *dnnl;
    bool bf16;         /* precision "bf16": emulated (backend.h, ct_backend_cpu_open) */
    float *workspace;  /* grow-only scratch shared by all ops (im2col columns) */
    size_t workspace_floats;
    bool lazy_staging; /* CUTUNE_CPU_LAZY_STAGING=1 */
    ct_cpu_stage stage[CT_STAGE_SLOTS];
    double marks[CT_MARKS]; /* seconds, CLOCK_MONOTONIC */
} ct_cpu_ctx;

/* Returns scratch of at least `floats` floats, growing the workspace when needed. Ops are called
 * one at a time, so one buffer serves them all (darknet). */
ct_status ct_cpu_workspace(ct_cpu_ctx *c, size_t floats, float **out);

/* Host bytes the backend holds for computing beside the model's arenas: the im2col workspace,
 * oneDNN's scratchpad and max pooling's winners. They only grow, so after a step this is the
 * peak. */
size_t ct_cpu_scratch_bytes(const ct_cpu_ctx *c);

/* The oneDNN context (onednn.c): *out stays NULL in a build without oneDNN 2.x
 * (onednn_absent.c), and the backend keeps its reference kernels. Host bytes it holds for
 * computing: the scratchpad, the reorder buffer and the extra scratch. */
ct_status ct_dnnl_init(struct ct_dnnl **out);
void ct_dnnl_free(struct ct_dnnl *d); /* NULL is a no-op */
size_t ct_dnnl_bytes(const struct ct_dnnl *d);

/* The oneDNN ops (onednn_conv.c, onednn_pool.c): float32 only, c->dnnl not NULL. The max-pool
 * backward finds the winners again from x. */
ct_status ct_cpu_dnnl_conv_forward(ct_cpu_ctx *c, const ct_conv_args *a);
ct_status ct_cpu_dnnl_conv_backward(ct_cpu_ctx *c, const ct_conv_args *a, bool need_dgrad,
                                    bool need_wgrad);
ct_status ct_cpu_dnnl_maxpool_backward(ct_cpu_ctx *c, float *dx, const float *dy, const float *x,
                                       int n, int h, int w, int ch);

/* The arithmetic ops, one per row of CT_BACKEND_MATH_OPS: ct_cpu_conv3x3_forward, ... */
#define CT_CPU_DECLARE(name, params) ct_status ct_cpu_##name params;
CT_BACKEND_MATH_OPS(CT_CPU_DECLARE)
#undef CT_CPU_DECLARE

/* Host memory for float copies of bf16 tensors (the emulated bf16 ops widen, compute in float32
 * and round back): arrays of counts[i] floats, each freed with free(); NULL on failure. */
ct_status ct_cpu_temp(int arrays, const size_t *counts, float **out);

/* Multiplies dy by the ReLU mask (y > 0) in place: the gradient before the activation. */
void ct_cpu_relu_backward_inplace(float *dy, const float *y, size_t count);

#endif
