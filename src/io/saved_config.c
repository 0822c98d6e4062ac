/* Reading back the configuration cutune writes beside the weights (cutune_backbone, _head,
 * _input_shape, _aux_dim, _preprocessing, _class_names, _version), from which `cutune predict`,
 * `evaluate` and ct_model_load rebuild the model.
 *
 * A file is untrusted input: every attribute is checked against the bounds in weights.h before
 * anything is allocated for it, and each failure names the file and the attribute. The head
 * spec is measured here only as far as its sizes go (the units of each dense layer and the
 * parameters they add up to); the rest of its grammar is the head parser's, whose refusal
 * ct_weights_model_error turns into the file's error. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "train/run.h"
#include "../model/backbone.h"
#include "io.h"

void ct_saved_config_free(ct_saved_config *c) {
    if (c == NULL) return;
    for (int i = 0; i < c->n_classes; i++) free(c->class_names[i]);
    free(c->class_names);
    c->class_names = NULL;
    c->n_classes = 0;
}

ct_status ct__read_backbone(hid_t root, const char *path, char *buf, size_t cap) {
    htri_t has = CT_H5(H5Aexists(root, "cutune_backbone"));
    if (has < 0) return ct__h5_error(CT_EFORMAT, "%s: cannot read cutune_backbone", path);
    if (has == 0) {
        /* Written before cutune knew another backbone. */
        snprintf(buf, cap, "%s", CT_BACKBONE_DEFAULT);
        return CT_OK;
    }
    ct_status s = ct__h5_read_string(root, "cutune_backbone", path, buf, cap);
    if (s != CT_OK) return s;
    if (ct_backbone_find(buf) == NULL) {
        char names[128];
        ct_backbone_names(names, sizeof names);
        return ct_error(CT_EFORMAT, "%s: cutune_backbone '%s' is not a backbone this cutune "
                        "knows (%s)", path, buf, names);
    }
    return CT_OK;
}

/* ---- the sizes a head spec implies ---- */

/* Both backbones end in 512 channels at 1/32 of the input (five 2x2 poolings, each rounding
 * down). */
#define BACKBONE_CHANNELS 512
#define BACKBONE_STRIDE 32

typedef struct head_size {
    int64_t params;  /* weights and biases of the head's dense layers */
    int64_t classes; /* 2 for a dense:1 output, else the last dense layer's units */
} head_size;

static ct_status head_units(const char *path, const char *spec, const char *text, int64_t *u) {
    char *end = NULL;
    errno = 0;
    long long v = strtoll(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || v < 1 || v > CT_WEIGHTS_MAX_UNITS)
        return ct_error(CT_EFORMAT, "%s: cutune_head '%s': '%s' is not a unit count from 1 to "
                        "%d (a damaged attribute?)", path, spec, text, CT_WEIGHTS_MAX_UNITS);
    *u = v;
    return CT_OK;
}

/* Walks the tokens of `spec` ("flatten,dense:64:relu@fc1,...") as the head parser builds them,
 * adding up the dense layers' parameters. Tokens this walk does not know are left for the
 * parser to refuse. */
static ct_status head_measure(const char *path, const char *spec, const ct_model_config *c,
                              head_size *hs) {
    const char *expanded = strcmp(spec, "iceberg") == 0 ? CT_HEAD_ICEBERG
                         : strcmp(spec, "mri") == 0     ? CT_HEAD_MRI
                                                        : spec;
    char buf[CT_CONFIG_HEAD_MAX];
    snprintf(buf, sizeof buf, "%s", expanded);
    const int64_t map = (int64_t)(c->input_h / BACKBONE_STRIDE) * (c->input_w / BACKBONE_STRIDE);
    int64_t width = BACKBONE_CHANNELS, aux_units = 0, last = 0;
    memset(hs, 0, sizeof *hs);
    for (char *save = NULL, *t = strtok_r(buf, ",", &save); t != NULL;
         t = strtok_r(NULL, ",", &save)) {
        char *at = strchr(t, '@');
        if (at != NULL) *at = '\0';
        char *fields = NULL, *word = strtok_r(t, ": \t", &fields);
        char *units = word != NULL ? strtok_r(NULL, ": \t", &fields) : NULL;
        if (word == NULL) continue;
        bool dense = strcmp(word, "dense") == 0, aux = strcmp(word, "aux") == 0;
        if (strcmp(word, "flatten") == 0) width = map * BACKBONE_CHANNELS;
        else if (strcmp(word, "gap") == 0 || strcmp(word, "gmp") == 0) width = BACKBONE_CHANNELS;
        else if (strcmp(word, "concat") == 0) width += aux_units;
        if ((!dense && !aux) || units == NULL) continue;
        int64_t u = 0;
        ct_status s = head_units(path, spec, units, &u);
        if (s != CT_OK) return s;
        int64_t in = aux ? c->aux_dim : width;
        hs->params += in * u + u;
        if (aux) {
            aux_units = u;
        } else {
            width = u;
            last = u;
        }
        if (hs->params > CT_WEIGHTS_MAX_HEAD_PARAMS)
            return ct_error(CT_EFORMAT, "%s: cutune_head '%s' on a %dx%d input needs more than "
                            "%lld parameters (a damaged attribute?)", path, spec, c->input_h,
                            c->input_w, (long long)CT_WEIGHTS_MAX_HEAD_PARAMS);
    }
    hs->classes = last == 1 ? 2 : last;
    return CT_OK;
}

/* ---- the configuration ---- */

static ct_status check_shape(const char *path, const int64_t *shape, int64_t aux) {
    for (int d = 0; d < 2; d++)
        if (shape[d] < CT_MIN_INPUT || shape[d] > CT_WEIGHTS_MAX_INPUT)
            return ct_error(CT_EFORMAT, "%s: cutune_input_shape (%lld, %lld, %lld): the %s must "
                            "be from %d to %d pixels (a damaged attribute?)", path,
                            (long long)shape[0], (long long)shape[1], (long long)shape[2],
                            d == 0 ? "height" : "width", CT_MIN_INPUT, CT_WEIGHTS_MAX_INPUT);
    if (shape[2] != 3)
        return ct_error(CT_EFORMAT, "%s: cutune_input_shape (%lld, %lld, %lld): cutune's models "
                        "take 3 channels", path, (long long)shape[0], (long long)shape[1],
                        (long long)shape[2]);
    if (aux < 0 || aux > CT_WEIGHTS_MAX_AUX)
        return ct_error(CT_EFORMAT, "%s: cutune_aux_dim %lld is not from 0 to %d (a damaged "
                        "attribute?)", path, (long long)aux, CT_WEIGHTS_MAX_AUX);
    return CT_OK;
}

/* The head's sizes against the bounds and the file: a file that holds the whole model (not a
 * backbone-only save) holds the head's weights too. */
static ct_status check_head(hid_t root, const char *path, const ct_model_config *c,
                            head_size *hs) {
    ct_status s = head_measure(path, c->head, c, hs);
    if (s != CT_OK) return s;
    int64_t backbone_only = 0;
    htri_t has = CT_H5(H5Aexists(root, "cutune_backbone_only"));
    if (has < 0) return ct__h5_error(CT_EFORMAT, "%s: cannot read cutune_backbone_only", path);
    if (has > 0 &&
        (s = ct__h5_read_i64(root, "cutune_backbone_only", path, &backbone_only, 1)) != CT_OK)
        return s;
    struct stat st;
    if (backbone_only == 0 && stat(path, &st) == 0 && hs->params > (int64_t)st.st_size / 2)
        return ct_error(CT_EFORMAT, "%s: cutune_head '%s' on a %dx%d input has %lld parameters, "
                        "more than the whole file (%lld bytes) holds (a damaged attribute?)",
                        path, c->head, c->input_h, c->input_w, (long long)hs->params,
                        (long long)st.st_size);
    return CT_OK;
}

/* The preprocessing text must parse as ct_standardize_format wrote it. */
static ct_status check_preprocessing(const char *path, const char *text) {
    ct_standardize st;
    if (ct_standardize_parse(text, &st) == CT_OK) return CT_OK;
    return ct__wrap(CT_EFORMAT, "%s: cutune_preprocessing '%s'", path, text);
}

/* Class names: none, or one per class of the head (two for a sigmoid output), each 1 to
 * CT_WEIGHTS_MAX_CLASS_NAME bytes; the count is checked before the list is read. */
static ct_status read_classes(hid_t root, const char *path, const head_size *hs,
                              ct_saved_config *extra) {
    ct__strlist classes = {0};
    bool found = false;
    int max_n = hs->classes > 0 && hs->classes < CT_WEIGHTS_MAX_UNITS ? (int)hs->classes
                                                                      : CT_WEIGHTS_MAX_UNITS;
    ct_status s = ct__h5_read_names(root, "cutune_class_names", path, max_n,
                                    CT_WEIGHTS_MAX_CLASS_NAME, &classes, &found);
    if (s != CT_OK) return s;
    extra->n_classes = classes.n;
    extra->class_names = classes.s;
    if (classes.n > 0 && classes.n != hs->classes)
        return ct_error(CT_EFORMAT, "%s: cutune_class_names has %d names for a head with %lld "
                        "classes", path, classes.n, (long long)hs->classes);
    for (int i = 0; i < classes.n; i++)
        if (classes.s[i][0] == '\0')
            return ct_error(CT_EFORMAT, "%s: cutune_class_names: name %d is empty", path, i);
    return CT_OK;
}

ct_status ct_weights_read_config(const char *path, ct_model_config *cfg, ct_saved_config *extra) {
    memset(extra, 0, sizeof *extra);
    ct__h5_begin();
    hid_t file, root = -1;
    ct_status s = ct__h5_open_read(path, &file);
    if (s != CT_OK) return s;
    if ((root = CT_H5(H5Gopen2(file, "/", H5P_DEFAULT))) < 0) {
        s = ct__h5_error(CT_EFORMAT, "%s: cannot open the root group", path);
        goto done;
    }
    htri_t has = CT_H5(H5Aexists(root, "cutune_head"));
    if (has <= 0) {
        /* A Keras model file (model.save('m.h5')) describes its model in JSON. */
        htri_t keras = has == 0 ? CT_H5(H5Aexists(root, "model_config")) : -1;
        if (keras > 0) {
            ct_model_config c = *cfg;
            if ((s = ct__keras_read_model_config(root, path, &c, extra)) == CT_OK) *cfg = c;
            goto done;
        }
        s = ct_error(CT_ENOTFOUND, "%s: holds weights only (not written by cutune, and no "
                     "Keras model_config: a save_weights file): give the head and input size "
                     "yourself", path);
        goto done;
    }
    int64_t shape[3], aux = 0;
    if ((s = ct__h5_read_string(root, "cutune_head", path, extra->head, sizeof extra->head)) !=
            CT_OK ||
        (s = ct__h5_read_i64(root, "cutune_input_shape", path, shape, 3)) != CT_OK ||
        (s = ct__h5_read_i64(root, "cutune_aux_dim", path, &aux, 1)) != CT_OK ||
        (s = check_shape(path, shape, aux)) != CT_OK ||
        (s = ct__h5_read_string(root, "cutune_preprocessing", path, extra->preprocessing,
                                sizeof extra->preprocessing)) != CT_OK ||
        (s = check_preprocessing(path, extra->preprocessing)) != CT_OK ||
        (s = ct__h5_read_string(root, "cutune_version", path, extra->cutune_version,
                                sizeof extra->cutune_version)) != CT_OK ||
        (s = ct__read_backbone(root, path, extra->backbone, sizeof extra->backbone)) != CT_OK)
        goto done;
    ct_model_config c = *cfg;
    c.input_h = (int)shape[0];
    c.input_w = (int)shape[1];
    c.input_c = (int)shape[2];
    c.aux_dim = (int)aux;
    c.head = extra->head;
    c.backbone = extra->backbone;
    head_size hs;
    if ((s = check_head(root, path, &c, &hs)) != CT_OK ||
        (s = read_classes(root, path, &hs, extra)) != CT_OK)
        goto done;
    *cfg = c;
done:
    ct__h5_close(root);
    ct__h5_close(file);
    if (s != CT_OK) ct_saved_config_free(extra);
    return s;
}

ct_status ct_weights_model_error(const char *path, const ct_model_config *cfg, ct_status s) {
    if (s == CT_OK) return s;
    /* Every setting the model checks but its head was checked against the file's bounds
     * already, so the model's CT_EINVAL is its head parser's. */
    if (s == CT_EINVAL)
        return ct__wrap(CT_EFORMAT, "%s: cutune_head '%s'", path, cfg->head);
    return ct__wrap(s, "%s: the %s model it describes (%dx%d input, head '%s')", path,
                    cfg->backbone != NULL ? cfg->backbone : CT_BACKBONE_DEFAULT, cfg->input_h,
                    cfg->input_w, cfg->head != NULL ? cfg->head : "");
}
