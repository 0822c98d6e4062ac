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
 * (dist/comm.c) abort it when a rank is lost, instead of hanging in NCCL.
 *
 * libnccl.so.2 is loaded when the first data-parallel GPU run starts, not linked: a process that
 * never trains on several GPUs never loads it, and one that already holds a NCCL (PyTorch's, in a
 * notebook that imported torch) shares that one instead of clashing with a second copy. */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nccl.h>

#include "context.h"
extern "C" {
#include "dist/comm.h"
}

/* ---- the library, loaded on first use ---- */

static struct nccl_api {
    ncclResult_t (*GetUniqueId)(ncclUniqueId *);
    ncclResult_t (*CommInitRankConfig)(ncclComm_t *, int, ncclUniqueId, int, ncclConfig_t *);
    ncclResult_t (*CommGetAsyncError)(ncclComm_t, ncclResult_t *);
    ncclResult_t (*AllReduce)(const void *, void *, size_t, ncclDataType_t, ncclRedOp_t,
                              ncclComm_t, cudaStream_t);
    ncclResult_t (*Broadcast)(const void *, void *, size_t, ncclDataType_t, int, ncclComm_t,
                              cudaStream_t);
    ncclResult_t (*CommAbort)(ncclComm_t);
    ncclResult_t (*CommFinalize)(ncclComm_t);
    ncclResult_t (*CommDestroy)(ncclComm_t);
    const char *(*GetErrorString)(ncclResult_t);
} nccl;
static pthread_once_t nccl_once = PTHREAD_ONCE_INIT;
static char nccl_missing[512];

#define NCCL_SYMBOL(lib, name)                                                                 \
    do {                                                                                       \
        *(void **)&nccl.name = dlsym(lib, "nccl" #name);                                       \
        if (nccl.name == NULL) {                                                               \
            snprintf(nccl_missing, sizeof nccl_missing, "%s has no nccl" #name " (NCCL 2.14 or " \
                     "newer is needed)", "libnccl.so.2");                                      \
            return;                                                                            \
        }                                                                                      \
    } while (0)

static void nccl_load(void) {
    void *lib = dlopen("libnccl.so.2", RTLD_NOW | RTLD_GLOBAL);
    if (lib == NULL) {
        snprintf(nccl_missing, sizeof nccl_missing, "NCCL could not be loaded (%s): install it "
                 "(libnccl2, or the CUDA toolkit's) for GPU ranks", dlerror());
        return;
    }
    NCCL_SYMBOL(lib, GetUniqueId);
    NCCL_SYMBOL(lib, CommInitRankConfig);
    NCCL_SYMBOL(lib, CommGetAsyncError);
    NCCL_SYMBOL(lib, AllReduce);
    NCCL_SYMBOL(lib, Broadcast);
    NCCL_SYMBOL(lib, CommAbort);
    NCCL_SYMBOL(lib, CommFinalize);
    NCCL_SYMBOL(lib, CommDestroy);
    NCCL_SYMBOL(lib, GetErrorString);
}

static ct_status nccl_ready(void) {
    pthread_once(&nccl_once, nccl_load);
    return nccl_missing[0] == '\0' ? CT_OK : ct_error(CT_EUNSUPPORTED, "%s", nccl_missing);
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
                    "%s failed: %s", call, nccl.GetErrorString(r));
}

/* A non-blocking call's result: ncclInProgress is polled until the call is queued or fails. */
static ct_status nccl_settle(nccl_ctx *n, ncclResult_t r, const char *call) {
    while (r == ncclInProgress) {
        ncclResult_t state = ncclSuccess;
        ncclResult_t q = nccl.CommGetAsyncError(n->comm, &state);
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
    return nccl_settle(n, nccl.AllReduce(buf, buf, count, ncclFloat, ncclSum, n->comm, n->stream),
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
    s = nccl_settle(n, nccl.AllReduce(n->scratch, n->scratch, count, ncclDouble, ncclSum, n->comm,
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
        s = nccl_settle(n, nccl.Broadcast(buf, buf, bytes, ncclUint8, 0, n->comm, n->stream),
                        "ncclBroadcast");
        return s == CT_OK ? nccl_wait(n) : s;
    }
    if ((s = grow_scratch(n, bytes)) != CT_OK) return s;
    CT_CU_CHECK(cudaMemcpyAsync(n->scratch, buf, bytes, cudaMemcpyHostToDevice, n->stream));
    s = nccl_settle(n, nccl.Broadcast(n->scratch, n->scratch, bytes, ncclUint8, 0, n->comm,
                                     n->stream), "ncclBroadcast");
    if (s != CT_OK) return s;
    CT_CU_CHECK(cudaMemcpyAsync(buf, n->scratch, bytes, cudaMemcpyDeviceToHost, n->stream));
    CT_CU_CHECK(cudaStreamSynchronize(n->stream));
    return CT_OK;
}

static void nccl_abort(void *ctx) {
    nccl_ctx *n = (nccl_ctx *)ctx;
    if (n != NULL && n->comm != NULL) nccl.CommAbort(n->comm);
    if (n != NULL) n->comm = NULL;
}

static void nccl_free(void *ctx) {
    nccl_ctx *n = (nccl_ctx *)ctx;
    if (n == NULL) return;
    if (n->comm != NULL) {
        CT_CU_DISCARD(cudaStreamSynchronize(n->stream));
        nccl.CommFinalize(n->comm);
        nccl_settle(n, ncclInProgress, "ncclCommFinalize");
        nccl.CommDestroy(n->comm);
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
    ct_status s = nccl_ready();
    if (s != CT_OK) return s;
    ncclUniqueId u;
    ncclResult_t r = nccl.GetUniqueId(&u);
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
    ct_status ready = nccl_ready();
    if (ready != CT_OK) return ready;
    nccl_ctx *n = (nccl_ctx *)calloc(1, sizeof *n);
    if (n == NULL) return ct_error(CT_ENOMEM, "cannot allocate the NCCL communicator");
    n->cu = (ct_cu_ctx *)be->ctx;
    ct_status s = create_streams(n);
    ncclUniqueId u;
    memcpy(&u, id, sizeof u);
    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    config.blocking = 0;
    if (s == CT_OK)
        s = nccl_settle(n, nccl.CommInitRankConfig(&n->comm, c->world.size, u, c->world.rank,
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
