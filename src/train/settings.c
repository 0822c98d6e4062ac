/* The settings of `cutune train` by name (settings_table.h): setting them from text, their --help
 * lines, and the run's record of them, config.txt, which --resume compares.
 *
 * One table serves every place a setting is spelled: the command line and `--config` files go
 * through ct_train_config_apply, a binding's keyword arguments through the same function, the
 * help is printed from the table's lines, and config.txt is written and compared line by line
 * from its keys. A new setting is one row. */
#define _XOPEN_SOURCE 700
#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../model/backbone.h"
#include "callbacks.h"
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
ENUM_SETTER(set_png16, ct_png16, ct_parse_png16)
ENUM_SETTER(set_interpolation, ct_interpolation, ct_parse_interpolation)
ENUM_SETTER(set_fill_mode, ct_fill_mode, ct_parse_fill_mode)
ENUM_SETTER(set_mode, ct_monitor_mode, ct_monitor_mode_parse)
ENUM_SETTER(set_shift, ct_shift_range, ct_parse_shift_range)
#undef ENUM_SETTER

/* --strategy and --freeze-to choose the same thing: the one set last replaces the other (a
 * run's record gives freeze_to; --strategy on the command line of its resumption replaces it).
 * Both in one set of flags are refused by ct_train_config_apply. */
static ct_status set_strategy(ct_train_config *c, const setting *s, const char *v) {
    ct_status st = ct_parse_strategy(v, FIELD(c, s, ct_strategy));
    if (st == CT_OK) c->freeze_to = NULL;
    return st;
}

static ct_status set_freeze_to(ct_train_config *c, const setting *s, const char *v) {
    c->strategy = CT_STRATEGY_NONE;
    return set_str(c, s, v);
}

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

/* A path or list that is often not given: no line then (a config file has no empty value). */
static bool rec_str_or_empty(const setting *s, const ct_train_facts *f, char *buf, size_t cap) {
    const char *v = *CFIELD(f->c, s, const char *);
    if (v == NULL || v[0] == '\0') return false;
    snprintf(buf, cap, "%s", v);
    return true;
}

/* Settings recorded only when given, so that runs recorded before they existed resume. */
static bool rec_given(const setting *s, const ct_train_facts *f, char *buf, size_t cap) {
    const char *v = *CFIELD(f->c, s, const char *);
    if (v == NULL) return false;
    snprintf(buf, cap, "%s", v);
    return true;
}

/* Whole numbers; none below the flag's range, which means "not given" (--patience -1: no
 * early stopping, --steps-per-epoch 0: the whole set), so config.txt reads as flags. */
static bool rec_int(const setting *s, const ct_train_facts *f, char *buf, size_t cap) {
    const int v = *CFIELD(f->c, s, int);
    snprintf(buf, cap, "%d", v);
    return v >= s->lo;
}

static bool rec_long(const setting *s, const ct_train_facts *f, char *buf, size_t cap) {
    const long v = *CFIELD(f->c, s, long);
    snprintf(buf, cap, "%ld", v);
    return v >= s->lo;
}

static bool rec_u64(const setting *s, const ct_train_facts *f, char *buf, size_t cap) {
    snprintf(buf, cap, "%llu", (unsigned long long)*CFIELD(f->c, s, uint64_t));
    return true;
}

/* Numbers as Python writes them (0.01, 10.0, 1e-05), with the fewest digits that read back as
 * the same value, so a run continued from its config.txt computes exactly as it began. */
static bool rec_double(const setting *s, const ct_train_facts *f, char *buf, size_t cap) {
    ct_format_double(buf, cap, *CFIELD(f->c, s, double));
    return true;
}

static bool rec_float(const setting *s, const ct_train_facts *f, char *buf, size_t cap) {
    ct_format_float(buf, cap, *CFIELD(f->c, s, float));
    return true;
}

static bool rec_bool(const setting *s, const ct_train_facts *f, char *buf, size_t cap) {
    snprintf(buf, cap, "%s", *CFIELD(f->c, s, bool) ? "true" : "false");
    return true;
}

/* An enum by the word its flag takes. */
#define NAMED_RECORDER(fn, type, name_of)                                                     \
    static bool fn(const setting *s, const ct_train_facts *f, char *buf, size_t cap) {       \
        snprintf(buf, cap, "%s", name_of(*CFIELD(f->c, s, type)));                            \
        return true;                                                                          \
    }
NAMED_RECORDER(rec_fill_mode, ct_fill_mode, ct_fill_mode_name)
NAMED_RECORDER(rec_color_mode, ct_color_mode, ct_color_mode_name)
NAMED_RECORDER(rec_interpolation, ct_interpolation, ct_interpolation_name)
NAMED_RECORDER(rec_mode, ct_monitor_mode, ct_monitor_mode_name)
#undef NAMED_RECORDER

/* --png16: only scale is written, so that runs recorded before the flag existed (which
 * clipped, as Keras does) resume unchanged. */
static bool rec_png16(const setting *s, const ct_train_facts *f, char *buf, size_t cap) {
    const ct_png16 v = *CFIELD(f->c, s, ct_png16);
    if (v == CT_PNG16_CLIP) return false;
    snprintf(buf, cap, "%s", ct_png16_name(v));
    return true;
}

static bool rec_na_policy(const setting *s, const ct_train_facts *f, char *buf, size_t cap) {
    (void)s;
    if (f->c->na_policy == CT_NA_VALUE) ct_format_float(buf, cap, f->c->na_value);
    else snprintf(buf, cap, "%s", ct_na_policy_name(f->c->na_policy));
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
    snprintf(buf, cap, "%s", ct_class_mode_name(f->class_mode));
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

/* As ct_parse_shift_range reads it back: "12" (an integer choice), "0.1" or "12.0" (floats:
 * Python's float repr always has a point or an exponent). */
static bool rec_shift(const setting *s, const ct_train_facts *f, char *buf, size_t cap) {
    const ct_shift_range *r = CFIELD(f->c, s, ct_shift_range);
    if (r->kind == CT_SHIFT_CHOICE) snprintf(buf, cap, "%d", (int)r->value);
    else ct_format_float(buf, cap, r->value);
    return true;
}

/* "LO,HI", each as ct_format_float writes it; no line for 0,0 (not given: no zoom, no
 * brightness change). */
static bool rec_range(float lo, float hi, char *buf, size_t cap) {
    char a[32], b[32];
    ct_format_float(a, sizeof a, lo);
    ct_format_float(b, sizeof b, hi);
    snprintf(buf, cap, "%s,%s", a, b);
    return lo != 0.0f || hi != 0.0f;
}

static bool rec_zoom(const setting *s, const ct_train_facts *f, char *buf, size_t cap) {
    (void)s;
    return rec_range(f->c->augment.zoom_lo, f->c->augment.zoom_hi, buf, cap);
}

static bool rec_brightness(const setting *s, const ct_train_facts *f, char *buf, size_t cap) {
    (void)s;
    return rec_range(f->c->augment.brightness_lo, f->c->augment.brightness_hi, buf, cap);
}

static bool rec_augment_on(const setting *s, const ct_train_facts *f, char *buf, size_t cap) {
    const char *v = *CFIELD(f->c, s, const char *);
    if (v == NULL || strcmp(v, "auto") == 0) return false;
    snprintf(buf, cap, "%s", v);
    return true;
}

/* The preprocessing the run uses: --preprocess, or the data's default (caffe for image
 * folders, none for iceberg JSON). */
static bool rec_preprocess(const setting *s, const ct_train_facts *f, char *buf, size_t cap) {
    (void)s;
    snprintf(buf, cap, "%s", ct_preprocess_name(f->c->preprocess_set
                                                    ? f->c->standardize.preprocess
                                                    : f->default_preprocess));
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
    const setting *freeze_to = find("freeze-to", 9), *strategy = find("strategy", 8);
    bool gave_freeze_to = false, gave_strategy = false;
    for (int i = 0; i < n; i++) {
        const setting *s = find(names[i], strlen(names[i]));
        if (s == NULL)
            return ct_error(CT_EINVAL, "unknown flag '--%s' (see cutune train --help)", names[i]);
        gave_freeze_to |= s == freeze_to;
        gave_strategy |= s == strategy;
    }
    if (gave_freeze_to && gave_strategy)
        return ct_error(CT_EINVAL, "give either --freeze-to or --strategy, not both");
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

/* ---- the rows, for the record (settings_record.c) ---- */

int ct_settings_rows(void) { return N_SETTINGS; }

const char *ct_setting_key(int row) { return table[row].key; }

bool ct_setting_record(int row, const ct_train_facts *f, char *buf, size_t cap) {
    const setting *s = &table[row];
    return s->key != NULL && s->record(s, f, buf, cap);
}

bool ct_setting_is_switch(int row) { return table[row].set == set_switch; }

ct_status ct_train_config_set_key(ct_train_config *c, const char *key, const char *value) {
    for (int i = 0; i < N_SETTINGS; i++)
        if (table[i].key != NULL && strcmp(table[i].key, key) == 0)
            return apply_row(c, &table[i], value);
    return ct_error(CT_EINVAL, "unknown setting '%s'", key);
}
