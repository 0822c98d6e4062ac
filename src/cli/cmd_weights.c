/* `cutune inspect` and `cutune export-keras`: what a weights file holds and whether it fits a
 * model, and the Keras code that rebuilds a cutune model and loads its weights. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../model/backbone.h"
#include "cli.h"
#include "core/backend.h"
#include "model/model.h"
#include "io/weights.h"

static bool wants_help(int argc, char **argv) {
    for (int i = 0; i < argc; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) return true;
    return false;
}

/* Takes the one positional FILE out of argv (every flag of these commands takes a value). */
static bool take_file(const char *cmd, int *argc, char **argv, const char **file) {
    *file = NULL;
    int out = 0;
    for (int i = 0; i < *argc; i++) {
        const char *a = argv[i];
        if (strncmp(a, "--", 2) == 0) {
            argv[out++] = argv[i];
            if (strchr(a, '=') == NULL && i + 1 < *argc) argv[out++] = argv[++i];
            continue;
        }
        if (*file != NULL) {
            fprintf(stderr, "cutune %s: unexpected argument '%s' (one FILE only)\n", cmd, a);
            return false;
        }
        *file = a;
    }
    *argc = out;
    if (*file == NULL) {
        fprintf(stderr, "cutune %s: which file? (usage: cutune %s FILE ...)\n", cmd, cmd);
        return false;
    }
    return true;
}

static void thousands(char *buf, size_t cap, size_t v) {
    char tmp[32];
    int n = snprintf(tmp, sizeof tmp, "%zu", v), used = 0;
    for (int i = 0; i < n && (size_t)used + 2 < cap; i++) {
        if (i > 0 && (n - i) % 3 == 0) buf[used++] = ',';
        buf[used++] = tmp[i];
    }
    buf[used] = '\0';
}

static void dims_text(char *buf, size_t cap, const ct_weights_array *a) {
    size_t used = (size_t)snprintf(buf, cap, "(");
    for (int d = 0; d < a->ndim && used < cap; d++)
        used += (size_t)snprintf(buf + used, cap - used, "%s%lld", d ? ", " : "",
                                 (long long)a->dims[d]);
    if (used < cap) snprintf(buf + used, cap - used, a->ndim == 1 ? ",)" : ")");
}

static void print_file(const ct_weights_file *wf) {
    printf("%s: %s\n", wf->path, ct_weights_format_name(wf->format));
    if (wf->format != CT_WEIGHTS_KERAS3)
        printf("  names: %s strings%s; keras_version: %s; backend: %s\n",
               wf->vlen_strings ? "variable-length" : "fixed-length",
               wf->split_names ? ", split into layer_names0, layer_names1, ..." : "",
               wf->keras_version[0] ? wf->keras_version : "(none)",
               wf->backend[0] ? wf->backend : "(none)");
    else if (!wf->names_known)
        printf("  no layer names recorded: layers pair with a model by class order\n");
    printf("  %-24s %-28s %-22s %s\n", "layer", "weight", "shape", "dtype");
    int with = 0, arrays = 0;
    for (int i = 0; i < wf->n_layers; i++) {
        const ct_weights_layer *l = &wf->layers[i];
        if (l->n_arrays == 0) {
            printf("  %-24s %s\n", l->name, "-");
            continue;
        }
        with++;
        for (int k = 0; k < l->n_arrays; k++) {
            char d[96];
            dims_text(d, sizeof d, &l->arrays[k]);
            printf("  %-24s %-28s %-22s %s\n", k == 0 ? l->name : "", l->arrays[k].name, d,
                   l->arrays[k].dtype_name);
            arrays++;
        }
    }
    char p[32];
    thousands(p, sizeof p, wf->n_params);
    printf("%d layers, %d with weights, %d arrays, %s parameters (%.1f MB as float32)\n",
           wf->n_layers, with, arrays, p, wf->n_params * 4.0 / 1e6);
    if (wf->format != CT_WEIGHTS_KERAS3)
        printf("conv kernels are stored as Keras writes them: (3, 3, in, out) = HWIO\n");
}

static void print_config(const char *path) {
    ct_model_config cfg = {0};
    ct_saved_config extra;
    if (ct_weights_read_config(path, &cfg, &extra) != CT_OK) {
        printf("cutune configuration: unreadable: %s\n", ct_last_error());
        return;
    }
    printf("written by cutune %s: backbone %s, head '%s', input %dx%dx%d, aux_dim %d, "
           "preprocessing %s\n",
           extra.cutune_version, extra.backbone, extra.head, cfg.input_h, cfg.input_w, cfg.input_c,
           cfg.aux_dim, extra.preprocessing);
    if (extra.n_classes > 0) {
        printf("classes:");
        for (int i = 0; i < extra.n_classes; i++) printf(" %d=%s", i, extra.class_names[i]);
        printf("\n");
    }
    ct_saved_config_free(&extra);
}

/* Checks the file against the model: the backbone, then every layer. Returns whether the
 * backbone fits. */
static bool print_fit(const char *cmd, const char *path, ct_model *m, ct_weights_match match) {
    const ct_model_config *c = ct_model_get_config(m);
    printf("model: %s %dx%d, head '%s', aux_dim %d\n", ct_model_backbone(m)->keras_name,
           c->input_h, c->input_w, ct_model_head_spec(m), c->aux_dim);
    ct_weights_load_opts o;
    ct_weights_load_defaults(&o);
    o.match = match;
    o.dry_run = true;
    o.scope = CT_WEIGHTS_SCOPE_BACKBONE;
    ct_weights_report rep;
    ct_status s = ct_weights_load(m, path, &o, &rep);
    if (s != CT_OK) {
        printf("  backbone: does not fit: %s\n", ct_last_error());
        (void)cmd;
        return false;
    }
    char p[32];
    thousands(p, sizeof p, rep.n_params_loaded);
    printf("  backbone: fits (%d layers, %s parameters)\n", rep.n_loaded, p);
    o.scope = CT_WEIGHTS_SCOPE_ALL;
    s = ct_weights_load(m, path, &o, &rep);
    if (s == CT_OK) {
        thousands(p, sizeof p, rep.n_params_loaded);
        printf("  whole model: fits (%d layers, %s parameters)\n", rep.n_loaded, p);
        return true;
    }
    printf("  whole model: does not fit: %s\n", ct_last_error());
    o.allow_missing = true;
    o.allow_extra = true;
    if (ct_weights_load(m, path, &o, &rep) == CT_OK && rep.notes[0] != '\0') {
        printf("  loading what fits:\n");
        for (char *line = strtok(rep.notes, "\n"); line != NULL; line = strtok(NULL, "\n"))
            printf("    %s\n", line);
    }
    return true;
}

static const char inspect_usage[] =
    "usage: cutune inspect FILE [--backbone vgg16|vgg19] [--input-size N] [--head SPEC]\n"
    "                      [--aux-dim N] [--match name|order]\n"
    "\n"
    "Describes a weights file: its layout (official Keras VGG16/VGG19 file, legacy\n"
    "save_weights .h5, whole-model .h5, Keras 3 .weights.h5, cutune output or checkpoint),\n"
    "every layer's arrays with shapes and dtypes as stored, and the parameter count. Given a\n"
    "model (--backbone, --head, --input-size, --aux-dim), or for a file written by cutune, it\n"
    "also says whether the file fits the model's backbone and the whole model, and what would\n"
    "keep its initialisation. Exits 1 when the file cannot be read or its backbone does not\n"
    "fit the model. Defaults: --backbone vgg16 and --input-size 224 (or the file's), --aux-dim\n"
    "1 for heads with aux:, else 0, --match name.\n";

int cmd_inspect(int argc, char **argv) {
    const char *cmd = "inspect";
    if (wants_help(argc, argv)) {
        fputs(inspect_usage, stdout);
        return 0;
    }
    const char *file, *size = NULL, *head = NULL, *aux = NULL, *match = NULL, *backbone = NULL;
    if (!take_file(cmd, &argc, argv, &file)) return CLI_EXIT_USAGE;
    cli_flag flags[] = {{"input-size", true, &size}, {"head", true, &head},
                        {"aux-dim", true, &aux},     {"match", true, &match},
                        {"backbone", true, &backbone}};
    if (!cli_parse(cmd, argc, argv, flags, 5)) return CLI_EXIT_USAGE;
    const ct_backbone *bb;
    if (backbone != NULL && ct_backbone_lookup(backbone, &bb) != CT_OK) {
        fprintf(stderr, "cutune %s: --backbone: %s\n", cmd, ct_last_error());
        return CLI_EXIT_USAGE;
    }
    long n_size = 224, n_aux = -1;
    if (size != NULL && !cli_int(cmd, "input-size", size, 1, CT_MAX_INPUT, &n_size))
        return CLI_EXIT_USAGE;
    if (aux != NULL && !cli_int(cmd, "aux-dim", aux, 0, 4096, &n_aux)) return CLI_EXIT_USAGE;
    ct_weights_match m_kind = CT_WEIGHTS_MATCH_NAME;
    if (match != NULL) {
        if (strcmp(match, "order") == 0) m_kind = CT_WEIGHTS_MATCH_ORDER;
        else if (strcmp(match, "name") != 0) {
            fprintf(stderr, "cutune %s: --match: expected name or order, not '%s'\n", cmd, match);
            return CLI_EXIT_USAGE;
        }
    }

    ct_weights_file *wf = NULL;
    ct_status s = ct_weights_inspect(file, &wf);
    if (s != CT_OK) return cli_fail(cmd, s);
    print_file(wf);
    bool has_config = wf->has_config;
    if (has_config) print_config(file);
    if (wf->is_checkpoint) printf("a cutune checkpoint: also holds optimizer state and the "
                                  "training loop's position\n");
    ct_weights_file_free(wf);

    /* The model to check against: the flags, else the file's own configuration. */
    ct_model_config cfg = {.input_h = (int)n_size, .input_w = (int)n_size, .input_c = 3,
                           .max_batch = 1, .seed = 1};
    ct_saved_config extra = {0};
    bool check = size != NULL || head != NULL || aux != NULL || backbone != NULL;
    if (has_config && ct_weights_read_config(file, &cfg, &extra) == CT_OK) {
        check = true;
        if (size != NULL) cfg.input_h = cfg.input_w = (int)n_size;
    }
    if (backbone != NULL) cfg.backbone = backbone;
    if (head != NULL) cfg.head = head;
    if (cfg.head == NULL) cfg.head = "gap,dense:2:softmax"; /* the backbone is what matters */
    if (n_aux >= 0) cfg.aux_dim = (int)n_aux;
    else if (head != NULL) cfg.aux_dim = strcmp(head, "iceberg") == 0 || strstr(head, "aux:") ? 1 : 0;
    int rc = 0;
    if (check) {
        ct_backend be = {0};
        ct_model *m = NULL;
        if ((s = ct_backend_cpu_init(&be, 1)) == CT_OK) {
            s = ct_model_init(&m, &cfg, &be);
            /* A head or size that came from the file is the file's fault (exit 1). */
            if (s != CT_OK && head == NULL && size == NULL && extra.head[0] != '\0')
                s = ct_weights_model_error(file, &cfg, s);
        }
        if (s != CT_OK)
            rc = cli_fail(cmd, s);
        else if (!print_fit(cmd, file, m, m_kind))
            rc = 1;
        ct_model_free(m);
        ct_backend_free(&be);
    }
    ct_saved_config_free(&extra);
    return rc;
}

/* ---- export-keras ---- */

static const char export_usage[] =
    "usage: cutune export-keras FILE\n"
    "\n"
    "Prints Python code that builds the Keras model matching a weights file written by cutune\n"
    "(layers with explicit names, in the order the file lists them) and loads the file with\n"
    "model.load_weights. Redirect it to a .py file and run it with Keras installed.\n";

int cmd_export_keras(int argc, char **argv) {
    const char *cmd = "export-keras";
    if (wants_help(argc, argv)) {
        fputs(export_usage, stdout);
        return 0;
    }
    const char *file;
    if (!take_file(cmd, &argc, argv, &file)) return CLI_EXIT_USAGE;
    if (!cli_parse(cmd, argc, argv, NULL, 0)) return CLI_EXIT_USAGE;
    ct_status s = ct_weights_keras_code(file, stdout);
    return s == CT_OK ? 0 : cli_fail(cmd, s);
}
