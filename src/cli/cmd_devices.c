/* `cutune devices`: the CUDA devices cutune can use, or the plain reason there are none.
 *
 * Under a launcher (mpirun, torchrun's environment, `--gpus`) it is the launch check instead:
 * the ranks of a torchrun-style launch meet at the rendezvous, exactly as training would, and
 * every rank prints which host it runs on and which GPU it would bind to. */
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "cutune/cuda.h"
#include "dist/rendezvous.h"
#include "dist/world.h"

/* What the launch check's hellos must agree on: that every rank runs the launch check. */
#define DEVICES_CHECK 0x6375747564657631ull /* "cutudev1" */

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec * 1e-6;
}

/* The GPU this rank binds to (its local rank among the visible devices), or why there is none.
 * False when there is none. */
static bool rank_device(const ct_world *w, char *buf, size_t cap) {
    ct_device_info dev[16];
    int count = 0;
    if (ct_cuda_devices(dev, 16, &count) != CT_OK) {
        snprintf(buf, cap, "no GPU: %s", ct_last_error());
        return false;
    }
    if (w->local_rank >= count || w->local_rank >= 16) {
        snprintf(buf, cap, "no GPU: local rank %d, but %d device%s visible", w->local_rank, count,
                 count == 1 ? " is" : "s are");
        return false;
    }
    const ct_device_info *d = &dev[w->local_rank];
    snprintf(buf, cap, "GPU %d %s (%.1f GiB, cc %d.%d)", d->index, d->name,
             d->total_mem / 1073741824.0, d->cc_major, d->cc_minor);
    return true;
}

/* The launch check of one rank: the rendezvous (torchrun-style launches), then its line. */
static int devices_launched(const ct_world *w) {
    ct_rendezvous *rv = NULL;
    double timeout = 0, start = now_ms();
    if (w->launch == CT_LAUNCH_ENV && w->size > 1) {
        unsigned char id[128] = {0};
        snprintf((char *)id, sizeof id, "cutune launch check from %.64s pid %d", w->host,
                 (int)getpid());
        ct_status s = ct_rendezvous_timeout(&timeout);
        if (s == CT_OK) s = ct_rendezvous_open(&rv, w, DEVICES_CHECK, id, sizeof id, timeout);
        if (s != CT_OK) return cli_fail("devices", s);
        if (w->rank == 0)
            printf("rendezvous at %s:%d: all %d ranks arrived in %.0f ms\n", w->master_addr,
                   w->master_port, w->size, now_ms() - start);
    }
    char device[400], size[16] = "?";
    bool usable = rank_device(w, device, sizeof device);
    if (w->size > 0) snprintf(size, sizeof size, "%d", w->size);
    printf("rank %d of %s on %s (local rank %d, %s launch): %s\n", w->rank, size, w->host,
           w->local_rank, ct_launch_name(w->launch), device);
    fflush(stdout);
    ct_rendezvous_close(rv, true);
    /* A CPU build's ranks train on the CPU: a missing GPU fails the check only where one is
     * expected. */
    return usable || !ct_cuda_compiled() ? 0 : 1;
}

/* The devices of this machine, as a table. */
static int devices_list(void) {
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

int cmd_devices(int argc, char **argv) {
    if (argc > 0 && strcmp(argv[0], "--help") == 0) {
        puts("usage: cutune devices [--gpus N|LIST]\n\nLists the CUDA devices cutune can use, "
             "with memory and compute capability.\nExits 1 and says why when none is usable.\n"
             "With --gpus (2, or 0,2,5), or under mpirun or torchrun, it is the launch check:\n"
             "the ranks meet as training would and each prints its host and GPU.");
        return 0;
    }
    if (!cli_parse("devices", argc, argv, NULL, 0)) return CLI_EXIT_USAGE;
    ct_world w;
    ct_status s = ct_world_detect(&w);
    if (s != CT_OK) return cli_fail("devices", s);
    if (w.launch != CT_LAUNCH_NONE || w.size != 1) return devices_launched(&w);
    return devices_list();
}
