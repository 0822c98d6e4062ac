/* Optimizers, with Keras's names, defaults and update rules.
 *
 * SGD follows Keras 2 (lr, momentum, nesterov, and time decay lr / (1 + decay * iterations));
 * Adam follows Keras (epsilon 1e-7, bias correction folded into the step size); AdamW adds
 * decoupled weight decay. State is kept only for trainable parameters. */
#ifndef CUTUNE_MODEL_OPTIM_H
#define CUTUNE_MODEL_OPTIM_H

#include <stdbool.h>
#include <stdint.h>

#include "model/model.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ct_optimizer_config {
    ct_optimizer_kind kind;
    float lr;            /* SGD 0.01, Adam/AdamW 0.001 */
    float momentum;      /* SGD: 0 */
    bool nesterov;       /* SGD: false */
    float decay;         /* Keras 2 time decay: 0 */
    float beta1, beta2;  /* 0.9, 0.999 */
    float epsilon;       /* 1e-7 */
    float weight_decay;  /* AdamW: 0.004 (Keras 3's default) */
    float l2;            /* L2 penalty on kernels (Keras kernel_regularizer=l2(x)): 0 */
} ct_optimizer_config;

/* Keras's defaults for `kind`. */
void ct_optimizer_defaults(ct_optimizer_config *c, ct_optimizer_kind kind);
/* "sgd", "adam", "adamw" -> kind, and back. */
ct_status ct_optimizer_parse(const char *name, ct_optimizer_kind *kind);
const char *ct_optimizer_name(ct_optimizer_kind kind);

/* Attaches an optimizer and allocates its state for the trainable parameters (Keras's
 * compile). Called again after freezing changes, state is reset as a Keras recompile does. */
ct_status ct_model_compile(ct_model *m, const ct_optimizer_config *c);

/* One update of every trainable parameter from the gradients of the last backward, with the
 * learning rate multiplied by `lr_scale` (schedules, callbacks) and by each layer's lr_mult. */
ct_status ct_model_apply_gradients(ct_model *m, float lr_scale);

/* Updates applied so far (Keras's `iterations`). */
uint64_t ct_model_iterations(const ct_model *m);
/* Restores `iterations` (checkpoint resume). */
void ct_model_set_iterations(ct_model *m, uint64_t iterations);
/* The configuration the model was compiled with; false (and *c untouched) when it was not. */
bool ct_model_get_optimizer(const ct_model *m, ct_optimizer_config *c);

#ifdef __cplusplus
}
#endif
#endif
