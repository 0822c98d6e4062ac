/* `cutune bench --data DIR`: training steps timed on real images, through the loader and the
 * same streaming pipeline as `cutune train` (cutune/stream.h): pinned loader buffers, copies on
 * the copy stream into double-buffered staging slots, the next batch fetched and queued while
 * the current one is computed. Augmentation runs on one of two paths:
 *   loader  the workers augment and standardise on the CPU (CT_OUTPUT_FLOAT) and the float
 *           batch is staged and copied into the model's input;
 *   device  the workers only decode (CT_OUTPUT_RAW); the raw batch (uint8, or float for
 *           in-memory datasets) and its sample indices are staged and the backend's
 *           augment_standardize op writes the model's input - on the GPU, the fused kernel.
 * Both give the same images (the op equals the loader, see test_augment_op.c), so the two
 * timings compare pipelines, not work. Each step is timed from queueing its input to the end of
 * its update; "fetch" is the host time spent getting the next batch from the loader and queueing
 * its copy, which overlaps the step's device work: a fetch near the step time means the input
 * pipeline, not the model, sets the pace. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "cli.h"
#include "data/augment.h"
#include "data/data.h"
#include "model/model.h"
#include "model/optim.h"
#include "train/stream.h"

/* What `ImageDataGenerator(rotation_range=20, width_shift_range=0.1, height_shift_range=0.1,
 * shear_range=10, zoom_range=0.2, horizontal_flip=True)` asks for: a common fine-tuning setting. */
static ct_augment_config keras_augmentation(void) {
    ct_augment_config a;
    memset(&a, 0, sizeof a);
    a.rotation_range = 20.0f;
    a.width_shift = (ct_shift_range){CT_SHIFT_FRACTION, 0.1f};
    a.height_shift = (ct_shift_range){CT_SHIFT_FRACTION, 0.1f};
    a.shear_range = 10.0f;
    a.zoom_lo = 0.8f;
    a.zoom_hi = 1.2f;
    a.horizontal_flip = true;
    a.fill_mode = CT_FILL_NEAREST;
    return a;
}

typedef struct data_bench {
    const bench_opts *o;
    ct_backend be;
    const char *precision;
    bool on_device, augment;
    ct_augment_config aug;
    ct_dataset *ds;
    ct_loader *loader;
    ct_model *m;
    ct_stream *stream;
    int outputs, classes, h, w, c, k;
    const ct_batch *held; /* the prefetched batch, in staging slot `slot` */
    int slot;
    uint32_t epoch;
    float *labels;        /* (B, K) pageable copy: a copy from pinned memory would wait */
    double *step_s, *wait_s;
} data_bench;

static void data_bench_free(data_bench *d) {
    if (d->held != NULL) (void)ct_stream_done(d->stream, d->loader, d->slot);
    free(d->labels);
    free(d->wait_s);
    free(d->step_s);
    ct_loader_free(d->loader); /* before the stream whose buffers it fills */
    ct_stream_free(d->stream);
    ct_model_free(d->m);
    ct_dataset_free(d->ds);
    ct_backend_free(&d->be);
}

/* The next batch, starting the next epoch when one ends. */
static ct_status next_batch(data_bench *d, const ct_batch **b) {
    ct_status s = ct_loader_next(d->loader, b);
    if (s != CT_OK || *b != NULL) return s;
    if ((s = ct_loader_begin_epoch(d->loader, ++d->epoch)) != CT_OK) return s;
    if ((s = ct_loader_next(d->loader, b)) != CT_OK) return s;
    return *b != NULL ? CT_OK : ct_error(CT_EINVAL, "the dataset yields no batch");
}

/* The model on the data's shape, compiled with SGD + momentum, its head matching the classes. */
static ct_status open_model(data_bench *d) {
    const bench_opts *o = d->o;
    int mh, mw, mc;
    const bool in_memory = ct_dataset_in_memory(d->ds, &mh, &mw, &mc);
    ct_model_config mcfg = {.backbone = o->backbone, .input_h = in_memory ? mh : (int)o->size,
                            .input_w = in_memory ? mw : (int)o->size, .input_c = 3,
                            .aux_dim = ct_dataset_aux_dim(d->ds), .max_batch = (int)o->batch,
                            .head = o->head, .seed = (uint64_t)o->seed,
                            .freeze_to = o->freeze_to}; /* planned frozen from the start */
    ct_status s = ct_model_init(&d->m, &mcfg, &d->be);
    ct_optimizer_config opt;
    ct_optimizer_defaults(&opt, CT_OPT_SGD);
    opt.lr = 1e-3f;
    opt.momentum = 0.9f;
    if (s == CT_OK) s = ct_model_compile(d->m, &opt);
    if (s != CT_OK) return s;
    d->outputs = ct_model_num_outputs(d->m);
    d->classes = ct_dataset_num_classes(d->ds);
    if (!ct_dataset_labelled(d->ds) ||
        (d->outputs == 1 ? d->classes != 2 : d->outputs != d->classes))
        return ct_error(CT_EINVAL, "%s: the head has %d output%s but the data have %d classes%s; "
                        "choose a head that matches (e.g. --head "
                        "flatten,dense:64:relu,dense:%d:softmax)", o->data, d->outputs,
                        d->outputs == 1 ? "" : "s", d->classes,
                        ct_dataset_labelled(d->ds) ? "" : " and no labels", d->classes);
    return CT_OK;
}

/* The loader (augmenting when asked) and the stream, and the step's buffers. */
static ct_status open_pipeline(data_bench *d) {
    const bench_opts *o = d->o;
    int mh, mw, mc;
    ct_loader_config lc;
    ct_loader_config_defaults(&lc);
    lc.batch_size = (int)o->batch;
    lc.seed = (uint64_t)o->seed;
    lc.threads = (int)o->workers;
    lc.class_mode = d->outputs == 1 ? CT_CLASS_BINARY : CT_CLASS_CATEGORICAL;
    lc.image.target_h = lc.image.target_w = (int)o->size;
    /* VGG's preprocess_input for images; iceberg dB values are used as they are. */
    lc.standardize.preprocess = ct_dataset_in_memory(d->ds, &mh, &mw, &mc) ? CT_PREPROCESS_NONE
                                                                            : CT_PREPROCESS_CAFFE;
    if (o->no_cache) lc.cache_bytes = 0;
    ct_status s = ct_stream_init(&d->stream, d->m, d->ds, d->on_device, &lc);
    if (s == CT_OK)
        s = ct_loader_init_training(&d->loader, d->ds, &lc, d->augment ? &d->aug : NULL);
    if (s != CT_OK) return s;
    ct_loader_shape(d->loader, &d->h, &d->w, &d->c, &d->k);
    if (d->c != 3)
        return ct_error(CT_EINVAL, "%s: images have %d channels; the backbone takes 3", o->data,
                        d->c);
    const long total = o->steps + o->warmup;
    d->labels = malloc((size_t)o->batch * (d->outputs == 1 ? 1 : (size_t)d->k) * sizeof(float));
    d->step_s = malloc((size_t)total * sizeof *d->step_s);
    d->wait_s = malloc((size_t)total * sizeof *d->wait_s);
    if (d->labels == NULL || d->step_s == NULL || d->wait_s == NULL)
        return ct_error(CT_ENOMEM, "out of memory for the labels and %ld step times", total);
    return CT_OK;
}

/* One step on the held batch: queued, the next batch fetched and staged while the device
 * computes (*fetch_s), then the update; *n and *loss report it. */
static ct_status one_step(data_bench *d, long step, long total, int *n, float *loss,
                          double *fetch_s) {
    const ct_batch *b = d->held;
    *n = b->n;
    const size_t label_bytes = (d->outputs == 1 ? 1 : (size_t)d->k) * sizeof(float);
    memcpy(d->labels, b->y, (size_t)b->n * label_bytes);
    ct_status s;
    if ((s = ct_stream_input(d->stream, d->slot, d->augment ? &d->aug : NULL)) != CT_OK ||
        (s = ct_model_forward(d->m, b->n, true, (uint32_t)step)) != CT_OK ||
        (s = ct_model_loss_start(d->m, d->labels, NULL)) != CT_OK ||
        (s = ct_model_backward(d->m)) != CT_OK)
        return s;
    const double t1 = bench_now();
    const ct_batch *nb = NULL;
    int nslot = -1;
    if (step + 1 < total) {
        if ((s = next_batch(d, &nb)) != CT_OK) return s;
        if ((s = ct_stream_put(d->stream, nb, &nslot)) != CT_OK) {
            ct_loader_release(d->loader, nb);
            return s;
        }
    }
    *fetch_s = bench_now() - t1;
    if ((s = ct_model_loss_value(d->m, loss)) != CT_OK ||
        (s = ct_model_apply_gradients(d->m, 1.0f)) != CT_OK ||
        (s = d->be.ops->synchronize(d->be.ctx)) != CT_OK)
        return s;
    s = ct_stream_done(d->stream, d->loader, d->slot); /* b goes back to the loader */
    d->held = nb;
    d->slot = nslot;
    return s;
}

static ct_status run_steps(data_bench *d) {
    const bench_opts *o = d->o;
    const long total = o->steps + o->warmup;
    const ct_batch *b = NULL;
    ct_status s = ct_loader_begin_epoch(d->loader, d->epoch);
    if (s == CT_OK) s = next_batch(d, &b);
    if (s != CT_OK) return s;
    if ((s = ct_stream_put(d->stream, b, &d->slot)) != CT_OK) {
        ct_loader_release(d->loader, b);
        return s;
    }
    d->held = b;
    long images = 0;
    double timed_start = 0.0;
    for (long step = 0; step < total; step++) {
        if (step == o->warmup) {
            images = 0;
            timed_start = bench_now();
        }
        const double t0 = bench_now();
        const uint32_t epoch = d->held->epoch;
        int n = 0;
        float loss = 0.0f;
        if ((s = one_step(d, step, total, &n, &loss, &d->wait_s[step])) != CT_OK) return s;
        d->step_s[step] = bench_now() - t0;
        images += n;
        printf("step %ld/%ld%s: epoch %u, %d images, loss %.4f, %.3f s (fetch %.3f s)\n",
               step + 1, total, step < o->warmup ? " (warm-up)" : "", epoch, n, loss,
               d->step_s[step], d->wait_s[step]);
        fflush(stdout);
    }
    const double elapsed = bench_now() - timed_start;
    double wait_sum = 0.0;
    for (long i = o->warmup; i < total; i++) wait_sum += d->wait_s[i];
    const double med = bench_median(d->step_s + o->warmup, (size_t)o->steps);
    printf("median step %.3f s; %.1f img/s over the %ld timed steps; fetching the next batch "
           "took %.0f%% of that time, overlapped with the device\n",
           med, images / elapsed, o->steps, 100.0 * wait_sum / elapsed);
    return CT_OK;
}

int bench_data(const char *cmd, const bench_opts *o) {
    data_bench d;
    memset(&d, 0, sizeof d);
    d.o = o;
    d.augment = o->augment == NULL || strcmp(o->augment, "keras") == 0;
    d.aug = keras_augmentation();
    ct_status s = bench_backend(cmd, o, &d.be, &d.precision, 0);
    if (s == CT_OK) s = ct_stream_parse_where(o->augment_on, &d.be, &d.on_device);
    if (s == CT_OK) s = ct_dataset_open(&d.ds, o->data);
    if (s == CT_OK) s = open_model(&d);
    if (s == CT_OK) s = open_pipeline(&d);
    if (s == CT_OK) {
        printf("cutune bench --data %s: %zu images of %dx%dx%d, %d classes, head '%s', batch "
               "%ld, backend %s, precision %s\n", o->data, ct_dataset_count(d.ds), d.h, d.w, d.c,
               d.classes, ct_model_head_spec(d.m), o->batch, d.be.ops->name, d.precision);
        printf("augmentation %s on the %s; %ld loader workers, image cache %s\n",
               d.augment ? "keras" : "none",
               d.on_device ? d.be.ops->name : "loader threads (cpu)", o->workers,
               ct_loader_caching(d.loader) ? "on" : "off");
        fflush(stdout);
        s = run_steps(&d);
    }
    const int rc = s == CT_OK ? 0 : cli_fail(cmd, s);
    data_bench_free(&d);
    return rc;
}
