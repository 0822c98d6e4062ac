/* What a run leaves in its folder, and no more: one copy of what two names share.
 *
 * Every model file is written through a temporary name and renamed into place (h5_atomic.c), so
 * a file never changes once it has a name: a second name for the same file is a hard link, which
 * costs nothing until one of the names is replaced. final.h5 is such a second name of best.h5
 * when the last epoch was the best (or EarlyStopping restored it); --keep-checkpoints K keeps
 * checkpoint-<epoch>.h5 names for the last K epochs' checkpoints; --save-best-only writes no
 * final.h5; --keep-checkpoints 0 removes the checkpoint when the run ends. Where the file system
 * has no hard links, a copy is written instead. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../core/atomic.h"
#include "fit.h"

/* A copy of `from` written to `to` through a temporary name. */
static ct_status copy_file(const char *from, const char *to) {
    FILE *in = fopen(from, "rb");
    if (in == NULL) return ct_error(CT_EIO, "%s: cannot open: %s", from, strerror(errno));
    ct_atomic_file a;
    ct_status s = ct_atomic_open(&a, to, "wb");
    char buf[1 << 16];
    size_t n;
    while (s == CT_OK && (n = fread(buf, 1, sizeof buf, in)) > 0)
        if (fwrite(buf, 1, n, a.f) != n) s = ct_error(CT_EIO, "%s: write failed", to);
    if (s == CT_OK && ferror(in)) s = ct_error(CT_EIO, "%s: read failed", from);
    fclose(in);
    if (s == CT_OK) return ct_atomic_commit(&a);
    ct_atomic_abort(&a);
    return s;
}

/* `to` as a second name of `from`, replacing any file of that name at once; a copy where hard
 * links are not supported. */
static ct_status second_name(const char *from, const char *to) {
    char tmp[4300];
    snprintf(tmp, sizeof tmp, "%s.tmp-%d", to, (int)getpid());
    remove(tmp);
    if (link(from, tmp) == 0) {
        if (rename(tmp, to) == 0) return CT_OK;
        const int err = errno;
        remove(tmp);
        return ct_error(CT_EIO, "%s: cannot rename into place: %s", to, strerror(err));
    }
    if (errno != EPERM && errno != ENOTSUP && errno != EMLINK && errno != EXDEV)
        return ct_error(CT_EIO, "%s: cannot link to %s: %s", to, from, strerror(errno));
    return copy_file(from, to);
}

static void epoch_checkpoint_path(const fit_run *r, int epochs, char *buf, size_t cap) {
    snprintf(buf, cap, "%s/checkpoint-%d.h5", r->c->out_dir, epochs);
}

ct_status fit_keep_epoch_checkpoint(fit_run *r, int epochs) {
    const int keep = r->c->keep_checkpoints;
    if (keep <= 1 || r->rank != 0) return CT_OK;
    char path[4300];
    epoch_checkpoint_path(r, epochs, path, sizeof path);
    ct_status s = second_name(r->path.ckpt, path);
    if (s != CT_OK || epochs - keep < 1) return s;
    epoch_checkpoint_path(r, epochs - keep, path, sizeof path);
    if (remove(path) != 0 && errno != ENOENT)
        return ct_error(CT_EIO, "%s: cannot remove: %s", path, strerror(errno));
    return CT_OK;
}

ct_status fit_save_final(fit_run *r, const char **path) {
    *path = r->path.final;
    if (r->rank != 0) return CT_OK; /* rank 0 alone writes the run folder */
    if (r->c->save_best_only && fit_exists(r->path.best)) {
        *path = r->path.best;
        if (remove(r->path.final) != 0 && errno != ENOENT)
            return ct_error(CT_EIO, "%s: cannot remove: %s", r->path.final, strerror(errno));
        return CT_OK;
    }
    if (r->best_is_current && fit_exists(r->path.best))
        return second_name(r->path.best, r->path.final);
    return fit_save_weights(r, r->path.final);
}

ct_status fit_finish_files(fit_run *r) {
    if (r->c->keep_checkpoints > 0 || r->rank != 0) return CT_OK;
    FILE *f = fopen(r->path.finished, "w");
    if (f == NULL || fclose(f) != 0)
        return ct_error(CT_EIO, "%s: cannot write: %s", r->path.finished, strerror(errno));
    if (remove(r->path.ckpt) != 0 && errno != ENOENT)
        return ct_error(CT_EIO, "%s: cannot remove: %s", r->path.ckpt, strerror(errno));
    return CT_OK;
}
