/* The threaded loader: worker threads turn samples into batches ahead of the consumer.
 *
 * An epoch is an order of the samples (identity, or a Fisher-Yates shuffle whose draws are
 * addressed by (epoch, position)); batch b is positions [b*B, (b+1)*B). A data-parallel rank
 * keeps its slice of each (shard.c): its batch b is its positions [b*c, (b+1)*c), c its share
 * of a full batch, and the last its share of the rest. Workers claim positions
 * one at a time under the mutex; the first position of a batch takes a free slot (a batch
 * buffer), so at most n_buffers batches are in flight: that is the bounded prefetch queue. A
 * sample's pixels depend only on (seed, epoch, sample index, config), never on which thread
 * made it or when, so batches are identical for any thread count. The consumer takes batches in
 * order and gives the slot back with ct_loader_release.
 *
 * Decoded, resized uint8 images are kept in a cache when the whole dataset fits the budget;
 * otherwise every epoch decodes from disk. A failed file either stops the epoch at the batch
 * that holds it (its message, naming the file, is returned by ct_loader_next) or, with skip_bad,
 * is dropped from its batch and remembered. Aborting an epoch (begin_epoch again, or free) bumps
 * a generation number; workers finishing a sample of an old generation discard it. */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/shuffle.h"
#include "internal.h"

enum { SLOT_FREE, SLOT_FILLING, SLOT_READY, SLOT_HELD };
enum { CACHE_EMPTY, CACHE_READY, CACHE_BAD };

typedef struct slot {
    ct_batch b;
    int state;
    size_t batch;    /* batch number within the epoch */
    int count, done; /* rows expected, rows finished */
    uint8_t *bad;    /* (batch_size) rows dropped by skip_bad */
    int err_row;     /* lowest failed row, -1 if none */
    ct_status err;
    char msg[1024];
} slot;

typedef struct bad_file {
    size_t sample;
    char *msg;
} bad_file;

typedef struct worker {
    struct ct_loader *l;
    float *scratch; /* (H, W, C) */
    pthread_t tid;
} worker;

struct ct_loader {
    const ct_dataset *ds;
    ct_loader_config cfg;
    bool augment;
    ct_augment_config aug;
    int H, W, C, K, A; /* image shape, label columns, aux scalars */
    size_t n, hwc, B;
    size_t c, n_local;    /* this rank's rows of a full batch, and of the epoch (B, n: one rank) */
    bool in_memory;
    uint32_t *order;      /* (n) this rank's samples of the epoch, in order */
    uint32_t *global;     /* (n) the epoch's order over every rank (sharded loaders), or NULL */
    ct_batch empty;       /* a rank's empty share of a last batch */
    uint8_t *cache;       /* (n, H, W, C) or NULL */
    uint8_t *cache_state; /* (n) */
    bad_file *bad;
    size_t n_bad, cap_bad;
    slot *slots;
    int n_slots;
    bool own_buffers;
    worker *workers;
    int n_workers;
    pthread_mutex_t mu;
    pthread_cond_t work_cv, ready_cv, idle_cv;
    bool active, stop, began;
    uint32_t epoch;
    uint64_t gen;
    size_t next_pos, end_pos, n_batches, next_deliver;
    int filling; /* slot of the batch being claimed */
    int busy;    /* samples being processed outside the lock */
    bool failed;
    ct_status fail_status;
    char fail_msg[1024];
};

void ct_loader_config_defaults(ct_loader_config *c) {
    memset(c, 0, sizeof *c);
    c->batch_size = 32;
    c->shuffle = true;
    c->seed = 0;
    c->threads = 2;
    c->class_mode = CT_CLASS_CATEGORICAL;
    c->output = CT_OUTPUT_FLOAT;
    ct_image_options_defaults(&c->image);
    c->cache_bytes = (size_t)2 << 30;
}

/* ---- per-sample work (outside the lock) ---- */

static void write_labels(const ct_loader *l, ct_batch *b, int row, uint32_t sample) {
    b->index[row] = sample;
    if (l->K > 0) {
        const int y = ct_dataset_label(l->ds, sample);
        if (l->cfg.class_mode == CT_CLASS_CATEGORICAL) {
            float *dst = b->y + (size_t)row * l->K;
            for (int k = 0; k < l->K; k++) dst[k] = 0.0f;
            dst[y] = 1.0f;
        } else {
            b->y[row] = (float)y;
        }
    }
    if (l->A > 0)
        memcpy(b->aux + (size_t)row * l->A, ct_dataset_aux(l->ds, sample),
               (size_t)l->A * sizeof(float));
}

/* Float pixels of one sample from `src` (uint8 or float): augmentation for the training stream,
 * then standardisation (the function the CPU backend's augment_standardize op calls too). */
static void finish_float(const ct_loader *l, float *dst, const uint8_t *u8, const float *f32,
                         uint32_t epoch, uint32_t sample, float *scratch) {
    ct_augment_standardize_image(dst, u8, f32, l->H, l->W, l->C, l->augment ? &l->aug : NULL,
                                 &l->cfg.standardize, l->cfg.seed, epoch, sample, scratch);
}

/* The decoded uint8 image of a file sample: from the cache, or decoded (and cached). *img holds
 * the decoded copy to free when it did not come from the cache. */
static ct_status file_pixels(ct_loader *l, uint32_t sample, const uint8_t **u8, ct_image *img) {
    memset(img, 0, sizeof *img);
    if (l->cache != NULL && l->cache_state[sample] == CACHE_READY) {
        *u8 = l->cache + (size_t)sample * l->hwc;
        return CT_OK;
    }
    ct_status s = ct_image_load(ct_dataset_path(l->ds, sample), &l->cfg.image, img);
    if (s != CT_OK) return s;
    if (img->h != l->H || img->w != l->W || img->c != l->C) {
        s = ct_error(CT_ESHAPE, "%s: decoded as %dx%dx%d, expected %dx%dx%d",
                     ct_dataset_path(l->ds, sample), img->h, img->w, img->c, l->H, l->W, l->C);
        ct_image_free(img);
        return s;
    }
    if (l->cache != NULL) {
        memcpy(l->cache + (size_t)sample * l->hwc, img->data, l->hwc);
        l->cache_state[sample] = CACHE_READY;
    }
    *u8 = img->data;
    return CT_OK;
}

static ct_status process(ct_loader *l, slot *s, int row, uint32_t sample, uint32_t epoch,
                         float *scratch) {
    ct_batch *b = &s->b;
    write_labels(l, b, row, sample);
    const size_t hwc = l->hwc;
    if (l->in_memory) {
        const float *px = ct_dataset_pixels(l->ds, sample);
        if (l->cfg.output == CT_OUTPUT_RAW)
            memcpy(b->x + (size_t)row * hwc, px, hwc * sizeof(float));
        else
            finish_float(l, b->x + (size_t)row * hwc, NULL, px, epoch, sample, scratch);
        return CT_OK;
    }
    if (l->cache_state != NULL && l->cache_state[sample] == CACHE_BAD)
        return ct_error(CT_EFORMAT, "%s: skipped (found bad earlier)",
                        ct_dataset_path(l->ds, sample));
    const uint8_t *u8 = NULL;
    ct_image img;
    ct_status st = file_pixels(l, sample, &u8, &img);
    if (st != CT_OK) return st;
    if (l->cfg.output == CT_OUTPUT_RAW)
        memcpy(b->x_u8 + (size_t)row * hwc, u8, hwc);
    else
        finish_float(l, b->x + (size_t)row * hwc, u8, NULL, epoch, sample, scratch);
    ct_image_free(&img);
    return CT_OK;
}

/* ---- bookkeeping under the lock ---- */

static int free_slot(const ct_loader *l) {
    for (int i = 0; i < l->n_slots; i++)
        if (l->slots[i].state == SLOT_FREE) return i;
    return -1;
}

/* Batch numbers and positions: this rank's batch b is positions [b*c, b*c + count(b)). */
static size_t batch_of(const ct_loader *l, size_t pos) {
    return pos / l->c < l->n_batches - 1 ? pos / l->c : l->n_batches - 1;
}

static int batch_count(const ct_loader *l, size_t b) {
    const size_t g = l->n - b * l->B < l->B ? l->n - b * l->B : l->B;
    return (int)ct_shard_rows(g, l->cfg.shard_rank, l->cfg.shard_count, NULL);
}

static bool can_claim(const ct_loader *l) {
    if (!l->active || l->next_pos >= l->end_pos) return false;
    return l->next_pos != batch_of(l, l->next_pos) * l->c || free_slot(l) >= 0;
}

/* Remembers a file found bad under skip_bad (once per sample). */
static void note_bad(ct_loader *l, uint32_t sample, const char *msg) {
    if (l->cache_state != NULL) {
        if (l->cache_state[sample] == CACHE_BAD) return;
        l->cache_state[sample] = CACHE_BAD;
    } else {
        for (size_t i = 0; i < l->n_bad; i++)
            if (l->bad[i].sample == sample) return;
    }
    if (l->n_bad == l->cap_bad) {
        size_t cap = l->cap_bad ? l->cap_bad * 2 : 16;
        bad_file *v = realloc(l->bad, cap * sizeof *v);
        if (v == NULL) return; /* the sample is still skipped; only its report is lost */
        l->bad = v;
        l->cap_bad = cap;
    }
    l->bad[l->n_bad].sample = sample;
    l->bad[l->n_bad].msg = ct_data_strdup(msg);
    l->n_bad++;
}

static void *worker_main(void *arg) {
    worker *w = arg;
    ct_loader *l = w->l;
    pthread_mutex_lock(&l->mu);
    for (;;) {
        while (!l->stop && !can_claim(l)) pthread_cond_wait(&l->work_cv, &l->mu);
        if (l->stop) break;
        const size_t pos = l->next_pos++;
        const size_t batch = batch_of(l, pos);
        const int row = (int)(pos - batch * l->c);
        if (row == 0) {
            const int si = free_slot(l);
            slot *s = &l->slots[si];
            s->state = SLOT_FILLING;
            s->batch = batch;
            s->count = batch_count(l, batch);
            s->done = 0;
            s->err_row = -1;
            s->err = CT_OK;
            memset(s->bad, 0, l->B);
            l->filling = si;
        }
        const int si = l->filling;
        const uint64_t gen = l->gen;
        const uint32_t epoch = l->epoch, sample = l->order[pos];
        l->busy++;
        pthread_mutex_unlock(&l->mu);

        ct_error_clear();
        ct_status st = process(l, &l->slots[si], row, sample, epoch, w->scratch);

        pthread_mutex_lock(&l->mu);
        l->busy--;
        if (gen == l->gen) {
            slot *s = &l->slots[si];
            if (st != CT_OK) {
                if (l->cfg.skip_bad) {
                    s->bad[row] = 1;
                    note_bad(l, sample, ct_last_error());
                } else if (s->err_row < 0 || row < s->err_row) {
                    s->err_row = row;
                    s->err = st;
                    snprintf(s->msg, sizeof s->msg, "%s", ct_last_error());
                }
            }
            if (++s->done == s->count) {
                s->state = SLOT_READY;
                pthread_cond_broadcast(&l->ready_cv);
            }
        }
        if (l->busy == 0) pthread_cond_broadcast(&l->idle_cv);
    }
    pthread_mutex_unlock(&l->mu);
    return NULL;
}

/* Stops handing out work for the current epoch and waits for samples in progress. */
static void abort_locked(ct_loader *l) {
    l->active = false;
    l->gen++;
    l->end_pos = l->next_pos;
    while (l->busy > 0) pthread_cond_wait(&l->idle_cv, &l->mu);
    for (int i = 0; i < l->n_slots; i++)
        if (l->slots[i].state != SLOT_HELD) l->slots[i].state = SLOT_FREE;
}

/* ---- setup ---- */

static ct_status check_buffers(const ct_loader *l, const ct_batch *b, int i) {
    const bool raw_u8 = l->cfg.output == CT_OUTPUT_RAW && !l->in_memory;
    if (raw_u8 && b->x_u8 == NULL)
        return ct_error(CT_EINVAL, "buffer %d: x_u8 is NULL (raw output of a file dataset)", i);
    if (!raw_u8 && b->x == NULL) return ct_error(CT_EINVAL, "buffer %d: x is NULL", i);
    if (l->K > 0 && b->y == NULL) return ct_error(CT_EINVAL, "buffer %d: y is NULL", i);
    if (l->A > 0 && b->aux == NULL) return ct_error(CT_EINVAL, "buffer %d: aux is NULL", i);
    if (b->index == NULL) return ct_error(CT_EINVAL, "buffer %d: index is NULL", i);
    return CT_OK;
}

static ct_status alloc_buffers(ct_loader *l, ct_batch *b) {
    const bool raw_u8 = l->cfg.output == CT_OUTPUT_RAW && !l->in_memory;
    memset(b, 0, sizeof *b);
    if (raw_u8)
        b->x_u8 = malloc(l->B * l->hwc);
    else
        b->x = malloc(l->B * l->hwc * sizeof(float));
    if (l->K > 0) b->y = malloc(l->B * (size_t)l->K * sizeof(float));
    if (l->A > 0) b->aux = malloc(l->B * (size_t)l->A * sizeof(float));
    b->index = malloc(l->B * sizeof *b->index);
    if ((raw_u8 ? (void *)b->x_u8 : (void *)b->x) == NULL || (l->K > 0 && b->y == NULL) ||
        (l->A > 0 && b->aux == NULL) || b->index == NULL)
        return ct_error(CT_ENOMEM, "cannot allocate a batch of %zu images of %dx%dx%d", l->B, l->H,
                        l->W, l->C);
    return CT_OK;
}

/* What a loader can refuse before it allocates anything. */
static ct_status check_config(const ct_dataset *ds, const ct_loader_config *cfg) {
    if (cfg->batch_size < 1)
        return ct_error(CT_EINVAL, "batch_size must be >= 1, not %d", cfg->batch_size);
    if (cfg->threads < 1 || cfg->threads > 256)
        return ct_error(CT_EINVAL, "threads must be from 1 to 256, not %d", cfg->threads);
    if ((unsigned)cfg->class_mode > CT_CLASS_NONE)
        return ct_error(CT_EINVAL, "unknown class mode %d", (int)cfg->class_mode);
    if (cfg->output != CT_OUTPUT_FLOAT && cfg->output != CT_OUTPUT_RAW)
        return ct_error(CT_EINVAL, "unknown output kind %d", (int)cfg->output);
    if (cfg->shard_count > 1 && (cfg->shard_rank < 0 || cfg->shard_rank >= cfg->shard_count))
        return ct_error(CT_EINVAL, "shard %d of %d", cfg->shard_rank, cfg->shard_count);
    if (cfg->shard_count > cfg->batch_size)
        return ct_error(CT_EINVAL, "a batch of %d is shared by %d ranks: the global batch size "
                        "must be at least the number of ranks", cfg->batch_size,
                        cfg->shard_count);
    const size_t n = ct_dataset_count(ds);
    if (n == 0) return ct_error(CT_EINVAL, "the dataset has no samples");
    if (n > UINT32_MAX) return ct_error(CT_EINVAL, "the dataset has more than 2^32 samples");
    if (cfg->class_mode != CT_CLASS_NONE && !ct_dataset_labelled(ds))
        return ct_error(CT_EINVAL, "the dataset has no labels: use class mode none");
    const int k = ct_dataset_num_classes(ds);
    if (cfg->class_mode == CT_CLASS_BINARY && k != 2)
        return ct_error(CT_EINVAL, "class mode binary needs exactly 2 classes, not %d", k);
    return CT_OK;
}

/* The batch's shape (the images' own, or the target size and colour mode's channels), the
 * label and aux columns, and the augmentation. */
static ct_status set_shape(ct_loader *l, const ct_augment_config *aug) {
    const ct_loader_config *cfg = &l->cfg;
    l->in_memory = ct_dataset_in_memory(l->ds, &l->H, &l->W, &l->C);
    if (!l->in_memory) {
        const ct_image_options *io = &cfg->image;
        if (io->target_h <= 0 || io->target_w <= 0)
            return ct_error(CT_EINVAL, "a loader needs a target size (got %dx%d)", io->target_h,
                            io->target_w);
        if ((unsigned)io->color_mode > CT_COLOR_RGBA ||
            (unsigned)io->interpolation > CT_INTERP_HAMMING)
            return ct_error(CT_EINVAL, "unknown color mode or interpolation");
        l->H = io->target_h;
        l->W = io->target_w;
        l->C = ct_color_mode_channels(io->color_mode);
    }
    l->hwc = (size_t)l->H * l->W * l->C;
    const int classes = ct_dataset_num_classes(l->ds);
    l->K = cfg->class_mode == CT_CLASS_NONE
               ? 0
               : (cfg->class_mode == CT_CLASS_CATEGORICAL ? classes : 1);
    l->A = ct_dataset_aux_dim(l->ds);
    if (aug != NULL && ct_augment_enabled(aug)) {
        if ((unsigned)aug->fill_mode > CT_FILL_WRAP)
            return ct_error(CT_EINVAL, "unknown fill mode %d", (int)aug->fill_mode);
        l->augment = true;
        l->aug = *aug;
    }
    if (cfg->output == CT_OUTPUT_FLOAT) return ct_standardize_check(&cfg->standardize, l->C);
    return CT_OK;
}

/* The sample order and, for files, the decoded-image cache and its table. */
static ct_status alloc_tables(ct_loader *l) {
    l->order = malloc(l->n * sizeof *l->order);
    if (l->order == NULL) return ct_error(CT_ENOMEM, "cannot allocate the sample order");
    for (size_t i = 0; i < l->n; i++) l->order[i] = (uint32_t)i;
    if (l->cfg.shard_count > 1 && (l->global = malloc(l->n * sizeof *l->global)) == NULL)
        return ct_error(CT_ENOMEM, "cannot allocate the sample order");
    if (l->in_memory) return CT_OK;
    l->cache_state = calloc(l->n, 1);
    if (l->cache_state == NULL) return ct_error(CT_ENOMEM, "cannot allocate the cache table");
    if (l->cfg.cache_bytes > 0 && l->hwc <= l->cfg.cache_bytes / l->n)
        l->cache = malloc(l->n * l->hwc); /* NULL: too big after all, stream instead */
    return CT_OK;
}

/* The batches in flight: the caller's buffers, or the loader's own. */
static ct_status alloc_slots(ct_loader *l) {
    const ct_loader_config *cfg = &l->cfg;
    l->n_slots = cfg->n_buffers > 0 ? cfg->n_buffers : cfg->threads + 1;
    if (cfg->buffers != NULL && cfg->n_buffers < 1)
        return ct_error(CT_EINVAL, "buffers given but n_buffers is %d", cfg->n_buffers);
    l->slots = calloc((size_t)l->n_slots, sizeof *l->slots);
    if (l->slots == NULL) return ct_error(CT_ENOMEM, "cannot allocate %d batch slots", l->n_slots);
    l->own_buffers = cfg->buffers == NULL;
    for (int i = 0; i < l->n_slots; i++) {
        slot *sl = &l->slots[i];
        sl->state = SLOT_FREE;
        sl->bad = calloc(l->B, 1);
        if (sl->bad == NULL) return ct_error(CT_ENOMEM, "cannot allocate batch slots");
        ct_status s;
        if (l->own_buffers) {
            if ((s = alloc_buffers(l, &sl->b)) != CT_OK) return s;
        } else {
            if ((s = check_buffers(l, &cfg->buffers[i], i)) != CT_OK) return s;
            sl->b = cfg->buffers[i];
        }
    }
    return CT_OK;
}

/* Frees what alloc_tables and alloc_slots made, and the loader: all of it when no thread or lock
 * exists yet, the last step of ct_loader_free otherwise. */
static void free_tables(ct_loader *l) {
    for (int i = 0; l->slots != NULL && i < l->n_slots; i++) {
        free(l->slots[i].bad);
        if (l->own_buffers) {
            free(l->slots[i].b.x);
            free(l->slots[i].b.x_u8);
            free(l->slots[i].b.y);
            free(l->slots[i].b.aux);
            free(l->slots[i].b.index);
        }
    }
    free(l->slots);
    free(l->order);
    free(l->global);
    free(l->cache);
    free(l->cache_state);
    free(l);
}

static ct_status start_workers(ct_loader *l) {
    const int threads = l->cfg.threads;
    l->workers = calloc((size_t)threads, sizeof *l->workers);
    if (l->workers == NULL) return ct_error(CT_ENOMEM, "cannot allocate %d workers", threads);
    for (int t = 0; t < threads; t++) {
        worker *w = &l->workers[t];
        w->l = l;
        w->scratch = malloc(l->hwc * sizeof(float));
        if (w->scratch == NULL) return ct_error(CT_ENOMEM, "cannot allocate worker scratch");
        if (pthread_create(&w->tid, NULL, worker_main, w) != 0) {
            free(w->scratch);
            w->scratch = NULL;
            return ct_error(CT_EIO, "cannot start loader thread %d", t);
        }
        l->n_workers++;
    }
    return CT_OK;
}

static ct_status init(ct_loader **out, const ct_dataset *ds, const ct_loader_config *cfg,
                      const ct_augment_config *aug) {
    *out = NULL;
    ct_status s = check_config(ds, cfg);
    if (s != CT_OK) return s;
    ct_loader *l = calloc(1, sizeof *l);
    if (l == NULL) return ct_error(CT_ENOMEM, "cannot allocate a loader");
    l->ds = ds;
    l->cfg = *cfg;
    l->B = (size_t)cfg->batch_size;
    l->n = ct_dataset_count(ds);
    l->c = ct_shard_rows(l->B, cfg->shard_rank, cfg->shard_count, NULL);
    l->n_local = ct_shard_count_samples(l->n, l->B, cfg->shard_rank, cfg->shard_count);
    l->n_batches = ct_loader_num_batches(l);
    if ((s = set_shape(l, aug)) != CT_OK || (s = alloc_tables(l)) != CT_OK ||
        (s = alloc_slots(l)) != CT_OK) {
        free_tables(l);
        return s;
    }
    pthread_mutex_init(&l->mu, NULL);
    pthread_cond_init(&l->work_cv, NULL);
    pthread_cond_init(&l->ready_cv, NULL);
    pthread_cond_init(&l->idle_cv, NULL);
    if ((s = start_workers(l)) != CT_OK) {
        ct_loader_free(l);
        return s;
    }
    *out = l;
    return CT_OK;
}

ct_status ct_loader_init(ct_loader **out, const ct_dataset *ds, const ct_loader_config *cfg) {
    return init(out, ds, cfg, NULL);
}

ct_status ct_loader_init_training(ct_loader **out, const ct_dataset *ds,
                                  const ct_loader_config *cfg, const ct_augment_config *aug) {
    *out = NULL;
    const ct_role role = ct_dataset_role(ds);
    if (aug != NULL && ct_augment_enabled(aug) &&
        (role == CT_ROLE_VALIDATION || role == CT_ROLE_TEST))
        return ct_error(CT_EINVAL,
                        "augmentation is for the training stream only: this dataset "
                        "is %s data (use ct_loader_init)",
                        role == CT_ROLE_VALIDATION ? "validation" : "test");
    return init(out, ds, cfg, aug);
}

void ct_loader_free(ct_loader *l) {
    if (l == NULL) return;
    pthread_mutex_lock(&l->mu);
    l->stop = true;
    l->active = false;
    l->gen++;
    pthread_cond_broadcast(&l->work_cv);
    pthread_mutex_unlock(&l->mu);
    for (int t = 0; t < l->n_workers; t++) pthread_join(l->workers[t].tid, NULL);
    if (l->workers != NULL)
        for (int t = 0; t < l->cfg.threads; t++) free(l->workers[t].scratch);
    free(l->workers);
    pthread_cond_destroy(&l->work_cv);
    pthread_cond_destroy(&l->ready_cv);
    pthread_cond_destroy(&l->idle_cv);
    pthread_mutex_destroy(&l->mu);
    for (size_t i = 0; i < l->n_bad; i++) free(l->bad[i].msg);
    free(l->bad);
    free_tables(l);
}

/* ---- epochs ---- */

ct_status ct_loader_begin_epoch_at(ct_loader *l, uint32_t epoch, uint32_t first_batch) {
    const size_t n_batches = ct_loader_num_batches(l);
    if (first_batch > n_batches)
        return ct_error(CT_EINVAL, "batch %u is past the end of the epoch (%zu batches)",
                        first_batch, n_batches);
    pthread_mutex_lock(&l->mu);
    abort_locked(l);
    if (l->cfg.shuffle) {
        /* The epoch's permutation, its draws addressed by (epoch, position): core/shuffle.h. */
        ct_shuffle_order(l->order, l->n, l->cfg.seed, (uint32_t)CT_RNG_SHUFFLE << 16, epoch);
    } else {
        for (size_t i = 0; i < l->n; i++) l->order[i] = (uint32_t)i;
    }
    if (l->global != NULL) {
        memcpy(l->global, l->order, l->n * sizeof *l->order);
        ct_shard_take(l->order, l->global, l->n, l->B, l->cfg.shard_rank, l->cfg.shard_count);
    }
    l->epoch = epoch;
    l->n_batches = n_batches;
    l->next_pos = (size_t)first_batch * l->c;
    l->end_pos = l->n_local;
    l->next_deliver = first_batch;
    l->failed = false;
    l->active = true;
    l->began = true;
    pthread_cond_broadcast(&l->work_cv);
    pthread_mutex_unlock(&l->mu);
    return CT_OK;
}

ct_status ct_loader_begin_epoch(ct_loader *l, uint32_t epoch) {
    return ct_loader_begin_epoch_at(l, epoch, 0);
}

/* Moves row `from` of a batch to row `to` (to < from). */
static void move_row(const ct_loader *l, ct_batch *b, int to, int from) {
    const size_t hwc = l->hwc;
    if (b->x_u8 != NULL && l->cfg.output == CT_OUTPUT_RAW && !l->in_memory)
        memmove(b->x_u8 + (size_t)to * hwc, b->x_u8 + (size_t)from * hwc, hwc);
    else
        memmove(b->x + (size_t)to * hwc, b->x + (size_t)from * hwc, hwc * sizeof(float));
    if (l->K > 0)
        memmove(b->y + (size_t)to * l->K, b->y + (size_t)from * l->K, (size_t)l->K * sizeof(float));
    if (l->A > 0)
        memmove(b->aux + (size_t)to * l->A, b->aux + (size_t)from * l->A,
                (size_t)l->A * sizeof(float));
    b->index[to] = b->index[from];
}

ct_status ct_loader_next(ct_loader *l, const ct_batch **out) {
    *out = NULL;
    pthread_mutex_lock(&l->mu);
    if (!l->began) {
        pthread_mutex_unlock(&l->mu);
        return ct_error(CT_EINVAL, "no epoch begun: call ct_loader_begin_epoch first");
    }
    for (;;) {
        if (l->failed) {
            ct_status s = ct_error(l->fail_status, "%s", l->fail_msg);
            pthread_mutex_unlock(&l->mu);
            return s;
        }
        if (l->next_deliver >= l->n_batches) {
            pthread_mutex_unlock(&l->mu);
            return CT_OK;
        }
        if (batch_count(l, l->next_deliver) == 0) { /* a rank's empty share of the last batch */
            l->empty = (ct_batch){.epoch = l->epoch, .number = (uint32_t)l->next_deliver++};
            *out = &l->empty;
            pthread_mutex_unlock(&l->mu);
            return CT_OK;
        }
        int si = -1;
        bool in_flight = false, any_free = false;
        for (int i = 0; i < l->n_slots; i++) {
            slot *s = &l->slots[i];
            if ((s->state == SLOT_FILLING || s->state == SLOT_READY) && s->batch == l->next_deliver)
                si = i;
            if (s->state == SLOT_FILLING || s->state == SLOT_READY) in_flight = true;
            if (s->state == SLOT_FREE) any_free = true;
        }
        if (si < 0 && !in_flight && !any_free) {
            pthread_mutex_unlock(&l->mu);
            return ct_error(CT_EINVAL,
                            "all %d batch buffers are held: release one "
                            "(ct_loader_release) before asking for the next batch",
                            l->n_slots);
        }
        if (si < 0 || l->slots[si].state != SLOT_READY) {
            pthread_cond_wait(&l->ready_cv, &l->mu);
            continue;
        }
        slot *s = &l->slots[si];
        if (s->err_row >= 0) {
            /* Stop the epoch here: no more work, and this error until the next begin. */
            l->failed = true;
            l->fail_status = s->err;
            snprintf(l->fail_msg, sizeof l->fail_msg, "%s", s->msg);
            l->active = false;
            s->state = SLOT_FREE;
            continue;
        }
        int n = 0;
        for (int r = 0; r < s->count; r++) {
            if (s->bad[r]) continue;
            if (n != r) move_row(l, &s->b, n, r);
            n++;
        }
        l->next_deliver++;
        /* All skipped: one rank moves on; a data-parallel rank steps with an empty share. */
        if (n == 0 && l->cfg.shard_count <= 1) {
            s->state = SLOT_FREE;
            pthread_cond_broadcast(&l->work_cv);
            continue;
        }
        s->b.n = n;
        s->b.epoch = l->epoch;
        s->b.number = (uint32_t)s->batch;
        s->state = SLOT_HELD;
        *out = &s->b;
        pthread_mutex_unlock(&l->mu);
        return CT_OK;
    }
}

void ct_loader_release(ct_loader *l, const ct_batch *b) {
    if (l == NULL || b == NULL) return;
    pthread_mutex_lock(&l->mu);
    for (int i = 0; i < l->n_slots; i++)
        if (&l->slots[i].b == b && l->slots[i].state == SLOT_HELD) {
            l->slots[i].state = SLOT_FREE;
            pthread_cond_broadcast(&l->work_cv);
            pthread_cond_broadcast(&l->ready_cv);
        }
    pthread_mutex_unlock(&l->mu);
}

/* ---- cache ---- */

typedef struct fill_ctx {
    ct_loader *l;
    ct_status *status; /* (n) */
    char **msg;        /* (n) */
} fill_ctx;

static void fill_one(void *arg, size_t i, int thread) {
    (void)thread;
    fill_ctx *f = arg;
    ct_loader *l = f->l;
    if (l->cache_state[i] != CACHE_EMPTY) return;
    const uint8_t *u8;
    ct_image img;
    ct_error_clear();
    ct_status s = file_pixels(l, (uint32_t)i, &u8, &img);
    ct_image_free(&img);
    if (s != CT_OK) {
        f->status[i] = s;
        f->msg[i] = ct_data_strdup(ct_last_error());
    }
}

ct_status ct_loader_fill_cache(ct_loader *l) {
    if (l->cache == NULL) return CT_OK;
    pthread_mutex_lock(&l->mu);
    abort_locked(l);
    pthread_mutex_unlock(&l->mu);
    fill_ctx f = {l, calloc(l->n, sizeof(ct_status)), calloc(l->n, sizeof(char *))};
    ct_status s = CT_OK;
    if (f.status == NULL || f.msg == NULL) {
        s = ct_error(CT_ENOMEM, "cannot allocate %zu reports", l->n);
    } else {
        s = ct_data_parallel_for(l->n, l->cfg.threads, fill_one, &f);
        /* Report in dataset order: the first bad file, or every one under skip_bad. */
        for (size_t i = 0; i < l->n && s == CT_OK; i++) {
            if (f.status[i] == CT_OK) continue;
            const char *msg = f.msg[i] != NULL ? f.msg[i] : "cannot be decoded";
            if (l->cfg.skip_bad) {
                pthread_mutex_lock(&l->mu);
                note_bad(l, (uint32_t)i, msg);
                pthread_mutex_unlock(&l->mu);
            } else {
                s = ct_error(f.status[i], "%s", msg);
            }
        }
    }
    for (size_t i = 0; f.msg != NULL && i < l->n; i++) free(f.msg[i]);
    free(f.msg);
    free(f.status);
    return s;
}

/* ---- queries ---- */

size_t ct_loader_num_batches(const ct_loader *l) { return (l->n + l->B - 1) / l->B; }
size_t ct_loader_num_samples(const ct_loader *l) { return l->n_local; }
bool ct_loader_caching(const ct_loader *l) { return l->cache != NULL; }
const uint32_t *ct_loader_order(const ct_loader *l) { return l->order; }

void ct_loader_shape(const ct_loader *l, int *h, int *w, int *c, int *k) {
    if (h != NULL) *h = l->H;
    if (w != NULL) *w = l->W;
    if (c != NULL) *c = l->C;
    if (k != NULL) *k = l->K;
}

size_t ct_loader_bad_count(const ct_loader *l) {
    pthread_mutex_lock((pthread_mutex_t *)&l->mu);
    size_t n = l->n_bad;
    pthread_mutex_unlock((pthread_mutex_t *)&l->mu);
    return n;
}

const char *ct_loader_bad_message(const ct_loader *l, size_t i) {
    return i < l->n_bad && l->bad[i].msg != NULL ? l->bad[i].msg : "";
}

size_t ct_loader_bad_sample(const ct_loader *l, size_t i) {
    return i < l->n_bad ? l->bad[i].sample : (size_t)-1;
}

/* ---- featurewise statistics ---- */

ct_status ct_loader_feature_stats(const ct_dataset *ds, const ct_loader_config *cfg, float mean[4],
                                  float std[4]) {
    ct_loader_config c = *cfg;
    c.standardize.featurewise_center = false;
    c.standardize.featurewise_std_normalization = false;
    c.output = CT_OUTPUT_FLOAT;
    c.shuffle = false;
    c.buffers = NULL;
    c.n_buffers = 0;
    c.class_mode = CT_CLASS_NONE; /* labels play no part */
    ct_loader *l = NULL;
    ct_status s = ct_loader_init(&l, ds, &c);
    if (s != CT_OK) return s;
    /* Sums of (x - shift) per channel, shifted by the first value to keep the variance exact. */
    double sum[4] = {0}, sq[4] = {0}, shift[4] = {0};
    bool have_shift = false;
    size_t count = 0;
    const int C = l->C;
    if ((s = ct_loader_begin_epoch(l, 0)) == CT_OK) {
        const ct_batch *b;
        while ((s = ct_loader_next(l, &b)) == CT_OK && b != NULL) {
            const size_t np = (size_t)b->n * l->H * l->W;
            if (!have_shift) {
                for (int k = 0; k < C; k++) shift[k] = b->x[k];
                have_shift = true;
            }
            for (size_t i = 0; i < np; i++)
                for (int k = 0; k < C; k++) {
                    double d = (double)b->x[i * C + k] - shift[k];
                    sum[k] += d;
                    sq[k] += d * d;
                }
            count += np;
            ct_loader_release(l, b);
        }
    }
    ct_loader_free(l);
    if (s != CT_OK) return s;
    if (count == 0) return ct_error(CT_EINVAL, "no images to compute statistics from");
    for (int k = 0; k < 4; k++) {
        mean[k] = 0.0f;
        std[k] = 0.0f;
    }
    for (int k = 0; k < C; k++) {
        double m = sum[k] / (double)count;
        double var = sq[k] / (double)count - m * m;
        mean[k] = (float)(shift[k] + m);
        std[k] = (float)sqrt(var > 0.0 ? var : 0.0);
    }
    return CT_OK;
}
