/* `cutune advise`: counts the classes, measures how well frozen ImageNet features already fit
 * the task (a cross-validated linear probe at three depths), and prints the seed table's
 * recommendation with its reasons and the `cutune train` command that carries it out. */
#include <stdio.h>
#include <string.h>

#include "../model/backbone.h"
#include "cli.h"
#include "train/run.h"

#define STR_(x) #x
#define STR(x) STR_(x)

static const char usage[] =
    "usage: cutune advise --data DIR|train.json [flags]\n"
    "\n"
    "Counts the images per class, probes how well frozen features of the pretrained backbone\n"
    "separate the classes (global average pooled block3_pool, block4_pool and block5_pool\n"
    "outputs, multinomial logistic regression, k-fold cross-validated against the majority\n"
    "class), and recommends from the seed table (dataset size x similarity to ImageNet) how\n"
    "much of the backbone to train, the learning rates and the augmentation, with the\n"
    "`cutune train` command line. Without ImageNet weights the probe cannot measure similarity\n"
    "and the advice uses the dataset size alone.\n"
    "\n"
    "  --data PATH           class folders (data/<class>/...) or iceberg train.json\n"
    "  --backbone NAME       vgg16 (default) or vgg19\n"
    "  --weights SPEC        imagenet (default), none, or a .h5 file whose backbone to probe\n"
    "  --input-size N        probe at N x N and train at it (default: probe at "
    STR(CT_ADVISE_CPU_INPUT) " on the CPU,\n"
    "                        224 on a GPU; train at train's default); iceberg images are 75\n"
    "  --samples N           images probed, drawn stratified (default " STR(CT_ADVISE_SAMPLES) ")\n"
    "  --cv N                cross-validation folds of the probe (default 3)\n"
    "  --batch-size N        forward batch (default 16)\n"
    "  --seed N              which images and folds (default 1)\n"
    "  --device cpu|cuda|auto  --threads N  (loader workers and CPU threads)\n"
    "  --na-policy mean|median|ffill|VALUE   iceberg \"na\" angles\n"
    "  --skip-bad            skip undecodable images\n"
    "  --out RUN_DIR         the --out of the printed command (default runs/advised)\n";

int cmd_advise(int argc, char **argv) {
    for (int i = 0; i < argc; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            fputs(usage, stdout);
            return 0;
        }
    ct_advise_config c;
    ct_advise_config_defaults(&c);
    const char *input = NULL, *samples = NULL, *cv = NULL, *batch = NULL, *seed = NULL,
               *threads = NULL, *na = NULL, *skip = NULL, *weights = NULL, *device = NULL;
    cli_flag flags[] = {
        {"data", true, &c.data},       {"weights", true, &weights}, {"input-size", true, &input},
        {"backbone", true, &c.backbone},
        {"samples", true, &samples},   {"cv", true, &cv},           {"batch-size", true, &batch},
        {"seed", true, &seed},         {"device", true, &device},   {"threads", true, &threads},
        {"na-policy", true, &na},      {"skip-bad", false, &skip},  {"out", true, &c.out_dir},
    };
    if (!cli_parse("advise", argc, argv, flags, (int)(sizeof flags / sizeof flags[0])))
        return CLI_EXIT_USAGE;
    long v;
    if (weights != NULL) {
        if (weights[0] == '\0') {
            fprintf(stderr, "cutune advise: --weights: expected imagenet, none or a file\n");
            return CLI_EXIT_USAGE;
        }
        c.weights = weights;
    }
    const ct_backbone *bb;
    if (ct_backbone_lookup(c.backbone, &bb) != CT_OK) {
        fprintf(stderr, "cutune advise: --backbone: %s\n", ct_last_error());
        return CLI_EXIT_USAGE;
    }
    if (device != NULL) c.device = device;
    if (input != NULL) {
        if (!cli_int("advise", "input-size", input, 32, 4096, &v)) return CLI_EXIT_USAGE;
        c.input_size = c.train_input_size = (int)v;
    }
    if (samples != NULL) {
        if (!cli_int("advise", "samples", samples, 6, 1000000, &v)) return CLI_EXIT_USAGE;
        c.samples = (int)v;
    }
    if (cv != NULL) {
        if (!cli_int("advise", "cv", cv, 2, 20, &v)) return CLI_EXIT_USAGE;
        c.cv_folds = (int)v;
    }
    if (batch != NULL) {
        if (!cli_int("advise", "batch-size", batch, 1, 4096, &v)) return CLI_EXIT_USAGE;
        c.batch_size = (int)v;
    }
    if (seed != NULL) {
        if (!cli_int("advise", "seed", seed, 0, 0x7fffffffffffL, &v)) return CLI_EXIT_USAGE;
        c.seed = (uint64_t)v;
    }
    if (threads != NULL) {
        if (!cli_int("advise", "threads", threads, 1, 256, &v)) return CLI_EXIT_USAGE;
        c.threads = (int)v;
    }
    if (na != NULL && ct_parse_na_policy(na, &c.na_policy, &c.na_value) != CT_OK) {
        fprintf(stderr, "cutune advise: --na-policy: %s\n", ct_last_error());
        return CLI_EXIT_USAGE;
    }
    c.skip_bad = skip != NULL;
    if (c.data == NULL) {
        fprintf(stderr, "cutune advise: --data DIR|train.json is required (see cutune advise "
                        "--help)\n");
        return CLI_EXIT_USAGE;
    }
    if (c.device != NULL && strcmp(c.device, "cpu") != 0 && strcmp(c.device, "cuda") != 0 &&
        strcmp(c.device, "auto") != 0) {
        fprintf(stderr, "cutune advise: --device: expected cpu, cuda or auto, not '%s'\n",
                c.device);
        return CLI_EXIT_USAGE;
    }
    ct_advice a;
    ct_status s = ct_advise(&c, &a);
    if (s != CT_OK) return cli_fail("advise", s);
    return 0;
}
