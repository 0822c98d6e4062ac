/* Dropout, concatenation and the finite check on the CPU.
 *
 * Dropout draws its mask from the counter-based generator addressed by (layer, step, batch row,
 * element), never from a stream position: backward recomputes the mask instead of storing it,
 * and the CUDA kernel draws the very same mask. */
#include <math.h>
#include <string.h>

#include "cpu.h"
#include "core/rng.h"

static void dropout_apply(float *y, const float *x, int n, int dim, float rate,
                          ct_dropout_key key) {
    const float scale = 1.0f / (1.0f - rate);
    const uint32_t purpose = ((uint32_t)CT_RNG_DROPOUT << 16) | (key.layer & 0xffffu);
#pragma omp parallel for schedule(static)
    for (int r = 0; r < n; r++) {
        for (int j = 0; j < dim; j++) {
            size_t i = (size_t)r * dim + j;
            uint32_t word = ct_rng_word(key.seed, purpose, key.step, key.row0 + (uint32_t)r,
                                        (uint32_t)j);
            y[i] = ct_rng_unit(word) >= rate ? x[i] * scale : 0.0f;
        }
    }
}

ct_status ct_cpu_dropout_forward(void *ctx, float *y, const float *x, int n, int dim, float rate,
                                 ct_dropout_key key) {
    (void)ctx;
    dropout_apply(y, x, n, dim, rate, key);
    return CT_OK;
}

ct_status ct_cpu_dropout_backward(void *ctx, float *dx, const float *dy, int n, int dim,
                                  float rate, ct_dropout_key key) {
    (void)ctx;
    /* The mask is the same function of (key, row, element) in both passes, and y = x * m,
     * so dx = dy * m: the forward rule applied to dy. */
    dropout_apply(dx, dy, n, dim, rate, key);
    return CT_OK;
}

ct_status ct_cpu_concat_forward(void *ctx, float *y, const float *a, const float *b, int n, int da,
                                int db) {
    (void)ctx;
    for (int i = 0; i < n; i++) {
        float *yi = y + (size_t)i * (da + db);
        memcpy(yi, a + (size_t)i * da, (size_t)da * sizeof(float));
        memcpy(yi + da, b + (size_t)i * db, (size_t)db * sizeof(float));
    }
    return CT_OK;
}

ct_status ct_cpu_concat_backward(void *ctx, float *da, float *db, const float *dy, int n,
                                 int da_dim, int db_dim) {
    (void)ctx;
    for (int i = 0; i < n; i++) {
        const float *dyi = dy + (size_t)i * (da_dim + db_dim);
        if (da != NULL) memcpy(da + (size_t)i * da_dim, dyi, (size_t)da_dim * sizeof(float));
        if (db != NULL) memcpy(db + (size_t)i * db_dim, dyi + da_dim, (size_t)db_dim * sizeof(float));
    }
    return CT_OK;
}

ct_status ct_cpu_check_finite(void *ctx, bool *finite, const float *x, size_t count) {
    (void)ctx;
    int ok = 1;
#pragma omp parallel for reduction(&& : ok) schedule(static)
    for (size_t i = 0; i < count; i++) ok = ok && isfinite(x[i]);
    *finite = ok != 0;
    return CT_OK;
}

ct_status ct_cpu_cast(void *ctx, void *dst, ct_dtype dst_type, const void *src, ct_dtype src_type,
                      size_t count) {
    (void)ctx;
    if (dst_type == src_type)
        memmove(dst, src, count * ct_dtype_size(dst_type));
    else if (dst_type == CT_BF16)
        ct_f32_to_bf16(dst, src, count);
    else
        ct_bf16_to_f32(dst, src, count);
    return CT_OK;
}
