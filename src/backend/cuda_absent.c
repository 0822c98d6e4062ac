/* Stand-ins for the CUDA entry points in a build without CUDA, so that callers need no #ifdef and
 * users get a plain reason instead of a link error. Compiled only when CUTUNE_CUDA is off. */
#include <string.h>

#include "core/backend.h"
#include "cutune/cuda.h"

static const char reason[] =
    "this cutune was built without CUDA (configure with the CUDA toolkit installed and "
    "-DCUTUNE_CUDA=ON)";

bool ct_cuda_compiled(void) { return false; }

ct_status ct_cuda_devices(ct_device_info *out, int cap, int *count) {
    (void)out;
    (void)cap;
    *count = 0;
    return ct_error(CT_ENODEV, "%s", reason);
}

void ct_cuda_versions_get(ct_cuda_versions *v) { memset(v, 0, sizeof *v); }

ct_status ct_cuda_memory_used(int device, size_t *used, size_t *total) {
    (void)device;
    if (used) *used = 0;
    if (total) *total = 0;
    return ct_error(CT_ENODEV, "%s", reason);
}

ct_status ct_backend_cuda_open(ct_backend *be, int device, const ct_backend_options *o) {
    (void)be;
    (void)device;
    (void)o;
    return ct_error(CT_ENODEV, "%s", reason);
}

ct_status ct_backend_cuda_init(ct_backend *be, int device) {
    return ct_backend_cuda_open(be, device, NULL);
}

ct_status ct_cuda_backend_device(const struct ct_backend *be, ct_device_info *info) {
    (void)be;
    (void)info;
    return ct_error(CT_ENODEV, "this cutune was built without CUDA");
}
