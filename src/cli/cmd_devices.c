/* `cutune devices`: the CUDA devices cutune can use, or the plain reason there are none. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "cutune/cuda.h"

int cmd_devices(int argc, char **argv) {
    if (argc > 0 && strcmp(argv[0], "--help") == 0) {
        puts("usage: cutune devices\n\nLists the CUDA devices cutune can use, with memory and "
             "compute capability.\nExits 1 and says why when none is usable.");
        return 0;
    }
    if (!cli_parse("devices", argc, argv, NULL, 0)) return CLI_EXIT_USAGE;
    ct_device_info dev[16];
    int count = 0;
    ct_status s = ct_cuda_devices(dev, 16, &count);
    if (s != CT_OK) {
        fprintf(stderr, "cutune devices: no usable CUDA device: %s\n", ct_last_error());
        fprintf(stderr, "cutune devices: training runs on the CPU backend (--device cpu)\n");
        return 1;
    }
    printf("%-3s %-32s %-7s %-11s %-11s %s\n", "id", "name", "cc", "memory", "free", "SMs");
    for (int i = 0; i < count && i < 16; i++)
        printf("%-3d %-32s %d.%-5d %7.1f GiB %7.1f GiB %d%s\n", dev[i].index, dev[i].name,
               dev[i].cc_major, dev[i].cc_minor, dev[i].total_mem / 1073741824.0,
               dev[i].free_mem / 1073741824.0, dev[i].sm_count,
               dev[i].tensor_cores_bf16 ? "" : "  (no bf16 tensor cores)");
    return 0;
}
