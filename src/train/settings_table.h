/* The settings of `cutune train`, one row each: the table that makes the flags and their --help
 * lines, the `--config FILE` keys, the setters ct_train_config_set uses (from the command line,
 * a config file or a binding's keyword arguments), the lines of a run's config.txt and, through
 * them, the --resume comparison. Expanded by settings.c only.
 *
 * X(flag, arg, group, help, set, field, lo, hi, key, record)
 *   flag    the name without "--" ("batch-size"; config files may write batch_size); NULL for a
 *           line config.txt records that no flag sets directly
 *   arg     what the value looks like in --help ("N"); NULL: a switch
 *   group   the --help section
 *   help    one line
 *   set     how a value is stored (settings.c); field, lo and hi are its arguments: the member
 *           of ct_train_config and, for numbers, the accepted range
 *   key     the config.txt key: the flag with underscores, so that config.txt is a --config
 *           file (`# key` for a line no flag sets, which a config file skips as a comment);
 *           NULL: not recorded (it may change on --resume, or says where or how the run
 *           computes, not what)
 *   record  how the run's value is written, as the flag reads it (names for enums, true/false,
 *           numbers that read back exactly); it may leave the line out (settings given only
 *           sometimes, such as --precision, so that runs recorded without them resume as before)
 *
 * Rows are applied in this order, whatever order the flags came in (--optimizer resets the
 * learning rate and momentum to its own defaults before --lr and --momentum are applied), and
 * config.txt lists its lines in this order. */
#define CT_TRAIN_SETTINGS(X)                                                                      \
    X("data", "PATH", DATA, "class folders (data/<class>/...) or iceberg train.json", set_str,    \
      F(data), 0, 0, "data", rec_str)                                                             \
    X("val", "PATH", DATA, "separate validation folders / JSON", set_str, F(val), 0, 0, "val",    \
      rec_str_or_empty)                                                                           \
    X("validation-split", "F", DATA, "hold out F of each class (Keras: the first F of the files)", \
      set_double, F(validation_split), 0.0, 0.999999, "validation_split", rec_double)             \
    X("split", "keras|stratified", DATA, "how --validation-split picks (stratified: seeded)",     \
      set_split, F(split_method), 0, 0, "split", rec_split)                                       \
    X("input-size", "N", DATA, "square input (default 224; iceberg: 75)", set_int, F(input_size), \
      CT_MIN_INPUT, CT_MAX_INPUT, "input_size", rec_input)                                        \
    X("head", "SPEC", MODEL, "e.g. iceberg, mri, 'gap,dense:256:relu,dense:3:softmax'", set_str,  \
      F(head), 0, 0, "head", rec_head)                                                            \
    X("weights", "imagenet|none|FILE.h5", MODEL, "default imagenet (see weights/README.md)",      \
      set_str, F(weights), 0, 0, "weights", rec_weights)                                          \
    X("freeze-to", "LAYER", MODEL, "freeze up to and including LAYER (e.g. block4_pool)",         \
      set_freeze_to, F(freeze_to), 0, 0, "freeze_to", rec_freeze_to)                              \
    X("strategy", "auto|head|top|deep|all", MODEL,                                                \
      "the seed table (auto: measured as `cutune advise` does)", set_strategy, F(strategy), 0, 0, \
      NULL, NULL)                                                                                 \
    X("warmup-epochs", "N", MODEL, "train the head with the backbone frozen first", set_int,      \
      F(warmup_epochs), 0, 100000, "warmup_epochs", rec_int)                                      \
    X("body-lr-mult", "F", MODEL, "backbone learning rate = F x lr", set_float, F(body_lr_mult),  \
      0.0, 1e3, "body_lr_mult", rec_float)                                                        \
    X("block-lr-decay", "F", MODEL, "discriminative rates: block5 x F, block4 x F^2, ...",        \
      set_float, F(block_lr_decay), 0.0, 1e3, "block_lr_decay", rec_float)                        \
    X("batch-size", "N", OPTIM, "global batch (32)", set_int, F(batch_size), 1, 65536,            \
      "batch_size", rec_int)                                                                      \
    X("steps-per-epoch", "N", OPTIM, "batches per epoch (default: the whole training set)",       \
      set_long, F(steps_per_epoch), 1, 1099511627776.0, "steps_per_epoch", rec_long)              \
    X("optimizer", "sgd|adam|adamw", OPTIM, "Keras's optimizers with their defaults (sgd)",       \
      set_optimizer, F(optimizer.kind), 0, 0, "optimizer", rec_optimizer)                         \
    X("lr", "X", OPTIM, "learning rate (0.01 SGD, 0.001 Adam)", set_float, F(optimizer.lr), 1e-12, \
      1e3, "lr", rec_float)                                                                       \
    X("momentum", "X", OPTIM, "SGD momentum (0)", set_float, F(optimizer.momentum), 0.0, 0.999999, \
      "momentum", rec_float)                                                                      \
    X("nesterov", NULL, OPTIM, "Nesterov momentum (SGD)", set_switch, F(optimizer.nesterov), 0, 0, \
      "nesterov", rec_bool)                                                                       \
    X("decay", "X", OPTIM, "Keras 2 time decay: lr / (1 + decay x iterations)", set_float,        \
      F(optimizer.decay), 0.0, 1e6, "decay", rec_float)                                           \
    X("weight-decay", "X", OPTIM, "decoupled weight decay (adamw: 0.004)", set_float,             \
      F(optimizer.weight_decay), 0.0, 1.0, "weight_decay", rec_float)                             \
    X("l2", "X", OPTIM, "L2 penalty on kernels (Keras kernel_regularizer)", set_float,            \
      F(optimizer.l2), 0.0, 1e3, "l2", rec_float)                                                 \
    X("schedule", "constant|step:E:F|cosine[:MIN]", OPTIM, "learning-rate schedule", set_str,     \
      F(schedule), 0, 0, "schedule", rec_schedule)                                                \
    X("class-weight", "balanced|w0,w1,...", OPTIM, "per-class loss weights", set_str,             \
      F(class_weight), 0, 0, "class_weight", rec_str_or_empty)                                    \
    X("monitor", "val_loss|val_acc|loss|acc", CALLBACKS, "what the callbacks watch (val_loss)",   \
      set_str, F(monitor), 0, 0, "monitor", rec_str)                                              \
    X("seed", "N", RUN, "initialisation, order, augmentation, dropout (1)", set_u64, F(seed), 0,  \
      140737488355327.0, "seed", rec_u64)                                                         \
    X("rotation-range", "DEG", AUGMENT, "random rotations in [-DEG, DEG]", set_float,             \
      F(augment.rotation_range), 0.0, 360.0, "rotation_range", rec_float)                         \
    X("width-shift-range", "V", AUGMENT, "fraction (< 1), pixels (>= 1.0) or integer choice",     \
      set_shift, F(augment.width_shift), 0, 0, "width_shift_range", rec_shift)                    \
    X("height-shift-range", "V", AUGMENT, "as --width-shift-range, for rows", set_shift,          \
      F(augment.height_shift), 0, 0, "height_shift_range", rec_shift)                             \
    X("shear-range", "DEG", AUGMENT, "shear angle in [-DEG, DEG]", set_float,                     \
      F(augment.shear_range), 0.0, 360.0, "shear_range", rec_float)                               \
    X("zoom-range", "Z|LO,HI", AUGMENT, "zoom in [1-Z, 1+Z] or [LO, HI]", set_zoom, F(augment),   \
      0, 0, "zoom_range", rec_zoom)                                                               \
    X("channel-shift-range", "V", AUGMENT, "one shift in [-V, V] added to every channel",         \
      set_float, F(augment.channel_shift_range), 0.0, 1e6, "channel_shift_range", rec_float)      \
    X("brightness-range", "LO,HI", AUGMENT, "brightness factor in [LO, HI]", set_brightness,      \
      F(augment), 0, 0, "brightness_range", rec_brightness)                                       \
    X("horizontal-flip", NULL, AUGMENT, "mirror left-right with p = 0.5", set_switch,             \
      F(augment.horizontal_flip), 0, 0, "horizontal_flip", rec_bool)                              \
    X("vertical-flip", NULL, AUGMENT, "mirror top-bottom with p = 0.5", set_switch,               \
      F(augment.vertical_flip), 0, 0, "vertical_flip", rec_bool)                                  \
    X("fill-mode", "nearest|constant|reflect|wrap", AUGMENT, "how points outside are filled",     \
      set_fill_mode, F(augment.fill_mode), 0, 0, "fill_mode", rec_fill_mode)                      \
    X("cval", "V", AUGMENT, "the value of --fill-mode constant", set_float, F(augment.cval), -1e9, \
      1e9, "cval", rec_float)                                                                     \
    X("rescale", "F", PREPROCESS, "multiply the pixels by F (after --preprocess)", set_float,     \
      F(standardize.rescale), -1e9, 1e9, "rescale", rec_float)                                    \
    X("preprocess", "caffe|tf|torch|none", PREPROCESS, "default caffe (VGG), none for iceberg",   \
      set_preprocess, F(standardize.preprocess), 0, 0, "preprocess", rec_preprocess)              \
    X("class-mode", "categorical|binary|sparse", DATA, "default: from the head", set_class_mode,  \
      F(class_mode), 0, 0, "class_mode", rec_class_mode)                                          \
    X("color-mode", "rgb", DATA, "(default; grayscale files are read as RGB)", set_color_mode,    \
      F(color_mode), 0, 0, "color_mode", rec_color_mode)                                          \
    X("interpolation", "M", DATA, "nearest (default), bilinear, bicubic, lanczos, box, hamming",  \
      set_interpolation, F(interpolation), 0, 0, "interpolation", rec_interpolation)              \
    X("keep-aspect-ratio", NULL, DATA, "centre-crop to the target's aspect ratio first",          \
      set_switch, F(keep_aspect_ratio), 0, 0, "keep_aspect_ratio", rec_bool)                      \
    X("png16", "clip|scale", DATA, "16-bit grey PNGs: clip at 255 (Keras, default) or scale",     \
      set_png16, F(png16), 0, 0, "png16", rec_png16)                                              \
    X("na-policy", "P", DATA, "iceberg \"na\" angles: mean, median, ffill, a VALUE or error",     \
      set_na_policy, F(na_policy), 0, 0, "na_policy", rec_na_policy)                              \
    X("samplewise-center", NULL, PREPROCESS, "subtract each image's mean", set_switch,            \
      F(standardize.samplewise_center), 0, 0, "samplewise_center", rec_bool)                      \
    X("samplewise-std-normalization", NULL, PREPROCESS, "divide each image by its deviation",     \
      set_switch, F(standardize.samplewise_std_normalization), 0, 0,                              \
      "samplewise_std_normalization", rec_bool)                                                   \
    X("featurewise-center", NULL, PREPROCESS, "subtract the training set's channel means",        \
      set_switch, F(standardize.featurewise_center), 0, 0, "featurewise_center", rec_bool)        \
    X("featurewise-std-normalization", NULL, PREPROCESS, "divide by its channel deviations",      \
      set_switch, F(standardize.featurewise_std_normalization), 0, 0,                             \
      "featurewise_std_normalization", rec_bool)                                                  \
    X("skip-bad", NULL, DATA, "skip undecodable images and report them", set_switch,              \
      F(skip_bad), 0, 0, "skip_bad", rec_bool)                                                    \
    X("mode", "auto|min|max", CALLBACKS, "which way --monitor improves", set_mode,                \
      F(monitor_mode), 0, 0, "mode", rec_mode)                                                    \
    X("patience", "N", CALLBACKS, "EarlyStopping: epochs without improvement", set_int,           \
      F(early_stopping_patience), 0, 1000000, "patience", rec_int)                                \
    X("min-delta", "X", CALLBACKS, "EarlyStopping: the smallest change that counts", set_double,  \
      F(min_delta), 0.0, 1e9, "min_delta", rec_double)                                            \
    X("restore-best-weights", NULL, CALLBACKS, "EarlyStopping: end with the best epoch's weights", \
      set_switch, F(restore_best_weights), 0, 0, "restore_best_weights", rec_bool)                \
    X("reduce-lr-patience", "N", CALLBACKS, "ReduceLROnPlateau: epochs without improvement",      \
      set_int, F(reduce_lr_patience), 0, 1000000, "reduce_lr_patience", rec_int)                  \
    X("reduce-lr-factor", "F", CALLBACKS, "ReduceLROnPlateau: lr x F (0.1)", set_double,          \
      F(reduce_lr_factor), 1e-9, 0.999999, "reduce_lr_factor", rec_double)                        \
    X("min-lr", "X", CALLBACKS, "ReduceLROnPlateau: the lowest rate", set_double, F(min_lr), 0.0, \
      1e3, "min_lr", rec_double)                                                                  \
    X("reduce-lr-cooldown", "N", CALLBACKS, "ReduceLROnPlateau: epochs to wait after a reduction", \
      set_int, F(reduce_lr_cooldown), 0, 1000000, "reduce_lr_cooldown", rec_int)                  \
    X("save-best-only", NULL, CALLBACKS, "best.h5 is the run's model: no final.h5",               \
      set_switch, F(save_best_only), 0, 0, NULL, NULL)                                            \
    X("keep-checkpoints", "K", CALLBACKS,                                                         \
      "checkpoints of the last K epochs (1); 0: none once the run ends", set_int,                 \
      F(keep_checkpoints), 0, 1000000, NULL, NULL)                                                \
    X("precision", "tf32|fp32|bf16", RUN, "CUDA arithmetic (tf32); bf16 is mixed precision",      \
      set_precision, F(precision), 0, 0, "precision", rec_given)                                  \
    X("augment-on", "auto|device|loader", RUN, "where augmentation and preprocessing run",        \
      set_augment_on, F(augment_on), 0, 0, "augment_on", rec_augment_on)                          \
    X(NULL, NULL, RUN, NULL, set_str, F(data_subset), 0, 0, "# data_subset", rec_given)           \
    X("backbone", "vgg16|vgg19", MODEL, "the keras.applications network (vgg16)", set_backbone,   \
      F(backbone), 0, 0, "backbone", rec_backbone)                                                \
    X("epochs", "N", OPTIM, "epochs to train (10); the one setting --resume may change", set_int, \
      F(epochs), 1, 1000000, NULL, NULL)                                                          \
    X("threads", "N", DATA, "loader workers (2 on the CPU; on a GPU, cores - 1, 2 to 8)", set_int, \
      F(threads), 1, 256, NULL, NULL)                                                             \
    X("cache-mb", "N", DATA, "decoded-image and frozen-prefix cache budget (2048)", set_cache_mb, \
      F(cache_bytes), 0, 1073741824.0, NULL, NULL)                                                \
    X("no-feature-cache", NULL, RUN, "recompute frozen layers every step", set_switch,            \
      F(no_feature_cache), 0, 0, NULL, NULL)                                                      \
    X("out", "RUN_DIR", RUN, "the run folder: logs, checkpoints, weights", set_str, F(out_dir), 0, \
      0, NULL, NULL)                                                                              \
    X("resume", NULL, RUN, "continue the run in RUN_DIR from its checkpoint", set_switch,         \
      F(resume), 0, 0, NULL, NULL)                                                                \
    X("device", "cpu|cuda|auto", RUN, "the backend (auto: CUDA when usable)", set_str,            \
      F(device), 0, 0, NULL, NULL)                                                                \
    X("deterministic", NULL, RUN, "deterministic cuDNN algorithms only", set_switch,              \
      F(deterministic), 0, 0, NULL, NULL)                                                         \
    X("verbose", "0|1|2", RUN, "0 quiet, 1 progress bar, 2 one line per epoch", set_int,          \
      F(verbose), 0, 2, NULL, NULL)                                                               \
    X("folds", "K", RUN, "K stratified folds, one run each in RUN_DIR/fold_<k>/", set_int,        \
      F(folds), 2, CT_MAX_FOLDS, NULL, NULL)                                                      \
    X("test", "PATH", RUN, "with --folds: the folds' mean predictions of PATH", set_str, F(test), \
      0, 0, NULL, NULL)                                                                           \
    X("config", "FILE", RUN, "read flags from FILE (key = value lines; the command line wins)",   \
      set_nothing, 0, 0, 0, NULL, NULL)
