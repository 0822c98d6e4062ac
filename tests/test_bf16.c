/* bf16 activations on the CPU backend: the rounding itself, the emulated bf16 ops against
 * references in double, and models at bf16 precision against float32 ones.
 *
 * The CPU's bf16 emulation is the oracle of the CUDA backend's bf16 path (test_cuda_ops,
 * test_cuda_model), so what it rounds, and where, is pinned down here:
 *  - ct_bf16_from_float rounds to nearest, ties to even, as __float2bfloat16_rn does: checked
 *    against the exact rule computed from the two neighbouring bf16 values in double.
 *  - conv3x3 with bf16 activations: y = rn(relu(rn(sum x * rn(w)) + b)). The reference sums in
 *    double and the op in float32, so the inner rounding can differ where the float32 sum lands
 *    within float32 rounding of a midpoint between two bf16 values: a small fraction of
 *    elements, each one bf16 step off. The test requires at least 98% of the outputs to be
 *    equal and the norm-wise error under 2e-3 (a step is 2^-8 to 2^-7 relative); a missing
 *    rounding or an unrounded kernel fails (measured: either makes 12% to 17% of the outputs
 *    differ), and a float32 read of bf16 data fails by far.
 *  - backward: dx = rn(sum dy * rn(w)) in bf16, dw = rn(sum dy * x) in float32 storage, db the
 *    float32 sum of the masked dy; the same bounds.
 *  - max pooling moves values: bit-identical to the float32 op on the widened data.
 * Models: the bf16 model computes what the float32 one does up to bf16 rounding of every
 * backbone activation (8 bits: 2^-9 relative each, through 13 convolutions), keeps its backbone
 * activations in half the bytes, and the frozen-prefix cache (features, then forward from them)
 * is as exact as in float32. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/backend.h"
#include "core/dtype.h"
#include "model/model.h"
#include "util.h"

static ct_backend be;

static void setup(void) {
    cr_assert_eq(ct_backend_cpu_open(&be, 0, "bf16"), CT_OK, "%s", ct_last_error());
}
static void teardown(void) { ct_backend_free(&be); }

TestSuite(bf16, .init = setup, .fini = teardown, .timeout = 600);

#define OK(call) cr_assert_eq((call), CT_OK, "%s: %s", #call, ct_last_error())

/* ---- rounding ------------------------------------------------------------------------------ */

/* Round to nearest even by the definition: the nearer of the two bf16 neighbours, the even one
 * on a tie. */
static float round_by_definition(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    uint32_t lo_bits = u & 0xffff0000u, hi_bits = lo_bits + 0x10000u;
    float lo, hi;
    memcpy(&lo, &lo_bits, sizeof lo);
    memcpy(&hi, &hi_bits, sizeof hi); /* the next bf16 away from zero (may be infinity) */
    double dl = fabs((double)f - (double)lo), dh = fabs((double)hi - (double)f);
    if (isinf(hi)) dh = fabs(ldexp(1.0, 128) - fabs((double)f)); /* IEEE overflow threshold */
    if (dl < dh) return lo;
    if (dh < dl) return hi;
    return (lo_bits & 0x10000u) == 0 ? lo : hi;
}

Test(bf16, rounding_is_to_nearest_even) {
    const uint32_t special[] = {0x3f808000u, 0x3f818000u, 0x3f80ffffu, 0x3f807fffu,
                                0xbf808000u, 0xbf818000u, 0x7f7fffffu, 0x7f7f7fffu,
                                0x00000001u, 0x80008000u, 0x00018000u, 0x7f800000u};
    for (size_t i = 0; i < sizeof special / sizeof special[0]; i++) {
        float f;
        memcpy(&f, &special[i], sizeof f);
        float got = ct_bf16_round(f), want = round_by_definition(f);
        cr_expect(got == want, "0x%08x: got %a, want %a", special[i], (double)got, (double)want);
    }
    uint32_t u = 0x12345678u;
    for (int i = 0; i < 200000; i++) {
        u = u * 1664525u + 1013904223u;
        uint32_t bits = u & 0xbfffffffu; /* finite: exponent below 0xff */
        float f;
        memcpy(&f, &bits, sizeof f);
        float got = ct_bf16_round(f), want = round_by_definition(f);
        if (got != want) {
            cr_expect(got == want, "0x%08x: got %a, want %a", bits, (double)got, (double)want);
            break;
        }
    }
    float nan = NAN;
    cr_expect(isnan(ct_bf16_round(nan)));
    cr_expect(isnan(ct_bf16_round(-nan)));
}

Test(bf16, cast_op_and_in_place_widening) {
    enum { N = 1001 };
    float x[N], back[N];
    ct_bf16 h[N];
    tu_fill(x, N, 3, -100.0f, 100.0f);
    OK(be.ops->cast(be.ctx, h, CT_BF16, x, CT_F32, N));
    OK(be.ops->cast(be.ctx, back, CT_F32, h, CT_BF16, N));
    for (int i = 0; i < N; i++) cr_assert(back[i] == ct_bf16_round(x[i]), "element %d", i);
    float buf[N];
    memcpy(buf, h, sizeof h);
    ct_bf16_widen_inplace(buf, N);
    cr_assert_eq(memcmp(buf, back, sizeof buf), 0);
}

/* ---- ops against double references ---------------------------------------------------------- */

static float *rounded(size_t n, uint32_t tag, float lo, float hi) {
    float *x = malloc(n * sizeof *x);
    cr_assert_not_null(x);
    tu_fill(x, n, tag, lo, hi);
    for (size_t i = 0; i < n; i++) x[i] = ct_bf16_round(x[i]);
    return x;
}

static ct_bf16 *to_bf16(const float *x, size_t n) {
    ct_bf16 *h = malloc(n * sizeof *h);
    cr_assert_not_null(h);
    ct_f32_to_bf16(h, x, n);
    return h;
}

static float *widened(const ct_bf16 *h, size_t n) {
    float *x = malloc(n * sizeof *x);
    cr_assert_not_null(x);
    ct_bf16_to_f32(x, h, n);
    return x;
}

/* At least 98% equal and a norm-wise error under 2e-3 (see the file comment). */
static void expect_bf16_close(const float *got, const float *want, size_t n, const char *what) {
    size_t differ = 0;
    for (size_t i = 0; i < n; i++) differ += got[i] != want[i];
    double e = tu_rel_err(got, want, n);
    cr_expect(differ <= n / 50, "%s: %zu of %zu values differ from the reference", what, differ,
              n);
    cr_expect_leq(e, 2e-3, "%s: relative error %.3g", what, e);
}

/* sum over the 3x3 window of x * w, in double, for output (i, yy, xx, o). */
static double window_sum(const float *x, const float *w, int h, int wd, int c, int i, int yy,
                         int xx, int o) {
    double acc = 0.0;
    for (int r = 0; r < 3; r++)
        for (int s = 0; s < 3; s++) {
            int iy = yy + r - 1, ix = xx + s - 1;
            if (iy < 0 || iy >= h || ix < 0 || ix >= wd) continue;
            for (int ch = 0; ch < c; ch++)
                acc += (double)x[(((size_t)i * h + iy) * wd + ix) * c + ch] *
                       w[(((size_t)o * 3 + r) * 3 + s) * c + ch];
        }
    return acc;
}

static void conv_case(int n, int h, int wd, int c, int k, uint32_t tag) {
    const size_t nx = (size_t)n * h * wd * c, ny = (size_t)n * h * wd * k, nw = (size_t)k * 9 * c;
    float *x = rounded(nx, tag, -1.0f, 1.0f), *w = malloc(nw * sizeof *w);
    float *b = malloc((size_t)k * sizeof *b), *wr = malloc(nw * sizeof *wr);
    cr_assert(w && b && wr);
    tu_fill(w, nw, tag + 1, -0.5f, 0.5f);
    tu_fill(b, (size_t)k, tag + 2, -0.5f, 0.5f);
    for (size_t i = 0; i < nw; i++) wr[i] = ct_bf16_round(w[i]);
    ct_bf16 *xh = to_bf16(x, nx), *yh = calloc(ny, sizeof *yh);
    cr_assert_not_null(yh);
    ct_conv_args a = {.n = n, .h = h, .w = wd, .c = c, .k = k, .act = CT_BF16, .x = xh,
                      .wt = w, .b = b, .y = yh, .relu = true};
    OK(be.ops->conv3x3_forward(be.ctx, &a));
    float *y = widened(yh, ny), *ref = malloc(ny * sizeof *ref);
    cr_assert_not_null(ref);
    for (int i = 0; i < n; i++)
        for (int yy = 0; yy < h; yy++)
            for (int xx = 0; xx < wd; xx++)
                for (int o = 0; o < k; o++) {
                    float z = ct_bf16_round((float)window_sum(x, wr, h, wd, c, i, yy, xx, o));
                    float v = z + b[o];
                    ref[(((size_t)i * h + yy) * wd + xx) * k + o] = ct_bf16_round(v < 0 ? 0 : v);
                }
    char what[96];
    snprintf(what, sizeof what, "bf16 conv forward (%d,%d,%d,%d)->%d", n, h, wd, c, k);
    expect_bf16_close(y, ref, ny, what);

    /* Backward from dy, masked by the op's own y. */
    float *dyf = rounded(ny, tag + 3, -1.0f, 1.0f);
    for (size_t i = 0; i < ny; i++)
        if (!(y[i] > 0.0f)) dyf[i] = 0.0f; /* the mask the op must apply */
    ct_bf16 *dyh = to_bf16(dyf, ny), *dxh = calloc(nx, sizeof *dxh);
    float *dw = malloc(nw * sizeof *dw), *db = malloc((size_t)k * sizeof *db);
    cr_assert(dxh && dw && db);
    {
        float *raw = rounded(ny, tag + 3, -1.0f, 1.0f); /* unmasked: the op masks in place */
        ct_f32_to_bf16(dyh, raw, ny);
        free(raw);
    }
    a.dy = dyh, a.dx = dxh, a.dw = dw, a.db = db;
    OK(be.ops->conv3x3_backward(be.ctx, &a, true, true));
    float *dy_after = widened(dyh, ny);
    cr_expect_eq(memcmp(dy_after, dyf, ny * sizeof(float)), 0, "dy is not the masked dy");
    float *dx = widened(dxh, nx), *dx_ref = malloc(nx * sizeof *dx_ref);
    float *dw_ref = malloc(nw * sizeof *dw_ref), *db_ref = malloc((size_t)k * sizeof *db_ref);
    cr_assert(dx_ref && dw_ref && db_ref);
    for (int i = 0; i < n; i++)
        for (int iy = 0; iy < h; iy++)
            for (int ix = 0; ix < wd; ix++)
                for (int ch = 0; ch < c; ch++) {
                    double acc = 0.0;
                    for (int r = 0; r < 3; r++)
                        for (int s = 0; s < 3; s++) {
                            int yy = iy - r + 1, xx = ix - s + 1;
                            if (yy < 0 || yy >= h || xx < 0 || xx >= wd) continue;
                            for (int o = 0; o < k; o++)
                                acc += (double)dyf[(((size_t)i * h + yy) * wd + xx) * k + o] *
                                       wr[(((size_t)o * 3 + r) * 3 + s) * c + ch];
                        }
                    dx_ref[(((size_t)i * h + iy) * wd + ix) * c + ch] = ct_bf16_round((float)acc);
                }
    for (int o = 0; o < k; o++) {
        double bsum = 0.0;
        for (int i = 0; i < n; i++)
            for (int p = 0; p < h * wd; p++) bsum += dyf[((size_t)i * h * wd + p) * k + o];
        db_ref[o] = (float)bsum;
        for (int r = 0; r < 3; r++)
            for (int s = 0; s < 3; s++)
                for (int ch = 0; ch < c; ch++) {
                    double acc = 0.0;
                    for (int i = 0; i < n; i++)
                        for (int yy = 0; yy < h; yy++)
                            for (int xx = 0; xx < wd; xx++) {
                                int iy = yy + r - 1, ix = xx + s - 1;
                                if (iy < 0 || iy >= h || ix < 0 || ix >= wd) continue;
                                acc += (double)dyf[(((size_t)i * h + yy) * wd + xx) * k + o] *
                                       x[(((size_t)i * h + iy) * wd + ix) * c + ch];
                            }
                    dw_ref[(((size_t)o * 3 + r) * 3 + s) * c + ch] = ct_bf16_round((float)acc);
                }
    }
    snprintf(what, sizeof what, "bf16 conv dx (%d,%d,%d,%d)->%d", n, h, wd, c, k);
    expect_bf16_close(dx, dx_ref, nx, what);
    snprintf(what, sizeof what, "bf16 conv dw (%d,%d,%d,%d)->%d", n, h, wd, c, k);
    expect_bf16_close(dw, dw_ref, nw, what);
    for (size_t i = 0; i < nw; i++)
        cr_assert(dw[i] == ct_bf16_round(dw[i]), "dw[%zu] = %a is not a bf16 value", i,
                  (double)dw[i]);
    cr_expect_leq(tu_rel_err(db, db_ref, (size_t)k), 1e-5, "bf16 conv db");

    free(x), free(w), free(b), free(wr), free(xh), free(yh), free(y), free(ref);
    free(dyf), free(dyh), free(dxh), free(dw), free(db), free(dy_after), free(dx), free(dx_ref);
    free(dw_ref), free(db_ref);
}

Test(bf16, conv3x3_against_double) {
    conv_case(2, 7, 9, 3, 16, 100);
    conv_case(1, 6, 5, 16, 8, 200);
    conv_case(3, 4, 4, 8, 24, 300);
}

Test(bf16, maxpool_is_exact) {
    const int n = 2, h = 7, w = 9, c = 8;
    const size_t nx = (size_t)n * h * w * c, ny = (size_t)n * (h / 2) * (w / 2) * c;
    float *x = rounded(nx, 400, -1.0f, 1.0f), *dy = rounded(ny, 401, -1.0f, 1.0f);
    for (size_t i = 0; i < nx; i += 7) x[i] = x[i + 1 < nx ? i + 1 : i]; /* ties */
    float *y = malloc(ny * sizeof *y), *dx = malloc(nx * sizeof *dx);
    ct_bf16 *xh = to_bf16(x, nx), *dyh = to_bf16(dy, ny), *yh = malloc(ny * sizeof *yh);
    ct_bf16 *dxh = malloc(nx * sizeof *dxh);
    cr_assert(y && dx && yh && dxh);
    OK(be.ops->maxpool_forward(be.ctx, CT_F32, y, x, n, h, w, c));
    OK(be.ops->maxpool_forward(be.ctx, CT_BF16, yh, xh, n, h, w, c));
    OK(be.ops->maxpool_backward(be.ctx, CT_F32, dx, dy, x, y, n, h, w, c));
    OK(be.ops->maxpool_backward(be.ctx, CT_BF16, dxh, dyh, xh, yh, n, h, w, c));
    float *yb = widened(yh, ny), *dxb = widened(dxh, nx);
    cr_expect_eq(memcmp(yb, y, ny * sizeof(float)), 0, "bf16 maxpool forward");
    cr_expect_eq(memcmp(dxb, dx, nx * sizeof(float)), 0, "bf16 maxpool backward");
    free(x), free(dy), free(y), free(dx), free(xh), free(dyh), free(yh), free(dxh), free(yb);
    free(dxb);
}

/* ---- models ------------------------------------------------------------------------------ */

#define BATCH 2

typedef struct run {
    ct_model *m;
    float loss;
    float *logits;
    float **grads; /* per layer: kernel then bias gradient, or NULL */
} run;

static void inputs(int hw, float **x, float **y, float *aux, int k) {
    size_t nx = (size_t)BATCH * hw * hw * 3;
    *x = malloc(nx * sizeof **x);
    *y = calloc((size_t)BATCH * k, sizeof **y);
    cr_assert(*x && *y);
    tu_fill(*x, nx, 7, -60.0f, 60.0f);
    tu_fill(aux, BATCH, 8, 30.0f, 45.0f);
    for (int i = 0; i < BATCH; i++) (*y)[i * k + (k == 1 ? 0 : i % k)] = k == 1 ? (float)i : 1.0f;
}

/* One training-mode pass of a fresh model on backend `b`, optionally through the frozen-prefix
 * cache: the output of `cache_layer` computed by ct_model_features and fed back with
 * ct_model_forward_from_host. */
static run run_model(ct_backend *b, const char *head, int hw, int aux_dim, const char *freeze,
                     int cache_layer) {
    ct_model_config cfg = {.input_h = hw, .input_w = hw, .input_c = 3, .aux_dim = aux_dim,
                           .max_batch = BATCH, .head = head, .seed = 5, .freeze_to = freeze};
    run r = {0};
    OK(ct_model_init(&r.m, &cfg, b));
    const int k = ct_model_num_outputs(r.m), nl = ct_model_num_layers(r.m);
    float *x, *y, aux[BATCH];
    inputs(hw, &x, &y, aux, k);
    if (cache_layer >= 0) {
        const ct_layer *l = ct_model_layer(r.m, cache_layer);
        float *feat = malloc((size_t)BATCH * l->out_h * l->out_w * l->out_c * sizeof *feat);
        cr_assert_not_null(feat);
        OK(ct_model_features(r.m, cache_layer, x, aux_dim ? aux : NULL, BATCH, feat));
        /* As the training loop's cache does: the features of other batches are computed before
         * this batch is fed back, so no buffer may still hold this batch's values by chance. */
        const ct_model_config *mc = ct_model_get_config(r.m);
        size_t nx = (size_t)BATCH * mc->input_h * mc->input_w * 3;
        float *other = malloc(nx * sizeof *other);
        float *junk = malloc((size_t)BATCH * l->out_h * l->out_w * l->out_c * sizeof *junk);
        cr_assert(other && junk);
        tu_fill(other, nx, 99, -60.0f, 60.0f);
        OK(ct_model_features(r.m, cache_layer, other, aux_dim ? aux : NULL, BATCH, junk));
        OK(ct_model_forward_from_host(r.m, cache_layer + 1, feat, aux_dim ? aux : NULL, BATCH,
                                      true, 3));
        free(other);
        free(junk);
        free(feat);
    } else {
        OK(ct_model_forward_host(r.m, x, aux_dim ? aux : NULL, BATCH, true, 3));
    }
    OK(ct_model_loss(r.m, y, NULL, &r.loss));
    OK(ct_model_backward(r.m));
    r.logits = malloc((size_t)BATCH * k * sizeof *r.logits);
    cr_assert_not_null(r.logits);
    const ct_layer *top = ct_model_layer(r.m, nl - 1);
    OK(be.ops->copy_to_host(be.ctx, r.logits, top->out, (size_t)BATCH * k * sizeof(float)));
    r.grads = calloc((size_t)nl, sizeof *r.grads);
    cr_assert_not_null(r.grads);
    for (int i = 0; i < nl; i++) {
        const ct_layer *l = ct_model_layer(r.m, i);
        if (l->dkernel.data == NULL) continue;
        r.grads[i] = malloc((l->dkernel.size + l->dbias.size) * sizeof(float));
        cr_assert_not_null(r.grads[i]);
        memcpy(r.grads[i], l->dkernel.data, l->dkernel.size * sizeof(float));
        memcpy(r.grads[i] + l->dkernel.size, l->dbias.data, l->dbias.size * sizeof(float));
    }
    free(x);
    free(y);
    return r;
}

static void run_free(run *r) {
    for (int i = 0; i < ct_model_num_layers(r->m); i++) free(r->grads[i]);
    free(r->grads);
    free(r->logits);
    ct_model_free(r->m);
}

static size_t grad_len(const ct_layer *l) { return l->dkernel.size + l->dbias.size; }

/* bf16 against float32: the same function up to the rounding of every backbone activation.
 * Each rounding is at most 2^-9 relative (norm-wise about half that), 13 convolutions and 5
 * pools deep: the logits move by a few 1e-3. Gradients also see ReLU and max-pool decisions
 * flip where two values are within rounding of each other; as measured for TF32 in
 * test_cuda_model, that moves their norms by up to a few tenths. A bf16 tensor read as float32,
 * a lost bridge or a missing gradient gives errors of order 1. */
static void compare_precisions(const char *head, int hw, int aux_dim) {
    ct_backend f32;
    OK(ct_backend_cpu_open(&f32, 0, "fp32"));
    run a = run_model(&f32, head, hw, aux_dim, NULL, -1);
    run b = run_model(&be, head, hw, aux_dim, NULL, -1);
    cr_assert_eq(ct_model_activation_dtype(a.m), CT_F32);
    cr_assert_eq(ct_model_activation_dtype(b.m), CT_BF16);
    const int k = ct_model_num_outputs(a.m), nl = ct_model_num_layers(a.m);
    double el = tu_rel_err(b.logits, a.logits, (size_t)BATCH * k);
    printf("bf16 vs fp32 (%s, %dx%d): loss %.6f vs %.6f, logits %.3g\n", head, hw, hw, b.loss,
           a.loss, el);
    cr_expect_leq(el, 5e-2, "%s logits: %.3g", head, el);
    cr_expect_leq(fabs(b.loss - a.loss), 2e-2 * fabs(a.loss) + 1e-3, "%s loss", head);
    for (int i = 0; i < nl; i++) {
        const ct_layer *l = ct_model_layer(a.m, i);
        if (a.grads[i] == NULL) continue;
        cr_assert_not_null(b.grads[i], "%s has no gradient at bf16", l->name);
        double e = tu_rel_err(b.grads[i], a.grads[i], grad_len(l));
        printf("  %-14s gradient %.3g\n", l->name, e);
        /* Not the iceberg head's one-unit angle branch: its two gradient values are sums of
         * two samples' terms of opposite sign and ~40x the size of the result, so a 1e-3
         * change of the terms moves them by tens of percent (measured: kernel -0.0174 vs
         * -0.0021, bias 0.0028 vs 0.0033, from terms of about 0.1 x 40). */
        if (grad_len(l) > 2) cr_expect_leq(e, 0.5, "%s gradient: %.3g", l->name, e);
    }
    /* The backbone's activations take half the bytes. */
    ct_model_memory ma, mb;
    ct_model_memory_get(a.m, &ma);
    ct_model_memory_get(b.m, &mb);
    printf("  activations %zu -> %zu bytes\n", ma.activations, mb.activations);
    cr_expect(mb.activations < 0.6 * (double)ma.activations, "activations %zu vs %zu",
              mb.activations, ma.activations);
    cr_expect_eq(mb.params, ma.params);
    cr_expect_eq(mb.grads, ma.grads);
    run_free(&a);
    run_free(&b);
    ct_backend_free(&f32);
}

Test(bf16, model_iceberg_follows_fp32) { compare_precisions("iceberg", 48, 1); }
Test(bf16, model_mri_follows_fp32) { compare_precisions("mri", 64, 0); }

/* The frozen-prefix cache hands activations through the host as float32: widened from bf16 on
 * the way out, rounded back (exactly) on the way in, so a cached run equals an uncached one bit
 * for bit, as in float32: at the backbone's output (through the bridge) and inside it. */
static void expect_cache_exact(const char *head, int hw, int aux_dim, const char *freeze) {
    ct_model_config probe = {.input_h = hw, .input_w = hw, .input_c = 3, .aux_dim = aux_dim,
                             .max_batch = BATCH, .head = head, .seed = 5};
    ct_model *m = NULL;
    OK(ct_model_init(&m, &probe, &be));
    int layer = (int)(ct_model_find(m, freeze) - ct_model_layer(m, 0));
    ct_model_free(m);
    run plain = run_model(&be, head, hw, aux_dim, freeze, -1);
    run cached = run_model(&be, head, hw, aux_dim, freeze, layer);
    cr_expect(plain.loss == cached.loss, "%s from %s: loss %.9g vs %.9g", head, freeze,
              plain.loss, cached.loss);
    for (int i = 0; i < ct_model_num_layers(plain.m); i++) {
        if (plain.grads[i] == NULL) continue;
        cr_expect_eq(memcmp(plain.grads[i], cached.grads[i],
                            grad_len(ct_model_layer(plain.m, i)) * sizeof(float)), 0,
                     "%s from %s: %s gradient differs", head, freeze,
                     ct_model_layer(plain.m, i)->name);
    }
    run_free(&plain);
    run_free(&cached);
}

Test(bf16, frozen_prefix_cache_is_exact) {
    expect_cache_exact("mri", 64, 0, "block5_pool");
    expect_cache_exact("iceberg", 48, 1, "block5_pool");
    expect_cache_exact("iceberg", 48, 1, "block4_pool");
    /* The aux branch first: the layer after the cache is not the one reading the bridge. */
    expect_cache_exact("aux:4,gmp,concat,dense:1:sigmoid", 48, 1, "block5_pool");
}

/* The CPU emulates bf16 only when asked by name; tf32 is the GPU's alone. */
Test(bf16, precision_names) {
    cr_expect_str_eq(ct_backend_precision(&be), "bf16");
    ct_backend other;
    cr_expect_eq(ct_backend_cpu_open(&other, 0, "tf32"), CT_EINVAL);
    cr_expect_eq(ct_backend_open(&other, "cpu", "tf32", NULL, 0), CT_EINVAL);
    OK(ct_backend_open(&other, "cpu", "bf16", NULL, 0));
    cr_expect_str_eq(ct_backend_precision(&other), "bf16");
    ct_backend_free(&other);
    OK(ct_backend_cpu_init(&other, 0));
    cr_expect_str_eq(ct_backend_precision(&other), "fp32");
    ct_backend_free(&other);
}
