/* The standardisation a model was trained with, as text: saved beside the weights so that
 * `cutune predict` and `cutune evaluate` feed the model exactly what it was trained on.
 * Form: the preprocess mode, then optional `;`-separated items:
 *   caffe | tf | torch | none
 *   rescale=F  samplewise_center  samplewise_std_normalization
 *   featurewise_center=M0,M1,M2  featurewise_std_normalization=S0,S1,S2 */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L /* strtok_r */
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "train/run.h"

void ct_standardize_format(const ct_standardize *s, char *buf, size_t len) {
    size_t at = (size_t)snprintf(buf, len, "%s", ct_preprocess_name(s->preprocess));
#define ADD(...)                                                                              \
    do {                                                                                      \
        if (at < len) at += (size_t)snprintf(buf + at, len - at, __VA_ARGS__);                \
    } while (0)
    if (s->rescale != 0.0f) ADD(";rescale=%.9g", s->rescale);
    if (s->samplewise_center) ADD(";samplewise_center");
    if (s->samplewise_std_normalization) ADD(";samplewise_std_normalization");
    if (s->featurewise_center) ADD(";featurewise_center=%.9g,%.9g,%.9g", s->mean[0], s->mean[1],
                                   s->mean[2]);
    if (s->featurewise_std_normalization)
        ADD(";featurewise_std_normalization=%.9g,%.9g,%.9g", s->std[0], s->std[1], s->std[2]);
#undef ADD
}

static ct_status parse3(const char *text, const char *item, float v[3]) {
    char *end = NULL;
    const char *p = item;
    for (int i = 0; i < 3; i++) {
        v[i] = strtof(p, &end);
        if (end == p || (i < 2 && *end != ',') || (i == 2 && *end != '\0' && *end != ';'))
            return ct_error(CT_EFORMAT, "preprocessing '%s': expected three numbers in '%s'",
                            text, item);
        p = end + 1;
    }
    return CT_OK;
}

ct_status ct_standardize_parse(const char *text, ct_standardize *s) {
    memset(s, 0, sizeof *s);
    char buf[1024];
    if (text == NULL || text[0] == '\0') text = "caffe";
    snprintf(buf, sizeof buf, "%s", text);
    char *save = NULL;
    char *tok = strtok_r(buf, ";", &save);
    ct_status st = ct_parse_preprocess(tok != NULL ? tok : "caffe", &s->preprocess);
    if (st != CT_OK) return st;
    while ((tok = strtok_r(NULL, ";", &save)) != NULL) {
        if (strncmp(tok, "rescale=", 8) == 0) {
            s->rescale = strtof(tok + 8, NULL);
        } else if (strcmp(tok, "samplewise_center") == 0) {
            s->samplewise_center = true;
        } else if (strcmp(tok, "samplewise_std_normalization") == 0) {
            s->samplewise_std_normalization = true;
        } else if (strncmp(tok, "featurewise_center=", 19) == 0) {
            s->featurewise_center = true;
            if ((st = parse3(text, tok + 19, s->mean)) != CT_OK) return st;
        } else if (strncmp(tok, "featurewise_std_normalization=", 30) == 0) {
            s->featurewise_std_normalization = true;
            if ((st = parse3(text, tok + 30, s->std)) != CT_OK) return st;
        } else {
            return ct_error(CT_EFORMAT, "preprocessing '%s': unknown item '%s'", text, tok);
        }
    }
    return CT_OK;
}
