/* A data-parallel rank's part of each global batch.
 *
 * `--batch-size` is the global batch, as with Keras's MirroredStrategy: every rank computes the
 * same global permutation of the epoch (same seed), cuts it into global batches, and takes its
 * slice of each, so that N ranks together see exactly the batches one rank would, and the
 * slices of an uneven last batch differ by one sample at most. */
#include "data.h"

size_t ct_shard_rows(size_t g, int rank, int count, size_t *first) {
    if (count <= 1) {
        if (first != NULL) *first = 0;
        return g;
    }
    const size_t lo = g * (size_t)rank / (size_t)count;
    const size_t hi = g * (size_t)(rank + 1) / (size_t)count;
    if (first != NULL) *first = lo;
    return hi - lo;
}

size_t ct_shard_count_samples(size_t n, size_t B, int rank, int count) {
    if (n == 0 || B == 0) return 0;
    const size_t full = n / B, rest = n % B;
    return full * ct_shard_rows(B, rank, count, NULL) + ct_shard_rows(rest, rank, count, NULL);
}

void ct_shard_take(uint32_t *dst, const uint32_t *global, size_t n, size_t B, int rank,
                   int count) {
    size_t at = 0;
    for (size_t start = 0; start < n; start += B) {
        const size_t g = n - start < B ? n - start : B;
        size_t first = 0;
        const size_t rows = ct_shard_rows(g, rank, count, &first);
        for (size_t i = 0; i < rows; i++) dst[at++] = global[start + first + i];
    }
}
