/* `--gpus N|LIST` for train, bench and devices: taken out of the command line before the command
 * parses its flags, and the command run again as one rank per GPU (dist/launch.c).
 *
 * The flag is handled here rather than in each command's flag table because the launcher runs
 * before the command: the children parse the same command line, without --gpus, and find their
 * rank in the environment. A process that already is a launched rank (RANK set) refuses the
 * flag, since starting ranks from a rank would multiply them. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cutune/cuda.h"
#include "dist/launch.h"

/* The commands that accept --gpus. */
static bool takes_gpus(const char *cmd) {
    return strcmp(cmd, "train") == 0 || strcmp(cmd, "bench") == 0 || strcmp(cmd, "devices") == 0;
}

/* Where --gpus is among argv: its index (or -1), its value, and how many arguments it spans. */
static int find_gpus(int argc, char **argv, const char **value, int *span) {
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--gpus") == 0) {
            *value = i + 1 < argc ? argv[i + 1] : NULL;
            *span = i + 1 < argc ? 2 : 1;
            return i;
        }
        if (strncmp(argv[i], "--gpus=", 7) == 0) {
            *value = argv[i] + 7;
            *span = 1;
            return i;
        }
    }
    return -1;
}

/* Checks the flag where it is used; 0 when the launch may go on, else the exit code. */
static int gpus_allowed(const char *cmd, const char *value) {
    const char *rank = getenv("RANK");
    if (value == NULL) {
        fprintf(stderr, "cutune %s: --gpus needs a value (a number of GPUs or a list like "
                "0,2,5)\n", cmd);
        return CLI_EXIT_USAGE;
    }
    if (rank != NULL) {
        fprintf(stderr, "cutune %s: --gpus inside a launched rank (RANK=%s is set): the launcher "
                "(torchrun, or cutune --gpus) already started one process per GPU\n", cmd, rank);
        return CLI_EXIT_USAGE;
    }
    if (!ct_cuda_compiled() && strcmp(cmd, "devices") != 0) {
        fprintf(stderr, "cutune %s: cutune was built without CUDA: --gpus starts one rank per "
                "GPU; on the CPU launch ranks with mpirun\n", cmd);
        return CLI_EXIT_USAGE;
    }
    return 0;
}

int cli_gpus_launch(int argc, char **argv, bool *handled) {
    const char *value = NULL;
    int span = 0, devices[CT_LAUNCH_MAX_RANKS], count = 0;
    *handled = false;
    if (argc < 2 || !takes_gpus(argv[1])) return 0;
    int at = find_gpus(argc, argv, &value, &span);
    if (at < 0) return 0;
    *handled = true;
    int code = gpus_allowed(argv[1], value);
    if (code != 0) return code;
    ct_status s = ct_gpus_parse(value, devices, CT_LAUNCH_MAX_RANKS, &count);
    if (s != CT_OK) return cli_fail(argv[1], s);
    char **child_argv = calloc((size_t)argc + 1, sizeof *child_argv);
    if (child_argv == NULL) return cli_fail(argv[1], CT_ENOMEM);
    int n = 0;
    for (int i = 0; i < argc; i++)
        if (i < at || i >= at + span) child_argv[n++] = argv[i];
    child_argv[n] = NULL;
    code = ct_launch_local(child_argv, devices, count);
    free(child_argv);
    return code;
}
