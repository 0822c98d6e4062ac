/* `cutune advise` and `cutune train --strategy auto`: how much of the backbone to train.
 *
 * The seed table crosses two axes, dataset size and similarity to ImageNet. Size is counted.
 * Similarity is measured: a linear probe (multinomial logistic regression) on frozen, globally
 * average-pooled features of three depths (block3_pool, block4_pool, block5_pool), scored by
 * stratified k-fold cross-validation on a capped, stratified sample of the training images. When
 * the top ImageNet features already separate the classes nearly as well as anything linear can,
 * and no worse than the more generic lower blocks, the domain is close to ImageNet's. Without
 * pretrained weights the probe would only measure random features, so it is not run and the
 * advice rests on the size axis. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "cutune/model.h"
#include "cutune/rng.h"
#include "cutune/run.h"
#include "cutune/weights.h"
#include "fit_internal.h"

static const char *const DEPTH_LAYERS[CT_ADVISE_DEPTHS] = {"block3_pool", "block4_pool",
                                                           "block5_pool"};

/* Philox purpose words (CT_RNG_SHUFFLE, low bits distinct from the loader's and the splits'). */
#define PURPOSE_KFOLD (((uint32_t)CT_RNG_SHUFFLE << 16) | 0x0f0u)
#define PURPOSE_SAMPLE (((uint32_t)CT_RNG_SHUFFLE << 16) | 0x0f1u)

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Fisher-Yates over v[0..n) addressed by (purpose, group, position). */
static void shuffle(size_t *v, size_t n, uint64_t seed, uint32_t purpose, uint32_t group) {
    for (size_t i = n; i > 1; i--) {
        uint32_t word = ct_rng_word(seed, purpose, group, 0, (uint32_t)(i - 1));
        size_t j = (size_t)(((uint64_t)word * (uint64_t)i) >> 32);
        size_t t = v[i - 1];
        v[i - 1] = v[j];
        v[j] = t;
    }
}

/* ---- k-fold assignment ---- */

ct_status ct_kfold_assign(const int *labels, size_t n, int folds, uint64_t seed, int *fold_of) {
    if (folds < 2) return ct_error(CT_EINVAL, "k-fold needs at least 2 folds, not %d", folds);
    if ((size_t)folds > n)
        return ct_error(CT_EINVAL, "%d folds of %zu samples: each fold needs at least one sample",
                        folds, n);
    int groups = 0;
    for (size_t i = 0; i < n; i++)
        if (labels[i] + 1 > groups) groups = labels[i] + 1;
    size_t *members = malloc(n * sizeof *members);
    if (members == NULL) return ct_error(CT_ENOMEM, "cannot allocate the folds of %zu samples", n);
    /* Group -1 (unlabelled) last; the deal continues round-robin across groups. */
    size_t next = 0;
    for (int g = 0; g <= groups; g++) {
        int label = g < groups ? g : -1;
        size_t m = 0;
        for (size_t i = 0; i < n; i++)
            if ((labels[i] < 0 ? -1 : labels[i]) == label) members[m++] = i;
        shuffle(members, m, seed, PURPOSE_KFOLD, (uint32_t)g);
        for (size_t j = 0; j < m; j++) fold_of[members[j]] = (int)((next + j) % (size_t)folds);
        next += m;
    }
    free(members);
    return CT_OK;
}

/* ---- the linear probe ---- */

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

/* ---- the recommendation ---- */

static void appendf(char *buf, size_t cap, const char *fmt, ...) {
    size_t len = strlen(buf);
    if (len + 1 >= cap) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf + len, cap - len, fmt, ap);
    va_end(ap);
}

/* A shell word: quoted when it holds anything but [A-Za-z0-9_./:=,+-]. */
static void append_word(char *buf, size_t cap, const char *w) {
    bool plain = w[0] != '\0';
    for (const char *p = w; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              strchr("_./:=,+-", *p) != NULL))
            plain = false;
    if (plain) {
        appendf(buf, cap, " %s", w);
        return;
    }
    appendf(buf, cap, " '");
    for (const char *p = w; *p; p++) {
        if (*p == '\'') appendf(buf, cap, "'\\''");
        else appendf(buf, cap, "%c", *p);
    }
    appendf(buf, cap, "'");
}

/* 1234567 -> "1,234,567" */
static const char *grouped(size_t v, char *buf, size_t cap) {
    char raw[32];
    snprintf(raw, sizeof raw, "%zu", v);
    size_t len = strlen(raw), o = 0;
    for (size_t i = 0; i < len && o + 2 < cap; i++) {
        if (i > 0 && (len - i) % 3 == 0) buf[o++] = ',';
        buf[o++] = raw[i];
    }
    buf[o] = '\0';
    return buf;
}

static const char *strategy_words(ct_strategy s) {
    switch (s) {
    case CT_STRATEGY_HEAD:
        return "train the head only: the whole backbone frozen (--freeze-to block5_pool)";
    case CT_STRATEGY_TOP:
        return "train the top block and the head: blocks 1-4 frozen (--freeze-to block4_pool)";
    case CT_STRATEGY_DEEP:
        return "train blocks 4-5 and the head: blocks 1-3 frozen (--freeze-to block3_pool)";
    default: return "train everything: no layer frozen";
    }
}

void ct_advise_decide(ct_advice *a, const ct_advise_config *c) {
    char g1[32], g2[32];
    a->reasoning[0] = '\0';
    a->command[0] = '\0';
    a->per_class = a->k > 0 ? (double)a->n / (double)a->k : 0.0;
    a->large = a->per_class >= CT_ADVISE_LARGE_PER_CLASS;
    size_t lo = (size_t)-1, hi = 0;
    for (int k = 0; k < a->k; k++) {
        if (a->counts[k] < lo) lo = a->counts[k];
        if (a->counts[k] > hi) hi = a->counts[k];
    }
    a->balanced = a->k >= 2 && hi >= 3 * (lo > 0 ? lo : 1);

    /* Size. */
    appendf(a->reasoning, sizeof a->reasoning,
            "Size: %s training images in %d classes, %.0f per class on average. %s\n",
            grouped(a->n, g1, sizeof g1), a->k, a->per_class,
            a->large ? "That is large: at least " "1,000 per class (ImageNet has about 1,300), "
                       "enough to move the convolution weights without memorising the data."
                     : "That is small: below 1,000 per class (ImageNet has about 1,300), "
                       "fine-tuning many of VGG16's 14.7 million backbone weights overfits "
                       "readily.");
    if (a->balanced)
        appendf(a->reasoning, sizeof a->reasoning,
                "The classes are unbalanced (%s vs %s images): weight them with --class-weight "
                "balanced so the loss does not favour the larger ones.\n",
                grouped(hi, g1, sizeof g1), grouped(lo, g2, sizeof g2));

    /* Similarity. */
    if (a->probed) {
        const ct_probe_score *d5 = &a->depth[CT_ADVISE_DEPTHS - 1];
        double best_lower = -1.0;
        int best_i = 0;
        for (int i = 0; i < CT_ADVISE_DEPTHS - 1; i++)
            if (a->depth[i].acc > best_lower) {
                best_lower = a->depth[i].acc;
                best_i = i;
            }
        double sim = a->baseline < 1.0 ? (d5->acc - a->baseline) / (1.0 - a->baseline) : 0.0;
        a->similarity = sim < 0.0 ? 0.0 : sim > 1.0 ? 1.0 : sim;
        const bool high = a->similarity >= CT_ADVISE_SIMILARITY;
        const bool top_ok = d5->acc >= best_lower - CT_ADVISE_DEPTH_SLACK;
        a->similar = high && top_ok;
        appendf(a->reasoning, sizeof a->reasoning,
                "Similarity: a linear probe on frozen block5_pool features (global average "
                "pooled, %d-fold cross-validated on %zu images at %dx%d) is right %.1f%% "
                "(+/- %.1f) of the time, against %.1f%% for always answering the largest class: "
                "similarity %.2f on a scale where 0 is the baseline and 1 is perfect. The lower "
                "blocks reach %.1f%% (block3_pool) and %.1f%% (block4_pool).\n",
                a->probe_folds, a->probe_n, a->input_size, a->input_size, 100.0 * d5->acc,
                100.0 * d5->se, 100.0 * a->baseline, a->similarity, 100.0 * a->depth[0].acc,
                100.0 * a->depth[1].acc);
        if (a->similar)
            appendf(a->reasoning, sizeof a->reasoning,
                    "At %.2f (threshold %.2f), with block5 no worse than the lower blocks, the "
                    "top ImageNet features already separate these classes: the domain is "
                    "similar to ImageNet's.\n", a->similarity, CT_ADVISE_SIMILARITY);
        else if (!high)
            appendf(a->reasoning, sizeof a->reasoning,
                    "Below the %.2f threshold, the ImageNet features separate these classes "
                    "poorly: the domain is different from ImageNet's, and the convolutions "
                    "need to learn it.\n", CT_ADVISE_SIMILARITY);
        else
            appendf(a->reasoning, sizeof a->reasoning,
                    "The similarity clears the %.2f threshold, but %s beats block5_pool by more "
                    "than %.0f points: the generic lower features fit better than ImageNet's "
                    "object-level ones, a sign of a different domain.\n", CT_ADVISE_SIMILARITY,
                    a->depth[best_i].layer, 100.0 * CT_ADVISE_DEPTH_SLACK);
        if (a->probe_n < 100)
            appendf(a->reasoning, sizeof a->reasoning,
                    "With only %zu images probed the accuracies are rough (standard error "
                    "%.0f points): treat the domain call as a hint.\n", a->probe_n,
                    100.0 * d5->se);
    } else {
        a->similarity = NAN;
        a->similar = true;
        appendf(a->reasoning, sizeof a->reasoning,
                "Similarity: not measured, %s This advice falls back to the size axis alone and "
                "assumes the common case of a domain like ImageNet's.\n", a->weights_note);
    }

    /* The seed table: one cell per (size, similarity). */
    typedef struct {
        ct_strategy strategy;
        ct_optimizer_kind optimizer;
        float momentum;
        bool nesterov;
        float body_lr_mult;
        int warmup_epochs;
    } cell_t;
    static const cell_t cells[2][2] = {
        /* small: different domain, similar domain */
        {{CT_STRATEGY_DEEP, CT_OPT_SGD, 0.9f, true, 0.1f, 2},
         {CT_STRATEGY_HEAD, CT_OPT_ADAM, 0.0f, false, 1.0f, 0}},
        /* large: different domain, similar domain */
        {{CT_STRATEGY_ALL, CT_OPT_SGD, 0.9f, true, 0.3f, 1},
         {CT_STRATEGY_TOP, CT_OPT_SGD, 0.9f, true, 0.1f, 1}},
    };
    const cell_t *cell = &cells[a->large][a->similar];
    a->strategy = cell->strategy;
    a->optimizer = cell->optimizer;
    a->lr = 1e-3f;
    a->momentum = cell->momentum;
    a->nesterov = cell->nesterov;
    a->body_lr_mult = cell->body_lr_mult;
    a->warmup_epochs = cell->warmup_epochs;
    a->freeze_to = ct_strategy_freeze_to(a->strategy);
    a->epochs = a->large ? 20 : 30;
    a->patience = a->large ? 3 : 5;
    a->horizontal_flip = true;
    a->vertical_flip = a->iceberg;
    a->zoom_range = a->large ? 0.0f : 0.2f;
    a->rotation_range = a->large ? 0.0f : 10.0f;

    const char *why;
    switch (a->strategy) {
    case CT_STRATEGY_HEAD:
        why = a->probed ? "the frozen features already fit, and training them on little data "
                          "would overfit. Adam at 0.001 trains the new head quickly; with the "
                          "backbone frozen there is no body rate to lower."
                        : "with little data the head alone is the safest start, as it cannot "
                          "overfit the backbone; if validation accuracy stalls well short of "
                          "what the task needs, the domain is probably different: unfreeze "
                          "blocks 4-5 (--freeze-to block3_pool --body-lr-mult 0.1). Adam at "
                          "0.001 trains the new head quickly.";
        break;
    case CT_STRATEGY_DEEP:
        why = "the worst cell of the table. The top blocks' ImageNet features do not fit, so "
              "blocks 4-5 retrain while blocks 1-3 (edges, textures) stay frozen to limit "
              "overfitting. SGD at 0.001 with Nesterov momentum, the backbone at a tenth of it "
              "(--body-lr-mult 0.1), after 2 warm-up epochs that train the fresh head alone so "
              "its random gradients do not wreck the pretrained blocks.";
        break;
    case CT_STRATEGY_TOP:
        why = "the features fit and there is data enough to adapt the most specific ones, so "
              "the top block (block5) trains with the head. SGD at 0.001 with Nesterov "
              "momentum, block5 at a tenth of it (--body-lr-mult 0.1), after 1 warm-up epoch "
              "of the head alone.";
        break;
    default:
        why = "the data can carry retraining the whole network, and the domain needs it. SGD "
              "at 0.001 with Nesterov momentum, the backbone at 0.3 of it (--body-lr-mult 0.3: "
              "it must move further than for a similar domain, but its pretrained start is "
              "still worth keeping), after 1 warm-up epoch of the head alone.";
        break;
    }
    appendf(a->reasoning, sizeof a->reasoning, "Recommendation: %s. %s data, %s: %s\n",
            strategy_words(a->strategy), a->large ? "Large" : "Small",
            !a->probed ? "domain assumed similar" : a->similar ? "similar domain"
                                                               : "different domain",
            why);
    if (!a->large)
        appendf(a->reasoning, sizeof a->reasoning,
                "Augmentation, as the seed notebook does for small data: flips (%s), zoom 0.2 "
                "and rotation 10 degrees. Early stopping (patience 5) on a stratified 20%% "
                "validation split keeps the best epoch; with this little data `--folds 5` "
                "(and `--test` to average the folds' predictions) gives a steadier estimate.\n",
                a->iceberg ? "horizontal and vertical: radar images have no up" : "horizontal");
    else
        appendf(a->reasoning, sizeof a->reasoning,
                "Augmentation: %s only; with this much data heavier transforms mostly cost "
                "time. Early stopping (patience 3) on a stratified 20%% validation split.\n",
                a->iceberg ? "horizontal and vertical flips" : "horizontal flips");

    /* The command. */
    char *cmd = a->command;
    const size_t cap = sizeof a->command;
    snprintf(cmd, cap, "cutune train --data");
    append_word(cmd, cap, c != NULL && c->data != NULL ? c->data : "DATA");
    appendf(cmd, cap, " --out");
    append_word(cmd, cap, c != NULL && c->out_dir != NULL ? c->out_dir : "runs/advised");
    if (c != NULL && c->weights != NULL && strcmp(c->weights, "imagenet") != 0 &&
        strcmp(c->weights, "none") != 0) {
        appendf(cmd, cap, " --weights");
        append_word(cmd, cap, c->weights);
    }
    if (c != NULL && c->train_input_size > 0)
        appendf(cmd, cap, " --input-size %d", c->train_input_size);
    if (a->freeze_to[0] != '\0') appendf(cmd, cap, " --freeze-to %s", a->freeze_to);
    if (a->warmup_epochs > 0) appendf(cmd, cap, " --warmup-epochs %d", a->warmup_epochs);
    if (a->optimizer == CT_OPT_ADAM) {
        appendf(cmd, cap, " --optimizer adam --lr %g", a->lr);
    } else {
        appendf(cmd, cap, " --optimizer sgd --lr %g --momentum %g%s", a->lr, a->momentum,
                a->nesterov ? " --nesterov" : "");
    }
    if (a->body_lr_mult != 1.0f) appendf(cmd, cap, " --body-lr-mult %g", a->body_lr_mult);
    appendf(cmd, cap, " --epochs %d --validation-split 0.2 --split stratified --patience %d "
            "--restore-best-weights", a->epochs, a->patience);
    if (a->horizontal_flip) appendf(cmd, cap, " --horizontal-flip");
    if (a->vertical_flip) appendf(cmd, cap, " --vertical-flip");
    if (a->zoom_range > 0.0f) appendf(cmd, cap, " --zoom-range %g", a->zoom_range);
    if (a->rotation_range > 0.0f) appendf(cmd, cap, " --rotation-range %g", a->rotation_range);
    if (a->balanced) appendf(cmd, cap, " --class-weight balanced");
}

void ct_advise_print(FILE *f, const ct_advice *a) {
    char g[32];
    fprintf(f, "%-24s %10s %7s\n", "class", "images", "share");
    for (int k = 0; k < a->k; k++)
        fprintf(f, "%-24s %10s %6.1f%%\n", a->class_names[k], grouped(a->counts[k], g, sizeof g),
                a->n > 0 ? 100.0 * (double)a->counts[k] / (double)a->n : 0.0);
    fprintf(f, "%-24s %10s\n", "total", grouped(a->n, g, sizeof g));
    fprintf(f, "\n");
    if (a->probed) {
        fprintf(f, "linear probe: %zu images at %dx%d, %d-fold cross-validation, %.1f s\n",
                a->probe_n, a->input_size, a->input_size, a->probe_folds, a->seconds);
        fprintf(f, "%-24s %10s %9s\n", "features (GAP)", "accuracy", "std err");
        for (int i = 0; i < CT_ADVISE_DEPTHS; i++)
            fprintf(f, "%-16s %5d ch %9.1f%% %8.1f\n", a->depth[i].layer, a->depth[i].dim,
                    100.0 * a->depth[i].acc, 100.0 * a->depth[i].se);
        fprintf(f, "%-24s %9.1f%%\n", "majority class", 100.0 * a->baseline);
        fprintf(f, "similarity (block5): %.2f (threshold %.2f) -> %s domain\n", a->similarity,
                CT_ADVISE_SIMILARITY, a->similar ? "similar" : "different");
    } else {
        fprintf(f, "linear probe: not run (see Similarity below)\n");
    }
    fprintf(f, "dataset size: %s (%.0f images per class; large from %d)\n",
            a->large ? "large" : "small", a->per_class, CT_ADVISE_LARGE_PER_CLASS);
    fprintf(f, "\n");
    /* One paragraph per line of the reasoning. */
    const char *p = a->reasoning;
    while (*p != '\0') {
        size_t len = strcspn(p, "\n");
        fprintf(f, "%.*s\n", (int)len, p);
        p += len + (p[len] == '\n');
    }
    fprintf(f, "\n%s\n", a->command);
}

/* ---- measuring ---- */

void ct_advise_config_defaults(ct_advise_config *c) {
    memset(c, 0, sizeof *c);
    c->weights = "imagenet";
    c->cv_folds = 3;
    c->batch_size = 16;
    c->device = "auto";
    c->seed = 1;
    c->na_policy = CT_NA_MEAN;
    c->interpolation = CT_INTERP_NEAREST;
    c->verbose = 1;
}

static bool is_dir(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

/* The probe's images: all, or a stratified draw of `cap` (each class keeps its share, and at
 * least `min_per_class` when it has them), in dataset order. Returns the count. */
static size_t probe_sample(const ct_dataset *ds, size_t cap, size_t min_per_class, uint64_t seed,
                           size_t *out) {
    const size_t n = ct_dataset_count(ds);
    const int k = ct_dataset_num_classes(ds);
    size_t m = 0;
    if (n <= cap) {
        for (size_t i = 0; i < n; i++)
            if (ct_dataset_label(ds, i) >= 0) out[m++] = i;
        return m;
    }
    size_t *members = malloc(n * sizeof *members);
    uint8_t *take = calloc(n, 1);
    if (members == NULL || take == NULL) {
        free(members);
        free(take);
        return 0;
    }
    size_t labelled = 0;
    for (int c = 0; c < k; c++) labelled += ct_dataset_class_count(ds, c);
    for (int c = 0; c < k; c++) {
        size_t nc = 0;
        for (size_t i = 0; i < n; i++)
            if (ct_dataset_label(ds, i) == c) members[nc++] = i;
        size_t quota = (size_t)((double)cap * (double)nc / (double)(labelled ? labelled : 1) + 0.5);
        if (quota < min_per_class) quota = min_per_class;
        if (quota > nc) quota = nc;
        shuffle(members, nc, seed, PURPOSE_SAMPLE, (uint32_t)c);
        for (size_t j = 0; j < quota; j++) take[members[j]] = 1;
    }
    for (size_t i = 0; i < n; i++)
        if (take[i]) out[m++] = i;
    free(members);
    free(take);
    return m;
}

/* Global average pool of one layer's output (n, h, w, ch): row i goes to feats row row_pos[i]. */
static void gap_rows(const float *act, int n, int h, int w, int ch, float *feats,
                     const size_t *row_pos) {
    for (int i = 0; i < n; i++) {
        float *f = feats + row_pos[i] * (size_t)ch;
        for (int c = 0; c < ch; c++) f[c] = 0.0f;
        const float *a = act + (size_t)i * h * w * ch;
        for (int p = 0; p < h * w; p++)
            for (int c = 0; c < ch; c++) f[c] += a[(size_t)p * ch + c];
        for (int c = 0; c < ch; c++) f[c] /= (float)(h * w);
    }
}

typedef struct probe_run {
    ct_backend be;
    ct_model *m;
    ct_dataset *sub;
    ct_loader *loader;
    float *feats[CT_ADVISE_DEPTHS];
    float *act;
    int *labels;
} probe_run;

static void probe_free(probe_run *p) {
    ct_loader_free(p->loader);
    ct_dataset_free(p->sub);
    ct_model_free(p->m);
    ct_backend_free(&p->be);
    for (int i = 0; i < CT_ADVISE_DEPTHS; i++) free(p->feats[i]);
    free(p->act);
    free(p->labels);
}

/* Loads "imagenet" (the notop file into the backbone) or a file's backbone layers. */
static ct_status load_weights(ct_model *m, const char *spec) {
    ct_weights_report rep;
    if (strcmp(spec, "imagenet") == 0) return ct_weights_load_spec(m, spec, NULL, &rep);
    ct_weights_load_opts o;
    ct_weights_load_defaults(&o);
    o.scope = CT_WEIGHTS_SCOPE_BACKBONE;
    o.allow_extra = true;
    return ct_weights_load(m, spec, &o, &rep);
}

/* Features of the sampled images at the three depths, and the probe on each. */
static ct_status probe(const ct_dataset *ds, const ct_advise_config *c, const char *weights,
                       ct_advice *a, bool *missing) {
    probe_run p;
    memset(&p, 0, sizeof p);
    ct_status s;
    const double t0 = now_seconds();
    *missing = false;
    if (strcmp(weights, "imagenet") == 0) {
        char path[4096];
        if ((s = ct_weights_resolve_imagenet(false, path, sizeof path)) != CT_OK) {
            *missing = true; /* CT_ENOTFOUND, saying where it looked */
            return s;
        }
    }
    const int folds = c->cv_folds > 0 ? c->cv_folds : 3;
    char note[512];
    if (c->device != NULL && strcmp(c->device, "cpu") == 0)
        s = ct_backend_cpu_init(&p.be, c->threads);
    else
        s = ct_backend_init_by_name(&p.be, c->device, note, sizeof note);
    if (s != CT_OK) return s;
    const bool gpu = strcmp(p.be.ops->name, "cpu") != 0;

    int h, w, ch;
    const bool in_memory = ct_dataset_in_memory(ds, &h, &w, &ch);
    int size = c->input_size > 0 ? c->input_size : gpu ? 224 : CT_ADVISE_CPU_INPUT;
    if (in_memory) {
        if (c->input_size > 0 && (c->input_size != h || c->input_size != w)) {
            probe_free(&p);
            return ct_error(CT_EINVAL, "--input-size %d: the iceberg images are %dx%d",
                            c->input_size, h, w);
        }
        size = h;
    }
    a->input_size = size;
    const int batch = c->batch_size > 0 ? c->batch_size : 16;
    ct_model_config mc = {.input_h = size, .input_w = size, .input_c = 3, .aux_dim = 0,
                          .max_batch = batch, .head = "gap,dense:2:softmax", .seed = c->seed,
                          .freeze_to = "block2_pool"}; /* near the probe's mask below */
    if ((s = ct_model_init(&p.m, &mc, &p.be)) != CT_OK) goto done;
    if ((s = load_weights(p.m, weights)) != CT_OK) goto done;
    /* Only block3_conv1 "trainable": no layer is trained, but every activation from
     * block2_pool up is kept in its own buffer, so one forward yields all three depths. */
    {
        const int nl = ct_model_num_layers(p.m);
        bool *mask = calloc((size_t)nl, sizeof *mask);
        if (mask == NULL) {
            s = ct_error(CT_ENOMEM, "cannot allocate the probe");
            goto done;
        }
        for (int i = 0; i < nl; i++)
            mask[i] = strcmp(ct_model_layer(p.m, i)->name, "block3_conv1") == 0;
        s = ct_model_set_trainable_mask(p.m, mask);
        free(mask);
        if (s != CT_OK) goto done;
    }
    int idx[CT_ADVISE_DEPTHS];
    size_t max_act = 0;
    for (int i = 0; i < CT_ADVISE_DEPTHS; i++) {
        ct_layer *l = ct_model_find(p.m, DEPTH_LAYERS[i]);
        idx[i] = -1;
        for (int j = 0; j < ct_model_num_layers(p.m); j++)
            if (ct_model_layer(p.m, j) == l) idx[i] = j;
        a->depth[i].layer = DEPTH_LAYERS[i];
        a->depth[i].dim = l->out_c;
        size_t sz = (size_t)batch * l->out_h * l->out_w * l->out_c;
        if (sz > max_act) max_act = sz;
    }

    /* The sample and its loader (never augmented). */
    const size_t n = ct_dataset_count(ds);
    size_t *pick = malloc((n > 0 ? n : 1) * sizeof *pick);
    if (pick == NULL) {
        s = ct_error(CT_ENOMEM, "cannot allocate the probe sample");
        goto done;
    }
    const size_t cap = c->samples > 0 ? (size_t)c->samples : CT_ADVISE_SAMPLES;
    size_t m = probe_sample(ds, cap, (size_t)folds, c->seed, pick);
    s = ct_dataset_subset(ds, pick, m, CT_ROLE_TEST, &p.sub);
    free(pick);
    if (s != CT_OK) goto done;
    ct_loader_config lc;
    ct_loader_config_defaults(&lc);
    lc.batch_size = batch;
    lc.shuffle = false;
    lc.seed = c->seed;
    lc.threads = c->threads > 0 ? c->threads : 2;
    lc.class_mode = CT_CLASS_NONE;
    lc.image.target_h = lc.image.target_w = size;
    lc.image.color_mode = c->color_mode;
    lc.image.interpolation = c->interpolation;
    lc.image.keep_aspect_ratio = c->keep_aspect_ratio;
    lc.standardize = c->standardize;
    if (!c->preprocess_set)
        lc.standardize.preprocess = in_memory ? CT_PREPROCESS_NONE : CT_PREPROCESS_CAFFE;
    lc.cache_bytes = 0;
    lc.skip_bad = c->skip_bad;
    if (lc.standardize.featurewise_center || lc.standardize.featurewise_std_normalization) {
        s = ct_loader_feature_stats(p.sub, &lc, lc.standardize.mean, lc.standardize.std);
        if (s != CT_OK) goto done;
    }
    if ((s = ct_loader_init(&p.loader, p.sub, &lc)) != CT_OK) goto done;
    for (int i = 0; i < CT_ADVISE_DEPTHS; i++) {
        p.feats[i] = malloc((m > 0 ? m : 1) * (size_t)a->depth[i].dim * sizeof(float));
        if (p.feats[i] == NULL) s = CT_ENOMEM;
    }
    p.act = malloc(max_act * sizeof(float));
    p.labels = malloc((m > 0 ? m : 1) * sizeof *p.labels);
    uint8_t *ok = calloc(m > 0 ? m : 1, 1);
    size_t row_pos[4096];
    if (s != CT_OK || p.act == NULL || p.labels == NULL || ok == NULL || batch > 4096) {
        free(ok);
        s = ct_error(CT_ENOMEM, "cannot allocate the probe's features");
        goto done;
    }
    if ((s = ct_loader_begin_epoch(p.loader, 0)) != CT_OK) {
        free(ok);
        goto done;
    }
    for (;;) {
        const ct_batch *b = NULL;
        if ((s = ct_loader_next(p.loader, &b)) != CT_OK) break;
        if (b == NULL) break;
        s = ct_model_features(p.m, idx[CT_ADVISE_DEPTHS - 1], b->x, NULL, b->n, p.act);
        for (int i = 0; i < b->n; i++) {
            row_pos[i] = b->index[i];
            ok[b->index[i]] = 1;
        }
        /* p.act holds block5_pool's output; the lower depths are still in their buffers. */
        for (int d = CT_ADVISE_DEPTHS - 1; s == CT_OK && d >= 0; d--) {
            const ct_layer *l = ct_model_layer(p.m, idx[d]);
            if (d < CT_ADVISE_DEPTHS - 1) s = ct_model_layer_output(p.m, idx[d], b->n, p.act);
            if (s == CT_OK)
                gap_rows(p.act, b->n, l->out_h, l->out_w, l->out_c, p.feats[d], row_pos);
        }
        ct_loader_release(p.loader, b);
        if (s != CT_OK) break;
    }
    if (s != CT_OK) {
        free(ok);
        goto done;
    }
    /* Drop skipped (undecodable) images. */
    size_t kept = 0;
    for (size_t i = 0; i < m; i++) {
        if (!ok[i]) continue;
        for (int d = 0; d < CT_ADVISE_DEPTHS; d++)
            memmove(p.feats[d] + kept * (size_t)a->depth[d].dim,
                    p.feats[d] + i * (size_t)a->depth[d].dim,
                    (size_t)a->depth[d].dim * sizeof(float));
        p.labels[kept++] = ct_dataset_label(p.sub, i);
    }
    free(ok);
    a->probe_n = kept;
    a->probe_folds = folds;
    size_t count[CT_MAX_CLASSES] = {0};
    for (size_t i = 0; i < kept; i++) count[p.labels[i]]++;
    size_t major = 0;
    for (int k = 0; k < a->k; k++) major = count[k] > major ? count[k] : major;
    a->baseline = kept > 0 ? (double)major / (double)kept : NAN;
    if (kept < (size_t)folds * 2) {
        s = ct_error(CT_EINVAL, "only %zu images could be probed: too few for %d-fold "
                     "cross-validation", kept, folds);
        goto done;
    }
    for (int d = 0; d < CT_ADVISE_DEPTHS; d++) {
        double acc = NAN;
        s = ct_probe_cv(p.feats[d], p.labels, kept, a->depth[d].dim, a->k, folds, c->l2,
                        c->seed, &acc);
        if (s != CT_OK) {
            s = ct_error(s, "%s features: %s", DEPTH_LAYERS[d], ct_last_error());
            goto done;
        }
        a->depth[d].acc = acc;
        a->depth[d].se = sqrt(acc * (1.0 - acc) / (double)kept);
    }
    a->probed = true;
    a->seconds = now_seconds() - t0;
done:
    probe_free(&p);
    return s;
}

ct_status ct_advise_dataset(const ct_dataset *ds, const ct_advise_config *c, ct_advice *a) {
    memset(a, 0, sizeof *a);
    a->similarity = NAN;
    a->baseline = NAN;
    if (!ct_dataset_labelled(ds))
        return ct_error(CT_EINVAL, "the data has no labels (is_iceberg): it is test data; "
                        "advise on the training data");
    a->k = ct_dataset_num_classes(ds);
    if (a->k < 2)
        return ct_error(CT_EINVAL, "training needs at least 2 classes, found %d", a->k);
    if (a->k > CT_MAX_CLASSES)
        return ct_error(CT_EINVAL, "%d classes: at most %d", a->k, CT_MAX_CLASSES);
    for (int k = 0; k < a->k; k++) {
        a->counts[k] = ct_dataset_class_count(ds, k);
        a->n += a->counts[k];
        snprintf(a->class_names[k], sizeof a->class_names[k], "%s", ct_dataset_class_name(ds, k));
    }
    if (a->n == 0) return ct_error(CT_EINVAL, "no training images");
    int h, w, ch;
    a->iceberg = ct_dataset_in_memory(ds, &h, &w, &ch) && ct_dataset_aux_dim(ds) > 0;
    const char *weights = c->weights != NULL ? c->weights : "imagenet";
    const int folds = c->cv_folds > 0 ? c->cv_folds : 3;
    if (c->cv_folds < 0 || folds < 2 || folds > 20)
        return ct_error(CT_EINVAL, "--cv %d: expected 2 to 20 folds", c->cv_folds);
    if (c->samples < 0)
        return ct_error(CT_EINVAL, "--samples %d: expected at least %d", c->samples, 2 * folds);
    if (c->samples > 0 && c->samples < 2 * folds)
        return ct_error(CT_EINVAL, "--samples %d: the probe needs at least %d images for %d-fold "
                        "cross-validation", c->samples, 2 * folds, folds);

#define RANDOM_FEATURES                                                                        \
    " A linear probe on the features of a randomly initialised network says nothing about how " \
    "close this data is to ImageNet. Fetch the weights (weights/README.md) and run `cutune "    \
    "advise` again to measure it."
    if (strcmp(weights, "none") == 0) {
        snprintf(a->weights_note, sizeof a->weights_note,
                 "without ImageNet weights (--weights none)." RANDOM_FEATURES);
    } else if (a->n < (size_t)(2 * folds)) {
        snprintf(a->weights_note, sizeof a->weights_note,
                 "only %zu images: too few for the probe's %d-fold cross-validation.", a->n,
                 folds);
    } else {
        bool missing = false;
        ct_status s = probe(ds, c, weights, a, &missing);
        if (s != CT_OK && missing) {
            snprintf(a->weights_note, sizeof a->weights_note,
                     "without ImageNet weights: they are not installed (%s)." RANDOM_FEATURES,
                     ct_last_error());
        } else if (s != CT_OK) {
            return s;
        } else if (strcmp(weights, "imagenet") != 0) {
            snprintf(a->weights_note, sizeof a->weights_note, "backbone weights from %s",
                     weights);
        } else {
            snprintf(a->weights_note, sizeof a->weights_note, "ImageNet weights");
        }
    }
#undef RANDOM_FEATURES
    ct_advise_decide(a, c);
    if (c->verbose > 0) ct_advise_print(stdout, a);
    return CT_OK;
}

ct_status ct_advise(const ct_advise_config *c, ct_advice *a) {
    memset(a, 0, sizeof *a);
    if (c->data == NULL) return ct_error(CT_EINVAL, "--data DIR|train.json is required");
    struct stat st;
    if (stat(c->data, &st) != 0)
        return ct_error(CT_ENOTFOUND, "%s: no such file or folder", c->data);
    ct_dataset *ds = NULL;
    ct_status s;
    if (is_dir(c->data)) {
        ct_folder_options fo = {.role = CT_ROLE_TRAINING};
        s = ct_dataset_open_folder(&ds, c->data, &fo);
    } else {
        ct_iceberg_options io = {.na_policy = c->na_policy, .na_value = c->na_value,
                                 .role = CT_ROLE_TRAINING};
        s = ct_dataset_open_iceberg(&ds, c->data, &io);
    }
    if (s != CT_OK) return s;
    if (!ct_dataset_labelled(ds)) {
        ct_dataset_free(ds);
        return ct_error(CT_EINVAL, "%s has no labels (is_iceberg): it is test data; advise on "
                        "the training data", c->data);
    }
    if (c->verbose > 0) {
        char msg[256];
        ct_dataset_found_message(ds, msg, sizeof msg);
        printf("%s\n", msg);
    }
    s = ct_advise_dataset(ds, c, a);
    if (s != CT_OK && ct_dataset_num_classes(ds) < 2)
        s = ct_error(CT_EINVAL, "%s: %s", c->data, ct_last_error());
    ct_dataset_free(ds);
    return s;
}

/* ---- train --strategy auto ---- */

ct_status ct_fit_auto_strategy(fit_run *r, ct_strategy *out) {
    const ct_train_config *t = r->c;
    ct_advise_config c;
    ct_advise_config_defaults(&c);
    c.data = t->data;
    c.weights = t->weights != NULL ? t->weights : "none";
    c.device = t->device;
    c.seed = t->seed;
    c.threads = 0;
    c.na_policy = t->na_policy;
    c.na_value = t->na_value;
    c.color_mode = t->color_mode;
    c.interpolation = t->interpolation;
    c.keep_aspect_ratio = t->keep_aspect_ratio;
    c.standardize = t->standardize;
    c.preprocess_set = t->preprocess_set;
    c.skip_bad = t->skip_bad;
    c.out_dir = t->out_dir;
    c.train_input_size = t->input_size;
    /* The probe's input: the training size, capped on the CPU to keep it quick. */
    int h, w, ch;
    if (!ct_dataset_in_memory(r->train, &h, &w, &ch) && t->input_size > 0 &&
        t->input_size <= CT_ADVISE_CPU_INPUT)
        c.input_size = t->input_size;
    c.verbose = 0;
    ct_advice *a = malloc(sizeof *a);
    if (a == NULL) return ct_error(CT_ENOMEM, "cannot allocate the advice");
    ct_status s = ct_advise_dataset(r->train, &c, a);
    if (s == CT_OK) {
        *out = a->strategy;
        if (t->verbose > 0) {
            printf("--strategy auto: %s\n", strategy_words(a->strategy));
            const char *p = a->reasoning;
            while (*p != '\0') {
                size_t len = strcspn(p, "\n");
                printf("  %.*s\n", (int)len, p);
                p += len + (p[len] == '\n');
            }
            printf("  (--strategy auto sets which layers are frozen; the rates and augmentation "
                   "above are `cutune advise`'s suggestions and are not applied: this run keeps "
                   "its own flags.)\n");
        }
    }
    free(a);
    return s;
}
