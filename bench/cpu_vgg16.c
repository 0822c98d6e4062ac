/* bench_cpu_vgg16: times VGG16 on the CPU backend over the public API.
 *
 * For each input size, batch size and freeze depth it times inference (forward with training
 * off) and a training step without the optimizer (forward with training on, loss, backward; the
 * SGD update too with --update) on generated data, and prints a markdown table row for each:
 * median and minimum time per batch, img/s, the work per image that ct_model_flops counts for
 * the current trainable flags, the rate achieved, the reference cost from
 * published VGG16 table at 224x224, and the bytes held in the model's arenas. It
 * asserts nothing about time; it is for reading, and for comparing cutune's counted FLOPs with
 * the reference table. */
#define _POSIX_C_SOURCE 200809L /* clock_gettime, sysconf */

#include <cblas.h>
#include <errno.h>
#include <omp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/backend.h"
#include "cpu/cpu.h"
#include "model/model.h"
#include "model/optim.h"
#include "cutune/status.h"

#define EXIT_USAGE 2
#define MAX_LIST 16

/* A freeze depth: the flag's spelling, the layer ct_model_freeze_to takes, and the training
 * cost per image at 224x224 from performance.md (forward + weight and data gradients of the
 * trainable layers, no data gradient for the first layer). */
typedef struct freeze_depth {
    const char *label;     /* "none", "1-2", ... */
    const char *freeze_to; /* "" or "blockN_pool" */
    double ref_train;      /* GFLOP/img at 224 */
} freeze_depth;

static const freeze_depth k_depths[] = {
    {"none", "", 91.9},          {"1", "block1_pool", 82.5},   {"1-2", "block2_pool", 71.4},
    {"1-3", "block3_pool", 52.9}, {"1-4", "block4_pool", 35.3}, {"all", "block5_pool", 30.7},
};
#define N_DEPTHS ((int)(sizeof k_depths / sizeof k_depths[0]))
#define REF_FORWARD 30.69 /* backbone forward, GFLOP/img at 224 */
#define REF_SIZE 224

typedef struct bench_opts {
    long sizes[MAX_LIST];
    int n_sizes;
    long batches[MAX_LIST]; /* used for every size when given; else per-size defaults */
    int n_batches;
    int depths[MAX_LIST];   /* indices into k_depths */
    int n_depths;
    long reps, threads, seed;
    const char *head;
    bool update;
} bench_opts;

static const char usage[] =
    "usage: bench_cpu_vgg16 [--sizes LIST] [--batches LIST] [--freeze LIST] [--reps N]\n"
    "                       [--threads N] [--head SPEC] [--seed N] [--update] [--quick]\n"
    "\n"
    "Times VGG16 inference and training steps (forward + loss + backward; --update adds the\n"
    "SGD update) on the CPU backend with generated data, and prints a markdown table.\n"
    "\n"
    "  --sizes LIST    input sizes (default 64,224)\n"
    "  --batches LIST  batch sizes for every size (default 1,4,8 up to 128x128, 1,2 above)\n"
    "  --freeze LIST   frozen blocks: none,1,1-2,1-3,1-4,all (default none,1-2,1-3,1-4,all)\n"
    "  --reps N        timed repetitions after one warm-up run (default 3)\n"
    "  --threads N     OpenBLAS and OpenMP threads (default: the libraries' defaults)\n"
    "  --head SPEC     head spec or preset (default mri)\n"
    "  --seed N        seed of the weights and the data (default 1)\n"
    "  --update        include the optimizer update (SGD, momentum 0.9) in the training step\n"
    "  --quick         64 only, batch 4, freeze none and 1-4, 2 reps (explicit flags win)\n";

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* ---- flags ---- */

static bool parse_long(const char *flag, const char *s, long lo, long hi, long *out) {
    char *end = NULL;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi) {
        fprintf(stderr, "bench_cpu_vgg16: %s: expected a whole number from %ld to %ld, not '%s'\n",
                flag, lo, hi, s);
        return false;
    }
    *out = v;
    return true;
}

/* Splits a comma-separated list of whole numbers. */
static bool parse_long_list(const char *flag, const char *s, long lo, long hi, long *out,
                            int *n) {
    char buf[256];
    if (strlen(s) >= sizeof buf) {
        fprintf(stderr, "bench_cpu_vgg16: %s: list too long\n", flag);
        return false;
    }
    strcpy(buf, s);
    *n = 0;
    for (char *tok = strtok(buf, ","); tok != NULL; tok = strtok(NULL, ",")) {
        if (*n == MAX_LIST) {
            fprintf(stderr, "bench_cpu_vgg16: %s: at most %d values\n", flag, MAX_LIST);
            return false;
        }
        if (!parse_long(flag, tok, lo, hi, &out[(*n)++])) return false;
    }
    if (*n == 0) {
        fprintf(stderr, "bench_cpu_vgg16: %s: empty list\n", flag);
        return false;
    }
    return true;
}

static bool parse_depths(const char *s, int *out, int *n) {
    char buf[256];
    if (strlen(s) >= sizeof buf) {
        fprintf(stderr, "bench_cpu_vgg16: --freeze: list too long\n");
        return false;
    }
    strcpy(buf, s);
    *n = 0;
    for (char *tok = strtok(buf, ","); tok != NULL; tok = strtok(NULL, ",")) {
        int found = -1;
        for (int d = 0; d < N_DEPTHS; d++)
            if (strcmp(tok, k_depths[d].label) == 0) found = d;
        if (found < 0) {
            fprintf(stderr,
                    "bench_cpu_vgg16: --freeze: unknown depth '%s' (none, 1, 1-2, 1-3, 1-4, "
                    "all)\n",
                    tok);
            return false;
        }
        if (*n == MAX_LIST) {
            fprintf(stderr, "bench_cpu_vgg16: --freeze: at most %d values\n", MAX_LIST);
            return false;
        }
        out[(*n)++] = found;
    }
    if (*n == 0) {
        fprintf(stderr, "bench_cpu_vgg16: --freeze: empty list\n");
        return false;
    }
    return true;
}

/* Returns 0 to run, 1 after --help, EXIT_USAGE on a bad command line. */
static int parse_args(int argc, char **argv, bench_opts *o) {
    const char *sizes = NULL, *batches = NULL, *freeze = NULL, *reps = NULL, *threads = NULL,
               *seed = NULL;
    bool quick = false;
    o->head = "mri";
    o->update = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char **slot = NULL;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            fputs(usage, stdout);
            return 1;
        } else if (strcmp(a, "--quick") == 0) {
            quick = true;
            continue;
        } else if (strcmp(a, "--update") == 0) {
            o->update = true;
            continue;

        } else if (strcmp(a, "--sizes") == 0) {
            slot = &sizes;
        } else if (strcmp(a, "--batches") == 0) {
            slot = &batches;
        } else if (strcmp(a, "--freeze") == 0) {
            slot = &freeze;
        } else if (strcmp(a, "--reps") == 0) {
            slot = &reps;
        } else if (strcmp(a, "--threads") == 0) {
            slot = &threads;
        } else if (strcmp(a, "--head") == 0) {
            slot = &o->head;
        } else if (strcmp(a, "--seed") == 0) {
            slot = &seed;
        } else {
            fprintf(stderr, "bench_cpu_vgg16: unknown argument '%s'\n\n%s", a, usage);
            return EXIT_USAGE;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "bench_cpu_vgg16: %s needs a value\n", a);
            return EXIT_USAGE;
        }
        *slot = argv[++i];
    }

    if (sizes == NULL) sizes = quick ? "64" : "64,224";
    if (batches == NULL && quick) batches = "4";
    if (freeze == NULL) freeze = quick ? "none,1-4" : "none,1-2,1-3,1-4,all";
    if (reps == NULL) reps = quick ? "2" : "3";
    if (!parse_long_list("--sizes", sizes, CT_MIN_INPUT, 4096, o->sizes, &o->n_sizes) ||
        (batches != NULL &&
         !parse_long_list("--batches", batches, 1, 65536, o->batches, &o->n_batches)) ||
        !parse_depths(freeze, o->depths, &o->n_depths) ||
        !parse_long("--reps", reps, 1, 1000, &o->reps) ||
        (threads != NULL && !parse_long("--threads", threads, 1, 1024, &o->threads)) ||
        (seed != NULL && !parse_long("--seed", seed, 0, 0x7fffffffL, &o->seed)))
        return EXIT_USAGE;
    if (batches == NULL) o->n_batches = 0;
    if (threads == NULL) o->threads = 0;
    if (seed == NULL) o->seed = 1;
    return 0;
}

/* The batch sizes for one input size: the flag's, or a default small enough that the whole
 * default run finishes in minutes on two cores. */
static int batches_for(const bench_opts *o, long size, long *out) {
    if (o->n_batches > 0) {
        memcpy(out, o->batches, (size_t)o->n_batches * sizeof *out);
        return o->n_batches;
    }
    static const long small[] = {1, 4, 8}, large[] = {1, 2};
    const long *src = size <= 128 ? small : large;
    int n = size <= 128 ? 3 : 2;
    memcpy(out, src, (size_t)n * sizeof *out);
    return n;
}

/* ---- timing ---- */

typedef struct run_ctx {
    ct_model *m;
    ct_backend *be;
    const float *labels; /* (n, outputs), host */
    int n;
    bool training, update;
    uint32_t step;
} run_ctx;

static ct_status run_once(run_ctx *r) {
    ct_status s;
    if ((s = ct_model_forward(r->m, r->n, r->training, r->step++)) != CT_OK) return s;
    if (r->training) {
        float loss = 0.0f;
        if ((s = ct_model_loss(r->m, r->labels, NULL, &loss)) != CT_OK ||
            (s = ct_model_backward(r->m)) != CT_OK)
            return s;
        if (r->update && (s = ct_model_apply_gradients(r->m, 1.0f)) != CT_OK) return s;
    }
    return r->be->ops->synchronize(r->be->ctx);
}

/* One warm-up run, then `reps` timed ones: median and minimum seconds. */
static ct_status time_runs(run_ctx *r, double *times, long reps, double *median, double *min) {
    ct_status s = run_once(r);
    if (s != CT_OK) return s;
    for (long i = 0; i < reps; i++) {
        double t0 = now_seconds();
        if ((s = run_once(r)) != CT_OK) return s;
        times[i] = now_seconds() - t0;
    }
    qsort(times, (size_t)reps, sizeof *times, cmp_double);
    *min = times[0];
    *median = reps % 2 ? times[reps / 2] : 0.5 * (times[reps / 2 - 1] + times[reps / 2]);
    return CT_OK;
}

static void print_row(long size, int n, const char *frozen, const char *pass, double median,
                      double min, double gflop_img, double ref, double mib) {
    char refs[32] = "-";
    if (size == REF_SIZE) snprintf(refs, sizeof refs, "%.2f", ref);
    printf("| %ld | %d | %s | %s | %.1f | %.1f | %.2f | %.3f | %.1f | %s | %.1f |\n", size, n,
           frozen, pass, median * 1e3, min * 1e3, n / median, gflop_img, gflop_img * n / median,
           refs, mib);
    fflush(stdout);
}

/* All freeze depths for one (size, batch): a model sized for exactly this batch, so the memory
 * column is what such a run would hold. */
static ct_status bench_config(ct_backend *be, const bench_opts *o, long size, int n,
                              double *times) {
    const bool aux = strstr(o->head, "aux") != NULL || strcmp(o->head, "iceberg") == 0;
    ct_model_config cfg = {.input_h = (int)size, .input_w = (int)size, .input_c = 3,
                           .aux_dim = aux ? 1 : 0, .max_batch = n, .head = o->head,
                           .seed = (uint64_t)o->seed};
    ct_model *m = NULL;
    float *x = NULL, *xa = NULL, *labels = NULL;
    ct_status s = ct_model_init(&m, &cfg, be);
    if (s != CT_OK) return s;
    const int k = ct_model_num_outputs(m);
    const size_t per = (size_t)size * size * 3;
    x = malloc((size_t)n * per * sizeof *x);
    xa = malloc((size_t)n * sizeof *xa); /* (n, 1) auxiliary scalars, used by aux heads */
    labels = malloc((size_t)n * k * sizeof *labels);
    if (x == NULL || xa == NULL || labels == NULL) {
        s = ct_error(CT_ENOMEM, "cannot allocate a batch of %d images of %ldx%ld", n, size, size);
        goto done;
    }
    /* The inputs are written once: the timed runs measure the model, not the copy in. */
    ct_model_synthetic_batch(m, n, (uint32_t)ct_model_get_config(m)->input_h,
                             (uint64_t)o->seed, x, xa, labels);
    if ((s = be->ops->copy_to_device(be->ctx, ct_model_input(m), x, (size_t)n * per * sizeof *x)) !=
        CT_OK)
        goto done;
    if (aux && (s = be->ops->copy_to_device(be->ctx, ct_model_aux_input(m), xa,
                                            (size_t)n * sizeof *xa)) != CT_OK)
        goto done;

    for (int d = 0; d < o->n_depths; d++) {
        const freeze_depth *fd = &k_depths[o->depths[d]];
        if ((s = ct_model_freeze_to(m, fd->freeze_to)) != CT_OK) goto done;
        if (o->update) {
            ct_optimizer_config opt;
            ct_optimizer_defaults(&opt, CT_OPT_SGD);
            opt.lr = 1e-3f;
            opt.momentum = 0.9f;
            if ((s = ct_model_compile(m, &opt)) != CT_OK) goto done;
        }
        double f_fwd, f_train, median, min;
        ct_model_flops(m, &f_fwd, &f_train);
        ct_model_memory mem;
        ct_model_memory_get(m, &mem);
        const double mib = (double)(mem.params + mem.grads + mem.optimizer + mem.activations +
                                    mem.workspace) / 1048576.0;

        run_ctx r = {.m = m, .be = be, .labels = labels, .n = n, .training = false,
                     .update = o->update};
        if ((s = time_runs(&r, times, o->reps, &median, &min)) != CT_OK) goto done;
        /* the backend's workspaces (im2col, oneDNN's scratchpad and reorders) grow as it runs */
        print_row(size, n, fd->label, "fwd", median, min, f_fwd * 1e-9, REF_FORWARD,
                  mib + ct_cpu_scratch_bytes(be->ctx) / 1048576.0);

        r.training = true;
        if ((s = time_runs(&r, times, o->reps, &median, &min)) != CT_OK) goto done;
        print_row(size, n, fd->label, o->update ? "fwd+bwd+upd" : "fwd+bwd", median, min,
                  f_train * 1e-9, fd->ref_train,
                  mib + ct_cpu_scratch_bytes(be->ctx) / 1048576.0);
    }
done:
    free(labels);
    free(xa);
    free(x);
    ct_model_free(m);
    return s;
}

/* ---- header ---- */

static void cpu_model(char *out, size_t len) {
    snprintf(out, len, "unknown");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (f == NULL) return;
    char line[512];
    while (fgets(line, sizeof line, f) != NULL) {
        if (strncmp(line, "model name", 10) != 0) continue;
        const char *v = strchr(line, ':');
        if (v == NULL) break;
        v++;
        while (*v == ' ' || *v == '\t') v++;
        snprintf(out, len, "%s", v);
        out[strcspn(out, "\n")] = '\0';
        break;
    }
    fclose(f);
}

/* The 1-minute load average, or -1 where /proc/loadavg cannot be read: other work on the
 * machine shows in the timings, so the reader should see whether there was any. */
static double load_average(void) {
    double la = -1.0;
    FILE *f = fopen("/proc/loadavg", "r");
    if (f == NULL) return la;
    if (fscanf(f, "%lf", &la) != 1) la = -1.0;
    fclose(f);
    return la;
}

static void print_header(int argc, char **argv, const ct_backend *be, const bench_opts *o) {
    char model[256];
    cpu_model(model, sizeof model);
    printf("# bench_cpu_vgg16\n\n");
    printf("command: `");
    for (int i = 0; i < argc; i++) printf("%s%s", i ? " " : "", argv[i]);
    printf("`\n\n");
    printf("machine: %s, %ld online CPUs; backend %s with %d OpenBLAS threads, %d OpenMP "
           "threads; load average %.2f at the start\n\n",
           model, sysconf(_SC_NPROCESSORS_ONLN), be->ops->name, openblas_get_num_threads(),
           omp_get_max_threads(), load_average());
    printf("VGG16 + head '%s', generated data in [-60, 60), 1 warm-up + %ld timed runs per row; "
           "fwd = inference forward, fwd+bwd = training forward + loss + backward%s. GFLOP/img "
           "is ct_model_flops for the row's trainable flags (multiply-add = 2); ref is the "
           "performance.md cost at 224x224; MiB is the model's arenas plus the backend's "
           "workspaces.\n\n",
           o->head, o->reps, o->update ? " + SGD update" : " (no optimizer update)");
    printf("| size | batch | frozen | pass | median ms | min ms | img/s | GFLOP/img | GFLOP/s | "
           "ref GFLOP/img | MiB |\n");
    printf("|---|---|---|---|---|---|---|---|---|---|---|\n");
    fflush(stdout);
}

int main(int argc, char **argv) {
    bench_opts o;
    memset(&o, 0, sizeof o);
    int rc = parse_args(argc, argv, &o);
    if (rc != 0) return rc == 1 ? 0 : rc;

    ct_backend be = {0};
    ct_status s = ct_backend_cpu_init(&be, (int)o.threads);
    if (s != CT_OK) {
        fprintf(stderr, "bench_cpu_vgg16: %s\n", ct_last_error());
        return 1;
    }
    print_header(argc, argv, &be, &o);

    double *times = malloc((size_t)o.reps * sizeof *times);
    if (times == NULL) {
        fprintf(stderr, "bench_cpu_vgg16: cannot allocate %ld timings\n", o.reps);
        ct_backend_free(&be);
        return 1;
    }
    rc = 0;
    for (int i = 0; i < o.n_sizes && rc == 0; i++) {
        long batches[MAX_LIST];
        int nb = batches_for(&o, o.sizes[i], batches);
        for (int j = 0; j < nb && rc == 0; j++) {
            s = bench_config(&be, &o, o.sizes[i], (int)batches[j], times);
            if (s != CT_OK) {
                fprintf(stderr, "bench_cpu_vgg16: size %ld, batch %ld: %s\n", o.sizes[i],
                        batches[j], ct_last_error());
                rc = 1;
            }
        }
    }
    if (rc == 0) printf("\nload average %.2f at the end\n", load_average());
    free(times);
    ct_backend_free(&be);
    return rc;
}
