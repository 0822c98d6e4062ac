/* The failure half of check.h: turns a CUDA runtime, cuDNN or cuBLAS error into a cutune status
 * and a message a user can act on.
 *
 * The message reads "cuda/conv.cu:212 in conv_plan_forward(): cudnnConvolutionForward(...)
 * failed: CUDNN_STATUS_BAD_PARAM (<cuDNN's detail>)". Out-of-memory results get CT_EDEVMEM and
 * say how much device memory is free and what to try; errors that leave the CUDA context
 * unusable say so, because every later call will fail too. */
#include <stdio.h>
#include <string.h>

#include "check.h"

/* The expression text of a long call is cut here: the function and line already locate it, and
 * the library's reason must still fit in the message. */
#define EXPR_MAX 160

/* __FILE__ is whatever path the build passed to the compiler, often absolute; the part from
 * "cuda/" on is what a reader of the message can look up in the source tree. */
static const char *source_path(const char *file) {
    const char *best = NULL;
    for (const char *p = strstr(file, "cuda/"); p; p = strstr(p + 1, "cuda/")) best = p;
    return best ? best : file;
}

/* Appends "(x MiB free of y MiB)" when the runtime can still answer; after a fatal error it
 * cannot, and the hint is left out rather than made up. */
static void memory_note(char *buf, size_t len) {
    size_t free_b = 0, total_b = 0;
    buf[0] = '\0';
    if (cudaMemGetInfo(&free_b, &total_b) == cudaSuccess) {
        snprintf(buf, len, " (%zu MiB free of %zu MiB)", free_b >> 20, total_b >> 20);
    } else {
        (void)cudaGetLastError(); /* the query's own failure is not the error being reported */
    }
}

static ct_status out_of_memory(const char *lib_reason, const char *expr, const char *func,
                               const char *file, int line) {
    char mem[96];
    memory_note(mem, sizeof mem);
    return ct_error(CT_EDEVMEM,
                    "%s:%d in %s(): %.*s failed: %s: out of device memory%s; try a smaller "
                    "batch size",
                    source_path(file), line, func, EXPR_MAX, expr, lib_reason, mem);
}

/* Errors after which the context is corrupt (CUDA "sticky" errors): every later call returns
 * the same error, so the only recovery is a new process. */
static bool is_sticky(cudaError_t e) {
    switch (e) {
    case cudaErrorIllegalAddress:
    case cudaErrorLaunchFailure:
    case cudaErrorAssert:
    case cudaErrorHardwareStackError:
    case cudaErrorIllegalInstruction:
    case cudaErrorMisalignedAddress:
    case cudaErrorInvalidAddressSpace:
    case cudaErrorInvalidPc:
    case cudaErrorLaunchTimeout:
    case cudaErrorECCUncorrectable:
#if CUDART_VERSION >= 13000 /* documented as unrecoverable there */
    case cudaErrorContained:
    case cudaErrorTensorMemoryLeak:
    case cudaErrorExternalDevice:
#endif
        return true;
    default:
        return false;
    }
}

ct_status ct_cu_fail_cuda(cudaError_t e, const char *expr, const char *func, const char *file,
                          int line) {
    /* Non-sticky errors stay as the runtime's "last error" and would be reported again by the
     * next launch check; reading it here clears it. Sticky ones cannot be cleared. */
    (void)cudaGetLastError();
    if (e == cudaErrorMemoryAllocation) {
        return out_of_memory(cudaGetErrorName(e), expr, func, file, line);
    }
    return ct_error(CT_EDEVICE, "%s:%d in %s(): %.*s failed: %s (%s)%s", source_path(file), line,
                    func,
                    EXPR_MAX, expr, cudaGetErrorName(e), cudaGetErrorString(e),
                    is_sticky(e) ? "; the CUDA context is lost, restart the process" : "");
}

ct_status ct_cu_fail_cudnn(cudnnStatus_t s, const char *expr, const char *func,
                           const char *file, int line) {
    if (s == CUDNN_STATUS_ALLOC_FAILED) {
        return out_of_memory(cudnnGetErrorString(s), expr, func, file, line);
    }
    /* cuDNN 9 keeps a detailed reason (which engine, which constraint) besides the code. */
    char detail[256];
    detail[0] = '\0';
    cudnnGetLastErrorString(detail, sizeof detail);
    return ct_error(CT_EDEVICE, "%s:%d in %s(): %.*s failed: %s%s%s%s", source_path(file), line,
                    func,
                    EXPR_MAX, expr, cudnnGetErrorString(s), detail[0] ? " (" : "", detail,
                    detail[0] ? ")" : "");
}

ct_status ct_cu_fail_cublas(cublasStatus_t s, const char *expr, const char *func,
                            const char *file, int line) {
    if (s == CUBLAS_STATUS_ALLOC_FAILED) {
        return out_of_memory(cublasGetStatusName(s), expr, func, file, line);
    }
    return ct_error(CT_EDEVICE, "%s:%d in %s(): %.*s failed: %s (%s)", source_path(file), line,
                    func,
                    EXPR_MAX, expr, cublasGetStatusName(s), cublasGetStatusString(s));
}
