/* How long loading a notop-sized weights file takes, against reading the same bytes.
 *
 * A model's backbone is saved to a file the size of the official notop file (13 conv layers,
 * 14,714,688 float32 parameters, ~58.9 MB); then the best and median of several runs of
 *   - fread of the whole file into memory,
 *   - ct_weights_inspect (the file's structure only),
 *   - ct_weights_load of the backbone (structure, HDF5 reads, finite checks, HWIO -> KRSC,
 *     copy into the model),
 * each with the file in the page cache (warm) and after posix_fadvise(DONTNEED) has dropped
 * its pages (cold: read from the disk, where the kernel honours the advice). The load is bound
 * by reading the bytes when its time is close to fread's.
 *
 * usage: bench_weights_load [RUNS] [DIR]   (defaults: 7 runs, /tmp) */
#define _POSIX_C_SOURCE 200809L
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "model/model.h"
#include "io/weights.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void drop_cache(const char *path) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) return;
    fdatasync(fd);
    posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    close(fd);
}

typedef enum { WHAT_FREAD, WHAT_INSPECT, WHAT_LOAD } what_t;

static double run_once(what_t what, const char *path, ct_model *m, char *buf, size_t size) {
    double t0 = now();
    if (what == WHAT_FREAD) {
        FILE *f = fopen(path, "rb");
        if (f == NULL || fread(buf, 1, size, f) != size) {
            fprintf(stderr, "fread of %s failed\n", path);
            exit(1);
        }
        fclose(f);
    } else if (what == WHAT_INSPECT) {
        ct_weights_file *wf = NULL;
        if (ct_weights_inspect(path, &wf) != CT_OK) {
            fprintf(stderr, "%s\n", ct_last_error());
            exit(1);
        }
        ct_weights_file_free(wf);
    } else {
        ct_weights_load_opts o;
        ct_weights_load_defaults(&o);
        o.scope = CT_WEIGHTS_SCOPE_BACKBONE;
        if (ct_weights_load(m, path, &o, NULL) != CT_OK) {
            fprintf(stderr, "%s\n", ct_last_error());
            exit(1);
        }
    }
    return now() - t0;
}

static void row(const char *label, what_t what, bool cold, int runs, const char *path,
                ct_model *m, char *buf, size_t size, double *best_out) {
    double *t = malloc((size_t)runs * sizeof *t);
    run_once(what, path, m, buf, size); /* warm-up: first-touch page faults, HDF5 init */
    for (int r = 0; r < runs; r++) {
        if (cold) drop_cache(path);
        t[r] = run_once(what, path, m, buf, size);
    }
    qsort(t, (size_t)runs, sizeof *t, cmp);
    printf("| %-44s | %5s | %8.1f | %8.1f | %6.2f |\n", label, cold ? "cold" : "warm",
           t[0] * 1e3, t[runs / 2] * 1e3, size / t[0] / 1e9);
    if (best_out != NULL) *best_out = t[0];
    free(t);
}

int main(int argc, char **argv) {
    int runs = argc > 1 ? atoi(argv[1]) : 7;
    const char *dir = argc > 2 ? argv[2] : "/tmp";
    if (runs < 1) runs = 1;
    ct_backend be;
    if (ct_backend_cpu_init(&be, 0) != CT_OK) return 1;
    ct_model_config cfg = {.input_h = 32, .input_w = 32, .input_c = 3, .max_batch = 1,
                           .head = "gap,dense:2:softmax", .seed = 1};
    ct_model *m = NULL;
    if (ct_model_init(&m, &cfg, &be) != CT_OK) {
        fprintf(stderr, "%s\n", ct_last_error());
        return 1;
    }
    char path[512];
    snprintf(path, sizeof path, "%s/cutune_bench_notop_%d.h5", dir, (int)getpid());
    ct_weights_save_opts so = {.backbone_only = true};
    if (ct_weights_save(m, path, &so) != CT_OK) {
        fprintf(stderr, "%s\n", ct_last_error());
        return 1;
    }
    FILE *f = fopen(path, "rb");
    fseek(f, 0, SEEK_END);
    size_t size = (size_t)ftell(f);
    fclose(f);
    char *buf = malloc(size);
    memset(buf, 1, size);

    printf("weights file: %s, %zu bytes (backbone of a cutune model: 14,714,688 float32)\n",
           path, size);
    printf("runs: %d (best and median reported; GB/s is file bytes / best time)\n\n", runs);
    printf("| %-44s | %5s | %8s | %8s | %6s |\n", "what", "cache", "best ms", "median ms",
           "GB/s");
    printf("|%s|%s|%s|%s|%s|\n", "----------------------------------------------",
           "-------", "----------", "----------", "--------");
    double fread_warm, load_warm, fread_cold, load_cold;
    row("fread of the whole file", WHAT_FREAD, false, runs, path, m, buf, size, &fread_warm);
    row("ct_weights_inspect (structure only)", WHAT_INSPECT, false, runs, path, m, buf, size,
        NULL);
    row("ct_weights_load, backbone (13 layers)", WHAT_LOAD, false, runs, path, m, buf, size,
        &load_warm);
    row("fread of the whole file", WHAT_FREAD, true, runs, path, m, buf, size, &fread_cold);
    row("ct_weights_load, backbone (13 layers)", WHAT_LOAD, true, runs, path, m, buf, size,
        &load_cold);
    printf("\nload / fread: %.2fx warm, %.2fx cold\n", load_warm / fread_warm,
           load_cold / fread_cold);
    unlink(path);
    free(buf);
    ct_model_free(m);
    ct_backend_free(&be);
    return 0;
}
