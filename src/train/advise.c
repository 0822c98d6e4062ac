/* `cutune advise`: measure, then decide. This file opens the data, runs the frozen backbone
 * over a stratified sample of it and pools the features of three depths (the backbone's probe
 * layers: block3_pool, block4_pool, block5_pool for VGG16 and VGG19); probe.c scores them with a
 * cross-validated linear probe and advise_rules.c turns counts and scores into the advice.
 *
 * The seed table crosses two axes, dataset size and similarity to ImageNet. Size is counted.
 * Similarity is measured: when the top ImageNet features already separate the classes nearly as
 * well as anything linear can, and no worse than the more generic lower blocks, the domain is
 * close to ImageNet's. Without pretrained weights the probe would only measure random features,
 * so it is not run and the advice rests on the size axis. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "../core/shuffle.h"
#include "../model/backbone.h"
#include "model/model.h"
#include "core/rng.h"
#include "train/run.h"
#include "io/weights.h"

/* Philox purpose word of the probe's sample (CT_RNG_SHUFFLE, low bits distinct from the
 * loader's, the splits' and the k-fold deal's). */
#define PURPOSE_SAMPLE (((uint32_t)CT_RNG_SHUFFLE << 16) | 0x0f1u)

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static bool is_dir(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

/* The probe's images: all, or a stratified draw of `cap` (each class keeps its share, and at
 * least `min_per_class` when it has them), in dataset order. Returns the count. */
static size_t probe_sample(const ct_dataset *ds, size_t cap, size_t min_per_class, uint64_t seed,
                           size_t *out) {
    const size_t n = ct_dataset_count(ds);
    const int k = ct_dataset_num_classes(ds);
    size_t m = 0;
    if (n <= cap) {
        for (size_t i = 0; i < n; i++)
            if (ct_dataset_label(ds, i) >= 0) out[m++] = i;
        return m;
    }
    size_t *members = malloc(n * sizeof *members);
    uint32_t *order = malloc(n * sizeof *order);
    uint8_t *take = calloc(n, 1);
    if (members == NULL || order == NULL || take == NULL) {
        free(members);
        free(order);
        free(take);
        return 0;
    }
    size_t labelled = 0;
    for (int c = 0; c < k; c++) labelled += ct_dataset_class_count(ds, c);
    for (int c = 0; c < k; c++) {
        size_t nc = 0;
        for (size_t i = 0; i < n; i++)
            if (ct_dataset_label(ds, i) == c) members[nc++] = i;
        size_t quota = (size_t)((double)cap * (double)nc / (double)(labelled ? labelled : 1) + 0.5);
        if (quota < min_per_class) quota = min_per_class;
        if (quota > nc) quota = nc;
        ct_shuffle_order(order, nc, seed, PURPOSE_SAMPLE, (uint32_t)c);
        for (size_t j = 0; j < quota; j++) take[members[order[j]]] = 1;
    }
    for (size_t i = 0; i < n; i++)
        if (take[i]) out[m++] = i;
    free(members);
    free(order);
    free(take);
    return m;
}

/* Global average pool of one layer's output (n, h, w, ch): row i goes to feats row row_pos[i]. */
static void gap_rows(const float *act, int n, int h, int w, int ch, float *feats,
                     const size_t *row_pos) {
    for (int i = 0; i < n; i++) {
        float *f = feats + row_pos[i] * (size_t)ch;
        for (int c = 0; c < ch; c++) f[c] = 0.0f;
        const float *a = act + (size_t)i * h * w * ch;
        for (int p = 0; p < h * w; p++)
            for (int c = 0; c < ch; c++) f[c] += a[(size_t)p * ch + c];
        for (int c = 0; c < ch; c++) f[c] /= (float)(h * w);
    }
}

/* Loads "imagenet" (the notop file into the backbone) or a file's backbone layers. */
static ct_status load_weights(ct_model *m, const char *spec) {
    ct_weights_report rep;
    if (strcmp(spec, "imagenet") == 0) return ct_weights_load_spec(m, spec, NULL, &rep);
    ct_weights_load_opts o;
    ct_weights_load_defaults(&o);
    o.scope = CT_WEIGHTS_SCOPE_BACKBONE;
    o.allow_extra = true;
    return ct_weights_load(m, spec, &o, &rep);
}

/* Everything one probe holds. */
typedef struct probe_run {
    ct_backend be;
    ct_model *m;
    ct_dataset *sub;             /* the sampled images */
    ct_loader *loader;
    int batch;
    int idx[CT_ADVISE_DEPTHS];   /* the depths' layer indices */
    size_t n;                    /* sampled images */
    float *feats[CT_ADVISE_DEPTHS]; /* (n, depth's channels), pooled */
    float *act;                  /* one batch of the largest depth's output */
    int *labels;                 /* (n) */
    uint8_t *seen;               /* (n) whether the image was decoded (skip_bad) */
} probe_run;

static void probe_free(probe_run *p) {
    ct_loader_free(p->loader);
    ct_dataset_free(p->sub);
    ct_model_free(p->m);
    ct_backend_free(&p->be);
    for (int i = 0; i < CT_ADVISE_DEPTHS; i++) free(p->feats[i]);
    free(p->act);
    free(p->labels);
    free(p->seen);
}

/* The probe's input size: the training size (or the CPU's smaller default), or the iceberg
 * images' own. */
static ct_status probe_input_size(const ct_dataset *ds, const ct_advise_config *c, bool gpu,
                                  int *size) {
    int h, w, ch;
    *size = c->input_size > 0 ? c->input_size : gpu ? 224 : CT_ADVISE_CPU_INPUT;
    if (!ct_dataset_in_memory(ds, &h, &w, &ch)) return CT_OK;
    if (c->input_size > 0 && (c->input_size != h || c->input_size != w))
        return ct_error(CT_EINVAL, "--input-size %d: the iceberg images are %dx%d", c->input_size,
                        h, w);
    *size = h;
    return CT_OK;
}

/* The backbone with its weights, every layer frozen, the activations of the three depths kept
 * in buffers of their own: one forward to the deepest yields all three. */
static ct_status probe_model(probe_run *p, const ct_advise_config *c, const char *weights,
                             int size, ct_advice *a) {
    ct_model_config mc = {.backbone = c->backbone, .input_h = size, .input_w = size,
                          .input_c = 3, .max_batch = p->batch, .head = "gap,dense:2:softmax",
                          .seed = c->seed, .freeze_to = CT_FREEZE_ALL};
    ct_status s = ct_model_init(&p->m, &mc, &p->be);
    if (s == CT_OK) s = load_weights(p->m, weights);
    if (s != CT_OK) return s;
    const ct_backbone *bb = ct_model_backbone(p->m);
    /* Activations are kept from the layer below the lowest trainable one: marking the
     * convolution just below the shallowest depth "trainable" (nothing is trained) keeps that
     * depth and every deeper one. */
    const int nl = ct_model_num_layers(p->m), shallowest = ct_backbone_index(bb, bb->probe[0]);
    bool *mask = calloc((size_t)nl, sizeof *mask);
    if (mask == NULL) return ct_error(CT_ENOMEM, "cannot allocate the probe");
    int keep = shallowest;
    while (keep > 0 && ct_model_layer(p->m, keep)->kind != CT_LAYER_CONV) keep--;
    mask[keep] = true;
    s = ct_model_set_trainable_mask(p->m, mask);
    free(mask);
    for (int i = 0; s == CT_OK && i < CT_ADVISE_DEPTHS; i++) {
        p->idx[i] = ct_backbone_index(bb, bb->probe[i]);
        a->depth[i].layer = bb->probe[i];
        a->depth[i].dim = ct_model_layer(p->m, p->idx[i])->out_c;
    }
    return s;
}

/* The sample and a loader over it (never augmented), standardised as training would be. */
static ct_status probe_loader(probe_run *p, const ct_dataset *ds, const ct_advise_config *c,
                              int size, int folds) {
    const size_t n = ct_dataset_count(ds);
    size_t *pick = malloc((n > 0 ? n : 1) * sizeof *pick);
    if (pick == NULL) return ct_error(CT_ENOMEM, "cannot allocate the probe sample");
    const size_t cap = c->samples > 0 ? (size_t)c->samples : CT_ADVISE_SAMPLES;
    p->n = probe_sample(ds, cap, (size_t)folds, c->seed, pick);
    ct_status s = ct_dataset_subset(ds, pick, p->n, CT_ROLE_TEST, &p->sub);
    free(pick);
    if (s != CT_OK) return s;
    int h, w, ch;
    ct_loader_config lc;
    ct_loader_config_defaults(&lc);
    lc.batch_size = p->batch;
    lc.shuffle = false;
    lc.seed = c->seed;
    lc.threads = c->threads > 0 ? c->threads : 2;
    lc.class_mode = CT_CLASS_NONE;
    lc.image.target_h = lc.image.target_w = size;
    lc.image.color_mode = c->color_mode;
    lc.image.interpolation = c->interpolation;
    lc.image.keep_aspect_ratio = c->keep_aspect_ratio;
    lc.standardize = c->standardize;
    if (!c->preprocess_set)
        lc.standardize.preprocess = ct_dataset_in_memory(ds, &h, &w, &ch) ? CT_PREPROCESS_NONE
                                                                          : CT_PREPROCESS_CAFFE;
    lc.cache_bytes = 0;
    lc.skip_bad = c->skip_bad;
    if (lc.standardize.featurewise_center || lc.standardize.featurewise_std_normalization) {
        s = ct_loader_feature_stats(p->sub, &lc, lc.standardize.mean, lc.standardize.std);
        if (s != CT_OK) return s;
    }
    return ct_loader_init(&p->loader, p->sub, &lc);
}

static ct_status probe_buffers(probe_run *p, const ct_advice *a) {
    const size_t rows = p->n > 0 ? p->n : 1;
    size_t max_act = 0;
    for (int i = 0; i < CT_ADVISE_DEPTHS; i++) {
        const ct_layer *l = ct_model_layer(p->m, p->idx[i]);
        size_t sz = (size_t)p->batch * l->out_h * l->out_w * l->out_c;
        if (sz > max_act) max_act = sz;
        p->feats[i] = malloc(rows * (size_t)a->depth[i].dim * sizeof(float));
    }
    p->act = malloc(max_act * sizeof(float));
    p->labels = malloc(rows * sizeof *p->labels);
    p->seen = calloc(rows, 1);
    bool ok = p->act != NULL && p->labels != NULL && p->seen != NULL;
    for (int i = 0; i < CT_ADVISE_DEPTHS; i++) ok = ok && p->feats[i] != NULL;
    return ok ? CT_OK : ct_error(CT_ENOMEM, "cannot allocate the probe's features");
}

/* One forward per batch to the deepest depth; the shallower depths are read from their own
 * buffers afterwards, and each is average-pooled into its row of the features. */
static ct_status extract_features(probe_run *p) {
    size_t row_pos[4096];
    if (p->batch > 4096) return ct_error(CT_EINVAL, "probe batch %d: at most 4096", p->batch);
    ct_status s = ct_loader_begin_epoch(p->loader, 0);
    while (s == CT_OK) {
        const ct_batch *b = NULL;
        if ((s = ct_loader_next(p->loader, &b)) != CT_OK || b == NULL) break;
        s = ct_model_features(p->m, p->idx[CT_ADVISE_DEPTHS - 1], b->x, NULL, b->n, p->act);
        for (int i = 0; i < b->n; i++) {
            row_pos[i] = b->index[i];
            p->seen[b->index[i]] = 1;
        }
        for (int d = CT_ADVISE_DEPTHS - 1; s == CT_OK && d >= 0; d--) {
            const ct_layer *l = ct_model_layer(p->m, p->idx[d]);
            if (d < CT_ADVISE_DEPTHS - 1) s = ct_model_layer_output(p->m, p->idx[d], b->n, p->act);
            if (s == CT_OK)
                gap_rows(p->act, b->n, l->out_h, l->out_w, l->out_c, p->feats[d], row_pos);
        }
        ct_loader_release(p->loader, b);
    }
    return s;
}

/* Drops the images that could not be decoded (skip_bad) and counts the baseline: the share of
 * the largest class among the rest. Returns the images kept. */
static size_t keep_decoded(probe_run *p, ct_advice *a) {
    size_t kept = 0;
    for (size_t i = 0; i < p->n; i++) {
        if (!p->seen[i]) continue;
        for (int d = 0; d < CT_ADVISE_DEPTHS; d++)
            memmove(p->feats[d] + kept * (size_t)a->depth[d].dim,
                    p->feats[d] + i * (size_t)a->depth[d].dim,
                    (size_t)a->depth[d].dim * sizeof(float));
        p->labels[kept++] = ct_dataset_label(p->sub, i);
    }
    size_t count[CT_MAX_CLASSES] = {0};
    for (size_t i = 0; i < kept; i++) count[p->labels[i]]++;
    size_t major = 0;
    for (int k = 0; k < a->k; k++) major = count[k] > major ? count[k] : major;
    a->baseline = kept > 0 ? (double)major / (double)kept : NAN;
    a->probe_n = kept;
    return kept;
}

static ct_status score_depths(probe_run *p, const ct_advise_config *c, int folds, ct_advice *a) {
    const size_t kept = keep_decoded(p, a);
    a->probe_folds = folds;
    if (kept < (size_t)folds * 2)
        return ct_error(CT_EINVAL, "only %zu images could be probed: too few for %d-fold "
                        "cross-validation", kept, folds);
    for (int d = 0; d < CT_ADVISE_DEPTHS; d++) {
        double acc = NAN;
        ct_status s = ct_probe_cv(p->feats[d], p->labels, kept, a->depth[d].dim, a->k, folds,
                                  c->l2, c->seed, &acc);
        if (s != CT_OK) return ct_error(s, "%s features: %s", a->depth[d].layer, ct_last_error());
        a->depth[d].acc = acc;
        a->depth[d].se = sqrt(acc * (1.0 - acc) / (double)kept);
    }
    return CT_OK;
}

static ct_status open_backend(ct_backend *be, const ct_advise_config *c) {
    char note[512];
    if (c->device != NULL && strcmp(c->device, "cpu") == 0)
        return ct_backend_cpu_init(be, c->threads);
    return ct_backend_init_by_name(be, c->device, note, sizeof note);
}

/* Features of the sampled images at the three depths, and the probe on each. *missing: the
 * ImageNet weights are not installed (nothing was probed). */
static ct_status probe(const ct_dataset *ds, const ct_advise_config *c, const char *weights,
                       ct_advice *a, bool *missing) {
    const double t0 = now_seconds();
    char path[4096];
    *missing = false;
    if (strcmp(weights, "imagenet") == 0 &&
        ct_weights_resolve_imagenet(c->backbone, false, path, sizeof path) != CT_OK) {
        *missing = true; /* CT_ENOTFOUND, saying where it looked */
        return CT_ENOTFOUND;
    }
    const int folds = c->cv_folds > 0 ? c->cv_folds : 3;
    probe_run p;
    memset(&p, 0, sizeof p);
    p.batch = c->batch_size > 0 ? c->batch_size : 16;
    int size = 0;
    ct_status s = open_backend(&p.be, c);
    if (s == CT_OK) s = probe_input_size(ds, c, strcmp(p.be.ops->name, "cpu") != 0, &size);
    a->input_size = size;
    if (s == CT_OK) s = probe_model(&p, c, weights, size, a);
    if (s == CT_OK) s = probe_loader(&p, ds, c, size, folds);
    if (s == CT_OK) s = probe_buffers(&p, a);
    if (s == CT_OK) s = extract_features(&p);
    if (s == CT_OK) s = score_depths(&p, c, folds, a);
    if (s == CT_OK) {
        a->probed = true;
        a->seconds = now_seconds() - t0;
    }
    probe_free(&p);
    return s;
}

ct_status ct_advise_dataset(const ct_dataset *ds, const ct_advise_config *c, ct_advice *a) {
    memset(a, 0, sizeof *a);
    a->similarity = NAN;
    a->baseline = NAN;
    if (!ct_dataset_labelled(ds))
        return ct_error(CT_EINVAL, "the data has no labels (is_iceberg): it is test data; "
                        "advise on the training data");
    a->k = ct_dataset_num_classes(ds);
    if (a->k < 2)
        return ct_error(CT_EINVAL, "training needs at least 2 classes, found %d", a->k);
    if (a->k > CT_MAX_CLASSES)
        return ct_error(CT_EINVAL, "%d classes: at most %d", a->k, CT_MAX_CLASSES);
    for (int k = 0; k < a->k; k++) {
        a->counts[k] = ct_dataset_class_count(ds, k);
        a->n += a->counts[k];
        snprintf(a->class_names[k], sizeof a->class_names[k], "%s", ct_dataset_class_name(ds, k));
    }
    if (a->n == 0) return ct_error(CT_EINVAL, "no training images");
    int h, w, ch;
    a->iceberg = ct_dataset_in_memory(ds, &h, &w, &ch) && ct_dataset_aux_dim(ds) > 0;
    const char *weights = c->weights != NULL ? c->weights : "imagenet";
    const int folds = c->cv_folds > 0 ? c->cv_folds : 3;
    if (c->cv_folds < 0 || folds < 2 || folds > 20)
        return ct_error(CT_EINVAL, "--cv %d: expected 2 to 20 folds", c->cv_folds);
    if (c->samples < 0)
        return ct_error(CT_EINVAL, "--samples %d: expected at least %d", c->samples, 2 * folds);
    if (c->samples > 0 && c->samples < 2 * folds)
        return ct_error(CT_EINVAL, "--samples %d: the probe needs at least %d images for %d-fold "
                        "cross-validation", c->samples, 2 * folds, folds);

#define RANDOM_FEATURES                                                                        \
    " A linear probe on the features of a randomly initialised network says nothing about how " \
    "close this data is to ImageNet. Fetch the weights (weights/README.md) and run `cutune "    \
    "advise` again to measure it."
    if (strcmp(weights, "none") == 0) {
        snprintf(a->weights_note, sizeof a->weights_note,
                 "without ImageNet weights (--weights none)." RANDOM_FEATURES);
    } else if (a->n < (size_t)(2 * folds)) {
        snprintf(a->weights_note, sizeof a->weights_note,
                 "only %zu images: too few for the probe's %d-fold cross-validation.", a->n,
                 folds);
    } else {
        bool missing = false;
        ct_status s = probe(ds, c, weights, a, &missing);
        if (s != CT_OK && missing) {
            a->weights_missing = true;
            snprintf(a->weights_note, sizeof a->weights_note,
                     "without ImageNet weights: they are not installed (%s)." RANDOM_FEATURES,
                     ct_last_error());
        } else if (s != CT_OK) {
            return s;
        } else if (strcmp(weights, "imagenet") != 0) {
            snprintf(a->weights_note, sizeof a->weights_note, "backbone weights from %s",
                     weights);
        } else {
            snprintf(a->weights_note, sizeof a->weights_note, "ImageNet weights");
        }
    }
#undef RANDOM_FEATURES
    ct_advise_decide(a, c);
    if (c->verbose > 0) ct_advise_print(stdout, a);
    return CT_OK;
}

ct_status ct_advise(const ct_advise_config *c, ct_advice *a) {
    memset(a, 0, sizeof *a);
    if (c->data == NULL) return ct_error(CT_EINVAL, "--data DIR|train.json is required");
    struct stat st;
    if (stat(c->data, &st) != 0)
        return ct_error(CT_ENOTFOUND, "%s: no such file or folder", c->data);
    ct_dataset *ds = NULL;
    ct_status s;
    if (is_dir(c->data)) {
        ct_folder_options fo = {.role = CT_ROLE_TRAINING};
        s = ct_dataset_open_folder(&ds, c->data, &fo);
    } else {
        ct_iceberg_options io = {.na_policy = c->na_policy, .na_value = c->na_value,
                                 .role = CT_ROLE_TRAINING};
        s = ct_dataset_open_iceberg(&ds, c->data, &io);
    }
    if (s != CT_OK) return s;
    if (!ct_dataset_labelled(ds)) {
        ct_dataset_free(ds);
        return ct_error(CT_EINVAL, "%s has no labels (is_iceberg): it is test data; advise on "
                        "the training data", c->data);
    }
    if (c->verbose > 0) {
        char msg[256];
        ct_dataset_found_message(ds, msg, sizeof msg);
        printf("%s\n", msg);
    }
    s = ct_advise_dataset(ds, c, a);
    if (s != CT_OK && ct_dataset_num_classes(ds) < 2)
        s = ct_error(CT_EINVAL, "%s: %s", c->data, ct_last_error());
    ct_dataset_free(ds);
    return s;
}

