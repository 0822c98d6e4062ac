/* Atomic HDF5 files: a file is built in memory, written to a temporary name in the directory of
 * its final name, synced and renamed over that name, so a save that fails for any reason leaves
 * the previous file as it was.
 *
 * HDF5 builds the file with its core (memory) driver and no backing store; cutune writes the
 * finished image itself. libhdf5 1.10 cannot survive a write that fails while it closes a file:
 * H5Fclose frees the file but keeps its identifier, and H5_term_library closes it a second
 * time at exit, which crashes the process (fixed in HDF5 1.14.1). In memory HDF5's own writes
 * cannot meet a full disk or a file-size limit; cutune's write() can, and reports the reason.
 * The image buffer is lent to HDF5 through its file-image callbacks and outlives the close, so
 * the finished file is written without a second copy of it in memory. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io.h"

/* How much the in-memory file grows at a time: the core driver zero-fills each step, so a
 * small step keeps small files cheap; realloc moves large blocks by remapping, not copying. */
#define IMAGE_STEP ((size_t)8 << 20)

/* ---- the image buffer, owned by cutune ---- */

/* Whether a callback is about the driver's own buffer (not a property list's image). */
static bool for_the_driver(H5FD_file_image_op_t op) {
    return op == H5FD_FILE_IMAGE_OP_FILE_OPEN || op == H5FD_FILE_IMAGE_OP_FILE_RESIZE;
}

static void *image_malloc(size_t size, H5FD_file_image_op_t op, void *udata) {
    ct__h5_atomic *a = udata;
    void *p = malloc(size);
    if (p != NULL && for_the_driver(op)) {
        a->image = p;
        a->image_cap = size;
    }
    return p;
}

static void *image_memcpy(void *dst, const void *src, size_t size, H5FD_file_image_op_t op,
                          void *udata) {
    (void)op;
    (void)udata;
    return memcpy(dst, src, size);
}

static void *image_realloc(void *ptr, size_t size, H5FD_file_image_op_t op, void *udata) {
    ct__h5_atomic *a = udata;
    void *p = realloc(ptr, size);
    if (p != NULL && for_the_driver(op)) {
        a->image = p;
        a->image_cap = size;
    }
    return p;
}

/* The driver's buffer is kept when the file closes: commit writes it out, abort frees it. */
static herr_t image_free(void *ptr, H5FD_file_image_op_t op, void *udata) {
    ct__h5_atomic *a = udata;
    if (ptr != NULL && ptr == a->image && op == H5FD_FILE_IMAGE_OP_FILE_CLOSE) return 0;
    if (ptr != NULL && ptr == a->image) {
        a->image = NULL;
        a->image_cap = 0;
    }
    free(ptr);
    return 0;
}

/* The callbacks' udata is the ct__h5_atomic itself, shared by every copy of the list. */
static void *udata_copy(void *udata) { return udata; }
static herr_t udata_free(void *udata) {
    (void)udata;
    return 0;
}

/* A file access list for the in-memory file: the core driver, the callbacks above, and strong
 * close (closing the file closes whatever an error path left open in it). */
static hid_t memory_fapl(ct__h5_atomic *a) {
    H5FD_file_image_callbacks_t cb = {image_malloc, image_memcpy, image_realloc, image_free,
                                      udata_copy,   udata_free,   a};
    hid_t fapl = CT_H5(H5Pcreate(H5P_FILE_ACCESS));
    if (fapl < 0) return -1;
    if (CT_H5(H5Pset_fapl_core(fapl, IMAGE_STEP, 0)) < 0 ||
        CT_H5(H5Pset_file_image_callbacks(fapl, &cb)) < 0 ||
        CT_H5(H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG)) < 0) {
        ct__h5_close(fapl);
        return -1;
    }
    return fapl;
}

ct_status ct__h5_atomic_create(ct__h5_atomic *a, const char *path) {
    memset(a, 0, sizeof *a);
    a->fd = -1;
    a->file = -1;
    if (path == NULL || path[0] == '\0') return ct_error(CT_EINVAL, "no output file name given");
    if (strlen(path) + 48 >= sizeof a->tmp)
        return ct_error(CT_EINVAL, "%s: path too long", path);
    snprintf(a->final, sizeof a->final, "%s", path);
    char d[CT_WEIGHTS_PATH_MAX], b[CT_WEIGHTS_PATH_MAX];
    snprintf(d, sizeof d, "%s", path);
    snprintf(b, sizeof b, "%s", path);
    const char *dir = dirname(d), *base = basename(b);
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
        return ct_error(CT_EINVAL, "%s: is a directory; give a file name", path);
    /* The writer's pid in the name: a run that finds the file after its writer died (kill -9
     * mid-write) removes it (train/run_lock.c). */
    snprintf(a->tmp, sizeof a->tmp, "%s/.%s.tmp-%ld-XXXXXX", dir, base, (long)getpid());
    a->fd = mkstemp(a->tmp);
    if (a->fd < 0) {
        int e = errno;
        a->tmp[0] = '\0';
        if (e == ENOENT) return ct_error(CT_EIO, "cannot write %s: directory %s does not exist",
                                         path, dir);
        return ct_error(CT_EIO, "cannot write %s: cannot create a file in %s: %s", path, dir,
                        strerror(e));
    }
    /* mkstemp creates the file 0600; give it the mode a plain fopen would. */
    mode_t um = umask(0);
    umask(um);
    if (fchmod(a->fd, 0666 & ~um) != 0) {
        ct_status s = ct_error(CT_EIO, "cannot write %s: %s", path, strerror(errno));
        ct__h5_atomic_abort(a);
        return s;
    }
    hid_t fapl = memory_fapl(a);
    if (fapl >= 0) a->file = CT_H5(H5Fcreate(a->tmp, H5F_ACC_TRUNC, H5P_DEFAULT, fapl));
    ct__h5_close(fapl);
    if (a->file < 0) {
        ct_status s = ct__h5_error(CT_EIO, "cannot write %s: cannot create the HDF5 file %s",
                                   path, a->tmp);
        ct__h5_atomic_abort(a);
        return s;
    }
    return CT_OK;
}

/* Closes the in-memory file. A close that fails for real must not be repeated (see above); one
 * the test hook failed never ran, so it is done here. */
static ct_status close_file(ct__h5_atomic *a) {
    hid_t f = a->file;
    a->file = -1;
    if (CT_H5(H5Fclose(f)) >= 0) return CT_OK;
    ct_status s = ct__h5_error(CT_EIO, "cannot write %s: closing failed", a->final);
    if (ct__h5_failure_injected()) {
        H5Fclose(f);
        H5Eclear2(H5E_DEFAULT);
    }
    return s;
}

/* Writes the first n bytes of the image to the temporary file and syncs it. */
static ct_status write_image(ct__h5_atomic *a, size_t n) {
    if (a->image == NULL || n > a->image_cap)
        return ct_error(CT_EIO, "cannot write %s: HDF5 left no image of %zu bytes", a->final, n);
    const unsigned char *p = a->image;
    while (n > 0) {
        ssize_t w = write(a->fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0)
            return ct_error(CT_EIO, "cannot write %s: %s", a->final,
                            w < 0 ? strerror(errno) : "the disk took no more bytes");
        p += w;
        n -= (size_t)w;
    }
    if (fsync(a->fd) != 0)
        return ct_error(CT_EIO, "cannot write %s: fsync: %s", a->final, strerror(errno));
    return CT_OK;
}

ct_status ct__h5_atomic_commit(ct__h5_atomic *a) {
    ct_status s = CT_OK;
    /* After a full flush the image is the whole file; its size is HDF5's end of allocation.
     * Closing afterwards can only release space at the end, so n bytes hold everything. */
    ssize_t n = -1;
    if (CT_H5(H5Fflush(a->file, H5F_SCOPE_GLOBAL)) < 0 ||
        (n = (ssize_t)CT_H5(H5Fget_file_image(a->file, NULL, 0))) < 0) {
        s = ct__h5_error(CT_EIO, "cannot write %s: finishing the file failed", a->final);
        goto fail;
    }
    if ((s = close_file(a)) != CT_OK || (s = write_image(a, (size_t)n)) != CT_OK) goto fail;
    free(a->image);
    a->image = NULL;
    close(a->fd);
    a->fd = -1;
    if (rename(a->tmp, a->final) != 0) {
        s = ct_error(CT_EIO, "cannot write %s: rename from %s: %s", a->final, a->tmp,
                     strerror(errno));
        goto fail;
    }
    a->tmp[0] = '\0';
    /* Make the rename itself durable. */
    char d[CT_WEIGHTS_PATH_MAX];
    snprintf(d, sizeof d, "%s", a->final);
    int dfd = open(dirname(d), O_RDONLY | O_DIRECTORY);
    if (dfd >= 0) {
        (void)fsync(dfd);
        close(dfd);
    }
    return CT_OK;
fail:
    ct__h5_atomic_abort(a);
    return s;
}

void ct__h5_atomic_abort(ct__h5_atomic *a) {
    if (a->file >= 0) {
        /* In memory: nothing to write, so this close cannot fail on the disk. */
        H5Fclose(a->file);
        H5Eclear2(H5E_DEFAULT);
        a->file = -1;
    }
    free(a->image);
    a->image = NULL;
    a->image_cap = 0;
    if (a->fd >= 0) {
        close(a->fd);
        a->fd = -1;
    }
    if (a->tmp[0] != '\0') {
        unlink(a->tmp);
        a->tmp[0] = '\0';
    }
}
