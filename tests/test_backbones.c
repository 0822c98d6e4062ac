/* Backbones as data (src/model/backbones.c): the VGG16 and VGG19 tables against Keras's layer
 * lists and parameter counts, and a VGG19 run through every command a user types: train with
 * --backbone vgg19, resume, predict, inspect, export-keras and advise, each file recording the
 * backbone so that nothing has to be told twice. The numbers of a VGG19 step are checked
 * against PyTorch in test_golden.c; its official weights layout in test_weights.c. */
#include "train_cli_util.h"

#include "model/backbone.h"
#include "util.h"

TestSuite(backbones, .timeout = 120);

static void expect_layers(const char *name, int n, const char *const *names, size_t params) {
    const ct_backbone *bb = ct_backbone_find(name);
    cr_assert_not_null(bb, "%s", name);
    cr_assert_eq(bb->n_layers, n, "%s: %d layers", name, bb->n_layers);
    for (int i = 0; i < n; i++) cr_expect_str_eq(bb->layers[i].name, names[i]);
    cr_expect_eq(ct_backbone_params(bb), params, "%s: %zu parameters", name,
                 ct_backbone_params(bb));
    cr_expect_str_eq(bb->cut[CT_CUT_HEAD], "block5_pool");
    cr_expect_str_eq(bb->cut[CT_CUT_TOP], "block4_pool");
    cr_expect_str_eq(bb->cut[CT_CUT_DEEP], "block3_pool");
}

Test(backbones, tables_match_keras) {
    /* keras.applications: VGG16(include_top=False) has 14,714,688 weights, VGG19 20,024,384. */
    static const char *const vgg16[] = {
        "block1_conv1", "block1_conv2", "block1_pool", "block2_conv1", "block2_conv2",
        "block2_pool", "block3_conv1", "block3_conv2", "block3_conv3", "block3_pool",
        "block4_conv1", "block4_conv2", "block4_conv3", "block4_pool", "block5_conv1",
        "block5_conv2", "block5_conv3", "block5_pool"};
    static const char *const vgg19[] = {
        "block1_conv1", "block1_conv2", "block1_pool", "block2_conv1", "block2_conv2",
        "block2_pool", "block3_conv1", "block3_conv2", "block3_conv3", "block3_conv4",
        "block3_pool", "block4_conv1", "block4_conv2", "block4_conv3", "block4_conv4",
        "block4_pool", "block5_conv1", "block5_conv2", "block5_conv3", "block5_conv4",
        "block5_pool"};
    expect_layers("vgg16", 18, vgg16, 14714688);
    expect_layers("vgg19", 21, vgg19, 20024384);
    cr_expect_eq(ct_backbone_find(NULL), ct_backbone_find("vgg16"));
    cr_expect_null(ct_backbone_find("resnet50"));
    const ct_backbone *bb;
    cr_expect_eq(ct_backbone_lookup("vgg11", &bb), CT_EINVAL);
    cr_expect(strstr(ct_last_error(), "unknown backbone 'vgg11' (vgg16, vgg19)") != NULL, "%s",
              ct_last_error());
    /* The official files, as Keras's source names and checks them. */
    bb = ct_backbone_find("vgg16");
    cr_expect_str_eq(bb->notop.name, CT_IMAGENET_NOTOP);
    cr_expect_str_eq(bb->notop.md5, CT_IMAGENET_NOTOP_MD5);
    cr_expect_str_eq(bb->full.name, CT_IMAGENET_FULL);
    cr_expect_str_eq(bb->full.md5, CT_IMAGENET_FULL_MD5);
    bb = ct_backbone_find("vgg19");
    cr_expect_str_eq(bb->notop.name, "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5");
    cr_expect_str_eq(bb->notop.md5, "253f8cb515780f3b799900260a226db6");
    cr_expect_str_eq(bb->full.name, "vgg19_weights_tf_dim_ordering_tf_kernels.h5");
    cr_expect_str_eq(bb->full.md5, "cbe5617147190e668d6c5d5026f83318");
}

Test(backbones, vgg19_model_shapes) {
    ct_backend be;
    cr_assert_eq(ct_backend_cpu_init(&be, 1), CT_OK);
    ct_model_config cfg = {.backbone = "vgg19", .input_h = 75, .input_w = 75, .input_c = 3,
                           .aux_dim = 1, .max_batch = 2, .head = "iceberg", .seed = 1};
    ct_model *m = NULL;
    cr_assert_eq(ct_model_init(&m, &cfg, &be), CT_OK, "%s", ct_last_error());
    cr_expect_str_eq(ct_model_get_config(m)->backbone, "vgg19");
    const ct_layer *p5 = ct_model_find(m, "block5_pool");
    cr_assert_not_null(p5);
    cr_expect(p5->out_h == 2 && p5->out_w == 2 && p5->out_c == 512); /* 75 -> 37 -> ... -> 2 */
    cr_expect_str_eq(ct_model_layer(m, 21)->name, "global_max_pooling2d");
    size_t trainable = 0;
    cr_expect_eq(ct_model_num_params(m, &trainable), 20024384 + 1 * 1 + 1 + 513 * 512 + 512 +
                                                         512 * 512 + 512 + 512 + 1);
    cr_assert_eq(ct_model_freeze_to(m, "block4_pool"), CT_OK);
    cr_expect_str_eq(ct_model_layer(m, ct_model_first_trainable(m))->name, "block5_conv1");
    ct_model_free(m);
    cfg.backbone = "vgg13";
    cr_expect_eq(ct_model_init(&m, &cfg, &be), CT_EINVAL);
    ct_backend_free(&be);
}

/* ---- a VGG19 run from the command line ---- */

TestSuite(backbones_cli, .init = tc_setup, .fini = tc_teardown, .timeout = 600);

#define VGG19_RUN                                                                              \
    "train --data %s/d/train --val %s/d/val --out %s/run19 " TC_SMALL " --backbone vgg19 "     \
    "--head mri --strategy top --epochs 2 --verbose 2"

Test(backbones_cli, train_resume_predict_inspect_export_advise) {
    /* Interrupted after 3 steps, resumed, and equal to an uninterrupted run. */
    TC_EXPECT("CUTUNE_STOP_AFTER_STEPS=3", 130, "continue with --resume", VGG19_RUN, D, D, D);
    char *cfg = tc_read(tc_path("run19/config.txt"));
    cr_assert_not_null(cfg);
    cr_expect(strstr(cfg, "\nbackbone = vgg19\n") != NULL, "%s", cfg);
    free(cfg);
    /* Resumed with another backbone: the run's record names what differs. */
    TC_EXPECT(NULL, 2, "it has 'backbone = vgg19', now '(not set)'",
              "train --data %s/d/train --val %s/d/val --out %s/run19 " TC_SMALL
              " --head mri --strategy top --epochs 2 --verbose 2 --resume --backbone vgg16", D,
              D, D);
    TC_MUST(NULL, VGG19_RUN " --resume", D, D, D);
    TC_MUST(NULL, "train --data %s/d/train --val %s/d/val --out %s/once " TC_SMALL
            " --backbone vgg19 --head mri --strategy top --epochs 2 --verbose 2", D, D, D);
    TC_SAME_ARRAYS(tc_path("run19/final.h5"), tc_path("once/final.h5"), 20);

    /* The file says it is VGG19: predict, inspect and export-keras need no flag. */
    TC_MUST(NULL, "predict --model %s/run19/final.h5 --data %s/d/val --out %s/p.csv --device cpu",
            D, D, D);
    cr_expect(tc_exists(tc_path("p.csv")));
    TC_EXPECT(NULL, 0, "backbone vgg19", "inspect %s/run19/final.h5", D);
    cr_expect(strstr(tc_out, "model: VGG19 32x32") != NULL, "%s", tc_out);
    cr_expect(strstr(tc_out, "backbone: fits (16 layers, 20,024,384 parameters)") != NULL, "%s",
              tc_out);
    TC_EXPECT(NULL, 0, "name=\"block5_conv4\"", "export-keras %s/run19/final.h5", D);
    cr_expect(strstr(tc_out, "name=\"cutune_vgg19\"") != NULL, "%s", tc_out);
    /* A VGG19 file against a VGG16 model: the layer and the flag that fits it. */
    TC_EXPECT(NULL, 1, "belongs to VGG19", "inspect %s/run19/final.h5 --backbone vgg16", D);
    TC_EXPECT(NULL, 2, "unknown backbone 'vgg20'", "train --data %s/d/train --out %s/x "
              TC_SMALL " --backbone vgg20", D, D);

    /* advise carries the backbone into the command it prints. */
    TC_EXPECT(NULL, 0, "--backbone vgg19",
              "advise --data %s/d/train --backbone vgg19 --weights none --threads 1", D);
}
