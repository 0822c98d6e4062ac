/* `cutune bench`: the backbone's forward + backward + SGD update, timed.
 *
 * Three modes. By default one configuration runs on generated data and every step's loss and
 * throughput are printed, then the median. --sweep runs every freeze depth of --sweep-freeze
 * for every batch size of --sweep-batch, each on a fresh backend (so the device memory a row
 * reports is that configuration's alone: the model's arenas, the grow-only workspace and what
 * cuDNN and cuBLAS allocate for it), and prints one markdown table: img/s, achieved TFLOP/s from
 * ct_model_flops (the work the freezing leaves to do), milliseconds per step and the device
 * memory. bench/pytorch_vgg16.py prints the same columns for PyTorch. --data DIR times real
 * images through the loader instead (bench_data.c). Generated data come from the counter-based
 * generator, so two runs with the same flags see the same numbers. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L /* clock_gettime, setenv */
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../model/backbone.h"
#include "bench.h"
#include "cli.h"
#include "core/backend.h"
#include "cpu/cpu.h"
#include "cutune/cuda.h"
#include "model/model.h"
#include "model/optim.h"

#define MAX_SWEEP 16

double bench_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

double bench_median(double *v, size_t n) {
    qsort(v, n, sizeof *v, cmp_double);
    return v[n / 2];
}

ct_status bench_backend(const char *cmd, const bench_opts *o, ct_backend *be,
                        const char **precision, int device) {
    char note[512];
    ct_backend_options bo;
    ct_backend_options_defaults(&bo);
    bo.precision = o->precision;
    bo.device = device;
    ct_status s = ct_backend_open_with(be, o->device, &bo, note, sizeof note);
    if (s != CT_OK) return s;
    if (note[0] != '\0') fprintf(stderr, "cutune %s: %s\n", cmd, note);
    if (strcmp(be->ops->name, "cpu") == 0 && o->threads > 0) {
        const bool bf16 = strcmp(ct_backend_precision(be), "bf16") == 0;
        ct_backend_free(be);
        if ((s = ct_backend_cpu_open(be, (int)o->threads, bf16 ? "bf16" : "fp32")) != CT_OK)
            return s;
    }
    *precision = ct_backend_precision(be);
    return CT_OK;
}

size_t bench_device_memory(const ct_backend *be) {
    if (strcmp(be->ops->name, "cuda") != 0) return 0;
    size_t used = 0, total = 0;
    if (ct_cuda_memory_used(0, &used, &total) != CT_OK) return 0;
    return used;
}

/* --input in the headers' words. */
static const char *input_words(const bench_opts *o) {
    return strcmp(o->input, "device") == 0 ? "on the device (one batch)"
                                           : "copied from pageable host memory each step";
}

/* What one configuration measured. */
typedef struct bench_result {
    double median_s;   /* median step time over the timed steps */
    double flop_img;   /* training FLOP per image at the configuration's freezing */
    size_t mem_bytes;  /* device memory the configuration added (CUDA), 0 on the CPU */
} bench_result;


/* The per-layer table of --profile: for each layer that ran, the median over the timed steps
 * of its forward and backward milliseconds, the work of the batch, the rate achieved and the
 * share of the summed layer time; then the sum, which the step time exceeds by what runs
 * between layers (the loss, the update, copies). */
static ct_status print_profile(ct_model *m, int n, double *pf, double *pb, double step_ms,
                               const bench_opts *o) {
    const int nl = ct_model_num_layers(m);
    const size_t steps = (size_t)o->steps;
    double *col = malloc(steps * sizeof *col), *mf = malloc(nl * sizeof *mf),
           *mb = malloc(nl * sizeof *mb);
    if (col == NULL || mf == NULL || mb == NULL) {
        free(col);
        free(mf);
        free(mb);
        return ct_error(CT_ENOMEM, "out of memory for the profile");
    }
    double total = 0.0;
    for (int i = 0; i < nl; i++) {
        for (size_t t = 0; t < steps; t++) col[t] = pf[t * nl + i];
        mf[i] = bench_median(col, steps);
        for (size_t t = 0; t < steps; t++) col[t] = pb[t * nl + i];
        mb[i] = bench_median(col, steps);
        total += (mf[i] > 0 ? mf[i] : 0) + (mb[i] > 0 ? mb[i] : 0);
    }
    printf("\n| layer | forward ms | backward ms | GFLOP fwd+bwd | TFLOP/s | share |\n");
    printf("|---|---|---|---|---|---|\n");
    for (int i = 0; i < nl; i++) {
        double f = 0.0, b = 0.0;
        ct_model_layer_flops(m, i, &f, &b);
        const double ms = (mf[i] > 0 ? mf[i] : 0) + (mb[i] > 0 ? mb[i] : 0);
        const double gflop = (f + (mb[i] >= 0 ? b : 0)) * n * 1e-9;
        char fwd[32], bwd[32], rate[32];
        snprintf(fwd, sizeof fwd, mf[i] >= 0 ? "%.3f" : "-", mf[i]);
        snprintf(bwd, sizeof bwd, mb[i] >= 0 ? "%.3f" : "-", mb[i]);
        snprintf(rate, sizeof rate, gflop > 0 && ms > 0 ? "%.3g" : "-", gflop / ms);
        printf("| %s | %s | %s | %.2f | %s | %.1f%% |\n", ct_model_layer(m, i)->name, fwd, bwd,
               gflop, rate, total > 0 ? 100.0 * ms / total : 0.0);
    }
    printf("| (layers) | | | | | %.3f ms |\n\n", total);
    /* What the layers do not account for: the input copy, the loss, the optimizer update, and
     * any time the device waited for the host (what CUDA graphs could recover). */
    printf("median step %.3f ms, of which %.3f ms outside the layers (input copy, loss, update, "
           "waits for the host)\n\n", step_ms, step_ms > total ? step_ms - total : 0.0);
    free(col);
    free(mf);
    free(mb);
    return CT_OK;
}

/* One configuration's model and its step's host buffers. */
typedef struct synth_run {
    ct_model *m;
    int n;                         /* batch */
    bool aux;                      /* the head takes the auxiliary input */
    float *x, *aux_x, *labels;     /* (n, H, W, 3), (n), (n, outputs) */
    double *times;                 /* (steps + warm-up) seconds */
    double *prof_f, *prof_b;       /* (steps, layers) ms, with --profile */
} synth_run;

static void synth_free(synth_run *r) {
    free(r->prof_b);
    free(r->prof_f);
    free(r->times);
    free(r->labels);
    free(r->aux_x);
    free(r->x);
    ct_model_free(r->m);
}

/* The model (frozen from the start: the memory column is what this configuration needs, and a
 * batch that fits only frozen is measured rather than refused), compiled with SGD + Nesterov,
 * and the buffers of its steps. */
static ct_status synth_open(const bench_opts *o, ct_backend *be, const char *freeze_to,
                            int batch, synth_run *r) {
    r->n = batch;
    r->aux = strstr(o->head, "aux") != NULL || strcmp(o->head, "iceberg") == 0;
    ct_model_config cfg = {.backbone = o->backbone, .input_h = (int)o->size,
                           .input_w = (int)o->size, .input_c = 3, .aux_dim = r->aux ? 1 : 0,
                           .max_batch = batch, .head = o->head, .seed = (uint64_t)o->seed,
                           .freeze_to = freeze_to};
    ct_status s = ct_model_init(&r->m, &cfg, be);
    if (s != CT_OK) return s;
    if (o->profile) {
        const size_t cells = (size_t)o->steps * ct_model_num_layers(r->m);
        r->prof_f = malloc(cells * sizeof *r->prof_f);
        r->prof_b = malloc(cells * sizeof *r->prof_b);
        if (r->prof_f == NULL || r->prof_b == NULL)
            return ct_error(CT_ENOMEM, "out of memory for the profile");
        if ((s = ct_model_set_profile(r->m, true)) != CT_OK) return s;
    }
    ct_optimizer_config opt;
    ct_optimizer_defaults(&opt, CT_OPT_SGD);
    opt.lr = 1e-3f;
    opt.momentum = 0.9f;
    opt.nesterov = true;
    if ((s = ct_model_compile(r->m, &opt)) != CT_OK) return s;
    const size_t per = (size_t)o->size * o->size * 3;
    r->x = malloc((size_t)batch * per * sizeof *r->x);
    r->aux_x = malloc((size_t)batch * sizeof *r->aux_x);
    r->labels = malloc((size_t)batch * ct_model_num_outputs(r->m) * sizeof *r->labels);
    r->times = malloc((size_t)(o->steps + o->warmup) * sizeof *r->times);
    if (r->x == NULL || r->aux_x == NULL || r->labels == NULL || r->times == NULL)
        return ct_error(CT_ENOMEM, "cannot allocate a batch of %d images of %ldx%ld", batch,
                        o->size, o->size);
    return CT_OK;
}

static void print_model(const bench_opts *o, const ct_backend *be, const char *precision,
                        ct_model *m, int n) {
    size_t n_train = 0, n_params = ct_model_num_params(m, &n_train);
    ct_model_memory mem;
    ct_model_memory_get(m, &mem);
    double f_fwd, f_train;
    ct_model_flops(m, &f_fwd, &f_train);
    const ct_layer *ft = ct_model_layer(m, ct_model_first_trainable(m));
    printf("cutune bench: %s %ldx%ld, head '%s', batch %d, backend %s, precision %s, "
           "input %s\n", ct_model_backbone(m)->keras_name, o->size, o->size,
           ct_model_head_spec(m), n, be->ops->name, precision, input_words(o));
    printf("parameters %zu (trainable %zu), lowest trainable layer %s\n", n_params, n_train,
           ft != NULL ? ft->name : "(none)");
    printf("work: %.2f GFLOP/img forward, %.2f GFLOP/img per training step\n", f_fwd * 1e-9,
           f_train * 1e-9);
}

/* The model's arenas and, after the steps, the backend's workspaces. The CPU backend's only grow
 * (its im2col buffer, oneDNN's scratchpad, the kernels' reordered copies, max pooling's
 * winners), so after the steps they are the run's peak; the CUDA backend's show in its device
 * memory line. */
static void print_memory(const ct_backend *be, ct_model *m) {
    ct_model_memory mem;
    ct_model_memory_get(m, &mem);
    const size_t ws = strcmp(be->ops->name, "cpu") == 0 ? ct_cpu_scratch_bytes(be->ctx) : 0;
    const size_t total = mem.params + mem.grads + mem.optimizer + mem.activations + ws;
    printf("memory: params %.1f MiB, grads %.1f MiB, optimizer %.1f MiB, activations %.1f "
           "MiB, workspaces %.1f MiB: %.1f MiB\n",
           mem.params / 1048576.0, mem.grads / 1048576.0, mem.optimizer / 1048576.0,
           mem.activations / 1048576.0, ws / 1048576.0, total / 1048576.0);
}

/* The warm-up and timed steps. --input device: one batch, copied into the model's input before
 * the timing; each step trains on it. --input host: each step copies a new batch from pageable
 * host memory. */
static ct_status time_steps(const bench_opts *o, ct_backend *be, synth_run *r, bool verbose,
                            bench_dist *d) {
    const long total = o->steps + o->warmup;
    const int n = r->n;
    const bool resident = strcmp(o->input, "device") == 0;
    ct_status s = CT_OK;
    if (resident) {
        ct_model_synthetic_batch(r->m, n, 0, (uint64_t)o->seed, r->x, r->aux_x, r->labels);
        if ((s = ct_model_set_input(r->m, r->x, r->aux ? r->aux_x : NULL, n)) != CT_OK ||
            (s = be->ops->synchronize(be->ctx)) != CT_OK)
            return s;
    }
    for (long step = 0; step < total; step++) {
        if (!resident)
            ct_model_synthetic_batch(r->m, n, (uint32_t)step, (uint64_t)o->seed, r->x, r->aux_x,
                                     r->labels);
        float loss = 0.0f;
        double t0 = bench_now();
        bench_dist_step_begin(d, step);
        if ((s = resident ? ct_model_forward(r->m, n, true, (uint32_t)step)
                          : ct_model_forward_host(r->m, r->x, r->aux ? r->aux_x : NULL, n, true,
                                                  (uint32_t)step)) != CT_OK ||
            (s = ct_model_loss(r->m, r->labels, NULL, &loss)) != CT_OK ||
            (s = ct_model_backward(r->m)) != CT_OK || (s = bench_dist_step_end(d)) != CT_OK ||
            (s = ct_model_apply_gradients(r->m, 1.0f)) != CT_OK ||
            (s = be->ops->synchronize(be->ctx)) != CT_OK)
            return s;
        r->times[step] = bench_now() - t0;
        if (o->profile && step >= o->warmup) {
            const size_t row = (size_t)(step - o->warmup) * ct_model_num_layers(r->m);
            if ((s = ct_model_profile(r->m, r->prof_f + row, r->prof_b + row)) != CT_OK) return s;
        }
        if (verbose) {
            printf("step %ld/%ld%s: loss %.4f, %.3f s, %.1f img/s\n", step + 1, total,
                   step < o->warmup ? " (warm-up)" : "", loss, r->times[step], n / r->times[step]);
            fflush(stdout);
        }
    }
    return CT_OK;
}

/* Builds the model for one configuration on `be`, runs warm-up and timed steps and fills `res`.
 * With `verbose`, prints the model and every step as the single-configuration mode does. */
static ct_status bench_config(const bench_opts *o, ct_backend *be, const char *precision,
                              const char *freeze_to, int batch, bool verbose, bench_result *res,
                              bench_dist *d) {
    synth_run r;
    memset(&r, 0, sizeof r);
    const size_t mem0 = bench_device_memory(be);
    ct_status s = synth_open(o, be, freeze_to, batch, &r);
    if (s == CT_OK) s = bench_dist_plan(d, r.m);
    if (s == CT_OK && verbose) print_model(o, be, precision, r.m, batch);
    if (s == CT_OK) s = time_steps(o, be, &r, verbose, d);
    if (s == CT_OK) {
        double f_fwd;
        ct_model_flops(r.m, &f_fwd, &res->flop_img);
        res->median_s = bench_median(r.times + o->warmup, (size_t)o->steps);
        s = bench_dist_report(d, res->median_s, batch);
        if (s == CT_OK && o->profile)
            s = print_profile(r.m, batch, r.prof_f, r.prof_b, res->median_s * 1e3, o);
    }
    if (s == CT_OK) {
        /* The arenas and the workspace only grow, so what is held now is the run's peak. */
        size_t mem1 = bench_device_memory(be);
        res->mem_bytes = mem1 > mem0 ? mem1 - mem0 : 0;
    }
    if (s == CT_OK && verbose) {
        print_memory(be, r.m);
        printf("median step %.3f s: %.1f img/s, %.1f GFLOP/s achieved\n", res->median_s,
               batch / res->median_s, res->flop_img * batch / res->median_s * 1e-9);
        if (strcmp(be->ops->name, "cuda") == 0)
            printf("device memory: %.2f GiB for this model (arenas, workspace, library pools)\n",
                   res->mem_bytes / 1073741824.0);
    }
    synth_free(&r);
    return s;
}

static int run_bench(const char *cmd, const bench_opts *o) {
    ct_backend be = {0};
    const char *precision = NULL;
    bench_dist d;
    ct_status s = bench_dist_start(&d);
    if (s == CT_OK) s = bench_backend(cmd, o, &be, &precision, d.w.local_rank);
    if (s == CT_OK) s = bench_dist_connect(&d, &be);
    bench_result r;
    if (s == CT_OK)
        s = bench_config(o, &be, precision, o->freeze_to, (int)o->batch, !bench_dist_quiet(&d),
                         &r, &d);
    bench_dist_close(&d, s == CT_OK);
    ct_backend_free(&be);
    return s == CT_OK ? 0 : cli_fail(cmd, s);
}

/* ---- the sweep ----------------------------------------------------------------------------- */

/* A freeze depth of the sweep: "none", "1", "1-2", "1-3", "1-4", "all", or any layer name. */
static const char *depth_layer(const char *depth) {
    static const struct {
        const char *depth, *layer;
    } names[] = {{"none", NULL},          {"1", "block1_pool"},   {"1-2", "block2_pool"},
                 {"1-3", "block3_pool"},  {"1-4", "block4_pool"}, {"1-5", "block5_pool"},
                 {"all", "block5_pool"}};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strcmp(depth, names[i].depth) == 0) return names[i].layer;
    return depth;
}

/* Splits a comma-separated list in place into at most MAX_SWEEP items. */
static int split_list(const char *cmd, const char *flag, char *text, char **items) {
    int n = 0;
    for (char *save = NULL, *t = strtok_r(text, ",", &save); t != NULL;
         t = strtok_r(NULL, ",", &save)) {
        if (n == MAX_SWEEP) {
            fprintf(stderr, "cutune %s: --%s: at most %d entries\n", cmd, flag, MAX_SWEEP);
            return -1;
        }
        items[n++] = t;
    }
    if (n == 0) fprintf(stderr, "cutune %s: --%s: the list is empty\n", cmd, flag);
    return n > 0 ? n : -1;
}

static int run_sweep(const char *cmd, const bench_opts *o) {
    char freeze_text[512], batch_text[512];
    snprintf(freeze_text, sizeof freeze_text, "%s", o->sweep_freeze);
    snprintf(batch_text, sizeof batch_text, "%s", o->sweep_batch);
    char *depths[MAX_SWEEP], *batch_items[MAX_SWEEP];
    long batches[MAX_SWEEP];
    int n_depths = split_list(cmd, "sweep-freeze", freeze_text, depths);
    int n_batches = split_list(cmd, "sweep-batch", batch_text, batch_items);
    if (n_depths < 0 || n_batches < 0) return CLI_EXIT_USAGE;
    for (int i = 0; i < n_batches; i++)
        if (!cli_int(cmd, "sweep-batch", batch_items[i], 1, 65536, &batches[i]))
            return CLI_EXIT_USAGE;

    /* Rows are collected first and printed together, so the table stays in one piece
     * whatever the progress lines on stderr look like. */
    char table[MAX_SWEEP * MAX_SWEEP][160];
    int rows = 0;
    const char *precision = "?", *backend_name = "?";
    char device_name[256] = "";
    ct_device_info info;
    int count = 0;
    for (int d = 0; d < n_depths; d++)
        for (int b = 0; b < n_batches; b++) {
            ct_backend be = {0};
            ct_status s = bench_backend(cmd, o, &be, &precision, 0);
            if (s != CT_OK) return cli_fail(cmd, s);
            backend_name = be.ops->name;
            if (device_name[0] == '\0')
                snprintf(device_name, sizeof device_name, "%s",
                         strcmp(backend_name, "cuda") == 0 &&
                                 ct_cuda_devices(&info, 1, &count) == CT_OK
                             ? info.name
                             : "CPU");
            bench_result r = {0};
            s = bench_config(o, &be, precision, depth_layer(depths[d]), (int)batches[b], false,
                             &r, NULL);
            ct_backend_free(&be);
            char *row = table[rows++];
            if (s == CT_EDEVMEM || s == CT_ENOMEM) {
                fprintf(stderr, "cutune %s: frozen %s, batch %ld: %s\n", cmd, depths[d],
                        batches[b], ct_last_error());
                snprintf(row, sizeof table[0], "| cutune | %s | %s | %ld | OOM | - | - | - |",
                         precision, depths[d], batches[b]);
                continue;
            }
            if (s != CT_OK) return cli_fail(cmd, s);
            const double ips = (double)batches[b] / r.median_s;
            char mem[32] = "-";
            if (strcmp(backend_name, "cuda") == 0)
                snprintf(mem, sizeof mem, "%.2f", r.mem_bytes / 1073741824.0);
            const double tflops = r.flop_img * ips * 1e-12;
            snprintf(row, sizeof table[0], "| cutune | %s | %s | %ld | %.1f | %.*f | %.1f | %s |",
                     precision, depths[d], batches[b], ips, tflops < 10.0 ? 3 : 1, tflops,
                     r.median_s * 1e3, mem);
            fprintf(stderr, "cutune %s: frozen %s, batch %ld: %.1f img/s\n", cmd, depths[d],
                    batches[b], ips);
        }
    printf("\n### cutune bench --sweep: %s (%s), %s %ldx%ld, head '%s', %ld timed steps "
           "after %ld warm-up, input %s\n\n",
           device_name, backend_name, o->backbone != NULL ? o->backbone : "vgg16", o->size,
           o->size, o->head, o->steps, o->warmup, input_words(o));
    printf("| impl | precision | frozen | batch | img/s | TFLOP/s | ms/step | device GiB |\n");
    printf("|---|---|---|---|---|---|---|---|\n");
    for (int i = 0; i < rows; i++) printf("%s\n", table[i]);
    fflush(stdout);
    return 0;
}

/* ---- flags ------------------------------------------------------------------------------- */

static const char bench_usage[] =
    "usage: cutune bench [--device cpu|cuda|auto] [--backbone vgg16|vgg19] [--input-size N]\n"
    "                    [--batch-size N]\n"
    "                    [--steps N] [--warmup N] [--head SPEC] [--freeze-to LAYER]\n"
    "                    [--seed N] [--threads N] [--precision fp32|tf32|bf16]\n"
    "                    [--sweep [--sweep-freeze LIST] [--sweep-batch LIST]]\n"
    "                    [--data DIR [--augment-on loader|device] [--augment keras|none]\n"
    "                     [--workers N] [--no-cache]] [--profile]\n"
    "                    [--input device|host] [--gpus N|LIST]\n"
    "\n"
    "Times the backbone's forward + backward + SGD update on generated data and prints the\n"
    "loss and img/s of each step, then the median. Defaults: --device auto --backbone vgg16\n"
    "--input-size 64 --batch-size 8 --steps 5 --warmup 1 --head mri --seed 1.\n"
    "\n"
    "--precision  the CUDA backend's arithmetic: tf32 (its default), fp32, or bf16 (mixed\n"
    "             precision: the backbone's activations in bf16 on bf16 tensor cores,\n"
    "             float32 weights, gradients and head). The CPU backend computes in fp32\n"
    "             and emulates bf16 (slowly) when asked.\n"
    "--sweep      every freeze depth of --sweep-freeze (default none,1-2,1-3,1-4,all; also 1,\n"
    "             or a layer name) times every batch size of --sweep-batch (default\n"
    "             32,64,128,256), each on a fresh backend, then one markdown table: img/s,\n"
    "             achieved TFLOP/s, ms per step, device memory. Defaults here: --input-size 224\n"
    "             --steps 10 --warmup 3.\n"
    "--data DIR   times real images instead: class folders (or an iceberg JSON file) through\n"
    "             the threaded loader (--workers, default 4; decoded images cached unless\n"
    "             --no-cache) with Keras-style augmentation (rotation 20, shifts 0.1, shear\n"
    "             10, zoom 0.2, horizontal flip; --augment none to turn it off), done by the\n"
    "             loader's threads on the CPU (--augment-on loader) or by the backend's\n"
    "             augment op after copying the raw batch (--augment-on device, the default on\n"
    "             cuda). Reports step time, fetch time and img/s.\n"
    "--profile    also times every layer's forward and backward (CUDA events, or the clock\n"
    "             on the CPU) and prints a table per layer: median ms over the timed steps,\n"
    "             GFLOP per batch, achieved TFLOP/s and the share of the step.\n"
    "--input      where generated batches come from: device (default; one batch is copied\n"
    "             into the model's input before timing, as synthetic benchmarks do, so steps\n"
    "             time the training work; --data times the input pipeline) or host (each step\n"
    "             copies a new batch from pageable host memory first).\n"
    "--gpus       one bench rank per GPU of this machine: a count (2) or devices (0,2,5);\n"
    "             CUDA builds only.\n";

static int parse_bench(const char *cmd, int argc, char **argv, bench_opts *o) {
    const char *size = NULL, *batch = NULL, *steps = NULL, *warmup = NULL, *seed = NULL,
               *threads = NULL, *workers = NULL, *sweep = NULL, *no_cache = NULL,
               *profile = NULL;
    cli_flag flags[] = {
        {"device", true, &o->device},
        {"backbone", true, &o->backbone},
        {"input-size", true, &size},
        {"batch-size", true, &batch},
        {"steps", true, &steps},
        {"warmup", true, &warmup},
        {"head", true, &o->head},
        {"freeze-to", true, &o->freeze_to},
        {"seed", true, &seed},
        {"threads", true, &threads},
        {"precision", true, &o->precision},
        {"sweep", false, &sweep},
        {"sweep-freeze", true, &o->sweep_freeze},
        {"sweep-batch", true, &o->sweep_batch},
        {"data", true, &o->data},
        {"augment-on", true, &o->augment_on},
        {"augment", true, &o->augment},
        {"workers", true, &workers},
        {"no-cache", false, &no_cache},
        {"profile", false, &profile},
        {"input", true, &o->input},
    };
    if (!cli_parse(cmd, argc, argv, flags, (int)(sizeof flags / sizeof flags[0]))) return 0;
    o->sweep = sweep != NULL;
    o->no_cache = no_cache != NULL;
    o->profile = profile != NULL;
    if (o->profile && (o->sweep || o->data != NULL)) {
        fprintf(stderr, "cutune %s: --profile times the layers of one configuration: not with "
                        "--sweep or --data\n", cmd);
        return 0;
    }
    if (o->sweep) { /* the GPU benchmark's defaults */
        o->size = 224;
        o->steps = 10;
        o->warmup = 3;
    }
    if (size != NULL && !cli_int(cmd, "input-size", size, 1, CT_MAX_INPUT, &o->size)) return 0;
    if (batch != NULL && !cli_int(cmd, "batch-size", batch, 1, 65536, &o->batch)) return 0;
    if (steps != NULL && !cli_int(cmd, "steps", steps, 1, 1000000, &o->steps)) return 0;
    if (warmup != NULL && !cli_int(cmd, "warmup", warmup, 0, 1000000, &o->warmup)) return 0;
    if (seed != NULL && !cli_int(cmd, "seed", seed, 0, 0x7fffffffL, &o->seed)) return 0;
    if (threads != NULL && !cli_int(cmd, "threads", threads, 1, 1024, &o->threads)) return 0;
    if (workers != NULL && !cli_int(cmd, "workers", workers, 1, 256, &o->workers)) return 0;
    if (o->sweep && o->data != NULL) {
        fprintf(stderr, "cutune %s: --sweep and --data are separate benchmarks; give one\n", cmd);
        return 0;
    }
    if (o->sweep && (o->freeze_to != NULL || batch != NULL)) {
        fprintf(stderr,
                "cutune %s: --sweep takes its freeze depths and batch sizes from "
                "--sweep-freeze and --sweep-batch, not --freeze-to and --batch-size\n",
                cmd);
        return 0;
    }
    if (o->augment_on != NULL && strcmp(o->augment_on, "loader") != 0 &&
        strcmp(o->augment_on, "device") != 0) {
        fprintf(stderr, "cutune %s: --augment-on: expected loader or device, not '%s'\n", cmd,
                o->augment_on);
        return 0;
    }
    if (o->augment != NULL && strcmp(o->augment, "keras") != 0 &&
        strcmp(o->augment, "none") != 0) {
        fprintf(stderr, "cutune %s: --augment: expected keras or none, not '%s'\n", cmd,
                o->augment);
        return 0;
    }
    if (o->input != NULL && o->data != NULL) {
        fprintf(stderr, "cutune %s: --input is for generated batches; --data streams its own\n",
                cmd);
        return 0;
    }
    if (o->input == NULL) o->input = "device";
    if (strcmp(o->input, "device") != 0 && strcmp(o->input, "host") != 0) {
        fprintf(stderr, "cutune %s: --input: expected device or host, not '%s'\n", cmd,
                o->input);
        return 0;
    }
    if (o->data == NULL && (o->augment_on != NULL || o->augment != NULL || workers != NULL ||
                            o->no_cache)) {
        fprintf(stderr, "cutune %s: --augment-on, --augment, --workers and --no-cache go with "
                        "--data\n",
                cmd);
        return 0;
    }
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
                    .warmup = 1, .seed = 1, .workers = 4,
                    .sweep_freeze = "none,1-2,1-3,1-4,all", .sweep_batch = "32,64,128,256"};
    if (!parse_bench("bench", argc, argv, &o)) return CLI_EXIT_USAGE;
    if (o.sweep) return run_sweep("bench", &o);
    if (o.data != NULL) return bench_data("bench", &o);
    return run_bench("bench", &o);
}
