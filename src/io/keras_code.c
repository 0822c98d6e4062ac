/* The Keras code that rebuilds a cutune model and loads its weights file (`cutune export-keras`):
 * a functional model with every layer named as in the file, in the order the file lists them,
 * each layer spelled by its kind's row (model/kinds.c), so Keras's load_weights reads the legacy
 * layout by order or by name. */
#include <stdio.h>
#include <string.h>

#include "../model/backbone.h"
#include "../model/layer.h"
#include "io.h"

static void py_string(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') fputc('\\', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

static bool uses_aux(ct_model *m) {
    for (int i = 0; i < ct_model_num_layers(m); i++)
        if (ct_model_layer(m, i)->src == CT_SRC_AUX) return true;
    return false;
}

static void print_header(FILE *f, ct_model *m, const char *path, const ct_saved_config *extra) {
    const ct_model_config *c = ct_model_get_config(m);
    fprintf(f, "# Keras model for the weights in %s, written by %s%s.\n", path,
            extra->from_keras ? "Keras" : "cutune ", extra->cutune_version);
    fprintf(f, "# Rebuilds cutune's model with the same layer names, so that Keras's "
            "load_weights\n# reads the file (legacy HDF5 layout) by order, or with "
            "by_name=True.\n");
    fprintf(f, "# Head '%s'. Inputs: %dx%dx3 images preprocessed the '%s' way%s", extra->head,
            c->input_h, c->input_w, extra->preprocessing,
            strcmp(extra->preprocessing, "caffe") == 0
                ? " (keras.applications.vgg16.preprocess_input)" : "");
    if (uses_aux(m))
        fprintf(f, ", and %d auxiliary value%s per sample", c->aux_dim, c->aux_dim == 1 ? "" : "s");
    fprintf(f, ".\n");
    if (extra->n_classes > 0) {
        fprintf(f, "# Classes:");
        for (int i = 0; i < extra->n_classes; i++) fprintf(f, " %d=%s", i, extra->class_names[i]);
        fprintf(f, "\n");
    }
    size_t len = strlen(path);
    if (!(len > 3 && strcmp(path + len - 3, ".h5") == 0) &&
        !(len > 5 && strcmp(path + len - 5, ".hdf5") == 0))
        fprintf(f, "# Keras reads the legacy layout only from names ending in .h5 or .hdf5: copy "
                "the file to such a name first.\n");
}

/* One line per layer: x = layers.Conv2D(64, ..., name="block1_conv1")(x). The aux branch
 * (a) reads the auxiliary input; a concat joins x and a. */
static void print_layers(FILE *f, ct_model *m) {
    const char *x = "image";
    for (int i = 0; i < ct_model_num_layers(m); i++) {
        const ct_layer *l = ct_model_layer(m, i);
        const ct_layer_kind_ops *kind = ct_layer_kind_get(l->kind);
        const bool aux = l->src == CT_SRC_AUX;
        char args[128];
        kind->keras_args(l, args, sizeof args);
        fprintf(f, "    %s = layers.%s(%sname=", aux ? "a" : "x", kind->keras_class, args);
        py_string(f, l->name);
        if (l->src2 >= 0) fprintf(f, ")([x, a])\n");
        else fprintf(f, ")(%s)\n", aux ? "aux" : x);
        if (!aux) x = "x";
    }
}

void ct__keras_code(FILE *f, ct_model *m, const char *path, const ct_saved_config *extra) {
    const ct_model_config *c = ct_model_get_config(m);
    const bool aux = uses_aux(m);
    print_header(f, m, path, extra);
    fprintf(f, "import keras\nfrom keras import layers\n\n\ndef build_model():\n");
    fprintf(f, "    image = keras.Input(shape=(%d, %d, 3), name=\"" CT__INPUT_IMAGE "\")\n",
            c->input_h, c->input_w);
    if (aux)
        fprintf(f, "    aux = keras.Input(shape=(%d,), name=\"" CT__INPUT_AUX "\")\n", c->aux_dim);
    print_layers(f, m);
    fprintf(f, "    return keras.Model(%s, x, name=\"cutune_%s\")\n",
            aux ? "[image, aux]" : "image", ct_model_backbone(m)->name);
    fprintf(f, "\n\nmodel = build_model()\nmodel.load_weights(");
    py_string(f, path);
    fprintf(f, ")\n");
    fprintf(f, "# model.predict(%s) gives the same probabilities as cutune.\n",
            aux ? "[images, aux]" : "images");
}

ct_status ct_weights_keras_code(const char *path, FILE *out) {
    ct_model_config cfg = {.max_batch = 1, .seed = 1};
    ct_saved_config extra;
    ct_status s = ct_weights_read_config(path, &cfg, &extra);
    if (s != CT_OK) return s;
    ct_backend be = {0};
    ct_model *m = NULL;
    if ((s = ct_backend_cpu_init(&be, 1)) == CT_OK && (s = ct_model_init(&m, &cfg, &be)) == CT_OK)
        ct__keras_code(out, m, path, &extra);
    ct_model_free(m);
    ct_backend_free(&be);
    ct_saved_config_free(&extra);
    return s;
}
