/* Setting up a run: the training and validation data, the class weights, the head, the model
 * with its weights and learning-rate multipliers, the freezing of the current epoch, the
 * loaders and streams, and --strategy auto's advice. Everything here runs once per run (the
 * freezing once per change), before or between epochs. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fit.h"

/* ---- data ---- */

ct_status fit_open_data(fit_run *r) {
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
    if (!fit_exists(c->data)) return ct_error(CT_ENOTFOUND, "%s: no such file or folder", c->data);
    if (fit_is_dir(c->data)) s = ct_dataset_open_folder(&r->all, c->data, &fo);
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
        if (!fit_exists(c->val)) return ct_error(CT_ENOTFOUND, "%s: no such file or folder", c->val);
        s = fit_is_dir(c->val) ? ct_dataset_open_folder(&r->val, c->val, &fo)
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
    /* Here, not after `opened`: k-fold's folds arrive with their data open, and folds.c has
     * said it once for all of them. */
    if (c->png16 == CT_PNG16_CLIP && c->verbose >= 0)
        ct_png16_note(ct_dataset_png16_count(r->train) + ct_dataset_png16_count(r->val),
                      c->png16, c->data);
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

ct_status fit_choose_head(fit_run *r) {
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

const char *fit_freeze_at(const fit_run *r, int epoch) {
    if (r->c->warmup_epochs > 0 && epoch < r->c->warmup_epochs)
        return ct_strategy_freeze_to_for(r->c->backbone, CT_STRATEGY_HEAD);
    return r->freeze_target;
}

ct_status fit_apply_freezing(fit_run *r, int epoch) {
    const char *f = fit_freeze_at(r, epoch);
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

ct_status fit_build_model(fit_run *r) {
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
        target = ct_strategy_freeze_to_for(c->backbone, r->strategy);
    }
    snprintf(r->freeze_target, sizeof r->freeze_target, "%s", target);
    /* Built frozen as the first epoch trains, so its memory is planned for that from the start
     * (an unknown layer name is reported here, with the list of names). */
    ct_model_config mc = {.backbone = c->backbone,
                          .input_h = size,
                          .input_w = size,
                          .input_c = 3,
                          .aux_dim = ct_dataset_aux_dim(r->train),
                          .max_batch = c->batch_size,
                          .head = r->head,
                          .seed = c->seed,
                          .freeze_to = fit_freeze_at(r, 0)};
    ct_status s = ct_model_init(&r->m, &mc, &r->be);
    if (s != CT_OK) return s;
    if (target[0] != '\0' && ct_model_find(r->m, target) == NULL) {
        /* With warm-up epochs the model starts frozen elsewhere: check the target now, not
         * when the warm-up ends. */
        (void)ct_model_freeze_to(r->m, target); /* the message, with the list of names */
        return ct_error(CT_EINVAL, "--freeze-to: %s", ct_last_error());
    }
    if ((s = check_head_against_data(r)) != CT_OK) return s;

    if (r->resuming) {
        /* The checkpoint holds every weight: the pretrained file is not needed (nor read). */
        if (c->verbose > 0) printf("weights: from %s\n", r->path.ckpt);
    } else if (c->weights != NULL && strcmp(c->weights, "none") != 0) {
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

ct_status fit_class_weights(fit_run *r) {
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
    lc->image.png16 = c->png16;
    lc->standardize = c->standardize;
    lc->cache_bytes = c->cache_bytes;
    lc->skip_bad = c->skip_bad;
}

/* The preprocessing without --preprocess: VGG16's ImageNet weights expect caffe inputs; iceberg
 * bands are dB and stay as they are, as in the seed notebook. */
ct_preprocess_mode fit_default_preprocess(const fit_run *r) {
    int h, w, ch;
    return ct_dataset_in_memory(r->train, &h, &w, &ch) ? CT_PREPROCESS_NONE
                                                        : CT_PREPROCESS_CAFFE;
}

ct_status fit_open_loaders(fit_run *r) {
    const ct_train_config *c = r->c;
    ct_loader_config lc;
    loader_config(r, &lc);
    if (!c->preprocess_set) lc.standardize.preprocess = fit_default_preprocess(r);
    ct_status s;
    if (lc.standardize.featurewise_center || lc.standardize.featurewise_std_normalization) {
        s = ct_loader_feature_stats(r->train, &lc, lc.standardize.mean, lc.standardize.std);
        if (s != CT_OK) return s;
    }
    r->loader_cfg = lc;
    r->loader_cfg.shuffle = false;
    /* A data-parallel rank's training and validation batches: its slice of every global batch
     * (the frozen-prefix cache and the evaluation loader keep every sample). */
    lc.shard_rank = r->rank;
    lc.shard_count = r->world;
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


int ct_default_loader_threads(const ct_backend *be) {
    if (be == NULL || be->ops == NULL || strcmp(be->ops->name, "cpu") == 0) return 2;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    long t = cores - 1;
    return (int)(t < 2 ? 2 : t > 8 ? 8 : t);
}

/* ---- --strategy auto ---- */

ct_status fit_auto_strategy(const ct_train_config *t, const ct_dataset *train, ct_strategy *out) {
    ct_advise_config c;
    ct_advise_config_defaults(&c);
    c.data = t->data;
    c.backbone = t->backbone;
    c.weights = t->weights != NULL ? t->weights : "none";
    c.device = t->device;
    c.seed = t->seed;
    c.threads = 0;
    c.na_policy = t->na_policy;
    c.na_value = t->na_value;
    c.color_mode = t->color_mode;
    c.interpolation = t->interpolation;
    c.keep_aspect_ratio = t->keep_aspect_ratio;
    c.standardize = t->standardize;
    c.preprocess_set = t->preprocess_set;
    c.skip_bad = t->skip_bad;
    c.out_dir = t->out_dir;
    c.train_input_size = t->input_size;
    /* The probe's input: the training size, capped on the CPU to keep it quick. */
    int h, w, ch;
    if (!ct_dataset_in_memory(train, &h, &w, &ch) && t->input_size > 0 &&
        t->input_size <= CT_ADVISE_CPU_INPUT)
        c.input_size = t->input_size;
    c.verbose = 0;
    ct_advice *a = malloc(sizeof *a);
    if (a == NULL) return ct_error(CT_ENOMEM, "cannot allocate the advice");
    ct_status s = ct_advise_dataset(train, &c, a);
    if (s == CT_OK) {
        *out = a->strategy;
        if (t->verbose > 0) {
            printf("--strategy auto: %s\n", a->summary);
            ct_advise_print_reasoning(stdout, "  ", a);
            printf("  (--strategy auto sets which layers are frozen; the rates and augmentation "
                   "above are `cutune advise`'s suggestions and are not applied: this run keeps "
                   "its own flags.)\n");
        }
    }
    free(a);
    return s;
}
