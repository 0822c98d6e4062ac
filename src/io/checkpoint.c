/* Checkpoints for exact resume.
 *
 * A checkpoint is a weights file in the legacy Keras layout (so Keras can load it too) plus a
 * group /cutune_checkpoint holding what training needs to continue bit for bit: the optimizer's
 * slots for every trainable layer (in cutune's layout: KRSC kernels), its iteration count, the
 * trainable flags the slots belong to, and the loop's state (epoch, step, loader position,
 * seed, LR-schedule and early-stopping counters, the run's configuration string). Saving is
 * atomic (ct__h5_atomic); loading is all or nothing. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/optim.h"
#include "../model/backbone.h"
#include "../model/layer.h"
#include "io.h"

#define CHECKPOINT_VERSION 1
#define GROUP "cutune_checkpoint"

static const char *kind_name(bool compiled, ct_optimizer_kind k) {
    return compiled ? ct_optimizer_name(k) : "none";
}

/* Optimizer slots the model keeps per trainable layer: 0, 1 (SGD momentum) or 2 (Adam). */
static int model_slots(ct_model *m) {
    for (int i = 0; i < ct_model_num_layers(m); i++) {
        const ct_layer *l = ct_model_layer(m, i);
        if (!ct_layer_has_params(l) || !l->trainable) continue;
        return (l->opt_kernel[0].data != NULL) + (l->opt_kernel[1].data != NULL);
    }
    return 0;
}

static ct_status write_slot(ct_model *m, hid_t g, hid_t lcpl, const ct_layer *l,
                            const ct_tensor *t, const char *what, int slot, float *host,
                            const char *path) {
    char name[CT_NAME_MAX + 32];
    snprintf(name, sizeof name, "%s/%s_%d", l->name, what, slot);
    ct_status s = ct_model_tensor_get(m, t, host);
    if (s != CT_OK) return s;
    for (size_t i = 0; i < t->size; i++)
        if (!isfinite(host[i]))
            return ct_error(CT_ENUMERIC, "cannot save %s: the optimizer state of %s (%s slot %d) "
                            "holds NaN or Inf; nothing was written", path, l->name, what, slot);
    hsize_t dims[CT_MAX_DIMS];
    for (int d = 0; d < t->ndim; d++) dims[d] = (hsize_t)t->shape[d];
    return ct__h5_write_f32(g, name, host, dims, t->ndim, lcpl, path, "optimizer state");
}

static ct_status write_state(hid_t g, const ct_checkpoint_state *st) {
    int64_t seed;
    memcpy(&seed, &st->seed, sizeof seed);
    int64_t version = CHECKPOINT_VERSION;
    ct_status s;
    if ((s = ct__h5_write_i64(g, "version", &version, 1)) != CT_OK ||
        (s = ct__h5_write_i64(g, "epoch", &st->epoch, 1)) != CT_OK ||
        (s = ct__h5_write_i64(g, "step", &st->step, 1)) != CT_OK ||
        (s = ct__h5_write_i64(g, "batch_in_epoch", &st->batch_in_epoch, 1)) != CT_OK ||
        (s = ct__h5_write_i64(g, "sample_in_epoch", &st->sample_in_epoch, 1)) != CT_OK ||
        (s = ct__h5_write_i64(g, "seed", &seed, 1)) != CT_OK ||
        (s = ct__h5_write_f64(g, "lr_scale", st->lr_scale)) != CT_OK ||
        (s = ct__h5_write_i64(g, "plateau_wait", &st->plateau_wait, 1)) != CT_OK ||
        (s = ct__h5_write_i64(g, "plateau_cooldown", &st->plateau_cooldown, 1)) != CT_OK ||
        (s = ct__h5_write_f64(g, "plateau_best", st->plateau_best)) != CT_OK ||
        (s = ct__h5_write_f64(g, "best_metric", st->best_metric)) != CT_OK ||
        (s = ct__h5_write_i64(g, "best_epoch", &st->best_epoch, 1)) != CT_OK ||
        (s = ct__h5_write_i64(g, "patience_wait", &st->patience_wait, 1)) != CT_OK ||
        (s = ct__h5_write_f64(g, "es_best", st->es_best)) != CT_OK ||
        (s = ct__h5_write_f64(g, "epoch_loss_sum", st->epoch_loss_sum)) != CT_OK ||
        (s = ct__h5_write_f64(g, "epoch_correct", st->epoch_correct)) != CT_OK ||
        (s = ct__h5_write_i64(g, "epoch_seen", &st->epoch_seen, 1)) != CT_OK ||
        (s = ct__h5_write_string(g, "monitor", st->monitor)) != CT_OK ||
        (s = ct__h5_write_string(g, "config", st->config != NULL ? st->config : "")) != CT_OK)
        return s;
    return CT_OK;
}

static ct_status write_checkpoint_group(ct_model *m, hid_t file, const ct_checkpoint_state *st,
                                        const char *path) {
    ct_status s = CT_OK;
    const int n = ct_model_num_layers(m);
    hid_t g = -1, og = -1, lcpl = -1;
    float *host = NULL;
    const char **trainable = malloc((size_t)n * sizeof *trainable);
    size_t largest = 1;
    for (int i = 0; i < n; i++)
        if (ct_model_layer(m, i)->kernel.size > largest) largest = ct_model_layer(m, i)->kernel.size;
    host = malloc(largest * sizeof *host);
    if (trainable == NULL || host == NULL) {
        s = ct_error(CT_ENOMEM, "cannot save %s: out of memory", path);
        goto done;
    }
    if ((g = CT_H5(H5Gcreate2(file, GROUP, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT))) < 0 ||
        (og = CT_H5(H5Gcreate2(g, "optimizer", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT))) < 0 ||
        (lcpl = CT_H5(H5Pcreate(H5P_LINK_CREATE))) < 0 ||
        CT_H5(H5Pset_create_intermediate_group(lcpl, 1)) < 0) {
        s = ct__h5_error(CT_EIO, "cannot write %s: group %s", path, GROUP);
        goto done;
    }
    if ((s = write_state(g, st)) != CT_OK) goto done;
    ct_optimizer_config oc;
    bool compiled = ct_model_get_optimizer(m, &oc);
    int64_t slots = model_slots(m), iterations = (int64_t)ct_model_iterations(m);
    if ((s = ct__h5_write_string(og, "kind", kind_name(compiled, oc.kind))) != CT_OK ||
        (s = ct__h5_write_i64(og, "slots", &slots, 1)) != CT_OK ||
        (s = ct__h5_write_i64(og, "iterations", &iterations, 1)) != CT_OK)
        goto done;
    if (compiled) {
        int64_t nesterov = oc.nesterov;
        if ((s = ct__h5_write_f64(og, "lr", oc.lr)) != CT_OK ||
            (s = ct__h5_write_f64(og, "momentum", oc.momentum)) != CT_OK ||
            (s = ct__h5_write_i64(og, "nesterov", &nesterov, 1)) != CT_OK ||
            (s = ct__h5_write_f64(og, "decay", oc.decay)) != CT_OK ||
            (s = ct__h5_write_f64(og, "beta1", oc.beta1)) != CT_OK ||
            (s = ct__h5_write_f64(og, "beta2", oc.beta2)) != CT_OK ||
            (s = ct__h5_write_f64(og, "epsilon", oc.epsilon)) != CT_OK ||
            (s = ct__h5_write_f64(og, "weight_decay", oc.weight_decay)) != CT_OK)
            goto done;
    }
    int nt = 0;
    for (int i = 0; i < n && s == CT_OK; i++) {
        const ct_layer *l = ct_model_layer(m, i);
        if (!ct_layer_has_params(l) || !l->trainable) continue;
        trainable[nt++] = l->name;
        for (int k = 0; k < slots && s == CT_OK; k++) {
            s = write_slot(m, og, lcpl, l, &l->opt_kernel[k], "kernel", k, host, path);
            if (s == CT_OK) s = write_slot(m, og, lcpl, l, &l->opt_bias[k], "bias", k, host, path);
        }
    }
    if (s == CT_OK)
        s = ct__h5_write_strings(g, "trainable_layers", trainable, nt, CT_KERAS_ATTR_LIMIT);
done:
    if (s != CT_OK && strstr(ct_last_error(), path) == NULL)
        s = ct__wrap(s, "cannot write %s", path);
    ct__h5_close(lcpl);
    ct__h5_close(og);
    ct__h5_close(g);
    free(host);
    free(trainable);
    return s;
}

ct_status ct_checkpoint_save(ct_model *m, const char *path, const ct_weights_save_opts *opts,
                             const ct_checkpoint_state *st) {
    ct__h5_begin();
    if (st == NULL) return ct_error(CT_EINVAL, "cannot save %s: no checkpoint state", path);
    ct_weights_save_opts o = {0};
    if (opts != NULL) o = *opts;
    o.backbone_only = false; /* a checkpoint holds every layer */
    ct__h5_atomic a;
    ct_status s = ct__h5_atomic_create(&a, path);
    if (s != CT_OK) return s;
    if ((s = ct__weights_write(m, a.file, path, &o)) != CT_OK ||
        (s = write_checkpoint_group(m, a.file, st, path)) != CT_OK) {
        ct__h5_atomic_abort(&a);
        return s;
    }
    return ct__h5_atomic_commit(&a);
}

/* ---- loading ---- */

void ct_checkpoint_state_free(ct_checkpoint_state *st) {
    if (st == NULL) return;
    free(st->config);
    st->config = NULL;
}

/* The loop's counters are epochs, batches and samples: whole numbers the training loop keeps
 * in an int (a file's value past that is damage, not a long run). The best values may be
 * infinite (nothing seen yet); the sums and the learning-rate scale may not. */
static ct_status check_state(const ct_checkpoint_state *st, const char *where) {
    static const struct {
        const char *name;
        size_t offset;
        int64_t lo;
    } counters[] = {
        {"epoch", offsetof(ct_checkpoint_state, epoch), 0},
        {"step", offsetof(ct_checkpoint_state, step), 0},
        {"batch_in_epoch", offsetof(ct_checkpoint_state, batch_in_epoch), 0},
        {"sample_in_epoch", offsetof(ct_checkpoint_state, sample_in_epoch), 0},
        {"plateau_wait", offsetof(ct_checkpoint_state, plateau_wait), 0},
        {"plateau_cooldown", offsetof(ct_checkpoint_state, plateau_cooldown), 0},
        {"best_epoch", offsetof(ct_checkpoint_state, best_epoch), -1},
        {"patience_wait", offsetof(ct_checkpoint_state, patience_wait), 0},
        {"epoch_seen", offsetof(ct_checkpoint_state, epoch_seen), 0},
    };
    for (size_t i = 0; i < sizeof counters / sizeof counters[0]; i++) {
        int64_t v;
        memcpy(&v, (const char *)st + counters[i].offset, sizeof v);
        if (v < counters[i].lo || v > INT32_MAX)
            return ct_error(CT_EFORMAT, "%s: " GROUP "/%s is %lld, not from %lld to %d (a "
                            "damaged checkpoint?)", where, counters[i].name, (long long)v,
                            (long long)counters[i].lo, INT32_MAX);
    }
    if (!isfinite(st->lr_scale) || st->lr_scale < 0.0 || !isfinite(st->epoch_loss_sum) ||
        !isfinite(st->epoch_correct) || st->epoch_correct < 0.0)
        return ct_error(CT_EFORMAT, "%s: " GROUP "/lr_scale %g, epoch_loss_sum %g or "
                        "epoch_correct %g is out of its range (a damaged checkpoint?)", where,
                        st->lr_scale, st->epoch_loss_sum, st->epoch_correct);
    if (strlen(st->config) > CT_WEIGHTS_MAX_RUN_CONFIG)
        return ct_error(CT_EFORMAT, "%s: " GROUP "/config is %zu bytes long (at most %d: a "
                        "damaged checkpoint?)", where, strlen(st->config),
                        CT_WEIGHTS_MAX_RUN_CONFIG);
    return CT_OK;
}

static ct_status read_state(hid_t g, const char *where, ct_checkpoint_state *st) {
    int64_t version = 0, seed = 0;
    ct_status s = ct__h5_read_i64(g, "version", where, &version, 1);
    if (s != CT_OK) return s;
    if (version != CHECKPOINT_VERSION)
        return ct_error(CT_EUNSUPPORTED, "%s: checkpoint format version %lld; this cutune reads "
                        "version %d", where, (long long)version, CHECKPOINT_VERSION);
    if ((s = ct__h5_read_i64(g, "epoch", where, &st->epoch, 1)) != CT_OK ||
        (s = ct__h5_read_i64(g, "step", where, &st->step, 1)) != CT_OK ||
        (s = ct__h5_read_i64(g, "batch_in_epoch", where, &st->batch_in_epoch, 1)) != CT_OK ||
        (s = ct__h5_read_i64(g, "sample_in_epoch", where, &st->sample_in_epoch, 1)) != CT_OK ||
        (s = ct__h5_read_i64(g, "seed", where, &seed, 1)) != CT_OK ||
        (s = ct__h5_read_f64(g, "lr_scale", where, &st->lr_scale)) != CT_OK ||
        (s = ct__h5_read_i64(g, "plateau_wait", where, &st->plateau_wait, 1)) != CT_OK ||
        (s = ct__h5_read_i64(g, "plateau_cooldown", where, &st->plateau_cooldown, 1)) != CT_OK ||
        (s = ct__h5_read_f64(g, "plateau_best", where, &st->plateau_best)) != CT_OK ||
        (s = ct__h5_read_f64(g, "best_metric", where, &st->best_metric)) != CT_OK ||
        (s = ct__h5_read_i64(g, "best_epoch", where, &st->best_epoch, 1)) != CT_OK ||
        (s = ct__h5_read_i64(g, "patience_wait", where, &st->patience_wait, 1)) != CT_OK ||
        (s = ct__h5_read_f64(g, "es_best", where, &st->es_best)) != CT_OK ||
        (s = ct__h5_read_f64(g, "epoch_loss_sum", where, &st->epoch_loss_sum)) != CT_OK ||
        (s = ct__h5_read_f64(g, "epoch_correct", where, &st->epoch_correct)) != CT_OK ||
        (s = ct__h5_read_i64(g, "epoch_seen", where, &st->epoch_seen, 1)) != CT_OK ||
        (s = ct__h5_read_string(g, "monitor", where, st->monitor, sizeof st->monitor)) != CT_OK ||
        (s = ct__h5_read_string_alloc(g, "config", where, &st->config)) != CT_OK)
        return s;
    memcpy(&st->seed, &seed, sizeof seed);
    return check_state(st, where);
}

/* The checkpoint must be for this model: same configuration, same trainable layers. */
static ct_status check_model(ct_model *m, hid_t file, hid_t g, const char *path) {
    const ct_model_config *c = ct_model_get_config(m);
    char head[CT_CONFIG_HEAD_MAX], backbone[32];
    int64_t shape[3], aux;
    ct_status s;
    if ((s = ct__read_backbone(file, path, backbone, sizeof backbone)) != CT_OK) return s;
    if (strcmp(backbone, ct_model_backbone(m)->name) != 0)
        return ct_error(CT_EINVAL, "%s: the checkpoint is for a %s model; this model is %s", path,
                        backbone, ct_model_backbone(m)->name);
    if ((s = ct__h5_read_string(file, "cutune_head", path, head, sizeof head)) != CT_OK ||
        (s = ct__h5_read_i64(file, "cutune_input_shape", path, shape, 3)) != CT_OK ||
        (s = ct__h5_read_i64(file, "cutune_aux_dim", path, &aux, 1)) != CT_OK)
        return s;
    if (strcmp(head, ct_model_head_spec(m)) != 0 || shape[0] != c->input_h ||
        shape[1] != c->input_w || aux != c->aux_dim)
        return ct_error(CT_EINVAL, "%s: the checkpoint is for a %lldx%lld model with head '%s' "
                        "and aux_dim %lld; this model is %dx%d with head '%s' and aux_dim %d",
                        path, (long long)shape[0], (long long)shape[1], head, (long long)aux,
                        c->input_h, c->input_w, ct_model_head_spec(m), c->aux_dim);
    ct__strlist tl = {0};
    bool found = false;
    if ((s = ct__h5_read_names(g, "trainable_layers", path, ct_model_num_layers(m), CT_NAME_MAX - 1,
                               &tl, &found)) != CT_OK)
        return s;
    int k = 0;
    for (int i = 0; i < ct_model_num_layers(m) && s == CT_OK; i++) {
        const ct_layer *l = ct_model_layer(m, i);
        if (!ct_layer_has_params(l)) continue;
        bool saved = k < tl.n && strcmp(tl.s[k], l->name) == 0;
        if (saved) k++;
        if (saved != l->trainable)
            s = ct_error(CT_EINVAL, "%s: the checkpoint was saved with %s %s, but it is %s in "
                         "this model: freeze the same layers before loading it", path, l->name,
                         saved ? "trainable" : "frozen", l->trainable ? "trainable" : "frozen");
    }
    if (s == CT_OK && k != tl.n)
        s = ct_error(CT_EFORMAT, "%s: trainable_layers lists layers this model does not have "
                     "(%s)", path, tl.s[k]);
    ct__strlist_free(&tl);
    return s;
}

static ct_status read_slot(hid_t og, const ct_layer *l, const ct_tensor *t, const char *what,
                           int slot, float *dst, const char *path) {
    char name[CT_NAME_MAX + 32];
    snprintf(name, sizeof name, "%s/%s_%d", l->name, what, slot);
    hid_t ds = CT_H5(H5Dopen2(og, name, H5P_DEFAULT)), space = -1;
    ct_status s = CT_OK;
    if (ds < 0 || (space = CT_H5(H5Dget_space(ds))) < 0) {
        s = ct__h5_error(CT_EFORMAT, "%s: optimizer state %s is missing", path, name);
        goto done;
    }
    hsize_t dims[CT_MAX_DIMS + 1];
    int nd = (int)CT_H5(H5Sget_simple_extent_ndims(space));
    bool same = nd == t->ndim && nd <= CT_MAX_DIMS &&
                CT_H5(H5Sget_simple_extent_dims(space, dims, NULL)) == nd;
    for (int d = 0; same && d < nd; d++) same = dims[d] == (hsize_t)t->shape[d];
    if (!same) {
        s = ct_error(CT_ESHAPE, "%s: optimizer state %s does not have the shape of %s", path,
                     name, t->name);
        goto done;
    }
    if (CT_H5(H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, dst)) < 0) {
        s = ct__h5_error(CT_EFORMAT, "%s: cannot read optimizer state %s", path, name);
        goto done;
    }
    for (size_t i = 0; i < t->size; i++)
        if (!isfinite(dst[i])) {
            s = ct_error(CT_ENUMERIC, "%s: optimizer state %s holds NaN or Inf at element %zu",
                         path, name, i);
            break;
        }
done:
    ct__h5_close(space);
    ct__h5_close(ds);
    return s;
}

ct_status ct_checkpoint_load(ct_model *m, const char *path, ct_checkpoint_state *st) {
    memset(st, 0, sizeof *st);
    ct__h5_begin();
    hid_t file, g = -1, og = -1;
    ct_status s = ct__h5_open_read(path, &file);
    if (s != CT_OK) return s;
    ct_weights_file *wf = NULL;
    float *stage = NULL;
    ct_checkpoint_state local = {0};
    htri_t is = CT_H5(H5Lexists(file, GROUP, H5P_DEFAULT));
    if (is <= 0) {
        s = ct_error(CT_EFORMAT, "%s: not a cutune checkpoint (no /%s group); to take only its "
                     "weights, load it as weights", path, GROUP);
        goto done;
    }
    if ((g = CT_H5(H5Gopen2(file, GROUP, H5P_DEFAULT))) < 0 ||
        (og = CT_H5(H5Gopen2(g, "optimizer", H5P_DEFAULT))) < 0) {
        s = ct__h5_error(CT_EFORMAT, "%s: cannot open /%s", path, GROUP);
        goto done;
    }
    if ((s = read_state(g, path, &local)) != CT_OK) goto done;
    if ((s = check_model(m, file, g, path)) != CT_OK) goto done;
    char kind[16];
    int64_t slots = 0, iterations = 0;
    if ((s = ct__h5_read_string(og, "kind", path, kind, sizeof kind)) != CT_OK ||
        (s = ct__h5_read_i64(og, "slots", path, &slots, 1)) != CT_OK ||
        (s = ct__h5_read_i64(og, "iterations", path, &iterations, 1)) != CT_OK)
        goto done;
    ct_optimizer_config oc;
    bool compiled = ct_model_get_optimizer(m, &oc);
    const char *mine = kind_name(compiled, oc.kind);
    if (strcmp(kind, mine) != 0 || slots != model_slots(m) || iterations < 0) {
        s = ct_error(CT_EINVAL, "%s: the checkpoint's optimizer is %s with %lld state slots; this "
                     "model's is %s with %d: compile it the same way before loading", path, kind,
                     (long long)slots, mine, model_slots(m));
        goto done;
    }
    /* Stage the optimizer state, then load the weights (all or nothing), then commit. */
    size_t total = 1;
    for (int i = 0; i < ct_model_num_layers(m); i++) {
        const ct_layer *l = ct_model_layer(m, i);
        if (ct_layer_has_params(l) && l->trainable)
            total += (size_t)slots * (l->kernel.size + l->bias.size);
    }
    if ((stage = malloc(total * sizeof *stage)) == NULL) {
        s = ct_error(CT_ENOMEM, "%s: cannot allocate the optimizer state", path);
        goto done;
    }
    size_t off = 0;
    for (int i = 0; i < ct_model_num_layers(m) && s == CT_OK; i++) {
        const ct_layer *l = ct_model_layer(m, i);
        if (!ct_layer_has_params(l) || !l->trainable) continue;
        for (int k = 0; k < slots && s == CT_OK; k++) {
            s = read_slot(og, l, &l->opt_kernel[k], "kernel", k, stage + off, path);
            off += l->kernel.size;
            if (s == CT_OK) s = read_slot(og, l, &l->opt_bias[k], "bias", k, stage + off, path);
            off += l->bias.size;
        }
    }
    if (s != CT_OK) goto done;
    if ((s = ct__weights_scan(file, path, &wf)) != CT_OK) goto done;
    ct_weights_load_opts lo;
    ct_weights_load_defaults(&lo);
    if ((s = ct__weights_load_open(m, file, wf, &lo, NULL)) != CT_OK) goto done;
    off = 0;
    for (int i = 0; i < ct_model_num_layers(m) && s == CT_OK; i++) {
        ct_layer *l = ct_model_layer(m, i);
        if (!ct_layer_has_params(l) || !l->trainable) continue;
        for (int k = 0; k < slots && s == CT_OK; k++) {
            s = ct_model_tensor_set(m, &l->opt_kernel[k], stage + off);
            off += l->kernel.size;
            if (s == CT_OK) s = ct_model_tensor_set(m, &l->opt_bias[k], stage + off);
            off += l->bias.size;
        }
    }
    if (s != CT_OK) goto done;
    ct_model_set_iterations(m, (uint64_t)iterations);
    *st = local;
    local.config = NULL;
done:
    ct_checkpoint_state_free(&local);
    free(stage);
    ct_weights_file_free(wf);
    ct__h5_close(og);
    ct__h5_close(g);
    ct__h5_close(file);
    return s;
}
