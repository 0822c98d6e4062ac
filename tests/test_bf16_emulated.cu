/* The CUDA backend's bf16 element arithmetic, run on the host, against the CPU's emulation.
 *
 * The CPU backend is the oracle of bf16 runs on the GPU only if both round the same way. The
 * conversions of cuda_bf16.h and the per-element functions of cuda/bf16.cu are
 * __host__ __device__, so this program runs them on the host: __float2bfloat16_rn against
 * ct_bf16_from_float on a million bit patterns and every special case, the loads and stores
 * the templated kernels use (ct_cu_ld, ct_cu_st), and the convolution epilogue
 * rn(relu(float(y) + b)) against the CPU's formula, bit for bit. No GPU needed;
 * test_cuda_ops checks the kernels themselves on a device. */
#include <criterion/criterion.h>

#include <math.h>
#include <stdint.h>
#include <string.h>

/* The kernel file itself, its external functions renamed so they cannot clash with the
 * library's copies. */
#define ct_cu_to_bf16 ct_cu_to_bf16_emulated
#define ct_cu_from_bf16 ct_cu_from_bf16_emulated
#define ct_cu_cast ct_cu_cast_emulated
#define ct_cu_bias_act_bf16 ct_cu_bias_act_bf16_emulated
#include "bf16.cu"
#undef ct_cu_to_bf16
#undef ct_cu_from_bf16
#undef ct_cu_cast
#undef ct_cu_bias_act_bf16

#include "core/dtype.h"

static uint16_t bits_of(__nv_bfloat16 h) {
    __nv_bfloat16_raw r = h;
    return r.x;
}

static __nv_bfloat16 from_bits(uint16_t u) {
    __nv_bfloat16_raw r;
    r.x = u;
    return __nv_bfloat16(r);
}

static float f_of(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* Equal bits, or both NaN (payloads may differ: CUDA returns its canonical NaN). */
static bool same_bf16(uint16_t a, uint16_t b) {
    bool nan_a = (a & 0x7f80u) == 0x7f80u && (a & 0x7fu) != 0;
    bool nan_b = (b & 0x7f80u) == 0x7f80u && (b & 0x7fu) != 0;
    return a == b || (nan_a && nan_b);
}

Test(bf16_emulated, rounding_matches_the_cpu) {
    const uint32_t special[] = {0x00000000u, 0x80000000u, 0x00000001u, 0x00008000u, 0x00018000u,
                                0x3f808000u, 0x3f818000u, 0x3f80ffffu, 0x3f807fffu, 0x7f7fffffu,
                                0x7f7f7fffu, 0x7f7f8000u, 0x7f800000u, 0xff800000u, 0x7fc00000u,
                                0x7f800001u, 0xffc00001u};
    for (size_t i = 0; i < sizeof special / sizeof special[0]; i++) {
        float f = f_of(special[i]);
        uint16_t gpu = bits_of(__float2bfloat16_rn(f)), cpu = ct_bf16_from_float(f);
        cr_expect(same_bf16(gpu, cpu), "0x%08x: cuda 0x%04x, cpu 0x%04x", special[i], gpu, cpu);
    }
    uint32_t u = 0x9e3779b9u;
    for (int i = 0; i < 1 << 20; i++) {
        u = u * 1664525u + 1013904223u;
        float f = f_of(u);
        uint16_t gpu = bits_of(__float2bfloat16_rn(f)), cpu = ct_bf16_from_float(f);
        if (!same_bf16(gpu, cpu)) {
            cr_expect(false, "0x%08x: cuda 0x%04x, cpu 0x%04x", u, gpu, cpu);
            break;
        }
        /* Widening is exact both ways. */
        uint16_t h = (uint16_t)(u >> 16);
        float wg = __bfloat162float(from_bits(h)), wc = ct_bf16_to_float(h);
        if (memcmp(&wg, &wc, sizeof wg) != 0 && !(isnan(wg) && isnan(wc))) {
            cr_expect(false, "widening 0x%04x: cuda %a, cpu %a", h, (double)wg, (double)wc);
            break;
        }
    }
}

Test(bf16_emulated, loads_stores_and_epilogue_match_the_cpu) {
    uint32_t u = 12345u;
    for (int i = 0; i < 1 << 18; i++) {
        u = u * 1664525u + 1013904223u;
        uint16_t y = (uint16_t)(u >> 16);
        if ((y & 0x7f80u) == 0x7f80u) continue; /* the activations are finite here */
        float b = ((float)(u & 0xffffu) / 65536.0f - 0.5f) * 4.0f;
        for (int relu = 0; relu < 2; relu++) {
            uint16_t gpu = bits_of(bf16_bias_act(from_bits(y), b, relu != 0));
            float v = ct_bf16_to_float(y) + b;
            uint16_t cpu = ct_bf16_from_float(relu && v < 0.0f ? 0.0f : v);
            if (gpu != cpu) {
                cr_expect(false, "epilogue of 0x%04x + %a (relu %d): cuda 0x%04x, cpu 0x%04x", y,
                          (double)b, relu, gpu, cpu);
                return;
            }
        }
        __nv_bfloat16 h = from_bits(y), st;
        cr_assert(ct_cu_ld(&h) == ct_bf16_to_float(y));
        ct_cu_st(&st, b);
        cr_assert_eq(bits_of(st), ct_bf16_from_float(b));
    }
}
