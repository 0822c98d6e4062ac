/* `cutune scan`: what a dataset holds, as Keras would see it - "Found N images belonging to K
 * classes.", the class indices and counts, the validation split, ignored files - and, with
 * --check, every file that cannot be decoded. For an iceberg JSON file: records, labels and
 * missing angles. Exits 1 when the data cannot be used as it is. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "data/data.h"

static const char help[] =
    "usage: cutune scan --data PATH [--validation-split F] [--check] [--target-size N]\n"
    "                   [--color-mode M] [--follow-links] [--threads N] [-v]\n"
    "\n"
    "Describes a dataset the way Keras's flow_from_directory sees it, or an iceberg JSON file.\n"
    "\n"
    "  --data PATH             a class-folder tree (PATH/<class>/.../<image>) or a .json file\n"
    "  --validation-split F    also show the split: the first F of each class's sorted files\n"
    "                          are validation (Keras's rule), 0 < F < 1\n"
    "  --check                 decode every image; list each bad one with the reason (exit 1)\n"
    "  --target-size N         resize to NxN while checking (default 256, Keras's default)\n"
    "  --color-mode M          rgb (default), grayscale or rgba, while checking\n"
    "  --follow-links          descend into symlinked subfolders (Keras follow_links=True)\n"
    "  --threads N             decoding threads for --check (default 2)\n"
    "  -v, --verbose           list the files ignored for their extension\n"
    "\n"
    "Exit status: 0 usable, 1 a problem with the data, 2 a usage error.\n";

typedef struct scan_opts {
    const char *data, *split, *check, *target, *color, *follow, *threads, *verbose;
} scan_opts;

static void print_bad(void *user, size_t i, const char *message) {
    (void)user;
    (void)i;
    printf("bad: %s\n", message);
}

static int scan_iceberg(const char *cmd, const scan_opts *o, double split) {
    ct_dataset *ds = NULL;
    ct_iceberg_options io = {0};
    ct_status s = ct_dataset_open_iceberg(&ds, o->data, &io);
    if (s != CT_OK) return cli_fail(cmd, s);
    const size_t n = ct_dataset_count(ds);
    printf(
        "iceberg JSON: %zu records, 75x75x3 float images [band_1, band_2, (band_1+band_2)/2], "
        "inc_angle as auxiliary input\n",
        n);
    if (ct_dataset_labelled(ds)) {
        printf("labelled: %zu (ship %zu, iceberg %zu); unlabelled: 0\n", n,
               ct_dataset_class_count(ds, 0), ct_dataset_class_count(ds, 1));
        char msg[128];
        ct_dataset_found_message(ds, msg, sizeof msg);
        printf("%s\n", msg);
    } else {
        printf("labelled: 0; unlabelled: %zu (a test file: predictions are written by id)\n", n);
    }
    const size_t na = ct_dataset_na_count(ds);
    if (na > 0)
        printf(
            "inc_angle \"na\": %zu (filled with the mean of the others, %.4f; see "
            "--na-policy of cutune train)\n",
            na, (double)ct_dataset_na_fill(ds));
    else
        printf("inc_angle \"na\": 0\n");
    int rc = 0;
    if (split > 0.0) {
        ct_dataset *tr = NULL, *va = NULL;
        if ((s = ct_dataset_split(ds, split, CT_SPLIT_KERAS, 0, &tr, &va)) != CT_OK) {
            rc = cli_fail(cmd, s);
        } else {
            printf(
                "validation_split %g (the first %zu records, as Keras's NumpyArrayIterator): "
                "training %zu, validation %zu\n",
                split, ct_dataset_count(va), ct_dataset_count(tr), ct_dataset_count(va));
        }
        ct_dataset_free(tr);
        ct_dataset_free(va);
    }
    if (o->check != NULL && rc == 0) printf("check: all %zu records are valid\n", n);
    ct_dataset_free(ds);
    return rc;
}

static int scan_folder(const char *cmd, const scan_opts *o, double split, long target,
                       ct_color_mode color, long threads) {
    ct_dataset *ds = NULL;
    ct_folder_options fo = {.follow_links = o->follow != NULL};
    ct_status s = ct_dataset_open_folder(&ds, o->data, &fo);
    if (s != CT_OK) return cli_fail(cmd, s);
    const int k = ct_dataset_num_classes(ds);
    char msg[128];
    ct_dataset_found_message(ds, msg, sizeof msg);
    printf("%s\n", msg);
    printf("class_indices: {");
    for (int i = 0; i < k; i++)
        printf("%s'%s': %d", i ? ", " : "", ct_dataset_class_name(ds, i), i);
    printf("}\n");

    ct_dataset *tr = NULL, *va = NULL;
    if (split > 0.0) {
        if ((s = ct_dataset_split(ds, split, CT_SPLIT_KERAS, 0, &tr, &va)) != CT_OK) {
            ct_dataset_free(ds);
            return cli_fail(cmd, s);
        }
        printf(
            "validation_split %g: the first %g%% of each class's sorted files are validation "
            "(Keras's rule)\n",
            split, split * 100.0);
        ct_dataset_found_message(tr, msg, sizeof msg);
        printf("%s  [subset='training']\n", msg);
        ct_dataset_found_message(va, msg, sizeof msg);
        printf("%s  [subset='validation']\n", msg);
    }
    int width = 5;
    for (int i = 0; i < k; i++) {
        int len = (int)strlen(ct_dataset_class_name(ds, i));
        if (len > width) width = len;
    }
    printf("%-5s  %-*s  %8s", "index", width, "class", "images");
    if (tr != NULL) printf("  %8s  %10s", "training", "validation");
    printf("\n");
    for (int i = 0; i < k; i++) {
        printf("%-5d  %-*s  %8zu", i, width, ct_dataset_class_name(ds, i),
               ct_dataset_class_count(ds, i));
        if (tr != NULL)
            printf("  %8zu  %10zu", ct_dataset_class_count(tr, i), ct_dataset_class_count(va, i));
        printf("\n");
    }
    for (int i = 0; i < k; i++) {
        const char *name = ct_dataset_class_name(ds, i);
        if (name[0] == '.')
            fprintf(stderr,
                    "warning: class folder '%s' is hidden; Keras counts it as a class "
                    "too (move it out of %s)\n",
                    name, o->data);
        if (ct_dataset_class_count(ds, i) == 0)
            fprintf(stderr, "warning: class '%s' has no images (it still counts as a class)\n",
                    name);
    }
    const size_t n_ignored = ct_dataset_ignored_count(ds);
    if (o->verbose != NULL)
        for (size_t i = 0; i < n_ignored; i++)
            printf("ignored (not an image extension): %s\n", ct_dataset_ignored(ds, i));
    else if (n_ignored > 0)
        printf("%zu non-image file%s ignored (list with -v)\n", n_ignored,
               n_ignored == 1 ? "" : "s");

    int rc = 0;
    if (k < 2) {
        fprintf(stderr,
                "cutune %s: %s: only one class ('%s'); a classifier needs at least two "
                "class folders\n",
                cmd, o->data, ct_dataset_class_name(ds, 0));
        rc = 1;
    } else if (ct_dataset_count(ds) == 0) {
        fprintf(stderr, "cutune %s: %s: no images in any class folder\n", cmd, o->data);
        rc = 1;
    }
    if (o->check != NULL) {
        ct_image_options io;
        ct_image_options_defaults(&io);
        io.target_h = io.target_w = (int)target;
        io.color_mode = color;
        printf("checking %zu images (decode, %s, resize to %ldx%ld)...\n", ct_dataset_count(ds),
               color == CT_COLOR_RGB ? "rgb" : (color == CT_COLOR_RGBA ? "rgba" : "grayscale"),
               target, target);
        fflush(stdout);
        size_t n_bad = 0;
        s = ct_dataset_check(ds, &io, (int)threads, print_bad, NULL, &n_bad);
        if (s != CT_OK) {
            rc = cli_fail(cmd, s);
        } else if (n_bad > 0) {
            printf("%zu of %zu images cannot be read\n", n_bad, ct_dataset_count(ds));
            rc = 1;
        } else {
            printf("all %zu images decode\n", ct_dataset_count(ds));
        }
    }
    ct_dataset_free(tr);
    ct_dataset_free(va);
    ct_dataset_free(ds);
    return rc;
}

int cmd_scan(int argc, char **argv) {
    const char *cmd = "scan";
    if (argc > 0 && (strcmp(argv[0], "--help") == 0 || strcmp(argv[0], "-h") == 0)) {
        fputs(help, stdout);
        return 0;
    }
    /* -v is the one short flag: rewrite it for cli_parse. */
    char **args = malloc((size_t)(argc > 0 ? argc : 1) * sizeof *args);
    if (args == NULL) return 1;
    for (int i = 0; i < argc; i++) args[i] = strcmp(argv[i], "-v") == 0 ? "--verbose" : argv[i];
    scan_opts o = {0};
    const cli_flag flags[] = {
        {"data", true, &o.data},        {"validation-split", true, &o.split},
        {"check", false, &o.check},     {"target-size", true, &o.target},
        {"color-mode", true, &o.color}, {"follow-links", false, &o.follow},
        {"threads", true, &o.threads},  {"verbose", false, &o.verbose},
    };
    bool ok = cli_parse(cmd, argc, args, flags, (int)(sizeof flags / sizeof flags[0]));
    free(args);
    if (!ok) return CLI_EXIT_USAGE;
    if (o.data == NULL) {
        fprintf(stderr, "cutune %s: --data PATH is required (see cutune %s --help)\n", cmd, cmd);
        return CLI_EXIT_USAGE;
    }
    double split = 0.0;
    if (o.split != NULL) {
        char *end = NULL;
        errno = 0;
        split = strtod(o.split, &end);
        if (errno != 0 || end == o.split || *end != '\0' || !(split > 0.0 && split < 1.0)) {
            fprintf(stderr,
                    "cutune %s: --validation-split: expected a number strictly between "
                    "0 and 1, not '%s'\n",
                    cmd, o.split);
            return CLI_EXIT_USAGE;
        }
    }
    long target = 256, threads = 2;
    if (o.target != NULL && !cli_int(cmd, "target-size", o.target, 1, 16384, &target))
        return CLI_EXIT_USAGE;
    if (o.threads != NULL && !cli_int(cmd, "threads", o.threads, 1, 256, &threads))
        return CLI_EXIT_USAGE;
    ct_color_mode color = CT_COLOR_RGB;
    if (o.color != NULL) {
        ct_status s = ct_parse_color_mode(o.color, &color);
        if (s != CT_OK) return cli_fail(cmd, s);
    }
    struct stat st;
    if (stat(o.data, &st) != 0) {
        fprintf(stderr, "cutune %s: %s: no such file or folder\n", cmd, o.data);
        return 1;
    }
    if (S_ISDIR(st.st_mode)) return scan_folder(cmd, &o, split, target, color, threads);
    return scan_iceberg(cmd, &o, split);
}
