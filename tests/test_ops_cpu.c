/* Every op of the CPU backend, forward and backward, against naive references and finite
 * differences.
 *
 * conv3x3 and dense are checked forward against direct double loops (with and without ReLU) and
 * backward by central differences of L = sum(act(z) * r) for a fixed random r, plus the
 * need_dgrad / need_wgrad flags and the documented overwrite of dy. Max pool is checked on odd
 * sizes (which floor), by finite differences on distinct values and on explicit ties; global
 * average and max pool forward and backward; dropout for its scaling, keep rate, the mask reused
 * in backward and addressed by (seed, layer, step); concat with and without either gradient;
 * both losses against their textbook formulas in double, for weights, gradients and extreme
 * logits; SGD (plain, momentum, Nesterov) and Adam/AdamW against hand-computed steps; and
 * check_finite. Shapes are small and odd (1x1, 3x3, 5x7) with batch sizes 1 to 3, and all data
 * comes from tu_fill, so every run sees the same numbers.
 *
 * Finite differences. Conv, dense and pooling outputs are affine (piecewise affine with ReLU or
 * max) in any single input, so central differences have no truncation error and only float32
 * rounding of the outputs remains. Changing one input changes only the outputs that read it, and
 * every other output is recomputed bit-identically, so the noise in L is that of at most ~100
 * outputs of size O(1) with relative error ~1e-7 each: about 1e-6, which eps = 1e-2 turns into
 * ~1e-4 of an O(1) gradient. The runs measure 1e-6 to 2e-5, and 1e-4 for the global average
 * pool, whose gradients r / (h w) are small against that noise. A step shrunk for a ReLU kink
 * (below) multiplies the noise of that coordinate by up to 16. FD_TOL = 1e-2 on the relative
 * norm error covers all this with margin, while a wrong index, a lost tap, an unzeroed
 * accumulator or a missing ReLU mask gives errors of order 0.1 to 1 (checked by mutating
 * src/cpu).
 *
 * ReLU kinks. With ReLU, a coordinate whose step moves a pre-activation across zero would see
 * the kink. The pre-activations are affine in the coordinate, so this happens exactly when some
 * pre-activation has different signs at +eps and -eps; the step is then shrunk (eps/4, eps/16)
 * and the coordinate skipped only if it still crosses. */
#include <criterion/criterion.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/backend.h"
#include "util.h"

#define FD_EPS 1e-2f
#define FD_TOL 1e-2
#define SENTINEL 12345.0f

static ct_backend be;

static void setup(void) { cr_assert_eq(ct_backend_cpu_init(&be, 0), CT_OK); }
static void teardown(void) { ct_backend_free(&be); }

TestSuite(ops_cpu, .init = setup, .fini = teardown);

static float *falloc(size_t n) {
    float *p = malloc((n > 0 ? n : 1) * sizeof *p);
    cr_assert_not_null(p);
    return p;
}

static float *fdup(const float *x, size_t n) {
    float *p = falloc(n);
    memcpy(p, x, n * sizeof *p);
    return p;
}

static void fset(float *x, size_t n, float v) {
    for (size_t i = 0; i < n; i++) x[i] = v;
}

static void expect_all(const float *x, size_t n, float v, const char *what) {
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(x[i], v, "%s[%zu] = %g, expected %g", what, i, x[i], v);
}

/* ---- finite differences ---- */

/* A function under test: `forward` recomputes z (nz) from the current inputs, and the loss is
 * L = sum(act(z) * r), act being ReLU or the identity. */
typedef struct fd_fn {
    void (*forward)(void *u);
    void *u;
    const float *z; /* (nz) */
    const float *r; /* (nz) */
    size_t nz;
    bool relu;
} fd_fn;

static double fd_loss(const fd_fn *f) {
    f->forward(f->u);
    double l = 0.0;
    for (size_t j = 0; j < f->nz; j++) {
        double z = f->z[j];
        if (f->relu && z < 0.0) z = 0.0;
        l += z * f->r[j];
    }
    return l;
}

/* Compares grad (count) with central differences of L in each coordinate of param. */
static void fd_check(const fd_fn *f, float *param, size_t count, const float *grad,
                     const char *what) {
    float *zp = falloc(f->nz);
    double num = 0.0, den = 0.0;
    size_t used = 0;
    for (size_t i = 0; i < count; i++) {
        const float p0 = param[i];
        float eps = FD_EPS;
        for (int attempt = 0; attempt < 3; attempt++, eps /= 4.0f) {
            const float hi = p0 + eps, lo = p0 - eps;
            param[i] = hi;
            double lp = fd_loss(f);
            memcpy(zp, f->z, f->nz * sizeof *zp);
            param[i] = lo;
            double lm = fd_loss(f);
            param[i] = p0;
            bool crossed = false;
            for (size_t j = 0; f->relu && j < f->nz && !crossed; j++)
                crossed = (zp[j] > 0.0f) != (f->z[j] > 0.0f);
            if (crossed) continue;
            /* The step actually taken is hi - lo in float, not exactly 2 eps. */
            double d = (lp - lm) / ((double)hi - (double)lo) - grad[i];
            num += d * d;
            den += (double)grad[i] * grad[i];
            used++;
            break;
        }
    }
    free(zp);
    f->forward(f->u); /* leave z as at the unperturbed point */
    /* Kinks are rare at these sizes (no coordinate crosses one at eps = 1e-2 in these runs);
     * a check that skipped many coordinates would prove little. */
    cr_assert(used * 4 >= count * 3, "%s: only %zu of %zu coordinates free of ReLU kinks", what,
              used, count);
    /* An all-zero gradient (every output cut by ReLU) would make the comparison vacuous. */
    cr_assert(den > 0.0, "%s: the gradient is zero everywhere; choose other data", what);
    double err = sqrt(num / den);
    cr_expect(err <= FD_TOL, "%s: finite-difference relative error %.3g (%zu coordinates)", what,
              err, used);
}

/* ---- conv3x3 and dense: one harness ---- */

/* A parametrised layer (conv3x3 or dense) with its data: x, wt, b and the loss weights r from
 * tu_fill, ref the naive forward output. */
typedef struct layer_case {
    char name[64];
    bool is_conv, relu;
    ct_conv_args conv;   /* sizes only: the pointers are set per call */
    ct_dense_args dense; /* sizes only */
    size_t nx, nw, nb, ny;
    float *x, *wt, *b, *r, *ref; /* inputs and the expected output */
    float *y, *z, *dy, *dx, *dw, *db;
} layer_case;

static void layer_alloc(layer_case *lc, size_t nx, size_t nw, size_t nb, size_t ny, uint32_t tag,
                        float b_lo) {
    lc->nx = nx, lc->nw = nw, lc->nb = nb, lc->ny = ny;
    lc->x = falloc(nx), lc->wt = falloc(nw), lc->b = falloc(nb), lc->r = falloc(ny);
    lc->ref = falloc(ny), lc->y = falloc(ny), lc->z = falloc(ny), lc->dy = falloc(ny);
    lc->dx = falloc(nx), lc->dw = falloc(nw), lc->db = falloc(nb);
    tu_fill(lc->x, nx, tag, -1.0f, 1.0f);
    tu_fill(lc->wt, nw, tag + 1, -0.5f, 0.5f);
    tu_fill(lc->b, nb, tag + 2, b_lo, 0.5f);
    tu_fill(lc->r, ny, tag + 3, -1.0f, 1.0f);
}

static void layer_free(layer_case *lc) {
    float *all[11] = {lc->x, lc->wt, lc->b, lc->r, lc->ref, lc->y, lc->z, lc->dy, lc->dx, lc->dw,
                      lc->db};
    for (int i = 0; i < 11; i++) free(all[i]);
}

static void layer_forward(layer_case *lc, float *out, bool relu) {
    if (lc->is_conv) {
        ct_conv_args a = lc->conv;
        a.x = lc->x, a.wt = lc->wt, a.b = lc->b, a.y = out, a.relu = relu;
        cr_assert_eq(be.ops->conv3x3_forward(be.ctx, &a), CT_OK);
    } else {
        ct_dense_args a = lc->dense;
        a.x = lc->x, a.wt = lc->wt, a.b = lc->b, a.y = out, a.relu = relu;
        cr_assert_eq(be.ops->dense_forward(be.ctx, &a), CT_OK);
    }
}

/* Backward from dL/dy = r at the forward output y. */
static void layer_backward(layer_case *lc, bool dgrad, bool wgrad) {
    memcpy(lc->dy, lc->r, lc->ny * sizeof *lc->dy);
    if (lc->is_conv) {
        ct_conv_args a = lc->conv;
        a.x = lc->x, a.wt = lc->wt, a.b = lc->b, a.y = lc->y, a.relu = lc->relu;
        a.dy = lc->dy, a.dx = lc->dx, a.dw = lc->dw, a.db = lc->db;
        cr_assert_eq(be.ops->conv3x3_backward(be.ctx, &a, dgrad, wgrad), CT_OK);
    } else {
        ct_dense_args a = lc->dense;
        a.x = lc->x, a.wt = lc->wt, a.b = lc->b, a.y = lc->y, a.relu = lc->relu;
        a.dy = lc->dy, a.dx = lc->dx, a.dw = lc->dw, a.db = lc->db;
        cr_assert_eq(be.ops->dense_backward(be.ctx, &a, dgrad, wgrad), CT_OK);
    }
}

static void layer_fd_forward(void *u) {
    layer_case *lc = u;
    layer_forward(lc, lc->z, false);
}

static void layer_check(layer_case *lc) {
    layer_forward(lc, lc->y, lc->relu);
    /* float32 dot products of at most 45 terms against double: the relative norm error is a few
     * unit roundoffs (~1e-7); 1e-5 leaves a wide margin, and a wrong tap or index gives ~0.1. */
    double err = tu_rel_err(lc->y, lc->ref, lc->ny);
    cr_expect(err <= 1e-5, "%s: forward error %.3g", lc->name, err);

    fset(lc->dx, lc->nx, SENTINEL); /* written, not accumulated */
    fset(lc->dw, lc->nw, SENTINEL);
    fset(lc->db, lc->nb, SENTINEL);
    layer_backward(lc, true, true);
    /* Documented: dy now holds dL/d(pre-activation), r masked by y > 0 under ReLU. */
    for (size_t j = 0; j < lc->ny; j++)
        cr_assert_eq(lc->dy[j], lc->relu && !(lc->y[j] > 0.0f) ? 0.0f : lc->r[j],
                     "%s: dy[%zu] overwritten wrongly", lc->name, j);
    fd_fn f = {.forward = layer_fd_forward, .u = lc, .z = lc->z, .r = lc->r, .nz = lc->ny,
               .relu = lc->relu};
    char what[3][80];
    const char *names[3] = {"dx", "dw", "db"};
    for (int t = 0; t < 3; t++) snprintf(what[t], sizeof what[t], "%s %s", lc->name, names[t]);
    fd_check(&f, lc->x, lc->nx, lc->dx, what[0]);
    fd_check(&f, lc->wt, lc->nw, lc->dw, what[1]);
    fd_check(&f, lc->b, lc->nb, lc->db, what[2]);

    /* The flags: what is not requested stays untouched, and what is requested is the same
     * arithmetic on the same inputs, so it is compared bit for bit with the full run. */
    float *dx0 = fdup(lc->dx, lc->nx), *dw0 = fdup(lc->dw, lc->nw), *db0 = fdup(lc->db, lc->nb);
    fset(lc->dx, lc->nx, SENTINEL);
    layer_backward(lc, false, true);
    expect_all(lc->dx, lc->nx, SENTINEL, "dx without need_dgrad");
    cr_expect_arr_eq(lc->dw, dw0, lc->nw * sizeof *dw0, "%s: dw without need_dgrad", lc->name);
    cr_expect_arr_eq(lc->db, db0, lc->nb * sizeof *db0, "%s: db without need_dgrad", lc->name);
    fset(lc->dw, lc->nw, SENTINEL);
    fset(lc->db, lc->nb, SENTINEL);
    layer_backward(lc, true, false);
    expect_all(lc->dw, lc->nw, SENTINEL, "dw without need_wgrad");
    expect_all(lc->db, lc->nb, SENTINEL, "db without need_wgrad");
    cr_expect_arr_eq(lc->dx, dx0, lc->nx * sizeof *dx0, "%s: dx without need_wgrad", lc->name);
    fset(lc->dx, lc->nx, SENTINEL);
    layer_backward(lc, false, false);
    expect_all(lc->dx, lc->nx, SENTINEL, "dx with no gradient requested");
    expect_all(lc->dw, lc->nw, SENTINEL, "dw with no gradient requested");
    free(dx0), free(dw0), free(db0);
}

static void naive_conv(float *y, const float *x, const float *wt, const float *b, int n, int h,
                       int w, int c, int k, bool relu) {
    for (int i = 0; i < n; i++)
        for (int yy = 0; yy < h; yy++)
            for (int xx = 0; xx < w; xx++)
                for (int o = 0; o < k; o++) {
                    double acc = b[o];
                    for (int r = 0; r < 3; r++)
                        for (int s = 0; s < 3; s++) {
                            int iy = yy + r - 1, ix = xx + s - 1;
                            if (iy < 0 || iy >= h || ix < 0 || ix >= w) continue;
                            for (int ch = 0; ch < c; ch++)
                                acc += (double)x[(((size_t)i * h + iy) * w + ix) * c + ch] *
                                       wt[(((size_t)o * 3 + r) * 3 + s) * c + ch];
                        }
                    if (relu && acc < 0.0) acc = 0.0;
                    y[(((size_t)i * h + yy) * w + xx) * k + o] = (float)acc;
                }
}

/* n, h, w, c, k */
static const int conv_shapes[][5] = {
    {1, 5, 7, 3, 4}, {2, 3, 3, 2, 5}, {3, 1, 1, 4, 3}, {2, 4, 6, 1, 2}, {1, 2, 5, 5, 3}};

static void conv_case(const int *sh, bool relu, uint32_t tag) {
    const int n = sh[0], h = sh[1], w = sh[2], c = sh[3], k = sh[4];
    layer_case lc = {.is_conv = true, .relu = relu,
                     .conv = {.n = n, .h = h, .w = w, .c = c, .k = k}};
    snprintf(lc.name, sizeof lc.name, "conv %dx%dx%dx%d->%d relu=%d", n, h, w, c, k, relu);
    layer_alloc(&lc, (size_t)n * h * w * c, (size_t)k * 9 * c, (size_t)k, (size_t)n * h * w * k,
                tag, -0.5f);
    naive_conv(lc.ref, lc.x, lc.wt, lc.b, n, h, w, c, k, relu);
    layer_check(&lc);
    layer_free(&lc);
}

Test(ops_cpu, conv3x3_linear) {
    for (size_t s = 0; s < sizeof conv_shapes / sizeof *conv_shapes; s++)
        conv_case(conv_shapes[s], false, 100 + 10 * (uint32_t)s);
}

Test(ops_cpu, conv3x3_relu) {
    for (size_t s = 0; s < sizeof conv_shapes / sizeof *conv_shapes; s++)
        conv_case(conv_shapes[s], true, 200 + 10 * (uint32_t)s);
}

/* n, in, out */
static const int dense_shapes[][3] = {{1, 5, 3}, {2, 7, 4}, {3, 1, 1}, {3, 16, 9}};

static void dense_case(const int *sh, bool relu, uint32_t tag) {
    const int n = sh[0], in = sh[1], out = sh[2];
    layer_case lc = {.relu = relu, .dense = {.n = n, .in = in, .out = out}};
    snprintf(lc.name, sizeof lc.name, "dense %dx%d->%d relu=%d", n, in, out, relu);
    /* Biases lean positive so that even the 3x1->1 case keeps some outputs through ReLU. */
    layer_alloc(&lc, (size_t)n * in, (size_t)in * out, (size_t)out, (size_t)n * out, tag, -0.2f);
    for (int i = 0; i < n; i++)
        for (int o = 0; o < out; o++) {
            double acc = lc.b[o];
            for (int j = 0; j < in; j++)
                acc += (double)lc.x[(size_t)i * in + j] * lc.wt[(size_t)j * out + o];
            lc.ref[(size_t)i * out + o] = (float)(relu && acc < 0.0 ? 0.0 : acc);
        }
    layer_check(&lc);
    layer_free(&lc);
}

Test(ops_cpu, dense) {
    for (size_t s = 0; s < sizeof dense_shapes / sizeof *dense_shapes; s++) {
        dense_case(dense_shapes[s], false, 400 + 10 * (uint32_t)s);
        dense_case(dense_shapes[s], true, 550 + 10 * (uint32_t)s);
    }
}

/* ---- max pool ---- */

/* Distinct values 0.03 apart in a random order: a step of FD_EPS = 0.01 never changes which
 * element of a window is the largest. */
static void fill_distinct(float *x, size_t n, uint32_t tag) {
    float *u = falloc(n);
    tu_fill(u, n, tag, 0.0f, 1.0f);
    for (size_t i = 0; i < n; i++) {
        size_t rank = 0;
        for (size_t j = 0; j < n; j++) rank += u[j] < u[i] || (u[j] == u[i] && j < i);
        x[i] = 0.03f * ((float)rank - (float)n / 2);
    }
    free(u);
}

typedef struct pool_prob {
    float *y;
    const float *x;
    int n, h, w, c;
    int global; /* -1: 2x2 max pool, else a ct_global_pool */
} pool_prob;

static void pool_fwd(void *u) {
    const pool_prob *p = u;
    if (p->global < 0)
        cr_assert_eq(be.ops->maxpool_forward(be.ctx, CT_F32, p->y, p->x, p->n, p->h, p->w, p->c),
                     CT_OK);
    else
        cr_assert_eq(be.ops->global_pool_forward(be.ctx, (ct_global_pool)p->global, p->y, p->x,
                                                 p->n, p->h, p->w, p->c),
                     CT_OK);
}

/* n, h, w, c */
static const int pool_shapes[][4] = {{1, 5, 7, 3}, {2, 4, 4, 2}, {3, 3, 3, 1}, {2, 2, 6, 5},
                                     {2, 1, 1, 3}};

Test(ops_cpu, maxpool) {
    for (size_t s = 0; s < sizeof pool_shapes / sizeof *pool_shapes; s++) {
        const int n = pool_shapes[s][0], h = pool_shapes[s][1], w = pool_shapes[s][2],
                  c = pool_shapes[s][3], oh = h / 2, ow = w / 2;
        const size_t nx = (size_t)n * h * w * c, ny = (size_t)n * oh * ow * c;
        float *x = falloc(nx), *y = falloc(ny + 8), *r = falloc(ny), *dx = falloc(nx);
        fill_distinct(x, nx, 600 + (uint32_t)s);
        tu_fill(r, ny, 610 + (uint32_t)s, -1.0f, 1.0f);
        fset(y, ny + 8, SENTINEL); /* floor: nothing is written past (n, h/2, w/2, c) */
        cr_assert_eq(be.ops->maxpool_forward(be.ctx, CT_F32, y, x, n, h, w, c), CT_OK);
        expect_all(y + ny, 8, SENTINEL, "maxpool output past its end");
        for (int i = 0; i < n; i++)
            for (int oy = 0; oy < oh; oy++)
                for (int ox = 0; ox < ow; ox++)
                    for (int ch = 0; ch < c; ch++) {
                        float m = -INFINITY;
                        for (int q = 0; q < 4; q++) {
                            int iy = 2 * oy + q / 2, ix = 2 * ox + q % 2;
                            m = fmaxf(m, x[(((size_t)i * h + iy) * w + ix) * c + ch]);
                        }
                        size_t o = (((size_t)i * oh + oy) * ow + ox) * c + ch;
                        cr_assert_eq(y[o], m, "maxpool %dx%dx%dx%d y[%zu]", n, h, w, c, o);
                    }
        fset(dx, nx, SENTINEL); /* every element is written, the unused ones with 0 */
        cr_assert_eq(be.ops->maxpool_backward(be.ctx, CT_F32, dx, r, x, y, n, h, w, c), CT_OK);
        pool_prob p = {.y = y, .x = x, .n = n, .h = h, .w = w, .c = c, .global = -1};
        fd_fn f = {.forward = pool_fwd, .u = &p, .z = y, .r = r, .nz = ny};
        char what[64];
        snprintf(what, sizeof what, "maxpool %dx%dx%dx%d dx", n, h, w, c);
        if (ny > 0) {
            fd_check(&f, x, nx, dx, what);
        } else {
            expect_all(dx, nx, 0.0f, what);
        }
        free(x), free(y), free(r), free(dx);
    }
}

Test(ops_cpu, maxpool_ties_go_to_the_first_in_window_order) {
    /* One 2x2 window per channel (n=1, 2x2, c=4): channel 0 all equal, channel 1 a tie between
     * positions 1 and 3, channel 2 between 2 and 3, channel 3 between 0 and 3. Window order is
     * row-major: (0,0), (0,1), (1,0), (1,1). */
    const float win[4][4] = {{1.5f, 1.5f, 1.5f, 1.5f},
                             {0.0f, 2.0f, -1.0f, 2.0f},
                             {-3.0f, -4.0f, -2.0f, -2.0f},
                             {7.0f, 1.0f, 2.0f, 7.0f}};
    const int first[4] = {0, 1, 2, 0};
    float x[16], y[4], dy[4] = {0.25f, -1.0f, 3.0f, 2.0f}, dx[16];
    for (int q = 0; q < 4; q++)
        for (int ch = 0; ch < 4; ch++) x[q * 4 + ch] = win[ch][q];
    cr_assert_eq(be.ops->maxpool_forward(be.ctx, CT_F32, y, x, 1, 2, 2, 4), CT_OK);
    cr_assert_eq(be.ops->maxpool_backward(be.ctx, CT_F32, dx, dy, x, y, 1, 2, 2, 4), CT_OK);
    for (int ch = 0; ch < 4; ch++)
        for (int q = 0; q < 4; q++)
            cr_expect_eq(dx[q * 4 + ch], q == first[ch] ? dy[ch] : 0.0f,
                         "channel %d position %d: dx %g", ch, q, dx[q * 4 + ch]);
}

/* ---- global pools ---- */

Test(ops_cpu, global_pools) {
    for (size_t s = 0; s < 4; s++) {
        const int n = pool_shapes[s][0], h = pool_shapes[s][1], w = pool_shapes[s][2],
                  c = pool_shapes[s][3], hw = h * w;
        const size_t nx = (size_t)n * hw * c, ny = (size_t)n * c;
        float *x = falloc(nx), *y = falloc(ny), *ref = falloc(ny), *r = falloc(ny),
              *dx = falloc(nx);
        /* Average: forward against a double sum, backward by finite differences. */
        tu_fill(x, nx, 700 + (uint32_t)s, -1.0f, 2.0f);
        tu_fill(r, ny, 710 + (uint32_t)s, -1.0f, 1.0f);
        cr_assert_eq(be.ops->global_pool_forward(be.ctx, CT_GLOBAL_AVG, y, x, n, h, w, c), CT_OK);
        for (int i = 0; i < n; i++)
            for (int ch = 0; ch < c; ch++) {
                double acc = 0.0;
                for (int p = 0; p < hw; p++) acc += x[((size_t)i * hw + p) * c + ch];
                ref[(size_t)i * c + ch] = (float)(acc / hw);
            }
        /* A float32 sum of at most 35 terms: a few unit roundoffs, far below 1e-5. */
        double err = tu_rel_err(y, ref, ny);
        cr_expect(err <= 1e-5, "global avg %dx%dx%dx%d: forward error %.3g", n, h, w, c, err);
        cr_assert_eq(be.ops->global_pool_backward(be.ctx, CT_GLOBAL_AVG, dx, r, x, y, n, h, w, c),
                     CT_OK);
        pool_prob pp = {.y = y, .x = x, .n = n, .h = h, .w = w, .c = c, .global = CT_GLOBAL_AVG};
        fd_fn f = {.forward = pool_fwd, .u = &pp, .z = y, .r = r, .nz = ny};
        fd_check(&f, x, nx, dx, "global avg dx");

        /* Max: all values negative, so a maximum that starts from 0 instead of the first value
         * is caught; channel 0 of the first image is all equal, so a tie must pick the first. */
        tu_fill(x, nx, 720 + (uint32_t)s, -3.0f, -1.0f);
        for (int p = 0; p < hw; p++) x[(size_t)p * c] = -2.0f;
        cr_assert_eq(be.ops->global_pool_forward(be.ctx, CT_GLOBAL_MAX, y, x, n, h, w, c), CT_OK);
        fset(dx, nx, SENTINEL);
        cr_assert_eq(be.ops->global_pool_backward(be.ctx, CT_GLOBAL_MAX, dx, r, x, y, n, h, w, c),
                     CT_OK);
        for (int i = 0; i < n; i++)
            for (int ch = 0; ch < c; ch++) {
                const float *xi = x + (size_t)i * hw * c + ch;
                int arg = 0;
                for (int p = 1; p < hw; p++)
                    if (xi[(size_t)p * c] > xi[(size_t)arg * c]) arg = p;
                cr_assert_eq(y[(size_t)i * c + ch], xi[(size_t)arg * c],
                             "global max image %d channel %d", i, ch);
                for (int p = 0; p < hw; p++)
                    cr_assert_eq(dx[((size_t)i * hw + p) * c + ch],
                                 p == arg ? r[(size_t)i * c + ch] : 0.0f,
                                 "global max dx image %d channel %d position %d (argmax %d)", i,
                                 ch, p, arg);
            }
        free(x), free(y), free(ref), free(r), free(dx);
    }
}

/* ---- dropout ---- */

static void dropout(float *y, const float *x, int n, int dim, float rate, ct_dropout_key key) {
    cr_assert_eq(be.ops->dropout_forward(be.ctx, y, x, n, dim, rate, key), CT_OK);
}

Test(ops_cpu, dropout_scaling_rate_and_mask) {
    const int n = 3, dim = 13335; /* 40005 elements */
    const size_t cnt = (size_t)n * dim;
    const float rates[4] = {0.0f, 0.25f, 0.5f, 0.7f};
    float *x = falloc(cnt), *y = falloc(cnt), *dy = falloc(cnt), *dx = falloc(cnt);
    tu_fill(x, cnt, 810, 0.1f, 2.0f); /* nonzero, so a dropped element is told by y == 0 */
    tu_fill(dy, cnt, 811, 0.1f, 2.0f);
    for (int t = 0; t < 4; t++) {
        const float rate = rates[t];
        const ct_dropout_key key = {.seed = 77, .layer = 3, .step = 11};
        dropout(y, x, n, dim, rate, key);
        cr_assert_eq(be.ops->dropout_backward(be.ctx, dx, dy, n, dim, rate, key), CT_OK);
        if (rate == 0.0f) { /* an exact copy both ways */
            cr_expect_arr_eq(y, x, cnt * sizeof *x, "rate 0 changed the forward values");
            cr_expect_arr_eq(dx, dy, cnt * sizeof *x, "rate 0 changed the gradient");
        }
        size_t kept = 0;
        for (size_t i = 0; i < cnt; i++) {
            /* x * (1 / (1 - rate)) in float32 is two roundings away from x / (1 - rate):
             * at most 2^-23 relative; 2^-22 allows for either order of the operations. */
            const double want = (double)x[i] / (1.0 - rate), want_d = (double)dy[i] / (1.0 - rate);
            if (y[i] != 0.0f) {
                kept++;
                cr_assert(fabs(y[i] - want) <= 0x1p-22 * want,
                          "rate %g y[%zu] = %.9g, not 0 or %.9g", rate, i, y[i], want);
                cr_assert(fabs(dx[i] - want_d) <= 0x1p-22 * want_d,
                          "rate %g dx[%zu] = %.9g, want %.9g", rate, i, dx[i], want_d);
            } else {
                cr_assert_eq(dx[i], 0.0f, "rate %g: element %zu dropped forward, kept backward",
                             rate, i);
            }
        }
        /* The kept count is binomial(cnt, 1 - rate): 5 standard deviations is a false alarm
         * rate of 6e-7, and the counts are fixed by the seed anyway. */
        const double p = 1.0 - rate, frac = (double)kept / cnt, sd = sqrt(p * rate / cnt);
        cr_expect(fabs(frac - p) <= 5.0 * sd, "rate %g: kept %.4f, expected %.4f +- %.4f", rate,
                  frac, p, 5 * sd);
    }
    free(x), free(y), free(dy), free(dx);
}

Test(ops_cpu, dropout_mask_is_addressed_by_key) {
    const int n = 2, dim = 1000;
    const size_t cnt = (size_t)n * dim;
    const float rate = 0.5f;
    float *x = falloc(cnt), *y0 = falloc(cnt), *y1 = falloc(cnt);
    tu_fill(x, cnt, 820, 0.1f, 2.0f);
    const ct_dropout_key base = {.seed = 1234, .layer = 2, .step = 7};
    dropout(y0, x, n, dim, rate, base);
    dropout(y1, x, n, dim, rate, base);
    cr_expect_arr_eq(y0, y1, cnt * sizeof *y0, "the same key gave a different output");
    const ct_dropout_key other[3] = {{.seed = 1235, .layer = 2, .step = 7},
                                     {.seed = 1234, .layer = 3, .step = 7},
                                     {.seed = 1234, .layer = 2, .step = 8}};
    const char *what[3] = {"seed", "layer", "step"};
    for (int t = 0; t < 3; t++) {
        dropout(y1, x, n, dim, rate, other[t]);
        size_t differ = 0;
        for (size_t i = 0; i < cnt; i++) differ += (y0[i] == 0.0f) != (y1[i] == 0.0f);
        /* Independent masks at rate 0.5 differ in half the elements (sd 1.1%); a shared or
         * merely shifted stream would differ in none or follow the first. */
        cr_expect(differ > cnt / 3, "another %s changed only %zu of %zu mask elements", what[t],
                  differ, cnt);
    }
    /* Rows draw from their own streams: row 1 must not repeat row 0. */
    size_t same = 0;
    for (int j = 0; j < dim; j++) same += (y0[j] == 0.0f) == (y0[dim + j] == 0.0f);
    cr_expect(same < (size_t)dim * 2 / 3, "rows 0 and 1 share %zu of %d mask bits", same, dim);
    free(x), free(y0), free(y1);
}

/* ---- concat ---- */

Test(ops_cpu, concat) {
    const int n = 3, da = 5, db = 2, d = da + db;
    float a[15], b[6], y[21], dy[21], ga[15], gb[6];
    tu_fill(a, 15, 900, -1.0f, 1.0f);
    tu_fill(b, 6, 901, -1.0f, 1.0f);
    tu_fill(dy, 21, 902, -1.0f, 1.0f);
    cr_assert_eq(be.ops->concat_forward(be.ctx, y, a, b, n, da, db), CT_OK);
    for (int i = 0; i < n; i++)
        for (int j = 0; j < d; j++)
            cr_assert_eq(y[i * d + j], j < da ? a[i * da + j] : b[i * db + j - da], "y[%d][%d]", i,
                         j);
    fset(ga, 15, SENTINEL);
    fset(gb, 6, SENTINEL);
    cr_assert_eq(be.ops->concat_backward(be.ctx, ga, gb, dy, n, da, db), CT_OK);
    for (int i = 0; i < n; i++)
        for (int j = 0; j < d; j++)
            cr_assert_eq(j < da ? ga[i * da + j] : gb[i * db + j - da], dy[i * d + j],
                         "gradient of y[%d][%d]", i, j);
    float gb2[6], ga2[15];
    fset(gb2, 6, SENTINEL);
    cr_assert_eq(be.ops->concat_backward(be.ctx, NULL, gb2, dy, n, da, db), CT_OK);
    cr_expect_arr_eq(gb2, gb, sizeof gb, "db with da NULL");
    fset(ga2, 15, SENTINEL);
    cr_assert_eq(be.ops->concat_backward(be.ctx, ga2, NULL, dy, n, da, db), CT_OK);
    cr_expect_arr_eq(ga2, ga, sizeof ga, "da with db NULL");
}

/* ---- losses ---- */

/* The textbook per-sample losses in double: -(y log s + (1-y) log(1-s)) with s the sigmoid, and
 * -sum y log softmax(z). Also the probabilities. */
static double ref_sample_loss(ct_loss_kind kind, double *p, const float *z, const float *y,
                              int k) {
    if (kind == CT_LOSS_BINARY_CE) {
        p[0] = 1.0 / (1.0 + exp(-(double)z[0]));
        return -(y[0] * log(p[0]) + (1.0 - y[0]) * log(1.0 - p[0]));
    }
    double sum = 0.0, l = 0.0;
    for (int j = 0; j < k; j++) sum += exp((double)z[j]);
    for (int j = 0; j < k; j++) {
        p[j] = exp((double)z[j]) / sum;
        l -= y[j] * log(p[j]);
    }
    return l;
}

static float run_loss(ct_loss_kind kind, float *probs, float *dz, const float *z, const float *y,
                      const float *w, int n, int k) {
    float loss = NAN;
    cr_assert_eq(be.ops->loss_forward_backward(be.ctx, kind, &loss, probs, dz, z, y, w, n, k),
                 CT_OK);
    return loss;
}

static void loss_case(ct_loss_kind kind, int n, int k, const float *w, uint32_t tag) {
    const size_t cnt = (size_t)n * k;
    float *z = falloc(cnt), *y = falloc(cnt), *p = falloc(cnt), *dz = falloc(cnt);
    float *pref = falloc(cnt), *gref = falloc(cnt), *fd = falloc(cnt), *p2 = falloc(cnt),
          *dz2 = falloc(cnt);
    tu_fill(z, cnt, tag, -4.0f, 4.0f);
    if (kind == CT_LOSS_BINARY_CE) {
        for (int i = 0; i < n; i++) y[i] = (float)(i % 2);
    } else { /* one-hot rows, and a soft row (summing to 1) at the end */
        for (int i = 0; i < n; i++)
            for (int j = 0; j < k; j++) y[(size_t)i * k + j] = j == (i * 2 + 1) % k ? 1.0f : 0.0f;
        for (int j = 0; j < k; j++) y[(size_t)(n - 1) * k + j] = 1.0f / (float)k;
    }
    const float loss = run_loss(kind, p, dz, z, y, w, n, k);
    double total = 0.0, pr[16];
    for (int i = 0; i < n; i++) {
        const double wi = w != NULL ? w[i] : 1.0;
        total += wi * ref_sample_loss(kind, pr, z + (size_t)i * k, y + (size_t)i * k, k);
        for (int j = 0; j < k; j++) {
            pref[(size_t)i * k + j] = (float)pr[j];
            gref[(size_t)i * k + j] = (float)((pr[j] - y[(size_t)i * k + j]) * wi / n);
        }
    }
    /* expf/logf are within a few ulp and the sums have at most 5 terms: a few unit roundoffs of
     * relative error (~1e-7) on the loss and the probabilities; 1e-5 leaves a wide margin. */
    const double want = total / n;
    cr_expect(fabs(loss - want) <= 1e-5 * fabs(want), "loss kind %d: %.9g, want %.9g", kind, loss,
              want);
    double err = tu_rel_err(p, pref, cnt);
    cr_expect(err <= 1e-5, "loss kind %d: probability error %.3g", kind, err);
    err = tu_rel_err(dz, gref, cnt);
    cr_expect(err <= 1e-5, "loss kind %d: gradient differs from (p - y) w / n by %.3g", kind, err);
    /* Central differences of the op's own loss. The loss is smooth: the truncation error is
     * eps^2 |L'''| / 6 <= 2e-6 relative with eps = 1e-2 and |L'''| <= 0.1 per logit; float32
     * rounding of the one changed sample's loss (~1e-6) over the step 2e-2 adds ~5e-5 relative
     * to gradients of size (p - y) / n ~ 0.1. 1e-3 is 20x that; a wrong sign or factor is O(1). */
    for (size_t i = 0; i < cnt; i++) {
        const float z0 = z[i], hi = z0 + FD_EPS, lo = z0 - FD_EPS;
        z[i] = hi;
        double lp = run_loss(kind, p2, dz2, z, y, w, n, k);
        z[i] = lo;
        double lm = run_loss(kind, p2, dz2, z, y, w, n, k);
        z[i] = z0;
        fd[i] = (float)((lp - lm) / ((double)hi - (double)lo));
    }
    err = tu_rel_err(dz, fd, cnt);
    cr_expect(err <= 1e-3, "loss kind %d n=%d k=%d: gradient vs finite differences %.3g", kind, n,
              k, err);
    free(z), free(y), free(p), free(dz), free(pref), free(gref), free(fd), free(p2), free(dz2);
}

Test(ops_cpu, losses) {
    const float wb[5] = {1.0f, 0.5f, 2.0f, 0.0f, 1.5f}, w[4] = {0.0f, 1.0f, 3.0f, 0.25f};
    for (int n = 1; n <= 3; n++) loss_case(CT_LOSS_BINARY_CE, n, 1, NULL, 1000 + (uint32_t)n);
    loss_case(CT_LOSS_BINARY_CE, 5, 1, wb, 1010);
    loss_case(CT_LOSS_CATEGORICAL_CE, 1, 2, NULL, 1020);
    loss_case(CT_LOSS_CATEGORICAL_CE, 3, 5, NULL, 1021);
    loss_case(CT_LOSS_CATEGORICAL_CE, 2, 3, NULL, 1022);
    loss_case(CT_LOSS_CATEGORICAL_CE, 4, 3, w, 1023);
}

Test(ops_cpu, loss_weights) {
    const int n = 4, k = 3;
    for (int kind = 0; kind < 2; kind++) {
        const int kk = kind == CT_LOSS_BINARY_CE ? 1 : k;
        const size_t cnt = (size_t)n * kk;
        float z[12], y[12], p[12], dz[12], p1[12], dz1[12];
        tu_fill(z, cnt, 1100 + (uint32_t)kind, -3.0f, 3.0f);
        for (size_t i = 0; i < cnt; i++) y[i] = (float)(i % 2);
        if (kind == CT_LOSS_CATEGORICAL_CE) /* one-hot rows */
            for (int i = 0; i < n; i++)
                for (int j = 0; j < k; j++) y[i * k + j] = j == i % k ? 1.0f : 0.0f;
        const float ones[4] = {1.0f, 1.0f, 1.0f, 1.0f}, w[4] = {1.0f, 0.0f, 2.0f, 0.5f};
        /* Weights of 1 are exactly no weights. */
        float l_none = run_loss((ct_loss_kind)kind, p, dz, z, y, NULL, n, kk);
        float l_ones = run_loss((ct_loss_kind)kind, p1, dz1, z, y, ones, n, kk);
        cr_expect_eq(l_none, l_ones, "kind %d: unit weights change the loss", kind);
        cr_expect_arr_eq(dz, dz1, cnt * sizeof *dz, "kind %d: unit weights change dlogits", kind);
        /* A row of weight 0 contributes nothing: changing its logits and labels changes neither
         * the loss nor the other rows' gradients, and its own gradient is 0. The mean is still
         * over n rows (Keras's sum over the batch size), not over the sum of the weights. */
        float l_w = run_loss((ct_loss_kind)kind, p, dz, z, y, w, n, kk);
        for (int j = 0; j < kk; j++) {
            z[1 * kk + j] = 8.0f * (j % 2 ? -1.0f : 1.0f);
            y[1 * kk + j] = kind == CT_LOSS_BINARY_CE ? 0.0f : (j == kk - 1 ? 1.0f : 0.0f);
        }
        float l_w2 = run_loss((ct_loss_kind)kind, p1, dz1, z, y, w, n, kk);
        cr_expect_eq(l_w, l_w2, "kind %d: a zero-weight row changes the loss", kind);
        for (size_t i = 0; i < cnt; i++) {
            if ((int)i / kk == 1)
                cr_expect_eq(dz1[i], 0.0f, "kind %d: zero-weight row gradient %g", kind, dz1[i]);
            else
                cr_expect_eq(dz1[i], dz[i], "kind %d: dlogits[%zu] moved", kind, i);
        }
        double total = 0.0, pr[3];
        for (int i = 0; i < n; i++)
            total += w[i] * ref_sample_loss((ct_loss_kind)kind, pr, z + i * kk, y + i * kk, kk);
        /* As in loss_case: a few unit roundoffs. */
        cr_expect(fabs(l_w2 - total / n) <= 1e-5 * fabs(total / n),
                  "kind %d: weighted loss %.9g, want sum(w l) / n = %.9g", kind, l_w2, total / n);
    }
}

Test(ops_cpu, loss_extreme_logits) {
    /* Binary: logits +-100 with the wrong and the right label. The per-sample losses are
     * 100 + log1p(e^-100) = 100 for the wrong label and ~4e-44 for the right one, so the mean
     * over 4 rows is 50; the naive log(1 - sigmoid(100)) would be log(0). */
    const float zb[4] = {100.0f, -100.0f, 100.0f, -100.0f}, yb[4] = {0.0f, 1.0f, 1.0f, 0.0f};
    float p[9], dz[9];
    float l = run_loss(CT_LOSS_BINARY_CE, p, dz, zb, yb, NULL, 4, 1);
    /* float32 holds 50 to 4e-6 relative; 1e-6 is a few unit roundoffs. */
    cr_expect(isfinite(l) && fabs(l - 50.0) <= 1e-6 * 50.0, "binary loss %.9g, want 50", l);
    const float pb[4] = {1.0f, 0.0f, 1.0f, 0.0f}, gb[4] = {0.25f, -0.25f, 0.0f, 0.0f};
    for (int i = 0; i < 4; i++) {
        /* sigmoid(+-100) is 1 to within 4e-44: exact in float32 up to a subnormal. */
        cr_expect(fabs(p[i] - pb[i]) <= 1e-30, "binary p[%d] = %g", i, p[i]);
        cr_expect(fabs(dz[i] - gb[i]) <= 1e-30, "binary dlogits[%d] = %g", i, dz[i]);
    }
    /* Categorical: rows (100, -100, 0) labelled 0, (-1000, 1000, 0) labelled 0 and (0, 0, 1000)
     * labelled 2. Losses 0, 2000 and 0 (to 1e-43): mean 2000/3; exp(1000) overflows float. */
    const float zc[9] = {100.0f, -100.0f, 0.0f, -1000.0f, 1000.0f, 0.0f, 0.0f, 0.0f, 1000.0f};
    const float yc[9] = {1, 0, 0, 1, 0, 0, 0, 0, 1};
    l = run_loss(CT_LOSS_CATEGORICAL_CE, p, dz, zc, yc, NULL, 3, 3);
    cr_expect(isfinite(l) && fabs(l - 2000.0 / 3.0) <= 1e-6 * 2000.0 / 3.0,
              "categorical loss %.9g, want 666.67", l);
    const float pc[9] = {1, 0, 0, 0, 1, 0, 0, 0, 1};
    for (int i = 0; i < 9; i++) {
        const double g = (pc[i] - yc[i]) / 3.0;
        cr_expect(fabs(p[i] - pc[i]) <= 1e-30, "categorical p[%d] = %g", i, p[i]);
        cr_expect(fabs(dz[i] - g) <= 1e-7, "categorical dlogits[%d] = %g, want %g", i, dz[i], g);
    }
}

/* ---- optimizers ---- */

/* Three parameters, O(1), through at most 6 float32 operations each: 1e-6 absolute is a few
 * unit roundoffs (6e-8). The smallest effect checked, AdamW's decay applied after the step
 * instead of before (1e-3 * 0.014), is 14 times that; the other terms (lr g = 0.05, Nesterov's
 * mu v = 0.12, Adam's eps inside the root) are far above it. */
#define OPT_TOL 1e-6

static void expect_close(const float *got, const double *want, int n, const char *what) {
    for (int i = 0; i < n; i++)
        cr_expect(fabs(got[i] - want[i]) <= OPT_TOL, "%s[%d] = %.9g, want %.9g", what, i, got[i],
                  want[i]);
}

Test(ops_cpu, sgd_update) {
    const float p0[3] = {1.0f, -2.0f, 0.5f}, g[3] = {0.5f, -1.0f, 0.0f};
    const float v0[3] = {0.2f, 0.0f, -0.1f};
    float p[3], v[3];
    ct_update_args u = {.lr = 0.1f};
    /* Plain: p - lr g. The velocity is not touched. */
    memcpy(p, p0, sizeof p);
    memcpy(v, v0, sizeof v);
    cr_assert_eq(be.ops->sgd_update(be.ctx, p, v, g, 3, &u), CT_OK);
    expect_close(p, (const double[]){0.95, -1.9, 0.5}, 3, "sgd p");
    cr_expect_arr_eq(v, v0, sizeof v);
    /* Momentum 0.9 (Keras 2): v = 0.9 v - 0.1 g = (0.13, 0.1, -0.09); p += v. */
    u.momentum = 0.9f;
    memcpy(p, p0, sizeof p);
    cr_assert_eq(be.ops->sgd_update(be.ctx, p, v, g, 3, &u), CT_OK);
    expect_close(v, (const double[]){0.13, 0.1, -0.09}, 3, "momentum v");
    expect_close(p, (const double[]){1.13, -1.9, 0.41}, 3, "momentum p");
    /* Nesterov: the same v, then p += 0.9 v - 0.1 g = (0.067, 0.19, -0.081). */
    u.nesterov = true;
    memcpy(p, p0, sizeof p);
    memcpy(v, v0, sizeof v);
    cr_assert_eq(be.ops->sgd_update(be.ctx, p, v, g, 3, &u), CT_OK);
    expect_close(v, (const double[]){0.13, 0.1, -0.09}, 3, "nesterov v");
    expect_close(p, (const double[]){1.067, -1.81, 0.419}, 3, "nesterov p");
    /* A second step carries the velocity: v = 0.9 (0.13, 0.1, -0.09) - 0.1 g. */
    cr_assert_eq(be.ops->sgd_update(be.ctx, p, v, g, 3, &u), CT_OK);
    expect_close(v, (const double[]){0.067, 0.19, -0.081}, 3, "nesterov v, step 2");
    expect_close(p, (const double[]){1.067 + 0.9 * 0.067 - 0.05, -1.81 + 0.9 * 0.19 + 0.1,
                                     0.419 - 0.9 * 0.081},
                 3, "nesterov p, step 2");
}

Test(ops_cpu, adam_update) {
    const float p0[3] = {1.0f, -2.0f, 0.5f}, g[3] = {0.5f, -1.0f, 0.0f};
    const float m0[3] = {0.1f, 0.0f, -0.2f}, v0[3] = {0.01f, 0.0f, 0.04f};
    float p[3], m[3], v[3];
    ct_update_args u = {.lr = 0.01f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-7f};
    memcpy(p, p0, sizeof p);
    memcpy(m, m0, sizeof m);
    memcpy(v, v0, sizeof v);
    cr_assert_eq(be.ops->adam_update(be.ctx, p, m, v, g, 3, &u), CT_OK);
    /* m = 0.9 m + 0.1 g = (0.14, -0.1, -0.18); v = 0.999 v + 0.001 g^2 = (0.01024, 0.001,
     * 0.03996); p -= 0.01 m / (sqrt(v) + 1e-7), e.g. 1 - 0.0014 / 0.1011930 = 0.98616505. */
    expect_close(m, (const double[]){0.14, -0.1, -0.18}, 3, "adam m");
    expect_close(v, (const double[]){0.01024, 0.001, 0.03996}, 3, "adam v");
    expect_close(p, (const double[]){0.98616504891, -1.96837732340, 0.50900449887}, 3, "adam p");
    /* AdamW: the decay (already times lr) scales p first: p (1 - 0.001), then the same step. */
    u.weight_decay = 0.001f;
    memcpy(p, p0, sizeof p);
    memcpy(m, m0, sizeof m);
    memcpy(v, v0, sizeof v);
    cr_assert_eq(be.ops->adam_update(be.ctx, p, m, v, g, 3, &u), CT_OK);
    expect_close(p, (const double[]){0.98516504891, -1.96637732340, 0.50850449887}, 3, "adamw p");
}

/* ---- check_finite ---- */

Test(ops_cpu, check_finite) {
    const size_t cnt = 100003; /* more than one OpenMP chunk per thread */
    float *x = falloc(cnt);
    tu_fill(x, cnt, 1200, -1e30f, 1e30f);
    x[17] = FLT_MAX;
    x[18] = -FLT_MAX;
    x[19] = FLT_MIN / 4; /* subnormal */
    bool finite = false;
    cr_assert_eq(be.ops->check_finite(be.ctx, &finite, x, cnt), CT_OK);
    cr_expect(finite, "finite data reported as non-finite");
    const float bad[3] = {NAN, INFINITY, -INFINITY};
    const size_t where[3] = {0, cnt / 2, cnt - 1};
    for (int b = 0; b < 3; b++)
        for (int q = 0; q < 3; q++) {
            const float keep = x[where[q]];
            x[where[q]] = bad[b];
            finite = true;
            cr_assert_eq(be.ops->check_finite(be.ctx, &finite, x, cnt), CT_OK);
            cr_expect(!finite, "%g at %zu not detected", bad[b], where[q]);
            x[where[q]] = keep;
        }
    finite = false;
    cr_assert_eq(be.ops->check_finite(be.ctx, &finite, x, 0), CT_OK);
    cr_expect(finite, "an empty array is finite");
    free(x);
}

/* ---- flip (test-time augmentation) ---- */

/* Against the definition, out of place: the flipped image's pixel (y, x) is the original's at
 * (h-1-y or y, w-1-x or x), all channels; flipping twice restores every bit. Odd sizes keep a
 * middle row or column in place. */
Test(ops_cpu, flip) {
    static const int shapes[][4] = {{1, 1, 1, 1}, {2, 3, 4, 3}, {1, 5, 5, 2}, {3, 4, 7, 1},
                                    {2, 6, 2, 4}, {1, 1, 9, 3}};
    for (size_t t = 0; t < sizeof shapes / sizeof shapes[0]; t++) {
        const int n = shapes[t][0], h = shapes[t][1], w = shapes[t][2], c = shapes[t][3];
        const size_t count = (size_t)n * h * w * c;
        float *x = falloc(count);
        tu_fill(x, count, 1300 + (uint32_t)t, -1.0f, 1.0f);
        for (int mode = 0; mode < 4; mode++) {
            const bool hz = mode & 1, vt = mode & 2;
            float *y = fdup(x, count);
            cr_assert_eq(be.ops->flip(be.ctx, y, n, h, w, c, hz, vt), CT_OK);
            for (int i = 0; i < n; i++)
                for (int r = 0; r < h; r++)
                    for (int q = 0; q < w; q++)
                        for (int k = 0; k < c; k++) {
                            const int sr = vt ? h - 1 - r : r, sq = hz ? w - 1 - q : q;
                            const float got = y[(((size_t)i * h + r) * w + q) * c + k];
                            const float want = x[(((size_t)i * h + sr) * w + sq) * c + k];
                            cr_assert(got == want, "(%d, %d, %d, %d) flip %d at (%d, %d, %d, %d)",
                                      n, h, w, c, mode, i, r, q, k);
                        }
            cr_assert_eq(be.ops->flip(be.ctx, y, n, h, w, c, hz, vt), CT_OK);
            cr_assert(memcmp(x, y, count * sizeof *x) == 0, "flipping twice (mode %d)", mode);
            free(y);
        }
        free(x);
    }
    cr_expect_eq(be.ops->flip(be.ctx, NULL, 0, 2, 2, 3, true, false), CT_OK, "empty batch");
    cr_expect_eq(be.ops->flip(be.ctx, NULL, 1, 2, 2, 3, true, false), CT_EINVAL);
    cr_expect_eq(be.ops->flip(be.ctx, (float[12]){0}, 1, 2, 0, 3, true, false), CT_EINVAL);
}
