/* `cutune evaluate` and `cutune predict`: a saved model (best.h5 / final.h5, which carry cutune's
 * configuration) over class folders or iceberg JSON, never augmented, optionally averaged over
 * flipped copies (test-time augmentation). Predictions keep the file name or iceberg id of every
 * row, whatever the batch size or thread count.
 *
 * Batches stream as training's validation batches do (stream.h): pinned loader buffers, the copy
 * of the next batch on the copy stream while the current one is computed, and the
 * standardisation on the device (raw uint8 pixels cross the bus) unless --augment-on loader.
 * The flipped copies are made from the input already on the device (ct_model_flip_input): a
 * batch crosses the bus once however many views are averaged. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../core/atomic.h"
#include "model/model.h"
#include "train/run.h"
#include "train/stream.h"
#include "io/weights.h"

/* --classes: at most this many names are kept for the check (a model with more classes gets
 * them from its file or its data). */
#define CT_PREDICT_MAX_NAMED 1024

void ct_predict_config_defaults(ct_predict_config *c) {
    memset(c, 0, sizeof *c);
    c->batch_size = 32;
    c->threads = 0; /* ct_default_loader_threads of the backend */
    c->device = "auto";
    c->na_policy = CT_NA_MEAN;
}

typedef struct infer {
    const ct_predict_config *c;
    ct_backend be;
    ct_model *m;
    ct_saved_config saved;
    ct_dataset *ds;
    ct_loader *loader;
    ct_stream *stream;
    int n_out, size;
    float *probs;  /* (count, n_out): every sample's averaged probabilities, dataset order */
    float *batch_probs; /* (batch, n_out): one view's probabilities */
    float *labels; /* (count, n_out) or NULL */
    bool labelled; /* the data's labels are the model's classes */
    /* Keras's progress bar, on stderr when it is a terminal and the pass takes a while. */
    ct_progbar bar;
    long batches, done;
    double t0;
    bool tty, shown;
} infer;

/* Seconds a pass runs before its progress bar appears: quick passes stay quiet. */
#define CT_PREDICT_BAR_AFTER 2.0

static double seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* One more batch done: the bar, once the pass has run CT_PREDICT_BAR_AFTER seconds. */
static void infer_progress(infer *r) {
    r->done++;
    if (!r->tty) return;
    double now = seconds();
    if (!r->shown && now - r->t0 < CT_PREDICT_BAR_AFTER) return;
    if (!r->shown) ct_progbar_init(&r->bar, r->batches, stderr, true, r->t0);
    r->shown = true;
    ct_progbar_update(&r->bar, r->done, NULL, NULL, 0, now);
}

static void infer_free(infer *r) {
    ct_loader_free(r->loader); /* before the stream, whose buffers it fills */
    ct_stream_free(r->stream);
    ct_dataset_free(r->ds);
    ct_model_free(r->m);
    ct_backend_free(&r->be);
    ct_saved_config_free(&r->saved);
    free(r->probs);
    free(r->batch_probs);
    free(r->labels);
}

/* One batch, already staged in `slot`: its input and first forward are queued, then the next
 * batch is fetched and its copy queued behind them (*nb, *nslot), so that waiting for the loader
 * overlaps the device's work; then each view's probabilities are read back and averaged into
 * the dataset-ordered table. */
static ct_status infer_batch(void *user, const ct_batch *b, int slot, const ct_batch **nb,
                             int *nslot) {
    infer *r = user;
    const ct_predict_config *c = r->c;
    float *p = r->batch_probs;
    ct_status s = ct_stream_input(r->stream, slot, NULL);
    if (s == CT_OK) s = ct_model_predict(r->m, b->n, NULL);
    if (s == CT_OK) s = ct_stream_next(r->stream, r->loader, nb, nslot);
    const int views = 1 + c->tta_hflip + c->tta_vflip;
    for (int v = 0; v < views && s == CT_OK; v++) {
        /* The views in turn: as loaded, mirrored left-right, mirrored top-bottom. From the
         * left-right view, flipping both ways gives the top-bottom one. */
        if (v == 1)
            s = ct_model_flip_input(r->m, b->n, c->tta_hflip, !c->tta_hflip);
        else if (v == 2)
            s = ct_model_flip_input(r->m, b->n, true, true);
        if (s == CT_OK && v > 0) s = ct_model_predict(r->m, b->n, NULL);
        if (s == CT_OK) s = ct_model_probs(r->m, p);
        for (int i = 0; s == CT_OK && i < b->n; i++)
            for (int j = 0; j < r->n_out; j++)
                r->probs[(size_t)b->index[i] * r->n_out + j] +=
                    p[(size_t)i * r->n_out + j] / (float)views;
    }
    if (s == CT_OK && r->labels != NULL)
        for (int i = 0; i < b->n; i++)
            memcpy(r->labels + (size_t)b->index[i] * r->n_out, b->y + (size_t)i * r->n_out,
                   (size_t)r->n_out * sizeof(float));
    if (s == CT_OK) infer_progress(r);
    return s;
}

/* --classes: the names of the model's classes (two for a sigmoid output), in its order. */
static ct_status take_classes(ct_saved_config *saved, const char *list, int n_out) {
    const int k = n_out == 1 ? 2 : n_out;
    char buf[4096];
    if (strlen(list) >= sizeof buf)
        return ct_error(CT_EINVAL, "the class names are longer than %zu bytes", sizeof buf - 1);
    snprintf(buf, sizeof buf, "%s", list);
    char *names[CT_PREDICT_MAX_NAMED] = {0};
    int n = 0;
    for (char *save = NULL, *t = strtok_r(buf, ",", &save); t != NULL;
         t = strtok_r(NULL, ",", &save))
        if (n < CT_PREDICT_MAX_NAMED) names[n++] = t;
        else n++;
    if (n != k || k > CT_PREDICT_MAX_NAMED || strstr(list, ",,") != NULL || list[0] == ',' || list[strlen(list) - 1] == ',')
        return ct_error(CT_EINVAL, "class names '%s': the model has %d classes%s, so %d non-empty "
                        "names, comma-separated", list, k, n_out == 1 ? " (a sigmoid output)" : "",
                        k);
    char **copy = calloc((size_t)k, sizeof *copy);
    if (copy == NULL) return ct_error(CT_ENOMEM, "cannot allocate class names");
    for (int j = 0; j < k; j++)
        if ((copy[j] = strdup(names[j])) == NULL) {
            for (int i = 0; i < j; i++) free(copy[i]);
            free(copy);
            return ct_error(CT_ENOMEM, "cannot allocate class names");
        }
    ct_saved_config_free(saved);
    saved->class_names = copy;
    saved->n_classes = k;
    return CT_OK;
}

/* The model: the file's own configuration (cutune's attributes, or the architecture a Keras
 * model file keeps), or for a weights-only file the head and input size the caller gives. */
static ct_status open_model(infer *r, ct_model_config *mc) {
    const ct_predict_config *c = r->c;
    ct_status s = ct_weights_read_config(c->model, mc, &r->saved);
    struct stat st;
    const bool exists = stat(c->model, &st) == 0;
    if (s == CT_ENOTFOUND && c->head == NULL && exists)
        return ct_error(s, "%s holds weights only (save_weights keeps no model): give its head "
                        "and input size (--head SPEC --input-size N)", c->model);
    if (s == CT_ENOTFOUND && c->head != NULL && exists)
        s = ct_weights_config_given(c->model, c->head, c->input_size > 0 ? c->input_size : 224,
                                    mc, &r->saved);
    else if (s == CT_OK && (c->head != NULL || c->input_size > 0))
        return ct_error(CT_EINVAL, "%s describes its own model (%s, %dx%d, head '%s'): a head "
                        "and an input size are given only for a weights-only file", c->model,
                        mc->backbone, mc->input_h, mc->input_w, mc->head);
    if (s != CT_OK) return s;
    if (r->saved.from_keras)
        fprintf(stderr, "cutune: %s is a Keras model: %s, %dx%d input, head '%s'\n", c->model,
                mc->backbone, mc->input_h, mc->input_w, mc->head);
    char note[512];
    if ((s = ct_backend_open(&r->be, c->device, c->precision, note, sizeof note)) != CT_OK)
        return s;
    ct_backend_say_note("cutune", note);
    /* Inference only: every layer frozen from the start, so no gradient or optimizer memory
     * and no kept activations are ever allocated. */
    mc->freeze_to = CT_FREEZE_ALL;
    if ((s = ct_model_init(&r->m, mc, &r->be)) != CT_OK)
        return c->head != NULL ? s : ct_weights_model_error(c->model, mc, s);
    if ((s = ct_weights_load(r->m, c->model, NULL, NULL)) != CT_OK && c->head != NULL) {
        /* Keras's load_weights pairs a legacy file's layers by order, so a head spec without
         * the file's layer names loads as it would in Keras; the message is the by-name one. */
        char first[1024];
        snprintf(first, sizeof first, "%s", ct_last_error());
        ct_weights_load_opts o;
        ct_weights_load_defaults(&o);
        o.match = CT_WEIGHTS_MATCH_ORDER;
        s = ct_weights_load(r->m, c->model, &o, NULL) == CT_OK ? CT_OK : ct_error(s, "%s", first);
    }
    if (s != CT_OK) return s;
    r->n_out = ct_model_num_outputs(r->m);
    r->size = mc->input_h;
    return c->classes != NULL ? take_classes(&r->saved, c->classes, r->n_out) : CT_OK;
}

/* Folders: class subfolders (flow_from_directory), or, when image files lie directly in the
 * folder, every image under it, unlabelled. Labels wanted: the class subfolders if there are
 * any (flow_from_directory ignores the files beside them). */
static ct_status open_folder(infer *r, bool need_labels) {
    ct_folder_options fo = {.role = CT_ROLE_TEST};
    if (need_labels && ct_dataset_open_folder(&r->ds, r->c->data, &fo) == CT_OK) return CT_OK;
    ct_status s = ct_dataset_open_images(&r->ds, r->c->data, &fo);
    if (s != CT_OK) return s;
    const size_t n = ct_dataset_count(r->ds);
    for (size_t i = 0; i < n; i++)
        if (strchr(ct_dataset_name(r->ds, i), '/') == NULL) return CT_OK;
    ct_dataset_free(r->ds);
    r->ds = NULL;
    if (n == 0)
        return ct_error(CT_ENOTFOUND, "%s: no image files (png, jpg, jpeg, bmp, ppm, tif, tiff) "
                        "in it or its subfolders", r->c->data);
    return ct_dataset_open_folder(&r->ds, r->c->data, &fo);
}

/* Whether the data's labels are the model's classes: class folders, as many as the model has
 * classes, with the model's names when it has names. `why` says what differs. */
static bool labels_match(const infer *r, int k, char *why, size_t cap) {
    const ct_dataset *ds = r->ds;
    if (!ct_dataset_labelled(ds)) {
        snprintf(why, cap, "%s has no labels: its images are not in class subfolders",
                 r->c->data);
        return false;
    }
    char have[512] = "", want[512] = "";
    bool same = ct_dataset_num_classes(ds) == k;
    for (int j = 0; j < ct_dataset_num_classes(ds); j++) {
        const char *d = ct_dataset_class_name(ds, j);
        size_t u = strlen(have);
        snprintf(have + u, sizeof have - u, "%s%s", j ? ", " : "", d != NULL ? d : "");
        if (same && r->saved.n_classes == k && (d == NULL || strcmp(d, r->saved.class_names[j])))
            same = false;
    }
    for (int j = 0; j < r->saved.n_classes; j++) {
        size_t u = strlen(want);
        snprintf(want + u, sizeof want - u, "%s%s", j ? ", " : "", r->saved.class_names[j]);
    }
    if (!same)
        snprintf(why, cap, "the class folders of %s (%s) are not the %d classes of %s%s%s%s",
                 r->c->data, have, k, r->c->model, want[0] ? " (" : "", want,
                 want[0] ? ")" : "");
    return same;
}

static ct_status open_data(infer *r, ct_model_config *mc, bool need_labels) {
    const ct_predict_config *c = r->c;
    struct stat st;
    ct_status s;
    if (stat(c->data, &st) != 0) return ct_error(CT_ENOTFOUND, "%s: no such file or folder", c->data);
    if (S_ISDIR(st.st_mode)) {
        s = open_folder(r, need_labels);
    } else {
        ct_iceberg_options io = {.na_policy = c->na_policy, .na_value = c->na_value,
                                 .role = CT_ROLE_TEST};
        s = ct_dataset_open_iceberg(&r->ds, c->data, &io);
    }
    if (s != CT_OK) return s;
    if (ct_dataset_aux_dim(r->ds) != mc->aux_dim)
        return ct_error(CT_EINVAL, "%s has %d auxiliary value(s) per sample but the model %s "
                        "takes %d", c->data, ct_dataset_aux_dim(r->ds), c->model, mc->aux_dim);
    char why[1536];
    r->labelled = labels_match(r, r->n_out == 1 ? 2 : r->n_out, why, sizeof why);
    if (need_labels && !r->labelled)
        return ct_error(CT_EINVAL, "cannot evaluate: %s (`cutune predict` writes predictions "
                        "for unlabelled images)", why);
    return CT_OK;
}

static ct_status run_inference(infer *r, bool need_labels) {
    const ct_predict_config *c = r->c;
    ct_status s;
    if (c->model == NULL) return ct_error(CT_EINVAL, "--model FILE.h5 is required");
    if (c->data == NULL) return ct_error(CT_EINVAL, "--data DIR|file.json is required");
    if (c->batch_size < 1) return ct_error(CT_EINVAL, "--batch-size must be at least 1");
    ct_model_config mc;
    memset(&mc, 0, sizeof mc);
    mc.max_batch = c->batch_size;
    mc.seed = 1;
    if ((s = open_model(r, &mc)) != CT_OK || (s = open_data(r, &mc, need_labels)) != CT_OK)
        return s;

    ct_loader_config lc;
    ct_loader_config_defaults(&lc);
    lc.batch_size = c->batch_size;
    lc.shuffle = false;
    lc.threads = c->threads > 0 ? c->threads : ct_default_loader_threads(&r->be);
    lc.class_mode = !r->labelled ? CT_CLASS_NONE
                    : r->n_out == 1 ? CT_CLASS_BINARY
                                    : CT_CLASS_CATEGORICAL;
    lc.image.target_h = lc.image.target_w = r->size;
    lc.image.png16 = c->png16;
    lc.skip_bad = c->skip_bad;
    if (c->png16 == CT_PNG16_CLIP && !c->png16_noted)
        ct_png16_note(ct_dataset_png16_count(r->ds), c->png16, c->data);
    lc.cache_bytes = 0;
    if ((s = ct_standardize_parse(r->saved.preprocessing, &lc.standardize)) != CT_OK)
        return ct_error(s, "%s: %s", c->model, ct_last_error());
    if (c->preprocess != NULL &&
        (s = ct_parse_preprocess(c->preprocess, &lc.standardize.preprocess)) != CT_OK)
        return s;
    bool on_device = false;
    if ((s = ct_stream_parse_where(c->augment_on, &r->be, &on_device)) != CT_OK) return s;
    if ((s = ct_stream_init(&r->stream, r->m, r->ds, on_device, &lc)) != CT_OK) return s;
    if ((s = ct_loader_init(&r->loader, r->ds, &lc)) != CT_OK) return s;

    const size_t count = ct_dataset_count(r->ds);
    r->probs = calloc(count * r->n_out, sizeof *r->probs);
    r->labels = lc.class_mode != CT_CLASS_NONE ? calloc(count * r->n_out, sizeof *r->labels) : NULL;
    r->batch_probs = malloc((size_t)c->batch_size * r->n_out * sizeof *r->batch_probs);
    if (r->probs == NULL || r->batch_probs == NULL ||
        (lc.class_mode != CT_CLASS_NONE && r->labels == NULL))
        return ct_error(CT_ENOMEM, "cannot allocate predictions for %zu samples", count);
    r->batches = (long)((count + (size_t)c->batch_size - 1) / (size_t)c->batch_size);
    r->t0 = seconds();
    r->tty = isatty(fileno(stderr));
    s = ct_stream_pass(r->stream, r->loader, 0, infer_batch, r);
    if (r->shown && r->done < r->batches) fputc('\n', stderr); /* a bar cut short */
    if (s != CT_OK) return s;
    if (ct_loader_bad_count(r->loader) > 0)
        fprintf(stderr, "cutune: skipped %zu unreadable image(s); the first: %s\n",
                ct_loader_bad_count(r->loader), ct_loader_bad_message(r->loader, 0));
    return CT_OK;
}

static bool skipped(const infer *r, size_t i) {
    for (size_t b = 0; b < ct_loader_bad_count(r->loader); b++)
        if (ct_loader_bad_sample(r->loader, b) == i) return true;
    return false;
}

/* The data's class names into m->class_names (the metrics' rows and columns). */
static ct_status name_classes(ct_metrics *m, const ct_dataset *ds) {
    m->class_names = calloc((size_t)m->k, sizeof *m->class_names);
    if (m->class_names == NULL) return ct_error(CT_ENOMEM, "cannot allocate class names");
    for (int k = 0; k < m->k; k++) {
        const char *name = ct_dataset_class_name(ds, k);
        m->class_names[k] = strdup(name != NULL ? name : "");
        if (m->class_names[k] == NULL) return ct_error(CT_ENOMEM, "cannot allocate class names");
    }
    return CT_OK;
}

ct_status ct_evaluate(const ct_predict_config *c, ct_metrics *m) {
    memset(m, 0, sizeof *m);
    infer r = {.c = c};
    ct_status s = run_inference(&r, true);
    if (s == CT_OK) {
        /* Rows of skipped images are left out. */
        size_t count = ct_dataset_count(r.ds), kept = 0;
        for (size_t i = 0; i < count; i++) {
            if (skipped(&r, i)) continue;
            memmove(r.probs + kept * r.n_out, r.probs + i * r.n_out, (size_t)r.n_out * sizeof(float));
            memmove(r.labels + kept * r.n_out, r.labels + i * r.n_out, (size_t)r.n_out * sizeof(float));
            kept++;
        }
        s = ct_metrics_compute(m, r.probs, r.labels, NULL, (long)kept, r.n_out);
    }
    if (s == CT_OK) s = name_classes(m, r.ds);
    if (s != CT_OK) ct_metrics_free(m);
    infer_free(&r);
    return s;
}

void ct_predictions_free(ct_predictions *p) {
    if (p == NULL) return;
    for (size_t i = 0; p->names != NULL && i < p->rows; i++) free(p->names[i]);
    for (int j = 0; p->columns != NULL && j < p->outputs; j++) free(p->columns[j]);
    free(p->names);
    free(p->columns);
    free(p->probs);
    memset(p, 0, sizeof *p);
}

/* The CSV's columns: the model's class names (class 1's for a sigmoid), else the class folders
 * of data that match the model's classes, else "p" (a sigmoid) or "class_J". */
static ct_status name_columns(ct_predictions *p, const infer *r) {
    p->columns = calloc((size_t)p->outputs, sizeof *p->columns);
    if (p->columns == NULL) return ct_error(CT_ENOMEM, "cannot allocate column names");
    for (int j = 0; j < p->outputs; j++) {
        int cls = p->outputs == 1 ? 1 : j;
        char dflt[32];
        snprintf(dflt, sizeof dflt, p->outputs == 1 ? "p" : "class_%d", j);
        const char *name = cls < r->saved.n_classes ? r->saved.class_names[cls]
                           : r->labelled             ? ct_dataset_class_name(r->ds, cls)
                                                     : NULL;
        p->columns[j] = strdup(name != NULL ? name : dflt);
        if (p->columns[j] == NULL) return ct_error(CT_ENOMEM, "cannot allocate column names");
    }
    return CT_OK;
}

/* Every kept row's name and probabilities, in dataset order. */
static ct_status gather_rows(ct_predictions *p, const infer *r) {
    const size_t count = ct_dataset_count(r->ds);
    p->names = calloc(count > 0 ? count : 1, sizeof *p->names);
    p->probs = malloc((count > 0 ? count : 1) * (size_t)p->outputs * sizeof *p->probs);
    if (p->names == NULL || p->probs == NULL)
        return ct_error(CT_ENOMEM, "cannot allocate predictions for %zu samples", count);
    for (size_t i = 0; i < count; i++) {
        if (skipped(r, i)) continue;
        p->names[p->rows] = strdup(ct_dataset_name(r->ds, i));
        if (p->names[p->rows] == NULL) return ct_error(CT_ENOMEM, "cannot allocate names");
        memcpy(p->probs + p->rows * p->outputs, r->probs + i * p->outputs,
               (size_t)p->outputs * sizeof *p->probs);
        p->rows++;
    }
    return CT_OK;
}

ct_status ct_predict_arrays(const ct_predict_config *c, ct_predictions *p) {
    memset(p, 0, sizeof *p);
    infer r = {.c = c};
    ct_status s = run_inference(&r, false);
    if (s == CT_OK) {
        int h, w, ch;
        p->outputs = r.n_out;
        p->kaggle = ct_dataset_in_memory(r.ds, &h, &w, &ch) && ct_dataset_aux_dim(r.ds) > 0 &&
                    r.n_out == 1;
        s = name_columns(p, &r);
    }
    if (s == CT_OK) s = gather_rows(p, &r);
    if (s != CT_OK) ct_predictions_free(p);
    infer_free(&r);
    return s;
}

/* The predictions as `cutune predict` writes them, atomically. */
static ct_status write_csv(const ct_predictions *p, const char *path) {
    ct_atomic_file a;
    ct_status s = ct_atomic_open(&a, path, "w");
    if (s != CT_OK) return s;
    if (p->kaggle) {
        fputs("id,is_iceberg\n", a.f); /* Kaggle's submission format */
    } else {
        fputs("filename", a.f);
        for (int j = 0; j < p->outputs; j++) {
            fputc(',', a.f);
            ct_csv_field(a.f, p->columns[j]);
        }
        fputc('\n', a.f);
    }
    for (size_t i = 0; i < p->rows; i++) {
        ct_csv_field(a.f, p->names[i]);
        /* %.9g: every float32 exactly, so a confident 0.99999994 is not written as 1.000000
         * (whose log loss, when wrong, is then infinite). */
        for (int j = 0; j < p->outputs; j++) fprintf(a.f, ",%.9g", p->probs[i * p->outputs + j]);
        fputc('\n', a.f);
    }
    return ct_atomic_commit(&a);
}

ct_status ct_predict(const ct_predict_config *c, size_t *rows) {
    *rows = 0;
    if (c->out == NULL) return ct_error(CT_EINVAL, "--out preds.csv is required");
    ct_predictions p;
    ct_status s = ct_predict_arrays(c, &p);
    if (s == CT_OK && (s = write_csv(&p, c->out)) == CT_OK) *rows = p.rows;
    ct_predictions_free(&p);
    return s;
}
