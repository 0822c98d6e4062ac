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

typedef struct ct_cpu_ctx {
    int threads;       /* OpenMP and OpenBLAS threads */
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

ct_status ct_cpu_conv3x3_forward(void *ctx, const ct_conv_args *a);
ct_status ct_cpu_conv3x3_backward(void *ctx, const ct_conv_args *a, bool need_dgrad,
                                  bool need_wgrad);
ct_status ct_cpu_maxpool_forward(void *ctx, ct_dtype dt, void *y, const void *x, int n, int h,
                                 int w, int c);
ct_status ct_cpu_maxpool_backward(void *ctx, ct_dtype dt, void *dx, const void *dy, const void *x,
                                  const void *y, int n, int h, int w, int c);
ct_status ct_cpu_global_pool_forward(void *ctx, ct_global_pool kind, float *y, const float *x,
                                     int n, int h, int w, int c);
ct_status ct_cpu_global_pool_backward(void *ctx, ct_global_pool kind, float *dx, const float *dy,
                                      const float *x, const float *y, int n, int h, int w, int c);
ct_status ct_cpu_dense_forward(void *ctx, const ct_dense_args *a);
ct_status ct_cpu_dense_backward(void *ctx, const ct_dense_args *a, bool need_dgrad,
                                bool need_wgrad);
ct_status ct_cpu_dropout_forward(void *ctx, float *y, const float *x, int n, int dim, float rate,
                                 ct_dropout_key key);
ct_status ct_cpu_dropout_backward(void *ctx, float *dx, const float *dy, int n, int dim,
                                  float rate, ct_dropout_key key);
ct_status ct_cpu_concat_forward(void *ctx, float *y, const float *a, const float *b, int n, int da,
                                int db);
ct_status ct_cpu_concat_backward(void *ctx, float *da, float *db, const float *dy, int n,
                                 int da_dim, int db_dim);
ct_status ct_cpu_loss_forward_backward(void *ctx, ct_loss_kind kind, float *loss, float *probs,
                                       float *dlogits, const float *logits, const float *labels,
                                       const float *weights, int n, int k);
ct_status ct_cpu_sgd_update(void *ctx, float *p, float *velocity, const float *g, size_t count,
                            const ct_update_args *u);
ct_status ct_cpu_adam_update(void *ctx, float *p, float *m, float *v, const float *g, size_t count,
                             const ct_update_args *u);
ct_status ct_cpu_update_multi(void *ctx, bool adam, const ct_update_tensor *t, int n,
                              const ct_update_args *u);
ct_status ct_cpu_check_finite(void *ctx, bool *finite, const float *x, size_t count);
ct_status ct_cpu_cast(void *ctx, void *dst, ct_dtype dst_type, const void *src, ct_dtype src_type,
                      size_t count);
ct_status ct_cpu_flip(void *ctx, float *x, int n, int h, int w, int c, bool horizontal,
                      bool vertical);
ct_status ct_cpu_augment_standardize(void *ctx, float *out, const uint8_t *in_u8,
                                     const float *in_f32, const uint32_t *sample_index, int n,
                                     int h, int w, int c, const struct ct_augment_config *aug,
                                     const struct ct_standardize *std, uint64_t seed,
                                     uint32_t epoch);

/* Host memory for float copies of bf16 tensors (the emulated bf16 ops widen, compute in float32
 * and round back): arrays of counts[i] floats, each freed with free(); NULL on failure. */
ct_status ct_cpu_temp(int arrays, const size_t *counts, float **out);

/* Multiplies dy by the ReLU mask (y > 0) in place: the gradient before the activation. */
void ct_cpu_relu_backward_inplace(float *dy, const float *y, size_t count);

#endif
