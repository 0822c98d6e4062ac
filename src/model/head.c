/* The head spec parser: turns "gmp,aux:1,concat,dense:512:relu@fc2,..." into layers appended to
 * the backbone, named as Keras would name them (dense, dense_1, dropout, ...; explicitly named
 * layers do not advance Keras's per-class counters), with every mistake reported by token. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L /* strtok_r */
#endif
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define MAX_TOKENS 64

/* Keras's per-class counters for automatic names (dense, dense_1, ...), one per layer kind. */
typedef struct name_counters {
    int of_kind[CT_LAYER_CONCAT + 1];
} name_counters;

static void auto_name(char *dst, ct_layer_kind kind, name_counters *nc) {
    const char *base = ct_layer_kind_get(kind)->keras_snake;
    int *counter = &nc->of_kind[kind];
    if (*counter == 0)
        snprintf(dst, CT_NAME_MAX, "%s", base);
    else
        snprintf(dst, CT_NAME_MAX, "%s_%d", base, *counter);
    (*counter)++;
}

static ct_status parse_int(const char *s, int *out, const char *tok) {
    char *end = NULL;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v <= 0 || v > 1 << 20)
        return ct_error(CT_EINVAL, "head spec: '%s': '%s' is not a positive unit count", tok, s);
    *out = (int)v;
    return CT_OK;
}

static ct_status parse_activation(const char *s, ct_activation *out, const char *tok) {
    if (strcmp(s, "relu") == 0) *out = CT_ACT_RELU;
    else if (strcmp(s, "linear") == 0) *out = CT_ACT_LINEAR;
    else if (strcmp(s, "sigmoid") == 0) *out = CT_ACT_SIGMOID;
    else if (strcmp(s, "softmax") == 0) *out = CT_ACT_SOFTMAX;
    else
        return ct_error(CT_EINVAL,
                        "head spec: '%s': unknown activation '%s' (relu, linear, sigmoid, softmax)",
                        tok, s);
    return CT_OK;
}

/* Splits `tok` in place at ':' into at most 4 fields; returns the count. */
static int split_fields(char *tok, char **f) {
    int n = 0;
    f[n++] = tok;
    for (char *p = tok; *p != '\0' && n < 4; p++) {
        if (*p == ':') {
            *p = '\0';
            f[n++] = p + 1;
        }
    }
    return n;
}

static char *trim(char *s) {
    while (isspace((unsigned char)*s)) s++;
    size_t n = strlen(s);
    while (n > 0 && isspace((unsigned char)s[n - 1])) s[--n] = '\0';
    return s;
}

/* What a token's parser sees: the layer being built, its fields ("dense", "512", "relu"), the
 * token as written (for messages), whether the main chain's output is still a feature map, and
 * the aux branch waiting for its concat (-1: none). */
typedef struct head_token {
    ct_model *m;
    ct_layer *l;
    int idx;
    char **f;
    int nf;
    const char *original;
    bool spatial;
    int *pending_aux;
} head_token;

static ct_status need_flat(const char *what) {
    return ct_error(CT_EINVAL, "head spec: '%s' needs flat features: put flatten, gap or gmp "
                    "before it", what);
}

static ct_status parse_pooling(head_token *t) {
    if (t->nf != 1)
        return ct_error(CT_EINVAL, "head spec: '%s' takes no arguments", t->original);
    if (!t->spatial)
        return ct_error(CT_EINVAL, "head spec: '%s' needs an image feature map before it, but "
                        "the features are already flat", t->original);
    return CT_OK;
}

static ct_status parse_units(head_token *t, bool aux) {
    ct_layer *l = t->l;
    ct_status s;
    if (t->nf < 2 || t->nf > 3)
        return ct_error(CT_EINVAL, "head spec: '%s': expected %s", t->original,
                        aux ? "aux:UNITS" : "dense:UNITS[:ACTIVATION]");
    if ((s = parse_int(t->f[1], &l->units, t->original)) != CT_OK) return s;
    l->act = CT_ACT_LINEAR;
    if (t->nf == 3 && (s = parse_activation(t->f[2], &l->act, t->original)) != CT_OK) return s;
    return CT_OK;
}

static ct_status parse_dense(head_token *t) {
    ct_status s = parse_units(t, false);
    if (s != CT_OK) return s;
    if (t->spatial) return need_flat(t->original);
    return CT_OK;
}

static ct_status parse_aux(head_token *t) {
    ct_layer *l = t->l;
    ct_status s = parse_units(t, true);
    if (s != CT_OK) return s;
    if (t->m->cfg.aux_dim <= 0)
        return ct_error(CT_EINVAL, "head spec: '%s' uses the auxiliary input, but the data has "
                        "no auxiliary values (aux_dim is 0)", t->original);
    if (*t->pending_aux >= 0)
        return ct_error(CT_EINVAL, "head spec: '%s': the previous aux branch was never joined by "
                        "a concat", t->original);
    l->src = CT_SRC_AUX;
    l->in_h = l->in_w = 1;
    l->in_c = t->m->cfg.aux_dim;
    *t->pending_aux = t->idx;
    if (l->act != CT_ACT_LINEAR && l->act != CT_ACT_RELU)
        return ct_error(CT_EINVAL, "head spec: '%s': an aux branch is linear or relu",
                        t->original);
    return CT_OK;
}

static ct_status parse_dropout(head_token *t) {
    if (t->nf != 2)
        return ct_error(CT_EINVAL, "head spec: '%s': expected dropout:RATE", t->original);
    char *end = NULL;
    errno = 0;
    double r = strtod(t->f[1], &end);
    if (errno != 0 || end == t->f[1] || *end != '\0' || !(r >= 0.0 && r < 1.0))
        return ct_error(CT_EINVAL, "head spec: '%s': the rate must be a number in [0, 1)",
                        t->original);
    t->l->rate = (float)r;
    if (t->spatial) return need_flat(t->original);
    return CT_OK;
}

static ct_status parse_concat(head_token *t) {
    if (t->nf != 1) return ct_error(CT_EINVAL, "head spec: 'concat' takes no arguments");
    if (*t->pending_aux < 0)
        return ct_error(CT_EINVAL, "head spec: 'concat' needs an aux:UNITS branch before it");
    if (t->spatial) return need_flat("concat");
    t->l->src2 = *t->pending_aux;
    *t->pending_aux = -1;
    return CT_OK;
}

/* The words of a head spec: which kind each makes and how its arguments are read. */
static const struct {
    const char *word;
    ct_layer_kind kind;
    ct_status (*parse)(head_token *t);
} words[] = {
    {"flatten", CT_LAYER_FLATTEN, parse_pooling}, {"gap", CT_LAYER_GAP, parse_pooling},
    {"gmp", CT_LAYER_GMP, parse_pooling},         {"dense", CT_LAYER_DENSE, parse_dense},
    {"aux", CT_LAYER_DENSE, parse_aux},           {"dropout", CT_LAYER_DROPOUT, parse_dropout},
    {"concat", CT_LAYER_CONCAT, parse_concat},
};

/* Checks the '@name' part of a token (cut off in place); *given points at it, or is NULL. */
static ct_status take_given_name(char *tok, const char *original, char **given) {
    *given = strchr(tok, '@');
    if (*given == NULL) return CT_OK;
    *(*given)++ = '\0';
    if (**given == '\0' || strlen(*given) >= CT_NAME_MAX)
        return ct_error(CT_EINVAL, "head spec: '%s': the name after '@' must have 1 to %d "
                        "characters", original, CT_NAME_MAX - 1);
    for (const char *p = *given; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '_')
            return ct_error(CT_EINVAL, "head spec: '%s': layer names use letters, digits and "
                            "'_'", original);
    return CT_OK;
}

static ct_status parse_token(ct_model *m, ct_layer *l, char *tok, name_counters *nc,
                             int *pending_aux, int idx) {
    char original[128], *given_name;
    snprintf(original, sizeof original, "%s", tok);
    ct_status s = take_given_name(tok, original, &given_name);
    if (s != CT_OK) return s;
    char *f[4];
    int nf = split_fields(tok, f);
    /* The main chain's current output: the last layer that is not the aux branch. */
    int cur = idx - 1;
    while (cur >= 0 && m->layers[cur].src == CT_SRC_AUX) cur--;
    const ct_layer *prev = &m->layers[cur];
    memset(l, 0, sizeof *l);
    l->src = cur;
    l->src2 = -1;
    l->trainable = true;
    l->lr_mult = 1.0f;
    l->in_h = prev->out_h;
    l->in_w = prev->out_w;
    l->in_c = prev->out_c;
    size_t w = 0;
    while (w < sizeof words / sizeof words[0] && strcmp(words[w].word, f[0]) != 0) w++;
    if (w == sizeof words / sizeof words[0])
        return ct_error(CT_EINVAL, "head spec: unknown layer '%s' (flatten, gap, gmp, aux:U, "
                        "concat, dense:U[:act], dropout:R, or a preset: iceberg, mri)", original);
    head_token t = {m, l, idx, f, nf, original, ct_layer_kind_get(prev->kind)->spatial,
                    pending_aux};
    l->kind = words[w].kind;
    if ((s = words[w].parse(&t)) != CT_OK) return s;
    ct_layer_kind_get(l->kind)->shape(m, l);
    /* Keras names a layer from its class's counter only when no name was given. */
    if (given_name != NULL)
        snprintf(l->name, CT_NAME_MAX, "%s", given_name);
    else
        auto_name(l->name, l->kind, nc);
    return CT_OK;
}

ct_status ct_head_build(ct_model *m, const char *spec) {
    if (spec == NULL || spec[0] == '\0')
        return ct_error(CT_EINVAL, "head spec is empty (try 'iceberg', 'mri' or "
                        "'gap,dense:2:softmax')");
    const char *expanded = spec;
    if (strcmp(spec, "iceberg") == 0) expanded = CT_HEAD_ICEBERG;
    else if (strcmp(spec, "mri") == 0) expanded = CT_HEAD_MRI;
    if (strlen(expanded) >= sizeof m->head)
        return ct_error(CT_EINVAL, "head spec is longer than %zu characters", sizeof m->head - 1);
    snprintf(m->head, sizeof m->head, "%s", expanded);

    char buf[CT_HEAD_MAX];
    snprintf(buf, sizeof buf, "%s", expanded);
    char *tokens[MAX_TOKENS];
    int nt = 0;
    for (char *save = NULL, *t = strtok_r(buf, ",", &save); t != NULL;
         t = strtok_r(NULL, ",", &save)) {
        if (nt == MAX_TOKENS)
            return ct_error(CT_EINVAL, "head spec has more than %d layers", MAX_TOKENS);
        tokens[nt++] = trim(t);
    }
    if (nt == 0) return ct_error(CT_EINVAL, "head spec '%s' has no layers", spec);

    ct_layer *grown = realloc(m->layers, (size_t)(m->n_backbone + nt) * sizeof *grown);
    if (grown == NULL) return ct_error(CT_ENOMEM, "cannot allocate the head layers");
    m->layers = grown;
    name_counters nc = {{0}};
    int pending_aux = -1;
    for (int i = 0; i < nt; i++) {
        int idx = m->n_backbone + i;
        ct_status s = parse_token(m, &m->layers[idx], tokens[i], &nc, &pending_aux, idx);
        if (s != CT_OK) return s;
        for (int j = 0; j < idx; j++)
            if (strcmp(m->layers[j].name, m->layers[idx].name) == 0)
                return ct_error(CT_EINVAL, "head spec: layer name '%s' is used twice",
                                m->layers[idx].name);
        m->n_layers = idx + 1;
    }
    if (pending_aux >= 0)
        return ct_error(CT_EINVAL, "head spec: the aux branch '%s' is never joined by a concat",
                        m->layers[pending_aux].name);

    const ct_layer *last = &m->layers[m->n_layers - 1];
    if (last->kind != CT_LAYER_DENSE ||
        (last->act != CT_ACT_SIGMOID && last->act != CT_ACT_SOFTMAX))
        return ct_error(CT_EINVAL, "head spec: the last layer must be dense:1:sigmoid (binary) or "
                        "dense:K:softmax (K classes), not '%s'", tokens[nt - 1]);
    if (last->act == CT_ACT_SIGMOID && last->units != 1)
        return ct_error(CT_EINVAL, "head spec: a sigmoid output has 1 unit, not %d (use softmax "
                        "for %d classes)", last->units, last->units);
    if (last->act == CT_ACT_SOFTMAX && last->units < 2)
        return ct_error(CT_EINVAL, "head spec: a softmax output needs at least 2 units (use "
                        "dense:1:sigmoid for a binary task)");
    for (int i = m->n_backbone; i < m->n_layers - 1; i++) {
        const ct_layer *l = &m->layers[i];
        if (l->kind == CT_LAYER_DENSE && (l->act == CT_ACT_SIGMOID || l->act == CT_ACT_SOFTMAX))
            return ct_error(CT_EINVAL, "head spec: '%s': sigmoid and softmax are only supported on "
                            "the output layer", l->name);
    }
    m->loss = last->act == CT_ACT_SIGMOID ? CT_LOSS_BINARY_CE : CT_LOSS_CATEGORICAL_CE;
    m->n_out = last->units;
    return CT_OK;
}
