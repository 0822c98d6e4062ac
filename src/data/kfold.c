/* The stratified k-fold deal of `cutune train --folds` and of advise's cross-validated probe:
 * within each label the samples are put in the order of the addressed permutation (one group
 * per label, core/shuffle.h) and dealt round-robin, the deal continuing from label to label so
 * the folds' sizes differ by at most one. */
#include <stdlib.h>

#include "../core/shuffle.h"
#include "core/rng.h"
#include "train/run.h"

/* Philox purpose word: CT_RNG_SHUFFLE, low bits distinct from the loader's and the splits'. */
#define PURPOSE_KFOLD (((uint32_t)CT_RNG_SHUFFLE << 16) | 0x0f0u)

ct_status ct_kfold_assign(const int *labels, size_t n, int folds, uint64_t seed, int *fold_of) {
    if (folds < 2) return ct_error(CT_EINVAL, "k-fold needs at least 2 folds, not %d", folds);
    if ((size_t)folds > n)
        return ct_error(CT_EINVAL, "%d folds of %zu samples: each fold needs at least one sample",
                        folds, n);
    int groups = 0;
    for (size_t i = 0; i < n; i++)
        if (labels[i] + 1 > groups) groups = labels[i] + 1;
    size_t *members = malloc(n * sizeof *members);
    uint32_t *order = malloc(n * sizeof *order);
    if (members == NULL || order == NULL) {
        free(members);
        free(order);
        return ct_error(CT_ENOMEM, "cannot allocate the folds of %zu samples", n);
    }
    /* Group -1 (unlabelled) last; the deal continues round-robin across groups. */
    size_t next = 0;
    for (int g = 0; g <= groups; g++) {
        int label = g < groups ? g : -1;
        size_t m = 0;
        for (size_t i = 0; i < n; i++)
            if ((labels[i] < 0 ? -1 : labels[i]) == label) members[m++] = i;
        ct_shuffle_order(order, m, seed, PURPOSE_KFOLD, (uint32_t)g);
        for (size_t j = 0; j < m; j++)
            fold_of[members[order[j]]] = (int)((next + j) % (size_t)folds);
        next += m;
    }
    free(members);
    free(order);
    return CT_OK;
}

