/* The gradient buckets of a data-parallel step (dist/buckets.h), against a recording
 * communicator on the CPU backend: every bucket is handed over once, in arena order, only
 * after the backward of every layer whose gradients it holds, and while backward still has
 * layers to go; the buckets cover every trainable gradient and nothing of the frozen layers;
 * and the hand-over sums what a real communicator sums (here: doubles it, as two equal ranks
 * would). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dist/buckets.h"
#include "model/model.h"
#include "model/optim.h"
#include "util.h"

static ct_backend be;

static void setup(void) { cr_assert_eq(ct_backend_cpu_init(&be, 0), CT_OK); }
static void teardown(void) { ct_backend_free(&be); }

TestSuite(buckets, .init = setup, .fini = teardown, .timeout = 120);

#define MAX_CALLS 64
#define MAX_LAYERS 64

/* What the recording communicator saw: each all-reduce's span, and every layer's weight
 * gradient count at that moment. */
typedef struct recording {
    ct_model *m;
    int calls, waits;
    float *data[MAX_CALLS];
    size_t count[MAX_CALLS];
    unsigned long wgrads[MAX_CALLS][MAX_LAYERS];
} recording;

static ct_status rec_allreduce(void *ctx, float *buf, size_t count) {
    recording *r = ctx;
    cr_assert_lt(r->calls, MAX_CALLS);
    cr_expect_eq(r->waits, 0, "an all-reduce after the wait");
    r->data[r->calls] = buf;
    r->count[r->calls] = count;
    for (int i = 0; i < ct_model_num_layers(r->m); i++)
        r->wgrads[r->calls][i] = ct_model_layer(r->m, i)->n_wgrad;
    for (size_t i = 0; i < count; i++) buf[i] *= 2.0f; /* two ranks with the same gradients */
    r->calls++;
    return CT_OK;
}

static ct_status rec_wait(void *ctx) {
    ((recording *)ctx)->waits++;
    return CT_OK;
}

static ct_status rec_sum(void *ctx, double *buf, int count) {
    (void)ctx, (void)buf, (void)count;
    return CT_OK;
}

static ct_status rec_broadcast(void *ctx, void *buf, size_t bytes, bool device) {
    (void)ctx, (void)buf, (void)bytes, (void)device;
    return CT_OK;
}

static void rec_nothing(void *ctx) { (void)ctx; }

static const ct_comm_ops rec_ops = {"recording", rec_allreduce, rec_wait, rec_sum,
                                    rec_broadcast, rec_nothing, rec_nothing};

static ct_model *make(const char *freeze_to) {
    ct_model_config cfg = {.input_h = 32, .input_w = 32, .input_c = 3, .max_batch = 2,
                           .head = "flatten,dense:16:relu,dropout:0.5,dense:2:softmax",
                           .seed = 3, .freeze_to = freeze_to};
    ct_model *m = NULL;
    cr_assert_eq(ct_model_init(&m, &cfg, &be), CT_OK, "%s", ct_last_error());
    ct_optimizer_config opt;
    ct_optimizer_defaults(&opt, CT_OPT_SGD);
    cr_assert_eq(ct_model_compile(m, &opt), CT_OK, "%s", ct_last_error());
    return m;
}

static void backward_once(ct_model *m) {
    float x[2 * 32 * 32 * 3], y[4] = {1, 0, 0, 1};
    tu_fill(x, sizeof x / sizeof x[0], 7, -2.0f, 2.0f);
    float loss = 0.0f;
    cr_assert_eq(ct_model_forward_host(m, x, NULL, 2, true, 1), CT_OK, "%s", ct_last_error());
    cr_assert_eq(ct_model_loss(m, y, NULL, &loss), CT_OK, "%s", ct_last_error());
    cr_assert_eq(ct_model_backward(m), CT_OK, "%s", ct_last_error());
}

/* The layer whose kernel or bias gradient holds p. */
static int layer_of(ct_model *m, const float *p) {
    for (int i = 0; i < ct_model_num_layers(m); i++) {
        const ct_layer *l = ct_model_layer(m, i);
        const ct_tensor *t[2] = {&l->dkernel, &l->dbias};
        for (int k = 0; k < 2; k++)
            if (t[k]->data != NULL && p >= t[k]->data && p < t[k]->data + t[k]->size) return i;
    }
    return -1;
}

/* Runs one step with the recording communicator; buckets of `bucket_bytes`, the first of at
 * most 4 KiB. */
static void record_step(ct_model *m, recording *rec, ct_grad_sync *g, size_t bucket_bytes) {
    memset(rec, 0, sizeof *rec);
    rec->m = m;
    static ct_comm comm;
    comm = (ct_comm){.ops = &rec_ops, .ctx = rec, .timeout_s = 60.0};
    comm.world.size = 2;
    const size_t first = bucket_bytes < 4096 ? bucket_bytes : 4096;
    cr_assert_eq(ct_grad_sync_plan(g, m, &comm, bucket_bytes, first), CT_OK, "%s",
                 ct_last_error());
    ct_model_set_grads_hook(m, ct_grad_sync_hook, g);
    ct_grad_sync_begin(g, 0);
    backward_once(m);
    cr_assert_eq(ct_grad_sync_finish(g), CT_OK, "%s", ct_last_error());
    cr_expect_eq(rec->waits, 1);
}

/* Each call: one bucket, in order, complete when handed over. */
static void expect_schedule(ct_model *m, const recording *rec, const ct_grad_sync *g) {
    cr_assert_eq(rec->calls, g->n, "%d all-reduces for %d buckets", rec->calls, g->n);
    for (int c = 0; c < rec->calls; c++) {
        cr_expect_eq(rec->data[c], g->buckets[c].data, "bucket %d out of order", c);
        cr_expect_eq(rec->count[c], g->buckets[c].count);
        if (c > 0)
            cr_expect_geq(rec->data[c], rec->data[c - 1] + rec->count[c - 1], "overlap");
        for (size_t i = 0; i < rec->count[c]; i++) {
            const int l = layer_of(m, rec->data[c] + i);
            if (l >= 0)
                cr_expect_eq(rec->wgrads[c][l], 1, "bucket %d holds %s before its backward", c,
                             ct_model_layer(m, l)->name);
        }
    }
}

Test(buckets, every_bucket_once_in_order_after_its_last_gradient) {
    ct_model *m = make("block4_pool"); /* block5 and the head train */
    recording rec;
    ct_grad_sync g = {0};
    record_step(m, &rec, &g, 1 << 20);
    cr_assert_gt(g.n, 2, "expected several buckets, got %d", g.n);
    expect_schedule(m, &rec, &g);
    /* Communication starts while backward goes on: the first bucket went before the lowest
     * trainable layer's backward. */
    const int lowest = ct_model_first_trainable(m);
    cr_expect_eq(rec.wgrads[0][lowest], 0, "the first bucket waited for all of backward");
    /* Every trainable gradient is in exactly one bucket; frozen layers are in none. */
    size_t covered = 0, trainable = 0;
    for (int c = 0; c < rec.calls; c++)
        for (size_t i = 0; i < rec.count[c]; i++) covered += layer_of(m, rec.data[c] + i) >= 0;
    for (int i = 0; i < ct_model_num_layers(m); i++) {
        const ct_layer *l = ct_model_layer(m, i);
        if (l->dkernel.data != NULL) trainable += l->dkernel.size + l->dbias.size;
        if (i < lowest) cr_expect_null(l->dkernel.data, "%s is frozen", l->name);
    }
    cr_expect_eq(covered, trainable);
    ct_grad_sync_free(&g);
    ct_model_free(m);
}

Test(buckets, the_sums_are_what_the_optimizer_reads) {
    ct_model *a = make("block4_pool"), *b = make("block4_pool");
    recording rec;
    ct_grad_sync g = {0};
    record_step(a, &rec, &g, 64 << 10);
    backward_once(b); /* the same step without a communicator */
    for (int i = 0; i < ct_model_num_layers(a); i++) {
        const ct_layer *la = ct_model_layer(a, i), *lb = ct_model_layer(b, i);
        for (size_t k = 0; la->dkernel.data != NULL && k < la->dkernel.size; k++)
            cr_assert_eq(la->dkernel.data[k], 2.0f * lb->dkernel.data[k], "%s[%zu]", la->name, k);
        for (size_t k = 0; la->dbias.data != NULL && k < la->dbias.size; k++)
            cr_assert_eq(la->dbias.data[k], 2.0f * lb->dbias.data[k], "%s bias[%zu]", la->name, k);
    }
    ct_grad_sync_free(&g);
    ct_model_free(a);
    ct_model_free(b);
}

Test(buckets, small_buckets_one_tensor_each_and_a_frozen_model_none) {
    ct_model *m = make("block4_pool");
    recording rec;
    ct_grad_sync g = {0};
    record_step(m, &rec, &g, 4); /* smaller than any tensor: one per tensor */
    int tensors = 0;
    for (int i = 0; i < ct_model_num_layers(m); i++)
        tensors += ct_model_layer(m, i)->dkernel.data != NULL ? 2 : 0;
    cr_expect_eq(g.n, tensors);
    expect_schedule(m, &rec, &g);
    ct_grad_sync_free(&g);
    ct_model_free(m);
}
