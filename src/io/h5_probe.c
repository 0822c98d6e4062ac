/* Reading untrusted HDF5 files in a child process first.
 *
 * libhdf5 1.10 can crash (heap overflow in H5HG_read) or loop forever (H5HG__protect) on a
 * damaged variable-length string attribute: fuzzing found both (tests/fuzz/hdf5_bugs), and no
 * public HDF5 call can check for it beforehand. So before this process opens a file for the
 * first time, a forked child reads what cutune reads of its structure (ct_weights_inspect,
 * ct_weights_read_config) and says with its exit status that libhdf5 got through. Any other
 * ending (a signal, another exit status such as a sanitizer's 1, no ending before the time
 * limit) makes the file damaged here, and only a file the child got through is opened by this
 * process. The child touches nothing but HDF5 and exits with _exit. CUTUNE_H5_PROBE=0 turns
 * this off (the fuzzer, which wants the crashes); CUTUNE_H5_PROBE_S sets the time limit (60 s),
 * counted on the monotonic clock, so a loaded machine cannot stretch it. */
#define _POSIX_C_SOURCE 200809L
#define _DEFAULT_SOURCE /* strsignal, st_mtim */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../core/knobs.h"
#include "io.h"

/* The child's exit statuses: libhdf5 returned from every call, and cutune either read the file
 * or refused it with a message (which this process's own reading will give). */
#define PROBE_READ 86
#define PROBE_REFUSED 87

static bool in_probe_child;
static void (*probe_hook)(void);
static struct {
    char path[4096];
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtime;
} probed;

void ct__h5_probe_set_hook(void (*fn)(void)) { probe_hook = fn; }

static bool same_file(const char *path, const struct stat *st) {
    return strcmp(probed.path, path) == 0 && probed.dev == st->st_dev &&
           probed.ino == st->st_ino && probed.size == st->st_size &&
           probed.mtime.tv_sec == st->st_mtim.tv_sec &&
           probed.mtime.tv_nsec == st->st_mtim.tv_nsec;
}

static void remember(const char *path, const struct stat *st) {
    snprintf(probed.path, sizeof probed.path, "%s", path);
    probed.dev = st->st_dev;
    probed.ino = st->st_ino;
    probed.size = st->st_size;
    probed.mtime = st->st_mtim;
}

static _Noreturn void child_reads(const char *path) {
    in_probe_child = true;
    if (probe_hook != NULL) probe_hook();
    bool ok = true;
    ct_weights_file *wf = NULL;
    if (ct_weights_inspect(path, &wf) == CT_OK) ct_weights_file_free(wf);
    else ok = false;
    ct_model_config mc;
    ct_saved_config sc;
    memset(&mc, 0, sizeof mc);
    memset(&sc, 0, sizeof sc);
    if (ct_weights_read_config(path, &mc, &sc) == CT_OK) ct_saved_config_free(&sc);
    _exit(ok ? PROBE_READ : PROBE_REFUSED);
}

static double seconds_since(const struct timespec *t0) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)(t.tv_sec - t0->tv_sec) + (double)(t.tv_nsec - t0->tv_nsec) * 1e-9;
}

/* Waits for the child until `limit` seconds have passed on the monotonic clock. Returns 1 with
 * its status, 0 on the deadline, -1 when it cannot be waited for (SIGCHLD ignored). Each pause
 * is capped by the time left, so an oversleeping timer costs one pause, not one per pause. */
static int wait_until(pid_t pid, double limit, int *status) {
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    double pause_s = 0.001;
    for (;;) {
        pid_t got = waitpid(pid, status, WNOHANG);
        if (got == pid) return 1;
        if (got < 0 && errno != EINTR) return -1;
        double left = limit - seconds_since(&t0);
        if (left <= 0) return 0;
        double d = pause_s < left ? pause_s : left;
        struct timespec ts = {(time_t)d, (long)((d - (double)(time_t)d) * 1e9)};
        nanosleep(&ts, NULL);
        if (pause_s < 0.05) pause_s *= 2;
    }
}

ct_status ct__h5_probe(const char *path, const struct stat *st) {
    if (in_probe_child || !ct_knob_h5_probe() || same_file(path, st)) return CT_OK;
    const double limit = ct_knob_h5_probe_seconds(60.0);
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) return CT_OK; /* no child to spare: read it here, as before */
    if (pid == 0) child_reads(path);
    int status = 0;
    int got = wait_until(pid, limit, &status);
    if (got == 0) {
        kill(pid, SIGKILL);
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR) continue;
        return ct_error(CT_EFORMAT, "%s: reading it did not finish within %g s (libhdf5 loops "
                        "forever on some damaged files): the file is damaged", path, limit);
    }
    if (got < 0) return CT_OK; /* the child's status is not ours to see: read it here */
    if (WIFSIGNALED(status))
        return ct_error(CT_EFORMAT, "%s: the HDF5 library crashed reading it (signal %d, %s): "
                        "the file is damaged", path, WTERMSIG(status),
                        strsignal(WTERMSIG(status)));
    if (!WIFEXITED(status) ||
        (WEXITSTATUS(status) != PROBE_READ && WEXITSTATUS(status) != PROBE_REFUSED))
        return ct_error(CT_EFORMAT, "%s: the process that reads it first was stopped with exit "
                        "status %d (a sanitizer or the C library stopping libhdf5 on it): the "
                        "file is damaged", path, WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    remember(path, st);
    return CT_OK;
}
