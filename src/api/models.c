/* The model a C program holds (cutune/model.h): built on a device it names, or loaded from a
 * cutune .h5 with the preprocessing and class names the file carries, saved back, summarised,
 * and predicting one image file exactly as `cutune predict` reads it.
 *
 * Such a model owns its backend and what its file said; both hang on the model as its owner
 * (ct_model_set_owner), freed with it, so the model itself knows nothing of files or devices. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/data.h"
#include "io/weights.h"
#include "model/backbone.h"
#include "model/layer.h"
#include "model/model.h"
#include "train/run.h"

typedef struct model_owner {
    ct_backend be;
    ct_saved_config saved; /* what the file said; zeroed for a model made here */
    ct_standardize std;    /* how images are preprocessed for it */
} model_owner;

static void owner_free(void *p) {
    model_owner *o = p;
    ct_saved_config_free(&o->saved);
    ct_backend_free(&o->be);
    free(o);
}

/* A model on its own backend; `o` is freed on failure. `path`: the file `cfg` came from (its
 * failures name it), or NULL. */
static ct_status build(ct_model **out, const ct_model_config *cfg, const char *device,
                       model_owner *o, const char *path) {
    char note[512];
    ct_status s = ct_backend_open(&o->be, device != NULL ? device : "auto", NULL, note,
                                  sizeof note);
    if (s == CT_OK && (s = ct_model_init(out, cfg, &o->be)) != CT_OK && path != NULL)
        s = ct_weights_model_error(path, cfg, s);
    if (s != CT_OK) {
        owner_free(o);
        return s;
    }
    ct_model_set_owner(*out, o, owner_free);
    return CT_OK;
}

ct_status ct_model_create(ct_model **out, const ct_model_config *cfg, const char *device) {
    *out = NULL;
    model_owner *o = calloc(1, sizeof *o);
    if (o == NULL) return ct_error(CT_ENOMEM, "cannot allocate a model");
    o->std.preprocess = CT_PREPROCESS_CAFFE; /* VGG's preprocess_input */
    return build(out, cfg, device, o, NULL);
}

ct_status ct_model_load(ct_model **out, const char *path, const char *device, int max_batch) {
    *out = NULL;
    if (max_batch < 1) return ct_error(CT_EINVAL, "batch size must be at least 1, not %d", max_batch);
    model_owner *o = calloc(1, sizeof *o);
    if (o == NULL) return ct_error(CT_ENOMEM, "cannot allocate a model");
    ct_model_config cfg = {.max_batch = max_batch, .seed = 1, .freeze_to = CT_FREEZE_ALL};
    ct_status s = ct_weights_read_config(path, &cfg, &o->saved);
    if (s == CT_OK) s = ct_standardize_parse(o->saved.preprocessing, &o->std);
    if (s != CT_OK) {
        owner_free(o);
        return s;
    }
    if ((s = build(out, &cfg, device, o, path)) != CT_OK) return s;
    if ((s = ct_weights_load(*out, path, NULL, NULL)) != CT_OK) {
        ct_model_free(*out);
        *out = NULL;
    }
    return s;
}

ct_status ct_model_load_weights(ct_model *m, const char *spec) {
    return ct_weights_load_spec(m, spec, NULL, NULL);
}

ct_status ct_model_save(ct_model *m, const char *path) {
    const model_owner *o = ct_model_owner(m);
    char pre[512] = "caffe";
    ct_weights_save_opts opts = {.preprocessing = pre};
    if (o != NULL) {
        ct_standardize_format(&o->std, pre, sizeof pre);
        opts.class_names = (const char *const *)o->saved.class_names;
        opts.n_classes = o->saved.n_classes;
    }
    return ct_weights_save(m, path, &opts);
}

const char *ct_model_class_name(const ct_model *m, int k) {
    const model_owner *o = ct_model_owner(m);
    if (o == NULL || k < 0 || k >= o->saved.n_classes) return NULL;
    return o->saved.class_names[k];
}

void ct_model_summary(const ct_model *m, FILE *out) {
    ct_model *mm = (ct_model *)m;
    size_t trainable = 0, all = ct_model_num_params(m, &trainable);
    fprintf(out, "Model: \"cutune_%s\"\n", ct_model_backbone(m)->name);
    fprintf(out, "%-32s %-22s %12s\n", "Layer (type)", "Output Shape", "Param #");
    for (int i = 0; i < ct_model_num_layers(m); i++) {
        const ct_layer *l = ct_model_layer(mm, i);
        char name[96], shape[48];
        snprintf(name, sizeof name, "%s (%s)", l->name, ct_layer_kind_get(l->kind)->keras_class);
        if (ct_layer_kind_get(l->kind)->spatial)
            snprintf(shape, sizeof shape, "(None, %d, %d, %d)", l->out_h, l->out_w, l->out_c);
        else
            snprintf(shape, sizeof shape, "(None, %d)", l->out_c);
        size_t params = ct_layer_has_params(l) ? l->kernel.size + l->bias.size : 0;
        fprintf(out, "%-32s %-22s %12zu\n", name, shape, params);
    }
    fprintf(out, "Total params: %zu\nTrainable params: %zu\nNon-trainable params: %zu\n", all,
            trainable, all - trainable);
}

/* The model's preprocessing: its file's, or VGG's preprocess_input for a model made here. */
static ct_standardize model_standardize(const ct_model *m) {
    const model_owner *o = ct_model_owner(m);
    ct_standardize std = {.preprocess = CT_PREPROCESS_CAFFE};
    return o != NULL ? o->std : std;
}

ct_status ct_model_predict_pixels(ct_model *m, const float *pixels, const float *aux, int n,
                                  float *probs) {
    const ct_model_config *c = ct_model_get_config(m);
    const ct_standardize std = model_standardize(m);
    if (n < 0) return ct_error(CT_EINVAL, "cannot predict %d images", n);
    if (c->aux_dim > 0 && aux == NULL)
        return ct_error(CT_EINVAL, "the model also takes %d auxiliary value(s) per image",
                        c->aux_dim);
    ct_status s = ct_standardize_check(&std, c->input_c);
    if (s != CT_OK) return s;
    const size_t image = (size_t)c->input_h * c->input_w * c->input_c;
    const int chunk = c->max_batch;
    float *x = malloc((size_t)chunk * image * sizeof *x);
    if (x == NULL) return ct_error(CT_ENOMEM, "cannot allocate %d images", chunk);
    for (int first = 0; first < n && s == CT_OK; first += chunk) {
        const int count = n - first < chunk ? n - first : chunk;
        for (int i = 0; i < count; i++)
            ct_augment_standardize_image(x + i * image, NULL, pixels + (first + i) * image,
                                         c->input_h, c->input_w, c->input_c, NULL, &std, 0, 0, 0,
                                         NULL);
        s = ct_model_predict_host(m, x, aux != NULL ? aux + (size_t)first * c->aux_dim : NULL,
                                  count, probs + (size_t)first * ct_model_num_outputs(m));
    }
    free(x);
    return s;
}

ct_status ct_model_predict_image(ct_model *m, const char *path, float *probs) {
    const ct_model_config *c = ct_model_get_config(m);
    if (c->aux_dim > 0)
        return ct_error(CT_EINVAL, "%s: the model also takes %d auxiliary value(s) per image: "
                        "use ct_model_predict_host", path, c->aux_dim);
    const ct_standardize std = model_standardize(m);
    ct_image_options io;
    ct_image_options_defaults(&io);
    io.target_h = c->input_h;
    io.target_w = c->input_w;
    ct_image img = {0};
    ct_status s = ct_image_load(path, &io, &img);
    if (s != CT_OK) return s;
    const size_t n = (size_t)img.h * img.w * img.c;
    float *x = malloc(n * sizeof *x);
    if (x == NULL) s = ct_error(CT_ENOMEM, "%s: cannot allocate the image", path);
    else if ((s = ct_standardize_check(&std, img.c)) == CT_OK) {
        /* What the loader makes of a sample (no augmentation): `cutune predict`'s numbers. */
        ct_augment_standardize_image(x, img.data, NULL, img.h, img.w, img.c, NULL, &std, 0, 0, 0,
                                     NULL);
        s = ct_model_predict_host(m, x, NULL, 1, probs);
    }
    free(x);
    ct_image_free(&img);
    return s;
}
