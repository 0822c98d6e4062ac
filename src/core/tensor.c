/* Tensor shapes and arenas: one allocation per category, planned before it is made, so that the
 * training step never allocates. */
#include "core/tensor.h"

#include "core/backend.h"
#include "core/dtype.h"

void ct_tensor_set_shape(ct_tensor *t, int ndim, const int *shape) {
    t->ndim = ndim;
    t->size = 1;
    for (int i = 0; i < CT_MAX_DIMS; i++) {
        t->shape[i] = i < ndim ? shape[i] : 0;
        if (i < ndim) t->size *= (size_t)shape[i];
    }
}

void ct_arena_init(ct_arena *a, const char *name, struct ct_backend *backend) {
    a->name = name;
    a->backend = backend;
    a->base = NULL;
    a->bytes = 0;
}

size_t ct_arena_reserve(ct_arena *a, size_t count) {
    size_t offset = a->bytes;
    size_t bytes = count * sizeof(float);
    a->bytes += (bytes + CT_ARENA_ALIGN - 1) / CT_ARENA_ALIGN * CT_ARENA_ALIGN;
    return offset;
}

ct_status ct_arena_alloc(ct_arena *a) {
    if (a->bytes == 0) return CT_OK;
    ct_status s = a->backend->ops->alloc(a->backend->ctx, &a->base, a->bytes);
    if (s != CT_OK) {
        a->base = NULL;
        return ct_error(s, "%s arena (%zu bytes): %s", a->name, a->bytes, ct_last_error());
    }
    return CT_OK;
}

float *ct_arena_ptr(const ct_arena *a, size_t offset) {
    return (float *)((char *)a->base + offset);
}

void ct_arena_free(ct_arena *a) {
    if (a == NULL) return;
    if (a->base != NULL) a->backend->ops->release(a->backend->ctx, a->base);
    a->base = NULL;
    a->bytes = 0;
}

void ct_f32_to_bf16(ct_bf16 *dst, const float *src, size_t count) {
#pragma omp parallel for schedule(static) if (count > 65536)
    for (size_t i = 0; i < count; i++) dst[i] = ct_bf16_from_float(src[i]);
}

void ct_bf16_to_f32(float *dst, const ct_bf16 *src, size_t count) {
#pragma omp parallel for schedule(static) if (count > 65536)
    for (size_t i = 0; i < count; i++) dst[i] = ct_bf16_to_float(src[i]);
}

void ct_bf16_widen_inplace(float *buf, size_t count) {
    /* From the end: float i (bytes 4i..4i+3) only overwrites bf16 values 2i and 2i+1, which
     * are at or after value i and so already read. Sequential on purpose. */
    unsigned char *bytes = (unsigned char *)buf; /* memcpy: the two types alias */
    for (size_t i = count; i-- > 0;) {
        ct_bf16 h;
        memcpy(&h, bytes + 2 * i, sizeof h);
        float f = ct_bf16_to_float(h);
        memcpy(bytes + 4 * i, &f, sizeof f);
    }
}
