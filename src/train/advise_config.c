/* The settings of `cutune advise` by name: its defaults and what each flag accepts, so that the
 * command line and a binding's keyword arguments set a ct_advise_config the same way, with the
 * same messages. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "../model/backbone.h"
#include "data/data.h"
#include "train/run.h"

void ct_advise_config_defaults(ct_advise_config *c) {
    memset(c, 0, sizeof *c);
    c->weights = "imagenet";
    c->cv_folds = 3;
    c->batch_size = 16;
    c->device = "auto";
    c->seed = 1;
    c->na_policy = CT_NA_MEAN;
    c->interpolation = CT_INTERP_NEAREST;
    c->verbose = 1;
}

ct_status ct_advise_config_new(ct_advise_config **out) {
    *out = malloc(sizeof **out);
    if (*out == NULL) return ct_error(CT_ENOMEM, "cannot allocate an advise configuration");
    ct_advise_config_defaults(*out);
    return CT_OK;
}

void ct_advise_config_free(ct_advise_config *c) { free(c); }

/* The whole-number settings: where each goes and its range. */
typedef enum { W_INPUT, W_SAMPLES, W_CV, W_BATCH, W_SEED, W_THREADS, W_VERBOSE } whole_field;

static const struct {
    const char *name;
    whole_field field;
    long long lo, hi;
} wholes[] = {
    {"input-size", W_INPUT, CT_MIN_INPUT, CT_MAX_INPUT},       {"samples", W_SAMPLES, 6, 1000000},
    {"cv", W_CV, 2, 20},                     {"batch-size", W_BATCH, 1, 4096},
    {"seed", W_SEED, 0, 0x7fffffffffffLL},   {"threads", W_THREADS, 1, 256},
    {"verbose", W_VERBOSE, 0, 1},
};

static ct_status set_whole(ct_advise_config *c, int i, const char *value) {
    char *end = NULL;
    errno = 0;
    long long v = strtoll(value, &end, 10);
    if (errno != 0 || end == value || *end != '\0' || v < wholes[i].lo || v > wholes[i].hi)
        return ct_error(CT_EINVAL, "--%s: expected a whole number from %lld to %lld, not '%s'",
                        wholes[i].name, wholes[i].lo, wholes[i].hi, value);
    switch (wholes[i].field) {
    case W_INPUT: c->input_size = c->train_input_size = (int)v; break;
    case W_SAMPLES: c->samples = (int)v; break;
    case W_CV: c->cv_folds = (int)v; break;
    case W_BATCH: c->batch_size = (int)v; break;
    case W_SEED: c->seed = (uint64_t)v; break;
    case W_THREADS: c->threads = (int)v; break;
    case W_VERBOSE: c->verbose = (int)v; break;
    }
    return CT_OK;
}

/* The settings that are names, paths or switches. */
static ct_status set_text(ct_advise_config *c, const char *name, const char *value) {
    if (strcmp(name, "skip-bad") == 0) {
        c->skip_bad = value != NULL;
        return CT_OK;
    }
    if (value == NULL) return ct_error(CT_EINVAL, "--%s needs a value", name);
    if (strcmp(name, "data") == 0) c->data = value;
    else if (strcmp(name, "out") == 0) c->out_dir = value;
    else if (strcmp(name, "weights") == 0) {
        if (value[0] == '\0')
            return ct_error(CT_EINVAL, "--weights: expected imagenet, none or a file");
        c->weights = value;
    } else if (strcmp(name, "backbone") == 0) {
        const ct_backbone *bb;
        if (ct_backbone_lookup(value, &bb) != CT_OK)
            return ct_error(CT_EINVAL, "--backbone: %s", ct_last_error());
        c->backbone = value;
    } else if (strcmp(name, "device") == 0) {
        if (strcmp(value, "cpu") != 0 && strcmp(value, "cuda") != 0 && strcmp(value, "auto") != 0)
            return ct_error(CT_EINVAL, "--device: expected cpu, cuda or auto, not '%s'", value);
        c->device = value;
    } else if (strcmp(name, "na-policy") == 0) {
        if (ct_parse_na_policy(value, &c->na_policy, &c->na_value) != CT_OK)
            return ct_error(CT_EINVAL, "--na-policy: %s", ct_last_error());
    } else
        return ct_error(CT_EINVAL, "unknown flag '--%s' (see cutune advise --help)", name);
    return CT_OK;
}

ct_status ct_advise_config_set(ct_advise_config *c, const char *name, const char *value) {
    char key[64];
    size_t n = strlen(name);
    if (n >= sizeof key) return ct_error(CT_EINVAL, "unknown flag '--%s'", name);
    for (size_t i = 0; i <= n; i++) key[i] = name[i] == '_' ? '-' : name[i];
    for (size_t i = 0; i < sizeof wholes / sizeof wholes[0]; i++)
        if (strcmp(key, wholes[i].name) == 0) {
            if (value == NULL) return ct_error(CT_EINVAL, "--%s needs a value", key);
            return set_whole(c, (int)i, value);
        }
    return set_text(c, key, value);
}
