/* Helpers shared by the tests. */
#define _XOPEN_SOURCE 700 /* mkdtemp */
#include "util.h"

#include <criterion/criterion.h>
#include <sys/wait.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "cutune/cuda.h"
#include "core/rng.h"

void tu_fill(float *x, size_t n, uint32_t tag, float lo, float hi) {
    for (size_t i = 0; i < n; i++) {
        uint32_t w = ct_rng_word(99, (uint32_t)CT_RNG_TEST << 16, tag, (uint32_t)(i >> 32),
                                 (uint32_t)i);
        x[i] = lo + (hi - lo) * ct_rng_unit(w);
    }
}

double tu_rel_err(const float *a, const float *b, size_t n) {
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - (double)b[i];
        num += d * d;
        den += (double)b[i] * b[i];
    }
    if (den == 0.0) return num == 0.0 ? 0.0 : INFINITY;
    return sqrt(num / den);
}

const char *tu_fixture(const char *name) {
    static char paths[4][4096];
    static int next;
    char *path = paths[next++ % 4];
    const char *dir = getenv("CUTUNE_FIXTURES");
    snprintf(path, sizeof paths[0], "%s/%s", dir != NULL ? dir : "tests/fixtures", name);
    return path;
}

void tu_temp_dir(char *dir, size_t cap, const char *prefix) {
    snprintf(dir, cap, "/tmp/%s_XXXXXX", prefix);
    cr_assert_not_null(mkdtemp(dir), "cannot make %s", dir);
}

void tu_remove_dir(const char *dir) {
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
}

#include <string.h>

int tu_golden_load(tu_golden *g, const char *path) {
    g->a = NULL;
    g->n = 0;
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        fprintf(stderr, "%s: cannot open (the scripts in tests/reference/ regenerate fixtures)\n", path);
        return -1;
    }
    int cap = 0;
    char name[160];
    int c;
    while ((c = fgetc(f)) != EOF) {
        if (c == '#' || c == '\n') {
            while (c != '\n' && c != EOF) c = fgetc(f);
            continue;
        }
        ungetc(c, f);
        tu_array a = {0};
        if (fscanf(f, "%159s %zu %zu %zu", name, &a.size, &a.stride, &a.count) != 4) goto bad;
        snprintf(a.name, sizeof a.name, "%s", name);
        a.v = malloc(a.count * sizeof *a.v);
        if (a.v == NULL) goto bad;
        for (size_t i = 0; i < a.count; i++)
            if (fscanf(f, "%lf", &a.v[i]) != 1) {
                free(a.v);
                goto bad;
            }
        if (g->n == cap) {
            cap = cap ? 2 * cap : 64;
            tu_array *grown = realloc(g->a, (size_t)cap * sizeof *grown);
            if (grown == NULL) {
                free(a.v);
                goto bad;
            }
            g->a = grown;
        }
        g->a[g->n++] = a;
    }
    fclose(f);
    return 0;
bad:
    fprintf(stderr, "%s: malformed line after %d arrays\n", path, g->n);
    fclose(f);
    tu_golden_free(g);
    return -1;
}

const tu_array *tu_golden_get(const tu_golden *g, const char *name) {
    for (int i = 0; i < g->n; i++)
        if (strcmp(g->a[i].name, name) == 0) return &g->a[i];
    return NULL;
}

void tu_golden_free(tu_golden *g) {
    for (int i = 0; i < g->n; i++) free(g->a[i].v);
    free(g->a);
    g->a = NULL;
    g->n = 0;
}

double tu_golden_err(const tu_array *ref, const float *x, size_t size) {
    if (size != ref->size) return INFINITY;
    double num = 0.0, den = 0.0, maxabs = 0.0;
    for (size_t k = 0; k < ref->count; k++) {
        /* The fixture prints float32 values with 9 digits: rounding them back to float32
         * recovers them exactly, so exact comparisons are possible. */
        double r = (float)ref->v[k];
        double v = x[k * ref->stride], d = v - r;
        num += d * d;
        den += r * r;
        if (fabs(v) > maxabs) maxabs = fabs(v);
    }
    return den == 0.0 ? maxabs : sqrt(num / den);
}

char tu_out[1 << 16];

int tu_sh(const char *cmdline) {
    char cmd[16384];
    snprintf(cmd, sizeof cmd, "%s 2>&1", cmdline);
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p, "cannot run %s", cmdline);
    size_t n = fread(tu_out, 1, sizeof tu_out - 1, p);
    tu_out[n] = '\0';
    int status = pclose(p);
    cr_assert(WIFEXITED(status), "%s did not exit normally", cmdline);
    return WEXITSTATUS(status);
}

int tu_cli(const char *args) {
    const char *cli = getenv("CUTUNE_CLI");
    cr_assert_not_null(cli, "CUTUNE_CLI is not set (run the tests through ctest)");
    char cmd[16384];
    snprintf(cmd, sizeof cmd, "'%s' %s", cli, args);
    return tu_sh(cmd);
}

char tu_no_gpu_reason[512] = "not checked";

bool tu_gpu_usable(void) {
    static int usable = -1; /* asked once per process */
    if (usable < 0) {
        ct_device_info info[8];
        int count = 0;
        usable = ct_cuda_devices(info, 8, &count) == CT_OK && count > 0;
        if (!usable) snprintf(tu_no_gpu_reason, sizeof tu_no_gpu_reason, "%s", ct_last_error());
    }
    return usable != 0;
}
