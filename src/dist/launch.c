/* The local launcher (launch.h): `--gpus` parsed, one child per GPU started with torchrun's
 * environment, and supervised the way torchrun does it, so that one rank's death never leaves
 * the others waiting in a collective.
 *
 * The children stay in the launcher's process group, so a terminal's Ctrl-C reaches them at
 * once; the launcher forwards the signal as well, for a `kill` aimed at it alone (the training
 * loop's handler only sets a flag, so a signal received twice stops it once). The launcher polls
 * its children every 50 ms instead of blocking in wait(), which keeps the grace period and the
 * forwarding in one plain loop. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L /* setenv, strsignal, nanosleep */
#endif
#include "core/knobs.h"
#include "dist/launch.h"

#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define LAUNCH_GRACE_S 60.0

/* A whole number of decimal digits alone, at most 9 of them; -1 otherwise. */
static long whole_number(const char *s, size_t n) {
    if (n == 0 || n > 9) return -1;
    long v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

static ct_status gpus_bad(const char *text, const char *why) {
    return ct_error(CT_EINVAL, "--gpus %s: %s (expected a number of GPUs, such as 2, or a list "
                    "of distinct device numbers, such as 0,2,5)", text, why);
}

ct_status ct_gpus_parse(const char *text, int *devices, int cap, int *count) {
    *count = 0;
    if (text == NULL || *text == '\0') return gpus_bad("''", "empty");
    if (strchr(text, ',') == NULL) {
        long n = whole_number(text, strlen(text));
        if (n < 1) return gpus_bad(text, n == 0 ? "zero GPUs" : "not a number of GPUs");
        if (n > cap) return gpus_bad(text, "more ranks than one launcher starts");
        for (int i = 0; i < n; i++) devices[i] = i;
        *count = (int)n;
        return CT_OK;
    }
    for (const char *p = text;; p++) {
        size_t len = strcspn(p, ",");
        long d = whole_number(p, len);
        if (d < 0) return gpus_bad(text, "each device is a whole number from 0");
        for (int i = 0; i < *count; i++)
            if (devices[i] == d) return gpus_bad(text, "a device is listed twice");
        if (*count >= cap) return gpus_bad(text, "more ranks than one launcher starts");
        devices[(*count)++] = (int)d;
        p += len;
        if (*p == '\0') return CT_OK;
    }
}

ct_status ct_launch_free_port(int *port) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    bool ok = fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
              getsockname(fd, (struct sockaddr *)&a, &len) == 0;
    int err = errno;
    if (fd >= 0) close(fd);
    if (!ok) return ct_error(CT_EIO, "cannot find a free port on 127.0.0.1: %s", strerror(err));
    *port = ntohs(a.sin_port);
    return CT_OK;
}

/* CUDA_VISIBLE_DEVICES for the children: the chosen devices, as the parent's own
 * CUDA_VISIBLE_DEVICES numbers them when it is set. */
static ct_status visible_devices(const int *devices, int count, char *out, size_t cap) {
    const char *parent = getenv("CUDA_VISIBLE_DEVICES");
    size_t off = 0;
    out[0] = '\0';
    for (int i = 0; i < count; i++) {
        const char *tok = parent;
        int k = 0;
        for (; parent != NULL && k < devices[i] && tok != NULL; k++) {
            tok = strchr(tok, ',');
            if (tok != NULL) tok++;
        }
        if (parent != NULL && (tok == NULL || *tok == '\0' || *tok == ','))
            return ct_error(CT_EINVAL, "--gpus: device %d is not among the devices "
                            "CUDA_VISIBLE_DEVICES=%s makes visible", devices[i], parent);
        int n = parent != NULL ? (int)strcspn(tok, ",") : 0;
        off += (size_t)(parent != NULL
                            ? snprintf(out + off, cap - off, "%s%.*s", i ? "," : "", n, tok)
                            : snprintf(out + off, cap - off, "%s%d", i ? "," : "", devices[i]));
        if (off >= cap) return ct_error(CT_EINVAL, "--gpus: CUDA_VISIBLE_DEVICES is too long");
    }
    return CT_OK;
}

/* In the child: its environment, then the same program. Never returns. */
static void child_exec(char **argv, int rank, int count, int port, const char *visible) {
    static const char *const mpi_vars[] = {
        "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_LOCAL_RANK",
        "OMPI_COMM_WORLD_LOCAL_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE", "SLURM_PROCID"};
    char num[4][16];
    snprintf(num[0], 16, "%d", rank);
    snprintf(num[1], 16, "%d", count);
    snprintf(num[2], 16, "%d", port);
    /* A launcher run inside an MPI or Slurm job must not make its children MPI ranks. */
    for (size_t i = 0; i < sizeof mpi_vars / sizeof mpi_vars[0]; i++) unsetenv(mpi_vars[i]);
    setenv("RANK", num[0], 1);
    setenv("LOCAL_RANK", num[0], 1);
    setenv("WORLD_SIZE", num[1], 1);
    setenv("LOCAL_WORLD_SIZE", num[1], 1);
    setenv("MASTER_ADDR", "127.0.0.1", 1);
    setenv("MASTER_PORT", num[2], 1);
    setenv("CUDA_VISIBLE_DEVICES", visible, 1);
    execv("/proc/self/exe", argv);
    fprintf(stderr, "cutune: rank %d: cannot run /proc/self/exe: %s\n", rank, strerror(errno));
    _exit(127);
}

typedef struct child {
    pid_t pid; /* 0: not running */
    int code;  /* its exit code once ended (128+signal for a signal) */
} child;

static volatile sig_atomic_t launch_signal = 0;

static void launch_on_signal(int sig) {
    launch_signal = sig;
}

static void signal_all(const child *c, int count, int sig) {
    for (int i = 0; i < count; i++)
        if (c[i].pid > 0) kill(c[i].pid, sig);
}

/* Says how a failed rank ended. */
static void report_end(int rank, pid_t pid, int status) {
    if (WIFSIGNALED(status))
        fprintf(stderr, "cutune: rank %d (pid %d) was killed by signal %d (%s)\n", rank, (int)pid,
                WTERMSIG(status), strsignal(WTERMSIG(status)));
    else
        fprintf(stderr, "cutune: rank %d (pid %d) exited with status %d\n", rank, (int)pid,
                WEXITSTATUS(status));
}

/* Reaps the children that ended; returns how many still run. The first failure is kept in
 * *first and starts the others' stop (SIGTERM now, SIGKILL at *kill_at). */
static int reap(child *c, int count, int *first, double grace, double *kill_at) {
    int running = 0;
    for (int i = 0; i < count; i++) {
        int status;
        if (c[i].pid <= 0) continue;
        if (waitpid(c[i].pid, &status, WNOHANG) != c[i].pid) {
            running++;
            continue;
        }
        c[i].code = WIFSIGNALED(status) ? 128 + WTERMSIG(status) : WEXITSTATUS(status);
        if (c[i].code != 0 && *first < 0) {
            report_end(i, c[i].pid, status);
            *first = i;
            struct timespec t;
            clock_gettime(CLOCK_MONOTONIC, &t);
            *kill_at = (double)t.tv_sec + grace;
        }
        c[i].pid = 0;
    }
    return running;
}

static double grace_seconds(void) {
    double g = LAUNCH_GRACE_S;
    return ct_knob_launch_grace(LAUNCH_GRACE_S, &g) == CT_OK ? g : LAUNCH_GRACE_S;
}

/* Waits for every child: forwards signals, stops the others after a failure. */
static int supervise(child *c, int count) {
    int first = -1, stopping = -1;
    double grace = grace_seconds(), kill_at = 0;
    bool killed = false;
    while (reap(c, count, &first, grace, &kill_at) > 0) {
        if (launch_signal != 0) {
            signal_all(c, count, launch_signal);
            launch_signal = 0;
        }
        if (first >= 0 && stopping < 0) {
            fprintf(stderr, "cutune: stopping the other ranks (SIGTERM; SIGKILL after %g s)\n",
                    grace);
            signal_all(c, count, SIGTERM);
            stopping = first;
        }
        struct timespec t, pause = {0, 50 * 1000 * 1000};
        clock_gettime(CLOCK_MONOTONIC, &t);
        if (stopping >= 0 && !killed && (double)t.tv_sec >= kill_at) {
            fprintf(stderr, "cutune: ranks still running after %g s: killing them\n", grace);
            signal_all(c, count, SIGKILL);
            killed = true;
        }
        nanosleep(&pause, NULL);
    }
    if (first >= 0) return c[first].code;
    for (int i = 0; i < count; i++)
        if (c[i].code != 0) return c[i].code;
    return 0;
}

int ct_launch_local(char **argv, const int *devices, int count) {
    char visible[1024];
    int port = 0;
    ct_status s = visible_devices(devices, count, visible, sizeof visible);
    if (s == CT_OK) s = ct_launch_free_port(&port);
    if (s != CT_OK || count < 1 || count > CT_LAUNCH_MAX_RANKS) {
        fprintf(stderr, "cutune: %s\n", s != CT_OK ? ct_last_error() : "--gpus: bad rank count");
        return 2;
    }
    child c[CT_LAUNCH_MAX_RANKS] = {{0, 0}};
    struct sigaction sa = {.sa_handler = launch_on_signal}, old_int, old_term;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    fflush(NULL);
    bool start_failed = false;
    for (int i = 0; i < count && !start_failed; i++) {
        pid_t pid = fork();
        if (pid == 0) child_exec(argv, i, count, port, visible);
        if (pid < 0) {
            fprintf(stderr, "cutune: cannot start rank %d: %s\n", i, strerror(errno));
            signal_all(c, count, SIGTERM);
            start_failed = true;
            continue;
        }
        c[i].pid = pid;
    }
    int code = supervise(c, count);
    if (start_failed) code = 2;
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    return code;
}
