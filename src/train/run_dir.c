/* The run folder: its paths, making it (parents included) or refusing one that holds another
 * run, taking back what a failed start began, and the files written into it: config.txt,
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

ct_status fit_prepare_run_dir(fit_run *r) {
    const ct_train_config *c = r->c;
    if (c->out_dir == NULL || c->out_dir[0] == '\0')
        return ct_error(CT_EINVAL, "--out RUN_DIR is required: the run's logs, checkpoints and "
                        "weights go there");
    snprintf(r->path.ckpt, sizeof r->path.ckpt, "%s/checkpoint.h5", c->out_dir);
    snprintf(r->path.best, sizeof r->path.best, "%s/best.h5", c->out_dir);
    snprintf(r->path.final, sizeof r->path.final, "%s/final.h5", c->out_dir);
    snprintf(r->path.log, sizeof r->path.log, "%s/log.csv", c->out_dir);
    snprintf(r->path.curves, sizeof r->path.curves, "%s/curves.png", c->out_dir);
    snprintf(r->path.config, sizeof r->path.config, "%s/config.txt", c->out_dir);
    snprintf(r->path.es_best, sizeof r->path.es_best, "%s/es_best.h5", c->out_dir);
    if (c->resume) {
        if (!fit_exists(r->path.ckpt))
            return ct_error(CT_ENOTFOUND, "%s: no checkpoint to resume from (start the run "
                            "without --resume)", r->path.ckpt);
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
    if (fit_exists(c->out_dir)) {
        if (!fit_is_dir(c->out_dir))
            s = ct_error(CT_EINVAL, "%s exists and is not a directory", c->out_dir);
        else if (fit_exists(r->path.ckpt) || fit_exists(r->path.log) || fit_exists(r->path.final))
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
void fit_discard_failed_start(const fit_run *r) {
    const ct_train_config *c = r->c;
    if (c->resume || fit_exists(r->path.ckpt) || fit_exists(r->path.final) || fit_exists(r->path.best))
        return;
    if (r->wrote_log) remove(r->path.log);
    if (r->wrote_config) remove(r->path.config);
    if (r->wrote_curves) remove(r->path.curves);
    /* Only what this run created; stops, harmlessly, at the first folder that holds anything
     * else. */
    ct_remove_made_dirs(c->out_dir, &r->made);
}

ct_status fit_write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (f == NULL) return ct_error(CT_EIO, "%s: cannot write: %s", path, strerror(errno));
    fputs(text, f);
    if (fclose(f) != 0) return ct_error(CT_EIO, "%s: write failed", path);
    return CT_OK;
}

/* config.txt as written when the run started, or NULL. */
char *fit_read_settings(const char *path) {
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

ct_status fit_save_weights(fit_run *r, const char *path) {
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
    const char *names[CT_MAX_CLASSES];
    for (int k = 0; k < r->k; k++) names[k] = ct_dataset_class_name(r->train, k);
    ct_weights_save_opts o = {.class_names = names, .n_classes = r->k};
    fit_callbacks_save(&r->cb, &r->st);
    r->st.config = r->config_text;
    ct_status s = ct_checkpoint_save(r->m, r->path.ckpt, &o, &r->st);
    r->st.config = NULL;
    return s;
}

