/* The linear probe of `cutune advise`: multinomial logistic regression with an L2 penalty,
 * fitted by accelerated full-batch gradient descent (FISTA, step from a bound on the Hessian) on
 * standardised features, and scored by stratified k-fold cross-validation. Plain numerics on
 * host arrays: advise.c extracts the features, advise_rules.c reads the scores. */
#include <math.h>
#include <stdlib.h>

#include "train/run.h"

/* Largest eigenvalue of A^T A / n for A = [x, 1] (n, d + 1), by power iteration. */
static double gram_top_eigen(const double *x, size_t n, int d, double *v, double *av) {
    const int D = d + 1;
    for (int j = 0; j < D; j++) v[j] = 1.0 / sqrt((double)D);
    double lambda = 0.0;
    for (int it = 0; it < 100; it++) {
        for (size_t i = 0; i < n; i++) {
            const double *xi = x + i * (size_t)d;
            double s = v[d];
            for (int j = 0; j < d; j++) s += xi[j] * v[j];
            av[i] = s;
        }
        double norm = 0.0;
        double *w = av + n;
        for (int j = 0; j < D; j++) w[j] = 0.0;
        for (size_t i = 0; i < n; i++) {
            const double *xi = x + i * (size_t)d;
            for (int j = 0; j < d; j++) w[j] += xi[j] * av[i];
            w[d] += av[i];
        }
        for (int j = 0; j < D; j++) {
            w[j] /= (double)n;
            norm += w[j] * w[j];
        }
        norm = sqrt(norm);
        if (!(norm > 0.0)) return 0.0;
        double prev = lambda;
        lambda = norm;
        for (int j = 0; j < D; j++) v[j] = w[j] / norm;
        if (fabs(lambda - prev) <= 1e-6 * lambda) break;
    }
    return lambda;
}

/* Gradient of mean cross-entropy + l2/2 ||W||^2 (bias row unpenalised) at w ((d + 1), k): the
 * last row is the bias. scores: (n, k) scratch. */
static void softmax_grad(const double *x, const int *y, size_t n, int d, int k, double l2,
                         const double *w, double *g, double *scores) {
    const int D = d + 1;
    for (size_t i = 0; i < n; i++) {
        const double *xi = x + i * (size_t)d;
        double *s = scores + i * (size_t)k;
        for (int c = 0; c < k; c++) s[c] = w[(size_t)d * k + c];
        for (int j = 0; j < d; j++) {
            const double xv = xi[j];
            if (xv == 0.0) continue;
            const double *wj = w + (size_t)j * k;
            for (int c = 0; c < k; c++) s[c] += xv * wj[c];
        }
        double mx = s[0];
        for (int c = 1; c < k; c++) mx = s[c] > mx ? s[c] : mx;
        double sum = 0.0;
        for (int c = 0; c < k; c++) sum += (s[c] = exp(s[c] - mx));
        for (int c = 0; c < k; c++) s[c] = s[c] / sum - (c == y[i] ? 1.0 : 0.0);
    }
    for (size_t e = 0; e < (size_t)D * k; e++) g[e] = 0.0;
    for (size_t i = 0; i < n; i++) {
        const double *xi = x + i * (size_t)d;
        const double *s = scores + i * (size_t)k;
        for (int j = 0; j < d; j++) {
            const double xv = xi[j];
            if (xv == 0.0) continue;
            double *gj = g + (size_t)j * k;
            for (int c = 0; c < k; c++) gj[c] += xv * s[c];
        }
        for (int c = 0; c < k; c++) g[(size_t)d * k + c] += s[c];
    }
    const double inv = 1.0 / (double)n;
    for (size_t e = 0; e < (size_t)D * k; e++) g[e] *= inv;
    for (size_t e = 0; e < (size_t)d * k; e++) g[e] += l2 * w[e];
}

/* FISTA on the (smooth, strongly convex) objective with step 1 / L, L from the Bohning bound
 * of the softmax Hessian: 0.5 lambda_max(A^T A / n) + l2. */
static ct_status fit_softmax(const double *x, const int *y, size_t n, int d, int k, double l2,
                             double *w) {
    const size_t P = (size_t)(d + 1) * k;
    double *buf = malloc((3 * P + n * (size_t)k + n + (size_t)(d + 1) * 2) * sizeof *buf);
    if (buf == NULL) return ct_error(CT_ENOMEM, "cannot allocate the probe");
    double *prev = buf, *look = prev + P, *g = look + P, *scores = g + P;
    double *eig_v = scores + n * (size_t)k, *eig_av = eig_v + (d + 1);
    const double L = 0.5 * gram_top_eigen(x, n, d, eig_v, eig_av) + l2 + 1e-12;
    for (size_t e = 0; e < P; e++) w[e] = prev[e] = 0.0;
    double t = 1.0;
    for (int it = 0; it < 500; it++) {
        const double t_next = 0.5 * (1.0 + sqrt(1.0 + 4.0 * t * t));
        const double beta = (t - 1.0) / t_next;
        for (size_t e = 0; e < P; e++) look[e] = w[e] + beta * (w[e] - prev[e]);
        softmax_grad(x, y, n, d, k, l2, look, g, scores);
        double change = 0.0, norm = 0.0;
        for (size_t e = 0; e < P; e++) {
            const double nw = look[e] - g[e] / L;
            prev[e] = w[e];
            change += (nw - w[e]) * (nw - w[e]);
            norm += nw * nw;
            w[e] = nw;
        }
        t = t_next;
        if (change <= 1e-14 * (norm + 1e-12)) break;
    }
    free(buf);
    return CT_OK;
}

ct_status ct_probe_cv(const float *x, const int *y, size_t n, int d, int k, int folds, double l2,
                      uint64_t seed, double *acc) {
    *acc = NAN;
    if (d < 1 || k < 2) return ct_error(CT_EINVAL, "probe: %d features and %d classes", d, k);
    if (n < 2 || folds < 2 || (size_t)folds > n)
        return ct_error(CT_EINVAL, "probe: %d-fold cross-validation of %zu samples", folds, n);
    for (size_t i = 0; i < n; i++)
        if (y[i] < 0 || y[i] >= k)
            return ct_error(CT_EINVAL, "probe: label %d of sample %zu is not in [0, %d)", y[i], i,
                            k);
    for (size_t e = 0; e < n * (size_t)d; e++)
        if (!isfinite(x[e]))
            return ct_error(CT_ENUMERIC, "probe: feature %zu of sample %zu is not finite (NaN "
                            "or Inf): the weights or the inputs are broken", e % (size_t)d,
                            e / (size_t)d);
    int *fold = malloc(n * sizeof *fold);
    int *ytr = malloc(n * sizeof *ytr);
    double *xtr = malloc(n * (size_t)d * sizeof *xtr);
    double *mean = malloc(2 * (size_t)d * sizeof *mean);
    double *w = malloc((size_t)(d + 1) * k * sizeof *w);
    ct_status s = CT_OK;
    if (fold == NULL || ytr == NULL || xtr == NULL || mean == NULL || w == NULL) {
        s = ct_error(CT_ENOMEM, "probe: cannot allocate %zu x %d features", n, d);
        goto done;
    }
    double *sd = mean + d;
    if ((s = ct_kfold_assign(y, n, folds, seed, fold)) != CT_OK) goto done;
    size_t correct = 0;
    for (int f = 0; f < folds; f++) {
        size_t nt = 0;
        for (int j = 0; j < d; j++) mean[j] = sd[j] = 0.0;
        for (size_t i = 0; i < n; i++) {
            if (fold[i] == f) continue;
            for (int j = 0; j < d; j++) mean[j] += x[i * (size_t)d + j];
            nt++;
        }
        if (nt == 0) continue;
        for (int j = 0; j < d; j++) mean[j] /= (double)nt;
        for (size_t i = 0; i < n; i++) {
            if (fold[i] == f) continue;
            for (int j = 0; j < d; j++) {
                double v = x[i * (size_t)d + j] - mean[j];
                sd[j] += v * v;
            }
        }
        for (int j = 0; j < d; j++) {
            sd[j] = sqrt(sd[j] / (double)nt);
            /* Constant features carry nothing: zero them rather than divide by ~0. */
            sd[j] = sd[j] > 1e-6 * (fabs(mean[j]) + 1.0) ? 1.0 / sd[j] : 0.0;
        }
        size_t m = 0;
        for (size_t i = 0; i < n; i++) {
            if (fold[i] == f) continue;
            for (int j = 0; j < d; j++)
                xtr[m * (size_t)d + j] = (x[i * (size_t)d + j] - mean[j]) * sd[j];
            ytr[m++] = y[i];
        }
        const double lambda = l2 > 0.0 ? l2 : 1.0 / (double)nt;
        if ((s = fit_softmax(xtr, ytr, nt, d, k, lambda, w)) != CT_OK) goto done;
        for (size_t i = 0; i < n; i++) {
            if (fold[i] != f) continue;
            int best = 0;
            double best_score = -INFINITY;
            for (int c = 0; c < k; c++) {
                double sc = w[(size_t)d * k + c];
                for (int j = 0; j < d; j++)
                    sc += (x[i * (size_t)d + j] - mean[j]) * sd[j] * w[(size_t)j * k + c];
                if (sc > best_score) {
                    best_score = sc;
                    best = c;
                }
            }
            correct += best == y[i];
        }
    }
    *acc = (double)correct / (double)n;
done:
    free(fold);
    free(ytr);
    free(xtr);
    free(mean);
    free(w);
    return s;
}

