/* A Keras user's own model in `cutune predict` and `evaluate`: the model file Keras's
 * model.save('m.h5') wrote (its architecture read from model_config), the same weights saved
 * with save_weights (legacy .h5 and Keras 3 .weights.h5, described with --head and
 * --input-size), predictions compared with Keras's own (tests/fixtures/keras_predict.txt, from
 * tests/reference/make_keras_model_fixtures.py), the refusal of a layer cutune cannot run, and
 * test images laid out the Keras ways: a flat folder, one unlabelled subfolder
 * (flow_from_directory's class_mode=None), class folders that are the model's classes. */
#define _POSIX_C_SOURCE 200809L
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util.h"

#define EXPECT TU_EXPECT_CLI
#define HEAD "flatten,dense:16:relu,dropout:0.25,dense:3:softmax"
#define N_IMAGES 4
#define N_CLASSES 3

static char dir[64];

static void setup(void) { tu_temp_dir(dir, sizeof dir, "ct_km"); }

static void teardown(void) { tu_remove_dir(dir); }

TestSuite(keras_model, .init = setup, .fini = teardown, .timeout = 600);

#define fx tu_fixture

/* Keras's predictions: name and probabilities per image, in the fixture's order. */
typedef struct preds {
    int n;
    char name[16][64];
    double p[16][N_CLASSES];
    char header[256];
} preds;

static void read_keras(preds *k) {
    memset(k, 0, sizeof *k);
    FILE *f = fopen(fx("keras_predict.txt"), "r");
    cr_assert_not_null(f);
    char line[512];
    while (fgets(line, sizeof line, f) != NULL && k->n < 16) {
        if (line[0] == '#') continue;
        cr_assert_eq(sscanf(line, "%63s %lf %lf %lf", k->name[k->n], &k->p[k->n][0],
                            &k->p[k->n][1], &k->p[k->n][2]), 4, "%s", line);
        k->n++;
    }
    fclose(f);
    cr_assert_eq(k->n, N_IMAGES);
}

/* cutune's CSV: the header line and the rows. */
static void read_csv(const char *path, preds *c) {
    memset(c, 0, sizeof *c);
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f, "%s", path);
    cr_assert_not_null(fgets(c->header, sizeof c->header, f));
    c->header[strcspn(c->header, "\n")] = '\0';
    char line[512];
    while (fgets(line, sizeof line, f) != NULL && c->n < 16) {
        char *comma = strchr(line, ',');
        cr_assert_not_null(comma, "%s", line);
        *comma = '\0';
        cr_assert_lt(strlen(line), sizeof c->name[c->n], "%s", line);
        memcpy(c->name[c->n], line, strlen(line) + 1);
        cr_assert_eq(sscanf(comma + 1, "%lf,%lf,%lf", &c->p[c->n][0], &c->p[c->n][1],
                            &c->p[c->n][2]), 3, "%s", comma + 1);
        c->n++;
    }
    fclose(f);
}

/* Every row's probabilities equal Keras's for the image of the same file name. 1e-4: both
 * sides compute in float32 with different summation orders over 13 convolutions (sums of up
 * to 4,608 products); the differences seen are below 1e-6, so 1e-4 flags a wrong layer, a
 * wrong kernel layout or wrong preprocessing (each moves them by 1e-2 or more) and nothing else.
 * `prefix` is what cutune's names carry before Keras's ("unknown/"). */
static void expect_keras(const preds *c, const char *prefix) {
    preds k;
    read_keras(&k);
    cr_assert_eq(c->n, k.n, "%d rows", c->n);
    for (int i = 0; i < k.n; i++) {
        char want[128];
        snprintf(want, sizeof want, "%s%s", prefix, k.name[i]);
        cr_expect_str_eq(c->name[i], want);
        for (int j = 0; j < N_CLASSES; j++)
            cr_expect(fabs(c->p[i][j] - k.p[i][j]) < 1e-4, "%s class %d: cutune %.9g, Keras %.9g",
                      want, j, c->p[i][j], k.p[i][j]);
    }
}

Test(keras_model, predicts_as_keras_from_the_model_file) {
    char args[8192], out[128];
    snprintf(out, sizeof out, "%s/p.csv", dir);
    snprintf(args, sizeof args, "predict --model '%s' --data '%s' --out '%s'",
             fx("keras_vgg16_32.h5"), fx("keras_predict"), out);
    EXPECT(args, 0, "is a Keras model: vgg16, 32x32 input");
    cr_expect(strstr(tu_out, "dense:3:softmax@dense_1") != NULL,
              "the Activation layer folds into the Dense before it:\n%s", tu_out);
    preds c;
    read_csv(out, &c);
    /* Keras keeps no class names: the columns say which output each is. */
    cr_expect_str_eq(c.header, "filename,class_0,class_1,class_2");
    expect_keras(&c, "");
}

Test(keras_model, weights_only_files_take_the_head_and_input_size) {
    static const char *const files[] = {"keras_vgg16_32_w.h5", "keras_vgg16_32.weights.h5"};
    char args[8192], out[128];
    snprintf(out, sizeof out, "%s/p.csv", dir);
    for (int f = 0; f < 2; f++) {
        snprintf(args, sizeof args, "predict --model '%s' --data '%s' --out '%s'", fx(files[f]),
                 fx("keras_predict"), out);
        EXPECT(args, 1, "--head SPEC --input-size N");
        snprintf(args, sizeof args, "predict --model '%s' --data '%s' --out '%s' --head '%s' "
                 "--input-size 32 --classes cat,dog,fox --preprocess caffe", fx(files[f]),
                 fx("keras_predict"), out, HEAD);
        EXPECT(args, 0, "wrote 4 predictions");
        preds c;
        read_csv(out, &c);
        cr_expect_str_eq(c.header, "filename,cat,dog,fox");
        expect_keras(&c, "");
    }
    /* Layer names other than the file's: paired by order, as Keras's load_weights does. */
    snprintf(args, sizeof args, "predict --model '%s' --data '%s' --out '%s' --input-size 32 "
             "--head 'flatten,dense:16:relu@fc1,dense:3:softmax@predictions'",
             fx("keras_vgg16_32_w.h5"), fx("keras_predict"), out);
    EXPECT(args, 0, "wrote 4 predictions");
    preds c;
    read_csv(out, &c);
    expect_keras(&c, "");
    /* --classes must name every class; --preprocess must be one cutune knows. */
    snprintf(args, sizeof args, "predict --model '%s' --data '%s' --out '%s' --classes cat,dog",
             fx("keras_vgg16_32.h5"), fx("keras_predict"), out);
    EXPECT(args, 2, "the model has 3 classes");
    snprintf(args, sizeof args, "predict --model '%s' --data '%s' --out '%s' --preprocess vgg",
             fx("keras_vgg16_32.h5"), fx("keras_predict"), out);
    EXPECT(args, 2, "unknown preprocess mode 'vgg'");
}

Test(keras_model, refuses_what_it_cannot_run_by_name) {
    char args[8192];
    snprintf(args, sizeof args, "evaluate --model '%s' --data '%s'", fx("keras_refuse_bn.h5"),
             fx("keras_predict"));
    EXPECT(args, 1, "layer 'batch_normalization' (BatchNormalization): cutune's heads have");
    /* A file that describes its model takes no head from the command line. */
    snprintf(args, sizeof args, "evaluate --model '%s' --data '%s' --head mri --input-size 64",
             fx("keras_vgg16_32.h5"), fx("keras_predict"));
    EXPECT(args, 2, "given only for a weights-only file");
}

/* Copies the fixture's images matching `glob` ("*.png", "img0.png") into folder `to`. The CPU
 * backend takes seconds per image here, so the tests read few. */
static void copy_images(const char *to, const char *glob) {
    char cmd[8400];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s' && cp '%s'/%s '%s'/", to, fx("keras_predict"), glob,
             to);
    cr_assert_eq(tu_sh(cmd), 0, "%s", tu_out);
}

Test(keras_model, predicts_on_one_unlabelled_subfolder) {
    char sub[128], args[8192], out[128];
    snprintf(sub, sizeof sub, "%s/test/unknown", dir);
    copy_images(sub, "*.png");
    snprintf(out, sizeof out, "%s/p.csv", dir);
    snprintf(args, sizeof args, "predict --model '%s' --data '%s/test' --out '%s' --classes "
             "cat,dog,fox", fx("keras_vgg16_32.h5"), dir, out);
    EXPECT(args, 0, "wrote 4 predictions");
    preds c;
    read_csv(out, &c);
    cr_expect_str_eq(c.header, "filename,cat,dog,fox");
    expect_keras(&c, "unknown/");
    /* No labels to evaluate against: said, not guessed. */
    snprintf(args, sizeof args, "evaluate --model '%s' --data '%s/test' --classes cat,dog,fox",
             fx("keras_vgg16_32.h5"), dir);
    EXPECT(args, 2, "cannot evaluate: the class folders of");
    snprintf(args, sizeof args, "evaluate --model '%s' --data '%s'", fx("keras_vgg16_32.h5"),
             fx("keras_predict"));
    EXPECT(args, 2, "has no labels: its images are not in class subfolders");
}

Test(keras_model, class_folders_of_the_model_still_evaluate) {
    static const char *const classes[] = {"cat", "dog", "fox"};
    char sub[128], args[8192], out[128];
    for (int k = 0; k < N_CLASSES; k++) {
        char one[16];
        snprintf(sub, sizeof sub, "%s/val/%s", dir, classes[k]);
        snprintf(one, sizeof one, "img%d.png", k);
        copy_images(sub, one);
    }
    snprintf(args, sizeof args, "evaluate --model '%s' --data '%s/val' --classes cat,dog,fox",
             fx("keras_vgg16_32.h5"), dir);
    EXPECT(args, 0, "accuracy");
    /* Without names in the file, class folders as many as the classes name the columns. */
    snprintf(out, sizeof out, "%s/p.csv", dir);
    snprintf(args, sizeof args, "predict --model '%s' --data '%s/val' --out '%s'",
             fx("keras_vgg16_32.h5"), dir, out);
    EXPECT(args, 0, "wrote 3 predictions");
    preds c, k;
    read_csv(out, &c);
    read_keras(&k);
    cr_expect_str_eq(c.header, "filename,cat,dog,fox");
    cr_expect_str_eq(c.name[0], "cat/img0.png");
    cr_expect_str_eq(c.name[2], "fox/img2.png");
    cr_expect(fabs(c.p[2][1] - k.p[2][1]) < 1e-4, "fox/img2.png: %.9g, Keras %.9g", c.p[2][1],
              k.p[2][1]); /* the tolerance of expect_keras */
    /* Folders that are not the model's classes: predictions, but no metrics. */
    snprintf(args, sizeof args, "evaluate --model '%s' --data '%s/val' --classes a,b,c",
             fx("keras_vgg16_32.h5"), dir);
    EXPECT(args, 2, "(cat, dog, fox) are not the 3 classes");
}

Test(keras_model, a_folder_of_images_is_read_whole) {
    char args[8192], out[128], top[128], sub[128];
    snprintf(top, sizeof top, "%s/mixed", dir);
    snprintf(sub, sizeof sub, "%s/mixed/more", dir);
    copy_images(top, "img1.png");
    copy_images(sub, "img0.png");
    snprintf(out, sizeof out, "%s/p.csv", dir);
    snprintf(args, sizeof args, "predict --model '%s' --data '%s' --out '%s'",
             fx("keras_vgg16_32.h5"), top, out);
    EXPECT(args, 0, "wrote 2 predictions");
    preds c, k;
    read_csv(out, &c);
    read_keras(&k);
    /* The folder's own images first, then its subfolders' (flow_from_directory's order). */
    cr_expect_str_eq(c.name[0], "img1.png");
    cr_expect_str_eq(c.name[1], "more/img0.png");
    cr_expect(fabs(c.p[1][2] - k.p[0][2]) < 1e-4, "more/img0.png: %.9g, Keras %.9g", c.p[1][2],
              k.p[0][2]); /* the tolerance of expect_keras */
}
