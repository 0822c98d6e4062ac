/* Helpers for the end-to-end tests of the cutune command (train, evaluate, predict, demo):
 * a temporary folder with a tiny generated dataset, running the CLI (through CUTUNE_CLI) with
 * its output captured, reading log.csv and prediction CSVs, and comparing the arrays of two
 * HDF5 files bit for bit. Header-only (static functions); each test_train_*.c includes it.
 *
 * Every run is kept small for the shared 2-core machine: 32x32 inputs, batch 4, random
 * initialisation (--weights none), one loader thread, and usually the frozen backbone, whose
 * output the frozen-prefix cache computes once. */
#ifndef CUTUNE_TRAIN_CLI_UTIL_H
#define CUTUNE_TRAIN_CLI_UTIL_H

#define _XOPEN_SOURCE 700 /* mkdtemp, nftw, popen */

#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <hdf5.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "model/model.h"
#include "train/run.h"
#include "io/weights.h"

/* The test's folder: D/d holds the generated data (ct_demo_generate: d/train/{dementia,normal}
 * with 6 PNG slices each, d/val with 2 each, d/iceberg_train.json with 12 labelled records and
 * d/iceberg_test.json with 4 unlabelled ones). */
static char tc_dir[64];
#define D tc_dir
/* Output (stdout and stderr) of the last tc_run. */
static char tc_out[1 << 18];

/* The flags every small training run shares. */
#define TC_SMALL "--input-size 32 --batch-size 4 --weights none --device cpu --threads 1"
/* A head with dropout, so resumed runs must also reproduce the dropout masks. */
#define TC_DROP_HEAD "flatten,dense:16:relu,dropout:0.5,dense:2:softmax"

static int tc_rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st;
    (void)flag;
    (void)ftw;
    chmod(path, 0700);
    return remove(path);
}

__attribute__((unused)) static void tc_setup(void) {
    snprintf(tc_dir, sizeof tc_dir, "/tmp/cutune_e2e_XXXXXX");
    cr_assert_not_null(mkdtemp(tc_dir), "mkdtemp: %s", strerror(errno));
    char data[128];
    snprintf(data, sizeof data, "%s/d", tc_dir);
    cr_assert_eq(ct_demo_generate(data, 6, 32, 1), CT_OK, "%s", ct_last_error());
}

__attribute__((unused)) static void tc_teardown(void) {
    if (tc_dir[0] != '\0') nftw(tc_dir, tc_rm_one, 16, FTW_DEPTH | FTW_PHYS);
    tc_dir[0] = '\0';
}

/* A path under the test's folder (one of four rotating buffers). */
__attribute__((format(printf, 1, 2), unused)) static const char *tc_path(const char *fmt, ...) {
    static char buf[4][512];
    static int next;
    char *p = buf[next++ & 3];
    int n = snprintf(p, 512, "%s/", tc_dir);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p + n, 512 - (size_t)n, fmt, ap);
    va_end(ap);
    return p;
}

/* Runs `cutune ARGS` (printf-formatted) with stdout and stderr in tc_out. `env` is NULL or
 * e.g. "CUTUNE_STOP_AFTER_STEPS=4"; CUTUNE_STOP_AFTER_STEPS is unset otherwise. Returns the
 * exit code. */
__attribute__((format(printf, 2, 3), unused)) static int tc_run(const char *env, const char *fmt,
                                                              ...) {
    const char *cli = getenv("CUTUNE_CLI");
    cr_assert_not_null(cli, "CUTUNE_CLI is not set (run through ctest)");
    char args[4096], cmd[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    snprintf(cmd, sizeof cmd, "env -u CUTUNE_STOP_AFTER_STEPS %s '%s' %s 2>&1",
             env != NULL ? env : "", cli, args);
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p);
    size_t n = 0, got;
    while ((got = fread(tc_out + n, 1, sizeof tc_out - 1 - n, p)) > 0) n += got;
    char sink[4096];
    while (fread(sink, 1, sizeof sink, p) > 0) continue; /* past the buffer: drop the rest */
    tc_out[n] = '\0';
    int status = pclose(p);
    cr_assert(WIFEXITED(status), "cutune %s did not exit normally (status %d)", args, status);
    return WEXITSTATUS(status);
}

/* Runs and expects an exit code and, when `text` is not NULL, that text in the output. */
#define TC_EXPECT(env, code, text, ...)                                                        \
    do {                                                                                       \
        int rc_ = tc_run(env, __VA_ARGS__);                                                    \
        const char *t_ = (text);                                                               \
        cr_expect_eq(rc_, code, "exit %d, expected %d; output:\n%s", rc_, code, tc_out);       \
        if (t_ != NULL)                                                                        \
            cr_expect(strstr(tc_out, t_) != NULL, "output lacks '%s':\n%s", t_, tc_out);       \
    } while (0)
#define TC_MUST(env, ...)                                                                      \
    do {                                                                                       \
        int rc_ = tc_run(env, __VA_ARGS__);                                                    \
        cr_assert_eq(rc_, 0, "exit %d; output:\n%s", rc_, tc_out);                             \
    } while (0)

__attribute__((unused)) static bool tc_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

/* The whole file as a string (malloc'ed), or NULL. */
__attribute__((unused)) static char *tc_read(const char *path) {
    FILE *f = fopen(path, "rb");
    if (f == NULL) return NULL;
    size_t cap = 1 << 16, n = 0, got;
    char *t = malloc(cap);
    cr_assert_not_null(t);
    while ((got = fread(t + n, 1, cap - 1 - n, f)) > 0) {
        n += got;
        if (n + 1 == cap) {
            t = realloc(t, cap *= 2);
            cr_assert_not_null(t);
        }
    }
    fclose(f);
    t[n] = '\0';
    return t;
}

__attribute__((unused)) static void tc_write(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f, "%s: %s", path, strerror(errno));
    fputs(text, f);
    fclose(f);
}

/* ---- CSV files: log.csv and predictions ---- */

typedef struct tc_csv {
    int cols, rows;
    char names[16][64];    /* header */
    char first[512][128];  /* first column of each row (epoch, file name or id) */
    double v[512][16];     /* the other columns as numbers */
} tc_csv;

/* Reads a CSV written by cutune (no quoting in these tests). */
__attribute__((unused)) static tc_csv *tc_csv_read(const char *path) {
    char *t = tc_read(path);
    cr_assert_not_null(t, "%s: cannot read", path);
    tc_csv *c = calloc(1, sizeof *c);
    cr_assert_not_null(c);
    char *save = NULL;
    int line = 0;
    for (char *l = strtok_r(t, "\n", &save); l != NULL; l = strtok_r(NULL, "\n", &save), line++) {
        char *s2 = NULL;
        int col = 0;
        for (char *f = strtok_r(l, ",", &s2); f != NULL; f = strtok_r(NULL, ",", &s2), col++) {
            cr_assert_lt(col, 16, "%s: too many columns", path);
            if (line == 0) snprintf(c->names[col], sizeof c->names[col], "%s", f);
            else if (col == 0) snprintf(c->first[line - 1], sizeof c->first[0], "%s", f);
            else c->v[line - 1][col] = strtod(f, NULL);
        }
        if (line == 0) c->cols = col;
        else cr_assert_eq(col, c->cols, "%s: row %d has %d fields, the header %d", path, line,
                          col, c->cols);
        cr_assert_lt(line, 512);
    }
    c->rows = line > 0 ? line - 1 : 0;
    free(t);
    return c;
}

/* Index of a named column, asserting it exists. */
__attribute__((unused)) static int tc_col(const tc_csv *c, const char *name) {
    for (int i = 0; i < c->cols; i++)
        if (strcmp(c->names[i], name) == 0) return i;
    cr_assert_fail("no column '%s'", name);
    return -1;
}

/* ---- HDF5 files: every numeric array, bit for bit ---- */

#if H5_VERSION_GE(1, 12, 0)
typedef H5L_info2_t tc_linfo;
#define tc_lvisit H5Lvisit2
#else
typedef H5L_info_t tc_linfo;
#define tc_lvisit H5Lvisit
#endif

typedef struct tc_h5cmp {
    hid_t other;
    int compared, differing;
    char first[512];
} tc_h5cmp;

/* The raw bytes of a numeric dataset (malloc'ed), with its size; NULL for other types. */
static void *tc_h5_bytes(hid_t d, size_t *bytes) {
    hid_t t = H5Dget_type(d), sp = H5Dget_space(d);
    H5T_class_t cls = H5Tget_class(t);
    void *buf = NULL;
    *bytes = 0;
    if (cls == H5T_FLOAT || cls == H5T_INTEGER) {
        hid_t nt = H5Tget_native_type(t, H5T_DIR_DEFAULT);
        *bytes = H5Tget_size(nt) * (size_t)H5Sget_simple_extent_npoints(sp);
        buf = malloc(*bytes > 0 ? *bytes : 1);
        if (buf != NULL && H5Dread(d, nt, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0) {
            free(buf);
            buf = NULL;
        }
        H5Tclose(nt);
    }
    H5Sclose(sp);
    H5Tclose(t);
    return buf;
}

static herr_t tc_h5_visit(hid_t g, const char *name, const tc_linfo *info, void *op) {
    (void)info;
    tc_h5cmp *c = op;
    hid_t o = H5Oopen(g, name, H5P_DEFAULT);
    if (o < 0) return 0;
    if (H5Iget_type(o) == H5I_DATASET) {
        size_t na = 0, nb = 0;
        void *a = tc_h5_bytes(o, &na), *b = NULL;
        if (a != NULL) {
            c->compared++;
            hid_t ob = H5Lexists(c->other, name, H5P_DEFAULT) > 0
                           ? H5Dopen2(c->other, name, H5P_DEFAULT)
                           : -1;
            if (ob >= 0) {
                b = tc_h5_bytes(ob, &nb);
                H5Dclose(ob);
            }
            if (b == NULL || na != nb || memcmp(a, b, na) != 0) {
                if (c->differing++ == 0)
                    snprintf(c->first, sizeof c->first, "%s%s", name,
                             b == NULL ? " (missing)" : "");
            }
        }
        free(a);
        free(b);
    }
    H5Oclose(o);
    return 0;
}

/* Compares every numeric array of file a with the array of the same path in file b (arrays b
 * has beyond a's are not looked at). Returns how many differ or are missing from b; `compared`
 * gets how many were compared and `first` the first that differs. */
__attribute__((unused)) static int tc_h5_diff(const char *a, const char *b, int *compared,
                                              char *first, size_t len) {
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t fa = H5Fopen(a, H5F_ACC_RDONLY, H5P_DEFAULT);
    cr_assert(fa >= 0, "%s: cannot open as HDF5", a);
    hid_t fb = H5Fopen(b, H5F_ACC_RDONLY, H5P_DEFAULT);
    cr_assert(fb >= 0, "%s: cannot open as HDF5", b);
    tc_h5cmp c = {.other = fb};
    cr_assert(tc_lvisit(fa, H5_INDEX_NAME, H5_ITER_INC, tc_h5_visit, &c) >= 0);
    H5Fclose(fa);
    H5Fclose(fb);
    if (compared != NULL) *compared = c.compared;
    if (first != NULL) snprintf(first, len, "%s", c.first);
    return c.differing;
}

/* Asserts that the numeric arrays of a (at least `min_arrays` of them) equal b's bit for bit. */
#define TC_SAME_ARRAYS(a, b, min_arrays)                                                        \
    do {                                                                                        \
        int n_, d_;                                                                             \
        char f_[512];                                                                           \
        d_ = tc_h5_diff(a, b, &n_, f_, sizeof f_);                                              \
        cr_expect_geq(n_, min_arrays, "%s: only %d arrays compared", a, n_);                    \
        cr_expect_eq(d_, 0, "%s and %s: %d of %d arrays differ, the first %s", a, b, d_, n_,   \
                     f_);                                                                       \
    } while (0)

#endif
