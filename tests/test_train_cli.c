/* `cutune train / predict / evaluate / demo` end to end on tiny generated data: the predictions
 * CSV (folders and Kaggle's iceberg submission) and test-time augmentation, evaluate's metrics
 * against values computed here from the predictions, EarlyStopping, ReduceLROnPlateau and
 * restore_best_weights in real runs, class weights in the loss, the iceberg two-input model,
 * and the demo. Exact resume is in test_train_resume.c, every error in test_train_errors.c. */
#include "train_cli_util.h"

#include <fcntl.h>
#include <png.h>

TestSuite(train_cli, .init = tc_setup, .fini = tc_teardown, .timeout = 300);

/* A 2-epoch run of the frozen backbone + a dropout head on the slices, cached. */
#define FOLDER_RUN                                                                             \
    "train --data %s/d/train --val %s/d/val " TC_SMALL " --head " TC_DROP_HEAD                 \
    " --strategy head --optimizer adam --lr 0.01 --epochs 2 --verbose 0 --out %s/m"

/* The probabilities of a predictions CSV: rows x k, row order checked against `ref`. */
static void expect_same_rows(const tc_csv *a, const tc_csv *ref) {
    cr_assert_eq(a->rows, ref->rows);
    for (int i = 0; i < a->rows; i++) cr_assert_str_eq(a->first[i], ref->first[i]);
}

static double max_abs_diff(const tc_csv *a, const tc_csv *b) {
    double d = 0.0;
    for (int i = 0; i < a->rows; i++)
        for (int j = 1; j < a->cols; j++) d = fmax(d, fabs(a->v[i][j] - b->v[i][j]));
    return d;
}

/* Copies the generated slices of D/d/train into D/<dst>/train mirrored left-right or
 * upside-down, with libpng's own reader and writer: the independent check of --tta. */
static void mirror_slices(const char *dst, bool horizontal) {
    static const char *const classes[2] = {"dementia", "normal"};
    for (int k = 0; k < 2; k++) {
        char dir[512];
        snprintf(dir, sizeof dir, "%s/%s", D, dst);
        mkdir(dir, 0777);
        snprintf(dir, sizeof dir, "%s/%s/train", D, dst);
        mkdir(dir, 0777);
        snprintf(dir, sizeof dir, "%s/%s/train/%s", D, dst, classes[k]);
        cr_assert(mkdir(dir, 0777) == 0 || errno == EEXIST, "%s", dir);
        for (int i = 0; i < 6; i++) {
            char in[512], out[600];
            snprintf(in, sizeof in, "%s/d/train/%s/slice_%04d.png", D, classes[k], i);
            snprintf(out, sizeof out, "%s/slice_%04d.png", dir, i);
            png_image img;
            memset(&img, 0, sizeof img);
            img.version = PNG_IMAGE_VERSION;
            cr_assert(png_image_begin_read_from_file(&img, in), "%s: %s", in, img.message);
            img.format = PNG_FORMAT_GRAY;
            const int w = (int)img.width, h = (int)img.height;
            unsigned char *px = malloc((size_t)w * h), *m = malloc((size_t)w * h);
            cr_assert(png_image_finish_read(&img, NULL, px, 0, NULL), "%s: %s", in, img.message);
            for (int y = 0; y < h; y++)
                for (int x = 0; x < w; x++)
                    m[y * w + x] = horizontal ? px[y * w + (w - 1 - x)] : px[(h - 1 - y) * w + x];
            cr_assert(png_image_write_to_file(&img, out, 0, m, 0, NULL), "%s: %s", out,
                      img.message);
            png_image_free(&img);
            free(px);
            free(m);
        }
    }
}

Test(train_cli, predictions_csv_and_tta) {
    TC_MUST(NULL, FOLDER_RUN, D, D, D);
    TC_EXPECT(NULL, 0, "wrote 12 predictions to",
              "predict --model %s/m/final.h5 --data %s/d/train --out %s/p.csv --device cpu", D, D,
              D);
    /* --precision as train takes it: the CPU computes in fp32 only. */
    TC_EXPECT(NULL, 2, "--precision tf32 needs the cuda backend",
              "evaluate --model %s/m/final.h5 --data %s/d/train --device cpu --precision tf32", D,
              D);
    TC_EXPECT(NULL, 0, "accuracy",
              "evaluate --model %s/m/final.h5 --data %s/d/train --device cpu --precision fp32", D,
              D);
    tc_csv *p = tc_csv_read(tc_path("p.csv"));
    /* Keras's class order (sorted folder names) in the header, then one row per image. */
    cr_assert_eq(p->cols, 3);
    cr_expect_str_eq(p->names[0], "filename");
    cr_expect_str_eq(p->names[1], "dementia");
    cr_expect_str_eq(p->names[2], "normal");
    cr_assert_eq(p->rows, 12);
    for (int i = 0; i < 12; i++) {
        char want[64];
        snprintf(want, sizeof want, "%s/slice_%04d.png", i < 6 ? "dementia" : "normal", i % 6);
        cr_expect_str_eq(p->first[i], want, "row %d", i);
        double sum = 0.0;
        for (int j = 1; j < 3; j++) {
            cr_expect(p->v[i][j] >= 0.0 && p->v[i][j] <= 1.0, "row %d: %g", i, p->v[i][j]);
            sum += p->v[i][j];
        }
        /* Softmax in float32, written with 9 significant digits. */
        cr_expect(fabs(sum - 1.0) < 1e-6, "row %d sums to %.9f", i, sum);
    }

    /* The predictions file's folder must exist; the message names the file, not a temporary. */
    TC_EXPECT(NULL, 1, "nodir/p.csv: cannot create: No such file or directory",
              "predict --model %s/m/final.h5 --data %s/d/train --out %s/nodir/p.csv --device cpu",
              D, D, D);

    /* The batch size changes the rows' order in nothing, and the values only in the last bit
     * (the matrix products are blocked differently). */
    TC_MUST(NULL, "predict --model %s/m/final.h5 --data %s/d/train --out %s/p5.csv --device cpu "
            "--batch-size 5", D, D, D);
    tc_csv *p5 = tc_csv_read(tc_path("p5.csv"));
    expect_same_rows(p5, p);
    cr_expect_lt(max_abs_diff(p5, p), 1e-6, "batch 5 vs 32");

    /* TTA averages the plain, flipped left-right and flipped upside-down predictions: with
     * p0, p_h = (p0 + ph) / 2 and p_v = (p0 + pv) / 2, both flips give
     * (p0 + ph + pv) / 3 = (2 (p_h + p_v) - p0) / 3. */
    const char *tta[3] = {"hflip", "vflip", "hflip,vflip"};
    tc_csv *t[3];
    for (int k = 0; k < 3; k++) {
        TC_MUST(NULL, "predict --model %s/m/final.h5 --data %s/d/train --out %s/t%d.csv "
                "--device cpu --tta %s", D, D, D, k, tta[k]);
        t[k] = tc_csv_read(tc_path("t%d.csv", k));
        expect_same_rows(t[k], p);
        cr_expect_gt(max_abs_diff(t[k], p), 1e-5, "--tta %s changed nothing", tta[k]);
    }
    for (int i = 0; i < 12; i++)
        for (int j = 1; j < 3; j++) {
            double want = (2.0 * (t[0]->v[i][j] + t[1]->v[i][j]) - p->v[i][j]) / 3.0;
            cr_expect(fabs(t[2]->v[i][j] - want) < 1e-6, "row %d: tta %.9f, expected %.9f", i,
                      t[2]->v[i][j], want);
        }

    /* Each flip against the plain predictions of images mirrored on disk. The two mirrors must
     * predict differently, or a flip in the wrong direction would pass unnoticed. */
    mirror_slices("mh", true);
    mirror_slices("mv", false);
    TC_MUST(NULL, "predict --model %s/m/final.h5 --data %s/mh/train --out %s/mh.csv --device cpu",
            D, D, D);
    TC_MUST(NULL, "predict --model %s/m/final.h5 --data %s/mv/train --out %s/mv.csv --device cpu",
            D, D, D);
    tc_csv *mh = tc_csv_read(tc_path("mh.csv")), *mv = tc_csv_read(tc_path("mv.csv"));
    expect_same_rows(mh, p);
    expect_same_rows(mv, p);
    cr_assert_gt(max_abs_diff(mh, mv), 1e-4, "the mirrored slices predict alike");
    for (int i = 0; i < 12; i++)
        for (int j = 1; j < 3; j++) {
            double want_h = (p->v[i][j] + mh->v[i][j]) / 2.0;
            double want_v = (p->v[i][j] + mv->v[i][j]) / 2.0;
            cr_expect(fabs(t[0]->v[i][j] - want_h) < 1e-6, "row %d: --tta hflip %.9f, mirrored "
                      "on disk %.9f", i, t[0]->v[i][j], want_h);
            cr_expect(fabs(t[1]->v[i][j] - want_v) < 1e-6, "row %d: --tta vflip %.9f, mirrored "
                      "on disk %.9f", i, t[1]->v[i][j], want_v);
        }

    /* Standardising on the device (the op the CUDA backend runs as a kernel) or in the loader
     * threads gives the same file, byte for byte, flips included. */
    TC_MUST(NULL, "predict --model %s/m/final.h5 --data %s/d/train --out %s/td.csv --device cpu "
            "--tta hflip,vflip --augment-on device --batch-size 5", D, D, D);
    TC_MUST(NULL, "predict --model %s/m/final.h5 --data %s/d/train --out %s/tl.csv --device cpu "
            "--tta hflip,vflip --augment-on loader --batch-size 5", D, D, D);
    char *td = tc_read(tc_path("td.csv")), *tl = tc_read(tc_path("tl.csv"));
    cr_expect_str_eq(td, tl, "--augment-on device and loader differ");
    free(td);
    free(tl);
    TC_EXPECT(NULL, 2, "--augment-on 'gpu': expected auto, device or loader",
              "evaluate --model %s/m/final.h5 --data %s/d/train --device cpu --augment-on gpu", D,
              D);

    /* A corrupt image in the second batch: without --skip-bad the run stops naming the file
     * (the batches in flight are given back) and an earlier predictions file is kept as it was;
     * with --skip-bad its row is left out and the rest are the same as before. */
    FILE *f = fopen(tc_path("mh/train/normal/slice_0001.png"), "wb");
    cr_assert_not_null(f);
    fputs("not a png", f);
    fclose(f);
    char *before = tc_read(tc_path("mh.csv"));
    TC_EXPECT(NULL, 1, "normal/slice_0001.png",
              "predict --model %s/m/final.h5 --data %s/mh/train --out %s/mh.csv --device cpu "
              "--batch-size 4 --tta hflip --augment-on device", D, D, D);
    char *after = tc_read(tc_path("mh.csv"));
    cr_expect_str_eq(after, before, "a failed predict changed the earlier file");
    free(before);
    free(after);
    TC_EXPECT(NULL, 0, "skipped 1 unreadable image",
              "predict --model %s/m/final.h5 --data %s/mh/train --out %s/mh11.csv --device cpu "
              "--batch-size 4 --skip-bad", D, D, D);
    tc_csv *m11 = tc_csv_read(tc_path("mh11.csv"));
    cr_assert_eq(m11->rows, 11);
    for (int i = 0, r = 0; i < 12; i++) {
        if (strcmp(mh->first[i], "normal/slice_0001.png") == 0) continue;
        cr_expect_str_eq(m11->first[r], mh->first[i]);
        for (int j = 1; j < 3; j++)
            cr_expect(fabs(m11->v[r][j] - mh->v[i][j]) < 1e-6, "row %s", mh->first[i]);
        r++;
    }
    free(m11);

    for (int k = 0; k < 3; k++) free(t[k]);
    free(mh);
    free(mv);
    free(p5);
    free(p);
}

/* "samples N, accuracy A, loss L[, ROC AUC U]" from evaluate's output. */
static void parse_metrics(long *n, double *acc, double *loss, double *auc) {
    const char *s = strstr(tc_out, "samples ");
    cr_assert_not_null(s, "no metrics line:\n%s", tc_out);
    *auc = NAN;
    int got = sscanf(s, "samples %ld, accuracy %lf, loss %lf, ROC AUC %lf", n, acc, loss, auc);
    cr_assert_geq(got, 3, "cannot parse the metrics line:\n%s", s);
}

/* The confusion matrix row of `cls`: its counts per predicted class. */
static void parse_confusion_row(const char *cls, int k, long *row) {
    const char *s = strstr(tc_out, "confusion matrix");
    cr_assert_not_null(s, "%s", tc_out);
    char key[80];
    snprintf(key, sizeof key, "\n%s ", cls);
    s = strstr(s, key);
    cr_assert_not_null(s, "no confusion row for %s:\n%s", cls, tc_out);
    s += strlen(key);
    for (int j = 0; j < k; j++) {
        char *end = NULL;
        row[j] = strtol(s, &end, 10);
        cr_assert(end != s, "confusion row %s:\n%s", cls, tc_out);
        s = end;
    }
}

/* Keras's log loss: probabilities clipped to [1e-7, 1 - 1e-7]. */
static double clipped_log(double p) { return log(fmin(fmax(p, 1e-7), 1.0 - 1e-7)); }

Test(train_cli, evaluate_matches_predictions_softmax) {
    TC_MUST(NULL, FOLDER_RUN, D, D, D);
    TC_MUST(NULL, "predict --model %s/m/final.h5 --data %s/d/train --out %s/p.csv --device cpu",
            D, D, D);
    tc_csv *p = tc_csv_read(tc_path("p.csv"));
    cr_assert_eq(p->rows, 12);
    double correct = 0.0, loss = 0.0;
    long conf[2][2] = {{0}};
    for (int i = 0; i < p->rows; i++) {
        int y = strncmp(p->first[i], "dementia/", 9) == 0 ? 0 : 1; /* the folder is the class */
        cr_assert(y == 0 || strncmp(p->first[i], "normal/", 7) == 0, "%s", p->first[i]);
        int pred = p->v[i][2] > p->v[i][1] ? 1 : 0;
        correct += pred == y;
        conf[y][pred]++;
        loss -= clipped_log(p->v[i][1 + y]);
    }
    correct /= p->rows;
    loss /= p->rows;
    TC_MUST(NULL, "evaluate --model %s/m/final.h5 --data %s/d/train --device cpu", D, D);
    long n;
    double acc, l, auc;
    parse_metrics(&n, &acc, &l, &auc);
    cr_expect_eq(n, 12);
    /* evaluate prints 4 decimals. */
    cr_expect(fabs(acc - correct) <= 5.1e-5, "accuracy %.4f, computed %.6f", acc, correct);
    cr_expect(fabs(l - loss) <= 5.1e-5, "loss %.4f, computed %.6f", l, loss);
    /* Two classes: the ROC AUC of the second class's probability, counted pair by pair. */
    double pairs = 0.0, wins = 0.0;
    for (int i = 0; i < p->rows; i++)
        for (int j = 0; j < p->rows; j++) {
            bool pi = strncmp(p->first[i], "normal/", 7) == 0;
            bool pj = strncmp(p->first[j], "normal/", 7) == 0;
            if (!pi || pj) continue;
            pairs += 1.0;
            wins += p->v[i][2] > p->v[j][2] ? 1.0 : p->v[i][2] == p->v[j][2] ? 0.5 : 0.0;
        }
    cr_expect(fabs(auc - wins / pairs) <= 5.1e-5, "ROC AUC %.4f, computed %.6f", auc,
              wins / pairs);
    long row[2];
    const char *names[2] = {"dementia", "normal"};
    for (int c = 0; c < 2; c++) {
        parse_confusion_row(names[c], 2, row);
        cr_expect(row[0] == conf[c][0] && row[1] == conf[c][1],
                  "confusion row %s: %ld %ld, computed %ld %ld", names[c], row[0], row[1],
                  conf[c][0], conf[c][1]);
    }
    free(p);
}

/* The ids and is_iceberg labels of an iceberg JSON file, in file order. */
static int iceberg_records(const char *path, char ids[][32], int *labels, int max) {
    char *t = tc_read(path);
    cr_assert_not_null(t, "%s", path);
    int n = 0;
    for (const char *s = strstr(t, "\"id\": \""); s != NULL; s = strstr(s + 1, "\"id\": \"")) {
        cr_assert_lt(n, max);
        const char *q = s + 7, *e = strchr(q, '"');
        snprintf(ids[n], 32, "%.*s", (int)(e - q), q);
        const char *next = strstr(q, "\"id\": \"");
        const char *lab = strstr(q, "\"is_iceberg\": ");
        labels[n] = lab != NULL && (next == NULL || lab < next) ? atoi(lab + 14) : -1;
        n++;
    }
    free(t);
    return n;
}

/* Test images laid out the Keras ways: a folder holding the images themselves, and one
 * subfolder of unlabelled images (flow_from_directory's class_mode=None). Each row keeps its
 * file name, the columns are the model's classes, and the probabilities are those of the same
 * images read from the class folders; evaluate refuses data without the model's labels. */
Test(train_cli, predicts_on_unlabelled_folders) {
    TC_MUST(NULL, FOLDER_RUN, D, D, D);
    TC_MUST(NULL, "predict --model %s/m/final.h5 --data %s/d/train --out %s/p.csv --device cpu",
            D, D, D);
    tc_csv *ref = tc_csv_read(tc_path("p.csv"));
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s/flat' '%s/one/unknown' && cp '%s'/d/train/normal/*.png "
             "'%s/flat/' && cp '%s'/d/train/normal/*.png '%s/one/unknown/'", D, D, D, D, D, D);
    cr_assert_eq(system(cmd), 0, "%s", cmd);
    static const char *const where[2] = {"flat", "one"}, *const prefix[2] = {"", "unknown/"};
    for (int w = 0; w < 2; w++) {
        TC_EXPECT(NULL, 0, "wrote 6 predictions", "predict --model %s/m/final.h5 --data %s/%s "
                  "--out %s/u.csv --device cpu", D, D, where[w], D);
        tc_csv *u = tc_csv_read(tc_path("u.csv"));
        cr_assert_eq(u->rows, 6);
        cr_expect_str_eq(u->names[1], "dementia");
        cr_expect_str_eq(u->names[2], "normal");
        for (int i = 0; i < u->rows; i++) {
            char want[128], labelled[128];
            snprintf(want, sizeof want, "%sslice_%04d.png", prefix[w], i);
            snprintf(labelled, sizeof labelled, "normal/slice_%04d.png", i);
            cr_expect_str_eq(u->first[i], want);
            int r = 0;
            while (r < ref->rows && strcmp(ref->first[r], labelled) != 0) r++;
            cr_assert_lt(r, ref->rows, "%s is not among the labelled rows", labelled);
            /* The same model on the same pixels: the same batch composition is not promised,
             * so the tolerance allows float32 reassociation across batch sizes (1e-5). */
            for (int j = 1; j < u->cols; j++)
                cr_expect(fabs(u->v[i][j] - ref->v[r][j]) < 1e-5, "%s: %g, labelled %g", want,
                          u->v[i][j], ref->v[r][j]);
        }
        free(u);
        TC_EXPECT(NULL, 2, "cannot evaluate", "evaluate --model %s/m/final.h5 --data %s/%s "
                  "--device cpu", D, D, where[w]);
    }
    free(ref);
}

Test(train_cli, iceberg_two_inputs) {
    /* The seed notebook's model: image + incidence angle, 25% held out. */
    TC_MUST(NULL, "train --data %s/d/iceberg_train.json --head iceberg --validation-split 0.25 "
            "--batch-size 4 --weights none --device cpu --threads 1 --strategy head --epochs 2 "
            "--optimizer adam --lr 0.001 --verbose 2 --out %s/ice", D, D);
    cr_expect(strstr(tc_out, "Found 9 images belonging to 2 classes.") != NULL, "%s", tc_out);
    cr_expect(strstr(tc_out, "Found 3 images belonging to 2 classes.") != NULL, "%s", tc_out);
    tc_csv *log = tc_csv_read(tc_path("ice/log.csv"));
    cr_assert_eq(log->rows, 2);
    int va = tc_col(log, "val_acc"), vl = tc_col(log, "val_loss");
    for (int e = 0; e < 2; e++) {
        cr_expect(isfinite(log->v[e][vl]) && log->v[e][vl] > 0.0, "val_loss %g", log->v[e][vl]);
        /* 3 validation records: accuracy is a multiple of 1/3. */
        double k = log->v[e][va] * 3.0;
        cr_expect(fabs(k - round(k)) < 1e-9, "val_acc %g", log->v[e][va]);
    }
    free(log);

    /* Kaggle's submission for the unlabelled test file: id,is_iceberg, one row per record. */
    char ids[64][32];
    int labels[64];
    int n_test = iceberg_records(tc_path("d/iceberg_test.json"), ids, labels, 64);
    cr_assert_eq(n_test, 4);
    TC_EXPECT(NULL, 0, "wrote 4 predictions", "predict --model %s/ice/best.h5 --data "
              "%s/d/iceberg_test.json --out %s/sub.csv --device cpu", D, D, D);
    tc_csv *sub = tc_csv_read(tc_path("sub.csv"));
    cr_assert_eq(sub->cols, 2);
    cr_expect_str_eq(sub->names[0], "id");
    cr_expect_str_eq(sub->names[1], "is_iceberg");
    cr_assert_eq(sub->rows, n_test);
    for (int i = 0; i < n_test; i++) {
        cr_expect_str_eq(sub->first[i], ids[i]);
        cr_expect(sub->v[i][1] >= 0.0 && sub->v[i][1] <= 1.0);
    }
    free(sub);
    /* Float batches (the bands and the angle) standardised and flipped through the backend's
     * ops give the same file as the loader threads. */
    TC_MUST(NULL, "predict --model %s/ice/best.h5 --data %s/d/iceberg_test.json --out "
            "%s/sub_dev.csv --device cpu --augment-on device --tta hflip,vflip --batch-size 3",
            D, D, D);
    TC_MUST(NULL, "predict --model %s/ice/best.h5 --data %s/d/iceberg_test.json --out "
            "%s/sub_ldr.csv --device cpu --augment-on loader --tta hflip,vflip --batch-size 3",
            D, D, D);
    char *sd = tc_read(tc_path("sub_dev.csv")), *sl = tc_read(tc_path("sub_ldr.csv"));
    cr_expect_str_eq(sd, sl, "iceberg: --augment-on device and loader differ");
    free(sd);
    free(sl);

    /* evaluate's binary metrics (with ROC AUC) against the labels in the JSON. */
    int n = iceberg_records(tc_path("d/iceberg_train.json"), ids, labels, 64);
    cr_assert_eq(n, 12);
    TC_MUST(NULL, "predict --model %s/ice/final.h5 --data %s/d/iceberg_train.json --out %s/tr.csv"
            " --device cpu", D, D, D);
    tc_csv *p = tc_csv_read(tc_path("tr.csv"));
    cr_assert_eq(p->rows, n);
    double correct = 0.0, loss = 0.0, pairs = 0.0, wins = 0.0;
    for (int i = 0; i < n; i++) {
        cr_assert_str_eq(p->first[i], ids[i]);
        cr_assert(labels[i] == 0 || labels[i] == 1);
        double q = p->v[i][1];
        correct += (q >= 0.5) == (labels[i] == 1);
        loss -= labels[i] == 1 ? clipped_log(q) : clipped_log(1.0 - q);
        for (int j = 0; j < n; j++)
            if (labels[i] == 1 && labels[j] == 0) {
                pairs += 1.0;
                wins += p->v[i][1] > p->v[j][1] ? 1.0 : p->v[i][1] == p->v[j][1] ? 0.5 : 0.0;
            }
    }
    TC_MUST(NULL, "evaluate --model %s/ice/final.h5 --data %s/d/iceberg_train.json --device cpu",
            D, D);
    long got_n;
    double acc, l, auc;
    parse_metrics(&got_n, &acc, &l, &auc);
    cr_expect_eq(got_n, n);
    cr_expect(fabs(acc - correct / n) <= 5.1e-5, "accuracy %.4f, computed %.6f", acc, correct / n);
    cr_expect(fabs(l - loss / n) <= 5.1e-5 * fmax(1.0, loss / n), "loss %.4f, computed %.6f", l,
              loss / n);
    cr_assert_gt(pairs, 0.0);
    cr_expect(fabs(auc - wins / pairs) <= 5.1e-5, "ROC AUC %.4f, computed %.6f", auc,
              wins / pairs);
    free(p);

    /* The model takes the angle: class folders have none. */
    TC_EXPECT(NULL, 2, "auxiliary value(s) per sample but the model",
              "predict --model %s/ice/final.h5 --data %s/d/train --out %s/x.csv --device cpu", D,
              D, D);
}

/* --patience 0 with an unreachable --min-delta: Keras stops at the end of epoch 2 (wait >=
 * patience, epoch > 0). */
Test(train_cli, early_stopping) {
    TC_EXPECT(NULL, 0, "Epoch 2: early stopping",
              "train --data %s/d/train --val %s/d/val " TC_SMALL " --head mri --strategy head "
              "--epochs 5 --patience 0 --min-delta 1e9 --verbose 2 --out %s/es", D, D, D);
    cr_expect(strstr(tc_out, "Epoch 3/5") == NULL, "%s", tc_out);
    tc_csv *log = tc_csv_read(tc_path("es/log.csv"));
    cr_expect_eq(log->rows, 2);
    free(log);
    cr_expect(tc_exists(tc_path("es/final.h5")));
}

/* With a learning rate too small to move the loss by ReduceLROnPlateau's 1e-4, every epoch
 * after the first is a plateau: patience 0 halves the rate at its end, down to --min-lr. */
Test(train_cli, reduce_lr_on_plateau) {
    TC_EXPECT(NULL, 0, "ReduceLROnPlateau reducing learning rate to",
              "train --data %s/d/train " TC_SMALL " --head mri --strategy head --epochs 4 "
              "--lr 1e-9 --monitor loss --reduce-lr-patience 0 --reduce-lr-factor 0.5 "
              "--min-lr 3e-10 --verbose 2 --out %s/rl", D, D);
    tc_csv *log = tc_csv_read(tc_path("rl/log.csv"));
    cr_assert_eq(log->rows, 4);
    int c = tc_col(log, "lr");
    const double lr0 = (float)1e-9; /* the optimizer keeps the rate in float32 */
    const double want[4] = {lr0, lr0, lr0 * 0.5, 3e-10};
    for (int e = 0; e < 4; e++)
        cr_expect(fabs(log->v[e][c] - want[e]) <= 1e-6 * want[e], "epoch %d: lr %.17g, expected "
                  "%.17g", e, log->v[e][c], want[e]);
    free(log);
}

/* Monitoring the training loss in mode max with --patience 0, the run stops at the first epoch
 * whose loss is not a new maximum. --restore-best-weights then puts best.h5's weights (the
 * highest-loss epoch) into final.h5, while without it final.h5 holds the last epoch's, as the
 * last checkpoint does. */
Test(train_cli, restore_best_weights) {
    const char *flags = "--data %s/d/train " TC_SMALL " --head " TC_DROP_HEAD " --strategy head "
                        "--optimizer adam --lr 0.01 --epochs 6 --monitor loss --mode max "
                        "--patience 0 --verbose 2";
    char f[1024];
    snprintf(f, sizeof f, flags, D);
    TC_EXPECT(NULL, 0, "early stopping", "train %s --restore-best-weights --out %s/rb", f, D);
    tc_csv *log = tc_csv_read(tc_path("rb/log.csv"));
    cr_assert_lt(log->rows, 6, "no early stop:\n%s", tc_out);
    int c = tc_col(log, "loss"), best = 0;
    for (int e = 1; e < log->rows; e++)
        if (log->v[e][c] > log->v[best][c]) best = e;
    cr_assert_lt(best, log->rows - 1, "the last epoch cannot be the best one");
    free(log);
    char want[128];
    snprintf(want, sizeof want, "Restoring model weights from the end of the best epoch: %d ",
             best + 1);
    cr_expect(strstr(tc_out, want) != NULL, "output lacks '%s':\n%s", want, tc_out);
    TC_SAME_ARRAYS(tc_path("rb/final.h5"), tc_path("rb/best.h5"), 30);
    int n = 0;
    cr_expect_gt(tc_h5_diff(tc_path("rb/final.h5"), tc_path("rb/checkpoint.h5"), &n, NULL, 0), 0,
                 "final.h5 should not hold the last epoch's weights");

    /* With --min-delta, EarlyStopping's best is not ModelCheckpoint's: a huge min_delta makes
     * only epoch 1 an EarlyStopping improvement, while a higher loss in epoch 2 (--mode max)
     * still replaces best.h5. Keras restores EarlyStopping's: epoch 1, kept as es_best.h5. */
    char g[1024];
    snprintf(g, sizeof g, "--data %s/d/train " TC_SMALL " --head " TC_DROP_HEAD
             " --strategy head --optimizer adam --lr 0.01 --epochs 6 --monitor loss --mode max "
             "--patience 1 --min-delta 100 --restore-best-weights --verbose 2", D);
    TC_EXPECT(NULL, 0, "Restoring model weights from the end of the best epoch: 1 ",
              "train %s --out %s/md", g, D);
    log = tc_csv_read(tc_path("md/log.csv"));
    cr_assert_eq(log->rows, 2, "patience 1 stops after epoch 2:\n%s", tc_out);
    c = tc_col(log, "loss");
    cr_assert_gt(log->v[1][c], log->v[0][c], "epoch 2's loss must be higher for this test");
    free(log);
    cr_expect(strstr(tc_out, "es_best.h5") != NULL, "%s", tc_out);
    TC_SAME_ARRAYS(tc_path("md/final.h5"), tc_path("md/es_best.h5"), 30);
    cr_expect_gt(tc_h5_diff(tc_path("md/final.h5"), tc_path("md/best.h5"), &n, NULL, 0), 0,
                 "best.h5 holds epoch 2, not EarlyStopping's best");

    TC_MUST(NULL, "train %s --out %s/plain", f, D);
    cr_expect(strstr(tc_out, "Restoring") == NULL, "%s", tc_out);
    TC_SAME_ARRAYS(tc_path("plain/final.h5"), tc_path("plain/checkpoint.h5"), 30);
    cr_expect_gt(tc_h5_diff(tc_path("plain/final.h5"), tc_path("plain/best.h5"), &n, NULL, 0), 0);
}

/* The first step's loss (one step, so log.csv's loss is that step's) with class weights. */
static double first_step_loss(const char *cw, const char *name) {
    TC_MUST(NULL, "train --data %s/d/train " TC_SMALL " --head mri --strategy head --epochs 1 "
            "--steps-per-epoch 1 --verbose 0 %s%s --out %s/%s", D, cw[0] ? "--class-weight " : "",
            cw, D, name);
    tc_csv *log = tc_csv_read(tc_path("%s/log.csv", name));
    cr_assert_eq(log->rows, 1);
    double v = log->v[0][tc_col(log, "loss")];
    free(log);
    return v;
}

/* Keras weights each sample's loss by its class weight and averages over the batch: 2,2 is
 * exactly twice the unweighted loss, and with L(a,b) the loss under weights a,b,
 * L(1,3) = L(1,0) + 3 L(0,1) = 3 L(1,1) - 2 L(1,0). */
Test(train_cli, class_weights_scale_the_loss) {
    double none = first_step_loss("", "none");
    double twice = first_step_loss("2,2", "twice");
    double w13 = first_step_loss("1,3", "w13");
    double w10 = first_step_loss("1,0", "w10");
    cr_expect_gt(none, 0.0);
    cr_expect_eq(twice, 2.0 * none, "2,2: %.17g, unweighted %.17g", twice, none);
    cr_expect_neq(w13, none, "1,3 changed nothing");
    cr_expect(w10 > 0.0 && w10 < none, "the first batch should hold both classes: %g of %g", w10,
              none);
    cr_expect(fabs(3.0 * none - 2.0 * w10 - w13) <= 1e-6 * w13, "3 x %.9g - 2 x %.9g vs %.9g",
              none, w10, w13);
}

Test(train_cli, demo_writes_its_files, .timeout = 600) {
    /* A stale file from an earlier demo in the run folder is replaced, not refused. */
    mkdir(tc_path("demo"), 0755);
    mkdir(tc_path("demo/mri"), 0755);
    tc_write(tc_path("demo/mri/log.csv"), "epoch,acc\n0,0.1\n");
    int rc = tc_run(NULL, "demo --out %s/demo --epochs 2 --device cpu", D);
    /* Two epochs need not reach the 90% target: exit 0 if both did, 1 if not. */
    cr_assert(rc == 0 || (rc == 1 && strstr(tc_out, "NOT reached") != NULL), "exit %d:\n%s", rc,
              tc_out);
    cr_expect(strstr(tc_out, "replacing the previous demo run") != NULL, "%s", tc_out);
    cr_expect(strstr(tc_out, "results (target: validation accuracy >= 90%)") != NULL, "%s",
              tc_out);
    cr_expect(strstr(tc_out, "MRI slices      val_acc") != NULL, "%s", tc_out);
    cr_expect(strstr(tc_out, "iceberg radar   val_acc") != NULL, "%s", tc_out);
    /* What its usage lists. */
    static const char *const data[] = {"data/train/dementia", "data/train/normal",
                                       "data/val/dementia",   "data/val/normal",
                                       "data/iceberg_train.json", "data/iceberg_test.json"};
    for (size_t i = 0; i < sizeof data / sizeof data[0]; i++)
        cr_expect(tc_exists(tc_path("demo/%s", data[i])), "no %s", data[i]);
    static const char *const run[] = {"log.csv", "curves.png", "best.h5", "final.h5",
                                      "checkpoint.h5", "config.txt"};
    for (int r = 0; r < 2; r++)
        for (size_t i = 0; i < sizeof run / sizeof run[0]; i++) {
            const char *dir = r == 0 ? "mri" : "iceberg";
            cr_expect(tc_exists(tc_path("demo/%s/%s", dir, run[i])), "no %s/%s", dir, run[i]);
            if (i == 0) {
                tc_csv *log = tc_csv_read(tc_path("demo/%s/log.csv", dir));
                cr_expect_eq(log->rows, 2, "%s/log.csv", dir);
                cr_expect_eq(log->cols, 6, "%s/log.csv: epoch,acc,loss,lr,val_acc,val_loss", dir);
                free(log);
            }
        }
    char ids[256][32];
    int labels[256];
    int n = iceberg_records(tc_path("demo/data/iceberg_test.json"), ids, labels, 256);
    tc_csv *sub = tc_csv_read(tc_path("demo/iceberg/submission.csv"));
    cr_expect_str_eq(sub->names[0], "id");
    cr_expect_str_eq(sub->names[1], "is_iceberg");
    cr_assert_eq(sub->rows, n);
    for (int i = 0; i < n; i++) cr_expect_str_eq(sub->first[i], ids[i]);
    free(sub);
}

/* Through the library: ct_train_result names the epoch whose weights best.h5 holds (the
 * monitor's best in log.csv), with or without early stopping. */
Test(train_cli, result_names_the_best_epoch) {
    char data[600], val[600], out[600];
    snprintf(data, sizeof data, "%s/d/train", D);
    snprintf(val, sizeof val, "%s/d/val", D);
    snprintf(out, sizeof out, "%s/lib_run", D);
    ct_train_config c;
    ct_train_config_defaults(&c);
    c.data = data;
    c.val = val;
    c.out_dir = out;
    c.input_size = 32;
    c.batch_size = 4;
    c.weights = "none";
    c.device = "cpu";
    c.threads = 1;
    c.head = "mri";
    c.strategy = CT_STRATEGY_HEAD;
    c.epochs = 4;
    c.verbose = 0;
    c.optimizer.lr = 0.05f;
    ct_train_result res;
    cr_assert_eq(ct_train(&c, &res), CT_OK, "%s", ct_last_error());
    tc_csv *log = tc_csv_read(tc_path("lib_run/log.csv"));
    const int col = tc_col(log, "val_loss");
    int best = 0;
    for (int e = 1; e < log->rows; e++)
        if (log->v[e][col] < log->v[best][col]) best = e;
    cr_expect_eq(res.best_epoch, best, "best epoch %d, log says %d", res.best_epoch, best);
    cr_expect_eq(res.epochs_run, 4);
    cr_expect_float_eq(res.best_value, log->v[best][col], 1e-12);
    free(log);
}

/* Runs `cutune ARGS` with stdout and stderr on a pseudo-terminal, as in an interactive shell,
 * collecting what the terminal receives (its \n arrive as \r\n) into out. Returns the exit
 * code. */
static int run_on_terminal(const char *args, char *out, size_t cap) {
    int master = posix_openpt(O_RDWR | O_NOCTTY);
    cr_assert(master >= 0 && grantpt(master) == 0 && unlockpt(master) == 0, "no pty: %s",
              strerror(errno));
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "exec env -u CUTUNE_STOP_AFTER_STEPS '%s' %s",
             getenv("CUTUNE_CLI"), args);
    const char *slave_name = ptsname(master);
    cr_assert_not_null(slave_name);
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        setsid();
        int slave = open(slave_name, O_RDWR);
        if (slave < 0) _exit(126);
        dup2(slave, 1);
        dup2(slave, 2);
        close(slave);
        close(master);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    size_t n = 0;
    for (;;) {
        ssize_t got = read(master, out + n, cap - 1 - n);
        if (got > 0 && (n += (size_t)got) < cap - 1) continue;
        if (got < 0 && errno == EINTR) continue;
        break; /* EIO: every holder of the terminal has closed it */
    }
    out[n] = '\0';
    close(master);
    int status = 0;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* How many times `needle` occurs in `hay`. */
static int occurrences(const char *hay, const char *needle) {
    int n = 0;
    for (const char *p = hay; (p = strstr(p, needle)) != NULL; p += strlen(needle)) n++;
    return n;
}

/* --verbose 1 as Keras 2 prints it: each epoch ends with one bar line that carries the
 * validation metrics, in a log file as on a terminal. 12 images in batches of 4: 3 steps. */
Test(train_cli, verbose_1_ends_each_epoch_with_one_line_holding_val_metrics) {
#define VERBOSE_RUN                                                                            \
    "train --data %s/d/train --val %s/d/val " TC_SMALL " --strategy head --epochs 2 "         \
    "--verbose 1 --out %s/%s"
    /* Not a terminal (a pipe): the final line of each epoch, once. */
    TC_MUST(NULL, VERBOSE_RUN, D, D, D, "piped");
    cr_expect_eq(occurrences(tc_out, "3/3 [==============================]"), 2, "%s", tc_out);
    for (const char *p = tc_out; (p = strstr(p, "3/3 [")) != NULL; p++) {
        const size_t len = strcspn(p, "\n");
        char line[512];
        snprintf(line, sizeof line, "%.*s", (int)(len < 511 ? len : 511), p);
        cr_expect(strstr(line, " - loss: ") && strstr(line, " - acc: ") &&
                      strstr(line, " - val_loss: ") && strstr(line, " - val_acc: "),
                  "the epoch's line lacks a metric: %s", line);
    }
    cr_expect(strstr(tc_out, "\n - ") == NULL, "a --verbose 2 line as well:\n%s", tc_out);
    cr_expect(strstr(tc_out, "\n  val_loss") == NULL, "validation on a line of its own:\n%s",
              tc_out);

    /* A terminal: the bar redrawn in place, its last drawing carrying the val_ metrics. */
    static char term[1 << 16];
    char args[2048];
    snprintf(args, sizeof args, VERBOSE_RUN, D, D, D, "tty");
    int rc = run_on_terminal(args, term, sizeof term);
    cr_assert_eq(rc, 0, "exit %d:\n%s", rc, term);
    cr_expect(strstr(term, "\r1/3 [") != NULL, "no redrawn bar:\n%s", term);
    int finals = 0;
    for (const char *p = term; (p = strstr(p, "\r3/3 [")) != NULL; p++, finals++) {
        const size_t len = strcspn(p + 1, "\r\n");
        char line[512];
        snprintf(line, sizeof line, "%.*s", (int)(len < 511 ? len : 511), p + 1);
        cr_expect(strstr(line, " - val_loss: ") && strstr(line, " - val_acc: "),
                  "the epoch's final bar lacks the validation metrics: %s", line);
    }
    cr_expect_eq(finals, 2, "%s", term);
    cr_expect(strstr(term, "\n  val_loss") == NULL, "validation on a line of its own:\n%s",
              term);
#undef VERBOSE_RUN
}
