/* One process per run folder, and what dead processes left there.
 *
 * A run (train, resume, each fold and the k-fold folder itself) holds a POSIX write lock on
 * RUN_DIR/.lock for as long as it runs; a second one is refused with the pid of the holder,
 * which fcntl(F_GETLK) reports. The kernel drops the lock when its process ends, however it
 * ends, so a killed run never leaves the folder locked. Readers (predict, evaluate) take no
 * lock: the files they read are replaced atomically.
 *
 * Holding the lock, a run removes the temporary files of writes that never finished:
 * `.NAME.tmp-PID-XXXXXX` (HDF5 files: checkpoint, best, final) and `NAME.tmp-PID` (text files)
 * whose PID is no longer alive, such as a 59 MB checkpoint cut short by kill -9. */
#define _XOPEN_SOURCE 700
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fit.h"

ct_status fit_lock_run_dir(const char *dir, int *fd) {
    char path[4200];
    snprintf(path, sizeof path, "%s/" FIT_LOCK_FILE, dir);
    *fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
    if (*fd < 0)
        return ct_error(CT_EIO, "cannot lock the run directory %s: %s: %s", dir, path,
                        strerror(errno));
    struct flock lk = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
    if (fcntl(*fd, F_SETLK, &lk) == 0) return CT_OK;
    const int err = errno;
    struct flock who = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
    const bool known = fcntl(*fd, F_GETLK, &who) == 0 && who.l_type != F_UNLCK;
    close(*fd);
    *fd = -1;
    if (err != EACCES && err != EAGAIN)
        return ct_error(CT_EIO, "cannot lock the run directory %s: %s", dir, strerror(err));
    if (known)
        return ct_error(CT_EINVAL, "%s is in use by another cutune run (process %ld): wait for "
                        "it to finish or stop it, or choose another --out", dir,
                        (long)who.l_pid);
    return ct_error(CT_EINVAL, "%s is in use by another cutune run: wait for it to finish or "
                    "stop it, or choose another --out", dir);
}

void fit_unlock_run_dir(int fd) {
    if (fd >= 0) close(fd); /* closing releases the lock */
}

/* The pid a temporary file's name carries after "tmp-", or 0. */
static long temp_owner(const char *name) {
    const char *t = strstr(name, ".tmp-");
    if (t == NULL) return 0;
    char *end = NULL;
    long pid = strtol(t + 5, &end, 10);
    return end != t + 5 && (*end == '\0' || *end == '-') ? pid : 0;
}

int fit_remove_stale_temps(const char *dir) {
    DIR *d = opendir(dir);
    if (d == NULL) return 0;
    int removed = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        long pid = temp_owner(e->d_name);
        if (pid <= 0 || pid == (long)getpid() || kill((pid_t)pid, 0) == 0 || errno != ESRCH)
            continue;
        char path[4200];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        struct stat st;
        if (lstat(path, &st) == 0 && S_ISREG(st.st_mode) && unlink(path) == 0) removed++;
    }
    closedir(d);
    return removed;
}
