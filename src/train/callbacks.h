/* Training-loop parts with Keras's semantics: the metrics' computation, the monitor logic shared by
 * ModelCheckpoint / EarlyStopping / ReduceLROnPlateau, learning-rate schedules, the CSVLogger
 * file, the Keras 2 progress bar, and the curves.png plot. Each part is plain data plus
 * functions, so the training loop composes them and tests check them one by one. */
#ifndef CUTUNE_TRAIN_CALLBACKS_H
#define CUTUNE_TRAIN_CALLBACKS_H

#include <stdbool.h>
#include <stdio.h>

#include "cutune/train.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Computes every metric from probabilities (n, outputs) and labels (n, outputs) as the model
 * uses them: outputs is 1 for binary (sigmoid) and k for categorical (one-hot or soft labels;
 * the true class is the argmax). weights may be NULL. Allocates the arrays: ct_metrics_free. */
ct_status ct_metrics_compute(ct_metrics *m, const float *probs, const float *labels,
                             const float *weights, long n, int outputs);

/* ---- monitors and callbacks ---- */

typedef enum { CT_MODE_AUTO, CT_MODE_MIN, CT_MODE_MAX } ct_monitor_mode;

/* What is watched and which way is better. Mode auto maximises names containing "acc" or
 * "auc" and minimises the rest, as Keras does. */
typedef struct ct_monitor {
    char name[32];           /* "val_loss", "val_acc", "loss", ... */
    bool maximize;
    double min_delta;        /* >= 0 */
    double best;             /* +inf or -inf before the first value */
} ct_monitor;

ct_status ct_monitor_init(ct_monitor *m, const char *name, ct_monitor_mode mode,
                          double min_delta);
ct_status ct_monitor_mode_parse(const char *s, ct_monitor_mode *mode);
/* "auto", "min" or "max": the word ct_monitor_mode_parse reads. */
const char *ct_monitor_mode_name(ct_monitor_mode mode);
/* Whether `value` beats `reference` by more than min_delta in the better direction. */
bool ct_monitor_better(const ct_monitor *m, double value, double reference);

/* Keras EarlyStopping(monitor, min_delta, patience, baseline, restore_best_weights,
 * start_from_epoch). */
typedef struct ct_early_stopping {
    ct_monitor mon;
    int patience, wait, start_from_epoch;
    bool has_baseline;
    double baseline;
    bool restore_best;
    int best_epoch;          /* 0-based; -1 before any */
    int stopped_epoch;       /* 0-based; -1 while running */
} ct_early_stopping;

void ct_early_stopping_init(ct_early_stopping *e, const ct_monitor *mon, int patience);
/* Feeds the value at the end of `epoch` (0-based). *improved says whether this epoch is the
 * new best (the loop saves weights for restore_best); returns true when training should stop. */
bool ct_early_stopping_update(ct_early_stopping *e, int epoch, double value, bool *improved);

/* Keras ReduceLROnPlateau(monitor, factor 0.1, patience 10, min_delta 1e-4, cooldown 0,
 * min_lr 0). */
typedef struct ct_reduce_lr {
    ct_monitor mon;
    double factor, min_lr;
    int patience, cooldown, wait, cooldown_counter;
} ct_reduce_lr;

void ct_reduce_lr_init(ct_reduce_lr *r, const ct_monitor *mon);
/* Feeds the epoch's value; may lower *lr (absolute). Returns true when it did. */
bool ct_reduce_lr_update(ct_reduce_lr *r, double value, double *lr);

/* Learning-rate schedules as a factor of the base rate at a 0-based epoch (fractional epochs
 * allowed, for per-step schedules). */
typedef enum { CT_SCHEDULE_CONSTANT, CT_SCHEDULE_STEP, CT_SCHEDULE_COSINE } ct_schedule_kind;
typedef struct ct_schedule {
    ct_schedule_kind kind;
    double step_factor;      /* step: multiply by this ... */
    int step_every;          /* ... every this many epochs */
    int total_epochs;        /* cosine: decays to min_factor at this epoch */
    double min_factor;       /* cosine floor, as a factor of the base rate */
    int warmup_epochs;       /* linear warm-up from 0 before either */
} ct_schedule;

/* Parses "constant", "step:EVERY:FACTOR" or "cosine[:MIN_FACTOR]" (total from the epochs). */
ct_status ct_schedule_parse(ct_schedule *s, const char *spec, int total_epochs);
double ct_schedule_factor(const ct_schedule *s, double epoch);

/* ---- CSVLogger ---- */

/* Keras CSVLogger: header `epoch` then the keys in sorted order, one row per epoch (0-based).
 * The file is rewritten through a temporary name each epoch, so an interrupted run leaves a
 * complete log. `append` continues an existing log (resume). */
typedef struct ct_csv_log {
    char path[4096];
    char sep;
    int n_keys;
    char keys[16][32];
} ct_csv_log;

ct_status ct_csv_log_open(ct_csv_log *log, const char *path, const char *const *keys, int n_keys,
                          bool append);
/* values[i] is the value of log->keys[i], the keys as sorted at open. */
ct_status ct_csv_log_row(ct_csv_log *log, int epoch, const double *values);
/* Reads a log back: up to max_rows rows of n_keys values (in `keys` order), row r at
 * values[r * stride]; a row's places from n_keys to stride are NAN. */
ct_status ct_csv_log_read(const char *path, const char *const *keys, int n_keys, int stride,
                          double *values, int max_rows, int *rows);

/* Writes a CSV text field: as it is, or quoted (quotes doubled) when it holds a comma, a quote
 * or a line break. */
void ct_csv_field(FILE *f, const char *s);

/* Shortest decimal that reads back as the same double, as Python's repr writes it. */
void ct_format_double(char *buf, size_t len, double v);
/* The same for a float: the fewest digits that read back as the same float (0.01, not
 * 0.009999999776482582). */
void ct_format_float(char *buf, size_t len, float v);

/* ---- Keras 2 progress bar ---- */

typedef struct ct_progbar {
    long target;
    int width;               /* 30 */
    bool interactive;        /* redraw with \r on a terminal; else one line at the end */
    double start;            /* seconds */
    FILE *out;
} ct_progbar;

void ct_progbar_init(ct_progbar *p, long target, FILE *out, bool interactive, double now);
/* Draws step `current` of target with metric name/value pairs (running means), ETA from the
 * elapsed time. At current == target prints the final line with total time and per-step
 * time, and a newline. Off a terminal only that final line is written, so the training loop
 * calls it once per epoch, after validation, with the val_ metrics on it (Keras 2's
 * ProgbarLogger). */
void ct_progbar_update(ct_progbar *p, long current, const char *const *names,
                       const double *values, int n, double now);
/* The line Keras would print, without carriage returns, into buf. */
void ct_progbar_format(const ct_progbar *p, long current, const char *const *names,
                       const double *values, int n, double now, char *buf, size_t len);

/* ---- curves.png ---- */

/* Loss (top) and accuracy (bottom) per epoch, training vs validation (NAN: absent), drawn with
 * libpng and written atomically. Both axes are ticked at 1-2-5 numbers (ct_axis_ticks); a
 * dashed vertical line marks best_epoch (0-based; -1: none), labelled with the monitored
 * metric's name (monitor, may be NULL). */
ct_status ct_curves_write(const char *path, const double *loss, const double *val_loss,
                          const double *acc, const double *val_acc, int epochs, int best_epoch,
                          const char *monitor);

/* Ticks of an axis over [lo, hi] at "nice" numbers: multiples of a step that is 1, 2 or 5
 * times a power of ten, the smallest such step giving at most max_ticks (3 or more) ticks. The
 * first tick is at or below lo and the last at or above hi, so the ticks bound the axis.
 * Writes up to cap ticks, returns how many there are, and sets *step and *decimals (the
 * decimals that print every tick exactly). lo == hi is widened to a unit around it. */
int ct_axis_ticks(double lo, double hi, int max_ticks, double *ticks, int cap, double *step,
                  int *decimals);

#ifdef __cplusplus
}
#endif
#endif
