/* Loading a weights file into a model: pairing the model's layers with the file's (by name, by
 * Keras's order, or by Keras 3 class counters), checking every pair (weight count, shapes,
 * types) and every value (finite), and only then writing the parameters, converting conv
 * kernels from Keras's HWIO to cutune's KRSC. A failure at any point leaves the model as it was.
 */
#ifndef _DEFAULT_SOURCE
#define _DEFAULT_SOURCE /* madvise */
#endif
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "../model/backbone.h"
#include "io.h"

void ct_weights_load_defaults(ct_weights_load_opts *o) {
    memset(o, 0, sizeof *o);
    o->match = CT_WEIGHTS_MATCH_NAME;
    o->scope = CT_WEIGHTS_SCOPE_ALL;
}

void ct__report_note(ct_weights_report *rep, const char *fmt, ...) {
    if (rep == NULL) return;
    size_t used = strlen(rep->notes);
    if (used + 2 >= sizeof rep->notes) return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(rep->notes + used, sizeof rep->notes - used - 1, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    used = strlen(rep->notes);
    rep->notes[used] = '\n';
    rep->notes[used + 1] = '\0';
}

/* One model layer and the file layer it takes its weights from. */
typedef struct pair {
    int layer;  /* model layer index */
    int file;   /* file layer index, -1: not in the file */
    int kernel; /* array indices in the file layer */
    int bias;
} pair;

typedef struct loader {
    ct_model *m;
    const ct_weights_file *wf;
    const ct_weights_load_opts *o;
    ct_weights_report *rep;
    pair *pairs;   /* (n_pairs) */
    int n_pairs;
    bool *used;    /* (wf->n_layers) file layers that were paired */
} loader;

static const char *P(const loader *ld) { return ld->wf->path; }

static bool in_scope(const loader *ld, int i) {
    const ct_layer *l = ct_model_layer(ld->m, i);
    if (l->kind != CT_LAYER_CONV && l->kind != CT_LAYER_DENSE) return false;
    return ld->o->scope == CT_WEIGHTS_SCOPE_ALL || ct__is_backbone_conv(ld->m, i);
}

/* The model's layers in scope, in Keras's model.layers order. */
static int model_targets(loader *ld, int *out) {
    int n = ct_model_num_layers(ld->m), count = 0;
    int *nodes = malloc((size_t)(n + 2) * sizeof *nodes);
    if (nodes == NULL) return -1;
    int nn = ct__keras_order(ld->m, nodes);
    for (int k = 0; k < nn; k++)
        if (nodes[k] >= 0 && in_scope(ld, nodes[k])) out[count++] = nodes[k];
    free(nodes);
    return nn < 0 ? -1 : count;
}

/* Sorted file layer indices by name, for lookups. */
typedef struct name_index {
    const ct_weights_file *wf;
    int *idx;
    int n;
} name_index;

static const ct_weights_file *sort_wf;
static int cmp_idx(const void *a, const void *b) {
    return strcmp(sort_wf->layers[*(const int *)a].name, sort_wf->layers[*(const int *)b].name);
}

static int find_by_name(const name_index *ni, const char *name) {
    int lo = 0, hi = ni->n - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        int c = strcmp(ni->wf->layers[ni->idx[mid]].name, name);
        if (c == 0) return ni->idx[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid - 1;
    }
    return -1;
}

/* Whether any layer with weights in the file is not a convolution (its first array is not a 4-D
 * kernel): a head. VGG16's convolutions are all in the backbone, whatever the names. */
static bool file_has_head(const ct_weights_file *wf) {
    for (int i = 0; i < wf->n_layers; i++)
        if (wf->layers[i].n_arrays > 0 && wf->layers[i].arrays[0].ndim != 4) return true;
    return false;
}

/* Whether the file has every convolution of the model's backbone, by name. */
static bool file_has_backbone(const ct_weights_file *wf, const ct_backbone *bb) {
    for (int c = 0; c < bb->n_layers; c++) {
        if (bb->layers[c].kind != CT_LAYER_CONV) continue;
        bool found = false;
        for (int i = 0; i < wf->n_layers && !found; i++)
            found =
                wf->layers[i].n_arrays > 0 && strcmp(wf->layers[i].name, bb->layers[c].name) == 0;
        if (!found) return false;
    }
    return true;
}

static bool file_has_layer(const ct_weights_file *wf, const char *name) {
    for (int i = 0; i < wf->n_layers; i++)
        if (wf->layers[i].n_arrays > 0 && strcmp(wf->layers[i].name, name) == 0) return true;
    return false;
}

/* "a, b, c" of the file layers with weights that were not paired (at most ~400 bytes). */
static void unpaired_list(const loader *ld, char *buf, size_t cap) {
    buf[0] = '\0';
    size_t used = 0;
    int shown = 0, total = 0;
    for (int i = 0; i < ld->wf->n_layers; i++) {
        if (ld->used[i] || ld->wf->layers[i].n_arrays == 0) continue;
        total++;
        if (shown < 8 && used + 80 < cap) {
            used += (size_t)snprintf(buf + used, cap - used, "%s%.60s", shown ? ", " : "",
                                     ld->wf->layers[i].name);
            shown++;
        }
    }
    if (total > shown && used + 24 < cap)
        snprintf(buf + used, cap - used, " and %d more", total - shown);
}

/* ---- pairing ---- */

static ct_status pair_by_name(loader *ld, const int *targets, int nt) {
    name_index ni = {ld->wf, malloc((size_t)(ld->wf->n_layers + 1) * sizeof(int)), 0};
    if (ni.idx == NULL) return ct_error(CT_ENOMEM, "%s: out of memory", P(ld));
    for (int i = 0; i < ld->wf->n_layers; i++) ni.idx[ni.n++] = i;
    sort_wf = ld->wf;
    qsort(ni.idx, (size_t)ni.n, sizeof *ni.idx, cmp_idx);
    for (int t = 0; t < nt; t++) {
        int f = find_by_name(&ni, ct_model_layer(ld->m, targets[t])->name);
        ld->pairs[t] = (pair){targets[t], f, -1, -1};
        if (f >= 0) ld->used[f] = true;
    }
    free(ni.idx);
    return CT_OK;
}

/* Keras load_weights' default: the k-th model layer with weights gets the k-th file layer whose
 * weight_names is not empty. With the backbone scope only the first 13 are paired. */
static ct_status pair_by_order(loader *ld, const int *targets, int nt) {
    int f = 0;
    for (int t = 0; t < nt; t++) {
        while (f < ld->wf->n_layers && ld->wf->layers[f].n_arrays == 0) f++;
        ld->pairs[t] = (pair){targets[t], f < ld->wf->n_layers ? f : -1, -1, -1};
        if (f < ld->wf->n_layers) ld->used[f++] = true;
    }
    return CT_OK;
}

/* Keras 3 .weights.h5 without names: Keras names the groups by class and counter in
 * model.layers order, so the k-th Conv2D is conv2d_k and the k-th Dense is dense_k. */
static ct_status pair_by_class(loader *ld, const int *targets, int nt) {
    int seen_conv = 0, seen_dense = 0;
    for (int t = 0; t < nt; t++) {
        const ct_layer *l = ct_model_layer(ld->m, targets[t]);
        const char *cls = l->kind == CT_LAYER_CONV ? "conv2d" : "dense";
        int k = l->kind == CT_LAYER_CONV ? seen_conv++ : seen_dense++;
        int found = -1, rank = 0;
        for (int i = 0; i < ld->wf->n_layers && found < 0; i++) {
            if (strcmp(ld->wf->layers[i].keras_class, cls) != 0) continue;
            if (rank++ == k) found = i;
        }
        ld->pairs[t] = (pair){targets[t], found, -1, -1};
        if (found >= 0) ld->used[found] = true;
    }
    return CT_OK;
}

/* ---- checks ---- */

static ct_status check_missing(loader *ld) {
    char other[512];
    unpaired_list(ld, other, sizeof other);
    for (int t = 0; t < ld->n_pairs; t++) {
        const pair *p = &ld->pairs[t];
        const ct_layer *l = ct_model_layer(ld->m, p->layer);
        if (p->file >= 0 && ld->wf->layers[p->file].n_arrays == 0)
            return ct_error(CT_EFORMAT, "%s: layer %s is in the file but has no weights there "
                            "(its weight_names is empty)", P(ld), l->name);
        if (p->file >= 0 || ld->o->allow_missing) continue;
        if (ld->o->match == CT_WEIGHTS_MATCH_ORDER)
            return ct_error(CT_ENOTFOUND, "%s: layer count mismatch: the model has %d layers with "
                            "weights to load, the file has fewer (the model's %s has no "
                            "counterpart)", P(ld), ld->n_pairs, l->name);
        const ct_backbone *bb = ct_model_backbone(ld->m);
        if (!ct__is_backbone_conv(ld->m, p->layer) && file_has_backbone(ld->wf, bb) &&
            !file_has_head(ld->wf))
            return ct_error(CT_ENOTFOUND, "%s: the model's head layer '%s' is not in the file, "
                            "which holds the %s backbone only: load only the backbone (scope "
                            "'backbone', as `cutune train --weights FILE` does for such a file) "
                            "so the head keeps its initialisation", P(ld), l->name,
                            bb->keras_name);
        return ct_error(CT_ENOTFOUND, "%s: the model's %slayer '%s' is not in the file%s%s%s",
                        P(ld), ct__is_backbone_conv(ld->m, p->layer) ? "" : "head ", l->name,
                        other[0] ? " (the file's layers with weights that the model lacks: "
                                 : "",
                        other, other[0] ? "; to pair layers by position as Keras load_weights "
                                          "does, match by order; to keep the head's "
                                          "initialisation, load only the backbone)" : "");
    }
    return CT_OK;
}

static ct_status check_extra(loader *ld) {
    for (int i = 0; i < ld->wf->n_layers; i++) {
        const ct_weights_layer *fl = &ld->wf->layers[i];
        if (ld->used[i] || fl->n_arrays == 0) continue;
        /* Another backbone's convolution: the layers that share names would load the wrong
         * network's weights, whatever the scope. */
        const ct_backbone *mine = ct_model_backbone(ld->m);
        const ct_backbone *theirs = ct_backbone_with_layer(fl->name, mine);
        if (theirs != NULL && ld->o->match == CT_WEIGHTS_MATCH_NAME)
            return ct_error(CT_EFORMAT, "%s: the file's layer '%s' belongs to %s, and this model "
                            "is %s: build the model with --backbone %s", P(ld), fl->name,
                            theirs->keras_name, mine->keras_name, theirs->name);
        if (ld->o->scope == CT_WEIGHTS_SCOPE_BACKBONE || ld->o->allow_extra) continue;
        bool full = file_has_layer(ld->wf, "fc1") && file_has_layer(ld->wf, "fc2") &&
                    file_has_layer(ld->wf, "predictions");
        if (ld->o->match == CT_WEIGHTS_MATCH_ORDER)
            return ct_error(CT_EFORMAT, "%s: layer count mismatch: the file has more layers with "
                            "weights than the model's %d (first extra: '%s')", P(ld), ld->n_pairs,
                            fl->name);
        if (full && (strcmp(fl->name, "fc1") == 0 || strcmp(fl->name, "fc2") == 0 ||
                     strcmp(fl->name, "predictions") == 0))
            return ct_error(CT_EFORMAT, "%s: the file's layer '%s' is not in the model: the full "
                            "ImageNet classifier (fc1, fc2, predictions) loads only into a 224x224 "
                            "model with head 'flatten,dense:4096:relu@fc1,dense:4096:relu@fc2,"
                            "dense:1000:softmax@predictions'; to take just the backbone, load with "
                            "scope 'backbone'", P(ld), fl->name);
        return ct_error(CT_EFORMAT, "%s: the file's layer '%s' (%d weights) is not in the model; "
                        "skip extra layers (allow extra) or load only the backbone (scope "
                        "'backbone')", P(ld), fl->name, fl->n_arrays);
    }
    return CT_OK;
}

/* The input size a flattened 7x7-style dense kernel with `rows` inputs was made for. */
static void flatten_hint(const loader *ld, const ct_layer *l, int64_t rows, char *buf,
                         size_t cap) {
    buf[0] = '\0';
    if (l->src < 0) return;
    const ct_layer *src = ct_model_layer(ld->m, l->src);
    if (src->kind != CT_LAYER_FLATTEN || rows % 512 != 0) return;
    int64_t cells = rows / 512, side = (int64_t)llround(sqrt((double)cells));
    const ct_model_config *c = ct_model_get_config(ld->m);
    if (side * side == cells)
        snprintf(buf, cap, " (the file's layer follows a Flatten of %lldx%lldx512, which a "
                 "%lldx%lld input gives; this model's %dx%d input gives %dx%dx512)",
                 (long long)side, (long long)side, (long long)(side * 32), (long long)(side * 32),
                 c->input_h, c->input_w, src->in_h, src->in_w);
}

static ct_status check_array(loader *ld, const ct_layer *l, const ct_weights_array *a,
                             const char *what, const int64_t *want, int want_nd) {
    bool same = a->ndim == want_nd;
    for (int d = 0; same && d < want_nd; d++) same = a->dims[d] == want[d];
    if (!same) {
        char e[96], f[96], hint[256] = "";
        ct__format_dims(e, sizeof e, want, want_nd);
        ct__format_dims(f, sizeof f, a->dims, a->ndim);
        if (l->kind == CT_LAYER_DENSE && a->ndim == 2 && want_nd == 2 && a->dims[1] == want[1])
            flatten_hint(ld, l, a->dims[0], hint, sizeof hint);
        return ct_error(CT_ESHAPE, "%s: layer %s: %s %s: shape mismatch: expected %s found %s%s",
                        P(ld), l->name, what, a->name, e, f, hint);
    }
    if (a->dtype == CT_WDTYPE_INT || a->dtype == CT_WDTYPE_OTHER)
        return ct_error(CT_EFORMAT, "%s: layer %s: %s %s is %s: weights must be floating point "
                        "(float32; float64 and float16 are converted)", P(ld), l->name, what,
                        a->name, a->dtype_name);
    return CT_OK;
}

static ct_status check_pairs(loader *ld) {
    for (int t = 0; t < ld->n_pairs; t++) {
        pair *p = &ld->pairs[t];
        if (p->file < 0) continue;
        const ct_layer *l = ct_model_layer(ld->m, p->layer);
        const ct_weights_layer *fl = &ld->wf->layers[p->file];
        const char *via = strcmp(fl->name, l->name) == 0 ? "" : " (paired with the file's ";
        if (fl->n_arrays != 2)
            return ct_error(CT_EFORMAT, "%s: layer %s%s%s%s has %d weights in the file; cutune's "
                            "%s has 2 (kernel, bias)", P(ld), l->name, via, via[0] ? fl->name : "",
                            via[0] ? ")" : "", fl->n_arrays,
                            l->kind == CT_LAYER_CONV ? "Conv2D" : "Dense");
        /* Kernel first, as Keras writes; a file listing the bias first is read by rank. */
        p->kernel = 0;
        p->bias = 1;
        if (fl->arrays[0].ndim == 1 && fl->arrays[1].ndim > 1) {
            p->kernel = 1;
            p->bias = 0;
        }
        int64_t kw[4], bw[1] = {l->units};
        int knd;
        if (l->kind == CT_LAYER_CONV) {
            kw[0] = 3;
            kw[1] = 3;
            kw[2] = l->in_c;
            kw[3] = l->units;
            knd = 4;
        } else {
            kw[0] = (int64_t)l->kernel.shape[0];
            kw[1] = l->units;
            knd = 2;
        }
        ct_status s = check_array(ld, l, &fl->arrays[p->kernel], "kernel", kw, knd);
        if (s == CT_OK) s = check_array(ld, l, &fl->arrays[p->bias], "bias", bw, 1);
        if (s != CT_OK) return s;
    }
    return CT_OK;
}

/* ---- reading ---- */

/* (h, w, c, k) of a flat HWIO index, for messages. */
static void index_text(const ct_weights_array *a, size_t idx, char *buf, size_t cap) {
    int64_t pos[CT_WEIGHTS_MAX_DIMS];
    size_t rest = idx;
    for (int d = a->ndim - 1; d >= 0; d--) {
        pos[d] = a->dims[d] > 0 ? (int64_t)(rest % (size_t)a->dims[d]) : 0;
        rest = a->dims[d] > 0 ? rest / (size_t)a->dims[d] : 0;
    }
    ct__format_dims(buf, cap, pos, a->ndim);
}

static ct_status read_array(loader *ld, hid_t file, const ct_layer *l, const ct_weights_array *a,
                            float *dst) {
    hid_t ds = CT_H5(H5Dopen2(file, a->path, H5P_DEFAULT));
    if (ds < 0) return ct__h5_error(CT_EFORMAT, "%s: layer %s: cannot open %s", P(ld), l->name,
                                    a->path);
    /* HDF5 converts float64 and float16 to float32 here (overflow gives Inf, caught below). */
    herr_t r = (herr_t)CT_H5(H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, dst));
    ct__h5_close(ds);
    if (r < 0) return ct__h5_error(CT_EFORMAT, "%s: layer %s: cannot read %s (truncated or "
                                   "damaged file?)", P(ld), l->name, a->path);
    size_t bad = 0, first = 0;
    const size_t count = a->count;
#pragma omp parallel for reduction(+ : bad) schedule(static)
    for (size_t i = 0; i < count; i++) bad += !isfinite(dst[i]);
    if (bad > 0) {
        while (isfinite(dst[first])) first++;
        char pos[96];
        index_text(a, first, pos, sizeof pos);
        return ct_error(CT_ENUMERIC, "%s: layer %s: %s holds %zu non-finite value%s (the first, "
                        "%s, at index %s)", P(ld), l->name, a->name, bad, bad == 1 ? "" : "s",
                        isnan(dst[first]) ? "NaN" : dst[first] > 0 ? "+Inf" : "-Inf", pos);
    }
    if (a->dtype != CT_WDTYPE_F32)
        ct__report_note(ld->rep, "%s %s was %s and is converted to float32.", l->name, a->name,
                        a->dtype_name);
    return CT_OK;
}

/* HWIO (3, 3, C, K) -> KRSC (K, 3, 3, C), in 16x16 tiles written a row at a time (each inner
 * loop writes contiguous memory, which measured twice as fast as reading contiguously), the
 * tiles shared among the OpenMP threads. */
static void hwio_to_krsc(float *dst, const float *src, int c, int k) {
#pragma omp parallel for collapse(2) schedule(static)
    for (int hw = 0; hw < 9; hw++)
        for (int k0 = 0; k0 < k; k0 += 16) {
            const float *s = src + (size_t)hw * c * k;
            const int k1 = k0 + 16 < k ? k0 + 16 : k;
            for (int c0 = 0; c0 < c; c0 += 16) {
                const int c1 = c0 + 16 < c ? c0 + 16 : c;
                for (int ki = k0; ki < k1; ki++) {
                    float *d = dst + ((size_t)ki * 9 + hw) * c;
                    for (int ci = c0; ci < c1; ci++) d[ci] = s[(size_t)ci * k + ki];
                }
            }
        }
}

/* Staging memory. A fresh 59 MB buffer costs more in page faults (4 KB at a time, each
 * zeroed) than reading the file does, so it is asked for in transparent huge pages where the
 * kernel offers them (Linux "madvise" mode); elsewhere it is a plain allocation. */
static void *stage_alloc(size_t bytes) {
    const size_t huge = (size_t)2 << 20;
    size_t rounded = (bytes + huge - 1) / huge * huge;
    void *p = aligned_alloc(huge, rounded ? rounded : huge);
#ifdef MADV_HUGEPAGE
    if (p != NULL) (void)madvise(p, rounded, MADV_HUGEPAGE);
#endif
    return p;
}

static ct_status read_and_commit(loader *ld, hid_t file) {
    size_t total = 0, largest_conv = 0;
    for (int t = 0; t < ld->n_pairs; t++) {
        const pair *p = &ld->pairs[t];
        if (p->file < 0) continue;
        const ct_layer *l = ct_model_layer(ld->m, p->layer);
        total += l->kernel.size + l->bias.size;
        if (l->kind == CT_LAYER_CONV && l->kernel.size > largest_conv)
            largest_conv = l->kernel.size;
    }
    /* The CPU backend's parameters are host memory: kernels are transposed straight into
     * them. Other backends get a host copy in their layout first. */
    const bool host = strcmp(ct_model_backend(ld->m)->ops->name, "cpu") == 0;
    float *stage = stage_alloc(total * sizeof *stage);
    float *tmp = host ? NULL : malloc((largest_conv ? largest_conv : 1) * sizeof *tmp);
    ct_status s = CT_OK;
    if (stage == NULL || (!host && tmp == NULL)) {
        s = ct_error(CT_ENOMEM, "%s: cannot allocate %zu MB to stage the weights", P(ld),
                     total * sizeof(float) >> 20);
        goto done;
    }
    /* Everything is read and checked before the model changes. */
    size_t off = 0;
    for (int t = 0; t < ld->n_pairs && s == CT_OK; t++) {
        const pair *p = &ld->pairs[t];
        if (p->file < 0) continue;
        const ct_layer *l = ct_model_layer(ld->m, p->layer);
        const ct_weights_layer *fl = &ld->wf->layers[p->file];
        s = read_array(ld, file, l, &fl->arrays[p->kernel], stage + off);
        if (s == CT_OK)
            s = read_array(ld, file, l, &fl->arrays[p->bias], stage + off + l->kernel.size);
        off += l->kernel.size + l->bias.size;
    }
    off = 0;
    for (int t = 0; t < ld->n_pairs && s == CT_OK; t++) {
        const pair *p = &ld->pairs[t];
        if (p->file < 0) continue;
        ct_layer *l = ct_model_layer(ld->m, p->layer);
        const float *k = stage + off;
        if (l->kind == CT_LAYER_CONV && host) {
            hwio_to_krsc(l->kernel.data, k, l->in_c, l->units);
        } else {
            if (l->kind == CT_LAYER_CONV) {
                hwio_to_krsc(tmp, k, l->in_c, l->units);
                k = tmp;
            }
            s = ct_model_tensor_set(ld->m, &l->kernel, k);
        }
        if (s == CT_OK) s = ct_model_tensor_set(ld->m, &l->bias, stage + off + l->kernel.size);
        if (s != CT_OK)
            s = ct__wrap(s, "%s: layer %s: copying the weights to the device failed", P(ld),
                         l->name);
        off += l->kernel.size + l->bias.size;
    }
done:
    free(tmp);
    free(stage);
    return s;
}

/* ---- nested models ---- */

/* The sub-layer name of a nested weight name: "dense/kernel:0", "sequential/dense/kernel" ->
 * "dense" with what = "kernel". False when the name has no layer component. */
static bool nested_part(const char *wname, char *layer, size_t cap, char *what, size_t wcap) {
    char buf[CT_WEIGHTS_NAME_MAX];
    snprintf(buf, sizeof buf, "%s", wname);
    char *colon = strrchr(buf, ':');
    if (colon != NULL) *colon = '\0';
    char *last = strrchr(buf, '/');
    if (last == NULL || last == buf) return false;
    *last = '\0';
    snprintf(what, wcap, "%s", last + 1);
    char *prev = strrchr(buf, '/');
    snprintf(layer, cap, "%s", prev != NULL ? prev + 1 : buf);
    return layer[0] != '\0';
}

/* A Keras model used as a layer (Model(vgg.input, top(vgg.output)) with a Sequential top)
 * stores all its layers' weights in one group: sequential -> dense/kernel:0, dense/bias:0,
 * dense_1/kernel:0, ... cutune's models are flat, so such a layer is read as its sub-layers,
 * each a (kernel, bias) pair. Returns NULL (no copy needed) when nothing is nested. */
static ct_status expand_nested(const ct_weights_file *wf, ct_weights_file **out,
                               ct_weights_report *rep) {
    *out = NULL;
    int extra = 0;
    for (int i = 0; i < wf->n_layers; i++) {
        const ct_weights_layer *l = &wf->layers[i];
        if (l->n_arrays < 4 || l->n_arrays % 2 != 0) continue;
        bool ok = true;
        char a[CT_WEIGHTS_NAME_MAX], b[CT_WEIGHTS_NAME_MAX], wa[32], wb[32];
        for (int k = 0; k < l->n_arrays && ok; k += 2)
            ok = nested_part(l->arrays[k].name, a, sizeof a, wa, sizeof wa) &&
                 nested_part(l->arrays[k + 1].name, b, sizeof b, wb, sizeof wb) &&
                 strcmp(a, b) == 0;
        if (ok) extra += l->n_arrays / 2 - 1;
    }
    if (extra == 0) return CT_OK;
    ct_weights_file *x = malloc(sizeof *x);
    if (x == NULL) return ct_error(CT_ENOMEM, "%s: out of memory", wf->path);
    *x = *wf;
    x->n_layers = 0;
    x->layers = calloc((size_t)(wf->n_layers + extra), sizeof *x->layers);
    if (x->layers == NULL) {
        free(x);
        return ct_error(CT_ENOMEM, "%s: out of memory", wf->path);
    }
    ct_status s = CT_OK;
    for (int i = 0; i < wf->n_layers && s == CT_OK; i++) {
        const ct_weights_layer *l = &wf->layers[i];
        char a[CT_WEIGHTS_NAME_MAX], b[CT_WEIGHTS_NAME_MAX], wa[32], wb[32];
        bool ok = l->n_arrays >= 4 && l->n_arrays % 2 == 0;
        for (int k = 0; k < l->n_arrays && ok; k += 2)
            ok = nested_part(l->arrays[k].name, a, sizeof a, wa, sizeof wa) &&
                 nested_part(l->arrays[k + 1].name, b, sizeof b, wb, sizeof wb) &&
                 strcmp(a, b) == 0;
        int parts = ok ? l->n_arrays / 2 : 1;
        for (int p = 0; p < parts && s == CT_OK; p++) {
            ct_weights_layer *d = &x->layers[x->n_layers++];
            *d = *l;
            d->arrays = malloc((size_t)(l->n_arrays ? l->n_arrays : 1) * sizeof *d->arrays);
            if (d->arrays == NULL) {
                s = ct_error(CT_ENOMEM, "%s: out of memory", wf->path);
                break;
            }
            if (!ok) {
                if (l->n_arrays > 0)
                    memcpy(d->arrays, l->arrays, (size_t)l->n_arrays * sizeof *d->arrays);
                continue;
            }
            nested_part(l->arrays[2 * p].name, a, sizeof a, wa, sizeof wa);
            snprintf(d->name, sizeof d->name, "%s", a);
            d->n_arrays = 2;
            d->arrays[0] = l->arrays[2 * p];
            d->arrays[1] = l->arrays[2 * p + 1];
        }
        if (ok && s == CT_OK)
            ct__report_note(rep, "The file's layer '%s' is a nested model; its %d layers were "
                            "read as layers of their own.", l->name, parts);
    }
    if (s != CT_OK) {
        ct_weights_file_free(x);
        return s;
    }
    *out = x;
    return CT_OK;
}

/* ---- the whole load ---- */

static void report_outcome(loader *ld) {
    ct_weights_report *rep = ld->rep;
    if (rep == NULL) return;
    char kept[512] = "";
    size_t used = 0;
    int n = ct_model_num_layers(ld->m);
    for (int i = 0; i < n; i++) {
        const ct_layer *l = ct_model_layer(ld->m, i);
        if (l->kind != CT_LAYER_CONV && l->kind != CT_LAYER_DENSE) continue;
        bool loaded = false;
        for (int t = 0; t < ld->n_pairs && !loaded; t++)
            loaded = ld->pairs[t].layer == i && ld->pairs[t].file >= 0;
        if (loaded) {
            rep->n_loaded++;
            rep->n_params_loaded += l->kernel.size + l->bias.size;
        } else {
            rep->n_kept++;
            if (used + CT_NAME_MAX + 3 < sizeof kept)
                used += (size_t)snprintf(kept + used, sizeof kept - used, "%s%s",
                                         used ? ", " : "", l->name);
        }
    }
    if (rep->n_kept > 0)
        ct__report_note(rep, "%s %s keep%s %s initialisation (%s).", rep->n_kept == 1 ? "Layer"
                                                                                     : "Layers",
                        kept, rep->n_kept == 1 ? "s" : "", rep->n_kept == 1 ? "its" : "their",
                        ld->o->scope == CT_WEIGHTS_SCOPE_BACKBONE ? "only the backbone was loaded"
                                                                  : "not in the file");
    char skipped[512];
    unpaired_list(ld, skipped, sizeof skipped);
    for (int i = 0; i < ld->wf->n_layers; i++)
        if (!ld->used[i] && ld->wf->layers[i].n_arrays > 0) rep->n_skipped++;
    if (rep->n_skipped > 0)
        ct__report_note(rep, "Skipped the file's %s (%s).", skipped,
                        ld->o->scope == CT_WEIGHTS_SCOPE_BACKBONE ? "only the backbone was loaded"
                                                                  : "not in the model");
}

ct_status ct__weights_load_open(ct_model *m, hid_t file, const ct_weights_file *wf,
                                const ct_weights_load_opts *opts, ct_weights_report *rep) {
    ct_weights_load_opts defaults;
    if (opts == NULL) {
        ct_weights_load_defaults(&defaults);
        opts = &defaults;
    }
    if (rep != NULL) {
        memset(rep, 0, sizeof *rep);
        rep->format = wf->format;
    }
    ct_weights_file *expanded = NULL;
    ct_status s = expand_nested(wf, &expanded, rep);
    if (s != CT_OK) return s;
    if (expanded != NULL) wf = expanded;
    ct_weights_load_opts resolved;
    if (opts->scope == CT_WEIGHTS_SCOPE_AUTO) {
        resolved = *opts;
        resolved.scope = file_has_head(wf) ? CT_WEIGHTS_SCOPE_ALL : CT_WEIGHTS_SCOPE_BACKBONE;
        opts = &resolved;
    }
    int n = ct_model_num_layers(m);
    loader ld = {m, wf, opts, rep, calloc((size_t)n, sizeof(pair)), 0,
                 calloc((size_t)wf->n_layers + 1, sizeof(bool))};
    int *targets = malloc((size_t)n * sizeof *targets);
    if (ld.pairs == NULL || ld.used == NULL || targets == NULL) {
        s = ct_error(CT_ENOMEM, "%s: out of memory", wf->path);
        goto done;
    }
    int nt = model_targets(&ld, targets);
    if (nt < 0) {
        s = ct_error(CT_ENOMEM, "%s: out of memory", wf->path);
        goto done;
    }
    ld.n_pairs = nt;
    if (wf->format == CT_WEIGHTS_KERAS3 &&
        (opts->match == CT_WEIGHTS_MATCH_ORDER || !wf->names_known)) {
        if (opts->match == CT_WEIGHTS_MATCH_NAME)
            ct__report_note(rep, "The file records no layer names (Keras 3 before names were "
                            "saved): layers were paired by class order (conv2d, conv2d_1, ...; "
                            "dense, dense_1, ...), as Keras does.");
        s = pair_by_class(&ld, targets, nt);
    } else if (opts->match == CT_WEIGHTS_MATCH_ORDER) {
        s = pair_by_order(&ld, targets, nt);
    } else {
        s = pair_by_name(&ld, targets, nt);
    }
    if (s == CT_OK) s = check_missing(&ld);
    if (s == CT_OK) s = check_extra(&ld);
    if (s == CT_OK) s = check_pairs(&ld);
    if (s == CT_OK && !opts->dry_run) s = read_and_commit(&ld, file);
    if (s == CT_OK) report_outcome(&ld);
done:
    free(targets);
    free(ld.pairs);
    free(ld.used);
    ct_weights_file_free(expanded);
    return s;
}

ct_status ct_weights_load(ct_model *m, const char *path, const ct_weights_load_opts *opts,
                          ct_weights_report *rep) {
    ct__h5_begin();
    hid_t file;
    ct_status s = ct__h5_open_read(path, &file);
    if (s != CT_OK) return s;
    ct_weights_file *wf = NULL;
    s = ct__weights_scan(file, path, &wf);
    if (s == CT_OK) s = ct__weights_load_open(m, file, wf, opts, rep);
    ct_weights_file_free(wf);
    ct__h5_close(file);
    return s;
}
