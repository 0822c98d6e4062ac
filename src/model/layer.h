/* Layers as the rest of cutune sees them: what a layer kind is (its row of model/kinds.c), for
 * the weights files, export-keras and the training loop, which ask the table instead of
 * switching on the kind. */
#ifndef CUTUNE_MODEL_LAYER_H
#define CUTUNE_MODEL_LAYER_H

#include <stdbool.h>
#include <stddef.h>

#include "model/model.h"

/* One layer's step through the backend: what its kind's forward and backward read. */
typedef struct ct_layer_step {
    ct_model *m;
    ct_backend *be;
    int i;          /* the layer's index */
    ct_layer *l;
    int n;          /* rows of the batch */
    const void *x;  /* the layer's input */
    void *dx;       /* where its input gradient goes; NULL when none is needed */
    bool training;  /* forward: dropout active */
    bool dgrad;     /* backward: compute the input gradient */
    bool wgrad;     /* backward: compute the weight gradients */
} ct_layer_step;

/* What a layer kind is (kinds.c): a row per ct_layer_kind. */
typedef struct ct_layer_kind_ops {
    const char *token;       /* the word for it: "dense" (head specs), "conv", "maxpool" */
    const char *keras_class; /* Keras's class: "Conv2D" */
    const char *keras_snake; /* Keras's automatic name and Keras 3 group name: "conv2d" */
    bool has_params;         /* a kernel (K, 3, 3, C) or (in, out) and a bias (units) */
    bool spatial;            /* the output is a feature map, not flat features */
    bool view;               /* the output is the input reshaped: no buffer, no work */
    /* Sets out_h, out_w, out_c from in_h, in_w, in_c, units (and the concat branch). */
    void (*shape)(const ct_model *m, ct_layer *l);
    /* Layers with parameters: the kernel's shape and the fans Glorot-uniform scales by. */
    void (*kernel)(const ct_layer *l, ct_tensor *kernel, size_t *fan_in, size_t *fan_out);
    ct_status (*forward)(const ct_layer_step *s);
    /* Applies the layer's activation gradient to l->dout in place, then writes s->dx when
     * s->dgrad and the weight gradients when s->wgrad. */
    ct_status (*backward)(const ct_layer_step *s);
    /* The Keras constructor's arguments before name=: `64, (3, 3), activation="relu", ...`. */
    void (*keras_args)(const ct_layer *l, char *buf, size_t cap);
} ct_layer_kind_ops;

const ct_layer_kind_ops *ct_layer_kind_get(ct_layer_kind kind);

static inline bool ct_layer_has_params(const ct_layer *l) {
    return ct_layer_kind_get(l->kind)->has_params;
}

#endif
