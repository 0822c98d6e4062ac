/* Decoding every file of a dataset once, in parallel, to list the ones that cannot be read
 * (`cutune scan --check`). Reports come back in dataset order whatever the thread count. */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

typedef struct check_ctx {
    const ct_dataset *ds;
    const ct_image_options *o;
    char **messages; /* (n) NULL when the file decoded */
} check_ctx;

/* Stands in for a message that could not be copied. */
static char no_memory[] = "cannot be decoded (out of memory recording the reason)";

static void check_one(void *arg, size_t i, int thread) {
    (void)thread;
    check_ctx *c = arg;
    ct_image img;
    if (ct_image_load(ct_dataset_path(c->ds, i), c->o, &img) == CT_OK) {
        ct_image_free(&img);
        return;
    }
    c->messages[i] = ct_data_strdup(ct_last_error());
    if (c->messages[i] == NULL) c->messages[i] = no_memory;
}

ct_status ct_dataset_check(const ct_dataset *ds, const ct_image_options *o, int threads,
                           void (*bad)(void *user, size_t i, const char *message), void *user,
                           size_t *n_bad) {
    *n_bad = 0;
    const size_t n = ct_dataset_count(ds);
    if (ds->store->in_memory || n == 0) return CT_OK;
    check_ctx c = {.ds = ds, .o = o, .messages = calloc(n, sizeof(char *))};
    if (c.messages == NULL) return ct_error(CT_ENOMEM, "cannot allocate %zu reports", n);
    ct_status s = ct_data_parallel_for(n, threads, check_one, &c);
    for (size_t i = 0; i < n; i++) {
        if (c.messages[i] == NULL) continue;
        (*n_bad)++;
        if (bad != NULL) bad(user, i, c.messages[i]);
        if (c.messages[i] != no_memory) free(c.messages[i]);
    }
    free(c.messages);
    return s;
}
