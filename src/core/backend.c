/* Backend selection and lifetime, common to every backend. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include <stdio.h>
#include <stdlib.h>
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

ct_status ct_backend_open(ct_backend *be, const char *name, const char *precision, char *note,
                          size_t note_len) {
    if (note != NULL && note_len > 0) note[0] = '\0';
    if (precision != NULL) {
        if (strcmp(precision, "fp32") != 0 && strcmp(precision, "tf32") != 0 &&
            strcmp(precision, "bf16") != 0)
            return ct_error(CT_EINVAL, "--precision '%s': expected fp32, tf32 or bf16",
                            precision);
        if (name != NULL && strcmp(name, "cpu") == 0) {
            if (strcmp(precision, "tf32") == 0)
                return ct_error(CT_EINVAL, "--precision tf32 needs the cuda backend (--device "
                                "cuda); the CPU backend computes in fp32 (or emulates bf16)");
            if (strcmp(precision, "bf16") == 0 && note != NULL && note_len > 0)
                snprintf(note, note_len, "--precision bf16 on the CPU is emulated: bf16 "
                         "activations rounded as on a GPU, float32 arithmetic, slower than "
                         "fp32");
            return ct_backend_cpu_open(be, 0, precision);
        }
        /* The CUDA backend reads its policy from the environment when it starts. */
        if (setenv("CUTUNE_PRECISION", precision, 1) != 0)
            return ct_error(CT_EINVAL, "--precision: cannot set CUTUNE_PRECISION");
    }
    ct_status s = ct_backend_init_by_name(be, name, note, note_len);
    if (s != CT_OK) return s;
    if (precision != NULL && strcmp(precision, "fp32") != 0 && strcmp(be->ops->name, "cpu") == 0 &&
        note != NULL && note_len > 0) {
        size_t used = strlen(note);
        snprintf(note + used, note_len - used, "%s--precision %s does not apply: the CPU backend "
                 "computes in fp32", used > 0 ? "; " : "", precision);
    }
    return CT_OK;
}

const char *ct_backend_precision(const ct_backend *be) {
    if (be == NULL || be->ops == NULL) return "fp32";
    return be->ops->precision(be->ctx);
}

void ct_backend_free(ct_backend *be) {
    if (be == NULL || be->ops == NULL) return;
    be->ops->free(be->ctx);
    be->ops = NULL;
    be->ctx = NULL;
}
