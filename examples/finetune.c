/* Fine-tune from a folder, then predict one image: cutune's public C API end to end.
 *
 *   finetune DATA_DIR RUN_DIR IMAGE [name=value ...]
 *
 * DATA_DIR holds one folder per class (flow_from_directory's layout). The run trains with
 * `cutune train`'s defaults and any settings given as name=value (the flag names: epochs=5,
 * input-size=64, weights=none, device=cpu, ...), writes RUN_DIR (log.csv, best.h5, ...), then
 * loads RUN_DIR/final.h5 and prints the class probabilities of IMAGE. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cutune/cutune.h>

static bool on_epoch_end(void *user, const ct_epoch_logs *logs) {
    (void)user;
    printf("epoch %d/%d: loss %.4f, acc %.4f\n", logs->epoch + 1, logs->epochs, logs->loss,
           logs->acc);
    return false; /* true would stop the run here, as model.stop_training = True */
}

static int fail(const char *what) {
    fprintf(stderr, "finetune: %s: %s\n", what, ct_last_error());
    return 1;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: finetune DATA_DIR RUN_DIR IMAGE [name=value ...]\n");
        return 2;
    }
    printf("cutune %s\n", ct_version());
    ct_train_config *config = NULL;
    if (ct_train_config_new(&config) != CT_OK) return fail("config");
    ct_train_config_set(config, "data", argv[1]);
    ct_train_config_set(config, "out", argv[2]);
    for (int i = 4; i < argc; i++) {
        char name[64];
        const char *eq = strchr(argv[i], '=');
        snprintf(name, sizeof name, "%.*s", eq ? (int)(eq - argv[i]) : 0, argv[i]);
        if (eq == NULL || ct_train_config_set(config, name, eq + 1) != CT_OK) return fail(argv[i]);
    }
    ct_train_callbacks callbacks = {.on_epoch_end = on_epoch_end};
    ct_train_config_set_callbacks(config, &callbacks);
    ct_train_result result;
    ct_status s = ct_train(config, &result);
    ct_train_config_free(config);
    if (s != CT_OK) return fail("train");

    ct_model *model = NULL;
    if (ct_model_load(&model, result.final_path, "auto", 1) != CT_OK) return fail("load");
    float probs[CT_MAX_CLASSES];
    if (ct_model_predict_image(model, argv[3], probs) != CT_OK) return fail(argv[3]);
    const int outputs = ct_model_num_outputs(model); /* 1: a sigmoid gives class 1's share */
    for (int k = 0; k < outputs; k++)
        printf("%s: %.4f\n", ct_model_class_name(model, outputs == 1 ? 1 : k), probs[k]);
    ct_model_free(model);
    return 0;
}
