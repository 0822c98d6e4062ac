/* CUDA devices, and the versions of the driver and libraries. Available in every build: without CUDA support compiled in, the
 * functions say so instead of failing to link. */
#ifndef CUTUNE_CUDA_H
#define CUTUNE_CUDA_H

#include <stdbool.h>
#include <stddef.h>

#include "cutune/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ct_device_info {
    int index;
    char name[256];
    int cc_major, cc_minor;     /* compute capability */
    size_t total_mem;           /* bytes */
    size_t free_mem;            /* bytes, at query time */
    int sm_count;
    bool tensor_cores_bf16;     /* compute capability 8.0 or newer */
} ct_device_info;

typedef struct ct_cuda_versions {
    int driver;   /* e.g. 13000 for 13.0; 0 when no driver is installed */
    int runtime;  /* the CUDA runtime cutune was built against */
    size_t cudnn; /* cudnnGetVersion(), e.g. 91300 */
    int cublas;
} ct_cuda_versions;

/* Whether this build includes the CUDA backend. */
CT_API bool ct_cuda_compiled(void);

/* Fills up to `cap` entries and sets *count to the number of usable devices. When none is
 * usable, returns CT_ENODEV with a message saying why (built without CUDA, no driver, driver
 * older than the runtime, no device). */
CT_API ct_status ct_cuda_devices(ct_device_info *out, int cap, int *count);

/* Driver, runtime, cuDNN and cuBLAS versions; zeros for what is missing. */
CT_API void ct_cuda_versions_get(ct_cuda_versions *v);

/* Device memory in use on `device` now, and its total, in bytes: total minus free as
 * cudaMemGetInfo reports them, so every process's allocations, the CUDA context and the
 * libraries' pools count. Benchmarks take the difference over a run (cutune's arenas and
 * workspace only grow, so the value after a run is its peak). CT_ENODEV without a usable device
 * or without CUDA. The calling thread's current device is left as it was. */
CT_API ct_status ct_cuda_memory_used(int device, size_t *used, size_t *total);

#ifdef __cplusplus
}
#endif
#endif
