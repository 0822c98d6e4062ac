/* Reading the structure of a Keras weights file: which layout it is, its layers in the file's
 * order, and each array's name, path, shape and type. No array data is read here; loading
 * (weights_load.c) works from this description.
 *
 * Order comes from the `layer_names` attribute (or its split form) for the legacy layouts, and
 * from the class counters in the group names (conv2d, conv2d_1, ...) for Keras 3 files, never
 * from HDF5's group iteration, which is alphabetical (conv2d_10 before conv2d_2). */
#define _POSIX_C_SOURCE 200809L
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io.h"

const char *ct_weights_format_name(ct_weights_format f) {
    switch (f) {
    case CT_WEIGHTS_KERAS1: return "Keras 1 HDF5 weights (keras-applications layout, no keras_version)";
    case CT_WEIGHTS_LEGACY: return "legacy Keras HDF5 weights (save_weights .h5)";
    case CT_WEIGHTS_LEGACY_MODEL: return "legacy Keras whole-model HDF5 (weights under /model_weights)";
    case CT_WEIGHTS_KERAS3: return "Keras 3 .weights.h5";
    }
    return "unknown";
}

void ct_weights_file_free(ct_weights_file *f) {
    if (f == NULL) return;
    for (int i = 0; i < f->n_layers; i++) free(f->layers[i].arrays);
    free(f->layers);
    free(f);
}

/* Limits that keep a damaged or hostile file from exhausting memory or the stack. */
#define MAX_LAYERS 200000
#define MAX_ARRAYS_PER_LAYER 4096
#define MAX_ARRAYS 65536   /* in the whole file; VGG16 with its classifier has 32 */
#define MAX_GROUPS 200000  /* groups visited in a Keras 3 file (hard links can form cycles) */
#define MAX_DEPTH 8

/* Counts arrays across the file; fails past MAX_ARRAYS. */
static ct_status count_arrays(ct_weights_file *wf, int n) {
    wf->n_arrays += n;
    if (wf->n_arrays > MAX_ARRAYS)
        return ct_error(CT_EFORMAT, "%s: more than %d weight arrays", wf->path, MAX_ARRAYS);
    return CT_OK;
}

static ct_status add_layer(ct_weights_file *wf, const char *name, ct_weights_layer **out) {
    if (wf->n_layers >= MAX_LAYERS)
        return ct_error(CT_EFORMAT, "%s: more than %d layers", wf->path, MAX_LAYERS);
    if ((wf->n_layers & (wf->n_layers - 1)) == 0) {
        size_t cap = wf->n_layers == 0 ? 1 : (size_t)wf->n_layers * 2;
        ct_weights_layer *g = realloc(wf->layers, cap * sizeof *g);
        if (g == NULL) return ct_error(CT_ENOMEM, "%s: out of memory listing layers", wf->path);
        wf->layers = g;
    }
    ct_weights_layer *l = &wf->layers[wf->n_layers++];
    memset(l, 0, sizeof *l);
    l->class_index = -1;
    if (strlen(name) >= sizeof l->name)
        return ct_error(CT_EFORMAT, "%s: a layer name is longer than %zu bytes", wf->path,
                        sizeof l->name - 1);
    snprintf(l->name, sizeof l->name, "%s", name);
    *out = l;
    return CT_OK;
}

static void dtype_describe(hid_t type, ct_weights_array *a) {
    H5T_class_t cls = (H5T_class_t)CT_H5(H5Tget_class(type));
    size_t size = H5Tget_size(type); /* 0 is HDF5's failure value here: "float0" */
    if (cls == H5T_FLOAT) {
        a->dtype = size == 4 ? CT_WDTYPE_F32 : size == 8 ? CT_WDTYPE_F64
                 : size == 2 ? CT_WDTYPE_F16 : CT_WDTYPE_OTHER;
        snprintf(a->dtype_name, sizeof a->dtype_name, "float%zu", size * 8);
    } else if (cls == H5T_INTEGER) {
        a->dtype = CT_WDTYPE_INT;
        snprintf(a->dtype_name, sizeof a->dtype_name, "%sint%zu",
                 CT_H5(H5Tget_sign(type)) == H5T_SGN_NONE ? "u" : "", size * 8);
    } else {
        a->dtype = CT_WDTYPE_OTHER;
        snprintf(a->dtype_name, sizeof a->dtype_name, "%s",
                 cls == H5T_STRING ? "string" : cls == H5T_COMPOUND ? "compound" : "non-numeric");
    }
}

/* Describes the dataset at `dpath` (relative to loc) as array `a`. */
static ct_status describe_dataset(ct_weights_file *wf, hid_t loc, const char *dpath,
                                  const char *layer, ct_weights_array *a) {
    ct_status s = CT_OK;
    hid_t ds = -1, space = -1, type = -1;
    if ((ds = CT_H5(H5Dopen2(loc, dpath, H5P_DEFAULT))) < 0) {
        s = ct__h5_error(CT_EFORMAT, "%s: layer %s: weight %s is listed but no such dataset "
                         "exists", wf->path, layer, a->name);
        goto done;
    }
    if ((space = CT_H5(H5Dget_space(ds))) < 0 || (type = CT_H5(H5Dget_type(ds))) < 0) {
        s = ct__h5_error(CT_EFORMAT, "%s: layer %s: cannot read the type of %s", wf->path, layer,
                         a->name);
        goto done;
    }
    int nd = (int)CT_H5(H5Sget_simple_extent_ndims(space));
    if (nd < 0 || nd > CT_WEIGHTS_MAX_DIMS) {
        s = nd < 0 ? ct__h5_error(CT_EFORMAT, "%s: layer %s: %s has a bad dataspace", wf->path,
                                  layer, a->name)
                   : ct_error(CT_EFORMAT, "%s: layer %s: %s has %d dimensions", wf->path, layer,
                              a->name, nd);
        goto done;
    }
    hsize_t dims[CT_WEIGHTS_MAX_DIMS];
    if (nd > 0 && CT_H5(H5Sget_simple_extent_dims(space, dims, NULL)) < 0) {
        s = ct__h5_error(CT_EFORMAT, "%s: layer %s: %s has a bad dataspace", wf->path, layer,
                         a->name);
        goto done;
    }
    a->ndim = nd;
    a->count = 1;
    for (int d = 0; d < nd; d++) {
        if (dims[d] > ((hsize_t)1 << 40) || (dims[d] > 0 && a->count > ((size_t)1 << 50) / dims[d])) {
            s = ct_error(CT_EFORMAT, "%s: layer %s: %s is impossibly large", wf->path, layer,
                         a->name);
            goto done;
        }
        a->dims[d] = (int64_t)dims[d];
        a->count *= (size_t)dims[d];
    }
    if (CT_H5(H5Sget_simple_extent_type(space)) == H5S_NULL) a->count = 0;
    dtype_describe(type, a);
done:
    ct__h5_close(type);
    ct__h5_close(space);
    ct__h5_close(ds);
    return s;
}

static ct_status set_array_names(ct_weights_file *wf, ct_weights_array *a, const char *name,
                                 const char *prefix, const char *rel) {
    if (strlen(name) >= sizeof a->name)
        return ct_error(CT_EFORMAT, "%s: a weight name is longer than %zu bytes", wf->path,
                        sizeof a->name - 1);
    snprintf(a->name, sizeof a->name, "%s", name);
    int n = snprintf(a->path, sizeof a->path, "%s/%s", prefix, rel);
    if (n < 0 || (size_t)n >= sizeof a->path)
        return ct_error(CT_EFORMAT, "%s: a dataset path is longer than %zu bytes", wf->path,
                        sizeof a->path - 1);
    return CT_OK;
}

/* ---- the legacy layouts ---- */

static ct_status scan_legacy(ct_weights_file *wf, hid_t root, const char *prefix) {
    ct__strlist names = {0};
    bool found = false;
    char where[CT_WEIGHTS_PATH_MAX + 32];
    snprintf(where, sizeof where, "%s%s", wf->path, prefix[0] ? ":/model_weights" : "");
    ct_status s = ct__h5_read_strings(root, "layer_names", where, &names, &found,
                                      &wf->vlen_strings, &wf->split_names);
    if (s != CT_OK) return s;
    for (int i = 0; i < names.n && s == CT_OK; i++) {
        const char *ln = names.s[i];
        ct_weights_layer *l = NULL;
        if ((s = add_layer(wf, ln, &l)) != CT_OK) break;
        hid_t g = CT_H5(H5Gopen2(root, ln[0] != '\0' ? ln : "<empty>", H5P_DEFAULT));
        if (g < 0) {
            s = ct__h5_error(CT_EFORMAT, "%s: layer '%s' is listed in layer_names but its group "
                             "is missing", wf->path, ln);
            break;
        }
        ct__strlist wn = {0};
        bool wfound = false;
        char lwhere[CT_WEIGHTS_PATH_MAX + CT_WEIGHTS_NAME_MAX];
        snprintf(lwhere, sizeof lwhere, "%s: layer %s", wf->path, ln);
        /* Keras treats a missing weight_names like an empty one. */
        s = ct__h5_read_strings(g, "weight_names", lwhere, &wn, &wfound, NULL, NULL);
        if (s == CT_OK && wn.n > MAX_ARRAYS_PER_LAYER)
            s = ct_error(CT_EFORMAT, "%s: layer %s lists %d weights", wf->path, ln, wn.n);
        if (s == CT_OK) s = count_arrays(wf, wn.n);
        if (s == CT_OK && wn.n > 0) {
            l->arrays = calloc((size_t)wn.n, sizeof *l->arrays);
            if (l->arrays == NULL) s = ct_error(CT_ENOMEM, "%s: out of memory", wf->path);
        }
        char lprefix[CT_WEIGHTS_PATH_MAX];
        snprintf(lprefix, sizeof lprefix, "%s/%s", prefix, ln);
        for (int k = 0; k < wn.n && s == CT_OK; k++) {
            ct_weights_array *a = &l->arrays[k];
            if ((s = set_array_names(wf, a, wn.s[k], lprefix, wn.s[k])) != CT_OK) break;
            l->n_arrays = k + 1;
            if (wn.s[k][0] == '\0') {
                s = ct_error(CT_EFORMAT, "%s: layer %s lists an empty weight name", wf->path, ln);
                break;
            }
            s = describe_dataset(wf, g, wn.s[k], ln, a);
            wf->n_params += a->count;
        }
        ct__strlist_free(&wn);
        ct__h5_close(g);
    }
    if (s == CT_OK) {
        for (int i = 0; i < wf->n_layers && s == CT_OK; i++)
            for (int j = 0; j < i; j++)
                if (strcmp(wf->layers[i].name, wf->layers[j].name) == 0) {
                    s = ct_error(CT_EFORMAT, "%s: layer '%s' is listed twice in layer_names",
                                 wf->path, wf->layers[i].name);
                    break;
                }
    }
    ct__strlist_free(&names);
    return s;
}

/* ---- Keras 3 .weights.h5 ---- */

typedef struct child_list {
    int n, cap;
    char **name;
} child_list;

static herr_t collect_child(hid_t g, const char *name, const H5L_info_t *info, void *data) {
    (void)g;
    (void)info;
    child_list *c = data;
    if (c->n >= 100000) return 1; /* stop: far more than any model */
    if (c->n == c->cap) {
        int cap = c->cap ? 2 * c->cap : 16;
        char **grown = realloc(c->name, (size_t)cap * sizeof *grown);
        if (grown == NULL) return -1;
        c->name = grown;
        c->cap = cap;
    }
    c->name[c->n] = strdup(name);
    if (c->name[c->n] == NULL) return -1;
    c->n++;
    return 0;
}

static void child_list_free(child_list *c) {
    for (int i = 0; i < c->n; i++) free(c->name[i]);
    free(c->name);
}

/* Splits a Keras 3 group name into its class and counter: conv2d_12 -> ("conv2d", 12),
 * conv2d -> ("conv2d", 0). */
static int split_class(const char *name, char *cls, size_t cap) {
    size_t n = strlen(name), i = n;
    while (i > 0 && isdigit((unsigned char)name[i - 1])) i--;
    if (i < n && i > 1 && name[i - 1] == '_' && n - i < 9) {
        snprintf(cls, cap, "%.*s", (int)(i - 1), name);
        return atoi(name + i);
    }
    snprintf(cls, cap, "%s", name);
    return 0;
}

/* Natural order: by class, then counter (conv2d_2 before conv2d_10). */
static int class_order(const void *pa, const void *pb) {
    const char *a = *(const char *const *)pa, *b = *(const char *const *)pb;
    char ca[CT_WEIGHTS_NAME_MAX], cb[CT_WEIGHTS_NAME_MAX];
    int na = split_class(a, ca, sizeof ca), nb = split_class(b, cb, sizeof cb);
    int c = strcmp(ca, cb);
    if (c != 0) return c;
    if (na != nb) return na < nb ? -1 : 1;
    return strcmp(a, b);
}

static int numeric_order(const void *pa, const void *pb) {
    const char *a = *(const char *const *)pa, *b = *(const char *const *)pb;
    size_t la = strlen(a), lb = strlen(b);
    if (la != lb) return la < lb ? -1 : 1;
    return strcmp(a, b);
}

static ct_status list_children(ct_weights_file *wf, hid_t g, const char *gpath, child_list *c) {
    memset(c, 0, sizeof *c);
    hsize_t idx = 0;
    if (CT_H5(H5Literate(g, H5_INDEX_NAME, H5_ITER_NATIVE, &idx, collect_child, c)) < 0)
        return ct__h5_error(CT_EFORMAT, "%s: cannot list group %s", wf->path, gpath);
    return CT_OK;
}

static bool is_group(hid_t loc, const char *name) {
    /* A failed probe reads as "no such group"; the record it leaves is overwritten by the
     * next failure, which is the one a message reports. */
    if (CT_H5(H5Lexists(loc, name, H5P_DEFAULT)) <= 0) return false;
    H5O_info_t oi;
    if (CT_H5(H5Oget_info_by_name2(loc, name, &oi, H5O_INFO_BASIC, H5P_DEFAULT)) < 0)
        return false;
    return oi.type == H5O_TYPE_GROUP;
}

static ct_status scan_vars(ct_weights_file *wf, hid_t lg, const char *lpath, const char *child,
                           const char *cls, int index) {
    ct_status s = CT_OK;
    hid_t vars = CT_H5(H5Gopen2(lg, "vars", H5P_DEFAULT));
    if (vars < 0) return ct__h5_error(CT_EFORMAT, "%s: cannot open %s/vars", wf->path, lpath);
    /* Keras 3.x records the layer's name on the vars group; earlier releases do not. */
    char name[CT_WEIGHTS_NAME_MAX];
    if (strlen(lpath) >= sizeof name) {
        ct__h5_close(vars);
        return ct_error(CT_EFORMAT, "%s: group path %.64s... is too long", wf->path, lpath);
    }
    memcpy(name, lpath, strlen(lpath) + 1);
    htri_t has_name = CT_H5(H5Aexists(vars, "name"));
    if (has_name > 0) {
        if ((s = ct__h5_read_string(vars, "name", lpath, name, sizeof name)) != CT_OK) goto done;
    } else {
        wf->names_known = false;
    }
    ct_weights_layer *l = NULL;
    if ((s = add_layer(wf, name, &l)) != CT_OK) goto done;
    snprintf(l->keras_class, sizeof l->keras_class, "%.63s", cls);
    l->class_index = index;
    (void)child;
    child_list c;
    if ((s = list_children(wf, vars, lpath, &c)) != CT_OK) goto done;
    if (c.n > 1) qsort(c.name, (size_t)c.n, sizeof *c.name, numeric_order);
    if (c.n > MAX_ARRAYS_PER_LAYER) {
        s = ct_error(CT_EFORMAT, "%s: %s/vars has %d arrays", wf->path, lpath, c.n);
    } else if ((s = count_arrays(wf, c.n)) != CT_OK) {
        /* reported */
    } else if (c.n > 0) {
        l->arrays = calloc((size_t)c.n, sizeof *l->arrays);
        if (l->arrays == NULL) s = ct_error(CT_ENOMEM, "%s: out of memory", wf->path);
    }
    char vprefix[CT_WEIGHTS_PATH_MAX + 8];
    snprintf(vprefix, sizeof vprefix, "/%s/vars", lpath);
    for (int k = 0; k < c.n && s == CT_OK; k++) {
        ct_weights_array *a = &l->arrays[k];
        if ((s = set_array_names(wf, a, c.name[k], vprefix, c.name[k])) != CT_OK) break;
        l->n_arrays = k + 1;
        s = describe_dataset(wf, vars, c.name[k], l->name, a);
        wf->n_params += a->count;
    }
    child_list_free(&c);
done:
    ct__h5_close(vars);
    return s;
}

/* Walks a `layers` container: each child group with `vars` is a layer; a child with its own
 * `layers` (a nested model) is walked in turn. */
static ct_status scan_keras3_layers(ct_weights_file *wf, hid_t g, const char *gpath, int depth,
                                    int *budget) {
    if (depth > MAX_DEPTH)
        return ct_error(CT_EFORMAT, "%s: layers nested more than %d deep", wf->path, MAX_DEPTH);
    child_list c;
    ct_status s = list_children(wf, g, gpath, &c);
    if (s != CT_OK) return s;
    qsort(c.name, (size_t)c.n, sizeof *c.name, class_order);
    for (int i = 0; i < c.n && s == CT_OK; i++) {
        if (!is_group(g, c.name[i])) continue;
        if (--*budget < 0) {
            s = ct_error(CT_EFORMAT, "%s: more than %d groups under /layers (linked in a "
                         "cycle?)", wf->path, MAX_GROUPS);
            break;
        }
        char lpath[CT_WEIGHTS_PATH_MAX];
        int len = snprintf(lpath, sizeof lpath, "%s/%s", gpath, c.name[i]);
        if (len < 0 || (size_t)len >= sizeof lpath) {
            s = ct_error(CT_EFORMAT, "%s: a group path is too long", wf->path);
            break;
        }
        hid_t lg = CT_H5(H5Gopen2(g, c.name[i], H5P_DEFAULT));
        if (lg < 0) {
            s = ct__h5_error(CT_EFORMAT, "%s: cannot open %s", wf->path, lpath);
            break;
        }
        char cls[CT_WEIGHTS_NAME_MAX];
        int index = split_class(c.name[i], cls, sizeof cls);
        if (is_group(lg, "vars")) s = scan_vars(wf, lg, lpath, c.name[i], cls, index);
        if (s == CT_OK && is_group(lg, "layers")) {
            hid_t sub = CT_H5(H5Gopen2(lg, "layers", H5P_DEFAULT));
            if (sub < 0) {
                s = ct__h5_error(CT_EFORMAT, "%s: cannot open %s/layers", wf->path, lpath);
            } else {
                char spath[CT_WEIGHTS_PATH_MAX + 8];
                snprintf(spath, sizeof spath, "%s/layers", lpath);
                s = scan_keras3_layers(wf, sub, spath, depth + 1, budget);
                ct__h5_close(sub);
            }
        }
        ct__h5_close(lg);
    }
    child_list_free(&c);
    return s;
}

/* ---- detection ---- */

static bool has_attr(hid_t loc, const char *name) {
    return CT_H5(H5Aexists(loc, name)) > 0;
}

static bool has_layer_names(hid_t loc) {
    return has_attr(loc, "layer_names") || has_attr(loc, "layer_names0");
}

ct_status ct__weights_root(hid_t file, const char *path, hid_t *root) {
    *root = -1;
    if (has_layer_names(file)) {
        *root = CT_H5(H5Gopen2(file, "/", H5P_DEFAULT));
    } else if (is_group(file, "model_weights")) {
        hid_t g = CT_H5(H5Gopen2(file, "model_weights", H5P_DEFAULT));
        if (g >= 0 && has_layer_names(g)) *root = g;
        else ct__h5_close(g);
    }
    if (*root < 0)
        return ct_error(CT_EFORMAT, "%s: no layer_names attribute at / or /model_weights", path);
    return CT_OK;
}

ct_status ct__weights_scan(hid_t file, const char *path, ct_weights_file **out) {
    *out = NULL;
    ct_weights_file *wf = calloc(1, sizeof *wf);
    if (wf == NULL) return ct_error(CT_ENOMEM, "%s: out of memory", path);
    snprintf(wf->path, sizeof wf->path, "%s", path);
    wf->names_known = true;
    ct_status s = CT_OK;
    hid_t root = -1;
    if (has_layer_names(file) || (is_group(file, "model_weights") &&
                                  (root = CT_H5(H5Gopen2(file, "model_weights", H5P_DEFAULT))) >= 0 &&
                                  has_layer_names(root))) {
        const char *prefix = root >= 0 ? "/model_weights" : "";
        if (root < 0) root = CT_H5(H5Gopen2(file, "/", H5P_DEFAULT));
        if (root < 0) {
            s = ct__h5_error(CT_EFORMAT, "%s: cannot open the root group", path);
            goto done;
        }
        bool kv = has_attr(root, "keras_version"), be = has_attr(root, "backend");
        if (kv) (void)ct__h5_read_string(root, "keras_version", path, wf->keras_version,
                                         sizeof wf->keras_version);
        if (be) (void)ct__h5_read_string(root, "backend", path, wf->backend, sizeof wf->backend);
        ct_error_clear();
        wf->format = prefix[0] ? CT_WEIGHTS_LEGACY_MODEL : (kv || be) ? CT_WEIGHTS_LEGACY
                                                                      : CT_WEIGHTS_KERAS1;
        s = scan_legacy(wf, root, prefix);
    } else if (is_group(file, "layers")) {
        wf->format = CT_WEIGHTS_KERAS3;
        ct__h5_close(root);
        root = CT_H5(H5Gopen2(file, "layers", H5P_DEFAULT));
        if (root < 0) {
            s = ct__h5_error(CT_EFORMAT, "%s: cannot open /layers", path);
            goto done;
        }
        int budget = MAX_GROUPS;
        s = scan_keras3_layers(wf, root, "layers", 0, &budget);
    } else {
        s = ct_error(CT_EFORMAT, "%s: an HDF5 file, but not Keras weights (no layer_names "
                     "attribute, no /model_weights or /layers group)", path);
    }
    if (s == CT_OK) {
        wf->has_config = has_attr(file, "cutune_head");
        wf->is_checkpoint = is_group(file, "cutune_checkpoint");
    }
done:
    ct__h5_close(root);
    if (s != CT_OK) {
        ct_weights_file_free(wf);
        return s;
    }
    *out = wf;
    return CT_OK;
}

ct_status ct_weights_inspect(const char *path, ct_weights_file **out) {
    *out = NULL;
    ct__h5_begin();
    hid_t file;
    ct_status s = ct__h5_open_read(path, &file);
    if (s != CT_OK) return s;
    s = ct__weights_scan(file, path, out);
    ct__h5_close(file);
    return s;
}

void ct__format_dims(char *buf, size_t cap, const int64_t *dims, int ndim) {
    size_t used = (size_t)snprintf(buf, cap, "(");
    for (int d = 0; d < ndim && used < cap; d++)
        used += (size_t)snprintf(buf + used, cap - used, "%s%lld", d ? ", " : "",
                                 (long long)dims[d]);
    if (used < cap) snprintf(buf + used, cap - used, ndim == 1 ? ",)" : ")");
}
