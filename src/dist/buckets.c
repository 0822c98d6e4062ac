/* Cutting the gradient arena into buckets, and handing each to the communicator as soon as
 * backward has written it (buckets.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/knobs.h"
#include "dist/buckets.h"

static ct_status push(ct_grad_sync *g, float *data, size_t count, int lowest) {
    if (g->n == g->cap) {
        int cap = g->cap ? 2 * g->cap : 16;
        ct_bucket *b = realloc(g->buckets, (size_t)cap * sizeof *b);
        if (b == NULL) return ct_error(CT_ENOMEM, "cannot allocate the gradient buckets");
        g->buckets = b;
        g->cap = cap;
    }
    g->buckets[g->n++] = (ct_bucket){data, count, lowest};
    return CT_OK;
}

/* The bucket being filled. As in PyTorch DDP, a bucket takes whole tensors and closes once it
 * holds its size or more; the first is smaller, so that communication starts early. */
typedef struct filling {
    float *start, *end; /* the open bucket's span; start NULL: none open */
    int lowest;
    size_t cap_bytes;
} filling;

static ct_status add_tensor(ct_grad_sync *g, filling *f, const ct_tensor *t, int layer,
                            size_t bucket_bytes) {
    float *p = t->data;
    if (f->start != NULL && p < f->end)
        return ct_error(CT_EINVAL, "the gradient arena is not in backward order (%s)", t->name);
    if (f->start == NULL) f->start = p;
    f->end = p + t->size;
    f->lowest = layer;
    if ((size_t)((char *)f->end - (char *)f->start) < f->cap_bytes) return CT_OK;
    ct_status s = push(g, f->start, (size_t)(f->end - f->start), f->lowest);
    f->start = NULL;
    f->cap_bytes = bucket_bytes;
    return s;
}

ct_status ct_grad_sync_plan(ct_grad_sync *g, ct_model *m, ct_comm *comm, size_t bucket_bytes,
                            size_t first_bytes) {
    g->comm = comm;
    g->m = m;
    g->n = 0;
    g->next = 0;
    filling f = {NULL, NULL, -1, first_bytes};
    for (int i = ct_model_num_layers(m) - 1; i >= 0; i--) {
        const ct_layer *l = ct_model_layer(m, i);
        if (l->dkernel.data == NULL) continue;
        ct_status s = add_tensor(g, &f, &l->dkernel, i, bucket_bytes);
        if (s == CT_OK) s = add_tensor(g, &f, &l->dbias, i, bucket_bytes);
        if (s != CT_OK) return s;
    }
    return f.start != NULL ? push(g, f.start, (size_t)(f.end - f.start), f.lowest) : CT_OK;
}

ct_status ct_grad_sync_attach(ct_grad_sync *g, ct_model *m, ct_comm *comm) {
    double mb = 25.0;
    ct_status s = ct_knob_bucket_mb(&mb);
    const size_t bytes = (size_t)(mb * 1048576.0), first = 1048576;
    if (s == CT_OK) s = ct_grad_sync_plan(g, m, comm, bytes, bytes < first ? bytes : first);
    if (s == CT_OK) ct_model_set_grads_hook(m, ct_grad_sync_hook, g);
    return s;
}

void ct_grad_sync_begin(ct_grad_sync *g, int64_t step) {
    g->next = 0;
    g->step = step;
}

static ct_status hand_over(ct_grad_sync *g, int i) {
    char what[96];
    snprintf(what, sizeof what, "the gradient all-reduce of step %lld (bucket %d of %d)",
             (long long)g->step + 1, i + 1, g->n);
    return ct_comm_allreduce(g->comm, g->buckets[i].data, g->buckets[i].count, what);
}

ct_status ct_grad_sync_layer_done(ct_grad_sync *g, int layer) {
    while (g->next < g->n && g->buckets[g->next].lowest_layer >= layer) {
        ct_status s = hand_over(g, g->next);
        if (s != CT_OK) return s;
        g->next++;
    }
    return CT_OK;
}

ct_status ct_grad_sync_finish(ct_grad_sync *g) {
    for (; g->next < g->n; g->next++) {
        ct_status s = hand_over(g, g->next);
        if (s != CT_OK) return s;
    }
    char what[64];
    snprintf(what, sizeof what, "the gradient all-reduce of step %lld", (long long)g->step + 1);
    return ct_comm_wait(g->comm, what);
}

ct_status ct_grad_sync_hook(void *user, ct_model *m, int layer) {
    (void)m;
    return ct_grad_sync_layer_done(user, layer);
}

void ct_grad_sync_free(ct_grad_sync *g) {
    free(g->buckets);
    memset(g, 0, sizeof *g);
}
