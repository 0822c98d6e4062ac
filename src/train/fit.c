/* `cutune train`: fit_generator with Keras's callbacks, on any backend.
 *
 * One run: open the data (class folders or iceberg JSON) and its validation part, build VGG16
 * with the head, load the pretrained weights, freeze, compile, then per epoch stream training
 * batches through forward / loss / backward / update, evaluate the validation data (never
 * augmented), and run the callbacks in Keras's order: CSV log, curves, best checkpoint,
 * early stopping, plateau, resume checkpoint. Everything random is addressed by (seed, epoch,
 * sample) or the global step, so a run resumed from its checkpoint ends bit-identical on the
 * CPU to one that was never interrupted. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../core/atomic.h"
#include "cutune/cuda.h"
#include "cutune/model.h"
#include "cutune/run.h"
#include "cutune/weights.h"
#include "fit_internal.h"

static volatile sig_atomic_t stop_requested;
/* CUTUNE_STOP_AFTER_STEPS (a testing aid, see run.h): steps this call may train before it
 * stops as if interrupted; 0: no limit. */
static long stop_after_steps, steps_this_call;

void ct_train_request_stop(void) { stop_requested = 1; }

bool ct_train_stop_requested(void) { return stop_requested != 0; }

static void on_signal(int sig) {
    (void)sig;
    stop_requested = 1;
}

void ct_train_install_signal_handlers(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

ct_status ct_parse_strategy(const char *s, ct_strategy *out) {
    if (strcmp(s, "auto") == 0) *out = CT_STRATEGY_AUTO;
    else if (strcmp(s, "head") == 0) *out = CT_STRATEGY_HEAD;
    else if (strcmp(s, "top") == 0) *out = CT_STRATEGY_TOP;
    else if (strcmp(s, "all") == 0) *out = CT_STRATEGY_ALL;
    else if (strcmp(s, "deep") == 0) *out = CT_STRATEGY_DEEP;
    else return ct_error(CT_EINVAL, "unknown strategy '%s' (auto, head, top, deep, all)", s);
    return CT_OK;
}

const char *ct_strategy_freeze_to(ct_strategy s) {
    switch (s) {
    case CT_STRATEGY_HEAD: return "block5_pool";
    case CT_STRATEGY_TOP: return "block4_pool";
    case CT_STRATEGY_DEEP: return "block3_pool";
    default: return "";
    }
}

void ct_train_config_defaults(ct_train_config *c) {
    memset(c, 0, sizeof *c);
    c->class_mode = CT_CLASS_NONE;
    c->interpolation = CT_INTERP_NEAREST;
    c->na_policy = CT_NA_MEAN;
    c->cache_bytes = (size_t)2 << 30;
    c->weights = "imagenet";
    c->body_lr_mult = 1.0f;
    c->block_lr_decay = 1.0f;
    c->epochs = 10;
    c->batch_size = 32;
    ct_optimizer_defaults(&c->optimizer, CT_OPT_SGD);
    c->schedule = "constant";
    c->monitor = "val_loss";
    c->early_stopping_patience = -1;
    c->reduce_lr_patience = -1;
    c->reduce_lr_factor = 0.1;
    c->min_delta = 0.0;
    c->seed = 1;
    c->device = "auto";
    c->verbose = 1;
}

/* ---- run directory ---- */

static bool is_dir(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static bool exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0;
}

static ct_status prepare_run_dir(fit_run *r) {
    const ct_train_config *c = r->c;
    if (c->out_dir == NULL || c->out_dir[0] == '\0')
        return ct_error(CT_EINVAL, "--out RUN_DIR is required: the run's logs, checkpoints and "
                        "weights go there");
    snprintf(r->ckpt_path, sizeof r->ckpt_path, "%s/checkpoint.h5", c->out_dir);
    snprintf(r->best_path, sizeof r->best_path, "%s/best.h5", c->out_dir);
    snprintf(r->final_path, sizeof r->final_path, "%s/final.h5", c->out_dir);
    snprintf(r->log_path, sizeof r->log_path, "%s/log.csv", c->out_dir);
    snprintf(r->curves_path, sizeof r->curves_path, "%s/curves.png", c->out_dir);
    snprintf(r->config_path, sizeof r->config_path, "%s/config.txt", c->out_dir);
    snprintf(r->es_best_path, sizeof r->es_best_path, "%s/es_best.h5", c->out_dir);
    if (c->resume) {
        if (!exists(r->ckpt_path))
            return ct_error(CT_ENOTFOUND, "%s: no checkpoint to resume from (start the run "
                            "without --resume)", r->ckpt_path);
        return CT_OK;
    }
    /* Missing parent folders are made first (--out runs/mri in a fresh folder), as Keras's
     * ModelCheckpoint and CSVLogger users expect of a path; only then is the run directory
     * itself looked at, so that a path through '..' is checked where it really leads. */
    char parent[4096];
    snprintf(parent, sizeof parent, "%s", c->out_dir);
    size_t len = strlen(parent);
    while (len > 1 && parent[len - 1] == '/') parent[--len] = '\0';
    char *slash = strrchr(parent, '/');
    ct_status s = CT_OK;
    if (slash != NULL && slash != parent) {
        *slash = '\0';
        if ((s = ct_make_dirs(parent, &r->made)) != CT_OK)
            return ct_error(s, "cannot create the run directory %s: %s", c->out_dir,
                            ct_last_error());
    }
    if (exists(c->out_dir)) {
        if (!is_dir(c->out_dir))
            s = ct_error(CT_EINVAL, "%s exists and is not a directory", c->out_dir);
        else if (exists(r->ckpt_path) || exists(r->log_path) || exists(r->final_path))
            s = ct_error(CT_EINVAL, "%s already holds a run: add --resume to continue it, "
                         "or choose another --out (nothing was changed)", c->out_dir);
    } else if (mkdir(c->out_dir, 0777) != 0) {
        s = ct_error(CT_EIO, "cannot create the run directory %s: %s", c->out_dir,
                     strerror(errno));
    } else if (r->made.n < CT_MADE_DIRS_MAX) {
        r->made.len[r->made.n++] = strlen(c->out_dir);
    }
    if (s != CT_OK) ct_remove_made_dirs(c->out_dir, &r->made);
    return s;
}

/* A new run that fails before its first checkpoint saved nothing worth keeping: it removes the
 * files it began (config.txt, the log's header, curves.png) and the directory if it made it, so
 * that the same command can simply be run again (an existing log.csv would otherwise mark the
 * directory as holding a run that --resume cannot continue). */
static void discard_failed_start(const fit_run *r) {
    const ct_train_config *c = r->c;
    if (c->resume || exists(r->ckpt_path) || exists(r->final_path) || exists(r->best_path))
        return;
    if (r->wrote_log) remove(r->log_path);
    if (r->wrote_config) remove(r->config_path);
    if (r->wrote_curves) remove(r->curves_path);
    /* Only what this run created; stops, harmlessly, at the first folder that holds anything
     * else. */
    ct_remove_made_dirs(c->out_dir, &r->made);
}

/* ---- data ---- */

static ct_status open_data(fit_run *r) {
    const ct_train_config *c = r->c;
    ct_status s;
    if (c->data == NULL) return ct_error(CT_EINVAL, "--data DIR|train.json is required");
    if (c->train_ds != NULL) {
        /* Already-open data (k-fold): views of the caller's datasets, which stay theirs. */
        if (c->val != NULL || c->validation_split > 0.0)
            return ct_error(CT_EINVAL, "already-open training data takes its validation data "
                            "with it: --val and --validation-split do not apply");
        const size_t n = ct_dataset_count(c->train_ds);
        const size_t nv = c->val_ds != NULL ? ct_dataset_count(c->val_ds) : 0;
        const size_t most = n > nv ? n : nv;
        size_t *idx = malloc(most * sizeof *idx + 1);
        if (idx == NULL) return ct_error(CT_ENOMEM, "cannot allocate the data views");
        for (size_t i = 0; i < most; i++) idx[i] = i;
        s = ct_dataset_subset(c->train_ds, idx, n, CT_ROLE_TRAINING, &r->train);
        if (s == CT_OK && c->val_ds != NULL)
            s = ct_dataset_subset(c->val_ds, idx, nv, CT_ROLE_VALIDATION, &r->val);
        free(idx);
        if (s != CT_OK) return s;
        goto opened;
    }
    ct_iceberg_options io = {.na_policy = c->na_policy, .na_value = c->na_value,
                             .role = CT_ROLE_TRAINING};
    ct_folder_options fo = {.role = CT_ROLE_TRAINING};
    if (!exists(c->data)) return ct_error(CT_ENOTFOUND, "%s: no such file or folder", c->data);
    if (is_dir(c->data)) s = ct_dataset_open_folder(&r->all, c->data, &fo);
    else s = ct_dataset_open_iceberg(&r->all, c->data, &io);
    if (s != CT_OK) return s;
    if (!ct_dataset_labelled(r->all))
        return ct_error(CT_EINVAL, "%s has no labels (is_iceberg): it is test data; train on "
                        "train.json and use it with `cutune predict`", c->data);
    if (c->val != NULL && c->validation_split > 0.0)
        return ct_error(CT_EINVAL, "give either --val or --validation-split, not both");
    if (c->val != NULL) {
        io.role = CT_ROLE_VALIDATION;
        fo.role = CT_ROLE_VALIDATION;
        if (!exists(c->val)) return ct_error(CT_ENOTFOUND, "%s: no such file or folder", c->val);
        s = is_dir(c->val) ? ct_dataset_open_folder(&r->val, c->val, &fo)
                           : ct_dataset_open_iceberg(&r->val, c->val, &io);
        if (s != CT_OK) return s;
        r->train = r->all;
        r->all = NULL;
        if (ct_dataset_num_classes(r->val) != ct_dataset_num_classes(r->train))
            return ct_error(CT_EINVAL, "%s has %d classes but %s has %d", c->val,
                            ct_dataset_num_classes(r->val), c->data,
                            ct_dataset_num_classes(r->train));
        for (int k = 0; k < ct_dataset_num_classes(r->train); k++)
            if (strcmp(ct_dataset_class_name(r->train, k), ct_dataset_class_name(r->val, k)) != 0)
                return ct_error(CT_EINVAL, "class %d is '%s' in %s but '%s' in %s", k,
                                ct_dataset_class_name(r->train, k), c->data,
                                ct_dataset_class_name(r->val, k), c->val);
    } else if (c->validation_split > 0.0) {
        if (!(c->validation_split < 1.0))
            return ct_error(CT_EINVAL, "--validation-split must be between 0 and 1, not %g",
                            c->validation_split);
        s = ct_dataset_split(r->all, c->validation_split, c->split_method, c->seed, &r->train,
                             &r->val);
        if (s != CT_OK) return s;
    } else {
        r->train = r->all;
        r->all = NULL;
    }
opened:
    ct_dataset_set_role(r->train, CT_ROLE_TRAINING);
    if (r->val != NULL) ct_dataset_set_role(r->val, CT_ROLE_VALIDATION);
    r->k = ct_dataset_num_classes(r->train);
    if (r->k < 2)
        return ct_error(CT_EINVAL, "%s: training needs at least 2 classes, found %d", c->data,
                        r->k);
    if (ct_dataset_count(r->train) == 0)
        return ct_error(CT_EINVAL, "%s: no training samples", c->data);
    if (r->val != NULL && ct_dataset_count(r->val) == 0)
        return ct_error(CT_EINVAL, "the validation data is empty (use a larger "
                        "--validation-split or more data)");
    if (c->verbose > 0) {
        char msg[256];
        ct_dataset_found_message(r->train, msg, sizeof msg);
        printf("%s\n", msg);
        if (r->val != NULL) {
            ct_dataset_found_message(r->val, msg, sizeof msg);
            printf("%s\n", msg);
        }
    }
    return CT_OK;
}

/* ---- model ---- */

/* Whether a head spec (or preset) has an aux:U layer. */
static bool head_uses_aux(const char *head) {
    const char *spec = strcmp(head, "iceberg") == 0 ? CT_HEAD_ICEBERG
                       : strcmp(head, "mri") == 0   ? CT_HEAD_MRI
                                                    : head;
    for (const char *p = spec; p != NULL; p = strchr(p, ',')) {
        if (*p == ',') p++;
        while (*p == ' ' || *p == '\t') p++;
        if (strncmp(p, "aux:", 4) == 0) return true;
    }
    return false;
}

static ct_status choose_head(fit_run *r) {
    const ct_train_config *c = r->c;
    int aux = ct_dataset_aux_dim(r->train);
    if (c->head != NULL) {
        snprintf(r->head, sizeof r->head, "%s", c->head);
    } else if (aux > 0) {
        snprintf(r->head, sizeof r->head, "iceberg");
    } else if (c->class_mode == CT_CLASS_BINARY) {
        snprintf(r->head, sizeof r->head, "flatten,dense:256:relu,dropout:0.5,dense:1:sigmoid");
    } else {
        snprintf(r->head, sizeof r->head, "flatten,dense:256:relu,dropout:0.5,dense:%d:softmax",
                 r->k);
    }
    /* The auxiliary input (the iceberg incidence angle) and the head must agree: a model that
     * ignores it, or expects one the data lacks, is a mistake to report before building. */
    bool uses_aux = head_uses_aux(r->head);
    if (aux > 0 && !uses_aux)
        return ct_error(CT_EINVAL, "%s has an auxiliary input (the incidence angle) for every "
                        "sample, but the head '%s' has no aux:U branch: use --head iceberg, or "
                        "add 'aux:U,concat' after the pooling layer", c->data, r->head);
    if (aux == 0 && uses_aux)
        return ct_error(CT_EINVAL, "the head '%s' takes an auxiliary input (aux:U, the iceberg "
                        "incidence angle) but %s has none (image folders carry no angle): use "
                        "the iceberg head with iceberg JSON, and a head without aux:U and concat "
                        "(e.g. mri) with class folders", r->head, c->data);
    return CT_OK;
}

static ct_status check_head_against_data(fit_run *r) {
    const ct_train_config *c = r->c;
    r->n_out = ct_model_num_outputs(r->m);
    if (ct_model_loss_kind(r->m) == CT_LOSS_BINARY_CE) {
        if (r->k != 2)
            return ct_error(CT_EINVAL, "the head ends in dense:1:sigmoid (binary) but the data "
                            "has %d classes: use dense:%d:softmax", r->k, r->k);
        if (c->class_mode != CT_CLASS_NONE && c->class_mode != CT_CLASS_BINARY)
            return ct_error(CT_EINVAL, "--class-mode must be binary for a dense:1:sigmoid head");
        r->class_mode = CT_CLASS_BINARY;
    } else {
        if (r->n_out != r->k)
            return ct_error(CT_EINVAL, "the head has %d softmax outputs but the data has %d "
                            "classes", r->n_out, r->k);
        if (c->class_mode == CT_CLASS_BINARY)
            return ct_error(CT_EINVAL, "--class-mode binary needs a dense:1:sigmoid head, and "
                            "this head ends in softmax");
        r->class_mode = c->class_mode == CT_CLASS_SPARSE ? CT_CLASS_SPARSE : CT_CLASS_CATEGORICAL;
    }
    return CT_OK;
}

static void set_lr_multipliers(fit_run *r) {
    const ct_train_config *c = r->c;
    for (int i = 0; i < ct_model_num_layers(r->m); i++) {
        ct_layer *l = ct_model_layer(r->m, i);
        int block = 0;
        if (sscanf(l->name, "block%d_", &block) == 1 && block >= 1 && block <= 5)
            l->lr_mult = c->body_lr_mult * powf(c->block_lr_decay, (float)(6 - block));
        else
            l->lr_mult = 1.0f;
    }
}

/* The freeze_to layer in force at `epoch`: the backbone during warm-up, then the target. */
static const char *freeze_at(const fit_run *r, int epoch) {
    if (r->c->warmup_epochs > 0 && epoch < r->c->warmup_epochs) return "block5_pool";
    return r->freeze_target;
}

static ct_status apply_freezing(fit_run *r, int epoch) {
    const char *f = freeze_at(r, epoch);
    if (strcmp(f, r->freeze_now) == 0 && r->compiled) return CT_OK;
    ct_status s = ct_model_freeze_to(r->m, f);
    if (s != CT_OK) return s;
    /* Keras needs a compile after trainable flags change; so does cutune's memory plan. */
    s = ct_model_compile(r->m, &r->c->optimizer);
    if (s != CT_OK) return s;
    if (r->compiled && r->c->verbose > 0)
        printf("Epoch %d: unfreezing after %d warm-up epoch(s): layers after %s train now\n",
               epoch + 1, r->c->warmup_epochs, f[0] ? f : "the input");
    snprintf(r->freeze_now, sizeof r->freeze_now, "%s", f);
    r->compiled = true;
    return CT_OK;
}

static ct_status build_model(fit_run *r) {
    const ct_train_config *c = r->c;
    int h, w, ch;
    bool in_memory = ct_dataset_in_memory(r->train, &h, &w, &ch);
    int size = c->input_size > 0 ? c->input_size : 224;
    if (in_memory) {
        if (c->input_size > 0 && (c->input_size != h || c->input_size != w))
            return ct_error(CT_EINVAL, "--input-size %d: the iceberg images are %dx%d", size, h,
                            w);
        size = h;
    }
    r->input = size;
    const char *target = c->freeze_to != NULL ? c->freeze_to : "";
    if (c->strategy != CT_STRATEGY_NONE) {
        if (c->freeze_to != NULL)
            return ct_error(CT_EINVAL, "give either --freeze-to or --strategy, not both");
        target = ct_strategy_freeze_to(r->strategy);
    }
    snprintf(r->freeze_target, sizeof r->freeze_target, "%s", target);
    /* Built frozen as the first epoch trains, so its memory is planned for that from the start
     * (an unknown layer name is reported here, with the list of names). */
    ct_model_config mc = {.input_h = size, .input_w = size, .input_c = 3,
                          .aux_dim = ct_dataset_aux_dim(r->train), .max_batch = c->batch_size,
                          .head = r->head, .seed = c->seed, .freeze_to = freeze_at(r, 0)};
    ct_status s = ct_model_init(&r->m, &mc, &r->be);
    if (s != CT_OK) return s;
    if (target[0] != '\0' && ct_model_find(r->m, target) == NULL) {
        /* With warm-up epochs the model starts frozen elsewhere: check the target now, not
         * when the warm-up ends. */
        (void)ct_model_freeze_to(r->m, target); /* the message, with the list of names */
        return ct_error(CT_EINVAL, "--freeze-to: %s", ct_last_error());
    }
    if ((s = check_head_against_data(r)) != CT_OK) return s;

    if (c->weights != NULL && strcmp(c->weights, "none") != 0) {
        ct_weights_report rep;
        s = ct_weights_load_spec(r->m, c->weights, NULL, &rep);
        if (s != CT_OK) return s;
        if (c->verbose > 0) {
            printf("weights: %s (%d layers loaded)\n", c->weights, rep.n_loaded);
            if (rep.notes[0] != '\0') printf("%s", rep.notes);
        }
    } else if (c->verbose > 0) {
        printf("weights: none (Glorot-uniform initialisation, seed %llu)\n",
               (unsigned long long)c->seed);
    }
    set_lr_multipliers(r);
    return CT_OK;
}

/* ---- class weights ---- */

static ct_status class_weights(fit_run *r) {
    const char *cw = r->c->class_weight;
    for (int k = 0; k < r->k; k++) r->class_w[k] = 1.0f;
    if (cw == NULL || cw[0] == '\0') return CT_OK;
    r->use_weights = true;
    if (strcmp(cw, "balanced") == 0) {
        /* sklearn's compute_class_weight('balanced'): n / (k * n_class). */
        size_t n = ct_dataset_count(r->train);
        for (int k = 0; k < r->k; k++) {
            size_t nk = ct_dataset_class_count(r->train, k);
            if (nk == 0)
                return ct_error(CT_EINVAL, "class weight 'balanced': class '%s' has no training "
                                "samples", ct_dataset_class_name(r->train, k));
            r->class_w[k] = (float)((double)n / ((double)r->k * (double)nk));
        }
        return CT_OK;
    }
    const char *p = cw;
    for (int k = 0; k < r->k; k++) {
        char *end = NULL;
        double v = strtod(p, &end);
        if (end == p || !(v >= 0.0) || !isfinite(v))
            return ct_error(CT_EINVAL, "--class-weight '%s': expected 'balanced' or %d "
                            "non-negative numbers separated by commas", cw, r->k);
        r->class_w[k] = (float)v;
        p = end;
        if (k < r->k - 1) {
            if (*p != ',')
                return ct_error(CT_EINVAL, "--class-weight '%s': expected %d weights, one per "
                                "class", cw, r->k);
            p++;
        }
    }
    if (*p != '\0')
        return ct_error(CT_EINVAL, "--class-weight '%s': expected %d weights, one per class", cw,
                        r->k);
    return CT_OK;
}

/* ---- loaders ---- */

static void loader_config(const fit_run *r, ct_loader_config *lc) {
    const ct_train_config *c = r->c;
    ct_loader_config_defaults(lc);
    lc->batch_size = c->batch_size;
    lc->seed = c->seed;
    lc->threads = c->threads > 0 ? c->threads : ct_default_loader_threads(&r->be);
    lc->class_mode = r->class_mode == CT_CLASS_SPARSE ? CT_CLASS_CATEGORICAL : r->class_mode;
    lc->output = CT_OUTPUT_FLOAT;
    lc->image.target_h = lc->image.target_w = r->input;
    lc->image.color_mode = c->color_mode;
    lc->image.interpolation = c->interpolation;
    lc->image.keep_aspect_ratio = c->keep_aspect_ratio;
    lc->standardize = c->standardize;
    lc->cache_bytes = c->cache_bytes;
    lc->skip_bad = c->skip_bad;
}

/* The preprocessing without --preprocess: VGG16's ImageNet weights expect caffe inputs; iceberg
 * bands are dB and stay as they are, as in the seed notebook. */
static ct_preprocess_mode default_preprocess(const fit_run *r) {
    int h, w, ch;
    return ct_dataset_in_memory(r->train, &h, &w, &ch) ? CT_PREPROCESS_NONE
                                                        : CT_PREPROCESS_CAFFE;
}

static ct_status open_loaders(fit_run *r) {
    const ct_train_config *c = r->c;
    ct_loader_config lc;
    loader_config(r, &lc);
    if (!c->preprocess_set) lc.standardize.preprocess = default_preprocess(r);
    ct_status s;
    if (lc.standardize.featurewise_center || lc.standardize.featurewise_std_normalization) {
        s = ct_loader_feature_stats(r->train, &lc, lc.standardize.mean, lc.standardize.std);
        if (s != CT_OK) return s;
    }
    r->loader_cfg = lc;
    r->loader_cfg.shuffle = false;
    ct_loader_config tlc = lc;
    tlc.shuffle = true;
    bool on_device = false;
    if ((s = ct_stream_parse_where(c->augment_on, &r->be, &on_device)) != CT_OK) return s;
    if ((s = ct_stream_init(&r->stream, r->m, r->train, on_device, &tlc)) != CT_OK) return s;
    if (c->verbose > 0 && ct_augment_enabled(&c->augment))
        printf("augmentation: %s\n", on_device
                                         ? "on the device, in the training step"
                                         : "in the loader threads");
    s = ct_loader_init_training(&r->tl, r->train, &tlc, &c->augment);
    if (s != CT_OK) return s;
    if (r->val != NULL) {
        /* Validation streams as training does (pinned buffers, the copy of the next batch
         * overlapping the current one's forward), standardising on the same side. */
        lc.shuffle = false;
        if ((s = ct_stream_init(&r->vstream, r->m, r->val, on_device, &lc)) != CT_OK) return s;
        s = ct_loader_init(&r->vl, r->val, &lc);
        if (s != CT_OK) return s;
    }
    return CT_OK;
}

/* ---- one step ---- */

/* Labels in the model's layout from a loader batch: (n, 1) 0/1 for sigmoid, (n, k) one-hot for
 * softmax; per-sample weights from the class weights. */
static void batch_targets(fit_run *r, const ct_batch *b) {
    const int n = b->n;
    for (int i = 0; i < n; i++) {
        int cls;
        if (r->n_out == 1) {
            r->labels[i] = b->y[i];
            cls = b->y[i] >= 0.5f;
        } else {
            memcpy(r->labels + (size_t)i * r->n_out, b->y + (size_t)i * r->n_out,
                   (size_t)r->n_out * sizeof(float));
            cls = 0;
            for (int j = 1; j < r->n_out; j++)
                if (b->y[(size_t)i * r->n_out + j] > b->y[(size_t)i * r->n_out + cls]) cls = j;
        }
        r->weights[i] = r->class_w[cls];
    }
}

static double batch_correct(const fit_run *r, int n) {
    double correct = 0.0;
    for (int i = 0; i < n; i++) {
        const float *p = r->probs + (size_t)i * r->n_out, *y = r->labels + (size_t)i * r->n_out;
        if (r->n_out == 1) {
            correct += (p[0] >= 0.5f) == (y[0] >= 0.5f);
        } else {
            int pa = 0, ya = 0;
            for (int j = 1; j < r->n_out; j++) {
                if (p[j] > p[pa]) pa = j;
                if (y[j] > y[ya]) ya = j;
            }
            correct += pa == ya;
        }
    }
    return correct;
}

/* The end of a numeric error's message: what is safe on disk. */
static const char *saved_note(const fit_run *r, char *buf, size_t len) {
    if (exists(r->ckpt_path))
        snprintf(buf, len, "The last good checkpoint %s is unchanged", r->ckpt_path);
    else
        snprintf(buf, len, "No checkpoint was written yet (the first is written at the end of "
                 "epoch 1)");
    return buf;
}

/* Names the first trainable tensor whose gradient is not finite. */
static ct_status check_gradients(fit_run *r, int64_t step) {
    ct_backend *be = ct_model_backend(r->m);
    for (int i = ct_model_num_layers(r->m) - 1; i >= 0; i--) {
        const ct_layer *l = ct_model_layer(r->m, i);
        const ct_tensor *t[2] = {&l->dkernel, &l->dbias};
        for (int k = 0; k < 2; k++) {
            if (t[k]->data == NULL) continue;
            bool finite = true;
            ct_status s = be->ops->check_finite(be->ctx, &finite, t[k]->data, t[k]->size);
            if (s != CT_OK) return s;
            char note[4400];
            if (!finite)
                return ct_error(CT_ENUMERIC, "step %lld: the gradient of %s is not finite (NaN or "
                                "Inf); lower the learning rate or check the data. %s",
                                (long long)step + 1, t[k]->name,
                                saved_note(r, note, sizeof note));
        }
    }
    return CT_OK;
}

/* After a non-finite loss: the first trainable tensor (kernel, bias, then output, in forward
 * order) holding a NaN or Inf, so the message can say where it started. Layers below the
 * lowest trainable one keep no outputs and their weights do not change, so they are skipped. */
static void nonfinite_culprit(fit_run *r, int n, char *buf, size_t len) {
    ct_backend *be = ct_model_backend(r->m);
    int ft = ct_model_first_trainable(r->m);
    for (int i = ft > 0 ? ft : 0; i < ct_model_num_layers(r->m); i++) {
        const ct_layer *l = ct_model_layer(r->m, i);
        const ct_tensor *t[2] = {&l->kernel, &l->bias};
        bool finite = true;
        for (int k = 0; k < 2; k++) {
            if (t[k]->data == NULL) continue;
            if (be->ops->check_finite(be->ctx, &finite, t[k]->data, t[k]->size) != CT_OK) break;
            if (!finite) {
                snprintf(buf, len, "the weights %s hold NaN or Inf (the previous update "
                         "overflowed)", t[k]->name);
                return;
            }
        }
        if (ct_model_layer_finite(r->m, i, n, &finite) == CT_OK && !finite) {
            snprintf(buf, len, "the output of layer %s is the first to hold NaN or Inf", l->name);
            return;
        }
    }
    snprintf(buf, len, "every weight and activation is finite: the loss %s overflowed",
             ct_model_loss_kind(r->m) == CT_LOSS_BINARY_CE ? "(binary cross-entropy)"
                                                           : "(categorical cross-entropy)");
}

/* A batch of images, or of cached frozen-prefix outputs. */
static ct_status forward(fit_run *r, const ct_batch *b, bool training, uint32_t step) {
    if (r->cache.active)
        return ct_model_forward_from_host(r->m, r->cache.layer + 1, b->x, b->aux, b->n, training,
                                          step);
    return ct_model_forward_host(r->m, b->x, b->aux, b->n, training, step);
}

/* The next training batch: from the cache, or from the loader and copied into a staging slot
 * (*slot; -1 for cached batches and at the end of the epoch). */
static ct_status fetch_train(fit_run *r, const ct_batch **b, int *slot) {
    if (r->cache.active) {
        *slot = -1;
        *b = fit_cache_next(r);
        return CT_OK;
    }
    return ct_stream_next(r->stream, r->tl, b, slot);
}

static ct_status release_train(fit_run *r, const ct_batch *b, int slot) {
    if (b == NULL || r->cache.active) return CT_OK;
    return ct_stream_done(r->stream, r->tl, slot);
}

/* One training step on `b` (in staging slot `slot`). Everything is queued first - input,
 * forward, loss, backward - then, while the device works, the next batch is fetched and its
 * copy queued (*next, *next_slot; only when `prefetch`), and only then does the host wait, once,
 * for the loss, the probabilities and the gradients' finite check. The update is applied after
 * the checks, so a NaN never reaches the weights. */
static ct_status train_step(fit_run *r, const ct_batch *b, int slot, bool prefetch,
                            const ct_batch **next, int *next_slot, double lr_scale,
                            double *loss_out, double *correct) {
    *next = NULL;
    *next_slot = -1;
    batch_targets(r, b);
    const uint32_t step = (uint32_t)r->st.step;
    ct_status s;
    if (r->cache.active)
        s = ct_model_forward_from_host(r->m, r->cache.layer + 1, b->x, b->aux, b->n, true, step);
    else if ((s = ct_stream_input(r->stream, slot, &r->c->augment)) == CT_OK)
        s = ct_model_forward(r->m, b->n, true, step);
    if (s == CT_OK) s = ct_model_loss_start(r->m, r->labels, r->use_weights ? r->weights : NULL);
    if (s == CT_OK) s = ct_model_backward(r->m);
    /* Cached batches come from host memory and share one buffer with `b`: no prefetch. */
    if (s == CT_OK && prefetch && !r->cache.active) s = fetch_train(r, next, next_slot);
    if (s != CT_OK) return s;
    float loss = 0.0f;
    s = ct_model_loss_value(r->m, &loss);
    if (s == CT_ENUMERIC) {
        char where[256], note[4400];
        nonfinite_culprit(r, b->n, where, sizeof where);
        return ct_error(s, "step %lld (epoch %lld, batch %lld): the loss is %s; %s. Lower the "
                        "learning rate or check the data. %s", (long long)r->st.step + 1,
                        (long long)r->st.epoch + 1, (long long)r->st.batch_in_epoch + 1,
                        isnan(loss) ? "NaN" : "infinite", where,
                        saved_note(r, note, sizeof note));
    }
    if (s != CT_OK) return s;
    if ((s = ct_model_probs(r->m, r->probs)) != CT_OK) return s;
    bool finite = true;
    if ((s = ct_model_grads_finite(r->m, &finite)) != CT_OK) return s;
    /* Name the tensor; one check per tensor only on the way to the error. */
    if (!finite && (s = check_gradients(r, r->st.step)) != CT_OK) return s;
    if (!finite) {
        char note[4400];
        return ct_error(CT_ENUMERIC, "step %lld: a gradient is not finite (NaN or Inf); lower "
                        "the learning rate or check the data. %s", (long long)r->st.step + 1,
                        saved_note(r, note, sizeof note));
    }
    if ((s = ct_model_apply_gradients(r->m, (float)lr_scale)) != CT_OK) return s;
    *loss_out = loss;
    *correct = batch_correct(r, b->n);
    return CT_OK;
}

/* ---- validation ---- */

static ct_status next_batch(fit_run *r, ct_loader *l, const ct_batch **b) {
    if (r->cache.active) {
        *b = fit_cache_next(r);
        return CT_OK;
    }
    return ct_loader_next(l, b);
}

static void release_batch(fit_run *r, ct_loader *l, const ct_batch *b) {
    if (!r->cache.active) ct_loader_release(l, b);
}

/* Validation from the loader through the stream: each batch's forward and loss are queued, the
 * next batch's copy is queued behind them, and only then does the host wait for the loss. */
typedef struct val_sums {
    fit_run *r;
    double loss_sum, correct;
    long seen;
} val_sums;

static ct_status validate_step(void *user, const ct_batch *b, int slot, const ct_batch **nb,
                               int *nslot) {
    val_sums *v = user;
    fit_run *r = v->r;
    batch_targets(r, b);
    float loss = 0.0f;
    ct_status s = ct_stream_input(r->vstream, slot, NULL);
    if (s == CT_OK) s = ct_model_forward(r->m, b->n, false, 0);
    /* Keras's val_loss has no class weights: the mean loss over the validation samples. */
    if (s == CT_OK) s = ct_model_loss_start(r->m, r->labels, NULL);
    if (s == CT_OK) s = ct_stream_next(r->vstream, r->vl, nb, nslot);
    if (s == CT_OK) s = ct_model_loss_value(r->m, &loss);
    if (s == CT_OK) s = ct_model_probs(r->m, r->probs);
    if (s == CT_OK) {
        v->loss_sum += (double)loss * b->n;
        v->correct += batch_correct(r, b->n);
        v->seen += b->n;
    }
    return s;
}

static ct_status validate(fit_run *r, double *val_loss, double *val_acc) {
    double loss_sum = 0.0, correct = 0.0;
    long seen = 0;
    ct_status s = CT_OK;
    if (!r->cache.active) {
        val_sums v = {r, 0.0, 0.0, 0};
        if ((s = ct_stream_pass(r->vstream, r->vl, 0, validate_step, &v)) != CT_OK) return s;
        *val_loss = v.seen > 0 ? v.loss_sum / v.seen : NAN;
        *val_acc = v.seen > 0 ? v.correct / v.seen : NAN;
        return CT_OK;
    }
    /* Cached frozen-prefix outputs, from host memory. */
    fit_cache_begin_epoch(r, 0, 0, false);
    for (;;) {
        const ct_batch *b = NULL;
        if ((s = next_batch(r, r->vl, &b)) != CT_OK) return s;
        if (b == NULL) break;
        batch_targets(r, b);
        float loss = 0.0f;
        s = forward(r, b, false, 0);
        /* Keras's val_loss has no class weights: the mean loss over the validation samples. */
        if (s == CT_OK) s = ct_model_loss(r->m, r->labels, NULL, &loss);
        if (s == CT_OK) s = ct_model_probs(r->m, r->probs);
        if (s != CT_OK) {
            release_batch(r, r->vl, b);
            return s;
        }
        loss_sum += (double)loss * b->n;
        correct += batch_correct(r, b->n);
        seen += b->n;
        release_batch(r, r->vl, b);
    }
    *val_loss = seen > 0 ? loss_sum / seen : NAN;
    *val_acc = seen > 0 ? correct / seen : NAN;
    return CT_OK;
}

/* ---- the run's settings, for config.txt and the resume check ---- */

static char *settings_text(const fit_run *r) {
    const ct_train_config *c = r->c;
    const ct_optimizer_config *o = &c->optimizer;
    static const char *const opt_names[] = {"sgd", "adam", "adamw"};
    size_t cap = 8192;
    char *t = malloc(cap);
    if (t == NULL) return NULL;
    snprintf(t, cap,
             "data = %s\nval = %s\nvalidation_split = %g\nsplit = %s\ninput_size = %d\n"
             "head = %s\nweights = %s\nfreeze_to = %s\nwarmup_epochs = %d\n"
             "body_lr_mult = %g\nblock_lr_decay = %g\nbatch_size = %d\nsteps_per_epoch = %ld\n"
             "optimizer = %s\nlr = %g\nmomentum = %g\nnesterov = %d\ndecay = %g\n"
             "weight_decay = %g\nl2 = %g\nschedule = %s\nclass_weight = %s\nmonitor = %s\n"
             "seed = %llu\nrotation_range = %g\nwidth_shift = %g\nheight_shift = %g\n"
             "shear_range = %g\nzoom_range = %g,%g\nchannel_shift_range = %g\n"
             "brightness_range = %g,%g\nhorizontal_flip = %d\nvertical_flip = %d\n"
             "fill_mode = %d\ncval = %g\nrescale = %g\npreprocess = %d\n",
             c->data, c->val ? c->val : "", c->validation_split,
             c->split_method == CT_SPLIT_KERAS ? "keras" : "stratified", r->input, r->head,
             c->weights ? c->weights : "none", r->freeze_target, c->warmup_epochs,
             c->body_lr_mult, c->block_lr_decay, c->batch_size, c->steps_per_epoch,
             opt_names[o->kind], o->lr, o->momentum, o->nesterov, o->decay, o->weight_decay,
             o->l2, c->schedule ? c->schedule : "constant",
             c->class_weight ? c->class_weight : "", c->monitor, (unsigned long long)c->seed,
             c->augment.rotation_range, c->augment.width_shift.value,
             c->augment.height_shift.value, c->augment.shear_range, c->augment.zoom_lo,
             c->augment.zoom_hi, c->augment.channel_shift_range, c->augment.brightness_lo,
             c->augment.brightness_hi, c->augment.horizontal_flip, c->augment.vertical_flip,
             (int)c->augment.fill_mode, c->augment.cval, c->standardize.rescale,
             (int)c->standardize.preprocess);
    /* Everything else that changes what a step computes or when the callbacks act. */
    size_t used = strlen(t);
    snprintf(t + used, cap - used,
             "class_mode = %d\ncolor_mode = %d\ninterpolation = %d\nkeep_aspect_ratio = %d\n"
             "na_policy = %d\nna_value = %g\nsamplewise_center = %d\n"
             "samplewise_std_normalization = %d\nfeaturewise_center = %d\n"
             "featurewise_std_normalization = %d\nwidth_shift_kind = %d\n"
             "height_shift_kind = %d\nskip_bad = %d\nmode = %d\npatience = %d\n"
             "min_delta = %g\nrestore_best_weights = %d\nreduce_lr_patience = %d\n"
             "reduce_lr_factor = %g\nmin_lr = %g\nreduce_lr_cooldown = %d\n",
             (int)r->class_mode, (int)c->color_mode, (int)c->interpolation,
             c->keep_aspect_ratio, (int)c->na_policy, c->na_value,
             c->standardize.samplewise_center, c->standardize.samplewise_std_normalization,
             c->standardize.featurewise_center, c->standardize.featurewise_std_normalization,
             (int)c->augment.width_shift.kind, (int)c->augment.height_shift.kind, c->skip_bad,
             (int)c->monitor_mode, c->early_stopping_patience, c->min_delta,
             c->restore_best_weights, c->reduce_lr_patience, c->reduce_lr_factor, c->min_lr,
             c->reduce_lr_cooldown);
    /* How the arithmetic runs, when asked for explicitly (a run resumed on another machine
     * with the defaults may get another backend's default). */
    if (c->precision != NULL) {
        used = strlen(t);
        snprintf(t + used, cap - used, "precision = %s\n", c->precision);
    }
    if (c->augment_on != NULL && strcmp(c->augment_on, "auto") != 0) {
        used = strlen(t);
        snprintf(t + used, cap - used, "augment_on = %s\n", c->augment_on);
    }
    /* `preprocess` above reads 0 for the default too (caffe for image folders), so an explicit
     * --preprocess other than the data's default is recorded by name as well: otherwise a run
     * started with --preprocess none on image folders would resume without it, on caffe inputs.
     * (Only when it differs, so that runs recorded before this line existed resume as before.) */
    if (c->preprocess_set && c->standardize.preprocess != default_preprocess(r)) {
        used = strlen(t);
        snprintf(t + used, cap - used, "preprocess_given = %s\n",
                 ct_preprocess_name(c->standardize.preprocess));
    }
    if (c->data_subset != NULL) {
        /* A k-fold run trains on part of `data`: resuming it on other data is refused. */
        used = strlen(t);
        snprintf(t + used, cap - used, "data_subset = %s\n", c->data_subset);
    }
    return t;
}

static ct_status write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (f == NULL) return ct_error(CT_EIO, "%s: cannot write: %s", path, strerror(errno));
    fputs(text, f);
    if (fclose(f) != 0) return ct_error(CT_EIO, "%s: write failed", path);
    return CT_OK;
}

/* On --resume, every setting but the epoch count must be what the run started with. */
/* Whether the lines from `text` on hold a line starting with `key` (len bytes) and " = ". */
static bool has_key(const char *text, const char *key, size_t len) {
    for (const char *p = text; *p != '\0'; p += strcspn(p, "\n"), p += *p == '\n') {
        if (strncmp(p, key, len) == 0 && strncmp(p + len, " = ", 3) == 0) return true;
    }
    return false;
}

static size_t key_len(const char *line, size_t len) {
    const char *eq = strstr(line, " = ");
    return eq != NULL && (size_t)(eq - line) < len ? (size_t)(eq - line) : len;
}

static ct_status check_resume_settings(const fit_run *r, const char *saved) {
    const char *a = saved, *b = r->config_text;
    while (*a != '\0' || *b != '\0') {
        size_t la = strcspn(a, "\n"), lb = strcspn(b, "\n");
        if (la != lb || strncmp(a, b, la) != 0) {
            /* Settings recorded only when given (precision, augment_on) may be missing on one
             * side: then that side's line is "(not set)". */
            size_t ka = key_len(a, la), kb = key_len(b, lb);
            bool same_key = la > 0 && lb > 0 && ka == kb && strncmp(a, b, ka) == 0;
            if (!same_key && la > 0 && lb > 0) {
                if (has_key(b, a, ka))
                    la = 0; /* the run lacks b's line */
                else
                    lb = 0; /* the new flags lack a's line */
            }
            return ct_error(CT_EINVAL, "--resume: the flags differ from the run's: it has '%.*s', "
                            "now '%.*s' (only --epochs may change)", la > 0 ? (int)la : 9,
                            la > 0 ? a : "(not set)", lb > 0 ? (int)lb : 9,
                            lb > 0 ? b : "(not set)");
        }
        a += la + (a[la] == '\n');
        b += lb + (b[lb] == '\n');
    }
    return CT_OK;
}

/* ---- callbacks at the end of an epoch ---- */

static const char *const LOG_KEYS[FIT_KEYS] = {"acc", "loss", "lr", "val_acc", "val_loss"};

static int n_log_keys(const fit_run *r) { return r->val != NULL ? FIT_KEYS : 3; }

static double log_value(const double *row, const char *name) {
    for (int i = 0; i < FIT_KEYS; i++)
        if (strcmp(LOG_KEYS[i], name) == 0) return row[i];
    return NAN;
}

static ct_status save_weights(fit_run *r, const char *path) {
    const char *names[CT_MAX_CLASSES];
    for (int k = 0; k < r->k; k++) names[k] = ct_dataset_class_name(r->train, k);
    /* The full standardisation (with featurewise statistics) travels with the weights, so
     * predict feeds the model what it was trained on. */
    char pre[512];
    ct_standardize_format(&r->loader_cfg.standardize, pre, sizeof pre);
    ct_weights_save_opts o = {.preprocessing = pre, .class_names = names, .n_classes = r->k};
    return ct_weights_save(r->m, path, &o);
}

static ct_status save_checkpoint(fit_run *r) {
    const char *names[CT_MAX_CLASSES];
    for (int k = 0; k < r->k; k++) names[k] = ct_dataset_class_name(r->train, k);
    ct_weights_save_opts o = {.class_names = names, .n_classes = r->k};
    r->st.config = r->config_text;
    ct_status s = ct_checkpoint_save(r->m, r->ckpt_path, &o, &r->st);
    r->st.config = NULL;
    return s;
}

static void print_epoch_line(const fit_run *r, const double *row, double seconds) {
    printf(" - %.0fs - loss: %.4f - acc: %.4f", seconds, log_value(row, "loss"),
           log_value(row, "acc"));
    if (r->val != NULL)
        printf(" - val_loss: %.4f - val_acc: %.4f", log_value(row, "val_loss"),
               log_value(row, "val_acc"));
    printf("\n");
}

static ct_status write_curves(fit_run *r, int epochs) {
    double *loss = malloc(4 * (size_t)epochs * sizeof(double));
    if (loss == NULL) return ct_error(CT_ENOMEM, "cannot allocate the curves");
    double *vloss = loss + epochs, *acc = vloss + epochs, *vacc = acc + epochs;
    for (int e = 0; e < epochs; e++) {
        const double *row = r->history + (size_t)e * FIT_KEYS;
        loss[e] = log_value(row, "loss");
        acc[e] = log_value(row, "acc");
        vloss[e] = log_value(row, "val_loss");
        vacc[e] = log_value(row, "val_acc");
    }
    ct_status s = ct_curves_write(r->curves_path, loss, vloss, acc, vacc, epochs);
    free(loss);
    return s;
}

/* ---- the run ---- */

/* config.txt as written when the run started, or NULL. */
static char *read_settings(const char *path) {
    FILE *f = fopen(path, "r");
    if (f == NULL) return NULL;
    size_t cap = 16384, n = 0;
    char *t = malloc(cap);
    if (t != NULL) {
        n = fread(t, 1, cap - 1, f);
        t[n] = '\0';
    }
    bool ok = t != NULL && !ferror(f) && feof(f);
    fclose(f);
    if (!ok) {
        free(t);
        return NULL;
    }
    return t;
}

static ct_status resume(fit_run *r, ct_early_stopping *es, ct_reduce_lr *rl) {
    /* Changed flags first, from config.txt, so that a different optimizer, head or freezing is
     * reported as the flag it is rather than as a checkpoint that does not fit the model (the
     * checkpoint's own copy is checked again below). */
    char *started = read_settings(r->config_path);
    if (started != NULL) {
        ct_status cs = check_resume_settings(r, started);
        free(started);
        if (cs != CT_OK) return cs;
    }
    /* The log says how many epochs finished, hence which freezing the checkpoint was saved
     * under (warm-up or target); the other is tried if the checkpoint disagrees. */
    const char *keys[FIT_KEYS];
    int nk = n_log_keys(r);
    for (int i = 0; i < nk; i++) keys[i] = LOG_KEYS[i];
    int rows = 0;
    ct_status s = ct_csv_log_read(r->log_path, keys, nk, r->history, r->c->epochs + 1000, &rows);
    if (s != CT_OK) return s;
    if ((s = apply_freezing(r, rows)) != CT_OK) return s;
    s = ct_checkpoint_load(r->m, r->ckpt_path, &r->st);
    if (s != CT_OK && r->c->warmup_epochs > 0) {
        r->compiled = false;
        r->freeze_now[0] = '\0';
        const char *other = strcmp(freeze_at(r, rows), "block5_pool") == 0 ? r->freeze_target
                                                                             : "block5_pool";
        if (ct_model_freeze_to(r->m, other) == CT_OK &&
            ct_model_compile(r->m, &r->c->optimizer) == CT_OK) {
            snprintf(r->freeze_now, sizeof r->freeze_now, "%s", other);
            r->compiled = true;
            s = ct_checkpoint_load(r->m, r->ckpt_path, &r->st);
        }
    }
    if (s != CT_OK) return s;
    if (r->st.config == NULL || (s = check_resume_settings(r, r->st.config)) != CT_OK) {
        if (r->st.config == NULL)
            s = ct_error(CT_EFORMAT, "%s: the checkpoint has no run settings", r->ckpt_path);
        return s;
    }
    free(r->st.config);
    r->st.config = NULL;
    if (r->st.epoch > rows)
        return ct_error(CT_EFORMAT, "%s has %d epochs but the checkpoint is at epoch %lld",
                        r->log_path, rows, (long long)r->st.epoch);
    /* Rewrite the log with exactly the epochs the checkpoint has seen. */
    if ((s = ct_csv_log_open(&r->log, r->log_path, LOG_KEYS, nk, false)) != CT_OK) return s;
    for (int e = 0; e < r->st.epoch; e++) {
        double v[FIT_KEYS];
        for (int i = 0; i < nk; i++) v[i] = r->history[(size_t)e * FIT_KEYS + i];
        if ((s = ct_csv_log_row(&r->log, e, v)) != CT_OK) return s;
    }
    es->mon.best = r->st.es_best;
    es->wait = (int)r->st.patience_wait;
    es->best_epoch = (int)r->st.best_epoch;
    rl->mon.best = r->st.plateau_best;
    rl->wait = (int)r->st.plateau_wait;
    rl->cooldown_counter = (int)r->st.plateau_cooldown;
    if (r->c->verbose > 0)
        printf("resuming %s at epoch %lld, batch %lld (step %lld)\n", r->c->out_dir,
               (long long)r->st.epoch + 1, (long long)r->st.batch_in_epoch + 1,
               (long long)r->st.step + 1);
    return CT_OK;
}

/* The epoch whose weights best.h5 holds: ModelCheckpoint's choice (the monitor's best, no
 * min_delta) over the first `epochs` rows of the history; -1 when none improved. */
static int best_saved_epoch(const fit_run *r, const char *monitor, int epochs) {
    ct_monitor scan;
    int best = -1;
    if (ct_monitor_init(&scan, monitor, r->c->monitor_mode, 0.0) != CT_OK) return -1;
    for (int e = 0; e < epochs; e++) {
        double v = log_value(r->history + (size_t)e * FIT_KEYS, monitor);
        if (ct_monitor_better(&scan, v, scan.best)) {
            scan.best = v;
            best = e;
        }
    }
    return best;
}

static ct_status run_epochs(fit_run *r, ct_train_result *res) {
    const ct_train_config *c = r->c;
    ct_status s;
    ct_monitor mon;
    const char *monitor = c->monitor;
    if (r->val == NULL && strncmp(monitor, "val_", 4) == 0) monitor += 4;
    bool known = false;
    for (int i = 0; i < n_log_keys(r); i++) known |= strcmp(LOG_KEYS[i], monitor) == 0;
    if (!known || strcmp(monitor, "lr") == 0)
        return ct_error(CT_EINVAL, "--monitor %s: not a logged metric (loss, acc%s)", c->monitor,
                        r->val != NULL ? ", val_loss, val_acc" : "");
    if (monitor != c->monitor && c->verbose > 0)
        printf("no validation data: monitoring '%s' instead of '%s'\n", monitor, c->monitor);
    if ((s = ct_monitor_init(&mon, monitor, c->monitor_mode, 0.0)) != CT_OK) return s;
    ct_monitor es_mon = mon;
    es_mon.min_delta = c->min_delta;
    ct_early_stopping es;
    ct_early_stopping_init(&es, &es_mon, c->early_stopping_patience);
    ct_reduce_lr rl;
    ct_monitor rl_mon = mon;
    rl_mon.min_delta = 1e-4; /* Keras's ReduceLROnPlateau default */
    ct_reduce_lr_init(&rl, &rl_mon);
    if (c->reduce_lr_patience >= 0) {
        rl.patience = c->reduce_lr_patience;
        rl.factor = c->reduce_lr_factor;
        rl.min_lr = c->min_lr;
        rl.cooldown = c->reduce_lr_cooldown;
    }

    memset(&r->st, 0, sizeof r->st);
    r->st.seed = c->seed;
    r->st.lr_scale = 1.0;
    r->st.best_metric = mon.best;
    /* The callbacks' starting state, so that a checkpoint written before the end of the first
     * epoch resumes them as they start (best = +-inf), not from zeros. */
    r->st.best_epoch = es.best_epoch;
    r->st.es_best = es.mon.best;
    r->st.patience_wait = es.wait;
    r->st.plateau_best = rl.mon.best;
    r->st.plateau_wait = rl.wait;
    r->st.plateau_cooldown = rl.cooldown_counter;
    snprintf(r->st.monitor, sizeof r->st.monitor, "%s", monitor);
    if (c->resume) {
        if ((s = resume(r, &es, &rl)) != CT_OK) return s;
        mon.best = r->st.best_metric;
    } else {
        if ((s = apply_freezing(r, 0)) != CT_OK) return s;
        if ((s = write_text(r->config_path, r->config_text)) != CT_OK) return s;
        r->wrote_config = true;
        if ((s = ct_csv_log_open(&r->log, r->log_path, LOG_KEYS, n_log_keys(r), false)) != CT_OK)
            return s;
        r->wrote_log = true;
    }

    const long n_batches = (long)ct_loader_num_batches(r->tl);
    const long steps = c->steps_per_epoch > 0 && c->steps_per_epoch < n_batches
                           ? c->steps_per_epoch
                           : n_batches;
    const bool tty = isatty(fileno(stdout));
    for (int epoch = (int)r->st.epoch; epoch < c->epochs; epoch++) {
        if ((s = apply_freezing(r, epoch)) != CT_OK) return s;
        if ((s = fit_cache_prepare(r)) != CT_OK) return s;
        const double lr_scale = ct_schedule_factor(&r->schedule, epoch) * r->st.lr_scale;
        if (r->cache.active)
            fit_cache_begin_epoch(r, (uint32_t)epoch, (uint32_t)r->st.batch_in_epoch, true);
        else if ((s = ct_loader_begin_epoch_at(r->tl, (uint32_t)epoch,
                                               (uint32_t)r->st.batch_in_epoch)) != CT_OK)
            return s;
        if (c->verbose > 0) {
            printf("Epoch %d/%d\n", epoch + 1, c->epochs);
            fflush(stdout); /* a piped or tee'd log follows the run, not its exit */
        }
        ct_progbar bar;
        const double t0 = now_seconds();
        ct_progbar_init(&bar, steps, stdout, tty && c->verbose == 1, t0);
        const ct_batch *b = NULL;
        int slot = -1;
        if (r->st.batch_in_epoch < steps && (s = fetch_train(r, &b, &slot)) != CT_OK) return s;
        while (r->st.batch_in_epoch < steps && b != NULL) {
            double loss = 0.0, correct = 0.0;
            const ct_batch *nb = NULL;
            int nslot = -1;
            const bool last_before_stop =
                stop_after_steps > 0 && steps_this_call + 1 >= stop_after_steps;
            const bool prefetch = r->st.batch_in_epoch + 1 < steps && !last_before_stop;
            s = train_step(r, b, slot, prefetch, &nb, &nslot, lr_scale, &loss, &correct);
            int n = b->n;
            /* Giving the batches back must not replace the step's own error message. */
            char msg[4096] = "";
            if (s != CT_OK) snprintf(msg, sizeof msg, "%s", ct_last_error());
            ct_status rs = release_train(r, b, slot);
            b = nb;
            slot = nslot;
            if (s == CT_OK && rs != CT_OK) {
                s = rs;
                snprintf(msg, sizeof msg, "%s", ct_last_error());
            }
            if (s != CT_OK) {
                (void)release_train(r, b, slot);
                return ct_error(s, "%s", msg);
            }
            r->st.epoch_loss_sum += loss * n;
            r->st.epoch_correct += correct;
            r->st.epoch_seen += n;
            r->st.step++;
            r->st.batch_in_epoch++;
            r->st.sample_in_epoch += n;
            if (stop_after_steps > 0 && ++steps_this_call >= stop_after_steps) stop_requested = 1;
            if (b == NULL && r->cache.active && !stop_requested && r->st.batch_in_epoch < steps)
                b = fit_cache_next(r);
            if (c->verbose == 1) {
                const char *names[2] = {"loss", "acc"};
                double vals[2] = {r->st.epoch_loss_sum / r->st.epoch_seen,
                                  r->st.epoch_correct / r->st.epoch_seen};
                ct_progbar_update(&bar, r->st.batch_in_epoch, names, vals, 2, now_seconds());
            }
            if (stop_requested) {
                if ((s = release_train(r, b, slot)) != CT_OK) return s;
                if (c->verbose > 0) fputc('\n', stdout);
                if ((s = save_checkpoint(r)) != CT_OK) return s;
                res->interrupted = true;
                return ct_error(CT_EINTR, "interrupted at epoch %lld, batch %lld: checkpoint "
                                "written to %s; continue with --resume",
                                (long long)r->st.epoch + 1, (long long)r->st.batch_in_epoch,
                                r->ckpt_path);
            }
        }
        if ((s = release_train(r, b, slot)) != CT_OK) return s;
        double row[FIT_KEYS] = {r->st.epoch_correct / r->st.epoch_seen,
                                r->st.epoch_loss_sum / r->st.epoch_seen,
                                c->optimizer.lr * lr_scale, NAN, NAN};
        if (r->val != NULL && (s = validate(r, &row[4], &row[3])) != CT_OK) return s;
        if (c->verbose == 2 || (c->verbose == 1 && !tty)) print_epoch_line(r, row, now_seconds() - t0);
        else if (c->verbose == 1 && r->val != NULL)
            printf("  val_loss: %.4f - val_acc: %.4f\n", row[4], row[3]);
        memcpy(r->history + (size_t)epoch * FIT_KEYS, row, sizeof row);
        if ((s = ct_csv_log_row(&r->log, epoch, row)) != CT_OK) return s;
        if ((s = write_curves(r, epoch + 1)) != CT_OK) return s;
        r->wrote_curves = true;

        double value = log_value(row, monitor);
        bool improved = false, stop = false;
        if (c->early_stopping_patience >= 0) stop = ct_early_stopping_update(&es, epoch, value, &improved);
        /* ModelCheckpoint(save_best_only=True): no min_delta, as in Keras. */
        if (ct_monitor_better(&mon, value, mon.best)) {
            if (c->verbose > 0)
                printf("Epoch %d: %s improved from %.5f to %.5f, saving model to %s\n", epoch + 1,
                       monitor, mon.best, value, r->best_path);
            mon.best = value;
            r->st.best_metric = value;
            /* EarlyStopping's best epoch (with --min-delta) is always also a checkpoint
             * improvement, so best.h5 held it when it happened. A checkpoint improvement that
             * EarlyStopping does not count would replace it: for --restore-best-weights it moves
             * to es_best.h5 first (once; later such epochs just replace best.h5). */
            if (c->restore_best_weights && c->early_stopping_patience >= 0 && !improved &&
                exists(r->best_path) && !exists(r->es_best_path) &&
                rename(r->best_path, r->es_best_path) != 0)
                return ct_error(CT_EIO, "%s: cannot keep EarlyStopping's best weights as %s: %s",
                                r->best_path, r->es_best_path, strerror(errno));
            if ((s = save_weights(r, r->best_path)) != CT_OK) return s;
            if (improved && exists(r->es_best_path) && remove(r->es_best_path) != 0)
                return ct_error(CT_EIO, "%s: cannot remove: %s", r->es_best_path,
                                strerror(errno));
        } else if (c->verbose > 0) {
            printf("Epoch %d: %s did not improve from %.5f\n", epoch + 1, monitor, mon.best);
        }
        if (c->reduce_lr_patience >= 0) {
            double lr = c->optimizer.lr * r->st.lr_scale;
            if (ct_reduce_lr_update(&rl, value, &lr)) {
                if (c->verbose > 0)
                    printf("Epoch %d: ReduceLROnPlateau reducing learning rate to %g.\n",
                           epoch + 1, lr);
                r->st.lr_scale = lr / c->optimizer.lr;
            }
        }
        r->st.epoch = epoch + 1;
        r->st.batch_in_epoch = 0;
        r->st.sample_in_epoch = 0;
        r->st.epoch_loss_sum = r->st.epoch_correct = 0.0;
        r->st.epoch_seen = 0;
        r->st.es_best = es.mon.best;
        r->st.patience_wait = es.wait;
        r->st.best_epoch = es.best_epoch;
        r->st.plateau_best = rl.mon.best;
        r->st.plateau_wait = rl.wait;
        r->st.plateau_cooldown = rl.cooldown_counter;
        if ((s = save_checkpoint(r)) != CT_OK) return s;
        fflush(stdout);
        res->epochs_run = epoch + 1;
        res->final_loss = row[1];
        res->final_acc = row[0];
        res->final_val_loss = row[4];
        res->final_val_acc = row[3];
        if (stop) {
            res->stopped_early = true;
            if (c->verbose > 0) printf("Epoch %d: early stopping\n", epoch + 1);
            /* Keras restores EarlyStopping's best (with min_delta): es_best.h5 when a later
             * checkpoint improvement replaced best.h5, else best.h5. */
            const char *from = exists(r->es_best_path) ? r->es_best_path : r->best_path;
            if (c->restore_best_weights && es.best_epoch >= 0 && exists(from)) {
                if (c->verbose > 0)
                    printf("Restoring model weights from the end of the best epoch: %d (%s).\n",
                           es.best_epoch + 1, from);
                if ((s = ct_weights_load(r->m, from, NULL, NULL)) != CT_OK) return s;
            }
            break;
        }
    }
    res->best_value = mon.best;
    res->best_epoch = best_saved_epoch(r, monitor, (int)r->st.epoch);
    if ((s = save_weights(r, r->final_path)) != CT_OK) return s;
    snprintf(res->final_path, sizeof res->final_path, "%s", r->final_path);
    snprintf(res->best_path, sizeof res->best_path, "%s", r->best_path);
    if (c->verbose > 0)
        printf("saved %s (best: %s, %s %.5f)\n", r->final_path, r->best_path, monitor, mon.best);
    return CT_OK;
}

static void fit_free(fit_run *r) {
    fit_cache_free(&r->cache);
    ct_loader_free(r->tl); /* before the buffers its workers fill */
    ct_loader_free(r->vl);
    ct_stream_free(r->vstream);
    ct_stream_free(r->stream);
    r->stream = NULL;
    ct_model_free(r->m);
    ct_backend_free(&r->be);
    if (r->val != NULL) ct_dataset_free(r->val);
    if (r->train != NULL) ct_dataset_free(r->train);
    if (r->all != NULL) ct_dataset_free(r->all);
    free(r->labels);
    free(r->weights);
    free(r->probs);
    free(r->history);
    free(r->config_text);
    free(r->st.config);
}

/* ---- out of device memory: the largest batch that fits ---- */

/* Bytes the model's arenas (parameters, gradients, optimizer slots, activations) and the
 * streaming buffers need at batch `n`, with the trainable flags the run ends with. The plan
 * depends only on the layers, the flags and the activations' type (bf16 at bf16 precision), not
 * on the backend, so it is read off a model built on the CPU backend at that precision. */
static ct_status planned_bytes(const fit_run *r, int n, bool on_device, size_t *bytes) {
    ct_backend cpu;
    const bool bf16 = strcmp(ct_backend_precision(&r->be), "bf16") == 0;
    /* 0 threads: leaves the thread settings alone */
    ct_status s = ct_backend_cpu_open(&cpu, 0, bf16 ? "bf16" : "fp32");
    if (s != CT_OK) return s;
    ct_model_config mc = {.input_h = r->input, .input_w = r->input, .input_c = 3,
                          .aux_dim = ct_dataset_aux_dim(r->train), .max_batch = n,
                          .head = r->head, .seed = r->c->seed, .freeze_to = r->freeze_target};
    ct_model *m = NULL;
    s = ct_model_init(&m, &mc, &cpu);
    if (s == CT_OK) s = ct_model_compile(m, &r->c->optimizer);
    if (s == CT_OK) {
        ct_model_memory mem;
        ct_model_memory_get(m, &mem);
        /* The staging slots of the training stream and of the validation stream, as
         * stream.c allocates them: raw uint8 pixels and the sample indices on the device path
         * (floats for in-memory data), finished floats on the loader path. */
        int h, w, ch;
        const bool f32 = ct_dataset_in_memory(r->train, &h, &w, &ch);
        const size_t px = (size_t)r->input * r->input * 3 *
                          (on_device && !f32 ? 1 : sizeof(float));
        const size_t per = px + (on_device ? sizeof(uint32_t) : 0) +
                           (size_t)mc.aux_dim * sizeof(float);
        const size_t streams = r->val != NULL ? 2 : 1;
        *bytes = mem.params + mem.grads + mem.optimizer + mem.activations +
                 streams * CT_STAGE_SLOTS * n * per;
        /* At fp32 the CUDA backend may run a convolution through NCHW copies of its input and
         * output (cuda/conv.cu, "Layout route"): two more of the widest activation, block1's. */
        if (strcmp(ct_backend_precision(&r->be), "fp32") == 0 && r->be.ops != NULL &&
            strcmp(r->be.ops->name, "cuda") == 0)
            *bytes += 2 * (size_t)n * r->input * r->input * 64 * sizeof(float);
    }
    ct_model_free(m);
    ct_backend_free(&cpu);
    return s;
}

int ct_default_loader_threads(const ct_backend *be) {
    if (be == NULL || be->ops == NULL || strcmp(be->ops->name, "cpu") == 0) return 2;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    long t = cores - 1;
    return (int)(t < 2 ? 2 : t > 8 ? 8 : t);
}

long ct_train_cudnn_batch_cap(int input) {
    if (input <= 0) return 0;
    /* The widest activation of VGG16 is block1's: input x input x 64 per sample. */
    const size_t per = (size_t)input * (size_t)input * 64;
    return (long)((((size_t)1 << 31) - 1) / per);
}

int ct_train_largest_batch(size_t fixed, size_t per_sample, size_t available) {
    if (per_sample == 0 || available <= fixed) return 0;
    /* cuDNN's workspace and the libraries' pools grow with the batch too; keep a tenth back. */
    size_t usable = (available - fixed) / 10 * 9;
    size_t n = usable / per_sample;
    return n > 1000000 ? 1000000 : (int)n;
}

/* Appends to an out-of-memory error on the device (CT_EDEVMEM; host allocations, such as the
 * frozen-prefix cache's, fail with CT_ENOMEM and get no batch-size advice) the largest batch
 * that should fit. */
static void oom_hint(fit_run *r) {
    if (r->be.ops == NULL || strcmp(r->be.ops->name, "cpu") == 0 || r->input == 0) return;
    char msg[2048];
    snprintf(msg, sizeof msg, "%s", ct_last_error());
    const bool on_device = r->stream != NULL && ct_stream_on_device(r->stream);
    /* What this run holds is released first, so the device's free memory is what a new run with
     * a smaller batch would start from. */
    ct_loader_free(r->tl);
    r->tl = NULL;
    ct_stream_free(r->stream);
    r->stream = NULL;
    ct_loader_free(r->vl);
    r->vl = NULL;
    ct_stream_free(r->vstream);
    r->vstream = NULL;
    ct_model_free(r->m);
    r->m = NULL;
    size_t b1 = 0, b2 = 0, used = 0, total = 0;
    if (planned_bytes(r, 1, on_device, &b1) != CT_OK ||
        planned_bytes(r, 2, on_device, &b2) != CT_OK || b2 <= b1 ||
        ct_cuda_memory_used(0, &used, &total) != CT_OK) {
        ct_error(CT_EDEVMEM, "%s", msg);
        return;
    }
    const size_t per = b2 - b1, fixed = b1 - per;
    int fit = ct_train_largest_batch(fixed, per, total - used);
    /* cuDNN's descriptors take 32-bit sizes: no activation tensor may reach 2^31 elements. */
    const long cap = ct_train_cudnn_batch_cap(r->input);
    const bool capped = cap > 0 && fit > cap;
    if (capped) fit = (int)cap;
    ct_error(CT_EDEVMEM,
             "%s. At %dx%d with these frozen layers the model needs %zu MiB plus %.1f MiB per "
             "sample; with %zu MiB of device memory free, the largest batch that fits is about "
             "%d%s: try --batch-size %d%s",
             msg, r->input, r->input, fixed >> 20, (double)per / (1 << 20), (total - used) >> 20,
             fit, capped ? " (cuDNN's 32-bit tensor sizes allow no more)" : "", fit > 0 ? fit : 1,
             fit > 0 ? "" : " (nothing fits: free device memory, or freeze more layers)");
}

ct_status ct_train(const ct_train_config *c, ct_train_result *res) {
    fit_run r;
    memset(&r, 0, sizeof r);
    memset(res, 0, sizeof *res);
    res->best_epoch = -1;
    r.c = c;
    stop_requested = 0;
    stop_after_steps = steps_this_call = 0;
    ct_status s;
    const char *stop_env = getenv("CUTUNE_STOP_AFTER_STEPS");
    if (stop_env != NULL && stop_env[0] != '\0') {
        char *end = NULL;
        errno = 0;
        long v = strtol(stop_env, &end, 10);
        if (errno != 0 || end == stop_env || *end != '\0' || v < 1)
            return ct_error(CT_EINVAL, "CUTUNE_STOP_AFTER_STEPS='%s': expected a whole number of "
                            "steps, at least 1 (or unset it)", stop_env);
        stop_after_steps = v;
    }
    if (c->epochs < 1) return ct_error(CT_EINVAL, "--epochs must be at least 1");
    if (c->batch_size < 1) return ct_error(CT_EINVAL, "--batch-size must be at least 1");
    if (c->color_mode != CT_COLOR_RGB)
        return ct_error(CT_EINVAL, "--color-mode %s: VGG16 reads 3-channel images, so training "
                        "takes --color-mode rgb (the default), which reads grayscale files as RGB "
                        "with the gray value in each channel, as Keras's color_mode='rgb' does",
                        c->color_mode == CT_COLOR_GRAYSCALE ? "grayscale" : "rgba");
    if ((s = ct_schedule_parse(&r.schedule, c->schedule, c->epochs)) != CT_OK) return s;
    if ((s = prepare_run_dir(&r)) != CT_OK) return s;
    if ((s = open_data(&r)) != CT_OK) goto done;
    if ((s = class_weights(&r)) != CT_OK) goto done;
    r.strategy = c->strategy;
    if (c->strategy == CT_STRATEGY_AUTO && (s = ct_fit_auto_strategy(&r, &r.strategy)) != CT_OK)
        goto done;
    if ((s = choose_head(&r)) != CT_OK) goto done;
    char note[512];
    /* --deterministic: the CUDA backend reads CUTUNE_DETERMINISTIC when it starts (only
     * deterministic cuDNN algorithms); the CPU backend always is. */
    if (c->deterministic) setenv("CUTUNE_DETERMINISTIC", "1", 1);
    if ((s = ct_backend_open(&r.be, c->device, c->precision, note, sizeof note)) != CT_OK)
        goto done;
    if (note[0] != '\0') fprintf(stderr, "cutune train: %s\n", note);
    if (c->verbose > 0) {
        ct_device_info dev;
        if (ct_cuda_backend_device(&r.be, &dev) == CT_OK)
            printf("device: %s (compute capability %d.%d, %.0f GiB), precision %s\n", dev.name,
                   dev.cc_major, dev.cc_minor, dev.total_mem / 1073741824.0,
                   ct_backend_precision(&r.be));
        else
            printf("device: %s, precision %s\n", r.be.ops->name, ct_backend_precision(&r.be));
    }
    if ((s = build_model(&r)) != CT_OK) goto done;
    r.labels = malloc((size_t)c->batch_size * r.n_out * sizeof(float));
    r.weights = malloc((size_t)c->batch_size * sizeof(float));
    r.probs = malloc((size_t)c->batch_size * r.n_out * sizeof(float));
    r.history = calloc((size_t)(c->epochs + 1000) * FIT_KEYS, sizeof(double));
    r.config_text = settings_text(&r);
    if (r.labels == NULL || r.weights == NULL || r.probs == NULL || r.history == NULL ||
        r.config_text == NULL) {
        s = ct_error(CT_ENOMEM, "cannot allocate the training buffers");
        goto done;
    }
    if ((s = open_loaders(&r)) != CT_OK) goto done;
    s = run_epochs(&r, res);
done:
    if (s == CT_EDEVMEM) oom_hint(&r);
    if (s != CT_OK && s != CT_EINTR) {
        /* The loader's and the log's files are closed first. */
        char msg[4096];
        snprintf(msg, sizeof msg, "%s", ct_last_error());
        fit_free(&r);
        discard_failed_start(&r);
        return ct_error(s, "%s", msg);
    }
    fit_free(&r);
    return s;
}
