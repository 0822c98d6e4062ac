/* The threaded loader: batches identical for 1 and 4 threads (cached or streamed, augmented or
 * not, float or raw), the seeded per-epoch order, the last partial batch, labels in every class
 * mode, caller buffers and the release protocol, resuming mid-epoch, shutting down mid-epoch,
 * bad files (stop with the file's name, or skip and count), augmentation only on the training
 * stream and equal to the CPU reference applied to the raw batch, featurewise statistics, and
 * in-memory iceberg data. */
#include "test_data_util.h"

#include <math.h>

#include "data/data.h"

static char *tmp;
static char root[4096];
static void setup(void) {
    tmp = td_tmpdir();
    snprintf(root, sizeof root, "%s/ds", tmp);
}
static void teardown(void) {
    td_rmrf(tmp);
    tmp = NULL;
}
TestSuite(data_loader, .init = setup, .fini = teardown, .timeout = 300);

#define N_IMAGES 23
#define SIDE     24

/* Three classes of 9, 8 and 6 images of assorted sizes and formats. */
static void make_images(const char *bad_rel) {
    static const char *const cls[3] = {"cat", "dog", "eel"};
    static const int count[3] = {9, 8, 6};
    int i = 0;
    for (int k = 0; k < 3; k++)
        for (int j = 0; j < count[k]; j++, i++) {
            const int w = 30 + (i * 7) % 25, h = 28 + (i * 5) % 20, c = i % 4 == 1 ? 1 : 3;
            uint8_t *px = td_pattern(h, w, c);
            for (size_t q = 0; q < (size_t)h * w * c; q++) px[q] = (uint8_t)(px[q] + i * 11);
            char rel[64];
            snprintf(rel, sizeof rel, "ds/%s/img%02d.%s", cls[k], j, i % 3 == 2 ? "jpg" : "png");
            if (i % 3 == 2)
                td_write_jpeg(td_path(tmp, rel), px, h, w, c, 90);
            else
                td_write_png8(td_path(tmp, rel), px, h, w, c);
            free(px);
        }
    if (bad_rel != NULL) {
        char rel[128];
        snprintf(rel, sizeof rel, "ds/%s", bad_rel);
        td_write(td_path(tmp, rel), "\x89PNG\r\n\x1a\n\0\0\0\rIHDR", 16);
    }
}

static ct_dataset *open_ds(void) {
    ct_dataset *ds = NULL;
    cr_assert_eq(ct_dataset_open_folder(&ds, root, NULL), CT_OK, "%s", ct_last_error());
    return ds;
}

static void base_config(ct_loader_config *c) {
    ct_loader_config_defaults(c);
    c->batch_size = 5;
    c->seed = 99;
    c->image.target_h = c->image.target_w = SIDE;
    c->image.interpolation = CT_INTERP_BILINEAR;
    c->standardize.preprocess = CT_PREPROCESS_CAFFE;
}

static ct_augment_config some_augmentation(void) {
    ct_augment_config a = {0};
    a.rotation_range = 15.0f;
    a.width_shift = (ct_shift_range){CT_SHIFT_FRACTION, 0.1f};
    a.height_shift = (ct_shift_range){CT_SHIFT_CHOICE, 3.0f};
    a.shear_range = 5.0f;
    a.zoom_lo = 0.9f;
    a.zoom_hi = 1.1f;
    a.channel_shift_range = 10.0f;
    a.brightness_lo = 0.8f;
    a.brightness_hi = 1.2f;
    a.horizontal_flip = a.vertical_flip = true;
    a.fill_mode = CT_FILL_REFLECT;
    return a;
}

/* Everything one epoch delivers, concatenated. */
typedef struct epoch_dump {
    size_t n_batches, n_samples;
    int sizes[64];
    float *x;
    uint8_t *x_u8;
    float *y;
    uint32_t *index;
} epoch_dump;

static void dump_free(epoch_dump *d) {
    free(d->x);
    free(d->x_u8);
    free(d->y);
    free(d->index);
    memset(d, 0, sizeof *d);
}

static ct_status run_epoch(ct_loader *l, uint32_t epoch, uint32_t first, epoch_dump *d) {
    memset(d, 0, sizeof *d);
    int h, w, c, k;
    ct_loader_shape(l, &h, &w, &c, &k);
    const size_t hwc = (size_t)h * w * c;
    d->x = calloc(64 * 5 * hwc, sizeof(float));
    d->x_u8 = calloc(64 * 5 * hwc, 1);
    d->y = calloc(64 * 5 * (size_t)(k > 0 ? k : 1), sizeof(float));
    d->index = calloc(64 * 5, sizeof(uint32_t));
    ct_status s = ct_loader_begin_epoch_at(l, epoch, first);
    if (s != CT_OK) return s;
    for (;;) {
        const ct_batch *b = NULL;
        if ((s = ct_loader_next(l, &b)) != CT_OK) return s;
        if (b == NULL) break;
        cr_assert_lt(d->n_batches, 64);
        cr_assert_eq(b->epoch, epoch);
        cr_assert_eq(b->number, first + d->n_batches);
        d->sizes[d->n_batches++] = b->n;
        const size_t at = d->n_samples;
        if (b->x != NULL) memcpy(d->x + at * hwc, b->x, (size_t)b->n * hwc * sizeof(float));
        if (b->x_u8 != NULL) memcpy(d->x_u8 + at * hwc, b->x_u8, (size_t)b->n * hwc);
        if (k > 0) memcpy(d->y + at * k, b->y, (size_t)b->n * k * sizeof(float));
        memcpy(d->index + at, b->index, (size_t)b->n * sizeof(uint32_t));
        d->n_samples += (size_t)b->n;
        ct_loader_release(l, b);
    }
    return CT_OK;
}

static void expect_same(const epoch_dump *a, const epoch_dump *b, size_t hwc, int k,
                        const char *what) {
    cr_assert_eq(a->n_batches, b->n_batches, "%s: batch counts differ", what);
    cr_assert_eq(a->n_samples, b->n_samples, "%s: sample counts differ", what);
    for (size_t i = 0; i < a->n_batches; i++) cr_assert_eq(a->sizes[i], b->sizes[i], "%s", what);
    cr_expect(memcmp(a->index, b->index, a->n_samples * sizeof(uint32_t)) == 0, "%s: order", what);
    cr_expect(memcmp(a->x, b->x, a->n_samples * hwc * sizeof(float)) == 0, "%s: float pixels",
              what);
    cr_expect(memcmp(a->x_u8, b->x_u8, a->n_samples * hwc) == 0, "%s: raw pixels", what);
    if (k > 0)
        cr_expect(memcmp(a->y, b->y, a->n_samples * k * sizeof(float)) == 0, "%s: labels", what);
}

Test(data_loader, batches_do_not_depend_on_the_thread_count) {
    make_images(NULL);
    ct_dataset *ds = open_ds();
    ct_augment_config aug = some_augmentation();
    for (int variant = 0; variant < 6; variant++) {
        const bool cache = variant & 1, augment = (variant >> 1) == 1, raw = (variant >> 1) == 2;
        epoch_dump d[2][2];
        for (int t = 0; t < 2; t++) {
            ct_loader_config c;
            base_config(&c);
            c.threads = t == 0 ? 1 : 4;
            c.cache_bytes = cache ? (size_t)1 << 30 : 0;
            c.output = raw ? CT_OUTPUT_RAW : CT_OUTPUT_FLOAT;
            ct_loader *l = NULL;
            cr_assert_eq(ct_loader_init_training(&l, ds, &c, augment ? &aug : NULL), CT_OK, "%s",
                         ct_last_error());
            cr_assert_eq(ct_loader_caching(l), cache);
            for (uint32_t e = 0; e < 2; e++)
                cr_assert_eq(run_epoch(l, e, 0, &d[t][e]), CT_OK, "%s", ct_last_error());
            ct_loader_free(l);
        }
        char what[96];
        for (int e = 0; e < 2; e++) {
            snprintf(what, sizeof what, "cache %d augment %d raw %d epoch %d", cache, augment, raw,
                     e);
            expect_same(&d[0][e], &d[1][e], SIDE * SIDE * 3, 3, what);
        }
        /* The last partial batch is kept: 23 = 4 x 5 + 3. */
        cr_expect_eq(d[0][0].n_batches, 5);
        cr_expect_eq(d[0][0].sizes[4], 3);
        cr_expect_eq(d[0][0].n_samples, N_IMAGES);
        for (int t = 0; t < 2; t++)
            for (int e = 0; e < 2; e++) dump_free(&d[t][e]);
    }
    ct_dataset_free(ds);
}

Test(data_loader, order_is_a_seeded_permutation_per_epoch) {
    make_images(NULL);
    ct_dataset *ds = open_ds();
    ct_loader_config c;
    base_config(&c);
    c.output = CT_OUTPUT_RAW;
    ct_loader *l = NULL;
    cr_assert_eq(ct_loader_init(&l, ds, &c), CT_OK, "%s", ct_last_error());
    epoch_dump e0, e1, e0b;
    cr_assert_eq(run_epoch(l, 0, 0, &e0), CT_OK);
    cr_assert_eq(run_epoch(l, 1, 0, &e1), CT_OK);
    cr_assert_eq(run_epoch(l, 0, 0, &e0b), CT_OK);
    int seen[N_IMAGES] = {0};
    for (int i = 0; i < N_IMAGES; i++) seen[e0.index[i]]++;
    for (int i = 0; i < N_IMAGES; i++)
        cr_expect_eq(seen[i], 1, "sample %d seen %d times", i, seen[i]);
    cr_expect(memcmp(e0.index, e1.index, sizeof(uint32_t) * N_IMAGES) != 0,
              "epochs 0 and 1 in the same order");
    cr_expect(memcmp(e0.index, e0b.index, sizeof(uint32_t) * N_IMAGES) == 0,
              "epoch 0 twice differs");
    /* The order is Fisher-Yates with draws addressed by (epoch, position). */
    uint32_t order[N_IMAGES];
    for (uint32_t i = 0; i < N_IMAGES; i++) order[i] = i;
    for (uint32_t i = N_IMAGES - 1; i > 0; i--) {
        uint32_t wd = ct_rng_word(99, (uint32_t)CT_RNG_SHUFFLE << 16, 1, 0, i);
        uint32_t j = (uint32_t)(((uint64_t)wd * (i + 1)) >> 32), t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
    cr_expect(memcmp(order, e1.index, sizeof order) == 0, "epoch 1 is not the documented shuffle");
    cr_expect(memcmp(ct_loader_order(l), e0b.index, sizeof order) == 0);
    /* Resuming at batch 2 delivers what batches 2.. of the full epoch delivered. */
    epoch_dump r;
    cr_assert_eq(run_epoch(l, 1, 2, &r), CT_OK);
    cr_assert_eq(r.n_batches, 3);
    cr_expect(memcmp(r.index, e1.index + 10, 13 * sizeof(uint32_t)) == 0);
    cr_expect(memcmp(r.x_u8, e1.x_u8 + 10 * SIDE * SIDE * 3, 13 * SIDE * SIDE * 3) == 0);
    cr_expect_eq(ct_loader_begin_epoch_at(l, 0, 6), CT_EINVAL);
    ct_loader_free(l);
    /* shuffle off: the dataset order. */
    c.shuffle = false;
    cr_assert_eq(ct_loader_init(&l, ds, &c), CT_OK);
    epoch_dump s;
    cr_assert_eq(run_epoch(l, 3, 0, &s), CT_OK);
    for (uint32_t i = 0; i < N_IMAGES; i++) cr_expect_eq(s.index[i], i);
    ct_loader_free(l);
    dump_free(&e0);
    dump_free(&e1);
    dump_free(&e0b);
    dump_free(&r);
    dump_free(&s);
    ct_dataset_free(ds);
}

Test(data_loader, pixels_and_labels_match_the_decoder) {
    make_images(NULL);
    ct_dataset *ds = open_ds();
    static const ct_class_mode modes[3] = {CT_CLASS_CATEGORICAL, CT_CLASS_SPARSE, CT_CLASS_NONE};
    for (int m = 0; m < 3; m++) {
        ct_loader_config c;
        base_config(&c);
        c.class_mode = modes[m];
        c.cache_bytes = m == 0 ? (size_t)1 << 30 : 0;
        ct_loader *l = NULL;
        cr_assert_eq(ct_loader_init(&l, ds, &c), CT_OK, "%s", ct_last_error());
        int h, w, ch, k;
        ct_loader_shape(l, &h, &w, &ch, &k);
        cr_expect_eq(k, m == 0 ? 3 : (m == 1 ? 1 : 0));
        cr_assert_eq(ct_loader_begin_epoch(l, 0), CT_OK);
        const ct_batch *b;
        float *want = malloc((size_t)SIDE * SIDE * 3 * sizeof(float));
        while (ct_loader_next(l, &b) == CT_OK && b != NULL) {
            for (int r = 0; r < b->n; r++) {
                const uint32_t s = b->index[r];
                const int label = ct_dataset_label(ds, s);
                if (m == 0)
                    for (int j = 0; j < 3; j++)
                        cr_expect_eq(b->y[r * 3 + j], j == label ? 1.0f : 0.0f);
                if (m == 1) cr_expect_eq(b->y[r], (float)label);
                ct_image img;
                cr_assert_eq(ct_image_load(ct_dataset_path(ds, s), &c.image, &img), CT_OK);
                for (int i = 0; i < SIDE * SIDE * 3; i++) want[i] = img.data[i];
                ct_preprocess_input(want, SIDE * SIDE, 3, CT_PREPROCESS_CAFFE);
                cr_expect(memcmp(want, b->x + (size_t)r * SIDE * SIDE * 3,
                                 sizeof(float) * SIDE * SIDE * 3) == 0,
                          "sample %u differs from decode + caffe", s);
                ct_image_free(&img);
            }
            ct_loader_release(l, b);
        }
        free(want);
        ct_loader_free(l);
    }
    ct_dataset_free(ds);
}

Test(data_loader, augmentation_equals_the_cpu_reference_on_the_raw_batch) {
    make_images(NULL);
    ct_dataset *ds = open_ds();
    ct_augment_config aug = some_augmentation();
    ct_loader_config c;
    base_config(&c);
    ct_loader *lf = NULL, *lr = NULL, *le = NULL;
    cr_assert_eq(ct_loader_init_training(&lf, ds, &c, &aug), CT_OK, "%s", ct_last_error());
    c.output = CT_OUTPUT_RAW;
    cr_assert_eq(ct_loader_init(&lr, ds, &c), CT_OK);
    c.output = CT_OUTPUT_FLOAT;
    cr_assert_eq(ct_loader_init(&le, ds, &c), CT_OK); /* evaluation: never augmented */
    epoch_dump f, r, e;
    cr_assert_eq(run_epoch(lf, 4, 0, &f), CT_OK);
    cr_assert_eq(run_epoch(lr, 4, 0, &r), CT_OK);
    cr_assert_eq(run_epoch(le, 4, 0, &e), CT_OK);
    const size_t hwc = SIDE * SIDE * 3;
    float *in = malloc(hwc * sizeof(float)), *out = malloc(hwc * sizeof(float));
    int differs_from_eval = 0;
    for (size_t i = 0; i < f.n_samples; i++) {
        cr_assert_eq(f.index[i], r.index[i]);
        /* What a device kernel does with the raw batch, the epoch and the sample index. */
        for (size_t q = 0; q < hwc; q++) in[q] = r.x_u8[i * hwc + q];
        ct_augment_params p = ct_augment_draw(&aug, c.seed, 4, r.index[i], SIDE, SIDE);
        ct_augment_image(out, in, SIDE, SIDE, 3, &aug, &p);
        ct_preprocess_input(out, SIDE * SIDE, 3, CT_PREPROCESS_CAFFE);
        cr_expect(memcmp(out, f.x + i * hwc, hwc * sizeof(float)) == 0, "sample %u", f.index[i]);
        differs_from_eval += memcmp(f.x + i * hwc, e.x + i * hwc, hwc * sizeof(float)) != 0;
    }
    cr_expect_eq(differs_from_eval, N_IMAGES, "every training image should be augmented");
    free(in);
    free(out);
    dump_free(&f);
    dump_free(&r);
    dump_free(&e);
    ct_loader_free(lf);
    ct_loader_free(lr);
    ct_loader_free(le);

    /* Validation and test data are never augmented: the training init refuses them. */
    ct_dataset *tr, *va;
    cr_assert_eq(ct_dataset_split(ds, 0.3, CT_SPLIT_KERAS, 0, &tr, &va), CT_OK);
    ct_loader *l = NULL;
    cr_expect_eq(ct_loader_init_training(&l, va, &c, &aug), CT_EINVAL);
    cr_expect(strstr(ct_last_error(), "training stream only") != NULL, "%s", ct_last_error());
    cr_expect_null(l);
    cr_expect_eq(ct_loader_init_training(&l, va, &c, NULL), CT_OK);
    ct_loader_free(l);
    cr_expect_eq(ct_loader_init_training(&l, tr, &c, &aug), CT_OK);
    ct_loader_free(l);
    ct_dataset_free(tr);
    ct_dataset_free(va);
    ct_dataset_free(ds);
}

Test(data_loader, caller_buffers_and_the_release_protocol) {
    make_images(NULL);
    ct_dataset *ds = open_ds();
    ct_loader_config c;
    base_config(&c);
    const size_t hwc = SIDE * SIDE * 3;
    ct_batch bufs[2];
    for (int i = 0; i < 2; i++) {
        bufs[i] = (ct_batch){.x = malloc(5 * hwc * sizeof(float)),
                             .y = malloc(5 * 3 * sizeof(float)),
                             .index = malloc(5 * sizeof(uint32_t))};
    }
    c.buffers = bufs;
    c.n_buffers = 2;
    ct_loader *l = NULL;
    cr_assert_eq(ct_loader_init(&l, ds, &c), CT_OK, "%s", ct_last_error());
    cr_assert_eq(ct_loader_begin_epoch(l, 0), CT_OK);
    const ct_batch *a, *b, *x;
    cr_assert_eq(ct_loader_next(l, &a), CT_OK);
    cr_assert_eq(ct_loader_next(l, &b), CT_OK);
    cr_expect((a->x == bufs[0].x || a->x == bufs[1].x) && a->x != b->x, "caller buffers not used");
    cr_expect_eq(ct_loader_next(l, &x), CT_EINVAL);
    cr_expect(strstr(ct_last_error(), "all 2 batch buffers are held") != NULL, "%s",
              ct_last_error());
    ct_loader_release(l, a);
    cr_assert_eq(ct_loader_next(l, &x), CT_OK);
    cr_expect_eq(x->number, 2);
    /* Shut down mid-epoch with batches held and others in flight. */
    ct_loader_free(l);
    for (int i = 0; i < 2; i++) {
        free(bufs[i].x);
        free(bufs[i].y);
        free(bufs[i].index);
    }
    /* A missing buffer is refused. */
    ct_batch nolabels = {.x = malloc(5 * hwc * sizeof(float)), .index = malloc(20)};
    c.buffers = &nolabels;
    c.n_buffers = 1;
    cr_expect_eq(ct_loader_init(&l, ds, &c), CT_EINVAL);
    cr_expect(strstr(ct_last_error(), "y is NULL") != NULL, "%s", ct_last_error());
    free(nolabels.x);
    free(nolabels.index);
    /* next before begin, and a new epoch in the middle of one. */
    c.buffers = NULL;
    c.n_buffers = 0;
    c.threads = 3;
    cr_assert_eq(ct_loader_init(&l, ds, &c), CT_OK);
    cr_expect_eq(ct_loader_next(l, &x), CT_EINVAL);
    cr_assert_eq(ct_loader_begin_epoch(l, 0), CT_OK);
    cr_assert_eq(ct_loader_next(l, &x), CT_OK);
    ct_loader_release(l, x);
    epoch_dump d;
    cr_assert_eq(run_epoch(l, 1, 0, &d), CT_OK);
    cr_expect_eq(d.n_samples, N_IMAGES);
    dump_free(&d);
    cr_assert_eq(ct_loader_begin_epoch(l, 2), CT_OK);
    ct_loader_free(l); /* workers busy, nothing taken */
    ct_dataset_free(ds);
}

Test(data_loader, a_bad_file_stops_the_epoch_with_its_name) {
    make_images("dog/zz_broken.png");
    ct_dataset *ds = open_ds();
    const char *bad_name = "dog/zz_broken.png";
    size_t bad_index = 0;
    for (size_t i = 0; i < ct_dataset_count(ds); i++)
        if (strcmp(ct_dataset_name(ds, i), bad_name) == 0) bad_index = i;
    ct_loader_config c;
    base_config(&c);
    c.shuffle = false;
    for (int cache = 0; cache < 2; cache++) {
        c.cache_bytes = cache ? (size_t)1 << 30 : 0;
        ct_loader *l = NULL;
        cr_assert_eq(ct_loader_init(&l, ds, &c), CT_OK);
        cr_assert_eq(ct_loader_begin_epoch(l, 0), CT_OK);
        const ct_batch *b;
        size_t delivered = 0;
        ct_status s;
        while ((s = ct_loader_next(l, &b)) == CT_OK && b != NULL) {
            delivered += (size_t)b->n;
            ct_loader_release(l, b);
        }
        cr_expect_eq(s, CT_EFORMAT);
        cr_expect(
            strstr(ct_last_error(), bad_name) != NULL && strstr(ct_last_error(), "PNG") != NULL,
            "%s", ct_last_error());
        /* Every batch before the one holding the file arrived. */
        cr_expect_eq(delivered, bad_index / 5 * 5);
        cr_expect_eq(ct_loader_next(l, &b), CT_EFORMAT, "the error must stick");
        if (cache) {
            cr_expect_eq(ct_loader_fill_cache(l), CT_EFORMAT);
            cr_expect(strstr(ct_last_error(), bad_name) != NULL, "%s", ct_last_error());
        }
        ct_loader_free(l);
    }
    /* skip_bad: the file is dropped from its batch and counted, for any thread count. */
    c.skip_bad = true;
    c.shuffle = true;
    epoch_dump d[2];
    for (int t = 0; t < 2; t++) {
        c.threads = t ? 4 : 1;
        ct_loader *l = NULL;
        cr_assert_eq(ct_loader_init(&l, ds, &c), CT_OK);
        cr_assert_eq(run_epoch(l, 0, 0, &d[t]), CT_OK, "%s", ct_last_error());
        cr_expect_eq(d[t].n_samples, ct_dataset_count(ds) - 1);
        cr_assert_eq(ct_loader_bad_count(l), 1);
        cr_expect_eq(ct_loader_bad_sample(l, 0), bad_index);
        cr_expect(strstr(ct_loader_bad_message(l, 0), bad_name) != NULL, "%s",
                  ct_loader_bad_message(l, 0));
        epoch_dump again;
        cr_assert_eq(run_epoch(l, 1, 0, &again), CT_OK);
        cr_expect_eq(ct_loader_bad_count(l), 1, "a file is counted once");
        dump_free(&again);
        ct_loader_free(l);
    }
    expect_same(&d[0], &d[1], SIDE * SIDE * 3, 3, "skip_bad, 1 vs 4 threads");
    int short_batches = 0;
    for (size_t i = 0; i < d[0].n_batches; i++)
        short_batches += d[0].sizes[i] < 5 && i + 1 < d[0].n_batches;
    cr_expect_leq(short_batches, 1);
    dump_free(&d[0]);
    dump_free(&d[1]);
    ct_dataset_free(ds);
}

Test(data_loader, featurewise_statistics) {
    make_images(NULL);
    ct_dataset *ds = open_ds();
    ct_loader_config c;
    base_config(&c);
    c.standardize.preprocess = CT_PREPROCESS_NONE;
    c.standardize.rescale = 1.0f / 255.0f;
    float mean[4], sd[4];
    cr_assert_eq(ct_loader_feature_stats(ds, &c, mean, sd), CT_OK, "%s", ct_last_error());
    double sum[3] = {0}, sq[3] = {0};
    size_t n = 0;
    for (size_t i = 0; i < ct_dataset_count(ds); i++) {
        ct_image img;
        cr_assert_eq(ct_image_load(ct_dataset_path(ds, i), &c.image, &img), CT_OK);
        for (int p = 0; p < SIDE * SIDE; p++)
            for (int k = 0; k < 3; k++) {
                double v = (float)img.data[p * 3 + k] * (1.0f / 255.0f);
                sum[k] += v;
                sq[k] += v * v;
            }
        n += SIDE * SIDE;
        ct_image_free(&img);
    }
    for (int k = 0; k < 3; k++) {
        double m = sum[k] / n, s = sqrt(sq[k] / n - m * m);
        cr_expect(fabs(mean[k] - m) < 1e-6 && fabs(sd[k] - s) < 1e-6, "channel %d: %g %g vs %g %g",
                  k, mean[k], sd[k], m, s);
    }
    /* Applied: the standardised dataset has mean 0 and std 1 per channel. */
    c.standardize.featurewise_center = c.standardize.featurewise_std_normalization = true;
    memcpy(c.standardize.mean, mean, sizeof mean);
    memcpy(c.standardize.std, sd, sizeof sd);
    float m2[4], s2[4];
    cr_assert_eq(ct_loader_feature_stats(ds, &c, m2, s2), CT_OK);
    ct_loader *l = NULL;
    cr_assert_eq(ct_loader_init(&l, ds, &c), CT_OK);
    epoch_dump d;
    cr_assert_eq(run_epoch(l, 0, 0, &d), CT_OK);
    double t[3] = {0}, tt[3] = {0};
    for (size_t i = 0; i < d.n_samples * SIDE * SIDE; i++)
        for (int k = 0; k < 3; k++) {
            t[k] += d.x[i * 3 + k];
            tt[k] += (double)d.x[i * 3 + k] * d.x[i * 3 + k];
        }
    for (int k = 0; k < 3; k++) {
        double m = t[k] / (d.n_samples * SIDE * SIDE);
        cr_expect(fabs(m) < 1e-4 &&
                  fabs(sqrt(tt[k] / (d.n_samples * SIDE * SIDE) - m * m) - 1.0) < 1e-4);
    }
    dump_free(&d);
    ct_loader_free(l);
    ct_dataset_free(ds);
}

Test(data_loader, iceberg_in_memory) {
    const char *path = td_path(tmp, "ice.json");
    FILE *f = fopen(path, "w");
    fprintf(f, "[");
    for (int r = 0; r < 7; r++) {
        fprintf(f, "%s{\"id\": \"i%d\", \"band_1\": [", r ? "," : "", r);
        for (int i = 0; i < 5625; i++) fprintf(f, "%s%d", i ? "," : "", -30 + (i + r) % 17);
        fprintf(f, "], \"band_2\": [");
        for (int i = 0; i < 5625; i++) fprintf(f, "%s%d", i ? "," : "", -20 - (i * r) % 13);
        fprintf(f, "], \"inc_angle\": %d, \"is_iceberg\": %d}", 30 + r, r % 2);
    }
    fprintf(f, "]");
    fclose(f);
    ct_dataset *ds = NULL;
    cr_assert_eq(ct_dataset_open_iceberg(&ds, path, NULL), CT_OK, "%s", ct_last_error());
    ct_loader_config c;
    ct_loader_config_defaults(&c);
    c.batch_size = 3;
    c.class_mode = CT_CLASS_BINARY;
    c.seed = 5;
    ct_augment_config aug = {0};
    aug.horizontal_flip = true;
    ct_loader *l = NULL;
    cr_assert_eq(ct_loader_init_training(&l, ds, &c, &aug), CT_OK, "%s", ct_last_error());
    int h, w, ch, k;
    ct_loader_shape(l, &h, &w, &ch, &k);
    cr_expect(h == 75 && w == 75 && ch == 3 && k == 1);
    cr_assert_eq(ct_loader_begin_epoch(l, 0), CT_OK);
    const ct_batch *b;
    size_t total = 0;
    while (ct_loader_next(l, &b) == CT_OK && b != NULL) {
        for (int r = 0; r < b->n; r++) {
            const uint32_t s = b->index[r];
            cr_expect_eq(b->y[r], (float)(s % 2));
            cr_expect_eq(b->aux[r], 30.0f + s);
            const float *px = ct_dataset_pixels(ds, s);
            ct_augment_params p = ct_augment_draw(&aug, 5, 0, s, 75, 75);
            const float *row = b->x + (size_t)r * 75 * 75 * 3;
            /* Pixel (0, 0) holds (0, 74) of the source when flipped. */
            const float *src = p.flip_h ? px + 74 * 3 : px;
            for (int q = 0; q < 3; q++) cr_expect_eq(row[q], src[q]);
        }
        total += (size_t)b->n;
        ct_loader_release(l, b);
    }
    cr_expect_eq(total, 7);
    ct_loader_free(l);
    /* Raw output of in-memory data: the float pixels as stored, for a device kernel. */
    c.class_mode = CT_CLASS_CATEGORICAL;
    c.output = CT_OUTPUT_RAW;
    cr_assert_eq(ct_loader_init(&l, ds, &c), CT_OK, "%s", ct_last_error());
    cr_assert_eq(ct_loader_begin_epoch(l, 0), CT_OK);
    cr_assert_eq(ct_loader_next(l, &b), CT_OK);
    cr_assert_not_null(b);
    cr_expect_null(b->x_u8);
    for (int r = 0; r < b->n; r++)
        cr_expect(memcmp(b->x + (size_t)r * 75 * 75 * 3, ct_dataset_pixels(ds, b->index[r]),
                         75 * 75 * 3 * sizeof(float)) == 0);
    ct_loader_release(l, b);
    ct_loader_free(l);
    ct_dataset_free(ds);
}

Test(data_loader, bad_configurations) {
    make_images(NULL);
    ct_dataset *ds = open_ds();
    ct_loader_config c;
    ct_loader *l = NULL;
    base_config(&c);
    c.batch_size = 0;
    cr_expect_eq(ct_loader_init(&l, ds, &c), CT_EINVAL);
    base_config(&c);
    c.threads = 0;
    cr_expect_eq(ct_loader_init(&l, ds, &c), CT_EINVAL);
    base_config(&c);
    c.class_mode = CT_CLASS_BINARY; /* three classes */
    cr_expect_eq(ct_loader_init(&l, ds, &c), CT_EINVAL);
    cr_expect(strstr(ct_last_error(), "exactly 2 classes") != NULL, "%s", ct_last_error());
    base_config(&c);
    c.image.target_h = c.image.target_w = 0;
    cr_expect_eq(ct_loader_init(&l, ds, &c), CT_EINVAL);
    base_config(&c);
    c.image.color_mode = CT_COLOR_GRAYSCALE; /* caffe needs RGB */
    cr_expect_eq(ct_loader_init(&l, ds, &c), CT_EINVAL);
    cr_expect(strstr(ct_last_error(), "3-channel") != NULL, "%s", ct_last_error());
    c.standardize.preprocess = CT_PREPROCESS_TF;
    cr_expect_eq(ct_loader_init(&l, ds, &c), CT_OK, "%s", ct_last_error());
    ct_loader_free(l);
    ct_dataset *empty = NULL;
    cr_assert_eq(ct_dataset_subset(ds, NULL, 0, CT_ROLE_ANY, &empty), CT_OK);
    base_config(&c);
    cr_expect_eq(ct_loader_init(&l, empty, &c), CT_EINVAL);
    ct_dataset_free(empty);
    ct_dataset_free(ds);
}
