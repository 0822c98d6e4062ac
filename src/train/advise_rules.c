/* The rules of `cutune advise`: from the counted classes and the probe's scores to a cell of the
 * seed table (dataset size x similarity to ImageNet), the hyper-parameters that go with it, the
 * reasoning in sentences and the `cutune train` line; and the printed report. No measuring here
 * (advise.c) and no numerics (probe.c): this file can be tested on made-up scores. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "../model/backbone.h"
#include "train/run.h"

static void appendf(char *buf, size_t cap, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

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

static const ct_backbone *backbone_of(const ct_advise_config *c) {
    const ct_backbone *bb = ct_backbone_find(c != NULL ? c->backbone : NULL);
    return bb != NULL ? bb : ct_backbone_find(NULL);
}

/* "train the head only: ... (--freeze-to block5_pool)" */
static void strategy_words(ct_strategy s, const ct_backbone *bb, char *buf, size_t cap) {
    switch (s) {
    case CT_STRATEGY_HEAD:
        snprintf(buf, cap, "train the head only: the whole backbone frozen (--freeze-to %s)",
                 bb->cut[CT_CUT_HEAD]);
        break;
    case CT_STRATEGY_TOP:
        snprintf(buf, cap, "train the top block and the head: blocks 1-4 frozen (--freeze-to %s)",
                 bb->cut[CT_CUT_TOP]);
        break;
    case CT_STRATEGY_DEEP:
        snprintf(buf, cap, "train blocks 4-5 and the head: blocks 1-3 frozen (--freeze-to %s)",
                 bb->cut[CT_CUT_DEEP]);
        break;
    default: snprintf(buf, cap, "train everything: no layer frozen"); break;
    }
}

/* The size axis, and whether the classes need weighting. */
static void decide_size(ct_advice *a, const ct_backbone *bb) {
    char g1[32], g2[32];
    a->per_class = a->k > 0 ? (double)a->n / (double)a->k : 0.0;
    a->large = a->per_class >= CT_ADVISE_LARGE_PER_CLASS;
    size_t lo = (size_t)-1, hi = 0;
    for (int k = 0; k < a->k; k++) {
        if (a->counts[k] < lo) lo = a->counts[k];
        if (a->counts[k] > hi) hi = a->counts[k];
    }
    a->balanced = a->k >= 2 && hi >= 3 * (lo > 0 ? lo : 1);
    char small[256];
    snprintf(small, sizeof small, "That is small: below 1,000 per class (ImageNet has about "
             "1,300), fine-tuning many of %s's %.1f million backbone weights overfits readily.",
             bb->keras_name, (double)ct_backbone_params(bb) / 1e6);
    appendf(a->reasoning, sizeof a->reasoning,
            "Size: %s training images in %d classes, %.0f per class on average. %s\n",
            grouped(a->n, g1, sizeof g1), a->k, a->per_class,
            a->large ? "That is large: at least 1,000 per class (ImageNet has about 1,300), "
                       "enough to move the convolution weights without memorising the data."
                     : small);
    if (a->balanced)
        appendf(a->reasoning, sizeof a->reasoning,
                "The classes are unbalanced (%s vs %s images): weight them with --class-weight "
                "balanced so the loss does not favour the larger ones.\n",
                grouped(hi, g1, sizeof g1), grouped(lo, g2, sizeof g2));
}

/* The similarity axis from the probe: the top depth against the baseline and the lower depths. */
static void decide_similarity(ct_advice *a) {
    if (!a->probed) {
        a->similarity = NAN;
        a->similar = true;
        appendf(a->reasoning, sizeof a->reasoning,
                "Similarity: not measured, %s This advice falls back to the size axis alone and "
                "assumes the common case of a domain like ImageNet's.\n", a->weights_note);
        return;
    }
    const ct_probe_score *top = &a->depth[CT_ADVISE_DEPTHS - 1];
    double best_lower = -1.0;
    int best_i = 0;
    for (int i = 0; i < CT_ADVISE_DEPTHS - 1; i++)
        if (a->depth[i].acc > best_lower) {
            best_lower = a->depth[i].acc;
            best_i = i;
        }
    double sim = a->baseline < 1.0 ? (top->acc - a->baseline) / (1.0 - a->baseline) : 0.0;
    a->similarity = sim < 0.0 ? 0.0 : sim > 1.0 ? 1.0 : sim;
    const bool high = a->similarity >= CT_ADVISE_SIMILARITY;
    a->similar = high && top->acc >= best_lower - CT_ADVISE_DEPTH_SLACK;
    appendf(a->reasoning, sizeof a->reasoning,
            "Similarity: a linear probe on frozen %s features (global average pooled, %d-fold "
            "cross-validated on %zu images at %dx%d) is right %.1f%% (+/- %.1f) of the time, "
            "against %.1f%% for always answering the largest class: similarity %.2f on a scale "
            "where 0 is the baseline and 1 is perfect. The lower blocks reach %.1f%% (%s) and "
            "%.1f%% (%s).\n", top->layer, a->probe_folds, a->probe_n, a->input_size,
            a->input_size, 100.0 * top->acc, 100.0 * top->se, 100.0 * a->baseline,
            a->similarity, 100.0 * a->depth[0].acc, a->depth[0].layer, 100.0 * a->depth[1].acc,
            a->depth[1].layer);
    if (a->similar)
        appendf(a->reasoning, sizeof a->reasoning,
                "At %.2f (threshold %.2f), with block5 no worse than the lower blocks, the top "
                "ImageNet features already separate these classes: the domain is similar to "
                "ImageNet's.\n", a->similarity, CT_ADVISE_SIMILARITY);
    else if (!high)
        appendf(a->reasoning, sizeof a->reasoning,
                "Below the %.2f threshold, the ImageNet features separate these classes poorly: "
                "the domain is different from ImageNet's, and the convolutions need to learn "
                "it.\n", CT_ADVISE_SIMILARITY);
    else
        appendf(a->reasoning, sizeof a->reasoning,
                "The similarity clears the %.2f threshold, but %s beats %s by more than %.0f "
                "points: the generic lower features fit better than ImageNet's object-level "
                "ones, a sign of a different domain.\n", CT_ADVISE_SIMILARITY,
                a->depth[best_i].layer, top->layer, 100.0 * CT_ADVISE_DEPTH_SLACK);
    if (a->probe_n < 100)
        appendf(a->reasoning, sizeof a->reasoning,
                "With only %zu images probed the accuracies are rough (standard error %.0f "
                "points): treat the domain call as a hint.\n", a->probe_n, 100.0 * top->se);
}

/* The seed table: one cell per (size, similarity), and what goes with it. */
static void choose_cell(ct_advice *a, const ct_backbone *bb) {
    typedef struct {
        ct_strategy strategy;
        int cut; /* CT_CUT_*, or -1: nothing frozen */
        ct_optimizer_kind optimizer;
        float momentum;
        bool nesterov;
        float body_lr_mult;
        int warmup_epochs;
    } cell_t;
    static const cell_t cells[2][2] = {
        /* small: different domain, similar domain */
        {{CT_STRATEGY_DEEP, CT_CUT_DEEP, CT_OPT_SGD, 0.9f, true, 0.1f, 2},
         {CT_STRATEGY_HEAD, CT_CUT_HEAD, CT_OPT_ADAM, 0.0f, false, 1.0f, 0}},
        /* large: different domain, similar domain */
        {{CT_STRATEGY_ALL, -1, CT_OPT_SGD, 0.9f, true, 0.3f, 1},
         {CT_STRATEGY_TOP, CT_CUT_TOP, CT_OPT_SGD, 0.9f, true, 0.1f, 1}},
    };
    const cell_t *cell = &cells[a->large][a->similar];
    a->strategy = cell->strategy;
    a->optimizer = cell->optimizer;
    a->lr = 1e-3f;
    a->momentum = cell->momentum;
    a->nesterov = cell->nesterov;
    a->body_lr_mult = cell->body_lr_mult;
    a->warmup_epochs = cell->warmup_epochs;
    a->freeze_to = cell->cut >= 0 ? bb->cut[cell->cut] : "";
    a->epochs = a->large ? 20 : 30;
    a->patience = a->large ? 3 : 5;
    /* Flips only where the data's kind says a mirrored image keeps its label: radar images seen
     * from above (iceberg JSON). For class folders nothing here can tell whether left-right
     * orientation carries the label (text, digits, signs, the side of a lesion in a scan), so
     * the command leaves flips out and the reasoning says when to add them. */
    a->horizontal_flip = a->iceberg;
    a->vertical_flip = a->iceberg;
    a->zoom_range = a->large ? 0.0f : 0.2f;
    a->rotation_range = a->large ? 0.0f : 10.0f;
    strategy_words(a->strategy, bb, a->summary, sizeof a->summary);
}

static const char *why_of_cell(const ct_advice *a) {
    switch (a->strategy) {
    case CT_STRATEGY_HEAD:
        return a->probed ? "the frozen features already fit, and training them on little data "
                           "would overfit. Adam at 0.001 trains the new head quickly; with the "
                           "backbone frozen there is no body rate to lower."
                         : "with little data the head alone is the safest start, as it cannot "
                           "overfit the backbone; if validation accuracy stalls well short of "
                           "what the task needs, the domain is probably different: unfreeze "
                           "blocks 4-5 (--freeze-to block3_pool --body-lr-mult 0.1). Adam at "
                           "0.001 trains the new head quickly.";
    case CT_STRATEGY_DEEP:
        return "the worst cell of the table. The top blocks' ImageNet features do not fit, so "
               "blocks 4-5 retrain while blocks 1-3 (edges, textures) stay frozen to limit "
               "overfitting. SGD at 0.001 with Nesterov momentum, the backbone at a tenth of it "
               "(--body-lr-mult 0.1), after 2 warm-up epochs that train the fresh head alone so "
               "its random gradients do not wreck the pretrained blocks.";
    case CT_STRATEGY_TOP:
        return "the features fit and there is data enough to adapt the most specific ones, so "
               "the top block (block5) trains with the head. SGD at 0.001 with Nesterov "
               "momentum, block5 at a tenth of it (--body-lr-mult 0.1), after 1 warm-up epoch "
               "of the head alone.";
    default:
        return "the data can carry retraining the whole network, and the domain needs it. SGD "
               "at 0.001 with Nesterov momentum, the backbone at 0.3 of it (--body-lr-mult 0.3: "
               "it must move further than for a similar domain, but its pretrained start is "
               "still worth keeping), after 1 warm-up epoch of the head alone.";
    }
}

/* Why the flips are in the command, or why not. */
static const char *flips_words(const ct_advice *a) {
    return a->iceberg
               ? "Flips, horizontal and vertical: these are radar images seen from above, where "
                 "a mirrored ship is still a ship and an iceberg still an iceberg; check that "
                 "nothing in your labels depends on the image's orientation."
               : "No flips: nothing measured here can tell whether a mirrored image keeps its "
                 "class (text, digits, arrows and signs do not; the side of a finding in a "
                 "scan may be the label). If mirroring cannot change the label, add "
                 "--horizontal-flip (and --vertical-flip for views without an up, such as "
                 "microscopy or satellite images).";
}

static void explain_cell(ct_advice *a) {
    appendf(a->reasoning, sizeof a->reasoning, "Recommendation: %s. %s data, %s: %s\n",
            a->summary, a->large ? "Large" : "Small",
            !a->probed ? "domain assumed similar" : a->similar ? "similar domain"
                                                               : "different domain",
            why_of_cell(a));
    if (!a->large)
        appendf(a->reasoning, sizeof a->reasoning,
                "Augmentation, as the seed notebook does for small data: zoom 0.2 and rotation "
                "10 degrees. %s Early stopping (patience 5) on a stratified 20%% validation "
                "split keeps the best epoch; with this little data `--folds 5` (and `--test` "
                "to average the folds' predictions) gives a steadier estimate.\n",
                flips_words(a));
    else
        appendf(a->reasoning, sizeof a->reasoning,
                "Augmentation: with this much data heavier transforms mostly cost time. %s "
                "Early stopping (patience 3) on a stratified 20%% validation split.\n",
                flips_words(a));
}

/* The --input-size of the command: the one asked for, else the probe's when it differs from
 * train's default (224 for folders; in-memory images keep their own size, as the probe did),
 * so the run trains at the size that was measured. 0: none. */
static int command_input_size(const ct_advice *a, const ct_advise_config *c) {
    if (c != NULL && c->train_input_size > 0) return c->train_input_size;
    if (a->probed && !a->iceberg && a->input_size > 0 && a->input_size != 224)
        return a->input_size;
    return 0;
}

/* Whether the command trains without pretrained weights: asked for, or not installed. */
static bool command_without_weights(const ct_advice *a, const ct_advise_config *c) {
    return a->weights_missing || (c != NULL && c->weights != NULL &&
                                  strcmp(c->weights, "none") == 0);
}

/* What the command carries that the table does not: the weights and the input size. */
static void explain_command(ct_advice *a, const ct_advise_config *c) {
    if (a->weights_missing)
        appendf(a->reasoning, sizeof a->reasoning,
                "The ImageNet weights are not installed, so the command below trains from a "
                "random start (--weights none) and runs as printed; that is not transfer "
                "learning, and it needs far more data. Fetch the weights first (sh "
                "weights/fetch.sh in the cutune checkout, see weights/README.md; `cutune train "
                "--weights imagenet` also downloads them on first use unless CUTUNE_OFFLINE=1), "
                "then run `cutune advise` again and drop --weights none.\n");
    const int size = command_input_size(a, c);
    if (size > 0 && (c == NULL || c->train_input_size <= 0))
        appendf(a->reasoning, sizeof a->reasoning,
                "The probe ran at %dx%d (advise's default on the CPU, to keep it quick), so "
                "the command trains at that size, the one measured. Train's default, 224x224, "
                "is about 4 times slower per image and often more accurate: to use it, drop "
                "--input-size %d (or give `cutune advise --input-size 224` to measure it).\n",
                size, size, size);
}

/* The `cutune train` line that applies the advice. */
static void write_command(ct_advice *a, const ct_advise_config *c, const ct_backbone *bb) {
    char *cmd = a->command;
    const size_t cap = sizeof a->command;
    snprintf(cmd, cap, "cutune train --data");
    append_word(cmd, cap, c != NULL && c->data != NULL ? c->data : "DATA");
    appendf(cmd, cap, " --out");
    append_word(cmd, cap, c != NULL && c->out_dir != NULL ? c->out_dir : "runs/advised");
    if (strcmp(bb->name, CT_BACKBONE_DEFAULT) != 0) appendf(cmd, cap, " --backbone %s", bb->name);
    if (command_without_weights(a, c)) {
        appendf(cmd, cap, " --weights none");
    } else if (c != NULL && c->weights != NULL && strcmp(c->weights, "imagenet") != 0) {
        appendf(cmd, cap, " --weights");
        append_word(cmd, cap, c->weights);
    }
    const int size = command_input_size(a, c);
    if (size > 0) appendf(cmd, cap, " --input-size %d", size);
    if (a->freeze_to[0] != '\0') appendf(cmd, cap, " --freeze-to %s", a->freeze_to);
    if (a->warmup_epochs > 0) appendf(cmd, cap, " --warmup-epochs %d", a->warmup_epochs);
    if (a->optimizer == CT_OPT_ADAM)
        appendf(cmd, cap, " --optimizer adam --lr %g", (double)a->lr);
    else
        appendf(cmd, cap, " --optimizer sgd --lr %g --momentum %g%s", (double)a->lr,
                (double)a->momentum, a->nesterov ? " --nesterov" : "");
    if (a->body_lr_mult != 1.0f)
        appendf(cmd, cap, " --body-lr-mult %g", (double)a->body_lr_mult);
    appendf(cmd, cap, " --epochs %d --validation-split 0.2 --split stratified --patience %d "
            "--restore-best-weights", a->epochs, a->patience);
    if (a->horizontal_flip) appendf(cmd, cap, " --horizontal-flip");
    if (a->vertical_flip) appendf(cmd, cap, " --vertical-flip");
    if (a->zoom_range > 0.0f) appendf(cmd, cap, " --zoom-range %g", (double)a->zoom_range);
    if (a->rotation_range > 0.0f)
        appendf(cmd, cap, " --rotation-range %g", (double)a->rotation_range);
    if (a->balanced) appendf(cmd, cap, " --class-weight balanced");
}

void ct_advise_decide(ct_advice *a, const ct_advise_config *c) {
    const ct_backbone *bb = backbone_of(c);
    a->reasoning[0] = '\0';
    a->command[0] = '\0';
    decide_size(a, bb);
    decide_similarity(a);
    choose_cell(a, bb);
    explain_cell(a);
    explain_command(a, c);
    write_command(a, c, bb);
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
    ct_advise_print_reasoning(f, "", a);
    fprintf(f, "\n%s\n", a->command);
}

void ct_advise_print_reasoning(FILE *f, const char *indent, const ct_advice *a) {
    for (const char *p = a->reasoning; *p != '\0';) {
        size_t len = strcspn(p, "\n");
        fprintf(f, "%s%.*s\n", indent, (int)len, p);
        p += len + (p[len] == '\n');
    }
}
