/* One checking macro family for every CUDA runtime, cuDNN and cuBLAS call.
 *
 * A failed call becomes a cutune status plus a message that names the expression, the function,
 * the file and the line, with the library's own description of the failure (and, for cuDNN, its
 * detailed last-error string). Out-of-memory results of any of the three libraries become
 * CT_EDEVMEM with a hint to lower the batch size; everything else becomes CT_EDEVICE. The three
 * status types are distinct C++ enums, so one overloaded helper serves all of them and a call
 * site never has to say which library it called:
 *
 *     CT_CU_CHECK(cudaMemsetAsync(p, 0, bytes, ctx->stream));
 *     CT_CU_CHECK(cudnnConvolutionForward(...));
 *     kernel<<<grid, block, 0, ctx->stream>>>(...);
 *     CT_CU_CHECK_LAUNCH();
 *
 * CT_CU_CHECK returns the status from the enclosing function (which must return ct_status);
 * CT_CU_STATUS evaluates to the status instead, CT_CU_CHECK_GOTO jumps to a `fail_x` label of a
 * multi-step initialisation, and CT_CU_DISCARD marks the calls of teardown paths whose failure
 * nobody can act on. */
#ifndef CUTUNE_CUDA_CHECK_H
#define CUTUNE_CUDA_CHECK_H

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>

#include "cutune/status.h"

/* These record the message and return CT_EDEVMEM or CT_EDEVICE; they are only called on
 * failure, so the success path costs one comparison. Defined in check.cu. */
ct_status ct_cu_fail_cuda(cudaError_t e, const char *expr, const char *func, const char *file,
                          int line);
ct_status ct_cu_fail_cudnn(cudnnStatus_t s, const char *expr, const char *func, const char *file,
                           int line);
ct_status ct_cu_fail_cublas(cublasStatus_t s, const char *expr, const char *func,
                            const char *file, int line);

static inline ct_status ct_cu_status(cudaError_t e, const char *expr, const char *func,
                                     const char *file, int line) {
    return e == cudaSuccess ? CT_OK : ct_cu_fail_cuda(e, expr, func, file, line);
}

static inline ct_status ct_cu_status(cudnnStatus_t s, const char *expr, const char *func,
                                     const char *file, int line) {
    return s == CUDNN_STATUS_SUCCESS ? CT_OK : ct_cu_fail_cudnn(s, expr, func, file, line);
}

static inline ct_status ct_cu_status(cublasStatus_t s, const char *expr, const char *func,
                                     const char *file, int line) {
    return s == CUBLAS_STATUS_SUCCESS ? CT_OK : ct_cu_fail_cublas(s, expr, func, file, line);
}

/* The status of one call, with the failure recorded. */
#define CT_CU_STATUS(expr) ct_cu_status((expr), #expr, __func__, __FILE__, __LINE__)

/* Checks one call and returns its status from the enclosing function on failure. */
#define CT_CU_CHECK(expr)                                                                      \
    do {                                                                                       \
        ct_status ct_cu_check_s_ = CT_CU_STATUS(expr);                                         \
        if (ct_cu_check_s_ != CT_OK) return ct_cu_check_s_;                                    \
    } while (0)

/* Checks one call inside a multi-step initialisation: stores the status in `st` and jumps to
 * `label` on failure, so the function backs out through its `fail_x` labels. */
#define CT_CU_CHECK_GOTO(st, expr, label)                                                      \
    do {                                                                                       \
        (st) = CT_CU_STATUS(expr);                                                             \
        if ((st) != CT_OK) goto label;                                                         \
    } while (0)

/* For teardown paths (free, release) that cannot return a status: the result is dropped on
 * purpose, because nothing can be done about it there and recording it would overwrite the
 * message of the failure that usually precedes a teardown. Clearing the runtime's last error
 * keeps a later launch check from reporting this call instead of its own. */
#define CT_CU_DISCARD(expr)                                                                    \
    do {                                                                                       \
        (void)(expr);                                                                          \
        (void)cudaGetLastError();                                                              \
    } while (0)

/* A kernel launch reports bad configurations (too many threads, too much shared memory)
 * through the runtime's last error, not through a return value. */
#define CT_CU_CHECK_LAUNCH() CT_CU_CHECK(cudaGetLastError())

#endif
