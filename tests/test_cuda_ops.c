/* The CUDA backend against the CPU backend, op by op.
 *
 * Every op runs on both backends with the same inputs (random shapes, odd spatial sizes
 * included, random data from the counter-based generator) and the outputs are compared as
 * ‖gpu − cpu‖ / ‖cpu‖ against a tolerance that says where it comes from, or bit for bit where
 * the GPU must do exactly the CPU's arithmetic (pooling, dropout, concatenation, masks). Output
 * buffers start filled with junk, so an op that accumulates into them or skips elements fails.
 *
 * Without a usable device every test but the discovery one is skipped, visibly, with the reason
 * ct_cuda_devices gave. */
#define _POSIX_C_SOURCE 200809L /* setenv */
#include <criterion/criterion.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/backend.h"
#include "cutune/cuda.h"
#include "core/rng.h"
#include "cutune/status.h"
#include "util.h"

#define SEED 0x5EEDC0DE2024ULL

/* Tolerances on ‖gpu − cpu‖ / ‖cpu‖.
 *
 * TF32 (the default precision) rounds both factors of every product to 10 mantissa bits, a
 * relative error of at most 2^-11 ≈ 4.9e-4 each, and accumulates in fp32. With random-sign data
 * the rounding errors of a dot product add like a random walk, as its terms do, so the
 * norm-wise error stays near 4e-4 regardless of the length of the sum; 5e-3 leaves a margin of
 * ten for Winograd-type algorithms whose transforms amplify it a little. A wrong layout or
 * index gives errors of order 1.
 *
 * Strict fp32 (CUTUNE_PRECISION=fp32) leaves only rounding differences of summation order,
 * about 1e-7 times the square root of the sum length, but cuDNN's Winograd and FFT algorithms
 * lose up to two more digits in their transforms: 1e-4. */
#define TOL_TF32 5e-3
#define TOL_FP32 1e-4
/* bf16 tensors (CT_BF16 ops, what models use at bf16 precision) against the CPU backend's
 * emulation: both multiply the same bf16 operands (products exact in fp32), sum in fp32 in
 * different orders and round the sum to bf16 where the other does. The orders differ by fp32
 * rounding only (about 1e-7 relative, more in Winograd-type transforms), so a rounding to bf16
 * lands on the other side of a midpoint for a small fraction of the values, each then one bf16
 * step (2^-8 to 2^-7 relative) off. So the comparison counts steps (steps_compare): every value
 * within one step of the CPU's (plus one step at the tensor's RMS, for sums that cancel near
 * zero), at most BF16_DIFFER of the values different at all, and the norm-wise error under
 * TOL_BF16. Rounding at other points than the CPU (skipping one of the two roundings of the
 * forward, an unrounded kernel) makes 12% to 17% of the values differ (measured with the CPU
 * emulation mutated so, test_bf16.c); a wrong layout or a bf16 tensor read as float32 gives
 * errors of order 1. Float32 convolutions at CUTUNE_PRECISION=bf16 run as TF32. */
#define TOL_BF16 2e-3
#define BF16_DIFFER 0.03
/* Plain fp32 sums in another order (bias gradients, averages): a few ulps of fp32 (6e-8) times
 * the square root of the number of terms (at most a few thousand here). */
#define TOL_SUM 1e-5
/* Elementwise formulas with exp, log1p, sqrt and possibly contracted multiply-adds: CUDA's expf
 * and logf are within 2 ulps, glibc's within 1; a few ulps of fp32 norm-wise. */
#define TOL_ELEM 1e-5

static ct_backend cpu, gpu;
static bool have_gpu;
static double tol_gemm;
static uint32_t next_tag = 1;

static void setup(void) {
    if (!tu_gpu_usable()) return;
    cr_assert_eq(ct_backend_cpu_init(&cpu, 0), CT_OK, "cpu backend: %s", ct_last_error());
    cr_assert_eq(ct_backend_cuda_init(&gpu, 0), CT_OK, "cuda backend: %s", ct_last_error());
    const char *prec = getenv("CUTUNE_PRECISION");
    tol_gemm = prec && strcmp(prec, "fp32") == 0 ? TOL_FP32 : TOL_TF32;
    have_gpu = true;
}

static void teardown(void) {
    if (!have_gpu) return;
    ct_backend_free(&gpu);
    ct_backend_free(&cpu);
}

TestSuite(cuda_ops, .init = setup, .fini = teardown);

#define OK(call) cr_assert_eq((call), CT_OK, "%s: %s", #call, ct_last_error())

/* ---- data ------------------------------------------------------------------------------- */

/* A uniform draw in [lo, hi) from the test stream `tag`; `steps` > 0 quantises to that many
 * levels, which makes ties (for max pooling) common. */
static float draw(uint32_t tag, uint32_t i, float lo, float hi, int steps) {
    float u = ct_rng_unit(ct_rng_word(SEED, ((uint32_t)CT_RNG_TEST << 16) | (tag & 0xFFFFu),
                                      tag >> 16, 0, i));
    if (steps > 0) u = floorf(u * (float)steps) / (float)steps;
    return lo + (hi - lo) * u;
}

static float *host_random(size_t n, float lo, float hi, int steps) {
    float *h = malloc(n * sizeof *h);
    cr_assert_not_null(h);
    uint32_t tag = next_tag++;
    for (size_t i = 0; i < n; i++) h[i] = draw(tag, (uint32_t)i, lo, hi, steps);
    return h;
}

/* A random integer in [lo, hi]. */
static int rand_int(int lo, int hi) {
    int v = lo + (int)(draw(next_tag++, 0, 0.0f, 1.0f, 0) * (float)(hi - lo + 1));
    return v > hi ? hi : v; /* the float product can round up to hi - lo + 1 */
}

/* The same tensor on both backends: float32, or bf16 (dt; the pointers then hold bf16 data,
 * filled from and read back as floats). */
typedef struct pair {
    float *c, *g;
    size_t n;
    ct_dtype dt;
} pair;

static float *dev_alloc(ct_backend *be, size_t bytes) {
    void *p = NULL;
    OK(be->ops->alloc(be->ctx, &p, bytes));
    return p;
}

/* host (n floats) into backend memory of type dt (rounded to bf16 for CT_BF16). */
static void put(ct_backend *be, void *dst, const float *host, size_t n, ct_dtype dt) {
    if (dt == CT_F32) {
        OK(be->ops->copy_to_device(be->ctx, dst, host, n * sizeof(float)));
        return;
    }
    ct_bf16 *h = malloc(n * sizeof *h);
    cr_assert_not_null(h);
    ct_f32_to_bf16(h, host, n);
    OK(be->ops->copy_to_device(be->ctx, dst, h, n * sizeof *h));
    free(h);
}

static pair pair_typed(const float *host, size_t n, ct_dtype dt) {
    const size_t bytes = n * ct_dtype_size(dt);
    pair p = {dev_alloc(&cpu, bytes), dev_alloc(&gpu, bytes), n, dt};
    if (host) {
        put(&cpu, p.c, host, n, dt);
        put(&gpu, p.g, host, n, dt);
    }
    return p;
}

static pair pair_from(const float *host, size_t n) { return pair_typed(host, n, CT_F32); }

static pair pair_random_typed(size_t n, float lo, float hi, int steps, ct_dtype dt) {
    float *h = host_random(n, lo, hi, steps);
    pair p = pair_typed(h, n, dt);
    free(h);
    return p;
}

static pair pair_random(size_t n, float lo, float hi) {
    return pair_random_typed(n, lo, hi, 0, CT_F32);
}

/* Zeros, as both backends' alloc promises. */
static pair pair_zeros(size_t n) { return pair_from(NULL, n); }

/* Junk in an output buffer, different on the two sides: large numbers on the CPU, NaN on the
 * GPU. An element either backend fails to write then differs, and a GPU op that reads its
 * output where it should not (a scale of zero that is not honoured) turns it into NaN. */
static pair pair_junk_typed(size_t n, ct_dtype dt) {
    pair p = pair_random_typed(n, -1000.0f, 1000.0f, 0, dt);
    float *h = malloc(n * sizeof *h);
    cr_assert_not_null(h);
    for (size_t i = 0; i < n; i++) h[i] = NAN;
    put(&gpu, p.g, h, n, dt);
    free(h);
    return p;
}

static pair pair_junk(size_t n) { return pair_junk_typed(n, CT_F32); }

static void pair_free(pair *p) {
    cpu.ops->release(cpu.ctx, p->c);
    gpu.ops->release(gpu.ctx, p->g);
    p->c = p->g = NULL;
}

/* Both sides as floats on the host (bf16 widened). */
static void pair_get(const pair *p, float **hc, float **hg) {
    *hc = malloc(p->n * sizeof(float));
    *hg = malloc(p->n * sizeof(float));
    cr_assert(*hc && *hg);
    OK(cpu.ops->copy_to_host(cpu.ctx, *hc, p->c, p->n * ct_dtype_size(p->dt)));
    OK(gpu.ops->copy_to_host(gpu.ctx, *hg, p->g, p->n * ct_dtype_size(p->dt)));
    if (p->dt == CT_BF16) {
        ct_bf16_widen_inplace(*hc, p->n);
        ct_bf16_widen_inplace(*hg, p->n);
    }
}

/* Makes the GPU copy equal to the CPU one (e.g. a forward output both backwards must read). */
static void pair_sync_from_cpu(pair *p) {
    const size_t bytes = p->n * ct_dtype_size(p->dt);
    void *h = malloc(bytes);
    cr_assert_not_null(h);
    OK(cpu.ops->copy_to_host(cpu.ctx, h, p->c, bytes));
    OK(gpu.ops->copy_to_device(gpu.ctx, p->g, h, bytes));
    free(h);
}

static double rel_err(const float *got, const float *want, size_t n) {
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)got[i] - (double)want[i];
        num += d * d;
        den += (double)want[i] * want[i];
    }
    if (num != num) return INFINITY; /* a NaN anywhere is a failure */
    return den > 0.0 ? sqrt(num / den) : sqrt(num);
}

static void expect_close(const pair *p, double tol, const char *what) {
    float *hc, *hg;
    pair_get(p, &hc, &hg);
    double e = rel_err(hg, hc, p->n);
    cr_expect_leq(e, tol, "%s: |gpu - cpu| / |cpu| = %.3g > %.3g", what, e, tol);
    free(hc);
    free(hg);
}

/* Equal values (+0 and -0 count as equal, and NaN as equal to NaN). */
static void expect_same(const pair *p, const char *what) {
    float *hc, *hg;
    pair_get(p, &hc, &hg);
    for (size_t i = 0; i < p->n; i++) {
        bool same = hc[i] == hg[i] || (hc[i] != hc[i] && hg[i] != hg[i]);
        if (!same) {
            cr_expect(same, "%s: element %zu differs: gpu %.9g, cpu %.9g", what, i,
                      (double)hg[i], (double)hc[i]);
            break;
        }
    }
    free(hc);
    free(hg);
}

/* Identical bits from element `start` on. */
static void expect_bits(const pair *p, size_t start, const char *what) {
    float *hc, *hg;
    pair_get(p, &hc, &hg);
    for (size_t i = start; i < p->n; i++) {
        if (memcmp(&hc[i], &hg[i], sizeof(float)) != 0) {
            cr_expect(false, "%s: element %zu differs bitwise: gpu %.9g, cpu %.9g", what, i,
                      (double)hg[i], (double)hc[i]);
            break;
        }
    }
    free(hc);
    free(hg);
}

/* ---- discovery ---------------------------------------------------------------------------- */

/* Runs with or without a GPU: either devices are listed and usable, or the answer is
 * CT_ENODEV with a reason and the backend refuses to start, leaving it zeroed. */
Test(cuda_devices, consistent_answer) {
    ct_device_info info[8];
    int count = -1;
    ct_status s = ct_cuda_devices(info, 8, &count);
    if (s == CT_OK) {
        cr_assert_gt(count, 0);
        for (int i = 0; i < count && i < 8; i++) {
            cr_expect_neq(info[i].name[0], '\0');
            cr_expect_geq(info[i].cc_major, 8, "cutune is built for compute capability 8.0+");
            cr_expect_gt(info[i].total_mem, 0);
            cr_expect_leq(info[i].free_mem, info[i].total_mem);
            cr_expect_gt(info[i].sm_count, 0);
        }
        ct_cuda_versions v;
        ct_cuda_versions_get(&v);
        cr_expect_gt(v.driver, 0);
        cr_expect_gt(v.runtime, 0);
        cr_expect_gt(v.cudnn, 0);
        cr_expect_gt(v.cublas, 0);
    } else {
        cr_assert_eq(s, CT_ENODEV, "%s", ct_last_error());
        cr_expect_eq(count, 0);
        cr_expect_neq(ct_last_error()[0], '\0');
        ct_backend be = {0};
        cr_expect_eq(ct_backend_cuda_init(&be, 0), CT_ENODEV);
        cr_expect_null(be.ops);
        cr_expect_null(be.ctx);
    }
}

/* ---- memory ------------------------------------------------------------------------------- */

Test(cuda_ops, alloc_is_zero_filled_and_oom_is_reported) {
    TU_REQUIRE_GPU();
    size_t bytes = 4099; /* not a multiple of 4: the memset must cover the tail */
    unsigned char *d = NULL, *h = malloc(bytes);
    cr_assert_not_null(h);
    memset(h, 0xAB, bytes);
    OK(gpu.ops->alloc(gpu.ctx, (void **)&d, bytes));
    OK(gpu.ops->copy_to_host(gpu.ctx, h, d, bytes));
    for (size_t i = 0; i < bytes; i++) cr_assert_eq(h[i], 0, "byte %zu is not zero", i);
    gpu.ops->release(gpu.ctx, d);
    free(h);

    /* 1 PiB fits on no GPU: CT_EDEVMEM with an actionable message, and the backend still
     * works afterwards (out of memory is not a sticky CUDA error). */
    void *huge = NULL;
    cr_assert_eq(gpu.ops->alloc(gpu.ctx, &huge, (size_t)1 << 50), CT_EDEVMEM);
    cr_expect_null(huge);
    cr_expect_not_null(strstr(ct_last_error(), "batch size"), "message: %s", ct_last_error());
    pair p = pair_random(1000, -1.0f, 1.0f);
    expect_same(&p, "copy after a failed allocation");
    pair_free(&p);
}

/* ---- convolution -------------------------------------------------------------------------- */

typedef struct conv_shape {
    int n, h, w, c, k;
} conv_shape;

/* Random small shapes with odd sizes, plus the first VGG16 layer's 3 channels and a
 * 64-channel layer where cuDNN picks tensor-core algorithms. */
static conv_shape conv_shape_pick(int trial) {
    conv_shape s;
    if (trial == 0) return (conv_shape){2, 15, 17, 3, 16};
    if (trial == 1) return (conv_shape){4, 14, 14, 64, 64};
    s.n = rand_int(1, 3);
    s.h = rand_int(1, 9);
    s.w = rand_int(1, 9);
    s.c = rand_int(1, 9);
    s.k = rand_int(1, 12);
    return s;
}

static ct_conv_args conv_args(conv_shape s, bool on_gpu, const pair *x, const pair *wt,
                              const pair *b, const pair *y, bool relu) {
    ct_conv_args a;
    memset(&a, 0, sizeof a);
    a.n = s.n;
    a.h = s.h;
    a.w = s.w;
    a.c = s.c;
    a.k = s.k;
    a.x = on_gpu ? x->g : x->c;
    a.wt = on_gpu ? wt->g : wt->c;
    a.b = on_gpu ? b->g : b->c;
    a.y = on_gpu ? y->g : y->c;
    a.relu = relu;
    return a;
}

Test(cuda_ops, conv3x3_forward) {
    TU_REQUIRE_GPU();
    for (int trial = 0; trial < 8; trial++) {
        conv_shape s = conv_shape_pick(trial);
        size_t nx = (size_t)s.n * s.h * s.w * s.c, ny = (size_t)s.n * s.h * s.w * s.k;
        pair x = pair_random(nx, -1.0f, 1.0f), wt = pair_random((size_t)s.k * 9 * s.c, -1.0f, 1.0f);
        pair b = pair_random((size_t)s.k, -0.5f, 0.5f);
        for (int relu = 0; relu < 2; relu++) {
            pair y = pair_junk(ny);
            ct_conv_args ac = conv_args(s, false, &x, &wt, &b, &y, relu);
            ct_conv_args ag = conv_args(s, true, &x, &wt, &b, &y, relu);
            OK(cpu.ops->conv3x3_forward(cpu.ctx, &ac));
            OK(gpu.ops->conv3x3_forward(gpu.ctx, &ag));
            char what[128];
            snprintf(what, sizeof what, "conv forward (%d,%d,%d,%d)->%d relu %d", s.n, s.h, s.w,
                     s.c, s.k, relu);
            expect_close(&y, tol_gemm, what);
            pair_free(&y);
        }
        pair_free(&x);
        pair_free(&wt);
        pair_free(&b);
    }
}

/* The first call of a shape searches algorithms (and tries the fused kernel); later calls use
 * the cached plan. Both must give the same result; cuDNN's forward algorithms are
 * deterministic, so only a plan bug can make them differ by more than rounding. */
Test(cuda_ops, conv3x3_forward_cached_plan_repeats) {
    TU_REQUIRE_GPU();
    conv_shape s = {3, 11, 9, 8, 16};
    size_t ny = (size_t)s.n * s.h * s.w * s.k;
    pair x = pair_random((size_t)s.n * s.h * s.w * s.c, -1.0f, 1.0f);
    pair wt = pair_random((size_t)s.k * 9 * s.c, -1.0f, 1.0f), b = pair_random(s.k, -0.5f, 0.5f);
    pair y1 = pair_junk(ny), y2 = pair_junk(ny);
    ct_conv_args a1 = conv_args(s, true, &x, &wt, &b, &y1, true);
    ct_conv_args a2 = conv_args(s, true, &x, &wt, &b, &y2, true);
    OK(gpu.ops->conv3x3_forward(gpu.ctx, &a1));
    conv_shape other = {1, 5, 5, 8, 16}; /* another plan in between */
    pair xo = pair_random(200, -1.0f, 1.0f), yo = pair_junk(400);
    ct_conv_args ao = conv_args(other, true, &xo, &wt, &b, &yo, true);
    OK(gpu.ops->conv3x3_forward(gpu.ctx, &ao));
    OK(gpu.ops->conv3x3_forward(gpu.ctx, &a2));
    float *h1 = malloc(ny * sizeof(float)), *h2 = malloc(ny * sizeof(float));
    cr_assert(h1 && h2);
    OK(gpu.ops->copy_to_host(gpu.ctx, h1, y1.g, ny * sizeof(float)));
    OK(gpu.ops->copy_to_host(gpu.ctx, h2, y2.g, ny * sizeof(float)));
    /* 1e-6: fp32 rounding only, in case a later call legitimately takes the other (fused or
     * separate) path with the same algorithm. */
    double e = rel_err(h2, h1, ny);
    cr_expect_leq(e, 1e-6, "second call differs from the first: %.3g", e);
    free(h1);
    free(h2);
    pair_free(&x);
    pair_free(&wt);
    pair_free(&b);
    pair_free(&y1);
    pair_free(&y2);
    pair_free(&xo);
    pair_free(&yo);
}

/* Backward of one case on GPU backend `g` against the CPU's, both from the CPU's forward
 * output (so that the ReLU masks agree). */
static void conv_backward_case(ct_backend *g, conv_shape s, const pair *x, const pair *wt,
                               const pair *b, bool relu, bool need_dgrad, bool need_wgrad,
                               const char *label) {
    size_t nx = (size_t)s.n * s.h * s.w * s.c, ny = (size_t)s.n * s.h * s.w * s.k;
    size_t nw = (size_t)s.k * 9 * s.c;
    pair y = pair_zeros(ny);
    ct_conv_args ac = conv_args(s, false, x, wt, b, &y, relu);
    ct_conv_args ag = conv_args(s, true, x, wt, b, &y, relu);
    OK(cpu.ops->conv3x3_forward(cpu.ctx, &ac));
    pair_sync_from_cpu(&y);

    pair dy = pair_random(ny, -1.0f, 1.0f);
    pair dx = pair_junk(nx), dw = pair_junk(nw), db = pair_junk(s.k);
    ac.dy = dy.c, ac.dx = dx.c, ac.dw = dw.c, ac.db = db.c;
    ag.dy = dy.g, ag.dx = dx.g, ag.dw = dw.g, ag.db = db.g;
    OK(cpu.ops->conv3x3_backward(cpu.ctx, &ac, need_dgrad, need_wgrad));
    OK(g->ops->conv3x3_backward(g->ctx, &ag, need_dgrad, need_wgrad));

    char what[200];
    snprintf(what, sizeof what, "%s (%d,%d,%d,%d)->%d relu %d dgrad %d wgrad %d", label, s.n,
             s.h, s.w, s.c, s.k, relu, need_dgrad, need_wgrad);
    /* The mask multiplies by exactly 1 or 0. */
    expect_same(&dy, what);
    if (need_dgrad) expect_close(&dx, tol_gemm, what);
    if (need_wgrad) {
        expect_close(&dw, tol_gemm, what);
        expect_close(&db, TOL_SUM, what);
    }
    pair_free(&y);
    pair_free(&dy);
    pair_free(&dx);
    pair_free(&dw);
    pair_free(&db);
}

static const bool conv_needs[3][2] = {{true, true}, {false, true}, {true, false}};

Test(cuda_ops, conv3x3_backward) {
    TU_REQUIRE_GPU();
    for (int trial = 0; trial < 8; trial++) {
        conv_shape s = conv_shape_pick(trial);
        pair x = pair_random((size_t)s.n * s.h * s.w * s.c, -1.0f, 1.0f);
        pair wt = pair_random((size_t)s.k * 9 * s.c, -1.0f, 1.0f);
        pair b = pair_random(s.k, -0.5f, 0.5f);
        for (int relu = 0; relu < 2; relu++)
            for (int v = 0; v < 3; v++)
                conv_backward_case(&gpu, s, &x, &wt, &b, relu, conv_needs[v][0],
                                   conv_needs[v][1], "conv backward");
        pair_free(&x);
        pair_free(&wt);
        pair_free(&b);
    }
}

/* A NaN in the input must reach every output it touches on the CPU: the fused
 * convolution + bias + ReLU (chosen by timing on the first call) must not turn NaN into 0, or
 * check_finite would never see it. The second call runs whichever path was chosen. */
Test(cuda_ops, conv3x3_forward_keeps_nan) {
    TU_REQUIRE_GPU();
    conv_shape s = {2, 6, 6, 8, 16};
    size_t nx = (size_t)s.n * s.h * s.w * s.c, ny = (size_t)s.n * s.h * s.w * s.k;
    float *h = host_random(nx, -1.0f, 1.0f, 0);
    h[(size_t)((1 * s.h + 2) * s.w + 3) * s.c + 5] = NAN; /* sample 1, row 2, col 3 */
    pair x = pair_from(h, nx), wt = pair_random((size_t)s.k * 9 * s.c, -1.0f, 1.0f);
    pair b = pair_random(s.k, -0.5f, 0.5f);
    for (int call = 0; call < 2; call++) {
        pair y = pair_junk(ny);
        ct_conv_args ac = conv_args(s, false, &x, &wt, &b, &y, true);
        ct_conv_args ag = conv_args(s, true, &x, &wt, &b, &y, true);
        OK(cpu.ops->conv3x3_forward(cpu.ctx, &ac));
        OK(gpu.ops->conv3x3_forward(gpu.ctx, &ag));
        float *hc, *hg;
        pair_get(&y, &hc, &hg);
        /* Winograd- or FFT-type algorithms may spread a NaN over a whole tile: more NaN is
         * fine (check_finite still sees it), a NaN turned into a number is not. */
        size_t nan_c = 0, lost = 0;
        for (size_t i = 0; i < ny; i++) {
            nan_c += isnan(hc[i]) != 0;
            lost += isnan(hc[i]) && !isnan(hg[i]);
        }
        cr_expect_eq(nan_c, (size_t)9 * s.k, "the CPU's NaN reach (3x3 window, every filter)");
        cr_expect_eq(lost, 0, "call %d: %zu outputs NaN on the CPU are numbers on the GPU", call,
                     lost);
        free(hc);
        free(hg);
        pair_free(&y);
    }
    free(h);
    pair_free(&x);
    pair_free(&wt);
    pair_free(&b);
}

/* One shape through a forced path: the forward against the CPU (it decides the path, which
 * backward then follows), then backward in every combination, as the training step calls
 * them. */
static void conv_path_case(conv_shape s, const pair *x, const pair *wt, const pair *b, bool relu,
                           const char *label) {
    pair y = pair_junk((size_t)s.n * s.h * s.w * s.k);
    ct_conv_args ac = conv_args(s, false, x, wt, b, &y, relu);
    ct_conv_args ag = conv_args(s, true, x, wt, b, &y, relu);
    OK(cpu.ops->conv3x3_forward(cpu.ctx, &ac));
    OK(gpu.ops->conv3x3_forward(gpu.ctx, &ag));
    char what[96];
    snprintf(what, sizeof what, "%s conv forward (%d,%d,%d,%d)->%d relu %d", label, s.n, s.h,
             s.w, s.c, s.k, relu);
    expect_close(&y, tol_gemm, what);
    pair_free(&y);
    snprintf(what, sizeof what, "%s conv backward", label);
    for (int v = 0; v < 3; v++)
        conv_backward_case(&gpu, s, x, wt, b, relu, conv_needs[v][0], conv_needs[v][1], what);
}

/* Narrow inputs through zero-padded channels (CUTUNE_CONV_PAD=always), against the CPU. */
Test(cuda_ops, conv3x3_padded_channels) {
    TU_REQUIRE_GPU();
    /* Read at each shape's first forward; every test is a process of its own, so no shape
     * was decided before. */
    cr_assert_eq(setenv("CUTUNE_CONV_PAD", "always", 1), 0);
    const int channels[] = {3, 1, 2, 5, 6, 7};
    for (int t = 0; t < 6; t++) {
        conv_shape s = {rand_int(1, 3), rand_int(2, 12), rand_int(2, 12), channels[t],
                        t == 0 ? 64 : rand_int(1, 20)};
        pair x = pair_random((size_t)s.n * s.h * s.w * s.c, -1.0f, 1.0f);
        pair wt = pair_random((size_t)s.k * 9 * s.c, -1.0f, 1.0f);
        pair b = pair_random(s.k, -0.5f, 0.5f);
        conv_path_case(s, &x, &wt, &b, true, "padded");
        pair_free(&x);
        pair_free(&wt);
        pair_free(&b);
    }
    cr_assert_eq(unsetenv("CUTUNE_CONV_PAD"), 0);
}

/* Float32 convolutions through NCHW copies (CUTUNE_CONV_LAYOUT=nchw; fp32 runs choose it by
 * timing, where cuDNN's FFT and Winograd algorithms win), against the CPU. The kernel and
 * activations are transposed on the way in and out, so a wrong layout description shows as a
 * large error, not a rounding one. */
Test(cuda_ops, conv3x3_through_nchw) {
    TU_REQUIRE_GPU();
    cr_assert_eq(setenv("CUTUNE_CONV_LAYOUT", "nchw", 1), 0);
    for (int trial = 0; trial < 6; trial++) {
        conv_shape s = trial == 0 ? (conv_shape){2, 9, 7, 3, 16} /* a narrow first layer */
                                  : conv_shape_pick(trial);
        pair x = pair_random((size_t)s.n * s.h * s.w * s.c, -1.0f, 1.0f);
        pair wt = pair_random((size_t)s.k * 9 * s.c, -1.0f, 1.0f);
        pair b = pair_random(s.k, -0.5f, 0.5f);
        for (int relu = 0; relu < 2; relu++) conv_path_case(s, &x, &wt, &b, relu, "NCHW");
        pair_free(&x);
        pair_free(&wt);
        pair_free(&b);
    }
    cr_assert_eq(unsetenv("CUTUNE_CONV_LAYOUT"), 0);
}

/* ---- bf16 tensors ------------------------------------------------------------------------- */

/* One bf16 step (unit in the last place) at |v|. */
static double bf16_step(double v) {
    int e = 0;
    (void)frexp(fabs(v), &e); /* |v| = f 2^e, f in [0.5, 1) */
    return v == 0.0 ? 0.0 : ldexp(1.0, e - 8);
}

/* The comparison in bf16 steps of the file comment, on float values (bf16 ones widened). */
static void steps_compare(const float *hc, const float *hg, size_t n, const char *what) {
    double sq = 0.0;
    for (size_t i = 0; i < n; i++) sq += (double)hc[i] * hc[i];
    const double rms_step = bf16_step(sqrt(sq / (double)(n > 0 ? n : 1)));
    size_t differ = 0;
    for (size_t i = 0; i < n; i++) {
        if (hc[i] == hg[i]) continue;
        differ++;
        double big = fmax(fabs((double)hc[i]), fabs((double)hg[i]));
        double d = fabs((double)hg[i] - (double)hc[i]);
        if (!(d <= bf16_step(big) + rms_step)) {
            cr_expect(false, "%s: element %zu is %.3g bf16 steps off: gpu %.9g, cpu %.9g", what,
                      i, d / fmax(bf16_step(big), 1e-45), (double)hg[i], (double)hc[i]);
            return;
        }
    }
    cr_expect_leq((double)differ, BF16_DIFFER * (double)n, "%s: %zu of %zu values differ", what,
                  differ, n);
    double e = rel_err(hg, hc, n);
    cr_expect_leq(e, TOL_BF16, "%s: |gpu - cpu| / |cpu| = %.3g > %.3g", what, e, TOL_BF16);
}

/* steps_compare on a pair: bf16 values, or float32 ones holding bf16 values (dw). */
static void expect_steps(const pair *p, const char *what) {
    float *hc, *hg;
    pair_get(p, &hc, &hg);
    steps_compare(hc, hg, p->n, what);
    free(hc);
    free(hg);
}

/* Shapes as the backbone has them (3 input channels padded to 8; multiples of 8), plus odd
 * spatial sizes and a channel count that needs padding in the middle of a network. */
static conv_shape conv_shape_bf16(int trial) {
    static const conv_shape fixed[] = {{2, 15, 17, 3, 64}, {4, 14, 14, 64, 64},
                                       {3, 7, 9, 16, 8},   {2, 5, 6, 5, 16},
                                       {1, 1, 1, 8, 8},    {2, 28, 28, 128, 256}};
    return fixed[trial];
}

static void conv_bf16_case(conv_shape s) {
    size_t nx = (size_t)s.n * s.h * s.w * s.c, ny = (size_t)s.n * s.h * s.w * s.k;
    size_t nw = (size_t)s.k * 9 * s.c;
    pair x = pair_random_typed(nx, -1.0f, 1.0f, 0, CT_BF16);
    pair wt = pair_random(nw, -1.0f, 1.0f), b = pair_random((size_t)s.k, -0.5f, 0.5f);
    char what[160];
    snprintf(what, sizeof what, "bf16 conv forward (%d,%d,%d,%d)->%d", s.n, s.h, s.w, s.c, s.k);
    pair y = pair_junk_typed(ny, CT_BF16);
    ct_conv_args ac = {.n = s.n, .h = s.h, .w = s.w, .c = s.c, .k = s.k, .act = CT_BF16,
                       .x = x.c, .wt = wt.c, .b = b.c, .y = y.c, .relu = true};
    ct_conv_args ag = ac;
    ag.x = x.g, ag.wt = wt.g, ag.b = b.g, ag.y = y.g;
    OK(cpu.ops->conv3x3_forward(cpu.ctx, &ac));
    OK(gpu.ops->conv3x3_forward(gpu.ctx, &ag));
    expect_steps(&y, what);
    pair_sync_from_cpu(&y); /* both backwards from the same ReLU mask */
    for (int v = 0; v < 3; v++) {
        bool dg = conv_needs[v][0], wg = conv_needs[v][1];
        pair dy = pair_random_typed(ny, -1.0f, 1.0f, 0, CT_BF16);
        pair dx = pair_junk_typed(nx, CT_BF16);
        pair dw = pair_junk(nw), db = pair_junk((size_t)s.k);
        ac.dy = dy.c, ac.dx = dx.c, ac.dw = dw.c, ac.db = db.c;
        ag.dy = dy.g, ag.dx = dx.g, ag.dw = dw.g, ag.db = db.g;
        OK(cpu.ops->conv3x3_backward(cpu.ctx, &ac, dg, wg));
        OK(gpu.ops->conv3x3_backward(gpu.ctx, &ag, dg, wg));
        snprintf(what, sizeof what, "bf16 conv backward (%d,%d,%d,%d)->%d dgrad %d wgrad %d",
                 s.n, s.h, s.w, s.c, s.k, dg, wg);
        expect_same(&dy, what); /* the mask keeps or zeroes */
        char part[176];
        snprintf(part, sizeof part, "%s: dx", what);
        if (dg) expect_steps(&dx, part);
        if (wg) {
            snprintf(part, sizeof part, "%s: dw", what);
            expect_steps(&dw, part);
            snprintf(part, sizeof part, "%s: db", what);
            expect_close(&db, TOL_SUM, part);
        }
        pair_free(&dy);
        pair_free(&dx);
        pair_free(&dw);
        pair_free(&db);
    }
    pair_free(&x);
    pair_free(&y);
    pair_free(&wt);
    pair_free(&b);
}

Test(cuda_ops, conv3x3_bf16) {
    TU_REQUIRE_GPU();
    for (int trial = 0; trial < 6; trial++) conv_bf16_case(conv_shape_bf16(trial));
}

/* Max pooling moves values without arithmetic: bf16 results are the CPU's exactly. */
Test(cuda_ops, maxpool_bf16) {
    TU_REQUIRE_GPU();
    for (int trial = 0; trial < 6; trial++) {
        int n = rand_int(1, 3), h = rand_int(2, 11), w = rand_int(2, 11), c = 8 * rand_int(1, 8);
        if (trial == 0) n = 2, h = 7, w = 9, c = 64;
        size_t nx = (size_t)n * h * w * c, ny = (size_t)n * (h / 2) * (w / 2) * c;
        char what[96];
        snprintf(what, sizeof what, "bf16 maxpool (%d,%d,%d,%d)", n, h, w, c);
        pair x = pair_random_typed(nx, -1.0f, 1.0f, 4, CT_BF16);
        pair y = pair_junk_typed(ny, CT_BF16);
        OK(cpu.ops->maxpool_forward(cpu.ctx, CT_BF16, y.c, x.c, n, h, w, c));
        OK(gpu.ops->maxpool_forward(gpu.ctx, CT_BF16, y.g, x.g, n, h, w, c));
        expect_same(&y, what);
        pair dy = pair_random_typed(ny, -1.0f, 1.0f, 0, CT_BF16);
        pair dx = pair_junk_typed(nx, CT_BF16);
        OK(cpu.ops->maxpool_backward(cpu.ctx, CT_BF16, dx.c, dy.c, x.c, y.c, n, h, w, c));
        OK(gpu.ops->maxpool_backward(gpu.ctx, CT_BF16, dx.g, dy.g, x.g, y.g, n, h, w, c));
        expect_same(&dx, what);
        pair_free(&x);
        pair_free(&y);
        pair_free(&dy);
        pair_free(&dx);
    }
}

/* float32 -> bf16 -> float32 with ties, huge values and NaN: the GPU's __float2bfloat16_rn and
 * the host's ct_bf16_from_float round the same way. */
Test(cuda_ops, cast_bf16) {
    TU_REQUIRE_GPU();
    size_t n = 4099;
    float *h = host_random(n, -3.0f, 3.0f, 0);
    const uint32_t special[] = {0x3f808000u, 0x3f818000u, 0x7f7fffffu, 0xff7fffffu, 0x7f800000u,
                                0x7fc00001u, 0x00000001u, 0x80000000u, 0x3f80ffffu};
    for (size_t i = 0; i < sizeof special / sizeof special[0]; i++)
        memcpy(&h[i], &special[i], sizeof(float));
    pair f = pair_from(h, n), back = pair_junk(n);
    pair b = pair_junk_typed(n, CT_BF16);
    OK(cpu.ops->cast(cpu.ctx, b.c, CT_BF16, f.c, CT_F32, n));
    OK(gpu.ops->cast(gpu.ctx, b.g, CT_BF16, f.g, CT_F32, n));
    expect_same(&b, "cast to bf16");
    OK(cpu.ops->cast(cpu.ctx, back.c, CT_F32, b.c, CT_BF16, n));
    OK(gpu.ops->cast(gpu.ctx, back.g, CT_F32, b.g, CT_BF16, n));
    expect_same(&back, "cast back to float32");
    free(h);
    pair_free(&f);
    pair_free(&back);
    pair_free(&b);
}

/* Flips only move values: the device's must equal the CPU's bit for bit, odd sizes (a middle row
 * or column that stays) and a VGG-sized batch included. */
Test(cuda_ops, flip) {
    TU_REQUIRE_GPU();
    for (int trial = 0; trial < 8; trial++) {
        int n = rand_int(1, 3), h = rand_int(1, 9), w = rand_int(1, 9), c = rand_int(1, 4);
        if (trial == 0) n = 4, h = 224, w = 224, c = 3;
        const size_t count = (size_t)n * h * w * c;
        for (int mode = 1; mode < 4; mode++) {
            const bool hz = mode & 1, vt = mode & 2;
            float *x = host_random(count, -2.0f, 2.0f, 0);
            pair p = pair_from(x, count);
            OK(cpu.ops->flip(cpu.ctx, p.c, n, h, w, c, hz, vt));
            OK(gpu.ops->flip(gpu.ctx, p.g, n, h, w, c, hz, vt));
            char what[96];
            snprintf(what, sizeof what, "flip %s%s of (%d, %d, %d, %d)", hz ? "h" : "",
                     vt ? "v" : "", n, h, w, c);
            expect_same(&p, what);
            free(x);
            pair_free(&p);
        }
    }
}

/* ---- pooling ------------------------------------------------------------------------------ */

/* Quantised data makes equal values in one window common, so the tie rule (first maximum in
 * row-major order) is exercised; the comparisons are exact because max pooling does no
 * arithmetic. */
static pair pair_ties(size_t n) {
    float *h = host_random(n, -1.0f, 1.0f, 4);
    pair p = pair_from(h, n);
    free(h);
    return p;
}

Test(cuda_ops, maxpool_forward_backward) {
    TU_REQUIRE_GPU();
    for (int trial = 0; trial < 10; trial++) {
        int n = rand_int(1, 3), h = rand_int(1, 11), w = rand_int(1, 11), c = rand_int(1, 9);
        if (trial == 0) n = 2, h = 7, w = 9, c = 64; /* odd both ways, VGG-like channels */
        int ho = h / 2, wo = w / 2;
        size_t nx = (size_t)n * h * w * c, ny = (size_t)n * ho * wo * c;
        char what[96];
        snprintf(what, sizeof what, "maxpool (%d,%d,%d,%d)", n, h, w, c);
        pair x = pair_ties(nx);
        pair y = pair_zeros(ny > 0 ? ny : 1);
        if (ny > 0) {
            OK(cpu.ops->maxpool_forward(cpu.ctx, CT_F32, y.c, x.c, n, h, w, c));
            OK(gpu.ops->maxpool_forward(gpu.ctx, CT_F32, y.g, x.g, n, h, w, c));
            expect_same(&y, what);
        }
        pair dy = pair_random(ny > 0 ? ny : 1, -1.0f, 1.0f);
        pair dx = pair_junk(nx); /* every element must be written, zeros included */
        OK(cpu.ops->maxpool_backward(cpu.ctx, CT_F32, dx.c, dy.c, x.c, y.c, n, h, w, c));
        OK(gpu.ops->maxpool_backward(gpu.ctx, CT_F32, dx.g, dy.g, x.g, y.g, n, h, w, c));
        expect_same(&dx, what);
        pair_free(&x);
        pair_free(&y);
        pair_free(&dy);
        pair_free(&dx);
    }
}

Test(cuda_ops, global_pool_forward_backward) {
    TU_REQUIRE_GPU();
    for (int trial = 0; trial < 8; trial++) {
        int n = rand_int(1, 4), h = rand_int(1, 9), w = rand_int(1, 9), c = rand_int(1, 70);
        size_t nx = (size_t)n * h * w * c, ny = (size_t)n * c;
        for (int k = 0; k < 2; k++) {
            ct_global_pool kind = k ? CT_GLOBAL_MAX : CT_GLOBAL_AVG;
            char what[96];
            snprintf(what, sizeof what, "global %s pool (%d,%d,%d,%d)", k ? "max" : "avg", n, h,
                     w, c);
            pair x = pair_ties(nx), y = pair_junk(ny);
            OK(cpu.ops->global_pool_forward(cpu.ctx, kind, y.c, x.c, n, h, w, c));
            OK(gpu.ops->global_pool_forward(gpu.ctx, kind, y.g, x.g, n, h, w, c));
            /* Both sum in scan order and divide by h * w, and the max does no arithmetic. */
            expect_same(&y, what);
            pair dy = pair_random(ny, -1.0f, 1.0f), dx = pair_junk(nx);
            OK(cpu.ops->global_pool_backward(cpu.ctx, kind, dx.c, dy.c, x.c, y.c, n, h, w, c));
            OK(gpu.ops->global_pool_backward(gpu.ctx, kind, dx.g, dy.g, x.g, y.g, n, h, w, c));
            expect_same(&dx, what); /* dy / (h w) on both sides, or a copy of dy */
            pair_free(&x);
            pair_free(&y);
            pair_free(&dy);
            pair_free(&dx);
        }
    }
}

/* ---- dense -------------------------------------------------------------------------------- */

static ct_dense_args dense_args(int n, int in, int out, bool on_gpu, const pair *x,
                                const pair *wt, const pair *b, const pair *y, bool relu) {
    ct_dense_args a;
    memset(&a, 0, sizeof a);
    a.n = n;
    a.in = in;
    a.out = out;
    a.x = on_gpu ? x->g : x->c;
    a.wt = on_gpu ? wt->g : wt->c;
    a.b = on_gpu ? b->g : b->c;
    a.y = on_gpu ? y->g : y->c;
    a.relu = relu;
    return a;
}

Test(cuda_ops, dense_forward_backward) {
    TU_REQUIRE_GPU();
    static const bool needs[3][2] = {{true, true}, {false, true}, {true, false}};
    for (int trial = 0; trial < 8; trial++) {
        int n = rand_int(1, 9), in = rand_int(1, 40), out = rand_int(1, 20);
        if (trial == 0) n = 32, in = 512, out = 64; /* a head's size, tensor cores in TF32 */
        if (trial == 1) n = 7, in = 3, out = 1;     /* the binary output layer */
        size_t nx = (size_t)n * in, ny = (size_t)n * out, nw = (size_t)in * out;
        pair x = pair_random(nx, -1.0f, 1.0f), wt = pair_random(nw, -1.0f, 1.0f);
        pair b = pair_random(out, -0.5f, 0.5f);
        for (int relu = 0; relu < 2; relu++) {
            char what[128];
            snprintf(what, sizeof what, "dense (%d x %d) -> %d relu %d", n, in, out, relu);
            pair y = pair_junk(ny);
            ct_dense_args ac = dense_args(n, in, out, false, &x, &wt, &b, &y, relu);
            ct_dense_args ag = dense_args(n, in, out, true, &x, &wt, &b, &y, relu);
            OK(cpu.ops->dense_forward(cpu.ctx, &ac));
            OK(gpu.ops->dense_forward(gpu.ctx, &ag));
            expect_close(&y, tol_gemm, what);
            pair_sync_from_cpu(&y); /* both backwards read the same output */

            for (int v = 0; v < 3; v++) {
                bool need_dgrad = needs[v][0], need_wgrad = needs[v][1];
                pair dy = pair_random(ny, -1.0f, 1.0f);
                pair dx = pair_junk(nx), dw = pair_junk(nw), db = pair_junk(out);
                ac.dy = dy.c, ac.dx = dx.c, ac.dw = dw.c, ac.db = db.c;
                ag.dy = dy.g, ag.dx = dx.g, ag.dw = dw.g, ag.db = db.g;
                OK(cpu.ops->dense_backward(cpu.ctx, &ac, need_dgrad, need_wgrad));
                OK(gpu.ops->dense_backward(gpu.ctx, &ag, need_dgrad, need_wgrad));
                if (relu) expect_same(&dy, what);
                if (need_dgrad) expect_close(&dx, tol_gemm, what);
                if (need_wgrad) {
                    expect_close(&dw, tol_gemm, what);
                    expect_close(&db, TOL_SUM, what);
                }
                pair_free(&dy);
                pair_free(&dx);
                pair_free(&dw);
                pair_free(&db);
            }
            pair_free(&y);
        }
        pair_free(&x);
        pair_free(&wt);
        pair_free(&b);
    }
}

/* ---- dropout and concatenation ------------------------------------------------------------ */

/* The masks come from the same Philox counters on both sides and the scaling is one
 * correctly rounded multiply, so the outputs must agree bit for bit. `offset` shifts the
 * pointers by one float to run the unaligned (scalar) kernel. */
static void dropout_case(int n, int dim, float rate, ct_dropout_key key, int offset) {
    size_t count = (size_t)n * dim + (size_t)offset;
    char what[128];
    snprintf(what, sizeof what, "dropout (%d x %d) rate %g layer %u step %u offset %d", n, dim,
             (double)rate, key.layer, key.step, offset);
    pair x = pair_random(count, -2.0f, 2.0f), y = pair_junk(count);
    OK(cpu.ops->dropout_forward(cpu.ctx, y.c + offset, x.c + offset, n, dim, rate, key));
    OK(gpu.ops->dropout_forward(gpu.ctx, y.g + offset, x.g + offset, n, dim, rate, key));
    expect_bits(&y, (size_t)offset, what);
    pair dy = pair_random(count, -2.0f, 2.0f), dx = pair_junk(count);
    OK(cpu.ops->dropout_backward(cpu.ctx, dx.c + offset, dy.c + offset, n, dim, rate, key));
    OK(gpu.ops->dropout_backward(gpu.ctx, dx.g + offset, dy.g + offset, n, dim, rate, key));
    expect_bits(&dx, (size_t)offset, what);
    pair_free(&x);
    pair_free(&y);
    pair_free(&dy);
    pair_free(&dx);
}

Test(cuda_ops, dropout_matches_bitwise) {
    TU_REQUIRE_GPU();
    ct_dropout_key key = {SEED, 7, 123, 0};
    dropout_case(32, 512, 0.3f, key, 0); /* the iceberg head: dim % 4 == 0, vector kernel */
    dropout_case(32, 512, 0.3f, key, 1);
    dropout_case(5, 13, 0.5f, key, 0);   /* dim not a multiple of 4 */
    dropout_case(3, 1, 0.25f, key, 0);
    dropout_case(9, 64, 0.0f, key, 0);   /* rate 0 keeps everything, scale exactly 1 */
    key.layer = 8;                       /* other layers and steps draw other masks */
    dropout_case(16, 100, 0.3f, key, 0);
    key.step = 4000000000u;
    key.seed = 0xFFFFFFFFFFFFFFFFULL;
    dropout_case(16, 100, 0.7f, key, 0);
}

Test(cuda_ops, concat_forward_backward) {
    TU_REQUIRE_GPU();
    for (int trial = 0; trial < 6; trial++) {
        int n = rand_int(1, 9), da = rand_int(1, 600), db = rand_int(1, 5);
        char what[96];
        snprintf(what, sizeof what, "concat %d x (%d + %d)", n, da, db);
        pair a = pair_random((size_t)n * da, -1.0f, 1.0f), b = pair_random((size_t)n * db, -1.0f, 1.0f);
        pair y = pair_junk((size_t)n * (da + db));
        OK(cpu.ops->concat_forward(cpu.ctx, y.c, a.c, b.c, n, da, db));
        OK(gpu.ops->concat_forward(gpu.ctx, y.g, a.g, b.g, n, da, db));
        expect_bits(&y, 0, what);
        for (int side = 0; side < 3; side++) { /* both, only a, only b */
            pair ga = pair_junk((size_t)n * da), gb = pair_junk((size_t)n * db);
            float *ga_c = side == 2 ? NULL : ga.c, *ga_g = side == 2 ? NULL : ga.g;
            float *gb_c = side == 1 ? NULL : gb.c, *gb_g = side == 1 ? NULL : gb.g;
            OK(cpu.ops->concat_backward(cpu.ctx, ga_c, gb_c, y.c, n, da, db));
            OK(gpu.ops->concat_backward(gpu.ctx, ga_g, gb_g, y.g, n, da, db));
            if (ga_c) expect_bits(&ga, 0, what);
            if (gb_c) expect_bits(&gb, 0, what);
            pair_free(&ga);
            pair_free(&gb);
        }
        pair_free(&a);
        pair_free(&b);
        pair_free(&y);
    }
}

/* ---- loss --------------------------------------------------------------------------------- */

static void loss_case(ct_loss_kind kind, int n, int k, bool weighted, bool one_hot) {
    char what[128];
    snprintf(what, sizeof what, "%s loss n %d k %d weighted %d one-hot %d",
             kind == CT_LOSS_BINARY_CE ? "binary" : "categorical", n, k, weighted, one_hot);
    size_t nk = (size_t)n * k;
    float *z = host_random(nk, -6.0f, 6.0f, 0);
    /* Saturated logits must not overflow: exp is only taken of non-positive numbers. */
    z[0] = 40.0f;
    if (nk > 1) z[nk - 1] = -40.0f;
    float *lab = calloc(nk, sizeof *lab);
    cr_assert_not_null(lab);
    uint32_t tag = next_tag++;
    for (int r = 0; r < n; r++) {
        if (kind == CT_LOSS_BINARY_CE) {
            lab[r] = draw(tag, (uint32_t)r, 0.0f, 1.0f, 0) < 0.5f ? 0.0f : 1.0f;
        } else if (one_hot) {
            int j = (int)(draw(tag, (uint32_t)r, 0.0f, 1.0f, 0) * (float)k);
            lab[(size_t)r * k + j] = 1.0f;
        } else { /* soft labels, e.g. label smoothing: positive, summing to 1 */
            float sum = 0.0f;
            for (int j = 0; j < k; j++) {
                float v = draw(tag, (uint32_t)(r * k + j), 0.1f, 1.0f, 0);
                lab[(size_t)r * k + j] = v;
                sum += v;
            }
            for (int j = 0; j < k; j++) lab[(size_t)r * k + j] /= sum;
        }
    }
    pair logits = pair_from(z, nk), labels = pair_from(lab, nk);
    pair w = weighted ? pair_random(n, 0.25f, 2.0f) : pair_zeros(1);
    pair loss = pair_junk(1), probs = pair_junk(nk), dz = pair_junk(nk);
    OK(cpu.ops->loss_forward_backward(cpu.ctx, kind, loss.c, probs.c, dz.c, logits.c, labels.c,
                                      weighted ? w.c : NULL, n, k));
    OK(gpu.ops->loss_forward_backward(gpu.ctx, kind, loss.g, probs.g, dz.g, logits.g, labels.g,
                                      weighted ? w.g : NULL, n, k));
    expect_close(&loss, TOL_ELEM, what);
    expect_close(&probs, TOL_ELEM, what);
    expect_close(&dz, TOL_ELEM, what);
    free(z);
    free(lab);
    pair_free(&logits);
    pair_free(&labels);
    pair_free(&w);
    pair_free(&loss);
    pair_free(&probs);
    pair_free(&dz);
}

Test(cuda_ops, loss_forward_backward) {
    TU_REQUIRE_GPU();
    for (int weighted = 0; weighted < 2; weighted++) {
        loss_case(CT_LOSS_BINARY_CE, 32, 1, weighted, true);
        loss_case(CT_LOSS_BINARY_CE, 1, 1, weighted, true);
        loss_case(CT_LOSS_BINARY_CE, 1000, 1, weighted, true); /* more rows than threads */
        loss_case(CT_LOSS_CATEGORICAL_CE, 16, 2, weighted, true);
        loss_case(CT_LOSS_CATEGORICAL_CE, 9, 37, weighted, false);
        loss_case(CT_LOSS_CATEGORICAL_CE, 4, 1000, weighted, true); /* rows longer than a warp */
    }
}

/* ---- optimizers --------------------------------------------------------------------------- */

static void sgd_case(size_t count, float momentum, bool nesterov) {
    char what[96];
    snprintf(what, sizeof what, "sgd %zu momentum %g nesterov %d", count, (double)momentum,
             nesterov);
    ct_update_args u;
    memset(&u, 0, sizeof u);
    u.lr = 0.01f;
    u.momentum = momentum;
    u.nesterov = nesterov;
    pair p = pair_random(count, -1.0f, 1.0f), g = pair_random(count, -1.0f, 1.0f);
    pair v = pair_random(count, -0.1f, 0.1f);
    bool with_v = momentum != 0.0f;
    /* Three steps, so the velocity carries over. */
    for (int step = 0; step < 3; step++) {
        OK(cpu.ops->sgd_update(cpu.ctx, p.c, with_v ? v.c : NULL, g.c, count, &u));
        OK(gpu.ops->sgd_update(gpu.ctx, p.g, with_v ? v.g : NULL, g.g, count, &u));
    }
    /* Multiply-adds may be contracted on one side and not the other: a few ulps. */
    expect_close(&p, TOL_ELEM, what);
    if (with_v) expect_close(&v, TOL_ELEM, what);
    pair_free(&p);
    pair_free(&g);
    pair_free(&v);
}

Test(cuda_ops, sgd_update) {
    TU_REQUIRE_GPU();
    sgd_case(1000, 0.0f, false);
    sgd_case(4097, 0.9f, false);
    sgd_case(333, 0.9f, true);
}

static void adam_case(size_t count, float weight_decay) {
    char what[96];
    snprintf(what, sizeof what, "adam %zu weight decay %g", count, (double)weight_decay);
    ct_update_args u;
    memset(&u, 0, sizeof u);
    u.lr = 1e-3f;
    u.beta1 = 0.9f;
    u.beta2 = 0.999f;
    u.eps = 1e-7f;
    u.weight_decay = weight_decay;
    pair p = pair_random(count, -1.0f, 1.0f), g = pair_random(count, -1.0f, 1.0f);
    pair m = pair_zeros(count), v = pair_zeros(count);
    for (int step = 0; step < 3; step++) {
        OK(cpu.ops->adam_update(cpu.ctx, p.c, m.c, v.c, g.c, count, &u));
        OK(gpu.ops->adam_update(gpu.ctx, p.g, m.g, v.g, g.g, count, &u));
    }
    expect_close(&p, TOL_ELEM, what);
    expect_close(&m, TOL_ELEM, what);
    expect_close(&v, TOL_ELEM, what);
    pair_free(&p);
    pair_free(&g);
    pair_free(&m);
    pair_free(&v);
}

Test(cuda_ops, adam_update) {
    TU_REQUIRE_GPU();
    adam_case(1000, 0.0f);
    adam_case(4099, 1e-4f);
}

/* The fused update over many tensors of assorted sizes (more than one launch holds, empty
 * ones included), each with its own rate multiple and L2 flag, against the CPU's. */
static void multi_case(bool adam, float momentum, bool nesterov) {
    enum { N = 30 };
    char what[96];
    snprintf(what, sizeof what, "update_multi %s momentum %g%s", adam ? "adam" : "sgd",
             (double)momentum, nesterov ? " nesterov" : "");
    ct_update_args u;
    memset(&u, 0, sizeof u);
    u.lr = adam ? 1e-3f : 0.01f;
    u.momentum = momentum;
    u.nesterov = nesterov;
    u.beta1 = 0.9f;
    u.beta2 = 0.999f;
    u.eps = 1e-7f;
    u.weight_decay = adam ? 4e-3f : 0.0f;
    u.l2 = 1e-3f;
    pair p[N], g[N], s0[N], s1[N];
    ct_update_tensor tc[N], tg[N];
    const bool with_s0 = adam || momentum != 0.0f;
    for (int i = 0; i < N; i++) {
        size_t count = i == 7 ? 0 : (size_t)rand_int(1, 5000);
        size_t held = count > 0 ? count : 1; /* tensor 7 is empty; its buffers are not */
        p[i] = pair_random(held, -1.0f, 1.0f);
        g[i] = pair_random(held, -1.0f, 1.0f);
        s0[i] = pair_zeros(held);
        s1[i] = pair_zeros(held);
        float mult = i % 3 == 0 ? 1.0f : 0.1f * (float)(i % 5 + 1);
        tc[i] = (ct_update_tensor){p[i].c, with_s0 ? s0[i].c : NULL, adam ? s1[i].c : NULL,
                                   g[i].c, count, mult, i % 2 == 0};
        tg[i] = (ct_update_tensor){p[i].g, with_s0 ? s0[i].g : NULL, adam ? s1[i].g : NULL,
                                   g[i].g, count, mult, i % 2 == 0};
    }
    for (int step = 0; step < 3; step++) {
        OK(cpu.ops->update_multi(cpu.ctx, adam, tc, N, &u));
        OK(gpu.ops->update_multi(gpu.ctx, adam, tg, N, &u));
    }
    for (int i = 0; i < N; i++) {
        if (tc[i].count == 0) continue;
        char w[160];
        snprintf(w, sizeof w, "%s, tensor %d (%zu values)", what, i, tc[i].count);
        expect_close(&p[i], TOL_ELEM, w);
        if (with_s0) expect_close(&s0[i], TOL_ELEM, w);
        if (adam) expect_close(&s1[i], TOL_ELEM, w);
    }
    for (int i = 0; i < N; i++) {
        pair_free(&p[i]);
        pair_free(&g[i]);
        pair_free(&s0[i]);
        pair_free(&s1[i]);
    }
}

Test(cuda_ops, update_multi) {
    TU_REQUIRE_GPU();
    multi_case(false, 0.0f, false);
    multi_case(false, 0.9f, true);
    multi_case(true, 0.0f, false);
}

/* ---- finite check ------------------------------------------------------------------------- */

static void finite_case(const pair *x, size_t offset, size_t count, bool expected,
                        const char *what) {
    bool fc = !expected, fg = !expected;
    OK(cpu.ops->check_finite(cpu.ctx, &fc, x->c + offset, count));
    OK(gpu.ops->check_finite(gpu.ctx, &fg, x->g + offset, count));
    cr_expect_eq(fc, expected, "cpu %s", what);
    cr_expect_eq(fg, expected, "gpu %s", what);
}

Test(cuda_ops, check_finite) {
    TU_REQUIRE_GPU();
    size_t count = 100003; /* an odd tail after the float4 body */
    float *h = host_random(count, -1e30f, 1e30f, 0);
    pair x = pair_from(h, count);
    finite_case(&x, 0, count, true, "finite data");
    finite_case(&x, 1, count - 1, true, "finite data, unaligned");

    size_t spots[] = {0, 5, 77777, count - 1}; /* head, body, tail */
    float bad[] = {NAN, INFINITY, -INFINITY};
    for (size_t s = 0; s < sizeof spots / sizeof spots[0]; s++) {
        for (size_t b = 0; b < sizeof bad / sizeof bad[0]; b++) {
            pair y = pair_from(h, count);
            float v = bad[b];
            OK(cpu.ops->copy_to_device(cpu.ctx, y.c + spots[s], &v, sizeof v));
            OK(gpu.ops->copy_to_device(gpu.ctx, y.g + spots[s], &v, sizeof v));
            char what[64];
            snprintf(what, sizeof what, "%g at %zu", (double)v, spots[s]);
            finite_case(&y, 0, count, false, what);
            if (spots[s] > 0) finite_case(&y, 1, count - 1, false, what);
            pair_free(&y);
        }
    }
    free(h);
    pair_free(&x);
}
