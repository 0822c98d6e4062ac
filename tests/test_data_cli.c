/* `cutune scan` as a user runs it (through CUTUNE_CLI): Keras's "Found N images belonging to K
 * classes.", class indices and counts, the validation split, ignored files with -v, --check
 * listing each bad image, iceberg JSON summaries, and every problem ending with a message and
 * exit 1 (data) or 2 (usage). */
#include "test_data_util.h"

#include <sys/wait.h>

static char *tmp;
static void setup(void) { tmp = td_tmpdir(); }
static void teardown(void) {
    td_rmrf(tmp);
    tmp = NULL;
}
TestSuite(data_cli, .init = setup, .fini = teardown, .timeout = 120);

/* Runs `cutune ARGS` (ARGS may use %s for the temporary folder) with stdout and stderr
 * captured; returns the exit code. */
static int run(const char *fmt) {
    char args[2048];
    snprintf(args, sizeof args, fmt, tmp, tmp);
    return tu_cli(args);
}

#define EXPECT_RUN(args, code, text)                                                             \
    do {                                                                                         \
        int rc_ = run(args);                                                                     \
        cr_expect_eq(rc_, code, "cutune %s: exit %d, expected %d; output:\n%s", args, rc_, code, \
                     tu_out);                                                                       \
        cr_expect(strstr(tu_out, text) != NULL, "cutune %s: output lacks '%s':\n%s", args, text,    \
                  tu_out);                                                                          \
    } while (0)

static void image(const char *rel, int seed) {
    uint8_t *px = td_pattern(20 + seed, 30, 3);
    if (strstr(rel, ".jpg") != NULL)
        td_write_jpeg(td_path(tmp, rel), px, 20 + seed, 30, 3, 90);
    else
        td_write_png8(td_path(tmp, rel), px, 20 + seed, 30, 3);
    free(px);
}

static void make_tree(void) {
    image("d/cats/c1.png", 1);
    image("d/cats/c2.jpg", 2);
    image("d/cats/sub/c3.png", 3);
    image("d/cats/c4.PNG", 4);
    image("d/dogs/d1.png", 5);
    image("d/dogs/d2.jpg", 6);
    image("d/dogs/d3.png", 7);
    td_write(td_path(tmp, "d/cats/notes.txt"), "hi", 2);
}

Test(data_cli, usage) {
    EXPECT_RUN("scan --help", 0, "usage: cutune scan --data PATH");
    EXPECT_RUN("--help", 0, "scan ");
    EXPECT_RUN("scan", 2, "--data PATH is required");
    EXPECT_RUN("scan --data %s --validation-split 1.5", 2, "strictly between 0 and 1, not '1.5'");
    EXPECT_RUN("scan --data %s --validation-split abc", 2, "--validation-split");
    EXPECT_RUN("scan --data %s --target-size 0", 2, "--target-size");
    EXPECT_RUN("scan --data %s --frobnicate", 2, "unknown flag '--frobnicate'");
    EXPECT_RUN("scan --data %s --color-mode cmyk", 2, "unknown color mode 'cmyk'");
    EXPECT_RUN("scan --data %s/missing", 1, "missing: no such file or folder");
}

Test(data_cli, folder_summary_like_keras) {
    make_tree();
    EXPECT_RUN("scan --data %s/d", 0, "Found 7 images belonging to 2 classes.");
    cr_expect(strstr(tu_out, "class_indices: {'cats': 0, 'dogs': 1}") != NULL, "%s", tu_out);
    cr_expect(strstr(tu_out, "0      cats          4") != NULL, "%s", tu_out);
    cr_expect(strstr(tu_out, "1      dogs          3") != NULL, "%s", tu_out);
    cr_expect(strstr(tu_out, "1 non-image file ignored (list with -v)") != NULL, "%s", tu_out);
    EXPECT_RUN("scan --data %s/d -v", 0, "ignored (not an image extension): cats/notes.txt");
    /* int(0.5 * 4) = 2 and int(0.5 * 3) = 1 validation files. */
    EXPECT_RUN("scan --data %s/d --validation-split 0.5", 0,
               "Found 4 images belonging to 2 classes.  [subset='training']");
    cr_expect(strstr(tu_out, "Found 3 images belonging to 2 classes.  [subset='validation']") != NULL,
              "%s", tu_out);
    cr_expect(strstr(tu_out, "index  class    images  training  validation") != NULL, "%s", tu_out);
}

Test(data_cli, check_lists_every_bad_image) {
    make_tree();
    EXPECT_RUN("scan --data %s/d --check --target-size 32", 0, "all 7 images decode");
    cr_expect(strstr(tu_out, "resize to 32x32") != NULL, "%s", tu_out);
    td_write(td_path(tmp, "d/dogs/broken.png"), "\x89PNG\r\n\x1a\n\0\0", 10);
    td_write(td_path(tmp, "d/cats/old.bmp"), "BM\0\0\0\0\0\0", 8);
    td_write(td_path(tmp, "d/cats/zero.jpg"), "", 0);
    EXPECT_RUN("scan --data %s/d --check --threads 3", 1, "3 of 10 images cannot be read");
    cr_expect(strstr(tu_out, "d/dogs/broken.png: corrupt or truncated PNG") != NULL, "%s", tu_out);
    cr_expect(strstr(tu_out, "d/cats/old.bmp: corrupt or unsupported BMP") != NULL, "%s", tu_out);
    cr_expect(strstr(tu_out, "d/cats/zero.jpg: empty file (0 bytes)") != NULL, "%s", tu_out);
    /* Dataset order: cats before dogs. */
    cr_expect(strstr(tu_out, "old.bmp") < strstr(tu_out, "broken.png"), "%s", tu_out);
}

Test(data_cli, folder_problems) {
    make_tree();
    mkdir(td_path(tmp, "d/empty/x"), 0755);
    EXPECT_RUN("scan --data %s/d", 0, "warning: class 'empty' has no images");
    image("one/only/a.png", 1);
    EXPECT_RUN("scan --data %s/one", 1, "only one class ('only')");
    image("flat/a.png", 1);
    EXPECT_RUN("scan --data %s/flat", 1, "no class subfolders");
    mkdir(td_path(tmp, "d/.ipynb_checkpoints/x"), 0755);
    EXPECT_RUN("scan --data %s/d", 0, "class folder '.ipynb_checkpoints' is hidden");
    if (geteuid() != 0) {
        char locked[4096];
        snprintf(locked, sizeof locked, "%s/d/dogs", tmp);
        chmod(locked, 0);
        EXPECT_RUN("scan --data %s/d", 1, "dogs: cannot read folder");
        chmod(locked, 0755);
    }
}

static void write_json(const char *rel, int n, bool labels, bool na) {
    FILE *f = fopen(td_path(tmp, rel), "w");
    fprintf(f, "[");
    for (int r = 0; r < n; r++) {
        fprintf(f, "%s{\"id\": \"r%d\", \"band_1\": [", r ? "," : "", r);
        for (int i = 0; i < 5625; i++) fprintf(f, "%s%d", i ? "," : "", -(i % 30));
        fprintf(f, "], \"band_2\": [");
        for (int i = 0; i < 5625; i++) fprintf(f, "%s%d", i ? "," : "", -(i % 20));
        if (na && r == 1)
            fprintf(f, "], \"inc_angle\": \"na\"");
        else
            fprintf(f, "], \"inc_angle\": %d", 30 + r);
        if (labels) fprintf(f, ", \"is_iceberg\": %d", r % 3 == 0);
        fprintf(f, "}");
    }
    fprintf(f, "]");
    fclose(f);
}

Test(data_cli, iceberg_json) {
    write_json("train.json", 6, true, true);
    EXPECT_RUN("scan --data %s/train.json", 0, "iceberg JSON: 6 records");
    cr_expect(strstr(tu_out, "labelled: 6 (ship 4, iceberg 2); unlabelled: 0") != NULL, "%s", tu_out);
    cr_expect(
        strstr(tu_out, "inc_angle \"na\": 1 (filled with the mean of the others, 32.8000") != NULL,
        "%s", tu_out);
    cr_expect(strstr(tu_out, "Found 6 images belonging to 2 classes.") != NULL, "%s", tu_out);
    EXPECT_RUN("scan --data %s/train.json --validation-split 0.5 --check", 0,
               "training 3, validation 3");
    cr_expect(strstr(tu_out, "check: all 6 records are valid") != NULL, "%s", tu_out);
    write_json("test.json", 3, false, false);
    EXPECT_RUN("scan --data %s/test.json", 0, "unlabelled: 3 (a test file");
    const char *bad = "[{\"id\": \"x1\", \"band_1\": [1, 2]}]";
    td_write(td_path(tmp, "bad.json"), bad, strlen(bad));
    EXPECT_RUN("scan --data %s/bad.json", 1,
               "record 0 (id x1): 'band_1' has 2 values, expected 5625");
}
