/* The CUDA backend's augment_standardize op: ImageDataGenerator augmentation and the
 * standardisation of a raw batch (uint8 or float NHWC) in one fused pass that writes the model's
 * float input, with the same per-pixel functions (cutune/augment.h) as the CPU reference.
 *
 * The work of one image, in the CPU reference's order, is: affine resampling, channel shift,
 * horizontal and vertical flips, brightness, preprocess_input, rescale, samplewise centring and
 * scaling, featurewise centring and scaling. On the device it runs as
 *
 *   1. draw_kernel: one thread per image draws its parameters from the counter-based generator
 *      (ct_augment_draw) and builds its affine matrix, into a per-image record in the workspace;
 *   2. only when some step needs a whole-image statistic, stats passes: a few blocks per image
 *      recompute the image's values up to that step and reduce them to fixed-order partials,
 *      which finish_kernel combines per image (deterministic, no atomics):
 *        - min/max of the affine output, for channel shift and brightness. The flips permute
 *          pixels and so change neither; the channel shift is monotone, so the range brightness
 *          needs is the channel shift applied to that min/max, exactly as the CPU finds it;
 *        - the sum of the standardised values for samplewise centring (the float mean, as the
 *          CPU rounds it), then their sum and sum of squares for samplewise scaling. The
 *          variance comes from Σx² − (Σx)²/n in double: the CPU's two-pass Σ(x − mean)² differs
 *          by rounding of order 1e-16 · Σx² / Σ(x − mean)², far below float for any image that
 *          is not (nearly) constant;
 *   3. pixel_kernel: one thread per output pixel (all its channels: the bilinear weights are
 *      shared) reads the input through the flips and the affine tap, applies every step and
 *      writes the float result once.
 * Recomputing the affine values in each pass reads the input again (one byte per value for
 * uint8) instead of writing and re-reading a float intermediate (eight bytes per value).
 *
 * This file is compiled with --fmad=false (CMakeLists.txt): every float operation is then the
 * IEEE operation the CPU's C code performs, in the same order, so the output agrees with the CPU
 * backend bit for bit except where the double-precision matrix (CUDA's cos/sin against glibc's)
 * rounds to a different float; the kernel is memory-bound, so fused multiply-adds would buy
 * nothing. Everything but the op's entry point has internal linkage, so that
 * tests/test_augment_emulated.cu can include this file and run its per-image and per-pixel
 * functions on the host. The channel count is a template parameter, which keeps each pixel's
 * values in registers (a run-time index would move them to local memory). */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "context.h"
#include "data/augment.h"
#include "data/data.h"

#define THREADS 256
#define DRAW_THREADS 64
#define MAX_BLOCKS_PER_IMAGE 64

/* Loops over the channels are unrolled on the device; the host compiler (these functions are
 * __host__ __device__) does not know the pragma. */
#ifdef __CUDA_ARCH__
#define UNROLL _Pragma("unroll")
#else
#define UNROLL
#endif

/* One image's drawn parameters and statistics, in the workspace. */
typedef struct aug_image {
    float m[6];            /* output (row, col) -> input coordinate, when affine */
    int affine;            /* resample at all (Keras skips it for an identity transform) */
    int flip_h, flip_v;
    int channel_shift, brightness;
    float shift;           /* channel shift intensity */
    float factor;          /* brightness factor */
    float lo, hi;          /* min and max of the affine output: the channel shift's clip range */
    float b_lo, b_hi;      /* min and max after the channel shift: brightness's range */
    float mean;            /* samplewise centre, rounded to float as the CPU does */
    float sd;              /* samplewise standard deviation + 1e-6 */
} aug_image;

/* A block's share of one image's statistics. */
typedef struct aug_partial {
    double sum, sq;
    float lo, hi;
} aug_partial;

/* How far a pass computes the values. */
enum { STAGE_AFFINE = 0, STAGE_MEAN, STAGE_VAR, STAGE_FINAL };

/* ---- parameters ------------------------------------------------------------------------- */

/* Image `sample`'s record: its parameters, or the identity when not augmenting. The per-image
 * and per-pixel functions of this file are __host__ __device__, so they can also be run (and
 * checked) on the host. */
static __host__ __device__ __forceinline__ aug_image draw_image(const ct_augment_config &cfg,
                                                                bool augment, uint64_t seed,
                                                                uint32_t epoch, uint32_t sample,
                                                                int h, int w) {
    aug_image a;
    for (int k = 0; k < 6; k++) a.m[k] = 0.0f;
    a.affine = a.flip_h = a.flip_v = a.channel_shift = a.brightness = 0;
    a.shift = 0.0f;
    a.factor = 1.0f;
    a.lo = a.hi = a.b_lo = a.b_hi = 0.0f;
    a.mean = 0.0f;
    a.sd = 1.0f;
    if (augment) {
        ct_augment_params p = ct_augment_draw(&cfg, seed, epoch, sample, h, w);
        if (ct_augment_has_affine(&p)) {
            a.affine = 1;
            ct_augment_matrix(&p, h, w, a.m);
        }
        a.flip_h = p.flip_h;
        a.flip_v = p.flip_v;
        a.channel_shift = p.channel_shift;
        a.shift = p.channel_shift_intensity;
        a.brightness = p.brightness;
        a.factor = p.brightness_factor;
    }
    return a;
}

static __global__ void draw_kernel(aug_image *img, const uint32_t *sample_index, int n, int h,
                                   int w, ct_augment_config cfg, bool augment, uint64_t seed,
                                   uint32_t epoch) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) img[i] = draw_image(cfg, augment, seed, epoch, sample_index[i], h, w);
}

/* ---- per-pixel values ------------------------------------------------------------------- */

/* The C values of output (row, col) after the affine step and the flips (which come later in
 * Keras's order but only say which affine output pixel lands here). */
template <typename T, int C>
static __host__ __device__ __forceinline__ void affine_values(float v[4], const T *x, int h,
                                                              int w, const aug_image &a,
                                                              const ct_augment_config &cfg,
                                                              int row, int col) {
    int r = a.flip_v ? h - 1 - row : row;
    int q = a.flip_h ? w - 1 - col : col;
    if (!a.affine) {
        const T *p = x + ((size_t)r * w + q) * C;
        UNROLL
        for (int k = 0; k < C; k++) v[k] = (float)p[k];
        return;
    }
    ct_augment_tap t = ct_augment_affine_tap(h, w, a.m, r, q, cfg.fill_mode, cfg.nearest_sampling);
    if (t.kind == CT_TAP_FILL) {
        UNROLL
        for (int k = 0; k < C; k++) v[k] = cfg.cval;
    } else if (t.kind == CT_TAP_NEAREST) {
        const T *p = x + (size_t)t.p00 * C;
        UNROLL
        for (int k = 0; k < C; k++) v[k] = (float)p[k];
    } else {
        const T *p00 = x + (size_t)t.p00 * C, *p01 = x + (size_t)t.p01 * C;
        const T *p10 = x + (size_t)t.p10 * C, *p11 = x + (size_t)t.p11 * C;
        UNROLL
        for (int k = 0; k < C; k++)
            v[k] = ct_augment_tap_blend(&t, (float)p00[k], (float)p01[k], (float)p10[k],
                                        (float)p11[k]);
    }
}

/* Everything after the affine step, up to and including `stage`'s last step: channel shift,
 * brightness, preprocess_input and rescale; then samplewise centring (from STAGE_VAR on),
 * samplewise scaling and the featurewise steps (STAGE_FINAL). */
template <int C>
static __host__ __device__ __forceinline__ void finish_values(float v[4], const aug_image &a,
                                                              const ct_standardize &s,
                                                              int stage) {
    UNROLL
    for (int k = 0; k < C; k++) {
        if (a.channel_shift) v[k] = ct_augment_channel_shift_value(v[k], a.shift, a.lo, a.hi);
        if (a.brightness)
            v[k] = ct_augment_brightness_value(v[k], a.factor, a.b_lo, a.b_hi, C == 4 && k == 3);
    }
    /* caffe and torch need 3 channels (ct_standardize_check); other counts have tf or none,
     * and the 3-channel modes are not even compiled for them. */
    if (C == 3)
        ct_preprocess_pixel(v, C, s.preprocess);
    else if (s.preprocess == CT_PREPROCESS_TF)
        ct_preprocess_pixel(v, C, CT_PREPROCESS_TF);
    UNROLL
    for (int k = 0; k < C; k++) {
        if (s.rescale != 0.0f) v[k] *= s.rescale;
        if (stage >= STAGE_VAR && s.samplewise_center) v[k] -= a.mean;
        if (stage == STAGE_FINAL) {
            if (s.samplewise_std_normalization) v[k] /= a.sd;
            if (s.featurewise_center) v[k] -= s.mean[k];
            if (s.featurewise_std_normalization) v[k] /= s.std[k] + 1e-6f;
        }
    }
}

/* ---- the output pass -------------------------------------------------------------------- */

/* One thread per output pixel; I is the index type (32-bit where the batch allows, see
 * ct_cu_fits_32). */
template <typename T, int C, typename I>
static __global__ void pixel_kernel(float *out, const T *x, const aug_image *img, I n, int h,
                                    int w, ct_augment_config cfg, ct_standardize s) {
    const I hw = (I)h * (I)w, total = n * hw;
    const I stride = (I)gridDim.x * blockDim.x;
    for (I i = (I)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += stride) {
        const I b = i / hw, rc = i - b * hw;
        const int row = (int)(rc / (I)w), col = (int)(rc - (I)row * (I)w);
        const aug_image a = img[b];
        float v[4];
        affine_values<T, C>(v, x + (size_t)b * hw * C, h, w, a, cfg, row, col);
        finish_values<C>(v, a, s, STAGE_FINAL);
        float *o = out + (size_t)i * C;
        UNROLL
        for (int k = 0; k < C; k++) o[k] = v[k];
    }
}

/* ---- statistics passes ------------------------------------------------------------------ */

/* Grid (blocks_per_image, n): block (j, b) reduces the pixels j*THREADS + t, stepping by
 * blocks_per_image*THREADS, of image b into part[b * blocks_per_image + j], in a fixed order. */
template <typename T, int C>
static __global__ void __launch_bounds__(THREADS)
    stats_kernel(aug_partial *part, const T *x, const aug_image *img, int h, int w,
                 ct_augment_config cfg, ct_standardize s, int stage) {
    __shared__ double s_sum[THREADS], s_sq[THREADS];
    __shared__ float s_lo[THREADS], s_hi[THREADS];
    const int b = blockIdx.y, hw = h * w;
    const aug_image a = img[b];
    const T *xb = x + (size_t)b * hw * C;
    /* A thread without pixels reports an empty range, which pulls no image's range anywhere. */
    double sum = 0.0, sq = 0.0;
    float lo = INFINITY, hi = -INFINITY;
    for (int p = blockIdx.x * THREADS + threadIdx.x; p < hw; p += gridDim.x * THREADS) {
        float v[4];
        affine_values<T, C>(v, xb, h, w, a, cfg, p / w, p % w);
        if (stage != STAGE_AFFINE) finish_values<C>(v, a, s, stage);
        UNROLL
        for (int k = 0; k < C; k++) {
            lo = fminf(lo, v[k]);
            hi = fmaxf(hi, v[k]);
            sum += (double)v[k];
            sq += (double)v[k] * (double)v[k];
        }
    }
    s_lo[threadIdx.x] = lo;
    s_hi[threadIdx.x] = hi;
    s_sum[threadIdx.x] = sum;
    s_sq[threadIdx.x] = sq;
    __syncthreads();
    for (int half = THREADS / 2; half > 0; half /= 2) {
        if (threadIdx.x < half) {
            s_lo[threadIdx.x] = fminf(s_lo[threadIdx.x], s_lo[threadIdx.x + half]);
            s_hi[threadIdx.x] = fmaxf(s_hi[threadIdx.x], s_hi[threadIdx.x + half]);
            s_sum[threadIdx.x] += s_sum[threadIdx.x + half];
            s_sq[threadIdx.x] += s_sq[threadIdx.x + half];
        }
        __syncthreads();
    }
    if (threadIdx.x == 0) {
        aug_partial r;
        r.lo = s_lo[0];
        r.hi = s_hi[0];
        r.sum = s_sum[0];
        r.sq = s_sq[0];
        part[(size_t)b * gridDim.x + blockIdx.x] = r;
    }
}

/* Combines an image's partials, in order, into the statistic `stage` needs. */
static __host__ __device__ __forceinline__ void finish_stats(aug_image *a, const aug_partial *p,
                                                             int parts, double count,
                                                             int stage) {
    float lo = p[0].lo, hi = p[0].hi;
    double sum = 0.0, sq = 0.0;
    for (int j = 0; j < parts; j++) {
        lo = fminf(lo, p[j].lo);
        hi = fmaxf(hi, p[j].hi);
        sum += p[j].sum;
        sq += p[j].sq;
    }
    if (stage == STAGE_AFFINE) {
        a->lo = lo;
        a->hi = hi;
        a->b_lo = lo;
        a->b_hi = hi;
        if (a->channel_shift) {
            a->b_lo = ct_augment_channel_shift_value(lo, a->shift, lo, hi);
            a->b_hi = ct_augment_channel_shift_value(hi, a->shift, lo, hi);
        }
    } else if (stage == STAGE_MEAN) {
        a->mean = (float)(sum / count);
    } else {
        double m2 = sq - sum * (sum / count);
        if (m2 < 0.0) m2 = 0.0;
        a->sd = (float)sqrt(m2 / count) + 1e-6f;
    }
}

/* One thread per image. */
static __global__ void finish_kernel(aug_image *img, const aug_partial *part, int n,
                                     int parts, double count, int stage) {
    int b = blockIdx.x * blockDim.x + threadIdx.x;
    if (b < n) finish_stats(&img[b], part + (size_t)b * parts, parts, count, stage);
}

/* ---- launch ----------------------------------------------------------------------------- */

/* The typed half of the op: the passes for input type T and C channels. */
template <typename T, int C>
static ct_status run_passes(ct_cu_ctx *ctx, float *out, const T *x, aug_image *img,
                            aug_partial *part, int parts, int n, int h, int w,
                            const ct_augment_config &cfg, const ct_standardize &s,
                            bool need_range) {
    const double count = (double)h * w * C;
    const unsigned fin_grid = (unsigned)((n + DRAW_THREADS - 1) / DRAW_THREADS);
    int stages[3], n_stages = 0;
    if (need_range) stages[n_stages++] = STAGE_AFFINE;
    if (s.samplewise_center) stages[n_stages++] = STAGE_MEAN;
    if (s.samplewise_std_normalization) stages[n_stages++] = STAGE_VAR;
    const size_t image = (size_t)h * w * C;
    for (int i = 0; i < n_stages; i++) {
        /* A grid's y dimension holds at most 65535 images. */
        for (int b0 = 0; b0 < n; b0 += 65535) {
            int nb = n - b0 < 65535 ? n - b0 : 65535;
            dim3 grid((unsigned)parts, (unsigned)nb);
            stats_kernel<T, C><<<grid, THREADS, 0, ctx->stream>>>(
                part + (size_t)b0 * parts, x + (size_t)b0 * image, img + b0, h, w, cfg, s,
                stages[i]);
            CT_CU_CHECK_LAUNCH();
        }
        finish_kernel<<<fin_grid, DRAW_THREADS, 0, ctx->stream>>>(img, part, n, parts, count,
                                                                  stages[i]);
        CT_CU_CHECK_LAUNCH();
    }
    const size_t pixels = (size_t)n * h * w;
    const unsigned grid = ct_cu_grid(ctx, pixels, THREADS);
    if (ct_cu_fits_32(pixels * C)) {
        pixel_kernel<T, C, uint32_t><<<grid, THREADS, 0, ctx->stream>>>(out, x, img, (uint32_t)n,
                                                                         h, w, cfg, s);
    } else {
        pixel_kernel<T, C, size_t><<<grid, THREADS, 0, ctx->stream>>>(out, x, img, (size_t)n, h,
                                                                       w, cfg, s);
    }
    CT_CU_CHECK_LAUNCH();
    return CT_OK;
}

template <typename T>
static ct_status run_typed(ct_cu_ctx *ctx, float *out, const T *x, aug_image *img,
                           aug_partial *part, int parts, int n, int h, int w, int c,
                           const ct_augment_config &cfg, const ct_standardize &s,
                           bool need_range) {
    switch (c) {
    case 1:
        return run_passes<T, 1>(ctx, out, x, img, part, parts, n, h, w, cfg, s, need_range);
    case 2:
        return run_passes<T, 2>(ctx, out, x, img, part, parts, n, h, w, cfg, s, need_range);
    case 3:
        return run_passes<T, 3>(ctx, out, x, img, part, parts, n, h, w, cfg, s, need_range);
    default:
        return run_passes<T, 4>(ctx, out, x, img, part, parts, n, h, w, cfg, s, need_range);
    }
}

ct_status ct_cu_augment_standardize(void *ctx_, float *out, const uint8_t *in_u8,
                                    const float *in_f32, const uint32_t *sample_index, int n,
                                    int h, int w, int c, const struct ct_augment_config *aug,
                                    const struct ct_standardize *std, uint64_t seed,
                                    uint32_t epoch) {
    ct_cu_ctx *ctx = (ct_cu_ctx *)ctx_;
    ct_status st = ct_augment_standardize_check(in_u8, in_f32, n, h, w, c, aug, std);
    if (st != CT_OK) return st;
    if (n == 0) return CT_OK;
    if (!out || !sample_index) {
        return ct_error(CT_EINVAL, "cuda augment_standardize: out or sample_index is NULL");
    }
    /* The statistics kernels step through an image's pixels with int indices. */
    if ((size_t)h * (size_t)w > (size_t)INT32_MAX - (size_t)MAX_BLOCKS_PER_IMAGE * THREADS) {
        return ct_error(CT_EINVAL, "cuda augment_standardize: %dx%d images are too large", h, w);
    }
    if ((st = ct_cu_enter(ctx)) != CT_OK) return st;

    const bool augment = aug != NULL && ct_augment_enabled(aug);
    ct_augment_config cfg;
    if (augment) {
        cfg = *aug;
    } else {
        memset(&cfg, 0, sizeof cfg);
    }
    /* Channel shift and brightness apply to every image or to none (their ranges decide). */
    const bool need_range =
        augment && (cfg.channel_shift_range != 0.0f || cfg.brightness_lo != 0.0f ||
                    cfg.brightness_hi != 0.0f);
    const bool need_stats =
        need_range || std->samplewise_center || std->samplewise_std_normalization;

    /* Enough blocks per image to give every SM a few of them, never more than the image has
     * blocks of pixels. */
    int parts = 0;
    if (need_stats) {
        size_t pix_blocks = ((size_t)h * w + THREADS - 1) / THREADS;
        size_t want = ((size_t)ctx->sm_count * 4 + (size_t)n - 1) / (size_t)n;
        if (want > pix_blocks) want = pix_blocks;
        if (want > MAX_BLOCKS_PER_IMAGE) want = MAX_BLOCKS_PER_IMAGE;
        parts = want > 0 ? (int)want : 1;
    }
    const size_t img_bytes = ((size_t)n * sizeof(aug_image) + 255) / 256 * 256;
    const size_t part_bytes = (size_t)n * (size_t)parts * sizeof(aug_partial);
    void *ws = NULL;
    if ((st = ct_cu_workspace(ctx, img_bytes + part_bytes, &ws)) != CT_OK) return st;
    aug_image *img = (aug_image *)ws;
    aug_partial *part = need_stats ? (aug_partial *)((char *)ws + img_bytes) : NULL;

    draw_kernel<<<(unsigned)((n + DRAW_THREADS - 1) / DRAW_THREADS), DRAW_THREADS, 0,
                  ctx->stream>>>(img, sample_index, n, h, w, cfg, augment, seed, epoch);
    CT_CU_CHECK_LAUNCH();
    if (in_u8) {
        return run_typed<uint8_t>(ctx, out, in_u8, img, part, parts, n, h, w, c, cfg, *std,
                                  need_range);
    }
    return run_typed<float>(ctx, out, in_f32, img, part, parts, n, h, w, c, cfg, *std,
                            need_range);
}
