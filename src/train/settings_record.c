/* A run's record of its settings, config.txt: written from the settings table, read back, and
 * compared by --resume.
 *
 * The record is a `--config` file: one `key = value` line per setting, the key the flag's name
 * with underscores, the value as the flag reads it (names, true/false, numbers that read back
 * exactly), so `cutune train --out RUN_DIR --resume` continues a run from its folder alone and
 * `--config RUN_DIR/config.txt` starts the same run elsewhere. Records written by cutune 0.2
 * and earlier (enums as numbers, width_shift with width_shift_kind, preprocess_given, ...) are
 * read through the same setters, after their keys and values are translated, and compared by
 * writing them again in today's form. */
#define _XOPEN_SOURCE 700
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "callbacks.h"
#include "settings.h"

#define RECORD_HEADER                                                                            \
    "# cutune train settings of this run. `cutune train --out RUN_DIR --resume` continues it\n" \
    "# (add --epochs N to train longer); `--config` with this file starts the same run.\n"

char *ct_train_record(const ct_train_facts *f) {
    size_t cap = 16384, used = 0;
    char *text = malloc(cap);
    if (text == NULL) return NULL;
    used = (size_t)snprintf(text, cap, "%s", RECORD_HEADER);
    for (int i = 0; i < ct_settings_rows(); i++) {
        char value[4400];
        if (!ct_setting_record(i, f, value, sizeof value)) continue;
        int n = snprintf(text + used, cap - used, "%s = %s\n", ct_setting_key(i), value);
        if (n < 0 || (size_t)n >= cap - used) {
            free(text);
            return NULL;
        }
        used += (size_t)n;
    }
    return text;
}

char *ct_train_record_read(const char *path) {
    FILE *f = fopen(path, "r");
    if (f == NULL) return NULL;
    size_t cap = 65536, n = 0;
    char *t = malloc(cap);
    if (t != NULL) {
        n = fread(t, 1, cap - 1, f);
        t[n] = '\0';
    }
    bool ok = t != NULL && !ferror(f) && feof(f);
    fclose(f);
    if (!ok) {
        free(t);
        return NULL;
    }
    return t;
}

/* The line of `text` whose key is `key` ("lr = 0.01"), its length in *len; NULL when absent. */
static const char *line_of(const char *text, const char *key, int *len) {
    const size_t klen = strlen(key);
    for (const char *p = text; *p != '\0'; p += strcspn(p, "\n"), p += *p == '\n') {
        if (strncmp(p, key, klen) == 0 && strncmp(p + klen, " = ", 3) == 0) {
            *len = (int)strcspn(p, "\n");
            return p;
        }
    }
    return NULL;
}

/* The value of `key` in `text` into buf ("" when the line is there with no value); false when
 * absent. */
static bool value_of(const char *text, const char *key, char *buf, size_t cap) {
    int len = 0;
    const char *line = line_of(text, key, &len);
    if (line == NULL) return false;
    const int skip = (int)strlen(key) + 3;
    snprintf(buf, cap, "%.*s", len - skip, line + skip);
    return true;
}

/* ---- cutune 0.2's records ---- */

/* Its lines that read "key = N" for an enum, and the words of N. */
static const char *legacy_enum_word(const char *key, int v) {
    if (strcmp(key, "fill_mode") == 0) return ct_fill_mode_name((ct_fill_mode)v);
    if (strcmp(key, "class_mode") == 0) return ct_class_mode_name((ct_class_mode)v);
    if (strcmp(key, "color_mode") == 0) return ct_color_mode_name((ct_color_mode)v);
    if (strcmp(key, "interpolation") == 0) return ct_interpolation_name((ct_interpolation)v);
    if (strcmp(key, "mode") == 0) return ct_monitor_mode_name((ct_monitor_mode)v);
    if (strcmp(key, "na_policy") == 0 && v != CT_NA_VALUE) return ct_na_policy_name(v);
    return NULL;
}

static bool is_legacy(const char *text) {
    int len;
    return line_of(text, "width_shift_kind", &len) != NULL;
}

/* One line of a 0.2 record as today's key and value, in key/value; false to skip the line.
 * `text` is the whole record, for the lines that complete another (kinds, na_value). */
static bool legacy_line(const char *text, char *key, size_t kcap, char *value, size_t vcap) {
    static const char *const dropped[] = {"width_shift_kind", "height_shift_kind", "na_value",
                                          "preprocess"};
    for (size_t i = 0; i < sizeof dropped / sizeof dropped[0]; i++)
        if (strcmp(key, dropped[i]) == 0) return false;
    /* "Not given": no early stopping or plateau (-1), the whole set each epoch (0), no zoom or
     * brightness range (0,0). */
    if (strcmp(value, "-1") == 0 || strcmp(value, "0,0") == 0 ||
        (strcmp(key, "steps_per_epoch") == 0 && atoi(value) == 0))
        return false;
    char more[64], kind_key[80];
    if (strcmp(key, "width_shift") == 0 || strcmp(key, "height_shift") == 0) {
        /* The kind decides how the flag reads the number: "12" choice, "12.0" pixels. */
        snprintf(kind_key, sizeof kind_key, "%s_kind", key);
        const int kind = value_of(text, kind_key, more, sizeof more) ? atoi(more) : 0;
        if (kind != CT_SHIFT_CHOICE) ct_format_float(value, vcap, strtof(value, NULL));
        snprintf(key + strlen(key), kcap - strlen(key), "_range");
    } else if (strcmp(key, "preprocess_given") == 0) {
        snprintf(key, kcap, "preprocess");
    } else if (strcmp(key, "data_subset") == 0) {
        snprintf(key, kcap, "# data_subset");
    } else if (strcmp(key, "na_policy") == 0 && atoi(value) == CT_NA_VALUE) {
        if (!value_of(text, "na_value", value, vcap)) return false;
    } else if (legacy_enum_word(key, atoi(value)) != NULL) {
        snprintf(value, vcap, "%s", legacy_enum_word(key, atoi(value)));
    }
    return true;
}

/* ---- reading a record ---- */

static int row_of(const char *key) {
    for (int i = 0; i < ct_settings_rows(); i++)
        if (ct_setting_key(i) != NULL && strcmp(ct_setting_key(i), key) == 0) return i;
    return -1;
}

/* One `key = value` line applied to c; the facts it states noted in *f. */
static ct_status apply_line(ct_train_config *c, ct_train_facts *f, const char *key,
                            const char *value, const char *origin) {
    const int row = row_of(key);
    if (row < 0) return ct_error(CT_EFORMAT, "%s: unknown setting '%s'", origin, key);
    if (value[0] == '\0') return CT_OK; /* 0.2 wrote `val = ` for no value */
    const bool off = strcmp(value, "false") == 0 || strcmp(value, "0") == 0;
    ct_status s = ct_train_config_set_key(c, key, ct_setting_is_switch(row) && off ? NULL : value);
    if (s != CT_OK) return ct_error(s, "%s: %s", origin, ct_last_error());
    if (strcmp(key, "input_size") == 0) f->input = c->input_size;
    else if (strcmp(key, "head") == 0) f->head = c->head;
    else if (strcmp(key, "freeze_to") == 0) f->freeze_target = c->freeze_to;
    else if (strcmp(key, "class_mode") == 0) f->class_mode = c->class_mode;
    return CT_OK;
}

ct_status ct_train_config_read_record(ct_train_config *c, const char *text, bool with_subset,
                                      const char *origin, ct_train_facts *facts) {
    ct_train_facts f = {.c = c, .head = "", .freeze_target = ""};
    const bool legacy = is_legacy(text);
    for (const char *p = text; *p != '\0'; p += strcspn(p, "\n"), p += *p == '\n') {
        const int len = (int)strcspn(p, "\n");
        const char *eq = strstr(p, " = ");
        if (len == 0 || eq == NULL || eq - p >= len) continue;
        char key[64], value[4400];
        if (eq - p >= (int)sizeof key || len >= (int)sizeof value) continue;
        snprintf(key, sizeof key, "%.*s", (int)(eq - p), p);
        snprintf(value, sizeof value, "%.*s", len - (int)(eq - p) - 3, eq + 3);
        if (legacy && !legacy_line(text, key, sizeof key, value, sizeof value)) continue;
        const bool subset = strcmp(key, "# data_subset") == 0;
        if ((key[0] == '#' && !subset) || (subset && !with_subset)) continue;
        ct_status s = apply_line(c, &f, key, value, origin);
        if (s != CT_OK) return s;
    }
    if (facts != NULL) {
        f.default_preprocess = facts->default_preprocess;
        *facts = f;
    }
    return CT_OK;
}

/* `text` as today's cutune writes it: a 0.2 record read and written again (a malloc'd copy
 * either way; NULL when out of memory or unreadable, with the error set). */
static char *in_todays_form(const char *text, ct_preprocess_mode default_preprocess) {
    if (!is_legacy(text)) {
        char *copy = strdup(text);
        if (copy == NULL) ct_error(CT_ENOMEM, "cannot copy the run's settings");
        return copy;
    }
    ct_train_config *c = NULL;
    if (ct_train_config_new(&c) != CT_OK) return NULL;
    ct_train_facts f = {.default_preprocess = default_preprocess};
    char *out = NULL;
    if (ct_train_config_read_record(c, text, true, "config.txt", &f) == CT_OK) {
        out = ct_train_record(&f);
        if (out == NULL) ct_error(CT_ENOMEM, "cannot write the run's settings");
    }
    ct_train_config_free(c);
    return out;
}

/* ---- a run folder's record ---- */

ct_status ct_train_config_read_run(ct_train_config *c, const char *dir) {
    char path[4200];
    snprintf(path, sizeof path, "%s/config.txt", dir);
    char *text = ct_train_record_read(path);
    bool kfold = false;
    if (text == NULL) {
        snprintf(path, sizeof path, "%s/fold_1/config.txt", dir);
        if ((text = ct_train_record_read(path)) == NULL) return CT_OK; /* train says why */
        kfold = true;
    }
    /* "# data_subset = fold 2/5, seed 1" (0.2: without the '#'). */
    const char *subset = strstr(text, "data_subset = fold ");
    int fold = 0, folds = 0;
    if (subset != NULL && sscanf(subset, "data_subset = fold %d/%d", &fold, &folds) != 2)
        folds = 0;
    ct_status s = CT_OK;
    if (subset != NULL && !kfold)
        s = ct_error(CT_EINVAL, "%s is fold %d of a k-fold run: continue the whole run with "
                     "--out set to the folder that holds fold_1/ to fold_%d/", dir, fold, folds);
    if (s == CT_OK) s = ct_train_config_read_record(c, text, false, path, NULL);
    if (s == CT_OK && kfold && folds > 0) {
        char k[16];
        snprintf(k, sizeof k, "%d", folds);
        s = ct_train_config_set(c, "folds", k);
    }
    free(text);
    return s;
}

/* ---- comparing two records ---- */

static ct_status changed(const char *a, int la, const char *b, int lb) {
    return ct_error(CT_EINVAL, "--resume: the flags differ from the run's: it has '%.*s', now "
                    "'%.*s' (only --epochs may change)", a != NULL ? la : 9,
                    a != NULL ? a : "(not set)", b != NULL ? lb : 9, b != NULL ? b : "(not set)");
}

/* Whether two `key = value` lines of a path setting name the same file or folder: the run
 * may have been started with a relative path and resumed with an absolute one, or through a
 * link. Values that do not resolve (a missing file, "imagenet") compare as text. */
static bool same_path_line(const char *key, const char *a, int la, const char *b, int lb) {
    static const char *const path_keys[] = {"data", "val", "weights"};
    bool is_path = false;
    for (size_t i = 0; i < sizeof path_keys / sizeof path_keys[0]; i++)
        is_path |= strcmp(key, path_keys[i]) == 0;
    const int skip = (int)strlen(key) + 3; /* "key = " */
    char va[PATH_MAX], vb[PATH_MAX], ra[PATH_MAX], rb[PATH_MAX];
    if (!is_path || la - skip >= PATH_MAX || lb - skip >= PATH_MAX) return false;
    snprintf(va, sizeof va, "%.*s", la - skip, a + skip);
    snprintf(vb, sizeof vb, "%.*s", lb - skip, b + skip);
    return realpath(va, ra) != NULL && realpath(vb, rb) != NULL && strcmp(ra, rb) == 0;
}

/* A line of `saved` that no row writes (comments aside): recorded by another version, with
 * another meaning. */
static ct_status unknown_line(const char *saved) {
    for (const char *p = saved; *p != '\0'; p += strcspn(p, "\n"), p += *p == '\n') {
        const int len = (int)strcspn(p, "\n");
        const char *eq = strstr(p, " = ");
        char key[64] = "";
        if (eq != NULL && eq - p < len && eq - p < (int)sizeof key)
            snprintf(key, sizeof key, "%.*s", (int)(eq - p), p);
        if (len > 0 && p[0] != '#' && row_of(key) < 0) return changed(p, len, NULL, 0);
    }
    return CT_OK;
}

/* Whether two lines of `key` hold numbers that 0.2 wrote alike: it kept 6 digits ("%g"), so
 * --lr 0.0123456789 was recorded as 0.0123457 and resumes with the flag given again. */
static bool same_to_6_digits(const char *key, const char *a, int la, const char *b, int lb) {
    const int skip = (int)strlen(key) + 3;
    char va[64], vb[64], *ea, *eb;
    if (la - skip >= (int)sizeof va || lb - skip >= (int)sizeof vb) return false;
    snprintf(va, sizeof va, "%.*s", la - skip, a + skip);
    snprintf(vb, sizeof vb, "%.*s", lb - skip, b + skip);
    const double x = strtod(va, &ea), y = strtod(vb, &eb);
    char ga[32], gb[32];
    snprintf(ga, sizeof ga, "%g", x);
    snprintf(gb, sizeof gb, "%g", y);
    return ea != va && *ea == '\0' && eb != vb && *eb == '\0' && strcmp(ga, gb) == 0;
}

static ct_status compare_lines(const char *saved, const char *now, bool legacy) {
    for (int i = 0; i < ct_settings_rows(); i++) {
        const char *key = ct_setting_key(i);
        if (key == NULL) continue;
        int la = 0, lb = 0;
        const char *a = line_of(saved, key, &la), *b = line_of(now, key, &lb);
        if (a == NULL && b == NULL) continue;
        if (a != NULL && b != NULL && la == lb && strncmp(a, b, (size_t)la) == 0) continue;
        if (a == NULL || b == NULL ||
            !(same_path_line(key, a, la, b, lb) ||
              (legacy && same_to_6_digits(key, a, la, b, lb))))
            return changed(a, la, b, lb);
    }
    return unknown_line(saved);
}

ct_status ct_train_record_compare(const char *saved, const char *now,
                                  ct_preprocess_mode default_preprocess) {
    char *today = in_todays_form(saved, default_preprocess);
    if (today == NULL) return ct_error(CT_EFORMAT, "%s", ct_last_error());
    ct_status s = compare_lines(today, now, is_legacy(saved));
    free(today);
    return s;
}
