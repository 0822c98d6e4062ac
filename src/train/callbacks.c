/* The monitor logic of Keras's callbacks (ModelCheckpoint, EarlyStopping, ReduceLROnPlateau)
 * and the learning-rate schedules, written to match Keras step for step so that a run's
 * stopping epoch and learning rates are the ones a Keras user expects. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "train/callbacks.h"

ct_status ct_monitor_mode_parse(const char *s, ct_monitor_mode *mode) {
    if (strcmp(s, "auto") == 0) *mode = CT_MODE_AUTO;
    else if (strcmp(s, "min") == 0) *mode = CT_MODE_MIN;
    else if (strcmp(s, "max") == 0) *mode = CT_MODE_MAX;
    else return ct_error(CT_EINVAL, "unknown monitor mode '%s' (auto, min, max)", s);
    return CT_OK;
}

const char *ct_monitor_mode_name(ct_monitor_mode mode) {
    return mode == CT_MODE_MIN ? "min" : mode == CT_MODE_MAX ? "max" : "auto";
}

ct_status ct_monitor_init(ct_monitor *m, const char *name, ct_monitor_mode mode,
                          double min_delta) {
    memset(m, 0, sizeof *m);
    if (name == NULL || name[0] == '\0' || strlen(name) >= sizeof m->name)
        return ct_error(CT_EINVAL, "monitor name must have 1 to %zu characters",
                        sizeof m->name - 1);
    if (!(min_delta >= 0.0)) return ct_error(CT_EINVAL, "min_delta must be >= 0");
    snprintf(m->name, sizeof m->name, "%s", name);
    if (mode == CT_MODE_AUTO)
        m->maximize = strstr(name, "acc") != NULL || strstr(name, "auc") != NULL;
    else
        m->maximize = mode == CT_MODE_MAX;
    m->min_delta = min_delta;
    m->best = m->maximize ? -INFINITY : INFINITY;
    return CT_OK;
}

bool ct_monitor_better(const ct_monitor *m, double value, double reference) {
    if (isnan(value)) return false;
    return m->maximize ? value - m->min_delta > reference : value + m->min_delta < reference;
}

void ct_early_stopping_init(ct_early_stopping *e, const ct_monitor *mon, int patience) {
    memset(e, 0, sizeof *e);
    e->mon = *mon;
    e->patience = patience;
    e->best_epoch = -1;
    e->stopped_epoch = -1;
}

bool ct_early_stopping_update(ct_early_stopping *e, int epoch, double value, bool *improved) {
    *improved = false;
    if (epoch < e->start_from_epoch) return false;
    e->wait++;
    if (ct_monitor_better(&e->mon, value, e->mon.best)) {
        e->mon.best = value;
        e->best_epoch = epoch;
        *improved = true;
        /* Keras restarts the wait only when the baseline is beaten too, and never stops on an
         * improving epoch. */
        if (!e->has_baseline || ct_monitor_better(&e->mon, value, e->baseline)) e->wait = 0;
        return false;
    }
    if (e->wait >= e->patience && epoch > 0) {
        e->stopped_epoch = epoch;
        return true;
    }
    return false;
}

void ct_reduce_lr_init(ct_reduce_lr *r, const ct_monitor *mon) {
    memset(r, 0, sizeof *r);
    r->mon = *mon;
    r->factor = 0.1;
    r->patience = 10;
    r->min_lr = 0.0;
}

bool ct_reduce_lr_update(ct_reduce_lr *r, double value, double *lr) {
    if (r->cooldown_counter > 0) {
        r->cooldown_counter--;
        r->wait = 0;
    }
    if (ct_monitor_better(&r->mon, value, r->mon.best)) {
        r->mon.best = value;
        r->wait = 0;
        return false;
    }
    if (r->cooldown_counter > 0) return false;
    if (++r->wait < r->patience) return false;
    r->wait = 0;
    if (*lr <= r->min_lr) return false;
    *lr = fmax(*lr * r->factor, r->min_lr);
    r->cooldown_counter = r->cooldown;
    return true;
}

ct_status ct_schedule_parse(ct_schedule *s, const char *spec, int total_epochs) {
    memset(s, 0, sizeof *s);
    s->total_epochs = total_epochs;
    if (spec == NULL || strcmp(spec, "constant") == 0) {
        s->kind = CT_SCHEDULE_CONSTANT;
        return CT_OK;
    }
    char *end = NULL;
    if (strncmp(spec, "step:", 5) == 0) {
        s->kind = CT_SCHEDULE_STEP;
        long every = strtol(spec + 5, &end, 10);
        if (end == spec + 5 || *end != ':' || every < 1)
            return ct_error(CT_EINVAL, "schedule '%s': expected step:EVERY:FACTOR, e.g. "
                            "step:10:0.1", spec);
        const char *f = end + 1;
        s->step_every = (int)every;
        s->step_factor = strtod(f, &end);
        if (end == f || *end != '\0' || !(s->step_factor > 0.0 && s->step_factor <= 1.0))
            return ct_error(CT_EINVAL, "schedule '%s': the factor must be in (0, 1]", spec);
        return CT_OK;
    }
    if (strncmp(spec, "cosine", 6) == 0) {
        s->kind = CT_SCHEDULE_COSINE;
        if (spec[6] == '\0') return CT_OK;
        if (spec[6] != ':')
            return ct_error(CT_EINVAL, "schedule '%s': expected cosine or cosine:MIN_FACTOR",
                            spec);
        s->min_factor = strtod(spec + 7, &end);
        if (end == spec + 7 || *end != '\0' || !(s->min_factor >= 0.0 && s->min_factor < 1.0))
            return ct_error(CT_EINVAL, "schedule '%s': the floor must be in [0, 1)", spec);
        return CT_OK;
    }
    return ct_error(CT_EINVAL, "unknown schedule '%s' (constant, step:EVERY:FACTOR, "
                    "cosine[:MIN_FACTOR])", spec);
}

double ct_schedule_factor(const ct_schedule *s, double epoch) {
    if (s->warmup_epochs > 0 && epoch < s->warmup_epochs)
        return (epoch + 1.0) / (s->warmup_epochs + 1.0);
    double e = epoch - s->warmup_epochs;
    switch (s->kind) {
    case CT_SCHEDULE_STEP:
        return pow(s->step_factor, floor(e / s->step_every));
    case CT_SCHEDULE_COSINE: {
        double span = s->total_epochs - s->warmup_epochs;
        double t = span > 0 ? fmin(fmax(e / span, 0.0), 1.0) : 1.0;
        return s->min_factor + (1.0 - s->min_factor) * 0.5 * (1.0 + cos(3.14159265358979323846 * t));
    }
    case CT_SCHEDULE_CONSTANT:
    default:
        return 1.0;
    }
}
