/* What the libFuzzer harnesses share (fuzz_util.h): the private folder their file inputs live
 * in, the small model of the HDF5 harnesses, and the child-process guard for libhdf5's own
 * failures.
 *
 * The guard exists because libhdf5 1.10 crashes (heap overflow in H5HG_read) or loops forever
 * (H5HG__protect) on some damaged files (tests/fuzz/hdf5_bugs, lsan.supp). cutune itself reads
 * a new file's structure in a child first (src/io/h5_probe.c, CUTUNE_H5_PROBE) and refuses the
 * file when the child does not finish its reads. Under libFuzzer that child would save its crash
 * as the fuzzer's own, and cutune's probe cannot tell libhdf5's failures from its own. So the
 * harnesses turn cutune's probe off and run the same reads (ct_weights_inspect and
 * ct_weights_read_config) in a child of their own that has libFuzzer's death callback and
 * signal handlers removed: a sanitizer report or a hang there is classified by where it
 * happened, and only libhdf5's make the input skipped, as cutune would refuse it. Anything else,
 * and whatever fails later in reads the probe does not cover, is left for this process to meet:
 * there it is a finding, in cutune's code or in a libhdf5 failure cutune's guard lets through. */
#define _GNU_SOURCE /* dladdr, mkdtemp */
#include "fuzz_util.h"

#include <dlfcn.h>
#include <errno.h>
#include <execinfo.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <hdf5.h>
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>

#include "io/weights.h"
#include "model/optim.h"

/* A damaged file can make libhdf5 (or cutune) ask for tens of gigabytes, which AddressSanitizer
 * treats as a crash; malloc would return NULL, and that path is the one to test. 2 GiB is also
 * libFuzzer's default -malloc_limit_mb, past which it reports an allocation as running out of
 * memory. AddressSanitizer reads these before ASAN_OPTIONS, which can still change them. */
const char *__asan_default_options(void);
const char *__asan_default_options(void) {
    return "allocator_may_return_null=1:max_allocation_size_mb=2048";
}

/* ---- inputs as files ---- */

static char dir[256];
static char path[320];
static unsigned long n_written;

static void remove_files(void) {
    if (path[0] != '\0') unlink(path);
    if (dir[0] != '\0') rmdir(dir);
}

const char *fuzz_write_input(const uint8_t *data, size_t size, const char *suffix) {
    if (dir[0] == '\0') {
        const char *tmp = getenv("TMPDIR");
        if (access("/dev/shm", W_OK) == 0) tmp = "/dev/shm";
        else if (tmp == NULL || tmp[0] == '\0') tmp = "/tmp";
        snprintf(dir, sizeof dir, "%s/cutune-fuzz-XXXXXX", tmp);
        if (mkdtemp(dir) == NULL) abort();
        atexit(remove_files);
    }
    if (path[0] != '\0') unlink(path);
    snprintf(path, sizeof path, "%s/input-%lu%s", dir, n_written++, suffix);
    FILE *f = fopen(path, "wb");
    if (f == NULL) abort();
    if (size > 0 && fwrite(data, 1, size, f) != size) abort();
    if (fclose(f) != 0) abort();
    return path;
}

/* ---- the model ---- */

ct_model *fuzz_small_model(void) {
    static ct_backend be;
    static ct_model *model;
    if (model != NULL) return model;
    if (ct_backend_cpu_init(&be, 1) != CT_OK) abort();
    ct_model_config cfg = {.input_h = 64, .input_w = 64, .input_c = 3, .aux_dim = 0,
                           .max_batch = 1, .head = "mri", .seed = 1};
    if (ct_model_init(&model, &cfg, &be) != CT_OK) abort();
    if (ct_model_freeze_to(model, "block5_pool") != CT_OK) abort();
    ct_optimizer_config o;
    ct_optimizer_defaults(&o, CT_OPT_SGD);
    o.momentum = 0.9f;
    if (ct_model_compile(model, &o) != CT_OK) abort();
    return model;
}

/* ---- the guard ---- */

enum { GUARD_OTHER = 85, GUARD_HDF5 = 86, GUARD_HDF5_HANG = 87 };
#define GUARD_LIMIT_S 5

static unsigned long n_skipped, n_hangs;

/* libhdf5, and the compression libraries its filters call. */
static bool hdf5_module(const char *s) {
    return strstr(s, "libhdf5") != NULL || strstr(s, "libz.so") != NULL ||
           strstr(s, "libsz.so") != NULL || strstr(s, "libaec.so") != NULL;
}

/* Frames of the sanitizer runtime (clang links it in, its allocator under the plain names) and of
 * libc say who noticed or allocated, not who went wrong. */
static bool runtime_frame(const char *s) {
    static const char *const names[] = {"__asan", "__interceptor", "__sanitizer", "libc.so",
                                        " in malloc ", " in calloc ", " in realloc ", " in free "};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++)
        if (strstr(s, names[i]) != NULL) return true;
    return false;
}

/* Whether the innermost frame outside the runtime of the stack starting at `stack` (a report's
 * "    #0 0x... in FUNC (MODULE+0x...)" or "... FILE:LINE" lines) lies in libhdf5. */
static bool stack_in_hdf5(const char *stack) {
    for (const char *line = stack; line != NULL && *line != '\0';) {
        const char *end = strchr(line, '\n');
        const int len = end != NULL ? (int)(end - line) : (int)strlen(line);
        const char *p = line;
        while (p < line + len && *p == ' ') p++;
        if (p == line + len || *p != '#') return false; /* the stack ended */
        char frame[1024];
        snprintf(frame, sizeof frame, "%.*s", len, line);
        if (!runtime_frame(frame)) return hdf5_module(frame) || strstr(frame, " in H5") != NULL;
        line = end != NULL ? end + 1 : NULL;
    }
    return false;
}

/* A report is libhdf5's when the faulting access and, for a heap error, the allocation of the
 * memory it touched both happened inside libhdf5: an overflow of a buffer that cutune allocated
 * and handed to libhdf5 (a wrong size) is cutune's, although libhdf5 wrote past its end. */
static bool report_in_hdf5(const char *report) {
    const char *first = strstr(report, "    #");
    if (first == NULL || !stack_in_hdf5(first)) return false;
    const char *alloc = strstr(report, "allocated by thread");
    if (alloc != NULL) alloc = strstr(alloc, "    #");
    return alloc == NULL || stack_in_hdf5(alloc);
}

/* CUTUNE_FUZZ_H5_SKIPPED=DIR keeps each skipped input and the child's report there, to triage
 * libhdf5's findings (and add reproducers to hdf5_bugs/). Unset, nothing is written. */
static void keep_skipped(const char *what, const void *data, size_t size, long id) {
    const char *keep = getenv("CUTUNE_FUZZ_H5_SKIPPED");
    if (keep == NULL || keep[0] == '\0') return;
    char name[4096];
    snprintf(name, sizeof name, "%s/skipped-%ld.%s", keep, id, what);
    FILE *f = fopen(name, "wb");
    if (f == NULL) return;
    fwrite(data, 1, size, f);
    fclose(f);
}

static void child_report(const char *report) {
    const bool hdf5 = report_in_hdf5(report);
    if (hdf5) keep_skipped("txt", report, strlen(report), (long)getpid());
    _exit(hdf5 ? GUARD_HDF5 : GUARD_OTHER);
}

/* The module of a return address, or "" when unknown. */
static const char *module_of(void *pc) {
    Dl_info info;
    return dladdr(pc, &info) != 0 && info.dli_fname != NULL ? info.dli_fname : "";
}

/* The child's time is up: where was it? The stack holds this handler and the sanitizer's frames
 * around it, libc's signal return, then the interrupted code; libc frames there (a memcpy) are
 * passed over to their caller. */
static void child_alarm(int sig) {
    (void)sig;
    void *frames[64];
    const int n = backtrace(frames, 64);
    int i = 0;
    while (i < n && strstr(module_of(frames[i]), "libc.so") == NULL) i++;
    while (i < n && strstr(module_of(frames[i]), "libc.so") != NULL) i++;
    _exit(i < n && hdf5_module(module_of(frames[i])) ? GUARD_HDF5_HANG : GUARD_OTHER);
}

/* What src/io/h5_probe.c's child reads of a new file. */
static void probe_reads(const char *file) {
    ct_weights_file *wf = NULL;
    if (ct_weights_inspect(file, &wf) == CT_OK) ct_weights_file_free(wf);
    ct_model_config mc;
    ct_saved_config sc;
    memset(&mc, 0, sizeof mc);
    memset(&sc, 0, sizeof sc);
    if (ct_weights_read_config(file, &mc, &sc) == CT_OK) ct_saved_config_free(&sc);
}

static void run_child(const char *file) {
    __sanitizer_set_death_callback(NULL); /* libFuzzer's: it would save this input as a crash */
    __asan_set_error_report_callback(child_report);
    static const int fuzzer_signals[] = {SIGABRT, SIGILL,  SIGINT, SIGTERM,
                                         SIGUSR1, SIGUSR2, SIGXFSZ};
    for (size_t i = 0; i < sizeof fuzzer_signals / sizeof *fuzzer_signals; i++)
        signal(fuzzer_signals[i], SIG_DFL);
    const int null = open("/dev/null", O_WRONLY);
    if (null >= 0) {
        dup2(null, STDOUT_FILENO);
        dup2(null, STDERR_FILENO);
    }
    void *warm[1];
    (void)backtrace(warm, 1); /* loads the unwinder now, not inside the signal handler */
    signal(SIGALRM, child_alarm);
    alarm(GUARD_LIMIT_S);
    probe_reads(file);
    _exit(0);
}

static bool read_all(const char *file, uint8_t **data, size_t *size) {
    FILE *f = fopen(file, "rb");
    if (f == NULL) return false;
    size_t cap = 1 << 16, n = 0, got;
    uint8_t *buf = malloc(cap);
    while (buf != NULL && (got = fread(buf + n, 1, cap - n, f)) > 0)
        if ((n += got) == cap) {
            uint8_t *grown = realloc(buf, cap *= 2);
            if (grown == NULL) free(buf);
            buf = grown;
        }
    fclose(f);
    *data = buf;
    *size = n;
    return buf != NULL;
}

static void print_guard_stats(void) {
    if (n_skipped > 0)
        fprintf(stderr, "fuzz_h5_input: %lu inputs skipped for libhdf5's own failures "
                "(%lu of them hangs)\n", n_skipped, n_hangs);
}

static bool guard(const char *file) {
    static int enabled = -1;
    if (enabled < 0) {
        const char *e = getenv("CUTUNE_FUZZ_H5_GUARD");
        enabled = e == NULL || strcmp(e, "0") != 0;
        atexit(print_guard_stats);
    }
    if (!enabled) return true;
    fflush(stdout);
    fflush(stderr);
    const pid_t pid = fork();
    if (pid < 0) return true; /* no child to spare: run it here */
    if (pid == 0) run_child(file);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) return true;
    if (WIFEXITED(status) &&
        (WEXITSTATUS(status) == GUARD_HDF5 || WEXITSTATUS(status) == GUARD_HDF5_HANG)) {
        n_skipped++;
        n_hangs += WEXITSTATUS(status) == GUARD_HDF5_HANG;
        uint8_t *data = NULL;
        size_t size = 0;
        if (getenv("CUTUNE_FUZZ_H5_SKIPPED") != NULL && read_all(file, &data, &size))
            keep_skipped("h5", data, size, (long)pid);
        free(data);
        return false;
    }
    return true;
}

static void expect_closed(void) {
    const ssize_t open_objects = H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL);
    if (open_objects != 0) {
        fprintf(stderr, "fuzz_h5_input: %zd HDF5 objects left open\n", open_objects);
        abort();
    }
}

void fuzz_h5_setup(void) {
    setenv("CUTUNE_H5_PROBE", "0", 1);
    (void)fuzz_small_model();
}

void fuzz_h5_input(const uint8_t *data, size_t size, void (*run)(const char *path)) {
    const char *file = fuzz_write_input(data, size, ".h5");
    if (guard(file)) run(file);
    expect_closed();
}
