/* The run folder: its paths, making it (parents included), locking it (run_lock.c), refusing one
 * that holds another run or starting again one that stopped before its first checkpoint,
 * taking back what a failed start began, and the files written into it: config.txt,
 * best.h5 / final.h5 (Keras-loadable weights with the standardisation and class names) and
 * checkpoint.h5 (with the loop's and the callbacks' state).
 *
 * In a data-parallel run only rank 0 calls these: the other ranks write nothing. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fit.h"

bool fit_is_dir(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

bool fit_exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0;
}

static void set_paths(fit_run *r, const char *dir) {
    snprintf(r->path.ckpt, sizeof r->path.ckpt, "%s/checkpoint.h5", dir);
    snprintf(r->path.best, sizeof r->path.best, "%s/best.h5", dir);
    snprintf(r->path.final, sizeof r->path.final, "%s/final.h5", dir);
    snprintf(r->path.log, sizeof r->path.log, "%s/log.csv", dir);
    snprintf(r->path.curves, sizeof r->path.curves, "%s/curves.png", dir);
    snprintf(r->path.config, sizeof r->path.config, "%s/config.txt", dir);
    snprintf(r->path.es_best, sizeof r->path.es_best, "%s/es_best.h5", dir);
    snprintf(r->path.finished, sizeof r->path.finished, "%s/" FIT_FINISHED_FILE, dir);
}

/* Missing parent folders are made first (--out runs/mri in a fresh folder), as Keras's
 * ModelCheckpoint and CSVLogger users expect of a path; only then is the run directory itself
 * looked at, so that a path through '..' is checked where it really leads. */
static ct_status make_run_dir(fit_run *r, const char *dir) {
    char parent[4096];
    snprintf(parent, sizeof parent, "%s", dir);
    size_t len = strlen(parent);
    while (len > 1 && parent[len - 1] == '/') parent[--len] = '\0';
    char *slash = strrchr(parent, '/');
    ct_status s = CT_OK;
    if (slash != NULL && slash != parent) {
        *slash = '\0';
        if ((s = ct_make_dirs(parent, &r->made)) != CT_OK)
            return ct_error(s, "cannot create the run directory %s: %s", dir, ct_last_error());
    }
    if (fit_exists(dir)) {
        if (!fit_is_dir(dir)) s = ct_error(CT_EINVAL, "%s exists and is not a directory", dir);
    } else if (mkdir(dir, 0777) != 0) {
        s = ct_error(CT_EIO, "cannot create the run directory %s: %s", dir, strerror(errno));
    } else if (r->made.n < CT_MADE_DIRS_MAX) {
        r->made.len[r->made.n++] = strlen(dir);
    }
    return s;
}

/* What a run that stopped before its first checkpoint leaves (config.txt is written first):
 * nothing there can be resumed, so the run starts again in its place. */
static void remove_leftovers(const fit_run *r) {
    const char *const files[] = {r->path.config, r->path.log, r->path.curves, r->path.best,
                                 r->path.es_best};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) remove(files[i]);
}

/* With the folder locked: whether it holds a run to continue (--resume), none (a new run), or
 * one that stopped before its first checkpoint (config.txt is written first; with --resume,
 * any folder without a checkpoint), which starts again in its place, saying so. */
static ct_status claim(fit_run *r, const char *dir) {
    const bool ckpt = fit_exists(r->path.ckpt);
    const bool final = fit_exists(r->path.final) || fit_exists(r->path.finished);
    const bool started = fit_exists(r->path.config);
    if (r->resuming && ckpt) return CT_OK;
    if (r->resuming && final)
        return ct_error(CT_ENOTFOUND, "%s: no checkpoint to resume from (%s)", r->path.ckpt,
                        fit_exists(r->path.finished)
                            ? "the run finished with --keep-checkpoints 0: start a new run"
                            : "start the run without --resume");
    if (!r->resuming && (ckpt || final || (!started && fit_exists(r->path.log))))
        return ct_error(CT_EINVAL, "%s already holds a run: add --resume to continue it, or "
                        "choose another --out (nothing was changed)", dir);
    if (r->resuming || started)
        fprintf(stderr, "cutune: %s: the run there stopped before its first checkpoint; "
                "starting it from the beginning\n", dir);
    remove_leftovers(r);
    r->resuming = false;
    return CT_OK;
}

ct_status fit_prepare_run_dir(fit_run *r) {
    const ct_train_config *c = r->c;
    const char *dir = c->out_dir;
    r->lock_fd = -1;
    r->resuming = c->resume;
    if (dir == NULL || dir[0] == '\0')
        return ct_error(CT_EINVAL, "--out RUN_DIR is required: the run's logs, checkpoints and "
                        "weights go there");
    set_paths(r, dir);
    if (r->rank != 0) return CT_OK; /* rank 0 alone touches the folder */
    if (r->resuming && !fit_is_dir(dir))
        return ct_error(CT_ENOTFOUND, "%s: no checkpoint to resume from (start the run "
                        "without --resume)", r->path.ckpt);
    ct_status s = make_run_dir(r, dir);
    if (s == CT_OK) s = fit_lock_run_dir(dir, &r->lock_fd);
    if (s == CT_OK) {
        fit_remove_stale_temps(dir);
        s = claim(r, dir);
    }
    if (s != CT_OK) fit_release_run_dir(r, r->made.n > 0);
    return s;
}

void fit_release_run_dir(fit_run *r, bool discard) {
    if (discard && r->lock_fd >= 0) {
        char lock[4200];
        snprintf(lock, sizeof lock, "%s/" FIT_LOCK_FILE, r->c->out_dir);
        remove(lock);
    }
    fit_unlock_run_dir(r->lock_fd);
    r->lock_fd = -1;
    /* Only what this run created; stops, harmlessly, at the first folder that holds anything
     * else. */
    if (discard) ct_remove_made_dirs(r->c->out_dir, &r->made);
}

/* A new run that fails before its first checkpoint saved nothing worth keeping: it removes the
 * files it began (config.txt, the log's header, curves.png) and the directory if it made it, so
 * that the same command can simply be run again (an existing log.csv would otherwise mark the
 * directory as holding a run that --resume cannot continue). */
void fit_discard_failed_start(fit_run *r) {
    if (r->resuming || fit_exists(r->path.ckpt) || fit_exists(r->path.final) ||
        fit_exists(r->path.best)) {
        fit_release_run_dir(r, false);
        return;
    }
    if (r->wrote_log) remove(r->path.log);
    if (r->wrote_config) remove(r->path.config);
    if (r->wrote_curves) remove(r->path.curves);
    fit_release_run_dir(r, true);
}

ct_status fit_write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (f == NULL) return ct_error(CT_EIO, "%s: cannot write: %s", path, strerror(errno));
    fputs(text, f);
    if (fclose(f) != 0) return ct_error(CT_EIO, "%s: write failed", path);
    return CT_OK;
}

ct_status fit_save_weights(fit_run *r, const char *path) {
    if (r->rank != 0) return CT_OK;
    const char *names[CT_MAX_CLASSES];
    for (int k = 0; k < r->k; k++) names[k] = ct_dataset_class_name(r->train, k);
    /* The full standardisation (with featurewise statistics) travels with the weights, so
     * predict feeds the model what it was trained on. */
    char pre[512];
    ct_standardize_format(&r->loader_cfg.standardize, pre, sizeof pre);
    ct_weights_save_opts o = {.preprocessing = pre, .class_names = names, .n_classes = r->k};
    return ct_weights_save(r->m, path, &o);
}

ct_status fit_save_checkpoint(fit_run *r) {
    if (r->rank != 0) return CT_OK;
    const char *names[CT_MAX_CLASSES];
    for (int k = 0; k < r->k; k++) names[k] = ct_dataset_class_name(r->train, k);
    ct_weights_save_opts o = {.class_names = names, .n_classes = r->k};
    fit_callbacks_save(&r->cb, &r->st);
    r->st.config = r->config_text;
    ct_status s = ct_checkpoint_save(r->m, r->path.ckpt, &o, &r->st);
    r->st.config = NULL;
    return s;
}

