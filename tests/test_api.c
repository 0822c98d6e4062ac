/* The public C API (include/cutune/) as a program uses it: training settings set by their flag
 * names, applied in the table's order and copied; Keras-style callbacks that see every epoch and
 * batch and can stop a run (after an epoch like EarlyStopping, after a batch like Ctrl-C, which
 * --resume continues); and models made on a device, saved, loaded back and predicting an image
 * file exactly as `cutune predict` does. */
#include "train_cli_util.h"

#include "cutune/cutune.h"
#include "train/run.h"
#include "util.h"

TestSuite(api_settings, .timeout = 60);

Test(api_settings, set_by_flag_names_and_copied) {
    ct_train_config *c = NULL;
    cr_assert_eq(ct_train_config_new(&c), CT_OK);
    cr_expect_eq(c->epochs, 10);
    cr_expect_eq(c->batch_size, 32);
    char data[32];
    snprintf(data, sizeof data, "%s", "mri/train");
    cr_assert_eq(ct_train_config_set(c, "data", data), CT_OK);
    snprintf(data, sizeof data, "%s", "overwritten");
    cr_expect_str_eq(c->data, "mri/train"); /* the value was copied */
    cr_expect_eq(ct_train_config_set(c, "batch_size", "8"), CT_OK); /* Keras's spelling too */
    cr_expect_eq(c->batch_size, 8);
    cr_expect_eq(ct_train_config_set(c, "horizontal-flip", "1"), CT_OK);
    cr_expect(c->augment.horizontal_flip);
    cr_expect_eq(ct_train_config_set(c, "horizontal-flip", NULL), CT_OK);
    cr_expect(!c->augment.horizontal_flip);
    cr_expect_eq(ct_train_config_set(c, "learning_rate", "0.1"), CT_EINVAL);
    cr_expect(strstr(ct_last_error(), "unknown flag '--learning_rate'") != NULL, "%s",
              ct_last_error());
    cr_expect_eq(ct_train_config_set(c, "batch-size", "lots"), CT_EINVAL);
    cr_expect(strstr(ct_last_error(), "--batch-size: expected a whole number from 1 to 65536, "
                                      "not 'lots'") != NULL, "%s", ct_last_error());
    cr_expect_eq(ct_train_config_set(c, "lr", NULL), CT_EINVAL);
    cr_expect(strstr(ct_last_error(), "--lr needs a value") != NULL, "%s", ct_last_error());
    ct_train_config_free(c);
    ct_train_config_free(NULL);
}

Test(api_settings, applied_in_the_tables_order) {
    /* --lr given before --optimizer still wins: the optimizer's defaults come first. */
    ct_train_config *c = NULL;
    cr_assert_eq(ct_train_config_new(&c), CT_OK);
    const char *names[] = {"lr", "momentum", "optimizer", "epochs", "epochs"};
    const char *values[] = {"0.5", "0.25", "adam", "3", "4"};
    cr_assert_eq(ct_train_config_apply(c, 5, names, values), CT_OK, "%s", ct_last_error());
    cr_expect_eq(c->optimizer.kind, CT_OPT_ADAM);
    cr_expect_float_eq(c->optimizer.lr, 0.5f, 0.0f);
    cr_expect_float_eq(c->optimizer.momentum, 0.25f, 0.0f);
    cr_expect_eq(c->epochs, 4); /* the last of a repeated name */
    const char *bad[] = {"nesterov", "optimizer"};
    const char *badv[] = {"1", "adam"};
    cr_expect_eq(ct_train_config_apply(c, 2, bad, badv), CT_EINVAL);
    cr_expect(strstr(ct_last_error(), "--nesterov applies to --optimizer sgd") != NULL);
    ct_train_config_free(c);
}

Test(api_settings, every_setting_is_listed_once_with_help) {
    const int n = ct_train_settings_count();
    cr_assert_gt(n, 60);
    for (int i = 0; i < n; i++) {
        const ct_train_setting_info *s = ct_train_setting(i);
        cr_assert_not_null(s);
        cr_expect(s->help != NULL && s->help[0] != '\0', "%s has no help", s->name);
        cr_expect(s->group >= 0 && s->group < CT_SETTINGS_GROUPS, "%s", s->name);
        cr_expect(ct_train_settings_title(s->group)[0] != '\0');
        for (int j = 0; j < i; j++) cr_expect_str_neq(s->name, ct_train_setting(j)->name);
    }
    cr_expect_null(ct_train_setting(n));
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    ct_train_print_help(f);
    fclose(f);
    for (int i = 0; i < n; i++) {
        char flag[96];
        snprintf(flag, sizeof flag, "  --%s", ct_train_setting(i)->name);
        cr_expect(strstr(text, flag) != NULL, "--help lacks %s", flag);
    }
    free(text);
}

/* ---- callbacks ---- */

TestSuite(api_callbacks, .init = tc_setup, .fini = tc_teardown, .timeout = 300);

typedef struct seen {
    int epochs, batches, stop_at_epoch, stop_at_step;
    double last_loss;
} seen;

static bool epoch_end(void *user, const ct_epoch_logs *logs) {
    seen *s = user;
    s->epochs++;
    cr_expect_geq(logs->epoch, s->epochs - 1);
    cr_expect(isfinite(logs->loss) && isfinite(logs->val_loss), "%g %g", logs->loss,
              logs->val_loss);
    s->last_loss = logs->loss;
    return s->stop_at_epoch > 0 && logs->epoch + 1 == s->stop_at_epoch;
}

static bool batch_end(void *user, const ct_batch_logs *logs) {
    seen *s = user;
    s->batches++;
    cr_expect(isfinite(logs->loss) && logs->acc >= 0.0 && logs->acc <= 1.0);
    return s->stop_at_step > 0 && logs->step + 1 == s->stop_at_step;
}

static ct_train_config *small_run(const char *out, seen *s) {
    ct_train_config *c = NULL;
    cr_assert_eq(ct_train_config_new(&c), CT_OK);
    const char *names[] = {"data", "val", "out", "input-size", "batch-size", "weights",
                           "device", "threads", "head", "strategy", "epochs", "verbose"};
    const char *values[] = {tc_path("d/train"), tc_path("d/val"), out, "32", "4", "none", "cpu",
                            "1", "mri", "head", "4", "0"};
    cr_assert_eq(ct_train_config_apply(c, 12, names, values), CT_OK, "%s", ct_last_error());
    ct_train_callbacks cb = {.user = s, .on_epoch_end = epoch_end, .on_batch_end = batch_end};
    ct_train_config_set_callbacks(c, &cb);
    return c;
}

Test(api_callbacks, epoch_and_batch_callbacks_stop_a_run) {
    /* Stopped after epoch 2 of 4, as model.stop_training = True: final.h5 is written. */
    seen s = {.stop_at_epoch = 2};
    ct_train_config *c = small_run(tc_path("by_epoch"), &s);
    ct_train_result r;
    cr_assert_eq(ct_train(c, &r), CT_OK, "%s", ct_last_error());
    cr_expect_eq(s.epochs, 2);
    cr_expect_eq(s.batches, 2 * 3); /* 12 images, batch 4 */
    cr_expect(r.stopped_by_callback && !r.stopped_early);
    cr_expect_eq(r.epochs_run, 2);
    cr_expect_eq(s.last_loss, r.final_loss);
    cr_expect(tc_exists(tc_path("by_epoch/final.h5")));
    ct_train_config_free(c);

    /* Stopped after step 5, as Ctrl-C: a checkpoint, CT_EINTR; --resume finishes the run, and
     * it ends as a run never stopped. */
    seen b = {.stop_at_step = 5};
    c = small_run(tc_path("by_batch"), &b);
    cr_assert_eq(ct_train(c, &r), CT_EINTR, "%s", ct_last_error());
    cr_expect(r.interrupted);
    cr_expect_eq(b.batches, 5);
    cr_expect_eq(b.epochs, 1);
    b.stop_at_step = 0;
    cr_assert_eq(ct_train_config_set(c, "resume", "1"), CT_OK);
    cr_assert_eq(ct_train(c, &r), CT_OK, "%s", ct_last_error());
    ct_train_config_free(c);
    seen whole = {0};
    c = small_run(tc_path("whole"), &whole);
    cr_assert_eq(ct_train(c, &r), CT_OK, "%s", ct_last_error());
    ct_train_config_free(c);
    cr_expect_eq(whole.batches, 12);
    TC_SAME_ARRAYS(tc_path("by_batch/final.h5"), tc_path("whole/final.h5"), 4);
}

/* ---- models ---- */

TestSuite(api_models, .init = tc_setup, .fini = tc_teardown, .timeout = 300);

Test(api_models, create_save_load_and_predict_an_image_as_cutune_predict_does) {
    ct_model_config cfg = {.input_h = 32, .input_w = 32, .input_c = 3, .max_batch = 2,
                           .head = "mri", .seed = 7};
    ct_model *m = NULL;
    cr_assert_eq(ct_model_create(&m, &cfg, "cpu"), CT_OK, "%s", ct_last_error());
    cr_expect_eq(ct_model_num_outputs(m), 2);
    size_t trainable = 0;
    cr_expect_eq(ct_model_num_params(m, &trainable), 14714688 + 512 * 64 + 64 + 64 * 2 + 2);
    cr_expect_eq(trainable, ct_model_num_params(m, NULL));
    cr_expect_eq(ct_model_freeze_to(m, "block5_pool"), CT_OK);
    ct_model_num_params(m, &trainable);
    cr_expect_eq(trainable, (size_t)(512 * 64 + 64 + 64 * 2 + 2));
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    ct_model_summary(m, f);
    fclose(f);
    cr_expect(strstr(text, "block5_pool (MaxPooling2D)") != NULL, "%s", text);
    cr_expect(strstr(text, "(None, 1, 1, 512)") != NULL, "%s", text);
    cr_expect(strstr(text, "Non-trainable params: 14714688") != NULL, "%s", text);
    free(text);
    cr_assert_eq(ct_model_save(m, tc_path("m.h5")), CT_OK, "%s", ct_last_error());
    ct_model_free(m);

    /* Loaded back; its prediction of one file equals `cutune predict`'s for it. */
    cr_assert_eq(ct_model_load(&m, tc_path("m.h5"), "cpu", 1), CT_OK, "%s", ct_last_error());
    float probs[2];
    char path[600], name[300];
    DIR *dir = opendir(tc_path("d/val/normal"));
    cr_assert_not_null(dir);
    struct dirent *e;
    while ((e = readdir(dir)) != NULL && e->d_name[0] == '.') {}
    cr_assert_not_null(e);
    snprintf(name, sizeof name, "normal/%s", e->d_name);
    snprintf(path, sizeof path, "%s", tc_path("d/val/%s", name));
    closedir(dir);
    cr_assert_eq(ct_model_predict_image(m, path, probs), CT_OK, "%s", ct_last_error());
    TC_MUST(NULL, "predict --model %s/m.h5 --data %s/d/val --out %s/p.csv --device cpu", D, D, D);
    tc_csv *csv = tc_csv_read(tc_path("p.csv"));
    int row = -1;
    for (int i = 0; i < csv->rows; i++)
        if (strcmp(csv->first[i], name) == 0) row = i;
    cr_assert_geq(row, 0, "no row for the image in p.csv");
    cr_expect_float_eq(probs[0], csv->v[row][1], 1e-6, "%g vs %g", probs[0], csv->v[row][1]);
    cr_expect_float_eq(probs[1], csv->v[row][2], 1e-6, "%g vs %g", probs[1], csv->v[row][2]);
    free(csv);
    cr_expect_eq(ct_model_predict_image(m, tc_path("nothere.png"), probs), CT_ENOTFOUND);
    ct_model_free(m);
    cr_expect_eq(ct_model_load(&m, tc_path("nothere.h5"), "cpu", 1), CT_ENOTFOUND);
    cr_expect_null(m);
}
