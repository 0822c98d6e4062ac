/* Backbones as data: the layer list of a keras.applications network with everything else cutune
 * needs to know about it.
 *
 * A backbone is a table of layers (Keras name, kind, filters) read in order; each layer's output
 * shape follows from its kind's shape rule (model/kinds.c: a 3x3 'same' convolution keeps the
 * size, a 2x2 max pool halves it, flooring odd sizes). Beside the table: the cut points of the
 * freezing strategies (which layer the backbone is frozen up to), the depths `cutune advise`
 * probes, and the official ImageNet weight files with the MD5 sums Keras's source publishes for
 * them. Every layer with weights reads them in Keras's layout (`<layer>/kernel`, `<layer>/bias`;
 * the official files' `<layer>_W_1:0` / `_b_1:0`), which the weights reader matches by layer
 * name or by order.
 *
 * Adding a network of the same family is adding a table here; a new layer kind (a fused one, a
 * residual join) is a row of model/kinds.c's table and of the ops it needs. */
#ifndef CUTUNE_MODEL_BACKBONE_H
#define CUTUNE_MODEL_BACKBONE_H

#include <stdbool.h>
#include <stddef.h>

#include "model/model.h"

typedef struct ct_backbone_layer {
    const char *name;   /* Keras name: block1_conv1, block1_pool, ... */
    ct_layer_kind kind; /* CT_LAYER_CONV (3x3 'same' + ReLU) or CT_LAYER_MAXPOOL (2x2, stride 2) */
    int units;          /* convolution filters; 0 for pools */
} ct_backbone_layer;

/* An official weights file of keras.applications. */
typedef struct ct_backbone_file {
    const char *name; /* vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5 */
    const char *md5;  /* as Keras's get_file checks it */
    double mb;        /* download size, for messages */
} ct_backbone_file;

/* The strategies' cut points: the backbone is frozen up to and including this layer. */
enum {
    CT_CUT_HEAD, /* the whole backbone frozen: only the head trains */
    CT_CUT_TOP,  /* the top block trains with the head */
    CT_CUT_DEEP, /* the two top blocks train with the head */
    CT_CUTS
};

#define CT_PROBE_DEPTHS 3

typedef struct ct_backbone {
    const char *name;        /* "vgg16": --backbone, the cutune_backbone attribute of files */
    const char *keras_name;  /* "VGG16": the keras.applications function */
    const ct_backbone_layer *layers;
    int n_layers;
    const char *cut[CT_CUTS];
    const char *probe[CT_PROBE_DEPTHS]; /* advise's features, shallowest first */
    const char *url;         /* the folder Keras downloads the files from */
    ct_backbone_file notop;  /* convolutions only: what fine-tuning needs */
    ct_backbone_file full;   /* with fc1, fc2 and predictions (224x224) */
} ct_backbone;

#define CT_BACKBONE_DEFAULT "vgg16"

/* The backbone called `name` ("vgg16", "vgg19"; NULL or "": the default), or NULL. */
const ct_backbone *ct_backbone_find(const char *name);
/* ct_backbone_find, failing with CT_EINVAL and a message listing the known names. */
ct_status ct_backbone_lookup(const char *name, const ct_backbone **out);
/* "vgg16, vgg19": the known names, for messages and --help. */
void ct_backbone_names(char *buf, size_t cap);
/* The index of layer `name` in the table, or -1. */
int ct_backbone_index(const ct_backbone *b, const char *name);
/* A known backbone with a layer called `name` that `other_than` lacks (a VGG19 file's
 * block3_conv4 met by a VGG16 model), or NULL. */
const ct_backbone *ct_backbone_with_layer(const char *name, const ct_backbone *other_than);

/* The backbone a model was built on. */
const ct_backbone *ct_model_backbone(const ct_model *m);

/* Parameters of the backbone's convolutions for 3-channel input (14,714,688 for VGG16). */
size_t ct_backbone_params(const ct_backbone *b);

#endif
