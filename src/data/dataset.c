/* Datasets as views over a shared sample store: opening by path, splits (Keras's first-fraction
 * rule and a seeded stratified one), subsets for k-fold, and the accessors. */
#define _POSIX_C_SOURCE 200809L

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/rng.h"
#include "../core/shuffle.h"
#include "internal.h"

char *ct_data_strdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d != NULL) memcpy(d, s, n);
    return d;
}

int ct_data_strcmp_ptr(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

ct_data_store *ct_data_store_new(void) {
    ct_data_store *s = calloc(1, sizeof *s);
    if (s == NULL) return NULL;
    atomic_init(&s->refs, 1);
    s->na_fill = NAN;
    return s;
}

static void free_strings(char **v, size_t n) {
    if (v == NULL) return;
    for (size_t i = 0; i < n; i++) free(v[i]);
    free(v);
}

void ct_data_store_unref(ct_data_store *s) {
    if (s == NULL || atomic_fetch_sub(&s->refs, 1) != 1) return;
    free_strings(s->class_names, (size_t)s->n_classes);
    free_strings(s->paths, s->n);
    free_strings(s->names, s->n);
    free_strings(s->ignored, s->n_ignored);
    free(s->labels);
    free(s->aux);
    free(s->pixels);
    free(s);
}

ct_status ct_data_view(ct_data_store *s, const size_t *idx, size_t n, ct_role role,
                       ct_dataset **out) {
    *out = NULL;
    ct_dataset *ds = calloc(1, sizeof *ds);
    size_t *copy = malloc((n > 0 ? n : 1) * sizeof *copy);
    size_t *counts = calloc((size_t)(s->n_classes > 0 ? s->n_classes : 1), sizeof *counts);
    if (ds == NULL || copy == NULL || counts == NULL) {
        free(ds);
        free(copy);
        free(counts);
        return ct_error(CT_ENOMEM, "cannot allocate a dataset view of %zu samples", n);
    }
    for (size_t i = 0; i < n; i++) {
        if (idx[i] >= s->n) {
            free(ds);
            free(copy);
            free(counts);
            return ct_error(CT_EINVAL, "sample index %zu is out of range (the dataset has %zu)",
                            idx[i], s->n);
        }
        copy[i] = idx[i];
        if (s->labels[idx[i]] >= 0) counts[s->labels[idx[i]]]++;
    }
    atomic_fetch_add(&s->refs, 1);
    ds->store = s;
    ds->n = n;
    ds->idx = copy;
    ds->class_counts = counts;
    ds->role = role;
    *out = ds;
    return CT_OK;
}

void ct_dataset_free(ct_dataset *ds) {
    if (ds == NULL) return;
    ct_data_store_unref(ds->store);
    free(ds->idx);
    free(ds->class_counts);
    free(ds);
}

ct_status ct_dataset_open(ct_dataset **out, const char *path) {
    *out = NULL;
    struct stat st;
    if (stat(path, &st) != 0) return ct_error(CT_ENOTFOUND, "%s: no such file or folder", path);
    if (S_ISDIR(st.st_mode)) {
        ct_folder_options o = {0};
        return ct_dataset_open_folder(out, path, &o);
    }
    ct_iceberg_options o = {0};
    return ct_dataset_open_iceberg(out, path, &o);
}

ct_status ct_dataset_subset(const ct_dataset *ds, const size_t *idx, size_t n, ct_role role,
                            ct_dataset **out) {
    *out = NULL;
    size_t *map = malloc((n > 0 ? n : 1) * sizeof *map);
    if (map == NULL) return ct_error(CT_ENOMEM, "cannot allocate a subset of %zu samples", n);
    for (size_t i = 0; i < n; i++) {
        if (idx[i] >= ds->n) {
            free(map);
            return ct_error(CT_EINVAL, "subset index %zu is out of range (the dataset has %zu)",
                            idx[i], ds->n);
        }
        map[i] = ds->idx[idx[i]];
    }
    ct_status s = ct_data_view(ds->store, map, n, role, out);
    free(map);
    return s;
}

/* Marks the validation members of one group (the view positions pos[0..n), in order). */
static void split_group(const size_t *pos, size_t n, double split, ct_split_method method,
                        uint64_t seed, uint32_t group, uint8_t *is_val, uint32_t *scratch) {
    /* Python: int(split * n), with split * n in double. */
    const size_t n_val = (size_t)(split * (double)n);
    if (method == CT_SPLIT_KERAS) {
        for (size_t i = 0; i < n_val; i++) is_val[pos[i]] = 1;
        return;
    }
    /* The permutation of 0..n-1 addressed by (group, position); the first n_val are validation. */
    ct_shuffle_order(scratch, n, seed, ((uint32_t)CT_RNG_SHUFFLE << 16) | 1u, group);
    for (size_t i = 0; i < n_val; i++) is_val[pos[scratch[i]]] = 1;
}

ct_status ct_dataset_split(const ct_dataset *ds, double split, ct_split_method method,
                           uint64_t seed, ct_dataset **training, ct_dataset **validation) {
    *training = NULL;
    *validation = NULL;
    if (!(split > 0.0 && split < 1.0))
        return ct_error(CT_EINVAL, "validation_split must be strictly between 0 and 1, not %g",
                        split);
    if (method != CT_SPLIT_KERAS && method != CT_SPLIT_STRATIFIED)
        return ct_error(CT_EINVAL, "unknown split method %d", (int)method);
    const ct_data_store *st = ds->store;
    const size_t n = ds->n;
    uint8_t *is_val = calloc(n > 0 ? n : 1, 1);
    size_t *pos = malloc((n > 0 ? n : 1) * sizeof *pos);
    uint32_t *scratch = malloc((n > 0 ? n : 1) * sizeof *scratch);
    size_t *tr = malloc((n > 0 ? n : 1) * sizeof *tr), *va = malloc((n > 0 ? n : 1) * sizeof *va);
    ct_status s = CT_OK;
    if (is_val == NULL || pos == NULL || scratch == NULL || tr == NULL || va == NULL) {
        s = ct_error(CT_ENOMEM, "cannot allocate a split of %zu samples", n);
        goto done;
    }
    /* Folders split per class (flow_from_directory); an in-memory file splits as a whole
     * (NumpyArrayIterator) under the Keras rule, per class under the stratified one. */
    const bool per_class = st->labelled && (!st->in_memory || method == CT_SPLIT_STRATIFIED);
    const int groups = per_class ? st->n_classes : 1;
    for (int g = 0; g < groups; g++) {
        size_t m = 0;
        for (size_t i = 0; i < n; i++)
            if (!per_class || st->labels[ds->idx[i]] == g) pos[m++] = i;
        split_group(pos, m, split, method, seed, (uint32_t)g, is_val, scratch);
    }
    size_t nt = 0, nv = 0;
    for (size_t i = 0; i < n; i++) {
        if (is_val[i])
            va[nv++] = ds->idx[i];
        else
            tr[nt++] = ds->idx[i];
    }
    if ((s = ct_data_view(ds->store, tr, nt, CT_ROLE_TRAINING, training)) != CT_OK) goto done;
    if ((s = ct_data_view(ds->store, va, nv, CT_ROLE_VALIDATION, validation)) != CT_OK) {
        ct_dataset_free(*training);
        *training = NULL;
    }
done:
    free(is_val);
    free(pos);
    free(scratch);
    free(tr);
    free(va);
    return s;
}

size_t ct_dataset_count(const ct_dataset *ds) { return ds->n; }
ct_role ct_dataset_role(const ct_dataset *ds) { return ds->role; }
void ct_dataset_set_role(ct_dataset *ds, ct_role role) { ds->role = role; }
int ct_dataset_num_classes(const ct_dataset *ds) { return ds->store->n_classes; }

const char *ct_dataset_class_name(const ct_dataset *ds, int k) {
    if (k < 0 || k >= ds->store->n_classes) return NULL;
    return ds->store->class_names[k];
}

size_t ct_dataset_class_count(const ct_dataset *ds, int k) {
    if (k < 0 || k >= ds->store->n_classes) return 0;
    return ds->class_counts[k];
}

bool ct_dataset_labelled(const ct_dataset *ds) { return ds->store->labelled; }

int ct_dataset_label(const ct_dataset *ds, size_t i) {
    return i < ds->n ? ds->store->labels[ds->idx[i]] : -1;
}

const char *ct_dataset_name(const ct_dataset *ds, size_t i) {
    return i < ds->n ? ds->store->names[ds->idx[i]] : NULL;
}

const char *ct_dataset_path(const ct_dataset *ds, size_t i) {
    if (i >= ds->n || ds->store->paths == NULL) return NULL;
    return ds->store->paths[ds->idx[i]];
}

size_t ct_dataset_origin(const ct_dataset *ds, size_t i) { return i < ds->n ? ds->idx[i] : 0; }

int ct_dataset_aux_dim(const ct_dataset *ds) { return ds->store->aux_dim; }

const float *ct_dataset_aux(const ct_dataset *ds, size_t i) {
    if (i >= ds->n || ds->store->aux_dim == 0) return NULL;
    return ds->store->aux + ds->idx[i] * (size_t)ds->store->aux_dim;
}

bool ct_dataset_in_memory(const ct_dataset *ds, int *h, int *w, int *c) {
    const ct_data_store *s = ds->store;
    if (h != NULL) *h = s->in_memory ? s->h : 0;
    if (w != NULL) *w = s->in_memory ? s->w : 0;
    if (c != NULL) *c = s->in_memory ? s->c : 0;
    return s->in_memory;
}

const float *ct_dataset_pixels(const ct_dataset *ds, size_t i) {
    const ct_data_store *s = ds->store;
    if (!s->in_memory || i >= ds->n) return NULL;
    return s->pixels + ds->idx[i] * (size_t)s->h * s->w * s->c;
}

size_t ct_dataset_na_count(const ct_dataset *ds) { return ds->store->na_count; }
float ct_dataset_na_fill(const ct_dataset *ds) { return ds->store->na_fill; }
size_t ct_dataset_ignored_count(const ct_dataset *ds) { return ds->store->n_ignored; }

const char *ct_dataset_ignored(const ct_dataset *ds, size_t i) {
    return i < ds->store->n_ignored ? ds->store->ignored[i] : NULL;
}

void ct_dataset_found_message(const ct_dataset *ds, char *buf, size_t size) {
    snprintf(buf, size, "Found %zu images belonging to %d classes.", ds->n, ds->store->n_classes);
}
