/* Philox4x32-10 against the published known-answer vectors (Random123's kat_vectors), and the
 * properties the rest of cutune relies on: addressing by counter, and uniforms in [0, 1). */
#include <criterion/criterion.h>
#include <math.h>

#include "core/rng.h"

Test(rng, philox_known_answers) {
    static const uint32_t kat[3][10] = {
        {0, 0, 0, 0, 0, 0, 0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8},
        {0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0x408f276d,
         0x41c83b0e, 0xa20bc7c6, 0x6d5451fd},
        {0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344, 0xa4093822, 0x299f31d0, 0xd16cfe09,
         0x94fdcceb, 0x5001e420, 0x24126ea1},
    };
    for (int t = 0; t < 3; t++) {
        const uint32_t *k = kat[t];
        ct_philox_out o = ct_philox4x32_10(k[0], k[1], k[2], k[3], k[4], k[5]);
        for (int j = 0; j < 4; j++)
            cr_assert_eq(o.v[j], k[6 + j], "vector %d word %d: got %08x, want %08x", t, j,
                         o.v[j], k[6 + j]);
    }
}

Test(rng, word_is_addressed_by_counter) {
    /* Draw 5 of a stream is word 1 of block 1, whatever was drawn before. */
    ct_philox_out o = ct_philox4x32_10(1, 7, 3, 0x00020005u, 0x89abcdefu, 0x01234567u);
    cr_assert_eq(ct_rng_word(0x0123456789abcdefull, 0x00020005u, 3, 7, 5), o.v[1]);
    /* Different purposes, coordinates or seeds give different words. */
    uint32_t a = ct_rng_word(1, 1, 0, 0, 0);
    cr_assert_neq(a, ct_rng_word(2, 1, 0, 0, 0));
    cr_assert_neq(a, ct_rng_word(1, 2, 0, 0, 0));
    cr_assert_neq(a, ct_rng_word(1, 1, 1, 0, 0));
    cr_assert_neq(a, ct_rng_word(1, 1, 0, 1, 0));
}

Test(rng, unit_range_and_mean) {
    cr_assert_eq(ct_rng_unit(0), 0.0f);
    cr_assert(ct_rng_unit(0xffffffffu) < 1.0f);
    double sum = 0.0;
    const int n = 100000;
    for (int i = 0; i < n; i++) {
        float u = ct_rng_unit(ct_rng_word(42, 15u << 16, 0, 0, (uint32_t)i));
        cr_assert(u >= 0.0f && u < 1.0f);
        sum += u;
    }
    /* The mean of n uniforms has standard deviation 1/sqrt(12 n) ~ 0.0009; 5 sigma is 0.0046. */
    cr_assert(fabs(sum / n - 0.5) < 0.0046, "mean %f", sum / n);
}
