/* config.txt, the record of a run's settings: written with the flags' names and words, read back
 * through the same setters (so it is a --config file and `train --out RUN_DIR --resume` needs
 * nothing else), and compared by --resume. A record cutune 0.2 wrote (enums as numbers,
 * width_shift with width_shift_kind, preprocess_given, numbers to 6 digits) still compares
 * equal to the same settings today, and a changed setting is named in today's words. */
#define _XOPEN_SOURCE 700 /* mkdtemp */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "train/run.h"
#include "train/settings.h"

/* What cutune 0.2 wrote for: --data d/train --val d/val --input-size 32 --batch-size 4
 * --weights none --head mri --strategy head --width-shift-range 4 --height-shift-range 2.0
 * --rotation-range 10 --preprocess none --patience 3 --zoom-range 0.1 --fill-mode reflect
 * --horizontal-flip --lr 0.0123456789 (and --device cpu --threads 1 --verbose 0). */
static const char legacy[] =
    "data = d/train\nval = d/val\nvalidation_split = 0\nsplit = keras\ninput_size = 32\n"
    "head = mri\nweights = none\nfreeze_to = block5_pool\nwarmup_epochs = 0\n"
    "body_lr_mult = 1\nblock_lr_decay = 1\nbatch_size = 4\nsteps_per_epoch = 0\n"
    "optimizer = sgd\nlr = 0.0123457\nmomentum = 0\nnesterov = 0\ndecay = 0\n"
    "weight_decay = 0\nl2 = 0\nschedule = constant\nclass_weight = \nmonitor = val_loss\n"
    "seed = 1\nrotation_range = 10\nwidth_shift = 4\nheight_shift = 2\nshear_range = 0\n"
    "zoom_range = 0.9,1.1\nchannel_shift_range = 0\nbrightness_range = 0,0\n"
    "horizontal_flip = 1\nvertical_flip = 0\nfill_mode = 2\ncval = 0\nrescale = 0\n"
    "preprocess = 0\nclass_mode = 0\ncolor_mode = 0\ninterpolation = 0\n"
    "keep_aspect_ratio = 0\nna_policy = 0\nna_value = 0\nsamplewise_center = 0\n"
    "samplewise_std_normalization = 0\nfeaturewise_center = 0\n"
    "featurewise_std_normalization = 0\nwidth_shift_kind = 2\nheight_shift_kind = 1\n"
    "skip_bad = 0\nmode = 0\npatience = 3\nmin_delta = 0\nrestore_best_weights = 0\n"
    "reduce_lr_patience = -1\nreduce_lr_factor = 0.1\nmin_lr = 0\nreduce_lr_cooldown = 0\n"
    "preprocess_given = none\n";

static const char *const flags[][2] = {
    {"data", "d/train"},        {"val", "d/val"},          {"input-size", "32"},
    {"batch-size", "4"},        {"weights", "none"},       {"head", "mri"},
    {"strategy", "head"},       {"width-shift-range", "4"}, {"height-shift-range", "2.0"},
    {"rotation-range", "10"},   {"preprocess", "none"},    {"patience", "3"},
    {"zoom-range", "0.1"},      {"fill-mode", "reflect"},  {"horizontal-flip", "1"},
    {"lr", "0.0123456789"}};
#define N_FLAGS (int)(sizeof flags / sizeof flags[0])

/* Today's record of the flags, as a run resolves them (head mri, block5_pool, categorical). */
static char *record_of(int n, const char *const (*f)[2]) {
    ct_train_config *c = NULL;
    cr_assert_eq(ct_train_config_new(&c), CT_OK);
    const char *names[32], *values[32];
    for (int i = 0; i < n; i++) names[i] = f[i][0], values[i] = f[i][1];
    cr_assert_eq(ct_train_config_apply(c, n, names, values), CT_OK, "%s", ct_last_error());
    ct_train_facts facts = {.c = c, .input = 32, .head = "mri", .freeze_target = "block5_pool",
                            .class_mode = CT_CLASS_CATEGORICAL,
                            .default_preprocess = CT_PREPROCESS_CAFFE};
    char *text = ct_train_record(&facts);
    cr_assert_not_null(text);
    ct_train_config_free(c);
    return text;
}

Test(settings_record, readable_lines_that_read_back_as_flags) {
    char *now = record_of(N_FLAGS, flags);
    static const char *const lines[] = {
        "\nwidth_shift_range = 4\n", "\nheight_shift_range = 2.0\n", "\nfill_mode = reflect\n",
        "\npreprocess = none\n",     "\nhorizontal_flip = true\n",   "\nnesterov = false\n",
        "\nlr = 0.012345679\n",      "\nrotation_range = 10.0\n",    "\nclass_mode = categorical\n",
        "\nzoom_range = 0.9,1.1\n",  "\npatience = 3\n",             "\nmode = auto\n"};
    for (size_t i = 0; i < sizeof lines / sizeof lines[0]; i++)
        cr_expect(strstr(now, lines[i]) != NULL, "no '%s' in\n%s", lines[i] + 1, now);
    /* Nothing "not given" is written as a value the flag refuses. */
    cr_expect(strstr(now, "reduce_lr_patience") == NULL && strstr(now, "brightness") == NULL &&
              strstr(now, "steps_per_epoch") == NULL && strstr(now, "\nval = d/val") != NULL,
              "%s", now);
    /* Read back into a fresh configuration, it records the same text. */
    ct_train_config *c = NULL;
    cr_assert_eq(ct_train_config_new(&c), CT_OK);
    ct_train_facts facts = {.default_preprocess = CT_PREPROCESS_CAFFE};
    cr_assert_eq(ct_train_config_read_record(c, now, true, "config.txt", &facts), CT_OK, "%s",
                 ct_last_error());
    char *again = ct_train_record(&facts);
    cr_expect_str_eq(again, now);
    cr_expect_eq(ct_train_record_compare(now, again, CT_PREPROCESS_CAFFE), CT_OK);
    free(again);
    ct_train_config_free(c);
    free(now);
}

Test(settings_record, a_record_of_cutune_0_2_compares_in_todays_words) {
    char *now = record_of(N_FLAGS, flags);
    cr_expect_eq(ct_train_record_compare(legacy, now, CT_PREPROCESS_CAFFE), CT_OK, "%s",
                 ct_last_error());
    free(now);
    /* One setting changed: named as today writes it. */
    const char *(*changed)[2] = malloc(sizeof flags);
    memcpy(changed, flags, sizeof flags);
    changed[13][1] = "wrap";
    now = record_of(N_FLAGS, (const char *const(*)[2])changed);
    cr_expect_eq(ct_train_record_compare(legacy, now, CT_PREPROCESS_CAFFE), CT_EINVAL);
    cr_expect(strstr(ct_last_error(), "it has 'fill_mode = reflect', now 'fill_mode = wrap'") !=
              NULL, "%s", ct_last_error());
    free(now);
    /* --preprocess caffe (the data's default) where the run used none. */
    changed[13][1] = "reflect";
    changed[10][1] = "caffe";
    now = record_of(N_FLAGS, (const char *const(*)[2])changed);
    cr_expect_eq(ct_train_record_compare(legacy, now, CT_PREPROCESS_CAFFE), CT_EINVAL);
    cr_expect(strstr(ct_last_error(), "it has 'preprocess = none', now 'preprocess = caffe'") !=
              NULL, "%s", ct_last_error());
    free(now);
    free(changed);
}

Test(settings_record, a_record_is_a_run_folders_settings) {
    char dir[] = "/tmp/cutune_record_XXXXXX", path[64];
    cr_assert_not_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/config.txt", dir);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs(legacy, f);
    fclose(f);
    ct_train_config *c = NULL;
    cr_assert_eq(ct_train_config_new(&c), CT_OK);
    cr_assert_eq(ct_train_config_read_run(c, dir), CT_OK, "%s", ct_last_error());
    ct_train_facts facts = {.c = c, .input = 32, .head = "mri", .freeze_target = "block5_pool",
                            .class_mode = CT_CLASS_CATEGORICAL,
                            .default_preprocess = CT_PREPROCESS_CAFFE};
    char *text = ct_train_record(&facts);
    cr_expect_eq(ct_train_record_compare(legacy, text, CT_PREPROCESS_CAFFE), CT_OK, "%s",
                 ct_last_error());
    cr_expect(strstr(text, "\nwidth_shift_range = 4\n") != NULL, "%s", text);
    free(text);
    ct_train_config_free(c);
    /* A fold's folder names the whole run's. */
    f = fopen(path, "a");
    fputs("data_subset = fold 2/5, seed 1\n", f);
    fclose(f);
    cr_assert_eq(ct_train_config_new(&c), CT_OK);
    cr_expect_eq(ct_train_config_read_run(c, dir), CT_EINVAL);
    cr_expect(strstr(ct_last_error(), "is fold 2 of a k-fold run") != NULL, "%s",
              ct_last_error());
    ct_train_config_free(c);
    remove(path);
    rmdir(dir);
}
