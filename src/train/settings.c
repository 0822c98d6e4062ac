/* The settings of `cutune train` by name (settings_table.h): setting them from text, their --help
 * lines, and the run's record of them, config.txt, which --resume compares.
 *
 * One table serves every place a setting is spelled: the command line and `--config` files go
 * through ct_train_config_apply, a binding's keyword arguments through the same function, the
 * help is printed from the table's lines, and config.txt is written and compared line by line
 * from its keys. A new setting is one row. */
#define _XOPEN_SOURCE 700
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../model/backbone.h"
#include "settings.h"

/* ---- setters: text to a field, with the range or names it accepts ---- */

typedef struct setting setting;
typedef ct_status (*setter)(ct_train_config *c, const setting *s, const char *value);
typedef bool (*recorder)(const setting *s, const ct_train_facts *f, char *buf, size_t cap);

struct setting {
    ct_train_setting_info info;
    setter set;
    size_t field;
    double lo, hi;
    const char *key;
    recorder record;
};

#define FIELD(c, s, type) ((type *)((char *)(c) + (s)->field))
#define CFIELD(c, s, type) ((const type *)((const char *)(c) + (s)->field))

static ct_status set_str(ct_train_config *c, const setting *s, const char *v) {
    *FIELD(c, s, const char *) = v;
    return CT_OK;
}

static ct_status set_switch(ct_train_config *c, const setting *s, const char *v) {
    *FIELD(c, s, bool) = v != NULL;
    return CT_OK;
}

static ct_status set_nothing(ct_train_config *c, const setting *s, const char *v) {
    (void)c, (void)s, (void)v;
    return CT_OK;
}

/* A whole number in [lo, hi], with the message the command line has always given. */
static ct_status whole(const setting *s, const char *v, long long *out) {
    char *end = NULL;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (errno != 0 || end == v || *end != '\0' || x < (long long)s->lo || x > (long long)s->hi)
        return ct_error(CT_EINVAL, "--%s: expected a whole number from %lld to %lld, not '%s'",
                        s->info.name, (long long)s->lo, (long long)s->hi, v);
    *out = x;
    return CT_OK;
}

static ct_status real(const setting *s, const char *v, double *out) {
    char *end = NULL;
    errno = 0;
    double x = strtod(v, &end);
    if (errno != 0 || end == v || *end != '\0' || !(x >= s->lo && x <= s->hi))
        return ct_error(CT_EINVAL, "--%s: expected a number from %g to %g, not '%s'",
                        s->info.name, s->lo, s->hi, v);
    *out = x;
    return CT_OK;
}

/* The setters of whole numbers differ only in the field's type (and cache_mb's unit). */
#define WHOLE_SETTER(fn, type, stored)                                                            \
    static ct_status fn(ct_train_config *c, const setting *s, const char *v) {                    \
        long long x = 0;                                                                          \
        ct_status st = whole(s, v, &x);                                                           \
        if (st == CT_OK) *FIELD(c, s, type) = (stored);                                           \
        return st;                                                                                \
    }
WHOLE_SETTER(set_int, int, (int)x)
WHOLE_SETTER(set_long, long, (long)x)
WHOLE_SETTER(set_u64, uint64_t, (uint64_t)x)
WHOLE_SETTER(set_cache_mb, size_t, (size_t)x << 20)
#undef WHOLE_SETTER

static ct_status set_double(ct_train_config *c, const setting *s, const char *v) {
    double x = 0.0;
    ct_status st = real(s, v, &x);
    if (st == CT_OK) *FIELD(c, s, double) = x;
    return st;
}

static ct_status set_float(ct_train_config *c, const setting *s, const char *v) {
    double x = 0.0;
    ct_status st = real(s, v, &x);
    if (st == CT_OK) *FIELD(c, s, float) = (float)x;
    return st;
}

static ct_status set_split(ct_train_config *c, const setting *s, const char *v) {
    if (strcmp(v, "keras") == 0) *FIELD(c, s, ct_split_method) = CT_SPLIT_KERAS;
    else if (strcmp(v, "stratified") == 0) *FIELD(c, s, ct_split_method) = CT_SPLIT_STRATIFIED;
    else return ct_error(CT_EINVAL, "--split: expected keras or stratified, not '%s'", v);
    return CT_OK;
}

/* The parsers of data.h, run.h and train.h, each writing one enum. */
#define ENUM_SETTER(name, type, parse)                                                         \
    static ct_status name(ct_train_config *c, const setting *s, const char *v) {              \
        return parse(v, FIELD(c, s, type));                                                   \
    }
ENUM_SETTER(set_class_mode, ct_class_mode, ct_parse_class_mode)
ENUM_SETTER(set_color_mode, ct_color_mode, ct_parse_color_mode)
ENUM_SETTER(set_interpolation, ct_interpolation, ct_parse_interpolation)
ENUM_SETTER(set_fill_mode, ct_fill_mode, ct_parse_fill_mode)
ENUM_SETTER(set_strategy, ct_strategy, ct_parse_strategy)
ENUM_SETTER(set_mode, ct_monitor_mode, ct_monitor_mode_parse)
ENUM_SETTER(set_shift, ct_shift_range, ct_parse_shift_range)
#undef ENUM_SETTER

/* "--name: <the parser's message>" for the parsers whose messages do not name the flag. */
static ct_status flag_error(const setting *s) {
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", ct_last_error());
    return ct_error(CT_EINVAL, "--%s: %s", s->info.name, msg);
}

static ct_status set_na_policy(ct_train_config *c, const setting *s, const char *v) {
    if (ct_parse_na_policy(v, &c->na_policy, &c->na_value) != CT_OK) return flag_error(s);
    return CT_OK;
}

static ct_status set_zoom(ct_train_config *c, const setting *s, const char *v) {
    if (ct_parse_zoom_range(v, &c->augment.zoom_lo, &c->augment.zoom_hi) != CT_OK)
        return flag_error(s);
    return CT_OK;
}

static ct_status set_brightness(ct_train_config *c, const setting *s, const char *v) {
    if (ct_parse_range(v, &c->augment.brightness_lo, &c->augment.brightness_hi) != CT_OK)
        return flag_error(s);
    return CT_OK;
}

static ct_status set_preprocess(ct_train_config *c, const setting *s, const char *v) {
    ct_status st = ct_parse_preprocess(v, FIELD(c, s, ct_preprocess_mode));
    if (st == CT_OK) c->preprocess_set = true;
    return st;
}

/* An optimizer brings Keras's defaults for it: --lr and --momentum, applied after, change them. */
static ct_status set_optimizer(ct_train_config *c, const setting *s, const char *v) {
    (void)s;
    ct_optimizer_kind kind;
    ct_status st = ct_optimizer_parse(v, &kind);
    if (st == CT_OK) ct_optimizer_defaults(&c->optimizer, kind);
    return st;
}

static ct_status set_precision(ct_train_config *c, const setting *s, const char *v) {
    if (strcmp(v, "fp32") != 0 && strcmp(v, "tf32") != 0 && strcmp(v, "bf16") != 0)
        return ct_error(CT_EINVAL, "--precision '%s': expected fp32, tf32 or bf16", v);
    return set_str(c, s, v);
}

static ct_status set_augment_on(ct_train_config *c, const setting *s, const char *v) {
    if (strcmp(v, "auto") != 0 && strcmp(v, "device") != 0 && strcmp(v, "loader") != 0)
        return ct_error(CT_EINVAL, "--augment-on '%s': expected auto, device or loader", v);
    return set_str(c, s, v);
}

static ct_status set_backbone(ct_train_config *c, const setting *s, const char *v) {
    const ct_backbone *bb;
    ct_status st = ct_backbone_lookup(v, &bb);
    if (st != CT_OK) return flag_error(s);
    return set_str(c, s, v);
}

/* ---- recorders: a field as config.txt writes it ---- */

static bool rec_str(const setting *s, const ct_train_facts *f, char *buf, size_t cap) {
    snprintf(buf, cap, "%s", *CFIELD(f->c, s, const char *));
    return true;
}

static bool rec_str_or_empty(const setting *s, const ct_train_facts *f, char *buf, size_t cap) {
    const char *v = *CFIELD(f->c, s, const char *);
    snprintf(buf, cap, "%s", v != NULL ? v : "");
    return true;
}

/* Settings recorded only when given, so that runs recorded before they existed resume. */
static bool rec_given(const setting *s, const ct_train_facts *f, char *buf, size_t cap) {
    const char *v = *CFIELD(f->c, s, const char *);
    if (v == NULL) return false;
    snprintf(buf, cap, "%s", v);
    return true;
}

static bool rec_int(const setting *s, const ct_train_facts *f, char *buf, size_t cap) {
    snprintf(buf, cap, "%d", *CFIELD(f->c, s, int));
    return true;
}

/* An enum, as its number (the record's format since the first cutune). */
static bool rec_enum(const setting *s, const ct_train_facts *f, char *buf, size_t cap) {
    snprintf(buf, cap, "%d", *CFIELD(f->c, s, int));
    return true;
}

static bool rec_long(const setting *s, const ct_train_facts *f, char *buf, size_t cap) {
    snprintf(buf, cap, "%ld", *CFIELD(f->c, s, long));
    return true;
}

static bool rec_u64(const setting *s, const ct_train_facts *f, char *buf, size_t cap) {
    snprintf(buf, cap, "%llu", (unsigned long long)*CFIELD(f->c, s, uint64_t));
    return true;
}

static bool rec_double(const setting *s, const ct_train_facts *f, char *buf, size_t cap) {
    snprintf(buf, cap, "%g", *CFIELD(f->c, s, double));
    return true;
}

static bool rec_float(const setting *s, const ct_train_facts *f, char *buf, size_t cap) {
    snprintf(buf, cap, "%g", (double)*CFIELD(f->c, s, float));
    return true;
}

static bool rec_bool(const setting *s, const ct_train_facts *f, char *buf, size_t cap) {
    snprintf(buf, cap, "%d", *CFIELD(f->c, s, bool));
    return true;
}

static bool rec_split(const setting *s, const ct_train_facts *f, char *buf, size_t cap) {
    (void)s;
    snprintf(buf, cap, "%s", f->c->split_method == CT_SPLIT_KERAS ? "keras" : "stratified");
    return true;
}

/* What the run resolved: the input size of the data, the head it chose, the layer the
 * strategy freezes to, the class mode of the head. */
static bool rec_input(const setting *s, const ct_train_facts *f, char *buf, size_t cap) {
    (void)s;
    snprintf(buf, cap, "%d", f->input);
    return true;
}

static bool rec_head(const setting *s, const ct_train_facts *f, char *buf, size_t cap) {
    (void)s;
    snprintf(buf, cap, "%s", f->head);
    return true;
}

static bool rec_freeze_to(const setting *s, const ct_train_facts *f, char *buf, size_t cap) {
    (void)s;
    snprintf(buf, cap, "%s", f->freeze_target);
    return true;
}

static bool rec_class_mode(const setting *s, const ct_train_facts *f, char *buf, size_t cap) {
    (void)s;
    snprintf(buf, cap, "%d", (int)f->class_mode);
    return true;
}

static bool rec_weights(const setting *s, const ct_train_facts *f, char *buf, size_t cap) {
    (void)s;
    snprintf(buf, cap, "%s", f->c->weights != NULL ? f->c->weights : "none");
    return true;
}

static bool rec_optimizer(const setting *s, const ct_train_facts *f, char *buf, size_t cap) {
    (void)s;
    snprintf(buf, cap, "%s", ct_optimizer_name(f->c->optimizer.kind));
    return true;
}

static bool rec_schedule(const setting *s, const ct_train_facts *f, char *buf, size_t cap) {
    (void)s;
    snprintf(buf, cap, "%s", f->c->schedule != NULL ? f->c->schedule : "constant");
    return true;
}

static bool rec_shift(const setting *s, const ct_train_facts *f, char *buf, size_t cap) {
    snprintf(buf, cap, "%g", (double)CFIELD(f->c, s, ct_shift_range)->value);
    return true;
}

static bool rec_shift_kind(const setting *s, const ct_train_facts *f, char *buf, size_t cap) {
    snprintf(buf, cap, "%d", (int)CFIELD(f->c, s, ct_shift_range)->kind);
    return true;
}

static bool rec_zoom(const setting *s, const ct_train_facts *f, char *buf, size_t cap) {
    (void)s;
    snprintf(buf, cap, "%g,%g", (double)f->c->augment.zoom_lo, (double)f->c->augment.zoom_hi);
    return true;
}

static bool rec_brightness(const setting *s, const ct_train_facts *f, char *buf, size_t cap) {
    (void)s;
    snprintf(buf, cap, "%g,%g", (double)f->c->augment.brightness_lo,
             (double)f->c->augment.brightness_hi);
    return true;
}

static bool rec_augment_on(const setting *s, const ct_train_facts *f, char *buf, size_t cap) {
    const char *v = *CFIELD(f->c, s, const char *);
    if (v == NULL || strcmp(v, "auto") == 0) return false;
    snprintf(buf, cap, "%s", v);
    return true;
}

/* `preprocess` reads 0 for the default too (caffe for image folders), so an explicit
 * --preprocess other than the data's default is recorded by name as well: otherwise a run
 * started with --preprocess none on image folders would resume without it, on caffe inputs. */
static bool rec_preprocess_given(const setting *s, const ct_train_facts *f, char *buf,
                                 size_t cap) {
    (void)s;
    if (!f->c->preprocess_set || f->c->standardize.preprocess == f->default_preprocess)
        return false;
    snprintf(buf, cap, "%s", ct_preprocess_name(f->c->standardize.preprocess));
    return true;
}

static bool rec_backbone(const setting *s, const ct_train_facts *f, char *buf, size_t cap) {
    (void)s;
    const ct_backbone *bb = ct_backbone_find(f->c->backbone);
    if (bb == NULL || strcmp(bb->name, CT_BACKBONE_DEFAULT) == 0) return false;
    snprintf(buf, cap, "%s", bb->name);
    return true;
}

/* ---- the table ---- */

#define F(member) offsetof(ct_train_config, member)
#define ROW(flag, arg, group, help, set, field, lo, hi, key, record)                           \
    {{flag, arg, CT_SETTINGS_##group, help}, set, field, lo, hi, key, record},

static const setting table[] = {CT_TRAIN_SETTINGS(ROW)};

#undef ROW
#undef F

#define N_SETTINGS (int)(sizeof table / sizeof table[0])

static const char *const group_titles[CT_SETTINGS_GROUPS] = {
    [CT_SETTINGS_DATA] = "data (flow_from_directory / iceberg JSON)",
    [CT_SETTINGS_PREPROCESS] = "preprocessing (ImageDataGenerator.standardize)",
    [CT_SETTINGS_AUGMENT] = "augmentation (ImageDataGenerator; training data only)",
    [CT_SETTINGS_MODEL] = "model",
    [CT_SETTINGS_OPTIM] = "optimisation",
    [CT_SETTINGS_CALLBACKS] = "callbacks (ModelCheckpoint, EarlyStopping, ReduceLROnPlateau)",
    [CT_SETTINGS_RUN] = "run",
};

/* The row of a flag; `name` may use underscores for dashes, as Keras's arguments do. */
static const setting *find(const char *name, size_t len) {
    for (int i = 0; i < N_SETTINGS; i++) {
        const char *flag = table[i].info.name;
        if (flag == NULL || strlen(flag) != len) continue;
        size_t k = 0;
        while (k < len && (name[k] == flag[k] || (name[k] == '_' && flag[k] == '-'))) k++;
        if (k == len) return &table[i];
    }
    return NULL;
}

int ct_train_settings_count(void) {
    int n = 0;
    for (int i = 0; i < N_SETTINGS; i++) n += table[i].info.name != NULL;
    return n;
}

const ct_train_setting_info *ct_train_setting(int i) {
    for (int k = 0; k < N_SETTINGS; k++) {
        if (table[k].info.name == NULL) continue;
        if (i-- == 0) return &table[k].info;
    }
    return NULL;
}

const char *ct_train_settings_title(ct_train_settings_group g) {
    return (int)g >= 0 && g < CT_SETTINGS_GROUPS ? group_titles[g] : "";
}

/* ---- configurations that own their strings (ct_train_config_new) ---- */

struct ct_strpool {
    struct ct_strpool *next;
    char text[];
};

/* `value` as the config keeps it: a copy in its pool, or the caller's pointer. */
static const char *keep(ct_train_config *c, const char *value, ct_status *st) {
    if (c->pool == NULL || value == NULL) return value;
    size_t n = strlen(value) + 1;
    struct ct_strpool *p = malloc(sizeof *p + n);
    if (p == NULL) {
        *st = ct_error(CT_ENOMEM, "cannot keep a setting's value");
        return NULL;
    }
    memcpy(p->text, value, n);
    p->next = c->pool->next;
    c->pool->next = p;
    return p->text;
}

ct_status ct_train_config_new(ct_train_config **out) {
    *out = NULL;
    ct_train_config *c = malloc(sizeof *c);
    struct ct_strpool *head = calloc(1, sizeof *head);
    if (c == NULL || head == NULL) {
        free(c);
        free(head);
        return ct_error(CT_ENOMEM, "cannot allocate a training configuration");
    }
    ct_train_config_defaults(c);
    c->pool = head;
    *out = c;
    return CT_OK;
}

void ct_train_config_free(ct_train_config *c) {
    if (c == NULL) return;
    for (struct ct_strpool *p = c->pool, *next; p != NULL; p = next) {
        next = p->next;
        free(p);
    }
    free(c);
}

void ct_train_config_set_callbacks(ct_train_config *c, const ct_train_callbacks *cb) {
    if (cb != NULL) c->callbacks = *cb;
    else memset(&c->callbacks, 0, sizeof c->callbacks);
}

static ct_status apply_row(ct_train_config *c, const setting *s, const char *value) {
    if (value == NULL && s->info.arg != NULL)
        return ct_error(CT_EINVAL, "--%s needs a value", s->info.name);
    ct_status st = CT_OK;
    const char *kept = keep(c, value, &st);
    return st != CT_OK ? st : s->set(c, s, kept);
}

ct_status ct_train_config_set(ct_train_config *c, const char *name, const char *value) {
    const setting *s = name != NULL ? find(name, strlen(name)) : NULL;
    if (s == NULL)
        return ct_error(CT_EINVAL, "unknown flag '--%s' (see cutune train --help)",
                        name != NULL ? name : "");
    return apply_row(c, s, value);
}

ct_status ct_train_config_apply(ct_train_config *c, int n, const char *const *names,
                                const char *const *values) {
    for (int i = 0; i < n; i++)
        if (find(names[i], strlen(names[i])) == NULL)
            return ct_error(CT_EINVAL, "unknown flag '--%s' (see cutune train --help)", names[i]);
    /* In the table's order: a setting's defaults (--optimizer) come before what refines them. */
    for (int r = 0; r < N_SETTINGS; r++) {
        const setting *s = &table[r];
        if (s->info.name == NULL) continue;
        int last = -1;
        for (int i = 0; i < n; i++)
            if (find(names[i], strlen(names[i])) == s) last = i;
        if (last < 0) continue;
        ct_status st = apply_row(c, s, values[last]);
        if (st != CT_OK) return st;
    }
    return ct_train_config_check(c);
}

ct_status ct_train_config_check(const ct_train_config *c) {
    if (c->optimizer.nesterov && c->optimizer.kind != CT_OPT_SGD)
        return ct_error(CT_EINVAL, "--nesterov applies to --optimizer sgd");
    if (c->test != NULL && c->folds == 0)
        return ct_error(CT_EINVAL, "--test goes with --folds (the folds' predictions are "
                        "averaged); for one run use `cutune predict --model RUN_DIR/best.h5`");
    if (c->folds > 0 && (c->val != NULL || c->validation_split > 0.0))
        return ct_error(CT_EINVAL, "--folds takes each fold's validation data from --data: drop "
                        "--val / --validation-split");
    return CT_OK;
}

void ct_train_print_help(FILE *f) {
    for (int g = 0; g < CT_SETTINGS_GROUPS; g++) {
        fprintf(f, "%s:\n", group_titles[g]);
        for (int i = 0; i < N_SETTINGS; i++) {
            const ct_train_setting_info *s = &table[i].info;
            if (s->name == NULL || (int)s->group != g) continue;
            char left[96];
            int len = snprintf(left, sizeof left, "  --%s%s%s", s->name, s->arg ? " " : "",
                               s->arg ? s->arg : "");
            if (len < 34) fprintf(f, "%-34s%s\n", left, s->help);
            else fprintf(f, "%s\n%-34s%s\n", left, "", s->help);
        }
    }
}

/* ---- the record ---- */

char *ct_train_record(const ct_train_facts *f) {
    size_t cap = 16384, used = 0;
    char *text = malloc(cap);
    if (text == NULL) return NULL;
    text[0] = '\0';
    for (int i = 0; i < N_SETTINGS; i++) {
        const setting *s = &table[i];
        char value[4400];
        if (s->key == NULL || !s->record(s, f, value, sizeof value)) continue;
        int n = snprintf(text + used, cap - used, "%s = %s\n", s->key, value);
        if (n < 0 || (size_t)n >= cap - used) {
            free(text);
            return NULL;
        }
        used += (size_t)n;
    }
    return text;
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

ct_status ct_train_record_compare(const char *saved, const char *now) {
    for (int i = 0; i < N_SETTINGS; i++) {
        const char *key = table[i].key;
        if (key == NULL) continue;
        int la = 0, lb = 0;
        const char *a = line_of(saved, key, &la), *b = line_of(now, key, &lb);
        if (a == NULL && b == NULL) continue;
        if (a != NULL && b != NULL && la == lb && strncmp(a, b, (size_t)la) == 0) continue;
        if (a == NULL || b == NULL || !same_path_line(key, a, la, b, lb))
            return changed(a, la, b, lb);
    }
    /* A line this cutune does not know: recorded by another version, with another meaning. */
    for (const char *p = saved; *p != '\0'; p += strcspn(p, "\n"), p += *p == '\n') {
        int len = (int)strcspn(p, "\n");
        const char *eq = strstr(p, " = ");
        bool known = false;
        for (int i = 0; i < N_SETTINGS && eq != NULL && eq - p < len && !known; i++)
            known = table[i].key != NULL && strlen(table[i].key) == (size_t)(eq - p) &&
                    strncmp(p, table[i].key, (size_t)(eq - p)) == 0;
        if (len > 0 && !known) return changed(p, len, NULL, 0);
    }
    return CT_OK;
}
