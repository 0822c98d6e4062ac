/* The model on the CPU backend: Keras names and parameter counts, Glorot initialisation,
 * freezing (gradients equal to a full backward's, no work and no memory below the lowest
 * trainable layer), determinism, learning, and every bad configuration. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/model.h"
#include "model/optim.h"
#include "util.h"

static ct_backend be;

static void setup(void) { cr_assert_eq(ct_backend_cpu_init(&be, 0), CT_OK); }
static void teardown(void) { ct_backend_free(&be); }

TestSuite(model, .init = setup, .fini = teardown, .timeout = 300);

static ct_model *make(int hw, const char *head, int aux_dim, int batch, uint64_t seed) {
    ct_model_config cfg = {.input_h = hw, .input_w = hw, .input_c = 3, .aux_dim = aux_dim,
                           .max_batch = batch, .head = head, .seed = seed};
    ct_model *m = NULL;
    ct_status s = ct_model_init(&m, &cfg, &be);
    cr_assert_eq(s, CT_OK, "%s", ct_last_error());
    return m;
}

static ct_status make_status(int hw, const char *head, int aux_dim, int batch) {
    ct_model_config cfg = {.input_h = hw, .input_w = hw, .input_c = 3, .aux_dim = aux_dim,
                           .max_batch = batch, .head = head, .seed = 1};
    ct_model *m = NULL;
    ct_status s = ct_model_init(&m, &cfg, &be);
    ct_model_free(m);
    return s;
}

/* One forward + loss + backward on a fixed batch (stream `tag`). */
static float step(ct_model *m, int n, uint32_t tag) {
    const ct_model_config *c = ct_model_get_config(m);
    size_t nx = (size_t)n * c->input_h * c->input_w * 3;
    int k = ct_model_num_outputs(m);
    float *x = malloc(nx * sizeof *x), aux[8], *y = calloc((size_t)n * k, sizeof *y);
    tu_fill(x, nx, tag, -2.0f, 2.0f);
    tu_fill(aux, 8, tag + 1, -1.0f, 1.0f);
    for (int i = 0; i < n; i++) y[i * k + (k == 1 ? 0 : i % k)] = (k == 1) ? (float)(i % 2) : 1.0f;
    float loss = 0.0f;
    cr_assert_eq(ct_model_forward_host(m, x, aux, n, true, tag), CT_OK, "%s", ct_last_error());
    cr_assert_eq(ct_model_loss(m, y, NULL, &loss), CT_OK, "%s", ct_last_error());
    cr_assert_eq(ct_model_backward(m), CT_OK, "%s", ct_last_error());
    free(x);
    free(y);
    return loss;
}

Test(model, keras_names_and_parameter_counts) {
    ct_model *m = make(75, "iceberg", 1, 2, 1);
    static const char *names[] = {
        "block1_conv1", "block1_conv2", "block1_pool", "block2_conv1", "block2_conv2",
        "block2_pool", "block3_conv1", "block3_conv2", "block3_conv3", "block3_pool",
        "block4_conv1", "block4_conv2", "block4_conv3", "block4_pool", "block5_conv1",
        "block5_conv2", "block5_conv3", "block5_pool", "global_max_pooling2d", "dense",
        "concatenate", "fc2", "dropout", "fc3", "dropout_1", "dense_1"};
    cr_assert_eq(ct_model_num_layers(m), 26);
    for (int i = 0; i < 26; i++) cr_assert_str_eq(ct_model_layer(m, i)->name, names[i]);
    /* 75 -> 37 -> 18 -> 9 -> 4 -> 2: odd sizes floor, as Keras's 'valid' pooling does. */
    cr_assert_eq(ct_model_find(m, "block5_pool")->out_h, 2);
    cr_assert_eq(ct_model_find(m, "block1_pool")->out_h, 37);
    size_t backbone = 0;
    for (int i = 0; i < 18; i++) {
        const ct_layer *l = ct_model_layer(m, i);
        if (l->kind == CT_LAYER_CONV) backbone += l->kernel.size + l->bias.size;
    }
    cr_assert_eq(backbone, 14714688, "VGG16 notop has 14,714,688 parameters, not %zu", backbone);
    /* Head: Dense(1) on the angle 2, fc2 513*512+512, fc3 512*512+512, output 513. */
    size_t trainable = 0, all = ct_model_num_params(m, &trainable);
    cr_assert_eq(all, 14714688 + 2 + 263168 + 262656 + 513);
    cr_assert_eq(trainable, all);
    ct_model_free(m);

    m = make(64, "mri", 0, 2, 1);
    cr_assert_str_eq(ct_model_layer(m, 18)->name, "flatten");
    cr_assert_str_eq(ct_model_layer(m, 19)->name, "dense");
    cr_assert_str_eq(ct_model_layer(m, 20)->name, "dense_1");
    cr_assert_eq(ct_model_layer(m, 19)->kernel.shape[0], 2 * 2 * 512);
    cr_assert_eq(ct_model_loss_kind(m), CT_LOSS_CATEGORICAL_CE);
    ct_model_free(m);
}

Test(model, glorot_uniform_init) {
    ct_model *m = make(32, "gap,dense:10:softmax", 0, 1, 7);
    const ct_layer *l = ct_model_find(m, "block3_conv2"); /* (256, 3, 3, 256) */
    const double limit = sqrt(6.0 / (9.0 * 256 + 9.0 * 256));
    double sum = 0.0, sq = 0.0;
    for (size_t i = 0; i < l->kernel.size; i++) {
        double v = l->kernel.data[i];
        cr_assert(fabs(v) <= limit, "%g outside +-%g", v, limit);
        sum += v;
        sq += v * v;
    }
    double n = (double)l->kernel.size, mean = sum / n, var = sq / n - mean * mean;
    /* Uniform(-a, a): mean 0 with standard error a / sqrt(3 n), variance a^2 / 3 with a
     * relative standard error of about sqrt(0.8 / n) ~ 0.0011 at n = 589,824: 1% is 9 sigma. */
    cr_assert(fabs(mean) < 5.0 * limit / sqrt(3.0 * n), "mean %g", mean);
    cr_assert(fabs(var / (limit * limit / 3.0) - 1.0) < 0.01, "variance %g", var);
    for (size_t i = 0; i < l->bias.size; i++) cr_assert_eq(l->bias.data[i], 0.0f);
    ct_model_free(m);
}

Test(model, same_seed_is_bit_identical_and_seeds_differ) {
    ct_model_config cfg = {.input_h = 32, .input_w = 32, .input_c = 3, .aux_dim = 1,
                           .max_batch = 2, .head = "iceberg", .seed = 42};
    ct_optimizer_config opt;
    ct_optimizer_defaults(&opt, CT_OPT_SGD);
    opt.momentum = 0.9f;
    opt.nesterov = true;
    ct_model *a = NULL, *b = NULL;
    cr_assert_eq(ct_model_init(&a, &cfg, &be), CT_OK);
    cr_assert_eq(ct_model_init(&b, &cfg, &be), CT_OK);
    cr_assert_eq(ct_model_compile(a, &opt), CT_OK);
    cr_assert_eq(ct_model_compile(b, &opt), CT_OK);
    for (int s = 0; s < 2; s++) {
        float la = step(a, 2, 10 + s), lb = step(b, 2, 10 + s);
        cr_assert_eq(memcmp(&la, &lb, sizeof la), 0, "losses %g vs %g", la, lb);
        cr_assert_eq(ct_model_apply_gradients(a, 1.0f), CT_OK);
        cr_assert_eq(ct_model_apply_gradients(b, 1.0f), CT_OK);
    }
    for (int i = 0; i < ct_model_num_layers(a); i++) {
        const ct_layer *la = ct_model_layer(a, i), *lb = ct_model_layer(b, i);
        if (la->kernel.data == NULL) continue;
        cr_assert_eq(memcmp(la->kernel.data, lb->kernel.data, la->kernel.size * sizeof(float)), 0,
                     "%s differs between two runs with the same seed", la->name);
        cr_assert_eq(memcmp(la->bias.data, lb->bias.data, la->bias.size * sizeof(float)), 0);
    }
    ct_model_free(b);
    cfg.seed = 43;
    cr_assert_eq(ct_model_init(&b, &cfg, &be), CT_OK);
    const ct_layer *l = ct_model_layer(b, 0);
    ct_model *fresh = make(32, "iceberg", 1, 2, 42);
    cr_assert_neq(memcmp(l->kernel.data, ct_model_layer(fresh, 0)->kernel.data,
                         l->kernel.size * sizeof(float)), 0);
    ct_model_free(fresh);
    ct_model_free(b);
    ct_model_free(a);
}

Test(model, frozen_blocks_1_to_4_match_full_backward_and_do_no_work_below) {
    ct_model *m = make(40, "iceberg", 1, 2, 3);
    step(m, 2, 77);
    const int nl = ct_model_num_layers(m);
    float **full = calloc((size_t)nl, sizeof *full);
    for (int i = 0; i < nl; i++) {
        const ct_layer *l = ct_model_layer(m, i);
        if (l->dkernel.data == NULL) continue;
        full[i] = malloc((l->dkernel.size + l->dbias.size) * sizeof(float));
        memcpy(full[i], l->dkernel.data, l->dkernel.size * sizeof(float));
        memcpy(full[i] + l->dkernel.size, l->dbias.data, l->dbias.size * sizeof(float));
    }
    ct_model_memory full_mem;
    ct_model_memory_get(m, &full_mem);

    cr_assert_eq(ct_model_freeze_to(m, "block4_pool"), CT_OK, "%s", ct_last_error());
    cr_assert_str_eq(ct_model_layer(m, ct_model_first_trainable(m))->name, "block5_conv1");
    unsigned long dgrad0[64], wgrad0[64];
    for (int i = 0; i < nl; i++) {
        dgrad0[i] = ct_model_layer(m, i)->n_dgrad;
        wgrad0[i] = ct_model_layer(m, i)->n_wgrad;
    }
    step(m, 2, 77);
    for (int i = 0; i < nl; i++) {
        const ct_layer *l = ct_model_layer(m, i);
        unsigned long dd = l->n_dgrad - dgrad0[i], dw = l->n_wgrad - wgrad0[i];
        if (i < 14) { /* block1_conv1 .. block4_pool */
            cr_assert_eq(dd + dw, 0, "%s did backward work while frozen", l->name);
            cr_assert_null(l->dkernel.data, "%s has gradient memory while frozen", l->name);
            continue;
        }
        if (strcmp(l->name, "block5_conv1") == 0)
            cr_assert_eq(dd, 0, "block5_conv1 computed a data gradient nothing needs");
        if (l->kind == CT_LAYER_CONV || l->kind == CT_LAYER_DENSE) {
            cr_assert_eq(dw, 1, "%s: %lu weight gradients", l->name, dw);
            /* Same arithmetic in the same order: the trainable gradients are bit-identical. */
            cr_assert_eq(memcmp(full[i], l->dkernel.data, l->dkernel.size * sizeof(float)), 0,
                         "%s kernel gradient differs from the full backward's", l->name);
            cr_assert_eq(memcmp(full[i] + l->dkernel.size, l->dbias.data,
                                l->dbias.size * sizeof(float)), 0);
        }
    }
    /* Frozen parameters get no gradient memory; the frozen prefix keeps no activations. */
    ct_model_memory frozen_mem;
    ct_model_memory_get(m, &frozen_mem);
    size_t trainable = 0;
    ct_model_num_params(m, &trainable);
    cr_assert(frozen_mem.grads < full_mem.grads / 2, "grads %zu vs %zu", frozen_mem.grads,
              full_mem.grads);
    cr_assert(frozen_mem.grads >= trainable * sizeof(float));
    cr_assert(frozen_mem.activations < full_mem.activations / 2, "activations %zu vs %zu",
              frozen_mem.activations, full_mem.activations);
    for (int i = 0; i < nl; i++) free(full[i]);
    free(full);
    ct_model_free(m);
}

Test(model, everything_frozen_runs_forward_and_no_backward) {
    ct_model *m = make(32, "gap,dense:2:softmax", 0, 2, 3);
    for (int i = 0; i < ct_model_num_layers(m); i++)
        cr_assert_eq(ct_model_set_trainable(m, ct_model_layer(m, i)->name, false), CT_OK);
    cr_assert_eq(ct_model_first_trainable(m), ct_model_num_layers(m));
    step(m, 2, 5);
    for (int i = 0; i < ct_model_num_layers(m); i++)
        cr_assert_eq(ct_model_layer(m, i)->n_dgrad + ct_model_layer(m, i)->n_wgrad, 0);
    ct_model_memory mem;
    ct_model_memory_get(m, &mem);
    cr_assert_eq(mem.grads, 0);
    ct_model_free(m);
}

Test(model, training_lowers_the_loss) {
    ct_model *m = make(32, "gap,dense:2:softmax", 0, 4, 11);
    ct_optimizer_config opt;
    ct_optimizer_defaults(&opt, CT_OPT_ADAM);
    opt.lr = 1e-4f;
    cr_assert_eq(ct_model_compile(m, &opt), CT_OK);
    float first = step(m, 4, 9), last = first;
    for (int i = 0; i < 8; i++) {
        cr_assert_eq(ct_model_apply_gradients(m, 1.0f), CT_OK);
        last = step(m, 4, 9);
    }
    cr_assert_eq(ct_model_iterations(m), 8);
    /* Fitting one fixed batch must make steady progress. A plain 16-layer network from Glorot
     * init learns slowly at first (0.693 -> 0.584 in these 8 steps); a wrong gradient sign or
     * a lost update leaves the loss at or above ln 2, so 10% lower is a clear bar. */
    printf("training_lowers_the_loss: %g -> %g\n", first, last);
    cr_assert(last < 0.9f * first, "loss %g -> %g", first, last);
    ct_model_free(m);
}

Test(model, bad_configurations_say_why) {
    cr_assert_eq(make_status(31, "mri", 0, 1), CT_EINVAL);
    cr_assert(strstr(ct_last_error(), "at least 32x32") != NULL, "%s", ct_last_error());
    cr_assert_eq(make_status(64, "mri", 0, 0), CT_EINVAL);
    cr_assert(strstr(ct_last_error(), "batch size") != NULL, "%s", ct_last_error());
    static const struct {
        const char *head;
        int aux;
        const char *says;
    } bad[] = {
        {"gmp,frob,dense:1:sigmoid", 0, "unknown layer 'frob'"},
        {"", 0, "empty"},
        {"gmp,dense:1:relu", 0, "last layer must be"},
        {"dense:2:softmax", 0, "put flatten, gap or gmp before it"},
        {"gmp,dense:3:sigmoid", 0, "sigmoid output has 1 unit"},
        {"gmp,dense:1:softmax", 0, "at least 2 units"},
        {"gmp,aux:1,dense:1:sigmoid", 1, "never joined"},
        {"gmp,aux:1,concat,dense:1:sigmoid", 0, "no auxiliary values"},
        {"gmp,concat,dense:1:sigmoid", 1, "needs an aux"},
        {"gmp,dropout:1.5,dense:1:sigmoid", 0, "rate must be"},
        {"gmp,dense:0:relu,dense:1:sigmoid", 0, "positive unit count"},
        {"gmp,dense:8:tanh,dense:1:sigmoid", 0, "unknown activation 'tanh'"},
        {"gmp,dense:8:sigmoid,dense:1:sigmoid", 0, "only supported on the output"},
        {"gmp,gmp,dense:1:sigmoid", 0, "already flat"},
        {"gmp,dense:8@a,dense:1:sigmoid@a", 0, "used twice"},
        {"gmp,dense:8@bad-name,dense:1:sigmoid", 0, "letters, digits"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ct_status s = make_status(32, bad[i].head, bad[i].aux, 1);
        cr_assert_eq(s, CT_EINVAL, "'%s' was accepted", bad[i].head);
        cr_assert(strstr(ct_last_error(), bad[i].says) != NULL, "'%s': message '%s' lacks '%s'",
                  bad[i].head, ct_last_error(), bad[i].says);
    }
}

Test(model, bad_calls_say_why) {
    ct_model *m = make(32, "mri", 0, 2, 1);
    cr_assert_eq(ct_model_forward(m, 0, false, 0), CT_EINVAL);
    cr_assert(strstr(ct_last_error(), "batch of 0") != NULL, "%s", ct_last_error());
    cr_assert_eq(ct_model_forward(m, 3, false, 0), CT_EINVAL);
    cr_assert_eq(ct_model_backward(m), CT_EINVAL);
    cr_assert_eq(ct_model_freeze_to(m, "block9_conv1"), CT_ENOTFOUND);
    cr_assert(strstr(ct_last_error(), "block9_conv1") != NULL);
    cr_assert(strstr(ct_last_error(), "block5_pool") != NULL, "should list the layers");
    cr_assert_eq(ct_model_apply_gradients(m, 1.0f), CT_EINVAL);
    ct_optimizer_config opt;
    ct_optimizer_defaults(&opt, CT_OPT_SGD);
    opt.lr = -1.0f;
    cr_assert_eq(ct_model_compile(m, &opt), CT_EINVAL);
    ct_model_free(m);
    ct_model *iceberg = make(32, "iceberg", 1, 2, 1);
    float x[2 * 32 * 32 * 3] = {0};
    cr_assert_eq(ct_model_forward_host(iceberg, x, NULL, 2, false, 0), CT_EINVAL);
    cr_assert(strstr(ct_last_error(), "auxiliary") != NULL);
    ct_model_free(iceberg);
}

Test(model, nan_loss_is_reported) {
    ct_model *m = make(32, "gap,dense:2:softmax", 0, 1, 1);
    float x[32 * 32 * 3], y[2] = {1.0f, 0.0f}, loss = 0.0f;
    for (int i = 0; i < 32 * 32 * 3; i++) x[i] = NAN;
    cr_assert_eq(ct_model_forward_host(m, x, NULL, 1, true, 0), CT_OK);
    cr_assert_eq(ct_model_loss(m, y, NULL, &loss), CT_ENUMERIC);
    cr_assert(strstr(ct_last_error(), "NaN") != NULL, "%s", ct_last_error());
    cr_assert_eq(ct_model_backward(m), CT_EINVAL, "backward must refuse a NaN loss");
    ct_model_free(m);
}

/* ct_model_config.freeze_to plans the arenas for the frozen model at once: the same flags and
 * the same memory as init followed by ct_model_freeze_to, without the fully trainable plan's
 * allocation first; CT_FREEZE_ALL freezes everything; an unknown name is refused by init. */
Test(model, frozen_from_the_start) {
    const char *depths[] = {"block4_pool", "block5_pool", CT_FREEZE_ALL};
    for (int d = 0; d < 3; d++) {
        ct_model_config cfg = {.input_h = 32, .input_w = 32, .input_c = 3, .max_batch = 4,
                               .head = "mri", .seed = 5, .freeze_to = depths[d]};
        ct_model *a = NULL, *b = NULL;
        cr_assert_eq(ct_model_init(&a, &cfg, &be), CT_OK, "%s", ct_last_error());
        cfg.freeze_to = NULL;
        cr_assert_eq(ct_model_init(&b, &cfg, &be), CT_OK, "%s", ct_last_error());
        const int nl = ct_model_num_layers(b);
        cr_assert_eq(ct_model_freeze_to(b, d == 2 ? ct_model_layer(b, nl - 1)->name : depths[d]),
                     CT_OK);
        for (int i = 0; i < nl; i++)
            cr_expect_eq(ct_model_layer(a, i)->trainable, ct_model_layer(b, i)->trainable,
                         "%s: layer %d", depths[d], i);
        ct_model_memory ma, mb;
        ct_model_memory_get(a, &ma);
        ct_model_memory_get(b, &mb);
        cr_expect_eq(ma.grads, mb.grads, "%s", depths[d]);
        cr_expect_eq(ma.activations, mb.activations, "%s", depths[d]);
        cr_expect_eq(ct_model_first_trainable(a), ct_model_first_trainable(b));
        ct_model_free(a);
        ct_model_free(b);
    }
    ct_model_config bad = {.input_h = 32, .input_w = 32, .input_c = 3, .max_batch = 1,
                           .head = "mri", .seed = 5, .freeze_to = "block6_pool"};
    ct_model *m = NULL;
    cr_expect_eq(ct_model_init(&m, &bad, &be), CT_EINVAL);
    cr_expect(strstr(ct_last_error(), "no layer named 'block6_pool'") != NULL, "%s",
              ct_last_error());
    cr_expect_null(m);
}
