/* Every image format flow_from_directory counts, decoded as Keras reads it with Pillow: PNG of
 * every colour type and depth (16-bit grey clipped at 255, as Pillow's I;16 -> RGB does, or
 * scaled with --png16 scale), BMP, PPM/PGM and TIFF, each in rgb, grayscale and rgba, compared
 * byte for byte with Pillow's own pixels (tests/fixtures/data/formats, written by
 * tests/reference/image_formats_reference.py). Then what a folder scan counts decodes, truncated
 * files, the 16-bit count and its once-per-run note (train, k-fold, predict), and the --png16
 * flag of train, evaluate and predict. */
#include "test_data_util.h"

#include <criterion/redirect.h>

#include "data/data.h"
#include "train/run.h"
#include "train/settings.h"

static char *tmp;
static void setup(void) { tmp = td_tmpdir(); }
static void teardown(void) {
    td_rmrf(tmp);
    tmp = NULL;
}
TestSuite(data_formats, .init = setup, .fini = teardown, .timeout = 120);

static int hexval(char ch) {
    return ch >= '0' && ch <= '9' ? ch - '0' : (ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1);
}

/* One line of formats_ref.txt against ct_image_load; false (with expects) on a difference. */
static bool check_line(const char *line, char *file, size_t cap) {
    char name[128], mode[16], png16[8];
    int h = 0, w = 0, c = 0, at = 0;
    cr_assert_eq(sscanf(line, "%127s %15s %7s %d %d %d %n", name, mode, png16, &h, &w, &c, &at), 6,
                 "bad line: %.80s", line);
    snprintf(file, cap, "%s %s %s", name, mode, png16);
    char rel[256];
    snprintf(rel, sizeof rel, "data/formats/%s", name);
    ct_image_options o;
    ct_image_options_defaults(&o);
    o.target_h = o.target_w = 0;
    cr_assert_eq(ct_parse_color_mode(mode, &o.color_mode), CT_OK);
    cr_assert_eq(ct_parse_png16(png16, &o.png16), CT_OK);
    ct_image img;
    ct_status s = ct_image_load(tu_fixture(rel), &o, &img);
    cr_expect_eq(s, CT_OK, "%s: %s", file, ct_last_error());
    if (s != CT_OK) return false;
    bool same = img.h == h && img.w == w && img.c == c;
    cr_expect(same, "%s: %dx%dx%d, Pillow %dx%dx%d", file, img.h, img.w, img.c, h, w, c);
    const char *hex = line + at;
    size_t first = 0, diffs = 0;
    for (size_t i = 0; same && i < (size_t)h * w * c; i++) {
        const int v = hexval(hex[2 * i]) * 16 + hexval(hex[2 * i + 1]);
        cr_assert_geq(v, 0, "%s: short hex at byte %zu", file, i);
        if (img.data[i] != v && diffs++ == 0) first = i;
    }
    cr_expect_eq(diffs, 0, "%s: %zu bytes differ from Pillow's, the first at pixel %zu channel %zu",
                 file, diffs, first / (size_t)c, first % (size_t)c);
    ct_image_free(&img);
    return same && diffs == 0;
}

Test(data_formats, every_format_matches_pillow) {
    size_t n;
    char *text = (char *)td_read(tu_fixture("data/formats/formats_ref.txt"), &n);
    int lines = 0, good = 0;
    bool seen_grey16 = false, seen_bmp = false, seen_tiff = false, seen_ppm = false;
    for (char *save = NULL, *line = strtok_r(text, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save)) {
        if (line[0] == '#') continue;
        char file[200];
        lines++;
        good += check_line(line, file, sizeof file);
        seen_grey16 |= strncmp(file, "grey16.png rgb clip", 19) == 0;
        seen_bmp |= strstr(file, ".bmp ") != NULL;
        seen_tiff |= strstr(file, ".tif") != NULL;
        seen_ppm |= strstr(file, ".ppm ") != NULL;
    }
    free(text);
    /* 42 files, 3 modes each, and the 9 scale lines of the three 16-bit grey files. */
    cr_expect_eq(lines, 135, "fixture lines: %d", lines);
    cr_expect_eq(good, lines, "%d of %d lines differ from Pillow", lines - good, lines);
    cr_expect(seen_grey16 && seen_bmp && seen_tiff && seen_ppm);
}

/* The MRI case of the report: a 16-bit grey PNG with values far above 255 reads as Keras reads
 * it (white where v > 255), and keeps its range with scale. */
Test(data_formats, png16_grey_clips_like_keras_or_scales) {
    const int h = 3, w = 4;
    uint16_t s[12];
    for (int i = 0; i < h * w; i++) s[i] = (uint16_t)(i * 5000 + (i % 2 ? 7 : 0));
    td_png p = {.w = w, .h = h, .color_type = PNG_COLOR_TYPE_GRAY, .bit_depth = 16, .samples = s};
    td_write_png(td_path(tmp, "mri.png"), &p);
    ct_image_options o;
    ct_image_options_defaults(&o);
    o.target_h = o.target_w = 0;
    ct_image img;
    cr_assert_eq(ct_image_load(td_path(tmp, "mri.png"), &o, &img), CT_OK, "%s", ct_last_error());
    for (int i = 0; i < h * w; i++)
        for (int k = 0; k < 3; k++)
            cr_expect_eq(img.data[i * 3 + k], s[i] > 255 ? 255 : s[i], "clip pixel %d: %d", i,
                         img.data[i * 3 + k]);
    ct_image_free(&img);
    o.png16 = CT_PNG16_SCALE;
    cr_assert_eq(ct_image_load(td_path(tmp, "mri.png"), &o, &img), CT_OK, "%s", ct_last_error());
    for (int i = 0; i < h * w; i++)
        cr_expect_eq(img.data[i * 3], (s[i] + 128) / 257, "scale pixel %d: %d", i, img.data[i * 3]);
    ct_image_free(&img);
    o.png16 = (ct_png16)7;
    cr_expect_eq(ct_image_load(td_path(tmp, "mri.png"), &o, &img), CT_EINVAL);
}

/* Keras's list (png, jpg, jpeg, bmp, ppm, tif, tiff): every file the scan counts decodes. */
Test(data_formats, what_the_scan_counts_decodes) {
    static const char *const files[] = {"rgb.bmp", "palette.bmp", "rgb.ppm", "grey.ppm",
                                        "rgb.tif", "rgb_lzw.tif", "grey16.tiff", "grey16.png",
                                        "rgb8.png"};
    const size_t nf = sizeof files / sizeof files[0];
    char dir[4096];
    for (int k = 0; k < 2; k++) {
        snprintf(dir, sizeof dir, "%s/d/%s", tmp, k ? "b" : "a");
        cr_assert_eq(mkdir(td_path(tmp, "d"), 0755) == 0 || errno == EEXIST, true);
        cr_assert_eq(mkdir(dir, 0755), 0);
        for (size_t i = 0; i < nf; i++) {
            char rel[256], out[4200];
            snprintf(rel, sizeof rel, "data/formats/%s", files[i]);
            size_t n;
            uint8_t *b = td_read(tu_fixture(rel), &n);
            snprintf(out, sizeof out, "%s/%s", dir, files[i]);
            td_write(out, b, n);
            free(b);
        }
    }
    ct_dataset *ds = NULL;
    snprintf(dir, sizeof dir, "%s/d", tmp);
    cr_assert_eq(ct_dataset_open_folder(&ds, dir, NULL), CT_OK, "%s", ct_last_error());
    cr_expect_eq(ct_dataset_count(ds), 2 * nf);
    ct_image_options o;
    ct_image_options_defaults(&o);
    o.target_h = o.target_w = 32;
    size_t bad = 99;
    cr_assert_eq(ct_dataset_check(ds, &o, 2, NULL, NULL, &bad), CT_OK, "%s", ct_last_error());
    cr_expect_eq(bad, 0, "%zu counted files do not decode", bad);
    /* grey16.png in each class; the TIFF is not counted (the note is about PNGs). */
    cr_expect_eq(ct_dataset_png16_count(ds), 2);
    ct_dataset_free(ds);
}

/* Cut short, every format is an error naming the file, as PIL raises "image file is truncated"
 * (stb_image alone would read the missing pixels as zeros). */
Test(data_formats, truncated_files_are_errors) {
    static const char *const files[] = {"rgb.bmp", "palette.bmp", "rgb.ppm", "grey.ppm",
                                        "rgb.tif", "grey16.tiff", "grey16.png"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char rel[256];
        snprintf(rel, sizeof rel, "data/formats/%s", files[i]);
        size_t n;
        uint8_t *b = td_read(tu_fixture(rel), &n);
        const char *path = td_path(tmp, files[i]);
        td_write(path, b, n - 20);
        free(b);
        ct_image_options o;
        ct_image_options_defaults(&o);
        ct_image img;
        ct_status s = ct_image_load(path, &o, &img);
        cr_expect_eq(s, CT_EFORMAT, "%s: %s", files[i], ct_last_error());
        cr_expect(strstr(ct_last_error(), "truncated") != NULL, "%s", ct_last_error());
        cr_expect(strstr(ct_last_error(), files[i]) != NULL, "%s", ct_last_error());
        if (s == CT_OK) ct_image_free(&img);
    }
}

/* Its own .init replaces the suite's: no temporary folder (nothing is written). */
Test(data_formats, png16_note_is_one_line_and_only_for_clip, .init = cr_redirect_stderr) {
    ct_png16_note(0, CT_PNG16_CLIP, "data");
    ct_png16_note(5, CT_PNG16_SCALE, "data");
    ct_png16_note(3, CT_PNG16_CLIP, "mri/");
    fflush(stderr);
    cr_assert_stderr_eq_str(
        "cutune: note: 3 image(s) in mri/ are 16-bit grey PNGs; as in Keras (Pillow's "
        "convert('RGB')), every value above 255 is clipped to 255. Add --png16 scale to map "
        "0..65535 onto 0..255 and keep their range instead.\n");
}

/* `cutune train --png16`: parsed, refused when unknown, recorded only when not Keras's. */
Test(data_formats, train_png16_setting) {
    ct_train_config *c = NULL;
    cr_assert_eq(ct_train_config_new(&c), CT_OK);
    cr_expect_eq(c->png16, CT_PNG16_CLIP);
    ct_train_facts f = {.c = c, .input = 224, .head = "mri", .freeze_target = ""};
    char *rec = ct_train_record(&f);
    cr_assert_not_null(rec);
    cr_expect(strstr(rec, "png16") == NULL, "clip is not recorded:\n%s", rec);
    free(rec);
    cr_expect_eq(ct_train_config_set(c, "png16", "scale"), CT_OK, "%s", ct_last_error());
    cr_expect_eq(c->png16, CT_PNG16_SCALE);
    rec = ct_train_record(&f);
    cr_assert_not_null(rec);
    cr_expect(strstr(rec, "\npng16 = scale\n") != NULL, "%s", rec);
    free(rec);
    cr_expect_eq(ct_train_config_set(c, "png16", "high"), CT_EINVAL);
    cr_expect(strstr(ct_last_error(), "clip") != NULL, "%s", ct_last_error());
    ct_train_config_free(c);
}

/* The flag in each command: listed in --help, parsed before any file is opened. */
Test(data_formats, png16_flag_in_train_evaluate_predict) {
    TU_EXPECT_CLI("train --help", 0, "--png16 clip|scale");
    TU_EXPECT_CLI("evaluate --help", 0, "[--png16 clip|scale]");
    TU_EXPECT_CLI("predict --help", 0, "[--png16 clip|scale]");
    TU_EXPECT_CLI("evaluate --model m.h5 --data d --png16 high", 2,
                  "--png16: unknown 16-bit grey mode 'high' (clip, as Keras, or scale)");
    TU_EXPECT_CLI("predict --model m.h5 --data d --out p.csv --png16 x", 2, "--png16");
    TU_EXPECT_CLI("train --data d --out r --png16 high", 2, "clip");
}

static int count_of(const char *text, const char *what) {
    int n = 0;
    for (const char *p = strstr(text, what); p != NULL; p = strstr(p + 1, what)) n++;
    return n;
}

/* The note comes once per run, from whoever opens the data: a plain run, and a k-fold run whose
 * folds reopen nothing. One class makes each run stop right after opening its data (the note
 * comes first), so nothing trains here. */
Test(data_formats, train_notes_16_bit_grey_once_per_run) {
    static const uint16_t s[4] = {0, 300, 4000, 65535};
    td_png p = {.w = 2, .h = 2, .color_type = PNG_COLOR_TYPE_GRAY, .bit_depth = 16, .samples = s};
    char dir[4200], args[8192];
    snprintf(dir, sizeof dir, "%s/d", tmp);
    mkdir(dir, 0755);
    snprintf(dir, sizeof dir, "%s/d/only", tmp);
    mkdir(dir, 0755);
    for (int i = 0; i < 3; i++) {
        char name[64];
        snprintf(name, sizeof name, "d/only/%d.png", i);
        td_write_png(td_path(tmp, name), &p);
    }
    const char *note = "3 image(s) in ";
    const char *common = "--weights none --input-size 32 --epochs 1 --device cpu";
    snprintf(args, sizeof args, "train --data %s/d --out %s/r1 %s", tmp, tmp, common);
    TU_EXPECT_CLI(args, 2, "at least 2 classes");
    cr_expect_eq(count_of(tu_out, note), 1, "%s", tu_out);
    cr_expect(strstr(tu_out, "--png16 scale") != NULL, "%s", tu_out);
    snprintf(args, sizeof args, "train --data %s/d --out %s/r2 --folds 2 %s", tmp, tmp, common);
    TU_EXPECT_CLI(args, 2, "at least 2 classes");
    cr_expect_eq(count_of(tu_out, note), 1, "%s", tu_out);
    snprintf(args, sizeof args, "train --data %s/d --out %s/r3 --png16 scale %s", tmp, tmp,
             common);
    TU_EXPECT_CLI(args, 2, "at least 2 classes");
    cr_expect_eq(count_of(tu_out, "16-bit"), 0, "%s", tu_out);
}

/* predict: the note once for its data, none with --png16 scale. (The fixture's weights give
 * every image the same probabilities, so they cannot show the pixels changed; the decoder
 * tests above do.) tfkeras2_mri64.h5: weights only, the mri head at 64x64. */
Test(data_formats, predict_notes_16_bit_grey_once, .timeout = 600) {
    uint16_t s[64];
    for (int i = 0; i < 64; i++) s[i] = (uint16_t)(i * 1000);
    td_png p = {.w = 8, .h = 8, .color_type = PNG_COLOR_TYPE_GRAY, .bit_depth = 16, .samples = s};
    char dir[4200], args[8192];
    snprintf(dir, sizeof dir, "%s/t", tmp);
    mkdir(dir, 0755);
    td_write_png(td_path(tmp, "t/a.png"), &p);
    td_write_png(td_path(tmp, "t/b.png"), &p);
    const char *model = tu_fixture("tfkeras2_mri64.h5");
    for (int scale = 0; scale < 2; scale++) {
        snprintf(args, sizeof args,
                 "predict --model %s --head mri --input-size 64 --data %s/t --out %s/p%d.csv "
                 "--device cpu --png16 %s",
                 model, tmp, tmp, scale, scale ? "scale" : "clip");
        TU_EXPECT_CLI(args, 0, "wrote 2 predictions");
        cr_expect_eq(count_of(tu_out, "2 image(s) in "), scale ? 0 : 1, "%s", tu_out);
    }
}
