/* `cutune train`: fit_generator with Keras's callbacks, on any backend.
 *
 * One run: prepare the run folder, open the data (class folders or iceberg JSON) and its
 * validation part, choose the head, build the backbone with it, load the pretrained weights,
 * open the loaders, then train epoch by epoch (fit_loop.c) with the callbacks in Keras's order.
 * Everything random is addressed by (seed, epoch, sample) or the global step, so a run resumed
 * from its checkpoint ends bit-identical on the CPU to one that was never interrupted. This file
 * holds the order of those steps, the stop requests and what a run frees; fit.h lists the
 * files that do each step. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/knobs.h"
#include "../model/backbone.h"
#include "cutune/cuda.h"
#include "fit.h"
#include "settings.h"

static volatile sig_atomic_t stop_requested;
/* CUTUNE_STOP_AFTER_STEPS (core/knobs.h): steps this call may train before it stops as if
 * interrupted; 0: no limit. Reaching it is count_stop: the same step on every rank of a
 * data-parallel run, where a signal's stop_requested comes when it comes and is voted on. */
static long stop_after_steps, steps_this_call;
static bool count_stop;

void ct_train_request_stop(void) { stop_requested = 1; }

bool ct_train_stop_requested(void) { return stop_requested != 0; }

bool fit_stop_requested(void) { return stop_requested != 0 || count_stop; }

bool fit_count_stopped(void) { return count_stop; }

bool fit_last_step_before_stop(void) {
    return stop_after_steps > 0 && steps_this_call + 1 >= stop_after_steps;
}

void fit_count_step(void) {
    if (stop_after_steps > 0 && ++steps_this_call >= stop_after_steps) count_stop = true;
}

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

ct_status ct_parse_strategy(const char *s, ct_strategy *out) {
    if (strcmp(s, "auto") == 0) *out = CT_STRATEGY_AUTO;
    else if (strcmp(s, "head") == 0) *out = CT_STRATEGY_HEAD;
    else if (strcmp(s, "top") == 0) *out = CT_STRATEGY_TOP;
    else if (strcmp(s, "all") == 0) *out = CT_STRATEGY_ALL;
    else if (strcmp(s, "deep") == 0) *out = CT_STRATEGY_DEEP;
    else return ct_error(CT_EINVAL, "unknown strategy '%s' (auto, head, top, deep, all)", s);
    return CT_OK;
}

const char *ct_strategy_freeze_to_for(const char *backbone, ct_strategy s) {
    const ct_backbone *bb = ct_backbone_find(backbone);
    if (bb == NULL) bb = ct_backbone_find(NULL);
    switch (s) {
    case CT_STRATEGY_HEAD: return bb->cut[CT_CUT_HEAD];
    case CT_STRATEGY_TOP: return bb->cut[CT_CUT_TOP];
    case CT_STRATEGY_DEEP: return bb->cut[CT_CUT_DEEP];
    default: return "";
    }
}

const char *ct_strategy_freeze_to(ct_strategy s) { return ct_strategy_freeze_to_for(NULL, s); }

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
    c->keep_checkpoints = 1;
    c->device = "auto";
    c->verbose = 1;
}

static void fit_free(fit_run *r, bool clean) {
    fit_dist_close(r, clean);
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

/* What can be checked before anything is opened. */
static ct_status check_config(const ct_train_config *c) {
    if (c->epochs < 1) return ct_error(CT_EINVAL, "--epochs must be at least 1");
    if (c->folds > 0 && c->train_ds == NULL)
        return ct_error(CT_EINVAL, "the settings ask for %d folds (a k-fold run's record): train "
                        "them with ct_train_folds (Python: folds=%d)", c->folds, c->folds);
    if (c->batch_size < 1) return ct_error(CT_EINVAL, "--batch-size must be at least 1");
    if (c->color_mode != CT_COLOR_RGB)
        return ct_error(CT_EINVAL, "--color-mode %s: VGG16 reads 3-channel images, so training "
                        "takes --color-mode rgb (the default), which reads grayscale files as RGB "
                        "with the gray value in each channel, as Keras's color_mode='rgb' does",
                        c->color_mode == CT_COLOR_GRAYSCALE ? "grayscale" : "rgba");
    const ct_backbone *bb;
    return ct_backbone_lookup(c->backbone, &bb);
}

ct_status fit_open_backend(fit_run *r) {
    const ct_train_config *c = r->c;
    if (r->be.ops != NULL) return CT_OK;
    char note[512];
    ct_backend_options o;
    ct_backend_options_defaults(&o);
    o.device = r->device;
    o.precision = c->precision;
    o.deterministic = c->deterministic || o.deterministic;
    ct_status s = ct_backend_open_with(&r->be, c->device, &o, note, sizeof note);
    if (s != CT_OK) return s;
    ct_backend_say_note("cutune train", note);
    if (c->verbose > 0) {
        ct_device_info dev;
        if (ct_cuda_backend_device(&r->be, &dev) == CT_OK)
            printf("device: %s (compute capability %d.%d, %.0f GiB), precision %s\n", dev.name,
                   dev.cc_major, dev.cc_minor, dev.total_mem / 1073741824.0,
                   ct_backend_precision(&r->be));
        else
            printf("device: %s, precision %s\n", r->be.ops->name, ct_backend_precision(&r->be));
    }
    return CT_OK;
}

/* The host buffers of a step, and the run's record of its settings. */
static ct_status allocate(fit_run *r) {
    const ct_train_config *c = r->c;
    r->labels = malloc((size_t)c->batch_size * r->n_out * sizeof(float));
    r->weights = malloc((size_t)c->batch_size * sizeof(float));
    r->probs = malloc((size_t)c->batch_size * r->n_out * sizeof(float));
    r->history = calloc((size_t)(c->epochs + 1000) * FIT_KEYS, sizeof(double));
    ct_train_facts facts = {.c = c, .input = r->input, .head = r->head,
                            .freeze_target = r->freeze_target, .class_mode = r->class_mode,
                            .default_preprocess = fit_default_preprocess(r)};
    r->config_text = ct_train_record(&facts);
    if (r->labels == NULL || r->weights == NULL || r->probs == NULL || r->history == NULL ||
        r->config_text == NULL)
        return ct_error(CT_ENOMEM, "cannot allocate the training buffers");
    return CT_OK;
}

static ct_status start(fit_run *r) {
    const ct_train_config *c = r->c;
    ct_status s;
    if ((s = fit_open_data(r)) != CT_OK) return s;
    if ((s = fit_class_weights(r)) != CT_OK) return s;
    r->strategy = c->strategy;
    if (c->strategy == CT_STRATEGY_AUTO && r->rank == 0 &&
        (s = fit_auto_strategy(c, r->train, &r->strategy)) != CT_OK)
        return s;
    /* --strategy auto measures: rank 0's choice is every rank's. */
    if (r->comm != NULL && (s = ct_comm_broadcast(r->comm, &r->strategy, sizeof r->strategy,
                                                  false, "the strategy")) != CT_OK)
        return s;
    if ((s = fit_choose_head(r)) != CT_OK) return s;
    if ((s = fit_open_backend(r)) != CT_OK) return s;
    if ((s = fit_build_model(r)) != CT_OK) return s;
    if ((s = allocate(r)) != CT_OK) return s;
    if ((s = fit_dist_same_settings(r)) != CT_OK) return s;
    return fit_open_loaders(r);
}

/* A file of the data that cannot be read stops the run (Keras raises too); the message names
 * the way on: --skip-bad. The loader's message starts with the file's path, which lies under
 * --data or --val; the statuses are those a file's opening, reading or decoding fails with. */
static void bad_file_hint(const ct_train_config *c, ct_status s) {
    if (c->skip_bad || (s != CT_EFORMAT && s != CT_EIO && s != CT_ENOTFOUND &&
                        s != CT_EUNSUPPORTED))
        return;
    const char *roots[2] = {c->data, c->val};
    char msg[4096];
    snprintf(msg, sizeof msg, "%s", ct_last_error());
    for (int i = 0; i < 2; i++) {
        const size_t n = roots[i] != NULL ? strlen(roots[i]) : 0;
        if (n == 0 || strncmp(msg, roots[i], n) != 0) continue;
        if (msg[n] != '/' && roots[i][n - 1] != '/') continue;
        ct_error(s, "%s; add --skip-bad to skip the images that cannot be read (they are listed "
                 "at the end) and train on the rest", msg);
        return;
    }
}

ct_status ct_train(const ct_train_config *c, ct_train_result *res) {
    fit_run r;
    memset(&r, 0, sizeof r);
    memset(res, 0, sizeof *res);
    res->best_epoch = -1;
    r.c = c;
    r.lock_fd = -1;
    stop_requested = 0;
    count_stop = false;
    steps_this_call = 0;
    ct_status s = ct_knob_stop_after_steps(&stop_after_steps);
    if (s != CT_OK) return s;
    if ((s = check_config(c)) != CT_OK) return s;
    if ((s = ct_schedule_parse(&r.schedule, c->schedule, c->epochs)) != CT_OK) return s;
    ct_world world;
    if ((s = fit_dist_open(&r, &world)) != CT_OK) {
        fit_free(&r, false);
        return s;
    }
    s = fit_dist_agree(&r, fit_prepare_run_dir(&r), "preparing the run folder");
    if (s != CT_OK) {
        fit_free(&r, r.failed_together);
        return s;
    }
    s = fit_dist_agree(&r, start(&r), "starting the run");
    if (s == CT_OK) s = fit_run_epochs(&r, res);
    if (s == CT_EDEVMEM) fit_oom_hint(&r);
    if (s != CT_OK && s != CT_EINTR) bad_file_hint(c, s);
    if (s != CT_OK && s != CT_EINTR) {
        /* The loader's and the log's files are closed first. */
        char msg[4096];
        snprintf(msg, sizeof msg, "%s", ct_last_error());
        fit_free(&r, r.failed_together);
        fit_discard_failed_start(&r);
        return ct_error(s, "%s", msg);
    }
    fit_free(&r, true);
    fit_release_run_dir(&r, false);
    return s;
}
