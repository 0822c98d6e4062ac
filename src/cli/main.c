/* The cutune command: dispatches to one function per command. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "cutune/cuda.h"

static const char usage[] =
    "cutune " CUTUNE_VERSION " - fine-tune an ImageNet VGG16 or VGG19 on small image datasets\n"
    "\n"
    "usage: cutune COMMAND [FLAGS]\n"
    "\n"
    "commands:\n"
    "  train       fine-tune VGG16 or VGG19 on class folders or iceberg JSON\n"
    "  evaluate    metrics of a trained model on labelled data\n"
    "  predict     class probabilities per image (Kaggle CSV for iceberg)\n"
    "  advise      how much of the backbone to fine-tune for a dataset, measured, with the command\n"
    "  scan        what a dataset holds as Keras sees it; --check decodes every image\n"
    "  devices     list CUDA devices, or say why none is usable\n"
    "  bench       time VGG forward+backward on generated data (loss, img/s)\n"
    "  demo        the main job: generate data, fine-tune both seed models, report\n"
    "  inspect     describe a Keras/cutune weights file and whether it fits a model\n"
    "  export-keras  print the Keras code that rebuilds a cutune model and loads its file\n"
    "\n"
    "  cutune COMMAND --help   flags of one command\n"
    "  cutune --version        version and what this build includes\n";

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

int main(int argc, char **argv) {
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        fputs(usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? CLI_EXIT_USAGE : 0;
    }
    if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "version") == 0)
        return print_version();
    static const struct {
        const char *name;
        int (*run)(int, char **);
    } commands[] = {
        {"devices", cmd_devices},
        {"scan", cmd_scan},
        {"bench", cmd_bench},
        {"demo", cmd_demo},
        {"train", cmd_train},
        {"evaluate", cmd_evaluate},
        {"predict", cmd_predict},
        {"advise", cmd_advise},
        {"inspect", cmd_inspect},
        {"export-keras", cmd_export_keras},
    };
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(argv[1], commands[i].name) == 0) return commands[i].run(argc - 2, argv + 2);
    fprintf(stderr, "cutune: unknown command '%s'\n\n%s", argv[1], usage);
    return CLI_EXIT_USAGE;
}
