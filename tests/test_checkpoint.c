/* Checkpoints: a run resumed from a checkpoint continues bit for bit as if it had never
 * stopped (SGD with Nesterov momentum and Adam, through trainable conv and dense layers); the
 * state struct round-trips; a checkpoint refuses a model built, compiled or frozen
 * differently; and a save that fails at any HDF5 call, or on NaN weights, leaves the previous
 * checkpoint as it was and no temporary file behind. */
#define _POSIX_C_SOURCE 200809L
#include <criterion/criterion.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "model/model.h"
#include "model/optim.h"
#include "io/weights.h"
#include "io/io.h"
#include "util.h"

static ct_backend be;
static char dir[64];

static void setup(void) {
    cr_assert_eq(ct_backend_cpu_init(&be, 0), CT_OK);
    snprintf(dir, sizeof dir, "/tmp/ct_ck_XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
}

static void teardown(void) {
    ct_backend_free(&be);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
}

TestSuite(checkpoint, .init = setup, .fini = teardown, .timeout = 600);

/* Paths in the test's folder; each call has its own buffer (up to 16 per test). */
static const char *path_in(const char *name) {
    static char p[16][256];
    static int k;
    cr_assert(k < 16);
    char *b = p[k++];
    snprintf(b, 256, "%s/%s", dir, name);
    return b;
}

/* Overwrites every parameter, so a load that missed one shows. */
static void scramble(ct_model *m) {
    for (int i = 0; i < ct_model_num_layers(m); i++) {
        ct_layer *l = ct_model_layer(m, i);
        if (l->kind != CT_LAYER_CONV && l->kind != CT_LAYER_DENSE) continue;
        tu_fill(l->kernel.data, l->kernel.size, 500 + (uint32_t)i, -1.0f, 1.0f);
        tu_fill(l->bias.data, l->bias.size, 600 + (uint32_t)i, -1.0f, 1.0f);
    }
}

/* The iceberg head at 32x32 with blocks 1-4 frozen: block5's convolutions and the head train,
 * so the optimizer holds KRSC conv state as well as dense state. */
static ct_model *make(ct_optimizer_kind kind, uint64_t seed) {
    ct_model_config cfg = {.input_h = 32, .input_w = 32, .input_c = 3, .aux_dim = 1,
                           .max_batch = 2, .head = "iceberg", .seed = seed};
    ct_model *m = NULL;
    cr_assert_eq(ct_model_init(&m, &cfg, &be), CT_OK, "%s", ct_last_error());
    cr_assert_eq(ct_model_freeze_to(m, "block4_pool"), CT_OK);
    ct_optimizer_config o;
    ct_optimizer_defaults(&o, kind);
    if (kind == CT_OPT_SGD) {
        o.lr = 0.01f;
        o.momentum = 0.9f;
        o.nesterov = true;
        o.decay = 1e-3f;
    }
    cr_assert_eq(ct_model_compile(m, &o), CT_OK, "%s", ct_last_error());
    return m;
}

static void train_step(ct_model *m, uint32_t step) {
    float x[2 * 32 * 32 * 3], aux[2], y[2] = {1.0f, 0.0f}, loss;
    tu_fill(x, sizeof x / sizeof x[0], 100 + step, -2.0f, 2.0f);
    tu_fill(aux, 2, 200 + step, -1.0f, 1.0f);
    cr_assert_eq(ct_model_forward_host(m, x, aux, 2, true, step), CT_OK, "%s", ct_last_error());
    cr_assert_eq(ct_model_loss(m, y, NULL, &loss), CT_OK, "%s", ct_last_error());
    cr_assert_eq(ct_model_backward(m), CT_OK, "%s", ct_last_error());
    cr_assert_eq(ct_model_apply_gradients(m, 0.5f), CT_OK, "%s", ct_last_error());
}

static ct_checkpoint_state sample_state(void) {
    ct_checkpoint_state st = {.epoch = 3, .step = 123, .batch_in_epoch = 7,
                              .sample_in_epoch = 224, .seed = 0x8000000000000005ull,
                              .lr_scale = 0.1, .plateau_wait = 2, .plateau_cooldown = 1,
                              .plateau_best = 0.25, .best_metric = 0.2, .best_epoch = 2,
                              .es_best = 0.21, .patience_wait = 1, .epoch_loss_sum = 12.5,
                              .epoch_correct = 100.0, .epoch_seen = 224};
    snprintf(st.monitor, sizeof st.monitor, "val_loss");
    st.config = "head=iceberg\nlr=0.01\nnote=\"quoted\" and unicode-free\n";
    return st;
}

static void assert_same(ct_model *a, ct_model *b, bool with_state) {
    for (int i = 0; i < ct_model_num_layers(a); i++) {
        const ct_layer *la = ct_model_layer(a, i), *lb = ct_model_layer(b, i);
        if (la->kind != CT_LAYER_CONV && la->kind != CT_LAYER_DENSE) continue;
        cr_assert_eq(memcmp(la->kernel.data, lb->kernel.data, la->kernel.size * 4), 0,
                     "%s kernel differs", la->name);
        cr_assert_eq(memcmp(la->bias.data, lb->bias.data, la->bias.size * 4), 0,
                     "%s bias differs", la->name);
        for (int s = 0; with_state && s < 2; s++) {
            if (la->opt_kernel[s].data == NULL) continue;
            cr_assert_eq(memcmp(la->opt_kernel[s].data, lb->opt_kernel[s].data,
                                la->kernel.size * 4), 0, "%s slot %d differs", la->name, s);
            cr_assert_eq(memcmp(la->opt_bias[s].data, lb->opt_bias[s].data, la->bias.size * 4),
                         0, "%s bias slot %d differs", la->name, s);
        }
    }
}

static void exact_resume(ct_optimizer_kind kind) {
    ct_model *a = make(kind, 1);
    train_step(a, 0);
    train_step(a, 1);
    ct_checkpoint_state st = sample_state();
    const char *classes[2] = {"ship", "iceberg"};
    ct_weights_save_opts so = {.class_names = classes, .n_classes = 2};
    const char *p = path_in("ck.h5");
    cr_assert_eq(ct_checkpoint_save(a, p, &so, &st), CT_OK, "%s", ct_last_error());
    train_step(a, 2);
    train_step(a, 3);

    /* A fresh process builds the same model (the run's seed also keys the dropout masks);
     * its parameters are scrambled so that anything the load misses shows. */
    ct_model *b = make(kind, 1);
    scramble(b);
    ct_checkpoint_state got;
    cr_assert_eq(ct_checkpoint_load(b, p, &got), CT_OK, "%s", ct_last_error());
    cr_assert_eq(ct_model_iterations(b), 2);
    train_step(b, 2);
    train_step(b, 3);
    assert_same(a, b, true);
    cr_assert_eq(ct_model_iterations(a), ct_model_iterations(b));

    cr_assert_eq(got.epoch, st.epoch);
    cr_assert_eq(got.step, st.step);
    cr_assert_eq(got.batch_in_epoch, st.batch_in_epoch);
    cr_assert_eq(got.sample_in_epoch, st.sample_in_epoch);
    cr_assert_eq(got.seed, st.seed);
    cr_assert_eq(got.lr_scale, st.lr_scale);
    cr_assert_eq(got.plateau_wait, st.plateau_wait);
    cr_assert_eq(got.plateau_cooldown, st.plateau_cooldown);
    cr_assert_eq(got.plateau_best, st.plateau_best);
    cr_assert_eq(got.best_metric, st.best_metric);
    cr_assert_eq(got.best_epoch, st.best_epoch);
    cr_assert_eq(got.es_best, st.es_best);
    cr_assert_eq(got.patience_wait, st.patience_wait);
    cr_assert_eq(got.epoch_loss_sum, st.epoch_loss_sum);
    cr_assert_eq(got.epoch_correct, st.epoch_correct);
    cr_assert_eq(got.epoch_seen, st.epoch_seen);
    cr_assert_str_eq(got.monitor, "val_loss");
    cr_assert_str_eq(got.config, st.config);
    ct_checkpoint_state_free(&got);
    cr_assert_null(got.config);

    /* The checkpoint is also a weights file with cutune's configuration. */
    ct_weights_file *wf = NULL;
    cr_assert_eq(ct_weights_inspect(p, &wf), CT_OK, "%s", ct_last_error());
    cr_assert(wf->is_checkpoint && wf->has_config);
    ct_weights_file_free(wf);
    ct_model_free(b);
    ct_model_free(a);
}

Test(checkpoint, sgd_nesterov_resume_is_bit_exact) { exact_resume(CT_OPT_SGD); }
Test(checkpoint, adam_resume_is_bit_exact) { exact_resume(CT_OPT_ADAM); }

Test(checkpoint, refuses_a_model_built_compiled_or_frozen_differently) {
    ct_model *a = make(CT_OPT_ADAM, 1);
    train_step(a, 0);
    ct_checkpoint_state st = sample_state();
    const char *p = path_in("ck.h5");
    cr_assert_eq(ct_checkpoint_save(a, p, NULL, &st), CT_OK, "%s", ct_last_error());
    ct_checkpoint_state got;

    ct_model *b = make(CT_OPT_ADAM, 2);
    cr_assert_eq(ct_model_freeze_to(b, "block5_pool"), CT_OK);
    cr_assert_eq(ct_model_compile(b, &(ct_optimizer_config){.kind = CT_OPT_ADAM, .lr = 1e-3f,
                                                           .beta1 = 0.9f, .beta2 = 0.999f,
                                                           .epsilon = 1e-7f}),
                 CT_OK);
    cr_assert_eq(ct_checkpoint_load(b, p, &got), CT_EINVAL);
    cr_assert(strstr(ct_last_error(), "block5_conv1 trainable") != NULL, "%s", ct_last_error());
    ct_model_free(b);

    b = make(CT_OPT_SGD, 2);
    cr_assert_eq(ct_checkpoint_load(b, p, &got), CT_EINVAL);
    cr_assert(strstr(ct_last_error(), "optimizer is adam") != NULL, "%s", ct_last_error());
    ct_model_free(b);

    ct_model_config cfg = {.input_h = 48, .input_w = 48, .input_c = 3, .aux_dim = 1,
                           .max_batch = 2, .head = "iceberg", .seed = 3};
    cr_assert_eq(ct_model_init(&b, &cfg, &be), CT_OK);
    cr_assert_eq(ct_checkpoint_load(b, p, &got), CT_EINVAL);
    cr_assert(strstr(ct_last_error(), "32x32") != NULL, "%s", ct_last_error());
    ct_model_free(b);

    /* A plain weights file is not a checkpoint. */
    cr_assert_eq(ct_weights_save(a, path_in("w.h5"), NULL), CT_OK);
    b = make(CT_OPT_ADAM, 2);
    cr_assert_eq(ct_checkpoint_load(b, path_in("w.h5"), &got), CT_EFORMAT);
    cr_assert(strstr(ct_last_error(), "not a cutune checkpoint") != NULL, "%s", ct_last_error());
    ct_model_free(b);
    ct_model_free(a);
}

static int count_entries(void) {
    DIR *d = opendir(dir);
    cr_assert_not_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) n++;
    closedir(d);
    return n;
}

static unsigned char *slurp(const char *p, size_t *n) {
    FILE *f = fopen(p, "rb");
    cr_assert_not_null(f);
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc(*n);
    cr_assert_eq(fread(b, 1, *n, f), *n);
    fclose(f);
    return b;
}

Test(checkpoint, a_failed_save_keeps_the_previous_file_and_leaves_no_temporary) {
    ct_model *m = make(CT_OPT_SGD, 1);
    train_step(m, 0);
    ct_checkpoint_state st = sample_state();
    const char *p = path_in("ck.h5");
    cr_assert_eq(ct_checkpoint_save(m, p, NULL, &st), CT_OK, "%s", ct_last_error());
    size_t n0;
    unsigned char *before = slurp(p, &n0);
    train_step(m, 1);
    st.epoch = 4;

    /* Count the HDF5 calls of one save, then make each of a spread of them fail in turn
     * (every one would rewrite ~60 MB ~200 times). */
    ct__h5_fault_arm(0);
    cr_assert_eq(ct_checkpoint_save(m, path_in("count.h5"), NULL, &st), CT_OK);
    long calls = ct__h5_fault_arm(0);
    cr_assert(calls > 50, "a save made only %ld HDF5 calls?", calls);
    unlink(path_in("count.h5"));
    long tried = 0;
    for (long n = 1; n <= calls; n = n < 8 ? n + 1 : n + calls / 47 + 1) {
        ct__h5_fault_arm(n);
        ct_status s = ct_checkpoint_save(m, p, NULL, &st);
        ct__h5_fault_arm(0);
        cr_assert_neq(s, CT_OK, "failing HDF5 call %ld of %ld did not fail the save", n, calls);
        cr_assert(strstr(ct_last_error(), "injected failure") != NULL &&
                      strstr(ct_last_error(), p) != NULL, "call %ld: %s", n, ct_last_error());
        size_t n1;
        unsigned char *after = slurp(p, &n1);
        cr_assert(n1 == n0 && memcmp(before, after, n0) == 0,
                  "failing call %ld changed the previous checkpoint", n);
        free(after);
        cr_assert_eq(count_entries(), 1, "failing call %ld left a temporary file", n);
        tried++;
    }
    /* The last calls (flush and close) too. */
    for (long n = calls - 2; n <= calls; n++) {
        ct__h5_fault_arm(n);
        ct_status s = ct_checkpoint_save(m, p, NULL, &st);
        ct__h5_fault_arm(0);
        cr_assert_neq(s, CT_OK, "call %ld", n);
        size_t n1;
        unsigned char *after = slurp(p, &n1);
        cr_assert(n1 == n0 && memcmp(before, after, n0) == 0, "call %ld", n);
        free(after);
        cr_assert_eq(count_entries(), 1);
    }
    printf("a save makes %ld HDF5 calls; %ld + 3 failure points checked\n", calls, tried);

    /* NaN weights are refused before anything is written. */
    ct_model_find(m, "fc3")->bias.data[0] = NAN;
    cr_assert_eq(ct_checkpoint_save(m, p, NULL, &st), CT_ENUMERIC);
    cr_assert(strstr(ct_last_error(), "fc3") != NULL, "%s", ct_last_error());
    size_t n1;
    unsigned char *after = slurp(p, &n1);
    cr_assert(n1 == n0 && memcmp(before, after, n0) == 0);
    free(after);
    cr_assert_eq(count_entries(), 1);
    free(before);

    /* A successful save replaces it. */
    ct_model_find(m, "fc3")->bias.data[0] = 0.0f;
    cr_assert_eq(ct_checkpoint_save(m, p, NULL, &st), CT_OK, "%s", ct_last_error());
    ct_checkpoint_state got;
    ct_model *b = make(CT_OPT_SGD, 2);
    cr_assert_eq(ct_checkpoint_load(b, p, &got), CT_OK, "%s", ct_last_error());
    cr_assert_eq(got.epoch, 4);
    ct_checkpoint_state_free(&got);
    ct_model_free(b);
    cr_assert_eq(ct_checkpoint_save(m, "/nonexistent_ct_dir/ck.h5", NULL, &st), CT_EIO);
    ct_model_free(m);
}
