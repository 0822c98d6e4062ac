/* `cutune bench`: VGG16 forward + backward + SGD update on generated data, printing the loss
 * and the throughput of each step. The data come from the counter-based
 * generator, so two runs with the same flags see the same numbers. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L /* clock_gettime */
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "cutune/backend.h"
#include "cutune/model.h"
#include "cutune/optim.h"
#include "cutune/rng.h"

typedef struct bench_opts {
    const char *device, *head, *freeze_to;
    long size, batch, steps, warmup, seed, threads;
} bench_opts;

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Caffe-preprocessed images are roughly centred with a spread of tens: draw from [-60, 60). */
static void fill_batch(float *x, float *aux, float *labels, const ct_model *m, int n,
                       uint32_t step, uint64_t seed) {
    const ct_model_config *c = ct_model_get_config(m);
    const size_t per = (size_t)c->input_h * c->input_w * c->input_c;
    const uint32_t purpose = (uint32_t)CT_RNG_TEST << 16;
    for (size_t i = 0; i < (size_t)n * per; i++)
        x[i] = (2.0f * ct_rng_unit(ct_rng_word(seed, purpose, step, 0, (uint32_t)i)) - 1.0f) * 60.0f;
    for (int i = 0; i < n * c->aux_dim; i++)
        aux[i] = ct_rng_unit(ct_rng_word(seed, purpose, step, 1, (uint32_t)i));
    const int k = ct_model_num_outputs(m);
    for (int i = 0; i < n; i++) {
        uint32_t w = ct_rng_word(seed, purpose, step, 2, (uint32_t)i);
        if (k == 1) {
            labels[i] = (float)(w & 1u);
        } else {
            for (int j = 0; j < k; j++) labels[i * k + j] = 0.0f;
            labels[i * k + (int)(w % (uint32_t)k)] = 1.0f;
        }
    }
}

static int run_bench(const char *cmd, const bench_opts *o) {
    ct_backend be = {0};
    char note[512];
    ct_status s = ct_backend_init_by_name(&be, o->device, note, sizeof note);
    if (s != CT_OK) return cli_fail(cmd, s);
    if (note[0] != '\0') fprintf(stderr, "cutune %s: %s\n", cmd, note);
    if (o->threads > 0 && strcmp(be.ops->name, "cpu") == 0) {
        ct_backend_free(&be);
        if ((s = ct_backend_cpu_init(&be, (int)o->threads)) != CT_OK) return cli_fail(cmd, s);
    }

    bool iceberg = strstr(o->head, "aux") != NULL || strcmp(o->head, "iceberg") == 0;
    ct_model_config cfg = {.input_h = (int)o->size, .input_w = (int)o->size, .input_c = 3,
                           .aux_dim = iceberg ? 1 : 0, .max_batch = (int)o->batch,
                           .head = o->head, .seed = (uint64_t)o->seed};
    ct_model *m = NULL;
    float *x = NULL, *aux = NULL, *labels = NULL;
    double *times = NULL;
    int rc = 0;
    if ((s = ct_model_init(&m, &cfg, &be)) != CT_OK) goto fail;
    if (o->freeze_to != NULL && (s = ct_model_freeze_to(m, o->freeze_to)) != CT_OK) goto fail;
    ct_optimizer_config opt;
    ct_optimizer_defaults(&opt, CT_OPT_SGD);
    opt.lr = 1e-3f;
    opt.momentum = 0.9f;
    opt.nesterov = true;
    if ((s = ct_model_compile(m, &opt)) != CT_OK) goto fail;

    const int n = (int)o->batch, k = ct_model_num_outputs(m);
    const size_t per = (size_t)cfg.input_h * cfg.input_w * 3;
    x = malloc((size_t)n * per * sizeof *x);
    aux = malloc((size_t)n * sizeof *aux);
    labels = malloc((size_t)n * k * sizeof *labels);
    times = malloc((size_t)(o->steps + o->warmup) * sizeof *times);
    if (x == NULL || aux == NULL || labels == NULL || times == NULL) {
        s = ct_error(CT_ENOMEM, "cannot allocate a batch of %d images of %ldx%ld", n, o->size,
                     o->size);
        goto fail;
    }
    size_t n_params, n_train;
    n_params = ct_model_num_params(m, &n_train);
    double f_fwd, f_train;
    ct_model_flops(m, &f_fwd, &f_train);
    ct_model_memory mem;
    ct_model_memory_get(m, &mem);
    const ct_layer *ft = ct_model_layer(m, ct_model_first_trainable(m));
    printf("cutune %s: VGG16 %ldx%ld, head '%s', batch %d, backend %s\n", cmd, o->size, o->size,
           ct_model_head_spec(m), n, be.ops->name);
    printf("parameters %zu (trainable %zu), lowest trainable layer %s\n", n_params, n_train,
           ft != NULL ? ft->name : "(none)");
    printf("memory: params %.1f MiB, grads %.1f MiB, optimizer %.1f MiB, activations %.1f MiB\n",
           mem.params / 1048576.0, mem.grads / 1048576.0, mem.optimizer / 1048576.0,
           mem.activations / 1048576.0);
    printf("work: %.2f GFLOP/img forward, %.2f GFLOP/img per training step\n", f_fwd * 1e-9,
           f_train * 1e-9);

    const long total = o->steps + o->warmup;
    for (long step = 0; step < total; step++) {
        fill_batch(x, aux, labels, m, n, (uint32_t)step, (uint64_t)o->seed);
        float loss = 0.0f;
        double t0 = now_seconds();
        if ((s = ct_model_forward_host(m, x, iceberg ? aux : NULL, n, true, (uint32_t)step)) != CT_OK ||
            (s = ct_model_loss(m, labels, NULL, &loss)) != CT_OK ||
            (s = ct_model_backward(m)) != CT_OK || (s = ct_model_apply_gradients(m, 1.0f)) != CT_OK ||
            (s = be.ops->synchronize(be.ctx)) != CT_OK)
            goto fail;
        times[step] = now_seconds() - t0;
        printf("step %ld/%ld%s: loss %.4f, %.3f s, %.1f img/s\n", step + 1, total,
               step < o->warmup ? " (warm-up)" : "", loss, times[step], n / times[step]);
        fflush(stdout);
    }
    qsort(times + o->warmup, (size_t)o->steps, sizeof *times, cmp_double);
    double med = times[o->warmup + o->steps / 2];
    printf("median step %.3f s: %.1f img/s, %.1f GFLOP/s achieved\n", med, n / med,
           f_train * n / med * 1e-9);
    goto done;
fail:
    rc = cli_fail(cmd, s);
done:
    free(times);
    free(labels);
    free(aux);
    free(x);
    ct_model_free(m);
    ct_backend_free(&be);
    return rc;
}

static const char bench_usage[] =
    "usage: cutune bench [--device cpu|cuda|auto] [--input-size N] [--batch-size N]\n"
    "                    [--steps N] [--warmup N] [--head SPEC] [--freeze-to LAYER]\n"
    "                    [--seed N] [--threads N]\n"
    "\n"
    "Times VGG16 forward + backward + SGD update on generated data and prints the loss and\n"
    "img/s of each step, then the median. Defaults: --device auto --input-size 64\n"
    "--batch-size 8 --steps 5 --warmup 1 --head mri --seed 1.\n";

static int parse_bench(const char *cmd, int argc, char **argv, bench_opts *o) {
    const char *size = NULL, *batch = NULL, *steps = NULL, *warmup = NULL, *seed = NULL,
               *threads = NULL;
    cli_flag flags[] = {
        {"device", true, &o->device},       {"input-size", true, &size},
        {"batch-size", true, &batch},       {"steps", true, &steps},
        {"warmup", true, &warmup},          {"head", true, &o->head},
        {"freeze-to", true, &o->freeze_to}, {"seed", true, &seed},
        {"threads", true, &threads},
    };
    if (!cli_parse(cmd, argc, argv, flags, (int)(sizeof flags / sizeof flags[0]))) return 0;
    if (size != NULL && !cli_int(cmd, "input-size", size, 1, 4096, &o->size)) return 0;
    if (batch != NULL && !cli_int(cmd, "batch-size", batch, 1, 65536, &o->batch)) return 0;
    if (steps != NULL && !cli_int(cmd, "steps", steps, 1, 1000000, &o->steps)) return 0;
    if (warmup != NULL && !cli_int(cmd, "warmup", warmup, 0, 1000000, &o->warmup)) return 0;
    if (seed != NULL && !cli_int(cmd, "seed", seed, 0, 0x7fffffffL, &o->seed)) return 0;
    if (threads != NULL && !cli_int(cmd, "threads", threads, 1, 1024, &o->threads)) return 0;
    return 1;
}

static bool wants_help(int argc, char **argv) {
    for (int i = 0; i < argc; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) return true;
    return false;
}

int cmd_bench(int argc, char **argv) {
    if (wants_help(argc, argv)) {
        fputs(bench_usage, stdout);
        return 0;
    }
    bench_opts o = {.device = "auto", .head = "mri", .size = 64, .batch = 8, .steps = 5,
                    .warmup = 1, .seed = 1};
    if (!parse_bench("bench", argc, argv, &o)) return CLI_EXIT_USAGE;
    return run_bench("bench", &o);
}
