/* The CUTUNE_* environment variables, read and checked in one place (knobs.h). */
#include "knobs.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The variable's value, or NULL when it is unset or empty. */
static const char *env(const char *name) {
    const char *v = getenv(name);
    return v != NULL && v[0] != '\0' ? v : NULL;
}

static bool is_one(const char *name) {
    const char *v = env(name);
    return v != NULL && strcmp(v, "1") == 0;
}

/* +1 when the variable is `on`, 0 when it is `off`, -1 otherwise. */
static int forced(const char *name, const char *on, const char *off) {
    const char *v = env(name);
    if (v != NULL && strcmp(v, on) == 0) return 1;
    if (v != NULL && strcmp(v, off) == 0) return 0;
    return -1;
}

const char *ct_knob_weights(void) { return env("CUTUNE_WEIGHTS"); }

bool ct_knob_offline(void) { return is_one("CUTUNE_OFFLINE"); }

const char *ct_knob_weights_url(void) { return env("CUTUNE_WEIGHTS_URL"); }

ct_status ct_knob_precision(const char **out) {
    const char *v = env("CUTUNE_PRECISION");
    *out = NULL;
    if (v == NULL) return CT_OK;
    if (strcmp(v, "tf32") != 0 && strcmp(v, "fp32") != 0 && strcmp(v, "bf16") != 0)
        return ct_error(CT_EINVAL, "CUTUNE_PRECISION=\"%s\": expected tf32, fp32 or bf16", v);
    *out = v;
    return CT_OK;
}

bool ct_knob_deterministic(void) { return is_one("CUTUNE_DETERMINISTIC"); }

ct_status ct_knob_workspace(size_t fallback, size_t *bytes) {
    const char *v = env("CUTUNE_WORKSPACE_MB");
    *bytes = fallback;
    if (v == NULL) return CT_OK;
    char *end = NULL;
    unsigned long long mb = strtoull(v, &end, 10);
    if (*end != '\0' || mb > ((size_t)1 << 24))
        return ct_error(CT_EINVAL, "CUTUNE_WORKSPACE_MB=\"%s\": expected a number of MiB", v);
    *bytes = (size_t)mb << 20;
    return CT_OK;
}

bool ct_knob_conv_log(void) { return is_one("CUTUNE_CONV_LOG"); }

int ct_knob_conv_layout(void) { return forced("CUTUNE_CONV_LAYOUT", "nchw", "nhwc"); }

int ct_knob_conv_pad(void) { return forced("CUTUNE_CONV_PAD", "always", "never"); }

bool ct_knob_cpu_lazy_staging(void) { return is_one("CUTUNE_CPU_LAZY_STAGING"); }

ct_status ct_knob_cpu_kernels(bool *reference) {
    const int f = forced("CUTUNE_CPU_KERNELS", "reference", "onednn");
    *reference = f == 1;
    if (f == -1 && env("CUTUNE_CPU_KERNELS") != NULL)
        return ct_error(CT_EINVAL, "CUTUNE_CPU_KERNELS=\"%s\": expected onednn or reference",
                        env("CUTUNE_CPU_KERNELS"));
    return CT_OK;
}

bool ct_knob_h5_probe(void) {
    const char *v = getenv("CUTUNE_H5_PROBE");
    return v == NULL || strcmp(v, "0") != 0;
}

double ct_knob_h5_probe_seconds(double fallback) {
    const char *v = env("CUTUNE_H5_PROBE_S");
    return v != NULL && atof(v) > 0.0 ? atof(v) : fallback;
}

ct_status ct_knob_stop_after_steps(long *steps) {
    const char *v = env("CUTUNE_STOP_AFTER_STEPS");
    *steps = 0;
    if (v == NULL) return CT_OK;
    char *end = NULL;
    errno = 0;
    long n = strtol(v, &end, 10);
    if (errno != 0 || end == v || *end != '\0' || n < 1)
        return ct_error(CT_EINVAL, "CUTUNE_STOP_AFTER_STEPS='%s': expected a whole number of "
                        "steps, at least 1 (or unset it)", v);
    *steps = n;
    return CT_OK;
}

bool ct_knob_feature_cache_dir(char *dir, size_t cap) {
    const char *v = env("CUTUNE_CACHE_DIR"), *xdg = env("XDG_CACHE_HOME"), *home = env("HOME");
    int n = -1;
    if (v != NULL && strcmp(v, "off") == 0) return false;
    if (v != NULL) n = snprintf(dir, cap, "%s", v);
    else if (xdg != NULL) n = snprintf(dir, cap, "%s/cutune/features", xdg);
    else if (home != NULL) n = snprintf(dir, cap, "%s/.cache/cutune/features", home);
    return n > 0 && (size_t)n < cap;
}
