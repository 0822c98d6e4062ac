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

/* A positive number from `name`, within [lo, hi], or `fallback` when unset. */
static ct_status knob_number(const char *name, double lo, double hi, double fallback,
                             const char *unit, double *out) {
    const char *v = env(name);
    *out = fallback;
    if (v == NULL) return CT_OK;
    char *end = NULL;
    errno = 0;
    double x = strtod(v, &end);
    if (errno != 0 || end == v || *end != '\0' || !(x >= lo && x <= hi))
        return ct_error(CT_EINVAL, "%s='%s': expected %s from %g to %g (or unset it)", name, v,
                        unit, lo, hi);
    *out = x;
    return CT_OK;
}

ct_status ct_knob_collective_timeout(double *seconds) {
    return knob_number("CUTUNE_COLLECTIVE_TIMEOUT", 0.1, 1e7, 600.0, "seconds", seconds);
}

ct_status ct_knob_rendezvous_timeout(double *seconds) {
    return knob_number("CUTUNE_RENDEZVOUS_TIMEOUT", 0.1, 1e7, 300.0, "seconds", seconds);
}

ct_status ct_knob_launch_grace(double fallback, double *seconds) {
    return knob_number("CUTUNE_LAUNCH_GRACE", 0.0, 1e7, fallback, "seconds", seconds);
}

ct_status ct_knob_bucket_mb(double *mb) {
    return knob_number("CUTUNE_BUCKET_MB", 0.001, 4096.0, 25.0, "megabytes", mb);
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
