/* Evaluation metrics from predicted probabilities: accuracy, cross-entropy, binary ROC AUC, the
 * confusion matrix and per-class precision and recall.
 *
 * Precision of a class nothing was predicted as (and recall of a class absent from the labels)
 * is 0/0. scikit-learn's precision_recall_fscore_support and classification_report, with their
 * default zero_division="warn", set it to 0.0 and warn; so does this file: the value is 0 and
 * the printed report says which classes it concerns, so a table or a CSV built from the
 * numbers never holds nan. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "train/callbacks.h"

#define EPS 1e-7 /* Keras's backend epsilon: probabilities are clipped before the logarithm */

typedef struct scored {
    float score;
    int positive;
} scored;

static int cmp_scored(const void *a, const void *b) {
    float x = ((const scored *)a)->score, y = ((const scored *)b)->score;
    return x < y ? -1 : x > y;
}

/* ROC AUC as the Mann-Whitney statistic: the probability that a random positive scores above a
 * random negative, ties counting one half (average ranks), which is what sklearn computes.
 * Scores and labels are every `stride`-th value: the sigmoid output, or the second class's
 * column of a two-class softmax (sklearn's roc_auc_score(y[:, 1], p[:, 1])). */
static double roc_auc(const float *p, const float *y, long n, int stride) {
    scored *s = malloc((size_t)n * sizeof *s);
    if (s == NULL) return NAN;
    long pos = 0;
    for (long i = 0; i < n; i++) {
        s[i].score = p[i * stride];
        s[i].positive = y[i * stride] >= 0.5f;
        pos += s[i].positive;
    }
    long neg = n - pos;
    if (pos == 0 || neg == 0) {
        free(s);
        return NAN;
    }
    qsort(s, (size_t)n, sizeof *s, cmp_scored);
    double rank_sum = 0.0;
    for (long i = 0; i < n;) {
        long j = i;
        while (j < n && s[j].score == s[i].score) j++;
        double avg_rank = (double)(i + 1 + j) / 2.0; /* ranks i+1 .. j */
        for (long t = i; t < j; t++)
            if (s[t].positive) rank_sum += avg_rank;
        i = j;
    }
    free(s);
    return (rank_sum - (double)pos * (pos + 1) / 2.0) / ((double)pos * neg);
}

static int argmax(const float *v, int k) {
    int best = 0;
    for (int j = 1; j < k; j++)
        if (v[j] > v[best]) best = j;
    return best;
}

ct_status ct_metrics_compute(ct_metrics *m, const float *probs, const float *labels,
                             const float *weights, long n, int outputs) {
    memset(m, 0, sizeof *m);
    if (n <= 0) return ct_error(CT_EINVAL, "metrics need at least one sample");
    if (outputs < 1 || outputs > CT_MAX_CLASSES)
        return ct_error(CT_EINVAL, "metrics: %d outputs is out of range", outputs);
    const int k = outputs == 1 ? 2 : outputs;
    m->n = n;
    m->k = k;
    m->confusion = calloc((size_t)k * k, sizeof *m->confusion);
    m->precision = calloc((size_t)k, sizeof *m->precision);
    m->recall = calloc((size_t)k, sizeof *m->recall);
    if (m->confusion == NULL || m->precision == NULL || m->recall == NULL) {
        ct_metrics_free(m);
        return ct_error(CT_ENOMEM, "cannot allocate metrics for %d classes", k);
    }
    double loss = 0.0, wsum = 0.0, correct = 0.0;
    for (long i = 0; i < n; i++) {
        const float *p = probs + i * outputs, *y = labels + i * outputs;
        double w = weights != NULL ? weights[i] : 1.0, l = 0.0;
        int truth, pred;
        if (outputs == 1) {
            double q = fmin(fmax(p[0], EPS), 1.0 - EPS);
            l = -(y[0] * log(q) + (1.0 - y[0]) * log(1.0 - q));
            truth = y[0] >= 0.5f;
            pred = p[0] >= 0.5f;
        } else {
            for (int j = 0; j < outputs; j++)
                if (y[j] != 0.0f) l -= y[j] * log(fmin(fmax(p[j], EPS), 1.0 - EPS));
            truth = argmax(y, outputs);
            pred = argmax(p, outputs);
        }
        loss += w * l;
        wsum += w;
        correct += w * (truth == pred);
        m->confusion[truth * k + pred]++;
    }
    /* Keras averages a weighted loss over the batch size, not the weight sum. */
    m->loss = loss / (double)n;
    m->accuracy = wsum > 0.0 ? correct / wsum : NAN;
    m->auc = outputs == 1   ? roc_auc(probs, labels, n, 1)
             : outputs == 2 ? roc_auc(probs + 1, labels + 1, n, 2)
                            : NAN;
    for (int c = 0; c < k; c++) {
        long tp = m->confusion[c * k + c], col = 0, row = 0;
        for (int j = 0; j < k; j++) {
            col += m->confusion[j * k + c];
            row += m->confusion[c * k + j];
        }
        m->precision[c] = col > 0 ? (double)tp / col : 0.0;
        m->recall[c] = row > 0 ? (double)tp / row : 0.0;
    }
    return CT_OK;
}

void ct_metrics_free(ct_metrics *m) {
    if (m == NULL) return;
    free(m->confusion);
    free(m->precision);
    free(m->recall);
    for (int k = 0; m->class_names != NULL && k < m->k; k++) free(m->class_names[k]);
    free(m->class_names);
    m->class_names = NULL;
    m->confusion = NULL;
    m->precision = m->recall = NULL;
}

/* scikit-learn's UndefinedMetricWarning, in its words: which classes had no predicted samples
 * (precision) or no true samples (recall), set to 0.0. `column`: count a column of the
 * confusion matrix (predicted) rather than a row (true). */
static void print_ill_defined(FILE *f, const ct_metrics *m, const char *const *class_names,
                              bool column, const char *what, const char *which) {
    int count = 0;
    for (int c = 0; c < m->k; c++) {
        long sum = 0;
        for (int j = 0; j < m->k; j++)
            sum += column ? m->confusion[j * m->k + c] : m->confusion[c * m->k + j];
        if (sum > 0) continue;
        if (count++ == 0)
            fprintf(f, "note: %s is ill-defined and being set to 0.0 in labels with no %s "
                    "samples:", what, which);
        if (class_names != NULL) fprintf(f, " %s", class_names[c]);
        else fprintf(f, " class %d", c);
    }
    if (count > 0) fprintf(f, " (as scikit-learn's zero_division default)\n");
}

void ct_metrics_print(FILE *f, const ct_metrics *m, const char *const *class_names) {
    fprintf(f, "samples %ld, accuracy %.4f, loss %.4f", m->n, m->accuracy, m->loss);
    if (!isnan(m->auc)) fprintf(f, ", ROC AUC %.4f", m->auc);
    fprintf(f, "\n\nconfusion matrix (rows: true class, columns: predicted)\n%-16s", "");
    for (int c = 0; c < m->k; c++)
        fprintf(f, " %10.10s", class_names != NULL ? class_names[c] : "");
    fputc('\n', f);
    for (int r = 0; r < m->k; r++) {
        char fallback[24];
        snprintf(fallback, sizeof fallback, "class %d", r);
        fprintf(f, "%-16.16s", class_names != NULL ? class_names[r] : fallback);
        for (int c = 0; c < m->k; c++) fprintf(f, " %10ld", m->confusion[r * m->k + c]);
        fputc('\n', f);
    }
    fprintf(f, "\n%-16s %10s %10s\n", "class", "precision", "recall");
    for (int c = 0; c < m->k; c++) {
        char fallback[24];
        snprintf(fallback, sizeof fallback, "class %d", c);
        fprintf(f, "%-16.16s %10.4f %10.4f\n", class_names != NULL ? class_names[c] : fallback,
                m->precision[c], m->recall[c]);
    }
    print_ill_defined(f, m, class_names, true, "Precision", "predicted");
    print_ill_defined(f, m, class_names, false, "Recall", "true");
}
