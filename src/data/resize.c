/* Resizing uint8 images as PIL's Image.resize does, so images match Keras's load_img.
 *
 * nearest: PIL's ImagingScaleAffine - source column floor(x0 + (x + 0.5) * scale), with the
 * position accumulated by repeated addition in double exactly as PIL does (the closed form can
 * differ in the last bit and pick the neighbouring pixel).
 * bilinear, bicubic, lanczos, box, hamming: PIL's ImagingResample - a separable convolution whose
 * support grows with the shrink factor (so shrinking is antialiased), coefficients normalised in
 * double and rounded to 22-bit fixed point, horizontal pass first over the rows the vertical pass
 * needs, each pass rounding and clipping to uint8.
 * RGBA with a filter other than nearest is resized premultiplied (PIL converts RGBA to RGBa and
 * back). The keep_aspect_ratio crop is PIL's box argument computed as Keras does. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define PRECISION_BITS (32 - 8 - 2)

typedef struct filter {
    double (*fn)(double x);
    double support;
} filter;

static double box_filter(double x) { return (x > -0.5 && x <= 0.5) ? 1.0 : 0.0; }

static double bilinear_filter(double x) {
    if (x < 0.0) x = -x;
    return x < 1.0 ? 1.0 - x : 0.0;
}

static double hamming_filter(double x) {
    const double pi = 3.14159265358979323846;
    if (x < 0.0) x = -x;
    if (x == 0.0) return 1.0;
    if (x >= 1.0) return 0.0;
    x = x * pi;
    return sin(x) / x * (0.54f + 0.46f * cos(x));
}

static double bicubic_filter(double x) {
    const double a = -0.5;
    if (x < 0.0) x = -x;
    if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
    if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
    return 0.0;
}

static double sinc_filter(double x) {
    const double pi = 3.14159265358979323846;
    if (x == 0.0) return 1.0;
    x = x * pi;
    return sin(x) / x;
}

static double lanczos_filter(double x) {
    if (-3.0 <= x && x < 3.0) return sinc_filter(x) * sinc_filter(x / 3);
    return 0.0;
}

static const filter FILTERS[] = {
    [CT_INTERP_BILINEAR] = {bilinear_filter, 1.0}, [CT_INTERP_BICUBIC] = {bicubic_filter, 2.0},
    [CT_INTERP_LANCZOS] = {lanczos_filter, 3.0},   [CT_INTERP_BOX] = {box_filter, 0.5},
    [CT_INTERP_HAMMING] = {hamming_filter, 1.0},
};

/* PIL's precompute_coeffs + normalize_coeffs_8bpc: for each output position, the first input
 * index, the tap count, and ksize fixed-point weights. Returns ksize, or 0 when out of memory. */
static int coeffs(int in_size, float in0, float in1, int out_size, const filter *f,
                  int **bounds_out, int32_t **kk_out) {
    double scale = (double)(in1 - in0) / out_size, filterscale = scale;
    if (filterscale < 1.0) filterscale = 1.0;
    const double support = f->support * filterscale;
    const int ksize = (int)ceil(support) * 2 + 1;
    double *k = malloc((size_t)ksize * sizeof *k);
    int32_t *kk = malloc((size_t)out_size * ksize * sizeof *kk);
    int *bounds = malloc((size_t)out_size * 2 * sizeof *bounds);
    if (k == NULL || kk == NULL || bounds == NULL) {
        free(k);
        free(kk);
        free(bounds);
        return 0;
    }
    for (int xx = 0; xx < out_size; xx++) {
        const double center = in0 + (xx + 0.5) * scale, ss = 1.0 / filterscale;
        double ww = 0.0;
        int xmin = (int)(center - support + 0.5);
        if (xmin < 0) xmin = 0;
        int xmax = (int)(center + support + 0.5);
        if (xmax > in_size) xmax = in_size;
        xmax -= xmin;
        for (int x = 0; x < xmax; x++) {
            double wgt = f->fn((x + xmin - center + 0.5) * ss);
            k[x] = wgt;
            ww += wgt;
        }
        for (int x = 0; x < xmax; x++)
            if (ww != 0.0) k[x] /= ww;
        for (int x = 0; x < ksize; x++) {
            double v = x < xmax ? k[x] : 0.0;
            kk[(size_t)xx * ksize + x] = v < 0 ? (int32_t)(-0.5 + v * (1 << PRECISION_BITS))
                                               : (int32_t)(0.5 + v * (1 << PRECISION_BITS));
        }
        bounds[xx * 2] = xmin;
        bounds[xx * 2 + 1] = xmax;
    }
    free(k);
    *bounds_out = bounds;
    *kk_out = kk;
    return ksize;
}

static inline uint8_t clip8(int32_t v) {
    v >>= PRECISION_BITS;
    return (uint8_t)(v < 0 ? 0 : (v > 255 ? 255 : v));
}

/* Horizontal pass over rows [y0, y0 + rows) of `in` (in_w wide) into `out` (out_w wide). */
static void pass_horizontal(uint8_t *out, int out_w, const uint8_t *in, int in_w, int y0, int rows,
                            int c, int ksize, const int *bounds, const int32_t *kk) {
    for (int y = 0; y < rows; y++) {
        const uint8_t *src = in + (size_t)(y + y0) * in_w * c;
        uint8_t *dst = out + (size_t)y * out_w * c;
        for (int xx = 0; xx < out_w; xx++) {
            const int xmin = bounds[xx * 2], xmax = bounds[xx * 2 + 1];
            const int32_t *k = kk + (size_t)xx * ksize;
            for (int ch = 0; ch < c; ch++) {
                int32_t ss = 1 << (PRECISION_BITS - 1);
                for (int x = 0; x < xmax; x++) ss += src[(size_t)(x + xmin) * c + ch] * k[x];
                dst[(size_t)xx * c + ch] = clip8(ss);
            }
        }
    }
}

/* Vertical pass: `in` is w wide; output rows use bounds relative to `in`'s first row. */
static void pass_vertical(uint8_t *out, int out_h, const uint8_t *in, int w, int c, int ksize,
                          const int *bounds, const int32_t *kk) {
    const size_t stride = (size_t)w * c;
    for (int yy = 0; yy < out_h; yy++) {
        const int ymin = bounds[yy * 2], ymax = bounds[yy * 2 + 1];
        const int32_t *k = kk + (size_t)yy * ksize;
        uint8_t *dst = out + (size_t)yy * stride;
        for (size_t i = 0; i < stride; i++) {
            int32_t ss = 1 << (PRECISION_BITS - 1);
            for (int y = 0; y < ymax; y++) ss += in[(size_t)(y + ymin) * stride + i] * k[y];
            dst[i] = clip8(ss);
        }
    }
}

static ct_status resample(const uint8_t *in, int in_h, int in_w, int c, int h, int w,
                          const filter *f, const float box[4], uint8_t *out) {
    const bool need_h = w != in_w || box[0] != 0.0f || box[2] != (float)w;
    const bool need_v = h != in_h || box[1] != 0.0f || box[3] != (float)h;
    int *bh = NULL, *bv = NULL;
    int32_t *kh = NULL, *kv = NULL;
    uint8_t *tmp = NULL;
    ct_status s = CT_OK;
    const int ksh = coeffs(in_w, box[0], box[2], w, f, &bh, &kh);
    const int ksv = coeffs(in_h, box[1], box[3], h, f, &bv, &kv);
    if (ksh == 0 || ksv == 0) {
        s = ct_error(CT_ENOMEM, "cannot allocate resampling coefficients for %dx%d", w, h);
        goto done;
    }
    const int first = bv[0], last = bv[(h - 1) * 2] + bv[(h - 1) * 2 + 1];
    const uint8_t *src = in;
    int src_w = in_w;
    if (need_h) {
        for (int i = 0; i < h; i++) bv[i * 2] -= first;
        tmp = malloc((size_t)(last - first) * w * c + 1);
        if (tmp == NULL) {
            s = ct_error(CT_ENOMEM, "cannot allocate a %dx%d resampling buffer", w, last - first);
            goto done;
        }
        pass_horizontal(tmp, w, in, in_w, first, last - first, c, ksh, bh, kh);
        src = tmp;
        src_w = w;
    }
    if (need_v)
        pass_vertical(out, h, src, src_w, c, ksv, bv, kv);
    else if (need_h)
        memcpy(out, tmp, (size_t)h * w * c);
    else
        memcpy(out, in, (size_t)h * w * c);
done:
    free(bh);
    free(bv);
    free(kh);
    free(kv);
    free(tmp);
    return s;
}

static ct_status nearest(const uint8_t *in, int in_w, int c, int h, int w, const float box[4],
                         uint8_t *out) {
    const double ax = (double)(box[2] - box[0]) / w, ay = (double)(box[3] - box[1]) / h;
    int *xin = malloc((size_t)w * sizeof *xin);
    if (xin == NULL) return ct_error(CT_ENOMEM, "cannot allocate a %d-entry index table", w);
    double xo = box[0] + ax * 0.5;
    for (int x = 0; x < w; x++) {
        xin[x] = xo < 0.0 ? -1 : (int)xo;
        xo += ax;
    }
    double yo = box[1] + ay * 0.5;
    for (int y = 0; y < h; y++) {
        const int yi = yo < 0.0 ? -1 : (int)yo;
        uint8_t *dst = out + (size_t)y * w * c;
        for (int x = 0; x < w; x++) {
            if (yi < 0 || xin[x] < 0) {
                memset(dst + (size_t)x * c, 0, (size_t)c);
                continue;
            }
            memcpy(dst + (size_t)x * c, in + ((size_t)yi * in_w + xin[x]) * c, (size_t)c);
        }
        yo += ay;
    }
    free(xin);
    return CT_OK;
}

void ct_image_crop_box(int in_h, int in_w, int h, int w, float box[4]) {
    /* Keras load_img(keep_aspect_ratio=True), in integers. */
    long crop_h = (long)in_w * h / w, crop_w = (long)in_h * w / h;
    if (crop_h > in_h) crop_h = in_h;
    if (crop_w > in_w) crop_w = in_w;
    long y0 = (in_h - crop_h) / 2, x0 = (in_w - crop_w) / 2;
    box[0] = (float)x0;
    box[1] = (float)y0;
    box[2] = (float)(x0 + crop_w);
    box[3] = (float)(y0 + crop_h);
}

ct_status ct_image_resize(const ct_image *in, int h, int w, ct_interpolation interp,
                          const float box_in[4], ct_image *out) {
    memset(out, 0, sizeof *out);
    if (h <= 0 || w <= 0 || in->h <= 0 || in->w <= 0)
        return ct_error(CT_EINVAL, "cannot resize %dx%d to %dx%d", in->w, in->h, w, h);
    if ((unsigned)interp > CT_INTERP_HAMMING)
        return ct_error(CT_EINVAL, "unknown interpolation %d", (int)interp);
    float box[4] = {0.0f, 0.0f, (float)in->w, (float)in->h};
    if (box_in != NULL) {
        memcpy(box, box_in, sizeof box);
        if (box[0] < 0 || box[1] < 0 || box[2] > in->w || box[3] > in->h || box[2] < box[0] ||
            box[3] < box[1])
            return ct_error(CT_EINVAL, "resize box (%g, %g, %g, %g) is outside the %dx%d image",
                            box[0], box[1], box[2], box[3], in->w, in->h);
    }
    const int c = in->c;
    out->data = malloc((size_t)h * w * c);
    if (out->data == NULL) return ct_error(CT_ENOMEM, "cannot allocate a %dx%d image", w, h);
    out->h = h;
    out->w = w;
    out->c = c;
    if (interp == CT_INTERP_NEAREST) {
        ct_status s = nearest(in->data, in->w, c, h, w, box, out->data);
        if (s != CT_OK) ct_image_free(out);
        return s;
    }
    const uint8_t *src = in->data;
    uint8_t *pre = NULL;
    if (c == 4) {
        /* PIL resizes RGBA premultiplied (RGBa) and converts back. */
        const size_t np = (size_t)in->h * in->w;
        pre = malloc(np * 4);
        if (pre == NULL) {
            ct_image_free(out);
            return ct_error(CT_ENOMEM, "cannot allocate a %dx%d image", in->w, in->h);
        }
        for (size_t i = 0; i < np; i++) {
            const uint8_t *p = src + i * 4;
            for (int k = 0; k < 3; k++) pre[i * 4 + k] = (uint8_t)ct_data_muldiv255(p[k], p[3]);
            pre[i * 4 + 3] = p[3];
        }
        src = pre;
    }
    ct_status s = resample(src, in->h, in->w, c, h, w, &FILTERS[interp], box, out->data);
    free(pre);
    if (s != CT_OK) {
        ct_image_free(out);
        return s;
    }
    if (c == 4) {
        const size_t np = (size_t)h * w;
        for (size_t i = 0; i < np; i++) {
            uint8_t *p = out->data + i * 4;
            const unsigned a = p[3];
            if (a == 255 || a == 0) continue;
            for (int k = 0; k < 3; k++) {
                unsigned v = (255u * p[k]) / a;
                p[k] = (uint8_t)(v > 255 ? 255 : v);
            }
        }
    }
    return CT_OK;
}
