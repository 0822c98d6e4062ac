/* Opening a backend by name: "cpu", "cuda", or "auto" (CUDA when a usable device is there, else
 * the CPU, saying why), with the precision and determinism asked for; and the lifetime calls
 * common to every backend, and the one place a backend's note is said. The backends themselves
 * live in cpu/ and cuda/; this folder is the one place that knows both. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/backend.h"
#include "core/hash.h"
#include "cutune/cuda.h"

ct_status ct_backend_init_by_name(ct_backend *be, const char *name, char *note, size_t note_len) {
    return ct_backend_open(be, name, NULL, note, note_len);
}

void ct_backend_options_defaults(ct_backend_options *o) { memset(o, 0, sizeof *o); }

/* Appends a sentence to the note (when there is one). */
static void add_note(char *note, size_t cap, const char *text) {
    if (note == NULL || cap == 0) return;
    size_t used = strlen(note);
    snprintf(note + used, cap - used, "%s%s", used > 0 ? "; " : "", text);
}

static ct_status open_cpu(ct_backend *be, const ct_backend_options *o, char *note, size_t cap) {
    const char *precision = o->precision;
    if (precision != NULL && strcmp(precision, "tf32") == 0)
        return ct_error(CT_EINVAL, "--precision tf32 needs the cuda backend (--device cuda); the "
                        "CPU backend computes in fp32 (or emulates bf16)");
    if (precision != NULL && strcmp(precision, "bf16") == 0)
        add_note(note, cap, "--precision bf16 on the CPU is emulated: bf16 activations rounded "
                 "as on a GPU, float32 arithmetic, slower than fp32");
    return ct_backend_cpu_open(be, o->threads, precision);
}

ct_status ct_backend_open_with(ct_backend *be, const char *name, const ct_backend_options *o,
                               char *note, size_t note_len) {
    if (note != NULL && note_len > 0) note[0] = '\0';
    const char *precision = o->precision;
    if (precision != NULL && strcmp(precision, "fp32") != 0 && strcmp(precision, "tf32") != 0 &&
        strcmp(precision, "bf16") != 0)
        return ct_error(CT_EINVAL, "--precision '%s': expected fp32, tf32 or bf16", precision);
    if (name != NULL && strcmp(name, "cpu") == 0) return open_cpu(be, o, note, note_len);
    if (name != NULL && strcmp(name, "cuda") == 0) return ct_backend_cuda_open(be, o->device, o);
    if (name != NULL && strcmp(name, "auto") != 0)
        return ct_error(CT_EINVAL, "unknown device '%s' (expected cpu, cuda or auto)", name);
    if (ct_backend_cuda_open(be, o->device, o) == CT_OK) return CT_OK;
    char why[1024];
    snprintf(why, sizeof why, "using the CPU backend: %s", ct_last_error());
    add_note(note, note_len, why);
    if (precision != NULL && strcmp(precision, "fp32") != 0) {
        char skip[128];
        snprintf(skip, sizeof skip, "--precision %s does not apply: the CPU backend computes in "
                 "fp32", precision);
        add_note(note, note_len, skip);
    }
    return ct_backend_cpu_init(be, o->threads);
}

ct_status ct_backend_open(ct_backend *be, const char *name, const char *precision, char *note,
                          size_t note_len) {
    ct_backend_options o;
    ct_backend_options_defaults(&o);
    o.precision = precision;
    return ct_backend_open_with(be, name, &o, note, note_len);
}

void ct_backend_say_note(const char *who, const char *note) {
    /* The notes said so far, by hash: a process opens backends a handful of times, with one or
     * two distinct notes, so a small table is plenty; past it every note is said again. */
    static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
    static uint64_t said[16];
    static int n_said;
    if (note == NULL || note[0] == '\0') return;
    const uint64_t h = ct_fnv1a(CT_FNV1A_START, note, strlen(note));
    bool fresh = true;
    pthread_mutex_lock(&lock);
    for (int i = 0; i < n_said && fresh; i++) fresh = said[i] != h;
    if (fresh && n_said < 16) said[n_said++] = h;
    pthread_mutex_unlock(&lock);
    if (fresh) fprintf(stderr, "%s: %s\n", who, note);
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
