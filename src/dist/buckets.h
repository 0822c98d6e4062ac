/* The gradient buckets of a data-parallel step (PyTorch DDP's schedule).
 *
 * The model's gradient arena holds the trainable layers' gradients in backward order: the last
 * layer's first. It is cut into buckets of whole tensors that close once they hold
 * CUTUNE_BUCKET_MB (25 MB) or more, the first 1 MB, so that communication starts early.
 * Backward calls ct_grad_sync_layer_done after each layer has written its gradients; every
 * bucket whose lowest layer is done is then handed to the communicator, in order, which sums it
 * while backward goes on (NCCL's own stream). ct_grad_sync_finish hands over what is left and makes
 * the backend wait for the last sum: the optimizer reads the sums after it. Frozen layers have
 * no gradients, so no buckets. */
#ifndef CUTUNE_DIST_BUCKETS_H
#define CUTUNE_DIST_BUCKETS_H

#include <stddef.h>
#include <stdint.h>

#include "dist/comm.h"
#include "model/model.h"

typedef struct ct_bucket {
    float *data;      /* backend memory, a slice of the gradient arena */
    size_t count;     /* floats */
    int lowest_layer; /* the bucket is complete once this layer's backward is done */
} ct_bucket;

typedef struct ct_grad_sync {
    ct_comm *comm;
    ct_model *m;
    ct_bucket *buckets;
    int n, cap;
    int next;         /* the first bucket not yet handed over in this step */
    int64_t step;     /* for messages */
} ct_grad_sync;

/* Plans the buckets of m's current trainable layers (again after every change of freezing):
 * `bucket_bytes` each, the first `first_bytes`. CT_EINVAL when the arena is not in backward
 * order. */
ct_status ct_grad_sync_plan(ct_grad_sync *g, ct_model *m, ct_comm *comm, size_t bucket_bytes,
                            size_t first_bytes);
/* ct_grad_sync_plan with CUTUNE_BUCKET_MB's size (25 MB; the first 1 MB, or the size when
 * smaller), and the hook set on m so that backward hands the buckets over. */
ct_status ct_grad_sync_attach(ct_grad_sync *g, ct_model *m, ct_comm *comm);
/* A step begins: no bucket handed over yet. */
void ct_grad_sync_begin(ct_grad_sync *g, int64_t step);
/* Layer `layer` has written its gradients (and every layer above it has). */
ct_status ct_grad_sync_layer_done(ct_grad_sync *g, int layer);
/* Hands over the buckets left and queues the backend's wait for every sum. */
ct_status ct_grad_sync_finish(ct_grad_sync *g);
void ct_grad_sync_free(ct_grad_sync *g);

/* The hook ct_model_set_grads_hook takes: user is the ct_grad_sync. */
ct_status ct_grad_sync_hook(void *user, ct_model *m, int layer);

#endif
