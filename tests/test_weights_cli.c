/* `cutune inspect` and `cutune export-keras` as a user runs them, and weights/fetch.sh with a
 * local file:// source (this machine has no internet): checksum failure, download failure and
 * success, each leaving either the verified file or nothing at the final name. */
#define _POSIX_C_SOURCE 200809L
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "model/model.h"
#include "io/weights.h"
#include "util.h"

static char dir[64];

static void setup(void) { tu_temp_dir(dir, sizeof dir, "ct_wc"); }

static void teardown(void) { tu_remove_dir(dir); }

TestSuite(weights_cli, .init = setup, .fini = teardown, .timeout = 300);

#define fx tu_fixture

#define EXPECT TU_EXPECT_CLI

Test(weights_cli, inspect_describes_the_official_layout) {
    char args[4400];
    snprintf(args, sizeof args, "inspect '%s'", fx("keras1_notop_fixed.h5"));
    EXPECT(args, 0, "Keras 1 HDF5 weights");
    cr_expect(strstr(tu_out, "14,714,688 parameters") != NULL, "%s", tu_out);
    cr_expect(strstr(tu_out, "block5_conv3_W_1:0") != NULL && strstr(tu_out, "(3, 3, 512, 512)"),
              "%s", tu_out);
    cr_expect(strstr(tu_out, "fixed-length strings") != NULL, "%s", tu_out);
    snprintf(args, sizeof args, "inspect '%s' --head mri --input-size 150",
             fx("keras1_notop_fixed.h5"));
    EXPECT(args, 0, "backbone: fits (13 layers, 14,714,688 parameters)");
    cr_expect(strstr(tu_out, "Layers dense, dense_1 keep their initialisation") != NULL, "%s", tu_out);
    snprintf(args, sizeof args, "inspect --input-size=224 --head '" "flatten,dense:4096:relu@fc1,"
             "dense:4096:relu@fc2,dense:1000:softmax@predictions' '%s'", fx("keras1_full.h5"));
    EXPECT(args, 0, "whole model: fits (16 layers, 138,357,544 parameters)");
    snprintf(args, sizeof args, "inspect '%s' --head mri --input-size 64", fx("bad_shape.h5"));
    EXPECT(args, 1, "backbone: does not fit");
    cr_expect(strstr(tu_out, "expected (3, 3, 256, 256) found (3, 3, 128, 256)") != NULL, "%s", tu_out);
    snprintf(args, sizeof args, "inspect '%s'", fx("keras3_nonames_mri64.weights.h5"));
    EXPECT(args, 0, "Keras 3 .weights.h5");
}

Test(weights_cli, inspect_errors) {
    char args[4400];
    snprintf(args, sizeof args, "inspect '%s'", fx("bad_not_hdf5.h5"));
    EXPECT(args, 1, "bad_not_hdf5.h5: not an HDF5 file");
    snprintf(args, sizeof args, "inspect '%s'", fx("bad_truncated.h5"));
    EXPECT(args, 1, "truncated");
    EXPECT("inspect", 2, "which file?");
    EXPECT("inspect a.h5 b.h5", 2, "unexpected argument 'b.h5'");
    snprintf(args, sizeof args, "inspect '%s' --input-size 0", fx("keras1_notop_fixed.h5"));
    EXPECT(args, 2, "--input-size");
    snprintf(args, sizeof args, "inspect '%s' --match sideways", fx("keras1_notop_fixed.h5"));
    EXPECT(args, 2, "expected name or order");
    EXPECT("inspect --help", 0, "usage: cutune inspect FILE");
    EXPECT("--help", 0, "export-keras");
}

/* The inputs on which fuzzing made libhdf5 1.10 crash or hang (tests/fuzz/hdf5_bugs): cutune
 * reads a file's structure in a child process first, so both end in a message and exit 1,
 * for inspect and for loading weights into a model, instead of killing or hanging the command. */
Test(weights_cli, files_that_crash_or_hang_libhdf5_fail_cleanly, .timeout = 120) {
    cr_assert_eq(setenv("CUTUNE_H5_PROBE_S", "3", 1), 0);
    char crash[4096], hang[4096], args[9000];
    snprintf(crash, sizeof crash, "%s/../fuzz/hdf5_bugs/h5hg_read_overflow.bin", tu_fixture(""));
    snprintf(hang, sizeof hang, "%s/../fuzz/hdf5_bugs/h5hg_protect_hang.bin", tu_fixture(""));
    snprintf(args, sizeof args, "inspect '%s'", crash);
    EXPECT(args, 1, "the HDF5 library crashed reading it");
    snprintf(args, sizeof args, "inspect '%s'", hang);
    EXPECT(args, 1, "reading it did not finish within 3 s");
    /* Loading into a model goes through the same guard. */
    ct_backend be;
    cr_assert_eq(ct_backend_cpu_init(&be, 1), CT_OK);
    ct_model_config cfg = {.input_h = 32, .input_w = 32, .input_c = 3, .max_batch = 1,
                           .head = "mri", .seed = 1};
    ct_model *m = NULL;
    cr_assert_eq(ct_model_init(&m, &cfg, &be), CT_OK);
    cr_expect_eq(ct_weights_load(m, crash, NULL, NULL), CT_EFORMAT);
    cr_expect(strstr(ct_last_error(), "crashed reading it") != NULL, "%s", ct_last_error());
    cr_expect_eq(ct_weights_load(m, hang, NULL, NULL), CT_EFORMAT);
    cr_expect(strstr(ct_last_error(), "did not finish") != NULL, "%s", ct_last_error());
    ct_model_free(m);
    ct_backend_free(&be);
}

Test(weights_cli, export_keras_prints_the_model_and_load_weights) {
    ct_backend be;
    cr_assert_eq(ct_backend_cpu_init(&be, 1), CT_OK);
    ct_model_config cfg = {.input_h = 48, .input_w = 48, .input_c = 3, .aux_dim = 1,
                           .max_batch = 1, .head = "iceberg", .seed = 1};
    ct_model *m = NULL;
    cr_assert_eq(ct_model_init(&m, &cfg, &be), CT_OK);
    char path[256];
    snprintf(path, sizeof path, "%s/ice.h5", dir);
    const char *classes[2] = {"ship", "iceberg"};
    ct_weights_save_opts so = {.class_names = classes, .n_classes = 2};
    cr_assert_eq(ct_weights_save(m, path, &so), CT_OK, "%s", ct_last_error());
    ct_model_free(m);
    ct_backend_free(&be);
    char args[512];
    snprintf(args, sizeof args, "export-keras '%s'", path);
    EXPECT(args, 0, "model.load_weights(");
    const char *want[] = {
        "image = keras.Input(shape=(48, 48, 3), name=\"input_image\")",
        "aux = keras.Input(shape=(1,), name=\"input_aux\")",
        "x = layers.Conv2D(64, (3, 3), activation=\"relu\", padding=\"same\", "
        "name=\"block1_conv1\")(image)",
        "x = layers.MaxPooling2D((2, 2), strides=(2, 2), name=\"block5_pool\")(x)",
        "x = layers.GlobalMaxPooling2D(name=\"global_max_pooling2d\")(x)",
        "a = layers.Dense(1, activation=\"linear\", name=\"dense\")(aux)",
        "x = layers.Concatenate(name=\"concatenate\")([x, a])",
        "x = layers.Dense(512, activation=\"relu\", name=\"fc2\")(x)",
        "x = layers.Dropout(0.3, name=\"dropout\")(x)",
        "x = layers.Dense(1, activation=\"sigmoid\", name=\"dense_1\")(x)",
        "return keras.Model([image, aux], x, name=\"cutune_vgg16\")",
        "# Classes: 0=ship 1=iceberg"};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        cr_expect(strstr(tu_out, want[i]) != NULL, "export-keras output lacks '%s':\n%s", want[i],
                  tu_out);
    snprintf(args, sizeof args, "export-keras '%s'", fx("keras1_notop_fixed.h5"));
    EXPECT(args, 1, "not written by cutune");
    EXPECT("export-keras", 2, "which file?");
}

/* ---- weights/fetch.sh ---- */

static const char *fetch_script(void) {
    static char p[4200];
    snprintf(p, sizeof p, "%s/../../weights/fetch.sh", tu_fixture(""));
    return p;
}

static int files_in(const char *d) {
    char cmd[512];
    snprintf(cmd, sizeof cmd, "ls -A '%s' | wc -l", d);
    FILE *p = popen(cmd, "r");
    int n = -1;
    cr_assert_eq(fscanf(p, "%d", &n), 1);
    pclose(p);
    return n;
}

Test(weights_cli, fetch_checks_md5_and_never_leaves_a_bad_file) {
    if (tu_sh("command -v curl || command -v wget") != 0) cr_skip_test("neither curl nor wget");
    char src[256], dst[256], cmd[8192];
    snprintf(src, sizeof src, "%s/src", dir);
    snprintf(dst, sizeof dst, "%s/dst", dir);
    snprintf(cmd, sizeof cmd, "mkdir -p '%s' '%s' && printf 'not the weights' > '%s/%s'", src,
             dst, src, CT_IMAGENET_NOTOP);
    cr_assert_eq(tu_sh(cmd), 0);

    /* The wrong content: MD5 mismatch, exit 1, nothing at the final name, no temporary. */
    snprintf(cmd, sizeof cmd, "CUTUNE_FETCH_URL='file://%s/' sh '%s' --dir '%s'", src,
             fetch_script(), dst);
    int rc = tu_sh(cmd);
    cr_expect_eq(rc, 1, "%s", tu_out);
    cr_expect(strstr(tu_out, "MD5 mismatch") != NULL && strstr(tu_out, CT_IMAGENET_NOTOP_MD5) != NULL,
              "%s", tu_out);
    cr_expect_eq(files_in(dst), 0, "fetch.sh left a file behind");

    /* A source that does not exist: download failure, nothing left. */
    snprintf(cmd, sizeof cmd, "CUTUNE_FETCH_URL='file://%s/none/' sh '%s' --dir '%s'", src,
             fetch_script(), dst);
    rc = tu_sh(cmd);
    cr_expect_eq(rc, 1, "%s", tu_out);
    cr_expect(strstr(tu_out, "download failed") != NULL, "%s", tu_out);
    cr_expect_eq(files_in(dst), 0);

    /* With the expected sum overridden to this file's, the same path succeeds and installs the
     * file under its official name; a second run finds it verified and does nothing. */
    snprintf(cmd, sizeof cmd, "CUTUNE_FETCH_URL='file://%s/' CUTUNE_FETCH_MD5="
             "\"$(md5sum '%s/%s' | cut -d' ' -f1)\" sh '%s' --dir '%s'", src, src,
             CT_IMAGENET_NOTOP, fetch_script(), dst);
    rc = tu_sh(cmd);
    cr_expect_eq(rc, 0, "%s", tu_out);
    char final[512];
    snprintf(final, sizeof final, "%s/%s", dst, CT_IMAGENET_NOTOP);
    struct stat st;
    cr_expect_eq(stat(final, &st), 0, "no %s:\n%s", final, tu_out);
    cr_expect_eq(files_in(dst), 1);
    rc = tu_sh(cmd);
    cr_expect_eq(rc, 0, "%s", tu_out);
    cr_expect(strstr(tu_out, "already") != NULL, "%s", tu_out);

    /* --backbone vgg19 asks for VGG19's file and checks VGG19's sum (Keras's source). */
    snprintf(cmd, sizeof cmd, "cp '%s/%s' '%s/vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5' "
             "&& CUTUNE_FETCH_URL='file://%s/' sh '%s' --backbone vgg19 --dir '%s/v19'", src,
             CT_IMAGENET_NOTOP, src, src, fetch_script(), dst);
    cr_expect_eq(tu_sh(cmd), 1, "%s", tu_out);
    cr_expect(strstr(tu_out, "MD5 mismatch for vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5: "
                             "expected 253f8cb515780f3b799900260a226db6") != NULL, "%s", tu_out);
    snprintf(cmd, sizeof cmd, "sh '%s' --backbone vgg13", fetch_script());
    cr_expect_eq(tu_sh(cmd), 2, "%s", tu_out);
    snprintf(cmd, sizeof cmd, "sh '%s' --bogus", fetch_script());
    cr_expect_eq(tu_sh(cmd), 2, "%s", tu_out);
    snprintf(cmd, sizeof cmd, "sh '%s' --help", fetch_script());
    cr_expect_eq(tu_sh(cmd), 0, "%s", tu_out);
    cr_expect(strstr(tu_out, "--full") != NULL, "%s", tu_out);
}
