/* The NCCL communicator: the CUDA backend's ranks, one GPU each.
 *
 * Gradient buckets are summed in place on a stream of NCCL's own: each all-reduce waits for an
 * event recorded on the compute stream when it is queued (backward has written the bucket), so
 * it overlaps the rest of backward; `wait` makes the compute stream wait for the last one
 * before the optimizer reads the sums. Host values (the step's loss sums, rank 0's settings)
 * go through a small device buffer.
 *
 * The communicator is created non-blocking (ncclConfig_t.blocking = 0): every call may return
 * ncclInProgress and is then polled to completion, which is what lets the collectives' watchdog
 * (dist/comm.c) abort it when a rank is lost, instead of hanging in NCCL. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nccl.h>

#include "context.h"
extern "C" {
#include "dist/comm.h"
}

typedef struct nccl_ctx {
    ncclComm_t comm;
    ct_cu_ctx *cu;
    cudaStream_t stream;      /* NCCL's */
    cudaEvent_t queued, done; /* compute -> NCCL, NCCL -> compute */
    double *scratch;          /* host sums and broadcasts go through here */
    size_t scratch_bytes;
} nccl_ctx;

static ct_status nccl_fail(ncclResult_t r, const char *call) {
    return ct_error(r == ncclSystemError || r == ncclRemoteError ? CT_EIO : CT_EDEVICE,
                    "%s failed: %s", call, ncclGetErrorString(r));
}

/* A non-blocking call's result: ncclInProgress is polled until the call is queued or fails. */
static ct_status nccl_settle(nccl_ctx *n, ncclResult_t r, const char *call) {
    while (r == ncclInProgress) {
        ncclResult_t state = ncclSuccess;
        ncclResult_t q = ncclCommGetAsyncError(n->comm, &state);
        r = q != ncclSuccess ? q : state;
    }
    return r == ncclSuccess ? CT_OK : nccl_fail(r, call);
}

/* NCCL's stream waits for the compute stream's work queued so far. */
static ct_status after_compute(nccl_ctx *n) {
    CT_CU_CHECK(cudaEventRecord(n->queued, n->cu->stream));
    CT_CU_CHECK(cudaStreamWaitEvent(n->stream, n->queued, 0));
    return CT_OK;
}

static ct_status nccl_allreduce(void *ctx, float *buf, size_t count) {
    nccl_ctx *n = (nccl_ctx *)ctx;
    ct_status s = after_compute(n);
    if (s != CT_OK) return s;
    return nccl_settle(n, ncclAllReduce(buf, buf, count, ncclFloat, ncclSum, n->comm, n->stream),
                       "ncclAllReduce");
}

static ct_status nccl_wait(void *ctx) {
    nccl_ctx *n = (nccl_ctx *)ctx;
    CT_CU_CHECK(cudaEventRecord(n->done, n->stream));
    CT_CU_CHECK(cudaStreamWaitEvent(n->cu->stream, n->done, 0));
    return CT_OK;
}

static ct_status grow_scratch(nccl_ctx *n, size_t bytes) {
    if (bytes <= n->scratch_bytes) return CT_OK;
    if (n->scratch != NULL) CT_CU_CHECK(cudaFree(n->scratch));
    n->scratch = NULL;
    n->scratch_bytes = 0;
    CT_CU_CHECK(cudaMalloc((void **)&n->scratch, bytes));
    n->scratch_bytes = bytes;
    return CT_OK;
}

static ct_status nccl_sum_host(void *ctx, double *buf, int count) {
    nccl_ctx *n = (nccl_ctx *)ctx;
    const size_t bytes = (size_t)count * sizeof(double);
    ct_status s = grow_scratch(n, bytes);
    if (s != CT_OK) return s;
    CT_CU_CHECK(cudaMemcpyAsync(n->scratch, buf, bytes, cudaMemcpyHostToDevice, n->stream));
    s = nccl_settle(n, ncclAllReduce(n->scratch, n->scratch, count, ncclDouble, ncclSum, n->comm,
                                     n->stream), "ncclAllReduce");
    if (s != CT_OK) return s;
    CT_CU_CHECK(cudaMemcpyAsync(buf, n->scratch, bytes, cudaMemcpyDeviceToHost, n->stream));
    CT_CU_CHECK(cudaStreamSynchronize(n->stream));
    return CT_OK;
}

static ct_status nccl_broadcast(void *ctx, void *buf, size_t bytes, bool device) {
    nccl_ctx *n = (nccl_ctx *)ctx;
    ct_status s;
    if (device) {
        if ((s = after_compute(n)) != CT_OK) return s;
        s = nccl_settle(n, ncclBroadcast(buf, buf, bytes, ncclUint8, 0, n->comm, n->stream),
                        "ncclBroadcast");
        return s == CT_OK ? nccl_wait(n) : s;
    }
    if ((s = grow_scratch(n, bytes)) != CT_OK) return s;
    CT_CU_CHECK(cudaMemcpyAsync(n->scratch, buf, bytes, cudaMemcpyHostToDevice, n->stream));
    s = nccl_settle(n, ncclBroadcast(n->scratch, n->scratch, bytes, ncclUint8, 0, n->comm,
                                     n->stream), "ncclBroadcast");
    if (s != CT_OK) return s;
    CT_CU_CHECK(cudaMemcpyAsync(buf, n->scratch, bytes, cudaMemcpyDeviceToHost, n->stream));
    CT_CU_CHECK(cudaStreamSynchronize(n->stream));
    return CT_OK;
}

static void nccl_abort(void *ctx) {
    nccl_ctx *n = (nccl_ctx *)ctx;
    if (n != NULL && n->comm != NULL) ncclCommAbort(n->comm);
    if (n != NULL) n->comm = NULL;
}

static void nccl_free(void *ctx) {
    nccl_ctx *n = (nccl_ctx *)ctx;
    if (n == NULL) return;
    if (n->comm != NULL) {
        CT_CU_DISCARD(cudaStreamSynchronize(n->stream));
        ncclCommFinalize(n->comm);
        nccl_settle(n, ncclInProgress, "ncclCommFinalize");
        ncclCommDestroy(n->comm);
    }
    if (n->scratch != NULL) CT_CU_DISCARD(cudaFree(n->scratch));
    CT_CU_DISCARD(cudaEventDestroy(n->queued));
    CT_CU_DISCARD(cudaEventDestroy(n->done));
    CT_CU_DISCARD(cudaStreamDestroy(n->stream));
    free(n);
}

static const ct_comm_ops nccl_ops = {
    "nccl", nccl_allreduce, nccl_wait, nccl_sum_host, nccl_broadcast, nccl_abort, nccl_free,
};

extern "C" ct_status ct_nccl_unique_id(uint8_t id[CT_NCCL_ID_BYTES]) {
    static_assert(sizeof(ncclUniqueId) == CT_NCCL_ID_BYTES, "ncclUniqueId is 128 bytes");
    ncclUniqueId u;
    ncclResult_t r = ncclGetUniqueId(&u);
    if (r != ncclSuccess) return nccl_fail(r, "ncclGetUniqueId");
    memcpy(id, &u, sizeof u);
    return CT_OK;
}

static ct_status create_streams(nccl_ctx *n) {
    CT_CU_CHECK(cudaSetDevice(n->cu->device));
    CT_CU_CHECK(cudaStreamCreateWithFlags(&n->stream, cudaStreamNonBlocking));
    CT_CU_CHECK(cudaEventCreateWithFlags(&n->queued, cudaEventDisableTiming));
    CT_CU_CHECK(cudaEventCreateWithFlags(&n->done, cudaEventDisableTiming));
    return CT_OK;
}

extern "C" ct_status ct_comm_nccl_open(ct_comm *c, ct_backend *be,
                                       const uint8_t id[CT_NCCL_ID_BYTES]) {
    if (strcmp(be->ops->name, "cuda") != 0)
        return ct_error(CT_EUNSUPPORTED, "NCCL sums device memory: the %s backend's ranks use "
                        "MPI", be->ops->name);
    nccl_ctx *n = (nccl_ctx *)calloc(1, sizeof *n);
    if (n == NULL) return ct_error(CT_ENOMEM, "cannot allocate the NCCL communicator");
    n->cu = (ct_cu_ctx *)be->ctx;
    ct_status s = create_streams(n);
    ncclUniqueId u;
    memcpy(&u, id, sizeof u);
    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    config.blocking = 0;
    if (s == CT_OK)
        s = nccl_settle(n, ncclCommInitRankConfig(&n->comm, c->world.size, u, c->world.rank,
                                                  &config), "ncclCommInitRankConfig");
    if (s != CT_OK) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", ct_last_error());
        const int device = n->cu->device;
        nccl_abort(n);
        nccl_free(n);
        return ct_error(s, "rank %d of %d on GPU %d: %s", c->world.rank, c->world.size, device,
                        msg);
    }
    c->ops = &nccl_ops;
    c->ctx = n;
    return CT_OK;
}
