/* The thin layer between cutune and the HDF5 C library: every call checked through one macro
 * that records the call and HDF5's own innermost message, string-list attributes in every form
 * Keras writes and reads (with bounds checked before anything is allocated for them), scalar
 * attributes, and safe opening (h5_probe.c reads a new file in a child process first). Atomic
 * file creation is h5_atomic.c's. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "model/model.h"
#include "io/weights.h"
#include "io.h"

/* ---- checked calls ---- */

typedef struct h5_failure {
    bool set;
    char expr[160];
    char func[64];
    char file[96];
    int line;
    char detail[256]; /* HDF5's innermost description */
    bool injected;    /* the test hook failed the call: it never ran */
} h5_failure;

/* The HDF5 build is not thread-safe, so neither is this record; the functions of this module
 * run on one thread at a time (see weights.h). */
static h5_failure last_failure;
static long fault_countdown, fault_counted;
static bool fault_injected;

static herr_t innermost(unsigned n, const H5E_error2_t *e, void *data) {
    (void)n;
    char *detail = data;
    /* The walk goes from the API call inwards: keep overwriting, the last one is the root. */
    if (e->desc != NULL && e->desc[0] != '\0') {
        snprintf(detail, sizeof last_failure.detail, "%s", e->desc);
    } else {
        char msg[128] = "";
        if (H5Eget_msg(e->min_num, NULL, msg, sizeof msg) > 0)
            snprintf(detail, sizeof last_failure.detail, "%s", msg);
    }
    return 0;
}

static const char *short_path(const char *file) {
    const char *p = strstr(file, "src/");
    return p != NULL ? p : file;
}

int64_t ct__h5_check(int64_t ret, const char *expr, const char *func, const char *file,
                     int line) {
    if (ret >= 0) return ret;
    h5_failure *f = &last_failure;
    f->set = true;
    snprintf(f->expr, sizeof f->expr, "%s", expr);
    snprintf(f->func, sizeof f->func, "%s", func);
    snprintf(f->file, sizeof f->file, "%s", short_path(file));
    f->line = line;
    f->detail[0] = '\0';
    f->injected = fault_injected;
    if (fault_injected) {
        fault_injected = false;
        snprintf(f->detail, sizeof f->detail, "injected failure (test hook)");
        return ret;
    }
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, innermost, f->detail);
    H5Eclear2(H5E_DEFAULT);
    if (f->detail[0] == '\0') snprintf(f->detail, sizeof f->detail, "call failed");
    return ret;
}

bool ct__h5_fault_now(void) {
    fault_counted++;
    if (fault_countdown > 0 && --fault_countdown == 0) {
        fault_injected = true;
        return true;
    }
    return false;
}

long ct__h5_fault_arm(long n) {
    long counted = fault_counted;
    fault_countdown = n > 0 ? n : 0;
    fault_counted = 0;
    return counted;
}

void ct__h5_begin(void) {
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    last_failure.set = false;
}

const char *ct__h5_last_message(void) { return last_failure.set ? last_failure.detail : ""; }

bool ct__h5_failure_injected(void) { return last_failure.set && last_failure.injected; }

ct_status ct__h5_error(ct_status code, const char *fmt, ...) {
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    const h5_failure *f = &last_failure;
    if (!f->set) return ct_error(code, "%s", msg);
    return ct_error(code, "%s (HDF5: %s; %s in %s at %s:%d)", msg, f->detail, f->expr, f->func,
                    f->file, f->line);
}

ct_status ct__wrap(ct_status code, const char *fmt, ...) {
    char old[1024], pre[1024];
    snprintf(old, sizeof old, "%s", ct_last_error());
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(pre, sizeof pre, fmt, ap);
    va_end(ap);
    return ct_error(code, "%s: %s", pre, old);
}

void ct__h5_close(hid_t id) {
    if (id < 0) return;
    /* Closing must not disturb the failure already recorded: call HDF5 directly. */
    switch (H5Iget_type(id)) {
    case H5I_FILE: H5Fclose(id); break;
    case H5I_GROUP: H5Gclose(id); break;
    case H5I_DATASET: H5Dclose(id); break;
    case H5I_ATTR: H5Aclose(id); break;
    case H5I_DATATYPE: H5Tclose(id); break;
    case H5I_DATASPACE: H5Sclose(id); break;
    case H5I_GENPROP_LST: H5Pclose(id); break;
    default: break;
    }
    H5Eclear2(H5E_DEFAULT);
}

ct_status ct__h5_open_read(const char *path, hid_t *file) {
    *file = -1;
    struct stat st;
    if (stat(path, &st) != 0) {
        if (errno == ENOENT) return ct_error(CT_ENOTFOUND, "%s: no such file", path);
        return ct_error(CT_EIO, "%s: cannot read: %s", path, strerror(errno));
    }
    if (S_ISDIR(st.st_mode)) return ct_error(CT_EINVAL, "%s: is a directory, not a weights file",
                                             path);
    if (st.st_size == 0) return ct_error(CT_EFORMAT, "%s: empty file (0 bytes), not HDF5", path);
    FILE *fp = fopen(path, "rb");
    if (fp == NULL) return ct_error(CT_EIO, "%s: cannot read: %s", path, strerror(errno));
    fclose(fp);
    htri_t is = CT_H5(H5Fis_hdf5(path));
    if (is == 0)
        return ct_error(CT_EFORMAT, "%s: not an HDF5 file (no HDF5 signature; %lld bytes)", path,
                        (long long)st.st_size);
    if (is < 0) return ct__h5_error(CT_EFORMAT, "%s: cannot check the HDF5 signature", path);
    ct_status ps = ct__h5_probe(path, &st);
    if (ps != CT_OK) return ps;
    hid_t fapl = CT_H5(H5Pcreate(H5P_FILE_ACCESS));
    if (fapl < 0) return ct__h5_error(CT_ENOMEM, "%s: cannot create a property list", path);
    /* Strong close: closing the file closes whatever an error path left open in it. */
    if (CT_H5(H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG)) < 0) {
        ct__h5_close(fapl);
        return ct__h5_error(CT_EIO, "%s: cannot set the close degree", path);
    }
    hid_t f = CT_H5(H5Fopen(path, H5F_ACC_RDONLY, fapl));
    ct__h5_close(fapl);
    if (f < 0) {
        if (strstr(ct__h5_last_message(), "truncated") != NULL)
            return ct__h5_error(CT_EFORMAT, "%s: truncated HDF5 file (%lld bytes; an interrupted "
                                "download or copy?)", path, (long long)st.st_size);
        return ct__h5_error(CT_EFORMAT, "%s: cannot open as HDF5 (damaged file?)", path);
    }
    *file = f;
    return CT_OK;
}

/* ---- string lists ---- */

void ct__strlist_free(ct__strlist *l) {
    if (l == NULL) return;
    for (int i = 0; i < l->n; i++) free(l->s[i]);
    free(l->s);
    l->s = NULL;
    l->n = 0;
}

/* More entries than any Keras model has layers; guards allocations against damaged files. */
#define MAX_LIST 1000000
#define MAX_FIXED_LEN 65536

static ct_status list_append(ct__strlist *l, const char *s, size_t len) {
    if (l->n >= MAX_LIST) return ct_error(CT_EFORMAT, "more than %d names", MAX_LIST);
    if ((l->n & (l->n - 1)) == 0) { /* grow at powers of two */
        size_t cap = l->n == 0 ? 1 : (size_t)l->n * 2;
        char **g = realloc(l->s, cap * sizeof *g);
        if (g == NULL) return ct_error(CT_ENOMEM, "out of memory reading names");
        l->s = g;
    }
    char *c = malloc(len + 1);
    if (c == NULL) return ct_error(CT_ENOMEM, "out of memory reading names");
    memcpy(c, s, len);
    c[len] = '\0';
    l->s[l->n++] = c;
    return CT_OK;
}

/* What a list attribute may hold: entries in all (the split parts together) and bytes in one
 * string (0: any). */
typedef struct list_bounds {
    long max_n;
    size_t max_len;
} list_bounds;

static const list_bounds any_list = {MAX_LIST, 0};

/* Appends a string after checking its length against the bounds. */
static ct_status append_bounded(ct__strlist *l, const char *s, size_t len, const list_bounds *b) {
    if (b->max_len > 0 && len > b->max_len)
        return ct_error(CT_EFORMAT, "entry %d is %zu bytes long (at most %zu)", l->n, len,
                        b->max_len);
    return list_append(l, s, len);
}

/* Reads one attribute (no split handling) and appends its strings to `out`; the count is
 * checked against the bounds before anything is allocated for it. */
static ct_status read_one(hid_t loc, const char *name, const char *where, ct__strlist *out,
                          bool *vlen, const list_bounds *b) {
    ct_status s = CT_OK;
    hid_t attr = -1, space = -1, type = -1, mem = -1;
    char **vbuf = NULL;
    char *fbuf = NULL;
    hssize_t n = 0;
    if ((attr = CT_H5(H5Aopen(loc, name, H5P_DEFAULT))) < 0 ||
        (space = CT_H5(H5Aget_space(attr))) < 0 || (type = CT_H5(H5Aget_type(attr))) < 0) {
        s = ct__h5_error(CT_EFORMAT, "%s: cannot read attribute %s", where, name);
        goto done;
    }
    H5S_class_t sc = (H5S_class_t)CT_H5(H5Sget_simple_extent_type(space));
    if (sc == H5S_NULL) goto done; /* no elements: an empty list */
    if ((n = CT_H5(H5Sget_simple_extent_npoints(space))) < 0) {
        s = ct__h5_error(CT_EFORMAT, "%s: attribute %s has a bad dataspace", where, name);
        goto done;
    }
    if (n == 0) goto done; /* Keras's empty list: float64 (0,) */
    if (n > b->max_n - out->n) {
        s = ct_error(CT_EFORMAT, "%s: attribute %s has %lld entries (at most %ld)", where, name,
                     (long long)n, b->max_n - out->n);
        goto done;
    }
    if (CT_H5(H5Tget_class(type)) != H5T_STRING) {
        s = ct_error(CT_EFORMAT, "%s: attribute %s is not a list of strings", where, name);
        goto done;
    }
    htri_t is_vlen = CT_H5(H5Tis_variable_str(type));
    if (is_vlen < 0 || (mem = CT_H5(H5Tcopy(type))) < 0) {
        s = ct__h5_error(CT_EFORMAT, "%s: attribute %s has a bad string type", where, name);
        goto done;
    }
    if (vlen != NULL) *vlen = is_vlen > 0;
    if (is_vlen > 0) {
        vbuf = calloc((size_t)n, sizeof *vbuf);
        if (vbuf == NULL) {
            s = ct_error(CT_ENOMEM, "%s: out of memory reading %s", where, name);
            goto done;
        }
        if (CT_H5(H5Aread(attr, mem, vbuf)) < 0) {
            free(vbuf);
            vbuf = NULL;
            s = ct__h5_error(CT_EFORMAT, "%s: cannot read attribute %s", where, name);
            goto done;
        }
        for (hssize_t i = 0; i < n && s == CT_OK; i++) {
            const char *v = vbuf[i] != NULL ? vbuf[i] : "";
            s = append_bounded(out, v, strlen(v), b);
        }
        (void)CT_H5(H5Dvlen_reclaim(mem, space, H5P_DEFAULT, vbuf));
        free(vbuf);
        vbuf = NULL;
        if (s != CT_OK) s = ct__wrap(s, "%s: attribute %s", where, name);
    } else {
        size_t len = H5Tget_size(type); /* 0 is HDF5's failure value here */
        if (len == 0) (void)CT_H5(-1);
        if (len == 0 || len > MAX_FIXED_LEN) {
            s = ct_error(CT_EFORMAT, "%s: attribute %s has strings of %zu bytes", where, name,
                         len);
            goto done;
        }
        if ((size_t)n * len > ((size_t)64 << 20)) {
            s = ct_error(CT_EFORMAT, "%s: attribute %s holds %lld strings of %zu bytes (over "
                         "64 MB)", where, name, (long long)n, len);
            goto done;
        }
        bool spaces = CT_H5(H5Tget_strpad(type)) == H5T_STR_SPACEPAD;
        fbuf = malloc((size_t)n * len);
        if (fbuf == NULL) {
            s = ct_error(CT_ENOMEM, "%s: out of memory reading %s", where, name);
            goto done;
        }
        if (CT_H5(H5Aread(attr, mem, fbuf)) < 0) {
            s = ct__h5_error(CT_EFORMAT, "%s: cannot read attribute %s", where, name);
            goto done;
        }
        for (hssize_t i = 0; i < n && s == CT_OK; i++) {
            const char *v = fbuf + (size_t)i * len;
            size_t l = strnlen(v, len); /* strips the trailing NULs */
            while (spaces && l > 0 && v[l - 1] == ' ') l--;
            s = append_bounded(out, v, l, b);
        }
        if (s != CT_OK) s = ct__wrap(s, "%s: attribute %s", where, name);
    }
done:
    free(fbuf);
    ct__h5_close(mem);
    ct__h5_close(type);
    ct__h5_close(space);
    ct__h5_close(attr);
    return s;
}

static ct_status read_strings(hid_t loc, const char *name, const char *where, ct__strlist *out,
                              bool *found, bool *vlen, bool *split, const list_bounds *b) {
    out->n = 0;
    out->s = NULL;
    *found = false;
    if (split != NULL) *split = false;
    htri_t ex = CT_H5(H5Aexists(loc, name));
    if (ex < 0) return ct__h5_error(CT_EFORMAT, "%s: cannot look up attribute %s", where, name);
    if (ex > 0) {
        *found = true;
        ct_status s = read_one(loc, name, where, out, vlen, b);
        if (s != CT_OK) ct__strlist_free(out);
        return s;
    }
    /* Keras splits attributes over 64,512 bytes into name0, name1, ... */
    for (int k = 0;; k++) {
        char part[300];
        snprintf(part, sizeof part, "%s%d", name, k);
        ex = CT_H5(H5Aexists(loc, part));
        if (ex < 0) {
            ct__strlist_free(out);
            return ct__h5_error(CT_EFORMAT, "%s: cannot look up attribute %s", where, part);
        }
        if (ex == 0) break;
        *found = true;
        if (split != NULL) *split = true;
        ct_status s = read_one(loc, part, where, out, vlen, b);
        if (s != CT_OK) {
            ct__strlist_free(out);
            return s;
        }
    }
    return CT_OK;
}

ct_status ct__h5_read_strings(hid_t loc, const char *name, const char *where, ct__strlist *out,
                              bool *found, bool *vlen, bool *split) {
    return read_strings(loc, name, where, out, found, vlen, split, &any_list);
}

ct_status ct__h5_read_names(hid_t loc, const char *name, const char *where, int max_n,
                            size_t max_len, ct__strlist *out, bool *found) {
    const list_bounds b = {max_n, max_len};
    return read_strings(loc, name, where, out, found, NULL, NULL, &b);
}

static hid_t vlen_string_type(void) {
    hid_t t = CT_H5(H5Tcopy(H5T_C_S1));
    if (t < 0) return t;
    if (CT_H5(H5Tset_size(t, H5T_VARIABLE)) < 0 || CT_H5(H5Tset_cset(t, H5T_CSET_ASCII)) < 0 ||
        CT_H5(H5Tset_strpad(t, H5T_STR_NULLTERM)) < 0) {
        ct__h5_close(t);
        return -1;
    }
    return t;
}

static ct_status write_vlen_list(hid_t loc, const char *name, const char *const *s, int n) {
    ct_status st = CT_OK;
    hsize_t dims[1] = {(hsize_t)n};
    hid_t type = vlen_string_type(), space = -1, attr = -1;
    if (type < 0 || (space = CT_H5(H5Screate_simple(1, dims, NULL))) < 0 ||
        (attr = CT_H5(H5Acreate2(loc, name, type, space, H5P_DEFAULT, H5P_DEFAULT))) < 0 ||
        CT_H5(H5Awrite(attr, type, s)) < 0)
        st = ct__h5_error(CT_EIO, "cannot write attribute %s", name);
    ct__h5_close(attr);
    ct__h5_close(space);
    ct__h5_close(type);
    return st;
}

ct_status ct__h5_write_strings(hid_t loc, const char *name, const char *const *s, int n,
                               size_t limit) {
    if (n == 0) {
        /* Keras (numpy) writes an empty list as float64 of shape (0,): a simple dataspace with
         * dims {0}. A null dataspace would make Keras's reader fail. */
        ct_status st = CT_OK;
        hsize_t dims[1] = {0};
        hid_t space = CT_H5(H5Screate_simple(1, dims, NULL)), attr = -1;
        if (space < 0 ||
            (attr = CT_H5(H5Acreate2(loc, name, H5T_IEEE_F64LE, space, H5P_DEFAULT,
                                     H5P_DEFAULT))) < 0)
            st = ct__h5_error(CT_EIO, "cannot write the empty attribute %s", name);
        ct__h5_close(attr);
        ct__h5_close(space);
        return st;
    }
    size_t longest = 1;
    for (int i = 0; i < n; i++)
        if (strlen(s[i]) > longest) longest = strlen(s[i]);
    if (longest > limit)
        return ct_error(CT_EINVAL, "attribute %s: a name of %zu bytes is longer than HDF5's "
                        "%zu-byte attribute limit", name, longest, limit);
    /* numpy's array_split into k parts: the first n % k parts have one more element. */
    int k = 1;
    while ((size_t)((n + k - 1) / k) * longest > limit) k++;
    if (k == 1) return write_vlen_list(loc, name, s, n);
    int start = 0;
    for (int c = 0; c < k; c++) {
        int len = n / k + (c < n % k ? 1 : 0);
        char part[300];
        snprintf(part, sizeof part, "%s%d", name, c);
        ct_status st = write_vlen_list(loc, part, s + start, len);
        if (st != CT_OK) return st;
        start += len;
    }
    return CT_OK;
}

/* ---- scalar attributes ---- */

ct_status ct__h5_write_string(hid_t loc, const char *name, const char *value) {
    ct_status st = CT_OK;
    hid_t type = vlen_string_type(), space = -1, attr = -1;
    if (type < 0 || (space = CT_H5(H5Screate(H5S_SCALAR))) < 0 ||
        (attr = CT_H5(H5Acreate2(loc, name, type, space, H5P_DEFAULT, H5P_DEFAULT))) < 0 ||
        CT_H5(H5Awrite(attr, type, &value)) < 0)
        st = ct__h5_error(CT_EIO, "cannot write attribute %s", name);
    ct__h5_close(attr);
    ct__h5_close(space);
    ct__h5_close(type);
    return st;
}

ct_status ct__h5_write_i64(hid_t loc, const char *name, const int64_t *v, int n) {
    ct_status st = CT_OK;
    hsize_t dims[1] = {(hsize_t)n};
    hid_t space = n == 1 ? CT_H5(H5Screate(H5S_SCALAR)) : CT_H5(H5Screate_simple(1, dims, NULL));
    hid_t attr = -1;
    if (space < 0 ||
        (attr = CT_H5(H5Acreate2(loc, name, H5T_STD_I64LE, space, H5P_DEFAULT, H5P_DEFAULT))) <
            0 ||
        (n > 0 && CT_H5(H5Awrite(attr, H5T_NATIVE_INT64, v)) < 0))
        st = ct__h5_error(CT_EIO, "cannot write attribute %s", name);
    ct__h5_close(attr);
    ct__h5_close(space);
    return st;
}

ct_status ct__h5_write_f32(hid_t g, const char *name, const float *data, const hsize_t *dims,
                           int nd, hid_t lcpl, const char *path, const char *what) {
    ct_status s = CT_OK;
    hid_t space = CT_H5(H5Screate_simple(nd, dims, NULL)), ds = -1;
    if (space < 0 ||
        (ds = CT_H5(H5Dcreate2(g, name, H5T_IEEE_F32LE, space, lcpl, H5P_DEFAULT,
                               H5P_DEFAULT))) < 0 ||
        CT_H5(H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, data)) < 0)
        s = ct__h5_error(CT_EIO, "cannot write %s: %s %s", path, what, name);
    ct__h5_close(ds);
    ct__h5_close(space);
    return s;
}

ct_status ct__h5_write_f64(hid_t loc, const char *name, double v) {
    ct_status st = CT_OK;
    hid_t space = CT_H5(H5Screate(H5S_SCALAR)), attr = -1;
    if (space < 0 ||
        (attr = CT_H5(H5Acreate2(loc, name, H5T_IEEE_F64LE, space, H5P_DEFAULT, H5P_DEFAULT))) <
            0 ||
        CT_H5(H5Awrite(attr, H5T_NATIVE_DOUBLE, &v)) < 0)
        st = ct__h5_error(CT_EIO, "cannot write attribute %s", name);
    ct__h5_close(attr);
    ct__h5_close(space);
    return st;
}

/* Opens a numeric attribute holding exactly `n` elements of class `cls`. */
static ct_status open_numeric(hid_t loc, const char *name, const char *where, int n,
                              H5T_class_t cls, hid_t *attr_out) {
    *attr_out = -1;
    htri_t ex = CT_H5(H5Aexists(loc, name));
    if (ex < 0) return ct__h5_error(CT_EFORMAT, "%s: cannot look up attribute %s", where, name);
    if (ex == 0) return ct_error(CT_ENOTFOUND, "%s: attribute %s is missing", where, name);
    hid_t attr = CT_H5(H5Aopen(loc, name, H5P_DEFAULT)), space = -1, type = -1;
    ct_status s = CT_OK;
    if (attr < 0 || (space = CT_H5(H5Aget_space(attr))) < 0 ||
        (type = CT_H5(H5Aget_type(attr))) < 0) {
        s = ct__h5_error(CT_EFORMAT, "%s: cannot read attribute %s", where, name);
    } else if (CT_H5(H5Tget_class(type)) != cls ||
               CT_H5(H5Sget_simple_extent_npoints(space)) != n) {
        s = ct_error(CT_EFORMAT, "%s: attribute %s is not %d %s", where, name, n,
                     cls == H5T_INTEGER ? "integer(s)" : "number(s)");
    }
    ct__h5_close(type);
    ct__h5_close(space);
    if (s != CT_OK) {
        ct__h5_close(attr);
        return s;
    }
    *attr_out = attr;
    return CT_OK;
}

ct_status ct__h5_read_i64(hid_t loc, const char *name, const char *where, int64_t *v, int n) {
    hid_t attr;
    ct_status s = open_numeric(loc, name, where, n, H5T_INTEGER, &attr);
    if (s != CT_OK) return s;
    if (CT_H5(H5Aread(attr, H5T_NATIVE_INT64, v)) < 0)
        s = ct__h5_error(CT_EFORMAT, "%s: cannot read attribute %s", where, name);
    ct__h5_close(attr);
    return s;
}

ct_status ct__h5_read_f64(hid_t loc, const char *name, const char *where, double *v) {
    hid_t attr;
    ct_status s = open_numeric(loc, name, where, 1, H5T_FLOAT, &attr);
    if (s != CT_OK) return s;
    if (CT_H5(H5Aread(attr, H5T_NATIVE_DOUBLE, v)) < 0)
        s = ct__h5_error(CT_EFORMAT, "%s: cannot read attribute %s", where, name);
    ct__h5_close(attr);
    return s;
}

ct_status ct__h5_read_string_alloc(hid_t loc, const char *name, const char *where, char **out) {
    *out = NULL;
    htri_t ex = CT_H5(H5Aexists(loc, name));
    if (ex < 0) return ct__h5_error(CT_EFORMAT, "%s: cannot look up attribute %s", where, name);
    if (ex == 0) return ct_error(CT_ENOTFOUND, "%s: attribute %s is missing", where, name);
    ct__strlist l = {0};
    ct_status s = read_one(loc, name, where, &l, NULL, &any_list);
    if (s != CT_OK) return s;
    if (l.n != 1) {
        ct__strlist_free(&l);
        return ct_error(CT_EFORMAT, "%s: attribute %s is not one string", where, name);
    }
    *out = l.s[0];
    free(l.s);
    return CT_OK;
}

ct_status ct__h5_read_string(hid_t loc, const char *name, const char *where, char *buf,
                             size_t cap) {
    char *v = NULL;
    ct_status s = ct__h5_read_string_alloc(loc, name, where, &v);
    if (s != CT_OK) return s;
    if (strlen(v) >= cap) s = ct_error(CT_EFORMAT, "%s: attribute %s is longer than %zu bytes",
                                       where, name, cap - 1);
    else
        memcpy(buf, v, strlen(v) + 1);
    free(v);
    return s;
}
