/* Writing a model in the legacy Keras layout, with cutune's configuration beside it.
 *
 * The layout is the one Keras's save_weights_to_hdf5_group writes and its load_weights reads
 * (reference/keras-formats.md): root attribute layer_names listing every layer in Keras's
 * model.layers order, backend and keras_version; one group per layer with attribute
 * weight_names; the kernel and bias at <layer>/<layer>/kernel and .../bias (weight names
 * containing '/' need intermediate groups); empty weight_names as float64 with dims {0};
 * strings variable-length as h5py 3 writes them; name lists over 64,512 bytes split. Beside it,
 * cutune's root attributes say how to rebuild the model (saved_config.c reads them back). */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "train/run.h"
#include "../model/backbone.h"
#include "io.h"

/* Keras reads keras_version only to decide whether to apply its Keras 1 conversions (when it is
 * "1" or absent); this is the release whose load_weights tests/reference/keras_roundtrip.py
 * checks. The backend names the layout: channels-last, as TensorFlow's. */
#define KERAS_VERSION "3.15.1"
#define KERAS_BACKEND "tensorflow"

/* KRSC (K, 3, 3, C) -> HWIO (3, 3, C, K): the mirror of hwio_to_krsc in weights_load.c, with
 * the same 16x16 tiles and contiguous inner writes. */
static void krsc_to_hwio(float *dst, const float *src, int c, int k) {
#pragma omp parallel for collapse(2) schedule(static)
    for (int hw = 0; hw < 9; hw++)
        for (int c0 = 0; c0 < c; c0 += 16) {
            float *d = dst + (size_t)hw * c * k;
            const int c1 = c0 + 16 < c ? c0 + 16 : c;
            for (int k0 = 0; k0 < k; k0 += 16) {
                const int k1 = k0 + 16 < k ? k0 + 16 : k;
                for (int ci = c0; ci < c1; ci++)
                    for (int ki = k0; ki < k1; ki++)
                        d[(size_t)ci * k + ki] = src[((size_t)ki * 9 + hw) * c + ci];
            }
        }
}

static ct_status check_finite(const float *x, size_t n, const char *path, const char *layer,
                              const char *what) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i]))
            return ct_error(CT_ENUMERIC, "cannot save %s: layer %s: the %s holds %s at element "
                            "%zu (did training diverge?); nothing was written", path, layer, what,
                            isnan(x[i]) ? "NaN" : "Inf", i);
    return CT_OK;
}

/* Makes sure a failure message names the file being written. */
static ct_status with_path(ct_status s, const char *path) {
    if (s == CT_OK || strstr(ct_last_error(), path) != NULL) return s;
    return ct__wrap(s, "cannot write %s", path);
}

static ct_status write_layer(ct_model *m, hid_t root, int i, hid_t lcpl, float *host,
                             float *hwio, const char *path) {
    ct_layer *l = ct_model_layer(m, i);
    hid_t g = CT_H5(H5Gcreate2(root, l->name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
    if (g < 0) return ct__h5_error(CT_EIO, "cannot write %s: group %s", path, l->name);
    ct_status s = CT_OK;
    if (l->kind != CT_LAYER_CONV && l->kind != CT_LAYER_DENSE) {
        s = ct__h5_write_strings(g, "weight_names", NULL, 0, CT_KERAS_ATTR_LIMIT);
        goto done;
    }
    char kname[CT_NAME_MAX + 16], bname[CT_NAME_MAX + 16];
    snprintf(kname, sizeof kname, "%s/kernel", l->name);
    snprintf(bname, sizeof bname, "%s/bias", l->name);
    const char *wn[2] = {kname, bname};
    if ((s = ct__h5_write_strings(g, "weight_names", wn, 2, CT_KERAS_ATTR_LIMIT)) != CT_OK)
        goto done;
    if ((s = ct_model_tensor_get(m, &l->kernel, host)) != CT_OK ||
        (s = check_finite(host, l->kernel.size, path, l->name, "kernel")) != CT_OK)
        goto done;
    hsize_t kd[4];
    int knd;
    const float *kdata = host;
    if (l->kind == CT_LAYER_CONV) {
        krsc_to_hwio(hwio, host, l->in_c, l->units);
        kdata = hwio;
        kd[0] = kd[1] = 3;
        kd[2] = (hsize_t)l->in_c;
        kd[3] = (hsize_t)l->units;
        knd = 4;
    } else {
        kd[0] = (hsize_t)l->kernel.shape[0];
        kd[1] = (hsize_t)l->units;
        knd = 2;
    }
    if ((s = ct__h5_write_f32(g, kname, kdata, kd, knd, lcpl, path, "dataset")) != CT_OK) goto done;
    hsize_t bd[1] = {(hsize_t)l->units};
    if ((s = ct_model_tensor_get(m, &l->bias, host)) != CT_OK ||
        (s = check_finite(host, l->bias.size, path, l->name, "bias")) != CT_OK)
        goto done;
    s = ct__h5_write_f32(g, bname, host, bd, 1, lcpl, path, "dataset");
done:
    ct__h5_close(g);
    return with_path(s, path);
}

static ct_status write_empty_group(hid_t root, const char *name, const char *path) {
    hid_t g = CT_H5(H5Gcreate2(root, name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
    if (g < 0) return ct__h5_error(CT_EIO, "cannot write %s: group %s", path, name);
    ct_status s = ct__h5_write_strings(g, "weight_names", NULL, 0, CT_KERAS_ATTR_LIMIT);
    ct__h5_close(g);
    return with_path(s, path);
}

static ct_status write_config(ct_model *m, hid_t root, const ct_weights_save_opts *o,
                              const char *path) {
    const ct_model_config *c = ct_model_get_config(m);
    const char *pre = o != NULL && o->preprocessing != NULL ? o->preprocessing : "caffe";
    int64_t shape[3] = {c->input_h, c->input_w, c->input_c}, aux = c->aux_dim;
    int64_t backbone_only = o != NULL && o->backbone_only;
    ct_status s;
    if ((s = ct__h5_write_string(root, "cutune_version", CUTUNE_VERSION)) != CT_OK ||
        (s = ct__h5_write_string(root, "cutune_backbone", ct_model_backbone(m)->name)) !=
            CT_OK ||
        (s = ct__h5_write_string(root, "cutune_head", ct_model_head_spec(m))) != CT_OK ||
        (s = ct__h5_write_i64(root, "cutune_input_shape", shape, 3)) != CT_OK ||
        (s = ct__h5_write_i64(root, "cutune_aux_dim", &aux, 1)) != CT_OK ||
        (s = ct__h5_write_string(root, "cutune_preprocessing", pre)) != CT_OK ||
        (s = ct__h5_write_i64(root, "cutune_backbone_only", &backbone_only, 1)) != CT_OK)
        return ct__wrap(s, "cannot write %s", path);
    int nc = o != NULL && o->class_names != NULL ? o->n_classes : 0;
    s = ct__h5_write_strings(root, "cutune_class_names", nc ? o->class_names : NULL, nc,
                             CT_KERAS_ATTR_LIMIT);
    if (s != CT_OK) return ct__wrap(s, "cannot write %s", path);
    return CT_OK;
}

static ct_status check_opts(ct_model *m, const ct_weights_save_opts *o, const char *path) {
    if (o == NULL) return CT_OK;
    /* The preprocessing text is ct_standardize_format's: a mode, then ';' items. */
    ct_standardize st;
    if (o->preprocessing != NULL && ct_standardize_parse(o->preprocessing, &st) != CT_OK)
        return ct_error(CT_EINVAL,
                        "cannot save %s: unknown preprocessing '%s' (caffe, tf, torch, "
                        "none, optionally followed by ';' standardisation items)",
                        path, o->preprocessing);
    if (o->preprocessing != NULL &&
        strlen(o->preprocessing) >= sizeof((ct_saved_config *)0)->preprocessing)
        return ct_error(CT_EINVAL, "cannot save %s: the preprocessing text is too long", path);
    if (o->n_classes < 0 || (o->n_classes > 0 && o->class_names == NULL))
        return ct_error(CT_EINVAL, "cannot save %s: %d class names but no list", path,
                        o->n_classes);
    int outputs = ct_model_num_outputs(m), want = outputs == 1 ? 2 : outputs;
    if (o->n_classes > 0 && o->n_classes != want)
        return ct_error(CT_EINVAL, "cannot save %s: %d class names for a model with %d classes",
                        path, o->n_classes, want);
    for (int i = 0; i < o->n_classes; i++) {
        if (o->class_names[i] == NULL || o->class_names[i][0] == '\0')
            return ct_error(CT_EINVAL, "cannot save %s: class name %d is empty", path, i);
        /* What the file may hold is what reading it accepts (weights.h). */
        if (strlen(o->class_names[i]) > CT_WEIGHTS_MAX_CLASS_NAME)
            return ct_error(CT_EINVAL, "cannot save %s: class name %d is %zu bytes long (at "
                            "most %d)", path, i, strlen(o->class_names[i]),
                            CT_WEIGHTS_MAX_CLASS_NAME);
    }
    return CT_OK;
}

ct_status ct__weights_write(ct_model *m, hid_t file, const char *path,
                            const ct_weights_save_opts *opts) {
    ct_status s = check_opts(m, opts, path);
    if (s != CT_OK) return s;
    const int n = ct_model_num_layers(m);
    const bool backbone_only = opts != NULL && opts->backbone_only;
    int *nodes = malloc((size_t)(n + 2) * sizeof *nodes);
    const char **names = malloc((size_t)(n + 2) * sizeof *names);
    size_t largest = 1;
    for (int i = 0; i < n; i++) {
        const ct_layer *l = ct_model_layer(m, i);
        if (l->kernel.size > largest) largest = l->kernel.size;
    }
    float *host = malloc(largest * sizeof *host), *hwio = malloc(largest * sizeof *hwio);
    hid_t root = -1, lcpl = -1;
    if (nodes == NULL || names == NULL || host == NULL || hwio == NULL) {
        s = ct_error(CT_ENOMEM, "cannot save %s: out of memory", path);
        goto done;
    }
    int nn = ct__keras_order(m, nodes), kept = 0;
    for (int k = 0; k < nn; k++) {
        int id = nodes[k];
        if (id >= 0) {
            if (backbone_only && !(id < 18)) continue;
            names[kept] = ct_model_layer(m, id)->name;
        } else {
            if (backbone_only && id == CT__NODE_AUX) continue;
            const char *in = id == CT__NODE_IMAGE ? CT__INPUT_IMAGE : CT__INPUT_AUX;
            if (ct_model_find(m, in) != NULL) continue; /* a head layer took the name */
            names[kept] = in;
        }
        nodes[kept++] = id;
    }
    if ((root = CT_H5(H5Gopen2(file, "/", H5P_DEFAULT))) < 0 ||
        (lcpl = CT_H5(H5Pcreate(H5P_LINK_CREATE))) < 0 ||
        CT_H5(H5Pset_create_intermediate_group(lcpl, 1)) < 0) {
        s = ct__h5_error(CT_EIO, "cannot write %s", path);
        goto done;
    }
    if ((s = ct__h5_write_strings(root, "layer_names", names, kept, CT_KERAS_ATTR_LIMIT)) !=
            CT_OK ||
        (s = ct__h5_write_string(root, "backend", KERAS_BACKEND)) != CT_OK ||
        (s = ct__h5_write_string(root, "keras_version", KERAS_VERSION)) != CT_OK) {
        s = ct__wrap(s, "cannot write %s", path);
        goto done;
    }
    for (int k = 0; k < kept && s == CT_OK; k++) {
        if (nodes[k] >= 0) s = write_layer(m, root, nodes[k], lcpl, host, hwio, path);
        else s = write_empty_group(root, names[k], path);
    }
    /* Keras 3 writes this group too (the model's own variables: none here). */
    if (s == CT_OK) s = write_empty_group(root, "top_level_model_weights", path);
    if (s == CT_OK) s = write_config(m, root, opts, path);
done:
    ct__h5_close(lcpl);
    ct__h5_close(root);
    free(hwio);
    free(host);
    free(names);
    free(nodes);
    return s;
}

ct_status ct_weights_save(ct_model *m, const char *path, const ct_weights_save_opts *opts) {
    ct__h5_begin();
    ct__h5_atomic a;
    ct_status s = check_opts(m, opts, path != NULL ? path : "(null)");
    if (s != CT_OK) return s;
    if ((s = ct__h5_atomic_create(&a, path)) != CT_OK) return s;
    if ((s = ct__weights_write(m, a.file, path, opts)) != CT_OK) {
        ct__h5_atomic_abort(&a);
        return s;
    }
    return ct__h5_atomic_commit(&a);
}
