/* The addressed Fisher-Yates permutation (shuffle.h). */
#include "shuffle.h"

#include "core/rng.h"

void ct_shuffle_order(uint32_t *order, size_t n, uint64_t seed, uint32_t purpose, uint32_t group) {
    for (size_t i = 0; i < n; i++) order[i] = (uint32_t)i;
    for (size_t i = n; i > 1; i--) {
        uint32_t word = ct_rng_word(seed, purpose, group, 0, (uint32_t)(i - 1));
        size_t j = (size_t)(((uint64_t)word * (uint64_t)i) >> 32);
        uint32_t t = order[i - 1];
        order[i - 1] = order[j];
        order[j] = t;
    }
}
