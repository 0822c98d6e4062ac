/* Every CUTUNE_* environment variable cutune reads is read here and nowhere else (SQLite keeps
 * its test seams in one place the same way). Two kinds:
 *
 *   settings a user may give the environment instead of a flag
 *     CUTUNE_WEIGHTS=FILE|DIR        where --weights imagenet looks first (io/resolve.c), and
 *                                    the folder a download goes to when it names one
 *     CUTUNE_OFFLINE=1               --weights imagenet only searches, never downloads
 *     CUTUNE_PRECISION=tf32|fp32|bf16  the CUDA backend's arithmetic when no --precision is given
 *     CUTUNE_DETERMINISTIC=1         deterministic cuDNN algorithms only (--deterministic)
 *     CUTUNE_WORKSPACE_MB=N          the most workspace a convolution algorithm may need (1024)
 *     CUTUNE_CONV_LOG=1              print each convolution shape's chosen algorithms
 *     CUTUNE_H5_PROBE_S=SECONDS      the time limit of the damaged-file probe (60)
 *     CUTUNE_CACHE_DIR=DIR|off       where frozen-prefix caches are kept between runs
 *                                    ($XDG_CACHE_HOME/cutune/features, ~/.cache/...); off: none
 *     CUTUNE_COLLECTIVE_TIMEOUT=S    how long a rank waits for the others in one collective
 *                                    before it stops with a message (600)
 *     CUTUNE_RENDEZVOUS_TIMEOUT=S    how long the ranks of a torchrun-style launch wait for each
 *                                    other at start-up (300)
 *     CUTUNE_BUCKET_MB=MB            the size of a gradient bucket (25; the first is 1 MB)
 *     CUTUNE_LAUNCH_GRACE=S          how long --gpus waits for the other ranks' checkpoint
 *                                    after one failed, before it kills them (60)
 *   seams for tests and benchmarks, which force what is otherwise decided by timing or by
 *   the machine
 *     CUTUNE_STOP_AFTER_STEPS=N      ct_train stops as if interrupted after N steps
 *     CUTUNE_WEIGHTS_URL=URL         the folder --weights imagenet downloads from, in place of
 *                                    Keras's (a local server's, in tests)
 *     CUTUNE_CONV_LAYOUT=nchw|nhwc   fp32 convolutions through NCHW copies, or never
 *     CUTUNE_CONV_PAD=always|never   narrow first-layer inputs zero-padded, or never
 *     CUTUNE_CPU_LAZY_STAGING=1      the CPU backend copies staged batches when acquired
 *     CUTUNE_CPU_KERNELS=reference   the CPU backend's hand-written convolutions and pooling
 *                                    (im2col + OpenBLAS, one image at a time) in place of
 *                                    oneDNN's (=onednn, the default): the tests' oracle
 *     CUTUNE_H5_PROBE=0              no child-process probe of HDF5 files
 *
 * Each is read when it is needed (a backend starting, a run starting, a shape being tuned), so
 * a test may set it just before. Values are checked; a bad one is an error that names it. */
#ifndef CUTUNE_CORE_KNOBS_H
#define CUTUNE_CORE_KNOBS_H

#include <stdbool.h>
#include <stddef.h>

#include "cutune/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* CUTUNE_WEIGHTS, or NULL when unset or empty. */
const char *ct_knob_weights(void);
/* CUTUNE_OFFLINE=1: the official weights are searched for, never downloaded. */
bool ct_knob_offline(void);
/* CUTUNE_WEIGHTS_URL, or NULL when unset or empty. */
const char *ct_knob_weights_url(void);

/* CUTUNE_PRECISION: tf32, fp32 or bf16; NULL when unset or empty. */
ct_status ct_knob_precision(const char **out);
bool ct_knob_deterministic(void);
/* CUTUNE_WORKSPACE_MB in bytes; `fallback` when unset. */
ct_status ct_knob_workspace(size_t fallback, size_t *bytes);
bool ct_knob_conv_log(void);

/* CUTUNE_CONV_LAYOUT and CUTUNE_CONV_PAD: +1 forced on (nchw, always), 0 forced off (nhwc,
 * never), -1 not forced. */
int ct_knob_conv_layout(void);
int ct_knob_conv_pad(void);

bool ct_knob_cpu_lazy_staging(void);
/* CUTUNE_CPU_KERNELS: *reference true for "reference", false for "onednn" or unset; CT_EINVAL
 * otherwise. */
ct_status ct_knob_cpu_kernels(bool *reference);

/* CUTUNE_H5_PROBE (false only for "0") and CUTUNE_H5_PROBE_S (seconds; `fallback` unless a
 * positive number). */
bool ct_knob_h5_probe(void);
double ct_knob_h5_probe_seconds(double fallback);

/* The folder of the frozen-prefix caches kept between runs (CUTUNE_CACHE_DIR, else
 * $XDG_CACHE_HOME/cutune/features, else $HOME/.cache/cutune/features) into dir; false when
 * CUTUNE_CACHE_DIR is "off" or no folder can be named. */
bool ct_knob_feature_cache_dir(char *dir, size_t cap);

/* CUTUNE_STOP_AFTER_STEPS: 0 when unset; CT_EINVAL for anything but a whole number >= 1. */
ct_status ct_knob_stop_after_steps(long *steps);

/* CUTUNE_COLLECTIVE_TIMEOUT, CUTUNE_RENDEZVOUS_TIMEOUT (seconds > 0) and CUTUNE_BUCKET_MB
 * (megabytes, 0.001 to 4096), or the defaults; CT_EINVAL naming a bad value. */
ct_status ct_knob_collective_timeout(double *seconds);
ct_status ct_knob_rendezvous_timeout(double *seconds);
ct_status ct_knob_bucket_mb(double *mb);
/* CUTUNE_LAUNCH_GRACE (seconds >= 0), or `fallback`. */
ct_status ct_knob_launch_grace(double fallback, double *seconds);

#ifdef __cplusplus
}
#endif
#endif
