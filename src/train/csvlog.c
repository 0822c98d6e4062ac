/* Keras's CSVLogger format: a header `epoch,<sorted keys>` and one row per epoch, 0-based.
 * Each row rewrites the whole (small) file through a temporary name, so a crash or SIGKILL
 * mid-write never leaves a torn log next to a checkpoint. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/atomic.h"
#include "train/callbacks.h"

/* The shortest decimal that reads back as v, as a double or (as_float) as a float, written as
 * Python's repr writes it. */
static void format_shortest(char *buf, size_t len, double v, bool as_float) {
    if (isnan(v)) {
        snprintf(buf, len, "nan");
        return;
    }
    if (isinf(v)) {
        snprintf(buf, len, v > 0 ? "inf" : "-inf");
        return;
    }
    /* The fewest significant digits that read back as v... */
    const int max_prec = as_float ? 9 : 17;
    int prec = 1;
    for (; prec <= max_prec; prec++) {
        snprintf(buf, len, "%.*e", prec - 1, v);
        if (as_float ? strtof(buf, NULL) == (float)v : strtod(buf, NULL) == v) break;
    }
    if (prec > max_prec) prec = max_prec;
    /* ...written as Python's repr does: positional when the decimal exponent is in [-4, 16)
     * (10.0, 0.0001, 1000.0), scientific otherwise (1e-05, 1e+16); %e already writes the
     * exponent Python's way. */
    const char *e = strchr(buf, 'e');
    int exp10 = e != NULL ? atoi(e + 1) : 0;
    if (exp10 >= -4 && exp10 < 16) {
        int decimals = prec - 1 - exp10;
        snprintf(buf, len, "%.*f", decimals > 0 ? decimals : 0, v);
        /* Python writes integral floats as 1.0, not 1. */
        if (strchr(buf, '.') == NULL && strlen(buf) + 2 < len) strcat(buf, ".0");
    }
}

void ct_format_double(char *buf, size_t len, double v) { format_shortest(buf, len, v, false); }

void ct_format_float(char *buf, size_t len, float v) { format_shortest(buf, len, v, true); }

static int cmp_keys(const void *a, const void *b) { return strcmp(a, b); }

static ct_status read_all(const char *path, char **out, size_t *len) {
    *out = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (f == NULL) return ct_error(CT_EIO, "%s: cannot open: %s", path, strerror(errno));
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    for (size_t got; buf != NULL && (got = fread(buf + n, 1, cap - n - 1, f)) > 0;) {
        n += got;
        if (n + 1 == cap) {
            char *grown = realloc(buf, cap *= 2);
            if (grown == NULL) free(buf);
            buf = grown;
        }
    }
    fclose(f);
    if (buf == NULL) return ct_error(CT_ENOMEM, "%s: cannot read into memory", path);
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return CT_OK;
}

ct_status ct_csv_log_open(ct_csv_log *log, const char *path, const char *const *keys, int n_keys,
                          bool append) {
    memset(log, 0, sizeof *log);
    if (n_keys < 1 || n_keys > 16) return ct_error(CT_EINVAL, "CSV log: 1 to 16 keys");
    snprintf(log->path, sizeof log->path, "%s", path);
    log->sep = ',';
    log->n_keys = n_keys;
    for (int i = 0; i < n_keys; i++) snprintf(log->keys[i], sizeof log->keys[i], "%s", keys[i]);
    qsort(log->keys, (size_t)n_keys, sizeof log->keys[0], cmp_keys);
    if (append) return CT_OK;
    ct_atomic_file a;
    ct_status s = ct_atomic_open(&a, path, "w");
    if (s != CT_OK) return s;
    fputs("epoch", a.f);
    for (int i = 0; i < n_keys; i++) fprintf(a.f, "%c%s", log->sep, log->keys[i]);
    fputc('\n', a.f);
    return ct_atomic_commit(&a);
}

ct_status ct_csv_log_row(ct_csv_log *log, int epoch, const double *values) {
    /* values[i] belongs to log->keys[i]: the keys as sorted at open, Keras's column order. */
    char *old = NULL;
    size_t len = 0;
    ct_status s = read_all(log->path, &old, &len);
    if (s != CT_OK) return s;
    ct_atomic_file a;
    if ((s = ct_atomic_open(&a, log->path, "w")) != CT_OK) {
        free(old);
        return s;
    }
    fwrite(old, 1, len, a.f);
    free(old);
    fprintf(a.f, "%d", epoch);
    for (int i = 0; i < log->n_keys; i++) {
        char num[40];
        ct_format_double(num, sizeof num, values[i]);
        fprintf(a.f, "%c%s", log->sep, num);
    }
    fputc('\n', a.f);
    return ct_atomic_commit(&a);
}

ct_status ct_csv_log_read(const char *path, const char *const *keys, int n_keys, int stride,
                          double *values, int max_rows, int *rows) {
    *rows = 0;
    char *text = NULL;
    size_t len = 0;
    ct_status s = read_all(path, &text, &len);
    if (s != CT_OK) return s;
    int col[16];
    char *save = NULL, *line = strtok_r(text, "\n", &save);
    if (line == NULL || n_keys > 16 || stride < n_keys) {
        free(text);
        return ct_error(CT_EFORMAT, "%s: empty CSV log", path);
    }
    char *header[32];
    int nh = 0;
    for (char *t = line; nh < 32;) {
        header[nh++] = t;
        char *c = strchr(t, ',');
        if (c == NULL) break;
        *c = '\0';
        t = c + 1;
    }
    for (int k = 0; k < n_keys; k++) {
        col[k] = -1;
        for (int h = 0; h < nh; h++)
            if (strcmp(header[h], keys[k]) == 0) col[k] = h;
        if (col[k] < 0) {
            free(text);
            return ct_error(CT_EFORMAT, "%s: no column '%s'", path, keys[k]);
        }
    }
    while ((line = strtok_r(NULL, "\n", &save)) != NULL && *rows < max_rows) {
        double v[32];
        int nv = 0;
        for (char *t = line; nv < 32;) {
            v[nv++] = strtod(t, NULL);
            char *c = strchr(t, ',');
            if (c == NULL) break;
            t = c + 1;
        }
        double *row = values + (size_t)*rows * stride;
        for (int k = 0; k < stride; k++) row[k] = k < n_keys && col[k] < nv ? v[col[k]] : NAN;
        (*rows)++;
    }
    free(text);
    return CT_OK;
}

void ct_csv_field(FILE *f, const char *s) {
    if (strpbrk(s, ",\"\n\r") == NULL) {
        fputs(s, f);
        return;
    }
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"') fputc('"', f);
        fputc(*s, f);
    }
    fputc('"', f);
}
