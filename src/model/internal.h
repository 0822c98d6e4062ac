/* The model's private state, shared by the files of src/model and src/train. */
#ifndef CUTUNE_MODEL_INTERNAL_H
#define CUTUNE_MODEL_INTERNAL_H

#include "backbone.h"
#include "layer.h"
#include "model/model.h"
#include "model/optim.h"

#define CT_HEAD_MAX 1024

typedef struct ct_tensor_names {
    char kernel[CT_NAME_MAX + 16], bias[CT_NAME_MAX + 16];
} ct_tensor_names;

struct ct_model {
    ct_model_config cfg;
    char head[CT_HEAD_MAX];        /* expanded head spec */
    const ct_backbone *backbone;   /* the layers before the head (backbones.c) */
    ct_backend *be;

    int n_layers;
    ct_layer *layers;              /* (n_layers) */
    ct_tensor_names *names;        /* (n_layers) */
    int n_backbone;                /* backbone->n_layers: block1_conv1 .. block5_pool */
    ct_loss_kind loss;
    int n_out;                     /* units of the last dense */
    int first_trainable;

    ct_arena params, grads, opt, acts;

    /* bf16 precision stores the backbone's activations and their gradients in bf16 (act_dtype);
     * the image input arrives as float32 and is rounded into input16 by forward, and the one
     * head layer reading the backbone's last output reads a float32 copy of it (bridge), its
     * input gradient going to dbridge and from there, rounded, into the backbone. */
    ct_dtype act_dtype;
    void *input16;                 /* (N, H, W, C) bf16, or NULL */
    float *bridge, *dbridge;       /* (N, last backbone output) float32, or NULL */

    /* In the activation arena, all sized for max_batch: */
    float *input;                  /* (N, H, W, C) */
    float *aux;                    /* (N, aux_dim) or NULL */
    void *scratch[2];              /* outputs of the frozen prefix, ping-pong */
    void *dscratch[2];             /* output gradients, ping-pong */
    float *labels;                 /* (N, n_out) */
    float *weights;                /* (N) */
    float *probs;                  /* (N, n_out) */
    float *loss_value;             /* (1) */

    /* State of the last passes. */
    int last_n;
    bool last_training;
    uint32_t last_step;
    bool have_loss;
    /* A loss was queued since the last forward: ct_model_loss_value may read it. */
    bool loss_queued;

    bool profile;                /* marks around every layer's forward and backward */
    bool fwd_marked[CT_MARKS / 4], bwd_marked[CT_MARKS / 4];
    ct_backward_hook hook;
    void *hook_user;
    ct_backward_hook grads_hook;   /* after a layer wrote its weight gradients */
    void *grads_hook_user;
    uint32_t row0;                 /* the first row's place in the global batch (dropout) */

    /* What owns the model from outside (cutune/model.h's models: their backend and file), freed
     * with it after everything that needs the backend. */
    void *owner;
    void (*free_owner)(void *owner);

    /* Optimizer. */
    bool compiled;
    ct_optimizer_config opt_cfg;
    int opt_slots;                 /* 0, 1 (SGD momentum) or 2 (Adam) */
    uint64_t iterations;
};

/* Parses the head spec (presets expanded) and appends its layers after the backbone. */
ct_status ct_head_build(ct_model *m, const char *spec);

/* (Re)plans and allocates the gradient, optimizer and activation arenas from the current
 * trainable flags. */
ct_status ct_model_replan(ct_model *m);

static inline size_t ct_layer_out_size(const ct_layer *l) {
    return (size_t)l->out_h * l->out_w * l->out_c;
}

/* Whether layer i is the head layer that reads the backbone's output through the bridge. */
static inline bool ct_layer_reads_bridge(const ct_model *m, int i) {
    return m->bridge != NULL && i >= m->n_backbone && m->layers[i].src == m->n_backbone - 1;
}


#endif
