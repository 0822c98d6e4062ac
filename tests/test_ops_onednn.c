/* The CPU backend's oneDNN convolutions and max pooling against its hand-written reference path
 * (CUTUNE_CPU_KERNELS=reference: im2col + OpenBLAS, one image at a time), which test_ops_cpu
 * checks against naive loops and finite differences.
 *
 * Two backends run side by side on the same data: one opened with the knob set to "reference",
 * one with it unset (oneDNN, the default). Shapes are odd (1x1, 3x5, 7x6, channels 1 to 19,
 * batches 1 to 3) so that no vector width or block divides them, plus one VGG-like shape whose
 * channel counts do (64 -> 64, where oneDNN picks its fastest kernels).
 *
 * Tolerances. Both paths sum 9*C float32 products per output (per weight, n*h*w of them for dw)
 * in different orders; each order's error is about sqrt(terms) * 6e-8 relative to the sum of
 * magnitudes, so for at most ~1200 terms of mixed sign the relative norm error is under 1e-5 in
 * practice (measured: 1e-7 to 2e-6). REL_TOL = 1e-4 leaves margin while a lost tap, a wrong
 * layout (ohwi vs oihw) or a missing bias or ReLU gives errors of order 0.1 to 1. Max pooling
 * copies values, so it must agree bit for bit. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L /* setenv */
#endif
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/backend.h"
#include "cpu/cpu.h"
#include "util.h"

#define REL_TOL 1e-4

static ct_backend ref, dnn;

static void setup(void) {
    cr_assert_eq(setenv("CUTUNE_CPU_KERNELS", "reference", 1), 0);
    cr_assert_eq(ct_backend_cpu_init(&ref, 0), CT_OK);
    cr_assert_eq(unsetenv("CUTUNE_CPU_KERNELS"), 0);
    cr_assert_eq(ct_backend_cpu_init(&dnn, 0), CT_OK);
    cr_assert_null(((ct_cpu_ctx *)ref.ctx)->dnnl, "the reference backend uses oneDNN");
    cr_assert_not_null(((ct_cpu_ctx *)dnn.ctx)->dnnl, "the default backend skips oneDNN");
}

static void teardown(void) {
    ct_backend_free(&ref);
    ct_backend_free(&dnn);
}

TestSuite(ops_onednn, .init = setup, .fini = teardown);

static float *falloc(size_t n) {
    float *p = calloc(n > 0 ? n : 1, sizeof *p);
    cr_assert_not_null(p);
    return p;
}

/* One convolution's buffers for one backend. */
typedef struct conv_bufs {
    float *y, *dy, *dx, *dw, *db;
} conv_bufs;

static void conv_run(ct_backend *be, const ct_conv_args *shape, const float *x, const float *wt,
                     const float *b, const float *r, conv_bufs *o) {
    const size_t ny = (size_t)shape->n * shape->h * shape->w * shape->k;
    const size_t nx = (size_t)shape->n * shape->h * shape->w * shape->c;
    const size_t nw = (size_t)shape->k * 9 * shape->c;
    o->y = falloc(ny), o->dy = falloc(ny), o->dx = falloc(nx), o->dw = falloc(nw),
    o->db = falloc(shape->k);
    memcpy(o->dy, r, ny * sizeof *r);
    ct_conv_args a = *shape;
    a.x = x, a.wt = wt, a.b = b, a.y = o->y, a.dy = o->dy, a.dx = o->dx, a.dw = o->dw,
    a.db = o->db;
    cr_assert_eq(be->ops->conv3x3_forward(be->ctx, &a), CT_OK, "%s", ct_last_error());
    cr_assert_eq(be->ops->conv3x3_backward(be->ctx, &a, true, true), CT_OK, "%s",
                 ct_last_error());
}

static void conv_free(conv_bufs *o) {
    free(o->y), free(o->dy), free(o->dx), free(o->dw), free(o->db);
}

static void expect_close(const float *got, const float *want, size_t n, const char *what,
                         const char *name) {
    const double e = tu_rel_err(got, want, n);
    cr_expect(e <= REL_TOL, "%s %s: relative error %.3g (tolerance %g)", name, what, e, REL_TOL);
}

/* n, h, w, c, k */
static const int conv_shapes[][5] = {{1, 1, 1, 1, 1}, {2, 3, 5, 3, 7},  {3, 7, 6, 5, 2},
                                     {1, 5, 3, 19, 9}, {2, 4, 4, 16, 24}, {2, 6, 5, 64, 64}};

static void conv_compare(const int *sh, bool relu, uint32_t tag) {
    ct_conv_args a = {.n = sh[0], .h = sh[1], .w = sh[2], .c = sh[3], .k = sh[4], .relu = relu};
    const size_t nx = (size_t)a.n * a.h * a.w * a.c, ny = (size_t)a.n * a.h * a.w * a.k;
    const size_t nw = (size_t)a.k * 9 * a.c;
    float *x = falloc(nx), *wt = falloc(nw), *b = falloc(a.k), *r = falloc(ny);
    tu_fill(x, nx, tag, -1.0f, 1.0f);
    tu_fill(wt, nw, tag + 1, -0.5f, 0.5f);
    tu_fill(b, a.k, tag + 2, -0.3f, 0.3f);
    tu_fill(r, ny, tag + 3, -1.0f, 1.0f);
    conv_bufs want, got;
    conv_run(&ref, &a, x, wt, b, r, &want);
    conv_run(&dnn, &a, x, wt, b, r, &got);
    char name[80];
    snprintf(name, sizeof name, "conv %dx%dx%dx%d->%d relu=%d", a.n, a.h, a.w, a.c, a.k, relu);
    /* ReLU zeroes exactly where both pre-activations are <= 0, bar values within rounding of 0 */
    expect_close(got.y, want.y, ny, "y", name);
    expect_close(got.dy, want.dy, ny, "dy (masked)", name);
    expect_close(got.dx, want.dx, nx, "dx", name);
    expect_close(got.dw, want.dw, nw, "dw", name);
    expect_close(got.db, want.db, a.k, "db", name);
    conv_free(&want), conv_free(&got);
    free(x), free(wt), free(b), free(r);
}

Test(ops_onednn, conv_matches_the_reference) {
    for (size_t s = 0; s < sizeof conv_shapes / sizeof *conv_shapes; s++) {
        conv_compare(conv_shapes[s], false, 700 + 10 * (uint32_t)s);
        conv_compare(conv_shapes[s], true, 800 + 10 * (uint32_t)s);
    }
}

/* need_dgrad / need_wgrad: what is not asked for is not written; the cached primitives of one
 * shape serve both calls. */
Test(ops_onednn, conv_backward_writes_only_what_is_asked) {
    ct_conv_args a = {.n = 2, .h = 5, .w = 3, .c = 4, .k = 6, .relu = false};
    const size_t nx = 2 * 5 * 3 * 4, ny = 2 * 5 * 3 * 6, nw = 6 * 9 * 4;
    float *x = falloc(nx), *wt = falloc(nw), *b = falloc(6), *y = falloc(ny), *dy = falloc(ny),
          *dx = falloc(nx), *dw = falloc(nw), *db = falloc(6);
    tu_fill(x, nx, 901, -1.0f, 1.0f);
    tu_fill(wt, nw, 902, -1.0f, 1.0f);
    tu_fill(dy, ny, 903, -1.0f, 1.0f);
    a.x = x, a.wt = wt, a.b = b, a.y = y, a.dy = dy, a.dx = dx, a.dw = dw, a.db = db;
    for (size_t i = 0; i < nw; i++) dw[i] = 7.0f;
    cr_assert_eq(dnn.ops->conv3x3_backward(dnn.ctx, &a, true, false), CT_OK);
    for (size_t i = 0; i < nw; i++) cr_assert_eq(dw[i], 7.0f, "dw written without need_wgrad");
    for (size_t i = 0; i < nx; i++) dx[i] = 7.0f;
    cr_assert_eq(dnn.ops->conv3x3_backward(dnn.ctx, &a, false, true), CT_OK);
    for (size_t i = 0; i < nx; i++) cr_assert_eq(dx[i], 7.0f, "dx written without need_dgrad");
    free(x), free(wt), free(b), free(y), free(dy), free(dx), free(dw), free(db);
}

/* Run to run: the same call twice gives the same bits (the resume tests rely on it). */
Test(ops_onednn, conv_is_deterministic) {
    const int sh[5] = {3, 9, 7, 32, 16};
    ct_conv_args a = {.n = sh[0], .h = sh[1], .w = sh[2], .c = sh[3], .k = sh[4], .relu = true};
    const size_t nx = (size_t)3 * 9 * 7 * 32, ny = (size_t)3 * 9 * 7 * 16, nw = (size_t)16 * 9 * 32;
    float *x = falloc(nx), *wt = falloc(nw), *b = falloc(16), *r = falloc(ny);
    tu_fill(x, nx, 950, -1.0f, 1.0f);
    tu_fill(wt, nw, 951, -0.5f, 0.5f);
    tu_fill(r, ny, 953, -1.0f, 1.0f);
    conv_bufs one, two;
    conv_run(&dnn, &a, x, wt, b, r, &one);
    conv_run(&dnn, &a, x, wt, b, r, &two);
    cr_expect_eq(memcmp(one.y, two.y, ny * sizeof(float)), 0, "y differs run to run");
    cr_expect_eq(memcmp(one.dx, two.dx, nx * sizeof(float)), 0, "dx differs run to run");
    cr_expect_eq(memcmp(one.dw, two.dw, nw * sizeof(float)), 0, "dw differs run to run");
    cr_expect_eq(memcmp(one.db, two.db, 16 * sizeof(float)), 0, "db differs run to run");
    cr_expect_gt(ct_cpu_scratch_bytes(dnn.ctx), 0, "oneDNN's scratchpad is not counted");
    conv_free(&one), conv_free(&two);
    free(x), free(wt), free(b), free(r);
}

/* More shapes than the primitive cache holds: evicted entries are remade and still right. */
Test(ops_onednn, cache_eviction_keeps_results_right) {
    const int base[5] = {1, 3, 3, 2, 3};
    for (int round = 0; round < 2; round++)
        for (int i = 0; i < 90; i++) {
            int sh[5] = {base[0] + i % 3, base[1] + i % 5, base[2] + i / 15, base[3], base[4]};
            if (i % 10 == 0 || round == 1) conv_compare(sh, i % 2 == 1, 1000 + (uint32_t)i);
            else {
                /* forward only: fills the cache with more entries, cheaply */
                ct_conv_args a = {.n = sh[0], .h = sh[1], .w = sh[2], .c = sh[3], .k = sh[4]};
                float *buf = falloc((size_t)sh[0] * sh[1] * sh[2] * 3 * 2 + 64);
                a.x = buf, a.wt = buf, a.b = buf, a.y = buf + (size_t)sh[0] * sh[1] * sh[2] * 3;
                cr_assert_eq(dnn.ops->conv3x3_forward(dnn.ctx, &a), CT_OK);
                free(buf);
            }
        }
}

/* n, h, w, c: odd sizes floor */
static const int pool_shapes[][4] = {{1, 5, 7, 3}, {2, 4, 4, 2}, {3, 3, 3, 1}, {2, 2, 6, 5},
                                     {2, 1, 1, 3}, {2, 9, 11, 64}};

Test(ops_onednn, maxpool_matches_the_reference_bit_for_bit) {
    for (size_t s = 0; s < sizeof pool_shapes / sizeof *pool_shapes; s++) {
        const int n = pool_shapes[s][0], h = pool_shapes[s][1], w = pool_shapes[s][2],
                  c = pool_shapes[s][3];
        const size_t nx = (size_t)n * h * w * c, ny = (size_t)n * (h / 2) * (w / 2) * c;
        float *x = falloc(nx), *dy = falloc(ny), *y[2], *dx[2];
        tu_fill(x, nx, 1200 + (uint32_t)s, -1.0f, 1.0f); /* ties have probability ~0 */
        tu_fill(dy, ny, 1300 + (uint32_t)s, -1.0f, 1.0f);
        ct_backend *be[2] = {&ref, &dnn};
        for (int i = 0; i < 2; i++) {
            y[i] = falloc(ny), dx[i] = falloc(nx);
            for (size_t j = 0; j < nx; j++) dx[i][j] = 12345.0f; /* every element is written */
            cr_assert_eq(be[i]->ops->maxpool_forward(be[i]->ctx, CT_F32, y[i], x, n, h, w, c),
                         CT_OK, "%s", ct_last_error());
            cr_assert_eq(be[i]->ops->maxpool_backward(be[i]->ctx, CT_F32, dx[i], dy, x, y[i], n,
                                                      h, w, c), CT_OK, "%s", ct_last_error());
        }
        cr_expect_eq(memcmp(y[0], y[1], ny * sizeof(float)), 0, "maxpool %dx%dx%dx%d: y", n, h,
                     w, c);
        cr_expect_eq(memcmp(dx[0], dx[1], nx * sizeof(float)), 0, "maxpool %dx%dx%dx%d: dx", n,
                     h, w, c);
        for (int i = 0; i < 2; i++) free(y[i]), free(dx[i]);
        free(x), free(dy);
    }
}

Test(ops_onednn, a_bad_knob_value_is_an_error_that_names_it) {
    ct_backend be = {0};
    cr_assert_eq(setenv("CUTUNE_CPU_KERNELS", "mkl", 1), 0);
    ct_status s = ct_backend_cpu_init(&be, 0);
    cr_assert_eq(unsetenv("CUTUNE_CPU_KERNELS"), 0);
    cr_assert_eq(s, CT_EINVAL);
    cr_expect_not_null(strstr(ct_last_error(), "CUTUNE_CPU_KERNELS"), "%s", ct_last_error());
}

/* NaN: a NaN input gives NaN outputs through the convolution and its ReLU, and a pool window
 * whose values are all NaN gives NaN, so that a diverging run's loss is NaN and reported
 * (model::nan_loss_is_reported). */
Test(ops_onednn, nan_propagates) {
    ct_conv_args a = {.n = 1, .h = 3, .w = 3, .c = 2, .k = 3, .relu = true};
    float x[18], wt[54], b[3] = {0}, y[27];
    tu_fill(x, 18, 1400, -1.0f, 1.0f);
    tu_fill(wt, 54, 1401, -1.0f, 1.0f);
    x[8] = NAN; /* the centre pixel: every output reads it */
    a.x = x, a.wt = wt, a.b = b, a.y = y;
    cr_assert_eq(dnn.ops->conv3x3_forward(dnn.ctx, &a), CT_OK);
    for (int i = 0; i < 27; i++) cr_expect(isnan(y[i]), "conv y[%d] = %g, expected NaN", i, y[i]);
    float px[4 * 2], py[2] = {0, 0};
    for (int i = 0; i < 8; i++) px[i] = NAN;
    cr_assert_eq(dnn.ops->maxpool_forward(dnn.ctx, CT_F32, py, px, 1, 2, 2, 2), CT_OK);
    cr_expect(isnan(py[0]) && isnan(py[1]), "all-NaN windows pooled to %g, %g", py[0], py[1]);
}
