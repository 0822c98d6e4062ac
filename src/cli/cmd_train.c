/* `cutune train`: the seed workflows' fit_generator as one command. Flags carry Keras's names
 * (ImageDataGenerator, flow_from_directory, optimizers, callbacks) with dashes; `--config FILE`
 * reads the same keys from `key = value` lines, and the command line wins. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cutune/run.h"

static const char usage[] =
    "usage: cutune train --data DIR|train.json --out RUN_DIR [flags]\n"
    "\n"
    "data (flow_from_directory / iceberg JSON):\n"
    "  --data PATH               class folders (data/<class>/...) or iceberg train.json\n"
    "  --val PATH                separate validation folders / JSON\n"
    "  --validation-split F      hold out F of each class (Keras: the first F of the files)\n"
    "  --split keras|stratified  how --validation-split picks (stratified: seeded random)\n"
    "  --class-mode categorical|binary|sparse   default: from the head\n"
    "  --input-size N            square input (default 224; iceberg: 75)\n"
    "  --color-mode rgb          (default; grayscale files are read as RGB)\n"
    "  --interpolation M         nearest (default), bilinear, bicubic, lanczos, box/area,\n"
    "                            hamming: PIL's filters, as Keras resizes\n"
    "  --keep-aspect-ratio\n"
    "  --na-policy P             iceberg \"na\" angles: mean, median, ffill, a VALUE or error\n"
    "  --skip-bad                skip undecodable images and report them\n"
    "  --threads N  --cache-mb N  loader workers and decoded-image cache budget\n"
    "preprocessing and augmentation (ImageDataGenerator; training data only):\n"
    "  --preprocess caffe|tf|torch|none   default caffe (VGG16), none for iceberg\n"
    "  --rescale F  --samplewise-center  --samplewise-std-normalization\n"
    "  --featurewise-center  --featurewise-std-normalization\n"
    "  --rotation-range DEG  --width-shift-range V  --height-shift-range V  --shear-range DEG\n"
    "  --zoom-range Z|LO,HI  --channel-shift-range V  --brightness-range LO,HI\n"
    "  --horizontal-flip  --vertical-flip  --fill-mode nearest|constant|reflect|wrap  --cval V\n"
    "model:\n"
    "  --weights imagenet|none|FILE.h5   default imagenet (see weights/README.md)\n"
    "  --head SPEC               e.g. iceberg, mri, 'gap,dense:256:relu,dense:3:softmax'\n"
    "  --freeze-to LAYER         freeze up to and including LAYER (e.g. block4_pool)\n"
    "  --strategy auto|head|top|deep|all   the seed table (auto: measured as `cutune advise`\n"
    "                            does; deep: blocks 4-5 trainable)\n"
    "  --warmup-epochs N         train the head with the backbone frozen first\n"
    "  --body-lr-mult F          backbone learning rate = F x lr\n"
    "  --block-lr-decay F        discriminative rates: block5 x F, block4 x F^2, ...\n"
    "optimisation:\n"
    "  --epochs N (10)  --batch-size N (32)  --steps-per-epoch N\n"
    "  --optimizer sgd|adam|adamw (sgd)  --lr X  --momentum X  --nesterov  --decay X\n"
    "  --weight-decay X (adamw)  --l2 X (kernel L2 penalty)\n"
    "  --schedule constant|step:E:F|cosine[:MIN]   --class-weight balanced|w0,w1,...\n"
    "callbacks:\n"
    "  --monitor val_loss|val_acc|loss|acc  --mode auto|min|max\n"
    "  --patience N  --min-delta X  --restore-best-weights      (EarlyStopping)\n"
    "  --reduce-lr-patience N  --reduce-lr-factor F  --min-lr X  --reduce-lr-cooldown N\n"
    "run:\n"
    "  --out RUN_DIR  --resume  --seed N  --device cpu|cuda|auto  --verbose 0|1|2\n"
    "  --deterministic  --config FILE\n"
    "  --precision tf32|fp32|bf16  arithmetic on CUDA (default tf32). bf16: mixed\n"
    "                            precision, the backbone's activations in bf16 on bf16\n"
    "                            tensor cores, fp32 weights, gradients and head; on the\n"
    "                            CPU bf16 is emulated (slow, for checking numbers)\n"
    "  --augment-on auto|device|loader  where augmentation and preprocessing run: device\n"
    "                            (a kernel in the training step; auto picks it on CUDA) or\n"
    "                            loader (the worker threads; auto picks it on the CPU)\n"
    "  --folds K                 K stratified folds (by --seed), one run each in\n"
    "                            RUN_DIR/fold_<k>/; prints each fold's best validation metrics\n"
    "                            and their mean (not with --val / --validation-split);\n"
    "                            --resume keeps finished folds and continues the others\n"
    "  --test PATH               with --folds: each fold's best.h5 predicts PATH and the mean\n"
    "                            goes to RUN_DIR/predictions.csv (Kaggle's id,is_iceberg)\n"
    "  --no-feature-cache        recompute frozen layers every step (by default their output\n"
    "                            is computed once when nothing random comes before them)\n"
    "\n"
    "RUN_DIR gets log.csv, curves.png, best.h5, final.h5, checkpoint.h5 and config.txt.\n"
    "Ctrl-C finishes the step, writes the checkpoint and exits 130; --resume continues.\n";

typedef struct train_flags {
    const char *data, *val, *vsplit, *split, *class_mode, *input_size, *color_mode, *interp,
        *keep_aspect, *na_policy, *skip_bad, *threads, *cache_mb, *preprocess, *rescale,
        *sw_center, *sw_std, *fw_center, *fw_std, *rotation, *wshift, *hshift, *shear, *zoom,
        *cshift, *brightness, *hflip, *vflip, *fill_mode, *cval, *weights, *head, *freeze_to,
        *strategy, *warmup, *body_lr, *block_decay, *epochs, *batch, *steps, *optimizer, *lr,
        *momentum, *nesterov, *decay, *weight_decay, *l2, *schedule, *class_weight, *monitor,
        *mode, *patience, *min_delta, *restore_best, *rl_patience, *rl_factor, *min_lr,
        *rl_cooldown, *out, *resume, *seed, *device, *precision, *augment_on, *verbose,
        *deterministic, *config, *no_cache, *folds, *test;
} train_flags;

#define NUM(flag, name, lo, hi, dst)                                                           \
    do {                                                                                       \
        if ((flag) != NULL) {                                                                  \
            double v_;                                                                         \
            if (!cli_double("train", name, flag, lo, hi, &v_)) return false;                   \
            dst = v_;                                                                          \
        }                                                                                      \
    } while (0)
#define INT(flag, name, lo, hi, dst)                                                           \
    do {                                                                                       \
        if ((flag) != NULL) {                                                                  \
            long v_;                                                                           \
            if (!cli_int("train", name, flag, lo, hi, &v_)) return false;                      \
            dst = v_;                                                                          \
        }                                                                                      \
    } while (0)
#define PARSE(flag, fn, dst)                                                                   \
    do {                                                                                       \
        if ((flag) != NULL && fn(flag, dst) != CT_OK) {                                        \
            fprintf(stderr, "cutune train: %s\n", ct_last_error());                            \
            return false;                                                                      \
        }                                                                                      \
    } while (0)

static bool fill_config(const train_flags *f, ct_train_config *c) {
    c->data = f->data;
    c->val = f->val;
    NUM(f->vsplit, "validation-split", 0.0, 0.999999, c->validation_split);
    if (f->split != NULL) {
        if (strcmp(f->split, "keras") == 0) c->split_method = CT_SPLIT_KERAS;
        else if (strcmp(f->split, "stratified") == 0) c->split_method = CT_SPLIT_STRATIFIED;
        else {
            fprintf(stderr, "cutune train: --split: expected keras or stratified, not '%s'\n",
                    f->split);
            return false;
        }
    }
    PARSE(f->class_mode, ct_parse_class_mode, &c->class_mode);
    INT(f->input_size, "input-size", 32, 4096, c->input_size);
    PARSE(f->color_mode, ct_parse_color_mode, &c->color_mode);
    PARSE(f->interp, ct_parse_interpolation, &c->interpolation);
    c->keep_aspect_ratio = f->keep_aspect != NULL;
    if (f->na_policy != NULL && ct_parse_na_policy(f->na_policy, &c->na_policy, &c->na_value) != CT_OK) {
        fprintf(stderr, "cutune train: --na-policy: %s\n", ct_last_error());
        return false;
    }
    c->skip_bad = f->skip_bad != NULL;
    INT(f->threads, "threads", 1, 256, c->threads);
    if (f->cache_mb != NULL) {
        long mb = 0;
        if (!cli_int("train", "cache-mb", f->cache_mb, 0, 1L << 30, &mb)) return false;
        c->cache_bytes = (size_t)mb << 20;
    }
    if (f->preprocess != NULL) {
        PARSE(f->preprocess, ct_parse_preprocess, &c->standardize.preprocess);
        c->preprocess_set = true;
    }
    NUM(f->rescale, "rescale", -1e9, 1e9, c->standardize.rescale);
    c->standardize.samplewise_center = f->sw_center != NULL;
    c->standardize.samplewise_std_normalization = f->sw_std != NULL;
    c->standardize.featurewise_center = f->fw_center != NULL;
    c->standardize.featurewise_std_normalization = f->fw_std != NULL;
    ct_augment_config *a = &c->augment;
    NUM(f->rotation, "rotation-range", 0.0, 360.0, a->rotation_range);
    PARSE(f->wshift, ct_parse_shift_range, &a->width_shift);
    PARSE(f->hshift, ct_parse_shift_range, &a->height_shift);
    NUM(f->shear, "shear-range", 0.0, 360.0, a->shear_range);
    if (f->zoom != NULL && ct_parse_zoom_range(f->zoom, &a->zoom_lo, &a->zoom_hi) != CT_OK) {
        fprintf(stderr, "cutune train: --zoom-range: %s\n", ct_last_error());
        return false;
    }
    NUM(f->cshift, "channel-shift-range", 0.0, 1e6, a->channel_shift_range);
    if (f->brightness != NULL &&
        ct_parse_range(f->brightness, &a->brightness_lo, &a->brightness_hi) != CT_OK) {
        fprintf(stderr, "cutune train: --brightness-range: %s\n", ct_last_error());
        return false;
    }
    a->horizontal_flip = f->hflip != NULL;
    a->vertical_flip = f->vflip != NULL;
    PARSE(f->fill_mode, ct_parse_fill_mode, &a->fill_mode);
    NUM(f->cval, "cval", -1e9, 1e9, a->cval);

    if (f->weights != NULL) c->weights = f->weights;
    c->head = f->head;
    c->freeze_to = f->freeze_to;
    PARSE(f->strategy, ct_parse_strategy, &c->strategy);
    INT(f->warmup, "warmup-epochs", 0, 100000, c->warmup_epochs);
    NUM(f->body_lr, "body-lr-mult", 0.0, 1e3, c->body_lr_mult);
    NUM(f->block_decay, "block-lr-decay", 0.0, 1e3, c->block_lr_decay);

    INT(f->epochs, "epochs", 1, 1000000, c->epochs);
    INT(f->batch, "batch-size", 1, 65536, c->batch_size);
    INT(f->steps, "steps-per-epoch", 1, 1L << 40, c->steps_per_epoch);
    if (f->optimizer != NULL) {
        ct_optimizer_kind kind;
        PARSE(f->optimizer, ct_optimizer_parse, &kind);
        ct_optimizer_defaults(&c->optimizer, kind);
    }
    ct_optimizer_config *o = &c->optimizer;
    NUM(f->lr, "lr", 1e-12, 1e3, o->lr);
    NUM(f->momentum, "momentum", 0.0, 0.999999, o->momentum);
    o->nesterov = f->nesterov != NULL;
    if (o->nesterov && o->kind != CT_OPT_SGD) {
        fprintf(stderr, "cutune train: --nesterov applies to --optimizer sgd\n");
        return false;
    }
    NUM(f->decay, "decay", 0.0, 1e6, o->decay);
    NUM(f->weight_decay, "weight-decay", 0.0, 1.0, o->weight_decay);
    NUM(f->l2, "l2", 0.0, 1e3, o->l2);
    if (f->schedule != NULL) c->schedule = f->schedule;
    c->class_weight = f->class_weight;

    if (f->monitor != NULL) c->monitor = f->monitor;
    PARSE(f->mode, ct_monitor_mode_parse, &c->monitor_mode);
    INT(f->patience, "patience", 0, 1000000, c->early_stopping_patience);
    NUM(f->min_delta, "min-delta", 0.0, 1e9, c->min_delta);
    c->restore_best_weights = f->restore_best != NULL;
    INT(f->rl_patience, "reduce-lr-patience", 0, 1000000, c->reduce_lr_patience);
    NUM(f->rl_factor, "reduce-lr-factor", 1e-9, 0.999999, c->reduce_lr_factor);
    NUM(f->min_lr, "min-lr", 0.0, 1e3, c->min_lr);
    INT(f->rl_cooldown, "reduce-lr-cooldown", 0, 1000000, c->reduce_lr_cooldown);

    c->out_dir = f->out;
    c->resume = f->resume != NULL;
    long seed = (long)c->seed;
    INT(f->seed, "seed", 0, 0x7fffffffffffL, seed);
    c->seed = (uint64_t)seed;
    if (f->device != NULL) c->device = f->device;
    if (f->precision != NULL) {
        if (strcmp(f->precision, "fp32") != 0 && strcmp(f->precision, "tf32") != 0 &&
            strcmp(f->precision, "bf16") != 0) {
            fprintf(stderr, "cutune train: --precision '%s': expected fp32, tf32 or bf16\n",
                    f->precision);
            return false;
        }
        c->precision = f->precision;
    }
    if (f->augment_on != NULL) {
        if (strcmp(f->augment_on, "auto") != 0 && strcmp(f->augment_on, "device") != 0 &&
            strcmp(f->augment_on, "loader") != 0) {
            fprintf(stderr, "cutune train: --augment-on '%s': expected auto, device or loader\n",
                    f->augment_on);
            return false;
        }
        c->augment_on = f->augment_on;
    }
    INT(f->verbose, "verbose", 0, 2, c->verbose);
    c->deterministic = f->deterministic != NULL;
    c->no_feature_cache = f->no_cache != NULL;
    return true;
}

int cmd_train(int argc, char **argv) {
    for (int i = 0; i < argc; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            fputs(usage, stdout);
            return 0;
        }
    train_flags f = {0};
    cli_flag flags[] = {
        {"data", true, &f.data}, {"val", true, &f.val}, {"validation-split", true, &f.vsplit},
        {"split", true, &f.split}, {"class-mode", true, &f.class_mode},
        {"input-size", true, &f.input_size}, {"color-mode", true, &f.color_mode},
        {"interpolation", true, &f.interp}, {"keep-aspect-ratio", false, &f.keep_aspect},
        {"na-policy", true, &f.na_policy}, {"skip-bad", false, &f.skip_bad},
        {"threads", true, &f.threads}, {"cache-mb", true, &f.cache_mb},
        {"preprocess", true, &f.preprocess}, {"rescale", true, &f.rescale},
        {"samplewise-center", false, &f.sw_center},
        {"samplewise-std-normalization", false, &f.sw_std},
        {"featurewise-center", false, &f.fw_center},
        {"featurewise-std-normalization", false, &f.fw_std},
        {"rotation-range", true, &f.rotation}, {"width-shift-range", true, &f.wshift},
        {"height-shift-range", true, &f.hshift}, {"shear-range", true, &f.shear},
        {"zoom-range", true, &f.zoom}, {"channel-shift-range", true, &f.cshift},
        {"brightness-range", true, &f.brightness}, {"horizontal-flip", false, &f.hflip},
        {"vertical-flip", false, &f.vflip}, {"fill-mode", true, &f.fill_mode},
        {"cval", true, &f.cval}, {"weights", true, &f.weights}, {"head", true, &f.head},
        {"freeze-to", true, &f.freeze_to}, {"strategy", true, &f.strategy},
        {"warmup-epochs", true, &f.warmup}, {"body-lr-mult", true, &f.body_lr},
        {"block-lr-decay", true, &f.block_decay}, {"epochs", true, &f.epochs},
        {"batch-size", true, &f.batch}, {"steps-per-epoch", true, &f.steps},
        {"optimizer", true, &f.optimizer}, {"lr", true, &f.lr}, {"momentum", true, &f.momentum},
        {"nesterov", false, &f.nesterov}, {"decay", true, &f.decay},
        {"weight-decay", true, &f.weight_decay}, {"l2", true, &f.l2},
        {"schedule", true, &f.schedule}, {"class-weight", true, &f.class_weight},
        {"monitor", true, &f.monitor}, {"mode", true, &f.mode}, {"patience", true, &f.patience},
        {"min-delta", true, &f.min_delta}, {"restore-best-weights", false, &f.restore_best},
        {"reduce-lr-patience", true, &f.rl_patience}, {"reduce-lr-factor", true, &f.rl_factor},
        {"min-lr", true, &f.min_lr}, {"reduce-lr-cooldown", true, &f.rl_cooldown},
        {"out", true, &f.out}, {"resume", false, &f.resume}, {"seed", true, &f.seed},
        {"device", true, &f.device}, {"verbose", true, &f.verbose},
        {"precision", true, &f.precision}, {"augment-on", true, &f.augment_on},
        {"deterministic", false, &f.deterministic}, {"config", true, &f.config},
        {"no-feature-cache", false, &f.no_cache},
        {"folds", true, &f.folds}, {"test", true, &f.test},
    };
    int all_argc = 0;
    char **all_argv = NULL;
    if (!cli_config_args("train", argc, argv, &all_argc, &all_argv)) return CLI_EXIT_USAGE;
    bool ok = cli_parse("train", all_argc, all_argv, flags, (int)(sizeof flags / sizeof flags[0]));
    ct_train_config c;
    ct_train_config_defaults(&c);
    ok = ok && fill_config(&f, &c);
    if (!ok) {
        cli_config_free(all_argc, all_argv, argc);
        return CLI_EXIT_USAGE;
    }
    long folds = 0;
    if (f.folds != NULL && !cli_int("train", "folds", f.folds, 2, CT_MAX_FOLDS, &folds))
        ok = false;
    if (ok && f.test != NULL && f.folds == NULL) {
        fprintf(stderr, "cutune train: --test goes with --folds (the folds' predictions are "
                        "averaged); for one run use `cutune predict --model RUN_DIR/best.h5`\n");
        ok = false;
    }
    if (ok && folds > 0 && (c.val != NULL || c.validation_split > 0.0)) {
        fprintf(stderr, "cutune train: --folds takes each fold's validation data from --data: "
                        "drop --val / --validation-split\n");
        ok = false;
    }
    if (!ok) {
        cli_config_free(all_argc, all_argv, argc);
        return CLI_EXIT_USAGE;
    }
    ct_train_install_signal_handlers();
    ct_status s;
    if (folds > 0) {
        ct_folds_result *fr = malloc(sizeof *fr);
        s = fr == NULL ? ct_error(CT_ENOMEM, "cannot allocate the folds' results")
                       : ct_train_folds(&c, (int)folds, f.test, fr);
        free(fr);
    } else {
        ct_train_result res;
        s = ct_train(&c, &res);
    }
    cli_config_free(all_argc, all_argv, argc);
    if (s == CT_EINTR) {
        fprintf(stderr, "cutune train: %s\n", ct_last_error());
        return 130;
    }
    if (s != CT_OK) return cli_fail("train", s);
    return 0;
}
