/* `cutune evaluate` and `cutune predict`: a saved model over labelled or test data. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L /* strtok_r */
#endif
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "train/run.h"

/* What both commands read, for their --help. */
#define MODEL_FILES                                                                            \
    "\n"                                                                                       \
    "FILE.h5 is cutune's, or a Keras model saved with model.save('m.h5') (VGG16 or VGG19\n"    \
    "under a head of Flatten, GlobalAveragePooling2D, GlobalMaxPooling2D, Dense, Dropout,\n"   \
    "Activation layers). A weights-only file (model.save_weights) needs --head and\n"         \
    "--input-size (default 224). --preprocess replaces the file's preprocessing (Keras\n"     \
    "files: caffe, VGG's preprocess_input); --classes names the model's classes.\n"     \
    "--png16 scale maps 16-bit grey PNGs' 0..65535 onto 0..255; the default, clip, reads\n" \
    "them as Keras does (Pillow's convert('RGB') clips every value above 255).\n"

static const char eval_usage[] =
    "usage: cutune evaluate --model FILE.h5 --data DIR|train.json [--batch-size N]\n"
    "                       [--tta hflip,vflip] [--device D] [--precision fp32|tf32|bf16]\n"
    "                       [--threads N] [--skip-bad] [--augment-on auto|device|loader]\n"
    "                       [--head SPEC] [--input-size N] [--preprocess caffe|tf|torch|none]\n"
    "                       [--classes A,B,...] [--png16 clip|scale]\n"
    "\n"
    "Prints accuracy, log loss, ROC AUC (binary), the confusion matrix and per-class\n"
    "precision and recall of a model written by `cutune train` (best.h5, final.h5) or by\n"
    "Keras, on data in class folders that are the model's classes.\n"
    MODEL_FILES;

static const char predict_usage[] =
    "usage: cutune predict --model FILE.h5 --data DIR|test.json --out preds.csv\n"
    "                      [--tta hflip,vflip] [--batch-size N] [--device D]\n"
    "                      [--precision fp32|tf32|bf16] [--threads N] [--skip-bad]\n"
    "                      [--na-policy mean|median|ffill|VALUE]\n"
    "                      [--augment-on auto|device|loader]\n"
    "                      [--head SPEC] [--input-size N] [--preprocess caffe|tf|torch|none]\n"
    "                      [--classes A,B,...] [--png16 clip|scale]\n"
    "\n"
    "Writes one row per image: its file name (or iceberg id) and the class probabilities.\n"
    "For iceberg test.json the file is Kaggle's submission: id,is_iceberg. DIR is class\n"
    "folders, one folder of test images (flow_from_directory's class_mode=None layout), or\n"
    "a folder holding the images themselves (every image under it is read).\n"
    MODEL_FILES
    "\n"
    "--tta hflip,vflip averages the probabilities of the image and its mirrored copies,\n"
    "made from the batch already on the device. --augment-on says where the saved\n"
    "preprocessing runs: device (auto's choice on CUDA: raw pixels are copied, a kernel\n"
    "standardises them) or loader (the worker threads; auto's choice on the CPU).\n";

static bool parse_common(const char *cmd, int argc, char **argv, ct_predict_config *c) {
    const char *batch = NULL, *threads = NULL, *tta = NULL, *skip = NULL, *na = NULL;
    const char *size = NULL, *png16 = NULL;
    cli_flag flags[] = {
        {"head", true, &c->head},     {"input-size", true, &size},  {"png16", true, &png16},
        {"preprocess", true, &c->preprocess}, {"classes", true, &c->classes},
        {"model", true, &c->model},   {"data", true, &c->data},   {"out", true, &c->out},
        {"batch-size", true, &batch}, {"threads", true, &threads}, {"tta", true, &tta},
        {"device", true, &c->device}, {"skip-bad", false, &skip},
        {"precision", true, &c->precision}, {"augment-on", true, &c->augment_on},
        {"na-policy", true, &na}, /* last: evaluate drops it */
    };
    int n = (int)(sizeof flags / sizeof flags[0]);
    if (strcmp(cmd, "evaluate") == 0) n -= 1; /* no --na-policy: labelled data has angles */
    if (!cli_parse(cmd, argc, argv, flags, n)) return false;
    if (png16 != NULL && ct_parse_png16(png16, &c->png16) != CT_OK) {
        fprintf(stderr, "cutune %s: --png16: %s\n", cmd, ct_last_error());
        return false;
    }
    long v;
    if (size != NULL) {
        if (!cli_int(cmd, "input-size", size, CT_MIN_INPUT, CT_MAX_INPUT, &v)) return false;
        c->input_size = (int)v;
    }
    if (batch != NULL) {
        if (!cli_int(cmd, "batch-size", batch, 1, 65536, &v)) return false;
        c->batch_size = (int)v;
    }
    if (threads != NULL) {
        if (!cli_int(cmd, "threads", threads, 1, 256, &v)) return false;
        c->threads = (int)v;
    }
    c->skip_bad = skip != NULL;
    if (c->augment_on != NULL && strcmp(c->augment_on, "auto") != 0 &&
        strcmp(c->augment_on, "device") != 0 && strcmp(c->augment_on, "loader") != 0) {
        fprintf(stderr, "cutune %s: --augment-on '%s': expected auto, device or loader\n", cmd,
                c->augment_on);
        return false;
    }
    if (tta != NULL) {
        char buf[64];
        snprintf(buf, sizeof buf, "%s", tta);
        for (char *save = NULL, *t = strtok_r(buf, ",", &save); t != NULL;
             t = strtok_r(NULL, ",", &save)) {
            if (strcmp(t, "hflip") == 0) c->tta_hflip = true;
            else if (strcmp(t, "vflip") == 0) c->tta_vflip = true;
            else {
                fprintf(stderr, "cutune %s: --tta: unknown transform '%s' (hflip, vflip)\n", cmd,
                        t);
                return false;
            }
        }
    }
    if (na != NULL && ct_parse_na_policy(na, &c->na_policy, &c->na_value) != CT_OK) {
        fprintf(stderr, "cutune %s: --na-policy: %s\n", cmd, ct_last_error());
        return false;
    }
    return true;
}

static bool wants_help(int argc, char **argv) {
    for (int i = 0; i < argc; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) return true;
    return false;
}

int cmd_evaluate(int argc, char **argv) {
    if (wants_help(argc, argv)) {
        fputs(eval_usage, stdout);
        return 0;
    }
    ct_predict_config c;
    ct_predict_config_defaults(&c);
    if (!parse_common("evaluate", argc, argv, &c)) return CLI_EXIT_USAGE;
    if (c.out != NULL) {
        fprintf(stderr, "cutune evaluate: --out belongs to `cutune predict`\n");
        return CLI_EXIT_USAGE;
    }
    ct_metrics m;
    ct_status s = ct_evaluate(&c, &m);
    if (s != CT_OK) return cli_fail("evaluate", s);
    printf("%s on %s:\n", c.model, c.data);
    ct_metrics_print(stdout, &m, (const char *const *)m.class_names);
    ct_metrics_free(&m);
    return 0;
}

int cmd_predict(int argc, char **argv) {
    if (wants_help(argc, argv)) {
        fputs(predict_usage, stdout);
        return 0;
    }
    ct_predict_config c;
    ct_predict_config_defaults(&c);
    if (!parse_common("predict", argc, argv, &c)) return CLI_EXIT_USAGE;
    size_t rows = 0;
    ct_status s = ct_predict(&c, &rows);
    if (s != CT_OK) return cli_fail("predict", s);
    printf("wrote %zu predictions to %s\n", rows, c.out);
    return 0;
}
