/* One `cutune train` run, shared by the files of the training loop:
 *
 *   fit.c            ct_train: the steps of a run in order, and what it frees
 *   fit_setup.c      data, head, model, weights, freezing, class weights, loaders
 *   fit_step.c       one training step and one validation pass
 *   fit_loop.c       the epochs: the batch loop, the end of an epoch, the end of the run
 *   fit_callbacks.c  ModelCheckpoint, EarlyStopping, ReduceLROnPlateau, the user's callbacks,
 *                    with the state the checkpoint keeps for them
 *   fit_resume.c     --resume: the settings, the log and the checkpoint put back
 *   fit_cache.c      the frozen-prefix cache
 *   fit_memory.c     the memory plan behind an out-of-memory message's batch size
 *   run_dir.c        the run folder: its paths, config.txt, the weights files written there
 *   run_lock.c       one run per folder (a lock), and the temporary files of dead writers
 *   settings.c       the settings table behind the flags and config.txt
 *
 * Data parallel training (a rank per GPU) hooks in at three places of this loop: the step
 * (fit_step.c) reduces the gradient buckets between ct_model_backward and the update, the
 * epoch's sums and the validation sums are reduced before the callbacks read them (fit_loop.c),
 * and only rank 0 touches the run folder (run_dir.c). */
#ifndef CUTUNE_TRAIN_FIT_H
#define CUTUNE_TRAIN_FIT_H

#include "../core/atomic.h"
#include "data/data.h"
#include "model/model.h"
#include "train/run.h"
#include "train/stream.h"
#include "train/callbacks.h"
#include "io/weights.h"
#include "dist/buckets.h"
#include "dist/comm.h"

#define FIT_KEYS 5 /* acc, loss, lr, val_acc, val_loss: Keras's sorted column order */
#define FIT_SUMS 5 /* a step's sums over the ranks: loss, correct, rows, non-finite, stop */
enum { FIT_ACC, FIT_LOSS, FIT_LR, FIT_VAL_ACC, FIT_VAL_LOSS };

/* The frozen-prefix cache (fit_cache.c). */
typedef struct fit_cache {
    bool active;
    int layer;                   /* whose output is cached: the last frozen layer */
    size_t dim;                  /* values per sample */
    size_t n_train, n_val;
    float *train, *val;          /* (n, dim) in dataset order */
    float *y_train, *y_val;      /* (n, n_out) labels as the loader gives them */
    float *bx, *by, *baux;       /* one gathered batch */
    uint32_t *bidx;
    uint32_t *order;             /* (n_train) the epoch's order */
    size_t pos;
    uint32_t epoch, number;
    bool training;
    ct_batch batch;
} fit_cache;

/* The callbacks and their state (fit_callbacks.c): what a checkpoint keeps of them. */
typedef struct fit_callbacks {
    const char *monitor;         /* the watched metric, after the no-validation fallback */
    ct_monitor best;             /* ModelCheckpoint(save_best_only): best.h5, no min_delta */
    ct_early_stopping es;        /* --patience, --min-delta, --restore-best-weights */
    ct_reduce_lr rl;             /* --reduce-lr-* */
} fit_callbacks;

/* The paths of the run folder (run_dir.c). */
typedef struct fit_paths {
    char ckpt[4200], best[4200], final[4200], log[4200], curves[4200], config[4200],
        es_best[4200], finished[4200];
} fit_paths;

typedef struct fit_run {
    const ct_train_config *c;
    ct_backend be;
    ct_model *m;
    ct_dataset *all, *train, *val;
    ct_loader *tl, *vl;
    int k;                       /* classes */
    int n_out;                   /* model outputs: 1 (sigmoid) or k */
    int input;                   /* input size */
    ct_class_mode class_mode;
    ct_strategy strategy;        /* resolved (never AUTO) */
    char head[1024];
    char freeze_target[64], freeze_now[64];
    bool compiled;
    ct_made_dirs made;           /* the folders this run created (the run directory, parents) */
    bool wrote_config, wrote_log, wrote_curves; /* ... and these files in it */
    int lock_fd;                 /* holds the run folder's lock (run_lock.c); -1: none */
    bool resuming;               /* --resume, and a checkpoint to resume from */
    bool best_is_current;        /* best.h5 holds the model's weights now */
    bool use_weights;
    float class_w[CT_MAX_CLASSES];
    float *labels, *weights, *probs; /* (batch, n_out), (batch), (batch, n_out) host */
    fit_paths path;
    char *config_text;           /* the run's settings, key = value lines */
    ct_schedule schedule;
    ct_csv_log log;
    double *history;             /* (epochs, FIT_KEYS) in log column order */
    ct_checkpoint_state st;
    fit_callbacks cb;
    ct_loader_config loader_cfg;  /* as the evaluation loader uses it */
    fit_cache cache;
    ct_stream *stream;           /* training batches through the staging slots */
    ct_stream *vstream;          /* validation batches, the same way (no augmentation) */
    /* data parallel (fit_dist.c): */
    int rank, world;             /* 0 and 1 without a launcher */
    int device;                  /* the CUDA device: the local rank */
    ct_comm *comm;               /* the other ranks; NULL on one */
    ct_train_config quiet;       /* ranks but 0: the settings with verbose 0 (r->c points here) */
    ct_grad_sync sync;           /* the gradient buckets */
    size_t step_rows;            /* the rows of the step's global batch */
    double stop_votes;           /* ranks that asked for a stop in the last step */
    bool failed_together;        /* every rank learnt of the failure (fit_dist_agree) */
} fit_run;

/* ---- fit.c ---- */

/* Whether a stop was asked for (a signal, CUTUNE_STOP_AFTER_STEPS, a user callback); and the
 * step counter behind CUTUNE_STOP_AFTER_STEPS. */
bool fit_stop_requested(void);
/* Counts a trained step; may ask for a stop (CUTUNE_STOP_AFTER_STEPS). Returns whether the
 * next step is the last this call will train. */
void fit_count_step(void);
bool fit_last_step_before_stop(void);
/* Whether CUTUNE_STOP_AFTER_STEPS's count was reached (the same step on every rank). */
bool fit_count_stopped(void);
/* Opens the backend the run computes on (once: a data-parallel run opens it early). */
ct_status fit_open_backend(fit_run *r);

/* ---- fit_setup.c ---- */

ct_status fit_open_data(fit_run *r);
ct_status fit_class_weights(fit_run *r);
ct_status fit_choose_head(fit_run *r);
ct_status fit_build_model(fit_run *r);
ct_status fit_open_loaders(fit_run *r);
/* The freezing in force at `epoch` (the backbone during warm-up, then the target), applied and
 * compiled when it changed. */
ct_status fit_apply_freezing(fit_run *r, int epoch);
const char *fit_freeze_at(const fit_run *r, int epoch);
/* The preprocessing without --preprocess: caffe for image folders, none for iceberg dB. */
ct_preprocess_mode fit_default_preprocess(const fit_run *r);
/* The strategy `cutune advise` picks for this training set (CT_STRATEGY_AUTO resolved), with
 * its reasoning printed when verbose. */
ct_status fit_auto_strategy(const ct_train_config *c, const ct_dataset *train, ct_strategy *out);

/* ---- fit_step.c ---- */

/* One training step on batch `b` in staging slot `slot` (-1: a cached batch), queuing the next
 * batch's copy while the device works when `prefetch`; the update is applied only after the
 * loss and every gradient were found finite. sums gets the step's loss sum, correct predictions
 * and rows, over every rank of a data-parallel run. */
ct_status fit_train_step(fit_run *r, const ct_batch *b, int slot, bool prefetch,
                         const ct_batch **next, int *next_slot, double lr_scale,
                         double sums[FIT_SUMS]);
/* The next training batch (from the cache or the loader, copied into a staging slot), and
 * giving one back. */
ct_status fit_fetch_train(fit_run *r, const ct_batch **b, int *slot);
ct_status fit_release_train(fit_run *r, const ct_batch *b, int slot);
/* Keras's val_loss and val_acc over the validation data (no class weights). */
ct_status fit_validate(fit_run *r, double *val_loss, double *val_acc);

/* ---- fit_loop.c ---- */

extern const char *const fit_log_keys[FIT_KEYS];
/* Columns of log.csv: 5 with validation data, else acc, loss, lr. */
int fit_n_log_keys(const fit_run *r);
double fit_log_value(const double *row, const char *name);
ct_status fit_run_epochs(fit_run *r, ct_train_result *res);

/* ---- fit_callbacks.c ---- */

/* Validates --monitor against the log's columns (falling back from val_* without validation
 * data) and sets up the callbacks as configured. */
ct_status fit_callbacks_init(fit_run *r, fit_callbacks *cb);
/* The one place the callbacks' state goes into, and comes out of, the checkpoint state. */
void fit_callbacks_save(const fit_callbacks *cb, ct_checkpoint_state *st);
void fit_callbacks_load(fit_callbacks *cb, const ct_checkpoint_state *st);
/* The end of an epoch, in Keras's order: best.h5, EarlyStopping, ReduceLROnPlateau, then the
 * user's on_epoch_end. *stop: training ends after this epoch. */
ct_status fit_callbacks_epoch_end(fit_run *r, int epoch, const double *row, double seconds,
                                  bool *stop, bool *early);
/* EarlyStopping(restore_best_weights): the best epoch's weights back in the model. */
ct_status fit_callbacks_restore_best(fit_run *r);
/* The user's on_batch_end, with the epoch's running means. */
void fit_callbacks_batch_end(fit_run *r, long steps, double loss, double acc);
/* The epoch best.h5 holds: the monitor's best (no min_delta) over `epochs` rows; -1: none. */
int fit_callbacks_best_epoch(const fit_run *r, int epochs);

/* ---- fit_resume.c ---- */

/* Checks the settings against the run's, restores the log's rows and the checkpoint (weights,
 * optimizer, loop and callback state) so the run continues exactly where it stopped. */
ct_status fit_resume(fit_run *r);

/* ---- run_dir.c ---- */

ct_status fit_prepare_run_dir(fit_run *r);
/* A new run that fails before its first checkpoint removes what it began. */
void fit_discard_failed_start(fit_run *r);
/* Gives the folder up: the lock released and, with `discard` (a start that saved nothing), the
 * lock file and the folders this run made removed. */
void fit_release_run_dir(fit_run *r, bool discard);

/* ---- run_lock.c ---- */

#define FIT_LOCK_FILE ".lock"
/* Left by a run that ended without a checkpoint (--keep-checkpoints 0): the run is done. */
#define FIT_FINISHED_FILE ".finished"
/* Locks `dir` for this process (*fd holds the lock until fit_unlock_run_dir); CT_EINVAL naming
 * the process that holds it already. */
ct_status fit_lock_run_dir(const char *dir, int *fd);
void fit_unlock_run_dir(int fd);
/* Removes the temporary files in `dir` of writers that are no longer alive; returns how many. */
int fit_remove_stale_temps(const char *dir);
ct_status fit_write_text(const char *path, const char *text);
ct_status fit_save_weights(fit_run *r, const char *path);
ct_status fit_save_checkpoint(fit_run *r);

/* ---- run_files.c: what a run leaves, and no more ---- */

/* After the checkpoint of `epochs` finished epochs: with --keep-checkpoints K > 1 it keeps the
 * name checkpoint-<epochs>.h5 too, and the one of K epochs before goes. */
ct_status fit_keep_epoch_checkpoint(fit_run *r, int epochs);
/* The run's model at its end: final.h5 (a second name of best.h5 when that holds the same
 * weights), or with --save-best-only none; *path gets the run's model file. */
ct_status fit_save_final(fit_run *r, const char **path);
/* A run that ended: with --keep-checkpoints 0 its checkpoint goes, and the folder is marked
 * finished (.finished) so that it is not taken for a run killed before its first checkpoint. */
ct_status fit_finish_files(fit_run *r);
bool fit_exists(const char *path);
bool fit_is_dir(const char *path);

/* ---- fit_cache.c ---- */

/* Builds (or keeps) the cache for the current lowest trainable layer, when it applies. */
ct_status fit_cache_prepare(fit_run *r);
void fit_cache_begin_epoch(fit_run *r, uint32_t epoch, uint32_t first_batch, bool training);
/* The next gathered batch, or NULL at the end of the epoch. */
const ct_batch *fit_cache_next(fit_run *r);
void fit_cache_free(fit_cache *fc);

/* ---- fit_cache_store.c: the cache kept on disk between runs ---- */

/* The cache's values from disk when a file of their key is there (its path in `where`); *key
 * gets the key either way. */
bool fit_cache_load(fit_run *r, uint64_t *key, char *where, size_t cap);
/* The cache's values to disk under `key` (failures are ignored: it is a cache). */
void fit_cache_store(fit_run *r, uint64_t key);

/* ---- fit_dist.c: data parallel ---- */

/* The launcher's world (w); when launched, the backend on the local device and the
 * communicator. Ranks but 0 run quiet. */
ct_status fit_dist_open(fit_run *r, ct_world *w);
/* Every rank learns whether `stage` failed on any rank: this rank's own error, or CT_EIO
 * saying how many others failed. `s` as it is on one rank. */
ct_status fit_dist_agree(fit_run *r, ct_status s, const char *stage);
/* Every rank runs the same settings record. */
ct_status fit_dist_same_settings(fit_run *r);
/* After rank 0's start of the loop (fresh or resumed): its loop state, log rows, freezing,
 * weights and optimizer state on every rank, and the buckets planned. */
ct_status fit_dist_share_start(fit_run *r);
/* Rank 0's weights on every rank (after EarlyStopping restored them from its file). */
ct_status fit_dist_share_weights(fit_run *r);
/* The buckets of the current freezing (again after every change). */
ct_status fit_dist_plan_buckets(fit_run *r);
/* A step's start: dropout's row offset, the buckets' step, and the per-sample weights that make
 * the summed gradients the global batch's mean (returned: r->weights). */
const float *fit_dist_step_begin(fit_run *r, const ct_batch *b);
/* The step's sums over the ranks: in, this rank's {loss, correct, rows}; out, the global
 * {loss sum, correct, rows, ranks with a non-finite loss, ranks asking to stop}. CT_ENUMERIC on
 * every rank when any rank's loss was not finite (loss_status: this rank's). */
ct_status fit_dist_step_sums(fit_run *r, ct_status loss_status, double sums[FIT_SUMS]);
ct_status fit_dist_validation_sums(fit_run *r, double *loss_sum, double *correct, long *seen);
/* An epoch's end: the run stops when any rank's callbacks say so. */
ct_status fit_dist_vote_stop(fit_run *r, bool *stop);
/* Whether the run stops after this step: a stop request on any rank (voted in the step's sums),
 * or the step count; on one rank, fit_stop_requested. */
bool fit_stop_agreed(const fit_run *r);
void fit_dist_close(fit_run *r, bool clean);

/* ---- fit_memory.c ---- */

/* Appends the largest batch that fits to an out-of-device-memory error. */
void fit_oom_hint(fit_run *r);

#endif
