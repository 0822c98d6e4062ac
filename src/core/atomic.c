/* Atomic file replacement: temporary file, fsync, rename, fsync of the directory. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include "atomic.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

ct_status ct_atomic_open(ct_atomic_file *a, const char *path, const char *mode) {
    memset(a, 0, sizeof *a);
    if (strlen(path) >= sizeof a->path) return ct_error(CT_EINVAL, "%s: path too long", path);
    snprintf(a->path, sizeof a->path, "%s", path);
    snprintf(a->tmp, sizeof a->tmp, "%s.tmp-%ld", path, (long)getpid());
    a->f = fopen(a->tmp, mode);
    if (a->f == NULL)
        return ct_error(CT_EIO, "%s: cannot create: %s", path, strerror(errno));
    return CT_OK;
}

ct_status ct_fsync_dir_of(const char *path) {
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash == NULL) snprintf(dir, sizeof dir, ".");
    else if (slash == dir) dir[1] = '\0';
    else *slash = '\0';
    int fd = open(dir, O_RDONLY);
    if (fd < 0) return ct_error(CT_EIO, "%s: cannot open directory: %s", dir, strerror(errno));
    int rc = fsync(fd);
    close(fd);
    /* Some file systems refuse fsync on directories (EINVAL); the rename is still atomic. */
    if (rc != 0 && errno != EINVAL)
        return ct_error(CT_EIO, "%s: fsync failed: %s", dir, strerror(errno));
    return CT_OK;
}

ct_status ct_atomic_commit(ct_atomic_file *a) {
    int err = 0;
    if (fflush(a->f) != 0 || fsync(fileno(a->f)) != 0) err = errno;
    if (fclose(a->f) != 0 && err == 0) err = errno;
    a->f = NULL;
    if (err != 0) {
        remove(a->tmp);
        return ct_error(CT_EIO, "%s: write failed: %s (the previous file is unchanged)", a->path,
                        strerror(err));
    }
    if (rename(a->tmp, a->path) != 0) {
        err = errno;
        remove(a->tmp);
        return ct_error(CT_EIO, "%s: cannot replace: %s (the previous file is unchanged)",
                        a->path, strerror(err));
    }
    return ct_fsync_dir_of(a->path);
}

void ct_atomic_abort(ct_atomic_file *a) {
    if (a->f != NULL) fclose(a->f);
    a->f = NULL;
    if (a->tmp[0] != '\0') remove(a->tmp);
}

ct_status ct_make_dirs(const char *path, ct_made_dirs *made) {
    ct_made_dirs local;
    if (made == NULL) made = &local;
    made->n = 0;
    char buf[4096];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf)
        return ct_error(CT_EINVAL, "%s: path too long", path);
    for (char *p = buf + 1;; p++) {
        if (*p == '/' || *p == '\0') {
            char saved = *p;
            *p = '\0';
            if (mkdir(buf, 0777) == 0) {
                if (made->n == CT_MADE_DIRS_MAX) {
                    rmdir(buf);
                    ct_remove_made_dirs(path, made);
                    return ct_error(CT_EINVAL, "%s: more than %d folders to create", path,
                                    CT_MADE_DIRS_MAX);
                }
                made->len[made->n++] = (size_t)(p - buf);
            } else if (errno != EEXIST) {
                ct_status s = ct_error(CT_EIO, "%s: cannot create: %s", buf, strerror(errno));
                ct_remove_made_dirs(path, made);
                made->n = 0;
                return s;
            }
            *p = saved;
            if (saved == '\0') break;
        }
    }
    return CT_OK;
}

void ct_remove_made_dirs(const char *path, const ct_made_dirs *made) {
    if (made == NULL) return;
    char buf[4096];
    for (int i = made->n - 1; i >= 0; i--) {
        if (made->len[i] >= sizeof buf) return;
        memcpy(buf, path, made->len[i]);
        buf[made->len[i]] = '\0';
        if (rmdir(buf) != 0) return;
    }
}
