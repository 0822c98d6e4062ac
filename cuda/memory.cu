/* Device memory for the CUDA backend: allocation, release, copies and synchronisation.
 *
 * These are called for each arena once, and for inputs and results once per step. Allocation is
 * zero-filled, as the op interface promises, by a memset queued on the compute stream (so later
 * ops see zeros without a device-wide wait). Copies use cudaMemcpyDefault, which lets the
 * runtime tell host from device pointers through unified addressing, so the same call serves
 * host-to-device and device-to-device copies. The copies follow the CPU backend's contract:
 * when the function returns, the source may be reused and, for copy_to_host, the destination
 * holds the data. */
#include <stdlib.h>
#include <string.h>

#include "context.h"

ct_status ct_cu_alloc(void *p, void **out, size_t bytes) {
    ct_cu_ctx *ctx = (ct_cu_ctx *)p;
    if (!out) return ct_error(CT_EINVAL, "cuda alloc: out is NULL");
    *out = NULL;
    if (bytes == 0) return CT_OK;
    ct_status st = ct_cu_enter(ctx);
    if (st != CT_OK) return st;

    void *mem = NULL;
    cudaError_t e = cudaMalloc(&mem, bytes);
    if (e == cudaErrorMemoryAllocation) {
        /* Not a sticky error: the context stays usable, so say how much would have fitted. */
        (void)cudaGetLastError();
        size_t free_b = 0, total_b = 0;
        if (cudaMemGetInfo(&free_b, &total_b) != cudaSuccess) (void)cudaGetLastError();
        return ct_error(CT_EDEVMEM,
                        "cuda: cannot allocate %zu bytes (%zu MiB) of device memory: %zu MiB "
                        "free of %zu MiB; try a smaller batch size",
                        bytes, bytes >> 20, free_b >> 20, total_b >> 20);
    }
    if (e != cudaSuccess) {
        return ct_cu_fail_cuda(e, "cudaMalloc(&mem, bytes)", __func__, __FILE__, __LINE__);
    }
    st = CT_CU_STATUS(cudaMemsetAsync(mem, 0, bytes, ctx->stream));
    /* The copy stream writes staging buffers without waiting for the compute stream: make it
     * wait for this zero-fill (allocations happen at set-up, so this costs nothing later). */
    if (st == CT_OK && ctx->alloc_done) {
        st = CT_CU_STATUS(cudaEventRecord(ctx->alloc_done, ctx->stream));
        if (st == CT_OK)
            st = CT_CU_STATUS(cudaStreamWaitEvent(ctx->copy_stream, ctx->alloc_done, 0));
    }
    if (st != CT_OK) {
        CT_CU_DISCARD(cudaFree(mem));
        return st;
    }
    *out = mem;
    return CT_OK;
}

void ct_cu_release(void *p, void *mem) {
    ct_cu_ctx *ctx = (ct_cu_ctx *)p;
    if (!mem) return;
    /* cudaFree waits for the work that may still use the memory. release() cannot return a
     * status, so a failure (only possible on a pointer that is not ours, or a lost context) is
     * dropped. */
    CT_CU_DISCARD(cudaSetDevice(ctx->device));
    CT_CU_DISCARD(cudaFree(mem));
}

ct_status ct_cu_copy_to_device(void *p, void *dst, const void *src, size_t bytes) {
    ct_cu_ctx *ctx = (ct_cu_ctx *)p;
    if (bytes == 0) return CT_OK;
    if (!dst || !src) return ct_error(CT_EINVAL, "cuda copy_to_device: NULL pointer");
    ct_status st = ct_cu_enter(ctx);
    if (st != CT_OK) return st;
    CT_CU_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, ctx->stream));
    /* From pageable memory the runtime stages the source before returning, so the caller may
     * reuse it at once. From pinned memory the copy is a DMA that runs later; the interface has
     * no fence to say when the source is free again, so wait for it. */
    cudaPointerAttributes attr;
    CT_CU_CHECK(cudaPointerGetAttributes(&attr, src));
    if (attr.type == cudaMemoryTypeHost) {
        CT_CU_CHECK(cudaStreamSynchronize(ctx->stream));
    }
    return CT_OK;
}

ct_status ct_cu_copy_to_host(void *p, void *dst, const void *src, size_t bytes) {
    ct_cu_ctx *ctx = (ct_cu_ctx *)p;
    if (bytes == 0) return CT_OK;
    if (!dst || !src) return ct_error(CT_EINVAL, "cuda copy_to_host: NULL pointer");
    ct_status st = ct_cu_enter(ctx);
    if (st != CT_OK) return st;
    /* Queued on the compute stream, so it reads what the ops before it wrote. */
    CT_CU_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, ctx->stream));
    CT_CU_CHECK(cudaStreamSynchronize(ctx->stream));
    return CT_OK;
}

ct_status ct_cu_synchronize(void *p) {
    ct_cu_ctx *ctx = (ct_cu_ctx *)p;
    ct_status st = ct_cu_enter(ctx);
    if (st != CT_OK) return st;
    CT_CU_CHECK(cudaStreamSynchronize(ctx->stream));
    return CT_OK;
}

/* ---- streaming inputs ---- */

ct_status ct_cu_host_alloc(void *p, void **out, size_t bytes) {
    ct_cu_ctx *ctx = (ct_cu_ctx *)p;
    if (!out) return ct_error(CT_EINVAL, "cuda host_alloc: out is NULL");
    *out = NULL;
    if (bytes == 0) return CT_OK;
    ct_status st = ct_cu_enter(ctx);
    if (st != CT_OK) return st;
    void *mem = NULL;
    cudaError_t e = cudaMallocHost(&mem, bytes);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        return ct_error(CT_ENOMEM, "cuda: cannot allocate %zu MiB of pinned host memory: %s",
                        bytes >> 20, cudaGetErrorString(e));
    }
    memset(mem, 0, bytes);
    *out = mem;
    return CT_OK;
}

void ct_cu_host_release(void *p, void *mem) {
    ct_cu_ctx *ctx = (ct_cu_ctx *)p;
    if (!mem) return;
    /* cudaFreeHost waits for copies that may still read the memory. */
    CT_CU_DISCARD(cudaSetDevice(ctx->device));
    CT_CU_DISCARD(cudaFreeHost(mem));
}

static ct_status check_slot(int slot) {
    if (slot < 0 || slot >= CT_STAGE_SLOTS)
        return ct_error(CT_EINVAL, "cuda staging: slot %d out of range (0..%d)", slot,
                        CT_STAGE_SLOTS - 1);
    return CT_OK;
}

ct_status ct_cu_stage_copy(void *p, int slot, void *dst, const void *src, size_t bytes) {
    ct_cu_ctx *ctx = (ct_cu_ctx *)p;
    ct_status st = check_slot(slot);
    if (st != CT_OK) return st;
    if (bytes == 0) return CT_OK;
    if (!dst || !src) return ct_error(CT_EINVAL, "cuda stage_copy: NULL pointer");
    if ((st = ct_cu_enter(ctx)) != CT_OK) return st;
    /* Not before the ops that read the slot's previous contents are done. */
    CT_CU_CHECK(cudaStreamWaitEvent(ctx->copy_stream, ctx->stage_released[slot], 0));
    CT_CU_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, ctx->copy_stream));
    CT_CU_CHECK(cudaEventRecord(ctx->stage_ready[slot], ctx->copy_stream));
    return CT_OK;
}

ct_status ct_cu_stage_acquire(void *p, int slot) {
    ct_cu_ctx *ctx = (ct_cu_ctx *)p;
    ct_status st = check_slot(slot);
    if (st != CT_OK || (st = ct_cu_enter(ctx)) != CT_OK) return st;
    CT_CU_CHECK(cudaStreamWaitEvent(ctx->stream, ctx->stage_ready[slot], 0));
    return CT_OK;
}

ct_status ct_cu_stage_release(void *p, int slot) {
    ct_cu_ctx *ctx = (ct_cu_ctx *)p;
    ct_status st = check_slot(slot);
    if (st != CT_OK || (st = ct_cu_enter(ctx)) != CT_OK) return st;
    CT_CU_CHECK(cudaEventRecord(ctx->stage_released[slot], ctx->stream));
    return CT_OK;
}

ct_status ct_cu_stage_sync(void *p, int slot) {
    ct_cu_ctx *ctx = (ct_cu_ctx *)p;
    ct_status st = check_slot(slot);
    if (st != CT_OK || (st = ct_cu_enter(ctx)) != CT_OK) return st;
    CT_CU_CHECK(cudaEventSynchronize(ctx->stage_ready[slot]));
    return CT_OK;
}

/* ---- profiling marks ---- */

ct_status ct_cu_mark(void *p, int index) {
    ct_cu_ctx *ctx = (ct_cu_ctx *)p;
    if (index < 0 || index >= CT_MARKS)
        return ct_error(CT_EINVAL, "cuda mark %d out of range (0..%d)", index, CT_MARKS - 1);
    ct_status st = ct_cu_enter(ctx);
    if (st != CT_OK) return st;
    if (!ctx->marks) {
        ctx->marks = (cudaEvent_t *)calloc(CT_MARKS, sizeof *ctx->marks);
        if (!ctx->marks) return ct_error(CT_ENOMEM, "cuda marks: out of host memory");
    }
    if (!ctx->marks[index]) CT_CU_CHECK(cudaEventCreate(&ctx->marks[index]));
    CT_CU_CHECK(cudaEventRecord(ctx->marks[index], ctx->stream));
    return CT_OK;
}

ct_status ct_cu_elapsed_ms(void *p, int from, int to, float *ms) {
    ct_cu_ctx *ctx = (ct_cu_ctx *)p;
    if (from < 0 || from >= CT_MARKS || to < 0 || to >= CT_MARKS || !ctx->marks ||
        !ctx->marks[from] || !ctx->marks[to])
        return ct_error(CT_EINVAL, "cuda elapsed: marks %d and %d were not both recorded", from,
                        to);
    ct_status st = ct_cu_enter(ctx);
    if (st != CT_OK) return st;
    CT_CU_CHECK(cudaEventSynchronize(ctx->marks[from]));
    CT_CU_CHECK(cudaEventSynchronize(ctx->marks[to]));
    CT_CU_CHECK(cudaEventElapsedTime(ms, ctx->marks[from], ctx->marks[to]));
    return CT_OK;
}
