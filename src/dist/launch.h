/* The local launcher behind `cutune train --gpus N`: one rank per GPU of this machine, started
 * and supervised by cutune itself with torchrun's environment (world.h's ENV launch). */
#ifndef CUTUNE_DIST_LAUNCH_H
#define CUTUNE_DIST_LAUNCH_H

#include "cutune/status.h"

/* The most ranks --gpus starts. */
#define CT_LAUNCH_MAX_RANKS 64

/* Parses --gpus: "N" (devices 0..N-1) or a list "0,2,5" (distinct, >= 0) into devices[0..count).
 * CT_EINVAL naming the text and the reason otherwise, or when more than `cap` are asked for. */
ct_status ct_gpus_parse(const char *text, int *devices, int cap, int *count);

/* A TCP port of 127.0.0.1 free now (bound to port 0, read, closed), for a rendezvous. */
ct_status ct_launch_free_port(int *port);

/* Runs argv (the whole cutune command line, argv[0] first, without --gpus, NULL-terminated) as
 * `count` ranks on this machine: each child gets RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE,
 * MASTER_ADDR=127.0.0.1, a free MASTER_PORT and CUDA_VISIBLE_DEVICES restricted to the chosen
 * devices in order (composed with an existing CUDA_VISIBLE_DEVICES), and runs /proc/self/exe.
 * Supervises them: when one fails (non-zero status or a signal) it says which and how, sends
 * SIGTERM to the others, and SIGKILL after a grace period of 60 s (CUTUNE_LAUNCH_GRACE seconds)
 * for their checkpoint. SIGINT and SIGTERM to the launcher are forwarded to every child, and the
 * launcher waits for them. Returns the exit code the command should exit with: 0 when all
 * succeeded, else the first failing rank's status (128+signal for a signal); 2 when the ranks
 * could not be started (the reason printed). */
int ct_launch_local(char **argv, const int *devices, int count);

#endif
