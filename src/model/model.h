/* The model's internals, for the rest of the library: layers, their kinds and buffers, the passes
 * (forward, loss, backward), freezing and the tensors the weights files read and write. The
 * model a C program uses is cutune/model.h.
 *
 * A backbone (VGG16, VGG19: model/backbones.c) with Keras layer names and a head described by a
 * spec string.
 *
 * Layers run in order. Each reads the output of its source layer (or the image / auxiliary
 * input) and writes its own output. A head may carry one auxiliary branch: `aux:U` applies a
 * Dense(U) to the auxiliary scalars (the iceberg incidence angle) and the next `concat` joins it
 * to the image features, as the seed notebook's Keras model does.
 *
 * Head spec: comma-separated tokens, each optionally followed by @name to set the Keras name.
 *   flatten | gap | gmp             Flatten, GlobalAveragePooling2D, GlobalMaxPooling2D
 *   aux:U                           Dense(U) on the auxiliary input, joined by the next concat
 *   concat                          concatenate([features, aux branch])
 *   dense:U[:relu|linear|sigmoid|softmax]
 *   dropout:R                       Dropout(R), 0 <= R < 1
 * Presets: "iceberg" (the seed notebook's head) and "mri" (the seed book's head).
 * The last layer must be a Dense with sigmoid (1 unit, binary cross-entropy) or softmax (>= 2
 * units, categorical cross-entropy); that activation is applied inside the loss, from logits.
 *
 * Freezing follows Keras: every layer has a `trainable` flag. Backward runs from the loss down to
 * the lowest trainable layer only; frozen layers get no weight gradient, no gradient memory and
 * no optimizer state, and activations below the lowest trainable layer are not kept. */
#ifndef CUTUNE_MODEL_MODEL_H
#define CUTUNE_MODEL_MODEL_H

#include <stdbool.h>
#include <stdint.h>

#include "core/backend.h"
#include "core/tensor.h"
#include "cutune/model.h"

#ifdef __cplusplus
extern "C" {
#endif

#define CT_NAME_MAX 64

typedef enum {
    CT_LAYER_CONV,     /* Conv2D 3x3 'same' + ReLU */
    CT_LAYER_MAXPOOL,  /* MaxPooling2D 2x2 stride 2 'valid' */
    CT_LAYER_FLATTEN,
    CT_LAYER_GAP,      /* GlobalAveragePooling2D */
    CT_LAYER_GMP,      /* GlobalMaxPooling2D */
    CT_LAYER_DENSE,
    CT_LAYER_DROPOUT,
    CT_LAYER_CONCAT
} ct_layer_kind;

typedef enum { CT_ACT_LINEAR, CT_ACT_RELU, CT_ACT_SIGMOID, CT_ACT_SOFTMAX } ct_activation;

#define CT_SRC_IMAGE (-1) /* a layer whose input is the image batch */
#define CT_SRC_AUX (-2)   /* a layer whose input is the auxiliary scalars */

typedef struct ct_layer {
    char name[CT_NAME_MAX];      /* Keras name: block1_conv1, block5_pool, dense_1, ... */
    ct_layer_kind kind;
    ct_activation act;
    int units;                   /* conv filters or dense units */
    float rate;                  /* dropout rate */
    int src;                     /* index of the input layer, or CT_SRC_IMAGE / CT_SRC_AUX */
    int src2;                    /* concat: index of the aux branch layer; otherwise -1 */
    int in_h, in_w, in_c;        /* input shape of one sample (dense: 1, 1, in) */
    int out_h, out_w, out_c;     /* output shape of one sample */
    bool trainable;              /* Keras flag; meaningful for layers with parameters */
    float lr_mult;               /* learning-rate multiplier (discriminative rates); 1 */

    ct_tensor kernel;            /* conv (K, 3, 3, C); dense (in, out) */
    ct_tensor bias;              /* (K) or (out) */
    ct_tensor dkernel, dbias;    /* gradients; data NULL while frozen */
    ct_tensor opt_kernel[2], opt_bias[2]; /* optimizer slots; data NULL while unused */

    /* (N, out_h, out_w, out_c) activation and dL/dout during backward, backend memory, of
     * type `dtype`: bf16 in the backbone when the backend's precision is bf16, else float32.
     * ct_model_layer_output and ct_model_layer_finite read them whatever the type. */
    ct_dtype dtype;
    void *out;
    void *dout;

    /* How often backward computed each kind of gradient: tests use these to show that no work
     * is done below the lowest trainable layer. */
    unsigned long n_dgrad, n_wgrad;
} ct_layer;

/* Builds the model and initialises every parameter the Keras way (Glorot uniform kernels, zero
 * biases) from the seeded counter-based generator. All layers start trainable. */
ct_status ct_model_init(ct_model **out, const ct_model_config *cfg, ct_backend *be);

/* Hands the model an owner, freed by ct_model_free after the model (the public API's models
 * keep their backend and their file's settings there); and gets it back. */
void ct_model_set_owner(ct_model *m, void *owner, void (*free_owner)(void *owner));
void *ct_model_owner(const ct_model *m);

int ct_model_num_layers(const ct_model *m);
ct_layer *ct_model_layer(ct_model *m, int i);
/* The layer with this Keras name, or NULL. */
ct_layer *ct_model_find(ct_model *m, const char *name);
ct_loss_kind ct_model_loss_kind(const ct_model *m);
/* The index of the lowest trainable layer with parameters, or the layer count when none is. */
int ct_model_first_trainable(const ct_model *m);

/* Freezing. Changing flags re-plans the gradient, optimizer and activation arenas, as Keras needs
 * a recompile: call between steps. */
ct_status ct_model_set_trainable(ct_model *m, const char *name, bool trainable);
/* Freezes the layers whose flags are false in `trainable` (one per layer). */
ct_status ct_model_set_trainable_mask(ct_model *m, const bool *trainable);

/* Backend memory for the inputs of the next forward: (max_batch, H, W, C) and
 * (max_batch, aux_dim). Loaders and the augmentation kernel write here directly. */
float *ct_model_input(ct_model *m);
float *ct_model_aux_input(ct_model *m);

/* Forward pass over the first `n` rows of the input buffers. `training` turns dropout on;
 * `step` addresses the dropout masks. */
ct_status ct_model_forward(ct_model *m, int n, bool training, uint32_t step);
/* Copies host arrays into the input buffers for the next ct_model_forward: (n, H, W, C) images
 * and (n, aux_dim) auxiliary values (NULL when aux_dim is 0). */
ct_status ct_model_set_input(ct_model *m, const float *x, const float *aux, int n);
/* Mirrors the first `n` images of the input buffer in place (left-right, top-bottom, or both:
 * a half turn); the auxiliary values stay. Test-time augmentation flips a batch already on the
 * device this way instead of sending a flipped copy. */
ct_status ct_model_flip_input(ct_model *m, int n, bool horizontal, bool vertical);
/* ct_model_set_input, then forward. */
ct_status ct_model_forward_host(ct_model *m, const float *x, const float *aux, int n,
                                bool training, uint32_t step);

/* Loss of the last forward against host labels ((n, 1) 0/1 for sigmoid heads, (n, classes)
 * for softmax heads), with optional per-sample weights (NULL: 1). Also keeps dL/dlogits for
 * backward and the probabilities for ct_model_probs. CT_ENUMERIC if the loss is not finite. */
ct_status ct_model_loss(ct_model *m, const float *labels, const float *weights, float *loss);
/* ct_model_loss in two halves, so that a training step waits for the device once: _start
 * copies the labels in and queues the loss, its gradient and the probabilities (backward may
 * follow at once); _value reads the loss back, CT_ENUMERIC if it is not finite. */
ct_status ct_model_loss_start(ct_model *m, const float *labels, const float *weights);
ct_status ct_model_loss_value(ct_model *m, float *loss);
/* Whether every gradient of the trainable layers is finite, in one pass over the gradient
 * arena (one wait for the device). */
ct_status ct_model_grads_finite(ct_model *m, bool *finite);
/* Probabilities of the last ct_model_loss or ct_model_predict call: (n, outputs), host. */
ct_status ct_model_probs(ct_model *m, float *out);
/* Forward in inference mode followed by the output activation, without labels; the
 * probabilities are copied to probs_host (n, outputs), or, when it is NULL, the work is only
 * queued and ct_model_probs reads them later. */
ct_status ct_model_predict(ct_model *m, int n, float *probs_host);

/* The output of `layer` for a batch (inference mode), to host memory (n, layer output size).
 * With ct_model_forward_from_host this lets a training loop compute the output of a frozen
 * prefix once and reuse it every epoch, when nothing random happens before it. */
ct_status ct_model_features(ct_model *m, int layer, const float *x, const float *aux, int n,
                            float *out);
/* Forward from `layer` on, given the output of layer - 1 (host memory, as ct_model_features
 * returns it) and the auxiliary values. `layer` must be at or below the lowest trainable layer,
 * so backward never needs what came before it. */
ct_status ct_model_forward_from_host(ct_model *m, int layer, const float *act, const float *aux,
                                     int n, bool training, uint32_t step);


/* Backward from the last ct_model_loss down to the lowest trainable layer. */
ct_status ct_model_backward(ct_model *m);

/* Called by backward just before each layer's own backward step, while `layer->dout` holds the
 * gradient of the loss with respect to that layer's output (after the step, ReLU layers have
 * masked it in place), of the layer's `dtype` (bf16 in the backbone at bf16 precision). For
 * inspection: gradient checks, debugging, finite checks. */
typedef ct_status (*ct_backward_hook)(void *user, ct_model *m, int layer);
void ct_model_set_backward_hook(ct_model *m, ct_backward_hook hook, void *user);
/* Called by backward just after layer `layer` wrote its weight gradients (trainable layers
 * only), every layer above it being done: data-parallel training sums each bucket of gradients
 * from here while backward goes on (dist/buckets.h). NULL removes it. */
void ct_model_set_grads_hook(ct_model *m, ct_backward_hook hook, void *user);
/* The place of the batch's first row in the global batch of a data-parallel step (0 on one
 * rank): dropout draws row r's mask as row row0 + r, so N ranks with a share each draw what
 * one rank with the whole batch draws. */
void ct_model_set_row_offset(ct_model *m, uint32_t row0);

/* Per-layer timing: with the profile on, every layer's forward and backward step is bracketed
 * by backend marks (CUDA events, or the clock on the CPU). ct_model_profile waits for the last
 * pass and gives each layer's milliseconds of forward and of backward in the last forward and
 * backward pass (-1 where the layer did not run). */
ct_status ct_model_set_profile(ct_model *m, bool on);
ct_status ct_model_profile(ct_model *m, double *fwd_ms, double *bwd_ms);

/* The output of layer i in the last forward pass, (n, out_h, out_w, out_c), widened to float32
 * in host memory; and whether it is all finite (for diagnosing a NaN step). */
ct_status ct_model_layer_output(ct_model *m, int i, int n, float *host);
ct_status ct_model_layer_finite(ct_model *m, int i, int n, bool *finite);

/* The element type of the backbone's activations: CT_BF16 when the backend's precision is bf16
 * (the head, the inputs and every parameter stay float32), else CT_F32. */
ct_dtype ct_model_activation_dtype(const ct_model *m);

/* Copies a backend tensor to or from host memory (t->size floats). */
ct_status ct_model_tensor_get(ct_model *m, const ct_tensor *t, float *host);
ct_status ct_model_tensor_set(ct_model *m, ct_tensor *t, const float *host);

ct_backend *ct_model_backend(ct_model *m);

/* The parameter and optimizer-state arenas (backend memory; NULL and 0 when empty): the whole
 * state a data-parallel rank 0 hands to the others. */
void ct_model_state_arenas(ct_model *m, void **params, size_t *params_bytes, void **opt,
                           size_t *opt_bytes);
/* Sets every gradient to zero: a data-parallel rank with no rows in a step adds nothing. */
ct_status ct_model_zero_grads(ct_model *m);

/* Bytes held by each arena: parameters, gradients, optimizer state, activations. */
typedef struct ct_model_memory {
    size_t params, grads, optimizer, activations, workspace;
} ct_model_memory;
void ct_model_memory_get(const ct_model *m, ct_model_memory *mem);

/* Floating-point operations per sample of one forward pass and of one training step (forward,
 * then the data and weight gradients that the current trainable flags call for), counting a
 * multiply-add as 2. Convolutions and dense layers only. */
void ct_model_flops(const ct_model *m, double *forward, double *train);
/* The same for layer i alone: its forward, and its backward (data and weight gradients as the
 * trainable flags call for), per sample. */
void ct_model_layer_flops(const ct_model *m, int i, double *forward, double *backward);

/* The head spec with presets expanded, for printing and saving. */
const char *ct_model_head_spec(const ct_model *m);

/* A synthetic batch for benchmarks, from Philox draws (seed, the test purpose, `stream`): n
 * images in [-60, 60) (the spread of caffe-preprocessed pixels), auxiliary values in [0, 1),
 * and labels one-hot (softmax heads) or 0/1 (sigmoid heads), all host memory. */
void ct_model_synthetic_batch(const ct_model *m, int n, uint32_t stream, uint64_t seed, float *x,
                              float *aux, float *labels);

#ifdef __cplusplus
}
#endif
#endif
