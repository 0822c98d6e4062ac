/* The model of a file Keras wrote: the architecture that a legacy model.save('m.h5') keeps as
 * JSON in the root's model_config attribute, mapped onto one of cutune's VGG backbones and a
 * head spec ("flatten@flatten,dense:16:relu@dense,dense:3:softmax@dense_1"), so that
 * `cutune predict`, `evaluate` and ct_model_load run a Keras user's own model.
 *
 * Keras lists a functional model's layers with the layers each one is called on; the map
 * follows those links. The backbone must be VGG16's or VGG19's convolutional base layer for
 * layer (names, filters, 3x3 'same' ReLU convolutions, 2x2 pools); the head is one chain of
 * Flatten, GlobalAveragePooling2D, GlobalMaxPooling2D, Dense, Dropout and Activation layers (an
 * Activation folds into the Dense before it), with at most one auxiliary input whose Dense
 * layer joins the chain through a Concatenate, image features first (cutune's iceberg head).
 * Anything else is refused by layer name with the reason. Nested models (a VGG16 used as a
 * layer, a Sequential) are walked as if their layers were the outer model's. Every head layer
 * keeps its Keras name (the '@name' of the spec), so the weights load by name. Keras does not
 * keep the preprocessing or the class names in the file: caffe (VGG's preprocess_input) is
 * assumed and the classes are unnamed; the caller may say otherwise. */
#define _POSIX_C_SOURCE 200809L
#include <cjson/cJSON.h>
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../model/backbone.h"
#include "io.h"

#define KC_MAX_LAYERS 512  /* layers of the flattened model; VGG19 + a head needs about 30 */
#define KC_MAX_INBOUND 4   /* inputs of one layer that the map looks at */
#define KC_MAX_ALIASES 16  /* nested models and their inputs */

/* One layer of the flattened model. */
typedef struct kc_layer {
    const char *cls;  /* Keras class name: "Conv2D" */
    const char *name; /* "block1_conv1" */
    const cJSON *cfg; /* its "config" object */
    int n_in;         /* -1: not listed (a Sequential's layer): the previous layer */
    const char *in[KC_MAX_INBOUND];
} kc_layer;

typedef struct kc_map {
    const char *path;
    kc_layer l[KC_MAX_LAYERS];
    int n;
    const char *alias_from[KC_MAX_ALIASES], *alias_to[KC_MAX_ALIASES];
    int n_alias;
    /* The walk's state. */
    int h, w, aux_dim;
    const char *main_tip, *aux_input, *aux_tip;
    const char *bb_names[64];
    const kc_layer *bb_layers[64];
    int n_bb;
    bool head_started;
    char head[CT_CONFIG_HEAD_MAX];
    char aux_token[128]; /* the auxiliary branch's token, written before its concat */
    bool last_is_linear_dense;
} kc_map;

/* The refusal of layer l: "FILE: layer 'NAME' (CLASS): WHY". */
static ct_status refuse(const kc_map *m, const kc_layer *l, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
static ct_status refuse(const kc_map *m, const kc_layer *l, const char *fmt, ...) {
    char why[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    return ct_error(CT_EUNSUPPORTED, "%s: layer '%s' (%s): %s", m->path, l->name, l->cls, why);
}

/* ---- reading the JSON ---- */

static const char *str_of(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* Inbound layer names, in call order: Keras 3 writes {"keras_history": [name, node, index]}
 * inside each argument, Keras 2 writes [[name, node, index, kwargs], ...] per node. */
static void find_inbound(const cJSON *v, kc_layer *l) {
    if (cJSON_IsObject(v)) {
        const cJSON *h = cJSON_GetObjectItemCaseSensitive(v, "keras_history");
        if (cJSON_IsArray(h) && cJSON_IsString(cJSON_GetArrayItem(h, 0))) {
            if (l->n_in < KC_MAX_INBOUND) l->in[l->n_in] = cJSON_GetArrayItem(h, 0)->valuestring;
            l->n_in++;
            return;
        }
    }
    if (cJSON_IsArray(v) && cJSON_IsString(cJSON_GetArrayItem(v, 0)) &&
        cJSON_IsNumber(cJSON_GetArrayItem(v, 1))) {
        if (l->n_in < KC_MAX_INBOUND) l->in[l->n_in] = cJSON_GetArrayItem(v, 0)->valuestring;
        l->n_in++;
        return;
    }
    const cJSON *c;
    cJSON_ArrayForEach(c, v) find_inbound(c, l);
}

static bool is_model_class(const char *cls) {
    return strcmp(cls, "Functional") == 0 || strcmp(cls, "Model") == 0 ||
           strcmp(cls, "Sequential") == 0;
}

static const cJSON *layers_of(const cJSON *model) {
    const cJSON *cfg = cJSON_GetObjectItemCaseSensitive(model, "config");
    if (cJSON_IsArray(cfg)) return cfg; /* Keras 1 and early 2 Sequential */
    return cJSON_GetObjectItemCaseSensitive(cfg, "layers");
}

static void add_alias(kc_map *m, const char *from, const char *to) {
    if (m->n_alias < KC_MAX_ALIASES && from != NULL && to != NULL) {
        m->alias_from[m->n_alias] = from;
        m->alias_to[m->n_alias++] = to;
    }
}

/* Appends the layers of `model` to m->l, nested models' layers in their place. A nested
 * model's name stands for its last layer; its first input layer for what it is called on. */
static ct_status flatten_layers(kc_map *m, const cJSON *model, int depth) {
    const cJSON *layers = layers_of(model);
    if (!cJSON_IsArray(layers) || depth > 8)
        return ct_error(CT_EFORMAT, "%s: model_config has no layer list Keras would write",
                        m->path);
    const cJSON *j;
    cJSON_ArrayForEach(j, layers) {
        const char *cls = str_of(j, "class_name");
        const cJSON *cfg = cJSON_GetObjectItemCaseSensitive(j, "config");
        const char *name = str_of(j, "name");
        if (name == NULL) name = str_of(cfg, "name");
        if (cls == NULL || name == NULL || !cJSON_IsObject(cfg))
            return ct_error(CT_EFORMAT, "%s: model_config: layer %d has no class_name, name or "
                            "config", m->path, m->n);
        kc_layer here = {.cls = cls, .name = name, .cfg = cfg, .n_in = -1};
        const cJSON *nodes = cJSON_GetObjectItemCaseSensitive(j, "inbound_nodes");
        if (cJSON_IsArray(nodes) && cJSON_GetArraySize(nodes) > 0) {
            here.n_in = 0;
            find_inbound(nodes, &here);
        }
        if (is_model_class(cls)) {
            int first = m->n;
            ct_status s = flatten_layers(m, j, depth + 1);
            if (s != CT_OK) return s;
            if (m->n > first) {
                if (strcmp(m->l[first].cls, "InputLayer") == 0)
                    add_alias(m, m->l[first].name, here.n_in > 0 ? here.in[0] : NULL);
                add_alias(m, name, m->l[m->n - 1].name);
            }
            continue;
        }
        if (m->n == KC_MAX_LAYERS)
            return ct_error(CT_EUNSUPPORTED, "%s: model_config has more than %d layers; cutune's "
                            "models have about 30", m->path, KC_MAX_LAYERS);
        m->l[m->n++] = here;
    }
    return CT_OK;
}

/* The layer a name stands for, through nested models. */
static const char *resolve(const kc_map *m, const char *name) {
    for (int hops = 0; name != NULL && hops < KC_MAX_ALIASES; hops++) {
        int i = 0;
        while (i < m->n_alias && strcmp(m->alias_from[i], name) != 0) i++;
        if (i == m->n_alias) return name;
        name = m->alias_to[i];
    }
    return name;
}

static const char *input_of(const kc_map *m, const kc_layer *l, int k) {
    if (l->n_in < 0) return k == 0 ? m->main_tip : NULL; /* a Sequential: the previous layer */
    return k < l->n_in && k < KC_MAX_INBOUND ? resolve(m, l->in[k]) : NULL;
}

static bool same(const char *a, const char *b) { return a != NULL && b != NULL && !strcmp(a, b); }

/* An integer pair such as kernel_size [3, 3]; an absent key reads as `dflt`. */
static bool pair_is(const cJSON *cfg, const char *key, int v, bool absent_ok) {
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(cfg, key);
    if (a == NULL || cJSON_IsNull(a)) return absent_ok;
    if (cJSON_IsNumber(a)) return a->valuedouble == v;
    if (!cJSON_IsArray(a) || cJSON_GetArraySize(a) != 2) return false;
    return cJSON_GetArrayItem(a, 0)->valuedouble == v && cJSON_GetArrayItem(a, 1)->valuedouble == v;
}

static bool text_is(const cJSON *cfg, const char *key, const char *want, bool absent_ok) {
    const char *v = str_of(cfg, key);
    return v == NULL ? absent_ok : strcmp(v, want) == 0;
}

/* ---- the backbone ---- */

static ct_status check_conv(const kc_map *m, const kc_layer *l) {
    const cJSON *c = l->cfg;
    if (!pair_is(c, "kernel_size", 3, false))
        return refuse(m, l, "cutune's VGG convolutions are 3x3");
    if (!pair_is(c, "strides", 1, true) || !pair_is(c, "dilation_rate", 1, true))
        return refuse(m, l, "cutune's VGG convolutions have stride 1 and no dilation");
    if (!text_is(c, "padding", "same", false) || !text_is(c, "activation", "relu", false))
        return refuse(m, l, "cutune's VGG convolutions are padding='same', activation='relu'");
    const cJSON *bias = cJSON_GetObjectItemCaseSensitive(c, "use_bias");
    const cJSON *groups = cJSON_GetObjectItemCaseSensitive(c, "groups");
    if (cJSON_IsFalse(bias) || (cJSON_IsNumber(groups) && groups->valuedouble != 1))
        return refuse(m, l, "cutune's VGG convolutions have a bias and one group");
    if (!text_is(c, "data_format", "channels_last", true))
        return refuse(m, l, "cutune runs channels_last models");
    return CT_OK;
}

static ct_status check_pool(const kc_map *m, const kc_layer *l) {
    const cJSON *c = l->cfg;
    if (!pair_is(c, "pool_size", 2, false) || !pair_is(c, "strides", 2, true) ||
        !text_is(c, "padding", "valid", true))
        return refuse(m, l, "cutune's VGG pools are 2x2 with stride 2, padding='valid'");
    return CT_OK;
}

static int filters_of(const kc_layer *l) {
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(l->cfg, "filters");
    return cJSON_IsNumber(f) ? f->valueint : -1;
}

/* The known backbone whose layer list the file's backbone layers are, in *out. */
static ct_status match_backbone(kc_map *m, const ct_backbone **out) {
    char names[128], list[128];
    ct_backbone_names(names, sizeof names);
    snprintf(list, sizeof list, "%s", names);
    const ct_backbone *best = NULL;
    int best_run = -1;
    for (char *save = NULL, *t = strtok_r(list, ", ", &save); t != NULL;
         t = strtok_r(NULL, ", ", &save)) {
        const ct_backbone *b = ct_backbone_find(t);
        int k = 0;
        while (b != NULL && k < m->n_bb && k < b->n_layers && !strcmp(b->layers[k].name,
                                                                      m->bb_names[k]))
            k++;
        if (b != NULL && k > best_run) {
            best = b;
            best_run = k;
        }
        if (b != NULL && k == m->n_bb && k == b->n_layers) break;
    }
    if (m->n_bb == 0)
        return ct_error(CT_EUNSUPPORTED, "%s: the model has no convolutional base; cutune runs "
                        "VGG16 or VGG19 (keras.applications, include_top=False) under a head",
                        m->path);
    if (best_run < m->n_bb) {
        const kc_layer *l = m->bb_layers[best_run];
        return refuse(m, l, "not the next layer of %s's convolutional base (expected '%s'); "
                      "cutune runs VGG16 or VGG19 (keras.applications) under a head",
                      best->keras_name, best_run < best->n_layers ? best->layers[best_run].name
                                                                  : "the head");
    }
    if (best_run < best->n_layers)
        return refuse(m, m->bb_layers[m->n_bb - 1], "%s's convolutional base ends here, before "
                      "'%s'; cutune runs the whole base (to '%s')", best->keras_name,
                      best->layers[best_run].name, best->layers[best->n_layers - 1].name);
    for (int k = 0; k < m->n_bb; k++)
        if (best->layers[k].kind == CT_LAYER_CONV && filters_of(m->bb_layers[k]) !=
                                                         best->layers[k].units)
            return refuse(m, m->bb_layers[k], "%d filters where %s has %d", filters_of(
                              m->bb_layers[k]), best->keras_name, best->layers[k].units);
    *out = best;
    return CT_OK;
}

static ct_status add_backbone_layer(kc_map *m, const kc_layer *l) {
    bool conv = strcmp(l->cls, "Conv2D") == 0;
    if (m->head_started)
        return refuse(m, l, "a %s in the head; cutune's heads have Flatten, "
                      "GlobalAveragePooling2D, GlobalMaxPooling2D, Dense, Dropout, Activation and "
                      "Concatenate layers", conv ? "convolution" : "pooling layer");
    if (m->main_tip == NULL || !same(input_of(m, l, 0), m->main_tip))
        return refuse(m, l, "its input is not the layer before it in the convolutional base");
    ct_status s = conv ? check_conv(m, l) : check_pool(m, l);
    if (s != CT_OK) return s;
    if (m->n_bb == (int)(sizeof m->bb_names / sizeof m->bb_names[0]))
        return refuse(m, l, "more layers than any VGG's convolutional base");
    m->bb_names[m->n_bb] = l->name;
    m->bb_layers[m->n_bb++] = l;
    m->main_tip = l->name;
    return CT_OK;
}

/* ---- the head ---- */

static ct_status append(kc_map *m, const kc_layer *l, char *dst, size_t cap, const char *text) {
    size_t used = strlen(dst);
    if (used + strlen(text) + 2 > cap)
        return refuse(m, l, "the head is longer than cutune's head spec holds");
    snprintf(dst + used, cap - used, "%s%s", used > 0 && dst == m->head ? "," : "", text);
    return CT_OK;
}

/* "WORD[:ARGS]@name" for layer l. */
static ct_status token(kc_map *m, const kc_layer *l, char *dst, size_t cap, const char *word) {
    size_t n = strlen(l->name);
    if (n == 0 || n >= CT_NAME_MAX)
        return refuse(m, l, "cutune's layer names have 1 to %d characters", CT_NAME_MAX - 1);
    for (const char *p = l->name; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '_')
            return refuse(m, l, "cutune's layer names use letters, digits and '_'");
    char t[160];
    snprintf(t, sizeof t, "%s@%s", word, l->name);
    return append(m, l, dst, cap, t);
}

static ct_status activation_of(const kc_map *m, const kc_layer *l, const char **act) {
    const char *a = str_of(l->cfg, "activation");
    if (a == NULL) a = "linear";
    if (strcmp(a, "relu") && strcmp(a, "linear") && strcmp(a, "sigmoid") && strcmp(a, "softmax"))
        return refuse(m, l, "activation '%s'; cutune's heads use relu, linear, sigmoid and "
                      "softmax", a);
    *act = a;
    return CT_OK;
}

static ct_status dense_token(kc_map *m, const kc_layer *l, bool aux) {
    const cJSON *u = cJSON_GetObjectItemCaseSensitive(l->cfg, "units");
    if (!cJSON_IsNumber(u) || u->valuedouble < 1 || u->valuedouble > CT_WEIGHTS_MAX_UNITS)
        return refuse(m, l, "units is not a count from 1 to %d", CT_WEIGHTS_MAX_UNITS);
    if (cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(l->cfg, "use_bias")))
        return refuse(m, l, "use_bias=False; cutune's dense layers have a bias");
    const char *act;
    ct_status s = activation_of(m, l, &act);
    if (s != CT_OK) return s;
    char word[64];
    snprintf(word, sizeof word, "%s:%d:%s", aux ? "aux" : "dense", u->valueint, act);
    if (aux) {
        if (m->aux_token[0] != '\0')
            return refuse(m, l, "a second dense layer on the auxiliary input; cutune's auxiliary "
                          "branch is one dense layer");
        m->aux_tip = l->name;
        return token(m, l, m->aux_token, sizeof m->aux_token, word);
    }
    m->last_is_linear_dense = strcmp(act, "linear") == 0;
    return token(m, l, m->head, sizeof m->head, word);
}

/* Activation('softmax') after Dense(3): the dense token's activation becomes softmax. */
static ct_status fold_activation(kc_map *m, const kc_layer *l) {
    if (!m->last_is_linear_dense)
        return refuse(m, l, "an activation layer must follow a Dense layer without activation");
    const char *act;
    ct_status s = activation_of(m, l, &act);
    if (s != CT_OK) return s;
    char *at = strrchr(m->head, '@'), *colon = at;
    while (colon > m->head && *colon != ':') colon--;
    char name[CT_NAME_MAX];
    snprintf(name, sizeof name, "%s", at + 1);
    snprintf(colon, sizeof m->head - (size_t)(colon - m->head), ":%s@%s", act, name);
    m->last_is_linear_dense = false;
    return CT_OK;
}

static ct_status concat_token(kc_map *m, const kc_layer *l) {
    const cJSON *axis = cJSON_GetObjectItemCaseSensitive(l->cfg, "axis");
    if (cJSON_IsNumber(axis) && axis->valuedouble != -1 && axis->valuedouble != 1)
        return refuse(m, l, "cutune concatenates along the last axis");
    const char *a = input_of(m, l, 0), *b = input_of(m, l, 1);
    if (l->n_in != 2 || m->aux_input == NULL)
        return refuse(m, l, "cutune's heads concatenate the image features with one auxiliary "
                      "branch");
    if (same(a, m->aux_tip) && same(b, m->main_tip))
        return refuse(m, l, "cutune concatenates the image features first, then the auxiliary "
                      "branch");
    if (!same(a, m->main_tip) || !same(b, m->aux_tip))
        return refuse(m, l, "its inputs are not the head's chain and its auxiliary branch");
    if (m->aux_token[0] == '\0')
        return refuse(m, l, "the auxiliary input joins without a Dense layer; cutune's auxiliary "
                      "branch is one Dense layer (aux:UNITS)");
    ct_status s = append(m, l, m->head, sizeof m->head, m->aux_token);
    if (s != CT_OK) return s;
    m->aux_token[0] = '\0';
    m->aux_tip = NULL;
    return token(m, l, m->head, sizeof m->head, "concat");
}

static ct_status head_layer(kc_map *m, const kc_layer *l) {
    const char *in = input_of(m, l, 0);
    const char *cls = l->cls;
    if (strcmp(cls, "Dense") == 0 && m->aux_tip != NULL && same(in, m->aux_tip))
        return dense_token(m, l, true);
    if (strcmp(cls, "Concatenate") == 0) {
        ct_status s = concat_token(m, l);
        if (s == CT_OK) m->main_tip = l->name;
        m->last_is_linear_dense = false;
        return s;
    }
    if (!same(in, m->main_tip) || l->n_in > 1)
        return refuse(m, l, "its input is not the layer before it; cutune's head is one chain "
                      "with at most one auxiliary branch");
    ct_status s;
    if (strcmp(cls, "Dense") == 0) {
        s = dense_token(m, l, false);
    } else if (strcmp(cls, "Activation") == 0) {
        s = fold_activation(m, l);
    } else if (!strcmp(cls, "Flatten") || !strcmp(cls, "GlobalAveragePooling2D") ||
               !strcmp(cls, "GlobalMaxPooling2D")) {
        if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(l->cfg, "keepdims")))
            return refuse(m, l, "keepdims=True; cutune's pooling gives flat features");
        s = token(m, l, m->head, sizeof m->head,
                  cls[0] == 'F' ? "flatten" : cls[6] == 'A' ? "gap" : "gmp");
        m->last_is_linear_dense = false;
    } else if (strcmp(cls, "Dropout") == 0) {
        const cJSON *r = cJSON_GetObjectItemCaseSensitive(l->cfg, "rate");
        if (!cJSON_IsNumber(r) || !(r->valuedouble >= 0 && r->valuedouble < 1))
            return refuse(m, l, "the rate is not a number in [0, 1)");
        char word[48];
        snprintf(word, sizeof word, "dropout:%.9g", r->valuedouble); /* a float in cutune */
        s = token(m, l, m->head, sizeof m->head, word);
        m->last_is_linear_dense = false;
    } else {
        return refuse(m, l, "cutune's heads have Flatten, GlobalAveragePooling2D, "
                      "GlobalMaxPooling2D, Dense, Dropout, Activation and Concatenate layers");
    }
    if (s == CT_OK) m->main_tip = l->name; /* an Activation's name too: the next layer's input */
    return s;
}

/* ---- inputs ---- */

static ct_status input_layer(kc_map *m, const kc_layer *l) {
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(l->cfg, "batch_shape");
    if (shape == NULL) shape = cJSON_GetObjectItemCaseSensitive(l->cfg, "batch_input_shape");
    int nd = cJSON_IsArray(shape) ? cJSON_GetArraySize(shape) : 0;
    int d[4] = {0};
    for (int k = 1; k < nd && k < 4; k++) {
        const cJSON *v = cJSON_GetArrayItem(shape, k);
        if (!cJSON_IsNumber(v))
            return refuse(m, l, "the input's size is not fixed (None); cutune needs it (build "
                          "the model with input_shape=(H, W, 3))");
        d[k] = v->valueint;
    }
    if (nd == 4 && m->main_tip == NULL) {
        if (d[1] < CT_MIN_INPUT || d[1] > CT_WEIGHTS_MAX_INPUT || d[2] < CT_MIN_INPUT ||
            d[2] > CT_WEIGHTS_MAX_INPUT || d[3] != 3)
            return refuse(m, l, "input shape (%d, %d, %d); cutune takes 3 channels and sides "
                          "of %d to %d pixels", d[1], d[2], d[3], CT_MIN_INPUT,
                          CT_WEIGHTS_MAX_INPUT);
        m->h = d[1];
        m->w = d[2];
        m->main_tip = l->name;
        return CT_OK;
    }
    if (nd == 4 && d[1] == m->h && d[2] == m->w && d[3] == 3) {
        add_alias(m, l->name, m->main_tip); /* a nested model's own input */
        return CT_OK;
    }
    if (nd == 2 && m->aux_input == NULL && d[1] >= 1 && d[1] <= CT_WEIGHTS_MAX_AUX) {
        m->aux_input = m->aux_tip = l->name;
        m->aux_dim = d[1];
        return CT_OK;
    }
    return refuse(m, l, "cutune's models take one image input and at most one vector of up to "
                  "%d auxiliary values", CT_WEIGHTS_MAX_AUX);
}

/* Walks the flattened layers: inputs, the backbone, then the head. */
static ct_status map_layers(kc_map *m) {
    for (int i = 0; i < m->n; i++) {
        const kc_layer *l = &m->l[i];
        ct_status s;
        if (strcmp(l->cls, "InputLayer") == 0)
            s = input_layer(m, l);
        else if (strcmp(l->cls, "Conv2D") == 0 || strcmp(l->cls, "MaxPooling2D") == 0)
            s = add_backbone_layer(m, l);
        else if (m->main_tip == NULL)
            s = refuse(m, l, "the model's image input is not declared before it");
        else {
            m->head_started = true;
            s = head_layer(m, l);
        }
        if (s != CT_OK) return s;
    }
    if (m->main_tip == NULL)
        return ct_error(CT_EUNSUPPORTED, "%s: model_config declares no image input", m->path);
    if (m->head[0] == '\0')
        return ct_error(CT_EUNSUPPORTED, "%s: the model has no head after its convolutional "
                        "base; cutune predicts with a head ending in Dense(1, 'sigmoid') or "
                        "Dense(K, 'softmax')", m->path);
    return CT_OK;
}

ct_status ct__keras_read_model_config(hid_t root, const char *path, ct_model_config *cfg,
                                      ct_saved_config *extra) {
    char *text = NULL;
    ct_status s = ct__h5_read_string_alloc(root, "model_config", path, &text);
    if (s != CT_OK) return s;
    cJSON *json = cJSON_Parse(text);
    free(text);
    if (json == NULL)
        return ct_error(CT_EFORMAT, "%s: model_config is not JSON (a damaged attribute?)", path);
    kc_map *m = calloc(1, sizeof *m);
    if (m == NULL) {
        cJSON_Delete(json);
        return ct_error(CT_ENOMEM, "cannot allocate the model map");
    }
    m->path = path;
    const ct_backbone *bb = NULL;
    if ((s = flatten_layers(m, json, 0)) == CT_OK && (s = map_layers(m)) == CT_OK &&
        (s = match_backbone(m, &bb)) == CT_OK) {
        snprintf(extra->head, sizeof extra->head, "%s", m->head);
        snprintf(extra->backbone, sizeof extra->backbone, "%s", bb->name);
        snprintf(extra->preprocessing, sizeof extra->preprocessing, "caffe");
        extra->from_keras = true;
        cfg->input_h = m->h;
        cfg->input_w = m->w;
        cfg->input_c = 3;
        cfg->aux_dim = m->aux_dim;
        cfg->head = extra->head;
        cfg->backbone = extra->backbone;
    }
    free(m);
    cJSON_Delete(json);
    return s;
}

/* ---- weights-only files ---- */

static int conv_count(const ct_backbone *b) {
    int n = 0;
    for (int k = 0; k < b->n_layers; k++) n += b->layers[k].kind == CT_LAYER_CONV;
    return n;
}

/* The backbone whose convolutions the file holds: the one a layer name belongs to
 * (block5_conv4: VGG19), else the one with as many conv kernels as the file has 4-D arrays (a
 * Keras 3 file without names: VGG16 13, VGG19 16), else the default, so that the loader's
 * message names what is missing. */
static const ct_backbone *backbone_of_file(const ct_weights_file *wf) {
    for (int i = 0; i < wf->n_layers; i++) {
        const ct_backbone *b = ct_backbone_with_layer(wf->layers[i].name, ct_backbone_find(NULL));
        if (b != NULL) return b;
    }
    int kernels = 0;
    for (int i = 0; i < wf->n_layers; i++)
        for (int a = 0; a < wf->layers[i].n_arrays; a++) kernels += wf->layers[i].arrays[a].ndim == 4;
    char names[128];
    ct_backbone_names(names, sizeof names);
    for (char *save = NULL, *t = strtok_r(names, ", ", &save); t != NULL;
         t = strtok_r(NULL, ", ", &save)) {
        const ct_backbone *b = ct_backbone_find(t);
        if (b != NULL && conv_count(b) == kernels) return b;
    }
    return ct_backbone_find(NULL);
}

ct_status ct_weights_config_given(const char *path, const char *head, int input_size,
                                  ct_model_config *cfg, ct_saved_config *extra) {
    memset(extra, 0, sizeof *extra);
    if (head == NULL || head[0] == '\0')
        return ct_error(CT_EINVAL, "%s holds weights only: the head is needed", path);
    if (input_size < CT_MIN_INPUT || input_size > CT_WEIGHTS_MAX_INPUT)
        return ct_error(CT_EINVAL, "input size %d: expected %d to %d pixels", input_size,
                        CT_MIN_INPUT, CT_WEIGHTS_MAX_INPUT);
    const char *expanded = strcmp(head, "iceberg") == 0 ? CT_HEAD_ICEBERG
                         : strcmp(head, "mri") == 0     ? CT_HEAD_MRI
                                                        : head;
    if (strlen(expanded) >= sizeof extra->head)
        return ct_error(CT_EINVAL, "head spec is longer than %zu characters",
                        sizeof extra->head - 1);
    ct_weights_file *wf = NULL;
    ct_status s = ct_weights_inspect(path, &wf);
    if (s != CT_OK) return s;
    snprintf(extra->backbone, sizeof extra->backbone, "%s", backbone_of_file(wf)->name);
    ct_weights_file_free(wf);
    snprintf(extra->head, sizeof extra->head, "%s", expanded);
    snprintf(extra->preprocessing, sizeof extra->preprocessing, "caffe");
    cfg->input_h = cfg->input_w = input_size;
    cfg->input_c = 3;
    /* The only auxiliary data cutune reads is the iceberg file's incidence angle. */
    cfg->aux_dim = strstr(expanded, "aux:") != NULL ? 1 : 0;
    cfg->head = extra->head;
    cfg->backbone = extra->backbone;
    return CT_OK;
}
