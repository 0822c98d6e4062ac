/* Keras's words for the data options, parsed from command-line text, with messages that list
 * what is accepted. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static ct_status lookup(const char *what, const char *s, const char *const *names, int n,
                        int *out) {
    for (int i = 0; i < n; i++)
        if (names[i] != NULL && strcmp(s, names[i]) == 0) {
            *out = i;
            return CT_OK;
        }
    return ct_error(CT_EINVAL, "unknown %s '%s'", what, s);
}

/* The words of each enum, in its order: parsed from flags, written into a run's config.txt. */
static const char *const color_mode_names[] = {"rgb", "grayscale", "rgba"};
static const char *const interpolation_names[] = {"nearest", "bilinear", "bicubic",
                                                  "lanczos", "box",      "hamming"};
static const char *const class_mode_names[] = {"categorical", "binary", "sparse", "none"};
static const char *const preprocess_names[] = {"none", "caffe", "tf", "torch"};
static const char *const fill_mode_names[] = {"nearest", "constant", "reflect", "wrap"};
static const char *const na_policy_names[] = {"mean", "median", "ffill", NULL, "error"};
static const char *const png16_names[] = {"clip", "scale"};

#define NAME_OF(names, v) \
    ((unsigned)(v) < sizeof names / sizeof names[0] && names[v] != NULL ? names[v] : "unknown")

const char *ct_color_mode_name(ct_color_mode m) { return NAME_OF(color_mode_names, m); }
const char *ct_interpolation_name(ct_interpolation m) { return NAME_OF(interpolation_names, m); }
const char *ct_class_mode_name(ct_class_mode m) { return NAME_OF(class_mode_names, m); }
const char *ct_preprocess_name(ct_preprocess_mode m) { return NAME_OF(preprocess_names, m); }
const char *ct_fill_mode_name(ct_fill_mode m) { return NAME_OF(fill_mode_names, m); }
const char *ct_na_policy_name(ct_na_policy p) { return NAME_OF(na_policy_names, p); }
const char *ct_png16_name(ct_png16 m) { return NAME_OF(png16_names, m); }

ct_status ct_parse_png16(const char *s, ct_png16 *out) {
    int v = 0;
    if (lookup("png16 mode", s, png16_names, 2, &v) != CT_OK)
        return ct_error(CT_EINVAL, "unknown 16-bit grey mode '%s' (clip, as Keras, or scale)", s);
    *out = (ct_png16)v;
    return CT_OK;
}

ct_status ct_parse_color_mode(const char *s, ct_color_mode *out) {
    int v = 0;
    if (lookup("color mode", s, color_mode_names, 3, &v) != CT_OK)
        return ct_error(CT_EINVAL, "unknown color mode '%s' (rgb, grayscale or rgba)", s);
    *out = (ct_color_mode)v;
    return CT_OK;
}

ct_status ct_parse_interpolation(const char *s, ct_interpolation *out) {
    int v = 0;
    if (strcmp(s, "area") == 0) {
        *out = CT_INTERP_BOX;
        return CT_OK;
    }
    if (lookup("interpolation", s, interpolation_names, 6, &v) != CT_OK)
        return ct_error(CT_EINVAL,
                        "unknown interpolation '%s' (nearest, bilinear, bicubic, "
                        "lanczos, box/area or hamming)",
                        s);
    *out = (ct_interpolation)v;
    return CT_OK;
}

ct_status ct_parse_class_mode(const char *s, ct_class_mode *out) {
    int v = 0;
    if (lookup("class mode", s, class_mode_names, 4, &v) != CT_OK)
        return ct_error(CT_EINVAL, "unknown class mode '%s' (categorical, binary, sparse or none)",
                        s);
    *out = (ct_class_mode)v;
    return CT_OK;
}

ct_status ct_parse_preprocess(const char *s, ct_preprocess_mode *out) {
    int v = 0;
    if (lookup("preprocess mode", s, preprocess_names, 4, &v) != CT_OK)
        return ct_error(CT_EINVAL, "unknown preprocess mode '%s' (caffe, tf, torch or none)", s);
    *out = (ct_preprocess_mode)v;
    return CT_OK;
}

ct_status ct_parse_fill_mode(const char *s, ct_fill_mode *out) {
    int v = 0;
    if (lookup("fill mode", s, fill_mode_names, 4, &v) != CT_OK)
        return ct_error(CT_EINVAL, "unknown fill mode '%s' (nearest, constant, reflect or wrap)",
                        s);
    *out = (ct_fill_mode)v;
    return CT_OK;
}

static bool parse_float(const char *s, float *out) {
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    if (errno != 0 || end == s || *end != '\0' || !isfinite(v)) return false;
    *out = (float)v;
    return true;
}

ct_status ct_parse_na_policy(const char *s, ct_na_policy *out, float *value) {
    int v = 0;
    if (lookup("inc_angle policy", s, na_policy_names, 5, &v) == CT_OK) {
        *out = (ct_na_policy)v;
        return CT_OK;
    }
    if (parse_float(s, value)) {
        *out = CT_NA_VALUE;
        return CT_OK;
    }
    return ct_error(CT_EINVAL,
                    "unknown inc_angle policy '%s' (mean, median, ffill, error or a "
                    "number)",
                    s);
}

ct_status ct_parse_shift_range(const char *s, ct_shift_range *out) {
    float v;
    if (!parse_float(s, &v) || v < 0.0f)
        return ct_error(CT_EINVAL, "shift range '%s': expected a number >= 0", s);
    /* Python's type decides: "12" is an int (a choice of 0..11 pixels, with a sign). */
    const bool is_float = strpbrk(s, ".eE") != NULL;
    if (!is_float) {
        if (v > 1e6f) return ct_error(CT_EINVAL, "shift range '%s' is too large", s);
        *out = (ct_shift_range){CT_SHIFT_CHOICE, v};
    } else {
        *out = (ct_shift_range){v < 1.0f ? CT_SHIFT_FRACTION : CT_SHIFT_PIXELS, v};
    }
    return CT_OK;
}

ct_status ct_parse_range(const char *s, float *lo, float *hi) {
    const char *comma = strchr(s, ',');
    char a[64], b[64];
    if (comma == NULL || (size_t)(comma - s) >= sizeof a || strlen(comma + 1) >= sizeof b)
        return ct_error(CT_EINVAL, "range '%s': expected LO,HI", s);
    memcpy(a, s, (size_t)(comma - s));
    a[comma - s] = '\0';
    strcpy(b, comma + 1);
    if (!parse_float(a, lo) || !parse_float(b, hi) || *lo > *hi)
        return ct_error(CT_EINVAL, "range '%s': expected two numbers LO,HI with LO <= HI", s);
    return CT_OK;
}

ct_status ct_parse_zoom_range(const char *s, float *lo, float *hi) {
    if (strchr(s, ',') != NULL) {
        ct_status st = ct_parse_range(s, lo, hi);
        if (st != CT_OK) return st;
    } else {
        float z;
        if (!parse_float(s, &z) || z < 0.0f || z >= 1.0f)
            return ct_error(CT_EINVAL, "zoom range '%s': expected a number in [0, 1) or LO,HI", s);
        *lo = 1.0f - z;
        *hi = 1.0f + z;
    }
    if (*lo <= 0.0f) return ct_error(CT_EINVAL, "zoom range '%s': zoom factors must be > 0", s);
    return CT_OK;
}
