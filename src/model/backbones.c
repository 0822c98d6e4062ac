/* The backbones cutune fine-tunes, as tables (backbone.h): Keras's VGG16 and VGG19, layer for
 * layer as keras.applications builds them, with the files and checksums its source names. */
#include <stdio.h>
#include <string.h>

#include "backbone.h"

#define CONV(name, units) {name, CT_LAYER_CONV, units}
#define POOL(name) {name, CT_LAYER_MAXPOOL, 0}

static const ct_backbone_layer vgg16_layers[] = {
    CONV("block1_conv1", 64),  CONV("block1_conv2", 64),  POOL("block1_pool"),
    CONV("block2_conv1", 128), CONV("block2_conv2", 128), POOL("block2_pool"),
    CONV("block3_conv1", 256), CONV("block3_conv2", 256), CONV("block3_conv3", 256),
    POOL("block3_pool"),
    CONV("block4_conv1", 512), CONV("block4_conv2", 512), CONV("block4_conv3", 512),
    POOL("block4_pool"),
    CONV("block5_conv1", 512), CONV("block5_conv2", 512), CONV("block5_conv3", 512),
    POOL("block5_pool"),
};

static const ct_backbone_layer vgg19_layers[] = {
    CONV("block1_conv1", 64),  CONV("block1_conv2", 64),  POOL("block1_pool"),
    CONV("block2_conv1", 128), CONV("block2_conv2", 128), POOL("block2_pool"),
    CONV("block3_conv1", 256), CONV("block3_conv2", 256), CONV("block3_conv3", 256),
    CONV("block3_conv4", 256), POOL("block3_pool"),
    CONV("block4_conv1", 512), CONV("block4_conv2", 512), CONV("block4_conv3", 512),
    CONV("block4_conv4", 512), POOL("block4_pool"),
    CONV("block5_conv1", 512), CONV("block5_conv2", 512), CONV("block5_conv3", 512),
    CONV("block5_conv4", 512), POOL("block5_pool"),
};

#define KERAS_APPLICATIONS "https://storage.googleapis.com/tensorflow/keras-applications/"

static const ct_backbone backbones[] = {
    {.name = "vgg16",
     .keras_name = "VGG16",
     .layers = vgg16_layers,
     .n_layers = (int)(sizeof vgg16_layers / sizeof vgg16_layers[0]),
     .cut = {"block5_pool", "block4_pool", "block3_pool"},
     .probe = {"block3_pool", "block4_pool", "block5_pool"},
     .url = KERAS_APPLICATIONS "vgg16/",
     .notop = {"vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
               "6d6bbae143d832006294945121d1f1fc", 58.9},
     .full = {"vgg16_weights_tf_dim_ordering_tf_kernels.h5", "64373286793e3c8b2b4e3219cbf3544b",
              553}},
    {.name = "vgg19",
     .keras_name = "VGG19",
     .layers = vgg19_layers,
     .n_layers = (int)(sizeof vgg19_layers / sizeof vgg19_layers[0]),
     .cut = {"block5_pool", "block4_pool", "block3_pool"},
     .probe = {"block3_pool", "block4_pool", "block5_pool"},
     .url = KERAS_APPLICATIONS "vgg19/",
     .notop = {"vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5",
               "253f8cb515780f3b799900260a226db6", 80.1},
     .full = {"vgg19_weights_tf_dim_ordering_tf_kernels.h5", "cbe5617147190e668d6c5d5026f83318",
              574.7}},
};

#define N_BACKBONES (int)(sizeof backbones / sizeof backbones[0])

const ct_backbone *ct_backbone_find(const char *name) {
    if (name == NULL || name[0] == '\0') name = CT_BACKBONE_DEFAULT;
    for (int i = 0; i < N_BACKBONES; i++)
        if (strcmp(backbones[i].name, name) == 0) return &backbones[i];
    return NULL;
}

void ct_backbone_names(char *buf, size_t cap) {
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; i < N_BACKBONES && used < cap; i++)
        used += (size_t)snprintf(buf + used, cap - used, "%s%s", i ? ", " : "", backbones[i].name);
}

ct_status ct_backbone_lookup(const char *name, const ct_backbone **out) {
    *out = ct_backbone_find(name);
    if (*out == NULL) {
        char names[128];
        ct_backbone_names(names, sizeof names);
        return ct_error(CT_EINVAL, "unknown backbone '%s' (%s)", name, names);
    }
    return CT_OK;
}

int ct_backbone_index(const ct_backbone *b, const char *name) {
    for (int i = 0; i < b->n_layers; i++)
        if (strcmp(b->layers[i].name, name) == 0) return i;
    return -1;
}

const ct_backbone *ct_backbone_with_layer(const char *name, const ct_backbone *other_than) {
    if (ct_backbone_index(other_than, name) >= 0) return NULL;
    for (int i = 0; i < N_BACKBONES; i++)
        if (&backbones[i] != other_than && ct_backbone_index(&backbones[i], name) >= 0)
            return &backbones[i];
    return NULL;
}

size_t ct_backbone_params(const ct_backbone *b) {
    size_t total = 0, in_c = 3;
    for (int i = 0; i < b->n_layers; i++) {
        const ct_backbone_layer *l = &b->layers[i];
        if (l->kind != CT_LAYER_CONV) continue;
        total += 9 * in_c * (size_t)l->units + (size_t)l->units;
        in_c = (size_t)l->units;
    }
    return total;
}
