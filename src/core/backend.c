/* Backend selection and lifetime, common to every backend. */
#include <stdio.h>
#include <string.h>

#include "cutune/backend.h"
#include "cutune/cuda.h"

ct_status ct_backend_init_by_name(ct_backend *be, const char *name, char *note, size_t note_len) {
    if (note != NULL && note_len > 0) note[0] = '\0';
    if (name == NULL || strcmp(name, "auto") == 0) {
        if (ct_backend_cuda_init(be, 0) == CT_OK) return CT_OK;
        if (note != NULL && note_len > 0)
            snprintf(note, note_len, "using the CPU backend: %s", ct_last_error());
        return ct_backend_cpu_init(be, 0);
    }
    if (strcmp(name, "cpu") == 0) return ct_backend_cpu_init(be, 0);
    if (strcmp(name, "cuda") == 0) return ct_backend_cuda_init(be, 0);
    return ct_error(CT_EINVAL, "unknown device '%s' (expected cpu, cuda or auto)", name);
}

void ct_backend_free(ct_backend *be) {
    if (be == NULL || be->ops == NULL) return;
    be->ops->free(be->ctx);
    be->ops = NULL;
    be->ctx = NULL;
}
