/* Every way `cutune train` can be set up wrong ends with a message naming the problem and a
 * non-zero exit (2 for usage, 1 for failures), and leaves an existing run as it was: bad flag
 * values, missing --data / --out / data, a run folder that holds a run, --resume without a
 * checkpoint or with changed settings, head / class-mode / data mismatches, unknown layers and
 * metrics, one-class data, a NaN loss (whose last checkpoint stays loadable), and --config
 * files (underscored keys, comments, the command line winning, unreadable files). */
#include "train_cli_util.h"

TestSuite(train_errors, .init = tc_setup, .fini = tc_teardown, .timeout = 300);

/* A data folder and run folder that pass every check but the one under test. */
#define OK_ARGS "--data %s/d/train --out %s/run " TC_SMALL " --epochs 1 --verbose 0"

Test(train_errors, bad_flag_values) {
    /* One of each kind of flag: whole numbers, real numbers, names, ranges, lists, switches. */
    static const struct {
        const char *flags, *text;
    } cases[] = {
        {"--epochs 0", "--epochs: expected a whole number from 1"},
        {"--batch-size many", "--batch-size: expected a whole number from 1 to 65536, not 'many'"},
        {"--input-size 16", "--input-size: expected a whole number from 32"},
        {"--lr abc", "--lr: expected a number from 1e-12 to 1000, not 'abc'"},
        {"--validation-split 1.5", "--validation-split: expected a number from 0"},
        {"--optimizer rmsprop", "unknown optimizer 'rmsprop' (sgd, adam, adamw)"},
        {"--class-mode multi", "unknown class mode 'multi'"},
        {"--strategy most", "unknown strategy 'most'"},
        {"--schedule wiggly", "unknown schedule 'wiggly'"},
        {"--schedule step:2:5", "the factor must be in (0, 1]"},
        {"--split random", "--split: expected keras or stratified, not 'random'"},
        {"--mode up", "unknown monitor mode 'up'"},
        {"--zoom-range 1,2,3", "--zoom-range: range '1,2,3'"},
        {"--color-mode cmyk", "unknown color mode 'cmyk'"},
        {"--color-mode grayscale", "--color-mode grayscale: VGG16 reads 3-channel images"},
        {"--na-policy sometimes", "--na-policy: unknown inc_angle policy 'sometimes'"},
        {"--class-weight 1,2,3", "--class-weight '1,2,3': expected 2 weights, one per class"},
        {"--class-weight heavy", "--class-weight 'heavy': expected 'balanced' or 2"},
        {"--nesterov --optimizer adam", "--nesterov applies to --optimizer sgd"},
        {"--horizontal-flip=sometimes", "--horizontal-flip is a switch"},
        {"--device tpu", "unknown device 'tpu'"},
        {"--precision fp16", "--precision 'fp16': expected fp32, tf32 or bf16"},
        {"--device cpu --precision tf32", "--precision tf32 needs the cuda backend"},
        {"--augment-on gpu", "--augment-on 'gpu': expected auto, device or loader"},
        {"--frobnicate", "unknown flag '--frobnicate'"},
        {"--lr", "--lr needs a value"},
        {"stray", "unexpected argument 'stray'"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        TC_EXPECT(NULL, 2, cases[i].text, "train " OK_ARGS " --head mri %s", D, D,
                  cases[i].flags);
        cr_expect(!tc_exists(tc_path("run/log.csv")), "%s started a run", cases[i].flags);
    }
    TC_EXPECT("CUTUNE_STOP_AFTER_STEPS=soon", 2, "CUTUNE_STOP_AFTER_STEPS='soon'",
              "train " OK_ARGS, D, D);
    TC_EXPECT(NULL, 0, "usage: cutune train --data", "train --help");
    /* bf16 on the CPU is the emulation, said so; tf32 is refused above. */
    TC_EXPECT(NULL, 0, "--precision bf16 on the CPU is emulated",
              "train --data %s/d/train --out %s/bf16 " TC_SMALL " --epochs 1 --verbose 0 "
              "--head mri --precision bf16",
              D, D);
    cr_expect(tc_exists(tc_path("bf16/final.h5")), "the bf16 run wrote no final.h5");
}

Test(train_errors, missing_data_and_out) {
    TC_EXPECT(NULL, 2, "--data DIR|train.json is required", "train --out %s/run " TC_SMALL, D);
    TC_EXPECT(NULL, 2, "--out RUN_DIR is required", "train --data %s/d/train " TC_SMALL, D);
    TC_EXPECT(NULL, 1, "nothere: no such file or folder",
              "train --data %s/nothere --out %s/run " TC_SMALL, D, D);
    TC_EXPECT(NULL, 1, "noval: no such file or folder", "train " OK_ARGS " --val %s/noval", D,
              D, D);
    /* --out naming a file */
    tc_write(tc_path("file"), "x");
    TC_EXPECT(NULL, 2, "exists and is not a directory",
              "train --data %s/d/train --out %s/file " TC_SMALL, D, D);
}

Test(train_errors, data_and_model_mismatches) {
    TC_EXPECT(NULL, 2, "--class-mode binary needs a dense:1:sigmoid head",
              "train " OK_ARGS " --class-mode binary --head mri", D, D);
    TC_EXPECT(NULL, 2, "--class-mode must be binary for a dense:1:sigmoid head",
              "train " OK_ARGS " --class-mode categorical --head flatten,dense:1:sigmoid", D, D);
    TC_EXPECT(NULL, 2, "the head has 3 softmax outputs but the data has 2 classes",
              "train " OK_ARGS " --head flatten,dense:3:softmax", D, D);
    TC_EXPECT(NULL, 2, "no layer named 'block9_pool' (layers: block1_conv1",
              "train " OK_ARGS " --head mri --freeze-to block9_pool", D, D);
    /* Warm-up starts frozen at block5_pool: the target is still checked before training. */
    TC_EXPECT(NULL, 2, "no layer named 'block9_pool'",
              "train " OK_ARGS " --head mri --freeze-to block9_pool --warmup-epochs 1", D, D);
    cr_expect(strstr(tc_out, "Epoch 1/") == NULL, "trained before refusing:\n%s", tc_out);
    TC_EXPECT(NULL, 2, "give either --freeze-to or --strategy, not both",
              "train " OK_ARGS " --head mri --freeze-to block4_pool --strategy head", D, D);
    TC_EXPECT(NULL, 2, "give either --val or --validation-split, not both",
              "train " OK_ARGS " --head mri --val %s/d/val --validation-split 0.25", D, D, D);
    TC_EXPECT(NULL, 2, "--monitor val_auc: not a logged metric (loss, acc, val_loss, val_acc)",
              "train " OK_ARGS " --head mri --val %s/d/val --monitor val_auc", D, D, D);
    TC_EXPECT(NULL, 2, "--monitor val_auc: not a logged metric (loss, acc)",
              "train " OK_ARGS " --head mri --monitor val_auc", D, D);
    TC_EXPECT(NULL, 2, "--monitor lr: not a logged metric", "train " OK_ARGS " --monitor lr", D,
              D);
    /* The auxiliary input (incidence angle) and the head must agree. */
    TC_EXPECT(NULL, 2, "has an auxiliary input (the incidence angle) for every sample, but the "
              "head 'mri' has no aux:U branch", "train --data %s/d/iceberg_train.json --out "
              "%s/run --batch-size 4 --weights none --device cpu --epochs 1 --head mri", D, D);
    TC_EXPECT(NULL, 2, "the head 'iceberg' takes an auxiliary input (aux:U, the iceberg "
              "incidence angle) but", "train " OK_ARGS " --head iceberg", D, D);
    /* Unlabelled (test) data. */
    TC_EXPECT(NULL, 2, "has no labels (is_iceberg): it is test data",
              "train --data %s/d/iceberg_test.json --out %s/run --batch-size 4 --weights none "
              "--device cpu --epochs 1", D, D);
    cr_expect(!tc_exists(tc_path("run/log.csv")));

    /* One class only. */
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s/one' && cp -r '%s/d/train/normal' '%s/one/'", D, D,
             D);
    cr_assert_eq(system(cmd), 0);
    TC_EXPECT(NULL, 2, "training needs at least 2 classes, found 1",
              "train --data %s/one --out %s/run " TC_SMALL " --epochs 1", D, D);
}

/* Names, sizes, modification times and the bytes of every file in a folder. */
typedef struct snapshot {
    int n;
    char name[16][256];
    struct stat st[16];
    char *text[16];
} snapshot;

static void take(snapshot *s, const char *dir) {
    memset(s, 0, sizeof *s);
    DIR *d = opendir(dir);
    cr_assert_not_null(d, "%s", dir);
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        if (e->d_name[0] == '.') continue;
        cr_assert_lt(s->n, 16);
        char path[600];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        snprintf(s->name[s->n], sizeof s->name[0], "%s", e->d_name);
        cr_assert_eq(stat(path, &s->st[s->n]), 0);
        s->text[s->n] = tc_read(path);
        s->n++;
    }
    closedir(d);
}

static void expect_unchanged(const snapshot *a, const char *dir, const char *what) {
    snapshot b;
    take(&b, dir);
    cr_expect_eq(b.n, a->n, "%s: %d files, before %d", what, b.n, a->n);
    for (int i = 0; i < a->n; i++) {
        int j = 0;
        while (j < b.n && strcmp(b.name[j], a->name[i]) != 0) j++;
        cr_expect_lt(j, b.n, "%s: %s is gone", what, a->name[i]);
        if (j == b.n) continue;
        cr_expect_eq(b.st[j].st_size, a->st[i].st_size, "%s: %s changed size", what, a->name[i]);
        cr_expect(b.st[j].st_mtim.tv_sec == a->st[i].st_mtim.tv_sec &&
                      b.st[j].st_mtim.tv_nsec == a->st[i].st_mtim.tv_nsec,
                  "%s: %s was rewritten", what, a->name[i]);
        cr_expect(a->st[i].st_size == b.st[j].st_size &&
                      memcmp(a->text[i], b.text[j], (size_t)a->st[i].st_size) == 0,
                  "%s: %s changed", what, a->name[i]);
    }
    for (int j = 0; j < b.n; j++) free(b.text[j]);
}

Test(train_errors, existing_run_and_resume_settings) {
    const char *flags = "--data %s/d/train --out %s/run " TC_SMALL " --head mri --strategy head "
                        "--epochs 1 --steps-per-epoch 1 --verbose 0";
    char f[1024];
    snprintf(f, sizeof f, flags, D, D);
    TC_EXPECT(NULL, 1, "no checkpoint to resume from (start the run without --resume)",
              "train %s --resume", f);
    TC_MUST(NULL, "train %s", f);
    snapshot before;
    take(&before, tc_path("run"));
    cr_assert_geq(before.n, 6, "log.csv, curves.png, best.h5, final.h5, checkpoint.h5, "
                  "config.txt");

    TC_EXPECT(NULL, 2, "already holds a run: add --resume to continue it, or choose another "
              "--out (nothing was changed)", "train %s", f);
    expect_unchanged(&before, tc_path("run"), "train without --resume");

    /* --resume with a changed setting names it, before touching anything. */
    static const struct {
        const char *flag, *text;
    } changed[] = {
        {"--lr 0.02", "it has 'lr = 0.01', now 'lr = 0.02' (only --epochs may change)"},
        {"--optimizer adam", "it has 'optimizer = sgd', now 'optimizer = adam'"},
        {"--horizontal-flip", "it has 'horizontal_flip = false', now 'horizontal_flip = true'"},
        {"--patience 3", "it has '(not set)', now 'patience = 3'"},
        {"--seed 2", "it has 'seed = 1', now 'seed = 2'"},
        {"--precision bf16", "it has '(not set)', now 'precision = bf16'"},
        {"--augment-on device", "it has '(not set)', now 'augment_on = device'"},
        {"--preprocess none", "it has 'preprocess = caffe', now 'preprocess = none'"},
    };
    for (size_t i = 0; i < sizeof changed / sizeof changed[0]; i++) {
        TC_EXPECT(NULL, 2, changed[i].text, "train %s --resume %s", f, changed[i].flag);
        expect_unchanged(&before, tc_path("run"), changed[i].flag);
    }
    /* A setting left out on the resuming side comes from the run's record; given otherwise,
     * it is named. */
    {
        char f16[1024];
        snprintf(f16, sizeof f16, "--data %s/d/train --out %s/run16 " TC_SMALL " --head mri "
                 "--strategy head --epochs 1 --steps-per-epoch 1 --verbose 0", D, D);
        TC_MUST(NULL, "train %s --precision bf16 --augment-on loader", f16);
        TC_MUST(NULL, "train %s --resume --augment-on loader --epochs 2", f16);
        TC_EXPECT(NULL, 2, "it has 'precision = bf16', now 'precision = fp32'",
                  "train %s --resume --precision fp32 --epochs 3", f16);
        /* --preprocess none on image folders, then resumed with caffe. */
        snprintf(f16, sizeof f16, "--data %s/d/train --out %s/runpre " TC_SMALL " --head mri "
                 "--strategy head --epochs 1 --steps-per-epoch 1 --verbose 0", D, D);
        TC_MUST(NULL, "train %s --preprocess none", f16);
        TC_EXPECT(NULL, 2, "it has 'preprocess = none', now 'preprocess = caffe'",
                  "train %s --resume --preprocess caffe", f16);
        /* The data's own default, given or not, is recorded by name. */
        snprintf(f16, sizeof f16, "--data %s/d/train --out %s/runcaffe " TC_SMALL " --head mri "
                 "--strategy head --epochs 1 --steps-per-epoch 1 --verbose 0", D, D);
        TC_MUST(NULL, "train %s", f16);
        char *cfg = tc_read(tc_path("runcaffe/config.txt"));
        cr_assert_not_null(cfg);
        cr_expect(strstr(cfg, "\npreprocess = caffe\n") != NULL, "%s", cfg);
        free(cfg);
        TC_MUST(NULL, "train %s --resume --preprocess caffe --epochs 2", f16);
    }
    /* --strategy all: the frozen layers differ. */
    snprintf(f, sizeof f, "--data %s/d/train --out %s/run " TC_SMALL " --head mri --strategy all "
             "--epochs 1 --steps-per-epoch 1 --verbose 0", D, D);
    TC_EXPECT(NULL, 2, "it has 'freeze_to = block5_pool', now 'freeze_to = '",
              "train %s --resume", f);
    expect_unchanged(&before, tc_path("run"), "--strategy all");
    for (int i = 0; i < before.n; i++) free(before.text[i]);
}

/* --resume compares the data it is given by what it names, not by its spelling: the same folder
 * through a link or with "./" in it resumes; another folder is named. */
Test(train_errors, resume_compares_resolved_paths) {
    const char *flags = "--out %s/runpath " TC_SMALL " --head mri --strategy head "
                        "--steps-per-epoch 1 --verbose 0";
    char f[1024], link[600];
    snprintf(f, sizeof f, flags, D);
    snprintf(link, sizeof link, "%s/dlink", D);
    cr_assert_eq(symlink(tc_path("d"), link), 0);
    TC_MUST(NULL, "train %s --data %s/d/train --epochs 1", f, D);
    TC_MUST(NULL, "train %s --data %s/dlink/./train --epochs 2 --resume", f, D);
    TC_EXPECT(NULL, 2, "it has 'data = ", "train %s --data %s/d/val --epochs 3 --resume", f, D);
}

/* A learning rate and L2 penalty that make the weights grow by ~2000x a step: the loss is finite
 * for two epochs and NaN in the third. */
Test(train_errors, nan_loss_keeps_the_last_checkpoint) {
    int rc = tc_run(NULL, "train --data %s/d/train --out %s/nan " TC_SMALL " --head mri "
                    "--strategy head --epochs 8 --lr 1 --l2 1000 --verbose 0", D, D);
    cr_expect_eq(rc, 1, "exit %d:\n%s", rc, tc_out);
    cr_expect(strstr(tc_out, "step 7 (epoch 3, batch 1): the loss is NaN; the output of layer "
                     "dense_1 is the first to hold NaN or Inf") != NULL, "%s", tc_out);
    cr_expect(strstr(tc_out, "checkpoint.h5 is unchanged") != NULL, "%s", tc_out);
    /* A NaN before the first checkpoint: the message says so, and the new run leaves nothing. */
    TC_EXPECT(NULL, 1, "No checkpoint was written yet",
              "train --data %s/d/train --out %s/nan1 " TC_SMALL " --head mri --strategy head "
              "--epochs 2 --class-weight 1e38,1e38 --verbose 0", D, D);
    cr_expect(strstr(tc_out, "is unchanged") == NULL, "%s", tc_out);
    cr_expect(!tc_exists(tc_path("nan1")));
    tc_csv *log = tc_csv_read(tc_path("nan/log.csv"));
    cr_expect_eq(log->rows, 2);
    free(log);
    cr_expect(!tc_exists(tc_path("nan/final.h5")));

    /* The checkpoint of epoch 2 loads (every array finite) into the model it describes. */
    ct_model_config mc = {.max_batch = 4, .seed = 1};
    ct_saved_config saved;
    cr_assert_eq(ct_weights_read_config(tc_path("nan/checkpoint.h5"), &mc, &saved), CT_OK, "%s",
                 ct_last_error());
    ct_backend be;
    char note[256];
    cr_assert_eq(ct_backend_init_by_name(&be, "cpu", note, sizeof note), CT_OK);
    ct_model *m = NULL;
    cr_assert_eq(ct_model_init(&m, &mc, &be), CT_OK, "%s", ct_last_error());
    cr_expect_eq(ct_weights_load(m, tc_path("nan/checkpoint.h5"), NULL, NULL), CT_OK, "%s",
                 ct_last_error());
    ct_model_free(m);
    ct_backend_free(&be);
    ct_saved_config_free(&saved);
    ct_weights_file *wf = NULL;
    cr_assert_eq(ct_weights_inspect(tc_path("nan/checkpoint.h5"), &wf), CT_OK);
    cr_expect(wf->is_checkpoint);
    ct_weights_file_free(wf);
}

/* Files that are not config files, and lines that would once have been misread: a bare key
 * that took the next line as its value, a file naming another. Each message names the line. */
static void config_file_refusals(void) {
    static const struct {
        const char *text, *message;
    } cases[] = {
        {"lr\nepochs = 1\n", "c.cfg:1: --lr needs a value (lr = X)"},
        {"epochs = 1\nlr = fast\n", "c.cfg:2: --lr: expected a number"},
        {"horizontal_flip = maybe\n", "c.cfg:1: --horizontal-flip is a switch"},
        {"epochs = 1\nconfig = other.cfg\n", "c.cfg:2: a config file cannot name another"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        tc_write(tc_path("c.cfg"), cases[i].text);
        TC_EXPECT(NULL, 2, cases[i].message, "train --config %s/c.cfg --data %s/d/train --out "
                  "%s/x", D, D, D);
    }
    /* Binary content and a line longer than 4095 bytes. */
    static const char binary[] = "epochs = 1\n\x89PNG\0\0\n";
    FILE *f = fopen(tc_path("c.cfg"), "wb");
    cr_assert_not_null(f);
    fwrite(binary, 1, sizeof binary - 1, f);
    fclose(f);
    TC_EXPECT(NULL, 2, "c.cfg:2: holds a NUL byte: not a text config file",
              "train --config %s/c.cfg --data %s/d/train --out %s/x", D, D, D);
    f = fopen(tc_path("c.cfg"), "w");
    cr_assert_not_null(f);
    fputs("head = ", f);
    for (int i = 0; i < 5000; i++) fputc('x', f);
    fclose(f);
    TC_EXPECT(NULL, 2, "c.cfg:1: line longer than 4095 bytes",
              "train --config %s/c.cfg --data %s/d/train --out %s/x", D, D, D);
}

Test(train_errors, config_file) {
    /* Keys as in a Keras call (underscores), comments, blank lines, a switch written =true; the
     * command line wins over the file. */
    char cfg[2048];
    snprintf(cfg, sizeof cfg,
             "# the slices, small\n"
             "data = %s/d/train\n"
             "\n"
             "input_size = 32\n"
             "batch_size = 4\n"
             "weights = none\n"
             "device = cpu\n"
             "   threads = 1\n"
             "head = mri\n"
             "strategy = head\n"
             "epochs = 1\n"
             "steps_per_epoch = 1\n"
             "lr = 0.5\n"
             "vertical_flip = true\n"
             "horizontal_flip\n"
             "verbose = 0\n",
             D);
    tc_write(tc_path("run.cfg"), cfg);
    TC_MUST(NULL, "train --config %s/run.cfg --lr 0.25 --vertical-flip=false --out %s/run", D, D);
    char *settings = tc_read(tc_path("run/config.txt"));
    cr_assert_not_null(settings);
    cr_expect(strstr(settings, "\nbatch_size = 4\n") != NULL, "%s", settings);
    cr_expect(strstr(settings, "\nlr = 0.25\n") != NULL, "%s", settings);
    cr_expect(strstr(settings, "\nvertical_flip = false\n") != NULL, "%s", settings);
    cr_expect(strstr(settings, "\nhorizontal_flip = true\n") != NULL, "%s", settings);
    cr_expect(strstr(settings, "\nhead = mri\n") != NULL, "%s", settings);
    free(settings);
    tc_csv *log = tc_csv_read(tc_path("run/log.csv"));
    cr_expect_eq(log->v[0][tc_col(log, "lr")], 0.25);
    free(log);

    /* Unreadable or malformed files, and bad values in them. */
    TC_EXPECT(NULL, 2, "--config /nonexistent/run.cfg: cannot open: No such file",
              "train --config /nonexistent/run.cfg --out %s/x", D);
    TC_EXPECT(NULL, 2, "cannot read: Is a directory", "train --config %s/d --out %s/x", D, D);
    tc_write(tc_path("bad1.cfg"), "# fine\n= 3\n");
    TC_EXPECT(NULL, 2, "bad1.cfg:2: expected 'key = value'", "train --config %s/bad1.cfg", D);
    tc_write(tc_path("bad2.cfg"), "batch_size = lots\n");
    TC_EXPECT(NULL, 2, "bad2.cfg:1: --batch-size: expected a whole number from 1 to 65536, not "
              "'lots'", "train --config %s/bad2.cfg --data %s/d/train --out %s/x", D, D, D);
    tc_write(tc_path("bad3.cfg"), "# keras name\nlearning_rate = 0.1\n");
    TC_EXPECT(NULL, 2, "bad3.cfg:2: unknown flag '--learning-rate'",
              "train --config %s/bad3.cfg --data %s/d/train --out %s/x", D, D, D);
    config_file_refusals();
    cr_expect(!tc_exists(tc_path("x")), "a failed configuration created the run folder");
}

/* A corrupt image stops a new run with a message naming the file, and the run leaves nothing
 * behind (no log header that would make the same --out look like a run to --resume): the same
 * command runs again once the file is gone. --skip-bad trains past it. */
#define CORRUPT_FLAGS                                                                          \
    "--data %s/d/train --out %s/%s " TC_SMALL " --head mri --strategy all --epochs 1 "        \
    "--verbose 0"

Test(train_errors, corrupt_image_fails_cleanly_and_the_run_can_start_again) {
    char bad[600];
    snprintf(bad, sizeof bad, "%s", tc_path("d/train/normal/zz_broken.png"));
    tc_write(bad, "\x89PNG\r\n\x1a\n this is not the rest of a PNG file");
    TC_EXPECT(NULL, 1, "zz_broken.png", "train " CORRUPT_FLAGS, D, D, "run");
    /* The message names the way on: the flag that skips such files. */
    cr_expect(strstr(tc_out, "add --skip-bad to skip the images that cannot be read") != NULL,
              "the message does not name --skip-bad:\n%s", tc_out);
    cr_expect(!tc_exists(tc_path("run")), "the failed run left %s behind", tc_path("run"));

    /* An --out folder that existed before stays (it was not the run's to remove), emptied of
     * what the run began. */
    cr_assert_eq(mkdir(tc_path("kept"), 0777), 0);
    TC_EXPECT(NULL, 1, "zz_broken.png", "train " CORRUPT_FLAGS, D, D, "kept");
    cr_expect(tc_exists(tc_path("kept")));
    cr_expect(!tc_exists(tc_path("kept/log.csv")), "log.csv left behind");
    cr_expect(!tc_exists(tc_path("kept/config.txt")), "config.txt left behind");

    /* Missing parent folders are made for a run (--out runs/mri in a fresh folder) and taken
     * away with it when it fails; one that existed stays. */
    cr_assert_eq(mkdir(tc_path("p"), 0777), 0);
    TC_EXPECT(NULL, 1, "zz_broken.png", "train " CORRUPT_FLAGS, D, D, "p/runs/a/b");
    cr_expect(tc_exists(tc_path("p")));
    cr_expect(!tc_exists(tc_path("p/runs")), "the failed run left p/runs behind");
    /* Through '..': the folder the path leads to is checked, and only folders the run made are
     * removed: p (there before, empty again) stays, q (made on the way) goes. */
    TC_EXPECT(NULL, 1, "zz_broken.png", "train " CORRUPT_FLAGS, D, D, "q/../p/sub");
    cr_expect(tc_exists(tc_path("p")), "a failed run removed p, which it did not make");
    cr_expect(!tc_exists(tc_path("q")), "the failed run left q behind");
    cr_expect(!tc_exists(tc_path("p/sub")), "the failed run left p/sub behind");

    TC_MUST(NULL, "train " CORRUPT_FLAGS " --skip-bad", D, D, "run");
    cr_expect(tc_exists(tc_path("run/final.h5")));
    TC_MUST(NULL, "train " CORRUPT_FLAGS " --skip-bad", D, D, "p/runs/mri");
    cr_expect(tc_exists(tc_path("p/runs/mri/final.h5")));
    /* An existing run reached through '..' is refused as by its own name. */
    TC_EXPECT(NULL, 2, "already holds a run", "train " CORRUPT_FLAGS " --skip-bad", D, D,
              "q/../p/runs/mri");
    cr_expect(!tc_exists(tc_path("q")), "a refused run left q behind");
    cr_assert_eq(remove(bad), 0);
    TC_MUST(NULL, "train " CORRUPT_FLAGS, D, D, "kept");
    cr_expect(tc_exists(tc_path("kept/final.h5")));
}
