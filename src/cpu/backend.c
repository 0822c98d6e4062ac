/* The CPU backend: context, memory, and the op table. Arithmetic lives in the files named after
 * each op family (conv.c, pool.c, dense.c, elementwise.c, loss.c, optim.c, augment.c). Memory
 * is plain host memory, so "device" copies are memcpy. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L /* clock_gettime */
#endif
#include <cblas.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "../core/knobs.h"
#include "cpu.h"

static void cpu_free(void *ctx) {
    ct_cpu_ctx *c = ctx;
    if (c == NULL) return;
    ct_dnnl_free(c->dnnl);
    free(c->workspace);
    free(c);
}

static ct_status cpu_alloc(void *ctx, void **out, size_t bytes) {
    (void)ctx;
    /* 256-byte alignment keeps every arena piece on its own cache lines and vector aligned. */
    size_t rounded = (bytes + 255) / 256 * 256;
    void *p = aligned_alloc(256, rounded);
    if (p == NULL)
        return ct_error(CT_ENOMEM, "cannot allocate %zu bytes of host memory", bytes);
    memset(p, 0, rounded);
    *out = p;
    return CT_OK;
}

static void cpu_release(void *ctx, void *p) {
    (void)ctx;
    free(p);
}

static ct_status cpu_copy(void *ctx, void *dst, const void *src, size_t bytes) {
    (void)ctx;
    if (bytes > 0 && dst != src) memmove(dst, src, bytes);
    return CT_OK;
}

static ct_status cpu_synchronize(void *ctx) {
    (void)ctx;
    return CT_OK;
}

static ct_status cpu_host_alloc(void *ctx, void **out, size_t bytes) {
    return cpu_alloc(ctx, out, bytes);
}

static ct_status check_slot(int slot) {
    if (slot < 0 || slot >= CT_STAGE_SLOTS)
        return ct_error(CT_EINVAL, "staging: slot %d out of range (0..%d)", slot,
                        CT_STAGE_SLOTS - 1);
    return CT_OK;
}

static void run_pending(ct_cpu_stage *st) {
    for (int i = 0; i < st->n_pending; i++)
        memcpy(st->pending[i].dst, st->pending[i].src, st->pending[i].bytes);
    st->n_pending = 0;
}

static ct_status cpu_stage_copy(void *ctx, int slot, void *dst, const void *src, size_t bytes) {
    ct_cpu_ctx *c = ctx;
    ct_status s = check_slot(slot);
    if (s != CT_OK) return s;
    ct_cpu_stage *st = &c->stage[slot];
    if (st->state == CT_SLOT_ACQUIRED)
        return ct_error(CT_EINVAL, "staging slot %d: copied into while the ops that read it may "
                        "still run (stage_acquire without stage_release)", slot);
    if (bytes == 0) return CT_OK;
    if (!c->lazy_staging) return cpu_copy(ctx, dst, src, bytes);
    if (st->n_pending == CT_CPU_STAGE_COPIES)
        return ct_error(CT_EINVAL, "staging slot %d: more than %d copies queued", slot,
                        CT_CPU_STAGE_COPIES);
    st->pending[st->n_pending].dst = dst;
    st->pending[st->n_pending].src = src;
    st->pending[st->n_pending].bytes = bytes;
    st->n_pending++;
    return CT_OK;
}

static ct_status cpu_stage_acquire(void *ctx, int slot) {
    ct_cpu_ctx *c = ctx;
    ct_status s = check_slot(slot);
    if (s != CT_OK) return s;
    run_pending(&c->stage[slot]);
    c->stage[slot].state = CT_SLOT_ACQUIRED;
    return CT_OK;
}

static ct_status cpu_stage_release(void *ctx, int slot) {
    ct_cpu_ctx *c = ctx;
    ct_status s = check_slot(slot);
    if (s != CT_OK) return s;
    if (c->stage[slot].state != CT_SLOT_ACQUIRED)
        return ct_error(CT_EINVAL, "staging slot %d: released without being acquired", slot);
    c->stage[slot].state = CT_SLOT_FREE;
    return CT_OK;
}

static ct_status cpu_stage_sync(void *ctx, int slot) {
    ct_cpu_ctx *c = ctx;
    ct_status s = check_slot(slot);
    if (s != CT_OK) return s;
    run_pending(&c->stage[slot]); /* the copy has landed; the source may be reused */
    return CT_OK;
}

static ct_status cpu_mark(void *ctx, int index) {
    ct_cpu_ctx *c = ctx;
    if (index < 0 || index >= CT_MARKS)
        return ct_error(CT_EINVAL, "mark %d out of range (0..%d)", index, CT_MARKS - 1);
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    c->marks[index] = (double)ts.tv_sec + ts.tv_nsec * 1e-9;
    return CT_OK;
}

static ct_status cpu_elapsed_ms(void *ctx, int from, int to, float *ms) {
    ct_cpu_ctx *c = ctx;
    if (from < 0 || from >= CT_MARKS || to < 0 || to >= CT_MARKS)
        return ct_error(CT_EINVAL, "marks %d, %d out of range (0..%d)", from, to, CT_MARKS - 1);
    *ms = (float)((c->marks[to] - c->marks[from]) * 1e3);
    return CT_OK;
}

ct_status ct_cpu_workspace(ct_cpu_ctx *c, size_t floats, float **out) {
    if (floats > c->workspace_floats) {
        float *p = NULL;
        size_t bytes = (floats * sizeof(float) + 255) / 256 * 256;
        p = aligned_alloc(256, bytes);
        if (p == NULL)
            return ct_error(CT_ENOMEM, "cannot grow the CPU workspace to %zu bytes", bytes);
        free(c->workspace);
        c->workspace = p;
        c->workspace_floats = floats;
    }
    *out = c->workspace;
    return CT_OK;
}

size_t ct_cpu_scratch_bytes(const ct_cpu_ctx *c) {
    return c->workspace_floats * sizeof(float) + ct_dnnl_bytes(c->dnnl);
}

static const char *cpu_precision(void *ctx) {
    return ((const ct_cpu_ctx *)ctx)->bf16 ? "bf16" : "fp32";
}

ct_status ct_cpu_temp(int arrays, const size_t *counts, float **out) {
    for (int i = 0; i < arrays; i++) out[i] = NULL;
    for (int i = 0; i < arrays; i++) {
        out[i] = malloc((counts[i] > 0 ? counts[i] : 1) * sizeof(float));
        if (out[i] == NULL) {
            for (int j = 0; j < i; j++) {
                free(out[j]);
                out[j] = NULL;
            }
            return ct_error(CT_ENOMEM, "cannot allocate %zu floats for a bf16 op", counts[i]);
        }
    }
    return CT_OK;
}

static const ct_backend_ops cpu_ops = {
    .name = "cpu",
    .precision = cpu_precision,
    .free = cpu_free,
    .alloc = cpu_alloc,
    .release = cpu_release,
    .copy_to_device = cpu_copy,
    .copy_to_host = cpu_copy,
    .synchronize = cpu_synchronize,
#define CT_CPU_MEMBER(name, params) .name = ct_cpu_##name,
    CT_BACKEND_MATH_OPS(CT_CPU_MEMBER)
#undef CT_CPU_MEMBER
    .host_alloc = cpu_host_alloc,
    .host_release = cpu_release,
    .stage_copy = cpu_stage_copy,
    .stage_acquire = cpu_stage_acquire,
    .stage_release = cpu_stage_release,
    .stage_sync = cpu_stage_sync,
    .mark = cpu_mark,
    .elapsed_ms = cpu_elapsed_ms,
};

ct_status ct_backend_cpu_init(ct_backend *be, int threads) {
    bool reference = false;
    ct_status s = ct_knob_cpu_kernels(&reference);
    if (s != CT_OK) return s;
    ct_cpu_ctx *c = calloc(1, sizeof *c);
    if (c == NULL) return ct_error(CT_ENOMEM, "cannot allocate the CPU backend context");
    if (!reference && (s = ct_dnnl_init(&c->dnnl)) != CT_OK) {
        free(c);
        return s;
    }
    if (threads > 0) {
        openblas_set_num_threads(threads);
#ifdef _OPENMP
        omp_set_num_threads(threads);
#endif
    }
    c->threads = threads > 0 ? threads : openblas_get_num_threads();
    c->lazy_staging = ct_knob_cpu_lazy_staging();
    be->ops = &cpu_ops;
    be->ctx = c;
    return CT_OK;
}

ct_status ct_backend_cpu_open(ct_backend *be, int threads, const char *precision) {
    bool bf16 = false;
    if (precision != NULL && strcmp(precision, "bf16") == 0)
        bf16 = true;
    else if (precision != NULL && strcmp(precision, "fp32") != 0)
        return ct_error(CT_EINVAL, "the CPU backend computes in fp32 or emulates bf16, not '%s'",
                        precision);
    ct_status s = ct_backend_cpu_init(be, threads);
    if (s == CT_OK) ((ct_cpu_ctx *)be->ctx)->bf16 = bf16;
    return s;
}
