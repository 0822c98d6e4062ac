/* The cutune command: dispatches to one function per command, from the one table that also
 * makes `cutune --help` and, through `cutune docs`, the man page and the shell completion. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L /* setenv */
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "cutune/cuda.h"

/* Every command, in the order `cutune --help` lists them: what dispatches, what the help says,
 * and what `cutune docs` turns into the man page and the shell completion. */
const cli_command cli_commands[] = {
    {"train", cmd_train, "fine-tune VGG16 or VGG19 on class folders or iceberg JSON"},
    {"evaluate", cmd_evaluate, "metrics of a trained model on labelled data"},
    {"predict", cmd_predict, "class probabilities per image (Kaggle CSV for iceberg)"},
    {"advise", cmd_advise,
     "how much of the backbone to fine-tune for a dataset, measured, with the command"},
    {"scan", cmd_scan, "what a dataset holds as Keras sees it; --check decodes every image"},
    {"devices", cmd_devices, "list CUDA devices, or say why none is usable"},
    {"bench", cmd_bench, "time VGG forward+backward on generated data (loss, img/s)"},
    {"demo", cmd_demo, "the main job: generate data, fine-tune both seed models, report"},
    {"inspect", cmd_inspect, "describe a Keras/cutune weights file and whether it fits a model"},
    {"export-keras", cmd_export_keras,
     "print the Keras code that rebuilds a cutune model and loads its file"},
    {"docs", cmd_docs, "write the man page or the bash completion (generated from the flags)"},
};
const int cli_n_commands = (int)(sizeof cli_commands / sizeof cli_commands[0]);

static void print_usage(FILE *f) {
    fprintf(f, "cutune %s - %s\n\nusage: cutune COMMAND [FLAGS]\n\ncommands:\n", CUTUNE_VERSION,
            CLI_SUMMARY);
    for (int i = 0; i < cli_n_commands; i++) {
        int len = (int)strlen(cli_commands[i].name);
        fprintf(f, "  %-*s%s\n", len < 12 ? 12 : len + 2, cli_commands[i].name,
                cli_commands[i].summary);
    }
    fputs("\n  cutune COMMAND --help   flags of one command\n"
          "  cutune --version        version and what this build includes\n"
          "  cutune train|bench|devices --gpus N|0,2,5\n"
          "                          one rank per GPU of this machine (devices: the launch check)\n",
          f);
}

static int print_version(void) {
    printf("cutune %s\n", CUTUNE_VERSION);
    if (!ct_cuda_compiled()) {
        printf("CUDA backend: not built\n");
        return 0;
    }
    ct_cuda_versions v;
    ct_cuda_versions_get(&v);
    printf("CUDA backend: built against CUDA runtime %d.%d, cuDNN %zu, cuBLAS %d\n",
           v.runtime / 1000, (v.runtime % 1000) / 10, v.cudnn, v.cublas);
    if (v.driver > 0)
        printf("CUDA driver: %d.%d\n", v.driver / 1000, (v.driver % 1000) / 10);
    else
        printf("CUDA driver: not installed\n");
    return 0;
}

/* OpenMP threads that wait at a barrier sleep at once instead of spinning first (libgomp spins
 * up to ~300k iterations by default). On a machine whose cores other work competes for, a
 * spinning thread burns the time slice its descheduled partner needs, and every parallel region
 * waits on that partner: under two busy loops a CPU training step ran 1.2 to 2x slower with
 * spinning, where on an idle machine passive waiting costs 5-10% (bench/RESULTS.md). libgomp
 * reads the policy once, before main, so the command runs itself again with
 * OMP_WAIT_POLICY=PASSIVE; a user who sets OMP_WAIT_POLICY or GOMP_SPINCOUNT keeps their
 * choice, and when the re-run cannot start the command goes on as it is. */
static void omp_wait_passively(char **argv) {
    if (getenv("OMP_WAIT_POLICY") != NULL || getenv("GOMP_SPINCOUNT") != NULL) return;
    if (setenv("OMP_WAIT_POLICY", "PASSIVE", 1) != 0) return;
    execv("/proc/self/exe", argv);
}

int main(int argc, char **argv) {
    omp_wait_passively(argv);
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        print_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? CLI_EXIT_USAGE : 0;
    }
    if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "version") == 0)
        return print_version();
    bool launched = false;
    int code = cli_gpus_launch(argc, argv, &launched);
    if (launched) return code;
    for (int i = 0; i < cli_n_commands; i++)
        if (strcmp(argv[1], cli_commands[i].name) == 0)
            return cli_commands[i].run(argc - 2, argv + 2);
    fprintf(stderr, "cutune: unknown command '%s'\n\n", argv[1]);
    print_usage(stderr);
    return CLI_EXIT_USAGE;
}
