/* Layer kinds: one row per kind with its shape rule, its parameters' shapes, its Keras class and
 * its forward and backward steps through the backend's op table.
 *
 * Everything that depends on what a layer is lives in this table; the model, the passes, the
 * weights files and export-keras ask it instead of switching on the kind. A new kind (a fused
 * convolution + pool on the GPU, a residual join for another backbone) is a new row: its shape,
 * its steps (calling new backend ops where it needs them) and its Keras spelling. */
#include <stdio.h>
#include <string.h>

#include "internal.h"

/* ---- shapes ---- */

static void shape_same(const ct_model *m, ct_layer *l) {
    (void)m;
    l->out_h = l->in_h;
    l->out_w = l->in_w;
    l->out_c = l->kind == CT_LAYER_CONV ? l->units : l->in_c;
}

static void shape_halve(const ct_model *m, ct_layer *l) {
    (void)m;
    l->out_h = l->in_h / 2;
    l->out_w = l->in_w / 2;
    l->out_c = l->in_c;
}

static void shape_flat(const ct_model *m, ct_layer *l) {
    (void)m;
    l->out_h = l->out_w = 1;
    l->out_c = l->in_h * l->in_w * l->in_c;
}

static void shape_channels(const ct_model *m, ct_layer *l) {
    (void)m;
    l->out_h = l->out_w = 1;
    l->out_c = l->in_c;
}

static void shape_units(const ct_model *m, ct_layer *l) {
    (void)m;
    l->out_h = l->out_w = 1;
    l->out_c = l->units;
}

static void shape_concat(const ct_model *m, ct_layer *l) {
    l->out_h = l->out_w = 1;
    l->out_c = l->in_c + m->layers[l->src2].out_c;
}

/* ---- parameters: shapes and Glorot fans ---- */

static void kernel_conv(const ct_layer *l, ct_tensor *k, size_t *fan_in, size_t *fan_out) {
    int shape[4] = {l->units, 3, 3, l->in_c};
    ct_tensor_set_shape(k, 4, shape);
    *fan_in = (size_t)9 * l->in_c;
    *fan_out = (size_t)9 * l->units;
}

static void kernel_dense(const ct_layer *l, ct_tensor *k, size_t *fan_in, size_t *fan_out) {
    int shape[2] = {l->in_c * l->in_h * l->in_w, l->units};
    ct_tensor_set_shape(k, 2, shape);
    *fan_in = (size_t)l->in_c;
    *fan_out = (size_t)l->units;
}

/* ---- steps ---- */

static ct_dropout_key dropout_key(const ct_model *m, int layer) {
    ct_dropout_key k = {m->cfg.seed, (uint32_t)layer, m->last_step, m->row0};
    return k;
}

static ct_conv_args conv_args(const ct_layer_step *s) {
    const ct_layer *l = s->l;
    ct_conv_args a = {.n = s->n, .h = l->in_h, .w = l->in_w, .c = l->in_c, .k = l->units,
                      .act = l->dtype, .x = s->x, .wt = l->kernel.data, .b = l->bias.data,
                      .y = l->out, .dy = l->dout, .dx = s->dx, .dw = l->dkernel.data,
                      .db = l->dbias.data, .relu = true};
    return a;
}

static ct_status conv_forward(const ct_layer_step *s) {
    ct_conv_args a = conv_args(s);
    return s->be->ops->conv3x3_forward(s->be->ctx, &a);
}

static ct_status conv_backward(const ct_layer_step *s) {
    ct_conv_args a = conv_args(s);
    return s->be->ops->conv3x3_backward(s->be->ctx, &a, s->dgrad, s->wgrad);
}

static ct_dense_args dense_args(const ct_layer_step *s) {
    const ct_layer *l = s->l;
    ct_dense_args a = {.n = s->n, .in = l->in_h * l->in_w * l->in_c, .out = l->units,
                       .x = s->x, .wt = l->kernel.data, .b = l->bias.data, .y = l->out,
                       .dy = l->dout, .dx = s->dx, .dw = l->dkernel.data, .db = l->dbias.data,
                       .relu = l->act == CT_ACT_RELU};
    return a;
}

static ct_status dense_forward(const ct_layer_step *s) {
    ct_dense_args a = dense_args(s);
    return s->be->ops->dense_forward(s->be->ctx, &a);
}

static ct_status dense_backward(const ct_layer_step *s) {
    if (!s->dgrad && !s->wgrad) return CT_OK;
    ct_dense_args a = dense_args(s);
    return s->be->ops->dense_backward(s->be->ctx, &a, s->dgrad, s->wgrad);
}

static ct_status maxpool_forward(const ct_layer_step *s) {
    const ct_layer *l = s->l;
    return s->be->ops->maxpool_forward(s->be->ctx, l->dtype, l->out, s->x, s->n, l->in_h,
                                       l->in_w, l->in_c);
}

static ct_status maxpool_backward(const ct_layer_step *s) {
    const ct_layer *l = s->l;
    if (!s->dgrad) return CT_OK;
    return s->be->ops->maxpool_backward(s->be->ctx, l->dtype, s->dx, l->dout, s->x, l->out, s->n,
                                        l->in_h, l->in_w, l->in_c);
}

/* Flatten is a reshape of NHWC data: its output and gradient are its input's buffers. */
static ct_status view_step(const ct_layer_step *s) {
    (void)s;
    return CT_OK;
}

static ct_global_pool global_kind(const ct_layer *l) {
    return l->kind == CT_LAYER_GAP ? CT_GLOBAL_AVG : CT_GLOBAL_MAX;
}

static ct_status global_forward(const ct_layer_step *s) {
    const ct_layer *l = s->l;
    return s->be->ops->global_pool_forward(s->be->ctx, global_kind(l), l->out, s->x, s->n,
                                           l->in_h, l->in_w, l->in_c);
}

static ct_status global_backward(const ct_layer_step *s) {
    const ct_layer *l = s->l;
    if (!s->dgrad) return CT_OK;
    return s->be->ops->global_pool_backward(s->be->ctx, global_kind(l), s->dx, l->dout, s->x,
                                            l->out, s->n, l->in_h, l->in_w, l->in_c);
}

/* At rate 0 every element is kept with scale 1: inference is an exact copy. */
static ct_status dropout_forward(const ct_layer_step *s) {
    const ct_layer *l = s->l;
    return s->be->ops->dropout_forward(s->be->ctx, l->out, s->x, s->n, l->out_c,
                                       s->training ? l->rate : 0.0f, dropout_key(s->m, s->i));
}

static ct_status dropout_backward(const ct_layer_step *s) {
    const ct_layer *l = s->l;
    if (!s->dgrad) return CT_OK;
    return s->be->ops->dropout_backward(s->be->ctx, s->dx, l->dout, s->n, l->out_c,
                                        s->m->last_training ? l->rate : 0.0f,
                                        dropout_key(s->m, s->i));
}

static ct_status concat_forward(const ct_layer_step *s) {
    const ct_layer *l = s->l, *branch = &s->m->layers[l->src2];
    return s->be->ops->concat_forward(s->be->ctx, l->out, s->x, branch->out, s->n, l->in_c,
                                      branch->out_c);
}

static ct_status concat_backward(const ct_layer_step *s) {
    const ct_layer *l = s->l, *branch = &s->m->layers[l->src2];
    float *db = branch->trainable ? branch->dout : NULL;
    if (s->dx == NULL && db == NULL) return CT_OK;
    return s->be->ops->concat_backward(s->be->ctx, s->dx, db, l->dout, s->n, l->in_c,
                                       branch->out_c);
}

/* ---- Keras spelling ---- */

static const char *act_name(ct_activation a) {
    switch (a) {
    case CT_ACT_RELU: return "relu";
    case CT_ACT_SIGMOID: return "sigmoid";
    case CT_ACT_SOFTMAX: return "softmax";
    default: return "linear";
    }
}

static void args_conv(const ct_layer *l, char *buf, size_t cap) {
    snprintf(buf, cap, "%d, (3, 3), activation=\"relu\", padding=\"same\", ", l->units);
}

static void args_maxpool(const ct_layer *l, char *buf, size_t cap) {
    (void)l;
    snprintf(buf, cap, "(2, 2), strides=(2, 2), ");
}

static void args_dense(const ct_layer *l, char *buf, size_t cap) {
    snprintf(buf, cap, "%d, activation=\"%s\", ", l->units, act_name(l->act));
}

static void args_dropout(const ct_layer *l, char *buf, size_t cap) {
    snprintf(buf, cap, "%g, ", (double)l->rate);
}

static void args_none(const ct_layer *l, char *buf, size_t cap) {
    (void)l;
    if (cap > 0) buf[0] = '\0';
}

/* ---- the table ---- */

static const ct_layer_kind_ops kinds[] = {
    [CT_LAYER_CONV] = {"conv", "Conv2D", "conv2d", true, true, false, shape_same, kernel_conv,
                       conv_forward, conv_backward, args_conv},
    [CT_LAYER_MAXPOOL] = {"maxpool", "MaxPooling2D", "max_pooling2d", false, true, false,
                          shape_halve, NULL, maxpool_forward, maxpool_backward, args_maxpool},
    [CT_LAYER_FLATTEN] = {"flatten", "Flatten", "flatten", false, false, true, shape_flat, NULL,
                          view_step, view_step, args_none},
    [CT_LAYER_GAP] = {"gap", "GlobalAveragePooling2D", "global_average_pooling2d", false, false,
                      false, shape_channels, NULL, global_forward, global_backward, args_none},
    [CT_LAYER_GMP] = {"gmp", "GlobalMaxPooling2D", "global_max_pooling2d", false, false, false,
                      shape_channels, NULL, global_forward, global_backward, args_none},
    [CT_LAYER_DENSE] = {"dense", "Dense", "dense", true, false, false, shape_units, kernel_dense,
                        dense_forward, dense_backward, args_dense},
    [CT_LAYER_DROPOUT] = {"dropout", "Dropout", "dropout", false, false, false, shape_channels,
                          NULL, dropout_forward, dropout_backward, args_dropout},
    [CT_LAYER_CONCAT] = {"concat", "Concatenate", "concatenate", false, false, false,
                         shape_concat, NULL, concat_forward, concat_backward, args_none},
};

const ct_layer_kind_ops *ct_layer_kind_get(ct_layer_kind kind) {
    if ((int)kind < 0 || (size_t)kind >= sizeof kinds / sizeof kinds[0]) return NULL;
    return &kinds[kind];
}
