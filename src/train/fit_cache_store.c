/* The frozen-prefix cache kept on disk between the calls of one run (a run and its --resume, a
 * run and the next with other head settings): the pass over the data that fills it is the
 * longest wait before the first epoch, and its result only depends on what is hashed here.
 *
 * The key is a 64-bit FNV-1a hash of everything the cached values depend on: the backend and
 * its precision (not the loader's threads, which change no value); the backbone, the input size
 * and the layer cached; the frozen layers' weights (read back from the backend); the decoding
 * and preprocessing settings; and each sample's file (path, size, modification time) or
 * in-memory pixels, auxiliary input and label, in order. A file FEATURE_DIR/<key>.bin holds
 * the values after a header that repeats the sizes; one that does not match is ignored. Files are written through a temporary name, and
 * only the newest CACHE_FILES_KEPT stay. The folder is CUTUNE_CACHE_DIR, else
 * $XDG_CACHE_HOME/cutune/features, else ~/.cache/cutune/features; CUTUNE_CACHE_DIR=off keeps
 * nothing on disk. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../core/atomic.h"
#include "../core/hash.h"
#include "../core/knobs.h"
#include "../model/layer.h"
#include "fit.h"

#define CACHE_MAGIC "CTFCACH1"
#define CACHE_FILES_KEPT 4

/* ---- the key ---- */

static void fnv(uint64_t *h, const void *data, size_t n) { *h = ct_fnv1a(*h, data, n); }

static void fnv_str(uint64_t *h, const char *s) {
    if (s == NULL) s = "";
    fnv(h, s, strlen(s) + 1);
}

static void fnv_u64(uint64_t *h, uint64_t v) { fnv(h, &v, sizeof v); }

static void hash_samples(const ct_dataset *ds, uint64_t *h) {
    const size_t n = ds != NULL ? ct_dataset_count(ds) : 0;
    const int aux = ds != NULL ? ct_dataset_aux_dim(ds) : 0;
    int ih = 0, iw = 0, ic = 0;
    const bool in_memory = ds != NULL && ct_dataset_in_memory(ds, &ih, &iw, &ic);
    fnv_u64(h, n);
    for (size_t i = 0; i < n; i++) {
        const char *path = ct_dataset_path(ds, i);
        struct stat st;
        if (path != NULL && stat(path, &st) == 0) {
            fnv_str(h, path);
            fnv_u64(h, (uint64_t)st.st_size);
            fnv_u64(h, (uint64_t)st.st_mtim.tv_sec * 1000000000ull +
                           (uint64_t)st.st_mtim.tv_nsec);
        } else if (in_memory) {
            fnv(h, ct_dataset_pixels(ds, i), (size_t)ih * iw * ic * sizeof(float));
        }
        if (aux > 0) fnv(h, ct_dataset_aux(ds, i), (size_t)aux * sizeof(float));
        fnv_u64(h, (uint64_t)(int64_t)ct_dataset_label(ds, i));
    }
}

/* The frozen layers' weights, layer by layer. */
static ct_status hash_weights(fit_run *r, uint64_t *h) {
    ct_status s = CT_OK;
    for (int i = 0; s == CT_OK && i <= r->cache.layer; i++) {
        const ct_layer *l = ct_model_layer(r->m, i);
        const ct_tensor *t[2] = {&l->kernel, &l->bias};
        for (int k = 0; s == CT_OK && k < 2; k++) {
            if (t[k]->data == NULL || t[k]->size == 0) continue;
            float *host = malloc(t[k]->size * sizeof *host);
            if (host == NULL) return ct_error(CT_ENOMEM, "cannot hash the frozen weights");
            s = ct_model_tensor_get(r->m, t[k], host);
            if (s == CT_OK) fnv(h, host, t[k]->size * sizeof *host);
            free(host);
        }
    }
    return s;
}

static ct_status cache_key(fit_run *r, uint64_t *key) {
    const ct_train_config *c = r->c;
    const ct_loader_config *lc = &r->loader_cfg;
    uint64_t h = CT_FNV1A_START;
    char pre[512];
    ct_standardize_format(&lc->standardize, pre, sizeof pre);
    fnv_str(&h, CACHE_MAGIC);
    fnv_str(&h, r->be.ops->name);
    fnv_str(&h, ct_backend_precision(&r->be));
    fnv_str(&h, c->backbone);
    fnv_str(&h, ct_model_layer(r->m, r->cache.layer)->name);
    const uint64_t dims[] = {(uint64_t)r->input, r->cache.dim, (uint64_t)r->n_out,
                             (uint64_t)lc->image.target_h, (uint64_t)lc->image.target_w,
                             (uint64_t)lc->image.color_mode, (uint64_t)lc->image.interpolation,
                             (uint64_t)lc->image.keep_aspect_ratio, (uint64_t)lc->image.png16};
    fnv(&h, dims, sizeof dims);
    fnv_str(&h, pre);
    hash_samples(r->train, &h);
    hash_samples(r->val, &h);
    ct_status s = hash_weights(r, &h);
    *key = h;
    return s;
}

/* ---- the files ---- */

typedef struct cache_header {
    char magic[8];
    uint64_t key, n_train, n_val, dim, n_out;
} cache_header;

/* FEATURE_DIR/<key>.bin into path; false when the cache is kept in memory only. */
static bool cache_path(uint64_t key, char *dir, size_t dcap, char *path, size_t pcap) {
    if (!ct_knob_feature_cache_dir(dir, dcap)) return false;
    snprintf(path, pcap, "%s/%016llx.bin", dir, (unsigned long long)key);
    return true;
}

static cache_header header_of(const fit_run *r, uint64_t key) {
    const fit_cache *fc = &r->cache;
    cache_header hd = {.key = key, .n_train = fc->n_train, .n_val = fc->n_val, .dim = fc->dim,
                       .n_out = (uint64_t)r->n_out};
    memcpy(hd.magic, CACHE_MAGIC, sizeof hd.magic);
    return hd;
}

/* The arrays of the cache, in file order, with their sizes in bytes. */
static int arrays(fit_cache *fc, size_t n_out, float **p, size_t *bytes) {
    p[0] = fc->train, bytes[0] = fc->n_train * fc->dim * sizeof(float);
    p[1] = fc->y_train, bytes[1] = fc->n_train * n_out * sizeof(float);
    p[2] = fc->val, bytes[2] = fc->n_val * fc->dim * sizeof(float);
    p[3] = fc->y_val, bytes[3] = fc->n_val * n_out * sizeof(float);
    return 4;
}

bool fit_cache_load(fit_run *r, uint64_t *key, char *where, size_t cap) {
    char dir[4096], path[4200];
    if (cache_key(r, key) != CT_OK || !cache_path(*key, dir, sizeof dir, path, sizeof path))
        return false;
    FILE *f = fopen(path, "rb");
    if (f == NULL) return false;
    const cache_header want = header_of(r, *key);
    cache_header got;
    bool ok = fread(&got, sizeof got, 1, f) == 1 && memcmp(&got, &want, sizeof got) == 0;
    float *p[4];
    size_t bytes[4];
    const int n = arrays(&r->cache, (size_t)r->n_out, p, bytes);
    for (int i = 0; ok && i < n; i++)
        ok = bytes[i] == 0 || fread(p[i], 1, bytes[i], f) == bytes[i];
    ok = ok && fgetc(f) == EOF;
    fclose(f);
    if (ok) snprintf(where, cap, "%s", path);
    return ok;
}

/* Only the newest CACHE_FILES_KEPT files of the folder stay. */
static void prune(const char *dir) {
    DIR *d = opendir(dir);
    if (d == NULL) return;
    char names[64][32];
    time_t when[64];
    int n = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL && n < 64;) {
        char path[4400];
        struct stat st;
        if (strlen(e->d_name) != 20 || strcmp(e->d_name + 16, ".bin") != 0) continue;
        snprintf(path, sizeof path, "%s/%.20s", dir, e->d_name);
        if (stat(path, &st) != 0) continue;
        snprintf(names[n], sizeof names[n], "%s", e->d_name);
        when[n++] = st.st_mtime;
    }
    closedir(d);
    for (int kept = n; kept > CACHE_FILES_KEPT; kept--) {
        int oldest = -1;
        for (int i = 0; i < n; i++)
            if (names[i][0] != '\0' && (oldest < 0 || when[i] < when[oldest])) oldest = i;
        char path[4400];
        snprintf(path, sizeof path, "%s/%.31s", dir, names[oldest]);
        remove(path);
        names[oldest][0] = '\0';
    }
}

void fit_cache_store(fit_run *r, uint64_t key) {
    char dir[4096], path[4200];
    if (!cache_path(key, dir, sizeof dir, path, sizeof path)) return;
    ct_made_dirs made = {0};
    if (ct_make_dirs(dir, &made) != CT_OK) return; /* a cache: never an error */
    ct_atomic_file a;
    if (ct_atomic_open(&a, path, "wb") != CT_OK) return;
    const cache_header hd = header_of(r, key);
    bool ok = fwrite(&hd, sizeof hd, 1, a.f) == 1;
    float *p[4];
    size_t bytes[4];
    const int n = arrays(&r->cache, (size_t)r->n_out, p, bytes);
    for (int i = 0; ok && i < n; i++)
        ok = bytes[i] == 0 || fwrite(p[i], 1, bytes[i], a.f) == bytes[i];
    if (!ok) ct_atomic_abort(&a);
    else if (ct_atomic_commit(&a) == CT_OK) prune(dir);
}
