/* CUDA device discovery (cutune/cuda.h): which devices can run cutune, and if none, why not.
 *
 * The answer has to be right on machines without a GPU and without a driver, where this code
 * must neither crash nor print anything: the CUDA runtime reports a missing driver as driver
 * version 0, and every other failure through cudaGetDeviceCount, which is turned into a plain
 * reason (no driver, driver older than the runtime, no device, ...). A device counts as usable
 * only when the runtime can make a context on it and this build carries kernels for its
 * architecture; that is checked by asking for the attributes of a probe kernel, which fails on
 * an architecture the build has no code for. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>

#include "context.h"
#include "cutune/cuda.h"

#define STRINGIFY_(...) #__VA_ARGS__
#define STRINGIFY(...) STRINGIFY_(__VA_ARGS__)
#ifdef __CUDA_ARCH_LIST__
#define BUILT_ARCHS STRINGIFY(__CUDA_ARCH_LIST__)
#else
#define BUILT_ARCHS "unknown"
#endif

/* Never launched: it exists so that cudaFuncGetAttributes can tell whether this build has code
 * that the device can load. */
__global__ void device_probe_kernel(int *p) {
    if (p) *p = 0;
}

extern "C" bool ct_cuda_compiled(void) { return true; }

/* The reason, in words, why the runtime found no device at all; CT_OK with *count set when it
 * found some. */
static ct_status runtime_ready(int *count) {
    *count = 0;
    int driver = 0;
    if (cudaDriverGetVersion(&driver) != cudaSuccess || driver == 0) {
        (void)cudaGetLastError();
        return ct_error(CT_ENODEV,
                        "no NVIDIA driver is installed (libcuda could not be loaded); install "
                        "the driver, or in Docker run the container with --gpus all");
    }
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    (void)cudaGetLastError(); /* initialisation errors must not leak into later launch checks */
    const char *visible = getenv("CUDA_VISIBLE_DEVICES");
    switch (e) {
    case cudaSuccess:
        if (n > 0) {
            *count = n;
            return CT_OK;
        }
        /* A successful count of zero means the same as cudaErrorNoDevice. */
        [[fallthrough]];
    case cudaErrorNoDevice:
        if (visible) {
            return ct_error(CT_ENODEV, "no CUDA device found (CUDA_VISIBLE_DEVICES=\"%s\")",
                            visible);
        }
        return ct_error(CT_ENODEV, "no CUDA device found (the NVIDIA driver %d.%d sees none)",
                        driver / 1000, driver % 1000 / 10);
    case cudaErrorInsufficientDriver:
    case cudaErrorCallRequiresNewerDriver:
        if (driver < CUDART_VERSION) {
            return ct_error(CT_ENODEV,
                            "the NVIDIA driver supports CUDA %d.%d but cutune was built with "
                            "CUDA %d.%d; update the driver",
                            driver / 1000, driver % 1000 / 10, CUDART_VERSION / 1000,
                            CUDART_VERSION % 1000 / 10);
        }
        return ct_error(CT_ENODEV, "the NVIDIA driver (CUDA %d.%d) is too old for this build: %s",
                        driver / 1000, driver % 1000 / 10, cudaGetErrorString(e));
    case cudaErrorSystemDriverMismatch:
        return ct_error(CT_ENODEV,
                        "the NVIDIA kernel module and the user-space driver have different "
                        "versions; reboot, or reinstall the driver");
    case cudaErrorCompatNotSupportedOnDevice:
        return ct_error(CT_ENODEV,
                        "the CUDA forward-compatibility package is installed but this GPU does "
                        "not support it; use a driver that supports CUDA %d.%d natively",
                        CUDART_VERSION / 1000, CUDART_VERSION % 1000 / 10);
    default:
        return ct_error(CT_ENODEV, "CUDA initialisation failed: %s (%s)", cudaGetErrorName(e),
                        cudaGetErrorString(e));
    }
}

/* Fills `info` for device `i` and says whether cutune can run on it; `why` gets the reason when
 * not. Leaves device `i` current. */
static bool device_usable(int i, ct_device_info *info, char *why, size_t why_len) {
    memset(info, 0, sizeof *info);
    info->index = i;
    cudaDeviceProp prop;
    cudaError_t e = cudaGetDeviceProperties(&prop, i);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        snprintf(why, why_len, "device %d: cannot read its properties: %s", i,
                 cudaGetErrorString(e));
        return false;
    }
    snprintf(info->name, sizeof info->name, "%s", prop.name);
    info->cc_major = prop.major;
    info->cc_minor = prop.minor;
    info->total_mem = prop.totalGlobalMem;
    info->sm_count = prop.multiProcessorCount;
    info->tensor_cores_bf16 = prop.major >= 8;

    /* cudaSetDevice creates the primary context; it fails on a device in prohibited compute
     * mode or one already held exclusively by another process. */
    e = cudaSetDevice(i);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        snprintf(why, why_len, "device %d (%s): cannot create a context: %s", i, prop.name,
                 cudaGetErrorString(e));
        return false;
    }
    cudaFuncAttributes attr;
    e = cudaFuncGetAttributes(&attr, device_probe_kernel);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        snprintf(why, why_len,
                 "device %d (%s, compute capability %d.%d): this build has no code for it "
                 "(built for architectures " BUILT_ARCHS "): %s",
                 i, prop.name, prop.major, prop.minor, cudaGetErrorString(e));
        return false;
    }
    size_t free_b = 0, total_b = 0;
    e = cudaMemGetInfo(&free_b, &total_b);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        snprintf(why, why_len, "device %d (%s): cannot query its memory: %s", i, prop.name,
                 cudaGetErrorString(e));
        return false;
    }
    info->free_mem = free_b;
    return true;
}

extern "C" ct_status ct_cuda_devices(ct_device_info *out, int cap, int *count) {
    if (!count || (cap > 0 && !out)) {
        return ct_error(CT_EINVAL, "ct_cuda_devices: count is NULL, or out is NULL with cap %d",
                        cap);
    }
    *count = 0;
    int n = 0;
    ct_status st = runtime_ready(&n);
    if (st != CT_OK) return st;

    /* Probing makes each device current in turn; the caller's choice is put back after. */
    int previous = 0;
    bool restore = cudaGetDevice(&previous) == cudaSuccess;
    (void)cudaGetLastError();

    char why[512] = "";
    int usable = 0;
    for (int i = 0; i < n; i++) {
        ct_device_info info;
        if (!device_usable(i, &info, why, sizeof why)) continue;
        if (usable < cap) out[usable] = info;
        usable++;
    }
    if (restore) {
        CT_CU_DISCARD(cudaSetDevice(previous));
    }
    *count = usable;
    if (usable == 0) {
        return ct_error(CT_ENODEV, "%d CUDA device%s found but none is usable; %s", n,
                        n == 1 ? "" : "s", why);
    }
    return CT_OK;
}

ct_status ct_cu_device_open(int device, ct_device_info *info) {
    int n = 0;
    ct_status st = runtime_ready(&n);
    if (st != CT_OK) return st;
    if (device < 0 || device >= n) {
        return ct_error(CT_ENODEV, "CUDA device %d does not exist (%d device%s visible)", device,
                        n, n == 1 ? "" : "s");
    }
    char why[512] = "";
    if (!device_usable(device, info, why, sizeof why)) {
        return ct_error(CT_ENODEV, "%s", why);
    }
    return CT_OK;
}

extern "C" void ct_cuda_versions_get(ct_cuda_versions *v) {
    if (!v) return;
    memset(v, 0, sizeof *v);
    /* Each query may fail on a machine without a driver; the documented answer is then 0. */
    int driver = 0;
    if (cudaDriverGetVersion(&driver) != cudaSuccess) driver = 0;
    (void)cudaGetLastError();
    v->driver = driver;
    v->runtime = CUDART_VERSION;
    v->cudnn = cudnnGetVersion();
    int major = 0, minor = 0, patch = 0;
    if (cublasGetProperty(MAJOR_VERSION, &major) == CUBLAS_STATUS_SUCCESS &&
        cublasGetProperty(MINOR_VERSION, &minor) == CUBLAS_STATUS_SUCCESS &&
        cublasGetProperty(PATCH_LEVEL, &patch) == CUBLAS_STATUS_SUCCESS) {
        /* The encoding of CUBLAS_VERSION in cublas_api.h. */
        v->cublas = major * 10000 + minor * 100 + patch;
    }
}

extern "C" ct_status ct_cuda_memory_used(int device, size_t *used, size_t *total) {
    if (used) *used = 0;
    if (total) *total = 0;
    int n = 0;
    ct_status st = runtime_ready(&n);
    if (st != CT_OK) return st;
    if (device < 0 || device >= n) {
        return ct_error(CT_ENODEV, "CUDA device %d does not exist (%d device%s visible)", device,
                        n, n == 1 ? "" : "s");
    }
    int previous = 0;
    CT_CU_CHECK(cudaGetDevice(&previous));
    CT_CU_CHECK(cudaSetDevice(device));
    size_t free_b = 0, total_b = 0;
    st = CT_CU_STATUS(cudaMemGetInfo(&free_b, &total_b));
    CT_CU_DISCARD(cudaSetDevice(previous));
    if (st != CT_OK) return st;
    if (used) *used = total_b - free_b;
    if (total) *total = total_b;
    return CT_OK;
}
