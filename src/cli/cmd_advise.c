/* `cutune advise`: counts the classes, measures how well frozen ImageNet features already fit
 * the task (a cross-validated linear probe at three depths), and prints the seed table's
 * recommendation with its reasons and the `cutune train` command that carries it out. */
#include <stdio.h>
#include <string.h>

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

/* The flags, each set through ct_advise_config_set in this order. */
static const struct {
    const char *name;
    bool takes_value;
} advise_flags[] = {
    {"data", true},    {"backbone", true}, {"weights", true},   {"input-size", true},
    {"samples", true}, {"cv", true},       {"batch-size", true}, {"seed", true},
    {"device", true},  {"threads", true},  {"na-policy", true},  {"skip-bad", false},
    {"out", true},
};
#define ADVISE_FLAGS ((int)(sizeof advise_flags / sizeof advise_flags[0]))

int cmd_advise(int argc, char **argv) {
    for (int i = 0; i < argc; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            fputs(usage, stdout);
            return 0;
        }
    ct_advise_config c;
    ct_advise_config_defaults(&c);
    const char *values[ADVISE_FLAGS] = {NULL};
    cli_flag flags[ADVISE_FLAGS];
    for (int i = 0; i < ADVISE_FLAGS; i++)
        flags[i] = (cli_flag){advise_flags[i].name, advise_flags[i].takes_value, &values[i]};
    if (!cli_parse("advise", argc, argv, flags, ADVISE_FLAGS)) return CLI_EXIT_USAGE;
    for (int i = 0; i < ADVISE_FLAGS; i++)
        if (values[i] != NULL && ct_advise_config_set(&c, flags[i].name, values[i]) != CT_OK) {
            fprintf(stderr, "cutune advise: %s\n", ct_last_error());
            return CLI_EXIT_USAGE;
        }
    if (c.data == NULL) {
        fprintf(stderr, "cutune advise: --data DIR|train.json is required (see cutune advise "
                        "--help)\n");
        return CLI_EXIT_USAGE;
    }
    ct_advice a;
    ct_status s = ct_advise(&c, &a);
    if (s != CT_OK) return cli_fail("advise", s);
    return 0;
}
