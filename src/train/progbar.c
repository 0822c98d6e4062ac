/* Keras 2's Progbar, character for character: `12/62 [====>.....] - ETA: 15s - loss: 0.4123`
 * while running and `62/62 [=====] - 21s 339ms/step - loss: ...` at the end. On a terminal the
 * line is redrawn in place; in a log file only the final line of each epoch is written. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "train/callbacks.h"

void ct_progbar_init(ct_progbar *p, long target, FILE *out, bool interactive, double now) {
    p->target = target > 0 ? target : 1;
    p->width = 30;
    p->interactive = interactive;
    p->start = now;
    p->out = out;
}

static size_t append(char *buf, size_t len, size_t at, const char *fmt, double v) {
    if (at >= len) return at;
    int n = snprintf(buf + at, len - at, fmt, v);
    return n > 0 ? at + (size_t)n : at;
}

void ct_progbar_format(const ct_progbar *p, long current, const char *const *names,
                       const double *values, int n, double now, char *buf, size_t len) {
    int digits = (int)log10((double)p->target) + 1;
    size_t at = (size_t)snprintf(buf, len, "%*ld/%ld [", digits, current, p->target);
    int prog_width = (int)(p->width * ((double)current / p->target));
    for (int i = 0; i < p->width && at + 1 < len; i++) {
        char c = '.';
        if (i < prog_width - 1) c = '=';
        else if (i == prog_width - 1) c = current < p->target ? '>' : '=';
        buf[at++] = c;
    }
    if (at + 1 < len) buf[at++] = ']';
    buf[at < len ? at : len - 1] = '\0';
    double elapsed = now - p->start;
    double per_step = current > 0 ? elapsed / current : 0.0;
    if (current < p->target) {
        double eta = per_step * (p->target - current);
        if (eta > 3600)
            at += (size_t)snprintf(buf + at, len > at ? len - at : 0, " - ETA: %d:%02d:%02d",
                                   (int)eta / 3600, ((int)eta % 3600) / 60, (int)eta % 60);
        else if (eta > 60)
            at += (size_t)snprintf(buf + at, len > at ? len - at : 0, " - ETA: %d:%02d",
                                   (int)eta / 60, (int)eta % 60);
        else
            at = append(buf, len, at, " - ETA: %.0fs", eta);
    } else {
        at = append(buf, len, at, " - %.0fs", elapsed);
        if (per_step >= 1) at = append(buf, len, at, " %.0fs/step", per_step);
        else if (per_step >= 1e-3) at = append(buf, len, at, " %.0fms/step", per_step * 1e3);
        else at = append(buf, len, at, " %.0fus/step", per_step * 1e6);
    }
    for (int i = 0; i < n && at < len; i++) {
        at += (size_t)snprintf(buf + at, len - at, " - %s:", names[i]);
        at = append(buf, len, at, fabs(values[i]) > 1e-3 ? " %.4f" : " %.4e", values[i]);
    }
}

void ct_progbar_update(ct_progbar *p, long current, const char *const *names,
                       const double *values, int n, double now) {
    char line[1024];
    bool done = current >= p->target;
    if (!p->interactive && !done) return;
    ct_progbar_format(p, current, names, values, n, now, line, sizeof line);
    if (p->interactive)
        /* \r and clear-to-end redraw the line in place as Keras's backspaces do. */
        fprintf(p->out, "\r%s\033[K%s", line, done ? "\n" : "");
    else
        fprintf(p->out, "%s\n", line);
    fflush(p->out);
}
