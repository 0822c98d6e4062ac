/* cutune's attributes in a file are checked before anything is built from them: an input shape,
 * aux_dim, head, preprocessing, class-name list or checkpoint counter that is out of its bounds
 * or does not parse is a file error (CT_EFORMAT, `cutune predict` and `evaluate` exit 1) that
 * names the file and the attribute, found in moments instead of after gigabytes are allocated.
 * A head the parser refuses is the file's error too, and so is a model the file asks for that
 * cannot be allocated. The files are a good cutune file with one attribute rewritten. */
#define _POSIX_C_SOURCE 200809L
#include <criterion/criterion.h>
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "model/model.h"
#include "io/weights.h"
#include "util.h"

static char dir[64], good[128], ck[128], data[128];
static ct_backend be;

/* A 32x32 model whose head is small beside the file (a gap head: 1,026 parameters). */
#define HEAD "gap,dense:2:softmax"

static void setup(void) {
    snprintf(dir, sizeof dir, "/tmp/ct_wb_XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    snprintf(good, sizeof good, "%s/good.h5", dir);
    snprintf(ck, sizeof ck, "%s/ck.h5", dir);
    snprintf(data, sizeof data, "%s/data", dir);
    cr_assert_eq(mkdir(data, 0700), 0);
    cr_assert_eq(ct_backend_cpu_init(&be, 1), CT_OK);
    ct_model_config cfg = {.input_h = 32, .input_w = 32, .input_c = 3, .max_batch = 1,
                           .head = HEAD, .seed = 1};
    ct_model *m = NULL;
    cr_assert_eq(ct_model_init(&m, &cfg, &be), CT_OK, "%s", ct_last_error());
    const char *classes[2] = {"cat", "dog"};
    ct_weights_save_opts so = {.class_names = classes, .n_classes = 2};
    cr_assert_eq(ct_weights_save(m, good, &so), CT_OK, "%s", ct_last_error());
    ct_checkpoint_state st = {.lr_scale = 1.0, .best_epoch = -1, .epoch = 2, .step = 8};
    snprintf(st.monitor, sizeof st.monitor, "val_loss");
    cr_assert_eq(ct_checkpoint_save(m, ck, &so, &st), CT_OK, "%s", ct_last_error());
    ct_model_free(m);
}

static void teardown(void) {
    ct_backend_free(&be);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
}

TestSuite(weights_bounds, .init = setup, .fini = teardown, .timeout = 300);

/* ---- rewriting one attribute ---- */

static hid_t open_rw(const char *path, const char *group, hid_t *file) {
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    *file = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    cr_assert(*file >= 0, "%s: cannot open for writing", path);
    hid_t g = H5Gopen2(*file, group, H5P_DEFAULT);
    cr_assert(g >= 0, "%s: no group %s", path, group);
    return g;
}

static void close_rw(hid_t g, hid_t file) {
    H5Gclose(g);
    H5Fclose(file);
}

static void set_i64(const char *path, const char *group, const char *name, const int64_t *v,
                    int n) {
    hid_t f, g = open_rw(path, group, &f);
    if (H5Aexists(g, name) > 0) H5Adelete(g, name);
    hsize_t dims[1] = {(hsize_t)n};
    hid_t sp = n == 1 ? H5Screate(H5S_SCALAR) : H5Screate_simple(1, dims, NULL);
    hid_t a = H5Acreate2(g, name, H5T_STD_I64LE, sp, H5P_DEFAULT, H5P_DEFAULT);
    cr_assert(a >= 0 && H5Awrite(a, H5T_NATIVE_INT64, v) >= 0, "%s: cannot write %s", path,
              name);
    H5Aclose(a);
    H5Sclose(sp);
    close_rw(g, f);
}

static void set_f64(const char *path, const char *group, const char *name, double v) {
    hid_t f, g = open_rw(path, group, &f);
    if (H5Aexists(g, name) > 0) H5Adelete(g, name);
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(g, name, H5T_IEEE_F64LE, sp, H5P_DEFAULT, H5P_DEFAULT);
    cr_assert(a >= 0 && H5Awrite(a, H5T_NATIVE_DOUBLE, &v) >= 0);
    H5Aclose(a);
    H5Sclose(sp);
    close_rw(g, f);
}

/* `n` strings as h5py writes a list (variable-length); n < 0: one scalar string. */
static void set_strs(const char *path, const char *name, const char *const *v, int n) {
    hid_t f, g = open_rw(path, "/", &f);
    if (H5Aexists(g, name) > 0) H5Adelete(g, name);
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, H5T_VARIABLE);
    hsize_t dims[1] = {(hsize_t)(n < 0 ? 1 : n)};
    hid_t sp = n < 0 ? H5Screate(H5S_SCALAR) : H5Screate_simple(1, dims, NULL);
    hid_t a = H5Acreate2(g, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
    cr_assert(a >= 0 && H5Awrite(a, t, v) >= 0, "%s: cannot write %s", path, name);
    H5Aclose(a);
    H5Sclose(sp);
    H5Tclose(t);
    close_rw(g, f);
}

static void set_str(const char *path, const char *name, const char *v) {
    set_strs(path, name, &v, -1);
}

static void set_shape(int64_t h, int64_t w, int64_t c) {
    const int64_t s[3] = {h, w, c};
    set_i64(good, "/", "cutune_input_shape", s, 3);
}

/* ---- reading the configuration ---- */

/* ct_weights_read_config on the good file as it now is: expects `code` and, for a failure, a
 * message naming the file and holding each of the texts. */
static void expect_config(ct_status code, const char *t1, const char *t2) {
    ct_model_config c = {0};
    ct_saved_config x;
    ct_status s = ct_weights_read_config(good, &c, &x);
    cr_expect_eq(s, code, "status %d, expected %d: %s", s, code, ct_last_error());
    if (s == CT_OK) ct_saved_config_free(&x);
    if (code == CT_OK) return;
    const char *m = ct_last_error();
    cr_expect(strstr(m, good) != NULL, "the message does not name the file: %s", m);
    cr_expect(t1 == NULL || strstr(m, t1) != NULL, "the message lacks '%s': %s", t1, m);
    cr_expect(t2 == NULL || strstr(m, t2) != NULL, "the message lacks '%s': %s", t2, m);
}

Test(weights_bounds, input_shape_and_aux_dim_are_bounded) {
    char bound[16];
    snprintf(bound, sizeof bound, "%d", CT_WEIGHTS_MAX_INPUT);
    set_shape(4096, 4096, 3);
    expect_config(CT_EFORMAT, "cutune_input_shape (4096, 4096, 3)", bound);
    set_shape(CT_WEIGHTS_MAX_INPUT + 1, 32, 3);
    expect_config(CT_EFORMAT, "cutune_input_shape", bound);
    set_shape(32, CT_MIN_INPUT - 1, 3);
    expect_config(CT_EFORMAT, "cutune_input_shape", "width");
    set_shape(32, 32, 4);
    expect_config(CT_EFORMAT, "cutune_input_shape", "3 channels");
    set_shape(CT_WEIGHTS_MAX_INPUT, CT_WEIGHTS_MAX_INPUT, 3); /* the bound itself reads */
    expect_config(CT_OK, NULL, NULL);
    set_shape(32, 32, 3);
    const int64_t big = 5000, negative = -1;
    set_i64(good, "/", "cutune_aux_dim", &big, 1);
    expect_config(CT_EFORMAT, "cutune_aux_dim 5000", NULL);
    set_i64(good, "/", "cutune_aux_dim", &negative, 1);
    expect_config(CT_EFORMAT, "cutune_aux_dim -1", NULL);
}

Test(weights_bounds, the_head_is_measured_before_it_is_built) {
    set_str(good, "cutune_head", "dense:abc");
    expect_config(CT_EFORMAT, "cutune_head 'dense:abc'", "'abc' is not a unit count");
    set_str(good, "cutune_head", "gap,dense:2000000:relu,dense:2:softmax");
    expect_config(CT_EFORMAT, "cutune_head 'gap,dense:2000000", "'2000000'");
    /* Each layer within the parser's bound, their product not. */
    set_str(good, "cutune_head", "gap,dense:1048576:relu,dense:1048576:relu,dense:2:softmax");
    expect_config(CT_EFORMAT, "cutune_head", "parameters");
    /* 33 million parameters (67 MB even as float16) cannot be in a 59 MB file. */
    set_str(good, "cutune_head", "flatten,dense:65536:relu,dense:2:softmax");
    expect_config(CT_EFORMAT, "cutune_head", "more than the whole file");
    /* Well sized but not a head: the parser's refusal, when the model is built, names the
     * file and the attribute too. */
    set_str(good, "cutune_head", "gap,dense:2:relu");
    expect_config(CT_OK, NULL, NULL);
    ct_model *m = NULL;
    cr_expect_eq(ct_model_load(&m, good, "cpu", 1), CT_EFORMAT, "%s", ct_last_error());
    cr_expect(strstr(ct_last_error(), good) != NULL &&
                  strstr(ct_last_error(), "cutune_head 'gap,dense:2:relu'") != NULL,
              "%s", ct_last_error());
    ct_model_free(m);
    set_str(good, "cutune_head", HEAD);
    expect_config(CT_OK, NULL, NULL);
}

Test(weights_bounds, preprocessing_backbone_and_class_names_are_checked) {
    set_str(good, "cutune_preprocessing", "bogus");
    expect_config(CT_EFORMAT, "cutune_preprocessing 'bogus'", NULL);
    set_str(good, "cutune_preprocessing", "caffe");
    set_str(good, "cutune_backbone", "vgg99");
    expect_config(CT_EFORMAT, "cutune_backbone 'vgg99'", NULL);
    set_str(good, "cutune_backbone", "vgg16");
    const char *three[3] = {"a", "b", "c"};
    set_strs(good, "cutune_class_names", three, 3);
    expect_config(CT_EFORMAT, "cutune_class_names", "at most 2");
    char longname[CT_WEIGHTS_MAX_CLASS_NAME + 2];
    memset(longname, 'x', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    const char *two[2] = {"a", longname};
    set_strs(good, "cutune_class_names", two, 2);
    expect_config(CT_EFORMAT, "cutune_class_names", "bytes long");
    const char *empty[2] = {"a", ""};
    set_strs(good, "cutune_class_names", empty, 2);
    expect_config(CT_EFORMAT, "cutune_class_names", "empty");
    const char *fine[2] = {"a", "b"};
    set_strs(good, "cutune_class_names", fine, 2);
    expect_config(CT_OK, NULL, NULL);
    /* What reading refuses, saving refuses too. */
    ct_model_config cfg = {.input_h = 32, .input_w = 32, .input_c = 3, .max_batch = 1,
                           .head = HEAD, .seed = 1};
    ct_model *m = NULL;
    cr_assert_eq(ct_model_init(&m, &cfg, &be), CT_OK, "%s", ct_last_error());
    ct_weights_save_opts so = {.class_names = two, .n_classes = 2};
    char out[160];
    snprintf(out, sizeof out, "%s/long.h5", dir);
    cr_expect_eq(ct_weights_save(m, out, &so), CT_EINVAL);
    cr_expect(strstr(ct_last_error(), "class name 1") != NULL, "%s", ct_last_error());
    ct_model_free(m);
}

Test(weights_bounds, checkpoint_counters_are_checked) {
    ct_model_config cfg = {.input_h = 32, .input_w = 32, .input_c = 3, .max_batch = 1,
                           .head = HEAD, .seed = 1};
    ct_model *m = NULL;
    cr_assert_eq(ct_model_init(&m, &cfg, &be), CT_OK, "%s", ct_last_error());
    ct_checkpoint_state st;
    cr_assert_eq(ct_checkpoint_load(m, ck, &st), CT_OK, "%s", ct_last_error());
    ct_checkpoint_state_free(&st);
    const struct {
        const char *name;
        int64_t v;
    } bad[] = {{"epoch", -5}, {"epoch", (int64_t)1 << 40}, {"batch_in_epoch", -1},
               {"sample_in_epoch", (int64_t)1 << 33}, {"best_epoch", -2}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        set_i64(ck, "cutune_checkpoint", bad[i].name, &bad[i].v, 1);
        cr_expect_eq(ct_checkpoint_load(m, ck, &st), CT_EFORMAT, "%s = %lld: %s", bad[i].name,
                     (long long)bad[i].v, ct_last_error());
        char want[96];
        snprintf(want, sizeof want, "cutune_checkpoint/%s is %lld", bad[i].name,
                 (long long)bad[i].v);
        cr_expect(strstr(ct_last_error(), ck) != NULL && strstr(ct_last_error(), want) != NULL,
                  "%s", ct_last_error());
        ct_checkpoint_state_free(&st);
        const int64_t fine = 0;
        set_i64(ck, "cutune_checkpoint", bad[i].name, &fine, 1);
    }
    set_f64(ck, "cutune_checkpoint", "lr_scale", NAN);
    cr_expect_eq(ct_checkpoint_load(m, ck, &st), CT_EFORMAT, "%s", ct_last_error());
    cr_expect(strstr(ct_last_error(), "lr_scale") != NULL, "%s", ct_last_error());
    ct_checkpoint_state_free(&st);
    ct_model_free(m);
}

/* ---- the commands ---- */

#define EXPECT TU_EXPECT_CLI

Test(weights_bounds, predict_evaluate_and_inspect_name_the_file_and_the_attribute) {
    char args[1024], want[512];
    set_shape(4096, 4096, 3);
    snprintf(args, sizeof args, "predict --model '%s' --data '%s' --out '%s/p.csv'", good, data,
             dir);
    snprintf(want, sizeof want, "%s: cutune_input_shape (4096, 4096, 3)", good);
    EXPECT(args, 1, want);
    snprintf(args, sizeof args, "inspect '%s'", good);
    EXPECT(args, 0, want);
    set_shape(32, 32, 3);
    static const char *const heads[] = {"dense:abc", "gap,dense:2:relu"};
    for (int h = 0; h < 2; h++) {
        set_str(good, "cutune_head", heads[h]);
        snprintf(want, sizeof want, "%s: cutune_head '%s': ", good, heads[h]);
        snprintf(args, sizeof args, "predict --model '%s' --data '%s' --out '%s/p.csv'", good,
                 data, dir);
        EXPECT(args, 1, want);
        snprintf(args, sizeof args, "evaluate --model '%s' --data '%s'", good, data);
        EXPECT(args, 1, want);
    }
    set_str(good, "cutune_head", HEAD);
}

/* Whether this build runs under AddressSanitizer (the CLI is built with the same flags). */
#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif

Test(weights_bounds, a_model_that_cannot_be_allocated_names_its_file) {
#ifdef UNDER_ASAN
    /* There an allocation this large is the sanitizer's report, not a failed malloc, and the
     * address-space limit below leaves no room for its shadow memory. */
    cr_skip_test("a failed allocation cannot be staged under AddressSanitizer");
#endif
    /* Within bounds, but 65,536 images of 1024x1024 at a time is terabytes of activations; an
     * address-space limit makes sure the allocation fails however the machine overcommits. */
    set_shape(CT_WEIGHTS_MAX_INPUT, CT_WEIGHTS_MAX_INPUT, 3);
    struct rlimit old, l;
    cr_assert_eq(getrlimit(RLIMIT_AS, &old), 0);
    l = old;
    l.rlim_cur = (rlim_t)16 << 30;
    cr_assert_eq(setrlimit(RLIMIT_AS, &l), 0);
    char args[1024];
    snprintf(args, sizeof args, "predict --model '%s' --data '%s' --out '%s/p.csv' "
             "--batch-size 65536", good, data, dir);
    int rc = tu_cli(args);
    cr_assert_eq(setrlimit(RLIMIT_AS, &old), 0);
    cr_expect_eq(rc, 1, "exit %d:\n%s", rc, tu_out);
    char want[256];
    snprintf(want, sizeof want, "%s: the vgg16 model it describes (1024x1024 input", good);
    cr_expect(strstr(tu_out, want) != NULL && strstr(tu_out, "allocate") != NULL,
              "the message should name the file:\n%s", tu_out);
}

Test(weights_bounds, train_input_size_has_the_same_bound) {
    char args[512], want[128];
    snprintf(args, sizeof args, "train --data '%s' --out '%s/run' --input-size %d", data, dir,
             CT_WEIGHTS_MAX_INPUT + 1);
    snprintf(want, sizeof want, "--input-size: expected a whole number from %d to %d",
             CT_MIN_INPUT, CT_WEIGHTS_MAX_INPUT);
    EXPECT(args, 2, want);
}
