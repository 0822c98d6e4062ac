/* The Statoil/C-CORE iceberg JSON files: a JSON array of records, each a 75x75 two-band radar
 * image, an incidence angle (or "na") and, in the training file, the label.
 *
 * The file is memory-mapped and cut into records here; cJSON parses each record on its own
 * (cJSON_ParseWithLengthOpts reports where the record ends), so a 1.5 GB test file never becomes
 * a 6 GB cJSON tree. This file only handles the array's brackets, commas and whitespace; every
 * value is cJSON's. Each record becomes a 75x75x3 float image [band_1, band_2, (band_1 +
 * band_2) / 2] (float32 arithmetic, as the usual NumPy code), the angle becomes the auxiliary
 * scalar, and a missing angle is filled by the chosen policy once the whole file is read. */
#define _POSIX_C_SOURCE 200809L

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

#define SIDE 75
#define BAND (SIDE * SIDE)

typedef struct iceberg_reader {
    const char *path;
    size_t n, cap;
    float *pixels;   /* (cap, 75, 75, 3) */
    float *angles;   /* (cap), NAN for "na" */
    int32_t *labels; /* (cap) */
    char **ids;      /* (cap) */
    bool labelled;
} iceberg_reader;

static const char *skip_ws(const char *p, const char *end) {
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) p++;
    return p;
}

static bool grow(iceberg_reader *r) {
    if (r->n < r->cap) return true;
    size_t cap = r->cap ? r->cap * 2 : 256;
    float *px = realloc(r->pixels, cap * BAND * 3 * sizeof *px);
    if (px == NULL) return false;
    r->pixels = px;
    float *a = realloc(r->angles, cap * sizeof *a);
    if (a == NULL) return false;
    r->angles = a;
    int32_t *l = realloc(r->labels, cap * sizeof *l);
    if (l == NULL) return false;
    r->labels = l;
    char **ids = realloc(r->ids, cap * sizeof *ids);
    if (ids == NULL) return false;
    r->ids = ids;
    r->cap = cap;
    return true;
}

/* Reads one band into channel `ch` of the image. */
static ct_status read_band(const iceberg_reader *r, size_t index, const char *id, const cJSON *rec,
                           const char *key, float *img, int ch) {
    const cJSON *band = cJSON_GetObjectItemCaseSensitive(rec, key);
    if (band == NULL)
        return ct_error(CT_EFORMAT, "%s: record %zu (id %s): missing field '%s'", r->path, index,
                        id, key);
    if (!cJSON_IsArray(band))
        return ct_error(CT_EFORMAT, "%s: record %zu (id %s): '%s' is not an array", r->path, index,
                        id, key);
    int k = 0;
    for (const cJSON *v = band->child; v != NULL; v = v->next, k++) {
        if (!cJSON_IsNumber(v))
            return ct_error(CT_EFORMAT, "%s: record %zu (id %s): %s[%d] is not a number", r->path,
                            index, id, key, k);
        if (!isfinite(v->valuedouble) || !isfinite((float)v->valuedouble))
            return ct_error(CT_ENUMERIC, "%s: record %zu (id %s): %s[%d] is not finite (%g)",
                            r->path, index, id, key, k, v->valuedouble);
        if (k < BAND) img[(size_t)k * 3 + ch] = (float)v->valuedouble;
    }
    if (k != BAND)
        return ct_error(CT_ESHAPE,
                        "%s: record %zu (id %s): '%s' has %d values, expected %d "
                        "(75x75)",
                        r->path, index, id, key, k, BAND);
    return CT_OK;
}

static ct_status read_record(iceberg_reader *r, size_t index, const cJSON *rec) {
    if (!cJSON_IsObject(rec))
        return ct_error(CT_EFORMAT, "%s: record %zu: not a JSON object", r->path, index);
    const cJSON *idj = cJSON_GetObjectItemCaseSensitive(rec, "id");
    if (idj == NULL)
        return ct_error(CT_EFORMAT, "%s: record %zu: missing field 'id'", r->path, index);
    if (!cJSON_IsString(idj))
        return ct_error(CT_EFORMAT, "%s: record %zu: 'id' is not a string", r->path, index);
    const char *id = idj->valuestring;
    if (!grow(r)) return ct_error(CT_ENOMEM, "%s: out of memory at record %zu", r->path, index);
    float *img = r->pixels + r->n * BAND * 3;
    ct_status s;
    if ((s = read_band(r, index, id, rec, "band_1", img, 0)) != CT_OK ||
        (s = read_band(r, index, id, rec, "band_2", img, 1)) != CT_OK)
        return s;
    for (size_t p = 0; p < BAND; p++) img[p * 3 + 2] = (img[p * 3] + img[p * 3 + 1]) / 2.0f;

    const cJSON *angle = cJSON_GetObjectItemCaseSensitive(rec, "inc_angle");
    float a;
    if (angle == NULL)
        return ct_error(CT_EFORMAT, "%s: record %zu (id %s): missing field 'inc_angle'", r->path,
                        index, id);
    if (cJSON_IsString(angle)) {
        if (strcmp(angle->valuestring, "na") != 0)
            return ct_error(CT_EFORMAT,
                            "%s: record %zu (id %s): inc_angle is the string \"%s\"; expected a "
                            "number or \"na\"",
                            r->path, index, id, angle->valuestring);
        a = NAN;
    } else if (cJSON_IsNumber(angle)) {
        if (!isfinite(angle->valuedouble))
            return ct_error(CT_ENUMERIC, "%s: record %zu (id %s): inc_angle is not finite", r->path,
                            index, id);
        a = (float)angle->valuedouble;
    } else {
        return ct_error(CT_EFORMAT,
                        "%s: record %zu (id %s): inc_angle is neither a number nor "
                        "\"na\"",
                        r->path, index, id);
    }

    const cJSON *label = cJSON_GetObjectItemCaseSensitive(rec, "is_iceberg");
    if (index == 0) r->labelled = label != NULL;
    int32_t y = -1;
    if (label != NULL && !r->labelled)
        return ct_error(CT_EFORMAT,
                        "%s: record %zu (id %s): has 'is_iceberg' but record 0 has "
                        "none (labels on some records only)",
                        r->path, index, id);
    if (label == NULL && r->labelled)
        return ct_error(CT_EFORMAT,
                        "%s: record %zu (id %s): missing field 'is_iceberg' (earlier "
                        "records are labelled)",
                        r->path, index, id);
    if (label != NULL) {
        if (!cJSON_IsNumber(label) || (label->valuedouble != 0.0 && label->valuedouble != 1.0))
            return ct_error(CT_EFORMAT, "%s: record %zu (id %s): is_iceberg must be 0 or 1",
                            r->path, index, id);
        y = (int32_t)label->valuedouble;
    }
    char *idcopy = ct_data_strdup(id);
    if (idcopy == NULL) return ct_error(CT_ENOMEM, "%s: out of memory", r->path);
    r->ids[r->n] = idcopy;
    r->angles[r->n] = a;
    r->labels[r->n] = y;
    r->n++;
    return CT_OK;
}

/* A cJSON syntax error, placed by byte offset, with the record's id when it can be found. */
static ct_status syntax_error(const iceberg_reader *r, size_t index, const char *start,
                              const char *at, const char *base, const char *end) {
    size_t off = (size_t)(at - base);
    const char *what = "JSON syntax error";
    size_t left = (size_t)(end - at);
    if ((left >= 3 && (memcmp(at, "NaN", 3) == 0 || memcmp(at, "nan", 3) == 0)) ||
        (left >= 8 && memcmp(at, "Infinity", 8) == 0) ||
        (left >= 9 && memcmp(at, "-Infinity", 9) == 0))
        what = "non-finite number (NaN and Infinity are not JSON)";
    /* Best effort: the "id" string of this record, if it comes before the error. */
    char id[128] = "";
    for (const char *p = start; p + 5 < at; p++) {
        if (memcmp(p, "\"id\"", 4) != 0) continue;
        const char *q = skip_ws(p + 4, at);
        if (q < at && *q == ':') q = skip_ws(q + 1, at);
        if (q < at && *q == '"') {
            size_t k = 0;
            for (q++; q < at && *q != '"' && k + 1 < sizeof id; q++) id[k++] = *q;
            id[k] = '\0';
        }
        break;
    }
    char near[24];
    size_t k = 0;
    for (const char *p = at; p < end && k + 1 < sizeof near && *p != '\n'; p++) near[k++] = *p;
    near[k] = '\0';
    if (id[0] != '\0')
        return ct_error(CT_EFORMAT, "%s: record %zu (id %s): %s at byte %zu near '%s'", r->path,
                        index, id, what, off, near);
    return ct_error(CT_EFORMAT, "%s: record %zu: %s at byte %zu near '%s'", r->path, index, what,
                    off, near);
}

static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return x < y ? -1 : x > y;
}

/* Fills the "na" angles; returns the fill value through *fill (NAN for ffill). */
static ct_status fill_angles(iceberg_reader *r, const ct_iceberg_options *o, size_t *na,
                             float *fill) {
    *na = 0;
    *fill = NAN;
    size_t first_na = 0, numeric = 0;
    double sum = 0.0;
    for (size_t i = 0; i < r->n; i++) {
        if (isnan(r->angles[i])) {
            if ((*na)++ == 0) first_na = i;
        } else {
            numeric++;
            sum += r->angles[i];
        }
    }
    if (*na == 0) return CT_OK;
    if (o->na_policy == CT_NA_ERROR)
        return ct_error(CT_EFORMAT,
                        "%s: record %zu (id %s): inc_angle is \"na\" (%zu records "
                        "have no angle; choose a fill policy: mean, median, ffill or a value)",
                        r->path, first_na, r->ids[first_na], *na);
    if (o->na_policy != CT_NA_VALUE && numeric == 0)
        return ct_error(CT_EFORMAT, "%s: every inc_angle is \"na\": nothing to fill them from",
                        r->path);
    switch (o->na_policy) {
    case CT_NA_MEAN:
        *fill = (float)(sum / (double)numeric);
        break;
    case CT_NA_MEDIAN: {
        float *v = malloc(numeric * sizeof *v);
        if (v == NULL) return ct_error(CT_ENOMEM, "%s: out of memory", r->path);
        size_t m = 0;
        for (size_t i = 0; i < r->n; i++)
            if (!isnan(r->angles[i])) v[m++] = r->angles[i];
        qsort(v, m, sizeof *v, cmp_float);
        *fill = m % 2 ? v[m / 2] : (float)(((double)v[m / 2 - 1] + v[m / 2]) / 2.0);
        free(v);
        break;
    }
    case CT_NA_VALUE:
        if (!isfinite(o->na_value)) return ct_error(CT_EINVAL, "na_value must be a finite number");
        *fill = o->na_value;
        break;
    case CT_NA_FFILL: {
        float last = NAN;
        for (size_t i = 0; i < r->n; i++) {
            if (isnan(r->angles[i]))
                r->angles[i] = last;
            else
                last = r->angles[i];
        }
        /* Leading "na" records have no earlier angle: take the first one after them. */
        float next = NAN;
        for (size_t i = r->n; i-- > 0;) {
            if (isnan(r->angles[i]))
                r->angles[i] = next;
            else
                next = r->angles[i];
        }
        return CT_OK;
    }
    default:
        return ct_error(CT_EINVAL, "unknown inc_angle policy %d", (int)o->na_policy);
    }
    for (size_t i = 0; i < r->n; i++)
        if (isnan(r->angles[i])) r->angles[i] = *fill;
    return CT_OK;
}

typedef struct id_entry {
    const char *id;
    size_t index;
} id_entry;

static int cmp_id(const void *a, const void *b) {
    const id_entry *x = a, *y = b;
    int c = strcmp(x->id, y->id);
    return c != 0 ? c : (x->index < y->index ? -1 : x->index > y->index);
}

static ct_status parse(iceberg_reader *r, const char *base, size_t size) {
    const char *end = base + size;
    const char *p = skip_ws(base, end);
    if (p == end) return ct_error(CT_EFORMAT, "%s: empty file", r->path);
    if (*p != '[')
        return ct_error(CT_EFORMAT,
                        "%s: not an iceberg JSON file: expected an array of records "
                        "('[') at byte %zu, found byte 0x%02x",
                        r->path, (size_t)(p - base), (unsigned char)*p);
    p = skip_ws(p + 1, end);
    if (p < end && *p == ']')
        return ct_error(CT_EFORMAT, "%s: the array holds no records", r->path);
    for (size_t index = 0;; index++) {
        if (p >= end)
            return ct_error(CT_EFORMAT, "%s: file truncated before record %zu", r->path, index);
        const char *rec_end = NULL;
        cJSON *rec = cJSON_ParseWithLengthOpts(p, (size_t)(end - p), &rec_end, 0);
        if (rec == NULL) return syntax_error(r, index, p, rec_end != NULL ? rec_end : p, base, end);
        ct_status s = read_record(r, index, rec);
        cJSON_Delete(rec);
        if (s != CT_OK) return s;
        p = skip_ws(rec_end, end);
        if (p < end && *p == ',') {
            p = skip_ws(p + 1, end);
            continue;
        }
        if (p < end && *p == ']') break;
        if (p >= end)
            return ct_error(CT_EFORMAT, "%s: file truncated after record %zu (no closing ']')",
                            r->path, index);
        return ct_error(CT_EFORMAT,
                        "%s: after record %zu: expected ',' or ']' at byte %zu, found byte "
                        "0x%02x",
                        r->path, index, (size_t)(p - base), (unsigned char)*p);
    }
    p = skip_ws(p + 1, end);
    if (p != end)
        return ct_error(CT_EFORMAT, "%s: unexpected data after the array at byte %zu", r->path,
                        (size_t)(p - base));
    return CT_OK;
}

ct_status ct_dataset_open_iceberg(ct_dataset **out, const char *path, const ct_iceberg_options *o) {
    *out = NULL;
    ct_iceberg_options defaults = {0};
    if (o == NULL) o = &defaults;
    if ((unsigned)o->na_policy > CT_NA_ERROR)
        return ct_error(CT_EINVAL, "unknown inc_angle policy %d", (int)o->na_policy);
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return ct_error(errno == ENOENT ? CT_ENOTFOUND : CT_EIO, "%s: cannot open: %s", path,
                        strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return ct_error(CT_EIO, "%s: not a regular file", path);
    }
    if (st.st_size == 0) {
        close(fd);
        return ct_error(CT_EFORMAT, "%s: empty file", path);
    }
    size_t size = (size_t)st.st_size;
    void *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    int map_err = errno;
    close(fd);
    if (map == MAP_FAILED)
        return ct_error(CT_EIO, "%s: cannot map the file: %s", path, strerror(map_err));
    posix_madvise(map, size, POSIX_MADV_SEQUENTIAL);

    iceberg_reader r = {.path = path};
    ct_data_store *store = NULL;
    ct_status s = parse(&r, map, size);
    munmap(map, size);
    size_t na = 0;
    float fill = NAN;
    if (s == CT_OK) s = fill_angles(&r, o, &na, &fill);
    if (s == CT_OK) {
        /* Predictions are written by id: ids must be unique. */
        id_entry *order = malloc(r.n * sizeof *order);
        if (order == NULL) {
            s = ct_error(CT_ENOMEM, "%s: out of memory", path);
        } else {
            for (size_t i = 0; i < r.n; i++) order[i] = (id_entry){r.ids[i], i};
            qsort(order, r.n, sizeof *order, cmp_id);
            for (size_t i = 1; i < r.n && s == CT_OK; i++)
                if (strcmp(order[i - 1].id, order[i].id) == 0)
                    s = ct_error(CT_EFORMAT, "%s: records %zu and %zu have the same id '%s'", path,
                                 order[i - 1].index, order[i].index, order[i].id);
            free(order);
        }
    }
    if (s == CT_OK && (store = ct_data_store_new()) == NULL)
        s = ct_error(CT_ENOMEM, "%s: out of memory", path);
    char **classes = NULL;
    if (s == CT_OK) {
        classes = calloc(2, sizeof *classes);
        if (classes == NULL || (classes[0] = ct_data_strdup("ship")) == NULL ||
            (classes[1] = ct_data_strdup("iceberg")) == NULL) {
            if (classes != NULL) free(classes[0]);
            free(classes);
            classes = NULL;
            s = ct_error(CT_ENOMEM, "%s: out of memory", path);
        }
    }
    if (s != CT_OK) {
        for (size_t i = 0; i < r.n; i++) free(r.ids[i]);
        free(r.ids);
        free(r.pixels);
        free(r.angles);
        free(r.labels);
        ct_data_store_unref(store);
        return s;
    }
    store->in_memory = true;
    store->n_classes = 2;
    store->class_names = classes;
    store->n = r.n;
    store->paths = NULL;
    store->names = r.ids;
    store->labels = r.labels;
    store->labelled = r.labelled;
    store->aux_dim = 1;
    store->aux = r.angles;
    store->h = SIDE;
    store->w = SIDE;
    store->c = 3;
    store->pixels = r.pixels;
    store->na_count = na;
    store->na_fill = fill;
    size_t *all = malloc(r.n * sizeof *all);
    if (all == NULL) {
        ct_data_store_unref(store);
        return ct_error(CT_ENOMEM, "%s: out of memory", path);
    }
    for (size_t i = 0; i < r.n; i++) all[i] = i;
    s = ct_data_view(store, all, r.n, o->role, out);
    free(all);
    ct_data_store_unref(store);
    return s;
}
