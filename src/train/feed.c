/* How training batches reach the model: streamed through staging slots, double buffered.
 *
 * The training loader fills batch buffers in the backend's host memory (pinned on CUDA). Each
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
 * auto). The frozen-prefix cache (fit_cache.c) bypasses all this: it feeds features. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include <stdlib.h>
#include <string.h>

#include "fit_internal.h"

static size_t pixel_bytes(const fit_feed *f) {
    return (size_t)f->batch * f->h * f->w * f->c * (f->on_device && !f->raw_f32 ? 1 : sizeof(float));
}

ct_status fit_feed_choose(fit_run *r, const char *augment_on) {
    fit_feed *f = &r->feed;
    const char *a = augment_on != NULL ? augment_on : "auto";
    if (strcmp(a, "auto") == 0)
        f->on_device = strcmp(r->be.ops->name, "cpu") != 0;
    else if (strcmp(a, "device") == 0)
        f->on_device = true;
    else if (strcmp(a, "loader") == 0)
        f->on_device = false;
    else
        return ct_error(CT_EINVAL, "--augment-on '%s': expected auto, device or loader", a);
    return CT_OK;
}

ct_status fit_feed_init(fit_run *r, ct_loader_config *lc) {
    fit_feed *f = &r->feed;
    const ct_backend_ops *ops = r->be.ops;
    void *ctx = r->be.ctx;
    int h, w, c;
    f->raw_f32 = ct_dataset_in_memory(r->train, &h, &w, &c);
    if (!f->raw_f32) {
        h = w = r->input;
        c = ct_color_mode_channels(lc->image.color_mode);
    }
    f->h = h;
    f->w = w;
    f->c = c;
    f->batch = lc->batch_size;
    f->aux_dim = ct_dataset_aux_dim(r->train);
    f->k = lc->class_mode == CT_CLASS_CATEGORICAL ? r->k : 1;
    f->std = lc->standardize;
    f->seed = lc->seed;
    lc->output = f->on_device ? CT_OUTPUT_RAW : CT_OUTPUT_FLOAT;

    /* Host buffers the loader fills: the queue the workers work ahead into, plus the batch being
     * computed and the one being copied. */
    f->n_host = (lc->threads > 0 ? lc->threads : 1) + CT_STAGE_SLOTS;
    f->host = calloc((size_t)f->n_host, sizeof *f->host);
    if (f->host == NULL) return ct_error(CT_ENOMEM, "cannot allocate the batch buffer table");
    const size_t B = (size_t)f->batch;
    ct_status s = CT_OK;
    for (int i = 0; i < f->n_host && s == CT_OK; i++) {
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
    if (s != CT_OK) return ct_error(s, "streaming buffers for batch %d: %s", f->batch,
                                    ct_last_error());
    lc->buffers = f->host;
    lc->n_buffers = f->n_host;
    f->ready = true;
    return CT_OK;
}

ct_status fit_feed_put(fit_run *r, const ct_batch *b, int *slot) {
    fit_feed *f = &r->feed;
    const ct_backend_ops *ops = r->be.ops;
    void *ctx = r->be.ctx;
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

ct_status fit_feed_input(fit_run *r, int slot, const ct_augment_config *aug) {
    fit_feed *f = &r->feed;
    const ct_backend_ops *ops = r->be.ops;
    void *ctx = r->be.ctx;
    const ct_batch *b = f->pending[slot];
    if (b == NULL) return ct_error(CT_EINVAL, "staging slot %d holds no batch", slot);
    const int n = b->n;
    ct_status s = ops->stage_acquire(ctx, slot);
    if (s != CT_OK) return s;
    if (f->on_device)
        s = ops->augment_standardize(ctx, ct_model_input(r->m),
                                     f->raw_f32 ? NULL : (const uint8_t *)f->x[slot],
                                     f->raw_f32 ? (const float *)f->x[slot] : NULL, f->index[slot],
                                     n, f->h, f->w, f->c, aug, &f->std, f->seed, b->epoch);
    else
        s = ops->copy_to_device(ctx, ct_model_input(r->m), f->x[slot],
                                (size_t)n * f->h * f->w * f->c * sizeof(float));
    if (s == CT_OK && f->aux_dim > 0)
        s = ops->copy_to_device(ctx, ct_model_aux_input(r->m), f->aux[slot],
                                (size_t)n * f->aux_dim * sizeof(float));
    if (s != CT_OK) return s;
    return ops->stage_release(ctx, slot);
}

ct_status fit_feed_done(fit_run *r, ct_loader *l, int slot) {
    fit_feed *f = &r->feed;
    if (slot < 0 || f->pending[slot] == NULL) return CT_OK;
    ct_status s = r->be.ops->stage_sync(r->be.ctx, slot);
    /* Released even on failure: the loader must get its buffer back to shut down cleanly. */
    ct_loader_release(l, f->pending[slot]);
    f->pending[slot] = NULL;
    return s;
}

void fit_feed_drop(fit_run *r, ct_loader *l) {
    for (int i = 0; i < CT_STAGE_SLOTS; i++) (void)fit_feed_done(r, l, i);
    r->feed.next_slot = 0;
}

void fit_feed_free(fit_run *r) {
    fit_feed *f = &r->feed;
    const ct_backend_ops *ops = r->be.ops;
    if (ops == NULL) return;
    void *ctx = r->be.ctx;
    /* Nothing may still be copying out of the host buffers or into the slots. */
    if (ops->synchronize != NULL) (void)ops->synchronize(ctx);
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
    memset(f, 0, sizeof *f);
}
