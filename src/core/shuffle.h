/* The one shuffle: a Fisher-Yates permutation whose draws are addressed, not streamed.
 *
 * Every ordering cutune draws at random (an epoch's sample order, a stratified validation split,
 * the k-fold deal, advise's probe sample) is this permutation: positions n-1 down to 1 each swap
 * with a position j <= i drawn as ct_rng_word(seed, purpose, group, 0, i), mapped to [0, i] by a
 * multiply-shift (a bias below (i + 1) / 2^32). Because a draw depends only on its address, the
 * loader, the frozen-prefix cache and a resumed run compute the same order, and the data-parallel
 * ranks of one run agree on it without talking. */
#ifndef CUTUNE_CORE_SHUFFLE_H
#define CUTUNE_CORE_SHUFFLE_H

#include <stddef.h>
#include <stdint.h>

/* order[0..n) = the permutation of 0..n-1 for (seed, purpose, group). */
void ct_shuffle_order(uint32_t *order, size_t n, uint64_t seed, uint32_t purpose, uint32_t group);

#endif
