/* Counter-based random numbers (Philox4x32-10, Salmon et al., SC'11).
 *
 * A draw is addressed by what it is for, never by a stream position: (purpose, a/b coordinates
 * such as epoch and sample, draw number) form the 128-bit counter and the run seed forms the key.
 * The CPU reference and the CUDA kernels compute the same function, so they draw the same
 * augmentation parameters and dropout masks for the same sample, and a resumed run continues
 * exactly where it stopped. The same code compiles for the host and, through CT_HD, the device. */
#ifndef CUTUNE_CORE_RNG_H
#define CUTUNE_CORE_RNG_H

#include <stdint.h>

#ifdef __CUDACC__
#define CT_HD __host__ __device__ __forceinline__
#else
#define CT_HD static inline
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* What a draw is for: the top 16 bits of counter word 3. The low 16 bits carry a layer or
 * parameter index, so different layers never share a stream. */
enum {
    CT_RNG_INIT = 1,    /* weights: outer = layer, inner = 0 kernel / 1 bias, draw = element   */
    CT_RNG_DROPOUT = 2, /* masks: word DROPOUT<<16 | layer, outer = step, inner = batch row     */
    CT_RNG_AUGMENT = 3, /* augmentation: outer = epoch, inner = sample index, draw = parameter  */
    CT_RNG_SHUFFLE = 4, /* epoch order: outer = epoch, inner = 0, draw = position               */
    CT_RNG_TEST = 15    /* tests and benchmarks                                                */
};

typedef struct ct_philox_out {
    uint32_t v[4];
} ct_philox_out;

/* One Philox4x32-10 block: 4 independent 32-bit words from a 128-bit counter and 64-bit key. */
CT_HD ct_philox_out ct_philox4x32_10(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3,
                                     uint32_t k0, uint32_t k1) {
    const uint32_t M0 = 0xD2511F53u, M1 = 0xCD9E8D57u;
    const uint32_t W0 = 0x9E3779B9u, W1 = 0xBB67AE85u;
    for (int r = 0; r < 10; r++) {
        uint64_t p0 = (uint64_t)M0 * c0;
        uint64_t p1 = (uint64_t)M1 * c2;
        uint32_t hi0 = (uint32_t)(p0 >> 32), lo0 = (uint32_t)p0;
        uint32_t hi1 = (uint32_t)(p1 >> 32), lo1 = (uint32_t)p1;
        uint32_t n0 = hi1 ^ c1 ^ k0, n2 = hi0 ^ c3 ^ k1;
        c0 = n0;
        c1 = lo1;
        c2 = n2;
        c3 = lo0;
        k0 += W0;
        k1 += W1;
    }
    ct_philox_out o;
    o.v[0] = c0;
    o.v[1] = c1;
    o.v[2] = c2;
    o.v[3] = c3;
    return o;
}

/* A uniform float in [0, 1) from the top 24 bits of a word: exactly representable, the same on
 * every platform. */
CT_HD float ct_rng_unit(uint32_t word) { return (float)(word >> 8) * (1.0f / 16777216.0f); }

/* Word `draw` of the stream addressed by (purpose_word, outer, inner) under `seed`. The counter is
 * (draw / 4, inner, outer, purpose_word) and the key is the seed's two halves (low word first);
 * word draw % 4 of the block is returned. Every purpose above is built on this. */
CT_HD uint32_t ct_rng_word(uint64_t seed, uint32_t purpose_word, uint32_t outer, uint32_t inner,
                           uint32_t draw) {
    ct_philox_out o = ct_philox4x32_10(draw >> 2, inner, outer, purpose_word, (uint32_t)seed,
                                       (uint32_t)(seed >> 32));
    return o.v[draw & 3u];
}

#ifdef __cplusplus
}
#endif
#endif
