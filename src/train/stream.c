/* How batches reach the model: streamed through staging slots, double buffered
 * (include/cutune/stream.h). `cutune train` streams its training batches and, in a second
 * stream without augmentation, its validation batches.
 *
 * The loader fills batch buffers in the backend's host memory (pinned on CUDA). Each
 * batch is copied into one of CT_STAGE_SLOTS backend buffers on the backend's copy stream while
 * the previous batch is computed; the step then turns the slot into the model's input:
 *
 *   device path  the loader only decodes (CT_OUTPUT_RAW: uint8 pixels, or floats for in-memory
 *                data); the backend's augment_standardize op draws the augmentation for
 *                (seed, epoch, sample) and standardises in one pass on the device. Four times
 *                fewer bytes cross the bus than float pixels, and the CPU threads only decode.
 *   loader path  the loader threads augment and standardise (CT_OUTPUT_FLOAT); the slot holds
 *                the finished floats and one device-side copy moves them into the input.
 *
 * Both paths compute every image with ct_augment_standardize_image's float operations, so on the
 * CPU backend they train bit-identically; the device path is the default on CUDA (--augment-on
 * auto). `cutune train` (fit.c), `cutune evaluate` and `predict` (predict.c) and `cutune bench
 * --data` all stream this way. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/model.h"
#include "train/stream.h"

struct ct_stream {
    ct_backend *be;
    ct_model *m;
    bool on_device;              /* raw batches; the backend augments and standardises */
    bool raw_f32;                /* the raw pixels are floats (in-memory datasets) */
    int h, w, c, k, aux_dim, batch;
    ct_standardize std;          /* the standardisation the device path applies */
    uint64_t seed;
    ct_batch *host;              /* (n_host) loader buffers in the backend's host memory */
    int n_host;
    void *x[CT_STAGE_SLOTS];     /* backend memory: raw pixels or finished floats */
    uint32_t *index[CT_STAGE_SLOTS];
    float *aux[CT_STAGE_SLOTS];
    const ct_batch *pending[CT_STAGE_SLOTS]; /* the loader batch each slot was copied from */
    int next_slot;
};

static size_t pixel_bytes(const ct_stream *f) {
    return (size_t)f->batch * f->h * f->w * f->c * (f->on_device && !f->raw_f32 ? 1 : sizeof(float));
}

ct_status ct_stream_parse_where(const char *augment_on, const ct_backend *be, bool *on_device) {
    const char *a = augment_on != NULL ? augment_on : "auto";
    if (strcmp(a, "auto") == 0)
        *on_device = strcmp(be->ops->name, "cpu") != 0;
    else if (strcmp(a, "device") == 0)
        *on_device = true;
    else if (strcmp(a, "loader") == 0)
        *on_device = false;
    else
        return ct_error(CT_EINVAL, "--augment-on '%s': expected auto, device or loader", a);
    return CT_OK;
}

ct_status ct_stream_init(ct_stream **out, ct_model *m, const ct_dataset *ds, bool on_device,
                         ct_loader_config *lc) {
    *out = NULL;
    ct_stream *f = calloc(1, sizeof *f);
    if (f == NULL) return ct_error(CT_ENOMEM, "cannot allocate the batch stream");
    f->be = ct_model_backend(m);
    f->m = m;
    f->on_device = on_device;
    const ct_backend_ops *ops = f->be->ops;
    void *ctx = f->be->ctx;
    const ct_model_config *mc = ct_model_get_config(m);
    int h, w, c;
    f->raw_f32 = ct_dataset_in_memory(ds, &h, &w, &c);
    if (!f->raw_f32) {
        h = lc->image.target_h;
        w = lc->image.target_w;
        c = ct_color_mode_channels(lc->image.color_mode);
    }
    f->h = h;
    f->w = w;
    f->c = c;
    f->batch = lc->batch_size;
    f->aux_dim = ct_dataset_aux_dim(ds);
    f->k = lc->class_mode == CT_CLASS_CATEGORICAL ? ct_dataset_num_classes(ds) : 1;
    f->std = lc->standardize;
    f->seed = lc->seed;
    ct_status s = CT_OK;
    if (h != mc->input_h || w != mc->input_w || c != mc->input_c || f->aux_dim != mc->aux_dim ||
        f->batch > mc->max_batch)
        s = ct_error(CT_ESHAPE, "batches of %d x %dx%dx%d (+%d) do not fit the model's input "
                     "%d x %dx%dx%d (+%d)", f->batch, h, w, c, f->aux_dim, mc->max_batch,
                     mc->input_h, mc->input_w, mc->input_c, mc->aux_dim);
    lc->output = on_device ? CT_OUTPUT_RAW : CT_OUTPUT_FLOAT;

    /* Host buffers the loader fills: the queue the workers work ahead into, plus the batch being
     * computed and the one being copied. */
    f->n_host = (lc->threads > 0 ? lc->threads : 1) + CT_STAGE_SLOTS;
    f->host = s == CT_OK ? calloc((size_t)f->n_host, sizeof *f->host) : NULL;
    if (s == CT_OK && f->host == NULL)
        s = ct_error(CT_ENOMEM, "cannot allocate the batch buffer table");
    const size_t B = (size_t)f->batch;
    for (int i = 0; s == CT_OK && i < f->n_host; i++) {
        ct_batch *b = &f->host[i];
        void **px = f->on_device && !f->raw_f32 ? (void **)&b->x_u8 : (void **)&b->x;
        s = ops->host_alloc(ctx, px, pixel_bytes(f));
        if (s == CT_OK) s = ops->host_alloc(ctx, (void **)&b->y, B * f->k * sizeof(float));
        if (s == CT_OK) s = ops->host_alloc(ctx, (void **)&b->index, B * sizeof(uint32_t));
        if (s == CT_OK && f->aux_dim > 0)
            s = ops->host_alloc(ctx, (void **)&b->aux, B * f->aux_dim * sizeof(float));
    }
    for (int i = 0; i < CT_STAGE_SLOTS && s == CT_OK; i++) {
        s = ops->alloc(ctx, &f->x[i], pixel_bytes(f));
        if (s == CT_OK && f->on_device)
            s = ops->alloc(ctx, (void **)&f->index[i], B * sizeof(uint32_t));
        if (s == CT_OK && f->aux_dim > 0)
            s = ops->alloc(ctx, (void **)&f->aux[i], B * f->aux_dim * sizeof(float));
    }
    if (s != CT_OK) {
        if (s != CT_ESHAPE) s = ct_error(s, "streaming buffers for batch %d: %s", f->batch,
                                         ct_last_error());
        ct_stream_free(f);
        return s;
    }
    lc->buffers = f->host;
    lc->n_buffers = f->n_host;
    *out = f;
    return CT_OK;
}

bool ct_stream_on_device(const ct_stream *f) { return f->on_device; }

ct_status ct_stream_put(ct_stream *f, const ct_batch *b, int *slot) {
    const ct_backend_ops *ops = f->be->ops;
    void *ctx = f->be->ctx;
    const int s_i = f->next_slot;
    if (f->pending[s_i] != NULL)
        return ct_error(CT_EINVAL, "staging slot %d is still in use", s_i);
    const size_t n = (size_t)b->n;
    const size_t px = pixel_bytes(f) / (size_t)f->batch * n;
    ct_status s = ops->stage_copy(ctx, s_i, f->x[s_i],
                                  f->on_device && !f->raw_f32 ? (const void *)b->x_u8
                                                              : (const void *)b->x,
                                  px);
    if (s == CT_OK && f->on_device)
        s = ops->stage_copy(ctx, s_i, f->index[s_i], b->index, n * sizeof(uint32_t));
    if (s == CT_OK && f->aux_dim > 0)
        s = ops->stage_copy(ctx, s_i, f->aux[s_i], b->aux, n * f->aux_dim * sizeof(float));
    if (s != CT_OK) return s;
    f->pending[s_i] = b;
    f->next_slot = (s_i + 1) % CT_STAGE_SLOTS;
    *slot = s_i;
    return CT_OK;
}

ct_status ct_stream_next(ct_stream *f, ct_loader *l, const ct_batch **b, int *slot) {
    *slot = -1;
    ct_status s = ct_loader_next(l, b);
    if (s != CT_OK || *b == NULL) return s;
    if ((s = ct_stream_put(f, *b, slot)) != CT_OK) {
        ct_loader_release(l, *b);
        *b = NULL;
    }
    return s;
}

ct_status ct_stream_pass(ct_stream *f, ct_loader *l, uint32_t epoch, ct_stream_step step,
                         void *user) {
    const ct_batch *b = NULL;
    int slot = -1;
    ct_status s = ct_loader_begin_epoch(l, epoch);
    if (s == CT_OK) s = ct_stream_next(f, l, &b, &slot);
    while (s == CT_OK && b != NULL) {
        const ct_batch *nb = NULL;
        int nslot = -1;
        s = step(user, b, slot, &nb, &nslot);
        /* Giving the batches back must not replace the step's own error message. */
        char msg[4096] = "";
        if (s != CT_OK) snprintf(msg, sizeof msg, "%s", ct_last_error());
        ct_status rs = ct_stream_done(f, l, slot);
        if (s != CT_OK) {
            (void)ct_stream_done(f, l, nslot);
            return ct_error(s, "%s", msg);
        }
        s = rs;
        b = nb;
        slot = nslot;
    }
    if (s != CT_OK) {
        char msg[4096];
        snprintf(msg, sizeof msg, "%s", ct_last_error());
        (void)ct_stream_done(f, l, slot);
        return ct_error(s, "%s", msg);
    }
    return CT_OK;
}

ct_status ct_stream_input(ct_stream *f, int slot, const ct_augment_config *aug) {
    const ct_backend_ops *ops = f->be->ops;
    void *ctx = f->be->ctx;
    if (slot < 0 || slot >= CT_STAGE_SLOTS || f->pending[slot] == NULL)
        return ct_error(CT_EINVAL, "staging slot %d holds no batch", slot);
    const ct_batch *b = f->pending[slot];
    const int n = b->n;
    ct_status s = ops->stage_acquire(ctx, slot);
    if (s != CT_OK) return s;
    if (f->on_device)
        s = ops->augment_standardize(ctx, ct_model_input(f->m),
                                     f->raw_f32 ? NULL : (const uint8_t *)f->x[slot],
                                     f->raw_f32 ? (const float *)f->x[slot] : NULL, f->index[slot],
                                     n, f->h, f->w, f->c, aug, &f->std, f->seed, b->epoch);
    else
        s = ops->copy_to_device(ctx, ct_model_input(f->m), f->x[slot],
                                (size_t)n * f->h * f->w * f->c * sizeof(float));
    if (s == CT_OK && f->aux_dim > 0)
        s = ops->copy_to_device(ctx, ct_model_aux_input(f->m), f->aux[slot],
                                (size_t)n * f->aux_dim * sizeof(float));
    /* Released on failure too, so that the slot can be staged again. */
    ct_status r = ops->stage_release(ctx, slot);
    return s != CT_OK ? s : r;
}

ct_status ct_stream_done(ct_stream *f, ct_loader *l, int slot) {
    if (f == NULL || slot < 0 || slot >= CT_STAGE_SLOTS || f->pending[slot] == NULL) return CT_OK;
    ct_status s = f->be->ops->stage_sync(f->be->ctx, slot);
    /* Released even on failure: the loader must get its buffer back to shut down cleanly. */
    ct_loader_release(l, f->pending[slot]);
    f->pending[slot] = NULL;
    return s;
}

void ct_stream_free(ct_stream *f) {
    if (f == NULL) return;
    const ct_backend_ops *ops = f->be->ops;
    void *ctx = f->be->ctx;
    /* Nothing may still be copying out of the host buffers or into the slots. */
    (void)ops->synchronize(ctx);
    for (int i = 0; i < CT_STAGE_SLOTS; i++) {
        if (f->pending[i] != NULL) (void)ops->stage_sync(ctx, i);
        ops->release(ctx, f->x[i]);
        ops->release(ctx, f->index[i]);
        ops->release(ctx, f->aux[i]);
    }
    for (int i = 0; f->host != NULL && i < f->n_host; i++) {
        ct_batch *b = &f->host[i];
        ops->host_release(ctx, b->x);
        ops->host_release(ctx, b->x_u8);
        ops->host_release(ctx, b->y);
        ops->host_release(ctx, b->index);
        ops->host_release(ctx, b->aux);
    }
    free(f->host);
    free(f);
}
