/* Element types of activations, and bfloat16 on the host.
 *
 * Parameters, their gradients and optimizer state are always float32. Activations and their
 * gradients are float32, or bfloat16 where the backend's precision is bf16 (the convolutional
 * backbone then stores what it keeps for backward at half the bytes, as mixed-precision training
 * does). bfloat16 is the upper half of a float32: widening is exact, narrowing rounds to nearest
 * even, the rounding __float2bfloat16_rn does on the GPU. */
#ifndef CUTUNE_CORE_DTYPE_H
#define CUTUNE_CORE_DTYPE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { CT_F32 = 0, CT_BF16 = 1 } ct_dtype;

typedef uint16_t ct_bf16; /* bit pattern of a bfloat16 */

static inline size_t ct_dtype_size(ct_dtype t) { return t == CT_BF16 ? 2 : 4; }
static inline const char *ct_dtype_name(ct_dtype t) { return t == CT_BF16 ? "bf16" : "f32"; }

/* Round to nearest even; NaN stays NaN (quieted), overflow goes to infinity. */
static inline ct_bf16 ct_bf16_from_float(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (ct_bf16)((u >> 16) | 0x0040u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (ct_bf16)(u >> 16);
}

static inline float ct_bf16_to_float(ct_bf16 h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* x rounded to the nearest bfloat16, as a float. */
static inline float ct_bf16_round(float f) { return ct_bf16_to_float(ct_bf16_from_float(f)); }

/* Array conversions on the host. dst and src may be the same array for ct_round_bf16. */
void ct_f32_to_bf16(ct_bf16 *dst, const float *src, size_t count);
void ct_bf16_to_f32(float *dst, const ct_bf16 *src, size_t count);
/* Widens count bf16 values held in the first half of `buf` in place into count floats. */
void ct_bf16_widen_inplace(float *buf, size_t count);

#ifdef __cplusplus
}
#endif
#endif
