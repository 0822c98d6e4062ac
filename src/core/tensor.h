/* Named tensors and arenas.
 *
 * A tensor is a view: a name, a shape and a pointer into an arena that a backend allocated (host
 * memory for the CPU backend, device memory for CUDA). Parameters, gradients, optimizer state and
 * activations each live in one arena per category, planned first and allocated once (llm.c), so
 * the training step never allocates. Activations are NHWC float32 on the host side of the API. */
#ifndef CUTUNE_CORE_TENSOR_H
#define CUTUNE_CORE_TENSOR_H

#include <stddef.h>

#include "cutune/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define CT_MAX_DIMS 4
#define CT_ARENA_ALIGN 256 /* bytes: cuDNN and cuBLAS want 16, vector loads 32, one line 64+ */

typedef struct ct_tensor {
    const char *name;      /* e.g. "block1_conv1/kernel"; owned by the model */
    float *data;           /* into an arena; NULL while unallocated (frozen gradients) */
    int ndim;
    int shape[CT_MAX_DIMS];
    size_t size;           /* elements: the product of shape */
} ct_tensor;

/* Sets shape and size; data stays as it was. */
void ct_tensor_set_shape(ct_tensor *t, int ndim, const int *shape);

struct ct_backend;

/* One allocation split into pieces. Use: ct_arena_reserve for each piece (returns its offset),
 * then ct_arena_alloc once, then ct_arena_ptr(offset) for each. */
typedef struct ct_arena {
    const char *name;      /* "params", "grads", "optimizer", "activations" */
    struct ct_backend *backend;
    void *base;
    size_t bytes;          /* planned or allocated size */
} ct_arena;

void ct_arena_init(ct_arena *a, const char *name, struct ct_backend *backend);
/* Reserves `count` floats and returns their offset in bytes. */
size_t ct_arena_reserve(ct_arena *a, size_t count);
/* Allocates the planned bytes, zero-filled. A zero-byte plan allocates nothing. */
ct_status ct_arena_alloc(ct_arena *a);
float *ct_arena_ptr(const ct_arena *a, size_t offset);
/* Frees the memory and forgets the plan; the arena can be planned again. NULL is a no-op. */
void ct_arena_free(ct_arena *a);

#ifdef __cplusplus
}
#endif
#endif
