/* Augmentation and preprocessing: preprocess_input bit-exact against Keras's NumPy arithmetic,
 * the affine resampling against scipy.ndimage.affine_transform (every fill mode, orders 0 and
 * 1, the same matrix), exact geometry for known transforms (90/180-degree rotations, integer
 * shifts, flips), channel shift and brightness against Keras+PIL, the random draws' addressing
 * and distributions, standardisation, and the parsers of Keras's argument text. */
#include "test_data_util.h"

#include <math.h>

#include "data/data.h"

TestSuite(data_augment, .timeout = 120);

static uint32_t f2u(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static float u2f(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

Test(data_augment, preprocess_input_is_bit_exact_with_keras) {
    size_t n;
    char *text = (char *)td_read(tu_fixture("data/preprocess_ref.txt"), &n);
    int lines = 0;
    for (char *line = strtok(text, "\n"); line != NULL; line = strtok(NULL, "\n")) {
        char mode[8];
        int idx;
        unsigned in[3], out[3];
        if (sscanf(line, "%7s %d %x %x %x %x %x %x", mode, &idx, &in[0], &in[1], &in[2], &out[0],
                   &out[1], &out[2]) != 8)
            continue;
        ct_preprocess_mode m;
        cr_assert_eq(ct_parse_preprocess(mode, &m), CT_OK);
        float px[3] = {u2f(in[0]), u2f(in[1]), u2f(in[2])};
        ct_preprocess_input(px, 1, 3, m);
        for (int k = 0; k < 3; k++)
            cr_expect_eq(f2u(px[k]), out[k], "%s pixel %d channel %d: %.9g, Keras %.9g", mode, idx,
                         k, px[k], u2f(out[k]));
        lines++;
    }
    free(text);
    cr_assert_eq(lines, 600);
    /* caffe swaps to BGR: R=255, G=0, B=0 becomes (-103.939, -116.779, 131.32). */
    float px[3] = {255.0f, 0.0f, 0.0f};
    ct_preprocess_input(px, 1, 3, CT_PREPROCESS_CAFFE);
    cr_expect(px[0] == 0.0f - 103.939f && px[1] == -116.779f && px[2] == 255.0f - 123.68f);
}

/* ---- affine resampling vs scipy ---- */

static float pattern_f32(int y, int x, int ch) {
    return (float)(((y * 7 + x * 3 + ch * 5) % 23) * 11.0 + ((y * x) % 3) * 0.25);
}

Test(data_augment, affine_matches_scipy_every_fill_mode_and_order) {
    const int h = 13, w = 11, c = 2;
    float img[13 * 11 * 2], out[2];
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int k = 0; k < c; k++) img[(y * w + x) * c + k] = pattern_f32(y, x, k);
    size_t n;
    char *text = (char *)td_read(tu_fixture("data/affine_ref.txt"), &n);
    int cases = 0;
    double worst = 0.0;
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save)) {
        if (line[0] == '#') continue;
        char name[32], mode[16];
        int order, off = 0;
        float cval;
        ct_augment_params p = {0};
        if (sscanf(line, "%31s %15s %d %f %f %f %f %f %f %f | %n", name, mode, &order, &cval,
                   &p.theta, &p.tx, &p.ty, &p.shear, &p.zx, &p.zy, &off) != 10)
            continue;
        ct_fill_mode fill;
        cr_assert_eq(ct_parse_fill_mode(mode, &fill), CT_OK);
        char *q = line + off;
        double mref[6];
        for (int k = 0; k < 6; k++) mref[k] = strtod(q, &q);
        while (*q == ' ' || *q == '|') q++;
        float m[6];
        ct_augment_matrix(&p, h, w, m);
        /* The matrix is built in double and stored in float: agreement to float rounding. */
        for (int k = 0; k < 6; k++)
            cr_expect(fabs(m[k] - mref[k]) <= 1e-6 * fmax(1.0, fabs(mref[k])),
                      "%s: m[%d] = %.9g, NumPy %.9g", name, k, m[k], mref[k]);
        int mismatches = 0;
        for (int r = 0; r < h; r++)
            for (int col = 0; col < w; col++) {
                ct_augment_affine_pixel(out, img, h, w, c, m, r, col, fill, cval, order == 0);
                for (int k = 0; k < c; k++) {
                    double want = strtod(q, &q);
                    double d = fabs(out[k] - want);
                    if (d > worst) worst = d;
                    /* Float coordinates against scipy's double: interpolation weights agree to
                     * ~1e-6, values (0..253) to 2.6e-4 measured; 2e-3 leaves room. */
                    if (d > 2e-3) {
                        mismatches++;
                        cr_expect(d <= 2e-3, "%s %s order %d at (%d, %d, %d): %.6g, scipy %.6g",
                                  name, mode, order, r, col, k, out[k], want);
                    }
                }
            }
        cr_expect_eq(mismatches, 0);
        cases++;
    }
    free(text);
    cr_assert_eq(cases, 28, "fixture cases: %d", cases);
    cr_log_info("worst difference from scipy: %.3g", worst);
}

/* Output (r, c) read from input (sr, sc) for every pixel: an exact known transform. */
static void expect_mapping(const ct_augment_params *p, const ct_augment_config *cfg, int h, int w,
                           void (*src)(int r, int c, int h, int w, int *sr, int *sc),
                           const char *what) {
    const int c = 3;
    float *in = malloc((size_t)h * w * c * sizeof *in),
          *out = malloc((size_t)h * w * c * sizeof *out);
    for (int i = 0; i < h * w * c; i++) in[i] = (float)((i * 37) % 251);
    ct_augment_image(out, in, h, w, c, cfg, p);
    for (int r = 0; r < h; r++)
        for (int q = 0; q < w; q++) {
            int sr, sc;
            src(r, q, h, w, &sr, &sc);
            for (int k = 0; k < c; k++) {
                float want = (sr < 0 || sr >= h || sc < 0 || sc >= w)
                                 ? cfg->cval
                                 : in[((size_t)sr * w + sc) * c + k];
                /* cos(90 degrees) is 6e-17, not 0: bilinear weights of 1 - 1e-16. */
                cr_expect(fabsf(out[((size_t)r * w + q) * c + k] - want) <= 1e-3f,
                          "%s: (%d, %d, %d) = %g, expected %g", what, r, q, k,
                          out[((size_t)r * w + q) * c + k], want);
            }
        }
    free(in);
    free(out);
}

static void rot90_src(int r, int c, int h, int w, int *sr, int *sc) {
    (void)h;
    *sr = (w - 1) - c; /* input = R(90) (out - centre) + centre on a square image */
    *sc = r;
}
static void rot180_src(int r, int c, int h, int w, int *sr, int *sc) {
    *sr = h - 1 - r;
    *sc = w - 1 - c;
}
static void shift_src(int r, int c, int h, int w, int *sr, int *sc) {
    (void)h, (void)w;
    *sr = r + 2;
    *sc = c - 3;
}
static void hflip_src(int r, int c, int h, int w, int *sr, int *sc) {
    (void)h;
    *sr = r;
    *sc = w - 1 - c;
}
static void vflip_src(int r, int c, int h, int w, int *sr, int *sc) {
    (void)w;
    *sr = h - 1 - r;
    *sc = c;
}

Test(data_augment, known_transforms_are_exact) {
    ct_augment_config cfg = {0};
    cfg.fill_mode = CT_FILL_CONSTANT;
    cfg.cval = -7.0f;
    ct_augment_params p = {.zx = 1, .zy = 1};
    p.theta = 90.0f;
    expect_mapping(&p, &cfg, 8, 8, rot90_src, "rotation by 90 degrees");
    p.theta = 180.0f;
    expect_mapping(&p, &cfg, 5, 7, rot180_src, "rotation by 180 degrees");
    p.theta = 0.0f;
    p.tx = 2.0f;  /* rows */
    p.ty = -3.0f; /* columns */
    expect_mapping(&p, &cfg, 9, 10, shift_src, "integer shift");
    p.tx = p.ty = 0.0f;
    p.flip_h = true;
    expect_mapping(&p, &cfg, 6, 9, hflip_src, "horizontal flip");
    p.flip_h = false;
    p.flip_v = true;
    expect_mapping(&p, &cfg, 6, 9, vflip_src, "vertical flip");
    /* Zoom 2 about the centre of a 5-pixel side reads (r - 2) * 2 + 2 = 2r - 2. */
    ct_augment_params z = {.zx = 2.0f, .zy = 1.0f};
    float m[6];
    ct_augment_matrix(&z, 5, 5, m);
    cr_expect(m[0] == 2.0f && m[2] == -2.0f && m[4] == 1.0f && m[5] == 0.0f);
}

Test(data_augment, channel_shift_and_brightness_follow_keras) {
    /* Channel shift: one intensity on every channel, clipped to the image's own range. */
    ct_augment_config cfg = {0};
    ct_augment_params p = {.zx = 1, .zy = 1, .channel_shift = true, .channel_shift_intensity = 30};
    const float in[6] = {10, 50, 100, 200, 230, 250};
    float out[6];
    ct_augment_image(out, in, 1, 2, 3, &cfg, &p);
    const float want[6] = {40, 80, 130, 230, 250, 250};
    for (int i = 0; i < 6; i++) cr_expect_eq(out[i], want[i], "channel shift [%d]: %g", i, out[i]);

    /* Brightness against Keras 3 apply_brightness_shift(scale=False) with PIL. */
    size_t n;
    char *text = (char *)td_read(tu_fixture("data/brightness_ref.txt"), &n);
    const int h = 5, w = 7, c = 3;
    float inside[105], outside[105], res[105];
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int k = 0; k < c; k++) {
                float v = (float)((double)((y * 7 + x * 13 + k * 29) % 256) + 0.37 * ((x + k) % 3));
                if (v > 255.0f) v = 255.0f;
                inside[(y * w + x) * c + k] = v;
                outside[(y * w + x) * c + k] = v * 1.3f - 40.0f;
            }
    int lines = 0;
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save)) {
        char name[16];
        float factor;
        int off = 0;
        if (sscanf(line, "%15s %f | %n", name, &factor, &off) != 2 || off == 0) continue;
        ct_augment_params bp = {.zx = 1, .zy = 1, .brightness = true, .brightness_factor = factor};
        const float *src = strcmp(name, "inside") == 0 ? inside : outside;
        ct_augment_image(res, src, h, w, c, &cfg, &bp);
        char *q = line + off;
        for (int i = 0; i < 105; i++) {
            float want_v = strtof(q, &q);
            cr_expect(fabsf(res[i] - want_v) <= 1e-4f * fmaxf(1.0f, fabsf(want_v)),
                      "brightness %s x%g [%d]: %.9g, Keras %.9g", name, factor, i, res[i], want_v);
        }
        lines++;
    }
    free(text);
    cr_assert_eq(lines, 10);
}

/* ---- random draws ---- */

Test(data_augment, draws_are_addressed_and_distributed_as_keras) {
    ct_augment_config cfg = {0};
    cfg.rotation_range = 20.0f;
    cfg.height_shift = (ct_shift_range){CT_SHIFT_FRACTION, 0.1f};
    cfg.width_shift = (ct_shift_range){CT_SHIFT_CHOICE, 4.0f};
    cfg.shear_range = 10.0f;
    cfg.zoom_lo = 0.8f;
    cfg.zoom_hi = 1.2f;
    cfg.channel_shift_range = 15.0f;
    cfg.brightness_lo = 0.5f;
    cfg.brightness_hi = 1.5f;
    cfg.horizontal_flip = cfg.vertical_flip = true;
    const uint64_t seed = 1234;
    /* The documented address: ct_rng_word(seed, CT_RNG_AUGMENT << 16, epoch, sample, draw). */
    ct_augment_params p = ct_augment_draw(&cfg, seed, 3, 17, 100, 80);
    float u =
        ct_rng_unit(ct_rng_word(seed, (uint32_t)CT_RNG_AUGMENT << 16, 3, 17, CT_AUG_DRAW_THETA));
    cr_expect_eq(p.theta, -20.0f + 40.0f * u);
    u = ct_rng_unit(ct_rng_word(seed, (uint32_t)CT_RNG_AUGMENT << 16, 3, 17, CT_AUG_DRAW_ZY));
    cr_expect_eq(p.zy, 0.8f + 0.4f * u);
    ct_augment_params again = ct_augment_draw(&cfg, seed, 3, 17, 100, 80);
    cr_expect(p.theta == again.theta && p.tx == again.tx && p.ty == again.ty &&
                  p.shear == again.shear && p.zx == again.zx && p.zy == again.zy &&
                  p.flip_h == again.flip_h && p.flip_v == again.flip_v &&
                  p.channel_shift_intensity == again.channel_shift_intensity &&
                  p.brightness_factor == again.brightness_factor,
              "same address, same parameters");

    int hflips = 0, vflips = 0, seen[7] = {0};
    const int N = 20000;
    for (int s = 0; s < N; s++) {
        ct_augment_params q = ct_augment_draw(&cfg, seed, 0, (uint32_t)s, 100, 80);
        cr_assert(q.theta >= -20.0f && q.theta < 20.0f);
        cr_assert(fabsf(q.tx) <= 0.1f * 100.0f, "height shift %g outside 0.1 * 100 rows", q.tx);
        cr_assert(q.ty == floorf(q.ty) && fabsf(q.ty) <= 3.0f, "width shift %g not in -3..3", q.ty);
        seen[(int)q.ty + 3]++;
        cr_assert(q.shear >= -10.0f && q.shear < 10.0f);
        cr_assert(q.zx >= 0.8f && q.zx < 1.2f && q.zy >= 0.8f && q.zy < 1.2f);
        cr_assert(q.channel_shift && fabsf(q.channel_shift_intensity) <= 15.0f);
        cr_assert(q.brightness && q.brightness_factor >= 0.5f && q.brightness_factor < 1.5f);
        hflips += q.flip_h;
        vflips += q.flip_v;
    }
    /* p = 0.5: over 20000 draws the standard deviation is 0.0035; 0.03 is over 8 of them. */
    cr_expect(fabs(hflips / (double)N - 0.5) < 0.03, "horizontal flips %d of %d", hflips, N);
    cr_expect(fabs(vflips / (double)N - 0.5) < 0.03, "vertical flips %d of %d", vflips, N);
    /* Keras's int range n: k in 0..n-1 times a sign; 0 comes from both signs. */
    for (int v = 0; v < 7; v++)
        cr_expect_gt(seen[v], N / 20, "shift %d drawn %d times", v - 3, seen[v]);
    cr_expect(seen[3] > seen[0] * 3 / 2, "0 should be about twice as likely as +-3");

    /* A different epoch or sample draws differently; flips off never flip. */
    ct_augment_params e1 = ct_augment_draw(&cfg, seed, 4, 17, 100, 80);
    cr_expect_neq(e1.theta, p.theta);
    ct_augment_config off = {0};
    cr_expect(!ct_augment_enabled(&off));
    ct_augment_params none = ct_augment_draw(&off, seed, 0, 0, 10, 10);
    cr_expect(!ct_augment_has_affine(&none) && !none.flip_h && !none.flip_v &&
              !none.channel_shift && !none.brightness);
    /* A pixel range >= 1 is in pixels, whatever the side. */
    ct_augment_config px = {0};
    px.width_shift = (ct_shift_range){CT_SHIFT_PIXELS, 5.0f};
    for (int s = 0; s < 1000; s++) {
        ct_augment_params q = ct_augment_draw(&px, seed, 0, (uint32_t)s, 1000, 1000);
        cr_assert(fabsf(q.ty) <= 5.0f);
    }
}

/* ---- standardisation ---- */

Test(data_augment, standardize_in_keras_order) {
    float x[6] = {0, 51, 102, 153, 204, 255};
    ct_standardize s = {
        .rescale = 1.0f / 255.0f, .samplewise_center = true, .samplewise_std_normalization = true};
    ct_standardize_image(x, 1, 2, 3, &s);
    /* After rescale: 0, .2, .4, .6, .8, 1; mean .5, population std sqrt(0.1166...). */
    const double sd = sqrt(((0.25 + 0.09 + 0.01) * 2) / 6.0);
    for (int i = 0; i < 6; i++)
        cr_expect(fabs(x[i] - (i * 0.2 - 0.5) / (sd + 1e-6)) < 1e-5, "x[%d] = %g", i, x[i]);
    float y[6] = {10, 20, 30, 40, 50, 60};
    ct_standardize f = {.featurewise_center = true,
                        .featurewise_std_normalization = true,
                        .mean = {25, 35, 45},
                        .std = {15, 15, 15}};
    ct_standardize_image(y, 1, 2, 3, &f);
    cr_expect(fabsf(y[0] - (-15.0f / (15.0f + 1e-6f))) < 1e-6f && fabsf(y[5] - 1.0f) < 1e-5f);
    cr_expect_eq(ct_standardize_check(&(ct_standardize){.preprocess = CT_PREPROCESS_CAFFE}, 1),
                 CT_EINVAL);
    cr_expect(strstr(ct_last_error(), "3-channel") != NULL, "%s", ct_last_error());
    cr_expect_eq(ct_standardize_check(&(ct_standardize){.preprocess = CT_PREPROCESS_TF}, 1), CT_OK);
    ct_standardize nanmean = {.featurewise_center = true, .mean = {NAN, 0, 0}};
    cr_expect_eq(ct_standardize_check(&nanmean, 3), CT_EINVAL);
}

/* ---- Keras argument text ---- */

Test(data_augment, parsers_follow_keras_types) {
    ct_shift_range r;
    cr_assert_eq(ct_parse_shift_range("0.1", &r), CT_OK);
    cr_expect(r.kind == CT_SHIFT_FRACTION && r.value == 0.1f);
    cr_assert_eq(ct_parse_shift_range("12.0", &r), CT_OK);
    cr_expect(r.kind == CT_SHIFT_PIXELS && r.value == 12.0f);
    cr_assert_eq(ct_parse_shift_range("12", &r), CT_OK);
    cr_expect(r.kind == CT_SHIFT_CHOICE && r.value == 12.0f);
    cr_expect_eq(ct_parse_shift_range("-1", &r), CT_EINVAL);
    cr_expect_eq(ct_parse_shift_range("lots", &r), CT_EINVAL);
    float lo, hi;
    cr_assert_eq(ct_parse_zoom_range("0.2", &lo, &hi), CT_OK);
    cr_expect(lo == 1.0f - 0.2f && hi == 1.0f + 0.2f);
    cr_assert_eq(ct_parse_zoom_range("0.7,1.1", &lo, &hi), CT_OK);
    cr_expect(lo == 0.7f && hi == 1.1f);
    cr_expect_eq(ct_parse_zoom_range("1.5", &lo, &hi), CT_EINVAL);
    cr_expect_eq(ct_parse_zoom_range("0,1", &lo, &hi), CT_EINVAL);
    cr_expect_eq(ct_parse_range("1.2,0.8", &lo, &hi), CT_EINVAL);
    ct_fill_mode fm;
    cr_expect_eq(ct_parse_fill_mode("reflect", &fm), CT_OK);
    cr_expect_eq(fm, CT_FILL_REFLECT);
    cr_expect_eq(ct_parse_fill_mode("mirror", &fm), CT_EINVAL);
    ct_interpolation it;
    cr_expect_eq(ct_parse_interpolation("area", &it), CT_OK);
    cr_expect_eq(it, CT_INTERP_BOX);
    ct_na_policy na;
    float v = 0;
    cr_expect_eq(ct_parse_na_policy("ffill", &na, &v), CT_OK);
    cr_expect_eq(na, CT_NA_FFILL);
    cr_expect_eq(ct_parse_na_policy("39.5", &na, &v), CT_OK);
    cr_expect(na == CT_NA_VALUE && v == 39.5f);
    cr_expect_eq(ct_parse_na_policy("bfill", &na, &v), CT_EINVAL);
    ct_class_mode cm;
    cr_expect_eq(ct_parse_class_mode("sparse", &cm), CT_OK);
    cr_expect_eq(cm, CT_CLASS_SPARSE);
    ct_color_mode col;
    cr_expect_eq(ct_parse_color_mode("grey", &col), CT_EINVAL);
}
