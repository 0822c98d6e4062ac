/* Keras HDF5 weights in and out.
 *
 * Reading: every layout in tests/fixtures (written by
 * tests/reference/make_weights_fixtures.py with h5py: the official notop and full layouts with
 * fixed- and variable-length strings, tf.keras 2 and Keras 3 save_weights, a whole-model file,
 * split layer_names, a Sequential head, Keras 3 .weights.h5 with and without names) loads into
 * the model it was made for, and every value lands where the formula of that script says: a
 * HWIO/KRSC mix-up or a layer paired with the wrong one changes values and fails exactly.
 * Writing: cutune's file follows the rules Keras's reader relies on, checked with the HDF5 API
 * (string kinds, dims {0}, order, paths), and reads back bit for bit. Every bad input gives a
 * message naming the file and the item, leaves the model untouched, and prints nothing from
 * HDF5 itself. The Keras round trip compares with predictions Keras made from a cutune file. */
#define _POSIX_C_SOURCE 200809L
#include <criterion/criterion.h>
#include <criterion/redirect.h>
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "model/model.h"
#include "core/rng.h"
#include "io/weights.h"
#include "io/io.h"
#include "util.h"

static ct_backend be;

static char tmpdir[64];

static void setup(void) { cr_assert_eq(ct_backend_cpu_init(&be, 0), CT_OK); }
/* The suite's setup runs too (first), so this only quiets stderr. */
static void setup_quiet(void) { cr_redirect_stderr(); }
static void teardown(void) {
    ct_backend_free(&be);
    if (tmpdir[0] != '\0') {
        char cmd[128];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
        if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
    }
}

TestSuite(weights, .init = setup, .fini = teardown, .timeout = 300);

#define FULL_HEAD "flatten,dense:4096:relu@fc1,dense:4096:relu@fc2,dense:1000:softmax@predictions"

static ct_model *make(int hw, const char *head, int aux, uint64_t seed) {
    ct_model_config cfg = {.input_h = hw, .input_w = hw, .input_c = 3, .aux_dim = aux,
                           .max_batch = 4, .head = head, .seed = seed};
    ct_model *m = NULL;
    ct_status s = ct_model_init(&m, &cfg, &be);
    cr_assert_eq(s, CT_OK, "%s", ct_last_error());
    return m;
}

static char *fx(const char *name) {
    static char buf[8][4096];
    static int k;
    char *b = buf[k++ % 8];
    snprintf(b, 4096, "%s", tu_fixture(name));
    return b;
}

static ct_weights_load_opts opts(ct_weights_match match, ct_weights_scope scope) {
    ct_weights_load_opts o;
    ct_weights_load_defaults(&o);
    o.match = match;
    o.scope = scope;
    return o;
}

/* ---- the fixture formula (see make_weights_fixtures.py) ---- */

#define DENSE_CORNER_MAX (513 * 512)

/* Checks layer `l` against the formula for position L. Conv kernels are compared through the
 * KRSC -> HWIO index map, so a transposition error fails here. */
static void check_layer(const ct_layer *l, int L, bool conv_corner) {
    const float fill = (float)(-L / 4.0);
    size_t bad = 0, first = 0;
    if (l->kind == CT_LAYER_CONV) {
        const int C = l->in_c, K = l->units;
        for (int k = 0; k < K; k++)
            for (int h = 0; h < 3; h++)
                for (int w = 0; w < 3; w++)
                    for (int c = 0; c < C; c++) {
                        size_t i = (((size_t)k * 3 + h) * 3 + w) * C + c; /* KRSC */
                        float want = conv_corner && c < 8 && k < 8
                                         ? (float)((L * 1024 + h * 256 + w * 64 + c * 8 + k) /
                                                   1024.0)
                                         : fill;
                        if (memcmp(&l->kernel.data[i], &want, sizeof want) != 0 && bad++ == 0)
                            first = i;
                    }
    } else {
        const int I = l->kernel.shape[0], O = l->units;
        bool corner = (size_t)I * O <= DENSE_CORNER_MAX;
        for (int i = 0; i < I; i++)
            for (int o = 0; o < O; o++) {
                float want = corner && i < 8 && o < 8
                                 ? (float)((L * 1024 + i * 8 + o) / 1024.0)
                                 : fill;
                size_t idx = (size_t)i * O + o;
                if (memcmp(&l->kernel.data[idx], &want, sizeof want) != 0 && bad++ == 0)
                    first = idx;
            }
    }
    cr_assert_eq(bad, 0, "%s (L=%d): %zu kernel values differ from the formula, first at %zu "
                 "(%g)", l->name, L, bad, first, (double)l->kernel.data[first]);
    for (int k = 0; k < l->units; k++) {
        float want = (float)(-(L * 64 + k % 64) / 64.0);
        cr_assert_eq(memcmp(&l->bias.data[k], &want, sizeof want), 0, "%s bias[%d] = %g, want %g",
                     l->name, k, (double)l->bias.data[k], (double)want);
    }
}

/* The 13 convolutions hold L = 1..13. */
static void check_backbone(ct_model *m, bool conv_corner) {
    int L = 0;
    for (int i = 0; i < 18; i++) {
        const ct_layer *l = ct_model_layer(m, i);
        if (l->kind == CT_LAYER_CONV) check_layer(l, ++L, conv_corner);
    }
    cr_assert_eq(L, 13);
}

static void check_head(ct_model *m, const char *const *names, int n, int L0) {
    for (int k = 0; k < n; k++) {
        const ct_layer *l = ct_model_find(m, names[k]);
        cr_assert_not_null(l, "no layer %s", names[k]);
        check_layer(l, L0 + k + 1, false);
    }
}

/* ---- reading every layout ---- */

/* VGG19's official notop file (16 convolutions) fills a VGG19 model, and a VGG16 model refuses
 * it with the flag that fixes it instead of loading 13 of its layers by name. */
Test(weights, official_vgg19_notop) {
    ct_weights_file *wf = NULL;
    cr_assert_eq(ct_weights_inspect(fx("keras1_vgg19_notop.h5"), &wf), CT_OK, "%s",
                 ct_last_error());
    cr_assert_eq(wf->format, CT_WEIGHTS_KERAS1);
    cr_assert_eq(wf->n_params, 20024384); /* keras.applications.VGG19(include_top=False) */
    cr_assert_eq(wf->n_layers, 22);       /* input_1, 16 convs, 5 pools */
    ct_weights_file_free(wf);

    ct_model_config cfg = {.backbone = "vgg19", .input_h = 40, .input_w = 40, .input_c = 3,
                           .max_batch = 2, .head = "mri", .seed = 1};
    ct_model *m = NULL;
    cr_assert_eq(ct_model_init(&m, &cfg, &be), CT_OK, "%s", ct_last_error());
    ct_weights_load_opts o = opts(CT_WEIGHTS_MATCH_NAME, CT_WEIGHTS_SCOPE_BACKBONE);
    ct_weights_report rep;
    cr_assert_eq(ct_weights_load(m, fx("keras1_vgg19_notop.h5"), &o, &rep), CT_OK, "%s",
                 ct_last_error());
    cr_assert_eq(rep.n_loaded, 16);
    cr_assert_eq(rep.n_params_loaded, 20024384);
    int L = 0;
    for (int i = 0; i < ct_model_num_layers(m); i++) {
        const ct_layer *l = ct_model_layer(m, i);
        if (l->kind == CT_LAYER_CONV) check_layer(l, ++L, true);
    }
    cr_assert_eq(L, 16);
    ct_model_free(m);

    m = make(64, "mri", 0, 1); /* VGG16 */
    cr_assert_eq(ct_weights_load(m, fx("keras1_vgg19_notop.h5"), &o, &rep), CT_EFORMAT);
    cr_assert(strstr(ct_last_error(), "'block3_conv4' belongs to VGG19, and this model is VGG16: "
                                      "build the model with --backbone vgg19") != NULL,
              "%s", ct_last_error());
    ct_model_free(m);
}

Test(weights, official_notop_fixed_and_vlen_strings) {
    const char *files[2] = {"keras1_notop_fixed.h5", "keras1_notop_vlen.h5"};
    for (int f = 0; f < 2; f++) {
        ct_weights_file *wf = NULL;
        cr_assert_eq(ct_weights_inspect(fx(files[f]), &wf), CT_OK, "%s", ct_last_error());
        cr_assert_eq(wf->format, CT_WEIGHTS_KERAS1);
        cr_assert_eq(wf->vlen_strings, f == 1);
        cr_assert_eq(wf->n_params, 14714688);
        cr_assert_eq(wf->n_layers, 19); /* input_1, 13 convs, 5 pools */
        cr_assert_str_eq(wf->layers[0].name, "input_1");
        cr_assert_eq(wf->layers[0].n_arrays, 0);
        cr_assert_str_eq(wf->layers[1].arrays[0].name, "block1_conv1_W_1:0");
        cr_assert_eq(wf->layers[1].arrays[0].dims[3], 64);
        ct_weights_file_free(wf);

        ct_model *m = make(64, "mri", 0, 1);
        ct_weights_load_opts o = opts(CT_WEIGHTS_MATCH_NAME, CT_WEIGHTS_SCOPE_BACKBONE);
        ct_weights_report rep;
        cr_assert_eq(ct_weights_load(m, fx(files[f]), &o, &rep), CT_OK, "%s", ct_last_error());
        cr_assert_eq(rep.n_loaded, 13);
        cr_assert_eq(rep.n_kept, 2);
        cr_assert_eq(rep.n_params_loaded, 14714688);
        cr_assert(strstr(rep.notes, "dense, dense_1 keep their initialisation") != NULL, "%s",
                  rep.notes);
        check_backbone(m, true);
        /* By order gives the same result: the file lists the 13 convs in order. */
        ct_model *m2 = make(64, "mri", 0, 2);
        o.match = CT_WEIGHTS_MATCH_ORDER;
        cr_assert_eq(ct_weights_load(m2, fx(files[f]), &o, NULL), CT_OK, "%s", ct_last_error());
        check_backbone(m2, true);
        ct_model_free(m2);
        ct_model_free(m);
    }

    /* Given as a path (`cutune train --weights FILE`), the notop file fills the backbone and
     * the head keeps its initialisation, as VGG16(weights=path, include_top=False) under a new
     * head; loaded strictly, the message says so. */
    ct_model *m = make(64, "mri", 0, 1);
    ct_weights_report rep;
    cr_assert_eq(ct_weights_load_spec(m, fx("keras1_notop_fixed.h5"), NULL, &rep), CT_OK, "%s",
                 ct_last_error());
    cr_assert_eq(rep.n_loaded, 13);
    cr_assert_eq(rep.n_kept, 2);
    check_backbone(m, true);
    cr_assert_eq(ct_weights_load(m, fx("keras1_notop_fixed.h5"), NULL, NULL), CT_ENOTFOUND);
    cr_assert(strstr(ct_last_error(), "which holds the VGG16 backbone only") != NULL, "%s",
              ct_last_error());
    /* A file with a head of its own loads whole or not at all. */
    cr_assert_eq(ct_weights_load_spec(m, fx("keras1_full.h5"), NULL, NULL), CT_ENOTFOUND);
    cr_assert(strstr(ct_last_error(), "head layer 'dense'") != NULL, "%s", ct_last_error());
    cr_assert(strstr(ct_last_error(), "backbone only") == NULL, "%s", ct_last_error());
    ct_model_free(m);
}

Test(weights, official_full_file_into_a_224_model_with_the_imagenet_head) {
    ct_model *m = make(224, FULL_HEAD, 0, 1);
    ct_weights_report rep;
    cr_assert_eq(ct_weights_load(m, fx("keras1_full.h5"), NULL, &rep), CT_OK, "%s",
                 ct_last_error());
    cr_assert_eq(rep.n_loaded, 16);
    cr_assert_eq(rep.n_params_loaded, 138357544, "%zu", rep.n_params_loaded);
    check_backbone(m, false);
    static const char *head[] = {"fc1", "fc2", "predictions"};
    check_head(m, head, 3, 13);
    ct_model_free(m);
}

Test(weights, full_file_elsewhere_says_why_or_loads_the_backbone) {
    /* A 150x150 model with the ImageNet head: fc1 takes 4x4x512, not 7x7x512. */
    ct_model *m = make(150, FULL_HEAD, 0, 1);
    ct_status s = ct_weights_load(m, fx("keras1_full.h5"), NULL, NULL);
    cr_assert_eq(s, CT_ESHAPE, "%s", ct_last_error());
    const char *e = ct_last_error();
    cr_assert(strstr(e, "keras1_full.h5: layer fc1: kernel fc1_W_1:0") != NULL, "%s", e);
    cr_assert(strstr(e, "expected (8192, 4096) found (25088, 4096)") != NULL, "%s", e);
    cr_assert(strstr(e, "224x224 input") != NULL, "%s", e);
    ct_model_free(m);

    /* A model without those layers: the strict load explains, the backbone load skips them. */
    m = make(224, "mri", 0, 1);
    s = ct_weights_load(m, fx("keras1_full.h5"), NULL, NULL);
    cr_assert_eq(s, CT_ENOTFOUND, "%s", ct_last_error());
    cr_assert(strstr(ct_last_error(), "head layer 'dense'") != NULL, "%s", ct_last_error());
    ct_weights_load_opts o = opts(CT_WEIGHTS_MATCH_NAME, CT_WEIGHTS_SCOPE_ALL);
    o.allow_missing = true;
    s = ct_weights_load(m, fx("keras1_full.h5"), &o, NULL);
    cr_assert_eq(s, CT_EFORMAT, "%s", ct_last_error());
    cr_assert(strstr(ct_last_error(), "fc1") != NULL &&
                  strstr(ct_last_error(), "224x224") != NULL &&
                  strstr(ct_last_error(), "dense:1000:softmax@predictions") != NULL,
              "%s", ct_last_error());
    ct_weights_report rep;
    o = opts(CT_WEIGHTS_MATCH_NAME, CT_WEIGHTS_SCOPE_BACKBONE);
    cr_assert_eq(ct_weights_load(m, fx("keras1_full.h5"), &o, &rep), CT_OK, "%s",
                 ct_last_error());
    cr_assert_eq(rep.n_loaded, 13);
    cr_assert_eq(rep.n_skipped, 3);
    cr_assert(strstr(rep.notes, "Skipped the file's fc1, fc2, predictions") != NULL, "%s",
              rep.notes);
    check_backbone(m, false);
    ct_model_free(m);
}

Test(weights, tf_keras2_save_weights_mri_head) {
    ct_weights_file *wf = NULL;
    cr_assert_eq(ct_weights_inspect(fx("tfkeras2_mri64.h5"), &wf), CT_OK, "%s", ct_last_error());
    cr_assert_eq(wf->format, CT_WEIGHTS_LEGACY);
    cr_assert_str_eq(wf->keras_version, "2.15.0");
    cr_assert_str_eq(wf->layers[1].arrays[0].name, "block1_conv1/kernel:0");
    cr_assert_str_eq(wf->layers[1].arrays[0].path, "/block1_conv1/block1_conv1/kernel:0");
    ct_weights_file_free(wf);
    ct_weights_match modes[2] = {CT_WEIGHTS_MATCH_NAME, CT_WEIGHTS_MATCH_ORDER};
    for (int k = 0; k < 2; k++) {
        ct_model *m = make(64, "mri", 0, 1);
        ct_weights_load_opts o = opts(modes[k], CT_WEIGHTS_SCOPE_ALL);
        ct_weights_report rep;
        cr_assert_eq(ct_weights_load(m, fx("tfkeras2_mri64.h5"), &o, &rep), CT_OK, "%s",
                     ct_last_error());
        cr_assert_eq(rep.n_loaded, 15);
        check_backbone(m, false);
        static const char *head[] = {"dense", "dense_1"};
        check_head(m, head, 2, 13);
        ct_model_free(m);
    }
}

Test(weights, other_names_pair_by_order_as_keras_does) {
    ct_model *m = make(64, "flatten,dense:64:relu@hidden,dense:2:softmax@out", 0, 1);
    ct_status s = ct_weights_load(m, fx("tfkeras2_mri64.h5"), NULL, NULL);
    cr_assert_eq(s, CT_ENOTFOUND);
    cr_assert(strstr(ct_last_error(), "'hidden' is not in the file") != NULL &&
                  strstr(ct_last_error(), "match by order") != NULL,
              "%s", ct_last_error());
    ct_weights_load_opts o = opts(CT_WEIGHTS_MATCH_ORDER, CT_WEIGHTS_SCOPE_ALL);
    cr_assert_eq(ct_weights_load(m, fx("tfkeras2_mri64.h5"), &o, NULL), CT_OK, "%s",
                 ct_last_error());
    static const char *head[] = {"hidden", "out"};
    check_head(m, head, 2, 13);
    ct_model_free(m);
    /* Counts must agree, as in Keras: the iceberg file has 17 layers with weights. */
    m = make(64, "mri", 0, 1);
    s = ct_weights_load(m, fx("keras3_iceberg48.h5"), &o, NULL);
    cr_assert_eq(s, CT_EFORMAT, "%s", ct_last_error());
    cr_assert(strstr(ct_last_error(), "layer count mismatch") != NULL, "%s", ct_last_error());
    ct_model_free(m);
}

Test(weights, sequential_head_is_read_as_its_layers) {
    ct_model *m = make(64, "mri", 0, 1);
    ct_weights_report rep;
    cr_assert_eq(ct_weights_load(m, fx("tfkeras2_seqhead.h5"), NULL, &rep), CT_OK, "%s",
                 ct_last_error());
    cr_assert(strstr(rep.notes, "'sequential' is a nested model") != NULL, "%s", rep.notes);
    check_backbone(m, false);
    static const char *head[] = {"dense", "dense_1"};
    check_head(m, head, 2, 13);
    ct_model_free(m);
}

static const char *const ICEBERG_HEAD_PARAMS[] = {"dense", "fc2", "fc3", "dense_1"};

Test(weights, keras3_legacy_iceberg_by_name_and_by_order) {
    ct_weights_match modes[2] = {CT_WEIGHTS_MATCH_NAME, CT_WEIGHTS_MATCH_ORDER};
    for (int k = 0; k < 2; k++) {
        ct_model *m = make(48, "iceberg", 1, 1);
        ct_weights_load_opts o = opts(modes[k], CT_WEIGHTS_SCOPE_ALL);
        cr_assert_eq(ct_weights_load(m, fx("keras3_iceberg48.h5"), &o, NULL), CT_OK, "%s",
                     ct_last_error());
        check_backbone(m, false);
        check_head(m, ICEBERG_HEAD_PARAMS, 4, 13);
        ct_model_free(m);
    }
}

Test(weights, whole_model_file_and_split_names) {
    ct_weights_file *wf = NULL;
    cr_assert_eq(ct_weights_inspect(fx("keras3_model_mri64.h5"), &wf), CT_OK, "%s",
                 ct_last_error());
    cr_assert_eq(wf->format, CT_WEIGHTS_LEGACY_MODEL);
    cr_assert_str_eq(wf->layers[1].arrays[0].path,
                     "/model_weights/block1_conv1/block1_conv1/kernel");
    ct_weights_file_free(wf);
    ct_model *m = make(64, "mri", 0, 1);
    cr_assert_eq(ct_weights_load(m, fx("keras3_model_mri64.h5"), NULL, NULL), CT_OK, "%s",
                 ct_last_error());
    check_backbone(m, false);
    static const char *head[] = {"dense", "dense_1"};
    check_head(m, head, 2, 13);
    ct_model_free(m);

    cr_assert_eq(ct_weights_inspect(fx("split_names.h5"), &wf), CT_OK, "%s", ct_last_error());
    cr_assert(wf->split_names);
    cr_assert_eq(wf->n_layers, 19);
    cr_assert_str_eq(wf->layers[18].name, "block5_pool");
    ct_weights_file_free(wf);
    m = make(64, "mri", 0, 1);
    ct_weights_load_opts o = opts(CT_WEIGHTS_MATCH_ORDER, CT_WEIGHTS_SCOPE_BACKBONE);
    cr_assert_eq(ct_weights_load(m, fx("split_names.h5"), &o, NULL), CT_OK, "%s",
                 ct_last_error());
    check_backbone(m, false);
    ct_model_free(m);
}

Test(weights, keras3_weights_h5_with_and_without_names) {
    ct_weights_file *wf = NULL;
    cr_assert_eq(ct_weights_inspect(fx("keras3_iceberg48.weights.h5"), &wf), CT_OK, "%s",
                 ct_last_error());
    cr_assert_eq(wf->format, CT_WEIGHTS_KERAS3);
    cr_assert(wf->names_known);
    ct_weights_file_free(wf);
    ct_model *m = make(48, "iceberg", 1, 1);
    cr_assert_eq(ct_weights_load(m, fx("keras3_iceberg48.weights.h5"), NULL, NULL), CT_OK, "%s",
                 ct_last_error());
    check_backbone(m, true);
    check_head(m, ICEBERG_HEAD_PARAMS, 4, 13);
    ct_model_free(m);

    cr_assert_eq(ct_weights_inspect(fx("keras3_nonames_mri64.weights.h5"), &wf), CT_OK, "%s",
                 ct_last_error());
    cr_assert(!wf->names_known);
    /* conv2d_10 must follow conv2d_9, not conv2d_1 (HDF5 lists groups alphabetically). */
    int k9 = -1, k10 = -1;
    for (int i = 0; i < wf->n_layers; i++) {
        if (strcmp(wf->layers[i].name, "layers/conv2d_9") == 0) k9 = i;
        if (strcmp(wf->layers[i].name, "layers/conv2d_10") == 0) k10 = i;
    }
    cr_assert(k9 >= 0 && k10 == k9 + 1, "conv2d_9 at %d, conv2d_10 at %d", k9, k10);
    ct_weights_file_free(wf);
    m = make(64, "mri", 0, 1);
    ct_weights_report rep;
    cr_assert_eq(ct_weights_load(m, fx("keras3_nonames_mri64.weights.h5"), NULL, &rep), CT_OK,
                 "%s", ct_last_error());
    cr_assert(strstr(rep.notes, "class order") != NULL, "%s", rep.notes);
    check_backbone(m, true);
    static const char *head[] = {"dense", "dense_1"};
    check_head(m, head, 2, 13);
    ct_model_free(m);
}

/* ---- bad input ---- */

/* Loads `file` into a fresh mri model and expects `code` with every `needle` in the message,
 * the model unchanged, and nothing printed by HDF5. */
static void expect_bad(const char *file, ct_weights_scope scope, bool allow_missing,
                       ct_status code, const char *const *needles) {
    ct_model *m = make(64, "mri", 0, 1), *ref = make(64, "mri", 0, 1);
    ct_weights_load_opts o = opts(CT_WEIGHTS_MATCH_NAME, scope);
    o.allow_missing = allow_missing;
    ct_status s = ct_weights_load(m, fx(file), &o, NULL);
    const char *e = ct_last_error();
    cr_assert_eq(s, code, "%s: got %s, expected %s: %s", file, ct_status_name(s),
                 ct_status_name(code), e);
    cr_assert(strstr(e, file) != NULL, "the message does not name the file: %s", e);
    for (int k = 0; needles[k] != NULL; k++)
        cr_assert(strstr(e, needles[k]) != NULL, "%s: message lacks '%s': %s", file, needles[k],
                  e);
    for (int i = 0; i < ct_model_num_layers(m); i++) {
        const ct_layer *a = ct_model_layer(m, i), *b = ct_model_layer(ref, i);
        if (a->kernel.data == NULL) continue;
        cr_assert_eq(memcmp(a->kernel.data, b->kernel.data, a->kernel.size * sizeof(float)), 0,
                     "%s: a failed load changed %s", file, a->name);
    }
    ct_model_free(ref);
    ct_model_free(m);
}

Test(weights, bad_inputs_name_the_file_and_the_item, .init = setup_quiet) {
    const ct_weights_scope B = CT_WEIGHTS_SCOPE_BACKBONE;
    expect_bad("bad_not_hdf5.h5", B, false, CT_EFORMAT,
               (const char *[]){"not an HDF5 file", NULL});
    expect_bad("bad_truncated.h5", B, false, CT_EFORMAT, (const char *[]){"truncated", NULL});
    expect_bad("bad_not_keras.h5", B, false, CT_EFORMAT,
               (const char *[]){"not Keras weights", NULL});
    expect_bad("bad_missing_layer.h5", B, false, CT_ENOTFOUND,
               (const char *[]){"'block4_conv3' is not in the file", NULL});
    expect_bad("bad_shape.h5", B, false, CT_ESHAPE,
               (const char *[]){"layer block3_conv2: kernel block3_conv2_W_1:0",
                                "expected (3, 3, 256, 256) found (3, 3, 128, 256)", NULL});
    expect_bad("bad_int_kernel.h5", B, false, CT_EFORMAT,
               (const char *[]){"layer block2_conv1", "int32", "floating point", NULL});
    expect_bad("bad_nan.h5", B, false, CT_ENUMERIC,
               (const char *[]){"layer block5_conv3", "block5_conv3_b_1:0", "NaN", "(100,)",
                                NULL});
    expect_bad("bad_inf.h5", B, false, CT_ENUMERIC,
               (const char *[]){"layer block1_conv2", "+Inf", "(1, 2, 3, 4)", NULL});
    expect_bad("bad_extra_layer.h5", CT_WEIGHTS_SCOPE_ALL, true, CT_EFORMAT,
               (const char *[]){"layer 'my_dense'", "not in the model", NULL});
    expect_bad("bad_missing_dataset.h5", B, false, CT_EFORMAT,
               (const char *[]){"layer block2_conv2", "block2_conv2_b_1:0", NULL});
    expect_bad("does_not_exist.h5", B, false, CT_ENOTFOUND,
               (const char *[]){"no such file", NULL});
    fflush(stderr);
    cr_assert_stderr_eq_str("", "HDF5 printed its own error stack");
}

Test(weights, float64_is_converted_with_a_note_and_extra_layers_can_be_skipped) {
    ct_model *m = make(64, "mri", 0, 1);
    ct_weights_load_opts o = opts(CT_WEIGHTS_MATCH_NAME, CT_WEIGHTS_SCOPE_BACKBONE);
    ct_weights_report rep;
    cr_assert_eq(ct_weights_load(m, fx("bad_float64.h5"), &o, &rep), CT_OK, "%s",
                 ct_last_error());
    cr_assert(strstr(rep.notes, "block1_conv1 block1_conv1_W_1:0 was float64 and is converted "
                                "to float32") != NULL, "%s", rep.notes);
    check_backbone(m, false);
    o.scope = CT_WEIGHTS_SCOPE_ALL;
    o.allow_missing = o.allow_extra = true;
    cr_assert_eq(ct_weights_load(m, fx("bad_extra_layer.h5"), &o, &rep), CT_OK, "%s",
                 ct_last_error());
    cr_assert_eq(rep.n_skipped, 1);
    cr_assert(strstr(rep.notes, "Skipped the file's my_dense") != NULL, "%s", rep.notes);
    ct_model_free(m);
}

Test(weights, a_directory_and_an_empty_file_are_refused) {
    ct_model *m = make(32, "mri", 0, 1);
    char dir[] = "/tmp/ct_w_XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    cr_assert_eq(ct_weights_load(m, dir, NULL, NULL), CT_EINVAL);
    cr_assert(strstr(ct_last_error(), "is a directory") != NULL, "%s", ct_last_error());
    char empty[4200];
    snprintf(empty, sizeof empty, "%s/empty.h5", dir);
    fclose(fopen(empty, "w"));
    cr_assert_eq(ct_weights_load(m, empty, NULL, NULL), CT_EFORMAT);
    cr_assert(strstr(ct_last_error(), "empty file") != NULL, "%s", ct_last_error());
    unlink(empty);
    rmdir(dir);
    ct_model_free(m);
}

/* ---- writing ---- */

static const char *tmp_path(const char *name) {
    static char p[4][256];
    static int k;
    if (tmpdir[0] == '\0') {
        snprintf(tmpdir, sizeof tmpdir, "/tmp/ct_w_XXXXXX");
        cr_assert_not_null(mkdtemp(tmpdir));
    }
    char *b = p[k++ % 4];
    snprintf(b, 256, "%s/%s", tmpdir, name);
    return b;
}

static void assert_same_params(ct_model *a, ct_model *b) {
    cr_assert_eq(ct_model_num_layers(a), ct_model_num_layers(b));
    for (int i = 0; i < ct_model_num_layers(a); i++) {
        const ct_layer *la = ct_model_layer(a, i), *lb = ct_model_layer(b, i);
        if (la->kind != CT_LAYER_CONV && la->kind != CT_LAYER_DENSE) continue;
        cr_assert_eq(memcmp(la->kernel.data, lb->kernel.data, la->kernel.size * sizeof(float)),
                     0, "%s kernel differs after the round trip", la->name);
        cr_assert_eq(memcmp(la->bias.data, lb->bias.data, la->bias.size * sizeof(float)), 0,
                     "%s bias differs after the round trip", la->name);
    }
}

/* Non-zero biases, so that the round trip checks them too. */
static void perturb_biases(ct_model *m) {
    for (int i = 0; i < ct_model_num_layers(m); i++) {
        ct_layer *l = ct_model_layer(m, i);
        if (l->kind == CT_LAYER_CONV || l->kind == CT_LAYER_DENSE)
            tu_fill(l->bias.data, l->bias.size, (uint32_t)i, -0.1f, 0.1f);
    }
}

Test(weights, round_trip_is_bit_exact_and_keeps_the_configuration) {
    const char *heads[2] = {"iceberg", "mri"};
    const int sizes[2] = {48, 64}, auxs[2] = {1, 0};
    for (int k = 0; k < 2; k++) {
        ct_model *a = make(sizes[k], heads[k], auxs[k], 11), *b = make(sizes[k], heads[k],
                                                                       auxs[k], 12);
        perturb_biases(a);
        const char *classes[2] = {"ship", "iceberg"};
        ct_weights_save_opts so = {.preprocessing = "caffe", .class_names = classes,
                                   .n_classes = 2};
        const char *p = tmp_path(k ? "mri.h5" : "iceberg.h5");
        cr_assert_eq(ct_weights_save(a, p, &so), CT_OK, "%s", ct_last_error());
        ct_weights_report rep;
        cr_assert_eq(ct_weights_load(b, p, NULL, &rep), CT_OK, "%s", ct_last_error());
        cr_assert_eq(rep.format, CT_WEIGHTS_LEGACY);
        cr_assert_eq(rep.n_kept, 0);
        assert_same_params(a, b);
        /* By order reads the same file the same way. */
        ct_model *c = make(sizes[k], heads[k], auxs[k], 13);
        ct_weights_load_opts o = opts(CT_WEIGHTS_MATCH_ORDER, CT_WEIGHTS_SCOPE_ALL);
        cr_assert_eq(ct_weights_load(c, p, &o, NULL), CT_OK, "%s", ct_last_error());
        assert_same_params(a, c);

        ct_model_config cfg = {.max_batch = 3, .seed = 5};
        ct_saved_config extra;
        cr_assert_eq(ct_weights_read_config(p, &cfg, &extra), CT_OK, "%s", ct_last_error());
        cr_assert_eq(cfg.input_h, sizes[k]);
        cr_assert_eq(cfg.input_w, sizes[k]);
        cr_assert_eq(cfg.input_c, 3);
        cr_assert_eq(cfg.aux_dim, auxs[k]);
        cr_assert_eq(cfg.max_batch, 3);
        cr_assert_str_eq(cfg.head, ct_model_head_spec(a));
        cr_assert_str_eq(extra.preprocessing, "caffe");
        cr_assert_eq(extra.n_classes, 2);
        cr_assert_str_eq(extra.class_names[1], "iceberg");
        cr_assert_str_eq(extra.cutune_version, CUTUNE_VERSION);
        /* The configuration alone rebuilds a model that takes the weights. */
        ct_model *d = NULL;
        cr_assert_eq(ct_model_init(&d, &cfg, &be), CT_OK, "%s", ct_last_error());
        cr_assert_eq(ct_weights_load(d, p, NULL, NULL), CT_OK, "%s", ct_last_error());
        assert_same_params(a, d);
        ct_saved_config_free(&extra);
        ct_model_free(d);
        ct_model_free(c);
        ct_model_free(b);
        ct_model_free(a);
    }
    /* A Keras file has no configuration: the message says so. */
    ct_model_config cfg = {0};
    ct_saved_config extra;
    cr_assert_eq(ct_weights_read_config(fx("tfkeras2_mri64.h5"), &cfg, &extra), CT_ENOTFOUND);
    cr_assert(strstr(ct_last_error(), "not written by cutune") != NULL, "%s", ct_last_error());
}

Test(weights, backbone_only_save_is_notop_sized) {
    ct_model *a = make(32, "gap,dense:3:softmax", 0, 21), *b = make(64, "mri", 0, 22);
    const char *p = tmp_path("notop.h5");
    ct_weights_save_opts so = {.backbone_only = true};
    cr_assert_eq(ct_weights_save(a, p, &so), CT_OK, "%s", ct_last_error());
    ct_weights_file *wf = NULL;
    cr_assert_eq(ct_weights_inspect(p, &wf), CT_OK, "%s", ct_last_error());
    cr_assert_eq(wf->n_params, 14714688);
    cr_assert_eq(wf->n_layers, 19);
    ct_weights_file_free(wf);
    ct_weights_load_opts o = opts(CT_WEIGHTS_MATCH_NAME, CT_WEIGHTS_SCOPE_BACKBONE);
    cr_assert_eq(ct_weights_load(b, p, &o, NULL), CT_OK, "%s", ct_last_error());
    for (int i = 0; i < 18; i++) {
        const ct_layer *la = ct_model_layer(a, i), *lb = ct_model_layer(b, i);
        if (la->kind == CT_LAYER_CONV)
            cr_assert_eq(memcmp(la->kernel.data, lb->kernel.data, la->kernel.size * 4), 0);
    }
    ct_model_free(b);
    ct_model_free(a);
}

/* The attribute `name` of `loc` as HDF5 stores it. */
typedef struct attr_info {
    H5T_class_t cls;
    bool vlen;
    H5T_cset_t cset;
    H5S_class_t space;
    int ndims;
    hsize_t dims[2];
    size_t size;
} attr_info;

static attr_info attr_get(hid_t loc, const char *obj, const char *name) {
    attr_info a = {0};
    hid_t at = H5Aopen_by_name(loc, obj, name, H5P_DEFAULT, H5P_DEFAULT);
    cr_assert(at >= 0, "%s has no attribute %s", obj, name);
    hid_t t = H5Aget_type(at), s = H5Aget_space(at);
    a.cls = H5Tget_class(t);
    a.size = H5Tget_size(t);
    if (a.cls == H5T_STRING) {
        a.vlen = H5Tis_variable_str(t) > 0;
        a.cset = H5Tget_cset(t);
    }
    a.space = H5Sget_simple_extent_type(s);
    a.ndims = H5Sget_simple_extent_ndims(s);
    if (a.ndims > 0 && a.ndims <= 2) H5Sget_simple_extent_dims(s, a.dims, NULL);
    H5Tclose(t);
    H5Sclose(s);
    H5Aclose(at);
    return a;
}

Test(weights, written_files_follow_the_rules_keras_reads_by) {
    ct_model *m = make(48, "iceberg", 1, 31);
    const char *p = tmp_path("keras_rules.h5");
    cr_assert_eq(ct_weights_save(m, p, NULL), CT_OK, "%s", ct_last_error());
    hid_t f = H5Fopen(p, H5F_ACC_RDONLY, H5P_DEFAULT);
    cr_assert(f >= 0);
    /* layer_names: variable-length ASCII strings, 1-D, in Keras's model.layers order for the
     * model export-keras prints (checked against Keras 3.15 by keras_roundtrip.py). */
    attr_info ln = attr_get(f, "/", "layer_names");
    cr_assert_eq(ln.cls, H5T_STRING);
    cr_assert(ln.vlen);
    cr_assert_eq(ln.cset, H5T_CSET_ASCII);
    cr_assert_eq(ln.ndims, 1);
    static const char *order[] = {
        "input_image", "block1_conv1", "block1_conv2", "block1_pool", "block2_conv1",
        "block2_conv2", "block2_pool", "block3_conv1", "block3_conv2", "block3_conv3",
        "block3_pool", "block4_conv1", "block4_conv2", "block4_conv3", "block4_pool",
        "block5_conv1", "block5_conv2", "block5_conv3", "block5_pool", "input_aux",
        "global_max_pooling2d", "dense", "concatenate", "fc2", "dropout", "fc3", "dropout_1",
        "dense_1"};
    const int n_order = (int)(sizeof order / sizeof order[0]);
    cr_assert_eq(ln.dims[0], (hsize_t)n_order);
    ct__strlist names = {0};
    bool found = false, vlen = false;
    cr_assert_eq(ct__h5_read_strings(f, "layer_names", p, &names, &found, &vlen, NULL), CT_OK);
    for (int i = 0; i < n_order; i++) cr_assert_str_eq(names.s[i], order[i]);
    ct__strlist_free(&names);
    cr_assert_eq(attr_get(f, "/", "backend").cls, H5T_STRING);
    cr_assert_eq(attr_get(f, "/", "keras_version").cls, H5T_STRING);
    /* Empty weight_names: float64, simple dataspace, dims {0}; never a null dataspace. */
    const char *empty[] = {"block1_pool", "input_image", "input_aux", "dropout", "concatenate",
                           "global_max_pooling2d", "top_level_model_weights"};
    for (size_t i = 0; i < sizeof empty / sizeof empty[0]; i++) {
        attr_info wn = attr_get(f, empty[i], "weight_names");
        cr_assert_eq(wn.cls, H5T_FLOAT, "%s", empty[i]);
        cr_assert_eq(wn.size, 8);
        cr_assert_eq(wn.space, H5S_SIMPLE, "%s: weight_names is not a simple dataspace",
                     empty[i]);
        cr_assert_eq(wn.ndims, 1);
        cr_assert_eq(wn.dims[0], 0);
    }
    /* Layers with weights: <layer>/kernel and <layer>/bias, data at <layer>/<layer>/kernel. */
    attr_info wn = attr_get(f, "fc2", "weight_names");
    cr_assert(wn.vlen && wn.dims[0] == 2);
    hid_t g = H5Gopen2(f, "fc2", H5P_DEFAULT);
    cr_assert_eq(ct__h5_read_strings(g, "weight_names", p, &names, &found, NULL, NULL), CT_OK);
    cr_assert_str_eq(names.s[0], "fc2/kernel");
    cr_assert_str_eq(names.s[1], "fc2/bias");
    ct__strlist_free(&names);
    H5Gclose(g);
    hid_t ds = H5Dopen2(f, "/block1_conv2/block1_conv2/kernel", H5P_DEFAULT);
    cr_assert(ds >= 0, "no dataset at block1_conv2/block1_conv2/kernel");
    hid_t t = H5Dget_type(ds), sp = H5Dget_space(ds);
    cr_assert(H5Tequal(t, H5T_IEEE_F32LE) > 0);
    hsize_t d[4];
    cr_assert_eq(H5Sget_simple_extent_ndims(sp), 4);
    H5Sget_simple_extent_dims(sp, d, NULL);
    cr_assert(d[0] == 3 && d[1] == 3 && d[2] == 64 && d[3] == 64, "not HWIO");
    /* HWIO element (h, w, c, k) is KRSC element (k, h, w, c). */
    float *hwio = malloc(3 * 3 * 64 * 64 * sizeof *hwio);
    cr_assert_eq(H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, hwio), 0);
    const ct_layer *l = ct_model_find(m, "block1_conv2");
    for (int k = 0; k < 64; k += 7)
        for (int h = 0; h < 3; h++)
            for (int w = 0; w < 3; w++)
                for (int c = 0; c < 64; c += 5)
                    cr_assert_eq(hwio[((h * 3 + w) * 64 + c) * 64 + k],
                                 l->kernel.data[((k * 3 + h) * 3 + w) * 64 + c]);
    free(hwio);
    H5Tclose(t);
    H5Sclose(sp);
    H5Dclose(ds);
    ds = H5Dopen2(f, "/fc2/fc2/kernel", H5P_DEFAULT);
    sp = H5Dget_space(ds);
    H5Sget_simple_extent_dims(sp, d, NULL);
    cr_assert(d[0] == 513 && d[1] == 512);
    H5Sclose(sp);
    H5Dclose(ds);
    H5Fclose(f);
    ct_model_free(m);
}

Test(weights, long_name_lists_split_as_keras_splits_them) {
    const char *p = tmp_path("split.h5");
    hid_t f = H5Fcreate(p, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    const char *names[7] = {"a", "bb", "ccc", "dddd", "eeeee", "f", "g"};
    /* 7 names of at most 5 bytes = 35 bytes as numpy counts; a 16-byte limit gives 3 parts
     * (numpy array_split: 3, 2, 2 names = 15, 10, 10 bytes). */
    cr_assert_eq(ct__h5_write_strings(f, "layer_names", names, 7, 16), CT_OK, "%s",
                 ct_last_error());
    cr_assert_eq(H5Aexists(f, "layer_names"), 0);
    cr_assert_eq(attr_get(f, "/", "layer_names0").dims[0], 3);
    cr_assert_eq(attr_get(f, "/", "layer_names1").dims[0], 2);
    cr_assert_eq(attr_get(f, "/", "layer_names2").dims[0], 2);
    cr_assert_eq(H5Aexists(f, "layer_names3"), 0);
    ct__strlist back = {0};
    bool found = false, split = false;
    cr_assert_eq(ct__h5_read_strings(f, "layer_names", p, &back, &found, NULL, &split), CT_OK);
    cr_assert(found && split);
    cr_assert_eq(back.n, 7);
    for (int i = 0; i < 7; i++) cr_assert_str_eq(back.s[i], names[i]);
    ct__strlist_free(&back);
    /* Under the limit: one attribute. A name over the limit is refused. */
    cr_assert_eq(ct__h5_write_strings(f, "short", names, 3, CT_KERAS_ATTR_LIMIT), CT_OK);
    cr_assert_eq(H5Aexists(f, "short"), 1);
    cr_assert_eq(ct__h5_write_strings(f, "toolong", names, 7, 4), CT_EINVAL);
    H5Fclose(f);
}

Test(weights, saving_refuses_nan_and_keeps_the_old_file) {
    ct_model *m = make(32, "mri", 0, 41);
    const char *p = tmp_path("nan.h5");
    cr_assert_eq(ct_weights_save(m, p, NULL), CT_OK, "%s", ct_last_error());
    struct stat before;
    cr_assert_eq(stat(p, &before), 0);
    ct_layer *l = ct_model_find(m, "dense_1");
    l->kernel.data[3] = NAN;
    ct_status s = ct_weights_save(m, p, NULL);
    cr_assert_eq(s, CT_ENUMERIC, "%s", ct_last_error());
    cr_assert(strstr(ct_last_error(), "dense_1") != NULL && strstr(ct_last_error(), "NaN"),
              "%s", ct_last_error());
    struct stat after;
    cr_assert_eq(stat(p, &after), 0);
    cr_assert_eq(before.st_ino, after.st_ino, "the old file was replaced");
    cr_assert_eq(before.st_size, after.st_size);
    /* Bad save options and a missing directory fail before writing anything. */
    ct_weights_save_opts so = {.preprocessing = "bgr"};
    cr_assert_eq(ct_weights_save(m, tmp_path("x.h5"), &so), CT_EINVAL);
    l->kernel.data[3] = 0.0f;
    cr_assert_eq(ct_weights_save(m, "/nonexistent_dir_ct/x.h5", NULL), CT_EIO);
    cr_assert(strstr(ct_last_error(), "does not exist") != NULL, "%s", ct_last_error());
    ct_model_free(m);
}

/* The loader transposes into host memory for the CPU backend and copies through a host buffer
 * for the others: on CUDA, a file loaded into the device model and saved back must hold the
 * fixture's values exactly. */
Test(weights, cuda_backend_loads_and_saves_like_the_cpu) {
    ct_backend gpu;
    if (ct_backend_cuda_init(&gpu, 0) != CT_OK)
        cr_skip_test("no usable CUDA device: %s", ct_last_error());
    ct_model_config cfg = {.input_h = 48, .input_w = 48, .input_c = 3, .aux_dim = 1,
                           .max_batch = 2, .head = "iceberg", .seed = 1};
    ct_model *g = NULL;
    cr_assert_eq(ct_model_init(&g, &cfg, &gpu), CT_OK, "%s", ct_last_error());
    cr_assert_eq(ct_weights_load(g, fx("keras3_iceberg48.weights.h5"), NULL, NULL), CT_OK, "%s",
                 ct_last_error());
    const char *p = tmp_path("cuda.h5");
    cr_assert_eq(ct_weights_save(g, p, NULL), CT_OK, "%s", ct_last_error());
    ct_model *c = make(48, "iceberg", 1, 2);
    cr_assert_eq(ct_weights_load(c, p, NULL, NULL), CT_OK, "%s", ct_last_error());
    check_backbone(c, true);
    check_head(c, ICEBERG_HEAD_PARAMS, 4, 13);
    ct_model_free(c);
    ct_model_free(g);
    ct_backend_free(&gpu);
}

/* ---- resolving imagenet ---- */

Test(weights, imagenet_resolves_from_cutune_weights_and_keras_cache) {
    char dir[] = "/tmp/ct_wr_XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    cr_assert_eq(chdir(dir), 0); /* no ./weights here */
    char home[4200], kdir[4300], link[4400];
    snprintf(home, sizeof home, "%s/home", dir);
    snprintf(kdir, sizeof kdir, "%s/.keras/models", home);
    cr_assert_eq(system(NULL) != 0, 1);
    char cmd[9000];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s'", kdir);
    cr_assert_eq(system(cmd), 0);
    setenv("HOME", home, 1);
    unsetenv("CUTUNE_WEIGHTS");
    char path[4096];
    ct_status s = ct_weights_resolve_imagenet(NULL, false, path, sizeof path);
    if (s == CT_OK) {
        /* A developer fetched the real file into the checkout: it must be that one. */
        cr_assert(strstr(path, "/weights/" CT_IMAGENET_NOTOP) != NULL, "%s", path);
    } else {
        cr_assert_eq(s, CT_ENOTFOUND);
        const char *e = ct_last_error();
        cr_assert(strstr(e, CT_IMAGENET_NOTOP) != NULL, "%s", e);
        cr_assert(strstr(e, "fetch.sh") != NULL, "%s", e);
        cr_assert(strstr(e, "storage.googleapis.com/tensorflow/keras-applications/vgg16/") != NULL,
                  "%s", e);
        cr_assert(strstr(e, kdir) != NULL, "the message does not list ~/.keras/models: %s", e);
        cr_assert(strstr(e, "CUTUNE_WEIGHTS") != NULL, "%s", e);
    }
    /* ~/.keras/models, where Keras keeps it. */
    snprintf(link, sizeof link, "%s/%s", kdir, CT_IMAGENET_NOTOP);
    cr_assert_eq(symlink(fx("keras1_notop_fixed.h5"), link), 0);
    if (s != CT_OK) {
        cr_assert_eq(ct_weights_resolve_imagenet(NULL, false, path, sizeof path), CT_OK, "%s",
                     ct_last_error());
        cr_assert_str_eq(path, link);
    }
    /* CUTUNE_WEIGHTS as a file wins over everything, and as a directory too. */
    setenv("CUTUNE_WEIGHTS", fx("keras1_notop_vlen.h5"), 1);
    cr_assert_eq(ct_weights_resolve_imagenet(NULL, false, path, sizeof path), CT_OK);
    cr_assert_str_eq(path, fx("keras1_notop_vlen.h5"));
    setenv("CUTUNE_WEIGHTS", kdir, 1);
    cr_assert_eq(ct_weights_resolve_imagenet(NULL, false, path, sizeof path), CT_OK);
    cr_assert_str_eq(path, link);
    setenv("CUTUNE_WEIGHTS", "/nonexistent_ct_weights", 1);
    cr_assert_eq(ct_weights_resolve_imagenet(NULL, false, path, sizeof path), CT_ENOTFOUND);
    cr_assert(strstr(ct_last_error(), "neither a file nor a directory") != NULL);

    /* Loading "imagenet" into a model with its own head: the backbone, and the report says the
     * head keeps its initialisation. */
    setenv("CUTUNE_WEIGHTS", fx("keras1_notop_fixed.h5"), 1);
    ct_model *m = make(64, "mri", 0, 1);
    ct_weights_report rep;
    cr_assert_eq(ct_weights_load_spec(m, "imagenet", NULL, &rep), CT_OK, "%s", ct_last_error());
    cr_assert_eq(rep.n_loaded, 13);
    cr_assert(strstr(rep.notes, "dense, dense_1 keep their initialisation (only the backbone "
                                "was loaded)") != NULL, "%s", rep.notes);
    check_backbone(m, true);
    ct_model_free(m);
    /* A model with the ImageNet head asks for the full file. */
    setenv("CUTUNE_WEIGHTS", kdir, 1);
    m = make(32, FULL_HEAD, 0, 1);
    s = ct_weights_load_spec(m, "imagenet", NULL, &rep);
    cr_assert_eq(s, CT_ENOTFOUND);
    cr_assert(strstr(ct_last_error(), CT_IMAGENET_FULL) != NULL &&
                  strstr(ct_last_error(), "--full") != NULL, "%s", ct_last_error());
    ct_model_free(m);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
}

/* ---- the Keras round trip ---- */

#define RT_SEED 1234
#define RT_PURPOSE (15u << 16)
#define RT_N 4

/* The parameters of tests/test_golden.c's formula: uniform +-sqrt(6 / fan_in) kernels, +-0.05
 * biases, so activations keep their size through the 13 convolutions. */
static void rt_params(ct_model *m) {
    for (int i = 0; i < ct_model_num_layers(m); i++) {
        ct_layer *l = ct_model_layer(m, i);
        if (l->kind != CT_LAYER_CONV && l->kind != CT_LAYER_DENSE) continue;
        size_t fan_in = l->kind == CT_LAYER_CONV ? (size_t)9 * l->in_c
                                                 : l->kernel.size / (size_t)l->units;
        for (size_t j = 0; j < l->kernel.size; j++) {
            double u = ct_rng_unit(ct_rng_word(RT_SEED, RT_PURPOSE, (uint32_t)i, 0, (uint32_t)j));
            l->kernel.data[j] = (float)((2.0 * u - 1.0) * sqrt(6.0 / (double)fan_in));
        }
        for (size_t j = 0; j < l->bias.size; j++) {
            double u = ct_rng_unit(ct_rng_word(RT_SEED, RT_PURPOSE, (uint32_t)i, 1, (uint32_t)j));
            l->bias.data[j] = (float)((2.0 * u - 1.0) * 0.05);
        }
    }
}

/* Inputs of vgg16_golden.py's make_input and make_aux (amplitude 1). */
static void rt_predict(ct_model *m, int hw, int aux_dim, float *probs) {
    size_t nx = (size_t)RT_N * hw * hw * 3;
    float *x = malloc(nx * sizeof *x), aux[RT_N];
    for (size_t i = 0; i < nx; i++)
        x[i] = (float)(2.0 * ct_rng_unit(ct_rng_word(RT_SEED, RT_PURPOSE, 1000, 0, (uint32_t)i)) -
                       1.0);
    for (int i = 0; i < RT_N; i++)
        aux[i] = (float)(2.0 * ct_rng_unit(ct_rng_word(RT_SEED, RT_PURPOSE, 1001, 0, (uint32_t)i)) -
                         1.0);
    memcpy(ct_model_input(m), x, nx * sizeof *x);
    if (aux_dim > 0) memcpy(ct_model_aux_input(m), aux, sizeof aux);
    cr_assert_eq(ct_model_predict(m, RT_N, probs), CT_OK, "%s", ct_last_error());
    free(x);
}

/* Keras's predictions from keras_roundtrip.py: `name count v...` lines. */
static int rt_fixture(const char *name, double *v, int cap) {
    FILE *f = fopen(tu_fixture("keras_roundtrip.txt"), "r");
    cr_assert_not_null(f, "%s: missing (run tests/reference/keras_roundtrip.py)",
                       tu_fixture("keras_roundtrip.txt"));
    char line[8192];
    int n = -1;
    while (fgets(line, sizeof line, f) != NULL) {
        if (line[0] == '#') continue;
        char tag[64];
        int off = 0, count = 0;
        if (sscanf(line, "%63s %d%n", tag, &count, &off) != 2 || strcmp(tag, name) != 0)
            continue;
        cr_assert(count <= cap);
        char *p = line + off;
        for (int i = 0; i < count; i++) v[i] = strtod(p, &p);
        n = count;
    }
    fclose(f);
    return n;
}

/* Tolerance: Keras (torch backend, float32) and cutune (float32, im2col + OpenBLAS) sum in
 * different orders; this test prints the largest difference it sees (keras_roundtrip.py runs it
 * after writing the fixture). 1e-5 is that with a wide margin; a wrong layout, layer order or
 * transposition moves probabilities by 1e-2 or more. */
#define RT_TOL 1e-5

static void roundtrip(const char *name, int hw, const char *head, int aux_dim) {
    ct_model *a = make(hw, head, aux_dim, 1), *b = make(hw, head, aux_dim, 2);
    rt_params(a);
    char fname[128];
    snprintf(fname, sizeof fname, "%s.h5", name);
    const char *out = getenv("CUTUNE_ROUNDTRIP_OUT");
    char p[4300];
    if (out != NULL) snprintf(p, sizeof p, "%s/%s", out, fname);
    else snprintf(p, sizeof p, "%s", tmp_path(fname));
    ct_weights_save_opts so = {.preprocessing = "caffe"};
    cr_assert_eq(ct_weights_save(a, p, &so), CT_OK, "%s", ct_last_error());
    cr_assert_eq(ct_weights_load(b, p, NULL, NULL), CT_OK, "%s", ct_last_error());
    assert_same_params(a, b);
    float pa[RT_N * 2], pb[RT_N * 2];
    int k = ct_model_num_outputs(a);
    rt_predict(a, hw, aux_dim, pa);
    rt_predict(b, hw, aux_dim, pb);
    cr_assert_eq(memcmp(pa, pb, sizeof(float) * RT_N * k), 0);
    if (out != NULL) {
        /* keras_roundtrip.py asked for the files; it makes the fixture next. */
        printf("%s: wrote %s\n", name, p);
    } else {
        double ref[RT_N * 2];
        int n = rt_fixture(name, ref, RT_N * 2);
        cr_assert_eq(n, RT_N * k, "%s: %d predictions in the fixture, %d here", name, n, RT_N * k);
        double worst = 0.0;
        for (int i = 0; i < n; i++) {
            double d = fabs((double)pb[i] - ref[i]);
            if (d > worst) worst = d;
            cr_expect(d <= RT_TOL, "%s: prediction %d: cutune %.9g, Keras %.9g", name, i,
                      (double)pb[i], ref[i]);
        }
        printf("%s: %d predictions, largest |cutune - Keras| %.3g (tolerance %.0e)\n", name, n,
               worst, RT_TOL);
    }
    ct_model_free(b);
    ct_model_free(a);
}

Test(roundtrip, iceberg_48_matches_keras, .init = setup, .fini = teardown, .timeout = 300) {
    roundtrip("iceberg_48", 48, "iceberg", 1);
}

Test(roundtrip, mri_64_matches_keras, .init = setup, .fini = teardown, .timeout = 300) {
    roundtrip("mri_64", 64, "mri", 0);
}
