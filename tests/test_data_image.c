/* Decoding and resizing: every PNG colour type and bit depth (palette, tRNS, interlaced), JPEG
 * grey / YCbCr / CMYK / YCCK, conversion to rgb / grayscale / rgba as PIL does, resizing against
 * Pillow's output, and every bad file: empty, truncated, corrupt, unsupported, too large. PNGs
 * and JPEGs are written here with libpng and libjpeg; the Pillow references come from
 * tests/reference/data_reference.py. */
#include "test_data_util.h"

#include "data/data.h"

static char *tmp;
static void setup(void) { tmp = td_tmpdir(); }
static void teardown(void) {
    td_rmrf(tmp);
    tmp = NULL;
}
TestSuite(data_image, .init = setup, .fini = teardown, .timeout = 120);

/* ---- PNG formats ---- */

typedef struct png_case {
    const char *name;
    int color_type, depth;
    bool interlace, trns;
} png_case;

static const png_color PALETTE_BASE = {0, 0, 0};

/* Native 8-bit (r, g, b, a) of pixel i, given the samples written. */
static void expected_native(const png_case *pc, const uint16_t *s, int c, const png_color *pal,
                            const png_byte *trans, int n_trans, const png_color_16 *key, size_t i,
                            uint8_t rgba[4], bool *grey) {
    const uint16_t *p = s + i * c;
    const int d = pc->depth;
    uint8_t v[4];
    /* 16-bit: the high byte, as PIL reads colour, except grey (PIL's I;16), which Keras's
     * convert('RGB') clips at 255. A 16-bit file's tRNS key is never applied (PIL compares
     * it with 8-bit pixels). */
    const bool grey16 = d == 16 && pc->color_type == PNG_COLOR_TYPE_GRAY;
    for (int k = 0; k < c; k++)
        v[k] = grey16    ? (uint8_t)(p[k] > 255 ? 255 : p[k])
               : d == 16 ? (uint8_t)(p[k] >> 8)
                         : (d == 8 ? (uint8_t)p[k] : (uint8_t)(p[k] * 255 / ((1 << d) - 1)));
    if (d == 16) key = NULL;
    *grey = false;
    rgba[3] = 255;
    switch (pc->color_type) {
    case PNG_COLOR_TYPE_PALETTE:
        rgba[0] = pal[p[0]].red;
        rgba[1] = pal[p[0]].green;
        rgba[2] = pal[p[0]].blue;
        if (trans != NULL && p[0] < n_trans) rgba[3] = trans[p[0]];
        break;
    case PNG_COLOR_TYPE_GRAY:
        rgba[0] = rgba[1] = rgba[2] = v[0];
        if (key != NULL && p[0] == key->gray) rgba[3] = 0;
        *grey = true;
        break;
    case PNG_COLOR_TYPE_GRAY_ALPHA:
        rgba[0] = rgba[1] = rgba[2] = v[0];
        rgba[3] = v[1];
        *grey = true;
        break;
    case PNG_COLOR_TYPE_RGB:
        memcpy(rgba, v, 3);
        if (key != NULL && p[0] == key->red && p[1] == key->green && p[2] == key->blue) rgba[3] = 0;
        break;
    default:
        memcpy(rgba, v, 4);
    }
}

static void check_png_case(const png_case *pc) {
    const int w = 13, h = 11; /* odd sizes exercise every Adam7 pass */
    const int c = td_png_channels(pc->color_type);
    const int d = pc->depth;
    uint16_t *s = malloc((size_t)h * w * c * sizeof *s);
    png_color pal[256];
    png_byte trans[256];
    const int n_pal = pc->color_type == PNG_COLOR_TYPE_PALETTE ? (1 << (d < 8 ? d : 8)) : 0;
    for (int i = 0; i < 256; i++) {
        pal[i] = PALETTE_BASE;
        pal[i].red = (png_byte)(i * 31);
        pal[i].green = (png_byte)(i * 67 + 5);
        pal[i].blue = (png_byte)(i * 113 + 9);
        trans[i] = (png_byte)(255 - i * 37);
    }
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int k = 0; k < c; k++) {
                unsigned v = td_pattern_at(y, x, k, 4);
                if (pc->color_type == PNG_COLOR_TYPE_PALETTE)
                    v %= (unsigned)n_pal;
                else if (d == 16)
                    v = (v << 8) | (unsigned)((x + 3 * y) & 255);
                else if (d < 8)
                    v %= 1u << d;
                s[((size_t)y * w + x) * c + k] = (uint16_t)v;
            }
    /* Colour keys that occur in the image, so tRNS matters. */
    png_color_16 key = {0};
    const png_color_16 *keyp = NULL;
    if (pc->trns && pc->color_type != PNG_COLOR_TYPE_PALETTE) {
        key.gray = s[0];
        key.red = s[0];
        key.green = c >= 3 ? s[1] : 0;
        key.blue = c >= 3 ? s[2] : 0;
        keyp = &key;
    }
    const int n_trans = pc->trns && pc->color_type == PNG_COLOR_TYPE_PALETTE ? n_pal / 2 + 1 : 0;
    td_png p = {.w = w,
                .h = h,
                .color_type = pc->color_type,
                .bit_depth = d,
                .interlace = pc->interlace,
                .samples = s,
                .palette = n_pal ? pal : NULL,
                .n_palette = n_pal,
                .trans = n_trans ? trans : NULL,
                .n_trans = n_trans,
                .trans_color = keyp};
    char name[128];
    snprintf(name, sizeof name, "%s.png", pc->name);
    const char *path = td_path(tmp, name);
    td_write_png(path, &p);

    static const ct_color_mode modes[3] = {CT_COLOR_RGB, CT_COLOR_GRAYSCALE, CT_COLOR_RGBA};
    for (int m = 0; m < 3; m++) {
        ct_image_options o;
        ct_image_options_defaults(&o);
        o.target_h = o.target_w = 0;
        o.color_mode = modes[m];
        ct_image img;
        ct_status st = ct_image_load(td_path(tmp, name), &o, &img);
        cr_assert_eq(st, CT_OK, "%s mode %d: %s", pc->name, m, ct_last_error());
        const int want_c = ct_color_mode_channels(modes[m]);
        cr_assert(img.h == h && img.w == w && img.c == want_c, "%s: %dx%dx%d", pc->name, img.h,
                  img.w, img.c);
        for (size_t i = 0; i < (size_t)h * w; i++) {
            uint8_t e[4];
            bool grey;
            expected_native(pc, s, c, pal, n_trans ? trans : NULL, n_trans, keyp, i, e, &grey);
            uint8_t want[4];
            if (modes[m] == CT_COLOR_GRAYSCALE) {
                want[0] =
                    grey
                        ? e[0]
                        : (uint8_t)((e[0] * 19595u + e[1] * 38470u + e[2] * 7471u + 0x8000u) >> 16);
            } else {
                memcpy(want, e, 4);
            }
            for (int k = 0; k < want_c; k++)
                cr_assert_eq(img.data[i * want_c + k], want[k],
                             "%s mode %d pixel %zu channel %d: %d, expected %d", pc->name, m, i, k,
                             img.data[i * want_c + k], want[k]);
        }
        ct_image_free(&img);
    }
    free(s);
}

Test(data_image, png_every_color_type_and_depth) {
    static const png_case cases[] = {
        {"grey1", PNG_COLOR_TYPE_GRAY, 1, false, false},
        {"grey2", PNG_COLOR_TYPE_GRAY, 2, false, false},
        {"grey4", PNG_COLOR_TYPE_GRAY, 4, false, false},
        {"grey8", PNG_COLOR_TYPE_GRAY, 8, false, false},
        {"grey16", PNG_COLOR_TYPE_GRAY, 16, false, false},
        {"grey8_key", PNG_COLOR_TYPE_GRAY, 8, false, true},
        {"grey_alpha8", PNG_COLOR_TYPE_GRAY_ALPHA, 8, false, false},
        {"grey_alpha16", PNG_COLOR_TYPE_GRAY_ALPHA, 16, false, false},
        {"rgb8", PNG_COLOR_TYPE_RGB, 8, false, false},
        {"rgb16", PNG_COLOR_TYPE_RGB, 16, false, false},
        {"rgb8_key", PNG_COLOR_TYPE_RGB, 8, false, true},
        {"rgba8", PNG_COLOR_TYPE_RGB_ALPHA, 8, false, false},
        {"rgba16", PNG_COLOR_TYPE_RGB_ALPHA, 16, false, false},
        {"palette1", PNG_COLOR_TYPE_PALETTE, 1, false, false},
        {"palette2", PNG_COLOR_TYPE_PALETTE, 2, false, false},
        {"palette4", PNG_COLOR_TYPE_PALETTE, 4, false, false},
        {"palette8", PNG_COLOR_TYPE_PALETTE, 8, false, false},
        {"palette2_trns", PNG_COLOR_TYPE_PALETTE, 2, false, true},
        {"palette8_trns", PNG_COLOR_TYPE_PALETTE, 8, false, true},
        {"interlaced_rgb8", PNG_COLOR_TYPE_RGB, 8, true, false},
        {"interlaced_grey4", PNG_COLOR_TYPE_GRAY, 4, true, false},
        {"interlaced_palette8_trns", PNG_COLOR_TYPE_PALETTE, 8, true, true},
        {"interlaced_rgba16", PNG_COLOR_TYPE_RGB_ALPHA, 16, true, false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) check_png_case(&cases[i]);
}

/* ---- colour conversion against PIL ---- */

Test(data_image, rgb_to_grayscale_matches_pil) {
    size_t n;
    char *text = (char *)td_read(tu_fixture("data/color_ref.txt"), &n);
    uint8_t rgb[729 * 3], want[729];
    int count = 0;
    for (char *line = strtok(text, "\n"); line != NULL; line = strtok(NULL, "\n")) {
        unsigned r, g, b, l;
        if (sscanf(line, "rgb_to_l %u %u %u %u", &r, &g, &b, &l) != 4) continue;
        cr_assert_lt(count, 729);
        rgb[count * 3] = (uint8_t)r;
        rgb[count * 3 + 1] = (uint8_t)g;
        rgb[count * 3 + 2] = (uint8_t)b;
        want[count++] = (uint8_t)l;
    }
    free(text);
    cr_assert_eq(count, 729);
    td_write_png8(td_path(tmp, "triples.png"), rgb, 1, count, 3);
    ct_image_options o;
    ct_image_options_defaults(&o);
    o.target_h = o.target_w = 0;
    o.color_mode = CT_COLOR_GRAYSCALE;
    ct_image img;
    cr_assert_eq(ct_image_load(td_path(tmp, "triples.png"), &o, &img), CT_OK, "%s",
                 ct_last_error());
    for (int i = 0; i < count; i++)
        cr_expect_eq(img.data[i], want[i], "RGB (%d, %d, %d): L %d, PIL %d", rgb[i * 3],
                     rgb[i * 3 + 1], rgb[i * 3 + 2], img.data[i], want[i]);
    ct_image_free(&img);
}

/* ---- JPEG ---- */

Test(data_image, jpeg_matches_pillow_decode) {
    size_t n;
    char *text = (char *)td_read(tu_fixture("data/color_ref.txt"), &n);
    int checked = 0;
    for (char *line = strtok(text, "\n"); line != NULL; line = strtok(NULL, "\n")) {
        char file[64], mode[8];
        int h, w, off = 0;
        if (sscanf(line, "jpeg %63s %7s %d %d %n", file, mode, &h, &w, &off) != 4) continue;
        const int c = strcmp(mode, "L") == 0 ? 1 : 3;
        uint8_t *want = malloc((size_t)h * w * c);
        cr_assert_eq(td_unhex(line + off, want, (size_t)h * w * c), (size_t)h * w * c);
        char rel[96];
        snprintf(rel, sizeof rel, "data/%s", file);
        ct_image_options o;
        ct_image_options_defaults(&o);
        o.target_h = o.target_w = 0;
        o.color_mode = c == 1 ? CT_COLOR_GRAYSCALE : CT_COLOR_RGB;
        ct_image img;
        cr_assert_eq(ct_image_load(tu_fixture(rel), &o, &img), CT_OK, "%s", ct_last_error());
        cr_assert(img.h == h && img.w == w && img.c == c);
        /* Exact: libjpeg-turbo's islow IDCT and fancy upsampling are what Pillow uses too. */
        int d = td_max_diff(img.data, want, (size_t)h * w * c);
        cr_expect_eq(d, 0, "%s as %s differs from Pillow's decode by up to %d", file, mode, d);
        ct_image_free(&img);
        free(want);
        checked++;
    }
    free(text);
    cr_assert_eq(checked, 8, "fixture lines: %d", checked);
}

Test(data_image, jpeg_grey_rgb_cmyk_ycck_written_by_libjpeg) {
    const int h = 16, w = 24;
    uint8_t *rgb = td_pattern(h, w, 3);
    uint8_t *grey = td_pattern(h, w, 1);
    unsigned long n;
    /* Grey: rgb mode repeats the channel. */
    uint8_t *jg = td_jpeg(grey, h, w, 1, JCS_GRAYSCALE, JCS_GRAYSCALE, 95, &n);
    ct_image img;
    cr_assert_eq(ct_image_decode(jg, n, "grey.jpg", CT_COLOR_RGB, 0, &img), CT_OK, "%s",
                 ct_last_error());
    for (size_t i = 0; i < (size_t)h * w; i++)
        cr_assert(img.data[i * 3] == img.data[i * 3 + 1] && img.data[i * 3] == img.data[i * 3 + 2]);
    ct_image_free(&img);
    free(jg);
    /* RGB at quality 100 without subsampling: close to the source (JPEG is lossy). */
    uint8_t *jr = td_jpeg(rgb, h, w, 3, JCS_RGB, JCS_YCbCr, 100, &n);
    cr_assert_eq(ct_image_decode(jr, n, "rgb.jpg", CT_COLOR_RGB, 0, &img), CT_OK);
    /* Quality 100 without subsampling still rounds in YCbCr and the DCT: 3 levels measured with
     * libjpeg-turbo 2.1; 6 leaves room for other versions. */
    int d = td_max_diff(img.data, rgb, (size_t)h * w * 3);
    cr_expect_leq(d, 6, "quality-100 JPEG differs from its source by %d", d);
    ct_image_free(&img);
    free(jr);
    /* CMYK and YCCK (libjpeg writes an Adobe marker for both): PIL's inverted-CMYK rule. */
    uint8_t *cmyk = td_pattern(h, w, 4);
    uint8_t *expect = malloc((size_t)h * w * 3);
    for (size_t i = 0; i < (size_t)h * w; i++) {
        unsigned nk = cmyk[i * 4 + 3];
        for (int k = 0; k < 3; k++) {
            unsigned t = (255u - cmyk[i * 4 + k]) * nk + 128u;
            int v = (int)nk - (int)(((t >> 8) + t) >> 8);
            expect[i * 3 + k] = (uint8_t)(v < 0 ? 0 : v);
        }
    }
    unsigned long nc, ny;
    uint8_t *jc = td_jpeg(cmyk, h, w, 4, JCS_CMYK, JCS_CMYK, 100, &nc);
    uint8_t *jy = td_jpeg(cmyk, h, w, 4, JCS_CMYK, JCS_YCCK, 100, &ny);
    ct_image a, b;
    cr_assert_eq(ct_image_decode(jc, nc, "cmyk.jpg", CT_COLOR_RGB, 0, &a), CT_OK, "%s",
                 ct_last_error());
    cr_assert_eq(ct_image_decode(jy, ny, "ycck.jpg", CT_COLOR_RGB, 0, &b), CT_OK, "%s",
                 ct_last_error());
    cr_assert(a.c == 3 && b.c == 3);
    /* Lossy: compare to the rule on the source within the JPEG error at quality 100 (1 and 3
     * levels measured for CMYK and YCCK; 6 as above). */
    int da = td_max_diff(a.data, expect, (size_t)h * w * 3);
    int db = td_max_diff(b.data, expect, (size_t)h * w * 3);
    cr_expect_leq(da, 6, "CMYK JPEG: %d from PIL's rule on the source", da);
    cr_expect_leq(db, 6, "YCCK JPEG: %d from PIL's rule on the source", db);
    ct_image_free(&a);
    ct_image_free(&b);
    free(jc);
    free(jy);
    free(cmyk);
    free(expect);
    free(rgb);
    free(grey);
}

/* ---- resizing against Pillow ---- */

Test(data_image, resize_matches_pillow_every_filter) {
    static const char *const names[] = {"nearest", "bilinear", "bicubic",
                                        "lanczos", "box",      "hamming"};
    size_t n;
    char *text = (char *)td_read(tu_fixture("data/resize_ref.txt"), &n);
    int lines = 0, bad = 0;
    for (char *line = strtok(text, "\n"); line != NULL; line = strtok(NULL, "\n")) {
        if (line[0] == '#') continue;
        int c, ih, iw, oh, ow, crop, off = 0;
        char interp[16];
        float bx[4];
        if (sscanf(line, "%d %15s %d %d %d %d %d %f,%f,%f,%f %n", &c, interp, &ih, &iw, &oh, &ow,
                   &crop, &bx[0], &bx[1], &bx[2], &bx[3], &off) != 11)
            continue;
        ct_interpolation it = CT_INTERP_NEAREST;
        for (int k = 0; k < 6; k++)
            if (strcmp(interp, names[k]) == 0) it = (ct_interpolation)k;
        uint8_t *want = malloc((size_t)oh * ow * c);
        cr_assert_eq(td_unhex(line + off, want, (size_t)oh * ow * c), (size_t)oh * ow * c);
        ct_image in = {td_pattern(ih, iw, c), ih, iw, c}, out;
        if (crop) {
            float box[4];
            ct_image_crop_box(ih, iw, oh, ow, box);
            for (int k = 0; k < 4; k++)
                cr_assert_eq(box[k], bx[k], "crop box differs from Keras's");
        }
        cr_assert_eq(ct_image_resize(&in, oh, ow, it, crop ? bx : NULL, &out), CT_OK, "%s",
                     ct_last_error());
        int d = td_max_diff(out.data, want, (size_t)oh * ow * c);
        cr_expect_eq(d, 0, "%d channels, %s, %dx%d -> %dx%d%s: differs from Pillow by up to %d", c,
                     interp, ih, iw, oh, ow, crop ? " (crop)" : "", d);
        bad += d != 0;
        ct_image_free(&in);
        ct_image_free(&out);
        free(want);
        lines++;
    }
    free(text);
    cr_assert_geq(lines, 56, "only %d fixture lines", lines);
    cr_assert_eq(bad, 0);
}

Test(data_image, load_resizes_with_keep_aspect_ratio) {
    /* A 29x37 PNG through ct_image_load: same bytes as Pillow's resize with Keras's crop box. */
    uint8_t *px = td_pattern(29, 37, 3);
    td_write_png8(td_path(tmp, "p.png"), px, 29, 37, 3);
    size_t n;
    char *text = (char *)td_read(tu_fixture("data/resize_ref.txt"), &n);
    int found = 0;
    for (char *line = strtok(text, "\n"); line != NULL; line = strtok(NULL, "\n")) {
        int c, ih, iw, oh, ow, crop, off = 0;
        char interp[16];
        float bx[4];
        if (sscanf(line, "%d %15s %d %d %d %d %d %f,%f,%f,%f %n", &c, interp, &ih, &iw, &oh, &ow,
                   &crop, &bx[0], &bx[1], &bx[2], &bx[3], &off) != 11 ||
            c != 3 || !crop || strcmp(interp, "bilinear") != 0)
            continue;
        uint8_t *want = malloc((size_t)oh * ow * 3);
        td_unhex(line + off, want, (size_t)oh * ow * 3);
        ct_image_options o;
        ct_image_options_defaults(&o);
        o.target_h = oh;
        o.target_w = ow;
        o.interpolation = CT_INTERP_BILINEAR;
        o.keep_aspect_ratio = true;
        ct_image img;
        cr_assert_eq(ct_image_load(td_path(tmp, "p.png"), &o, &img), CT_OK, "%s", ct_last_error());
        cr_expect_eq(td_max_diff(img.data, want, (size_t)oh * ow * 3), 0);
        ct_image_free(&img);
        free(want);
        found++;
    }
    free(text);
    free(px);
    cr_assert_eq(found, 1);
}

Test(data_image, crop_box_follows_keras) {
    float b[4];
    /* 340x500 (h x w) to 200x200: a 340x340 crop centred along the width. */
    ct_image_crop_box(340, 500, 200, 200, b);
    cr_expect(b[0] == 80 && b[1] == 0 && b[2] == 420 && b[3] == 340, "%g %g %g %g", b[0], b[1],
              b[2], b[3]);
    /* 100x100 to 50x200 (wide): crop_height = 100*50//200 = 25, starting at 37. */
    ct_image_crop_box(100, 100, 50, 200, b);
    cr_expect(b[0] == 0 && b[1] == 37 && b[2] == 100 && b[3] == 62, "%g %g %g %g", b[0], b[1], b[2],
              b[3]);
}

/* ---- bad files ---- */

static void expect_load_error(const char *file, ct_status want, const char *text) {
    ct_image_options o;
    ct_image_options_defaults(&o);
    ct_image img;
    ct_status s = ct_image_load(file, &o, &img);
    cr_expect_eq(s, want, "%s: status %s, expected %s (%s)", file, ct_status_name(s),
                 ct_status_name(want), ct_last_error());
    cr_expect(strstr(ct_last_error(), text) != NULL, "%s: message lacks '%s': %s", file, text,
              ct_last_error());
    cr_expect(strstr(ct_last_error(), file) != NULL, "message does not name the file: %s",
              ct_last_error());
    cr_expect_null(img.data);
}

Test(data_image, bad_files_name_the_file_and_reason) {
    uint8_t *px = td_pattern(40, 50, 3);
    td_write_png8(td_path(tmp, "good.png"), px, 40, 50, 3);
    size_t n;
    uint8_t *png = td_read(td_path(tmp, "good.png"), &n);
    unsigned long jn;
    uint8_t *jpg = td_jpeg(px, 40, 50, 3, JCS_RGB, JCS_YCbCr, 90, &jn);

    char path[4096];
    snprintf(path, sizeof path, "%s", td_path(tmp, "empty.png"));
    td_write(path, "", 0);
    expect_load_error(path, CT_EFORMAT, "empty file (0 bytes)");

    snprintf(path, sizeof path, "%s", td_path(tmp, "truncated.png"));
    td_write(path, png, n / 2);
    expect_load_error(path, CT_EFORMAT, "corrupt or truncated PNG");

    /* A flipped byte inside IDAT: the chunk's CRC no longer matches. */
    uint8_t *bad = malloc(n);
    memcpy(bad, png, n);
    for (size_t i = 8; i + 8 < n; i++)
        if (memcmp(bad + i, "IDAT", 4) == 0) {
            bad[i + 10] ^= 0x5a;
            break;
        }
    snprintf(path, sizeof path, "%s", td_path(tmp, "corrupt.png"));
    td_write(path, bad, n);
    expect_load_error(path, CT_EFORMAT, "corrupt or truncated PNG");

    snprintf(path, sizeof path, "%s", td_path(tmp, "truncated.jpg"));
    td_write(path, jpg, jn / 2);
    expect_load_error(path, CT_EFORMAT, "truncated");

    snprintf(path, sizeof path, "%s", td_path(tmp, "header_only.jpg"));
    td_write(path, jpg, 20);
    expect_load_error(path, CT_EFORMAT, "corrupt or truncated JPEG");

    snprintf(path, sizeof path, "%s", td_path(tmp, "notes.png"));
    td_write(path, "hello, I am text\n", 17);
    expect_load_error(path, CT_EFORMAT, "not an image (unrecognised signature 68 65 6c");

    /* BMP, TIFF and PPM are decoded (test_data_formats.c); cut short, they are corrupt. */
    static const struct {
        const char *name, *bytes, *why;
        size_t n;
    } cut[] = {
        {"a.bmp", "BM\x36\x00\x00\x00\x00\x00", "corrupt or unsupported BMP", 8},
        {"a.tif", "II*\x00\x08\x00\x00\x00", "corrupt or truncated TIFF", 8},
        {"b.tiff", "MM\x00*\x00\x00\x00\x08", "corrupt or truncated TIFF", 8},
        {"a.ppm", "P6\n2 2\n255\n", "corrupt or truncated PPM/PGM", 11},
    };
    for (size_t i = 0; i < sizeof cut / sizeof cut[0]; i++) {
        snprintf(path, sizeof path, "%s", td_path(tmp, cut[i].name));
        td_write(path, cut[i].bytes, cut[i].n);
        expect_load_error(path, CT_EFORMAT, cut[i].why);
    }
    snprintf(path, sizeof path, "%s", td_path(tmp, "plain.ppm"));
    td_write(path, "P3\n1 1\n255\n1 2 3\n", 17);
    expect_load_error(path, CT_EUNSUPPORTED, "only binary P5 and P6 are read");
    snprintf(path, sizeof path, "%s", td_path(tmp, "deep.ppm"));
    td_write(path, "P5\n1 1\n65535\n\1\2", 15);
    expect_load_error(path, CT_EUNSUPPORTED, "maxval other than 255");

    static const struct {
        const char *name, *bytes, *fmt;
        size_t n;
    } unsupported[] = {
        {"a.gif", "GIF89a\x01\x00", "(GIF)", 8},
        {"a.webp", "RIFF\x10\x00\x00\x00WEBPVP8 ", "(WebP)", 16},
    };
    for (size_t i = 0; i < sizeof unsupported / sizeof unsupported[0]; i++) {
        snprintf(path, sizeof path, "%s", td_path(tmp, unsupported[i].name));
        td_write(path, unsupported[i].bytes, unsupported[i].n);
        char want[64];
        snprintf(want, sizeof want, "unsupported format %s: convert to PNG or JPEG",
                 unsupported[i].fmt);
        expect_load_error(path, CT_EUNSUPPORTED, want);
    }

    snprintf(path, sizeof path, "%s/missing.png", tmp);
    expect_load_error(path, CT_ENOTFOUND, "cannot open");

    snprintf(path, sizeof path, "%s", td_path(tmp, "adir.png/x"));
    mkdir(path, 0755);
    snprintf(path, sizeof path, "%s/adir.png", tmp);
    expect_load_error(path, CT_EIO, "not a regular file");

    free(bad);
    free(png);
    free(jpg);
    free(px);
}

Test(data_image, decompression_bomb_is_refused_from_the_header) {
    /* A PNG header claiming 100000x100000 (10 Gpx) and no pixel data: the guard must fire
     * before anything of that size is allocated. */
    char path[4096];
    snprintf(path, sizeof path, "%s", td_path(tmp, "bomb.png"));
    FILE *f = fopen(path, "wb");
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    png_set_user_limits(png, 0x7fffffff, 0x7fffffff);
    png_init_io(png, f);
    png_set_IHDR(png, info, 100000, 100000, 8, PNG_COLOR_TYPE_GRAY, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    png_destroy_write_struct(&png, &info);
    fclose(f);
    expect_load_error(path, CT_EFORMAT, "exceeds the 64.0 Mpx limit");

    /* A JPEG whose frame header says 60000x60000. */
    uint8_t *px = td_pattern(8, 8, 3);
    unsigned long jn;
    uint8_t *jpg = td_jpeg(px, 8, 8, 3, JCS_RGB, JCS_YCbCr, 90, &jn);
    for (unsigned long i = 0; i + 9 < jn; i++)
        if (jpg[i] == 0xff && jpg[i + 1] == 0xc0) {
            jpg[i + 5] = 0xea, jpg[i + 6] = 0x60; /* height 60000 */
            jpg[i + 7] = 0xea, jpg[i + 8] = 0x60; /* width 60000 */
            break;
        }
    snprintf(path, sizeof path, "%s", td_path(tmp, "bomb.jpg"));
    td_write(path, jpg, jn);
    expect_load_error(path, CT_EFORMAT, "60000x60000");

    /* The limit is configurable: a 40x50 image against 1000 pixels. */
    td_write_png8(td_path(tmp, "small.png"), px, 8, 8, 3);
    ct_image_options o;
    ct_image_options_defaults(&o);
    o.max_pixels = 63;
    ct_image img;
    cr_expect_eq(ct_image_load(td_path(tmp, "small.png"), &o, &img), CT_EFORMAT);
    cr_expect(strstr(ct_last_error(), "exceeds") != NULL, "%s", ct_last_error());
    o.max_pixels = 64;
    o.target_h = o.target_w = 0;
    cr_expect_eq(ct_image_load(td_path(tmp, "small.png"), &o, &img), CT_OK, "%s", ct_last_error());
    ct_image_free(&img);
    free(jpg);
    free(px);
}

Test(data_image, bad_arguments) {
    ct_image in = {td_pattern(4, 4, 3), 4, 4, 3}, out;
    cr_expect_eq(ct_image_resize(&in, 0, 4, CT_INTERP_BILINEAR, NULL, &out), CT_EINVAL);
    cr_expect_eq(ct_image_resize(&in, 4, 4, (ct_interpolation)42, NULL, &out), CT_EINVAL);
    const float box[4] = {0, 0, 5, 4};
    cr_expect_eq(ct_image_resize(&in, 2, 2, CT_INTERP_BOX, box, &out), CT_EINVAL);
    cr_expect(strstr(ct_last_error(), "outside") != NULL, "%s", ct_last_error());
    ct_image_options o;
    ct_image_options_defaults(&o);
    o.target_w = 0;
    cr_expect_eq(ct_image_load("x.png", &o, &out), CT_EINVAL);
    ct_image_free(&in);
}
